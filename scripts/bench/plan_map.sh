#!/usr/bin/env bash
# `plan-map` over a year: 8,760 hourly prefixes of KEYS_PER_HOUR objects each (default 40:
# 350,400 keys) in a local tree (empty files; listing is what is measured, not S3 latency),
# against one month of the same tree in the same run. Memory must not grow with the keys: the
# manifest is streamed, only fixed-size statistics are kept. Prints wall time, keys/s and peak
# RSS (GNU time) of each, and the manifest's size.
#
#   scripts/bench/plan_map.sh                     # a year, 40 keys an hour
#   KEYS_PER_HOUR=10 scripts/bench/plan_map.sh    # quicker
#   BIN=target/release/firehose-replay scripts/bench/plan_map.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
KEYS_PER_HOUR=${KEYS_PER_HOUR:-40}
BIN=${BIN:-target/release/firehose-replay}
DATA=${BENCH_DATA:-bench-data}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --quiet --release --bin firehose-replay

# The tree is cached in bench-data/ (git-ignored): 2025, one directory per hour.
tree="$DATA/plan-map-year-$KEYS_PER_HOUR"
if [ ! -e "$tree/.complete" ]; then
  echo "generating $tree ($((8760 * KEYS_PER_HOUR)) empty objects) ..." >&2
  rm -rf "$tree"
  python3 - "$tree" "$KEYS_PER_HOUR" <<'PY'
import datetime, os, sys
root, n = sys.argv[1], int(sys.argv[2])
t = datetime.datetime(2025, 1, 1)
for _ in range(8760):
    d = os.path.join(root, t.strftime("%Y/%m/%d/%H"))
    os.makedirs(d)
    stamp = t.strftime("%Y-%m-%d-%H")
    for i in range(n):
        open(os.path.join(d, f"events-1-{stamp}-{i:02d}-00-{i:08x}-0000-4000-8000-000000000000.gz"), "w").close()
    t += datetime.timedelta(hours=1)
PY
  touch "$tree/.complete"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== plan-map: listing hourly prefixes into a JSON Lines manifest (local tree, $KEYS_PER_HOUR keys an hour)"
for range in "2025-01-01 2025-01-31 one month" "2025-01-01 2025-12-31 one year"; do
  read -r from to label <<<"$range"
  s=$EPOCHREALTIME
  "$TIME" -f %M -o "$work/rss" "$BIN" --log-level error plan-map "$tree" --from "$from" --to "$to" \
    --function replay --manifest "$work/manifest.jsonl" --asl "$work/asl.json" 2>"$work/err" \
    || { echo "failed: plan-map $from .. $to" >&2; cat "$work/err" >&2; exit 1; }
  e=$EPOCHREALTIME
  keys=$(wc -l <"$work/manifest.jsonl")
  awk -v l="$label" -v s="$s" -v e="$e" -v k="$keys" -v r="$(tail -n1 "$work/rss")" \
    -v m="$(stat -c %s "$work/manifest.jsonl")" 'BEGIN {
    printf "  %-10s %8d keys  %7.2f s  %9.0f keys/s  manifest %6.1f MiB  peak RSS %6.1f MiB\n",
      l, k, e - s, k / (e - s), m / 1048576, r / 1024 }'
done

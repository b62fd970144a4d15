#!/usr/bin/env bash
# The PostgreSQL sink against what a user would do by hand, same object, same server, same run:
#   gzip -dc OBJ | sed 's/\\/\\\\/g' | psql -c "\copy t(payload) from stdin"   into a jsonb table
# (the sed doubles backslashes, without which COPY's text format would unescape the JSON's own
# escapes and corrupt or refuse records), against
#   firehose-replay replay OBJ --sink postgres://…?table=… --payload-column payload --ledger none
# into (_row_id text PRIMARY KEY, payload jsonb): row IDs, the dedup and the ledger row included.
# Twice: with the ledger table emptied too (the object goes straight into the table: COPY behind
# savepoints), and with its entry kept (the staging path: COPY into a temporary table, then
# INSERT … ON CONFLICT DO NOTHING), the target emptied before each run either way. Prints median
# wall and CPU time, the ratios (target: at most 1.3x) and peak RSS (flat in the object's size).
#
#   BIN=target/release/firehose-replay OBJ=bench-data/….gz RUNS=5 scripts/bench/postgres.sh
set -euo pipefail
BIN=${BIN:?BIN=path to firehose-replay}
OBJ=${OBJ:?OBJ=path to a gzip object}
RUNS=${RUNS:-5}
TIME=/usr/bin/time
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
[ -x "$PGBIN/pg_ctl" ] || { echo "needs PostgreSQL (apt-get install postgresql)" >&2; exit 1; }

dir=$(mktemp -d)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"${as_pg[@]}" "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
psql=(psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE TABLE by_hand (payload jsonb)" \
  -c "CREATE TABLE replayed (_row_id text PRIMARY KEY, payload jsonb)" \
  -c "CREATE TABLE replayed_staged (_row_id text PRIMARY KEY, payload jsonb)"
url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable&table=replayed"

# run LABEL RESET_SQL CMD... -> "label median_seconds max_rss_kib median_cpu_seconds"
run() {
  local label=$1 reset=$2; shift 2
  local times=() cpus=() rss=0 s e r
  for _ in $(seq "$RUNS"); do
    "${psql[@]}" -c "$reset" -c "CHECKPOINT"
    s=$EPOCHREALTIME
    "$TIME" -f '%M %U %S' -o "$dir/rss" "$@" >/dev/null 2>"$dir/err" \
      || { echo "failed: $label" >&2; cat "$dir/err" >&2; exit 1; }
    e=$EPOCHREALTIME
    times+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')")
    read -r r u sy < <(tail -n1 "$dir/rss")
    cpus+=("$(awk -v u="$u" -v s="$sy" 'BEGIN { printf "%.2f", u + s }')")
    [ "$r" -gt "$rss" ] && rss=$r
  done
  local cpu
  cpu=$(printf '%s\n' "${cpus[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  printf '%s\n' "${times[@]}" | sort -g | awk -v l="$label" -v r="$rss" -v c="$cpu" '{ a[NR] = $1 } END { print l, a[int((NR + 1) / 2)], r, c }'
}

hand=$(run by-hand "TRUNCATE by_hand" bash -c "gzip -dc '$OBJ' | sed 's/\\\\/\\\\\\\\/g' | ${psql[*]} -c '\\copy by_hand(payload) from stdin'")
replay=("$BIN" --log-level error replay "$OBJ" --payload-column payload --ledger none
  --dead-letter "dir:$dir/dl")
ours=$(run direct "TRUNCATE replayed; DROP TABLE IF EXISTS firehose_replay_ledger" \
  "${replay[@]}" --sink "$url")
# A first run, not counted, leaves the object's ledger entry, which the counted ones keep: they
# take the staging path.
staged_url=${url/table=replayed/table=replayed_staged}
"${replay[@]}" --sink "$staged_url" >/dev/null 2>&1
staged=$(run staged "TRUNCATE replayed_staged" "${replay[@]}" --sink "$staged_url")
rows_hand=$("${psql[@]}" -At -c "SELECT count(*) FROM by_hand")
rows_ours=$("${psql[@]}" -At -c "SELECT count(*) FROM replayed")
rows_staged=$("${psql[@]}" -At -c "SELECT count(*) FROM replayed_staged")
echo "== PostgreSQL, $OBJ: median of $RUNS"
for line in "$hand" "$ours" "$staged"; do
  echo "$line" | awk '{ printf "  %-8s %7.3f s  client CPU %5.2f s  peak RSS %6.1f MiB\n", $1, $2, $4, $3 / 1024 }'
done
echo "  rows: by hand $rows_hand, direct $rows_ours, staged $rows_staged"
h=$(echo "$hand" | cut -d' ' -f2)
for line in "$ours" "$staged"; do
  awk -v h="$h" -v l="$(echo "$line" | cut -d' ' -f1)" -v o="$(echo "$line" | cut -d' ' -f2)" \
    'BEGIN { printf "  firehose-replay (%s) / by hand: %.2fx wall time (target <= 1.3x)\n", l, o / h }'
done

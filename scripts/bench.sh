#!/usr/bin/env bash
# End-to-end benchmark: firehose-replay against baselines measured in the same run, on objects
# made by the sample-data generator (gzip, NDJSON and concatenated JSON, 64 MiB and 1 GiB
# uncompressed). Prints the median wall time of RUNS runs, throughput in MiB/s of uncompressed
# data, the ratio to GNU `gzip -dc` and to inflate alone, the median CPU seconds (user + sys, all
# threads: steadier than wall time on a shared machine) and peak RSS (GNU time). The commands of
# one object run in rounds (each once per round), and the ratios between paths are also given
# paired: the median over rounds of one's time over the other's in the same round.
#
#   scripts/bench.sh                 # everything (~3 minutes on 2 cores)
#   SIZES=64 RUNS=3 scripts/bench.sh # quicker
#   BASELINE_BIN=path/to/older/firehose-replay scripts/bench.sh
#                                    # also time an older build's NDJSON path, same objects, same run,
#                                    # and print this build's wall and CPU change against it
#   ADVERSARIAL=0 scripts/bench.sh   # skip the whitespace-bomb and bad-lines rows
#   WORKER=0 scripts/bench.sh        # skip the SQS worker vs backfill rows (1,000 small objects
#                                    # in moto; scripts/bench/worker.sh runs them alone)
#   EVOLUTION=0 scripts/bench.sh     # skip the --schema-evolution off vs add-columns A/B (Storage
#                                    # Write into a table that has every column)
#   POSTGRES=0 scripts/bench.sh      # skip the PostgreSQL sink vs psql \copy (a local server from
#                                    # /usr/lib/postgresql; scripts/bench/postgres.sh runs it alone)
#   ICEBERG=0 scripts/bench.sh       # skip the Iceberg sink vs DuckDB writing Parquet
#                                    # (scripts/bench/iceberg.sh runs it alone)
#   PLAN_MAP=0 scripts/bench.sh      # skip plan-map over a year of hourly prefixes (350,400 keys in
#                                    # a local tree; scripts/bench/plan_map.sh runs it alone)
#
# Objects are cached in bench-data/ (git-ignored) and reused on the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
LARGE_RUNS=${LARGE_RUNS:-3}
SIZES=${SIZES:-"64 1024"}
DATA=${BENCH_DATA:-bench-data}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }

# Two builds, not one: examples take the dev-dependencies' features (tonic's server half, more of
# tokio), and built in one command with the binary they would be unified into its graph too.
# Apart, the binary measured is the one `cargo build --release` makes, and both graphs stay
# cached, so alternating with a plain release build recompiles nothing.
cargo build --quiet --release --bin firehose-replay
cargo build --quiet --release --example gen_sample_data --example inflate_only \
  --example insert_all_server --example storage_write_server
REL=${CARGO_TARGET_DIR:-target}/release
BIN=$REL/firehose-replay
GEN=$REL/examples/gen_sample_data
INFLATE=$REL/examples/inflate_only
mkdir -p "$DATA"
work=$(mktemp -d)
# Local insertAll and Storage Write endpoints (no latency, no faults) for the BigQuery sink's rows.
# The bench events fit the sample table schema once unknown fields are dropped
# (--ignore-unknown-values): the Storage Write client encodes the schema's columns only.
SCHEMA=sample-data/bigquery/events.schema.json
"$REL"/examples/insert_all_server >"$work/bq.addr" &
bq_pid=$!
"$REL"/examples/storage_write_server "$SCHEMA" >"$work/sw.addr" &
sw_pid=$!
# A table with every field of the bench events (nested ones too), for the schema-evolution A/B:
# no row lacks a column, so add-columns never patches and measures only its cost on rows that fit.
FULL_SCHEMA=sample-data/bigquery/bench-events.schema.json
"$REL"/examples/storage_write_server "$FULL_SCHEMA" >"$work/swf.addr" &
swf_pid=$!
trap 'kill $bq_pid $sw_pid $swf_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/bq.addr" ] && [ -s "$work/sw.addr" ] && [ -s "$work/swf.addr" ] && break; sleep 0.05; done
BQ=$(head -n1 "$work/bq.addr")
SW=$(head -n1 "$work/sw.addr")
SWF=$(head -n1 "$work/swf.addr")
[ -n "$BQ" ] && [ -n "$SW" ] && [ -n "$SWF" ] || { echo "a local BigQuery endpoint did not start" >&2; exit 1; }

# cpu_seconds PID -> user + system CPU seconds the process has used so far (all its threads)
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# object FRAMING SIZE_MIB -> path of a cached gzip object
object() {
  local path="$DATA/$1-$2MiB.gz"
  if [ ! -s "$path" ]; then
    echo "generating $path ..." >&2
    "$GEN" bench --bytes $(( $2 * 1048576 )) --framing "$1" --compression gzip --out "$path.tmp" >/dev/null
    mv "$path.tmp" "$path"
  fi
  echo "$path"
}

# measure N CMD... -> "median_seconds max_rss_kib median_cpu_seconds"; output is discarded, a
# failure aborts. CPU is user + sys of the command (all its threads).
measure() {
  local n=$1; shift
  local times=() cpus=() rss=0 s e
  for _ in $(seq "$n"); do
    rm -rf "$work/out" "$work/dl"
    s=$EPOCHREALTIME
    if ! "$TIME" -f '%U %S %M' -o "$work/rss" "$@" >/dev/null 2>"$work/err"; then
      echo "failed: $*" >&2; cat "$work/err" >&2; exit 1
    fi
    e=$EPOCHREALTIME
    times+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')")
    cpus+=("$(tail -n1 "$work/rss" | awk '{ printf "%.2f", $1 + $2 }')")
    rss=$(awk -v a="$rss" -v b="$(tail -n1 "$work/rss" | awk '{ print $3 }')" 'BEGIN { print (b > a ? b : a) }')
  done
  local cpu
  cpu=$(printf '%s\n' "${cpus[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  printf '%s\n' "${times[@]}" | sort -g | awk -v r="$rss" -v c="$cpu" '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], r, c }'
}

row() { # LABEL SECONDS RSS_KIB BYTES GZIP_SECONDS FLOOR_SECONDS CPU_SECONDS
  awk -v l="$1" -v t="$2" -v r="$3" -v b="$4" -v g="$5" -v f="$6" -v c="$7" 'BEGIN {
    printf "  %-33s %7.3f s  CPU %6.2f s  %8.1f MiB/s  %5.2fx gzip -dc", l, t, c, b / 1048576 / t, g / t
    if (f > 0) printf "  %5.2fx inflate-only time", t / f
    printf "  peak RSS %6.1f MiB\n", r / 1024 }'
}

# once ROUND LABEL SERVER_PID CMD... -> appends "LABEL ROUND wall cpu rss_kib server_cpu" to
# $work/runs (SERVER_PID 0: no local endpoint). Output is discarded, a failure aborts.
once() {
  local round=$1 label=$2 server=$3 s e c0=0 c1=0; shift 3
  rm -rf "$work/out" "$work/dl"
  [ "$server" = 0 ] || c0=$(cpu_seconds "$server")
  s=$EPOCHREALTIME
  if ! "$TIME" -f '%U %S %M' -o "$work/rss" "$@" >/dev/null 2>"$work/err"; then
    echo "failed: $*" >&2; cat "$work/err" >&2; exit 1
  fi
  e=$EPOCHREALTIME
  [ "$server" = 0 ] || c1=$(cpu_seconds "$server")
  tail -n1 "$work/rss" | awk -v l="$label" -v r="$round" -v s="$s" -v e="$e" -v a="$c0" -v b="$c1" \
    '{ printf "%s %d %.4f %.3f %d %.3f\n", l, r, e - s, $1 + $2, $3, b - a }' >>"$work/runs"
}

# summary LABEL [OTHER] -> "median_wall max_rss median_cpu median_server_cpu", or with OTHER the
# median over rounds of LABEL's wall time divided by OTHER's in the same round: a ratio of
# neighbours in time, which drift on a shared machine moves far less than a ratio of medians.
summary() {
  awk -v l="$1" -v o="${2:-}" '
    function median(list, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && list[j - 1] > list[j]; j--) {
        t = list[j]; list[j] = list[j - 1]; list[j - 1] = t }
      return list[int((n + 1) / 2)]
    }
    $1 == l { n++; w[n] = $3; c[n] = $4; sc[n] = $6; if ($5 > rss) rss = $5; mine[$2] = $3 }
    $1 == o { other[$2] = $3 }
    END {
      if (o == "") { printf "%.4f %d %.3f %.3f\n", median(w, n), rss, median(c, n), median(sc, n); exit }
      k = 0; for (r in mine) if (r in other) { k++; q[k] = mine[r] / other[r] }
      printf "%.4f\n", median(q, k)
    }' "$work/runs"
}

echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "runs: median of $RUNS (64 MiB) / $LARGE_RUNS (larger); MiB/s are of uncompressed data; every"
echo "command runs once per round, rounds repeat, so drift in the machine's speed hits all alike"
for size in $SIZES; do
  runs=$RUNS
  [ "$size" -gt 64 ] && runs=$LARGE_RUNS
  for framing in newline concatenated; do
    obj=$(object "$framing" "$size")
    bytes=$("$INFLATE" "$obj")
    echo
    echo "== $framing JSON, $(mib "$bytes") MiB uncompressed, $(mib "$(stat -c %s "$obj")") MiB gzip: $obj"
    rm -f "$work/runs"
    for round in $(seq "$runs"); do
      once "$round" gzip 0 gzip -dc "$obj"
      once "$round" inflate 0 "$INFLATE" "$obj"
      once "$round" ndjson 0 "$BIN" --log-level error replay "$obj" \
        --sink "ndjson:$work/out" --dead-letter "dir:$work/dl"
      if [ -n "${BASELINE_BIN:-}" ]; then
        once "$round" baseline 0 "$BASELINE_BIN" --log-level error replay "$obj" \
          --sink "ndjson:$work/out" --dead-letter "dir:$work/dl"
      fi
      # The local endpoints' own CPU per run is recorded: on 2 cores it is taken from the decoders.
      once "$round" insert-all "$bq_pid" "$BIN" --log-level error replay "$obj" --ledger none \
        --sink bigquery:bench.bi.events --bigquery-mode insert-all --bigquery-endpoint "$BQ" \
        --dead-letter "dir:$work/dl"
      # The REST endpoint answers the check that the table exists before the first object (the
      # insertAll endpoint does); with it set no credentials are used.
      once "$round" storage-write "$sw_pid" "$BIN" --log-level error replay "$obj" --ledger none \
        --allow-duplicates --sink bigquery:bench.bi.events --bigquery-mode storage-write \
        --bigquery-storage-endpoint "$SW" --bigquery-endpoint "$BQ" --ignore-unknown-values \
        --dead-letter "dir:$work/dl"
      # Rows the encoder refused would be dead letters, not appends: the line would measure less.
      if [ -n "$(find "$work/dl" -type f 2>/dev/null)" ]; then
        echo "warning: rows did not fit $SCHEMA (dead letters in the Storage Write run)" >&2
      fi
    done
    read -r g grss gcpu _ < <(summary gzip)
    read -r f frss fcpu _ < <(summary inflate)
    read -r t trss tcpu _ < <(summary ndjson)
    read -r q qrss qcpu bq_cpu < <(summary insert-all)
    read -r w wrss wcpu sw_cpu < <(summary storage-write)
    row "gzip -dc (GNU)" "$g" "$grss" "$bytes" "$g" 0 "$gcpu"
    row "inflate only (zlib-rs)" "$f" "$frss" "$bytes" "$g" "$f" "$fcpu"
    row "firehose-replay → ndjson" "$t" "$trss" "$bytes" "$g" "$f" "$tcpu"
    awk -v g="$(summary gzip ndjson)" -v f="$(summary ndjson inflate)" 'BEGIN {
      printf "  paired, median over rounds: ndjson %.2fx gzip -dc, %.2fx inflate-only time\n", g, f }'
    if [ -n "${BASELINE_BIN:-}" ]; then
      read -r o orss ocpu _ < <(summary baseline)
      row "baseline build → ndjson" "$o" "$orss" "$bytes" "$g" "$f" "$ocpu"
      awk -v p="$(summary ndjson baseline)" -v tc="$tcpu" -v oc="$ocpu" 'BEGIN {
        printf "  this build: %+.1f%% wall time (paired), %+.1f%% CPU vs the baseline build\n", (p - 1) * 100, (tc / oc - 1) * 100 }'
    fi
    row "firehose-replay → BigQuery" "$q" "$qrss" "$bytes" "$g" "$f" "$qcpu"
    row "firehose-replay → Storage Write" "$w" "$wrss" "$bytes" "$g" "$f" "$wcpu"
    awk -v p="$(summary insert-all ndjson)" -v c="$bq_cpu" -v qc="$qcpu" -v tc="$tcpu" 'BEGIN { printf "  BigQuery insertAll path: %+.1f%% wall time (paired), %+.1f%% CPU vs the NDJSON sink (the local endpoint used %.3f s CPU per run)\n", (p - 1) * 100, (qc / tc - 1) * 100, c }'
    awk -v p="$(summary storage-write ndjson)" -v c="$sw_cpu" -v wc="$wcpu" -v tc="$tcpu" 'BEGIN { printf "  Storage Write path: %+.1f%% wall time (paired), %+.1f%% CPU vs the NDJSON sink (the local server used %.3f s CPU per run)\n", (p - 1) * 100, (wc / tc - 1) * 100, c }'
    if [ "$size" -eq 64 ] && [ "$framing" = newline ]; then
      if command -v node >/dev/null; then
        read -r p prss pcpu < <(measure 3 node scripts/bench/peer.js "$obj" "$work/node.out")
        row "Node.js peer" "$p" "$prss" "$bytes" "$g" "$f" "$pcpu"
        awk -v p="$p" -v t="$t" 'BEGIN { printf "  firehose-replay is %.1fx faster than the Node.js peer\n", p / t }'
      fi
      if command -v python3 >/dev/null; then
        read -r p prss pcpu < <(measure 3 python3 scripts/bench/peer.py "$obj" "$work/py.out")
        row "Python peer" "$p" "$prss" "$bytes" "$g" "$f" "$pcpu"
        awk -v p="$p" -v t="$t" 'BEGIN { printf "  firehose-replay is %.1fx faster than the Python peer\n", p / t }'
      fi
    fi
  done
done

# --schema-evolution add-columns against off, same run, same object, a table with every column:
# the evolving writer only asks whether a refused row failed for an unknown field, so rows that
# fit must cost the same (the budget is +5%). Alternating off, add-columns, off, … so drift hits
# both; CPU seconds (user + sys) are printed beside wall time, as wall time on a shared machine
# moves with its neighbours.
if [ "${EVOLUTION:-1}" = 1 ]; then
  obj=$(object newline 64)
  bytes=$("$INFLATE" "$obj")
  echo
  echo "== --schema-evolution, Storage Write into a table with every column: $obj"
  for _ in $(seq "$RUNS"); do
    for ev in off add-columns; do
      rm -rf "$work/dl"
      s=$EPOCHREALTIME
      "$TIME" -f '%M %U %S' -o "$work/evo" "$BIN" --log-level error replay "$obj" --ledger none \
        --allow-duplicates --sink bigquery:bench.bi.events --bigquery-mode storage-write \
        --bigquery-storage-endpoint "$SWF" --bigquery-endpoint "$BQ" \
        --schema-evolution "$ev" --dead-letter "dir:$work/dl" >/dev/null 2>"$work/err" \
        || { echo "failed: --schema-evolution $ev" >&2; cat "$work/err" >&2; exit 1; }
      e=$EPOCHREALTIME
      if [ -n "$(find "$work/dl" -type f 2>/dev/null)" ]; then
        echo "warning: rows did not fit $FULL_SCHEMA (dead letters with --schema-evolution $ev)" >&2
      fi
      awk -v ev="$ev" -v s="$s" -v e="$e" '{ print ev, e - s, $2 + $3, $1 }' "$work/evo" >>"$work/evo.all"
    done
  done
  awk -v b="$bytes" '
    function median(list, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && list[j - 1] > list[j]; j--) {
        t = list[j]; list[j] = list[j - 1]; list[j - 1] = t }
      return list[int((n + 1) / 2)]
    }
    { n[$1]++; wall[$1, n[$1]] = $2; cpu[$1, n[$1]] = $3; if ($4 > rss[$1]) rss[$1] = $4 }
    END {
      for (k = 0; k < 2; k++) {
        ev = k ? "add-columns" : "off"
        for (i = 1; i <= n[ev]; i++) { w[i] = wall[ev, i]; c[i] = cpu[ev, i] }
        mw[ev] = median(w, n[ev]); mc[ev] = median(c, n[ev])
        printf "  --schema-evolution %-12s %7.3f s  %8.1f MiB/s  CPU %6.3f s  peak RSS %6.1f MiB\n",
          ev, mw[ev], b / 1048576 / mw[ev], mc[ev], rss[ev] / 1024
      }
      printf "  add-columns vs off: %+.1f%% wall time, %+.1f%% CPU (budget +5%%; medians of %d)\n",
        (mw["add-columns"] / mw["off"] - 1) * 100, (mc["add-columns"] / mc["off"] - 1) * 100, n["off"]
    }' "$work/evo.all"
fi

# The PostgreSQL sink against `gzip -dc | psql "\copy t(payload) from stdin"` into a jsonb table,
# same 64 MiB object, same server (scripts/bench/postgres.sh runs it alone).
if [ "${POSTGRES:-1}" = 1 ]; then
  echo
  BIN=$BIN OBJ=$(object newline 64) RUNS=$RUNS scripts/bench/postgres.sh
fi

# The Iceberg sink against DuckDB's `COPY (SELECT * FROM read_json(…)) TO … (FORMAT parquet)`,
# same 64 MiB object (scripts/bench/iceberg.sh runs it alone; needs .venv-iceberg).
if [ "${ICEBERG:-1}" = 1 ]; then
  echo
  BIN=$BIN OBJ=$(object newline 64) RUNS=$RUNS scripts/bench/iceberg.sh
fi

# Adversarial shapes: memory and time must not grow with whitespace or with bad records.
if [ "${ADVERSARIAL:-1}" = 1 ]; then
  bomb="$DATA/newline-bomb-1GiB.gz"
  if [ ! -s "$bomb" ]; then
    echo "generating $bomb ..." >&2
    { head -c $((1024 * 1048576)) /dev/zero | tr '\0' '\n'; echo '{"after":"the bomb"}'; } | gzip -1 >"$bomb.tmp"
    mv "$bomb.tmp" "$bomb"
  fi
  bad="$DATA/bad-lines-4M.gz"
  if [ ! -s "$bad" ]; then
    echo "generating $bad ..." >&2
    # Not `yes | head`: `yes` dies of SIGPIPE, and with pipefail that ended the whole bench.
    awk 'BEGIN { for (i = 0; i < 4000000; i++) print "{\"broken\":" }' | gzip -1 >"$bad.tmp"
    mv "$bad.tmp" "$bad"
  fi
  echo
  echo "== adversarial objects"
  read -r t trss tcpu < <(measure 1 "$BIN" --log-level error replay "$bomb" --sink "ndjson:$work/out" --dead-letter "dir:$work/dl")
  row "1 GiB of newlines, then a record" "$t" "$trss" $((1024 * 1048576)) "$t" 0 "$tcpu"
  rm -rf "$work/bad-dl"
  s=$EPOCHREALTIME
  # Every record is bad: without `off` the error ratio fails the object as a whole (an object
  # letter), and the row would measure nothing.
  "$TIME" -f %M -o "$work/rss" "$BIN" --log-level error replay "$bad" --sink "ndjson:$work/out" \
    --dead-letter "dir:$work/bad-dl" --max-record-error-ratio off >/dev/null 2>&1 || true
  e=$EPOCHREALTIME
  letter=$(find "$work/bad-dl" -name '*.records.json' | head -n1)
  [ -n "$letter" ] || { echo "bench: no records letter for $bad" >&2; exit 1; }
  awk -v s="$s" -v e="$e" -v r="$(tail -n1 "$work/rss")" -v b="$(stat -c %s "$letter")" 'BEGIN {
    printf "  4M bad lines → one records letter    %7.3f s  letter %7.1f MiB  peak RSS %6.1f MiB\n", e - s, b / 1048576, r / 1024 }'
  s=$EPOCHREALTIME
  "$TIME" -f %M -o "$work/rss" "$BIN" --log-level error redrive "dir:$work/bad-dl" --dry-run >/dev/null 2>&1
  e=$EPOCHREALTIME
  awk -v s="$s" -v e="$e" -v r="$(tail -n1 "$work/rss")" 'BEGIN {
    printf "  redrive --dry-run of that letter      %7.3f s  peak RSS %6.1f MiB\n", e - s, r / 1024 }'
fi

# The SQS worker next to backfill over 1,000 small objects in moto: objects/s and SQS calls per
# object.
if [ "${WORKER:-1}" = 1 ]; then
  echo
  BIN=$BIN scripts/bench/worker.sh
fi

# plan-map over a year of hourly prefixes against a month: time, keys/s and peak RSS.
if [ "${PLAN_MAP:-1}" = 1 ]; then
  echo
  BIN=$BIN scripts/bench/plan_map.sh
fi

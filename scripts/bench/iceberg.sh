#!/usr/bin/env bash
# The Iceberg sink against DuckDB writing the same object to Parquet, same machine, same run:
#   COPY (SELECT * FROM read_json(OBJ)) TO 'out.parquet' (FORMAT parquet, COMPRESSION zstd)
# (DuckDB 1.5.5 from .venv-iceberg, which scripts/test.sh installs) against
#   firehose-replay replay OBJ --sink iceberg:sqlite://…#bench.events --create-table auto
# into a fresh SQLite catalog and local warehouse each run: row IDs, the type checks, the spool,
# the zstd Parquet data file and the snapshot commit included. Prints median wall time, the ratio
# and peak RSS.
#
#   BIN=target/release/firehose-replay OBJ=bench-data/….gz RUNS=5 scripts/bench/iceberg.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:?BIN=path to firehose-replay}
OBJ=${OBJ:?OBJ=path to a gzip object}
RUNS=${RUNS:-5}
TIME=/usr/bin/time
PY=.venv-iceberg/bin/python
[ -x "$PY" ] || { echo "needs .venv-iceberg (scripts/test.sh installs it)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
OBJ=$(realpath "$OBJ")

# run LABEL CMD... -> "label median_seconds max_rss_kib"; the output is emptied before each run
run() {
  local label=$1; shift
  local times=() rss=0 s e r
  for _ in $(seq "$RUNS"); do
    rm -rf "$dir/lake" "$dir/out.parquet" "$dir/dl"
    mkdir -p "$dir/lake"
    s=$EPOCHREALTIME
    "$TIME" -f '%M' -o "$dir/rss" "$@" >/dev/null 2>"$dir/err" \
      || { echo "failed: $label" >&2; cat "$dir/err" >&2; exit 1; }
    e=$EPOCHREALTIME
    times+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')")
    r=$(tail -n1 "$dir/rss")
    [ "$r" -gt "$rss" ] && rss=$r
  done
  printf '%s\n' "${times[@]}" | sort -g | awk -v l="$label" -v r="$rss" '{ a[NR] = $1 } END { print l, a[int((NR + 1) / 2)], r }'
}

duck=$(run duckdb "$PY" -c "import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_json('$OBJ')) TO '$dir/out.parquet' (FORMAT parquet, COMPRESSION zstd)\")")
rows_duck=$("$PY" -c "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM '$dir/out.parquet'\").fetchone()[0])")
sink="iceberg:sqlite://$dir/lake/catalog.db?warehouse=$dir/lake/warehouse#bench.events"
ours=$(run firehose-replay "$BIN" --log-level error replay "$OBJ" --sink "$sink" \
  --create-table auto --ledger none --allow-duplicates --dead-letter "dir:$dir/dl")
rows_ours=$("$PY" tests/iceberg_tool.py rows \
  "{\"db\": \"$dir/lake/catalog.db\", \"warehouse\": \"$dir/lake/warehouse\", \"table\": \"bench.events\"}" | wc -l)
echo "== Iceberg (Parquet, zstd), $OBJ: median of $RUNS"
for line in "$duck" "$ours"; do
  echo "$line" | awk '{ printf "  %-16s %7.3f s  peak RSS %6.1f MiB\n", $1, $2, $3 / 1024 }'
done
echo "  rows: DuckDB $rows_duck, firehose-replay $rows_ours"
awk -v d="$(echo "$duck" | cut -d' ' -f2)" -v o="$(echo "$ours" | cut -d' ' -f2)" \
  'BEGIN { printf "  firehose-replay / DuckDB: %.2fx wall time (target < 1x)\n", o / d }'

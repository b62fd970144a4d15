#!/usr/bin/env bash
# The CPU regression guard for the core path, cheap enough for every CI run and blind to the
# machine's load: counts the instructions (valgrind --tool=callgrind) that the framer, validator
# and row builder spend on a fixed object, per framing, and fails when a count exceeds its
# budget in scripts/instr-budget.txt by more than INSTR_MARGIN percent (default 10).
#
#   scripts/instr-budget.sh            # check
#   UPDATE=1 scripts/instr-budget.sh   # write the counts measured now as the new budget
#
# What is measured: examples/instr_budget.rs on 3,000 records of the bench generator's events
# (seeded, uncompressed), newline and concatenated, single-threaded. Inflate, BLAKE3 bulk
# hashing, threads and file I/O are left out: their counts follow the CPU's SIMD dispatch and the
# scheduler, not this project's code. What remains still dispatches in memchr, simdutf8 and the
# JSON validator (its AVX2 walk where the CPU has AVX2, SSE2 otherwise), but under valgrind the
# CPU it reports has at most AVX2 (valgrind emulates no AVX-512), so every x86_64 machine with
# AVX2 takes the same paths: counts seen here repeat exactly run to run. The
# 10% margin covers toolchain and dependency updates (a different inlining choice moves a count
# by a few percent); a real regression of the per-record work (a second pass over the bytes, a
# copy per record) costs far more than that. When a change lowers the count, refresh the budget
# with UPDATE=1 so the guard keeps its teeth.
set -euo pipefail
cd "$(dirname "$0")/.."

MARGIN=${INSTR_MARGIN:-10}
RECORDS=${INSTR_RECORDS:-3000}
BUDGET=scripts/instr-budget.txt
command -v valgrind >/dev/null || { echo "instr-budget: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

# Without default features: the examples need no Iceberg sink, and its crates (arrow, parquet,
# SQLite) would add ~10 minutes to a clean release build.
cargo build --quiet --release --no-default-features --example gen_sample_data --example instr_budget
dir=${CARGO_TARGET_DIR:-target}/release/examples
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
for framing in newline concatenated; do
  "$dir/gen_sample_data" bench --records "$RECORDS" --framing "$framing" --compression none \
    --out "$work/$framing.json" >/dev/null 2>&1
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$dir/instr_budget" "$framing" "$work/$framing.json" >"$work/run.out" 2>"$work/vg.err" \
    || { cat "$work/vg.err" "$work/run.out" >&2; exit 1; }
  count=$(awk '/Collected :/ { print $NF }' "$work/vg.err")
  [ -n "$count" ] || { cat "$work/vg.err" >&2; exit 1; }
  if [ "${UPDATE:-0}" = 1 ]; then
    echo "$framing $count" >>"$work/budget.new"
    echo "instr-budget: $framing: $count instructions (new budget)"
    continue
  fi
  budget=$(awk -v f="$framing" '$1 == f { print $2 }' "$BUDGET")
  [ -n "$budget" ] || { echo "instr-budget: no budget for $framing in $BUDGET" >&2; exit 1; }
  verdict=$(awk -v c="$count" -v b="$budget" -v m="$MARGIN" 'BEGIN {
    d = (c / b - 1) * 100
    if (d > m) v = "FAIL"; else if (d < -m) v = "ok (far below: refresh the budget with UPDATE=1)"; else v = "ok"
    printf "%+.1f%% vs budget (margin %d%%): %s", d, m, v }')
  echo "instr-budget: $framing: $count instructions, budget $budget, $verdict ($(head -c 200 "$work/run.out" | tr -d '\n'))"
  case $verdict in *FAIL*) status=1 ;; esac
done
if [ "${UPDATE:-0}" = 1 ]; then
  { grep '^#' "$BUDGET" 2>/dev/null || true; cat "$work/budget.new"; } >"$work/budget.txt"
  mv "$work/budget.txt" "$BUDGET"
fi
exit $status

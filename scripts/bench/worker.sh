#!/usr/bin/env bash
# The SQS worker next to `backfill`, over the same N small objects (default 1,000) in one moto
# server (S3 and SQS), in the same run: objects/s of each, and the SQS calls per object the
# worker made (receives, visibility changes, deletes, from its /metrics). Both write NDJSON with
# an S3 ledger (what several workers share) at the same --concurrency. moto serialises its S3
# requests (tests/moto_server.py), so both are bound by moto, not by decoding: the figures
# compare the two paths' overhead, not S3's throughput.
#
#   scripts/bench/worker.sh               # 1,000 objects, median of 3 runs each
#   OBJECTS=200 RUNS=1 scripts/bench/worker.sh
#   BIN=target/release/firehose-replay scripts/bench/worker.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OBJECTS=${OBJECTS:-1000}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-8}
BIN=${BIN:-target/release/firehose-replay}
PY=.venv/bin/python
[ -x "$BIN" ] || cargo build --quiet --release --bin firehose-replay
[ -x "$PY" ] || { echo "needs moto in .venv (scripts/test.sh installs it)" >&2; exit 1; }

work=$(mktemp -d)
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" tests/moto_server.py 127.0.0.1 "$port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=$work/none AWS_SHARED_CREDENTIALS_FILE=$work/none
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

# boto3 (moto's venv): the bucket, N gzip objects of 20 rows, a queue; `fill` sends one S3
# notification per object.
cat >"$work/aws.py" <<'PY'
import gzip, json, sys, urllib.request
import boto3
s3, sqs = boto3.client("s3"), boto3.client("sqs")
cmd, n = sys.argv[1], int(sys.argv[2])
key = lambda i: f"2026/11/25/13/bench-1-2026-11-25-13-00-00-{i:08x}-0000-4000-8000-000000000000.gz"
if cmd == "setup":
    s3.create_bucket(Bucket="bench")
    for i in range(n):
        rows = "".join(json.dumps({"i": i, "n": j, "msg": "x" * 40}) + "\n" for j in range(20))
        s3.put_object(Bucket="bench", Key=key(i), Body=gzip.compress(rows.encode()))
    print(sqs.create_queue(QueueName="bench", Attributes={"VisibilityTimeout": "30"})["QueueUrl"])
elif cmd == "fill":
    url = sys.argv[3]
    for b in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": json.dumps(
            {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                          "s3": {"bucket": {"name": "bench"}, "object": {"key": key(i)}}}]})}
            for i in range(b, min(b + 10, n))])
PY
echo "setting up $OBJECTS objects in moto ..." >&2
queue=$("$PY" "$work/aws.py" setup "$OBJECTS")
common=(--sink "ndjson:$work/out" --dead-letter "dir:$work/dl" --concurrency "$CONCURRENCY" --log-level "${LOG_LEVEL:-warn}")

command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
# calls ADDR -> "done receives visibility_changes deletes" from the worker's /metrics.
calls() {
  curl -fsS "http://$1/metrics" | awk '
    /^firehose_replay_objects_total\{outcome="done"\}/ { d = $2 }
    /^firehose_replay_sqs_requests_total\{call="receive"\}/ { r = $2 }
    /^firehose_replay_sqs_requests_total\{call="change_visibility"\}/ { c = $2 }
    /^firehose_replay_sqs_requests_total\{call="delete"\}/ { x = $2 }
    END { print d + 0, r + 0, c + 0, x + 0 }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
bf_times=() wk_times=() calls=""
for run in $(seq "$RUNS"); do
  # backfill: lists the hour and processes every object.
  rm -rf "$work/out" "$work/dl"
  s=$EPOCHREALTIME
  "$BIN" backfill s3://bench/ --from 2026-11-25T13 --to 2026-11-25T13 \
    --ledger "s3://bench/_ledger-bf-$run/" "${common[@]}" >/dev/null 2>"$work/bf.err" \
    || { cat "$work/bf.err" >&2; exit 1; }
  e=$EPOCHREALTIME
  bf_times+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }')")
  # worker: the same objects, one notification each, drained until the queue is empty.
  rm -rf "$work/out" "$work/dl"
  "$PY" "$work/aws.py" fill "$OBJECTS" "$queue"
  hport=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  s=$EPOCHREALTIME
  "$BIN" worker --queue "$queue" --receive-wait 1 --health-addr "127.0.0.1:$hport" \
    --ledger "s3://bench/_ledger-wk-$run/" "${common[@]}" >/dev/null 2>"$work/wk.err" &
  wk=$!
  # Done when every object is; the counters are read before it is told to stop.
  while :; do
    c=$(calls "127.0.0.1:$hport" 2>/dev/null || echo "0 0 0 0")
    [ "${c%% *}" -ge "$OBJECTS" ] && break
    kill -0 $wk 2>/dev/null || { cat "$work/wk.err" >&2; exit 1; }
    sleep 0.02
  done
  e=$EPOCHREALTIME
  calls=$c
  kill -TERM $wk; wait $wk
  [ -z "${KEEP_LOG:-}" ] || cp "$work/wk.err" "$KEEP_LOG"
  wk_times+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }')")
  n=$(find "$work/out" -name '*.ndjson' | wc -l)
  [ "$n" -eq "$OBJECTS" ] || { echo "worker wrote $n of $OBJECTS objects" >&2; exit 1; }
done
bf=$(printf '%s\n' "${bf_times[@]}" | median)
wkt=$(printf '%s\n' "${wk_times[@]}" | median)
read -r done receives changes deletes <<<"$calls"
echo "== SQS worker vs backfill: $OBJECTS objects of 20 rows (gzip), moto S3+SQS, --concurrency $CONCURRENCY, median of $RUNS"
awk -v t="$bf" -v n="$OBJECTS" 'BEGIN { printf "  backfill (list + process)          %7.3f s  %7.1f objects/s\n", t, n / t }'
awk -v t="$wkt" -v n="$OBJECTS" 'BEGIN { printf "  worker (receive + process + delete) %6.3f s  %7.1f objects/s\n", t, n / t }'
awk -v r="$receives" -v c="$changes" -v d="$deletes" -v n="$done" 'BEGIN {
  printf "  worker SQS calls per object: %.3f receives, %.3f visibility changes, %.3f deletes (%.3f in all; last run)\n",
    r / n, c / n, d / n, (r + c + d) / n }'

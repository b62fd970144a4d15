#!/usr/bin/env bash
# Try firehose-replay on the committed sample archive without a cloud account:
#
#   scripts/try-local.sh s3        # local S3 (moto): upload the sample, backfill it from s3://,
#                                  # with the S3 ledger; a second run skips every object
#   scripts/try-local.sh bigquery  # the local BigQuery emulator: load the sample into a table
#                                  # and query it back
#
# It starts the server from the project's virtualenvs (scripts/test.sh installs moto into .venv
# and local-bigquery into .venv-bq), runs the replay in a temporary directory, shows the rows and
# stops the server. KEEP=1 keeps the directory. The binary is `firehose-replay` on PATH, else
# this checkout's release build (built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

mode=${1:-}
case "$mode" in
  s3 | bigquery) ;;
  *)
    echo "usage: scripts/try-local.sh s3|bigquery" >&2
    exit 2
    ;;
esac

if command -v firehose-replay > /dev/null; then
  bin=$(command -v firehose-replay)
else
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/firehose-replay
  if ! [ -x "$bin" ]; then
    echo "== cargo build --release (the first build takes several minutes)"
    cargo build --release --quiet
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/firehose-replay-try.XXXXXX")
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2> /dev/null || true
    wait "$server" 2> /dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "== kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until `check` (a command) succeeds, or the server exits, or 60 s pass.
wait_for() {
  for _ in $(seq 600); do
    if "$@" > /dev/null 2>&1; then return 0; fi
    if ! kill -0 "$server" 2> /dev/null; then break; fi
    sleep 0.1
  done
  echo "error: the server did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
}

need_venv() {
  if ! [ -x "$1/bin/python" ]; then
    echo "error: $1 is missing: run scripts/test.sh once (it installs moto into .venv and" >&2
    echo "local-bigquery into .venv-bq)" >&2
    exit 1
  fi
}

if [ "$mode" = s3 ]; then
  need_venv .venv
  port=$(free_port)
  .venv/bin/python tests/moto_server.py 127.0.0.1 "$port" > "$work/server.log" 2>&1 &
  server=$!
  export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  wait_for curl -sf "$AWS_ENDPOINT_URL/moto-api/"
  echo "== moto (local S3) on $AWS_ENDPOINT_URL: bucket firehose-archive ← sample-data/firehose/"
  .venv/bin/python - "$repo/sample-data/firehose" << 'EOF'
import os, sys, boto3
s3 = boto3.client("s3")
s3.create_bucket(Bucket="firehose-archive")
s3.create_bucket(Bucket="replay-state")
root = sys.argv[1]
for dirpath, _, files in os.walk(root):
    for name in sorted(files):
        path = os.path.join(dirpath, name)
        s3.upload_file(path, "firehose-archive", os.path.relpath(path, root))
EOF
  cd "$work"
  run=(backfill s3://firehose-archive/ --from 2026-11-25 --to 2026-11-26 --include-error-output
    --ledger s3://replay-state/ledger/ --dead-letter s3://replay-state/dead-letter/ --sink ndjson:out)
  echo "== firehose-replay ${run[*]}"
  "$bin" "${run[@]}" --log-level error
  echo "== the rows of one object (out/firehose-archive/<key>.ndjson), first 2:"
  head -n 2 out/firehose-archive/2026/11/25/22/orders-1-2026-11-25-22-18-57-*
  echo "== rows in all: $(cat out/firehose-archive/*/*/*/*/* out/firehose-archive/processing-failed/*/*/*/*/* 2> /dev/null | wc -l)"
  echo "== the same command again: the S3 ledger has every object"
  "$bin" "${run[@]}" --log-level error
  exit 0
fi

need_venv .venv-bq
port=$(free_port)
grpc=$(free_port)
project=local-project
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python .venv-bq/bin/python tests/bigquery_emulator.py \
  "$port" "$grpc" "$project" "$work/data" > "$work/server.log" 2>&1 &
server=$!
api=http://127.0.0.1:$port/bigquery/v2/projects/$project
wait_for curl -sf "$api/datasets"
echo "== local-bigquery on 127.0.0.1:$port (REST) and :$grpc (Storage Write): dataset demo"
curl -sf -X POST -H 'content-type: application/json' "$api/datasets" \
  -d '{"datasetReference": {"projectId": "'$project'", "datasetId": "demo"}}' > /dev/null
cd "$work"
# No credentials: with --bigquery-endpoint set and none given, none are sent (emulators).
run=(backfill "$repo/sample-data/firehose" --from 2026-11-25 --to 2026-11-26 --include-error-output
  --sink bigquery:$project.demo.events --create-table-schema "$repo/sample-data/bigquery/sample.schema.json"
  --bigquery-endpoint "http://127.0.0.1:$port" --bigquery-storage-endpoint "http://127.0.0.1:$grpc")
echo "== firehose-replay ${run[*]}"
"$bin" "${run[@]}" --log-level error
query() {
  echo "== $1"
  curl -sf -X POST -H 'content-type: application/json' "$api/queries" \
    -d "$(python3 -c 'import json, sys; print(json.dumps({"useLegacySql": False, "query": sys.argv[1]}))' "$1")" |
    python3 -c 'import json, sys
for row in json.load(sys.stdin).get("rows", []):
    print("  " + "\t".join(str(cell["v"]) for cell in row["f"]))'
}
query "SELECT COALESCE(event_type, logGroup, 'other') AS kind, COUNT(*) AS n FROM demo.events GROUP BY kind ORDER BY kind"

# A table that does not exist yet, created and widened from the records themselves. In load
# mode the load job carries the schema; storage-write would patch the table, and the emulator's
# tables.patch adds only top-level columns, so a field new inside an existing RECORD
# (message_json.from) would never reach its write streams: each attempt would wait
# --schema-evolution-wait-secs (600 s) for it. Real BigQuery adds nested columns.
run=(backfill "$repo/sample-data/firehose" --from 2026-11-25 --to 2026-11-26 --include-error-output
  --sink bigquery:$project.demo.events_auto --bigquery-mode load --create-table auto --schema-evolution add-columns
  --bigquery-endpoint "http://127.0.0.1:$port" --bigquery-storage-endpoint "http://127.0.0.1:$grpc")
echo "== firehose-replay ${run[*]}"
"$bin" "${run[@]}" --log-level error
query "SELECT COUNT(*) AS rows_, COUNT(DISTINCT _row_id) AS ids, COUNT(message_json) AS with_message_json FROM demo.events_auto"

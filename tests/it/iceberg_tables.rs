//! Iceberg tables for the tests, created and read back by independent readers (pyiceberg and
//! DuckDB's iceberg extension, through tests/iceberg_tool.py in .venv-iceberg, which
//! scripts/test.sh installs): an SQLite catalog file and a local warehouse per table.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// One table: `<dir>/catalog.db`, `<dir>/warehouse` (or an S3 warehouse on moto),
/// `<namespace>.<name>`, catalog `default`.
pub struct IcebergTable {
    pub db: PathBuf,
    pub warehouse: PathBuf,
    pub table: String,
    pub s3: Option<S3Warehouse>,
}

/// `s3://lake/wh` on a moto server: the warehouse location, moto's endpoint and the
/// environment a process reaches it with.
pub struct S3Warehouse {
    location: String,
    endpoint: String,
    env: Vec<(String, String)>,
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-iceberg/bin/python");
    assert!(
        p.exists(),
        "{} not found: run scripts/test.sh (it installs pyiceberg and DuckDB into .venv-iceberg)",
        p.display()
    );
    p
}

/// Runs tests/iceberg_tool.py `args[0]` with `cfg`, then the other args; its stdout.
pub fn tool(cfg: &Value, args: &[&str]) -> String {
    let out = std::process::Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iceberg_tool.py"))
        .arg(args[0])
        .arg(cfg.to_string())
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iceberg_tool.py {}: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every row of the table whose metadata file is `metadata`, as DuckDB's `iceberg_scan` reads
/// it (any catalog).
pub fn duckdb_scan(metadata: &str) -> Vec<Value> {
    let mut rows = lines(&tool(&json!({ "metadata": metadata }), &["scan"]));
    rows.pop(); // the types
    rows
}

/// Every row of the table whose metadata file is `metadata`, as pyiceberg reads it (any
/// catalog).
pub fn pyiceberg_scan(metadata: &str) -> Vec<Value> {
    lines(&tool(&json!({ "metadata": metadata }), &["static-rows"]))
}

pub fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

impl IcebergTable {
    /// Creates `table` (`ns.name`) with `schema` (see iceberg_tool.py's `create`) under `dir`.
    pub fn create(dir: &Path, table: &str, schema: Value) -> IcebergTable {
        let t = IcebergTable::local(dir, table);
        t.tool(&["create", &schema.to_string()]);
        t
    }

    /// `ns.t` under `<dir>/ice` with the row-ID column and one string column `k`: the table
    /// most tests write to.
    pub fn keyed(dir: &Path) -> IcebergTable {
        IcebergTable::create(
            &dir.join("ice"),
            "ns.t",
            json!([["_replay_row_id", "string", true], ["k", "string", false]]),
        )
    }

    /// A table under `dir` with a local warehouse, not created yet.
    fn local(dir: &Path, table: &str) -> IcebergTable {
        std::fs::create_dir_all(dir.join("warehouse")).unwrap();
        IcebergTable {
            db: dir.join("catalog.db"),
            warehouse: dir.join("warehouse"),
            table: table.to_string(),
            s3: None,
        }
    }

    /// Creates `table` with `schema`, partitioned by `partition` (`[[column, transform], …]`,
    /// see iceberg_tool.py's `create`), under `dir`.
    pub fn create_partitioned(
        dir: &Path,
        table: &str,
        schema: Value,
        partition: Value,
    ) -> IcebergTable {
        let t = IcebergTable::local(dir, table);
        t.tool(&["create", &schema.to_string(), &partition.to_string()]);
        t
    }

    /// Creates `table` with `schema` in an SQLite catalog under `dir` whose warehouse is
    /// `s3://lake/wh` on `moto` (the bucket must exist).
    pub fn create_on_s3(
        dir: &Path,
        table: &str,
        schema: Value,
        moto: &crate::moto::Moto,
    ) -> IcebergTable {
        std::fs::create_dir_all(dir).unwrap();
        let t = IcebergTable {
            db: dir.join("catalog.db"),
            warehouse: dir.join("warehouse"),
            table: table.to_string(),
            s3: Some(S3Warehouse {
                location: "s3://lake/wh".into(),
                endpoint: moto.endpoint.clone(),
                env: moto.env(),
            }),
        };
        t.tool(&["create", &schema.to_string()]);
        t
    }

    /// The environment a process writing this table needs (moto's, for an S3 warehouse).
    pub fn env(&self) -> Vec<(String, String)> {
        self.s3.as_ref().map(|s| s.env.clone()).unwrap_or_default()
    }

    /// `--sink` for this table.
    pub fn sink(&self) -> String {
        let warehouse = match &self.s3 {
            Some(s3) => s3.location.clone(),
            None => self.warehouse.display().to_string(),
        };
        format!(
            "iceberg:sqlite://{}?warehouse={warehouse}#{}",
            self.db.display(),
            self.table
        )
    }

    fn tool(&self, args: &[&str]) -> String {
        let cfg = match &self.s3 {
            Some(s3) => json!({"db": self.db, "warehouse": s3.location, "table": self.table,
                               "s3": {"endpoint": s3.endpoint}}),
            None => json!({"db": self.db, "warehouse": self.warehouse, "table": self.table}),
        };
        tool(&cfg, args)
    }

    /// Every row, as pyiceberg reads it.
    pub fn rows(&self) -> Vec<Value> {
        lines(&self.tool(&["rows"]))
    }

    /// The rows pyiceberg reads with the row filter `filter` (data files pruned by their
    /// partition values).
    pub fn rows_where(&self, filter: &str) -> Vec<Value> {
        lines(&self.tool(&["rows", filter]))
    }

    /// Each partition's `{"partition", "record_count", "file_count"}`, as pyiceberg reads the
    /// manifests.
    pub fn partitions(&self) -> Vec<Value> {
        lines(&self.tool(&["partitions"]))
    }

    /// Every row and the column types, as DuckDB's `iceberg_scan` reads them.
    pub fn duckdb(&self) -> (Vec<Value>, Value) {
        let mut rows = lines(&self.tool(&["duckdb"]));
        let types = rows.pop().unwrap()["__types__"].clone();
        (rows, types)
    }

    /// Column → Iceberg type, as pyiceberg reads the schema.
    pub fn types(&self) -> Value {
        serde_json::from_str(&self.tool(&["types"])).unwrap()
    }

    /// Each snapshot's summary properties.
    pub fn snapshots(&self) -> Vec<Value> {
        lines(&self.tool(&["snapshots"]))
    }

    /// Adds an optional column as another writer (pyiceberg) would.
    pub fn add_column(&self, name: &str, kind: &str) {
        self.tool(&["addcol", name, kind]);
    }

    /// Appends rows as another writer (pyiceberg) would.
    pub fn append(&self, rows: Value) {
        self.tool(&["append", &rows.to_string()]);
    }
}

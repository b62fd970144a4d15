//! The table of sinks under test: what each needs to run, how to read back what its destination
//! holds, and which guarantees it claims. A new sink joins the suite by implementing
//! [`SinkUnderTest`] (and, if it needs a server, adding it to [`Servers`]) and adding one entry
//! to [`SINKS`]; every scenario then runs against it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::bq_emulator::BqEmulator;
use crate::iceberg_tables::IcebergTable;
use crate::moto::Moto;
use crate::pg_server::PgServer;

/// One row as the destination holds it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The row-ID column.
    pub id: String,
    /// The record's `k` field (every record of the suite's archives names itself there).
    pub k: String,
    /// The whole row as the destination gives it back (BigQuery gives integers as strings).
    pub fields: Value,
}

/// What a replay `--force`d past the ledger does to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    /// Adds nothing (the same file is replaced, or rows are merged on their ID).
    Exact,
    /// Adds nothing as long as the first write is less than about a minute old (insertAll's
    /// `insertId`); the suite's runs are.
    ExactWithinAMinute,
    /// Refused at start (exit 2): the rows would be written again and nothing removes copies.
    Refused,
    /// Every row is delivered again (what was printed cannot be taken back).
    Duplicates,
}

/// What a destination holds after runs killed with SIGKILL, then one that finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterKill {
    /// Every row exactly once.
    Exact,
    /// Every row at least once: rows a killed run delivered before the ledger heard of their
    /// object are delivered again by the rerun.
    AtLeastOnce,
}

/// Which outcome column of the row contract's edge records applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// NDJSON and stdout: any valid JSON number or escape.
    Text,
    /// BigQuery: numbers beyond f64 and lone surrogates are record errors.
    BigQuery,
    /// PostgreSQL's typed columns: the same, in PostgreSQL's words.
    Postgres,
    /// Iceberg's typed columns: the same, in this sink's words; the row-ID column is
    /// `_replay_row_id`, so a record's own `_row_id` is a field without a column.
    #[cfg_attr(not(feature = "iceberg"), allow(dead_code))]
    Iceberg,
}

/// The guarantees a sink claims (the README's guarantee tables must agree).
#[derive(Debug, Clone, Copy)]
pub struct Guarantees {
    pub forced: Forced,
    pub after_kill: AfterKill,
    pub values: Values,
    pub redrive: Redrive,
}

/// How dead letters reach the sink again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redrive {
    /// `redrive` with the sink's own flags.
    Native,
    /// `redrive` with the sink's own flags is refused at start (exit 2, letters untouched);
    /// [`Destination::redrive_args`] name the way that works (load mode batches objects in
    /// `replay`/`backfill` only: its letters go to the same table in storage-write).
    Refused,
}

/// A sink, or a sink in one mode.
pub trait SinkUnderTest: Sync {
    fn name(&self) -> &'static str;
    fn guarantees(&self) -> Guarantees;
    /// A fresh, empty destination for runs whose working directory is `work` (a table of its
    /// own, ...), on the servers of `servers`, started there if not yet.
    fn destination<'a>(&self, servers: &'a Servers, work: &Path) -> Box<dyn Destination + 'a>;
}

/// One destination a scenario writes to.
pub trait Destination {
    /// `--sink …` and the flags this sink needs in every run and redrive.
    fn args(&self) -> Vec<String>;
    /// The flags a `redrive` into this destination takes (see [`Redrive`]).
    fn redrive_args(&self) -> Vec<String> {
        self.args()
    }
    /// Environment the runs need (credentials, endpoints).
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Every row the destination holds, duplicates included.
    fn rows(&self) -> Vec<Row>;
}

/// Servers shared by the sinks of one scenario: started on first use, stopped when the
/// scenario drops them.
#[derive(Default)]
pub struct Servers {
    bigquery: OnceLock<BqEmulator>,
    moto: OnceLock<Moto>,
    postgres: OnceLock<PgServer>,
}

impl Servers {
    /// The BigQuery emulator, project `test-proj`, with dataset `bi`.
    pub fn bigquery(&self) -> &BqEmulator {
        self.bigquery.get_or_init(|| {
            let emu = BqEmulator::start("test-proj");
            emu.create_dataset("bi");
            emu
        })
    }

    /// moto (S3 for the ledger of concurrent workers).
    pub fn moto(&self) -> &Moto {
        self.moto.get_or_init(Moto::start)
    }

    /// A PostgreSQL server of the scenario's own.
    pub fn postgres(&self) -> &PgServer {
        self.postgres.get_or_init(PgServer::start)
    }
}

/// Every sink and mode the suite runs.
pub static SINKS: &[&dyn SinkUnderTest] = &[
    &Ndjson,
    &Stdout,
    &BigQuery {
        name: "insert-all",
        mode: "insert-all",
        merge: false,
    },
    &BigQuery {
        name: "storage-write",
        mode: "storage-write",
        merge: false,
    },
    &BigQuery {
        name: "load",
        mode: "load",
        merge: false,
    },
    &BigQuery {
        name: "merge",
        mode: "storage-write",
        merge: true,
    },
    &BigQuery {
        name: "load-merge",
        mode: "load",
        merge: true,
    },
    &Postgres {
        name: "postgres",
        batch: false,
    },
    &Postgres {
        name: "postgres-batch",
        batch: true,
    },
    // A build without the `iceberg` feature has no Iceberg sink to hold to the contract.
    #[cfg(feature = "iceberg")]
    &Iceberg,
];

/// Sinks chosen by `CONFORMANCE_SINKS=ndjson,load` (all when unset), to rerun one quickly.
pub fn selected() -> Vec<&'static dyn SinkUnderTest> {
    let only = std::env::var("CONFORMANCE_SINKS").ok();
    SINKS
        .iter()
        .copied()
        .filter(|s| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n.trim() == s.name()))
        })
        .collect()
}

struct Ndjson;

impl SinkUnderTest for Ndjson {
    fn name(&self) -> &'static str {
        "ndjson"
    }

    fn guarantees(&self) -> Guarantees {
        Guarantees {
            forced: Forced::Exact,
            after_kill: AfterKill::Exact,
            values: Values::Text,
            redrive: Redrive::Native,
        }
    }

    fn destination<'a>(&self, _: &'a Servers, work: &Path) -> Box<dyn Destination + 'a> {
        Box::new(NdjsonDir(work.join("out")))
    }
}

struct NdjsonDir(PathBuf);

impl Destination for NdjsonDir {
    fn args(&self) -> Vec<String> {
        vec!["--sink".into(), format!("ndjson:{}", self.0.display())]
    }

    /// Rows of every output file (`<key>.ndjson` and a redrive's `<key>.redriven.ndjson`);
    /// dot-files are a killed run's temporary files, not output.
    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for f in crate::cli::files_under(&self.0) {
            rows.extend(text_rows(&std::fs::read_to_string(&f).unwrap(), false));
        }
        rows
    }
}

struct Stdout;

/// Where the suite's runs append their standard output (see `run::Target`); processes running
/// at once each print to a file of their own, `stdout.<n>.ndjson`.
pub const STDOUT_FILE: &str = "stdout.ndjson";

impl SinkUnderTest for Stdout {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn guarantees(&self) -> Guarantees {
        Guarantees {
            forced: Forced::Duplicates,
            after_kill: AfterKill::AtLeastOnce,
            values: Values::Text,
            redrive: Redrive::Native,
        }
    }

    fn destination<'a>(&self, _: &'a Servers, work: &Path) -> Box<dyn Destination + 'a> {
        Box::new(StdoutFiles(work.to_path_buf()))
    }
}

/// The directory holding the runs' `stdout*.ndjson`.
struct StdoutFiles(PathBuf);

impl Destination for StdoutFiles {
    fn args(&self) -> Vec<String> {
        vec!["--sink".into(), "stdout".into()]
    }

    /// Every complete line printed by every run; a killed run's torn last line was never a
    /// delivered row.
    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for e in std::fs::read_dir(&self.0).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("stdout") && name.ends_with(".ndjson") {
                rows.extend(text_rows(&std::fs::read_to_string(e.path()).unwrap(), true));
            }
        }
        rows
    }
}

/// Rows of NDJSON text. With `torn_tail`, an unterminated last line is left out.
fn text_rows(text: &str, torn_tail: bool) -> Vec<Row> {
    let complete = if torn_tail {
        &text[..text.rfind('\n').map_or(0, |i| i + 1)]
    } else {
        text
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str(l) {
            Ok(v) => row(v),
            // Valid JSON serde_json does not take (`1e400`, `"\ud800"`): the two fields read
            // from the text.
            Err(_) => Row {
                id: text_field(l, "_row_id"),
                k: text_field(l, "k"),
                fields: Value::String(l.to_string()),
            },
        })
        .collect()
}

/// The string value of top-level `"name":"…"` in a row's text (suite values have no escapes).
fn text_field(line: &str, name: &str) -> String {
    let marker = format!("\"{name}\":\"");
    let at = line
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in output line {line}"))
        + marker.len();
    line[at..].split('"').next().unwrap().to_string()
}

fn row(fields: Value) -> Row {
    Row {
        id: fields["_row_id"].as_str().unwrap_or_default().to_string(),
        k: fields["k"].as_str().unwrap_or_default().to_string(),
        fields,
    }
}

struct BigQuery {
    name: &'static str,
    mode: &'static str,
    merge: bool,
}

impl SinkUnderTest for BigQuery {
    fn name(&self) -> &'static str {
        self.name
    }

    fn guarantees(&self) -> Guarantees {
        let forced = match (self.mode, self.merge) {
            (_, true) => Forced::Exact,
            ("insert-all", _) => Forced::ExactWithinAMinute,
            _ => Forced::Refused,
        };
        Guarantees {
            forced,
            after_kill: AfterKill::Exact,
            values: Values::BigQuery,
            redrive: if self.mode == "load" {
                Redrive::Refused
            } else {
                Redrive::Native
            },
        }
    }

    fn destination<'a>(&self, servers: &'a Servers, _: &Path) -> Box<dyn Destination + 'a> {
        static TABLES: AtomicUsize = AtomicUsize::new(0);
        let emu = servers.bigquery();
        let table = format!(
            "{}_{}",
            self.name.replace('-', "_"),
            TABLES.fetch_add(1, Ordering::Relaxed)
        );
        emu.create_table("bi", &table, schema());
        let sink = format!("bigquery:test-proj.bi.{table}");
        let common = [
            "--bigquery-endpoint",
            &emu.endpoint,
            "--bigquery-storage-endpoint",
            &emu.grpc_endpoint,
            "--ignore-unknown-values",
            "--load-poll-ms",
            "50",
        ];
        let dedup = if self.merge { "merge" } else { "off" };
        let with_mode = |mode: &str| -> Vec<String> {
            ["--sink", &sink, "--bigquery-mode", mode, "--dedup", dedup]
                .iter()
                .chain(&common)
                .map(|s| s.to_string())
                .collect()
        };
        let mut args = with_mode(self.mode);
        let redrive_args = (self.mode == "load").then(|| with_mode("storage-write"));
        if self.mode == "load" {
            // Several batches per run, so kills fall between jobs too.
            args.extend(["--load-batch-objects".into(), "2".into()]);
        }
        Box::new(BigQueryTable {
            emu,
            table,
            args,
            redrive_args,
        })
    }
}

/// Every column the suite's records and edge records use.
fn schema() -> Value {
    json!([
        {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
        {"name": "_source_uri", "type": "STRING"},
        {"name": "k", "type": "STRING"},
        {"name": "n", "type": "INTEGER"},
        {"name": "a", "type": "INTEGER"},
        {"name": "f", "type": "FLOAT"},
        {"name": "s", "type": "STRING"}
    ])
}

struct BigQueryTable<'a> {
    emu: &'a BqEmulator,
    table: String,
    args: Vec<String>,
    /// Load mode's: its letters are redriven per object, in storage-write.
    redrive_args: Option<Vec<String>>,
}

impl Destination for BigQueryTable<'_> {
    fn args(&self) -> Vec<String> {
        self.args.clone()
    }

    fn redrive_args(&self) -> Vec<String> {
        self.redrive_args
            .clone()
            .unwrap_or_else(|| self.args.clone())
    }

    fn rows(&self) -> Vec<Row> {
        self.emu
            .rows("bi", &self.table)
            .into_iter()
            .map(row)
            .collect()
    }
}

/// Per object, or (`batch`) two objects' rows and ledger entries per transaction.
struct Postgres {
    name: &'static str,
    batch: bool,
}

impl SinkUnderTest for Postgres {
    fn name(&self) -> &'static str {
        self.name
    }

    /// Rows, and the ledger entry of their object, commit in one transaction, and the row ID is
    /// the table's primary key (`ON CONFLICT DO NOTHING`): nothing is ever added twice.
    fn guarantees(&self) -> Guarantees {
        Guarantees {
            forced: Forced::Exact,
            after_kill: AfterKill::Exact,
            values: Values::Postgres,
            redrive: Redrive::Native,
        }
    }

    fn destination<'a>(&self, servers: &'a Servers, _: &Path) -> Box<dyn Destination + 'a> {
        static TABLES: AtomicUsize = AtomicUsize::new(0);
        let pg = servers.postgres();
        let table = format!("public.t{}", TABLES.fetch_add(1, Ordering::Relaxed));
        // The columns of the BigQuery entries' schema, in PostgreSQL's types, and the edge
        // records' other fields (`d`, `id`), which BigQuery's entries ignore.
        pg.psql(&format!(
            "CREATE TABLE {table} (_row_id text PRIMARY KEY, _source_uri text, k text, \
             n bigint, a bigint, f double precision, s text, d jsonb, id bigint)"
        ));
        Box::new(PostgresTable {
            pg,
            table,
            batch: self.batch,
        })
    }
}

struct PostgresTable<'a> {
    pg: &'a PgServer,
    table: String,
    batch: bool,
}

impl Destination for PostgresTable<'_> {
    /// Batched: redrive (one object at a time) takes the flag too, and ignores it.
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--sink".into(), self.pg.sink(&self.table)];
        if self.batch {
            args.extend(["--postgres-batch-objects".into(), "2".into()]);
        }
        args
    }

    /// Read with `psql`, independently of the sink; `d` (the edge records' 200-deep array,
    /// deeper than serde_json reads) as its text.
    fn rows(&self) -> Vec<Row> {
        let sql = format!(
            "SELECT (to_jsonb(t) || jsonb_build_object('d', t.d::text))::text FROM {} t",
            self.table
        );
        self.pg
            .psql(&sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| row(serde_json::from_str(l).unwrap()))
            .collect()
    }
}

#[cfg_attr(not(feature = "iceberg"), allow(dead_code))]
struct Iceberg;

impl SinkUnderTest for Iceberg {
    fn name(&self) -> &'static str {
        "iceberg"
    }

    /// One snapshot per batch, its ID staged in the ledger first and looked up in the table's
    /// snapshots by a rerun; an append has no unique key, so `--force` and `--ledger none` are
    /// refused.
    fn guarantees(&self) -> Guarantees {
        Guarantees {
            forced: Forced::Refused,
            after_kill: AfterKill::Exact,
            values: Values::Iceberg,
            redrive: Redrive::Native,
        }
    }

    fn destination<'a>(&self, _: &'a Servers, work: &Path) -> Box<dyn Destination + 'a> {
        // The columns of the other entries, in Iceberg's types; `d` (the edge records'
        // 200-deep array) as its JSON text.
        let table = IcebergTable::create(
            &work.join("iceberg"),
            "suite.events",
            json!([
                ["_replay_row_id", "string", true],
                ["_source_uri", "string", false],
                ["k", "string", false],
                ["n", "long", false],
                ["a", "long", false],
                ["f", "double", false],
                ["s", "string", false],
                ["d", "string", false],
                ["id", "long", false]
            ]),
        );
        Box::new(IcebergDest(table))
    }
}

#[cfg_attr(not(feature = "iceberg"), allow(dead_code))]
struct IcebergDest(IcebergTable);

impl Destination for IcebergDest {
    /// Two objects per snapshot, so that kills fall between commits too.
    fn args(&self) -> Vec<String> {
        vec![
            "--sink".into(),
            self.0.sink(),
            "--iceberg-batch-objects".into(),
            "2".into(),
        ]
    }

    /// Read with pyiceberg, independently of the sink.
    fn rows(&self) -> Vec<Row> {
        self.0
            .rows()
            .into_iter()
            .map(|fields| Row {
                id: fields["_replay_row_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                k: fields["k"].as_str().unwrap_or_default().to_string(),
                fields,
            })
            .collect()
    }
}

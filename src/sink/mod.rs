//! Rows → a destination.
//!
//! A sink is opened once per object and receives that object's rows in order; `commit` makes them
//! visible (or durable) as a unit where the destination allows it. Dropping a writer without
//! committing abandons the object's rows, which is what a failed object needs. The interface is
//! synchronous because rows are produced on a blocking decode thread; network sinks hand batches
//! to their own tasks.

pub mod bigquery;
pub mod ndjson;
pub mod postgres;

use std::str::FromStr;

use crate::error::Error;
use crate::ledger::Staged;
use crate::object::ObjectRef;
use crate::row::Row;

pub trait Sink: Send + Sync {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error>;

    /// Whether rows an earlier attempt staged (as the ledger recorded) were committed after
    /// all; if so the object is done without being read again. Blocking. Sinks that stage
    /// nothing answer `false`.
    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        let _ = staged;
        Ok(false)
    }

    /// Makes rows an earlier attempt staged, and that are not committed yet, visible now:
    /// `true` once they are (by this call, or by a commit of that attempt that landed
    /// meanwhile; sinks whose commit is atomic and at most once make either order safe),
    /// `false` when the sink cannot, and the object is then written again. Blocking.
    ///
    /// This, rather than writing the object again, is what keeps a killed run's commit from
    /// doubling the rows: its request may still reach the service after the next run has
    /// asked [`Sink::committed`].
    fn commit_staged(&self, staged: &Staged) -> Result<bool, Error> {
        let _ = staged;
        Ok(false)
    }
}

pub trait ObjectWriter: Send {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error>;
    /// Delivers everything written so far without making it visible, where the destination
    /// can stage (Storage Write `PENDING` streams): rows it refused come back, and `token` names
    /// the staged rows for the ledger to record before [`ObjectWriter::commit`]. Sinks that
    /// cannot stage do nothing here and deliver in `commit`.
    fn prepare(&mut self) -> Result<Prepared, Error> {
        Ok(Prepared::default())
    }
    /// Makes the rows visible or durable. Rows the destination refused one by one (BigQuery's
    /// per-row `invalid`) come back as [`Rejected`], for the record-level policy; everything
    /// else was accepted.
    fn commit(self: Box<Self>) -> Result<Committed, Error>;
}

/// What [`ObjectWriter::prepare`] staged.
#[derive(Debug, Default)]
pub struct Prepared {
    pub rejected: Vec<Rejected>,
    pub token: Option<String>,
}

/// What a commit accepted and refused.
#[derive(Debug, Default)]
pub struct Committed {
    pub rejected: Vec<Rejected>,
    /// How many rows the destination added, when it may add fewer than it took: `--dedup
    /// merge` leaves out rows whose ID the table holds already. `None`: every row taken.
    pub inserted: Option<u64>,
}

/// A row the destination refused, with its reason in the destination's words.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub ordinal: u64,
    pub byte_offset: u64,
    /// The row as it was sent.
    pub row: Vec<u8>,
    pub error: String,
}

/// `--sink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// `ndjson:DIR` — one file per object under DIR.
    Ndjson(std::path::PathBuf),
    /// `stdout` — rows as NDJSON on standard output.
    Stdout,
    /// `bigquery:PROJECT.DATASET.TABLE` — TABLE may hold routing placeholders
    /// (`events_{detail.type}`, see [`bigquery::route`]).
    BigQuery(bigquery::TableRef),
    /// `postgres://user@host:port/db?table=schema.table` (or `postgres:` + libpq key/values).
    Postgres(postgres::Target),
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "stdout" {
            return Ok(SinkSpec::Stdout);
        }
        if let Some(t) = s.strip_prefix("bigquery:") {
            let table: bigquery::TableRef = t.parse()?;
            // A routing template must be well formed before anything runs.
            bigquery::route::Template::new(&table)?;
            return Ok(SinkSpec::BigQuery(table));
        }
        if s.starts_with("postgres:") || s.starts_with("postgresql://") {
            return Ok(SinkSpec::Postgres(postgres::Target::parse(s)?));
        }
        if let Some(dir) = s.strip_prefix("ndjson:") {
            if dir.is_empty() {
                return Err("`ndjson:` needs a directory, e.g. ndjson:./out".into());
            }
            return Ok(SinkSpec::Ndjson(dir.into()));
        }
        Err(format!(
            "unknown sink `{s}` (expected ndjson:DIR, stdout, bigquery:PROJECT.DATASET.TABLE or postgres://HOST/DB?table=T)"
        ))
    }
}

impl SinkSpec {
    /// The sinks that need no configuration beyond the spec; `None` for BigQuery (see
    /// [`bigquery::BigQuery::connect`]).
    pub fn build_local(&self) -> Option<Box<dyn Sink>> {
        match self {
            SinkSpec::Ndjson(dir) => Some(Box::new(ndjson::NdjsonDir::new(dir.clone()))),
            SinkSpec::Stdout => Some(Box::new(ndjson::Stdout)),
            SinkSpec::BigQuery(_) | SinkSpec::Postgres(_) => None,
        }
    }
}

//! Rows → a destination. Sinks are destinations only: they are driven (by `run`, through
//! `pipeline`) and never call back into either.
//!
//! ## The sink contract
//!
//! **Per object** ([`Sink`], [`ObjectWriter`]). A sink is opened once per object
//! ([`Sink::open`], blocking, on the object's decode thread) and receives that object's rows in
//! order ([`ObjectWriter::write_row`]). Then:
//! - *prepare* — [`ObjectWriter::prepare`] delivers the rows without making them visible where
//!   the destination can stage them, and names them with a *token*; rows refused one by one come
//!   back as [`Rejected`] (for the record-level policy);
//! - *stage* — the pipeline records the token in the ledger under the object's claim (the
//!   fence: a worker that lost the claim stops here);
//! - *commit* — [`ObjectWriter::commit`] makes the rows visible or durable as a unit where the
//!   destination allows it. Dropping a writer without committing abandons the object's rows,
//!   which is what a failed object needs;
//! - *resolve* — a run that finds a token an earlier, killed run staged asks
//!   [`Sink::committed`] (did that commit land?) and else [`Sink::commit_staged`] (finish it),
//!   instead of writing the rows again. Sinks that stage nothing answer `false` to both, and the
//!   object is written again (the NDJSON sink replaces its file whole).
//!
//! **What a sink may assume about rows** ([`Row`], docs/src/rows.md, "Row contract"): each is one
//! single-line JSON object, given as pieces to write back to back, with unique keys; the row-ID
//! column (and the metadata columns asked for) are in it, with the values the pipeline chose;
//! [`Row::id`] is stable across runs for the same record (the key for insert IDs or a MERGE);
//! ordinals grow within an object. A sink must not assume a schema: records that do not fit the
//! destination are its to refuse per row ([`Rejected`]) or per object (an [`Error`]).
//!
//! **Per batch** ([`batch`]). A destination that commits many objects at once implements
//! [`batch::BatchSink`]: it plans batches, prepares a staging area whose per-object sink stages
//! rows, reports what each object staged, and commits the batch (staging one token per object in
//! the ledger first). The driver (`run::batch`) holds the objects' ledger finishes until then.
//!
//! Errors are [`Error`]s of stage `Sink`, classified transient (retried) or permanent
//! (dead-lettered); a sink never panics on a row.

pub mod batch;
pub mod bigquery;
pub mod iceberg;
pub mod ndjson;
pub mod postgres;

use std::str::FromStr;

use crate::error::Error;
use crate::ledger::Staged;
use crate::object::ObjectRef;
use crate::row::Row;

pub trait Sink: Send + Sync {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error>;

    /// The batches this sink commits objects in, when it is set to (`--postgres-batch-objects`):
    /// `replay` and `backfill` then drive them ([`batch`]) instead of a writer per object.
    fn batching(&self) -> Option<std::sync::Arc<dyn batch::BatchSink>> {
        None
    }

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
    /// `iceberg:sqlite:///PATH?warehouse=DIR#NAMESPACE.TABLE` (or `iceberg:postgres://…`): an
    /// Apache Iceberg table through a SQL, Glue, S3 Tables or REST catalog ([`iceberg::target`]).
    Iceberg(iceberg::Target),
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
        if let Some(spec) = s.strip_prefix("iceberg:") {
            if !cfg!(feature = "iceberg") {
                return Err(
                    "this firehose-replay was built without the Iceberg sink (cargo \
                            feature `iceberg`, on by default: build without \
                            --no-default-features)"
                        .into(),
                );
            }
            let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
            return Ok(SinkSpec::Iceberg(iceberg::Target::parse(spec, &cwd)?));
        }
        if let Some(dir) = s.strip_prefix("ndjson:") {
            if dir.is_empty() {
                return Err("`ndjson:` needs a directory, e.g. ndjson:./out".into());
            }
            return Ok(SinkSpec::Ndjson(dir.into()));
        }
        Err(format!(
            "unknown sink `{s}` (expected ndjson:DIR, stdout, bigquery:PROJECT.DATASET.TABLE, postgres://HOST/DB?table=T or iceberg:sqlite:///PATH?warehouse=DIR#NAMESPACE.TABLE)"
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
            SinkSpec::BigQuery(_) | SinkSpec::Postgres(_) | SinkSpec::Iceberg(_) => None,
        }
    }
}

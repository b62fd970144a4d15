//! The one way every entry point builds the engine: a plain-data [`Setup`] that the CLI
//! (`replay`, `backfill`, `redrive`, `invoke`, `worker`) and the Lambda function fill from their
//! flags or `FIREHOSE_REPLAY_*` variables, [`Setup::validate`] refusing every mode combination
//! that cannot work (each refusal written once, in [`validate`]), and [`Setup::build`] turning it
//! into the [`Shared`] engine handle (sink, ledger, dead letters, retries).
//!
//! Why plain data: the entry points differ only in where values come from (a command line, the
//! environment, a Lambda's defaults); what they mean, which combinations are refused and how the
//! parts are connected must not differ, so none of it lives beside `clap`.
//!
//! Each sink's own options are a struct of their own ([`BigQueryOptions`], [`PostgresOptions`]):
//! a new sink adds one struct (a file here), one field of [`Setup`] and one arm in
//! [`Setup::build`]'s sink match.

mod bigquery;
mod build;
mod dead_letters;
mod iceberg;
mod ledger;
mod postgres;
#[cfg(test)]
mod tests;
pub mod validate;

use std::path::PathBuf;
use std::time::Duration;

use crate::ledger::LedgerSpec;
use crate::settings::Settings;
use crate::sink::bigquery::SchemaEvolution;
use crate::sink::SinkSpec;

use super::retry::ObjectRetry;

pub use self::bigquery::BigQueryOptions;
pub use self::dead_letters::DeadLetterSetup;
pub use self::iceberg::{iceberg_row_id_column, IcebergOptions};
pub use self::ledger::default_ledger;
pub use self::postgres::PostgresOptions;
pub use self::validate::{Refusal, SetupError};

/// Which entry point runs the engine: some modes run in some of them only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Entry {
    /// `replay` and `backfill`: a fixed or listed set of objects.
    #[default]
    Replay,
    /// `redrive`: dead letters, object by object.
    Redrive,
    /// The Lambda function (and `invoke`, which runs its handler locally).
    Lambda,
    /// The SQS worker.
    Worker,
}

/// Everything a run is configured with, as plain data.
#[derive(Debug, Clone)]
pub struct Setup {
    pub entry: Entry,
    /// How objects are decoded and turned into rows.
    pub settings: Settings,
    /// Where rows go.
    pub sink: SinkSpec,
    /// What sinks with a schema do about tables and columns (BigQuery, PostgreSQL).
    pub tables: TableOptions,
    pub bigquery: BigQueryOptions,
    pub postgres: PostgresOptions,
    pub iceberg: IcebergOptions,
    pub ledger: LedgerSetup,
    pub dead_letter: DeadLetterSetup,
    /// Object-level retries of transient failures.
    pub retry: ObjectRetry,
    /// Budget per object, retries included (`--object-timeout`).
    pub object_timeout: Option<Duration>,
    /// Objects processed at once.
    pub concurrency: usize,
    /// Local disk the run may hold in work in progress (`--max-scratch-bytes`).
    pub max_scratch_bytes: u64,
}

/// `--schema-evolution` and `--create-table auto`, for every sink that has tables
/// (`--create-table auto` for Iceberg too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableOptions {
    pub schema_evolution: SchemaEvolution,
    /// `--create-table auto`: a missing table is created from the first row that reaches it.
    pub create_auto: bool,
}

/// The ledger and what overrides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSetup {
    /// `--ledger`; `None`: the sink's default ([`default_ledger`]).
    pub spec: Option<LedgerSpec>,
    /// `--force`: process objects the ledger has as done.
    pub force: bool,
    /// `--allow-duplicates`: let `--force` or `--ledger none` write rows again where nothing
    /// removes the copies.
    pub allow_duplicates: bool,
    /// How long an S3 ledger claim holds before another worker may take the object over.
    pub claim_ttl: Duration,
}

impl Default for LedgerSetup {
    fn default() -> Self {
        LedgerSetup {
            spec: None,
            force: false,
            allow_duplicates: false,
            claim_ttl: Duration::from_secs(900),
        }
    }
}

impl Setup {
    /// A setup with the library's defaults for `entry` and `sink` (what tests and embedders
    /// start from; the CLI fills every field from its flags).
    pub fn new(entry: Entry, sink: SinkSpec) -> Setup {
        Setup {
            entry,
            settings: Settings::default(),
            sink,
            tables: TableOptions::default(),
            bigquery: BigQueryOptions::default(),
            postgres: PostgresOptions::default(),
            iceberg: IcebergOptions::default(),
            ledger: LedgerSetup::default(),
            dead_letter: DeadLetterSetup::default(),
            retry: ObjectRetry::default(),
            object_timeout: None,
            concurrency: 2,
            max_scratch_bytes: crate::scratch::DEFAULT_MAX_SCRATCH_BYTES,
        }
    }

    /// `--sink bigquery:… --bigquery-mode load`: objects batched into load jobs.
    pub fn load_mode(&self) -> bool {
        matches!(self.sink, SinkSpec::BigQuery(_))
            && self.bigquery.mode == crate::sink::bigquery::Mode::Load
    }

    /// Objects commit in batches (load mode, `--postgres-batch-objects`, Iceberg): listed up
    /// front.
    pub fn batched(&self) -> bool {
        self.load_mode()
            || (matches!(self.sink, SinkSpec::Postgres(_)) && self.postgres.batch.is_some())
            || matches!(self.sink, SinkSpec::Iceberg(_))
    }

    /// The ledger the run uses: `--ledger`, or the sink's default.
    pub fn ledger_spec(&self) -> LedgerSpec {
        self.ledger
            .spec
            .clone()
            .unwrap_or_else(|| default_ledger(&self.sink))
    }

    /// What the run writes locally: the NDJSON output directory, the dead-letter directory and
    /// the ledger file (so local sources never read them back).
    pub fn local_paths(&self) -> Vec<PathBuf> {
        let mut own = Vec::new();
        if let SinkSpec::Ndjson(dir) = &self.sink {
            own.push(dir.clone());
        }
        if let Some(dir) = self.dead_letter.spec.local_dir() {
            own.push(dir.to_path_buf());
        }
        if let LedgerSpec::File(path) = self.ledger_spec() {
            own.push(path);
        }
        own
    }
}

//! Every mode combination that cannot work, refused once, before anything runs: each refusal is
//! a [`Refusal`] variant, worded here and nowhere else. Refusals are usage errors (the binary
//! exits 2): running again changes nothing until a flag does.

use crate::error::Error;
use crate::ledger::LedgerSpec;
use crate::sink::bigquery::{self, merge::Dedup, route::Template, Mode, SchemaEvolution};
use crate::sink::SinkSpec;

use super::{Entry, Setup};

/// Why a setup cannot build the engine.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration cannot work (a usage error).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A service the engine needs could not be set up (credentials, a connection, the ledger):
    /// classified by the library error it carries.
    #[error("{0}")]
    Service(#[from] Error),
}

impl SetupError {
    /// A usage error (exit 2) rather than a service that failed.
    pub fn is_usage(&self) -> bool {
        matches!(self, SetupError::Refused(_))
    }
}

/// A combination of options refused before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "--force with --bigquery-mode {mode} would write the rows of objects the ledger has \
         as done a second time, and neither Storage Write nor load jobs remove copies. \
         Safe options: rerun without --force (done objects are skipped, objects a killed run \
         staged are finished from the ledger); --dedup merge (only rows the table lacks are \
         added); to replace an object's rows, delete them \
         from the table first, then rerun with --force --allow-duplicates"
    )]
    ForceDuplicates { mode: Mode },
    #[error(
        "--ledger none with --bigquery-mode {mode}: without a ledger every run writes every \
         object again, and neither Storage Write nor load jobs remove copies. Safe options: \
         leave --ledger out (a file under .firehose-replay/), or --ledger file:PATH, or \
         --ledger s3://bucket/prefix/ for several workers, or --dedup merge (only rows the \
         table lacks are added); pass --allow-duplicates if no \
         other run will ever see these objects"
    )]
    NoLedgerDuplicates { mode: Mode },
    #[error(
        "--payload-column {0}: `{0}` is a generated column (row ID or metadata); \
         name the payload column otherwise, e.g. --payload-column raw"
    )]
    PayloadColumnGenerated(String),
    #[error(
        "--dedup merge merges into a BigQuery table (--sink bigquery:…); other sinks are kept \
         exact by the ledger"
    )]
    MergeOutsideBigQuery,
    #[error(
        "--dedup merge works with --bigquery-mode storage-write or load (rows streamed by \
         insertAll cannot be merged for 30 minutes); insert-all deduplicates by insertId \
         and the _row_id view"
    )]
    MergeInsertAll,
    #[error(
        "--schema-evolution {0} adds columns to a table (--sink bigquery:…, postgres://… or \
         iceberg:…); NDJSON files and stdout have no schema"
    )]
    EvolutionWithoutSchema(SchemaEvolution),
    #[error(
        "--schema-evolution add-columns with --bigquery-mode storage-write --dedup merge is \
         not supported yet (the staging table and the target would both have to grow): use \
         --dedup off, or add the columns first"
    )]
    EvolutionWithStorageWriteMerge,
    #[error("--dedup merge in --bigquery-mode load takes one table, not a routed --sink")]
    LoadMergeRouted,
    #[error(
        "a routed --sink in --bigquery-mode load creates its tables with --create-table \
         auto, not from one --create-table-schema file"
    )]
    LoadRoutedSchemaFile,
    #[error(
        "--dedup merge in --bigquery-mode load stages rows in a copy of the table's schema: \
         it does not take --schema-evolution add-columns or --create-table auto"
    )]
    LoadMergeEvolving,
    #[error(
        "--create-table auto and --create-table-schema both say how to create the table: \
         give one"
    )]
    TwoWaysToCreate,
    #[error(
        "--create-table auto is for --sink bigquery:…, postgres://… and iceberg:…, \
         --route-default for bigquery:… and postgres://…"
    )]
    TableFlagsElsewhere,
    /// A routing template (`--sink`) or `--route-default` that is not one.
    #[error("{0}")]
    Template(String),
    #[error(
        "--route-default {default}: the table `{table}` routes on no record field, so no row \
         can lack one"
    )]
    RouteDefaultWithoutFields { default: String, table: String },
    #[error(
        "--dedup merge merges into one existing table: it works neither with a routed table \
         (`{0}`) nor with --create-table auto; create the table first, or deduplicate \
         by the _row_id column in a view"
    )]
    MergeRoutedOrAuto(String),
    #[error(
        "--bigquery-endpoint points REST at another server; give the Storage \
         Write API's too (--bigquery-storage-endpoint), or use \
         --bigquery-mode insert-all"
    )]
    RestEndpointWithoutStorage,
    #[error("the postgres sink keys rows by their row ID: --row-id-column cannot be empty")]
    PostgresWithoutRowId,
    #[error(
        "--ledger postgres keeps the ledger beside a PostgreSQL sink's table \
         (--sink postgres://…)"
    )]
    PostgresLedgerElsewhere,
    #[error(
        "--bigquery-mode load batches objects into load jobs in `replay` and \
         `backfill`; redrive into the same table with --bigquery-mode storage-write"
    )]
    LoadModeInRedrive,
    #[error(
        "FIREHOSE_REPLAY_BIGQUERY_MODE=load batches many objects into one load job and runs in \
         `replay`/`backfill`; a Lambda writes each notification's objects with storage-write \
         (the default) or insert-all"
    )]
    LoadModePerObject,
    /// Found when connecting, before the first object is read.
    #[error(
        "table {0} does not exist and nothing would create it: create it, or give \
         --create-table auto (from the first row) or --create-table-schema FILE"
    )]
    MissingTable(String),
    #[error(
        "--force with --sink iceberg:… would append the rows of objects the ledger has as \
         done a second time, and an Iceberg append has no unique key to drop copies. Rerun \
         without --force (done objects are skipped, objects a killed run staged are resolved \
         from the table's snapshots); to replace an object's rows, delete them from the \
         table first, then rerun with --force --allow-duplicates"
    )]
    IcebergForce,
    #[error(
        "--ledger none with --sink iceberg:…: without a ledger every run appends every \
         object again. Leave --ledger out (a file under .firehose-replay/), or use --ledger \
         file:PATH or s3://bucket/prefix/; pass --allow-duplicates if no other run will ever \
         see these objects"
    )]
    IcebergWithoutLedger,
    #[error(
        "--cluster-by shapes BigQuery tables; an Iceberg table is not clustered (its sort \
         order is the table's own)"
    )]
    IcebergClusterBy,
    /// `--partition-by` with the Iceberg sink: not for an existing table, or not parsed.
    #[error("{0}")]
    IcebergPartitionBy(String),
    /// The Iceberg table cannot be written as it is (missing, a column type this sink cannot
    /// write).
    #[error("{0}")]
    IcebergTable(String),
}

impl Setup {
    /// Refuses every combination of options that cannot work; `Ok` when the engine can be
    /// built from them. Pure: reads nothing, connects to nothing.
    pub fn validate(&self) -> Result<(), Refusal> {
        self.refuse_load_mode_here()?;
        self.refuse_duplicating_runs()?;
        self.refuse_iceberg_duplicates()?;
        self.refuse_colliding_columns()?;
        self.refuse_table_flags()?;
        self.refuse_bigquery_conflicts()?;
        self.refuse_postgres_conflicts()
    }

    /// Load mode batches many objects into one job: `replay` and `backfill` only.
    fn refuse_load_mode_here(&self) -> Result<(), Refusal> {
        match self.entry {
            _ if !self.load_mode() => Ok(()),
            Entry::Replay => Ok(()),
            // Refused before any letter is read: run per object, load mode would fail every
            // letter's object again and rewrite its letter with that refusal.
            Entry::Redrive => Err(Refusal::LoadModeInRedrive),
            Entry::Lambda | Entry::Worker => Err(Refusal::LoadModePerObject),
        }
    }

    /// `--force` and `--ledger none` into BigQuery's storage-write or load mode write rows a
    /// second time that nothing removes: refused unless `--allow-duplicates` is given.
    fn refuse_duplicating_runs(&self) -> Result<(), Refusal> {
        let mode = match &self.sink {
            SinkSpec::BigQuery(_) => self.bigquery.mode,
            _ => return Ok(()),
        };
        if self.ledger.allow_duplicates || mode == Mode::InsertAll || self.merging() {
            // (--dedup merge: a replayed row's ID is in the table already, so it is not added.)
            return Ok(());
        }
        if self.ledger.force {
            return Err(Refusal::ForceDuplicates { mode });
        }
        if self.ledger.spec == Some(LedgerSpec::None) {
            return Err(Refusal::NoLedgerDuplicates { mode });
        }
        Ok(())
    }

    /// A payload column named like a generated column would give rows two keys of one name.
    fn refuse_colliding_columns(&self) -> Result<(), Refusal> {
        if let Some(name) = &self.settings.payload_column {
            let generated = crate::row::generated_columns(self.settings.row_id_column.as_deref());
            if generated.iter().any(|g| g.eq_ignore_ascii_case(name)) {
                return Err(Refusal::PayloadColumnGenerated(name.clone()));
            }
        }
        Ok(())
    }

    /// Flags about tables mean something only for sinks that have them.
    fn refuse_table_flags(&self) -> Result<(), Refusal> {
        let bigquery = matches!(self.sink, SinkSpec::BigQuery(_));
        let postgres = matches!(self.sink, SinkSpec::Postgres(_));
        let iceberg = matches!(self.sink, SinkSpec::Iceberg(_));
        if self.merging() && !bigquery {
            return Err(Refusal::MergeOutsideBigQuery);
        }
        let evolving = self.tables.schema_evolution != SchemaEvolution::Off;
        if evolving && !bigquery && !postgres && !iceberg {
            return Err(Refusal::EvolutionWithoutSchema(
                self.tables.schema_evolution,
            ));
        }
        if iceberg && !self.bigquery.cluster_by.is_empty() {
            return Err(Refusal::IcebergClusterBy);
        }
        if let (true, Some(spec)) = (iceberg, &self.bigquery.partition_by) {
            if !self.tables.create_auto {
                return Err(Refusal::IcebergPartitionBy(
                    "--partition-by with the Iceberg sink shapes the table --create-table auto \
                     creates; an existing table is written by its own partition spec"
                        .into(),
                ));
            }
            #[cfg(feature = "iceberg")]
            crate::sink::iceberg::partition_by::parse(spec).map_err(Refusal::IcebergPartitionBy)?;
            #[cfg(not(feature = "iceberg"))]
            let _ = spec;
        }
        if self.tables.create_auto && self.bigquery.create_table_schema.is_some() {
            return Err(Refusal::TwoWaysToCreate);
        }
        if !bigquery
            && !postgres
            && ((self.tables.create_auto && !iceberg) || self.bigquery.route_default.is_some())
        {
            return Err(Refusal::TableFlagsElsewhere);
        }
        Ok(())
    }

    /// BigQuery's modes, routing and `--dedup merge`.
    fn refuse_bigquery_conflicts(&self) -> Result<(), Refusal> {
        let SinkSpec::BigQuery(table) = &self.sink else {
            return Ok(());
        };
        let b = &self.bigquery;
        let evolving = self.tables.schema_evolution != SchemaEvolution::Off;
        let template = Template::new(table).map_err(Refusal::Template)?;
        let routed = template.is_routed();
        if self.merging() && b.mode == Mode::InsertAll {
            return Err(Refusal::MergeInsertAll);
        }
        if evolving && self.merging() && b.mode == Mode::StorageWrite {
            return Err(Refusal::EvolutionWithStorageWriteMerge);
        }
        if self.load_mode() {
            if routed && self.merging() {
                return Err(Refusal::LoadMergeRouted);
            }
            if routed && b.create_table_schema.is_some() {
                return Err(Refusal::LoadRoutedSchemaFile);
            }
            let grows = self.tables.schema_evolution == SchemaEvolution::AddColumns
                || self.tables.create_auto;
            if self.merging() && grows {
                return Err(Refusal::LoadMergeEvolving);
            }
        }
        if let Some(d) = &b.route_default {
            if !template.has_fields() {
                return Err(Refusal::RouteDefaultWithoutFields {
                    default: d.clone(),
                    table: table.to_string(),
                });
            }
            template.sibling(d).map_err(Refusal::Template)?;
        }
        if self.merging() && (routed || self.tables.create_auto) {
            return Err(Refusal::MergeRoutedOrAuto(table.to_string()));
        }
        if b.mode == Mode::StorageWrite && b.endpoint.is_some() && b.storage_endpoint.is_none() {
            return Err(Refusal::RestEndpointWithoutStorage);
        }
        Ok(())
    }

    /// The PostgreSQL sink keys rows by their row ID; its ledger lives beside its table.
    fn refuse_postgres_conflicts(&self) -> Result<(), Refusal> {
        let postgres = matches!(self.sink, SinkSpec::Postgres(_));
        if postgres && self.settings.row_id_column.is_none() {
            return Err(Refusal::PostgresWithoutRowId);
        }
        if !postgres && self.ledger_spec() == LedgerSpec::Postgres {
            return Err(Refusal::PostgresLedgerElsewhere);
        }
        Ok(())
    }

    /// `--dedup merge` (for BigQuery; refused elsewhere).
    pub(super) fn merging(&self) -> bool {
        self.bigquery.dedup == Dedup::Merge
    }
}

/// The refusal for a destination found missing when connecting.
pub(super) fn from_preflight(r: bigquery::preflight::Refusal) -> SetupError {
    match r {
        bigquery::preflight::Refusal::MissingTable(t) => {
            Refusal::MissingTable(t.to_string()).into()
        }
        bigquery::preflight::Refusal::Service(e) => e.into(),
    }
}

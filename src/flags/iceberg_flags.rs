//! Flags of `--sink iceberg:…`, the checks of their combinations, and how they become the sink
//! (per object, and per batch in `replay`/`backfill`). Kept in this one file so the sink's
//! wiring moves as one piece.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;

use super::Opts;
use firehose_replay::ledger::LedgerSpec;
use firehose_replay::run::{Job, Shared, Summary};
use firehose_replay::sink::iceberg::{self, Target};
use firehose_replay::sink::SinkSpec;

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Apache Iceberg")]
pub(crate) struct IcebergOpts {
    /// Data file size (MiB): a Parquet data file is closed once past it (fewer, larger files
    /// read faster; a batch's last file is smaller).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_TARGET_FILE_MIB",
        default_value_t = 256
    )]
    pub(crate) iceberg_target_file_mib: u64,
    /// Row group size (MiB, encoded): what the writer holds in memory per data file being
    /// written.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_ROW_GROUP_MIB",
        default_value_t = 64
    )]
    pub(crate) iceberg_row_group_mib: u64,
    /// Objects per commit (snapshot) at most, in `replay` and `backfill`.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_BATCH_OBJECTS",
        default_value_t = 500
    )]
    pub(crate) iceberg_batch_objects: usize,
    /// Listed (compressed) MiB per commit at most, in `replay` and `backfill`.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_BATCH_MIB",
        default_value_t = 4096
    )]
    pub(crate) iceberg_batch_mib: u64,
}

/// The row-ID column with an Iceberg sink: `--row-id-column _row_id` (the default) becomes
/// [`iceberg::ROW_ID_COLUMN`], since `_row_id` is a reserved Iceberg v3 field name.
pub(crate) fn row_id_column(opts: &Opts) -> String {
    let c = &opts.output.row_id_column;
    if matches!(opts.output.sink, SinkSpec::Iceberg(_)) && c == "_row_id" {
        iceberg::ROW_ID_COLUMN.to_string()
    } else {
        c.clone()
    }
}

/// An Iceberg append cannot enforce a unique key: `--force` and `--ledger none` would add the
/// rows again, so both are refused unless `--allow-duplicates`.
pub(crate) fn refuse_duplicating_runs(opts: &Opts) -> anyhow::Result<()> {
    if !matches!(opts.output.sink, SinkSpec::Iceberg(_)) || opts.exactly_once.allow_duplicates {
        return Ok(());
    }
    if opts.exactly_once.force {
        bail!(
            "--force with --sink iceberg:… would append the rows of objects the ledger has as \
             done a second time, and an Iceberg append has no unique key to drop copies. Rerun \
             without --force (done objects are skipped, objects a killed run staged are resolved \
             from the table's snapshots); to replace an object's rows, delete them from the \
             table first, then rerun with --force --allow-duplicates"
        );
    }
    if opts.exactly_once.ledger == Some(LedgerSpec::None) {
        bail!(
            "--ledger none with --sink iceberg:…: without a ledger every run appends every \
             object again. Leave --ledger out (a file under .firehose-replay/), or use --ledger \
             file:PATH or s3://bucket/prefix/; pass --allow-duplicates if no other run will ever \
             see these objects"
        );
    }
    Ok(())
}

/// The CLI's default ledger for an Iceberg table: a file under `.firehose-replay/`.
pub(crate) fn default_ledger(target: &Target) -> LedgerSpec {
    LedgerSpec::File(std::path::PathBuf::from(format!(
        ".firehose-replay/ledger-iceberg-{}-{}.jsonl",
        target.catalog,
        target.table_name()
    )))
}

#[cfg(feature = "iceberg")]
impl IcebergOpts {
    fn settings(&self, opts: &Opts) -> iceberg::Settings {
        let mib = |m: u64| m.max(1).saturating_mul(1 << 20);
        let create_auto =
            (opts.bigquery.create_table == super::CreateTableChoice::Auto).then(|| {
                iceberg::create::AutoCreate {
                    row_id_column: Some(row_id_column(opts)).filter(|c| !c.is_empty()),
                    metadata: opts.output.metadata_columns,
                    payload_column: opts.output.payload_column.clone().filter(|c| !c.is_empty()),
                }
            });
        iceberg::Settings {
            target_file_bytes: mib(self.iceberg_target_file_mib),
            row_group_bytes: mib(self.iceberg_row_group_mib),
            batch_objects: self.iceberg_batch_objects.max(1),
            batch_bytes: mib(self.iceberg_batch_mib),
            spool_dir: None,
            create_auto,
        }
    }

    /// The per-object sink (redrive, invoke, Lambda, worker).
    pub(crate) async fn connect(
        &self,
        opts: &Opts,
        target: &Target,
    ) -> anyhow::Result<Arc<iceberg::Iceberg>> {
        match iceberg::Iceberg::connect(target.clone(), self.settings(opts)).await {
            Ok(s) => Ok(Arc::new(s)),
            // A usage error (exit 2): no library error in the chain.
            Err(iceberg::Refusal::Usage(why)) => bail!("{why}"),
            Err(iceberg::Refusal::Service(e)) => Err(e.into()),
        }
    }

    /// `replay` and `backfill`: the objects in batches, one snapshot each, through the
    /// batching driver. (The batch sink connects on its own, beside the per-object sink
    /// `shared` holds: opening a catalog and loading a table is cheap next to a batch.)
    pub(crate) async fn run_batches(
        &self,
        opts: &Opts,
        target: &Target,
        jobs: Vec<Job>,
        shared: Shared,
        concurrency: usize,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Summary> {
        let batches = iceberg::batch::IcebergBatches {
            sink: self.connect(opts, target).await?,
        };
        Ok(firehose_replay::run::batch::run(jobs, shared, concurrency, &batches, stop).await)
    }
}

#[cfg(not(feature = "iceberg"))]
impl IcebergOpts {
    /// Unreachable in practice: `--sink iceberg:` is refused when parsed in such a build.
    pub(crate) async fn connect(
        &self,
        _: &Opts,
        _: &Target,
    ) -> anyhow::Result<Arc<dyn firehose_replay::sink::Sink>> {
        bail!("this firehose-replay was built without the Iceberg sink (cargo feature `iceberg`)")
    }

    pub(crate) async fn run_batches(
        &self,
        _: &Opts,
        _: &Target,
        _: Vec<Job>,
        _: Shared,
        _: usize,
        _: Arc<AtomicBool>,
    ) -> anyhow::Result<Summary> {
        bail!("this firehose-replay was built without the Iceberg sink (cargo feature `iceberg`)")
    }
}

//! Flag combinations that cannot work, refused before anything runs (usage errors, exit 2).

use anyhow::bail;

use firehose_replay::ledger::LedgerSpec;
use firehose_replay::sink::bigquery;
use firehose_replay::sink::SinkSpec;

use super::{CreateTableChoice, Opts};

// --- exactly-once guards (issue 14) ---
/// `--force` and `--ledger none` into BigQuery's storage-write or load mode write rows a second
/// time that nothing removes: refused (exit 2) unless `--allow-duplicates` is given.
pub(crate) fn refuse_duplicating_runs(opts: &Opts) -> anyhow::Result<()> {
    let mode = match &opts.output.sink {
        SinkSpec::BigQuery(_) => opts.bigquery.bigquery_mode,
        _ => return Ok(()),
    };
    if opts.exactly_once.allow_duplicates
        || mode == bigquery::Mode::InsertAll
        || opts.bigquery.dedup == bigquery::merge::Dedup::Merge
    {
        // (--dedup merge: a replayed row's ID is in the table already, so it is not added.)
        return Ok(());
    }
    let name = match mode {
        bigquery::Mode::Load => "load",
        _ => "storage-write",
    };
    if opts.exactly_once.force {
        bail!(
            "--force with --bigquery-mode {name} would write the rows of objects the ledger has \
             as done a second time, and neither Storage Write nor load jobs remove copies. \
             Safe options: rerun without --force (done objects are skipped, objects a killed run \
             staged are finished from the ledger); --dedup merge (only rows the table lacks are \
             added); to replace an object's rows, delete them \
             from the table first, then rerun with --force --allow-duplicates"
        );
    }
    if opts.exactly_once.ledger == Some(LedgerSpec::None) {
        bail!(
            "--ledger none with --bigquery-mode {name}: without a ledger every run writes every \
             object again, and neither Storage Write nor load jobs remove copies. Safe options: \
             leave --ledger out (a file under .firehose-replay/), or --ledger file:PATH, or \
             --ledger s3://bucket/prefix/ for several workers, or --dedup merge (only rows the \
             table lacks are added); pass --allow-duplicates if no \
             other run will ever see these objects"
        );
    }
    Ok(())
}

/// `--payload-column` named like a generated column would give rows two keys of one name;
/// `--dedup merge` means nothing outside BigQuery. Both are usage errors (exit 2).
pub(crate) fn refuse_colliding_columns(opts: &Opts) -> anyhow::Result<()> {
    if let Some(name) = opts
        .output
        .payload_column
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        let generated = firehose_replay::row::generated_columns(
            Some(opts.output.row_id_column.as_str()).filter(|c| !c.is_empty()),
        );
        if generated.iter().any(|g| g.eq_ignore_ascii_case(name)) {
            bail!(
                "--payload-column {name}: `{name}` is a generated column (row ID or metadata); \
                 name the payload column otherwise, e.g. --payload-column raw"
            );
        }
    }
    if opts.bigquery.dedup == bigquery::merge::Dedup::Merge
        && !matches!(opts.output.sink, SinkSpec::BigQuery(_))
    {
        bail!(
            "--dedup merge merges into a BigQuery table (--sink bigquery:…); other sinks are kept \
             exact by the ledger"
        );
    }
    let evolving = opts.bigquery.schema_evolution != bigquery::SchemaEvolution::Off;
    if evolving
        && !matches!(
            opts.output.sink,
            SinkSpec::BigQuery(_) | SinkSpec::Postgres(_)
        )
    {
        bail!(
            "--schema-evolution {} adds columns to a BigQuery table (--sink bigquery:…) or a \
             PostgreSQL one (--sink postgres://…); other sinks have no schema",
            opts.bigquery.schema_evolution
        );
    }
    if evolving
        && opts.bigquery.dedup == bigquery::merge::Dedup::Merge
        && opts.bigquery.bigquery_mode == bigquery::Mode::StorageWrite
    {
        bail!(
            "--schema-evolution add-columns with --bigquery-mode storage-write --dedup merge is \
             not supported yet (the staging table and the target would both have to grow): use \
             --dedup off, or add the columns first"
        );
    }
    refuse_load_mode_conflicts(opts)
}

/// Load-mode combinations of issue 18's flags that cannot work.
pub(crate) fn refuse_load_mode_conflicts(opts: &Opts) -> anyhow::Result<()> {
    let b = &opts.bigquery;
    let evolving = b.schema_evolution == bigquery::SchemaEvolution::AddColumns
        || b.create_table == CreateTableChoice::Auto;
    let routed = match &opts.output.sink {
        SinkSpec::BigQuery(t) => bigquery::route::Template::new(t).is_ok_and(|t| t.is_routed()),
        _ => false,
    };
    if opts.load_mode() && routed && b.dedup == bigquery::merge::Dedup::Merge {
        bail!("--dedup merge in --bigquery-mode load takes one table, not a routed --sink");
    }
    if opts.load_mode() && routed && b.create_table_schema.is_some() {
        bail!(
            "a routed --sink in --bigquery-mode load creates its tables with --create-table \
             auto, not from one --create-table-schema file"
        );
    }
    if opts.load_mode() && b.dedup == bigquery::merge::Dedup::Merge && evolving {
        bail!(
            "--dedup merge in --bigquery-mode load stages rows in a copy of the table's schema: \
             it does not take --schema-evolution add-columns or --create-table auto"
        );
    }
    Ok(())
}

/// Routing and `--create-table auto` need flags that make sense with them: usage errors
/// (exit 2) otherwise. (Load mode is not refused: it routes by its own plan.)
pub(crate) fn refuse_routing_conflicts(opts: &Opts) -> anyhow::Result<()> {
    let auto = opts.bigquery.create_table == CreateTableChoice::Auto;
    if auto && opts.bigquery.create_table_schema.is_some() {
        bail!(
            "--create-table auto and --create-table-schema both say how to create the table: \
             give one"
        );
    }
    let SinkSpec::BigQuery(table) = &opts.output.sink else {
        let auto_elsewhere = auto && !matches!(opts.output.sink, SinkSpec::Postgres(_));
        let pg = matches!(opts.output.sink, SinkSpec::Postgres(_));
        if auto_elsewhere || (opts.bigquery.route_default.is_some() && !pg) {
            bail!(
                "--create-table auto and --route-default are for --sink bigquery:… and \
                 postgres://…"
            );
        }
        return Ok(());
    };
    let template = bigquery::route::Template::new(table).map_err(anyhow::Error::msg)?;
    if let Some(d) = opts
        .bigquery
        .route_default
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        if !template.has_fields() {
            bail!(
                "--route-default {d}: the table `{table}` routes on no record field, so no row \
                 can lack one"
            );
        }
        template.sibling(d).map_err(anyhow::Error::msg)?;
    }
    if opts.bigquery.dedup == bigquery::merge::Dedup::Merge && (template.is_routed() || auto) {
        bail!(
            "--dedup merge merges into one existing table: it works neither with a routed table \
             (`{table}`) nor with --create-table auto; create the table first, or deduplicate \
             by the _row_id column in a view"
        );
    }
    Ok(())
}
// --- end of exactly-once guards ---

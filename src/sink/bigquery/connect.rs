//! The `connect*` entry points: one connection ([`super::connect_rest`]) and, from it, the sink
//! of the configured mode — per table, routed, merging — or load mode's job client.

use std::sync::Arc;
use std::time::Duration;

use super::api_error::sink_error as setup_error;
use super::*;
use crate::error::{Class, Error};
use crate::sink::Sink;

/// What each table's sink is built on: one connection, shared by every table.
#[derive(Clone)]
pub(crate) enum Transport {
    /// The gRPC client, and the REST connection (tables.get/patch for schema evolution).
    StorageWrite(Box<storage_write::rpc::Rpc>, Connected),
    InsertAll(Connected),
}

/// The sink of one table in `config`'s mode: the one place a per-table sink is built, for the
/// plain sink and for each table a router opens.
pub(crate) fn table_sink(
    config: &Config,
    transport: &Transport,
    table: &TableRef,
) -> Arc<dyn Sink> {
    match transport {
        Transport::StorageWrite(rpc, c) => {
            let sink = storage_write::StorageWrite::new(
                (**rpc).clone(),
                table,
                config.limits.clone(),
                config.flags.ignore_unknown_values,
            );
            Arc::new(match evolver(config, c, table) {
                Some(e) => sink.with_evolution(e),
                None => sink,
            })
        }
        Transport::InsertAll(c) => Arc::new(BigQuery::on(c, table, config)),
    }
}

/// The router's factory: each table created when missing (`--create-table auto` from the row
/// that first needs it, or `--create-table-schema`), then its sink. Runs on the blocking
/// thread that writes the row.
fn table_factory(config: Config, c: Connected, transport: Transport) -> route::Factory {
    let handle = tokio::runtime::Handle::current();
    Arc::new(move |table: &TableRef, first_row: Option<&[u8]>| {
        // Sinks capture the runtime they run on; the calling thread may be outside it.
        let _runtime = handle.enter();
        if let Some(row) = first_row {
            if let Some(auto) = &config.create_auto {
                handle.block_on(autocreate::ensure(&c, table, auto, row))?;
            } else if let Some(
                create @ CreateTable {
                    schema: CreateSchema::File(file),
                    ..
                },
            ) = &config.create_table
            {
                handle.block_on(table::create_if_missing(
                    &c.base,
                    c.http.clone(),
                    c.auth.clone(),
                    table,
                    create,
                    file,
                ))?;
            }
        }
        Ok(table_sink(&config, &transport, table))
    })
}

/// The sink for `--bigquery-mode insert-all` or `storage-write`. (`load` batches objects and
/// is driven by `run::batch` through `load::batch`, not through a per-object sink.) Call
/// within a Tokio runtime.
pub async fn connect(config: Config) -> Result<Arc<dyn Sink>, Error> {
    connect_inner(config, false).await.map_err(|r| match r {
        preflight::Refusal::Service(e) => e,
        // (Not checked here.)
        r @ preflight::Refusal::MissingTable(_) => setup_error(Class::Permanent, r.to_string()),
    })
}

/// [`connect`], refusing a destination that cannot take the run's rows before any object is
/// read ([`preflight::check`], over the same connection: one token).
pub async fn connect_checked(config: Config) -> Result<Arc<dyn Sink>, preflight::Refusal> {
    connect_inner(config, true).await
}

async fn connect_inner(config: Config, check: bool) -> Result<Arc<dyn Sink>, preflight::Refusal> {
    use preflight::Refusal::Service;
    // Combinations `run::Setup::validate` refuses (with the words for people) are not built.
    let unsupported = |what: &str| {
        Service(setup_error(
            Class::Permanent,
            format!("unsupported BigQuery configuration: {what}"),
        ))
    };
    if config.mode == Mode::Load {
        return Err(unsupported("load mode is not a per-object sink"));
    }
    if config.mode == Mode::InsertAll && config.merge.is_some() {
        return Err(unsupported("--dedup merge with insert-all"));
    }
    let template = route::Template::new(&config.table)
        .map_err(|e| Service(setup_error(Class::Permanent, e)))?;
    let routed = template.is_routed() || config.create_auto.is_some();
    if routed && config.merge.is_some() {
        return Err(unsupported(
            "--dedup merge with a routed table or --create-table auto",
        ));
    }
    if config.merge.is_some() && config.schema_evolution != SchemaEvolution::Off {
        return Err(unsupported("--dedup merge with --schema-evolution"));
    }
    let endpoint = match (config.mode, &config.storage_endpoint, &config.endpoint) {
        (Mode::InsertAll, _, _) => None,
        (_, Some(e), _) => Some(e.clone()),
        (_, None, None) => Some(storage_write::DEFAULT_STORAGE_ENDPOINT.to_string()),
        (_, None, Some(_)) => {
            return Err(unsupported(
                "a REST endpoint without a Storage Write endpoint",
            ))
        }
    };
    let merger = match &config.merge {
        Some(settings) => {
            let (loads, _) = connect_load(&config, Duration::from_millis(500)).await?;
            Some(connect_merger(loads, settings).await?)
        }
        None => None,
    };
    let c = connect_rest(&config).await?;
    if check {
        preflight::check_with(&config, &c).await?;
    }
    let transport = match endpoint {
        Some(endpoint) => Transport::StorageWrite(
            Box::new(storage_write::rpc::Rpc::connect(
                &endpoint,
                c.auth.clone(),
                config.timeout,
                Arc::new(config.retry.clone()),
            )?),
            c.clone(),
        ),
        None => Transport::InsertAll(c.clone()),
    };
    if let (Some(merger), Transport::StorageWrite(rpc, _)) = (merger, &transport) {
        return Ok(Arc::new(merge::MergeStorageWrite::new(
            merger,
            (**rpc).clone(),
            config.limits.clone(),
            config.flags.ignore_unknown_values,
        )));
    }
    if routed {
        let settings = config.route.clone();
        let factory = table_factory(config, c, transport);
        return Ok(Arc::new(route::Router::new(template, &settings, factory)?));
    }
    Ok(table_sink(&config, &transport, &config.table))
}

/// `--schema-evolution add-columns`: the table's REST client for patches (none when off).
pub(crate) fn evolver(
    config: &Config,
    c: &Connected,
    table: &TableRef,
) -> Option<Arc<schema::evolver::Evolver>> {
    if config.schema_evolution == SchemaEvolution::Off {
        return None;
    }
    let loads = load::LoadJobs::new(
        c.http.clone(),
        &c.base,
        c.auth.clone(),
        table.clone(),
        load::LoadJobOptions {
            location: config.location.clone(),
            retry: config.retry.clone(),
            ..load::LoadJobOptions::default()
        },
    );
    Some(Arc::new(
        schema::evolver::Evolver::new(Arc::new(loads), config.schema_wait)
            .with_payload_column(config.route.payload_column.clone()),
    ))
}

/// `--dedup merge`: the merger for the target, once the table is known to take it (it has
/// the row-ID column; its partitioning bounds each MERGE).
/// `loads` is the target's load-job client (load mode's own, or one made for the merges).
pub async fn connect_merger(
    loads: Arc<load::LoadJobs>,
    settings: &merge::Settings,
) -> Result<Arc<merge::Merger>, Error> {
    let table = table::resource(&loads).await?;
    Ok(Arc::new(merge::Merger::new(loads, &table, settings)?))
}

/// What `--bigquery-mode load` needs: the load-job client and an encoder for the table's
/// schema (fetched with `tables.get`), which checks each row before it is spooled.
///
/// A table that is missing, with nothing to create it, is refused
/// ([`preflight::Refusal::MissingTable`]) before any object is read.
pub async fn connect_load(
    config: &Config,
    poll_interval: Duration,
) -> Result<(Arc<load::LoadJobs>, Arc<encode::Encoder>), preflight::Refusal> {
    let c = connect_rest(config).await?;
    let t = &config.table;
    // A routed sink's tables are read per batch, as records name them (`load::spool`); with
    // `--create-table auto` the first batch's job creates a missing one (`load::schema`). The
    // stand-in schema is never used then: each batch reads its tables itself.
    let routed = route::Template::new(t).is_ok_and(|r| r.is_routed());
    let auto = matches!(
        &config.create_table,
        Some(CreateTable {
            schema: CreateSchema::Auto,
            ..
        })
    );
    let stand_in = || {
        use gcp_bigquery_client::model::{
            table_field_schema::TableFieldSchema, table_schema::TableSchema,
        };
        let fields = vec![TableFieldSchema::string("_TABLE_no_columns_yet")];
        gcp_bigquery_client::model::table::Table::new(
            &t.project,
            &t.dataset,
            &t.table,
            TableSchema::new(fields),
        )
    };
    let table = if routed {
        stand_in()
    } else {
        match table::get(&c, t).await? {
            Some(table) => table,
            None if auto => stand_in(),
            None => return Err(preflight::Refusal::MissingTable(t.clone())),
        }
    };
    let fields = table
        .schema
        .fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(encode::Field::from_rest)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup_error(Class::Permanent, format!("table {t} schema: {e}")))?;
    let encoder = encode::Encoder::new(
        fields,
        encode::Options {
            ignore_unknown_values: config.flags.ignore_unknown_values,
            ..encode::Options::default()
        },
    )
    .map_err(|e| setup_error(Class::Permanent, format!("table {t} schema: {e}")))?;
    let loads = load::LoadJobs::new(
        c.http,
        &c.base,
        c.auth,
        t.clone(),
        load::LoadJobOptions {
            location: config.location.clone(),
            retry: config.retry.clone(),
            poll_interval,
            ignore_unknown_values: config.flags.ignore_unknown_values,
            schema: table
                .schema
                .fields
                .as_ref()
                .and_then(|f| serde_json::to_value(f).ok()),
            ..load::LoadJobOptions::default()
        },
    );
    Ok((Arc::new(loads), Arc::new(encoder)))
}

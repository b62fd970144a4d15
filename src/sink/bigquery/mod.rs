//! BigQuery: the sink's configuration and the entry points that connect each mode.
//!
//! This file owns what every mode shares — [`TableRef`], [`Mode`], [`Config`], [`Limits`], the
//! connection (`connect_rest`: base URL, HTTP client, one token up front, the table created
//! when asked) and `unstorable`, the rows no mode can hold — and the `connect*` functions
//! that build a mode from them. Each mode lives in its own folder:
//! - [`insert_all`] — `tabledata.insertAll` with `insertId`s;
//! - [`storage_write`] — Storage Write `PENDING` streams (rows encoded by [`encode`]);
//! - [`load`] — load jobs over many objects (planning, the batch contract's side, job IDs,
//!   upload);
//! - [`merge`] — `--dedup merge`: staging tables and a MERGE on the row ID;
//! - [`schema`] — `--schema-evolution`: type inference, etag-fenced patches, the writers' evolver.
//!
//! Shared by them: [`auth`] (credentials, through `google-cloud-auth`), [`table`] (schema
//! file, `tables.get`, create), and for REST: `api_error` (the one classifier of Google API
//! answers), [`retry`] (the policy, its backoff, the common retry loop) and `rest` (the client
//! load jobs, tables and merge send through). Requests go out through `reqwest` — the HTTP
//! client `gcp-bigquery-client` uses — with tokens behind that crate's `Authenticator` trait.

pub(crate) mod api_error;
pub mod auth;
pub mod autocreate;
pub mod encode;
pub mod insert_all;
pub mod load;
pub mod merge;
pub mod preflight;
pub(crate) mod rest;
pub mod retry;
pub mod route;
pub mod schema;
pub mod storage_write;
pub mod table;

pub use self::insert_all::BigQuery;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use self::api_error::sink_error as setup_error;
use self::auth::CredentialSource;
use self::insert_all::request::Flags;
use self::retry::RetryPolicy;
use super::Sink;
use crate::error::{Class, Error};

pub const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";

/// `PROJECT.DATASET.TABLE` (BigQuery's notation; `PROJECT:DATASET.TABLE` is accepted too). TABLE
/// may be a routing template ([`route::Template`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub project: String,
    pub dataset: String,
    pub table: String,
}

impl FromStr for TableRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a table: expected PROJECT.DATASET.TABLE");
        // Project IDs may contain a domain and a colon (`example.com:proj`); datasets and tables
        // contain no dots, except inside a routing placeholder (`events_{detail.type}`).
        let dot = route::template::last_dot_outside_braces(s).ok_or_else(bad)?;
        let (rest, table) = (&s[..dot], &s[dot + 1..]);
        let (project, dataset) = rest
            .rsplit_once('.')
            .or_else(|| rest.rsplit_once(':'))
            .ok_or_else(bad)?;
        if [project, dataset, table].iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(TableRef {
            project: project.into(),
            dataset: dataset.into(),
            table: table.into(),
        })
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// How rows reach the table (`--bigquery-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Legacy streaming inserts with `insertId`: rows visible in seconds, dedup best-effort
    /// (about a minute), exactly once only through the `_row_id` dedup view.
    InsertAll,
    /// Storage Write API, one `PENDING` stream per object committed atomically: exactly once.
    #[default]
    StorageWrite,
    /// Load jobs over many objects with deterministic job IDs: free, exactly once, minutes.
    Load,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "insert-all" => Ok(Mode::InsertAll),
            "storage-write" => Ok(Mode::StorageWrite),
            "load" => Ok(Mode::Load),
            _ => Err(format!(
                "unknown BigQuery mode `{s}` (expected insert-all, storage-write or load)"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::InsertAll => "insert-all",
            Mode::StorageWrite => "storage-write",
            Mode::Load => "load",
        })
    }
}

/// `--schema-evolution`: what a record with fields the table lacks does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaEvolution {
    /// It is a record error (or, with `--ignore-unknown-values`, the fields are dropped).
    #[default]
    Off,
    /// The run adds them as NULLABLE (or REPEATED) columns, then writes the record with them.
    AddColumns,
}

impl FromStr for SchemaEvolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" | "" => Ok(SchemaEvolution::Off),
            "add-columns" => Ok(SchemaEvolution::AddColumns),
            _ => Err(format!(
                "unknown schema evolution `{s}` (expected off or add-columns)"
            )),
        }
    }
}

impl fmt::Display for SchemaEvolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaEvolution::Off => "off",
            SchemaEvolution::AddColumns => "add-columns",
        })
    }
}

/// Creating the table when it is missing.
#[derive(Debug, Clone)]
pub struct CreateTable {
    pub schema: CreateSchema,
    /// Day-partition on this TIMESTAMP/DATE column.
    pub partition_by: Option<String>,
    pub cluster_by: Vec<String>,
}

/// Where a created table's schema comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateSchema {
    /// `--create-table-schema FILE`: a BigQuery JSON schema file,
    /// `[{"name","type","mode"?,"fields"?}]` or `{"fields":[…]}`.
    File(std::path::PathBuf),
    /// `--create-table auto`: inferred from the rows (plus the row-ID and metadata columns).
    Auto,
}

/// Limits a writer works within (insert-all requests; Storage Write appends).
#[derive(Debug, Clone)]
pub struct Limits {
    pub batch_rows: usize,
    /// Encoded request size to stay under (BigQuery's HTTP limit is 10 MB).
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
}

/// Everything the BigQuery sink is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub table: TableRef,
    /// Base URL without `/bigquery/v2`; `None` for Google's.
    pub endpoint: Option<String>,
    pub credentials: CredentialSource,
    pub flags: Flags,
    pub limits: Limits,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub create_table: Option<CreateTable>,
    pub mode: Mode,
    /// Storage Write API endpoint (`http://` for an emulator's plaintext gRPC); `None` for
    /// Google's.
    pub storage_endpoint: Option<String>,
    /// Where load jobs run (`US`, `EU`, a region); `None` lets BigQuery use the dataset's.
    pub location: Option<String>,
    /// `--dedup merge`: rows reach the table through a staging table and a MERGE on the row
    /// ID (storage-write and load only).
    pub merge: Option<merge::Settings>,
    /// `--schema-evolution`. With `add-columns`, `flags.ignore_unknown_values` is off (the CLI
    /// sees to it): a field the table lacks gets a column instead of being dropped.
    pub schema_evolution: SchemaEvolution,
    /// How long a writer waits at most for a column it added to reach new write streams or the
    /// streaming buffer ([`schema::evolver::DEFAULT_WAIT`]).
    pub schema_wait: Duration,
    /// `--create-table auto` outside load mode: missing tables are created from their first
    /// row, with these generated columns (load mode infers from its spooled rows).
    pub create_auto: Option<autocreate::AutoCreate>,
    /// `--route-default`, `--max-tables-per-object` (used when `table` is a template).
    pub route: route::Settings,
}

impl Config {
    pub fn new(table: TableRef) -> Config {
        Config {
            table,
            endpoint: None,
            credentials: CredentialSource::default(),
            flags: Flags::default(),
            limits: Limits {
                batch_rows: 500,
                max_request_bytes: 9 * 1024 * 1024,
                max_in_flight: 4,
            },
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            create_table: None,
            mode: Mode::default(),
            storage_endpoint: None,
            location: None,
            merge: None,
            schema_evolution: SchemaEvolution::Off,
            create_auto: None,
            route: route::Settings::default(),
            schema_wait: schema::evolver::DEFAULT_WAIT,
        }
    }
}

/// What every mode needs: the REST base URL, an HTTP client, the authenticator (one token
/// fetched up front, so bad credentials fail once, at start, instead of once per object), and
/// the table (created first when asked).
#[derive(Clone)]
pub(crate) struct Connected {
    pub base: String,
    pub http: reqwest::Client,
    pub auth: Option<Arc<dyn gcp_bigquery_client::auth::Authenticator>>,
}

/// The connection every mode starts from.
pub(crate) async fn connect_rest(config: &Config) -> Result<Connected, Error> {
    let base = config
        .endpoint
        .clone()
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let base = base.trim_end_matches('/').to_string();
    let auth = auth::authenticator(&config.credentials, config.endpoint.is_some()).await?;
    crate::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| setup_error(Class::Permanent, format!("HTTP client: {e}")))?;
    if let Some(a) = &auth {
        a.access_token().await.map_err(api_error::token_error)?;
        tracing::debug!("Google access token obtained");
    }
    match config.create_table.as_ref().map(|c| (c, &c.schema)) {
        // A routed table's tables are created as rows reach them (`table_factory`).
        Some((create, CreateSchema::File(file))) if !is_routed(config) => {
            table::create_if_missing(
                &base,
                http.clone(),
                auth.clone(),
                &config.table,
                create,
                file,
            )
            .await?
        }
        // The schema comes from rows: load mode creates the table with its first job
        // (`load::schema`), the other modes with the first row that reaches it (`autocreate`).
        _ => {}
    }
    Ok(Connected { base, http, auth })
}

/// Whether `config.table` is a template with placeholders.
fn is_routed(config: &Config) -> bool {
    route::Template::new(&config.table).is_ok_and(|t| t.is_routed())
}

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

/// The refusal for a row no BigQuery mode can hold — a number beyond ±f64::MAX (`1e400`, which
/// insertAll would store as Infinity) or a lone surrogate escape (`"\ud800"`, which fails a
/// whole insertAll request) — or `None`. Checked first by every mode, so the three give the
/// same record error for the same row, whatever the table's schema.
pub(crate) fn unstorable(row: &crate::row::Row<'_>) -> Option<crate::sink::Rejected> {
    // Only the record's own text can hold such values (the generated columns cannot), so the
    // whole row is copied only to word the error.
    crate::row::scan::storable(row.parts()[1]).err()?;
    let json = row.to_vec();
    let why = crate::row::scan::storable(&json).err()?;
    Some(crate::sink::Rejected {
        ordinal: row.ordinal,
        byte_offset: row.byte_offset,
        row: json,
        error: format!("BigQuery cannot hold this row: {why}"),
    })
}

#[cfg(test)]
mod tests;

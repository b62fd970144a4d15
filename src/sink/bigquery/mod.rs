//! BigQuery: the sink's configuration and the entry points that connect each mode.
//!
//! This file owns what every mode shares — [`TableRef`], [`Mode`], [`Config`], [`Limits`], the
//! connection (`connect_rest`: base URL, HTTP client, one token up front, the table created
//! when asked) and `unstorable`, the rows no mode can hold — and, in `connect.rs`, the
//! `connect*` functions that build a mode from them. Each mode lives in its own folder:
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
mod connect;
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

pub(crate) use self::connect::evolver;
pub use self::connect::{connect, connect_checked, connect_load, connect_merger};
pub use self::insert_all::BigQuery;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use self::api_error::sink_error as setup_error;
use self::auth::CredentialSource;
use self::insert_all::request::Flags;
use self::retry::RetryPolicy;
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

/// The refusal for a row no BigQuery mode can hold — a number beyond ±f64::MAX (`1e400`, which
/// insertAll would store as Infinity) or a lone surrogate escape (`"\ud800"`, which fails a
/// whole insertAll request) — or `None`. Checked first by every mode, so the three give the
/// same record error for the same row, whatever the table's schema.
pub(crate) fn unstorable(row: &crate::row::Row<'_>) -> Option<crate::sink::Rejected> {
    // The validator saw nothing of the kind (most records): no second look.
    if row.plain_values {
        return None;
    }
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

//! Flags of `--sink bigquery:PROJECT.DATASET.TABLE`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use firehose_replay::run::setup::BigQueryOptions;
use firehose_replay::sink::bigquery;

use super::parsers::*;
use super::setup::given;

/// `--create-table`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum CreateTableChoice {
    /// Tables must exist (or --create-table-schema creates them).
    #[default]
    Off,
    /// A missing table is created from the first row that reaches it.
    Auto,
}

/// Flags of `--sink bigquery:PROJECT.DATASET.TABLE`.
#[derive(Args, Debug)]
#[command(next_help_heading = "BigQuery")]
pub(crate) struct BigQueryOpts {
    /// BigQuery API base URL (an emulator); without credentials, requests go unauthenticated.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_BIGQUERY_ENDPOINT", value_parser = endpoint_url)]
    pub(crate) bigquery_endpoint: Option<String>,
    /// Google credentials file: service-account key, authorized user, or an external-account
    /// (workload identity federation) configuration.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_GCP_CREDENTIALS")]
    pub(crate) gcp_credentials: Option<PathBuf>,
    /// The credentials JSON itself (e.g. from Secrets Manager). Never logged.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON",
        hide_env_values = true
    )]
    pub(crate) gcp_credentials_json: Option<String>,
    /// A Secrets Manager secret (ARN or name) holding the credentials JSON, read once at start.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_GCP_CREDENTIALS_SECRET_ARN"
    )]
    pub(crate) gcp_credentials_secret_arn: Option<String>,
    /// Rows per request (a Storage Write append or an insertAll request).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_BATCH_ROWS",
        default_value_t = 500,
        value_parser = at_least_one::<usize>
    )]
    pub(crate) batch_rows: usize,
    /// Encoded bytes per request (a Storage Write append or an insertAll request; BigQuery's
    /// limit is 10 MB).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_REQUEST_BYTES", default_value_t = 9 * 1024 * 1024)]
    pub(crate) max_request_bytes: usize,
    /// Requests (appends or insertAll requests) in flight per object.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAX_IN_FLIGHT",
        default_value_t = 4
    )]
    pub(crate) max_in_flight: usize,
    /// Let BigQuery write the valid rows of a request that has invalid ones.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_SKIP_INVALID_ROWS",
        value_parser = env_bool
    )]
    pub(crate) skip_invalid_rows: bool,
    /// Let BigQuery drop fields the table does not have instead of refusing the row.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_IGNORE_UNKNOWN_VALUES",
        value_parser = env_bool
    )]
    pub(crate) ignore_unknown_values: bool,
    /// off: a record with a field the table lacks is a record error (or loses the field, with
    /// --ignore-unknown-values). add-columns: the run adds such fields as NULLABLE columns
    /// (types from the JSON values; nested fields too), then writes the record; it wins over
    /// --ignore-unknown-values.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_SCHEMA_EVOLUTION",
        default_value = "off"
    )]
    pub(crate) schema_evolution: bigquery::SchemaEvolution,
    /// With --schema-evolution add-columns: how long to wait, at most, for BigQuery's write
    /// paths to see columns just added (the object is then tried again).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_SCHEMA_EVOLUTION_WAIT_SECS",
        default_value_t = 600
    )]
    pub(crate) schema_evolution_wait_secs: u64,
    /// Tries per insertAll request (the first included) on throttling, 5xx and network errors.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_INSERT_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub(crate) insert_max_attempts: usize,
    /// First retry delay; doubles each time (with full jitter) up to 32 s.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_RETRY_MIN_DELAY_MS",
        default_value_t = 500
    )]
    pub(crate) retry_min_delay_ms: u64,
    /// Per-request timeout.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_BIGQUERY_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub(crate) bigquery_timeout_secs: u64,
    /// How rows reach the table: storage-write (Storage Write API, one pending stream per object
    /// committed atomically: exactly once), load (batched load jobs with deterministic IDs:
    /// free, exactly once, minutes to appear; replay/backfill only) or insert-all (legacy
    /// streaming with insertId: best-effort dedup).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_BIGQUERY_MODE",
        default_value = "storage-write"
    )]
    pub(crate) bigquery_mode: bigquery::Mode,
    /// merge: rows go to a staging table, then one MERGE on the row-ID column adds only rows
    /// the table lacks: replays, --force and lost ledgers add nothing (storage-write and load;
    /// costs a query per object or batch). off: the ledger alone keeps replays out.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_DEDUP",
        default_value = "off"
    )]
    pub(crate) dedup: bigquery::merge::Dedup,
    /// With --dedup merge on a partitioned table: limit each MERGE to the partitions the staged
    /// rows fall into (cheaper). Only safe while a row's partition value cannot change between
    /// runs: a changed --map or record that moves a row to another partition adds it again.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MERGE_PARTITION_FILTER",
        value_parser = env_bool
    )]
    pub(crate) merge_partition_filter: bool,
    /// With --dedup merge: hours a staging table lives if nothing drops it (a killed run's).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MERGE_STAGING_TTL_HOURS",
        default_value_t = 24,
        value_parser = at_least_one::<u64>
    )]
    pub(crate) merge_staging_ttl_hours: u64,
    /// Storage Write API endpoint (an emulator's `http://host:port`); Google's by default.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_BIGQUERY_STORAGE_ENDPOINT",
        value_parser = endpoint_url
    )]
    pub(crate) bigquery_storage_endpoint: Option<String>,
    /// The dataset's location (US, EU, a region) for load jobs; BigQuery finds jobs outside the
    /// US only with it.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_BIGQUERY_LOCATION")]
    pub(crate) bigquery_location: Option<String>,
    /// Load mode: objects per load job at most.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_LOAD_BATCH_OBJECTS",
        default_value_t = 500
    )]
    pub(crate) load_batch_objects: usize,
    /// Load mode: listed (compressed) MiB per load job at most.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_LOAD_BATCH_MIB",
        default_value_t = 1024
    )]
    pub(crate) load_batch_mib: u64,
    /// Load mode: load jobs one run may use of the table's daily quota (1,500); batches widen
    /// to fit.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_LOAD_JOBS_PER_DAY",
        default_value_t = 1000
    )]
    pub(crate) load_jobs_per_day: usize,
    /// Load mode: seconds between job status polls.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_LOAD_POLL_MS",
        default_value_t = 1000,
        hide = true
    )]
    pub(crate) load_poll_ms: u64,
    /// Create the table from this BigQuery JSON schema file when it does not exist.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_CREATE_TABLE_SCHEMA")]
    pub(crate) create_table_schema: Option<PathBuf>,
    /// `auto`: create a missing table from the first row that reaches it (its fields' inferred
    /// types, the row-ID and metadata columns); `off` (default). Not with --create-table-schema.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CREATE_TABLE",
        default_value = "off"
    )]
    pub(crate) create_table: CreateTableChoice,
    /// Routed tables (`--sink 'bigquery:P.D.events_{type}'`, `postgres://…?table=events_{type}`):
    /// the table for rows whose routing field is missing, null or empty (a table name, or
    /// PROJECT.DATASET.TABLE; PostgreSQL: a table in the target's schema); without it such rows
    /// are record errors.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_ROUTE_DEFAULT")]
    pub(crate) route_default: Option<String>,
    /// Routed tables: how many tables one object may write to; a row routed beyond that is a
    /// record error.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAX_TABLES_PER_OBJECT",
        default_value_t = bigquery::route::DEFAULT_MAX_TABLES_PER_OBJECT,
        value_parser = at_least_one::<usize>
    )]
    pub(crate) max_tables_per_object: usize,
    /// With --create-table-schema or --create-table auto: day-partition on this TIMESTAMP/DATE column
    /// (PostgreSQL: a timestamptz column, range partitions per UTC day created as rows need them;
    /// Iceberg: with --create-table auto, Iceberg transforms of columns, comma-separated, e.g.
    /// 'day(ts), region'; bucket[N] and truncate[W] too).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_PARTITION_BY")]
    pub(crate) partition_by: Option<String>,
    /// With --create-table-schema or --create-table auto: cluster on these columns
    /// (comma-separated).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CLUSTER_BY",
        value_delimiter = ','
    )]
    pub(crate) cluster_by: Vec<String>,
}

impl BigQueryOpts {
    /// Says at start what these flags expose (see `exposure`).
    pub(crate) fn warn_exposure(&self) {
        let sends_token = self.gcp_credentials.is_some()
            || self
                .gcp_credentials_json
                .as_deref()
                .is_some_and(|j| !j.is_empty())
            || self
                .gcp_credentials_secret_arn
                .as_deref()
                .is_some_and(|a| !a.is_empty());
        crate::exposure::warn(
            &std::env::args_os().collect::<Vec<_>>(),
            self.bigquery_endpoint.as_deref(),
            sends_token,
        );
    }

    /// These flags as the library's plain options (an empty value means not set).
    pub(crate) fn options(&self) -> BigQueryOptions {
        BigQueryOptions {
            mode: self.bigquery_mode,
            endpoint: given(&self.bigquery_endpoint),
            storage_endpoint: given(&self.bigquery_storage_endpoint),
            credentials_file: self.gcp_credentials.clone(),
            credentials_json: given(&self.gcp_credentials_json),
            credentials_secret_arn: given(&self.gcp_credentials_secret_arn),
            batch_rows: self.batch_rows,
            max_request_bytes: self.max_request_bytes,
            max_in_flight: self.max_in_flight,
            skip_invalid_rows: self.skip_invalid_rows,
            ignore_unknown_values: self.ignore_unknown_values,
            schema_evolution_wait: Duration::from_secs(self.schema_evolution_wait_secs),
            insert_max_attempts: self.insert_max_attempts,
            retry_min_delay: Duration::from_millis(self.retry_min_delay_ms),
            timeout: Duration::from_secs(self.bigquery_timeout_secs),
            dedup: self.dedup,
            merge_partition_filter: self.merge_partition_filter,
            merge_staging_ttl: Duration::from_secs(
                self.merge_staging_ttl_hours.saturating_mul(3600),
            ),
            location: given(&self.bigquery_location),
            load_bounds: bigquery::load::plan::Bounds {
                max_objects: self.load_batch_objects.max(1),
                max_bytes: self.load_batch_mib.max(1).saturating_mul(1024 * 1024),
                jobs_per_day: self.load_jobs_per_day.max(1),
            },
            load_poll: Duration::from_millis(self.load_poll_ms),
            create_table_schema: self.create_table_schema.clone(),
            route_default: given(&self.route_default),
            max_tables_per_object: self.max_tables_per_object,
            partition_by: self.partition_by.clone(),
            cluster_by: self.cluster_by.clone(),
        }
    }
}

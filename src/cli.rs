//! Command line: `replay` and `backfill`. Every flag can also be set through an environment
//! variable `FIREHOSE_REPLAY_<FLAG>` (what a Lambda deployment uses).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use firehose_replay::backfill::{self, HourRange};
use firehose_replay::dead_letter::remote::{self, Remote, S3Target};
use firehose_replay::dead_letter::DeadLetters;
use firehose_replay::decode::CompressionChoice;
use firehose_replay::frame::Framing;
use firehose_replay::ledger::file::FileLedger;
use firehose_replay::ledger::s3::S3Ledger;
use firehose_replay::ledger::{worker_id, Ledger, LedgerSpec, NoLedger};
use firehose_replay::object::{ObjectRef, Origin};
use firehose_replay::pipeline::{RecordPolicy, Settings};
use firehose_replay::record::Envelope;
use firehose_replay::retry::ObjectRetry;
use firehose_replay::row::RowIdSource;
use firehose_replay::runner::{self, Job, Summary};
use firehose_replay::runner::{Progress, Shared};
use firehose_replay::sink::bigquery::auth::CredentialSource;
use firehose_replay::sink::bigquery::insert_all::request::Flags;
use firehose_replay::sink::bigquery::{self, CreateSchema, CreateTable, TableRef};
use firehose_replay::sink::SinkSpec;
use firehose_replay::source::local::{locate, LocalStore};
use firehose_replay::source::s3::{S3Store, S3Uri};
use firehose_replay::source::ObjectStore;
use firehose_replay::trigger::keys::url_encode_key;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::stdio::{say, OutputClosed};

#[derive(Parser, Debug)]
#[command(
    name = "firehose-replay",
    version,
    about = "Replay Kinesis Data Firehose archives into analytics sinks, without duplicates",
    after_help = "Exit codes: 0 all objects done; 1 at least one object failed; 2 usage error; \
                  130 interrupted (Ctrl-C); 141 standard output closed by its reader."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay objects: s3://bucket/key, s3://bucket/prefix/ (everything below it; without the
    /// slash too, when no object has that name), local files or directories.
    Replay {
        #[arg(required = true)]
        sources: Vec<String>,
        /// The local directory that plays the bucket (as ROOT does for `backfill`): local
        /// sources below it are keyed relative to it, so a file gets the identity — keys, row
        /// IDs, ledger entries — a backfill of ROOT gives it. Without it, a file below
        /// `…/YYYY/MM/DD/HH/` belongs to the directory above the year.
        #[arg(long)]
        source_root: Option<PathBuf>,
    },
    /// Replay a UTC date/hour range of a Firehose archive (ROOT/YYYY/MM/DD/HH/... by default).
    Backfill {
        /// s3://bucket/prefix/ or a local directory that plays the bucket.
        root: String,
        /// First UTC hour: YYYY-MM-DD (from 00:00), YYYY-MM-DDTHH or an RFC 3339 time on the
        /// hour (2026-11-25T22:00:00Z); minutes and seconds are refused, the range is whole hours.
        #[arg(long, env = "FIREHOSE_REPLAY_FROM")]
        from: String,
        /// Last UTC hour, inclusive: YYYY-MM-DD (through 23:00), YYYY-MM-DDTHH or an RFC 3339
        /// time on the hour.
        #[arg(long, env = "FIREHOSE_REPLAY_TO")]
        to: String,
        /// Also replay Firehose's error output for the same hours
        /// (processing-failed/, format-conversion-failed/, ...).
        #[arg(long, env = "FIREHOSE_REPLAY_INCLUDE_ERROR_OUTPUT", value_parser = env_bool)]
        include_error_output: bool,
        /// The delivery stream's S3 prefix template, below ROOT, in Firehose's syntax, e.g.
        /// 'events/dt=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/'. !{partitionKeyFromQuery:..}
        /// and !{firehose:..} match any value.
        #[arg(long, env = "FIREHOSE_REPLAY_LAYOUT", default_value = backfill::layout::DEFAULT)]
        layout: backfill::Layout,
        /// Print the plan (hours, objects, bytes) and exit without touching anything.
        #[arg(long)]
        dry_run: bool,
        /// Write the plan as an S3 Batch Operations CSV manifest (bucket,url-encoded key) to
        /// this file instead of processing it; run the job with the Lambda function to backfill
        /// on AWS's distributed engine. Needs an s3:// root.
        #[arg(long, conflicts_with = "dry_run")]
        manifest: Option<PathBuf>,
    },
    /// Deliver dead letters again into the configured sink: failed objects are processed from
    /// their source, failed records are rebuilt with their original row IDs. Each letter is
    /// removed once everything in it was delivered; what still fails is reported (and records
    /// that still fail go to --dead-letter).
    Redrive(RedriveArgs),
    /// Run one Lambda event locally through the handler the Lambda function runs, configured by
    /// the same flags and FIREHOSE_REPLAY_* variables: the JSON response on stdout, the log on
    /// stderr. Exit 0 with a response, 1 when the invocation fails as a whole (the response is
    /// then Lambda's {"errorType","errorMessage"}).
    Invoke(InvokeArgs),
    /// Consume S3 notifications from an SQS queue until SIGTERM (a long-running container on
    /// ECS or Kubernetes): each message's visibility is extended while its objects run, it is
    /// deleted once they are committed, returned with a backoff when one must be retried, and
    /// made visible again at once when shutdown cuts it short. Exit 0 after a clean shutdown.
    Worker(crate::worker_cli::WorkerArgs),
    /// Plan a Step Functions Distributed Map over a UTC date/hour range: list it into a
    /// manifest (JSON Lines or CSV, in S3 or a local file) and print the state machine's ASL
    /// definition (ItemReader on the manifest, batches sized to the function's timeout).
    PlanMap(crate::plan_map::PlanMapArgs),
    /// `completions`, `man` and the hidden `reference`, generated from these definitions.
    #[command(flatten)]
    Docs(crate::cli_docs::DocsCommand),
}

/// `invoke`'s arguments.
#[derive(Args, Debug)]
struct InvokeArgs {
    /// The event: a JSON file, or `-` for standard input (e.g. copied from CloudWatch Logs or
    /// an SQS message).
    #[arg(long)]
    event: String,
    /// The function's timeout in seconds: the invocation's deadline is this long after start.
    #[arg(long, default_value_t = 900, value_parser = at_least_one::<u64>)]
    timeout: u64,
    /// Read bucket B from the local directory DIR/B instead of S3.
    #[arg(long, value_name = "DIR")]
    buckets: Option<PathBuf>,
    /// The request ID the log lines carry.
    #[arg(long, default_value = "local-invoke")]
    request_id: String,
    /// As in Lambda: time kept back from the deadline (no object starts with less left; those
    /// in flight give up at half of it).
    #[arg(
        long,
        env = "FIREHOSE_REPLAY_DEADLINE_MARGIN_MS",
        default_value_t = 10_000
    )]
    deadline_margin_ms: u64,
    /// As in Lambda: the bucket of Distributed Map items that name none.
    #[arg(long, env = "FIREHOSE_REPLAY_MAP_BUCKET")]
    map_bucket: Option<String>,
}

/// `redrive`'s arguments.
#[derive(Args, Debug)]
struct RedriveArgs {
    /// Where the dead letters are: dir:PATH (or a path), s3://bucket/prefix/ or sqs:QUEUE_URL.
    source: String,
    /// List the dead letters (kind, object, reason) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// A local directory that plays the bucket of object letters (its name is the bucket
    /// name), instead of where each letter says its object was read from (the local directory
    /// of a local run, or S3); other buckets are read from there.
    #[arg(long)]
    source_root: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct Opts {
    /// Where rows go: ndjson:DIR (one file per object), stdout, or
    /// bigquery:PROJECT.DATASET.TABLE (written as --bigquery-mode says: storage-write by default).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_SINK",
        default_value = "ndjson:./out"
    )]
    pub(crate) sink: SinkSpec,
    /// auto | none | gzip | zstd | snappy (any Snappy container, told by its bytes) | snappy-java
    /// (Firehose's Snappy; alias xerial-snappy) | snappy-framed | hadoop-snappy | zip.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_COMPRESSION",
        default_value = "auto"
    )]
    compression: CompressionChoice,
    /// auto | newline | concatenated | delimiter:<byte or escape like \n, \x1e>.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_FRAMING",
        default_value = "auto"
    )]
    framing: Framing,
    /// auto | none | cloudwatch-logs | firehose-error.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ENVELOPE",
        default_value = "auto"
    )]
    envelope: Envelope,
    /// Records longer than this are record-level errors.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_RECORD_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_record_bytes: usize,
    /// Cap on decompressed bytes per object (decompression bomb guard).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_DECOMPRESSED_BYTES", default_value_t = 4 * 1024 * 1024 * 1024)]
    max_decompressed_bytes: u64,
    /// Local disk the run may hold in records dead letters being written (scratch space; see
    /// README, "Failures"). Past it an object fails permanently instead of filling the disk.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_SCRATCH_BYTES", default_value_t = firehose_replay::scratch::DEFAULT_MAX_SCRATCH_BYTES)]
    max_scratch_bytes: u64,
    /// What to do with a record that cannot become a row: skip | dead-letter | fail.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ON_RECORD_ERROR",
        default_value = "dead-letter"
    )]
    on_record_error: RecordPolicy,
    /// Take row IDs from this field (dotted path, e.g. detail.id) instead of the source position.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_ROW_ID_FIELD")]
    row_id_field: Option<String>,
    /// Column that carries the row ID; '' leaves it out of the rows.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ROW_ID_COLUMN",
        default_value = "_row_id"
    )]
    row_id_column: String,
    /// Extra columns: any of source_uri, record_ordinal, ingested_at (comma-separated), written
    /// as _source_uri, _record_ordinal, _ingested_at.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_METADATA_COLUMNS",
        default_value = "none"
    )]
    metadata_columns: firehose_replay::row::Metadata,
    /// Write each record whole into this one column (BigQuery: a JSON column), beside the row
    /// ID and metadata columns, so no schema refuses a record for its fields ("land raw, model
    /// later"). --map applies first.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_PAYLOAD_COLUMN")]
    payload_column: Option<String>,
    /// Field mapping applied to every record, given inline or as a JSON file holding it:
    /// {"rename":{"a.b":"col"},"drop":["x"],"json":["payload"]} (a value starting with { is the
    /// mapping itself; anything else is the file's path).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAP",
        value_name = "JSON|FILE"
    )]
    map: Option<PathBuf>,
    /// Where failed objects and records go: dir:PATH, s3://bucket/prefix/ or sqs:QUEUE_URL
    /// (for `redrive`: where the letters were read from).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_DEAD_LETTER",
        default_value = "dir:./dead-letter"
    )]
    pub(crate) dead_letter: String,
    /// With --dead-letter sqs:…, where dead letters over SQS's 256 KiB limit are stored
    /// (s3://bucket/prefix/); the message then refers to them.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_DEAD_LETTER_OVERFLOW")]
    dead_letter_overflow: Option<String>,
    /// Objects processed at once (default: cores × 2 — fetching overlaps decoding).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CONCURRENCY",
        value_parser = at_least_one::<usize>
    )]
    pub(crate) concurrency: Option<usize>,
    /// Which objects are done: file:PATH, s3://bucket/prefix/ (safe for concurrent workers) or
    /// none. Default: a file in the ndjson output directory; none for stdout.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_LEDGER")]
    pub(crate) ledger: Option<LedgerSpec>,
    /// Tries per object (the first included) when it fails transiently; then it is
    /// dead-lettered (CLI) or reported for the platform to retry (Lambda).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAX_ATTEMPTS",
        default_value_t = 3,
        value_parser = at_least_one::<u32>
    )]
    max_attempts: u32,
    /// Seconds one object may take, retries included (CLI; Lambda uses the invocation's time).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_OBJECT_TIMEOUT")]
    object_timeout: Option<u64>,
    /// Process objects even if the ledger has them as done.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_FORCE", value_parser = env_bool)]
    force: bool,
    // --- exactly-once guards (issue 14) ---
    /// Let --force or --ledger none write rows again into BigQuery in storage-write or load mode,
    /// where nothing removes the copies (refused without it).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ALLOW_DUPLICATES",
        value_parser = env_bool
    )]
    allow_duplicates: bool,
    /// An object fails (nothing of it committed, the whole object dead-lettered, exit 1) when at
    /// least this share of its records was refused; 1.0: only an object whose every record was;
    /// off: never. The default, 0.9, fails an object that is overwhelmingly not records (text
    /// whose few "rows" are accidental scalars) instead of landing what happened to parse.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_RECORD_ERROR_RATIO", default_value_t = firehose_replay::pipeline::DEFAULT_MAX_RECORD_ERROR_RATIO, value_parser = ratio)]
    max_record_error_ratio: f64,
    // --- end of exactly-once guards ---
    /// How long an S3 ledger claim holds before another worker may take the object over.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CLAIM_TTL_SECS",
        default_value_t = 900
    )]
    claim_ttl_secs: u64,
    /// Use path-style S3 addressing (automatic when AWS_ENDPOINT_URL[_S3] is set).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_S3_PATH_STYLE",
        value_parser = env_bool
    )]
    pub(crate) s3_path_style: bool,
    /// Seconds between progress log lines when stderr is not a terminal (0: none).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_PROGRESS_INTERVAL",
        default_value_t = 10
    )]
    progress_interval: u64,
    #[command(flatten)]
    pub(crate) bigquery: BigQueryOpts,
    /// Log filter: error, warn, info, debug, trace, or a tracing filter (info,h2=debug).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_LOG_LEVEL",
        default_value = "info",
        value_parser = log_level
    )]
    pub(crate) log_level: String,
}

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
pub(crate) struct BigQueryOpts {
    /// BigQuery API base URL (an emulator); without credentials, requests go unauthenticated.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_BIGQUERY_ENDPOINT", value_parser = endpoint_url)]
    bigquery_endpoint: Option<String>,
    /// Google credentials file: service-account key, authorized user, or an external-account
    /// (workload identity federation) configuration.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_GCP_CREDENTIALS")]
    gcp_credentials: Option<PathBuf>,
    /// The credentials JSON itself (e.g. from Secrets Manager). Never logged.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON",
        hide_env_values = true
    )]
    gcp_credentials_json: Option<String>,
    /// A Secrets Manager secret (ARN or name) holding the credentials JSON, read once at start.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_GCP_CREDENTIALS_SECRET_ARN"
    )]
    gcp_credentials_secret_arn: Option<String>,
    /// Rows per request (a Storage Write append or an insertAll request).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_BATCH_ROWS",
        default_value_t = 500,
        value_parser = at_least_one::<usize>
    )]
    batch_rows: usize,
    /// Encoded bytes per request (a Storage Write append or an insertAll request; BigQuery's
    /// limit is 10 MB).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_REQUEST_BYTES", default_value_t = 9 * 1024 * 1024)]
    max_request_bytes: usize,
    /// Requests (appends or insertAll requests) in flight per object.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAX_IN_FLIGHT",
        default_value_t = 4
    )]
    max_in_flight: usize,
    /// Let BigQuery write the valid rows of a request that has invalid ones.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_SKIP_INVALID_ROWS",
        value_parser = env_bool
    )]
    skip_invalid_rows: bool,
    /// Let BigQuery drop fields the table does not have instead of refusing the row.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_IGNORE_UNKNOWN_VALUES",
        value_parser = env_bool
    )]
    ignore_unknown_values: bool,
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
    schema_evolution_wait_secs: u64,
    /// Tries per insertAll request (the first included) on throttling, 5xx and network errors.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_INSERT_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    insert_max_attempts: usize,
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
    bigquery_timeout_secs: u64,
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
    merge_partition_filter: bool,
    /// With --dedup merge: hours a staging table lives if nothing drops it (a killed run's).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MERGE_STAGING_TTL_HOURS",
        default_value_t = 24,
        value_parser = at_least_one::<u64>
    )]
    merge_staging_ttl_hours: u64,
    /// Storage Write API endpoint (an emulator's `http://host:port`); Google's by default.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_BIGQUERY_STORAGE_ENDPOINT",
        value_parser = endpoint_url
    )]
    bigquery_storage_endpoint: Option<String>,
    /// The dataset's location (US, EU, a region) for load jobs; BigQuery finds jobs outside the
    /// US only with it.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_BIGQUERY_LOCATION")]
    bigquery_location: Option<String>,
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
    create_table_schema: Option<PathBuf>,
    /// `auto`: create a missing table from the first row that reaches it (its fields' inferred
    /// types, the row-ID and metadata columns); `off` (default). Not with --create-table-schema.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CREATE_TABLE",
        default_value = "off"
    )]
    create_table: CreateTableChoice,
    /// Routed tables (`--sink 'bigquery:P.D.events_{type}'`): the table for rows whose routing
    /// field is missing, null or empty (a table name, or PROJECT.DATASET.TABLE); without it
    /// such rows are record errors.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_ROUTE_DEFAULT")]
    route_default: Option<String>,
    /// Routed tables: how many tables one object may write to; a row routed beyond that is a
    /// record error.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAX_TABLES_PER_OBJECT",
        default_value_t = bigquery::route::DEFAULT_MAX_TABLES_PER_OBJECT,
        value_parser = at_least_one::<usize>
    )]
    max_tables_per_object: usize,
    /// With --create-table-schema or --create-table auto: day-partition on this TIMESTAMP/DATE column.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_PARTITION_BY")]
    partition_by: Option<String>,
    /// With --create-table-schema or --create-table auto: cluster on these columns
    /// (comma-separated).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CLUSTER_BY",
        value_delimiter = ','
    )]
    cluster_by: Vec<String>,
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

    pub(crate) fn load_bounds(&self) -> bigquery::load::plan::Bounds {
        bigquery::load::plan::Bounds {
            max_objects: self.load_batch_objects.max(1),
            max_bytes: self.load_batch_mib.max(1).saturating_mul(1024 * 1024),
            jobs_per_day: self.load_jobs_per_day.max(1),
        }
    }

    pub(crate) fn config(&self, table: &TableRef) -> bigquery::Config {
        let mut c = bigquery::Config::new(table.clone());
        c.endpoint = self.bigquery_endpoint.clone().filter(|e| !e.is_empty());
        c.credentials = CredentialSource {
            file: self.gcp_credentials.clone(),
            json: self.gcp_credentials_json.clone().filter(|j| !j.is_empty()),
        };
        c.flags = Flags {
            skip_invalid_rows: self.skip_invalid_rows,
            // Schema evolution wins: a field the table lacks gets a column, not dropped.
            ignore_unknown_values: self.ignore_unknown_values
                && self.schema_evolution == bigquery::SchemaEvolution::Off,
        };
        c.schema_evolution = self.schema_evolution;
        c.schema_wait = std::time::Duration::from_secs(self.schema_evolution_wait_secs.max(1));
        c.limits.batch_rows = self.batch_rows.max(1);
        c.limits.max_request_bytes = self.max_request_bytes;
        c.limits.max_in_flight = self.max_in_flight.max(1);
        c.retry.max_attempts = self.insert_max_attempts.max(1);
        c.retry.min_delay = std::time::Duration::from_millis(self.retry_min_delay_ms);
        c.timeout = std::time::Duration::from_secs(self.bigquery_timeout_secs.max(1));
        c.mode = self.bigquery_mode;
        c.storage_endpoint = self
            .bigquery_storage_endpoint
            .clone()
            .filter(|e| !e.is_empty());
        c.location = self.bigquery_location.clone().filter(|l| !l.is_empty());
        let schema = match (&self.create_table_schema, self.create_table) {
            (Some(file), _) => Some(CreateSchema::File(file.clone())),
            (None, CreateTableChoice::Auto) => Some(CreateSchema::Auto),
            (None, CreateTableChoice::Off) => None,
        };
        c.create_table = schema.map(|schema| CreateTable {
            schema,
            partition_by: self.partition_by.clone(),
            cluster_by: self.cluster_by.clone(),
        });
        c
    }
}

impl Opts {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mapping = match &self.map {
            Some(path) => Some(
                firehose_replay::row::map::Mapping::from_arg(path).map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        Ok(Settings {
            compression: self.compression,
            framing: self.framing,
            envelope: self.envelope,
            max_record_bytes: self.max_record_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
            on_record_error: self.on_record_error,
            row_id: match &self.row_id_field {
                Some(f) => RowIdSource::field(f),
                None => RowIdSource::Position,
            },
            row_id_column: Some(self.row_id_column.clone()).filter(|c| !c.is_empty()),
            metadata: self.metadata_columns,
            payload_column: self.payload_column.clone().filter(|c| !c.is_empty()),
            mapping,
            max_record_error_ratio: Some(self.max_record_error_ratio),
        })
    }

    /// The parts every object shares: settings, sink, dead letters, ledger.
    pub(crate) async fn shared(&self, aws: &mut Aws) -> anyhow::Result<Shared> {
        firehose_replay::scratch::set_limit(self.max_scratch_bytes);
        refuse_duplicating_runs(self)?;
        refuse_colliding_columns(self)?;
        refuse_routing_conflicts(self)?;
        let ledger: Arc<dyn Ledger> = match self
            .ledger
            .clone()
            .unwrap_or_else(|| default_ledger(&self.sink))
        {
            LedgerSpec::None => Arc::new(NoLedger::default()),
            LedgerSpec::File(path) => Arc::new(FileLedger::open(path)?),
            LedgerSpec::S3 { bucket, prefix } => Arc::new(S3Ledger::new(
                aws.client().await,
                bucket,
                prefix,
                worker_id(),
                std::time::Duration::from_secs(self.claim_ttl_secs),
            )),
        };
        Ok(Shared {
            settings: Arc::new(self.settings()?),
            sink: match (&self.sink, self.sink.build_local()) {
                (_, Some(local)) => Arc::from(local),
                // The load runner connects on its own and swaps in its spool sink.
                (SinkSpec::BigQuery(_), None) if self.load_mode() => {
                    Arc::new(bigquery::load::runner::LoadOnly)
                }
                (SinkSpec::BigQuery(table), None) => {
                    bigquery::connect(self.bigquery_config(table).await?).await?
                }
                (spec, None) => bail!("sink {spec:?} cannot be built"),
            },
            dead_letters: Arc::new(self.dead_letters(aws).await?),
            ledger,
            force: self.force,
            worker: Arc::from(worker_id()),
            retry: ObjectRetry {
                max_attempts: self.max_attempts.max(1),
                min_delay: std::time::Duration::from_millis(self.bigquery.retry_min_delay_ms),
                ..ObjectRetry::default()
            },
            object_timeout: self.object_timeout.map(std::time::Duration::from_secs),
        })
    }

    /// The BigQuery sink's configuration, with credentials from Secrets Manager when named.
    pub(crate) async fn bigquery_config(
        &self,
        table: &TableRef,
    ) -> anyhow::Result<bigquery::Config> {
        let mut config = self.bigquery.config(table);
        config.route = bigquery::route::Settings {
            default: self
                .bigquery
                .route_default
                .clone()
                .filter(|d| !d.is_empty()),
            max_tables_per_object: self.bigquery.max_tables_per_object,
            payload_column: self.payload_column.clone().filter(|c| !c.is_empty()),
        };
        if self.bigquery.create_table == CreateTableChoice::Auto {
            config.create_auto = Some(bigquery::autocreate::AutoCreate {
                row_id_column: Some(self.row_id_column.clone()).filter(|c| !c.is_empty()),
                metadata: self.metadata_columns,
                payload_column: self.payload_column.clone().filter(|c| !c.is_empty()),
                partition_by: self.bigquery.partition_by.clone(),
                cluster_by: self.bigquery.cluster_by.clone(),
            });
        }
        if self.bigquery.dedup == bigquery::merge::Dedup::Merge {
            config.merge = Some(bigquery::merge::Settings {
                row_id_column: self.row_id_column.clone(),
                // Asked for, and with a position-derived ID (a field-derived one may come with
                // another partition value in another record).
                prune_partitions: self.bigquery.merge_partition_filter
                    && self.row_id_field.is_none(),
                staging_ttl: std::time::Duration::from_secs(
                    self.bigquery.merge_staging_ttl_hours.saturating_mul(3600),
                ),
            });
        }
        if let Some(arn) = self
            .bigquery
            .gcp_credentials_secret_arn
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            let client = firehose_replay::secrets::client().await;
            config.credentials.json =
                Some(firehose_replay::secrets::secret_string(&client, arn).await?);
        }
        Ok(config)
    }

    /// Load mode's routing, when the sink's table has placeholders.
    pub(crate) fn load_routing(
        &self,
        table: &TableRef,
    ) -> anyhow::Result<Option<Arc<bigquery::load::route::Routing>>> {
        let template = bigquery::route::Template::new(table).map_err(anyhow::Error::msg)?;
        if !template.is_routed() {
            return Ok(None);
        }
        let default = match self
            .bigquery
            .route_default
            .as_deref()
            .filter(|d| !d.is_empty())
        {
            Some(d) => Some(template.sibling(d).map_err(anyhow::Error::msg)?),
            None => None,
        };
        Ok(Some(Arc::new(bigquery::load::route::Routing {
            template,
            default,
            max_tables: self.bigquery.max_tables_per_object,
            prefix: self
                .payload_column
                .iter()
                .filter(|c| !c.is_empty())
                .cloned()
                .collect(),
        })))
    }

    /// `--sink bigquery:… --bigquery-mode load`.
    pub(crate) fn load_mode(&self) -> bool {
        matches!(self.sink, SinkSpec::BigQuery(_))
            && self.bigquery.bigquery_mode == bigquery::Mode::Load
    }

    /// `--concurrency`, defaulting to cores × 2.
    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) * 2)
    }

    async fn dead_letters(&self, aws: &mut Aws) -> anyhow::Result<DeadLetters> {
        let spec = self.dead_letter.as_str();
        let s3_target = |uri: &str, client: aws_sdk_s3::Client| -> anyhow::Result<S3Target> {
            let uri: S3Uri = uri.parse().map_err(anyhow::Error::msg)?;
            let mut prefix = uri.key;
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            Ok(S3Target {
                client,
                bucket: uri.bucket,
                prefix,
            })
        };
        if spec.starts_with("s3://") {
            let target = s3_target(spec, aws.client().await)?;
            return Ok(DeadLetters::remote(Remote::S3 {
                target,
                handle: tokio::runtime::Handle::current(),
            }));
        }
        if let Some(url) = spec.strip_prefix("sqs:") {
            if url.is_empty() {
                bail!("`sqs:` needs a queue URL");
            }
            let overflow = match &self.dead_letter_overflow {
                Some(uri) => Some(s3_target(uri, aws.client().await)?),
                None => None,
            };
            return Ok(DeadLetters::remote(Remote::Sqs {
                client: remote::sqs_client().await,
                queue_url: url.to_string(),
                overflow,
                handle: tokio::runtime::Handle::current(),
            }));
        }
        let dir = spec.strip_prefix("dir:").unwrap_or(spec);
        if dir.is_empty() || spec.contains("://") {
            bail!("unsupported --dead-letter `{spec}`: use dir:PATH, s3://bucket/prefix/ or sqs:QUEUE_URL");
        }
        Ok(DeadLetters::new(dir))
    }
}

/// Exit status when standard output was closed by its reader (`| head`): 128 + SIGPIPE, what a
/// shell reports for a tool the signal killed.
const EXIT_OUTPUT_CLOSED: u8 = 141;

pub fn main() -> ExitCode {
    let cli = parse_args(std::env::args_os().collect());
    if let Command::Docs(docs) = &cli.command {
        return crate::cli_docs::run(docs, Cli::command());
    }
    // The worker's logs are read by machines (CloudWatch, Loki) unless a person watches them.
    let json = matches!(cli.command, Command::Worker(_))
        && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging(&cli.opts.log_level, json);
    cli.opts.bigquery.warn_exposure();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Worker(args) = &cli.command {
        let result = runtime.block_on(crate::worker_cli::run(&cli.opts, args));
        // Objects abandoned at shutdown may still be unwinding on blocking threads: their
        // messages are already back in the queue, so the process does not wait for them.
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        return match result {
            Ok(code) => code,
            Err(e) => {
                say!("error: {}", describe(&e));
                ExitCode::from(exit_code_of(&e))
            }
        };
    }
    if let Command::PlanMap(args) = &cli.command {
        return match runtime.block_on(crate::plan_map::run(cli.opts.s3_path_style, args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.is::<OutputClosed>() => ExitCode::from(EXIT_OUTPUT_CLOSED),
            Err(e) => {
                say!("error: {}", describe(&e));
                ExitCode::from(exit_code_of(&e))
            }
        };
    }
    if let Command::Invoke(args) = &cli.command {
        return match runtime.block_on(invoke(&cli.opts, args)) {
            Ok(code) => code,
            Err(e) if e.is::<OutputClosed>() => ExitCode::from(EXIT_OUTPUT_CLOSED),
            Err(e) => {
                say!("error: {}", describe(&e));
                ExitCode::from(exit_code_of(&e))
            }
        };
    }
    match runtime.block_on(run(cli)) {
        Ok(None) => ExitCode::SUCCESS,
        // Nobody reads the rows any more: stop quietly, like `grep … | head`.
        Ok(Some(summary)) if summary.output_closed => ExitCode::from(EXIT_OUTPUT_CLOSED),
        Ok(Some(summary)) => {
            say!("{summary}");
            for f in &summary.failures {
                say!("failed: {}: {}", f.object, f.error);
            }
            let hint = (summary.failures.iter())
                .find_map(|f| crate::hints::for_message(&f.error.to_string()));
            if let Some(hint) = hint {
                say!("{hint}");
            }
            if let Some(e) = &summary.listing_failed {
                say!("error: listing stopped before the end of the range: {e}");
            }
            if summary.interrupted || summary.not_started > 0 {
                ExitCode::from(130)
            } else if summary.failures.is_empty() && summary.listing_failed.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) if e.is::<OutputClosed>() => ExitCode::from(EXIT_OUTPUT_CLOSED),
        Err(e) => {
            say!("error: {}", describe(&e));
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// An error and its causes, each said once: a library error's message already includes its
/// cause's, which `{:#}` would repeat (`… is not a directory [permanent]: I/O error: … is not a
/// directory: … is not a directory`).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for part in e.chain() {
        let m = part.to_string();
        if m.is_empty() || out.contains(&m) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&m);
    }
    if let Some(hint) = crate::hints::for_message(&out) {
        out.push('\n');
        out.push_str(hint);
    }
    out
}

/// Exit status of a run that could not start: 2 (usage) for what the command line or
/// configuration got wrong, 1 when a service failed — the sink (a BigQuery table, a Google
/// token, the ledger) could not be set up, or anything transient, which may pass by itself.
fn exit_code_of(e: &anyhow::Error) -> u8 {
    use firehose_replay::error::{Class, Error, Stage};
    let service_failed = e.chain().any(|c| {
        c.downcast_ref::<Error>()
            .is_some_and(|le| le.class == Class::Transient || le.stage == Stage::Sink)
    });
    if service_failed {
        1
    } else {
        2
    }
}

/// `Cli::parse`, except that an environment variable is not read for a flag given on the
/// command line. (clap parses the variable of a `global` flag given after the subcommand anyway,
/// clap-rs/clap#5588, so an invalid `FIREHOSE_REPLAY_SINK` would abort `replay … --sink stdout`.)
fn parse_args(args: Vec<std::ffi::OsString>) -> Cli {
    let given = given_longs(&args);
    let mut cmd = Cli::command();
    let overridden: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.get_env().is_some())
        .filter(|a| a.get_long().is_some_and(|l| given.iter().any(|g| g == l)))
        .map(|a| a.get_id().clone())
        .collect();
    for id in overridden {
        cmd = cmd.mut_arg(id, |a| a.env(None));
    }
    let matches = cmd.clone().get_matches_from(args);
    refuse_empty_flags(&matches, &mut cmd);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    // A letter that still fails stays where it was read from unless told otherwise: `redrive
    // s3://…` must not move letters to the local default `./dead-letter`.
    if let Command::Redrive(args) = &cli.command {
        if !given_anywhere(&matches, "dead_letter") {
            cli.opts.dead_letter = args.source.clone();
        }
    }
    cli
}

/// The long flags on a command line (`--name` or `--name=value`), up to a `--`.
fn given_longs(args: &[std::ffi::OsString]) -> Vec<String> {
    let mut longs = Vec::new();
    for arg in args.iter().skip(1).filter_map(|a| a.to_str()) {
        if arg == "--" {
            break;
        }
        if let Some(name) = arg.strip_prefix("--") {
            longs.push(name.split_once('=').map_or(name, |(n, _)| n).to_string());
        }
    }
    longs
}

// --- exactly-once guards (issue 14) ---
/// `--force` and `--ledger none` into BigQuery's storage-write or load mode write rows a second
/// time that nothing removes: refused (exit 2) unless `--allow-duplicates` is given.
fn refuse_duplicating_runs(opts: &Opts) -> anyhow::Result<()> {
    let mode = match &opts.sink {
        SinkSpec::BigQuery(_) => opts.bigquery.bigquery_mode,
        _ => return Ok(()),
    };
    if opts.allow_duplicates
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
    if opts.force {
        bail!(
            "--force with --bigquery-mode {name} would write the rows of objects the ledger has \
             as done a second time, and neither Storage Write nor load jobs remove copies. \
             Safe options: rerun without --force (done objects are skipped, objects a killed run \
             staged are finished from the ledger); --dedup merge (only rows the table lacks are \
             added); to replace an object's rows, delete them \
             from the table first, then rerun with --force --allow-duplicates"
        );
    }
    if opts.ledger == Some(LedgerSpec::None) {
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
fn refuse_colliding_columns(opts: &Opts) -> anyhow::Result<()> {
    if let Some(name) = opts.payload_column.as_deref().filter(|n| !n.is_empty()) {
        let generated = firehose_replay::row::generated_columns(
            Some(opts.row_id_column.as_str()).filter(|c| !c.is_empty()),
        );
        if generated.iter().any(|g| g.eq_ignore_ascii_case(name)) {
            bail!(
                "--payload-column {name}: `{name}` is a generated column (row ID or metadata); \
                 name the payload column otherwise, e.g. --payload-column raw"
            );
        }
    }
    if opts.bigquery.dedup == bigquery::merge::Dedup::Merge
        && !matches!(opts.sink, SinkSpec::BigQuery(_))
    {
        bail!(
            "--dedup merge merges into a BigQuery table (--sink bigquery:…); other sinks are kept \
             exact by the ledger"
        );
    }
    let evolving = opts.bigquery.schema_evolution != bigquery::SchemaEvolution::Off;
    if evolving && !matches!(opts.sink, SinkSpec::BigQuery(_)) {
        bail!(
            "--schema-evolution {} adds columns to a BigQuery table (--sink bigquery:…); other \
             sinks have no schema",
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
fn refuse_load_mode_conflicts(opts: &Opts) -> anyhow::Result<()> {
    let b = &opts.bigquery;
    let evolving = b.schema_evolution == bigquery::SchemaEvolution::AddColumns
        || b.create_table == CreateTableChoice::Auto;
    let routed = match &opts.sink {
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
fn refuse_routing_conflicts(opts: &Opts) -> anyhow::Result<()> {
    let auto = opts.bigquery.create_table == CreateTableChoice::Auto;
    if auto && opts.bigquery.create_table_schema.is_some() {
        bail!(
            "--create-table auto and --create-table-schema both say how to create the table: \
             give one"
        );
    }
    let SinkSpec::BigQuery(table) = &opts.sink else {
        if auto || opts.bigquery.route_default.is_some() {
            bail!("--create-table auto and --route-default are for --sink bigquery:…");
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

/// `--max-record-error-ratio`: a share, 0.0 to 1.0, or `off` (never: the record policy alone
/// decides).
fn ratio(s: &str) -> Result<f64, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(f64::INFINITY);
    }
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a share from 0.0 to 1.0 (e.g. 0.5), or off".into()),
    }
}
// --- end of exactly-once guards ---

/// Boolean flags and their environment variables: `--force`, or `FIREHOSE_REPLAY_FORCE` set to
/// 1/0, true/false, yes/no or on/off in any case (empty: not set).
pub(crate) fn env_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected one of 1, 0, true, false, yes, no, on, off (any case)".into()),
    }
}

/// `--bigquery-endpoint`, `--bigquery-storage-endpoint`: an `http(s)://host[:port]` URL, so a
/// mistyped one is a usage error (exit 2) rather than a failed run; empty means not set (an
/// empty variable in a container's environment), but see [`refuse_empty_flags`].
fn endpoint_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    match s.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
            Ok(s.to_string())
        }
        _ => Err(format!("`{s}` is not an http:// or https:// URL")),
    }
}

/// Whether `id` was given on the command line or in the environment (not left at its default),
/// before or after the subcommand.
fn given_anywhere(matches: &clap::ArgMatches, id: &str) -> bool {
    use clap::parser::ValueSource;
    let given = |m: &clap::ArgMatches| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    given(matches) || matches.subcommand().is_some_and(|(_, sub)| given(sub))
}

/// Flags whose empty value means "not set" in the environment, given empty on the command line
/// (`--bigquery-storage-endpoint "$UNSET"`): a usage error, not a silent fall-back to Google's.
fn refuse_empty_flags(matches: &clap::ArgMatches, cmd: &mut clap::Command) {
    let mut all = vec![matches];
    if let Some((_, sub)) = matches.subcommand() {
        all.push(sub);
    }
    for id in ["bigquery_endpoint", "bigquery_storage_endpoint"] {
        let empty = all.iter().any(|m| {
            m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                && m.get_one::<String>(id).is_some_and(|v| v.is_empty())
        });
        if empty {
            let flag = id.replace('_', "-");
            cmd.error(
                clap::error::ErrorKind::InvalidValue,
                format!("--{flag} needs a value (http://host:port)"),
            )
            .exit();
        }
    }
}

/// Counts that must be at least 1 (`--concurrency`, `--max-attempts`, `--batch-rows`).
fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = std::num::ParseIntError> + Default + PartialEq,
{
    match s.trim().parse::<T>() {
        Ok(n) if n == T::default() => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

/// `--log-level`: a level, or a tracing filter whose directives each name a level
/// (`info,firehose_replay=debug`). A bare word that is no level (`verbose`, `warning`) is
/// refused instead of being taken as a target name, which would silently log at `info`.
fn log_level(s: &str) -> Result<String, String> {
    const HINT: &str =
        "expected off, error, warn, info, debug, trace or a tracing filter like info,h2=debug";
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '['])
            && directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
        {
            return Err(format!("`{directive}` is not a log level ({HINT})"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map_err(|e| format!("not a tracing filter: {e}"))?;
    Ok(s.to_string())
}

/// Libraries that log secrets at debug level (yup-oauth2, still linked by gcp-bigquery-client:
/// the signed JWT and the access token; HTTP stacks: headers, which carry bearer tokens and AWS
/// signatures), or that handle them (google-cloud-auth and its gax: no logging in 1.19, but
/// they declare an unstable tracing cfg). They stay at `warn` unless the filter names them
/// explicitly, so `--log-level debug` never leaks credentials. `aws_runtime` logs the body of
/// every chunked S3 upload at trace level (dead letters: raw records) with its signatures.
const SECRET_LOGGING_TARGETS: [&str; 11] = [
    "yup_oauth2",
    "google_cloud_auth",
    "google_cloud_gax",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "aws_smithy_runtime",
    "aws_sigv4",
    "aws_runtime",
];

pub(crate) fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let mut spec = level.to_string();
    // The SDK's credential and region providers warn about every source they tried (the
    // instance metadata service, three times, on a laptop); the error that follows says what
    // failed, with a hint.
    if !level.contains("aws_config") {
        spec.push_str(",aws_config=error");
    }
    for t in SECRET_LOGGING_TARGETS {
        if !level.contains(t) {
            spec.push_str(&format!(",{t}=warn"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn init_logging(level: &str, json: bool) {
    let filter = log_filter(level);
    if json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_ansi(false)
            .with_env_filter(filter)
            .with_writer(crate::stdio::lossy_stderr)
            .log_internal_errors(false)
            .init();
        return;
    }
    // A closed stderr (`2>&1 | head`) drops log lines; the work goes on.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::stdio::lossy_stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Lazily built S3 client: only runs that touch S3 load AWS configuration.
pub(crate) struct Aws {
    pub(crate) path_style: bool,
    pub(crate) client: Option<aws_sdk_s3::Client>,
}

impl Aws {
    pub(crate) async fn client(&mut self) -> aws_sdk_s3::Client {
        if self.client.is_none() {
            self.client = Some(firehose_replay::source::s3::client(self.path_style).await);
        }
        self.client.clone().expect("set above")
    }
}

/// `invoke`: one event through the Lambda handler, here.
async fn invoke(opts: &Opts, args: &InvokeArgs) -> anyhow::Result<ExitCode> {
    use firehose_replay::trigger::handler::{Handler, S3Stores, Stores};
    if opts.load_mode() {
        bail!("{}", crate::lambda::LOAD_MODE_REFUSED);
    }
    let text = if args.event == "-" {
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf)
            .context("reading the event from standard input")?;
        buf
    } else {
        std::fs::read_to_string(&args.event)
            .with_context(|| format!("reading the event {}", args.event))?
    };
    let payload: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the event {} is not JSON",
            if args.event == "-" {
                "on standard input"
            } else {
                &args.event
            }
        )
    })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.timeout);
    let mut aws = Aws {
        path_style: opts.s3_path_style,
        client: None,
    };
    let shared = opts.shared(&mut aws).await.context("configuration")?;
    let stores: Arc<dyn Stores> = match &args.buckets {
        Some(dir) => {
            let dir = dir.clone();
            Arc::new(move |bucket: &str| -> Arc<dyn ObjectStore> {
                // The events' parsers refuse such names already; this store must not depend
                // on it to stay inside DIR.
                if let Err(why) = firehose_replay::object::check_bucket_name(bucket) {
                    return Arc::new(NoBucket {
                        bucket: bucket.to_string(),
                        why,
                    });
                }
                match LocalStore::new(dir.join(bucket)) {
                    Ok(store) => Arc::new(store),
                    Err(e) => Arc::new(NoBucket {
                        bucket: bucket.to_string(),
                        why: format!("no local bucket {}: {e}", dir.join(bucket).display()),
                    }),
                }
            })
        }
        None => Arc::new(S3Stores::new(aws.client().await)),
    };
    let handler = Handler {
        stores,
        shared,
        concurrency: opts.concurrency(),
        margin: std::time::Duration::from_millis(args.deadline_margin_ms),
        // stdout is for the response alone.
        metrics: None,
        map_bucket: args.map_bucket.clone(),
    };
    let (response, code) = match handler.handle(&payload, deadline, &args.request_id).await {
        Ok(v) => (v, ExitCode::SUCCESS),
        Err(e) => (crate::lambda::error_response(&e), ExitCode::from(1)),
    };
    crate::stdio::print(|out| writeln!(out, "{response}"))?;
    Ok(code)
}

/// A bucket `invoke --buckets DIR` has no directory for: every object in it fails permanently.
struct NoBucket {
    bucket: String,
    why: String,
}

impl ObjectStore for NoBucket {
    fn open(
        &self,
        _: &mut ObjectRef,
    ) -> Result<firehose_replay::source::Opened, firehose_replay::error::Error> {
        Err(firehose_replay::error::Error::permanent(
            firehose_replay::error::Stage::Fetch,
            firehose_replay::error::Cause::Io(std::io::Error::other(self.why.clone())),
        ))
    }

    fn list<'a>(
        &'a self,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<ObjectRef>, firehose_replay::error::Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// Runs the command; `None` when there was nothing to run (a dry run).
async fn run(cli: Cli) -> anyhow::Result<Option<Summary>> {
    let opts = &cli.opts;
    refuse_duplicating_runs(opts)?; // before listing anything
    let mut aws = Aws {
        path_style: opts.s3_path_style,
        client: None,
    };
    let jobs = match &cli.command {
        Command::Invoke(_) => unreachable!("`invoke` is run by `main`"),
        Command::Worker(_) => unreachable!("`worker` is run by `main`"),
        Command::PlanMap(_) => unreachable!("`plan-map` is run by `main`"),
        Command::Docs(_) => unreachable!("`completions`, `man` and `reference` are run by `main`"),
        Command::Redrive(args) => return redrive(opts, args, &mut aws).await,
        Command::Replay {
            sources,
            source_root,
        } => replay_jobs(sources, source_root.as_deref(), &mut aws, &own_paths(opts)).await?,
        Command::Backfill {
            root,
            from,
            to,
            include_error_output,
            layout,
            dry_run,
            manifest,
        } => {
            if manifest.is_some() && !root.starts_with("s3://") {
                bail!("--manifest needs an s3:// root: S3 Batch Operations reads objects from S3");
            }
            let range = HourRange::parse(from, to).map_err(anyhow::Error::msg)?;
            let (store, base): (Arc<dyn ObjectStore>, String) = if root.starts_with("s3://") {
                let uri: S3Uri = root.parse().map_err(anyhow::Error::msg)?;
                let mut base = uri.key.clone();
                if !base.is_empty() && !base.ends_with('/') {
                    base.push('/');
                }
                (Arc::new(S3Store::new(aws.client().await, uri.bucket)), base)
            } else {
                let store = local_store(std::path::Path::new(root), &own_paths(opts))
                    .with_context(|| format!("backfill root {root}"))?;
                (Arc::new(store), String::new())
            };
            if manifest.is_none() && !*dry_run && !opts.load_mode() {
                // Listed as the run goes, a few hours ahead and several at a time.
                let mut listing = backfill::list(
                    store.clone(),
                    &base,
                    layout,
                    &range,
                    *include_error_output,
                    backfill::ListOptions::default(),
                );
                tracing::info!(hours = range.hours().count(), "backfill listing");
                listing.first_answer().await?;
                let progress = listing.progress.clone();
                let store = store.clone();
                let jobs = futures::StreamExt::map(listing.into_stream(), move |o| {
                    o.map(|object| Job {
                        store: store.clone(),
                        object,
                    })
                });
                let feed = runner::Feed::listed(jobs, progress);
                return finish_run(opts, &mut aws, Vec::new(), Some(feed)).await;
            }
            let objects =
                backfill::plan(store.clone(), &base, layout, &range, *include_error_output).await?;
            let bytes: u64 = objects.iter().filter_map(|o| o.size).sum();
            tracing::info!(
                hours = range.hours().count(),
                objects = objects.len(),
                mib = format!("{:.1}", bytes as f64 / 1048576.0),
                "backfill planned"
            );
            if let Some(path) = manifest {
                write_manifest(path, &objects)
                    .with_context(|| format!("writing the manifest {}", path.display()))?;
                say!(
                    "manifest: {} objects, {} bytes, written to {}",
                    objects.len(),
                    bytes,
                    path.display()
                );
                return Ok(None);
            }
            if *dry_run {
                crate::stdio::print(|out| {
                    writeln!(
                        out,
                        "plan: {} hours ({} .. {}), {} objects, {} bytes",
                        range.hours().count(),
                        range.first.format("%Y-%m-%dT%H"),
                        range.last.format("%Y-%m-%dT%H"),
                        objects.len(),
                        bytes
                    )?;
                    for o in &objects {
                        writeln!(out, "{}/{}\t{}", o.bucket, o.key, o.size.unwrap_or(0))?;
                    }
                    if opts.load_mode() {
                        let bounds = opts.bigquery.load_bounds();
                        let plan = bigquery::load::plan::plan(&objects, &bounds);
                        writeln!(out, "{}", plan.describe(objects.len(), &bounds))?;
                    }
                    Ok(())
                })?;
                return Ok(None);
            }
            objects
                .into_iter()
                .map(|object| Job {
                    store: store.clone(),
                    object,
                })
                .collect()
        }
    };
    finish_run(opts, &mut aws, jobs, None).await
}

/// Runs `jobs`, or the `listed` feed (a backfill listed as it goes), through the configured
/// sink.
async fn finish_run(
    opts: &Opts,
    aws: &mut Aws,
    jobs: Vec<Job>,
    listed: Option<runner::Feed>,
) -> anyhow::Result<Option<Summary>> {
    let shared = opts.shared(aws).await?;
    let concurrency = opts.concurrency();
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Progress::Bar
    } else if opts.progress_interval > 0 {
        Progress::Log(std::time::Duration::from_secs(opts.progress_interval))
    } else {
        Progress::Off
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(stop.clone()).context("listening for Ctrl-C")?;
    let mut summary = if opts.load_mode() {
        let SinkSpec::BigQuery(table) = &opts.sink else {
            unreachable!("load mode implies a BigQuery sink")
        };
        let config = opts.bigquery_config(table).await?;
        let (loads, encoder) = bigquery::connect_load(
            &config,
            std::time::Duration::from_millis(opts.bigquery.load_poll_ms.max(10)),
        )
        .await?;
        let merger = match &config.merge {
            // The load client just made serves the merges too: no second connection.
            Some(settings) => Some(bigquery::connect_merger(loads.clone(), settings).await?),
            None => None,
        };
        let run = bigquery::load::runner::LoadRun {
            shared,
            loads,
            encoder,
            merger,
            bounds: opts.bigquery.load_bounds(),
            concurrency,
            spool_dir: None,
            routing: opts.load_routing(table)?,
            growth: bigquery::load::schema::Growth {
                add_columns: config.schema_evolution == bigquery::SchemaEvolution::AddColumns,
                create: match &config.create_table {
                    Some(CreateTable {
                        schema: CreateSchema::Auto,
                        partition_by,
                        cluster_by,
                    }) => Some(bigquery::load::schema::CreateLayout {
                        partition_by: partition_by.clone(),
                        cluster_by: cluster_by.clone(),
                    }),
                    _ => None,
                },
                options: bigquery::encode::Options {
                    ignore_unknown_values: config.flags.ignore_unknown_values,
                    ..Default::default()
                },
            },
        };
        bigquery::load::runner::run(jobs, run, stop.clone()).await
    } else if let Some(feed) = listed {
        runner::run_feed(feed, shared, concurrency, progress, stop.clone()).await
    } else {
        runner::run(jobs, shared, concurrency, progress, stop.clone()).await
    };
    // Interrupted even if every object was already in flight and finished: exit 130.
    summary.interrupted = stop.load(Ordering::SeqCst);
    Ok(Some(summary))
}

/// Ctrl-C once sets `stop` (no new object starts; the run ends with 130 once those in flight
/// are settled); a second Ctrl-C exits 130 at once. The handler is in place when this returns,
/// so a Ctrl-C right after it is not lost.
fn watch_ctrl_c(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    const MESSAGE: &str =
        "interrupted: finishing the objects in flight (Ctrl-C again to abort now)";
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            if sigint.recv().await.is_some() {
                stop.store(true, Ordering::SeqCst);
                say!("{MESSAGE}");
                if sigint.recv().await.is_some() {
                    std::process::exit(130);
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.store(true, Ordering::SeqCst);
            say!("{MESSAGE}");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

/// `redrive`: object letters become jobs for the normal runner; records letters are rebuilt
/// into rows one letter at a time.
async fn redrive(
    opts: &Opts,
    args: &RedriveArgs,
    aws: &mut Aws,
) -> anyhow::Result<Option<Summary>> {
    use firehose_replay::redrive::{self, Source};
    let spec = args.source.as_str();
    let source = if let Some(url) = spec.strip_prefix("sqs:") {
        Source::Sqs {
            sqs: remote::sqs_client().await,
            s3: aws.client().await,
            queue_url: url.to_string(),
        }
    } else if spec.starts_with("s3://") {
        let uri: S3Uri = spec.parse().map_err(anyhow::Error::msg)?;
        Source::S3 {
            client: aws.client().await,
            bucket: uri.bucket,
            prefix: uri.key,
        }
    } else if let Some(dir) = redrive::dir_of(spec) {
        Source::Dir(dir.to_path_buf())
    } else {
        bail!("unsupported dead-letter source `{spec}`: use dir:PATH, s3://bucket/prefix/ or sqs:QUEUE_URL");
    };
    let letters = source.list(900).await?;
    if args.dry_run {
        crate::stdio::print(|out| {
            writeln!(out, "{} dead letters", letters.len())?;
            for l in &letters {
                let kind = match &l.doc.records {
                    Some(r) => format!("records ({})", r.len()),
                    None => "object".to_string(),
                };
                writeln!(
                    out,
                    "{kind}\t{}/{}\t{} {}: {}\t{}",
                    l.doc.object.bucket,
                    l.doc.object.key,
                    l.doc.class,
                    l.doc.stage,
                    l.doc.error,
                    l.location
                )?;
            }
            Ok(())
        })?;
        return Ok(None);
    }
    let shared = opts.shared(aws).await?;
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    // Object letters: through the runner (retries, ledger, concurrency).
    let (object_letters, record_letters): (Vec<_>, Vec<_>) =
        letters.into_iter().partition(|l| l.doc.records.is_none());
    let mut jobs = Vec::new();
    let source_root: Option<Arc<dyn ObjectStore>> = match &args.source_root {
        Some(root) => Some(Arc::new(LocalStore::new(root)?)),
        None => None,
    };
    let mut local_roots: std::collections::HashMap<PathBuf, Arc<dyn ObjectStore>> =
        Default::default();
    for l in &object_letters {
        let object = l.doc.object_ref();
        let store: Arc<dyn ObjectStore> = match (&source_root, &object.origin) {
            (Some(store), _) if store.bucket() == object.bucket => store.clone(),
            // Read from where the failed run read it; a root that is gone fails the object
            // (permanently, and at once) instead of trying a bucket of the same name.
            // Only a local `dir:` letter may choose a local directory (`--source-root` is
            // matched above): one from S3 or SQS could name any directory on this host.
            (_, Some(Origin::Local { root })) if !source.trusts_local_roots() => {
                Arc::new(NoBucket {
                    bucket: object.bucket.clone(),
                    why: format!(
                        "refused: a letter from {spec} says its object is in the local \
                         directory {}; redrive reads a local source named by a letter only \
                         from a dir: letter or when it is --source-root",
                        root.display()
                    ),
                })
            }
            (_, Some(Origin::Local { root })) => local_roots
                .entry(root.clone())
                .or_insert_with(|| match LocalStore::new(root) {
                    Ok(store) => Arc::new(store),
                    Err(e) => Arc::new(NoBucket {
                        bucket: object.bucket.clone(),
                        why: format!("the object's local source cannot be read: {e}"),
                    }),
                })
                .clone(),
            _ => Arc::new(S3Store::new(aws.client().await, &object.bucket)),
        };
        jobs.push(Job { store, object });
    }
    if !jobs.is_empty() {
        let ran = runner::run(
            jobs,
            shared.clone(),
            opts.concurrency(),
            Progress::Off,
            Arc::new(AtomicBool::new(false)),
        )
        .await;
        if ran.output_closed {
            // Which objects got through before the output closed is not known: every letter
            // stays, to be redriven again.
            return Ok(Some(ran));
        }
        for l in &object_letters {
            let failed = ran.failures.iter().any(|f| {
                f.object.bucket == l.doc.object.bucket && f.object.key == l.doc.object.key
            });
            // A delivered object's letter may already be gone: the runner removes stale
            // `dir:` letters itself.
            let gone = matches!(&l.location, redrive::Location::File(p) if !p.exists());
            if !failed {
                if !gone {
                    source.remove(&l.location).await?;
                }
                say!(
                    "redriven: {}/{} ({})",
                    l.doc.object.bucket,
                    l.doc.object.key,
                    l.location
                );
            }
        }
        summary = ran;
    }
    // Records letters.
    for l in record_letters {
        let (doc, sh) = (l.doc.clone(), shared.clone());
        let result = tokio::task::spawn_blocking(move || {
            redrive::redrive_records(&doc, &sh.settings, sh.sink.as_ref(), &sh.dead_letters)
        })
        .await?;
        let object = l.doc.object_ref();
        match result {
            Ok(outcome) => {
                summary.counts.rows += outcome.delivered - outcome.already_present;
                summary.counts.already_present += outcome.already_present;
                summary.counts.record_errors += outcome.still_failing;
                // Records that still fail may have been written over the very letter being
                // redriven (same destination); that one must stay.
                let replaced_in_place = match (&l.location, outcome.new_letter.as_deref()) {
                    (redrive::Location::File(old), Some(new)) => {
                        match (std::fs::canonicalize(old), std::fs::canonicalize(new)) {
                            (Ok(a), Ok(b)) => a == b,
                            _ => false,
                        }
                    }
                    (loc, Some(new)) => loc.to_string() == new,
                    (_, None) => false,
                };
                if !replaced_in_place {
                    source.remove(&l.location).await?;
                }
                if outcome.still_failing == 0 {
                    summary.objects_ok += 1;
                    say!(
                        "redriven: {} records of {}/{} ({})",
                        outcome.delivered,
                        object.bucket,
                        object.key,
                        l.location
                    );
                } else {
                    summary
                        .failures
                        .push(Box::new(firehose_replay::pipeline::ObjectFailure {
                            object,
                            error: firehose_replay::error::Error::permanent(
                                firehose_replay::error::Stage::Parse,
                                firehose_replay::error::Cause::Redrive(format!(
                                    "{} records still fail (kept in {})",
                                    outcome.still_failing,
                                    outcome.new_letter.as_deref().unwrap_or("?")
                                )),
                            ),
                            attempts: 1,
                            counts: Default::default(),
                        }));
                }
            }
            Err(error) if error.is_output_closed() => {
                // The letter stays; the rest is not tried (nobody reads the output).
                summary.output_closed = true;
                break;
            }
            Err(error) => {
                summary
                    .failures
                    .push(Box::new(firehose_replay::pipeline::ObjectFailure {
                        object,
                        error,
                        attempts: 1,
                        counts: Default::default(),
                    }))
            }
        }
    }
    summary.elapsed = started.elapsed();
    Ok(Some(summary))
}

/// An S3 Batch Operations CSV manifest: `bucket,key` per line, keys URL-encoded as the
/// service requires. Written to a temporary file and renamed, so a failed run leaves no
/// half-written manifest behind.
fn write_manifest(path: &std::path::Path, objects: &[ObjectRef]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = firehose_replay::sink::ndjson::output_tempfile(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        for o in objects {
            writeln!(w, "{},{}", o.bucket, url_encode_key(&o.key))?;
        }
        w.flush()?;
    }
    tmp.persist(path)?;
    Ok(())
}

/// The CLI's default ledger: a file inside the NDJSON output directory (deleting the output
/// resets it); none for stdout.
fn default_ledger(sink: &SinkSpec) -> LedgerSpec {
    match sink {
        SinkSpec::Ndjson(dir) => LedgerSpec::File(dir.join(".ledger.jsonl")),
        SinkSpec::Stdout => LedgerSpec::None,
        // (A routing template's field path may hold a `/`: not a directory.)
        SinkSpec::BigQuery(t) => LedgerSpec::File(PathBuf::from(format!(
            ".firehose-replay/ledger-{}.jsonl",
            t.to_string().replace('/', "_")
        ))),
    }
}

/// What a run writes locally: the NDJSON output directory, the dead-letter directory and the
/// ledger file. Local sources never read them back (`replay .` from the directory that holds
/// `./out` and `./dead-letter`).
fn own_paths(opts: &Opts) -> Vec<PathBuf> {
    let mut own = Vec::new();
    if let SinkSpec::Ndjson(dir) = &opts.sink {
        own.push(dir.clone());
    }
    let dl = opts.dead_letter.as_str();
    if !dl.contains("://") && !dl.starts_with("sqs:") {
        own.push(PathBuf::from(dl.strip_prefix("dir:").unwrap_or(dl)));
    }
    if let LedgerSpec::File(path) = opts
        .ledger
        .clone()
        .unwrap_or_else(|| default_ledger(&opts.sink))
    {
        own.push(path);
    }
    own.into_iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect()
}

/// A local store over `root` that skips the run's own files. A directory of them that holds the
/// tree itself (`--sink ndjson:.`) is narrowed to the part this tree's objects go to
/// (`DIR/<bucket>/`).
fn local_store(root: &std::path::Path, own: &[PathBuf]) -> anyhow::Result<LocalStore> {
    let store = LocalStore::new(root)?;
    let canon = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let bucket = store.bucket().to_string();
    let exclude: Vec<PathBuf> = own
        .iter()
        .map(|x| {
            if canon.starts_with(x) {
                x.join(&bucket)
            } else {
                x.clone()
            }
        })
        .collect();
    Ok(store.excluding(exclude))
}

/// `s3://bucket/path` without a trailing slash: the object `path` if there is one, else every
/// object below `path/` (as `backfill` reads a prefix either way). A listing that fails (no
/// `s3:ListBucket` permission) leaves it an object, so fetching it says what is wrong.
async fn key_or_prefix(store: &dyn ObjectStore, bucket: &str, key: &str) -> Vec<ObjectRef> {
    let single = || vec![ObjectRef::new(bucket, key)];
    let Ok(listed) = store.list(key).await else {
        return single();
    };
    if listed.iter().any(|o| o.key == key) {
        return single();
    }
    let dir = format!("{key}/");
    let below: Vec<ObjectRef> = listed
        .into_iter()
        .filter(|o| o.key.starts_with(&dir))
        .collect();
    if below.is_empty() {
        single()
    } else {
        below
    }
}

/// Sources → jobs: S3 objects or prefixes, local files or directories (each local object keyed
/// relative to its Firehose tree). An object named twice (`replay F F ./F`, a file and its
/// directory) is replayed once; local files the run itself writes are never read.
async fn replay_jobs(
    sources: &[String],
    source_root: Option<&std::path::Path>,
    aws: &mut Aws,
    own: &[PathBuf],
) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |jobs: &mut Vec<Job>, origin: String, job: Job| {
        if seen.insert((origin, job.object.bucket.clone(), job.object.key.clone())) {
            jobs.push(job);
        }
    };
    for source in sources {
        if source.starts_with("s3://") {
            let uri: S3Uri = source.parse().map_err(anyhow::Error::msg)?;
            let store: Arc<dyn ObjectStore> =
                Arc::new(S3Store::new(aws.client().await, &uri.bucket));
            let objects = if uri.key.is_empty() || uri.key.ends_with('/') {
                store.list(&uri.key).await?
            } else {
                key_or_prefix(&*store, &uri.bucket, &uri.key).await
            };
            for object in objects {
                let job = Job {
                    store: store.clone(),
                    object,
                };
                push(&mut jobs, "s3".into(), job);
            }
            continue;
        }
        let path = PathBuf::from(source);
        let (root, key) = match source_root {
            Some(r) => firehose_replay::source::local::below(r, &path),
            None => locate(&path),
        }
        .with_context(|| format!("cannot read {source}"))?;
        let local = local_store(&root, own)?;
        if !path.is_dir() && local.is_excluded(&path) {
            tracing::warn!("skipped {source}: the run writes it (output, dead letters or ledger)");
            continue;
        }
        let store: Arc<dyn ObjectStore> = Arc::new(local);
        let objects = if path.is_dir() {
            store.list(&key).await?
        } else {
            vec![ObjectRef::new(store.bucket(), key)]
        };
        for object in objects {
            let job = Job {
                store: store.clone(),
                object,
            };
            push(&mut jobs, root.display().to_string(), job);
        }
    }
    Ok(jobs)
}

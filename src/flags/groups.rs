//! The flags by help heading, one struct each (`replay --help` shows them under these headings).

use std::path::PathBuf;

use clap::Args;
use firehose_replay::decode::CompressionChoice;
use firehose_replay::frame::Framing;
use firehose_replay::ledger::LedgerSpec;
use firehose_replay::pipeline::RecordPolicy;
use firehose_replay::record::Envelope;
use firehose_replay::sink::SinkSpec;

use super::parsers::*;

/// Where objects come from and how their bytes are read.
#[derive(Args, Debug)]
#[command(next_help_heading = "Input")]
pub(crate) struct InputFlags {
    /// auto | none | gzip | zstd | snappy (any Snappy container, told by its bytes) | snappy-java
    /// (Firehose's Snappy; alias xerial-snappy) | snappy-framed | hadoop-snappy | zip.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_COMPRESSION",
        default_value = "auto"
    )]
    pub(crate) compression: CompressionChoice,
    /// auto | newline | concatenated | delimiter:<byte or escape like \n, \x1e>.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_FRAMING",
        default_value = "auto"
    )]
    pub(crate) framing: Framing,
    /// auto | none | cloudwatch-logs | firehose-error.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ENVELOPE",
        default_value = "auto"
    )]
    pub(crate) envelope: Envelope,
    /// Use path-style S3 addressing (automatic when AWS_ENDPOINT_URL[_S3] is set).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_S3_PATH_STYLE",
        value_parser = env_bool
    )]
    pub(crate) s3_path_style: bool,
}

/// Where rows go and what they hold.
#[derive(Args, Debug)]
#[command(next_help_heading = "Sink")]
pub(crate) struct SinkFlags {
    /// Where rows go: ndjson:DIR (one file per object), stdout,
    /// bigquery:PROJECT.DATASET.TABLE (written as --bigquery-mode says: storage-write by default),
    /// postgres://USER@HOST:PORT/DB?table=SCHEMA.TABLE or
    /// iceberg:sqlite:///PATH/catalog.db?warehouse=DIR#NAMESPACE.TABLE (an Apache Iceberg table
    /// through a SQL catalog; iceberg:postgres://… for a PostgreSQL catalog,
    /// iceberg:glue://?warehouse=s3://BUCKET/PREFIX#DB.TABLE,
    /// iceberg:s3tables:TABLE_BUCKET_ARN#NAMESPACE.TABLE, iceberg:rest+https://HOST/PATH#NS.TABLE;
    /// a warehouse may be s3://BUCKET/PREFIX).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_SINK",
        default_value = "ndjson:./out",
        value_parser = SinkParser
    )]
    pub(crate) sink: SinkSpec,
    /// Take row IDs from this field (dotted path, e.g. detail.id) instead of the source position.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_ROW_ID_FIELD")]
    pub(crate) row_id_field: Option<String>,
    /// Column that carries the row ID; '' leaves it out of the rows.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ROW_ID_COLUMN",
        default_value = "_row_id"
    )]
    pub(crate) row_id_column: String,
    /// Extra columns: any of source_uri, record_ordinal, ingested_at (comma-separated), written
    /// as _source_uri, _record_ordinal, _ingested_at.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_METADATA_COLUMNS",
        default_value = "none"
    )]
    pub(crate) metadata_columns: firehose_replay::row::Metadata,
    /// Write each record whole into this one column (BigQuery: a JSON column), beside the row
    /// ID and metadata columns, so no schema refuses a record for its fields ("land raw, model
    /// later"). --map applies first.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_PAYLOAD_COLUMN")]
    pub(crate) payload_column: Option<String>,
    /// Field mapping applied to every record, given inline or as a JSON file holding it:
    /// {"rename":{"a.b":"col"},"drop":["x"],"json":["payload"]} (a value starting with { is the
    /// mapping itself; anything else is the file's path).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAP",
        value_name = "JSON|FILE"
    )]
    pub(crate) map: Option<PathBuf>,
}

/// What keeps a replay from writing an object twice.
#[derive(Args, Debug)]
#[command(next_help_heading = "Ledger and exactly once")]
pub(crate) struct LedgerFlags {
    /// Which objects are done: file:PATH, s3://bucket/prefix/ (safe for concurrent workers),
    /// postgres (beside a postgres sink's table; its default) or none. Default: a file in the
    /// ndjson output directory; none for stdout.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_LEDGER")]
    pub(crate) ledger: Option<LedgerSpec>,
    /// Process objects even if the ledger has them as done.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_FORCE", value_parser = env_bool)]
    pub(crate) force: bool,
    /// Let --force or --ledger none write rows again into BigQuery in storage-write or load mode
    /// or into an Iceberg table, where nothing removes the copies (refused without it).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ALLOW_DUPLICATES",
        value_parser = env_bool
    )]
    pub(crate) allow_duplicates: bool,
    /// How long an S3 ledger claim holds before another worker may take the object over.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CLAIM_TTL_SECS",
        default_value_t = 900
    )]
    pub(crate) claim_ttl_secs: u64,
}

/// What happens to records and objects that fail.
#[derive(Args, Debug)]
#[command(next_help_heading = "Failures and dead letters")]
pub(crate) struct FailureFlags {
    /// What to do with a record that cannot become a row: skip | dead-letter | fail.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ON_RECORD_ERROR",
        default_value = "dead-letter"
    )]
    pub(crate) on_record_error: RecordPolicy,
    /// An object fails (nothing of it committed, the whole object dead-lettered, exit 1) when at
    /// least this share of its records was refused; 1.0: only an object whose every record was;
    /// off: never. The default, 0.9, fails an object that is overwhelmingly not records (text
    /// whose few "rows" are accidental scalars) instead of landing what happened to parse.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_RECORD_ERROR_RATIO", default_value_t = firehose_replay::pipeline::DEFAULT_MAX_RECORD_ERROR_RATIO, value_parser = ratio)]
    pub(crate) max_record_error_ratio: f64,
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
    pub(crate) dead_letter_overflow: Option<String>,
    /// Tries per object (the first included) when it fails transiently; then it is
    /// dead-lettered (CLI) or reported for the platform to retry (Lambda).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_MAX_ATTEMPTS",
        default_value_t = 3,
        value_parser = at_least_one::<u32>
    )]
    pub(crate) max_attempts: u32,
    /// Seconds one object may take, retries included (CLI; Lambda uses the invocation's time).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_OBJECT_TIMEOUT")]
    pub(crate) object_timeout: Option<u64>,
}

/// Bounds on what one object or the run may take.
#[derive(Args, Debug)]
#[command(next_help_heading = "Limits")]
pub(crate) struct LimitFlags {
    /// Records longer than this are record-level errors.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_RECORD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub(crate) max_record_bytes: usize,
    /// Cap on decompressed bytes per object (decompression bomb guard).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_DECOMPRESSED_BYTES", default_value_t = 4 * 1024 * 1024 * 1024)]
    pub(crate) max_decompressed_bytes: u64,
    /// Local disk the run may hold in records dead letters being written (scratch space; see
    /// docs/src/failures.md). Past it an object fails permanently instead of filling the disk.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_SCRATCH_BYTES", default_value_t = firehose_replay::scratch::DEFAULT_MAX_SCRATCH_BYTES)]
    pub(crate) max_scratch_bytes: u64,
    /// Objects processed at once (default: cores × 2 — fetching overlaps decoding).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_CONCURRENCY",
        value_parser = at_least_one::<usize>
    )]
    pub(crate) concurrency: Option<usize>,
}

/// What the run says while it goes.
#[derive(Args, Debug)]
#[command(next_help_heading = "Logging")]
pub(crate) struct LogFlags {
    /// Log filter: error, warn, info, debug, trace, or a tracing filter (info,h2=debug).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_LOG_LEVEL",
        default_value = "info",
        value_parser = log_level
    )]
    pub(crate) log_level: String,
    /// Seconds between progress log lines when stderr is not a terminal (0: none).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_PROGRESS_INTERVAL",
        default_value_t = 10
    )]
    pub(crate) progress_interval: u64,
}

//! The arguments of `invoke` and `redrive` (the other commands' are in `Command`).

use std::path::PathBuf;

use clap::Args;

use crate::flags::parsers::*;

/// `invoke`'s arguments.
#[derive(Args, Debug)]
pub(crate) struct InvokeArgs {
    /// The event: a JSON file, or `-` for standard input (e.g. copied from CloudWatch Logs or
    /// an SQS message).
    #[arg(long)]
    pub(crate) event: String,
    /// The function's timeout in seconds: the invocation's deadline is this long after start.
    #[arg(long, default_value_t = 900, value_parser = at_least_one::<u64>)]
    pub(crate) timeout: u64,
    /// Read bucket B from the local directory DIR/B instead of S3.
    #[arg(long, value_name = "DIR")]
    pub(crate) buckets: Option<PathBuf>,
    /// The request ID the log lines carry.
    #[arg(long, default_value = "local-invoke")]
    pub(crate) request_id: String,
    /// As in Lambda: time kept back from the deadline (no object starts with less left; those
    /// in flight give up at half of it).
    #[arg(
        long,
        env = "FIREHOSE_REPLAY_DEADLINE_MARGIN_MS",
        default_value_t = 10_000
    )]
    pub(crate) deadline_margin_ms: u64,
    /// As in Lambda: the bucket of Distributed Map items that name none.
    #[arg(long, env = "FIREHOSE_REPLAY_MAP_BUCKET")]
    pub(crate) map_bucket: Option<String>,
}

/// `redrive`'s arguments.
#[derive(Args, Debug)]
pub(crate) struct RedriveArgs {
    /// Where the dead letters are: dir:PATH (or a path), s3://bucket/prefix/ or sqs:QUEUE_URL.
    pub(crate) source: String,
    /// List the dead letters (kind, object, reason) and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// A local directory that plays the bucket of object letters (its name is the bucket
    /// name), instead of where each letter says its object was read from (the local directory
    /// of a local run, or S3); other buckets are read from there.
    #[arg(long)]
    pub(crate) source_root: Option<PathBuf>,
}

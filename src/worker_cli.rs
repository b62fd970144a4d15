//! `firehose-replay worker`: the command line of the long-running SQS worker. The sink, ledger,
//! dead-letter, decoding and retry setup is the one `replay` and `backfill` use (`run::Setup`),
//! configured by the same flags and `FIREHOSE_REPLAY_*` variables as the Lambda function, so one
//! configuration serves both.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use firehose_replay::ledger::LedgerSpec;
use firehose_replay::run::Entry;
use firehose_replay::trigger::handler::S3Stores;
use firehose_replay::worker::{self, Shutdown};

use crate::flags::Opts;
use firehose_replay::aws::Aws;

/// `worker`'s arguments.
#[derive(Args, Debug)]
pub(crate) struct WorkerArgs {
    /// The queue S3 notifications arrive on (directly, through SNS or from EventBridge).
    #[arg(long, env = "FIREHOSE_REPLAY_QUEUE", value_name = "QUEUE_URL")]
    queue: String,
    /// Seconds a received message stays invisible, and what the heartbeat extends it by while
    /// its object runs. Default: the queue's VisibilityTimeout.
    #[arg(long, env = "FIREHOSE_REPLAY_VISIBILITY_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=43_200))]
    visibility_timeout: Option<u64>,
    /// Seconds objects in flight may take to finish after SIGTERM/SIGINT; then they commit
    /// nothing and their messages are made visible again. Under ECS's 30 s stop timeout.
    #[arg(long, env = "FIREHOSE_REPLAY_SHUTDOWN_GRACE", default_value_t = 25.0, value_parser = seconds)]
    shutdown_grace: f64,
    /// Serve /healthz and /metrics (Prometheus) on this address: the pod's (e.g. 10.0.3.7:9090)
    /// or loopback rather than 0.0.0.0, so only the probes and the scraper reach it.
    #[arg(long, env = "FIREHOSE_REPLAY_HEALTH_ADDR")]
    health_addr: Option<SocketAddr>,
    /// Seconds a message whose object must be retried (a transient failure, another worker
    /// holding it) stays invisible after its first receive; doubled with each receive, at most
    /// 900. The queue's redrive policy counts the receives and finally moves it to its DLQ.
    #[arg(long, env = "FIREHOSE_REPLAY_RETRY_VISIBILITY", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=900))]
    retry_visibility: u64,
    /// Long-poll wait of each receive, in seconds (SQS allows 0 to 20).
    #[arg(long, env = "FIREHOSE_REPLAY_RECEIVE_WAIT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=20))]
    receive_wait: u64,
    /// Exit 0 once a receive finds no visible message and nothing is in flight (a batch job
    /// that drains the queue). Messages waiting out a backoff stay in the queue.
    #[arg(long, env = "FIREHOSE_REPLAY_UNTIL_EMPTY", value_parser = crate::flags::parsers::env_bool)]
    until_empty: bool,
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds")),
    }
}

/// Runs the worker until SIGTERM/SIGINT. Exit 0 after a clean shutdown.
pub(crate) async fn run(opts: &Opts, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let setup = opts.setup(Entry::Worker)?;
    setup.validate()?;
    if args.queue.is_empty() {
        bail!("--queue (FIREHOSE_REPLAY_QUEUE) needs a queue URL");
    }
    // (A postgres sink's ledger, its default, is in the database: shared by every worker.)
    if !matches!(
        setup.ledger_spec(),
        LedgerSpec::S3 { .. } | LedgerSpec::Postgres
    ) {
        tracing::warn!(
            "the ledger is not on S3 (--ledger s3://bucket/prefix/): workers in other containers \
             do not see it, and a redelivered message's object may be processed twice"
        );
    }
    // Installed before anything slow, so an early SIGTERM is not lost.
    let shutdown = Shutdown::default();
    shutdown
        .on_signals()
        .context("installing signal handlers")?;
    let mut aws = Aws {
        path_style: opts.input.s3_path_style,
        client: None,
    };
    let shared = setup.build(&mut aws).await.context("configuration")?;
    let stores = Arc::new(S3Stores::new(aws.client().await));
    let sqs = firehose_replay::dead_letter::remote::sqs_client().await;
    let config = worker::Config {
        queue_url: args.queue.clone(),
        concurrency: setup.concurrency,
        visibility: args.visibility_timeout.map(Duration::from_secs),
        wait: Duration::from_secs(args.receive_wait),
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
        retry_visibility: Duration::from_secs(args.retry_visibility),
        health_addr: args.health_addr,
        until_empty: args.until_empty,
    };
    let report = worker::run(config, shared, stores, sqs, shutdown).await?;
    tracing::info!(
        messages = report.messages,
        released = report.released,
        "worker stopped"
    );
    Ok(ExitCode::SUCCESS)
}

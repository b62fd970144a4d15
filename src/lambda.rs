//! Running as an AWS Lambda function: configuration from `FIREHOSE_REPLAY_*` environment
//! variables (the CLI's flags), clients built once per container, JSON logs, and the runtime
//! loop from `lambda_runtime` around the library's plain async handler.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use firehose_replay::trigger::handler::{Handler, HandlerError, S3Stores};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::flags::Opts;
use firehose_replay::aws::Aws;
use firehose_replay::dead_letter::spec::DeadLetterSpec;
use firehose_replay::run::Entry;

/// The CLI's options, read from the environment only (there is no command line in Lambda).
#[derive(Parser, Debug)]
#[command(name = "bootstrap")]
struct LambdaConfig {
    #[command(flatten)]
    opts: Opts,
    /// Time kept back from the invocation's deadline: no object starts with less than this
    /// left, objects in flight give up at half of it.
    #[arg(
        long,
        env = "FIREHOSE_REPLAY_DEADLINE_MARGIN_MS",
        default_value_t = 10_000
    )]
    deadline_margin_ms: u64,
    /// The bucket of Step Functions Distributed Map items that name none (ListObjectsV2
    /// items) when the ItemBatcher's `BatchInput` has no `bucket` either.
    #[arg(long, env = "FIREHOSE_REPLAY_MAP_BUCKET")]
    map_bucket: Option<String>,
}

pub fn main() -> ExitCode {
    let config = match LambdaConfig::try_parse_from(["bootstrap"]) {
        Ok(c) => c,
        Err(e) => {
            crate::stdio::say!("invalid FIREHOSE_REPLAY_* configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_json_logging(&config.opts.logging.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

/// Lambda's logs are read by machines (CloudWatch Logs Insights): one JSON object per line.
fn init_json_logging(level: &str) {
    let filter = firehose_replay::logging::log_filter(level);
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(crate::stdio::lossy_stdout)
        .log_internal_errors(false)
        .init();
}

async fn build(config: LambdaConfig) -> anyhow::Result<Handler> {
    let opts = config.opts;
    let mut setup = opts.setup(Entry::Lambda)?;
    setup.validate()?;
    if std::env::var_os("FIREHOSE_REPLAY_SINK").is_none() {
        bail!("set FIREHOSE_REPLAY_SINK: the CLI's default (./out) is not writable in Lambda");
    }
    if std::env::var_os("FIREHOSE_REPLAY_DEAD_LETTER").is_none() {
        // The task directory is read-only; /tmp is the only writable place.
        setup.dead_letter.spec = DeadLetterSpec::Dir("/tmp/dead-letter".into());
        tracing::warn!("FIREHOSE_REPLAY_DEAD_LETTER is not set: dead letters go to /tmp and are lost with the container");
    }
    let mut aws = Aws {
        path_style: opts.input.s3_path_style,
        client: None,
    };
    let shared = setup.build(&mut aws).await.context("configuration")?;
    let client = aws.client().await;
    Ok(Handler {
        stores: Arc::new(S3Stores::new(client)),
        shared,
        concurrency: setup.concurrency,
        margin: Duration::from_millis(config.deadline_margin_ms),
        metrics: Some(
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "firehose-replay".into()),
        ),
        map_bucket: config.map_bucket,
    })
}

async fn serve(config: LambdaConfig) -> anyhow::Result<()> {
    // Built once per container (cold start) and reused by every invocation.
    let handler = Arc::new(build(config).await?);
    tracing::info!(
        concurrency = handler.concurrency,
        margin_ms = handler.margin.as_millis() as u64,
        "firehose-replay ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let deadline = instant_of(event.context.deadline);
            handler
                .handle(&event.payload, deadline, &event.context.request_id)
                .await
                .map_err(diagnostic)
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}

/// The runtime gives the deadline as epoch milliseconds; the handler works with `Instant`s.
fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// What Lambda answers a synchronous invoke whose handler failed (what `invoke` prints).
pub(crate) fn error_response(e: &HandlerError) -> Value {
    let d = diagnostic_of(e);
    serde_json::json!({ "errorType": d.error_type, "errorMessage": d.error_message })
}

fn diagnostic(e: HandlerError) -> Diagnostic {
    diagnostic_of(&e)
}

fn diagnostic_of(e: &HandlerError) -> Diagnostic {
    let error_type = match e {
        HandlerError::Trigger(_) => "UnrecognisedEvent",
        HandlerError::Retry { .. } => "ObjectsToRetry",
        // What the state machine's Retry names (plan-map's ASL does).
        HandlerError::MapRetry { .. } => firehose_replay::trigger::map_result::MAP_TRANSIENT_ERROR,
    };
    Diagnostic {
        error_type: error_type.into(),
        error_message: e.to_string(),
    }
}

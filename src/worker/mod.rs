//! The long-running SQS worker (`firehose-replay worker`): the Lambda's S3 → SQS trigger as a
//! container process (ECS, Kubernetes), for objects that take longer than a Lambda may run,
//! VPC-only sinks, or platforms that scale containers on queue depth. The queue is the only
//! coordination: any number of workers consume it, and the ledger's fenced claims keep a
//! second worker from committing an object twice.
//!
//! One job per file: `queue` (the SQS calls), `heartbeat` (visibility extensions while objects
//! run), `message` (a message's objects and what becomes of it), `settle` (batched deletes and
//! visibility changes), `shutdown` (signals), `metrics` and `health` (Prometheus and probes).
//! This file is the receive loop and the shutdown sequence.

pub mod health;
pub mod heartbeat;
pub mod message;
pub mod metrics;
pub mod queue;
pub mod settle;
pub mod shutdown;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::run::Shared;
use crate::trigger::handler::Stores;
use heartbeat::Heartbeat;
use metrics::Metrics;
use queue::{Queue, MAX_BATCH};
use settle::Settler;
pub use shutdown::Shutdown;

/// After the grace, how long objects get to notice they are abandoned (between record
/// batches) before their messages are released regardless.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("SQS queue: {0}")]
    Queue(String),
    #[error("cannot serve the health endpoint on {0}: {1}")]
    Health(SocketAddr, std::io::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Config(String),
}

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub queue_url: String,
    /// Objects processed at once.
    pub concurrency: usize,
    /// How long a received message stays invisible, and what the heartbeat extends it by;
    /// `None`: the queue's own visibility timeout.
    pub visibility: Option<Duration>,
    /// Long-poll wait of each receive (at most 20 s).
    pub wait: Duration,
    /// After SIGTERM, how long objects in flight may take to finish.
    pub shutdown_grace: Duration,
    /// First backoff visibility of a message whose object must be retried.
    pub retry_visibility: Duration,
    pub health_addr: Option<SocketAddr>,
    /// Stop (as on SIGTERM) once a receive finds the queue empty and nothing is in flight: a
    /// batch job that drains the queue (a Kubernetes Job, a benchmark).
    pub until_empty: bool,
}

/// What a run did, for its last log line.
#[derive(Debug, Default)]
pub struct Report {
    pub messages: u64,
    /// Messages made visible again at shutdown because their objects did not finish.
    pub released: u64,
}

/// Runs until `shutdown` says stop, then drains (see the module docs).
pub async fn run(
    config: Config,
    shared: Shared,
    stores: Arc<dyn Stores>,
    sqs: aws_sdk_sqs::Client,
    shutdown: Shutdown,
) -> Result<Report, WorkerError> {
    let metrics = Arc::new(Metrics::new()?);
    let queue = Arc::new(Queue::new(sqs, &config.queue_url, metrics.clone()));
    let visibility = match config.visibility {
        Some(v) => v,
        None => queue.visibility_timeout().await?,
    };
    if visibility < Duration::from_secs(1) {
        return Err(WorkerError::Config(format!(
            "a visibility timeout of {} s leaves no time to extend it: set the queue's \
             VisibilityTimeout or --visibility-timeout to at least 1 s (30 s or more is usual)",
            visibility.as_secs()
        )));
    }
    let background = CancellationToken::new();
    if let Some(addr) = config.health_addr {
        let bound = health::serve(addr, metrics.clone(), background.clone()).await?;
        tracing::info!(addr = %bound, "health endpoint listening (/healthz, /metrics)");
    }
    let heartbeat = Arc::new(Heartbeat::new(queue.clone(), visibility, metrics.clone()));
    let heartbeat_task = tokio::spawn(heartbeat.clone().run(background.clone()));
    let (settler, settler_task) = Settler::start(queue.clone(), metrics.clone(), visibility);
    let abort = Arc::new(AtomicBool::new(false));
    let concurrency = config.concurrency.max(1);
    // Messages held at once: those whose objects run, and one receive's worth waiting for a
    // slot (kept invisible by the heartbeat meanwhile). Receiving only when a whole batch fits
    // keeps receives near one per 10 messages under load.
    let held_cap = concurrency + MAX_BATCH;
    let held = Arc::new(Semaphore::new(held_cap));
    let cx = Arc::new(message::Cx::new(
        shared,
        stores,
        heartbeat.clone(),
        settler,
        metrics.clone(),
        message::Limits {
            slots: Arc::new(Semaphore::new(concurrency)),
            stop: shutdown.stop.clone(),
            abort: abort.clone(),
        },
        config.retry_visibility,
    ));
    let mut tasks = JoinSet::new();
    let mut report = Report::default();
    tracing::info!(
        queue = %config.queue_url,
        concurrency,
        visibility_secs = visibility.as_secs(),
        heartbeat_ms = heartbeat.every().as_millis() as u64,
        "worker ready"
    );
    let mut failures: u32 = 0;
    loop {
        while tasks.try_join_next().is_some() {}
        let batch = MAX_BATCH.min(held_cap) as u32;
        let mut room = tokio::select! {
            p = held.clone().acquire_many_owned(batch) => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.stop.cancelled() => break,
        };
        // A receive cut short by the signal may have been answered already: those messages
        // come back when their visibility lapses.
        let received = tokio::select! {
            r = queue.receive(batch as usize, config.wait, visibility) => r,
            _ = shutdown.stop.cancelled() => break,
        };
        match received {
            Ok(messages) if messages.is_empty() && config.until_empty => {
                while tasks.try_join_next().is_some() {}
                if tasks.is_empty() {
                    tracing::info!(
                        "the queue is empty and nothing is in flight: stopping (--until-empty)"
                    );
                    break;
                }
            }
            Ok(messages) => {
                failures = 0;
                report.messages += messages.len() as u64;
                for m in messages {
                    let Some(permit) = room.split(1) else { break };
                    tasks.spawn(message::handle(cx.clone(), m, permit));
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay =
                    Duration::from_millis(100 << failures.min(8)).min(Duration::from_secs(20));
                tracing::warn!(
                    failures,
                    retry_ms = delay.as_millis() as u64,
                    "cannot receive from the queue: {e}"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.stop.cancelled() => break,
                }
            }
        }
    }
    // Shutdown: objects in flight get the grace; the rest are abandoned.
    let in_flight = tasks.len();
    if in_flight > 0 {
        tracing::info!(
            messages_in_flight = in_flight,
            grace_secs = config.shutdown_grace.as_secs_f64(),
            "draining"
        );
    }
    let drained = tokio::select! {
        _ = drain(&mut tasks) => true,
        _ = tokio::time::sleep(config.shutdown_grace) => false,
        _ = shutdown.now.cancelled() => false,
    };
    if !drained {
        abort.store(true, Ordering::SeqCst);
        tracing::warn!(
            objects_in_flight = metrics.in_flight.get(),
            "shutdown grace over: objects still running commit nothing, their messages are returned"
        );
        let _ = tokio::time::timeout(ABANDON_WAIT, drain(&mut tasks)).await;
        tasks.abort_all();
        drain(&mut tasks).await;
    }
    background.cancel();
    let _ = heartbeat_task.await;
    // Messages whose objects did not even give up in time: visible again now.
    heartbeat.release_all().await;
    drop(cx); // the last settler: its task sends what is queued and ends
    let _ = settler_task.await;
    report.released = metrics.messages.with_label_values(&["released"]).get();
    Ok(report)
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

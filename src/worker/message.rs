//! One SQS message: its body read as the Lambda reads an SQS record's (every shape S3 reaches a
//! queue in), its objects processed while the heartbeat keeps it invisible, and the message
//! settled by what became of them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::heartbeat::Heartbeat;
use super::metrics::Metrics;
use super::queue::Received;
use super::settle::{backoff, Action, Settler};
use crate::error::{Cause, Class};
use crate::object::ObjectRef;
use crate::pipeline::{Counts, Processed, Skip};
use crate::run::{log_report, settle_failure, Shared};
use crate::trigger::handler::Stores;
use crate::trigger::{objects_in_body, TriggerError};

/// Longest backoff visibility after transient failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(900);

/// Message IDs remembered as malformed, so each is logged once (it comes back until the
/// redrive policy moves it to the DLQ).
const MALFORMED_REMEMBERED: usize = 10_000;

/// What bounds the work of the message tasks.
pub struct Limits {
    /// `--concurrency`: one permit per object being processed.
    pub slots: Arc<Semaphore>,
    /// Shutdown began: objects not started yet are not started.
    pub stop: CancellationToken,
    /// The shutdown grace is over: objects still running give up.
    pub abort: Arc<AtomicBool>,
}

/// What the message tasks share.
pub struct Cx {
    pub shared: Shared,
    pub stores: Arc<dyn Stores>,
    pub heartbeat: Arc<Heartbeat>,
    pub settler: Settler,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// First backoff visibility after a transient failure (doubles with each receive).
    pub retry_visibility: Duration,
    malformed: Mutex<HashSet<String>>,
}

impl Cx {
    pub fn new(
        shared: Shared,
        stores: Arc<dyn Stores>,
        heartbeat: Arc<Heartbeat>,
        settler: Settler,
        metrics: Arc<Metrics>,
        limits: Limits,
        retry_visibility: Duration,
    ) -> Cx {
        Cx {
            shared,
            stores,
            heartbeat,
            settler,
            metrics,
            limits,
            retry_visibility,
            malformed: Mutex::new(HashSet::new()),
        }
    }

    /// True the first time this worker sees `id` malformed.
    fn first_malformed(&self, id: &str) -> bool {
        let mut seen = self.malformed.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MALFORMED_REMEMBERED {
            seen.clear();
        }
        seen.insert(id.to_string())
    }
}

/// What became of one object, for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Committed, already done, or dead-lettered: nothing left to do.
    Done,
    /// Worth another try later (transient failure, another worker holds it).
    Retry,
    /// Abandoned at shutdown, nothing committed.
    Interrupted,
}

/// Handles one message; `_held` is its place among the messages the worker holds. Its objects
/// run one after another, each in a slot of `--concurrency`.
pub async fn handle(cx: Arc<Cx>, m: Received, _held: OwnedSemaphorePermit) {
    let objects = match objects_in_body(&m.body) {
        Ok(objects) => objects,
        // A well-formed envelope around something that is not an S3 event (another publisher
        // on the topic): redelivery cannot change it. Reported and deleted, as the Lambda does.
        Err(e @ TriggerError::Unknown(_)) => {
            tracing::error!(message_id = %m.id, "unrecognised SQS message, deleted: {e}");
            cx.settler.settle(&m.id, &m.receipt, Action::Delete);
            return;
        }
        // Looks like ours but does not parse: left for the queue's redrive policy, which moves
        // it to the DLQ for a person to look at. Deleting it would lose it.
        Err(e) => {
            cx.metrics.messages.with_label_values(&["left"]).inc();
            if cx.first_malformed(&m.id) {
                tracing::error!(
                    message_id = %m.id,
                    receive_count = m.receive_count,
                    "unusable SQS message, left for the queue's redrive policy: {e}"
                );
            } else {
                tracing::debug!(message_id = %m.id, receive_count = m.receive_count, "unusable SQS message again");
            }
            return;
        }
    };
    if objects.is_empty() {
        tracing::info!(message_id = %m.id, "message names no created object (s3:TestEvent or another event type), deleted");
        cx.settler.settle(&m.id, &m.receipt, Action::Delete);
        return;
    }
    let token = cx.heartbeat.track(&m).await;
    let mut settled = Vec::with_capacity(objects.len());
    for object in objects {
        let slot = tokio::select! {
            slot = cx.limits.slots.clone().acquire_owned() => slot.ok(),
            _ = cx.limits.stop.cancelled() => None,
        };
        // Not started once shutdown began: its message goes back at once.
        let Some(_slot) = slot.filter(|_| !cx.limits.stop.is_cancelled()) else {
            settled.push(Settled::Interrupted);
            continue;
        };
        settled.push(process(&cx, object, &m.id).await);
    }
    cx.heartbeat.untrack(token).await;
    let action = if settled.iter().all(|s| *s == Settled::Done) {
        Action::Delete
    } else if settled.contains(&Settled::Interrupted) {
        Action::Release
    } else {
        let after = backoff(m.receive_count, cx.retry_visibility, MAX_BACKOFF);
        tracing::warn!(
            message_id = %m.id,
            receive_count = m.receive_count,
            backoff_secs = after.as_secs(),
            "message returned to the queue: an object must be retried"
        );
        Action::Backoff(after)
    };
    cx.settler.settle(&m.id, &m.receipt, action);
}

/// Processes one object on a blocking thread and reports it (log line, metrics).
async fn process(cx: &Cx, object: ObjectRef, message_id: &str) -> Settled {
    let store = cx.stores.store(&object.bucket);
    let shared = cx.shared.clone();
    let abort = cx.limits.abort.clone();
    let started = Instant::now();
    cx.metrics.in_flight.inc();
    let task = {
        let object = object.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = shared.object_timeout.map(|t| Instant::now() + t);
            shared.process_until(store.as_ref(), object, deadline, Some(&abort))
        })
    };
    let joined = task.await;
    cx.metrics.in_flight.dec();
    cx.metrics
        .object_duration
        .observe(started.elapsed().as_secs_f64());
    let metrics = &cx.metrics;
    let result = match joined {
        Ok(r) => r,
        // A panic is a bug, never an input problem: the object is tried again later.
        Err(join) => {
            tracing::error!(message_id, object = %object, "object task failed: {join}");
            metrics.object("retry", &Counts::default());
            return Settled::Retry;
        }
    };
    match result {
        Ok(Processed::Done(report)) => {
            log_report(&report, true);
            metrics.object("done", &report.counts);
            if report.dead_letter.is_some() {
                metrics.dead_letters.with_label_values(&["records"]).inc();
            }
            if let Some(name) = report.object.firehose_name() {
                let lag = (chrono::Utc::now() - name.written_at).num_milliseconds() as f64 / 1e3;
                metrics.object_lag.set(lag.max(0.0));
            }
            Settled::Done
        }
        Ok(Processed::Skipped { object, reason }) => match reason {
            Skip::AlreadyDone => {
                tracing::info!(message_id, object = %object, "skipped: already done (ledger)");
                metrics.object("already_done", &Counts::default());
                Settled::Done
            }
            // Retried later, by when the holder has finished it or its claim has lapsed.
            Skip::Busy(who) => {
                tracing::info!(message_id, object = %object, holder = %who, "another worker holds the object");
                metrics.object("retry", &Counts::default());
                Settled::Retry
            }
        },
        Err(failure) => {
            let interrupted = matches!(failure.error.cause, Cause::Interrupted)
                || (cx.limits.abort.load(Ordering::SeqCst)
                    && failure.error.class == Class::Transient);
            if interrupted {
                tracing::warn!(message_id, object = %failure.object, "object abandoned at shutdown, nothing committed; its message is returned");
                metrics.object("interrupted", &Counts::default());
                return Settled::Interrupted;
            }
            match failure.error.class {
                Class::Transient => {
                    tracing::warn!(
                        message_id,
                        object = %failure.object,
                        attempts = failure.attempts,
                        "object failed transiently, nothing committed: {}",
                        failure.error
                    );
                    metrics.object("retry", &Counts::default());
                    Settled::Retry
                }
                Class::Permanent => match settle_failure(&failure, &cx.shared.dead_letters) {
                    Ok(_) => {
                        metrics.object("dead_lettered", &Counts::default());
                        if !matches!(failure.error.cause, Cause::ClaimLost { .. }) {
                            metrics.dead_letters.with_label_values(&["object"]).inc();
                        }
                        Settled::Done
                    }
                    // Not kept anywhere: the message must stay.
                    Err(_) => {
                        metrics.object("retry", &Counts::default());
                        Settled::Retry
                    }
                },
            }
        }
    }
}

//! The Lambda handler as a plain async function: payload in, the response its trigger expects
//! out. No Lambda runtime types here, so tests call it directly.
//!
//! Each object named by the payload is processed under the invocation's deadline and settles
//! into one [`Outcome`]. How outcomes become a response depends on who invoked us:
//! - SQS wants `batchItemFailures`: only the messages with a transiently failed (or unstarted)
//!   object are redelivered;
//! - S3 Batch Operations wants a result per task;
//! - a Step Functions Distributed Map batch wants each object's outcome, and fails as a whole
//!   when something must be retried (see `map_result`);
//! - direct S3, SNS and EventBridge invocations can only fail or succeed as a whole: an error
//!   makes Lambda retry the event and, in the end, send it to the on-failure destination.
//!
//! Permanent failures are dead-lettered and count as handled everywhere: retrying cannot help,
//! and the dead letter holds everything needed to replay the object once its cause is fixed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::{Invocation, TriggerError};
use crate::error::Class;
use crate::object::ObjectRef;
use crate::pipeline::{Counts, Processed, Skip};
use crate::run::{settle_failure, Shared};
use crate::source::s3::S3Store;
use crate::source::ObjectStore;

/// Which store serves a bucket (events may name several buckets).
pub trait Stores: Send + Sync {
    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore>;
}

/// One S3 client shared by every bucket; stores are made on first use and kept for the
/// container's life.
pub struct S3Stores {
    client: aws_sdk_s3::Client,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl S3Stores {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Stores {
            client,
            stores: Mutex::new(HashMap::new()),
        }
    }
}

impl Stores for S3Stores {
    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        stores
            .entry(bucket.to_string())
            .or_insert_with(|| Arc::new(S3Store::new(self.client.clone(), bucket)))
            .clone()
    }
}

impl<F> Stores for F
where
    F: Fn(&str) -> Arc<dyn ObjectStore> + Send + Sync,
{
    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        self(bucket)
    }
}

/// What became of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(Counts),
    /// The ledger has it as done: a duplicate notification.
    AlreadyDone,
    /// Failed permanently and was dead-lettered.
    DeadLettered {
        error: String,
    },
    /// Worth retrying: a transient error, the deadline, another worker holding it, or a
    /// permanent failure whose dead letter could not be written.
    Retry {
        error: String,
    },
}

impl Outcome {
    pub fn needs_retry(&self) -> bool {
        matches!(self, Outcome::Retry { .. })
    }

    fn name(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::AlreadyDone => "already_done",
            Outcome::DeadLettered { .. } => "dead_lettered",
            Outcome::Retry { .. } => "retry",
        }
    }
}

/// The invocation failed as a whole: Lambda retries it (async invocations) or reports it.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error("{failed} of {total} objects must be retried; first: {first}")]
    Retry {
        failed: usize,
        total: usize,
        first: String,
    },
    /// A Distributed Map batch with objects to retry (its `errorType` is
    /// [`MAP_TRANSIENT_ERROR`](super::map_result::MAP_TRANSIENT_ERROR)).
    #[error("{failed} of {total} objects of the batch must be retried; first: {first}")]
    MapRetry {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// Everything an invocation needs, built once per container.
pub struct Handler {
    pub stores: Arc<dyn Stores>,
    pub shared: Shared,
    /// Objects processed at once.
    pub concurrency: usize,
    /// No object is started with less than this left before the deadline, and objects in
    /// flight give up at half of it, leaving time to answer.
    pub margin: Duration,
    /// Print a CloudWatch EMF metrics line per object under this function name.
    pub metrics: Option<String>,
    /// The bucket of Distributed Map items that name none and come without
    /// `BatchInput.bucket` (ListObjectsV2 items never name one).
    pub map_bucket: Option<String>,
}

impl Handler {
    /// Handles one invocation. `deadline` is when the platform stops the function.
    pub async fn handle(
        &self,
        payload: &Value,
        deadline: Instant,
        request_id: &str,
    ) -> Result<Value, HandlerError> {
        let invocation = match Invocation::parse(payload) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(request_id, "rejected the event: {e}");
                return Err(e.into());
            }
        };
        match invocation {
            Invocation::Map(batch) => self.handle_map(batch, deadline, request_id).await,
            Invocation::Test => {
                tracing::info!(request_id, "s3:TestEvent acknowledged");
                Ok(json!({ "ignored": "s3:TestEvent" }))
            }
            Invocation::Objects { source, objects } => {
                let outcomes = self.process(objects.clone(), deadline, request_id).await;
                let total = outcomes.len();
                let retry: Vec<_> = objects
                    .iter()
                    .zip(&outcomes)
                    .filter_map(|(o, r)| match r {
                        Outcome::Retry { error } => {
                            Some(format!("{}/{}: {error}", o.bucket, o.key))
                        }
                        _ => None,
                    })
                    .collect();
                if let Some(first) = retry.first() {
                    return Err(HandlerError::Retry {
                        failed: retry.len(),
                        total,
                        first: first.clone(),
                    });
                }
                Ok(json!({
                    "source": source,
                    "objects": total,
                    "outcomes": outcomes.iter().map(Outcome::name).collect::<Vec<_>>(),
                }))
            }
            Invocation::Sqs { messages } => {
                let mut objects = Vec::new();
                let mut owner = Vec::new();
                for (i, m) in messages.iter().enumerate() {
                    if let Ok(objs) = &m.objects {
                        objects.extend(objs.iter().cloned());
                        owner.extend(std::iter::repeat_n(i, objs.len()));
                    }
                }
                let outcomes = self.process(objects, deadline, request_id).await;
                let mut failed = vec![false; messages.len()];
                for (i, m) in messages.iter().enumerate() {
                    match &m.objects {
                        Ok(_) => {}
                        // A well-formed envelope (SNS, EventBridge) around something that is
                        // not an S3 event: redelivery cannot change it, so it is reported once,
                        // here, and acknowledged.
                        Err(e @ TriggerError::Unknown(_)) => {
                            tracing::error!(
                                request_id,
                                message_id = %m.id,
                                "unrecognised SQS message, acknowledged: {e}"
                            );
                        }
                        // Looks like ours but does not parse: redelivered until the queue's
                        // redrive policy moves it to its DLQ, where a person can look at it;
                        // acknowledging would lose it.
                        Err(e) => {
                            tracing::error!(request_id, message_id = %m.id, "unusable SQS message, left for redelivery: {e}");
                            failed[i] = true;
                        }
                    }
                }
                for (o, &i) in outcomes.iter().zip(&owner) {
                    failed[i] |= o.needs_retry();
                }
                let items: Vec<Value> = messages
                    .iter()
                    .zip(&failed)
                    .filter(|(_, &f)| f)
                    .map(|(m, _)| json!({ "itemIdentifier": m.id }))
                    .collect();
                Ok(json!({ "batchItemFailures": items }))
            }
            Invocation::Batch {
                schema,
                invocation_id,
                tasks,
            } => {
                let objects = tasks
                    .iter()
                    .filter_map(|t| t.object.as_ref().ok().cloned())
                    .collect();
                let mut outcomes = self
                    .process(objects, deadline, request_id)
                    .await
                    .into_iter();
                let results: Vec<Value> = tasks
                    .iter()
                    .map(|t| {
                        let o = match &t.object {
                            Ok(_) => outcomes.next().expect("one outcome per readable task"),
                            // Retrying cannot make it readable; the job's report says why.
                            Err(e) => {
                                tracing::error!(request_id, task_id = %t.id, "unreadable S3 Batch Operations task: {e}");
                                return json!({
                                    "taskId": t.id,
                                    "resultCode": "PermanentFailure",
                                    "resultString": format!("unreadable task: {e}"),
                                });
                            }
                        };
                        let (code, text) = match &o {
                            Outcome::Done(c) => (
                                "Succeeded",
                                format!(
                                    "{} records, {} rows, {} record errors",
                                    c.records, c.rows, c.record_errors
                                ),
                            ),
                            Outcome::AlreadyDone => {
                                ("Succeeded", "already done (ledger)".to_string())
                            }
                            Outcome::DeadLettered { error } => {
                                ("PermanentFailure", format!("dead-lettered: {error}"))
                            }
                            Outcome::Retry { error } => ("TemporaryFailure", error.clone()),
                        };
                        json!({ "taskId": t.id, "resultCode": code, "resultString": text })
                    })
                    .collect();
                Ok(json!({
                    "invocationSchemaVersion": schema,
                    "treatMissingKeysAs": "PermanentFailure",
                    "invocationId": invocation_id,
                    "results": results,
                }))
            }
        }
    }

    /// Processes `objects` (started in order, `concurrency` at a time, a slot freed as soon as
    /// its object ends: no object waits for another) and settles each; the outcomes are in the
    /// order of `objects`.
    pub async fn process(
        &self,
        objects: Vec<ObjectRef>,
        deadline: Instant,
        request_id: &str,
    ) -> Vec<Outcome> {
        let start_by = deadline
            .checked_sub(self.margin)
            .unwrap_or_else(Instant::now);
        let give_up_at = deadline
            .checked_sub(self.margin / 2)
            .unwrap_or_else(Instant::now);
        let mut outcomes: Vec<(usize, Outcome)> = stream::iter(objects.into_iter().enumerate())
            .map(|(index, object)| async move {
                if Instant::now() >= start_by {
                    let outcome = Outcome::Retry {
                        error: "not started: too little of the invocation's time was left".into(),
                    };
                    log_outcome(request_id, &object, &outcome, None);
                    return (index, outcome);
                }
                (index, self.one(object, give_up_at, request_id).await)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        outcomes.sort_by_key(|(index, _)| *index);
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    }

    async fn one(&self, object: ObjectRef, give_up_at: Instant, request_id: &str) -> Outcome {
        let store = self.stores.store(&object.bucket);
        let shared = self.shared.clone();
        let started = Instant::now();
        let task = tokio::task::spawn_blocking(move || {
            shared.process(store.as_ref(), object, Some(give_up_at))
        });
        // The pipeline checks the deadline between batches; this backstop covers a stalled read.
        let backstop = give_up_at + (self.margin / 4);
        let result = match tokio::time::timeout_at(backstop.into(), task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => {
                let outcome = Outcome::Retry {
                    error: format!("internal error: {join}"),
                };
                tracing::error!(request_id, "object task failed: {join}");
                return outcome;
            }
            Err(_) => {
                return Outcome::Retry {
                    error: "the invocation's time ran out while the object was in flight".into(),
                }
            }
        };
        let (object, outcome, counts) = match result {
            Ok(Processed::Done(report)) => {
                let c = report.counts;
                (report.object, Outcome::Done(c), Some(c))
            }
            Ok(Processed::Skipped { object, reason }) => {
                let outcome = match reason {
                    Skip::AlreadyDone => Outcome::AlreadyDone,
                    // Retried later, by when the holder has finished it (then: AlreadyDone) or
                    // its claim has expired.
                    Skip::Busy(who) => Outcome::Retry {
                        error: format!("another worker is processing it ({who})"),
                    },
                };
                (object, outcome, None)
            }
            Err(failure) => {
                let outcome = match failure.error.class {
                    Class::Transient => Outcome::Retry {
                        error: failure.error.to_string(),
                    },
                    Class::Permanent => match settle_failure(&failure, &self.shared.dead_letters) {
                        Ok(_) => Outcome::DeadLettered {
                            error: failure.error.to_string(),
                        },
                        Err(e) => Outcome::Retry {
                            error: format!("{} (dead letter failed: {e})", failure.error),
                        },
                    },
                };
                (failure.object, outcome, None)
            }
        };
        log_outcome(
            request_id,
            &object,
            &outcome,
            counts.map(|c| (c, started.elapsed())),
        );
        if let Some(function) = &self.metrics {
            let m = super::metrics::ObjectMetrics {
                function,
                object: &object,
                outcome: outcome.name(),
                counts: counts.unwrap_or_default(),
                elapsed: started.elapsed(),
                now: chrono::Utc::now(),
            };
            // Its own line on stdout, where the Lambda runtime sends it to CloudWatch Logs.
            println!("{}", m.emf());
        }
        outcome
    }
}

/// One log line per object: its outcome and counts, with the request ID.
fn log_outcome(
    request_id: &str,
    object: &ObjectRef,
    outcome: &Outcome,
    done: Option<(Counts, Duration)>,
) {
    let (c, elapsed) = done.unwrap_or_default();
    let error = match outcome {
        Outcome::DeadLettered { error } | Outcome::Retry { error } => error.as_str(),
        _ => "",
    };
    let line = |level| {
        macro_rules! ev {
            ($lvl:expr) => {
                tracing::event!(
                    $lvl,
                    request_id,
                    bucket = %object.bucket,
                    key = %object.key,
                    etag = object.etag.as_deref().unwrap_or(""),
                    outcome = outcome.name(),
                    records = c.records,
                    rows = c.rows,
                    record_errors = c.record_errors,
                    bytes_in = c.bytes_in,
                    bytes_out = c.bytes_out,
                    ms = elapsed.as_millis() as u64,
                    error,
                    "object"
                )
            };
        }
        match level {
            tracing::Level::WARN => ev!(tracing::Level::WARN),
            _ => ev!(tracing::Level::INFO),
        }
    };
    line(if outcome.needs_retry() {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    });
}

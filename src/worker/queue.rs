//! The SQS calls the worker makes, and nothing else: long-poll receives, batched deletes and
//! batched visibility changes, each counted in the metrics. Per-entry failures of a batch are
//! returned, not raised: one stale receipt handle must not fail the others.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;

use super::metrics::Metrics;
use super::WorkerError;
use std::sync::Arc;

/// SQS takes at most 10 entries per batch call and returns at most 10 messages per receive.
pub const MAX_BATCH: usize = 10;

/// SQS's cap on a message's visibility, counted from when it was received.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 the first time.
    pub receive_count: u32,
    /// When the receive call was sent: the message's visibility runs from no earlier.
    pub received_at: Instant,
}

/// A queue and the client that reaches it.
pub struct Queue {
    client: Client,
    url: String,
    metrics: Arc<Metrics>,
}

/// A failed entry of a batch call: the caller's entry ID and why.
#[derive(Debug)]
pub struct EntryFailure {
    pub index: usize,
    pub why: String,
}

impl Queue {
    pub fn new(client: Client, url: impl Into<String>, metrics: Arc<Metrics>) -> Queue {
        Queue {
            client,
            url: url.into(),
            metrics,
        }
    }

    /// The queue's own visibility timeout (what the worker keeps messages invisible for, and
    /// extends by, unless told otherwise). Also proves at start that the queue can be reached.
    pub async fn visibility_timeout(&self) -> Result<Duration, WorkerError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| {
                WorkerError::Queue(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
            })?;
        let secs = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| WorkerError::Queue("the queue reports no VisibilityTimeout".into()))?;
        Ok(Duration::from_secs(secs))
    }

    /// Up to `max` messages (at most 10), waiting up to `wait` for the first (long polling),
    /// each invisible to other consumers for `visibility`.
    pub async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, String> {
        self.metrics
            .sqs_requests
            .with_label_values(&["receive"])
            .inc();
        let received_at = Instant::now();
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(secs(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| {
                self.metrics.receive_errors.inc();
                format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e))
            })?;
        let messages: Vec<Received> = out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    id: m.message_id().unwrap_or_default().to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    received_at,
                })
            })
            .collect();
        self.metrics.messages_received.inc_by(messages.len() as u64);
        Ok(messages)
    }

    /// Deletes these messages (at most 10). Returns the entries that failed.
    pub async fn delete(&self, receipts: &[&str]) -> Vec<EntryFailure> {
        if receipts.is_empty() {
            return Vec::new();
        }
        self.metrics
            .sqs_requests
            .with_label_values(&["delete"])
            .inc();
        let entries: Vec<_> = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*r)
                    .build()
                    .ok()
            })
            .collect();
        let result = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await;
        let failures = batch_failures(
            result
                .map(|out| out.failed().to_vec())
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string()),
            receipts.len(),
        );
        self.metrics.delete_errors.inc_by(failures.len() as u64);
        failures
    }

    /// Sets these messages' visibility (at most 10), each counted from now. Returns the
    /// entries that failed.
    pub async fn change_visibility(&self, changes: &[(&str, Duration)]) -> Vec<EntryFailure> {
        if changes.is_empty() {
            return Vec::new();
        }
        self.metrics
            .sqs_requests
            .with_label_values(&["change_visibility"])
            .inc();
        let entries: Vec<_> = changes
            .iter()
            .enumerate()
            .filter_map(|(i, (r, v))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*r)
                    .visibility_timeout(secs(*v))
                    .build()
                    .ok()
            })
            .collect();
        let result = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await;
        let failures = batch_failures(
            result
                .map(|out| out.failed().to_vec())
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string()),
            changes.len(),
        );
        self.metrics.visibility_errors.inc_by(failures.len() as u64);
        failures
    }
}

/// What a batch call (delete, change visibility) failed: the entries SQS refused, or every
/// one of the `entries` when the call itself failed.
fn batch_failures(
    failed: Result<Vec<aws_sdk_sqs::types::BatchResultErrorEntry>, String>,
    entries: usize,
) -> Vec<EntryFailure> {
    match failed {
        Ok(failed) => failed
            .iter()
            .map(|f| EntryFailure {
                index: f.id().parse().unwrap_or(usize::MAX),
                why: format!("{}: {}", f.code(), f.message().unwrap_or("")),
            })
            .collect(),
        Err(why) => (0..entries)
            .map(|index| EntryFailure {
                index,
                why: why.clone(),
            })
            .collect(),
    }
}

/// Whole seconds for SQS, rounded up (a visibility is never shorter than asked), within SQS's
/// 0..=12 h.
fn secs(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.min(MAX_VISIBILITY.as_secs()) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_is_rounded_up_and_capped() {
        assert_eq!(secs(Duration::ZERO), 0);
        assert_eq!(secs(Duration::from_millis(1500)), 2);
        assert_eq!(secs(Duration::from_secs(30)), 30);
        assert_eq!(secs(Duration::from_secs(50_000)), 43_200);
    }
}

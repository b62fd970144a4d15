//! Settling messages: deleted once their objects are committed (or dead-lettered), or returned
//! to the queue with a visibility — a backoff after a transient failure (so the queue's redrive
//! policy counts the attempts and finally moves the message to its DLQ), or 0 when the worker
//! stops before the objects finished. Requests are batched: what settles within a short linger
//! goes out in one `DeleteMessageBatch` / `ChangeMessageVisibilityBatch` (10 at most).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::queue::{Queue, MAX_BATCH};

/// How long a settled message waits for others to share its batch call, at most: a tenth of
/// the visibility (the messages are already untracked, so it runs meanwhile, and an untracked
/// message has at least a third of it left), and never more than this.
const MAX_LINGER: Duration = Duration::from_millis(500);

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    /// Visible again after this long (a backoff).
    Backoff(Duration),
    /// Visible again at once.
    Release,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Delete => "deleted",
            Action::Backoff(_) => "backoff",
            Action::Release => "released",
        }
    }
}

/// The backoff visibility of a message received `receive_count` times: `base`, doubling with
/// each receive, at most `max`.
pub fn backoff(receive_count: u32, base: Duration, max: Duration) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(20);
    base.saturating_mul(1 << doublings).min(max)
}

struct Op {
    id: String,
    receipt: String,
    action: Action,
}

/// Sends settled messages' requests in batches.
#[derive(Clone)]
pub struct Settler {
    tx: mpsc::UnboundedSender<Op>,
}

impl Settler {
    /// The settler and its task; the task ends once every clone of the settler is dropped and
    /// what was queued is sent.
    pub fn start(
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
        visibility: Duration,
    ) -> (Settler, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let linger = (visibility / 10).min(MAX_LINGER);
        let task = tokio::spawn(run(rx, queue, metrics, linger));
        (Settler { tx }, task)
    }

    pub fn settle(&self, id: &str, receipt: &str, action: Action) {
        let op = Op {
            id: id.to_string(),
            receipt: receipt.to_string(),
            action,
        };
        // The task outlives every settler clone: a send cannot fail while one exists.
        let _ = self.tx.send(op);
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Op>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    linger: Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut ops = vec![first];
        let linger = tokio::time::sleep(linger);
        tokio::pin!(linger);
        while ops.len() < MAX_BATCH {
            tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => ops.push(op),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let (deletes, changes): (Vec<&Op>, Vec<&Op>) =
            ops.iter().partition(|o| o.action == Action::Delete);
        let receipts: Vec<&str> = deletes.iter().map(|o| o.receipt.as_str()).collect();
        let failed = queue.delete(&receipts).await;
        for f in &failed {
            if let Some(o) = deletes.get(f.index) {
                tracing::warn!(
                    message_id = %o.id,
                    "cannot delete the message (it comes back; its objects are done in the ledger): {}",
                    f.why
                );
            }
        }
        let visibility: Vec<(&str, Duration)> = changes
            .iter()
            .map(|o| {
                let v = match o.action {
                    Action::Backoff(d) => d,
                    _ => Duration::ZERO,
                };
                (o.receipt.as_str(), v)
            })
            .collect();
        let failed_changes = queue.change_visibility(&visibility).await;
        for f in &failed_changes {
            if let Some(o) = changes.get(f.index) {
                tracing::warn!(
                    message_id = %o.id,
                    "cannot change the message's visibility (it comes back when it lapses): {}",
                    f.why
                );
            }
        }
        for (i, o) in deletes.iter().enumerate() {
            if !failed.iter().any(|f| f.index == i) {
                metrics.messages.with_label_values(&[o.action.name()]).inc();
            }
        }
        for (i, o) in changes.iter().enumerate() {
            if !failed_changes.iter().any(|f| f.index == i) {
                metrics.messages.with_label_values(&[o.action.name()]).inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_receive_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(30), Duration::from_secs(900));
        assert_eq!(backoff(1, base, max), Duration::from_secs(30));
        assert_eq!(backoff(2, base, max), Duration::from_secs(60));
        assert_eq!(backoff(4, base, max), Duration::from_secs(240));
        assert_eq!(backoff(6, base, max), max);
        assert_eq!(backoff(u32::MAX, base, max), max);
        assert_eq!(backoff(0, base, max), base);
    }
}

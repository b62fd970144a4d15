//! The visibility heartbeat: while a message's objects are in progress, its visibility is
//! extended (batched `ChangeMessageVisibility`) well before it lapses, for as long as the objects
//! run, up to SQS's 12-hour cap — so no other consumer receives the message meanwhile. (Vector's
//! and Redpanda Connect's S3/SQS sources never extend it, and a slow object is processed twice.)
//!
//! Every message is checked each `visibility / 6`; one with less than half its visibility left
//! is extended by the full visibility again. So an extension lands with at least a third of the
//! visibility to spare, and a worker that dies lets its messages reappear within one visibility.
//! The registry is locked while a round's calls are out, so a message untracked (settled) is
//! never extended after its settling call was sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::queue::{Queue, Received, MAX_BATCH, MAX_VISIBILITY};

/// Kept back from SQS's 12-hour cap, for the clocks' disagreement.
const CAP_MARGIN: Duration = Duration::from_secs(30);

/// A tracked message.
#[derive(Debug, Clone)]
struct Tracked {
    id: String,
    receipt: String,
    received_at: Instant,
    /// When it becomes visible again unless extended (reckoned from before each call went out,
    /// so never later than SQS has it).
    visible_until: Instant,
    /// Reached the 12-hour cap (warned once).
    capped: bool,
}

/// Identifies a tracked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

#[derive(Default)]
struct State {
    next: u64,
    tracked: HashMap<Token, Tracked>,
}

pub struct Heartbeat {
    state: Mutex<State>,
    queue: Arc<Queue>,
    visibility: Duration,
    metrics: Arc<Metrics>,
}

/// What a round extends: (message, by how much from now). A message due but at the cap is
/// left out.
fn due(tracked: &Tracked, now: Instant, visibility: Duration) -> Option<Duration> {
    let left = tracked.visible_until.saturating_duration_since(now);
    if left >= visibility / 2 {
        return None;
    }
    let cap = (tracked.received_at + MAX_VISIBILITY).checked_sub(CAP_MARGIN)?;
    let room = cap.saturating_duration_since(now);
    let by = visibility.min(room);
    // Extending by less than what is left gains nothing: the cap is reached.
    (by > left).then_some(by)
}

impl Heartbeat {
    pub fn new(queue: Arc<Queue>, visibility: Duration, metrics: Arc<Metrics>) -> Heartbeat {
        Heartbeat {
            state: Mutex::new(State::default()),
            queue,
            visibility,
            metrics,
        }
    }

    /// How often the messages are checked.
    pub fn every(&self) -> Duration {
        (self.visibility / 6).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// Starts extending `m` (received with this heartbeat's visibility).
    pub async fn track(&self, m: &Received) -> Token {
        let mut s = self.state.lock().await;
        let token = Token(s.next);
        s.next += 1;
        s.tracked.insert(
            token,
            Tracked {
                id: m.id.clone(),
                receipt: m.receipt.clone(),
                received_at: m.received_at,
                visible_until: m.received_at + self.visibility,
                capped: false,
            },
        );
        token
    }

    /// Stops extending it (waits for a round in progress).
    pub async fn untrack(&self, token: Token) {
        self.state.lock().await.tracked.remove(&token);
    }

    /// One round: extends every message that is due.
    pub async fn beat(&self) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        let mut plan = Vec::new();
        for (token, t) in s.tracked.iter_mut() {
            match due(t, now, self.visibility) {
                Some(by) => plan.push((*token, by)),
                None if !t.capped
                    && t.visible_until.saturating_duration_since(now) < self.visibility / 2 =>
                {
                    t.capped = true;
                    tracing::warn!(
                        message_id = %t.id,
                        "the message reached SQS's 12-hour visibility cap: it becomes visible \
                         again while its object runs (the ledger claim keeps a second worker off it)"
                    );
                }
                None => {}
            }
        }
        for chunk in plan.chunks(MAX_BATCH) {
            let sent = Instant::now();
            let changes: Vec<(&str, Duration)> = chunk
                .iter()
                .map(|(token, by)| (s.tracked[token].receipt.as_str(), *by))
                .collect();
            let failures = self.queue.change_visibility(&changes).await;
            let failed: Vec<usize> = failures.iter().map(|f| f.index).collect();
            for f in &failures {
                if let Some((token, _)) = chunk.get(f.index) {
                    tracing::warn!(
                        message_id = %s.tracked[token].id,
                        "cannot extend the message's visibility (tried again next round): {}",
                        f.why
                    );
                }
            }
            for (i, (token, by)) in chunk.iter().enumerate() {
                if failed.contains(&i) {
                    continue;
                }
                if let Some(t) = s.tracked.get_mut(token) {
                    t.visible_until = sent + *by;
                    self.metrics.heartbeat_extensions.inc();
                    tracing::debug!(message_id = %t.id, secs = by.as_secs_f64(), "visibility extended");
                }
            }
        }
    }

    /// Beats every [`Heartbeat::every`] until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.beat().await,
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Makes every message still tracked visible again at once and stops tracking them: what
    /// a worker leaves behind when it must exit before their objects finished.
    pub async fn release_all(&self) -> usize {
        let mut s = self.state.lock().await;
        let all: Vec<Tracked> = s.tracked.drain().map(|(_, t)| t).collect();
        for chunk in all.chunks(MAX_BATCH) {
            let changes: Vec<(&str, Duration)> = chunk
                .iter()
                .map(|t| (t.receipt.as_str(), Duration::ZERO))
                .collect();
            for f in self.queue.change_visibility(&changes).await {
                if let Some(t) = chunk.get(f.index) {
                    tracing::warn!(message_id = %t.id, "cannot make the message visible again: {}", f.why);
                }
            }
        }
        self.metrics
            .messages
            .with_label_values(&["released"])
            .inc_by(all.len() as u64);
        all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(received_at: Instant, visible_until: Instant) -> Tracked {
        Tracked {
            id: "m".into(),
            receipt: "r".into(),
            received_at,
            visible_until,
            capped: false,
        }
    }

    #[test]
    fn extends_by_the_visibility_once_less_than_half_is_left() {
        let v = Duration::from_secs(30);
        let t0 = Instant::now();
        let t = tracked(t0, t0 + v);
        assert_eq!(due(&t, t0 + Duration::from_secs(10), v), None);
        assert_eq!(due(&t, t0 + Duration::from_secs(16), v), Some(v));
        // Already lapsed (a stalled process): extended all the same.
        assert_eq!(due(&t, t0 + Duration::from_secs(40), v), Some(v));
    }

    #[test]
    fn never_past_twelve_hours_from_receipt() {
        let v = Duration::from_secs(600);
        let t0 = Instant::now();
        let near_cap = t0 + MAX_VISIBILITY - CAP_MARGIN - Duration::from_secs(200);
        let t = tracked(t0, near_cap + Duration::from_secs(100));
        // 100 s left, 200 s of room: extended by the room only.
        assert_eq!(due(&t, near_cap, v), Some(Duration::from_secs(200)));
        // At the cap: nothing more to gain.
        let at_cap = t0 + MAX_VISIBILITY - CAP_MARGIN;
        let t = tracked(t0, at_cap + Duration::from_secs(10));
        assert_eq!(due(&t, at_cap, v), None);
    }
}

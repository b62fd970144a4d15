//! How hard to try: the retry policy every BigQuery request follows, its backoff, and the one
//! loop for requests that can simply be sent again as they were.
//!
//! Who uses what, and why not all the same loop:
//! - `with_retries` — send again until it works, fails for good or the policy gives up: load
//!   jobs' `jobs.get` and upload-session start, and every `--dedup merge` request (tables,
//!   queries, jobs). Their tries are alike, so one loop serves them.
//! - `Backoff` alone — loops whose next try is *not* the same request, so they keep their
//!   own loop and share only the delays (exponential, full jitter, `quotaExceeded` longer):
//!   insertAll (a partly written request is resent with only its retryable rows, and refused
//!   rows accumulate across tries), the resumable upload (progress restores the budget and a
//!   failure is followed by a status query, not a resend), and load-job attempts (each retry
//!   is a new job ID, counted against `MAX_JOB_ATTEMPTS`, not the policy).
//! - Storage Write's gRPC loops use `RetryPolicy::delays` directly (their code is its own).

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::api_error::Fail;
use crate::error::{Class, Error};

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub max_attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Multiplies the delays after `quotaExceeded`, which clears slowly.
    pub quota_factor: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(32),
            quota_factor: 4,
        }
    }
}

impl RetryPolicy {
    /// The pauses between tries: `max_attempts - 1` of them, doubling, with full jitter.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> {
        self.exponential()
    }

    fn exponential(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1))
            .build()
    }

    /// A fresh budget of pauses.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            delays: self.exponential(),
            quota_factor: self.quota_factor,
            max_delay: self.max_delay,
        }
    }
}

/// The pauses of one retry budget; after `quotaExceeded` a pause is `quota_factor` times longer.
pub(crate) struct Backoff {
    delays: ExponentialBackoff,
    quota_factor: u32,
    max_delay: Duration,
}

impl Backoff {
    /// The next pause, or `None` once the budget is spent.
    pub(crate) fn next(&mut self, quota: bool) -> Option<Duration> {
        self.delays.next().map(|d| self.scaled(d, quota))
    }

    /// The next pause, or the longest one once the budget is spent (for loops bounded by
    /// something else).
    pub(crate) fn next_or_max(&mut self, quota: bool) -> Duration {
        let d = self.delays.next().unwrap_or(self.max_delay);
        self.scaled(d, quota)
    }

    fn scaled(&self, d: Duration, quota: bool) -> Duration {
        if quota {
            d * self.quota_factor
        } else {
            d
        }
    }
}

/// Runs `op` until it succeeds, fails permanently or `policy` gives up; `what` names the
/// operation in the error (and says which table it is about).
pub(crate) async fn with_retries<T, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut op: impl FnMut() -> Fut,
) -> Result<T, Error>
where
    Fut: Future<Output = Result<T, Fail>>,
{
    let mut backoff = policy.backoff();
    let mut tries = 0usize;
    loop {
        tries += 1;
        let fail = match op().await {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        if !fail.transient {
            return Err(fail.into_error(what));
        }
        let Some(delay) = backoff.next(fail.quota) else {
            return Err(super::api_error::sink_error(
                Class::Transient,
                format!("{what}: still failing after {tries} tries: {}", fail.why),
            ));
        };
        tracing::debug!(
            tries,
            delay_ms = delay.as_millis() as u64,
            "{what}: retrying: {}",
            fail.why
        );
        tokio::time::sleep(delay).await;
    }
}

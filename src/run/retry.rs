//! Object-level retries: a transient failure (throttling, a reset, a sink that gave up for now)
//! is tried again with exponential backoff and full jitter, at most `max_attempts` times in all
//! and never past the deadline (a Lambda invocation's remaining time, or the CLI's
//! `--object-timeout`). Permanent failures are not retried.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::pipeline::{ObjectFailure, Processed};

#[derive(Debug, Clone)]
pub struct ObjectRetry {
    /// Tries in all, the first included (3: the first plus two retries).
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for ObjectRetry {
    fn default() -> Self {
        ObjectRetry {
            max_attempts: 3,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl ObjectRetry {
    /// Runs `attempt` (blocking) until it succeeds, fails permanently, or the budget is spent.
    /// The failure returned carries the number of tries.
    pub fn run(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(u32) -> Result<Processed, Box<ObjectFailure>>,
    ) -> Result<Processed, Box<ObjectFailure>> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build();
        let mut tries = 0;
        loop {
            tries += 1;
            let mut failure = match attempt(tries) {
                Ok(done) => return Ok(done),
                Err(f) => f,
            };
            failure.attempts = tries;
            let interrupted = matches!(failure.error.cause, crate::error::Cause::Interrupted);
            if !failure.error.is_transient() || interrupted {
                return Err(failure);
            }
            let Some(delay) = delays.next() else {
                return Err(failure);
            };
            if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                return Err(failure);
            }
            tracing::warn!(
                object = %failure.object,
                attempt = tries,
                delay_ms = delay.as_millis() as u64,
                "transient failure, retrying: {}",
                failure.error
            );
            std::thread::sleep(delay);
        }
    }
}

//! Sending one insertAll request until every row is either accepted or refused for good.
//!
//! BigQuery answers in two layers. The request as a whole can fail (HTTP status with an
//! `error.errors[].reason`): throttling and server errors are retried with exponential backoff
//! and full jitter, quota exhaustion with a longer one, and anything else (404 table missing,
//! 400, auth) is permanent. A request that succeeds (HTTP 200) may still carry
//! `insertErrors[{index, errors[{reason, location, message}]}]`: rows whose every reason is
//! retryable (`stopped` = not written because another row was bad, `backendError`,
//! `internalError`, `timeout`) are sent again, alone; the others are refused with BigQuery's
//! message. Rows the answer does not name were written and are never sent again. A transport
//! failure (reset, timeout) is ambiguous — the rows may have landed — so the whole request is
//! resent; `insertId` lets BigQuery drop the duplicates.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Deserialize;

use super::request::Sent;
use crate::error::{Cause, Class, Error, Stage};
use crate::sink::Rejected;

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
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1))
            .build()
    }
}

/// Where and how to send.
#[derive(Clone)]
pub struct Endpoint {
    pub http: reqwest::Client,
    /// `…/projects/P/datasets/D/tables/T/insertAll`
    pub url: String,
    pub auth: Option<std::sync::Arc<dyn gcp_bigquery_client::auth::Authenticator>>,
    /// `project.dataset.table`, for messages.
    pub table: String,
}

const RETRYABLE_ROW_REASONS: [&str; 4] = ["stopped", "backendError", "internalError", "timeout"];

#[derive(Deserialize, Default)]
struct InsertAllResponse {
    #[serde(default, rename = "insertErrors")]
    insert_errors: Vec<InsertError>,
}

#[derive(Deserialize)]
struct InsertError {
    index: usize,
    #[serde(default)]
    errors: Vec<ErrorProto>,
}

/// BigQuery's `ErrorProto`: one reason of a failed row, request or job.
#[derive(Deserialize, Default, Clone)]
pub(super) struct ErrorProto {
    #[serde(default)]
    pub(super) reason: String,
    #[serde(default)]
    pub(super) location: String,
    #[serde(default)]
    pub(super) message: String,
}

/// The body of a Google API error answer: `{"error": {"message", "errors": [...]}}`.
#[derive(Deserialize)]
pub(super) struct ErrorResponse {
    pub(super) error: ErrorBody,
}

#[derive(Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) errors: Vec<ErrorProto>,
}

/// What one attempt came to.
enum Attempt {
    /// Every row written or refused for good.
    Settled,
    /// Send these rows (indices into the request) again.
    RetryRows(Vec<usize>),
    /// Send everything again after a delay; `quota` asks for the longer one.
    RetryAll { why: String, quota: bool },
}

/// Sends `sent` until it is settled or the policy gives up. Returns the rows BigQuery refused.
pub async fn send(
    endpoint: &Endpoint,
    sent: Sent,
    policy: &RetryPolicy,
) -> Result<Vec<Rejected>, Error> {
    let mut delays = policy.delays();
    let mut current = sent;
    let mut rejected = Vec::new();
    let mut attempts = 0usize;
    loop {
        attempts += 1;
        let outcome = attempt(endpoint, &current, &mut rejected).await?;
        let (next, why, quota) = match outcome {
            Attempt::Settled => return Ok(rejected),
            Attempt::RetryRows(rows) => {
                let n = rows.len();
                (
                    current.subset(&rows),
                    format!("{n} rows not written (retryable)"),
                    false,
                )
            }
            Attempt::RetryAll { why, quota } => (current, why, quota),
        };
        let Some(mut delay) = delays.next() else {
            return Err(Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink(format!(
                    "BigQuery insertAll into {} still failing after {attempts} attempts: {why}",
                    endpoint.table
                )),
            ));
        };
        if quota {
            delay *= policy.quota_factor;
        }
        tracing::debug!(table = %endpoint.table, attempt = attempts, delay_ms = delay.as_millis() as u64, "insertAll retry: {why}");
        tokio::time::sleep(delay).await;
        current = next;
    }
}

async fn attempt(
    endpoint: &Endpoint,
    sent: &Sent,
    rejected: &mut Vec<Rejected>,
) -> Result<Attempt, Error> {
    let mut req = endpoint
        .http
        .post(&endpoint.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(sent.body.clone());
    if let Some(auth) = &endpoint.auth {
        let token = auth.access_token().await.map_err(token_error)?;
        req = req.bearer_auth(token);
    }
    tracing::debug!(table = %endpoint.table, rows = sent.rows.len(), bytes = sent.body.len(), "insertAll request");
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            // Connection refused before anything was sent, resets, timeouts: all retried; the
            // ambiguous ones are made harmless by insertId.
            return Ok(Attempt::RetryAll {
                why: format!("request failed: {}", crate::error::error_chain(&e)),
                quota: false,
            });
        }
    };
    let status = resp.status();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Ok(Attempt::RetryAll {
                why: format!(
                    "reading the answer failed: {}",
                    crate::error::error_chain(&e)
                ),
                quota: false,
            })
        }
    };
    if status.is_success() {
        let answer: InsertAllResponse = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink(format!("unreadable insertAll answer (HTTP {status}): {e}")),
            )
        })?;
        return Ok(settle_rows(sent, answer, rejected));
    }
    let (reason, message) = match serde_json::from_slice::<ErrorResponse>(&bytes) {
        Ok(e) => (
            e.error
                .errors
                .first()
                .map(|p| p.reason.clone())
                .unwrap_or_default(),
            e.error.message,
        ),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned(),
        ),
    };
    let why = format!("HTTP {} {reason}: {message}", status.as_u16());
    match (status.as_u16(), reason.as_str()) {
        (403, "quotaExceeded") => Ok(Attempt::RetryAll { why, quota: true }),
        (429, _) | (403, "rateLimitExceeded") | (500..=599, _) | (408, _) => {
            Ok(Attempt::RetryAll { why, quota: false })
        }
        _ => Err(Error::permanent(
            Stage::Sink,
            Cause::Sink(format!(
                "BigQuery refused insertAll into {}: {why}",
                endpoint.table
            )),
        )),
    }
}

/// Sorts a 200 answer's rows into written, refused (added to `rejected`) and to be retried.
fn settle_rows(sent: &Sent, answer: InsertAllResponse, rejected: &mut Vec<Rejected>) -> Attempt {
    let mut retry = Vec::new();
    for e in answer.insert_errors {
        let Some(slot) = sent.rows.get(e.index) else {
            continue;
        };
        let permanent: Vec<&ErrorProto> = e
            .errors
            .iter()
            .filter(|p| !RETRYABLE_ROW_REASONS.contains(&p.reason.as_str()))
            .collect();
        if permanent.is_empty() {
            retry.push(e.index);
            continue;
        }
        let message = permanent
            .iter()
            .map(|p| {
                let mut m = format!("BigQuery {}", p.reason);
                if !p.location.is_empty() {
                    m.push_str(&format!(" at `{}`", p.location));
                }
                if !p.message.is_empty() {
                    m.push_str(": ");
                    m.push_str(&p.message);
                }
                m
            })
            .collect::<Vec<_>>()
            .join("; ");
        rejected.push(Rejected {
            ordinal: slot.ordinal,
            byte_offset: slot.byte_offset,
            row: sent.row_json(e.index).to_vec(),
            error: message,
        });
    }
    retry.sort_unstable();
    retry.dedup();
    if retry.is_empty() {
        Attempt::Settled
    } else {
        Attempt::RetryRows(retry)
    }
}

/// A token endpoint that answers with an OAuth error (`invalid_grant`: a revoked or wrong key)
/// will answer the same next time: permanent. Network trouble is transient.
pub fn token_error(e: gcp_bigquery_client::error::BQError) -> Error {
    use gcp_bigquery_client::error::BQError;
    use gcp_bigquery_client::yup_oauth2::Error as Yup;
    let class = match &e {
        BQError::YupAuthError(Yup::AuthError(_)) | BQError::AuthError(_) => Class::Permanent,
        _ => Class::Transient,
    };
    Error::new(
        Stage::Sink,
        class,
        Cause::Sink(format!("cannot get a Google access token: {e}")),
    )
}

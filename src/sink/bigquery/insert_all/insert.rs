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

use serde::Deserialize;

use super::request::Sent;
use crate::error::{Cause, Class, Error, Stage};
use crate::sink::bigquery::api_error::{self, ErrorProto};
use crate::sink::bigquery::retry::RetryPolicy;
use crate::sink::Rejected;

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
    let mut backoff = policy.backoff();
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
        let Some(delay) = backoff.next(quota) else {
            return Err(Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink(format!(
                    "BigQuery insertAll into {} still failing after {attempts} attempts: {why}",
                    endpoint.table
                )),
            ));
        };
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
        let token = auth.access_token().await.map_err(api_error::token_error)?;
        req = req.bearer_auth(token);
    }
    tracing::debug!(table = %endpoint.table, rows = sent.rows.len(), bytes = sent.body.len(), "insertAll request");
    // Connection refused before anything was sent, resets, timeouts: all retried; the
    // ambiguous ones are made harmless by insertId.
    let reply = match api_error::send(req).await {
        Ok(r) => r,
        Err(f) => {
            return Ok(Attempt::RetryAll {
                why: f.why,
                quota: false,
            })
        }
    };
    if (200..300).contains(&reply.status) {
        let answer: InsertAllResponse = serde_json::from_slice(&reply.body).map_err(|e| {
            Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink(format!(
                    "unreadable insertAll answer (HTTP {}): {e}",
                    reply.status
                )),
            )
        })?;
        return Ok(settle_rows(sent, answer, rejected));
    }
    match reply.fail() {
        f if f.transient => Ok(Attempt::RetryAll {
            why: f.why,
            quota: f.quota,
        }),
        f => Err(Error::permanent(
            Stage::Sink,
            Cause::Sink(format!(
                "BigQuery refused insertAll into {}: {}",
                endpoint.table, f.why
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

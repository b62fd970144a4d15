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
//!
//! With `--schema-evolution add-columns`, rows refused only with "no such field" add the
//! columns they need (a value an existing column cannot take makes the row a record error
//! instead) and are sent again, with the same `insertId`s, until BigQuery's streaming path
//! sees the new columns, within the evolver's bound ([`evolve_rows`]).

use serde::Deserialize;

use std::collections::HashMap;
use std::sync::Arc;

use super::request::Sent;
use crate::error::{Cause, Class, Error, Stage};
use crate::sink::bigquery::api_error::{self, ErrorProto};
use crate::sink::bigquery::retry::RetryPolicy;
use crate::sink::bigquery::schema::evolver::{Evolver, Patience};
use crate::sink::bigquery::schema::infer;
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
    /// `--schema-evolution add-columns`.
    pub evolver: Option<Arc<Evolver>>,
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
    /// `unknown` rows were refused only for fields the table lacks (schema evolution is on);
    /// `retry` as in `RetryRows`.
    Evolve {
        unknown: Vec<usize>,
        retry: Vec<usize>,
    },
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
    let mut patience: Option<Patience> = None;
    loop {
        attempts += 1;
        let outcome = attempt(endpoint, &current, &mut rejected).await?;
        let (next, why, quota) = match outcome {
            Attempt::Settled => return Ok(rejected),
            Attempt::Evolve { unknown, retry } => {
                let evolver = endpoint.evolver.as_ref().expect("evolution is on");
                let (resend, replaced) =
                    evolve_rows(evolver, &current, &unknown, &mut rejected).await?;
                let mut keep: Vec<usize> = retry.into_iter().chain(resend).collect();
                keep.sort_unstable();
                keep.dedup();
                if keep.is_empty() {
                    return Ok(rejected);
                }
                // The streaming path may not see new columns for a while: wait with the
                // evolver's backoff and bound, not the request retry budget.
                let p = patience.get_or_insert_with(|| evolver.patience());
                if !p.next().await {
                    return Err(Error::new(
                        Stage::Sink,
                        Class::Transient,
                        Cause::Sink(format!(
                            "BigQuery insertAll into {} still refused fields of {} rows as \
                             unknown {} s after their columns were added: the object will be \
                             tried again",
                            endpoint.table,
                            unknown.len(),
                            evolver.wait.as_secs()
                        )),
                    ));
                }
                current = current.subset_with(&keep, &replaced);
                continue;
            }
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
        return Ok(settle_rows(
            sent,
            answer,
            rejected,
            endpoint.evolver.is_some(),
        ));
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
fn settle_rows(
    sent: &Sent,
    answer: InsertAllResponse,
    rejected: &mut Vec<Rejected>,
    evolving: bool,
) -> Attempt {
    let mut retry = Vec::new();
    let mut unknown = Vec::new();
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
        if evolving && permanent.iter().all(|p| is_unknown_field(p)) {
            unknown.push(e.index);
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
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        return Attempt::Evolve { unknown, retry };
    }
    if retry.is_empty() {
        Attempt::Settled
    } else {
        Attempt::RetryRows(retry)
    }
}

/// BigQuery's row error for a key the table has no column for: `invalid`, "no such field: x.".
fn is_unknown_field(p: &ErrorProto) -> bool {
    p.reason == "invalid" && p.message.trim_start().starts_with("no such field")
}

/// Rows refused for unknown fields (`unknown`, indices into `sent`): adds the columns they
/// need, and returns the rows to send again, with the JSON of those whose keys that carry no
/// data were removed. A row whose value an existing column cannot take, or with a field no
/// column type fits (an array of arrays), is refused here.
async fn evolve_rows(
    evolver: &Evolver,
    sent: &Sent,
    unknown: &[usize],
    rejected: &mut Vec<Rejected>,
) -> Result<(Vec<usize>, HashMap<usize, Vec<u8>>), Error> {
    let mut fields = evolver.fields(false).await?;
    let mut records = Vec::new();
    let mut additions = Vec::new();
    let refuse = |rejected: &mut Vec<Rejected>, i: usize, error: String| {
        rejected.push(Rejected {
            ordinal: sent.rows[i].ordinal,
            byte_offset: sent.rows[i].byte_offset,
            row: sent.row_json(i).to_vec(),
            error,
        });
    };
    for &i in unknown {
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(sent.row_json(i)) else {
            refuse(
                rejected,
                i,
                "BigQuery invalid: row is not valid JSON".into(),
            );
            continue;
        };
        // Against the schema with the rows before it added, as if written one by one: a
        // later row's value that conflicts with an earlier row's new column is refused.
        let working = infer::merged(&fields, &additions);
        match evolver.plan(&working, &record) {
            Ok(a) => {
                additions.extend(a);
                records.push((i, record));
            }
            Err(refused) => refuse(
                rejected,
                i,
                format!("does not fit the table schema: {refused}"),
            ),
        }
    }
    if !additions.is_empty() {
        fields = evolver.add(&additions).await?;
    }
    let mut resend = Vec::new();
    let mut replaced = HashMap::new();
    for (i, mut record) in records {
        if infer::strip_empty_unknown(&fields, &mut record) {
            replaced.insert(i, serde_json::to_vec(&record).unwrap_or_default());
        }
        if let Some(path) = infer::first_unknown(&fields, &record) {
            refuse(
                rejected,
                i,
                format!(
                    "does not fit the table schema: no column type fits field `{path}` (an \
                     array of arrays?), so none can be added for it"
                ),
            );
            continue;
        }
        resend.push(i);
    }
    Ok((resend, replaced))
}

//! A Distributed Map batch → its objects' outcomes → the child execution's output.
//!
//! The output is the batch's audit trail (ResultWriter stores it in S3): one entry per item
//! (`processed` with its counts, `already_done` by the ledger, `dead_lettered` with the reason,
//! `skipped` folders, delete markers and repeats of an object) and the totals. Step Functions
//! refuses a state output over 256 KiB, which would fail a batch whose work is done, so past
//! [`RESPONSE_BUDGET`] entries are left out (dead-lettered ones last) and counted in
//! `results_omitted`; the totals stay exact.
//!
//! Permanent failures are dead-lettered and the batch succeeds. Anything to retry (a transient
//! error, another worker's claim, the deadline) fails the whole batch with
//! [`MAP_TRANSIENT_ERROR`], which the state machine's `Retry` retries: the ledger makes the
//! retry skip the objects this attempt finished.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::{json, Value};

use super::distributed_map::MapBatch;
use super::handler::{Handler, HandlerError, Outcome};
use crate::object::ObjectRef;

/// The error type (Lambda's `errorType`, Step Functions' `Error`) of a batch to retry: name it
/// in the Map's `Retry.ErrorEquals`.
pub const MAP_TRANSIENT_ERROR: &str = "FirehoseReplayTransient";

/// Bytes the output may take: well inside Step Functions' 256 KiB per state, leaving room for
/// what Step Functions wraps around it.
pub const RESPONSE_BUDGET: usize = 200 * 1024;

/// Longest error text kept per entry (a sink's error can quote a whole row).
const ERROR_CHARS: usize = 600;

/// What became of one item.
enum Entry<'a> {
    /// Nothing to replay: the key and why (a folder, a delete marker).
    Skipped(&'a str, &'static str),
    Object(ObjectRef, &'a Outcome),
}

impl Handler {
    /// Handles a Distributed Map batch (see the module's documentation).
    pub(super) async fn handle_map(
        &self,
        batch: MapBatch,
        deadline: Instant,
        request_id: &str,
    ) -> Result<Value, HandlerError> {
        // Every bucket is resolved before anything runs: a batch without one is a
        // configuration error, not something to half-do. An object named twice is replayed
        // once: two copies at once would contend for its ledger claim and fail the batch.
        let mut objects = Vec::new();
        let mut seen = HashSet::new();
        let mut skips = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let mut skip = item.skip_reason();
            if skip.is_none() {
                let o = item.object(batch.bucket.as_deref(), self.map_bucket.as_deref())?;
                if seen.insert((o.bucket.clone(), o.key.clone(), o.version_id.clone())) {
                    objects.push(o);
                } else {
                    skip = Some("duplicate");
                }
            }
            skips.push(skip);
        }
        let outcomes = self.process(objects.clone(), deadline, request_id).await;
        let retry: Vec<String> = objects
            .iter()
            .zip(&outcomes)
            .filter_map(|(o, r)| match r {
                Outcome::Retry { error } => Some(format!("{}/{}: {error}", o.bucket, o.key)),
                _ => None,
            })
            .collect();
        if let Some(first) = retry.first() {
            return Err(HandlerError::MapRetry {
                failed: retry.len(),
                total: objects.len(),
                first: first.clone(),
            });
        }
        let mut done = objects.into_iter().zip(&outcomes);
        let entries: Vec<Entry> = batch
            .items
            .iter()
            .zip(skips)
            .filter_map(|(i, skip)| match skip {
                Some(reason) => Some(Entry::Skipped(&i.key, reason)),
                None => done.next().map(|(o, r)| Entry::Object(o, r)),
            })
            .collect();
        Ok(response(&entries, RESPONSE_BUDGET))
    }
}

fn entry_json(e: &Entry) -> (Value, u8) {
    match e {
        Entry::Skipped(key, reason) => (
            json!({ "key": key, "outcome": "skipped", "reason": reason }),
            1,
        ),
        Entry::Object(o, r) => match r {
            Outcome::Done(c) => (
                json!({ "bucket": o.bucket, "key": o.key, "outcome": "processed",
                    "records": c.records, "rows": c.rows, "record_errors": c.record_errors }),
                1,
            ),
            Outcome::AlreadyDone => (
                json!({ "bucket": o.bucket, "key": o.key, "outcome": "already_done" }),
                1,
            ),
            Outcome::DeadLettered { error } => {
                let mut error = error.clone();
                if let Some((i, _)) = error.char_indices().nth(ERROR_CHARS) {
                    error.truncate(i);
                    error.push('…');
                }
                (
                    json!({ "bucket": o.bucket, "key": o.key, "outcome": "dead_lettered",
                        "error": error }),
                    // Kept first when entries must be left out: they are what a person reads.
                    0,
                )
            }
            Outcome::Retry { .. } => unreachable!("a batch to retry has no response"),
        },
    }
}

/// The output for `entries`, at most about `budget` bytes.
fn response(entries: &[Entry], budget: usize) -> Value {
    let (mut processed, mut already, mut dead, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let (mut records, mut rows, mut record_errors) = (0u64, 0u64, 0u64);
    for e in entries {
        match e {
            Entry::Skipped(..) => skipped += 1,
            Entry::Object(_, Outcome::Done(c)) => {
                processed += 1;
                records += c.records;
                rows += c.rows;
                record_errors += c.record_errors;
            }
            Entry::Object(_, Outcome::AlreadyDone) => already += 1,
            Entry::Object(_, Outcome::DeadLettered { .. }) => dead += 1,
            Entry::Object(_, Outcome::Retry { .. }) => {}
        }
    }
    let mut out = json!({
        "items": entries.len(),
        "processed": processed,
        "already_done": already,
        "dead_lettered": dead,
        "skipped": skipped,
        "records": records,
        "rows": rows,
        "record_errors": record_errors,
    });
    let rendered: Vec<(Value, u8, usize)> = entries
        .iter()
        .map(|e| {
            let (v, rank) = entry_json(e);
            let len = v.to_string().len() + 1;
            (v, rank, len)
        })
        .collect();
    // Room for the totals and `results_omitted`.
    let mut left = budget.saturating_sub(out.to_string().len() + 64);
    let mut keep = vec![false; rendered.len()];
    for rank in [0u8, 1] {
        for (i, (_, r, len)) in rendered.iter().enumerate() {
            if *r == rank && *len <= left {
                keep[i] = true;
                left -= len;
            }
        }
    }
    let omitted = keep.iter().filter(|k| !**k).count();
    let results: Vec<Value> = rendered
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|((v, _, _), _)| v)
        .collect();
    out["results"] = Value::Array(results);
    if omitted > 0 {
        out["results_omitted"] = json!(omitted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_budget_the_dead_letters_are_kept_and_the_rest_counted() {
        let ok = Outcome::AlreadyDone;
        let dead = Outcome::DeadLettered {
            error: "x".repeat(5000),
        };
        let mut entries: Vec<Entry> = (0..400)
            .map(|i| Entry::Object(ObjectRef::new("b", format!("k{i:0>80}")), &ok))
            .collect();
        entries.push(Entry::Object(ObjectRef::new("b", "bad"), &dead));
        let v = response(&entries, 8 * 1024);
        assert!(v.to_string().len() <= 8 * 1024, "{}", v.to_string().len());
        assert_eq!(v["already_done"], 400);
        assert_eq!(v["dead_lettered"], 1);
        let results = v["results"].as_array().unwrap();
        let last = results.last().unwrap();
        assert_eq!(last["outcome"], "dead_lettered");
        assert_eq!(
            last["error"].as_str().unwrap().chars().count(),
            ERROR_CHARS + 1
        );
        assert_eq!(
            v["results_omitted"].as_u64().unwrap() as usize,
            401 - results.len()
        );
        let all = response(&entries[..3], 8 * 1024);
        assert_eq!(all["results"].as_array().unwrap().len(), 3);
        assert!(all.get("results_omitted").is_none());
    }
}

//! Adding columns to a table that other workers may be changing at the same moment.
//!
//! `tables.patch` replaces the whole schema, so two workers adding different columns from the
//! same old schema would each erase the other's. Each patch therefore carries the etag of the
//! table it was computed from (`If-Match`); BigQuery refuses it with `412` when the table
//! changed meanwhile, and the worker re-reads the table, merges its additions into what is
//! there now (skipping any another worker already added) and tries again. Every change is one
//! log line naming the columns added.

use serde_json::{json, Value};

use super::infer::{merged, Addition};
use crate::error::{Cause, Class, Error, Stage};
use crate::sink::bigquery::api_error::Fail;
use crate::sink::bigquery::load::LoadJobs;
use crate::sink::bigquery::table;

/// Re-reads and patches at most this many times when other workers keep winning.
const MAX_CONFLICTS: usize = 20;

fn evolve_error(class: Class, msg: String) -> Error {
    Error::new(Stage::Sink, class, Cause::Sink(msg))
}

/// What `tables.get` gave: the etag and the schema fields.
struct Current {
    etag: String,
    fields: Vec<Value>,
}

/// Adds `additions` to the table `jobs` is bound to; returns its schema fields afterwards.
/// Columns another worker added first are not added twice; existing columns never change.
pub async fn add_columns(jobs: &LoadJobs, additions: &[Addition]) -> Result<Vec<Value>, Error> {
    let t = jobs.table().clone();
    let url = table::url(jobs);
    for _ in 0..MAX_CONFLICTS {
        let what = format!("reading the schema of {t}");
        let current = match table::lookup(jobs, &what).await? {
            Some(v) => Current {
                etag: v["etag"].as_str().unwrap_or_default().to_string(),
                fields: v["schema"]["fields"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            },
            None => {
                return Err(Fail::permanent(format!("table {t} does not exist")).into_error(&what))
            }
        };
        let wanted = merged(&current.fields, additions);
        if wanted == current.fields {
            return Ok(current.fields);
        }
        let body = json!({"schema": {"fields": wanted}});
        let what = format!("adding columns to {t}");
        let patched: Option<()> = jobs
            .rest()
            .with_retries(&what, || async {
                let mut req = jobs.rest().http.patch(&url).json(&body);
                if !current.etag.is_empty() {
                    req = req.header("If-Match", &current.etag);
                }
                let reply = jobs.rest().call(req).await?;
                match reply.status {
                    200..=299 => Ok(Some(())),
                    // Changed since we read it: read again and merge.
                    412 => Ok(None),
                    _ => Err(reply.fail()),
                }
            })
            .await?;
        if patched.is_some() {
            let mut names: Vec<String> = Vec::new();
            for a in additions {
                let name = a.dotted();
                let new = !merged(&current.fields, std::slice::from_ref(a)).eq(&current.fields);
                if new && !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                    names.push(name);
                }
            }
            tracing::info!(table = %t, columns = %names.join(", "), "schema: added columns");
            return Ok(wanted);
        }
        tracing::debug!(table = %t, "schema changed meanwhile; merging again");
    }
    Err(evolve_error(
        Class::Transient,
        format!("adding columns to {t}: the table kept changing ({MAX_CONFLICTS} tries)"),
    ))
}

//! Load jobs with deterministic job IDs: exactly-once loads of whole files.
//!
//! A load job is atomic (all of its rows land or none do) and BigQuery refuses a second job with
//! an ID it has seen before (`409 duplicate`). So if the job ID ([`job_id`](super::job_id())) is derived
//! only from *what* is being loaded, any number of workers, retries and crash-restarts that try
//! to load the same objects all converge on one job: whoever comes second finds the job
//! (running, done or failed) instead of loading the rows again. A job that failed for a
//! transient reason cannot be resubmitted under its ID, so each retry of the same set gets the
//! next *attempt* number in the ID; the attempts are walked in order, which finds an earlier
//! success before ever creating a new job.
//!
//! This file owns the job: its resource, `jobs.get`, waiting, and the attempt walk
//! ([`LoadJobs::load`]); the bytes go up in [`super::upload`]. Request-level errors are
//! classified by `api_error` (the verdict insertAll and
//! `--dedup merge` get too) and retried per [`retry`](crate::sink::bigquery::retry).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::job_id::{job_id, ObjectKey};
use super::upload::{CHUNK_GRANULARITY, DEFAULT_CHUNK_BYTES};
use crate::error::{Class, Error};
use crate::sink::bigquery::api_error::{sink_error, ErrorProto, Fail};
use crate::sink::bigquery::rest::{segment, Rest};
use crate::sink::bigquery::retry::RetryPolicy;
use crate::sink::bigquery::TableRef;

/// Job attempts per set of objects before giving up. Each transiently failed job burns one
/// attempt number for good, so this bounds how many jobs one set can ever create.
pub const MAX_JOB_ATTEMPTS: u32 = 16;
/// Submissions of one job ID that still leave it missing (should not happen: a submission either
/// creates the job or finds it) before that is reported instead of looped on.
const MAX_SUBMITS_PER_ATTEMPT: u32 = 3;

/// Failed-job reasons that another attempt may get past: BigQuery-side trouble and throttling.
/// `quotaExceeded` clears with time too, so it is retried, after a longer pause.
const TRANSIENT_JOB_REASONS: [&str; 7] = [
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "timeout",
    "jobBackendError",
    "jobInternalError",
    "quotaExceeded",
];

/// What BigQuery knows about a job ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// No such job (in this location): it was never created.
    Missing,
    /// `PENDING` or `RUNNING`.
    Running,
    /// `DONE` without an `errorResult`: every row is in the table.
    Succeeded { output_rows: u64 },
    /// `DONE` with an `errorResult`: nothing was written. `transient` says whether another
    /// attempt (under a new ID) may succeed.
    Failed {
        reason: String,
        message: String,
        transient: bool,
    },
}

/// How a submission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// This call created the job.
    Created,
    /// A job with this ID existed already (an earlier try or a concurrent worker); nothing was
    /// (or needed to be) uploaded again.
    AlreadyExists,
}

/// A finished load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub job_id: String,
    pub output_rows: u64,
    /// The attempt number in `job_id`.
    pub attempt: u32,
}

/// Everything but the endpoint and the table.
#[derive(Debug, Clone)]
pub struct LoadJobOptions {
    /// The dataset's location (`EU`, `us-central1`…). Jobs outside the US multi-region are only
    /// found by `jobs.get` when the location is given, so a missing one would make every GET
    /// answer 404 and every load look unstarted.
    pub location: Option<String>,
    pub retry: RetryPolicy,
    /// Between `jobs.get` polls while a job runs.
    pub poll_interval: Duration,
    /// Drop fields the table does not have instead of failing the job.
    pub ignore_unknown_values: bool,
    /// Upload chunk size; rounded up to a multiple of [`CHUNK_GRANULARITY`].
    pub chunk_bytes: usize,
    /// The table's schema fields (as `tables.get` gives them), sent with each job.
    pub schema: Option<serde_json::Value>,
}

impl Default for LoadJobOptions {
    fn default() -> Self {
        LoadJobOptions {
            location: None,
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(2),
            ignore_unknown_values: false,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            schema: None,
        }
    }
}

/// Loads newline-delimited JSON files into one table through load jobs (REST).
pub struct LoadJobs {
    pub(super) rest: Rest,
    pub(super) table: TableRef,
    pub(super) location: Option<String>,
    pub(super) poll_interval: Duration,
    pub(super) ignore_unknown_values: bool,
    pub(super) chunk_bytes: usize,
    pub(super) schema: Option<serde_json::Value>,
    /// `schemaUpdateOptions: ["ALLOW_FIELD_ADDITION"]`: the schema adds columns.
    pub(super) allow_field_addition: bool,
    /// `CREATE_IF_NEEDED` with this layout (`--create-table auto`); else `CREATE_NEVER`.
    pub(super) create: Option<super::schema::CreateLayout>,
}

/// The parts of BigQuery's Job resource that decide what to do next.
#[derive(Deserialize)]
struct JobResource {
    #[serde(default)]
    status: Option<JobStatus>,
    #[serde(default)]
    statistics: Option<JobStatistics>,
}

#[derive(Deserialize)]
struct JobStatus {
    #[serde(default)]
    state: String,
    #[serde(default, rename = "errorResult")]
    error_result: Option<ErrorProto>,
}

#[derive(Deserialize)]
struct JobStatistics {
    #[serde(default)]
    load: Option<LoadStatistics>,
    #[serde(default)]
    query: Option<QueryStatistics>,
}

/// A DML query job's counts (`--dedup merge` runs MERGE as a query job).
#[derive(Deserialize)]
struct QueryStatistics {
    #[serde(default, rename = "dmlStats")]
    dml_stats: Option<DmlStats>,
    #[serde(default, rename = "numDmlAffectedRows")]
    num_dml_affected_rows: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct DmlStats {
    #[serde(default, rename = "insertedRowCount")]
    inserted_row_count: Option<serde_json::Value>,
}

/// int64 values are JSON strings in Google APIs; a number is accepted too.
fn int64(v: serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        v => v.as_u64(),
    }
}

#[derive(Deserialize)]
struct LoadStatistics {
    /// int64 values are JSON strings in Google APIs; a number is accepted too.
    #[serde(default, rename = "outputRows")]
    output_rows: Option<serde_json::Value>,
}

impl JobResource {
    fn state(self) -> JobState {
        let Some(status) = self.status else {
            return JobState::Running;
        };
        // Only DONE is final; PENDING, RUNNING (and anything new) mean "ask again later".
        if status.state != "DONE" {
            return JobState::Running;
        }
        if let Some(e) = status.error_result {
            let transient = TRANSIENT_JOB_REASONS.contains(&e.reason.as_str());
            return JobState::Failed {
                reason: e.reason,
                message: e.message,
                transient,
            };
        }
        // A load job's rows written, or a MERGE's rows inserted.
        let output_rows = self
            .statistics
            .and_then(|s| {
                let load = s.load.and_then(|l| l.output_rows).and_then(int64);
                load.or_else(|| {
                    let q = s.query?;
                    q.dml_stats
                        .and_then(|d| d.inserted_row_count)
                        .and_then(int64)
                        .or_else(|| q.num_dml_affected_rows.and_then(int64))
                })
            })
            .unwrap_or(0);
        JobState::Succeeded { output_rows }
    }
}

impl LoadJobs {
    /// `base` is the API root without `/bigquery/v2` (`https://bigquery.googleapis.com`, or an
    /// emulator's). No network call is made. `auth` of `None` sends no `Authorization` header
    /// (emulators).
    pub fn new(
        http: reqwest::Client,
        base: &str,
        auth: Option<Arc<dyn gcp_bigquery_client::auth::Authenticator>>,
        table: TableRef,
        options: LoadJobOptions,
    ) -> LoadJobs {
        let chunk_bytes = options
            .chunk_bytes
            .max(1)
            .div_ceil(CHUNK_GRANULARITY)
            .saturating_mul(CHUNK_GRANULARITY);
        LoadJobs {
            rest: Rest {
                http,
                base: base.trim_end_matches('/').to_string(),
                auth,
                policy: options.retry,
            },
            table,
            location: options.location,
            poll_interval: options.poll_interval,
            ignore_unknown_values: options.ignore_unknown_values,
            chunk_bytes,
            schema: options.schema,
            allow_field_addition: false,
            create: None,
        }
    }

    pub fn table(&self) -> &TableRef {
        &self.table
    }

    /// The same client, endpoint and options, loading into `table` instead (`--dedup merge`
    /// loads each batch into a staging table).
    pub fn with_table(&self, table: TableRef) -> LoadJobs {
        LoadJobs {
            rest: self.rest.clone(),
            table,
            location: self.location.clone(),
            poll_interval: self.poll_interval,
            ignore_unknown_values: self.ignore_unknown_values,
            chunk_bytes: self.chunk_bytes,
            schema: self.schema.clone(),
            allow_field_addition: self.allow_field_addition,
            create: self.create.clone(),
        }
    }

    /// The same client for one batch's job whose schema grew: `fields` on the job,
    /// `ALLOW_FIELD_ADDITION` when they add columns, and `create` for a table the job creates.
    /// The job ID does not change with any of these (see [`super::schema`]).
    pub fn for_batch(
        &self,
        fields: Vec<serde_json::Value>,
        allow_field_addition: bool,
        ignore_unknown_values: bool,
        create: Option<super::schema::CreateLayout>,
    ) -> LoadJobs {
        LoadJobs {
            schema: Some(serde_json::Value::Array(fields)),
            allow_field_addition,
            ignore_unknown_values,
            create,
            ..self.with_table(self.table.clone())
        }
    }

    pub(crate) fn ignores_unknown_values(&self) -> bool {
        self.ignore_unknown_values
    }

    /// The REST client, endpoint and retry policy (`--dedup merge` sends its requests
    /// through it too).
    pub(crate) fn rest(&self) -> &Rest {
        &self.rest
    }

    pub(crate) fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The table's schema fields as `tables.get` gave them.
    pub(crate) fn schema(&self) -> Option<&serde_json::Value> {
        self.schema.as_ref()
    }

    /// The upload chunk size in use (after rounding).
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    async fn get_once(&self, job_id: &str) -> Result<JobState, Fail> {
        let url = format!(
            "{}/bigquery/v2/projects/{}/jobs/{}",
            self.rest.base,
            segment(&self.table.project),
            segment(job_id)
        );
        let mut req = self.rest.http.get(url);
        if let Some(loc) = &self.location {
            req = req.query(&[("location", loc)]);
        }
        let reply = self.rest.call(req).await?;
        match reply.status {
            200 => reply.json("job resource").map(JobResource::state),
            404 => Ok(JobState::Missing),
            _ => Err(reply.fail()),
        }
    }

    /// `jobs.get`, once. A 404 is [`JobState::Missing`]: the job was never created (the
    /// location must be right for this to mean anything).
    pub async fn get(&self, job_id: &str) -> Result<JobState, Error> {
        self.get_once(job_id)
            .await
            .map_err(|f| f.into_error(&format!("reading BigQuery load job {job_id}")))
    }

    /// The state of a job whose ID a crashed run recorded: whether its load happened.
    pub async fn state_of(&self, job_id: &str) -> Result<JobState, Error> {
        self.get(job_id).await
    }

    async fn get_retrying(&self, job_id: &str) -> Result<JobState, Error> {
        let what = format!("reading BigQuery load job {job_id}");
        self.rest
            .with_retries(&what, || self.get_once(job_id))
            .await
    }

    /// Polls until the job is no longer running. Transient GET failures are retried per the
    /// policy; there is no overall deadline (jobs may queue for long), so wrap this in a
    /// timeout where one is needed.
    pub async fn wait(&self, job_id: &str) -> Result<JobState, Error> {
        let mut polls = 0u64;
        loop {
            let state = self.get_retrying(job_id).await?;
            if state != JobState::Running {
                return Ok(state);
            }
            polls += 1;
            tracing::debug!(job_id, polls, "BigQuery load job still running");
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// The Job resource the upload creates.
    pub(super) fn job_resource(&self, job_id: &str) -> serde_json::Value {
        let mut reference = json!({ "projectId": self.table.project, "jobId": job_id });
        if let Some(loc) = &self.location {
            reference["location"] = json!(loc);
        }
        let mut job = json!({
            "jobReference": reference,
            "configuration": {
                "load": {
                    "destinationTable": {
                        "projectId": self.table.project,
                        "datasetId": self.table.dataset,
                        "tableId": self.table.table,
                    },
                    "sourceFormat": "NEWLINE_DELIMITED_JSON",
                    // Appending is what makes loads of different object sets compose; the
                    // table must exist so that a typo cannot create a stray one.
                    "writeDisposition": "WRITE_APPEND",
                    "createDisposition": "CREATE_NEVER",
                    "ignoreUnknownValues": self.ignore_unknown_values,
                    // All or nothing: rows refused silently would break exactly-once.
                    "maxBadRecords": 0,
                }
            }
        });
        if let Some(schema) = &self.schema {
            // The table's own schema, so that only its columns are read from the rows.
            job["configuration"]["load"]["schema"] = json!({ "fields": schema });
        }
        let load = &mut job["configuration"]["load"];
        if self.allow_field_addition {
            load["schemaUpdateOptions"] = json!(["ALLOW_FIELD_ADDITION"]);
        }
        if let Some(create) = &self.create {
            // `--create-table auto`: asked for, so a missing table is the point, not a typo.
            load["createDisposition"] = json!("CREATE_IF_NEEDED");
            if let Some(field) = &create.partition_by {
                load["timePartitioning"] = json!({"type": "DAY", "field": field});
            }
            if !create.cluster_by.is_empty() {
                load["clustering"] = json!({"fields": create.cluster_by});
            }
        }
        job
    }

    /// Loads `data` — the rows of exactly `objects` — into the table, exactly once however
    /// often this is called, concurrently or after a crash.
    ///
    /// Attempt numbers are walked from 0, and each starts by *looking up* its job: a job that
    /// succeeded is the answer (nothing is uploaded again), one that runs is waited for, one
    /// that failed transiently moves on to the next attempt, and only a missing one is
    /// submitted. Submitting never creates a second job for an ID, so concurrent callers meet
    /// at the same job.
    pub async fn load(&self, objects: &[ObjectKey], data: &Path) -> Result<Loaded, Error> {
        let mut backoff = self.rest.policy.backoff();
        let mut last_failure = String::new();
        for attempt in 0..MAX_JOB_ATTEMPTS {
            let id = job_id(&self.table, objects, attempt);
            let mut state = self.get_retrying(&id).await?;
            let mut submits = 0u32;
            let (reason, message) = loop {
                match state {
                    JobState::Running => state = self.wait(&id).await?,
                    JobState::Succeeded { output_rows } => {
                        tracing::info!(
                            job_id = %id,
                            table = %self.table,
                            rows = output_rows,
                            attempt,
                            "BigQuery load job done"
                        );
                        return Ok(Loaded {
                            job_id: id,
                            output_rows,
                            attempt,
                        });
                    }
                    JobState::Failed {
                        reason,
                        message,
                        transient: false,
                    } => {
                        return Err(sink_error(
                            Class::Permanent,
                            format!(
                                "BigQuery load job {id} into {} failed: {reason}: {message}",
                                self.table
                            ),
                        ));
                    }
                    JobState::Failed {
                        reason,
                        message,
                        transient: true,
                    } => break (reason, message),
                    JobState::Missing => {
                        if submits == MAX_SUBMITS_PER_ATTEMPT {
                            return Err(sink_error(
                                Class::Transient,
                                format!(
                                    "BigQuery load job {id} is still not found after \
                                     {submits} submissions"
                                ),
                            ));
                        }
                        submits += 1;
                        match self.submit(&id, data).await {
                            Ok(_) => {}
                            Err(e) if e.is_transient() => {
                                // The job may exist even so: only a job that is really missing
                                // makes the failure the answer (the caller retries `load`,
                                // which starts with this very lookup).
                                let now = self.get_retrying(&id).await?;
                                if now == JobState::Missing {
                                    return Err(e);
                                }
                                tracing::info!(job_id = %id, "submission failed ({e}) but the job exists");
                                state = now;
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                        state = self.wait(&id).await?;
                    }
                }
            };
            tracing::warn!(
                job_id = %id,
                attempt,
                reason,
                "BigQuery load job failed transiently ({message}); trying again under a new ID"
            );
            last_failure = format!("{reason}: {message}");
            if attempt + 1 < MAX_JOB_ATTEMPTS {
                let delay = backoff.next_or_max(reason == "quotaExceeded");
                tokio::time::sleep(delay).await;
            }
        }
        Err(sink_error(
            Class::Transient,
            format!(
                "loading into {}: {MAX_JOB_ATTEMPTS} load jobs failed; the last: {last_failure}",
                self.table
            ),
        ))
    }
}

//! BigQuery load jobs with deterministic job IDs: exactly-once loads of whole files.
//!
//! A load job is atomic (all of its rows land or none do) and BigQuery refuses a second job with
//! an ID it has seen before (`409 duplicate`). So if the job ID is derived only from *what* is
//! being loaded — the table and the exact set of source objects, by ETag — then any number of
//! workers, retries and crash-restarts that try to load the same objects all converge on one
//! job: whoever comes second finds the job (running, done or failed) instead of loading the rows
//! again. A job that failed for a transient reason cannot be resubmitted under its ID, so each
//! retry of the same set gets the next *attempt* number in the ID; the attempts are walked in
//! order, which finds an earlier success before ever creating a new job.
//!
//! The data goes up through Google's resumable upload protocol: a POST with the job resource
//! opens an upload session, the file follows in chunks (a multiple of 256 KiB each), and the job
//! is created only when the last byte arrives. A failed chunk is not resent blindly: the session
//! is asked how much it has (`Content-Range: bytes */TOTAL` → `308` with `Range`) and the
//! upload resumes from there; a session that is gone (404/410) is started over. Files are read
//! one chunk at a time, never whole.
//!
//! Request-level errors are classified by [`super::api_error`] (the verdict insertAll and
//! `--dedup merge` get too) and retried per [`super::retry`].

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::api_error::{sink_error, ErrorProto, Fail};
use super::rest::{segment, Rest};
use super::retry::RetryPolicy;
use super::TableRef;
use crate::error::{Class, Error};

/// Upload chunks must be multiples of this (Google's resumable upload protocol); only the last
/// chunk of a file may be shorter.
pub const CHUNK_GRANULARITY: usize = 256 * 1024;
/// Large enough that per-request overhead is negligible, small enough that a retried chunk
/// costs little and memory stays bounded.
pub const DEFAULT_CHUNK_BYTES: usize = 8 * 1024 * 1024;
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

/// One source object, as the job ID identifies it. The ETag is part of the identity so that an
/// object rewritten under the same key is a different load, not a duplicate of the old one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub bucket: String,
    pub key: String,
    pub etag: String,
}

/// The job ID for loading exactly `objects` into `table`, try number `attempt`.
///
/// Only the *set* matters: the list is sorted and deduplicated first, so workers that discover
/// the same objects in a different order agree on the ID. Every string is length-prefixed before
/// hashing so that no two different sets encode to the same bytes (`("ab","c")` vs `("a","bc")`).
/// 128 bits of BLAKE3 make accidental collisions — which would silently skip a load — out of the
/// question. The result uses only characters BigQuery allows in job IDs and is far below 1024.
pub fn job_id(table: &TableRef, objects: &[ObjectKey], attempt: u32) -> String {
    fn put(h: &mut blake3::Hasher, s: &str) {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    let mut set: Vec<&ObjectKey> = objects.iter().collect();
    set.sort();
    set.dedup();
    // A derived key separates these hashes from every other use of BLAKE3 in the crate.
    let mut h = blake3::Hasher::new_derive_key("firehose_replay BigQuery load job id v1");
    put(&mut h, &table.project);
    put(&mut h, &table.dataset);
    put(&mut h, &table.table);
    h.update(&(set.len() as u64).to_le_bytes());
    for o in set {
        put(&mut h, &o.bucket);
        put(&mut h, &o.key);
        put(&mut h, &o.etag);
    }
    let digest = h.finalize();
    format!(
        "firehose_replay_{}_{attempt}",
        hex::encode(&digest.as_bytes()[..16])
    )
}

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
    rest: Rest,
    table: TableRef,
    location: Option<String>,
    poll_interval: Duration,
    ignore_unknown_values: bool,
    chunk_bytes: usize,
    schema: Option<serde_json::Value>,
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

/// What opening an upload session came to.
enum Start {
    Session(reqwest::Url),
    Duplicate,
}

/// What one PUT to an upload session came to.
enum PutAnswer {
    /// The upload is complete and the job was created (or existed already).
    Done(Submitted),
    /// `308`: the session holds bytes `0..next`.
    Incomplete(u64),
    /// The session expired or was never valid: start a new one.
    Gone(String),
}

/// What uploading into one session came to.
enum Upload {
    Done(Submitted),
    SessionGone(String),
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
        }
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
            200 => serde_json::from_slice::<JobResource>(&reply.body)
                .map(JobResource::state)
                .map_err(|e| Fail::transient(format!("unreadable job resource: {e}"))),
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
    fn job_resource(&self, job_id: &str) -> serde_json::Value {
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
        job
    }

    /// Opens a resumable upload session (POST with the job resource). A 409 `duplicate` here
    /// means the job ID is taken: the job exists and nothing needs uploading.
    async fn start_session_once(&self, job_id: &str, total: u64) -> Result<Start, Fail> {
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs?uploadType=resumable",
            self.rest.base,
            segment(&self.table.project)
        );
        let body = serde_json::to_vec(&self.job_resource(job_id)).expect("JSON values serialize");
        let req = self
            .rest
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .header("X-Upload-Content-Type", "application/octet-stream")
            .header("X-Upload-Content-Length", total.to_string())
            .body(body);
        let reply = self.rest.call(req).await?;
        if reply.is_duplicate() {
            return Ok(Start::Duplicate);
        }
        if !(200..300).contains(&reply.status) {
            return Err(reply.fail());
        }
        let location = reply
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Fail::transient(format!(
                    "HTTP {} without a Location header (no upload session)",
                    reply.status
                ))
            })?;
        // Google answers with an absolute URI; a relative one is resolved like a browser would.
        let base = reqwest::Url::parse(&url)
            .map_err(|e| Fail::transient(format!("bad upload URL {url}: {e}")))?;
        base.join(location)
            .map(Start::Session)
            .map_err(|e| Fail::transient(format!("bad upload session URI: {e}")))
    }

    /// One PUT to the session: a chunk, or (empty, `bytes */TOTAL`) a status query.
    async fn put_once(
        &self,
        session: &reqwest::Url,
        range: &str,
        body: Bytes,
    ) -> Result<PutAnswer, Fail> {
        let mut req = self
            .rest
            .http
            .put(session.clone())
            .header(reqwest::header::CONTENT_RANGE, range)
            .body(body);
        // The session URI itself authorizes the upload; the token is added only when it points
        // back at the API host, so that a redirected session can never receive it.
        let same_origin = reqwest::Url::parse(&self.rest.base)
            .map(|b| b.origin() == session.origin())
            .unwrap_or(false);
        if same_origin {
            req = self.rest.authorized(req).await?;
        }
        let reply = super::api_error::send(req).await?;
        match reply.status {
            200 | 201 => Ok(PutAnswer::Done(Submitted::Created)),
            308 => {
                // `Range: bytes=0-N` = bytes 0..=N are kept; no header = none are.
                let next = reply
                    .headers
                    .get(reqwest::header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().strip_prefix("bytes="))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(_, end)| end.trim().parse::<u64>().ok())
                    .map_or(0, |end| end + 1);
                Ok(PutAnswer::Incomplete(next))
            }
            409 if reply.is_duplicate() => Ok(PutAnswer::Done(Submitted::AlreadyExists)),
            410 => Ok(PutAnswer::Gone(format!(
                "HTTP 410: {}",
                reply.api_error().1
            ))),
            404 => {
                // The job is inserted with the last byte, so the final PUT can carry the job's
                // own "Not found: Table …"; that is permanent, unlike an expired session.
                let (_, message) = reply.api_error();
                if message.starts_with("Not found: Table")
                    || message.starts_with("Not found: Dataset")
                    || message.starts_with("Not found: Project")
                {
                    Err(reply.fail())
                } else {
                    Ok(PutAnswer::Gone(format!("HTTP 404: {message}")))
                }
            }
            _ => Err(reply.fail()),
        }
    }

    /// Uploads the whole file into one session, resuming after failures from what the session
    /// reports it holds.
    async fn upload(
        &self,
        job_id: &str,
        session: &reqwest::Url,
        file: &Arc<File>,
        path: &Path,
        total: u64,
    ) -> Result<Upload, Error> {
        let what = format!("uploading load job {job_id} into {}", self.table);
        let mut backoff = self.rest.policy.backoff();
        let mut offset = 0u64;
        // The last chunk read, kept so a retry of the same range does not read it again.
        let mut cached: Option<(u64, Bytes)> = None;
        loop {
            let (why, quota) = if offset < total || total == 0 {
                let (range, body) = if total == 0 {
                    ("bytes */0".to_string(), Bytes::new())
                } else {
                    let len = (total - offset).min(self.chunk_bytes as u64) as usize;
                    let body = match &cached {
                        Some((at, b)) if *at == offset && b.len() == len => b.clone(),
                        _ => {
                            let b = read_chunk(file, path, offset, len).await?;
                            cached = Some((offset, b.clone()));
                            b
                        }
                    };
                    let end = offset + len as u64 - 1;
                    (format!("bytes {offset}-{end}/{total}"), body)
                };
                tracing::debug!(job_id, %range, "upload chunk");
                match self.put_once(session, &range, body).await {
                    Ok(PutAnswer::Done(s)) => return Ok(Upload::Done(s)),
                    Ok(PutAnswer::Gone(why)) => return Ok(Upload::SessionGone(why)),
                    Ok(PutAnswer::Incomplete(next)) if next > offset => {
                        offset = next;
                        // Progress: the next stall gets the full retry budget again.
                        backoff = self.rest.policy.backoff();
                        continue;
                    }
                    Ok(PutAnswer::Incomplete(next)) => (
                        format!("the session kept nothing of the chunk (holds {next} bytes)"),
                        false,
                    ),
                    Err(f) if !f.transient => {
                        return Err(sink_error(Class::Permanent, format!("{what}: {}", f.why)))
                    }
                    Err(f) => (f.why, f.quota),
                }
            } else {
                (
                    "all bytes sent but the upload is not complete".to_string(),
                    false,
                )
            };
            // Recovery: back off, ask the session how much it holds, resume from there. A chunk
            // may have been kept even though its answer was lost, or kept only in part.
            let (mut why, mut quota) = (why, quota);
            loop {
                let Some(delay) = backoff.next(quota) else {
                    return Err(sink_error(
                        Class::Transient,
                        format!("{what}: upload stalled at byte {offset} of {total}: {why}"),
                    ));
                };
                tracing::debug!(
                    job_id,
                    offset,
                    delay_ms = delay.as_millis() as u64,
                    "upload chunk failed ({why}); querying the session"
                );
                tokio::time::sleep(delay).await;
                match self
                    .put_once(session, &format!("bytes */{total}"), Bytes::new())
                    .await
                {
                    Ok(PutAnswer::Incomplete(next)) => {
                        offset = next;
                        break;
                    }
                    Ok(PutAnswer::Done(s)) => return Ok(Upload::Done(s)),
                    Ok(PutAnswer::Gone(why)) => return Ok(Upload::SessionGone(why)),
                    Err(f) if !f.transient => {
                        return Err(sink_error(Class::Permanent, format!("{what}: {}", f.why)))
                    }
                    Err(f) => (why, quota) = (f.why, f.quota),
                }
            }
        }
    }

    /// Creates job `job_id` loading the file at `data` (newline-delimited JSON) by resumable
    /// upload. The job exists once this returns `Ok`; it has not necessarily finished.
    ///
    /// A transient error may be ambiguous — the last chunk may have arrived and the job been
    /// created even though its answer was lost — so look the job up before anything else.
    pub async fn submit(&self, job_id: &str, data: &Path) -> Result<Submitted, Error> {
        let (file, total) = open(data).await?;
        tracing::info!(job_id, table = %self.table, bytes = total, "submitting BigQuery load job");
        let what = format!(
            "starting the upload of load job {job_id} into {}",
            self.table
        );
        let mut sessions = 0usize;
        loop {
            sessions += 1;
            let session = match self
                .rest
                .with_retries(&what, || self.start_session_once(job_id, total))
                .await?
            {
                Start::Session(uri) => uri,
                Start::Duplicate => {
                    tracing::info!(job_id, "BigQuery load job exists already; not uploading");
                    return Ok(Submitted::AlreadyExists);
                }
            };
            match self.upload(job_id, &session, &file, data, total).await? {
                Upload::Done(s) => {
                    if s == Submitted::AlreadyExists {
                        tracing::info!(job_id, "BigQuery load job exists already");
                    } else {
                        tracing::info!(job_id, bytes = total, "BigQuery load job created");
                    }
                    return Ok(s);
                }
                Upload::SessionGone(why) => {
                    if sessions >= self.rest.policy.max_attempts.max(1) {
                        return Err(sink_error(
                            Class::Transient,
                            format!("{what}: upload session lost {sessions} times: {why}"),
                        ));
                    }
                    tracing::warn!(job_id, "upload session gone ({why}); starting over");
                }
            }
        }
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

/// Local file errors: a missing or unreadable file, or one that shrank under us, stays so.
fn file_error(path: &Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind;
    let class = match e.kind() {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::InvalidData
        | ErrorKind::InvalidInput
        | ErrorKind::UnexpectedEof => Class::Permanent,
        _ => Class::Transient,
    };
    sink_error(class, format!("reading {}: {e}", path.display()))
}

fn join_error(e: tokio::task::JoinError) -> Error {
    sink_error(Class::Transient, format!("file reader task failed: {e}"))
}

/// Opens the file and takes its length, off the async threads.
async fn open(path: &Path) -> Result<(Arc<File>, u64), Error> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = File::open(&owned)?;
        let len = f.metadata()?.len();
        Ok::<_, std::io::Error>((Arc::new(f), len))
    })
    .await
    .map_err(join_error)?
    .map_err(|e| file_error(path, e))
}

/// Reads `len` bytes at `offset`, on a blocking thread: only one chunk is ever in memory.
async fn read_chunk(
    file: &Arc<File>,
    path: &Path,
    offset: u64,
    len: usize,
) -> Result<Bytes, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let mut f: &File = &file;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf)?;
        Ok::<_, std::io::Error>(Bytes::from(buf))
    })
    .await
    .map_err(join_error)?
    .map_err(|e| file_error(path, e))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Mutex;

    use serde_json::Value;

    use super::*;

    fn table() -> TableRef {
        "proj.ds.events".parse().unwrap()
    }

    fn obj(bucket: &str, key: &str, etag: &str) -> ObjectKey {
        ObjectKey {
            bucket: bucket.into(),
            key: key.into(),
            etag: etag.into(),
        }
    }

    fn objects() -> Vec<ObjectKey> {
        vec![
            obj("archive", "2024/05/01/00/a.gz", "e1"),
            obj("archive", "2024/05/01/00/b.gz", "e2"),
        ]
    }

    #[test]
    fn job_ids_identify_the_set_of_objects_and_the_attempt() {
        let t = table();
        let objs = objects();
        let id = job_id(&t, &objs, 0);
        let hex = id
            .strip_prefix("firehose_replay_")
            .and_then(|r| r.strip_suffix("_0"))
            .unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));

        // Same set, another order (and a repeat): same job.
        let mut rev = objs.clone();
        rev.reverse();
        rev.push(objs[0].clone());
        assert_eq!(job_id(&t, &rev, 0), id);
        assert_eq!(job_id(&t, &objs, 0), id, "deterministic");

        // Anything else: another job.
        let mut other = vec![id.clone(), job_id(&t, &objs, 1)];
        for change in 0..4 {
            let mut o = objs.clone();
            match change {
                0 => o[1].etag = "e3".into(),
                1 => o[1].key = "2024/05/01/00/c.gz".into(),
                2 => o[0].bucket = "archive2".into(),
                _ => {
                    o.pop();
                }
            }
            other.push(job_id(&t, &o, 0));
        }
        let mut t2 = t.clone();
        t2.table = "events2".into();
        other.push(job_id(&t2, &objs, 0));
        // Length prefixes: moving bytes between fields changes the ID.
        other.push(job_id(&t, &[obj("ab", "c", "e")], 0));
        other.push(job_id(&t, &[obj("a", "bc", "e")], 0));
        let n = other.len();
        other.sort();
        other.dedup();
        assert_eq!(other.len(), n, "all distinct: {other:?}");
        assert!(job_id(&t, &objs, 1).ends_with("_1"));
    }

    #[test]
    fn chunk_size_is_rounded_to_the_protocol_granularity() {
        let mk = |chunk_bytes| {
            LoadJobs::new(
                reqwest::Client::new(),
                "http://x/",
                None,
                table(),
                LoadJobOptions {
                    chunk_bytes,
                    ..LoadJobOptions::default()
                },
            )
            .chunk_bytes()
        };
        assert_eq!(mk(DEFAULT_CHUNK_BYTES), DEFAULT_CHUNK_BYTES);
        assert_eq!(mk(0), CHUNK_GRANULARITY);
        assert_eq!(mk(CHUNK_GRANULARITY + 1), 2 * CHUNK_GRANULARITY);
    }

    #[test]
    fn load_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let jobs = LoadJobs::new(
            reqwest::Client::new(),
            "http://x",
            None,
            table(),
            LoadJobOptions::default(),
        );
        let path = Path::new("x");
        send(&jobs.load(&[], path));
    }

    // ---- a fake BigQuery: jobs.get and resumable uploads --------------------------------

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    #[derive(Debug, Clone)]
    enum Done {
        Rows(u64),
        Error(&'static str, &'static str),
    }

    #[derive(Debug, Clone)]
    struct FakeJob {
        /// GETs answered RUNNING before DONE.
        running_polls: u32,
        done: Done,
    }

    struct Session {
        job: Value,
        total: u64,
        received: Vec<u8>,
        completed: bool,
    }

    #[derive(Default)]
    struct FakeState {
        jobs: HashMap<String, FakeJob>,
        /// Data of completed uploads, by job ID.
        uploads: HashMap<String, Vec<u8>>,
        /// Job resources of completed uploads, by job ID.
        configs: HashMap<String, Value>,
        sessions: HashMap<String, Session>,
        next_session: u64,
        data_puts: usize,
        seen: Vec<Seen>,
        // The script:
        /// The upload POST is refused with this (status, reason, message).
        post_error: Option<(u16, &'static str, &'static str)>,
        /// Created under the POSTed job ID when `post_error` answers: a concurrent winner.
        race_job: Option<FakeJob>,
        /// Data PUTs (0-based, counted over the server's life) answered 503, keeping nothing.
        fail_data_puts: Vec<usize>,
        /// Data PUTs answered 404 with the session forgotten (expired).
        expire_data_puts: Vec<usize>,
        /// Jobs created by upload fail with this.
        fail_jobs: HashMap<String, (&'static str, &'static str)>,
        /// RUNNING polls of jobs created by upload.
        running_polls: u32,
    }

    struct Fake {
        base: String,
        state: Arc<Mutex<FakeState>>,
        server: Arc<tiny_http::Server>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    type Answer = (u16, Vec<(&'static str, String)>, String);

    fn api_error(code: u16, reason: &str, message: &str) -> String {
        json!({"error": {"code": code, "message": message,
            "errors": [{"reason": reason, "message": message, "domain": "global"}]}})
        .to_string()
    }

    /// The job resource as it stands; only `jobs.get` (`poll`) moves a job towards DONE.
    fn job_json(id: &str, job: &mut FakeJob, poll: bool) -> String {
        let mut v = json!({"kind": "bigquery#job",
            "jobReference": {"projectId": "proj", "jobId": id}});
        if job.running_polls > 0 {
            if poll {
                job.running_polls -= 1;
            }
            v["status"] = json!({"state": "RUNNING"});
        } else {
            match job.done {
                Done::Rows(n) => {
                    v["status"] = json!({"state": "DONE"});
                    v["statistics"] = json!({"load": {"outputRows": n.to_string()}});
                }
                Done::Error(reason, message) => {
                    v["status"] = json!({"state": "DONE",
                        "errorResult": {"reason": reason, "message": message},
                        "errors": [{"reason": reason, "message": message}]});
                }
            }
        }
        v.to_string()
    }

    impl FakeState {
        fn handle(&mut self, base: &str, req: &Seen) -> Answer {
            let path = req.url.split('?').next().unwrap();
            if req.method == "GET" {
                let id = path
                    .strip_prefix("/bigquery/v2/projects/proj/jobs/")
                    .unwrap();
                return match self.jobs.get_mut(id) {
                    Some(job) => (200, vec![], job_json(id, job, true)),
                    None => (404, vec![], api_error(404, "notFound", "Not found: Job")),
                };
            }
            if req.method == "POST" {
                assert_eq!(
                    req.url,
                    "/upload/bigquery/v2/projects/proj/jobs?uploadType=resumable"
                );
                let job: Value = serde_json::from_slice(&req.body).unwrap();
                let id = job["jobReference"]["jobId"].as_str().unwrap().to_string();
                if let Some((code, reason, message)) = self.post_error {
                    if let Some(j) = self.race_job.take() {
                        self.jobs.insert(id, j);
                    }
                    return (code, vec![], api_error(code, reason, message));
                }
                assert_eq!(
                    req.header("X-Upload-Content-Type"),
                    Some("application/octet-stream")
                );
                let total = req
                    .header("X-Upload-Content-Length")
                    .unwrap()
                    .parse()
                    .unwrap();
                let n = self.next_session;
                self.next_session += 1;
                self.sessions.insert(
                    n.to_string(),
                    Session {
                        job,
                        total,
                        received: Vec::new(),
                        completed: false,
                    },
                );
                let location = format!("{base}/upload/session/{n}?upload_id=x{n}");
                return (200, vec![("Location", location)], String::new());
            }
            assert_eq!(req.method, "PUT");
            let n = path.strip_prefix("/upload/session/").unwrap().to_string();
            let range = req.header("Content-Range").unwrap().to_string();
            let spec = range.strip_prefix("bytes ").unwrap();
            let (span, total) = spec.split_once('/').unwrap();
            let total: u64 = total.parse().unwrap();
            if span != "*" {
                let i = self.data_puts;
                self.data_puts += 1;
                if self.fail_data_puts.contains(&i) {
                    return (503, vec![], api_error(503, "backendError", "try again"));
                }
                if self.expire_data_puts.contains(&i) {
                    self.sessions.remove(&n);
                    return (404, vec![], "session expired".into());
                }
            }
            let Some(s) = self.sessions.get_mut(&n) else {
                return (404, vec![], "no such session".into());
            };
            assert_eq!(total, s.total, "Content-Range total");
            if span == "*" {
                assert!(req.body.is_empty());
                // A status query, or the whole of an empty upload.
                if !s.completed && s.total != 0 {
                    return match s.received.len() {
                        0 => (308, vec![], String::new()),
                        n => (
                            308,
                            vec![("Range", format!("bytes=0-{}", n - 1))],
                            String::new(),
                        ),
                    };
                }
            } else {
                let (a, b) = span.split_once('-').unwrap();
                let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                assert_eq!(
                    a,
                    s.received.len() as u64,
                    "chunk starts where the data ends"
                );
                assert_eq!(b - a + 1, req.body.len() as u64, "Content-Range length");
                s.received.extend_from_slice(&req.body);
                if b + 1 < total {
                    return (308, vec![("Range", format!("bytes=0-{b}"))], String::new());
                }
            }
            // Complete: the job is inserted now.
            let id = s.job["jobReference"]["jobId"].as_str().unwrap().to_string();
            if !s.completed {
                s.completed = true;
                if self.jobs.contains_key(&id) {
                    return (
                        409,
                        vec![],
                        api_error(409, "duplicate", "Already Exists: Job"),
                    );
                }
                let rows = s.received.iter().filter(|&&b| b == b'\n').count() as u64;
                let done = match self.fail_jobs.get(&id) {
                    Some((reason, message)) => Done::Error(reason, message),
                    None => Done::Rows(rows),
                };
                self.uploads.insert(id.clone(), s.received.clone());
                self.configs.insert(id.clone(), s.job.clone());
                self.jobs.insert(
                    id.clone(),
                    FakeJob {
                        running_polls: self.running_polls,
                        done,
                    },
                );
            }
            let job = self.jobs.get_mut(&id).unwrap();
            (200, vec![], job_json(&id, job, false))
        }
    }

    impl Fake {
        fn start(state: FakeState) -> Fake {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let base = format!("http://{}", server.server_addr().to_ip().unwrap());
            let state = Arc::new(Mutex::new(state));
            let (srv, st, b) = (server.clone(), state.clone(), base.clone());
            let thread = std::thread::spawn(move || {
                for mut req in srv.incoming_requests() {
                    let mut body = Vec::new();
                    req.as_reader().read_to_end(&mut body).unwrap();
                    let seen = Seen {
                        method: req.method().to_string(),
                        url: req.url().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|h| (h.field.as_str().as_str().to_string(), h.value.to_string()))
                            .collect(),
                        body,
                    };
                    let (status, headers, text) = {
                        let mut st = st.lock().unwrap();
                        st.seen.push(seen.clone());
                        st.handle(&b, &seen)
                    };
                    let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
                    resp.add_header(
                        tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"application/json"[..],
                        )
                        .unwrap(),
                    );
                    for (k, v) in headers {
                        resp.add_header(tiny_http::Header::from_bytes(k, v).unwrap());
                    }
                    let _ = req.respond(resp);
                }
            });
            Fake {
                base,
                state,
                server,
                thread: Some(thread),
            }
        }

        fn jobs(&self, options: LoadJobOptions) -> LoadJobs {
            LoadJobs::new(reqwest::Client::new(), &self.base, None, table(), options)
        }

        fn seen(&self) -> Vec<Seen> {
            self.state.lock().unwrap().seen.clone()
        }

        fn count(&self, method: &str) -> usize {
            self.seen().iter().filter(|s| s.method == method).count()
        }

        fn put_ranges(&self) -> Vec<String> {
            self.seen()
                .iter()
                .filter(|s| s.method == "PUT")
                .map(|s| s.header("Content-Range").unwrap().to_string())
                .collect()
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn options() -> LoadJobOptions {
        LoadJobOptions {
            location: None,
            retry: RetryPolicy {
                max_attempts: 5,
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                quota_factor: 2,
            },
            poll_interval: Duration::from_millis(1),
            ignore_unknown_values: false,
            chunk_bytes: CHUNK_GRANULARITY,
            schema: Some(json!([{"name": "n", "type": "INTEGER"}])),
        }
    }

    /// ~700 KiB of NDJSON: three chunks of 256 KiB, the last one short.
    fn ndjson_file() -> (tempfile::NamedTempFile, Vec<u8>, u64) {
        let mut data = Vec::new();
        let mut rows = 0u64;
        while data.len() < 700 * 1024 {
            writeln!(
                data,
                r#"{{"i":{rows},"pad":"{}"}}"#,
                "x".repeat(rows as usize % 97)
            )
            .unwrap();
            rows += 1;
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        (f, data, rows)
    }

    fn expected_ranges(total: usize) -> Vec<String> {
        (0..total)
            .step_by(CHUNK_GRANULARITY)
            .map(|a| {
                let b = (a + CHUNK_GRANULARITY).min(total) - 1;
                format!("bytes {a}-{b}/{total}")
            })
            .collect()
    }

    #[tokio::test]
    async fn uploads_a_multi_chunk_file_byte_identical_and_waits_for_the_job() {
        let fake = Fake::start(FakeState {
            running_polls: 2,
            ..FakeState::default()
        });
        let (file, data, rows) = ndjson_file();
        let jobs = fake.jobs(LoadJobOptions {
            location: Some("EU".into()),
            ignore_unknown_values: true,
            ..options()
        });
        let loaded = jobs.load(&objects(), file.path()).await.unwrap();
        let id = job_id(&table(), &objects(), 0);
        assert_eq!(
            loaded,
            Loaded {
                job_id: id.clone(),
                output_rows: rows,
                attempt: 0
            }
        );

        let st = fake.state.lock().unwrap();
        assert!(
            st.uploads[&id] == data,
            "uploaded bytes differ from the file"
        );
        let job = &st.configs[&id];
        assert_eq!(job["jobReference"]["jobId"], id);
        assert_eq!(job["jobReference"]["projectId"], "proj");
        assert_eq!(job["jobReference"]["location"], "EU");
        let load = &job["configuration"]["load"];
        assert_eq!(
            load["destinationTable"],
            json!({"projectId": "proj", "datasetId": "ds", "tableId": "events"})
        );
        assert_eq!(load["sourceFormat"], "NEWLINE_DELIMITED_JSON");
        assert_eq!(load["writeDisposition"], "WRITE_APPEND");
        assert_eq!(load["createDisposition"], "CREATE_NEVER");
        assert_eq!(load["ignoreUnknownValues"], true);
        assert_eq!(load["maxBadRecords"], 0);
        assert_eq!(
            load["schema"],
            json!({"fields": [{"name": "n", "type": "INTEGER"}]}),
            "the table's schema travels with the job"
        );
        drop(st);

        assert_eq!(fake.put_ranges(), expected_ranges(data.len()));
        assert_eq!(expected_ranges(data.len()).len(), 3);
        let post = fake
            .seen()
            .into_iter()
            .find(|s| s.method == "POST")
            .unwrap();
        assert_eq!(
            post.header("X-Upload-Content-Length"),
            Some(data.len().to_string().as_str())
        );
        assert!(post.header("Authorization").is_none(), "no auth configured");
        let gets: Vec<String> = fake
            .seen()
            .into_iter()
            .filter(|s| s.method == "GET")
            .map(|s| s.url)
            .collect();
        // Missing, then RUNNING twice, then DONE — all asked in the job's location.
        assert_eq!(gets.len(), 4, "{gets:?}");
        assert!(gets
            .iter()
            .all(|u| *u == format!("/bigquery/v2/projects/proj/jobs/{id}?location=EU")));
    }

    #[tokio::test]
    async fn an_empty_file_is_one_final_put() {
        let fake = Fake::start(FakeState::default());
        let file = tempfile::NamedTempFile::new().unwrap();
        let loaded = fake
            .jobs(options())
            .load(&objects(), file.path())
            .await
            .unwrap();
        assert_eq!(loaded.output_rows, 0);
        assert_eq!(fake.put_ranges(), vec!["bytes */0".to_string()]);
    }

    #[tokio::test]
    async fn a_duplicate_job_is_not_uploaded_again_but_waited_for() {
        // The first GET finds nothing, but by the POST a concurrent worker has created the job.
        let fake = Fake::start(FakeState {
            post_error: Some((409, "duplicate", "Already Exists: Job proj:job")),
            race_job: Some(FakeJob {
                running_polls: 2,
                done: Done::Rows(42),
            }),
            ..FakeState::default()
        });
        let (file, _, _) = ndjson_file();
        let loaded = fake
            .jobs(options())
            .load(&objects(), file.path())
            .await
            .unwrap();
        assert_eq!(loaded.output_rows, 42);
        assert_eq!(loaded.attempt, 0);
        assert_eq!(fake.count("POST"), 1);
        assert_eq!(fake.count("PUT"), 0, "nothing uploaded");
    }

    #[tokio::test]
    async fn a_job_that_already_succeeded_is_the_answer() {
        let id = job_id(&table(), &objects(), 0);
        let fake = Fake::start(FakeState {
            jobs: HashMap::from([(
                id.clone(),
                FakeJob {
                    running_polls: 0,
                    done: Done::Rows(7),
                },
            )]),
            ..FakeState::default()
        });
        let (file, _, _) = ndjson_file();
        let jobs = fake.jobs(options());
        let loaded = jobs.load(&objects(), file.path()).await.unwrap();
        assert_eq!(
            (loaded.job_id.as_str(), loaded.output_rows),
            (id.as_str(), 7)
        );
        assert_eq!(fake.count("POST"), 0);
        assert_eq!(fake.count("PUT"), 0);
        assert_eq!(
            jobs.state_of(&id).await.unwrap(),
            JobState::Succeeded { output_rows: 7 }
        );
        assert_eq!(
            jobs.state_of(&job_id(&table(), &objects(), 1))
                .await
                .unwrap(),
            JobState::Missing
        );
    }

    #[tokio::test]
    async fn a_transiently_failed_job_is_retried_under_the_next_attempt_id() {
        let first = job_id(&table(), &objects(), 0);
        let second = job_id(&table(), &objects(), 1);
        let fake = Fake::start(FakeState {
            fail_jobs: HashMap::from([(
                first.clone(),
                ("backendError", "Backend error. Job aborted."),
            )]),
            ..FakeState::default()
        });
        let (file, data, rows) = ndjson_file();
        let loaded = fake
            .jobs(options())
            .load(&objects(), file.path())
            .await
            .unwrap();
        assert_eq!(
            loaded,
            Loaded {
                job_id: second.clone(),
                output_rows: rows,
                attempt: 1
            }
        );
        assert!(second.ends_with("_1"));
        let posted: Vec<String> = fake
            .seen()
            .iter()
            .filter(|s| s.method == "POST")
            .map(|s| {
                let v: Value = serde_json::from_slice(&s.body).unwrap();
                v["jobReference"]["jobId"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(posted, vec![first, second.clone()]);
        assert!(fake.state.lock().unwrap().uploads[&second] == data);
    }

    #[tokio::test]
    async fn an_invalid_job_fails_permanently_with_bigquerys_message() {
        let id = job_id(&table(), &objects(), 0);
        let message = "Error while reading data, error message: JSON parsing error in row starting at position 0: No such field: nope.";
        let fake = Fake::start(FakeState {
            fail_jobs: HashMap::from([(id.clone(), ("invalid", message))]),
            ..FakeState::default()
        });
        let (file, _, _) = ndjson_file();
        let err = fake
            .jobs(options())
            .load(&objects(), file.path())
            .await
            .unwrap_err();
        assert_eq!(err.class, Class::Permanent);
        let text = err.to_string();
        assert!(text.contains(message), "{text}");
        assert!(text.contains(&id), "{text}");
        assert!(text.contains("invalid"), "{text}");
        assert_eq!(fake.count("POST"), 1, "no second attempt");
    }

    #[tokio::test]
    async fn a_failed_chunk_is_resumed_from_what_the_session_holds() {
        let fake = Fake::start(FakeState {
            fail_data_puts: vec![1],
            ..FakeState::default()
        });
        let (file, data, rows) = ndjson_file();
        let loaded = fake
            .jobs(options())
            .load(&objects(), file.path())
            .await
            .unwrap();
        assert_eq!(loaded.output_rows, rows);
        let chunks = expected_ranges(data.len());
        let total = data.len();
        assert_eq!(
            fake.put_ranges(),
            vec![
                chunks[0].clone(),
                chunks[1].clone(), // 503
                format!("bytes */{total}"),
                chunks[1].clone(),
                chunks[2].clone(),
            ]
        );
        assert_eq!(fake.count("POST"), 1, "same session");
        assert!(fake.state.lock().unwrap().uploads[&loaded.job_id] == data);
    }

    #[tokio::test]
    async fn an_expired_session_is_started_over() {
        let fake = Fake::start(FakeState {
            expire_data_puts: vec![1],
            ..FakeState::default()
        });
        let (file, data, _) = ndjson_file();
        let loaded = fake
            .jobs(options())
            .load(&objects(), file.path())
            .await
            .unwrap();
        assert_eq!(fake.count("POST"), 2);
        let chunks = expected_ranges(data.len());
        let mut expected = vec![chunks[0].clone(), chunks[1].clone()];
        expected.extend(chunks.iter().cloned());
        assert_eq!(fake.put_ranges(), expected);
        assert!(fake.state.lock().unwrap().uploads[&loaded.job_id] == data);
    }

    #[tokio::test]
    async fn a_missing_table_is_permanent() {
        let fake = Fake::start(FakeState {
            post_error: Some((404, "notFound", "Not found: Table proj:ds.events")),
            ..FakeState::default()
        });
        let (file, _, _) = ndjson_file();
        let err = fake
            .jobs(options())
            .load(&objects(), file.path())
            .await
            .unwrap_err();
        assert_eq!(err.class, Class::Permanent);
        assert!(
            err.to_string().contains("Not found: Table proj:ds.events"),
            "{err}"
        );
        assert_eq!(fake.count("POST"), 1, "not retried");
        assert_eq!(fake.count("PUT"), 0);
    }

    #[derive(Clone)]
    struct StaticToken;

    #[async_trait::async_trait]
    impl gcp_bigquery_client::auth::Authenticator for StaticToken {
        async fn access_token(&self) -> Result<String, gcp_bigquery_client::error::BQError> {
            Ok("tok-123".into())
        }
    }

    #[tokio::test]
    async fn requests_carry_the_bearer_token_and_throttling_is_retried() {
        let fake = Fake::start(FakeState {
            post_error: Some((429, "rateLimitExceeded", "slow down")),
            ..FakeState::default()
        });
        let jobs = LoadJobs::new(
            reqwest::Client::new(),
            &fake.base,
            Some(Arc::new(StaticToken)),
            table(),
            options(),
        );
        let (file, _, _) = ndjson_file();
        let id = job_id(&table(), &objects(), 0);
        let err = jobs.submit(&id, file.path()).await.unwrap_err();
        assert_eq!(err.class, Class::Transient);
        assert!(err.to_string().contains("slow down"), "{err}");
        assert_eq!(fake.count("POST"), 5, "max_attempts");
        assert!(!err.to_string().contains("tok-123"));
        // Throttled submissions leave the job missing: `load` reports that, transient.
        let err = jobs.load(&objects(), file.path()).await.unwrap_err();
        assert_eq!(err.class, Class::Transient);
        assert!(fake
            .seen()
            .iter()
            .all(|s| s.header("Authorization") == Some("Bearer tok-123")));
    }
}

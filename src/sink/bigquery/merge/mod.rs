//! `--dedup merge`: exactly once that needs no ledger.
//!
//! Rows go to a *staging table* first — per object in storage-write mode, per batch in load
//! mode — and then one statement moves them:
//!
//! ```sql
//! MERGE target T USING (staged rows, one per _row_id) S ON T._row_id = S._row_id
//! WHEN NOT MATCHED THEN INSERT (…) VALUES (…)
//! ```
//!
//! after which the staging table is dropped. A row whose ID the target holds already is left
//! out, so replaying an object — a second run, `--force`, a lost or absent ledger, a crash
//! between the MERGE and the ledger's write — adds nothing, and the MERGE's own count
//! (`dmlStats.insertedRowCount`) says how many rows this run really added. The MERGE is atomic:
//! a failed one inserted nothing and can run again.
//!
//! Staging tables are named `<table>__frs_stage_<16 hex>`, fresh for every attempt, so two runs
//! never share one; they carry an expiration (`--merge-staging-ttl-hours`), so one that a
//! killed run left behind disappears by itself.
//!
//! Cost: the MERGE reads the target's row-ID column to find matches. Unbounded, that is the
//! whole column (about 65 bytes a row for the default IDs) per MERGE. With
//! `--merge-partition-filter` on a table partitioned on a column (time- or integer-range), the
//! ON clause also carries a constant filter on the partitions the staged rows fall into (their
//! least and greatest value, asked of the staging table first), which lets BigQuery read only
//! those partitions. It is opt-in because it is exact only while a row's partition value cannot
//! change between runs (a changed `--map` can move a row, and its twin would not be seen); with
//! `--row-id-field` it is never applied.

mod object;
pub mod sql;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::api_error::sink_error;
use super::load::{JobState, LoadJobs};
use super::rest::segment;
use super::TableRef;
use crate::error::{Class, Error};

pub use self::object::MergeStorageWrite;

/// `--dedup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dedup {
    /// Rows go straight to the table; replays are kept off by the ledger.
    #[default]
    Off,
    /// Staging table + MERGE on the row ID.
    Merge,
}

impl std::str::FromStr for Dedup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" | "none" => Ok(Dedup::Off),
            "merge" => Ok(Dedup::Merge),
            _ => Err(format!("unknown dedup `{s}` (expected off or merge)")),
        }
    }
}

/// What the merge needs beyond the table.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The row-ID column (`--row-id-column`); the target must have it.
    pub row_id_column: String,
    /// Row IDs come from the source position, so a row's partition value is a function of its
    /// ID and the MERGE may be limited to the staged rows' partitions.
    pub prune_partitions: bool,
    /// How long a staging table lives if nothing drops it.
    pub staging_ttl: Duration,
}

/// A staging table of one attempt.
#[derive(Debug, Clone)]
pub struct Staging {
    pub table: TableRef,
    /// The 16 hex digits naming it; the MERGE job's ID carries them too.
    pub tag: String,
}

/// How many times a MERGE that failed for a transient reason runs again under a new job ID
/// (a failed MERGE inserted nothing).
const MERGE_JOB_ATTEMPTS: u32 = 3;

/// Stages and merges rows into one target table.
pub struct Merger {
    /// Bound to the target; its schema is the target's (`tables.get` at start).
    jobs: Arc<LoadJobs>,
    row_id_column: String,
    /// The target's top-level columns, in order: the staging tables' schema.
    columns: Vec<String>,
    /// The partition column and its type, when the MERGE may be limited to partitions.
    partition: Option<(String, String)>,
    staging_ttl: Duration,
    next: AtomicU64,
}

impl Merger {
    /// Checks that the target (as `tables.get` answered: `table`) can be merged into.
    pub fn new(jobs: Arc<LoadJobs>, table: &Value, settings: &Settings) -> Result<Merger, Error> {
        let t = jobs.table().clone();
        let fields = table["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let columns: Vec<String> = fields
            .iter()
            .filter_map(|f| f["name"].as_str().map(String::from))
            .collect();
        let id = &settings.row_id_column;
        if id.is_empty() {
            return Err(sink_error(
                Class::Permanent,
                "--dedup merge matches rows on their row-ID column: give --row-id-column".into(),
            ));
        }
        if !columns.iter().any(|c| c.eq_ignore_ascii_case(id)) {
            return Err(sink_error(
                Class::Permanent,
                format!(
                    "--dedup merge matches rows on `{id}`, but table {t} has no such column: add \
                     it (STRING), or name the column with --row-id-column"
                ),
            ));
        }
        let type_of = |name: &str| {
            fields
                .iter()
                .find(|f| f["name"].as_str() == Some(name))
                .and_then(|f| f["type"].as_str())
                .map(|t| match t {
                    "INTEGER" => "INT64".to_string(),
                    t => t.to_string(),
                })
        };
        let partition = if settings.prune_partitions {
            let time = table["timePartitioning"]["field"].as_str();
            let range = table["rangePartitioning"]["field"].as_str();
            time.or(range)
                // `_ingested_at` differs between runs: a replayed row's twin sits elsewhere.
                .filter(|c| *c != "_ingested_at")
                .and_then(|c| Some((c.to_string(), type_of(c)?)))
                .filter(|(_, k)| ["TIMESTAMP", "DATE", "DATETIME", "INT64"].contains(&k.as_str()))
        } else {
            None
        };
        Ok(Merger {
            jobs,
            row_id_column: settings.row_id_column.clone(),
            columns,
            partition,
            staging_ttl: settings.staging_ttl,
            next: AtomicU64::new(0),
        })
    }

    pub fn target(&self) -> &TableRef {
        self.jobs.table()
    }

    /// The load-job client for the target (load mode loads into staging tables through it).
    pub fn jobs(&self) -> &Arc<LoadJobs> {
        &self.jobs
    }

    /// A name no other attempt uses: `seed` (the object or batch) with the process, the time
    /// and a counter.
    pub fn staging_for(&self, seed: &str) -> Staging {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut h = blake3::Hasher::new();
        h.update(seed.as_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&nanos.to_le_bytes());
        h.update(&n.to_le_bytes());
        let tag = h.finalize().to_hex()[..16].to_string();
        let t = self.target();
        Staging {
            table: TableRef {
                project: t.project.clone(),
                dataset: t.dataset.clone(),
                table: format!("{}__frs_stage_{tag}", t.table),
            },
            tag,
        }
    }

    fn tables_url(&self, t: &TableRef) -> String {
        format!(
            "{}/bigquery/v2/projects/{}/datasets/{}/tables",
            self.jobs.rest().base,
            segment(&t.project),
            segment(&t.dataset)
        )
    }

    /// Creates the staging table with the target's schema and an expiration.
    pub async fn create(&self, staging: &Staging) -> Result<(), Error> {
        let t = &staging.table;
        let expires = SystemTime::now()
            .checked_add(self.staging_ttl)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(u64::MAX / 2);
        let body = json!({
            "tableReference": {"projectId": t.project, "datasetId": t.dataset, "tableId": t.table},
            "schema": {"fields": self.jobs.schema().cloned().unwrap_or(json!([]))},
            "expirationTime": expires.to_string(),
            "description": format!("firehose-replay --dedup merge staging for {}", self.target()),
        });
        let url = self.tables_url(t);
        let what = format!("creating staging table {t}");
        self.jobs
            .rest()
            .with_retries(&what, || async {
                let req = self.jobs.rest().http.post(&url).json(&body);
                let reply = self.jobs.rest().call(req).await?;
                match reply.status {
                    200..=299 => Ok(()),
                    // Our own earlier POST, whose answer was lost: the name is ours alone.
                    409 => Ok(()),
                    _ => Err(reply.fail()),
                }
            })
            .await
    }

    /// Drops the staging table; a failure only leaves it to its expiration.
    pub async fn drop_staging(&self, staging: &Staging) {
        let t = &staging.table;
        let url = format!("{}/{}", self.tables_url(t), segment(&t.table));
        let what = format!("dropping staging table {t}");
        let dropped = self
            .jobs
            .rest()
            .with_retries(&what, || async {
                let req = self.jobs.rest().http.delete(&url);
                let reply = self.jobs.rest().call(req).await?;
                match reply.status {
                    200..=299 | 404 => Ok(()),
                    _ => Err(reply.fail()),
                }
            })
            .await;
        if let Err(e) = dropped {
            tracing::warn!(table = %t, "{e}; it expires by itself");
        }
    }

    /// Moves the staged rows into the target; returns how many it inserted (rows whose ID
    /// the target held already are not).
    pub async fn merge(&self, staging: &Staging) -> Result<u64, Error> {
        let bounds = match &self.partition {
            Some((column, kind)) => Some(sql::Bounds {
                column: column.clone(),
                kind: kind.clone(),
                range: self.bounds(staging, column).await?,
            }),
            None => None,
        };
        let statement = sql::merge(
            self.target(),
            &staging.table,
            &self.row_id_column,
            &self.columns,
            bounds.as_ref(),
        );
        let mut last = String::new();
        for attempt in 0..MERGE_JOB_ATTEMPTS {
            let job_id = format!("firehose_replay_merge_{}_{attempt}", staging.tag);
            self.submit_query(&job_id, &statement).await?;
            match self.jobs.wait(&job_id).await? {
                JobState::Succeeded { output_rows } => return Ok(output_rows),
                JobState::Failed {
                    reason,
                    message,
                    transient: true,
                } => {
                    tracing::debug!(
                        job_id,
                        "MERGE failed ({reason}), running it again: {message}"
                    );
                    last = format!("{reason}: {message}");
                }
                JobState::Failed {
                    reason, message, ..
                } => {
                    return Err(sink_error(
                        Class::Permanent,
                        format!(
                            "MERGE into {} from {} failed: {reason}: {message}",
                            self.target(),
                            staging.table
                        ),
                    ))
                }
                // `wait` returns neither; a job that vanished is as good as failed.
                JobState::Missing | JobState::Running => {
                    last = format!("job {job_id} not found after it was submitted");
                }
            }
        }
        Err(sink_error(
            Class::Transient,
            format!(
                "MERGE into {} failed {MERGE_JOB_ATTEMPTS} times: {last}",
                self.target()
            ),
        ))
    }

    /// `jobs.insert` of a query job under `job_id`; a `409 duplicate` is our own earlier
    /// submission, which `wait` then follows.
    async fn submit_query(&self, job_id: &str, statement: &str) -> Result<(), Error> {
        let t = self.target();
        let mut reference = json!({"projectId": t.project, "jobId": job_id});
        if let Some(loc) = self.jobs.location() {
            reference["location"] = json!(loc);
        }
        let body = json!({
            "jobReference": reference,
            "configuration": {"query": {"query": statement, "useLegacySql": false}},
        });
        let url = format!(
            "{}/bigquery/v2/projects/{}/jobs",
            self.jobs.rest().base,
            segment(&t.project)
        );
        let what = format!("submitting MERGE job {job_id}");
        self.jobs
            .rest()
            .with_retries(&what, || async {
                let req = self.jobs.rest().http.post(&url).json(&body);
                let reply = self.jobs.rest().call(req).await?;
                match reply.status {
                    200..=299 => Ok(()),
                    _ if reply.is_duplicate() => Ok(()),
                    _ => Err(reply.fail()),
                }
            })
            .await
    }

    /// The staged rows' least and greatest value of the partition column, as text.
    async fn bounds(
        &self,
        staging: &Staging,
        column: &str,
    ) -> Result<Option<(String, String)>, Error> {
        let t = self.target();
        let url = format!(
            "{}/bigquery/v2/projects/{}/queries",
            self.jobs.rest().base,
            segment(&t.project)
        );
        let mut body = json!({
            "query": sql::bounds_query(&staging.table, column),
            "useLegacySql": false,
            "timeoutMs": 60_000,
        });
        if let Some(loc) = self.jobs.location() {
            body["location"] = json!(loc);
        }
        let what = format!("reading the partition bounds of {}", staging.table);
        let mut answer: Value = self
            .jobs
            .rest()
            .with_retries(&what, || async {
                let req = self.jobs.rest().http.post(&url).json(&body);
                let reply = self.jobs.rest().call(req).await?;
                match reply.status {
                    200..=299 => reply.json("answer"),
                    _ => Err(reply.fail()),
                }
            })
            .await?;
        // Not done within the timeout: follow the job until it is.
        let mut polls = 0u32;
        while answer["jobComplete"] == json!(false) {
            polls += 1;
            if polls > 600 {
                return Err(sink_error(
                    Class::Transient,
                    format!("{what}: still running"),
                ));
            }
            let job_id = answer["jobReference"]["jobId"].as_str().unwrap_or_default();
            let mut req_url = format!("{url}/{}?timeoutMs=10000", segment(job_id));
            if let Some(loc) = self.jobs.location() {
                req_url.push_str(&format!("&location={}", segment(loc)));
            }
            answer = self
                .jobs
                .rest()
                .with_retries(&what, || async {
                    let req = self.jobs.rest().http.get(&req_url);
                    let reply = self.jobs.rest().call(req).await?;
                    match reply.status {
                        200..=299 => reply.json("answer"),
                        _ => Err(reply.fail()),
                    }
                })
                .await?;
        }
        if let Some(e) = answer["errors"].as_array().and_then(|e| e.first()) {
            return Err(sink_error(Class::Permanent, format!("{what}: {e}")));
        }
        let row = &answer["rows"][0]["f"];
        Ok(match (row[0]["v"].as_str(), row[1]["v"].as_str()) {
            (Some(lo), Some(hi)) => Some((lo.to_string(), hi.to_string())),
            _ => None,
        })
    }
}

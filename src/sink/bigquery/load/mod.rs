//! `--bigquery-mode load`: many objects → one load job, exactly once.
//!
//! The parts, in the order a run meets them:
//! - [`plan`] cuts the listed objects into batches that fit the daily load-job budget;
//! - [`batch`] is load mode's side of the batch contract (`sink::batch`; the driver is
//!   `run::batch`): each batch's objects go into a local NDJSON spool, are staged with the
//!   batch's job ID and loaded; after a crash the spool asks BigQuery whether the staged job
//!   loaded the rows;
//! - [`job_id`](mod@job_id) names the job after the table and the exact set of objects, so
//!   every worker and retry of a batch meets at one job;
//! - [`jobs`] looks jobs up, waits for them and walks the attempts ([`LoadJobs::load`]);
//! - [`schema`] grows a batch's schema from its records (`--schema-evolution add-columns`,
//!   `--create-table auto`): the job carries it;
//! - [`spool`] is the pipeline's sink: rows checked and written to a file per (object, table);
//! - [`route`] picks each record's table (`--sink` with placeholders) and names the jobs of
//!   all of a batch's tables in the ledger;
//! - [`upload`] sends the spool through Google's resumable upload, which creates the job.
//!
//! Requests go through the shared REST client, error classifier and retry policy
//! (`rest`, `api_error`, [`super::retry`]); `--dedup merge` reuses
//! [`LoadJobs`] to load into staging tables and to run its MERGE jobs.

pub mod batch;
pub mod job_id;
pub mod jobs;
pub mod plan;
pub mod route;
pub mod schema;
pub(crate) mod spool;
pub mod upload;

pub use self::job_id::{job_id, ObjectKey};
pub use self::jobs::{JobState, LoadJobOptions, LoadJobs, Loaded, Submitted, MAX_JOB_ATTEMPTS};
pub use self::upload::{CHUNK_GRANULARITY, DEFAULT_CHUNK_BYTES};

#[cfg(test)]
mod tests;

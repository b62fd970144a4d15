//! The run wing: everything that drives objects through the pipeline.
//!
//! - [`setup`] — the plain-data [`Setup`] every entry point fills, validates once and builds
//!   the engine from;
//! - [`shared`] — the engine handle ([`Shared`]): settings, sink, dead letters, ledger,
//!   retries; processes one object;
//! - [`runner`] — the run loop over many objects (bounded concurrency, completion order never
//!   gates work), failures settled into dead letters;
//! - [`progress`] — the feed of jobs (fixed, or listed as the run goes) and the progress display;
//! - [`summary`] — what a run did;
//! - [`retry`] — object-level retries of transient failures;
//! - [`redrive`] — dead letters delivered again (object letters through the run loop, records
//!   letters rebuilt into rows), each removed once delivered.
//!
//! Entry points (the CLI, the Lambda handler, the worker) build a [`Shared`] from a [`Setup`]
//! and hand it objects; sinks never call in here.

pub mod batch;
pub mod progress;
pub mod redrive;
pub mod retry;
pub mod runner;
pub mod setup;
pub mod shared;
pub mod summary;

pub use self::progress::{Feed, Progress};
pub use self::runner::{log_report, run, run_feed, settle_failure};
pub use self::setup::{Entry, Refusal, Setup, SetupError};
pub use self::shared::{Job, Shared};
pub use self::summary::Summary;

//! What a run did, as counted and as printed at its end.

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::pipeline::{Counts, ObjectFailure};

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub objects_ok: u64,
    pub skipped_done: u64,
    pub skipped_busy: u64,
    /// Not started because the run was interrupted, or stopped unfinished (nothing of them
    /// committed) because the output was closed.
    pub not_started: u64,
    /// Ctrl-C was pressed: the run stopped starting objects (set by the caller that watches
    /// for it).
    pub interrupted: bool,
    /// The output's reader went away (`--sink stdout | head`): the run ended early, without
    /// retries or dead letters.
    pub output_closed: bool,
    pub failures: Vec<Box<ObjectFailure>>,
    /// Listing the objects failed part way (a backfill): the objects after it were not run.
    pub listing_failed: Option<Error>,
    pub counts: Counts,
    pub elapsed: Duration,
}

impl Summary {
    pub fn objects(&self) -> u64 {
        self.objects_ok
            + self.skipped_done
            + self.skipped_busy
            + self.not_started
            + self.failures.len() as u64
    }
}

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "objects:  {} ({} ok, {} skipped by the ledger, {} failed",
            self.objects(),
            self.objects_ok,
            self.skipped_done,
            self.failures.len()
        )?;
        if self.skipped_busy > 0 {
            write!(f, ", {} held by other workers", self.skipped_busy)?;
        }
        if self.not_started > 0 {
            write!(f, ", {} not started: interrupted", self.not_started)?;
        } else if self.interrupted {
            write!(f, ", interrupted")?;
        }
        writeln!(f, ")")?;
        write!(f, "records:  {} ({} rows written", c.records, c.rows)?;
        if c.recovered > 0 {
            write!(
                f,
                ", {} rows recovered: committed by an earlier run",
                c.recovered
            )?;
        }
        if c.already_present > 0 {
            write!(
                f,
                ", {} rows already in the table: not added again",
                c.already_present
            )?;
        }
        writeln!(
            f,
            ", {} record errors, {} control messages skipped)",
            c.record_errors, c.control_messages
        )?;
        writeln!(
            f,
            "bytes:    {:.2} MiB in, {:.2} MiB decompressed",
            mib(c.bytes_in),
            mib(c.bytes_out)
        )?;
        write!(
            f,
            "elapsed:  {:.2} s ({:.1} MiB/s decompressed, {:.0} rows/s)",
            secs,
            mib(c.bytes_out) / secs,
            c.rows as f64 / secs
        )
    }
}

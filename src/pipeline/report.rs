//! What processing an object came to: its counts, its report or failure, or why it was skipped
//! (what the run loop sums into a summary and entry points report).

use std::time::Duration;

use serde::Serialize;

use crate::decode::Compression;
use crate::error::Error;
use crate::ledger::Staged;
use crate::object::ObjectRef;
use crate::record::Envelope;

/// Counters for one object (and, summed, for a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Framed records, including the ones that failed.
    pub records: u64,
    pub rows: u64,
    pub record_errors: u64,
    /// CloudWatch Logs control messages skipped.
    pub control_messages: u64,
    /// Bytes read from the source (compressed).
    pub bytes_in: u64,
    /// Bytes after decompression.
    pub bytes_out: u64,
    /// Rows an earlier run staged and this run found committed (or committed itself): in the
    /// sink now, but not written by this run, so not in `rows`.
    pub recovered: u64,
    /// Rows this run delivered that the sink held already and left out (`--dedup merge`):
    /// not in `rows`, which counts rows added.
    pub already_present: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.records += o.records;
        self.rows += o.rows;
        self.record_errors += o.record_errors;
        self.control_messages += o.control_messages;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.recovered += o.recovered;
        self.already_present += o.already_present;
    }
}

/// What happened to one object that was processed.
#[derive(Debug, Clone)]
pub struct ObjectReport {
    pub object: ObjectRef,
    pub counts: Counts,
    pub compression: Vec<Compression>,
    pub framing: Option<&'static str>,
    pub envelope: Option<Envelope>,
    /// Where the object's failed records were dead-lettered, if any were.
    pub dead_letter: Option<String>,
    pub elapsed: Duration,
    /// Finished from what an earlier attempt staged (see [`Counts::recovered`]): its counts,
    /// which the ledger keeps.
    pub recovered: Option<Staged>,
}

/// A failed object: which, and why.
#[derive(Debug)]
pub struct ObjectFailure {
    pub object: ObjectRef,
    pub error: Error,
    /// Tries made, the failed one included.
    pub attempts: u32,
    /// What the failed try read before it failed (records, bytes in and decompressed; no rows:
    /// nothing of a failed object is committed), so a run's summary shows the work it cost.
    pub counts: Counts,
}

/// What happened to an object that did not fail.
#[derive(Debug)]
pub enum Processed {
    Done(ObjectReport),
    /// The ledger says it is done (same ETag), or another worker holds it.
    Skipped {
        object: ObjectRef,
        reason: Skip,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    AlreadyDone,
    Busy(String),
}

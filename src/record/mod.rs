//! Framed bytes → validated records, with envelopes unwrapped.
//!
//! A plain record is checked (UTF-8, well-formed JSON) without building a DOM and passed on as
//! the same bytes. Envelopes turn one framed record into the rows it carries: CloudWatch Logs
//! subscription payloads (one row per log event) and Firehose error-output records (the decoded
//! original record).

pub mod batch;
pub mod cloudwatch;
pub mod envelope;
pub mod firehose_error;
pub mod unwrap;
pub mod validate;

pub use envelope::Envelope;
pub use unwrap::{Emitted, Outcome, Unwrapper};
pub use validate::{validate, Shape};

use std::fmt;

/// Why one record could not become rows. The object goes on; the record follows the
/// `--on-record-error` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordErrorKind {
    InvalidUtf8 {
        at: usize,
    },
    InvalidJson(String),
    Envelope(String),
    /// The envelope is sound but the payload it carries is not a record: a Firehose error
    /// record whose `rawData` is empty or not JSON. That is what error output holds, so it is
    /// the record's own letter and never counts toward `--max-record-error-ratio`.
    Payload(String),
    RowId(String),
    Frame(String),
    // The record breaks the row contract (docs/src/rows.md, "Row contract"): a field that collides with
    // a generated column, a `--map` that would overwrite a field.
    Row(String),
}

impl fmt::Display for RecordErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordErrorKind::InvalidUtf8 { at } => {
                write!(f, "invalid UTF-8 at byte {at} of the record")
            }
            RecordErrorKind::InvalidJson(m) => write!(f, "invalid JSON: {m}"),
            RecordErrorKind::Envelope(m) => f.write_str(m),
            RecordErrorKind::Payload(m) => f.write_str(m),
            RecordErrorKind::RowId(m) => f.write_str(m),
            RecordErrorKind::Frame(m) => f.write_str(m),
            RecordErrorKind::Row(m) => f.write_str(m),
        }
    }
}

/// A record's payload as handed to the row stage.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// One valid JSON value in UTF-8: the record stage validated it (or this crate wrote it:
    /// a log event's row, a `--map` result). Rows built from it rely on that
    /// (`row::Row::json_valid`).
    pub json: &'a [u8],
    pub shape: Shape,
    /// Position below the framed record for envelopes that expand one record into several rows
    /// (log event index; sub-record index inside a Firehose error record). Empty for plain
    /// records. Part of the row ID, so it must be stable.
    pub sub: &'a [u32],
    /// What the validating pass found (see [`crate::json::KeyCheck`]): with `keys_clean` (no
    /// duplicate key, no key named like a generated column) the row stage skips its key scan;
    /// with `plain_values` (every number within ±f64::MAX, no surrogate escape) a BigQuery sink
    /// skips its storability look. Nothing known by default.
    pub verdicts: crate::json::Verdicts,
}

//! How objects are decoded and turned into rows (`Settings`, the record policy): plain data the
//! entry points build, the pipeline follows, and sinks read (generated columns) — apart from
//! the pipeline so that sinks need not import it.

use std::str::FromStr;

use crate::decode::CompressionChoice;
use crate::frame::Framing;
use crate::record::Envelope;
use crate::row::RowIdSource;

/// `--on-record-error`: what happens to a record that cannot become a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordPolicy {
    /// Count it, log it, go on.
    Skip,
    /// Keep it (raw bytes, position, error) in the dead-letter destination, go on.
    #[default]
    DeadLetter,
    /// Fail the whole object: nothing of it is written.
    Fail,
}

impl FromStr for RecordPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(RecordPolicy::Skip),
            "dead-letter" => Ok(RecordPolicy::DeadLetter),
            "fail" => Ok(RecordPolicy::Fail),
            other => Err(format!(
                "unknown record error policy `{other}` (expected skip, dead-letter or fail)"
            )),
        }
    }
}

/// How objects are decoded and turned into rows.
#[derive(Debug, Clone)]
pub struct Settings {
    pub compression: CompressionChoice,
    pub framing: Framing,
    pub envelope: Envelope,
    pub max_record_bytes: usize,
    pub max_decompressed_bytes: u64,
    pub on_record_error: RecordPolicy,
    pub row_id: RowIdSource,
    /// Column that carries the row ID in each row; `None` leaves it out (the ID is still used
    /// by sinks that dedup, e.g. as BigQuery's insertId).
    pub row_id_column: Option<String>,
    /// `--metadata-columns`.
    pub metadata: crate::row::Metadata,
    /// `--payload-column`: each record goes whole into this (JSON) column.
    pub payload_column: Option<String>,
    /// `--map`: field renames, drops and JSON columns applied to every record.
    pub mapping: Option<crate::row::map::Mapping>,
    /// `--max-record-error-ratio`: an object fails (nothing of it committed) when at least this
    /// share of its records was refused; 1.0: only an object whose every record was refused.
    /// `None` (the library default): the record policy alone decides.
    pub max_record_error_ratio: Option<f64>,
}

/// `--max-record-error-ratio`'s default (the CLI's and the Lambda's; the library's `Settings`
/// leaves it to the record policy).
pub const DEFAULT_MAX_RECORD_ERROR_RATIO: f64 = 0.9;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            compression: CompressionChoice::Auto,
            framing: Framing::Auto,
            envelope: Envelope::Auto,
            max_record_bytes: 10 * 1024 * 1024,
            max_decompressed_bytes: 4 * 1024 * 1024 * 1024,
            on_record_error: RecordPolicy::DeadLetter,
            row_id: RowIdSource::Position,
            row_id_column: Some("_row_id".into()),
            metadata: crate::row::Metadata::default(),
            payload_column: None,
            mapping: None,
            max_record_error_ratio: None,
        }
    }
}

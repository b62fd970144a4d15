//! One error taxonomy for every stage.
//!
//! Every failure says *where* it happened (the stage and, when known, the byte offset or record
//! ordinal) and *what to do about it* (its class): transient failures are worth retrying, permanent
//! ones are not and go to the dead-letter destination. Callers decide from `class()` alone; they
//! never need to match on messages.

use std::fmt;

use serde::Serialize;

/// The pipeline stage an error comes from. Named as in the data flow:
/// fetch → decompress → frame → parse → sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Fetch,
    Decompress,
    Frame,
    Parse,
    Sink,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Fetch => "fetch",
            Stage::Decompress => "decompress",
            Stage::Frame => "frame",
            Stage::Parse => "parse",
            Stage::Sink => "sink",
        })
    }
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Throttling, timeouts, resets, 5xx: the same request may succeed later.
    Transient,
    /// Corrupt data, missing objects, denied access, rejected schema: retrying cannot help.
    Permanent,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Transient => "transient",
            Class::Permanent => "permanent",
        })
    }
}

/// What went wrong, typed. The `Display` text is meant for the person reading the log.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error("object not found")]
    NotFound,
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt {format} data: {detail}")]
    Corrupt {
        format: &'static str,
        detail: String,
    },
    #[error("{format} data ends early (truncated object?)")]
    Truncated { format: &'static str },
    #[error(
        "decompressed size exceeds the cap of {cap} bytes (decompression bomb?); \
         raise --max-decompressed-bytes if the object is genuine"
    )]
    DecompressedTooLarge { cap: u64 },
    /// The decompressed object is plainly not records (a Parquet file, binary data).
    #[error("not JSON records: the object is {0}")]
    NotRecords(String),
    #[error("record {ordinal} failed and --on-record-error is `fail`: {error}")]
    RecordFailed { ordinal: u64, error: String },
    #[error("{0}")]
    Remote(String),
    #[error("{0}")]
    Sink(String),
    #[error("dead-letter destination failed: {0}")]
    DeadLetter(String),
    /// A dead letter being redriven could not be read, or still holds records that fail: the
    /// destination did not fail.
    #[error("{0}")]
    Redrive(String),
    #[error("{refused} of the object's {records} records were refused (--max-record-error-ratio {ratio}); nothing of it was committed")]
    TooManyRecordErrors {
        refused: u64,
        records: u64,
        ratio: f64,
    },
    #[error("the time budget ran out before the object was finished; nothing of it was committed")]
    DeadlineExceeded,
    /// The worker is shutting down and its grace ran out: another worker takes the object up.
    /// Transient, but never retried in this process.
    #[error("the worker is shutting down; nothing of the object was committed")]
    Interrupted,
    /// The reader of the output went away (`--sink stdout | head`: a broken pipe). Not the
    /// object's fault and not worth retrying: the run ends, nothing is dead-lettered.
    #[error("the output was closed (broken pipe)")]
    OutputClosed,
    /// The ledger claim on the object lapsed and another worker took it over (see
    /// `Ledger::renew`): this worker committed nothing of it and left it to that worker.
    #[error("lost the ledger claim on {object} to {holder} (it lapsed: this worker was stopped or cut off for longer than --claim-ttl-secs); nothing of it was committed by this worker")]
    ClaimLost { object: String, holder: String },
}

/// A failure of one object, with enough context to act on it.
#[derive(Debug)]
pub struct Error {
    pub stage: Stage,
    pub class: Class,
    /// Byte offset the error applies to: in the compressed stream for fetch/decompress errors,
    /// in the decompressed stream for frame/parse errors.
    pub byte_offset: Option<u64>,
    /// Record ordinal (0-based, in the object) the error applies to.
    pub ordinal: Option<u64>,
    pub cause: Cause,
}

impl Error {
    pub fn new(stage: Stage, class: Class, cause: Cause) -> Self {
        Error {
            stage,
            class,
            byte_offset: None,
            ordinal: None,
            cause,
        }
    }

    pub fn permanent(stage: Stage, cause: Cause) -> Self {
        Self::new(stage, Class::Permanent, cause)
    }

    pub fn at_byte(mut self, offset: u64) -> Self {
        self.byte_offset = Some(offset);
        self
    }

    pub fn at_record(mut self, ordinal: u64) -> Self {
        self.ordinal = Some(ordinal);
        self
    }

    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }

    /// The output's reader went away ([`Cause::OutputClosed`]): the run stops, quietly.
    pub fn is_output_closed(&self) -> bool {
        matches!(self.cause, Cause::OutputClosed)
    }

    /// Writing rows failed because nobody reads the output any more.
    pub fn output_closed() -> Self {
        Self::permanent(Stage::Sink, Cause::OutputClosed)
    }

    /// Classifies an I/O error from reading a source: missing files and denied access cannot be
    /// fixed by retrying; everything else (interrupted reads, resets, timeouts) might be.
    pub fn from_io(stage: Stage, err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::NotFound => Self::permanent(stage, Cause::NotFound),
            ErrorKind::PermissionDenied => {
                Self::permanent(stage, Cause::AccessDenied(err.to_string()))
            }
            // A name or path the file system cannot hold (`File name too long`), or a file where
            // a directory must be (and the reverse): trying again cannot help.
            ErrorKind::InvalidData
            | ErrorKind::UnexpectedEof
            | ErrorKind::InvalidInput
            | ErrorKind::InvalidFilename
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory => Self::permanent(stage, Cause::Io(err)),
            _ => Self::new(stage, Class::Transient, Cause::Io(err)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.stage)?;
        match (self.ordinal, self.byte_offset) {
            (Some(o), Some(b)) => write!(f, " at record {o} (byte {b})")?,
            (Some(o), None) => write!(f, " at record {o}")?,
            (None, Some(b)) => write!(f, " at byte {b}")?,
            (None, None) => {}
        }
        write!(f, ": {} [{}]", self.cause, self.class)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// An error and its sources on one line: the top-level message of SDK and HTTP client errors
/// alone is vague ("dispatch failure", "error sending request").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

//! `firehose-replay redrive URI`: read dead letters back and deliver what they hold.
//!
//! An object letter names an object that failed as a whole: it is processed again from its
//! source, through the normal pipeline and ledger. A records letter holds the raw bytes of the
//! records (or refused rows) of one object: they are turned into rows again — with the row IDs
//! they would have had, so nothing is double-counted — and written to the sink. A letter is
//! removed only once everything in it was delivered; records that still fail stay in a letter
//! that replaces it.

pub mod body;
mod letter;
mod records;
mod source;

pub use body::{Body, RecordCount};
pub use letter::{Document, Letter, LetterObject, LetterRecord, Location};
pub use records::{redrive_records, RecordsOutcome};
pub use source::Source;

use std::path::Path;

use crate::error::{Cause, Class, Error, Stage};

/// `dir:PATH` or a bare path.
pub fn dir_of(spec: &str) -> Option<&Path> {
    let d = spec.strip_prefix("dir:").unwrap_or(spec);
    (!d.is_empty() && !d.contains("://") && !d.starts_with("sqs:")).then(|| Path::new(d))
}

/// A letter that cannot be read or delivered now (transient: the letter stays).
fn redrive_error(msg: impl std::fmt::Display) -> Error {
    Error::new(
        Stage::Fetch,
        Class::Transient,
        Cause::Redrive(msg.to_string()),
    )
}

//! Settling an object's bad records: the record policy, the log of them, and the error ratio
//! that fails an object whose records are mostly refused.

use super::{Counts, RecordPolicy, Settings};
use crate::dead_letter::{Failure, Raw, RecordLetter};
use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;
use crate::record::batch::Item;

/// `--max-record-error-ratio`: fails an object when at least that share of what could have become
/// rows was refused: refused / (rows + refused), so a CloudWatch Logs record of many events with
/// one bad event counts per event. An object with nothing refused always passes.
///
/// `exempt` refused records are left out of both sides: Firehose error records whose `rawData`
/// is empty or not JSON. Error output holds what failed by definition, so replaying it
/// (`--include-error-output`) gives each such payload its own record letter instead of failing
/// the object; a broken error record (no `rawData`, not base64) still counts.
pub(super) fn too_many_refused(
    settings: &Settings,
    counts: &Counts,
    exempt: u64,
) -> Result<(), Error> {
    let Some(ratio) = settings.max_record_error_ratio else {
        return Ok(());
    };
    let refused = counts.record_errors.saturating_sub(exempt);
    let records = counts.rows + counts.already_present + refused;
    if refused == 0 {
        return Ok(());
    }
    if (refused as f64) < ratio * records as f64 {
        return Ok(());
    }
    Err(Error::permanent(
        Stage::Parse,
        Cause::TooManyRecordErrors {
            refused,
            records,
            ratio,
        },
    ))
}

/// Bad records of one object logged in full; the rest are one line with their count. An object
/// of millions of bad lines would otherwise log gigabytes (CloudWatch Logs cost and throttling
/// in Lambda); the dead letter holds every one of them.
const LOGGED_BAD_RECORDS: u64 = 5;

/// Applies `--on-record-error` to one failed record.
pub(super) struct RecordSettler<'a, 'o> {
    pub(super) policy: RecordPolicy,
    pub(super) letter: &'a mut RecordLetter,
    pub(super) object: &'a ObjectRef,
    pub(super) log: &'a mut BadRecordLog<'o>,
}

/// Counts an object's bad records for the log.
pub(super) struct BadRecordLog<'a> {
    pub(super) object: &'a ObjectRef,
    pub(super) policy: RecordPolicy,
    /// Bad records settled so far (the first [`LOGGED_BAD_RECORDS`] were logged).
    pub(super) logged: u64,
}

impl Drop for BadRecordLog<'_> {
    /// However the object ends, the bad records not logged one by one are logged as a count.
    fn drop(&mut self) {
        if self.logged > LOGGED_BAD_RECORDS {
            tracing::warn!(
                object = %self.object,
                policy = ?self.policy,
                "{} more bad records not logged one by one{}",
                self.logged - LOGGED_BAD_RECORDS,
                match self.policy {
                    RecordPolicy::DeadLetter => " (the records dead letter holds them all)",
                    _ => "",
                }
            );
        }
    }
}

impl RecordSettler<'_, '_> {
    pub(super) fn settle(
        &mut self,
        item: &Item,
        stage: Stage,
        raw: &[u8],
        error: &str,
    ) -> Result<(), Error> {
        self.settle_at(item.ordinal, item.offset, stage, raw, error)
    }

    pub(super) fn settle_at(
        &mut self,
        ordinal: u64,
        offset: u64,
        stage: Stage,
        raw: &[u8],
        error: &str,
    ) -> Result<(), Error> {
        self.settle_failure(
            &Failure::new(ordinal, offset, stage, error),
            Raw::Bytes(raw),
        )
    }

    pub(super) fn settle_failure(&mut self, f: &Failure<'_>, raw: Raw<'_>) -> Result<(), Error> {
        let (ordinal, offset, stage, error) = (f.ordinal, f.byte_offset, f.stage, f.error);
        match self.policy {
            RecordPolicy::Fail => {
                return Err(Error::permanent(
                    stage,
                    Cause::RecordFailed {
                        ordinal,
                        error: error.to_string(),
                    },
                )
                .at_record(ordinal)
                .at_byte(offset))
            }
            RecordPolicy::DeadLetter => self.letter.add_failure(f, raw)?,
            RecordPolicy::Skip => {}
        }
        self.log.logged += 1;
        if self.log.logged <= LOGGED_BAD_RECORDS {
            tracing::warn!(
                object = %self.object,
                ordinal,
                byte_offset = offset,
                policy = ?self.policy,
                "bad record: {error}"
            );
        }
        Ok(())
    }
}

//! A records letter's records turned into rows again and written to the sink.

use base64::Engine;

use crate::dead_letter::{DeadLetters, Failure, Raw};
use crate::error::{Cause, Error, Stage};
use crate::pipeline::{build_row, row_builder, Settings};
use crate::record::{validate, Emitted, Unwrapper};
use crate::row::{id, ObjectSeed, Row};
use crate::sink::Sink;

use super::*;

/// What redriving a records letter came to.
#[derive(Debug, Default)]
pub struct RecordsOutcome {
    pub delivered: u64,
    /// Of the delivered, those the sink held already and left out (`--dedup merge`).
    pub already_present: u64,
    /// Where the records that still fail were kept (a new letter), if any did.
    pub still_failing: u64,
    pub new_letter: Option<String>,
}

/// Turns a records letter's records into rows again and writes them to `sink`. Blocking.
///
/// Records refused by a sink (`stage: sink`) are complete rows: they are sent as they are, with
/// the ID in their row-ID column. Others go through the pipeline's own row path — envelope,
/// `--map`, row ID from their original position, metadata columns — so each becomes the row the
/// pipeline would have written. A record that fails again keeps its original reason (`error`);
/// the new one is `last_error`, and `attempts` and `first_failed_at` carry over.
pub fn redrive_records(
    doc: &Document,
    settings: &Settings,
    sink: &dyn Sink,
    dead_letters: &DeadLetters,
) -> Result<RecordsOutcome, Error> {
    let object = doc.object_ref();
    let seed = ObjectSeed::new(&object);
    let mut builder = row_builder(settings, &object);
    let mut mapped = Vec::new();
    // A distinct identity for the sink, so a file sink writes these rows beside the object's
    // original output instead of replacing it.
    let mut target = object.clone();
    target.key.push_str(".redriven");
    let mut writer = sink.open(&target)?;
    let mut letter = dead_letters.records(&object);
    letter.carry(doc.first_failed_at.clone(), doc.attempts.saturating_add(1));
    let mut out = RecordsOutcome::default();
    let Some(body) = &doc.body else {
        return Err(redrive_error("the letter's bytes are not at hand"));
    };
    let reader = body
        .reader()
        .map_err(|e| redrive_error(format!("reading the letter: {e}")))?;
    let walked = body::for_each_record(reader, |r: LetterRecord| -> Result<(), Error> {
        let stage = match r.stage.as_deref() {
            Some("sink") => Stage::Sink,
            Some("frame") => Stage::Frame,
            _ => Stage::Parse,
        };
        let mut still = |raw: &[u8], sub: &[u32], why: &str| -> Result<(), Error> {
            let failure = Failure {
                ordinal: r.ordinal,
                byte_offset: r.byte_offset,
                stage,
                error: &r.error,
                last_error: Some(why),
                attempts: r.attempts.unwrap_or(1).saturating_add(1),
                first_failed_at: r
                    .first_failed_at
                    .as_deref()
                    .or(doc.first_failed_at.as_deref()),
                sub,
            };
            letter.add_failure(&failure, Raw::Bytes(raw))
        };
        let raw = match base64::engine::general_purpose::STANDARD.decode(&r.raw) {
            Ok(b) => b,
            Err(e) => {
                still(
                    &[],
                    &r.sub,
                    &format!("unreadable raw bytes in the dead letter: {e}"),
                )?;
                out.still_failing += 1;
                return Ok(());
            }
        };
        if raw.len() > settings.max_record_bytes {
            let why = format!(
                "record of {} bytes exceeds --max-record-bytes ({})",
                raw.len(),
                settings.max_record_bytes
            );
            still(&raw, &r.sub, &why)?;
            out.still_failing += 1;
            return Ok(());
        }
        if stage == Stage::Sink {
            if let Err(e) = validate(&raw) {
                still(&raw, &r.sub, &e.to_string())?;
                out.still_failing += 1;
                return Ok(());
            }
            let column = settings.row_id_column.as_deref().unwrap_or("_row_id");
            let rid = match id::lookup(&raw, &[column.to_string()]) {
                Ok(Some(v)) => id::from_field(v),
                _ => seed.id(r.byte_offset, &r.sub),
            };
            let mut row = Row::whole(&rid, r.ordinal, &raw);
            row.byte_offset = r.byte_offset;
            row.json_valid = true; // validated above
            writer.write_row(&row)?;
            out.delivered += 1;
            return Ok(());
        }
        // Through the envelope, as the pipeline did: a record may carry several rows (log
        // events); only the one that failed is redriven when the letter names it.
        let mut unwrapper = Unwrapper::new(settings.envelope, settings.max_record_bytes);
        let mut delivered = 0u64;
        let mut failed: Vec<(Vec<u32>, String)> = Vec::new();
        let mut emit = |e: Emitted<'_>| -> Result<(), Redrive> {
            match e {
                Emitted::Row(p) => {
                    if !r.sub.is_empty() && p.sub != r.sub.as_slice() {
                        return Ok(());
                    }
                    match build_row(
                        settings,
                        &mut builder,
                        &mut mapped,
                        p,
                        r.ordinal,
                        r.byte_offset,
                    ) {
                        Ok(row) => {
                            writer.write_row(&row).map_err(Redrive::Sink)?;
                            delivered += 1;
                        }
                        Err(why) => failed.push((p.sub.to_vec(), why)),
                    }
                }
                Emitted::Failed { sub, message } => {
                    if r.sub.is_empty() || sub == r.sub.as_slice() {
                        failed.push((sub.to_vec(), message));
                    }
                }
            }
            Ok(())
        };
        match unwrapper.unwrap(&raw, false, &mut emit) {
            Ok(_) => {}
            Err(Redrive::Record(kind)) => failed.push((r.sub.clone(), kind.to_string())),
            Err(Redrive::Sink(e)) => return Err(e),
        }
        out.delivered += delivered;
        for (sub, why) in failed {
            still(&raw, &sub, &why)?;
            out.still_failing += 1;
        }
        Ok(())
    });
    match walked {
        Ok(result) => result?,
        Err(e) => {
            return Err(Error::permanent(
                Stage::Parse,
                Cause::Redrive(format!("the letter's records cannot be read: {e}")),
            ))
        }
    }
    if out.delivered == 0 {
        // Nothing to write: no empty `<key>.redriven.ndjson` (nor an earlier one replaced by
        // nothing); the writer is dropped uncommitted.
        drop(writer);
        out.new_letter = letter.finish()?;
        return Ok(out);
    }
    let committed = writer.commit()?;
    for r in &committed.rejected {
        letter.add(r.ordinal, r.byte_offset, Stage::Sink, &r.row, &r.error)?;
        out.still_failing += 1;
        out.delivered -= 1;
    }
    if let Some(inserted) = committed.inserted {
        out.already_present = out.delivered.saturating_sub(inserted);
    }
    out.new_letter = letter.finish()?;
    Ok(out)
}

/// Why emitting a redriven row stopped.
enum Redrive {
    Record(crate::record::RecordErrorKind),
    Sink(Error),
}

impl From<crate::record::RecordErrorKind> for Redrive {
    fn from(k: crate::record::RecordErrorKind) -> Self {
        Redrive::Record(k)
    }
}

//! One framed record → the payloads it carries, according to the object's envelope.

use super::cloudwatch::{self, Expanded};
use super::envelope::{detect, Envelope};
use super::firehose_error;
use super::validate::{validate, validate_checked, validate_keys, Shape};
use super::{Payload, RecordErrorKind};
use crate::frame::{Event, Framer, Framing};
use crate::json::{KeyCheck, Verdicts};

/// What the unwrapper hands on for one record: a row's payload, or a row below the record
/// (a log event) that cannot be one.
#[derive(Debug)]
pub enum Emitted<'a> {
    Row(Payload<'a>),
    Failed { sub: &'a [u32], message: String },
}

/// What a record turned into, besides the payloads it emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The record's payloads were emitted.
    Payloads,
    /// A CloudWatch Logs control message: nothing to write.
    Control,
}

/// Applies the envelope to each record of one object. `auto` is resolved from the first record
/// that is a valid JSON object and then holds for the rest of the object.
pub struct Unwrapper {
    requested: Envelope,
    resolved: Option<Envelope>,
    max_record_bytes: usize,
    /// Set by [`Unwrapper::check_keys`].
    keys: Option<KeyCheck>,
}

impl Unwrapper {
    pub fn new(envelope: Envelope, max_record_bytes: usize) -> Self {
        Unwrapper {
            requested: envelope,
            resolved: (envelope != Envelope::Auto).then_some(envelope),
            max_record_bytes,
            keys: None,
        }
    }

    /// Checks keys while validating a plain record the framer did not validate (newline and
    /// delimiter framing), as `Framer::check_keys` does for JSON-stream records: a record with
    /// no duplicate key and no top-level key among `reserved` (the generated columns) comes out
    /// `keys_clean`, so the row stage does not walk it a second time.
    pub fn check_keys(&mut self, reserved: &[String]) {
        self.keys = Some(KeyCheck::new(
            reserved
                .iter()
                .map(|r| crate::json::keycheck::name_hash(r.as_bytes()))
                .collect(),
        ));
    }

    /// The envelope in use (`None` until `auto` has seen a valid record).
    pub fn resolved(&self) -> Option<Envelope> {
        self.resolved
    }

    /// `json_checked`: the framer already validated the grammar (UTF-8 is still checked).
    pub fn unwrap<E: From<RecordErrorKind>>(
        &mut self,
        record: &[u8],
        json_checked: bool,
        emit: &mut dyn FnMut(Emitted<'_>) -> Result<(), E>,
    ) -> Result<Outcome, E> {
        self.unwrap_checked(record, json_checked, Verdicts::default(), emit)
    }

    /// [`Unwrapper::unwrap`] for a record whose keys and values the framer also checked
    /// (`frame::Frame::verdicts`); only a plain record keeps those verdicts.
    pub fn unwrap_checked<E: From<RecordErrorKind>>(
        &mut self,
        record: &[u8],
        json_checked: bool,
        framer: Verdicts,
        emit: &mut dyn FnMut(Emitted<'_>) -> Result<(), E>,
    ) -> Result<Outcome, E> {
        let envelope = match self.resolved {
            Some(e) => e,
            None => {
                debug_assert_eq!(self.requested, Envelope::Auto);
                let shape = validate(record)?;
                let e = match shape {
                    Shape::Object { .. } => detect(record),
                    Shape::Other => Envelope::None,
                };
                self.resolved = Some(e);
                e
            }
        };
        match envelope {
            Envelope::None | Envelope::Auto => {
                let (shape, verdicts) = match &mut self.keys {
                    _ if json_checked => (validate_checked(record)?, framer),
                    Some(keys) => (validate_keys(record, keys)?, keys.verdicts()),
                    None => (validate(record)?, Verdicts::default()),
                };
                emit(Emitted::Row(Payload {
                    json: record,
                    shape,
                    sub: &[],
                    verdicts,
                }))?;
                Ok(Outcome::Payloads)
            }
            Envelope::CloudWatchLogs => cloudwatch_rows(record, &[], emit),
            Envelope::FirehoseError => self.error_record(record, emit),
        }
    }

    /// Replays the `rawData` of a Firehose error record: framed like an object, each
    /// sub-record is a plain record or a CloudWatch Logs payload.
    fn error_record<E: From<RecordErrorKind>>(
        &self,
        record: &[u8],
        emit: &mut dyn FnMut(Emitted<'_>) -> Result<(), E>,
    ) -> Result<Outcome, E> {
        let max = self.max_record_bytes;
        let raw = firehose_error::raw_data(record, max).map_err(RecordErrorKind::Envelope)?;
        let mut framer = Framer::new(&raw[..], Framing::Auto, max);
        let mut index = 0u32;
        let mut any = false;
        while let Some(event) = framer
            .next_event()
            .map_err(|e| RecordErrorKind::Payload(format!("rawData: {e}")))?
        {
            let sub = match event {
                Event::Record(f) => f.bytes,
                Event::Error(e) => {
                    return Err(RecordErrorKind::Payload(format!(
                        "rawData sub-record {index}: {}",
                        e.kind
                    ))
                    .into())
                }
            };
            let shape = validate(sub).map_err(|e| {
                RecordErrorKind::Payload(format!("rawData sub-record {index}: {e}"))
            })?;
            if matches!(shape, Shape::Object { .. }) && detect(sub) == Envelope::CloudWatchLogs {
                cloudwatch_rows(sub, &[index], emit)?;
            } else {
                emit(Emitted::Row(Payload {
                    json: sub,
                    shape,
                    sub: &[index],
                    verdicts: Default::default(),
                }))?;
            }
            any = true;
            index += 1;
        }
        if !any {
            // "The record was empty or contained only whitespace": nothing to load.
            return Err(RecordErrorKind::Payload(
                "Firehose error record's rawData is empty (nothing to load)".into(),
            )
            .into());
        }
        Ok(Outcome::Payloads)
    }
}

fn cloudwatch_rows<E: From<RecordErrorKind>>(
    record: &[u8],
    prefix: &[u32],
    emit: &mut dyn FnMut(Emitted<'_>) -> Result<(), E>,
) -> Result<Outcome, E> {
    validate(record)?;
    match cloudwatch::expand(record).map_err(RecordErrorKind::Envelope)? {
        Expanded::Control => Ok(Outcome::Control),
        Expanded::Rows(rows) => {
            let mut sub = prefix.to_vec();
            sub.push(0);
            for (i, row) in rows.into_iter().enumerate() {
                *sub.last_mut().expect("pushed above") = i as u32;
                match row {
                    // One bad log event is its own record error; its neighbours still land.
                    Err(message) => emit(Emitted::Failed { sub: &sub, message })?,
                    Ok(row) => emit(Emitted::Row(Payload {
                        json: &row,
                        shape: Shape::Object { empty: false },
                        sub: &sub,
                        verdicts: Default::default(),
                    }))?,
                }
            }
            Ok(Outcome::Payloads)
        }
    }
}

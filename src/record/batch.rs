//! Framing and record validation on their own thread, handed to the row stage in batches.
//!
//! Per byte, validating JSON costs about twice as much as inflating it, and building and writing
//! rows about as much as inflating. Splitting the work into three threads — decompress (see
//! `decode::pump`), frame + validate (here), rows + sink (the caller) — keeps both cores busy
//! instead of leaving the decompress thread idle most of the time. A batch carries an index of
//! its records and their bytes: in the decompress thread's chunk the framer read them from,
//! passed on whole once the framer is done with it (no copy), or, for payloads that are not
//! bytes of a chunk (an envelope's decoded contents, or when the reader is not chunked), copied
//! into the batch's own buffer. The hand-over costs one channel message per few hundred records
//! and no allocation in steady state (batches and chunks are recycled).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use super::unwrap::{Outcome, Unwrapper};
use super::{Emitted, Envelope, Payload, RecordErrorKind, Shape};
use crate::decode::limit::Counting;
use crate::decode::pump::{Pump, Recycler};
use crate::error::{Error, Stage};
use crate::frame::{Event, Framer, Framing};

/// Flush a batch once its payload bytes reach this size…
const BATCH_BYTES: usize = 512 * 1024;
/// …or it holds this many items.
const BATCH_ITEMS: usize = 2048;
/// A batch is flushed after the record that fills it, so it holds up to that record more.
/// Records longer than this (rare) grow the batch once.
const ROOM_PAST_FULL: usize = 64 * 1024;
/// Batches in flight between the threads: up to 8 MiB of payloads (a batch of records lent
/// from a chunk is one chunk, `pump`'s 512 KiB). Deep enough that the decode threads keep
/// working while the row stage waits before its first row — for a local file's MD5 (its ETag
/// seeds the row IDs), ~13 ms for an 8 MiB object — or for a slow sink; with 1 MiB in flight
/// they stalled within a megabyte (measured: −5% wall time on the 64 MiB bench objects).
const DEPTH: usize = 16;

/// Position of a row below its framed record (see [`Payload::sub`]), stored inline.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubPath {
    len: u8,
    parts: [u32; 2],
}

impl SubPath {
    pub fn from_slice(s: &[u32]) -> SubPath {
        let mut p = SubPath::default();
        for (i, v) in s.iter().take(2).enumerate() {
            p.parts[i] = *v;
            p.len = i as u8 + 1;
        }
        p
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.parts[..self.len as usize]
    }
}

#[derive(Debug, Clone)]
pub enum ItemKind {
    /// A payload to turn into a row; its bytes are `data[start..end]`.
    Payload {
        shape: Shape,
        sub: SubPath,
        /// See [`Payload::verdicts`].
        verdicts: crate::json::Verdicts,
    },
    /// A record that could not become rows; `data[start..end]` holds its raw bytes, or, for
    /// an oversized record, nothing: all of it is in `spooled`.
    Error {
        stage: Stage,
        message: String,
        spooled: Option<crate::frame::Spooled>,
        /// The row below the record that failed (a log event), when not the record itself.
        sub: SubPath,
        /// A sound envelope whose payload is not a record (see `RecordErrorKind::Payload`):
        /// left out of `--max-record-error-ratio`.
        payload: bool,
    },
    /// A record that carries no rows by design (CloudWatch Logs control message).
    Control,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub ordinal: u64,
    /// Offset of the framed record in the decompressed stream.
    pub offset: u64,
    /// The item's bytes are `chunk[start..end]` if `in_chunk`, else `data[start..end]`.
    pub start: usize,
    pub end: usize,
    pub in_chunk: bool,
    pub kind: ItemKind,
}

/// A run of consecutive items and the bytes they refer to.
#[derive(Debug, Default)]
pub struct Batch {
    /// Bytes copied for the items.
    pub data: Vec<u8>,
    /// The framer's buffer the `in_chunk` items were read from (see the module doc).
    pub chunk: Vec<u8>,
    pub items: Vec<Item>,
}

impl Batch {
    pub fn bytes(&self, item: &Item) -> &[u8] {
        if item.in_chunk {
            &self.chunk[item.start..item.end]
        } else {
            &self.data[item.start..item.end]
        }
    }

    /// The payload of a `Payload` item.
    pub fn payload<'a>(&'a self, item: &'a Item) -> Option<Payload<'a>> {
        match &item.kind {
            ItemKind::Payload {
                shape,
                sub,
                verdicts,
            } => Some(Payload {
                json: self.bytes(item),
                shape: *shape,
                sub: sub.as_slice(),
                verdicts: *verdicts,
            }),
            _ => None,
        }
    }

    fn push(&mut self, ordinal: u64, offset: u64, bytes: &[u8], kind: ItemKind) {
        if self.data.capacity() == 0 {
            // Room for a full batch at once, so that filling it never reallocates; only now,
            // as batches of lent records (see the module doc) copy nothing or next to nothing.
            self.data.reserve(BATCH_BYTES + ROOM_PAST_FULL);
        }
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.items.push(Item {
            ordinal,
            offset,
            start,
            end: self.data.len(),
            in_chunk: false,
            kind,
        });
    }

    /// An item whose bytes are `at..at + len` of the framer's buffer, which the batch is to
    /// be given (or a copy of) before it is sent.
    fn lend(&mut self, ordinal: u64, offset: u64, at: usize, len: usize, kind: ItemKind) {
        self.items.push(Item {
            ordinal,
            offset,
            start: at,
            end: at + len,
            in_chunk: true,
            kind,
        });
    }

    /// An empty batch with room for the items of a full one.
    fn with_room() -> Batch {
        Batch {
            items: Vec::with_capacity(BATCH_ITEMS.min(BATCH_BYTES / 256)),
            ..Batch::default()
        }
    }

    fn is_full(&self) -> bool {
        self.data.len() >= BATCH_BYTES || self.items.len() >= BATCH_ITEMS
    }
}

/// How the stream ended well.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub records: u64,
    pub control_messages: u64,
    pub bytes_out: u64,
    pub framing: Option<&'static str>,
    pub envelope: Option<Envelope>,
}

enum Message {
    Batch(Batch),
    Finished(Finished),
    Failed(io::Error),
}

/// The consuming end.
pub struct Records {
    rx: Receiver<Message>,
    recycle: SyncSender<Batch>,
    chunks: Option<Recycler>,
}

/// What the record thread reads.
pub enum Source {
    Reader(Box<dyn Read + Send>),
    /// The decompress thread's chunks, passed on to the row stage instead of copied.
    Chunks(Counting<Pump>),
}

/// What [`Records::next_batch`] yields.
pub enum Next {
    Batch(Batch),
    Finished(Finished),
}

impl Records {
    /// Starts framing and unwrapping `source` on a new thread.
    pub fn spawn(
        source: Source,
        framing: Framing,
        envelope: Envelope,
        max_record_bytes: usize,
        reserved: Vec<String>,
        members: Option<crate::decode::members::Members>,
    ) -> io::Result<Records> {
        let (tx, rx) = sync_channel(DEPTH);
        let (recycle, recycled) = sync_channel::<Batch>(DEPTH + 2);
        let chunks = match &source {
            Source::Chunks(pump) => Some(pump.recycler()),
            Source::Reader(_) => None,
        };
        let give_back = chunks.clone();
        thread::Builder::new()
            .name("records".into())
            .spawn(move || {
                let mut unwrapper = Unwrapper::new(envelope, max_record_bytes);
                unwrapper.check_keys(&reserved);
                let setup = (framing, max_record_bytes, &reserved[..]);
                let message = match source {
                    Source::Reader(r) => {
                        let mut framer = framer(r, setup, members);
                        let out = produce(&mut framer, &mut unwrapper, &tx, &recycled, None);
                        ended(out, &framer, &unwrapper)
                    }
                    Source::Chunks(pump) => {
                        let mut framer = framer(pump, setup, members);
                        framer.take_chunks(Counting::<Pump>::take_chunk, Counting::give_back);
                        let chunks = give_back.as_ref();
                        let out = produce(&mut framer, &mut unwrapper, &tx, &recycled, chunks);
                        ended(out, &framer, &unwrapper)
                    }
                };
                if let Some(message) = message {
                    let _ = tx.send(message);
                }
            })?;
        Ok(Records {
            rx,
            recycle,
            chunks,
        })
    }

    /// The next batch, or the end of the stream. An error is a failure of the object (reading
    /// or decompressing it), already classified.
    pub fn next_batch(&mut self) -> Result<Next, Error> {
        match self.rx.recv() {
            Ok(Message::Batch(b)) => Ok(Next::Batch(b)),
            Ok(Message::Finished(f)) => Ok(Next::Finished(f)),
            Ok(Message::Failed(e)) => Err(crate::decode::into_error(e)),
            Err(_) => Err(crate::decode::into_error(io::Error::other(
                "record thread ended unexpectedly",
            ))),
        }
    }

    /// Hands a consumed batch back for reuse, and its chunk to the decompress thread.
    pub fn recycle(&self, mut batch: Batch) {
        let chunk = std::mem::take(&mut batch.chunk);
        if let Some(chunks) = &self.chunks {
            chunks.recycle(chunk);
        }
        batch.data.clear();
        batch.items.clear();
        let _ = self.recycle.try_send(batch);
    }
}

/// The framer of the record thread.
fn framer<R: Read>(
    reader: R,
    (framing, max_record_bytes, reserved): (Framing, usize, &[String]),
    members: Option<crate::decode::members::Members>,
) -> Framer<R> {
    let mut framer = Framer::new(reader, framing, max_record_bytes);
    framer.check_keys(reserved);
    if let Some(m) = members {
        framer.member_boundaries(m);
    }
    framer
}

/// The last message of a record thread whose [`produce`] returned `out`; `None` if the
/// consumer went away.
fn ended<R: Read>(
    out: io::Result<Option<(u64, u64)>>,
    framer: &Framer<R>,
    unwrapper: &Unwrapper,
) -> Option<Message> {
    Some(match out {
        Ok(Some((records, control_messages))) => Message::Finished(Finished {
            records,
            control_messages,
            bytes_out: framer.offset(),
            framing: framer.resolved().map(|r| r.name()),
            envelope: unwrapper.resolved(),
        }),
        Ok(None) => return None,
        Err(e) => Message::Failed(e),
    })
}

/// Where in the framer's buffer `bytes` are, if they are a part of the record `frame` framed
/// there (an envelope's decoded payload is not).
fn position_in(frame_bytes: &[u8], at: usize, bytes: &[u8]) -> Option<usize> {
    let from = (bytes.as_ptr() as usize).checked_sub(frame_bytes.as_ptr() as usize)?;
    (from + bytes.len() <= frame_bytes.len()).then_some(at + from)
}

/// Gives the items lent from the framer's buffer a copy of their bytes: the batch must go
/// before the framer lets go of the buffer (see [`Batch::lend`]).
fn copy_lent(batch: &mut Batch, buffer: &[u8]) {
    let lent = batch.items.iter().filter(|i| i.in_chunk);
    let (Some(lo), Some(hi)) = (
        lent.clone().map(|i| i.start).min(),
        lent.map(|i| i.end).max(),
    ) else {
        return;
    };
    batch.chunk.clear();
    batch.chunk.extend_from_slice(&buffer[lo..hi]);
    for item in batch.items.iter_mut().filter(|i| i.in_chunk) {
        item.start -= lo;
        item.end -= lo;
    }
}

/// Frames and unwraps until the end; `Ok(None)` if the consumer hung up. With `chunks`, the
/// framer reads whole chunks (see [`Framer::take_chunks`]) and payloads that are bytes of them
/// are lent, not copied: a batch holding such items goes out with the buffer they are in when
/// the framer lets go of it.
fn produce<R: Read>(
    framer: &mut Framer<R>,
    unwrapper: &mut Unwrapper,
    tx: &SyncSender<Message>,
    recycled: &Receiver<Batch>,
    chunks: Option<&Recycler>,
) -> io::Result<Option<(u64, u64)>> {
    let fresh = || recycled.try_recv().unwrap_or_else(|_| Batch::with_room());
    let send = |batch| tx.send(Message::Batch(batch)).is_ok();
    let mut batch = fresh();
    // Whether `batch` holds items lent from the framer's current buffer.
    let mut lent = false;
    let (mut records, mut controls) = (0u64, 0u64);
    loop {
        let step = framer.next_event_retiring()?;
        // Records lent before this call are all in the chunk let go of, if any.
        if let Some(buffer) = step.retired {
            if std::mem::take(&mut lent) {
                batch.chunk = buffer;
                if !send(std::mem::replace(&mut batch, fresh())) {
                    return Ok(None);
                }
            } else if let Some(chunks) = chunks {
                chunks.recycle(buffer);
            }
        }
        let Some(event) = step.event else { break };
        let lending = chunks.is_some() && step.in_chunk;
        records += 1;
        match event {
            Event::Record(frame) => {
                let (ordinal, offset) = (frame.ordinal, frame.offset);
                let record = frame.bytes;
                let mut emit = |e: Emitted<'_>| -> Result<(), RecordErrorKind> {
                    match e {
                        Emitted::Row(p) => {
                            let kind = ItemKind::Payload {
                                shape: p.shape,
                                sub: SubPath::from_slice(p.sub),
                                verdicts: p.verdicts,
                            };
                            match position_in(record, frame.at, p.json) {
                                Some(at) if lending => {
                                    lent = true;
                                    batch.lend(ordinal, offset, at, p.json.len(), kind)
                                }
                                _ => batch.push(ordinal, offset, p.json, kind),
                            }
                        }
                        // The whole record is kept, so a redrive can rebuild the row with its
                        // envelope's columns; `sub` says which row it is.
                        Emitted::Failed { sub, message } => batch.push(
                            ordinal,
                            offset,
                            record,
                            ItemKind::Error {
                                stage: Stage::Parse,
                                message,
                                spooled: None,
                                sub: SubPath::from_slice(sub),
                                payload: false,
                            },
                        ),
                    }
                    Ok(())
                };
                match unwrapper.unwrap_checked(
                    frame.bytes,
                    frame.json_checked,
                    frame.verdicts,
                    &mut emit,
                ) {
                    Ok(Outcome::Payloads) => {}
                    Ok(Outcome::Control) => {
                        controls += 1;
                        batch.push(ordinal, offset, &[], ItemKind::Control);
                    }
                    Err(kind) => batch.push(
                        ordinal,
                        offset,
                        frame.bytes,
                        ItemKind::Error {
                            stage: Stage::Parse,
                            message: kind.to_string(),
                            spooled: None,
                            sub: SubPath::default(),
                            payload: matches!(kind, RecordErrorKind::Payload(_)),
                        },
                    ),
                }
            }
            Event::Error(e) => batch.push(
                e.ordinal,
                e.offset,
                &[],
                ItemKind::Error {
                    stage: Stage::Frame,
                    message: e.kind.to_string(),
                    spooled: Some(e.raw),
                    sub: SubPath::default(),
                    payload: false,
                },
            ),
        }
        // A batch lending from the buffer fills up with it, unless its records are tiny.
        if batch.is_full() {
            if std::mem::take(&mut lent) {
                copy_lent(&mut batch, framer.buffer());
            }
            if !send(std::mem::replace(&mut batch, fresh())) {
                return Ok(None);
            }
        }
    }
    if std::mem::take(&mut lent) {
        copy_lent(&mut batch, framer.buffer());
    }
    if !batch.items.is_empty() && !send(batch) {
        return Ok(None);
    }
    Ok(Some((records, controls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdicts the row stage gets for each record under `framing`.
    fn clean_flags(framing: Framing, input: &str) -> Vec<bool> {
        // The row stage's generated columns (`row::generated_columns`), named here so that
        // `record` does not depend on `row`.
        let reserved: Vec<String> = ["_source_uri", "_record_ordinal", "_ingested_at", "_row_id"]
            .map(String::from)
            .to_vec();
        let reader = Box::new(io::Cursor::new(input.as_bytes().to_vec()));
        let mut records = Records::spawn(
            Source::Reader(reader),
            framing,
            Envelope::None,
            1 << 20,
            reserved,
            None,
        )
        .unwrap();
        let mut flags = Vec::new();
        loop {
            match records.next_batch().unwrap() {
                Next::Batch(b) => {
                    for item in &b.items {
                        flags.push(b.payload(item).expect("a payload").verdicts.keys_clean);
                    }
                }
                Next::Finished(_) => return flags,
            }
        }
    }

    /// Newline-framed records are validated by the record stage, not the framer: the key check
    /// must ride along there too, or every record is walked a second time by the row stage's
    /// key scan (the regression of issue 26). Records with a duplicate, a generated column's
    /// name at the top or an escaped key must still go to that scan.
    #[test]
    fn newline_records_are_key_checked_in_the_validating_pass() {
        let input = concat!(
            "{\"a\":1,\"b\":{\"a\":2},\"c\":[{\"k\":1},{\"k\":1}]}\n",
            "{\"a\":1,\"a\":2}\n",
            "{\"_row_id\":\"mine\"}\n",
            "{\"x\":{\"_row_id\":1}}\n",
            "{\"\\u0061\":1}\n",
            "[1,2]\n",
        );
        let expected = vec![true, false, false, true, false, true];
        assert_eq!(clean_flags(Framing::Newline, input), expected);
        assert_eq!(clean_flags(Framing::Concatenated, input), expected);
    }
}

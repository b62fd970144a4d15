//! Decompressed bytes → records.
//!
//! A framer hands out each record as a slice of its own buffer (no per-record allocation) with
//! its byte offset in the decompressed stream and its ordinal in the object. `auto` frames a
//! stream of JSON values (see [`stream`]): one rule for NDJSON, concatenated and mixed objects.
//! Bytes that are not a value are handed on as a record for the record stage to refuse, and the
//! framer resynchronises after them. A record over `max_record_bytes` becomes a record-level
//! error, kept whole on disk for its dead letter, and framing goes on after it. A UTF-8 BOM at
//! the start of the stream is skipped.

mod delimited;
mod input;
mod resync;
pub mod scan;
pub mod spool;
mod stream;

use std::io::{self, Read};
use std::str::FromStr;

use delimited::Delimited;
use input::Input;
pub use input::{GiveChunk, TakeChunk};
pub use spool::Spooled;
use stream::Stream;

/// `--framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// A stream of JSON values separated by any whitespace or none; non-JSON text is
    /// line-framed.
    #[default]
    Auto,
    /// One record per line; CRLF tolerated, blank lines skipped.
    Newline,
    /// JSON values back to back, with or without whitespace between them (Firehose's default
    /// when producers add no delimiter). The same framer as `auto`.
    Concatenated,
    /// Records separated by one byte.
    Delimiter(u8),
}

impl FromStr for Framing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => return Ok(Framing::Auto),
            "newline" => return Ok(Framing::Newline),
            "concatenated" => return Ok(Framing::Concatenated),
            _ => {}
        }
        let spec = s.strip_prefix("delimiter:").ok_or_else(|| {
            format!(
                "unknown framing `{s}` (expected auto, newline, concatenated or delimiter:<byte>)"
            )
        })?;
        parse_byte(spec).map(Framing::Delimiter).ok_or_else(|| {
            format!(
                "`{spec}` is not one byte: use a character or an escape like \\n, \\t, \\0, \\x1e"
            )
        })
    }
}

/// One byte, given as itself or as an escape (`\n`, `\r`, `\t`, `\0`, `\\`, `\xNN`).
fn parse_byte(spec: &str) -> Option<u8> {
    match spec.as_bytes() {
        [b] => Some(*b),
        [b'\\', b'n'] => Some(b'\n'),
        [b'\\', b'r'] => Some(b'\r'),
        [b'\\', b't'] => Some(b'\t'),
        [b'\\', b'0'] => Some(0),
        [b'\\', b'\\'] => Some(b'\\'),
        [b'\\', b'x', h @ ..] if h.len() == 2 => {
            u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        }
        _ => None,
    }
}

/// The framing an object actually used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Delimited {
        delimiter: u8,
    },
    /// A stream of JSON values (`auto` and `concatenated`).
    Json,
}

impl Resolved {
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Delimited { delimiter: b'\n' } => "newline",
            Resolved::Delimited { .. } => "delimiter",
            Resolved::Json => "json",
        }
    }
}

/// A record: its bytes, and where it was found.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub bytes: &'a [u8],
    /// Where `bytes` start in the framer's buffer ([`Framer::buffer`]).
    pub at: usize,
    /// Offset of the record's first (non-blank) byte in the decompressed stream: the record's
    /// identity, the same under every framing that reads it.
    pub offset: u64,
    /// 0-based position among the object's records and record errors.
    pub ordinal: u64,
    /// The framer already checked the JSON grammar of these bytes, so the record stage need
    /// not do it again.
    pub json_checked: bool,
    /// What the framer's key check also found (see [`Framer::check_keys`]): no duplicate key
    /// and no top-level key named like a generated column, so the row stage need not scan the
    /// keys; every value plain. Nothing known when the framer did not check the grammar.
    pub verdicts: crate::json::Verdicts,
}

/// Why a stretch of bytes could not become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameErrorKind {
    TooLarge { len: u64, max: usize },
}

impl std::fmt::Display for FrameErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameErrorKind::TooLarge { len, max } => write!(
                f,
                "record of {len} bytes exceeds --max-record-bytes ({max}); kept whole in the dead letter"
            ),
        }
    }
}

/// A record-level framing failure; the framer carries on after it.
#[derive(Debug, Clone)]
pub struct FrameError {
    pub offset: u64,
    pub ordinal: u64,
    pub kind: FrameErrorKind,
    /// All of the failed record's bytes (spooled to disk: it is larger than a record may be).
    pub raw: Spooled,
}

pub enum Event<'a> {
    Record(Frame<'a>),
    Error(FrameError),
}

/// An event over chunks ([`Framer::next_event_retiring`]).
pub struct Retiring<'a> {
    pub event: Option<Event<'a>>,
    /// The chunk let go of while finding the event, if any: every record framed from a chunk
    /// before this call is in it, else still in [`Framer::buffer`], where it was framed.
    /// Chunks let go of after it held no record and went back through `give`.
    pub retired: Option<Vec<u8>>,
    /// The event's record is in a chunk (not in the framer's own buffer, where a record longer
    /// than a chunk's free space is read, and which is reused).
    pub in_chunk: bool,
}

/// What a framing step produced, before it is borrowed from the buffer.
pub(crate) enum Step {
    /// `input.buf[at..at + len]`.
    Record {
        at: usize,
        len: usize,
        offset: u64,
        checked: bool,
    },
    Error {
        offset: u64,
        kind: FrameErrorKind,
        raw: Spooled,
    },
    Failed(io::Error),
    End,
}

enum Mode {
    Delimited(u8, Delimited),
    Json(Stream),
}

pub struct Framer<R> {
    input: Input<R>,
    mode: Mode,
    max: usize,
    ordinal: u64,
    started: bool,
}

impl<R: Read> Framer<R> {
    pub fn new(inner: R, framing: Framing, max_record_bytes: usize) -> Self {
        let mode = match framing {
            Framing::Auto | Framing::Concatenated => Mode::Json(Stream::default()),
            Framing::Newline => Mode::Delimited(b'\n', Delimited::default()),
            Framing::Delimiter(d) => Mode::Delimited(d, Delimited::default()),
        };
        let max = max_record_bytes.max(1);
        Framer {
            input: Input::new(inner, max),
            mode,
            max,
            ordinal: 0,
            started: false,
        }
    }

    /// Makes the JSON-stream framer check keys while it validates: a record with no duplicate
    /// key and no top-level key among `reserved` (the generated columns) is marked
    /// `keys_clean`. No effect on delimited framing.
    pub fn check_keys(&mut self, reserved: &[String]) {
        if let Mode::Json(stream) = &mut self.mode {
            stream.keys = Some(crate::json::KeyCheck::new(
                reserved
                    .iter()
                    .map(|r| crate::json::keycheck::name_hash(r.as_bytes()))
                    .collect(),
            ));
        }
    }

    /// Gives the JSON-stream framer the gzip member boundaries of its input: a bad span never
    /// runs past one (CloudWatch Logs delivers one record per member, with no line break). No
    /// effect on delimited framing, which has its own delimiter.
    pub fn member_boundaries(&mut self, members: crate::decode::members::Members) {
        if let Mode::Json(stream) = &mut self.mode {
            stream.members = Some((members, 0));
        }
    }

    /// The framing in use.
    pub fn resolved(&self) -> Option<Resolved> {
        Some(match self.mode {
            Mode::Delimited(d, _) => Resolved::Delimited { delimiter: d },
            Mode::Json(_) => Resolved::Json,
        })
    }

    /// Decompressed bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.input.offset()
    }

    pub fn into_inner(self) -> R {
        self.input.into_inner()
    }

    /// Reads whole chunks with `take` from now on, never moving bytes it has read: the buffers
    /// it lets go of come with the events of [`Framer::next_event_retiring`].
    pub fn take_chunks(&mut self, take: TakeChunk<R>, give: GiveChunk<R>) {
        self.input.take_chunks(take, give);
    }

    /// The buffer records are framed in now ([`Frame::at`] is a position in it).
    pub fn buffer(&self) -> &[u8] {
        &self.input.buf
    }

    /// The next record or record-level error; `None` at the end of the object.
    pub fn next_event(&mut self) -> io::Result<Option<Event<'_>>> {
        let step = self.step()?;
        self.event(step)
    }

    /// [`Framer::next_event`], and what became of the chunks (see [`Framer::take_chunks`]).
    pub fn next_event_retiring(&mut self) -> io::Result<Retiring<'_>> {
        let step = self.step()?;
        let retired = self.input.retired.take();
        let in_chunk = self.input.in_chunk;
        Ok(Retiring {
            event: self.event(step)?,
            retired,
            in_chunk,
        })
    }

    /// Frames the next stretch of the input. Inlined into both callers: it runs per record.
    #[inline(always)]
    fn step(&mut self) -> io::Result<Step> {
        if !self.started {
            self.started = true;
            self.input.skip_bom()?;
        }
        match &mut self.mode {
            Mode::Delimited(d, state) => state.next(&mut self.input, *d, self.max),
            Mode::Json(state) => state.next(&mut self.input, self.max),
        }
    }

    #[inline(always)]
    fn event(&mut self, step: Step) -> io::Result<Option<Event<'_>>> {
        let ordinal = self.ordinal;
        match step {
            Step::End => Ok(None),
            Step::Failed(e) => Err(e),
            Step::Record {
                at,
                len,
                offset,
                checked,
            } => {
                self.ordinal += 1;
                let verdicts = match &self.mode {
                    Mode::Json(s) if checked => s.verdicts,
                    _ => crate::json::Verdicts::default(),
                };
                Ok(Some(Event::Record(Frame {
                    bytes: &self.input.buf[at..at + len],
                    at,
                    offset,
                    ordinal,
                    json_checked: checked,
                    verdicts,
                })))
            }
            Step::Error { offset, kind, raw } => {
                self.ordinal += 1;
                Ok(Some(Event::Error(FrameError {
                    offset,
                    ordinal,
                    kind,
                    raw,
                })))
            }
        }
    }
}

#[cfg(test)]
mod tests;

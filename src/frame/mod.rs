//! Decompressed bytes → records.
//!
//! A framer hands out each record as a slice of its own buffer (no per-record allocation) with
//! its byte offset in the decompressed stream and its ordinal in the object. A record over
//! `max_record_bytes` becomes a record-level error and the framer skips to the next record
//! instead of giving up on the object; so does an unfinished value at the end of the stream.

pub mod scan;

use std::io::{self, Read};
use std::str::FromStr;

use crate::record::json;
use scan::{is_space, Scanner};

/// `--framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Decide per object from its first bytes.
    #[default]
    Auto,
    /// One record per line; CRLF tolerated, blank lines skipped.
    Newline,
    /// JSON values back to back, with or without whitespace between them (Firehose's default
    /// when producers add no delimiter).
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

/// The framing an object actually used (after `auto` decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Delimited { delimiter: u8, trim_cr: bool },
    Concatenated,
}

impl Resolved {
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Delimited {
                delimiter: b'\n', ..
            } => "newline",
            Resolved::Delimited { .. } => "delimiter",
            Resolved::Concatenated => "concatenated",
        }
    }
}

/// A record: its bytes, and where it was found.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub bytes: &'a [u8],
    /// Offset of the record's first byte in the decompressed stream.
    pub offset: u64,
    /// 0-based position among the object's records (blank lines are not records).
    pub ordinal: u64,
    /// The framer already checked the JSON grammar of these bytes (concatenated framing finds
    /// record ends by validating), so the record stage need not do it again.
    pub json_checked: bool,
}

/// Why a stretch of bytes could not become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameErrorKind {
    TooLarge { len: u64, max: usize },
    Unterminated,
}

impl std::fmt::Display for FrameErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameErrorKind::TooLarge { len, max } => write!(
                f,
                "record of {len} bytes exceeds --max-record-bytes ({max}); skipped to the next record"
            ),
            FrameErrorKind::Unterminated => {
                f.write_str("JSON value is not closed before the end of the object (truncated?)")
            }
        }
    }
}

/// A record-level framing failure; the framer carries on after it.
#[derive(Debug, Clone)]
pub struct FrameError {
    pub offset: u64,
    pub ordinal: u64,
    pub kind: FrameErrorKind,
    /// The first bytes of the failed record (at most [`ERROR_HEAD`]), for the dead letter.
    pub head: Vec<u8>,
}

/// How much of a failed oversized record is kept for the dead letter.
pub const ERROR_HEAD: usize = 64 * 1024;

pub enum Event<'a> {
    Record(Frame<'a>),
    Error(FrameError),
}

/// An event decided but not yet borrowed from the buffer (keeps the borrow checker happy in
/// the framing loops).
enum Pending {
    Record {
        from: usize,
        stop: usize,
        ordinal: u64,
    },
    Error(FrameError),
}

/// A record being discarded because it is too large.
struct Skip {
    offset: u64,
    ordinal: u64,
    len: u64,
    head: Vec<u8>,
}

const INITIAL_BUFFER: usize = 1024 * 1024;
const READ_SIZE: usize = 256 * 1024;
/// How far `auto` looks for the end of the first value before settling on `concatenated`.
const AUTO_WINDOW: usize = 1024 * 1024;

pub struct Framer<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed data in `buf`.
    start: usize,
    /// End of valid data in `buf`.
    end: usize,
    /// Position up to which `buf[start..]` was already searched.
    scan: usize,
    eof: bool,
    /// Stream offset of `buf[0]`.
    base: u64,
    requested: Framing,
    mode: Option<Resolved>,
    max: usize,
    ordinal: u64,
    /// Scanner of the value in progress (concatenated framing).
    value: Option<Scanner>,
    skip: Option<Skip>,
}

impl<R: Read> Framer<R> {
    pub fn new(inner: R, framing: Framing, max_record_bytes: usize) -> Self {
        let mode = match framing {
            Framing::Auto => None,
            Framing::Newline => Some(Resolved::Delimited {
                delimiter: b'\n',
                trim_cr: true,
            }),
            Framing::Delimiter(d) => Some(Resolved::Delimited {
                delimiter: d,
                trim_cr: d == b'\n',
            }),
            Framing::Concatenated => Some(Resolved::Concatenated),
        };
        Framer {
            inner,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            scan: 0,
            eof: false,
            base: 0,
            requested: framing,
            mode,
            max: max_record_bytes.max(1),
            ordinal: 0,
            value: None,
            skip: None,
        }
    }

    /// The framing in use; `None` until `auto` has seen enough of the object.
    pub fn resolved(&self) -> Option<Resolved> {
        self.mode
    }

    /// Decompressed bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads more input. Makes room first by moving unconsumed bytes to the front, and grows the
    /// buffer only while a record needs it (bounded by `max`). Returns `false` at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 && (self.end == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.scan -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_SIZE / 4 {
            let grown = (self.buf.len() * 2).min(self.max + 2 * READ_SIZE);
            self.buf.resize(grown.max(self.end + READ_SIZE), 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next record or record-level error; `None` at the end of the object.
    pub fn next_event(&mut self) -> io::Result<Option<Event<'_>>> {
        if self.mode.is_none() {
            self.decide()?;
        }
        match self.mode.expect("decided above") {
            Resolved::Delimited { delimiter, trim_cr } => self.next_delimited(delimiter, trim_cr),
            Resolved::Concatenated => self.next_concatenated(),
        }
    }

    /// `auto`: newline framing when the first value is followed by a line break and contains
    /// none itself; concatenated when another value follows on the same line, or the first
    /// value spans lines (pretty-printed) or is not closed within the look-ahead window.
    fn decide(&mut self) -> io::Result<()> {
        let newline = Resolved::Delimited {
            delimiter: b'\n',
            trim_cr: true,
        };
        debug_assert_eq!(self.requested, Framing::Auto);
        loop {
            let data = &self.buf[self.start..self.end];
            let first = data.iter().position(|&b| !is_space(b));
            let decision = match first {
                None if self.eof => Some(newline),
                None => None,
                Some(i) if !matches!(data[i], b'{' | b'[') => Some(newline),
                Some(i) => {
                    let mut s = Scanner::start(data[i]);
                    match s.advance(&data[i..], 0) {
                        Some(len) => {
                            let value = &data[i..i + len];
                            let after = &data[i + len..];
                            let next = after
                                .iter()
                                .position(|&b| !matches!(b, b' ' | b'\t' | b'\r'));
                            if memchr::memchr(b'\n', value).is_some() {
                                Some(Resolved::Concatenated)
                            } else {
                                match next.map(|p| after[p]) {
                                    Some(b'\n') => Some(newline),
                                    Some(_) => Some(Resolved::Concatenated),
                                    None if self.eof => Some(newline),
                                    None => None,
                                }
                            }
                        }
                        None if self.eof => Some(newline),
                        None if data.len() - i >= AUTO_WINDOW => Some(Resolved::Concatenated),
                        None => None,
                    }
                }
            };
            if let Some(d) = decision {
                self.mode = Some(d);
                return Ok(());
            }
            self.fill()?;
        }
    }

    fn start_skip(&mut self, from: usize) {
        let head_end = (from + ERROR_HEAD).min(self.end);
        self.skip = Some(Skip {
            offset: self.base + from as u64,
            ordinal: self.ordinal,
            len: 0,
            head: self.buf[from..head_end].to_vec(),
        });
        self.ordinal += 1;
    }

    fn finish_skip(&mut self) -> Event<'static> {
        let s = self.skip.take().expect("a skip in progress");
        Event::Error(FrameError {
            offset: s.offset,
            ordinal: s.ordinal,
            kind: FrameErrorKind::TooLarge {
                len: s.len,
                max: self.max,
            },
            head: s.head,
        })
    }

    fn next_delimited(&mut self, delimiter: u8, trim_cr: bool) -> io::Result<Option<Event<'_>>> {
        loop {
            if let Some(p) = memchr::memchr(delimiter, &self.buf[self.scan..self.end]) {
                let stop = self.scan + p;
                let (from, next) = (self.start, stop + 1);
                self.start = next;
                self.scan = next;
                if let Some(skip) = &mut self.skip {
                    skip.len += (stop - from) as u64;
                    return Ok(Some(self.finish_skip()));
                }
                if let Some(p) = self.delimited_record(from, stop, trim_cr) {
                    return Ok(Some(self.emit(p)));
                }
                continue;
            }
            self.scan = self.end;
            if self.end - self.start > self.max {
                if self.skip.is_none() {
                    self.start_skip(self.start);
                }
                let s = self.skip.as_mut().expect("just set");
                s.len += (self.end - self.start) as u64;
                self.start = self.end;
            }
            if !self.fill()? {
                if self.skip.is_some() {
                    return Ok(Some(self.finish_skip()));
                }
                let (from, stop) = (self.start, self.end);
                self.start = stop;
                self.scan = stop;
                if from == stop {
                    return Ok(None);
                }
                return Ok(self
                    .delimited_record(from, stop, trim_cr)
                    .map(|p| self.emit(p)));
            }
        }
    }

    /// The record in `buf[from..stop]`, or `None` if it is blank.
    fn delimited_record(&mut self, from: usize, stop: usize, trim_cr: bool) -> Option<Pending> {
        let mut stop = stop;
        if trim_cr && stop > from && self.buf[stop - 1] == b'\r' {
            stop -= 1;
        }
        let bytes = &self.buf[from..stop];
        if bytes.first().is_none_or(|&b| is_space(b)) && bytes.iter().all(|&b| is_space(b)) {
            return None;
        }
        let ordinal = self.ordinal;
        self.ordinal += 1;
        let offset = self.base + from as u64;
        if bytes.len() > self.max {
            return Some(Pending::Error(FrameError {
                offset,
                ordinal,
                kind: FrameErrorKind::TooLarge {
                    len: bytes.len() as u64,
                    max: self.max,
                },
                head: bytes[..ERROR_HEAD.min(bytes.len())].to_vec(),
            }));
        }
        Some(Pending::Record {
            from,
            stop,
            ordinal,
        })
    }

    fn emit(&self, p: Pending) -> Event<'_> {
        match p {
            Pending::Record {
                from,
                stop,
                ordinal,
            } => Event::Record(Frame {
                bytes: &self.buf[from..stop],
                offset: self.base + from as u64,
                ordinal,
                json_checked: false,
            }),
            Pending::Error(e) => Event::Error(e),
        }
    }

    fn next_concatenated(&mut self) -> io::Result<Option<Event<'_>>> {
        loop {
            if self.value.is_none() && self.skip.is_none() {
                // Between values: skip whitespace to the next value's first byte.
                match self.buf[self.start..self.end]
                    .iter()
                    .position(|&b| !is_space(b))
                {
                    Some(p) => {
                        self.start += p;
                        self.scan = self.start;
                        // Fast path: a complete, valid object or array is framed and validated
                        // in one pass. Anything else (invalid, cut by the buffer's end, a
                        // scalar) goes through the structural scanner, which resynchronises.
                        if let Ok(len) = json::container_end(&self.buf[self.start..self.end]) {
                            if len <= self.max {
                                let from = self.start;
                                self.start += len;
                                self.scan = self.start;
                                let ordinal = self.ordinal;
                                self.ordinal += 1;
                                return Ok(Some(Event::Record(Frame {
                                    bytes: &self.buf[from..from + len],
                                    offset: self.base + from as u64,
                                    ordinal,
                                    json_checked: true,
                                })));
                            }
                        }
                        self.value = Some(Scanner::start(self.buf[self.start]));
                    }
                    None => {
                        self.start = self.end;
                        self.scan = self.end;
                        if !self.fill()? {
                            return Ok(None);
                        }
                        continue;
                    }
                }
            }
            let scanner = self.value.as_mut().expect("a value in progress");
            let done = scanner.advance(&self.buf[self.start..self.end], self.scan - self.start);
            if let Some(len) = done {
                let (from, stop) = (self.start, self.start + len);
                self.value = None;
                self.start = stop;
                self.scan = stop;
                if let Some(skip) = &mut self.skip {
                    skip.len += len as u64;
                    return Ok(Some(self.finish_skip()));
                }
                if len > self.max {
                    self.start_skip(from);
                    self.skip.as_mut().expect("just set").len = len as u64;
                    return Ok(Some(self.finish_skip()));
                }
                return Ok(Some(self.record(from, stop)));
            }
            self.scan = self.end;
            if self.end - self.start > self.max {
                // Too large: keep following the structure, but drop the bytes.
                if self.skip.is_none() {
                    self.start_skip(self.start);
                }
                let s = self.skip.as_mut().expect("just set");
                s.len += (self.end - self.start) as u64;
                self.start = self.end;
                self.scan = self.end;
            }
            if !self.fill()? {
                let scanner = self.value.take().expect("a value in progress");
                let (from, stop) = (self.start, self.end);
                self.start = stop;
                self.scan = stop;
                if let Some(mut skip) = self.skip.take() {
                    skip.len += (stop - from) as u64;
                    self.skip = Some(skip);
                    return Ok(Some(self.finish_skip()));
                }
                if scanner.complete_at_eof() {
                    return Ok(Some(self.record(from, stop)));
                }
                let ordinal = self.ordinal;
                self.ordinal += 1;
                return Ok(Some(Event::Error(FrameError {
                    offset: self.base + from as u64,
                    ordinal,
                    kind: FrameErrorKind::Unterminated,
                    head: self.buf[from..stop.min(from + ERROR_HEAD)].to_vec(),
                })));
            }
        }
    }

    fn record(&mut self, from: usize, stop: usize) -> Event<'_> {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        Event::Record(Frame {
            bytes: &self.buf[from..stop],
            offset: self.base + from as u64,
            ordinal,
            json_checked: false,
        })
    }
}

#[cfg(test)]
mod tests;

//! `auto` (and `concatenated`): a stream of JSON values, separated by any whitespace or none.
//!
//! NDJSON, Firehose's back-to-back `{..}{..}`, any mix of the two and pretty-printed values all
//! frame the same way, because a record is simply one complete JSON value: nothing is decided
//! from the first value and frozen for the object. Each value is validated while it is framed
//! (the record stage does not parse it again).
//!
//! An object never runs past a line that starts with `{` or `[` in column 0: that line is the
//! next record (NDJSON; pretty-printers indent what is inside a value). So a truncated line costs
//! only itself and is found without reading further, and a run of them costs one pass.
//!
//! Bytes that are not a valid value become one record error and the framer resynchronises:
//! - a value that looked like JSON (`{`, `[`) and broke: at the first line break after its start
//!   that is followed by a line starting a record (`{`, `[` or plain text — not a line that
//!   looks like the inside of a pretty-printed value); failing that, at the byte where it broke
//!   if that byte opens a new value (`{"a":1{"b":2}`), or at the next `{` that follows a `}` /
//!   `]` (`{"a":tru}{"b":2}`), or at the next line starting a record;
//! - a value cut inside a string or key, which the next record's first quote closed: at that
//!   record's `{` or `[`, found by looking back into the broken value's strings (see
//!   [`super::resync`]); likewise a stray `"` before a record;
//! - a stray `}`, `]`, `,` or `:` between records: at the next `{` or `[` after it, else at the
//!   next line break;
//! - anything else (plain text, `tru`, `12ab`): at the next line break, so text stays
//!   line-framed.
//!
//! Whatever the rule, a bad span ends at the next gzip member boundary (CloudWatch Logs: one
//! record per member, no line break between them).
//!
//! The error span is handed on as a record (the record stage words the JSON error), or, when it
//! is larger than `--max-record-bytes`, spooled to disk whole. Values larger than
//! `--max-record-bytes` are followed by structure only (see [`super::scan`]) and spooled whole.
//! Memory stays bounded by the largest record, and whitespace costs constant memory and linear
//! time however much of it there is.

use std::io::{self, Read};

use super::input::Input;
use super::resync::{records_to_line_end, restart_at_nested_value, restart_in_strings, Restart};
use super::scan::Scanner;
use super::spool::Held;
use super::Step;
use crate::decode::members::Members;
use crate::json::{self, Scan};

/// Between values: JSON whitespace, plus RFC 7464's record separator (JSON text sequences).
#[inline]
fn separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x1e)
}

/// What may follow a top-level number or literal (serde_json's rule for value ends).
#[inline]
fn ends_scalar(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\n' | b'\t' | b'\r' | 0x1e | b'"' | b'[' | b']' | b'{' | b'}' | b',' | b':'
    )
}

#[inline]
fn opens(b: u8) -> bool {
    matches!(b, b'{' | b'[')
}

/// Whether a line whose first non-blank bytes are `rest` starts a new record after a broken
/// JSON value: it opens a value (`{`, `[`), or it is plain text. Lines that look like the inside
/// of a pretty-printed value (`"key": …`, `}`, `]`, numbers, literals) stay part of the broken
/// value, so nothing inside it becomes a phantom row.
fn starts_record(rest: &[u8]) -> bool {
    match rest.first() {
        None => true,
        Some(&b) if opens(b) => true,
        Some(b'"' | b'}' | b']' | b',' | b':' | b'-' | b'0'..=b'9') => false,
        Some(_) => {
            !(rest.starts_with(b"true") || rest.starts_with(b"false") || rest.starts_with(b"null"))
        }
    }
}

enum State {
    Between,
    /// A value starts at the first unconsumed byte.
    Value,
    /// A value larger than `max`, followed by its structure; consumed bytes are in `held`.
    Oversized {
        scanner: Scanner,
        held: Held,
    },
    /// Bytes that are not a value, from the first unconsumed byte (plus `held`, if spooled).
    Junk(Junk),
}

struct Junk {
    /// The bytes started like JSON (`{`/`[`): resynchronise on JSON-looking starts only.
    json: bool,
    /// Next unconsumed byte to look at.
    pos: usize,
    /// The last non-blank byte seen was `}` or `]`.
    after_close: bool,
    /// A line break seen since the last non-blank byte (its position).
    line_break: Option<usize>,
    /// Stream offset of the next gzip member boundary, where the span ends whatever follows.
    until: Option<u64>,
    held: Option<Held>,
    /// What the look-ahead of glued `{` candidates may still scan: four times the bytes looked
    /// at, so an adversarial line cannot make framing quadratic.
    budget: usize,
}

pub(crate) struct Stream {
    state: State,
    /// When set, keys are checked while validating (see [`json::KeyCheck`]).
    pub(crate) keys: Option<json::KeyCheck>,
    /// What that check found in the last record.
    pub(crate) verdicts: json::Verdicts,
    /// Stream offset of the next line break found to be followed by `{` or `[` in column 0
    /// (see [`Stream::boundary`]), and how far the stream was searched for one.
    boundary: Option<u64>,
    searched: u64,
    /// Gzip member boundaries of the input, and how far they were consumed.
    pub(crate) members: Option<(Members, usize)>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            state: State::Between,
            keys: None,
            verdicts: json::Verdicts::default(),
            boundary: None,
            searched: 0,
            members: None,
        }
    }
}

impl Stream {
    pub(crate) fn next<R: Read>(&mut self, input: &mut Input<R>, max: usize) -> io::Result<Step> {
        loop {
            match &mut self.state {
                State::Between => match input.data().iter().position(|&b| !separator(b)) {
                    Some(p) => {
                        input.consume(p);
                        self.state = State::Value;
                    }
                    None => {
                        let n = input.avail();
                        input.consume(n);
                        if !input.fill(READ_AHEAD)? {
                            return Ok(Step::End);
                        }
                    }
                },
                State::Value => {
                    if let Some(step) = self.value(input, max)? {
                        return Ok(step);
                    }
                }
                State::Oversized { scanner, held } => {
                    let data = input.data();
                    match scanner.advance(data, 0) {
                        Some(len) => {
                            held.spool.append(&data[..len])?;
                            input.consume(len);
                            let State::Oversized { held, .. } =
                                std::mem::replace(&mut self.state, State::Between)
                            else {
                                unreachable!()
                            };
                            return Ok(held.too_large(max));
                        }
                        None => {
                            held.spool.append(data)?;
                            let n = data.len();
                            input.consume(n);
                            if !input.fill(READ_AHEAD)? {
                                let State::Oversized { held, .. } =
                                    std::mem::replace(&mut self.state, State::Between)
                                else {
                                    unreachable!()
                                };
                                return Ok(held.too_large(max));
                            }
                        }
                    }
                }
                State::Junk(junk) => {
                    if let Some(step) = junk_step(junk, input, max)? {
                        self.state = State::Between;
                        return Ok(step);
                    }
                }
            }
        }
    }

    /// Frames the value at the first unconsumed byte; `None` when the state moved on without
    /// producing anything yet.
    fn value<R: Read>(&mut self, input: &mut Input<R>, max: usize) -> io::Result<Option<Step>> {
        let data = input.data();
        let Some(&first) = data.first() else {
            self.state = State::Between;
            return Ok(None);
        };
        if matches!(first, b'}' | b']' | b',' | b':') {
            // A stray closer or separator between records: the next `{` or `[` after it is a
            // record start, so it must not take the rest of the line with it.
            self.junk(input, 0, false);
            if let State::Junk(j) = &mut self.state {
                j.pos = 1;
                j.after_close = true;
            }
            return Ok(None);
        }
        if !matches!(
            first,
            b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
        ) {
            self.junk(input, 0, false);
            return Ok(None);
        }
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        let string = first == b'"';
        // An object never runs past a line that starts with `{` or `[` in column 0: that line
        // is the next record (NDJSON), so a broken line costs only itself and is found without
        // reading on (pretty-printers indent what is inside a value).
        let limit = if first == b'{' {
            self.boundary(input).map(|b| (b - input.offset()) as usize)
        } else {
            None
        };
        let data = input.data();
        let scanned = &data[..limit.unwrap_or(data.len())];
        let scanned_result = match &mut self.keys {
            Some(k) => json::scan_keys(scanned, k),
            None => json::scan(scanned),
        };
        self.verdicts = self
            .keys
            .as_ref()
            .map(json::KeyCheck::verdicts)
            .unwrap_or_default();
        let outcome = match scanned_result {
            Scan::Incomplete if limit.is_some() => {
                let stop = limit.expect("checked");
                return self.broken(input, stop, first, max, Some((stop, stop + 1)));
            }
            Scan::Complete(len) if (scalar || string) && len == data.len() && !input.at_eof() => {
                Scan::Incomplete
            }
            Scan::Complete(len) if string && len < data.len() && !ends_scalar(data[len]) => {
                // A stray quote before a record (`"{"i":2}`) reads as a string up to the
                // record's first quote: resume at that record when one is there.
                match restart_in_strings(data, len, input.at_eof()) {
                    Restart::At(c) => {
                        self.state = State::Between;
                        return Ok(Some(span(input, c, c, max)));
                    }
                    Restart::NeedMore if !input.at_eof() && data.len() <= max => {
                        input.fill(input.avail() + READ_AHEAD)?;
                        return Ok(None);
                    }
                    _ => Scan::Complete(len),
                }
            }
            Scan::Complete(len) if scalar && len < data.len() && !ends_scalar(data[len]) => {
                Scan::Invalid(len)
            }
            other => other,
        };
        match outcome {
            Scan::Complete(len) => {
                let offset = input.offset();
                self.state = State::Between;
                if len > max {
                    let held = Held::start(offset, &data[..len])?;
                    input.consume(len);
                    return Ok(Some(held.too_large(max)));
                }
                let at = input.start;
                input.consume(len);
                Ok(Some(Step::Record {
                    at,
                    len,
                    offset,
                    checked: true,
                }))
            }
            Scan::Invalid(at) => self.broken(input, at, first, max, None),
            Scan::Incomplete if input.at_eof() => {
                let at = data.len();
                self.broken(input, at, first, max, None)
            }
            Scan::Incomplete if data.len() > max && self.member_within(input).is_some() => {
                // Larger than a record may be and running into the next gzip member: the
                // member boundary is a record boundary.
                let at = input.avail();
                self.broken(input, at, first, max, None)
            }
            Scan::Incomplete if data.len() > max => {
                let mut scanner = Scanner::start(first);
                if let Some(len) = scanner.advance(data, 0) {
                    // Closed by structure although not valid: the span is the oversized record.
                    let held = Held::start(input.offset(), &data[..len])?;
                    input.consume(len);
                    self.state = State::Between;
                    return Ok(Some(held.too_large(max)));
                }
                let held = Held::start(input.offset(), data)?;
                let n = data.len();
                input.consume(n);
                self.state = State::Oversized { scanner, held };
                Ok(None)
            }
            Scan::Incomplete => {
                // Rescan from the value's start once the window has doubled: at most twice the
                // work for values that straddle many reads.
                let want = (data.len() * 2).clamp(data.len() + 1, max + 1);
                input.fill_until(want)?;
                Ok(None)
            }
        }
    }

    /// The next column-0 boundary after the first unconsumed byte, if one is buffered. The search
    /// resumes where it stopped, so it costs one pass over the stream in all.
    fn boundary<R: Read>(&mut self, input: &Input<R>) -> Option<u64> {
        let base = input.offset();
        if let Some(b) = self.boundary {
            if b > base {
                return Some(b);
            }
            self.boundary = None;
        }
        let data = input.data();
        let mut from = self.searched.saturating_sub(base) as usize;
        while let Some(p) = memchr::memchr(b'\n', &data[from.min(data.len())..]) {
            let nl = from + p;
            match data.get(nl + 1) {
                None => break, // the next byte is not read yet: look again later
                Some(&b) if opens(b) && nl > 0 => {
                    self.searched = base + nl as u64 + 1;
                    self.boundary = Some(base + nl as u64);
                    return self.boundary;
                }
                Some(_) => from = nl + 1,
            }
        }
        self.searched = base + from.max(data.len().saturating_sub(1)) as u64;
        None
    }

    /// The next gzip member boundary after the first unconsumed byte, relative to it, if it
    /// is buffered.
    fn member_within<R: Read>(&mut self, input: &Input<R>) -> Option<usize> {
        let b = self.next_member(input)?;
        let rel = (b - input.offset()) as usize;
        (rel < input.avail()).then_some(rel)
    }

    fn next_member<R: Read>(&mut self, input: &Input<R>) -> Option<u64> {
        let (members, cursor) = self.members.as_mut()?;
        members.next_after(input.offset(), cursor)
    }

    /// A value that started with `first` broke at `at` (relative to the first unconsumed
    /// byte). The error span ends at the earliest point where a record may start (see the
    /// module doc), or at `fallback`; failing all of them, the bytes from `at` on are junk.
    /// When the buffered bytes end before the look-back can tell, reads on and leaves the
    /// value to be scanned again (`None`, state unchanged).
    fn broken<R: Read>(
        &mut self,
        input: &mut Input<R>,
        at: usize,
        first: u8,
        max: usize,
        fallback: Option<(usize, usize)>,
    ) -> io::Result<Option<Step>> {
        let can_wait = !input.at_eof() && input.avail() <= max;
        let mut need_more = false;
        let mut best = fallback;
        let mut take = |stop: usize, resume: usize| {
            if best.is_none_or(|(s, _)| stop < s) {
                best = Some((stop, resume));
            }
        };
        if let Some(b) = self.member_within(input).filter(|&b| b <= at) {
            take(b, b);
        }
        let data = input.data();
        let json = opens(first);
        if json {
            // A line break inside the broken span, followed by a line that starts a value.
            let upto = (at + 1).min(data.len());
            let mut from = 0;
            while let Some(p) = memchr::memchr(b'\n', &data[from..upto]) {
                let nl = from + p;
                let next = data[nl..].iter().position(|&b| !separator(b));
                if next.is_none_or(|q| starts_record(&data[nl + q..])) {
                    take(nl, nl + 1);
                    break;
                }
                from = nl + 1;
            }
            // A `{` or `[` where the value broke, or right after the blanks it broke on (a cut
            // literal or number: `{"b":n {"i":2}`), starts the next record.
            if at > 0 && at < data.len() {
                match data[at..].iter().position(|&b| !separator(b)) {
                    Some(q) if opens(data[at + q]) => take(at + q, at + q),
                    Some(_) => {}
                    None => need_more = true,
                }
            }
            if let Some(c) = restart_at_nested_value(data, at) {
                take(c, c);
            }
        }
        if json || first == b'"' {
            // Cut inside a string or key: the next record may already be behind the break.
            match restart_in_strings(data, at, input.at_eof()) {
                Restart::At(c) => take(c, c),
                Restart::NeedMore => need_more = true,
                Restart::None => {}
            }
            // Cut inside a string and followed by blank bytes that a string may not hold (a
            // tab, a CR): the `{` or `[` after them starts the next record.
            if data.get(at).is_some_and(|&b| b < 0x20) {
                match data[at..].iter().position(|&b| !separator(b)) {
                    Some(q) if opens(data[at + q]) => take(at + q, at + q),
                    Some(_) => {}
                    None => need_more = true,
                }
            }
        }
        if need_more && can_wait {
            input.fill(input.avail() + READ_AHEAD)?;
            return Ok(None);
        }
        self.state = State::Between;
        if let Some((stop, resume)) = best {
            return Ok(Some(span(input, stop, resume, max)));
        }
        self.junk(input, at, json);
        Ok(None)
    }

    fn junk<R: Read>(&mut self, input: &Input<R>, pos: usize, json: bool) {
        let until = self.next_member(input);
        self.state = State::Junk(Junk {
            json,
            pos,
            after_close: false,
            line_break: None,
            until,
            held: None,
            budget: 64 * 1024,
        });
    }
}

/// How much to read ahead when nothing is pending.
const READ_AHEAD: usize = 64 * 1024;

/// Emits the first `stop` unconsumed bytes as an error span and resumes at `resume`.
fn span<R: Read>(input: &mut Input<R>, stop: usize, resume: usize, max: usize) -> Step {
    let data = &input.data()[..stop];
    let last = data
        .iter()
        .rposition(|&b| !separator(b))
        .map_or(0, |p| p + 1);
    let step = if last > max {
        match Held::start(input.offset(), &data[..last]) {
            Ok(held) => held.too_large(max),
            Err(e) => Step::Failed(e),
        }
    } else {
        Step::Record {
            at: input.start,
            len: last,
            offset: input.offset(),
            checked: false,
        }
    };
    input.consume(resume);
    step
}

/// Looks for the end of a junk stretch; `Some` once it is found (or the stream ended).
fn junk_step<R: Read>(j: &mut Junk, input: &mut Input<R>, max: usize) -> io::Result<Option<Step>> {
    let data = input.data();
    let mut i = j.pos;
    let mut found = None;
    // A gzip member boundary ends the span whatever precedes it.
    let stop_at = j
        .until
        .map_or(usize::MAX, |u| u.saturating_sub(input.offset()) as usize);
    j.budget = j.budget.saturating_add(4 * data.len().saturating_sub(i));
    let mut pending = false;
    while i < data.len() {
        if i >= stop_at {
            found = Some((stop_at, stop_at));
            break;
        }
        let b = data[i];
        if b == b'\n' {
            if !j.json {
                found = Some((i, i + 1));
                break;
            }
            j.line_break.get_or_insert(i);
        } else if !separator(b) {
            if j.json {
                if let Some(nl) = j.line_break.filter(|_| starts_record(&data[i..])) {
                    found = Some((nl, i));
                    break;
                }
                if j.after_close && b == b'{' {
                    found = Some((i, i));
                    break;
                }
            } else if j.after_close && opens(b) {
                // After a stray closer, `{` or `[` starts the next record.
                found = Some((i, i));
                break;
            } else if opens(b) && i > 0 && !separator(data[i - 1]) && j.budget > 0 {
                // Glued to the junk and followed by records to its line's end: the next record.
                let upto = stop_at.min(data.len());
                let end = upto == stop_at || input.at_eof();
                match records_to_line_end(&data[..upto], i, end, &mut j.budget) {
                    Some(true) => {
                        found = Some((i, i));
                        break;
                    }
                    Some(false) => {}
                    // Not told yet: look again with more bytes (what precedes is junk).
                    None if j.held.is_none() && data.len() <= max => {
                        pending = true;
                        break;
                    }
                    None => {}
                }
            }
            j.line_break = None;
            j.after_close = matches!(b, b'}' | b']');
        }
        i += 1;
    }
    if let Some((stop, resume)) = found {
        return Ok(Some(match j.held.take() {
            None => span(input, stop, resume, max),
            Some(mut held) => {
                held.spool.append(&data[..stop])?;
                input.consume(resume);
                held.too_large(max)
            }
        }));
    }
    // Not found in what is buffered: spool what is certainly junk once it outgrows a record.
    let keep_from = j.line_break.unwrap_or(data.len());
    if j.held.is_some() || data.len() > max {
        let certain = &data[..keep_from];
        match &mut j.held {
            Some(h) => h.spool.append(certain)?,
            None => j.held = Some(Held::start(input.offset(), certain)?),
        }
        input.consume(keep_from);
        i -= keep_from;
        j.line_break = j.line_break.map(|_| 0);
    }
    j.pos = i;
    if !input.fill(input.avail() + READ_AHEAD)? {
        if pending {
            // The stream ended: the candidate is decided on the next call.
            return Ok(None);
        }
        let n = input.avail();
        return Ok(Some(match j.held.take() {
            None => span(input, n, n, max),
            Some(mut held) => {
                held.spool.append(input.data())?;
                input.consume(n);
                held.too_large(max)
            }
        }));
    }
    Ok(None)
}

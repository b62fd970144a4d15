//! The row scanner: one pass over a row's JSON bytes that writes each column's protobuf field
//! where it meets the value.
//!
//! Nothing is parsed twice. A scalar is read once and converted ([`super::values`]); a RECORD
//! is encoded as the scanner walks into it, into the same output buffer behind a reserved
//! length byte; the value of a key that names no column is skipped without being looked at.
//! Fields are written in key order: protobuf readers take them in any order, so the message is
//! the same as in schema order, and the same row always gives the same bytes.
//!
//! The scanner checks the JSON grammar as it goes, and skips unknown values with the crate's
//! validator ([`crate::json`], the one the framer uses): the encoder stands on its own, and
//! anything that is not one JSON object gives an error, never a panic and never a half-written
//! row. A row the pipeline built was validated already (`Row::json_valid`); for it
//! ([`Encoder::try_encode_delimited_valid`]) unknown values are skipped by brackets and quotes
//! alone.

use std::borrow::Cow;

use super::descriptor::{Column, Encoder};
use super::fail::Fail;
use super::values::encode_scalar;
use super::{EncodeError, Kind, Mode};
use crate::json;

/// The tag of `ProtoRows.serialized_rows` (field 1, length-delimited).
const SERIALIZED_ROW_TAG: u8 = 0x0a;

impl Encoder {
    /// Appends the encoded message for one JSON object to `out`. If there is an error, `out` is
    /// truncated back to its previous length, so one buffer can collect many rows and a bad row
    /// leaves nothing behind. The error names the column path (`payload.items[2].price`) and
    /// what was wrong with the value.
    pub fn encode(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let result = self.encode_row::<false>(json, out);
        if result.is_err() {
            out.truncate(start);
        }
        result.map_err(|e| e.to_string())
    }

    /// Like [`Encoder::encode`], but framed as one `serialized_rows` entry of the Storage Write
    /// API's `ProtoRows` (its field key and length first). A batch of rows encoded this way,
    /// back to back, *is* the `ProtoRows` message an AppendRows request carries, so an append
    /// is built in one buffer with no per-row allocation. Returns the message's length (without
    /// its framing).
    pub fn encode_delimited(&self, json: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        self.try_encode_delimited(json, out)
            .map_err(|e| e.to_string())
    }

    /// [`Encoder::encode_delimited`] with the error typed: the Storage Write writer asks
    /// whether a row failed only for an unknown field (`--schema-evolution`). The same pass,
    /// the same cost for rows that fit.
    pub fn try_encode_delimited(
        &self,
        json: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        self.delimited::<false>(json, out)
    }

    /// [`Encoder::try_encode_delimited`] for a row known to be one valid JSON value (a row the
    /// pipeline built: `Row::json_valid`). The values of keys that name no column are then
    /// skipped by their brackets and quotes alone (`lex::value_end`) instead of being
    /// validated: with `--ignore-unknown-values` on wide events that was a fifth of the
    /// encoder's time. The same bytes out for the same row.
    pub fn try_encode_delimited_valid(
        &self,
        json: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        self.delimited::<true>(json, out)
    }

    fn delimited<const VALID: bool>(
        &self,
        json: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let start = out.len();
        out.push(SERIALIZED_ROW_TAG);
        // Rows are mostly 128 bytes to 16 KiB as protobuf: two length bytes, fixed up after.
        out.extend_from_slice(&[0, 0]);
        match self.encode_row::<VALID>(json, out) {
            Ok(()) => {
                let len = out.len() - (start + 3);
                finish_len(out, start + 3, 2);
                Ok(len)
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn encode_row<const VALID: bool>(
        &self,
        json: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let text = simdutf8::compat::from_utf8(json).map_err(|e| {
            EncodeError::Invalid(format!(
                "row is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        let b = text.as_bytes();
        let i = json::ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return Err(EncodeError::Invalid(match Value::scan(text, i) {
                Ok(v) if json::ws(b, v.end) == b.len() => {
                    format!("row is {}, not a JSON object", v.json.kind_name())
                }
                _ => not_json(text),
            }));
        }
        let walked = self.object::<VALID>(0, text, i, out).and_then(|end| {
            if json::ws(b, end) == b.len() {
                Ok(())
            } else {
                Err(Fail::syntax())
            }
        });
        walked.map_err(|f| {
            // A row that is not JSON says so, whatever the scanner met first: the problem is
            // the row, not a column.
            if f.syntax || json::check(b).is_err() {
                EncodeError::Invalid(not_json(text))
            } else {
                f.render()
            }
        })
    }

    /// Writes the fields of the object that starts at `text[i]` (its `{`) as message `message`,
    /// without a length prefix. Returns the position after the object's closing brace.
    fn object<const VALID: bool>(
        &self,
        message: usize,
        text: &str,
        mut i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, Fail> {
        let b = text.as_bytes();
        let Some(m) = self.messages.get(message) else {
            return Err(Fail::new("internal error: no such message".into()));
        };
        let mut seen = Seen::new(m.columns.len());
        i = json::ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                if b.get(i) != Some(&b'"') {
                    return Err(Fail::syntax());
                }
                let (end, escaped) = json::string_span(b, i).map_err(|_| Fail::syntax())?;
                let key = string_text(text, i, end, escaped).map_err(|_| Fail::syntax())?;
                i = json::ws(b, end);
                if b.get(i) != Some(&b':') {
                    return Err(Fail::syntax());
                }
                i = json::ws(b, i + 1);
                match m.find(&key).and_then(|c| Some((c, m.columns.get(c)?))) {
                    Some((c, column)) => {
                        if !seen.insert(c) {
                            return Err(Fail::new(
                                "the key appears more than once in the object (keys match \
                                 columns case-insensitively), so which value to keep is \
                                 ambiguous"
                                    .into(),
                            )
                            .within(&key));
                        }
                        i = self
                            .column::<VALID>(column, text, i, out)
                            .map_err(|f| f.within(&column.name))?;
                    }
                    None if self.options.ignore_unknown_values => i = skip::<VALID>(b, i)?,
                    None if self.options.skip_unknown_empty && carries_no_data(b, i) => {
                        i = json::value(b, i).map_err(|_| Fail::syntax())?;
                    }
                    None => return Err(Fail::unknown(key.into_owned())),
                }
                i = json::ws(b, i);
                match b.get(i) {
                    Some(b',') => i = json::ws(b, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return Err(Fail::syntax()),
                }
            }
        }
        // In schema order, so the first missing column named is the same for every key order.
        for &c in &m.required {
            if !seen.contains(c) {
                let name = m.columns.get(c).map_or("", |c| c.name.as_str());
                return Err(Fail::new("required column is missing".into()).within(name));
            }
        }
        Ok(i)
    }

    /// One column's value at `text[i]`: null, one value, or (REPEATED) an array of them.
    /// Returns the position after it.
    fn column<const VALID: bool>(
        &self,
        column: &Column,
        text: &str,
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, Fail> {
        let b = text.as_bytes();
        match b.get(i) {
            Some(b'n') => {
                let end = json::literal(b, i, b"null").map_err(|_| Fail::syntax())?;
                match column.mode {
                    Mode::Required => Err(Fail::new("required column is null".into())),
                    Mode::Nullable | Mode::Repeated => Ok(end),
                }
            }
            Some(b'[') if column.mode == Mode::Repeated => {
                let mut i = json::ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    return Ok(i + 1);
                }
                let mut index = 0;
                loop {
                    if b.get(i) == Some(&b'n') {
                        json::literal(b, i, b"null").map_err(|_| Fail::syntax())?;
                        return Err(Fail::new(
                            "null inside an array (BigQuery arrays cannot hold NULL elements)"
                                .into(),
                        )
                        .at(index));
                    }
                    i = self
                        .value::<VALID>(column, text, i, out)
                        .map_err(|f| f.at(index))?;
                    i = json::ws(b, i);
                    match b.get(i) {
                        Some(b',') => {
                            i = json::ws(b, i + 1);
                            index += 1;
                        }
                        Some(b']') => return Ok(i + 1),
                        _ => return Err(Fail::syntax()),
                    }
                }
            }
            _ if column.mode == Mode::Repeated => {
                let value = Value::scan(text, i)?;
                Err(Fail::new(format!(
                    "expected an array (the column is REPEATED {}), found {}",
                    column.kind.bigquery_name(),
                    value.describe()
                )))
            }
            _ => self.value::<VALID>(column, text, i, out),
        }
    }

    /// Writes one occurrence of `column` (key and value) for the value at `text[i]`; returns
    /// the position after the value. On error, partial output may be left behind;
    /// [`Encoder::encode`] truncates it.
    fn value<const VALID: bool>(
        &self,
        column: &Column,
        text: &str,
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, Fail> {
        out.extend_from_slice(&column.key);
        if column.kind == Kind::Record {
            if text.as_bytes().get(i) != Some(&b'{') {
                let value = Value::scan(text, i)?;
                return Err(Fail::new(format!(
                    "expected an object (the column is RECORD), found {}",
                    value.describe()
                )));
            }
            // Most nested messages are shorter than 128 bytes, so reserve one length byte and
            // widen it only if needed. That saves encoding each record into a separate buffer.
            let start = out.len() + 1;
            out.push(0);
            let end = self.object::<VALID>(column.message, text, i, out)?;
            finish_len(out, start, 1);
            return Ok(end);
        }
        let value = Value::scan(text, i)?;
        encode_scalar(column.kind, &value, out).map_err(Fail::new)?;
        Ok(value.end)
    }
}

/// Past the value at `b[i]` that no column takes: validated on the way unless the row is known
/// to be valid (`VALID`).
#[inline]
fn skip<const VALID: bool>(b: &[u8], i: usize) -> Result<usize, Fail> {
    if VALID {
        crate::json::lex::value_end(b, i).ok_or_else(Fail::syntax)
    } else {
        json::value(b, i).map_err(|_| Fail::syntax())
    }
}

/// Whether the JSON value at `b[i]` is null, `[]`, `{}` or containers of only those: no data
/// for a column, and no type to make one with. Runs only for keys that name no column.
fn carries_no_data(b: &[u8], i: usize) -> bool {
    fn walk(b: &[u8], i: usize, depth: usize) -> Option<usize> {
        if depth > super::descriptor::MAX_DEPTH {
            return None;
        }
        match b.get(i)? {
            b'n' => json::literal(b, i, b"null").ok(),
            open @ (b'[' | b'{') => {
                let close = if *open == b'[' { b']' } else { b'}' };
                let mut i = json::ws(b, i + 1);
                if b.get(i) == Some(&close) {
                    return Some(i + 1);
                }
                loop {
                    if *open == b'{' {
                        if b.get(i) != Some(&b'"') {
                            return None;
                        }
                        let (end, _) = json::string_span(b, i).ok()?;
                        i = json::ws(b, end);
                        if b.get(i) != Some(&b':') {
                            return None;
                        }
                        i = json::ws(b, i + 1);
                    }
                    i = json::ws(b, walk(b, i, depth + 1)?);
                    match b.get(i)? {
                        b',' => i = json::ws(b, i + 1),
                        c if *c == close => return Some(i + 1),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }
    walk(b, i, 0).is_some()
}

/// The message for a row that is not JSON, in serde_json's words (only failing rows pay for
/// the second parse).
fn not_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(e) => format!("row is not valid JSON: {e}"),
        Ok(_) => "row is not valid JSON".into(),
    }
}

/// Sets the varint length of the bytes from `start` to the end of `out`, written into the
/// `reserved` bytes before `start` (moving the bytes when the length needs fewer or more).
pub(super) fn finish_len(out: &mut Vec<u8>, start: usize, reserved: usize) {
    let len = out.len() - start;
    let mut prefix = [0u8; 10];
    let mut cursor = &mut prefix[..];
    prost::encoding::encode_varint(len as u64, &mut cursor);
    let written = 10 - cursor.len();
    let at = start - reserved;
    if written == reserved {
        out[at..start].copy_from_slice(&prefix[..written]);
    } else if written < reserved {
        out.copy_within(start.., at + written);
        out[at..at + written].copy_from_slice(&prefix[..written]);
        out.truncate(out.len() - (reserved - written));
    } else {
        out.splice(at..start, prefix[..written].iter().copied());
    }
}

/// A string's text: borrowed from the row, or unescaped when it holds escapes.
fn string_text(
    text: &str,
    start: usize,
    end: usize,
    escaped: bool,
) -> Result<Cow<'_, str>, String> {
    if escaped {
        let quoted = text.get(start..end).ok_or("invalid JSON string")?;
        serde_json::from_str::<String>(quoted)
            .map(Cow::Owned)
            .map_err(|e| format!("invalid JSON string: {e}"))
    } else {
        text.get(start + 1..end - 1)
            .map(Cow::Borrowed)
            .ok_or_else(|| "invalid JSON string".into())
    }
}

/// Which columns of one object were given (duplicates are an error, REQUIRED ones a must).
enum Seen {
    Small(u64),
    Large(Vec<u64>),
}

impl Seen {
    fn new(columns: usize) -> Seen {
        if columns <= 64 {
            Seen::Small(0)
        } else {
            Seen::Large(vec![0; columns.div_ceil(64)])
        }
    }

    /// Marks column `c`; `false` if it was marked already.
    fn insert(&mut self, c: usize) -> bool {
        let (word, bit) = match self {
            Seen::Small(w) => (w, c),
            Seen::Large(v) => match v.get_mut(c / 64) {
                Some(w) => (w, c % 64),
                None => return true,
            },
        };
        let mask = 1u64 << (bit % 64);
        let fresh = *word & mask == 0;
        *word |= mask;
        fresh
    }

    fn contains(&self, c: usize) -> bool {
        match self {
            Seen::Small(w) => w & (1u64 << (c % 64)) != 0,
            Seen::Large(v) => v.get(c / 64).is_some_and(|w| w & (1u64 << (c % 64)) != 0),
        }
    }
}

/// A JSON value identified by its first character; its text is already checked.
pub(super) enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's exact text.
    Number,
    String(Cow<'a, str>),
    Object,
    Array,
}

pub(super) struct Value<'a> {
    /// The value's JSON text.
    pub raw: &'a str,
    pub json: Json<'a>,
    /// Where the value ends in the row.
    end: usize,
}

impl<'a> Value<'a> {
    /// The value at `text[i]`: checked and delimited, strings unescaped; containers are only
    /// skipped over (a JSON or GEOGRAPHY column takes their text as it is).
    fn scan(text: &'a str, i: usize) -> Result<Value<'a>, Fail> {
        let b = text.as_bytes();
        let syntax = |_| Fail::syntax();
        let (end, json) = match b.get(i) {
            Some(b'"') => {
                let (end, escaped) = json::string_span(b, i).map_err(syntax)?;
                let s = string_text(text, i, end, escaped).map_err(Fail::new)?;
                (end, Json::String(s))
            }
            Some(b't') => (
                json::literal(b, i, b"true").map_err(syntax)?,
                Json::Bool(true),
            ),
            Some(b'f') => (
                json::literal(b, i, b"false").map_err(syntax)?,
                Json::Bool(false),
            ),
            Some(b'n') => (json::literal(b, i, b"null").map_err(syntax)?, Json::Null),
            Some(b'-' | b'0'..=b'9') => (json::number(b, i).map_err(syntax)?, Json::Number),
            Some(b'{') => (json::value(b, i).map_err(syntax)?, Json::Object),
            Some(b'[') => (json::value(b, i).map_err(syntax)?, Json::Array),
            _ => return Err(Fail::syntax()),
        };
        let raw = text.get(i..end).ok_or_else(Fail::syntax)?;
        Ok(Value { raw, json, end })
    }

    /// The value for an error message: its JSON text, shortened.
    pub fn describe(&self) -> String {
        match self.json {
            Json::Null => "null".into(),
            Json::Bool(b) => format!("`{b}`"),
            Json::Number => format!("the number {}", shorten(self.raw)),
            Json::String(_) => format!("the string {}", shorten(self.raw)),
            Json::Object => "an object".into(),
            Json::Array => "an array".into(),
        }
    }

    /// How the value appears in "... is not a valid X" messages.
    pub fn shown(&self) -> String {
        shorten(self.raw)
    }
}

impl Json<'_> {
    fn kind_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number => "a number",
            Json::String(_) => "a string",
            Json::Object => "an object",
            Json::Array => "an array",
        }
    }
}

/// Error messages quote the offending value. Values are shortened: the whole row is in the
/// dead letter anyway, and a megabyte-long message helps no one.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

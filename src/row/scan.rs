//! Walks over JSON text that is already known to be valid, without building a DOM and without
//! recursion (so no depth limit): the row contract's checks (docs/src/rows.md, "Row contract").
//!
//! - [`Keys::scan`]: duplicate keys at any level (the last occurrence wins, the earlier ones are
//!   cut out of the row) and the record's own top-level fields that collide with generated
//!   columns.
//! - [`storable`]: what BigQuery cannot hold at all — numbers beyond ±f64::MAX (`1e400`) and lone
//!   UTF-16 surrogate escapes (`"\ud800"`) — named by their field path.
//!
//! The text must be valid JSON; on anything else these return an error rather than panic.

use std::borrow::Cow;

/// Index just past the whitespace starting at `i`.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `i` is at a string's opening quote: the index just past its closing quote.
pub(crate) fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'"' {
            return Some(k + 1);
        }
        j = k + 2;
    }
}

/// `i` is at the first byte of a value: the index just past its end.
pub(crate) fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => Some(scalar_end(b, i)),
    }
}

pub(super) fn scalar_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string's content (without quotes) with its escapes decoded, as bytes: lone surrogates are
/// kept as their 3-byte generalised UTF-8 form (WTF-8), so two keys compare equal exactly when
/// they are the same sequence of code units.
pub(crate) fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    let hex = |i: usize| -> Option<u32> {
        let s = std::str::from_utf8(raw.get(i..i + 4)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let Some(&e) = raw.get(i + 1) else {
            break;
        };
        i += 2;
        let c = match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'b' => 8,
            b'f' => 12,
            b'u' => {
                let Some(mut cp) = hex(i) else {
                    break;
                };
                i += 4;
                if (0xD800..0xDC00).contains(&cp) && raw.get(i..i + 2) == Some(b"\\u") {
                    if let Some(lo @ 0xDC00..=0xDFFF) = hex(i + 2) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        i += 6;
                    }
                }
                push_wtf8(&mut out, cp);
                continue;
            }
            other => other,
        };
        out.push(c);
    }
    Cow::Owned(out)
}

fn push_wtf8(out: &mut Vec<u8>, cp: u32) {
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend([0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend([
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        _ => out.extend([
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
    }
}

/// A fast hash of a key's decoded bytes (FxHash's mixing, 8 bytes at a time): keys are
/// compared by hash first, and by bytes only when two hashes are equal. Inlined: the
/// validator's key check calls it once per key, and the call cost as much as the hashing.
#[inline(always)]
pub(crate) fn key_hash(raw: &[u8], escaped: bool) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    // The last partial word is read with fixed-size loads (overlapping the previous word when
    // the key is longer than 8 bytes): a variable-length copy into a scratch word compiled to
    // a `memcpy` call per key, a visible share of the validator's time on short keys.
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
    let half = |c: &[u8]| u32::from_le_bytes(c.try_into().expect("4 bytes")) as u64;
    let hash = |k: &[u8]| {
        let n = k.len();
        let mut h = mix(0, n as u64);
        let mut chunks = k.chunks_exact(8);
        for c in &mut chunks {
            h = mix(h, word(c));
        }
        let rest = chunks.remainder().len();
        if rest == 0 {
            return h;
        }
        let tail = if n >= 8 {
            word(&k[n - 8..])
        } else if n >= 4 {
            half(&k[..4]) | half(&k[n - 4..]) << 32
        } else {
            k[0] as u64 | (k[n / 2] as u64) << 8 | (k[n - 1] as u64) << 16
        };
        mix(h, tail)
    };
    if escaped {
        hash(&decode(raw))
    } else {
        hash(raw)
    }
}

#[derive(Debug, Clone, Copy)]
struct Member {
    /// The key's content, without quotes.
    key: (usize, usize),
    /// [`key_hash`] of the key.
    hash: u64,
    /// The key's opening quote.
    start: usize,
    value: (usize, usize),
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    /// Where this object's members start in `Keys::members`.
    first: usize,
}

/// What [`Keys::scan`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// The record had duplicate keys: the de-duplicated text is in `Keys::out`.
    pub rewritten: bool,
    /// `(index into the reserved names, the value's span in the *input*)` for each top-level
    /// field named like a generated column.
    pub collisions: Vec<(usize, (usize, usize))>,
}

/// Reusable buffers for [`Keys::scan`].
#[derive(Debug, Default)]
pub struct Keys {
    stack: Vec<Frame>,
    members: Vec<Member>,
    cuts: Vec<(usize, usize)>,
    order: Vec<usize>,
    pub out: Vec<u8>,
}

impl Keys {
    /// Scans `b` (valid JSON): finds duplicate keys at every level and the root object's
    /// fields named in `reserved`.
    pub fn scan<S: AsRef<str>>(&mut self, b: &[u8], reserved: &[S]) -> Result<Found, String> {
        const BAD: &str = "internal error: the record is not valid JSON";
        self.stack.clear();
        self.members.clear();
        self.cuts.clear();
        let mut found = Found::default();
        let mut want_key = false;
        let mut i = 0;
        loop {
            i = skip_ws(b, i);
            let Some(&c) = b.get(i) else {
                break;
            };
            let value_done = match c {
                b'{' | b'[' => {
                    self.stack.push(Frame {
                        object: c == b'{',
                        first: self.members.len(),
                    });
                    want_key = c == b'{';
                    i += 1;
                    None
                }
                b'}' | b']' => {
                    let frame = self.stack.pop().ok_or(BAD)?;
                    if frame.object {
                        self.close_object(b, frame.first);
                        if self.stack.is_empty() && !reserved.is_empty() {
                            // Hashes first: a key is decoded only when its hash is a reserved
                            // name's.
                            let hashes: [u64; 8] = std::array::from_fn(|k| {
                                reserved
                                    .get(k)
                                    .map_or(0, |r| key_hash(r.as_ref().as_bytes(), false))
                            });
                            for m in &self.members[frame.first..] {
                                let hit = reserved.len() > 8
                                    || hashes[..reserved.len()].contains(&m.hash);
                                if !hit {
                                    continue;
                                }
                                let key = decode(&b[m.key.0..m.key.1]);
                                if let Some(r) =
                                    reserved.iter().position(|r| r.as_ref().as_bytes() == &*key)
                                {
                                    // Duplicates: the last occurrence is the one kept.
                                    found.collisions.retain(|(x, _)| *x != r);
                                    found.collisions.push((r, m.value));
                                }
                            }
                        }
                        self.members.truncate(frame.first);
                    }
                    i += 1;
                    Some(i)
                }
                b',' => {
                    want_key = self.stack.last().is_some_and(|f| f.object);
                    i += 1;
                    None
                }
                b'"' if want_key => {
                    // Keys are short and rarely escaped: when the first quote or backslash is
                    // the closing quote, the key's bytes are its content.
                    let first = i + 1 + memchr::memchr2(b'"', b'\\', &b[i + 1..]).ok_or(BAD)?;
                    let (end, escaped) = if b[first] == b'"' {
                        (first + 1, false)
                    } else {
                        (string_end(b, i).ok_or(BAD)?, true)
                    };
                    let colon = skip_ws(b, end);
                    if b.get(colon) != Some(&b':') {
                        return Err(BAD.into());
                    }
                    let value = skip_ws(b, colon + 1);
                    self.members.push(Member {
                        key: (i + 1, end - 1),
                        hash: key_hash(&b[i + 1..end - 1], escaped),
                        start: i,
                        value: (value, value),
                    });
                    want_key = false;
                    i = value;
                    None
                }
                b'"' => {
                    i = string_end(b, i).ok_or(BAD)?;
                    Some(i)
                }
                _ => {
                    let end = scalar_end(b, i);
                    if end == i {
                        return Err(BAD.into());
                    }
                    i = end;
                    Some(i)
                }
            };
            if let Some(end) = value_done {
                if self.stack.last().is_some_and(|f| f.object) {
                    if let Some(m) = self.members.last_mut() {
                        m.value.1 = end;
                    }
                }
                if self.stack.is_empty() {
                    break;
                }
            }
        }
        if !self.cuts.is_empty() {
            found.rewritten = true;
            self.cuts.sort_unstable();
            self.out.clear();
            let mut at = 0;
            for &(s, e) in &self.cuts {
                if s < at {
                    continue; // inside a member already cut
                }
                self.out.extend_from_slice(&b[at..s]);
                at = e;
            }
            self.out.extend_from_slice(&b[at..]);
        }
        Ok(found)
    }

    /// Marks every member of the object whose key occurs again later in it for cutting: the
    /// member and what follows it up to the next member (its comma). The last member is always
    /// kept (it is its key's last occurrence), so every cut member has a successor.
    fn close_object(&mut self, b: &[u8], first: usize) {
        let ms = &self.members[first..];
        let n = ms.len();
        if n < 2 {
            return;
        }
        let key = |m: &Member| decode(&b[m.key.0..m.key.1]);
        let same = |x: &Member, y: &Member| x.hash == y.hash && key(x) == key(y);
        let mut cut = |j: usize| self.cuts.push((ms[j].start, ms[j + 1].start));
        if n <= 64 {
            // A 128-bit Bloom filter of the hashes: only a member whose bit is already set is
            // compared with the earlier ones (about n²/256 compares, no allocation). An earlier
            // member with the same key is cut: the last occurrence wins.
            let mut bloom = 0u128;
            for k in 0..n {
                let bit = 1u128 << (ms[k].hash >> 57);
                if bloom & bit != 0 {
                    for i in 0..k {
                        if same(&ms[i], &ms[k]) {
                            cut(i);
                        }
                    }
                }
                bloom |= bit;
            }
            return;
        }
        self.order.clear();
        self.order.extend(0..n);
        self.order
            .sort_unstable_by(|&x, &y| ms[x].hash.cmp(&ms[y].hash).then(x.cmp(&y)));
        // Members of equal hash are adjacent; among them, one is cut when a later one has the
        // same key.
        let mut g = 0;
        while g < n {
            let mut e = g + 1;
            while e < n && ms[self.order[e]].hash == ms[self.order[g]].hash {
                e += 1;
            }
            for a in g..e {
                let x = self.order[a];
                if self.order[a + 1..e]
                    .iter()
                    .any(|&y| y > x && same(&ms[x], &ms[y]))
                {
                    cut(x);
                }
            }
            g = e;
        }
    }
}

// What BigQuery cannot hold: in `storable.rs`, re-exported at the paths callers use.
pub use super::storable::storable;
#[cfg(test)]
use super::storable::walk_storable;

#[cfg(test)]
mod tests;

//! A JSON validator for the hot path: checks the grammar of one record without building
//! anything.
//!
//! Validation is the most expensive per-byte step after inflating (serde_json's `IgnoredAny`
//! path runs at ~0.9 GB/s here, and sonic-rs and simd-json are slower still on records of a few
//! hundred bytes). This validator finds string ends 16 bytes at a time with SSE2 and does the
//! rest with plain loops, about twice as fast on Firehose-style events. It only answers "valid or
//! not, and where"; the caller asks serde_json for a message when a record is invalid, so error
//! texts stay serde_json's. UTF-8 is checked separately (simdutf8), so this sees bytes only.
//! A differential test against serde_json guards it (`tests::agrees_with_serde_json`).

/// Which containers are open: one bit per level (1 = object), with the innermost one's kind
/// kept apart in `in_object` so that the check after every value is a register test, not a
/// shift of a wide word. The first 64 levels live in a register; deeper ones (legal JSON —
/// serde_json's skipping path has no depth limit either) spill to the heap. No recursion, so
/// no stack overflow on hostile nesting.
struct Nesting {
    /// Levels 1..=min(depth, 64) - 1 below the innermost one (bit d-1 for level d).
    low: u64,
    high: Vec<u64>,
    depth: usize,
    in_object: bool,
}

impl Nesting {
    #[inline(always)]
    fn new() -> Self {
        Nesting {
            low: 0,
            high: Vec::new(),
            depth: 0,
            in_object: false,
        }
    }

    /// Opens a container inside the current one.
    #[inline(always)]
    fn push(&mut self, object: bool) {
        if self.depth > 0 {
            // Save the current innermost kind at its level.
            let d = self.depth - 1;
            if d < 64 {
                if self.in_object {
                    self.low |= 1u64 << d;
                } else {
                    self.low &= !(1u64 << d);
                }
            } else {
                self.spill(d);
            }
        }
        self.depth += 1;
        self.in_object = object;
    }

    #[cold]
    fn spill(&mut self, d: usize) {
        let (w, bit) = ((d - 64) / 64, (d - 64) % 64);
        if w == self.high.len() {
            self.high.push(0);
        }
        if self.in_object {
            self.high[w] |= 1u64 << bit;
        } else {
            self.high[w] &= !(1u64 << bit);
        }
    }

    /// Closes the innermost container; the one around it becomes current.
    #[inline(always)]
    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth > 0 {
            let d = self.depth - 1;
            self.in_object = if d < 64 {
                self.low & (1u64 << d) != 0
            } else {
                self.high[(d - 64) / 64] & (1u64 << ((d - 64) % 64)) != 0
            };
        }
    }
}

/// `Ok(())` if `b` is exactly one JSON value (surrounded by optional whitespace); otherwise the
/// byte offset where it stops being valid.
pub fn check(b: &[u8]) -> Result<(), usize> {
    let end = value(b, ws(b, 0))?;
    let end = ws(b, end);
    if end == b.len() {
        Ok(())
    } else {
        Err(end)
    }
}

/// How far one JSON value at the start of a buffer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A valid value of this many bytes (a top-level number may go on past the buffer: the
    /// caller decides whether the buffer is the whole stream).
    Complete(usize),
    /// Not valid JSON: the first byte where it went wrong.
    Invalid(usize),
    /// Valid so far, but the buffer ends inside the value.
    Incomplete,
}

/// Validates and delimits the value starting at `b[0]` in one pass, telling a broken value from
/// one that is only cut by the end of the buffer: what lets the JSON-stream framer find record
/// ends and resynchronise after bad bytes.
pub fn scan(b: &[u8]) -> Scan {
    match value(b, 0) {
        Ok(n) => Scan::Complete(n),
        Err(p) if p >= b.len() => Scan::Incomplete,
        Err(p) => Scan::Invalid(p),
    }
}

/// What the validator reports about object keys as it passes them (see [`KeyCheck`]).
pub(crate) trait Keys {
    fn open_object(&mut self);
    /// `escaped`: the key holds a backslash escape (the validator saw it while passing).
    fn key(&mut self, raw: &[u8], escaped: bool, depth: usize);
    fn close_object(&mut self);
}

/// The plain validator: keys are not looked at (compiled away).
struct NoKeys;

impl Keys for NoKeys {
    #[inline(always)]
    fn open_object(&mut self) {}
    #[inline(always)]
    fn key(&mut self, _: &[u8], _: bool, _: usize) {}
    #[inline(always)]
    fn close_object(&mut self) {}
}

/// Watches keys while the framer validates, so the row stage can skip its own key scan (the
/// row contract's duplicate-key and generated-column checks, `row::scan`) for the common record
/// that has neither: `clean` stays true only if no object holds two keys of equal hash and no
/// top-level key hashes like a reserved name. Keys with escapes make it give up (`clean =
/// false`): the row stage then decides. A false "not clean" costs only the scan.
#[derive(Debug, Default)]
pub struct KeyCheck {
    /// Hashes of the keys of the objects open, and where each object's start in it.
    hashes: Vec<u64>,
    /// Per open object: where its hashes start in `hashes`, and a 128-bit Bloom filter of
    /// them (two words: a `u128` shift compiles to branches, a word index does not).
    starts: Vec<(usize, [u64; 2])>,
    /// Hashes of the generated column names.
    pub reserved: Vec<u64>,
    /// One bit per reserved hash (its top six bits), so that most top-level keys are cleared
    /// without walking `reserved`.
    reserved_bloom: u64,
    pub clean: bool,
}

impl KeyCheck {
    /// A check that treats top-level keys hashing like one of `reserved` as not clean.
    pub fn new(reserved: Vec<u64>) -> Self {
        KeyCheck {
            reserved_bloom: reserved.iter().fold(0, |m, h| m | 1u64 << (h >> 58)),
            reserved,
            ..Default::default()
        }
    }

    pub fn reset(&mut self) {
        self.hashes.clear();
        self.starts.clear();
        self.clean = true;
    }
}

impl Keys for KeyCheck {
    #[inline]
    fn open_object(&mut self) {
        self.starts.push((self.hashes.len(), [0; 2]));
    }

    #[inline(always)]
    fn key(&mut self, raw: &[u8], escaped: bool, depth: usize) {
        if !self.clean {
            return;
        }
        if escaped {
            self.clean = false;
            return;
        }
        let h = crate::row::scan::key_hash(raw, false);
        if depth == 1
            && self.reserved_bloom & (1u64 << (h >> 58)) != 0
            && self.reserved.contains(&h)
        {
            self.clean = false;
            return;
        }
        let Some((start, bloom)) = self.starts.last_mut() else {
            return;
        };
        let (word, bit) = ((h >> 63) as usize, 1u64 << ((h >> 57) & 63));
        if bloom[word] & bit != 0 && self.hashes[*start..].contains(&h) {
            self.clean = false;
            return;
        }
        bloom[word] |= bit;
        self.hashes.push(h);
    }

    #[inline]
    fn close_object(&mut self) {
        if let Some((start, _)) = self.starts.pop() {
            self.hashes.truncate(start);
        }
    }
}

/// [`scan`], also checking keys (see [`KeyCheck`]).
pub fn scan_keys(b: &[u8], keys: &mut KeyCheck) -> Scan {
    keys.reset();
    match value_with(b, 0, keys) {
        Ok(n) => Scan::Complete(n),
        Err(p) if p >= b.len() => Scan::Incomplete,
        Err(p) => Scan::Invalid(p),
    }
}

/// [`check`], also checking keys (see [`KeyCheck`]): what lets a newline-framed record skip the
/// row stage's second walk over its bytes (`row::scan`), as the JSON-stream framer's records do.
pub fn check_keys(b: &[u8], keys: &mut KeyCheck) -> Result<(), usize> {
    keys.reset();
    let end = value_with(b, ws(b, 0), keys)?;
    let end = ws(b, end);
    if end == b.len() {
        Ok(())
    } else {
        Err(end)
    }
}

/// One JSON value starting at `b[i]` (no leading whitespace): the position after it, or where
/// it stops being valid. Iterative, so any nesting depth is safe. The Storage Write encoder
/// skips the values of unknown keys with it.
pub(crate) fn value(b: &[u8], i: usize) -> Result<usize, usize> {
    value_with(b, i, &mut NoKeys)
}

fn value_with<K: Keys>(b: &[u8], mut i: usize, keys: &mut K) -> Result<usize, usize> {
    let mut open = Nesting::new();
    'value: loop {
        // A value starts at `i`.
        match b.get(i) {
            Some(b'{') => {
                i = ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    open.push(true);
                    keys.open_object();
                    i = member_key(b, i, open.depth, keys)?;
                    continue 'value;
                }
            }
            Some(b'[') => {
                i = ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    open.push(false);
                    continue 'value;
                }
            }
            Some(b'"') => i = string(b, i)?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            _ => return Err(i),
        }
        // After a value: close containers, or move to the next element.
        loop {
            if open.depth == 0 {
                return Ok(i);
            }
            i = ws(b, i);
            let in_object = open.in_object;
            match b.get(i) {
                Some(b',') => {
                    i = ws(b, i + 1);
                    if in_object {
                        i = member_key(b, i, open.depth, keys)?;
                    }
                    continue 'value;
                }
                Some(b'}') if in_object => {
                    open.pop();
                    keys.close_object();
                    i += 1;
                }
                Some(b']') if !in_object => {
                    open.pop();
                    i += 1;
                }
                _ => return Err(i),
            }
        }
    }
}

/// `"key"` `:` — returns the position of the member's value. Inlined into the walk: it runs
/// once per key, and a call's prologue and epilogue were a tenth of its cost.
#[inline(always)]
fn member_key<K: Keys>(b: &[u8], i: usize, depth: usize, keys: &mut K) -> Result<usize, usize> {
    if b.get(i) != Some(&b'"') {
        return Err(i);
    }
    let (end, escaped) = string_escaped(b, i)?;
    keys.key(&b[i + 1..end - 1], escaped, depth);
    // Compact JSON (what producers send) has the colon right after the key.
    let i = if b.get(end) == Some(&b':') {
        end
    } else {
        let i = ws(b, end);
        if b.get(i) != Some(&b':') {
            return Err(i);
        }
        i
    };
    Ok(ws(b, i + 1))
}

/// The first position at or after `i` that is not JSON whitespace.
#[inline]
pub(crate) fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// `word` at `b[i]`. A mismatch is reported at the first byte that differs, not at the
/// literal's start: a record cut inside a literal (`{"t":tru{"i":2}`) then breaks on the next
/// record's `{`, which is where the framer resumes, so that record is not lost.
#[inline]
pub(crate) fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, usize> {
    let rest = &b[i.min(b.len())..];
    let same = rest.iter().zip(word).take_while(|(x, y)| x == y).count();
    if same == word.len() {
        Ok(i + word.len())
    } else {
        // Also the end of the buffer when the literal is cut by it.
        Err(i + same)
    }
}

#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
#[inline]
pub(crate) fn number(b: &[u8], mut i: usize) -> Result<usize, usize> {
    if b[i] == b'-' {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return Err(i),
    }
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return Err(j);
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return Err(j);
        }
        i = j;
    }
    Ok(i)
}

/// A string starting at the quote `b[i]`; returns the position after its closing quote.
#[inline]
fn string(b: &[u8], i: usize) -> Result<usize, usize> {
    string_escaped(b, i).map(|(end, _)| end)
}

/// [`string`], also telling whether the string holds an escape: the key check needs to know,
/// and finding out here is free while a second search of the key's bytes is not.
#[inline(always)]
fn string_escaped(b: &[u8], i: usize) -> Result<(usize, bool), usize> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j = find_special(b, j);
        match b.get(j) {
            Some(b'"') => return Ok((j + 1, escaped)),
            Some(b'\\') => match b.get(j + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                    escaped = true;
                    j += 2
                }
                Some(b'u') => {
                    let hex = &b[j + 2..(j + 6).min(b.len())];
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(j);
                    }
                    if hex.len() < 4 {
                        return Err(b.len()); // cut by the end of the buffer
                    }
                    escaped = true;
                    j += 6;
                }
                None => return Err(b.len()),
                _ => return Err(j),
            },
            // A control character, or the end of the input.
            _ => return Err(j),
        }
    }
}

/// Like [`string`], and also whether the string holds an escape (so its text can be borrowed
/// as it is when it does not).
#[inline]
pub(crate) fn string_span(b: &[u8], i: usize) -> Result<(usize, bool), usize> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j = find_special(b, j);
        match b.get(j) {
            Some(b'"') => return Ok((j + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(j + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                    Some(b'u') => {
                        let hex = &b[j + 2..(j + 6).min(b.len())];
                        if hex.len() < 4 || !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(j);
                        }
                        j += 6;
                    }
                    _ => return Err(j),
                }
            }
            _ => return Err(j),
        }
    }
}

/// The first position at or after `j` holding `"`, `\` or a control character (< 0x20), or
/// `b.len()`.
#[inline(always)]
fn find_special(b: &[u8], mut j: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // SSE2 is part of the x86_64 baseline: no runtime detection needed.
        use std::arch::x86_64::*;
        // SAFETY: every load reads 16 bytes at `j`, and the loop guarantees `j + 16 <= len`.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let ctl = _mm_set1_epi8(0x1f);
            while j + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(j) as *const __m128i);
                // max(v, 0x1f) == 0x1f exactly when v <= 0x1f (unsigned).
                let special = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl),
                );
                let mask = _mm_movemask_epi8(special) as u32;
                if mask != 0 {
                    return j + mask.trailing_zeros() as usize;
                }
                j += 16;
            }
        }
    }
    while let Some(&c) = b.get(j) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return j;
        }
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests;

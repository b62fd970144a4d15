//! A JSON validator for the hot path: checks the grammar of one record without building
//! anything.
//!
//! Validation is the most expensive per-byte step after inflating (serde_json's `IgnoredAny`
//! path runs at ~0.9 GB/s here, and sonic-rs and simd-json are slower still on records of a few
//! hundred bytes). This validator finds string ends 16 bytes at a time with SSE2 (32 with AVX2
//! where the CPU has it: see `value_with`) and does the rest with plain loops, about twice as
//! fast on Firehose-style events. It only answers "valid or not, and where"; the caller asks
//! serde_json for a message when a record is invalid, so error texts stay serde_json's. UTF-8 is checked separately (simdutf8), so this sees bytes only.
//! A differential test against serde_json guards it (`tests::agrees_with_serde_json`).

use super::keycheck::KeyCheck;

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
    /// The key is `b[start..end]` (without its quotes); `escaped`: it holds a backslash escape
    /// (the validator saw it while passing). The whole buffer is given so that a short key can
    /// be read with fixed-size loads past its end.
    fn key(&mut self, b: &[u8], start: usize, end: usize, escaped: bool, depth: usize);
    fn close_object(&mut self);
    /// A number with an exponent or longer than [`PLAIN_NUMBER_CHARS`], or a `\uD800`–`\uDFFF`
    /// escape: the only text where a value can lie beyond what a double or UTF-8 holds (see
    /// [`KeyCheck::plain_values`]). Rare, so its cost is one test per number and per `\u`.
    fn unusual_value(&mut self);
}

/// Numbers of up to this many characters without an exponent are within ±f64::MAX (which has
/// 309 integer digits).
pub const PLAIN_NUMBER_CHARS: usize = 300;

/// The plain validator: keys are not looked at (compiled away).
struct NoKeys;

impl Keys for NoKeys {
    #[inline(always)]
    fn open_object(&mut self) {}
    #[inline(always)]
    fn key(&mut self, _: &[u8], _: usize, _: usize, _: bool, _: usize) {}
    #[inline(always)]
    fn close_object(&mut self) {}
    #[inline(always)]
    fn unusual_value(&mut self) {}
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

///
/// On a CPU with AVX2 (told once, then a cached flag) the whole walk is compiled for it: strings
/// are searched 32 bytes at a time, and the compiler's three-operand vector and BMI forms save
/// register copies: 3-4% fewer instructions than the baseline x86_64 (SSE2) walk.
fn value_with<K: Keys>(b: &[u8], i: usize, keys: &mut K) -> Result<usize, usize> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
    {
        // SAFETY: the CPU has every feature `value_with_avx2` is compiled for (checked above).
        return unsafe { value_with_avx2(b, i, keys) };
    }
    walk::<false, K>(b, i, keys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2")]
unsafe fn value_with_avx2<K: Keys>(b: &[u8], i: usize, keys: &mut K) -> Result<usize, usize> {
    walk::<true, K>(b, i, keys)
}

#[inline(always)]
fn walk<const W: bool, K: Keys>(b: &[u8], mut i: usize, keys: &mut K) -> Result<usize, usize> {
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
                    i = member_key::<W, K>(b, i, open.depth, keys)?;
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
            Some(b'"') => i = string_escaped::<W, K>(b, i, keys)?.0,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number_watched(b, i, keys)?,
            _ => return Err(i),
        }
        // After a value: close containers, or move to the next element.
        loop {
            if open.depth == 0 {
                return Ok(i);
            }
            // Compact JSON (what producers send): `,"` after a member's value starts the next
            // member's key. One two-byte test instead of the general path's.
            if open.in_object && b.get(i..i + 2) == Some(b",\"") {
                i = member_key::<W, K>(b, i + 1, open.depth, keys)?;
                continue 'value;
            }
            i = ws(b, i);
            let in_object = open.in_object;
            match b.get(i) {
                Some(b',') => {
                    i = ws(b, i + 1);
                    if in_object {
                        i = member_key::<W, K>(b, i, open.depth, keys)?;
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
fn member_key<const W: bool, K: Keys>(
    b: &[u8],
    i: usize,
    depth: usize,
    keys: &mut K,
) -> Result<usize, usize> {
    if b.get(i) != Some(&b'"') {
        return Err(i);
    }
    let (end, escaped) = string_escaped::<W, K>(b, i, keys)?;
    keys.key(b, i + 1, end - 1, escaped, depth);
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
    // Compact JSON (what producers send) has no whitespace: one test settles it.
    match b.get(i) {
        Some(&c) if c > b' ' => return i,
        _ => {}
    }
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
pub(crate) fn number(b: &[u8], i: usize) -> Result<usize, usize> {
    number_watched(b, i, &mut NoKeys)
}

/// [`number`], telling `keys` of an exponent or of more than [`PLAIN_NUMBER_CHARS`]
/// characters (in the branches that meet them, so a plain number pays one comparison).
#[inline(always)]
fn number_watched<K: Keys>(b: &[u8], mut i: usize, keys: &mut K) -> Result<usize, usize> {
    let start = i;
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
        keys.unusual_value();
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
    if i - start > PLAIN_NUMBER_CHARS {
        keys.unusual_value();
    }
    Ok(i)
}

/// A string starting at the quote `b[i]`: the position after its closing quote, and whether
/// it holds an escape (the key check needs to know, and finding out here is free while a second
/// search of the key's bytes is not). A `\uD800`–`\uDFFF` escape is told to `keys`.
#[inline(always)]
fn string_escaped<const W: bool, K: Keys>(
    b: &[u8],
    i: usize,
    keys: &mut K,
) -> Result<(usize, bool), usize> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j = find_special_in::<W>(b, j);
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
                    if hex[0] | 0x20 == b'd' && hex[1] >= b'8' {
                        keys.unusual_value();
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

/// [`find_special`] in the walk `W` says: 32 bytes at a time in the AVX2 one.
#[inline(always)]
fn find_special_in<const W: bool>(b: &[u8], j: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if W {
        // SAFETY: `W` is true only in the walk `value_with` enters after checking that the CPU
        // has AVX2.
        return unsafe { find_special_avx2(b, j) };
    }
    find_special(b, j)
}

/// [`find_special`], 32 bytes at a time; the last bytes (fewer than 32) go to it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn find_special_avx2(b: &[u8], mut j: usize) -> usize {
    use std::arch::x86_64::*;
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let ctl = _mm256_set1_epi8(0x1f);
    while j + 32 <= b.len() {
        // SAFETY: the load reads 32 bytes at `j`, and the loop guarantees `j + 32 <= len`.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(j) as *const __m256i) };
        let special = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, backslash)),
            _mm256_cmpeq_epi8(_mm256_max_epu8(v, ctl), ctl),
        );
        let mask = _mm256_movemask_epi8(special) as u32;
        if mask != 0 {
            return j + mask.trailing_zeros() as usize;
        }
        j += 32;
    }
    find_special(b, j)
}

/// The first position at or after `j` holding `"`, `\` or a control character (< 0x20), or
/// `b.len()`.
#[inline(always)]
pub(crate) fn find_special(b: &[u8], mut j: usize) -> usize {
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

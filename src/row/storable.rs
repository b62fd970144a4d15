//! What BigQuery cannot hold at all — numbers beyond ±f64::MAX (`1e400`) and lone UTF-16
//! surrogate escapes (`"\ud800"`) — found in valid JSON text and named by their field path
//! (the row contract's `storable` check; `scan` walks the same text for keys).

use crate::json::lex::*;

/// One step of a field path, for messages.
enum Step {
    Key(usize, usize),
    Index(usize),
}

fn path_of(b: &[u8], steps: &[Step]) -> String {
    let mut p = String::new();
    for s in steps {
        match *s {
            Step::Key(s, e) => {
                if !p.is_empty() {
                    p.push('.');
                }
                p.push_str(&String::from_utf8_lossy(&decode(&b[s..e])));
            }
            Step::Index(n) => p.push_str(&format!("[{n}]")),
        }
    }
    if p.is_empty() {
        p.push_str("(the row)");
    }
    p
}

/// Whether `b` could hold what [`storable`] refuses; `false` means it cannot (a superset
/// test, checked against the walk in `tests::the_quick_look_misses_nothing`). A lone surrogate
/// escape starts `\u` then `d`/`D`. A number beyond ±f64::MAX has an exponent (an `e` after a
/// digit, in a token that starts where a value can) or is more than 308 characters of `-`, `.` and digits, which spans at
/// least 37 aligned 8-byte words of such characters.
fn maybe_unstorable(b: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    return maybe_unstorable_sse2(b);
    #[cfg(not(target_arch = "x86_64"))]
    maybe_unstorable_swar(b)
}

/// [`maybe_unstorable`] 16 bytes at a time with SSE2 (part of the x86_64 baseline): a fifth of
/// the SWAR loop's instructions, which copied every word out with a `memcpy` call and cost as
/// much per row as validating it. A number beyond ±f64::MAX that has no exponent is more than
/// 308 numeric characters, which span at least 18 aligned 16-byte blocks of them.
#[cfg(target_arch = "x86_64")]
fn maybe_unstorable_sse2(b: &[u8]) -> bool {
    use std::arch::x86_64::*;
    let mut prev_digit = 0u32;
    let mut run = 0;
    let mut at = 0;
    while at < b.len() {
        let n = (b.len() - at).min(16);
        let mut tail = [0u8; 16];
        let block: &[u8] = if n == 16 {
            &b[at..at + 16]
        } else {
            // The last bytes, zero-padded: a zero is none of what is looked for.
            tail[..n].copy_from_slice(&b[at..]);
            &tail
        };
        // SAFETY: `block` holds exactly 16 bytes (a 16-byte slice of `b`, or `tail`), which the
        // unaligned load reads; the rest is SSE2 arithmetic, always present on x86_64.
        let (backslash, e, digit, numeric) = unsafe {
            let v = _mm_loadu_si128(block.as_ptr() as *const __m128i);
            let at_least = |c: u8| _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(c as i8)), v);
            let at_most = |c: u8| _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(c as i8)), v);
            let mask = |m: __m128i| _mm_movemask_epi8(m) as u32;
            (
                mask(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))),
                mask(_mm_cmpeq_epi8(
                    _mm_or_si128(v, _mm_set1_epi8(0x20)),
                    _mm_set1_epi8(b'e' as i8),
                )),
                mask(_mm_and_si128(at_least(b'0'), at_most(b'9'))),
                mask(_mm_and_si128(at_least(b'-'), at_most(b'9'))),
            )
        };
        let after_digit = (digit << 1 | prev_digit >> 15) & 0xffff;
        prev_digit = digit;
        let mut spots = (e & after_digit) | backslash;
        while spots != 0 {
            let k = at + spots.trailing_zeros() as usize;
            spots &= spots - 1;
            if suspicious_at(b, k) {
                return true;
            }
        }
        if numeric == 0xffff && n == 16 {
            run += 1;
            if run >= 18 {
                return true;
            }
        } else {
            run = 0;
        }
        at += 16;
    }
    false
}

/// [`maybe_unstorable`] eight bytes at a time (SWAR), where SSE2 is not there.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(super) fn maybe_unstorable_swar(b: &[u8]) -> bool {
    // Eight bytes at a time (SWAR): `\`, an `e`/`E` right after a digit, and words of
    // numeric characters are found with a few integer operations per word; only those spots
    // are looked at closely. Most rows have a few (hex IDs put digits before an `e`).
    let mut prev_digit = 0u64;
    let mut run = 0;
    let mut at = 0;
    while at < b.len() {
        let mut word = [0u8; 8];
        let n = (b.len() - at).min(8);
        word[..n].copy_from_slice(&b[at..at + n]);
        let w = u64::from_le_bytes(word);
        let low = w & (ONES * 0x7f);
        let ascii = !w & HIGH;
        // Per byte, exact (no carries between bytes): the high bit says "at least".
        let at_least = |c: u8| (low + ONES * u64::from(0x80 - c)) & HIGH;
        let digit = at_least(b'0') & !at_least(b':') & ascii;
        let numeric = at_least(b'-') & !at_least(b':') & ascii;
        let e = equal(w | (ONES * 0x20), b'e');
        let backslash = equal(w, b'\\');
        let after_digit = (digit << 8) | (prev_digit >> 56);
        prev_digit = digit;
        let mut spots = (e & after_digit) | backslash;
        while spots != 0 {
            let k = at + (spots.trailing_zeros() / 8) as usize;
            spots &= spots - 1;
            if suspicious_at(b, k) {
                return true;
            }
        }
        if numeric == HIGH && n == 8 {
            run += 1;
            if run >= 37 {
                return true;
            }
        } else {
            run = 0;
        }
        at += 8;
    }
    false
}

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGH: u64 = ONES * 0x80;

/// The high bit of every byte of `w` that equals `c`, exactly.
fn equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    !(((x & (ONES * 0x7f)) + ONES * 0x7f) | x) & HIGH
}

/// At `b[k]`, a `\` starting a surrogate escape or an `e` that is a number's exponent.
fn suspicious_at(b: &[u8], k: usize) -> bool {
    if b[k] == b'\\' {
        return b.get(k + 1) == Some(&b'u') && matches!(b.get(k + 2), Some(b'd' | b'D'));
    }
    // Hex in strings (IDs, hashes) has digits before an `e` too: a number's text starts after
    // `:`, `[`, `,` or at the start, past any whitespace; a string's after a quote.
    let mut j = k;
    while j > 0 && matches!(b[j - 1], b'0'..=b'9' | b'.' | b'+' | b'-') {
        j -= 1;
    }
    while j > 0 && matches!(b[j - 1], b' ' | b'\t' | b'\n' | b'\r') {
        j -= 1;
    }
    j == 0 || matches!(b[j - 1], b':' | b'[' | b',')
}

/// Whether a number's text is beyond what a double holds (it parses to ±infinity).
pub(crate) fn number_overflows(text: &str) -> bool {
    // Only an exponent or more than 308 digits can reach f64::MAX (≈ 1.8e308).
    (text.len() > 308 || text.bytes().any(|c| c == b'e' || c == b'E'))
        && text.parse::<f64>().is_ok_and(|x| x.is_infinite())
}

/// The first lone surrogate escape (`\ud800` without its pair) in a string's content.
pub(crate) fn lone_surrogate(raw: &[u8]) -> Option<&str> {
    let hex = |i: usize| -> Option<u32> {
        let s = std::str::from_utf8(raw.get(i..i + 4)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &raw[i..]) {
        let k = i + k;
        if raw.get(k + 1) != Some(&b'u') {
            i = k + 2;
            continue;
        }
        let text = || std::str::from_utf8(&raw[k..k + 6]).ok();
        match hex(k + 2) {
            Some(0xD800..=0xDBFF) => {
                let paired = raw.get(k + 6..k + 8) == Some(b"\\u")
                    && matches!(hex(k + 8), Some(0xDC00..=0xDFFF));
                if !paired {
                    return text();
                }
                i = k + 12;
            }
            Some(0xDC00..=0xDFFF) => return text(),
            _ => i = k + 6,
        }
        if i >= raw.len() {
            break;
        }
    }
    None
}

/// Whether BigQuery can hold every value of `b` (valid JSON): no number beyond ±f64::MAX and
/// no lone surrogate escape, in keys or values. The error names the field path.
pub fn storable(b: &[u8]) -> Result<(), String> {
    // Nearly every row holds neither: a quick look for what could be one spares them the
    // walk below, which costs as much as encoding the row for Storage Write.
    if !maybe_unstorable(b) {
        return Ok(());
    }
    walk_storable(b)
}

/// [`storable`]'s walk over every value.
pub(super) fn walk_storable(b: &[u8]) -> Result<(), String> {
    const BAD: &str = "internal error: the row is not valid JSON";
    // (is an object, the current step)
    let mut steps: Vec<(bool, Step)> = Vec::new();
    let mut want_key = false;
    let mut i = 0;
    let path = |steps: &[(bool, Step)]| {
        let s: Vec<Step> = steps
            .iter()
            .map(|(_, s)| match *s {
                Step::Key(a, z) => Step::Key(a, z),
                Step::Index(n) => Step::Index(n),
            })
            .collect();
        path_of(b, &s)
    };
    loop {
        i = skip_ws(b, i);
        let Some(&c) = b.get(i) else {
            return Ok(());
        };
        match c {
            b'{' => {
                steps.push((true, Step::Key(0, 0)));
                want_key = true;
                i += 1;
            }
            b'[' => {
                steps.push((false, Step::Index(0)));
                want_key = false;
                i += 1;
            }
            b'}' | b']' => {
                steps.pop();
                if steps.is_empty() {
                    return Ok(());
                }
                i += 1;
            }
            b',' => {
                match steps.last_mut() {
                    Some((true, _)) => want_key = true,
                    Some((false, Step::Index(n))) => *n += 1,
                    _ => {}
                }
                i += 1;
            }
            b'"' => {
                let end = string_end(b, i).ok_or(BAD)?;
                let content = &b[i + 1..end - 1];
                if want_key {
                    if let Some((_, step)) = steps.last_mut() {
                        *step = Step::Key(i + 1, end - 1);
                    }
                    if let Some(s) = lone_surrogate(content) {
                        return Err(format!(
                            "field `{}`: its name has a lone surrogate escape `{s}`, which \
                             BigQuery cannot store",
                            path(&steps)
                        ));
                    }
                    let colon = skip_ws(b, end);
                    if b.get(colon) != Some(&b':') {
                        return Err(BAD.into());
                    }
                    want_key = false;
                    i = colon + 1;
                    continue;
                }
                if let Some(s) = lone_surrogate(content) {
                    return Err(format!(
                        "field `{}`: the string has a lone surrogate escape `{s}` (half of a \
                         UTF-16 pair), which BigQuery cannot store",
                        path(&steps)
                    ));
                }
                if steps.is_empty() {
                    return Ok(());
                }
                i = end;
            }
            _ => {
                let end = scalar_end(b, i);
                if end == i {
                    return Err(BAD.into());
                }
                let text = std::str::from_utf8(&b[i..end]).map_err(|_| BAD)?;
                if number_overflows(text) {
                    return Err(format!(
                        "field `{}`: the number {} is out of range (BigQuery numbers stop at \
                         ±1.7976931348623157e308)",
                        path(&steps),
                        if text.len() > 40 {
                            format!("{}…", &text[..40])
                        } else {
                            text.to_string()
                        }
                    ));
                }
                if steps.is_empty() {
                    return Ok(());
                }
                i = end;
            }
        }
    }
}

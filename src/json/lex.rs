//! Small lexing steps over JSON text already known to be valid (the row stage's key scan, the
//! mapping's field reads, the storability check): skip whitespace, find a string's or a value's
//! end, decode a string's escapes, hash a key. No recursion and no allocation unless a string
//! holds escapes.

use std::borrow::Cow;

/// Index just past the whitespace starting at `i`.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `i` is at a string's opening quote: the index just past its closing quote. The validator's
/// inlined 16-byte search, not `memchr2`: most strings are shorter than a call's set-up.
#[inline]
pub(crate) fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        // In valid JSON a string holds no control character, so this stops at `"` or `\`.
        let k = super::validate::find_special(b, j);
        match b.get(k)? {
            b'"' => return Some(k + 1),
            _ => j = k + 2,
        }
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

pub(crate) fn scalar_end(b: &[u8], mut i: usize) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Random valid JSON whose strings hold brackets, escaped quotes and backslashes, nested to
    /// various depths, long enough to cross the string search's 16-byte blocks.
    fn doc(state: &mut u64, depth: usize, out: &mut String) {
        let pick = step(state) % if depth > 5 { 3 } else { 6 };
        match pick {
            0 => out.push_str(["1", "-2.5e3", "true", "null", "0"][(step(state) % 5) as usize]),
            1 | 2 => {
                out.push('"');
                for _ in 0..step(state) % 40 {
                    let piece = ["a", "]", "}", "[", "{", "\\\"", "\\\\", "é", ",", " "];
                    out.push_str(piece[(step(state) % 10) as usize]);
                }
                out.push('"');
            }
            3 | 4 => {
                out.push('[');
                for k in 0..step(state) % 6 {
                    if k > 0 {
                        out.push_str(if step(state).is_multiple_of(2) {
                            ","
                        } else {
                            " , "
                        });
                    }
                    doc(state, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for k in 0..step(state) % 6 {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("\"k{k}\\\"]\":"));
                    doc(state, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    /// The skip over valid text (what Storage Write uses for the values of unknown keys) ends
    /// every value where the validator does, at every alignment and whatever follows.
    #[test]
    fn value_end_agrees_with_the_validator() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut containers = 0;
        for round in 0..4000 {
            let mut text = " ".repeat(round % 17);
            let start = text.len();
            doc(&mut state, 0, &mut text);
            text.push_str(if round % 2 == 0 { "]}" } else { ",\"x\":[1]}" });
            let b = text.as_bytes();
            let want = crate::json::validate::value(b, start).expect("valid");
            assert_eq!(value_end(b, start), Some(want), "{text}");
            containers += usize::from(matches!(b[start], b'[' | b'{'));
        }
        assert!(containers > 1000, "containers met: {containers}");
    }

    /// Text that is not JSON ends the skip somewhere or nowhere, but never panics.
    #[test]
    fn value_end_never_panics_on_broken_text() {
        for text in [
            "[",
            "[\"",
            "{\"a\":\\",
            "\"abc\\",
            "\"\\\"",
            "]]]",
            "[\\\"]",
        ] {
            let _ = value_end(text.as_bytes(), 0);
        }
    }
}

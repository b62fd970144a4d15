//! Finding where one JSON value ends in a stream of concatenated values, without parsing it.
//!
//! Firehose concatenates records with no delimiter unless the producer adds one, so the only way
//! to split `{"a":1}{"a":2}` is to follow the JSON structure: nesting depth, and strings (where
//! braces and brackets do not count, and `\"` does not close). The scanner is resumable so a value
//! may straddle buffer refills, and it keeps going while the framer discards an oversized value,
//! which is how the framer resynchronises on the next record.

/// What kind of top-level value is being scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `{...}` or `[...]`: ends when the depth of its own bracket type returns to zero.
    Container { open: u8, close: u8 },
    /// `"..."`.
    String,
    /// Numbers, `true`, garbage: ends at whitespace or the start of another value.
    Scalar,
}

/// Resumable scan state for one value.
#[derive(Debug, Clone)]
pub struct Scanner {
    kind: Kind,
    depth: u32,
    in_string: bool,
    escape: bool,
    /// Whether the value's first byte was consumed.
    started: bool,
}

/// Bytes that may end a scalar: whitespace or the start/end of a structure.
fn ends_scalar(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'[' | b'"' | b'}' | b']' | b','
    )
}

pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner {
    /// Starts a value whose first byte is `first`.
    pub fn start(first: u8) -> Scanner {
        let kind = match first {
            b'{' => Kind::Container {
                open: b'{',
                close: b'}',
            },
            b'[' => Kind::Container {
                open: b'[',
                close: b']',
            },
            b'"' => Kind::String,
            _ => Kind::Scalar,
        };
        Scanner {
            kind,
            depth: 0,
            in_string: false,
            escape: false,
            started: false,
        }
    }

    /// Scans `buf` (the value's bytes so far, with `from` bytes already scanned) and returns the
    /// value's length once it is complete. `None` means more input is needed; call again with a
    /// longer `buf` and `from` = the old `buf.len()` — or, when the framer dropped the bytes seen
    /// so far, with only the new bytes and `from` = 0: the state carries over.
    pub fn advance(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        match self.kind {
            Kind::Scalar => {
                if !self.started {
                    // The first byte belongs to the value even if it is a stray `}` or `,`.
                    self.started = true;
                    i += 1;
                }
                buf[i.min(buf.len())..]
                    .iter()
                    .position(|&b| ends_scalar(b))
                    .map(|p| i + p)
            }
            Kind::String => {
                if !self.started {
                    self.started = true;
                    self.in_string = true;
                    i += 1;
                }
                self.scan_string(buf, &mut i).then_some(i)
            }
            Kind::Container { open, close } => {
                let n = buf.len();
                while i < n {
                    if self.in_string {
                        if !self.scan_string(buf, &mut i) {
                            return None;
                        }
                        continue;
                    }
                    let b = buf[i];
                    i += 1;
                    if b == b'"' {
                        self.in_string = true;
                    } else if b == open {
                        self.depth += 1;
                    } else if b == close {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            return Some(i);
                        }
                    }
                }
                None
            }
        }
    }

    /// Moves `i` past the closing quote of the current string. `false` if `buf` ends first.
    #[inline]
    fn scan_string(&mut self, buf: &[u8], i: &mut usize) -> bool {
        if self.escape {
            if *i >= buf.len() {
                return false;
            }
            self.escape = false;
            *i += 1;
        }
        while let Some(p) = memchr::memchr2(b'"', b'\\', &buf[*i..]) {
            let at = *i + p;
            if buf[at] == b'\\' {
                if at + 1 >= buf.len() {
                    self.escape = true;
                    *i = buf.len();
                    return false;
                }
                *i = at + 2;
            } else {
                *i = at + 1;
                self.in_string = false;
                return true;
            }
        }
        *i = buf.len();
        false
    }

    /// A scalar runs to the end of the stream; every other kind is incomplete there.
    pub fn complete_at_eof(&self) -> bool {
        self.kind == Kind::Scalar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], chunk: usize) -> Vec<String> {
        // Feeds the scanner in `chunk`-byte steps to exercise resumption.
        let mut out = Vec::new();
        let mut start = 0;
        while start < input.len() {
            if is_space(input[start]) {
                start += 1;
                continue;
            }
            let mut s = Scanner::start(input[start]);
            let mut seen = 0;
            let mut end = None;
            while end.is_none() {
                let avail = (seen + chunk).min(input.len() - start);
                end = s.advance(&input[start..start + avail], seen);
                if end.is_none() && start + avail == input.len() {
                    assert!(s.complete_at_eof(), "incomplete value");
                    end = Some(avail);
                }
                seen = avail;
            }
            let e = end.unwrap();
            out.push(String::from_utf8(input[start..start + e].to_vec()).unwrap());
            start += e;
        }
        out
    }

    #[test]
    fn splits_concatenated_values_at_any_chunking() {
        let input = br#"{"a":"}{\"x"}{"b":[1,{"c":"\\"}]} [1,[2]] "s\"t" 12 {"d":{}}"#;
        for chunk in 1..8 {
            assert_eq!(
                split(input, chunk),
                vec![
                    r#"{"a":"}{\"x"}"#,
                    r#"{"b":[1,{"c":"\\"}]}"#,
                    "[1,[2]]",
                    r#""s\"t""#,
                    "12",
                    r#"{"d":{}}"#
                ],
                "chunk {chunk}"
            );
        }
    }
}

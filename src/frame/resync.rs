//! Where the next record hides inside a broken value's strings.
//!
//! A record cut inside a string or key (`{"a":"never closed` followed by `{"i":2}`) reads on
//! as a string until the next record's first quote closes it: `"never closed}{"`. The value
//! then breaks just after, and the next record's opening brace is already behind the break, in
//! string content. Resuming after the break would lose that record, so the framer looks back
//! for it: a `{` or `[` inside one of the broken value's strings from which complete values
//! parse, back to back, until one runs past that string's closing quote. Running past the
//! quote is the evidence: the quote was structure for the next record, not the end of a string
//! of the broken one. A brace in string content that parses only within its string (`"got {}"`)
//! is text, and a structural `{` inside the broken value never qualifies (its value would break
//! where the broken value did), so nothing inside a broken value becomes a phantom row.
//!
//! The look-back costs at most a few passes over the broken span (a budget), so an adversarial
//! span cannot make framing quadratic.

use crate::json::{self, Scan};

/// What the look-back found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Restart {
    /// The next record starts here.
    At(usize),
    None,
    /// The buffered bytes end before it can be told: read on and look again.
    NeedMore,
}

/// The first position in `data[..at]` (plus the escape at `at`, if the value broke on one)
/// inside a string where the next record starts, by the rule above. `eof`: `data` runs to the
/// end of the stream.
pub(super) fn restart_in_strings(data: &[u8], at: usize, eof: bool) -> Restart {
    let at = at.min(data.len());
    let escape = data.get(at) == Some(&b'\\');
    // A record cut inside an escape breaks on it (`"ab\{"i":2}`, `"\u00e {"i":2}`): the next
    // record starts in what follows, up to the string's end.
    let end = if escape {
        // The string goes on after the broken escape, to the next record's first quote.
        let close = string_end(data, at + 1, data.len(), at);
        if close == data.len() {
            return if eof {
                Restart::None
            } else {
                Restart::NeedMore
            };
        }
        close + 1
    } else {
        at
    };
    let mut budget = 4 * end + 64 * 1024;
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'"', &data[i..end]) {
        let open = i + p;
        let close = string_end(data, open + 1, end, at);
        let mut c = open + 1;
        while let Some(q) = memchr::memchr2(b'{', b'[', &data[c..close]) {
            let cand = c + q;
            let closed = close < end;
            match chain_passes(data, cand, close, closed && !eof, &mut budget) {
                Some(true) => return Restart::At(cand),
                Some(false) => {}
                None if eof => {}
                None => return Restart::NeedMore,
            }
            if budget == 0 {
                return Restart::None;
            }
            c = cand + 1;
        }
        if close >= end {
            return Restart::None;
        }
        i = close + 1;
    }
    Restart::None
}

/// Where the next record starts when a value broke at `at`, on a `{` or `[` (or the line break
/// before one), right after a
/// complete nested value: a record cut just after a `:`, `,` or `[` (`{"a":` then
/// `{"i":2}{"i":3}`) takes the next record in as its member, and the value breaks on the record
/// after it. That nested value is a complete JSON value starting after the bad bytes, so it is
/// the next record: the start of the structural `{…}` or `[…]` (outside strings) that closes
/// right before `at` (whitespace aside), when it sits where a member value may begin, on the
/// broken value's first line. One pass.
pub(super) fn restart_at_nested_value(data: &[u8], at: usize) -> Option<usize> {
    // The break is on the record after it, or on the line break before that record's line.
    let next = data
        .get(at..)?
        .iter()
        .position(|b| !b.is_ascii_whitespace())?;
    if !matches!(data[at + next], b'{' | b'[') {
        return None;
    }
    let mut opens: Vec<usize> = Vec::new();
    let mut last_closed = None;
    let mut i = 0;
    while i < at {
        match data[i] {
            b'"' => {
                last_closed = None;
                i = string_end(data, i + 1, at, usize::MAX);
            }
            b'{' | b'[' => {
                opens.push(i);
                last_closed = None;
            }
            b'}' | b']' => last_closed = opens.pop().map(|s| (s, opens.len())),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => last_closed = None,
        }
        i += 1;
    }
    // Only a value nested in the broken one (depth 1 or more), preceded by `:`, `,` or `[`.
    let (start, depth) = last_closed?;
    let before = data[..start]
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    // On the broken value's first line only: below it, an indented `{…}` is the inside of a
    // pretty-printed value, which must not become a row.
    let first_line = memchr::memchr(b'\n', &data[..start]).is_none();
    (first_line && depth > 0 && matches!(data[before], b':' | b',' | b'[')).then_some(start)
}

/// Whether the next record starts at the `{` or `[` at `c`, glued to bytes that are not JSON
/// (`xyz{"i":2}{"i":3}`, binary junk, `12ab{"i":2}`): it does when complete values parse from
/// `c`, back to back, to the end of its line (or of `data`, when `end` says that is a record
/// boundary: the stream's end or a gzip member boundary) or to bytes that are never text. A
/// `{` in prose (`got {"a":1} from x`) is not followed by records to its line's end, so the
/// text stays one error. `None` when `data` ends before that can be told. Charges what it
/// scans to `budget`.
pub(super) fn records_to_line_end(
    data: &[u8],
    c: usize,
    end: bool,
    budget: &mut usize,
) -> Option<bool> {
    let mut pos = c;
    loop {
        match json::scan(&data[pos..]) {
            Scan::Complete(n) => {
                *budget = budget.saturating_sub(n);
                pos += n;
                while pos < data.len() && matches!(data[pos], b' ' | b'\t' | b'\r' | 0x1e) {
                    pos += 1;
                }
                match data.get(pos) {
                    None => return end.then_some(true),
                    Some(b'\n') => return Some(true),
                    // Bytes that are never text (control bytes, bytes UTF-8 never holds):
                    // binary junk between records, not prose around a brace.
                    Some(&b) if b < 0x20 || b == 0x7f || b == 0xc0 || b == 0xc1 || b >= 0xf5 => {
                        return Some(true)
                    }
                    Some(b'{' | b'[') if *budget > 0 => {}
                    Some(_) => return Some(false),
                }
            }
            Scan::Invalid(p) => {
                *budget = budget.saturating_sub(p);
                return Some(false);
            }
            Scan::Incomplete => {
                *budget = budget.saturating_sub(data.len() - pos);
                return if end { Some(false) } else { None };
            }
        }
    }
}

/// The closing quote of the string whose content starts at `from`, or `end` if the string
/// does not close before it. The escape at `at` (where the value broke) escapes nothing.
fn string_end(data: &[u8], from: usize, end: usize, at: usize) -> usize {
    let mut j = from;
    while let Some(p) = memchr::memchr2(b'"', b'\\', &data[j..end]) {
        let k = j + p;
        if data[k] == b'"' {
            return k;
        }
        if k == at {
            j = k + 1;
        } else {
            j = k + 2;
        }
        if j >= end {
            break;
        }
    }
    end
}

/// Whether complete values parse back to back from `c` until one runs past `close` (or, when
/// `close` is a closing quote and more of the stream is to come, is still valid past it at the
/// end of the buffered bytes); `None` when the buffered bytes end before that can be told.
fn chain_passes(
    data: &[u8],
    c: usize,
    close: usize,
    valid_past_is_enough: bool,
    budget: &mut usize,
) -> Option<bool> {
    let mut pos = c;
    loop {
        match json::scan(&data[pos..]) {
            Scan::Complete(n) => {
                *budget = budget.saturating_sub(n);
                if pos + n > close {
                    return Some(true);
                }
                pos += n;
                while pos < data.len() && matches!(data[pos], b' ' | b'\t' | b'\n' | b'\r' | 0x1e) {
                    pos += 1;
                }
                if pos >= data.len() {
                    return None;
                }
                if !matches!(data[pos], b'{' | b'[') || *budget == 0 {
                    return Some(false);
                }
            }
            Scan::Invalid(p) => {
                *budget = budget.saturating_sub(p);
                return Some(false);
            }
            Scan::Incomplete => {
                *budget = budget.saturating_sub(data.len() - pos);
                return (valid_past_is_enough && data.len() > close + 1).then_some(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_break(s: &str) -> Option<usize> {
        let b = s.as_bytes();
        let at = match json::scan(b) {
            Scan::Invalid(at) => at,
            Scan::Incomplete => b.len(),
            Scan::Complete(n) => n,
        };
        match restart_in_strings(b, at, true) {
            Restart::At(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn finds_the_record_that_closed_a_cut_string() {
        assert_eq!(at_break(r#"{"a":"never closed}{"i":2}"#), Some(19));
        assert_eq!(at_break(r#"{"a":1,"ke{"i":2}"#), Some(10));
        assert_eq!(at_break(r#"{"a":"ab\{"i":2}"#), Some(9));
        // Values back to back before the one that runs past the quote land too.
        assert_eq!(at_break(r#"{"a":"ab[1,2]{}{"i":3}"#), Some(8));
    }

    #[test]
    fn braces_that_are_text_or_structure_are_not_records() {
        assert_eq!(at_break(r#"{"m":"got {} and [1]", "x": tru}"#), None);
        assert_eq!(at_break(r#"{"m":"{", "x": tru}{"i":1}"#), None);
        assert_eq!(at_break(r#"{"a":{"x":1} "b":2}"#), None);
    }

    fn nested(s: &str) -> Option<usize> {
        let b = s.as_bytes();
        match json::scan(b) {
            Scan::Invalid(at) => restart_at_nested_value(b, at),
            _ => None,
        }
    }

    #[test]
    fn a_record_taken_in_as_a_member_value_is_the_next_record() {
        assert_eq!(nested(r#"{"a":{"i":2}{"i":3}"#), Some(5));
        assert_eq!(nested(r#"{"a":[1, {"i":2} {"i":3}"#), Some(9));
        assert_eq!(nested(r#"{"a":{"b":{"i":2}{"i":3}"#), Some(10));
        assert_eq!(
            restart_at_nested_value(b"{\"a\":{\"i\":2}\n{}", 12),
            Some(5)
        );
        assert_eq!(nested(r#"{"a":"}{","b":{"i":2}[3]"#), Some(14));
        // Not after a complete nested value: nothing to resume at but the break.
        assert_eq!(nested(r#"{"a":1{"i":2}"#), None);
        assert_eq!(nested(r#"{"a":{"x":1},"b"{"i":2}"#), None);
        assert_eq!(nested(r#"{"a":{"x":1} "b":2}"#), None);
        // Inside a pretty-printed value that broke: text, not a record.
        let pretty = b"{\n  \"a\": {\"c\": 1}\n{\"i\":2}";
        assert_eq!(restart_at_nested_value(pretty, 17), None);
    }
}

use super::*;

/// A reader that returns at most `step` bytes per read, to exercise buffer refills.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The decompress thread's chunks as the framer takes them over (`Framer::take_chunks`): `step`
/// bytes each, after `pump::HEAD` free ones.
struct Chunks<'a> {
    data: &'a [u8],
    step: usize,
    /// Chunks given straight back (`Framer::take_chunks`' `give`).
    given: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Trickle {
            data: self.data,
            step: self.step,
        }
        .read(buf)
        .inspect(|&n| self.data = &self.data[n..])
    }
}

fn give_chunk(c: &mut Chunks<'_>, _: Vec<u8>) {
    c.given += 1;
}

fn take_chunk(c: &mut Chunks<'_>) -> io::Result<Option<crate::decode::pump::Chunk>> {
    use crate::decode::pump::{Chunk, HEAD};
    let n = c.step.min(c.data.len());
    if n == 0 {
        return Ok(None);
    }
    // Garbage in the free space: the framer must not read what it did not put there.
    let mut buf = vec![b'{'; HEAD + n];
    buf[HEAD..].copy_from_slice(&c.data[..n]);
    c.data = &c.data[n..];
    Ok(Some(Chunk {
        buf,
        from: HEAD,
        to: HEAD + n,
    }))
}

/// Every event over chunks of `step` bytes, as `(ordinal, offset, bytes, checked)` (errors
/// as `TOO LARGE` and their spooled bytes), checking on the way that each record framed in a
/// chunk is still where it was framed when the chunk is let go of — what lets the record stage
/// lend it instead of copying.
fn chunked(
    input: &[u8],
    framing: Framing,
    max: usize,
    step: usize,
) -> Vec<(u64, u64, String, bool)> {
    let chunks = Chunks {
        data: input,
        step,
        given: 0,
    };
    let mut f = Framer::new(chunks, framing, max);
    f.take_chunks(take_chunk, give_chunk);
    let mut out = Vec::new();
    let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
    let held = |pending: &mut Vec<(usize, Vec<u8>)>, buffer: &[u8]| {
        for (at, bytes) in pending.drain(..) {
            assert_eq!(
                &buffer[at..at + bytes.len()],
                &bytes[..],
                "record at {at} moved"
            );
        }
    };
    loop {
        let step = f.next_event_retiring().unwrap();
        if let Some(retired) = &step.retired {
            held(&mut pending, retired);
        }
        let Some(ev) = step.event else { break };
        if let (Event::Record(r), true) = (&ev, step.in_chunk) {
            pending.push((r.at, r.bytes.to_vec()));
        }
        out.push(described(ev));
    }
    held(&mut pending, f.buffer());
    out
}

/// An event as `(ordinal, offset, bytes, checked)`: a record's bytes and whether the framer
/// validated them, or `TOO LARGE` and an error's spooled bytes.
fn described(ev: Event<'_>) -> (u64, u64, String, bool) {
    match ev {
        Event::Record(r) => (
            r.ordinal,
            r.offset,
            String::from_utf8_lossy(r.bytes).into_owned(),
            r.json_checked,
        ),
        Event::Error(e) => {
            let mut raw = Vec::new();
            e.raw.reader().read_to_end(&mut raw).unwrap();
            assert_eq!(raw.len() as u64, e.raw.len());
            let raw = String::from_utf8_lossy(&raw);
            (e.ordinal, e.offset, format!("TOO LARGE {raw}"), false)
        }
    }
}

#[derive(Debug, PartialEq)]
enum Out {
    R(u64, u64, String),
    E(u64, u64, FrameErrorKind),
}

/// Every event's bytes, with whether the framer validated them (`true`) or hands them on for
/// the record stage to refuse (`false`); errors carry their spooled bytes.
fn events(input: &[u8], framing: Framing, max: usize, step: usize) -> Vec<(u64, String, bool)> {
    let mut f = Framer::new(Trickle { data: input, step }, framing, max);
    let mut out = Vec::new();
    while let Some(ev) = f.next_event().unwrap() {
        let (_, offset, bytes, checked) = described(ev);
        out.push((offset, bytes, checked));
    }
    let over_chunks: Vec<_> = chunked(input, framing, max, step)
        .into_iter()
        .map(|(_, offset, bytes, checked)| (offset, bytes, checked))
        .collect();
    assert_eq!(
        over_chunks, out,
        "chunks of {step} bytes changed the result"
    );
    out
}

/// `events` at several read sizes, which must all agree.
fn stream(input: &[u8], max: usize) -> Vec<(u64, String, bool)> {
    let a = events(input, Framing::Auto, max, 1 << 20);
    for step in [1, 3, 64, 4096] {
        assert_eq!(
            events(input, Framing::Auto, max, step),
            a,
            "read size {step} changed the result"
        );
    }
    assert_eq!(events(input, Framing::Concatenated, max, 1 << 20), a);
    a
}

fn ok(offset: u64, s: &str) -> (u64, String, bool) {
    (offset, s.to_string(), true)
}

fn bad(offset: u64, s: &str) -> (u64, String, bool) {
    (offset, s.to_string(), false)
}

fn frame_with(input: &[u8], framing: Framing, max: usize, step: usize) -> (Vec<Out>, Resolved) {
    let mut f = Framer::new(Trickle { data: input, step }, framing, max);
    let mut out = Vec::new();
    while let Some(ev) = f.next_event().unwrap() {
        out.push(match ev {
            Event::Record(r) => Out::R(
                r.ordinal,
                r.offset,
                String::from_utf8_lossy(r.bytes).into_owned(),
            ),
            Event::Error(e) => Out::E(e.ordinal, e.offset, e.kind),
        });
    }
    let records = |o: &Out| match o {
        Out::R(ordinal, offset, bytes) => Some((*ordinal, *offset, bytes.clone())),
        Out::E(..) => None,
    };
    let over_chunks: Vec<_> = chunked(input, framing, max, step)
        .into_iter()
        .filter(|(.., bytes, _)| !bytes.starts_with("TOO LARGE"))
        .map(|(ordinal, offset, bytes, _)| (ordinal, offset, bytes))
        .collect();
    let want: Vec<_> = out.iter().filter_map(records).collect();
    assert_eq!(
        over_chunks, want,
        "chunks of {step} bytes changed the result"
    );
    (out, f.resolved().unwrap())
}

fn frame(input: &[u8], framing: Framing) -> (Vec<Out>, Resolved) {
    let a = frame_with(input, framing, 1 << 20, 1 << 20);
    let b = frame_with(input, framing, 1 << 20, 3);
    assert_eq!(a.0, b.0, "result must not depend on read sizes");
    a
}

fn r(ordinal: u64, offset: u64, s: &str) -> Out {
    Out::R(ordinal, offset, s.to_string())
}

#[test]
fn newline_framing_tolerates_crlf_and_skips_blank_lines() {
    let (out, _) = frame(
        b"{\"a\":1}\r\n\r\n  \n{\"a\":2}\n{\"a\":3}",
        Framing::Newline,
    );
    assert_eq!(
        out,
        vec![
            r(0, 0, "{\"a\":1}"),
            r(1, 14, "{\"a\":2}"),
            r(2, 22, "{\"a\":3}")
        ]
    );
}

#[test]
fn custom_delimiter_splits_on_that_byte_only() {
    let (out, mode) = frame(
        b"{\"a\":1}\x1e{\"a\":\"x\ny\"}\x1e",
        "delimiter:\\x1e".parse().unwrap(),
    );
    assert_eq!(out, vec![r(0, 0, "{\"a\":1}"), r(1, 8, "{\"a\":\"x\ny\"}")]);
    assert_eq!(mode.name(), "delimiter");
}

#[test]
fn concatenated_framing_splits_values_with_and_without_whitespace() {
    let input = b"{\"a\":1}{\"a\":\"}{\"} \n {\n  \"a\": 3\n}[1]";
    let (out, _) = frame(input, Framing::Concatenated);
    assert_eq!(
        out,
        vec![
            r(0, 0, "{\"a\":1}"),
            r(1, 7, "{\"a\":\"}{\"}"),
            r(2, 20, "{\n  \"a\": 3\n}"),
            r(3, 32, "[1]")
        ]
    );
}

#[test]
fn auto_frames_one_value_per_line_and_hands_text_lines_on_to_be_refused() {
    let (out, mode) = frame(b"{\"a\":1}\n{\"a\":2}\nnot json\n", Framing::Auto);
    assert_eq!(mode.name(), "json");
    assert_eq!(out.len(), 3);
    assert_eq!(
        stream(b"{\"a\":1}\n{\"a\":2}\nnot json\n", 1 << 20),
        vec![ok(0, "{\"a\":1}"), ok(8, "{\"a\":2}"), bad(16, "not json")]
    );
}

#[test]
fn auto_frames_values_back_to_back() {
    let (out, mode) = frame(b"{\"a\":1}{\"a\":2}{\"a\":3}", Framing::Auto);
    assert_eq!(mode.name(), "json");
    assert_eq!(
        out,
        vec![
            r(0, 0, "{\"a\":1}"),
            r(1, 7, "{\"a\":2}"),
            r(2, 14, "{\"a\":3}")
        ]
    );
}

#[test]
fn auto_frames_pretty_printed_values() {
    let (out, _) = frame(b"{\n \"a\": 1\n}\n{\n \"a\": 2\n}\n", Framing::Auto);
    assert_eq!(out.len(), 2);
}

#[test]
fn auto_on_an_empty_object_yields_nothing() {
    assert!(stream(b"", 100).is_empty());
    assert!(stream(b"\n\n  \r\n\t", 100).is_empty());
}

#[test]
fn mixed_delimiters_never_decide_the_framing_once() {
    // Some producers append a newline and some do not: every record comes out either way.
    let mut input = Vec::new();
    let mut want = Vec::new();
    for i in 0..1001u32 {
        let rec = format!("{{\"i\":{i}}}");
        want.push(ok(input.len() as u64, &rec));
        input.extend_from_slice(rec.as_bytes());
        if i % 10 != 9 {
            input.push(b'\n');
        }
    }
    assert_eq!(stream(&input, 1 << 20), want);

    // The first record followed by " \n", then mostly nothing between records.
    let mut input = b"{\"first\":true} \n".to_vec();
    let mut want = vec![ok(0, "{\"first\":true}")];
    for i in 0..799u32 {
        let rec = format!("{{\"i\":{i},\"s\":\"x\\\"}}{{\"}}");
        want.push(ok(input.len() as u64, &rec));
        input.extend_from_slice(rec.as_bytes());
        if i % 100 == 0 {
            input.extend_from_slice(b"\r\n");
        }
    }
    assert_eq!(stream(&input, 1 << 20), want);
}

#[test]
fn a_bad_first_line_costs_only_itself_whatever_the_object_size() {
    for first in [
        "{\"a\":1",
        "{\"a\":\"unterminated",
        "{\"a\":[1,2",
        "{\"a\":",
    ] {
        let mut input = format!("{first}\n").into_bytes();
        let mut want = vec![bad(0, first)];
        for i in 0..5000 {
            let rec = format!("{{\"i\":{i}}}");
            want.push(ok(input.len() as u64, &rec));
            input.extend_from_slice(rec.as_bytes());
            input.push(b'\n');
        }
        // max far below the object's size: the outcome must not depend on it.
        assert_eq!(
            events(&input, Framing::Auto, 1000, 1 << 20),
            want,
            "{first}"
        );
        assert_eq!(events(&input, Framing::Auto, 1000, 7), want, "{first}");
    }
}

#[test]
fn after_bad_bytes_the_framer_resynchronises_at_the_next_value() {
    assert_eq!(
        stream(b"{\"a\":tru}{\"b\":2}", 100),
        vec![bad(0, "{\"a\":tru}"), ok(9, "{\"b\":2}")]
    );
    assert_eq!(
        stream(b"{\"a\":1{\"b\":2}", 100),
        vec![bad(0, "{\"a\":1"), ok(6, "{\"b\":2}")]
    );
    assert_eq!(
        stream(b"hello {\"x\":1}\n123abc\n{\"b\":2} 7 \"s\" true\n", 100),
        vec![
            bad(0, "hello {\"x\":1}"),
            bad(14, "123abc"),
            ok(21, "{\"b\":2}"),
            ok(29, "7"),
            ok(31, "\"s\""),
            ok(35, "true")
        ]
    );
    // A broken pretty-printed value is one error; nothing inside it becomes a row.
    let input = b"{\n  \"a\": {\"x\": 1}\n  \"b\": 2\n}\n{\"c\":3}\n";
    assert_eq!(
        stream(input, 100),
        vec![
            bad(0, "{\n  \"a\": {\"x\": 1}\n  \"b\": 2\n}"),
            ok(29, "{\"c\":3}")
        ]
    );
    // Truncated at the end of the object.
    assert_eq!(
        stream(b"{\"a\":1}{\"a\":", 100),
        vec![ok(0, "{\"a\":1}"), bad(7, "{\"a\":")]
    );
}

#[test]
fn json_text_sequences_and_a_byte_order_mark_are_framed_too() {
    assert_eq!(
        stream(b"\x1e{\"a\":1}\n\x1e{\"a\":2}\n", 100),
        vec![ok(1, "{\"a\":1}"), ok(10, "{\"a\":2}")]
    );
    let bom = b"\xEF\xBB\xBF{\"a\":1}{\"a\":2}{\"a\":3}";
    assert_eq!(stream(bom, 100).len(), 3);
    let (out, _) = frame(b"\xEF\xBB\xBF{\"a\":1}\n{\"a\":2}\n", Framing::Newline);
    assert_eq!(out, vec![r(0, 3, "{\"a\":1}"), r(1, 11, "{\"a\":2}")]);
}

#[test]
fn a_record_has_the_same_offset_under_every_framing_that_reads_it() {
    let input = b"  {\"a\":1}  \r\n\t{\"a\":2}\n\n{\"a\":3}";
    let newline: Vec<u64> = frame(input, Framing::Newline)
        .0
        .iter()
        .map(|o| match o {
            Out::R(_, off, _) | Out::E(_, off, _) => *off,
        })
        .collect();
    let json: Vec<u64> = stream(input, 100).iter().map(|e| e.0).collect();
    assert_eq!(newline, vec![2, 14, 23]);
    assert_eq!(json, newline);
}

#[test]
fn an_oversized_value_is_kept_whole_and_framing_goes_on() {
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(300));
    let input = format!("{{\"a\":1}}\n{big}{{\"a\":2}}\n");
    assert_eq!(
        stream(input.as_bytes(), 100),
        vec![
            ok(0, "{\"a\":1}"),
            bad(8, &format!("TOO LARGE {big}")),
            ok(8 + big.len() as u64, "{\"a\":2}")
        ]
    );
}

#[test]
fn an_oversized_last_line_is_one_error_and_no_phantom_row() {
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(300));
    let input = format!("{{\"a\":1}}\n{big}");
    for framing in [Framing::Newline, Framing::Auto] {
        for step in [1, 7, 100, 1 << 20] {
            assert_eq!(
                events(input.as_bytes(), framing, 100, step),
                vec![ok(0, "{\"a\":1}"), bad(8, &format!("TOO LARGE {big}"))]
                    .into_iter()
                    .map(|(o, s, c)| (o, s, c && framing == Framing::Auto))
                    .collect::<Vec<_>>(),
                "{framing:?} step {step}"
            );
        }
    }
}

#[test]
fn oversized_junk_is_kept_whole_too() {
    let junk = "z".repeat(500);
    let input = format!("{junk}\n{{\"a\":1}}");
    assert_eq!(
        stream(input.as_bytes(), 100),
        vec![bad(0, &format!("TOO LARGE {junk}")), ok(501, "{\"a\":1}")]
    );
}

#[test]
fn whitespace_costs_constant_memory() {
    // 8 MiB of blank lines, then a record: the window never grows past its initial size.
    struct Blank(usize);
    impl Read for Blank {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0);
            buf[..n].fill(b'\n');
            self.0 -= n;
            Ok(n)
        }
    }
    let input = Blank(8 << 20).chain(&b"{\"a\":1}"[..]);
    let mut f = Framer::new(input, Framing::Auto, 10 << 20);
    match f.next_event().unwrap() {
        Some(Event::Record(r)) => assert_eq!((r.offset, r.bytes), (8 << 20, &b"{\"a\":1}"[..])),
        _ => panic!("expected the record"),
    }
    assert!(f.next_event().unwrap().is_none());
    assert!(f.input.buf.len() <= 1 << 20, "{}", f.input.buf.len());
}

#[test]
fn an_oversized_line_is_an_error_and_the_next_line_still_comes_out() {
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(100));
    let input = format!("{{\"a\":1}}\n{big}\n{{\"a\":2}}\n");
    for step in [1, 7, 1 << 20] {
        let (out, _) = frame_with(input.as_bytes(), Framing::Newline, 50, step);
        assert_eq!(
            out,
            vec![
                r(0, 0, "{\"a\":1}"),
                Out::E(1, 8, FrameErrorKind::TooLarge { len: 108, max: 50 }),
                r(2, 117, "{\"a\":2}")
            ],
            "step {step}"
        );
    }
}

#[test]
fn an_oversized_concatenated_value_is_skipped_by_structure() {
    let big = format!("{{\"x\":\"{}}}{{\"}}", "y".repeat(100));
    let input = format!("{{\"a\":1}}{big}{{\"a\":2}}");
    for step in [1, 7, 1 << 20] {
        let (out, _) = frame_with(input.as_bytes(), Framing::Concatenated, 50, step);
        assert_eq!(
            out,
            vec![
                r(0, 0, "{\"a\":1}"),
                Out::E(1, 7, FrameErrorKind::TooLarge { len: 110, max: 50 }),
                r(2, 117, "{\"a\":2}")
            ],
            "step {step}"
        );
    }
}

#[test]
fn framing_names_parse() {
    assert_eq!(
        "delimiter:|".parse::<Framing>(),
        Ok(Framing::Delimiter(b'|'))
    );
    assert_eq!(
        "delimiter:\\n".parse::<Framing>(),
        Ok(Framing::Delimiter(b'\n'))
    );
    assert!("delimiter:ab".parse::<Framing>().is_err());
    assert!("json".parse::<Framing>().is_err());
}

#[test]
fn a_run_of_unfinished_lines_is_one_error_per_line_and_later_records_land() {
    // Each `{"broken":` would take the next line as its value: a line that starts with `{` in
    // column 0 is always a new record, so each bad line costs only itself (and no rescans).
    let mut input = Vec::new();
    for _ in 0..2000 {
        input.extend_from_slice(b"{\"broken\":\n");
    }
    input.extend_from_slice(b"{\"ok\":1}\n");
    for max in [100, 1 << 20] {
        for step in [5, 1 << 20] {
            let out = events(&input, Framing::Auto, max, step);
            assert_eq!(out.len(), 2001, "max {max} step {step}");
            assert!(out[..2000]
                .iter()
                .enumerate()
                .all(|(i, e)| *e == bad(11 * i as u64, "{\"broken\":")));
            assert_eq!(out[2000], ok(22000, "{\"ok\":1}"));
        }
    }
    // A value that spans lines is still one record when its inner lines are indented.
    assert_eq!(
        stream(
            b"{\n  \"a\": {\n    \"b\": [\n      {\"c\": 1}\n    ]\n  }\n}\n{\"d\":2}",
            1000
        ),
        vec![
            ok(
                0,
                "{\n  \"a\": {\n    \"b\": [\n      {\"c\": 1}\n    ]\n  }\n}"
            ),
            ok(49, "{\"d\":2}")
        ]
    );
}

#[test]
fn a_record_cut_inside_a_string_or_key_does_not_take_the_next_record() {
    assert_eq!(
        stream(br#"{"a":"never closed}{"i":2}"#, 100),
        vec![bad(0, r#"{"a":"never closed}"#), ok(19, r#"{"i":2}"#)]
    );
    assert_eq!(
        stream(br#"{"a":1,"ke{"i":2}{"i":3}"#, 100),
        vec![
            bad(0, r#"{"a":1,"ke"#),
            ok(10, r#"{"i":2}"#),
            ok(17, r#"{"i":3}"#)
        ]
    );
    // Values back to back after the cut land too, arrays and empty objects included.
    assert_eq!(
        stream(br#"{"a":"x[1,2]{}{"i":3}"#, 100),
        vec![
            bad(0, r#"{"a":"x"#),
            ok(7, "[1,2]"),
            ok(12, "{}"),
            ok(14, r#"{"i":3}"#)
        ]
    );
    // Cut inside a literal: the value breaks on the next record's `{`, which lands.
    for cut in ["tru", "t", "fals", "nu"] {
        for sep in ["", " ", "\t "] {
            let input = format!(r#"{{"t":{cut}{sep}{{"i":2}}{{"i":3}}"#);
            let at = (5 + cut.len() + sep.len()) as u64;
            assert_eq!(
                stream(input.as_bytes(), 100),
                vec![
                    bad(0, &input[..5 + cut.len()]),
                    ok(at, r#"{"i":2}"#),
                    ok(at + 7, r#"{"i":3}"#)
                ],
                "{input}"
            );
        }
    }
    // Cut right after a `:`, `[` or `,`: the next record is read as a member value, and the
    // value breaks on the record after it. Both land, with the offsets a clean object gives.
    for cut in [
        r#"{"k":"#,
        r#"{"k": "#,
        r#"{"a":[1,"#,
        r#"{"a":["#,
        r#"{"a":{"b":"#,
    ] {
        for sep in ["", "\n", " ", "\r\n"] {
            let input = format!(r#"{cut}{{"i":2}}{sep}{{"i":3}}"#);
            let at = cut.len() as u64;
            assert_eq!(
                stream(input.as_bytes(), 100),
                vec![
                    bad(0, cut.trim_end()),
                    ok(at, r#"{"i":2}"#),
                    ok(at + 7 + sep.len() as u64, r#"{"i":3}"#)
                ],
                "{input}"
            );
        }
    }
    // Cut right after a backslash.
    assert_eq!(
        stream(br#"{"a":"ab\{"i":2}"#, 100),
        vec![bad(0, r#"{"a":"ab\"#), ok(9, r#"{"i":2}"#)]
    );
    // The same in a large object: the first record after the cut lands, and every later one.
    let mut input = Vec::new();
    let mut want = Vec::new();
    for i in 0..200_000 {
        if i == 100_000 {
            want.push(bad(input.len() as u64, r#"{"a":"never closed"#));
            input.extend_from_slice(br#"{"a":"never closed"#);
        }
        let rec = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(100));
        want.push(ok(input.len() as u64, &rec));
        input.extend_from_slice(rec.as_bytes());
    }
    assert!(input.len() > 20 << 20);
    assert_eq!(events(&input, Framing::Auto, 1 << 20, 1 << 20), want);
}

#[test]
fn a_stray_closer_or_quote_between_records_costs_only_itself() {
    assert_eq!(
        stream(br#"{"a":1}}{"i":2}{"i":3}{"i":4}"#, 100),
        vec![
            ok(0, r#"{"a":1}"#),
            bad(7, "}"),
            ok(8, r#"{"i":2}"#),
            ok(15, r#"{"i":3}"#),
            ok(22, r#"{"i":4}"#)
        ]
    );
    assert_eq!(
        stream(br#"{"a":1}]] [1]{"i":2},{"i":3}"#, 100),
        vec![
            ok(0, r#"{"a":1}"#),
            bad(7, "]]"),
            ok(10, "[1]"),
            ok(13, r#"{"i":2}"#),
            bad(20, ","),
            ok(21, r#"{"i":3}"#)
        ]
    );
    assert_eq!(
        stream(br#"{"a":1}"{"i":2}{"i":3}"#, 100),
        vec![
            ok(0, r#"{"a":1}"#),
            bad(7, "\""),
            ok(8, r#"{"i":2}"#),
            ok(15, r#"{"i":3}"#)
        ]
    );
    // Junk glued to records (text, binary, a broken scalar): the records after it land.
    for junk in ["xyz", "\u{1}\u{0}\u{7f}", "12ab", "#c", "日本"] {
        let input = format!(r#"{{"a":1}}{junk}{{"i":2}}{{"i":3}}"#);
        let at = 7 + junk.len() as u64;
        assert_eq!(
            stream(input.as_bytes(), 100),
            vec![
                ok(0, r#"{"a":1}"#),
                bad(7, junk),
                ok(at, r#"{"i":2}"#),
                ok(at + 7, r#"{"i":3}"#)
            ],
            "{input}"
        );
    }
    // Binary junk between every record: each record lands.
    assert_eq!(
        stream(b"{\"a\":1}\x00{\"i\":2}\xff\x01{\"i\":3}", 100),
        vec![
            ok(0, r#"{"a":1}"#),
            bad(7, "\u{0}"),
            ok(8, r#"{"i":2}"#),
            bad(15, "\u{fffd}\u{1}"),
            ok(17, r#"{"i":3}"#)
        ]
    );
    // A brace in prose is text: the line is one error.
    assert_eq!(
        stream(b"got {\"a\":1} from x\n{\"i\":2}", 100),
        vec![bad(0, r#"got {"a":1} from x"#), ok(19, r#"{"i":2}"#)]
    );
    // A string record followed by a record is still two records.
    assert_eq!(
        stream(br#""s"{"i":2}"#, 100),
        vec![ok(0, "\"s\""), ok(3, r#"{"i":2}"#)]
    );
}

/// Frames `members` gzipped one by one and concatenated, as CloudWatch Logs delivers them.
fn members_events(members: &[&[u8]], step: usize) -> Vec<(u64, String, bool)> {
    use crate::decode::members::{Members, MultiGz};
    use std::io::Write;
    let mut gz = Vec::new();
    for m in members {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(m).unwrap();
        gz.extend(e.finish().unwrap());
    }
    let boundaries = Members::default();
    let mut decoded = Vec::new();
    MultiGz::new(&gz[..], boundaries.clone())
        .read_to_end(&mut decoded)
        .unwrap();
    let mut f = Framer::new(
        Trickle {
            data: &decoded,
            step,
        },
        Framing::Auto,
        100,
    );
    f.member_boundaries(boundaries);
    let mut out = Vec::new();
    while let Some(Event::Record(r)) = f.next_event().unwrap() {
        out.push((
            r.offset,
            String::from_utf8_lossy(r.bytes).into_owned(),
            r.json_checked,
        ));
    }
    out
}

#[test]
fn a_gzip_member_boundary_ends_a_bad_span() {
    for bad_member in [
        &b"not json at all"[..],
        b"{\"a\":1",
        b"{\"a\":[1,",
        b"}",
        b"hello {",
    ] {
        let mut members: Vec<&[u8]> = vec![bad_member];
        let good = [br#"{"i":1}"#, br#"{"i":2}"#, br#"{"i":3}"#, br#"{"i":4}"#];
        members.extend(good.iter().map(|g| &g[..]));
        let n = bad_member.len() as u64;
        let mut want = vec![bad(0, std::str::from_utf8(bad_member).unwrap())];
        for (k, g) in good.iter().enumerate() {
            want.push(ok(n + 7 * k as u64, std::str::from_utf8(&g[..]).unwrap()));
        }
        for step in [1, 5, 1 << 20] {
            assert_eq!(members_events(&members, step), want, "{bad_member:?}");
        }
    }
    // A valid value may span members (bgzip cuts members mid-record).
    assert_eq!(
        members_events(&[b"{\"a\":", b"1}{\"b\":2}"], 1 << 20),
        vec![ok(0, "{\"a\":1}"), ok(7, "{\"b\":2}")]
    );
}

/// Over chunks, a record longer than the free space before a chunk moves into a buffer of its
/// own, and records after it come from the chunks again: the same events as read through
/// `Read`, each record's bytes left where they were framed, at every size around the free
/// space and chunk sizes that cut records anywhere.
#[test]
fn records_longer_than_a_chunk_s_free_space_frame_the_same_over_chunks() {
    use crate::decode::pump::HEAD;
    let mut input = Vec::new();
    for (i, len) in [
        10,
        HEAD - 20,
        HEAD,
        HEAD + 7,
        3 * HEAD,
        40,
        5 * HEAD + 3,
        12,
    ]
    .into_iter()
    .enumerate()
    {
        let pad = "x".repeat(len);
        input.extend_from_slice(format!("{{\"i\":{i},\"p\":\"{pad}\"}}").as_bytes());
        input.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"" });
    }
    input.extend_from_slice(b"not json\n{\"last\":1}\n");
    for framing in [Framing::Auto, Framing::Concatenated] {
        for step in [1000, HEAD - 1, HEAD + 1, 256 * 1024] {
            let read = events(&input, framing, 1 << 20, step);
            assert_eq!(read.len(), 10, "{framing:?}");
        }
    }
    let lines = &input;
    for step in [999, HEAD, 3 * HEAD + 5] {
        // Newline framing: the concatenated pairs are one (bad) line each.
        let read = events(lines, Framing::Newline, 1 << 20, step);
        assert_eq!(read.len(), 6);
        // A record over --max-record-bytes is spooled on the way, and framing goes on.
        let small = events(lines, Framing::Newline, 2 * HEAD, step);
        assert!(small.iter().any(|(_, s, _)| s.starts_with("TOO LARGE")));
        assert_eq!(small.last().unwrap().1, "{\"last\":1}");
    }
}

/// A megabyte of blank lines (or of whitespace between values) over 4 KiB chunks is framed in
/// one search for the record after it: the chunks it passes held no record and go straight
/// back, so the framer holds on to one chunk, not to every chunk of the bomb.
#[test]
fn chunks_passed_in_one_search_go_back_at_once() {
    let mut input = vec![b'\n'; 1 << 20];
    input.extend_from_slice(b"{\"after\":\"the bomb\"}\n");
    for framing in [Framing::Newline, Framing::Auto] {
        let chunks = Chunks {
            data: &input,
            step: 4096,
            given: 0,
        };
        let mut f = Framer::new(chunks, framing, 1 << 20);
        f.take_chunks(take_chunk, give_chunk);
        let step = f.next_event_retiring().unwrap();
        assert!(
            matches!(step.event, Some(Event::Record(r)) if r.bytes == b"{\"after\":\"the bomb\"}")
        );
        assert!(step.retired.is_some());
        assert!(f.next_event_retiring().unwrap().event.is_none());
        let given = f.into_inner().given;
        assert!(
            given >= 250,
            "{framing:?}: {given} of 257 chunks given back"
        );
    }
}

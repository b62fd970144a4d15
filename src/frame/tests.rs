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

#[derive(Debug, PartialEq)]
enum Out {
    R(u64, u64, String),
    E(u64, u64, FrameErrorKind),
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
fn auto_picks_newline_for_one_value_per_line() {
    let (out, mode) = frame(b"{\"a\":1}\n{\"a\":2}\nnot json\n", Framing::Auto);
    assert_eq!(mode.name(), "newline");
    assert_eq!(out.len(), 3);
}

#[test]
fn auto_picks_concatenated_for_values_back_to_back() {
    let (out, mode) = frame(b"{\"a\":1}{\"a\":2}{\"a\":3}", Framing::Auto);
    assert_eq!(mode.name(), "concatenated");
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
fn auto_picks_concatenated_for_pretty_printed_values() {
    let (out, mode) = frame(b"{\n \"a\": 1\n}\n{\n \"a\": 2\n}\n", Framing::Auto);
    assert_eq!(mode.name(), "concatenated");
    assert_eq!(out.len(), 2);
}

#[test]
fn auto_on_an_empty_object_yields_nothing() {
    let (out, mode) = frame(b"", Framing::Auto);
    assert!(out.is_empty());
    assert_eq!(mode.name(), "newline");
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
fn an_unclosed_value_at_the_end_is_an_error_after_the_good_ones() {
    let (out, _) = frame(b"{\"a\":1}{\"a\":", Framing::Concatenated);
    assert_eq!(
        out,
        vec![
            r(0, 0, "{\"a\":1}"),
            Out::E(1, 7, FrameErrorKind::Unterminated)
        ]
    );
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

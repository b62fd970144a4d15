//! No valid record is lost to framing: objects shaped like real Firehose output (producers that
//! mix delimiters, bad records first, BOMs, pretty-printed and oversized values), row IDs that
//! do not depend on framing, and dead letters that keep records whole so a redrive can land
//! them — as the pipeline would have.

use std::collections::BTreeMap;
use std::io::{self, Read};

use base64::Engine;
use firehose_replay::dead_letter::DeadLetterDir;
use firehose_replay::decode::members::{Members, MultiGz};
use firehose_replay::frame::{Event, Framer, Framing};
use firehose_replay::pipeline::Settings;
use firehose_replay::record::Envelope;
use firehose_replay::redrive::{redrive_records, Document};
use firehose_replay::row::Metadata;
use firehose_replay::sink::ndjson::NdjsonDir;
use serde_json::{json, Value};

use crate::support::{gzip, read_ndjson, Bucket, Rng};

fn with_framing(framing: Framing) -> Settings {
    Settings {
        framing,
        ..Settings::default()
    }
}

/// `_row_id` → row (without the ID) of every row an object produced.
fn by_id(rows: &[Value]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for r in rows {
        let mut r = r.clone();
        let id = r["_row_id"].as_str().unwrap().to_string();
        r.as_object_mut().unwrap().remove("_row_id");
        assert!(out.insert(id, r).is_none(), "duplicate row id");
    }
    out
}

#[test]
fn producers_that_mix_delimiters_lose_nothing() {
    // 1,001 records, every 10th not followed by a newline.
    let mut data = Vec::new();
    for i in 0..1001 {
        data.extend_from_slice(format!("{{\"i\":{i}}}").as_bytes());
        if i % 10 != 9 {
            data.push(b'\n');
        }
    }
    let r = Bucket::new().replay_bytes("mixed", &data);
    assert_eq!(r.bodies().len(), 1001);
    assert!(r.dead_letter.is_none());

    // The first record followed by " \n", then (mostly) nothing between records.
    let mut data = b"{\"i\":0} \n".to_vec();
    for i in 1..800 {
        data.extend_from_slice(format!("{{\"i\":{i}}}").as_bytes());
        if i % 97 == 0 {
            data.push(b'\n');
        }
    }
    let r = Bucket::new().replay_bytes("first-nl", &data);
    let want: Vec<Value> = (0..800).map(|i| json!({ "i": i })).collect();
    assert_eq!(r.bodies(), want);
    assert!(r.dead_letter.is_none());
}

#[test]
fn a_bad_first_record_costs_only_itself_even_in_an_object_larger_than_a_record() {
    for first in ["{\"n\":-1", "{\"s\":\"unterminated", "{\"a\":[1,2"] {
        let mut data = format!("{first}\n").into_bytes();
        for i in 0..20_000 {
            data.extend_from_slice(format!("{{\"i\":{i},\"pad\":\"0123456789\"}}\n").as_bytes());
        }
        let b = Bucket::new();
        b.put("bad-first", &data);
        // The object (~600 KB) is far larger than a record may be.
        let s = Settings {
            max_record_bytes: 4096,
            ..Settings::default()
        };
        let r = b.replay("bad-first", &s);
        assert_eq!(r.bodies().len(), 20_000, "{first}");
        let dead = r.dead_records();
        assert_eq!(dead.len(), 1, "{first}: {dead:?}");
        assert_eq!(dead[0].0, 0);
        assert!(dead[0].1.starts_with("invalid JSON"), "{}", dead[0].1);
        let raw = &r.dead_letter.as_ref().unwrap()["records"][0]["raw"];
        let raw = base64::engine::general_purpose::STANDARD
            .decode(raw.as_str().unwrap())
            .unwrap();
        assert_eq!(
            raw,
            first.as_bytes(),
            "only the bad bytes are dead-lettered"
        );
    }
}

#[test]
fn row_ids_are_the_same_under_every_framing_that_reads_the_object() {
    let mut data = Vec::new();
    for i in 0..300 {
        data.extend_from_slice(format!("  {{\"i\":{i}}}\r\n").as_bytes());
        if i % 50 == 0 {
            data.extend_from_slice(b"not json at all\n\n");
        }
    }
    let b = Bucket::new();
    b.put("ids", &data);
    let auto = by_id(&b.replay("ids", &with_framing(Framing::Auto)).rows);
    let newline = by_id(&b.replay("ids", &with_framing(Framing::Newline)).rows);
    let concatenated = by_id(&b.replay("ids", &with_framing(Framing::Concatenated)).rows);
    assert_eq!(auto.len(), 300);
    assert_eq!(auto, newline);
    assert_eq!(auto, concatenated);
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_record() {
    for data in [
        &b"\xEF\xBB\xBF{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n"[..],
        b"\xEF\xBB\xBF{\"i\":0}{\"i\":1}{\"i\":2}",
    ] {
        let r = Bucket::new().replay_bytes("bom", data);
        assert_eq!(r.bodies().len(), 3);
        assert!(r.dead_letter.is_none());
    }
}

#[test]
fn an_oversized_record_is_kept_whole_and_a_redrive_with_a_larger_cap_lands_it_as_the_pipeline_would(
) {
    let big = format!("{{\"blob\":\"{}\",\"k\":1}}", "x".repeat(300_000));
    // The big record is the last one, without a trailing newline: no phantom row after it.
    let data = format!("{{\"n\":0}}\n{{\"n\":1}}{big}");
    let b = Bucket::new();
    b.put("big", data.as_bytes());
    let small = Settings {
        max_record_bytes: 100_000,
        metadata: "source_uri,record_ordinal".parse::<Metadata>().unwrap(),
        mapping: Some(serde_json::from_str(r#"{"rename":{"k":"key"}}"#).unwrap()),
        ..Settings::default()
    };
    let r = b.replay("big", &small);
    assert_eq!(r.rows.len(), 2);
    let dead = r.dead_records();
    assert_eq!(dead.len(), 1, "one record, one error: {dead:?}");
    let letter = r.dead_letter.clone().unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(letter["records"][0]["raw"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, big.as_bytes(), "the letter keeps the record whole");

    // Redriving with the same cap fails again, keeping the original reason.
    let doc = Document::from_bytes(serde_json::to_vec(&letter).unwrap(), "letter").unwrap();
    let dl = DeadLetterDir::new(b.dead());
    let sink = NdjsonDir::new(b.tmp.path().join("redriven"));
    let again = redrive_records(&doc, &small, &sink, &dl).unwrap();
    assert_eq!((again.delivered, again.still_failing), (0, 1));
    let kept: Value =
        serde_json::from_slice(&std::fs::read(b.dead().join("bucket/big.records.json")).unwrap())
            .unwrap();
    assert_eq!(kept["records"][0]["error"], letter["records"][0]["error"]);
    assert_eq!(kept["records"][0]["attempts"], 2);
    assert_eq!(kept["attempts"], 2);
    assert_eq!(kept["first_failed_at"], letter["first_failed_at"]);

    // With a larger cap, the redriven row is the row the pipeline writes with that cap.
    let large = Settings {
        max_record_bytes: 1 << 20,
        ..small.clone()
    };
    let doc = Document::from_bytes(serde_json::to_vec(&kept).unwrap(), "letter").unwrap();
    let done = redrive_records(&doc, &large, &sink, &dl).unwrap();
    assert_eq!((done.delivered, done.still_failing), (1, 0));
    let redriven = read_ndjson(&b.tmp.path().join("redriven/bucket/big.redriven.ndjson"));
    let direct = b.replay("big", &large);
    assert_eq!(direct.rows.len(), 3);
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0], direct.rows[2]);
    assert_eq!(redriven[0]["key"], 1, "--map applied");
    assert_eq!(redriven[0]["_source_uri"], "s3://bucket/big");
}

#[test]
fn one_bad_cloudwatch_event_fails_alone() {
    let message = json!({
        "messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "/g", "logStream": "s",
        "subscriptionFilters": ["f"],
        "logEvents": [
            {"id": "1", "timestamp": 1, "message": "first"},
            {"id": "2", "timestamp": 2, "message": 42},
            {"id": "3", "timestamp": 3, "message": "third"}
        ]
    });
    let data = crate::support::gzip(message.to_string().as_bytes());
    let b = Bucket::new();
    b.put("cwl.gz", &data);
    let s = Settings {
        envelope: Envelope::CloudWatchLogs,
        ..Settings::default()
    };
    let r = b.replay("cwl.gz", &s);
    let ids: Vec<&str> = r.rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "3"]);
    let letter = r.dead_letter.clone().unwrap();
    assert_eq!(letter["records"].as_array().unwrap().len(), 1);
    assert_eq!(letter["records"][0]["sub"], json!([1]));
    assert!(letter["records"][0]["error"]
        .as_str()
        .unwrap()
        .contains("event 1"));
}

/// A reader that hands out `step` bytes at a time.
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

/// A seeded generator, with an index helper.
trait Below {
    fn index(&mut self, n: usize) -> usize;
}

impl Below for Rng {
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}

const MAX: usize = 400;

fn valid_piece(rng: &mut Rng, i: usize, object_only: bool) -> String {
    let kind = if object_only {
        rng.index(4)
    } else {
        rng.index(7)
    };
    match kind {
        0 => format!("{{\"i\":{i}}}"),
        1 => format!(
            "{{\"i\":{i},\"s\":\"}}{{\\\"\\\\\",\"a\":[1,{{\"b\":null}}],\"u\":\"\\u00e9\"}}"
        ),
        2 => format!("{{\n  \"i\": {i},\n  \"nested\": {{\n    \"x\": [1, 2]\n  }}\n}}"),
        3 => format!(
            "{{\"i\":{i},\"big\":\"{}\"}}",
            "y".repeat(MAX + rng.index(200))
        ),
        4 => format!("[{i},\"x\"]"),
        5 => format!("\"s{i}\""),
        _ => format!("{i}"),
    }
}

const INVALID: [&str; 8] = [
    "{\"a\":1",
    "{\"a\":\"unterminated",
    "{\"a\":tru}",
    "hello world",
    "{\"a\":1,}",
    "[1,2",
    "{\"a\" 1}",
    "123abc",
];

const SEPARATORS: [&str; 6] = ["", "\n", " ", "\r\n", "\n\n  \n", "\t"];

/// One generated object, with the values a reference parser accepts and where they start.
struct Case {
    /// The object's pieces (each its own gzip member when `members`); the object is their
    /// concatenation.
    pieces: Vec<Vec<u8>>,
    data: Vec<u8>,
    expected: Vec<(u64, Value)>,
    errors: usize,
    one_per_line: bool,
    members: bool,
}

/// Positions inside `piece`'s strings and keys (right after an opening quote up to a closing
/// quote, escapes included), and right after each letter or digit of its literals and numbers
/// (`{"a":[1,{"b":nu`): where a record cut inside a string, literal or number ends.
fn string_positions(piece: &str) -> Vec<usize> {
    let b = piece.as_bytes();
    let (mut out, mut in_string, mut i) = (Vec::new(), false, 0);
    while i < b.len() {
        if in_string {
            out.push(i);
            match b[i] {
                b'\\' => {
                    out.push(i + 1);
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else if b[i] == b'"' {
            in_string = true;
        } else if b[i].is_ascii_alphanumeric() {
            out.push(i + 1);
        }
        i += 1;
    }
    out
}

/// Bad bytes that end without a line break, then a record: a stray closer, separator or
/// quote between records.
const STRAY: [&str; 5] = ["}", "]", "\"", ",", "}}"];

fn generate(rng: &mut Rng) -> Case {
    // One case in four is a CloudWatch Logs-like object: one gzip member per piece, and bad
    // pieces need not end their line.
    let members = rng.index(4) == 0;
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut data = Vec::new();
    let mut push = |data: &mut Vec<u8>, bytes: &[u8], new_piece: bool| {
        if new_piece || pieces.is_empty() {
            pieces.push(Vec::new());
        }
        pieces.last_mut().unwrap().extend_from_slice(bytes);
        data.extend_from_slice(bytes);
    };
    if rng.index(5) == 0 {
        push(&mut data, b"\xEF\xBB\xBF", false);
    }
    let mut valid_text = String::new();
    let mut expected_offsets = Vec::new();
    let (mut errors, mut after_invalid, mut one_per_line) = (0, false, true);
    // After a piece that does not end its line, the next piece is a valid record.
    let mut must_be_valid = false;
    for i in 0..rng.index(30) {
        if !must_be_valid && rng.index(5) == 0 {
            errors += 1;
            // A stray closer on the line after a broken value reads as that value's last line
            // (documented), so strays follow valid records only.
            let kind = rng.index(if after_invalid { 3 } else { 4 });
            if kind == 0 || (members && kind == 1) {
                // Invalid bytes ending their line (or, in its own gzip member, not).
                // After a broken JSON value, a line starting with a digit would read as the
                // inside of that value (a pretty-printed array element): documented, so not
                // generated.
                let choices = if after_invalid {
                    &INVALID[..6]
                } else {
                    &INVALID[..]
                };
                let bad = choices[rng.index(choices.len())];
                push(&mut data, bad.as_bytes(), true);
                if members && kind == 1 {
                    must_be_valid = true;
                } else {
                    push(&mut data, b"\n", false);
                }
            } else if kind == 1 || kind == 2 {
                // A record cut at a byte inside one of its strings or keys. (A record larger
                // than a record may be is followed by its structure only, so a cut one may
                // take the next record with it: documented, so not generated.)
                let mut piece = valid_piece(rng, i, true);
                while piece.len() > MAX {
                    piece = valid_piece(rng, i, true);
                }
                let cuts = string_positions(&piece);
                let cut = cuts[rng.index(cuts.len())];
                push(&mut data, &piece.as_bytes()[..cut], true);
                must_be_valid = true;
            } else {
                push(&mut data, STRAY[rng.index(STRAY.len())].as_bytes(), true);
                must_be_valid = true;
            }
            if must_be_valid {
                one_per_line = false;
                let sep = SEPARATORS[rng.index(SEPARATORS.len())];
                push(&mut data, sep.as_bytes(), false);
            }
            after_invalid = true;
            continue;
        }
        let piece = valid_piece(rng, i, after_invalid);
        let scalar = !piece.starts_with(['{', '[', '"']);
        let oversized = piece.len() > MAX;
        if oversized {
            errors += 1;
        } else {
            expected_offsets.push(data.len() as u64);
            valid_text.push_str(&piece);
            valid_text.push('\n');
        }
        one_per_line &= !piece.contains('\n');
        push(&mut data, piece.as_bytes(), true);
        let mut sep = SEPARATORS[rng.index(SEPARATORS.len())];
        if scalar && sep.is_empty() {
            sep = " ";
        }
        if !sep.contains('\n') {
            one_per_line = false;
        }
        push(&mut data, sep.as_bytes(), false);
        after_invalid = false;
        must_be_valid = false;
    }
    // The reference: serde_json's stream deserializer over the valid pieces alone.
    let values: Vec<Value> = serde_json::Deserializer::from_str(&valid_text)
        .into_iter::<Value>()
        .map(|v| v.expect("valid pieces are valid"))
        .collect();
    assert_eq!(values.len(), expected_offsets.len());
    Case {
        pieces,
        data,
        expected: expected_offsets.into_iter().zip(values).collect(),
        errors,
        one_per_line,
        members,
    }
}

fn frame_case(case: &Case, framing: Framing, step: usize) -> (Vec<(u64, Value)>, usize) {
    // (An empty object is no gzip stream: members mode needs a piece.)
    if !case.members || case.pieces.is_empty() {
        let mut f = Framer::new(
            Trickle {
                data: &case.data,
                step,
            },
            framing,
            MAX,
        );
        return frame_all(&mut f, framing);
    }
    // One gzip member per piece, decoded as the pipeline decodes them.
    let gz: Vec<u8> = case.pieces.iter().flat_map(|p| gzip(p)).collect();
    let boundaries = Members::default();
    let mut decoded = Vec::new();
    MultiGz::new(&gz[..], boundaries.clone())
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, case.data);
    let mut f = Framer::new(
        Trickle {
            data: &decoded,
            step,
        },
        framing,
        MAX,
    );
    f.member_boundaries(boundaries);
    frame_all(&mut f, framing)
}

fn frame_all<R: Read>(f: &mut Framer<R>, framing: Framing) -> (Vec<(u64, Value)>, usize) {
    let (mut rows, mut errors) = (Vec::new(), 0);
    while let Some(ev) = f.next_event().unwrap() {
        match ev {
            Event::Record(r) => match serde_json::from_slice::<Value>(r.bytes) {
                Ok(v) => {
                    assert!(r.json_checked || framing == Framing::Newline);
                    rows.push((r.offset, v));
                }
                Err(_) => {
                    assert!(!r.json_checked, "validated bytes must parse");
                    errors += 1;
                }
            },
            Event::Error(_) => errors += 1,
        }
    }
    (rows, errors)
}

/// Differential property test: every value the reference accepts becomes exactly one record,
/// in order, at the offset where it starts, whatever the read sizes and under every framing
/// that can read the object; every bad piece becomes exactly one error.
#[test]
fn every_valid_value_becomes_exactly_one_record_at_its_offset() {
    let seed = std::env::var("FRAMING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("framing property test seed: {seed} (FRAMING_SEED={seed} to replay)");
    let mut rng = Rng(seed);
    for case_no in 0..400 {
        let case = generate(&mut rng);
        let text = String::from_utf8_lossy(&case.data).into_owned();
        for step in [1, 2, 7, 64, 1 << 20] {
            for framing in [Framing::Auto, Framing::Concatenated] {
                let (rows, errors) = frame_case(&case, framing, step);
                assert_eq!(
                    rows, case.expected,
                    "seed {seed} case {case_no} {framing:?} step {step}: {text:?}"
                );
                assert_eq!(
                    errors, case.errors,
                    "seed {seed} case {case_no} {framing:?} step {step}: {text:?}"
                );
            }
        }
        if case.one_per_line {
            let (rows, _) = frame_case(&case, Framing::Newline, 1 << 20);
            assert_eq!(rows, case.expected, "seed {seed} case {case_no} newline");
        }
    }
}

/// CloudWatch Logs delivers one gzip member per subscription record, with no line break: a
/// member that is not JSON must cost only itself, whichever member it is.
#[test]
fn a_cloudwatch_member_that_is_not_json_costs_only_itself() {
    let member = |n: usize| {
        json!({
            "messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "/g", "logStream": "s",
            "subscriptionFilters": ["f"],
            "logEvents": [{"id": n.to_string(), "timestamp": n, "message": "m"}]
        })
        .to_string()
    };
    for bad in [0, 2, 4] {
        let mut data = Vec::new();
        let mut want = Vec::new();
        for n in 0..5 {
            if n == bad {
                data.extend(crate::support::gzip(b"not json at all, and no line break"));
            } else {
                data.extend(crate::support::gzip(member(n).as_bytes()));
                want.push(n.to_string());
            }
        }
        let b = Bucket::new();
        b.put("cwl.gz", &data);
        let s = Settings {
            envelope: Envelope::CloudWatchLogs,
            ..Settings::default()
        };
        let r = b.replay("cwl.gz", &s);
        let ids: Vec<&str> = r.rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, want, "bad member {bad}");
        let letter = r.dead_letter.clone().unwrap();
        assert_eq!(letter["records"].as_array().unwrap().len(), 1);
    }
}

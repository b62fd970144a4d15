//! Bad input gets a clear error and loses nothing: the valid records around a bad one still come
//! out, and the bad one is dead-lettered with its position and reason.

use base64::Engine;
use firehose_replay::error::{Class, Stage};
use firehose_replay::pipeline::{RecordPolicy, Settings};
use serde_json::json;

use crate::support::*;

#[test]
fn invalid_json_amid_valid_records_is_dead_lettered_alone() {
    let data = b"{\"n\":0}\n{\"n\":\n{\"n\":1}\nnot json\n{\"n\":2}\n";
    let r = Bucket::new().replay_bytes("bad.gz", &gzip(data));
    assert_eq!(r.bodies(), numbered(3));
    assert_eq!(
        r.dead_records(),
        vec![
            (
                1,
                "invalid JSON: EOF while parsing a value at line 1 column 5".to_string()
            ),
            (
                3,
                "invalid JSON: expected ident at line 1 column 2".to_string()
            ),
        ]
    );
    let d = r.dead_letter.as_ref().unwrap();
    assert_eq!(d["version"], 1);
    assert_eq!(d["object"]["key"], "bad.gz");
    assert_eq!(d["object"]["etag"].as_str().unwrap().len(), 32);
    assert_eq!(d["records"][0]["byte_offset"], 8);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(d["records"][1]["raw"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        raw, b"not json",
        "the raw record is kept, not just the error"
    );
    assert_eq!(r.report().counts.record_errors, 2);
}

#[test]
fn non_utf8_bytes_are_a_record_error_with_their_position() {
    let r = Bucket::new().replay_bytes("u", b"{\"n\":0}\n{\"s\":\"caf\xe9\"}\n{\"n\":1}\n");
    assert_eq!(r.bodies(), numbered(2));
    assert_eq!(
        r.dead_records(),
        vec![(1, "invalid UTF-8 at byte 9 of the record".to_string())]
    );
}

#[test]
fn a_record_over_the_size_cap_is_skipped_and_framing_resumes() {
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(5000));
    let data = format!("{{\"n\":0}}\n{big}\n{{\"n\":1}}\n");
    let b = Bucket::new();
    b.put("big", data.as_bytes());
    let s = Settings {
        max_record_bytes: 1000,
        ..Settings::default()
    };
    let r = b.replay("big", &s);
    assert_eq!(r.bodies(), numbered(2));
    assert_eq!(
        r.dead_records(),
        vec![(
            1,
            "record of 5011 bytes exceeds --max-record-bytes (1000); kept whole in the dead letter"
                .to_string()
        )]
    );
}

#[test]
fn an_empty_object_yields_an_empty_output_and_no_error() {
    let b = Bucket::new();
    let r = b.replay_bytes("empty", b"");
    assert!(r.rows.is_empty());
    assert_eq!(r.report().counts.records, 0);
    assert!(
        b.out().join("bucket/empty.ndjson").exists(),
        "one output file per object"
    );
}

#[test]
fn a_truncated_gzip_fails_the_object_and_writes_nothing() {
    let full = gzip(&ndjson(1000));
    let b = Bucket::new();
    let r = b.replay_bytes("t.gz", &full[..full.len() / 2]);
    let f = r.failure();
    assert_eq!(f.error.stage, Stage::Decompress);
    assert_eq!(f.error.class, Class::Permanent);
    assert!(
        f.error
            .to_string()
            .contains("gzip data ends early (truncated object?)"),
        "{}",
        f.error
    );
    assert!(f.error.byte_offset.is_some());
    assert!(r.rows.is_empty(), "a failed object commits no rows");
    assert!(!b.out().join("bucket/t.gz.ndjson").exists());
}

#[test]
fn corrupt_gzip_is_a_permanent_decompress_error() {
    let mut data = gzip(&ndjson(100));
    for b in &mut data[20..40] {
        *b ^= 0x5a;
    }
    let r = Bucket::new().replay_bytes("c.gz", &data);
    let f = r.failure();
    assert_eq!(
        (f.error.stage, f.error.class),
        (Stage::Decompress, Class::Permanent)
    );
    assert!(f.error.to_string().contains("gzip"), "{}", f.error);
}

#[test]
fn a_decompression_bomb_stops_at_the_cap() {
    // 32 MiB of zeros compress to ~32 KiB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..32 {
        std::io::Write::write_all(&mut e, &zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 100_000);
    let b = Bucket::new();
    b.put("bomb.gz", &bomb);
    let s = Settings {
        max_decompressed_bytes: 8 << 20,
        ..Settings::default()
    };
    let r = b.replay("bomb.gz", &s);
    let f = r.failure();
    assert_eq!(
        (f.error.stage, f.error.class),
        (Stage::Decompress, Class::Permanent)
    );
    assert!(
        f.error
            .to_string()
            .contains("decompressed size exceeds the cap of 8388608 bytes"),
        "{}",
        f.error
    );
}

#[test]
fn an_unclosed_value_at_the_end_of_a_concatenated_object_is_a_record_error() {
    let r = Bucket::new().replay_bytes("u", b"{\"n\":0}{\"n\":1}{\"n\":");
    assert_eq!(r.bodies(), numbered(2));
    assert_eq!(
        r.dead_records(),
        vec![(
            2,
            "invalid JSON: EOF while parsing a value at line 1 column 5".to_string()
        )]
    );
}

#[test]
fn policy_skip_counts_but_keeps_no_dead_letter() {
    let b = Bucket::new();
    b.put("s", b"{\"n\":0}\nnope\n");
    let s = Settings {
        on_record_error: RecordPolicy::Skip,
        ..Settings::default()
    };
    let r = b.replay("s", &s);
    assert_eq!(r.bodies(), numbered(1));
    assert_eq!(r.report().counts.record_errors, 1);
    assert!(r.dead_letter.is_none());
}

#[test]
fn policy_fail_fails_the_object_with_the_record_position() {
    let b = Bucket::new();
    b.put("f", b"{\"n\":0}\nnope\n{\"n\":1}\n");
    let s = Settings {
        on_record_error: RecordPolicy::Fail,
        ..Settings::default()
    };
    let r = b.replay("f", &s);
    let f = r.failure();
    assert_eq!((f.error.ordinal, f.error.byte_offset), (Some(1), Some(8)));
    assert_eq!(
        f.error.to_string(),
        "parse failed at record 1 (byte 8): record 1 failed and --on-record-error is `fail`: \
         invalid JSON: expected ident at line 1 column 2 [permanent]"
    );
    assert!(r.rows.is_empty());
}

#[test]
fn a_missing_object_is_a_permanent_fetch_error() {
    let r = Bucket::new().replay("2026/11/25/22/gone.gz", &Settings::default());
    let f = r.failure();
    assert_eq!(
        (f.error.stage, f.error.class),
        (Stage::Fetch, Class::Permanent)
    );
    assert_eq!(
        f.error.to_string(),
        "fetch failed: object not found [permanent]"
    );
}

#[test]
fn pretty_printed_records_become_single_line_rows() {
    let r = Bucket::new().replay_bytes("p", b"{\n  \"a\": \"x\\ny\",\n  \"b\": [1,\n 2]\n}\n");
    assert_eq!(r.bodies(), vec![json!({"a":"x\ny","b":[1,2]})]);
}

//! Every compression and framing, detected or forced, yields exactly the records it holds.

use firehose_replay::decode::{hadoop_snappy, snappy_java};
use firehose_replay::error::{Class, Stage};
use firehose_replay::pipeline::Settings;
use serde_json::json;

use crate::support::*;

#[test]
fn gzip_ndjson_is_detected_and_decoded() {
    let b = Bucket::new();
    let r = b.replay_bytes("2026/11/25/22/a.gz", &gzip(&ndjson(5)));
    assert_eq!(r.bodies(), numbered(5));
    assert_eq!(
        r.report()
            .compression
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>(),
        ["gzip"]
    );
    assert_eq!(r.report().framing, Some("json"));
}

#[test]
fn magic_bytes_win_over_a_wrong_extension() {
    let b = Bucket::new();
    let r = b.replay_bytes("mislabelled.json", &gzip(&ndjson(3)));
    assert_eq!(r.bodies(), numbered(3));
    let r = b.replay_bytes("plain.gz", &ndjson(2));
    assert_eq!(
        r.bodies(),
        numbered(2),
        "a .gz name does not make plain text gzip"
    );
}

#[test]
fn multi_member_gzip_yields_every_member() {
    let mut data = gzip(b"{\"n\":0}\n{\"n\":1}\n");
    data.extend(gzip(b"{\"n\":2}\n"));
    data.extend(gzip(b"{\"n\":3}\n"));
    let r = Bucket::new().replay_bytes("multi.gz", &data);
    assert_eq!(r.bodies(), numbered(4));
}

#[test]
fn zstd_objects_decode() {
    let r = Bucket::new().replay_bytes("a.zst", &zstd(&ndjson(4)));
    assert_eq!(r.bodies(), numbered(4));
    assert_eq!(r.report().compression[0].name(), "zstd");
}

#[test]
fn snappy_framed_objects_decode() {
    let r = Bucket::new().replay_bytes("a.snappy", &snappy_framed(&ndjson(4)));
    assert_eq!(r.bodies(), numbered(4));
    assert_eq!(r.report().compression[0].name(), "snappy-framed");
}

/// Records of a few hundred bytes each, so that 32 KiB blocks cut through records.
fn wide_records(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            format!("{{\"n\":{i},\"pad\":\"{}\"}}", "p".repeat(100 + i % 300)).into_bytes()
        })
        .collect()
}

fn wide_bodies(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| json!({"n": i, "pad": "p".repeat(100 + i % 300)}))
        .collect()
}

#[test]
fn firehose_snappy_objects_decode_across_blocks_whatever_their_suffix() {
    // What Firehose writes for `CompressionFormat: Snappy`: snappy-java's stream, 32 KiB of
    // input per block, records concatenated and cut by the block boundaries (~2 MiB, 60+ blocks).
    let data = wide_records(8000);
    let body = snappy_java::encode(&data, snappy_java::DEFAULT_BLOCK);
    assert!(data.len() > 60 * snappy_java::DEFAULT_BLOCK);
    let b = Bucket::new();
    for key in [
        "2026/11/25/22/s-1-2026-11-25-22-00-00-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.snappy",
        "2026/11/25/22/s-1-2026-11-25-22-00-00-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.json",
        "2026/11/25/22/s-1-2026-11-25-22-00-00-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c",
    ] {
        let r = b.replay_bytes(key, &body);
        assert_eq!(r.bodies(), wide_bodies(8000), "{key}");
        assert_eq!(r.report().compression[0].name(), "snappy-java", "{key}");
        assert_eq!(r.report().counts.record_errors, 0, "{key}");
    }
}

#[test]
fn every_snappy_container_is_read_under_each_compression_value() {
    let data = wide_records(400);
    let java = snappy_java::encode(&data, snappy_java::DEFAULT_BLOCK);
    let framed = snappy_framed(&data);
    let hadoop = hadoop_snappy::encode(&data, 256 * 1024);
    let b = Bucket::new();
    for (value, body, name) in [
        ("snappy", &java, "snappy-java"),
        ("snappy", &framed, "snappy-framed"),
        ("snappy", &hadoop, "hadoop-snappy"),
        ("snappy-java", &java, "snappy-java"),
        ("xerial-snappy", &java, "snappy-java"),
        ("snappy-framed", &framed, "snappy-framed"),
        ("hadoop-snappy", &hadoop, "hadoop-snappy"),
        ("auto", &java, "snappy-java"),
        ("auto", &framed, "snappy-framed"),
        ("auto", &hadoop, "hadoop-snappy"),
    ] {
        b.put("x.snappy", body);
        let s = Settings {
            compression: value.parse().unwrap(),
            ..Settings::default()
        };
        let r = b.replay("x.snappy", &s);
        assert_eq!(r.bodies(), wide_bodies(400), "{value} {name}");
        assert_eq!(r.report().compression[0].name(), name, "{value}");
    }
    // Forcing the wrong container is a clear decompression error, not records.
    b.put("x.snappy", &java);
    let s = Settings {
        compression: "snappy-framed".parse().unwrap(),
        ..Settings::default()
    };
    let f = b.replay("x.snappy", &s);
    assert_eq!(f.failure().error.stage, Stage::Decompress);
}

#[test]
fn a_cut_snappy_java_object_is_a_truncation_error() {
    let body = snappy_java::encode(&wide_records(300), snappy_java::DEFAULT_BLOCK);
    let r = Bucket::new().replay_bytes("cut.snappy", &body[..body.len() / 2]);
    let e = &r.failure().error;
    assert_eq!((e.stage, e.class), (Stage::Decompress, Class::Permanent));
    assert!(e.to_string().contains("snappy-java"), "{e}");
    assert!(r.rows.is_empty());
}

#[test]
fn empty_objects_are_zero_records_whatever_their_compression() {
    let b = Bucket::new();
    for key in ["e.gz", "e.zst", "e.snappy", "e.sz", "e.zip", "e.json", "e"] {
        let r = b.replay_bytes(key, b"");
        assert_eq!(r.report().counts.records, 0, "{key}");
        assert!(r.rows.is_empty(), "{key}");
    }
    for value in [
        "gzip",
        "zstd",
        "snappy",
        "snappy-java",
        "hadoop-snappy",
        "zip",
    ] {
        let s = Settings {
            compression: value.parse().unwrap(),
            ..Settings::default()
        };
        let r = b.replay("e.gz", &s);
        assert_eq!(r.report().counts.records, 0, "{value}");
    }
}

#[test]
fn hadoop_snappy_objects_decode_across_blocks() {
    let data = ndjson(2000);
    let r = Bucket::new().replay_bytes("a.snappy", &hadoop_snappy::encode(&data, 4096));
    assert_eq!(r.bodies(), numbered(2000));
    assert_eq!(r.report().compression[0].name(), "hadoop-snappy");
}

#[test]
fn zip_objects_decode_from_the_stream() {
    use std::io::Write;
    // A real archive as `zip`-like tools write it: local header, deflated data, data
    // descriptor, central directory.
    let data = ndjson(3);
    let mut deflated =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflated.write_all(&data).unwrap();
    let deflated = deflated.finish().unwrap();
    let crc = {
        let mut h = flate2::Crc::new();
        h.update(&data);
        h.sum()
    };
    let mut z = Vec::new();
    z.extend_from_slice(b"PK\x03\x04\x14\x00\x08\x00\x08\x00\x00\x00\x00\x00");
    z.extend_from_slice(&[0u8; 12]); // crc, sizes: in the descriptor
    z.extend_from_slice(&9u16.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(b"data.json");
    z.extend_from_slice(&deflated);
    z.extend_from_slice(b"PK\x07\x08");
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(deflated.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(b"PK\x01\x02");
    z.extend_from_slice(&[0u8; 42]);
    let r = Bucket::new().replay_bytes("a.zip", &z);
    assert_eq!(r.bodies(), numbered(3));
    assert_eq!(r.report().compression[0].name(), "zip");
}

/// A ZIP archive of deflated entries with data descriptors, as `zip`-like tools stream them.
fn zip_archive(entries: &[&[u8]]) -> Vec<u8> {
    use std::io::Write;
    let mut z = Vec::new();
    for (i, data) in entries.iter().enumerate() {
        let mut deflated =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflated.write_all(data).unwrap();
        let deflated = deflated.finish().unwrap();
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let name = format!("part-{i}");
        z.extend_from_slice(b"PK\x03\x04\x14\x00\x08\x00\x08\x00\x00\x00\x00\x00");
        z.extend_from_slice(&[0u8; 12]); // crc, sizes: in the descriptor
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(&deflated);
        z.extend_from_slice(b"PK\x07\x08");
        z.extend_from_slice(&crc.sum().to_le_bytes());
        z.extend_from_slice(&(deflated.len() as u32).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    }
    z.extend_from_slice(b"PK\x01\x02");
    z.extend_from_slice(&[0u8; 42]);
    z
}

/// `{"n":from}\n` … `{"n":to-1}\n`.
fn records(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .map(|i| format!("{{\"n\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_zip_of_zips_and_compressed_files_yields_every_record_of_every_entry() {
    let inner: Vec<Vec<u8>> = (0..3)
        .map(|k| zip_archive(&[&records(3 * k, 3 * k + 2), &records(3 * k + 2, 3 * k + 3)]))
        .collect();
    let z = zip_archive(&[
        &inner[0],
        &inner[1],
        &inner[2],
        &gzip(&records(9, 11)),
        &zstd(&records(11, 12)),
    ]);
    let r = Bucket::new().replay_bytes("nested.zip", &z);
    assert_eq!(r.bodies(), numbered(12));
    assert_eq!(r.report().compression[0].name(), "zip");
    assert_eq!(r.report().counts.record_errors, 0);
}

#[test]
fn archives_nested_too_deep_fail_the_object_instead_of_dropping_records() {
    let mut z = records(0, 1);
    for _ in 0..=firehose_replay::decode::zip::MAX_NESTED + 1 {
        z = zip_archive(&[&z]);
    }
    let r = Bucket::new().replay_bytes("deep.zip", &z);
    let f = r.failure();
    assert_eq!(
        (f.error.stage, f.error.class),
        (
            firehose_replay::error::Stage::Decompress,
            firehose_replay::error::Class::Permanent
        )
    );
    assert!(f.error.to_string().contains("layers deep"), "{}", f.error);
    assert!(r.rows.is_empty());
}

#[test]
fn uncompressed_objects_pass_through() {
    let r = Bucket::new().replay_bytes("plain", &ndjson(3));
    assert!(r.report().compression.is_empty());
    assert_eq!(r.bodies(), numbered(3));
}

#[test]
fn forced_compression_overrides_detection() {
    let b = Bucket::new();
    b.put("x", &zstd(&ndjson(200)));
    let forced_none = Settings {
        compression: "none".parse().unwrap(),
        ..Settings::default()
    };
    let r = b.replay("x", &forced_none);
    assert!(r.rows.is_empty(), "zstd bytes taken as text");
    assert!(
        r.failure().error.to_string().contains("binary data"),
        "{}",
        r.failure().error
    );
    let forced_zstd = Settings {
        compression: "zstd".parse().unwrap(),
        ..Settings::default()
    };
    assert_eq!(b.replay("x", &forced_zstd).bodies(), numbered(200));
}

#[test]
fn concatenated_json_without_delimiters_is_split_by_structure() {
    let data = br#"{"n":0}{"n":1,"s":"}{"}  {"n":2}
{
  "n": 3
}"#;
    let r = Bucket::new().replay_bytes("c.gz", &gzip(data));
    assert_eq!(r.report().framing, Some("json"));
    assert_eq!(
        r.bodies(),
        vec![
            json!({"n":0}),
            json!({"n":1,"s":"}{"}),
            json!({"n":2}),
            json!({"n":3})
        ]
    );
}

#[test]
fn crlf_lines_and_blank_lines_are_tolerated() {
    let r = Bucket::new().replay_bytes("crlf", b"{\"n\":0}\r\n\r\n{\"n\":1}\r\n   \n{\"n\":2}");
    assert_eq!(r.bodies(), numbered(3));
    assert_eq!(r.report().counts.records, 3, "blank lines are not records");
}

#[test]
fn a_custom_delimiter_splits_records() {
    let b = Bucket::new();
    b.put("d", b"{\"n\":0}|{\"n\":1}|{\"n\":2}|");
    let s = Settings {
        framing: "delimiter:|".parse().unwrap(),
        ..Settings::default()
    };
    let r = b.replay("d", &s);
    assert_eq!(r.bodies(), numbered(3));
    assert_eq!(r.report().framing, Some("delimiter"));
}

#[test]
fn forced_newline_framing_treats_concatenated_values_as_one_bad_record() {
    let b = Bucket::new();
    b.put("c", b"{\"n\":0}{\"n\":1}\n{\"n\":2}\n");
    let s = Settings {
        framing: "newline".parse().unwrap(),
        ..Settings::default()
    };
    let r = b.replay("c", &s);
    assert_eq!(r.bodies(), vec![json!({"n":2})]);
    assert_eq!(
        r.dead_records(),
        vec![(
            0,
            "invalid JSON: trailing characters at line 1 column 8".to_string()
        )]
    );
}

#[test]
fn row_ids_are_stable_across_replays_and_change_with_content() {
    let b = Bucket::new();
    let first = b.replay_bytes("k.gz", &gzip(&ndjson(3)));
    let again = b.replay_bytes("k.gz", &gzip(&ndjson(3)));
    let ids = |r: &Replayed| {
        r.rows
            .iter()
            .map(|v| v["_row_id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&again));
    let changed = b.replay_bytes("k.gz", &gzip(&ndjson(4)));
    assert_ne!(
        ids(&first)[0],
        ids(&changed)[0],
        "new content, new ETag, new IDs"
    );
}

#[test]
fn row_ids_can_come_from_a_field() {
    let b = Bucket::new();
    b.put(
        "f",
        b"{\"id\":\"e-1\",\"v\":1}\n{\"id\":\"e-1\",\"v\":2}\n{\"v\":3}\n",
    );
    let s = Settings {
        row_id: firehose_replay::row::RowIdSource::field("id"),
        ..Settings::default()
    };
    let r = b.replay("f", &s);
    let ids: Vec<&str> = r
        .rows
        .iter()
        .map(|v| v["_row_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["e-1", "e-1"],
        "the same event ID dedups across records"
    );
    assert_eq!(
        r.dead_records(),
        vec![(2, "row-id field `id` is missing".to_string())]
    );
}

#[test]
fn non_object_records_are_wrapped_and_the_column_can_be_disabled() {
    let b = Bucket::new();
    b.put("w", b"[1,2]\n\"s\"\n{\"a\":1}\n");
    let s = Settings {
        row_id_column: None,
        ..Settings::default()
    };
    let r = b.replay("w", &s);
    assert_eq!(
        r.rows,
        vec![json!({"value":[1,2]}), json!({"value":"s"}), json!({"a":1})]
    );
}

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
    // 32 MiB of one record repeated compress to ~32 KiB (zeros would be refused as binary
    // before the cap is reached).
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = b"{\"n\":0}\n".repeat(1 << 17);
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

/// Settings as the CLI's defaults have them (`--max-record-error-ratio` included).
fn cli_defaults() -> Settings {
    Settings {
        max_record_error_ratio: Some(firehose_replay::pipeline::DEFAULT_MAX_RECORD_ERROR_RATIO),
        ..Settings::default()
    }
}

fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545f4914f6cdd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn objects_that_are_not_records_fail_saying_what_they_are() {
    let b = Bucket::new();
    let mut parquet = b"PAR1".to_vec();
    parquet.extend(noise(5000));
    parquet.extend(b"PAR1");
    // Firehose's Parquet output sits beside its JSON: named like the JSON, found by its bytes.
    for (key, body, what) in [
        ("random.gz", gzip(&noise(1 << 20)), "binary data"),
        ("zeros.gz", gzip(&vec![0u8; 16 << 20]), "binary data"),
        (
            "s-1-2026-11-25-22-00-00-x.parquet",
            parquet.clone(),
            "a Parquet file",
        ),
        (
            "s-1-2026-11-25-22-00-00-x.gz",
            gzip(&parquet),
            "a Parquet file",
        ),
        ("x.orc", b"ORC\x0a\x03\x12\x00".to_vec(), "an ORC file"),
    ] {
        b.put(key, &body);
        let r = b.replay(key, &cli_defaults());
        let e = &r.failure().error;
        assert_eq!(e.class, Class::Permanent, "{key}");
        assert!(e.to_string().contains(what), "{key}: {e}");
        assert!(e.to_string().contains("not JSON records"), "{key}: {e}");
        assert!(r.rows.is_empty(), "{key}: no accidental scalars");
        assert!(r.dead_letter.is_none(), "{key}: no records letter");
    }
}

#[test]
fn text_that_is_overwhelmingly_not_records_fails_by_the_default_ratio() {
    // Log lines, a few of which happen to be numbers: not 3 rows and 27 bad records.
    let mut text = String::new();
    for i in 0..30 {
        if i % 10 == 0 {
            text.push_str(&format!("{i}\n"));
        } else {
            text.push_str(&format!("INFO request {i} served in 12ms\n"));
        }
    }
    let b = Bucket::new();
    b.put("app.log", text.as_bytes());
    let r = b.replay("app.log", &cli_defaults());
    assert!(
        r.failure()
            .error
            .to_string()
            .contains("27 of the object's 30 records"),
        "{}",
        r.failure().error
    );
    assert!(r.rows.is_empty());
    // Records with a bad one here and there still land under the default.
    let r = b.replay_bytes("ok", b"{\"n\":0}\nbad\n{\"n\":1}\n");
    assert_eq!(r.bodies(), numbered(2));
}

#[test]
fn an_object_of_many_bad_records_logs_a_few_and_then_their_count() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("logs/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..2000)
        .map(|i| {
            if i % 2 == 0 {
                format!("{{\"n\":{i}}}\n")
            } else {
                format!("bad line {i}\n")
            }
        })
        .collect();
    std::fs::write(dir.join("a.json"), body).unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "logs/2026/11/25/13/a.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let bad_lines = stderr.lines().filter(|l| l.contains("bad record:")).count();
    assert_eq!(bad_lines, 5, "{stderr}");
    assert!(
        stderr.contains("995 more bad records not logged one by one"),
        "{stderr}"
    );
    assert!(stderr.lines().count() < 30, "{stderr}");
    let letter: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            work.path()
                .join("dead-letter/logs/2026/11/25/13/a.json.records.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(letter["records"].as_array().unwrap().len(), 1000);
}

#[test]
fn the_summary_counts_what_a_failed_object_read() {
    // 50,000 lines of text, one in ten a number: failed by the default error ratio after it was
    // read whole. Its records and bytes were work done; its rows were not written.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("logs/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..50_000)
        .map(|i| {
            if i % 10 == 0 {
                format!("{i}\n")
            } else {
                format!("INFO request {i} served in 12ms by worker {}\n", i % 7)
            }
        })
        .collect();
    std::fs::write(dir.join("app.log"), &body).unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "logs/2026/11/25/13/app.log"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("45000 of the object's 50000 records"),
        "{stderr}"
    );
    assert!(
        stderr.contains("records:  50000 (0 rows written"),
        "{stderr}"
    );
    let mib = format!("{:.2} MiB in", body.len() as f64 / 1048576.0);
    assert!(
        stderr.contains(&format!("bytes:    {mib}")),
        "{mib}: {stderr}"
    );
    assert!(stderr.lines().filter(|l| l.contains("bad record:")).count() <= 5);
}

#[test]
fn a_records_letter_past_the_scratch_limit_fails_its_object_and_frees_the_disk() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("logs/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    // Half bad: the error ratio passes it, and its letter would hold ~20,000 records.
    let body: String = (0..40_000)
        .map(|i| {
            if i % 2 == 0 {
                format!("{{\"n\":{i}}}\n")
            } else {
                format!("bad line number {i} of many\n")
            }
        })
        .collect();
    std::fs::write(dir.join("a.json"), body).unwrap();
    let run = |extra: &[&str]| {
        bin()
            .current_dir(work.path())
            .args(["replay", "logs/2026/11/25/13/a.json", "--force"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--max-scratch-bytes", "200000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("scratch space limit reached") && stderr.contains("[permanent]"),
        "{stderr}"
    );
    let letters = work.path().join("dead-letter/logs/2026/11/25/13");
    let names: Vec<String> = std::fs::read_dir(&letters)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["a.json.object.json"],
        "no partial records letter left"
    );
    // Under the default limit the same object passes, its letter whole.
    let out = run(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(letters.join("a.json.records.json").exists());
}

#[test]
fn a_decoding_error_names_where_the_bad_bytes_are_not_the_end_of_the_object() {
    // A gzip member followed by plain JSON: the junk starts right after the member. The
    // position is where the decoder stopped (within the 10 bytes of the header it tried to
    // read there), not the end of what was fetched.
    let member = gzip(b"{\"n\":0}\n{\"n\":1}\n");
    let mut body = member.clone();
    for i in 0..40 {
        body.extend(format!("{{\"plain\":{i},\"pad\":\"xxxxxxxxxx\"}}\n").bytes());
    }
    let r = Bucket::new().replay_bytes("mixed.gz", &body);
    let e = &r.failure().error;
    assert_eq!(e.stage, Stage::Decompress, "{e}");
    let at = e.byte_offset.unwrap();
    let start = member.len() as u64;
    assert!(
        (start..=start + 10).contains(&at),
        "junk starts at {start}, reported {at} of {}",
        body.len()
    );
    // A cut stream ends where the bytes end.
    let whole = gzip(&ndjson(20_000));
    let r = Bucket::new().replay_bytes("cut.gz", &whole[..whole.len() / 2]);
    assert_eq!(
        r.failure().error.byte_offset,
        Some(whole.len() as u64 / 2),
        "{}",
        r.failure().error
    );
}

#[test]
fn oversized_records_spooled_past_the_scratch_limit_fail_their_object_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("logs/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let big = format!("{{\"blob\":\"{}\"}}\n", "x".repeat(300_000));
    std::fs::write(
        dir.join("big.json"),
        format!("{{\"n\":0}}\n{big}{{\"n\":1}}\n"),
    )
    .unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "logs/2026/11/25/13/big.json"])
        .args([
            "--max-record-bytes",
            "1000",
            "--max-scratch-bytes",
            "100000",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("scratch space limit reached") && stderr.contains("[permanent]"),
        "{stderr}"
    );
    assert!(!stderr.contains("retrying"), "not retried: {stderr}");
}

/// 128 MiB of whitespace between two records, gzipped to a few hundred KiB: both records land,
/// and the replay's peak memory stays far below the whitespace's size — the framer holds on to
/// no decompressed chunk it only passed over.
#[test]
fn a_whitespace_bomb_between_records_is_replayed_in_bounded_memory() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("arch");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join("bomb.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(b"{\"n\":0}").unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..128 {
        gz.write_all(&spaces).unwrap();
    }
    gz.write_all(b"{\"n\":1}\n").unwrap();
    gz.finish().unwrap();

    // Reaped by `wait4` below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = bin()
        .current_dir(work.path())
        .args(["replay", "arch", "--sink", "ndjson:out", "--ledger", "none"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The child's own peak RSS, from the kernel as it is reaped (not the test process's other
    // children's).
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value, and wait4 only writes into the two
    // pointers given, which outlive the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
    let peak_mib = usage.ru_maxrss / 1024;
    assert!(
        peak_mib < 96,
        "peak RSS {peak_mib} MiB for 128 MiB of whitespace"
    );
    let rows = read_ndjson(&work.path().join("out/arch/bomb.gz.ndjson"));
    let ns: Vec<_> = rows.iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [0, 1]);
}

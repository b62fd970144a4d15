//! The binary as users run it: exit codes, summaries, determinism, the sample data.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{bin, expected, read_ndjson, sample_root};

fn backfill_sample(work: &Path) -> Output {
    bin()
        .current_dir(work)
        .arg("backfill")
        .arg(sample_root())
        .args([
            "--from",
            "2026-11-25",
            "--to",
            "2026-11-26",
            "--include-error-output",
        ])
        .output()
        .unwrap()
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(dir);
    v.sort();
    v
}

/// Files below `dir`, leaving out dot-files (the ledger, temporary files).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_sample_backfill_produces_the_documented_counts() {
    let work = tempfile::tempdir().unwrap();
    let out = backfill_sample(work.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let exp = expected();
    let per_object = exp["per_object"].as_object().unwrap();

    // One output file per sample object, with exactly the documented rows.
    let outputs = files_under(&work.path().join("out/firehose"));
    assert_eq!(outputs.len(), per_object.len(), "{outputs:?}");
    let mut ids = std::collections::HashSet::new();
    for (key, counts) in per_object {
        let rows = read_ndjson(
            &work
                .path()
                .join("out/firehose")
                .join(format!("{key}.ndjson")),
        );
        assert_eq!(rows.len() as u64, counts["rows"].as_u64().unwrap(), "{key}");
        for r in rows {
            assert!(
                ids.insert(r["_row_id"].as_str().unwrap().to_string()),
                "duplicate id in {key}"
            );
        }
    }
    assert_eq!(ids.len() as u64, exp["rows"].as_u64().unwrap());

    let summary = format!(
        "objects:  {} ({} ok, 0 skipped by the ledger, 0 failed)",
        exp["objects"], exp["objects"]
    );
    assert!(stderr.contains(&summary), "{stderr}");
    let records = format!(
        "records:  {} ({} rows written, {} record errors, {} control messages skipped)",
        exp["records"], exp["rows"], exp["record_errors"], exp["control_messages"]
    );
    assert!(stderr.contains(&records), "{stderr}");

    // The malformed records are in the dead-letter directory.
    let dead: u64 = files_under(&work.path().join("dead-letter"))
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["records"].as_array().map_or(0, |a| a.len() as u64)
        })
        .sum();
    assert_eq!(dead, exp["record_errors"].as_u64().unwrap());
}

#[test]
fn running_the_main_command_twice_gives_byte_identical_output() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert!(backfill_sample(a.path()).status.success());
    assert!(backfill_sample(b.path()).status.success());
    assert!(
        backfill_sample(b.path()).status.success(),
        "a rerun over existing output"
    );
    let fa = files_under(&a.path().join("out"));
    let fb = files_under(&b.path().join("out"));
    assert_eq!(fa.len(), fb.len());
    assert!(!fa.is_empty());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(
            x.strip_prefix(a.path()).unwrap(),
            y.strip_prefix(b.path()).unwrap()
        );
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
}

#[test]
fn replaying_one_file_gives_the_same_rows_as_the_backfill() {
    let exp = expected();
    let (key, _) = exp["per_object"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with(".gz"))
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    assert!(backfill_sample(work.path()).status.success());
    let single = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(single.path())
        .arg("replay")
        .arg(sample_root().join(key))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = format!("out/firehose/{key}.ndjson");
    assert_eq!(
        std::fs::read(work.path().join(&path)).unwrap(),
        std::fs::read(single.path().join(&path)).unwrap()
    );
}

#[test]
fn a_failed_object_exits_1_with_its_reason_and_the_rest_still_lands() {
    let t = tempfile::tempdir().unwrap();
    let hour = t.path().join("b/2026/11/25/22");
    std::fs::create_dir_all(&hour).unwrap();
    std::fs::write(hour.join("a-1.gz"), [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    std::fs::write(hour.join("b-1"), b"{\"ok\":true}\n").unwrap();
    let out = bin()
        .current_dir(t.path())
        .args([
            "backfill",
            "b",
            "--from",
            "2026-11-25T22",
            "--to",
            "2026-11-25T22",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed: b/2026/11/25/22/a-1.gz"),
        "{stderr}"
    );
    assert!(stderr.contains("gzip data ends early"), "{stderr}");
    assert_eq!(
        read_ndjson(&t.path().join("out/b/2026/11/25/22/b-1.ndjson")).len(),
        1
    );
    let letter: Value = serde_json::from_slice(
        &std::fs::read(
            t.path()
                .join("dead-letter/b/2026/11/25/22/a-1.gz.object.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(letter["stage"], "decompress");
    assert_eq!(letter["class"], "permanent");
}

#[test]
fn usage_errors_exit_2() {
    let out = bin()
        .args(["backfill", "x", "--from", "2026-11-25"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["replay", "x", "--framing", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown framing `xml`"));
    let out = bin()
        .args([
            "backfill",
            ".",
            "--from",
            "2026-11-26",
            "--to",
            "2026-11-25",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is before --from"));
}

#[test]
fn flags_can_come_from_the_environment() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("x"), b"{\"a\":1}\n").unwrap();
    let out = bin()
        .current_dir(t.path())
        .env("FIREHOSE_REPLAY_SINK", "stdout")
        .env("FIREHOSE_REPLAY_ROW_ID_COLUMN", "")
        .args(["replay", "x"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"a\":1}\n");
}

#[test]
fn metadata_columns_and_a_field_map_shape_every_row() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("arch/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let name = "s-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e";
    std::fs::write(
        dir.join(name),
        "{\"ts\":\"2026-11-25T13:00:00Z\",\"debug\":1,\"detail\":{\"id\":\"e-1\",\"k\":[1]}}\n[1]\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("map.json"),
        r#"{"rename":{"detail.id":"event_id"},"drop":["debug"],"json":["detail"]}"#,
    )
    .unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "arch", "--map", "map.json"])
        .args([
            "--metadata-columns",
            "source_uri,record_ordinal,ingested_at",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_ndjson(
        &work
            .path()
            .join(format!("out/arch/2026/11/25/13/{name}.ndjson")),
    );
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r["event_id"], "e-1");
    assert_eq!(
        r["detail"], "{\"k\":[1]}",
        "a JSON column is sent as JSON text"
    );
    assert!(r.get("debug").is_none());
    assert_eq!(r["_source_uri"], format!("s3://arch/2026/11/25/13/{name}"));
    assert_eq!(r["_record_ordinal"], 0);
    assert!(r["_ingested_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rows[1]["value"], serde_json::json!([1]));
    assert_eq!(rows[1]["_record_ordinal"], 1);
    // A bad map is a usage error.
    std::fs::write(work.path().join("bad.json"), r#"{"renames":{}}"#).unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "arch", "--map", "bad.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a mapping"));
}

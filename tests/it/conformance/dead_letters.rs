//! Bad records and failed objects reach dead letters with the same fields in every sink, and
//! `redrive` lands them (under their original row IDs), leaving only what still fails.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::run::{expect, Target};
use super::sinks::{selected, Redrive, Servers};
use super::{assert_exactly_once, reference};

/// Records longer than this are record errors in the first run (the redrive lifts it).
const MAX_RECORD: &str = "256";
const LIFTED: &str = "1048576";

/// Object `a`: good records, one too long and one that is not JSON (a records letter). Object
/// `b`: only records too long, so the object fails as a whole (an object letter).
fn source(scenario: &Path) -> std::path::PathBuf {
    let root = scenario.join("src/in");
    let long = "x".repeat(400);
    let a = "2026/11/25/13/s-1-2026-11-25-13-00-00-0b4c2c6e-5a1f-4f3e-9b7e-00000000000a";
    let b = "2026/11/25/14/s-1-2026-11-25-14-00-00-0b4c2c6e-5a1f-4f3e-9b7e-00000000000b";
    let mut text = String::new();
    for i in 0..6 {
        let record = match i {
            2 => json!({"k": "a-long", "s": long}).to_string(),
            4 => "{\"k\": not json}".to_string(),
            _ => json!({"k": format!("a{i}"), "n": i}).to_string(),
        };
        text.push_str(&record);
        text.push('\n');
    }
    let path = root.join(a);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    let text: String = (0..3)
        .map(|i| format!("{}\n", json!({"k": format!("b{i}"), "s": long})))
        .collect();
    let path = root.join(b);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    root
}

/// Every letter under `work/dead-letter` by file name, with the fields that must not depend on
/// the sink (times left out).
fn letters(work: &Path) -> BTreeMap<String, Value> {
    crate::cli::files_under(&work.join("dead-letter"))
        .iter()
        .map(|f| {
            let d: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            let records: Option<Vec<Value>> = d["records"].as_array().map(|rs| {
                rs.iter()
                    .map(|r| {
                        json!({"ordinal": r["ordinal"], "byte_offset": r["byte_offset"],
                               "stage": r["stage"], "raw": r["raw"], "error": r["error"]})
                    })
                    .collect()
            });
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let fields = json!({
                "object": d["object"], "stage": d["stage"], "class": d["class"],
                "error": d["error"], "attempts": d["attempts"], "source": d["source"],
                "records": records,
            });
            (name, fields)
        })
        .collect()
}

#[test]
fn conformance_bad_records_and_failed_objects_reach_the_same_dead_letters_and_redrive_lands_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    // What lands once the limit is lifted: everything but the record that is not JSON.
    let want = reference(tmp.path(), &src, &["--max-record-bytes", LIFTED]);
    assert_eq!(want.len(), 5 + 3, "{want:?}");
    let servers = Servers::default();
    let mut first: Option<(&str, BTreeMap<String, Value>)> = None;
    for sink in selected() {
        let t = Target::new(sink, &servers, tmp.path(), "");
        let name = t.name();
        eprintln!("conformance: {name}");
        let run = expect(t.replay(&src, &["--max-record-bytes", MAX_RECORD]), 1, name);
        let summary = run.summary();
        let rows = t.rows();
        assert_eq!(
            (
                summary.ok,
                summary.failed,
                summary.written,
                summary.record_errors
            ),
            (1, 1, 4, 2),
            "{name}: {}",
            run.stderr
        );
        assert_eq!(rows.len() as u64, summary.written, "{name}: {rows:?}");

        let held = letters(&t.work);
        let kinds: Vec<&str> = held.keys().map(|n| n.rsplit('.').nth(1).unwrap()).collect();
        assert_eq!(kinds, ["records", "object"], "{name}: {held:#?}");
        match &first {
            None => first = Some((name, held.clone())),
            Some((base, base_letters)) => assert_eq!(
                &held, base_letters,
                "{name}'s dead letters differ from {base}'s"
            ),
        }

        if sink.guarantees().redrive == Redrive::Refused {
            let refused = expect(
                t.redrive_as_replayed(&["--max-record-bytes", LIFTED]),
                2,
                name,
            );
            assert!(
                refused.stderr.contains("redrive"),
                "{name}: {}",
                refused.stderr
            );
            assert_eq!(
                letters(&t.work),
                held,
                "{name}: a refused redrive leaves the letters"
            );
        }
        // Redriven with the limit lifted: the long records land, under their original row
        // IDs; the record that is not JSON still fails and stays in its letter.
        let redrive = expect(t.redrive(&["--max-record-bytes", LIFTED]), 1, name);
        assert!(
            redrive.stderr.contains("records still fail"),
            "{name}: {}",
            redrive.stderr
        );
        assert_exactly_once(&t.rows(), &want, &format!("{name}: after the redrive"));
        let left = letters(&t.work);
        let left: Vec<(&String, Vec<u64>)> = left
            .iter()
            .map(|(n, l)| {
                let ordinals = l["records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r["ordinal"].as_u64().unwrap())
                    .collect();
                (n, ordinals)
            })
            .collect();
        assert_eq!(left.len(), 1, "{name}: {left:?}");
        assert!(left[0].0.ends_with(".records.json"), "{name}: {left:?}");
        assert_eq!(
            left[0].1,
            vec![4],
            "{name}: only the record that is not JSON"
        );
    }
}

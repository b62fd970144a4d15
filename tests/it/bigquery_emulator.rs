//! The BigQuery sink end to end against the local-bigquery emulator: the real binary backfills
//! the sample archive into a table it creates from a schema file, and the rows are read back.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value;

use crate::bq_emulator::BqEmulator;
use crate::support::{bin, expected, read_ndjson, sample_root};

fn backfill(emu: &BqEmulator, work: &Path, extra: &[&str]) -> String {
    let root = sample_root();
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/bigquery/events.schema.json");
    let out = bin()
        .current_dir(work)
        .args([
            "backfill",
            root.to_str().unwrap(),
            "--from",
            "2026-11-25",
            "--to",
            "2026-11-26",
        ])
        .arg("--include-error-output")
        .args(["--sink", "bigquery:test-proj.bi.events"])
        .args([
            "--bigquery-endpoint",
            &emu.endpoint,
            "--bigquery-mode",
            "insert-all",
        ])
        .args(["--create-table-schema", schema.to_str().unwrap()])
        .args(["--partition-by", "event_time", "--ignore-unknown-values"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn the_sample_archive_lands_in_the_emulator_with_unique_stable_row_ids() {
    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    let work = tempfile::tempdir().unwrap();
    let stderr = backfill(&emu, work.path(), &[]);
    let want = expected();
    assert!(
        stderr.contains(&format!("{} rows written", want["rows"])),
        "{stderr}"
    );
    let rows = emu.rows("bi", "events");
    assert_eq!(rows.len() as u64, want["rows"].as_u64().unwrap());
    let ids: BTreeSet<String> = rows
        .iter()
        .map(|r| r["_row_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), rows.len(), "row IDs are unique");

    // The same rows and IDs as the NDJSON sink writes (row IDs depend on the source only).
    let nd = bin()
        .current_dir(work.path())
        .args([
            "backfill",
            sample_root().to_str().unwrap(),
            "--from",
            "2026-11-25",
            "--to",
            "2026-11-26",
        ])
        .args([
            "--include-error-output",
            "--sink",
            "ndjson:nd",
            "--ledger",
            "none",
        ])
        .output()
        .unwrap();
    assert!(nd.status.success());
    let mut nd_rows: HashMap<String, Value> = HashMap::new();
    for f in crate::cli::files_under(&work.path().join("nd")) {
        for r in read_ndjson(&f) {
            nd_rows.insert(r["_row_id"].as_str().unwrap().to_string(), r);
        }
    }
    assert_eq!(ids, nd_rows.keys().cloned().collect::<BTreeSet<_>>());
    // Values made it through: every shop event keeps its ID and type, every log event its text.
    for r in &rows {
        let src = &nd_rows[r["_row_id"].as_str().unwrap()];
        for col in ["event_id", "event_type", "user_id", "message", "logGroup"] {
            if let Some(v) = src.get(col).and_then(Value::as_str) {
                assert_eq!(r[col].as_str(), Some(v), "{col} of {src}");
            }
        }
    }

    // Replayed (forced past the ledger): the same row IDs, and insertId keeps them single.
    let again = backfill(&emu, work.path(), &["--force"]);
    assert!(
        again.contains(&format!("{} rows written", want["rows"])),
        "{again}"
    );
    let rows2 = emu.rows("bi", "events");
    let ids2: BTreeSet<String> = rows2
        .iter()
        .map(|r| r["_row_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids2, ids);
    assert_eq!(rows2.len(), rows.len());
    // Without --force, the ledger skips everything.
    let skipped = backfill(&emu, work.path(), &[]);
    assert!(skipped.contains("13 skipped by the ledger"), "{skipped}");
}

#[test]
fn rows_the_emulator_refuses_reach_the_dead_letter_with_its_message() {
    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    let work = tempfile::tempdir().unwrap();
    crate::bigquery_modes::strict_table(&emu, work.path());
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "in", "--sink", "bigquery:test-proj.bi.strict"])
        .args([
            "--bigquery-endpoint",
            &emu.endpoint,
            "--bigquery-mode",
            "insert-all",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 rows written, 2 record errors"),
        "{stderr}"
    );
    let mut ns: Vec<String> = emu
        .rows("bi", "strict")
        .iter()
        .map(|r| r["n"].to_string())
        .collect();
    ns.sort();
    assert_eq!(ns, vec!["\"1\"", "\"4\""]);
    let letters = crate::cli::files_under(&work.path().join("dead-letter"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let dl: Value = serde_json::from_slice(&std::fs::read(&letters[0]).unwrap()).unwrap();
    let errors: Vec<&str> = dl["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].contains("Cannot convert value to integer"),
        "{errors:?}"
    );
    assert!(errors[1].contains("no such field: bogus"), "{errors:?}");
}

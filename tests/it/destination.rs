//! The destination is checked before the first object: a storage-write or insert-all run into
//! a BigQuery table that does not exist, with nothing to create it, is refused at start (exit
//! 2, naming the flags that would create it) — no object is read, failed or dead-lettered; load
//! mode gives the same refusal when it reads the table at start.

use std::path::Path;

use crate::bigquery_modes::start;
use crate::support::bin;

fn one_object(work: &Path) -> String {
    let dir = work.join("in/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("s-1-2026-11-25-13-00-00-x"),
        "{\"event_id\":\"e0\"}\n",
    )
    .unwrap();
    "in".into()
}

#[test]
fn a_missing_table_refuses_the_run_before_any_object_in_storage_write_and_insert_all() {
    let (emu, work) = start();
    let src = one_object(work.path());
    for mode in ["storage-write", "insert-all"] {
        let out = bin()
            .current_dir(work.path())
            .args(["replay", &src, "--sink", "bigquery:test-proj.bi.nowhere"])
            .args(["--bigquery-mode", mode])
            .args(["--bigquery-endpoint", &emu.endpoint])
            .args(["--bigquery-storage-endpoint", &emu.grpc_endpoint])
            .args(["--ledger", "file:ledger.jsonl", "--dead-letter", "dir:dead"])
            .args(["--max-attempts", "1", "--retry-min-delay-ms", "10"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mode}: {stderr}");
        assert!(
            stderr.contains("test-proj.bi.nowhere does not exist")
                && stderr.contains("--create-table auto")
                && stderr.contains("--create-table-schema"),
            "{mode}: {stderr}"
        );
        assert!(
            !stderr.contains("object failed") && !stderr.contains("failed:"),
            "{mode}: no object may be tried: {stderr}"
        );
        assert!(
            !work.path().join("dead").exists(),
            "{mode}: nothing dead-lettered"
        );
        assert!(
            !work.path().join("ledger.jsonl").exists()
                || std::fs::read_to_string(work.path().join("ledger.jsonl"))
                    .unwrap()
                    .is_empty(),
            "{mode}: nothing in the ledger"
        );
    }
    assert!(
        emu.tables("bi").is_empty(),
        "a refused run creates no table"
    );
    // The same run with a way to create the table goes through (the check does not refuse
    // what --create-table auto would create).
    let out = bin()
        .current_dir(work.path())
        .args(["replay", &src, "--sink", "bigquery:test-proj.bi.nowhere"])
        .args(["--bigquery-mode", "insert-all", "--create-table", "auto"])
        .args(["--bigquery-endpoint", &emu.endpoint])
        .args(["--ledger", "file:ledger.jsonl", "--dead-letter", "dir:dead"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(emu.rows("bi", "nowhere").len(), 1, "{stderr}");
}

/// Load mode reads the table when it connects: a missing one that nothing would create refuses
/// the run the same way (exit 2, the same words), before any object is staged or dead-lettered;
/// `--create-table auto` lets the first batch's job create it.
#[test]
fn a_missing_table_refuses_a_load_mode_run_before_any_object() {
    let (emu, work) = start();
    let src = one_object(work.path());
    let load = |extra: &[&str]| {
        bin()
            .current_dir(work.path())
            .args(["replay", &src, "--sink", "bigquery:test-proj.bi.nowhere"])
            .args(["--bigquery-mode", "load", "--load-poll-ms", "50"])
            .args(["--bigquery-endpoint", &emu.endpoint])
            .args(["--ledger", "file:ledger.jsonl", "--dead-letter", "dir:dead"])
            .args(["--max-attempts", "1", "--retry-min-delay-ms", "10"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = load(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("test-proj.bi.nowhere does not exist and nothing would create it")
            && stderr.contains("--create-table auto"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("failed:"),
        "no object may be tried: {stderr}"
    );
    assert!(!work.path().join("dead").exists(), "nothing dead-lettered");
    assert!(
        emu.tables("bi").is_empty(),
        "a refused run creates no table"
    );
    let out = load(&["--create-table", "auto"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(emu.rows("bi", "nowhere").len(), 1, "{stderr}");
}

/// `--dedup merge` with insert-all is a usage error (exit 2) refused before anything connects.
#[test]
fn merge_with_insert_all_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    let src = one_object(work.path());
    let out = bin()
        .current_dir(work.path())
        .args(["replay", &src, "--sink", "bigquery:test-proj.bi.t"])
        .args(["--bigquery-mode", "insert-all", "--dedup", "merge"])
        // Nothing listens here: the refusal comes before any connection.
        .args(["--bigquery-endpoint", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("insertAll cannot be merged"), "{stderr}");
}

//! Helpers that several integration test files need alike: Firehose object names, small
//! archives in a local directory, running the binary, and reading dead letters and tables
//! back. (`support.rs` holds the in-process pipeline harness and the byte generators.)

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::bq_emulator::BqEmulator;

/// A Firehose object name written at 2026-11-25 22:05 (`n` makes the UUID unique).
pub fn firehose_key(stream: &str, n: u32) -> String {
    format!("2026/11/25/22/{stream}-1-2026-11-25-22-05-13-0b4c2c6e-5a1f-4f3e-9b7e-{n:012}.json")
}

/// Writes `objects` (key → records, one JSON value a line) below `root`.
pub fn archive<K: AsRef<str>>(root: &Path, objects: &[(K, Vec<Value>)]) {
    for (key, records) in objects {
        let path = root.join(key.as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(path, text).unwrap();
    }
}

/// `replay ROOT` into `bigquery:test-proj.bi.<sink>` (a table or a routed template) in `mode`
/// on the emulator, with a ledger file in `work`.
pub fn replay_into_bigquery(
    emu: &BqEmulator,
    work: &Path,
    root: &Path,
    sink: &str,
    mode: &str,
) -> Command {
    let mut cmd = crate::support::bin();
    cmd.current_dir(work)
        .args(["replay", root.to_str().unwrap()])
        .args(["--sink", &format!("bigquery:test-proj.bi.{sink}")])
        .args(["--bigquery-mode", mode])
        .args(["--bigquery-endpoint", &emu.endpoint])
        .args(["--bigquery-storage-endpoint", &emu.grpc_endpoint])
        .args([
            "--ledger",
            "file:ledger.jsonl",
            "--retry-min-delay-ms",
            "50",
        ]);
    cmd
}

/// Runs `cmd`: (exit code, stderr).
pub fn run(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd`, which must succeed: its stderr.
pub fn run_ok(cmd: Command) -> String {
    let (code, stderr) = run(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    stderr
}

/// The errors of every dead-lettered record under `work/dead-letter`, sorted.
pub fn dead_letter_errors(work: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for f in crate::cli::files_under(&work.join("dead-letter")) {
        let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&f).unwrap()) else {
            continue;
        };
        for r in v["records"].as_array().into_iter().flatten() {
            errors.push(r["error"].as_str().unwrap_or_default().to_string());
        }
    }
    errors.sort();
    errors
}

/// The tables of dataset `bi`, sorted.
pub fn table_names(emu: &BqEmulator) -> Vec<String> {
    let mut names: Vec<String> = emu
        .tables("bi")
        .iter()
        .map(|t| t["tableReference"]["tableId"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

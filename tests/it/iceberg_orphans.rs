//! `iceberg-orphans`: a batch killed between writing its data files and committing them leaves
//! files no snapshot references; the command lists exactly those (once old enough), `--delete`
//! removes them, and the table still reads every row once.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::archive;
use crate::iceberg_tables::IcebergTable;
use crate::support::bin;

fn replay(work: &Path, src: &Path, table: &IcebergTable) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", src.to_str().unwrap(), "--sink", &table.sink()])
        .args(["--ledger", "file:ledger.jsonl"]);
    cmd
}

/// `iceberg-orphans` on `table`: exit status, stdout's lines, stderr.
fn orphans(table: &IcebergTable, extra: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let out = bin()
        .args(["iceberg-orphans", "--sink", &table.sink()])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Holds a write lock on an SQLite database (another process's open write transaction) until
/// dropped: a commit to the catalog waits, then fails, and is retried meanwhile.
struct WriteLock(std::process::Child);

impl WriteLock {
    fn take(db: &Path) -> WriteLock {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                 c.execute('BEGIN IMMEDIATE')\n\
                 print('locked', flush=True)\n\
                 sys.stdin.read()\n",
                db.to_str().unwrap(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        WriteLock(child)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // closed: the process ends, and its transaction
        let _ = self.0.wait();
    }
}

fn staged_batch(work: &Path) -> Option<String> {
    let text = std::fs::read_to_string(work.join("ledger.jsonl")).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| {
            v["staged"]["token"]
                .as_str()
                .and_then(|t| t.strip_prefix("iceberg:"))
                .map(str::to_string)
        })
}

#[test]
fn iceberg_orphans_lists_a_killed_batchs_files_and_delete_removes_only_them() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::create(
        &tmp.path().join("ice"),
        "ns.t",
        json!([["_replay_row_id", "string", true], ["k", "long", false]]),
    );
    let src = tmp.path().join("src");
    let objects: Vec<(String, Vec<Value>)> = (0..3u64)
        .map(|o| {
            (
                format!("2026/12/07/10/s-1-2026-12-07-10-00-00-6a1f0c1e-2b3c-4d5e-8f90-{o:012}"),
                (0..10u64).map(|r| json!({"k": o * 10 + r})).collect(),
            )
        })
        .collect();
    archive(&src, &objects);

    // The batch's files are written and its objects staged; its commit waits on the catalog's
    // lock, and the process is killed there.
    let lock = WriteLock::take(&table.db);
    let mut child = replay(tmp.path(), &src, &table)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = loop {
        if let Some(batch) = staged_batch(tmp.path()) {
            break batch;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before staging its batch"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(lock);
    assert_eq!(
        table.snapshots().len(),
        0,
        "the killed batch never committed"
    );

    // Fresh files are a running writer's as far as anyone can tell: not listed by default.
    let (code, lines, stderr) = orphans(&table, &[]);
    assert_eq!((code, lines.len()), (Some(0), 0), "{stderr}");
    assert!(stderr.contains("0 orphaned data files"), "{stderr}");

    // The rerun writes the objects again (a new batch), and commits.
    let out = replay(tmp.path(), &src, &table).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let committed: Vec<String> = table
        .snapshots()
        .iter()
        .filter_map(|s| s["firehose-replay.batch"].as_str().map(str::to_string))
        .collect();
    assert_eq!(committed.len(), 1);
    assert_ne!(committed[0], killed);

    let (code, lines, stderr) = orphans(&table, &["--min-age", "0s"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!lines.is_empty(), "{stderr}");
    let listed: Vec<&str> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    for line in &lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[3], killed, "only the killed batch's files: {line}");
    }
    // Exactly the killed batch's files: every one on disk is listed.
    let on_disk: Vec<String> = crate::cli::files_under(&table.warehouse)
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.contains(&format!("/fr-{killed}-")))
        .collect();
    let mut want: Vec<String> = on_disk.iter().map(|p| format!("file://{p}")).collect();
    let mut got: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    let (code, _, stderr) = orphans(&table, &["--min-age", "0s", "--delete"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("removed {} orphaned data files", want.len())),
        "{stderr}"
    );
    for p in &on_disk {
        assert!(!Path::new(p).exists(), "{p} removed");
    }
    let (_, lines, _) = orphans(&table, &["--min-age", "0s"]);
    assert!(lines.is_empty(), "{lines:?}");
    // The table's own files stay: every row once, as pyiceberg and DuckDB read it.
    let mut ks: Vec<u64> = table
        .rows()
        .iter()
        .map(|r| r["k"].as_u64().unwrap())
        .collect();
    ks.sort();
    assert_eq!(ks, (0..30).collect::<Vec<u64>>());
    assert_eq!(table.duckdb().0.len(), 30);
}

#[test]
fn iceberg_orphans_needs_an_iceberg_sink_and_a_duration() {
    let out = bin()
        .args(["iceberg-orphans", "--sink", "ndjson:./out"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --sink iceberg:"));
    let out = bin()
        .args([
            "iceberg-orphans",
            "--sink",
            "iceberg:sqlite:///x/c.db?warehouse=/x/w#n.t",
            "--min-age",
            "1 hour",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a unit: s, m, h or d"));
}

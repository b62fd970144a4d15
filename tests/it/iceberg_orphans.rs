//! `iceberg-orphans`: a batch killed between writing its data files and committing them leaves
//! files no snapshot references; the command lists exactly those (once old enough), `--delete`
//! removes them, and the table still reads every row once — on a local warehouse and on S3.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::archive;
use crate::iceberg_tables::IcebergTable;
use crate::moto::{create_bucket, rt, Moto};
use crate::support::bin;

fn replay(work: &Path, src: &Path, table: &IcebergTable) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", src.to_str().unwrap(), "--sink", &table.sink()])
        .args(["--ledger", "file:ledger.jsonl"])
        .envs(table.env());
    cmd
}

/// `iceberg-orphans` on `table`: exit status, stdout's lines, stderr.
fn orphans(table: &IcebergTable, extra: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let out = bin()
        .args(["iceberg-orphans", "--sink", &table.sink()])
        .args(extra)
        .envs(table.env())
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

/// Ten rows in each of three objects: `{"k": 0..30}`.
fn thirty_rows(src: &Path) {
    let objects: Vec<(String, Vec<Value>)> = (0..3u64)
        .map(|o| {
            (
                format!("2026/12/07/10/s-1-2026-12-07-10-00-00-6a1f0c1e-2b3c-4d5e-8f90-{o:012}"),
                (0..10u64).map(|r| json!({"k": o * 10 + r})).collect(),
            )
        })
        .collect();
    archive(src, &objects);
}

/// Replays `src` into `table` with the catalog's commit held on a lock: the batch's files are
/// written and its objects staged, and the process is killed there. The killed batch's ID.
fn kill_a_batch_before_its_commit(work: &Path, src: &Path, table: &IcebergTable) -> String {
    let lock = WriteLock::take(&table.db);
    let mut child = replay(work, src, table)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = loop {
        if let Some(batch) = staged_batch(work) {
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
    killed
}

/// What the tests around a killed batch check, on any warehouse: `files` lists every data
/// file's location in the warehouse (as the command prints them).
fn orphans_of_a_killed_batch_are_listed_exactly_and_only_they_are_removed(
    work: &Path,
    table: &IcebergTable,
    files: &dyn Fn() -> Vec<String>,
) {
    let src = work.join("src");
    thirty_rows(&src);
    let killed = kill_a_batch_before_its_commit(work, &src, table);

    // Fresh files are a running writer's as far as anyone can tell: not listed by default.
    let (code, lines, stderr) = orphans(table, &[]);
    assert_eq!((code, lines.len()), (Some(0), 0), "{stderr}");
    assert!(stderr.contains("0 orphaned data files"), "{stderr}");

    // The rerun writes the objects again (a new batch), and commits.
    let out = replay(work, &src, table).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let committed: Vec<String> = table
        .snapshots()
        .iter()
        .filter_map(|s| s["firehose-replay.batch"].as_str().map(str::to_string))
        .collect();
    assert_eq!(committed.len(), 1);
    assert_ne!(committed[0], killed);

    let before = files();
    let (code, lines, stderr) = orphans(table, &["--min-age", "0s"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!lines.is_empty(), "{stderr}");
    for line in &lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[3], killed, "only the killed batch's files: {line}");
        assert!(fields[1].parse::<u64>().unwrap() > 0, "{line}");
    }
    // Exactly the killed batch's files: every one in the warehouse is listed.
    let mut want: Vec<String> = before
        .iter()
        .filter(|p| p.contains(&format!("/fr-{killed}-")))
        .cloned()
        .collect();
    let mut got: Vec<String> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    let (code, _, stderr) = orphans(table, &["--min-age", "0s", "--delete"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("removed {} orphaned data files", want.len())),
        "{stderr}"
    );
    // Those files, and only those, are gone.
    let mut left = files();
    let mut kept: Vec<String> = before.into_iter().filter(|p| !want.contains(p)).collect();
    left.sort();
    kept.sort();
    assert_eq!(left, kept);
    let (_, lines, _) = orphans(table, &["--min-age", "0s"]);
    assert!(lines.is_empty(), "{lines:?}");
    // The table's own files stay: every row once, as pyiceberg and DuckDB read it.
    let mut ks: Vec<u64> = table
        .rows()
        .iter()
        .map(|r| r["k"].as_u64().unwrap())
        .collect();
    ks.sort();
    assert_eq!(ks, (0..30).collect::<Vec<u64>>());
    let mut duck: Vec<u64> = table
        .duckdb()
        .0
        .iter()
        .map(|r| r["k"].as_u64().unwrap())
        .collect();
    duck.sort();
    assert_eq!(duck, (0..30).collect::<Vec<u64>>());
}

#[test]
fn iceberg_orphans_lists_a_killed_batchs_files_and_delete_removes_only_them() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::create(&tmp.path().join("ice"), "ns.t", schema());
    let warehouse = table.warehouse.clone();
    orphans_of_a_killed_batch_are_listed_exactly_and_only_they_are_removed(
        tmp.path(),
        &table,
        &|| {
            crate::cli::files_under(&warehouse)
                .into_iter()
                .map(|p| format!("file://{}", p.display()))
                .filter(|p| p.ends_with(".parquet"))
                .collect()
        },
    );
}

/// Every key in `bucket` under `prefix`, as `s3://bucket/key`, page by page.
fn s3_files(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    rt().block_on(async {
        let mut pages = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                keys.push(format!("s3://{bucket}/{}", o.key().unwrap()));
            }
        }
        keys
    })
}

#[test]
fn iceberg_orphans_on_an_s3_warehouse_lists_past_the_first_page_and_deletes_only_them() {
    let moto = Moto::start();
    let s3 = moto.s3();
    rt().block_on(create_bucket(&s3, "lake"));
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::create_on_s3(&tmp.path().join("ice"), "ns.t", schema(), &moto);
    // Another writer's data files (Spark's, say), named to sort before this sink's: 1,100 of
    // them put the killed batch's files past ListObjectsV2's first page of 1,000 keys, and none
    // of them may be listed or removed.
    let data = "wh/ns/t/data";
    rt().block_on(async {
        use futures::StreamExt;
        futures::stream::iter(0..1_100)
            .map(|i| {
                s3.put_object()
                    .bucket("lake")
                    .key(format!("{data}/00000-{i:05}-other-writer.parquet"))
                    .body(b"not ours".to_vec().into())
                    .send()
            })
            .buffer_unordered(16)
            .for_each(|r| async move {
                r.unwrap();
            })
            .await;
    });
    orphans_of_a_killed_batch_are_listed_exactly_and_only_they_are_removed(
        tmp.path(),
        &table,
        &|| s3_files(&s3, "lake", "wh/"),
    );
    // (The sink's files are in the same directory, after the other writer's.)
    assert!(!s3_files(&s3, "lake", &format!("{data}/fr-")).is_empty());
    let others = s3_files(&s3, "lake", &format!("{data}/00000-"));
    assert_eq!(others.len(), 1_100, "another writer's files all stay");
}

fn schema() -> Value {
    json!([["_replay_row_id", "string", true], ["k", "long", false]])
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

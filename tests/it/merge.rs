//! `--dedup merge`: a staging table and one MERGE on the row ID per object (storage-write) or
//! batch (load), so that no replay adds a row twice, with or without a ledger. Against the
//! local-bigquery emulator, which runs MERGE (with QUALIFY) as BigQuery's SQL.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bigquery_modes::{
    assert_exactly_once, backfill_into, expected_ids, kill_points, schema_file, start, CpuBurner,
    KILLS,
};
use crate::bq_emulator::BqEmulator;
use crate::harness::run_ok;
use crate::support::{bin, sample_root};

const TABLE: &str = "bigquery:test-proj.bi.events";

/// A `--dedup merge` backfill of the sample archive up to `to`, with `ledger`.
fn merge_run(emu: &BqEmulator, work: &Path, mode: &str, to: &str, ledger: &str) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["backfill", sample_root().to_str().unwrap()])
        .args(["--from", "2026-11-25", "--to", to, "--include-error-output"])
        .args(["--sink", TABLE, "--bigquery-mode", mode, "--dedup", "merge"])
        .args(["--bigquery-endpoint", &emu.endpoint])
        .args(["--bigquery-storage-endpoint", &emu.grpc_endpoint])
        .args(["--create-table-schema", &schema_file()])
        .args(["--ignore-unknown-values", "--ledger", ledger])
        .args(["--retry-min-delay-ms", "50", "--load-poll-ms", "50"])
        .args(["--load-batch-objects", "4"]);
    cmd
}

fn merge_cmd(emu: &BqEmulator, work: &Path, mode: &str) -> Command {
    merge_run(emu, work, mode, "2026-11-26", "file:ledger.jsonl")
}

fn unledgered(emu: &BqEmulator, work: &Path, mode: &str) -> Command {
    merge_run(emu, work, mode, "2026-11-26", "none")
}

/// Tables of dataset `bi` other than the target: staging tables left behind.
fn staging_tables(emu: &BqEmulator) -> Vec<String> {
    emu.tables("bi")
        .iter()
        .filter_map(|t| t["tableReference"]["tableId"].as_str().map(String::from))
        .filter(|t| t != "events")
        .collect()
}

/// The figures of the run's summary line `N rows written`, and `M rows already in the table`
/// (0 when absent).
fn written_and_present(stderr: &str) -> (u64, u64) {
    let number_before = |marker: &str| {
        stderr.find(marker).map(|at| {
            stderr[..at]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
                .parse::<u64>()
                .unwrap()
        })
    };
    (
        number_before(" rows written").expect(stderr),
        number_before(" rows already in the table").unwrap_or(0),
    )
}

fn replays_add_nothing(mode: &str) {
    let (emu, work) = start();
    let want = expected_ids(work.path());
    let n = want.len() as u64;
    let first = run_ok(merge_cmd(&emu, work.path(), mode));
    assert_eq!(written_and_present(&first), (n, 0), "{first}");
    assert_exactly_once(&emu, &want, &format!("{mode}: first run"));

    // --force without --allow-duplicates: the merge makes it safe, so it is allowed.
    let mut forced = merge_cmd(&emu, work.path(), mode);
    forced.arg("--force");
    let forced = run_ok(forced);
    assert_eq!(written_and_present(&forced), (0, n), "{forced}");
    assert_exactly_once(&emu, &want, &format!("{mode}: --force"));

    // No ledger at all, in a fresh directory: every object is read and merged again.
    let fresh = tempfile::tempdir().unwrap();
    let unledgered = run_ok(unledgered(&emu, fresh.path(), mode));
    assert_eq!(written_and_present(&unledgered), (0, n), "{unledgered}");
    assert_exactly_once(&emu, &want, &format!("{mode}: --ledger none"));
    assert_eq!(staging_tables(&emu), Vec::<String>::new(), "staging left");
}

#[test]
fn storage_write_merge_adds_each_row_once_across_reruns_forced_runs_and_no_ledger() {
    replays_add_nothing("storage-write");
}

#[test]
fn load_merge_adds_each_row_once_across_reruns_forced_runs_and_no_ledger() {
    replays_add_nothing("load");
}

/// Half of the rows are in the table already (an earlier run of some of the objects): a
/// merge run adds exactly the other half and says so.
#[test]
fn a_merge_run_counts_only_the_rows_it_added() {
    let (emu, work) = start();
    let want = expected_ids(work.path());
    // The objects of the first day only, then both days.
    let first = run_ok(merge_run(
        &emu,
        work.path(),
        "storage-write",
        "2026-11-25T23",
        "file:ledger.jsonl",
    ));
    let (some, _) = written_and_present(&first);
    assert!(some > 0 && some < want.len() as u64, "{first}");
    let all = run_ok(unledgered(&emu, work.path(), "storage-write"));
    assert_eq!(
        written_and_present(&all),
        (want.len() as u64 - some, some),
        "{all}"
    );
    assert_exactly_once(&emu, &want, "second run");
}

/// A target partitioned on a column of the rows: each MERGE is limited to the staged rows'
/// partitions (BigQuery's pruning cannot be seen here; that the bounded statement runs and
/// still finds every twin can).
#[test]
fn a_partitioned_target_is_merged_within_the_staged_rows_partitions() {
    let (emu, work) = start();
    let want = expected_ids(work.path());
    let mut first = merge_cmd(&emu, work.path(), "storage-write");
    first.args(["--partition-by", "event_time", "--merge-partition-filter"]);
    run_ok(first);
    assert_eq!(
        emu.table("bi", "events")["timePartitioning"]["field"],
        "event_time"
    );
    assert_exactly_once(&emu, &want, "first run");
    for mode in ["storage-write", "load"] {
        let mut again = merge_cmd(&emu, work.path(), mode);
        again.args([
            "--partition-by",
            "event_time",
            "--force",
            "--merge-partition-filter",
        ]);
        let again = run_ok(again);
        assert_eq!(
            written_and_present(&again),
            (0, want.len() as u64),
            "{mode}: {again}"
        );
        assert_exactly_once(&emu, &want, &format!("{mode} --force"));
    }
}

/// Without any ledger, killed at random moments and run once more to the end: the table
/// equals the source. Staging tables a killed run left behind carry an expiration.
fn killed_without_a_ledger(mode: &str) {
    let (emu, work) = start();
    let _burner = CpuBurner::start();
    let want = expected_ids(work.path());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let probe = tempfile::tempdir().unwrap();
    emu.create_dataset("probe");
    let t0 = Instant::now();
    let mut cmd = backfill_into(
        &emu,
        &emu.grpc_endpoint,
        probe.path(),
        mode,
        "bigquery:test-proj.probe.events",
    );
    cmd.args(["--dedup", "merge", "--load-batch-objects", "4"]);
    run_ok(cmd);
    let run_ms = t0.elapsed().as_millis() as u64;
    let points = kill_points(seed, KILLS, run_ms.max(200));
    eprintln!("{mode} merge: seed {seed}, a run takes {run_ms} ms, kills at {points:?} ms");
    for ms in &points {
        let mut cmd = unledgered(&emu, work.path(), mode);
        cmd.args(["--concurrency", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let until = Instant::now() + Duration::from_millis(*ms);
        while Instant::now() < until && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        child.wait().unwrap();
    }
    run_ok(unledgered(&emu, work.path(), mode));
    assert_exactly_once(
        &emu,
        &want,
        &format!("{mode} merge, seed {seed}, kills at {points:?} ms"),
    );
    for t in staging_tables(&emu) {
        let expires: u64 = emu.table("bi", &t)["expirationTime"]
            .as_str()
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("staging table {t} has no expiration"));
        assert!(expires > 0, "{t}");
    }
}

#[test]
fn storage_write_merge_without_a_ledger_survives_kills_at_random_points() {
    killed_without_a_ledger("storage-write");
}

#[test]
fn load_merge_without_a_ledger_survives_kills_at_random_points() {
    killed_without_a_ledger("load");
}

/// Two workers with no ledger to share, on the same objects at the same time. (The emulator
/// runs one job at a time; BigQuery runs at most two mutating statements per table at once and
/// queues the rest — see the README for what that leaves unverified.)
#[test]
fn two_workers_without_a_ledger_on_the_same_objects_add_each_row_once() {
    let (emu, work) = start();
    let want = expected_ids(work.path());
    // The table first, so the workers do not race to create it.
    let create = merge_run(&emu, work.path(), "storage-write", "2026-11-25T00", "none");
    let (first_hour, _) = written_and_present(&run_ok(create));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let dir = work.path().join(format!("w{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut cmd = unledgered(&emu, &dir, "storage-write");
            cmd.args(["--concurrency", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut added = 0;
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        added += written_and_present(&stderr).0;
    }
    assert_exactly_once(&emu, &want, "two workers");
    // Each row was added by exactly one of them (the first run added the first hour's).
    assert_eq!(added + first_hour, want.len() as u64);
}

#[test]
fn merge_needs_the_row_id_column_and_a_mode_that_can_merge() {
    let (emu, work) = start();
    emu.create_table(
        "bi",
        "bare",
        serde_json::json!([{"name": "event_id", "type": "STRING"}]),
    );
    let mut cmd = backfill_into(
        &emu,
        &emu.grpc_endpoint,
        work.path(),
        "storage-write",
        "bigquery:test-proj.bi.bare",
    );
    cmd.args(["--dedup", "merge"]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--dedup merge matches rows on `_row_id`, but table"),
        "{stderr}"
    );
    let mut cmd = merge_cmd(&emu, work.path(), "insert-all");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--dedup merge works with --bigquery-mode storage-write or load"),
        "{stderr}"
    );
}

/// Without `--merge-partition-filter`, a row that a changed `--map` moves to another partition
/// is still matched by its ID: the second run adds nothing.
#[test]
fn a_row_moved_to_another_partition_by_a_new_map_is_not_added_again() {
    let (emu, work) = start();
    let dir = work.path().join("in/2026/11/26/00");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("s-1-2026-11-26-00-00-00-0f8fad5b-d9cb-469f-a165-70867728950e"),
        "{\"t1\":\"2026-11-20T00:00:00Z\",\"t2\":\"2026-11-26T00:00:00Z\",\"v\":1}\n",
    )
    .unwrap();
    let schema = work.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"[{"name":"_row_id","type":"STRING","mode":"REQUIRED"},{"name":"ts","type":"TIMESTAMP"},{"name":"v","type":"INTEGER"}]"#,
    )
    .unwrap();
    for (i, (keep, drop)) in [("t1", "t2"), ("t2", "t1")].iter().enumerate() {
        let map = work.path().join(format!("map{i}.json"));
        std::fs::write(
            &map,
            format!(r#"{{"rename":{{"{keep}":"ts"}},"drop":["{drop}"]}}"#),
        )
        .unwrap();
        let mut cmd = bin();
        cmd.current_dir(work.path())
            .args(["replay", "in", "--sink", "bigquery:test-proj.bi.moved"])
            .args(["--dedup", "merge", "--ledger", "none", "--map"])
            .arg(&map)
            .arg("--create-table-schema")
            .arg(&schema)
            .args(["--partition-by", "ts", "--bigquery-endpoint", &emu.endpoint])
            .args(["--bigquery-storage-endpoint", &emu.grpc_endpoint]);
        let stderr = run_ok(cmd);
        assert_eq!(
            written_and_present(&stderr),
            if i == 0 { (1, 0) } else { (0, 1) },
            "run {i}: {stderr}"
        );
    }
    assert_eq!(emu.rows("bi", "moved").len(), 1);
}

#[test]
fn merge_outside_bigquery_and_a_payload_column_named_like_a_generated_one_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    for args in [
        vec!["--sink", "ndjson:out", "--dedup", "merge"],
        vec!["--sink", "ndjson:out", "--payload-column", "_row_id"],
        vec![
            "--sink",
            "ndjson:out",
            "--metadata-columns",
            "source_uri",
            "--payload-column",
            "_SOURCE_URI",
        ],
    ] {
        let out = bin()
            .current_dir(work.path())
            .args(["backfill", sample_root().to_str().unwrap()])
            .args(["--from", "2026-11-25", "--to", "2026-11-26"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!work.path().join("out").exists(), "{args:?} wrote rows");
    }
}

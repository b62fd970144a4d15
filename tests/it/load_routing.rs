//! Routing in `--bigquery-mode load` against the emulator: a backfill of mixed event types into
//! a table per type (one job per table per batch), replays that add nothing, and a run that
//! died with some of its tables loaded and others not.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bigquery_modes::start;
use crate::bq_emulator::BqEmulator;
use crate::harness::run_ok;
use crate::support::bin;

fn object(work: &Path, hour: u32, n: u32, records: &[Value]) {
    let dir = work.join(format!("in/2026/11/25/{hour:02}"));
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(
        dir.join(format!(
            "s-1-2026-11-25-{hour:02}-0{n}-00-0f8fad5b-d9cb-469f-a165-70867728950{n}"
        )),
        body,
    )
    .unwrap();
}

/// Three objects of mixed types (view, click, yubl-posted, and records with no type).
fn mixed(work: &Path) {
    let rec = |id: &str, t: Option<&str>| match t {
        Some(t) => json!({"event_id": id, "event_type": t, "n": 1}),
        None => json!({"event_id": id, "n": 1}),
    };
    object(
        work,
        13,
        1,
        &[
            rec("a1", Some("view")),
            rec("a2", Some("click")),
            rec("a3", Some("view")),
        ],
    );
    object(
        work,
        13,
        2,
        &[
            rec("b1", Some("yubl-posted")),
            rec("b2", None),
            rec("b3", Some("click")),
        ],
    );
    object(
        work,
        14,
        3,
        &[
            rec("c1", Some("view")),
            rec("c2", Some("yubl-posted")),
            rec("c3", Some("view")),
            rec("c4", Some("click")),
        ],
    );
}

fn routed_cmd(emu: &BqEmulator, work: &Path, batch: &str) -> Command {
    routed_into(emu, work, batch, "bi")
}

fn routed_into(emu: &BqEmulator, work: &Path, batch: &str, dataset: &str) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", "in"])
        .args([
            "--sink",
            &format!("bigquery:test-proj.{dataset}.events_{{event_type}}"),
        ])
        .args(["--route-default", "events_other"])
        .args(["--bigquery-mode", "load", "--create-table", "auto"])
        .args(["--bigquery-endpoint", &emu.endpoint])
        .args([
            "--ledger",
            "file:ledger.jsonl",
            "--load-batch-objects",
            batch,
        ])
        .args(["--load-poll-ms", "50", "--retry-min-delay-ms", "50"]);
    cmd
}

fn ids(emu: &BqEmulator, table: &str) -> Vec<String> {
    let mut ids: Vec<String> = emu
        .rows("bi", table)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn assert_per_type(emu: &BqEmulator) {
    assert_eq!(ids(emu, "events_view"), ["a1", "a3", "c1", "c3"]);
    assert_eq!(ids(emu, "events_click"), ["a2", "b3", "c4"]);
    assert_eq!(ids(emu, "events_yubl_posted"), ["b1", "c2"]);
    assert_eq!(ids(emu, "events_other"), ["b2"]);
}

#[test]
fn a_routed_load_backfill_lands_each_type_in_its_table_once() {
    let (emu, work) = start();
    let w = work.path();
    mixed(w);
    let stderr = run_ok(routed_cmd(&emu, w, "2"));
    assert!(
        stderr.contains("10 rows written, 0 record errors"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("batch loaded").count(), 2, "{stderr}");
    // Batch 1 (objects 1, 2) has four tables, batch 2 (object 3) three: a job each.
    assert_eq!(
        stderr.matches("BigQuery load job created").count(),
        7,
        "{stderr}"
    );
    assert_per_type(&emu);
    let mut tables: Vec<String> = emu
        .tables("bi")
        .iter()
        .map(|t| t["tableReference"]["tableId"].as_str().unwrap().to_string())
        .collect();
    tables.sort();
    assert_eq!(
        tables,
        [
            "events_click",
            "events_other",
            "events_view",
            "events_yubl_posted"
        ]
    );
    // Every object was staged with each job its rows went to.
    let ledger = std::fs::read_to_string(w.join("ledger.jsonl")).unwrap();
    let first = ledger
        .lines()
        .find(|l| l.contains("\"staged\"") && l.contains("-0f8fad5b-d9cb-469f-a165-708677289502"))
        .unwrap();
    for t in ["events_click", "events_other", "events_yubl_posted"] {
        assert!(first.contains(&format!("@test-proj.bi.{t}")), "{first}");
    }
    assert!(!first.contains("events_view"), "{first}");

    // A replay adds nothing.
    let again = run_ok(routed_cmd(&emu, w, "2"));
    assert!(again.contains("3 skipped by the ledger"), "{again}");
    assert_per_type(&emu);
}

/// A record without the field and no --route-default is a record error; the others land.
#[test]
fn a_record_without_the_routing_field_is_a_record_error_without_a_default() {
    let (emu, work) = start();
    let w = work.path();
    object(
        w,
        13,
        1,
        &[
            json!({"event_id": "a1", "event_type": "view"}),
            json!({"event_id": "a2"}),
        ],
    );
    let mut cmd = bin();
    cmd.current_dir(w)
        .args(["replay", "in"])
        .args(["--sink", "bigquery:test-proj.bi.events_{event_type}"])
        .args(["--bigquery-mode", "load", "--create-table", "auto"])
        .args(["--bigquery-endpoint", &emu.endpoint, "--load-poll-ms", "50"]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("1 rows written, 1 record errors"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no table for this record: routing field `event_type` is missing"),
        "{stderr}"
    );
    assert_eq!(ids(&emu, "events_view"), ["a1"]);
}

fn query(emu: &BqEmulator, sql: &str) {
    let answer: Value = crate::moto::rt().block_on(async {
        firehose_replay::tls::http_client()
            .post(emu.url("queries"))
            .json(&json!({"query": sql, "useLegacySql": false}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert!(answer.get("error").is_none(), "{answer}");
}

/// A run that died after staging its batch, with the `events_click` job never run but the
/// others loaded: the rerun — batching differently — reloads only the click rows, and leaves
/// the rows the other jobs loaded out (no duplicates, no gaps, in every table).
#[test]
fn a_rerun_after_a_partly_loaded_routed_batch_adds_only_the_missing_tables() {
    let (emu, work) = start();
    let w = work.path();
    mixed(w);
    run_ok(routed_cmd(&emu, w, "3"));
    assert_per_type(&emu);
    // The state a crash would leave had the click job not run: its rows absent, and every
    // object staged (not done) with a click job BigQuery never saw.
    query(&emu, "DELETE FROM `test-proj.bi.events_click` WHERE TRUE");
    assert!(ids(&emu, "events_click").is_empty());
    let path = w.join("ledger.jsonl");
    let ledger = std::fs::read_to_string(&path).unwrap();
    let missing = "firehose_replay_00000000000000000000000000000000_0";
    let staged: Vec<String> = ledger
        .lines()
        .filter(|l| l.contains("\"staged\""))
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let token = v["staged"]["token"].as_str().unwrap().to_string();
            let rewritten: Vec<String> = token
                .trim_start_matches("bigquery-load:")
                .split('|')
                .map(|e| {
                    if e.ends_with("@test-proj.bi.events_click") {
                        format!("{missing}@test-proj.bi.events_click")
                    } else {
                        e.to_string()
                    }
                })
                .collect();
            v["staged"]["token"] = json!(format!("bigquery-load:{}", rewritten.join("|")));
            v.to_string()
        })
        .collect();
    assert_eq!(staged.len(), 3, "{ledger}");
    std::fs::write(&path, staged.join("\n") + "\n").unwrap();

    let stderr = run_ok(routed_cmd(&emu, w, "1"));
    assert_eq!(
        stderr
            .matches("some of the tables of an earlier attempt were loaded")
            .count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("3 rows written"), "{stderr}");
    assert!(stderr.contains("7 rows already in the table"), "{stderr}");
    assert_per_type(&emu);
    // And the objects are done now: a third run reads nothing.
    let third = run_ok(routed_cmd(&emu, w, "2"));
    assert!(third.contains("3 skipped by the ledger"), "{third}");
    assert_per_type(&emu);
}

/// Twelve objects of mixed types; the rows each table must hold.
fn many(work: &Path) -> Vec<(&'static str, Vec<String>)> {
    let types = ["view", "click", "yubl-posted"];
    let mut want: Vec<(&'static str, Vec<String>)> = vec![
        ("events_view", Vec::new()),
        ("events_click", Vec::new()),
        ("events_yubl_posted", Vec::new()),
        ("events_other", Vec::new()),
    ];
    for o in 0..12u32 {
        let records: Vec<Value> = (0..30u32)
            .map(|i| {
                let id = format!("o{o:02}-{i:02}");
                let k = ((o + i) % 4) as usize;
                want[k].1.push(id.clone());
                match types.get(k) {
                    Some(t) => json!({"event_id": id, "event_type": t, "n": i}),
                    None => json!({"event_id": id, "n": i}),
                }
            })
            .collect();
        object(work, 10 + o / 9, o % 9 + 1, &records);
    }
    for (_, ids) in &mut want {
        ids.sort();
    }
    want
}

/// Routed load runs killed at random moments, each cutting its batches differently (so a
/// rerun meets partly loaded objects in other batches), then one that finishes: every table
/// holds its rows exactly once.
#[test]
fn routed_load_runs_killed_at_random_points_leave_every_table_exact() {
    let (emu, work) = start();
    let _burner = crate::bigquery_modes::CpuBurner::start();
    let w = work.path();
    let want = many(w);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    emu.create_dataset("probe");
    let probe = tempfile::tempdir().unwrap();
    many(probe.path());
    let t0 = Instant::now();
    run_ok(routed_into(&emu, probe.path(), "3", "probe"));
    let run_ms = t0.elapsed().as_millis() as u64;
    let points = crate::bigquery_modes::kill_points(seed, 12, run_ms.max(200));
    eprintln!("routed load: seed {seed}, a run takes {run_ms} ms, kills at {points:?} ms");
    for (i, ms) in points.iter().enumerate() {
        let batch = ["2", "3", "5", "12"][i % 4];
        let mut cmd = routed_cmd(&emu, w, batch);
        cmd.args(["--concurrency", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let until = Instant::now() + Duration::from_millis(*ms);
        while Instant::now() < until {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        child.wait().unwrap();
    }
    run_ok(routed_cmd(&emu, w, "4"));
    for (table, ids_wanted) in &want {
        assert_eq!(
            &ids(&emu, table),
            ids_wanted,
            "{table}: seed {seed}, kills at {points:?} ms"
        );
    }
}

//! Issue 18 in `--bigquery-mode load`, end to end against the emulator's load jobs: records
//! that gain columns (`--schema-evolution add-columns`), tables created from the rows
//! (`--create-table auto`), and runs adding the same column at once.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::bigquery_modes::start;
use crate::bq_emulator::BqEmulator;
use crate::cli::files_under;
use crate::harness::run_ok;
use crate::support::bin;

/// One Firehose object under `src/2026/11/25/HH/` holding `records` (one JSON line each).
fn object(work: &Path, src: &str, hour: u32, n: u32, records: &[Value]) {
    let dir = work.join(format!("{src}/2026/11/25/{hour:02}"));
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

fn load_cmd(emu: &BqEmulator, work: &Path, src: &str, table: &str) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args([
            "replay",
            src,
            "--sink",
            &format!("bigquery:test-proj.bi.{table}"),
        ])
        .args(["--bigquery-mode", "load"])
        .args(["--bigquery-endpoint", &emu.endpoint])
        .args(["--load-poll-ms", "50", "--retry-min-delay-ms", "50"]);
    cmd
}

fn dead_letter_records(work: &Path) -> Vec<Value> {
    files_under(&work.join("dead-letter"))
        .iter()
        .flat_map(|f| {
            let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            v["records"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

/// `event_id` → the row, with `_row_id` left out.
fn rows_by_id(emu: &BqEmulator, table: &str) -> Vec<Value> {
    let mut rows = emu.rows("bi", table);
    for r in &mut rows {
        r.as_object_mut().unwrap().remove("_row_id");
    }
    rows.sort_by_key(|r| r["event_id"].as_str().unwrap_or_default().to_string());
    rows
}

fn field<'a>(fields: &'a Value, name: &str) -> &'a Value {
    fields
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no column {name} in {fields}"))
}

#[test]
fn load_mode_adds_a_string_then_a_record_column_with_no_dead_letters() {
    let (emu, work) = start();
    emu.create_table(
        "bi",
        "evo",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "event_id", "type": "STRING"}]),
    );
    let w = work.path();
    // Batch 1: the first object as the table knows it, the second gains a STRING field (and
    // one with no type yet); batch 2: a RECORD with an INT64 inside.
    object(
        w,
        "in",
        13,
        1,
        &[json!({"event_id": "e1"}), json!({"event_id": "e2"})],
    );
    object(
        w,
        "in",
        13,
        2,
        &[json!({"event_id": "e3", "note": "hello", "later": null})],
    );
    object(
        w,
        "in",
        14,
        3,
        &[
            json!({"event_id": "e4", "ctx": {"n": 7}}),
            json!({"event_id": "e5", "note": "again", "ctx": {"n": 8}}),
        ],
    );
    let mut cmd = load_cmd(&emu, w, "in", "evo");
    cmd.args([
        "--schema-evolution",
        "add-columns",
        "--load-batch-objects",
        "2",
    ]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("5 rows written, 0 record errors"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("schema: the load job adds columns").count(),
        2,
        "one line per schema change: {stderr}"
    );
    assert!(stderr.contains("columns=note"), "{stderr}");
    assert!(stderr.contains("columns=ctx"), "{stderr}");
    assert!(dead_letter_records(w).is_empty());
    assert_eq!(
        rows_by_id(&emu, "evo"),
        vec![
            json!({"event_id": "e1", "note": null, "ctx": null}),
            json!({"event_id": "e2", "note": null, "ctx": null}),
            json!({"event_id": "e3", "note": "hello", "ctx": null}),
            json!({"event_id": "e4", "note": null, "ctx": {"n": "7"}}),
            json!({"event_id": "e5", "note": "again", "ctx": {"n": "8"}}),
        ]
    );
    let fields = emu.table("bi", "evo")["schema"]["fields"].clone();
    assert_eq!(field(&fields, "note")["type"], "STRING");
    assert_eq!(field(&fields, "ctx")["type"], "RECORD");
    assert_eq!(field(&fields, "ctx")["fields"][0]["type"], "INTEGER");
    assert_eq!(field(&fields, "_row_id")["mode"], "REQUIRED", "unchanged");
    assert_eq!(fields.as_array().unwrap().len(), 4, "no column for `later`");

    // A replay adds nothing.
    let mut again = load_cmd(&emu, w, "in", "evo");
    again.args(["--schema-evolution", "add-columns"]);
    let stderr = run_ok(again);
    assert!(!stderr.contains("batch loaded"), "{stderr}");
    assert_eq!(emu.rows("bi", "evo").len(), 5);

    // A value an existing column cannot take is a record error naming the path and both
    // types; the object's other records land.
    object(
        w,
        "more",
        15,
        4,
        &[
            json!({"event_id": "e6", "ctx": {"n": "seven"}}),
            json!({"event_id": "e7", "ctx": {"n": 9}}),
        ],
    );
    let mut conflict = load_cmd(&emu, w, "more", "evo");
    conflict.args(["--schema-evolution", "add-columns"]);
    let stderr = run_ok(conflict);
    assert!(
        stderr.contains("1 rows written, 1 record errors"),
        "{stderr}"
    );
    let dl = dead_letter_records(w);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(
        dl[0]["error"],
        "does not fit the table schema: column `ctx.n` is INTEGER, but the record has STRING there"
    );
    assert_eq!(rows_by_id(&emu, "evo")[5]["ctx"], json!({"n": "9"}));
}

#[test]
fn without_schema_evolution_load_mode_still_dead_letters_new_fields() {
    let (emu, work) = start();
    emu.create_table(
        "bi",
        "fixed",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "event_id", "type": "STRING"}]),
    );
    object(
        work.path(),
        "in",
        13,
        1,
        &[
            json!({"event_id": "e1"}),
            json!({"event_id": "e2", "note": "x"}),
        ],
    );
    let stderr = run_ok(load_cmd(&emu, work.path(), "in", "fixed"));
    assert!(
        stderr.contains("1 rows written, 1 record errors"),
        "{stderr}"
    );
    assert_eq!(
        emu.table("bi", "fixed")["schema"]["fields"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn create_table_auto_in_load_mode_creates_the_table_from_the_rows_with_partitioning() {
    let (emu, work) = start();
    let w = work.path();
    object(
        w,
        "in",
        13,
        1,
        &[
            json!({"event_id": "e1", "event_type": "view", "event_time": "2026-11-25T13:00:00Z"}),
            json!({"event_id": "e2", "event_type": "click", "event_time": "2026-11-25T13:05:00Z",
                   "n": 3, "geo": {"lat": 1.5}}),
        ],
    );
    let mut cmd = load_cmd(&emu, w, "in", "auto");
    cmd.args([
        "--create-table",
        "auto",
        "--metadata-columns",
        "ingested_at",
    ])
    .args(["--partition-by", "event_time", "--cluster-by", "event_type"]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("2 rows written, 0 record errors"),
        "{stderr}"
    );
    assert!(
        stderr.contains("schema: the load job creates the table"),
        "{stderr}"
    );
    let table = emu.table("bi", "auto");
    let fields = &table["schema"]["fields"];
    // (Modes are not compared: the emulator reports every column of a table a load job
    // created as NULLABLE; that the job asks for `_row_id` REQUIRED is checked by the unit
    // test of the job resource.)
    let types: Vec<(&str, &str)> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("_row_id", "STRING"),
            ("_ingested_at", "TIMESTAMP"),
            ("event_time", "TIMESTAMP"),
            ("event_id", "STRING"),
            ("event_type", "STRING"),
            ("geo", "RECORD"),
            ("n", "INTEGER"),
        ]
    );
    assert_eq!(field(fields, "geo")["fields"][0]["type"], "FLOAT");
    assert_eq!(table["timePartitioning"]["field"], "event_time");
    assert_eq!(table["timePartitioning"]["type"], "DAY");
    assert_eq!(table["clustering"]["fields"], json!(["event_type"]));
    let rows = rows_by_id(&emu, "auto");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["n"], "3");
    assert_eq!(rows[1]["geo"], json!({"lat": "1.5"}));
    assert_eq!(rows[0]["event_time"], "1795611600.0");

    // The table exists now: without --schema-evolution a new field is a record error again.
    object(
        w,
        "more",
        14,
        2,
        &[
            json!({"event_id": "e3", "event_type": "view", "extra": true}),
            json!({"event_id": "e4", "event_type": "view"}),
        ],
    );
    let mut cmd = load_cmd(&emu, w, "more", "auto");
    cmd.args([
        "--create-table",
        "auto",
        "--metadata-columns",
        "ingested_at",
    ]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("1 rows written, 1 record errors"),
        "{stderr}"
    );
    assert!(!stderr.contains("creates the table"), "{stderr}");
    assert_eq!(emu.rows("bi", "auto").len(), 3);
}

#[test]
fn create_table_auto_with_a_payload_column_lands_raw_json() {
    let (emu, work) = start();
    let w = work.path();
    object(
        w,
        "in",
        13,
        1,
        &[
            json!({"a": 1, "b": {"c": [1, 2]}}),
            json!({"anything": "goes"}),
        ],
    );
    let mut cmd = load_cmd(&emu, w, "in", "raw");
    cmd.args(["--create-table", "auto", "--payload-column", "raw"]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("2 rows written, 0 record errors"),
        "{stderr}"
    );
    let fields = emu.table("bi", "raw")["schema"]["fields"].clone();
    let types: Vec<(&str, &str)> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(types, vec![("_row_id", "STRING"), ("raw", "JSON")]);
    let mut raws: Vec<Value> = emu
        .rows("bi", "raw")
        .iter()
        .map(|r| serde_json::from_str(r["raw"].as_str().unwrap()).unwrap())
        .collect();
    raws.sort_by_key(|v| v.to_string());
    assert_eq!(
        raws,
        vec![
            json!({"a": 1, "b": {"c": [1, 2]}}),
            json!({"anything": "goes"})
        ]
    );
}

/// Two runs (their own objects and ledgers) adding the same column at once: both jobs carry
/// it, both succeed, the column is there once.
#[test]
fn two_load_runs_adding_the_same_column_at_once_both_succeed() {
    let (emu, work) = start();
    emu.create_table(
        "bi",
        "shared",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "event_id", "type": "STRING"}]),
    );
    let w = work.path();
    let mut children = Vec::new();
    for run in 0..2u32 {
        let src = format!("src{run}");
        let records: Vec<Value> = (0..20)
            .map(|i| json!({"event_id": format!("r{run}-{i:02}"), "note": format!("n{i}"), "ctx": {"k": i}}))
            .collect();
        object(w, &src, 13, run + 1, &records);
        let mut cmd = load_cmd(&emu, w, &src, "shared");
        cmd.args(["--schema-evolution", "add-columns"])
            .args(["--ledger", &format!("file:ledger{run}.jsonl")])
            .args(["--dead-letter", &format!("dir:dl{run}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("20 rows written, 0 record errors"),
            "{stderr}"
        );
    }
    let rows = rows_by_id(&emu, "shared");
    assert_eq!(rows.len(), 40);
    assert!(rows
        .iter()
        .all(|r| r["note"].is_string() && r["ctx"]["k"].is_string()));
    let fields = emu.table("bi", "shared")["schema"]["fields"].clone();
    let names: Vec<&str> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["_row_id", "event_id", "ctx", "note"]);
}

/// A field added inside an existing RECORD: the job carries `user.plan` in its schema. (The
/// emulator accepts the job but adds only top-level columns, so the table read back keeps
/// `user` as it was; real BigQuery adds nested fields under ALLOW_FIELD_ADDITION. What is
/// checked here is what the job asked for, read back with jobs.get.)
#[test]
fn a_field_added_inside_an_existing_record_is_in_the_jobs_schema() {
    let (emu, work) = start();
    emu.create_table(
        "bi",
        "nest",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "event_id", "type": "STRING"},
               {"name": "user", "type": "RECORD", "fields": [{"name": "id", "type": "STRING"}]}]),
    );
    object(
        work.path(),
        "in",
        13,
        1,
        &[json!({"event_id": "e1", "user": {"id": "u", "plan": {"tier": 2}}})],
    );
    let mut cmd = load_cmd(&emu, work.path(), "in", "nest");
    cmd.args(["--schema-evolution", "add-columns"]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("1 rows written, 0 record errors"),
        "{stderr}"
    );
    assert!(stderr.contains("columns=user.plan"), "{stderr}");
    let job_id = stderr
        .split("job_id=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .trim_matches('"')
        .to_string();
    let job: Value = crate::moto::rt().block_on(async {
        reqwest::get(emu.url(&format!("jobs/{job_id}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let load = &job["configuration"]["load"];
    assert_eq!(
        load["schemaUpdateOptions"],
        json!(["ALLOW_FIELD_ADDITION"]),
        "{job}"
    );
    let user = field(&load["schema"]["fields"], "user");
    assert_eq!(user["fields"][1]["name"], "plan", "{job}");
    assert_eq!(user["fields"][1]["fields"][0]["name"], "tier");
    assert_eq!(user["fields"][1]["fields"][0]["type"], "INTEGER");
}

/// A run that died after its column-adding job succeeded but before the objects were recorded
/// done: the rerun finds the staged job (the job ID does not depend on the schema, which the
/// table now has anyway) and loads nothing again.
#[test]
fn a_rerun_after_a_column_adding_job_finishes_from_the_staged_job() {
    let (emu, work) = start();
    emu.create_table(
        "bi",
        "evo",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "event_id", "type": "STRING"}]),
    );
    let w = work.path();
    object(w, "in", 13, 1, &[json!({"event_id": "e1"})]);
    object(w, "in", 13, 2, &[json!({"event_id": "e2", "note": "x"})]);
    let cmd = || {
        let mut c = load_cmd(&emu, w, "in", "evo");
        c.args([
            "--schema-evolution",
            "add-columns",
            "--ledger",
            "file:ledger.jsonl",
        ]);
        c
    };
    run_ok(cmd());
    assert_eq!(emu.rows("bi", "evo").len(), 2);
    // The ledger as the process left it had it died right after the job: staged, not done.
    let path = w.join("ledger.jsonl");
    let ledger = std::fs::read_to_string(&path).unwrap();
    let staged: Vec<&str> = ledger
        .lines()
        .filter(|l| l.contains("\"staged\""))
        .collect();
    assert_eq!(staged.len(), 2, "{ledger}");
    std::fs::write(&path, staged.join("\n") + "\n").unwrap();
    let stderr = run_ok(cmd());
    assert_eq!(
        stderr
            .matches("were committed; recording the object as done")
            .count(),
        2,
        "{stderr}"
    );
    assert!(!stderr.contains("batch loaded"), "{stderr}");
    assert_eq!(emu.rows("bi", "evo").len(), 2);
}

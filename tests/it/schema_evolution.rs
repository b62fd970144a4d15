//! Adding columns while other workers add theirs (issue 18's groundwork), against the
//! emulator's `tables.patch` with `If-Match` etags.

use firehose_replay::sink::bigquery::load::{LoadJobOptions, LoadJobs};
use firehose_replay::sink::bigquery::schema::{evolve, infer};
use firehose_replay::sink::bigquery::TableRef;
use serde_json::json;
use std::process::Command;

use crate::bq_emulator::BqEmulator;
use crate::support::bin;

fn jobs(emu: &BqEmulator) -> LoadJobs {
    LoadJobs::new(
        firehose_replay::tls::http_client(),
        &emu.endpoint,
        None,
        TableRef {
            project: "test-proj".into(),
            dataset: "bi".into(),
            table: "evolving".into(),
        },
        LoadJobOptions::default(),
    )
}

#[test]
fn concurrent_workers_adding_columns_keep_every_column_and_change_none() {
    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    emu.create_table(
        "bi",
        "evolving",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "user", "type": "RECORD", "fields": [{"name": "id", "type": "STRING"}]}]),
    );
    // The emulator enforces etags: a patch from a stale read is refused.
    let etag = emu.table("bi", "evolving")["etag"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!etag.is_empty());
    let base: Vec<serde_json::Value> = emu.table("bi", "evolving")["schema"]["fields"]
        .as_array()
        .unwrap()
        .clone();
    // Eight workers, each adding a column and a RECORD column of its own, all at once. (The
    // emulator adds only top-level columns: a field added inside an existing RECORD is checked
    // in the request, by `infer`'s unit tests, not here.)
    let rt = crate::moto::rt();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..8 {
            let jobs = jobs(&emu);
            let record = json!({format!("c{w}"): w, format!("r{w}"): {"at": "x", "n": 1.5}});
            let additions = infer::additions(&base, &record).unwrap();
            assert_eq!(additions.len(), 2);
            tasks.push(tokio::spawn(async move {
                evolve::add_columns(&jobs, &additions).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let fields = emu.table("bi", "evolving")["schema"]["fields"].clone();
    let names: Vec<&str> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for w in 0..8 {
        assert!(names.contains(&format!("c{w}").as_str()), "{names:?}");
    }
    for w in 0..8 {
        let r = fields
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == format!("r{w}"))
            .unwrap_or_else(|| panic!("r{w} missing: {names:?}"));
        assert_eq!(r["type"], "RECORD");
        assert_eq!(r["fields"][0]["name"], "at");
        assert_eq!(r["fields"][1]["type"], "FLOAT");
    }
    assert_eq!(names.len(), 2 + 16, "{names:?}");
    assert_eq!(fields[0]["mode"], "REQUIRED", "existing columns unchanged");
    // The stale etag from before is now refused by the emulator, as BigQuery does.
    let stale = rt.block_on(async {
        firehose_replay::tls::http_client()
            .patch(emu.url("datasets/bi/tables/evolving"))
            .header("If-Match", &etag)
            .json(&json!({"description": "stale"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(stale, 412);
}

/// Objects whose records gain a STRING field, then a RECORD with an INT64 inside (and a field
/// that is null everywhere), and one record whose value conflicts with a column added
/// meanwhile. Written by `replay --schema-evolution add-columns` in `mode`.
fn growing_objects(emu: &BqEmulator, work: &std::path::Path) -> String {
    emu.create_table(
        "bi",
        "grow",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "n", "type": "INTEGER"}]),
    );
    let dir = work.join("in/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let objects = [
        // Gains a STRING mid-object: the object goes on in a second stream.
        "{\"n\":1}\n{\"n\":2,\"s\":\"x\"}\n{\"n\":3,\"s\":\"y\"}\n",
        // Gains a RECORD with an INT64 inside first thing; a null-only field waits; then a
        // value the new column cannot take (with a field that would be new: not added).
        "{\"n\":4,\"s\":\"z\",\"geo\":{\"cnt\":7}}\n{\"n\":5,\"geo\":{\"cnt\":8},\"none\":null}\n\
         {\"n\":6,\"t\":\"new\",\"geo\":{\"cnt\":\"lots\"}}\n{\"n\":7}\n",
    ];
    for (i, body) in objects.iter().enumerate() {
        std::fs::write(
            dir.join(format!(
                "s-1-2026-11-25-13-0{i}-00-0f8fad5b-d9cb-469f-a165-70867728950{i}"
            )),
            body,
        )
        .unwrap();
    }
    "in".into()
}

fn replay_evolving(emu: &BqEmulator, work: &std::path::Path, src: &str, mode: &str) -> Command {
    let mut cmd = replay_evolving_unordered(emu, work, src, mode);
    cmd.args(["--concurrency", "1"]);
    cmd
}

fn replay_evolving_unordered(
    emu: &BqEmulator,
    work: &std::path::Path,
    src: &str,
    mode: &str,
) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", src, "--sink", "bigquery:test-proj.bi.grow"])
        .args(["--bigquery-mode", mode, "--schema-evolution", "add-columns"])
        .args(["--bigquery-endpoint", &emu.endpoint])
        .args(["--bigquery-storage-endpoint", &emu.grpc_endpoint])
        .args(["--retry-min-delay-ms", "50"])
        .args(["--ledger", "file:ledger.jsonl"]);
    cmd
}

fn fields_of(emu: &BqEmulator, table: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(prefix: &str, fields: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for f in fields.as_array().into_iter().flatten() {
            let name = format!("{prefix}{}", f["name"].as_str().unwrap());
            out.push((name.clone(), f["type"].as_str().unwrap().to_string()));
            walk(&format!("{name}."), &f["fields"], out);
        }
    }
    walk("", &emu.table("bi", table)["schema"]["fields"], &mut out);
    out
}

fn rows_by_n(emu: &BqEmulator) -> Vec<serde_json::Value> {
    let mut rows = emu.rows("bi", "grow");
    rows.sort_by_key(|r| r["n"].as_str().unwrap().parse::<i64>().unwrap());
    rows
}

fn records_gaining_fields_land_with_their_columns(mode: &str) {
    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    let work = tempfile::tempdir().unwrap();
    let src = growing_objects(&emu, work.path());
    let out = replay_evolving(&emu, work.path(), &src, mode)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("6 rows written, 1 record errors"),
        "{stderr}"
    );
    // One log line per change, naming the columns.
    assert!(
        stderr.contains("schema: added columns") && stderr.contains("columns=s"),
        "{stderr}"
    );
    assert!(stderr.contains("columns=geo"), "{stderr}");
    let fields = fields_of(&emu, "grow");
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["_row_id", "n", "s", "geo", "geo.cnt"], "{fields:?}");
    assert_eq!(fields[2].1, "STRING");
    assert!(
        matches!(fields[4].1.as_str(), "INTEGER" | "INT64"),
        "{fields:?}"
    );
    let rows = rows_by_n(&emu);
    let got: Vec<(String, serde_json::Value, serde_json::Value)> = rows
        .iter()
        .map(|r| {
            (
                r["n"].as_str().unwrap().to_string(),
                r["s"].clone(),
                r["geo"]["cnt"].clone(),
            )
        })
        .collect();
    let want = |n: &str, s: serde_json::Value, c: serde_json::Value| (n.to_string(), s, c);
    let null = serde_json::Value::Null;
    assert_eq!(
        got,
        vec![
            want("1", null.clone(), null.clone()),
            want("2", json!("x"), null.clone()),
            want("3", json!("y"), null.clone()),
            want("4", json!("z"), json!("7")),
            want("5", null.clone(), json!("8")),
            want("7", null.clone(), null.clone()),
        ],
        "{rows:?}"
    );
    // The conflict is a record error naming the column path and both types.
    let letters = crate::cli::files_under(&work.path().join("dead-letter"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let dl: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&letters[0]).unwrap()).unwrap();
    let errors: Vec<&str> = dl["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("column `geo.cnt` is INT")
            && errors[0].contains("but the record has STRING there"),
        "{errors:?}"
    );
    // A rerun adds nothing (the ledger resolved every object, multi-stream tokens included).
    let out = replay_evolving(&emu, work.path(), &src, mode)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(emu.rows("bi", "grow").len(), 6);
}

#[test]
fn storage_write_adds_columns_for_records_gaining_fields_with_no_dead_letters_but_conflicts() {
    records_gaining_fields_land_with_their_columns("storage-write");
}

#[test]
fn insert_all_adds_columns_and_resends_the_refused_rows_with_no_dead_letters_but_conflicts() {
    records_gaining_fields_land_with_their_columns("insert-all");
}

/// BigQuery's new write streams may see the old schema for a while after a patch (the
/// emulator made to do so for 2 s): the writer keeps creating streams until one has the new
/// columns, and everything lands as without the delay.
#[test]
fn storage_write_waits_for_new_streams_to_see_added_columns() {
    let emu = BqEmulator::start_with(
        "test-proj",
        &[("BQ_EMULATOR_STALE_STREAM_SCHEMA_SECS", "2")],
    );
    emu.create_dataset("bi");
    let work = tempfile::tempdir().unwrap();
    let src = growing_objects(&emu, work.path());
    let started = std::time::Instant::now();
    let out = replay_evolving(&emu, work.path(), &src, "storage-write")
        .args(["--log-level", "debug"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("6 rows written, 1 record errors"),
        "{stderr}"
    );
    assert!(
        stderr.contains("new write stream does not see the added columns yet"),
        "{stderr}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(emu.rows("bi", "grow").len(), 6);
}

/// Past the bound the object fails as transient (nothing of it is visible: its streams were
/// never committed), and a later run writes it once the streams see the columns.
#[test]
fn storage_write_gives_up_after_the_bound_and_a_later_run_finishes_the_object() {
    let emu = BqEmulator::start_with(
        "test-proj",
        &[("BQ_EMULATOR_STALE_STREAM_SCHEMA_SECS", "4")],
    );
    emu.create_dataset("bi");
    let work = tempfile::tempdir().unwrap();
    let src = growing_objects(&emu, work.path());
    let out = replay_evolving(&emu, work.path(), &src, "storage-write")
        .args(["--schema-evolution-wait-secs", "1", "--max-attempts", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("new write streams still lacked them after 1 s"),
        "{stderr}"
    );
    assert!(
        emu.rows("bi", "grow").is_empty(),
        "no object is half visible"
    );
    // Once new streams see the columns, the rerun writes every object exactly once.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let out = replay_evolving(&emu, work.path(), &src, "storage-write")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(emu.rows("bi", "grow").len(), 6, "{stderr}");
}

/// Two runs at once, each with objects whose records gain the same columns: both succeed,
/// every row lands, and the columns are added once.
fn concurrent_runs_adding_the_same_column(mode: &str) {
    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    emu.create_table(
        "bi",
        "grow",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "n", "type": "INTEGER"}]),
    );
    let works: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (w, work) in works.iter().enumerate() {
        let dir = work.path().join("in/2026/11/25/13");
        std::fs::create_dir_all(&dir).unwrap();
        for o in 0..3 {
            let body: String = (0..5)
                .map(|i| {
                    let n = w * 100 + o * 10 + i;
                    format!("{{\"n\":{n},\"s\":\"w{w}\",\"geo\":{{\"cnt\":{n}}}}}\n")
                })
                .collect();
            std::fs::write(
                dir.join(format!(
                    "s-1-2026-11-25-13-0{o}-00-0f8fad5b-d9cb-469f-a165-7086772895{w}{o}"
                )),
                body,
            )
            .unwrap();
        }
    }
    let children: Vec<std::process::Child> = works
        .iter()
        .map(|work| {
            replay_evolving_unordered(&emu, work.path(), "in", mode)
                .args(["--concurrency", "3"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("15 rows written, 0 record errors"),
            "{stderr}"
        );
    }
    let mut names: Vec<String> = fields_of(&emu, "grow")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["_row_id", "geo", "geo.cnt", "n", "s"],
        "each added once"
    );
    let rows = emu.rows("bi", "grow");
    assert_eq!(rows.len(), 30);
    for r in &rows {
        assert_eq!(r["n"], r["geo"]["cnt"], "{r}");
    }
}

#[test]
fn two_storage_write_runs_adding_the_same_columns_at_once_both_succeed() {
    concurrent_runs_adding_the_same_column("storage-write");
}

#[test]
fn two_insert_all_runs_adding_the_same_columns_at_once_both_succeed() {
    concurrent_runs_adding_the_same_column("insert-all");
}

/// Usage errors (exit 2): evolution outside BigQuery, and with storage-write's `--dedup merge`;
/// an unknown value is refused by the parser.
#[test]
fn schema_evolution_outside_bigquery_or_with_storage_write_merge_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("obj"), "{\"n\":1}\n").unwrap();
    let run = |args: &[&str]| {
        let out = bin()
            .current_dir(work.path())
            .args(["replay", "obj", "--ledger", "none"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--sink", "ndjson:out", "--schema-evolution", "add-columns"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--schema-evolution add-columns adds columns to a table")
            && stderr.contains("NDJSON files and stdout have no schema"),
        "{stderr}"
    );
    assert!(!work.path().join("out").exists());
    let (code, stderr) = run(&[
        "--sink",
        "bigquery:p.d.t",
        "--dedup",
        "merge",
        "--schema-evolution",
        "add-columns",
        "--bigquery-endpoint",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--dedup merge is not supported yet"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--sink", "ndjson:out", "--schema-evolution", "sometimes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("expected off or add-columns"), "{stderr}");
}

/// An object moved to a second stream by schema evolution is staged as one token naming both;
/// a process that dies after staging and before committing leaves nothing visible, and the
/// next process's sink finds the token uncommitted, commits both streams at once, and then
/// (asked again, as after a second crash) finds them committed and commits nothing twice.
#[test]
fn a_staged_multi_stream_token_is_resolved_after_a_crash() {
    use firehose_replay::ledger::Staged;
    use firehose_replay::object::ObjectRef;
    use firehose_replay::record::{validate, Payload};
    use firehose_replay::row::{ObjectSeed, RowBuilder, RowIdSource};
    use firehose_replay::sink::bigquery::{self, Config, Mode, SchemaEvolution};

    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    emu.create_table(
        "bi",
        "grow",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "n", "type": "INTEGER"}]),
    );
    let rt = crate::moto::rt();
    let connect = || {
        let mut config = Config::new(TableRef {
            project: "test-proj".into(),
            dataset: "bi".into(),
            table: "grow".into(),
        });
        config.mode = Mode::StorageWrite;
        config.endpoint = Some(emu.endpoint.clone());
        config.storage_endpoint = Some(emu.grpc_endpoint.clone());
        config.schema_evolution = SchemaEvolution::AddColumns;
        rt.block_on(bigquery::connect(config)).unwrap()
    };
    let object = ObjectRef::new("b", "k");
    let sink = connect();
    let mut writer = sink.open(&object).unwrap();
    let mut rb = RowBuilder::new(
        ObjectSeed::new(&object),
        RowIdSource::Position,
        Some("_row_id"),
    );
    for (i, record) in [r#"{"n":1}"#, r#"{"n":2,"s":"x"}"#, r#"{"n":3}"#]
        .iter()
        .enumerate()
    {
        let payload = Payload {
            json: record.as_bytes(),
            shape: validate(record.as_bytes()).unwrap(),
            sub: &[],
            verdicts: Default::default(),
        };
        let row = rb.build(&payload, i as u64, i as u64 * 10).unwrap();
        writer.write_row(&row).unwrap();
    }
    let prepared = writer.prepare().unwrap();
    assert!(prepared.rejected.is_empty());
    let token = prepared.token.unwrap();
    let names: Vec<String> = serde_json::from_str(&token).unwrap();
    assert_eq!(names.len(), 2, "{token}");
    assert!(names
        .iter()
        .all(|n| n.starts_with("projects/test-proj/datasets/bi/tables/grow/streams/")));
    // The crash: the writer is gone without committing.
    drop(writer);
    drop(sink);
    let staged = Staged {
        token,
        records: 3,
        rows: 3,
        record_errors: 0,
    };
    let next = connect();
    assert!(!next.committed(&staged).unwrap());
    assert!(
        emu.rows("bi", "grow").is_empty(),
        "nothing visible before the commit"
    );
    assert!(next.commit_staged(&staged).unwrap());
    assert!(next.committed(&staged).unwrap());
    let mut got: Vec<(String, serde_json::Value)> = emu
        .rows("bi", "grow")
        .iter()
        .map(|r| (r["n"].as_str().unwrap().to_string(), r["s"].clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("1".to_string(), serde_json::Value::Null),
            ("2".into(), json!("x")),
            ("3".into(), serde_json::Value::Null)
        ]
    );
    // Resolved again (a crash after the commit, before the ledger's finish): nothing twice.
    assert!(next.commit_staged(&staged).unwrap());
    assert_eq!(emu.rows("bi", "grow").len(), 3);
}

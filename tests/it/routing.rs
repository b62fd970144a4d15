//! Routing to several tables (`--sink 'bigquery:P.D.events_{type}'`) and `--create-table auto`,
//! end to end against the local-bigquery emulator.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::bigquery_modes::start;
use crate::bq_emulator::BqEmulator;
/// `replay ROOT` into `sink` in `mode` (a ledger file in `work`).
use crate::harness::replay_into_bigquery as replay;
use crate::harness::{archive, dead_letter_errors, firehose_key, run_ok, table_names};
use crate::support::bin;

fn events(kind: Option<&str>, n: usize, from: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| match kind {
            Some(k) => json!({"type": k, "n": i, "user": {"id": format!("u{i}")}}),
            None => json!({"n": i}),
        })
        .collect()
}

fn counts(emu: &BqEmulator, tables: &[&str]) -> BTreeMap<String, usize> {
    tables
        .iter()
        .map(|t| (t.to_string(), emu.rows("bi", t).len()))
        .collect()
}

/// `name TYPE MODE` of each column, as tables.get reads them back.
fn columns(emu: &BqEmulator, table: &str) -> Vec<String> {
    emu.table("bi", table)["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {} {}",
                f["name"].as_str().unwrap(),
                f["type"].as_str().unwrap(),
                f["mode"].as_str().unwrap_or("NULLABLE")
            )
        })
        .collect()
}

fn assert_unique_ids(emu: &BqEmulator, table: &str) {
    let rows = emu.rows("bi", table);
    let ids: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["_row_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), rows.len(), "{table}: duplicate rows");
}

#[test]
fn storage_write_routes_mixed_event_types_into_per_type_tables_exactly_once() {
    let (emu, work) = start();
    let schema = json!([
        {"name": "type", "type": "STRING"},
        {"name": "n", "type": "INTEGER"},
        {"name": "user", "type": "RECORD", "fields": [{"name": "id", "type": "STRING"}]},
        {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"}
    ]);
    for t in ["events_yubl_posted", "events_user_followed", "events_other"] {
        emu.create_table("bi", t, schema.clone());
    }
    let root = work.path().join("archive");
    let mut first = events(Some("yubl-posted"), 3, 0);
    first.extend(events(Some("user-followed"), 2, 3));
    first.extend(events(None, 1, 5));
    let mut second = events(Some("yubl-posted"), 2, 10);
    second.push(json!({"type": null, "n": 12}));
    second.push(json!({"type": "", "n": 13}));
    archive(
        &root,
        &[
            (&firehose_key("yubl", 1), first),
            (&firehose_key("yubl", 2), second),
        ],
    );
    let sink = "events_{type}";
    let tables = ["events_yubl_posted", "events_user_followed", "events_other"];
    let want = BTreeMap::from([
        ("events_other".to_string(), 3),
        ("events_user_followed".to_string(), 2),
        ("events_yubl_posted".to_string(), 5),
    ]);
    let mut cmd = replay(&emu, work.path(), &root, sink, "storage-write");
    cmd.args(["--route-default", "events_other"]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("10 rows written, 0 record errors"),
        "{stderr}"
    );
    assert_eq!(counts(&emu, &tables), want);
    for t in tables {
        assert_unique_ids(&emu, t);
    }
    // Values reach their columns in every table.
    let posted = emu.rows("bi", "events_yubl_posted");
    assert!(posted
        .iter()
        .all(|r| r["type"] == "yubl-posted" && r["user"]["id"].as_str().is_some()));
    // Replayed: the ledger has both objects, nothing is added anywhere.
    let mut cmd = replay(&emu, work.path(), &root, sink, "storage-write");
    cmd.args(["--route-default", "events_other"]);
    let stderr = run_ok(cmd);
    assert!(stderr.contains("2 skipped by the ledger"), "{stderr}");
    assert_eq!(counts(&emu, &tables), want);
    // The ledger staged one token per object naming every table it wrote to.
    let ledger = std::fs::read_to_string(work.path().join("ledger.jsonl")).unwrap();
    assert!(
        ledger.contains("test-proj.bi.events_user_followed"),
        "{ledger}"
    );
}

#[test]
fn insert_all_creates_routed_tables_from_their_rows_and_bounds_the_tables_per_object() {
    let (emu, work) = start();
    let root = work.path().join("archive");
    let mut records = events(Some("yubl-posted"), 2, 0);
    records.extend(events(Some("user-followed"), 1, 2));
    records.extend(events(None, 1, 3)); // no `type`, no --route-default: a record error
    records.extend(events(Some("comment-added"), 1, 4)); // a third table: over the bound
    records.extend(events(Some("yubl-posted"), 1, 5));
    archive(&root, &[(&firehose_key("yubl", 1), records)]);
    let mut cmd = replay(&emu, work.path(), &root, "events_{type}", "insert-all");
    cmd.args(["--create-table", "auto", "--max-tables-per-object", "2"]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("4 rows written, 2 record errors"),
        "{stderr}"
    );
    assert_eq!(
        table_names(&emu),
        ["events_user_followed", "events_yubl_posted"]
    );
    assert_eq!(
        counts(&emu, &["events_yubl_posted", "events_user_followed"]),
        BTreeMap::from([
            ("events_user_followed".to_string(), 1),
            ("events_yubl_posted".to_string(), 3)
        ])
    );
    // Created from the first row: its fields' types, then the row-ID column.
    assert_eq!(
        columns(&emu, "events_yubl_posted"),
        [
            "n INTEGER NULLABLE",
            "type STRING NULLABLE",
            "user RECORD NULLABLE",
            "_row_id STRING REQUIRED"
        ]
    );
    let errors = dead_letter_errors(work.path());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("--max-tables-per-object"), "{errors:?}");
    assert!(
        errors[1].contains("routing field `type` is missing")
            && errors[1].contains("--route-default"),
        "{errors:?}"
    );
}

#[test]
fn stream_and_date_placeholders_come_from_the_key_and_created_tables_are_partitioned() {
    let (emu, work) = start();
    let root = work.path().join("archive");
    archive(
        &root,
        &[
            (
                firehose_key("yubl-events", 1).as_str(),
                events(Some("a"), 3, 0),
            ),
            (
                firehose_key("orders.v2", 2).as_str(),
                events(Some("b"), 2, 0),
            ),
            ("exports/plain.json", events(Some("c"), 1, 0)),
        ],
    );
    let mut cmd = replay(
        &emu,
        work.path(),
        &root,
        "{stream}_{yyyy}{mm}{dd}",
        "storage-write",
    );
    cmd.args(["--create-table", "auto"])
        .args([
            "--metadata-columns",
            "source_uri,record_ordinal,ingested_at",
        ])
        .args(["--partition-by", "_ingested_at", "--cluster-by", "type"]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The key without a Firehose name cannot give {stream}: that object fails, the others land.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exports/plain.json") && stderr.contains("{stream}"),
        "{stderr}"
    );
    assert_eq!(
        table_names(&emu),
        ["orders_v2_20261125", "yubl_events_20261125"]
    );
    assert_eq!(
        counts(&emu, &["yubl_events_20261125", "orders_v2_20261125"]),
        BTreeMap::from([
            ("orders_v2_20261125".to_string(), 2),
            ("yubl_events_20261125".to_string(), 3)
        ])
    );
    let t = emu.table("bi", "yubl_events_20261125");
    assert_eq!(t["timePartitioning"]["field"], "_ingested_at", "{t}");
    assert_eq!(t["timePartitioning"]["type"], "DAY", "{t}");
    assert_eq!(t["clustering"]["fields"], json!(["type"]), "{t}");
    assert_eq!(
        columns(&emu, "yubl_events_20261125"),
        [
            "n INTEGER NULLABLE",
            "type STRING NULLABLE",
            "user RECORD NULLABLE",
            "_row_id STRING REQUIRED",
            "_source_uri STRING NULLABLE",
            "_record_ordinal INTEGER NULLABLE",
            "_ingested_at TIMESTAMP NULLABLE"
        ]
    );
    let rows = emu.rows("bi", "yubl_events_20261125");
    assert!(
        rows.iter().all(|r| r["_ingested_at"].as_str().is_some()),
        "{rows:?}"
    );
}

#[test]
fn a_payload_column_table_is_created_as_json_and_routed_on_fields_inside_it() {
    let (emu, work) = start();
    let root = work.path().join("archive");
    let mut records = events(Some("yubl-posted"), 2, 0);
    records.extend(events(Some("user-followed"), 1, 2));
    records.push(json!({"type": "yubl-posted", "extra": {"deep": [1, 2]}}));
    archive(&root, &[(&firehose_key("yubl", 1), records)]);
    let mut cmd = replay(&emu, work.path(), &root, "raw_{type}", "storage-write");
    cmd.args(["--create-table", "auto", "--payload-column", "raw"]);
    let stderr = run_ok(cmd);
    assert!(
        stderr.contains("4 rows written, 0 record errors"),
        "{stderr}"
    );
    for t in ["raw_yubl_posted", "raw_user_followed"] {
        assert_eq!(
            columns(&emu, t),
            ["raw JSON NULLABLE", "_row_id STRING REQUIRED"],
            "{t}"
        );
    }
    let rows = emu.rows("bi", "raw_yubl_posted");
    assert_eq!(rows.len(), 3);
    let raw: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r["raw"].as_str().unwrap()).unwrap())
        .collect();
    assert!(raw.iter().all(|r| r["type"] == "yubl-posted"), "{raw:?}");
    assert!(
        raw.iter().any(|r| r["extra"]["deep"] == json!([1, 2])),
        "{raw:?}"
    );
}

/// Four runs creating the same missing tables at once all succeed, and every table holds every
/// run's rows once: a fixed table (`--create-table auto` without routing) and two routed ones.
/// (BigQuery answers a create that lost the race with 409 — see the next test; the emulator
/// answers it with a 400 from its storage's write conflict and shows the winner's table a
/// moment later, which the sink checks for.)
#[test]
fn concurrent_runs_creating_the_same_tables_all_succeed() {
    let (emu, work) = start();
    for (sink, tables) in [
        ("shared", vec![("shared", 20)]),
        ("shared_{type}", vec![("shared_a", 12), ("shared_b", 8)]),
    ] {
        let runs: Vec<_> = (0..4u32)
            .map(|w| {
                let dir = work.path().join(format!("{}-w{w}", sink.len()));
                let root = dir.join("archive");
                let mut records = events(Some("a"), 3, 0);
                records.extend(events(Some("b"), 2, 3));
                archive(&root, &[(&firehose_key("s", w), records)]);
                let mut cmd = replay(&emu, &dir, &root, sink, "storage-write");
                cmd.args(["--create-table", "auto"]);
                cmd.stderr(std::process::Stdio::piped());
                cmd.spawn().unwrap()
            })
            .collect();
        for child in runs {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{sink}: {stderr}");
            assert!(stderr.contains("5 rows written"), "{sink}: {stderr}");
        }
        for (table, n) in tables {
            assert_eq!(emu.rows("bi", table).len(), n, "{table}");
            assert_unique_ids(&emu, table);
            assert_eq!(
                columns(&emu, table),
                [
                    "n INTEGER NULLABLE",
                    "type STRING NULLABLE",
                    "user RECORD NULLABLE",
                    "_row_id STRING REQUIRED"
                ]
            );
        }
    }
}

/// A run that staged one object's rows in two tables and died before committing either: the
/// next run's sink finds them uncommitted and commits both, each once.
#[test]
fn a_staged_multi_table_object_is_committed_by_the_next_run() {
    use firehose_replay::ledger::Staged;
    use firehose_replay::object::ObjectRef;
    use firehose_replay::row::{ObjectSeed, Row};
    use firehose_replay::sink::bigquery;

    let (emu, _work) = start();
    for t in ["ev_a", "ev_b"] {
        emu.create_table(
            "bi",
            t,
            json!([{"name": "type", "type": "STRING"}, {"name": "n", "type": "INTEGER"}]),
        );
    }
    let rt = crate::moto::rt();
    let connect = || {
        let mut config = bigquery::Config::new("test-proj.bi.ev_{type}".parse().unwrap());
        config.endpoint = Some(emu.endpoint.clone());
        config.storage_endpoint = Some(emu.grpc_endpoint.clone());
        rt.block_on(bigquery::connect(config)).unwrap()
    };
    let object = ObjectRef::new("b", firehose_key("s", 1));
    let id = ObjectSeed::new(&object).id(0, &[]);
    let sink = connect();
    let mut writer = sink.open(&object).unwrap();
    for (i, r) in [
        r#"{"type":"a","n":1}"#,
        r#"{"type":"b","n":2}"#,
        r#"{"type":"a","n":3}"#,
    ]
    .iter()
    .enumerate()
    {
        writer
            .write_row(&Row::whole(&id, i as u64, r.as_bytes()))
            .unwrap();
    }
    let prepared = writer.prepare().unwrap();
    // The "crash": the ledger has the token, nothing was committed.
    drop(writer);
    drop(sink);
    let staged = Staged {
        token: prepared.token.unwrap(),
        records: 3,
        rows: 3,
        record_errors: 0,
    };
    let parts: BTreeMap<String, String> = serde_json::from_str(&staged.token).unwrap();
    assert_eq!(
        parts.keys().collect::<Vec<_>>(),
        ["test-proj.bi.ev_a", "test-proj.bi.ev_b"]
    );
    assert!(parts.values().all(|t| t.contains("/streams/")), "{parts:?}");
    assert_eq!(counts(&emu, &["ev_a", "ev_b"]).values().sum::<usize>(), 0);
    let next = connect();
    assert!(!next.committed(&staged).unwrap());
    assert!(next.commit_staged(&staged).unwrap());
    assert!(next.committed(&staged).unwrap());
    // A second resolution (a third run) commits nothing twice.
    assert!(next.commit_staged(&staged).unwrap());
    assert_eq!(
        counts(&emu, &["ev_a", "ev_b"]),
        BTreeMap::from([("ev_a".to_string(), 2), ("ev_b".to_string(), 1)])
    );
}

/// BigQuery answers a create that lost the race with 409 Already Exists: that table is there,
/// so the run goes on writing to it. (The emulator cannot give a 409 under concurrency — its
/// storage reports the conflict as a 400 — so a local server answers here.)
#[test]
fn a_create_answered_409_counts_as_created() {
    use firehose_replay::object::ObjectRef;
    use firehose_replay::row::{ObjectSeed, Row};
    use firehose_replay::sink::bigquery;
    use std::sync::{Arc, Mutex};

    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let (srv, log) = (server.clone(), seen.clone());
    std::thread::spawn(move || {
        for mut req in srv.incoming_requests() {
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let what = format!("{} {}", req.method(), req.url());
            log.lock().unwrap().push((
                what.clone(),
                serde_json::from_str(&body).unwrap_or(Value::Null),
            ));
            let error = |code: u16, status: &str| {
                json!({"error": {"code": code, "message": status, "status": status,
                                 "errors": [{"reason": status, "message": status}]}})
            };
            let (status, answer) = if what.ends_with("/insertAll") {
                (200, json!({"kind": "bigquery#tableDataInsertAllResponse"}))
            } else if what.starts_with("GET") {
                (404, error(404, "NOT_FOUND"))
            } else {
                (409, error(409, "ALREADY_EXISTS"))
            };
            let _ = req.respond(
                tiny_http::Response::from_string(answer.to_string())
                    .with_status_code(status)
                    .with_header(
                        "Content-Type: application/json"
                            .parse::<tiny_http::Header>()
                            .unwrap(),
                    ),
            );
        }
    });
    let rt = crate::moto::rt();
    let mut config = bigquery::Config::new("test-proj.bi.t_{type}".parse().unwrap());
    config.endpoint = Some(endpoint);
    config.mode = bigquery::Mode::InsertAll;
    config.retry.min_delay = std::time::Duration::from_millis(1);
    config.create_auto = Some(bigquery::autocreate::AutoCreate {
        row_id_column: Some("_row_id".into()),
        ..Default::default()
    });
    let sink = rt.block_on(bigquery::connect(config)).unwrap();
    let object = ObjectRef::new("b", "k.json");
    let seed = ObjectSeed::new(&object);
    let mut writer = sink.open(&object).unwrap();
    for (i, r) in [
        r#"{"type":"x","n":1,"_row_id":"r1"}"#,
        r#"{"type":"x","n":2,"_row_id":"r2"}"#,
    ]
    .iter()
    .enumerate()
    {
        let id = seed.id(i as u64, &[]);
        writer
            .write_row(&Row::whole(&id, i as u64, r.as_bytes()))
            .unwrap();
    }
    let committed = writer.commit().unwrap();
    assert!(committed.rejected.is_empty());
    let seen = seen.lock().unwrap();
    let creates: Vec<&Value> = seen
        .iter()
        .filter(|(w, _)| w.starts_with("POST") && w.ends_with("/datasets/bi/tables"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(creates.len(), 1, "{seen:?}");
    assert_eq!(creates[0]["tableReference"]["tableId"], "t_x");
    assert_eq!(
        creates[0]["schema"]["fields"],
        json!([{"name": "n", "type": "INTEGER", "mode": "NULLABLE"},
               {"name": "type", "type": "STRING", "mode": "NULLABLE"},
               {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"}])
    );
    let inserted: usize = seen
        .iter()
        .filter(|(w, _)| w.ends_with("/tables/t%5Fx/insertAll"))
        .map(|(_, b)| b["rows"].as_array().map_or(0, |r| r.len()))
        .sum();
    assert_eq!(inserted, 2, "{seen:?}");
}

/// Flags that cannot work together are usage errors (exit 2) before anything is written.
#[test]
fn conflicting_routing_flags_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("archive");
    archive(&root, &[("k.json", events(Some("a"), 1, 0))]);
    let run = |sink: &str, extra: &[&str]| {
        let out = bin()
            .current_dir(work.path())
            .args(["replay", root.to_str().unwrap(), "--sink", sink])
            .args(["--bigquery-endpoint", "http://127.0.0.1:9"])
            .args(["--bigquery-storage-endpoint", "http://127.0.0.1:9"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, e) = run(
        "bigquery:p.d.e_{type}",
        &["--create-table", "auto", "--create-table-schema", "x.json"],
    );
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("give one"), "{e}");
    let (code, e) = run("bigquery:p.d.e_{type}", &["--dedup", "merge"]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("--dedup merge"), "{e}");
    let (code, e) = run(
        "bigquery:p.d.e",
        &["--create-table", "auto", "--dedup", "merge"],
    );
    assert_eq!(code, Some(2), "{e}");
    let (code, e) = run("bigquery:p.d.e_{stream}", &["--route-default", "other"]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("no record field"), "{e}");
    let (code, e) = run("bigquery:p.d.e_{type}", &["--route-default", "o_{type}"]);
    assert_eq!(code, Some(2), "{e}");
    let (code, e) = run("bigquery:p.d.e_{type", &[]);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("without its `}`"), "{e}");
}

/// The Lambda handler (through `invoke`) takes routing and `--create-table auto` from the
/// environment, as a deployed function does.
#[test]
fn the_lambda_routes_and_creates_tables_from_its_environment() {
    let (emu, work) = start();
    let root = work.path().join("buckets");
    let keys = [
        "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz",
        "events/dt=2026-11-25/h=13/orders a+bü.gz",
    ];
    for (key, n) in keys.iter().zip([3, 5]) {
        let p = root.join("firehose-archive").join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, crate::support::ndjson(n)).unwrap();
    }
    let event =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda/s3-notification.json");
    let out = bin()
        .current_dir(work.path())
        .arg("invoke")
        .arg("--event")
        .arg(&event)
        .arg("--buckets")
        .arg(&root)
        .env("FIREHOSE_REPLAY_SINK", "bigquery:test-proj.bi.t_{n}")
        .env("FIREHOSE_REPLAY_CREATE_TABLE", "auto")
        .env("FIREHOSE_REPLAY_MAX_TABLES_PER_OBJECT", "4")
        .env("FIREHOSE_REPLAY_BIGQUERY_ENDPOINT", &emu.endpoint)
        .env(
            "FIREHOSE_REPLAY_BIGQUERY_STORAGE_ENDPOINT",
            &emu.grpc_endpoint,
        )
        .env(
            "FIREHOSE_REPLAY_DEAD_LETTER",
            format!("dir:{}", work.path().join("dead-letter").display()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // {"n":0..2} and {"n":0..4}: the second object reaches a fifth table, over the bound.
    assert_eq!(table_names(&emu), ["t_0", "t_1", "t_2", "t_3"]);
    assert_eq!(
        counts(&emu, &["t_0", "t_1", "t_2", "t_3"]),
        BTreeMap::from([
            ("t_0".to_string(), 2),
            ("t_1".to_string(), 2),
            ("t_2".to_string(), 2),
            ("t_3".to_string(), 1)
        ])
    );
    let errors = dead_letter_errors(work.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("--max-tables-per-object"), "{errors:?}");
}

/// The README's worked example, in every mode: one stream of mixed events into per-type tables
/// that do not exist yet, whose records gain a field mid-object (a STRING, then a RECORD with an
/// INT64 inside) — routing, `--create-table auto` and `--schema-evolution add-columns` together.
/// Every record lands, in its type's table, with its new fields, and a rerun adds nothing.
#[test]
fn routed_auto_created_tables_grow_with_their_records_in_every_mode() {
    for mode in ["storage-write", "insert-all", "load"] {
        let (emu, work) = start();
        let root = work.path().join("archive");
        let mut first = events(Some("yubl-posted"), 2, 0);
        first.extend(events(Some("user-followed"), 1, 2));
        // Mid-object, both types gain fields the tables they were created with lack.
        first.push(json!({"type": "yubl-posted", "n": 3, "user": {"id": "u3"}, "plan": "pro"}));
        first.push(json!({"type": "user-followed", "n": 4, "geo": {"cnt": 7}}));
        let second = vec![
            json!({"type": "yubl-posted", "n": 10, "plan": "free", "geo": {"cnt": 1}}),
            json!({"type": "yubl-posted", "n": 11, "user": {"id": "u11"}}),
        ];
        archive(
            &root,
            &[
                (&firehose_key("yubl", 1), first),
                (&firehose_key("yubl", 2), second),
            ],
        );
        let run = || {
            let mut cmd = replay(&emu, work.path(), &root, "events_{type}", mode);
            cmd.args([
                "--create-table",
                "auto",
                "--schema-evolution",
                "add-columns",
            ]);
            run_ok(cmd)
        };
        let stderr = run();
        assert!(
            stderr.contains("7 rows written, 0 record errors"),
            "{mode}: {stderr}"
        );
        assert!(dead_letter_errors(work.path()).is_empty(), "{mode}");
        let tables = ["events_user_followed", "events_yubl_posted"];
        assert_eq!(table_names(&emu), tables, "{mode}");
        let want = BTreeMap::from([
            ("events_user_followed".to_string(), 2),
            ("events_yubl_posted".to_string(), 5),
        ]);
        assert_eq!(counts(&emu, &tables), want, "{mode}");
        for t in tables {
            assert_unique_ids(&emu, t);
        }
        let posted = emu.rows("bi", "events_yubl_posted");
        let by_n = |n: i64| {
            posted
                .iter()
                .find(|r| r["n"].as_i64() == Some(n) || r["n"].as_str() == Some(&n.to_string()))
                .unwrap_or_else(|| panic!("{mode}: no row n={n} in {posted:?}"))
        };
        assert_eq!(by_n(3)["plan"], "pro", "{mode}");
        assert_eq!(by_n(10)["plan"], "free", "{mode}");
        let cnt = &by_n(10)["geo"]["cnt"];
        assert!(cnt == 1 || cnt == "1", "{mode}: {cnt}");
        assert_eq!(by_n(11)["user"]["id"], "u11", "{mode}");
        let followed = emu.rows("bi", "events_user_followed");
        assert!(
            followed
                .iter()
                .any(|r| r["geo"]["cnt"] == 7 || r["geo"]["cnt"] == "7"),
            "{mode}: {followed:?}"
        );
        let cols = columns(&emu, "events_yubl_posted");
        for c in [
            "plan STRING NULLABLE",
            "geo RECORD NULLABLE",
            "_row_id STRING",
        ] {
            assert!(cols.iter().any(|x| x.starts_with(c)), "{mode}: {cols:?}");
        }
        // Rerun: the ledger has both objects; nothing is added to either table.
        let stderr = run();
        assert!(
            stderr.contains("2 skipped by the ledger"),
            "{mode}: {stderr}"
        );
        assert_eq!(counts(&emu, &tables), want, "{mode}");
    }
}

/// The Lambda takes `FIREHOSE_REPLAY_SCHEMA_EVOLUTION` from its environment: records whose
/// fields the table lacks add their columns (no dead letters), in the default storage-write mode.
#[test]
fn the_lambda_adds_columns_from_its_environment() {
    let (emu, work) = start();
    emu.create_table(
        "bi",
        "grow",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "n", "type": "INTEGER"}]),
    );
    let root = work.path().join("buckets");
    let keys = [
        "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz",
        "events/dt=2026-11-25/h=13/orders a+bü.gz",
    ];
    let bodies = [
        "{\"n\":1}\n{\"n\":2,\"tier\":\"gold\"}\n",
        "{\"n\":3,\"ctx\":{\"depth\":4}}\n{\"n\":4,\"tier\":\"blue\",\"ctx\":{\"depth\":5}}\n",
    ];
    for (key, body) in keys.iter().zip(bodies) {
        let p = root.join("firehose-archive").join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let event =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda/s3-notification.json");
    let out = bin()
        .current_dir(work.path())
        .arg("invoke")
        .arg("--event")
        .arg(&event)
        .arg("--buckets")
        .arg(&root)
        .env("FIREHOSE_REPLAY_SINK", "bigquery:test-proj.bi.grow")
        .env("FIREHOSE_REPLAY_SCHEMA_EVOLUTION", "add-columns")
        .env("FIREHOSE_REPLAY_BIGQUERY_ENDPOINT", &emu.endpoint)
        .env(
            "FIREHOSE_REPLAY_BIGQUERY_STORAGE_ENDPOINT",
            &emu.grpc_endpoint,
        )
        .env(
            "FIREHOSE_REPLAY_DEAD_LETTER",
            format!("dir:{}", work.path().join("dead-letter").display()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // No dead letter at all: no record, and no object (a failed object is dead-lettered and
    // the invocation still succeeds).
    let letters = crate::cli::files_under(&work.path().join("dead-letter"));
    assert!(letters.is_empty(), "{letters:?}\n{stderr}");
    let rows = emu.rows("bi", "grow");
    assert_eq!(rows.len(), 4, "{rows:?}\n{stderr}");
    let tiers: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r["tier"].as_str().map(str::to_string))
        .collect();
    assert_eq!(tiers, ["blue", "gold"].map(String::from).into());
    assert_eq!(
        rows.iter().filter(|r| !r["ctx"]["depth"].is_null()).count(),
        2,
        "{rows:?}"
    );
    let cols = columns(&emu, "grow");
    assert!(cols.iter().any(|c| c == "tier STRING NULLABLE"), "{cols:?}");
    assert!(cols.iter().any(|c| c.starts_with("ctx RECORD")), "{cols:?}");
}

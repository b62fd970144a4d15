//! The BigQuery sink against a local server that speaks insertAll's REST shapes and misbehaves
//! on cue: 503s, 429s, quota and rate-limit 403s, answers slower than the client's timeout,
//! dropped connections, and 200s with per-row `insertErrors` (`invalid` for bad rows, `stopped`
//! for the rest of the request, as BigQuery answers without `skipInvalidRows`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firehose_replay::dead_letter::DeadLetterDir;
use firehose_replay::error::Class;
use firehose_replay::ledger::NoLedger;
use firehose_replay::object::ObjectRef;
use firehose_replay::pipeline::{
    process_object, Context, ObjectFailure, ObjectReport, Processed, Settings,
};
use firehose_replay::sink::bigquery::{BigQuery, Config, TableRef};
use firehose_replay::source::local::LocalStore;
use serde_json::{json, Value};

use crate::support::{gzip, Bucket};

/// One insertAll request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `(insertId, json)` per row.
    pub rows: Vec<(String, Value)>,
    pub bytes: usize,
    pub authorization: Option<String>,
    /// Rows of this request the table already held when it arrived (sent after success).
    pub already_written: usize,
}

/// What the server does with request number `n` (0-based).
pub enum Reply {
    /// Write every row (dedup by insertId), answer 200.
    Ok,
    /// Answer 200 with these insertErrors; rows not named are written.
    RowErrors(Vec<(usize, &'static str, String)>),
    /// Answer with this status and BigQuery's error body for `reason`; nothing is written.
    Status(u16, &'static str, &'static str),
    /// Write the rows, then answer only after this delay (past the client's timeout).
    Slow(Duration),
    /// Write the rows, then drop the connection without an answer: the client cannot know.
    WriteThenDrop,
}

type Script = Box<dyn Fn(usize, &[(String, Value)]) -> Reply + Send + Sync>;

pub struct FakeBigQuery {
    pub endpoint: String,
    pub requests: Arc<Mutex<Vec<Seen>>>,
    /// Rows written, by insertId (BigQuery's dedup).
    pub table: Arc<Mutex<HashMap<String, Value>>>,
    /// The table resource `tables.get` answers (`etag`, `schema`); `tables.patch` replaces its
    /// schema and etag, as BigQuery does (a stale `If-Match` gets 412).
    pub resource: Arc<Mutex<Value>>,
    /// The bodies of the `tables.patch` requests, in order.
    pub patches: Arc<Mutex<Vec<Value>>>,
    server: Arc<tiny_http::Server>,
}

impl FakeBigQuery {
    pub fn start(script: Script) -> FakeBigQuery {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let table: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let script = Arc::new(script);
        let resource = Arc::new(Mutex::new(json!({"etag": "e0", "schema": {"fields": [
            {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "n", "type": "INTEGER"},
            {"name": "amount", "type": "FLOAT"}]}})));
        let patches: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (srv, reqs, tbl) = (server.clone(), requests.clone(), table.clone());
        let (res, pat) = (resource.clone(), patches.clone());
        std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let (reqs, tbl, script) = (reqs.clone(), tbl.clone(), script.clone());
                let (res, pat) = (res.clone(), pat.clone());
                std::thread::spawn(move || {
                    let mut body = Vec::new();
                    req.as_reader().read_to_end(&mut body).unwrap();
                    if req.url().contains("/tables/") && !req.url().ends_with("/insertAll") {
                        let mut resource = res.lock().unwrap();
                        let (code, answer) = match req.method() {
                            tiny_http::Method::Get => (200, resource.clone()),
                            tiny_http::Method::Patch => {
                                let if_match = req
                                    .headers()
                                    .iter()
                                    .find(|h| h.field.equiv("If-Match"))
                                    .map(|h| h.value.to_string());
                                if if_match.is_some_and(|e| e != resource["etag"]) {
                                    (
                                        412,
                                        json!({"error": {"code": 412, "message": "precondition"}}),
                                    )
                                } else {
                                    let v: Value = serde_json::from_slice(&body).unwrap();
                                    pat.lock().unwrap().push(v.clone());
                                    let n = pat.lock().unwrap().len();
                                    resource["schema"] = v["schema"].clone();
                                    resource["etag"] = json!(format!("e{n}"));
                                    (200, resource.clone())
                                }
                            }
                            _ => (404, json!({})),
                        };
                        let _ = req.respond(
                            tiny_http::Response::from_string(answer.to_string())
                                .with_status_code(code),
                        );
                        return;
                    }
                    if !req.url().ends_with("/insertAll") {
                        let _ = req
                            .respond(tiny_http::Response::from_string("{}").with_status_code(404));
                        return;
                    }
                    let v: Value =
                        serde_json::from_slice(&body).expect("insertAll bodies are JSON");
                    let rows: Vec<(String, Value)> = v["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            (
                                r["insertId"].as_str().unwrap().to_string(),
                                r["json"].clone(),
                            )
                        })
                        .collect();
                    let authorization = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.to_string());
                    let already_written = {
                        let t = tbl.lock().unwrap();
                        rows.iter().filter(|(id, _)| t.contains_key(id)).count()
                    };
                    let n = {
                        let mut r = reqs.lock().unwrap();
                        r.push(Seen {
                            rows: rows.clone(),
                            bytes: body.len(),
                            authorization,
                            already_written,
                        });
                        r.len() - 1
                    };
                    let write = |skip: &[usize]| {
                        let mut t = tbl.lock().unwrap();
                        for (i, (id, row)) in rows.iter().enumerate() {
                            if !skip.contains(&i) {
                                t.entry(id.clone()).or_insert_with(|| row.clone());
                            }
                        }
                    };
                    let json_response = |code: u16, v: Value| {
                        tiny_http::Response::from_string(v.to_string())
                            .with_status_code(code)
                            .with_header(
                                tiny_http::Header::from_bytes(
                                    &b"Content-Type"[..],
                                    &b"application/json"[..],
                                )
                                .unwrap(),
                            )
                    };
                    match script(n, &rows) {
                        Reply::Ok => {
                            write(&[]);
                            let _ = req.respond(json_response(
                                200,
                                json!({"kind": "bigquery#tableDataInsertAllResponse"}),
                            ));
                        }
                        Reply::RowErrors(errs) => {
                            let failed: Vec<usize> = errs.iter().map(|e| e.0).collect();
                            write(&failed);
                            let insert_errors: Vec<Value> = errs
                                .iter()
                                .map(|(i, reason, msg)| {
                                    json!({"index": i, "errors": [{"reason": reason, "location": if *reason == "invalid" { "amount" } else { "" }, "debugInfo": "", "message": msg}]})
                                })
                                .collect();
                            let _ = req.respond(json_response(
                                200,
                                json!({"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": insert_errors}),
                            ));
                        }
                        Reply::Status(code, reason, message) => {
                            let _ = req.respond(json_response(
                                code,
                                json!({"error": {"code": code, "message": message,
                                       "errors": [{"message": message, "domain": "global", "reason": reason}],
                                       "status": "ERROR"}}),
                            ));
                        }
                        Reply::Slow(d) => {
                            write(&[]);
                            std::thread::sleep(d);
                            let _ = req.respond(json_response(200, json!({})));
                        }
                        Reply::WriteThenDrop => {
                            write(&[]);
                            // Take the socket and close it without a word.
                            drop(req.into_writer());
                        }
                    }
                });
            }
        });
        FakeBigQuery {
            endpoint,
            requests,
            table,
            resource,
            patches,
            server,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    /// How many times each insertId was sent.
    pub fn sends(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.requests() {
            for (id, _) in r.rows {
                *m.entry(id).or_insert(0) += 1;
            }
        }
        m
    }
}

impl Drop for FakeBigQuery {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

pub fn config(fake: &FakeBigQuery) -> Config {
    let mut c = Config::new("test-proj.bi.events".parse::<TableRef>().unwrap());
    c.endpoint = Some(fake.endpoint.clone());
    c.retry.min_delay = Duration::from_millis(5);
    c.retry.max_delay = Duration::from_millis(50);
    c.timeout = Duration::from_secs(5);
    c
}

/// `n` records `{"n":i,"amount":…}`; those in `bad` have a string amount BigQuery refuses.
pub fn records(n: usize, bad: &[usize]) -> Vec<u8> {
    (0..n)
        .map(|i| {
            if bad.contains(&i) {
                format!("{{\"n\":{i},\"amount\":\"lots\"}}\n")
            } else {
                format!("{{\"n\":{i},\"amount\":{i}}}\n")
            }
        })
        .collect::<String>()
        .into_bytes()
}

pub struct Run {
    pub result: Result<ObjectReport, Box<ObjectFailure>>,
    pub dead_records: Vec<(u64, String)>,
}

/// Replays one object into the BigQuery sink built from `config`.
pub fn replay(bucket: &Bucket, key: &str, config: Config) -> Run {
    let rt = crate::moto::rt();
    let sink = rt.block_on(BigQuery::connect(config)).expect("sink");
    let store = LocalStore::new(bucket.root()).unwrap();
    let dl = DeadLetterDir::new(bucket.dead());
    let settings = Settings::default();
    let key = key.to_string();
    let result = rt.block_on(async {
        tokio::task::spawn_blocking({
            let (dl, key) = (dl.clone(), key.clone());
            move || {
                let cx = Context {
                    store: &store,
                    settings: &settings,
                    sink: &sink,
                    dead_letters: &dl,
                    ledger: &NoLedger::default(),
                    force: false,
                    worker: "test",
                    deadline: None,
                    cancel: None,
                };
                process_object(&cx, ObjectRef::new("bucket", key)).map(|p| match p {
                    Processed::Done(r) => r,
                    Processed::Skipped { .. } => unreachable!("no ledger"),
                })
            }
        })
        .await
        .unwrap()
    });
    let dead_records = std::fs::read(
        bucket
            .dead()
            .join("bucket")
            .join(format!("{key}.records.json")),
    )
    .ok()
    .map(|b| {
        let v: Value = serde_json::from_slice(&b).unwrap();
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["ordinal"].as_u64().unwrap(),
                    r["error"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    })
    .unwrap_or_default();
    Run {
        result,
        dead_records,
    }
}

const KEY: &str =
    "2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";

fn object(n: usize, bad: &[usize]) -> Bucket {
    let b = Bucket::new();
    b.put(KEY, &gzip(&records(n, bad)));
    b
}

/// Every row the table holds, checked against what was sent: insertId = `_row_id`.
fn table_rows(fake: &FakeBigQuery) -> Vec<Value> {
    let t = fake.table.lock().unwrap();
    let mut rows: Vec<Value> = t
        .iter()
        .map(|(id, row)| {
            assert_eq!(
                row["_row_id"].as_str(),
                Some(id.as_str()),
                "insertId is the row ID column"
            );
            row.clone()
        })
        .collect();
    rows.sort_by_key(|r| r["n"].as_u64());
    rows
}

fn ns(rows: &[Value]) -> Vec<u64> {
    rows.iter().map(|r| r["n"].as_u64().unwrap()).collect()
}

#[test]
fn every_row_arrives_once_with_its_row_id_as_insert_id_in_batches_of_batch_rows() {
    let fake = FakeBigQuery::start(Box::new(|_, _| Reply::Ok));
    let b = object(1200, &[]);
    let run = replay(&b, KEY, config(&fake));
    let report = run.result.unwrap();
    assert_eq!(report.counts.rows, 1200);
    assert_eq!(ns(&table_rows(&fake)), (0..1200).collect::<Vec<_>>());
    let sizes: Vec<usize> = fake.requests().iter().map(|r| r.rows.len()).collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![200, 500, 500], "batches of --batch-rows");
    assert!(fake.sends().values().all(|&n| n == 1), "nothing sent twice");
    assert!(fake.requests().iter().all(|r| r.already_written == 0));
    // No credentials and an endpoint set: unauthenticated.
    assert!(fake.requests().iter().all(|r| r.authorization.is_none()));
}

#[test]
fn throttling_and_server_errors_are_retried_until_every_row_lands() {
    let fake = FakeBigQuery::start(Box::new(|n, _| match n {
        0 => Reply::Status(503, "backendError", "Service unavailable"),
        1 => Reply::Status(429, "rateLimitExceeded", "Too many requests"),
        2 => Reply::Status(
            403,
            "rateLimitExceeded",
            "Exceeded rate limits: too many api requests per user per method",
        ),
        3 => Reply::Status(403, "quotaExceeded", "Quota exceeded"),
        4 => Reply::Status(500, "internalError", "Internal error"),
        _ => Reply::Ok,
    }));
    let b = object(300, &[]);
    let mut c = config(&fake);
    c.retry.max_attempts = 6;
    let run = replay(&b, KEY, c);
    assert_eq!(run.result.unwrap().counts.rows, 300);
    assert_eq!(table_rows(&fake).len(), 300);
    assert_eq!(fake.requests().len(), 6);
}

#[test]
fn invalid_rows_are_dead_lettered_with_bigquerys_message_and_only_stopped_rows_are_resent() {
    // Like BigQuery without skipInvalidRows: a request with invalid rows writes nothing and
    // marks every other row `stopped`.
    let fake = FakeBigQuery::start(Box::new(|_, rows| {
        let bad: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].1["amount"].is_string())
            .collect();
        if bad.is_empty() {
            return Reply::Ok;
        }
        Reply::RowErrors(
            (0..rows.len())
                .map(|i| {
                    if bad.contains(&i) {
                        (
                            i,
                            "invalid",
                            "Cannot convert value to integer (bad value): lots".to_string(),
                        )
                    } else {
                        (i, "stopped", String::new())
                    }
                })
                .collect(),
        )
    }));
    let bad = [3, 250, 777];
    let b = object(1000, &bad);
    let run = replay(&b, KEY, config(&fake));
    let report = run.result.unwrap();
    assert_eq!(report.counts.rows, 997);
    assert_eq!(report.counts.record_errors, 3);
    let expected: Vec<u64> = (0..1000)
        .filter(|i| !bad.contains(&(*i as usize)))
        .collect();
    assert_eq!(ns(&table_rows(&fake)), expected);
    // The dead letter names each invalid row with BigQuery's reason and message.
    assert_eq!(
        run.dead_records.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![3, 250, 777]
    );
    for (_, e) in &run.dead_records {
        assert!(
            e.contains("BigQuery invalid at `amount`: Cannot convert value to integer"),
            "{e}"
        );
    }
    // Two dirty batches, each answered `invalid`/`stopped` and then resent without its invalid
    // rows; no request carried a row the table already had.
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.already_written == 0));
    let sends = fake.sends();
    for id in fake.table.lock().unwrap().keys() {
        assert_eq!(sends[id], 2, "a stopped row is sent once more");
    }
    let invalid_sends: usize = requests
        .iter()
        .flat_map(|r| r.rows.iter())
        .filter(|(_, row)| row["amount"].is_string())
        .count();
    assert_eq!(
        invalid_sends, 3,
        "invalid rows are sent once and never retried"
    );
}

#[test]
fn a_dropped_connection_resends_the_request_and_insert_ids_keep_the_rows_single() {
    let fake = FakeBigQuery::start(Box::new(|n, _| {
        if n == 0 {
            Reply::WriteThenDrop
        } else {
            Reply::Ok
        }
    }));
    let b = object(400, &[]);
    let run = replay(&b, KEY, config(&fake));
    assert_eq!(run.result.unwrap().counts.rows, 400);
    assert_eq!(ns(&table_rows(&fake)), (0..400).collect::<Vec<_>>());
    // The ambiguous request was sent again whole (its rows had landed: insertId dedups them);
    // nothing else was resent.
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].rows, requests[1].rows);
    assert_eq!(requests[1].already_written, 400);
}

#[test]
fn an_answer_slower_than_the_client_timeout_is_retried() {
    let fake = FakeBigQuery::start(Box::new(|n, _| {
        if n == 0 {
            Reply::Slow(Duration::from_secs(3))
        } else {
            Reply::Ok
        }
    }));
    let b = object(100, &[]);
    let mut c = config(&fake);
    c.timeout = Duration::from_millis(500);
    let run = replay(&b, KEY, c);
    assert_eq!(run.result.unwrap().counts.rows, 100);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(table_rows(&fake).len(), 100);
}

#[test]
fn a_missing_table_fails_the_object_permanently_with_the_apis_message() {
    let fake = FakeBigQuery::start(Box::new(|_, _| {
        Reply::Status(404, "notFound", "Not found: Table test-proj:bi.events")
    }));
    let b = object(10, &[]);
    let run = replay(&b, KEY, config(&fake));
    let failure = run.result.unwrap_err();
    assert_eq!(failure.error.class, Class::Permanent);
    let msg = failure.error.to_string();
    assert!(
        msg.contains("Not found: Table test-proj:bi.events"),
        "{msg}"
    );
    assert!(msg.contains("404"), "{msg}");
    assert_eq!(fake.requests().len(), 1, "permanent errors are not retried");
}

#[test]
fn retries_stop_after_max_attempts_with_a_transient_failure() {
    let fake = FakeBigQuery::start(Box::new(|_, _| {
        Reply::Status(503, "backendError", "Backend error")
    }));
    let b = object(10, &[]);
    let mut c = config(&fake);
    c.retry.max_attempts = 3;
    let run = replay(&b, KEY, c);
    let failure = run.result.unwrap_err();
    assert_eq!(failure.error.class, Class::Transient);
    assert!(
        failure.error.to_string().contains("after 3 attempts"),
        "{}",
        failure.error
    );
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn requests_stay_under_the_byte_cap_and_a_row_too_big_for_any_request_is_a_record_error() {
    let fake = FakeBigQuery::start(Box::new(|_, _| Reply::Ok));
    let b = Bucket::new();
    let pad = "x".repeat(900);
    let mut data = String::new();
    for i in 0..40 {
        data.push_str(&format!("{{\"n\":{i},\"pad\":\"{pad}\"}}\n"));
    }
    let huge = "y".repeat(10_000);
    data.push_str(&format!("{{\"n\":40,\"pad\":\"{huge}\"}}\n"));
    b.put(KEY, &gzip(data.as_bytes()));
    let mut c = config(&fake);
    c.limits.max_request_bytes = 8 * 1024;
    let run = replay(&b, KEY, c);
    let report = run.result.unwrap();
    assert_eq!(report.counts.rows, 40);
    assert!(fake.requests().iter().all(|r| r.bytes <= 8 * 1024));
    assert!(fake.requests().len() >= 5);
    assert_eq!(ns(&table_rows(&fake)), (0..40).collect::<Vec<_>>());
    assert_eq!(run.dead_records.len(), 1);
    assert_eq!(run.dead_records[0].0, 40);
    assert!(
        run.dead_records[0].1.contains("over the 8192 bytes"),
        "{}",
        run.dead_records[0].1
    );
}

/// `--schema-evolution add-columns` in insert-all, where BigQuery's streaming path sees new
/// columns late: rows with the new field `s` are refused with "no such field" for the first
/// three requests even after the patch; they are resent (same insertIds) until accepted, and
/// the column is added once.
#[test]
fn insert_all_resends_rows_with_new_fields_until_the_streaming_path_sees_the_column() {
    use firehose_replay::sink::bigquery::SchemaEvolution;
    let fake = FakeBigQuery::start(Box::new(|n, rows| {
        if n >= 3 {
            return Reply::Ok;
        }
        Reply::RowErrors(
            rows.iter()
                .enumerate()
                .map(|(i, (_, row))| {
                    if row.get("s").is_some() {
                        (i, "invalid", "no such field: s.".to_string())
                    } else {
                        (i, "stopped", String::new())
                    }
                })
                .collect(),
        )
    }));
    let b = Bucket::new();
    let body: String = (0..10)
        .map(|i| match i % 3 {
            0 => format!("{{\"n\":{i},\"s\":\"v{i}\",\"none\":null}}\n"),
            _ => format!("{{\"n\":{i}}}\n"),
        })
        .collect();
    b.put(KEY, &gzip(body.as_bytes()));
    let mut c = config(&fake);
    c.schema_evolution = SchemaEvolution::AddColumns;
    let run = replay(&b, KEY, c);
    let report = run.result.unwrap();
    assert_eq!(report.counts.rows, 10);
    assert!(run.dead_records.is_empty(), "{:?}", run.dead_records);
    let rows = table_rows(&fake);
    assert_eq!(ns(&rows), (0..10).collect::<Vec<_>>());
    assert_eq!(rows[3]["s"], "v3");
    assert!(
        rows[3].get("none").is_none(),
        "a null-only new key is left out of the resend"
    );
    let patches = fake.patches.lock().unwrap().clone();
    assert_eq!(patches.len(), 1, "the column is added once: {patches:?}");
    let fields = patches[0]["schema"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 4);
    assert_eq!(
        fields[3],
        json!({"name": "s", "type": "STRING", "mode": "NULLABLE"})
    );
    assert_eq!(fake.requests().len(), 4);
    // Every request after the first resent the same rows with the same insertIds.
    let ids = |r: &Seen| r.rows.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    let reqs = fake.requests();
    assert_eq!(ids(&reqs[1]), ids(&reqs[3]));
    assert_eq!(ids(&reqs[0]), ids(&reqs[1]));
}

/// Past the bound (the streaming path never sees the column here), the object fails as
/// transient, so it is tried again later; no row is dead-lettered.
#[test]
fn insert_all_gives_up_waiting_for_new_columns_after_the_bound_as_transient() {
    use firehose_replay::sink::bigquery::SchemaEvolution;
    let fake = FakeBigQuery::start(Box::new(|_, rows| {
        Reply::RowErrors(
            (0..rows.len())
                .map(|i| (i, "invalid", "no such field: s.".to_string()))
                .collect(),
        )
    }));
    let b = Bucket::new();
    b.put(KEY, &gzip(b"{\"n\":1,\"s\":\"x\"}\n"));
    let mut c = config(&fake);
    c.schema_evolution = SchemaEvolution::AddColumns;
    c.schema_wait = Duration::from_secs(1);
    let failure = replay(&b, KEY, c).result.unwrap_err();
    assert_eq!(failure.error.class, Class::Transient);
    assert!(
        failure
            .error
            .to_string()
            .contains("after their columns were added"),
        "{}",
        failure.error
    );
    assert!(fake.requests().len() >= 2);
}

/// A field new inside an existing RECORD (what the emulator's patch cannot add): the patch
/// carries the RECORD with its new sub-column, existing columns as they were.
#[test]
fn insert_all_adds_a_field_inside_an_existing_record() {
    use firehose_replay::sink::bigquery::SchemaEvolution;
    let fake = FakeBigQuery::start(Box::new(|n, rows| {
        if n >= 1 {
            return Reply::Ok;
        }
        Reply::RowErrors(
            (0..rows.len())
                .map(|i| (i, "invalid", "no such field: user.plan.".to_string()))
                .collect(),
        )
    }));
    fake.resource.lock().unwrap()["schema"]["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "user", "type": "RECORD", "fields": [
            {"name": "id", "type": "STRING"}]}));
    let b = Bucket::new();
    b.put(
        KEY,
        &gzip(b"{\"n\":1,\"user\":{\"id\":\"u\",\"plan\":{\"tier\":2}}}\n"),
    );
    let mut c = config(&fake);
    c.schema_evolution = SchemaEvolution::AddColumns;
    let run = replay(&b, KEY, c);
    assert_eq!(run.result.unwrap().counts.rows, 1);
    assert!(run.dead_records.is_empty(), "{:?}", run.dead_records);
    let patches = fake.patches.lock().unwrap().clone();
    assert_eq!(patches.len(), 1);
    let user = &patches[0]["schema"]["fields"][3];
    assert_eq!(user["name"], "user");
    assert_eq!(user["fields"][0], json!({"name": "id", "type": "STRING"}));
    assert_eq!(
        user["fields"][1],
        json!({"name": "plan", "type": "RECORD", "mode": "NULLABLE",
               "fields": [{"name": "tier", "type": "INTEGER", "mode": "NULLABLE"}]})
    );
    assert_eq!(table_rows(&fake)[0]["user"]["plan"]["tier"], 2);
}

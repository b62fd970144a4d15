//! Load jobs against a local fake of BigQuery's REST and upload endpoints.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::error::Class;
use crate::sink::bigquery::retry::RetryPolicy;
use crate::sink::bigquery::TableRef;

fn table() -> TableRef {
    "proj.ds.events".parse().unwrap()
}

fn obj(bucket: &str, key: &str, etag: &str) -> ObjectKey {
    ObjectKey {
        bucket: bucket.into(),
        key: key.into(),
        etag: etag.into(),
    }
}

fn objects() -> Vec<ObjectKey> {
    vec![
        obj("archive", "2024/05/01/00/a.gz", "e1"),
        obj("archive", "2024/05/01/00/b.gz", "e2"),
    ]
}

#[test]
fn job_ids_identify_the_set_of_objects_and_the_attempt() {
    let t = table();
    let objs = objects();
    let id = job_id(&t, &objs, 0);
    let hex = id
        .strip_prefix("firehose_replay_")
        .and_then(|r| r.strip_suffix("_0"))
        .unwrap();
    assert_eq!(hex.len(), 32);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));

    // Same set, another order (and a repeat): same job.
    let mut rev = objs.clone();
    rev.reverse();
    rev.push(objs[0].clone());
    assert_eq!(job_id(&t, &rev, 0), id);
    assert_eq!(job_id(&t, &objs, 0), id, "deterministic");

    // Anything else: another job.
    let mut other = vec![id.clone(), job_id(&t, &objs, 1)];
    for change in 0..4 {
        let mut o = objs.clone();
        match change {
            0 => o[1].etag = "e3".into(),
            1 => o[1].key = "2024/05/01/00/c.gz".into(),
            2 => o[0].bucket = "archive2".into(),
            _ => {
                o.pop();
            }
        }
        other.push(job_id(&t, &o, 0));
    }
    let mut t2 = t.clone();
    t2.table = "events2".into();
    other.push(job_id(&t2, &objs, 0));
    // Length prefixes: moving bytes between fields changes the ID.
    other.push(job_id(&t, &[obj("ab", "c", "e")], 0));
    other.push(job_id(&t, &[obj("a", "bc", "e")], 0));
    let n = other.len();
    other.sort();
    other.dedup();
    assert_eq!(other.len(), n, "all distinct: {other:?}");
    assert!(job_id(&t, &objs, 1).ends_with("_1"));
}

#[test]
fn chunk_size_is_rounded_to_the_protocol_granularity() {
    let mk = |chunk_bytes| {
        LoadJobs::new(
            crate::tls::http_client(),
            "http://x/",
            None,
            table(),
            LoadJobOptions {
                chunk_bytes,
                ..LoadJobOptions::default()
            },
        )
        .chunk_bytes()
    };
    assert_eq!(mk(DEFAULT_CHUNK_BYTES), DEFAULT_CHUNK_BYTES);
    assert_eq!(mk(0), CHUNK_GRANULARITY);
    assert_eq!(mk(CHUNK_GRANULARITY + 1), 2 * CHUNK_GRANULARITY);
}

#[test]
fn load_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let jobs = LoadJobs::new(
        crate::tls::http_client(),
        "http://x",
        None,
        table(),
        LoadJobOptions::default(),
    );
    let path = Path::new("x");
    send(&jobs.load(&[], path));
}

// ---- a fake BigQuery: jobs.get and resumable uploads --------------------------------

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
enum Done {
    Rows(u64),
    Error(&'static str, &'static str),
}

#[derive(Debug, Clone)]
struct FakeJob {
    /// GETs answered RUNNING before DONE.
    running_polls: u32,
    done: Done,
}

struct Session {
    job: Value,
    total: u64,
    received: Vec<u8>,
    completed: bool,
}

#[derive(Default)]
struct FakeState {
    jobs: HashMap<String, FakeJob>,
    /// Data of completed uploads, by job ID.
    uploads: HashMap<String, Vec<u8>>,
    /// Job resources of completed uploads, by job ID.
    configs: HashMap<String, Value>,
    sessions: HashMap<String, Session>,
    next_session: u64,
    data_puts: usize,
    seen: Vec<Seen>,
    // The script:
    /// The upload POST is refused with this (status, reason, message).
    post_error: Option<(u16, &'static str, &'static str)>,
    /// Created under the POSTed job ID when `post_error` answers: a concurrent winner.
    race_job: Option<FakeJob>,
    /// Data PUTs (0-based, counted over the server's life) answered 503, keeping nothing.
    fail_data_puts: Vec<usize>,
    /// Data PUTs answered 404 with the session forgotten (expired).
    expire_data_puts: Vec<usize>,
    /// Jobs created by upload fail with this.
    fail_jobs: HashMap<String, (&'static str, &'static str)>,
    /// RUNNING polls of jobs created by upload.
    running_polls: u32,
}

struct Fake {
    base: String,
    state: Arc<Mutex<FakeState>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Answer = (u16, Vec<(&'static str, String)>, String);

fn api_error(code: u16, reason: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message,
        "errors": [{"reason": reason, "message": message, "domain": "global"}]}})
    .to_string()
}

/// The job resource as it stands; only `jobs.get` (`poll`) moves a job towards DONE.
fn job_json(id: &str, job: &mut FakeJob, poll: bool) -> String {
    let mut v = json!({"kind": "bigquery#job",
        "jobReference": {"projectId": "proj", "jobId": id}});
    if job.running_polls > 0 {
        if poll {
            job.running_polls -= 1;
        }
        v["status"] = json!({"state": "RUNNING"});
    } else {
        match job.done {
            Done::Rows(n) => {
                v["status"] = json!({"state": "DONE"});
                v["statistics"] = json!({"load": {"outputRows": n.to_string()}});
            }
            Done::Error(reason, message) => {
                v["status"] = json!({"state": "DONE",
                    "errorResult": {"reason": reason, "message": message},
                    "errors": [{"reason": reason, "message": message}]});
            }
        }
    }
    v.to_string()
}

impl FakeState {
    fn handle(&mut self, base: &str, req: &Seen) -> Answer {
        let path = req.url.split('?').next().unwrap();
        if req.method == "GET" {
            let id = path
                .strip_prefix("/bigquery/v2/projects/proj/jobs/")
                .unwrap();
            return match self.jobs.get_mut(id) {
                Some(job) => (200, vec![], job_json(id, job, true)),
                None => (404, vec![], api_error(404, "notFound", "Not found: Job")),
            };
        }
        if req.method == "POST" {
            assert_eq!(
                req.url,
                "/upload/bigquery/v2/projects/proj/jobs?uploadType=resumable"
            );
            let job: Value = serde_json::from_slice(&req.body).unwrap();
            let id = job["jobReference"]["jobId"].as_str().unwrap().to_string();
            if let Some((code, reason, message)) = self.post_error {
                if let Some(j) = self.race_job.take() {
                    self.jobs.insert(id, j);
                }
                return (code, vec![], api_error(code, reason, message));
            }
            assert_eq!(
                req.header("X-Upload-Content-Type"),
                Some("application/octet-stream")
            );
            let total = req
                .header("X-Upload-Content-Length")
                .unwrap()
                .parse()
                .unwrap();
            let n = self.next_session;
            self.next_session += 1;
            self.sessions.insert(
                n.to_string(),
                Session {
                    job,
                    total,
                    received: Vec::new(),
                    completed: false,
                },
            );
            let location = format!("{base}/upload/session/{n}?upload_id=x{n}");
            return (200, vec![("Location", location)], String::new());
        }
        assert_eq!(req.method, "PUT");
        let n = path.strip_prefix("/upload/session/").unwrap().to_string();
        let range = req.header("Content-Range").unwrap().to_string();
        let spec = range.strip_prefix("bytes ").unwrap();
        let (span, total) = spec.split_once('/').unwrap();
        let total: u64 = total.parse().unwrap();
        if span != "*" {
            let i = self.data_puts;
            self.data_puts += 1;
            if self.fail_data_puts.contains(&i) {
                return (503, vec![], api_error(503, "backendError", "try again"));
            }
            if self.expire_data_puts.contains(&i) {
                self.sessions.remove(&n);
                return (404, vec![], "session expired".into());
            }
        }
        let Some(s) = self.sessions.get_mut(&n) else {
            return (404, vec![], "no such session".into());
        };
        assert_eq!(total, s.total, "Content-Range total");
        if span == "*" {
            assert!(req.body.is_empty());
            // A status query, or the whole of an empty upload.
            if !s.completed && s.total != 0 {
                return match s.received.len() {
                    0 => (308, vec![], String::new()),
                    n => (
                        308,
                        vec![("Range", format!("bytes=0-{}", n - 1))],
                        String::new(),
                    ),
                };
            }
        } else {
            let (a, b) = span.split_once('-').unwrap();
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(
                a,
                s.received.len() as u64,
                "chunk starts where the data ends"
            );
            assert_eq!(b - a + 1, req.body.len() as u64, "Content-Range length");
            s.received.extend_from_slice(&req.body);
            if b + 1 < total {
                return (308, vec![("Range", format!("bytes=0-{b}"))], String::new());
            }
        }
        // Complete: the job is inserted now.
        let id = s.job["jobReference"]["jobId"].as_str().unwrap().to_string();
        if !s.completed {
            s.completed = true;
            if self.jobs.contains_key(&id) {
                return (
                    409,
                    vec![],
                    api_error(409, "duplicate", "Already Exists: Job"),
                );
            }
            let rows = s.received.iter().filter(|&&b| b == b'\n').count() as u64;
            let done = match self.fail_jobs.get(&id) {
                Some((reason, message)) => Done::Error(reason, message),
                None => Done::Rows(rows),
            };
            self.uploads.insert(id.clone(), s.received.clone());
            self.configs.insert(id.clone(), s.job.clone());
            self.jobs.insert(
                id.clone(),
                FakeJob {
                    running_polls: self.running_polls,
                    done,
                },
            );
        }
        let job = self.jobs.get_mut(&id).unwrap();
        (200, vec![], job_json(&id, job, false))
    }
}

impl Fake {
    fn start(state: FakeState) -> Fake {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let state = Arc::new(Mutex::new(state));
        let (srv, st, b) = (server.clone(), state.clone(), base.clone());
        let thread = std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let mut body = Vec::new();
                req.as_reader().read_to_end(&mut body).unwrap();
                let seen = Seen {
                    method: req.method().to_string(),
                    url: req.url().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.as_str().as_str().to_string(), h.value.to_string()))
                        .collect(),
                    body,
                };
                let (status, headers, text) = {
                    let mut st = st.lock().unwrap();
                    st.seen.push(seen.clone());
                    st.handle(&b, &seen)
                };
                let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
                resp.add_header(
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                        .unwrap(),
                );
                for (k, v) in headers {
                    resp.add_header(tiny_http::Header::from_bytes(k, v).unwrap());
                }
                let _ = req.respond(resp);
            }
        });
        Fake {
            base,
            state,
            server,
            thread: Some(thread),
        }
    }

    fn jobs(&self, options: LoadJobOptions) -> LoadJobs {
        LoadJobs::new(
            crate::tls::http_client(),
            &self.base,
            None,
            table(),
            options,
        )
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|s| s.method == method).count()
    }

    fn put_ranges(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter(|s| s.method == "PUT")
            .map(|s| s.header("Content-Range").unwrap().to_string())
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn options() -> LoadJobOptions {
    LoadJobOptions {
        location: None,
        retry: RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            quota_factor: 2,
        },
        poll_interval: Duration::from_millis(1),
        ignore_unknown_values: false,
        chunk_bytes: CHUNK_GRANULARITY,
        schema: Some(json!([{"name": "n", "type": "INTEGER"}])),
    }
}

/// ~700 KiB of NDJSON: three chunks of 256 KiB, the last one short.
fn ndjson_file() -> (tempfile::NamedTempFile, Vec<u8>, u64) {
    let mut data = Vec::new();
    let mut rows = 0u64;
    while data.len() < 700 * 1024 {
        writeln!(
            data,
            r#"{{"i":{rows},"pad":"{}"}}"#,
            "x".repeat(rows as usize % 97)
        )
        .unwrap();
        rows += 1;
    }
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&data).unwrap();
    f.flush().unwrap();
    (f, data, rows)
}

fn expected_ranges(total: usize) -> Vec<String> {
    (0..total)
        .step_by(CHUNK_GRANULARITY)
        .map(|a| {
            let b = (a + CHUNK_GRANULARITY).min(total) - 1;
            format!("bytes {a}-{b}/{total}")
        })
        .collect()
}

#[tokio::test]
async fn uploads_a_multi_chunk_file_byte_identical_and_waits_for_the_job() {
    let fake = Fake::start(FakeState {
        running_polls: 2,
        ..FakeState::default()
    });
    let (file, data, rows) = ndjson_file();
    let jobs = fake.jobs(LoadJobOptions {
        location: Some("EU".into()),
        ignore_unknown_values: true,
        ..options()
    });
    let loaded = jobs.load(&objects(), file.path()).await.unwrap();
    let id = job_id(&table(), &objects(), 0);
    assert_eq!(
        loaded,
        Loaded {
            job_id: id.clone(),
            output_rows: rows,
            attempt: 0
        }
    );

    let st = fake.state.lock().unwrap();
    assert!(
        st.uploads[&id] == data,
        "uploaded bytes differ from the file"
    );
    let job = &st.configs[&id];
    assert_eq!(job["jobReference"]["jobId"], id);
    assert_eq!(job["jobReference"]["projectId"], "proj");
    assert_eq!(job["jobReference"]["location"], "EU");
    let load = &job["configuration"]["load"];
    assert_eq!(
        load["destinationTable"],
        json!({"projectId": "proj", "datasetId": "ds", "tableId": "events"})
    );
    assert_eq!(load["sourceFormat"], "NEWLINE_DELIMITED_JSON");
    assert_eq!(load["writeDisposition"], "WRITE_APPEND");
    assert_eq!(load["createDisposition"], "CREATE_NEVER");
    assert_eq!(load["ignoreUnknownValues"], true);
    assert_eq!(load["maxBadRecords"], 0);
    assert_eq!(
        load["schema"],
        json!({"fields": [{"name": "n", "type": "INTEGER"}]}),
        "the table's schema travels with the job"
    );
    drop(st);

    assert_eq!(fake.put_ranges(), expected_ranges(data.len()));
    assert_eq!(expected_ranges(data.len()).len(), 3);
    let post = fake
        .seen()
        .into_iter()
        .find(|s| s.method == "POST")
        .unwrap();
    assert_eq!(
        post.header("X-Upload-Content-Length"),
        Some(data.len().to_string().as_str())
    );
    assert!(post.header("Authorization").is_none(), "no auth configured");
    let gets: Vec<String> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .map(|s| s.url)
        .collect();
    // Missing, then RUNNING twice, then DONE — all asked in the job's location.
    assert_eq!(gets.len(), 4, "{gets:?}");
    assert!(gets
        .iter()
        .all(|u| *u == format!("/bigquery/v2/projects/proj/jobs/{id}?location=EU")));
}

#[tokio::test]
async fn an_empty_file_is_one_final_put() {
    let fake = Fake::start(FakeState::default());
    let file = tempfile::NamedTempFile::new().unwrap();
    let loaded = fake
        .jobs(options())
        .load(&objects(), file.path())
        .await
        .unwrap();
    assert_eq!(loaded.output_rows, 0);
    assert_eq!(fake.put_ranges(), vec!["bytes */0".to_string()]);
}

#[tokio::test]
async fn a_duplicate_job_is_not_uploaded_again_but_waited_for() {
    // The first GET finds nothing, but by the POST a concurrent worker has created the job.
    let fake = Fake::start(FakeState {
        post_error: Some((409, "duplicate", "Already Exists: Job proj:job")),
        race_job: Some(FakeJob {
            running_polls: 2,
            done: Done::Rows(42),
        }),
        ..FakeState::default()
    });
    let (file, _, _) = ndjson_file();
    let loaded = fake
        .jobs(options())
        .load(&objects(), file.path())
        .await
        .unwrap();
    assert_eq!(loaded.output_rows, 42);
    assert_eq!(loaded.attempt, 0);
    assert_eq!(fake.count("POST"), 1);
    assert_eq!(fake.count("PUT"), 0, "nothing uploaded");
}

#[tokio::test]
async fn a_job_that_already_succeeded_is_the_answer() {
    let id = job_id(&table(), &objects(), 0);
    let fake = Fake::start(FakeState {
        jobs: HashMap::from([(
            id.clone(),
            FakeJob {
                running_polls: 0,
                done: Done::Rows(7),
            },
        )]),
        ..FakeState::default()
    });
    let (file, _, _) = ndjson_file();
    let jobs = fake.jobs(options());
    let loaded = jobs.load(&objects(), file.path()).await.unwrap();
    assert_eq!(
        (loaded.job_id.as_str(), loaded.output_rows),
        (id.as_str(), 7)
    );
    assert_eq!(fake.count("POST"), 0);
    assert_eq!(fake.count("PUT"), 0);
    assert_eq!(
        jobs.state_of(&id).await.unwrap(),
        JobState::Succeeded { output_rows: 7 }
    );
    assert_eq!(
        jobs.state_of(&job_id(&table(), &objects(), 1))
            .await
            .unwrap(),
        JobState::Missing
    );
}

#[tokio::test]
async fn a_transiently_failed_job_is_retried_under_the_next_attempt_id() {
    let first = job_id(&table(), &objects(), 0);
    let second = job_id(&table(), &objects(), 1);
    let fake = Fake::start(FakeState {
        fail_jobs: HashMap::from([(
            first.clone(),
            ("backendError", "Backend error. Job aborted."),
        )]),
        ..FakeState::default()
    });
    let (file, data, rows) = ndjson_file();
    let loaded = fake
        .jobs(options())
        .load(&objects(), file.path())
        .await
        .unwrap();
    assert_eq!(
        loaded,
        Loaded {
            job_id: second.clone(),
            output_rows: rows,
            attempt: 1
        }
    );
    assert!(second.ends_with("_1"));
    let posted: Vec<String> = fake
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| {
            let v: Value = serde_json::from_slice(&s.body).unwrap();
            v["jobReference"]["jobId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(posted, vec![first, second.clone()]);
    assert!(fake.state.lock().unwrap().uploads[&second] == data);
}

#[tokio::test]
async fn an_invalid_job_fails_permanently_with_bigquerys_message() {
    let id = job_id(&table(), &objects(), 0);
    let message = "Error while reading data, error message: JSON parsing error in row starting at position 0: No such field: nope.";
    let fake = Fake::start(FakeState {
        fail_jobs: HashMap::from([(id.clone(), ("invalid", message))]),
        ..FakeState::default()
    });
    let (file, _, _) = ndjson_file();
    let err = fake
        .jobs(options())
        .load(&objects(), file.path())
        .await
        .unwrap_err();
    assert_eq!(err.class, Class::Permanent);
    let text = err.to_string();
    assert!(text.contains(message), "{text}");
    assert!(text.contains(&id), "{text}");
    assert!(text.contains("invalid"), "{text}");
    assert_eq!(fake.count("POST"), 1, "no second attempt");
}

#[tokio::test]
async fn a_failed_chunk_is_resumed_from_what_the_session_holds() {
    let fake = Fake::start(FakeState {
        fail_data_puts: vec![1],
        ..FakeState::default()
    });
    let (file, data, rows) = ndjson_file();
    let loaded = fake
        .jobs(options())
        .load(&objects(), file.path())
        .await
        .unwrap();
    assert_eq!(loaded.output_rows, rows);
    let chunks = expected_ranges(data.len());
    let total = data.len();
    assert_eq!(
        fake.put_ranges(),
        vec![
            chunks[0].clone(),
            chunks[1].clone(), // 503
            format!("bytes */{total}"),
            chunks[1].clone(),
            chunks[2].clone(),
        ]
    );
    assert_eq!(fake.count("POST"), 1, "same session");
    assert!(fake.state.lock().unwrap().uploads[&loaded.job_id] == data);
}

#[tokio::test]
async fn an_expired_session_is_started_over() {
    let fake = Fake::start(FakeState {
        expire_data_puts: vec![1],
        ..FakeState::default()
    });
    let (file, data, _) = ndjson_file();
    let loaded = fake
        .jobs(options())
        .load(&objects(), file.path())
        .await
        .unwrap();
    assert_eq!(fake.count("POST"), 2);
    let chunks = expected_ranges(data.len());
    let mut expected = vec![chunks[0].clone(), chunks[1].clone()];
    expected.extend(chunks.iter().cloned());
    assert_eq!(fake.put_ranges(), expected);
    assert!(fake.state.lock().unwrap().uploads[&loaded.job_id] == data);
}

#[tokio::test]
async fn a_missing_table_is_permanent() {
    let fake = Fake::start(FakeState {
        post_error: Some((404, "notFound", "Not found: Table proj:ds.events")),
        ..FakeState::default()
    });
    let (file, _, _) = ndjson_file();
    let err = fake
        .jobs(options())
        .load(&objects(), file.path())
        .await
        .unwrap_err();
    assert_eq!(err.class, Class::Permanent);
    assert!(
        err.to_string().contains("Not found: Table proj:ds.events"),
        "{err}"
    );
    assert_eq!(fake.count("POST"), 1, "not retried");
    assert_eq!(fake.count("PUT"), 0);
}

#[derive(Clone)]
struct StaticToken;

#[async_trait::async_trait]
impl gcp_bigquery_client::auth::Authenticator for StaticToken {
    async fn access_token(&self) -> Result<String, gcp_bigquery_client::error::BQError> {
        Ok("tok-123".into())
    }
}

#[tokio::test]
async fn requests_carry_the_bearer_token_and_throttling_is_retried() {
    let fake = Fake::start(FakeState {
        post_error: Some((429, "rateLimitExceeded", "slow down")),
        ..FakeState::default()
    });
    let jobs = LoadJobs::new(
        crate::tls::http_client(),
        &fake.base,
        Some(Arc::new(StaticToken)),
        table(),
        options(),
    );
    let (file, _, _) = ndjson_file();
    let id = job_id(&table(), &objects(), 0);
    let err = jobs.submit(&id, file.path()).await.unwrap_err();
    assert_eq!(err.class, Class::Transient);
    assert!(err.to_string().contains("slow down"), "{err}");
    assert_eq!(fake.count("POST"), 5, "max_attempts");
    assert!(!err.to_string().contains("tok-123"));
    // Throttled submissions leave the job missing: `load` reports that, transient.
    let err = jobs.load(&objects(), file.path()).await.unwrap_err();
    assert_eq!(err.class, Class::Transient);
    assert!(fake
        .seen()
        .iter()
        .all(|s| s.header("Authorization") == Some("Bearer tok-123")));
}

/// What a grown batch's job asks BigQuery for: its schema (the seed's REQUIRED row ID too),
/// `ALLOW_FIELD_ADDITION` only when it adds columns, `CREATE_IF_NEEDED` with the layout only
/// for a table it creates — and the same job ID as the batch would get without any of it.
#[test]
fn a_grown_batch_job_carries_its_schema_update_options_and_layout() {
    let base = LoadJobs::new(
        crate::tls::http_client(),
        "http://127.0.0.1:1",
        None,
        table(),
        LoadJobOptions::default(),
    );
    let plain = base.job_resource("j")["configuration"]["load"].clone();
    assert_eq!(plain["createDisposition"], "CREATE_NEVER");
    assert!(plain.get("schemaUpdateOptions").is_none());

    let fields = vec![
        json!({"name": "_row_id", "type": "STRING", "mode": "REQUIRED"}),
        json!({"name": "note", "type": "STRING", "mode": "NULLABLE"}),
    ];
    let adding = base.for_batch(fields.clone(), true, true, None);
    let load = adding.job_resource("j")["configuration"]["load"].clone();
    assert_eq!(load["schemaUpdateOptions"], json!(["ALLOW_FIELD_ADDITION"]));
    assert_eq!(load["schema"]["fields"], json!(fields));
    assert_eq!(load["createDisposition"], "CREATE_NEVER");
    assert_eq!(load["ignoreUnknownValues"], true);
    assert!(load.get("timePartitioning").is_none());

    let layout = super::schema::CreateLayout {
        partition_by: Some("event_time".into()),
        cluster_by: vec!["event_type".into()],
    };
    let creating = base.for_batch(fields.clone(), false, true, Some(layout));
    let load = creating.job_resource("j")["configuration"]["load"].clone();
    assert_eq!(load["createDisposition"], "CREATE_IF_NEEDED");
    assert_eq!(
        load["timePartitioning"],
        json!({"type": "DAY", "field": "event_time"})
    );
    assert_eq!(load["clustering"], json!({"fields": ["event_type"]}));
    assert_eq!(load["schema"]["fields"][0]["mode"], "REQUIRED");
    assert!(load.get("schemaUpdateOptions").is_none());
    assert_eq!(creating.table(), base.table());
}

//! The local-bigquery emulator (PyPI `local-bigquery` 0.4.0, installed into .venv-bq by
//! scripts/test.sh) on free ports, for one test: started on demand, stopped when dropped. Real
//! BigQuery REST shapes (insertAll with insertId dedup and per-row errors, tabledata.list) and the
//! Storage Write gRPC API, offline. It runs through `tests/bigquery_emulator.py`, which makes it
//! start without downloading DuckDB extensions.
//!
//! The helpers block (each runs its request on a runtime of its own): call them from synchronous
//! tests, outside `block_on`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

pub struct BqEmulator {
    child: Child,
    /// REST root, e.g. `http://127.0.0.1:P` (the API is under `/bigquery/v2`).
    pub endpoint: String,
    /// Storage Write gRPC (plaintext h2c), e.g. `http://127.0.0.1:Q`.
    pub grpc_endpoint: String,
    pub project: String,
    /// Holds the data dir and the emulator's stderr log.
    tmp: tempfile::TempDir,
}

fn free_ports() -> (u16, u16) {
    // Both bound at once, so they differ.
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn stderr_of(tmp: &Path) -> String {
    std::fs::read_to_string(tmp.join("stderr.log")).unwrap_or_default()
}

/// One request; `Err` only when nothing answered (connection refused, reset, timeout).
fn request(
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<(reqwest::StatusCode, Value), reqwest::Error> {
    crate::moto::rt().block_on(async {
        firehose_replay::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut req = client.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    })
}

impl BqEmulator {
    pub fn start(project: &str) -> BqEmulator {
        BqEmulator::start_with(project, &[])
    }

    /// Started with these environment variables for `tests/bigquery_emulator.py` (its knobs,
    /// e.g. `BQ_EMULATOR_STALE_STREAM_SCHEMA_SECS`).
    pub fn start_with(project: &str, env: &[(&str, &str)]) -> BqEmulator {
        let python = std::env::var_os("BQ_EMULATOR_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-bq/bin/python"));
        assert!(
            python.exists(),
            "{} not found: run scripts/test.sh (it installs local-bigquery into .venv-bq)",
            python.display()
        );
        let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bigquery_emulator.py");
        let mut last_stderr = String::new();
        // A port taken by someone else between our probe and the emulator's bind makes it exit:
        // retry with other ports.
        for _ in 0..5 {
            let tmp = tempfile::tempdir().unwrap();
            let (port, grpc_port) = free_ports();
            // stderr to a file, not a pipe: uvicorn logs every request there, and an unread pipe
            // would fill up and block the emulator.
            let log = std::fs::File::create(tmp.path().join("stderr.log")).unwrap();
            let child = Command::new(&python)
                // protobuf's C extension segfaulted in the emulator's Storage Write handler
                // (json_format.MessageToDict) under repeated client kills; the pure-Python
                // implementation does not.
                .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
                .envs(env.iter().copied())
                .arg(&launcher)
                .args([&port.to_string(), &grpc_port.to_string(), project])
                .arg(tmp.path().join("data"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start bigquery_emulator.py");
            let mut emu = BqEmulator {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                grpc_endpoint: format!("http://127.0.0.1:{grpc_port}"),
                project: project.to_string(),
                tmp,
            };
            // Ready = a real API call succeeds: the port opens ~1 s before DuckDB is set up (the
            // first request does that), and a broken setup only shows in an answer.
            let probe = format!("{}/bigquery/v2/projects/{project}/datasets", emu.endpoint);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if emu.child.try_wait().unwrap().is_some() {
                    last_stderr = stderr_of(emu.tmp.path());
                    break; // dropped below: retry
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    match request(reqwest::Method::GET, &probe, None) {
                        Ok((status, _)) if status.is_success() => return emu,
                        Ok((status, body)) => panic!(
                            "BigQuery emulator answered {status} to {probe}: {body}\nstderr:\n{}",
                            stderr_of(emu.tmp.path())
                        ),
                        Err(_) => {} // accepted, then dropped or timed out: keep polling
                    }
                }
                if Instant::now() > deadline {
                    panic!(
                        "BigQuery emulator not ready on {} after 60 s\nstderr:\n{}",
                        emu.endpoint,
                        stderr_of(emu.tmp.path())
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("BigQuery emulator did not start\nstderr:\n{last_stderr}");
    }

    /// `{endpoint}/bigquery/v2/projects/{project}/{path}`
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/bigquery/v2/projects/{}/{path}",
            self.endpoint, self.project
        )
    }

    /// A request that must succeed; returns the JSON answer.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let url = self.url(path);
        match request(method.clone(), &url, body) {
            Ok((status, value)) if status.is_success() => value,
            Ok((status, value)) => panic!("{method} {url}: {status} {value}"),
            Err(e) => panic!("{method} {url}: {e}"),
        }
    }

    pub fn create_dataset(&self, dataset: &str) {
        self.call(
            reqwest::Method::POST,
            "datasets",
            Some(&json!({
                "datasetReference": { "projectId": self.project, "datasetId": dataset }
            })),
        );
    }

    /// `schema_fields`: BigQuery's `schema.fields`, e.g.
    /// `[{"name": "id", "type": "STRING", "mode": "REQUIRED"}]`.
    pub fn create_table(&self, dataset: &str, table: &str, schema_fields: Value) {
        self.call(
            reqwest::Method::POST,
            &format!("datasets/{dataset}/tables"),
            Some(&json!({
                "tableReference": {
                    "projectId": self.project, "datasetId": dataset, "tableId": table
                },
                "schema": { "fields": schema_fields }
            })),
        );
    }

    /// The tables of a dataset (tables.list), as BigQuery lists them.
    pub fn tables(&self, dataset: &str) -> Vec<Value> {
        let answer = self.call(
            reqwest::Method::GET,
            &format!("datasets/{dataset}/tables"),
            None,
        );
        answer["tables"].as_array().cloned().unwrap_or_default()
    }

    /// One table's resource (tables.get).
    pub fn table(&self, dataset: &str, table: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("datasets/{dataset}/tables/{table}"),
            None,
        )
    }

    /// Posts a tabledata.insertAll request body as is; returns the answer (`insertErrors` on
    /// per-row failures, which still come with 200).
    pub fn insert_all(&self, dataset: &str, table: &str, request: &Value) -> Value {
        self.call(
            reqwest::Method::POST,
            &format!("datasets/{dataset}/tables/{table}/insertAll"),
            Some(request),
        )
    }

    /// Every row of the table (tabledata.list, all pages) as an object keyed by field name.
    /// Values are as BigQuery's JSON gives them: strings (`"1"` for INTEGER, epoch seconds such
    /// as `"1795600800.0"` for TIMESTAMP) or null; RECORDs as objects, REPEATED as arrays.
    pub fn rows(&self, dataset: &str, table: &str) -> Vec<Value> {
        self.rows_in_pages(dataset, table, None)
    }

    fn rows_in_pages(&self, dataset: &str, table: &str, page_size: Option<u32>) -> Vec<Value> {
        let path = format!("datasets/{dataset}/tables/{table}");
        let meta = self.call(reqwest::Method::GET, &path, None);
        let fields = meta["schema"]["fields"].clone();
        let mut rows = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = Vec::new();
            if let Some(n) = page_size {
                query.push(format!("maxResults={n}"));
            }
            if let Some(t) = &page_token {
                query.push(format!("pageToken={t}"));
            }
            let page = self.call(
                reqwest::Method::GET,
                &format!("{path}/data?{}", query.join("&")),
                None,
            );
            for row in page["rows"].as_array().into_iter().flatten() {
                rows.push(record(&fields, row));
            }
            match page["pageToken"].as_str() {
                Some(t) if !t.is_empty() => page_token = Some(t.to_string()),
                _ => return rows,
            }
        }
    }
}

/// `{"f": [{"v": ..}, ..]}` → `{name: value, ..}` by the schema's `fields`.
fn record(fields: &Value, row: &Value) -> Value {
    let cells = row["f"].as_array().cloned().unwrap_or_default();
    let mut out = Map::new();
    for (field, cell) in fields.as_array().into_iter().flatten().zip(&cells) {
        let name = field["name"].as_str().unwrap().to_string();
        out.insert(name, value(field, &cell["v"]));
    }
    Value::Object(out)
}

fn value(field: &Value, v: &Value) -> Value {
    if field["mode"] == "REPEATED" {
        let items = v.as_array().into_iter().flatten();
        return Value::Array(items.map(|item| scalar(field, &item["v"])).collect());
    }
    scalar(field, v)
}

fn scalar(field: &Value, v: &Value) -> Value {
    match field["type"].as_str() {
        Some("RECORD" | "STRUCT") if !v.is_null() => record(&field["fields"], v),
        _ => v.clone(),
    }
}

impl Drop for BqEmulator {
    fn drop(&mut self) {
        // Politely first (uvicorn shuts down in ~1 s), then SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SCHEMA: &str = r#"[
    {"name": "id", "type": "STRING", "mode": "REQUIRED"},
    {"name": "n", "type": "INTEGER"},
    {"name": "ts", "type": "TIMESTAMP"}
]"#;

#[test]
fn emulator_accepts_insert_all_with_insert_ids_and_lists_rows_back() {
    let started = Instant::now();
    let bq = BqEmulator::start("test-project");
    eprintln!("emulator ready in {:?}", started.elapsed());
    let grpc = bq.grpc_endpoint.trim_start_matches("http://");
    assert!(TcpStream::connect(grpc).is_ok(), "gRPC port {grpc} closed");

    bq.create_dataset("events");
    bq.create_table("events", "clicks", serde_json::from_str(SCHEMA).unwrap());
    let request = json!({"rows": [
        {"insertId": "row-1", "json": {"id": "a", "n": 1, "ts": "2026-11-25T10:00:00Z"}},
        {"insertId": "row-2", "json": {"id": "b", "n": 2}},
    ]});
    for _ in 0..2 {
        // The same request twice, as a retry would: the insertIds make the second a no-op.
        let t = Instant::now();
        let answer = bq.insert_all("events", "clicks", &request);
        eprintln!("insertAll in {:?}", t.elapsed());
        assert_eq!(answer.get("insertErrors"), None, "{answer}");
    }

    let mut rows = bq.rows("events", "clicks");
    rows.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
    assert_eq!(
        rows,
        vec![
            json!({"id": "a", "n": "1", "ts": "1795600800.0"}),
            json!({"id": "b", "n": "2", "ts": null}),
        ]
    );
    // Paging gives the same rows.
    let mut paged = bq.rows_in_pages("events", "clicks", Some(1));
    paged.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
    assert_eq!(paged, rows);
}

/// What the BigQuery sink relies on: bad rows are reported per row as `invalid` (with the field
/// in `location`), and the good rows of the same request are not written but reported `stopped`
/// (retryable), as BigQuery does without `skipInvalidRows`.
#[test]
fn emulator_reports_invalid_rows_and_stops_the_rest_of_the_request() {
    let bq = BqEmulator::start("test-project");
    bq.create_dataset("events");
    bq.create_table("events", "clicks", serde_json::from_str(SCHEMA).unwrap());

    let answer = bq.insert_all(
        "events",
        "clicks",
        &json!({"rows": [
            {"insertId": "ok", "json": {"id": "ok", "n": 1}},
            {"insertId": "unknown", "json": {"id": "unknown", "bogus": 1}},
            {"insertId": "wrong-type", "json": {"id": "wrong-type", "n": "many"}},
            {"insertId": "missing", "json": {"n": 4}},
        ]}),
    );
    let stopped = json!([{"reason": "stopped", "location": "", "message": ""}]);
    assert_eq!(
        answer["insertErrors"],
        json!([
            {"index": 0, "errors": stopped},
            {"index": 1, "errors": [{"reason": "invalid", "location": "bogus",
                "message": "no such field: bogus.", "debugInfo": ""}]},
            {"index": 2, "errors": [{"reason": "invalid", "location": "n",
                "message": "Cannot convert value to integer (bad value): many", "debugInfo": ""}]},
            {"index": 3, "errors": [{"reason": "invalid", "location": "id",
                "message": "Missing required field: id.", "debugInfo": ""}]},
        ]),
        "{answer}"
    );
    assert_eq!(bq.rows("events", "clicks"), Vec::<Value>::new());

    // Retrying only the stopped row writes it.
    let answer = bq.insert_all(
        "events",
        "clicks",
        &json!({"rows": [{"insertId": "ok", "json": {"id": "ok", "n": 1}}]}),
    );
    assert_eq!(answer.get("insertErrors"), None, "{answer}");
    assert_eq!(
        bq.rows("events", "clicks"),
        vec![json!({"id": "ok", "n": "1", "ts": null})]
    );
}

//! `firehose-replay invoke --event FILE`: a Lambda event through the Lambda's handler, locally.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::{json, Value};

use crate::support::{bin, gzip, ndjson, read_ndjson};

const BUCKET: &str = "firehose-archive";
const K1: &str =
    "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";
const K2: &str = "events/dt=2026-11-25/h=13/orders a+bü.gz";

pub(crate) fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lambda")
        .join(name)
}

/// `work/buckets/firehose-archive/` with the fixtures' two objects (3 and 5 records).
pub(crate) fn buckets(work: &Path) -> PathBuf {
    let root = work.join("buckets");
    for (key, bytes) in [(K1, gzip(&ndjson(3))), (K2, ndjson(5))] {
        let p = root.join(BUCKET).join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    root
}

fn invoke(work: &Path, event: &str, stdin: Option<&[u8]>) -> Output {
    let mut c = bin();
    c.current_dir(work)
        .arg("invoke")
        .args(["--event", event, "--buckets"])
        .arg(work.join("buckets"))
        .env(
            "FIREHOSE_REPLAY_SINK",
            format!("ndjson:{}", work.join("out").display()),
        )
        .env(
            "FIREHOSE_REPLAY_DEAD_LETTER",
            format!("dir:{}", work.join("dead").display()),
        )
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn rows(work: &Path, key: &str) -> Vec<Value> {
    read_ndjson(&work.join("out").join(BUCKET).join(format!("{key}.ndjson")))
}

pub(crate) fn response(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout is the response alone: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn invoke_runs_an_s3_notification_through_the_lambda_handler() {
    let work = tempfile::tempdir().unwrap();
    buckets(work.path());
    let event = fixture_path("s3-notification.json");
    let out = invoke(work.path(), event.to_str().unwrap(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        response(&out),
        json!({"source": "s3", "objects": 2, "outcomes": ["done", "done"]})
    );
    assert_eq!(rows(work.path(), K1).len(), 3);
    assert_eq!(rows(work.path(), K2).len(), 5);
    assert_eq!(rows(work.path(), K2)[4]["n"], 4);
    // The per-object log is on stderr, with the request ID.
    assert!(stderr.contains("local-invoke"), "{stderr}");
    assert!(
        stderr.contains("outcome=\"done\"") || stderr.contains("outcome=done"),
        "{stderr}"
    );
    assert!(stderr.matches("object").count() >= 2, "{stderr}");

    // The same event again: the ledger (in the output directory, as for `replay`) has both.
    let again = invoke(work.path(), event.to_str().unwrap(), None);
    assert_eq!(
        response(&again)["outcomes"],
        json!(["already_done", "already_done"])
    );
}

#[test]
fn invoke_reads_the_event_from_stdin_and_answers_sqs_and_batch_events_as_lambda_would() {
    let work = tempfile::tempdir().unwrap();
    buckets(work.path());
    let event = std::fs::read(fixture_path("sqs-eventbridge-s3.json")).unwrap();
    let out = invoke(work.path(), "-", Some(&event));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(response(&out), json!({"batchItemFailures": []}));
    assert_eq!(rows(work.path(), K1).len(), 3);
    assert_eq!(rows(work.path(), K2).len(), 5);

    let event = fixture_path("s3-batch-1.0-region-arn.json");
    let out = invoke(work.path(), event.to_str().unwrap(), None);
    let resp = response(&out);
    let codes: Vec<&str> = resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resultCode"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "Succeeded",
            "Succeeded",
            "PermanentFailure",
            "PermanentFailure"
        ],
        "{resp}"
    );
}

#[test]
fn invoke_prints_lambdas_error_response_and_exits_1_when_the_invocation_fails() {
    let work = tempfile::tempdir().unwrap();
    buckets(work.path());
    let event = fixture_path("dynamodb-stream.json");
    let out = invoke(work.path(), event.to_str().unwrap(), None);
    assert_eq!(out.status.code(), Some(1));
    let resp = response(&out);
    assert_eq!(resp["errorType"], "UnrecognisedEvent", "{resp}");
    assert!(resp["errorMessage"].as_str().unwrap().contains("Records"));

    // A bucket without a local directory: its object fails permanently (dead-lettered).
    let event = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "elsewhere"}, "object": {"key": "a.gz"}}}]});
    let out = invoke(work.path(), "-", Some(event.to_string().as_bytes()));
    assert_eq!(
        response(&out),
        json!({"source": "s3", "objects": 1, "outcomes": ["dead_lettered"]})
    );

    // An unreadable or non-JSON event is a usage error.
    let out = invoke(work.path(), "no-such-event.json", None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let out = invoke(work.path(), "-", Some(b"not json"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}

#[test]
fn invoke_takes_its_deadline_from_timeout() {
    let work = tempfile::tempdir().unwrap();
    buckets(work.path());
    let event = fixture_path("s3-notification.json");
    // 1 s of time and a 10 s margin: nothing may start, and the invocation fails for retry.
    let out = bin()
        .current_dir(work.path())
        .args(["invoke", "--timeout", "1", "--event"])
        .arg(&event)
        .arg("--buckets")
        .arg(work.path().join("buckets"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let resp = response(&out);
    assert_eq!(resp["errorType"], "ObjectsToRetry", "{resp}");
    assert!(resp["errorMessage"]
        .as_str()
        .unwrap()
        .contains("not started"));
    assert!(rows(work.path(), K1).is_empty());
}

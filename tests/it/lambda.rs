//! The Lambda handler as a plain async function, fed the event shapes AWS documents
//! (tests/fixtures/lambda/), over objects in a local bucket directory and the NDJSON sink.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firehose_replay::dead_letter::DeadLetterDir;
use firehose_replay::error::{Cause, Class, Error, Stage};
use firehose_replay::ledger::file::FileLedger;
use firehose_replay::ledger::{Ledger, NoLedger};
use firehose_replay::object::ObjectRef;
use firehose_replay::pipeline::Settings;
use firehose_replay::retry::ObjectRetry;
use firehose_replay::runner::Shared;
use firehose_replay::sink::ndjson::NdjsonDir;
use firehose_replay::source::local::LocalStore;
use firehose_replay::source::{ObjectStore, Opened};
use firehose_replay::trigger::handler::{Handler, HandlerError, Stores};
use firehose_replay::trigger::{Invocation, TriggerError};
use serde_json::{json, Value};

use crate::support::{gzip, ndjson, read_ndjson};

const BUCKET: &str = "firehose-archive";
/// The two objects the fixtures name, decoded.
const K1: &str =
    "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";
const K2: &str = "events/dt=2026-11-25/h=13/orders a+bü.gz";

pub fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lambda")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Local buckets below a temporary directory: `root/<bucket>/<key>`.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let w = World {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(w.buckets().join(BUCKET)).unwrap();
        w
    }
    fn buckets(&self) -> PathBuf {
        self.tmp.path().join("buckets")
    }
    fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }
    fn dead(&self) -> PathBuf {
        self.tmp.path().join("dead")
    }
    fn put(&self, key: &str, bytes: &[u8]) {
        let p = self.buckets().join(BUCKET).join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    /// Rows the sink holds for `key`.
    fn rows(&self, key: &str) -> Vec<Value> {
        read_ndjson(&self.out().join(BUCKET).join(format!("{key}.ndjson")))
    }
    fn dead_letter(&self, key: &str) -> Option<Value> {
        std::fs::read(self.dead().join(BUCKET).join(format!("{key}.object.json")))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }
    fn handler(&self, stores: Arc<dyn Stores>, ledger: Arc<dyn Ledger>) -> Handler {
        Handler {
            stores,
            shared: Shared {
                settings: Arc::new(Settings::default()),
                sink: Arc::new(NdjsonDir::new(self.out())),
                dead_letters: Arc::new(DeadLetterDir::new(self.dead())),
                ledger,
                force: false,
                worker: Arc::from("test"),
                retry: ObjectRetry {
                    max_attempts: 1,
                    ..ObjectRetry::default()
                },
                object_timeout: None,
            },
            concurrency: 4,
            margin: Duration::from_millis(200),
            metrics: None,
            map_bucket: None,
        }
    }
    /// A handler over the local buckets, no ledger.
    fn local(&self) -> Handler {
        self.handler(self.local_stores(), Arc::new(NoLedger::default()))
    }
    fn local_stores(&self) -> Arc<dyn Stores> {
        let root = self.buckets();
        Arc::new(move |bucket: &str| -> Arc<dyn ObjectStore> {
            Arc::new(LocalStore::new(root.join(bucket)).expect("bucket directory"))
        })
    }
    /// The fixtures' two objects: 3 and 5 records.
    fn put_fixture_objects(&self) {
        self.put(K1, &gzip(&ndjson(3)));
        self.put(K2, &ndjson(5));
    }
}

fn rt() -> tokio::runtime::Runtime {
    crate::moto::rt()
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// A store that fails `open` transiently for some keys (throttling, as S3 answers `SlowDown`)
/// and, optionally, feeds the others slowly.
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    fail: HashSet<String>,
    slow: Option<Duration>,
}

struct SlowReader {
    inner: Box<dyn Read + Send>,
    pause: Duration,
}

impl Read for SlowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(self.pause);
        let n = buf.len().min(64);
        self.inner.read(&mut buf[..n])
    }
}

impl ObjectStore for Faulty {
    fn open(&self, object: &mut ObjectRef) -> Result<Opened, Error> {
        if self.fail.contains(&object.key) {
            return Err(Error::new(
                Stage::Fetch,
                Class::Transient,
                Cause::Remote(
                    "GetObject: SlowDown: Please reduce your request rate. (HTTP 503)".into(),
                ),
            ));
        }
        let mut opened = self.inner.open(object)?;
        if let Some(pause) = self.slow {
            opened.reader = Box::new(SlowReader {
                inner: opened.reader,
                pause,
            });
        }
        Ok(opened)
    }
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<ObjectRef>, Error>> {
        self.inner.list(prefix)
    }
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
}

fn faulty(w: &World, fail: &[&str], slow: Option<Duration>) -> Arc<dyn Stores> {
    let inner: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(w.buckets().join(BUCKET)).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(Faulty {
        inner,
        fail: fail.iter().map(|s| s.to_string()).collect(),
        slow,
    });
    Arc::new(move |_: &str| store.clone())
}

fn keys(objects: &[ObjectRef]) -> Vec<(&str, &str)> {
    objects
        .iter()
        .map(|o| (o.bucket.as_str(), o.key.as_str()))
        .collect()
}

// --- recognising the shapes -------------------------------------------------------------------

#[test]
fn every_documented_shape_is_recognised_and_keys_are_url_decoded() {
    let both = vec![(BUCKET, K1), (BUCKET, K2)];
    match Invocation::parse(&fixture("s3-notification.json")).unwrap() {
        Invocation::Objects { source, objects } => {
            assert_eq!(source, "s3");
            assert_eq!(keys(&objects), both);
        }
        other => panic!("{other:?}"),
    }
    match Invocation::parse(&fixture("sns-s3.json")).unwrap() {
        Invocation::Objects { source, objects } => {
            assert_eq!(source, "sns");
            assert_eq!(keys(&objects), both);
        }
        other => panic!("{other:?}"),
    }
    match Invocation::parse(&fixture("eventbridge-object-created.json")).unwrap() {
        Invocation::Objects { source, objects } => {
            assert_eq!(source, "eventbridge");
            assert_eq!(keys(&objects), vec![(BUCKET, K2)]);
            assert_eq!(objects[0].size, Some(100));
        }
        other => panic!("{other:?}"),
    }
    match Invocation::parse(&fixture("sqs-s3.json")).unwrap() {
        Invocation::Sqs { messages } => {
            assert_eq!(messages.len(), 3);
            assert_eq!(messages[0].id, "059f36b4-87a3-44ab-83d2-661975830a7d");
            assert_eq!(
                keys(messages[0].objects.as_ref().unwrap()),
                vec![(BUCKET, K1)]
            );
            // The s3:TestEvent S3 sends when the notification is set up names nothing.
            assert!(messages[1].objects.as_ref().unwrap().is_empty());
            assert_eq!(
                keys(messages[2].objects.as_ref().unwrap()),
                vec![(BUCKET, K2)]
            );
        }
        other => panic!("{other:?}"),
    }
    match Invocation::parse(&fixture("sqs-sns-s3.json")).unwrap() {
        Invocation::Sqs { messages } => {
            assert_eq!(keys(messages[0].objects.as_ref().unwrap()), both);
        }
        other => panic!("{other:?}"),
    }
    for (file, schema) in [("s3-batch-1.0.json", "1.0"), ("s3-batch-2.0.json", "2.0")] {
        match Invocation::parse(&fixture(file)).unwrap() {
            Invocation::Batch {
                schema: s, tasks, ..
            } => {
                assert_eq!(s, schema);
                let objects: Vec<ObjectRef> =
                    tasks.iter().map(|t| t.object.clone().unwrap()).collect();
                assert_eq!(keys(&objects), both, "{file}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        Invocation::parse(&fixture("s3-test-event.json")).unwrap(),
        Invocation::Test
    );
}

#[test]
fn non_created_s3_events_are_ignored() {
    match Invocation::parse(&fixture("s3-notification-with-delete.json")).unwrap() {
        Invocation::Objects { objects, .. } => assert_eq!(keys(&objects), vec![(BUCKET, K1)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_payloads_are_a_clear_error() {
    let err = Invocation::parse(&fixture("dynamodb-stream.json")).unwrap_err();
    assert!(matches!(err, TriggerError::Unknown(_)), "{err}");
    assert!(err.to_string().contains("Records"), "{err}");
    let err = Invocation::parse(&json!({"hello": "world"})).unwrap_err();
    assert!(err.to_string().contains("hello"), "{err}");
    let err = Invocation::parse(&json!({
        "version": "0", "detail-type": "Object Deleted", "source": "aws.s3", "detail": {}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("Object Deleted"), "{err}");
}

#[test]
fn eventbridge_events_inside_sqs_messages_are_recognised() {
    match Invocation::parse(&fixture("sqs-eventbridge-s3.json")).unwrap() {
        Invocation::Sqs { messages } => {
            assert_eq!(messages.len(), 3);
            assert_eq!(
                keys(messages[0].objects.as_ref().unwrap()),
                vec![(BUCKET, K1)]
            );
            assert_eq!(
                keys(messages[1].objects.as_ref().unwrap()),
                vec![(BUCKET, K2)]
            );
            // `Object Deleted` from S3 is skipped like a delete in an S3 notification.
            assert!(messages[2].objects.as_ref().unwrap().is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn batch_tasks_take_the_bucket_after_the_last_colon_and_unreadable_tasks_fail_alone() {
    match Invocation::parse(&fixture("s3-batch-1.0-region-arn.json")).unwrap() {
        Invocation::Batch { tasks, .. } => {
            assert_eq!(tasks.len(), 4);
            let objects: Vec<ObjectRef> = tasks[..2]
                .iter()
                .map(|t| t.object.clone().unwrap())
                .collect();
            assert_eq!(keys(&objects), vec![(BUCKET, K1), (BUCKET, K2)]);
            let e = tasks[2].object.as_ref().unwrap_err();
            assert!(e.to_string().contains("no bucket"), "{e}");
            let e = tasks[3].object.as_ref().unwrap_err();
            assert!(e.to_string().contains("s3Key"), "{e}");
            assert_eq!(tasks[3].id, "dGFza2lkZ29lc2hlcmUN");
        }
        other => panic!("{other:?}"),
    }
    for (arn, bucket) in [
        ("arn:aws:s3:::firehose-archive", Some("firehose-archive")),
        ("arn:aws-cn:s3:::firehose-archive", Some("firehose-archive")),
        (
            "arn:aws:s3:eu-west-1:123456789012:firehose-archive",
            Some("firehose-archive"),
        ),
        ("arn:aws:s3:::", None),
        ("firehose-archive", None),
    ] {
        let event = json!({
            "invocationSchemaVersion": "1.0", "invocationId": "i",
            "tasks": [{"taskId": "t", "s3Key": "k", "s3BucketArn": arn}]
        });
        let Invocation::Batch { tasks, .. } = Invocation::parse(&event).unwrap() else {
            panic!("{arn}")
        };
        assert_eq!(
            tasks[0].object.as_ref().ok().map(|o| o.bucket.as_str()),
            bucket,
            "{arn}"
        );
    }
}

#[test]
fn an_sns_message_that_is_no_s3_event_is_unrecognised_not_malformed() {
    match Invocation::parse(&fixture("sqs-sns-not-s3.json")).unwrap() {
        Invocation::Sqs { messages } => {
            assert_eq!(
                keys(messages[0].objects.as_ref().unwrap()),
                vec![(BUCKET, K1), (BUCKET, K2)]
            );
            let e = messages[1].objects.as_ref().unwrap_err();
            assert!(matches!(e, TriggerError::Unknown(_)), "{e}");
            assert!(e.to_string().contains("firehose-archive-created"), "{e}");
            assert!(e.to_string().contains("not an S3 event"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

// --- handling ---------------------------------------------------------------------------------

#[test]
fn direct_sns_and_eventbridge_invocations_write_every_object() {
    for file in [
        "s3-notification.json",
        "sns-s3.json",
        "eventbridge-object-created.json",
    ] {
        let w = World::new();
        w.put_fixture_objects();
        let resp = rt()
            .block_on(w.local().handle(&fixture(file), later(), "req-1"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            resp["outcomes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o == "done"),
            "{file}: {resp}"
        );
        assert_eq!(w.rows(K2).len(), 5, "{file}: the URL-decoded key was read");
        let k1_rows = if file.starts_with("eventbridge") {
            0
        } else {
            3
        };
        assert_eq!(w.rows(K1).len(), k1_rows, "{file}");
    }
}

#[test]
fn s3_test_event_is_acknowledged_and_does_nothing() {
    let w = World::new();
    let resp = rt()
        .block_on(
            w.local()
                .handle(&fixture("s3-test-event.json"), later(), "r"),
        )
        .unwrap();
    assert_eq!(resp, json!({"ignored": "s3:TestEvent"}));
    assert!(!w.out().exists());
}

#[test]
fn unknown_payload_is_an_error_response() {
    let w = World::new();
    let err = rt()
        .block_on(
            w.local()
                .handle(&fixture("dynamodb-stream.json"), later(), "r"),
        )
        .unwrap_err();
    assert!(matches!(err, HandlerError::Trigger(_)), "{err}");
}

#[test]
fn sqs_answers_with_no_batch_item_failures_when_all_succeed() {
    let w = World::new();
    w.put_fixture_objects();
    let resp = rt()
        .block_on(w.local().handle(&fixture("sqs-s3.json"), later(), "r"))
        .unwrap();
    assert_eq!(resp, json!({"batchItemFailures": []}));
    assert_eq!(w.rows(K1).len(), 3);
    assert_eq!(w.rows(K2).len(), 5);
    let resp = rt()
        .block_on(w.local().handle(&fixture("sqs-sns-s3.json"), later(), "r"))
        .unwrap();
    assert_eq!(resp, json!({"batchItemFailures": []}));
}

/// Ten SQS messages, one object each, written like Firehose's hourly objects.
fn ten_messages(w: &World) -> (Value, Vec<String>, Vec<String>) {
    let mut records = Vec::new();
    let (mut ids, mut keys) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let key = format!(
            "events/2026/11/25/14/orders-1-2026-11-25-14-{i:02}-00-0f8fad5b-d9cb-469f-a165-7086772895{i:02}.gz"
        );
        w.put(&key, &gzip(&ndjson(10 + i)));
        let id = format!("00000000-0000-4000-8000-0000000000{i:02}");
        let notification = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-25T14:00:00.000Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
            "requestParameters": {"sourceIPAddress": "203.0.113.10"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "x"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
                   "bucket": {"name": BUCKET, "arn": "arn:aws:s3:::firehose-archive",
                              "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}},
                   "object": {"key": key, "size": 100}}
        }]});
        records.push(json!({
            "messageId": id, "receiptHandle": "h", "body": notification.to_string(),
            "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
            "awsRegion": "us-east-1"
        }));
        ids.push(id);
        keys.push(key);
    }
    (json!({ "Records": records }), ids, keys)
}

#[test]
fn sqs_batch_reports_exactly_the_messages_whose_objects_failed_transiently() {
    let w = World::new();
    let (event, ids, keys) = ten_messages(&w);
    let fail = [keys[3].as_str(), keys[7].as_str()];
    let h = w.handler(faulty(&w, &fail, None), Arc::new(NoLedger::default()));
    let resp = rt().block_on(h.handle(&event, later(), "r")).unwrap();
    assert_eq!(
        resp,
        json!({"batchItemFailures": [{"itemIdentifier": ids[3]}, {"itemIdentifier": ids[7]}]})
    );
    for (i, key) in keys.iter().enumerate() {
        let expected = if i == 3 || i == 7 { 0 } else { 10 + i };
        assert_eq!(w.rows(key).len(), expected, "{key}");
        // Transient failures are for the platform to retry, not dead letters.
        assert!(w.dead_letter(key).is_none(), "{key}");
    }
}

#[test]
fn a_malformed_sqs_message_is_redelivered_without_failing_the_others() {
    let w = World::new();
    w.put_fixture_objects();
    let mut event = fixture("sqs-s3.json");
    event["Records"][1]["body"] = json!("this is not an S3 notification");
    let resp = rt()
        .block_on(w.local().handle(&event, later(), "r"))
        .unwrap();
    assert_eq!(
        resp,
        json!({"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]})
    );
    assert_eq!(w.rows(K1).len(), 3);
    assert_eq!(w.rows(K2).len(), 5);
}

#[test]
fn eventbridge_events_inside_sqs_are_processed_and_acknowledged() {
    let w = World::new();
    w.put_fixture_objects();
    let resp = rt()
        .block_on(
            w.local()
                .handle(&fixture("sqs-eventbridge-s3.json"), later(), "r"),
        )
        .unwrap();
    assert_eq!(resp, json!({"batchItemFailures": []}));
    assert_eq!(w.rows(K1).len(), 3);
    assert_eq!(w.rows(K2).len(), 5);
}

#[test]
fn an_sqs_message_whose_sns_payload_is_no_s3_event_is_acknowledged() {
    let w = World::new();
    w.put_fixture_objects();
    let resp = rt()
        .block_on(
            w.local()
                .handle(&fixture("sqs-sns-not-s3.json"), later(), "r"),
        )
        .unwrap();
    // Redelivery cannot turn it into an S3 event: logged once, acknowledged.
    assert_eq!(resp, json!({"batchItemFailures": []}));
    assert_eq!(w.rows(K1).len(), 3);
    assert_eq!(w.rows(K2).len(), 5);
}

#[test]
fn batch_tasks_with_region_arns_run_and_an_unreadable_task_is_a_permanent_failure() {
    let w = World::new();
    w.put_fixture_objects();
    let event = fixture("s3-batch-1.0-region-arn.json");
    let resp = rt()
        .block_on(w.local().handle(&event, later(), "r"))
        .unwrap();
    let results = resp["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{resp}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["taskId"], event["tasks"][i]["taskId"], "{resp}");
    }
    assert_eq!(results[0]["resultCode"], "Succeeded");
    assert_eq!(
        results[0]["resultString"],
        "3 records, 3 rows, 0 record errors"
    );
    assert_eq!(
        results[1]["resultString"],
        "5 records, 5 rows, 0 record errors"
    );
    for r in &results[2..] {
        assert_eq!(r["resultCode"], "PermanentFailure", "{resp}");
        assert!(
            r["resultString"]
                .as_str()
                .unwrap()
                .starts_with("unreadable task:"),
            "{resp}"
        );
    }
    assert_eq!(w.rows(K1).len(), 3);
}

#[test]
fn permanent_failures_are_dead_lettered_and_not_retried() {
    let w = World::new();
    w.put_fixture_objects();
    // K1 is truncated gzip: retrying cannot help.
    let gz = gzip(&ndjson(100));
    w.put(K1, &gz[..gz.len() / 2]);
    // Direct: success after dead-lettering.
    let resp = rt()
        .block_on(
            w.local()
                .handle(&fixture("s3-notification.json"), later(), "r"),
        )
        .unwrap();
    assert_eq!(resp["outcomes"], json!(["dead_lettered", "done"]));
    let dl = w
        .dead_letter(K1)
        .expect("a dead letter for the corrupt object");
    assert_eq!(dl["class"], "permanent");
    assert_eq!(dl["object"]["key"], K1);
    assert!(w.rows(K1).is_empty());
    // SQS: not redelivered.
    let resp = rt()
        .block_on(w.local().handle(&fixture("sqs-s3.json"), later(), "r"))
        .unwrap();
    assert_eq!(resp, json!({"batchItemFailures": []}));
    // A missing object is permanent too.
    std::fs::remove_file(w.buckets().join(BUCKET).join(K2)).unwrap();
    let resp = rt()
        .block_on(
            w.local()
                .handle(&fixture("eventbridge-object-created.json"), later(), "r"),
        )
        .unwrap();
    assert_eq!(resp["outcomes"], json!(["dead_lettered"]));
    assert!(w.dead_letter(K2).unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("not found"));
}

#[test]
fn direct_invocations_fail_when_an_object_must_be_retried() {
    let w = World::new();
    w.put_fixture_objects();
    let h = w.handler(faulty(&w, &[K2], None), Arc::new(NoLedger::default()));
    for file in [
        "s3-notification.json",
        "sns-s3.json",
        "eventbridge-object-created.json",
    ] {
        let err = rt()
            .block_on(h.handle(&fixture(file), later(), "r"))
            .unwrap_err();
        match &err {
            HandlerError::Retry { failed, first, .. } => {
                assert_eq!(*failed, 1, "{file}");
                assert!(first.contains("SlowDown"), "{first}");
                assert!(first.contains(K2), "{first}");
            }
            other => panic!("{file}: {other}"),
        }
    }
    // The object that could be processed was (its retry will be a harmless rewrite).
    assert_eq!(w.rows(K1).len(), 3);
    assert!(w.dead_letter(K2).is_none());
}

#[test]
fn s3_batch_operations_get_a_result_per_task() {
    for (file, schema) in [("s3-batch-1.0.json", "1.0"), ("s3-batch-2.0.json", "2.0")] {
        let w = World::new();
        w.put_fixture_objects();
        let event = fixture(file);
        let resp = rt()
            .block_on(w.local().handle(&event, later(), "r"))
            .unwrap();
        assert_eq!(resp["invocationSchemaVersion"], schema);
        assert_eq!(resp["invocationId"], event["invocationId"]);
        assert_eq!(resp["treatMissingKeysAs"], "PermanentFailure");
        let results = resp["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["taskId"], event["tasks"][0]["taskId"]);
        assert_eq!(results[0]["resultCode"], "Succeeded");
        assert_eq!(
            results[0]["resultString"],
            "3 records, 3 rows, 0 record errors"
        );
        assert_eq!(
            results[1]["resultString"],
            "5 records, 5 rows, 0 record errors"
        );
    }
    // One task throttled, one corrupt.
    let w = World::new();
    w.put_fixture_objects();
    w.put(K2, b"\x1f\x8b\x08\x00garbage");
    let h = w.handler(faulty(&w, &[K1], None), Arc::new(NoLedger::default()));
    let resp = rt()
        .block_on(h.handle(&fixture("s3-batch-2.0.json"), later(), "r"))
        .unwrap();
    let results = resp["results"].as_array().unwrap();
    assert_eq!(results[0]["resultCode"], "TemporaryFailure");
    assert!(results[0]["resultString"]
        .as_str()
        .unwrap()
        .contains("SlowDown"));
    assert_eq!(results[1]["resultCode"], "PermanentFailure");
    assert!(
        results[1]["resultString"]
            .as_str()
            .unwrap()
            .contains("gzip"),
        "{resp}"
    );
}

#[test]
fn duplicate_notifications_for_done_objects_do_nothing() {
    let w = World::new();
    w.put_fixture_objects();
    let ledger: Arc<dyn Ledger> =
        Arc::new(FileLedger::open(w.tmp.path().join("ledger.jsonl")).unwrap());
    let h = w.handler(w.local_stores(), ledger);
    let event = fixture("s3-notification.json");
    let first = rt().block_on(h.handle(&event, later(), "r1")).unwrap();
    assert_eq!(first["outcomes"], json!(["done", "done"]));
    let out = w.out().join(BUCKET).join(format!("{K1}.ndjson"));
    let written = std::fs::metadata(&out).unwrap().modified().unwrap();
    let again = rt().block_on(h.handle(&event, later(), "r2")).unwrap();
    assert_eq!(again["outcomes"], json!(["already_done", "already_done"]));
    assert_eq!(
        std::fs::metadata(&out).unwrap().modified().unwrap(),
        written
    );
    // For S3 Batch Operations a done object is a success too.
    let batch = rt()
        .block_on(h.handle(&fixture("s3-batch-1.0.json"), later(), "r3"))
        .unwrap();
    assert_eq!(batch["results"][0]["resultCode"], "Succeeded");
    assert_eq!(batch["results"][0]["resultString"], "already done (ledger)");
}

#[test]
fn nothing_is_started_without_time_left_and_it_is_reported_for_retry() {
    let w = World::new();
    let (event, ids, keys) = ten_messages(&w);
    let h = w.local();
    // Less time left than the safety margin.
    let deadline = Instant::now() + h.margin / 2;
    let resp = rt().block_on(h.handle(&event, deadline, "r")).unwrap();
    let reported: Vec<&str> = resp["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(reported, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(keys.iter().all(|k| w.rows(k).is_empty()));
}

#[test]
fn an_object_still_running_at_the_deadline_gives_up_and_commits_nothing() {
    let w = World::new();
    // 31 KB uncompressed, fed 64 bytes per 2 ms: about a second, far past the deadline.
    w.put(K2, &ndjson(3000));
    let mut h = w.handler(
        faulty(&w, &[], Some(Duration::from_millis(2))),
        Arc::new(NoLedger::default()),
    );
    h.margin = Duration::from_millis(400);
    let deadline = Instant::now() + Duration::from_millis(700);
    let (result, answered_at) = rt().block_on(async {
        let r = h
            .handle(&fixture("eventbridge-object-created.json"), deadline, "r")
            .await;
        (r, Instant::now())
    });
    // It answered before the deadline, not at the object's natural end.
    assert!(
        answered_at < deadline,
        "answered {:?} late",
        answered_at - deadline
    );
    let err = result.unwrap_err();
    match err {
        HandlerError::Retry { first, .. } => assert!(first.contains("time"), "{first}"),
        other => panic!("{other}"),
    }
    assert!(w.rows(K2).is_empty(), "no partial output");
    assert!(w.dead_letter(K2).is_none());
}

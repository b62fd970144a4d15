//! The real binary as a Lambda function: a local Lambda Runtime API (this file) hands it events,
//! objects live in a moto server, the S3 → SQS notifications are produced by moto itself, and
//! rows land in the NDJSON sink (or, in the Storage Write kill test, the BigQuery emulator).

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::moto::{create_bucket, put, rt, Moto};
use crate::support::{bin, gzip, ndjson, read_ndjson};

/// What the function posted back for one request.
#[derive(Debug)]
struct Answer {
    kind: &'static str,
    body: Value,
}

/// The Runtime API's three calls a function makes (`/next`, `/response`, `/error`), served on a
/// free port. `next` blocks until the test queues an event, like the real service.
struct RuntimeApi {
    addr: String,
    events: Sender<(String, Value)>,
    answers: Receiver<(String, Answer)>,
    server: Arc<tiny_http::Server>,
}

impl RuntimeApi {
    fn start(deadline_in: Duration) -> RuntimeApi {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap().to_string();
        let (events, queue) = mpsc::channel::<(String, Value)>();
        let queue = Arc::new(Mutex::new(queue));
        let (answer_tx, answers) = mpsc::channel();
        let srv = server.clone();
        std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let queue = queue.clone();
                let answer_tx = answer_tx.clone();
                // `next` may wait for an event: one thread per request.
                std::thread::spawn(move || {
                    let url = req.url().to_string();
                    if url.ends_with("/runtime/invocation/next") {
                        let next = queue.lock().unwrap().recv();
                        let Ok((id, event)) = next else { return };
                        let deadline =
                            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + deadline_in;
                        let header = |k: &str, v: String| {
                            tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
                        };
                        let resp = tiny_http::Response::from_string(event.to_string())
                            .with_header(header("Content-Type", "application/json".into()))
                            .with_header(header("Lambda-Runtime-Aws-Request-Id", id))
                            .with_header(header(
                                "Lambda-Runtime-Deadline-Ms",
                                deadline.as_millis().to_string(),
                            ))
                            .with_header(header(
                                "Lambda-Runtime-Invoked-Function-Arn",
                                "arn:aws:lambda:us-east-1:123456789012:function:firehose-replay"
                                    .into(),
                            ))
                            .with_header(header(
                                "Lambda-Runtime-Trace-Id",
                                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
                            ));
                        let _ = req.respond(resp);
                        return;
                    }
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    let parts: Vec<&str> = url.trim_start_matches('/').split('/').collect();
                    // 2018-06-01/runtime/invocation/{id}/response|error, or runtime/init/error
                    let (id, kind) = match parts.as_slice() {
                        [_, "runtime", "invocation", id, "response"] => {
                            (id.to_string(), "response")
                        }
                        [_, "runtime", "invocation", id, "error"] => (id.to_string(), "error"),
                        [_, "runtime", "init", "error"] => ("init".to_string(), "init-error"),
                        _ => ("?".to_string(), "unexpected"),
                    };
                    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
                    let _ = answer_tx.send((id, Answer { kind, body }));
                    let _ = req.respond(
                        tiny_http::Response::from_string(r#"{"status":"OK"}"#)
                            .with_status_code(202),
                    );
                });
            }
        });
        RuntimeApi {
            addr,
            events,
            answers,
            server,
        }
    }

    /// Queues events and waits for the answer to each (in any order).
    fn invoke_all(&self, events: Vec<(&str, Value)>, child: &mut Child) -> HashMap<String, Answer> {
        let n = events.len();
        for (id, e) in events {
            self.events.send((id.to_string(), e)).unwrap();
        }
        let mut got = HashMap::new();
        let until = Instant::now() + Duration::from_secs(120);
        while got.len() < n {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the function exited early: {status}; answers so far: {got:?}");
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out; answers so far: {got:?}");
            if let Ok((id, a)) = self
                .answers
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                assert_ne!(a.kind, "init-error", "{a:?}");
                assert_ne!(a.kind, "unexpected", "{a:?}");
                got.insert(id, a);
            }
        }
        got
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn s3_record(bucket: &str, encoded_key: &str) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T13:05:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "x"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}"),
                          "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}},
               "object": {"key": encoded_key, "size": 1, "sequencer": "0A1B2C3D4E5F678901"}}
    })
}

fn sqs_event(messages: &[(String, String)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": "h", "body": body,
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notifications",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

#[test]
fn the_binary_serves_every_event_shape_under_a_local_runtime_api() {
    let moto = Moto::start();
    let s3 = moto.s3();
    const BUCKET: &str = "archive";
    let k_plain =
        "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";
    let k_odd = "events/dt=2026-11-25/h=13/orders a+b.gz";
    let k_corrupt =
        "events/2026/11/25/13/orders-1-2026-11-25-13-10-00-0f8fad5b-d9cb-469f-a165-708677289511.gz";
    let gz = gzip(&ndjson(50));

    // S3 → SQS notifications, configured and produced by moto.
    rt().block_on(create_bucket(&s3, BUCKET));
    moto.python(&format!(
        r#"
import boto3
sqs = boto3.client("sqs"); s3 = boto3.client("s3")
url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
s3.put_bucket_notification_configuration(Bucket="{BUCKET}", NotificationConfiguration={{
  "QueueConfigurations": [{{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}}]}})
"#
    ));
    rt().block_on(async {
        put(&s3, BUCKET, k_plain, gzip(&ndjson(40))).await;
        put(&s3, BUCKET, k_odd, ndjson(7)).await;
        put(&s3, BUCKET, k_corrupt, gz[..gz.len() / 2].to_vec()).await;
    });
    let received = moto.python(
        r#"
import boto3, json
sqs = boto3.client("sqs")
url = sqs.get_queue_url(QueueName="notifications")["QueueUrl"]
out = []
for _ in range(50):
    for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
        body = json.loads(m["Body"])
        if "Records" in body:
            out.append([m["MessageId"], m["Body"]])
    if len(out) >= 3:
        break
print(json.dumps(out))
"#,
    );
    let received: Vec<(String, String)> = serde_json::from_str(received.trim()).unwrap();
    assert_eq!(received.len(), 3, "moto sent one notification per object");

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dead = tmp.path().join("dead");
    let api = RuntimeApi::start(Duration::from_secs(120));
    let log_path = tmp.path().join("function.log");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        bin()
            .envs(moto.env())
            .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", "firehose-replay")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/firehose-replay")
            .env("FIREHOSE_REPLAY_SINK", format!("ndjson:{}", out.display()))
            .env(
                "FIREHOSE_REPLAY_DEAD_LETTER",
                format!("dir:{}", dead.display()),
            )
            .env(
                "FIREHOSE_REPLAY_LEDGER",
                format!("file:{}", tmp.path().join("ledger.jsonl").display()),
            )
            .env("FIREHOSE_REPLAY_DEADLINE_MARGIN_MS", "2000")
            .stdout(std::fs::File::create(&log_path).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    // Round 1: the SQS batch exactly as moto produced it.
    let answers = api.invoke_all(vec![("req-sqs", sqs_event(&received))], &mut child.0);
    let a = &answers["req-sqs"];
    assert_eq!(a.kind, "response", "{a:?}");
    // The corrupt object failed permanently: dead-lettered, not redelivered.
    assert_eq!(a.body, json!({"batchItemFailures": []}));
    let rows = |key: &str| read_ndjson(&out.join(BUCKET).join(format!("{key}.ndjson")));
    assert_eq!(rows(k_plain).len(), 40);
    assert_eq!(
        rows(k_odd).len(),
        7,
        "the key with a space and a plus was decoded"
    );
    let dl: Value = serde_json::from_slice(
        &std::fs::read(dead.join(BUCKET).join(format!("{k_corrupt}.object.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(dl["class"], "permanent");

    // Round 2: every other shape, over the same objects.
    let direct: Value = serde_json::from_str(&received[0].1).unwrap();
    let encoded_odd = "events/dt%3D2026-11-25/h%3D13/orders+a%2Bb.gz";
    let odd_notification = json!({ "Records": [s3_record(BUCKET, encoded_odd)] });
    let sns = json!({"Records": [{
        "EventVersion": "1.0", "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:t:1",
        "EventSource": "aws:sns",
        "Sns": {"SignatureVersion": "1", "Timestamp": "2026-11-25T13:05:00.000Z", "Signature": "x",
                "SigningCertUrl": "https://sns.example/cert.pem", "MessageId": "m1",
                "Message": odd_notification.to_string(), "MessageAttributes": {}, "Type": "Notification",
                "UnsubscribeUrl": "https://sns.example/unsub", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
                "Subject": "Amazon S3 Notification"}
    }]});
    let eventbridge = json!({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2026-11-25T13:05:00Z",
        "region": "us-east-1", "resources": [format!("arn:aws:s3:::{BUCKET}")],
        "detail": {"version": "0", "bucket": {"name": BUCKET},
                   "object": {"key": encoded_odd, "size": 7, "etag": "x", "sequencer": "1"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                   "source-ip-address": "203.0.113.10", "reason": "PutObject"}
    });
    let batch = json!({
        "invocationSchemaVersion": "2.0", "invocationId": "inv-1",
        "job": {"id": "job-1", "userArguments": {}},
        "tasks": [
            {"taskId": "t-plain", "s3Key": k_plain, "s3VersionId": null, "s3Bucket": BUCKET},
            {"taskId": "t-missing", "s3Key": "events/nope.gz", "s3VersionId": null, "s3Bucket": BUCKET},
        ]
    });
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T13:00:00.000Z",
        "Bucket": BUCKET, "RequestId": "5582815E1AEA5ADF", "HostId": "x"});
    let answers = api.invoke_all(
        vec![
            ("req-direct", direct),
            ("req-sns", sns),
            ("req-eventbridge", eventbridge),
            ("req-batch", batch),
            ("req-test", test_event),
            (
                "req-unknown",
                json!({"Records": [{"eventSource": "aws:kinesis"}]}),
            ),
        ],
        &mut child.0,
    );
    // Duplicates of done objects do nothing (the ledger knows them).
    let direct = &answers["req-direct"];
    assert_eq!(direct.kind, "response", "{direct:?}");
    assert_eq!(direct.body["outcomes"], json!(["already_done"]));
    for id in ["req-sns", "req-eventbridge"] {
        assert_eq!(answers[id].kind, "response", "{:?}", answers[id]);
        assert_eq!(
            answers[id].body["outcomes"],
            json!(["already_done"]),
            "{id}"
        );
    }
    let b = &answers["req-batch"].body;
    assert_eq!(b["invocationId"], "inv-1");
    assert_eq!(b["results"][0]["taskId"], "t-plain");
    assert_eq!(b["results"][0]["resultCode"], "Succeeded");
    assert_eq!(b["results"][1]["resultCode"], "PermanentFailure");
    assert!(b["results"][1]["resultString"]
        .as_str()
        .unwrap()
        .contains("not found"));
    assert_eq!(answers["req-test"].body, json!({"ignored": "s3:TestEvent"}));
    let unknown = &answers["req-unknown"];
    assert_eq!(unknown.kind, "error");
    assert_eq!(
        unknown.body["errorType"], "UnrecognisedEvent",
        "{unknown:?}"
    );

    // One JSON log line per object, carrying the request ID.
    drop(child);
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let object_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "object" && l["request_id"] == "req-sqs")
        .collect();
    assert_eq!(object_lines.len(), 3, "{logs}");
    let plain = object_lines
        .iter()
        .find(|l| l["key"] == k_plain)
        .expect("a line for the plain object");
    assert_eq!(plain["outcome"], "done");
    assert_eq!(plain["rows"], 40);
    assert!(object_lines
        .iter()
        .any(|l| l["key"] == k_corrupt && l["outcome"] == "dead_lettered"));

    // Metrics: one CloudWatch Embedded Metric Format line per object, valid per the spec.
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    let processed = lines.iter().filter(|l| l["message"] == "object").count();
    assert_eq!(emf.len(), processed, "{logs}");
    for doc in &emf {
        assert_valid_emf(doc);
        assert_eq!(doc["Function"], "firehose-replay");
    }
    let plain = emf
        .iter()
        .find(|d| d["key"] == k_plain && d["outcome"] == "done")
        .expect("metrics for the plain object");
    assert_eq!(plain["RowsWritten"], 40);
    assert_eq!(plain["RecordsIn"], 40);
    assert!(plain["BytesDecompressed"].as_u64().unwrap() > 0);
    // Written "2026-11-25 13:00:00" per its name: the lag is at least the time since then.
    assert!(plain["ObjectLagSeconds"].as_f64().unwrap() > 0.0);
    let dead = emf.iter().find(|d| d["key"] == k_corrupt).unwrap();
    assert_eq!(dead["ObjectsDeadLettered"], 1);
}

/// Checks a document against the Embedded Metric Format specification: a root `_aws` with an
/// integer millisecond `Timestamp` and `CloudWatchMetrics` directives, each with a namespace,
/// dimension sets (arrays of at most 30 names, each a string member of the root) and metric
/// definitions (a name, an optional standard unit) whose values are numbers at the root.
fn assert_valid_emf(doc: &Value) {
    let aws = &doc["_aws"];
    assert!(aws["Timestamp"].is_u64(), "Timestamp: {doc}");
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty());
    const UNITS: [&str; 6] = [
        "Count",
        "Bytes",
        "Milliseconds",
        "Seconds",
        "None",
        "Percent",
    ];
    for d in directives {
        let ns = d["Namespace"].as_str().expect("Namespace");
        assert!(!ns.is_empty() && ns.len() <= 255 && !ns.starts_with("AWS/"));
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30);
            for name in set {
                let name = name.as_str().expect("dimension names are strings");
                assert!(
                    doc[name].is_string(),
                    "dimension {name} must be a string member: {doc}"
                );
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().expect("Name");
            if let Some(unit) = m.get("Unit") {
                assert!(UNITS.contains(&unit.as_str().unwrap()), "unit {unit}");
            }
            assert!(
                doc[name].is_number(),
                "metric {name} must be a number member: {doc}"
            );
        }
    }
}

/// The function with the default BigQuery mode (Storage Write) against the emulator, an S3
/// ledger in moto, and the gRPC connection through `grpc`.
fn bigquery_function(
    api: &RuntimeApi,
    moto: &Moto,
    emu: &crate::bq_emulator::BqEmulator,
    grpc: &str,
) -> Child {
    bin()
        .envs(moto.env())
        .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", "firehose-replay")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("FIREHOSE_REPLAY_SINK", "bigquery:test-proj.bi.events")
        .env("FIREHOSE_REPLAY_BIGQUERY_ENDPOINT", &emu.endpoint)
        .env("FIREHOSE_REPLAY_BIGQUERY_STORAGE_ENDPOINT", grpc)
        .env("FIREHOSE_REPLAY_LEDGER", "s3://archive/_ledger/")
        .env("FIREHOSE_REPLAY_DEAD_LETTER", "s3://archive/_dead/")
        .env("FIREHOSE_REPLAY_DEADLINE_MARGIN_MS", "2000")
        .env("FIREHOSE_REPLAY_RETRY_MIN_DELAY_MS", "50")
        // The killed container's claim lapses quickly, so Lambda's retry can take over.
        .env("FIREHOSE_REPLAY_CLAIM_TTL_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_lambda_killed_after_its_commit_is_not_written_twice_by_the_retried_invocation() {
    let moto = Moto::start();
    let s3 = moto.s3();
    let key =
        "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";
    rt().block_on(async {
        create_bucket(&s3, "archive").await;
        put(&s3, "archive", key, gzip(&ndjson(30))).await;
    });
    let emu = crate::bq_emulator::BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    emu.create_table(
        "bi",
        "events",
        json!([
            {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "n", "type": "INTEGER"},
            {"name": "name", "type": "STRING"}
        ]),
    );
    let event = json!({ "Records": [s3_record("archive", key)] });
    let ids = |emu: &crate::bq_emulator::BqEmulator| -> Vec<String> {
        let mut v: Vec<String> = emu
            .rows("bi", "events")
            .iter()
            .map(|r| r["_row_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };

    // Container 1 is killed while BatchCommitWriteStreams' answer is on its way (DATA frames:
    // CreateWriteStream 1, the append 2, FinalizeWriteStream 3, the commit 4).
    let upstream = emu
        .grpc_endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy =
        crate::h2_proxy::H2Proxy::start(upstream, crate::h2_proxy::Fault::HoldServerData(4));
    let api = RuntimeApi::start(Duration::from_secs(120));
    let mut first = bigquery_function(&api, &moto, &emu, &proxy.endpoint());
    api.events.send(("req-1".into(), event.clone())).unwrap();
    assert!(
        proxy.wait_fired(Duration::from_secs(60)),
        "the commit's answer never came"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let committed = ids(&emu);
    assert_eq!(committed.len(), 30, "the commit happened before the kill");
    drop(api);

    // Lambda retries the event in a new container: the S3 ledger has the stream staged.
    let api = RuntimeApi::start(Duration::from_secs(120));
    let mut second = bigquery_function(&api, &moto, &emu, &emu.grpc_endpoint);
    // Until the dead container's claim lapses, the object is reported for retry (as Lambda's
    // async retries would find it); then the retry finishes it.
    let until = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let id = format!("req-2-{attempt}");
        let answers = api.invoke_all(vec![(id.as_str(), event.clone())], &mut second);
        let a = &answers[&id];
        if a.kind == "response" {
            break;
        }
        assert!(
            a.body
                .to_string()
                .contains("another worker is processing it"),
            "{a:?}"
        );
        assert!(Instant::now() < until, "the claim never lapsed");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(ids(&emu), committed, "no row written twice");
    // A duplicate notification afterwards is a ledger hit.
    let answers = api.invoke_all(vec![("req-3", event)], &mut second);
    assert_eq!(answers["req-3"].kind, "response");
    assert_eq!(ids(&emu), committed);
    let markers = rt().block_on(async {
        s3.list_objects_v2()
            .bucket("archive")
            .prefix("_ledger/")
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(
        markers.iter().filter(|k| k.ends_with(".done")).count(),
        1,
        "{markers:?}"
    );
    assert!(
        !markers.iter().any(|k| k.ends_with(".staged")),
        "the staged marker is gone once done: {markers:?}"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

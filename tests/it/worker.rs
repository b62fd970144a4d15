//! `firehose-replay worker`, the real binary against moto's SQS and S3: the visibility heartbeat
//! (a message whose object outlasts the queue's 2 s visibility is never received by another
//! consumer), every body shape, `/metrics`, kill -9 and a second worker (S3 ledger), graceful
//! shutdown on SIGTERM, and a malformed message left for the redrive policy.
//!
//! Slow objects are read through a throttling proxy in front of moto (S3 only; SQS goes to
//! moto directly), so they take seconds whatever the machine's load. No fixed sleeps: every wait
//! polls the worker's `/metrics`, its log or the queue.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

use crate::claims::{signal, throttling_proxy, wait_for};
use crate::cli::files_under;
use crate::moto::{self, Moto};
use crate::support::{bin, gzip, read_ndjson};

const BUCKET: &str = "worker-bucket";

fn sqs(moto: &Moto) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// A queue with this visibility timeout and, optionally, a redrive policy to a new DLQ
/// (`max_receives`). Returns (queue URL, DLQ URL).
pub(crate) fn create_queue(
    moto: &Moto,
    name: &str,
    visibility: u32,
    max_receives: Option<u32>,
) -> (String, Option<String>) {
    let rt = moto::rt();
    let c = sqs(moto);
    rt.block_on(async {
        let mut dlq = None;
        let mut create = c.create_queue().queue_name(name).attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.to_string(),
        );
        if let Some(max) = max_receives {
            let url = c
                .create_queue()
                .queue_name(format!("{name}-dlq"))
                .send()
                .await
                .unwrap()
                .queue_url()
                .unwrap()
                .to_string();
            let arn = c
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes()
                .unwrap()[&QueueAttributeName::QueueArn]
                .clone();
            create = create.attributes(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string(),
            );
            dlq = Some(url);
        }
        let url = create
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        (url, dlq)
    })
}

pub(crate) fn send(moto: &Moto, url: &str, body: &str) {
    let rt = moto::rt();
    let c = sqs(moto);
    rt.block_on(async {
        c.send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    });
}

/// (visible, in flight) messages of the queue.
pub(crate) fn depth(moto: &Moto, url: &str) -> (u64, u64) {
    let rt = moto::rt();
    let c = sqs(moto);
    rt.block_on(async {
        let a = c
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = a.attributes().unwrap();
        let n = |k| a[&k].parse::<u64>().unwrap();
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    })
}

/// Receives what is visible now (a consumer other than the worker), leaving it visible.
fn peek(moto: &Moto, url: &str) -> Vec<String> {
    let rt = moto::rt();
    let c = sqs(moto);
    rt.block_on(async {
        let out = c
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| m.body().unwrap_or_default().to_string())
            .collect()
    })
}

pub(crate) fn s3_event(key: &str) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T13:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}}
    }]})
}

/// `n` incompressible rows, gzip (about 60 bytes of gzip a row).
fn object(seed: u64, rows: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ seed;
    let mut body = String::new();
    for j in 0..rows {
        let mut pad = String::new();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            pad.push_str(&format!("{x:016x}"));
        }
        body.push_str(&format!("{{\"s\":{seed},\"n\":{j},\"pad\":\"{pad}\"}}\n"));
    }
    gzip(body.as_bytes())
}

pub(crate) fn put_objects(moto: &Moto, objects: &[(&str, usize)]) {
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, BUCKET).await;
        for (i, (key, rows)) in objects.iter().enumerate() {
            moto::put(&s3, BUCKET, key, object(i as u64, *rows)).await;
        }
    });
}

struct Worker {
    child: Child,
    log: PathBuf,
    health: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a worker in `work` on `queue`, reading S3 through `s3_endpoint`; its log (JSON: stderr
/// is a file) in `log`. Returns once its health endpoint is up.
fn start(
    moto: &Moto,
    work: &Path,
    queue: &str,
    s3_endpoint: &str,
    log: &str,
    extra: &[&str],
) -> Worker {
    let log = work.join(log);
    let child = bin()
        .current_dir(work)
        .envs(moto.env())
        .env("AWS_ENDPOINT_URL_S3", s3_endpoint)
        .env("FIREHOSE_REPLAY_QUEUE", queue)
        .args([
            "worker",
            "--health-addr",
            "127.0.0.1:0",
            "--receive-wait",
            "1",
        ])
        .args(["--sink", "ndjson:out", "--dead-letter", "dir:dl"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut w = Worker {
        child,
        log,
        health: String::new(),
    };
    wait_for(60, "the worker's health endpoint", || {
        if let Some(addr) = lines(&w.log)
            .iter()
            .find(|l| l["message"] == "health endpoint listening (/healthz, /metrics)")
            .and_then(|l| l["addr"].as_str())
        {
            w.health = addr.to_string();
        }
        assert!(
            w.child.try_wait().unwrap().is_none(),
            "the worker exited: {}",
            std::fs::read_to_string(&w.log).unwrap()
        );
        !w.health.is_empty()
    });
    w
}

/// The JSON log lines written so far.
fn lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn count(log: &Path, message: &str) -> usize {
    lines(log)
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .count()
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A metric's value from `/metrics` (`name` with its labels, as exposed).
fn metric(w: &Worker, name: &str) -> f64 {
    let (_, text) = get(&w.health, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Rows per output file (temporary dot-files left out).
fn outputs(work: &Path) -> Vec<(String, usize)> {
    files_under(&work.join("out").join(BUCKET))
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read_ndjson(&p).len(),
            )
        })
        .collect()
}

fn stop(mut w: Worker) -> (std::process::ExitStatus, Duration) {
    let t = Instant::now();
    signal(&w.child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            return (status, t.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_slow_object_keeps_its_message_invisible_and_is_processed_once() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (queue, _) = create_queue(&moto, "slow", 2, None);
    let key = "2026/11/25/13/slow-1-2026-11-25-13-00-00-aaaa.gz";
    put_objects(&moto, &[(key, 3000)]);
    // About 120 KB at 20 KB/s: several times the 2 s visibility.
    let proxy = throttling_proxy(&moto.endpoint, 20_000);
    send(&moto, &queue, &s3_event(key).to_string());
    let w = start(&moto, work.path(), &queue, &proxy, "w.log", &[]);
    wait_for(60, "the object in flight", || {
        metric(&w, "firehose_replay_objects_in_flight") == 1.0
    });
    // Another consumer polls the queue for as long as the object runs: it must get nothing.
    let mut stolen = Vec::new();
    wait_for(120, "the object done", || {
        stolen.extend(peek(&moto, &queue));
        count(&w.log, "object done") == 1
    });
    assert!(
        stolen.is_empty(),
        "another consumer received {stolen:?}; worker log:\n{}",
        std::fs::read_to_string(&w.log).unwrap()
    );
    let done = lines(&w.log)
        .into_iter()
        .find(|l| l["message"] == "object done")
        .unwrap();
    assert!(
        done["ms"].as_u64().unwrap() > 4_000,
        "the object must outlast the visibility twice over: {done}"
    );
    assert!(metric(&w, "firehose_replay_heartbeat_extensions_total") >= 2.0);
    assert_eq!(
        metric(&w, "firehose_replay_sqs_messages_received_total"),
        1.0
    );
    wait_for(30, "the message deleted", || depth(&moto, &queue) == (0, 0));
    assert_eq!(
        metric(&w, "firehose_replay_sqs_messages_total{action=\"deleted\"}"),
        1.0
    );
    assert_eq!(
        outputs(work.path()),
        vec![(
            "slow-1-2026-11-25-13-00-00-aaaa.gz.ndjson".to_string(),
            3000
        )]
    );
    let log = w.log.clone();
    let (status, _) = stop(w);
    assert!(status.success(), "{status:?}");
    assert_eq!(count(&log, "object done"), 1);
}

#[test]
fn every_body_shape_is_processed_and_metrics_match() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (queue, _) = create_queue(&moto, "shapes", 30, None);
    let keys = [
        "2026/11/25/13/s-1-2026-11-25-13-00-00-0a1b2c3d-0000-4000-8000-000000000001.gz",
        "2026/11/25/13/s-1-2026-11-25-13-00-00-0a1b2c3d-0000-4000-8000-000000000002.gz",
        "2026/11/25/13/s-1-2026-11-25-13-00-00-0a1b2c3d-0000-4000-8000-000000000003.gz",
        "2026/11/25/13/s-1-2026-11-25-13-00-00-0a1b2c3d-0000-4000-8000-000000000004.gz",
    ];
    put_objects(
        &moto,
        &[(keys[0], 10), (keys[1], 20), (keys[2], 30), (keys[3], 40)],
    );
    // S3 → SQS; SNS → SQS with raw delivery (the same body); SNS → SQS without (the envelope);
    // EventBridge → SQS; and the s3:TestEvent S3 sends when the notification is set up.
    send(&moto, &queue, &s3_event(keys[0]).to_string());
    send(&moto, &queue, &s3_event(keys[1]).to_string());
    let sns = json!({
        "Type": "Notification", "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "Message": s3_event(keys[2]).to_string(),
    });
    send(&moto, &queue, &sns.to_string());
    let eventbridge = json!({
        "version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-25T13:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"bucket": {"name": BUCKET}, "object": {"key": keys[3], "size": 1}}
    });
    send(&moto, &queue, &eventbridge.to_string());
    send(
        &moto,
        &queue,
        &json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}).to_string(),
    );
    // An object that is gone: a permanent failure, dead-lettered, and its message deleted.
    send(
        &moto,
        &queue,
        &s3_event("2026/11/25/13/gone.gz").to_string(),
    );
    let w = start(
        &moto,
        work.path(),
        &queue,
        &moto.endpoint,
        "w.log",
        &["--concurrency", "2"],
    );
    wait_for(60, "the queue drained", || {
        metric(&w, "firehose_replay_sqs_messages_total{action=\"deleted\"}") == 6.0
    });
    assert_eq!(depth(&moto, &queue), (0, 0));
    assert_eq!(count(&w.log, "object done"), 4);
    let mut rows: Vec<usize> = outputs(work.path()).into_iter().map(|(_, n)| n).collect();
    rows.sort();
    assert_eq!(rows, vec![10, 20, 30, 40]);
    assert_eq!(get(&w.health, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(&w.health, "/nope").0, 404);
    assert_eq!(
        metric(&w, "firehose_replay_objects_total{outcome=\"done\"}"),
        4.0
    );
    assert_eq!(metric(&w, "firehose_replay_rows_total"), 100.0);
    assert_eq!(metric(&w, "firehose_replay_records_total"), 100.0);
    assert_eq!(metric(&w, "firehose_replay_record_errors_total"), 0.0);
    assert_eq!(
        metric(&w, "firehose_replay_sqs_messages_received_total"),
        6.0
    );
    assert_eq!(
        metric(
            &w,
            "firehose_replay_objects_total{outcome=\"dead_lettered\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&w, "firehose_replay_dead_letters_total{kind=\"object\"}"),
        1.0
    );
    let letters = files_under(&work.path().join("dl"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0]
        .to_string_lossy()
        .ends_with("gone.gz.object.json"));
    assert_eq!(metric(&w, "firehose_replay_objects_in_flight"), 0.0);
    assert!(metric(&w, "firehose_replay_bytes_read_total") > 0.0);
    assert!(metric(&w, "firehose_replay_object_lag_seconds") > 0.0);
    // Deletes went out in batches: never more calls than messages.
    let deletes = metric(&w, "firehose_replay_sqs_requests_total{call=\"delete\"}");
    assert!((1.0..=6.0).contains(&deletes), "{deletes} delete calls");
    let (status, _) = stop(w);
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_killed_worker_s_message_reappears_and_a_second_worker_finishes_it_once() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (queue, _) = create_queue(&moto, "killed", 2, None);
    let key = "2026/11/25/13/k-1-2026-11-25-13-00-00-aaaa.gz";
    put_objects(&moto, &[(key, 3000)]);
    let ledger = [
        "--ledger",
        "s3://worker-bucket/_ledger/",
        "--claim-ttl-secs",
        "3",
    ];
    let proxy = throttling_proxy(&moto.endpoint, 20_000);
    send(&moto, &queue, &s3_event(key).to_string());
    let mut w1 = start(&moto, work.path(), &queue, &proxy, "w1.log", &ledger);
    wait_for(60, "worker 1 mid-object", || {
        metric(&w1, "firehose_replay_objects_in_flight") == 1.0
    });
    signal(&w1.child, "-KILL");
    w1.child.wait().unwrap();
    // The message comes back once its visibility lapses (no one extends it any more).
    wait_for(30, "the message visible again", || {
        depth(&moto, &queue).0 == 1
    });
    let mut extra = ledger.to_vec();
    extra.extend(["--retry-visibility", "1"]);
    let w2 = start(&moto, work.path(), &queue, &moto.endpoint, "w2.log", &extra);
    wait_for(90, "worker 2 finishing the object", || {
        count(&w2.log, "object done") == 1
    });
    wait_for(30, "the queue drained", || depth(&moto, &queue) == (0, 0));
    assert_eq!(count(&w1.log, "object done"), 0);
    assert_eq!(
        outputs(work.path()),
        vec![("k-1-2026-11-25-13-00-00-aaaa.gz.ndjson".to_string(), 3000)]
    );
    let (status, _) = stop(w2);
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_finishes_what_fits_in_the_grace_and_returns_the_rest() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    // A long visibility: the unfinished message is visible again only if the worker says so.
    let (queue, _) = create_queue(&moto, "term", 120, None);
    let quick = "2026/11/25/13/q-1-2026-11-25-13-00-00-aaaa.gz";
    let slow = "2026/11/25/13/q-1-2026-11-25-13-00-00-bbbb.gz";
    // At 50 KB/s: about 2 s and about 60 s.
    put_objects(&moto, &[(quick, 1500), (slow, 50_000)]);
    let proxy = throttling_proxy(&moto.endpoint, 50_000);
    send(&moto, &queue, &s3_event(quick).to_string());
    send(&moto, &queue, &s3_event(slow).to_string());
    let w = start(
        &moto,
        work.path(),
        &queue,
        &proxy,
        "w.log",
        &["--concurrency", "2", "--shutdown-grace", "15"],
    );
    wait_for(60, "both objects in flight", || {
        metric(&w, "firehose_replay_objects_in_flight") == 2.0
    });
    let log = w.log.clone();
    let (status, took) = stop(w);
    assert!(status.success(), "exit {status:?}");
    // The grace, the abandon wait and the release: well under the 30 s ECS allows.
    assert!(took < Duration::from_secs(25), "took {took:?}");
    assert!(
        took >= Duration::from_secs(14),
        "left before the grace was over: {took:?}"
    );
    assert_eq!(count(&log, "object done"), 1);
    // The quick object was committed and its message deleted; the slow one committed nothing
    // and its message is visible again at once (not after the 120 s visibility).
    assert_eq!(
        outputs(work.path()),
        vec![("q-1-2026-11-25-13-00-00-aaaa.gz.ndjson".to_string(), 1500)]
    );
    let visible = peek(&moto, &queue);
    assert_eq!(visible.len(), 1, "{visible:?}");
    assert!(visible[0].contains(slow));
    assert_eq!(count(&log, "shutdown grace over"), 1);
}

#[test]
fn a_malformed_message_is_left_for_the_redrive_policy_and_logged_once() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (queue, dlq) = create_queue(&moto, "bad", 1, Some(2));
    let dlq = dlq.unwrap();
    put_objects(&moto, &[]);
    let body = r#"{"Records":[{"eventSource":"aws:s3","s3":{"object":{"key":"k"}}}]}"#;
    send(&moto, &queue, body);
    let w = start(&moto, work.path(), &queue, &moto.endpoint, "w.log", &[]);
    wait_for(60, "the message moved to the DLQ", || {
        depth(&moto, &dlq).0 == 1
    });
    assert_eq!(peek(&moto, &dlq), vec![body.to_string()]);
    assert!(metric(&w, "firehose_replay_sqs_messages_total{action=\"left\"}") >= 2.0);
    assert_eq!(count(&w.log, "unusable SQS message"), 1);
    assert_eq!(
        metric(&w, "firehose_replay_sqs_messages_total{action=\"deleted\"}"),
        0.0
    );
    let (status, _) = stop(w);
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_transient_failure_returns_the_message_with_a_backoff_until_the_redrive_policy_takes_it() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    // A 30 s visibility: within the wait below, only the worker's backoff brings it back.
    let (queue, dlq) = create_queue(&moto, "transient", 30, Some(2));
    let dlq = dlq.unwrap();
    let key = "2026/11/25/13/t-1-2026-11-25-13-00-00-aaaa.gz";
    send(&moto, &queue, &s3_event(key).to_string());
    // S3 refuses connections: a transient failure every time.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let w = start(
        &moto,
        work.path(),
        &queue,
        &closed,
        "w.log",
        &["--max-attempts", "1", "--retry-visibility", "1"],
    );
    wait_for(25, "the message moved to the DLQ", || {
        depth(&moto, &dlq).0 == 1
    });
    assert_eq!(
        metric(&w, "firehose_replay_sqs_messages_total{action=\"backoff\"}"),
        2.0
    );
    assert_eq!(
        metric(&w, "firehose_replay_objects_total{outcome=\"retry\"}"),
        2.0
    );
    assert_eq!(
        metric(&w, "firehose_replay_sqs_messages_total{action=\"deleted\"}"),
        0.0
    );
    // Not dead-lettered by the worker: the queue's DLQ holds it, once.
    assert!(files_under(&work.path().join("dl")).is_empty());
    assert!(outputs(work.path()).is_empty());
    let (status, _) = stop(w);
    assert!(status.success(), "{status:?}");
}

/// The documented policy grants every SQS action the worker calls (the batch calls are
/// authorised by the single-message actions), on the queue only.
#[test]
fn the_documented_iam_policy_covers_the_worker_s_sqs_calls() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/worker-iam-policy.json");
    let policy: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let sqs: Vec<&Value> = statements
        .iter()
        .filter(|s| s["Resource"] == "${NotificationQueueArn}")
        .collect();
    assert_eq!(sqs.len(), 1);
    let actions: Vec<&str> = sqs[0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for a in [
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ] {
        assert!(actions.contains(&a), "{a} missing");
    }
    for s in statements {
        let text = s.to_string();
        assert!(
            !text.contains("\"*\"") && !text.contains(":*\""),
            "wildcard in {text}"
        );
    }
}

#[test]
fn until_empty_drains_the_queue_and_exits_by_itself() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (queue, _) = create_queue(&moto, "drain", 30, None);
    let keys = ["2026/11/25/13/d-1.gz", "2026/11/25/13/d-2.gz"];
    put_objects(&moto, &[(keys[0], 5), (keys[1], 7)]);
    for k in keys {
        send(&moto, &queue, &s3_event(k).to_string());
    }
    let mut w = start(
        &moto,
        work.path(),
        &queue,
        &moto.endpoint,
        "w.log",
        &["--until-empty"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not stop on an empty queue"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(count(&w.log, "object done"), 2);
    assert_eq!(depth(&moto, &queue), (0, 0));
    let mut rows: Vec<usize> = outputs(work.path()).into_iter().map(|(_, n)| n).collect();
    rows.sort();
    assert_eq!(rows, vec![5, 7]);
}

/// A blank `AWS_ENDPOINT_URL` (an empty entry in a container's environment) means "not set":
/// the worker reports the unreachable queue as an error instead of panicking in the SDK.
#[test]
fn a_blank_endpoint_variable_is_treated_as_unset_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::bin()
        .current_dir(dir.path())
        .env("AWS_ENDPOINT_URL", "")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .args([
            "worker",
            "--queue",
            "http://127.0.0.1:9/123/q",
            "--sink",
            "ndjson:o",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: SQS queue"), "{stderr}");
}

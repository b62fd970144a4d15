//! Step Functions Distributed Map events through the real handler, against S3 on moto: every
//! item shape (tests/fixtures/lambda/map-*.json), the batch's output field by field, the
//! ledger on a retried batch, the deadline guard, folders and a missing bucket.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firehose_replay::dead_letter::DeadLetterDir;
use firehose_replay::error::Error;
use firehose_replay::ledger::file::FileLedger;
use firehose_replay::object::ObjectRef;
use firehose_replay::pipeline::Settings;
use firehose_replay::retry::ObjectRetry;
use firehose_replay::runner::Shared;
use firehose_replay::sink::ndjson::{mirrored_path, NdjsonDir};
use firehose_replay::source::s3::S3Store;
use firehose_replay::source::{ObjectStore, Opened};
use firehose_replay::trigger::handler::{Handler, HandlerError, S3Stores, Stores};
use firehose_replay::trigger::TriggerError;
use serde_json::{json, Value};

use crate::lambda::fixture;
use crate::moto::{self, Moto};
use crate::support::{bin, gzip, ndjson, read_ndjson};

const BUCKET: &str = "firehose-archive";
/// 3 records, gzip.
const KA: &str =
    "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";
/// 5 records; a space, a `+` and a `%` in the raw key.
const KB: &str = "events/2026/11/25/13/orders a+b%20c.gz";
const CORRUPT: &str = "events/2026/11/25/14/orders-1-2026-11-25-14-00-00-corrupt.gz";
const FOLDER: &str = "events/2026/11/25/14/";

struct World {
    moto: Moto,
    tmp: tempfile::TempDir,
    /// One runtime for the whole test: stores keep the runtime they were made in.
    rt: tokio::runtime::Runtime,
    ledgers: std::sync::atomic::AtomicUsize,
}

impl World {
    fn new() -> World {
        let w = World {
            moto: Moto::start(),
            tmp: tempfile::tempdir().unwrap(),
            rt: moto::rt(),
            ledgers: Default::default(),
        };
        let s3 = w.moto.s3();
        w.rt.block_on(async {
            moto::create_bucket(&s3, BUCKET).await;
            moto::put(&s3, BUCKET, KA, gzip(&ndjson(3))).await;
            moto::put(&s3, BUCKET, KB, ndjson(5)).await;
            moto::put(&s3, BUCKET, CORRUPT, b"\x1f\x8b\x08\x00garbage".to_vec()).await;
            moto::put(&s3, BUCKET, FOLDER, Vec::new()).await;
        });
        w
    }
    fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }
    fn rows(&self, key: &str) -> Vec<Value> {
        read_ndjson(&mirrored_path(
            &self.out(),
            &ObjectRef::new(BUCKET, key),
            ".ndjson",
        ))
    }
    fn s3_stores(&self) -> Arc<dyn Stores> {
        Arc::new(S3Stores::new(self.moto.s3()))
    }
    fn handle(&self, h: &Handler, event: &Value, deadline: Instant) -> Result<Value, HandlerError> {
        self.rt.block_on(h.handle(event, deadline, "req"))
    }
    /// A handler with a ledger of its own (a file ledger admits one holder at a time).
    fn handler(&self, stores: Arc<dyn Stores>, map_bucket: Option<&str>) -> Handler {
        Handler {
            stores,
            shared: Shared {
                settings: Arc::new(Settings::default()),
                sink: Arc::new(NdjsonDir::new(self.out())),
                dead_letters: Arc::new(DeadLetterDir::new(self.tmp.path().join("dead"))),
                ledger: Arc::new(
                    FileLedger::open(self.tmp.path().join(format!(
                        "ledger-{}.jsonl",
                        self.ledgers
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    )))
                    .unwrap(),
                ),
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
            map_bucket: map_bucket.map(str::to_string),
        }
    }
    /// The event with each item's `Etag` replaced by the uploaded object's own (the fixtures
    /// cannot know moto's), so the conditional GET the ETag drives succeeds.
    fn with_real_etags(&self, mut event: Value) -> Value {
        let s3 = self.moto.s3();
        let fix = |item: &mut Value| {
            if item.get("Etag").is_none() {
                return;
            }
            let key = item["Key"].as_str().unwrap().to_string();
            let etag = self.rt.block_on(async {
                s3.head_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .send()
                    .await
                    .unwrap()
                    .e_tag()
                    .unwrap()
                    .to_string()
            });
            item["Etag"] = json!(etag);
        };
        match event.get_mut("Items").and_then(Value::as_array_mut) {
            Some(items) => items.iter_mut().for_each(fix),
            None => fix(&mut event),
        }
        event
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[test]
fn a_list_objects_v2_item_takes_the_configured_bucket_and_its_raw_key() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), Some(BUCKET));
    let event = w.with_real_etags(fixture("map-list-objects-v2.json"));
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(
        out,
        json!({
            "items": 1, "processed": 1, "already_done": 0, "dead_lettered": 0, "skipped": 0,
            "records": 5, "rows": 5, "record_errors": 0,
            "results": [{"bucket": BUCKET, "key": KB, "outcome": "processed",
                "records": 5, "rows": 5, "record_errors": 0}],
        })
    );
    assert_eq!(w.rows(KB).len(), 5);
    // Without a configured bucket the same item is refused, saying where a bucket can come from.
    let mut h = h;
    h.map_bucket = None;
    match w.handle(&h, &event, later()).unwrap_err() {
        HandlerError::Trigger(TriggerError::Malformed { detail, .. }) => {
            assert!(detail.contains("BatchInput"), "{detail}");
            assert!(detail.contains("FIREHOSE_REPLAY_MAP_BUCKET"), "{detail}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_item_batcher_batch_reports_each_object_and_its_retry_is_skipped_by_the_ledger() {
    let w = World::new();
    // The configured bucket is not used: BatchInput names one.
    let h = w.handler(w.s3_stores(), Some("not-this-one"));
    let event = w.with_real_etags(fixture("map-item-batcher.json"));
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(out["items"], 4);
    assert_eq!(out["processed"], 2);
    assert_eq!(out["already_done"], 0);
    assert_eq!(out["dead_lettered"], 1);
    assert_eq!(out["skipped"], 1);
    assert_eq!(out["records"], 8);
    assert_eq!(out["rows"], 8);
    assert_eq!(out["record_errors"], 0);
    assert!(out.get("results_omitted").is_none());
    let r = out["results"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(
        r[0],
        json!({"key": FOLDER, "outcome": "skipped", "reason": "folder"})
    );
    assert_eq!(
        r[1],
        json!({"bucket": BUCKET, "key": KA, "outcome": "processed",
            "records": 3, "rows": 3, "record_errors": 0})
    );
    assert_eq!(
        r[2],
        json!({"bucket": BUCKET, "key": KB, "outcome": "processed",
            "records": 5, "rows": 5, "record_errors": 0})
    );
    assert_eq!(r[3]["bucket"], BUCKET);
    assert_eq!(r[3]["key"], CORRUPT);
    assert_eq!(r[3]["outcome"], "dead_lettered");
    assert!(
        !r[3]["error"].as_str().unwrap().is_empty(),
        "{}",
        r[3]["error"]
    );
    let letter = mirrored_path(
        &w.tmp.path().join("dead"),
        &ObjectRef::new(BUCKET, CORRUPT),
        ".object.json",
    );
    assert!(letter.exists(), "dead letter at {}", letter.display());
    assert_eq!(w.rows(KA).len(), 3);
    assert_eq!(w.rows(KB).len(), 5);

    // The state machine retries the batch: finished objects are skipped, nothing is rewritten.
    let again = w.handle(&h, &event, later()).unwrap();
    assert_eq!(again["processed"], 0);
    assert_eq!(again["already_done"], 2);
    assert_eq!(again["rows"], 0);
    assert_eq!(again["skipped"], 1);
    let r = again["results"].as_array().unwrap();
    assert_eq!(
        r[1],
        json!({"bucket": BUCKET, "key": KA, "outcome": "already_done"})
    );
    assert_eq!(r[2]["outcome"], "already_done");
    assert_eq!(w.rows(KA).len(), 3);
    assert_eq!(w.rows(KB).len(), 5);
}

#[test]
fn inventory_items_are_url_decoded_and_csv_manifest_items_are_not() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), None);
    for (fixture_name, event) in [
        ("map-inventory.json", fixture("map-inventory.json")),
        ("map-csv-manifest.json", fixture("map-csv-manifest.json")),
        // A manifest written for S3 Batch Operations (URL-encoded keys), told so.
        (
            "url-encoded manifest",
            json!({"Items": [{"Bucket": BUCKET, "Key": "events/2026/11/25/13/orders+a%2Bb%2520c.gz"}],
                   "BatchInput": {"keyEncoding": "url"}}),
        ),
    ] {
        let _ = std::fs::remove_dir_all(w.out());
        let h = w.handler(w.s3_stores(), None);
        let out = w
            .handle(&h, &event, later())
            .unwrap_or_else(|e| panic!("{fixture_name}: {e}"));
        let n = event["Items"].as_array().unwrap().len();
        assert_eq!(out["processed"], n, "{fixture_name}: {out}");
        assert_eq!(out["dead_lettered"], 0, "{fixture_name}: {out}");
        assert_eq!(out["results"][0]["key"], KB, "{fixture_name}");
        assert_eq!(out["results"][0]["rows"], 5, "{fixture_name}");
        assert_eq!(w.rows(KB).len(), 5, "{fixture_name}");
        if n == 2 {
            assert_eq!(out["rows"], 8, "{fixture_name}");
            assert_eq!(w.rows(KA).len(), 3, "{fixture_name}");
        }
    }
    // The raw key read as URL-encoded names another object: S3 says it does not exist, and
    // that permanent failure is dead-lettered while the batch succeeds.
    let out = w.handle(
        &h,
        &json!({"Items": [{"Bucket": BUCKET, "Key": KB}], "BatchInput": {"keyEncoding": "url"}}),
        later(),
    )
    .unwrap();
    assert_eq!(out["dead_lettered"], 1, "{out}");
    assert_eq!(
        out["results"][0]["key"],
        "events/2026/11/25/13/orders a b c.gz"
    );
}

/// Feeds objects slowly (64 bytes per pause): an object that outlives the invocation.
struct Slow {
    inner: Arc<dyn ObjectStore>,
    pause: Duration,
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

impl ObjectStore for Slow {
    fn open(&self, object: &mut ObjectRef) -> Result<Opened, Error> {
        let mut opened = self.inner.open(object)?;
        if object.key.contains("big") {
            opened.reader = Box::new(SlowReader {
                inner: opened.reader,
                pause: self.pause,
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

#[test]
fn near_the_deadline_the_batch_stops_taking_objects_and_fails_for_a_retry() {
    let w = World::new();
    let big = "events/2026/11/25/13/big.json";
    // ~67 KB fed 64 bytes per 4 ms: four seconds or more, far past the deadline.
    w.rt.block_on(moto::put(&w.moto.s3(), BUCKET, big, ndjson(6000)));
    let rt = &w.rt;
    let slow: Arc<dyn ObjectStore> = Arc::new(Slow {
        // (The store keeps the runtime it is made in: the one that drives the handler.)
        inner: rt.block_on(async { Arc::new(S3Store::new(w.moto.s3(), BUCKET)) }),
        pause: Duration::from_millis(4),
    });
    let mut h = w.handler(Arc::new(move |_: &str| slow.clone()), None);
    h.concurrency = 1;
    h.margin = Duration::from_millis(1000);
    let event = json!({"Items": [{"Key": KA}, {"Key": big}, {"Key": KB}],
                       "BatchInput": {"bucket": BUCKET}});
    // The first object is quick; the second is still running when the time is up, and the
    // third must not start.
    // (Nothing starts after 2 s, objects in flight give up at 2.5 s: time enough for the first
    // object on a loaded machine.)
    let deadline = Instant::now() + Duration::from_millis(3000);
    let (result, answered_at) = rt.block_on(async {
        let r = h.handle(&event, deadline, "r").await;
        (r, Instant::now())
    });
    assert!(
        answered_at < deadline,
        "answered {:?} late",
        answered_at - deadline
    );
    match result.unwrap_err() {
        HandlerError::MapRetry {
            failed,
            total,
            first,
        } => {
            assert_eq!((failed, total), (2, 3));
            assert!(first.contains(big) && first.contains("time"), "{first}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(w.rows(KA).len(), 3, "the finished object is committed");
    assert!(w.rows(big).is_empty(), "no partial output");
    assert!(w.rows(KB).is_empty(), "not started");

    // Step Functions' Retry runs the batch again after an interval. The abandoned object may
    // still hold its claim for a moment (its thread stops at its next deadline check): that
    // attempt is retried too, as the state machine's Retry would.
    let mut h = h;
    h.stores = w.s3_stores();
    h.concurrency = 4;
    let mut attempts = 0;
    let out = loop {
        attempts += 1;
        match w.handle(&h, &event, later()) {
            Ok(out) => break out,
            Err(HandlerError::MapRetry { first, .. }) if attempts < 20 => {
                assert!(first.contains("another worker"), "{first}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("{e}"),
        }
    };
    // KA was done by the first attempt; KB by whichever retry first ran it.
    assert_eq!(out["results"][0]["outcome"], "already_done");
    assert_eq!(out["results"][1]["outcome"], "processed");
    assert_eq!(out["results"][1]["rows"], 6000);
    let kb = &out["results"][2]["outcome"];
    assert!(
        kb == "processed" || (kb == "already_done" && attempts > 1),
        "{out}"
    );
    assert_eq!(w.rows(KB).len(), 5);
    assert_eq!(w.rows(KA).len(), 3);
    assert_eq!(w.rows(big).len(), 6000);
}

#[test]
fn a_batch_of_many_items_keeps_its_output_under_the_state_size_limit() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), Some(BUCKET));
    let pad = "p".repeat(200);
    let items: Vec<Value> = (0..3000)
        .map(|i| json!({"Key": format!("events/{pad}/{i}/"), "Size": 0}))
        .chain([json!({"Key": KA})])
        .collect();
    let out = w.handle(&h, &json!({ "Items": items }), later()).unwrap();
    assert!(
        out.to_string().len() < 256 * 1024,
        "{}",
        out.to_string().len()
    );
    assert_eq!(out["items"], 3001);
    assert_eq!(out["skipped"], 3000);
    assert_eq!(out["processed"], 1);
    assert_eq!(out["rows"], 3);
    let kept = out["results"].as_array().unwrap().len() as u64;
    assert!(kept > 0 && kept < 3001);
    assert_eq!(out["results_omitted"].as_u64().unwrap() + kept, 3001);
}

/// `invoke` answers what Lambda would: a batch to retry is a `FirehoseReplayTransient` error
/// (the type the state machine's Retry names).
#[test]
fn a_batch_to_retry_is_the_transient_error_type_step_functions_retries() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("buckets").join(BUCKET);
    let p = bucket.join(KA);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, gzip(&ndjson(3))).unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, json!({"Items": [{"Key": KA}]}).to_string()).unwrap();
    let run = |timeout: &str| {
        let out = bin()
            .current_dir(dir.path())
            .args(["invoke", "--event"])
            .arg(&event)
            .args(["--buckets"])
            .arg(dir.path().join("buckets"))
            .args(["--timeout", timeout, "--map-bucket", BUCKET])
            .args(["--sink", "ndjson:out", "--ledger", "none"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), v)
    };
    // One second is less than the default 10 s deadline margin: nothing may start.
    let (code, v) = run("1");
    assert_eq!(code, Some(1));
    assert_eq!(v["errorType"], "FirehoseReplayTransient", "{v}");
    assert!(v["errorMessage"].as_str().unwrap().contains(KA), "{v}");
    let (code, v) = run("60");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["rows"], 3);
    assert!(Path::new(
        &dir.path()
            .join("out")
            .join(BUCKET)
            .join(format!("{KA}.ndjson"))
    )
    .exists());
}

/// Hand-written manifests and `BatchInput`s spell field names as their authors like: `Bucket`
/// in `BatchInput` (as the items spell it), `KEY`, `bucket`. All name the same objects.
#[test]
fn field_names_in_any_capitalisation_name_the_same_objects() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), None);
    let event = json!({
        "Items": [{"KEY": KA, "SIZE": "52"}, {"key": KB, "BUCKET": BUCKET}],
        "BatchInput": {"Bucket": BUCKET},
    });
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(out["processed"], 2, "{out}");
    assert_eq!(out["rows"], 8, "{out}");
    assert_eq!(out["results"][0]["bucket"], BUCKET);
    assert_eq!(out["results"][0]["key"], KA);
    assert_eq!(out["results"][1]["key"], KB);
    assert_eq!(w.rows(KA).len(), 3);
    assert_eq!(w.rows(KB).len(), 5);
}

/// S3 Inventory reports carry only the fields they were configured with: a report without
/// `LastModifiedDate` is still an inventory (URL-encoded keys), and a report that lists versions
/// has delete-marker rows, which hold nothing to read and are skipped, not dead-lettered.
#[test]
fn inventory_rows_without_last_modified_date_and_delete_markers() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), None);
    let event = json!({"Items": [
        {"Bucket": BUCKET, "Key": "events/2026/11/25/13/orders+a%2Bb%2520c.gz", "Size": "60",
         "ETag": "", "IsMultipartUploaded": "false", "StorageClass": "STANDARD"},
        {"Bucket": BUCKET, "Key": KA, "VersionId": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
         "IsLatest": "true", "IsDeleteMarker": "true", "Size": ""},
    ]});
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(out["processed"], 1, "{out}");
    assert_eq!(out["dead_lettered"], 0, "{out}");
    assert_eq!(out["skipped"], 1, "{out}");
    assert_eq!(out["rows"], 5, "{out}");
    assert_eq!(out["results"][0]["key"], KB);
    assert_eq!(
        out["results"][1],
        json!({"key": KA, "outcome": "skipped", "reason": "delete_marker"})
    );
    assert_eq!(w.rows(KB).len(), 5);
}

/// An item's ETag that is not the object's (the object was rewritten after the listing; here:
/// the developer guide's example ETag, as written) can never match on a retry of the same
/// batch: the object is dead-lettered saying so, and the batch succeeds.
#[test]
fn an_item_whose_etag_is_not_the_objects_is_dead_lettered_and_the_batch_succeeds() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), Some(BUCKET));
    let event = json!({"Etag": "\"05704fbdccb224cb01c59005bebbad28\"", "Key": KB,
        "LastModified": 1668699881, "Size": 60, "StorageClass": "STANDARD"});
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(out["dead_lettered"], 1, "{out}");
    assert_eq!(out["rows"], 0, "{out}");
    let r = &out["results"][0];
    assert_eq!(r["key"], KB);
    assert_eq!(r["outcome"], "dead_lettered");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("05704fbdccb224cb01c59005bebbad28"),
        "{r}"
    );
}

/// A manifest may name an object twice (two listings merged, a hand-made list): within one
/// batch it is replayed once, the repeat reported as skipped, and the batch needs no retry.
#[test]
fn an_object_named_twice_in_a_batch_is_replayed_once() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), Some(BUCKET));
    let event = json!({"Items": [{"Key": KA}, {"Key": KB}, {"Key": KA}]});
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(out["items"], 3, "{out}");
    assert_eq!(out["processed"], 2, "{out}");
    assert_eq!(out["skipped"], 1, "{out}");
    assert_eq!(out["rows"], 8, "{out}");
    assert_eq!(
        out["results"][2],
        json!({"key": KA, "outcome": "skipped", "reason": "duplicate"})
    );
    assert_eq!(w.rows(KA).len(), 3);
}

/// S3 throttles one object of the batch (transient) while the others finish: the batch fails
/// with the error the state machine retries, and its retry replays only that object — the
/// finished one is skipped by the ledger, and no row is written twice.
struct Throttled {
    inner: Arc<dyn ObjectStore>,
    key: &'static str,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl ObjectStore for Throttled {
    fn open(&self, object: &mut ObjectRef) -> Result<Opened, Error> {
        if object.key == self.key && self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::new(
                firehose_replay::error::Stage::Fetch,
                firehose_replay::error::Class::Transient,
                firehose_replay::error::Cause::Remote("GetObject: SlowDown (HTTP 503)".into()),
            ));
        }
        self.inner.open(object)
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

#[test]
fn a_throttled_object_fails_the_batch_and_its_retry_replays_only_that_object() {
    let w = World::new();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let store: Arc<dyn ObjectStore> = Arc::new(Throttled {
        inner: w
            .rt
            .block_on(async { Arc::new(S3Store::new(w.moto.s3(), BUCKET)) }),
        key: KB,
        down: down.clone(),
    });
    let h = w.handler(Arc::new(move |_: &str| store.clone()), None);
    let event = w.with_real_etags(json!({
        "Items": [
            {"Etag": "", "Key": KA, "Size": 52},
            {"Etag": "", "Key": KB, "Size": 60},
        ],
        "BatchInput": {"bucket": BUCKET},
    }));
    match w.handle(&h, &event, later()).unwrap_err() {
        HandlerError::MapRetry {
            failed,
            total,
            first,
        } => {
            assert_eq!((failed, total), (1, 2));
            assert!(first.contains(KB) && first.contains("SlowDown"), "{first}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(w.rows(KA).len(), 3);
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(out["already_done"], 1, "{out}");
    assert_eq!(out["processed"], 1, "{out}");
    assert_eq!(out["rows"], 5, "{out}");
    assert_eq!(out["results"][0]["outcome"], "already_done");
    assert_eq!(out["results"][1]["outcome"], "processed");
    assert_eq!(w.rows(KA).len(), 3);
    assert_eq!(w.rows(KB).len(), 5);
}

/// The developer guide's `ItemSelector` example wraps each item as `{"index", "value"}`; with
/// the bucket selected beside it, a listObjectsV2 item names its object.
#[test]
fn an_item_selector_wrapped_item_names_its_object() {
    let w = World::new();
    let h = w.handler(w.s3_stores(), None);
    let event = json!({"Items": [
        {"index": 0, "bucket": BUCKET, "value": {"Key": KB, "LastModified": 1668699881,
            "Size": 60, "StorageClass": "STANDARD"}},
        {"index": 1, "value": {"Bucket": BUCKET, "Key": KA}},
    ]});
    let out = w.handle(&h, &event, later()).unwrap();
    assert_eq!(out["processed"], 2, "{out}");
    assert_eq!(out["rows"], 8, "{out}");
    assert_eq!(out["results"][0]["key"], KB);
    assert_eq!(out["results"][1]["key"], KA);
    assert_eq!(w.rows(KB).len(), 5);
}

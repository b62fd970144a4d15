//! `plan-map` against S3 on moto: the manifest it writes (raw keys, the range only), the ASL
//! definition checked field by field against the Step Functions developer guide's Map, and
//! the manifest's items fed through the real handler in the batches the definition asks for,
//! as the Map would. Not run here: a real Step Functions execution. moto's Step Functions
//! (5.2.5) can execute definitions, but its ASL grammar has no `ItemBatcher` (it refuses the
//! definition) nor JSON Lines input, and it runs Lambda tasks only in Docker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use firehose_replay::dead_letter::DeadLetterDir;
use firehose_replay::ledger::NoLedger;
use firehose_replay::pipeline::Settings;
use firehose_replay::retry::ObjectRetry;
use firehose_replay::runner::Shared;
use firehose_replay::sink::ndjson::NdjsonDir;
use firehose_replay::trigger::handler::{Handler, S3Stores};
use serde_json::{json, Value};

use crate::moto::{self, Moto};
use crate::support::{bin, gzip, ndjson};

const ARCHIVE: &str = "archive";
const PLANS: &str = "plans";

/// Objects of the range (key, records), and objects outside it.
const IN_RANGE: &[(&str, usize)] = &[
    ("events/2026/11/25/13/s-1-2026-11-25-13-00-00-a.gz", 3),
    ("events/2026/11/25/13/s-1-2026-11-25-13-30-00-b c+d%.gz", 4),
    ("events/2026/11/25/14/s-1-2026-11-25-14-00-00-e.gz", 5),
];
const OUTSIDE: &[&str] = &[
    "events/2026/11/25/12/s-1-2026-11-25-12-59-00-x.gz",
    "events/2026/11/25/15/s-1-2026-11-25-15-00-00-y.gz",
    "events/processing-failed/2026/11/25/13/z.gz",
];

fn setup() -> (Moto, tokio::runtime::Runtime) {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, ARCHIVE).await;
        moto::create_bucket(&s3, PLANS).await;
        for (k, n) in IN_RANGE {
            moto::put(&s3, ARCHIVE, k, gzip(&ndjson(*n))).await;
        }
        for k in OUTSIDE {
            moto::put(&s3, ARCHIVE, k, gzip(&ndjson(1))).await;
        }
    });
    (moto, rt)
}

fn plan_map(moto: &Moto, dir: &std::path::Path, args: &[&str]) -> (Value, String) {
    let out = bin()
        .current_dir(dir)
        .envs(moto.env())
        .args(["plan-map", "s3://archive/events/"])
        .args(["--from", "2026-11-25T13", "--to", "2026-11-25T14"])
        .args([
            "--function",
            "arn:aws:lambda:us-east-1:123456789012:function:replay",
        ])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let asl = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (asl, stderr)
}

fn only_fields(v: &Value, allowed: &[&str], required: &[&str], what: &str) {
    let keys: BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    for k in &keys {
        assert!(allowed.contains(k), "{what}: undocumented field {k}");
    }
    for r in required {
        assert!(keys.contains(r), "{what}: missing {r}");
    }
}

/// The definition's structure against the fields the developer guide documents for a
/// Distributed Map (JSONPath), its ItemReader, ItemBatcher, ItemProcessor and ResultWriter.
fn check_definition(asl: &Value) {
    only_fields(
        asl,
        &["Comment", "StartAt", "States"],
        &["StartAt", "States"],
        "top",
    );
    let start = asl["StartAt"].as_str().unwrap();
    let map = &asl["States"][start];
    only_fields(
        map,
        &[
            "Type",
            "Comment",
            "Label",
            "ItemReader",
            "ItemBatcher",
            "ItemProcessor",
            "ItemSelector",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ResultWriter",
            "ResultPath",
            "ResultSelector",
            "InputPath",
            "OutputPath",
            "Retry",
            "Catch",
            "Next",
            "End",
        ],
        &["Type", "ItemReader", "ItemProcessor", "ResultWriter"],
        "Map state",
    );
    assert_eq!(map["Type"], "Map");
    assert!(map["End"] == true || map["Next"].is_string());
    let reader = &map["ItemReader"];
    only_fields(
        reader,
        &["Resource", "ReaderConfig", "Parameters"],
        &["Resource", "Parameters"],
        "ItemReader",
    );
    assert_eq!(reader["Resource"], "arn:aws:states:::s3:getObject");
    let input_type = reader["ReaderConfig"]["InputType"].as_str().unwrap();
    assert!(["CSV", "JSON", "JSONL", "MANIFEST"].contains(&input_type));
    if input_type == "CSV" {
        assert!(["FIRST_ROW", "GIVEN"].contains(
            &reader["ReaderConfig"]["CSVHeaderLocation"]
                .as_str()
                .unwrap()
        ));
    }
    let batcher = &map["ItemBatcher"];
    only_fields(
        batcher,
        &[
            "MaxItemsPerBatch",
            "MaxItemsPerBatchPath",
            "MaxInputBytesPerBatch",
            "MaxInputBytesPerBatchPath",
            "BatchInput",
        ],
        &[],
        "ItemBatcher",
    );
    assert!(batcher["MaxInputBytesPerBatch"].as_u64().unwrap() <= 256 * 1024);
    let processor = &map["ItemProcessor"];
    only_fields(
        processor,
        &["ProcessorConfig", "StartAt", "States"],
        &["ProcessorConfig", "StartAt", "States"],
        "ItemProcessor",
    );
    assert_eq!(processor["ProcessorConfig"]["Mode"], "DISTRIBUTED");
    assert!(["STANDARD", "EXPRESS"].contains(
        &processor["ProcessorConfig"]["ExecutionType"]
            .as_str()
            .unwrap()
    ));
    let task = &processor["States"][processor["StartAt"].as_str().unwrap()];
    assert_eq!(task["Type"], "Task");
    assert_eq!(task["Resource"], "arn:aws:states:::lambda:invoke");
    assert_eq!(task["Parameters"]["Payload.$"], "$");
    assert_eq!(task["OutputPath"], "$.Payload");
    assert_eq!(task["End"], true);
    let retry = task["Retry"].as_array().unwrap();
    assert_eq!(retry[0]["ErrorEquals"], json!(["FirehoseReplayTransient"]));
    for r in retry {
        only_fields(
            r,
            &[
                "ErrorEquals",
                "IntervalSeconds",
                "MaxAttempts",
                "BackoffRate",
                "MaxDelaySeconds",
                "JitterStrategy",
            ],
            &["ErrorEquals"],
            "Retrier",
        );
    }
    let writer = &map["ResultWriter"];
    assert_eq!(writer["Resource"], "arn:aws:states:::s3:putObject");
    let pct = map["ToleratedFailurePercentage"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&pct));
    assert!(map["MaxConcurrency"].as_u64().unwrap() >= 1);
}

#[test]
fn plan_map_writes_the_ranges_manifest_and_a_definition_the_handler_serves() {
    let (moto, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let (asl, stderr) = plan_map(
        &moto,
        dir.path(),
        &[
            "--manifest",
            "s3://plans/runs/nov.jsonl",
            "--max-concurrency",
            "2",
        ],
    );
    check_definition(&asl);
    let map = &asl["States"]["Replay"];
    assert_eq!(
        map["ItemReader"]["ReaderConfig"],
        json!({"InputType": "JSONL"})
    );
    assert_eq!(
        map["ItemReader"]["Parameters"],
        json!({"Bucket": PLANS, "Key": "runs/nov.jsonl"})
    );
    assert_eq!(
        map["ResultWriter"]["Parameters"],
        json!({"Bucket": PLANS, "Prefix": "runs/nov-results/"})
    );
    // Three small objects over at most two children: two per batch.
    assert_eq!(map["ItemBatcher"]["MaxItemsPerBatch"], 2);
    assert_eq!(map["MaxConcurrency"], 2);
    assert!(stderr.contains("3 objects"), "{stderr}");
    assert!(stderr.contains("\"max_items_per_batch\":2"), "{stderr}");

    // The manifest: the range's objects, raw keys, nothing else.
    let text = rt.block_on(async {
        let o = moto
            .s3()
            .get_object()
            .bucket(PLANS)
            .key("runs/nov.jsonl")
            .send()
            .await
            .unwrap();
        String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
    });
    let items: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&str> = items.iter().map(|i| i["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, IN_RANGE.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    assert!(items
        .iter()
        .all(|i| i["Bucket"] == ARCHIVE && i["Size"].as_u64().unwrap() > 0));

    // What the Map does with it: batches of MaxItemsPerBatch items, each through the handler.
    let work = tempfile::tempdir().unwrap();
    let h = rt.block_on(async {
        Handler {
            stores: Arc::new(S3Stores::new(moto.s3())),
            shared: Shared {
                settings: Arc::new(Settings::default()),
                sink: Arc::new(NdjsonDir::new(work.path().join("out"))),
                dead_letters: Arc::new(DeadLetterDir::new(work.path().join("dead"))),
                ledger: Arc::new(NoLedger::default()),
                force: false,
                worker: Arc::from("test"),
                retry: ObjectRetry::default(),
                object_timeout: None,
            },
            concurrency: 2,
            margin: Duration::from_millis(200),
            metrics: None,
            map_bucket: None,
        }
    });
    let per_batch = map["ItemBatcher"]["MaxItemsPerBatch"].as_u64().unwrap() as usize;
    let mut rows = 0;
    for chunk in items.chunks(per_batch) {
        let event = json!({ "Items": chunk });
        let out = rt
            .block_on(h.handle(&event, Instant::now() + Duration::from_secs(60), "r"))
            .unwrap();
        assert_eq!(out["processed"], chunk.len(), "{out}");
        rows += out["rows"].as_u64().unwrap();
    }
    assert_eq!(rows, IN_RANGE.iter().map(|(_, n)| *n as u64).sum::<u64>());
}

#[test]
fn a_csv_manifest_to_a_local_file_reads_its_location_from_the_execution_input() {
    let (moto, _rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let (asl, stderr) = plan_map(&moto, dir.path(), &["--manifest", "plan.csv"]);
    check_definition(&asl);
    let map = &asl["States"]["Replay"];
    assert_eq!(
        map["ItemReader"]["ReaderConfig"],
        json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"})
    );
    assert_eq!(
        map["ItemReader"]["Parameters"],
        json!({"Bucket.$": "$.manifest.bucket", "Key.$": "$.manifest.key"})
    );
    assert_eq!(
        map["ResultWriter"]["Parameters"],
        json!({"Bucket.$": "$.results.bucket", "Prefix.$": "$.results.prefix"})
    );
    assert!(stderr.contains("execution input"), "{stderr}");
    let csv = std::fs::read_to_string(dir.path().join("plan.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("Bucket,Key,Size"));
    let keys: Vec<&str> = lines.map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(keys, IN_RANGE.iter().map(|(k, _)| *k).collect::<Vec<_>>());
}

#[test]
fn an_empty_range_is_an_error_and_writes_no_manifest() {
    let (moto, _rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .envs(moto.env())
        .args([
            "plan-map",
            "s3://archive/events/",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-01",
        ])
        .args(["--function", "replay", "--manifest", "plan.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no objects"));
    assert!(!dir.path().join("plan.jsonl").exists());
    // Nor a temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(out.stdout.is_empty());
}

#[test]
fn a_year_of_hourly_prefixes_is_planned_from_a_local_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    // 8,760 hourly prefixes are listed; objects in the first hour of each month and the last
    // hour of the year (files are slow to make on a loaded machine), and one in 2026 that is
    // not planned.
    let mut hours: Vec<String> = (1..=12).map(|m| format!("2025/{m:02}/01/00")).collect();
    hours.push("2025/12/31/23".into());
    hours.push("2026/01/01/00".into());
    for h in &hours {
        let d = root.join(h);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("s-1-{}.gz", h.replace('/', "-"))), b"x").unwrap();
    }
    let out = bin()
        .current_dir(dir.path())
        .args([
            "plan-map",
            "archive",
            "--from",
            "2025-01-01",
            "--to",
            "2025-12-31",
        ])
        .args([
            "--function",
            "replay",
            "--manifest",
            "year.jsonl",
            "--asl",
            "asl.json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "the definition went to --asl");
    let manifest = std::fs::read_to_string(dir.path().join("year.jsonl")).unwrap();
    let keys: Vec<String> = manifest
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["Key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let want: Vec<String> = hours[..13]
        .iter()
        .map(|h| format!("{h}/s-1-{}.gz", h.replace('/', "-")))
        .collect();
    assert_eq!(keys, want);
    assert!(stderr.contains("8760 hours, 13 objects"), "{stderr}");
    let asl: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("asl.json")).unwrap()).unwrap();
    check_definition(&asl);
    // 13 objects over up to 100 children: one per batch.
    assert_eq!(
        asl["States"]["Replay"]["ItemBatcher"]["MaxItemsPerBatch"],
        1
    );
}

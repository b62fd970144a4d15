//! Retries, dead-letter destinations and redrive, with the real binary: the fault-injecting
//! BigQuery server as the sink, moto for S3 and SQS dead letters.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::bigquery_faults::{records, FakeBigQuery, Reply};
use crate::cli::files_under;
use crate::moto::{self, Moto};
use crate::support::{bin, expected, gzip, key_on_one_of, sample_root, utc_days_since};

const KEY: &str =
    "2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";

/// A local bucket `arch/` below `work` holding one object of `n` records.
fn archive(work: &Path, n: usize, bad: &[usize]) {
    let p = work.join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, gzip(&records(n, bad))).unwrap();
}

fn run(work: &Path, fake: &FakeBigQuery, args: &[&str]) -> (Output, String) {
    let out = bin()
        .current_dir(work)
        .args(args)
        .args([
            "--sink",
            "bigquery:test-proj.bi.events",
            "--bigquery-mode",
            "insert-all",
            "--bigquery-endpoint",
            &fake.endpoint,
        ])
        .args(["--retry-min-delay-ms", "5", "--ledger", "none"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn table_ids(fake: &FakeBigQuery) -> BTreeSet<String> {
    fake.table.lock().unwrap().keys().cloned().collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_corrupt_object_is_dead_lettered_at_once_without_retries() {
    let work = tempfile::tempdir().unwrap();
    let p = work.path().join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let gz = gzip(&records(100, &[]));
    std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    let fake = FakeBigQuery::start(Box::new(|_, _| Reply::Ok));
    let (out, stderr) = run(
        work.path(),
        &fake,
        &["replay", "arch", "--max-attempts", "5"],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("retrying"),
        "permanent failures are not retried: {stderr}"
    );
    let dl = read_json(
        &work
            .path()
            .join(format!("dead-letter/arch/{KEY}.object.json")),
    );
    assert_eq!(dl["class"], "permanent");
    assert_eq!(dl["stage"], "decompress");
    assert_eq!(dl["attempts"], 1);
}

#[test]
fn a_sink_failing_twice_then_succeeding_needs_no_dead_letter_and_accepted_batches_are_not_resent() {
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), 200, &[]);
    // The batch starting at row 100 fails twice; the sink gives up on it at once
    // (--insert-max-attempts 1), so the object as a whole is retried.
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let fake = FakeBigQuery::start(Box::new(move |_, rows| {
        if rows[0].1["n"] == 100 && f.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::Status(503, "backendError", "Backend error")
        } else {
            Reply::Ok
        }
    }));
    let (out, stderr) = run(
        work.path(),
        &fake,
        &[
            "replay",
            "arch",
            "--batch-rows",
            "100",
            "--insert-max-attempts",
            "1",
            "--max-attempts",
            "3",
            "--max-in-flight",
            "1",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    assert!(!work.path().join("dead-letter").exists(), "no dead letter");
    assert_eq!(table_ids(&fake).len(), 200);
    let sends = fake.sends();
    let table = fake.table.lock().unwrap().clone();
    for (id, row) in &table {
        let n = row["n"].as_u64().unwrap();
        let expected = if n < 100 { 1 } else { 3 };
        assert_eq!(
            sends[id], expected,
            "row {n}: the accepted batch is not sent again"
        );
    }
}

#[test]
fn a_sink_that_keeps_failing_is_tried_max_attempts_times_then_dead_lettered_and_redriven_once_cleared(
) {
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), 50, &[]);
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let fake = FakeBigQuery::start(Box::new(move |_, _| {
        if h.load(Ordering::SeqCst) {
            Reply::Ok
        } else {
            Reply::Status(503, "backendError", "Backend error")
        }
    }));
    let (out, stderr) = run(
        work.path(),
        &fake,
        &[
            "replay",
            "arch",
            "--insert-max-attempts",
            "1",
            "--max-attempts",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(fake.requests().len(), 3, "exactly --max-attempts tries");
    let letter = work
        .path()
        .join(format!("dead-letter/arch/{KEY}.object.json"));
    let dl = read_json(&letter);
    assert_eq!(dl["version"], 1);
    assert_eq!(dl["object"]["bucket"], "arch");
    assert_eq!(dl["object"]["key"], KEY);
    assert_eq!(dl["object"]["etag"].as_str().unwrap().len(), 32);
    assert!(dl["object"].get("version_id").is_some());
    assert_eq!(dl["stage"], "sink");
    assert_eq!(dl["class"], "transient");
    assert_eq!(dl["attempts"], 3);
    assert!(dl["error"].as_str().unwrap().contains("503"), "{dl}");
    assert!(dl["first_failed_at"].as_str().unwrap().ends_with('Z'));
    assert!(dl["last_failed_at"].is_string());

    // Listing changes nothing.
    let (out, stderr) = run(work.path(), &fake, &["redrive", "dead-letter", "--dry-run"]);
    assert!(out.status.success(), "{stderr}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("1 dead letters") && listing.contains(KEY),
        "{listing}"
    );
    assert!(letter.exists());

    // The fault clears; redrive delivers every row once and removes the letter.
    healthy.store(true, Ordering::SeqCst);
    let root = work.path().join("arch");
    let (out, stderr) = run(
        work.path(),
        &fake,
        &[
            "redrive",
            "dir:dead-letter",
            "--source-root",
            root.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{stderr}");
    assert!(!letter.exists(), "the letter is removed after success");
    assert_eq!(table_ids(&fake).len(), 50);
}

#[test]
fn refused_rows_are_redriven_with_their_original_row_ids() {
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), 20, &[4, 9]);
    let strict = Arc::new(AtomicBool::new(true));
    let s = strict.clone();
    let fake = FakeBigQuery::start(Box::new(move |_, rows| {
        let bad: Vec<(usize, &'static str, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| s.load(Ordering::SeqCst) && r.1["amount"].is_string())
            .map(|(i, _)| {
                (
                    i,
                    "invalid",
                    "Cannot convert value to integer (bad value): lots".to_string(),
                )
            })
            .collect();
        if bad.is_empty() {
            Reply::Ok
        } else {
            Reply::RowErrors(bad)
        }
    }));
    let (out, stderr) = run(
        work.path(),
        &fake,
        &["replay", "arch", "--skip-invalid-rows"],
    );
    assert!(out.status.success(), "{stderr}");
    let first: BTreeSet<String> = table_ids(&fake);
    assert_eq!(first.len(), 18);
    let letter = work
        .path()
        .join(format!("dead-letter/arch/{KEY}.records.json"));
    let dl = read_json(&letter);
    let ids_in_letter: Vec<String> = dl["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["stage"], "sink");
            let raw = base64_decode(r["raw"].as_str().unwrap());
            let v: Value = serde_json::from_slice(&raw).unwrap();
            v["_row_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids_in_letter.len(), 2);
    // The table's schema is fixed (here: the server accepts strings now).
    strict.store(false, Ordering::SeqCst);
    let (out, stderr) = run(work.path(), &fake, &["redrive", "dead-letter"]);
    assert!(out.status.success(), "{stderr}");
    assert!(!letter.exists());
    let all = table_ids(&fake);
    assert_eq!(all.len(), 20);
    for id in &ids_in_letter {
        assert!(all.contains(id), "redriven under its original row ID");
    }
    // Redriving again finds nothing and sends nothing.
    let before = fake.requests().len();
    let (out, _) = run(work.path(), &fake, &["redrive", "dead-letter"]);
    assert!(out.status.success());
    assert_eq!(fake.requests().len(), before);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn with_a_fifth_of_sink_requests_failing_one_redrive_delivers_every_valid_record_once() {
    // Deterministic "random" failures: every request whose hash of its first insertId and
    // its arrival number falls in the lowest fifth fails.
    let fake = FakeBigQuery::start(Box::new(|n, rows| {
        let h = blake3::hash(format!("{n}:{}", rows[0].0).as_bytes());
        if h.as_bytes()[0] < 51 {
            Reply::Status(503, "backendError", "Backend error")
        } else {
            Reply::Ok
        }
    }));
    let work = tempfile::tempdir().unwrap();
    let root = sample_root();
    let out = bin()
        .current_dir(work.path())
        .args([
            "backfill",
            root.to_str().unwrap(),
            "--from",
            "2026-11-25",
            "--to",
            "2026-11-26",
        ])
        .args([
            "--include-error-output",
            "--sink",
            "bigquery:test-proj.bi.events",
        ])
        .args([
            "--bigquery-endpoint",
            &fake.endpoint,
            "--bigquery-mode",
            "insert-all",
            "--batch-rows",
            "10",
        ])
        // A request whose answer is lost is retried after the client timeout; keep it short.
        .args(["--bigquery-timeout-secs", "3"])
        .args([
            "--insert-max-attempts",
            "1",
            "--max-attempts",
            "2",
            "--retry-min-delay-ms",
            "5",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
    // One redrive, whatever the backfill left: failed objects (if the dice said so) and the
    // records letter of the three malformed sample records — unless the dice failed their whole
    // object, which then leaves an object letter instead.
    let records_letter_before = files_under(&work.path().join("dead-letter"))
        .iter()
        .any(|f| f.to_string_lossy().ends_with(".records.json"));
    let redrive = bin()
        .current_dir(work.path())
        .args([
            "redrive",
            "dead-letter",
            "--source-root",
            root.to_str().unwrap(),
        ])
        .args([
            "--sink",
            "bigquery:test-proj.bi.events",
            "--bigquery-mode",
            "insert-all",
            "--bigquery-endpoint",
            &fake.endpoint,
        ])
        .args([
            "--batch-rows",
            "10",
            "--insert-max-attempts",
            "5",
            "--retry-min-delay-ms",
            "5",
        ])
        .output()
        .unwrap();
    let redrive_err = String::from_utf8_lossy(&redrive.stderr);
    if records_letter_before {
        // The three malformed sample records still fail (they are invalid JSON), and say so.
        assert_eq!(redrive.status.code(), Some(1), "{redrive_err}");
        assert!(redrive_err.contains("records still fail"), "{redrive_err}");
    } else {
        // Their object was redriven whole: delivered, its bad records lettered afresh (below).
        assert_eq!(redrive.status.code(), Some(0), "{redrive_err}");
    }
    let want = expected();
    assert_eq!(
        table_ids(&fake).len() as u64,
        want["rows"].as_u64().unwrap(),
        "every valid record is in the sink, once per row ID\n{stderr}"
    );
    // Any row sent more than once carried the same row ID (the table is keyed by insertId,
    // which is the row's _row_id: checked on every row).
    for (id, row) in fake.table.lock().unwrap().iter() {
        assert_eq!(row["_row_id"].as_str(), Some(id.as_str()));
    }
    // The invalid records are dead-lettered with their reasons.
    let mut reasons: Vec<String> = Vec::new();
    for f in files_under(&work.path().join("dead-letter")) {
        let dl = read_json(&f);
        let Some(records) = dl["records"].as_array() else {
            panic!("an object letter is left after the redrive: {dl}");
        };
        reasons.extend(
            records
                .iter()
                .map(|r| r["error"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(
        reasons.len() as u64,
        want["record_errors"].as_u64().unwrap()
    );
    assert!(reasons.iter().all(|e| !e.is_empty()));
}

#[test]
fn dead_letters_go_to_s3_by_date_and_to_sqs_with_an_s3_overflow_and_are_redriven_from_there() {
    let moto = Moto::start();
    let s3 = moto.s3();
    moto::rt().block_on(moto::create_bucket(&s3, "dlq-bucket"));
    let queue_url = moto
        .python(
            r#"
import boto3
print(boto3.client("sqs").create_queue(QueueName="dead-letters")["QueueUrl"])
"#,
        )
        .trim()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    // 300 rows the sink refuses, ~1 KiB each: their letter is over SQS's 256 KiB limit.
    let p = work.path().join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let pad = "p".repeat(1000);
    let data: String = (0..300)
        .map(|i| format!("{{\"n\":{i},\"amount\":\"x\",\"pad\":\"{pad}\"}}\n"))
        .collect();
    std::fs::write(&p, gzip(data.as_bytes())).unwrap();
    // And a corrupt object.
    let corrupt = KEY.replace("13-00-00", "13-30-00");
    std::fs::write(
        work.path().join("arch").join(&corrupt),
        b"\x1f\x8b\x08\x00garbage",
    )
    .unwrap();
    let strict = Arc::new(AtomicBool::new(true));
    let s = strict.clone();
    let fake = FakeBigQuery::start(Box::new(move |_, rows| {
        if !s.load(Ordering::SeqCst) {
            return Reply::Ok;
        }
        Reply::RowErrors(
            (0..rows.len())
                .map(|i| (i, "invalid", "no such field: pad.".to_string()))
                .collect(),
        )
    }));
    let cli = |args: &[&str], dead_letter: &str| {
        let out = bin()
            .current_dir(work.path())
            .envs(moto.env())
            .args(args)
            .args([
                "--sink",
                "bigquery:test-proj.bi.events",
                "--bigquery-mode",
                "insert-all",
                "--bigquery-endpoint",
                &fake.endpoint,
            ])
            .args(["--ledger", "none", "--dead-letter", dead_letter])
            // Every row is refused: kept as a records letter, not failed as a whole object.
            .args(["--max-record-error-ratio", "off"])
            .args(["--dead-letter-overflow", "s3://dlq-bucket/overflow/"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // S3: one JSON object per letter, below the day it failed.
    let started = chrono::Utc::now();
    let (code, _, stderr) = cli(&["replay", "arch"], "s3://dlq-bucket/letters/");
    assert_eq!(code, Some(1), "{stderr}");
    let listed = moto.python(
        r#"
import boto3
for o in boto3.client("s3").list_objects_v2(Bucket="dlq-bucket", Prefix="letters/").get("Contents", []):
    print(o["Key"])
"#,
    );
    let days = utc_days_since(started);
    let keys: Vec<&str> = listed.lines().collect();
    assert_eq!(keys.len(), 2, "{listed}");
    key_on_one_of(
        &keys,
        "letters/",
        &days,
        &format!("/arch/{KEY}.records.json"),
    );
    key_on_one_of(
        &keys,
        "letters/",
        &days,
        &format!("/arch/{corrupt}.object.json"),
    );
    let (code, stdout, stderr) = cli(
        &["redrive", "s3://dlq-bucket/letters/", "--dry-run"],
        "s3://dlq-bucket/letters/",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("2 dead letters") && stdout.contains("records (300)"),
        "{stdout}"
    );

    // SQS: a message per letter; the big one lives in the overflow prefix.
    let sqs_dl = format!("sqs:{queue_url}");
    let (code, _, stderr) = cli(&["replay", "arch"], &sqs_dl);
    assert_eq!(code, Some(1), "{stderr}");
    let attrs = moto.python(&format!(
        r#"
import boto3, json
sqs = boto3.client("sqs")
out = []
for m in sqs.receive_message(QueueUrl="{queue_url}", MaxNumberOfMessages=10, WaitTimeSeconds=1,
                             MessageAttributeNames=["All"], VisibilityTimeout=0).get("Messages", []):
    body = json.loads(m["Body"])
    out.append({{"kind": m["MessageAttributes"]["kind"]["StringValue"],
                "class": m["MessageAttributes"]["class"]["StringValue"],
                "location": body.get("location"), "size": len(m["Body"])}})
print(json.dumps(sorted(out, key=lambda o: o["kind"])))
"#
    ));
    let attrs: Value = serde_json::from_str(attrs.trim()).unwrap();
    assert_eq!(attrs[0]["kind"], "object");
    assert_eq!(attrs[0]["class"], "permanent");
    assert!(
        attrs[0]["location"].is_null(),
        "a small letter is the message itself"
    );
    assert_eq!(attrs[1]["kind"], "records");
    assert!(
        attrs[1]["location"]
            .as_str()
            .unwrap()
            .starts_with("s3://dlq-bucket/overflow/"),
        "{attrs}"
    );

    // The fix lands; a redrive from SQS delivers the refused rows and deletes their message.
    strict.store(false, Ordering::SeqCst);
    let (code, _, stderr) = cli(&["redrive", &sqs_dl], &sqs_dl);
    // The corrupt object still fails (and is dead-lettered again).
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(table_ids(&fake).len(), 300, "{stderr}");
}

/// Rows of the NDJSON outputs below `dir` (ledger files aside).
fn ndjson_rows(dir: &Path) -> usize {
    files_under(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .map(|p| crate::support::read_ndjson(p).len())
        .sum()
}

#[test]
fn an_object_letter_of_a_local_run_is_redriven_from_its_recorded_path_and_an_old_letter_from_s3() {
    let work = tempfile::tempdir().unwrap();
    let p = work.path().join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let gz = gzip(&records(100, &[]));
    std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "arch", "--sink", "ndjson:out"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let letter = work
        .path()
        .join(format!("dead-letter/arch/{KEY}.object.json"));
    let dl = read_json(&letter);
    let root = work.path().join("arch").canonicalize().unwrap();
    assert_eq!(dl["source"]["kind"], "local", "{dl}");
    assert_eq!(dl["source"]["root"], root.display().to_string(), "{dl}");

    // Fixed; redriven from elsewhere, with no --source-root and no way to reach S3.
    std::fs::write(&p, &gz).unwrap();
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let dead = work.path().join("dead-letter");
    let sink = format!("ndjson:{}", work.path().join("out").display());
    let started = std::time::Instant::now();
    let out = bin()
        .current_dir(&elsewhere)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "redrive",
            &format!("dir:{}", dead.display()),
            "--sink",
            &sink,
        ])
        .args(["--dead-letter", &format!("dir:{}", dead.display())])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "{took:?}: {stderr}"
    );
    assert!(!letter.exists(), "the letter is removed: {stderr}");
    assert_eq!(ndjson_rows(&work.path().join("out")), 100, "{stderr}");

    // A letter written before `source` existed names an S3 object: it is read from S3 (moto),
    // even though a local folder of the bucket's name is right here.
    let moto = Moto::start();
    let s3 = moto.s3();
    moto::rt().block_on(async {
        moto::create_bucket(&s3, "arch").await;
        moto::put(&s3, "arch", KEY, gzip(&records(3, &[]))).await;
    });
    std::fs::create_dir_all(letter.parent().unwrap()).unwrap();
    let old = serde_json::json!({
        "version": 1,
        "object": {"bucket": "arch", "key": KEY, "etag": null, "version_id": null},
        "stage": "fetch", "class": "transient", "error": "an old failure", "attempts": 3,
        "first_failed_at": "2026-11-25T13:10:00.000Z", "last_failed_at": "2026-11-25T13:10:00.000Z"
    });
    std::fs::write(&letter, serde_json::to_vec(&old).unwrap()).unwrap();
    let out = bin()
        .current_dir(work.path())
        .envs(moto.env())
        .args(["redrive", "dead-letter", "--sink", "ndjson:out-s3"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!letter.exists(), "{stderr}");
    assert_eq!(
        ndjson_rows(&work.path().join("out-s3")),
        3,
        "the S3 object, not the local file: {stderr}"
    );

    // A local source that is gone fails at once and stays local in the letter that replaces it.
    let mut gone = old.clone();
    gone["source"] = serde_json::json!({"kind": "local", "root": "/nonexistent/arch"});
    std::fs::write(&letter, serde_json::to_vec(&gone).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let out = bin()
        .current_dir(work.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["redrive", "dead-letter", "--sink", "ndjson:out-gone"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{stderr}"
    );
    let dl = read_json(&letter);
    assert_eq!(dl["class"], "permanent", "{dl}");
    assert_eq!(dl["source"]["root"], "/nonexistent/arch", "{dl}");
}

/// `redrive s3://…` without `--dead-letter`: records that still fail stay in that bucket (the
/// letter is neither deleted from S3 nor moved to `./dead-letter`), the failure is not blamed on
/// the destination, and no empty `<key>.redriven.ndjson` is left behind.
#[test]
fn a_letter_that_still_fails_stays_where_it_was_read_from() {
    let moto = Moto::start();
    moto::rt().block_on(moto::create_bucket(&moto.s3(), "dlq"));
    let work = tempfile::tempdir().unwrap();
    let key = "2026/12/01/10/x.json";
    let p = work.path().join("arch").join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"{\"a\":1}\nnot json\n").unwrap();
    let list = || {
        moto.python(
            r#"
import boto3
for o in boto3.client("s3").list_objects_v2(Bucket="dlq").get("Contents", []):
    print(o["Key"])
"#,
        )
    };
    let out = bin()
        .current_dir(work.path())
        .envs(moto.env())
        .args(["replay", "arch", "--sink", "ndjson:out"])
        .args(["--dead-letter", "s3://dlq/letters/"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let before = list();
    assert_eq!(before.lines().count(), 1, "{before}");
    assert!(before.contains(".records.json"), "{before}");

    let out = bin()
        .current_dir(work.path())
        .envs(moto.env())
        .args(["redrive", "s3://dlq/letters/", "--sink", "ndjson:out"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 records still fail"), "{stderr}");
    assert!(!stderr.contains("dead-letter destination"), "{stderr}");
    assert!(!work.path().join("dead-letter").exists(), "{stderr}");
    assert_eq!(list(), before, "{stderr}");
    let redriven: Vec<_> = files_under(&work.path().join("out"))
        .into_iter()
        .filter(|p| p.display().to_string().ends_with(".redriven.ndjson"))
        .collect();
    assert!(redriven.is_empty(), "{redriven:?}");
}

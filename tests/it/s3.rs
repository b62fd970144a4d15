//! S3 as a source, the ledgers, and backfills over Firehose prefixes — against a moto server
//! through the real AWS SDK, with the real binary.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::cli::files_under;
use crate::moto::{self, Moto};
use crate::support::{bin, expected, gzip, read_ndjson, sample_root};

fn cli(moto: &Moto, work: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.current_dir(work).envs(moto.env()).args(args);
    c
}

fn run(moto: &Moto, work: &Path, args: &[&str]) -> (Output, String) {
    let out = cli(moto, work, args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// Rows of every output file below `dir`, keyed by path relative to `dir`, without `_row_id`.
fn rows_without_ids(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let rows = read_ndjson(&p)
                .into_iter()
                .map(|mut r| {
                    r.as_object_mut().unwrap().remove("_row_id");
                    r
                })
                .collect();
            (p.strip_prefix(dir).unwrap().display().to_string(), rows)
        })
        .collect()
}

#[test]
fn backfill_from_s3_matches_the_local_backfill_and_a_rerun_skips_everything() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, "archive").await;
        moto::upload_tree(&s3, "archive", "firehose/", &sample_root()).await;
    });
    let work = tempfile::tempdir().unwrap();
    let range = [
        "--from",
        "2026-11-25",
        "--to",
        "2026-11-26",
        "--include-error-output",
    ];
    let mut args = vec!["backfill", "s3://archive/firehose/"];
    args.extend(range);
    let (out, stderr) = run(&moto, work.path(), &args);
    assert!(out.status.success(), "{stderr}");

    let local = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(local.path())
        .arg("backfill")
        .arg(sample_root())
        .args(range)
        .output()
        .unwrap();
    assert!(out.status.success());
    let from_s3 = rows_without_ids(&work.path().join("out/archive/firehose"));
    let from_disk = rows_without_ids(&local.path().join("out/firehose"));
    assert_eq!(
        from_s3.len(),
        expected()["objects"].as_u64().unwrap() as usize
    );
    assert_eq!(from_s3, from_disk);

    let (out, stderr) = run(&moto, work.path(), &args);
    assert!(out.status.success(), "{stderr}");
    let n = expected()["objects"].clone();
    assert!(
        stderr.contains(&format!(
            "objects:  {n} (0 ok, {n} skipped by the ledger, 0 failed)"
        )),
        "{stderr}"
    );
}

#[test]
fn listing_paginates_past_1000_keys_in_one_hour() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, "many").await;
        futures::stream::iter(0..1100)
            .for_each_concurrent(16, |i| {
                let s3 = s3.clone();
                async move {
                    let key = format!("p/2026/11/25/13/s-1-2026-11-25-13-00-00-{i:05}");
                    moto::put(&s3, "many", &key, format!("{{\"i\":{i}}}\n").into_bytes()).await;
                }
            })
            .await;
        moto::put(&s3, "many", "p/2026/11/25/14/later", b"{}\n".to_vec()).await;
    });
    let work = tempfile::tempdir().unwrap();
    let (out, stderr) = run(
        &moto,
        work.path(),
        &[
            "backfill",
            "s3://many/p/",
            "--from",
            "2026-11-25T13",
            "--to",
            "2026-11-25T13",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.starts_with("plan: 1 hours (2026-11-25T13 .. 2026-11-25T13), 1100 objects"),
        "{plan}"
    );
    assert!(
        !work.path().join("out").exists(),
        "a dry run touches nothing"
    );
}

#[test]
fn hour_ranges_cross_midnight_month_and_year_and_to_is_inclusive() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    let hours = [
        "2026/11/30/23",
        "2026/12/01/00",
        "2026/12/31/22",
        "2026/12/31/23",
        "2027/01/01/00",
        "2027/01/01/01",
    ];
    rt.block_on(async {
        moto::create_bucket(&s3, "edges").await;
        for h in hours {
            moto::put(&s3, "edges", &format!("{h}/obj"), b"{}\n".to_vec()).await;
        }
    });
    let work = tempfile::tempdir().unwrap();
    let plan = |from: &str, to: &str| -> Vec<String> {
        let (out, stderr) = run(
            &moto,
            work.path(),
            &[
                "backfill",
                "s3://edges/",
                "--from",
                from,
                "--to",
                to,
                "--dry-run",
            ],
        );
        assert!(out.status.success(), "{stderr}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        plan("2026-12-31T23", "2027-01-01T00"),
        ["edges/2026/12/31/23/obj", "edges/2027/01/01/00/obj"]
    );
    assert_eq!(
        plan("2026-11-30", "2026-11-30"),
        ["edges/2026/11/30/23/obj"],
        "a date alone covers the whole day"
    );
    assert_eq!(
        plan("2026-11-30T23", "2026-12-01"),
        ["edges/2026/11/30/23/obj", "edges/2026/12/01/00/obj"]
    );
    assert_eq!(
        plan("2027-01-01T01", "2027-01-01T01"),
        ["edges/2027/01/01/01/obj"]
    );
}

#[test]
fn custom_prefix_templates_select_exactly_their_hours() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, "custom").await;
        for key in [
            "events/dt=2026-11-25/h=13/a",
            "events/dt=2026-11-25/h=14/b",
            "events/dt=2026-11-26/h=13/c",
            "tenants/t=acme/2026/11/25/13/d",
            "tenants/t=zen/2026/11/25/13/e",
            "tenants/t=acme/2026/11/25/14/f",
            "tenants/processing-failed/2026/11/25/13/g",
        ] {
            moto::put(&s3, "custom", key, b"{}\n".to_vec()).await;
        }
    });
    let work = tempfile::tempdir().unwrap();
    let plan = |root: &str, layout: &str| -> Vec<String> {
        let (out, stderr) = run(
            &moto,
            work.path(),
            &[
                "backfill",
                root,
                "--from",
                "2026-11-25T13",
                "--to",
                "2026-11-25T13",
                "--layout",
                layout,
                "--dry-run",
            ],
        );
        assert!(out.status.success(), "{stderr}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        plan(
            "s3://custom/events/",
            "dt=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/"
        ),
        ["custom/events/dt=2026-11-25/h=13/a"]
    );
    assert_eq!(
        plan(
            "s3://custom/tenants/",
            "t=!{partitionKeyFromQuery:tenant}/!{timestamp:yyyy/MM/dd/HH}/"
        ),
        [
            "custom/tenants/t=acme/2026/11/25/13/d",
            "custom/tenants/t=zen/2026/11/25/13/e"
        ]
    );
}

#[test]
fn keys_with_spaces_and_non_ascii_and_a_missing_object() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    let key = "2026/11/25/13/my events ünï+code (1).gz";
    rt.block_on(async {
        moto::create_bucket(&s3, "odd").await;
        moto::put(&s3, "odd", key, gzip(b"{\"a\":1}\n{\"a\":2}\n")).await;
    });
    let work = tempfile::tempdir().unwrap();
    let uri = format!("s3://odd/{key}");
    let (out, stderr) = run(
        &moto,
        work.path(),
        &["replay", &uri, "s3://odd/2026/11/25/13/deleted.gz"],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows = read_ndjson(&work.path().join(format!("out/odd/{key}.ndjson")));
    assert_eq!(rows.len(), 2);
    assert!(
        stderr.contains(
            "failed: odd/2026/11/25/13/deleted.gz: fetch failed: object not found [permanent]"
        ),
        "{stderr}"
    );
    assert!(work
        .path()
        .join("dead-letter/odd/2026/11/25/13/deleted.gz.object.json")
        .exists());
}

#[test]
fn an_object_written_by_motos_firehose_is_replayed() {
    let moto = Moto::start();
    // moto's own Firehose implementation writes the object: key layout and record framing come
    // from someone else's code.
    let listed = moto.python(
        r#"
import boto3, json
s3 = boto3.client("s3", endpoint_url=__import__("os").environ["AWS_ENDPOINT_URL"])
fh = boto3.client("firehose", endpoint_url=__import__("os").environ["AWS_ENDPOINT_URL"])
s3.create_bucket(Bucket="fh-dest")
fh.create_delivery_stream(
    DeliveryStreamName="clicks",
    ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::123456789012:role/firehose",
        "BucketARN": "arn:aws:s3:::fh-dest",
        "Prefix": "raw/",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
    },
)
fh.put_record_batch(
    DeliveryStreamName="clicks",
    Records=[{"Data": json.dumps({"click": i}).encode()} for i in range(5)],
)
for o in s3.list_objects_v2(Bucket="fh-dest")["Contents"]:
    print(o["Key"])
"#,
    );
    let keys: Vec<&str> = listed.lines().collect();
    assert_eq!(keys.len(), 1, "{listed}");
    let work = tempfile::tempdir().unwrap();
    // The day Firehose filed it under (`raw/YYYY/MM/DD/HH/…`), not today: the two differ when
    // the test runs across midnight.
    let day = keys[0]
        .strip_prefix("raw/")
        .and_then(|k| k.get(..10))
        .expect("a Firehose key")
        .replace('/', "-");
    let (out, stderr) = run(
        &moto,
        work.path(),
        &[
            "backfill",
            "s3://fh-dest/raw/",
            "--from",
            &day,
            "--to",
            &day,
        ],
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("objects:  1 (1 ok"), "{stderr}");
    let rows = read_ndjson(&work.path().join(format!("out/fh-dest/{}.ndjson", keys[0])));
    let clicks: Vec<i64> = rows.iter().map(|r| r["click"].as_i64().unwrap()).collect();
    assert_eq!(clicks, [0, 1, 2, 3, 4]);
}

/// Objects of one hour, each big enough that a run takes a while.
fn put_many(moto: &Moto, bucket: &str, n: usize) {
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, bucket).await;
        futures::stream::iter(0..n)
            .for_each_concurrent(8, |i| {
                let s3 = s3.clone();
                async move {
                    let body: String = (0..2000)
                        .map(|j| {
                            format!("{{\"obj\":{i},\"n\":{j},\"pad\":\"{}\"}}\n", "x".repeat(64))
                        })
                        .collect();
                    moto::put(
                        &s3,
                        bucket,
                        &format!("2026/11/25/13/s-1-{i:03}.gz"),
                        gzip(body.as_bytes()),
                    )
                    .await;
                }
            })
            .await;
    });
}

fn ledger_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn mtimes(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::metadata(&p).unwrap().modified().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_backfill_killed_with_sigkill_resumes_without_redoing_finished_objects() {
    let moto = Moto::start();
    let n = 40;
    put_many(&moto, "kill", n);
    let work = tempfile::tempdir().unwrap();
    let args = [
        "backfill",
        "s3://kill/",
        "--from",
        "2026-11-25T13",
        "--to",
        "2026-11-25T13",
        "--concurrency",
        "1",
    ];
    let ledger = work.path().join("out/.ledger.jsonl");
    let mut child = cli(&moto, work.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger_lines(&ledger).len() < 5 {
        assert!(Instant::now() < deadline, "the first run made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_first = ledger_lines(&ledger);
    assert!(done_first.len() < n, "killed part-way");
    let before = mtimes(&work.path().join("out/kill"));

    let (out, stderr) = run(&moto, work.path(), &args);
    assert!(out.status.success(), "{stderr}");
    let expect = format!(
        "objects:  {n} ({} ok, {} skipped by the ledger, 0 failed)",
        n - done_first.len(),
        done_first.len()
    );
    assert!(stderr.contains(&expect), "{expect}\n{stderr}");
    let done = ledger_lines(&ledger);
    let keys: HashSet<String> = done
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), n);
    assert_eq!(done.len(), n, "no object finished twice");
    let after = mtimes(&work.path().join("out/kill"));
    for e in &done_first {
        let p = work
            .path()
            .join("out/kill")
            .join(format!("{}.ndjson", e["key"].as_str().unwrap()));
        let p = p.display().to_string();
        assert_eq!(before.get(&p), after.get(&p), "{p} was rewritten");
    }
    for i in 0..n {
        let rows = read_ndjson(
            &work
                .path()
                .join(format!("out/kill/2026/11/25/13/s-1-{i:03}.gz.ndjson")),
        );
        assert_eq!(rows.len(), 2000, "object {i}");
    }
}

#[test]
fn two_concurrent_backfills_with_an_s3_ledger_write_each_object_once() {
    let moto = Moto::start();
    let n = 30;
    put_many(&moto, "shared", n);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let args = [
        "backfill",
        "s3://shared/",
        "--from",
        "2026-11-25T13",
        "--to",
        "2026-11-25T13",
        "--ledger",
        "s3://shared/_ledger/",
        "--concurrency",
        "2",
    ];
    let ca = cli(&moto, a.path(), &args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let cb = cli(&moto, b.path(), &args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    let written = |d: &Path| -> HashSet<String> {
        files_under(&d.join("out/shared"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let (wa, wb) = (written(a.path()), written(b.path()));
    assert!(
        wa.is_disjoint(&wb),
        "an object was written by both workers: {:?}",
        wa.intersection(&wb).collect::<Vec<_>>()
    );
    assert_eq!(wa.len() + wb.len(), n);
    let rt = moto::rt();
    let markers = rt.block_on(async {
        let s3 = moto.s3();
        let l = s3
            .list_objects_v2()
            .bucket("shared")
            .prefix("_ledger/")
            .send()
            .await
            .unwrap();
        l.contents()
            .iter()
            .map(|o| o.key().unwrap().to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(
        markers.iter().filter(|k| k.ends_with(".done")).count(),
        n,
        "{markers:?}"
    );
    assert_eq!(
        markers.iter().filter(|k| k.ends_with(".claim")).count(),
        0,
        "claims are released"
    );
}

#[test]
fn backfill_manifest_lists_the_range_for_s3_batch_operations_without_processing_it() {
    use firehose_replay::trigger::keys::url_decode_key;
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    let keys = [
        "fh/2026/11/25/12/before-range.gz",
        "fh/2026/11/25/13/a b+c ü.gz",
        "fh/2026/11/25/14/plain.gz",
        "fh/2026/11/25/15/after-range.gz",
    ];
    rt.block_on(async {
        moto::create_bucket(&s3, "arch").await;
        for k in keys {
            moto::put(&s3, "arch", k, gzip(b"{\"a\":1}\n")).await;
        }
    });
    let work = tempfile::tempdir().unwrap();
    let (out, stderr) = run(
        &moto,
        work.path(),
        &[
            "backfill",
            "s3://arch/fh/",
            "--from",
            "2026-11-25T13",
            "--to",
            "2026-11-25T14",
            "--manifest",
            "manifest.csv",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    let manifest = std::fs::read_to_string(work.path().join("manifest.csv")).unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    // URL-encoded as S3 Batch Operations requires: no raw spaces, commas or plus signs.
    assert!(
        lines
            .iter()
            .all(|l| l.matches(',').count() == 1 && !l.contains(' ') && !l.contains('+')),
        "{manifest}"
    );
    let decoded: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let (b, k) = l.split_once(',').unwrap();
            (b.to_string(), url_decode_key(k))
        })
        .collect();
    assert_eq!(
        decoded,
        vec![
            ("arch".to_string(), keys[1].to_string()),
            ("arch".to_string(), keys[2].to_string()),
        ]
    );
    // Nothing was processed.
    assert!(!work.path().join("out").exists());
    // A local root cannot feed S3 Batch Operations.
    let (out, stderr) = run(
        &moto,
        work.path(),
        &[
            "backfill",
            ".",
            "--from",
            "2026-11-25",
            "--to",
            "2026-11-25",
            "--manifest",
            "m.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--manifest needs an s3:// root"),
        "{stderr}"
    );
}

#[test]
fn the_s3_ledger_hands_a_staged_commit_to_the_next_claim_and_forgets_it_once_done() {
    use firehose_replay::ledger::s3::S3Ledger;
    use firehose_replay::ledger::{Begin, Finished, Ledger, Staged};
    use firehose_replay::object::ObjectRef;
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(moto::create_bucket(&s3, "ledger"));
    let ledger = {
        let _in = rt.enter();
        S3Ledger::new(
            s3,
            "ledger".into(),
            "l/".into(),
            "w1".into(),
            Duration::from_secs(1),
        )
    };
    let mut o = ObjectRef::new("src", "2026/11/25/13/a b.gz");
    o.etag = Some("e1".into());
    let staged = Staged {
        token: "projects/p/datasets/d/tables/t/streams/abc".into(),
        records: 5,
        rows: 4,
        record_errors: 1,
    };
    let Begin::Proceed(claim) = ledger.begin(&o, false).unwrap() else {
        panic!("fresh object")
    };
    assert_eq!(claim.staged, None);
    ledger.stage(&o, &claim, &staged).unwrap();
    // The worker dies here; its claim expires (1 s lease) and another worker takes over.
    std::thread::sleep(Duration::from_millis(1100));
    let Begin::Proceed(taken) = ledger.begin(&o, false).unwrap() else {
        panic!("an expired claim is taken over")
    };
    assert_eq!(taken.staged.as_ref(), Some(&staged));
    let summary = Finished {
        bucket: "src".into(),
        key: o.key.clone(),
        etag: "e1".into(),
        records: 5,
        rows: 4,
        record_errors: 1,
        finished_at: "t".into(),
        worker: "w2".into(),
    };
    ledger.finish(&o, taken, &summary).unwrap();
    assert!(matches!(ledger.begin(&o, false).unwrap(), Begin::Done));
    let Begin::Proceed(forced) = ledger.begin(&o, true).unwrap() else {
        panic!("--force")
    };
    assert_eq!(forced.staged, None, "finish removed the staged marker");
}

#[test]
fn a_long_backfill_starts_processing_while_it_lists_and_finds_exactly_the_range() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    // Four months of hours (2,880 LISTs: seconds against moto, whose LISTs are slow),
    // objects in a handful of them (and just outside the range).
    let inside = [
        "2025/01/01/00",
        "2025/01/01/01",
        "2025/03/17/09",
        "2025/04/01/00",
        "2025/04/30/23",
    ];
    let outside = ["2024/12/31/23", "2025/05/01/00"];
    rt.block_on(async {
        moto::create_bucket(&s3, "long").await;
        for (i, h) in inside.iter().chain(&outside).enumerate() {
            let body = format!("{{\"n\":{i}}}\n{{\"n\":{}}}\n", i + 100);
            moto::put(
                &s3,
                "long",
                &format!("fh/{h}/s-1-{i}.gz"),
                gzip(body.as_bytes()),
            )
            .await;
        }
    });
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (out, stderr) = run(
        &moto,
        work.path(),
        &[
            "backfill",
            "s3://long/fh/",
            "--from",
            "2025-01-01",
            "--to",
            "2025-04-30",
            "--sink",
            "ndjson:out",
            "--progress-interval",
            "1",
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let files: Vec<String> = files_under(&work.path().join("out"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .map(|p| {
            p.strip_prefix(work.path().join("out"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let want: Vec<String> = inside
        .iter()
        .enumerate()
        .map(|(i, h)| format!("long/fh/{h}/s-1-{i}.gz.ndjson"))
        .collect();
    assert_eq!(files, want, "{stderr}");
    assert!(stderr.contains("objects:  5 (5 ok"), "{stderr}");
    // The first objects were done before the last hours were listed.
    let first_done = stderr.find("object done").expect("object done lines");
    let listed = stderr
        .find("backfill listed")
        .expect("the listing's end is logged");
    assert!(
        first_done < listed,
        "the first object waited for the whole listing ({took:?}):\n{stderr}"
    );
    assert_eq!(stderr.matches("object done").count(), 5, "{stderr}");
    let listed_line = stderr[listed..].lines().next().unwrap();
    assert!(
        listed_line.contains("hours=2880") && listed_line.contains("objects=5"),
        "{listed_line}"
    );
    // Progress, if a line came, counts hours listed.
    if let Some(p) = stderr.lines().find(|l| l.contains(" progress")) {
        assert!(p.contains("hours_listed="), "{p}");
    }
    eprintln!("a 2,880-hour backfill took {took:?}:\n{stderr}");
}

#[test]
fn content_encoding_names_the_compression_where_the_bytes_cannot() {
    // Firehose's Snappy objects carry `Content-Encoding: snappy-java`. A whole one decodes under
    // any key; one cut inside its header is a snappy-java truncation, not text with bad records.
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    let whole = firehose_replay::decode::snappy_java::encode(
        b"{\"a\":1}\n{\"a\":2}\n",
        firehose_replay::decode::snappy_java::DEFAULT_BLOCK,
    );
    rt.block_on(async {
        moto::create_bucket(&s3, "enc").await;
        for (key, body) in [
            ("2026/11/25/13/whole", whole.clone()),
            ("2026/11/25/13/cut.json", whole[..6].to_vec()),
        ] {
            s3.put_object()
                .bucket("enc")
                .key(key)
                .content_encoding("snappy-java")
                .body(aws_sdk_s3::primitives::ByteStream::from(body))
                .send()
                .await
                .unwrap();
        }
    });
    let work = tempfile::tempdir().unwrap();
    let (out, stderr) = run(
        &moto,
        work.path(),
        &["replay", "s3://enc/2026/11/25/13/whole"],
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rows = read_ndjson(&work.path().join("out/enc/2026/11/25/13/whole.ndjson"));
    assert_eq!(rows.len(), 2);
    let (out, stderr) = run(
        &moto,
        work.path(),
        &["replay", "s3://enc/2026/11/25/13/cut.json"],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("snappy-java") && stderr.contains("[permanent]"),
        "{stderr}"
    );
    assert!(!work
        .path()
        .join("out/enc/2026/11/25/13/cut.json.ndjson")
        .exists());
}

#[test]
fn a_layout_without_the_hour_selects_objects_by_the_write_time_in_their_names() {
    // Dynamic partitioning with only `partitionKeyFromQuery` fields: the prefix says nothing of
    // time, so an hour's backfill takes each object's hour from its name (which, as documented
    // for dynamic partitioning, has no `-<version>-` segment).
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    let name = |t: &str| format!("orders-{t}-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.gz");
    rt.block_on(async {
        moto::create_bucket(&s3, "dyn").await;
        for key in [
            format!("t=acme/{}", name("2026-11-25-12-59-59")),
            format!("t=acme/{}", name("2026-11-25-13-00-00")),
            format!("t=zen/{}", name("2026-11-25-13-59-59")),
            format!("t=zen/{}", name("2026-11-25-14-00-00")),
            format!("t=zen/{}", name("2026-11-26-13-30-00")),
            "t=zen/no-time-in-this-name.gz".to_string(),
        ] {
            moto::put(&s3, "dyn", &key, gzip(b"{}\n")).await;
        }
    });
    let work = tempfile::tempdir().unwrap();
    let plan = |layout: &str| -> (Vec<String>, String) {
        let (out, stderr) = run(
            &moto,
            work.path(),
            &[
                "backfill",
                "s3://dyn/",
                "--from",
                "2026-11-25T13",
                "--to",
                "2026-11-25T13",
                "--layout",
                layout,
                "--dry-run",
            ],
        );
        assert!(out.status.success(), "{stderr}");
        let keys = String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        (keys, stderr)
    };
    let (keys, stderr) = plan("t=!{partitionKeyFromQuery:tenant}/");
    assert_eq!(
        keys,
        [
            format!("dyn/t=acme/{}", name("2026-11-25-13-00-00")),
            format!("dyn/t=zen/{}", name("2026-11-25-13-59-59")),
        ]
    );
    assert!(stderr.contains("carry no Firehose write time"), "{stderr}");
}

#[test]
fn replay_of_a_prefix_without_its_trailing_slash_reads_the_objects_below_it() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, "pfx").await;
        moto::put(&s3, "pfx", "ev/2026/12/01/10/a.gz", gzip(b"{\"a\":1}\n")).await;
        moto::put(&s3, "pfx", "ev/2026/12/01/10/b.gz", gzip(b"{\"a\":2}\n")).await;
        // Not below `…/10/`: a key that merely starts with the same characters.
        moto::put(&s3, "pfx", "ev/2026/12/01/100.gz", gzip(b"{\"a\":3}\n")).await;
        moto::put(&s3, "pfx", "ev/2026/12/01/11", gzip(b"{\"a\":4}\n")).await;
        moto::put(&s3, "pfx", "ev/2026/12/01/11/c.gz", gzip(b"{\"a\":5}\n")).await;
    });
    let work = tempfile::tempdir().unwrap();
    let (out, stderr) = run(
        &moto,
        work.path(),
        &[
            "replay",
            "s3://pfx/ev/2026/12/01/10",
            // An object of that very name is that object, even with objects below it.
            "s3://pfx/ev/2026/12/01/11",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut got: Vec<String> = files_under(&work.path().join("out"))
        .iter()
        .map(|p| {
            p.strip_prefix(work.path().join("out"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "pfx/ev/2026/12/01/10/a.gz.ndjson",
            "pfx/ev/2026/12/01/10/b.gz.ndjson",
            "pfx/ev/2026/12/01/11.ndjson"
        ]
    );
    assert!(!work.path().join("dead-letter").exists());
}

#[test]
fn an_object_fixed_in_s3_is_not_retried_by_redrive_which_says_to_replay_it() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    let key = "2026/12/01/10/broken.gz";
    rt.block_on(async {
        moto::create_bucket(&s3, "fix").await;
        // Not gzip, though named so: the object fails as a whole.
        let mut bad = gzip(b"{\"a\":1}\n");
        bad.truncate(bad.len() / 2);
        moto::put(&s3, "fix", key, bad).await;
    });
    let work = tempfile::tempdir().unwrap();
    let uri = format!("s3://fix/{key}");
    // Listed, so the letter names the ETag that failed.
    let (out, stderr) = run(&moto, work.path(), &["replay", "s3://fix/2026/12/01/10/"]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let letter_path = work
        .path()
        .join("dead-letter/fix/2026/12/01/10/broken.gz.object.json");
    assert!(letter_path.exists(), "{stderr}");
    // The producer fixes the object in place: a new ETag.
    rt.block_on(moto::put(&s3, "fix", key, gzip(b"{\"a\":1}\n")));
    let started = Instant::now();
    let (out, stderr) = run(&moto, work.path(), &["redrive", "dir:dead-letter"]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the object changed"), "{stderr}");
    assert!(stderr.contains(&format!("replay {uri}")), "{stderr}");
    assert!(stderr.contains("[permanent]"), "{stderr}");
    // Not retried with backoff: one try.
    let letter: Value = serde_json::from_slice(&std::fs::read(&letter_path).unwrap()).unwrap();
    assert_eq!(letter["class"], "permanent", "{letter}");
    assert_eq!(letter["attempts"], 1, "{letter}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // What the message says to do delivers the new version.
    let (out, stderr) = run(&moto, work.path(), &["replay", &uri]);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rows = read_ndjson(&work.path().join(format!("out/fix/{key}.ndjson")));
    assert_eq!(rows.len(), 1);
}

//! The Iceberg sink behind the Lambda handler (`invoke` with an S3 notification) and the worker
//! (moto's SQS and S3): each object a snapshot of its own, every row once, and the same event
//! delivered again adds nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::iceberg_tables::IcebergTable;
use crate::invoke::{buckets, fixture_path, response};
use crate::support::bin;

fn invoke(work: &Path, table: &IcebergTable) -> Output {
    bin()
        .current_dir(work)
        .arg("invoke")
        .args(["--event"])
        .arg(fixture_path("s3-notification.json"))
        .arg("--buckets")
        .arg(work.join("buckets"))
        .env("FIREHOSE_REPLAY_SINK", table.sink())
        .env(
            "FIREHOSE_REPLAY_DEAD_LETTER",
            format!("dir:{}", work.join("dead").display()),
        )
        .output()
        .unwrap()
}

#[test]
fn iceberg_invoke_lands_an_s3_notifications_objects_once_and_a_redelivery_adds_nothing() {
    let work = tempfile::tempdir().unwrap();
    buckets(work.path()); // two objects: 3 and 5 records {"n": i}
    let table = IcebergTable::create(
        &work.path().join("ice"),
        "lambda.events",
        json!([["_replay_row_id", "string", true], ["n", "long", false]]),
    );
    let out = invoke(work.path(), &table);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        response(&out),
        json!({"source": "s3", "objects": 2, "outcomes": ["done", "done"]})
    );
    let check = || {
        let rows = table.rows();
        let ids: BTreeSet<&str> = rows
            .iter()
            .map(|r| r["_replay_row_id"].as_str().unwrap())
            .collect();
        assert_eq!((rows.len(), ids.len()), (8, 8), "pyiceberg: {rows:?}");
        let mut ns: Vec<u64> = rows.iter().map(|r| r["n"].as_u64().unwrap()).collect();
        ns.sort();
        assert_eq!(ns, [0, 0, 1, 1, 2, 2, 3, 4]);
        let (duck, _) = table.duckdb();
        let duck_ids: BTreeSet<&str> = duck
            .iter()
            .map(|r| r["_replay_row_id"].as_str().unwrap())
            .collect();
        assert_eq!(duck_ids, ids, "DuckDB reads the same rows");
        // A snapshot per object, each carrying its batch token.
        let snapshots = table.snapshots();
        assert_eq!(snapshots.len(), 2, "{snapshots:?}");
        assert!(snapshots
            .iter()
            .all(|s| s["firehose-replay.objects"] == json!("1")));
    };
    check();

    // The same event delivered again: the ledger has both objects; nothing is appended.
    let again = invoke(work.path(), &table);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        response(&again)["outcomes"],
        json!(["already_done", "already_done"])
    );
    check();
}

/// The worker against moto's SQS and S3 (`--until-empty`): two objects' notifications, then the
/// first delivered again; each object lands once, a snapshot each.
#[test]
fn iceberg_worker_lands_each_notified_object_once_whatever_the_deliveries() {
    use crate::worker::{create_queue, depth, put_objects, s3_event, send};

    let moto = crate::moto::Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (queue, _) = create_queue(&moto, "iceberg", 30, None);
    let keys = [
        "2026/11/25/13/i-1-2026-11-25-13-00-00-aaaa.gz",
        "2026/11/25/13/i-1-2026-11-25-13-00-00-bbbb.gz",
    ];
    put_objects(&moto, &[(keys[0], 40), (keys[1], 60)]);
    let table = IcebergTable::create(
        &work.path().join("ice"),
        "worker.events",
        json!([
            ["_replay_row_id", "string", true],
            ["s", "long", false],
            ["n", "long", false],
            ["pad", "string", false]
        ]),
    );
    let drain = || {
        let out = bin()
            .current_dir(work.path())
            .envs(moto.env())
            .args([
                "worker",
                "--queue",
                &queue,
                "--until-empty",
                "--receive-wait",
                "1",
            ])
            .args(["--sink", &table.sink(), "--dead-letter", "dir:dl"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            depth(&moto, &queue),
            (0, 0),
            "every message deleted: {stderr}"
        );
        stderr
    };
    let check = || {
        let rows = table.rows();
        let ids: BTreeSet<&str> = rows
            .iter()
            .map(|r| r["_replay_row_id"].as_str().unwrap())
            .collect();
        assert_eq!((rows.len(), ids.len()), (100, 100), "pyiceberg");
        let per_object: Vec<usize> = (0..2)
            .map(|s| rows.iter().filter(|r| r["s"] == json!(s)).count())
            .collect();
        assert_eq!(per_object, [40, 60]);
        assert_eq!(table.duckdb().0.len(), 100, "DuckDB");
        assert_eq!(table.snapshots().len(), 2, "a snapshot per object");
    };
    for key in keys {
        send(&moto, &queue, &s3_event(key).to_string());
    }
    drain();
    check();
    // The first object's notification delivered again: done already, nothing appended.
    send(&moto, &queue, &s3_event(keys[0]).to_string());
    let stderr = drain();
    assert!(stderr.contains("already"), "{stderr}");
    check();
}

//! The Iceberg sink behind the Lambda handler (`invoke` with an S3 notification): each object a
//! snapshot of its own, every row once, and the same event delivered again adds nothing.

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

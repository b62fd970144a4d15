//! Partitioned Iceberg tables: rows land in data files per partition (iceberg's transforms,
//! computed by the sink), with at most a few partitions' files open at once, and pyiceberg
//! reads each partition back exactly — by its manifests' partition values and by a scan
//! pruned on them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::harness::archive;
use crate::iceberg_tables::IcebergTable;
use crate::support::bin;

/// Day `1..=12` of December 2026 for row `r` of object `o`: the days interleave, so a batch
/// goes back to partitions it left (more days than the sink keeps open).
fn day_of(o: u64, r: u64) -> u64 {
    (o * 7 + r) % 12 + 1
}

#[test]
fn iceberg_a_day_partitioned_table_gets_its_rows_per_partition_as_pyiceberg_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::create_partitioned(
        &tmp.path().join("ice"),
        "ns.t",
        json!([
            ["_replay_row_id", "string", true],
            ["ts", "timestamptz", false],
            ["k", "long", false]
        ]),
        json!([["ts", "day"]]),
    );
    let src = tmp.path().join("src");
    let objects: Vec<(String, Vec<Value>)> = (0..3u64)
        .map(|o| {
            (
                format!("2026/12/07/10/s-1-2026-12-07-10-00-00-6a1f0c1e-2b3c-4d5e-8f90-{o:012}"),
                (0..24u64)
                    .map(|r| {
                        json!({"k": o * 100 + r,
                               "ts": format!("2026-12-{:02}T12:{r:02}:00Z", day_of(o, r))})
                    })
                    .collect(),
            )
        })
        .collect();
    archive(&src, &objects);
    let out = bin()
        .current_dir(tmp.path())
        .args(["replay", src.to_str().unwrap(), "--sink", &table.sink()])
        .args(["--ledger", "file:ledger.jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for o in 0..3u64 {
        for r in 0..24u64 {
            want.entry(format!("2026-12-{:02}", day_of(o, r)))
                .or_default()
                .push(o * 100 + r);
        }
    }
    // The manifests' partition values: each day's row count, as written.
    let partitions = table.partitions();
    let counts: BTreeMap<String, u64> = partitions
        .iter()
        .map(|p| {
            (
                p["partition"]["ts_day"].as_str().unwrap().to_string(),
                p["record_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let want_counts: BTreeMap<String, u64> = want
        .iter()
        .map(|(d, ks)| (d.clone(), ks.len() as u64))
        .collect();
    assert_eq!(counts, want_counts);
    // 12 days, at most 8 open at once: partitions left and come back to get a file more.
    let files: u64 = partitions
        .iter()
        .map(|p| p["file_count"].as_u64().unwrap())
        .sum();
    assert!(files > 12, "{partitions:?}");
    // The data files sit in their partitions' directories.
    let data: Vec<String> = crate::cli::files_under(&table.warehouse)
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    assert_eq!(data.len() as u64, files);
    assert!(
        data.iter().all(|p| p.contains("/ts_day=2026-12-")),
        "{data:?}"
    );

    // A scan pruned by partition finds each day's rows, and only them.
    for day in ["2026-12-01", "2026-12-05", "2026-12-12"] {
        let next = format!("2026-12-{:02}", day[8..].parse::<u32>().unwrap() + 1);
        let filter = format!("ts >= '{day}T00:00:00+00:00' AND ts < '{next}T00:00:00+00:00'");
        let mut ks: Vec<u64> = table
            .rows_where(&filter)
            .iter()
            .map(|r| r["k"].as_u64().unwrap())
            .collect();
        ks.sort();
        let mut expect = want[day].clone();
        expect.sort();
        assert_eq!(ks, expect, "{day}");
    }
    assert_eq!(table.rows().len(), 72);
    assert_eq!(table.duckdb().0.len(), 72);
}

#[test]
fn iceberg_create_table_auto_with_partition_by_makes_a_partitioned_table() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable {
        db: tmp.path().join("ice/catalog.db"),
        warehouse: tmp.path().join("ice/warehouse"),
        table: "auto.events".into(),
        s3: None,
    };
    std::fs::create_dir_all(&table.warehouse).unwrap();
    let src = tmp.path().join("src");
    let objects: Vec<(String, Vec<Value>)> = (0..2u64)
        .map(|o| {
            (
                format!("2026/12/07/10/s-1-2026-12-07-10-00-00-6a1f0c1e-2b3c-4d5e-8f90-{o:012}"),
                (0..20u64)
                    .map(|r| {
                        json!({"k": o * 100 + r,
                               "ts": format!("2026-12-{:02}T23:{r:02}:00+00:00", day_of(o, r))})
                    })
                    .collect(),
            )
        })
        .collect();
    archive(&src, &objects);
    let out = bin()
        .current_dir(tmp.path())
        .args(["replay", src.to_str().unwrap(), "--sink", &table.sink()])
        .args(["--ledger", "file:ledger.jsonl", "--create-table", "auto"])
        .args(["--partition-by", "day(ts), bucket[4](k)"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // `ts` was created a timestamp (a time transform takes it), not a string.
    assert_eq!(table.types()["ts"], json!("timestamptz"));

    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for o in 0..2u64 {
        for r in 0..20u64 {
            *want
                .entry(format!("2026-12-{:02}", day_of(o, r)))
                .or_default() += 1;
        }
    }
    let partitions = table.partitions();
    let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
    for p in &partitions {
        let bucket = p["partition"]["k_bucket"].as_u64().unwrap();
        assert!(bucket < 4, "{p}");
        *per_day
            .entry(p["partition"]["ts_day"].as_str().unwrap().to_string())
            .or_default() += p["record_count"].as_u64().unwrap();
    }
    assert_eq!(per_day, want);
    assert!(
        partitions.len() > want.len(),
        "bucketed within days too: {partitions:?}"
    );
    let day = "2026-12-08";
    let mut ks: Vec<u64> = table
        .rows_where(&format!(
            "ts >= '{day}T00:00:00+00:00' AND ts < '2026-12-09T00:00:00+00:00'"
        ))
        .iter()
        .map(|r| r["k"].as_u64().unwrap())
        .collect();
    ks.sort();
    let mut expect: Vec<u64> = (0..2u64)
        .flat_map(|o| {
            (0..20u64)
                .filter(move |&r| day_of(o, r) == 8)
                .map(move |r| o * 100 + r)
        })
        .collect();
    expect.sort();
    assert_eq!(ks, expect);
    assert_eq!(table.rows().len(), 40);
    assert_eq!(table.duckdb().0.len(), 40);
}

#[test]
fn iceberg_partition_by_is_refused_at_start_when_bad_or_for_an_existing_table() {
    for (extra, says) in [
        (
            vec!["--create-table", "auto", "--partition-by", "week(ts)"],
            "unknown transform `week`",
        ),
        (vec!["--partition-by", "day(ts)"], "its own partition spec"),
    ] {
        let out = bin()
            .args([
                "replay",
                "./nowhere",
                "--sink",
                "iceberg:sqlite:///x/c.db?warehouse=/x/w#n.t",
            ])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

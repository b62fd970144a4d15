//! The Iceberg sink (issue 29) beyond the conformance suite: every column type read back by
//! pyiceberg and DuckDB, one snapshot per batch carrying its token, exactly once under another
//! writer committing to the same table, and a batch written but never committed.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::archive;
use crate::iceberg_tables::IcebergTable;
use crate::support::bin;

fn replay(work: &Path, src: &Path, table: &IcebergTable, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", src.to_str().unwrap(), "--sink", &table.sink()])
        .args(["--ledger", "file:ledger.jsonl"])
        .args(extra);
    cmd
}

fn run(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key(hour: u32, n: u32) -> String {
    format!("2026/12/07/{hour:02}/s-1-2026-12-07-{hour:02}-00-00-6a1f0c1e-2b3c-4d5e-8f90-{n:012}")
}

#[test]
fn iceberg_values_land_in_every_column_type_as_pyiceberg_and_duckdb_read_them() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::create(
        &tmp.path().join("ice"),
        "analytics.events",
        json!([
            ["_replay_row_id", "string", true],
            ["s", "string", false],
            ["i", "int", false],
            ["l", "long", false],
            ["f", "float", false],
            ["d", "double", false],
            ["m", "decimal(9,2)", false],
            ["b", "boolean", false],
            ["day", "date", false],
            ["ts", "timestamp", false],
            ["tz", "timestamptz", false],
            ["st", {"struct": [["x", "long", false], ["y", "string", false]]}, false],
            ["li", {"list": "long"}, false],
            ["ma", {"map": "double"}, false]
        ]),
    );
    let good = json!({"s": "héllo", "i": 7, "l": 9_007_199_254_740_993i64, "f": 1.5,
        "d": 2.25, "m": "1234.56", "b": true, "day": "2026-12-07", "ts": "2026-12-07T15:04:05.123456",
        "tz": "2026-12-07T16:04:05+01:00", "st": {"x": 1, "y": "z"}, "li": [1, 2],
        "ma": {"a": 0.5}});
    let epoch = json!({"s": "epoch", "tz": 1_796_655_845, "ts": 1_796_655_845.5, "m": 0.1});
    let bad = json!({"s": "bad", "i": 3_000_000_000i64});
    let src = tmp.path().join("src");
    archive(&src, &[(key(15, 1), vec![good, epoch, bad])]);
    let (code, stderr) = run(replay(tmp.path(), &src, &table, &[]));
    // One record error (dead-lettered, naming the column); the others land.
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("2 rows written, 1 record errors"),
        "{stderr}"
    );

    let mut rows = table.rows();
    rows.sort_by_key(|r| r["s"].as_str().unwrap_or_default().to_string());
    assert_eq!(rows.len(), 2, "{rows:?}");
    let epoch_row = &rows[0];
    let row = &rows[1];
    assert_eq!(row["_replay_row_id"].as_str().unwrap().len(), 32, "{row}");
    for (column, want) in [
        ("s", json!("héllo")),
        ("i", json!(7)),
        ("l", json!(9_007_199_254_740_993i64)),
        ("f", json!(1.5)),
        ("d", json!(2.25)),
        ("m", json!("1234.56")),
        ("b", json!(true)),
        ("day", json!("2026-12-07")),
        ("ts", json!("2026-12-07T15:04:05.123456")),
        ("tz", json!("2026-12-07T15:04:05+00:00")),
        ("st", json!({"x": 1, "y": "z"})),
        ("li", json!([1, 2])),
        ("ma", json!({"a": 0.5})),
    ] {
        assert_eq!(row[column], want, "pyiceberg, {column}: {row}");
    }
    assert_eq!(epoch_row["tz"], json!("2026-12-07T15:04:05+00:00"));
    assert_eq!(epoch_row["ts"], json!("2026-12-07T15:04:05.500000"));
    assert_eq!(epoch_row["m"], json!("0.10"));

    let (duck, types) = table.duckdb();
    assert_eq!(duck.len(), 2, "{duck:?}");
    for (column, want) in [
        ("s", "VARCHAR"),
        ("i", "INTEGER"),
        ("l", "BIGINT"),
        ("f", "FLOAT"),
        ("d", "DOUBLE"),
        ("m", "DECIMAL(9,2)"),
        ("b", "BOOLEAN"),
        ("day", "DATE"),
        ("ts", "TIMESTAMP"),
        ("tz", "TIMESTAMP WITH TIME ZONE"),
        ("li", "BIGINT[]"),
    ] {
        assert_eq!(
            types[column],
            json!(want),
            "DuckDB's type of {column}: {types}"
        );
    }
    let d = duck.iter().find(|r| r["s"] == json!("héllo")).unwrap();
    assert_eq!(
        (&d["l"], &d["m"], &d["day"]),
        (
            &json!(9_007_199_254_740_993i64),
            &json!("1234.56"),
            &json!("2026-12-07")
        )
    );

    // The refused record is dead-lettered with the column's name and why.
    let letters = crate::cli::files_under(&tmp.path().join("dead-letter"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter: Value = serde_json::from_slice(&std::fs::read(&letters[0]).unwrap()).unwrap();
    let error = letter["records"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("column `i` (int): 3000000000 is out of range"),
        "{error}"
    );
}

#[test]
fn iceberg_a_snapshot_per_batch_carries_its_token_and_a_replay_adds_none() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::keyed(tmp.path());
    let src = tmp.path().join("src");
    let objects: Vec<(String, Vec<Value>)> = (0..5)
        .map(|o| {
            (
                key(10 + o, o),
                (0..20).map(|r| json!({"k": format!("o{o}r{r}")})).collect(),
            )
        })
        .collect();
    archive(&src, &objects);
    let (code, stderr) = run(replay(
        tmp.path(),
        &src,
        &table,
        &["--iceberg-batch-objects", "2"],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    let snapshots = table.snapshots();
    assert_eq!(snapshots.len(), 3, "5 objects, 2 a batch: {snapshots:?}");
    let mut objects: Vec<u64> = snapshots
        .iter()
        .map(|s| {
            s["firehose-replay.objects"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    objects.sort();
    assert_eq!(objects, [1, 2, 2]);
    let ledger = std::fs::read_to_string(tmp.path().join("ledger.jsonl")).unwrap();
    for s in &snapshots {
        let batch = s["firehose-replay.batch"].as_str().unwrap();
        assert!(
            ledger.contains(&format!("iceberg:{batch}")),
            "{batch} staged in {ledger}"
        );
    }
    // Few, large files: one per batch here.
    let files = walk(&table.warehouse, ".parquet");
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| f.contains("/fr-")), "{files:?}");
    assert_eq!(table.rows().len(), 100);

    let (code, stderr) = run(replay(tmp.path(), &src, &table, &[]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!((table.snapshots().len(), table.rows().len()), (3, 100));
    // An append has no unique key: --force would add every row again, so it is refused.
    let (code, stderr) = run(replay(tmp.path(), &src, &table, &["--force"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--allow-duplicates"), "{stderr}");
}

fn walk(dir: &Path, suffix: &str) -> Vec<String> {
    crate::cli::files_under(dir)
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.ends_with(suffix))
        .collect()
}

#[test]
fn iceberg_another_writer_committing_during_a_run_loses_no_row_and_doubles_none() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::keyed(tmp.path());
    let src = tmp.path().join("src");
    let objects: Vec<(String, Vec<Value>)> = (0..12)
        .map(|o| {
            (
                key(o, o),
                (0..10).map(|r| json!({"k": format!("o{o}r{r}")})).collect(),
            )
        })
        .collect();
    archive(&src, &objects);
    // Our run commits a snapshot per object while pyiceberg appends to the same table in
    // another process, again and again until the run ends.
    let mut ours = replay(tmp.path(), &src, &table, &["--iceberg-batch-objects", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut theirs = 0;
    while ours.try_wait().unwrap().is_none() || theirs == 0 {
        table.append(json!([{"_replay_row_id": format!("theirs-{theirs}"), "k": "theirs"}]));
        theirs += 1;
    }
    let out = ours.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = table.rows();
    let mine: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["k"] != json!("theirs"))
        .map(|r| r["k"].as_str().unwrap())
        .collect();
    assert_eq!(mine.len(), 120);
    assert_eq!(rows.len(), 120 + theirs, "every row once, theirs and ours");
    let batches = table
        .snapshots()
        .iter()
        .filter(|s| s.get("firehose-replay.batch").is_some())
        .count();
    assert_eq!(batches, 12);
}

/// Through the library: a batch's files written, then another process commits to the table
/// (between our write and our commit), then ours commits; a batch ID is found only once
/// committed, and committing it again (a retry after a lost answer) adds nothing.
#[test]
fn iceberg_a_batch_commits_after_another_writers_commit_and_only_once() {
    use firehose_replay::object::ObjectRef;
    use firehose_replay::row::id::ObjectSeed;
    use firehose_replay::row::Row;
    use firehose_replay::sink::iceberg::{commit, spool::ObjectSpool, Iceberg, Settings, Target};

    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::keyed(tmp.path());
    let spec = table.sink();
    let target = Target::parse(spec.strip_prefix("iceberg:").unwrap(), tmp.path()).unwrap();
    let mut object = ObjectRef::new("b", "k");
    object.etag = Some("e".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sink = Iceberg::connect(target, Settings::default()).await.unwrap();
        let shared = &sink.shared;
        let mut spool = ObjectSpool::new(shared.clone(), tmp.path().join("object.arrows"));
        let id = ObjectSeed::new(&object).id(0, &[]);
        for (n, text) in [
            r#"{"_replay_row_id":"r1","k":"ours"}"#,
            r#"{"_replay_row_id":"r2","k":"ours","x":1}"#,
        ]
        .iter()
        .enumerate()
        {
            spool
                .write_row(&Row::whole(&id, n as u64, text.as_bytes()))
                .unwrap();
        }
        assert_eq!(spool.rejected.len(), 1, "the field without a column");
        let spooled = spool.finish().unwrap();
        assert_eq!(spooled.rows, 1);
        let objects = [("b".to_string(), "k".to_string(), "e".to_string())];
        let batch = commit::batch_id(&objects);
        let files = commit::write_files(shared, &spooled.paths, &batch)
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
        // Killed here, a rerun would find no snapshot with the batch and write it again.
        assert!(!commit::committed(shared, &batch).await.unwrap());

        table.append(json!([{"_replay_row_id": "t1", "k": "theirs"}]));
        commit::append(shared, files.clone(), &batch, &objects)
            .await
            .unwrap();
        assert!(commit::committed(shared, &batch).await.unwrap());
        // Again, as after a lost answer: found, not committed twice.
        commit::append(shared, files, &batch, &objects)
            .await
            .unwrap();
    });
    let mut ks: Vec<String> = table
        .rows()
        .iter()
        .map(|r| r["k"].as_str().unwrap().to_string())
        .collect();
    ks.sort();
    assert_eq!(ks, ["ours", "theirs"]);
    assert_eq!(table.snapshots().len(), 2);
}

/// `--create-table auto`: the table is created from the first row (the row-ID and metadata
/// columns typed, the fields by their JSON value); a field a later row adds is a record error.
/// `--payload-column`: the record whole, as its JSON text.
#[test]
fn iceberg_create_table_auto_types_the_first_row_and_payload_column_keeps_records_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    archive(
        &src,
        &[(
            key(9, 1),
            vec![
                json!({"k": "a", "n": 1, "f": 1.5, "o": {"x": 1}, "b": true}),
                json!({"k": "b", "n": 2, "extra": 3}),
            ],
        )],
    );
    let table = IcebergTable {
        db: tmp.path().join("ice/catalog.db"),
        warehouse: tmp.path().join("ice/warehouse"),
        table: "auto.events".into(),
        s3: None,
    };
    let (code, stderr) = run(replay(
        tmp.path(),
        &src,
        &table,
        &[
            "--create-table",
            "auto",
            "--metadata-columns",
            "source_uri,record_ordinal",
        ],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("1 rows written, 1 record errors"),
        "{stderr}"
    );
    assert_eq!(
        table.types(),
        json!({"_replay_row_id": "string", "_source_uri": "string", "_record_ordinal": "long",
               "b": "boolean", "f": "double", "k": "string", "n": "long", "o": "string"})
    );
    let rows = table.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (&rows[0]["o"], &rows[0]["_record_ordinal"]),
        (&json!("{\"x\":1}"), &json!(0))
    );

    let raw = IcebergTable {
        table: "auto.raw".into(),
        ..table
    };
    // (A working directory of its own: a ledger of its own.)
    let work = tmp.path().join("raw");
    std::fs::create_dir_all(&work).unwrap();
    let (code, stderr) = run(replay(
        &work,
        &src,
        &raw,
        &["--create-table", "auto", "--payload-column", "raw"],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        raw.types(),
        json!({"_replay_row_id": "string", "raw": "string"})
    );
    let mut records: Vec<Value> = raw
        .rows()
        .iter()
        .map(|r| serde_json::from_str(r["raw"].as_str().unwrap()).unwrap())
        .collect();
    records.sort_by_key(|r| r["k"].as_str().unwrap().to_string());
    assert_eq!(records[1], json!({"k": "b", "n": 2, "extra": 3}));
}

/// A PostgreSQL SQL catalog (the same catalog tables, in a real server): the table created
/// there, its rows read by DuckDB from the metadata file the catalog row names.
#[test]
fn iceberg_a_postgres_catalog_holds_the_table_duckdb_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = crate::pg_server::PgServer::start();
    let src = tmp.path().join("src");
    let objects: Vec<(String, Vec<Value>)> = (0..3)
        .map(|o| {
            (
                key(o, o),
                (0..4)
                    .map(|r| json!({"k": format!("o{o}r{r}"), "n": r}))
                    .collect(),
            )
        })
        .collect();
    archive(&src, &objects);
    let sink = format!(
        "iceberg:{}?warehouse={}#pgns.events",
        pg.url(),
        tmp.path().join("warehouse").display()
    );
    let out = bin()
        .current_dir(tmp.path())
        .args([
            "replay",
            src.to_str().unwrap(),
            "--sink",
            &sink,
            "--create-table",
            "auto",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let metadata = pg.psql(
        "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = 'default' \
         AND table_namespace = 'pgns' AND table_name = 'events'",
    );
    let rows = crate::iceberg_tables::duckdb_scan(metadata.trim());
    let mut ks: Vec<&str> = rows.iter().map(|r| r["k"].as_str().unwrap()).collect();
    ks.sort();
    assert_eq!(ks.len(), 12, "{rows:?}");
    ks.dedup();
    assert_eq!(ks.len(), 12, "every row once");
}

/// A run killed between staging its batch in the ledger and the end: the ledger holds the
/// object staged with `iceberg:<batch ID>` (a line as the file ledger writes it). If no snapshot
/// carries the batch (killed before the commit), the rerun writes the object once; if one does
/// (killed after the commit, before "done"), the rerun writes nothing and records it done.
#[test]
fn iceberg_a_run_killed_between_stage_and_done_is_resolved_from_the_snapshots() {
    use md5::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::keyed(tmp.path());
    let src = tmp.path().join("src");
    let key = key(8, 1);
    let records: Vec<Value> = (0..5).map(|r| json!({"k": format!("r{r}")})).collect();
    archive(&src, &[(key.clone(), records)]);
    let etag = hex::encode(md5::Md5::digest(std::fs::read(src.join(&key)).unwrap()));
    let staged = |work: &Path, batch: &str| {
        std::fs::create_dir_all(work).unwrap();
        let line = json!({"bucket": "src", "key": key, "etag": etag, "staged": {
            "token": format!("iceberg:{batch}"), "records": 5, "rows": 5, "record_errors": 0}});
        std::fs::write(work.join("ledger.jsonl"), format!("{line}\n")).unwrap();
    };

    let killed_before_commit = tmp.path().join("before");
    staged(&killed_before_commit, "00000000deadbeef-00000000");
    let (code, stderr) = run(replay(&killed_before_commit, &src, &table, &[]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("were not committed; writing the object again"),
        "{stderr}"
    );
    assert_eq!(table.rows().len(), 5);

    let snapshots = table.snapshots();
    let batch = snapshots[0]["firehose-replay.batch"].as_str().unwrap();
    let killed_after_commit = tmp.path().join("after");
    staged(&killed_after_commit, batch);
    let (code, stderr) = run(replay(&killed_after_commit, &src, &table, &[]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("were committed; recording the object as done"),
        "{stderr}"
    );
    assert_eq!((table.rows().len(), table.snapshots().len()), (5, 1));
}

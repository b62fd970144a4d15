//! `--schema-evolution add-columns` with the Iceberg sink: a field the table lacks becomes an
//! optional column (typed as `--create-table auto` types it) through an `update_schema` commit;
//! rows written before read it as null; a value its column cannot hold stays a record error;
//! another writer changing the schema meanwhile breaks nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::archive;
use crate::iceberg_tables::IcebergTable;
use crate::support::bin;

fn replay(work: &Path, src: &Path, table: &IcebergTable) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", src.to_str().unwrap(), "--sink", &table.sink()])
        .args(["--ledger", "file:ledger.jsonl"])
        .args(["--schema-evolution", "add-columns"])
        .args(["--iceberg-batch-objects", "1"]);
    cmd
}

fn key(n: u32) -> String {
    format!("2026/12/07/12/s-1-2026-12-07-12-00-00-6a1f0c1e-2b3c-4d5e-8f90-{n:012}")
}

#[test]
fn iceberg_add_columns_grows_the_table_and_older_rows_read_null() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::create(
        &tmp.path().join("ice"),
        "ns.t",
        json!([["_replay_row_id", "string", true], ["k", "long", false]]),
    );
    let src = tmp.path().join("src");
    archive(
        &src,
        &[
            (key(1), vec![json!({"k": 1}), json!({"k": 2})]),
            (
                key(2),
                vec![
                    json!({"k": 3}),
                    json!({"k": 4, "s": "x", "n": 5, "f": 1.5}),
                    json!({"k": 5, "flag": true, "o": {"a": 1}}),
                    json!({"k": 6, "n": "not a number"}),
                ],
            ),
        ],
    );
    let out = replay(tmp.path(), &src, &table).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("5 rows written, 1 record errors"),
        "{stderr}"
    );
    assert_eq!(
        table.types(),
        json!({"_replay_row_id": "string", "k": "long", "s": "string", "n": "long",
               "f": "double", "flag": "boolean", "o": "string"})
    );
    let by_k = |rows: Vec<Value>| {
        let mut rows: Vec<Value> = rows;
        rows.sort_by_key(|r| r["k"].as_i64().unwrap());
        rows
    };
    let rows = by_k(table.rows());
    assert_eq!(rows.len(), 5, "{rows:?}");
    // The first object's rows were committed before the table grew: null in the new columns.
    for r in &rows[..3] {
        assert_eq!(
            (&r["s"], &r["n"], &r["flag"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
    }
    assert_eq!(
        (&rows[3]["s"], &rows[3]["n"], &rows[3]["f"]),
        (&json!("x"), &json!(5), &json!(1.5))
    );
    assert_eq!(
        (&rows[4]["flag"], &rows[4]["o"]),
        (&json!(true), &json!("{\"a\":1}"))
    );
    let (duck, types) = table.duckdb();
    let duck = by_k(duck);
    assert_eq!(duck.len(), 5);
    assert_eq!(
        (&types["n"], &types["flag"]),
        (&json!("BIGINT"), &json!("BOOLEAN"))
    );
    assert_eq!((&duck[0]["n"], &duck[3]["n"]), (&Value::Null, &json!(5)));
    // The value the column cannot hold is dead-lettered, naming the column.
    let letters = crate::cli::files_under(&tmp.path().join("dead-letter"));
    let letter: Value = serde_json::from_slice(&std::fs::read(&letters[0]).unwrap()).unwrap();
    let error = letter["records"][0]["error"].as_str().unwrap();
    assert!(error.contains("column `n`"), "{error}");
}

#[test]
fn iceberg_add_columns_holds_while_another_writer_changes_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::create(
        &tmp.path().join("ice"),
        "ns.t",
        json!([["_replay_row_id", "string", true], ["k", "long", false]]),
    );
    let src = tmp.path().join("src");
    // Each object brings a field of its own: each batch grows the table.
    let objects: Vec<(String, Vec<Value>)> = (0..10u32)
        .map(|o| {
            let rows = (0..5u32)
                .map(|r| {
                    let mut v = json!({"k": o * 5 + r});
                    v[format!("f{o}")] = json!(r);
                    v
                })
                .collect();
            (key(o), rows)
        })
        .collect();
    archive(&src, &objects);
    let mut ours = replay(tmp.path(), &src, &table)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut theirs = 0;
    while ours.try_wait().unwrap().is_none() || theirs == 0 {
        table.add_column(&format!("theirs{theirs}"), "string");
        theirs += 1;
    }
    let out = ours.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("50 rows written, 0 record errors"),
        "{stderr}"
    );
    let types = table.types();
    for o in 0..10 {
        assert_eq!(types[format!("f{o}")], json!("long"), "{types}");
    }
    for t in 0..theirs {
        assert_eq!(types[format!("theirs{t}")], json!("string"), "{types}");
    }
    let rows = table.rows();
    let ks: BTreeSet<u64> = rows.iter().map(|r| r["k"].as_u64().unwrap()).collect();
    assert_eq!((rows.len(), ks.len()), (50, 50));
    for r in &rows {
        let k = r["k"].as_u64().unwrap();
        assert_eq!(r[format!("f{}", k / 5)], json!(k % 5), "{r}");
    }
    assert_eq!(table.duckdb().0.len(), 50);
}

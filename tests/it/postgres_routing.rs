//! `table=events_{type}`: each record's table from its fields (and the object's key), every
//! table's rows in the object's one transaction.

use serde_json::json;

use crate::pg_server::PgServer;
use crate::postgres::{archive, dead_letters, replay, run_ok, written_and_present};

#[test]
fn records_route_to_tables_by_field_in_one_transaction_and_replays_add_nothing() {
    let pg = PgServer::start();
    let work = tempfile::tempdir().unwrap();
    let long = "t".repeat(60); // events_ + 60 bytes: beyond PostgreSQL's 63
    let mut records = Vec::new();
    for i in 0..30 {
        let kind = ["click", "view", "yubl-posted"][i % 3];
        records.push(json!({"type": kind, "n": i}));
    }
    records.push(json!({"n": 100})); // no type
    records.push(json!({"type": long, "n": 101}));
    records.push(json!({"type": {"nested": 1}, "n": 102}));
    archive(work.path(), &[("in/a.json".to_string(), records)]);
    let sink = pg.sink("public.events_{type}");
    let mut cmd = replay(work.path(), &sink);
    cmd.args(["--create-table", "auto"]);
    let out = run_ok(cmd);
    assert_eq!(written_and_present(&out), (30, 0), "{out}");
    for (table, n) in [
        ("events_click", 10),
        ("events_view", 10),
        ("events_yubl_posted", 10),
    ] {
        assert_eq!(pg.count(table), n, "{table}");
    }
    let letters = dead_letters(work.path());
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(letters[0].1.contains("`type`"), "{letters:?}");
    assert!(letters[1].1.contains("63-byte"), "{letters:?}");
    assert!(letters[2].1.contains("`type`"), "{letters:?}");
    // One ledger row for the object, naming the template.
    assert_eq!(
        pg.psql("SELECT target, rows_inserted FROM firehose_replay_ledger")
            .trim(),
        "\"public\".\"events_{type}\"|30"
    );
    let mut again = replay(work.path(), &sink);
    again.args(["--create-table", "auto", "--force"]);
    let out = run_ok(again);
    assert_eq!(written_and_present(&out), (0, 30), "{out}");
}

/// Many tables, many rows: per-table buffers go out table after table (the COPY switches),
/// and every row lands once; fields are read below `--payload-column`.
#[test]
fn routing_switches_copies_between_tables_and_reads_fields_in_the_payload() {
    let pg = PgServer::start();
    let work = tempfile::tempdir().unwrap();
    let records: Vec<_> = (0..20_000)
        .map(|i| json!({"shard": i % 7, "n": i, "pad": "x".repeat(200)}))
        .collect();
    archive(work.path(), &[("in/big.json".to_string(), records)]);
    let mut cmd = replay(work.path(), &pg.sink("s_{shard}"));
    cmd.args(["--create-table", "auto", "--payload-column", "raw"]);
    let out = run_ok(cmd);
    assert_eq!(written_and_present(&out), (20_000, 0), "{out}");
    let mut total = 0;
    for shard in 0..7 {
        let table = format!("s_{shard}");
        let wrong = pg.psql(&format!(
            "SELECT count(*) FROM {table} WHERE (raw->>'shard')::int <> {shard}"
        ));
        assert_eq!(wrong.trim(), "0");
        total += pg.count(&table);
    }
    assert_eq!(total, 20_000);
    let distinct = pg.psql(
        "SELECT count(DISTINCT n) FROM (SELECT (raw->>'n')::int n FROM s_0 UNION ALL \
         SELECT (raw->>'n')::int FROM s_1 UNION ALL SELECT (raw->>'n')::int FROM s_2 UNION ALL \
         SELECT (raw->>'n')::int FROM s_3 UNION ALL SELECT (raw->>'n')::int FROM s_4 UNION ALL \
         SELECT (raw->>'n')::int FROM s_5 UNION ALL SELECT (raw->>'n')::int FROM s_6) t",
    );
    assert_eq!(distinct.trim(), "20000");
}

/// `--route-default`: a record whose routing field is missing, null or empty goes to that
/// table; one whose field cannot name a table is still a record error.
#[test]
fn route_default_takes_records_without_the_routing_field() {
    let pg = PgServer::start();
    let work = tempfile::tempdir().unwrap();
    // The default table is created from its first row (`type` a text column, null there).
    let records = vec![
        json!({"type": "click", "n": 1}),
        json!({"type": null, "n": 3}),
        json!({"n": 2}),
        json!({"type": "", "n": 4}),
        json!({"type": {"nested": 1}, "n": 5}),
    ];
    archive(work.path(), &[("in/a.json".to_string(), records)]);
    let sink = pg.sink("public.events_{type}");
    let mut cmd = replay(work.path(), &sink);
    cmd.args(["--create-table", "auto", "--route-default", "events_other"]);
    let out = run_ok(cmd);
    assert_eq!(written_and_present(&out), (4, 0), "{out}");
    assert_eq!(pg.count("events_click"), 1);
    assert_eq!(
        pg.psql("SELECT n FROM events_other ORDER BY n").trim(),
        "2\n3\n4"
    );
    let letters = dead_letters(work.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].1.contains("not a string"), "{letters:?}");

    // A fixed table routes on nothing: the flag is refused at start.
    let mut fixed = replay(work.path(), &pg.sink("events_click"));
    fixed.args(["--route-default", "events_other", "--force"]);
    let (code, err) = crate::postgres::run(fixed);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("routes on no record field"), "{err}");
}

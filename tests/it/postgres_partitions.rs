//! `--partition-by COLUMN` with `--create-table auto`: a range-partitioned table, a partition
//! per UTC day created as rows need it (also by two workers at once), the primary key the row
//! ID with the partition column, and replays still adding nothing.

use serde_json::{json, Value};

use crate::pg_server::PgServer;
use crate::postgres::{archive, dead_letters, replay, run_ok, two_at_once, written_and_present};

/// Object `o`'s records: spread over 2026-11-24..26 in UTC, with offsets and epoch seconds.
fn records(o: u64) -> Vec<Value> {
    let mut r = Vec::new();
    for i in 0..40u64 {
        let n = o * 100 + i;
        let ts = match i % 4 {
            0 => json!("2026-11-24T23:59:59Z"),
            1 => json!("2026-11-25T00:00:00Z"),
            // 22:30 on the 25th in UTC, though the 26th where it was written.
            2 => json!("2026-11-26T01:30:00+03:00"),
            _ => json!(1_764_115_200 + 86_400 * 365), // 2026-11-26T00:00:00Z
        };
        r.push(json!({"n": n, "ts": ts}));
    }
    r.push(json!({"n": o * 100 + 99})); // no ts: a record error (the key needs it)
    r
}

fn partitions(pg: &PgServer, parent: &str) -> String {
    pg.psql(&format!(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = '{parent}'::regclass ORDER BY 1"
    ))
    .trim()
    .to_string()
}

#[test]
fn partition_by_makes_daily_partitions_as_rows_need_them_and_dedup_holds() {
    let pg = PgServer::start();
    let work = tempfile::tempdir().unwrap();
    archive(
        work.path(),
        &[
            ("in/2026/11/25/13/a.json".to_string(), records(0)),
            ("in/2026/11/25/13/b.json".to_string(), records(1)),
        ],
    );
    let sink = pg.sink("events");
    let flags = ["--create-table", "auto", "--partition-by", "ts"];
    // Two processes at once: both create the table and the same partitions.
    // A record error (the key's missing column) makes the run's exit 0 still.
    let (ea, eb) = two_at_once(work.path(), &sink, &flags);
    let (wa, _) = written_and_present(&ea);
    let (wb, _) = written_and_present(&eb);
    assert_eq!(wa + wb, 80, "{ea}\n{eb}");
    assert_eq!(
        partitions(&pg, "events"),
        "events_p20261124\nevents_p20261125\nevents_p20261126"
    );
    // Each day's rows in its partition: 20 on the 25th (00:00 and 22:30 UTC).
    assert_eq!(
        pg.psql("SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1 ORDER BY 1")
            .trim(),
        "events_p20261124|20\nevents_p20261125|40\nevents_p20261126|20"
    );
    assert_eq!(
        pg.psql(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'events'::regclass AND contype = 'p'"
        )
        .trim(),
        "PRIMARY KEY (_row_id, ts)"
    );

    // The same record gives the same row ID and timestamp: replays find the pair there.
    let mut force = replay(work.path(), &sink);
    force
        .args(flags)
        .args(["--force", "--dead-letter", "dir:dl-c"]);
    let forced = run_ok(force);
    assert_eq!(written_and_present(&forced), (0, 80), "{forced}");
    let mut batched = replay(work.path(), &sink);
    batched
        .args(flags)
        .args(["--ledger", "none", "--postgres-batch-objects", "2"]);
    let unledgered = run_ok(batched);
    assert_eq!(written_and_present(&unledgered), (0, 80), "{unledgered}");
    assert_eq!(pg.count("events"), 80);
    let letters = dead_letters(work.path());
    assert!(letters.iter().any(|(_, e)| e.contains("ts")), "{letters:?}");
}

/// Batches create the partitions their objects' rows need too.
#[test]
fn batches_make_the_partitions_of_their_rows() {
    let pg = PgServer::start();
    let work = tempfile::tempdir().unwrap();
    archive(
        work.path(),
        &[
            ("in/2026/11/25/13/a.json".to_string(), records(0)),
            ("in/2026/11/25/13/b.json".to_string(), records(1)),
            ("in/2026/11/25/13/c.json".to_string(), records(2)),
        ],
    );
    let mut cmd = replay(work.path(), &pg.sink("ev"));
    cmd.args(["--create-table", "auto", "--partition-by", "ts"])
        .args(["--postgres-batch-objects", "3"]);
    let out = run_ok(cmd);
    assert_eq!(written_and_present(&out), (120, 0), "{out}");
    assert_eq!(
        partitions(&pg, "ev"),
        "ev_p20261124\nev_p20261125\nev_p20261126"
    );
    assert_eq!(
        pg.psql("SELECT count(DISTINCT attempt) FROM firehose_replay_ledger")
            .trim(),
        "1"
    );
}

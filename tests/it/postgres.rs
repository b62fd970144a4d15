//! The PostgreSQL sink against a real server (see `pg_server`): replays, `--force`, `--ledger
//! none` and two processes at once add nothing; typed columns round trip; PostgreSQL's own
//! limits are record errors. Faults (kills, cut connections) are in `postgres_faults`.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::pg_server::PgServer;
use crate::support::bin;

/// Writes each object (key → records) as NDJSON under `root`.
pub fn archive(root: &Path, objects: &[(String, Vec<Value>)]) {
    for (key, records) in objects {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(path, text).unwrap();
    }
}

/// `objects` objects of `per` records `{"n": …, "s": …}`, numbered across objects.
pub fn numbered_objects(objects: usize, per: usize) -> Vec<(String, Vec<Value>)> {
    (0..objects)
        .map(|o| {
            let records = (0..per)
                .map(|i| json!({"n": o * per + i, "s": format!("row {}", o * per + i)}))
                .collect();
            (format!("in/2026/11/25/13/obj-{o:03}.json"), records)
        })
        .collect()
}

pub fn events_table(pg: &PgServer, name: &str) {
    pg.psql(&format!(
        "CREATE TABLE {name} (_row_id text PRIMARY KEY, n bigint, s text)"
    ));
}

/// `replay in` in `work` into `sink`, retrying fast.
pub fn replay(work: &Path, sink: &str) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", "in", "--sink", sink])
        .args(["--retry-min-delay-ms", "50"])
        .env_remove("PGPASSWORD")
        .env_remove("PGHOST");
    cmd
}

pub fn run(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn run_ok(cmd: Command) -> String {
    let (code, stderr) = run(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    stderr
}

/// Two replays of `work` into `sink` at once (with `flags`, dead letters apart); both must exit
/// 0. Their stderr (each run's summary), for [`written_and_present`].
pub fn two_at_once(work: &Path, sink: &str, flags: &[&str]) -> (String, String) {
    let spawn = |dl: &str| {
        let mut c = replay(work, sink);
        c.args(flags)
            .args(["--dead-letter", &format!("dir:{dl}")])
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn("dl-a"), spawn("dl-b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ea, eb) = (
        String::from_utf8_lossy(&a.stderr).into_owned(),
        String::from_utf8_lossy(&b.stderr).into_owned(),
    );
    assert!(a.status.success() && b.status.success(), "{ea}\n{eb}");
    (ea, eb)
}

/// The run summary's `N rows written` and `M rows already in the table` (0 when absent).
pub fn written_and_present(stderr: &str) -> (u64, u64) {
    let number_before = |marker: &str| {
        stderr.find(marker).map(|at| {
            stderr[..at]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
                .parse::<u64>()
                .unwrap()
        })
    };
    (
        number_before(" rows written").unwrap_or(0),
        number_before(" rows already in the table").unwrap_or(0),
    )
}

/// The `n` column of every row, sorted: each number once means nothing was lost or doubled.
pub fn ns(pg: &PgServer, table: &str) -> Vec<u64> {
    pg.psql(&format!("SELECT n FROM {table} ORDER BY n"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

pub fn dead_letter_errors(work: &Path) -> Vec<String> {
    let mut errors: Vec<String> = dead_letters(work).into_iter().map(|(_, e)| e).collect();
    errors.sort();
    errors
}

/// (ordinal, error) of every dead-lettered record under `work/dead-letter`, by ordinal.
pub fn dead_letters(work: &Path) -> Vec<(u64, String)> {
    let mut letters = Vec::new();
    for f in crate::cli::files_under(&work.join("dead-letter")) {
        let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&f).unwrap()) else {
            continue;
        };
        for r in v["records"].as_array().into_iter().flatten() {
            letters.push((
                r["ordinal"].as_u64().unwrap(),
                r["error"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    letters.sort();
    letters
}

#[test]
fn replays_force_and_no_ledger_add_nothing() {
    let pg = PgServer::start();
    events_table(&pg, "events");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(3, 40));
    let sink = pg.sink("public.events");
    let all: Vec<u64> = (0..120).collect();

    let first = run_ok(replay(work.path(), &sink));
    assert_eq!(written_and_present(&first), (120, 0), "{first}");
    assert_eq!(ns(&pg, "events"), all);
    // The ledger lives in the database, written with the rows.
    assert_eq!(
        pg.psql("SELECT count(*), sum(rows_inserted), sum(rows_new) FROM firehose_replay_ledger")
            .trim(),
        "3|120|120"
    );

    let again = run_ok(replay(work.path(), &sink));
    assert_eq!(written_and_present(&again), (0, 0), "{again}");
    assert!(
        again.contains("3 skipped") || again.contains("skipped"),
        "{again}"
    );

    let mut force = replay(work.path(), &sink);
    force.arg("--force");
    let forced = run_ok(force);
    assert_eq!(written_and_present(&forced), (0, 120), "{forced}");

    let mut none = replay(work.path(), &sink);
    none.args(["--ledger", "none"]);
    let unledgered = run_ok(none);
    assert_eq!(written_and_present(&unledgered), (0, 120), "{unledgered}");

    // A file ledger works with this sink too (and a fresh one replays everything: no doubles).
    let mut file = replay(work.path(), &sink);
    file.args(["--ledger", "file:ledger.jsonl"]);
    let filed = run_ok(file);
    assert_eq!(written_and_present(&filed), (0, 120), "{filed}");
    assert_eq!(ns(&pg, "events"), all);

    // The ledger is per target table: the same objects into another table of the schema go in.
    events_table(&pg, "events2");
    let other = run_ok(replay(work.path(), &pg.sink("events2")));
    assert_eq!(written_and_present(&other), (120, 0), "{other}");
}

#[test]
fn two_processes_at_once_are_exact() {
    let pg = PgServer::start();
    events_table(&pg, "events");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(8, 500));
    let sink = pg.sink("events");
    let (ea, eb) = two_at_once(work.path(), &sink, &[]);
    let (wa, pa) = written_and_present(&ea);
    let (wb, pb) = written_and_present(&eb);
    // Every row went in once; whatever one process found there already, the other wrote.
    assert_eq!(wa + wb, 4000, "{ea}\n{eb}");
    assert!(pa + pb <= 4000);
    assert_eq!(ns(&pg, "events"), (0..4000).collect::<Vec<u64>>());
}

#[test]
fn typed_columns_round_trip() {
    let pg = PgServer::start();
    pg.psql(
        "CREATE TABLE typed (_row_id text PRIMARY KEY, s text, v varchar(5), i integer, \
         b bigint, m numeric(10,2), d double precision, ok boolean, at timestamptz, \
         at_epoch timestamptz, doc jsonb, tags text[], counts bigint[], \
         note text NOT NULL DEFAULT 'none', _source_uri text, _record_ordinal bigint, \
         id bigint GENERATED ALWAYS AS IDENTITY, seq bigserial, \
         s_len int GENERATED ALWAYS AS (length(s)) STORED)",
    );
    let work = tempfile::tempdir().unwrap();
    let record = json!({
        "s": "tab\there \\ back\nslash \"quoted\" é 😀", "v": "short", "i": -2147483648i64,
        "b": 9007199254740993u64, "m": 12345678.91, "d": 0.1, "ok": true,
        "at": "2024-05-01T12:00:00.25+02:00", "at_epoch": 1714557600,
        "doc": {"a": [1, "x", null, {"b": false}]}, "tags": ["a", "b\"c", null],
        "counts": [1, 2]
    });
    archive(
        work.path(),
        &[(
            "in/a.json".to_string(),
            vec![record.clone(), json!({"s": null})],
        )],
    );
    let mut cmd = replay(work.path(), &pg.sink("typed"));
    cmd.args(["--metadata-columns", "source_uri,record_ordinal"]);
    let out = run_ok(cmd);
    assert_eq!(written_and_present(&out), (2, 0), "{out}");
    // Read back by PostgreSQL itself, as text, independently of the sink.
    let got: Vec<Value> = pg
        .psql(
            "SELECT json_build_array(s, v, i::text, b::text, m::text, d::text, ok::text, \
             to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), \
             to_char(at_epoch AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
             doc::text, tags::text, counts::text, note, _record_ordinal::text)::text \
             FROM typed ORDER BY _record_ordinal",
        )
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            json!([
                "tab\there \\ back\nslash \"quoted\" é 😀",
                "short",
                "-2147483648",
                "9007199254740993",
                "12345678.91",
                "0.1",
                "true",
                "2024-05-01 10:00:00.250",
                "2024-05-01 10:00:00",
                "{\"a\": [1, \"x\", null, {\"b\": false}]}",
                "{a,\"b\\\"c\",NULL}",
                "{1,2}",
                "none",
                "0"
            ]),
            json!([
                null, null, null, null, null, null, null, null, null, null, null, null, "none", "1"
            ]),
        ]
    );
    // Columns the server fills were filled by it.
    assert_eq!(
        pg.psql("SELECT string_agg(concat_ws(',', id, seq, s_len), ' ' ORDER BY id) FROM typed")
            .trim(),
        "1,1,34 2,2"
    );
    let uri = pg.psql("SELECT DISTINCT _source_uri FROM typed");
    assert!(uri.trim().ends_with("/in/a.json"), "{uri}");
}

#[test]
fn postgres_limits_are_record_errors_that_spare_their_neighbours() {
    let pg = PgServer::start();
    pg.psql(
        "CREATE TABLE lim (_row_id text PRIMARY KEY, n bigint, s text, j jsonb, i integer, \
         d double precision, v varchar(3), m numeric(4,2), req text NOT NULL)",
    );
    let long = "x".repeat(64);
    // (record, the column its error must name)
    let bad: Vec<(String, &str)> = vec![
        (r#"{"n":1,"req":"r","s":"nul \u0000 inside"}"#.into(), "`s`"),
        (
            r#"{"n":2,"req":"r","j":{"k":["deep \u0000"]}}"#.into(),
            "`j`",
        ),
        (r#"{"n":3,"req":"r","j":{"nul\u0000key":1}}"#.into(), "`j`"),
        (r#"{"n":4,"req":"r","i":2147483648}"#.into(), "`i`"),
        (r#"{"n":5,"req":"r","d":1e400}"#.into(), "`d`"),
        (r#"{"n":6,"req":"r","v":"abcd"}"#.into(), "`v`"),
        (r#"{"n":7,"req":"r","m":99.995}"#.into(), "`m`"),
        (
            r#"{"n":8,"req":"r","s":"lone \ud800 surrogate"}"#.into(),
            "`s`",
        ),
        (format!(r#"{{"n":9,"req":"r","{long}":1}}"#), "63-byte"),
        (r#"{"n":10,"req":"r","nope":1}"#.into(), "`nope`"),
        (r#"{"n":11}"#.into(), "`req`"),
        (r#"{"n":12,"req":"r","i":"seven"}"#.into(), "`i`"),
        (
            r#"{"n":13,"req":"r","j":{"k":"\udc00 low alone"}}"#.into(),
            "`j`",
        ),
        (r#"{"n":14,"req":"r","j":[1e200000]}"#.into(), "`j`"),
    ];
    let mut text = String::new();
    for (i, (b, _)) in bad.iter().enumerate() {
        text.push_str(&format!(
            "{{\"n\":{},\"req\":\"ok\",\"s\":\"good\"}}\n",
            100 + i
        ));
        text.push_str(b);
        text.push('\n');
    }
    // Within the limits though beyond f64: jsonb keeps every digit, and 1e400.
    text.push_str(
        r#"{"n":200,"req":"ok","j":{"big":123456789012345678901234567890,"e":1e400},"m":-99.994}"#,
    );
    text.push('\n');
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("in")).unwrap();
    std::fs::write(work.path().join("in/lim.json"), text).unwrap();
    let out = run_ok(replay(work.path(), &pg.sink("lim")));
    assert_eq!(written_and_present(&out), (15, 0), "{out}");
    let mut want: Vec<u64> = (100..114).collect();
    want.push(200);
    assert_eq!(ns(&pg, "lim"), want);
    assert_eq!(
        pg.psql("SELECT j->>'big', (j->>'e')::numeric = 1e400, m FROM lim WHERE n = 200")
            .trim(),
        "123456789012345678901234567890|t|-99.99"
    );
    // Each bad record (every second line) was refused for its own reason.
    let letters = dead_letters(work.path());
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    for (i, (record, column)) in bad.iter().enumerate() {
        let (ordinal, error) = &letters[i];
        assert_eq!(*ordinal, 2 * i as u64 + 1, "{letters:#?}");
        assert!(error.contains(column), "{record}: {error}");
    }
}

#[test]
fn payload_column_and_create_table_auto() {
    let pg = PgServer::start();
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(2, 10));
    let mut cmd = replay(work.path(), &pg.sink("raw.landing"));
    pg.psql("CREATE SCHEMA raw");
    cmd.args(["--payload-column", "payload", "--create-table", "auto"])
        .args(["--metadata-columns", "record_ordinal,ingested_at"]);
    let out = run_ok(cmd);
    assert_eq!(written_and_present(&out), (20, 0), "{out}");
    let types = pg.psql(
        "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY column_name) \
         FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = 'landing'",
    );
    assert_eq!(
        types.trim(),
        "_ingested_at:timestamp with time zone,_record_ordinal:bigint,_row_id:text,payload:jsonb"
    );
    let pk = pg.psql(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
         AND a.attnum = i.indkey[0] WHERE i.indrelid = 'raw.landing'::regclass AND i.indisprimary",
    );
    assert_eq!(pk.trim(), "_row_id");
    let mut n: Vec<u64> = pg
        .psql("SELECT payload->>'n' FROM raw.landing")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    n.sort();
    assert_eq!(n, (0..20).collect::<Vec<u64>>());
}

#[test]
fn a_table_without_a_unique_row_id_or_missing_is_refused() {
    let pg = PgServer::start();
    pg.psql("CREATE TABLE loose (_row_id text, n bigint)");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(1, 3));
    let (code, err) = run(replay(work.path(), &pg.sink("loose")));
    assert_ne!(code, Some(0));
    assert!(err.contains("PRIMARY KEY or UNIQUE"), "{err}");
    let (code, err) = run(replay(work.path(), &pg.sink("missing")));
    assert_ne!(code, Some(0));
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(pg.count("loose"), 0);
}

#[test]
fn key_value_form_over_the_unix_socket_and_pg_environment() {
    let pg = PgServer::start();
    events_table(&pg, "events");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(1, 5));
    // host and port from PG* variables, the rest in libpq's key/value form.
    let mut cmd = replay(
        work.path(),
        "postgres:dbname=postgres user=postgres table=events",
    );
    cmd.env("PGHOST", pg.socket_dir())
        .env("PGPORT", pg.port.to_string());
    let out = run_ok(cmd);
    assert_eq!(written_and_present(&out), (5, 0), "{out}");
    assert_eq!(ns(&pg, "events"), (0..5).collect::<Vec<u64>>());
}

/// The Lambda handler (through `invoke`) takes the same settings from `FIREHOSE_REPLAY_*`.
#[test]
fn the_lambda_handler_writes_to_postgres_from_its_environment() {
    let pg = PgServer::start();
    let work = tempfile::tempdir().unwrap();
    let key =
        "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";
    let path = work.path().join("buckets/firehose-archive").join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, crate::support::gzip(&crate::support::ndjson(3))).unwrap();
    let event =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda/s3-notification.json");
    let invoke = || {
        let mut c = bin();
        c.current_dir(work.path())
            .arg("invoke")
            .arg("--event")
            .arg(&event)
            .arg("--buckets")
            .arg(work.path().join("buckets"))
            .env("FIREHOSE_REPLAY_SINK", pg.sink("lambda_events"))
            .env("FIREHOSE_REPLAY_CREATE_TABLE", "auto")
            .env("FIREHOSE_REPLAY_DEAD_LETTER", "dir:dead");
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    invoke();
    assert_eq!(pg.count("lambda_events"), 3);
    invoke();
    assert_eq!(pg.count("lambda_events"), 3);
    assert_eq!(
        pg.psql("SELECT count(*) FROM firehose_replay_ledger WHERE rows_inserted = 3")
            .trim(),
        "1"
    );
}

/// Records PostgreSQL refused are dead-lettered; once the table takes them, `redrive` lands them
/// under their original row IDs, and a second redrive adds nothing.
#[test]
fn refused_records_redrive_into_the_fixed_table() {
    let pg = PgServer::start();
    pg.psql("CREATE TABLE r (_row_id text PRIMARY KEY, n bigint, v varchar(3))");
    let work = tempfile::tempdir().unwrap();
    let records = vec![
        json!({"n": 1, "v": "ok"}),
        json!({"n": 2, "v": "too long"}),
        json!({"n": 3, "v": "abc"}),
        json!({"n": 4, "v": "also too long"}),
    ];
    archive(work.path(), &[("in/r.json".to_string(), records)]);
    let out = run_ok(replay(work.path(), &pg.sink("r")));
    assert_eq!(written_and_present(&out), (2, 0), "{out}");
    let errors = dead_letter_errors(work.path());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("`v`")), "{errors:?}");
    let first_ids: Vec<String> = pg.rows("r", "_row_id").into_iter().map(|r| r.0).collect();

    pg.psql("ALTER TABLE r ALTER COLUMN v TYPE text");
    let redrive = || {
        let mut cmd = bin();
        cmd.current_dir(work.path())
            .args(["redrive", "dir:dead-letter", "--sink", &pg.sink("r")]);
        run_ok(cmd)
    };
    redrive();
    assert_eq!(ns(&pg, "r"), vec![1, 2, 3, 4]);
    let ids: Vec<String> = pg.rows("r", "_row_id").into_iter().map(|r| r.0).collect();
    assert!(first_ids.iter().all(|id| ids.contains(id)));
    redrive();
    assert_eq!(pg.count("r"), 4);
}

/// `--schema-evolution add-columns`: fields that appear mid-object become columns (inside the
/// object's transaction), and two processes adding the same columns at once both succeed.
#[test]
fn schema_evolution_adds_columns_mid_object_and_concurrently() {
    let pg = PgServer::start();
    events_table(&pg, "evolving");
    let work = tempfile::tempdir().unwrap();
    let objects: Vec<(String, Vec<Value>)> = (0..4)
        .map(|o| {
            let records = (0..300)
                .map(|i| {
                    let n = o * 300 + i;
                    match i {
                        0..100 => json!({"n": n}),
                        100..200 => json!({"n": n, "plan": "pro"}),
                        _ => json!({"n": n, "plan": "free", "geo": {"cnt": i}, "score": 1.5}),
                    }
                })
                .collect();
            (format!("in/evolve-{o}.json"), records)
        })
        .collect();
    archive(work.path(), &objects);
    let sink = pg.sink("evolving");
    let spawn = |dl: &str| {
        let mut c = replay(work.path(), &sink);
        c.args(["--schema-evolution", "add-columns", "--dead-letter"])
            .arg(format!("dir:{dl}"))
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn("dl-a"), spawn("dl-b"));
    for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
    }
    for dl in ["dl-a", "dl-b"] {
        let letters = crate::cli::files_under(&work.path().join(dl));
        assert!(letters.is_empty(), "{letters:?}");
    }
    assert_eq!(ns(&pg, "evolving"), (0..1200).collect::<Vec<u64>>());
    let types = pg.psql(
        "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) \
         FROM information_schema.columns WHERE table_name = 'evolving'",
    );
    let types = types.trim();
    for want in ["plan:text", "geo:jsonb", "score:double precision"] {
        assert!(types.contains(want), "{types}");
    }
    assert_eq!(
        pg.psql(
            "SELECT count(plan), count(geo), sum((geo->>'cnt')::int) FILTER (WHERE n < 300) \
             FROM evolving"
        )
        .trim(),
        format!("800|400|{}", (200..300).sum::<i32>())
    );
}

/// A refused `--sink` (or `FIREHOSE_REPLAY_SINK`) is a usage error that never repeats the
/// password the URL or key/value string carries.
#[test]
fn a_refused_sink_value_never_echoes_its_password() {
    let cases = [
        "postgres://app:s3cr3tpw@db:5432/analytics",
        "postgres:host=db dbname=x password=s3cr3tpw",
        "postgres://app:s3cr3tpw@db:5432/analytics?table=",
    ];
    for value in cases {
        for via_env in [false, true] {
            let mut cmd = crate::support::bin();
            cmd.args(["replay", "/nonexistent"]);
            if via_env {
                cmd.env("FIREHOSE_REPLAY_SINK", value);
            } else {
                cmd.args(["--sink", value]);
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
            assert!(stderr.contains("--sink"), "{value}: {stderr}");
            assert!(
                !stderr.contains("s3cr3tpw"),
                "{value} (env {via_env}): {stderr}"
            );
        }
    }
}

/// `count` records `{"n", "s"}` in one object, each `s` about 400 bytes: 30,000 of them make
/// three of the direct path's 4 MiB chunks.
fn padded_object(count: usize) -> Vec<(String, Vec<Value>)> {
    let pad = "x".repeat(400);
    let records = (0..count)
        .map(|n| json!({"n": n, "s": format!("row {n} {pad}")}))
        .collect();
    vec![("in/2026/11/25/13/big.json".to_string(), records)]
}

#[test]
fn the_direct_copy_falls_back_to_staging_on_a_row_already_there() {
    let pg = PgServer::start();
    events_table(&pg, "events");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &padded_object(30_000));
    let sink = pg.sink("events");
    let all: Vec<u64> = (0..30_000).collect();
    let first = run_ok(replay(work.path(), &sink));
    assert_eq!(written_and_present(&first), (30_000, 0), "{first}");
    assert_eq!(ns(&pg, "events"), all);

    // Nothing in the ledger says the object is there, but its first row is: the first chunk's
    // COPY into the table meets it, and the object is staged instead.
    pg.psql("DELETE FROM firehose_replay_ledger");
    pg.psql("DELETE FROM events WHERE n >= 10");
    let mut cmd = replay(work.path(), &sink);
    cmd.args(["--log-level", "info"]);
    let again = run_ok(cmd);
    assert_eq!(written_and_present(&again), (29_990, 10), "{again}");
    assert!(again.contains("staging the rest"), "{again}");
    assert_eq!(ns(&pg, "events"), all);

    // Rows present from the second chunk on only: the first chunk goes straight in, the second
    // is rolled back to its savepoint and staged with the rest; each row lands once.
    pg.psql("DELETE FROM firehose_replay_ledger");
    pg.psql("DELETE FROM events WHERE n < 15000");
    let mut cmd = replay(work.path(), &sink);
    cmd.args(["--log-level", "info", "--ledger", "none"]);
    let partial = run_ok(cmd);
    assert_eq!(written_and_present(&partial), (15_000, 15_000), "{partial}");
    assert!(partial.contains("staging the rest"), "{partial}");
    assert_eq!(ns(&pg, "events"), all);

    // With a ledger entry the object is staged from the start: no COPY meets a conflict.
    let mut force = replay(work.path(), &sink);
    force.args(["--log-level", "info", "--force"]);
    let forced = run_ok(force);
    assert_eq!(written_and_present(&forced), (0, 30_000), "{forced}");
    assert!(!forced.contains("staging the rest"), "{forced}");
}

#[test]
fn batches_commit_many_objects_at_once_and_leave_out_a_failed_one() {
    let pg = PgServer::start();
    events_table(&pg, "events");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(7, 30));
    // Between obj-003 and obj-004: more than a 1 MiB chunk of rows, then a truncated gzip
    // stream, so its rows reach the batch's staging table before the object fails.
    let pad = "x".repeat(400);
    let text: String = (0..5000)
        .map(|i| format!("{}\n", json!({"n": 100_000 + i, "s": pad})))
        .collect();
    let gz = crate::support::gzip(text.as_bytes());
    std::fs::write(
        work.path().join("in/2026/11/25/13/obj-003b.json.gz"),
        &gz[..gz.len() - 64],
    )
    .unwrap();
    let sink = pg.sink("events");
    let batched = |cmd: &mut Command| {
        cmd.args(["--postgres-batch-objects", "3", "--max-attempts", "1"]);
    };
    let mut cmd = replay(work.path(), &sink);
    batched(&mut cmd);
    let (code, first) = run(cmd);
    assert_eq!(code, Some(1), "{first}");
    assert_eq!(written_and_present(&first), (210, 0), "{first}");
    assert_eq!(ns(&pg, "events"), (0..210).collect::<Vec<u64>>());
    // Keys in order, three per batch: 000-002, 003-004 (and the failed 003b), 005-006; each
    // batch one transaction, its entries one attempt.
    assert_eq!(
        pg.psql(
            "SELECT count(*), count(DISTINCT attempt), sum(rows_inserted), count(finished_at) \
             FROM firehose_replay_ledger"
        )
        .trim(),
        "7|3|210|7"
    );

    let mut cmd = replay(work.path(), &sink);
    batched(&mut cmd);
    let (code, again) = run(cmd);
    assert_eq!(code, Some(1), "{again}");
    assert_eq!(written_and_present(&again), (0, 0), "{again}");

    let mut cmd = replay(work.path(), &sink);
    batched(&mut cmd);
    cmd.arg("--force");
    let (_, forced) = run(cmd);
    assert_eq!(written_and_present(&forced), (0, 210), "{forced}");
    assert_eq!(ns(&pg, "events"), (0..210).collect::<Vec<u64>>());
}

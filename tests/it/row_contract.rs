//! The row contract (README, "Row contract") end to end: the same edge records through every
//! sink — NDJSON, stdout, BigQuery insert-all, storage-write and load (the local-bigquery
//! emulator) — with and without `--map`, and the same outcome per record in each; and a property
//! test that an empty `--map` never changes which records are accepted.

use std::collections::BTreeMap;
use std::path::Path;

use firehose_replay::object::ObjectRef;
use firehose_replay::record::{validate, Payload};
use firehose_replay::row::map::Mapping;
use firehose_replay::row::{ObjectSeed, RowBuilder, RowIdSource};

use crate::bq_emulator::BqEmulator;
use crate::support::bin;
use crate::support::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written as a row.
    Row,
    /// A record error whose message contains this.
    Error(&'static str),
}
pub(crate) use Outcome::{Error, Row};

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) record: String,
    /// NDJSON and stdout.
    pub(crate) text: Outcome,
    /// insert-all, storage-write and load.
    pub(crate) bigquery: Outcome,
    /// PostgreSQL's typed columns (the conformance suite's table).
    pub(crate) postgres: Outcome,
    /// Iceberg's typed columns (the conformance suite's table, row ID `_replay_row_id`).
    pub(crate) iceberg: Outcome,
    /// Overrides both when the run has `--map {"rename":{"id":"a"}}`.
    mapped: Option<Outcome>,
}

pub(crate) fn cases() -> Vec<Case> {
    let same = |name, record: &str, o| Case {
        name,
        record: record.to_string(),
        text: o,
        bigquery: o,
        postgres: o,
        iceberg: o,
        mapped: None,
    };
    let deep = format!(
        r#"{{"k":"deep","d":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    vec![
        same("first", r#"{"k":"first","n":1}"#, Row),
        Case {
            name: "own_row_id",
            record: r#"{"k":"own_row_id","_row_id":"mine"}"#.into(),
            text: Error("its own `_row_id` field"),
            bigquery: Error("its own `_row_id` field"),
            postgres: Error("its own `_row_id` field"),
            // The row ID is `_replay_row_id` there: `_row_id` is a field like any other.
            iceberg: Error("field `_row_id` has no column in the table"),
            mapped: None,
        },
        same(
            "own_source_uri",
            r#"{"k":"own_source_uri","_source_uri":"s3://elsewhere/x"}"#,
            Error("its own `_source_uri` field"),
        ),
        same("duplicate", r#"{"k":"duplicate","n":1,"n":2}"#, Row),
        Case {
            name: "huge_number",
            record: r#"{"k":"huge_number","f":1e400}"#.into(),
            text: Row,
            bigquery: Error("field `f`: the number 1e400 is out of range"),
            postgres: Error("column `f` (double precision): 1e400 is out of range"),
            iceberg: Error("column `f` (double): 1e400 is out of range"),
            mapped: None,
        },
        Case {
            name: "lone_surrogate",
            record: r#"{"k":"lone_surrogate","s":"\ud800"}"#.into(),
            text: Row,
            bigquery: Error("field `s`: the string has a lone surrogate escape"),
            postgres: Error("column `s` (text): "),
            iceberg: Error("column `s` (string): "),
            mapped: None,
        },
        same("deep", &deep, Row),
        Case {
            name: "rename_onto_existing",
            record: r#"{"k":"rename_onto_existing","id":1,"a":2}"#.into(),
            text: Row,
            bigquery: Row,
            postgres: Row,
            iceberg: Row,
            mapped: Some(Error("the record already has `a`")),
        },
        same("last", r#"{"k":"last","n":3}"#, Row),
    ]
}

/// The `k` of a row or record, read from its text (some rows are not serde_json `Value`s).
fn k_of(text: &str) -> Option<String> {
    let at = text.find(r#""k":""#)? + 5;
    Some(text[at..].split('"').next()?.to_string())
}

/// What one run did: the `k` of each row, the error of each dead-lettered ordinal, and the
/// `n` of the `duplicate` row as the sink holds it (and how many times the key is there).
#[derive(Debug, Default)]
struct Seen {
    rows: Vec<String>,
    errors: BTreeMap<u64, String>,
    duplicate_n: Option<(String, usize)>,
}

fn dead_letters(work: &Path) -> BTreeMap<u64, String> {
    let mut errors = BTreeMap::new();
    for f in crate::cli::files_under(&work.join("dead-letter")) {
        let dl: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for r in dl["records"].as_array().unwrap() {
            errors.insert(
                r["ordinal"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_string(),
            );
        }
    }
    errors
}

fn text_rows(seen: &mut Seen, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let k = k_of(line).unwrap_or_else(|| panic!("row without k: {line}"));
        if k == "duplicate" {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            seen.duplicate_n = Some((v["n"].to_string(), line.matches(r#""n":"#).count()));
        }
        seen.rows.push(k);
    }
}

fn run(sink: &str, emu: Option<&BqEmulator>, map: bool, records: &[Case]) -> Seen {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("in/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = records.iter().map(|c| format!("{}\n", c.record)).collect();
    std::fs::write(
        dir.join("s-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e"),
        body,
    )
    .unwrap();
    std::fs::write(work.path().join("map.json"), r#"{"rename":{"id":"a"}}"#).unwrap();
    let mut cmd = bin();
    cmd.current_dir(work.path())
        .args(["replay", "in", "--metadata-columns", "source_uri"])
        .args(["--ledger", "none", "--allow-duplicates"]);
    if map {
        cmd.args(["--map", "map.json"]);
    }
    let table = format!(
        "t_{}_{}",
        sink.replace('-', "_"),
        if map { "map" } else { "plain" }
    );
    match (sink, emu) {
        ("ndjson" | "ndjson-newline", _) => {
            cmd.args(["--sink", "ndjson:out"]);
            // Newline framing validates in the record stage, not the framer: the key check
            // rides along there (issue 26), and must keep the contract's outcomes.
            if sink == "ndjson-newline" {
                cmd.args(["--framing", "newline"]);
            }
        }
        ("stdout", _) => {
            cmd.args(["--sink", "stdout"]);
        }
        (mode, Some(emu)) => {
            emu.create_table(
                "bi",
                &table,
                serde_json::json!([
                    {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
                    {"name": "_source_uri", "type": "STRING"},
                    {"name": "k", "type": "STRING"},
                    {"name": "n", "type": "INTEGER"},
                    {"name": "a", "type": "INTEGER"},
                    {"name": "f", "type": "FLOAT"},
                    {"name": "s", "type": "STRING"}
                ]),
            );
            cmd.args(["--sink", &format!("bigquery:test-proj.bi.{table}")])
                .args(["--bigquery-mode", mode])
                .args(["--bigquery-endpoint", &emu.endpoint])
                .args(["--bigquery-storage-endpoint", &emu.grpc_endpoint])
                .args(["--ignore-unknown-values", "--load-poll-ms", "50"])
                .args(["--retry-min-delay-ms", "50"]);
        }
        _ => unreachable!(),
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{sink} (map: {map}): {stderr}");
    let mut seen = Seen {
        errors: dead_letters(work.path()),
        ..Seen::default()
    };
    match sink {
        "ndjson" | "ndjson-newline" => {
            for f in crate::cli::files_under(&work.path().join("out")) {
                text_rows(&mut seen, &std::fs::read_to_string(f).unwrap());
            }
        }
        "stdout" => text_rows(&mut seen, &String::from_utf8_lossy(&out.stdout)),
        _ => {
            for r in emu.unwrap().rows("bi", &table) {
                let k = r["k"].as_str().unwrap().to_string();
                if k == "duplicate" {
                    seen.duplicate_n = Some((r["n"].as_str().unwrap_or("?").to_string(), 1));
                }
                seen.rows.push(k);
            }
        }
    }
    let rows = seen.rows.len();
    let errors = seen.errors.len();
    assert!(
        stderr.contains(&format!("{rows} rows written, {errors} record errors")),
        "{sink} (map: {map}): {stderr}"
    );
    seen
}

#[test]
fn every_sink_gives_every_edge_record_the_same_outcome_with_or_without_a_map() {
    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    let cases = cases();
    let mut report = Vec::new();
    for sink in [
        "ndjson",
        "ndjson-newline",
        "stdout",
        "insert-all",
        "storage-write",
        "load",
    ] {
        for map in [false, true] {
            let seen = run(sink, Some(&emu), map, &cases);
            for (ordinal, c) in cases.iter().enumerate() {
                let want = match (map, c.mapped) {
                    (true, Some(o)) => o,
                    _ if matches!(sink, "ndjson" | "ndjson-newline" | "stdout") => c.text,
                    _ => c.bigquery,
                };
                let written = seen.rows.iter().filter(|k| *k == c.name).count();
                let error = seen.errors.get(&(ordinal as u64));
                let ctx = format!("{sink} (map: {map}), `{}`: {seen:?}", c.name);
                match want {
                    Row => {
                        assert_eq!(written, 1, "{ctx}");
                        assert!(error.is_none(), "{ctx}");
                    }
                    Error(why) => {
                        assert_eq!(written, 0, "{ctx}");
                        let error = error.unwrap_or_else(|| panic!("no record error: {ctx}"));
                        assert!(error.contains(why), "{ctx}: {error}");
                    }
                }
                report.push(format!("{sink:>13} map={map:<5} {:<22} {want:?}", c.name));
            }
            // Duplicate keys: the last wins, and the row has the key once.
            let (n, times) = seen.duplicate_n.clone().expect("the duplicate row");
            assert_eq!(
                (n.trim_matches('"'), times),
                ("2", 1),
                "{sink} (map: {map})"
            );
        }
    }
    println!("{}", report.join("\n"));
}

const KEYS: [&str; 8] = [
    "a",
    "a",
    "b",
    "_row_id",
    "_source_uri",
    "\\u0061",
    "k\\ud800",
    "é",
];
const SCALARS: [&str; 14] = [
    "1",
    "-0.5e-3",
    "1e400",
    "-1E+999",
    "123456789012345678901234567890",
    "true",
    "null",
    "\"x\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\ud83d\\ude00\"",
    "\"a\\nb\\\"c\"",
    "\"\"",
    "\"\u{1F600}\"",
];

fn value(rng: &mut Rng, out: &mut String, depth: usize) {
    let ws = |rng: &mut Rng, out: &mut String| {
        if rng.below(4) == 0 {
            out.push_str([" ", "\n", "\r\n", "\t"][rng.below(4) as usize]);
        }
    };
    ws(rng, out);
    let pick = if depth > 400 { 0 } else { rng.below(10) };
    match pick {
        0..=4 => out.push_str(SCALARS[rng.below(SCALARS.len() as u64) as usize]),
        5 => {
            // a deep chain
            let n = rng.below(300) as usize;
            out.push_str(&"[".repeat(n));
            value(rng, out, depth + n);
            out.push_str(&"]".repeat(n));
        }
        6 => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                value(rng, out, depth + 1);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                out.push('"');
                out.push_str(KEYS[rng.below(KEYS.len() as u64) as usize]);
                out.push('"');
                ws(rng, out);
                out.push(':');
                value(rng, out, depth + 1);
            }
            ws(rng, out);
            out.push('}');
        }
    }
    ws(rng, out);
}

/// Whether the row stage accepts `record`, and the row (as text) if it does.
fn accepted(record: &[u8], mapping: Option<&Mapping>) -> Result<Vec<u8>, String> {
    let object = ObjectRef::new("b", "k");
    let mut rb = RowBuilder::new(
        ObjectSeed::new(&object),
        RowIdSource::Position,
        Some("_row_id"),
    )
    .with_metadata("source_uri".parse().unwrap(), &object, "");
    let mut shape = validate(record).map_err(|e| e.to_string())?;
    let mut mapped = Vec::new();
    let mut json = record;
    if let Some(m) = mapping {
        shape = m.apply(record, &mut mapped)?;
        json = &mapped;
    }
    let payload = Payload {
        json,
        shape,
        sub: &[],
        verdicts: Default::default(),
    };
    rb.build(&payload, 0, 0)
        .map(|r| r.to_vec())
        .map_err(|e| e.to_string())
}

#[test]
fn an_empty_map_never_changes_which_records_are_accepted() {
    let seed = std::env::var("ROW_CONTRACT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_ed0f_2026_u64);
    println!("seed {seed} (set ROW_CONTRACT_SEED to replay)");
    let mut rng = Rng(seed.max(1));
    let empty = Mapping::default();
    let (mut rows, mut errors) = (0, 0);
    for i in 0..3000 {
        let mut record = String::new();
        if rng.below(3) == 0 {
            value(&mut rng, &mut record, 0);
        } else {
            // mostly objects: that is where a map works
            record.push('{');
            for j in 0..rng.below(6) {
                if j > 0 {
                    record.push(',');
                }
                record.push_str(&format!(
                    "\"{}\":",
                    KEYS[rng.below(KEYS.len() as u64) as usize]
                ));
                value(&mut rng, &mut record, 1);
            }
            record.push('}');
        }
        let plain = accepted(record.as_bytes(), None);
        let mapped = accepted(record.as_bytes(), Some(&empty));
        assert_eq!(
            plain.is_ok(),
            mapped.is_ok(),
            "seed {seed}, record {i}: {record:?}\nplain: {plain:?}\nmapped: {mapped:?}"
        );
        match (&plain, &mapped) {
            (Ok(p), Ok(m)) => {
                rows += 1;
                // Same row, whitespace aside, where serde_json can read it.
                if let (Ok(p), Ok(m)) = (
                    serde_json::from_slice::<serde_json::Value>(p),
                    serde_json::from_slice::<serde_json::Value>(m),
                ) {
                    assert_eq!(p, m, "seed {seed}, record {i}: {record:?}");
                }
            }
            (Err(p), Err(m)) => {
                errors += 1;
                assert_eq!(p, m, "seed {seed}, record {i}: {record:?}");
            }
            _ => unreachable!(),
        }
    }
    assert!(rows > 100 && errors > 100, "{rows} rows, {errors} errors");
}

//! The row contract's edge records (tests/it/row_contract.rs, the README's "Row contract") give
//! the same outcome per record in every sink: a row, or a record error saying why.

use std::collections::BTreeMap;

use serde_json::Value;

use super::run::{expect, Target};
use super::sinks::{selected, Servers, Values};
use crate::row_contract::{cases, Outcome};

#[test]
fn conformance_the_row_contracts_edge_records_get_the_same_outcome_in_every_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = cases();
    let src = tmp.path().join("src/in");
    let key = "2026/11/25/13/s-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e";
    std::fs::create_dir_all(src.join(key).parent().unwrap()).unwrap();
    let body: String = cases.iter().map(|c| format!("{}\n", c.record)).collect();
    std::fs::write(src.join(key), body).unwrap();

    let servers = Servers::default();
    for sink in selected() {
        let t = Target::new(sink, &servers, tmp.path(), "");
        let name = t.name();
        eprintln!("conformance: {name}");
        let summary = expect(
            t.replay(&src, &["--metadata-columns", "source_uri"]),
            0,
            name,
        )
        .summary();
        let rows = t.rows();
        let errors = record_errors(&t.work);
        for (ordinal, c) in cases.iter().enumerate() {
            let want = match sink.guarantees().values {
                Values::Text => c.text,
                Values::BigQuery => c.bigquery,
                Values::Postgres => c.postgres,
                Values::Iceberg => c.iceberg,
            };
            let written = rows.iter().filter(|r| r.k == c.name).count();
            let error = errors.get(&(ordinal as u64));
            let ctx = format!("{name}, `{}` (want {want:?}): error {error:?}", c.name);
            match want {
                Outcome::Row => {
                    assert_eq!(written, 1, "{ctx}");
                    assert!(error.is_none(), "{ctx}");
                }
                Outcome::Error(why) => {
                    assert_eq!(written, 0, "{ctx}");
                    assert!(error.is_some_and(|e| e.contains(why)), "{ctx}");
                }
            }
        }
        // Duplicate keys: the last wins.
        let dup = rows.iter().find(|r| r.k == "duplicate").unwrap();
        let n = match &dup.fields["n"] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        assert_eq!(n, "2", "{name}: {:?}", dup.fields);
        // The summary counts what the destination and the dead letters hold.
        assert_eq!(
            (summary.written, summary.record_errors),
            (rows.len() as u64, errors.len() as u64),
            "{name}: {summary:?}"
        );
    }
}

/// Ordinal → error of each dead-lettered record under `work/dead-letter`.
fn record_errors(work: &std::path::Path) -> BTreeMap<u64, String> {
    let mut errors = BTreeMap::new();
    for f in crate::cli::files_under(&work.join("dead-letter")) {
        let dl: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for r in dl["records"].as_array().into_iter().flatten() {
            errors.insert(
                r["ordinal"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_string(),
            );
        }
    }
    errors
}

//! One conformance suite for every sink (issue 27): the same scenarios run against every entry of
//! [`sinks::SINKS`] — NDJSON files, stdout, BigQuery insert-all, storage-write, load, and
//! `--dedup merge` in storage-write and load — each with its real local server (the
//! local-bigquery emulator; moto for the S3 ledger of concurrent workers). Where a sink cannot
//! give a guarantee, its entry says so ([`sinks::Guarantees`]) and the scenario asserts the
//! weaker documented behaviour instead.
//!
//! Each scenario is one test that starts its servers once and gives every sink a destination
//! of its own on them. `CONFORMANCE_SINKS=ndjson,load` limits a run to some sinks;
//! `CONFORMANCE_SEED` replays the kill points a failed kill scenario printed.
//!
//! A new sink joins by implementing [`sinks::SinkUnderTest`] (its `--sink` flags and
//! environment, how to read back every row its destination holds, the guarantees it claims),
//! adding its server to [`sinks::Servers`] if it needs one, and adding one entry to
//! [`sinks::SINKS`].

mod contract;
mod dead_letters;
mod kills;
mod replays;
mod run;
mod sinks;
mod workers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::harness::archive;
use sinks::Row;

/// Objects in the suite's archive, and records in each: small, so a run takes about a second,
/// and spread over two hours and several load batches.
const OBJECTS: u32 = 6;
const RECORDS: usize = 25;

/// `src/in/2026/11/25/{13,14}/…`: OBJECTS Firehose objects of RECORDS records each, every
/// record's `k` naming it (`o3r12`). Returns the bucket directory.
fn source(scenario: &Path) -> PathBuf {
    source_of(scenario, OBJECTS)
}

/// [`source`] with `n` objects.
fn source_of(scenario: &Path, n: u32) -> PathBuf {
    let root = scenario.join("src/in");
    let objects: Vec<(String, Vec<serde_json::Value>)> = (0..n)
        .map(|o| {
            let hour = 13 + o % 2;
            let key = format!(
                "2026/11/25/{hour}/s-1-2026-11-25-{hour}-00-00-0b4c2c6e-5a1f-4f3e-9b7e-{o:012}"
            );
            let records = (0..RECORDS)
                .map(|r| json!({"k": format!("o{o}r{r}"), "n": r, "s": "x".repeat(r)}))
                .collect();
            (key, records)
        })
        .collect();
    archive(&root, &objects);
    root
}

/// Row ID → `k` of every row of `src`, as a plain NDJSON run without a ledger writes them
/// (row IDs depend on the source alone, so every sink must give these).
fn reference(scenario: &Path, src: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let work = scenario.join("reference");
    std::fs::create_dir_all(&work).unwrap();
    let out = crate::support::bin()
        .current_dir(&work)
        .args(["replay", src.to_str().unwrap(), "--sink", "ndjson:out"])
        .args(["--ledger", "none"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = BTreeMap::new();
    for f in crate::cli::files_under(&work.join("out")) {
        for r in crate::support::read_ndjson(&f) {
            let id = r["_row_id"].as_str().unwrap().to_string();
            let k = r["k"].as_str().unwrap().to_string();
            assert!(
                want.insert(id, k).is_none(),
                "reference row IDs are distinct"
            );
        }
    }
    want
}

/// The `k` of every record of `source`.
fn all_ks() -> BTreeSet<String> {
    (0..OBJECTS)
        .flat_map(|o| (0..RECORDS).map(move |r| format!("o{o}r{r}")))
        .collect()
}

/// Every row of `want` exactly once, under its ID, and nothing else.
fn assert_exactly_once(rows: &[Row], want: &BTreeMap<String, String>, ctx: &str) {
    let mut seen = BTreeMap::new();
    for r in rows {
        *seen.entry((r.id.clone(), r.k.clone())).or_insert(0usize) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{ctx}: {} rows held more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    assert_same_rows(rows, want, ctx);
}

/// Every row of `want` at least once, under its ID, and nothing else.
fn assert_at_least_once(rows: &[Row], want: &BTreeMap<String, String>, ctx: &str) {
    assert_same_rows(rows, want, ctx);
}

fn assert_same_rows(rows: &[Row], want: &BTreeMap<String, String>, ctx: &str) {
    let held: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r.id.clone(), r.k.clone())).collect();
    let want: BTreeSet<(String, String)> =
        want.iter().map(|(i, k)| (i.clone(), k.clone())).collect();
    let missing: Vec<_> = want.difference(&held).collect();
    let extra: Vec<_> = held.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{ctx}: {} rows missing, e.g. {:?}; {} unexpected, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)],
        extra.len(),
        &extra[..extra.len().min(3)]
    );
}

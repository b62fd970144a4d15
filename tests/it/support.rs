//! A Firehose-shaped bucket in a temporary directory, and helpers to replay objects from it and
//! read back exactly what came out.

use std::io::Write;
use std::path::{Path, PathBuf};

use firehose_replay::dead_letter::DeadLetterDir;
use firehose_replay::ledger::NoLedger;
use firehose_replay::object::ObjectRef;
use firehose_replay::pipeline::{
    process_object, Context, ObjectFailure, ObjectReport, Processed, Settings,
};
use firehose_replay::sink::ndjson::NdjsonDir;
use firehose_replay::source::local::LocalStore;
use serde_json::Value;

pub struct Bucket {
    pub tmp: tempfile::TempDir,
}

/// What one object produced.
pub struct Replayed {
    pub result: Result<ObjectReport, Box<ObjectFailure>>,
    /// Output rows, parsed, in order.
    pub rows: Vec<Value>,
    /// The records dead letter, parsed, if one was written.
    pub dead_letter: Option<Value>,
}

impl Replayed {
    /// Rows without their `_row_id` column (checked for shape and uniqueness on the way).
    pub fn bodies(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let id = r
                    .as_object_mut()
                    .expect("rows are objects")
                    .remove("_row_id")
                    .expect("every row has a _row_id");
                let id = id.as_str().expect("string id").to_string();
                assert_eq!(id.len(), 32, "{id}");
                assert!(
                    id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    "{id}"
                );
                assert!(seen.insert(id.clone()), "duplicate row id {id}");
                r
            })
            .collect()
    }

    /// `(ordinal, error)` of each dead-lettered record.
    pub fn dead_records(&self) -> Vec<(u64, String)> {
        self.dead_letter
            .as_ref()
            .map(|d| {
                d["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["ordinal"].as_u64().unwrap(),
                            r["error"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn report(&self) -> &ObjectReport {
        match &self.result {
            Ok(r) => r,
            Err(f) => panic!("object failed: {}", f.error),
        }
    }

    pub fn failure(&self) -> &ObjectFailure {
        match &self.result {
            Ok(_) => panic!("object was expected to fail"),
            Err(f) => f,
        }
    }
}

impl Bucket {
    pub fn new() -> Bucket {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("bucket")).unwrap();
        Bucket { tmp }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("bucket")
    }

    pub fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    pub fn dead(&self) -> PathBuf {
        self.tmp.path().join("dead-letter")
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        let p = self.root().join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn replay(&self, key: &str, settings: &Settings) -> Replayed {
        let store = LocalStore::new(self.root()).unwrap();
        let sink = NdjsonDir::new(self.out());
        let dl = DeadLetterDir::new(self.dead());
        let cx = Context {
            store: &store,
            settings,
            sink: &sink,
            dead_letters: &dl,
            ledger: &NoLedger::default(),
            force: false,
            worker: "test",
            deadline: None,
            cancel: None,
        };
        let result = process_object(&cx, ObjectRef::new("bucket", key)).map(|p| match p {
            Processed::Done(r) => r,
            Processed::Skipped { .. } => panic!("no ledger, nothing to skip"),
        });
        let rows = read_ndjson(&self.out().join("bucket").join(format!("{key}.ndjson")));
        let dead_letter = std::fs::read(
            self.dead()
                .join("bucket")
                .join(format!("{key}.records.json")),
        )
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("dead letters are JSON"));
        Replayed {
            result,
            rows,
            dead_letter,
        }
    }

    /// Stores `bytes` under `key` and replays it with default settings.
    pub fn replay_bytes(&self, key: &str, bytes: &[u8]) -> Replayed {
        self.put(key, bytes);
        self.replay(key, &Settings::default())
    }
}

pub fn read_ndjson(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l}: {e}")))
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn snappy_framed(data: &[u8]) -> Vec<u8> {
    let mut e = snap::write::FrameEncoder::new(Vec::new());
    e.write_all(data).unwrap();
    e.into_inner().unwrap()
}

/// `{"n":0}\n{"n":1}\n...` — `n` records.
pub fn ndjson(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"n\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The rows `{"n":0}...` as parsed values.
pub fn numbered(n: usize) -> Vec<Value> {
    (0..n).map(|i| serde_json::json!({ "n": i })).collect()
}

/// The binary, with no FIREHOSE_REPLAY_* or RUST_LOG settings inherited from the caller.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_firehose-replay"));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("FIREHOSE_REPLAY_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c
}

/// The UTC days, as `YYYY/MM/DD`, from `since` to now: what a dead letter written in between may
/// be filed under. A run that crosses midnight files under the later day, so a test that computed
/// "today" once would fail one night in a few thousand.
pub fn utc_days_since(since: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let mut days = vec![since.format("%Y/%m/%d").to_string()];
    let now = chrono::Utc::now().format("%Y/%m/%d").to_string();
    if days[0] != now {
        days.push(now);
    }
    days
}

/// The one key in `keys` that is `prefix` + one of `days` + `suffix`.
pub fn key_on_one_of<'a>(keys: &[&'a str], prefix: &str, days: &[String], suffix: &str) -> &'a str {
    let found: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| days.iter().any(|d| *k == format!("{prefix}{d}{suffix}")))
        .collect();
    assert_eq!(found.len(), 1, "{prefix}<{days:?}>{suffix} among {keys:?}");
    found[0]
}

pub fn sample_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/firehose")
}

pub fn expected() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/expected-counts.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A small deterministic RNG (xorshift64*), so a failing generated case can be replayed from
/// its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

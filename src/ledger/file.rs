//! A local ledger file: one JSON line per finished object, appended.
//!
//! Each entry is written with a single `write` on a file opened for appending, so a process
//! killed at any point (even `kill -9`) leaves whole lines behind, plus at most one torn last
//! line, which loading ignores. Claims are kept in memory: this ledger serialises the workers of
//! one process; for several machines use the S3 ledger.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{identity, Begin, Claim, Finished, Ledger};
use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;

type Id = (String, String, String);

pub struct FileLedger {
    path: PathBuf,
    done: Mutex<HashSet<Id>>,
    in_flight: Mutex<HashSet<Id>>,
    file: Mutex<File>,
}

#[derive(serde::Deserialize)]
struct Entry {
    bucket: String,
    key: String,
    etag: String,
}

fn ledger_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::permanent(
        Stage::Sink,
        Cause::Sink(format!("ledger {}: {e}", path.display())),
    )
}

impl FileLedger {
    pub fn open(path: impl Into<PathBuf>) -> Result<FileLedger, Error> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| ledger_error(&path, e))?;
        }
        let mut done = HashSet::new();
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).split(b'\n') {
                let line = line.map_err(|e| ledger_error(&path, e))?;
                // A torn last line (killed mid-write) does not parse and is ignored: its object
                // is simply not done.
                if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
                    done.insert((e.bucket, e.key, e.etag));
                }
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| ledger_error(&path, e))?;
        // End a torn last line, so the next entry starts on a line of its own.
        let len = file.metadata().map_err(|e| ledger_error(&path, e))?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| ledger_error(&path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| ledger_error(&path, e))?;
            }
        }
        Ok(FileLedger {
            path,
            done: Mutex::new(done),
            in_flight: Mutex::new(HashSet::new()),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.done.lock().expect("ledger lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ledger for FileLedger {
    fn begin(&self, object: &ObjectRef, force: bool) -> Result<Begin, Error> {
        let id = identity(object);
        if !force && self.done.lock().expect("ledger lock").contains(&id) {
            return Ok(Begin::Done);
        }
        if !self.in_flight.lock().expect("ledger lock").insert(id) {
            return Ok(Begin::Busy("another task of this run".into()));
        }
        Ok(Begin::Proceed(Claim::default()))
    }

    fn finish(&self, object: &ObjectRef, _: Claim, summary: &Finished) -> Result<(), Error> {
        let mut line = serde_json::to_vec(summary).expect("serialisable");
        line.push(b'\n');
        {
            let mut f = self.file.lock().expect("ledger lock");
            f.write_all(&line)
                .map_err(|e| ledger_error(&self.path, e))?;
        }
        let id = identity(object);
        self.in_flight.lock().expect("ledger lock").remove(&id);
        self.done.lock().expect("ledger lock").insert(id);
        Ok(())
    }

    fn abandon(&self, object: &ObjectRef, _: Claim) {
        self.in_flight
            .lock()
            .expect("ledger lock")
            .remove(&identity(object));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, etag: &str) -> ObjectRef {
        let mut o = ObjectRef::new("b", key);
        o.etag = Some(etag.into());
        o
    }

    fn summary(o: &ObjectRef) -> Finished {
        Finished {
            bucket: o.bucket.clone(),
            key: o.key.clone(),
            etag: o.etag.clone().unwrap(),
            records: 1,
            rows: 1,
            record_errors: 0,
            finished_at: "t".into(),
            worker: "w".into(),
        }
    }

    #[test]
    fn remembers_finished_objects_across_reopen_and_tolerates_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let l = FileLedger::open(&path).unwrap();
        let a = obj("a", "e1");
        let Begin::Proceed(c) = l.begin(&a, false).unwrap() else {
            panic!()
        };
        assert!(matches!(l.begin(&a, false).unwrap(), Begin::Busy(_)));
        l.finish(&a, c, &summary(&a)).unwrap();
        drop(l);
        // Simulate a kill during the next append.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"bucket\":\"b\",\"ke")
            .unwrap();
        let l = FileLedger::open(&path).unwrap();
        assert!(matches!(l.begin(&a, false).unwrap(), Begin::Done));
        let b = obj("b", "e1");
        let Begin::Proceed(c) = l.begin(&b, false).unwrap() else {
            panic!()
        };
        l.finish(&b, c, &summary(&b)).unwrap();
        drop(l);
        let l = FileLedger::open(&path).unwrap();
        assert!(
            matches!(l.begin(&b, false).unwrap(), Begin::Done),
            "the entry after a torn line survives"
        );
        assert!(
            matches!(l.begin(&obj("a", "e2"), false).unwrap(), Begin::Proceed(_)),
            "new content, new object"
        );
        assert!(
            matches!(l.begin(&a, true).unwrap(), Begin::Proceed(_)),
            "--force"
        );
        assert_eq!(l.len(), 2);
    }
}

//! A local ledger file: one JSON line per finished object, appended.
//!
//! Each entry is written with a single `write` on a file opened for appending, so a process
//! killed at any point (even `kill -9`) leaves whole lines behind, plus at most one torn last
//! line, which loading ignores. Claims are kept in memory, so this ledger serialises the workers
//! of one process only; that is why a process holds an exclusive lock on the file (`flock`,
//! released when it exits, however it exits), and a second process that opens the same ledger
//! is refused instead of doing the same objects at the same time. For several processes or
//! machines use the S3 ledger.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{identity, Begin, Claim, Finished, Ledger, Staged};
use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;

type Id = (String, String, String);

pub struct FileLedger {
    path: PathBuf,
    done: Mutex<HashSet<Id>>,
    /// Staged-but-not-finished entries (the last one per object wins).
    staged: Mutex<HashMap<Id, Staged>>,
    in_flight: Mutex<HashSet<Id>>,
    file: Mutex<File>,
}

/// A line: a finished object, or (with `staged`) rows about to be committed.
#[derive(serde::Deserialize)]
struct Entry {
    bucket: String,
    key: String,
    etag: String,
    #[serde(default)]
    staged: Option<Staged>,
}

#[derive(serde::Serialize)]
struct StagedEntry<'a> {
    bucket: &'a str,
    key: &'a str,
    etag: &'a str,
    staged: &'a Staged,
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
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        // A symlink in the ledger's place (planted, or left by someone) is not followed:
        // appends would land in whatever it points to.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
        let mut file = options.open(&path).map_err(|e| ledger_error(&path, e))?;
        // Before reading: what is read is then what no other process changes meanwhile.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ledger_error(
                    &path,
                    "in use by another firehose-replay process. A file ledger keeps its claims \
                     in one process, so two processes on one ledger could do the same object at \
                     once: wait for the other to finish, or give each run its own ledger, or use \
                     --ledger s3://bucket/prefix/ for several workers",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ledger_error(&path, e)),
        }
        let mut done = HashSet::new();
        let mut staged = HashMap::new();
        // Read through the handle just locked, never by path again.
        let reader = file.try_clone().and_then(|mut f| {
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
            Ok(f)
        });
        if let Ok(f) = reader {
            for line in BufReader::new(f).split(b'\n') {
                let line = line.map_err(|e| ledger_error(&path, e))?;
                // A torn last line (killed mid-write) does not parse and is ignored: its object
                // is simply not done.
                if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
                    let id = (e.bucket, e.key, e.etag);
                    match e.staged {
                        Some(s) => {
                            staged.insert(id, s);
                        }
                        None => {
                            staged.remove(&id);
                            done.insert(id);
                        }
                    }
                }
            }
        }
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
            staged: Mutex::new(staged),
            in_flight: Mutex::new(HashSet::new()),
            file: Mutex::new(file),
        })
    }

    /// One `write` per line (see the module docs: a kill leaves whole lines and at most one torn
    /// last line). Not fsynced: a killed process loses nothing written; a lost machine may lose
    /// the last lines, and then objects are redone (insertAll) or found staged-but-unrecorded.
    fn write_line(&self, line: &[u8]) -> Result<(), Error> {
        let mut f = self.file.lock().expect("ledger lock");
        f.write_all(line).map_err(|e| ledger_error(&self.path, e))
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
        if !self
            .in_flight
            .lock()
            .expect("ledger lock")
            .insert(id.clone())
        {
            return Ok(Begin::Busy("another task of this run".into()));
        }
        let staged = self.staged.lock().expect("ledger lock").get(&id).cloned();
        Ok(Begin::Proceed(Claim {
            lease: Default::default(),
            staged,
        }))
    }

    fn stage(&self, object: &ObjectRef, _: &Claim, staged: &Staged) -> Result<(), Error> {
        let (bucket, key, etag) = identity(object);
        let mut line = serde_json::to_vec(&StagedEntry {
            bucket: &bucket,
            key: &key,
            etag: &etag,
            staged,
        })
        .expect("serialisable");
        line.push(b'\n');
        self.write_line(&line)?;
        self.staged
            .lock()
            .expect("ledger lock")
            .insert((bucket, key, etag), staged.clone());
        Ok(())
    }

    fn finish(&self, object: &ObjectRef, _: Claim, summary: &Finished) -> Result<(), Error> {
        let mut line = serde_json::to_vec(summary).expect("serialisable");
        line.push(b'\n');
        self.write_line(&line)?;
        let id = identity(object);
        self.in_flight.lock().expect("ledger lock").remove(&id);
        self.staged.lock().expect("ledger lock").remove(&id);
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
    fn a_symlink_in_the_ledger_s_place_is_refused_not_appended_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("someone-else.txt");
        std::fs::write(&target, b"theirs\n").unwrap();
        let path = dir.path().join("l.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(FileLedger::open(&path).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs\n");
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

    #[test]
    fn a_staged_entry_comes_back_in_the_next_claim_until_the_object_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let a = obj("a", "e1");
        let staged = Staged {
            token: "projects/p/datasets/d/tables/t/streams/s1".into(),
            records: 3,
            rows: 2,
            record_errors: 1,
        };
        {
            let l = FileLedger::open(&path).unwrap();
            let Begin::Proceed(c) = l.begin(&a, false).unwrap() else {
                panic!()
            };
            assert_eq!(c.staged, None);
            l.stage(&a, &c, &staged).unwrap();
            // Killed here: no finish.
        }
        let l = FileLedger::open(&path).unwrap();
        let Begin::Proceed(c) = l.begin(&a, false).unwrap() else {
            panic!("staged is not done")
        };
        assert_eq!(c.staged.as_ref(), Some(&staged));
        l.finish(&a, c, &summary(&a)).unwrap();
        drop(l);
        let l = FileLedger::open(&path).unwrap();
        assert!(matches!(l.begin(&a, false).unwrap(), Begin::Done));
        let Begin::Proceed(c) = l.begin(&a, true).unwrap() else {
            panic!()
        };
        assert_eq!(c.staged, None, "a finished object's staged entry is spent");
    }

    #[test]
    fn a_second_opener_of_the_same_ledger_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let first = FileLedger::open(&path).unwrap();
        // flock conflicts between open file descriptions, as between processes.
        let err = FileLedger::open(&path).err().expect("refused while held");
        assert!(
            err.to_string()
                .contains("in use by another firehose-replay process"),
            "{err}"
        );
        drop(first);
        FileLedger::open(&path).expect("free again");
    }
}

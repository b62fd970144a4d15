//! NDJSON files (one per object) and standard output: the sinks that need no cloud account.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{Committed, ObjectWriter, Sink};
use crate::error::{Cause, Error, Stage};
/// Where an object's output file lands below the output directory (the file tree's rule).
pub use crate::files::mirrored_path;
#[cfg(test)]
use crate::files::NAME_MAX;
use crate::files::{create_tree, tempfile_for};
use crate::object::ObjectRef;
use crate::row::Row;

fn sink_error(e: io::Error, what: &Path) -> Error {
    let mut err = Error::from_io(Stage::Sink, e);
    if let Cause::Io(io) = &err.cause {
        err.cause = Cause::Sink(format!("{}: {io}", what.display()));
    }
    err
}

/// `ndjson:DIR`: `DIR/<bucket>/<key>.ndjson`, written to a temporary file and renamed on commit,
/// so a rerun replaces an object's output instead of duplicating it and a crash leaves no half
/// file under the final name.
pub struct NdjsonDir {
    dir: PathBuf,
}

impl NdjsonDir {
    pub fn new(dir: PathBuf) -> Self {
        NdjsonDir { dir }
    }
}

impl Sink for NdjsonDir {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        let path = mirrored_path(&self.dir, object, ".ndjson");
        let parent = path.parent().expect("a path below the sink directory");
        create_tree(&self.dir, parent).map_err(|e| sink_error(e, parent))?;
        let tmp = tempfile_for(&path).map_err(|e| sink_error(e, parent))?;
        let mut redriven = object.clone();
        redriven.key.push_str(REDRIVEN);
        Ok(Box::new(FileWriter {
            out: BufWriter::with_capacity(1 << 20, tmp),
            path,
            // Not for the redriven rows themselves.
            redriven: (!object.key.ends_with(REDRIVEN))
                .then(|| mirrored_path(&self.dir, &redriven, ".ndjson")),
        }))
    }
}

/// The key suffix `redrive` writes rebuilt records under (`<key>.redriven`).
const REDRIVEN: &str = ".redriven";

struct FileWriter {
    out: BufWriter<tempfile::NamedTempFile>,
    path: PathBuf,
    /// `<key>.redriven.ndjson`, removed once this output is in place.
    redriven: Option<PathBuf>,
}

impl ObjectWriter for FileWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        let [a, b, c] = row.parts();
        self.out
            .write_all(a)
            .and_then(|_| self.out.write_all(b))
            .and_then(|_| self.out.write_all(c))
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|e| sink_error(e, &self.path))
    }

    fn commit(self: Box<Self>) -> Result<Committed, Error> {
        let path = self.path;
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| sink_error(e.into_error(), &path))?;
        tmp.persist(&path).map_err(|e| sink_error(e.error, &path))?;
        // Rows `redrive` wrote beside an earlier output (`<key>.redriven.ndjson`) are in this
        // one now, or in a new records letter: they would count twice.
        if let Some(redriven) = &self.redriven {
            match fs::remove_file(redriven) {
                Ok(()) => {
                    tracing::info!(file = %redriven.display(), "removed rows of an earlier redrive: the object was written again")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(sink_error(e, redriven)),
            }
        }
        Ok(Committed::default())
    }
}

/// `stdout`: rows as NDJSON. Unlike files, what was printed cannot be taken back when an object
/// fails later (and is retried), so nothing of an object is printed before its commit: its rows
/// are held in memory up to 1 MiB and beyond that in an anonymous temporary file (memory stays
/// bounded), then printed whole at commit. A retried object therefore never prints a row twice,
/// and objects processed concurrently never interleave. A closed stdout (a broken pipe:
/// `| head`) fails every object with [`Cause::OutputClosed`], which ends the run.
#[derive(Debug, Default)]
pub struct Stdout;

impl Sink for Stdout {
    fn open(&self, _object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Err(Error::output_closed());
        }
        Ok(Box::new(StdoutWriter {
            buf: Vec::with_capacity(64 * 1024),
            spool: None,
            target: None,
        }))
    }
}

/// Where a [`StdoutWriter`] prints; `None` is the process's stdout.
type Target = Option<std::sync::Arc<Mutex<Vec<u8>>>>;

const STDOUT_HOLD: usize = 1 << 20;

struct StdoutWriter {
    buf: Vec<u8>,
    /// Rows past the first MiB, until commit.
    spool: Option<fs::File>,
    /// A buffer standing in for stdout (tests).
    target: Target,
}

fn stdout_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        // The reader went away (`| head`): every later write would fail the same way.
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        return Error::output_closed();
    }
    sink_error(e, Path::new("<stdout>"))
}

static STDOUT_GUARD: Mutex<()> = Mutex::new(());

/// Set once a write to stdout met a broken pipe, so objects still in flight stop at their next
/// row instead of decoding to the end for nothing.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

impl ObjectWriter for StdoutWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Err(Error::output_closed());
        }
        row.append_to(&mut self.buf);
        self.buf.push(b'\n');
        if self.buf.len() >= STDOUT_HOLD {
            let spool = match &mut self.spool {
                Some(f) => f,
                None => self.spool.insert(
                    tempfile::tempfile().map_err(|e| sink_error(e, Path::new("<stdout spool>")))?,
                ),
            };
            spool
                .write_all(&self.buf)
                .map_err(|e| sink_error(e, Path::new("<stdout spool>")))?;
            self.buf.clear();
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        use std::io::{Seek, SeekFrom};
        // One object at a time, whole: stdout's own lock is per call.
        let _guard = STDOUT_GUARD.lock().unwrap_or_else(|p| p.into_inner());
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Err(Error::output_closed());
        }
        let mut stdout;
        let mut captured;
        let out: &mut dyn Write = match &self.target {
            None => {
                stdout = io::stdout().lock();
                &mut stdout
            }
            Some(t) => {
                captured = t.lock().unwrap_or_else(|p| p.into_inner());
                &mut *captured
            }
        };
        if let Some(mut spool) = self.spool.take() {
            spool
                .seek(SeekFrom::Start(0))
                .map_err(|e| sink_error(e, Path::new("<stdout spool>")))?;
            io::copy(&mut spool, out).map_err(stdout_error)?;
        }
        out.write_all(&self.buf)
            .and_then(|_| out.flush())
            .map_err(stdout_error)?;
        Ok(Committed::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_prints_an_object_only_at_its_commit_so_a_retry_never_prints_rows_twice() {
        let target = std::sync::Arc::new(Mutex::new(Vec::new()));
        let writer = |t: &std::sync::Arc<Mutex<Vec<u8>>>| StdoutWriter {
            buf: Vec::new(),
            spool: None,
            target: Some(t.clone()),
        };
        let id = crate::row::ObjectSeed::new(&ObjectRef::new("b", "k")).id(0, &[]);
        let record = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
        let row = Row::whole(&id, 0, record.as_bytes());
        // An attempt that fails after 3 MiB of rows (more than is held in memory) is dropped.
        let mut first = writer(&target);
        for _ in 0..3000 {
            first.write_row(&row).unwrap();
        }
        assert!(first.spool.is_some(), "rows past 1 MiB are spooled to disk");
        drop(first);
        assert!(
            target.lock().unwrap().is_empty(),
            "nothing printed before commit"
        );
        // The retry commits: every row exactly once.
        let mut second = Box::new(writer(&target));
        for _ in 0..3000 {
            second.write_row(&row).unwrap();
        }
        second.commit().unwrap();
        let printed = target.lock().unwrap();
        assert_eq!(printed.len(), 3000 * (record.len() + 1));
        assert_eq!(
            printed
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            3000
        );
    }

    #[test]
    fn a_killed_attempts_partial_file_is_replaced_not_left_beside_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.ndjson");
        // A run killed mid-object leaves its temporary file behind.
        let left = tempfile_for(&path).unwrap();
        let (_, kept) = left.keep().unwrap();
        assert!(kept.exists());
        // The next attempt at the object reuses (removes) it and renames its own into place.
        let mut next = tempfile_for(&path).unwrap();
        next.write_all(b"{}\n").unwrap();
        next.persist(&path).unwrap();
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["k.ndjson"]);
    }

    #[test]
    fn keys_cannot_escape_the_output_directory() {
        let o = ObjectRef::new("b", "../../etc/passwd");
        let p = mirrored_path(Path::new("/out"), &o, ".ndjson");
        assert_eq!(p, PathBuf::from("/out/b/%2E%2E/%2E%2E/etc/passwd.ndjson"));
        let o = ObjectRef::new("b", "a//b/");
        assert_eq!(
            mirrored_path(Path::new("/out"), &o, ".x"),
            PathBuf::from("/out/b/a/%/b/%.x")
        );
        // The bucket is one segment whatever it holds.
        for bucket in ["srcb/../../../ESCAPED", "..", "a/b"] {
            let p = mirrored_path(Path::new("/out"), &ObjectRef::new(bucket, "k"), ".x");
            assert_eq!(
                p.parent().and_then(Path::parent),
                Some(Path::new("/out")),
                "{}",
                p.display()
            );
            assert!(
                p.components().all(|c| c != std::path::Component::ParentDir),
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn a_symlink_inside_the_tree_is_refused_and_nothing_is_written_through_it() {
        let t = tempfile::tempdir().unwrap();
        let (out, elsewhere) = (t.path().join("out"), t.path().join("elsewhere"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("b")).unwrap();
        let sink = NdjsonDir::new(out.clone());
        let err = sink.open(&ObjectRef::new("b", "k/x.gz")).err().unwrap();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        // The directory the operator named may itself be a link.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        std::fs::remove_file(out.join("b")).unwrap();
        assert!(NdjsonDir::new(link)
            .open(&ObjectRef::new("b", "k/x.gz"))
            .is_ok());
    }

    #[test]
    fn different_keys_never_share_a_path() {
        let dir = Path::new("/out");
        let keys = [
            "keys/../escape.json",
            "keys/%2E%2E/escape.json",
            "keys/%252E%252E/escape.json",
            "keys/./escape.json",
            "keys/%2E/escape.json",
            "double//slash",
            "double/%/slash",
            "double/%25/slash",
            "back\\slash",
            "back%5Cslash",
            "nul\0",
            "nul%00",
        ];
        let paths: std::collections::HashSet<PathBuf> = keys
            .iter()
            .map(|k| mirrored_path(dir, &ObjectRef::new("b", *k), ".ndjson"))
            .collect();
        assert_eq!(paths.len(), keys.len(), "{paths:?}");
        for p in &paths {
            assert!(p.starts_with("/out/b/"), "{}", p.display());
            assert!(
                p.components().all(|c| matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::RootDir
                )),
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn long_segments_are_shortened_deterministically_and_stay_distinct() {
        let dir = Path::new("/out");
        let long = |c: &str, n: usize| format!("2026/11/25/13/{}", c.repeat(n));
        for suffix in [".ndjson", ".records.json", ".redriven.ndjson"] {
            let a = mirrored_path(dir, &ObjectRef::new("b", long("a", 300)), suffix);
            let b = mirrored_path(dir, &ObjectRef::new("b", long("a", 301)), suffix);
            let u = mirrored_path(dir, &ObjectRef::new("b", long("ü", 200)), suffix);
            for p in [&a, &b, &u] {
                let name = p.file_name().unwrap().to_str().unwrap();
                assert!(name.len() <= NAME_MAX, "{name}");
                assert!(name.ends_with(suffix) && name.contains("%~"), "{name}");
            }
            assert_ne!(a, b);
            assert_eq!(
                a,
                mirrored_path(dir, &ObjectRef::new("b", long("a", 300)), suffix)
            );
        }
        // Exactly at the limit: kept as it is.
        let fits = "x".repeat(NAME_MAX - ".ndjson".len());
        let p = mirrored_path(dir, &ObjectRef::new("b", fits.clone()), ".ndjson");
        assert_eq!(p, dir.join("b").join(format!("{fits}.ndjson")));
    }
}

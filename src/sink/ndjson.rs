//! NDJSON files (one per object) and standard output: the sinks that need no cloud account.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{Committed, ObjectWriter, Sink};
use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;
use crate::row::Row;

/// Where an object's output or dead letter goes below `dir`: `dir/<bucket>/<key><suffix>`.
/// Key segments that could escape `dir` (`..`, `.`, empty) are neutralised: S3 keys are
/// arbitrary strings.
pub fn mirrored_path(dir: &Path, object: &ObjectRef, suffix: &str) -> PathBuf {
    let mut p = dir.join(safe_segment(&object.bucket));
    let segments: Vec<&str> = object.key.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let seg = if i + 1 == segments.len() {
            format!("{}{suffix}", safe_segment(seg))
        } else {
            safe_segment(seg)
        };
        p.push(seg);
    }
    p
}

fn safe_segment(s: &str) -> String {
    match s {
        "" => "%".into(),
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        s => s.replace('\\', "%5C").replace('\0', "%00"),
    }
}

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
        fs::create_dir_all(parent).map_err(|e| sink_error(e, parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(|e| sink_error(e, parent))?;
        Ok(Box::new(FileWriter {
            out: BufWriter::with_capacity(1 << 20, tmp),
            path,
        }))
    }
}

struct FileWriter {
    out: BufWriter<tempfile::NamedTempFile>,
    path: PathBuf,
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
        Ok(Committed::default())
    }
}

/// `stdout`: rows as NDJSON. Objects processed concurrently interleave at whole-buffer
/// granularity, never inside a line. Unlike files, what was printed cannot be taken back when an
/// object fails later, so rows are held until commit up to 1 MiB per object. A closed stdout
/// (a broken pipe: `| head`) fails every object with [`Cause::OutputClosed`], which ends the run.
#[derive(Debug, Default)]
pub struct Stdout;

impl Sink for Stdout {
    fn open(&self, _object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Err(Error::output_closed());
        }
        Ok(Box::new(StdoutWriter {
            buf: Vec::with_capacity(STDOUT_FLUSH),
        }))
    }
}

const STDOUT_FLUSH: usize = 1 << 20;

struct StdoutWriter {
    buf: Vec<u8>,
}

impl StdoutWriter {
    fn flush(&mut self) -> Result<(), Error> {
        // Serialise whole buffers; stdout's own lock is per call and would allow interleaving
        // between two write_all calls of different threads.
        let _guard = STDOUT_GUARD.lock().unwrap_or_else(|p| p.into_inner());
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Err(Error::output_closed());
        }
        let mut out = io::stdout().lock();
        match out.write_all(&self.buf).and_then(|_| out.flush()) {
            Ok(()) => {}
            // The reader went away (`| head`): every later write would fail the same way.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
                return Err(Error::output_closed());
            }
            Err(e) => return Err(sink_error(e, Path::new("<stdout>"))),
        }
        self.buf.clear();
        Ok(())
    }
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
        if self.buf.len() >= STDOUT_FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        self.flush()?;
        Ok(Committed::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}

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
///
/// S3 keys are arbitrary strings, local names are not, so each key segment is escaped:
/// - segments that could escape `dir` or that a file system cannot hold become names no other
///   segment maps to: `` (an empty segment, as in `a//b`) → `%`, `.` → `%2E`, `..` → `%2E%2E`;
/// - in every other segment `%` becomes `%25` (so a key that spells `%2E%2E` or `%` itself
///   keeps a name of its own), `\` becomes `%5C` and NUL `%00`;
/// - a name longer than a file system takes (255 bytes, suffix included) is cut at a character
///   boundary and ends in `%~` and the MD5 of the whole segment: deterministic, and no
///   escaped segment contains `%~`.
///
/// So different keys never share a file, and no key leaves `dir`.
pub fn mirrored_path(dir: &Path, object: &ObjectRef, suffix: &str) -> PathBuf {
    let mut p = dir.join(fit_name(safe_segment(&object.bucket), ""));
    let segments: Vec<&str> = object.key.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        p.push(fit_name(safe_segment(seg), if last { suffix } else { "" }));
    }
    p
}

/// The longest file name common file systems take (ext4, XFS, APFS, NTFS: 255 bytes).
pub const NAME_MAX: usize = 255;

fn safe_segment(s: &str) -> String {
    match s {
        "" => "%".into(),
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        s => s
            .replace('%', "%25")
            .replace('\\', "%5C")
            .replace('\0', "%00"),
    }
}

/// `name` + `suffix`, shortened to [`NAME_MAX`] bytes when longer (keeping `suffix`).
fn fit_name(name: String, suffix: &str) -> String {
    if name.len() + suffix.len() <= NAME_MAX {
        return name + suffix;
    }
    use md5::{Digest, Md5};
    let hash = hex::encode(Md5::digest(name.as_bytes()));
    let room = NAME_MAX.saturating_sub(suffix.len() + 2 + hash.len());
    let mut cut = room.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}%~{hash}{suffix}", &name[..cut])
}

/// A temporary file in `dir` to be renamed into place as an output or a dead letter: created
/// like any other file, with the umask deciding its mode (`tempfile`'s default is 0600).
pub fn output_tempfile(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    b.prefix(".tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
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
        let tmp = output_tempfile(parent).map_err(|e| sink_error(e, parent))?;
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

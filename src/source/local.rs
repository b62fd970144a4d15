//! A local directory laid out like a Firehose bucket.
//!
//! The directory plays the bucket: its name is the bucket name and paths below it are keys, so
//! a local copy of a bucket produces the same rows as the bucket itself (row IDs differ only by
//! the bucket name).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use md5::{Digest, Md5};

use super::{Etag, ObjectStore, Opened};
use crate::error::{Cause, Error, Stage};
use crate::object::{ObjectRef, Origin};

pub struct LocalStore {
    root: PathBuf,
    name: String,
    /// The root's absolute path, as dead letters record it.
    origin: Origin,
    /// Canonical paths listing never enters (a run's own output, dead letters and ledger).
    exclude: Vec<PathBuf>,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStore, Error> {
        let root: PathBuf = root.into();
        let meta = std::fs::metadata(&root).map_err(|e| Error::from_io(Stage::Fetch, e))?;
        if !meta.is_dir() {
            return Err(Error::permanent(
                Stage::Fetch,
                Cause::Io(io::Error::other(format!(
                    "{} is not a directory",
                    root.display()
                ))),
            ));
        }
        let canonical = root.canonicalize().ok();
        let name = canonical
            .as_ref()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "local".into());
        let abs = canonical
            .or_else(|| std::path::absolute(&root).ok())
            .unwrap_or_else(|| root.clone());
        Ok(LocalStore {
            root,
            name,
            origin: Origin::Local { root: abs },
            exclude: Vec::new(),
        })
    }

    /// Listing skips these paths and everything below them (compared after resolving
    /// symlinks, so a link into them is skipped too). Paths that do not exist are ignored.
    pub fn excluding(mut self, paths: impl IntoIterator<Item = PathBuf>) -> LocalStore {
        self.exclude
            .extend(paths.into_iter().filter_map(|p| p.canonicalize().ok()));
        self
    }

    /// Whether listing would skip `path`.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.excluded(path)
    }

    fn excluded(&self, path: &Path) -> bool {
        !self.exclude.is_empty()
            && path
                .canonicalize()
                .is_ok_and(|c| self.exclude.iter().any(|x| c.starts_with(x)))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the objects of this store record as their origin: the root's absolute path.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    fn path_of(&self, key: &str) -> PathBuf {
        let mut p = self.root.clone();
        for seg in key.split('/') {
            p.push(seg);
        }
        p
    }

    /// The key of a path below the root.
    pub fn key_of(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        Some(parts?.join("/"))
    }
}

/// MD5 hex of a file: what S3 reports as the ETag of a single-part upload, so local files get a
/// content-derived identity like S3 objects do.
fn md5_hex(path: &Path) -> io::Result<String> {
    let mut f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl ObjectStore for LocalStore {
    fn open(&self, object: &mut ObjectRef) -> Result<Opened, Error> {
        object.origin = Some(self.origin.clone());
        // No local file has such a name; and `..` would read outside the tree.
        if object
            .key
            .split('/')
            .any(|seg| matches!(seg, "" | "." | ".."))
        {
            return Err(Error::permanent(
                Stage::Fetch,
                Cause::Io(io::Error::other(format!(
                    "key `{}` has an empty, `.` or `..` segment: no file below {} has it",
                    object.key,
                    self.root.display()
                ))),
            ));
        }
        let path = self.path_of(&object.key);
        let f = File::open(&path).map_err(|e| Error::from_io(Stage::Fetch, e))?;
        let meta = f.metadata().map_err(|e| Error::from_io(Stage::Fetch, e))?;
        if !meta.is_file() {
            return Err(Error::permanent(
                Stage::Fetch,
                Cause::Io(io::Error::other(format!(
                    "{} is not a file",
                    path.display()
                ))),
            ));
        }
        object.size = Some(meta.len());
        // The MD5 pass reads the file a second time, on its own thread, while decoding starts.
        let etag = std::thread::Builder::new()
            .name("md5".into())
            .spawn(move || md5_hex(&path))
            .map_err(|e| Error::from_io(Stage::Fetch, e))?;
        Ok(Opened {
            reader: Box::new(f),
            etag: Etag::Computing(etag),
            content_encoding: None,
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<ObjectRef>, Error>> {
        Box::pin(async move { self.list_blocking(prefix) })
    }

    fn bucket(&self) -> &str {
        &self.name
    }
}

impl LocalStore {
    /// Walks the directory the prefix names (local disks answer fast enough to do it inline).
    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectRef>, Error> {
        // Walk only the directory the prefix names, then filter by the rest of it.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let start = self.path_of(dir_part);
        if !start.is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Symlinks are followed: a tree assembled from links replays like a copy. A link that
        // loops or points nowhere is reported and skipped.
        let walk = walkdir::WalkDir::new(&start)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| !self.excluded(e.path()));
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.loop_ancestor().is_some() => {
                    tracing::warn!(path = ?e.path(), "skipped: a symlink loop");
                    continue;
                }
                Err(e)
                    if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound)
                        && e.path().is_some_and(|p| p.is_symlink()) =>
                {
                    tracing::warn!(path = ?e.path(), "skipped: a symlink to nothing");
                    continue;
                }
                Err(e) => {
                    return Err(Error::from_io(
                        Stage::Fetch,
                        e.into_io_error()
                            .unwrap_or_else(|| io::Error::other("walk failed")),
                    ))
                }
            };
            if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with('.')
            {
                continue;
            }
            let Some(key) = self.key_of(entry.path()) else {
                continue;
            };
            if key.starts_with(prefix) {
                let mut o = ObjectRef::new(&self.name, key);
                o.size = entry.metadata().ok().map(|m| m.len());
                o.origin = Some(self.origin.clone());
                out.push(o);
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// Where a local path sits in a Firehose-shaped tree: the directory that plays the bucket, and
/// the path's key (for a file) or key prefix (for a directory, ending in `/` unless empty).
///
/// A path below `…/YYYY/MM/DD/HH/` (or `…/processing-failed/YYYY/…`) belongs to the tree above
/// the year, so replaying one file yields the same keys — and row IDs — as a backfill of the
/// whole tree. Other paths are their own root (a directory) or their parent's (a file).
pub fn locate(path: &Path) -> io::Result<(PathBuf, String)> {
    let abs = path.canonicalize()?;
    let is_file = abs.is_file();
    let dir = if is_file {
        abs.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| abs.clone())
    } else {
        abs.clone()
    };
    let names: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    // The date part is a 4-digit year followed by at most three 2-digit parts, ending the path.
    let year_at = (names.len().saturating_sub(4)..names.len())
        .find(|&j| digits(&names[j], 4) && names[j + 1..].iter().all(|s| digits(s, 2)));
    let mut root_depth = match year_at {
        Some(j) => j,
        None => names.len(),
    };
    if year_at.is_some() && root_depth > 0 && names[root_depth - 1].ends_with("-failed") {
        root_depth -= 1;
    }
    let mut root = PathBuf::from("/");
    for n in &names[..root_depth] {
        root.push(n);
    }
    let rel = abs
        .strip_prefix(&root)
        .map(|r| {
            r.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default();
    let key = if is_file || rel.is_empty() {
        rel
    } else {
        format!("{rel}/")
    };
    Ok((root, key))
}

/// A local path's key below `root`, the directory that plays the bucket (`replay
/// --source-root`): the same key a backfill of `root` gives it. A path outside `root` is an
/// error, not an object of another bucket.
pub fn below(root: &Path, path: &Path) -> io::Result<(PathBuf, String)> {
    let root = root.canonicalize()?;
    let abs = path.canonicalize()?;
    let rel = abs.strip_prefix(&root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is not below --source-root {}", root.display()),
        )
    })?;
    let rel = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let key = if abs.is_file() || rel.is_empty() {
        rel
    } else {
        format!("{rel}/")
    };
    Ok((root, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_below_an_hour_folder_belong_to_the_tree_above_the_year() {
        let t = tempfile::tempdir().unwrap();
        let hour = t.path().join("bucket/2026/11/25/22");
        let err = t.path().join("bucket/processing-failed/2026/11/26/00");
        std::fs::create_dir_all(&hour).unwrap();
        std::fs::create_dir_all(&err).unwrap();
        std::fs::write(hour.join("s-1-x.gz"), b"").unwrap();
        std::fs::write(err.join("e.gz"), b"").unwrap();
        let bucket = t.path().join("bucket").canonicalize().unwrap();

        assert_eq!(
            locate(&hour.join("s-1-x.gz")).unwrap(),
            (bucket.clone(), "2026/11/25/22/s-1-x.gz".into())
        );
        assert_eq!(
            locate(&err.join("e.gz")).unwrap(),
            (
                bucket.clone(),
                "processing-failed/2026/11/26/00/e.gz".into()
            )
        );
        assert_eq!(
            locate(&t.path().join("bucket/2026/11")).unwrap(),
            (bucket.clone(), "2026/11/".into())
        );
        assert_eq!(
            locate(&t.path().join("bucket")).unwrap(),
            (bucket, String::new())
        );
    }
}

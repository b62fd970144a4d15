//! Local file trees the tool writes (NDJSON output, `dir:` dead letters, manifests): where an
//! object's file goes below a directory, creating that tree without following planted links,
//! and temporary files renamed into place. A leaf: the NDJSON sink and dead letters both build
//! on it, neither on the other.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::object::ObjectRef;

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

/// Creates the directories from `root` down to `dir` (a path below it), refusing any that is a
/// symlink: the tree below an output or dead-letter directory is the tool's own, and a link
/// planted in it (`out/<bucket>` → `/etc`) would send its writes elsewhere. `root` itself is
/// the operator's choice and may be one.
pub fn create_tree(root: &Path, dir: &Path) -> io::Result<()> {
    let below = dir.strip_prefix(root).map_err(|_| {
        io::Error::other(format!("{} is not below {}", dir.display(), root.display()))
    })?;
    fs::create_dir_all(root)?;
    let mut at = root.to_path_buf();
    for part in below.components() {
        at.push(part);
        match fs::create_dir(&at) {
            Ok(()) => continue,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = fs::symlink_metadata(&at)?;
        if meta.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symlink: refused in a directory tree this tool writes",
                at.display()
            )));
        }
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                at.display()
            )));
        }
    }
    Ok(())
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
            // Key segments are split at `/`; a bucket name is not, and must stay one segment
            // even if one with a `/` got past validation.
            .replace('/', "%2F")
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

/// The temporary file `path` is written through before it is renamed into place: a fixed name
/// beside it (`.<name>.tmp`), so an attempt that was killed leaves at most one, which the next
/// attempt at the same object removes — leftovers never pile up — and readers that skip
/// dot-files (Spark, Hive, shell globs) never see partial data.
pub fn tempfile_for(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A name near the file-name limit would not fit the prefix and suffix: hash it instead.
    let stem = if name.len() > 200 {
        blake3::hash(name.as_bytes()).to_hex()[..32].to_string()
    } else {
        name
    };
    let tmp_name = format!(".{stem}.tmp");
    match fs::remove_file(dir.join(&tmp_name)) {
        Ok(()) => {
            tracing::info!(file = %dir.join(&tmp_name).display(), "removed a partial file left by an attempt that did not finish")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut b = tempfile::Builder::new();
    b.prefix(&tmp_name).rand_bytes(0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

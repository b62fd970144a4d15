//! Where a `dir:` dead letter lives: below the directory, at the object's mirrored path
//! (`DIR/<bucket>/<key>.object.json`, `….records.json`), so one object's letters never collide
//! with another's and a later run can find — and remove — the letters of an object it
//! delivered.

use std::path::{Path, PathBuf};

use super::Kind;
use crate::object::ObjectRef;

/// The letter of `kind` for `object` in the dead-letter directory `dir`.
pub fn letter_path(dir: &Path, object: &ObjectRef, kind: Kind) -> PathBuf {
    crate::files::mirrored_path(dir, object, &format!(".{}.json", kind.name()))
}

/// The letters of `object` that no longer hold once it was delivered: its object letter, and
/// its records letter unless the delivering run wrote a new one (`records_kept`).
pub fn stale_letters(dir: &Path, object: &ObjectRef, records_kept: bool) -> Vec<PathBuf> {
    let mut stale = vec![letter_path(dir, object, Kind::Object)];
    if !records_kept {
        stale.push(letter_path(dir, object, Kind::Records));
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_mirror_the_object_and_stale_ones_spare_a_new_records_letter() {
        let o = ObjectRef::new("b", "2026/11/25/k.gz");
        let dir = Path::new("/dl");
        assert_eq!(
            letter_path(dir, &o, Kind::Object),
            Path::new("/dl/b/2026/11/25/k.gz.object.json")
        );
        assert_eq!(
            stale_letters(dir, &o, false),
            vec![
                PathBuf::from("/dl/b/2026/11/25/k.gz.object.json"),
                PathBuf::from("/dl/b/2026/11/25/k.gz.records.json")
            ]
        );
        assert_eq!(stale_letters(dir, &o, true).len(), 1);
    }
}

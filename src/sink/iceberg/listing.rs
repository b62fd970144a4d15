//! The files under a table's data location, on the local filesystem or on S3, with their size
//! and last write: what [`super::orphans`] needs and iceberg's `FileIO` cannot give (it reads,
//! writes and deletes, but does not list).
//!
//! On S3 the listing is [`crate::aws::listing`] through the S3 client every AWS user here
//! shares ([`crate::aws::client`]: the SDK's credentials chain, region and
//! `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` with path-style addressing — the identity and
//! endpoint the warehouse's storage uses, [`super::storage::s3_io`]). An object's "last write"
//! there is its `LastModified`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Cause, Class, Error, Stage};

/// One file under the listed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its location as the table's `FileIO` takes it (`file:///…`, `s3://bucket/key`).
    pub location: String,
    /// Its name (the last path segment).
    pub name: String,
    pub bytes: u64,
    /// Its last write (`None` when the store does not say).
    pub modified: Option<SystemTime>,
}

/// Where a data location is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    /// `scheme` as the location names it (`s3`, `s3a`, `s3n`), kept so that the listed
    /// locations are the ones the table's `FileIO` was given.
    S3 {
        scheme: String,
        bucket: String,
        prefix: String,
    },
}

/// The files under `location` (recursively) whose name `keep` accepts: only those are held.
pub async fn list(location: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<Listed>, Error> {
    match place(location) {
        Some(Place::Local(dir)) => list_local(&dir, keep),
        Some(Place::S3 {
            scheme,
            bucket,
            prefix,
        }) => list_s3(&scheme, &bucket, &prefix, keep).await,
        None => Err(Error::new(
            Stage::Sink,
            Class::Permanent,
            Cause::Sink(format!(
                "{location}: listing data files is supported on a local or S3 warehouse only"
            )),
        )),
    }
}

fn list_local(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<Listed>, Error> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out); // no data file written yet
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| local_error(dir, e.to_string()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep(&name) {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| local_error(entry.path(), e.to_string()))?;
        out.push(Listed {
            location: format!("file://{}", entry.path().display()),
            name,
            bytes: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    Ok(out)
}

async fn list_s3(
    scheme: &str,
    bucket: &str,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Listed>, Error> {
    let client = crate::aws::client(false).await;
    let what = format!("listing {scheme}://{bucket}/{prefix}");
    let listed = crate::aws::listing::objects(&client, bucket, prefix, Stage::Sink, &what).await?;
    let mut out = Vec::new();
    for o in &listed {
        let Some(key) = o.key() else { continue };
        let name = key.rsplit('/').next().unwrap_or(key);
        if !keep(name) {
            continue;
        }
        out.push(Listed {
            location: format!("{scheme}://{bucket}/{key}"),
            name: name.to_string(),
            bytes: o.size().unwrap_or(0).max(0) as u64,
            modified: o
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        });
    }
    Ok(out)
}

/// Where `location` is: a `file:` location or a plain absolute path is local; `s3://`,
/// `s3a://` and `s3n://` are S3, listed under `<key>/` (so that `data` does not take `data2`).
fn place(location: &str) -> Option<Place> {
    if let Some(rest) = location.strip_prefix("file:") {
        return Some(Place::Local(PathBuf::from(format!(
            "/{}",
            rest.trim_start_matches('/')
        ))));
    }
    if location.starts_with('/') {
        return Some(Place::Local(PathBuf::from(location)));
    }
    let (scheme, rest) = location.split_once("://")?;
    if !matches!(scheme, "s3" | "s3a" | "s3n") {
        return None;
    }
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let key = key.trim_matches('/');
    Some(Place::S3 {
        scheme: scheme.to_string(),
        bucket: bucket.to_string(),
        prefix: if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        },
    })
}

fn local_error(dir: &Path, e: String) -> Error {
    Error::new(
        Stage::Sink,
        Class::Transient,
        Cause::Sink(format!("listing {}: {e}", dir.display())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_locations_are_local_s3_ones_a_bucket_and_a_prefix_others_neither() {
        let local = |p: &str| Some(Place::Local(PathBuf::from(p)));
        assert_eq!(place("file:///w/ns/t/data"), local("/w/ns/t/data"));
        assert_eq!(place("file:/w/d"), local("/w/d"));
        assert_eq!(place("/w/d"), local("/w/d"));
        let s3 = |scheme: &str, bucket: &str, prefix: &str| {
            Some(Place::S3 {
                scheme: scheme.into(),
                bucket: bucket.into(),
                prefix: prefix.into(),
            })
        };
        assert_eq!(place("s3://b/w/ns/t/data"), s3("s3", "b", "w/ns/t/data/"));
        assert_eq!(place("s3a://b/w/data/"), s3("s3a", "b", "w/data/"));
        assert_eq!(place("s3://b"), s3("s3", "b", ""));
        for other in ["s3:///k", "gs://b/d", "hdfs://n/d", "relative/d"] {
            assert_eq!(place(other), None, "{other}");
        }
    }
}

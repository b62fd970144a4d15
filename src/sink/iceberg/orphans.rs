//! Data files this sink wrote that no snapshot references: what a batch killed between writing
//! its files and committing them leaves behind (`fr-<batch ID>-NNNNN.parquet` under the table's
//! data location). No reader ever sees them; they only take space.
//!
//! Why an age threshold: a running writer's files are unreferenced too until its commit, and
//! nothing in the table tells them from a killed batch's. A file is taken for an orphan only
//! once it is older than the threshold (its last write), which must be longer than any batch
//! takes from closing its first file to committing. Why only this sink's files: another
//! writer's files (Firehose, Spark) follow other rules this command cannot know.
//!
//! Listing: iceberg's `FileIO` reads, writes and deletes but cannot list, so the data location
//! is listed by [`listing`] (the local filesystem, or `ListObjectsV2` on S3, where a file's
//! last write is its object's `LastModified`); removal goes through the table's `FileIO`.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::{listing, sink_error, Shared};
use crate::error::Error;

/// What this sink's data file names start and end with.
const PREFIX: &str = "fr-";
const SUFFIX: &str = ".parquet";

/// One unreferenced data file of this sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its location as the table's `FileIO` takes it (`file:///…`, `s3://bucket/key`).
    pub location: String,
    pub bytes: u64,
    /// Since its last write.
    pub age: Duration,
    /// The batch that wrote it.
    pub batch: String,
}

/// The batch ID in one of this sink's data file names (`fr-<batch>-NNNNN.parquet`).
pub fn batch_of_file(name: &str) -> Option<&str> {
    let stem = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (batch, n) = stem.rsplit_once('-')?;
    (!batch.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(batch)
}

/// This sink's data files under the table's data location that no snapshot the table keeps
/// references, older than `min_age`, oldest first.
pub async fn find(shared: &Shared, min_age: Duration) -> Result<Vec<Orphan>, Error> {
    let table = shared
        .catalog
        .load_table(&shared.ident)
        .await
        .map_err(|e| sink_error("loading the table", e))?;
    let metadata = table.metadata();
    // Every data file any kept snapshot names (by file name: this sink's are unique, a batch ID
    // ends in a per-attempt nonce).
    let mut referenced: HashSet<String> = HashSet::new();
    for snapshot in metadata.snapshots() {
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| sink_error("reading a manifest list", e))?;
        for manifest in list.entries() {
            let manifest = manifest
                .load_manifest(table.file_io())
                .await
                .map_err(|e| sink_error("reading a manifest", e))?;
            for entry in manifest.entries() {
                let path = entry.file_path();
                referenced.insert(path.rsplit('/').next().unwrap_or(path).to_string());
            }
        }
    }
    let data = data_location(metadata);
    let now = SystemTime::now();
    let mut orphans = Vec::new();
    for file in listing::list(&data, |name| batch_of_file(name).is_some()).await? {
        if referenced.contains(&file.name) {
            continue;
        }
        let age = file
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < min_age {
            continue;
        }
        let batch = batch_of_file(&file.name).unwrap_or_default().to_string();
        orphans.push(Orphan {
            location: file.location,
            bytes: file.bytes,
            age,
            batch,
        });
    }
    orphans.sort_by(|a, b| b.age.cmp(&a.age).then(a.location.cmp(&b.location)));
    Ok(orphans)
}

/// Removes `orphans` through the table's `FileIO`.
pub async fn delete(shared: &Shared, orphans: &[Orphan]) -> Result<(), Error> {
    let table = shared
        .catalog
        .load_table(&shared.ident)
        .await
        .map_err(|e| sink_error("loading the table", e))?;
    for o in orphans {
        table
            .file_io()
            .delete(&o.location)
            .await
            .map_err(|e| sink_error(&format!("deleting {}", o.location), e))?;
    }
    Ok(())
}

/// Where the table's data files go: `write.data.path` (or the older
/// `write.folder-storage.path`) if set, else `<location>/data`, as iceberg's writers place them.
fn data_location(metadata: &iceberg::spec::TableMetadata) -> String {
    let props = metadata.properties();
    props
        .get("write.data.path")
        .or(props.get("write.folder-storage.path"))
        .cloned()
        .unwrap_or_else(|| format!("{}/data", metadata.location().trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_sinks_file_names_carry_a_batch() {
        assert_eq!(
            batch_of_file("fr-0123456789abcdef-89abcdef-00003.parquet"),
            Some("0123456789abcdef-89abcdef")
        );
        for other in [
            "00000-0-5f1b.parquet",
            "fr--00001.parquet",
            "fr-x-00001.avro",
            "fr-x-0000a.parquet",
        ] {
            assert_eq!(batch_of_file(other), None, "{other}");
        }
    }
}

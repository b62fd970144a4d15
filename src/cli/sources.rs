//! What a command reads: its sources become jobs (S3 objects and prefixes, local files and
//! directories, never the run's own output), and a backfill's plan becomes a manifest.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use firehose_replay::aws::keys::url_encode_key;
use firehose_replay::aws::Aws;
use firehose_replay::aws::S3Uri;
use firehose_replay::object::ObjectRef;
use firehose_replay::run::{Job, Setup};
use firehose_replay::source::local::{locate, LocalStore};
use firehose_replay::source::s3::S3Store;
use firehose_replay::source::ObjectStore;

/// An S3 Batch Operations CSV manifest: `bucket,key` per line, keys URL-encoded as the
/// service requires. Written to a temporary file and renamed, so a failed run leaves no
/// half-written manifest behind.
pub(crate) fn write_manifest(path: &std::path::Path, objects: &[ObjectRef]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = firehose_replay::files::output_tempfile(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        for o in objects {
            writeln!(w, "{},{}", o.bucket, url_encode_key(&o.key))?;
        }
        w.flush()?;
    }
    tmp.persist(path)?;
    Ok(())
}

/// What a run writes locally: the NDJSON output directory, the dead-letter directory and the
/// ledger file. Local sources never read them back (`replay .` from the directory that holds
/// `./out` and `./dead-letter`).
pub(crate) fn own_paths(setup: &Setup) -> Vec<PathBuf> {
    setup
        .local_paths()
        .into_iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect()
}

/// A local store over `root` that skips the run's own files. A directory of them that holds the
/// tree itself (`--sink ndjson:.`) is narrowed to the part this tree's objects go to
/// (`DIR/<bucket>/`).
pub(crate) fn local_store(root: &std::path::Path, own: &[PathBuf]) -> anyhow::Result<LocalStore> {
    let store = LocalStore::new(root)?;
    let canon = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let bucket = store.bucket().to_string();
    let exclude: Vec<PathBuf> = own
        .iter()
        .map(|x| {
            if canon.starts_with(x) {
                x.join(&bucket)
            } else {
                x.clone()
            }
        })
        .collect();
    Ok(store.excluding(exclude))
}

/// `s3://bucket/path` without a trailing slash: the object `path` if there is one, else every
/// object below `path/` (as `backfill` reads a prefix either way). A listing that fails (no
/// `s3:ListBucket` permission) leaves it an object, so fetching it says what is wrong.
pub(crate) async fn key_or_prefix(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
) -> Vec<ObjectRef> {
    let single = || vec![ObjectRef::new(bucket, key)];
    let Ok(listed) = store.list(key).await else {
        return single();
    };
    if listed.iter().any(|o| o.key == key) {
        return single();
    }
    let dir = format!("{key}/");
    let below: Vec<ObjectRef> = listed
        .into_iter()
        .filter(|o| o.key.starts_with(&dir))
        .collect();
    if below.is_empty() {
        single()
    } else {
        below
    }
}

/// Sources → jobs: S3 objects or prefixes, local files or directories (each local object keyed
/// relative to its Firehose tree). An object named twice (`replay F F ./F`, a file and its
/// directory) is replayed once; local files the run itself writes are never read.
pub(crate) async fn replay_jobs(
    sources: &[String],
    source_root: Option<&std::path::Path>,
    aws: &mut Aws,
    own: &[PathBuf],
) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |jobs: &mut Vec<Job>, origin: String, job: Job| {
        if seen.insert((origin, job.object.bucket.clone(), job.object.key.clone())) {
            jobs.push(job);
        }
    };
    for source in sources {
        if source.starts_with("s3://") {
            let uri: S3Uri = source.parse().map_err(anyhow::Error::msg)?;
            let store: Arc<dyn ObjectStore> =
                Arc::new(S3Store::new(aws.client().await, &uri.bucket));
            let objects = if uri.key.is_empty() || uri.key.ends_with('/') {
                store.list(&uri.key).await?
            } else {
                key_or_prefix(&*store, &uri.bucket, &uri.key).await
            };
            for object in objects {
                let job = Job {
                    store: store.clone(),
                    object,
                };
                push(&mut jobs, "s3".into(), job);
            }
            continue;
        }
        let path = PathBuf::from(source);
        let (root, key) = match source_root {
            Some(r) => firehose_replay::source::local::below(r, &path),
            None => locate(&path),
        }
        .with_context(|| format!("cannot read {source}"))?;
        let local = local_store(&root, own)?;
        if !path.is_dir() && local.is_excluded(&path) {
            tracing::warn!("skipped {source}: the run writes it (output, dead letters or ledger)");
            continue;
        }
        let store: Arc<dyn ObjectStore> = Arc::new(local);
        let objects = if path.is_dir() {
            store.list(&key).await?
        } else {
            vec![ObjectRef::new(store.bucket(), key)]
        };
        for object in objects {
            let job = Job {
                store: store.clone(),
                object,
            };
            push(&mut jobs, root.display().to_string(), job);
        }
    }
    Ok(jobs)
}

//! The Iceberg sink's side of the batch contract (`sink::batch`): many objects → one snapshot.
//!
//! Objects are planned into batches in key order (bounded by object count and listed bytes).
//! Each object's rows are spooled ([`super::spool`]); at commit the batch's spools become data
//! files, each object is staged in the ledger with the batch's token, and one `fast_append`
//! makes the rows visible ([`super::commit`]). The per-object sink ([`Iceberg`]) is the same
//! path with a batch of one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::spool::{ObjectSpool, Spooled};
use super::{commit, Iceberg, Shared};
use crate::error::{Cause, Class, Error, Stage};
use crate::ledger::{identity, Claim, Ledger, Staged};
use crate::object::ObjectRef;
use crate::sink::batch::{BatchOutcome, BatchSink, Held, Identity, StagedBatch, StagedTokens};
use crate::sink::{Committed, ObjectWriter, Prepared, Sink};

/// Objects in key order, cut into batches of at most `batch_objects` objects and
/// `batch_bytes` listed bytes (an object larger than that is a batch of its own).
pub fn plan(objects: &[ObjectRef], max_objects: usize, max_bytes: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by(|&a, &b| objects[a].key.cmp(&objects[b].key));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0u64;
    for i in order {
        let size = objects[i].size.unwrap_or(0);
        let full = batches.last().is_none_or(|b| {
            b.len() >= max_objects.max(1) || bytes.saturating_add(size) > max_bytes
        });
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        if let Some(b) = batches.last_mut() {
            b.push(i);
        }
    }
    batches
}

/// The batch sink.
pub struct IcebergBatches {
    pub shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl BatchSink for IcebergBatches {
    fn plan(&self, objects: &[ObjectRef]) -> Vec<Vec<usize>> {
        let s = &self.shared.settings;
        let batches = plan(objects, s.batch_objects, s.batch_bytes);
        tracing::info!(
            objects = objects.len(),
            commits = batches.len(),
            table = %self.shared.target,
            "iceberg plan: one snapshot per batch"
        );
        batches
    }

    async fn prepare(&self, staged_tokens: StagedTokens) -> Result<Box<dyn StagedBatch>, Error> {
        let _ = staged_tokens; // a staged token is resolved by `committed` alone
        let dir = spool_dir(&self.shared)?;
        Ok(Box::new(IcebergBatch {
            spool: Arc::new(BatchSpool {
                shared: self.shared.clone(),
                dir,
                next: AtomicU64::new(0),
                spooled: Mutex::default(),
            }),
            taken: Mutex::default(),
        }))
    }
}

/// What a spool directory's name starts with; the process ID follows.
const SPOOL_PREFIX: &str = "firehose-replay-iceberg-";

/// A temporary directory for one batch's (or object's) spool files.
fn spool_dir(shared: &Shared) -> Result<tempfile::TempDir, Error> {
    let prefix = format!("{SPOOL_PREFIX}{}-", std::process::id());
    let b = tempfile::Builder::new().prefix(&prefix).to_owned();
    match &shared.settings.spool_dir {
        Some(d) => b.tempdir_in(d),
        None => {
            sweep_stale_spools();
            b.tempdir()
        }
    }
    .map_err(|e| {
        Error::new(
            Stage::Sink,
            Class::Transient,
            Cause::Sink(format!("iceberg spool directory: {e}")),
        )
    })
}

/// Removes spool folders that killed runs left in the temporary directory: a folder is stale
/// once no process has the ID in its name.
fn sweep_stale_spools() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(SPOOL_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(dir = %e.path().display(), "could not remove a stale iceberg spool folder: {err}");
                }
            }
        }
    });
}

struct BatchSpool {
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
    next: AtomicU64,
    /// Objects whose writer committed: their spool, by ledger identity.
    spooled: Mutex<HashMap<Identity, Spooled>>,
}

impl BatchSpool {
    fn new_spool(&self) -> ObjectSpool {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("object-{n}.arrows"));
        ObjectSpool::new(self.shared.clone(), path)
    }
}

/// One prepared batch.
struct IcebergBatch {
    spool: Arc<BatchSpool>,
    taken: Mutex<HashMap<Identity, Spooled>>,
}

/// The per-object sink of a batch: rows spooled, nothing visible until the batch commits.
struct BatchSpoolSink(Arc<BatchSpool>);

struct BatchSpoolWriter {
    batch: Arc<BatchSpool>,
    object: ObjectRef,
    spool: Option<ObjectSpool>,
}

impl Sink for BatchSpoolSink {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Ok(Box::new(BatchSpoolWriter {
            batch: self.0.clone(),
            object: object.clone(),
            spool: Some(self.0.new_spool()),
        }))
    }

    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        committed_token(&self.0.shared, staged)
    }
}

/// Whether the batch a staged token names is in the table's snapshots. A token this sink did
/// not stage (another sink's, on the same ledger) cannot be resolved here: writing the object
/// again could double it elsewhere, so it fails instead.
fn committed_token(shared: &Shared, staged: &Staged) -> Result<bool, Error> {
    let Some(batch) = commit::batch_of(&staged.token) else {
        return Err(Error::new(
            Stage::Sink,
            Class::Permanent,
            Cause::Sink(format!(
                "an earlier run with another sink staged this object ({}) and stopped before \
                 recording it done: rerun it with that sink",
                staged.token
            )),
        ));
    };
    shared
        .handle
        .block_on(commit::committed_fenced(shared, batch))
}

impl ObjectWriter for BatchSpoolWriter {
    fn write_row(&mut self, row: &crate::row::Row<'_>) -> Result<(), Error> {
        match self.spool.as_mut() {
            Some(s) => s.write_row(row),
            None => Ok(()),
        }
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        let rejected = self
            .spool
            .as_mut()
            .map(|s| std::mem::take(&mut s.rejected))
            .unwrap_or_default();
        Ok(Prepared {
            rejected,
            token: None,
        })
    }

    /// Hands the object's spool to the batch (its rows become visible with the batch's commit).
    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        if let Some(spool) = self.spool.take() {
            let spooled = spool.finish()?;
            self.batch
                .spooled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(identity(&self.object), spooled);
        }
        Ok(Committed::default())
    }
}

#[async_trait::async_trait]
impl StagedBatch for IcebergBatch {
    fn sink(&self) -> Arc<dyn Sink> {
        Arc::new(BatchSpoolSink(self.spool.clone()))
    }

    fn take_staged(&self) -> HashMap<Identity, u64> {
        let spooled =
            std::mem::take(&mut *self.spool.spooled.lock().unwrap_or_else(|p| p.into_inner()));
        let rows = spooled.iter().map(|(id, s)| (id.clone(), s.rows)).collect();
        *self.taken.lock().unwrap_or_else(|p| p.into_inner()) = spooled;
        rows
    }

    async fn commit(&self, held: &[Held], ledger: &Arc<dyn Ledger>) -> Result<BatchOutcome, Error> {
        let mut taken = std::mem::take(&mut *self.taken.lock().unwrap_or_else(|p| p.into_inner()));
        let objects: Vec<Identity> = held.iter().map(|h| identity(&h.object)).collect();
        let spools: Vec<PathBuf> = objects
            .iter()
            .filter_map(|id| taken.remove(id))
            .flat_map(|s| s.paths)
            .collect();
        let shared = &self.spool.shared;
        let batch = commit::batch_id(&objects);
        let files = commit::write_files(shared, &spools, &batch).await?;
        let rows: u64 = files.iter().map(|f| f.record_count()).sum();
        // The fence, and what a rerun resolves: every object staged before anything is visible.
        for h in held {
            let staged = Staged {
                token: format!("{}{batch}", commit::TOKEN_PREFIX),
                records: h.summary.records,
                rows: h.summary.rows,
                record_errors: h.summary.record_errors,
            };
            let (ledger, object) = (ledger.clone(), h.object.clone());
            let claim = Claim {
                lease: h.claim.lease.clone(),
                staged: None,
            };
            tokio::task::spawn_blocking(move || ledger.stage(&object, &claim, &staged))
                .await
                .map_err(|e| {
                    Error::new(
                        Stage::Sink,
                        Class::Transient,
                        Cause::Sink(format!("ledger: {e}")),
                    )
                })??;
        }
        commit::append(shared, files, &batch, &objects).await?;
        Ok(BatchOutcome {
            failed: held.iter().map(|_| None).collect(),
            inserted: rows,
            ids: vec![batch],
        })
    }
}

/// The per-object sink: each object's rows are written to data files in `prepare` and
/// appended in `commit` (a batch of one; the pipeline stages the token in between).
impl Sink for Iceberg {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        let dir = spool_dir(&self.shared)?;
        let spool = ObjectSpool::new(self.shared.clone(), dir.path().join("object.arrows"));
        Ok(Box::new(ObjectAppend {
            shared: self.shared.clone(),
            object: identity(object),
            spool: Some(spool),
            dir,
            written: None,
        }))
    }

    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        committed_token(&self.shared, staged)
    }

    /// `replay` and `backfill` commit objects in batches, one snapshot each.
    fn batching(&self) -> Option<Arc<dyn BatchSink>> {
        Some(Arc::new(IcebergBatches {
            shared: self.shared.clone(),
        }))
    }
}

struct ObjectAppend {
    shared: Arc<Shared>,
    object: Identity,
    spool: Option<ObjectSpool>,
    /// Kept until the writer is dropped: the spool file lives in it.
    #[allow(dead_code)]
    dir: tempfile::TempDir,
    /// The batch ID and data files `prepare` wrote.
    written: Option<(String, Vec<iceberg::spec::DataFile>)>,
}

impl ObjectWriter for ObjectAppend {
    fn write_row(&mut self, row: &crate::row::Row<'_>) -> Result<(), Error> {
        match self.spool.as_mut() {
            Some(s) => s.write_row(row),
            None => Ok(()),
        }
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        let Some(mut spool) = self.spool.take() else {
            return Ok(Prepared::default());
        };
        let rejected = std::mem::take(&mut spool.rejected);
        let spooled = spool.finish()?;
        if spooled.paths.is_empty() {
            return Ok(Prepared {
                rejected,
                token: None,
            });
        }
        let batch = commit::batch_id(std::slice::from_ref(&self.object));
        let files = self.shared.handle.block_on(commit::write_files(
            &self.shared,
            &spooled.paths,
            &batch,
        ))?;
        let token = format!("{}{batch}", commit::TOKEN_PREFIX);
        self.written = Some((batch, files));
        Ok(Prepared {
            rejected,
            token: Some(token),
        })
    }

    /// Appends what `prepare` wrote; a caller that stages nothing (a redrive of a records
    /// letter) comes here directly, and the rows are written first, the refused ones returned.
    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let mut rejected = Vec::new();
        if self.spool.is_some() {
            rejected = self.prepare()?.rejected;
        }
        if let Some((batch, files)) = self.written.take() {
            let object = std::slice::from_ref(&self.object);
            self.shared
                .handle
                .block_on(commit::append(&self.shared, files, &batch, object))?;
        }
        Ok(Committed {
            rejected,
            inserted: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: key.into(),
            etag: None,
            version_id: None,
            size: Some(size),
            origin: None,
        }
    }

    #[test]
    fn batches_follow_key_order_and_both_bounds() {
        let objects = [
            object("c", 10),
            object("a", 10),
            object("b", 10),
            object("d", 100),
        ];
        assert_eq!(plan(&objects, 2, 1_000), vec![vec![1, 2], vec![0, 3]]);
        assert_eq!(plan(&objects, 10, 25), vec![vec![1, 2], vec![0], vec![3]]);
        assert!(plan(&[], 2, 10).is_empty());
    }
}

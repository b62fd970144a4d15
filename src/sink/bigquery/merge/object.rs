//! `--bigquery-mode storage-write --dedup merge`: each object's rows go through a `PENDING`
//! stream into a staging table of their own, committed there, then merged into the target.
//!
//! The staging part is the ordinary storage-write writer pointed at the staging table; what
//! makes the object exactly once is the MERGE, so nothing is staged in the ledger: a run that
//! dies anywhere is redone whole by the next, and the MERGE adds only what is missing.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::{Merger, Staging};
use crate::error::Error;
use crate::ledger::Staged;
use crate::object::ObjectRef;
use crate::row::Row;
use crate::sink::bigquery::storage_write::{rpc::Rpc, StorageWrite};
use crate::sink::bigquery::Limits;
use crate::sink::{Committed, ObjectWriter, Prepared, Sink};

/// The sink.
pub struct MergeStorageWrite {
    merger: Arc<Merger>,
    rpc: Rpc,
    limits: Limits,
    ignore_unknown_values: bool,
    handle: Handle,
    /// Straight to the target: answers for what a run *without* `--dedup merge` staged in the
    /// ledger, so switching modes after a crash finishes that run's stream instead of guessing.
    direct: StorageWrite,
}

impl MergeStorageWrite {
    /// Call within a Tokio runtime.
    pub fn new(
        merger: Arc<Merger>,
        rpc: Rpc,
        limits: Limits,
        ignore_unknown_values: bool,
    ) -> MergeStorageWrite {
        let direct = StorageWrite::new(
            rpc.clone(),
            merger.target(),
            limits.clone(),
            ignore_unknown_values,
        );
        MergeStorageWrite {
            merger,
            rpc,
            limits,
            ignore_unknown_values,
            handle: Handle::current(),
            direct,
        }
    }
}

impl Sink for MergeStorageWrite {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Ok(Box::new(MergeWriter {
            merger: self.merger.clone(),
            rpc: self.rpc.clone(),
            limits: self.limits.clone(),
            ignore_unknown_values: self.ignore_unknown_values,
            handle: self.handle.clone(),
            object: object.clone(),
            open: None,
        }))
    }

    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        self.direct.committed(staged)
    }

    fn commit_staged(&self, staged: &Staged) -> Result<bool, Error> {
        self.direct.commit_staged(staged)
    }
}

struct Open {
    staging: Staging,
    writer: Box<dyn ObjectWriter>,
}

struct MergeWriter {
    merger: Arc<Merger>,
    rpc: Rpc,
    limits: Limits,
    ignore_unknown_values: bool,
    handle: Handle,
    object: ObjectRef,
    /// The staging table and its writer, made with the first row: an object without rows
    /// needs neither.
    open: Option<Open>,
}

impl Drop for MergeWriter {
    fn drop(&mut self) {
        // Abandoned (or merged): the staging table goes; if this does not get to run, it
        // expires.
        if let Some(open) = self.open.take() {
            let merger = self.merger.clone();
            self.handle.spawn(async move {
                merger.drop_staging(&open.staging).await;
            });
        }
    }
}

impl MergeWriter {
    fn ensure_open(&mut self) -> Result<&mut Open, Error> {
        if self.open.is_none() {
            let staging = self.merger.staging_for(&self.object.to_string());
            self.handle.block_on(self.merger.create(&staging))?;
            tracing::debug!(object = %self.object, staging = %staging.table, "staging table created");
            let _runtime = self.handle.enter();
            let sink = StorageWrite::new(
                self.rpc.clone(),
                &staging.table,
                self.limits.clone(),
                self.ignore_unknown_values,
            );
            let writer = sink.open(&self.object)?;
            self.open = Some(Open { staging, writer });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }
}

impl ObjectWriter for MergeWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        self.ensure_open()?.writer.write_row(row)
    }

    /// Stages in the staging table, not in the ledger: no token, the MERGE needs none.
    fn prepare(&mut self) -> Result<Prepared, Error> {
        match self.open.as_mut() {
            Some(open) => Ok(Prepared {
                rejected: open.writer.prepare()?.rejected,
                token: None,
            }),
            None => Ok(Prepared::default()),
        }
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let Some(open) = self.open.take() else {
            return Ok(Committed::default());
        };
        let merger = self.merger.clone();
        // The staged rows become visible in the staging table only.
        let committed = match open.writer.commit() {
            Ok(c) => c,
            Err(e) => {
                let staging = open.staging;
                self.handle
                    .spawn(async move { merger.drop_staging(&staging).await });
                return Err(e);
            }
        };
        let inserted = self.handle.block_on(async {
            let inserted = merger.merge(&open.staging).await;
            merger.drop_staging(&open.staging).await;
            inserted
        })?;
        tracing::debug!(object = %self.object, staging = %open.staging.table, inserted, "merged");
        Ok(Committed {
            rejected: committed.rejected,
            inserted: Some(inserted),
        })
    }
}

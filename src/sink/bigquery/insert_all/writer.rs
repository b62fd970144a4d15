//! One object's rows → insertAll requests, several in flight.
//!
//! Rows arrive on the blocking decode thread; full batches are handed to the async runtime and
//! sent while the next batch is being decoded. At most `max_in_flight` requests per object are
//! outstanding: when that many are, the decode thread waits (backpressure, bounded memory).

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::insert::{send, Endpoint};
use super::request::{Batch, Flags};
use crate::error::{Cause, Class, Error, Stage};
use crate::row::Row;
use crate::sink::bigquery::retry::RetryPolicy;
use crate::sink::bigquery::{unstorable, Limits};
use crate::sink::{Committed, ObjectWriter, Rejected};

/// Batches a sink has delivered, per object, kept until the object commits: when an object is
/// tried again after a transient failure, the batches BigQuery already accepted are not sent
/// again. Batching is deterministic (same rows, same limits → same batches), so a batch is known
/// by its first ordinal and row count.
pub(super) type Delivered = std::sync::Mutex<
    std::collections::HashMap<String, std::collections::HashMap<(u64, usize), Vec<Rejected>>>,
>;

pub(super) struct Writer {
    pub(super) object_id: String,
    pub(super) delivered: Arc<Delivered>,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) policy: Arc<RetryPolicy>,
    pub(super) flags: Flags,
    pub(super) limits: Limits,
    pub(super) handle: Handle,
    pub(super) batch: Option<Batch>,
    pub(super) in_flight: Vec<JoinHandle<Result<Vec<Rejected>, Error>>>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) rejected: Vec<Rejected>,
}

impl Writer {
    fn new_batch(&self) -> Batch {
        Batch::new(self.flags, self.limits.max_request_bytes.min(1 << 20))
    }

    /// Sends the current batch (if any) in the background.
    fn submit(&mut self) -> Result<(), Error> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.reap(false)?;
        let batch_id = (batch.rows[0].ordinal, batch.len());
        let known = self
            .delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.object_id)
            .and_then(|m| m.get(&batch_id).cloned());
        if let Some(rejected) = known {
            tracing::debug!(object = %self.object_id, first = batch_id.0, rows = batch_id.1, "batch already delivered in an earlier attempt");
            self.rejected.extend(rejected);
            return Ok(());
        }
        let permit = self
            .handle
            .block_on(self.slots.clone().acquire_owned())
            .expect("the semaphore is never closed");
        let (endpoint, policy) = (self.endpoint.clone(), self.policy.clone());
        let (delivered, object_id) = (self.delivered.clone(), self.object_id.clone());
        let sent = batch.finish();
        self.in_flight.push(self.handle.spawn(async move {
            let _slot = permit;
            let rejected = send(&endpoint, sent, &policy).await?;
            delivered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(object_id)
                .or_default()
                .insert(batch_id, rejected.clone());
            Ok(rejected)
        }));
        Ok(())
    }

    /// Collects finished requests (all of them, waiting, when `wait`); the first failure ends
    /// the object.
    fn reap(&mut self, wait: bool) -> Result<(), Error> {
        let mut first_error = None;
        let mut still = Vec::new();
        for task in self.in_flight.drain(..) {
            if !wait && !task.is_finished() {
                still.push(task);
                continue;
            }
            match self.handle.block_on(task) {
                Ok(Ok(rejected)) => self.rejected.extend(rejected),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(join) => {
                    first_error.get_or_insert(Error::new(
                        Stage::Sink,
                        Class::Transient,
                        Cause::Sink(format!("insertAll task failed: {join}")),
                    ));
                }
            }
        }
        self.in_flight = still;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for Writer {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        // A row BigQuery cannot parse would fail its whole request: refused alone, before
        // sending, with the message every BigQuery mode gives (docs/src/rows.md, "Row contract").
        if let Some(rejected) = unstorable(row) {
            self.rejected.push(rejected);
            return Ok(());
        }
        let entry = Batch::entry_len(row);
        // A row that cannot fit in a request on its own is a record-level error.
        let alone = self.flags.empty_request_len() + entry;
        if alone > self.limits.max_request_bytes {
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: row.to_vec(),
                error: format!(
                    "row is {} bytes: over the {} bytes an insertAll request may carry",
                    row.len(),
                    self.limits.max_request_bytes
                ),
            });
            return Ok(());
        }
        let full = self.batch.as_ref().is_some_and(|b| {
            b.len() >= self.limits.batch_rows
                || b.encoded_len() + entry > self.limits.max_request_bytes
        });
        if full {
            self.submit()?;
        }
        if self.batch.is_none() {
            self.batch = Some(self.new_batch());
        }
        self.batch.as_mut().expect("set above").push(row);
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let submitted = self.submit();
        let reaped = self.reap(true);
        submitted?;
        reaped?;
        self.delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.object_id);
        let mut rejected = std::mem::take(&mut self.rejected);
        rejected.sort_by_key(|r| r.ordinal);
        Ok(Committed {
            rejected,
            inserted: None,
        })
    }
}

//! BigQuery through the Storage Write API, exactly once per object.
//!
//! Each object gets its own `PENDING` write stream. Rows are encoded to protobuf from the
//! table's schema (as `CreateWriteStream` reports it) and appended with explicit offsets
//! (`append`); a row that does not fit the schema is refused locally and takes the record-level
//! policy. `prepare` finalizes the stream and hands its name to the ledger; `commit` then makes
//! all of the object's rows visible in one atomic `BatchCommitWriteStreams`. A stream that is
//! dropped uncommitted (the object failed, the process died) is never visible: BigQuery
//! discards it. A crash between the commit and the ledger's `finish` is resolved by the next
//! run through [`Sink::committed`] (`GetWriteStream`'s `commit_time`).

mod append;
pub mod rpc;

use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::append::{Append, Appended, RowSource, Session};
use self::rpc::{sink_error, Rpc};
use super::proto::{Encoder, Field, Options};
use super::writer::Limits;
use super::TableRef;
use crate::error::{Class, Error};
use crate::ledger::Staged;
use crate::object::ObjectRef;
use crate::row::Row;
use crate::sink::{Committed, ObjectWriter, Prepared, Rejected, Sink};

pub use self::rpc::DEFAULT_STORAGE_ENDPOINT;

/// BigQuery's cap on one AppendRows request is 10 MB; stay clear of it with the request's
/// own framing.
const MAX_APPEND_BYTES: usize = 9 * 1024 * 1024;

struct Inner {
    rpc: Rpc,
    /// `projects/P/datasets/D/tables/T`.
    table_path: String,
    handle: Handle,
    limits: Limits,
    options: Options,
    /// The encoder for the schema last seen, reused while the schema stays the same.
    encoder: Mutex<Option<(Vec<Field>, Arc<Encoder>)>>,
}

/// `--bigquery-mode storage-write`.
pub struct StorageWrite {
    inner: Arc<Inner>,
}

impl StorageWrite {
    /// Call within a Tokio runtime (appends run on it). No network traffic until the first
    /// object.
    pub fn new(
        rpc: Rpc,
        table: &TableRef,
        limits: Limits,
        ignore_unknown_values: bool,
    ) -> StorageWrite {
        StorageWrite {
            inner: Arc::new(Inner {
                rpc,
                table_path: format!(
                    "projects/{}/datasets/{}/tables/{}",
                    table.project, table.dataset, table.table
                ),
                handle: Handle::current(),
                limits,
                options: Options {
                    ignore_unknown_values,
                },
                encoder: Mutex::new(None),
            }),
        }
    }
}

impl Inner {
    fn encoder_for(
        &self,
        schema: &[gcp_bigquery_client::google::cloud::bigquery::storage::v1::TableFieldSchema],
    ) -> Result<Arc<Encoder>, Error> {
        let fields = schema
            .iter()
            .map(Field::from_storage)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sink_error(Class::Permanent, format!("table schema: {e}")))?;
        let mut cached = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((f, e)) = cached.as_ref() {
            if *f == fields {
                return Ok(e.clone());
            }
        }
        let encoder = Arc::new(
            Encoder::new(
                fields.clone(),
                Options {
                    ignore_unknown_values: self.options.ignore_unknown_values,
                },
            )
            .map_err(|e| sink_error(Class::Permanent, format!("table schema: {e}")))?,
        );
        *cached = Some((fields, encoder.clone()));
        Ok(encoder)
    }
}

impl Sink for StorageWrite {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Ok(Box::new(Writer {
            inner: self.inner.clone(),
            object: object.to_string(),
            open: None,
            batch: Append::default(),
            rejected: Vec::new(),
            prepared: false,
            staged: None,
            scratch: Vec::new(),
        }))
    }

    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        if !staged.token.starts_with("projects/") {
            // Staged by another mode (a load job): only that mode can tell.
            return Err(sink_error(
                Class::Permanent,
                format!(
                    "an earlier run in another --bigquery-mode staged this object ({}) and \
                     stopped before recording it done: rerun it in that mode",
                    staged.token
                ),
            ));
        }
        let rpc = self.inner.rpc.clone();
        let name = staged.token.clone();
        self.inner
            .handle
            .block_on(async move { rpc.is_committed(&name).await })
    }

    /// The stream was finalized before it was staged, so it holds exactly the object's rows:
    /// committing it finishes what the earlier attempt started. BatchCommitWriteStreams commits
    /// a stream at most once; if the earlier attempt's commit lands first, ours is refused and
    /// [`Rpc::commit`] finds the stream committed. Writing the object again into a new stream
    /// instead would double its rows whenever that commit was still on its way.
    fn commit_staged(&self, staged: &Staged) -> Result<bool, Error> {
        // The stream's own table (`projects/P/datasets/D/tables/T/streams/S`).
        let Some((table, _)) = staged
            .token
            .strip_prefix("projects/")
            .and(staged.token.rsplit_once("/streams/"))
        else {
            return Ok(false);
        };
        let inner = self.inner.clone();
        inner
            .handle
            .block_on(async { inner.rpc.commit(table, &staged.token).await })?;
        Ok(true)
    }
}

/// A stream being appended to.
struct Open {
    name: String,
    encoder: Arc<Encoder>,
    tx: Option<mpsc::Sender<Append>>,
    task: JoinHandle<Result<Appended, Error>>,
}

struct Writer {
    inner: Arc<Inner>,
    object: String,
    /// Created with the first row: an object without rows needs no stream.
    open: Option<Open>,
    batch: Append,
    rejected: Vec<Rejected>,
    /// `prepare` ran (it runs once).
    prepared: bool,
    /// Set by `prepare`: the finalized stream to commit.
    staged: Option<String>,
    scratch: Vec<u8>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Abandoned (or done): stop appending. An uncommitted stream is never visible.
        if let Some(open) = &self.open {
            open.task.abort();
        }
    }
}

impl Writer {
    fn ensure_open(&mut self) -> Result<&mut Open, Error> {
        if self.open.is_none() {
            let inner = self.inner.clone();
            let stream = inner
                .handle
                .block_on(inner.rpc.create_pending(&inner.table_path))?;
            let schema = stream.table_schema.as_ref().ok_or_else(|| {
                sink_error(
                    Class::Permanent,
                    "CreateWriteStream answered without the table schema".into(),
                )
            })?;
            let encoder = inner.encoder_for(&schema.fields)?;
            let window = inner.limits.max_in_flight.max(1);
            // Two appends may wait for the task: the decode thread seldom blocks on a handover,
            // and memory stays bounded (window + 2 appends per object).
            let (tx, rx) = mpsc::channel(2);
            let session = Session {
                rpc: inner.rpc.clone(),
                stream: stream.name.clone(),
                schema: encoder.descriptor(),
                window,
            };
            tracing::debug!(object = %self.object, stream = %stream.name, "pending write stream created");
            let task = inner.handle.spawn(session.run(rx));
            self.open = Some(Open {
                name: stream.name,
                encoder,
                tx: Some(tx),
                task,
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Hands the current batch to the append task (waiting while its window is full).
    fn submit(&mut self) -> Result<(), Error> {
        if self.batch.rows.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let open = self.open.as_mut().expect("rows imply a stream");
        let sent = match &open.tx {
            Some(tx) => tx.blocking_send(batch).is_ok(),
            None => false,
        };
        if !sent {
            // The task ended early: its error says why.
            return Err(self.join().err().unwrap_or_else(|| {
                sink_error(Class::Transient, "the append task ended early".into())
            }));
        }
        Ok(())
    }

    /// Waits for the append task to settle every append.
    fn join(&mut self) -> Result<Appended, Error> {
        let open = self.open.as_mut().expect("rows imply a stream");
        open.tx = None;
        let handle = self.inner.handle.clone();
        match handle.block_on(&mut open.task) {
            Ok(r) => r,
            Err(join) => Err(sink_error(
                Class::Transient,
                format!("the append task failed: {join}"),
            )),
        }
    }
}

impl ObjectWriter for Writer {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        if let Some(rejected) = super::unstorable(row) {
            self.rejected.push(rejected);
            return Ok(());
        }
        let json = row.to_vec();
        let encoder = self.ensure_open()?.encoder.clone();
        self.scratch.clear();
        if let Err(why) = encoder.encode(&json, &mut self.scratch) {
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json,
                error: format!("does not fit the table schema: {why}"),
            });
            return Ok(());
        }
        let size = self.scratch.len() + 16;
        if size > MAX_APPEND_BYTES.min(self.inner.limits.max_request_bytes.max(1024)) {
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json,
                error: format!(
                    "row is {} bytes as protobuf: over what one append may carry",
                    self.scratch.len()
                ),
            });
            return Ok(());
        }
        let limit = MAX_APPEND_BYTES.min(self.inner.limits.max_request_bytes);
        if self.batch.len() >= self.inner.limits.batch_rows || self.batch.bytes + size > limit {
            self.submit()?;
        }
        // The encoded row moves into the batch; the next row gets a buffer of the same size.
        let capacity = self.scratch.len().next_power_of_two();
        let encoded = std::mem::replace(&mut self.scratch, Vec::with_capacity(capacity));
        self.batch.rows.push(encoded);
        self.batch.bytes += size;
        self.batch.sources.push(RowSource {
            ordinal: row.ordinal,
            byte_offset: row.byte_offset,
            json,
        });
        Ok(())
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        if std::mem::replace(&mut self.prepared, true) {
            return Err(sink_error(
                Class::Permanent,
                "prepare called twice for one object".into(),
            ));
        }
        let mut rejected = std::mem::take(&mut self.rejected);
        if self.open.is_none() {
            rejected.sort_by_key(|r| r.ordinal);
            return Ok(Prepared {
                rejected,
                token: None,
            });
        }
        self.submit()?;
        let appended = self.join()?;
        rejected.extend(appended.rejected);
        rejected.sort_by_key(|r| r.ordinal);
        let name = self.open.as_ref().expect("open").name.clone();
        let inner = self.inner.clone();
        let rows = inner.handle.block_on(inner.rpc.finalize(&name))?;
        if rows != appended.rows {
            return Err(sink_error(
                Class::Transient,
                format!(
                    "write stream {name} holds {rows} rows after finalizing, {} were appended",
                    appended.rows
                ),
            ));
        }
        if rows == 0 {
            // Every row was refused: nothing to commit.
            return Ok(Prepared {
                rejected,
                token: None,
            });
        }
        tracing::debug!(object = %self.object, stream = %name, rows, "write stream finalized");
        self.staged = Some(name.clone());
        Ok(Prepared {
            rejected,
            token: Some(name),
        })
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let rejected = if self.prepared {
            Vec::new()
        } else {
            // Called without `prepare` (nothing to record first): stage now.
            self.prepare()?.rejected
        };
        if let Some(name) = self.staged.take() {
            let inner = self.inner.clone();
            inner
                .handle
                .block_on(inner.rpc.commit(&inner.table_path, &name))?;
            tracing::debug!(object = %self.object, stream = %name, "write stream committed");
        }
        Ok(Committed {
            rejected,
            inserted: None,
        })
    }
}

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
//!
//! With `--schema-evolution add-columns` ([`StorageWrite::with_evolution`]) a row that fails
//! *only* because a key names no column adds the columns it needs (`schema::evolver`), and the
//! object goes on in a new stream opened once BigQuery's new streams see them; the object's
//! streams are then finalized, staged and committed together (see [`Token`]).
//!
//! Rows go from the row's JSON straight into the append's `ProtoRows` bytes
//! ([`super::encode::Encoder::encode_delimited`]); an append is shared `Bytes`, so a resend
//! builds a header of a few dozen bytes and copies nothing else ([`rpc::EncodedAppend`]).
//!
//! # Why not `google-cloud-bigquery`'s writers (checked against 0.19.0's source)
//!
//! The official crate's `write::PendingWriter` has most of what this design needs: explicit
//! offsets (`append(rows).set_offset(n)`), `finalize`, `commit` (BatchCommitWriteStreams on the
//! stream's table, failing on `stream_errors` or a missing `commit_time`), attaching to an
//! existing stream (`Write::attach_to_stream`, which asks GetWriteStream), and
//! `ClientBuilder::with_endpoint`. It cannot carry it, for these reasons:
//! - **No run-time protobuf descriptor.** Its only public writer format is Arrow:
//!   `WriterBuilder::build_arrow(ArrowSchema)` with `ArrowRecordBatch` rows. The protobuf format
//!   (`write::format::Proto`, `WriterBuilder::build_proto`) is `pub(crate)` and marked
//!   `#[allow(dead_code)]`. Using the crate would mean a second encoder (JSON → Arrow IPC record
//!   batches) in place of the protobuf one and its tests, and Arrow IPC framing per append.
//! - **Copies per append and per try.** `Dispatcher::send` turns each request into the prost type
//!   (`to_proto`, row by row: the model's `ProtoRows` holds one `Bytes` per row) and hands every
//!   try a `req.clone()`. `make_request` puts the writer schema into every request, not only the
//!   first on a connection. Here a row is one range in one buffer per append, and a resend is a
//!   header plus a reference count.
//! - **Retries are per request, not "resend everything unacknowledged from the last acknowledged
//!   offset, in order".** Each append future retries on its own; `row_errors` come back to the
//!   caller as `AppendError::RowErrors`, and the caller would have to rebuild and reorder the
//!   later appends itself (the offsets of all of them move when rows are dropped), which is the
//!   bookkeeping `append::Session` already does on one connection.
//! - The plaintext endpoint was not tried: its transport (`google-cloud-gax-internal`) accepts
//!   `http://` endpoints in its own tests, so an h2c emulator is probably reachable.
//!
//! So the tonic path stays. Revisit when the crate makes the proto format public.

mod append;
pub mod rpc;

use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use gcp_bigquery_client::google::cloud::bigquery::storage::v1::WriteStream;

use self::append::{proto_schema, Append, Appended, RowSource, Session};
use self::rpc::{sink_error, Rpc};
use super::encode::{EncodeError, Encoder, Field, Options};
use super::schema::evolver::{rest_fields, Evolver};
use super::schema::infer;
use super::Limits;
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
    /// `--schema-evolution add-columns`.
    evolver: Option<Arc<Evolver>>,
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
                    ..Options::default()
                },
                encoder: Mutex::new(None),
                evolver: None,
            }),
        }
    }

    /// `--schema-evolution add-columns`: rows with fields the table lacks add them. Evolution
    /// wins over `ignore_unknown_values` (the field gets a column instead of being dropped).
    /// Call before the first object.
    pub fn with_evolution(mut self, evolver: Arc<Evolver>) -> StorageWrite {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.options = Options {
                ignore_unknown_values: false,
                skip_unknown_empty: true,
            };
            inner.evolver = Some(evolver);
        }
        self
    }
}

/// What the ledger holds for an object: its one stream's name
/// (`projects/P/datasets/D/tables/T/streams/S`, as before schema evolution, so tokens staged by
/// older runs resolve as they did), or a JSON array of the names when schema evolution moved
/// the object to new streams. All of them are committed in one BatchCommitWriteStreams, so
/// after a crash they are all committed or none.
struct Token;

impl Token {
    fn encode(streams: &[String]) -> String {
        match streams {
            [one] => one.clone(),
            many => serde_json::to_string(many).unwrap_or_default(),
        }
    }

    /// The stream names, or `None` for a token this mode did not write.
    fn decode(token: &str) -> Option<Vec<String>> {
        let names = if token.starts_with('[') {
            serde_json::from_str::<Vec<String>>(token).ok()?
        } else {
            vec![token.to_string()]
        };
        let table = |n: &str| {
            n.strip_prefix("projects/")
                .and(n.rsplit_once("/streams/"))
                .map(|(t, _)| t.to_string())
        };
        let first = table(names.first()?)?;
        names
            .iter()
            .all(|n| table(n).as_deref() == Some(first.as_str()))
            .then_some(names)
    }

    /// The streams' table (`projects/P/datasets/D/tables/T`).
    fn table(names: &[String]) -> Option<&str> {
        names.first()?.rsplit_once("/streams/").map(|(t, _)| t)
    }
}

/// The schema a new stream reports (what its rows must be encoded for).
fn stream_fields(stream: &WriteStream) -> Result<Vec<Field>, Error> {
    let schema = stream.table_schema.as_ref().ok_or_else(|| {
        sink_error(
            Class::Permanent,
            "CreateWriteStream answered without the table schema".into(),
        )
    })?;
    schema
        .fields
        .iter()
        .map(Field::from_storage)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sink_error(Class::Permanent, format!("table schema: {e}")))
}

impl Inner {
    /// The encoder for `fields`: the cached one while the table's schema stays the same (every
    /// object's stream reports it), a new one once it changed (a column was added, here or by
    /// another worker), which is then cached for the objects after.
    fn encoder_for_fields(&self, fields: Vec<Field>) -> Result<Arc<Encoder>, Error> {
        let mut cached = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((f, e)) = cached.as_ref() {
            if *f == fields {
                return Ok(e.clone());
            }
        }
        let encoder = Arc::new(
            Encoder::new(fields.clone(), self.options)
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
            closed: Vec::new(),
            batch: Batch::default(),
            rejected: Vec::new(),
            prepared: false,
            staged: None,
        }))
    }

    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        let Some(names) = Token::decode(&staged.token) else {
            // Staged by another mode (a load job): only that mode can tell.
            return Err(sink_error(
                Class::Permanent,
                format!(
                    "an earlier run in another --bigquery-mode staged this object ({}) and \
                     stopped before recording it done: rerun it in that mode",
                    staged.token
                ),
            ));
        };
        let rpc = self.inner.rpc.clone();
        // One BatchCommitWriteStreams committed them all or none; all are asked anyway, so a
        // token is never taken as done while one of its streams is not.
        self.inner.handle.block_on(async move {
            for name in &names {
                if !rpc.is_committed(name).await? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// The stream was finalized before it was staged, so it holds exactly the object's rows:
    /// committing it finishes what the earlier attempt started. BatchCommitWriteStreams commits
    /// a stream at most once; if the earlier attempt's commit lands first, ours is refused and
    /// [`Rpc::commit`] finds the stream committed. Writing the object again into a new stream
    /// instead would double its rows whenever that commit was still on its way.
    fn commit_staged(&self, staged: &Staged) -> Result<bool, Error> {
        // The streams' own table (`projects/P/datasets/D/tables/T/streams/S`).
        let Some(names) = Token::decode(&staged.token) else {
            return Ok(false);
        };
        let Some(table) = Token::table(&names) else {
            return Ok(false);
        };
        let inner = self.inner.clone();
        inner.handle.block_on(async {
            // The streams left to commit: all of them, or none when the earlier attempt's
            // commit landed (it was one atomic request).
            let mut pending = Vec::new();
            for name in &names {
                if !inner.rpc.is_committed(name).await? {
                    pending.push(name.clone());
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            inner.rpc.commit(table, &pending).await
        })?;
        Ok(true)
    }
}

/// A stream being appended to.
struct Open {
    name: String,
    /// The stream's schema, as CreateWriteStream gave it (what the encoder writes).
    fields: Vec<Field>,
    encoder: Arc<Encoder>,
    tx: Option<mpsc::Sender<Append>>,
    task: JoinHandle<Result<Appended, Error>>,
}

struct Writer {
    inner: Arc<Inner>,
    object: String,
    /// Created with the first row: an object without rows needs no stream.
    open: Option<Open>,
    /// Earlier streams of this object, finalized, holding rows: schema evolution moved the
    /// object on to `open`. Committed together with it.
    closed: Vec<String>,
    batch: Batch,
    rejected: Vec<Rejected>,
    /// `prepare` ran (it runs once).
    prepared: bool,
    /// Set by `prepare`: the finalized streams to commit.
    staged: Option<Vec<String>>,
}

/// The append being filled: rows encoded straight into its `ProtoRows` bytes, their JSON into
/// one buffer (for the dead letter of a row BigQuery might refuse). No allocation per row; the
/// buffers become the [`Append`]'s shared `Bytes` when it is handed over.
#[derive(Default)]
struct Batch {
    rows: Vec<u8>,
    json: Vec<u8>,
    sources: Vec<RowSource>,
    /// What the rows count against the request limit (the encoded rows and a margin each for
    /// their framing, as the request will carry them).
    bytes: usize,
}

impl Batch {
    fn take(&mut self) -> Append {
        // The next batch will be about as large: allocate once, not while growing.
        let rows = Vec::with_capacity(self.rows.capacity());
        let json = Vec::with_capacity(self.json.capacity());
        let append = Append {
            rows: std::mem::replace(&mut self.rows, rows).into(),
            json: std::mem::replace(&mut self.json, json).into(),
            sources: std::mem::take(&mut self.sources),
        };
        self.bytes = 0;
        append
    }
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
            let fields = stream_fields(&stream)?;
            self.open = Some(self.start(stream, fields)?);
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Starts the append task on a stream just created.
    fn start(&self, stream: WriteStream, fields: Vec<Field>) -> Result<Open, Error> {
        let inner = &self.inner;
        {
            let encoder = inner.encoder_for_fields(fields.clone())?;
            let window = inner.limits.max_in_flight.max(1);
            // Two appends may wait for the task: the decode thread seldom blocks on a handover,
            // and memory stays bounded (window + 2 appends per object).
            let (tx, rx) = mpsc::channel(2);
            let session = Session {
                rpc: inner.rpc.clone(),
                stream: stream.name.clone(),
                schema: proto_schema(encoder.descriptor()),
                window,
            };
            tracing::debug!(object = %self.object, stream = %stream.name, "pending write stream created");
            let task = inner.handle.spawn(session.run(rx));
            Ok(Open {
                name: stream.name,
                fields,
                encoder,
                tx: Some(tx),
                task,
            })
        }
    }

    /// Hands the current batch to the append task (waiting while its window is full).
    fn submit(&mut self) -> Result<(), Error> {
        if self.batch.sources.is_empty() {
            return Ok(());
        }
        let batch = self.batch.take();
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

impl Writer {
    /// Encodes `row` into the batch, or records it as refused. `evolve`: a row refused only
    /// for an unknown field may add columns (once: the second try writes or refuses it).
    fn write(&mut self, row: &Row<'_>, evolve: bool) -> Result<(), Error> {
        if self.batch.sources.len() >= self.inner.limits.batch_rows {
            self.submit()?;
        }
        self.ensure_open()?;
        let Writer {
            open, batch, inner, ..
        } = self;
        let encoder = &open.as_ref().expect("opened above").encoder;
        // The row's JSON goes into the batch's buffer once, and is encoded from there.
        let (json_start, rows_start) = (batch.json.len(), batch.rows.len());
        row.append_to(&mut batch.json);
        let encoded = encoder.try_encode_delimited(&batch.json[json_start..], &mut batch.rows);
        let refused = match encoded {
            Err(why @ EncodeError::UnknownField { .. }) if evolve && inner.evolver.is_some() => {
                // The slow path: only rows the table lacks a column for get here.
                let json = batch.json[json_start..].to_vec();
                batch.json.truncate(json_start);
                batch.rows.truncate(rows_start);
                return self.evolve(row, json, why);
            }
            Err(why) => Some(format!("does not fit the table schema: {why}")),
            Ok(len)
                if len + 16 > MAX_APPEND_BYTES.min(inner.limits.max_request_bytes.max(1024)) =>
            {
                Some(format!(
                    "row is {len} bytes as protobuf: over what one append may carry"
                ))
            }
            Ok(_) => None,
        };
        if let Some(error) = refused {
            let json = batch.json[json_start..].to_vec();
            batch.json.truncate(json_start);
            batch.rows.truncate(rows_start);
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json,
                error,
            });
            return Ok(());
        }
        let size = batch.rows.len() - rows_start + 16;
        let limit = MAX_APPEND_BYTES.min(inner.limits.max_request_bytes);
        let source = RowSource {
            ordinal: row.ordinal,
            byte_offset: row.byte_offset,
            rows_end: 0,
            json_end: 0,
        };
        if !batch.sources.is_empty() && batch.bytes + size > limit {
            // The row does not fit this append: it starts the next one (moved, rarely).
            let row_bytes = batch.rows.split_off(rows_start);
            let json = batch.json.split_off(json_start);
            self.submit()?;
            self.batch.rows.extend_from_slice(&row_bytes);
            self.batch.json.extend_from_slice(&json);
        }
        let batch = &mut self.batch;
        batch.bytes += size;
        batch.sources.push(RowSource {
            rows_end: batch.rows.len(),
            json_end: batch.json.len(),
            ..source
        });
        Ok(())
    }

    /// `row` (its JSON `json`) names fields the stream's schema lacks (`why`). Adds the
    /// columns they need to the table, waits for a new stream that has them, moves the object
    /// on to it (the rows so far stay in the old stream, finalized, to be committed with the
    /// new one), then writes the row. A value an existing column cannot take, or a field no
    /// column type fits (an array of arrays), makes the row a record error instead.
    fn evolve(&mut self, row: &Row<'_>, json: Vec<u8>, why: EncodeError) -> Result<(), Error> {
        let evolver = self.inner.evolver.clone().expect("evolution is on");
        let reject = |this: &mut Writer, error: String| {
            this.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json.clone(),
                error: format!("does not fit the table schema: {error}"),
            });
            Ok(())
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&json) else {
            return reject(self, why.to_string());
        };
        let current = rest_fields(&self.open.as_ref().expect("open").fields);
        let additions = match evolver.plan(&current, &record) {
            Ok(a) if a.is_empty() => return reject(self, why.to_string()),
            Ok(a) => a,
            Err(refused) => return reject(self, refused),
        };
        let inner = self.inner.clone();
        inner.handle.block_on(evolver.add(&additions))?;
        // BigQuery's new streams may see the old schema for a while (minutes): keep creating
        // streams until one has every column the row needs, abandoning the stale ones (an
        // uncommitted stream is never visible), up to the evolver's bound.
        let mut patience = evolver.patience();
        let (stream, fields) = loop {
            let stream = inner
                .handle
                .block_on(inner.rpc.create_pending(&inner.table_path))?;
            let fields = stream_fields(&stream)?;
            match infer::additions(&rest_fields(&fields), &record) {
                Ok(missing) if !missing.is_empty() => {
                    tracing::debug!(object = %self.object, stream = %stream.name, "new write stream does not see the added columns yet");
                    if !inner.handle.block_on(patience.next()) {
                        let names: Vec<String> = missing.iter().map(|a| a.dotted()).collect();
                        return Err(sink_error(
                            Class::Transient,
                            format!(
                                "columns {} were added to {}, but new write streams still \
                                 lacked them after {} s: the object will be tried again",
                                names.join(", "),
                                evolver.table(),
                                evolver.wait.as_secs()
                            ),
                        ));
                    }
                }
                // Fits, or another worker added a column of the same name with another type
                // (the re-encode below refuses the row with the encoder's message).
                _ => break (stream, fields),
            }
        };
        self.close_open()?;
        self.open = Some(self.start(stream, fields)?);
        self.write(row, false)
    }

    /// Finishes the open stream before the object moves to a new one: its appends settled and
    /// it finalized; kept for the commit when it holds rows.
    fn close_open(&mut self) -> Result<(), Error> {
        if self.open.is_none() {
            return Ok(());
        }
        self.submit()?;
        let appended = self.join()?;
        self.rejected.extend(appended.rejected);
        let open = self.open.take().expect("open");
        if appended.rows == 0 {
            // Nothing in it: abandoned, never visible.
            return Ok(());
        }
        let inner = self.inner.clone();
        let rows = inner.handle.block_on(inner.rpc.finalize(&open.name))?;
        if rows != appended.rows {
            return Err(sink_error(
                Class::Transient,
                format!(
                    "write stream {} holds {rows} rows after finalizing, {} were appended",
                    open.name, appended.rows
                ),
            ));
        }
        tracing::debug!(object = %self.object, stream = %open.name, rows, "write stream finalized (the schema changed)");
        self.closed.push(open.name);
        Ok(())
    }
}

impl ObjectWriter for Writer {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        if let Some(rejected) = super::unstorable(row) {
            self.rejected.push(rejected);
            return Ok(());
        }
        self.write(row, true)
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        if std::mem::replace(&mut self.prepared, true) {
            return Err(sink_error(
                Class::Permanent,
                "prepare called twice for one object".into(),
            ));
        }
        if self.open.is_none() {
            let mut rejected = std::mem::take(&mut self.rejected);
            rejected.sort_by_key(|r| r.ordinal);
            return Ok(Prepared {
                rejected,
                token: None,
            });
        }
        self.close_open()?;
        let mut rejected = std::mem::take(&mut self.rejected);
        rejected.sort_by_key(|r| r.ordinal);
        let streams = std::mem::take(&mut self.closed);
        if streams.is_empty() {
            // Every row was refused: nothing to commit.
            return Ok(Prepared {
                rejected,
                token: None,
            });
        }
        let token = Token::encode(&streams);
        self.staged = Some(streams);
        Ok(Prepared {
            rejected,
            token: Some(token),
        })
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let rejected = if self.prepared {
            Vec::new()
        } else {
            // Called without `prepare` (nothing to record first): stage now.
            self.prepare()?.rejected
        };
        if let Some(streams) = self.staged.take() {
            let inner = self.inner.clone();
            inner
                .handle
                .block_on(inner.rpc.commit(&inner.table_path, &streams))?;
            tracing::debug!(object = %self.object, streams = %streams.join(", "), "write streams committed");
        }
        Ok(Committed {
            rejected,
            inserted: None,
        })
    }
}

#[cfg(test)]
mod tests;

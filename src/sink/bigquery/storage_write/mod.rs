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
mod writer;

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
use self::writer::Writer;

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
        Ok(Box::new(Writer::new(
            self.inner.clone(),
            object.to_string(),
        )))
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

#[cfg(test)]
mod tests;

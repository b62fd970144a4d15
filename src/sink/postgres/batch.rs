//! `--postgres-batch-objects N`: many objects' rows and ledger entries in one transaction, the
//! PostgreSQL side of the batch contract (`sink::batch`, driven by the run's batching driver).
//!
//! Small objects pay a transaction each on the per-object path (BEGIN, a staging table, the
//! `INSERT`, the ledger row, COMMIT's flush to disk); a batch pays that once. The batch holds one
//! connection and one transaction from its first row to its commit. Its objects run at once
//! (`--concurrency`), each converting its rows on its own thread, and their chunks take turns on
//! the batch's one `COPY` into one temporary staging table, each line tagged with the attempt
//! that wrote it. An attempt that fails (and is retried, or dead-lettered) leaves its lines
//! there, untagged in `staged`: the commit's `INSERT … SELECT … WHERE attempt = ANY(…) ON
//! CONFLICT DO NOTHING` takes only the lines of the attempts that finished, writes each held
//! object's ledger entry, and `COMMIT`s — all of it or none. A run killed anywhere before the
//! `COMMIT` leaves nothing; after it, the ledger entries make the next run skip the objects.
//!
//! One fixed table: routing and `--schema-evolution add-columns` keep the per-object path
//! (refused at start with this flag). Memory: one chunk per running object.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::CopyInSink;

use super::columns::{quote_ident, Table};
use super::stage::{self, column_list};
use super::{pg_error, resolve, Conn, Shared};
use crate::error::{Cause, Error, Stage};
use crate::ledger::{identity, Ledger};
use crate::object::ObjectRef;
use crate::row::Row;
use crate::sink::batch::{BatchOutcome, BatchSink, Held, Identity, StagedBatch, StagedTokens};
use crate::sink::{Committed, ObjectWriter, Prepared, Rejected, Sink};

/// Bytes an object converts before its chunk goes to the batch's `COPY`.
const CHUNK: usize = 1 << 20;

/// How objects are grouped into batches.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Objects per batch (at least 2; 1 is the per-object path).
    pub objects: usize,
    /// Listed (compressed) bytes per batch; an object larger than this is a batch alone.
    pub bytes: u64,
}

/// The batches of a run (cheap to clone).
#[derive(Clone)]
pub struct PgBatches {
    pub(super) shared: Arc<Shared>,
    pub(super) bounds: Bounds,
}

#[async_trait::async_trait]
impl BatchSink for PgBatches {
    /// Key order, cut when either bound is reached.
    fn plan(&self, objects: &[ObjectRef]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..objects.len()).collect();
        order.sort_by(|&a, &b| objects[a].key.cmp(&objects[b].key));
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0u64;
        for i in order {
            let size = objects[i].size.unwrap_or(0);
            let full = batches.last().is_none_or(|b| {
                b.len() >= self.bounds.objects.max(1)
                    || (!b.is_empty() && bytes + size > self.bounds.bytes)
            });
            if full {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            batches.last_mut().expect("pushed above").push(i);
        }
        batches
    }

    async fn prepare(&self, _: StagedTokens) -> Result<Box<dyn StagedBatch>, Error> {
        Ok(Box::new(PgBatch {
            state: Arc::new(BatchState {
                shared: self.shared.clone(),
                tx: Mutex::new(None),
                staged: Mutex::default(),
                taken: Mutex::default(),
                next_attempt: AtomicI64::new(0),
            }),
        }))
    }
}

struct PgBatch {
    state: Arc<BatchState>,
}

struct BatchState {
    shared: Arc<Shared>,
    /// The batch's transaction, from its first chunk on.
    tx: Mutex<Option<BatchTx>>,
    /// Per object that finished: the attempt whose lines count, and how many it sent.
    staged: Mutex<HashMap<Identity, (i64, u64)>>,
    /// `staged`, once `take_staged` took it (for `commit`).
    taken: Mutex<HashMap<Identity, (i64, u64)>>,
    next_attempt: AtomicI64,
}

struct BatchTx {
    conn: Conn,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    /// The target's columns the staging table has (those of the batch's first row).
    table: Arc<Table>,
}

/// The staging table: the attempt, then the target's columns.
const STAGE: &str = "frs_batch";

impl BatchState {
    /// Sends an object's chunk into the batch's `COPY`, opening the transaction (and creating
    /// the staging table) with the first one.
    fn send(&self, table: &Arc<Table>, chunk: Bytes) -> Result<(), Error> {
        let shared = &self.shared;
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        shared.handle.block_on(async {
            if tx.is_none() {
                let conn = shared.conn().await?;
                let defs: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| format!("{} {}", quote_ident(&c.name), c.type_name))
                    .collect();
                conn.client
                    .batch_execute(&format!(
                        "BEGIN; CREATE TEMP TABLE {STAGE} (frs_attempt bigint, {}) ON COMMIT DROP",
                        defs.join(", ")
                    ))
                    .await
                    .map_err(|e| pg_error("starting the batch's transaction", e))?;
                *tx = Some(BatchTx {
                    conn,
                    copy: None,
                    table: table.clone(),
                });
            }
            let t = tx.as_mut().expect("opened above");
            if t.copy.is_none() {
                let sql = format!(
                    "COPY pg_temp.{STAGE} (frs_attempt, {}) FROM STDIN",
                    column_list(&t.table)
                );
                let copy = t
                    .conn
                    .client
                    .copy_in(&sql)
                    .await
                    .map_err(|e| pg_error("starting COPY", e))?;
                t.copy = Some(Box::pin(copy));
            }
            let copy = t.copy.as_mut().expect("a COPY runs");
            copy.send(chunk).await.map_err(|e| pg_error("COPY", e))
        })
    }
}

#[async_trait::async_trait]
impl StagedBatch for PgBatch {
    fn sink(&self) -> Arc<dyn Sink> {
        Arc::new(BatchObjects(self.state.clone()))
    }

    fn take_staged(&self) -> HashMap<Identity, u64> {
        let staged =
            std::mem::take(&mut *self.state.staged.lock().unwrap_or_else(|p| p.into_inner()));
        let counts = staged.iter().map(|(k, (_, n))| (k.clone(), *n)).collect();
        *self.state.taken.lock().unwrap_or_else(|p| p.into_inner()) = staged;
        counts
    }

    async fn commit(&self, held: &[Held], _: &Arc<dyn Ledger>) -> Result<BatchOutcome, Error> {
        let state = &self.state;
        let shared = &state.shared;
        let taken = state
            .taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let objects: Vec<(Identity, i64, i64)> = held
            .iter()
            .filter_map(|h| {
                let id = identity(&h.object);
                taken.get(&id).map(|&(a, n)| (id, a, n as i64))
            })
            .collect();
        let tx = state.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (Some(mut tx), Some(first)) = (tx, objects.first()) else {
            return Err(Error::permanent(
                Stage::Sink,
                Cause::Sink("postgres: a batch with nothing staged was committed".into()),
            ));
        };
        if let Some(mut copy) = tx.copy.take() {
            copy.as_mut()
                .finish()
                .await
                .map_err(|e| pg_error("COPY", e))?;
        }
        let attempts: Vec<i64> = objects.iter().map(|(_, a, _)| *a).collect();
        let id = quote_ident(&shared.settings.row_id_column);
        // The new rows per attempt, for each object's ledger entry.
        let sql = format!(
            "WITH ins AS ({} WHERE s.frs_attempt = ANY($1) ON CONFLICT ({}) DO NOTHING \
               RETURNING {id}) \
             SELECT s.frs_attempt, count(DISTINCT {id}), (SELECT count(*) FROM ins) \
             FROM ins JOIN pg_temp.{STAGE} s USING ({id}) \
             WHERE s.frs_attempt = ANY($1) GROUP BY 1",
            stage::insert_select(shared, &shared.target.table, &tx.table, STAGE),
            stage::conflict_list(&tx.table),
        );
        super::partition::ensure_days(
            shared,
            &tx.conn.client,
            &shared.target.table,
            &tx.table,
            STAGE,
            "s.frs_attempt = ANY($1)",
            &attempts,
        )
        .await?;
        let rows = tx
            .conn
            .client
            .query(&sql, &[&attempts])
            .await
            .map_err(|e| pg_error("inserting the new rows", e))?;
        // Per attempt (a row ID two objects share, from --row-id-field, counts for both), and
        // in all.
        let new: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let inserted: i64 = rows.first().map_or(0, |r| r.get(2));
        let token = resolve::attempt_token();
        for (object, attempt, sent) in &objects {
            let inserted = new.get(attempt).copied().unwrap_or(0);
            resolve::write_ledger(shared, &tx.conn.client, object, &token, *sent, inserted).await?;
        }
        let landed = resolve::commit(shared, tx.conn, &first.0, &token).await?;
        Ok(BatchOutcome {
            failed: held.iter().map(|_| None).collect(),
            inserted: landed.unwrap_or(inserted) as u64,
            ids: vec![token],
        })
    }
}

/// The per-object sink of a batch: its writers stage into the batch's `COPY`.
struct BatchObjects(Arc<BatchState>);

impl Sink for BatchObjects {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Ok(Box::new(BatchWriter {
            state: self.0.clone(),
            object: object.clone(),
            attempt: self.0.next_attempt.fetch_add(1, Ordering::Relaxed),
            table: None,
            buf: Vec::new(),
            sent: 0,
            rejected: Vec::new(),
        }))
    }
}

struct BatchWriter {
    state: Arc<BatchState>,
    object: ObjectRef,
    attempt: i64,
    table: Option<Arc<Table>>,
    buf: Vec<u8>,
    sent: u64,
    rejected: Vec<Rejected>,
}

impl BatchWriter {
    fn flush(&mut self) -> Result<(), Error> {
        if let (false, Some(table)) = (self.buf.is_empty(), &self.table) {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.state.send(table, chunk)?;
        }
        Ok(())
    }
}

impl ObjectWriter for BatchWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        let bytes = row.to_vec();
        let shared = &self.state.shared;
        if self.table.is_none() {
            match shared.table_for(&shared.target.table, &bytes)? {
                Ok(t) => self.table = Some(t),
                Err(error) => {
                    self.rejected.push(rejected(row, bytes, error));
                    return Ok(());
                }
            }
        }
        let table = self.table.as_ref().expect("set above");
        let start = self.buf.len();
        self.buf
            .extend_from_slice(format!("{}\t", self.attempt).as_bytes());
        if let Err(error) = stage::encode_line(table, &bytes, &mut self.buf) {
            self.buf.truncate(start);
            self.rejected.push(rejected(row, bytes, error));
            return Ok(());
        }
        self.sent += 1;
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        Ok(Prepared {
            rejected: std::mem::take(&mut self.rejected),
            token: None,
        })
    }

    /// Stages: the rows become visible with the batch's commit.
    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        self.flush()?;
        if self.sent > 0 {
            self.state
                .staged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(identity(&self.object), (self.attempt, self.sent));
        }
        Ok(Committed {
            rejected: Vec::new(),
            inserted: None,
        })
    }
}

fn rejected(row: &Row<'_>, bytes: Vec<u8>, error: String) -> Rejected {
    Rejected {
        ordinal: row.ordinal,
        byte_offset: row.byte_offset,
        row: bytes,
        error,
    }
}

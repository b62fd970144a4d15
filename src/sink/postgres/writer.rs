//! One object's transaction: COPY into staging, insert what the tables lack, the ledger entry,
//! COMMIT.
//!
//! Each row is converted and checked column by column before it joins the COPY stream
//! ([`super::convert`]); a row that fails is handed back as refused (a record error naming the
//! column), and its neighbours go on. The transaction opens when the first rows are sent and is
//! the only one this object holds: it lasts as long as reading the object does.
//!
//! With a routing template each target table gets its own staging table. A connection runs one
//! COPY at a time, so rows wait in per-table buffers and go out, table after table, whenever
//! together they reach [`CHUNK`]: memory stays flat in the object's size (and in its number of
//! tables, which `MAX_TABLES` bounds).
//!
//! A `COMMIT` whose answer never came (a cut connection) is resolved here, not guessed: a new
//! connection waits until the old server process is gone (ending it if it idles), after which
//! that transaction either committed or never will, and the ledger row it would have written,
//! found by this attempt's token, tells which.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::CopyInSink;

use super::columns::{quote_ident, Table, MAX_IDENTIFIER_BYTES};
use super::stage::{self, Staging};
use super::{pg_error, Conn, Shared};
use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;
use crate::row::Row;
use crate::sink::bigquery::route::ObjectTemplate;
use crate::sink::{Committed, ObjectWriter, Prepared, Rejected};

/// COPY data buffered before it is sent: what an object holds in memory, whatever its size.
const CHUNK: usize = 1 << 20;

/// Tables one object may route rows to; a row routed beyond is a record error.
const MAX_TABLES: usize = 100;

pub(super) struct PgWriter {
    shared: Arc<Shared>,
    object: ObjectRef,
    /// The routing template with the object's placeholders filled in (or why they could not
    /// be); `None` for one fixed table.
    route: Option<Result<ObjectTemplate, String>>,
    /// Field lookups start below the payload column, if rows wrap records in one.
    prefix: Vec<String>,
    tx: Option<Tx>,
    stages: Vec<Staging>,
    by_name: HashMap<String, usize>,
    buffered: usize,
    name: String,
    line: Vec<u8>,
    sent: u64,
    rejected: Vec<Rejected>,
}

/// The object's open transaction, and the COPY running in it (into `stages[.0]`), if any.
struct Tx {
    conn: Conn,
    copy: Option<(usize, Pin<Box<CopyInSink<Bytes>>>)>,
}

impl PgWriter {
    pub(super) fn new(shared: Arc<Shared>, object: &ObjectRef) -> PgWriter {
        let route = shared
            .template
            .as_ref()
            .map(|t| t.for_object(object).map_err(|e| e.to_string()));
        let prefix = shared.settings.payload_column.iter().cloned().collect();
        PgWriter {
            shared,
            object: object.clone(),
            route,
            prefix,
            tx: None,
            stages: Vec::new(),
            by_name: HashMap::new(),
            buffered: 0,
            name: String::new(),
            line: Vec::new(),
            sent: 0,
            rejected: Vec::new(),
        }
    }

    fn refuse(&mut self, row: &Row<'_>, bytes: Vec<u8>, error: String) {
        self.rejected.push(Rejected {
            ordinal: row.ordinal,
            byte_offset: row.byte_offset,
            row: bytes,
            error,
        });
    }

    /// The stage of the table `row` goes to: `Ok(Err(reason))` refuses the row.
    fn stage_for(&mut self, row: &[u8]) -> Result<Result<usize, String>, Error> {
        match &self.route {
            None => self.name.clone_from(&self.shared.target.table),
            Some(Err(e)) => {
                return Err(Error::permanent(Stage::Sink, Cause::Sink(e.clone())));
            }
            Some(Ok(t)) => {
                if let Err(e) = t.name_with(row, &self.prefix, &mut self.name) {
                    return Ok(Err(e.to_string()));
                }
                if self.name.len() > MAX_IDENTIFIER_BYTES {
                    return Ok(Err(stage::too_long("routed table name", &self.name)));
                }
            }
        }
        if let Some(&i) = self.by_name.get(&self.name) {
            return Ok(Ok(i));
        }
        if self.stages.len() >= MAX_TABLES {
            return Ok(Err(format!(
                "routed to table `{}`, beyond the {MAX_TABLES} tables one object may write",
                self.name
            )));
        }
        let name = self.name.clone();
        let table = match self.table(&name, row)? {
            Ok(t) => t,
            Err(refused) => return Ok(Err(refused)),
        };
        let i = self.stages.len();
        self.stages.push(Staging {
            temp: format!("frs_stage_{i}"),
            name: name.clone(),
            table,
            created: false,
            buf: Vec::new(),
        });
        self.by_name.insert(name, i);
        Ok(Ok(i))
    }

    /// Table `name`'s columns; with `--create-table auto`, a missing table is created from
    /// this row first.
    fn table(&self, name: &str, row: &[u8]) -> Result<Result<Arc<Table>, String>, Error> {
        let shared = &self.shared;
        if let Some(t) = shared.cached_table(name) {
            return Ok(Ok(t));
        }
        let qualified = shared.target.qualified_table(name);
        let ddl = match &shared.settings.create_auto {
            Some(auto) => match stage::create_table_ddl(shared, auto, name, row) {
                Ok(ddl) => Some(ddl),
                Err(refused) => return Ok(Err(refused)),
            },
            None => None,
        };
        shared.handle.block_on(async {
            let conn = shared.conn().await?;
            if let Some(t) = shared.load_table(&conn.client, name).await? {
                shared.put_back(conn);
                return Ok(Ok(t));
            }
            let Some(ddl) = ddl else {
                shared.put_back(conn);
                return Ok(Err(format!("table {qualified} does not exist")));
            };
            super::create_if_missing(&conn.client, &ddl).await?;
            let table = shared.load_table(&conn.client, name).await?;
            shared.put_back(conn);
            table.map(Ok).ok_or_else(|| {
                Error::permanent(
                    Stage::Sink,
                    Cause::Sink(format!("table {qualified} vanished")),
                )
            })
        })
    }

    /// Sends every buffered line: per stage, into its staging table (created on first use),
    /// ending the COPY of another table first. Opens the transaction if needed.
    fn flush(&mut self) -> Result<(), Error> {
        let pending: Vec<usize> = (0..self.stages.len())
            .filter(|&i| !self.stages[i].buf.is_empty())
            .collect();
        for i in pending {
            self.flush_stage(i)?;
        }
        self.buffered = 0;
        Ok(())
    }

    fn flush_stage(&mut self, i: usize) -> Result<(), Error> {
        let shared = self.shared.clone();
        let chunk = Bytes::from(std::mem::take(&mut self.stages[i].buf));
        let tx = match self.tx.take() {
            Some(tx) => tx,
            None => shared.handle.block_on(async {
                let conn = shared.conn().await?;
                conn.client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| pg_error("starting the transaction", e))?;
                Ok::<_, Error>(Tx { conn, copy: None })
            })?,
        };
        let stage = &mut self.stages[i];
        let tx = shared.handle.block_on(async {
            let mut tx = tx;
            if tx.copy.as_ref().is_some_and(|(j, _)| *j != i) {
                end_copy(&mut tx).await?;
            }
            if tx.copy.is_none() {
                if !stage.created {
                    tx.conn
                        .client
                        .batch_execute(&stage.create_sql())
                        .await
                        .map_err(|e| pg_error("creating the staging table", e))?;
                    stage.created = true;
                }
                let copy = tx
                    .conn
                    .client
                    .copy_in(&stage.copy_sql())
                    .await
                    .map_err(|e| pg_error("starting COPY", e))?;
                tx.copy = Some((i, Box::pin(copy)));
            }
            let (_, copy) = tx.copy.as_mut().expect("a COPY runs");
            copy.send(chunk).await.map_err(|e| pg_error("COPY", e))?;
            Ok::<_, Error>(tx)
        })?;
        self.tx = Some(tx);
        Ok(())
    }

    /// `--schema-evolution add-columns`: the row's fields table `i` lacks become columns (`ADD
    /// COLUMN IF NOT EXISTS`, on a connection of its own, so two workers adding the same column
    /// both succeed); the lines buffered for it go out first with the old columns, and its
    /// staging table gets the new ones, all inside the object's transaction. Rows staged before
    /// lack those fields, so NULL is right for them.
    fn evolve(&mut self, i: usize, row: &[u8]) -> Result<(), Error> {
        let new = stage::new_columns(&self.stages[i].table, row);
        if new.is_empty() {
            return Ok(());
        }
        if !self.stages[i].buf.is_empty() {
            self.buffered -= self.stages[i].buf.len();
            self.flush_stage(i)?;
        }
        let shared = self.shared.clone();
        let name = self.stages[i].name.clone();
        let qualified = shared.target.qualified_table(&name);
        let alter = format!("ALTER TABLE {qualified} {}", new.join(", "));
        let mut tx = self.tx.take();
        let table = shared.handle.block_on(async {
            if let Some(tx) = tx.as_mut() {
                end_copy(tx).await?;
            }
            let conn = shared.conn().await?;
            conn.client
                .batch_execute(&alter)
                .await
                .map_err(|e| pg_error("adding columns", e))?;
            let table = shared
                .load_table(&conn.client, &name)
                .await?
                .ok_or_else(|| {
                    Error::permanent(
                        Stage::Sink,
                        Cause::Sink(format!("table {qualified} vanished")),
                    )
                })?;
            shared.put_back(conn);
            Ok::<_, Error>(table)
        })?;
        tracing::info!(table = %qualified, columns = %new.join(", "), "schema: added columns");
        let stage = &mut self.stages[i];
        if stage.created {
            let added: Vec<String> = table
                .columns
                .iter()
                .filter(|c| stage.table.index(&c.name).is_none())
                .map(|c| format!("ADD COLUMN {} {}", quote_ident(&c.name), c.type_name))
                .collect();
            if let (Some(tx), false) = (tx.as_mut(), added.is_empty()) {
                let sql = format!("ALTER TABLE pg_temp.{} {}", stage.temp, added.join(", "));
                shared.handle.block_on(async {
                    tx.conn
                        .client
                        .batch_execute(&sql)
                        .await
                        .map_err(|e| pg_error("widening the staging table", e))
                })?;
            }
        }
        stage.table = table;
        self.tx = tx;
        Ok(())
    }
}

/// Ends the COPY running in `tx`, if one is.
async fn end_copy(tx: &mut Tx) -> Result<(), Error> {
    if let Some((_, mut copy)) = tx.copy.take() {
        copy.as_mut()
            .finish()
            .await
            .map_err(|e| pg_error("COPY", e))?;
    }
    Ok(())
}

impl ObjectWriter for PgWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        let bytes = row.to_vec();
        let i = match self.stage_for(&bytes)? {
            Ok(i) => i,
            Err(refused) => {
                self.refuse(row, bytes, refused);
                return Ok(());
            }
        };
        if self.shared.settings.add_columns {
            self.evolve(i, &bytes)?;
        }
        self.line.clear();
        if let Err(e) = stage::encode_line(&self.stages[i].table, &bytes, &mut self.line) {
            self.refuse(row, bytes, e);
            return Ok(());
        }
        self.stages[i].buf.extend_from_slice(&self.line);
        self.buffered += self.line.len();
        self.sent += 1;
        if self.buffered >= CHUNK {
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

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        self.flush()?;
        let shared = self.shared.clone();
        let object = &self.object;
        let attempt = attempt_token();
        let sent = self.sent as i64;
        let tx = self.tx.take();
        let inserts: Vec<String> = self
            .stages
            .iter()
            .filter(|s| s.created)
            .map(|s| s.insert_sql(&shared))
            .collect();
        let identity = crate::ledger::identity(object);
        let ledger = shared.target.ledger_table();
        let upsert = format!(
            "INSERT INTO {ledger} (bucket, object_key, etag, attempt, rows_sent, rows_inserted, \
               target) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (target, bucket, object_key, etag) DO UPDATE SET attempt = excluded.attempt, \
               rows_sent = excluded.rows_sent, rows_inserted = excluded.rows_inserted, \
               committed_at = now()"
        );
        let result = shared.handle.block_on(async {
            let mut tx = match tx {
                Some(tx) => tx,
                None => {
                    let conn = shared.conn().await?;
                    conn.client
                        .batch_execute("BEGIN")
                        .await
                        .map_err(|e| pg_error("starting the transaction", e))?;
                    Tx { conn, copy: None }
                }
            };
            end_copy(&mut tx).await?;
            let mut inserted = 0i64;
            for insert in &inserts {
                inserted += tx
                    .conn
                    .client
                    .execute(insert, &[])
                    .await
                    .map_err(|e| pg_error("inserting the new rows", e))?
                    as i64;
            }
            let conn = tx.conn;
            conn.client
                .execute(
                    &upsert,
                    &[
                        &identity.0,
                        &identity.1,
                        &identity.2,
                        &attempt,
                        &sent,
                        &inserted,
                        &shared.target.qualified(),
                    ],
                )
                .await
                .map_err(|e| pg_error("writing the ledger entry", e))?;
            match conn.client.batch_execute("COMMIT").await {
                Ok(()) => {
                    shared.put_back(conn);
                    Ok(inserted)
                }
                Err(e) if e.code().is_none() => {
                    tracing::warn!(object = %object, error = %e, "the COMMIT's answer was lost; finding out whether it landed");
                    drop(conn.client);
                    resolve(&shared, &identity, &attempt, conn.pid).await
                }
                Err(e) => Err(pg_error("COMMIT", e)),
            }
        })?;
        Ok(Committed {
            rejected: Vec::new(),
            inserted: Some(result as u64),
        })
    }
}

/// After a lost `COMMIT` answer: waits (bounded) until server process `pid` is gone, ending it
/// if it lingers (idle in the transaction, its client gone), then reads this attempt's ledger
/// row. Found: the commit landed, with that many new rows. Not found: it never will, and the
/// object is retried (a transient error) — the unique row IDs keep that exact either way.
async fn resolve(
    shared: &Shared,
    identity: &(String, String, String),
    attempt: &str,
    pid: i32,
) -> Result<i64, Error> {
    let conn = shared.connect().await?;
    let c = &conn.client;
    let started = Instant::now();
    let mut terminated = false;
    loop {
        let alive: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&pid],
            )
            .await
            .map_err(|e| pg_error("checking the old connection", e))?
            .get(0);
        if !alive {
            break;
        }
        if !terminated && started.elapsed() > Duration::from_secs(5) {
            // Only idle sessions are ended: one still committing is left to finish.
            let _ = c
                .execute(
                    "SELECT pg_terminate_backend($1) FROM pg_stat_activity \
                     WHERE pid = $1 AND state LIKE 'idle%'",
                    &[&pid],
                )
                .await;
            terminated = true;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink(format!(
                    "postgres: the COMMIT's answer was lost and server process {pid} is still \
                     running after 2 minutes"
                )),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger = shared.target.ledger_table();
    let row = c
        .query_opt(
            &format!(
                "SELECT rows_inserted FROM {ledger} WHERE bucket = $1 AND object_key = $2 \
                 AND etag = $3 AND attempt = $4 AND target = $5"
            ),
            &[
                &identity.0,
                &identity.1,
                &identity.2,
                &attempt,
                &shared.target.qualified(),
            ],
        )
        .await
        .map_err(|e| pg_error("reading the ledger entry", e))?;
    shared.put_back(conn);
    match row {
        Some(r) => {
            tracing::info!(attempt, "the COMMIT landed");
            Ok(r.get(0))
        }
        None => Err(Error::new(
            Stage::Sink,
            Class::Transient,
            Cause::Sink("postgres: the connection was lost before COMMIT landed; nothing of the object was committed".into()),
        )),
    }
}

/// Names this commit in the ledger row, so a lost answer can be resolved.
fn attempt_token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}#{}",
        crate::ledger::worker_id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

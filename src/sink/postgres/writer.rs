//! One object's transaction: COPY into staging, insert what the table lacks, the ledger entry,
//! COMMIT.
//!
//! Each row is converted and checked column by column before it joins the COPY stream
//! ([`super::convert`]); a row that fails is handed back as refused (a record error naming the
//! column), and its neighbours go on. The transaction opens at the first good row and is the
//! only one this object holds: it lasts as long as reading the object does.
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
use serde_json::value::RawValue;
use tokio_postgres::CopyInSink;

use super::columns::{self, quote_ident, Table, MAX_IDENTIFIER_BYTES};
use super::{convert, pg_error, Conn, Shared};
use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;
use crate::row::Row;
use crate::sink::{Committed, ObjectWriter, Prepared, Rejected};

/// COPY data is sent in chunks of this size: what an object holds in memory, whatever its size.
const CHUNK: usize = 1 << 20;

pub(super) struct PgWriter {
    shared: Arc<Shared>,
    object: ObjectRef,
    open: Option<Open>,
    line: Vec<u8>,
    buf: Vec<u8>,
    sent: u64,
    rejected: Vec<Rejected>,
}

struct Open {
    conn: Conn,
    copy: Pin<Box<CopyInSink<Bytes>>>,
    table: Arc<Table>,
}

impl PgWriter {
    pub(super) fn new(shared: Arc<Shared>, object: &ObjectRef) -> PgWriter {
        PgWriter {
            shared,
            object: object.clone(),
            open: None,
            line: Vec::new(),
            buf: Vec::new(),
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

    /// The target's columns; with `--create-table auto`, a missing target is created from
    /// this row first.
    fn table(&self, row: &[u8]) -> Result<Result<Arc<Table>, String>, Error> {
        if let Some(t) = self.shared.cached_table() {
            return Ok(Ok(t));
        }
        let shared = &self.shared;
        let Some(auto) = &shared.settings.create_auto else {
            return Err(Error::permanent(
                Stage::Sink,
                Cause::Sink(format!(
                    "table {} does not exist",
                    shared.target.qualified()
                )),
            ));
        };
        let ddl = match create_table_ddl(shared, auto, row) {
            Ok(ddl) => ddl,
            Err(refused) => return Ok(Err(refused)),
        };
        shared.handle.block_on(async {
            let conn = shared.conn().await?;
            super::create_if_missing(&conn.client, &ddl).await?;
            let table = shared.load_table(&conn.client).await?;
            shared.put_back(conn);
            table.map(Ok).ok_or_else(|| {
                Error::permanent(
                    Stage::Sink,
                    Cause::Sink(format!("table {} vanished", shared.target.qualified())),
                )
            })
        })
    }

    /// Opens the object's transaction and its COPY. The staging table is declared from the
    /// column types, not copied from the target, so the transaction takes no lock on the target
    /// before its closing INSERT: `--schema-evolution` may alter the target meanwhile.
    fn begin(&mut self, table: Arc<Table>) -> Result<(), Error> {
        let shared = self.shared.clone();
        let cols = column_list(&table);
        let defs: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.type_name))
            .collect();
        let open = shared.handle.block_on(async {
            let conn = shared.conn().await?;
            conn.client
                .batch_execute(&format!(
                    "BEGIN; CREATE TEMP TABLE frs_stage ({}) ON COMMIT DROP",
                    defs.join(", ")
                ))
                .await
                .map_err(|e| pg_error("starting the transaction", e))?;
            let copy = conn
                .client
                .copy_in(&format!("COPY pg_temp.frs_stage ({cols}) FROM STDIN"))
                .await
                .map_err(|e| pg_error("starting COPY", e))?;
            Ok::<_, Error>(Open {
                conn,
                copy: Box::pin(copy),
                table,
            })
        })?;
        self.open = Some(open);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        let open = self.open.as_mut().expect("flushed inside a transaction");
        self.shared
            .handle
            .block_on(open.copy.send(chunk))
            .map_err(|e| pg_error("COPY", e))
    }
}

impl PgWriter {
    /// `--schema-evolution add-columns`: the row's fields the table lacks become columns
    /// (`ADD COLUMN IF NOT EXISTS`, on a connection of its own, so two workers adding the same
    /// column both succeed); an open COPY is ended, the staging table given the same columns,
    /// and a COPY with them started, all inside the object's transaction. Rows staged before
    /// lack those fields, so NULL is right for them.
    fn evolve(&mut self, table: Arc<Table>, row: &[u8]) -> Result<Arc<Table>, Error> {
        let Ok(fields) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(row)
        else {
            return Ok(table); // refused by encode_line, with its reason
        };
        let new: Vec<String> = fields
            .iter()
            .filter(|(k, _)| table.index(k).is_none() && k.len() <= MAX_IDENTIFIER_BYTES)
            .map(|(k, v)| {
                format!(
                    "ADD COLUMN IF NOT EXISTS {} {}",
                    quote_ident(k),
                    columns::inferred_type(v)
                )
            })
            .collect();
        if new.is_empty() {
            return Ok(table);
        }
        self.flush()?;
        let shared = self.shared.clone();
        let open = self.open.as_mut();
        let alter = format!(
            "ALTER TABLE {} {}",
            shared.target.qualified(),
            new.join(", ")
        );
        let table = shared.handle.block_on(async {
            if let Some(open) = open {
                open.copy
                    .as_mut()
                    .finish()
                    .await
                    .map_err(|e| pg_error("COPY", e))?;
            }
            let conn = shared.conn().await?;
            conn.client
                .batch_execute(&alter)
                .await
                .map_err(|e| pg_error("adding columns", e))?;
            let table = shared.load_table(&conn.client).await?.ok_or_else(|| {
                Error::permanent(
                    Stage::Sink,
                    Cause::Sink(format!("table {} vanished", shared.target.qualified())),
                )
            })?;
            shared.put_back(conn);
            Ok::<_, Error>(table)
        })?;
        tracing::info!(table = %shared.target.qualified(), columns = %new.join(", "), "schema: added columns");
        if let Some(open) = self.open.as_mut() {
            let added: Vec<String> = table
                .columns
                .iter()
                .filter(|c| open.table.index(&c.name).is_none())
                .map(|c| format!("ADD COLUMN {} {}", quote_ident(&c.name), c.type_name))
                .collect();
            let cols = column_list(&table);
            let copy = shared.handle.block_on(async {
                if !added.is_empty() {
                    open.conn
                        .client
                        .batch_execute(&format!(
                            "ALTER TABLE pg_temp.frs_stage {}",
                            added.join(", ")
                        ))
                        .await
                        .map_err(|e| pg_error("widening the staging table", e))?;
                }
                open.conn
                    .client
                    .copy_in(&format!("COPY pg_temp.frs_stage ({cols}) FROM STDIN"))
                    .await
                    .map_err(|e| pg_error("starting COPY", e))
            })?;
            open.copy = Box::pin(copy);
            open.table = table.clone();
        }
        Ok(table)
    }
}

impl ObjectWriter for PgWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        let bytes = row.to_vec();
        let table = match &self.open {
            Some(o) => o.table.clone(),
            None => match self.table(&bytes)? {
                Ok(t) => t,
                Err(refused) => {
                    self.refuse(row, bytes, refused);
                    return Ok(());
                }
            },
        };
        let table = match self.shared.settings.add_columns {
            true => self.evolve(table, &bytes)?,
            false => table,
        };
        self.line.clear();
        if let Err(e) = encode_line(&table, &bytes, &mut self.line) {
            self.refuse(row, bytes, e);
            return Ok(());
        }
        if self.open.is_none() {
            self.begin(table)?;
        }
        self.buf.extend_from_slice(&self.line);
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

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        self.flush()?;
        let shared = self.shared.clone();
        let object = &self.object;
        let attempt = attempt_token();
        let sent = self.sent as i64;
        let open = self.open.take();
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
            let (conn, inserted) = match open {
                Some(mut open) => {
                    open.copy
                        .as_mut()
                        .finish()
                        .await
                        .map_err(|e| pg_error("COPY", e))?;
                    let insert = insert_sql(&shared, &open.table);
                    let n = open
                        .conn
                        .client
                        .execute(&insert, &[])
                        .await
                        .map_err(|e| pg_error("inserting the new rows", e))?;
                    (open.conn, n as i64)
                }
                None => {
                    let conn = shared.conn().await?;
                    conn.client
                        .batch_execute("BEGIN")
                        .await
                        .map_err(|e| pg_error("starting the transaction", e))?;
                    (conn, 0)
                }
            };
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

fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Staging → target: a missing value takes the column's default; rows whose ID the table has
/// are left out.
fn insert_sql(shared: &Shared, table: &Table) -> String {
    let exprs: Vec<String> = table
        .columns
        .iter()
        .zip(&table.defaults)
        .map(|(c, d)| match d {
            Some(d) => format!("COALESCE(s.{}, {d})", quote_ident(&c.name)),
            None => format!("s.{}", quote_ident(&c.name)),
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM pg_temp.frs_stage s ON CONFLICT ({}) DO NOTHING",
        shared.target.qualified(),
        column_list(table),
        exprs.join(", "),
        quote_ident(&shared.settings.row_id_column)
    )
}

/// One row as a COPY text line, every value checked; the error names the field or column.
fn encode_line(table: &Table, row: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let fields: HashMap<String, &RawValue> =
        serde_json::from_slice(row).map_err(|e| format!("the row is not a JSON object: {e}"))?;
    for name in fields.keys() {
        if table.index(name).is_none() {
            if name.len() > MAX_IDENTIFIER_BYTES {
                return Err(format!(
                    "field `{name}` is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte \
                     identifier limit, so no column can hold it"
                ));
            }
            return Err(format!("field `{name}` has no column in the table"));
        }
    }
    for (i, column) in table.columns.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        convert::append(column, fields.get(&column.name).copied(), out)?;
    }
    out.push(b'\n');
    Ok(())
}

/// `--create-table auto`: the table from the first row, its row ID the primary key. A field
/// name PostgreSQL would truncate refuses the row (`Err`), which then creates nothing.
fn create_table_ddl(
    shared: &Shared,
    auto: &super::AutoCreate,
    row: &[u8],
) -> Result<String, String> {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(row).map_err(|e| format!("the row is not a JSON object: {e}"))?;
    if let Some(long) = fields.keys().find(|k| k.len() > MAX_IDENTIFIER_BYTES) {
        return Err(format!(
            "field `{long}` is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifier \
             limit, so no column can hold it"
        ));
    }
    let id = &shared.settings.row_id_column;
    let mut defs = vec![format!("{} text PRIMARY KEY", quote_ident(id))];
    for (name, value) in &fields {
        if name == id {
            continue;
        }
        let ty = match name.as_str() {
            "_record_ordinal" => "bigint",
            "_ingested_at" => "timestamptz",
            "_source_uri" => "text",
            n if Some(n) == auto.payload_column.as_deref() => "jsonb",
            _ => columns::inferred_type(value),
        };
        defs.push(format!("{} {ty}", quote_ident(name)));
    }
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        shared.target.qualified(),
        defs.join(", ")
    ))
}

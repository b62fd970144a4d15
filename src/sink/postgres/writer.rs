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
//! An object nothing says is in the table already goes straight into it instead (one table, no
//! staging: [`super::direct`]). The ledger entry and `COMMIT`, and what a lost `COMMIT` answer
//! means, are [`super::resolve`]'s.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::CopyInSink;

use super::columns::{quote_ident, Table, MAX_IDENTIFIER_BYTES};
use super::direct::{self, Direct, Lane, Mode, Statements, DIRECT_CHUNK};
use super::resolve;
use super::stage::{self, Staging};
use super::{pg_error, Conn, Shared};
use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;
use crate::row::Row;
use crate::sink::bigquery::route::{ObjectTemplate, RouteError};
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
    /// The direct path's statements, while the object may still take it (one fixed table, no
    /// column defaults, no schema evolution: see [`Self::may_go_direct`]).
    direct_sql: Option<Statements>,
    /// The object's lane on the direct path, once its first chunk took it.
    direct: Option<Direct>,
    /// Buffered bytes that make a chunk.
    chunk: usize,
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
            direct_sql: None,
            direct: None,
            chunk: CHUNK,
        }
    }

    /// The direct path ([`direct`]) copies rows as they are, so it needs what the staging path
    /// adds in its `INSERT` to be absent: column defaults for missing values (`COALESCE`) and
    /// other tables. `ALTER TABLE` from `--schema-evolution` would wait for this transaction's
    /// own lock on the target, so that too takes the staging path.
    fn may_go_direct(&self, stage: &Staging) -> bool {
        self.route.is_none()
            && !self.shared.settings.add_columns
            && stage.table.defaults.iter().all(Option::is_none)
            && stage.table.partition_key.is_empty()
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
                match t.name_with(row, &self.prefix, &mut self.name) {
                    Ok(()) => {}
                    // `--route-default`: the table of rows that lack a routing field.
                    Err(RouteError::Missing { .. })
                        if self.shared.settings.route_default.is_some() =>
                    {
                        self.name.clone_from(
                            self.shared
                                .settings
                                .route_default
                                .as_ref()
                                .expect("checked"),
                        );
                    }
                    Err(e) => return Ok(Err(e.to_string())),
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
        let table = match self.shared.table_for(&name, row)? {
            Ok(t) => t,
            Err(refused) => return Ok(Err(refused)),
        };
        let i = self.stages.len();
        let stage = Staging {
            temp: format!("frs_stage_{i}"),
            name: name.clone(),
            table,
            created: false,
            buf: Vec::new(),
        };
        if i == 0 && self.may_go_direct(&stage) {
            self.direct_sql = Some(Statements {
                copy_target: stage.copy_target_sql(&self.shared),
                create_stage: stage.create_sql(),
                copy_stage: stage.copy_sql(),
            });
            self.chunk = DIRECT_CHUNK;
        }
        self.stages.push(stage);
        self.by_name.insert(name, i);
        Ok(Ok(i))
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
        if let Some(direct) = self.direct.take() {
            let sql = self
                .direct_sql
                .as_ref()
                .expect("the direct path's statements");
            let direct = shared
                .handle
                .block_on(direct.send(&shared.handle, sql, chunk))?;
            self.direct = Some(direct);
            return Ok(());
        }
        let tx = match self.tx.take() {
            Some(tx) => tx,
            None => {
                let identity = crate::ledger::identity(&self.object);
                let may_go_direct = self.direct_sql.is_some();
                let (tx, direct) = shared.handle.block_on(async {
                    let conn = shared.conn().await?;
                    conn.client
                        .batch_execute("BEGIN")
                        .await
                        .map_err(|e| pg_error("starting the transaction", e))?;
                    let direct = may_go_direct
                        && direct::never_committed(
                            &conn.client,
                            &shared.target.ledger_table(),
                            &identity,
                            &shared.target.qualified(),
                        )
                        .await?;
                    Ok::<_, Error>((Tx { conn, copy: None }, direct))
                })?;
                if direct {
                    let lane = Direct::Idle(Lane {
                        conn: tx.conn,
                        mode: Mode::Direct { savepoint: false },
                        inserted: 0,
                    });
                    self.direct = Some(lane);
                    self.stages[i].buf = chunk.into();
                    return self.flush_stage(i);
                }
                tx
            }
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
        if self.buffered >= self.chunk {
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
        let attempt = resolve::attempt_token();
        let sent = self.sent as i64;
        let mut direct_inserted = 0;
        if let Some(direct) = self.direct.take() {
            // The direct path's connection becomes the transaction the staging path would
            // have had: with its staging table and open COPY if it fell back.
            let lane = shared.handle.block_on(direct.lane())?;
            direct_inserted = lane.inserted as i64;
            let copy = match lane.mode {
                Mode::Direct { .. } => None,
                Mode::Staging { copy } => {
                    self.stages[0].created = true;
                    copy.map(|c| (0, c))
                }
            };
            self.tx = Some(Tx {
                conn: lane.conn,
                copy,
            });
        }
        let tx = self.tx.take();
        let inserts: Vec<(String, String, Arc<Table>, String)> = self
            .stages
            .iter()
            .filter(|s| s.created)
            .map(|s| {
                (
                    s.insert_sql(&shared),
                    s.name.clone(),
                    s.table.clone(),
                    s.temp.clone(),
                )
            })
            .collect();
        let identity = crate::ledger::identity(object);
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
            let mut inserted = direct_inserted;
            for (insert, name, table, temp) in &inserts {
                super::partition::ensure_days(
                    &shared,
                    &tx.conn.client,
                    name,
                    table,
                    temp,
                    "true",
                    &[],
                )
                .await?;
                inserted += tx
                    .conn
                    .client
                    .execute(insert, &[])
                    .await
                    .map_err(|e| pg_error("inserting the new rows", e))?
                    as i64;
            }
            let conn = tx.conn;
            resolve::write_ledger(&shared, &conn.client, &identity, &attempt, sent, inserted)
                .await?;
            let landed = resolve::commit(&shared, conn, &identity, &attempt).await?;
            Ok::<_, Error>(landed.unwrap_or(inserted))
        })?;
        Ok(Committed {
            rejected: Vec::new(),
            inserted: Some(result as u64),
        })
    }
}

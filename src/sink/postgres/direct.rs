//! COPY straight into the target: the fast path for an object nothing says is there already.
//!
//! The staging path makes the server write every row twice (into the temporary table, then
//! `INSERT … SELECT … ON CONFLICT` into the target). When the ledger table holds no entry for
//! the object (no attempt of it ever committed) its rows are almost surely new, so they are
//! copied into the target itself, one [`DIRECT_CHUNK`] per `COPY`, each behind a `SAVEPOINT`.
//! A chunk that meets a row ID the table has (a worker that got there first, rows put there by
//! hand, a ledger emptied by hand) fails with a unique violation: the transaction rolls back to
//! the savepoint — dropping that chunk's rows and nothing else — and from then on the object
//! takes the staging path, starting with that same chunk (kept until its `COPY` ended). Rows
//! copied before went in with no conflict, so each row lands once either way.
//!
//! Each chunk's statements run in a task of their own while the decode thread builds the next
//! chunk, so the client's conversion and the server's inserts overlap as the staging path's
//! streamed `COPY` lets them: the writer waits only when a chunk is ready and the previous one
//! has not finished.

use std::pin::Pin;

use bytes::Bytes;
use futures::SinkExt;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::CopyInSink;

use super::{pg_error, Conn};
use crate::error::{Cause, Error, Stage};

/// Rows per `COPY` (and per savepoint) on the direct path. Larger than the staging path's
/// chunk: each savepoint is a subtransaction, and past 64 of them in one transaction the
/// server's snapshots of other sessions get slower (the subtransaction cache overflows), so
/// 4 MiB keeps a 256 MiB object within that; memory stays flat (three chunks at most).
pub(super) const DIRECT_CHUNK: usize = 4 << 20;

/// The SQL a lane needs, fixed for the object.
#[derive(Clone)]
pub(super) struct Statements {
    /// `COPY target (…) FROM STDIN`.
    pub copy_target: String,
    /// `CREATE TEMP TABLE …` of the staging table.
    pub create_stage: String,
    /// `COPY pg_temp.stage (…) FROM STDIN`.
    pub copy_stage: String,
}

/// Where the object's rows go now.
pub(super) enum Mode {
    /// Into the target; `savepoint` once the first chunk set one.
    Direct { savepoint: bool },
    /// Into the staging table (created), through this open `COPY`, if one is.
    Staging {
        copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    },
}

/// The object's connection (in its transaction) and what it has done so far.
pub(super) struct Lane {
    pub conn: Conn,
    pub mode: Mode,
    /// Rows copied into the target directly (all of them new).
    pub inserted: u64,
}

/// A lane, or the task sending a chunk through it.
pub(super) enum Direct {
    Idle(Lane),
    Busy(JoinHandle<Result<Lane, Error>>),
}

impl Direct {
    /// Sends `chunk` in a task of its own, after the previous chunk has gone.
    pub async fn send(
        self,
        handle: &Handle,
        sql: &Statements,
        chunk: Bytes,
    ) -> Result<Direct, Error> {
        let lane = self.lane().await?;
        let sql = sql.clone();
        Ok(Direct::Busy(
            handle.spawn(async move { send_chunk(lane, &sql, chunk).await }),
        ))
    }

    /// The lane once every chunk sent has gone.
    pub async fn lane(self) -> Result<Lane, Error> {
        match self {
            Direct::Idle(lane) => Ok(lane),
            Direct::Busy(task) => task.await.map_err(|e| {
                Error::permanent(
                    Stage::Sink,
                    Cause::Sink(format!("postgres: a COPY task failed: {e}")),
                )
            })?,
        }
    }
}

async fn send_chunk(mut lane: Lane, sql: &Statements, chunk: Bytes) -> Result<Lane, Error> {
    let client = &lane.conn.client;
    if let Mode::Direct { savepoint } = &mut lane.mode {
        let set = if *savepoint {
            "RELEASE SAVEPOINT frs_direct; SAVEPOINT frs_direct"
        } else {
            "SAVEPOINT frs_direct"
        };
        client
            .batch_execute(set)
            .await
            .map_err(|e| pg_error("setting a savepoint", e))?;
        *savepoint = true;
        match copy_chunk(client, &sql.copy_target, chunk.clone()).await {
            Ok(n) => {
                lane.inserted += n;
                return Ok(lane);
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tracing::info!(
                    "postgres: a row of the object is in the table already; staging the rest"
                );
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT frs_direct; RELEASE SAVEPOINT frs_direct")
                    .await
                    .map_err(|e| pg_error("rolling back to the savepoint", e))?;
                client
                    .batch_execute(&sql.create_stage)
                    .await
                    .map_err(|e| pg_error("creating the staging table", e))?;
                lane.mode = Mode::Staging { copy: None };
            }
            Err(e) => return Err(pg_error("COPY", e)),
        }
    }
    let Mode::Staging { copy } = &mut lane.mode else {
        unreachable!("the direct path returned above")
    };
    if copy.is_none() {
        let sink = client
            .copy_in(&sql.copy_stage)
            .await
            .map_err(|e| pg_error("starting COPY", e))?;
        *copy = Some(Box::pin(sink));
    }
    let sink = copy.as_mut().expect("a COPY runs");
    sink.send(chunk).await.map_err(|e| pg_error("COPY", e))?;
    Ok(lane)
}

/// One chunk in one `COPY`: the rows it added.
async fn copy_chunk(
    client: &tokio_postgres::Client,
    sql: &str,
    chunk: Bytes,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(sql).await?;
    let mut sink = Box::pin(sink);
    sink.send(chunk).await?;
    sink.as_mut().finish().await
}

/// Whether no attempt of the object ever committed into `target` (no ledger entry for its
/// bucket and key, whatever its ETag): then its rows are taken to be new.
pub(super) async fn never_committed(
    client: &tokio_postgres::Client,
    ledger: &str,
    identity: &(String, String, String),
    target: &str,
) -> Result<bool, Error> {
    let sql = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM {ledger} \
           WHERE bucket = $1 AND object_key = $2 AND target = $3)"
    );
    Ok(client
        .query_one(&sql, &[&identity.0, &identity.1, &target])
        .await
        .map_err(|e| pg_error("reading the ledger", e))?
        .get(0))
}

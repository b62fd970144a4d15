//! The end of a transaction, shared by the per-object and the per-batch paths: the ledger
//! entry, `COMMIT`, and what a lost `COMMIT` answer means.
//!
//! A `COMMIT` whose answer never came (a cut connection) is resolved, not guessed: a new
//! connection waits until the old server process is gone (ending it if it idles), after which
//! that transaction either committed or never will, and the ledger row it would have written,
//! found by this attempt's token, tells which.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{pg_error, Conn, Shared};
use crate::error::{Cause, Class, Error, Stage};
use crate::sink::batch::Identity;

/// Writes (or overwrites: `--force`, `--ledger none`) `object`'s ledger entry in the
/// transaction of `client`.
pub(super) async fn write_ledger(
    shared: &Shared,
    client: &tokio_postgres::Client,
    object: &Identity,
    attempt: &str,
    sent: i64,
    inserted: i64,
) -> Result<(), Error> {
    let ledger = shared.target.ledger_table();
    let upsert = format!(
        "INSERT INTO {ledger} (bucket, object_key, etag, attempt, rows_sent, rows_inserted, \
           target) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (target, bucket, object_key, etag) DO UPDATE SET attempt = excluded.attempt, \
           rows_sent = excluded.rows_sent, rows_inserted = excluded.rows_inserted, \
           committed_at = now()"
    );
    client
        .execute(
            &upsert,
            &[
                &object.0,
                &object.1,
                &object.2,
                &attempt,
                &sent,
                &inserted,
                &shared.target.qualified(),
            ],
        )
        .await
        .map_err(|e| pg_error("writing the ledger entry", e))?;
    Ok(())
}

/// `COMMIT`s the transaction on `conn` (whose ledger entries name `attempt`, one of them for
/// `object`): `Ok(None)` when it committed, `Ok(Some(rows))` when its answer was lost and the
/// ledger says it landed (`rows`: the new rows of attempt's entries), an error when it did not.
pub(super) async fn commit(
    shared: &Shared,
    conn: Conn,
    object: &Identity,
    attempt: &str,
) -> Result<Option<i64>, Error> {
    match conn.client.batch_execute("COMMIT").await {
        Ok(()) => {
            shared.put_back(conn);
            Ok(None)
        }
        Err(e) if e.code().is_none() => {
            tracing::warn!(object = %object.1, error = %e, "the COMMIT's answer was lost; finding out whether it landed");
            drop(conn.client);
            resolve(shared, object, attempt, conn.pid).await.map(Some)
        }
        Err(e) => Err(pg_error("COMMIT", e)),
    }
}

/// After a lost `COMMIT` answer: waits (bounded) until server process `pid` is gone, ending it
/// if it lingers (idle in the transaction, its client gone), then reads this attempt's ledger
/// row. Found: the commit landed, with the new rows of every entry of the attempt. Not found:
/// it never will, and the object is retried (a transient error) — the unique row IDs keep that
/// exact either way.
async fn resolve(
    shared: &Shared,
    identity: &Identity,
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
                "SELECT (SELECT sum(rows_inserted)::bigint FROM {ledger} \
                   WHERE attempt = $4 AND target = $5) \
                 FROM {ledger} WHERE bucket = $1 AND object_key = $2 \
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
pub(super) fn attempt_token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}#{}",
        crate::ledger::worker_id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

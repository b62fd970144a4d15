//! `--ledger postgres`: the ledger table beside the PostgreSQL sink's target.
//!
//! The sink writes an object's entry in the same transaction as its rows (see
//! `sink::postgres`), so "done" and "its rows are in" cannot disagree; this ledger reads that
//! entry to skip done objects, and adds the run's summary once the object is finished. Claims
//! are not needed: two workers on one object both run, and the table's unique row IDs let only
//! one copy of each row in (the other's counts say the rows were already there).

use std::sync::Arc;

use super::{identity, Begin, Claim, Finished, Ledger};
use crate::error::Error;
use crate::object::ObjectRef;
use crate::sink::postgres::{pg_error, Postgres, Shared};

pub struct PostgresLedger {
    shared: Arc<Shared>,
}

impl PostgresLedger {
    /// The ledger of `sink`'s database (its table is created when the sink connects).
    pub fn new(sink: &Postgres) -> PostgresLedger {
        PostgresLedger {
            shared: sink.shared(),
        }
    }
}

impl Ledger for PostgresLedger {
    fn begin(&self, object: &ObjectRef, force: bool) -> Result<Begin, Error> {
        if force {
            return Ok(Begin::Proceed(Claim::default()));
        }
        let (bucket, key, etag) = identity(object);
        let shared = &self.shared;
        let sql = format!(
            "SELECT 1 FROM {} WHERE bucket = $1 AND object_key = $2 AND etag = $3 AND target = $4",
            shared.target.ledger_table()
        );
        let done = shared.handle.block_on(async {
            let conn = shared.conn().await?;
            let row = conn
                .client
                .query_opt(&sql, &[&bucket, &key, &etag, &shared.target.qualified()])
                .await
                .map_err(|e| pg_error("reading the ledger", e))?;
            shared.put_back(conn);
            Ok::<_, Error>(row.is_some())
        })?;
        Ok(if done {
            Begin::Done
        } else {
            Begin::Proceed(Claim::default())
        })
    }

    fn finish(&self, object: &ObjectRef, _: Claim, summary: &Finished) -> Result<(), Error> {
        let (bucket, key, etag) = identity(object);
        let shared = &self.shared;
        let sql = format!(
            "UPDATE {} SET records = $4, rows_new = $5, record_errors = $6, \
               finished_at = now(), worker = $7 \
             WHERE bucket = $1 AND object_key = $2 AND etag = $3 AND target = $8",
            shared.target.ledger_table()
        );
        let (records, rows, errors) = (
            summary.records as i64,
            summary.rows as i64,
            summary.record_errors as i64,
        );
        shared.handle.block_on(async {
            let conn = shared.conn().await?;
            conn.client
                .execute(
                    &sql,
                    &[
                        &bucket,
                        &key,
                        &etag,
                        &records,
                        &rows,
                        &errors,
                        &summary.worker,
                        &shared.target.qualified(),
                    ],
                )
                .await
                .map_err(|e| pg_error("writing the ledger summary", e))?;
            shared.put_back(conn);
            Ok(())
        })
    }

    fn abandon(&self, _: &ObjectRef, _: Claim) {}
}

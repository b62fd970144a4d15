//! `--partition-by COLUMN` with `--create-table auto`: a table `PARTITION BY RANGE (COLUMN)` on
//! a `timestamptz` column, with a partition per UTC day, created as rows need it.
//!
//! PostgreSQL requires every unique index of a partitioned table to hold its partition key, so
//! the primary key is `(row ID, COLUMN)` and the dedup's conflict target is that pair. Dedup
//! still holds: a record gives the same row ID *and* the same timestamp (both come from the
//! record, or from its object and position) in every run, so the pair repeats exactly when the
//! row ID does; and since the key includes the partition column, a repeat lands in the same
//! partition, where its index catches it.
//!
//! A day's partition (`TABLE_pYYYYMMDD`, `FOR VALUES FROM (day) TO (day + 1)` in UTC) is
//! created on a connection of its own, outside the object's transaction, before that
//! transaction first touches the table (`CREATE TABLE … PARTITION OF` locks the parent, which
//! the transaction's own insert would then hold against it). Two workers creating the same day
//! both succeed (`IF NOT EXISTS`, the loser's catalog collision taken as "it is there").

use tokio_postgres::Client;

use super::columns::{quote_ident, Table, MAX_IDENTIFIER_BYTES};
use super::{create_if_missing, pg_error, Shared};
use crate::error::{Cause, Error, Stage};

/// The table's unique keys, each as its key columns, and its partition key (empty when the
/// table is not partitioned).
pub(super) async fn keys(
    client: &Client,
    qualified: &str,
) -> Result<(Vec<Vec<String>>, Vec<String>), tokio_postgres::Error> {
    let unique = client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY k.n) FROM pg_index i \
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL \
               AND k.n <= i.indnkeyatts \
             GROUP BY i.indexrelid",
            &[&qualified],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let partition: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_partitioned_table p \
               CROSS JOIN LATERAL unnest(p.partattrs::int2[]) WITH ORDINALITY k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.attnum \
             WHERE p.partrelid = to_regclass($1) ORDER BY k.n",
            &[&qualified],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((unique, partition))
}

/// The conflict target among `unique`: the row ID alone, or on a partitioned table the row ID
/// with the partition key (in any order).
pub(super) fn conflict_key(
    unique: &[Vec<String>],
    partition: &[String],
    row_id: &str,
) -> Option<Vec<String>> {
    let alone = [row_id.to_string()];
    if let Some(k) = unique.iter().find(|k| k.as_slice() == alone) {
        return Some(k.clone());
    }
    if partition.is_empty() {
        return None;
    }
    unique
        .iter()
        .find(|k| {
            k.len() == partition.len() + 1
                && k.iter().any(|c| c == row_id)
                && partition.iter().all(|p| k.contains(p))
        })
        .cloned()
}

/// Whether this sink creates `table`'s daily partitions: `--partition-by` names its one
/// partition key.
pub(super) fn daily(shared: &Shared, table: &Table) -> bool {
    let by = shared
        .settings
        .create_auto
        .as_ref()
        .and_then(|a| a.partition_by.as_deref());
    by.is_some_and(|by| table.partition_key.len() == 1 && table.partition_key[0] == by)
}

/// Creates the partitions of table `name` for the days of the rows staged in `pg_temp.temp`
/// (those `filter` keeps, a SQL condition on `s`), reading the days in the transaction of
/// `tx` and creating them on another connection.
pub(super) async fn ensure_days(
    shared: &Shared,
    tx: &Client,
    name: &str,
    table: &Table,
    temp: &str,
    filter: &str,
    attempts: &[i64],
) -> Result<(), Error> {
    if !daily(shared, table) {
        return Ok(());
    }
    let column = quote_ident(&table.partition_key[0]);
    let sql = format!(
        "SELECT DISTINCT to_char(d, 'YYYYMMDD'), to_char(d, 'YYYY-MM-DD'), \
           to_char(d + interval '1 day', 'YYYY-MM-DD') \
         FROM (SELECT date_trunc('day', s.{column} AT TIME ZONE 'UTC') d FROM pg_temp.{temp} s \
               WHERE s.{column} IS NOT NULL AND ({filter})) days"
    );
    let rows = if filter.contains("$1") {
        tx.query(&sql, &[&attempts]).await
    } else {
        tx.query(&sql, &[]).await
    }
    .map_err(|e| pg_error("reading the rows' days", e))?;
    let days: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    if days.is_empty() {
        return Ok(());
    }
    let conn = shared.conn().await?;
    for (day, from, to) in days {
        let partition = format!("{name}_p{day}");
        if partition.len() > MAX_IDENTIFIER_BYTES {
            return Err(Error::permanent(
                Stage::Sink,
                Cause::Sink(format!(
                    "partition `{partition}` would be longer than PostgreSQL's \
                     {MAX_IDENTIFIER_BYTES}-byte identifier limit: use a shorter table name"
                )),
            ));
        }
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} \
             FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')",
            shared.target.qualified_table(&partition),
            shared.target.qualified_table(name),
        );
        create_if_missing(&conn.client, &ddl).await?;
    }
    shared.put_back(conn);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::conflict_key;

    fn keys(k: &[&[&str]]) -> Vec<Vec<String>> {
        k.iter()
            .map(|k| k.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn the_row_id_alone_or_with_the_partition_key_is_the_conflict_target() {
        let ts = vec!["ts".to_string()];
        assert_eq!(
            conflict_key(&keys(&[&["other"], &["_row_id"]]), &[], "_row_id"),
            Some(vec!["_row_id".to_string()])
        );
        assert_eq!(
            conflict_key(&keys(&[&["ts", "_row_id"]]), &ts, "_row_id"),
            Some(vec!["ts".to_string(), "_row_id".to_string()])
        );
        // Unpartitioned, a wider key does not keep the row ID unique.
        assert_eq!(
            conflict_key(&keys(&[&["_row_id", "ts"]]), &[], "_row_id"),
            None
        );
        // Partitioned, a key with another column neither.
        assert_eq!(
            conflict_key(&keys(&[&["_row_id", "n"]]), &ts, "_row_id"),
            None
        );
        assert_eq!(conflict_key(&keys(&[&["ts"]]), &ts, "_row_id"), None);
    }
}

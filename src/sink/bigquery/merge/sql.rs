//! The SQL `--dedup merge` runs, as text: identifiers quoted, values never interpolated except
//! the partition bounds, which come back from BigQuery itself and are passed as string
//! literals.

/// A GoogleSQL quoted identifier: backticks, with `\` and `` ` `` escaped.
pub fn ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('`');
    for c in name.chars() {
        if c == '`' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('`');
    s
}

/// A GoogleSQL string literal.
pub fn string(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('\'');
    for c in value.chars() {
        match c {
            '\'' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// `` `project.dataset.table` `` (one quoted path: project IDs may hold `-`, `:` and `.`).
pub fn table(t: &super::super::TableRef) -> String {
    ident(&format!("{}.{}.{}", t.project, t.dataset, t.table))
}

/// The target's partition column and the bounds of the staged rows' values in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub column: String,
    /// BigQuery's type of the column: TIMESTAMP, DATE, DATETIME or INT64.
    pub kind: String,
    /// `CAST(MIN(col) AS STRING)` of the staged rows; `None` when all of them are NULL.
    pub range: Option<(String, String)>,
}

/// The bounds query: the staged rows' least and greatest partition values, as text.
pub fn bounds_query(staging: &super::super::TableRef, column: &str) -> String {
    let c = ident(column);
    format!(
        "SELECT CAST(MIN({c}) AS STRING) AS lo, CAST(MAX({c}) AS STRING) AS hi FROM {}",
        table(staging)
    )
}

/// `MERGE target USING (staged rows, one per row ID) ON the row ID WHEN NOT MATCHED THEN
/// INSERT`: rows whose ID the target holds already are left out, so running it again, or
/// after another run merged the same rows, inserts nothing.
///
/// The source keeps one row per ID (`QUALIFY ROW_NUMBER()`), because a staging table may hold
/// a row twice (a resend) and MERGE would insert both. Columns are named, so a target that
/// gained columns since the staging table was made still takes the rows.
///
/// With `bounds`, the ON clause also limits the target to the partitions the staged rows fall
/// into (a constant filter, which is what lets BigQuery prune partitions in a MERGE): exact when
/// a row's partition value is a function of the row, as it is for a position-derived row ID.
pub fn merge(
    target: &super::super::TableRef,
    staging: &super::super::TableRef,
    row_id_column: &str,
    columns: &[String],
    bounds: Option<&Bounds>,
) -> String {
    let id = ident(row_id_column);
    let mut on = format!("T.{id} = S.{id}");
    if let Some(b) = bounds {
        let c = ident(&b.column);
        match &b.range {
            Some((lo, hi)) => on.push_str(&format!(
                " AND (T.{c} IS NULL OR T.{c} BETWEEN CAST({} AS {k}) AND CAST({} AS {k}))",
                string(lo),
                string(hi),
                k = b.kind
            )),
            None => on.push_str(&format!(" AND T.{c} IS NULL")),
        }
    }
    let names: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let values: Vec<String> = names.iter().map(|c| format!("S.{c}")).collect();
    format!(
        "MERGE {} AS T USING (SELECT * FROM {} WHERE TRUE QUALIFY ROW_NUMBER() OVER \
         (PARTITION BY {id}) = 1) AS S ON {on} WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
        table(target),
        table(staging),
        names.join(", "),
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::bigquery::TableRef;

    fn t(name: &str) -> TableRef {
        TableRef {
            project: "my-proj".into(),
            dataset: "bi".into(),
            table: name.into(),
        }
    }

    #[test]
    fn identifiers_and_strings_are_quoted_so_no_name_or_value_can_end_them() {
        assert_eq!(ident("a`b\\c"), r"`a\`b\\c`");
        assert_eq!(string("it's\\\n"), r"'it\'s\\\n'");
        assert_eq!(table(&t("events")), "`my-proj.bi.events`");
    }

    #[test]
    fn the_merge_inserts_only_ids_the_target_lacks_and_one_row_per_id() {
        let sql = merge(
            &t("events"),
            &t("events__stage"),
            "_row_id",
            &["a".into(), "_row_id".into()],
            None,
        );
        assert_eq!(
            sql,
            "MERGE `my-proj.bi.events` AS T USING (SELECT * FROM `my-proj.bi.events__stage` \
             WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY `_row_id`) = 1) AS S ON \
             T.`_row_id` = S.`_row_id` WHEN NOT MATCHED THEN INSERT (`a`, `_row_id`) VALUES \
             (S.`a`, S.`_row_id`)"
        );
    }

    #[test]
    fn partition_bounds_become_a_constant_filter_on_the_target() {
        let b = Bounds {
            column: "ts".into(),
            kind: "TIMESTAMP".into(),
            range: Some((
                "2026-01-01 00:00:00+00".into(),
                "2026-01-02 10:00:00+00".into(),
            )),
        };
        let sql = merge(&t("e"), &t("s"), "_row_id", &["ts".into()], Some(&b));
        assert!(
            sql.contains(
                "ON T.`_row_id` = S.`_row_id` AND (T.`ts` IS NULL OR T.`ts` BETWEEN \
                 CAST('2026-01-01 00:00:00+00' AS TIMESTAMP) AND CAST('2026-01-02 10:00:00+00' \
                 AS TIMESTAMP)) WHEN"
            ),
            "{sql}"
        );
        let all_null = Bounds { range: None, ..b };
        let sql = merge(&t("e"), &t("s"), "_row_id", &["ts".into()], Some(&all_null));
        assert!(sql.contains("S.`_row_id` AND T.`ts` IS NULL WHEN"), "{sql}");
        assert_eq!(
            bounds_query(&t("s"), "ts"),
            "SELECT CAST(MIN(`ts`) AS STRING) AS lo, CAST(MAX(`ts`) AS STRING) AS hi FROM \
             `my-proj.bi.s`"
        );
    }
}

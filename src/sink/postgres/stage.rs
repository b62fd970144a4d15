//! The pieces of one object's transaction that are plain data and SQL: a staging table per
//! target table, its rows as COPY text, and the statements that move them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::columns::{self, quote_ident, Table, MAX_IDENTIFIER_BYTES};
use super::{convert, AutoCreate, Shared};

/// One target table an object writes to, and its temporary staging table.
pub(super) struct Staging {
    /// The target's name in the schema.
    pub name: String,
    pub table: Arc<Table>,
    /// `frs_stage_N`.
    pub temp: String,
    /// Whether `temp` exists in the transaction yet.
    pub created: bool,
    /// COPY lines not sent yet, in `table`'s column order.
    pub buf: Vec<u8>,
}

impl Staging {
    pub fn create_sql(&self) -> String {
        let defs: Vec<String> = self
            .table
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.type_name))
            .collect();
        format!(
            "CREATE TEMP TABLE {} ({}) ON COMMIT DROP",
            self.temp,
            defs.join(", ")
        )
    }

    pub fn copy_sql(&self) -> String {
        format!(
            "COPY pg_temp.{} ({}) FROM STDIN",
            self.temp,
            column_list(&self.table)
        )
    }

    /// Straight into the target (the direct path, [`super::direct`]).
    pub fn copy_target_sql(&self, shared: &Shared) -> String {
        format!(
            "COPY {} ({}) FROM STDIN",
            shared.target.qualified_table(&self.name),
            column_list(&self.table)
        )
    }

    /// Staging → target: rows whose ID the table has are left out.
    pub fn insert_sql(&self, shared: &Shared) -> String {
        format!(
            "{} ON CONFLICT ({}) DO NOTHING",
            insert_select(shared, &self.name, &self.table, &self.temp),
            conflict_list(&self.table)
        )
    }
}

/// `INSERT INTO name (…) SELECT … FROM pg_temp.temp s`: a missing value takes the column's
/// default.
pub(super) fn insert_select(shared: &Shared, name: &str, table: &Table, temp: &str) -> String {
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
        "INSERT INTO {} ({}) SELECT {} FROM pg_temp.{temp} s",
        shared.target.qualified_table(name),
        column_list(table),
        exprs.join(", "),
    )
}

/// The dedup's conflict target: the table's row-ID key.
pub(super) fn conflict_list(table: &Table) -> String {
    table
        .conflict
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row as a COPY text line, every value checked; the error names the field or column.
pub(super) fn encode_line(table: &Table, row: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let fields: HashMap<String, &RawValue> =
        serde_json::from_slice(row).map_err(|e| format!("the row is not a JSON object: {e}"))?;
    for name in fields.keys() {
        if table.index(name).is_none() {
            if name.len() > MAX_IDENTIFIER_BYTES {
                return Err(too_long("field", name));
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

pub(super) fn too_long(what: &str, name: &str) -> String {
    format!(
        "{what} `{name}` is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifier \
         limit, so no table or column can be named by it"
    )
}

/// `--create-table auto`: table `name` from the first row it gets, its row ID the primary
/// key. A field name PostgreSQL would truncate refuses the row (`Err`), which then creates
/// nothing.
pub(super) fn create_table_ddl(
    shared: &Shared,
    auto: &AutoCreate,
    name: &str,
    row: &[u8],
) -> Result<String, String> {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(row).map_err(|e| format!("the row is not a JSON object: {e}"))?;
    if let Some(long) = fields.keys().find(|k| k.len() > MAX_IDENTIFIER_BYTES) {
        return Err(too_long("field", long));
    }
    let id = &shared.settings.row_id_column;
    let by = auto.partition_by.as_deref().filter(|b| *b != id.as_str());
    let mut defs = vec![format!("{} text NOT NULL", quote_ident(id))];
    if let Some(by) = by {
        // Whether or not the first row has it: every row needs it (NOT NULL, in the key).
        defs.push(format!("{} timestamptz NOT NULL", quote_ident(by)));
    }
    for (field, value) in &fields {
        if field == id || Some(field.as_str()) == by {
            continue;
        }
        let ty = match field.as_str() {
            "_record_ordinal" => "bigint",
            "_ingested_at" => "timestamptz",
            "_source_uri" => "text",
            n if Some(n) == auto.payload_column.as_deref() => "jsonb",
            _ => columns::inferred_type(value),
        };
        defs.push(format!("{} {ty}", quote_ident(field)));
    }
    let layout = match by {
        Some(by) => {
            defs.push(format!(
                "PRIMARY KEY ({}, {})",
                quote_ident(id),
                quote_ident(by)
            ));
            format!(" PARTITION BY RANGE ({})", quote_ident(by))
        }
        None => {
            defs.push(format!("PRIMARY KEY ({})", quote_ident(id)));
            String::new()
        }
    };
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} ({}){layout}",
        shared.target.qualified_table(name),
        defs.join(", ")
    ))
}

/// `--schema-evolution add-columns`: `ADD COLUMN` clauses for the row's fields `table` lacks.
pub(super) fn new_columns(table: &Table, row: &[u8]) -> Vec<String> {
    let Ok(fields) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(row)
    else {
        return Vec::new(); // refused by encode_line, with its reason
    };
    fields
        .iter()
        .filter(|(k, _)| table.index(k).is_none() && k.len() <= MAX_IDENTIFIER_BYTES)
        .map(|(k, v)| {
            format!(
                "ADD COLUMN IF NOT EXISTS {} {}",
                quote_ident(k),
                columns::inferred_type(v)
            )
        })
        .collect()
}

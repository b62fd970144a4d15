//! The target table's columns as the catalog has them, and what each takes from JSON.
//!
//! Read from `pg_attribute` rather than assumed, so an existing table with typed columns is
//! filled as it is (docs/src/sinks/postgres.md). Generated and identity columns are left out (the
//! server fills them); a column with a default takes it when the record has no value for it.

use tokio_postgres::Client;

/// What JSON a column takes, from its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `text`, `varchar(n)`, `char(n)`: strings as they are; other values as their JSON text.
    Text {
        max_chars: Option<usize>,
    },
    /// `smallint`, `integer`, `bigint`.
    Int {
        bits: u8,
    },
    /// `real`, `double precision`.
    Float {
        bits: u8,
    },
    /// `numeric` / `numeric(p, s)`.
    Numeric {
        precision: Option<u32>,
        scale: i32,
    },
    Bool,
    /// `timestamptz` / `timestamp`: RFC 3339 strings or epoch seconds.
    Timestamp {
        with_zone: bool,
    },
    /// `json` / `jsonb`: any value.
    Json,
    /// An array of the element kind: a JSON array.
    Array(Box<Kind>),
    /// A type this sink does not convert to: a non-null value for it is a record error.
    Unsupported,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// As `format_type` writes it, for messages.
    pub type_name: String,
    pub kind: Kind,
    /// NOT NULL without a default: a missing value is a record error, not an aborted COPY.
    pub not_null: bool,
}

/// A column's default expression, applied when the record has no value for it.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<Column>,
    /// Per column: its default expression (`pg_get_expr`), if any.
    pub defaults: Vec<Option<String>>,
    /// The unique key the dedup's `ON CONFLICT` names: the row ID, or the row ID and the
    /// partition key (filled by the sink from the table's indexes).
    pub conflict: Vec<String>,
    /// The partition key's columns; empty when the table is not partitioned.
    pub partition_key: Vec<String>,
}

impl Table {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// The table's writable columns, or `None` when it does not exist.
pub async fn load(
    client: &Client,
    qualified: &str,
) -> Result<Option<Table>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, \
                    a.attnotnull, a.atttypmod, coalesce(et.typname::text, ''), \
                    pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attgenerated = '' AND a.attidentity = '' \
             ORDER BY a.attnum",
            &[&qualified],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut table = Table {
        columns: Vec::new(),
        defaults: Vec::new(),
        conflict: Vec::new(),
        partition_key: Vec::new(),
    };
    for r in rows {
        let typname: String = r.get(2);
        let typmod: i32 = r.get(4);
        let elem: String = r.get(5);
        let default: Option<String> = r.get(6);
        let kind = if elem.is_empty() {
            kind(&typname, typmod)
        } else {
            match kind(&elem, typmod) {
                Kind::Unsupported => Kind::Unsupported,
                k => Kind::Array(Box::new(k)),
            }
        };
        let not_null: bool = r.get(3);
        table.columns.push(Column {
            name: r.get(0),
            type_name: r.get(1),
            kind,
            not_null: not_null && default.is_none(),
        });
        table.defaults.push(default);
    }
    Ok(Some(table))
}

fn kind(typname: &str, typmod: i32) -> Kind {
    let modifier = (typmod >= 4).then(|| (typmod - 4) as u32);
    match typname {
        "text" | "name" | "citext" => Kind::Text { max_chars: None },
        "varchar" | "bpchar" => Kind::Text {
            max_chars: modifier.map(|m| m as usize),
        },
        "int2" => Kind::Int { bits: 16 },
        "int4" => Kind::Int { bits: 32 },
        "int8" => Kind::Int { bits: 64 },
        "float4" => Kind::Float { bits: 32 },
        "float8" => Kind::Float { bits: 64 },
        "numeric" => Kind::Numeric {
            precision: modifier.map(|m| (m >> 16) & 0xffff),
            // PostgreSQL 15 allows negative scales: the low 16 bits, signed.
            scale: modifier
                .map(|m| (m & 0xffff) as u16 as i16 as i32)
                .unwrap_or(0),
        },
        "bool" => Kind::Bool,
        "timestamptz" => Kind::Timestamp { with_zone: true },
        "timestamp" => Kind::Timestamp { with_zone: false },
        "json" | "jsonb" => Kind::Json,
        _ => Kind::Unsupported,
    }
}

/// `"name"` with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1): a longer name would
/// silently become another.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The type `--create-table auto` gives a column, from the first value seen for it.
pub fn inferred_type(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "bigint",
        Value::Number(_) => "double precision",
        Value::String(_) | Value::Null => "text",
        Value::Array(_) | Value::Object(_) => "jsonb",
    }
}

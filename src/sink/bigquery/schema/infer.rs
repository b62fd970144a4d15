//! Which columns a record needs that a table lacks, and of what type — the inference behind
//! schema evolution (issue 18, `--schema-evolution add-columns`).
//!
//! Types come from the JSON values alone: a string is STRING (RFC 3339-looking strings too:
//! guessing TIMESTAMP would turn the next record's free text into a type conflict), an integer
//! INT64, any other number FLOAT64, a bool BOOL, an object a RECORD of its fields, an array a
//! REPEATED column of its elements' type. A null, an empty array or an empty object says
//! nothing: the column waits for a record with a value. Existing columns are never changed;
//! a value whose type an existing column cannot take is a [`Conflict`] naming the column path
//! and both types, which the caller turns into a record error.

use serde_json::{json, Map, Value};

/// A column to add, in BigQuery's REST `TableFieldSchema` shape (`name`, `type`, `mode`,
/// `fields`), always NULLABLE or REPEATED.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// `STRING`, `INTEGER`, `FLOAT`, `BOOLEAN` or `RECORD` (the REST names).
    pub kind: &'static str,
    pub repeated: bool,
    pub fields: Vec<Column>,
}

impl Column {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.kind,
            "mode": if self.repeated { "REPEATED" } else { "NULLABLE" },
        });
        if self.kind == "RECORD" {
            v["fields"] = Value::Array(self.fields.iter().map(Column::to_json).collect());
        }
        v
    }
}

/// Where a column must be added: `path` is empty for a top-level column, else the RECORD
/// columns leading to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Addition {
    pub path: Vec<String>,
    pub column: Column,
}

impl Addition {
    /// `a.b.c`.
    pub fn dotted(&self) -> String {
        let mut p = self.path.join(".");
        if !p.is_empty() {
            p.push('.');
        }
        p.push_str(&self.column.name);
        p
    }
}

/// A value an existing column cannot hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column `{path}` is {column_type}, but the record has {value_type} there")]
pub struct Conflict {
    pub path: String,
    pub column_type: String,
    pub value_type: String,
}

/// The type a value asks for; `None` for null and empty containers (no evidence).
fn kind_of(v: &Value) -> Option<(&'static str, bool)> {
    match v {
        Value::Null => None,
        Value::Bool(_) => Some(("BOOLEAN", false)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(("INTEGER", false)),
        Value::Number(_) => Some(("FLOAT", false)),
        Value::String(_) => Some(("STRING", false)),
        Value::Object(m) if m.is_empty() => None,
        Value::Object(_) => Some(("RECORD", false)),
        Value::Array(items) => {
            let mut kinds = items.iter().filter_map(kind_of);
            let first = kinds.next()?;
            if first.1 {
                // An array of arrays has no BigQuery column type.
                return Some(("ARRAY", true));
            }
            // `[1, 2.5]` is a FLOAT64 array: typing it by its first element would refuse the
            // very record it was inferred from. (Other mixtures are the encoder's to refuse.)
            let mut kind = first.0;
            for (k, nested) in kinds {
                if nested {
                    return Some(("ARRAY", true));
                }
                if (kind, k) == ("INTEGER", "FLOAT") {
                    kind = "FLOAT";
                }
            }
            Some((kind, true))
        }
    }
}

fn value_type(v: &Value) -> String {
    match kind_of(v) {
        Some(("ARRAY", _)) => "an array of arrays".into(),
        Some((k, true)) => format!("an array of {k}"),
        Some((k, false)) => k.into(),
        None => "null".into(),
    }
}

/// Whether a column of `column` type (REST or standard SQL name) takes `item`, whose type is
/// `value`, as the encoders convert on write: an integer fits a FLOAT64 column, a numeric
/// string an INT64 one, JSON takes anything; the format of strings for dates and times is the
/// encoder's to check.
fn accepts(column: &str, value: &str, item: &Value) -> bool {
    let text = item.as_str().unwrap_or_default();
    match (column, value) {
        ("INTEGER" | "INT64", "STRING") => return text.trim().parse::<i64>().is_ok(),
        ("FLOAT" | "FLOAT64", "STRING") => {
            return text.trim().parse::<f64>().is_ok()
                || ["NaN", "Infinity", "-Infinity"].contains(&text)
        }
        ("BOOLEAN" | "BOOL", "STRING") => {
            return text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false")
        }
        _ => {}
    }
    let column = match column {
        "INT64" => "INTEGER",
        "FLOAT64" => "FLOAT",
        "BOOL" => "BOOLEAN",
        "STRUCT" => "RECORD",
        c => c,
    };
    match (column, value) {
        (c, v) if c == v => true,
        ("JSON", _) => true,
        ("FLOAT" | "NUMERIC" | "BIGNUMERIC", "INTEGER") => true,
        // Strings are how JSON carries these; their format is checked by the encoder.
        (
            "TIMESTAMP" | "DATE" | "DATETIME" | "TIME" | "NUMERIC" | "BIGNUMERIC" | "BYTES"
            | "GEOGRAPHY" | "INTEGER" | "FLOAT" | "BOOLEAN",
            "STRING",
        ) => true,
        // Epoch seconds.
        ("TIMESTAMP", "INTEGER" | "FLOAT") => true,
        ("NUMERIC" | "BIGNUMERIC", "FLOAT") => true,
        _ => false,
    }
}

/// The column a new field needs, or `None` when its value gives no type yet.
pub fn new_column(name: &str, v: &Value) -> Option<Column> {
    let (kind, repeated) = kind_of(v)?;
    if kind == "ARRAY" {
        return None;
    }
    let fields = if kind == "RECORD" {
        let sample: Vec<&Map<String, Value>> = match v {
            Value::Object(m) => vec![m],
            Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
            _ => Vec::new(),
        };
        let mut fields: Vec<Column> = Vec::new();
        for m in sample {
            for (k, v) in m {
                let Some(column) = new_column(k, v) else {
                    continue;
                };
                match fields.iter_mut().find(|f| f.name.eq_ignore_ascii_case(k)) {
                    // Seen in an earlier element of the array: its sub-fields are merged, at
                    // every depth (`[{"a":{"x":1}},{"a":{"y":"two"}}]` needs a.x and a.y).
                    Some(existing) => merge_column(existing, column),
                    None => fields.push(column),
                }
            }
        }
        if fields.is_empty() {
            return None;
        }
        fields
    } else {
        Vec::new()
    };
    Some(Column {
        name: name.to_string(),
        kind,
        repeated,
        fields,
    })
}

/// Widens `into` with what `other` (the same field, seen in another array element) adds:
/// a RECORD's sub-fields merged, an INT64 that meets a float made FLOAT64.
fn merge_column(into: &mut Column, other: Column) {
    if (into.kind, other.kind) == ("INTEGER", "FLOAT") {
        into.kind = "FLOAT";
    }
    if into.kind == "RECORD" && other.kind == "RECORD" {
        for sub in other.fields {
            match into
                .fields
                .iter_mut()
                .find(|f| f.name.eq_ignore_ascii_case(&sub.name))
            {
                Some(existing) => merge_column(existing, sub),
                None => into.fields.push(sub),
            }
        }
    }
}

/// Why BigQuery (or the Storage Write encoder, whose protobuf field names follow the same
/// rule) cannot take `name` as a column, or `None`. Flexible column names (`a-b`, `naïve`)
/// are left out on purpose: the Storage Write encoder cannot name them, and a column once
/// added cannot be removed, so adding one would make the table unwritable there for good.
pub fn column_name_problem(name: &str) -> Option<&'static str> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(
            "a column name takes letters, digits and underscores, not starting with a digit",
        );
    }
    if name.len() > 300 {
        return Some("a column name has at most 300 characters");
    }
    let lower = name.to_ascii_lowercase();
    let reserved = [
        "_table_",
        "_file_",
        "_partition",
        "_row_timestamp",
        "__root__",
        "_colon_",
    ];
    if reserved.iter().any(|r| lower.starts_with(r)) {
        return Some("the name starts with a prefix BigQuery reserves");
    }
    None
}

/// The first column in `a` (at any depth) whose name BigQuery cannot take, as a record error.
pub fn check_names(a: &Addition) -> Result<(), String> {
    fn walk(prefix: &str, c: &Column) -> Result<(), String> {
        let path = if prefix.is_empty() {
            c.name.clone()
        } else {
            format!("{prefix}.{}", c.name)
        };
        if let Some(why) = column_name_problem(&c.name) {
            return Err(format!("field `{path}` cannot become a column: {why}"));
        }
        c.fields.iter().try_for_each(|f| walk(&path, f))
    }
    walk(&a.path.join("."), &a.column)
}

/// What `record` (a JSON object) needs added to a table of `fields` (REST `schema.fields`),
/// in key order; or the first conflict with an existing column.
pub fn additions(fields: &[Value], record: &Value) -> Result<Vec<Addition>, Conflict> {
    let mut out = Vec::new();
    if let Value::Object(m) = record {
        walk(fields, m, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

fn walk(
    fields: &[Value],
    record: &Map<String, Value>,
    path: &mut Vec<String>,
    out: &mut Vec<Addition>,
) -> Result<(), Conflict> {
    for (key, value) in record {
        let existing = fields.iter().find(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(key))
        });
        let Some(field) = existing else {
            // Two spellings of one new name in one record: the first wins, as keys match
            // case-insensitively.
            let taken = out
                .iter()
                .any(|a: &Addition| a.path == *path && a.column.name.eq_ignore_ascii_case(key));
            if !taken {
                if let Some(column) = new_column(key, value) {
                    out.push(Addition {
                        path: path.clone(),
                        column,
                    });
                }
            }
            continue;
        };
        let column_type = field["type"].as_str().unwrap_or("STRING");
        let repeated = field["mode"].as_str() == Some("REPEATED");
        let dotted = {
            let mut p = path.join(".");
            if !p.is_empty() {
                p.push('.');
            }
            p.push_str(key);
            p
        };
        let conflict = |value: &Value| Conflict {
            path: dotted.clone(),
            column_type: if repeated {
                format!("REPEATED {column_type}")
            } else {
                column_type.to_string()
            },
            value_type: value_type(value),
        };
        // The values to check against the column's element type.
        let items: Vec<&Value> = match (repeated, value) {
            (_, Value::Null) => continue,
            (true, Value::Array(items)) => items.iter().collect(),
            (true, _) | (false, Value::Array(_)) if column_type != "JSON" => {
                return Err(conflict(value))
            }
            (_, v) => vec![v],
        };
        for item in items {
            let Some((kind, _)) = kind_of(item) else {
                continue;
            };
            if !accepts(column_type, kind, item) {
                return Err(conflict(item));
            }
            if let (Value::Object(inner), "RECORD" | "STRUCT") = (item, column_type) {
                let sub = field["fields"].as_array().cloned().unwrap_or_default();
                path.push(field["name"].as_str().unwrap_or(key).to_string());
                let r = walk(&sub, inner, path, out);
                path.pop();
                r?;
            }
        }
    }
    Ok(())
}

fn find<'a>(fields: &'a [Value], key: &str) -> Option<&'a Value> {
    fields.iter().find(|f| {
        f["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(key))
    })
}

/// Whether a value is null, `[]`, `{}` or containers of only those: nothing a column would
/// hold (the encoder's `carries_no_data`, on a parsed value).
pub fn carries_no_data(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.iter().all(carries_no_data),
        Value::Object(m) => m.values().all(carries_no_data),
        _ => false,
    }
}

/// Removes from `record` the keys `fields` has no column for whose values carry no data (at
/// every RECORD level), as the Storage Write encoder skips them; `true` if any was removed.
/// insertAll refuses such keys ("no such field"), and waiting for a column that nothing
/// gives a type to would never end.
pub fn strip_empty_unknown(fields: &[Value], record: &mut Value) -> bool {
    let Value::Object(m) = record else {
        return false;
    };
    let before = m.len();
    m.retain(|k, v| find(fields, k).is_some() || !carries_no_data(v));
    let mut changed = m.len() != before;
    for (k, v) in m.iter_mut() {
        let Some(field) = find(fields, k) else {
            continue;
        };
        let sub = field["fields"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if sub.is_empty() {
            continue;
        }
        match v {
            Value::Object(_) => changed |= strip_empty_unknown(sub, v),
            Value::Array(items) => {
                for item in items {
                    changed |= strip_empty_unknown(sub, item);
                }
            }
            _ => {}
        }
    }
    changed
}

/// The path of the first key in `record` that `fields` has no column for, at any RECORD
/// level (`None` when every key has one).
pub fn first_unknown(fields: &[Value], record: &Value) -> Option<String> {
    let Value::Object(m) = record else {
        return None;
    };
    for (k, v) in m {
        let Some(field) = find(fields, k) else {
            return Some(k.clone());
        };
        let sub = field["fields"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if sub.is_empty() {
            continue;
        }
        let items: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for item in items {
            if let Some(p) = first_unknown(sub, item) {
                return Some(format!("{k}.{p}"));
            }
        }
    }
    None
}

/// `fields` with `additions` applied (REST shape); existing columns untouched, additions that
/// are already there skipped — what a patch sends after re-reading the table.
pub fn merged(fields: &[Value], additions: &[Addition]) -> Vec<Value> {
    let mut fields = fields.to_vec();
    for a in additions {
        add_at(&mut fields, &a.path, &a.column);
    }
    fields
}

fn add_at(fields: &mut Vec<Value>, path: &[String], column: &Column) {
    let Some((head, rest)) = path.split_first() else {
        let exists = fields.iter().any(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&column.name))
        });
        if !exists {
            fields.push(column.to_json());
        }
        return;
    };
    let Some(parent) = fields.iter_mut().find(|f| {
        f["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(head))
    }) else {
        return;
    };
    if !parent["fields"].is_array() {
        parent["fields"] = json!([]);
    }
    if let Some(sub) = parent["fields"].as_array_mut() {
        add_at(sub, rest, column);
    }
}

#[cfg(test)]
mod tests;

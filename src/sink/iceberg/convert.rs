//! JSON rows → values the table's Iceberg columns hold, checked one by one.
//!
//! Each row is checked against the table's schema *before* it joins a data file: one value a
//! column cannot hold would fail the Arrow conversion of a whole chunk of rows, and with it the
//! object. Here it becomes an error naming the column, for the record alone (the row contract,
//! docs/src/rows.md). What comes out is a JSON object whose every value already has the form
//! the Arrow JSON decoder takes for the column's Arrow type (timestamps as integer
//! microseconds, dates as days, decimals as strings), so decoding the checked rows cannot fail
//! on a value.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// A column's type, as this sink writes it (from the table's Iceberg schema).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Decimal {
        precision: u32,
        scale: u32,
    },
    Date,
    Time,
    /// Microseconds (`ns`: nanoseconds) since the epoch; `tz`: `timestamptz`.
    Timestamp {
        tz: bool,
        ns: bool,
    },
    String,
    Struct(Vec<Field>),
    List(Box<Field>),
    /// String keys only (JSON object keys are strings).
    Map(Box<Field>),
}

/// A column or nested field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub required: bool,
    pub kind: Kind,
}

impl Kind {
    /// The Iceberg name of the type, for messages.
    pub fn name(&self) -> String {
        match self {
            Kind::Boolean => "boolean".into(),
            Kind::Int => "int".into(),
            Kind::Long => "long".into(),
            Kind::Float => "float".into(),
            Kind::Double => "double".into(),
            Kind::Decimal { precision, scale } => format!("decimal({precision}, {scale})"),
            Kind::Date => "date".into(),
            Kind::Time => "time".into(),
            Kind::Timestamp { tz, ns } => format!(
                "timestamp{}{}",
                if *tz { "tz" } else { "" },
                if *ns { "_ns" } else { "" }
            ),
            Kind::String => "string".into(),
            Kind::Struct(_) => "struct".into(),
            Kind::List(_) => "list".into(),
            Kind::Map(_) => "map".into(),
        }
    }
}

/// One row (a single-line JSON object) → the checked row, or the first error, naming the
/// column. Fields the table has no column for are errors too (nothing is dropped silently).
pub fn row(columns: &[Field], text: &[u8]) -> Result<Value, String> {
    let fields: std::collections::HashMap<&str, &RawValue> =
        serde_json::from_slice(text).map_err(|e| format!("the row is not a JSON object: {e}"))?;
    if let Some(name) = fields
        .keys()
        .filter(|k| !columns.iter().any(|c| c.name == **k))
        .min()
    {
        return Err(format!("field `{name}` has no column in the table"));
    }
    let mut out = Map::new();
    for c in columns {
        let raw = fields.get(c.name.as_str()).copied();
        if let Some(v) = top_value(c, raw)? {
            out.insert(c.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// A top-level column from its raw text: a string column takes any JSON value (an object or
/// array as its text, however deep), other kinds are parsed.
fn top_value(c: &Field, raw: Option<&RawValue>) -> Result<Option<Value>, String> {
    let text = raw.map(RawValue::get).unwrap_or("null");
    if text == "null" {
        return null(c, &c.name);
    }
    if c.kind == Kind::String {
        return string(&c.name, text).map(|s| Some(Value::String(s)));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // Valid JSON serde_json cannot hold: a number beyond f64 (`1e400`), or nesting deeper
        // than its limit.
        if text.starts_with(|ch: char| ch == '-' || ch.is_ascii_digit()) {
            bad(&c.name, &c.kind, &format!("{text} is out of range"))
        } else {
            bad(&c.name, &c.kind, &e)
        }
    })?;
    check(&c.name, c, &value).map(Some)
}

fn null(f: &Field, path: &str) -> Result<Option<Value>, String> {
    if f.required {
        Err(format!(
            "column `{path}` is required and the record has no value for it"
        ))
    } else {
        Ok(None)
    }
}

fn bad(path: &str, kind: &Kind, what: &dyn std::fmt::Display) -> String {
    format!("column `{path}` ({}): {what}", kind.name())
}

/// A JSON value's text as a string column holds it: strings unquoted (a lone surrogate escape
/// is refused: no UTF-8 string holds it), anything else as its JSON text.
fn string(path: &str, text: &str) -> Result<String, String> {
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|e| bad(path, &Kind::String, &e))
    } else {
        Ok(text.to_string())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A parsed value checked against `f` (at `path`, e.g. `a.b`).
fn check(path: &str, f: &Field, v: &Value) -> Result<Value, String> {
    let kind = &f.kind;
    let expected = |what: &str| bad(path, kind, &format!("expected {what}, got {}", kind_of(v)));
    Ok(match kind {
        Kind::Boolean => match v {
            Value::Bool(b) => Value::Bool(*b),
            _ => return Err(expected("true or false")),
        },
        Kind::Int | Kind::Long => {
            let Value::Number(n) = v else {
                return Err(expected("an integer"));
            };
            let i = n
                .as_i64()
                .ok_or_else(|| bad(path, kind, &format!("{n} is not an integer in range")))?;
            if *kind == Kind::Int && i32::try_from(i).is_err() {
                return Err(bad(path, kind, &format!("{i} is out of range")));
            }
            Value::Number(i.into())
        }
        Kind::Float | Kind::Double => {
            let Value::Number(n) = v else {
                return Err(expected("a number"));
            };
            let x = n.as_f64().filter(|x| x.is_finite());
            let x = match (x, kind) {
                (Some(x), Kind::Float) if (x as f32).is_finite() => x,
                (Some(x), Kind::Double) => x,
                _ => return Err(bad(path, kind, &format!("{n} is out of range"))),
            };
            Value::Number(Number::from_f64(x).unwrap_or_else(|| 0.into()))
        }
        Kind::Decimal { precision, scale } => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(expected("a number or a numeric string")),
            };
            Value::String(decimal(&text, *precision, *scale).map_err(|e| bad(path, kind, &e))?)
        }
        Kind::String => match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
        Kind::Date => {
            let days = match v {
                Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|e| bad(path, kind, &format!("`{s}`: {e} (expected YYYY-MM-DD)")))?
                    .signed_duration_since(NaiveDate::default())
                    .num_days(),
                Value::Number(n) => n
                    .as_i64()
                    .filter(|d| i32::try_from(*d).is_ok())
                    .ok_or_else(|| bad(path, kind, &format!("{n} is not a day number")))?,
                _ => return Err(expected("a date string or a day number")),
            };
            Value::Number(days.into())
        }
        Kind::Time => {
            let Value::String(s) = v else {
                return Err(expected("a time string (HH:MM:SS[.ffffff])"));
            };
            let t = NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                .map_err(|e| bad(path, kind, &format!("`{s}`: {e}")))?;
            let micros =
                t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() as i64 / 1_000);
            Value::Number(micros.into())
        }
        Kind::Timestamp { tz, ns } => {
            let nanos = timestamp_nanos(v, *tz).map_err(|e| bad(path, kind, &e))?;
            Value::Number(if *ns { nanos } else { nanos.div_euclid(1_000) }.into())
        }
        Kind::Struct(fields) => {
            let Value::Object(o) = v else {
                return Err(expected("an object"));
            };
            if let Some(k) = o.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
                return Err(format!("field `{path}.{k}` has no column in the table"));
            }
            let mut out = Map::new();
            for sub in fields {
                let sub_path = format!("{path}.{}", sub.name);
                match o.get(&sub.name).filter(|v| !v.is_null()) {
                    Some(x) => {
                        out.insert(sub.name.clone(), check(&sub_path, sub, x)?);
                    }
                    None => {
                        null(sub, &sub_path)?;
                    }
                }
            }
            Value::Object(out)
        }
        Kind::List(element) => {
            let Value::Array(items) = v else {
                return Err(expected("an array"));
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, x) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if x.is_null() {
                    null(element, &p)?;
                    out.push(Value::Null);
                } else {
                    out.push(check(&p, element, x)?);
                }
            }
            Value::Array(out)
        }
        Kind::Map(value) => {
            let Value::Object(o) = v else {
                return Err(expected("an object"));
            };
            let mut out = Map::new();
            for (k, x) in o {
                let p = format!("{path}.{k}");
                if x.is_null() {
                    null(value, &p)?;
                    out.insert(k.clone(), Value::Null);
                } else {
                    out.insert(k.clone(), check(&p, value, x)?);
                }
            }
            Value::Object(out)
        }
    })
}

/// Nanoseconds since the epoch from an RFC 3339 string (a `timestamp` column also takes one
/// without an offset, as wall time), or a number of seconds since the epoch (a fraction
/// allowed), as BigQuery takes them.
fn timestamp_nanos(v: &Value, tz: bool) -> Result<i64, String> {
    match v {
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return t
                    .timestamp_nanos_opt()
                    .ok_or_else(|| format!("`{s}` is out of range"));
            }
            if !tz {
                for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                    if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                        return t
                            .and_utc()
                            .timestamp_nanos_opt()
                            .ok_or_else(|| format!("`{s}` is out of range"));
                    }
                }
            }
            Err(format!(
                "`{s}` is not an RFC 3339 timestamp (e.g. 2026-12-07T15:04:05Z)"
            ))
        }
        Value::Number(n) => {
            if let Some(secs) = n.as_i64() {
                return secs
                    .checked_mul(1_000_000_000)
                    .ok_or_else(|| format!("{n} seconds is out of range"));
            }
            let x = n.as_f64().unwrap_or(f64::NAN);
            let nanos = (x * 1e9).round();
            if nanos.is_finite() && nanos.abs() < i64::MAX as f64 {
                Ok(nanos as i64)
            } else {
                Err(format!("{n} seconds is out of range"))
            }
        }
        other => Err(format!(
            "expected an RFC 3339 string or seconds since the epoch, got {}",
            kind_of(other)
        )),
    }
}

/// A decimal's text checked against `decimal(precision, scale)`: at most `scale` digits after
/// the point (no silent rounding) and `precision - scale` before it; written back plain.
fn decimal(text: &str, precision: u32, scale: u32) -> Result<String, String> {
    let invalid = || format!("`{text}` is not a decimal number");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    if digits.contains(['e', 'E']) {
        return Err(format!("`{text}`: write it without an exponent"));
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize {
        return Err(format!(
            "`{text}` has more than {scale} digits after the point"
        ));
    }
    let int = int.trim_start_matches('0');
    if int.len() > precision.saturating_sub(scale) as usize {
        return Err(format!(
            "`{text}` has more than {} digits before the point",
            precision.saturating_sub(scale)
        ));
    }
    let int = if int.is_empty() { "0" } else { int };
    Ok(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;

//! JSON values → PostgreSQL's COPY text format, checked against the column's type.
//!
//! Every value is converted and checked *before* it enters the COPY stream: one value the
//! server would refuse (a `\u0000` neither `text` nor `jsonb` holds, a number beyond the
//! column's range, a string too long for `varchar(n)`) would abort the whole COPY, and with it
//! the object. Here it becomes an error naming the column, for the record alone.

use std::fmt::Write as _;

use serde_json::value::RawValue;
use serde_json::Value;

use super::columns::{Column, Kind};

/// Appends `raw` (a JSON value, `None` for a missing field) as `column`'s COPY text field.
pub fn append(column: &Column, raw: Option<&RawValue>, out: &mut Vec<u8>) -> Result<(), String> {
    let text = raw.map(RawValue::get).unwrap_or("null");
    if text == "null" {
        if column.not_null {
            return Err(format!(
                "column `{}` is NOT NULL and the record has no value for it",
                column.name
            ));
        }
        out.extend_from_slice(b"\\N");
        return Ok(());
    }
    let value = scalar_text(column, &column.kind, text)?;
    escape_copy(&value, out);
    Ok(())
}

/// The value as PostgreSQL's input syntax for the type (unescaped for COPY yet).
fn scalar_text(column: &Column, kind: &Kind, text: &str) -> Result<String, String> {
    let name = &column.name;
    let bad = |what: &str| format!("column `{name}` ({}): {what}", column.type_name);
    match kind {
        Kind::Text { max_chars } => {
            let s = match serde_json::from_str::<Value>(text).map_err(|e| bad(&e.to_string()))? {
                Value::String(s) => s,
                // Numbers and booleans as written; objects and arrays as their JSON text.
                _ => text.to_string(),
            };
            check_text(&s).map_err(|e| bad(&e))?;
            if let Some(max) = max_chars {
                if s.chars().count() > *max {
                    return Err(bad(&format!("value longer than {max} characters")));
                }
            }
            Ok(s)
        }
        Kind::Int { bits } => {
            let n: i64 =
                match serde_json::from_str::<Value>(text).map_err(|e| bad(&e.to_string()))? {
                    Value::Number(n) => n
                        .as_i64()
                        .ok_or_else(|| bad(&format!("{text} is not an integer in range")))?,
                    _ => return Err(bad(&format!("expected an integer, got {}", kind_of(text)))),
                };
            let (min, max) = match bits {
                16 => (i16::MIN as i64, i16::MAX as i64),
                32 => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            if n < min || n > max {
                return Err(bad(&format!("{n} is out of range")));
            }
            Ok(n.to_string())
        }
        Kind::Float { bits } => {
            if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                return Err(bad(&format!("expected a number, got {}", kind_of(text))));
            }
            let ok = if *bits == 32 {
                text.parse::<f32>().is_ok_and(f32::is_finite)
            } else {
                text.parse::<f64>().is_ok_and(f64::is_finite)
            };
            if !ok {
                return Err(bad(&format!("{text} is out of range")));
            }
            Ok(text.to_string())
        }
        Kind::Numeric { precision, scale } => {
            if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                return Err(bad(&format!("expected a number, got {}", kind_of(text))));
            }
            check_numeric(text, *precision, *scale).map_err(|e| bad(&e))?;
            Ok(text.to_string())
        }
        Kind::Bool => match text {
            "true" | "false" => Ok(text.to_string()),
            _ => Err(bad(&format!(
                "expected true or false, got {}",
                kind_of(text)
            ))),
        },
        Kind::Timestamp { with_zone } => timestamp(text, *with_zone).map_err(|e| bad(&e)),
        // The value's own text goes in (PostgreSQL parses it): numbers keep every digit.
        Kind::Json => {
            check_json(text).map_err(|e| bad(&e))?;
            Ok(text.to_string())
        }
        Kind::Array(elem) => {
            let v: Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
            let Value::Array(items) = v else {
                return Err(bad(&format!("expected an array, got {}", kind_of(text))));
            };
            let mut lit = String::from("{");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    lit.push(',');
                }
                if item.is_null() {
                    lit.push_str("NULL");
                    continue;
                }
                if item.is_array() {
                    return Err(bad("nested arrays are not supported"));
                }
                let t = scalar_text(column, elem, &item.to_string())?;
                lit.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        lit.push('\\');
                    }
                    lit.push(c);
                }
                lit.push('"');
            }
            lit.push('}');
            Ok(lit)
        }
        Kind::Unsupported => Err(bad("this sink cannot fill columns of this type")),
    }
}

fn kind_of(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// Neither `text` nor `jsonb` can hold U+0000 (PostgreSQL: "cannot be converted to text").
/// (Lone surrogates never get here: the JSON parser refuses them.)
fn check_text(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err("a \\u0000 character, which PostgreSQL text cannot hold".into());
    }
    Ok(())
}

/// `jsonb`: well-formed JSON, no U+0000 and no lone surrogate in strings or keys (jsonb
/// refuses both), numbers within `numeric`'s range. A scan of the text, not a parse into a
/// tree: a parse would also round numbers beyond 64 bits.
fn check_json(text: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    let lone = || Err("a lone UTF-16 surrogate escape, which PostgreSQL jsonb refuses".to_string());
    let b = text.as_bytes();
    let (mut i, mut in_string, mut high) = (0, false, false);
    while i < b.len() {
        if !in_string {
            match b[i] {
                b'"' => in_string = true,
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < b.len()
                        && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        i += 1;
                    }
                    check_numeric(&text[start..i], None, 0)?;
                    continue;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        // Inside a string (the parse above vouches for its escapes being complete).
        let (unit, step) = match b[i] {
            b'\\' if b[i + 1] == b'u' => {
                let hex = &text[i + 2..i + 6];
                (u16::from_str_radix(hex, 16).ok(), 6)
            }
            b'\\' => (None, 2),
            b'"' => {
                in_string = false;
                (None, 1)
            }
            _ => (None, 1),
        };
        match unit {
            Some(0) => return check_text("\0"),
            Some(0xD800..=0xDBFF) if !high => high = true,
            Some(0xDC00..=0xDFFF) if high => high = false,
            Some(0xD800..=0xDFFF) => return lone(),
            _ if high => return lone(),
            _ => {}
        }
        i += step;
    }
    Ok(())
}

/// A JSON number's decimal digits (no leading or trailing zeros), the power of ten of its last
/// digit, and its display scale as PostgreSQL counts it (digits after the point, trailing zeros
/// included, less the exponent).
fn decimal(text: &str) -> Option<(bool, Vec<u8>, i64, i64)> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let dscale = (frac.len() as i64).checked_sub(exp)?.max(0);
    let mut exp = exp.checked_sub(frac.len() as i64)?;
    // Normalise: no leading zeros, no trailing zeros.
    let lead = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..lead);
    while digits.last() == Some(&0) {
        digits.pop();
        exp += 1;
    }
    Some((neg, digits, exp, dscale))
}

/// Whether `numeric(precision, scale)` (or plain `numeric`) takes the number: PostgreSQL
/// allows up to 131072 digits before the point and 16383 after it (as written: `1.50e-16382`
/// has 16384), and a typmod's precision bounds the digits left of the point once rounded to
/// `scale`.
fn check_numeric(text: &str, precision: Option<u32>, scale: i32) -> Result<(), String> {
    let (_, mut digits, mut exp, dscale) =
        decimal(text).ok_or_else(|| format!("{text} is not a number"))?;
    let beyond = || Err(format!("{text} is beyond PostgreSQL numeric's range"));
    if dscale > 16_383 {
        return beyond();
    }
    if digits.is_empty() {
        return Ok(()); // zero
    }
    let Some(p) = precision else {
        if digits.len() as i64 + exp > 131_072 {
            return beyond();
        }
        return Ok(());
    };
    // Round half away from zero to `scale` decimals, as PostgreSQL does.
    let keep = digits.len() as i64 + exp + scale as i64; // digits left after rounding
    if keep < 0 {
        return Ok(()); // rounds to zero
    }
    if (keep as usize) < digits.len() {
        let round_up = digits[keep as usize] >= 5;
        digits.truncate(keep as usize);
        exp = -(scale as i64);
        if round_up {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
    }
    let lead = digits.iter().take_while(|d| **d == 0).count();
    let int_digits = (digits.len() - lead) as i64 + exp;
    if int_digits > p as i64 - scale as i64 {
        return Err(format!("{text} does not fit numeric({p},{scale})"));
    }
    Ok(())
}

/// `timestamptz` / `timestamp` from an RFC 3339 string or epoch seconds (a number, fractions
/// allowed), written in UTC; years outside 1..=9999 are refused (PostgreSQL's own range is
/// wider, but not every client reads it back).
fn timestamp(text: &str, with_zone: bool) -> Result<String, String> {
    use chrono::{DateTime, Utc};
    let at: DateTime<Utc> = match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::String(s) => {
            check_text(&s)?;
            DateTime::parse_from_rfc3339(&s)
                .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp ({e})"))?
                .with_timezone(&Utc)
        }
        Value::Number(n) => {
            let secs = n
                .as_f64()
                .filter(|s| s.is_finite() && s.abs() < 253_402_300_800.0)
                .ok_or_else(|| format!("epoch seconds {n} out of range"))?;
            let whole = secs.floor();
            let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
            DateTime::from_timestamp(whole as i64, nanos)
                .ok_or_else(|| format!("epoch seconds {n} out of range"))?
        }
        _ => return Err(format!("expected a timestamp, got {}", kind_of(text))),
    };
    let year = chrono::Datelike::year(&at);
    if !(1..=9999).contains(&year) {
        return Err(format!("year {year} is out of range"));
    }
    let mut s = at.format("%Y-%m-%d %H:%M:%S%.f").to_string();
    if with_zone {
        let _ = write!(s, "+00");
    }
    Ok(s)
}

/// COPY text format: backslash, newline, carriage return and tab escaped; the caller writes
/// the field and row separators.
pub fn escape_copy(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: Kind) -> Column {
        Column {
            name: "c".into(),
            type_name: "t".into(),
            kind,
            not_null: false,
        }
    }

    fn conv(kind: Kind, json: &str) -> Result<String, String> {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        append(&col(kind), Some(&raw), &mut out).map(|_| String::from_utf8(out).unwrap())
    }

    #[test]
    fn values_a_column_cannot_hold_name_the_column() {
        assert!(conv(Kind::Int { bits: 32 }, "2147483648")
            .unwrap_err()
            .contains("column `c`"));
        assert_eq!(
            conv(Kind::Int { bits: 32 }, "2147483647").unwrap(),
            "2147483647"
        );
        assert!(conv(Kind::Text { max_chars: None }, r#""a\u0000b""#).is_err());
        assert!(conv(Kind::Json, r#"{"a":["x\u0000"]}"#).is_err());
        assert!(conv(Kind::Json, r#"{"k\u0000":1}"#).is_err());
        assert!(conv(Kind::Json, r#"["\ud800"]"#).is_err());
        assert!(conv(Kind::Json, r#"["\udc00x"]"#).is_err());
        assert!(conv(Kind::Json, r#"["\ud800\u0041"]"#).is_err());
        assert!(conv(Kind::Json, r#"["\ud83d\ude00 \\u0000 is text"]"#).is_ok());
        // Every digit kept; numeric's range, not f64's.
        assert_eq!(
            conv(
                Kind::Json,
                r#"{"big":123456789012345678901234567890,"e":1e400}"#
            )
            .unwrap(),
            r#"{"big":123456789012345678901234567890,"e":1e400}"#
        );
        assert!(conv(Kind::Json, r#"[1e200000]"#).is_err());
        assert!(conv(Kind::Float { bits: 64 }, "1e400").is_err());
        assert!(conv(Kind::Bool, "1").is_err());
        assert!(conv(Kind::Text { max_chars: Some(2) }, r#""abc""#).is_err());
    }

    #[test]
    fn numeric_typmods_round_then_bound() {
        let n = |p, s| Kind::Numeric {
            precision: Some(p),
            scale: s,
        };
        assert!(conv(n(4, 2), "99.99").is_ok());
        assert!(conv(n(4, 2), "99.995").is_err());
        assert!(conv(n(4, 2), "99.994").is_ok());
        assert!(conv(n(4, 2), "-0.001").is_ok());
        assert!(conv(n(4, 2), "1e2").is_err());
        assert!(conv(n(3, 0), "999.4").is_ok());
        let plain = Kind::Numeric {
            precision: None,
            scale: 0,
        };
        // Each bound as PostgreSQL 15 answered it on this machine.
        assert!(conv(plain.clone(), "1e131071").is_ok());
        assert!(conv(plain.clone(), "0.5e131072").is_ok());
        assert!(conv(plain.clone(), "1e131072").is_err());
        assert!(conv(plain.clone(), "1e-16383").is_ok());
        assert!(conv(plain.clone(), "1e-16384").is_err());
        assert!(conv(plain, "1.50e-16382").is_err());
    }

    #[test]
    fn timestamps_from_rfc3339_and_epoch_seconds() {
        let k = Kind::Timestamp { with_zone: true };
        assert_eq!(
            conv(k.clone(), r#""2024-05-01T12:00:00+02:00""#).unwrap(),
            "2024-05-01 10:00:00+00"
        );
        assert_eq!(
            conv(k.clone(), "1714557600.5").unwrap(),
            "2024-05-01 10:00:00.500+00"
        );
        assert!(conv(k, r#""yesterday""#).is_err());
    }

    #[test]
    fn copy_escapes_and_arrays() {
        assert_eq!(
            conv(Kind::Text { max_chars: None }, r#""a\tb\\c\nd""#).unwrap(),
            "a\\tb\\\\c\\nd"
        );
        let arr = Kind::Array(Box::new(Kind::Text { max_chars: None }));
        assert_eq!(
            conv(arr, r#"["x\"y", null, "z"]"#).unwrap(),
            r#"{"x\"y",NULL,"z"}"#.replace('\\', "\\\\")
        );
    }
}

//! One JSON scalar → the wire bytes of one column type, converted the way BigQuery's JSON
//! import would (INT64 from numeric strings, NUMERIC as its exact text, BYTES from base64,
//! FLOAT64 with NaN/±Infinity, ...). The field key is already written; this writes the payload.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};
use prost::encoding::encode_varint;

use super::datetime::{
    parse_date_only, parse_datetime, parse_time, parse_timestamp, put_datetime, put_time,
    MAX_MICROS, MIN_MICROS, TIMESTAMP_RANGE,
};
use super::walk::{Json, Value};
use super::Kind;

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn put_len(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn mismatch(expected: &str, kind: Kind, value: &Value) -> String {
    format!(
        "expected {expected} (the column is {}), found {}",
        kind.bigquery_name(),
        value.describe()
    )
}

fn invalid(value: &Value, kind: Kind, reason: &str) -> String {
    format!(
        "{} is not a valid {}: {reason}",
        value.shown(),
        kind.bigquery_name()
    )
}

/// Writes the payload of one scalar value (its key is already written).
pub(super) fn encode_scalar(kind: Kind, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match kind {
        Kind::String => match &value.json {
            Json::String(s) => put_len(out, s.as_bytes()),
            // BigQuery's JSON import stores numbers and booleans given for STRING columns as
            // their text, so the same rows load here as through insertAll or a load job.
            Json::Number | Json::Bool(_) => put_len(out, value.raw.as_bytes()),
            _ => return Err(mismatch("a string", kind, value)),
        },
        Kind::Geography => match &value.json {
            Json::String(s) => put_len(out, s.as_bytes()),
            // A GeoJSON geometry given as an object rather than as a string: its text is
            // GeoJSON, which BigQuery parses.
            Json::Object => put_len(out, value.raw.as_bytes()),
            _ => return Err(mismatch("WKT or GeoJSON text", kind, value)),
        },
        // The value's own JSON text, verbatim. Re-serialising through serde_json would turn
        // large or precise numbers into f64s, and unwrapping a JSON string would make BigQuery
        // read its content as JSON. That would change the value, or fail if the content is not
        // JSON. A string stays a JSON string.
        Kind::Json => put_len(out, value.raw.as_bytes()),
        Kind::Int64 => {
            let text: &str = match &value.json {
                Json::Number => value.raw,
                Json::String(s) => s,
                _ => return Err(mismatch("an integer", kind, value)),
            };
            let n = parse_int64(text).map_err(|reason| invalid(value, kind, reason))?;
            encode_varint(n as u64, out);
        }
        Kind::Float64 => {
            let x = match &value.json {
                Json::Number => parse_float64(value.raw),
                Json::String(s) => parse_float64(s),
                _ => return Err(mismatch("a number", kind, value)),
            }
            .map_err(|reason| invalid(value, kind, reason))?;
            out.extend_from_slice(&x.to_le_bytes());
        }
        Kind::Bool => {
            let b = match &value.json {
                Json::Bool(b) => *b,
                Json::String(s) if s.eq_ignore_ascii_case("true") => true,
                Json::String(s) if s.eq_ignore_ascii_case("false") => false,
                Json::String(_) => {
                    return Err(invalid(value, kind, "expected true or false"));
                }
                _ => return Err(mismatch("true or false", kind, value)),
            };
            out.push(u8::from(b));
        }
        Kind::Bytes => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("a base64 string", kind, value));
            };
            put_base64(s, out).map_err(|reason| invalid(value, kind, reason))?;
        }
        Kind::Timestamp => {
            let micros = match &value.json {
                Json::Number => seconds_to_micros(value.raw),
                Json::String(s) if parse_decimal(s).is_some() => seconds_to_micros(s),
                Json::String(s) => parse_timestamp(s),
                _ => return Err(mismatch("a timestamp string or epoch seconds", kind, value)),
            }
            .map_err(|reason| invalid(value, kind, reason))?;
            encode_varint(micros as u64, out);
        }
        Kind::Date => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("a YYYY-MM-DD string", kind, value));
            };
            let days = parse_date_only(s).map_err(|reason| invalid(value, kind, reason))?;
            // int32 is written sign-extended to 64 bits, as protobuf requires for negatives.
            encode_varint(i64::from(days) as u64, out);
        }
        Kind::DateTime => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("a YYYY-MM-DD HH:MM:SS string", kind, value));
            };
            let datetime = parse_datetime(s).map_err(|reason| invalid(value, kind, reason))?;
            put_datetime(datetime, out);
        }
        Kind::Time => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("an HH:MM:SS string", kind, value));
            };
            let time = parse_time(s).map_err(|reason| invalid(value, kind, reason))?;
            put_time(&time, out);
        }
        Kind::Numeric | Kind::BigNumeric => {
            let text: &str = match &value.json {
                // The number's exact text. serde_json is built without `arbitrary_precision`,
                // so going through its number type would round to f64.
                Json::Number => value.raw,
                Json::String(s) => s,
                _ => return Err(mismatch("a decimal number", kind, value)),
            };
            let decimal =
                parse_decimal(text).ok_or_else(|| invalid(value, kind, "not a decimal number"))?;
            // NUMERIC holds 29 integer digits. BIGNUMERIC's bound is about 5.79e38, checked here
            // to 39 digits. A valid value is never rejected, and a hopeless one does not fail
            // a whole AppendRows request.
            let limit = if kind == Kind::Numeric { 29 } else { 39 };
            if decimal.integer_digits() > limit {
                return Err(invalid(
                    value,
                    kind,
                    &format!("out of range (at most {limit} digits before the decimal point)"),
                ));
            }
            put_len(out, text.as_bytes());
        }
        Kind::Record => return Err("internal error: RECORD encoded as a scalar".into()),
    }
    Ok(())
}

fn put_base64(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    const REASON: &str = "expected standard base64 (A–Z, a–z, 0–9, +, /, optional = padding)";
    // The length prefix comes first, so the decoded length is computed up front and the
    // bytes are decoded straight into `out`.
    let unpadded = s.trim_end_matches('=');
    if s.len() - unpadded.len() > 2 {
        return Err(REASON);
    }
    let n = unpadded.len();
    let expected = match n % 4 {
        0 => n / 4 * 3,
        2 => n / 4 * 3 + 1,
        3 => n / 4 * 3 + 2,
        _ => return Err(REASON),
    };
    encode_varint(expected as u64, out);
    let start = out.len();
    BASE64.decode_vec(s, out).map_err(|_| REASON)?;
    if out.len() - start != expected {
        return Err(REASON);
    }
    Ok(())
}

/// A decimal number's parts, borrowed from its text: `[+-]digits[.digits][e[+-]digits]`.
/// Either digit run may be empty, but not both.
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    /// Saturates on absurd exponents; anything that large is out of range for every type.
    exp: i64,
}

fn parse_decimal(s: &str) -> Option<Decimal<'_>> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let int_end = digits(i);
    let int = s.get(i..int_end)?;
    i = int_end;
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        let frac_end = digits(i + 1);
        frac = s.get(i + 1..frac_end)?;
        i = frac_end;
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_end = digits(i);
        if exp_end == i {
            return None;
        }
        for &d in &b[i..exp_end] {
            exp = exp.saturating_mul(10).saturating_add(i64::from(d - b'0'));
        }
        if exp_negative {
            exp = -exp;
        }
        i = exp_end;
    }
    (i == b.len()).then_some(Decimal {
        negative,
        int,
        frac,
        exp,
    })
}

impl Decimal<'_> {
    /// |value| × 10^scale, truncated to an integer, and whether that was exact. `None` if it
    /// does not fit in a u128.
    fn scaled(&self, scale: u32) -> Option<(u128, bool)> {
        let frac_len = i64::try_from(self.frac.len()).unwrap_or(i64::MAX);
        let shift = self
            .exp
            .saturating_add(i64::from(scale))
            .saturating_sub(frac_len);
        let total = self.int.len() + self.frac.len();
        let keep = if shift >= 0 {
            total
        } else {
            total.saturating_sub(usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX))
        };
        let mut value: u128 = 0;
        let mut exact = true;
        for (i, b) in self.int.bytes().chain(self.frac.bytes()).enumerate() {
            let d = u128::from(b - b'0');
            if i < keep {
                value = value.checked_mul(10)?.checked_add(d)?;
            } else if d != 0 {
                exact = false;
            }
        }
        if shift > 0 && value != 0 {
            let power = 10u128.checked_pow(u32::try_from(shift).ok()?)?;
            value = value.checked_mul(power)?;
        }
        Some((value, exact))
    }

    /// How many digits the value has before the decimal point (0 or less below 1).
    fn integer_digits(&self) -> i64 {
        let digits = self.int.bytes().chain(self.frac.bytes());
        let total = self.int.len() + self.frac.len();
        let Some(first) = digits.into_iter().position(|b| b != b'0') else {
            return 0;
        };
        let significant = i64::try_from(total - first).unwrap_or(i64::MAX);
        let frac_len = i64::try_from(self.frac.len()).unwrap_or(i64::MAX);
        significant
            .saturating_add(self.exp)
            .saturating_sub(frac_len)
    }
}

/// An integer, possibly written as `1.0` or `1e3`. Such numbers are accepted when their value
/// is whole, as BigQuery accepts them. Parsed exactly, without going through f64, so
/// `9007199254740993` stays itself.
fn parse_int64(text: &str) -> Result<i64, &'static str> {
    const RANGE: &str = "out of range (INT64 holds -9223372036854775808 to 9223372036854775807)";
    let decimal = parse_decimal(text).ok_or("not an integer")?;
    let (magnitude, exact) = decimal.scaled(0).ok_or(RANGE)?;
    if !exact {
        return Err("has a fractional part");
    }
    if decimal.negative {
        if magnitude <= 1u128 << 63 {
            Ok((magnitude as i128).wrapping_neg() as i64)
        } else {
            Err(RANGE)
        }
    } else {
        i64::try_from(magnitude).map_err(|_| RANGE)
    }
}

/// A number, or one of the spellings BigQuery's JSON import uses for non-finite values.
fn parse_float64(text: &str) -> Result<f64, &'static str> {
    let special = match text.strip_prefix(['+', '-']).unwrap_or(text) {
        t if t.eq_ignore_ascii_case("nan") => Some(f64::NAN),
        t if t.eq_ignore_ascii_case("infinity") || t.eq_ignore_ascii_case("inf") => {
            Some(if text.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        _ => None,
    };
    if let Some(x) = special {
        return Ok(x);
    }
    if parse_decimal(text).is_none() {
        return Err("not a number (expected digits, NaN, Infinity or -Infinity)");
    }
    // Rust's parser rounds correctly, and it accepts everything `parse_decimal` does.
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err("out of range for FLOAT64"),
    }
}

/// Seconds since the epoch, possibly fractional. Parsed exactly from the text and truncated to
/// microseconds (toward the past), BigQuery's precision.
fn seconds_to_micros(text: &str) -> Result<i64, &'static str> {
    let decimal = parse_decimal(text).ok_or("not a number of seconds")?;
    let (magnitude, exact) = decimal.scaled(6).ok_or(TIMESTAMP_RANGE)?;
    let magnitude = i64::try_from(magnitude).map_err(|_| TIMESTAMP_RANGE)?;
    let micros = if decimal.negative {
        // Floor, so a fraction of a microsecond before an instant stays before it.
        -magnitude - i64::from(!exact)
    } else {
        magnitude
    };
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(TIMESTAMP_RANGE)
    }
}

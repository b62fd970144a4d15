//! Is this record well-formed JSON, and is it an object?
//!
//! Validation must not build a DOM: it is on the hot path for every record. UTF-8 is checked
//! with SIMD first, then the JSON grammar by [`crate::json::check`].

use serde::de::IgnoredAny;

use super::RecordErrorKind;
use crate::json::KeyCheck;

/// The top-level shape of a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{...}`; `empty` for `{}` (so a column can be spliced in without a comma).
    Object { empty: bool },
    /// Arrays, strings, numbers, booleans, null: wrapped as `{"value": ...}`.
    Other,
}

/// UTF-8 and shape only, for bytes whose grammar was already checked (see
/// `Frame::json_checked`).
pub fn validate_checked(bytes: &[u8]) -> Result<Shape, RecordErrorKind> {
    if let Err(e) = simdutf8::compat::from_utf8(bytes) {
        return Err(RecordErrorKind::InvalidUtf8 {
            at: e.valid_up_to(),
        });
    }
    Ok(shape_of(bytes))
}

pub fn validate(bytes: &[u8]) -> Result<Shape, RecordErrorKind> {
    validate_with(bytes, crate::json::check)
}

/// [`validate`], also checking keys in the same pass (`keys.clean` tells the verdict; see
/// [`KeyCheck`]): one walk over the record instead of two when the row stage would otherwise
/// scan its keys.
pub fn validate_keys(bytes: &[u8], keys: &mut KeyCheck) -> Result<Shape, RecordErrorKind> {
    validate_with(bytes, |b| crate::json::check_keys(b, keys))
}

fn validate_with(
    bytes: &[u8],
    check: impl FnOnce(&[u8]) -> Result<(), usize>,
) -> Result<Shape, RecordErrorKind> {
    if let Err(e) = simdutf8::compat::from_utf8(bytes) {
        return Err(RecordErrorKind::InvalidUtf8 {
            at: e.valid_up_to(),
        });
    }
    if check(bytes).is_err() {
        // Invalid records are rare: let serde_json word the error. Its text ends with
        // "at line L column C", the position inside the record.
        let message = match serde_json::from_slice::<IgnoredAny>(bytes) {
            Err(e) => e.to_string(),
            Ok(_) => "rejected by the validator".to_string(),
        };
        return Err(RecordErrorKind::InvalidJson(message));
    }
    Ok(shape_of(bytes))
}

/// The shape of bytes already known to be valid JSON.
pub fn shape_of(bytes: &[u8]) -> Shape {
    let mut it = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace());
    match it.next() {
        Some(b'{') => Shape::Object {
            empty: it.next() == Some(b'}'),
        },
        _ => Shape::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_shapes() {
        assert_eq!(validate(b"{\"a\":1}"), Ok(Shape::Object { empty: false }));
        assert_eq!(validate(b" { } "), Ok(Shape::Object { empty: true }));
        assert_eq!(validate(b"[1,2]"), Ok(Shape::Other));
        assert_eq!(validate(b"\"s\""), Ok(Shape::Other));
    }

    #[test]
    fn reports_invalid_utf8_with_its_position_even_inside_strings() {
        assert_eq!(
            validate(b"{\"a\":\"\xff\"}"),
            Err(RecordErrorKind::InvalidUtf8 { at: 6 })
        );
    }

    #[test]
    fn reports_invalid_json_with_serde_json_position() {
        let err = validate(b"{\"a\":1,}").unwrap_err();
        assert_eq!(
            err,
            RecordErrorKind::InvalidJson("key must be a string at line 1 column 8".into())
        );
        assert!(validate(b"{\"a\":1} x").is_err(), "trailing characters");
    }
}

//! Firehose error output records.
//!
//! When a transformation Lambda fails, a format conversion fails or a destination rejects data,
//! Firehose writes the failed record under an error prefix (`processing-failed/`,
//! `format-conversion-failed/`, ...) as JSON with `attemptsMade`, `arrivalTimestamp`,
//! `errorCode`, `errorMessage` and the original bytes in `rawData` (base64). Format conversion
//! failures spell keys differently (`ErrorCode`, `lastErrorCode`), so keys match
//! case-insensitively. Replaying such a record means replaying its `rawData`.

use std::io::Read;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};

/// Padding optional: producers and re-encoders drop it.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes base64 in the standard or the URL-safe alphabet (told apart by `-` and `_`, which
/// only the URL-safe one uses), padded or not, ignoring whitespace (MIME-style line breaks).
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let stripped;
    let text = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        stripped = text
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>();
        &stripped[..]
    } else {
        text.as_bytes()
    };
    if text.iter().any(|&b| b == b'-' || b == b'_') {
        URL_SAFE.decode(text)
    } else {
        STANDARD.decode(text)
    }
}

/// The original record bytes inside an error record. A gzip'd payload (CloudWatch Logs data
/// that failed processing) is inflated, up to `max_bytes`.
pub fn raw_data(record: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    let map: Map<String, Value> =
        serde_json::from_slice(record).map_err(|e| format!("not a Firehose error record: {e}"))?;
    let raw = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("rawData"))
        .map(|(_, v)| v)
        .ok_or("Firehose error record has no rawData")?;
    let text = raw
        .as_str()
        .ok_or("Firehose error record's rawData is not a string")?;
    let bytes = decode_base64(text)
        .map_err(|e| format!("Firehose error record's rawData is not base64: {e}"))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("Firehose error record's rawData is corrupt gzip: {e}"))?;
        if out.len() > max_bytes {
            return Err(format!(
                "Firehose error record's rawData inflates to more than --max-record-bytes ({max_bytes})"
            ));
        }
        return Ok(out);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_data_whatever_the_key_case() {
        let rec =
            br#"{"attemptsMade":4,"errorCode":"Lambda.FunctionError","rawData":"eyJhIjoxfQo="}"#;
        assert_eq!(raw_data(rec, 100).unwrap(), b"{\"a\":1}\n");
        let rec = br#"{"ErrorCode":"x","ErrorMessage":"y","RawData":"eyJhIjoxfQ=="}"#;
        assert_eq!(raw_data(rec, 100).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn explains_what_is_wrong() {
        assert!(raw_data(br#"{"errorCode":"x"}"#, 100)
            .unwrap_err()
            .contains("no rawData"));
        assert!(raw_data(br#"{"rawData":"%%%"}"#, 100)
            .unwrap_err()
            .contains("not base64"));
    }

    fn raw(b64: &str) -> Result<Vec<u8>, String> {
        raw_data(
            serde_json::to_string(&serde_json::json!({ "rawData": b64 }))
                .unwrap()
                .as_bytes(),
            1000,
        )
    }

    /// Encodes with a `+` (standard) or `-` (URL-safe), no padding needed.
    const TILDES: &[u8] = b"{\"k\":\"~~~?\"}";
    /// Encodes with a `/` (standard) or `_` (URL-safe) and one padding `=`.
    const QUERIES: &[u8] = b"{\"k\":\"???\"}";

    #[test]
    fn standard_base64_decodes_with_or_without_padding() {
        assert_eq!(raw("eyJrIjoifn5+PyJ9").unwrap(), TILDES);
        assert_eq!(raw("eyJrIjoiPz8/In0=").unwrap(), QUERIES);
        assert_eq!(raw("eyJrIjoiPz8/In0").unwrap(), QUERIES);
        assert_eq!(raw("eyJhIjoxfQ==").unwrap(), b"{\"a\":1}");
        assert_eq!(raw("eyJhIjoxfQ").unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn url_safe_base64_decodes_with_or_without_padding() {
        assert_eq!(raw("eyJrIjoifn5-PyJ9").unwrap(), TILDES);
        assert_eq!(raw("eyJrIjoiPz8_In0=").unwrap(), QUERIES);
        assert_eq!(raw("eyJrIjoiPz8_In0").unwrap(), QUERIES);
    }

    #[test]
    fn whitespace_and_line_breaks_inside_base64_are_ignored() {
        assert_eq!(raw(" eyJrIjoi\nfn5+PyJ9\r\n").unwrap(), TILDES);
        assert_eq!(raw("eyJr Ijoi\tPz8_In0").unwrap(), QUERIES);
    }

    #[test]
    fn invalid_base64_is_still_a_record_error() {
        for bad in [
            "eyJhIjoxfQ=x",     // data after padding
            "eyJhIjoxfQ===",    // too much padding
            "eyJrIjoiPz8/In0-", // both alphabets at once
            "e",                // not a whole byte
            "eyJh*joxfQ",       // not an alphabet character
        ] {
            let e = raw(bad).unwrap_err();
            assert!(e.contains("rawData is not base64"), "{bad}: {e}");
        }
    }
}

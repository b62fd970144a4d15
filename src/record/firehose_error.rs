//! Firehose error output records.
//!
//! When a transformation Lambda fails, a format conversion fails or a destination rejects data,
//! Firehose writes the failed record under an error prefix (`processing-failed/`,
//! `format-conversion-failed/`, ...) as JSON with `attemptsMade`, `arrivalTimestamp`,
//! `errorCode`, `errorMessage` and the original bytes in `rawData` (base64). Format conversion
//! failures spell keys differently (`ErrorCode`, `lastErrorCode`), so keys match
//! case-insensitively. Replaying such a record means replaying its `rawData`.

use std::io::Read;

use base64::Engine;
use serde_json::{Map, Value};

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
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
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
}

//! Telling an object that holds no records at all from one with bad records in it.
//!
//! Framing is forgiving by design: a bad span is skipped and the next value that parses lands.
//! Over a binary body that is wrong — digits in random bytes parse as JSON numbers, so a gzip of
//! noise or a Parquet file (what Firehose's record format conversion writes beside JSON) would
//! "succeed" with accidental scalar rows and a dead letter larger than the object. So the start
//! of the decompressed stream is looked at once: a known binary file format, or a body that is
//! mostly not UTF-8 text, fails the object permanently with a message that says what it is.

/// How much of the decompressed stream is looked at.
pub const SAMPLE: usize = 8 * 1024;
/// A sample shorter than this is judged by magic only (too few bytes to call it binary).
const MIN_SAMPLE: usize = 64;
/// Share of the sample that may be other than UTF-8 text before the body counts as binary.
/// JSON text has none (a few invalid bytes inside strings are record errors); random bytes
/// have about 60%, UTF-16 text 50%.
const MAX_NON_TEXT: f64 = 0.3;

/// What the decompressed body is, if it is plainly not records (`head`: its first bytes).
pub fn not_records(head: &[u8]) -> Option<String> {
    for (magic, what) in [
        (
            &b"PAR1"[..],
            "a Parquet file (Firehose's record format conversion writes these)",
        ),
        (
            &b"ORC"[..],
            "an ORC file (Firehose's record format conversion writes these)",
        ),
        (&b"Obj\x01"[..], "an Avro container file"),
    ] {
        if head.starts_with(magic) {
            return Some(what.to_string());
        }
    }
    if head.len() < MIN_SAMPLE {
        return None;
    }
    let non_text: usize = head
        .utf8_chunks()
        .map(|c| {
            c.invalid().len()
                + c.valid()
                    .bytes()
                    .filter(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x1e | 0x0c))
                    .count()
        })
        .sum();
    let share = non_text as f64 / head.len() as f64;
    (share > MAX_NON_TEXT).then(|| {
        format!(
            "binary data: {:.0}% of its first {} decompressed bytes are not UTF-8 text",
            share * 100.0,
            head.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_binary_formats_are_named() {
        assert!(not_records(b"PAR1\x15\x00").unwrap().contains("Parquet"));
        assert!(not_records(b"ORC\x0a\x03").unwrap().contains("ORC"));
        assert!(not_records(b"Obj\x01\x04").unwrap().contains("Avro"));
    }

    #[test]
    fn text_passes_and_noise_does_not() {
        let json = "{\"a\":\"ünïcödé ✓\",\"b\":[1,2,3]}\n".repeat(100);
        assert_eq!(not_records(json.as_bytes()), None);
        // A record with a few bad bytes is a record error, not a binary object.
        let mut mixed = json.clone().into_bytes();
        mixed.extend_from_slice(b"{\"s\":\"caf\xe9\"}\n");
        assert_eq!(not_records(&mixed), None);
        let mut x = 0x9e3779b97f4a7c15u64;
        let noise: Vec<u8> = (0..SAMPLE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(not_records(&noise).unwrap().contains("binary data"));
        assert!(not_records(&[0u8; 4096]).unwrap().contains("100%"));
        // Too short to judge by content.
        assert_eq!(not_records(b"\x00\x01\x02"), None);
    }
}

//! Object keys as AWS encodes them in events.

use percent_encoding::percent_decode_str;

/// S3 event notifications (and S3 Batch Operations manifests and tasks) carry keys
/// form-URL-encoded: a space is `+`, a plus is `%2B`, non-ASCII is percent-encoded UTF-8.
/// Invalid UTF-8 after decoding is kept lossily rather than failing the event.
pub fn url_decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// The inverse, for writing manifests: everything but unreserved characters and `/` is
/// percent-encoded (a space as `%20`, which S3 Batch Operations decodes like `+`).
pub fn url_encode_key(key: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const KEY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(key, KEY).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_as_space_and_percent_escapes() {
        assert_eq!(url_decode_key("a+b%2Bc%2Fd/%C3%BC.gz"), "a b+c/d/ü.gz");
        assert_eq!(url_decode_key("plain/key"), "plain/key");
    }

    #[test]
    fn encoding_round_trips() {
        for k in ["a b+c/ü (1).gz", "2026/11/25/13/x-1.gz", "100%"] {
            assert_eq!(url_decode_key(&url_encode_key(k)), k);
        }
    }
}

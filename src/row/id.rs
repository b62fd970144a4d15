//! Deterministic row IDs.
//!
//! A row's ID is derived from where it came from — (bucket or root name, key, ETag, the byte
//! offset of the record's first byte in the decompressed object, position inside an envelope) —
//! so replaying an object yields the same IDs and a sink can drop duplicates, while new content
//! (new ETag) yields new IDs. Or it is taken from a field of the record (`--row-id-field`), so
//! the same event archived twice dedups too.
//!
//! The offset, not the record's ordinal, is what makes an ID independent of framing: however an
//! object is re-framed (`auto`, `newline`, `concatenated`), or however many bad bytes before a
//! record became record errors, the record starts at the same byte. (Before v2 the ordinal was
//! used: see docs/src/rows.md on deduplicating across the change.)
//!
//! Hash: BLAKE3 (keyed by a fixed context string), truncated to 128 bits and written as 32
//! lowercase hex characters. It is collision-resistant even against crafted field values, stable
//! across platforms and versions, and costs ~130 ns per ID (`cargo bench --bench hot_path`) —
//! about 6% of the CPU a record costs end to end. A 64-bit non-cryptographic hash would be faster still, but its
//! birthday bound (~4 billion rows for a 50% chance of one collision) is within reach of a busy
//! stream, and a collision here means a silently dropped row.

use std::fmt;

use serde_json::value::RawValue;

use crate::object::ObjectRef;

const CONTEXT: &str = "firehose-replay 2026-12 row id v2 (byte offset)";

/// BigQuery's `insertId` is limited to 128 characters.
pub const MAX_ID_LEN: usize = 128;

/// A row ID, stored inline (no allocation per row).
#[derive(Clone, Copy)]
pub struct RowId {
    buf: [u8; MAX_ID_LEN],
    len: u8,
}

impl RowId {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (hex digits or a vetted field value).
        std::str::from_utf8(&self.buf[..self.len as usize]).expect("row IDs are ASCII")
    }

    /// [`RowId::as_str`]'s bytes, without the UTF-8 check: what the row builder splices in
    /// for every row.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn hex(digest: &[u8; 32]) -> RowId {
        let mut buf = [0u8; MAX_ID_LEN];
        hex::encode_to_slice(&digest[..16], &mut buf[..32]).expect("32 bytes of room");
        RowId { buf, len: 32 }
    }
}

impl fmt::Debug for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for RowId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// The part of a position-based ID shared by all rows of one object, hashed once.
#[derive(Clone)]
pub struct ObjectSeed {
    key: [u8; 32],
}

impl ObjectSeed {
    pub fn new(object: &ObjectRef) -> ObjectSeed {
        let mut h = blake3::Hasher::new_derive_key(CONTEXT);
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        for part in [
            object.bucket.as_str(),
            object.key.as_str(),
            object.etag.as_deref().unwrap_or(""),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        ObjectSeed {
            key: *h.finalize().as_bytes(),
        }
    }

    /// The ID of the record starting at byte `offset` of the decompressed object, or of a row
    /// inside it (`sub`: log event index, ...).
    pub fn id(&self, offset: u64, sub: &[u32]) -> RowId {
        let mut input = [0u8; 8 + 4 * 4];
        input[..8].copy_from_slice(&offset.to_le_bytes());
        let mut n = 8;
        for s in sub.iter().take(4) {
            input[n..n + 4].copy_from_slice(&s.to_le_bytes());
            n += 4;
        }
        // One-shot keyed hash: the input fits one block, and cloning a `Hasher` per row cost
        // more than the hashing itself.
        RowId::hex(blake3::keyed_hash(&self.key, &input[..n]).as_bytes())
    }
}

/// An ID taken from a record's field: used verbatim when it is a short, plain token (a string
/// or integer of `[A-Za-z0-9._:-]`, at most 128 characters), hashed otherwise.
pub fn from_field(value: &RawValue) -> RowId {
    let text = value.get();
    let token = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let plain = !token.is_empty()
        && token.len() <= MAX_ID_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if plain {
        let mut buf = [0u8; MAX_ID_LEN];
        buf[..token.len()].copy_from_slice(token.as_bytes());
        return RowId {
            buf,
            len: token.len() as u8,
        };
    }
    RowId::hex(&blake3::derive_key(CONTEXT, text.as_bytes()))
}

/// Finds the value at a dotted path (`detail.id`) without parsing the rest of the record into a
/// DOM. `Ok(None)` when a segment is missing or not an object.
pub fn lookup<'a>(record: &'a [u8], path: &[String]) -> Result<Option<&'a RawValue>, String> {
    let mut current: &'a RawValue =
        serde_json::from_slice(record).map_err(|e| format!("invalid JSON: {e}"))?;
    for segment in path {
        let Ok(map) = serde_json::from_str::<
            std::collections::HashMap<std::borrow::Cow<'a, str>, &'a RawValue>,
        >(current.get()) else {
            return Ok(None);
        };
        match map.get(segment.as_str()) {
            Some(v) => current = v,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(etag: &str) -> ObjectRef {
        let mut o = ObjectRef::new("bucket", "2026/11/25/22/s-1-x.gz");
        o.etag = Some(etag.into());
        o
    }

    #[test]
    fn same_position_same_id_and_any_change_changes_it() {
        let a = ObjectSeed::new(&obj("e1"));
        assert_eq!(a.id(3, &[]), ObjectSeed::new(&obj("e1")).id(3, &[]));
        assert_eq!(a.id(3, &[]).as_str().len(), 32);
        assert!(a
            .id(3, &[])
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a.id(3, &[]), a.id(4, &[]));
        assert_ne!(a.id(3, &[]), a.id(3, &[0]));
        assert_ne!(a.id(3, &[]), ObjectSeed::new(&obj("e2")).id(3, &[]));
    }

    #[test]
    fn the_id_of_a_known_position_never_changes() {
        // Pinned: changing the hash input would re-key every table that dedups by row ID. (It
        // changed once, from ordinals to byte offsets, in v2: docs/src/rows.md says how to dedup
        // across that change.)
        assert_eq!(ObjectSeed::new(&obj("e1")).id(0, &[]).as_str(), PINNED_ID);
    }
    const PINNED_ID: &str = "ad5d645c9fc155fd9f4d52fdb46dcc22";

    #[test]
    fn field_ids_are_verbatim_when_plain_and_hashed_otherwise() {
        let v: &RawValue = serde_json::from_str("\"evt-123:a.b_c\"").unwrap();
        assert_eq!(from_field(v).as_str(), "evt-123:a.b_c");
        let v: &RawValue = serde_json::from_str("42").unwrap();
        assert_eq!(from_field(v).as_str(), "42");
        let v: &RawValue = serde_json::from_str("\"has space\"").unwrap();
        assert_eq!(from_field(v).as_str().len(), 32);
        let w: &RawValue = serde_json::from_str("\"has space\"").unwrap();
        assert_eq!(from_field(v), from_field(w));
    }

    #[test]
    fn looks_up_nested_fields() {
        let rec = br#"{"detail":{"id":"x1","n":{"k":1}},"top":2}"#;
        let path = |p: &str| p.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            lookup(rec, &path("detail.id")).unwrap().unwrap().get(),
            "\"x1\""
        );
        assert_eq!(lookup(rec, &path("top")).unwrap().unwrap().get(), "2");
        assert!(lookup(rec, &path("detail.missing")).unwrap().is_none());
        assert!(lookup(rec, &path("top.deeper")).unwrap().is_none());
    }
}

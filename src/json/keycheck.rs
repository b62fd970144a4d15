//! The validator's key check ([`KeyCheck`]) and its key hash, cheap enough to run on every key
//! of every record while validating, so that the row stage need not scan the keys again.
//!
//! A key of up to 16 bytes (nearly every key) hashes from two words, its last eight bytes and
//! its first eight, so [`key_hash_at`] reads them straight from the record with two fixed-size
//! loads and no masking or copying; [`name_hash`] gives the same value for the same bytes held
//! alone (the reserved names). Two multiplies: the lexer's FxHash-style hash of a key
//! (`lex::key_hash`, which the row stage's scan uses) cost twice the instructions per key.

use super::validate::Keys;

const K: u64 = 0x517c_c1b7_2722_0a95;

/// The hash of a key's raw bytes (between its quotes), as [`key_hash_at`] computes it inside
/// a record.
pub fn name_hash(k: &[u8]) -> u64 {
    let n = k.len();
    match n {
        0..=7 => {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(k);
            short_hash(u64::from_le_bytes(w), 0, n)
        }
        8..=16 => short_hash(word(k, n - 8), word(k, 0), n),
        _ => long_hash(k),
    }
}

/// [`name_hash`] of `b[start..end]`, reading the key in place when it is short and has eight
/// bytes of `b` before its end and after its start.
#[inline(always)]
pub(crate) fn key_hash_at(b: &[u8], start: usize, end: usize) -> u64 {
    let n = end - start;
    if (1..=16).contains(&n) && end >= 8 && start + 8 <= b.len() {
        // The word ending at the key's end, shifted down to the key's own bytes when the key
        // is shorter than eight (what precedes it drops out); for a longer key, also its
        // first word (overlapping the last one when the key is shorter than 16).
        let last = word(b, end - 8) >> (8 * (8 - n.min(8)));
        let first = if n >= 8 { word(b, start) } else { 0 };
        return short_hash(last, first, n);
    }
    name_hash(&b[start..end])
}

#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A key of `n` <= 16 bytes: `last` holds its last eight bytes (all of it, zero-padded above,
/// when shorter), `first` its first eight (0 when it is shorter than eight).
#[inline(always)]
fn short_hash(last: u64, first: u64, n: usize) -> u64 {
    let h = (last ^ (n as u64) << 59).wrapping_mul(K);
    (h.rotate_left(26) ^ first).wrapping_mul(K)
}

/// Keys longer than 16 bytes (rare): every word, the last one overlapping its predecessor.
#[cold]
#[inline(never)]
fn long_hash(k: &[u8]) -> u64 {
    let mut h = (k.len() as u64).wrapping_mul(K);
    let mut chunks = k.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(26) ^ word(c, 0)).wrapping_mul(K);
    }
    if !chunks.remainder().is_empty() {
        h = (h.rotate_left(26) ^ word(k, k.len() - 8)).wrapping_mul(K);
    }
    h
}

/// Keys of the open objects the check holds at once, and objects open at once: records beyond
/// either (rare: over a thousand keys on one path, objects nested deeper than 32) are simply not
/// clean and go to the row stage's scan. Fixed arrays, not vectors: no capacity check per key.
const MAX_KEYS: usize = 1024;
const MAX_OPEN: usize = 32;

/// Watches keys while the framer validates, so the row stage can skip its own key scan (the
/// row contract's duplicate-key and generated-column checks, `row::scan`) for the common record
/// that has neither: `clean` stays true only if no object holds two keys of equal hash and no
/// top-level key hashes like a reserved name. Keys with escapes make it give up (`clean =
/// false`): the row stage then decides. A false "not clean" costs only the scan.
#[derive(Debug)]
pub struct KeyCheck {
    /// Hashes of the keys of the objects open (`hashes[..len]`).
    hashes: Box<[u64; MAX_KEYS]>,
    len: usize,
    /// Per open object (`starts[..open]`, as far as `MAX_OPEN`): where its hashes start in
    /// `hashes`, and a 128-bit Bloom filter of them (two words: a `u128` shift compiles to
    /// branches, a word index does not).
    starts: Box<[(usize, [u64; 2]); MAX_OPEN]>,
    /// Objects open, counting those past `MAX_OPEN`.
    open: usize,
    /// Hashes of the generated column names.
    pub reserved: Vec<u64>,
    /// Two one-word Bloom filters of the reserved hashes (bits 58..64 and 52..58 pick the
    /// bit), so that nearly every top-level key is cleared without walking `reserved`: with
    /// one, a few common keys of the bench events always collided with a reserved name, a
    /// walk per key per record.
    reserved_bloom: [u64; 2],
    pub clean: bool,
    /// No number with an exponent or longer than [`super::PLAIN_NUMBER_CHARS`], and no `\uD800`–`\uDFFF`
    /// escape, in the whole record (keys too): every number is within ±f64::MAX and every
    /// string is plain UTF-8, so BigQuery's storability look (`row::scan::storable`) would find
    /// nothing and the row stage skips it. Rides on the key check because it needs the same
    /// walk and the same per-record reset.
    pub plain_values: bool,
}

/// What the key check found out about the last record besides its grammar (see [`KeyCheck`]).
/// The default is "nothing known", which costs only a later look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// See [`KeyCheck::clean`].
    pub keys_clean: bool,
    /// See [`KeyCheck::plain_values`].
    pub plain_values: bool,
}

impl KeyCheck {
    /// A check that treats top-level keys hashing like one of `reserved` as not clean
    /// (`reserved` holds [`name_hash`]es).
    pub fn new(reserved: Vec<u64>) -> Self {
        KeyCheck {
            hashes: Box::new([0; MAX_KEYS]),
            len: 0,
            starts: Box::new([(0, [0; 2]); MAX_OPEN]),
            open: 0,
            reserved_bloom: reserved.iter().fold([0, 0], |[a, b], h| {
                [a | 1u64 << (h >> 58), b | 1u64 << ((h >> 52) & 63)]
            }),
            reserved,
            clean: true,
            plain_values: true,
        }
    }

    /// The last record's verdicts.
    pub fn verdicts(&self) -> Verdicts {
        Verdicts {
            keys_clean: self.clean,
            plain_values: self.plain_values,
        }
    }

    pub fn reset(&mut self) {
        self.len = 0;
        self.open = 0;
        self.clean = true;
        self.plain_values = true;
    }
}

impl Keys for KeyCheck {
    #[inline(always)]
    fn open_object(&mut self) {
        match self.starts.get_mut(self.open) {
            Some(s) => *s = (self.len, [0; 2]),
            None => self.clean = false,
        }
        self.open += 1;
    }

    #[inline(always)]
    fn key(&mut self, b: &[u8], start: usize, end: usize, escaped: bool, depth: usize) {
        if !self.clean {
            return;
        }
        if escaped {
            self.clean = false;
            return;
        }
        let h = key_hash_at(b, start, end);
        if depth == 1
            && self.reserved_bloom[0] & (1u64 << (h >> 58)) != 0
            && self.reserved_bloom[1] & (1u64 << ((h >> 52) & 63)) != 0
            && self.reserved.contains(&h)
        {
            self.clean = false;
            return;
        }
        // Clean, so the innermost object is among the first `MAX_OPEN`.
        let Some((from, bloom)) = self
            .open
            .checked_sub(1)
            .and_then(|o| self.starts.get_mut(o))
        else {
            return;
        };
        let (word, bit) = ((h >> 63) as usize, 1u64 << ((h >> 57) & 63));
        if bloom[word] & bit != 0 && self.hashes[*from..self.len].contains(&h) {
            self.clean = false;
            return;
        }
        bloom[word] |= bit;
        match self.hashes.get_mut(self.len) {
            Some(slot) => {
                *slot = h;
                self.len += 1;
            }
            None => self.clean = false,
        }
    }

    #[inline(always)]
    fn close_object(&mut self) {
        self.open = self.open.saturating_sub(1);
        if let Some((from, _)) = self.starts.get(self.open) {
            self.len = *from;
        }
    }

    #[inline(always)]
    fn unusual_value(&mut self) {
        self.plain_values = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-place read must give the hash of the key's bytes alone, wherever the key sits:
    /// at the start or the end of the buffer (where the fixed-size loads cannot be made and the
    /// copy path runs), and whatever bytes surround it.
    #[test]
    fn key_hashes_agree_wherever_the_key_sits() {
        let key: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=key.len() {
            let k = &key[..n];
            let want = name_hash(k);
            for before in 0..10 {
                for after in 0..10 {
                    let mut b = vec![b'"'; before];
                    b.extend_from_slice(k);
                    b.extend(std::iter::repeat_n(b'x', after));
                    assert_eq!(
                        key_hash_at(&b, before, before + n),
                        want,
                        "n {n}, {before} bytes before, {after} after"
                    );
                }
            }
        }
    }

    #[test]
    fn different_keys_hash_apart() {
        let keys = [
            &b""[..],
            b"a",
            b"b",
            b"ab",
            b"a\0",
            b"event_id",
            b"event_ids",
            b"user_created_at",
            b"item_created_at",
            b"_row_id",
            b"_record_ordinal",
            b"a_key_longer_than_sixteen",
            b"a_key_longer_than_sixteeN",
            b"b_key_longer_than_sixteen",
        ];
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| name_hash(k)).collect();
        assert_eq!(hashes.len(), keys.len());
    }
}

//! Walks over JSON text that is already known to be valid, without building a DOM and without
//! recursion (so no depth limit): the row contract's checks (docs/src/rows.md, "Row contract").
//!
//! - [`Keys::scan`]: duplicate keys at any level (the last occurrence wins, the earlier ones are
//!   cut out of the row) and the record's own top-level fields that collide with generated
//!   columns.
//! - [`storable`]: what BigQuery cannot hold at all — numbers beyond ±f64::MAX (`1e400`) and lone
//!   UTF-16 surrogate escapes (`"\ud800"`) — named by their field path.
//!
//! The text must be valid JSON; on anything else these return an error rather than panic.

use crate::json::lex::*;

#[derive(Debug, Clone, Copy)]
struct Member {
    /// The key's content, without quotes.
    key: (usize, usize),
    /// [`key_hash`] of the key.
    hash: u64,
    /// The key's opening quote.
    start: usize,
    value: (usize, usize),
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    /// Where this object's members start in `Keys::members`.
    first: usize,
}

/// What [`Keys::scan`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// The record had duplicate keys: the de-duplicated text is in `Keys::out`.
    pub rewritten: bool,
    /// `(index into the reserved names, the value's span in the *input*)` for each top-level
    /// field named like a generated column.
    pub collisions: Vec<(usize, (usize, usize))>,
}

/// Reusable buffers for [`Keys::scan`].
#[derive(Debug, Default)]
pub struct Keys {
    stack: Vec<Frame>,
    members: Vec<Member>,
    cuts: Vec<(usize, usize)>,
    order: Vec<usize>,
    pub out: Vec<u8>,
}

impl Keys {
    /// Scans `b` (valid JSON): finds duplicate keys at every level and the root object's
    /// fields named in `reserved`.
    pub fn scan<S: AsRef<str>>(&mut self, b: &[u8], reserved: &[S]) -> Result<Found, String> {
        const BAD: &str = "internal error: the record is not valid JSON";
        self.stack.clear();
        self.members.clear();
        self.cuts.clear();
        let mut found = Found::default();
        let mut want_key = false;
        let mut i = 0;
        loop {
            i = skip_ws(b, i);
            let Some(&c) = b.get(i) else {
                break;
            };
            let value_done = match c {
                b'{' | b'[' => {
                    self.stack.push(Frame {
                        object: c == b'{',
                        first: self.members.len(),
                    });
                    want_key = c == b'{';
                    i += 1;
                    None
                }
                b'}' | b']' => {
                    let frame = self.stack.pop().ok_or(BAD)?;
                    if frame.object {
                        self.close_object(b, frame.first);
                        if self.stack.is_empty() && !reserved.is_empty() {
                            // Hashes first: a key is decoded only when its hash is a reserved
                            // name's.
                            let hashes: [u64; 8] = std::array::from_fn(|k| {
                                reserved
                                    .get(k)
                                    .map_or(0, |r| key_hash(r.as_ref().as_bytes(), false))
                            });
                            for m in &self.members[frame.first..] {
                                let hit = reserved.len() > 8
                                    || hashes[..reserved.len()].contains(&m.hash);
                                if !hit {
                                    continue;
                                }
                                let key = decode(&b[m.key.0..m.key.1]);
                                if let Some(r) =
                                    reserved.iter().position(|r| r.as_ref().as_bytes() == &*key)
                                {
                                    // Duplicates: the last occurrence is the one kept.
                                    found.collisions.retain(|(x, _)| *x != r);
                                    found.collisions.push((r, m.value));
                                }
                            }
                        }
                        self.members.truncate(frame.first);
                    }
                    i += 1;
                    Some(i)
                }
                b',' => {
                    want_key = self.stack.last().is_some_and(|f| f.object);
                    i += 1;
                    None
                }
                b'"' if want_key => {
                    // Keys are short and rarely escaped: when the first quote or backslash is
                    // the closing quote, the key's bytes are its content.
                    let first = i + 1 + memchr::memchr2(b'"', b'\\', &b[i + 1..]).ok_or(BAD)?;
                    let (end, escaped) = if b[first] == b'"' {
                        (first + 1, false)
                    } else {
                        (string_end(b, i).ok_or(BAD)?, true)
                    };
                    let colon = skip_ws(b, end);
                    if b.get(colon) != Some(&b':') {
                        return Err(BAD.into());
                    }
                    let value = skip_ws(b, colon + 1);
                    self.members.push(Member {
                        key: (i + 1, end - 1),
                        hash: key_hash(&b[i + 1..end - 1], escaped),
                        start: i,
                        value: (value, value),
                    });
                    want_key = false;
                    i = value;
                    None
                }
                b'"' => {
                    i = string_end(b, i).ok_or(BAD)?;
                    Some(i)
                }
                _ => {
                    let end = scalar_end(b, i);
                    if end == i {
                        return Err(BAD.into());
                    }
                    i = end;
                    Some(i)
                }
            };
            if let Some(end) = value_done {
                if self.stack.last().is_some_and(|f| f.object) {
                    if let Some(m) = self.members.last_mut() {
                        m.value.1 = end;
                    }
                }
                if self.stack.is_empty() {
                    break;
                }
            }
        }
        if !self.cuts.is_empty() {
            found.rewritten = true;
            self.cuts.sort_unstable();
            self.out.clear();
            let mut at = 0;
            for &(s, e) in &self.cuts {
                if s < at {
                    continue; // inside a member already cut
                }
                self.out.extend_from_slice(&b[at..s]);
                at = e;
            }
            self.out.extend_from_slice(&b[at..]);
        }
        Ok(found)
    }

    /// Marks every member of the object whose key occurs again later in it for cutting: the
    /// member and what follows it up to the next member (its comma). The last member is always
    /// kept (it is its key's last occurrence), so every cut member has a successor.
    fn close_object(&mut self, b: &[u8], first: usize) {
        let ms = &self.members[first..];
        let n = ms.len();
        if n < 2 {
            return;
        }
        let key = |m: &Member| decode(&b[m.key.0..m.key.1]);
        let same = |x: &Member, y: &Member| x.hash == y.hash && key(x) == key(y);
        let mut cut = |j: usize| self.cuts.push((ms[j].start, ms[j + 1].start));
        if n <= 64 {
            // A 128-bit Bloom filter of the hashes: only a member whose bit is already set is
            // compared with the earlier ones (about n²/256 compares, no allocation). An earlier
            // member with the same key is cut: the last occurrence wins.
            let mut bloom = 0u128;
            for k in 0..n {
                let bit = 1u128 << (ms[k].hash >> 57);
                if bloom & bit != 0 {
                    for i in 0..k {
                        if same(&ms[i], &ms[k]) {
                            cut(i);
                        }
                    }
                }
                bloom |= bit;
            }
            return;
        }
        self.order.clear();
        self.order.extend(0..n);
        self.order
            .sort_unstable_by(|&x, &y| ms[x].hash.cmp(&ms[y].hash).then(x.cmp(&y)));
        // Members of equal hash are adjacent; among them, one is cut when a later one has the
        // same key.
        let mut g = 0;
        while g < n {
            let mut e = g + 1;
            while e < n && ms[self.order[e]].hash == ms[self.order[g]].hash {
                e += 1;
            }
            for a in g..e {
                let x = self.order[a];
                if self.order[a + 1..e]
                    .iter()
                    .any(|&y| y > x && same(&ms[x], &ms[y]))
                {
                    cut(x);
                }
            }
            g = e;
        }
    }
}

// What BigQuery cannot hold: in `storable.rs`, re-exported at the paths callers use.
pub use super::storable::storable;
#[cfg(test)]
use super::storable::walk_storable;

#[cfg(test)]
mod tests;

//! Multi-member gzip that remembers where each member's output starts.
//!
//! CloudWatch Logs subscriptions deliver one gzip member per subscription record, concatenated
//! with no delimiter. A member that is not JSON has no line break to end its error span on, so
//! without the member boundaries one bad member would take every later member with it. The
//! decoder records the decompressed offset where each member after the first starts, and the
//! framer never lets a bad span run past one (see [`crate::frame`]). Valid values may still
//! span members (tools like bgzip cut members at fixed sizes, mid-record).

use std::io::{self, BufRead, Read};
use std::sync::{Arc, Mutex};

use flate2::bufread::GzDecoder;

/// Decompressed offsets where a member starts, shared between the decoder (which may run ahead
/// on another thread) and the framer. Only boundaries are stored, one `u64` per member.
#[derive(Debug, Clone, Default)]
pub struct Members(Arc<Mutex<Vec<u64>>>);

impl Members {
    fn push(&self, at: u64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(at);
        }
    }

    /// The first boundary after `offset`, searching from index `*cursor` (advanced past the
    /// boundaries at or before `offset`, which are never asked for again).
    pub fn next_after(&self, offset: u64, cursor: &mut usize) -> Option<u64> {
        let v = self.0.lock().ok()?;
        while v.get(*cursor).is_some_and(|&b| b <= offset) {
            *cursor += 1;
        }
        v.get(*cursor).copied()
    }
}

/// Decodes concatenated gzip members (as `flate2::bufread::MultiGzDecoder` does) and records
/// where each member's output starts.
pub struct MultiGz<R: BufRead> {
    /// The member being decoded; `None` once the input ended.
    member: Option<GzDecoder<R>>,
    out: u64,
    members: Members,
}

impl<R: BufRead> MultiGz<R> {
    pub fn new(input: R, members: Members) -> Self {
        MultiGz {
            member: Some(GzDecoder::new(input)),
            out: 0,
            members,
        }
    }
}

impl<R: BufRead> Read for MultiGz<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = &mut self.member else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.out += n as u64;
                return Ok(n);
            }
            let Some(member) = self.member.take() else {
                return Ok(0);
            };
            let mut input = member.into_inner();
            if input.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.members.push(self.out);
            self.member = Some(GzDecoder::new(input));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_every_member_and_records_where_each_starts() {
        let mut input = gz(b"abc");
        input.extend(gz(b""));
        input.extend(gz(b"defg"));
        let members = Members::default();
        let mut out = Vec::new();
        MultiGz::new(&input[..], members.clone())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"abcdefg");
        let mut cursor = 0;
        assert_eq!(members.next_after(0, &mut cursor), Some(3));
        assert_eq!(members.next_after(3, &mut cursor), None);
        let mut trailing = gz(b"x");
        trailing.extend_from_slice(b"junk");
        assert!(MultiGz::new(&trailing[..], Members::default())
            .read_to_end(&mut Vec::new())
            .is_err());
    }

    #[test]
    fn fails_as_flate2_does_on_empty_and_truncated_input() {
        let full = gz(b"abc");
        for input in [&b""[..], &full[..5], &full[..full.len() - 1]] {
            let ours = MultiGz::new(input, Members::default()).read_to_end(&mut Vec::new());
            let theirs = flate2::bufread::MultiGzDecoder::new(input).read_to_end(&mut Vec::new());
            assert_eq!(
                ours.map_err(|e| e.kind()),
                theirs.map_err(|e| e.kind()),
                "{input:?}"
            );
        }
    }
}

//! Reading one raw Snappy block out of a container (snappy-java's stream, Hadoop's blocks):
//! shared so that both containers bound their memory the same way.
//!
//! A container declares a block's compressed length before its bytes. Sizing a buffer from that
//! number lets twelve bytes of garbage reserve tens of MiB, so the bytes are read as they arrive
//! (the buffer grows with them), and the output is sized only once they are in and their own
//! preamble, checked against how far Snappy can expand them, says how long it is.

use std::io::{self, Read};

/// Snappy's densest element is a 3-byte copy of 64 bytes: no block expands more than this.
const MAX_EXPANSION: usize = 22;
/// Reserved up front for a block's bytes at most; the rest grows as they arrive.
const INITIAL_RESERVE: usize = 64 * 1024;

pub(crate) fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Fills `buf` completely, or fails with `UnexpectedEof`.
pub(crate) fn read_full<R: Read>(inner: &mut R, buf: &mut [u8]) -> io::Result<()> {
    inner.read_exact(buf)
}

/// Reads a big-endian u32; `Ok(None)` on a clean end of stream before its first byte.
pub(crate) fn read_u32<R: Read>(inner: &mut R) -> io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        match inner.read(&mut b[n..]) {
            Ok(0) if n == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(u32::from_be_bytes(b)))
}

/// Reads a raw Snappy block of `len` compressed bytes from `inner` into `compressed` and
/// decodes it into `out` (replacing both buffers' contents). Its output may be at most
/// `max_out` bytes. Returns the output length.
pub(crate) fn decode<R: Read>(
    inner: &mut R,
    snappy: &mut snap::raw::Decoder,
    len: usize,
    max_out: usize,
    compressed: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    compressed.clear();
    compressed.reserve(len.min(INITIAL_RESERVE));
    let got = inner.by_ref().take(len as u64).read_to_end(compressed)?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("snappy block cut after {got} of its {len} bytes"),
        ));
    }
    let n = snap::raw::decompress_len(compressed).map_err(|e| corrupt(e.to_string()))?;
    if n > max_out {
        return Err(corrupt(format!(
            "snappy block decodes to {n} bytes, more than the {max_out} it may hold"
        )));
    }
    if n > len.saturating_mul(MAX_EXPANSION) {
        return Err(corrupt(format!(
            "snappy block of {len} bytes claims {n} bytes of output, more than it can hold"
        )));
    }
    out.clear();
    out.resize(n, 0);
    snappy
        .decompress(compressed, out)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(n)
}

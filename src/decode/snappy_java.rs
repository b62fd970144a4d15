//! The xerial snappy-java stream format: what `SnappyOutputStream` writes, and so what Firehose
//! writes for `CompressionFormat: Snappy` (`Content-Encoding: snappy-java`).
//!
//! A 16-byte header — magic `0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00`, an int32 BE version and an
//! int32 BE compatible version — then blocks of `[int32 BE compressed length][raw Snappy block]`,
//! each block the compression of up to 32 KiB of input (the default; the writer may choose
//! more). `SnappyInputStream` also reads streams concatenated after one another (a new header
//! where a block length is expected), so this does too. No crate reads this container; the raw
//! blocks are decoded by `snap`.
//!
//! Nothing is allocated from a declared length: a block's bytes are read as they arrive, and
//! its output is sized only after its bytes are in and checked against what they can expand to.

use std::io::{self, Read};

use super::snappy_block;

/// The 8-byte magic that starts a snappy-java stream.
pub const MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// The magic read as the int32 a block length would be: how a concatenated stream is spotted.
const MAGIC_HEAD: u32 = u32::from_be_bytes([0x82, b'S', b'N', b'A']);
/// Largest compressed block accepted: snappy-java's writer caps its block size well below this,
/// and the reader gives up on anything larger as corruption.
const MAX_COMPRESSED: usize = 64 * 1024 * 1024;

pub struct Decoder<R> {
    inner: R,
    snappy: snap::raw::Decoder,
    compressed: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    header_read: bool,
}

impl<R: Read> Decoder<R> {
    pub fn new(inner: R) -> Self {
        Decoder {
            inner,
            snappy: snap::raw::Decoder::new(),
            compressed: Vec::new(),
            out: Vec::new(),
            pos: 0,
            header_read: false,
        }
    }

    /// The bytes the decoder's buffers hold (for tests that check nothing was allocated from a
    /// declared length).
    pub fn buffered_capacity(&self) -> usize {
        self.compressed.capacity() + self.out.capacity()
    }

    /// Reads the rest of a header whose first `have` bytes are already in `head`.
    fn header(&mut self, head: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[..head.len()].copy_from_slice(head);
        snappy_block::read_full(&mut self.inner, &mut h[head.len()..])?;
        if &h[..8] != MAGIC {
            return Err(snappy_block::corrupt(
                "not a snappy-java stream (bad magic header)".into(),
            ));
        }
        let version = i32::from_be_bytes(h[8..12].try_into().expect("4 bytes"));
        // As snappy-java's `SnappyInputStream` checks: version 1 and later read alike.
        if version < 1 {
            return Err(snappy_block::corrupt(format!(
                "unsupported snappy-java stream version {version}"
            )));
        }
        Ok(())
    }

    /// Decodes the next block into `self.out`; `false` at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        if !self.header_read {
            self.header_read = true;
            self.header(&[])?;
        }
        let len = loop {
            match snappy_block::read_u32(&mut self.inner)? {
                None => return Ok(false),
                Some(MAGIC_HEAD) => self.header(&MAGIC[..4])?,
                // An empty block holds nothing; read on.
                Some(0) => {}
                Some(n) => break n as usize,
            }
        };
        if len > MAX_COMPRESSED {
            return Err(snappy_block::corrupt(format!(
                "block length {len} exceeds {MAX_COMPRESSED}"
            )));
        }
        let n = snappy_block::decode(
            &mut self.inner,
            &mut self.snappy,
            len,
            MAX_COMPRESSED,
            &mut self.compressed,
            &mut self.out,
        )?;
        debug_assert_eq!(n, self.out.len());
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Input bytes per block, as `SnappyOutputStream` cuts them by default.
pub const DEFAULT_BLOCK: usize = 32 * 1024;

/// Encodes `data` as `SnappyOutputStream` does with a block size of `block`: the header with
/// version 1 and compatible version 1, then one raw Snappy block per `block` bytes of input.
/// Used by tests and the sample generator; Firehose is the producer in production.
pub fn encode(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    for piece in data.chunks(block.max(1)) {
        let c = enc
            .compress_vec(piece)
            .expect("snappy compression of a bounded block");
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 97)).into_bytes()
            })
            .collect()
    }

    #[test]
    fn decodes_blocks_with_records_across_their_boundaries() {
        let data = records(5000);
        let enc = encode(&data, DEFAULT_BLOCK);
        assert!(data.len() > 4 * DEFAULT_BLOCK, "several blocks");
        let mut out = Vec::new();
        Decoder::new(&enc[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn reads_concatenated_streams() {
        let mut enc = encode(b"{\"a\":1}\n", DEFAULT_BLOCK);
        enc.extend(encode(b"{\"a\":2}\n", DEFAULT_BLOCK));
        let mut out = Vec::new();
        Decoder::new(&enc[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn a_header_alone_is_an_empty_stream_and_a_cut_block_is_truncation() {
        let mut out = Vec::new();
        Decoder::new(&encode(b"", DEFAULT_BLOCK)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
        let enc = encode(b"{\"a\":1}\n", DEFAULT_BLOCK);
        let err = Decoder::new(&enc[..enc.len() - 2])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_declared_block_length_allocates_nothing_before_its_bytes_arrive() {
        // A header and a block that declares 60 MiB, followed by 4 bytes.
        let mut enc = encode(b"", DEFAULT_BLOCK);
        enc.extend_from_slice(&(60u32 << 20).to_be_bytes());
        enc.extend_from_slice(b"\x80\x80\x80\x1e");
        let mut d = Decoder::new(&enc[..]);
        let err = d.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            d.buffered_capacity() <= 128 * 1024,
            "{} bytes buffered",
            d.buffered_capacity()
        );
    }

    #[test]
    fn a_block_claiming_more_output_than_its_bytes_can_hold_is_refused_unallocated() {
        // Varint for 60 MiB of output, then 6 bytes: no Snappy block expands that far.
        let mut enc = encode(b"", DEFAULT_BLOCK);
        let block = b"\x80\x80\x80\x1e\x00\x41";
        enc.extend_from_slice(&(block.len() as u32).to_be_bytes());
        enc.extend_from_slice(block);
        let mut d = Decoder::new(&enc[..]);
        let err = d.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(d.buffered_capacity() <= 128 * 1024);
    }
}

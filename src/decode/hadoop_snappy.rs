//! Hadoop's Snappy codec (`HADOOP_SNAPPY` in Firehose): a sequence of blocks, each
//! `u32 BE uncompressed length` followed by one or more `u32 BE compressed length` + raw Snappy
//! chunks until that many bytes were produced. No crate implements this framing, so it is here;
//! the Snappy blocks themselves are decoded by `snap`.

use std::io::{self, Read};

use super::snappy_block;

/// Largest block accepted. Hadoop writes 256 KiB blocks by default; anything far larger is
/// corruption, and checking keeps a garbage length from becoming a huge allocation.
const MAX_BLOCK: usize = 64 * 1024 * 1024;

/// Whether `head` plausibly starts a Hadoop-snappy stream: a sane block length, a compressed
/// length that fits it, and a Snappy preamble (varint length) that fits too. Text never starts
/// with the zero byte this needs for any block under 16 MiB.
pub fn looks_like_block_header(head: &[u8]) -> bool {
    if head.len() < 9 {
        return false;
    }
    let block = u32::from_be_bytes(head[0..4].try_into().unwrap()) as usize;
    let chunk = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    if block == 0 || block > MAX_BLOCK || chunk == 0 || chunk > snap::raw::max_compress_len(block) {
        return false;
    }
    match snap::raw::decompress_len(&head[8..]) {
        Ok(n) => n > 0 && n <= block,
        // The varint may be cut off by the 16-byte peek only if it is longer than 8 bytes,
        // which no valid length is.
        Err(_) => false,
    }
}

pub struct Decoder<R> {
    inner: R,
    snappy: snap::raw::Decoder,
    compressed: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    /// Uncompressed bytes still owed by the current block.
    block_left: usize,
}

impl<R: Read> Decoder<R> {
    pub fn new(inner: R) -> Self {
        Decoder {
            inner,
            snappy: snap::raw::Decoder::new(),
            compressed: Vec::new(),
            out: Vec::new(),
            pos: 0,
            block_left: 0,
        }
    }

    /// The bytes the decoder's buffers hold (for tests that check nothing was allocated from a
    /// declared length).
    pub fn buffered_capacity(&self) -> usize {
        self.compressed.capacity() + self.out.capacity()
    }

    /// Decodes the next chunk into `self.out`; `false` at the end of the stream.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.block_left == 0 {
            match snappy_block::read_u32(&mut self.inner)? {
                None => return Ok(false),
                Some(n) if n as usize > MAX_BLOCK => {
                    return Err(snappy_block::corrupt(format!(
                        "block length {n} exceeds {MAX_BLOCK}"
                    )))
                }
                Some(n) => self.block_left = n as usize,
            }
            if self.block_left == 0 {
                self.out.clear();
                return Ok(true);
            }
        }
        let len = snappy_block::read_u32(&mut self.inner)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?
            as usize;
        if len == 0 || len > snap::raw::max_compress_len(self.block_left) {
            return Err(snappy_block::corrupt(format!(
                "chunk length {len} does not fit a block of {} bytes",
                self.block_left
            )));
        }
        let n = snappy_block::decode(
            &mut self.inner,
            &mut self.snappy,
            len,
            self.block_left,
            &mut self.compressed,
            &mut self.out,
        )?;
        self.block_left -= n;
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Encodes `data` in Hadoop-snappy framing (one chunk per block). Used by tests and the sample
/// generator; Firehose itself is the producer in production.
pub fn encode(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = snap::raw::Encoder::new();
    for piece in data.chunks(block.max(1)) {
        let c = enc
            .compress_vec(piece)
            .expect("snappy compression of a bounded block");
        out.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_multiple_blocks() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let enc = encode(&data, 256 * 1024);
        assert!(looks_like_block_header(&enc[..16]));
        let mut out = Vec::new();
        Decoder::new(&enc[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn truncation_is_an_unexpected_eof() {
        let enc = encode(b"{\"a\":1}\n{\"a\":2}\n", 1024);
        let err = Decoder::new(&enc[..enc.len() - 3])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn declared_lengths_allocate_nothing_before_their_bytes_arrive() {
        // 12 bytes: the largest block and chunk lengths accepted, then 4 bytes of data.
        let mut head = (MAX_BLOCK as u32).to_be_bytes().to_vec();
        head.extend((snap::raw::max_compress_len(MAX_BLOCK) as u32).to_be_bytes());
        head.extend(b"\x80\x80\x80\x20");
        let started = std::time::Instant::now();
        let mut d = Decoder::new(&head[..]);
        let err = d.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert!(
            d.buffered_capacity() < 128 * 1024,
            "{} bytes buffered",
            d.buffered_capacity()
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // A declared block of 1 GiB is refused as such.
        let mut head = (1u32 << 30).to_be_bytes().to_vec();
        head.extend(16u32.to_be_bytes());
        head.extend(b"\x80\x80\x80\x20");
        let err = Decoder::new(&head[..])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("block length 1073741824"), "{err}");
    }

    #[test]
    fn json_text_is_not_mistaken_for_a_header() {
        assert!(!looks_like_block_header(b"{\"event_id\":\"abc\"}"));
        assert!(!looks_like_block_header(
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        ));
    }
}

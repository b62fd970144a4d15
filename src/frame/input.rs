//! The framers' shared read buffer: one growable window over the decompressed stream.
//!
//! Consumed bytes are dropped by moving the unconsumed tail to the front on the next read, so
//! the window never holds more than one record (bounded by `--max-record-bytes`) plus a read's
//! worth of look-ahead, however large the object is.

use std::io::{self, Read};

const INITIAL_BUFFER: usize = 1024 * 1024;
pub(crate) const READ_SIZE: usize = 256 * 1024;

pub(crate) struct Input<R> {
    inner: R,
    pub(crate) buf: Vec<u8>,
    /// Start of the unconsumed data in `buf`.
    pub(crate) start: usize,
    /// End of valid data in `buf`.
    pub(crate) end: usize,
    eof: bool,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// The buffer never grows past this.
    limit: usize,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R, max_record_bytes: usize) -> Self {
        let limit = max_record_bytes.saturating_add(2 * READ_SIZE);
        Input {
            inner,
            buf: vec![0; INITIAL_BUFFER.min(limit)],
            start: 0,
            end: 0,
            eof: false,
            base: 0,
            limit,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// The unconsumed bytes.
    #[inline]
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    #[inline]
    pub(crate) fn avail(&self) -> usize {
        self.end - self.start
    }

    /// Stream offset of the first unconsumed byte.
    #[inline]
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.avail());
        self.start += n;
    }

    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// Reads once more, first making room for at least `want` unconsumed bytes (capped by the
    /// buffer limit). `false` at the end of the stream.
    pub(crate) fn fill(&mut self, want: usize) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0
            && (self.end == self.buf.len()
                || self.start >= self.buf.len() / 2
                || self.buf.len() - self.start < want)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_SIZE / 4 || self.buf.len() - self.start < want {
            let target = (self.buf.len() * 2)
                .max(self.start + want)
                .max(self.end + READ_SIZE / 4)
                .min(self.limit.max(self.end + READ_SIZE / 4));
            if target > self.buf.len() {
                self.buf.resize(target, 0);
            }
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until at least `want` bytes are unconsumed or the stream ends.
    pub(crate) fn fill_until(&mut self, want: usize) -> io::Result<()> {
        while self.avail() < want && self.fill(want)? {}
        Ok(())
    }

    /// Skips a UTF-8 byte-order mark at the very start of the stream (editors and some SDKs
    /// write one; it is not part of any record).
    pub(crate) fn skip_bom(&mut self) -> io::Result<()> {
        self.fill_until(3)?;
        if self.offset() == 0 && self.data().starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.consume(3);
        }
        Ok(())
    }
}

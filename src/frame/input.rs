//! The framers' shared read buffer: one growable window over the decompressed stream.
//!
//! Consumed bytes are dropped by moving the unconsumed tail to the front on the next read, so
//! the window never holds more than one record (bounded by `--max-record-bytes`) plus a read's
//! worth of look-ahead, however large the object is.
//!
//! Over the decompress thread's chunks ([`Input::take_chunks`]), the window is the chunk
//! itself: the unconsumed tail moves into the free space before the next chunk's data, and the
//! buffer left behind is *retired* whole, its bytes untouched, so that the records framed from
//! it can be passed on in it instead of being copied out (see `record::batch`).

use std::io::{self, Read};

use crate::decode::pump::Chunk;

/// How a reader hands its chunks over whole (see [`Input::take_chunks`]).
pub type TakeChunk<R> = fn(&mut R) -> io::Result<Option<Chunk>>;
/// How a chunk no record was framed from goes straight back to the reader.
pub type GiveChunk<R> = fn(&mut R, Vec<u8>);

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
    /// Stream offset of `buf[0]`, modulo 2^64: a chunk's data starts past its free space, so
    /// this is "negative" at the start of the stream.
    base: u64,
    /// The buffer never grows past this.
    limit: usize,
    /// Set: read whole chunks with this (see the module doc).
    take: Option<(TakeChunk<R>, GiveChunk<R>)>,
    /// The window is a chunk: its bytes are never moved or overwritten, and it is retired when
    /// the window moves on.
    pub(crate) in_chunk: bool,
    /// The first chunk let go of since the framer last took it, with every byte it held as it
    /// was read: the one records framed before may be in. Chunks let go of after it, in the
    /// same search for a record (blank lines, a spooled record), held none and go straight
    /// back, so a whitespace bomb holds no more memory than a record does.
    pub(crate) retired: Option<Vec<u8>>,
    /// The framer's own buffer while the window is a chunk (for the next long record).
    own: Vec<u8>,
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
            take: None,
            in_chunk: false,
            retired: None,
            own: Vec::new(),
        }
    }

    /// Reads `inner` a chunk at a time with `take` from now on (see the module doc).
    pub(crate) fn take_chunks(&mut self, take: TakeChunk<R>, give: GiveChunk<R>) {
        self.take = Some((take, give));
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
        self.base.wrapping_add(self.start as u64)
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
        if let Some((take, _)) = self.take {
            if let Some(read) = self.fill_retiring(take, want)? {
                return Ok(read);
            }
        }
        if self.start > 0
            && (self.end == self.buf.len()
                || self.start >= self.buf.len() / 2
                || self.buf.len() - self.start < want)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.base = self.base.wrapping_add(self.start as u64);
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

    /// [`Input::fill`] over whole chunks. The unconsumed tail moves into the next chunk's free
    /// space when it fits there, and the chunk left is retired with its bytes untouched. A
    /// longer tail (a record of more than `pump::HEAD` bytes) moves into the buffer of the
    /// framer's own, kept from one long record to the next, which is read into by copying and
    /// compacted like any reader's: records framed there are not lent ([`Input::in_chunk`]).
    fn fill_retiring(&mut self, take: TakeChunk<R>, want: usize) -> io::Result<Option<bool>> {
        let tail = self.end - self.start;
        if tail <= crate::decode::pump::HEAD {
            let Some(mut chunk) = take(&mut self.inner)? else {
                self.eof = true;
                return Ok(Some(false));
            };
            let at = chunk.from - tail;
            chunk.buf[at..chunk.from].copy_from_slice(&self.buf[self.start..self.end]);
            self.switch(chunk.buf, at, chunk.to);
            self.in_chunk = true;
            return Ok(Some(true));
        }
        if self.in_chunk {
            let size = (2 * tail)
                .max(want)
                .max(tail + READ_SIZE)
                .min(self.limit.max(tail + READ_SIZE / 4));
            let mut own = std::mem::take(&mut self.own);
            if own.len() < size {
                own.resize(size, 0);
            }
            own[..tail].copy_from_slice(&self.buf[self.start..self.end]);
            self.switch(own, 0, tail);
            self.in_chunk = false;
        }
        // The framer's own buffer, as for any reader.
        Ok(None)
    }

    /// Makes `buf` the window, with the unconsumed bytes at `start..end` of it.
    fn switch(&mut self, buf: Vec<u8>, start: usize, end: usize) {
        let offset = self.offset();
        let old = std::mem::replace(&mut self.buf, buf);
        if self.in_chunk {
            self.retire(old);
        } else {
            self.own = old;
        }
        self.base = offset.wrapping_sub(start as u64);
        self.start = start;
        self.end = end;
    }

    fn retire(&mut self, buf: Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        match (&self.retired, self.take) {
            (None, _) => self.retired = Some(buf),
            (Some(_), Some((_, give))) => give(&mut self.inner, buf),
            (Some(_), None) => {}
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

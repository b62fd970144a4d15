//! Byte counting and capping.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::layer::CapExceeded;

/// A shared byte counter, readable from another thread while the stream is being consumed.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }
}

/// Counts the bytes read through it into a [`Counter`].
pub struct Counting<R> {
    inner: R,
    counter: Counter,
}

impl<R> Counting<R> {
    pub fn new(inner: R, counter: Counter) -> Self {
        Counting { inner, counter }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Counting<super::pump::Pump> {
    /// [`super::pump::Pump::take_chunk`], counted.
    pub fn take_chunk(&mut self) -> io::Result<Option<super::pump::Chunk>> {
        let chunk = self.inner.take_chunk()?;
        if let Some(c) = &chunk {
            self.counter
                .0
                .fetch_add((c.to - c.from) as u64, Ordering::Relaxed);
        }
        Ok(chunk)
    }

    pub fn recycler(&self) -> super::pump::Recycler {
        self.inner.recycler()
    }

    /// A chunk taken and not needed any more, back to the decompress thread.
    pub fn give_back(&mut self, buf: Vec<u8>) {
        self.inner.give_back(buf)
    }
}

/// Fails with [`CapExceeded`] once more than `cap` bytes came through: a decompression bomb
/// becomes a clear error after `cap` bytes of work instead of exhausting memory or disk.
pub struct Limit<R> {
    inner: R,
    seen: u64,
    cap: u64,
}

impl<R> Limit<R> {
    pub fn new(inner: R, cap: u64) -> Self {
        Limit {
            inner,
            seen: 0,
            cap,
        }
    }
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.cap {
            return Err(io::Error::other(CapExceeded { cap: self.cap }));
        }
        Ok(n)
    }
}

/// Counts the bytes a decoder *consumed* from its buffered input (not what was fetched into the
/// buffer, which runs up to a buffer ahead): where in the object a decoding error was met.
pub struct Consumed<B> {
    inner: B,
    counter: Counter,
}

impl<B> Consumed<B> {
    pub fn new(inner: B, counter: Counter) -> Self {
        Consumed { inner, counter }
    }
}

impl<B: std::io::BufRead> std::io::Read for Consumed<B> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<B: std::io::BufRead> std::io::BufRead for Consumed<B> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
        self.inner.consume(n)
    }
}

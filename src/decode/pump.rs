//! Decompression on its own thread.
//!
//! Inflating is the most expensive step per byte; framing, validating and writing rows is the
//! second. Running them on two threads joined by a small bounded channel puts both cores to work
//! and caps the memory between them at `DEPTH × CHUNK`. Chunks are recycled, so the steady state
//! allocates nothing.
//!
//! A chunk is read either through `Read` (copied out) or handed over whole ([`Pump::take_chunk`]):
//! the framer then reads records in the chunk itself and the record stage passes the chunk on to
//! the row stage instead of copying every record out of it — two copies of every decompressed
//! byte saved. Each chunk keeps [`HEAD`] bytes free before its data for the framer to move the
//! unfinished record of the previous chunk into.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;

/// 512 KiB: half as many hand-overs (and thread wake-ups) as 256 KiB, −2 to −5% wall time in
/// A/B pairs on the bench objects; 1 MiB was slower again (+3%).
const CHUNK: usize = 512 * 1024;
const DEPTH: usize = 4;
/// Free bytes before a chunk's data: room for the unfinished record the framer carries over
/// from the chunk before (a longer one is copied into a buffer of its own).
pub const HEAD: usize = 64 * 1024;
/// The length of every chunk buffer.
pub const CHUNK_BUFFER: usize = HEAD + CHUNK;
/// Chunk buffers kept for reuse. Chunks handed over travel on to the row stage and come back
/// from there, so as many can be away as the record stage's queue holds batches.
const RECYCLED: usize = DEPTH + 24;

/// A chunk handed over whole: its bytes are `buf[from..to]`, and at least [`HEAD`] bytes before
/// `from` are free.
#[derive(Debug)]
pub struct Chunk {
    pub buf: Vec<u8>,
    pub from: usize,
    pub to: usize,
}

/// The consuming end: a `Read` over the chunks the background thread produced.
pub struct Pump {
    chunks: Receiver<io::Result<(Vec<u8>, usize)>>,
    recycle: Recycler,
    current: Vec<u8>,
    len: usize,
    pos: usize,
    done: bool,
}

impl Pump {
    /// Starts reading `source` to its end on a new thread.
    pub fn spawn(mut source: Box<dyn Read + Send>) -> io::Result<Pump> {
        let (tx, chunks) = sync_channel::<io::Result<(Vec<u8>, usize)>>(DEPTH);
        let recycle = Recycler::default();
        let recycled = recycle.clone();
        thread::Builder::new()
            .name("decompress".into())
            .spawn(move || loop {
                let mut buf = recycled.take().unwrap_or_else(|| vec![0u8; CHUNK_BUFFER]);
                let (n, error) = fill(&mut source, &mut buf[HEAD..]);
                // Deliver the bytes read before an error first, so nothing decoded is lost.
                if n > 0 && tx.send(Ok((buf, n))).is_err() {
                    return; // the consumer went away: stop decompressing
                }
                match error {
                    Some(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    None if n == 0 => return,
                    None => {}
                }
            })?;
        Ok(Pump {
            chunks,
            recycle,
            current: Vec::new(),
            len: 0,
            pos: 0,
            done: false,
        })
    }
}

/// Reads until `buf` is full, the stream ends or an error occurs; returns the bytes read and
/// the error, if any.
fn fill(source: &mut dyn Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match source.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

impl Pump {
    /// Waits for the next chunk when the current one is used up; `false` at the end.
    fn next(&mut self) -> io::Result<bool> {
        while self.pos == self.len {
            if self.done {
                return Ok(false);
            }
            let previous = std::mem::take(&mut self.current);
            self.give_back(previous);
            match self.chunks.recv() {
                Ok(Ok((buf, n))) => {
                    self.current = buf;
                    self.len = HEAD + n;
                    self.pos = HEAD;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The unread rest of the current chunk, or the next chunk, whole (see [`Chunk`]); `None`
    /// at the end of the stream.
    pub fn take_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if !self.next()? {
            return Ok(None);
        }
        let chunk = Chunk {
            buf: std::mem::take(&mut self.current),
            from: self.pos,
            to: self.len,
        };
        self.pos = 0;
        self.len = 0;
        Ok(Some(chunk))
    }

    /// Where chunks handed over go back to the decompress thread once used.
    pub fn recycler(&self) -> Recycler {
        self.recycle.clone()
    }

    /// Takes back a chunk buffer (see [`Recycler::recycle`]).
    pub(crate) fn give_back(&self, buf: Vec<u8>) {
        self.recycle.recycle(buf)
    }
}

/// Chunk buffers for the decompress thread to reuse: a stack, so that the buffer it takes is
/// the one given back last, the likeliest to be still in a cache. A queue handed out the one
/// given back longest ago: with chunks travelling through the record stage's 8 MiB queue, that
/// one was cold, and the decompress thread took 12% more CPU (`perf`, median of 3).
#[derive(Clone, Default)]
pub struct Recycler(Arc<Mutex<Vec<Vec<u8>>>>);

impl Recycler {
    /// Takes back a buffer once nothing refers to its bytes. Buffers of another size (a framer's
    /// own) are dropped, as are any beyond what the thread keeps.
    pub fn recycle(&self, buf: Vec<u8>) {
        if buf.len() == CHUNK_BUFFER {
            if let Ok(mut kept) = self.0.lock() {
                if kept.len() < RECYCLED {
                    kept.push(buf);
                }
            }
        }
    }

    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok()?.pop()
    }
}

impl Read for Pump {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.next()? {
            return Ok(0);
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

//! Decompression on its own thread.
//!
//! Inflating is the most expensive step per byte; framing, validating and writing rows is the
//! second. Running them on two threads joined by a small bounded channel puts both cores to work
//! and caps the memory between them at `DEPTH × CHUNK`. Chunks are recycled, so the steady state
//! allocates nothing.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread;

const CHUNK: usize = 256 * 1024;
const DEPTH: usize = 4;

/// The consuming end: a `Read` over the chunks the background thread produced.
pub struct Pump {
    chunks: Receiver<io::Result<(Vec<u8>, usize)>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
    done: bool,
}

impl Pump {
    /// Starts reading `source` to its end on a new thread.
    pub fn spawn(mut source: Box<dyn Read + Send>) -> io::Result<Pump> {
        let (tx, chunks) = sync_channel::<io::Result<(Vec<u8>, usize)>>(DEPTH);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(DEPTH + 2);
        thread::Builder::new()
            .name("decompress".into())
            .spawn(move || loop {
                let mut buf = match recycled.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {
                        vec![0u8; CHUNK]
                    }
                };
                let (n, error) = fill(&mut source, &mut buf);
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

impl Read for Pump {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            if self.done {
                return Ok(0);
            }
            let previous = std::mem::take(&mut self.current);
            if previous.capacity() > 0 {
                let _ = self.recycle.try_send(previous);
            }
            match self.chunks.recv() {
                Ok(Ok((buf, n))) => {
                    self.current = buf;
                    self.len = n;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

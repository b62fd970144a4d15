//! Records too large to keep in memory, kept whole in an anonymous temporary file.
//!
//! An oversized record is still a record someone may want back (with a larger
//! `--max-record-bytes`), so its dead letter must hold all of it, not a head. The file has no
//! name (it is unlinked at creation), so it disappears with the last handle even if the process
//! is killed, and it never shows up beside outputs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes spooled to disk; cheap to clone (the file is shared).
#[derive(Debug, Clone)]
pub struct Spooled {
    file: Arc<File>,
    len: u64,
    /// Scratch space (see [`crate::scratch`]), given back with the last clone.
    charge: Arc<std::sync::Mutex<crate::scratch::Charge>>,
}

impl Spooled {
    pub fn new() -> io::Result<Spooled> {
        Ok(Spooled {
            file: Arc::new(tempfile::tempfile()?),
            len: 0,
            charge: Arc::default(),
        })
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.charge
            .lock()
            .map_err(|_| io::Error::other("scratch charge poisoned"))?
            .take(bytes.len() as u64)?;
        (&*self.file).write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader over the whole content, from the start (independent of other readers).
    pub fn reader(&self) -> SpoolReader {
        SpoolReader {
            file: self.file.clone(),
            pos: 0,
            len: self.len,
        }
    }

    /// The first `n` bytes (or all, if fewer).
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n.min(self.len as usize));
        self.reader().take(n as u64).read_to_end(&mut out)?;
        Ok(out)
    }
}

pub struct SpoolReader {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.len - self.pos) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(left);
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// A record being spooled: where it started, and what was kept so far.
pub(crate) struct Held {
    pub offset: u64,
    pub spool: Spooled,
}

impl Held {
    /// The record-level error for a record too large to be one, with all its bytes.
    pub fn too_large(self, max: usize) -> super::Step {
        super::Step::Error {
            offset: self.offset,
            kind: super::FrameErrorKind::TooLarge {
                len: self.spool.len(),
                max,
            },
            raw: self.spool,
        }
    }

    pub fn start(offset: u64, first: &[u8]) -> io::Result<Held> {
        let mut spool = Spooled::new()?;
        spool.append(first)?;
        Ok(Held { offset, spool })
    }
}

//! The local disk a run spends on work in progress, and its bound.
//!
//! A records dead letter is written to a temporary file while its object runs (next to the
//! letter for `dir:` destinations, in the temporary directory for S3 and SQS ones) and kept only
//! if the object succeeds. An object of millions of bad records can therefore write gigabytes
//! that are thrown away when the object fails as a whole — Lambda's `/tmp` is 512 MB unless
//! configured. Every such byte is charged here against one limit for the whole process
//! (`--max-scratch-bytes`); past it, the write fails with a clear error and the object fails
//! permanently instead of filling the disk. Records too large to frame in memory (see
//! `crate::frame::spool`) are charged the same way.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);
static USED: AtomicU64 = AtomicU64::new(0);

/// `--max-scratch-bytes`'s default: room for large letters on a CLI host; a Lambda function
/// with the default 512 MB of `/tmp` needs a lower value or more ephemeral storage.
pub const DEFAULT_MAX_SCRATCH_BYTES: u64 = 1024 * 1024 * 1024;

/// Sets the process-wide limit (unlimited until set: library users choose their own).
pub fn set_limit(bytes: u64) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Bytes held right now by all unfinished scratch files.
pub fn used() -> u64 {
    USED.load(Ordering::Relaxed)
}

/// The limit was reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "scratch space limit reached: {used} of --max-scratch-bytes {limit} bytes \
     (FIREHOSE_REPLAY_MAX_SCRATCH_BYTES) are held by dead letters being written; nothing of the \
     object was committed (raise the limit if the disk has room)"
)]
pub struct Exhausted {
    pub used: u64,
    pub limit: u64,
}

/// Whether `e` is the limit being reached (and not a failing disk or destination).
pub fn is_exhausted(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<Exhausted>())
}

/// The scratch bytes one file holds; given back when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    held: u64,
}

impl Charge {
    /// Takes `n` more bytes, or fails (taking nothing) if that would pass the limit.
    pub fn take(&mut self, n: u64) -> io::Result<()> {
        let limit = LIMIT.load(Ordering::Relaxed);
        USED.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            used.checked_add(n).filter(|&u| u <= limit)
        })
        .map_err(|used| io::Error::new(io::ErrorKind::StorageFull, Exhausted { used, limit }))?;
        self.held += n;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        USED.fetch_sub(self.held, Ordering::SeqCst);
    }
}

/// A writer whose every byte is charged as scratch space.
pub struct Charged<W> {
    inner: W,
    charge: Charge,
}

impl<W> Charged<W> {
    pub fn new(inner: W) -> Self {
        Charged {
            inner,
            charge: Charge::default(),
        }
    }

    /// The writer, and the charge that must live as long as its bytes are scratch.
    pub fn into_parts(self) -> (W, Charge) {
        (self.inner, self.charge)
    }
}

impl<W: Write> Write for Charged<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.charge.take(buf.len() as u64)?;
        let n = self.inner.write(buf)?;
        // A short write gives back what was not written.
        let unwritten = (buf.len() - n) as u64;
        USED.fetch_sub(unwritten, Ordering::SeqCst);
        self.charge.held -= unwritten;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_and_given_back() {
        // The limit is process-wide (and other tests' letters charge it too): the limit itself
        // is tested end to end (tests/it/bad_input.rs); here, a take past any limit fails whole.
        let before = used();
        let mut a = Charge::default();
        a.take(1000).unwrap();
        assert!(used() >= before + 1000);
        let err = a.take(u64::MAX - 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(is_exhausted(&err));
        assert!(err.to_string().contains("--max-scratch-bytes"), "{err}");
        drop(a);
    }
}

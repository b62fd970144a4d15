//! Tagging I/O errors with where they came from.
//!
//! Decoders are stacked `Read`s, so an error surfacing at the top could come from the source
//! (network, disk) or from any decoder. Each source read and each decoder is wrapped so that its
//! errors carry a tag; decoders pass inner errors through untouched, so the first tag wins.

use std::io::{self, Read};

use crate::error::{Cause, Class, Error, Stage};

/// An error from reading the object's raw bytes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceFailure(pub io::Error);

/// An error from a decoder: the data is not valid in its format.
#[derive(Debug, thiserror::Error)]
#[error("{format}: {error}")]
pub struct DecodeFailure {
    pub format: &'static str,
    pub error: io::Error,
}

/// A decompressed size cap was exceeded.
#[derive(Debug, thiserror::Error)]
#[error("decompressed size exceeds {cap} bytes")]
pub struct CapExceeded {
    pub cap: u64,
}

/// Wraps the object's byte source: its errors become [`SourceFailure`]s.
pub struct SourceReader<R>(R);

impl<R> SourceReader<R> {
    pub fn new(inner: R) -> Self {
        SourceReader(inner)
    }
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if is_tagged(&e) {
                e
            } else {
                io::Error::other(SourceFailure(e))
            }
        })
    }
}

/// Wraps one decoder: its own errors become [`DecodeFailure`]s, tagged errors pass through.
pub struct Labelled<R> {
    inner: R,
    format: &'static str,
}

impl<R> Labelled<R> {
    pub fn new(inner: R, format: &'static str) -> Self {
        Labelled { inner, format }
    }
}

impl<R: Read> Read for Labelled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| label(e, self.format))
    }
}

/// Tags an error as a [`DecodeFailure`] of `format`, unless it already carries a tag.
pub fn label(e: io::Error, format: &'static str) -> io::Error {
    if is_tagged(&e) {
        e
    } else {
        io::Error::other(DecodeFailure { format, error: e })
    }
}

fn is_tagged(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| {
        inner.is::<SourceFailure>() || inner.is::<DecodeFailure>() || inner.is::<CapExceeded>()
    })
}

/// Turns an error read from a decoded stream into a classified pipeline error.
pub fn into_error(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<SourceFailure>()) {
        let inner = e.into_inner().expect("checked above");
        let SourceFailure(io) = *inner.downcast::<SourceFailure>().expect("checked above");
        return Error::from_io(Stage::Fetch, io);
    }
    if e.get_ref().is_some_and(|i| i.is::<DecodeFailure>()) {
        let inner = e.into_inner().expect("checked above");
        let DecodeFailure { format, error } =
            *inner.downcast::<DecodeFailure>().expect("checked above");
        let cause = if error.kind() == io::ErrorKind::UnexpectedEof {
            Cause::Truncated { format }
        } else {
            Cause::Corrupt {
                format,
                detail: error.to_string(),
            }
        };
        return Error::permanent(Stage::Decompress, cause);
    }
    if let Some(cap) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<CapExceeded>())
        .map(|c| c.cap)
    {
        return Error::permanent(Stage::Decompress, Cause::DecompressedTooLarge { cap });
    }
    if crate::scratch::is_exhausted(&e) {
        // Retrying would meet the same limit: the object fails, its small letter is kept.
        return Error::permanent(Stage::Frame, Cause::Remote(e.to_string()));
    }
    // Untagged errors come from the framing stage's own reads of in-memory data.
    Error::new(Stage::Frame, Class::Transient, Cause::Io(e))
}

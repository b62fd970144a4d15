//! Where objects come from: open an object as a byte stream, list what is below a prefix.

pub mod local;
pub mod s3;
pub mod unavailable;

use std::io::Read;

use crate::error::Error;
use crate::object::ObjectRef;

/// An object opened for streaming.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    pub etag: Etag,
    /// S3's `Content-Encoding`, when the store has one: names the compression where the bytes
    /// cannot (see [`crate::decode::decompress_object`]).
    pub content_encoding: Option<String>,
}

/// The object's ETag, which row IDs need before the first row is built — but not before
/// decoding starts, so a store that must compute it (a local file's MD5) does so alongside.
pub enum Etag {
    Known(Option<String>),
    Computing(std::thread::JoinHandle<std::io::Result<String>>),
}

impl Etag {
    pub fn resolve(self) -> Result<Option<String>, Error> {
        match self {
            Etag::Known(e) => Ok(e),
            Etag::Computing(handle) => match handle.join() {
                Ok(Ok(e)) => Ok(Some(e)),
                Ok(Err(io)) => Err(Error::from_io(crate::error::Stage::Fetch, io)),
                Err(_) => Err(Error::from_io(
                    crate::error::Stage::Fetch,
                    std::io::Error::other("ETag computation panicked"),
                )),
            },
        }
    }
}

pub trait ObjectStore: Send + Sync {
    /// Opens the object for streaming; fills in its size (and version) when the store knows
    /// them, and says how its ETag will be known.
    fn open(&self, object: &mut ObjectRef) -> Result<Opened, Error>;

    /// Every object whose key starts with `prefix`, in key order.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<ObjectRef>, Error>>;

    /// The bucket (or root name) this store serves.
    fn bucket(&self) -> &str;
}

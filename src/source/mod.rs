//! Where objects come from: open an object as a byte stream, list what is below a prefix.

pub mod local;

use std::io::Read;

use crate::error::Error;
use crate::object::ObjectRef;

pub trait ObjectStore: Send + Sync {
    /// Opens the object for streaming; fills in its ETag and size when the store knows them.
    fn open(&self, object: &mut ObjectRef) -> Result<Box<dyn Read + Send>, Error>;

    /// Every object whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectRef>, Error>;

    /// The bucket (or root name) this store serves.
    fn bucket(&self) -> &str;
}

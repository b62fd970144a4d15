//! A bucket that cannot be read here (no local directory for it, a refused local root): every
//! object in it fails permanently with the reason, instead of being looked for elsewhere.

use futures::future::BoxFuture;

use super::{ObjectStore, Opened};
use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;

/// A bucket whose objects all fail with `why`.
pub struct Unavailable {
    pub bucket: String,
    pub why: String,
}

impl ObjectStore for Unavailable {
    fn open(&self, _: &mut ObjectRef) -> Result<Opened, Error> {
        Err(Error::permanent(
            Stage::Fetch,
            Cause::Io(std::io::Error::other(self.why.clone())),
        ))
    }

    fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<ObjectRef>, Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}

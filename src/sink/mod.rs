//! Rows → a destination.
//!
//! A sink is opened once per object and receives that object's rows in order; `commit` makes them
//! visible (or durable) as a unit where the destination allows it. Dropping a writer without
//! committing abandons the object's rows, which is what a failed object needs. The interface is
//! synchronous because rows are produced on a blocking decode thread; network sinks hand batches
//! to their own tasks.

pub mod ndjson;

use std::str::FromStr;

use crate::error::Error;
use crate::object::ObjectRef;
use crate::row::Row;

pub trait Sink: Send + Sync {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error>;
}

pub trait ObjectWriter: Send {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error>;
    fn commit(self: Box<Self>) -> Result<(), Error>;
}

/// `--sink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// `ndjson:DIR` — one file per object under DIR.
    Ndjson(std::path::PathBuf),
    /// `stdout` — rows as NDJSON on standard output.
    Stdout,
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "stdout" {
            return Ok(SinkSpec::Stdout);
        }
        if let Some(dir) = s.strip_prefix("ndjson:") {
            if dir.is_empty() {
                return Err("`ndjson:` needs a directory, e.g. ndjson:./out".into());
            }
            return Ok(SinkSpec::Ndjson(dir.into()));
        }
        Err(format!(
            "unknown sink `{s}` (expected ndjson:DIR or stdout)"
        ))
    }
}

impl SinkSpec {
    pub fn build(&self) -> Box<dyn Sink> {
        match self {
            SinkSpec::Ndjson(dir) => Box::new(ndjson::NdjsonDir::new(dir.clone())),
            SinkSpec::Stdout => Box::new(ndjson::Stdout),
        }
    }
}

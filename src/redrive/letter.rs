//! A dead letter as read back: where it is ([`Location`]) and what it says ([`Document`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;

use super::*;

/// Where one letter is, so it can be removed.
#[derive(Debug, Clone)]
pub enum Location {
    File(PathBuf),
    S3 {
        bucket: String,
        key: String,
    },
    Sqs {
        queue_url: String,
        receipt_handle: String,
        /// The document itself, when the message only referred to it.
        s3: Option<(String, String)>,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Location::Sqs { queue_url, s3, .. } => match s3 {
                Some((b, k)) => write!(f, "{queue_url} → s3://{b}/{k}"),
                None => write!(f, "{queue_url}"),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LetterObject {
    pub bucket: String,
    pub key: String,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LetterRecord {
    pub ordinal: u64,
    #[serde(default)]
    pub byte_offset: u64,
    #[serde(default)]
    pub stage: Option<String>,
    pub raw: String,
    /// Why it first failed (kept across redrives).
    pub error: String,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub first_failed_at: Option<String>,
    /// The row inside the record that failed (a CloudWatch Logs event); empty: the record.
    #[serde(default)]
    pub sub: Vec<u32>,
}

/// A dead letter as written by `dead_letter`.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub version: u32,
    pub object: LetterObject,
    pub stage: String,
    pub class: String,
    pub error: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub first_failed_at: Option<String>,
    /// Where the object was read from; absent in letters written before it was recorded,
    /// which came from S3 (or a `--source-root` given to `redrive`).
    #[serde(default)]
    pub source: Option<crate::object::Origin>,
    /// Present for records letters: how many records (they are read one at a time from
    /// `body` when redriven, never all at once).
    #[serde(default)]
    pub records: Option<RecordCount>,
    /// The letter's bytes.
    #[serde(skip)]
    pub body: Option<Body>,
}

impl Document {
    /// Reads a letter's header from `body` (records are counted, not kept).
    pub fn read(body: Body, origin: &str) -> Result<Document, Error> {
        let reader = body
            .reader()
            .map_err(|e| redrive_error(format!("{origin}: {e}")))?;
        let mut doc: Document = serde_json::from_reader(reader).map_err(|e| {
            Error::permanent(
                Stage::Parse,
                Cause::Redrive(format!("{origin} is not a dead letter: {e}")),
            )
        })?;
        if doc.version != crate::dead_letter::VERSION {
            return Err(Error::permanent(
                Stage::Parse,
                Cause::Redrive(format!(
                    "{origin}: dead-letter version {} is not supported",
                    doc.version
                )),
            ));
        }
        doc.check_object().map_err(|why| {
            Error::permanent(Stage::Parse, Cause::DeadLetter(format!("{origin}: {why}")))
        })?;
        doc.body = Some(body);
        Ok(doc)
    }

    /// A letter is written by whoever can write to the dead-letter destination, and its
    /// bucket becomes a directory name (the NDJSON output, new dead letters): an S3 object's
    /// bucket must be a bucket name, and a local object's bucket the name of the root it
    /// says it was read from — as the run that wrote it named it.
    fn check_object(&self) -> Result<(), String> {
        match &self.source {
            Some(crate::object::Origin::Local { root }) => {
                let name = root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "local".into());
                if self.object.bucket == name {
                    Ok(())
                } else {
                    Err(format!(
                        "bucket `{}` is not the name of the letter's local source {}",
                        self.object.bucket.escape_debug(),
                        root.display()
                    ))
                }
            }
            _ => crate::object::check_bucket_name(&self.object.bucket),
        }
    }

    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Document, Error> {
        Document::read(Body::Bytes(std::sync::Arc::new(bytes)), origin)
    }

    pub fn object_ref(&self) -> ObjectRef {
        let mut o = ObjectRef::new(&self.object.bucket, &self.object.key);
        o.etag = self.object.etag.clone();
        o.version_id = self.object.version_id.clone();
        o.origin = self.source.clone();
        o
    }
}

#[derive(Debug, Clone)]
pub struct Letter {
    pub location: Location,
    pub doc: Document,
}

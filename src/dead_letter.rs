//! Dead letters: what could not be delivered, kept with its reason so a person can inspect and
//! replay it.
//!
//! A dead letter is one versioned JSON document:
//! `{"version":1,"object":{bucket,key,etag,version_id},"stage","class","error","attempts",
//! "first_failed_at","last_failed_at","records":[{ordinal,byte_offset,stage,raw,error}]?}`
//! — `records` (raw bytes in base64) for record-level failures, absent when the whole object
//! failed. Enough to retry without the original notification.
//!
//! This module writes them to a local directory (`dir:PATH`), as
//! `PATH/<bucket>/<key>.records.json` and `PATH/<bucket>/<key>.object.json`: one per object and
//! kind, so a rerun replaces rather than piles up.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;
use crate::sink::ndjson::mirrored_path;

pub const VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct DeadLetterDir {
    dir: PathBuf,
}

#[derive(Serialize)]
struct ObjectInfo<'a> {
    bucket: &'a str,
    key: &'a str,
    etag: Option<&'a str>,
    version_id: Option<&'a str>,
}

impl<'a> From<&'a ObjectRef> for ObjectInfo<'a> {
    fn from(o: &'a ObjectRef) -> Self {
        ObjectInfo {
            bucket: &o.bucket,
            key: &o.key,
            etag: o.etag.as_deref(),
            version_id: o.version_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct Header<'a> {
    version: u32,
    object: ObjectInfo<'a>,
    stage: Stage,
    class: Class,
    error: &'a str,
    attempts: u32,
    first_failed_at: &'a str,
    last_failed_at: &'a str,
}

#[derive(Serialize)]
struct RecordEntry<'a> {
    ordinal: u64,
    byte_offset: u64,
    stage: Stage,
    raw: String,
    error: &'a str,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn dl_error(e: impl std::fmt::Display, path: &Path) -> Error {
    Error::permanent(
        Stage::Sink,
        Cause::DeadLetter(format!("{}: {e}", path.display())),
    )
}

impl DeadLetterDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DeadLetterDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Records that a whole object failed.
    pub fn object(
        &self,
        object: &ObjectRef,
        error: &Error,
        attempts: u32,
    ) -> Result<PathBuf, Error> {
        let path = mirrored_path(&self.dir, object, ".object.json");
        let at = now();
        let text = error.to_string();
        let header = Header {
            version: VERSION,
            object: object.into(),
            stage: error.stage,
            class: error.class,
            error: &text,
            attempts,
            first_failed_at: &at,
            last_failed_at: &at,
        };
        let mut body = serde_json::to_vec_pretty(&header).expect("serialisable");
        body.push(b'\n');
        write_atomically(&path, &body)?;
        Ok(path)
    }

    /// A writer for one object's failed records, created on the first failure so that clean
    /// objects leave nothing behind.
    pub fn records(&self, object: &ObjectRef) -> RecordLetter {
        RecordLetter {
            path: mirrored_path(&self.dir, object, ".records.json"),
            object: object.clone(),
            out: None,
            count: 0,
        }
    }
}

fn write_atomically(path: &Path, body: &[u8]) -> Result<(), Error> {
    let parent = path.parent().expect("below the dead-letter directory");
    fs::create_dir_all(parent).map_err(|e| dl_error(e, parent))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)
        .map_err(|e| dl_error(e, parent))?;
    tmp.write_all(body).map_err(|e| dl_error(e, path))?;
    tmp.persist(path).map_err(|e| dl_error(e.error, path))?;
    Ok(())
}

/// Streams failed records into one dead letter (memory stays flat however many fail).
pub struct RecordLetter {
    path: PathBuf,
    object: ObjectRef,
    out: Option<BufWriter<tempfile::NamedTempFile>>,
    count: u64,
}

impl RecordLetter {
    pub fn add(
        &mut self,
        ordinal: u64,
        byte_offset: u64,
        stage: Stage,
        raw: &[u8],
        error: &str,
    ) -> Result<(), Error> {
        if self.out.is_none() {
            let parent = self.path.parent().expect("below the dead-letter directory");
            fs::create_dir_all(parent).map_err(|e| dl_error(e, parent))?;
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(parent)
                .map_err(|e| dl_error(e, parent))?;
            let mut out = BufWriter::new(tmp);
            let at = now();
            let header = Header {
                version: VERSION,
                object: (&self.object).into(),
                stage: Stage::Parse,
                class: Class::Permanent,
                error: "records could not be turned into rows; see records[].error",
                attempts: 1,
                first_failed_at: &at,
                last_failed_at: &at,
            };
            let mut head = serde_json::to_vec(&header).expect("serialisable");
            head.pop(); // reopen the object to append `records`
            head.extend_from_slice(b",\"records\":[\n");
            out.write_all(&head).map_err(|e| dl_error(e, &self.path))?;
            self.out = Some(out);
        }
        let out = self.out.as_mut().expect("opened above");
        let entry = RecordEntry {
            ordinal,
            byte_offset,
            stage,
            raw: base64::engine::general_purpose::STANDARD.encode(raw),
            error,
        };
        if self.count > 0 {
            out.write_all(b",\n").map_err(|e| dl_error(e, &self.path))?;
        }
        serde_json::to_writer(&mut *out, &entry).map_err(|e| dl_error(e, &self.path))?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Completes the document and moves it into place; `None` if no record failed.
    pub fn finish(self) -> Result<Option<PathBuf>, Error> {
        let Some(mut out) = self.out else {
            return Ok(None);
        };
        out.write_all(b"\n]}\n")
            .map_err(|e| dl_error(e, &self.path))?;
        let tmp = out
            .into_inner()
            .map_err(|e| dl_error(e.error(), &self.path))?;
        tmp.persist(&self.path)
            .map_err(|e| dl_error(e.error, &self.path))?;
        Ok(Some(self.path))
    }
}

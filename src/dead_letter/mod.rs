//! Dead letters: what could not be delivered, kept with its reason so a person can inspect and
//! replay it.
//!
//! A dead letter is one versioned JSON document:
//! `{"version":1,"object":{bucket,key,etag,version_id},"stage","class","error","attempts",
//! "first_failed_at","last_failed_at","source"?,"records":[{ordinal,byte_offset,stage,raw,error,
//! last_error?,attempts,sub?,first_failed_at?}]?}` — `records` (raw bytes in base64, always the
//! whole record however large) for record-level failures, absent when the whole object failed.
//! `error` is the reason a record first failed and is never replaced; a redrive that fails
//! again adds `last_error` and counts `attempts`. `sub` names the row inside an envelope record
//! (a CloudWatch Logs event) when only that row failed. Enough to retry without the original
//! notification. `source` says where the object was read from — `{"kind":"s3"}` or
//! `{"kind":"local","root":"/abs/dir"}` (the directory that plays the bucket) — so `redrive`
//! reads it from there again; a letter without it (written before it existed) means S3.
//!
//! Destinations (`--dead-letter`):
//! - `dir:PATH` — `PATH/<bucket>/<key>.records.json` and `PATH/<bucket>/<key>.object.json`: one
//!   per object and kind, so a rerun replaces rather than piles up;
//! - `s3://bucket/prefix/` — the same documents as objects
//!   `prefix/YYYY/MM/DD/<bucket>/<key>.<kind>.json` (the UTC day it failed), so redrive can
//!   list them by date;
//! - `sqs:QUEUE_URL` — one message per document, with attributes `class`, `stage`, `kind`; a
//!   document over SQS's 256 KiB limit goes to `--dead-letter-overflow s3://…` and the message
//!   carries a reference (`{"version":1,"object":…,"location":"s3://…"}`) instead.
//!
//! Record letters are spooled to a local temporary file while the object is processed, so
//! memory stays flat however many records fail. For `dir:` that file sits next to the letter and
//! is renamed into place. For `s3://` and `sqs:` it is an anonymous file (unlinked from birth, in
//! no shared directory): another local user cannot read, pre-create or swap it, the upload reads
//! it through the process's own descriptor, and a killed run leaves nothing behind.

pub mod paths;
pub mod remote;
pub mod spec;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;

pub const VERSION: u32 = 1;

/// Where dead letters go.
#[derive(Clone)]
pub enum Destination {
    Dir(PathBuf),
    Remote(std::sync::Arc<remote::Remote>),
}

/// The dead-letter destination of a run.
#[derive(Clone)]
pub struct DeadLetters {
    dest: Destination,
}

/// The local-directory destination (the CLI's default).
pub type DeadLetterDir = DeadLetters;

/// What kind of dead letter a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Records,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Records => "records",
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ObjectInfo<'a> {
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
    /// Where the object was read from, when known; a reader takes a letter without it as S3.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a crate::object::Origin>,
}

/// A record's raw bytes: in memory, or spooled to disk (oversized records).
#[derive(Clone, Copy)]
pub enum Raw<'a> {
    Bytes(&'a [u8]),
    Spooled(&'a crate::frame::Spooled),
}

/// One failed record, with its history across redrives.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub ordinal: u64,
    pub byte_offset: u64,
    pub stage: Stage,
    /// The reason it first failed: never replaced by a later one.
    pub error: &'a str,
    /// Why the latest redrive failed, when that differs from `error`.
    pub last_error: Option<&'a str>,
    /// Tries so far (1 for a record that failed once).
    pub attempts: u32,
    /// When it first failed; `None`: now.
    pub first_failed_at: Option<&'a str>,
    /// The row below the record that failed (log event index, ...); empty: the record.
    pub sub: &'a [u32],
}

impl<'a> Failure<'a> {
    pub fn new(ordinal: u64, byte_offset: u64, stage: Stage, error: &'a str) -> Self {
        Failure {
            ordinal,
            byte_offset,
            stage,
            error,
            last_error: None,
            attempts: 1,
            first_failed_at: None,
            sub: &[],
        }
    }
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

impl DeadLetters {
    /// `dir:PATH`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DeadLetters {
            dest: Destination::Dir(dir.into()),
        }
    }

    pub fn remote(remote: remote::Remote) -> Self {
        DeadLetters {
            dest: Destination::Remote(std::sync::Arc::new(remote)),
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// Where a document goes: its final local path, or (remote) a name for error messages only
    /// — nothing is ever written at a path derived from the object for a remote destination.
    fn local_path(&self, object: &ObjectRef, kind: Kind) -> PathBuf {
        let suffix = format!(".{}.json", kind.name());
        match &self.dest {
            Destination::Dir(dir) => paths::letter_path(dir, object, kind),
            Destination::Remote(_) => PathBuf::from(format!(
                "dead-letter spool of s3://{}/{}{suffix}",
                object.bucket, object.key
            )),
        }
    }

    /// A file to build a document in: next to `path` for `dir:` (renamed into place
    /// atomically), anonymous for a remote destination (see the module notes).
    fn spool_file(&self, path: &Path) -> Result<Spool, Error> {
        match &self.dest {
            Destination::Dir(dir) => {
                let parent = path.parent().expect("below the dead-letter directory");
                crate::files::create_tree(dir, parent).map_err(|e| dl_error(e, parent))?;
                crate::files::tempfile_for(path)
                    .map(Spool::Local)
                    .map_err(|e| dl_error(e, parent))
            }
            Destination::Remote(_) => tempfile::tempfile()
                .map(Spool::Anonymous)
                .map_err(|e| dl_error(e, &std::env::temp_dir())),
        }
    }

    /// Keeps a finished document that is in `file`; returns where it went.
    fn deliver(
        &self,
        object: &ObjectRef,
        kind: Kind,
        header: &HeaderInfo,
        file: Spool,
        path: &Path,
    ) -> Result<String, Error> {
        match (&self.dest, file) {
            (Destination::Dir(_), Spool::Local(file)) => {
                file.persist(path).map_err(|e| dl_error(e.error, path))?;
                Ok(path.display().to_string())
            }
            (Destination::Remote(r), Spool::Anonymous(file)) => {
                r.deliver(object, kind, header, file)
            }
            _ => unreachable!("spool_file picks the spool that matches the destination"),
        }
    }

    /// Records that a whole object failed.
    pub fn object(
        &self,
        object: &ObjectRef,
        error: &Error,
        attempts: u32,
    ) -> Result<String, Error> {
        let path = self.local_path(object, Kind::Object);
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
            source: object.origin.as_ref(),
        };
        let mut body = serde_json::to_vec_pretty(&header).expect("serialisable");
        body.push(b'\n');
        let mut file = self.spool_file(&path)?;
        file.write_all(&body).map_err(|e| dl_error(e, &path))?;
        let info = HeaderInfo {
            class: error.class,
            stage: error.stage,
        };
        self.deliver(object, Kind::Object, &info, file, &path)
    }

    /// A writer for one object's failed records, created on the first failure so that clean
    /// objects leave nothing behind.
    pub fn records(&self, object: &ObjectRef) -> RecordLetter {
        RecordLetter {
            path: self.local_path(object, Kind::Records),
            object: object.clone(),
            out: None,
            count: 0,
            dest: self.clone(),
            first_failed_at: None,
            attempts: 1,
        }
    }
}

/// The class and stage a document reports (message attributes for SQS).
#[derive(Debug, Clone, Copy)]
pub struct HeaderInfo {
    pub class: Class,
    pub stage: Stage,
}

/// The file a document is built in before it is delivered.
pub(crate) enum Spool {
    /// `dir:`: a temporary file next to the letter, renamed into place.
    Local(tempfile::NamedTempFile),
    /// Remote: a file with no name that only this process holds.
    Anonymous(fs::File),
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Spool::Local(f) => f.write(buf),
            Spool::Anonymous(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Spool::Local(f) => f.flush(),
            Spool::Anonymous(f) => f.flush(),
        }
    }
}

/// Streams failed records into one dead letter (memory stays flat however many fail).
pub struct RecordLetter {
    path: PathBuf,
    object: ObjectRef,
    /// Charged as scratch space until delivered (see [`crate::scratch`]).
    out: Option<BufWriter<crate::scratch::Charged<Spool>>>,
    count: u64,
    dest: DeadLetters,
    first_failed_at: Option<String>,
    attempts: u32,
}

impl RecordLetter {
    /// Carries the history of the letter being redriven into this one.
    pub fn carry(&mut self, first_failed_at: Option<String>, attempts: u32) {
        self.first_failed_at = first_failed_at;
        self.attempts = attempts.max(1);
    }

    pub fn add(
        &mut self,
        ordinal: u64,
        byte_offset: u64,
        stage: Stage,
        raw: &[u8],
        error: &str,
    ) -> Result<(), Error> {
        self.add_failure(
            &Failure::new(ordinal, byte_offset, stage, error),
            Raw::Bytes(raw),
        )
    }

    /// Appends one record. The raw bytes are base64-encoded straight into the spooled letter,
    /// so a record of any size costs constant memory.
    pub fn add_failure(&mut self, f: &Failure<'_>, raw: Raw<'_>) -> Result<(), Error> {
        let path = self.path.clone();
        let io = |e: std::io::Error| {
            if crate::scratch::is_exhausted(&e) {
                // Not the destination's fault: the object's bad records outgrew the bound.
                Error::permanent(Stage::Parse, Cause::Remote(e.to_string()))
            } else {
                dl_error(e, &path)
            }
        };
        if self.out.is_none() {
            let tmp = self.dest.spool_file(&self.path)?;
            let mut out = BufWriter::new(crate::scratch::Charged::new(tmp));
            let at = now();
            let first = self.first_failed_at.clone().unwrap_or_else(|| at.clone());
            let header = Header {
                version: VERSION,
                object: (&self.object).into(),
                stage: Stage::Parse,
                class: Class::Permanent,
                error: "records could not be turned into rows; see records[].error",
                attempts: self.attempts,
                first_failed_at: &first,
                last_failed_at: &at,
                source: self.object.origin.as_ref(),
            };
            let mut head = serde_json::to_vec(&header).expect("serialisable");
            head.pop(); // reopen the object to append `records`
            head.extend_from_slice(b",\"records\":[\n");
            out.write_all(&head).map_err(io)?;
            self.out = Some(out);
        }
        let out = self.out.as_mut().expect("opened above");
        if self.count > 0 {
            out.write_all(b",\n").map_err(io)?;
        }
        let stage = serde_json::to_string(&f.stage).expect("serialisable");
        write!(
            out,
            "{{\"ordinal\":{},\"byte_offset\":{},\"stage\":{stage},\"raw\":\"",
            f.ordinal, f.byte_offset
        )
        .map_err(io)?;
        {
            let mut enc = base64::write::EncoderWriter::new(
                &mut *out,
                &base64::engine::general_purpose::STANDARD,
            );
            match raw {
                Raw::Bytes(b) => enc.write_all(b).map_err(io)?,
                Raw::Spooled(s) => {
                    std::io::copy(&mut s.reader(), &mut enc).map_err(io)?;
                }
            }
            enc.finish().map_err(io)?;
        }
        out.write_all(b"\",\"error\":").map_err(io)?;
        serde_json::to_writer(&mut *out, f.error).map_err(|e| dl_error(e, &path))?;
        if let Some(last) = f.last_error.filter(|l| *l != f.error) {
            out.write_all(b",\"last_error\":").map_err(io)?;
            serde_json::to_writer(&mut *out, last).map_err(|e| dl_error(e, &path))?;
        }
        write!(out, ",\"attempts\":{}", f.attempts.max(1)).map_err(io)?;
        if !f.sub.is_empty() {
            out.write_all(b",\"sub\":").map_err(io)?;
            serde_json::to_writer(&mut *out, f.sub).map_err(|e| dl_error(e, &path))?;
        }
        if let Some(first) = f.first_failed_at {
            out.write_all(b",\"first_failed_at\":").map_err(io)?;
            serde_json::to_writer(&mut *out, first).map_err(|e| dl_error(e, &path))?;
        }
        out.write_all(b"}").map_err(io)?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Completes the document and delivers it; `None` if no record failed.
    pub fn finish(self) -> Result<Option<String>, Error> {
        let Some(mut out) = self.out else {
            return Ok(None);
        };
        out.write_all(b"\n]}\n")
            .map_err(|e| dl_error(e, &self.path))?;
        let (tmp, _charge) = out
            .into_inner()
            .map_err(|e| dl_error(e.error(), &self.path))?
            .into_parts();
        let info = HeaderInfo {
            class: Class::Permanent,
            stage: Stage::Parse,
        };
        self.dest
            .deliver(&self.object, Kind::Records, &info, tmp, &self.path)
            .map(Some)
    }
}

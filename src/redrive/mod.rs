//! `firehose-replay redrive URI`: read dead letters back and deliver what they hold.
//!
//! An object letter names an object that failed as a whole: it is processed again from its
//! source, through the normal pipeline and ledger. A records letter holds the raw bytes of the
//! records (or refused rows) of one object: they are turned into rows again — with the row IDs
//! they would have had, so nothing is double-counted — and written to the sink. A letter is
//! removed only once everything in it was delivered; records that still fail stay in a letter
//! that replaces it.

pub mod body;

use std::path::{Path, PathBuf};

pub use body::{Body, RecordCount};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::dead_letter::{DeadLetters, Failure, Raw};
use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;
use crate::pipeline::{build_row, row_builder, Settings};
use crate::record::{validate, Emitted, Unwrapper};
use crate::row::{id, ObjectSeed, Row};
use crate::sink::Sink;

/// Where dead letters are read from (the same URIs as `--dead-letter`).
#[derive(Clone)]
pub enum Source {
    Dir(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
    Sqs {
        sqs: aws_sdk_sqs::Client,
        s3: aws_sdk_s3::Client,
        queue_url: String,
    },
}

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

fn redrive_error(msg: impl std::fmt::Display) -> Error {
    Error::new(
        Stage::Fetch,
        Class::Transient,
        Cause::Redrive(msg.to_string()),
    )
}

/// Downloads an S3 object into an anonymous temporary file, streaming: a letter may be larger
/// than memory.
async fn get_s3(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Body, Error> {
    use std::io::Write;
    let resp = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| crate::source::s3::classify(Stage::Fetch, "GetObject", e))?;
    let local = |e: std::io::Error| redrive_error(format!("s3://{bucket}/{key}: {e}"));
    let mut file = tempfile::tempfile().map_err(local)?;
    let mut body = resp.body;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| redrive_error(format!("s3://{bucket}/{key}: {e}")))?
    {
        file.write_all(&chunk).map_err(local)?;
    }
    Ok(Body::Temp(std::sync::Arc::new(file)))
}

impl Source {
    /// Whether a letter from here may say which local directory its object is read from.
    ///
    /// Letters in a local `dir:` were written by a local run of someone who can write there
    /// anyway; letters in S3 or SQS can be planted by anyone who may write to the bucket or
    /// send to the queue, and must not make `redrive` read (and forward to the sink and to new
    /// letters) a file of their choosing on this host.
    pub fn trusts_local_roots(&self) -> bool {
        matches!(self, Source::Dir(_))
    }

    /// Every dead letter at the source. SQS messages are received (and hidden for
    /// `visibility_secs`) until the queue answers empty.
    pub async fn list(&self, visibility_secs: i32) -> Result<Vec<Letter>, Error> {
        let mut out = Vec::new();
        match self {
            Source::Dir(dir) => {
                let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_file())
                    .map(|e| e.into_path())
                    .filter(|p| {
                        let name = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        !name.starts_with('.')
                            && (name.ends_with(".object.json") || name.ends_with(".records.json"))
                    })
                    .collect();
                files.sort();
                for p in files {
                    let origin = p.display().to_string();
                    let doc = Document::read(Body::File(p.clone()), &origin)?;
                    out.push(Letter {
                        location: Location::File(p),
                        doc,
                    });
                }
            }
            Source::S3 {
                client,
                bucket,
                prefix,
            } => {
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| {
                        crate::source::s3::classify(Stage::Fetch, "ListObjectsV2", e)
                    })?;
                    for o in page.contents() {
                        let Some(key) = o.key() else { continue };
                        if !key.ends_with(".json") {
                            continue;
                        }
                        let body = get_s3(client, bucket, key).await?;
                        let doc = Document::read(body, &format!("s3://{bucket}/{key}"))?;
                        out.push(Letter {
                            location: Location::S3 {
                                bucket: bucket.clone(),
                                key: key.to_string(),
                            },
                            doc,
                        });
                    }
                }
            }
            Source::Sqs { sqs, s3, queue_url } => loop {
                let resp = sqs
                    .receive_message()
                    .queue_url(queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .visibility_timeout(visibility_secs)
                    .send()
                    .await
                    .map_err(|e| {
                        redrive_error(format!(
                            "ReceiveMessage {queue_url}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        ))
                    })?;
                let messages = resp.messages();
                if messages.is_empty() {
                    break;
                }
                for m in messages {
                    let body = m.body().unwrap_or_default();
                    let receipt_handle = m.receipt_handle().unwrap_or_default().to_string();
                    let v: Value = serde_json::from_str(body).map_err(|e| {
                        Error::permanent(
                            Stage::Parse,
                            Cause::Redrive(format!(
                                "SQS message {}: {e}",
                                m.message_id().unwrap_or("?")
                            )),
                        )
                    })?;
                    let (doc, s3_ref) = match v.get("location").and_then(Value::as_str) {
                        Some(loc) => {
                            let uri: crate::source::s3::S3Uri =
                                loc.parse().map_err(redrive_error)?;
                            let letter = get_s3(s3, &uri.bucket, &uri.key).await?;
                            (Document::read(letter, loc)?, Some((uri.bucket, uri.key)))
                        }
                        None => (
                            Document::from_bytes(body.as_bytes().to_vec(), "SQS message")?,
                            None,
                        ),
                    };
                    out.push(Letter {
                        location: Location::Sqs {
                            queue_url: queue_url.clone(),
                            receipt_handle,
                            s3: s3_ref,
                        },
                        doc,
                    });
                }
            },
        }
        Ok(out)
    }

    /// Removes a letter that was delivered.
    pub async fn remove(&self, location: &Location) -> Result<(), Error> {
        match (self, location) {
            (_, Location::File(p)) => {
                std::fs::remove_file(p).map_err(|e| redrive_error(format!("{}: {e}", p.display())))
            }
            (Source::S3 { client, .. }, Location::S3 { bucket, key }) => {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| crate::source::s3::classify(Stage::Sink, "DeleteObject", e))?;
                Ok(())
            }
            (
                Source::Sqs { sqs, s3, .. },
                Location::Sqs {
                    queue_url,
                    receipt_handle,
                    s3: doc,
                },
            ) => {
                if let Some((bucket, key)) = doc {
                    s3.delete_object()
                        .bucket(bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| crate::source::s3::classify(Stage::Sink, "DeleteObject", e))?;
                }
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt_handle)
                    .send()
                    .await
                    .map_err(|e| {
                        redrive_error(format!(
                            "DeleteMessage {queue_url}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        ))
                    })?;
                Ok(())
            }
            _ => Err(redrive_error(format!(
                "cannot remove {location} from this source"
            ))),
        }
    }
}

/// What redriving a records letter came to.
#[derive(Debug, Default)]
pub struct RecordsOutcome {
    pub delivered: u64,
    /// Of the delivered, those the sink held already and left out (`--dedup merge`).
    pub already_present: u64,
    /// Where the records that still fail were kept (a new letter), if any did.
    pub still_failing: u64,
    pub new_letter: Option<String>,
}

/// Turns a records letter's records into rows again and writes them to `sink`. Blocking.
///
/// Records refused by a sink (`stage: sink`) are complete rows: they are sent as they are, with
/// the ID in their row-ID column. Others go through the pipeline's own row path — envelope,
/// `--map`, row ID from their original position, metadata columns — so each becomes the row the
/// pipeline would have written. A record that fails again keeps its original reason (`error`);
/// the new one is `last_error`, and `attempts` and `first_failed_at` carry over.
pub fn redrive_records(
    doc: &Document,
    settings: &Settings,
    sink: &dyn Sink,
    dead_letters: &DeadLetters,
) -> Result<RecordsOutcome, Error> {
    let object = doc.object_ref();
    let seed = ObjectSeed::new(&object);
    let mut builder = row_builder(settings, &object);
    let mut mapped = Vec::new();
    // A distinct identity for the sink, so a file sink writes these rows beside the object's
    // original output instead of replacing it.
    let mut target = object.clone();
    target.key.push_str(".redriven");
    let mut writer = sink.open(&target)?;
    let mut letter = dead_letters.records(&object);
    letter.carry(doc.first_failed_at.clone(), doc.attempts.saturating_add(1));
    let mut out = RecordsOutcome::default();
    let Some(body) = &doc.body else {
        return Err(redrive_error("the letter's bytes are not at hand"));
    };
    let reader = body
        .reader()
        .map_err(|e| redrive_error(format!("reading the letter: {e}")))?;
    let walked = body::for_each_record(reader, |r: LetterRecord| -> Result<(), Error> {
        let stage = match r.stage.as_deref() {
            Some("sink") => Stage::Sink,
            Some("frame") => Stage::Frame,
            _ => Stage::Parse,
        };
        let mut still = |raw: &[u8], sub: &[u32], why: &str| -> Result<(), Error> {
            let failure = Failure {
                ordinal: r.ordinal,
                byte_offset: r.byte_offset,
                stage,
                error: &r.error,
                last_error: Some(why),
                attempts: r.attempts.unwrap_or(1).saturating_add(1),
                first_failed_at: r
                    .first_failed_at
                    .as_deref()
                    .or(doc.first_failed_at.as_deref()),
                sub,
            };
            letter.add_failure(&failure, Raw::Bytes(raw))
        };
        let raw = match base64::engine::general_purpose::STANDARD.decode(&r.raw) {
            Ok(b) => b,
            Err(e) => {
                still(
                    &[],
                    &r.sub,
                    &format!("unreadable raw bytes in the dead letter: {e}"),
                )?;
                out.still_failing += 1;
                return Ok(());
            }
        };
        if raw.len() > settings.max_record_bytes {
            let why = format!(
                "record of {} bytes exceeds --max-record-bytes ({})",
                raw.len(),
                settings.max_record_bytes
            );
            still(&raw, &r.sub, &why)?;
            out.still_failing += 1;
            return Ok(());
        }
        if stage == Stage::Sink {
            if let Err(e) = validate(&raw) {
                still(&raw, &r.sub, &e.to_string())?;
                out.still_failing += 1;
                return Ok(());
            }
            let column = settings.row_id_column.as_deref().unwrap_or("_row_id");
            let rid = match id::lookup(&raw, &[column.to_string()]) {
                Ok(Some(v)) => id::from_field(v),
                _ => seed.id(r.byte_offset, &r.sub),
            };
            let mut row = Row::whole(&rid, r.ordinal, &raw);
            row.byte_offset = r.byte_offset;
            writer.write_row(&row)?;
            out.delivered += 1;
            return Ok(());
        }
        // Through the envelope, as the pipeline did: a record may carry several rows (log
        // events); only the one that failed is redriven when the letter names it.
        let mut unwrapper = Unwrapper::new(settings.envelope, settings.max_record_bytes);
        let mut delivered = 0u64;
        let mut failed: Vec<(Vec<u32>, String)> = Vec::new();
        let mut emit = |e: Emitted<'_>| -> Result<(), Redrive> {
            match e {
                Emitted::Row(p) => {
                    if !r.sub.is_empty() && p.sub != r.sub.as_slice() {
                        return Ok(());
                    }
                    match build_row(
                        settings,
                        &mut builder,
                        &mut mapped,
                        p,
                        r.ordinal,
                        r.byte_offset,
                    ) {
                        Ok(row) => {
                            writer.write_row(&row).map_err(Redrive::Sink)?;
                            delivered += 1;
                        }
                        Err(why) => failed.push((p.sub.to_vec(), why)),
                    }
                }
                Emitted::Failed { sub, message } => {
                    if r.sub.is_empty() || sub == r.sub.as_slice() {
                        failed.push((sub.to_vec(), message));
                    }
                }
            }
            Ok(())
        };
        match unwrapper.unwrap(&raw, false, &mut emit) {
            Ok(_) => {}
            Err(Redrive::Record(kind)) => failed.push((r.sub.clone(), kind.to_string())),
            Err(Redrive::Sink(e)) => return Err(e),
        }
        out.delivered += delivered;
        for (sub, why) in failed {
            still(&raw, &sub, &why)?;
            out.still_failing += 1;
        }
        Ok(())
    });
    match walked {
        Ok(result) => result?,
        Err(e) => {
            return Err(Error::permanent(
                Stage::Parse,
                Cause::Redrive(format!("the letter's records cannot be read: {e}")),
            ))
        }
    }
    if out.delivered == 0 {
        // Nothing to write: no empty `<key>.redriven.ndjson` (nor an earlier one replaced by
        // nothing); the writer is dropped uncommitted.
        drop(writer);
        out.new_letter = letter.finish()?;
        return Ok(out);
    }
    let committed = writer.commit()?;
    for r in &committed.rejected {
        letter.add(r.ordinal, r.byte_offset, Stage::Sink, &r.row, &r.error)?;
        out.still_failing += 1;
        out.delivered -= 1;
    }
    if let Some(inserted) = committed.inserted {
        out.already_present = out.delivered.saturating_sub(inserted);
    }
    out.new_letter = letter.finish()?;
    Ok(out)
}

/// Why emitting a redriven row stopped.
enum Redrive {
    Record(crate::record::RecordErrorKind),
    Sink(Error),
}

impl From<crate::record::RecordErrorKind> for Redrive {
    fn from(k: crate::record::RecordErrorKind) -> Self {
        Redrive::Record(k)
    }
}

/// `dir:PATH` or a bare path.
pub fn dir_of(spec: &str) -> Option<&Path> {
    let d = spec.strip_prefix("dir:").unwrap_or(spec);
    (!d.is_empty() && !d.contains("://") && !d.starts_with("sqs:")).then(|| Path::new(d))
}

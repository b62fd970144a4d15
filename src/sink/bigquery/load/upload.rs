//! Google's resumable upload protocol, which creates a load job with its data.
//!
//! A POST with the job resource opens an upload session, the file follows in chunks (a
//! multiple of 256 KiB each), and the job is created only when the last byte arrives. A failed
//! chunk is not resent blindly: the session is asked how much it has (`Content-Range: bytes
//! */TOTAL` → `308` with `Range`) and the upload resumes from there; a session that is gone
//! (404/410) is started over. Files are read one chunk at a time, never whole.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::jobs::{LoadJobs, Submitted};
use crate::error::{Class, Error};
use crate::sink::bigquery::api_error::{self, sink_error, Fail};
use crate::sink::bigquery::rest::segment;

/// Upload chunks must be multiples of this (Google's resumable upload protocol); only the last
/// chunk of a file may be shorter.
pub const CHUNK_GRANULARITY: usize = 256 * 1024;
/// Large enough that per-request overhead is negligible, small enough that a retried chunk
/// costs little and memory stays bounded.
pub const DEFAULT_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// What opening an upload session came to.
enum Start {
    Session(reqwest::Url),
    Duplicate,
}

/// What one PUT to an upload session came to.
enum PutAnswer {
    /// The upload is complete and the job was created (or existed already).
    Done(Submitted),
    /// `308`: the session holds bytes `0..next`.
    Incomplete(u64),
    /// The session expired or was never valid: start a new one.
    Gone(String),
}

/// What uploading into one session came to.
enum Upload {
    Done(Submitted),
    SessionGone(String),
}

impl LoadJobs {
    /// Opens a resumable upload session (POST with the job resource). A 409 `duplicate` here
    /// means the job ID is taken: the job exists and nothing needs uploading.
    async fn start_session_once(&self, job_id: &str, total: u64) -> Result<Start, Fail> {
        let url = format!(
            "{}/upload/bigquery/v2/projects/{}/jobs?uploadType=resumable",
            self.rest.base,
            segment(&self.table.project)
        );
        let body = serde_json::to_vec(&self.job_resource(job_id)).expect("JSON values serialize");
        let req = self
            .rest
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .header("X-Upload-Content-Type", "application/octet-stream")
            .header("X-Upload-Content-Length", total.to_string())
            .body(body);
        let reply = self.rest.call(req).await?;
        if reply.is_duplicate() {
            return Ok(Start::Duplicate);
        }
        if !(200..300).contains(&reply.status) {
            return Err(reply.fail());
        }
        let location = reply
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Fail::transient(format!(
                    "HTTP {} without a Location header (no upload session)",
                    reply.status
                ))
            })?;
        // Google answers with an absolute URI; a relative one is resolved like a browser would.
        let base = reqwest::Url::parse(&url)
            .map_err(|e| Fail::transient(format!("bad upload URL {url}: {e}")))?;
        base.join(location)
            .map(Start::Session)
            .map_err(|e| Fail::transient(format!("bad upload session URI: {e}")))
    }

    /// One PUT to the session: a chunk, or (empty, `bytes */TOTAL`) a status query.
    async fn put_once(
        &self,
        session: &reqwest::Url,
        range: &str,
        body: Bytes,
    ) -> Result<PutAnswer, Fail> {
        let mut req = self
            .rest
            .http
            .put(session.clone())
            .header(reqwest::header::CONTENT_RANGE, range)
            .body(body);
        // The session URI itself authorizes the upload; the token is added only when it points
        // back at the API host, so that a redirected session can never receive it.
        let same_origin = reqwest::Url::parse(&self.rest.base)
            .map(|b| b.origin() == session.origin())
            .unwrap_or(false);
        if same_origin {
            req = self.rest.authorized(req).await?;
        }
        let reply = api_error::send(req).await?;
        match reply.status {
            200 | 201 => Ok(PutAnswer::Done(Submitted::Created)),
            308 => {
                // `Range: bytes=0-N` = bytes 0..=N are kept; no header = none are.
                let next = reply
                    .headers
                    .get(reqwest::header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().strip_prefix("bytes="))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(_, end)| end.trim().parse::<u64>().ok())
                    .map_or(0, |end| end + 1);
                Ok(PutAnswer::Incomplete(next))
            }
            409 if reply.is_duplicate() => Ok(PutAnswer::Done(Submitted::AlreadyExists)),
            410 => Ok(PutAnswer::Gone(format!(
                "HTTP 410: {}",
                reply.api_error().1
            ))),
            404 => {
                // The job is inserted with the last byte, so the final PUT can carry the job's
                // own "Not found: Table …"; that is permanent, unlike an expired session.
                let (_, message) = reply.api_error();
                if message.starts_with("Not found: Table")
                    || message.starts_with("Not found: Dataset")
                    || message.starts_with("Not found: Project")
                {
                    Err(reply.fail())
                } else {
                    Ok(PutAnswer::Gone(format!("HTTP 404: {message}")))
                }
            }
            _ => Err(reply.fail()),
        }
    }

    /// Uploads the whole file into one session, resuming after failures from what the session
    /// reports it holds.
    async fn upload(
        &self,
        job_id: &str,
        session: &reqwest::Url,
        file: &Arc<File>,
        path: &Path,
        total: u64,
    ) -> Result<Upload, Error> {
        let what = format!("uploading load job {job_id} into {}", self.table);
        let mut backoff = self.rest.policy.backoff();
        let mut offset = 0u64;
        // The last chunk read, kept so a retry of the same range does not read it again.
        let mut cached: Option<(u64, Bytes)> = None;
        loop {
            let (why, quota) = if offset < total || total == 0 {
                let (range, body) = if total == 0 {
                    ("bytes */0".to_string(), Bytes::new())
                } else {
                    let len = (total - offset).min(self.chunk_bytes as u64) as usize;
                    let body = match &cached {
                        Some((at, b)) if *at == offset && b.len() == len => b.clone(),
                        _ => {
                            let b = read_chunk(file, path, offset, len).await?;
                            cached = Some((offset, b.clone()));
                            b
                        }
                    };
                    let end = offset + len as u64 - 1;
                    (format!("bytes {offset}-{end}/{total}"), body)
                };
                tracing::debug!(job_id, %range, "upload chunk");
                match self.put_once(session, &range, body).await {
                    Ok(PutAnswer::Done(s)) => return Ok(Upload::Done(s)),
                    Ok(PutAnswer::Gone(why)) => return Ok(Upload::SessionGone(why)),
                    Ok(PutAnswer::Incomplete(next)) if next > offset => {
                        offset = next;
                        // Progress: the next stall gets the full retry budget again.
                        backoff = self.rest.policy.backoff();
                        continue;
                    }
                    Ok(PutAnswer::Incomplete(next)) => (
                        format!("the session kept nothing of the chunk (holds {next} bytes)"),
                        false,
                    ),
                    Err(f) if !f.transient => {
                        return Err(sink_error(Class::Permanent, format!("{what}: {}", f.why)))
                    }
                    Err(f) => (f.why, f.quota),
                }
            } else {
                (
                    "all bytes sent but the upload is not complete".to_string(),
                    false,
                )
            };
            // Recovery: back off, ask the session how much it holds, resume from there. A chunk
            // may have been kept even though its answer was lost, or kept only in part.
            let (mut why, mut quota) = (why, quota);
            loop {
                let Some(delay) = backoff.next(quota) else {
                    return Err(sink_error(
                        Class::Transient,
                        format!("{what}: upload stalled at byte {offset} of {total}: {why}"),
                    ));
                };
                tracing::debug!(
                    job_id,
                    offset,
                    delay_ms = delay.as_millis() as u64,
                    "upload chunk failed ({why}); querying the session"
                );
                tokio::time::sleep(delay).await;
                match self
                    .put_once(session, &format!("bytes */{total}"), Bytes::new())
                    .await
                {
                    Ok(PutAnswer::Incomplete(next)) => {
                        offset = next;
                        break;
                    }
                    Ok(PutAnswer::Done(s)) => return Ok(Upload::Done(s)),
                    Ok(PutAnswer::Gone(why)) => return Ok(Upload::SessionGone(why)),
                    Err(f) if !f.transient => {
                        return Err(sink_error(Class::Permanent, format!("{what}: {}", f.why)))
                    }
                    Err(f) => (why, quota) = (f.why, f.quota),
                }
            }
        }
    }

    /// Creates job `job_id` loading the file at `data` (newline-delimited JSON) by resumable
    /// upload. The job exists once this returns `Ok`; it has not necessarily finished.
    ///
    /// A transient error may be ambiguous — the last chunk may have arrived and the job been
    /// created even though its answer was lost — so look the job up before anything else.
    pub async fn submit(&self, job_id: &str, data: &Path) -> Result<Submitted, Error> {
        let (file, total) = open(data).await?;
        tracing::info!(job_id, table = %self.table, bytes = total, "submitting BigQuery load job");
        let what = format!(
            "starting the upload of load job {job_id} into {}",
            self.table
        );
        let mut sessions = 0usize;
        loop {
            sessions += 1;
            let session = match self
                .rest
                .with_retries(&what, || self.start_session_once(job_id, total))
                .await?
            {
                Start::Session(uri) => uri,
                Start::Duplicate => {
                    tracing::info!(job_id, "BigQuery load job exists already; not uploading");
                    return Ok(Submitted::AlreadyExists);
                }
            };
            match self.upload(job_id, &session, &file, data, total).await? {
                Upload::Done(s) => {
                    if s == Submitted::AlreadyExists {
                        tracing::info!(job_id, "BigQuery load job exists already");
                    } else {
                        tracing::info!(job_id, bytes = total, "BigQuery load job created");
                    }
                    return Ok(s);
                }
                Upload::SessionGone(why) => {
                    if sessions >= self.rest.policy.max_attempts.max(1) {
                        return Err(sink_error(
                            Class::Transient,
                            format!("{what}: upload session lost {sessions} times: {why}"),
                        ));
                    }
                    tracing::warn!(job_id, "upload session gone ({why}); starting over");
                }
            }
        }
    }
}

/// Local file errors: a missing or unreadable file, or one that shrank under us, stays so.
fn file_error(path: &Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind;
    let class = match e.kind() {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::InvalidData
        | ErrorKind::InvalidInput
        | ErrorKind::UnexpectedEof => Class::Permanent,
        _ => Class::Transient,
    };
    sink_error(class, format!("reading {}: {e}", path.display()))
}

fn join_error(e: tokio::task::JoinError) -> Error {
    sink_error(Class::Transient, format!("file reader task failed: {e}"))
}

/// Opens the file and takes its length, off the async threads.
async fn open(path: &Path) -> Result<(Arc<File>, u64), Error> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = File::open(&owned)?;
        let len = f.metadata()?.len();
        Ok::<_, std::io::Error>((Arc::new(f), len))
    })
    .await
    .map_err(join_error)?
    .map_err(|e| file_error(path, e))
}

/// Reads `len` bytes at `offset`, on a blocking thread: only one chunk is ever in memory.
async fn read_chunk(
    file: &Arc<File>,
    path: &Path,
    offset: u64,
    len: usize,
) -> Result<Bytes, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let mut f: &File = &file;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf)?;
        Ok::<_, std::io::Error>(Bytes::from(buf))
    })
    .await
    .map_err(join_error)?
    .map_err(|e| file_error(path, e))
}

//! A ledger in S3: marker objects written with conditional PUTs, safe for many workers.
//!
//! For object `bucket/key` with ETag `E`, under the ledger prefix:
//! - `…/<bucket>/<key>#E.claim` — created with `If-None-Match: *`, so exactly one worker wins it.
//!   It holds the worker and an expiry; a worker that finds an expired claim (its holder died)
//!   takes it over with `If-Match: <claim's ETag>`, so two such workers cannot both win.
//! - `…/<bucket>/<key>#E.staged` — written by the claim holder just before a sink commits
//!   staged rows (a Storage Write stream); the next claim holder reads it to find out whether
//!   that commit happened. Deleted when the object is done.
//! - `…/<bucket>/<key>#E.done` — written after the object's rows were committed; it holds the
//!   run's summary. Its presence means done.
//!
//! The claim is deleted once the object is done or abandoned.

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::{Begin, Claim, Finished, Ledger, Staged};
use crate::error::{Error, Stage};
use crate::object::ObjectRef;
use crate::source::s3::{classify, unquote};

pub struct S3Ledger {
    client: Client,
    bucket: String,
    prefix: String,
    worker: String,
    lease: Duration,
    handle: Handle,
}

#[derive(Serialize, Deserialize)]
struct ClaimBody {
    worker: String,
    claimed_at: String,
    expires_at: String,
}

impl S3Ledger {
    /// Must be called within a Tokio runtime.
    pub fn new(
        client: Client,
        bucket: String,
        prefix: String,
        worker: String,
        lease: Duration,
    ) -> Self {
        S3Ledger {
            client,
            bucket,
            prefix,
            worker,
            lease,
            handle: Handle::current(),
        }
    }

    fn marker(&self, object: &ObjectRef, kind: &str) -> String {
        format!(
            "{}{}/{}#{}.{kind}",
            self.prefix,
            object.bucket,
            object.key,
            object.etag.as_deref().unwrap_or("")
        )
    }

    fn exists(&self, key: &str) -> Result<bool, Error> {
        let r = self.handle.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(classify(Stage::Fetch, "ledger HeadObject", e)),
        }
    }

    fn claim_body(&self) -> Vec<u8> {
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(15));
        serde_json::to_vec(&ClaimBody {
            worker: self.worker.clone(),
            claimed_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            expires_at: (now + lease).to_rfc3339_opts(SecondsFormat::Secs, true),
        })
        .expect("serialisable")
    }

    /// Unconditional PUT (markers only the claim holder writes).
    fn put(&self, key: &str, body: Vec<u8>) -> Result<(), Error> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        self.handle
            .block_on(put.send())
            .map_err(|e| classify(Stage::Sink, "ledger PutObject", e))?;
        Ok(())
    }

    /// PUT with a precondition; `Ok(None)` when the precondition failed (someone else won).
    fn put_if(
        &self,
        key: &str,
        body: Vec<u8>,
        if_match: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        req = match if_match {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match self.handle.block_on(req.send()) {
            Ok(out) => Ok(Some(out.e_tag().map(unquote).unwrap_or_default())),
            Err(e) if precondition_failed(&e) => Ok(None),
            Err(e) => Err(classify(Stage::Sink, "ledger PutObject", e)),
        }
    }

    fn delete(&self, key: &str) {
        let r = self.handle.block_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        if let Err(e) = r {
            tracing::warn!(key, "could not delete ledger claim: {e}");
        }
    }

    /// Reads a marker object: its ETag and bytes, `None` when there is none.
    fn read_marker(&self, key: &str) -> Result<Option<(String, bytes::Bytes)>, Error> {
        let r = self.handle.block_on(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        let out = match r {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(classify(Stage::Fetch, "ledger GetObject", e)),
        };
        let etag = out.e_tag().map(unquote).unwrap_or_default();
        let bytes = self
            .handle
            .block_on(out.body.collect())
            .map_err(|e| Error::from_io(Stage::Fetch, std::io::Error::other(e)))?
            .into_bytes();
        Ok(Some((etag, bytes)))
    }

    /// Reads a staged marker; a missing or unreadable one is no staged commit.
    fn read_staged(&self, key: &str) -> Result<Option<Staged>, Error> {
        Ok(self
            .read_marker(key)?
            .and_then(|(_, bytes)| serde_json::from_slice(&bytes).ok()))
    }

    /// Reads a claim: its ETag and whether it expired.
    fn read_claim(&self, key: &str) -> Result<Option<(String, ClaimBody)>, Error> {
        let Some((etag, bytes)) = self.read_marker(key)? else {
            return Ok(None);
        };
        let body = serde_json::from_slice(&bytes).unwrap_or(ClaimBody {
            worker: "unknown (unreadable claim)".into(),
            claimed_at: String::new(),
            expires_at: String::new(),
        });
        Ok(Some((etag, body)))
    }
}

fn precondition_failed<E: ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    let status = e.raw_response().map(|r| r.status().as_u16());
    // 409 ConditionalRequestConflict: a concurrent conditional write won the race.
    matches!(status, Some(412 | 409))
        || e.as_service_error()
            .and_then(|s| s.code())
            .is_some_and(|c| c == "PreconditionFailed" || c == "ConditionalRequestConflict")
}

fn expired(claim: &ClaimBody) -> bool {
    chrono::DateTime::parse_from_rfc3339(&claim.expires_at)
        .map(|t| t < Utc::now())
        .unwrap_or(true)
}

impl Ledger for S3Ledger {
    fn begin(&self, object: &ObjectRef, force: bool) -> Result<Begin, Error> {
        let done = self.marker(object, "done");
        if !force && self.exists(&done)? {
            return Ok(Begin::Done);
        }
        let claim_key = self.marker(object, "claim");
        let token = match self.put_if(&claim_key, self.claim_body(), None)? {
            Some(t) => t,
            None => match self.read_claim(&claim_key)? {
                // Released between our PUT and GET: try once more.
                None => match self.put_if(&claim_key, self.claim_body(), None)? {
                    Some(t) => t,
                    None => return Ok(Begin::Busy("another worker".into())),
                },
                Some((etag, held)) if expired(&held) => {
                    match self.put_if(&claim_key, self.claim_body(), Some(&etag))? {
                        Some(t) => {
                            tracing::info!(object = %object, previous = %held.worker, "took over an expired claim");
                            t
                        }
                        None => return Ok(Begin::Busy("another worker".into())),
                    }
                }
                Some((_, held)) => return Ok(Begin::Busy(held.worker)),
            },
        };
        // Another worker may have finished (and released its claim) just before we claimed.
        if !force && self.exists(&done)? {
            self.delete(&claim_key);
            return Ok(Begin::Done);
        }
        let staged = self.read_staged(&self.marker(object, "staged"))?;
        Ok(Begin::Proceed(Claim {
            token: Some(token),
            staged,
        }))
    }

    fn stage(&self, object: &ObjectRef, _: &Claim, staged: &Staged) -> Result<(), Error> {
        self.put(
            &self.marker(object, "staged"),
            serde_json::to_vec_pretty(staged).expect("serialisable"),
        )
    }

    fn finish(&self, object: &ObjectRef, _claim: Claim, summary: &Finished) -> Result<(), Error> {
        self.put(
            &self.marker(object, "done"),
            serde_json::to_vec_pretty(summary).expect("serialisable"),
        )?;
        self.delete(&self.marker(object, "staged"));
        self.delete(&self.marker(object, "claim"));
        Ok(())
    }

    fn abandon(&self, object: &ObjectRef, _claim: Claim) {
        self.delete(&self.marker(object, "claim"));
    }
}

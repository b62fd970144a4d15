//! A ledger in S3: marker objects written with conditional PUTs, safe for many workers.
//!
//! For object `bucket/key` with ETag `E`, under the ledger prefix:
//! - `…/<bucket>/<key>#E.claim` — created with `If-None-Match: *`, so exactly one worker wins it.
//!   It holds the worker and an expiry; a worker that finds an expired claim (its holder died)
//!   takes it over with `If-Match: <claim's ETag>`, so two such workers cannot both win.
//!   While the object runs, its holder renews the claim (every third of the TTL), each time
//!   with `If-Match: <the ETag of its own last write>`; right before rows become visible it
//!   does so once more (the *fence*). A worker that was stopped past the TTL finds its
//!   precondition failed (someone took the claim over) and commits nothing.
//! - What a sink staged (a Storage Write stream, a load job) is recorded *in the claim*, by
//!   the same conditional write that fences the commit, so recording it and proving the claim
//!   are one atomic step; the next claim holder reads it from the claim it takes over, to find
//!   out whether that commit happened. (`…#E.staged` markers of earlier versions are still
//!   read, and deleted when the object is done.)
//! - `…/<bucket>/<key>#E.done` — written after the object's rows were committed; it holds the
//!   run's summary. Its presence means done.
//!
//! The claim is deleted (`If-Match` its ETag, so never someone else's) once the object is done
//! or abandoned.

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::{claim_lost, Begin, Claim, Finished, Lease, Ledger, Staged};
use crate::aws::{classify, unquote};
use crate::error::{Error, Stage};
use crate::object::ObjectRef;

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
    /// When this body was written (milliseconds: every renewal has a new body, so a new ETag).
    #[serde(default)]
    renewed_at: String,
    /// Rows staged under this claim (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged: Option<Staged>,
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

    fn claim_body(&self, staged: Option<&Staged>) -> Vec<u8> {
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(15));
        serde_json::to_vec(&ClaimBody {
            worker: self.worker.clone(),
            claimed_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            expires_at: (now + lease).to_rfc3339_opts(SecondsFormat::Millis, true),
            renewed_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            staged: staged.cloned(),
        })
        .expect("serialisable")
    }

    /// Rewrites the claim with `If-Match` on this worker's last ETag of it: a renewal, the
    /// fence before a commit, and (with `staged`) the record of staged rows. Marks the lease
    /// lost and fails with `ClaimLost` when the precondition fails.
    fn rewrite_claim(
        &self,
        object: &ObjectRef,
        claim: &Claim,
        staged: Option<&Staged>,
    ) -> Result<(), Error> {
        let key = self.marker(object, "claim");
        let mut lease = claim.lease.lock();
        if let Some(holder) = &lease.lost {
            return Err(claim_lost(object, holder));
        }
        let Some(etag) = lease.etag.clone() else {
            return Ok(()); // not claimed through this ledger (nothing to fence)
        };
        let staged = staged.cloned().or_else(|| lease.staged.clone());
        let mut etag = etag;
        loop {
            let body = self.claim_body(staged.as_ref());
            match self.put_if(&key, body.clone(), Some(&etag)) {
                Ok(Some(new)) => {
                    lease.etag = Some(new);
                    lease.staged = staged;
                    lease.unanswered = None;
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => {
                    // S3 may have applied it all the same: remember what we sent.
                    lease.unanswered = Some(body);
                    return Err(e);
                }
            }
            // Taken over (or released by a worker that took it over and finished) — unless the
            // claim holds exactly a write of ours whose answer we never got (S3 applied it, the
            // answer was lost): conditional writes are linearisable, so nobody wrote it since,
            // and its ETag is ours to use.
            let current = self.read_marker(&key);
            if let Ok(Some((current_etag, bytes))) = &current {
                if lease.unanswered.as_deref() == Some(&bytes[..]) {
                    lease.unanswered = None;
                    etag = current_etag.clone();
                    continue;
                }
            }
            let current =
                current.map(|c| c.map(|(e, b)| (e, serde_json::from_slice::<ClaimBody>(&b).ok())));
            {
                let holder = match current {
                    Ok(Some((_, Some(body)))) => body.worker,
                    Ok(Some((_, None))) => "unknown (unreadable claim)".to_string(),
                    Ok(None) if self.exists(&self.marker(object, "done")).unwrap_or(false) => {
                        "another worker, which has finished it".to_string()
                    }
                    Ok(None) => "another worker (the claim is gone)".to_string(),
                    Err(_) => "another worker".to_string(),
                };
                tracing::warn!(object = %object, holder = %holder, "lost the claim: it lapsed and another worker took it over; committing nothing of this object");
                lease.lost = Some(holder.clone());
                return Err(claim_lost(object, &holder));
            }
        }
    }

    /// Deletes the claim if it is still this worker's (`If-Match`), never someone else's.
    fn release(&self, object: &ObjectRef, claim: &Claim) {
        let lease = claim.lease.lock();
        if lease.lost.is_some() {
            return;
        }
        let key = self.marker(object, "claim");
        let mut req = self.client.delete_object().bucket(&self.bucket).key(&key);
        if let Some(etag) = &lease.etag {
            req = req.if_match(etag);
        }
        match self.handle.block_on(req.send()) {
            Ok(_) => {}
            Err(e) if precondition_failed(&e) => {
                tracing::warn!(object = %object, "the claim was taken over meanwhile; left it to its new holder")
            }
            Err(e) => tracing::warn!(key, "could not delete ledger claim: {e}"),
        }
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
            // `If-Match` on a claim that is gone (its new holder finished and released it).
            Err(e)
                if if_match.is_some()
                    && e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
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
            renewed_at: String::new(),
            staged: None,
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
        // What the previous holder staged, carried by the claim we take over.
        let mut carried = None;
        let token = match self.put_if(&claim_key, self.claim_body(None), None)? {
            Some(t) => t,
            None => match self.read_claim(&claim_key)? {
                // Released between our PUT and GET: try once more.
                None => match self.put_if(&claim_key, self.claim_body(None), None)? {
                    Some(t) => t,
                    None => return Ok(Begin::Busy("another worker".into())),
                },
                Some((etag, held)) if expired(&held) => {
                    let body = self.claim_body(held.staged.as_ref());
                    match self.put_if(&claim_key, body, Some(&etag))? {
                        Some(t) => {
                            tracing::info!(object = %object, previous = %held.worker, "took over an expired claim");
                            carried = held.staged;
                            t
                        }
                        None => return Ok(Begin::Busy("another worker".into())),
                    }
                }
                Some((_, held)) => return Ok(Begin::Busy(held.worker)),
            },
        };
        let lease = Lease::new(Some(token), carried.clone());
        // Another worker may have finished (and released its claim) just before we claimed.
        if !force && self.exists(&done)? {
            self.release(
                object,
                &Claim {
                    lease,
                    staged: None,
                },
            );
            return Ok(Begin::Done);
        }
        let staged = match carried {
            Some(s) => Some(s),
            None => self.read_staged(&self.marker(object, "staged"))?,
        };
        Ok(Begin::Proceed(Claim { lease, staged }))
    }

    fn stage(&self, object: &ObjectRef, claim: &Claim, staged: &Staged) -> Result<(), Error> {
        self.rewrite_claim(object, claim, Some(staged))
    }

    fn renew_every(&self) -> Option<Duration> {
        Some((self.lease / 3).max(Duration::from_millis(200)))
    }

    fn renew(&self, object: &ObjectRef, claim: &Claim) -> Result<(), Error> {
        self.rewrite_claim(object, claim, None)
    }

    fn finish(&self, object: &ObjectRef, claim: Claim, summary: &Finished) -> Result<(), Error> {
        self.put(
            &self.marker(object, "done"),
            serde_json::to_vec_pretty(summary).expect("serialisable"),
        )?;
        self.delete(&self.marker(object, "staged"));
        self.release(object, &claim);
        Ok(())
    }

    fn abandon(&self, object: &ObjectRef, claim: Claim) {
        self.release(object, &claim);
    }
}

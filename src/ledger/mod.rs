//! Which objects are done, so reruns and duplicate notifications do no work twice.
//!
//! An object is identified by bucket + key + ETag: an object rewritten with new content is a new
//! object. Before processing, a worker *begins* the object (skipped if done, or if another
//! worker holds it); after its rows are committed it *finishes* it with a summary. An object
//! whose processing failed is *abandoned* and stays unmarked, so the next run retries it.

pub mod file;
pub mod postgres;
pub mod s3;

use std::str::FromStr;

use serde::Serialize;

use crate::error::Error;
use crate::object::ObjectRef;

/// What `begin` decided.
#[derive(Debug)]
pub enum Begin {
    /// Go ahead; hand the claim back to `finish` or `abandon`.
    Proceed(Claim),
    /// Already done with this ETag.
    Done,
    /// Another worker is processing it right now.
    Busy(String),
}

/// Proof of a claim. Clones share one [`Lease`], so a renewal made by one (the background
/// renewer, see [`Ledger::renew`]) is seen by all.
#[derive(Debug, Default, Clone)]
pub struct Claim {
    pub lease: Lease,
    /// What an earlier run staged for this object and may have committed before it stopped.
    pub staged: Option<Staged>,
}

/// The current proof of a claim, shared by the clones of a [`Claim`]: for S3, the claim
/// marker's ETag as of this worker's last conditional write. Its lock is held across each
/// conditional write, so a renewal and a fence never race each other into a false "lost".
#[derive(Debug, Default, Clone)]
pub struct Lease(std::sync::Arc<std::sync::Mutex<LeaseState>>);

#[derive(Debug, Default)]
pub struct LeaseState {
    /// The claim marker's ETag after this worker's last write of it.
    pub etag: Option<String>,
    /// What this claim's marker carries as staged (kept through renewals).
    pub staged: Option<Staged>,
    /// Set once a conditional write found the claim taken over (or gone): from then on this
    /// worker commits nothing of the object and leaves the claim alone.
    pub lost: Option<String>,
    /// The last claim body sent whose answer never came (S3 may have applied it).
    pub unanswered: Option<Vec<u8>>,
}

impl Lease {
    pub fn new(etag: Option<String>, staged: Option<Staged>) -> Lease {
        Lease(std::sync::Arc::new(std::sync::Mutex::new(LeaseState {
            etag,
            staged,
            lost: None,
            unanswered: None,
        })))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who took the claim over, once it was found lost.
    pub fn lost(&self) -> Option<String> {
        self.lock().lost.clone()
    }
}

/// Rows a sink has staged but not yet made visible (a Storage Write `PENDING` stream, a load
/// job), recorded *before* the commit: if the process dies between the commit and
/// [`Ledger::finish`], the next run asks the sink about `token` instead of writing the object
/// again. The counts let that run finish the object without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Staged {
    pub token: String,
    pub records: u64,
    pub rows: u64,
    pub record_errors: u64,
}

/// The summary kept with a finished object.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub records: u64,
    pub rows: u64,
    pub record_errors: u64,
    pub finished_at: String,
    pub worker: String,
}

pub trait Ledger: Send + Sync {
    /// Blocking. `force` processes even objects already done (claims still apply).
    fn begin(&self, object: &ObjectRef, force: bool) -> Result<Begin, Error>;
    /// Records what is about to be committed (see [`Staged`]); it comes back in the claim of the
    /// next `begin` for this object until the object is finished. Ledgers that remember nothing
    /// across runs keep nothing.
    fn stage(&self, object: &ObjectRef, claim: &Claim, staged: &Staged) -> Result<(), Error> {
        let _ = (object, claim, staged);
        Ok(())
    }
    fn finish(&self, object: &ObjectRef, claim: Claim, summary: &Finished) -> Result<(), Error>;
    fn abandon(&self, object: &ObjectRef, claim: Claim);

    /// How often a claim must be renewed while its object runs (well inside its TTL); `None`
    /// for ledgers whose claims do not lapse.
    fn renew_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// Renews the claim, and proves it is still this worker's: the *fence* run right before
    /// rows become visible. Fails with [`crate::error::Cause::ClaimLost`] (permanent) when
    /// another worker took it over; the caller then commits nothing. Ledgers whose claims do
    /// not lapse always succeed. [`Ledger::stage`] fences the same way.
    fn renew(&self, object: &ObjectRef, claim: &Claim) -> Result<(), Error> {
        let _ = (object, claim);
        Ok(())
    }
}

/// The error of a fence that found the claim gone: `holder` is who has it now, if known.
pub fn claim_lost(object: &ObjectRef, holder: &str) -> Error {
    Error::permanent(
        crate::error::Stage::Sink,
        crate::error::Cause::ClaimLost {
            object: object.to_string(),
            holder: holder.to_string(),
        },
    )
}

/// `--ledger none`: every object is processed. Staged entries are kept in memory only, so an
/// object retried within this process after an ambiguous commit is still not written twice.
#[derive(Default)]
pub struct NoLedger {
    staged: std::sync::Mutex<std::collections::HashMap<(String, String, String), Staged>>,
}

impl Ledger for NoLedger {
    fn begin(&self, object: &ObjectRef, _: bool) -> Result<Begin, Error> {
        let staged = self
            .staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&identity(object))
            .cloned();
        Ok(Begin::Proceed(Claim {
            lease: Lease::default(),
            staged,
        }))
    }
    fn stage(&self, object: &ObjectRef, _: &Claim, staged: &Staged) -> Result<(), Error> {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(identity(object), staged.clone());
        Ok(())
    }
    fn finish(&self, object: &ObjectRef, _: Claim, _: &Finished) -> Result<(), Error> {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&identity(object));
        Ok(())
    }
    fn abandon(&self, _: &ObjectRef, _: Claim) {}
}

/// `--ledger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerSpec {
    None,
    File(std::path::PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    /// The ledger table beside the PostgreSQL sink's target (its default there).
    Postgres,
}

impl FromStr for LedgerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(LedgerSpec::None);
        }
        if s == "postgres" {
            return Ok(LedgerSpec::Postgres);
        }
        if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err("`file:` needs a path".into());
            }
            return Ok(LedgerSpec::File(p.into()));
        }
        if s.starts_with("s3://") {
            let uri: crate::aws::S3Uri = s.parse()?;
            let mut prefix = uri.key;
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            return Ok(LedgerSpec::S3 {
                bucket: uri.bucket,
                prefix,
            });
        }
        Err(format!(
            "unknown ledger `{s}` (expected file:PATH, s3://bucket/prefix/, postgres or none)"
        ))
    }
}

/// Who is working: host, process and start time, so a person reading a claim can tell.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

/// The identity an entry is keyed by.
pub(crate) fn identity(object: &ObjectRef) -> (String, String, String) {
    (
        object.bucket.clone(),
        object.key.clone(),
        object.etag.clone().unwrap_or_default(),
    )
}

//! `redrive`, driven: object letters become jobs for the run loop (retries, ledger,
//! concurrency); records letters are rebuilt into rows one letter at a time. Each letter is
//! removed once everything in it was delivered. The CLI only parses, lists and prints.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::aws::Aws;
use crate::error::{Cause, Error, Stage};
use crate::object::{ObjectRef, Origin};
use crate::pipeline::ObjectFailure;
use crate::redrive::{redrive_records, Letter, Location, Source};
use crate::source::local::LocalStore;
use crate::source::s3::S3Store;
use crate::source::unavailable::Unavailable;
use crate::source::ObjectStore;

use super::{runner, Job, Progress, Shared, Summary};

/// How a redrive runs.
pub struct Redrive<'a> {
    /// Where the letters were read from (they are removed there).
    pub source: &'a Source,
    /// The source as given, to name it in refusals.
    pub source_name: &'a str,
    /// `--source-root`: the local directory that plays the letters' bucket.
    pub source_root: Option<PathBuf>,
    pub concurrency: usize,
}

/// A letter delivered whole (and removed, unless the run already had).
pub struct Delivered<'a> {
    pub object: &'a ObjectRef,
    pub location: &'a Location,
    /// For a records letter, how many records it delivered.
    pub records: Option<u64>,
}

impl Redrive<'_> {
    /// Delivers `letters` through `shared`; `delivered` hears of each letter as it is done.
    pub async fn run(
        &self,
        letters: Vec<Letter>,
        shared: Shared,
        aws: &mut Aws,
        mut delivered: impl FnMut(Delivered<'_>),
    ) -> Result<Summary, Error> {
        let started = std::time::Instant::now();
        let mut summary = Summary::default();
        let (object_letters, record_letters): (Vec<_>, Vec<_>) =
            letters.into_iter().partition(|l| l.doc.records.is_none());
        let jobs = self.jobs(&object_letters, aws).await?;
        if !jobs.is_empty() {
            let ran = runner::run(
                jobs,
                shared.clone(),
                self.concurrency,
                Progress::Off,
                Arc::new(AtomicBool::new(false)),
            )
            .await;
            if ran.output_closed {
                // Which objects got through before the output closed is not known: every
                // letter stays, to be redriven again.
                return Ok(ran);
            }
            for l in &object_letters {
                let failed = ran.failures.iter().any(|f| {
                    f.object.bucket == l.doc.object.bucket && f.object.key == l.doc.object.key
                });
                if failed {
                    continue;
                }
                // A delivered object's letter may already be gone: the runner removes stale
                // `dir:` letters itself.
                let gone = matches!(&l.location, Location::File(p) if !p.exists());
                if !gone {
                    self.source.remove(&l.location).await?;
                }
                delivered(Delivered {
                    object: &l.doc.object_ref(),
                    location: &l.location,
                    records: None,
                });
            }
            summary = ran;
        }
        for l in record_letters {
            if !self
                .records_letter(&l, &shared, &mut summary, &mut delivered)
                .await?
            {
                break;
            }
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// Each object letter's object, from the store it failed in.
    async fn jobs(&self, letters: &[Letter], aws: &mut Aws) -> Result<Vec<Job>, Error> {
        let source_root: Option<Arc<dyn ObjectStore>> = match &self.source_root {
            Some(root) => Some(Arc::new(LocalStore::new(root)?)),
            None => None,
        };
        let mut local_roots: HashMap<PathBuf, Arc<dyn ObjectStore>> = HashMap::new();
        let mut jobs = Vec::new();
        for l in letters {
            let object = l.doc.object_ref();
            let store: Arc<dyn ObjectStore> = match (&source_root, &object.origin) {
                (Some(store), _) if store.bucket() == object.bucket => store.clone(),
                // Read from where the failed run read it; a root that is gone fails the object
                // (permanently, and at once) instead of trying a bucket of the same name.
                // Only a local `dir:` letter may choose a local directory (`--source-root` is
                // matched above): one from S3 or SQS could name any directory on this host.
                (_, Some(Origin::Local { root })) if !self.source.trusts_local_roots() => {
                    Arc::new(Unavailable {
                        bucket: object.bucket.clone(),
                        why: format!(
                            "refused: a letter from {} says its object is in the local \
                             directory {}; redrive reads a local source named by a letter only \
                             from a dir: letter or when it is --source-root",
                            self.source_name,
                            root.display()
                        ),
                    })
                }
                (_, Some(Origin::Local { root })) => local_roots
                    .entry(root.clone())
                    .or_insert_with(|| match LocalStore::new(root) {
                        Ok(store) => Arc::new(store),
                        Err(e) => Arc::new(Unavailable {
                            bucket: object.bucket.clone(),
                            why: format!("the object's local source cannot be read: {e}"),
                        }),
                    })
                    .clone(),
                _ => Arc::new(S3Store::new(aws.client().await, &object.bucket)),
            };
            jobs.push(Job { store, object });
        }
        Ok(jobs)
    }

    /// One records letter; `false` when the output closed and no further letter may be tried.
    async fn records_letter(
        &self,
        l: &Letter,
        shared: &Shared,
        summary: &mut Summary,
        delivered: &mut impl FnMut(Delivered<'_>),
    ) -> Result<bool, Error> {
        let (doc, sh) = (l.doc.clone(), shared.clone());
        let result = tokio::task::spawn_blocking(move || {
            redrive_records(&doc, &sh.settings, sh.sink.as_ref(), &sh.dead_letters)
        })
        .await
        .map_err(|e| {
            Error::permanent(
                Stage::Parse,
                Cause::Redrive(format!("redriving a records letter stopped: {e}")),
            )
        })?;
        let object = l.doc.object_ref();
        let failure = |error| {
            Box::new(ObjectFailure {
                object: object.clone(),
                error,
                attempts: 1,
                counts: Default::default(),
            })
        };
        match result {
            Ok(outcome) => {
                summary.counts.rows += outcome.delivered - outcome.already_present;
                summary.counts.already_present += outcome.already_present;
                summary.counts.record_errors += outcome.still_failing;
                // Records that still fail may have been written over the very letter being
                // redriven (same destination); that one must stay.
                let replaced_in_place = match (&l.location, outcome.new_letter.as_deref()) {
                    (Location::File(old), Some(new)) => {
                        match (std::fs::canonicalize(old), std::fs::canonicalize(new)) {
                            (Ok(a), Ok(b)) => a == b,
                            _ => false,
                        }
                    }
                    (loc, Some(new)) => loc.to_string() == new,
                    (_, None) => false,
                };
                if !replaced_in_place {
                    self.source.remove(&l.location).await?;
                }
                if outcome.still_failing == 0 {
                    summary.objects_ok += 1;
                    delivered(Delivered {
                        object: &object,
                        location: &l.location,
                        records: Some(outcome.delivered),
                    });
                } else {
                    summary.failures.push(failure(Error::permanent(
                        Stage::Parse,
                        Cause::Redrive(format!(
                            "{} records still fail (kept in {})",
                            outcome.still_failing,
                            outcome.new_letter.as_deref().unwrap_or("?")
                        )),
                    )));
                }
            }
            Err(error) if error.is_output_closed() => {
                // The letter stays; the rest is not tried (nobody reads the output).
                summary.output_closed = true;
                return Ok(false);
            }
            Err(error) => summary.failures.push(failure(error)),
        }
        Ok(true)
    }
}

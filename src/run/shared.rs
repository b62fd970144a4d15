//! The engine handle: what every object of a run shares, and how one object is processed with
//! it (retries, deadline, stale dead letters).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dead_letter::DeadLetterDir;
use crate::ledger::Ledger;
use crate::object::ObjectRef;
use crate::pipeline::{process_object, Context, ObjectFailure, Processed, Settings};
use crate::sink::Sink;
use crate::source::ObjectStore;

/// One unit of work: an object and the store it lives in.
pub struct Job {
    pub store: Arc<dyn ObjectStore>,
    pub object: ObjectRef,
}

/// The parts every job shares.
#[derive(Clone)]
pub struct Shared {
    pub settings: Arc<Settings>,
    pub sink: Arc<dyn Sink>,
    pub dead_letters: Arc<DeadLetterDir>,
    pub ledger: Arc<dyn Ledger>,
    pub force: bool,
    pub worker: Arc<str>,
    /// Object-level retries of transient failures.
    pub retry: super::retry::ObjectRetry,
    /// Budget per object, retries included (`--object-timeout`).
    pub object_timeout: Option<Duration>,
}

impl Shared {
    /// Processes one object from `store` with these settings, retrying transient failures
    /// within the policy and `deadline`. Blocking: call it from a blocking thread.
    pub fn process(
        &self,
        store: &dyn ObjectStore,
        object: ObjectRef,
        deadline: Option<Instant>,
    ) -> Result<Processed, Box<ObjectFailure>> {
        self.process_until(store, object, deadline, None)
    }

    /// [`Shared::process`] that also gives up, committing nothing, once `cancel` is set (a
    /// worker whose shutdown grace ran out).
    pub fn process_until(
        &self,
        store: &dyn ObjectStore,
        object: ObjectRef,
        deadline: Option<Instant>,
        cancel: Option<&AtomicBool>,
    ) -> Result<Processed, Box<ObjectFailure>> {
        let cx = Context {
            store,
            settings: &self.settings,
            sink: self.sink.as_ref(),
            dead_letters: &self.dead_letters,
            ledger: self.ledger.as_ref(),
            force: self.force,
            worker: &self.worker,
            deadline,
            cancel,
        };
        let result = self
            .retry
            .run(deadline, |_| process_object(&cx, object.clone()));
        if let Ok(Processed::Done(report)) = &result {
            self.remove_stale_letters(report);
        }
        result
    }

    /// After an object was delivered, the `dir:` dead letters of its earlier failures no longer
    /// hold: its object letter, and its records letter unless this run wrote a new one.
    /// (Remote letters stay; `redrive` of them finds the object done in the ledger.)
    fn remove_stale_letters(&self, report: &crate::pipeline::ObjectReport) {
        let crate::dead_letter::Destination::Dir(dir) = self.dead_letters.destination() else {
            return;
        };
        let stale = crate::dead_letter::paths::stale_letters(
            dir,
            &report.object,
            report.dead_letter.is_some(),
        );
        for path in stale {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(
                    object = %format_args!("{}/{}", report.object.bucket, report.object.key),
                    letter = %path.display(),
                    "removed a stale dead letter: the object was delivered"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(letter = %path.display(), "cannot remove a stale dead letter: {e}")
                }
            }
        }
    }
}

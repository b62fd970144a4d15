//! The batching driver: many objects staged, one commit, one ledger token per object per
//! batch — for any destination that implements `sink::batch` (BigQuery load jobs today).
//!
//! The destination plans the batches. For each, the objects run through the normal runner
//! (decode, record policy, dead letters, retries) into the batch's staging sink, with the
//! ledger's `finish` held back: an object is done only once the batch is committed. The held
//! objects' claims are renewed meanwhile; an object whose claim another worker took over is
//! that worker's and is left out. Then the batch commits (it stages each object's token in the
//! ledger first, see `sink::batch`), and the driver finishes the committed objects and
//! dead-letters the others with the commit's error. A run killed anywhere in between finds the
//! tokens in the ledger next time, and the destination resolves them instead of writing again.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::{runner, settle_failure, Job, Progress, Shared, Summary};
use crate::error::{Cause, Error};
use crate::ledger::{identity, Begin, Claim, Finished, Ledger, Staged};
use crate::object::ObjectRef;
use crate::pipeline::ObjectFailure;
use crate::sink::batch::{BatchSink, Held, StagedTokens};

/// The real ledger, except that `finish` is held back until the batch's commit (see the module
/// docs).
struct HoldingLedger {
    inner: Arc<dyn Ledger>,
    held: Mutex<Vec<Held>>,
    /// The held objects' claims, renewed until their job has loaded (see [`HeldRenewals`]).
    renewing: Arc<Mutex<Vec<(ObjectRef, Claim)>>>,
    /// What each object's earlier attempt staged, for the batch's writers.
    staged_tokens: StagedTokens,
}

impl HoldingLedger {
    /// Stops renewing `object`'s claim (before it is finished or abandoned). Waits for a
    /// renewal round in progress, so none runs after the claim is released.
    fn forget(&self, object: &ObjectRef) {
        let id = identity(object);
        self.renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(o, _)| identity(o) != id);
    }
}

/// Renews the claims of the objects a batch holds while it stages the rest and commits:
/// that can take longer than the claims' TTL, and a lapsed claim would let another worker
/// take the object over. Stopped (and joined) by [`HeldRenewals::stop`].
struct HeldRenewals {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl HeldRenewals {
    fn start(ledger: Arc<dyn Ledger>, held: Arc<Mutex<Vec<(ObjectRef, Claim)>>>) -> Option<Self> {
        let every = ledger.renew_every()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("held-claim-renewer".into())
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                // Under the lock: `forget` waits for this round.
                let held = held.lock().unwrap_or_else(|p| p.into_inner());
                for (object, claim) in held.iter() {
                    if claim.lease.lost().is_some() {
                        continue;
                    }
                    if let Err(e) = ledger.renew(object, claim) {
                        if !matches!(e.cause, Cause::ClaimLost { .. }) {
                            tracing::warn!(object = %object, "could not renew the claim (trying again): {e}");
                        }
                    }
                }
            })
            .ok()?;
        Some(HeldRenewals { stop, thread })
    }

    async fn stop(self) {
        drop(self.stop);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

impl Ledger for HoldingLedger {
    fn begin(&self, object: &ObjectRef, force: bool) -> Result<Begin, Error> {
        let begin = self.inner.begin(object, force)?;
        if let Begin::Proceed(Claim {
            staged: Some(staged),
            ..
        }) = &begin
        {
            self.staged_tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(identity(object), staged.token.clone());
        }
        Ok(begin)
    }
    fn stage(&self, object: &ObjectRef, claim: &Claim, staged: &Staged) -> Result<(), Error> {
        self.inner.stage(object, claim, staged)
    }
    fn finish(&self, object: &ObjectRef, claim: Claim, summary: &Finished) -> Result<(), Error> {
        self.renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((object.clone(), claim.clone()));
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Held {
                object: object.clone(),
                claim,
                summary: summary.clone(),
            });
        Ok(())
    }
    fn abandon(&self, object: &ObjectRef, claim: Claim) {
        self.inner.abandon(object, claim)
    }
    fn renew_every(&self) -> Option<std::time::Duration> {
        self.inner.renew_every()
    }
    fn renew(&self, object: &ObjectRef, claim: &Claim) -> Result<(), Error> {
        self.inner.renew(object, claim)
    }
}

/// Runs every batch in order. Objects whose staging failed are dead-lettered by the runner as
/// usual; objects of a batch whose commit failed for good are dead-lettered with its error.
pub async fn run(
    jobs: Vec<Job>,
    shared: Shared,
    concurrency: usize,
    sink: &dyn BatchSink,
    stop: Arc<AtomicBool>,
) -> Summary {
    let started = std::time::Instant::now();
    let objects: Vec<ObjectRef> = jobs.iter().map(|j| j.object.clone()).collect();
    let batches = sink.plan(&objects);
    let mut jobs: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
    let mut summary = Summary::default();
    let total = batches.len();
    for (n, batch) in batches.iter().enumerate() {
        let batch_jobs: Vec<Job> = batch
            .iter()
            .filter_map(|&i| jobs.get_mut(i).and_then(Option::take))
            .collect();
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            summary.not_started += batch_jobs.len() as u64;
            continue;
        }
        let label = format!("{}/{total}", n + 1);
        let s = run_batch(batch_jobs, &shared, concurrency, sink, stop.clone(), &label).await;
        summary.objects_ok += s.objects_ok;
        summary.skipped_done += s.skipped_done;
        summary.skipped_busy += s.skipped_busy;
        summary.not_started += s.not_started;
        summary.failures.extend(s.failures);
        summary.counts += s.counts;
    }
    summary.elapsed = started.elapsed();
    summary
}

/// Every object of a batch that could not start, failed with `error`.
fn fail_all(jobs: Vec<Job>, shared: &Shared, error: &Error) -> Summary {
    let mut summary = Summary::default();
    for job in jobs {
        let failure = batch_failure(job.object, error);
        let _ = settle_failure(&failure, &shared.dead_letters);
        summary.failures.push(failure);
    }
    summary
}

async fn run_batch(
    jobs: Vec<Job>,
    run: &Shared,
    concurrency: usize,
    sink: &dyn BatchSink,
    stop: Arc<AtomicBool>,
    label: &str,
) -> Summary {
    let staged_tokens: StagedTokens = Arc::default();
    let batch = match sink.prepare(staged_tokens.clone()).await {
        Ok(b) => b,
        Err(error) => return fail_all(jobs, run, &error),
    };
    let holding = Arc::new(HoldingLedger {
        inner: run.ledger.clone(),
        held: Mutex::default(),
        renewing: Arc::default(),
        staged_tokens,
    });
    let renewals = HeldRenewals::start(run.ledger.clone(), holding.renewing.clone());
    let mut shared = run.clone();
    shared.sink = batch.sink();
    shared.ledger = holding.clone();
    let mut summary = runner::run(jobs, shared, concurrency, Progress::Off, stop).await;

    // Objects finished without rows to commit (recovered from an earlier run's commit, or
    // every record refused) are done now; the others wait for the commit.
    let held = std::mem::take(&mut *holding.held.lock().unwrap_or_else(|p| p.into_inner()));
    let staged = batch.take_staged();
    let mut to_commit: Vec<(Held, u64)> = Vec::new();
    for h in held {
        match staged.get(&identity(&h.object)) {
            Some(&rows) if rows > 0 => to_commit.push((h, rows)),
            _ => {
                holding.forget(&h.object);
                if let Err(e) = off_runtime(|| run.ledger.finish(&h.object, h.claim, &h.summary)) {
                    tracing::warn!(object = %h.object, "could not record the object as done: {e}");
                }
            }
        }
    }
    // Objects whose claim another worker took over meanwhile are that worker's: not committed.
    let (lost, kept): (Vec<_>, Vec<_>) = to_commit
        .into_iter()
        .partition(|(h, _)| h.claim.lease.lost().is_some());
    to_commit = kept;
    for (h, rows) in lost {
        holding.forget(&h.object);
        summary.objects_ok = summary.objects_ok.saturating_sub(1);
        summary.counts.rows = summary.counts.rows.saturating_sub(rows);
        let holder = h.claim.lease.lost().unwrap_or_default();
        let failure = Box::new(ObjectFailure {
            error: crate::ledger::claim_lost(&h.object, &holder),
            object: h.object,
            attempts: 1,
            counts: Default::default(),
        });
        let _ = settle_failure(&failure, &run.dead_letters);
        summary.failures.push(failure);
    }
    if to_commit.is_empty() {
        if let Some(r) = renewals {
            r.stop().await;
        }
        return summary;
    }
    to_commit.sort_by(|a, b| a.0.object.key.cmp(&b.0.object.key));
    let (held, rows): (Vec<Held>, Vec<u64>) = to_commit.into_iter().unzip();
    let outcome = batch.commit(&held, &run.ledger).await;
    // The batch has settled: the claims are finished or released next, not renewed any more.
    if let Some(r) = renewals {
        r.stop().await;
    }
    let (failed_with, inserted, ids) = match outcome {
        Ok(o) => (o.failed, o.inserted, o.ids),
        Err(error) => (
            held.iter().map(|_| Some(copy_error(&error))).collect(),
            0,
            Vec::new(),
        ),
    };
    let failing = failed_with.iter().filter(|f| f.is_some()).count();
    let committed_rows: u64 = rows
        .iter()
        .zip(&failed_with)
        .filter(|(_, f)| f.is_none())
        .map(|(r, _)| *r)
        .sum();
    if failing < held.len() {
        // A destination that drops rows it holds already (`--dedup merge`) inserts fewer.
        let present = committed_rows.saturating_sub(inserted.min(committed_rows));
        summary.counts.rows = summary.counts.rows.saturating_sub(present);
        summary.counts.already_present += present;
        tracing::info!(batch = label, objects = held.len() - failing, rows = committed_rows - present, already_present = present, job_id = %ids.join(","), "batch loaded");
    }
    for ((h, rows), failed) in held.into_iter().zip(rows).zip(failed_with) {
        match failed {
            None => {
                if let Err(e) = off_runtime(|| run.ledger.finish(&h.object, h.claim, &h.summary)) {
                    // Committed: the next run finds the staged token and records it then.
                    tracing::warn!(object = %h.object, "could not record the object as done: {e}");
                }
            }
            Some(error) => {
                tracing::error!(batch = label, object = %h.object, "batch not loaded: {error}");
                summary.objects_ok = summary.objects_ok.saturating_sub(1);
                summary.counts.rows = summary.counts.rows.saturating_sub(rows);
                off_runtime(|| run.ledger.abandon(&h.object, h.claim));
                let failure = batch_failure(h.object, &error);
                let _ = settle_failure(&failure, &run.dead_letters);
                summary.failures.push(failure);
            }
        }
    }
    summary
}

/// The same error again (for each object of a failed commit).
fn copy_error(error: &Error) -> Error {
    Error::new(
        error.stage,
        error.class,
        Cause::Sink(error.cause.to_string()),
    )
}

fn batch_failure(object: ObjectRef, error: &Error) -> Box<ObjectFailure> {
    Box::new(ObjectFailure {
        object,
        error: Error::new(
            error.stage,
            error.class,
            Cause::Sink(error.cause.to_string()),
        ),
        attempts: 1,
        counts: Default::default(),
    })
}

/// Runs a blocking ledger call from this async code: the S3 ledger blocks on the runtime, which
/// a task may only do once it has told the runtime so (`block_in_place`, multi-threaded runtime).
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

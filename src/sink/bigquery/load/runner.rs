//! `--bigquery-mode load`: many objects → one BigQuery load job, exactly once.
//!
//! Objects are planned into batches (key order, bounded by object count and listed bytes, and
//! widened so the whole run fits the table's daily load-job quota). Each batch runs through the
//! normal pipeline — decode, record policy, dead letters — into a spool sink that checks every
//! row against the table schema (a row BigQuery would refuse would fail the whole job, so it
//! takes the record-level policy here instead) and writes NDJSON to a local file. The spooled
//! objects' ledger entries are held back; each is *staged* with the batch's job ID, the job is
//! loaded (`LoadJobs::load`: deterministic job IDs, GET before submit, 409 = already
//! submitted), and only then are the objects finished. A run that dies anywhere in between
//! finds the staged job ID in the ledger next time and asks BigQuery whether that job loaded
//! the rows, instead of loading them again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use super::plan::{plan, Bounds};
use super::schema::{self as batch_schema, BatchSchema, Current, Growth};
use super::{job_id, JobState, LoadJobs, ObjectKey, MAX_JOB_ATTEMPTS};
use crate::error::{Cause, Class, Error, Stage};
use crate::ledger::{identity, Begin, Claim, Finished, Ledger, Staged};
use crate::object::ObjectRef;
use crate::pipeline::ObjectFailure;
use crate::row::Row;
use crate::runner::{self, settle_failure, Job, Progress, Shared, Summary};
use crate::sink::bigquery::encode::Encoder;
use crate::sink::bigquery::merge::Merger;
use crate::sink::{Committed, ObjectWriter, Prepared, Rejected, Sink};

/// The staged token of a batch: its first job ID; the attempts' IDs follow from it.
const TOKEN_PREFIX: &str = "bigquery-load:";

fn attempt_id(first: &str, attempt: u32) -> Option<String> {
    let base = first.strip_suffix("_0")?;
    Some(format!("{base}_{attempt}"))
}

/// Whether any attempt of the job chain starting at `first` loaded its rows (waiting for one
/// that still runs).
async fn chain_loaded(loads: &LoadJobs, first: &str) -> Result<bool, Error> {
    for attempt in 0..MAX_JOB_ATTEMPTS {
        let Some(id) = attempt_id(first, attempt) else {
            return Ok(false);
        };
        let mut state = loads.state_of(&id).await?;
        if state == JobState::Running {
            state = loads.wait(&id).await?;
        }
        match state {
            JobState::Succeeded { .. } => return Ok(true),
            JobState::Missing => return Ok(false),
            JobState::Failed { .. } | JobState::Running => continue,
        }
    }
    Ok(false)
}

/// What one spooled object left behind.
struct Spooled {
    path: PathBuf,
    rows: u64,
}

/// The pipeline's sink in load mode: rows checked against the schema, written to a file per
/// object under `dir`.
struct Spool {
    dir: PathBuf,
    /// The batch's schema: the rows are checked against it, and (growing) widen it.
    schema: Arc<BatchSchema>,
    loads: Arc<LoadJobs>,
    handle: Handle,
    spooled: Mutex<HashMap<(String, String, String), Spooled>>,
    next: std::sync::atomic::AtomicU64,
}

struct SpoolWriter {
    spool: Arc<Spool>,
    object: ObjectRef,
    path: PathBuf,
    out: BufWriter<File>,
    rows: u64,
    rejected: Vec<Rejected>,
    scratch: Vec<u8>,
    /// The encoder this writer checks rows with (the batch's, as of its last refusal).
    seen: Current,
}

fn spool_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(
        Stage::Sink,
        Class::Transient,
        Cause::Sink(format!("spool file {}: {e}", path.display())),
    )
}

struct SpoolSink(Arc<Spool>);

impl Sink for SpoolSink {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        let n = self
            .0
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.0.dir.join(format!("{n}.ndjson"));
        let file = File::create(&path).map_err(|e| spool_error(&path, e))?;
        Ok(Box::new(SpoolWriter {
            spool: self.0.clone(),
            object: object.clone(),
            path,
            out: BufWriter::with_capacity(256 * 1024, file),
            rows: 0,
            rejected: Vec::new(),
            scratch: Vec::new(),
            seen: self.0.schema.current(),
        }))
    }

    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        let Some(first) = staged.token.strip_prefix(TOKEN_PREFIX) else {
            // Staged by another mode: only that mode can tell whether it was committed, and
            // guessing "no" could write the object twice.
            return Err(Error::new(
                Stage::Sink,
                Class::Permanent,
                Cause::Sink(format!(
                    "an earlier run in another --bigquery-mode staged this object ({}) and \
                     stopped before recording it done: rerun it in that mode",
                    staged.token
                )),
            ));
        };
        let loads = self.0.loads.clone();
        let first = first.to_string();
        self.0
            .handle
            .block_on(async move { chain_loaded(&loads, &first).await })
    }
}

impl ObjectWriter for SpoolWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        if let Some(rejected) = crate::sink::bigquery::unstorable(row) {
            self.rejected.push(rejected);
            return Ok(());
        }
        let json = row.to_vec();
        self.scratch.clear();
        let checked = match self.seen.encoder.encode(&json, &mut self.scratch) {
            Ok(()) => Ok(()),
            // Only refused rows take the lock (and, growing, are parsed).
            Err(why) => self.spool.schema.refused(&json, why, &mut self.seen),
        };
        if let Err(why) = checked {
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json,
                error: format!("does not fit the table schema: {why}"),
            });
            return Ok(());
        }
        self.out
            .write_all(&json)
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|e| spool_error(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        Ok(Prepared {
            rejected: std::mem::take(&mut self.rejected),
            token: None,
        })
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        self.out.flush().map_err(|e| spool_error(&self.path, e))?;
        let rejected = std::mem::take(&mut self.rejected);
        self.spool
            .spooled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                identity(&self.object),
                Spooled {
                    path: self.path.clone(),
                    rows: self.rows,
                },
            );
        Ok(Committed {
            rejected,
            inserted: None,
        })
    }
}

/// A finish the pipeline asked for, held until the batch's job has loaded.
struct HeldFinish {
    object: ObjectRef,
    claim: Claim,
    summary: Finished,
}

/// The real ledger, except that `finish` is held back (see the module docs).
struct HoldingLedger {
    inner: Arc<dyn Ledger>,
    held: Mutex<Vec<HeldFinish>>,
    /// The held objects' claims, renewed until their job has loaded (see [`HeldRenewals`]).
    renewing: Arc<Mutex<Vec<(ObjectRef, Claim)>>>,
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

/// Renews the claims of the objects a batch holds while it spools the rest, uploads and loads:
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
        self.inner.begin(object, force)
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
            .push(HeldFinish {
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

/// The sink a load run's [`Shared`] is built with before [`run`] puts its spool in: objects in
/// load mode never go to a per-object sink.
pub struct LoadOnly;

impl Sink for LoadOnly {
    fn open(&self, _: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Err(Error::new(
            Stage::Sink,
            Class::Permanent,
            Cause::Sink(
                "--bigquery-mode load runs in `replay` and `backfill` only (batches of objects)"
                    .into(),
            ),
        ))
    }
}

/// Everything a load run needs besides the objects.
pub struct LoadRun {
    pub shared: Shared,
    pub loads: Arc<LoadJobs>,
    pub encoder: Arc<Encoder>,
    pub bounds: Bounds,
    pub concurrency: usize,
    /// Spool files go under here (a temporary directory per batch).
    pub spool_dir: Option<PathBuf>,
    /// `--dedup merge`: each batch is loaded into a staging table and merged from there.
    pub merger: Option<Arc<Merger>>,
    /// `--schema-evolution add-columns`, `--create-table auto`: each batch reads the table's
    /// schema and its records may widen it (else `encoder` checks every row).
    pub growth: Growth,
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
    })
}

/// Runs every batch in order. Objects whose spooling failed are dead-lettered by the runner as
/// usual; objects of a batch whose job failed for good are dead-lettered with the job's error.
pub async fn run(jobs: Vec<Job>, run: LoadRun, stop: Arc<AtomicBool>) -> Summary {
    let started = std::time::Instant::now();
    let objects: Vec<ObjectRef> = jobs.iter().map(|j| j.object.clone()).collect();
    let plan = plan(&objects, &run.bounds);
    tracing::info!("{}", plan.describe(objects.len(), &run.bounds));
    let mut jobs: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
    let mut summary = Summary::default();
    let total = plan.batches.len();
    for (n, batch) in plan.batches.iter().enumerate() {
        let batch_jobs: Vec<Job> = batch.iter().filter_map(|&i| jobs[i].take()).collect();
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            summary.not_started += batch_jobs.len() as u64;
            continue;
        }
        let s = run_batch(batch_jobs, &run, stop.clone(), n + 1, total).await;
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

/// Runs a blocking ledger call from this async code: the S3 ledger blocks on the runtime, which
/// a task may only do once it has told the runtime so (`block_in_place`, multi-threaded runtime).
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Removes load-batch spool folders that killed runs left in the temporary directory: a folder
/// is `firehose-replay-load-<pid>-…`, and is stale once no process has that pid.
fn sweep_stale_spools() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("firehose-replay-load-") else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => tracing::info!(dir = %e.path().display(), "removed a load spool folder left by a run that did not finish"),
                    Err(err) => tracing::warn!(dir = %e.path().display(), "could not remove a stale load spool folder: {err}"),
                }
            }
        }
    });
}

/// Every object of a batch that could not start, failed with `error`.
fn fail_all(jobs: Vec<Job>, run: &LoadRun, error: &Error) -> Summary {
    let mut summary = Summary::default();
    for job in jobs {
        let failure = batch_failure(job.object, error);
        let _ = settle_failure(&failure, &run.shared.dead_letters);
        summary.failures.push(failure);
    }
    summary
}

async fn run_batch(
    jobs: Vec<Job>,
    run: &LoadRun,
    stop: Arc<AtomicBool>,
    n: usize,
    total: usize,
) -> Summary {
    let dir = match &run.spool_dir {
        Some(d) => tempfile::Builder::new().prefix("load-batch-").tempdir_in(d),
        None => {
            sweep_stale_spools();
            tempfile::Builder::new()
                .prefix(&format!("firehose-replay-load-{}-", std::process::id()))
                .tempdir()
        }
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            let error = Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink(format!("spool directory: {e}")),
            );
            return fail_all(jobs, run, &error);
        }
    };
    let schema = if run.growth.active() {
        match batch_schema::for_batch(&run.loads, &run.growth, &run.shared.settings).await {
            Ok(s) => s,
            Err(error) => return fail_all(jobs, run, &error),
        }
    } else {
        BatchSchema::fixed(run.encoder.clone())
    };
    let schema = Arc::new(schema);
    let spool = Arc::new(Spool {
        dir: dir.path().to_path_buf(),
        schema: schema.clone(),
        loads: run.loads.clone(),
        handle: Handle::current(),
        spooled: Mutex::default(),
        next: Default::default(),
    });
    let holding = Arc::new(HoldingLedger {
        inner: run.shared.ledger.clone(),
        held: Mutex::default(),
        renewing: Arc::default(),
    });
    let renewals = HeldRenewals::start(run.shared.ledger.clone(), holding.renewing.clone());
    let mut shared = run.shared.clone();
    shared.sink = Arc::new(SpoolSink(spool.clone()));
    shared.ledger = holding.clone();
    let mut summary = runner::run(jobs, shared, run.concurrency, Progress::Off, stop).await;

    // Objects finished without rows to load (recovered from an earlier run's job, or every
    // record refused) are done now; the others wait for the job.
    let held = std::mem::take(&mut *holding.held.lock().unwrap_or_else(|p| p.into_inner()));
    let mut spooled_files =
        std::mem::take(&mut *spool.spooled.lock().unwrap_or_else(|p| p.into_inner()));
    let mut to_load = Vec::new();
    for h in held {
        match spooled_files.remove(&identity(&h.object)) {
            Some(s) if s.rows > 0 => to_load.push((h, s)),
            _ => {
                holding.forget(&h.object);
                if let Err(e) =
                    off_runtime(|| run.shared.ledger.finish(&h.object, h.claim, &h.summary))
                {
                    tracing::warn!(object = %h.object, "could not record the object as done: {e}");
                }
            }
        }
    }
    // Objects whose claim another worker took over meanwhile are that worker's: not loaded.
    let (lost, kept): (Vec<_>, Vec<_>) = to_load
        .into_iter()
        .partition(|(h, _)| h.claim.lease.lost().is_some());
    to_load = kept;
    for (h, s) in lost {
        holding.forget(&h.object);
        summary.objects_ok = summary.objects_ok.saturating_sub(1);
        summary.counts.rows = summary.counts.rows.saturating_sub(s.rows);
        let holder = h.claim.lease.lost().unwrap_or_default();
        let failure = Box::new(ObjectFailure {
            error: crate::ledger::claim_lost(&h.object, &holder),
            object: h.object,
            attempts: 1,
        });
        let _ = settle_failure(&failure, &run.shared.dead_letters);
        summary.failures.push(failure);
    }
    if to_load.is_empty() {
        if let Some(r) = renewals {
            r.stop().await;
        }
        return summary;
    }
    to_load.sort_by(|a, b| a.0.object.key.cmp(&b.0.object.key));
    let keys: Vec<ObjectKey> = to_load
        .iter()
        .map(|(h, _)| ObjectKey {
            bucket: h.object.bucket.clone(),
            key: h.object.key.clone(),
            etag: h.object.etag.clone().unwrap_or_default(),
        })
        .collect();
    let first = job_id(run.loads.table(), &keys, 0);
    let rows: u64 = to_load.iter().map(|(_, s)| s.rows).sum();
    let outcome = match &run.merger {
        Some(merger) => merge_batch(run, merger, dir.path(), &to_load, &keys, &first).await,
        None => load_batch(run, &schema, dir.path(), &to_load, &keys, &first)
            .await
            .map(|job| (job, rows)),
    };
    // The job has settled: the claims are finished or released next, not renewed any more.
    if let Some(r) = renewals {
        r.stop().await;
    }
    match outcome {
        Ok((loaded, inserted)) => {
            // `--dedup merge` leaves out rows the table held already.
            let present = rows.saturating_sub(inserted);
            summary.counts.rows = summary.counts.rows.saturating_sub(present);
            summary.counts.already_present += present;
            tracing::info!(batch = format!("{n}/{total}"), objects = to_load.len(), rows = inserted, already_present = present, job_id = %loaded, "batch loaded");
            for (h, _) in to_load {
                if let Err(e) =
                    off_runtime(|| run.shared.ledger.finish(&h.object, h.claim, &h.summary))
                {
                    // Loaded: the next run finds the staged job and records it then.
                    tracing::warn!(object = %h.object, "could not record the object as done: {e}");
                }
            }
        }
        Err(error) => {
            tracing::error!(
                batch = format!("{n}/{total}"),
                objects = to_load.len(),
                "batch not loaded: {error}"
            );
            for (h, s) in to_load {
                summary.objects_ok = summary.objects_ok.saturating_sub(1);
                summary.counts.rows = summary.counts.rows.saturating_sub(s.rows);
                off_runtime(|| run.shared.ledger.abandon(&h.object, h.claim));
                let failure = batch_failure(h.object, &error);
                let _ = settle_failure(&failure, &run.shared.dead_letters);
                summary.failures.push(failure);
            }
        }
    }
    summary
}

/// Stages every object with the job chain, builds the upload file and loads it.
async fn load_batch(
    run: &LoadRun,
    schema: &BatchSchema,
    dir: &Path,
    to_load: &[(HeldFinish, Spooled)],
    keys: &[ObjectKey],
    first: &str,
) -> Result<String, Error> {
    let ledger = run.shared.ledger.clone();
    let token = format!("{TOKEN_PREFIX}{first}");
    let staged: Vec<(ObjectRef, Staged)> = to_load
        .iter()
        .map(|(h, _)| {
            (
                h.object.clone(),
                Staged {
                    token: token.clone(),
                    records: h.summary.records,
                    rows: h.summary.rows,
                    record_errors: h.summary.record_errors,
                },
            )
        })
        .collect();
    for ((h, _), (object, s)) in to_load.iter().zip(&staged) {
        let (ledger, object, s) = (ledger.clone(), object.clone(), s.clone());
        // The same lease: this conditional write is the fence before the job is submitted.
        let claim = Claim {
            lease: h.claim.lease.clone(),
            staged: None,
        };
        ledger_blocking(move || ledger.stage(&object, &claim, &s)).await?;
    }
    let upload = concat_spools(dir, to_load).await?;
    let loaded = if run.growth.active() {
        // The table as it is now, plus what the batch's records added (or the batch's schema
        // for a table the job creates); the job ID stays the batch's.
        let loads = batch_schema::job_client(&run.loads, schema, &run.growth).await?;
        loads.load(keys, &upload).await?
    } else {
        run.loads.load(keys, &upload).await?
    };
    Ok(loaded.job_id)
}

/// A ledger write on a blocking thread (ledgers do their I/O synchronously).
async fn ledger_blocking(
    f: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Result<(), Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(
            Stage::Sink,
            Class::Transient,
            Cause::Sink(format!("ledger: {e}")),
        )
    })?
}

/// `--dedup merge`: the batch goes into a staging table of its own (a load job there), then
/// one MERGE adds the rows the target lacks; nothing is staged in the ledger, because a batch
/// redone from the start adds nothing twice. Returns the load job and the rows inserted.
async fn merge_batch(
    run: &LoadRun,
    merger: &Merger,
    dir: &Path,
    to_load: &[(HeldFinish, Spooled)],
    keys: &[ObjectKey],
    first: &str,
) -> Result<(String, u64), Error> {
    let ledger = run.shared.ledger.clone();
    for (h, _) in to_load {
        let (ledger, object) = (ledger.clone(), h.object.clone());
        let claim = Claim {
            lease: h.claim.lease.clone(),
            staged: None,
        };
        // The fence before anything becomes visible: the claims are still ours.
        ledger_blocking(move || ledger.renew(&object, &claim)).await?;
    }
    let upload = concat_spools(dir, to_load).await?;
    let staging = merger.staging_for(first);
    merger.create(&staging).await?;
    let loads = run.loads.with_table(staging.table.clone());
    let outcome = async {
        let loaded = loads.load(keys, &upload).await?;
        let inserted = merger.merge(&staging).await?;
        Ok((loaded.job_id, inserted))
    }
    .await;
    merger.drop_staging(&staging).await;
    outcome
}

/// One upload file: the objects' spool files in key order, each removed once copied.
async fn concat_spools(dir: &Path, to_load: &[(HeldFinish, Spooled)]) -> Result<PathBuf, Error> {
    let upload = dir.join("upload.ndjson");
    let files: Vec<PathBuf> = to_load.iter().map(|(_, s)| s.path.clone()).collect();
    let upload_path = upload.clone();
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        let mut out = File::create(&upload_path).map_err(|e| spool_error(&upload_path, e))?;
        for f in files {
            let mut input = File::open(&f).map_err(|e| spool_error(&f, e))?;
            std::io::copy(&mut input, &mut out).map_err(|e| spool_error(&upload_path, e))?;
            let _ = std::fs::remove_file(&f);
        }
        out.sync_all().map_err(|e| spool_error(&upload_path, e))
    })
    .await
    .map_err(|e| {
        Error::new(
            Stage::Sink,
            Class::Transient,
            Cause::Sink(format!("spool: {e}")),
        )
    })??;
    Ok(upload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_follow_from_the_first() {
        assert_eq!(
            attempt_id("firehose_replay_ab_0", 3).as_deref(),
            Some("firehose_replay_ab_3")
        );
        assert_eq!(attempt_id("firehose_replay_ab_1", 3), None);
    }
}

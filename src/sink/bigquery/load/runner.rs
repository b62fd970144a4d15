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
//!
//! A routed sink ([`super::route`]) makes one job per table per batch: every object is staged
//! with the jobs of all its tables before any job is submitted, and finished once they all
//! loaded.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use super::plan::{plan, Bounds};
use super::route::{self as routes, Entry, Routing};
use super::schema::{self as batch_schema, BatchSchema, Growth};
use super::spool::{spool_error, Identity, Spool, SpoolSink, Spooled, TableSpool};
use super::{job_id, LoadJobs, ObjectKey};
use crate::error::{Cause, Class, Error, Stage};
use crate::ledger::{identity, Begin, Claim, Finished, Ledger, Staged};
use crate::object::ObjectRef;
use crate::pipeline::ObjectFailure;
use crate::run::{self as runner, settle_failure, Job, Progress, Shared, Summary};
use crate::sink::bigquery::encode::Encoder;
use crate::sink::bigquery::merge::Merger;
use crate::sink::{ObjectWriter, Sink};

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
    /// What each object's earlier attempt staged, for the spool (which tables to leave out).
    staged_tokens: Arc<Mutex<HashMap<Identity, String>>>,
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
    /// `--sink` with placeholders: a table per record, a job per table per batch.
    pub routing: Option<Arc<Routing>>,
}

/// The same error again (for each object of a failed job).
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
    // An unrouted run's one table, its schema read now when it may grow.
    let mut tables = HashMap::new();
    if run.routing.is_none() {
        let schema = if run.growth.active() {
            match batch_schema::for_batch(&run.loads, &run.growth, &run.shared.settings).await {
                Ok(s) => s,
                Err(error) => return fail_all(jobs, run, &error),
            }
        } else {
            BatchSchema::fixed(run.encoder.clone())
        };
        let t = run.loads.table().clone();
        tables.insert(
            t.to_string(),
            Arc::new(TableSpool {
                table: t,
                loads: run.loads.clone(),
                schema: Arc::new(schema),
            }),
        );
    }
    let staged_tokens: Arc<Mutex<HashMap<Identity, String>>> = Arc::default();
    let spool = Arc::new(Spool {
        dir: dir.path().to_path_buf(),
        loads: run.loads.clone(),
        handle: Handle::current(),
        spooled: Mutex::default(),
        next: Default::default(),
        tables: Mutex::new(tables),
        routing: run.routing.clone(),
        growth: run.growth.clone(),
        settings: run.shared.settings.clone(),
        staged_tokens: staged_tokens.clone(),
        partial: Mutex::default(),
    });
    let holding = Arc::new(HoldingLedger {
        inner: run.shared.ledger.clone(),
        held: Mutex::default(),
        renewing: Arc::default(),
        staged_tokens,
    });
    let renewals = HeldRenewals::start(run.shared.ledger.clone(), holding.renewing.clone());
    let mut shared = run.shared.clone();
    shared.sink = Arc::new(SpoolSink(spool.clone()));
    shared.ledger = holding.clone();
    let mut summary = runner::run(jobs, shared, run.concurrency, Progress::Off, stop).await;

    // Objects finished without rows to load (recovered from an earlier run's job, or every
    // record refused) are done now; the others wait for the jobs.
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
            counts: Default::default(),
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
    let groups = group_by_table(&to_load);
    let rows: u64 = to_load.iter().map(|(_, s)| s.rows).sum();
    let outcome = match &run.merger {
        Some(merger) => {
            let g = groups.values().next().expect("rows to load");
            merge_batch(run, merger, dir.path(), &to_load, g)
                .await
                .map(|(job, inserted)| (vec![Ok(job)], inserted))
        }
        None => load_batch(run, dir.path(), &to_load, &groups)
            .await
            .map(|results| (results, rows)),
    };
    // The jobs have settled: the claims are finished or released next, not renewed any more.
    if let Some(r) = renewals {
        r.stop().await;
    }
    // Each object fails with the first of its tables' jobs that failed.
    let (failed_with, inserted, jobs): (Vec<Option<Error>>, u64, Vec<String>) = match outcome {
        Ok((results, inserted)) => {
            let mut failed: Vec<Option<Error>> = (0..to_load.len()).map(|_| None).collect();
            let mut ids = Vec::new();
            for (g, result) in groups.values().zip(results) {
                match result {
                    Ok(id) => ids.push(id),
                    Err(e) => {
                        for &(i, _, _) in &g.members {
                            failed[i].get_or_insert_with(|| copy_error(&e));
                        }
                    }
                }
            }
            (failed, inserted, ids)
        }
        Err(error) => (
            (0..to_load.len())
                .map(|_| Some(copy_error(&error)))
                .collect(),
            0,
            Vec::new(),
        ),
    };
    let failing = failed_with.iter().filter(|f| f.is_some()).count();
    let loaded_rows: u64 = to_load
        .iter()
        .zip(&failed_with)
        .filter(|(_, f)| f.is_none())
        .map(|((_, s), _)| s.rows)
        .sum();
    if failing < to_load.len() {
        // `--dedup merge` leaves out rows the table held already.
        let present = loaded_rows.saturating_sub(inserted.min(loaded_rows));
        summary.counts.rows = summary.counts.rows.saturating_sub(present);
        summary.counts.already_present += present;
        tracing::info!(batch = format!("{n}/{total}"), objects = to_load.len() - failing, rows = loaded_rows - present, already_present = present, job_id = %jobs.join(","), "batch loaded");
    }
    for ((h, s), failed) in to_load.into_iter().zip(failed_with) {
        match failed {
            None => {
                if let Err(e) =
                    off_runtime(|| run.shared.ledger.finish(&h.object, h.claim, &h.summary))
                {
                    // Loaded: the next run finds the staged jobs and records it then.
                    tracing::warn!(object = %h.object, "could not record the object as done: {e}");
                }
            }
            Some(error) => {
                tracing::error!(
                    batch = format!("{n}/{total}"),
                    object = %h.object,
                    "batch not loaded: {error}"
                );
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

/// The rows of one table in a batch: its spool, and which objects' files hold them.
struct Group {
    spool: Arc<TableSpool>,
    /// (index into `to_load`, spool file, rows), in key order.
    members: Vec<(usize, PathBuf, u64)>,
    keys: Vec<ObjectKey>,
    first: String,
}

fn object_key(o: &ObjectRef) -> ObjectKey {
    ObjectKey {
        bucket: o.bucket.clone(),
        key: o.key.clone(),
        etag: o.etag.clone().unwrap_or_default(),
    }
}

/// The batch's tables in name order, each with its job's first ID: the table and the exact
/// objects whose rows it holds (so a retry of the same rows meets the same job).
fn group_by_table(to_load: &[(HeldFinish, Spooled)]) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (i, (h, s)) in to_load.iter().enumerate() {
        for (t, path, rows) in &s.files {
            if *rows == 0 {
                continue;
            }
            let g = groups.entry(t.table.to_string()).or_insert_with(|| Group {
                spool: t.clone(),
                members: Vec::new(),
                keys: Vec::new(),
                first: String::new(),
            });
            g.members.push((i, path.clone(), *rows));
            g.keys.push(object_key(&h.object));
        }
    }
    for g in groups.values_mut() {
        g.first = job_id(&g.spool.table, &g.keys, 0);
    }
    groups
}

/// Stages every object with all the batch's jobs its rows are in (before any is submitted),
/// then loads table by table. `Err` when staging failed (nothing submitted); else one result
/// per table, in `groups` order.
async fn load_batch(
    run: &LoadRun,
    dir: &Path,
    to_load: &[(HeldFinish, Spooled)],
    groups: &BTreeMap<String, Group>,
) -> Result<Vec<Result<String, Error>>, Error> {
    let ledger = run.shared.ledger.clone();
    let routed = run.routing.is_some();
    for (i, (h, s)) in to_load.iter().enumerate() {
        let mut entries: Vec<Entry> = groups
            .iter()
            .filter(|(_, g)| g.members.iter().any(|m| m.0 == i))
            .map(|(name, g)| Entry {
                first: g.first.clone(),
                table: routed.then(|| name.clone()),
            })
            .collect();
        entries.extend(s.carried.iter().cloned());
        let staged = Staged {
            token: routes::token(&entries),
            records: h.summary.records,
            rows: h.summary.rows,
            record_errors: h.summary.record_errors,
        };
        let (ledger, object) = (ledger.clone(), h.object.clone());
        // The same lease: this conditional write is the fence before any job is submitted.
        let claim = Claim {
            lease: h.claim.lease.clone(),
            staged: None,
        };
        ledger_blocking(move || ledger.stage(&object, &claim, &staged)).await?;
    }
    let mut results = Vec::with_capacity(groups.len());
    for (n, g) in groups.values().enumerate() {
        let result = async {
            let upload = concat_spools(dir, n, &g.members).await?;
            let loaded = if run.growth.active() || routed {
                // The table as it is now, plus what the batch's records added (or the batch's
                // schema for a table the job creates); the job ID stays the batch's.
                let loads =
                    batch_schema::job_client(&g.spool.loads, &g.spool.schema, &run.growth).await?;
                loads.load(&g.keys, &upload).await
            } else {
                run.loads.load(&g.keys, &upload).await
            };
            let _ = std::fs::remove_file(&upload);
            Ok::<_, Error>(loaded?.job_id)
        }
        .await;
        results.push(result);
    }
    Ok(results)
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
    group: &Group,
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
    let upload = concat_spools(dir, 0, &group.members).await?;
    let staging = merger.staging_for(&group.first);
    merger.create(&staging).await?;
    let loads = run.loads.with_table(staging.table.clone());
    let outcome = async {
        let loaded = loads.load(&group.keys, &upload).await?;
        let inserted = merger.merge(&staging).await?;
        Ok((loaded.job_id, inserted))
    }
    .await;
    merger.drop_staging(&staging).await;
    outcome
}

/// One upload file for a table: its objects' spool files in key order, each removed once
/// copied.
async fn concat_spools(
    dir: &Path,
    n: usize,
    members: &[(usize, PathBuf, u64)],
) -> Result<PathBuf, Error> {
    let upload = dir.join(format!("upload-{n}.ndjson"));
    let files: Vec<PathBuf> = members.iter().map(|(_, p, _)| p.clone()).collect();
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

//! Many objects with bounded concurrency; each outcome settled, shown and summed up.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, StreamExt};

use crate::backfill::ListProgress;

use crate::dead_letter::DeadLetterDir;
use crate::error::{Cause, Class, Error, Stage};
use crate::ledger::Ledger;
use crate::object::ObjectRef;
use crate::pipeline::{
    process_object, Context, Counts, ObjectFailure, ObjectReport, Processed, Settings, Skip,
};
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
    pub retry: crate::retry::ObjectRetry,
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
        let mut stale = vec![crate::sink::ndjson::mirrored_path(
            dir,
            &report.object,
            ".object.json",
        )];
        if report.dead_letter.is_none() {
            stale.push(crate::sink::ndjson::mirrored_path(
                dir,
                &report.object,
                ".records.json",
            ));
        }
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

/// The jobs of a run: all known up front, or listed while the run goes (a backfill).
pub struct Feed {
    jobs: BoxStream<'static, Result<Job, Error>>,
    total: Option<u64>,
    listing: Option<Arc<ListProgress>>,
}

impl Feed {
    pub fn fixed(jobs: Vec<Job>) -> Feed {
        Feed {
            total: Some(jobs.len() as u64),
            jobs: stream::iter(jobs.into_iter().map(Ok)).boxed(),
            listing: None,
        }
    }

    /// Jobs as `progress` lists them. An `Err` item (listing failed) ends the run like an
    /// interruption: nothing new starts, and the summary keeps the error.
    pub fn listed(
        jobs: impl futures::Stream<Item = Result<Job, Error>> + Send + 'static,
        progress: Arc<ListProgress>,
    ) -> Feed {
        Feed {
            jobs: jobs.boxed(),
            total: None,
            listing: Some(progress),
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Off,
    /// A live bar (for a terminal).
    Bar,
    /// A log line every so often (for logs and CI).
    Log(Duration),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub objects_ok: u64,
    pub skipped_done: u64,
    pub skipped_busy: u64,
    /// Not started because the run was interrupted, or stopped unfinished (nothing of them
    /// committed) because the output was closed.
    pub not_started: u64,
    /// Ctrl-C was pressed: the run stopped starting objects (set by the caller that watches
    /// for it).
    pub interrupted: bool,
    /// The output's reader went away (`--sink stdout | head`): the run ended early, without
    /// retries or dead letters.
    pub output_closed: bool,
    pub failures: Vec<Box<ObjectFailure>>,
    /// Listing the objects failed part way (a backfill): the objects after it were not run.
    pub listing_failed: Option<Error>,
    pub counts: Counts,
    pub elapsed: Duration,
}

impl Summary {
    pub fn objects(&self) -> u64 {
        self.objects_ok
            + self.skipped_done
            + self.skipped_busy
            + self.not_started
            + self.failures.len() as u64
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "objects:  {} ({} ok, {} skipped by the ledger, {} failed",
            self.objects(),
            self.objects_ok,
            self.skipped_done,
            self.failures.len()
        )?;
        if self.skipped_busy > 0 {
            write!(f, ", {} held by other workers", self.skipped_busy)?;
        }
        if self.not_started > 0 {
            write!(f, ", {} not started: interrupted", self.not_started)?;
        } else if self.interrupted {
            write!(f, ", interrupted")?;
        }
        writeln!(f, ")")?;
        write!(f, "records:  {} ({} rows written", c.records, c.rows)?;
        if c.recovered > 0 {
            write!(
                f,
                ", {} rows recovered: committed by an earlier run",
                c.recovered
            )?;
        }
        if c.already_present > 0 {
            write!(
                f,
                ", {} rows already in the table: not added again",
                c.already_present
            )?;
        }
        writeln!(
            f,
            ", {} record errors, {} control messages skipped)",
            c.record_errors, c.control_messages
        )?;
        writeln!(
            f,
            "bytes:    {:.2} MiB in, {:.2} MiB decompressed",
            mib(c.bytes_in),
            mib(c.bytes_out)
        )?;
        write!(
            f,
            "elapsed:  {:.2} s ({:.1} MiB/s decompressed, {:.0} rows/s)",
            secs,
            mib(c.bytes_out) / secs,
            c.rows as f64 / secs
        )
    }
}

enum Outcome {
    Processed(Box<Result<Processed, Box<ObjectFailure>>>),
    NotStarted,
    ListingFailed(Error),
}

/// Live totals for the progress display.
#[derive(Default)]
struct Totals {
    objects: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
}

/// Processes `jobs`, started in order, at most `concurrency` at a time, each on a blocking
/// thread. A slot is freed as soon as its object ends, whatever the objects started before it
/// are doing: no object waits for another (a huge object in flight does not hold back the tiny
/// ones listed after it), and progress counts objects as they end. Nothing needs completion
/// order: each object commits and marks the ledger on its own; the summary's failures are put
/// back in listing order so the report reads the same on every run. Failed objects are dead-lettered and the run goes on. Once `stop` is set, no new object is
/// started; those in flight finish (or fail) normally. An object that fails because the output
/// was closed ([`Error::is_output_closed`]) ends the run: nothing new starts, it and the objects
/// in flight are neither dead-lettered nor counted as failures, and the summary says
/// `output_closed`.
pub async fn run(
    jobs: Vec<Job>,
    shared: Shared,
    concurrency: usize,
    progress: Progress,
    stop: Arc<AtomicBool>,
) -> Summary {
    run_feed(Feed::fixed(jobs), shared, concurrency, progress, stop).await
}

/// [`run`] over a [`Feed`]: with a listed feed, objects start as they are listed, and the
/// progress display shows the listing too. Stopping (Ctrl-C, a closed output, a listing error)
/// halts the listing.
pub async fn run_feed(
    feed: Feed,
    shared: Shared,
    concurrency: usize,
    progress: Progress,
    stop: Arc<AtomicBool>,
) -> Summary {
    let started = Instant::now();
    let Feed {
        jobs,
        total,
        listing,
    } = feed;
    let totals = Arc::new(Totals::default());
    let bar = match progress {
        Progress::Bar => Some(progress_bar(total.unwrap_or(0))),
        _ => None,
    };
    let view = View {
        totals: totals.clone(),
        total,
        listing: listing.clone(),
        started,
    };
    // The bar moves while objects are listed, even if none finishes for a while.
    let bar_ticker = match (&bar, &listing) {
        (Some(bar), Some(_)) => {
            let (bar, view) = (bar.clone(), view.clone());
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    view.refresh(&bar);
                }
            }))
        }
        _ => None,
    };
    let ticker = match progress {
        Progress::Log(every) => Some(tokio::spawn(log_progress(view.clone(), every))),
        _ => None,
    };
    let mut summary = Summary::default();
    let closed = Arc::new(AtomicBool::new(false));
    let halted = Arc::new(AtomicBool::new(false));
    let mut results = jobs
        .enumerate()
        .map(|(index, job)| {
            let shared = shared.clone();
            let stop = stop.clone();
            let closed = closed.clone();
            let halted = halted.clone();
            let listing = listing.clone();
            async move {
                let job = match job {
                    Ok(job) => job,
                    Err(e) => {
                        halted.store(true, Ordering::SeqCst);
                        return (index, Outcome::ListingFailed(e));
                    }
                };
                if stop.load(Ordering::SeqCst)
                    || closed.load(Ordering::SeqCst)
                    || halted.load(Ordering::SeqCst)
                {
                    if let Some(l) = &listing {
                        l.halt();
                    }
                    return (index, Outcome::NotStarted);
                }
                let object = job.object.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let deadline = shared.object_timeout.map(|t| Instant::now() + t);
                    shared.process(job.store.as_ref(), job.object, deadline)
                });
                let outcome = match task.await {
                    Ok(r) => Outcome::Processed(Box::new(r)),
                    // A panic is a bug, never an input problem; report it against the object.
                    Err(join) => {
                        let error = Error::new(
                            Stage::Parse,
                            Class::Transient,
                            Cause::Sink(format!("internal error: {join}")),
                        );
                        Outcome::Processed(Box::new(Err(Box::new(ObjectFailure {
                            object,
                            error,
                            attempts: 1,
                            counts: Default::default(),
                        }))))
                    }
                };
                (index, outcome)
            }
        })
        .buffer_unordered(concurrency.max(1));
    // Listing positions of `summary.failures`, to sort them back at the end.
    let mut failed_at: Vec<usize> = Vec::new();
    while let Some((index, outcome)) = results.next().await {
        let outcome = match outcome {
            Outcome::NotStarted => {
                summary.not_started += 1;
                continue;
            }
            Outcome::ListingFailed(e) => {
                summary.listing_failed = Some(e);
                continue;
            }
            Outcome::Processed(result) => *result,
        };
        match outcome {
            Ok(Processed::Done(report)) => {
                // With a live bar, per-object lines would tear it; they go to debug instead.
                log_report(&report, bar.is_none());
                totals.rows.fetch_add(report.counts.rows, Ordering::Relaxed);
                totals
                    .bytes
                    .fetch_add(report.counts.bytes_out, Ordering::Relaxed);
                summary.objects_ok += 1;
                summary.counts += report.counts;
            }
            Ok(Processed::Skipped { object, reason }) => match reason {
                Skip::AlreadyDone => {
                    tracing::debug!(object = %object, "skipped: already done (ledger)");
                    summary.skipped_done += 1;
                }
                Skip::Busy(who) => {
                    tracing::info!(object = %object, holder = %who, "skipped: another worker holds it");
                    summary.skipped_busy += 1;
                }
            },
            Err(failure) if failure.error.is_output_closed() => {
                if !closed.swap(true, Ordering::SeqCst) {
                    tracing::debug!(object = %failure.object, "the output was closed; stopping");
                }
                if let Some(l) = &listing {
                    l.halt();
                }
                summary.output_closed = true;
                summary.not_started += 1;
                continue;
            }
            Err(failure) => {
                let _ = settle_failure(&failure, &shared.dead_letters);
                // What the failed object read counts too (its rows, none committed, do not).
                summary.counts += failure.counts;
                summary.failures.push(failure);
                failed_at.push(index);
            }
        }
        totals.objects.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &bar {
            view.refresh(bar);
        }
    }
    let mut failures: Vec<_> = failed_at.into_iter().zip(summary.failures).collect();
    failures.sort_by_key(|(index, _)| *index);
    summary.failures = failures.into_iter().map(|(_, f)| f).collect();
    if let Some(l) = &listing {
        l.halt(); // ended early (output closed): the listing has no one to feed
    }
    if let Some(t) = bar_ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(t) = ticker {
        t.abort();
    }
    summary.elapsed = started.elapsed();
    summary
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} objects · {msg} · ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// What the progress display shows: objects done of those known (all, or listed so far) and,
/// while a backfill lists, how far listing has got.
#[derive(Clone)]
struct View {
    totals: Arc<Totals>,
    total: Option<u64>,
    listing: Option<Arc<ListProgress>>,
    started: Instant,
}

impl View {
    fn known(&self) -> u64 {
        match (&self.listing, self.total) {
            (Some(l), _) => l.objects_listed(),
            (None, Some(n)) => n,
            (None, None) => 0,
        }
    }

    /// `H/T` hours listed, while listing goes on or once it ended.
    fn hours_listed(&self) -> Option<String> {
        self.listing
            .as_ref()
            .map(|l| format!("{}/{}", l.hours_listed(), l.hours_total))
    }

    fn listed(&self) -> Option<String> {
        self.hours_listed().map(|h| format!("{h} hours listed"))
    }

    fn refresh(&self, bar: &indicatif::ProgressBar) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let bytes = self.totals.bytes.load(Ordering::Relaxed);
        bar.set_length(self.known());
        bar.set_position(self.totals.objects.load(Ordering::Relaxed));
        let mut msg = format!(
            "{} rows, {:.1} MiB, {:.1} MiB/s",
            self.totals.rows.load(Ordering::Relaxed),
            mib(bytes),
            mib(bytes) / secs
        );
        if let Some(listed) = self.listed() {
            msg = format!("{listed} · {msg}");
        }
        bar.set_message(msg);
    }
}

async fn log_progress(view: View, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let secs = view.started.elapsed().as_secs_f64().max(1e-9);
        let bytes = view.totals.bytes.load(Ordering::Relaxed);
        let objects = format!(
            "{}/{}",
            view.totals.objects.load(Ordering::Relaxed),
            view.known()
        );
        let rows = view.totals.rows.load(Ordering::Relaxed);
        let (mib_done, rate) = (
            format!("{:.1}", mib(bytes)),
            format!("{:.1}", mib(bytes) / secs),
        );
        // While a backfill lists, `objects` is done/listed so far.
        match view.hours_listed() {
            Some(hours_listed) => tracing::info!(
                objects,
                hours_listed,
                rows,
                mib = mib_done,
                mib_per_s = rate,
                "progress"
            ),
            None => tracing::info!(objects, rows, mib = mib_done, mib_per_s = rate, "progress"),
        }
    }
}

/// The `object done` line of a delivered object (at debug level unless `info`).
pub fn log_report(r: &ObjectReport, info: bool) {
    let layers: Vec<&str> = r.compression.iter().map(|c| c.name()).collect();
    let level = if info {
        tracing::Level::INFO
    } else {
        tracing::Level::DEBUG
    };
    macro_rules! report {
        ($lvl:expr) => {
            tracing::event!(
                $lvl,
                object = %r.object,
                compression = %if layers.is_empty() { "none".to_string() } else { layers.join("+") },
                framing = r.framing.unwrap_or("-"),
                envelope = r.envelope.map_or("-", |e| e.name()),
                records = r.counts.records,
                rows = r.counts.rows,
                already_present = r.counts.already_present,
                record_errors = r.counts.record_errors,
                ms = r.elapsed.as_millis() as u64,
                "object done"
            )
        };
    }
    if level == tracing::Level::INFO {
        report!(tracing::Level::INFO);
    } else {
        report!(tracing::Level::DEBUG);
    }
}

/// Dead-letters a failed object and logs it; the error says where the dead letter could not be
/// written (the object is then not kept anywhere, which callers must treat as not done).
pub fn settle_failure(
    failure: &ObjectFailure,
    dead_letters: &DeadLetterDir,
) -> Result<String, Error> {
    if matches!(failure.error.cause, crate::error::Cause::ClaimLost { .. }) {
        // Another worker holds the object and finishes it: a letter would only invite a
        // second delivery.
        tracing::error!(
            object = %failure.object,
            "object failed: {} (not dead-lettered: another worker holds it)",
            failure.error
        );
        return Ok("not dead-lettered: another worker holds the object".into());
    }
    match dead_letters.object(&failure.object, &failure.error, failure.attempts) {
        Ok(path) => {
            tracing::error!(
                object = %failure.object,
                class = %failure.error.class,
                dead_letter = %path,
                "object failed: {}",
                failure.error
            );
            Ok(path)
        }
        Err(e) => {
            tracing::error!(
                object = %failure.object,
                "object failed: {} (and could not be dead-lettered: {e})",
                failure.error
            );
            Err(e)
        }
    }
}

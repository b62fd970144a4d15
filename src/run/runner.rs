//! The run loop: many objects with bounded concurrency, none waiting for another; each outcome
//! settled (dead letters), shown and summed up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::StreamExt;

use crate::dead_letter::DeadLetterDir;
use crate::error::{Cause, Class, Error, Stage};
use crate::pipeline::{ObjectFailure, ObjectReport, Processed, Skip};

use super::progress::*;
use super::shared::*;
use super::summary::*;

enum Outcome {
    Processed(Box<Result<Processed, Box<ObjectFailure>>>),
    NotStarted,
    ListingFailed(Error),
}

/// Processes `jobs`, started in order, at most `concurrency` at a time, each on a blocking
/// thread. A slot is freed as soon as its object ends, whatever the objects started before it
/// are doing: no object waits for another (a huge object in flight does not hold back the tiny
/// ones listed after it), and progress counts objects as they end. Nothing needs completion
/// order: each object commits and marks the ledger on its own; the summary's failures are put
/// back in listing order so the report reads the same on every run. Failed objects are
/// dead-lettered and the run goes on. Once `stop` is set, no new object is started; those in flight finish (or fail) normally. An object that fails because the output
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

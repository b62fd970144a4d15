//! The objects a run is fed and how its progress is shown (a live bar, or log lines).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, StreamExt};

use crate::backfill::ListProgress;
use crate::error::Error;

use super::shared::*;
use super::summary::mib;

/// The jobs of a run: all known up front, or listed while the run goes (a backfill).
pub struct Feed {
    pub(super) jobs: BoxStream<'static, Result<Job, Error>>,
    pub(super) total: Option<u64>,
    pub(super) listing: Option<Arc<ListProgress>>,
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

/// Live totals for the progress display.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) objects: AtomicU64,
    pub(super) rows: AtomicU64,
    pub(super) bytes: AtomicU64,
}

pub(super) fn progress_bar(total: u64) -> indicatif::ProgressBar {
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
pub(super) struct View {
    pub(super) totals: Arc<Totals>,
    pub(super) total: Option<u64>,
    pub(super) listing: Option<Arc<ListProgress>>,
    pub(super) started: Instant,
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

    pub(super) fn refresh(&self, bar: &indicatif::ProgressBar) {
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

pub(super) async fn log_progress(view: View, every: Duration) {
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

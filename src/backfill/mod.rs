//! A UTC date/hour range → the objects Firehose wrote in it.
//!
//! Firehose's default layout puts each object under `prefix/YYYY/MM/DD/HH/` by the UTC hour it
//! was written in, so a range is listed hour by hour instead of listing the whole bucket —
//! lazily, a few hours ahead of processing and several at a time, so the first object starts
//! at once and a long range with few objects costs its LIST requests alongside the work.

pub mod layout;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

pub use layout::Layout;

use crate::error::{Cause, Error};
use crate::object::ObjectRef;
use crate::source::ObjectStore;

/// Firehose's default error-output folders (one per failure kind), each with the same
/// `YYYY/MM/DD/HH/` layout below it.
pub const ERROR_OUTPUT_PREFIXES: &[&str] = &[
    "processing-failed/",
    "format-conversion-failed/",
    "elasticsearch-failed/",
    "opensearch-failed/",
    "splunk-failed/",
    "http-endpoint-failed/",
];

/// An inclusive range of UTC hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH` or an RFC 3339 time on the hour
/// (`2026-11-25T22:00:00Z`, `2026-11-25T23:00:00+01:00`; the seconds and the offset may be left
/// out, which means UTC) as a UTC hour. A date alone means its first hour for `--from` and its
/// last hour for `--to` (so `--to` is inclusive either way). The range is made of whole hours: a
/// time with minutes or seconds is refused rather than silently truncated.
pub fn parse_bound(s: &str, is_end: bool) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    let naive = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    if let Ok(d) = NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        let h = if is_end { 23 } else { 0 };
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(h, 0, 0).expect("valid hour")));
    }
    // chrono needs minutes to build a time; an hour alone gets them added.
    let with_minutes = format!("{naive}:00");
    let parsed = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&with_minutes, f).ok())
        .map(|dt| Utc.from_utc_datetime(&dt))
        .or_else(|| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|dt| dt.with_timezone(&Utc))
        })
        .or_else(|| {
            ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
                .map(|dt| Utc.from_utc_datetime(&dt))
        });
    let Some(dt) = parsed else {
        return Err(format!(
            "`{s}` is not a UTC date or hour (use YYYY-MM-DD, YYYY-MM-DDTHH or an RFC 3339 time \
             on the hour)"
        ));
    };
    if dt.minute() != 0 || dt.second() != 0 || dt.nanosecond() != 0 {
        return Err(format!(
            "`{s}` is not on the hour: --from and --to name whole UTC hours (use {})",
            dt.format("%Y-%m-%dT%H")
        ));
    }
    Ok(dt)
}

impl HourRange {
    pub fn parse(from: &str, to: &str) -> Result<HourRange, String> {
        let first = parse_bound(from, false)?;
        let last = parse_bound(to, true)?;
        if last < first {
            return Err(format!("--to ({to}) is before --from ({from})"));
        }
        Ok(HourRange { first, last })
    }

    pub fn hours(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let n = (self.last - self.first).num_hours();
        (0..=n).map(move |i| self.first + Duration::hours(i))
    }

    /// `base` + `YYYY/MM/DD/HH/` for each hour.
    pub fn prefixes(&self, base: &str) -> Vec<String> {
        self.hours()
            .map(|h| format!("{base}{}", h.format("%Y/%m/%d/%H/")))
            .collect()
    }
}

/// How far a [`Listing`] has got: shown by the progress display while objects are processed.
#[derive(Debug, Default)]
pub struct ListProgress {
    /// Hours in the range.
    pub hours_total: u64,
    hours_listed: AtomicU64,
    objects_listed: AtomicU64,
    bytes_listed: AtomicU64,
    done: AtomicBool,
    halt: AtomicBool,
}

impl ListProgress {
    /// Hours whose every prefix (the base's, and the error folders' when included) was listed.
    pub fn hours_listed(&self) -> u64 {
        self.hours_listed.load(Ordering::Relaxed)
    }

    /// Objects of the range found so far.
    pub fn objects_listed(&self) -> u64 {
        self.objects_listed.load(Ordering::Relaxed)
    }

    /// Their bytes, as listed.
    pub fn bytes_listed(&self) -> u64 {
        self.bytes_listed.load(Ordering::Relaxed)
    }

    /// Whether listing has ended (finished, failed or halted).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Stops listing: no new LIST request is sent, and no further object is queued (the run
    /// was interrupted, or its output closed).
    pub fn halt(&self) {
        self.halt.store(true, Ordering::SeqCst);
    }

    fn halted(&self) -> bool {
        self.halt.load(Ordering::SeqCst)
    }
}

/// How a [`Listing`] runs ahead of processing.
#[derive(Debug, Clone, Copy)]
pub struct ListOptions {
    /// LIST requests in flight at once (hours listed ahead, in parallel).
    pub in_flight: usize,
    /// Objects listed but not yet taken by the run; listing waits while this many are queued,
    /// so memory does not grow with the range.
    pub queue: usize,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            in_flight: 8,
            queue: 1024,
        }
    }
}

/// The objects of a range as they are listed: hour by hour, in key order within an hour (the
/// base's objects first, then each error folder's), while a background task lists up to
/// [`ListOptions::in_flight`] hours ahead.
pub struct Listing {
    pub progress: Arc<ListProgress>,
    rx: mpsc::Receiver<Result<ObjectRef, Error>>,
    first: Option<oneshot::Receiver<Result<(), Error>>>,
}

impl Listing {
    /// Waits for the first LIST request to answer: an error there (no such bucket, no access)
    /// is the run's error, before anything is processed. Later errors end the stream.
    pub async fn first_answer(&mut self) -> Result<(), Error> {
        match self.first.take() {
            Some(rx) => rx.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// The next object; an `Err` (a LIST that failed for good) is the last item.
    pub async fn next(&mut self) -> Option<Result<ObjectRef, Error>> {
        self.rx.recv().await
    }

    /// The objects as a stream (ends when listing does).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<ObjectRef, Error>> + Send {
        futures::stream::unfold(self.rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    }

    /// Every object, or the first listing error.
    pub async fn collect(mut self) -> Result<Vec<ObjectRef>, Error> {
        let mut out = Vec::new();
        while let Some(item) = self.next().await {
            out.push(item?);
        }
        Ok(out)
    }
}

/// Lists every object of the range under `base` laid out as `layout`, lazily (see [`Listing`]).
/// Keys inside Firehose's error-output folders are left out unless `include_error_output`, in
/// which case those folders' objects for the same hours are added. Must be called within a
/// Tokio runtime.
pub fn list(
    store: Arc<dyn ObjectStore>,
    base: &str,
    layout: &Layout,
    range: &HourRange,
    include_error_output: bool,
    options: ListOptions,
) -> Listing {
    let mut bases = vec![base.to_string()];
    if include_error_output {
        bases.extend(ERROR_OUTPUT_PREFIXES.iter().map(|e| format!("{base}{e}")));
    }
    let hours = (range.last - range.first).num_hours() as u64 + 1;
    let progress = Arc::new(ListProgress {
        hours_total: hours,
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel(options.queue.max(1));
    let (first_tx, first_rx) = oneshot::channel();
    tokio::spawn(list_task(
        store,
        bases,
        layout.clone(),
        *range,
        options.in_flight.max(1),
        progress.clone(),
        tx,
        first_tx,
    ));
    Listing {
        progress,
        rx,
        first: Some(first_rx),
    }
}

#[allow(clippy::too_many_arguments)]
async fn list_task(
    store: Arc<dyn ObjectStore>,
    bases: Vec<String>,
    layout: Layout,
    range: HourRange,
    in_flight: usize,
    progress: Arc<ListProgress>,
    tx: mpsc::Sender<Result<ObjectRef, Error>>,
    first_tx: oneshot::Sender<Result<(), Error>>,
) {
    let mut first_tx = Some(first_tx);
    let n_bases = bases.len();
    // Templates coarser than an hour give the same prefix for several hours: each is listed
    // once (and its objects matched against every hour of the range).
    let mut seen_prefixes = HashSet::new();
    // A layout without the hour selects by the write time in each object's name instead.
    let by_prefix = layout.pins_hour();
    let mut undated = 0u64;
    let units = (0..progress.hours_total).flat_map(|h| (0..n_bases).map(move |b| (h, b)));
    let results = futures::stream::iter(units)
        .map(|(h, b)| {
            let hour = range.first + Duration::hours(h as i64);
            let prefix = format!("{}{}", bases[b], layout.prefix(hour));
            let fresh = seen_prefixes.insert(prefix.clone());
            let store = store.clone();
            let progress = progress.clone();
            async move {
                let objects = if fresh && !progress.halted() {
                    store.list(&prefix).await?
                } else {
                    Vec::new()
                };
                Ok::<_, Error>((h, b, hour, objects))
            }
        })
        .buffered(in_flight);
    futures::pin_mut!(results);
    while let Some(result) = results.next().await {
        if progress.halted() {
            break;
        }
        let (h, b, hour, objects) = match result {
            Ok(r) => r,
            Err(e) => {
                // For whoever waits on the first answer, and as the stream's last item.
                let e = match first_tx.take() {
                    Some(first) => {
                        let copy = Error::new(e.stage, e.class, Cause::Remote(e.cause.to_string()));
                        let _ = first.send(Err(e));
                        copy
                    }
                    None => e,
                };
                let _ = tx.send(Err(e)).await;
                break;
            }
        };
        if let Some(first) = first_tx.take() {
            let _ = first.send(Ok(()));
        }
        let base = &bases[b];
        for o in objects {
            let Some(rel) = o.key.strip_prefix(base.as_str()) else {
                continue;
            };
            let in_error_output = b == 0 && is_error_output(rel);
            if in_error_output
                || !(layout.matches(hour, rel) || range.hours().any(|h| layout.matches(h, rel)))
            {
                continue;
            }
            if !by_prefix && !written_in(&range, &o, &mut undated) {
                continue;
            }
            progress.objects_listed.fetch_add(1, Ordering::Relaxed);
            progress
                .bytes_listed
                .fetch_add(o.size.unwrap_or(0), Ordering::Relaxed);
            if progress.halted() || tx.send(Ok(o)).await.is_err() {
                // Halted, or nobody takes objects any more.
                progress.done.store(true, Ordering::SeqCst);
                return;
            }
        }
        if b + 1 == n_bases {
            progress.hours_listed.store(h + 1, Ordering::Relaxed);
        }
    }
    if undated > 0 {
        tracing::warn!(
            objects = undated,
            "left out: the layout has no hour and these objects' names carry no Firehose write time (-YYYY-MM-DD-HH-MM-SS-)"
        );
    }
    if progress.hours_listed() == progress.hours_total {
        tracing::info!(
            hours = progress.hours_total,
            objects = progress.objects_listed(),
            mib = format!("{:.1}", progress.bytes_listed() as f64 / 1048576.0),
            "backfill listed"
        );
    }
    progress.done.store(true, Ordering::SeqCst);
}

/// Whether `object`'s name says it was written within `range` (counting names that say nothing
/// in `undated`). Firehose names each object by the UTC time it was written, the same clock
/// as its `!{timestamp:…}` prefix.
fn written_in(range: &HourRange, object: &ObjectRef, undated: &mut u64) -> bool {
    match crate::object::name_written_at(object.file_name()) {
        Some(t) => t >= range.first && t < range.last + Duration::hours(1),
        None => {
            *undated += 1;
            false
        }
    }
}

/// Lists every object of the range (see [`list`]) into memory: for plans, manifests and load
/// batches, which need all of them first.
pub async fn plan(
    store: Arc<dyn ObjectStore>,
    base: &str,
    layout: &Layout,
    range: &HourRange,
    include_error_output: bool,
) -> Result<Vec<ObjectRef>, Error> {
    let mut listing = list(
        store,
        base,
        layout,
        range,
        include_error_output,
        ListOptions::default(),
    );
    listing.first_answer().await?;
    listing.collect().await
}

/// Whether a key lies in one of Firehose's error-output folders.
fn is_error_output(rel_key: &str) -> bool {
    ERROR_OUTPUT_PREFIXES.iter().any(|p| rel_key.starts_with(p))
}

#[cfg(test)]
mod tests;

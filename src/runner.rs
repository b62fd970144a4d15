//! Many objects with bounded concurrency; each outcome settled and summed up.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use crate::dead_letter::DeadLetterDir;
use crate::object::ObjectRef;
use crate::pipeline::{process_object, Counts, ObjectFailure, ObjectReport, Settings};
use crate::sink::Sink;
use crate::source::ObjectStore;

/// One unit of work: an object and the store it lives in.
pub struct Job {
    pub store: Arc<dyn ObjectStore>,
    pub object: ObjectRef,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub objects_ok: u64,
    pub failures: Vec<Box<ObjectFailure>>,
    pub counts: Counts,
    pub elapsed: Duration,
}

impl Summary {
    pub fn objects(&self) -> u64 {
        self.objects_ok + self.failures.len() as u64
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "objects:  {} ({} ok, {} failed)",
            self.objects(),
            self.objects_ok,
            self.failures.len()
        )?;
        writeln!(
            f,
            "records:  {} ({} rows written, {} record errors, {} control messages skipped)",
            c.records, c.rows, c.record_errors, c.control_messages
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

/// Processes `jobs` in order, at most `concurrency` at a time, each on a blocking thread.
/// Failed objects are dead-lettered and the run goes on.
pub async fn run(
    jobs: Vec<Job>,
    settings: Arc<Settings>,
    sink: Arc<dyn Sink>,
    dead_letters: Arc<DeadLetterDir>,
    concurrency: usize,
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut results = stream::iter(jobs)
        .map(|job| {
            let (settings, sink, dl) = (settings.clone(), sink.clone(), dead_letters.clone());
            let object = job.object.clone();
            let task = tokio::task::spawn_blocking(move || {
                process_object(
                    job.store.as_ref(),
                    job.object,
                    &settings,
                    sink.as_ref(),
                    &dl,
                )
            });
            async move { (object, task.await) }
        })
        .buffered(concurrency.max(1));
    while let Some((object, joined)) = results.next().await {
        match joined {
            Ok(Ok(report)) => {
                log_report(&report);
                summary.objects_ok += 1;
                summary.counts += report.counts;
            }
            Ok(Err(failure)) => {
                settle_failure(&failure, &dead_letters);
                summary.failures.push(failure);
            }
            Err(join) => {
                // A panic is a bug, never an input problem; report it against the object.
                let error = crate::error::Error::new(
                    crate::error::Stage::Parse,
                    crate::error::Class::Transient,
                    crate::error::Cause::Sink(format!("internal error: {join}")),
                );
                let failure = Box::new(ObjectFailure { object, error });
                settle_failure(&failure, &dead_letters);
                summary.failures.push(failure);
            }
        }
    }
    summary.elapsed = started.elapsed();
    summary
}

fn log_report(r: &ObjectReport) {
    let layers: Vec<&str> = r.compression.iter().map(|c| c.name()).collect();
    tracing::info!(
        object = %r.object,
        compression = %if layers.is_empty() { "none".to_string() } else { layers.join("+") },
        framing = r.framing.unwrap_or("-"),
        envelope = r.envelope.map_or("-", |e| e.name()),
        records = r.counts.records,
        rows = r.counts.rows,
        record_errors = r.counts.record_errors,
        ms = r.elapsed.as_millis() as u64,
        "object done"
    );
}

fn settle_failure(failure: &ObjectFailure, dead_letters: &DeadLetterDir) {
    match dead_letters.object(&failure.object, &failure.error, 1) {
        Ok(path) => tracing::error!(
            object = %failure.object,
            dead_letter = %path.display(),
            "object failed: {}",
            failure.error
        ),
        Err(e) => tracing::error!(
            object = %failure.object,
            "object failed: {} (and could not be dead-lettered: {e})",
            failure.error
        ),
    }
}

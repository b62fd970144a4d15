//! One object, end to end: source → decompress → frame → record → row → sink.
//!
//! This is the one place that knows the order of the stages. It runs on a blocking thread
//! (decompression runs on a second one, see `decode::pump`), streams the object through bounded
//! buffers, and settles each bad record by the configured policy. An object either commits all
//! its rows (and its dead-lettered records) or, on an object-level error, commits nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::dead_letter::{DeadLetterDir, Failure, Raw};
use crate::decode::{self, limit::Counting, pump::Pump, Counter};
use crate::error::{Cause, Error, Stage};
use crate::ledger::{Begin, Claim, Finished, Ledger, Staged};
use crate::object::ObjectRef;
use crate::record::batch::{ItemKind, Next, Records, Source};
use crate::row::{ObjectSeed, RowBuilder};
use crate::sink::Sink;
use crate::source::{Etag, ObjectStore};

mod report;
mod settle;

use settle::{too_many_refused, BadRecordLog, RecordSettler};

pub use crate::settings::{RecordPolicy, Settings, DEFAULT_MAX_RECORD_ERROR_RATIO};
pub use report::{Counts, ObjectFailure, ObjectReport, Processed, Skip};

/// Everything an object needs besides itself.
pub struct Context<'a> {
    pub store: &'a dyn ObjectStore,
    pub settings: &'a Settings,
    pub sink: &'a dyn Sink,
    pub dead_letters: &'a DeadLetterDir,
    pub ledger: &'a dyn Ledger,
    /// Process objects the ledger has as done.
    pub force: bool,
    /// Recorded in ledger entries.
    pub worker: &'a str,
    /// Give up (transiently, committing nothing) once this passes: a Lambda invocation's
    /// remaining time minus a margin. Checked between record batches.
    pub deadline: Option<Instant>,
    /// Give up the same way once this is set: a worker's shutdown grace ran out, and the
    /// object's message goes back to the queue for another worker. Checked with the deadline.
    pub cancel: Option<&'a AtomicBool>,
}

/// Renews an object's claim in the background while the object runs (every
/// [`Ledger::renew_every`]), so a live worker, however slow, keeps it. Stopped (and joined)
/// when dropped, which happens before the claim is finished or abandoned.
struct Renewer<'s> {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::ScopedJoinHandle<'s, ()>>,
}

impl<'s> Renewer<'s> {
    fn start<'e: 's>(
        scope: &'s std::thread::Scope<'s, 'e>,
        ledger: &'e dyn Ledger,
        object: &ObjectRef,
        claim: &Claim,
    ) -> Option<Renewer<'s>> {
        let every = ledger.renew_every()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (object, claim) = (object.clone(), claim.clone());
        let thread = std::thread::Builder::new()
            .name("claim-renewer".into())
            .spawn_scoped(scope, move || loop {
                match stopped.recv_timeout(every) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                match ledger.renew(&object, &claim) {
                    Ok(()) => tracing::debug!(object = %object, "renewed the claim"),
                    // The ledger logged it; the fence before the commit fails the object.
                    Err(e) if matches!(e.cause, Cause::ClaimLost { .. }) => return,
                    Err(e) => {
                        tracing::warn!(object = %object, "could not renew the claim (trying again): {e}")
                    }
                }
            })
            .ok()?;
        Some(Renewer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Renewer<'_> {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Processes one object. Blocking: call it from a blocking thread.
pub fn process_object(
    cx: &Context<'_>,
    object: ObjectRef,
) -> Result<Processed, Box<ObjectFailure>> {
    std::thread::scope(|scope| process_claimed(cx, object, scope))
}

fn process_claimed<'s, 'e: 's>(
    cx: &Context<'e>,
    mut object: ObjectRef,
    scope: &'s std::thread::Scope<'s, 'e>,
) -> Result<Processed, Box<ObjectFailure>> {
    let started = Instant::now();
    let mut claim = None;
    let mut renewer = None;
    // With the ETag known from a listing, ask the ledger before reading anything.
    if object.etag.is_some() {
        match cx.ledger.begin(&object, cx.force) {
            Ok(Begin::Proceed(c)) => {
                renewer = Renewer::start(scope, cx.ledger, &object, &c);
                claim = Some(c)
            }
            Ok(Begin::Done) => return Ok(skipped(object, Skip::AlreadyDone)),
            Ok(Begin::Busy(who)) => return Ok(skipped(object, Skip::Busy(who))),
            Err(error) => {
                return Err(Box::new(ObjectFailure {
                    object,
                    error,
                    attempts: 1,
                    counts: Counts::default(),
                }))
            }
        }
    }
    let seen = Seen::default();
    let compressed = &seen.compressed;
    let early = match &claim {
        Some(c) => recovered(cx, &object, c),
        None => Ok(None),
    };
    let result = match early {
        Ok(Some(report)) => Ok(Processed::Done(report)),
        Ok(None) => cx.store.open(&mut object).and_then(|opened| {
            run(
                cx,
                &mut object,
                Box::new(Counting::new(opened.reader, compressed.clone())),
                (opened.etag, opened.content_encoding),
                &seen,
                &mut claim,
                (scope, &mut renewer),
            )
        }),
        Err(e) => Err(e),
    };
    // The object has ended: no more renewals (before the claim is finished or released).
    drop(renewer);
    match result {
        Ok(Processed::Done(mut report)) => {
            report.counts.bytes_in = compressed.get();
            report.elapsed = started.elapsed();
            // The ledger keeps what the object came to, whichever run wrote its rows.
            let (records, rows, record_errors) = match &report.recovered {
                Some(s) => (s.records, s.rows, s.record_errors),
                None => (
                    report.counts.records,
                    report.counts.rows,
                    report.counts.record_errors,
                ),
            };
            let summary = Finished {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                etag: object.etag.clone().unwrap_or_default(),
                records,
                rows,
                record_errors,
                finished_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                worker: cx.worker.to_string(),
            };
            let claim = claim.take().unwrap_or_default();
            if let Err(error) = cx.ledger.finish(&object, claim, &summary) {
                // The rows are in the sink; a rerun will write them again (same row IDs).
                return Err(Box::new(ObjectFailure {
                    object,
                    error,
                    attempts: 1,
                    counts: seen.counts(),
                }));
            }
            report.object = object;
            Ok(Processed::Done(report))
        }
        Ok(skip) => {
            if let Some(c) = claim {
                cx.ledger.abandon(&object, c);
            }
            Ok(skip)
        }
        Err(mut error) => {
            if let Some(c) = claim {
                // Whatever failed (a read cut while this worker was stopped, say), an object
                // whose claim was taken over is that worker's now: not retried here.
                if let Some(holder) = c.lease.lost() {
                    error = crate::ledger::claim_lost(&object, &holder);
                }
                cx.ledger.abandon(&object, c);
            }
            Err(Box::new(ObjectFailure {
                object,
                error,
                attempts: 1,
                counts: seen.counts(),
            }))
        }
    }
}

/// What an object's run has read so far, kept outside it so that a failure can report it.
#[derive(Default)]
struct Seen {
    /// Bytes read from the source.
    compressed: Counter,
    /// Bytes after decompression.
    decompressed: Counter,
    /// Records framed (the ordinal after the last one handed on).
    records: Counter,
}

impl Seen {
    fn counts(&self) -> Counts {
        Counts {
            records: self.records.get(),
            bytes_in: self.compressed.get(),
            bytes_out: self.decompressed.get(),
            ..Counts::default()
        }
    }
}

fn skipped(object: ObjectRef, reason: Skip) -> Processed {
    Processed::Skipped { object, reason }
}

/// An earlier attempt staged this object's rows and stopped before recording it done. If the
/// sink says that commit happened, or can make it happen now ([`Sink::commit_staged`]), the
/// object is done as that attempt counted it, and is not read or written again. Only a sink that
/// can do neither gets the object written again. (A staged entry exists only for an unfinished
/// object, so this holds under `--force` too.)
///
/// Committing the staged rows instead of writing them again matters: the killed attempt's commit
/// request may still be on its way (or running) when this run asks, and would then land beside
/// a second copy. The report counts the rows as recovered, not written.
fn recovered(
    cx: &Context<'_>,
    object: &ObjectRef,
    claim: &Claim,
) -> Result<Option<ObjectReport>, Error> {
    let Some(staged) = &claim.staged else {
        return Ok(None);
    };
    if cx.sink.committed(staged)? {
        tracing::info!(object = %object, staged = %staged.token, rows = staged.rows, "rows staged by an earlier attempt were committed; recording the object as done");
    } else {
        // The fence: they become visible only while the claim is provably ours.
        cx.ledger.renew(object, claim)?;
        if !cx.sink.commit_staged(staged)? {
            tracing::info!(object = %object, staged = %staged.token, "rows staged by an earlier attempt were not committed; writing the object again");
            return Ok(None);
        }
        tracing::info!(object = %object, staged = %staged.token, rows = staged.rows, "rows staged by an earlier attempt were not committed yet; committed them now, recording the object as done");
    }
    Ok(Some(ObjectReport {
        object: object.clone(),
        counts: Counts {
            recovered: staged.rows,
            ..Counts::default()
        },
        compression: Vec::new(),
        framing: None,
        envelope: None,
        dead_letter: None,
        elapsed: Duration::ZERO,
        recovered: Some(staged.clone()),
    }))
}

fn run<'s, 'e: 's>(
    cx: &Context<'e>,
    object: &mut ObjectRef,
    source: Box<dyn std::io::Read + Send>,
    (etag, content_encoding): (Etag, Option<String>),
    seen: &Seen,
    claim: &mut Option<Claim>,
    (scope, renewer): (&'s std::thread::Scope<'s, 'e>, &mut Option<Renewer<'s>>),
) -> Result<Processed, Error> {
    let (settings, sink, dead_letters) = (cx.settings, cx.sink, cx.dead_letters);
    let compressed = &seen.compressed;
    let consumed = Counter::default();
    // A fetch error is where fetching stopped; a decoding error where the decoder stopped, not
    // the end of what was fetched (up to a read buffer further, often the end of the object).
    let at_compressed = |e: Error| match e.stage {
        Stage::Fetch => e.at_byte(compressed.get()),
        Stage::Decompress => e.at_byte(consumed.get()),
        _ => e,
    };
    let decoded = decode::decompress_object(
        source,
        &object.key,
        content_encoding.as_deref(),
        settings.compression,
        (settings.max_decompressed_bytes, &consumed),
    )
    .map_err(at_compressed)?;
    let members = decoded.members.clone();
    let counted = seen.decompressed.clone();
    let source = if decoded.layers.is_empty() {
        Source::Reader(Box::new(Counting::new(decoded.reader, counted)))
    } else {
        let pump = Pump::spawn(decoded.reader).map_err(|e| Error::from_io(Stage::Decompress, e))?;
        Source::Chunks(Counting::new(pump, counted))
    };
    let mut records = Records::spawn(
        source,
        settings.framing,
        settings.envelope,
        settings.max_record_bytes,
        crate::row::generated_columns(settings.row_id_column.as_deref()),
        members,
    )
    .map_err(|e| Error::from_io(Stage::Frame, e))?;
    if let Some(e) = etag.resolve()? {
        object.etag = Some(e);
    }
    if claim.is_none() {
        match cx.ledger.begin(object, cx.force)? {
            Begin::Proceed(c) => {
                *renewer = Renewer::start(scope, cx.ledger, object, &c);
                // Dropping `records` stops the decode threads.
                let recovered = recovered(cx, object, &c);
                *claim = Some(c);
                if let Some(report) = recovered? {
                    return Ok(Processed::Done(report));
                }
            }
            Begin::Done => return Ok(skipped(object.clone(), Skip::AlreadyDone)),
            Begin::Busy(who) => return Ok(skipped(object.clone(), Skip::Busy(who))),
        }
    }
    let object = &*object;
    let mut writer = sink.open(object)?;
    let mut letter = dead_letters.records(object);
    let mut rows = row_builder(settings, object);
    let mut counts = Counts::default();
    let mut bad_log = BadRecordLog {
        object,
        policy: settings.on_record_error,
        logged: 0,
    };
    let mut settle = RecordSettler {
        policy: settings.on_record_error,
        letter: &mut letter,
        object,
        log: &mut bad_log,
    };

    let mut mapped = Vec::new();
    // Refused records that `--max-record-error-ratio` leaves out (error output's own payloads).
    let mut exempt = 0u64;
    let finished = loop {
        if cx.deadline.is_some_and(|d| Instant::now() >= d) {
            // Dropping the writer abandons the rows written so far.
            return Err(Error::new(
                Stage::Fetch,
                crate::error::Class::Transient,
                Cause::DeadlineExceeded,
            ));
        }
        if cx.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Err(Error::new(
                Stage::Fetch,
                crate::error::Class::Transient,
                Cause::Interrupted,
            ));
        }
        // The renewer found the claim taken over: stop reading (nothing will be committed).
        if let Some(holder) = claim.as_ref().and_then(|c| c.lease.lost()) {
            return Err(crate::ledger::claim_lost(object, &holder));
        }
        let batch = match records.next_batch().map_err(at_compressed)? {
            Next::Batch(b) => b,
            Next::Finished(f) => break f,
        };
        if let Some(last) = batch.items.last() {
            seen.records.set(last.ordinal + 1);
        }
        for item in &batch.items {
            match &item.kind {
                ItemKind::Payload { .. } => {
                    let payload = batch.payload(item).expect("a payload item");
                    let built = build_row(
                        settings,
                        &mut rows,
                        &mut mapped,
                        payload,
                        item.ordinal,
                        item.offset,
                    );
                    match built {
                        Ok(row) => {
                            writer.write_row(&row)?;
                            counts.rows += 1;
                        }
                        Err(e) => {
                            settle.settle(item, Stage::Parse, batch.bytes(item), &e)?;
                            counts.record_errors += 1;
                        }
                    }
                }
                ItemKind::Error {
                    stage,
                    message,
                    spooled,
                    sub,
                    payload,
                } => {
                    let raw = match spooled {
                        Some(s) => Raw::Spooled(s),
                        None => Raw::Bytes(batch.bytes(item)),
                    };
                    let mut failure = Failure::new(item.ordinal, item.offset, *stage, message);
                    failure.sub = sub.as_slice();
                    settle.settle_failure(&failure, raw)?;
                    counts.record_errors += 1;
                    exempt += u64::from(*payload);
                }
                ItemKind::Control => {}
            }
        }
        records.recycle(batch);
    };
    counts.records = finished.records;
    counts.control_messages = finished.control_messages;
    counts.bytes_out = finished.bytes_out;
    // The sink may refuse single rows only when committing (BigQuery answers per row); they
    // take the record-level policy like any other bad record. The object counts as delivered
    // only once its dead letters are kept too.
    let prepared = writer.prepare()?;
    for r in &prepared.rejected {
        settle.settle_at(r.ordinal, r.byte_offset, Stage::Sink, &r.row, &r.error)?;
        counts.rows -= 1;
        counts.record_errors += 1;
    }
    // Before anything becomes visible: dropping the writer and the letter commits nothing.
    too_many_refused(settings, &counts, exempt)?;
    let dead_letter = match prepared.token {
        Some(token) => {
            // Staged: dead letters are kept and the stage recorded *before* the rows become
            // visible, because after the commit a rerun finishes the object from the ledger
            // alone.
            let dead_letter = letter.finish()?;
            let staged = Staged {
                token,
                records: counts.records,
                rows: counts.rows,
                record_errors: counts.record_errors,
            };
            let claim = claim.as_ref().expect("claimed before writing");
            // Also the fence: a conditional write of the claim (see `Ledger::renew`).
            cx.ledger.stage(object, claim, &staged)?;
            let committed = writer.commit()?;
            debug_assert!(committed.rejected.is_empty(), "staged rows are settled");
            dead_letter
        }
        None => {
            // The fence: rows become visible only while the claim is provably ours.
            if let Some(claim) = claim.as_ref() {
                cx.ledger.renew(object, claim)?;
            }
            let committed = writer.commit()?;
            for r in &committed.rejected {
                settle.settle_at(r.ordinal, r.byte_offset, Stage::Sink, &r.row, &r.error)?;
                counts.rows -= 1;
                counts.record_errors += 1;
            }
            if let Some(inserted) = committed.inserted {
                let present = counts.rows.saturating_sub(inserted);
                counts.rows -= present;
                counts.already_present += present;
            }
            // Rows the sink refused while taking the others (insert-all) are in the table
            // already: failing the object then would write them again on the retry. Only an
            // object left with no rows at all fails here.
            if counts.rows + counts.already_present == 0 {
                too_many_refused(settings, &counts, exempt)?;
            }
            letter.finish()?
        }
    };
    Ok(Processed::Done(ObjectReport {
        object: object.clone(),
        counts,
        compression: decoded.layers,
        framing: finished.framing,
        envelope: finished.envelope,
        dead_letter,
        elapsed: Duration::ZERO,
        recovered: None,
    }))
}

/// The row builder for one object's rows: row IDs from its position, metadata columns.
pub(crate) fn row_builder(settings: &Settings, object: &ObjectRef) -> RowBuilder {
    RowBuilder::new(
        ObjectSeed::new(object),
        settings.row_id.clone(),
        settings.row_id_column.as_deref(),
    )
    .with_metadata(
        settings.metadata,
        object,
        &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
    .with_payload_column(settings.payload_column.as_deref())
}

/// The one way a payload becomes a row — `--map`, then the row ID and metadata columns — used
/// by the pipeline and by `redrive` alike, so a redriven row is the row the pipeline would have
/// written.
pub(crate) fn build_row<'a>(
    settings: &Settings,
    rows: &'a mut RowBuilder,
    mapped: &'a mut Vec<u8>,
    mut payload: crate::record::Payload<'a>,
    ordinal: u64,
    offset: u64,
) -> Result<crate::row::Row<'a>, String> {
    if let Some(mapping) = &settings.mapping {
        let shape = mapping.apply(payload.json, mapped)?;
        payload.json = mapped;
        payload.shape = shape;
        payload.verdicts = Default::default(); // the framer checked the record, not the mapped row
    }
    rows.build(&payload, ordinal, offset)
        .map_err(|kind| kind.to_string())
}

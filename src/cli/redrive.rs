//! `redrive`: dead letters delivered again into the configured sink.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::bail;

use firehose_replay::aws::Aws;
use firehose_replay::dead_letter::remote;
use firehose_replay::dead_letter::spec::{DeadLetterSpec, SpecError};
use firehose_replay::object::Origin;
use firehose_replay::run::Progress;
use firehose_replay::run::{self as runner, Entry, Job, Summary};
use firehose_replay::source::local::LocalStore;
use firehose_replay::source::s3::S3Store;
use firehose_replay::source::ObjectStore;

use super::args::RedriveArgs;
use super::invoke::NoBucket;
use crate::flags::Opts;
use crate::stdio::say;

/// `redrive`: object letters become jobs for the normal runner; records letters are rebuilt
/// into rows one letter at a time.
pub(crate) async fn redrive(
    opts: &Opts,
    args: &RedriveArgs,
    aws: &mut Aws,
) -> anyhow::Result<Option<Summary>> {
    use firehose_replay::redrive::{self, Source};
    let spec = args.source.as_str();
    let unsupported = || {
        anyhow::anyhow!(
            "unsupported dead-letter source `{spec}`: use dir:PATH, s3://bucket/prefix/ or \
             sqs:QUEUE_URL"
        )
    };
    let source = match spec.parse::<DeadLetterSpec>() {
        Ok(DeadLetterSpec::Sqs(queue_url)) => Source::Sqs {
            sqs: remote::sqs_client().await,
            s3: aws.client().await,
            queue_url,
        },
        Ok(DeadLetterSpec::S3(uri)) => Source::S3 {
            client: aws.client().await,
            bucket: uri.bucket,
            prefix: uri.key,
        },
        Ok(DeadLetterSpec::Dir(dir)) => Source::Dir(dir),
        Err(SpecError::S3(e)) => bail!(e),
        Err(SpecError::NoQueue | SpecError::Unsupported) => return Err(unsupported()),
    };
    // Refused before any letter is read.
    let setup = opts.setup(Entry::Redrive)?;
    setup.validate()?;
    let letters = source.list(900).await?;
    if args.dry_run {
        crate::stdio::print(|out| {
            writeln!(out, "{} dead letters", letters.len())?;
            for l in &letters {
                let kind = match &l.doc.records {
                    Some(r) => format!("records ({})", r.len()),
                    None => "object".to_string(),
                };
                writeln!(
                    out,
                    "{kind}\t{}/{}\t{} {}: {}\t{}",
                    l.doc.object.bucket,
                    l.doc.object.key,
                    l.doc.class,
                    l.doc.stage,
                    l.doc.error,
                    l.location
                )?;
            }
            Ok(())
        })?;
        return Ok(None);
    }
    let shared = setup.build(aws).await?;
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    // Object letters: through the runner (retries, ledger, concurrency).
    let (object_letters, record_letters): (Vec<_>, Vec<_>) =
        letters.into_iter().partition(|l| l.doc.records.is_none());
    let mut jobs = Vec::new();
    let source_root: Option<Arc<dyn ObjectStore>> = match &args.source_root {
        Some(root) => Some(Arc::new(LocalStore::new(root)?)),
        None => None,
    };
    let mut local_roots: std::collections::HashMap<PathBuf, Arc<dyn ObjectStore>> =
        Default::default();
    for l in &object_letters {
        let object = l.doc.object_ref();
        let store: Arc<dyn ObjectStore> = match (&source_root, &object.origin) {
            (Some(store), _) if store.bucket() == object.bucket => store.clone(),
            // Read from where the failed run read it; a root that is gone fails the object
            // (permanently, and at once) instead of trying a bucket of the same name.
            // Only a local `dir:` letter may choose a local directory (`--source-root` is
            // matched above): one from S3 or SQS could name any directory on this host.
            (_, Some(Origin::Local { root })) if !source.trusts_local_roots() => {
                Arc::new(NoBucket {
                    bucket: object.bucket.clone(),
                    why: format!(
                        "refused: a letter from {spec} says its object is in the local \
                         directory {}; redrive reads a local source named by a letter only \
                         from a dir: letter or when it is --source-root",
                        root.display()
                    ),
                })
            }
            (_, Some(Origin::Local { root })) => local_roots
                .entry(root.clone())
                .or_insert_with(|| match LocalStore::new(root) {
                    Ok(store) => Arc::new(store),
                    Err(e) => Arc::new(NoBucket {
                        bucket: object.bucket.clone(),
                        why: format!("the object's local source cannot be read: {e}"),
                    }),
                })
                .clone(),
            _ => Arc::new(S3Store::new(aws.client().await, &object.bucket)),
        };
        jobs.push(Job { store, object });
    }
    if !jobs.is_empty() {
        let ran = runner::run(
            jobs,
            shared.clone(),
            setup.concurrency,
            Progress::Off,
            Arc::new(AtomicBool::new(false)),
        )
        .await;
        if ran.output_closed {
            // Which objects got through before the output closed is not known: every letter
            // stays, to be redriven again.
            return Ok(Some(ran));
        }
        for l in &object_letters {
            let failed = ran.failures.iter().any(|f| {
                f.object.bucket == l.doc.object.bucket && f.object.key == l.doc.object.key
            });
            // A delivered object's letter may already be gone: the runner removes stale
            // `dir:` letters itself.
            let gone = matches!(&l.location, redrive::Location::File(p) if !p.exists());
            if !failed {
                if !gone {
                    source.remove(&l.location).await?;
                }
                say!(
                    "redriven: {}/{} ({})",
                    l.doc.object.bucket,
                    l.doc.object.key,
                    l.location
                );
            }
        }
        summary = ran;
    }
    // Records letters.
    for l in record_letters {
        let (doc, sh) = (l.doc.clone(), shared.clone());
        let result = tokio::task::spawn_blocking(move || {
            redrive::redrive_records(&doc, &sh.settings, sh.sink.as_ref(), &sh.dead_letters)
        })
        .await?;
        let object = l.doc.object_ref();
        match result {
            Ok(outcome) => {
                summary.counts.rows += outcome.delivered - outcome.already_present;
                summary.counts.already_present += outcome.already_present;
                summary.counts.record_errors += outcome.still_failing;
                // Records that still fail may have been written over the very letter being
                // redriven (same destination); that one must stay.
                let replaced_in_place = match (&l.location, outcome.new_letter.as_deref()) {
                    (redrive::Location::File(old), Some(new)) => {
                        match (std::fs::canonicalize(old), std::fs::canonicalize(new)) {
                            (Ok(a), Ok(b)) => a == b,
                            _ => false,
                        }
                    }
                    (loc, Some(new)) => loc.to_string() == new,
                    (_, None) => false,
                };
                if !replaced_in_place {
                    source.remove(&l.location).await?;
                }
                if outcome.still_failing == 0 {
                    summary.objects_ok += 1;
                    say!(
                        "redriven: {} records of {}/{} ({})",
                        outcome.delivered,
                        object.bucket,
                        object.key,
                        l.location
                    );
                } else {
                    summary
                        .failures
                        .push(Box::new(firehose_replay::pipeline::ObjectFailure {
                            object,
                            error: firehose_replay::error::Error::permanent(
                                firehose_replay::error::Stage::Parse,
                                firehose_replay::error::Cause::Redrive(format!(
                                    "{} records still fail (kept in {})",
                                    outcome.still_failing,
                                    outcome.new_letter.as_deref().unwrap_or("?")
                                )),
                            ),
                            attempts: 1,
                            counts: Default::default(),
                        }));
                }
            }
            Err(error) if error.is_output_closed() => {
                // The letter stays; the rest is not tried (nobody reads the output).
                summary.output_closed = true;
                break;
            }
            Err(error) => {
                summary
                    .failures
                    .push(Box::new(firehose_replay::pipeline::ObjectFailure {
                        object,
                        error,
                        attempts: 1,
                        counts: Default::default(),
                    }))
            }
        }
    }
    summary.elapsed = started.elapsed();
    Ok(Some(summary))
}

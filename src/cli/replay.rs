//! `replay` and `backfill`: the command's objects through the runner, Ctrl-C, the exit summary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};

use firehose_replay::aws::Aws;
use firehose_replay::aws::S3Uri;
use firehose_replay::backfill::{self, HourRange};
use firehose_replay::run::Progress;
use firehose_replay::run::{self as runner, Job, Summary};
use firehose_replay::run::{Entry, Setup};
use firehose_replay::sink::bigquery;
use firehose_replay::source::s3::S3Store;
use firehose_replay::source::ObjectStore;

use super::redrive::redrive;
use super::sources::*;
use super::{Cli, Command};
use crate::flags::Opts;
use crate::stdio::say;

/// Runs the command; `None` when there was nothing to run (a dry run).
pub(crate) async fn run(cli: Cli) -> anyhow::Result<Option<Summary>> {
    let opts = &cli.opts;
    let mut aws = Aws {
        path_style: opts.input.s3_path_style,
        client: None,
    };
    if let Command::Redrive(args) = &cli.command {
        return redrive(opts, args, &mut aws).await;
    }
    let setup = opts.setup(Entry::Replay)?;
    setup.validate()?; // before listing anything
    let jobs = match &cli.command {
        Command::Invoke(_) => unreachable!("`invoke` is run by `main`"),
        Command::Worker(_) => unreachable!("`worker` is run by `main`"),
        Command::PlanMap(_) => unreachable!("`plan-map` is run by `main`"),
        Command::IcebergOrphans(_) => unreachable!("`iceberg-orphans` is run by `main`"),
        Command::Docs(_) => unreachable!("`completions`, `man` and `reference` are run by `main`"),
        Command::Redrive(_) => unreachable!("`redrive` is run above"),
        Command::Replay {
            sources,
            source_root,
        } => {
            replay_jobs(
                sources,
                source_root.as_deref(),
                &mut aws,
                &own_paths(&setup),
            )
            .await?
        }
        Command::Backfill {
            root,
            from,
            to,
            include_error_output,
            layout,
            dry_run,
            manifest,
        } => {
            if manifest.is_some() && !root.starts_with("s3://") {
                bail!("--manifest needs an s3:// root: S3 Batch Operations reads objects from S3");
            }
            let range = HourRange::parse(from, to).map_err(anyhow::Error::msg)?;
            let (store, base): (Arc<dyn ObjectStore>, String) = if root.starts_with("s3://") {
                let uri: S3Uri = root.parse().map_err(anyhow::Error::msg)?;
                let mut base = uri.key.clone();
                if !base.is_empty() && !base.ends_with('/') {
                    base.push('/');
                }
                (Arc::new(S3Store::new(aws.client().await, uri.bucket)), base)
            } else {
                let store = local_store(std::path::Path::new(root), &own_paths(&setup))
                    .with_context(|| format!("backfill root {root}"))?;
                (Arc::new(store), String::new())
            };
            if manifest.is_none() && !*dry_run && !setup.batched() {
                // Listed as the run goes, a few hours ahead and several at a time.
                let mut listing = backfill::list(
                    store.clone(),
                    &base,
                    layout,
                    &range,
                    *include_error_output,
                    backfill::ListOptions::default(),
                );
                tracing::info!(hours = range.hours().count(), "backfill listing");
                listing.first_answer().await?;
                let progress = listing.progress.clone();
                let store = store.clone();
                let jobs = futures::StreamExt::map(listing.into_stream(), move |o| {
                    o.map(|object| Job {
                        store: store.clone(),
                        object,
                    })
                });
                let feed = runner::Feed::listed(jobs, progress);
                return finish_run(opts, &setup, &mut aws, Vec::new(), Some(feed)).await;
            }
            let objects =
                backfill::plan(store.clone(), &base, layout, &range, *include_error_output).await?;
            let bytes: u64 = objects.iter().filter_map(|o| o.size).sum();
            tracing::info!(
                hours = range.hours().count(),
                objects = objects.len(),
                mib = format!("{:.1}", bytes as f64 / 1048576.0),
                "backfill planned"
            );
            if let Some(path) = manifest {
                write_manifest(path, &objects)
                    .with_context(|| format!("writing the manifest {}", path.display()))?;
                say!(
                    "manifest: {} objects, {} bytes, written to {}",
                    objects.len(),
                    bytes,
                    path.display()
                );
                return Ok(None);
            }
            if *dry_run {
                crate::stdio::print(|out| {
                    writeln!(
                        out,
                        "plan: {} hours ({} .. {}), {} objects, {} bytes",
                        range.hours().count(),
                        range.first.format("%Y-%m-%dT%H"),
                        range.last.format("%Y-%m-%dT%H"),
                        objects.len(),
                        bytes
                    )?;
                    for o in &objects {
                        writeln!(out, "{}/{}\t{}", o.bucket, o.key, o.size.unwrap_or(0))?;
                    }
                    if setup.load_mode() {
                        let bounds = &setup.bigquery.load_bounds;
                        let plan = bigquery::load::plan::plan(&objects, bounds);
                        writeln!(out, "{}", plan.describe(objects.len(), bounds))?;
                    }
                    Ok(())
                })?;
                return Ok(None);
            }
            objects
                .into_iter()
                .map(|object| Job {
                    store: store.clone(),
                    object,
                })
                .collect()
        }
    };
    finish_run(opts, &setup, &mut aws, jobs, None).await
}

/// Runs `jobs`, or the `listed` feed (a backfill listed as it goes), through the configured
/// sink.
pub(crate) async fn finish_run(
    opts: &Opts,
    setup: &Setup,
    aws: &mut Aws,
    jobs: Vec<Job>,
    listed: Option<runner::Feed>,
) -> anyhow::Result<Option<Summary>> {
    let shared = setup.build(aws).await?;
    let concurrency = setup.concurrency;
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Progress::Bar
    } else if opts.logging.progress_interval > 0 {
        Progress::Log(std::time::Duration::from_secs(
            opts.logging.progress_interval,
        ))
    } else {
        Progress::Off
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(stop.clone()).context("listening for Ctrl-C")?;
    let mut summary = if let Some(batches) = setup.load_batches(&shared).await? {
        runner::batch::run(jobs, shared, concurrency, &batches, stop.clone()).await
    } else if let Some(batches) = shared.sink.batching() {
        runner::batch::run(jobs, shared, concurrency, &*batches, stop.clone()).await
    } else if let Some(feed) = listed {
        runner::run_feed(feed, shared, concurrency, progress, stop.clone()).await
    } else {
        runner::run(jobs, shared, concurrency, progress, stop.clone()).await
    };
    // Interrupted even if every object was already in flight and finished: exit 130.
    summary.interrupted = stop.load(Ordering::SeqCst);
    Ok(Some(summary))
}

/// Ctrl-C once sets `stop` (no new object starts; the run ends with 130 once those in flight
/// are settled); a second Ctrl-C exits 130 at once. The handler is in place when this returns,
/// so a Ctrl-C right after it is not lost.
pub(crate) fn watch_ctrl_c(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    const MESSAGE: &str =
        "interrupted: finishing the objects in flight (Ctrl-C again to abort now)";
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            if sigint.recv().await.is_some() {
                stop.store(true, Ordering::SeqCst);
                say!("{MESSAGE}");
                if sigint.recv().await.is_some() {
                    std::process::exit(130);
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.store(true, Ordering::SeqCst);
            say!("{MESSAGE}");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

//! `plan-map`: a date range → a manifest of its objects (S3 or a local file) and the ASL
//! definition of a Step Functions Distributed Map that replays it through the Lambda function.
//!
//! The range is listed as `backfill` lists it and streamed into the manifest (through a
//! temporary file, uploaded when done), so a year of keys costs constant memory.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use firehose_replay::aws::S3Uri;
use firehose_replay::backfill::{self, HourRange, Layout};
use firehose_replay::map_plan::asl::{Definition, Place};
use firehose_replay::map_plan::{ManifestFormat, ManifestWriter, Sizing};
use firehose_replay::source::local::LocalStore;
use firehose_replay::source::s3::S3Store;
use firehose_replay::source::ObjectStore;
use serde_json::json;

use crate::stdio::say;
use firehose_replay::aws::Aws;

/// `plan-map`'s arguments.
#[derive(Args, Debug)]
pub struct PlanMapArgs {
    /// s3://bucket/prefix/ (or a local directory that plays the bucket, for trying it out).
    root: String,
    /// First UTC hour (as `backfill --from`).
    #[arg(long)]
    from: String,
    /// Last UTC hour, inclusive (as `backfill --to`).
    #[arg(long)]
    to: String,
    /// Also list Firehose's error output for the same hours.
    #[arg(long)]
    include_error_output: bool,
    /// The delivery stream's S3 prefix template below ROOT (as `backfill --layout`).
    #[arg(long, default_value = backfill::layout::DEFAULT)]
    layout: Layout,
    /// Where the manifest goes: s3://bucket/key, or a local file (upload it yourself; the
    /// definition then reads its location from the execution input).
    #[arg(long)]
    manifest: String,
    /// The manifest's format; by default from its name (.csv: CSV, otherwise JSON Lines).
    #[arg(long, value_enum)]
    manifest_format: Option<ManifestFormat>,
    /// Write the ASL definition here instead of standard output.
    #[arg(long, value_name = "FILE")]
    asl: Option<PathBuf>,
    /// The function the Map invokes: name or ARN.
    #[arg(long)]
    function: String,
    /// The function's timeout, seconds: batches are sized to take half of it.
    #[arg(long, default_value_t = 900)]
    function_timeout: u64,
    /// The function's FIREHOSE_REPLAY_DEADLINE_MARGIN_MS.
    #[arg(long, default_value_t = 10_000)]
    deadline_margin_ms: u64,
    /// Compressed MiB one invocation replays per second (CloudWatch: the function's bytes_in
    /// over its ms); the default is deliberately low.
    #[arg(long, default_value_t = 4.0)]
    throughput_mib_per_sec: f64,
    /// Child executions at once (the Map's MaxConcurrency; the function's reserved
    /// concurrency should allow as many).
    #[arg(long, default_value_t = 100)]
    max_concurrency: u64,
    /// Percentage of batches that may fail (after their retries) without failing the run.
    #[arg(long, default_value_t = 0.0)]
    tolerated_failure_percentage: f64,
    /// Where the Map Run's results go (ResultWriter), s3://bucket/prefix/. Default: beside an
    /// S3 manifest (`<manifest key without extension>-results/`); with a local manifest, the
    /// execution input's `results`.
    #[arg(long)]
    results: Option<String>,
}

/// Runs `plan-map`.
pub async fn run(path_style: bool, args: &PlanMapArgs) -> anyhow::Result<()> {
    if !(0.0..=100.0).contains(&args.tolerated_failure_percentage) {
        bail!("--tolerated-failure-percentage must be between 0 and 100");
    }
    if args.throughput_mib_per_sec.is_nan() || args.throughput_mib_per_sec <= 0.0 {
        bail!("--throughput-mib-per-sec must be positive");
    }
    let range = HourRange::parse(&args.from, &args.to).map_err(anyhow::Error::msg)?;
    let mut aws = Aws {
        path_style,
        client: None,
    };
    let (store, base): (Arc<dyn ObjectStore>, String) = if args.root.starts_with("s3://") {
        let uri: S3Uri = args.root.parse().map_err(anyhow::Error::msg)?;
        let mut base = uri.key.clone();
        if !base.is_empty() && !base.ends_with('/') {
            base.push('/');
        }
        (Arc::new(S3Store::new(aws.client().await, uri.bucket)), base)
    } else {
        let store = LocalStore::new(&args.root).with_context(|| format!("root {}", args.root))?;
        (Arc::new(store), String::new())
    };
    let manifest_s3: Option<S3Uri> = if args.manifest.starts_with("s3://") {
        let uri: S3Uri = args.manifest.parse().map_err(anyhow::Error::msg)?;
        if uri.key.is_empty() || uri.key.ends_with('/') {
            bail!("--manifest {} names no object key", args.manifest);
        }
        Some(uri)
    } else {
        None
    };
    let format = args
        .manifest_format
        .unwrap_or_else(|| ManifestFormat::of_name(&args.manifest));
    let results = match (&args.results, &manifest_s3) {
        (Some(r), _) => {
            let uri: S3Uri = r.parse().map_err(anyhow::Error::msg)?;
            Place::Fixed {
                bucket: uri.bucket,
                key: uri.key,
            }
        }
        (None, Some(m)) => {
            let stem = m.key.rsplit_once('.').map_or(m.key.as_str(), |(s, _)| s);
            Place::Fixed {
                bucket: m.bucket.clone(),
                key: format!("{stem}-results/"),
            }
        }
        (None, None) => Place::FromInput,
    };

    // List into a temporary file beside the local manifest (renamed into place at the end),
    // or in the temporary directory (uploaded at the end).
    let dir = match &manifest_s3 {
        Some(_) => std::env::temp_dir(),
        None => Path::new(&args.manifest)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".plan-map-")
        .tempfile_in(&dir)
        .with_context(|| format!("a temporary file in {}", dir.display()))?;
    let mut listing = backfill::list(
        store,
        &base,
        &args.layout,
        &range,
        args.include_error_output,
        backfill::ListOptions::default(),
    );
    listing.first_answer().await?;
    let mut writer = ManifestWriter::new(BufWriter::new(tmp.as_file_mut()), format)?;
    while let Some(o) = listing.next().await {
        writer.add(&o?).context("writing the manifest")?;
    }
    let (out, stats) = writer.finish().context("writing the manifest")?;
    drop(out);
    if stats.objects == 0 {
        bail!(
            "no objects in {} for {} .. {}: nothing to plan",
            args.root,
            range.first.format("%Y-%m-%dT%H"),
            range.last.format("%Y-%m-%dT%H")
        );
    }
    let manifest_place = match &manifest_s3 {
        Some(uri) => {
            let body = aws_sdk_s3::primitives::ByteStream::from_path(tmp.path())
                .await
                .context("reading the manifest back")?;
            aws.client()
                .await
                .put_object()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .content_type(match format {
                    ManifestFormat::Csv => "text/csv",
                    ManifestFormat::Jsonl => "application/jsonl",
                })
                .body(body)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                .with_context(|| format!("uploading the manifest to {}", args.manifest))?;
            Place::Fixed {
                bucket: uri.bucket.clone(),
                key: uri.key.clone(),
            }
        }
        None => {
            tmp.persist(&args.manifest)
                .with_context(|| format!("writing the manifest {}", args.manifest))?;
            Place::FromInput
        }
    };

    let sizing = Sizing {
        timeout_secs: args.function_timeout,
        margin_secs: args.deadline_margin_ms.div_ceil(1000),
        throughput_bytes_per_sec: args.throughput_mib_per_sec * 1048576.0,
        max_concurrency: args.max_concurrency.max(1),
    };
    let items = sizing.items_per_batch(&stats);
    let definition = Definition {
        function: args.function.clone(),
        manifest: manifest_place.clone(),
        format,
        items_per_batch: Some(items),
        max_concurrency: args.max_concurrency.max(1),
        tolerated_failure_percentage: args.tolerated_failure_percentage,
        results: results.clone(),
    }
    .to_json();
    let text = serde_json::to_string_pretty(&definition)? + "\n";
    match &args.asl {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("writing the definition {}", path.display()))?,
        None => crate::stdio::print(|out| out.write_all(text.as_bytes()))?,
    }

    say!(
        "plan-map: {} hours, {} objects, {} bytes (largest {}); manifest {} ({})",
        range.hours().count(),
        stats.objects,
        stats.bytes,
        stats.largest,
        args.manifest,
        format.input_type()
    );
    say!(
        "batches of up to {items} objects: about {} child executions, {} at a time",
        stats.objects.div_ceil(items),
        sizing.max_concurrency
    );
    if !sizing.largest_fits(&stats) {
        say!(
            "warning: the largest object ({} bytes) needs longer than the function's timeout at \
             {} MiB/s: raise the timeout, or measure the throughput (--throughput-mib-per-sec)",
            stats.largest,
            args.throughput_mib_per_sec
        );
    }
    // What template.yaml's state machine (which reads these from its input; its results go to
    // MapBucket/MapPrefix/results/ whatever `results` says) is started with.
    let place = |p: &Place, what: &str| match p {
        Place::Fixed { bucket, key } => json!({ "bucket": bucket, what: key }),
        Place::FromInput => json!({ "bucket": "BUCKET", what: "KEY" }),
    };
    let input = json!({
        "manifest": place(&manifest_place, "key"),
        "max_items_per_batch": items,
        "max_concurrency": sizing.max_concurrency,
        "tolerated_failure_percentage": args.tolerated_failure_percentage,
        "results": place(&results, "prefix"),
    });
    say!("execution input for template.yaml's state machine: {input}");
    Ok(())
}

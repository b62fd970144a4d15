//! `redrive`: the letters' source parsed and listed (or printed, with `--dry-run`), then
//! delivered by the library's `run::redrive`, whose progress is printed here.

use anyhow::bail;

use firehose_replay::aws::Aws;
use firehose_replay::dead_letter::remote;
use firehose_replay::dead_letter::spec::{DeadLetterSpec, SpecError};
use firehose_replay::run::{self as runner, Entry, Summary};

use super::args::RedriveArgs;
use crate::flags::Opts;
use crate::stdio::say;

/// `redrive`: dead letters delivered again into the configured sink.
pub(crate) async fn redrive(
    opts: &Opts,
    args: &RedriveArgs,
    aws: &mut Aws,
) -> anyhow::Result<Option<Summary>> {
    use firehose_replay::redrive::Source;
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
    let redrive = runner::redrive::Redrive {
        source: &source,
        source_name: spec,
        source_root: args.source_root.clone(),
        concurrency: setup.concurrency,
    };
    let summary = redrive
        .run(letters, shared, aws, |d| match d.records {
            None => say!(
                "redriven: {}/{} ({})",
                d.object.bucket,
                d.object.key,
                d.location
            ),
            Some(n) => say!(
                "redriven: {n} records of {}/{} ({})",
                d.object.bucket,
                d.object.key,
                d.location
            ),
        })
        .await?;
    Ok(Some(summary))
}

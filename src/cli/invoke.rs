//! `invoke`: one Lambda event through the Lambda handler, here.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use firehose_replay::aws::Aws;
use firehose_replay::run::Entry;
use firehose_replay::source::local::LocalStore;
use firehose_replay::source::unavailable::Unavailable;
use firehose_replay::source::ObjectStore;

use super::args::InvokeArgs;
use crate::flags::Opts;

/// `invoke`: one event through the Lambda handler, here.
pub(crate) async fn invoke(opts: &Opts, args: &InvokeArgs) -> anyhow::Result<ExitCode> {
    use firehose_replay::trigger::handler::{Handler, S3Stores, Stores};
    let setup = opts.setup(Entry::Lambda)?;
    setup.validate()?;
    let text = if args.event == "-" {
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf)
            .context("reading the event from standard input")?;
        buf
    } else {
        std::fs::read_to_string(&args.event)
            .with_context(|| format!("reading the event {}", args.event))?
    };
    let payload: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the event {} is not JSON",
            if args.event == "-" {
                "on standard input"
            } else {
                &args.event
            }
        )
    })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.timeout);
    let mut aws = Aws {
        path_style: opts.input.s3_path_style,
        client: None,
    };
    let shared = setup.build(&mut aws).await.context("configuration")?;
    let stores: Arc<dyn Stores> = match &args.buckets {
        Some(dir) => {
            let dir = dir.clone();
            Arc::new(move |bucket: &str| -> Arc<dyn ObjectStore> {
                // The events' parsers refuse such names already; this store must not depend
                // on it to stay inside DIR.
                if let Err(why) = firehose_replay::object::check_bucket_name(bucket) {
                    return Arc::new(Unavailable {
                        bucket: bucket.to_string(),
                        why,
                    });
                }
                match LocalStore::new(dir.join(bucket)) {
                    Ok(store) => Arc::new(store),
                    Err(e) => Arc::new(Unavailable {
                        bucket: bucket.to_string(),
                        why: format!("no local bucket {}: {e}", dir.join(bucket).display()),
                    }),
                }
            })
        }
        None => Arc::new(S3Stores::new(aws.client().await)),
    };
    let handler = Handler {
        stores,
        shared,
        concurrency: setup.concurrency,
        margin: std::time::Duration::from_millis(args.deadline_margin_ms),
        // stdout is for the response alone.
        metrics: None,
        map_bucket: args.map_bucket.clone(),
    };
    let (response, code) = match handler.handle(&payload, deadline, &args.request_id).await {
        Ok(v) => (v, ExitCode::SUCCESS),
        Err(e) => (crate::lambda::error_response(&e), ExitCode::from(1)),
    };
    crate::stdio::print(|out| writeln!(out, "{response}"))?;
    Ok(code)
}

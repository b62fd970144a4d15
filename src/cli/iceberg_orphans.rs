//! `iceberg-orphans`: the Iceberg sink's data files that no snapshot references (a batch killed
//! between writing its files and committing them), listed, and removed with `--delete`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use firehose_replay::sink::SinkSpec;

use crate::flags::parsers::duration;
use crate::flags::Opts;

/// `iceberg-orphans`' arguments (the table is `--sink iceberg:…`).
#[derive(Args, Debug)]
pub(crate) struct IcebergOrphansArgs {
    /// Remove the files listed.
    #[arg(long)]
    pub(crate) delete: bool,
    /// Only files last written longer ago than this (e.g. 90s, 30m, 1h, 2d). A running
    /// writer's files are unreferenced too until its batch commits: keep this well above the
    /// time a batch takes from writing its files to committing them.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub(crate) min_age: Duration,
}

/// Lists (and with `--delete` removes) the orphaned data files: one line each on stdout
/// (location, bytes, age in seconds, batch ID, tab-separated), a count on stderr.
pub(crate) async fn iceberg_orphans(
    opts: &Opts,
    args: &IcebergOrphansArgs,
) -> anyhow::Result<ExitCode> {
    let SinkSpec::Iceberg(target) = &opts.output.sink else {
        anyhow::bail!("iceberg-orphans needs --sink iceberg:… (the table to look in)");
    };
    run(target, args).await
}

#[cfg(feature = "iceberg")]
async fn run(
    target: &firehose_replay::sink::iceberg::Target,
    args: &IcebergOrphansArgs,
) -> anyhow::Result<ExitCode> {
    use firehose_replay::sink::iceberg::{orphans, Iceberg, Refusal, Settings};

    let sink = match Iceberg::connect(target.clone(), Settings::default()).await {
        Ok(s) => s,
        Err(Refusal::Usage(why)) => anyhow::bail!(why),
        Err(Refusal::Service(e)) => return Err(e.into()),
    };
    let found = orphans::find(&sink.shared, args.min_age).await?;
    crate::stdio::print(|out| {
        for o in &found {
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                o.location,
                o.bytes,
                o.age.as_secs(),
                o.batch
            )?;
        }
        Ok(())
    })?;
    let bytes: u64 = found.iter().map(|o| o.bytes).sum();
    let what = format!(
        "{} orphaned data files, {:.2} MiB, older than {}s",
        found.len(),
        bytes as f64 / (1024.0 * 1024.0),
        args.min_age.as_secs()
    );
    if args.delete {
        orphans::delete(&sink.shared, &found).await?;
        crate::stdio::say!("removed {what}");
    } else {
        crate::stdio::say!("{what} (--delete removes them)");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "iceberg"))]
async fn run(
    _: &firehose_replay::sink::iceberg::Target,
    _: &IcebergOrphansArgs,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this build has no Iceberg sink (built without the `iceberg` feature)")
}

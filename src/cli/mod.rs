//! The command line: the command tree (`Cli`, `Command`) and dispatch, the exit statuses, and
//! argument parsing. The flags themselves are in `crate::flags` (shared with the Lambda and the
//! worker); each command's glue is in its own file here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use firehose_replay::backfill;

use crate::flags::parsers::*;
use crate::flags::Opts;
use crate::stdio::{say, OutputClosed};

mod args;
mod iceberg_orphans;
mod invoke;
mod logging;
mod redrive;
mod replay;
mod sources;

use self::args::{InvokeArgs, RedriveArgs};
use self::invoke::invoke;
use self::logging::init_logging;
use self::replay::run;

#[derive(Parser, Debug)]
#[command(
    name = "firehose-replay",
    version,
    about = "Replay Kinesis Data Firehose archives into analytics sinks, without duplicates",
    after_help = "Exit codes: 0 all objects done; 1 at least one object failed; 2 usage error; \
                  130 interrupted (Ctrl-C); 141 standard output closed by its reader."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) opts: Opts,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Replay objects (S3 keys or prefixes, local files or directories) into the sink, once.
    ///
    /// Example: firehose-replay replay s3://archive/2026/11/25/ --sink ndjson:./out
    ///
    /// Sources: s3://bucket/key, s3://bucket/prefix/ (everything below it; without the slash
    /// too, when no object has that name), local files or directories.
    Replay {
        #[arg(required = true)]
        sources: Vec<String>,
        /// The local directory that plays the bucket (as ROOT does for `backfill`): local
        /// sources below it are keyed relative to it, so a file gets the identity — keys, row
        /// IDs, ledger entries — a backfill of ROOT gives it. Without it, a file below
        /// `…/YYYY/MM/DD/HH/` belongs to the directory above the year.
        #[arg(long)]
        source_root: Option<PathBuf>,
    },
    /// Replay a UTC date/hour range of a Firehose archive (ROOT/YYYY/MM/DD/HH/... by default).
    Backfill {
        /// s3://bucket/prefix/ or a local directory that plays the bucket.
        root: String,
        /// First UTC hour: YYYY-MM-DD (from 00:00), YYYY-MM-DDTHH or an RFC 3339 time on the
        /// hour (2026-11-25T22:00:00Z); minutes and seconds are refused, the range is whole hours.
        #[arg(long, env = "FIREHOSE_REPLAY_FROM")]
        from: String,
        /// Last UTC hour, inclusive: YYYY-MM-DD (through 23:00), YYYY-MM-DDTHH or an RFC 3339
        /// time on the hour.
        #[arg(long, env = "FIREHOSE_REPLAY_TO")]
        to: String,
        /// Also replay Firehose's error output for the same hours
        /// (processing-failed/, format-conversion-failed/, ...).
        #[arg(long, env = "FIREHOSE_REPLAY_INCLUDE_ERROR_OUTPUT", value_parser = env_bool)]
        include_error_output: bool,
        /// The delivery stream's S3 prefix template, below ROOT, in Firehose's syntax, e.g.
        /// 'events/dt=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/'. !{partitionKeyFromQuery:..}
        /// and !{firehose:..} match any value.
        #[arg(long, env = "FIREHOSE_REPLAY_LAYOUT", default_value = backfill::layout::DEFAULT)]
        layout: backfill::Layout,
        /// Print the plan (hours, objects, bytes) and exit without touching anything.
        #[arg(long)]
        dry_run: bool,
        /// Write the plan as an S3 Batch Operations CSV manifest (bucket,url-encoded key) to
        /// this file instead of processing it; run the job with the Lambda function to backfill
        /// on AWS's distributed engine. Needs an s3:// root.
        #[arg(long, conflicts_with = "dry_run")]
        manifest: Option<PathBuf>,
    },
    /// Deliver dead letters again into the configured sink: failed objects are processed from
    /// their source, failed records are rebuilt with their original row IDs. Each letter is
    /// removed once everything in it was delivered; what still fails is reported (and records
    /// that still fail go to --dead-letter).
    Redrive(RedriveArgs),
    /// Run one Lambda event locally through the handler the Lambda function runs, configured by
    /// the same flags and FIREHOSE_REPLAY_* variables: the JSON response on stdout, the log on
    /// stderr. Exit 0 with a response, 1 when the invocation fails as a whole (the response is
    /// then Lambda's {"errorType","errorMessage"}).
    Invoke(InvokeArgs),
    /// Consume S3 notifications from an SQS queue until SIGTERM (a long-running container on
    /// ECS or Kubernetes): each message's visibility is extended while its objects run, it is
    /// deleted once they are committed, returned with a backoff when one must be retried, and
    /// made visible again at once when shutdown cuts it short. Exit 0 after a clean shutdown.
    Worker(crate::worker_cli::WorkerArgs),
    /// Plan a Step Functions Distributed Map over a UTC date/hour range: list it into a
    /// manifest (JSON Lines or CSV, in S3 or a local file) and print the state machine's ASL
    /// definition (ItemReader on the manifest, batches sized to the function's timeout).
    PlanMap(crate::plan_map::PlanMapArgs),
    /// List the Iceberg sink's data files that no snapshot of the --sink table references (a
    /// batch killed between writing its files and committing them leaves them; no reader sees
    /// them), and remove them with --delete. Only this tool's files (fr-<batch>-NNNNN.parquet)
    /// older than --min-age are taken: a running writer's files are unreferenced until it
    /// commits.
    ///
    /// Example: firehose-replay iceberg-orphans --sink 'iceberg:sqlite:///lake/catalog.db?warehouse=/lake/wh#ns.events' --delete
    IcebergOrphans(self::iceberg_orphans::IcebergOrphansArgs),
    /// `completions`, `man` and the hidden `reference`, generated from these definitions.
    #[command(flatten)]
    Docs(crate::cli_docs::DocsCommand),
}

/// Exit status when standard output was closed by its reader (`| head`): 128 + SIGPIPE, what a
/// shell reports for a tool the signal killed.
pub(crate) const EXIT_OUTPUT_CLOSED: u8 = 141;

pub fn main() -> ExitCode {
    let cli = parse_args(std::env::args_os().collect());
    if let Command::Docs(docs) = &cli.command {
        return crate::cli_docs::run(docs, Cli::command());
    }
    // The worker's logs are read by machines (CloudWatch, Loki) unless a person watches them.
    let json = matches!(cli.command, Command::Worker(_))
        && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging(&cli.opts.logging.log_level, json);
    cli.opts.bigquery.warn_exposure();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Worker(args) = &cli.command {
        let result = runtime.block_on(crate::worker_cli::run(&cli.opts, args));
        // Objects abandoned at shutdown may still be unwinding on blocking threads: their
        // messages are already back in the queue, so the process does not wait for them.
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        return match result {
            Ok(code) => code,
            Err(e) => {
                say!("error: {}", describe(&e));
                ExitCode::from(exit_code_of(&e))
            }
        };
    }
    if let Command::PlanMap(args) = &cli.command {
        return match runtime.block_on(crate::plan_map::run(cli.opts.input.s3_path_style, args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.is::<OutputClosed>() => ExitCode::from(EXIT_OUTPUT_CLOSED),
            Err(e) => {
                say!("error: {}", describe(&e));
                ExitCode::from(exit_code_of(&e))
            }
        };
    }
    if let Command::IcebergOrphans(args) = &cli.command {
        return match runtime.block_on(self::iceberg_orphans::iceberg_orphans(&cli.opts, args)) {
            Ok(code) => code,
            Err(e) if e.is::<OutputClosed>() => ExitCode::from(EXIT_OUTPUT_CLOSED),
            Err(e) => {
                say!("error: {}", describe(&e));
                ExitCode::from(exit_code_of(&e))
            }
        };
    }
    if let Command::Invoke(args) = &cli.command {
        return match runtime.block_on(invoke(&cli.opts, args)) {
            Ok(code) => code,
            Err(e) if e.is::<OutputClosed>() => ExitCode::from(EXIT_OUTPUT_CLOSED),
            Err(e) => {
                say!("error: {}", describe(&e));
                ExitCode::from(exit_code_of(&e))
            }
        };
    }
    match runtime.block_on(run(cli)) {
        Ok(None) => ExitCode::SUCCESS,
        // Nobody reads the rows any more: stop quietly, like `grep … | head`.
        Ok(Some(summary)) if summary.output_closed => ExitCode::from(EXIT_OUTPUT_CLOSED),
        Ok(Some(summary)) => {
            say!("{summary}");
            for f in &summary.failures {
                say!("failed: {}: {}", f.object, f.error);
            }
            let hint = (summary.failures.iter())
                .find_map(|f| crate::hints::for_message(&f.error.to_string()));
            if let Some(hint) = hint {
                say!("{hint}");
            }
            if let Some(e) = &summary.listing_failed {
                say!("error: listing stopped before the end of the range: {e}");
            }
            if summary.interrupted || summary.not_started > 0 {
                ExitCode::from(130)
            } else if summary.failures.is_empty() && summary.listing_failed.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) if e.is::<OutputClosed>() => ExitCode::from(EXIT_OUTPUT_CLOSED),
        Err(e) => {
            say!("error: {}", describe(&e));
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// An error and its causes, each said once: a library error's message already includes its
/// cause's, which `{:#}` would repeat (`… is not a directory [permanent]: I/O error: … is not a
/// directory: … is not a directory`).
pub(crate) fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for part in e.chain() {
        let m = part.to_string();
        if m.is_empty() || out.contains(&m) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&m);
    }
    if let Some(hint) = crate::hints::for_message(&out) {
        out.push('\n');
        out.push_str(hint);
    }
    out
}

/// Exit status of a run that could not start: 2 (usage) for what the command line or
/// configuration got wrong, 1 when a service failed — the sink (a BigQuery table, a Google
/// token, the ledger) could not be set up, or anything transient, which may pass by itself.
pub(crate) fn exit_code_of(e: &anyhow::Error) -> u8 {
    use firehose_replay::error::{Class, Error, Stage};
    let service_failed = e.chain().any(|c| {
        c.downcast_ref::<Error>()
            .is_some_and(|le| le.class == Class::Transient || le.stage == Stage::Sink)
    });
    if service_failed {
        1
    } else {
        2
    }
}

/// `Cli::parse`, except that an environment variable is not read for a flag given on the
/// command line. (clap parses the variable of a `global` flag given after the subcommand anyway,
/// clap-rs/clap#5588, so an invalid `FIREHOSE_REPLAY_SINK` would abort `replay … --sink stdout`.)
pub(crate) fn parse_args(args: Vec<std::ffi::OsString>) -> Cli {
    let given = given_longs(&args);
    let mut cmd = Cli::command();
    // `-h` asks for the brief form (`--help` for the whole text).
    if args.iter().skip(1).any(|a| a == "-h") {
        cmd = brief_help(cmd);
    }
    let overridden: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.get_env().is_some())
        .filter(|a| a.get_long().is_some_and(|l| given.iter().any(|g| g == l)))
        .map(|a| a.get_id().clone())
        .collect();
    for id in overridden {
        cmd = cmd.mut_arg(id, |a| a.env(None));
    }
    let matches = cmd.clone().get_matches_from(args);
    refuse_empty_flags(&matches, &mut cmd);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    // A letter that still fails stays where it was read from unless told otherwise: `redrive
    // s3://…` must not move letters to the local default `./dead-letter`.
    if let Command::Redrive(args) = &cli.command {
        if !given_anywhere(&matches, "dead_letter") {
            cli.opts.failures.dead_letter = args.source.clone();
        }
    }
    cli
}

/// `-h`: each flag's opening phrase, without its variable and default, as ripgrep keeps `-h` to a
/// screen or two; `--help`, the reference chapter and the man pages keep the whole text.
fn brief_help(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(brief).mut_subcommands(brief_help)
}

fn brief(arg: clap::Arg) -> clap::Arg {
    let arg = if arg.get_env().is_some() {
        arg.hide_env(true)
    } else {
        arg
    };
    let arg = if arg.get_action().takes_values() {
        arg.hide_default_value(true).hide_possible_values(true)
    } else {
        arg
    };
    match arg.get_help().map(|h| opening_phrase(&h.to_string())) {
        Some(short) => arg.help(short),
        None => arg,
    }
}

/// The text up to its first sentence or clause break (`. `, `: `, `; `, ` (`), without
/// breaking at an abbreviation such as "e.g.".
fn opening_phrase(text: &str) -> String {
    let mut cut = text.len();
    for stop in [". ", ": ", "; ", " ("] {
        let mut from = 0;
        while let Some(p) = text[from..].find(stop) {
            let at = from + p;
            let abbreviation = ["e.g", "i.e", "etc", "vs"]
                .iter()
                .any(|a| text[..at].ends_with(a));
            if !abbreviation {
                cut = cut.min(at);
                break;
            }
            from = at + stop.len();
        }
    }
    text[..cut].trim_end_matches('.').to_string()
}

/// The long flags on a command line (`--name` or `--name=value`), up to a `--`.
pub(crate) fn given_longs(args: &[std::ffi::OsString]) -> Vec<String> {
    let mut longs = Vec::new();
    for arg in args.iter().skip(1).filter_map(|a| a.to_str()) {
        if arg == "--" {
            break;
        }
        if let Some(name) = arg.strip_prefix("--") {
            longs.push(name.split_once('=').map_or(name, |(n, _)| n).to_string());
        }
    }
    longs
}

/// Whether `id` was given on the command line or in the environment (not left at its default),
/// before or after the subcommand.
pub(crate) fn given_anywhere(matches: &clap::ArgMatches, id: &str) -> bool {
    use clap::parser::ValueSource;
    let given = |m: &clap::ArgMatches| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    given(matches) || matches.subcommand().is_some_and(|(_, sub)| given(sub))
}

/// Flags whose empty value means "not set" in the environment, given empty on the command line
/// (`--bigquery-storage-endpoint "$UNSET"`): a usage error, not a silent fall-back to Google's.
pub(crate) fn refuse_empty_flags(matches: &clap::ArgMatches, cmd: &mut clap::Command) {
    let mut all = vec![matches];
    if let Some((_, sub)) = matches.subcommand() {
        all.push(sub);
    }
    for id in ["bigquery_endpoint", "bigquery_storage_endpoint"] {
        let empty = all.iter().any(|m| {
            m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                && m.get_one::<String>(id).is_some_and(|v| v.is_empty())
        });
        if empty {
            let flag = id.replace('_', "-");
            cmd.error(
                clap::error::ErrorKind::InvalidValue,
                format!("--{flag} needs a value (http://host:port)"),
            )
            .exit();
        }
    }
}

//! Command line: `replay` and `backfill`. Every flag can also be set through an environment
//! variable `FIREHOSE_REPLAY_<FLAG>` (what a Lambda deployment uses).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use firehose_replay::backfill::{self, HourRange};
use firehose_replay::dead_letter::DeadLetterDir;
use firehose_replay::decode::CompressionChoice;
use firehose_replay::frame::Framing;
use firehose_replay::object::ObjectRef;
use firehose_replay::pipeline::{RecordPolicy, Settings};
use firehose_replay::record::Envelope;
use firehose_replay::row::RowIdSource;
use firehose_replay::runner::{self, Job, Summary};
use firehose_replay::sink::SinkSpec;
use firehose_replay::source::local::{locate, LocalStore};
use firehose_replay::source::ObjectStore;

#[derive(Parser, Debug)]
#[command(
    name = "firehose-replay",
    version,
    about = "Replay Kinesis Data Firehose archives into analytics sinks, without duplicates",
    after_help = "Exit codes: 0 all objects done; 1 at least one object failed; 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay objects: files, or directories (everything below them).
    Replay {
        /// Local files or directories.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Replay a UTC date/hour range of a Firehose-laid-out tree (ROOT/YYYY/MM/DD/HH/...).
    Backfill {
        /// The tree's root: a local directory that plays the bucket (keys are paths below it).
        root: PathBuf,
        /// First UTC hour: YYYY-MM-DD (from 00:00) or YYYY-MM-DDTHH.
        #[arg(long, env = "FIREHOSE_REPLAY_FROM")]
        from: String,
        /// Last UTC hour, inclusive: YYYY-MM-DD (through 23:00) or YYYY-MM-DDTHH.
        #[arg(long, env = "FIREHOSE_REPLAY_TO")]
        to: String,
        /// Also replay Firehose's error output for the same hours
        /// (processing-failed/, format-conversion-failed/, ...).
        #[arg(long, env = "FIREHOSE_REPLAY_INCLUDE_ERROR_OUTPUT")]
        include_error_output: bool,
    },
}

#[derive(Args, Debug)]
struct Opts {
    /// Where rows go: ndjson:DIR (one file per object) or stdout.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_SINK",
        default_value = "ndjson:./out"
    )]
    sink: SinkSpec,
    /// auto | none | gzip | zstd | snappy | hadoop-snappy | zip.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_COMPRESSION",
        default_value = "auto"
    )]
    compression: CompressionChoice,
    /// auto | newline | concatenated | delimiter:<byte or escape like \n, \x1e>.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_FRAMING",
        default_value = "auto"
    )]
    framing: Framing,
    /// auto | none | cloudwatch-logs | firehose-error.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ENVELOPE",
        default_value = "auto"
    )]
    envelope: Envelope,
    /// Records longer than this are record-level errors.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_RECORD_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_record_bytes: usize,
    /// Cap on decompressed bytes per object (decompression bomb guard).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_MAX_DECOMPRESSED_BYTES", default_value_t = 4 * 1024 * 1024 * 1024)]
    max_decompressed_bytes: u64,
    /// What to do with a record that cannot become a row: skip | dead-letter | fail.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ON_RECORD_ERROR",
        default_value = "dead-letter"
    )]
    on_record_error: RecordPolicy,
    /// Take row IDs from this field (dotted path, e.g. detail.id) instead of the source position.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_ROW_ID_FIELD")]
    row_id_field: Option<String>,
    /// Column that carries the row ID; '' leaves it out of the rows.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ROW_ID_COLUMN",
        default_value = "_row_id"
    )]
    row_id_column: String,
    /// Where failed objects and records go: dir:PATH.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_DEAD_LETTER",
        default_value = "dir:./dead-letter"
    )]
    dead_letter: String,
    /// Objects processed at once (default: the number of cores).
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Log filter (error, warn, info, debug, or a tracing filter).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_LOG_LEVEL",
        default_value = "info"
    )]
    log_level: String,
}

impl Opts {
    fn settings(&self) -> Settings {
        Settings {
            compression: self.compression,
            framing: self.framing,
            envelope: self.envelope,
            max_record_bytes: self.max_record_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
            on_record_error: self.on_record_error,
            row_id: match &self.row_id_field {
                Some(f) => RowIdSource::field(f),
                None => RowIdSource::Position,
            },
            row_id_column: Some(self.row_id_column.clone()).filter(|c| !c.is_empty()),
        }
    }

    fn dead_letters(&self) -> anyhow::Result<DeadLetterDir> {
        let spec = &self.dead_letter;
        let dir = spec.strip_prefix("dir:").unwrap_or(spec);
        if dir.is_empty() || spec.contains("://") || spec.starts_with("sqs:") {
            bail!("unsupported --dead-letter `{spec}`: use dir:PATH");
        }
        Ok(DeadLetterDir::new(dir))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.opts.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(summary) => {
            eprintln!("{summary}");
            if summary.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                for f in &summary.failures {
                    eprintln!("failed: {}: {}", f.object, f.error);
                }
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<Summary> {
    let opts = &cli.opts;
    let settings = Arc::new(opts.settings());
    let dead_letters = Arc::new(opts.dead_letters()?);
    let sink: Arc<dyn firehose_replay::sink::Sink> = Arc::from(opts.sink.build());
    let concurrency = opts
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let jobs = match &cli.command {
        Command::Replay { sources } => replay_jobs(sources)?,
        Command::Backfill {
            root,
            from,
            to,
            include_error_output,
        } => {
            let range = HourRange::parse(from, to).map_err(anyhow::Error::msg)?;
            let store: Arc<dyn ObjectStore> = Arc::new(
                LocalStore::new(root)
                    .with_context(|| format!("backfill root {}", root.display()))?,
            );
            let objects = backfill::plan(store.as_ref(), "", &range, *include_error_output)?;
            tracing::info!(
                hours = range.hours().count(),
                objects = objects.len(),
                "backfill planned"
            );
            objects
                .into_iter()
                .map(|object| Job {
                    store: store.clone(),
                    object,
                })
                .collect()
        }
    };
    Ok(runner::run(jobs, settings, sink, dead_letters, concurrency).await)
}

/// Local files and directories → jobs, each object keyed relative to its Firehose tree.
fn replay_jobs(sources: &[PathBuf]) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for source in sources {
        let (root, key) =
            locate(source).with_context(|| format!("cannot read {}", source.display()))?;
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&root)?);
        let objects = if source.is_dir() {
            store.list(&key)?
        } else {
            vec![ObjectRef::new(store.bucket(), key)]
        };
        jobs.extend(objects.into_iter().map(|object| Job {
            store: store.clone(),
            object,
        }));
    }
    Ok(jobs)
}

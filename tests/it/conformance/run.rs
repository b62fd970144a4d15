//! Running the real binary against one sink's destination, and reading its summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::sinks::{Destination, Row, Servers, SinkUnderTest, STDOUT_FILE};
use crate::support::bin;

/// One sink in one scenario: a working directory of its own (ledger, dead letters, NDJSON
/// output, captured stdout) and a fresh destination.
pub struct Target<'a> {
    pub sink: &'static dyn SinkUnderTest,
    pub dest: Box<dyn Destination + 'a>,
    pub work: PathBuf,
    ledger: String,
    ledger_env: Vec<(String, String)>,
}

impl<'a> Target<'a> {
    /// A target in `scenario/<sink name><suffix>`, with a file ledger there.
    pub fn new(
        sink: &'static dyn SinkUnderTest,
        servers: &'a Servers,
        scenario: &Path,
        suffix: &str,
    ) -> Target<'a> {
        let work = scenario.join(format!("{}{suffix}", sink.name()));
        std::fs::create_dir_all(&work).unwrap();
        Target {
            sink,
            dest: sink.destination(servers, &work),
            work,
            ledger: "file:ledger.jsonl".into(),
            ledger_env: Vec::new(),
        }
    }

    /// The same target with an S3 ledger in moto, for several processes at once.
    pub fn with_s3_ledger(mut self, servers: &Servers) -> Target<'a> {
        let moto = servers.moto();
        let bucket = format!("ledger-{}", self.sink.name());
        moto.python(&format!(
            "import boto3; boto3.client('s3').create_bucket(Bucket='{bucket}')"
        ));
        self.ledger = format!("s3://{bucket}/ledger/");
        self.ledger_env = moto.env();
        self
    }

    /// The binary with `args`, then the sink's flags and the ledger; its stdout appended to
    /// the target's stdout file (so what a killed run printed is kept), stderr piped.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(args, self.dest.args(), &self.ledger)
    }

    fn command_with(&self, args: &[&str], sink_args: Vec<String>, ledger: &str) -> Command {
        let mut cmd = bin();
        cmd.current_dir(&self.work)
            .args(args)
            .args(sink_args)
            .args(["--ledger", ledger, "--retry-min-delay-ms", "50"])
            .envs(self.dest.env())
            .envs(self.ledger_env.iter().map(|(k, v)| (k, v)));
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join(STDOUT_FILE))
            .unwrap();
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        cmd
    }

    /// `replay SRC extra…`.
    pub fn replay(&self, src: &Path, extra: &[&str]) -> Command {
        let mut args = vec!["replay", src.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.command(&args)
    }

    /// `replay SRC extra… --ledger none`.
    pub fn replay_without_ledger(&self, src: &Path, extra: &[&str]) -> Command {
        let mut args = vec!["replay", src.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.command_with(&args, self.dest.args(), "none")
    }

    /// `redrive dead-letter extra…` with the flags the destination takes for a redrive.
    pub fn redrive(&self, extra: &[&str]) -> Command {
        let mut args = vec!["redrive", "dead-letter"];
        args.extend_from_slice(extra);
        self.command_with(&args, self.dest.redrive_args(), &self.ledger)
    }

    /// `redrive dead-letter extra…` with the sink's own flags, as for a replay.
    pub fn redrive_as_replayed(&self, extra: &[&str]) -> Command {
        let mut args = vec!["redrive", "dead-letter"];
        args.extend_from_slice(extra);
        self.command(&args)
    }

    pub fn rows(&self) -> Vec<Row> {
        self.dest.rows()
    }

    /// What the sink is called in messages.
    pub fn name(&self) -> &'static str {
        self.sink.name()
    }
}

/// How a run ended.
pub struct Finished {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Finished {
    pub fn summary(&self) -> Summary {
        Summary::parse(&self.stderr)
    }
}

pub fn finish(mut cmd: Command) -> Finished {
    let out = cmd.output().unwrap();
    Finished {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd`, which must exit with `code`.
pub fn expect(cmd: Command, code: i32, ctx: &str) -> Finished {
    let done = finish(cmd);
    assert_eq!(done.code, Some(code), "{ctx}: {}", done.stderr);
    done
}

/// The figures of a run's summary (`records:  R (W rows written, …, E record errors, …)` and
/// `objects:  N (O ok, S skipped by the ledger, F failed …)`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ok: u64,
    pub skipped: u64,
    pub failed: u64,
    pub written: u64,
    pub recovered: u64,
    pub already_present: u64,
    pub record_errors: u64,
}

impl Summary {
    fn parse(stderr: &str) -> Summary {
        let line = |start: &str| {
            stderr
                .lines()
                .rev()
                .find_map(|l| l.trim_start().strip_prefix(start).map(str::to_string))
                .unwrap_or_else(|| panic!("no `{start}` summary line in:\n{stderr}"))
        };
        let figures = |text: String| -> BTreeMap<String, u64> {
            let inner = text.split_once('(').map_or("", |(_, r)| r);
            inner
                .trim_end_matches(')')
                .split(", ")
                .filter_map(|part| {
                    let (n, what) = part.split_once(' ')?;
                    let what = what.split(':').next().unwrap_or(what);
                    Some((what.to_string(), n.parse().ok()?))
                })
                .collect()
        };
        let objects = figures(line("objects:"));
        let records = figures(line("records:"));
        let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        Summary {
            ok: get(&objects, "ok"),
            skipped: get(&objects, "skipped by the ledger"),
            failed: get(&objects, "failed"),
            written: get(&records, "rows written"),
            recovered: get(&records, "rows recovered"),
            already_present: get(&records, "rows already in the table"),
            record_errors: get(&records, "record errors"),
        }
    }
}

//! `completions`, `man` and the hidden `reference`: documentation generated from the clap
//! definitions themselves, so the shell completions, the man pages and the book's reference
//! chapter (`docs/src/reference.md`) can never disagree with what the binary accepts. A test
//! (`tests/it/docs.rs`) fails when the committed reference is stale.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::stdio::{print, say, OutputClosed};

/// The documentation subcommands, flattened into the CLI's own.
#[derive(Subcommand, Debug)]
pub(crate) enum DocsCommand {
    /// Print a shell completion script for SHELL. For example, bash:
    /// `firehose-replay completions bash > ~/.local/share/bash-completion/completions/firehose-replay`;
    /// zsh: `firehose-replay completions zsh > ~/.zfunc/_firehose-replay` (with ~/.zfunc on
    /// fpath); fish: `firehose-replay completions fish > ~/.config/fish/completions/firehose-replay.fish`.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or with --out write one page per subcommand
    /// (firehose-replay.1, firehose-replay-replay.1, ...) into DIR, e.g. ~/.local/share/man/man1.
    Man {
        /// The directory the pages are written to (it must exist).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print the book's reference chapter (docs/src/reference.md): every subcommand's flags and
    /// their FIREHOSE_REPLAY_* variables.
    #[command(hide = true)]
    Reference,
}

/// Runs a documentation subcommand against `root`, the CLI's whole clap definition.
pub(crate) fn run(command: &DocsCommand, root: clap::Command) -> ExitCode {
    let result = match command {
        DocsCommand::Completions { shell } => print(|w| {
            let mut root = root;
            let name = root.get_name().to_string();
            clap_complete::generate(*shell, &mut root, name, w);
            Ok(())
        }),
        DocsCommand::Man { out: None } => print(|w| clap_mangen::Man::new(root).render(w)),
        DocsCommand::Man { out: Some(dir) } => clap_mangen::generate_to(root, dir).map_err(|e| {
            anyhow::Error::new(e).context(format!("writing man pages to {}", dir.display()))
        }),
        DocsCommand::Reference => print(|w| w.write_all(reference(root).as_bytes())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<OutputClosed>() => ExitCode::from(141),
        Err(e) => {
            say!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The reference chapter: the options every subcommand takes (clap's global arguments), then
/// each visible subcommand with its own arguments, one table row per flag.
pub(crate) fn reference(mut root: clap::Command) -> String {
    root.build();
    let name = root.get_name().to_string();
    let mut md = String::new();
    md.push_str("# Reference: every flag\n\n");
    md.push_str(
        "<!-- Generated from the clap definitions by `cargo run -- reference > docs/src/reference.md`;\n     \
         do not edit by hand. The test `docs::the_reference_chapter_is_current` fails when it is stale. -->\n\n",
    );
    md.push_str(
        "A flag given on the command line wins over its environment variable; see \
         [Flags and environment variables](cli.md#flags-and-environment-variables).\n\n",
    );
    let globals: Vec<&clap::Arg> = root
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .collect();
    md.push_str("## Options every subcommand takes\n\n");
    table(&mut md, &globals);
    for sub in visible(&root) {
        subcommand(&mut md, &name, sub);
    }
    md
}

fn subcommand(md: &mut String, parent: &str, cmd: &clap::Command) {
    let full = format!("{parent} {}", cmd.get_name());
    md.push_str(&format!("## `{full}`\n\n"));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        md.push_str(&cell(&one_paragraph(&about.to_string())));
        md.push_str("\n\n");
    }
    let own: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if own.is_empty() {
        md.push_str("No flags of its own.\n\n");
    } else {
        table(md, &own);
    }
    for sub in visible(cmd) {
        subcommand(md, &full, sub);
    }
}

/// The subcommands a user sees, without clap's generated `help`.
fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

fn table(md: &mut String, args: &[&clap::Arg]) {
    md.push_str("| flag | variable | default | meaning |\n| --- | --- | --- | --- |\n");
    for arg in args {
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), Some(short)) => format!("`-{short}`, `--{long}`"),
            (Some(long), None) => format!("`--{long}`"),
            (None, Some(short)) => format!("`-{short}`"),
            (None, None) => format!("`{}`", arg.get_id().as_str().to_uppercase()),
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ");
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| one_paragraph(&h.to_string()))
            .unwrap_or_default();
        md.push_str(&format!(
            "| {flag} | {env} | {} | {} |\n",
            cell(&default),
            cell(&help)
        ));
    }
    md.push('\n');
}

/// Help text on one line: a table cell holds no line breaks.
fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table cell: `|` would end it, and `<…>` would be read as an HTML tag.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

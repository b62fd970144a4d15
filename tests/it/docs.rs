//! The documentation runs: the reference chapter is what the binary generates, completions and
//! man pages come from the binary, and every fenced block marked `sh,runnable` in README.md and
//! docs/src/ runs as written, its output checked against the `text,output` block after it.

use std::path::{Path, PathBuf};

use crate::support::bin;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_reference_chapter_is_current() {
    let out = bin().arg("reference").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(repo().join("docs/src/reference.md")).unwrap();
    assert!(
        generated == committed,
        "docs/src/reference.md is stale: regenerate it with \
         `cargo run -- reference > docs/src/reference.md`"
    );
    // It covers every subcommand and the variables of their flags.
    for needle in [
        "## `firehose-replay replay`",
        "## `firehose-replay worker`",
        "`FIREHOSE_REPLAY_QUEUE`",
        "`FIREHOSE_REPLAY_SINK`",
    ] {
        assert!(committed.contains(needle), "the reference lacks {needle}");
    }
}

#[test]
fn completions_and_man_pages_come_from_the_binary() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("backfill") && script.contains("include-error-output"),
            "{shell}"
        );
    }
    let out = bin().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH firehose-replay 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "firehose-replay.1",
        "firehose-replay-backfill.1",
        "firehose-replay-worker.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".ie"), "{page}");
    }
    // A directory that is not there is an error, not a panic.
    let out = bin()
        .args(["man", "--out"])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A runnable block: the shell commands, where they are, and the output lines they must print.
#[derive(Debug)]
struct Runnable {
    file: PathBuf,
    line: usize,
    script: String,
    expected: Option<Vec<String>>,
}

/// Fenced blocks whose info string is `sh,runnable`, each with the `text,output` block that
/// follows it (only blank lines between), if any.
fn runnables(file: &Path) -> Vec<Runnable> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    // The body of the fence opening at `start`, and the index after its closing fence.
    let body = |start: usize| -> (String, usize) {
        let mut j = start + 1;
        let mut body = String::new();
        while j < lines.len() && !lines[j].starts_with("```") {
            body.push_str(lines[j]);
            body.push('\n');
            j += 1;
        }
        (body, j + 1)
    };
    while i < lines.len() {
        if lines[i].trim() == "```sh,runnable" {
            let (script, next) = body(i);
            let mut k = next;
            while k < lines.len() && lines[k].trim().is_empty() {
                k += 1;
            }
            let (expected, after) = if k < lines.len() && lines[k].trim() == "```text,output" {
                let (out, after) = body(k);
                (Some(out.lines().map(str::to_string).collect()), after)
            } else {
                (None, next)
            };
            found.push(Runnable {
                file: file.to_path_buf(),
                line: i + 1,
                script,
                expected,
            });
            i = after;
        } else {
            i += 1;
        }
    }
    found
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// Whether `line` matches `pattern`, where `...` in the pattern stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let mut rest = line;
    for (n, part) in parts.iter().enumerate() {
        if n == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if n == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn the_documented_commands_run_as_documented() {
    let mut files = vec![repo().join("README.md")];
    markdown_files(&repo().join("docs/src"), &mut files);
    files.sort();
    let blocks: Vec<Runnable> = files.iter().flat_map(|f| runnables(f)).collect();
    assert!(
        blocks.len() >= 4,
        "too few runnable blocks found: {blocks:?}"
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_firehose-replay"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    for block in &blocks {
        // Each block starts afresh, in a directory holding a copy of sample-data/.
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&repo().join("sample-data"), &dir.path().join("sample-data"));
        let out = bin_command("bash")
            .args(["-e", "-c", &block.script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let at = format!("{}:{}", block.file.display(), block.line);
        assert!(
            out.status.success(),
            "{at}: exit {:?}\n{}\n{output}",
            out.status,
            block.script
        );
        if let Some(expected) = &block.expected {
            let mut lines = output.lines();
            for want in expected {
                assert!(
                    lines.any(|l| matches(want, l)),
                    "{at}: the output lacks `{want}` (in order)\n{}\n{output}",
                    block.script
                );
            }
        }
    }
}

/// A command with no FIREHOSE_REPLAY_*, AWS_* or RUST_LOG settings from the caller, as
/// `bin()` gives the binary.
fn bin_command(program: &str) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("FIREHOSE_REPLAY_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn output_patterns_match_as_documented() {
    assert!(matches("elapsed: ...", "elapsed:  0.01 s (...)"));
    assert!(matches(
        "records (3)...x.gz...",
        "records (3)\tx.gz\tpermanent"
    ));
    assert!(matches("80", "80"));
    assert!(!matches("80", "180"));
    assert!(!matches("a...b", "a c"));
}

/// `scripts/try-local.sh`, as the getting-started chapter tells a newcomer to run it: the
/// sample through local S3 (a second run skips everything), and into the local BigQuery
/// emulator with the sample's schema (every record lands, none refused) and with a table created
/// and widened from the records.
#[test]
fn try_local_runs_the_sample_against_local_s3_and_bigquery() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_firehose-replay"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let run = |mode: &str| {
        let out = bin_command("bash")
            .arg(repo().join("scripts/try-local.sh"))
            .arg(mode)
            .env("PATH", &path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "try-local.sh {mode}: {:?}\n{text}",
            out.status
        );
        text
    };
    let s3 = run("s3");
    assert!(
        s3.contains("objects:  13 (13 ok, 0 skipped by the ledger, 0 failed)"),
        "{s3}"
    );
    assert!(
        s3.contains("objects:  13 (0 ok, 13 skipped by the ledger, 0 failed)"),
        "{s3}"
    );
    assert!(s3.contains("== rows in all: 225"), "{s3}");
    let bq = run("bigquery");
    let written = "records:  186 (225 rows written, 3 record errors, 2 control messages skipped)";
    assert_eq!(bq.matches(written).count(), 2, "{bq}");
    assert!(bq.contains("  purchase\t90\n"), "{bq}");
    assert!(bq.contains("  225\t225\t13\n"), "{bq}");
}

/// The anchors a markdown file's headings get (GitHub's and mdBook's rule: lower case, spaces
/// to `-`, punctuation dropped, a repeated heading suffixed `-1`, `-2`…).
fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim().to_lowercase();
        let slug: String = title
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.push(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

/// Markdown text without its fenced blocks and inline code spans, where `](…)` is code, not
/// a link (e.g. `bucket[16](k)`).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        } else if !fence {
            for text in line.split('`').step_by(2) {
                out.push_str(text);
            }
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_link_in_the_docs_resolves() {
    let mut files = vec![repo().join("README.md")];
    markdown_files(&repo().join("docs/src"), &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = prose(&std::fs::read_to_string(file).unwrap());
        for (at, _) in text.match_indices("](") {
            let link: String = text[at + 2..]
                .chars()
                .take_while(|&c| c != ')' && !c.is_whitespace())
                .collect();
            if link.starts_with("http") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", file.display()));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&std::fs::read_to_string(&target).unwrap());
                if !heads.iter().any(|h| h == anchor) {
                    broken.push(format!("{}: {link} (no such heading)", file.display()));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

//! Local paths and names as the CLI meets them: its own output inside the replayed tree, long
//! key segments, symlinks, repeated sources, file modes, stale letters after a forced rerun.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::cli::files_under;
use crate::support::{bin, read_ndjson};

const HOUR: &str = "2026/11/25/13";

/// `work/firehose/2026/11/25/13/` with `name` holding `body`; returns the tree's root.
fn tree(work: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let root = work.join("firehose");
    std::fs::create_dir_all(root.join(HOUR)).unwrap();
    for (name, body) in files {
        std::fs::write(root.join(HOUR).join(name), body).unwrap();
    }
    root
}

fn replay(cwd: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(cwd)
        .arg("replay")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

#[test]
fn replaying_dot_never_reads_the_runs_own_output_dead_letters_or_ledger() {
    let work = tempfile::tempdir().unwrap();
    let root = tree(
        work.path(),
        &[
            ("s-1.gz", b"{\"n\":1}\n{\"n\":2}\n"),
            ("s-2.gz", b"\x1f\x8b\x08garbage"),
        ],
    );
    let ledger = "file:ledger.jsonl"; // not a dot-file: listing would find it
    for run in 0..3 {
        let out = replay(&root, &[".", "--ledger", ledger, "--force"]);
        assert_eq!(out.status.code(), Some(1), "run {run}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("objects:  2 ("), "run {run}: {stderr}");
        let mut files: Vec<String> = files_under(&root)
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                format!("{HOUR}/s-1.gz"),
                format!("{HOUR}/s-2.gz"),
                format!("dead-letter/firehose/{HOUR}/s-2.gz.object.json"),
                "ledger.jsonl".to_string(),
                format!("out/firehose/{HOUR}/s-1.gz.ndjson"),
            ],
            "run {run}: {stderr}"
        );
    }
    // A file of the run's own, named explicitly, is skipped with a warning.
    let out = replay(
        &root,
        &[
            &format!("out/firehose/{HOUR}/s-1.gz.ndjson"),
            "--ledger",
            ledger,
        ],
    );
    let stderr = ok(&out);
    assert!(stderr.contains("the run writes it"), "{stderr}");
    assert_eq!(files_under(&root.join("out")).len(), 1);
}

#[test]
fn a_key_segment_too_long_for_a_file_name_gets_a_shortened_output_name() {
    let work = tempfile::tempdir().unwrap();
    // 250 bytes: a valid local name, but `<name>.ndjson` is 257.
    let name = format!("{}.gz", "x".repeat(247));
    let root = tree(work.path(), &[(&name, b"{\"n\":1}\n")]);
    let out = replay(work.path(), &[root.to_str().unwrap()]);
    ok(&out);
    let outputs = files_under(&work.path().join("out"));
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let file = outputs[0].file_name().unwrap().to_str().unwrap();
    assert!(
        file.len() <= 255 && file.ends_with(".ndjson") && file.contains("%~"),
        "{file}"
    );
    assert_eq!(read_ndjson(&outputs[0]).len(), 1);
    // Deterministic: a forced rerun replaces the same file.
    ok(&replay(work.path(), &[root.to_str().unwrap(), "--force"]));
    assert_eq!(files_under(&work.path().join("out")), outputs);
}

#[cfg(unix)]
#[test]
fn symlinked_files_and_directories_inside_a_replayed_tree_are_followed() {
    let work = tempfile::tempdir().unwrap();
    let root = tree(work.path(), &[]);
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("14")).unwrap();
    std::fs::write(elsewhere.join("s-1.gz"), b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    std::fs::write(elsewhere.join("14/s-2.gz"), b"{\"n\":3}\n").unwrap();
    std::os::unix::fs::symlink(elsewhere.join("s-1.gz"), root.join(HOUR).join("s-1.gz")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("14"), root.join("2026/11/25/14")).unwrap();
    // A link to nothing and a loop are skipped, not fatal.
    std::os::unix::fs::symlink(work.path().join("nothing"), root.join(HOUR).join("s-0.gz"))
        .unwrap();
    std::os::unix::fs::symlink(&root, root.join("2026/11/25/loop")).unwrap();
    let out = replay(work.path(), &[root.to_str().unwrap()]);
    let stderr = ok(&out);
    let out_dir = work.path().join("out/firehose");
    assert_eq!(
        read_ndjson(&out_dir.join(format!("{HOUR}/s-1.gz.ndjson"))).len(),
        2,
        "{stderr}"
    );
    assert_eq!(
        read_ndjson(&out_dir.join("2026/11/25/14/s-2.gz.ndjson")).len(),
        1,
        "{stderr}"
    );
    assert_eq!(files_under(&out_dir).len(), 2, "{stderr}");
}

#[test]
fn an_object_named_several_times_is_replayed_once() {
    let work = tempfile::tempdir().unwrap();
    let root = tree(work.path(), &[("s-1.gz", b"{\"n\":1}\n{\"n\":2}\n")]);
    let f = root.join(HOUR).join("s-1.gz");
    let f = f.to_str().unwrap();
    let dotted = format!("{}/./{HOUR}/s-1.gz", root.display());
    let out = bin()
        .current_dir(work.path())
        .args([
            "replay",
            f,
            f,
            &dotted,
            root.to_str().unwrap(),
            "--sink",
            "stdout",
        ])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[cfg(unix)]
#[test]
fn outputs_dead_letters_and_manifests_honour_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let root = tree(
        work.path(),
        &[
            ("s-1.gz", b"{\"n\":1}\nnot json\n"),
            ("s-2.gz", b"\x1f\x8b\x08garbage"),
        ],
    );
    for (umask, mode) in [("022", 0o644), ("077", 0o600)] {
        let _ = std::fs::remove_dir_all(work.path().join("out"));
        let _ = std::fs::remove_dir_all(work.path().join("dead-letter"));
        let out = std::process::Command::new("sh")
            .current_dir(work.path())
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" replay \"$1\"",))
            .arg(env!("CARGO_BIN_EXE_firehose-replay"))
            .arg(&root)
            .env_remove("FIREHOSE_REPLAY_SINK")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files: Vec<PathBuf> = files_under(&work.path().join("out"))
            .into_iter()
            .chain(files_under(&work.path().join("dead-letter")))
            .collect();
        assert_eq!(files.len(), 3, "{files:?}");
        for f in files.iter().chain([&work.path().join("out/.ledger.jsonl")]) {
            let m = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "umask {umask}: {}", f.display());
        }
    }
}

#[test]
fn a_later_successful_forced_run_removes_stale_letters_and_redriven_rows() {
    let work = tempfile::tempdir().unwrap();
    let long = format!("{{\"n\":3,\"pad\":\"{}\"}}\n", "p".repeat(200));
    let body = format!("{{\"n\":0}}\n{{\"n\":1}}\n{{\"n\":2}}\n{long}");
    let root = tree(work.path(), &[("s-1.gz", body.as_bytes())]);
    let r = root.to_str().unwrap();
    let out_file = work
        .path()
        .join(format!("out/firehose/{HOUR}/s-1.gz.ndjson"));
    let redriven = work
        .path()
        .join(format!("out/firehose/{HOUR}/s-1.gz.redriven.ndjson"));
    let letter = work
        .path()
        .join(format!("dead-letter/firehose/{HOUR}/s-1.gz.records.json"));

    // 1. The long record fails: 3 rows and a records letter.
    ok(&replay(work.path(), &[r, "--max-record-bytes", "100"]));
    assert_eq!(read_ndjson(&out_file).len(), 3);
    assert!(letter.exists());
    // 2. A forced run that delivers every record: the letter is stale, and goes.
    ok(&replay(work.path(), &[r, "--force"]));
    assert_eq!(read_ndjson(&out_file).len(), 4);
    assert!(!letter.exists(), "stale letter kept");

    // 3. Fail again, redrive the letter (its row lands beside the output) …
    ok(&replay(
        work.path(),
        &[r, "--force", "--max-record-bytes", "100"],
    ));
    assert!(letter.exists());
    let out = bin()
        .current_dir(work.path())
        .args(["redrive", "dead-letter"])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(read_ndjson(&redriven).len(), 1);
    // … then a forced run writes all 4 rows again: the redriven copy would make 5.
    ok(&replay(work.path(), &[r, "--force"]));
    assert_eq!(read_ndjson(&out_file).len(), 4);
    assert!(
        !redriven.exists(),
        "redriven rows kept beside the new output"
    );
    assert!(!letter.exists());
}

#[test]
fn error_messages_say_each_cause_once() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let out = bin()
        .current_dir(work.path())
        .arg("backfill")
        .arg(&file)
        .args(["--from", "2026-11-25", "--to", "2026-11-25"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("is not a directory").count(), 1, "{stderr}");
}

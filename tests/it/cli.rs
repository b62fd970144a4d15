//! The binary as users run it: exit codes, summaries, determinism, the sample data.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{bin, expected, read_ndjson, sample_root};

fn backfill_sample(work: &Path) -> Output {
    bin()
        .current_dir(work)
        .arg("backfill")
        .arg(sample_root())
        .args([
            "--from",
            "2026-11-25",
            "--to",
            "2026-11-26",
            "--include-error-output",
        ])
        .output()
        .unwrap()
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(dir);
    v.sort();
    v
}

/// Files below `dir`, leaving out dot-files (the ledger, temporary files).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_sample_backfill_produces_the_documented_counts() {
    let work = tempfile::tempdir().unwrap();
    let out = backfill_sample(work.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let exp = expected();
    let per_object = exp["per_object"].as_object().unwrap();

    // One output file per sample object, with exactly the documented rows.
    let outputs = files_under(&work.path().join("out/firehose"));
    assert_eq!(outputs.len(), per_object.len(), "{outputs:?}");
    let mut ids = std::collections::HashSet::new();
    for (key, counts) in per_object {
        let rows = read_ndjson(
            &work
                .path()
                .join("out/firehose")
                .join(format!("{key}.ndjson")),
        );
        assert_eq!(rows.len() as u64, counts["rows"].as_u64().unwrap(), "{key}");
        for r in rows {
            assert!(
                ids.insert(r["_row_id"].as_str().unwrap().to_string()),
                "duplicate id in {key}"
            );
        }
    }
    assert_eq!(ids.len() as u64, exp["rows"].as_u64().unwrap());

    let summary = format!(
        "objects:  {} ({} ok, 0 skipped by the ledger, 0 failed)",
        exp["objects"], exp["objects"]
    );
    assert!(stderr.contains(&summary), "{stderr}");
    let records = format!(
        "records:  {} ({} rows written, {} record errors, {} control messages skipped)",
        exp["records"], exp["rows"], exp["record_errors"], exp["control_messages"]
    );
    assert!(stderr.contains(&records), "{stderr}");

    // The malformed records are in the dead-letter directory.
    let dead: u64 = files_under(&work.path().join("dead-letter"))
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["records"].as_array().map_or(0, |a| a.len() as u64)
        })
        .sum();
    assert_eq!(dead, exp["record_errors"].as_u64().unwrap());
}

#[test]
fn running_the_main_command_twice_gives_byte_identical_output() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert!(backfill_sample(a.path()).status.success());
    assert!(backfill_sample(b.path()).status.success());
    assert!(
        backfill_sample(b.path()).status.success(),
        "a rerun over existing output"
    );
    let fa = files_under(&a.path().join("out"));
    let fb = files_under(&b.path().join("out"));
    assert_eq!(fa.len(), fb.len());
    assert!(!fa.is_empty());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(
            x.strip_prefix(a.path()).unwrap(),
            y.strip_prefix(b.path()).unwrap()
        );
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
}

#[test]
fn replaying_one_file_gives_the_same_rows_as_the_backfill() {
    let exp = expected();
    let (key, _) = exp["per_object"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with(".gz"))
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    assert!(backfill_sample(work.path()).status.success());
    let single = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(single.path())
        .arg("replay")
        .arg(sample_root().join(key))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = format!("out/firehose/{key}.ndjson");
    assert_eq!(
        std::fs::read(work.path().join(&path)).unwrap(),
        std::fs::read(single.path().join(&path)).unwrap()
    );
}

#[test]
fn a_failed_object_exits_1_with_its_reason_and_the_rest_still_lands() {
    let t = tempfile::tempdir().unwrap();
    let hour = t.path().join("b/2026/11/25/22");
    std::fs::create_dir_all(&hour).unwrap();
    std::fs::write(hour.join("a-1.gz"), [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    std::fs::write(hour.join("b-1"), b"{\"ok\":true}\n").unwrap();
    let out = bin()
        .current_dir(t.path())
        .args([
            "backfill",
            "b",
            "--from",
            "2026-11-25T22",
            "--to",
            "2026-11-25T22",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed: b/2026/11/25/22/a-1.gz"),
        "{stderr}"
    );
    assert!(stderr.contains("gzip data ends early"), "{stderr}");
    assert_eq!(
        read_ndjson(&t.path().join("out/b/2026/11/25/22/b-1.ndjson")).len(),
        1
    );
    let letter: Value = serde_json::from_slice(
        &std::fs::read(
            t.path()
                .join("dead-letter/b/2026/11/25/22/a-1.gz.object.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(letter["stage"], "decompress");
    assert_eq!(letter["class"], "permanent");
}

#[test]
fn usage_errors_exit_2() {
    let out = bin()
        .args(["backfill", "x", "--from", "2026-11-25"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["replay", "x", "--framing", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown framing `xml`"));
    let out = bin()
        .args([
            "backfill",
            ".",
            "--from",
            "2026-11-26",
            "--to",
            "2026-11-25",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is before --from"));
    // An endpoint left empty (an unset shell variable) or not a URL is a usage error, not a
    // run that fails to reach Google.
    for value in ["", "localhost:9050"] {
        let out = bin()
            .args([
                "replay",
                "x",
                "--sink",
                "bigquery:p.d.t",
                "--bigquery-storage-endpoint",
                value,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{value:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--bigquery-storage-endpoint"));
    }
}

#[test]
fn flags_can_come_from_the_environment() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("x"), b"{\"a\":1}\n").unwrap();
    let out = bin()
        .current_dir(t.path())
        .env("FIREHOSE_REPLAY_SINK", "stdout")
        .env("FIREHOSE_REPLAY_ROW_ID_COLUMN", "")
        .args(["replay", "x"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"a\":1}\n");
}

#[test]
fn metadata_columns_and_a_field_map_shape_every_row() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("arch/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let name = "s-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e";
    std::fs::write(
        dir.join(name),
        "{\"ts\":\"2026-11-25T13:00:00Z\",\"debug\":1,\"detail\":{\"id\":\"e-1\",\"k\":[1]}}\n[1]\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("map.json"),
        r#"{"rename":{"detail.id":"event_id"},"drop":["debug"],"json":["detail"]}"#,
    )
    .unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "arch", "--map", "map.json"])
        .args([
            "--metadata-columns",
            "source_uri,record_ordinal,ingested_at",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_ndjson(
        &work
            .path()
            .join(format!("out/arch/2026/11/25/13/{name}.ndjson")),
    );
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r["event_id"], "e-1");
    assert_eq!(
        r["detail"], "{\"k\":[1]}",
        "a JSON column is sent as JSON text"
    );
    assert!(r.get("debug").is_none());
    assert_eq!(r["_source_uri"], format!("s3://arch/2026/11/25/13/{name}"));
    assert_eq!(r["_record_ordinal"], 0);
    assert!(r["_ingested_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rows[1]["value"], serde_json::json!([1]));
    assert_eq!(rows[1]["_record_ordinal"], 1);
    // A bad map is a usage error.
    std::fs::write(work.path().join("bad.json"), r#"{"renames":{}}"#).unwrap();
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "arch", "--map", "bad.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a mapping"));
    // The same map given inline, as its help shows (or through FIREHOSE_REPLAY_MAP, as a Lambda
    // function has no file to point at), gives the same rows.
    let inline = r#" {"rename":{"detail.id":"event_id"},"drop":["debug"],"json":["detail"]}"#;
    for (flag, env) in [(Some(inline), None), (None, Some(inline))] {
        let mut cmd = bin();
        cmd.current_dir(work.path())
            .args(["replay", "arch", "--sink", "stdout", "--ledger", "none"]);
        if let Some(m) = flag {
            cmd.args(["--map", m]);
        }
        if let Some(m) = env {
            cmd.env("FIREHOSE_REPLAY_MAP", m);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first: serde_json::Value =
            serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["event_id"], "e-1");
        assert_eq!(first["detail"], "{\"k\":[1]}");
        assert!(first.get("debug").is_none());
    }
    let out = bin()
        .current_dir(work.path())
        .args(["replay", "arch", "--map", r#"{"renames":{}}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--map: not a mapping"));
}

/// `objects` newline-delimited objects of `rows` records each, in one archive hour below
/// `work/b`; returns their keys.
fn one_hour_archive(work: &Path, objects: usize, rows: usize) -> Vec<String> {
    let hour = work.join("b/2026/11/25/22");
    std::fs::create_dir_all(&hour).unwrap();
    (0..objects)
        .map(|i| {
            let name = format!("obj-{i:03}");
            std::fs::write(hour.join(&name), crate::support::ndjson(rows)).unwrap();
            format!("2026/11/25/22/{name}")
        })
        .collect()
}

/// `backfill b` of the hour [`one_hour_archive`] fills.
fn backfill_hour(work: &Path) -> std::process::Command {
    let mut c = bin();
    c.current_dir(work).args([
        "backfill",
        "b",
        "--from",
        "2026-11-25T22",
        "--to",
        "2026-11-25T22",
    ]);
    c
}

/// Waits for `child` at most `limit`; kills it and fails the test past that.
fn wait_at_most(
    child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.wait().unwrap());
    });
    match rx.recv_timeout(limit) {
        Ok(status) => status,
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the run did not end within {limit:?}");
        }
    }
}

/// Reads a child's stream to the end on a thread (so the child never blocks on it).
fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

#[test]
fn a_closed_stderr_drops_log_lines_and_every_object_is_still_processed() {
    let work = tempfile::tempdir().unwrap();
    let keys = one_hour_archive(work.path(), 8, 500);
    let mut child = backfill_hour(work.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads stderr: every log line meets a broken pipe (`… 2>&1 | head -1`).
    drop(child.stderr.take());
    let status = wait_at_most(child, std::time::Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{status:?} (101 is a panic)");
    for key in &keys {
        let rows = read_ndjson(&work.path().join(format!("out/b/{key}.ndjson")));
        assert_eq!(rows.len(), 500, "{key}");
    }
    assert!(files_under(&work.path().join("dead-letter")).is_empty());
}

#[test]
fn a_closed_stdout_ends_the_run_at_once_with_141_and_no_dead_letters() {
    use std::io::BufRead;
    let work = tempfile::tempdir().unwrap();
    // Far more rows than a pipe buffers, so the run is mid-way when the reader goes.
    one_hour_archive(work.path(), 60, 2000);
    let started = std::time::Instant::now();
    let mut child = backfill_hour(work.path())
        .args(["--sink", "stdout", "--concurrency", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let row: Value = serde_json::from_str(&first).unwrap();
    assert!(row["n"].is_u64(), "{first}");
    drop(stdout); // `| head -1`
    let status = wait_at_most(child, std::time::Duration::from_secs(10));
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!stderr.contains("retrying"), "{stderr}");
    assert!(!stderr.contains("failed"), "{stderr}");
    assert!(
        files_under(&work.path().join("dead-letter")).is_empty(),
        "{:?}",
        files_under(&work.path().join("dead-letter"))
    );
}

#[test]
fn one_ctrl_c_exits_130_even_when_every_object_was_already_in_flight() {
    use std::io::BufRead;
    let work = tempfile::tempdir().unwrap();
    // Four objects, each over the stdout sink's 1 MiB buffer, all started at once: each
    // blocks on stdout until the test reads it, so all four are in flight when Ctrl-C comes.
    let (objects, rows) = (4, 30_000);
    one_hour_archive(work.path(), objects, rows);
    let mut child = backfill_hour(work.path())
        .args(["--sink", "stdout", "--concurrency", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"n\":"), "{first}");
    // Rows on stdout: the objects are being written.
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest = drain(stdout);
    let status = wait_at_most(child, std::time::Duration::from_secs(120));
    let (stderr, rest) = (stderr.join().unwrap(), rest.join().unwrap());
    assert_eq!(status.code(), Some(130), "{stderr}");
    // The objects in flight were finished, not dropped.
    assert_eq!(1 + rest.lines().count(), objects * rows, "{stderr}");
    assert!(
        stderr.contains("interrupted: finishing the objects in flight"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("objects:  {objects} ({objects} ok")),
        "{stderr}"
    );
}

#[test]
fn boolean_environment_variables_take_the_usual_spellings() {
    let work = tempfile::tempdir().unwrap();
    one_hour_archive(work.path(), 1, 3);
    assert!(backfill_hour(work.path())
        .output()
        .unwrap()
        .status
        .success());
    // The ledger has the object as done: FORCE decides whether it is processed again.
    for (value, forced) in [
        ("1", true),
        ("TRUE", true),
        ("yes", true),
        ("On", true),
        ("0", false),
        ("false", false),
        ("NO", false),
        ("off", false),
    ] {
        let out = backfill_hour(work.path())
            .env("FIREHOSE_REPLAY_FORCE", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{value}: {stderr}");
        let summary = if forced {
            "objects:  1 (1 ok, 0 skipped by the ledger"
        } else {
            "objects:  1 (0 ok, 1 skipped by the ledger"
        };
        assert!(stderr.contains(summary), "{value}: {stderr}");
    }
    // A subcommand's flag too.
    std::fs::create_dir_all(work.path().join("b/processing-failed/2026/11/25/22")).unwrap();
    std::fs::write(
        work.path().join("b/processing-failed/2026/11/25/22/err-1"),
        b"{}\n",
    )
    .unwrap();
    let out = backfill_hour(work.path())
        .arg("--dry-run")
        .env("FIREHOSE_REPLAY_INCLUDE_ERROR_OUTPUT", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("processing-failed/2026/11/25/22/err-1"));
    // Anything else is a usage error that says what is accepted.
    let out = backfill_hour(work.path())
        .env("FIREHOSE_REPLAY_FORCE", "maybe")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'maybe'"), "{stderr}");
    assert!(
        stderr.contains("1, 0, true, false, yes, no, on, off"),
        "{stderr}"
    );
}

#[test]
fn a_flag_on_the_command_line_wins_over_an_invalid_environment_variable() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("x"), b"{\"a\":1}\n").unwrap();
    let out = bin()
        .current_dir(t.path())
        .env("FIREHOSE_REPLAY_SINK", "bogus")
        .env("FIREHOSE_REPLAY_FRAMING", "xml")
        .env("FIREHOSE_REPLAY_CONCURRENCY", "0")
        .args(["replay", "x", "--sink", "stdout", "--row-id-column="])
        .args(["--framing", "newline", "--concurrency=2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"a\":1}\n");
    // Without the flag the variable counts, and is checked.
    let out = bin()
        .current_dir(t.path())
        .env("FIREHOSE_REPLAY_SINK", "bogus")
        .args(["replay", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sink `bogus`"));
}

#[test]
fn zero_counts_and_unknown_log_levels_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    one_hour_archive(work.path(), 1, 3);
    for (args, env, message) in [
        (
            &["--concurrency", "0"][..],
            None,
            "'--concurrency <CONCURRENCY>': must be at least 1",
        ),
        (
            &["--max-attempts", "0"][..],
            None,
            "'--max-attempts <MAX_ATTEMPTS>': must be at least 1",
        ),
        (
            &["--batch-rows", "0"][..],
            None,
            "'--batch-rows <BATCH_ROWS>': must be at least 1",
        ),
        (
            &[][..],
            Some(("FIREHOSE_REPLAY_MAX_ATTEMPTS", "0")),
            "must be at least 1",
        ),
        (
            &["--log-level", "verbose"][..],
            None,
            "`verbose` is not a log level",
        ),
        (
            &["--log-level", "info,h2=loud"][..],
            None,
            "not a tracing filter",
        ),
    ] {
        let mut c = backfill_hour(work.path());
        c.args(args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(
        !work.path().join("out").exists(),
        "nothing runs on a usage error"
    );
    for level in ["DEBUG", "warn", "info,h2=debug", "firehose_replay=trace"] {
        let out = backfill_hour(work.path())
            .args(["--dry-run", "--log-level", level])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{level}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn from_and_to_take_rfc3339_hours_and_refuse_minutes() {
    let work = tempfile::tempdir().unwrap();
    one_hour_archive(work.path(), 2, 1);
    let plan = |from: &str, to: &str| {
        bin()
            .current_dir(work.path())
            .args(["backfill", "b", "--dry-run", "--from", from, "--to", to])
            .output()
            .unwrap()
    };
    for (from, to) in [
        ("2026-11-25T22:00:00Z", "2026-11-25T22:00:00Z"),
        ("2026-11-25T23:00:00+01:00", "2026-11-25T22:00:00.000Z"),
    ] {
        let out = plan(from, to);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{from}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("plan: 1 hours (2026-11-25T22 .. 2026-11-25T22), 2 objects"),
            "{from} {to}: {stdout}"
        );
    }
    for (from, to) in [
        ("2026-11-25T22:30:00Z", "2026-11-25T23"),
        ("2026-11-25T22", "2026-11-25T22:00:01Z"),
    ] {
        let out = plan(from, to);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{from} {to}: {stderr}");
        assert!(stderr.contains("is not on the hour"), "{stderr}");
        assert!(stderr.contains("whole UTC hours"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn help_describes_the_bigquery_sink_by_its_modes() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!help.contains("streaming inserts"), "{help}");
    assert!(
        help.contains("bigquery:PROJECT.DATASET.TABLE (written as --bigquery-mode says: storage-write by default)"),
        "{help}"
    );
}

#[test]
fn replay_with_a_source_root_gives_a_file_the_identity_a_backfill_of_that_root_gives_it() {
    let work = tempfile::tempdir().unwrap();
    let key = "events/2026/12/01/10/s-1-2026-12-01-10-00-00-x.json";
    let file = work.path().join("small").join(key);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"{\"a\":1}\n{\"a\":2}\n").unwrap();
    let backfill = bin()
        .current_dir(work.path())
        .args(["backfill", "small", "--from", "2026-12-01T10", "--to"])
        .args([
            "2026-12-01T10",
            "--layout",
            "events/!{timestamp:yyyy/MM/dd/HH}/",
        ])
        .output()
        .unwrap();
    assert!(
        backfill.status.success(),
        "{}",
        String::from_utf8_lossy(&backfill.stderr)
    );
    let path = format!("out/small/{key}.ndjson");
    let backfilled = std::fs::read(work.path().join(&path)).unwrap();
    assert_eq!(backfilled.split(|&b| b == b'\n').count(), 3);

    let single = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(single.path())
        .arg("replay")
        .arg("--source-root")
        .arg(work.path().join("small"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Same bucket, key and row IDs, byte for byte.
    assert_eq!(
        std::fs::read(single.path().join(&path)).unwrap(),
        backfilled
    );

    // A file outside the root is a usage error, not an object of another bucket.
    let out = bin()
        .current_dir(single.path())
        .arg("replay")
        .arg("--source-root")
        .arg(work.path().join("small/events/2026"))
        .arg(work.path().join("small"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not below --source-root"));
}

//! Issue 25: what another local user, or someone who can write to a bucket or queue the tool
//! reads, must not be able to do — each test plants what such a person would and shows it is
//! not followed.

use std::path::Path;

use crate::moto::{self, Moto};
use crate::support::{bin, gzip, key_on_one_of, utc_days_since};

const KEY: &str =
    "2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";

/// A local bucket `arch/` below `work` with one object of three records, one not JSON.
fn archive_with_a_bad_record(work: &Path) {
    let p = work.join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, gzip(b"{\"n\":0}\nnot json\n{\"n\":2}\n")).unwrap();
}

/// Everything below `dir`, directories included (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .map(|e| e.unwrap().path().display().to_string())
        .collect()
}

#[test]
fn a_remote_dead_letter_is_spooled_where_no_other_user_can_plant_or_read_anything() {
    let moto = Moto::start();
    let s3 = moto.s3();
    moto::rt().block_on(moto::create_bucket(&s3, "dlq-bucket"));
    let work = tempfile::tempdir().unwrap();
    archive_with_a_bad_record(work.path());
    // The shared temp directory, where another user got there first: the directory the old
    // spool path started with (`$TMPDIR/<bucket>`) is theirs, a symlink to a directory they read.
    let tmp = work.path().join("tmp");
    let theirs = work.path().join("attacker");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::symlink(&theirs, tmp.join("arch")).unwrap();

    let started = chrono::Utc::now();
    let out = bin()
        .current_dir(work.path())
        .envs(moto.env())
        .env("TMPDIR", &tmp)
        .args(["replay", "arch", "--sink", "ndjson:out", "--ledger", "none"])
        .args(["--dead-letter", "s3://dlq-bucket/letters/"])
        .args(["--max-record-error-ratio", "off"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // Nothing was written through their directory, and nothing was left in the temp directory.
    assert_eq!(entries(&theirs), Vec::<String>::new(), "{stderr}");
    assert_eq!(
        entries(&tmp),
        vec![tmp.join("arch").display().to_string()],
        "only the planted symlink is left"
    );
    // And the letter arrived whole, below the day it was written.
    let listed = moto.python(
        r#"
import boto3
for o in boto3.client("s3").list_objects_v2(Bucket="dlq-bucket", Prefix="letters/")["Contents"]:
    print(o["Key"])
"#,
    );
    let keys: Vec<&str> = listed.lines().collect();
    let suffix = format!("/arch/{KEY}.records.json");
    let key = key_on_one_of(&keys, "letters/", &utc_days_since(started), &suffix);
    let letter = moto.python(&format!(
        r#"
import boto3
print(boto3.client("s3").get_object(Bucket="dlq-bucket", Key="{key}")["Body"].read().decode())
"#
    ));
    let letter: serde_json::Value = serde_json::from_str(letter.trim()).unwrap();
    let records = letter["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{letter}");
    assert_eq!(records[0]["ordinal"], 1);
}

/// Every path below `dir` whose name contains `needle`.
fn named(dir: &Path, needle: &str) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|p| p.contains(needle))
        .collect()
}

const K1: &str =
    "events/2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";
const K2: &str = "events/dt=2026-11-25/h=13/orders a+bü.gz";

#[test]
fn an_event_whose_bucket_is_not_a_bucket_name_reads_and_writes_nothing_outside_its_directories() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda");
    for fixture in [
        "s3-notification.json",
        "sqs-s3.json",
        "sns-s3.json",
        "eventbridge-object-created.json",
        "sqs-eventbridge-s3.json",
        "s3-batch-2.0.json",
    ] {
        for bucket in ["srcb/../../../ESCAPED-DL", ".."] {
            let work = tempfile::tempdir().unwrap();
            let base = work.path().join("a/b");
            // What `..` would reach from `--buckets a/b/buckets`: files no event may name.
            for key in [K1, K2] {
                let p = work.path().join("a/b").join(key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, b"{\"secret\":1}\n").unwrap();
            }
            std::fs::create_dir_all(base.join("buckets/firehose-archive")).unwrap();
            let text = std::fs::read_to_string(fixtures.join(fixture))
                .unwrap()
                .replace("firehose-archive", bucket);
            let event = work.path().join("event.json");
            std::fs::write(&event, text).unwrap();
            let out = bin()
                .current_dir(&base)
                .arg("invoke")
                .arg("--event")
                .arg(&event)
                .arg("--buckets")
                .arg(base.join("buckets"))
                .env("FIREHOSE_REPLAY_SINK", "ndjson:out")
                .env("FIREHOSE_REPLAY_DEAD_LETTER", "dir:dead")
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                named(work.path(), "ESCAPED"),
                Vec::<String>::new(),
                "{fixture} {bucket}: {said}"
            );
            assert_eq!(
                named(&base.join("out"), ".ndjson"),
                Vec::<String>::new(),
                "{fixture} {bucket}: nothing is read from outside --buckets: {said}"
            );
            assert!(said.contains("refused"), "{fixture} {bucket}: {said}");
        }
    }
}

/// A base64 records letter for `bucket/key` holding the record `{"planted":1}`.
fn records_letter(bucket: &str, key: &str, source: serde_json::Value) -> String {
    use base64::Engine;
    serde_json::json!({
        "version": 1,
        "object": {"bucket": bucket, "key": key, "etag": null, "version_id": null},
        "stage": "parse", "class": "permanent", "error": "e", "attempts": 1,
        "first_failed_at": "2026-11-25T13:00:00.000Z",
        "last_failed_at": "2026-11-25T13:00:00.000Z",
        "source": source,
        "records": [{"ordinal": 0, "byte_offset": 0, "stage": "parse", "error": "e",
                     "raw": base64::engine::general_purpose::STANDARD.encode(b"{\"planted\":1}")}]
    })
    .to_string()
}

#[test]
fn redrive_refuses_a_letter_whose_bucket_would_leave_the_output_directory() {
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("a/b");
    let dead = base.join("dead/planted");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(
        dead.join("x.records.json"),
        records_letter(
            "srcb/../../../ESCAPED",
            "k",
            serde_json::json!({"kind": "s3"}),
        ),
    )
    .unwrap();
    let out = bin()
        .current_dir(&base)
        .args([
            "redrive",
            "dir:dead",
            "--sink",
            "ndjson:out",
            "--ledger",
            "none",
        ])
        .args(["--dead-letter", "dir:dead"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(
        named(work.path(), "ESCAPED"),
        Vec::<String>::new(),
        "{stderr}"
    );
    assert_eq!(named(&base, ".ndjson"), Vec::<String>::new(), "{stderr}");
}

#[test]
fn redrive_reads_a_local_directory_named_by_a_remote_letter_only_when_it_is_the_source_root() {
    let moto = Moto::start();
    let s3 = moto.s3();
    moto::rt().block_on(moto::create_bucket(&s3, "dlq-bucket"));
    let work = tempfile::tempdir().unwrap();
    // A file only this host's user should read, and a letter in the (remote) dead-letter
    // prefix, planted by someone who may write there, saying its object is that file.
    let root = work.path().join("private");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("secret.json"), b"{\"secret\":1}\n").unwrap();
    let root = root.canonicalize().unwrap();
    let letter = serde_json::json!({
        "version": 1,
        "object": {"bucket": "private", "key": "secret.json", "etag": null, "version_id": null},
        "stage": "fetch", "class": "permanent", "error": "e", "attempts": 1,
        "first_failed_at": "2026-11-25T13:00:00.000Z",
        "last_failed_at": "2026-11-25T13:00:00.000Z",
        "source": {"kind": "local", "root": root},
    });
    moto::rt().block_on(moto::put(
        &s3,
        "dlq-bucket",
        "letters/2026/11/25/private/secret.json.object.json",
        letter.to_string().into_bytes(),
    ));
    let redrive = |extra: &[&str]| {
        bin()
            .current_dir(work.path())
            .envs(moto.env())
            .args(["redrive", "s3://dlq-bucket/letters/"])
            .args(["--sink", "ndjson:out", "--ledger", "none"])
            .args(["--dead-letter", "dir:dead"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = redrive(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains(&root.display().to_string()),
        "the refusal names the root: {stderr}"
    );
    assert_eq!(
        named(&work.path().join("out"), ".ndjson"),
        Vec::<String>::new(),
        "{stderr}"
    );
    // The same letter, with that directory given as --source-root: read from it.
    let out = redrive(&["--source-root", root.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        named(&work.path().join("out"), "secret.json.ndjson").len(),
        1,
        "{stderr}"
    );
}

mod health {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use firehose_replay::worker::health::{serve_with, Limits};
    use firehose_replay::worker::metrics::Metrics;
    use tokio_util::sync::CancellationToken;

    /// A served endpoint with `limits`, on its own runtime (dropped with it).
    fn start(limits: Limits) -> (tokio::runtime::Runtime, SocketAddr) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let addr = rt
            .block_on(serve_with(
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(Metrics::new().unwrap()),
                CancellationToken::new(),
                limits,
            ))
            .unwrap();
        (rt, addr)
    }

    /// Whether the server closed `s` before `deadline` (whatever it sent first).
    fn closed_by(mut s: &TcpStream, deadline: Instant) -> bool {
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return false;
                    }
                }
                Err(_) => return true,
            }
        }
    }

    fn healthz(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_flood_of_idle_connections_is_capped_and_a_probe_still_gets_through() {
        let (_rt, addr) = start(Limits {
            header_read: Duration::from_secs(60),
            connection: Duration::from_secs(60),
            max_connections: 8,
        });
        let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let answer = healthz(addr);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
            "{answer}"
        );
        // Long before any timeout, all but the newest few were closed to make room.
        let deadline = Instant::now() + Duration::from_secs(10);
        let closed = idle.iter().filter(|s| closed_by(s, deadline)).count();
        assert!(
            closed >= 40 - 8,
            "only {closed} of 40 idle connections closed"
        );
    }

    #[test]
    fn a_client_that_sends_nothing_or_trickles_its_headers_is_closed_after_the_timeout() {
        let (_rt, addr) = start(Limits {
            header_read: Duration::from_millis(500),
            connection: Duration::from_secs(60),
            max_connections: 64,
        });
        let silent = TcpStream::connect(addr).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        let mut writer = slow.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            // One header byte every 100 ms, for up to 15 s or until the server hangs up.
            for _ in 0..150 {
                if writer.write_all(b"X").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        assert!(
            closed_by(&slow, deadline),
            "the slowloris connection stays open"
        );
        assert!(
            closed_by(&silent, deadline),
            "the silent connection stays open"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "closed before the timeout"
        );
        drop(slow);
        trickle.join().unwrap();
        // And the endpoint still answers.
        assert!(healthz(addr).starts_with("HTTP/1.1 200"));
    }
}

#[test]
fn trace_logging_does_not_print_what_is_uploaded_to_s3() {
    use base64::Engine;
    let moto = Moto::start();
    let s3 = moto.s3();
    moto::rt().block_on(moto::create_bucket(&s3, "dlq-bucket"));
    let work = tempfile::tempdir().unwrap();
    let p = work.path().join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, gzip(b"{\"n\":0}\nSECRET-RECORD-1234 not json\n")).unwrap();
    let out = bin()
        .current_dir(work.path())
        .envs(moto.env())
        .args(["replay", "arch", "--sink", "ndjson:out", "--ledger", "none"])
        .args(["--dead-letter", "s3://dlq-bucket/letters/"])
        .args(["--max-record-error-ratio", "off", "--log-level", "trace"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("object done"), "logging is on: {stderr}");
    let raw = base64::engine::general_purpose::STANDARD.encode(b"SECRET-RECORD-1234 not json");
    assert!(
        !stderr.contains(&raw[..20]) && !stderr.contains("SECRET-RECORD"),
        "the dead letter's contents are in the log"
    );
}

#[test]
fn credentials_on_the_command_line_and_a_token_sent_in_clear_are_warned_about() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("empty")).unwrap();
    let key = r#"{"type":"service_account"}"#;
    // The run stops at once (--ledger none is refused in this mode): the warnings come first.
    let run = |cmd: &mut std::process::Command| {
        let out = cmd
            .current_dir(work.path())
            .args([
                "replay",
                "empty",
                "--sink",
                "bigquery:proj-x.d.t",
                "--ledger",
                "none",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(bin()
        .args(["--gcp-credentials-json", key])
        .args(["--bigquery-endpoint", "http://10.0.0.5:9050"]));
    assert!(
        stderr.contains("--gcp-credentials-json on the command line is visible"),
        "{stderr}"
    );
    assert!(
        stderr.contains("plain http:// to another host") && stderr.contains("10.0.0.5"),
        "{stderr}"
    );
    // The same key from the environment, to a local emulator: nothing to say.
    let stderr = run(bin()
        .env("FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON", key)
        .args(["--bigquery-endpoint", "http://127.0.0.1:9050"]));
    assert!(!stderr.contains("WARN"), "{stderr}");
}

#[test]
fn a_symlink_planted_in_the_output_tree_or_in_the_ledger_s_place_is_not_followed() {
    let work = tempfile::tempdir().unwrap();
    archive_with_a_bad_record(work.path());
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(work.path().join("out")).unwrap();
    std::fs::create_dir_all(work.path().join("dl")).unwrap();
    // The bucket's directory in the output and dead-letter trees, and the ledger file.
    std::os::unix::fs::symlink(&elsewhere, work.path().join("out/arch")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, work.path().join("dl/arch")).unwrap();
    let theirs = work.path().join("theirs.txt");
    std::fs::write(&theirs, b"theirs\n").unwrap();
    std::os::unix::fs::symlink(&theirs, work.path().join("ledger.jsonl")).unwrap();

    let run = |ledger: &str| {
        bin()
            .current_dir(work.path())
            .args(["replay", "arch", "--sink", "ndjson:out", "--ledger", ledger])
            .args(["--dead-letter", "dir:dl", "--max-record-error-ratio", "off"])
            .output()
            .unwrap()
    };
    let out = run("none");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(entries(&elsewhere), Vec::<String>::new(), "{stderr}");

    let out = run("file:ledger.jsonl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(std::fs::read(&theirs).unwrap(), b"theirs\n", "{stderr}");
}

#[test]
fn a_remote_dead_letter_being_spooled_has_no_name_and_a_killed_run_leaves_nothing() {
    let moto = Moto::start();
    let s3 = moto.s3();
    moto::rt().block_on(moto::create_bucket(&s3, "dlq-bucket"));
    let work = tempfile::tempdir().unwrap();
    // Enough refused records that the letter is still being spooled when we look.
    let p = work.path().join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let bad: Vec<u8> = b"not json at all\n".repeat(1_000_000);
    std::fs::write(p, gzip(&bad)).unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = bin()
        .current_dir(work.path())
        .envs(moto.env())
        .env("TMPDIR", &tmp)
        .args(["replay", "arch", "--sink", "ndjson:out", "--ledger", "none"])
        .args(["--dead-letter", "s3://dlq-bucket/letters/"])
        .args(["--max-record-error-ratio", "off"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The spool, as the process holds it: found through its descriptors.
    let fds = format!("/proc/{}/fd", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let spool = loop {
        let held = std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|l| l.display().to_string())
            .find(|l| l.starts_with(&tmp.display().to_string()));
        if let Some(l) = held {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the run never held a spool file"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let listed = entries(&tmp);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        spool.ends_with("(deleted)"),
        "the spool has a name: {spool}"
    );
    assert_eq!(listed, Vec::<String>::new(), "while spooling");
    assert_eq!(entries(&tmp), Vec::<String>::new(), "after the kill");
}

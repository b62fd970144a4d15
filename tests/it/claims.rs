//! Fenced, renewed claims (S3 ledger), with the real binary against moto: a worker stopped
//! (SIGSTOP) past its claim's TTL loses the claim to another worker and commits nothing of those
//! objects when it resumes; a live worker whose object runs longer than the TTL keeps its claim.
//!
//! Worker 1 reads its objects through a throttling TCP proxy in front of moto, so each of its
//! objects takes seconds whatever the machine's load: it is caught mid-object, holding claims,
//! by polling the ledger (no fixed sleeps).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::files_under;
use crate::moto::{self, Moto};
use crate::support::{bin, gzip, read_ndjson};

const BUCKET: &str = "claims";
const LEDGER: &str = "s3://claims/_ledger/";

/// A TCP proxy to `upstream` that passes responses at `bytes_per_sec` per connection (requests
/// unthrottled). Its threads live as long as the test process.
pub(crate) fn throttling_proxy(upstream: &str, bytes_per_sec: usize) -> String {
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let chunk = (bytes_per_sec / 20).max(1);
                let mut buf = vec![0u8; chunk];
                loop {
                    let n = match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs_f64(n as f64 / bytes_per_sec as f64));
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    format!("http://{addr}")
}

/// `n` objects of `rows` incompressible rows each (so their gzip is as large as their rows).
fn put_objects(moto: &Moto, n: usize, rows: usize) -> BTreeMap<String, usize> {
    let rt = moto::rt();
    let s3 = moto.s3();
    let mut expected = BTreeMap::new();
    rt.block_on(async {
        moto::create_bucket(&s3, BUCKET).await;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..n {
            let mut body = String::new();
            for j in 0..rows {
                let mut pad = String::with_capacity(96);
                for _ in 0..6 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    pad.push_str(&format!("{x:016x}"));
                }
                body.push_str(&format!("{{\"obj\":{i},\"n\":{j},\"pad\":\"{pad}\"}}\n"));
            }
            let key = format!("2026/11/25/13/s-1-{i:03}.gz");
            moto::put(&s3, BUCKET, &key, gzip(body.as_bytes())).await;
            expected.insert(format!("s-1-{i:03}.gz.ndjson"), rows);
        }
    });
    expected
}

struct Marker {
    key: String,
    body: serde_json::Value,
}

/// The ledger's markers (claims with their bodies).
fn markers(moto: &Moto) -> Vec<Marker> {
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        let l = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("_ledger/")
            .send()
            .await
            .unwrap();
        let mut out = Vec::new();
        for o in l.contents() {
            let key = o.key().unwrap().to_string();
            let body = if key.ends_with(".claim") {
                match s3.get_object().bucket(BUCKET).key(&key).send().await {
                    Ok(r) => {
                        let b = r.body.collect().await.unwrap().into_bytes();
                        serde_json::from_slice(&b).unwrap_or_default()
                    }
                    Err(_) => continue, // released meanwhile
                }
            } else {
                serde_json::Value::Null
            };
            out.push(Marker { key, body });
        }
        out
    })
}

fn count(m: &[Marker], suffix: &str) -> usize {
    m.iter().filter(|m| m.key.ends_with(suffix)).count()
}

fn worker(
    moto: &Moto,
    endpoint: &str,
    work: &Path,
    ttl: &str,
    log: &Path,
    sink: &[String],
) -> Command {
    let mut c = bin();
    c.current_dir(work)
        .envs(moto.env())
        .env("AWS_ENDPOINT_URL", endpoint)
        .args([
            "backfill",
            &format!("s3://{BUCKET}/"),
            "--from",
            "2026-11-25T13",
            "--to",
            "2026-11-25T13",
            "--ledger",
            LEDGER,
            "--claim-ttl-secs",
            ttl,
            "--concurrency",
            "2",
        ])
        .args(sink)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    c
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for `cond`, polling; panics with `what` after `secs`.
pub(crate) fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Row counts per output file below `dir/out/claims`, and any dot-files (temporary files) left.
fn outputs(dir: &Path) -> (BTreeMap<String, usize>, Vec<PathBuf>) {
    let root = dir.join("out").join(BUCKET);
    let rows = files_under(&root)
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read_ndjson(&p).len(),
            )
        })
        .collect();
    let mut hidden = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with('.') {
                hidden.push(e.path());
            }
        }
    }
    (rows, hidden)
}

fn expires_at(m: &Marker) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(m.body["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// What the stop-and-take-over scenario left: the two workers' work dirs.
struct TakeOver {
    a: tempfile::TempDir,
    /// The other workers' work dirs.
    takers: Vec<tempfile::TempDir>,
    /// Claims worker 2 took over.
    taken: usize,
    worker1_ok: bool,
    err1: String,
}

/// 4 objects (see [`put_objects`]); worker 1 (through the slow proxy) is stopped holding claims
/// until they lapse, `takers` other workers take them over and finish everything, worker 1
/// resumes and must fail exactly the objects taken over, committing nothing of them.
fn stopped_worker_loses_its_claims(moto: &Moto, sink: &[String], takers: usize) -> TakeOver {
    // 4 objects of ~0.65 MB (gzip) with 12,000 rows; worker 1 reads them at 150 KB/s: over 4 s
    // each, so it is stopped mid-object.
    let slow = throttling_proxy(&moto.endpoint, 150 * 1024);
    let a = tempfile::tempdir().unwrap();
    let log1 = a.path().join("w1.log");
    let mut w1 = worker(moto, &slow, a.path(), "3", &log1, sink)
        .spawn()
        .unwrap();
    wait_for(120, "worker 1's claims", || {
        count(&markers(moto), ".claim") >= 2
    });
    signal(&w1, "-STOP");
    let held = markers(moto);
    let caught = held
        .iter()
        .filter(|m| {
            m.key.ends_with(".claim")
                && !held
                    .iter()
                    .any(|d| d.key == m.key.replace(".claim", ".done"))
        })
        .count();
    assert!(caught > 0, "worker 1 was stopped holding no claim");
    // Worker 1 holds claims on objects it has not finished; wait until they lapse (re-read
    // until all have: a renewal in flight when it stopped may land late).
    wait_for(60, "worker 1's claims to lapse", || {
        let now = chrono::Utc::now();
        markers(moto)
            .iter()
            .filter(|m| m.key.ends_with(".claim"))
            .all(|m| expires_at(m) + chrono::Duration::milliseconds(300) < now)
    });

    // The takers start together and race for the lapsed claims.
    let takers: Vec<(tempfile::TempDir, PathBuf, Child)> = (0..takers)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join(format!("w{}.log", i + 2));
            let child = worker(moto, &moto.endpoint, dir.path(), "3", &log, sink)
                .spawn()
                .unwrap();
            (dir, log, child)
        })
        .collect();
    let mut taken = 0;
    let mut dirs = Vec::new();
    for (dir, log, mut child) in takers {
        let status = child.wait().unwrap();
        let err = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "{}:\n{err}", log.display());
        taken += err.matches("took over an expired claim").count();
        dirs.push(dir);
    }
    assert!(taken >= 1, "the other workers took nothing over");

    signal(&w1, "-CONT");
    let s1 = w1.wait().unwrap();
    let err1 = std::fs::read_to_string(&log1).unwrap();
    TakeOver {
        a,
        takers: dirs,
        taken,
        worker1_ok: s1.success(),
        err1,
    }
}

impl TakeOver {
    /// Worker 1 failed exactly the objects taken over, said why, and the ledger is clean.
    fn assert_reported(&self, moto: &Moto) {
        let (taken, err1) = (self.taken, &self.err1);
        assert!(
            !self.worker1_ok,
            "worker 1 lost claims: its run must not end as a success:\n{err1}"
        );
        let lost = err1.matches("object failed").count();
        assert_eq!(lost, taken, "only the objects taken over failed:\n{err1}");
        assert!(
            err1.matches("lost the ledger claim").count() >= taken,
            "worker 1 says why ({taken} taken over):\n{err1}"
        );
        assert!(
            !err1.contains("held by other workers"),
            "a lost claim is not reported as held elsewhere:\n{err1}"
        );
        let m = markers(moto);
        assert_eq!(count(&m, ".done"), 4);
        assert_eq!(count(&m, ".claim"), 0, "claims are released");
    }
}

#[test]
fn a_worker_stopped_past_its_claims_ttl_commits_nothing_of_the_objects_taken_over() {
    let moto = Moto::start();
    let expected = put_objects(&moto, 4, 12000);
    // Three workers: the stopped one and two that race for its lapsed claims.
    let t = stopped_worker_loses_its_claims(&moto, &[], 2);
    // Every object exactly once across all workers' outputs, nothing partial left behind.
    let mut all: BTreeMap<String, usize> = BTreeMap::new();
    for dir in std::iter::once(&t.a).chain(&t.takers) {
        let (rows, hidden) = outputs(dir.path());
        assert!(hidden.is_empty(), "{hidden:?}");
        for (k, n) in rows {
            assert!(
                all.insert(k.clone(), n).is_none(),
                "{k} was committed by two workers"
            );
        }
    }
    assert_eq!(all, expected);
    assert_eq!(all.values().sum::<usize>(), 4 * 12000);
    t.assert_reported(&moto);
}

/// Worker 1 is stopped past its claims' TTL while writing to BigQuery in `mode` (plus
/// `extra` flags); one other worker takes its objects over. The table holds every row once.
fn stopped_bigquery_worker(mode: &str, extra: &[&str]) {
    let moto = Moto::start();
    let emu = crate::bq_emulator::BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    let rows = 12000;
    put_objects(&moto, 4, rows);
    let schema = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        schema.path(),
        r#"[{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "obj", "type": "INTEGER"}, {"name": "n", "type": "INTEGER"},
            {"name": "pad", "type": "STRING"}]"#,
    )
    .unwrap();
    let sink: Vec<String> = [
        "--sink",
        "bigquery:test-proj.bi.claims",
        "--bigquery-mode",
        mode,
        "--bigquery-endpoint",
        &emu.endpoint,
        "--bigquery-storage-endpoint",
        &emu.grpc_endpoint,
        "--create-table-schema",
        schema.path().to_str().unwrap(),
        "--load-poll-ms",
        "50",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let t = stopped_worker_loses_its_claims(&moto, &sink, 1);
    let got = emu.rows("bi", "claims");
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|r| r["_row_id"].as_str().unwrap()).collect();
    assert_eq!(got.len(), 4 * rows, "{mode} {extra:?}: rows in the table");
    assert_eq!(ids.len(), 4 * rows, "{mode} {extra:?}: distinct row IDs");
    t.assert_reported(&moto);
}

#[test]
fn a_stopped_worker_commits_no_storage_write_stream_of_the_objects_taken_over() {
    stopped_bigquery_worker("storage-write", &[]);
}

#[test]
fn a_stopped_worker_submits_no_load_job_for_the_objects_taken_over() {
    // Two objects per batch, both spooled at once: worker 1 is stopped holding their claims.
    stopped_bigquery_worker("load", &["--load-batch-objects", "2"]);
}

#[test]
fn a_stopped_worker_merges_nothing_of_the_objects_taken_over() {
    stopped_bigquery_worker("storage-write", &["--dedup", "merge"]);
}

#[test]
fn a_live_worker_keeps_its_claim_on_an_object_that_runs_longer_than_the_ttl() {
    let moto = Moto::start();
    // One object of ~0.9 MB (gzip) read at 120 KB/s: over 7 s, against a TTL of 2 s.
    let expected = put_objects(&moto, 1, 16000);
    let slow = throttling_proxy(&moto.endpoint, 120 * 1024);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log1, log2) = (a.path().join("w1.log"), b.path().join("w2.log"));
    let mut w1 = worker(&moto, &slow, a.path(), "2", &log1, &[])
        .spawn()
        .unwrap();
    wait_for(120, "worker 1's claim", || {
        count(&markers(&moto), ".claim") == 1
    });
    let seen = chrono::Utc::now();
    // Past the TTL of the first claim, worker 1 still at it: only renewals keep it.
    wait_for(60, "the first TTL to pass", || {
        chrono::Utc::now() > seen + chrono::Duration::milliseconds(3500)
    });
    let m = markers(&moto);
    assert_eq!(
        count(&m, ".done"),
        0,
        "the object finished within the TTL: make it larger"
    );
    let w2 = worker(&moto, &moto.endpoint, b.path(), "2", &log2, &[])
        .status()
        .unwrap();
    let err2 = std::fs::read_to_string(&log2).unwrap();
    assert!(w2.success(), "worker 2:\n{err2}");
    assert!(!err2.contains("took over"), "{err2}");
    assert!(
        err2.contains("1 held by other workers") || err2.contains("1 skipped by the ledger"),
        "{err2}"
    );
    let s1 = w1.wait().unwrap();
    let err1 = std::fs::read_to_string(&log1).unwrap();
    assert!(s1.success(), "worker 1:\n{err1}");
    assert!(!err1.contains("lost the"), "{err1}");
    let (rows1, _) = outputs(a.path());
    let (rows2, _) = outputs(b.path());
    assert_eq!(rows1, expected);
    assert!(rows2.is_empty(), "{rows2:?}");
    let m = markers(&moto);
    assert_eq!((count(&m, ".done"), count(&m, ".claim")), (1, 0));
}

#[test]
fn the_s3_ledger_fences_a_lapsed_claim_and_never_releases_its_new_holders() {
    use firehose_replay::error::Cause;
    use firehose_replay::ledger::s3::S3Ledger;
    use firehose_replay::ledger::{Begin, Ledger, Staged};
    use firehose_replay::object::ObjectRef;
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(moto::create_bucket(&s3, "ledger"));
    let ledger = |worker: &str| {
        let _in = rt.enter();
        S3Ledger::new(
            s3.clone(),
            "ledger".into(),
            "l/".into(),
            worker.into(),
            Duration::from_secs(1),
        )
    };
    let (w1, w2) = (ledger("w1"), ledger("w2"));
    assert_eq!(w1.renew_every(), Some(Duration::from_secs(1) / 3));
    let mut o = ObjectRef::new("src", "2026/11/25/13/a.gz");
    o.etag = Some("e1".into());
    let Begin::Proceed(c1) = w1.begin(&o, false).unwrap() else {
        panic!("fresh object")
    };
    w1.renew(&o, &c1).unwrap();
    assert!(matches!(w2.begin(&o, false).unwrap(), Begin::Busy(w) if w == "w1"));
    // w1 stops renewing; w2 takes the claim over once it lapses.
    let deadline = Instant::now() + Duration::from_secs(30);
    let c2 = loop {
        match w2.begin(&o, false).unwrap() {
            Begin::Proceed(c) => break c,
            Begin::Busy(_) => {}
            Begin::Done => panic!("not done"),
        }
        assert!(Instant::now() < deadline, "the claim never lapsed");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lost = |r: Result<(), firehose_replay::error::Error>| match r {
        Err(e) => matches!(e.cause, Cause::ClaimLost { ref holder, .. } if holder == "w2"),
        Ok(()) => false,
    };
    assert!(lost(w1.renew(&o, &c1)), "the fence fails");
    let staged = Staged {
        token: "t".into(),
        records: 1,
        rows: 1,
        record_errors: 0,
    };
    assert!(lost(w1.stage(&o, &c1, &staged)), "so does staging");
    assert!(c1.lease.lost().is_some());
    w1.abandon(&o, c1); // must not delete w2's claim
    w2.renew(&o, &c2).unwrap();
    w2.stage(&o, &c2, &staged).unwrap();
    w2.renew(&o, &c2).unwrap();
    // The staged record rides in the claim: a third worker taking it over sees it.
    let w3 = ledger("w3");
    let c3 = loop {
        match w3.begin(&o, false).unwrap() {
            Begin::Proceed(c) => break c,
            Begin::Busy(_) => {}
            Begin::Done => panic!("not done"),
        }
        assert!(Instant::now() < deadline, "the claim never lapsed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(c3.staged.as_ref(), Some(&staged));
    assert!(w2.renew(&o, &c2).is_err());
}

/// A file ledger keeps its claims in one process, so a second process on the same ledger file
/// is refused while the first holds it (its `flock` shows in /proc/locks), and runs once the
/// first has exited.
#[test]
fn a_second_process_on_the_same_file_ledger_is_refused_while_the_first_runs() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let ledger = work.path().join("ledger.jsonl");
    // One object big enough (~40 MB) that the first run is still reading it when stopped.
    let input = work.path().join("big.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for i in 0..400_000 {
        writeln!(f, "{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(80)).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let run = || {
        let mut cmd = bin();
        cmd.current_dir(work.path())
            .arg("replay")
            .arg(&input)
            .args(["--sink", "ndjson:out", "--ledger"])
            .arg(format!("file:{}", ledger.display()));
        cmd
    };
    let mut first = run().stderr(Stdio::null()).spawn().unwrap();
    let locked_by = |pid: u32| {
        let Ok(meta) = std::fs::metadata(&ledger) else {
            return false;
        };
        let inode = format!(":{} ", meta.ino());
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(" FLOCK ") && l.contains(&format!(" {pid} ")) && l.contains(&inode))
    };
    let pid = first.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !locked_by(pid) {
        assert!(
            first.try_wait().unwrap().is_none(),
            "finished before it was seen holding the lock"
        );
        assert!(Instant::now() < deadline, "no lock on the ledger seen");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(&first, "-STOP");
    let second = run().output().unwrap();
    signal(&first, "-CONT");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another firehose-replay process"),
        "{stderr}"
    );
    assert!(first.wait().unwrap().success());
    let after = run().output().unwrap();
    let stderr = String::from_utf8_lossy(&after.stderr);
    assert!(after.status.success(), "{stderr}");
    assert!(stderr.contains("1 skipped by the ledger"), "{stderr}");
}

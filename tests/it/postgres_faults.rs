//! The PostgreSQL sink under faults: SIGKILL at random points, then a rerun; a TCP proxy that
//! cuts the connection in the middle of a COPY, and around a COMMIT (before it reaches the
//! server, and after it did but before its answer came back). Nothing lost, nothing twice.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pg_server::PgServer;
use crate::postgres::{archive, events_table, ns, numbered_objects, replay, run_ok};
use crate::support::Rng;

#[test]
fn sigkill_at_random_points_then_a_rerun_is_exact() {
    let seed = std::env::var("PG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("PG_KILL_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let pg = PgServer::start();
    events_table(&pg, "events");
    events_table(&pg, "timing");
    let work = tempfile::tempdir().unwrap();
    let (objects, per) = (12, 20_000);
    archive(work.path(), &numbered_objects(objects, per));
    // How long a whole run takes on this machine now (loaded or not), to kill inside it.
    let started = Instant::now();
    run_ok(replay(work.path(), &pg.sink("timing")));
    let mut whole = started.elapsed().as_millis() as u64;
    let sink = pg.sink("events");
    let mut kills = 0;
    for round in 0..5 {
        let mut cmd = replay(work.path(), &sink);
        cmd.args(["--concurrency", "3"])
            .stderr(std::process::Stdio::null());
        if round > 0 {
            // Every round rewrites every object, so each kill lands amid work.
            cmd.arg("--force");
        }
        let mut child = cmd.spawn().unwrap();
        let at = Duration::from_millis(whole / 10 + rng.below(whole * 8 / 10 + 1));
        let started = Instant::now();
        while started.elapsed() < at && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        } else {
            // The machine got faster than the timing run: aim earlier.
            whole /= 2;
        }
        let _ = child.wait();
        eprintln!(
            "round {round}: at {at:?} of ~{whole} ms, {} rows in, kills so far {kills}",
            pg.count("events")
        );
    }
    run_ok(replay(work.path(), &sink));
    let n = (objects * per) as u64;
    assert_eq!(ns(&pg, "events"), (0..n).collect::<Vec<u64>>());
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM firehose_replay_ledger \
             WHERE target = '\"public\".\"events\"' AND rows_sent > 0"
        )
        .trim(),
        objects.to_string()
    );
    assert!(kills > 0, "no run was killed mid-way (seed {seed})");
}

/// Where the proxy cuts (once; later connections pass through).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cut {
    /// After this many bytes of COPY data went to the server.
    MidCopy(u64),
    /// Right before a `COMMIT` reaches the server (it never runs).
    BeforeCommit,
    /// Right after a `COMMIT` reached the server, before its answer comes back.
    AfterCommit,
    /// A `COMMIT` reaches the server, its answer never comes back, and the connection stays
    /// open: the client waits (to be killed there).
    #[cfg_attr(not(feature = "iceberg"), allow(dead_code))]
    HoldAfterCommit,
}

/// A TCP proxy to the server that cuts one connection as `cut` says.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    pub(crate) fired: Arc<AtomicBool>,
}

impl Proxy {
    pub(crate) fn start(upstream: u16, cut: Cut) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let fired = f.clone();
                let copied = Arc::new(AtomicU64::new(0));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let both = Arc::new(Mutex::new((
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                )));
                // server → client: plain, until this connection is cut after a COMMIT (then
                // the server's answer must never reach the client, however the threads run).
                let cut_here = Arc::new(AtomicBool::new(false));
                let answers_stop = cut_here.clone();
                let held = Arc::new(AtomicBool::new(false));
                let answers_held = held.clone();
                std::thread::spawn(move || pipe(s2, c2, answers_stop, answers_held));
                // client → server: watched.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    let mut buf = [0u8; 16 * 1024];
                    let mut in_copy = false;
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let armed = !fired.load(Ordering::SeqCst);
                        if armed {
                            if chunk.windows(5).any(|w| w == b"COPY ") {
                                in_copy = true;
                            }
                            let commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
                            let cut_now = match cut {
                                Cut::MidCopy(limit) if in_copy => {
                                    copied.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= limit
                                }
                                Cut::BeforeCommit => commit,
                                Cut::HoldAfterCommit if commit => {
                                    held.store(true, Ordering::SeqCst);
                                    let _ = to.write_all(chunk);
                                    let _ = to.flush();
                                    fired.store(true, Ordering::SeqCst);
                                    continue;
                                }
                                Cut::AfterCommit if commit => {
                                    cut_here.store(true, Ordering::SeqCst);
                                    let _ = to.write_all(chunk);
                                    let _ = to.flush();
                                    true
                                }
                                _ => false,
                            };
                            if cut_now && !fired.swap(true, Ordering::SeqCst) {
                                let b = both.lock().unwrap();
                                let _ = b.0.shutdown(Shutdown::Both);
                                let _ = b.1.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        if to.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy { port, fired }
    }
}

/// Copies `from` to `to` until either closes or `stop` is set; while `hold` is set, what comes
/// is dropped and the connection kept open.
fn pipe(mut from: TcpStream, mut to: TcpStream, stop: Arc<AtomicBool>, hold: Arc<AtomicBool>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hold.load(Ordering::SeqCst) {
            continue;
        }
        if stop.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

fn cut_run(cut: Cut) {
    let pg = PgServer::start();
    events_table(&pg, "events");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(3, 3000));
    let proxy = Proxy::start(pg.port, cut);
    let sink = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?table=events&sslmode=disable",
        proxy.port
    );
    let mut cmd = replay(work.path(), &sink);
    cmd.args(["--concurrency", "1"]);
    let out = run_ok(cmd);
    assert!(
        proxy.fired.load(Ordering::SeqCst),
        "the proxy never cut ({cut:?}): {out}"
    );
    assert_eq!(ns(&pg, "events"), (0..9000).collect::<Vec<u64>>(), "{out}");
    let (written, present) = crate::postgres::written_and_present(&out);
    assert_eq!((written, present), (9000, 0), "{cut:?}: {out}");
    assert_eq!(
        pg.psql("SELECT count(*), sum(rows_inserted) FROM firehose_replay_ledger")
            .trim(),
        "3|9000"
    );
    match cut {
        // The commit ran: found from its ledger row, not written again.
        Cut::AfterCommit => {
            assert!(out.contains("answer was lost"), "{out}");
            assert!(out.contains("the COMMIT landed"), "{out}");
        }
        Cut::BeforeCommit => {
            assert!(out.contains("answer was lost"), "{out}");
            assert!(out.contains("before COMMIT landed"), "{out}");
        }
        Cut::MidCopy(_) | Cut::HoldAfterCommit => {}
    }
}

#[test]
fn a_connection_cut_mid_copy_loses_and_doubles_nothing() {
    cut_run(Cut::MidCopy(64 * 1024));
}

#[test]
fn a_connection_cut_before_commit_reaches_the_server_loses_nothing() {
    cut_run(Cut::BeforeCommit);
}

#[test]
fn a_commit_whose_answer_is_lost_is_resolved_from_the_ledger_row() {
    cut_run(Cut::AfterCommit);
}

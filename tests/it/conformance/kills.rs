//! SIGKILL at random points, then a rerun: every row exactly once (or, where the sink's entry
//! says it cannot be, at least once), every row ID distinct.

use std::time::{Duration, Instant};

use super::run::{expect, Target};
use super::sinks::{selected, AfterKill, Servers};
use super::{assert_at_least_once, assert_exactly_once, reference, source_of};
use crate::bigquery_modes::kill_points;

/// Kills per sink: few (each costs a run), at random points (seeded).
const KILLS: usize = 4;

/// More objects than the other scenarios, processed one at a time, so that a run spends most
/// of its time between its first and last commit, where the kills must fall to matter.
const OBJECTS: u32 = 12;
const ONE_AT_A_TIME: [&str; 2] = ["--concurrency", "1"];

/// `CONFORMANCE_SEED`, or one from the clock; printed either way.
fn seed() -> u64 {
    std::env::var("CONFORMANCE_SEED")
        .ok()
        .map(|s| s.parse().expect("CONFORMANCE_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[test]
fn conformance_runs_killed_at_random_points_then_rerun_leave_every_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_of(tmp.path(), OBJECTS);
    let want = reference(tmp.path(), &src, &[]);
    let servers = Servers::default();
    let seed = seed();
    for (i, sink) in selected().into_iter().enumerate() {
        let name = sink.name();
        // Kill points spread over how long an uninterrupted run takes here and now.
        let probe = Target::new(sink, &servers, tmp.path(), "-probe");
        let t0 = Instant::now();
        expect(probe.replay(&src, &ONE_AT_A_TIME), 0, name);
        let run_ms = (t0.elapsed().as_millis() as u64).max(20);
        let points = kill_points(seed.wrapping_add(i as u64), KILLS, run_ms);
        let ctx = format!("{name}: seed {seed} (CONFORMANCE_SEED), kills at {points:?} ms");
        eprintln!("{ctx}; an uninterrupted run takes {run_ms} ms");

        let t = Target::new(sink, &servers, tmp.path(), "");
        for (k, ms) in points.iter().enumerate() {
            // A file of its own, so that a torn last line is not glued to the next run's first.
            let stdout = std::fs::File::create(t.work.join(format!("stdout.{k}.ndjson"))).unwrap();
            let mut child = t
                .replay(&src, &ONE_AT_A_TIME)
                .stdout(stdout)
                .spawn()
                .unwrap();
            let until = Instant::now() + Duration::from_millis(*ms);
            while Instant::now() < until && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill(); // SIGKILL
            child.wait().unwrap();
        }
        expect(t.replay(&src, &[]), 0, &ctx);
        let rows = t.rows();
        match sink.guarantees().after_kill {
            AfterKill::Exact => assert_exactly_once(&rows, &want, &ctx),
            AfterKill::AtLeastOnce => assert_at_least_once(&rows, &want, &ctx),
        }
    }
}

//! Two worker processes at once on one ledger (S3, in moto: claims keep them off each other's
//! objects): every row exactly once, and the two summaries together count what the destination
//! holds.

use super::run::{Finished, Target};
use super::sinks::{selected, Servers};
use super::{assert_exactly_once, reference, source_of};

/// Enough objects for the two to meet on some: each claims, finishes and releases many.
const OBJECTS: u32 = 12;

#[test]
fn conformance_two_concurrent_workers_on_one_ledger_deliver_every_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_of(tmp.path(), OBJECTS);
    let want = reference(tmp.path(), &src, &[]);
    let servers = Servers::default();
    for sink in selected() {
        let t = Target::new(sink, &servers, tmp.path(), "").with_s3_ledger(&servers);
        let name = t.name();
        eprintln!("conformance: {name}");
        // Each prints to a file of its own: appends of two processes to one file may interleave.
        let spawn = |n: usize| {
            let stdout = std::fs::File::create(t.work.join(format!("stdout.{n}.ndjson"))).unwrap();
            t.replay(&src, &["--concurrency", "2"])
                .stdout(stdout)
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let (a, b) = (spawn(1), spawn(2));
        let finished: Vec<Finished> = [a, b]
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                Finished {
                    code: out.status.code(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                }
            })
            .collect();
        for f in &finished {
            assert_eq!(f.code, Some(0), "{name}: {}", f.stderr);
        }
        let rows = t.rows();
        assert_exactly_once(&rows, &want, &format!("{name}: two workers"));
        let (a, b) = (finished[0].summary(), finished[1].summary());
        assert_eq!(
            a.written + b.written,
            rows.len() as u64,
            "{name}: the summaries count the rows held: {a:?} {b:?}"
        );
        assert!(
            a.ok + b.ok == OBJECTS as u64,
            "{name}: every object done by one of them: {a:?} {b:?}"
        );
    }
}

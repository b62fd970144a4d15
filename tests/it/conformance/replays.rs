//! A replay of the same objects adds nothing, and the summary counts what the destination holds;
//! a replay forced past the ledger, or run without one, does what the sink's entry claims.

use super::run::{expect, Target};
use super::sinks::{selected, Forced, Servers};
use super::{all_ks, assert_exactly_once, reference, source, OBJECTS};

#[test]
fn conformance_a_replay_of_the_same_objects_adds_nothing_and_the_summary_counts_the_rows_held() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let want = reference(tmp.path(), &src, &[]);
    assert_eq!(
        want.values()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        all_ks()
    );
    let servers = Servers::default();
    for sink in selected() {
        let t = Target::new(sink, &servers, tmp.path(), "");
        let name = t.name();
        eprintln!("conformance: {name}");
        let first = expect(t.replay(&src, &[]), 0, name).summary();
        let rows = t.rows();
        assert_exactly_once(&rows, &want, &format!("{name}: first run"));
        assert_eq!(
            (first.ok, first.written, first.record_errors),
            (OBJECTS as u64, rows.len() as u64, 0),
            "{name}: the summary counts the rows the destination holds: {first:?}"
        );

        // The same objects again: the ledger skips them all.
        let again = expect(t.replay(&src, &[]), 0, name).summary();
        assert_eq!(
            (again.skipped, again.written),
            (OBJECTS as u64, 0),
            "{name}: {again:?}"
        );
        assert_exactly_once(&t.rows(), &want, &format!("{name}: rerun"));

        // Forced past the ledger, then with no ledger at all: what the sink's entry claims.
        let mut copies = 1;
        for (how, cmd) in [
            ("--force", t.replay(&src, &["--force"])),
            ("--ledger none", t.replay_without_ledger(&src, &[])),
        ] {
            let ctx = format!("{name}: {how} ({:?})", sink.guarantees().forced);
            match sink.guarantees().forced {
                Forced::Exact | Forced::ExactWithinAMinute => {
                    expect(cmd, 0, &ctx);
                    assert_exactly_once(&t.rows(), &want, &ctx);
                }
                Forced::Refused => {
                    let refused = expect(cmd, 2, &ctx);
                    assert!(refused.stderr.contains("--allow-duplicates"), "{ctx}");
                    assert_exactly_once(&t.rows(), &want, &ctx);
                }
                Forced::Duplicates => {
                    let forced = expect(cmd, 0, &ctx).summary();
                    copies += 1;
                    let rows = t.rows();
                    assert_eq!(forced.written, want.len() as u64, "{ctx}: {forced:?}");
                    assert_eq!(rows.len(), copies * want.len(), "{ctx}: every row again");
                    for id in want.keys() {
                        let n = rows.iter().filter(|r| &r.id == id).count();
                        assert_eq!(n, copies, "{ctx}");
                    }
                }
            }
        }
    }
}

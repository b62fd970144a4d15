//! No object waits for another: with `--concurrency 2`, a slow object listed first does not
//! hold back the small objects listed after it, and progress counts them as they end.
//!
//! The slow object is read through a throttling proxy in front of moto, so it takes tens of
//! seconds whatever the machine's load, while the small ones need a few kilobytes each. The
//! assertions are about order (which `object done` line comes first), never about durations.

use std::path::Path;

use crate::claims::throttling_proxy;
use crate::moto::{self, Moto};
use crate::support::{bin, gzip};

const BUCKET: &str = "order";
const SMALL: usize = 12;

/// ~1 MB of incompressible rows (its gzip is as large): 25 s through a 40 KB/s proxy.
fn big_body() -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut body = String::new();
    for n in 0..8_000 {
        let mut pad = String::with_capacity(128);
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            pad.push_str(&format!("{x:016x}"));
        }
        body.push_str(&format!("{{\"n\":{n},\"pad\":\"{pad}\"}}\n"));
    }
    gzip(body.as_bytes())
}

fn object_done_keys(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("object done"))
        .map(|l| {
            if l.contains("a-big.gz") {
                "a-big.gz".to_string()
            } else {
                (0..SMALL)
                    .map(|i| format!("small-{i:02}.json"))
                    .find(|k| l.contains(k.as_str()))
                    .unwrap_or_else(|| panic!("an unknown object: {l}"))
            }
        })
        .collect()
}

#[test]
fn small_objects_listed_after_a_slow_one_finish_before_it() {
    let moto = Moto::start();
    let rt = moto::rt();
    let s3 = moto.s3();
    rt.block_on(async {
        moto::create_bucket(&s3, BUCKET).await;
        moto::put(&s3, BUCKET, "in/a-big.gz", big_body()).await;
        for i in 0..SMALL {
            let body = format!("{{\"small\":{i}}}\n").into_bytes();
            moto::put(&s3, BUCKET, &format!("in/small-{i:02}.json"), body).await;
        }
    });
    let slow = throttling_proxy(&moto.endpoint, 40 * 1024);
    let work = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(work.path())
        .envs(moto.env())
        .env("AWS_ENDPOINT_URL", &slow)
        .args([
            "replay",
            &format!("s3://{BUCKET}/in/"),
            "--concurrency",
            "2",
            "--progress-interval",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        count_rows(&work.path().join("out")),
        8_000 + SMALL,
        "{stderr}"
    );

    let done = object_done_keys(&stderr);
    assert_eq!(done.len(), SMALL + 1, "{stderr}");
    assert_eq!(
        done.last().map(String::as_str),
        Some("a-big.gz"),
        "every small object must end while the slow one listed before them is in flight \
         (`object done` order: {done:?})"
    );
    // Progress counts what is done, not what a window let through: while the slow object is
    // still in flight, a progress line already says every small object is done.
    let before_big: String = stderr
        .split_inclusive('\n')
        .take_while(|l| !(l.contains("object done") && l.contains("a-big.gz")))
        .collect();
    let all_small = format!("{SMALL}/{}", SMALL + 1);
    assert!(
        before_big
            .lines()
            .any(|l| l.contains("progress") && l.contains("objects=") && l.contains(&all_small)),
        "no progress line said {all_small} before the slow object ended:\n{stderr}"
    );
}

fn count_rows(dir: &Path) -> usize {
    crate::cli::files_under(dir)
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".ledger.jsonl"))
        .map(|p| crate::support::read_ndjson(p).len())
        .sum()
}

//! Issue 25: what another local user, or someone who can write to a bucket or queue the tool
//! reads, must not be able to do — each test plants what such a person would and shows it is
//! not followed.

use std::path::Path;

use crate::moto::{self, Moto};
use crate::support::{bin, gzip};

const KEY: &str =
    "2026/11/25/13/orders-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz";

/// A local bucket `arch/` below `work` with one object of three records, one not JSON.
fn archive_with_a_bad_record(work: &Path) {
    let p = work.join("arch").join(KEY);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, gzip(b"{\"n\":0}\nnot json\n{\"n\":2}\n")).unwrap();
}

/// Everything below `dir`, directories included.
fn entries(dir: &Path) -> Vec<String> {
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
    // And the letter arrived whole.
    let letter = moto.python(&format!(
        r#"
import boto3, datetime
key = "letters/" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d") + "/arch/{KEY}.records.json"
print(boto3.client("s3").get_object(Bucket="dlq-bucket", Key=key)["Body"].read().decode())
"#
    ));
    let letter: serde_json::Value = serde_json::from_str(letter.trim()).unwrap();
    let records = letter["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{letter}");
    assert_eq!(records[0]["ordinal"], 1);
}

//! What a newcomer meets first: `--help` naming every exit status, and a run without AWS
//! credentials ending in one clear hint instead of the SDK's provider-by-provider warnings.

use crate::support::bin;

#[test]
fn help_names_every_exit_status() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for status in [
        "0 all objects done",
        "1 at least one",
        "2 usage error",
        "130 interrupted",
        "141 standard output closed",
    ] {
        assert!(help.contains(status), "--help lacks `{status}`:\n{help}");
    }
}

#[test]
fn a_run_without_aws_credentials_says_what_to_set() {
    let home = tempfile::tempdir().unwrap();
    let none = home.path().join("none");
    // No credentials anywhere: no environment keys, no profile files, no instance metadata
    // service; and no real AWS endpoint either.
    let out = bin()
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args([
            "replay",
            "s3://archive/2026/11/25/",
            "--sink",
            "stdout",
            "--max-attempts",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr
            .matches("hint: no AWS credentials were found")
            .count(),
        1,
        "one hint:\n{stderr}"
    );
    let sdk_warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && (l.contains("IMDS") || l.contains("provider")))
        .collect();
    assert!(
        sdk_warnings.is_empty(),
        "the SDK's warnings are quiet:\n{stderr}"
    );
}

/// `-h` is the brief form, as ripgrep's is: every flag `--help` lists, each with its opening
/// phrase only (no variables, defaults or value lists); `--help` keeps the whole text.
#[test]
fn short_help_lists_every_flag_briefly_and_long_help_whole() {
    let help = |cmd: &str, flag: &str| {
        let out = bin().args([cmd, flag]).output().unwrap();
        assert!(out.status.success(), "{cmd} {flag}");
        String::from_utf8(out.stdout).unwrap()
    };
    let longs = |text: &str| {
        let mut v: Vec<String> = text
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches([',', '.', ')', '\'']).to_string())
            .filter(|w| {
                w.chars()
                    .skip(2)
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    for cmd in ["replay", "backfill", "redrive", "invoke", "worker"] {
        let (short, long) = (help(cmd, "-h"), help(cmd, "--help"));
        assert!(
            short.len() * 2 < long.len(),
            "{cmd}: -h is {} bytes, --help {}",
            short.len(),
            long.len()
        );
        assert!(!short.contains("[env: "), "{cmd} -h:\n{short}");
        assert!(
            long.contains("[env: FIREHOSE_REPLAY_SINK="),
            "{cmd} --help:\n{long}"
        );
        // Every flag of the long form is in the short one.
        let in_short = longs(&short);
        // (Option lines start at column 6; wrapped prose is indented further.)
        let listed: Vec<String> = long
            .lines()
            .filter_map(|l| l.strip_prefix("      --"))
            .filter_map(|l| l.split_whitespace().next().map(|f| format!("--{f}")))
            .collect();
        assert!(listed.len() > 20, "{cmd}: {listed:?}");
        for flag in listed {
            assert!(in_short.contains(&flag), "{cmd} -h lacks {flag}:\n{short}");
        }
    }
}

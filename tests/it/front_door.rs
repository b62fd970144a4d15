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

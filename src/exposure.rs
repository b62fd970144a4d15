//! Warnings about secrets a run's own configuration exposes: the process keeps working (the
//! operator may have reasons), but says so once, at start.

use std::ffi::OsString;

/// Whether `flag` (`--name`) was given on the command line itself (`--name V` or `--name=V`),
/// where every local user sees it in `ps` and `/proc/PID/cmdline`, rather than through its
/// environment variable or a file.
pub(crate) fn on_command_line(args: &[OsString], flag: &str) -> bool {
    let with_value = format!("{flag}=");
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .any(|a| a == flag || a.starts_with(&with_value))
}

/// The host of `endpoint` when requests to it would travel unencrypted beyond this machine: a
/// plain `http://` URL whose host is not a loopback name or address.
pub(crate) fn plain_http_remote_host(endpoint: &str) -> Option<String> {
    let url = reqwest::Url::parse(endpoint).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?;
    let loopback = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    (!loopback).then(|| host.to_string())
}

/// Logs what the configuration exposes.
pub(crate) fn warn(args: &[OsString], endpoint: Option<&str>, sends_token: bool) {
    if on_command_line(args, "--gcp-credentials-json") {
        tracing::warn!(
            "--gcp-credentials-json on the command line is visible to every local user (ps, \
             /proc): pass it in FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON, or the file in \
             --gcp-credentials, instead"
        );
    }
    if let Some(host) = endpoint
        .filter(|_| sends_token)
        .and_then(plain_http_remote_host)
    {
        tracing::warn!(
            host = %host,
            "--bigquery-endpoint is plain http:// to another host: the Google access token is \
             sent unencrypted with every request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_secret_flag_is_seen_on_the_command_line_in_both_forms_and_only_there() {
        let flag = "--gcp-credentials-json";
        assert!(on_command_line(&args(&["x", "replay", flag, "{}"]), flag));
        assert!(on_command_line(
            &args(&["x", "--gcp-credentials-json={}"]),
            flag
        ));
        assert!(!on_command_line(
            &args(&["x", "replay", "--gcp-credentials", "f"]),
            flag
        ));
        assert!(!on_command_line(&args(&["x", "--", flag]), flag));
        assert!(
            !on_command_line(&args(&[flag]), flag),
            "argv[0] is the program"
        );
    }

    #[test]
    fn only_plain_http_to_another_host_is_unencrypted() {
        for remote in [
            "http://10.0.0.5:9050",
            "http://bq.example.com/",
            "http://[2001:db8::1]:80",
        ] {
            assert!(plain_http_remote_host(remote).is_some(), "{remote}");
        }
        for safe in [
            "https://bq.example.com",
            "http://127.0.0.1:9050",
            "http://127.1.2.3",
            "http://localhost:9050",
            "http://LOCALHOST",
            "http://[::1]:9050",
            "not a url",
        ] {
            assert_eq!(plain_http_remote_host(safe), None, "{safe}");
        }
    }
}

//! Log filtering shared by every entry point (CLI, worker, Lambda): libraries that would log
//! secrets are held at `warn`.

/// Libraries that log secrets at debug level (yup-oauth2, still linked by gcp-bigquery-client:
/// the signed JWT and the access token; HTTP stacks: headers, which carry bearer tokens and AWS
/// signatures), or that handle them (google-cloud-auth and its gax: no logging in 1.19, but
/// they declare an unstable tracing cfg). They stay at `warn` unless the filter names them
/// explicitly, so `--log-level debug` never leaks credentials. `aws_runtime` logs the body of
/// every chunked S3 upload at trace level (dead letters: raw records) with its signatures.
const SECRET_LOGGING_TARGETS: [&str; 11] = [
    "yup_oauth2",
    "google_cloud_auth",
    "google_cloud_gax",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "aws_smithy_runtime",
    "aws_sigv4",
    "aws_runtime",
];

/// The filter for `--log-level` `level`, with `SECRET_LOGGING_TARGETS` at `warn` unless
/// `level` names them.
pub fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let mut spec = level.to_string();
    // The SDK's credential and region providers warn about every source they tried (the
    // instance metadata service, three times, on a laptop); the error that follows says what
    // failed, with a hint.
    if !level.contains("aws_config") {
        spec.push_str(",aws_config=error");
    }
    for t in SECRET_LOGGING_TARGETS {
        if !level.contains(t) {
            spec.push_str(&format!(",{t}=warn"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

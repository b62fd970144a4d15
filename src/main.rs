//! The `firehose-replay` binary: the CLI, or — when started by AWS Lambda (packaged as
//! `bootstrap`, `AWS_LAMBDA_RUNTIME_API` set) — the Lambda runtime loop. All the work is in the
//! library.

mod cli;
mod cli_docs;
mod exposure;
mod flags;
mod hints;
mod lambda;
mod plan_map;
mod stdio;
mod worker_cli;

fn main() -> std::process::ExitCode {
    firehose_replay::tls::install_crypto_provider();
    // A blank AWS_ENDPOINT_URL[_SERVICE] (an empty entry in a container's environment) means
    // "not set", not an endpoint named "": the AWS SDK fails every call on it, and building an
    // SQS client from it panics. Still single-threaded here, so changing the environment is
    // safe.
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("AWS_ENDPOINT_URL") {
            std::env::remove_var(name);
        }
    }
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda::main();
    }
    cli::main()
}

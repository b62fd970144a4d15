//! The `firehose-replay` binary: the CLI, or — when started by AWS Lambda (packaged as
//! `bootstrap`, `AWS_LAMBDA_RUNTIME_API` set) — the Lambda runtime loop. All the work is in the
//! library.

mod cli;
mod lambda;
mod stdio;
mod worker_cli;

fn main() -> std::process::ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda::main();
    }
    cli::main()
}

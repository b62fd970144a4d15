//! The `firehose-replay` binary: parse the command line and run. All the work is in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

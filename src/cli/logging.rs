//! The CLI's log output: human-readable on a terminal, JSON lines for machines.

use firehose_replay::logging::log_filter;

pub(crate) fn init_logging(level: &str, json: bool) {
    let filter = log_filter(level);
    if json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_ansi(false)
            .with_env_filter(filter)
            .with_writer(crate::stdio::lossy_stderr)
            .log_internal_errors(false)
            .init();
        return;
    }
    // A closed stderr (`2>&1 | head`) drops log lines; the work goes on.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::stdio::lossy_stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

//! Standard streams that never panic. `eprintln!`/`println!` panic when the stream is closed
//! (`firehose-replay … 2>&1 | head -1`: a broken pipe), and a panic on a logging call would stop
//! the work it reports on. Here a closed stderr drops the line and the work goes on; a closed
//! stdout ends the run quietly (see [`OutputClosed`]).

use std::io::{self, Write};

/// `eprintln!` that never panics: a line stderr cannot take is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
pub(crate) use say;

/// A writer whose writes always succeed: what the inner writer refuses (`EPIPE`, `EBADF`, a
/// full disk) is dropped. For log output, which must never stop or fail the work.
pub(crate) struct Lossy<W>(W);

impl<W: Write> Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Stderr for `tracing_subscriber`'s `with_writer`.
pub(crate) fn lossy_stderr() -> Lossy<io::Stderr> {
    Lossy(io::stderr())
}

/// Stdout for `tracing_subscriber`'s `with_writer` (Lambda logs to stdout).
pub(crate) fn lossy_stdout() -> Lossy<io::Stdout> {
    Lossy(io::stdout())
}

/// Standard output was closed by its reader: the CLI exits 141 (as a tool killed by `SIGPIPE`
/// would) without an error message.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub(crate) struct OutputClosed;

/// Writes to stdout through `f` and flushes; a broken pipe becomes [`OutputClosed`].
pub(crate) fn print(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_lossy_writer_reports_success_when_its_stream_is_closed() {
        let mut w = Lossy(Closed);
        assert_eq!(w.write(b"a log line\n").unwrap(), 11);
        w.write_all(b"another\n").unwrap();
        w.flush().unwrap();
    }
}

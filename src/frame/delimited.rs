//! `--framing newline` and `--framing delimiter:<byte>`: one record per delimited stretch.
//!
//! Records are trimmed of surrounding JSON whitespace (and a CR before a line feed), and a
//! record's offset is that of its first non-blank byte, so a record gets the same position —
//! hence the same row ID — under every framing that can read it.

use std::io::{self, Read};

use super::input::Input;
use super::scan::is_space;
use super::spool::Held;
use super::Step;

#[derive(Default)]
pub(crate) struct Delimited {
    /// How far the unconsumed data was already searched for the delimiter.
    scan: usize,
    /// An oversized record being spooled.
    held: Option<Held>,
}

impl Delimited {
    pub(crate) fn next<R: Read>(
        &mut self,
        input: &mut Input<R>,
        delimiter: u8,
        max: usize,
    ) -> io::Result<Step> {
        loop {
            let data = input.data();
            if let Some(p) = memchr::memchr(delimiter, &data[self.scan..]) {
                let stop = self.scan + p;
                self.scan = 0;
                if let Some(mut held) = self.held.take() {
                    held.spool.append(&data[..stop])?;
                    input.consume(stop + 1);
                    return Ok(held.too_large(max));
                }
                let step = record(input, stop, max)?;
                input.consume(stop + 1);
                match step {
                    Some(s) => return Ok(s),
                    None => continue,
                }
            }
            self.scan = data.len();
            if self.held.is_some() || data.len() > max {
                // Longer than any record may be: keep it on disk, not in memory.
                match &mut self.held {
                    Some(h) => h.spool.append(data)?,
                    None => self.held = Some(Held::start(input.offset(), data)?),
                }
                let n = data.len();
                input.consume(n);
                self.scan = 0;
            }
            let want = input.avail() + 1;
            if !input.fill(want)? {
                if let Some(held) = self.held.take() {
                    return Ok(held.too_large(max));
                }
                let n = input.avail();
                if n == 0 {
                    return Ok(Step::End);
                }
                let step = record(input, n, max)?;
                input.consume(n);
                self.scan = 0;
                return Ok(step.unwrap_or(Step::End));
            }
        }
    }
}

/// The record in the first `stop` unconsumed bytes, or `None` if they are blank.
fn record<R: Read>(input: &Input<R>, stop: usize, max: usize) -> io::Result<Option<Step>> {
    let data = &input.data()[..stop];
    let Some(first) = data.iter().position(|&b| !is_space(b)) else {
        return Ok(None);
    };
    let last = data.iter().rposition(|&b| !is_space(b)).expect("non-blank");
    let bytes = &data[first..=last];
    let offset = input.offset() + first as u64;
    if bytes.len() > max {
        let held = Held::start(offset, bytes)?;
        return Ok(Some(held.too_large(max)));
    }
    Ok(Some(Step::Record {
        at: input.start + first,
        len: bytes.len(),
        offset,
        checked: false,
    }))
}

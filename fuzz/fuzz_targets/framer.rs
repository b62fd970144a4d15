//! Arbitrary bytes through the framer, under every framing, read in arbitrary small chunks.
//!
//! Input: byte 0 seeds the chunk sizes, byte 1 sets `max_record_bytes` (1..=64), the rest is
//! the stream. Invariants: no panic; every record is the input's bytes at its offset; records
//! and errors come in increasing offset order; the framer ends.

#![no_main]

use std::io::{self, Read};

use firehose_replay::frame::{Event, Framer, Framing};
use libfuzzer_sys::fuzz_target;

/// Hands out `data` a few bytes at a time, in sizes drawn from `seed`.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    state: u32,
}

impl<'a> Chunked<'a> {
    fn new(data: &'a [u8], seed: u8) -> Self {
        Chunked {
            data,
            pos: 0,
            state: u32::from(seed) | 0x100,
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // xorshift32: chunk sizes 1..=16 in a sequence fixed by the seed.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let chunk = 1 + (self.state % 16) as usize;
        let n = chunk.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn check(input: &[u8], seed: u8, framing: Framing, max: usize) {
    let mut framer = Framer::new(Chunked::new(input, seed), framing, max);
    let mut last: Option<u64> = None;
    let mut events = 0usize;
    loop {
        let offset = match framer.next_event() {
            Ok(None) => break,
            Ok(Some(Event::Record(frame))) => {
                let start = usize::try_from(frame.offset).expect("offset fits in usize");
                let end = start
                    .checked_add(frame.bytes.len())
                    .expect("record end overflows");
                assert!(
                    end <= input.len(),
                    "{framing:?}: record at {start}+{} runs past the input ({})",
                    frame.bytes.len(),
                    input.len()
                );
                assert_eq!(
                    &input[start..end],
                    frame.bytes,
                    "{framing:?}: record bytes are not the input at offset {start}"
                );
                frame.offset
            }
            Ok(Some(Event::Error(error))) => {
                assert!(
                    error.offset <= input.len() as u64,
                    "{framing:?}: error offset {} past the input ({})",
                    error.offset,
                    input.len()
                );
                error.offset
            }
            // In-memory input cannot fail to read; anything else is the framer's own failure.
            Err(e) => panic!("{framing:?}: framer failed: {e}"),
        };
        if let Some(prev) = last {
            assert!(
                offset > prev,
                "{framing:?}: event at {offset} after one at {prev}"
            );
        }
        last = Some(offset);
        events += 1;
        // Every event starts at a later byte, so there are at most as many as input bytes.
        assert!(
            events <= input.len() + 1,
            "{framing:?}: framer does not terminate ({events} events from {} bytes)",
            input.len()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [seed, max, input @ ..] = data else {
        return;
    };
    let max = 1 + usize::from(*max % 64);
    for framing in [
        Framing::Auto,
        Framing::Newline,
        Framing::Concatenated,
        Framing::Delimiter(b'\x1e'),
    ] {
        check(input, *seed, framing, max);
    }
});

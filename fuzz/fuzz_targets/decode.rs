//! Arbitrary bytes through decompression (detection by magic, every decoder, nested archives),
//! read to the end: errors are fine, panics and hangs are not.

#![no_main]

use std::io::{Cursor, Read};

use firehose_replay::decode::{decompress, CompressionChoice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut decoded) = decompress(
        Box::new(Cursor::new(data.to_vec())),
        "x.gz",
        CompressionChoice::Auto,
        1 << 20,
    ) else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = decoded.reader.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
});

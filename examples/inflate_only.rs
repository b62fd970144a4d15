//! The floor for any gzip replay: inflate FILE with the same flate2/zlib-rs build the tool
//! uses and discard the output. `scripts/bench.sh` compares the tool against it.

use std::io::{self, BufReader, Read};

fn main() -> io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: inflate_only FILE.gz");
    let file = BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
    let mut decoder = flate2::bufread::MultiGzDecoder::new(file);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = decoder.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    println!("{total}");
    Ok(())
}

//! The compressions Firehose writes, how to recognise them, and their streaming decoders.

use std::io::{BufRead, Read};
use std::str::FromStr;

/// A compression format. Firehose writes `UNCOMPRESSED`, `GZIP`, `ZIP`, `Snappy` (the Snappy
/// framing format) and `HADOOP_SNAPPY`; zstd is accepted because producers and re-archivers use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Snappy,
    HadoopSnappy,
    Zip,
}

/// `--compression`: detect, or force one format for the outermost layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionChoice {
    #[default]
    Auto,
    Fixed(Compression),
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const SNAPPY_FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Snappy => "snappy",
            Compression::HadoopSnappy => "hadoop-snappy",
            Compression::Zip => "zip",
        }
    }

    /// Recognises a format from the first bytes of a stream (16 are enough).
    pub fn from_magic(head: &[u8]) -> Option<Compression> {
        if head.starts_with(GZIP_MAGIC) {
            Some(Compression::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) {
            Some(Compression::Zstd)
        } else if head.starts_with(SNAPPY_FRAMED_MAGIC) {
            Some(Compression::Snappy)
        } else if head.starts_with(ZIP_MAGIC) {
            Some(Compression::Zip)
        } else if crate::decode::hadoop_snappy::looks_like_block_header(head) {
            Some(Compression::HadoopSnappy)
        } else {
            None
        }
    }

    /// Falls back to the key's extension; anything unknown is taken as uncompressed.
    pub fn from_name(name: &str) -> Compression {
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "gz" | "gzip" => Compression::Gzip,
            "zst" | "zstd" => Compression::Zstd,
            "snappy" | "sz" => Compression::Snappy,
            "zip" => Compression::Zip,
            _ => Compression::None,
        }
    }
}

impl FromStr for CompressionChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => CompressionChoice::Auto,
            "none" => CompressionChoice::Fixed(Compression::None),
            "gzip" => CompressionChoice::Fixed(Compression::Gzip),
            "zstd" => CompressionChoice::Fixed(Compression::Zstd),
            "snappy" => CompressionChoice::Fixed(Compression::Snappy),
            "hadoop-snappy" => CompressionChoice::Fixed(Compression::HadoopSnappy),
            "zip" => CompressionChoice::Fixed(Compression::Zip),
            other => {
                return Err(format!(
                    "unknown compression `{other}` (expected auto, none, gzip, zstd, snappy, hadoop-snappy or zip)"
                ))
            }
        })
    }
}

/// The streaming decoder for one layer. gzip is multi-member: `cat a.gz b.gz` decodes to the
/// concatenation, which is exactly what CloudWatch Logs subscriptions deliver.
///
/// A ZIP archive unwraps compressed and archived entries itself, and every byte decoded anywhere
/// inside it counts against `max_decompressed` (see [`crate::decode::zip`]); other formats'
/// output is for the caller to cap.
pub fn decoder<R: BufRead + Send + 'static>(
    c: Compression,
    input: R,
    max_decompressed: u64,
) -> Box<dyn Read + Send> {
    match c {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(input) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailingReader(Some(e))),
        },
        Compression::Snappy => Box::new(snap::read::FrameDecoder::new(input)),
        Compression::HadoopSnappy => Box::new(crate::decode::hadoop_snappy::Decoder::new(input)),
        Compression::Zip => Box::new(crate::decode::zip::Decoder::new(input, max_decompressed)),
    }
}

/// A reader that reports a decoder's construction error on first read.
struct FailingReader(Option<std::io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("decoder unavailable")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_wins_over_a_misleading_extension() {
        assert_eq!(
            Compression::from_magic(&[0x1f, 0x8b, 8, 0]),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_magic(b"{\"a\":1}"), None);
        assert_eq!(Compression::from_name("x.GZ"), Compression::Gzip);
        assert_eq!(Compression::from_name("x.json"), Compression::None);
        assert_eq!(Compression::from_name("noext"), Compression::None);
    }

    #[test]
    fn parses_every_cli_spelling() {
        for s in [
            "auto",
            "none",
            "gzip",
            "zstd",
            "snappy",
            "hadoop-snappy",
            "zip",
        ] {
            assert!(s.parse::<CompressionChoice>().is_ok(), "{s}");
        }
        assert!("lz4"
            .parse::<CompressionChoice>()
            .unwrap_err()
            .contains("lz4"));
    }
}

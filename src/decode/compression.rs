//! The compressions Firehose writes, how to recognise them, and their streaming decoders.

use std::io::{BufRead, Read};
use std::str::FromStr;

/// A compression format. Firehose writes `UNCOMPRESSED`, `GZIP`, `ZIP`, `Snappy` (snappy-java's
/// stream format, [`Compression::SnappyJava`]) and `HADOOP_SNAPPY`; zstd and the Snappy framing
/// format are accepted because producers and re-archivers use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// The Snappy framing format (`sNaPpY` stream identifier), as `snzip` and most libraries write.
    Snappy,
    /// xerial snappy-java's stream (`SnappyOutputStream`): Firehose's `Snappy`.
    SnappyJava,
    HadoopSnappy,
    Zip,
}

/// `--compression`: detect, or force one format for the outermost layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionChoice {
    #[default]
    Auto,
    Fixed(Compression),
    /// `snappy`: one of the three Snappy containers, told apart by its bytes (a `.snappy` object
    /// may be any of them); snappy-java's, Firehose's own, when the bytes say nothing.
    AnySnappy,
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
            Compression::Snappy => "snappy-framed",
            Compression::SnappyJava => "snappy-java",
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
        } else if head.starts_with(crate::decode::snappy_java::MAGIC) {
            Some(Compression::SnappyJava)
        } else if head.starts_with(ZIP_MAGIC) {
            Some(Compression::Zip)
        } else if crate::decode::hadoop_snappy::looks_like_block_header(head) {
            Some(Compression::HadoopSnappy)
        } else {
            None
        }
    }

    /// Whether this is one of the Snappy containers.
    pub fn is_snappy(self) -> bool {
        matches!(
            self,
            Compression::Snappy | Compression::SnappyJava | Compression::HadoopSnappy
        )
    }

    /// What S3's `Content-Encoding` names, if it names a compression read here. A list names its
    /// codings in the order they were applied, so the last one is the outermost.
    pub fn from_content_encoding(value: &str) -> Option<Compression> {
        let last = value.rsplit(',').map(str::trim).find(|c| {
            !c.is_empty()
                && !c.eq_ignore_ascii_case("identity")
                && !c.eq_ignore_ascii_case("aws-chunked")
        })?;
        Some(match last.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Compression::Gzip,
            "zstd" | "x-zstd" => Compression::Zstd,
            // Firehose's Snappy is snappy-java's stream.
            "snappy" | "snappy-java" | "x-snappy-java" | "xerial-snappy" => Compression::SnappyJava,
            "snappy-framed" | "x-snappy-framed" | "framed-snappy" => Compression::Snappy,
            "hadoop-snappy" | "x-hadoop-snappy" => Compression::HadoopSnappy,
            _ => return None,
        })
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
            // Firehose's `.snappy` is snappy-java's stream (or Hadoop's, found by its bytes);
            // `.sz` is the framing format's usual extension.
            "snappy" => Compression::SnappyJava,
            "sz" => Compression::Snappy,
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
            "snappy" => CompressionChoice::AnySnappy,
            "snappy-framed" | "framed-snappy" => CompressionChoice::Fixed(Compression::Snappy),
            "snappy-java" | "xerial-snappy" => CompressionChoice::Fixed(Compression::SnappyJava),
            "hadoop-snappy" => CompressionChoice::Fixed(Compression::HadoopSnappy),
            "zip" => CompressionChoice::Fixed(Compression::Zip),
            other => {
                return Err(format!(
                    "unknown compression `{other}` (expected auto, none, gzip, zstd, snappy, snappy-java, snappy-framed, hadoop-snappy or zip)"
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
        Compression::SnappyJava => Box::new(crate::decode::snappy_java::Decoder::new(input)),
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
        assert_eq!(Compression::from_name("x.snappy"), Compression::SnappyJava);
        assert_eq!(
            Compression::from_magic(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"),
            Some(Compression::SnappyJava)
        );
    }

    #[test]
    fn content_encoding_names_the_outermost_coding() {
        for (v, c) in [
            ("snappy-java", Some(Compression::SnappyJava)),
            ("Snappy", Some(Compression::SnappyJava)),
            ("x-snappy-framed", Some(Compression::Snappy)),
            ("hadoop-snappy", Some(Compression::HadoopSnappy)),
            ("identity, gzip", Some(Compression::Gzip)),
            ("gzip, aws-chunked", Some(Compression::Gzip)),
            ("br", None),
            ("", None),
        ] {
            assert_eq!(Compression::from_content_encoding(v), c, "{v}");
        }
    }

    #[test]
    fn parses_every_cli_spelling() {
        for s in [
            "auto",
            "none",
            "gzip",
            "zstd",
            "snappy",
            "snappy-java",
            "xerial-snappy",
            "snappy-framed",
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

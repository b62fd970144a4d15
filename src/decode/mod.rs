//! Bytes of an object → decompressed bytes, streaming.
//!
//! Compression is detected from magic bytes first (objects are often mislabelled, and the
//! stream's `FileExtension` can be anything), then from S3's `Content-Encoding`, then from the
//! key's extension. Decompressed output that itself starts with a compression magic is unwrapped
//! again: CloudWatch Logs objects are concatenated gzip members that Firehose may gzip once more
//! on top. ZIP entries that are
//! themselves archives or compressed are unwrapped entry by entry (see [`zip`]).
//!
//! Errors travel through `std::io::Read` as tagged `io::Error`s (see [`layer`]) so that, at the
//! end, a failure can be told apart as a source failure (fetch) or a decoding failure
//! (decompress) and classified.

pub mod compression;
pub mod hadoop_snappy;
pub mod layer;
pub mod limit;
pub mod members;
pub mod pump;
pub mod snappy_block;
pub mod snappy_java;
pub mod sniff;
pub mod zip;

pub use compression::{Compression, CompressionChoice};
pub use layer::{into_error, SourceReader};
pub use limit::Counter;

use std::io::{self, BufReader, Cursor, Read};

use crate::error::Error;

/// How many compression layers are unwrapped at most (object gzip → member gzip → JSON is two).
const MAX_LAYERS: usize = 3;
/// Buffer size for decoders that read through a `BufRead`: large reads keep syscalls and
/// per-call overhead out of the profile.
const READ_BUFFER: usize = 256 * 1024;

/// A decompressed stream and what was found on the way.
pub struct Decoded {
    pub reader: Box<dyn Read + Send>,
    /// Compression layers unwrapped, outermost first (empty: the object was not compressed).
    pub layers: Vec<Compression>,
    /// Where gzip members start in `reader`'s output, when the innermost layer is gzip: record
    /// boundaries for the framer's resynchronisation.
    pub members: Option<members::Members>,
}

/// Wraps `source` (the object's raw bytes) in the decoders it needs.
///
/// `name` is the key or file name, used only when magic bytes are inconclusive. Every layer's
/// output is capped at `max_decompressed` bytes so that a decompression bomb fails cleanly; inside
/// a ZIP archive, all that its nested entries decode counts against one such cap.
pub fn decompress(
    source: Box<dyn Read + Send>,
    name: &str,
    choice: CompressionChoice,
    max_decompressed: u64,
) -> Result<Decoded, Error> {
    decompress_object(
        source,
        name,
        None,
        choice,
        (max_decompressed, &Counter::default()),
    )
}

/// [`decompress`] with the object's `Content-Encoding`, when its store gave one: it names the
/// format where the bytes do not (a damaged or cut header), ahead of the key's extension.
/// `consumed` counts the object's bytes the outermost decoder has taken: a decoding error's
/// position in the object.
pub fn decompress_object(
    source: Box<dyn Read + Send>,
    name: &str,
    content_encoding: Option<&str>,
    choice: CompressionChoice,
    (max_decompressed, consumed): (u64, &Counter),
) -> Result<Decoded, Error> {
    let mut reader: Box<dyn Read + Send> = Box::new(SourceReader::new(source));
    let mut layers = Vec::new();
    let mut gz_members = None;
    loop {
        // Enough for every magic and for telling text from binary (see [`sniff`]).
        let (head, rest) = peek(reader, sniff::SAMPLE).map_err(into_error)?;
        let found = match (layers.is_empty(), choice) {
            // An empty object is zero records whatever its name or compression says (a
            // compressor writes at least a header, but an empty upload is no corrupt stream).
            (true, _) if head.is_empty() => Compression::None,
            (true, CompressionChoice::Fixed(c)) => c,
            (true, CompressionChoice::AnySnappy) => Compression::from_magic(&head)
                .filter(|c| c.is_snappy())
                .unwrap_or(Compression::SnappyJava),
            (true, CompressionChoice::Auto) => {
                Compression::from_magic(&head).unwrap_or_else(|| {
                    // JSON text is not compressed whatever the name says (Firehose's FileExtension
                    // is free-form, so `.gz` on plain text happens); otherwise trust the extension,
                    // which turns a damaged header into a clear decompression error.
                    if looks_like_json_text(&head) {
                        Compression::None
                    } else {
                        content_encoding
                            .and_then(Compression::from_content_encoding)
                            .unwrap_or_else(|| Compression::from_name(name))
                    }
                })
            }
            // Inner layers are recognised by magic only: a JSON record never starts with one.
            (false, _) => Compression::from_magic(&head).unwrap_or(Compression::None),
        };
        if found == Compression::None {
            if let Some(what) = sniff::not_records(&head) {
                return Err(Error::permanent(
                    crate::error::Stage::Frame,
                    crate::error::Cause::NotRecords(what),
                ));
            }
        }
        let joined = Cursor::new(head).chain(rest);
        if found == Compression::None || layers.len() == MAX_LAYERS {
            return Ok(Decoded {
                reader: Box::new(joined),
                layers,
                members: gz_members,
            });
        }
        let input = BufReader::with_capacity(READ_BUFFER, joined);
        let decoder = if layers.is_empty() {
            layer_decoder(
                found,
                limit::Consumed::new(input, consumed.clone()),
                max_decompressed,
                &mut gz_members,
            )
        } else {
            layer_decoder(found, input, max_decompressed, &mut gz_members)
        };
        layers.push(found);
        reader = Box::new(limit::Limit::new(
            layer::Labelled::new(decoder, found.name()),
            max_decompressed,
        ));
        if found == Compression::Zip {
            // A ZIP unwraps its entries itself (each entry separately: entries that are archives
            // or compressed are not one stream), so its output is records, not another layer.
            return Ok(Decoded {
                reader,
                layers,
                members: None,
            });
        }
    }
}

fn looks_like_json_text(head: &[u8]) -> bool {
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'[' | b'"'))
}

/// Reads up to `n` bytes (fewer only at end of stream) and hands back the rest of the stream.
pub(crate) fn peek<R: Read>(mut reader: R, n: usize) -> io::Result<(Vec<u8>, R)> {
    let mut head = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok((head, reader))
}

/// One layer's decoder. Gzip goes through [`members::MultiGz`], which records where each member
/// starts so the framer can end a bad span at a member boundary; the member list kept is the
/// innermost gzip layer's (the one whose output the framer reads).
fn layer_decoder<R: std::io::BufRead + Send + 'static>(
    found: Compression,
    input: R,
    max_decompressed: u64,
    gz_members: &mut Option<members::Members>,
) -> Box<dyn Read + Send> {
    if found == Compression::Gzip {
        let m = members::Members::default();
        *gz_members = Some(m.clone());
        Box::new(members::MultiGz::new(input, m))
    } else {
        *gz_members = None;
        compression::decoder(found, input, max_decompressed)
    }
}

//! ZIP archives read front to back, without the central directory.
//!
//! The central directory sits at the end of the file, which a stream (an S3 body) reaches last.
//! Firehose's `ZIP` objects hold their data in ordinary local entries, so walking the local
//! headers and inflating each entry in turn gives the content as a stream; the entries'
//! contents are concatenated. Deflate streams mark their own end, so entries written with a
//! trailing data descriptor (sizes unknown up front) work too. `zip` crates need `Seek`, which a
//! stream does not offer — hence this small reader.
//!
//! An entry that is itself an archive or compressed (a ZIP of ZIPs, of gzip or zstd files: any
//! format [`Compression::from_magic`] recognises) is unwrapped on its own, still streaming, and
//! its content takes the entry's place; nesting goes at most [`MAX_NESTED`] layers deep below
//! the outermost archive, and deeper is a decoding error, never a silent drop. Every byte decoded
//! anywhere inside one archive — each entry's stored or inflated bytes at every level, and each
//! nested decoder's output — counts once against one shared budget, so a bomb hidden in a nested
//! archive (or after a nested archive's end, where no output shows it) stops at the cap.

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::compression::{self, Compression};
use super::layer::{label, CapExceeded, Labelled};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;

/// How many archive or compression layers an entry may have below the outermost ZIP: a ZIP
/// entry that is a ZIP whose entries are gzip files is two.
pub const MAX_NESTED: usize = 4;
/// Read buffer of each nested layer.
const NESTED_BUFFER: usize = 64 * 1024;
/// Enough bytes to recognise any compression magic.
const MAGIC_LEN: usize = 16;

/// Decoded bytes allowed inside one archive, shared by everything nested in it.
#[derive(Clone)]
struct Budget {
    spent: Arc<AtomicU64>,
    cap: u64,
}

impl Budget {
    fn new(cap: u64) -> Self {
        Budget {
            spent: Arc::default(),
            cap,
        }
    }

    fn spend(&self, n: usize) -> io::Result<()> {
        let total = self.spent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.cap {
            return Err(io::Error::other(CapExceeded { cap: self.cap }));
        }
        Ok(())
    }
}

/// One entry's data as stored or inflated; it ends where the entry does.
enum Body<R> {
    Stored(io::Take<R>),
    Deflated(Box<flate2::bufread::DeflateDecoder<R>>),
}

impl<R: BufRead> Body<R> {
    fn into_inner(self) -> R {
        match self {
            Body::Stored(r) => r.into_inner(),
            Body::Deflated(d) => d.into_inner(),
        }
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Stored(r) => {
                let n = r.read(buf)?;
                if n == 0 && r.limit() > 0 && !buf.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n)
            }
            Body::Deflated(d) => d.read(buf),
        }
    }
}

/// An entry being read: its data, counted against the budget, and what follows it.
struct Entry<R> {
    body: Body<R>,
    end: EntryEnd,
    budget: Budget,
}

impl<R: BufRead> Read for Entry<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Labelled here so that a nested decoder reading this entry does not claim its errors.
        let n = self.body.read(buf).map_err(|e| label(e, "zip"))?;
        self.budget.spend(n)?;
        Ok(n)
    }
}

impl<R: BufRead> Entry<R> {
    /// Reads what is left of the entry (a nested archive's central directory, say) and skips
    /// its data descriptor: the stream is then at the next header.
    fn finish(mut self) -> io::Result<R> {
        io::copy(&mut self, &mut io::sink())?;
        skip_descriptor(self.body.into_inner(), self.end)
    }
}

/// An entry handed to the nested decoders that read it; taken back once they are done.
type SharedEntry<R> = Arc<Mutex<Option<Entry<R>>>>;

/// The innermost nested decoder's input.
struct EntryReader<R>(SharedEntry<R>);

impl<R: BufRead> Read for EntryReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.lock().as_deref_mut() {
            Ok(Some(entry)) => entry.read(buf),
            _ => Err(corrupt("ZIP entry unavailable")),
        }
    }
}

/// A nested decoder's output, counted against the budget.
struct Spending<R> {
    inner: R,
    budget: Budget,
}

impl<R: Read> Read for Spending<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.budget.spend(n)?;
        Ok(n)
    }
}

enum State<R> {
    /// Between entries: the next bytes are a header.
    Header(R),
    /// An entry passed through as it is, after the bytes peeked from it.
    Plain {
        head: Vec<u8>,
        at: usize,
        entry: Entry<R>,
    },
    /// An entry read through the decoders its content needs.
    Nested {
        reader: Box<dyn Read + Send>,
        entry: SharedEntry<R>,
    },
    Done,
    /// Only while switching states.
    Poisoned,
}

#[derive(Clone, Copy)]
struct EntryEnd {
    has_descriptor: bool,
    zip64: bool,
}

pub struct Decoder<R> {
    state: State<R>,
    /// Layers between this archive and the outermost one (0: this is the outermost).
    depth: usize,
    budget: Budget,
}

impl<R: BufRead> Decoder<R> {
    /// The outermost archive: everything decoded inside it, at any depth, counts against
    /// `max_decompressed`.
    pub fn new(inner: R, max_decompressed: u64) -> Self {
        Decoder {
            state: State::Header(inner),
            depth: 0,
            budget: Budget::new(max_decompressed),
        }
    }
}

fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn too_deep() -> io::Error {
    corrupt(format!(
        "ZIP entry nests archives or compression more than {MAX_NESTED} layers deep"
    ))
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Reads the next local header; `None` once the central directory (or the end) is reached.
fn open_body<R: BufRead>(mut r: R) -> io::Result<Option<(Body<R>, EntryEnd)>> {
    let mut sig = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut sig[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    match u32::from_le_bytes(sig) {
        LOCAL_HEADER => {}
        CENTRAL_HEADER | END_OF_CENTRAL => return Ok(None),
        other => return Err(corrupt(format!("unexpected ZIP signature {other:#010x}"))),
    }
    let mut h = [0u8; 26];
    r.read_exact(&mut h)?;
    let flags = read_u16(&h, 2);
    let method = read_u16(&h, 4);
    let mut compressed = read_u32(&h, 14) as u64;
    let name_len = read_u16(&h, 22) as u64;
    let extra_len = read_u16(&h, 24) as usize;
    io::copy(&mut (&mut r).take(name_len), &mut io::sink())?;
    let mut extra = vec![0u8; extra_len];
    r.read_exact(&mut extra)?;
    let mut zip64 = false;
    // ZIP64: sizes of 0xFFFFFFFF live in extra field 0x0001 (uncompressed first, then compressed).
    let mut i = 0;
    while i + 4 <= extra.len() {
        let id = read_u16(&extra, i);
        let len = read_u16(&extra, i + 2) as usize;
        if id == 0x0001 && i + 4 + 16 <= extra.len() && len >= 16 {
            zip64 = true;
            if compressed == 0xFFFF_FFFF {
                compressed = u64::from_le_bytes(extra[i + 12..i + 20].try_into().unwrap());
            }
        }
        i += 4 + len;
    }
    let end = EntryEnd {
        has_descriptor: flags & 0x08 != 0,
        zip64,
    };
    if flags & 0x01 != 0 {
        return Err(corrupt("encrypted ZIP entries are not supported"));
    }
    let body = match method {
        0 if end.has_descriptor => {
            return Err(corrupt(
                "stored ZIP entry without sizes in its header cannot be streamed",
            ))
        }
        0 => Body::Stored(r.take(compressed)),
        8 => Body::Deflated(Box::new(flate2::bufread::DeflateDecoder::new(r))),
        m => return Err(corrupt(format!("unsupported ZIP compression method {m}"))),
    };
    Ok(Some((body, end)))
}

/// Skips an entry's data descriptor, if it has one: an optional signature, the CRC and the sizes.
fn skip_descriptor<R: BufRead>(mut r: R, end: EntryEnd) -> io::Result<R> {
    if end.has_descriptor {
        let size_len = if end.zip64 { 16 } else { 8 };
        let mut first = [0u8; 4];
        r.read_exact(&mut first)?;
        let rest = if u32::from_le_bytes(first) == DATA_DESCRIPTOR {
            4 + size_len
        } else {
            size_len
        };
        io::copy(&mut (&mut r).take(rest as u64), &mut io::sink())?;
    }
    Ok(r)
}

/// Wraps `reader` (an entry's content, `depth` layers below the outermost archive) in a decoder
/// for each layer its bytes turn out to have.
fn unwrap_layers(
    mut reader: Box<dyn Read + Send>,
    mut depth: usize,
    budget: &Budget,
) -> io::Result<Box<dyn Read + Send>> {
    loop {
        let (head, rest) = super::peek(reader, MAGIC_LEN)?;
        let found = Compression::from_magic(&head);
        let joined = Box::new(Cursor::new(head).chain(rest));
        let Some(found) = found else {
            return Ok(joined);
        };
        if depth == MAX_NESTED {
            return Err(too_deep());
        }
        depth += 1;
        let input = BufReader::with_capacity(NESTED_BUFFER, joined);
        reader = match found {
            // A nested archive counts its own entries and layers.
            Compression::Zip => Box::new(Labelled::new(
                Decoder {
                    state: State::Header(input),
                    depth,
                    budget: budget.clone(),
                },
                "zip",
            )),
            other => Box::new(Spending {
                inner: Labelled::new(compression::decoder(other, input, budget.cap), other.name()),
                budget: budget.clone(),
            }),
        };
    }
}

impl<R: BufRead + Send + 'static> Decoder<R> {
    /// Opens the next entry and decides from its first bytes how to read it.
    fn open_entry(&self, r: R) -> io::Result<State<R>> {
        let Some((body, end)) = open_body(r)? else {
            return Ok(State::Done);
        };
        let entry = Entry {
            body,
            end,
            budget: self.budget.clone(),
        };
        let (head, entry) = super::peek(entry, MAGIC_LEN)?;
        if Compression::from_magic(&head).is_none() {
            return Ok(State::Plain { head, at: 0, entry });
        }
        let shared: SharedEntry<R> = Arc::new(Mutex::new(Some(entry)));
        let content = Box::new(Cursor::new(head).chain(EntryReader(shared.clone())));
        Ok(State::Nested {
            reader: unwrap_layers(content, self.depth, &self.budget)?,
            entry: shared,
        })
    }
}

impl<R: BufRead + Send + 'static> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = match &mut self.state {
                State::Done => return Ok(0),
                State::Poisoned => return Err(corrupt("ZIP reader failed earlier")),
                State::Header(_) => 0,
                State::Plain { head, at, entry } => {
                    if *at < head.len() {
                        let n = buf.len().min(head.len() - *at);
                        buf[..n].copy_from_slice(&head[*at..*at + n]);
                        *at += n;
                        n
                    } else {
                        entry.read(buf)?
                    }
                }
                State::Nested { reader, .. } => reader.read(buf)?,
            };
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The current entry (or header position) is exhausted: move to the next entry.
            let next = match std::mem::replace(&mut self.state, State::Poisoned) {
                State::Header(r) => self.open_entry(r)?,
                State::Plain { entry, .. } => State::Header(entry.finish()?),
                State::Nested { reader, entry } => {
                    drop(reader);
                    let entry = entry
                        .lock()
                        .ok()
                        .and_then(|mut e| e.take())
                        .ok_or_else(|| corrupt("ZIP entry unavailable"))?;
                    State::Header(entry.finish()?)
                }
                other => other,
            };
            self.state = next;
        }
    }
}

#[cfg(test)]
mod tests;

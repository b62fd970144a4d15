//! ZIP archives read front to back, without the central directory.
//!
//! The central directory sits at the end of the file, which a stream (an S3 body) reaches last.
//! Firehose's `ZIP` objects hold their data in ordinary local entries, so walking the local
//! headers and inflating each entry in turn gives the content as a stream; the entries'
//! contents are concatenated. Deflate streams mark their own end, so entries written with a
//! trailing data descriptor (sizes unknown up front) work too. `zip` crates need `Seek`, which a
//! stream does not offer — hence this small reader.

use std::io::{self, BufRead, Read};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;

enum State<R: BufRead> {
    /// Between entries: the next bytes are a header.
    Header(R),
    Stored(io::Take<R>, EntryEnd),
    Deflated(Box<flate2::bufread::DeflateDecoder<R>>, EntryEnd),
    Done,
    /// Only while switching states.
    Poisoned,
}

#[derive(Clone, Copy)]
struct EntryEnd {
    has_descriptor: bool,
    zip64: bool,
}

pub struct Decoder<R: BufRead> {
    state: State<R>,
}

impl<R: BufRead> Decoder<R> {
    pub fn new(inner: R) -> Self {
        Decoder {
            state: State::Header(inner),
        }
    }
}

fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Reads the next local header; `None` once the central directory (or the end) is reached.
fn open_entry<R: BufRead>(mut r: R) -> io::Result<State<R>> {
    let mut sig = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut sig[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(State::Done)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    match u32::from_le_bytes(sig) {
        LOCAL_HEADER => {}
        CENTRAL_HEADER | END_OF_CENTRAL => return Ok(State::Done),
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
    match method {
        0 if end.has_descriptor => Err(corrupt(
            "stored ZIP entry without sizes in its header cannot be streamed",
        )),
        0 => Ok(State::Stored(r.take(compressed), end)),
        8 => Ok(State::Deflated(
            Box::new(flate2::bufread::DeflateDecoder::new(r)),
            end,
        )),
        m => Err(corrupt(format!("unsupported ZIP compression method {m}"))),
    }
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

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = match &mut self.state {
                State::Done => return Ok(0),
                State::Poisoned => return Err(corrupt("ZIP reader failed earlier")),
                State::Header(_) => 0,
                State::Stored(r, _) => {
                    let n = r.read(buf)?;
                    if n == 0 && r.limit() > 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    n
                }
                State::Deflated(d, _) => d.read(buf)?,
            };
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The current entry (or header position) is exhausted: move to the next entry.
            let next = match std::mem::replace(&mut self.state, State::Poisoned) {
                State::Header(r) => open_entry(r)?,
                State::Stored(r, end) => State::Header(skip_descriptor(r.into_inner(), end)?),
                State::Deflated(d, end) => State::Header(skip_descriptor(d.into_inner(), end)?),
                other => other,
            };
            self.state = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal ZIP writer for the tests: one deflated entry with a data descriptor, one stored.
    fn zip_bytes(entries: &[(&[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (data, deflate) in entries {
            let payload = if *deflate {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&(if *deflate { 8u16 } else { 0 }).to_le_bytes()); // flags
            out.extend_from_slice(&(if *deflate { 8u16 } else { 0 }).to_le_bytes()); // method
            out.extend_from_slice(&[0u8; 8]); // time, date, crc
            let size = if *deflate { 0 } else { payload.len() as u32 };
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.push(b'f');
            out.extend_from_slice(&payload);
            if *deflate {
                out.extend_from_slice(&DATA_DESCRIPTOR.to_le_bytes());
                out.extend_from_slice(&[0u8; 4]);
                out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            }
        }
        out.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
        out.extend_from_slice(&[0u8; 42]);
        out
    }

    #[test]
    fn streams_entries_in_order_with_and_without_descriptors() {
        let z = zip_bytes(&[(b"{\"a\":1}\n", true), (b"{\"a\":2}\n", false)]);
        let mut out = String::new();
        Decoder::new(&z[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn a_truncated_archive_is_an_error() {
        let z = zip_bytes(&[(b"{\"a\":1}\n", false)]);
        let cut = &z[..40];
        assert!(Decoder::new(cut).read_to_end(&mut Vec::new()).is_err());
    }
}

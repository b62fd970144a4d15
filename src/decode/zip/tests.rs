//! Unit tests of the parent module.

use super::*;
use crate::decode::{decompress, CompressionChoice};
use crate::error::{Cause, Class, Stage};
use std::io::Write;

/// A minimal ZIP writer for the tests: deflated entries with a data descriptor, stored ones
/// with their sizes in the header.
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

/// One deflated entry.
fn zip1(data: &[u8]) -> Vec<u8> {
    zip_bytes(&[(data, true)])
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// `{"n":from}\n` … `{"n":to-1}\n`.
fn records(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .map(|i| format!("{{\"n\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

const CAP: u64 = 1 << 30;

fn unzip(z: Vec<u8>, cap: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Decoder::new(Cursor::new(z), cap).read_to_end(&mut out)?;
    Ok(out)
}

/// Through [`decompress`], as the pipeline reads an object, to the classified error.
fn decompress_zip(z: Vec<u8>, cap: u64) -> Result<Vec<u8>, crate::error::Error> {
    let mut d = decompress(
        Box::new(Cursor::new(z)),
        "x.zip",
        CompressionChoice::Auto,
        cap,
    )?;
    let mut out = Vec::new();
    d.reader
        .read_to_end(&mut out)
        .map_err(crate::decode::into_error)?;
    Ok(out)
}

/// Wraps `data` in `n` ZIP archives, each holding the previous one as a deflated entry.
fn nest_zips(data: &[u8], n: usize) -> Vec<u8> {
    (0..n).fold(data.to_vec(), |inner, _| zip1(&inner))
}

fn bomb(zeros: usize) -> Vec<u8> {
    vec![0u8; zeros]
}

#[test]
fn streams_entries_in_order_with_and_without_descriptors() {
    let z = zip_bytes(&[(b"{\"a\":1}\n", true), (b"{\"a\":2}\n", false)]);
    assert_eq!(unzip(z, CAP).unwrap(), b"{\"a\":1}\n{\"a\":2}\n");
}

#[test]
fn a_truncated_archive_is_an_error() {
    let z = zip_bytes(&[(b"{\"a\":1}\n", false)]);
    let cut = z[..40].to_vec();
    assert!(unzip(cut, CAP).is_err());
}

#[test]
fn a_zip_of_zips_yields_every_entry_of_every_inner_archive() {
    let inner: Vec<Vec<u8>> = (0..3)
        .map(|k| {
            zip_bytes(&[
                (&records(3 * k, 3 * k + 2), true),
                (&records(3 * k + 2, 3 * k + 3), false),
            ])
        })
        .collect();
    let outer = zip_bytes(&[(&inner[0], true), (&inner[1], false), (&inner[2], true)]);
    assert_eq!(unzip(outer, CAP).unwrap(), records(0, 9));
}

#[test]
fn a_zip_of_gzip_files_inflates_each_one_including_multi_member_gzip() {
    let mut multi = gzip(&records(2, 3));
    multi.extend(gzip(&records(3, 4)));
    let z = zip_bytes(&[(&gzip(&records(0, 2)), false), (&multi, true)]);
    assert_eq!(unzip(z, CAP).unwrap(), records(0, 4));
}

#[test]
fn a_zip_of_zstd_files_decodes_each_one() {
    let z = zip_bytes(&[
        (&zstd(&records(0, 5)), true),
        (&zstd(&records(5, 6)), false),
    ]);
    assert_eq!(unzip(z, CAP).unwrap(), records(0, 6));
}

#[test]
fn plain_compressed_and_archived_entries_mix_in_entry_order() {
    let z = zip_bytes(&[
        (&records(0, 1), true),
        (&gzip(&records(1, 2)), true),
        (&zip1(&records(2, 3)), false),
        (b"", false),
        (&zstd(&records(3, 4)), true),
        (&gzip(&zip1(&gzip(&records(4, 5)))), true),
        (&records(5, 6), false),
    ]);
    assert_eq!(unzip(z, CAP).unwrap(), records(0, 6));
}

#[test]
fn nesting_up_to_the_limit_decodes() {
    // The outermost archive plus MAX_NESTED archives below it.
    let z = nest_zips(&records(0, 2), MAX_NESTED + 1);
    assert_eq!(unzip(z, CAP).unwrap(), records(0, 2));
    let z = zip1(&gzip(&gzip(&zip1(&zstd(&records(0, 2))))));
    assert_eq!(unzip(z, CAP).unwrap(), records(0, 2));
}

#[test]
fn nesting_beyond_the_limit_is_a_permanent_decode_error_not_a_drop() {
    let z = zip_bytes(&[
        (&records(0, 1), true),
        (&nest_zips(&records(1, 2), MAX_NESTED + 1), true),
    ]);
    let e = decompress_zip(z, CAP).unwrap_err();
    assert_eq!((e.stage, e.class), (Stage::Decompress, Class::Permanent));
    match &e.cause {
        Cause::Corrupt { format, detail } => {
            assert_eq!(*format, "zip");
            assert!(detail.contains("more than 4 layers deep"), "{detail}");
        }
        other => panic!("unexpected cause {other:?}"),
    }
    // Compression layers count like archives.
    let z = zip1(&gzip(&gzip(&gzip(&gzip(&gzip(&records(0, 1)))))));
    assert!(matches!(
        decompress_zip(z, CAP).unwrap_err().cause,
        Cause::Corrupt { format: "zip", .. }
    ));
}

#[test]
fn a_bomb_inside_a_nested_zip_stops_at_the_cap() {
    let cap = 1 << 20;
    let z = zip_bytes(&[
        (&records(0, 1), true),
        (&zip1(&zip1(&bomb(32 << 20))), true),
    ]);
    assert!(z.len() < 200_000);
    let e = decompress_zip(z, cap).unwrap_err();
    assert_eq!((e.stage, e.class), (Stage::Decompress, Class::Permanent));
    assert!(
        matches!(e.cause, Cause::DecompressedTooLarge { cap: c } if c == cap),
        "{e}"
    );
}

#[test]
fn a_bomb_in_a_gzip_entry_stops_at_the_cap() {
    let cap = 1 << 20;
    let e = decompress_zip(zip1(&gzip(&bomb(32 << 20))), cap).unwrap_err();
    assert!(matches!(e.cause, Cause::DecompressedTooLarge { .. }), "{e}");
}

#[test]
fn bytes_hidden_after_a_nested_archive_count_against_the_cap() {
    // The inner archive yields one record; 32 MiB of zeros follow its central directory in
    // the same (deflated) entry. They never reach the output but still cost the work.
    let mut hidden = zip1(&records(0, 1));
    hidden.extend(bomb(32 << 20));
    let e = decompress_zip(zip1(&hidden), 1 << 20).unwrap_err();
    assert!(matches!(e.cause, Cause::DecompressedTooLarge { .. }), "{e}");
}

#[test]
fn the_cap_covers_the_sum_of_all_entries_not_each_one() {
    // Four entries of 300 KiB each: each is under a 1 MiB cap, together they are not.
    let big = bomb(300 << 10);
    let inner = zip_bytes(&[(&big, true), (&big, true)]);
    let z = zip_bytes(&[(&inner, true), (&gzip(&inner), true)]);
    let e = decompress_zip(z.clone(), 1 << 20).unwrap_err();
    assert!(matches!(e.cause, Cause::DecompressedTooLarge { .. }), "{e}");
    assert_eq!(unzip(z, 8 << 20).unwrap().len(), 4 * (300 << 10));
}

#[test]
fn a_corrupt_nested_gzip_is_reported_as_gzip() {
    let mut g = gzip(&records(0, 100));
    for b in &mut g[12..20] {
        *b ^= 0x5a;
    }
    let e = decompress_zip(zip_bytes(&[(&g, false)]), CAP).unwrap_err();
    assert_eq!((e.stage, e.class), (Stage::Decompress, Class::Permanent));
    assert!(
        matches!(e.cause, Cause::Corrupt { format: "gzip", .. }),
        "{e}"
    );
}

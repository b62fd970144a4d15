//! The framer + validator + row path on fixed uncompressed objects, single-threaded, for
//! `scripts/instr-budget.sh`: it counts this program's instructions under callgrind and
//! compares them with the committed budget, so a change that makes the per-record work dearer
//! fails CI without a timed test.
//!
//!     instr_budget newline FILE [concatenated FILE ...]
//!
//! Each FILE is framed with the given framing, unwrapped with the key check on (as
//! `record::batch` does), and every row is built (position row IDs, `_row_id` column) and
//! appended to a buffer that is cleared like a sink's. Inflating, threads and the sinks' I/O
//! are left out on purpose: their instruction counts move with the CPU's SIMD dispatch and
//! with scheduling, not with this project's code. Prints what it did, so a broken run shows.

use std::io;

use firehose_replay::frame::{Event, Framer, Framing};
use firehose_replay::object::ObjectRef;
use firehose_replay::record::{Emitted, Envelope, RecordErrorKind, Unwrapper};
use firehose_replay::row::{generated_columns, ObjectSeed, RowBuilder, RowIdSource};

const MAX_RECORD: usize = 10 * 1024 * 1024;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(2) {
        eprintln!("usage: instr_budget (newline|concatenated) FILE [...]");
        std::process::exit(2);
    }
    for pair in args.chunks(2) {
        let framing = match pair[0].as_str() {
            "newline" => Framing::Newline,
            "concatenated" => Framing::Concatenated,
            other => {
                eprintln!("unknown framing `{other}`");
                std::process::exit(2);
            }
        };
        let data = std::fs::read(&pair[1])?;
        let (records, rows, bytes) = replay(&data, framing)?;
        println!(
            "{} {}: {records} records, {rows} rows, {bytes} row bytes",
            pair[0], pair[1]
        );
        if rows == 0 || rows != records {
            eprintln!("expected one row per record");
            std::process::exit(1);
        }
    }
    Ok(())
}

fn replay(data: &[u8], framing: Framing) -> io::Result<(u64, u64, u64)> {
    let reserved = generated_columns(Some("_row_id"));
    let mut framer = Framer::new(data, framing, MAX_RECORD);
    framer.check_keys(&reserved);
    let mut unwrapper = Unwrapper::new(Envelope::None, MAX_RECORD);
    unwrapper.check_keys(&reserved);
    let seed = ObjectSeed::new(&ObjectRef::new("bucket", "fixed/object.json"));
    let mut builder = RowBuilder::new(seed, RowIdSource::Position, Some("_row_id"));
    let mut out = Vec::with_capacity(1 << 20);
    let (mut records, mut rows, mut bytes) = (0u64, 0u64, 0u64);
    while let Some(event) = framer.next_event()? {
        records += 1;
        let Event::Record(frame) = event else {
            continue;
        };
        let (ordinal, offset) = (frame.ordinal, frame.offset);
        let mut emit = |e: Emitted<'_>| -> Result<(), RecordErrorKind> {
            if let Emitted::Row(p) = e {
                let row = builder.build(&p, ordinal, offset)?;
                row.append_to(&mut out);
                out.push(b'\n');
                rows += 1;
                if out.len() >= 1 << 20 {
                    bytes += out.len() as u64;
                    out.clear();
                }
            }
            Ok(())
        };
        unwrapper
            .unwrap_checked(frame.bytes, frame.json_checked, frame.verdicts, &mut emit)
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    bytes += out.len() as u64;
    Ok((records, rows, bytes))
}

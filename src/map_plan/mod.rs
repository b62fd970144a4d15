//! Planning a Step Functions Distributed Map run: a range's objects → a manifest the Map's
//! `ItemReader` reads, and the numbers its `ItemBatcher` needs ([`asl`] writes the definition).
//!
//! A year of a busy stream is hundreds of thousands of keys, so nothing here holds the plan:
//! objects are written to the manifest as they are listed, and only fixed-size statistics
//! ([`SizeStats`]) are kept to size the batches.

pub mod asl;

use std::io::{self, Write};

use serde_json::json;

use crate::object::ObjectRef;

/// The manifest's format (the Map's `ReaderConfig.InputType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    /// One JSON object per line: `{"Bucket":…,"Key":…,"Size":…}`.
    Jsonl,
    /// A header row `Bucket,Key,Size`, then RFC 4180 rows (fields quoted when they hold a
    /// comma, a quote or a line break). Every value reaches the function as a string.
    Csv,
}

impl ManifestFormat {
    /// From a manifest's name: `.csv` is CSV, anything else JSON Lines.
    pub fn of_name(name: &str) -> ManifestFormat {
        if name.to_ascii_lowercase().ends_with(".csv") {
            ManifestFormat::Csv
        } else {
            ManifestFormat::Jsonl
        }
    }

    /// `ReaderConfig.InputType`.
    pub fn input_type(self) -> &'static str {
        match self {
            ManifestFormat::Jsonl => "JSONL",
            ManifestFormat::Csv => "CSV",
        }
    }
}

/// Object sizes seen so far, in constant memory: count, total, largest, a log₂ histogram (for
/// a high percentile), and the longest item (so a batch's input fits its byte limit).
#[derive(Debug, Clone)]
pub struct SizeStats {
    pub objects: u64,
    pub bytes: u64,
    pub largest: u64,
    /// `histogram[b]`: objects of `2^(b-1) < size <= 2^b` bytes (`b = 0`: empty; the last
    /// bucket takes everything larger).
    histogram: [u64; 64],
    /// Bytes of the longest item as the function receives it (JSON).
    pub longest_item: usize,
}

impl Default for SizeStats {
    fn default() -> Self {
        SizeStats {
            objects: 0,
            bytes: 0,
            largest: 0,
            histogram: [0; 64],
            longest_item: 0,
        }
    }
}

impl SizeStats {
    pub fn add(&mut self, size: u64, item_len: usize) {
        self.objects += 1;
        self.bytes += size;
        self.largest = self.largest.max(size);
        let bucket = if size == 0 {
            0
        } else {
            (64 - (size - 1).leading_zeros() as usize).min(63)
        };
        self.histogram[bucket] += 1;
        self.longest_item = self.longest_item.max(item_len);
    }

    /// An upper bound of the size `p` (0..=1) of the objects are at most: a power of two.
    pub fn percentile_bound(&self, p: f64) -> u64 {
        let want = ((self.objects as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (b, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return if b == 0 { 0 } else { 1u64 << b };
            }
        }
        self.largest
    }
}

/// Streams a manifest: one [`ManifestWriter::add`] per object, written at once.
pub struct ManifestWriter<W: Write> {
    out: Out<W>,
    pub stats: SizeStats,
}

enum Out<W: Write> {
    Jsonl(W),
    /// The `csv` crate's RFC 4180 writer (fields quoted only when they must be), `\n` line ends.
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> ManifestWriter<W> {
    pub fn new(out: W, format: ManifestFormat) -> io::Result<Self> {
        let out = match format {
            ManifestFormat::Jsonl => Out::Jsonl(out),
            ManifestFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(out);
                w.write_record(["Bucket", "Key", "Size"])?;
                Out::Csv(Box::new(w))
            }
        };
        Ok(ManifestWriter {
            out,
            stats: SizeStats::default(),
        })
    }

    /// Adds an object. Keys are written raw (the function reads manifest keys raw).
    pub fn add(&mut self, o: &ObjectRef) -> io::Result<()> {
        let size = o.size.unwrap_or(0);
        let item = json!({ "Bucket": o.bucket, "Key": o.key, "Size": size }).to_string();
        match &mut self.out {
            Out::Jsonl(out) => writeln!(out, "{item}")?,
            Out::Csv(w) => w.write_record([&o.bucket, &o.key, &size.to_string()])?,
        }
        // CSV items reach the function as JSON strings: about as long as the JSON line.
        self.stats.add(size, item.len() + 8);
        Ok(())
    }

    /// Flushes and hands back the writer.
    pub fn finish(self) -> io::Result<(W, SizeStats)> {
        let out = match self.out {
            Out::Jsonl(mut out) => {
                out.flush()?;
                out
            }
            Out::Csv(w) => w.into_inner().map_err(|e| e.into_error())?,
        };
        Ok((out, self.stats))
    }
}

/// How the function's time turns into a batch size.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// The function's timeout.
    pub timeout_secs: u64,
    /// Its deadline margin (`FIREHOSE_REPLAY_DEADLINE_MARGIN_MS`): no object starts later.
    pub margin_secs: u64,
    /// Compressed bytes one invocation replays per second (the EMF metrics' bytes_in / ms).
    pub throughput_bytes_per_sec: f64,
    /// The Map's MaxConcurrency: batches are kept small enough to give every child work.
    pub max_concurrency: u64,
}

/// Step Functions' limit on a batch's input (`MaxInputBytesPerBatch` may be at most 256 KiB);
/// kept lower so `BatchInput` and the item wrapping fit.
pub const MAX_BATCH_INPUT_BYTES: u64 = 200 * 1024;

impl Sizing {
    /// Items per batch: as many objects of the 90th-percentile size as one invocation replays
    /// in half its usable time (the other half absorbs slow objects, retries and a busy sink),
    /// no more than fit [`MAX_BATCH_INPUT_BYTES`], and no more than spread the objects over
    /// `max_concurrency` children. At least one.
    pub fn items_per_batch(&self, stats: &SizeStats) -> u64 {
        let usable = self.timeout_secs.saturating_sub(self.margin_secs).max(1) as f64;
        let budget = self.throughput_bytes_per_sec * usable / 2.0;
        let typical = stats.percentile_bound(0.9).max(1) as f64;
        let by_time = (budget / typical).floor() as u64;
        let by_input = MAX_BATCH_INPUT_BYTES / (stats.longest_item.max(1) as u64 + 2);
        let by_spread = stats.objects.div_ceil(self.max_concurrency.max(1));
        by_time.min(by_input).min(by_spread).max(1)
    }

    /// Whether the largest object alone needs more than the usable time (it would time out
    /// however the batches are cut: raise the timeout or the throughput).
    pub fn largest_fits(&self, stats: &SizeStats) -> bool {
        let usable = self.timeout_secs.saturating_sub(self.margin_secs) as f64;
        (stats.largest as f64) / self.throughput_bytes_per_sec.max(1.0) <= usable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> ObjectRef {
        let mut o = ObjectRef::new("b", key);
        o.size = Some(size);
        o
    }

    #[test]
    fn manifests_stream_raw_keys_and_csv_quotes_what_it_must() {
        let mut w = ManifestWriter::new(Vec::new(), ManifestFormat::Csv).unwrap();
        w.add(&obj("a b+c%20.gz", 10)).unwrap();
        w.add(&obj("x,\"y\".gz", 20)).unwrap();
        w.add(&obj("line\nbreak.gz", 30)).unwrap();
        let (out, stats) = w.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Bucket,Key,Size\nb,a b+c%20.gz,10\nb,\"x,\"\"y\"\".gz\",20\nb,\"line\nbreak.gz\",30\n"
        );
        assert_eq!((stats.objects, stats.bytes, stats.largest), (3, 60, 30));
        let mut w = ManifestWriter::new(Vec::new(), ManifestFormat::Jsonl).unwrap();
        w.add(&obj("a b+c%20.gz", 10)).unwrap();
        let (out, _) = w.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"Bucket\":\"b\",\"Key\":\"a b+c%20.gz\",\"Size\":10}\n"
        );
    }

    #[test]
    fn batches_fit_half_the_usable_time_the_input_limit_and_the_concurrency() {
        let mut stats = SizeStats::default();
        for _ in 0..10_000 {
            stats.add(4 << 20, 120); // 4 MiB
        }
        assert_eq!(stats.percentile_bound(0.9), 4 << 20);
        let s = Sizing {
            timeout_secs: 900,
            margin_secs: 10,
            throughput_bytes_per_sec: 4.0 * 1048576.0,
            max_concurrency: 10,
        };
        // 890 s / 2 × 4 MiB/s = 1780 MiB = 445 objects of 4 MiB.
        assert_eq!(s.items_per_batch(&stats), 445);
        // Few objects: spread over the children.
        let few = Sizing {
            max_concurrency: 100,
            ..s
        };
        assert_eq!(few.items_per_batch(&stats), 100);
        // Long keys: the batch input limit.
        let mut long = stats.clone();
        long.longest_item = 2000;
        assert_eq!(s.items_per_batch(&long), MAX_BATCH_INPUT_BYTES / 2002);
        // An object bigger than the time allows: still one per batch, and flagged.
        let mut huge = SizeStats::default();
        huge.add(10 << 30, 100);
        assert_eq!(s.items_per_batch(&huge), 1);
        assert!(!s.largest_fits(&huge));
        assert!(s.largest_fits(&stats));
    }
}

//! Micro-benchmarks of the per-record hot path: framing (newline, concatenated), JSON
//! validation (ours against serde_json's, the baseline it replaced), row IDs, and the Storage
//! Write encoder (JSON → protobuf from the table schema) against parsing into a serde_json
//! `Value` (the least any JSON-consuming encoder does).
//! `cargo bench --bench hot_path`; end-to-end figures come from `scripts/bench.sh`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use firehose_replay::frame::{Event, Framer, Framing};
use firehose_replay::json;
use firehose_replay::object::ObjectRef;
use firehose_replay::row::ObjectSeed;

/// ~4 MiB of clickstream-like events (~450 bytes each), joined by `sep`.
fn events(sep: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut i = 0u64;
    while out.len() < 4 << 20 {
        out.push_str(&format!(
            r#"{{"event_id":"{i:08x}-5a1f-4f3e-9b7e-0d9f1c2a3b4c","event_type":"page_view","event_time":"2026-11-25T22:05:13.{:03}Z","user_id":"u_{}","session_id":"{:016x}","page":{{"url":"https://shop.example.com/p/{}","referrer":"https://www.example.org/search?q=shoes","title":"Running shoes \"Zürich\" edition"}},"device":{{"type":"mobile","os":"iOS 18.1","browser":"Safari"}},"geo":{{"country":"DE","city":"Berlin"}},"amount":{}.5,"currency":"EUR","items":[{{"sku":"SKU-{}","qty":1}}],"tags":["a","b"]}}"#,
            i % 1000,
            i * 7 % 100_000,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i % 5000,
            i % 300,
            i % 977
        ));
        out.push_str(sep);
        i += 1;
    }
    out.into_bytes()
}

fn count_records(data: &[u8], framing: Framing) -> u64 {
    let mut f = Framer::new(data, framing, 10 << 20);
    let mut n = 0;
    while let Some(ev) = f.next_event().unwrap() {
        if let Event::Record(r) = ev {
            black_box(r.bytes);
            n += 1;
        }
    }
    n
}

fn framing(c: &mut Criterion) {
    let nd = events("\n");
    let cc = events("");
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(nd.len() as u64));
    g.bench_function("newline", |b| {
        b.iter(|| count_records(&nd, Framing::Newline))
    });
    g.throughput(Throughput::Bytes(cc.len() as u64));
    g.bench_function("concatenated", |b| {
        b.iter(|| count_records(&cc, Framing::Concatenated))
    });
    g.finish();
}

fn validation(c: &mut Criterion) {
    let nd = events("\n");
    let lines: Vec<&[u8]> = nd
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Bytes(nd.len() as u64));
    g.bench_function("json::check", |b| {
        b.iter(|| lines.iter().filter(|l| json::check(l).is_ok()).count())
    });
    g.bench_function("serde_json IgnoredAny (baseline)", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok())
                .count()
        })
    });
    g.finish();
}

fn row_ids(c: &mut Criterion) {
    let mut o = ObjectRef::new(
        "archive-bucket",
        "2026/11/25/22/shop-events-1-2026-11-25-22-05-13-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.gz",
    );
    o.etag = Some("0b4c2c6e5a1f4f3e9b7e0d9f1c2a3b4c".into());
    let seed = ObjectSeed::new(&o);
    let mut g = c.benchmark_group("row_id");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("position (1000 ids)", |b| {
        b.iter(|| {
            for i in 0..1000u64 {
                black_box(seed.id(i, &[]));
            }
        })
    });
    g.finish();
}

fn proto_encoding(c: &mut Criterion) {
    use firehose_replay::sink::bigquery::encode::{Encoder, Field, Kind, Mode, Options};
    let nd = events("\n");
    let lines: Vec<&[u8]> = nd
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let s = |n: &str| Field::new(n, Kind::String);
    let schema = vec![
        s("event_id"),
        s("event_type"),
        Field::new("event_time", Kind::Timestamp),
        s("user_id"),
        s("session_id"),
        Field::record("page", vec![s("url"), s("referrer"), s("title")]),
        Field::record("device", vec![s("type"), s("os"), s("browser")]),
        Field::new("geo", Kind::Json),
        Field::new("amount", Kind::Numeric),
        s("currency"),
        Field::record("items", vec![s("sku"), Field::new("qty", Kind::Int64)])
            .with_mode(Mode::Repeated),
        s("tags").with_mode(Mode::Repeated),
    ];
    let enc = Encoder::new(schema, Options::default()).unwrap();
    let mut out = Vec::new();
    let mut g = c.benchmark_group("storage_write");
    g.throughput(Throughput::Bytes(nd.len() as u64));
    g.bench_function("encode::Encoder::encode", |b| {
        b.iter(|| {
            for l in &lines {
                out.clear();
                enc.encode(l, &mut out).unwrap();
                black_box(&out);
            }
        })
    });
    g.bench_function("serde_json Value (baseline)", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_slice::<serde_json::Value>(l).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, framing, validation, row_ids, proto_encoding);
criterion_main!(benches);

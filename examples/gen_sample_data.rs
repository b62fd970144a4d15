//! Sample-data and benchmark-input generator for `firehose-replay`.
//!
//! Two subcommands:
//!
//! * `sample OUT_DIR` rebuilds the committed sample tree (a fake S3 bucket
//!   root holding what Kinesis Data Firehose writes) under `OUT_DIR`, and
//!   writes `OUT_DIR/../expected-counts.json` with the numbers the replay
//!   tool must report for it. The output is byte-for-byte deterministic:
//!   every value comes from a seeded PRNG, gzip headers carry mtime 0 and no
//!   file name, and zstd uses a fixed level. (The compressed bytes still
//!   depend on the flate2/zlib-rs and zstd versions in Cargo.lock.)
//!
//!       cargo run --release --example gen_sample_data -- sample sample-data/firehose
//!
//! * `bench` streams a large synthetic clickstream object to a file without
//!   holding it in memory:
//!
//!       cargo run --release --example gen_sample_data -- bench \
//!           (--records N | --bytes N) --framing newline|concatenated \
//!           --compression gzip|none --out FILE [--seed N]
//!
//!   and prints `records=N uncompressed_bytes=B compressed_bytes=C` (timing
//!   goes to stderr). `--bytes N` stops at the first record boundary at or
//!   past N uncompressed bytes. Output is deterministic for a given seed.
//!
//! Only flate2, zstd, serde, serde_json and base64 are used; the PRNG is a
//! local splitmix64.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use base64::Engine as _;
use flate2::read::MultiGzDecoder;
use flate2::{Compression, GzBuilder};
use serde::Serialize;

const SAMPLE_SEED: u64 = 0xF1E4_05E0_2026_1125;
const BENCH_SEED: u64 = 0xBE7C_0000_0000_0001;
/// Level used for the zstd sample object.
const ZSTD_LEVEL: i32 = 3;
/// Level used for every gzip stream written.
const GZIP_LEVEL: u32 = 6;

const USAGE: &str = "\
usage:
  gen_sample_data sample OUT_DIR
  gen_sample_data bench (--records N | --bytes N) --framing newline|concatenated \\
                        --compression gzip|none --out FILE [--seed N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sample") => match &args[1..] {
            [dir] => cmd_sample(Path::new(dir)),
            _ => Err(usage_err("sample takes exactly one argument: OUT_DIR")),
        },
        Some("bench") => parse_bench(&args[1..]).and_then(|o| cmd_bench(&o)),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(usage_err("missing or unknown subcommand")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_sample_data: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_err(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{msg}\n{USAGE}"))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

// ---------------------------------------------------------------------------
// PRNG (splitmix64)
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// An independent stream for sub-task `n` of `seed`.
    fn derive(seed: u64, n: u64) -> Self {
        let mut r = Rng(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// Small formatting helpers (allocation-free, used on the hot path)
// ---------------------------------------------------------------------------

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Zero-padded to at least `width` digits.
fn push_padded(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while v > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[i.min(buf.len() - width)..]);
}

fn push_hex(out: &mut Vec<u8>, v: u64, nibbles: u32) {
    for k in (0..nibbles).rev() {
        out.push(HEX[((v >> (4 * k)) & 0xf) as usize]);
    }
}

/// Random RFC 4122 version-4 UUID, lower-case hex.
fn push_uuid(out: &mut Vec<u8>, rng: &mut Rng) {
    let hi = (rng.next_u64() & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (rng.next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    push_hex(out, hi >> 32, 8);
    out.push(b'-');
    push_hex(out, hi >> 16, 4);
    out.push(b'-');
    push_hex(out, hi, 4);
    out.push(b'-');
    push_hex(out, lo >> 48, 4);
    out.push(b'-');
    push_hex(out, lo, 12);
}

fn uuid_string(rng: &mut Rng) -> String {
    let mut v = Vec::with_capacity(36);
    push_uuid(&mut v, rng);
    String::from_utf8(v).unwrap()
}

fn hex_string(rng: &mut Rng, nibbles: u32) -> String {
    let mut v = Vec::new();
    let mut left = nibbles;
    while left > 0 {
        let n = left.min(16);
        push_hex(&mut v, rng.next_u64(), n);
        left -= n;
    }
    String::from_utf8(v).unwrap()
}

/// Money as a JSON number that always carries a fraction ("12.5", "3.0"),
/// so schema inference sees a float every time.
fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_u64(out, cents / 100);
    out.push(b'.');
    let frac = cents % 100;
    if frac.is_multiple_of(10) {
        push_u64(out, frac / 10);
    } else {
        push_padded(out, frac, 2);
    }
}

// ---------------------------------------------------------------------------
// Civil time (UTC), Howard Hinnant's algorithms
// ---------------------------------------------------------------------------

const HOUR_MS: u64 = 3_600_000;

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let mp = ((m + 9) % 12) as u64;
    let doy = (153 * mp + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Epoch milliseconds of a UTC hour.
fn hour_ms(y: i64, m: u32, d: u32, h: u32) -> u64 {
    days_from_civil(y, m, d) as u64 * 86_400_000 + h as u64 * HOUR_MS
}

struct Civil {
    y: u64,
    mo: u64,
    d: u64,
    h: u64,
    mi: u64,
    s: u64,
    ms: u64,
}

fn civil(ms: u64) -> Civil {
    let (y, mo, d) = civil_from_days((ms / 86_400_000) as i64);
    let rem = ms % 86_400_000;
    Civil {
        y: y as u64,
        mo: mo as u64,
        d: d as u64,
        h: rem / HOUR_MS,
        mi: rem / 60_000 % 60,
        s: rem / 1000 % 60,
        ms: rem % 1000,
    }
}

/// `2026-11-25T22:05:13.123Z`
fn push_iso(out: &mut Vec<u8>, ms: u64) {
    let c = civil(ms);
    push_padded(out, c.y, 4);
    out.push(b'-');
    push_padded(out, c.mo, 2);
    out.push(b'-');
    push_padded(out, c.d, 2);
    out.push(b'T');
    push_padded(out, c.h, 2);
    out.push(b':');
    push_padded(out, c.mi, 2);
    out.push(b':');
    push_padded(out, c.s, 2);
    out.push(b'.');
    push_padded(out, c.ms, 3);
    out.push(b'Z');
}

fn iso_string(ms: u64) -> String {
    let mut v = Vec::with_capacity(24);
    push_iso(&mut v, ms);
    String::from_utf8(v).unwrap()
}

// ---------------------------------------------------------------------------
// Event records
// ---------------------------------------------------------------------------
//
// All string constants below are already JSON-escaped (they are pasted
// between quotes verbatim). Some deliberately carry escapes (\" \\ \uXXXX)
// and some carry raw non-ASCII UTF-8, so decoders get exercised.

struct Product {
    category: &'static str,
    slug: &'static str,
    sku: u32,
    price_cents: u64,
    title: &'static str,
}

const fn p(
    category: &'static str,
    slug: &'static str,
    sku: u32,
    price_cents: u64,
    title: &'static str,
) -> Product {
    Product {
        category,
        slug,
        sku,
        price_cents,
        title,
    }
}

#[rustfmt::skip]
const PRODUCTS: &[Product] = &[
    p("women/shoes", "trail-runner-x", 48213, 12995, r#"Trail Runner X \u2013 Women's Running Shoes"#),
    p("men/jackets", "alpine-down-jacket", 30117, 24900, r#"Men's \"Alpine\" Down Jacket"#),
    p("home/kitchen", "cafe-creme-espresso-cups", 77452, 3450, r#"Caf\u00e9 Cr\u00e8me Espresso Cups (Set of 4)"#),
    p("sale", "clearance-bundle", 10001, 999, r#"Sale \\ Clearance \\ Last Chance Bundle"#),
    p("accessories/watches", "zurich-edition-chronograph", 55870, 39900, "Zürich Edition Chronograph Watch"),
    p("home/tea", "tokyo-ceramic-teapot", 61204, 5800, "東京 Collection – Ceramic Teapot 0.8 l"),
    p("home/dining", "smorgasbord-serving-board", 61990, 4295, "Smörgåsbord Oak Serving Board"),
    p("kids/toys", "wooden-train-set", 20455, 5999, "Wooden Train Set, 42 pieces"),
    p("electronics/audio", "noise-cancelling-headphones", 90311, 19999, "Noise-Cancelling Wireless Headphones (Black)"),
    p("women/knitwear", "merino-turtleneck", 41876, 8950, "Merino Turtleneck Sweater \u{2014} Oatmeal"),
    p("gift-cards", "gift-card-50", 99050, 5000, r#"Gift Card \u00a350 \/ \u20ac60"#),
    p("beauty", "rose-hand-cream", 33120, 1450, "Rose Hand Cream 75 ml"),
];

/// (url-encoded query, JSON-escaped query)
const QUERIES: &[(&str, &str)] = &[
    ("winter+jacket", "winter jacket"),
    ("caf%C3%A9+mug", "café mug"),
    ("trail+runner+size+42", "trail runner size 42"),
    ("%E6%9D%B1%E4%BA%AC+teapot", "東京 teapot"),
    ("gift+card", "gift card"),
    ("%22noise+cancelling%22", r#"\"noise cancelling\""#),
    ("merino", "merino"),
];

const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://shop.example.com/",
    "https://www.instagram.com/",
    "android-app://com.google.android.gm/",
    "https://mail.example.net/c/bf26",
    "https://www.bing.com/",
    "https://t.co/x7Qa9LmZp2",
];

/// (type, os, browser)
const DEVICES: &[(&str, &str, &str)] = &[
    ("mobile", "iOS 18.1", "Safari 18"),
    ("mobile", "Android 15", "Chrome 131"),
    ("mobile", "Android 14", "Samsung Internet 26"),
    ("desktop", "Windows 11", "Edge 131"),
    ("desktop", "Windows 10", "Chrome 131"),
    ("desktop", "macOS 15.1", "Firefox 133"),
    ("desktop", "Ubuntu 24.04", "Firefox 133"),
    ("tablet", "iPadOS 18.1", "Safari 18"),
];

/// (country, city, currency)
const GEOS: &[(&str, &str, &str)] = &[
    ("DE", "Berlin", "EUR"),
    ("DE", "München", "EUR"),
    ("DE", "Köln", "EUR"),
    ("CH", "Zürich", "CHF"),
    ("AT", "Wien", "EUR"),
    ("FR", "Paris", "EUR"),
    ("NL", "Amsterdam", "EUR"),
    ("ES", "A Coruña", "EUR"),
    ("PL", "Kraków", "PLN"),
    ("SE", "Malmö", "SEK"),
    ("GB", "London", "GBP"),
    ("US", "New York", "USD"),
    ("US", "San Francisco", "USD"),
    ("CA", "Montr\\u00e9al", "CAD"),
    ("BR", "São Paulo", "BRL"),
    ("JP", "東京", "JPY"),
];

const TAGS: &[&str] = &[
    "black-friday",
    "newsletter",
    "returning-customer",
    "first-visit",
    "ab:checkout-v2",
    "vip",
    "promo:BF26",
    "consent:analytics",
    "café-lover",
    r#"src=\"email\""#,
    "dark-mode",
    "app:ios",
];

const SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "38", "40", "42", "44", "OS"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum EventStream {
    /// Clickstream: all event types.
    Shop,
    /// Order events: purchases only.
    Orders,
}

struct Session {
    user: u64,
    sid_hi: u64,
    device: usize,
    geo: usize,
    /// `usize::MAX` = direct visit (referrer null)
    referrer: usize,
}

fn new_session(rng: &mut Rng) -> Session {
    Session {
        user: rng.range(1, 99_999),
        sid_hi: rng.next_u64(),
        device: rng.index(DEVICES.len()),
        geo: rng.index(GEOS.len()),
        referrer: if rng.chance(25) {
            usize::MAX
        } else {
            rng.index(REFERRERS.len())
        },
    }
}

/// Writes one compact JSON event per call, to the end of a byte buffer.
struct EventGen {
    rng: Rng,
    now_ms: u64,
    max_gap_ms: u64,
    stream: EventStream,
    sessions: Vec<Session>,
}

impl EventGen {
    fn new(seed: u64, start_ms: u64, max_gap_ms: u64, pool: usize, stream: EventStream) -> Self {
        let mut rng = Rng::new(seed);
        let sessions = (0..pool).map(|_| new_session(&mut rng)).collect();
        EventGen {
            rng,
            now_ms: start_ms,
            max_gap_ms,
            stream,
            sessions,
        }
    }

    fn event_vec(&mut self) -> Vec<u8> {
        let mut v = Vec::with_capacity(640);
        self.write_event(&mut v);
        v
    }

    fn write_event(&mut self, out: &mut Vec<u8>) {
        let r = &mut self.rng;
        self.now_ms += r.below(self.max_gap_ms + 1);
        let si = r.index(self.sessions.len());
        if r.chance(3) {
            self.sessions[si] = new_session(r);
        }
        let s = &self.sessions[si];
        let kind = match self.stream {
            EventStream::Orders => 3,
            EventStream::Shop => match r.below(100) {
                0..=49 => 0,
                50..=64 => 1,
                65..=79 => 2,
                80..=89 => 3,
                _ => 4,
            },
        };
        const TYPES: [&str; 5] = ["page_view", "search", "add_to_cart", "purchase", "login"];

        out.extend_from_slice(b"{\"event_id\":\"");
        push_uuid(out, r);
        out.extend_from_slice(b"\",\"event_type\":\"");
        out.extend_from_slice(TYPES[kind].as_bytes());
        out.extend_from_slice(b"\",\"event_time\":\"");
        push_iso(out, self.now_ms);
        out.extend_from_slice(b"\",\"user_id\":\"u_");
        push_u64(out, s.user);
        out.extend_from_slice(b"\",\"session_id\":\"");
        push_hex(out, s.sid_hi, 16);

        // page
        out.extend_from_slice(b"\",\"page\":{\"url\":\"https://shop.example.com/");
        let pi = r.index(PRODUCTS.len());
        let product = &PRODUCTS[pi];
        let mut query = 0usize;
        let title: &[u8] = match kind {
            0 => {
                out.extend_from_slice(product.category.as_bytes());
                out.push(b'/');
                out.extend_from_slice(product.slug.as_bytes());
                out.push(b'-');
                push_u64(out, product.sku as u64);
                if r.chance(10) {
                    out.extend_from_slice(b"?utm_source=newsletter&utm_campaign=bf26");
                }
                product.title.as_bytes()
            }
            1 => {
                query = r.index(QUERIES.len());
                out.extend_from_slice(b"search?q=");
                out.extend_from_slice(QUERIES[query].0.as_bytes());
                out.extend_from_slice(b"&page=");
                push_u64(out, r.range(1, 4));
                b""
            }
            2 => {
                out.extend_from_slice(b"cart/add?sku=SKU-");
                push_u64(out, product.sku as u64);
                b"Shopping Cart"
            }
            3 => {
                out.extend_from_slice(b"checkout/confirmation?order=o_");
                push_u64(out, r.range(1_000_000, 9_999_999));
                br"Order Confirmation \u2013 Thank you!"
            }
            _ => {
                out.extend_from_slice(b"account/login?return_to=%2Fcart");
                b"Sign in to your account"
            }
        };
        out.extend_from_slice(b"\",\"referrer\":");
        if s.referrer == usize::MAX {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'"');
            out.extend_from_slice(REFERRERS[s.referrer].as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"title\":\"");
        if kind == 1 {
            let q = QUERIES[query].1;
            out.extend_from_slice(br"Search results for \u201c");
            out.extend_from_slice(q.as_bytes());
            out.extend_from_slice(br"\u201d");
        } else {
            out.extend_from_slice(title);
        }

        // device, geo
        let (dtype, os, browser) = DEVICES[s.device];
        out.extend_from_slice(b"\"},\"device\":{\"type\":\"");
        out.extend_from_slice(dtype.as_bytes());
        out.extend_from_slice(b"\",\"os\":\"");
        out.extend_from_slice(os.as_bytes());
        out.extend_from_slice(b"\",\"browser\":\"");
        out.extend_from_slice(browser.as_bytes());
        let (country, city, currency) = GEOS[s.geo];
        out.extend_from_slice(b"\"},\"geo\":{\"country\":\"");
        out.extend_from_slice(country.as_bytes());
        out.extend_from_slice(b"\",\"city\":\"");
        out.extend_from_slice(city.as_bytes());

        // amount + items
        let n_items = match kind {
            2 => 1,
            3 => r.range(1, 3),
            _ => 0,
        };
        let mut items = [(0usize, 0u64, 0usize); 3];
        let mut amount = 0u64;
        for (i, item) in items.iter_mut().enumerate().take(n_items as usize) {
            let p = if i == 0 { pi } else { r.index(PRODUCTS.len()) };
            let qty = if r.chance(80) { 1 } else { r.range(2, 3) };
            *item = (p, qty, r.index(SIZES.len()));
            amount += PRODUCTS[p].price_cents * qty;
        }
        out.extend_from_slice(b"\"},\"amount\":");
        if n_items == 0 {
            out.extend_from_slice(b"null");
        } else {
            push_cents(out, amount);
        }
        out.extend_from_slice(b",\"currency\":\"");
        out.extend_from_slice(currency.as_bytes());
        out.extend_from_slice(b"\",\"items\":[");
        for (i, &(p, qty, size)) in items.iter().take(n_items as usize).enumerate() {
            let p = &PRODUCTS[p];
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"sku\":\"SKU-");
            push_u64(out, p.sku as u64);
            out.push(b'-');
            out.extend_from_slice(SIZES[size].as_bytes());
            out.extend_from_slice(b"\",\"qty\":");
            push_u64(out, qty);
            out.extend_from_slice(b",\"price\":");
            push_cents(out, p.price_cents);
            out.push(b'}');
        }

        // tags: up to 2 distinct
        out.extend_from_slice(b"],\"tags\":[");
        let n_tags = r.below(3);
        let mut used = 0u32;
        let mut first = true;
        for _ in 0..n_tags {
            let t = r.index(TAGS.len());
            if used & (1 << t) != 0 {
                continue;
            }
            used |= 1 << t;
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(TAGS[t].as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"]}");
    }
}

// ---------------------------------------------------------------------------
// Encoders
// ---------------------------------------------------------------------------

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd_compress(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, ZSTD_LEVEL).unwrap()
}

/// Re-indents compact JSON (2 spaces), preserving key order.
fn pretty(compact: &[u8]) -> Vec<u8> {
    fn newline(out: &mut Vec<u8>, indent: usize) {
        out.push(b'\n');
        out.resize(out.len() + 2 * indent, b' ');
    }
    let mut out = Vec::with_capacity(compact.len() * 2);
    let (mut indent, mut in_str, mut esc) = (0usize, false, false);
    let mut i = 0;
    while i < compact.len() {
        let b = compact[i];
        i += 1;
        if in_str {
            out.push(b);
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_str = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                if matches!(compact.get(i), Some(b'}') | Some(b']')) {
                    out.push(compact[i]);
                    i += 1;
                } else {
                    indent += 1;
                    newline(&mut out, indent);
                }
            }
            b'}' | b']' => {
                indent -= 1;
                newline(&mut out, indent);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, indent);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// `sample`
// ---------------------------------------------------------------------------

#[derive(Serialize, Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Counts {
    records: u64,
    rows: u64,
    record_errors: u64,
    control_messages: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.records += o.records;
        self.rows += o.rows;
        self.record_errors += o.record_errors;
        self.control_messages += o.control_messages;
    }
}

#[derive(Serialize)]
struct Expected {
    objects: usize,
    records: u64,
    rows: u64,
    record_errors: u64,
    control_messages: u64,
    per_object: BTreeMap<String, Counts>,
}

/// How the verifier should frame the fully decompressed payload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Newline,
    Concatenated,
}

struct Obj {
    key: String,
    bytes: Vec<u8>,
    framing: Framing,
    compression: &'static str,
    framing_desc: &'static str,
    envelope: &'static str,
    note: &'static str,
    counts: Counts,
}

/// `[prefix]YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid><ext>`
fn object_key(prefix: &str, stream: &str, ms: u64, uuid: &str, ext: &str) -> String {
    let c = civil(ms);
    format!(
        "{prefix}{y:04}/{mo:02}/{d:02}/{h:02}/{stream}-1-{y:04}-{mo:02}-{d:02}-{h:02}-{mi:02}-{s:02}-{uuid}{ext}",
        y = c.y,
        mo = c.mo,
        d = c.d,
        h = c.h,
        mi = c.mi,
        s = c.s,
    )
}

/// Per-object generation context: its own PRNG stream, a key time inside
/// `hour`, and a fresh event generator starting at the key time.
struct Ctx {
    rng: Rng,
    key_ms: u64,
    uuid: String,
}

fn ctx(idx: u64, hour: u64) -> Ctx {
    let mut rng = Rng::derive(SAMPLE_SEED, idx);
    // minutes 0..=44 so that up to 40 records (<= 4 s apart) stay in the hour
    let key_ms = hour + rng.below(45) * 60_000 + rng.below(60) * 1000;
    let uuid = uuid_string(&mut rng);
    Ctx { rng, key_ms, uuid }
}

impl Ctx {
    fn events(&mut self, stream: EventStream) -> EventGen {
        // events start a little after the object's key time, millisecond precision
        let start = self.key_ms + self.rng.below(1000);
        EventGen::new(self.rng.next_u64(), start, 4000, 6, stream)
    }
    fn count(&mut self) -> u64 {
        self.rng.range(5, 40)
    }
}

fn plain_counts(records: u64) -> Counts {
    Counts {
        records,
        rows: records,
        ..Counts::default()
    }
}

fn ndjson(eg: &mut EventGen, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        eg.write_event(&mut out);
        out.push(b'\n');
    }
    out
}

fn concatenated(eg: &mut EventGen, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        eg.write_event(&mut out);
    }
    out
}

// --- CloudWatch Logs subscription payloads --------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CwPayload {
    message_type: &'static str,
    owner: &'static str,
    log_group: String,
    log_stream: String,
    subscription_filters: Vec<&'static str>,
    log_events: Vec<CwEvent>,
}

#[derive(Serialize)]
struct CwEvent {
    id: String,
    timestamp: u64,
    message: String,
}

fn cw_id(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(56);
    s.push(char::from(b'1' + rng.below(9) as u8));
    for _ in 1..56 {
        s.push(char::from(b'0' + rng.below(10) as u8));
    }
    s
}

/// One Lambda invocation's worth of log events: START, 1-4 app lines (JSON
/// and plain text), END, REPORT.
fn cw_data_payload(rng: &mut Rng, t_ms: &mut u64, day: &str) -> CwPayload {
    const GROUPS: &[&str] = &["/aws/lambda/checkout", "/aws/lambda/payment-webhook"];
    let group = *rng.pick(GROUPS);
    let req = uuid_string(rng);
    let mut log_events = Vec::new();
    let mut emit = |rng: &mut Rng, t: u64, message: String| {
        log_events.push(CwEvent {
            id: cw_id(rng),
            timestamp: t,
            message,
        });
    };
    emit(
        rng,
        *t_ms,
        format!("START RequestId: {req} Version: $LATEST\n"),
    );
    for _ in 0..rng.range(1, 4) {
        *t_ms += rng.range(1, 40);
        let order = rng.range(100_000, 999_999);
        // Lambda's text lines carry their own (slightly earlier) timestamp
        let ts = iso_string(*t_ms - 1);
        let m = match rng.below(6) {
            0 => format!(
                r#"{{"level":"INFO","msg":"order placed","order_id":"o_{order}","amount":{}.{:02},"requestId":"{req}"}}"#,
                rng.range(5, 900),
                rng.below(100)
            ),
            1 => format!(
                r#"{{"level":"WARN","msg":"address normalized","order_id":"o_{order}","from":"Zurich","to":"Zürich"}}"#
            ),
            2 => format!(
                r#"{{"level":"ERROR","msg":"payment declined: \"insufficient funds\"","order_id":"o_{order}","path":"C:\\tmp\\pay.log"}}"#
            ),
            3 => format!(
                "{ts}\t{req}\tINFO\tfetched cart for user u_{} in {} ms\n",
                rng.range(1, 99_999),
                rng.range(2, 80)
            ),
            4 => format!(
                "{ts}\t{req}\tWARN\tretrying inventory call (attempt 2) – café-service slow\n"
            ),
            _ => format!(
                r#"{{"level":"DEBUG","msg":"cart snapshot","items":[{{"sku":"SKU-{}","qty":{}}}],"city":"東京"}}"#,
                rng.range(10_000, 99_999),
                rng.range(1, 3)
            ),
        };
        emit(rng, *t_ms, m);
    }
    let dur = rng.range(150, 90_000);
    *t_ms += dur / 100 + 1;
    emit(rng, *t_ms, format!("END RequestId: {req}\n"));
    let report = format!(
        "REPORT RequestId: {req}\tDuration: {}.{:02} ms\tBilled Duration: {} ms\tMemory Size: 512 MB\tMax Memory Used: {} MB\t\n",
        dur / 100,
        dur % 100,
        dur / 100 + 1,
        rng.range(70, 140)
    );
    emit(rng, *t_ms, report);
    CwPayload {
        message_type: "DATA_MESSAGE",
        owner: "123456789012",
        log_group: group.to_string(),
        log_stream: format!("{day}/[$LATEST]{}", hex_string(rng, 32)),
        subscription_filters: vec!["to-firehose"],
        log_events,
    }
}

fn cw_control_payload(t_ms: u64) -> CwPayload {
    CwPayload {
        message_type: "CONTROL_MESSAGE",
        owner: "CloudwatchLogs",
        log_group: String::new(),
        log_stream: String::new(),
        subscription_filters: vec![],
        log_events: vec![CwEvent {
            id: String::new(),
            timestamp: t_ms,
            message: "CWL CONTROL MESSAGE: Checking health of destination Firehose.".into(),
        }],
    }
}

/// Concatenated gzip members, one CloudWatch payload each; one is a
/// CONTROL_MESSAGE.
fn cw_members(c: &mut Ctx) -> (Vec<u8>, Counts) {
    let n = c.rng.range(5, 8);
    let control_at = c.rng.below(n);
    let ci = civil(c.key_ms);
    let day = format!("{:04}/{:02}/{:02}", ci.y, ci.mo, ci.d);
    let mut t = c.key_ms + c.rng.below(1000);
    let mut out = Vec::new();
    let mut counts = Counts::default();
    for i in 0..n {
        let payload = if i == control_at {
            counts.control_messages += 1;
            cw_control_payload(t)
        } else {
            let p = cw_data_payload(&mut c.rng, &mut t, &day);
            counts.rows += p.log_events.len() as u64;
            p
        };
        t += c.rng.range(200, 5000);
        counts.records += 1;
        out.extend_from_slice(&gzip(&serde_json::to_vec(&payload).unwrap()));
    }
    (out, counts)
}

// --- processing-failed ------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailedRecord {
    attempts_made: u32,
    arrival_timestamp: u64,
    error_code: &'static str,
    error_message: &'static str,
    attempt_ending_timestamp: u64,
    raw_data: String,
    lambda_arn: &'static str,
}

fn build_sample() -> Vec<Obj> {
    let h22 = hour_ms(2026, 11, 25, 22);
    let h23 = hour_ms(2026, 11, 25, 23);
    let h00 = hour_ms(2026, 11, 26, 0);
    let h01 = hour_ms(2026, 11, 26, 1);
    let mut objs = Vec::new();

    // (a) gzip NDJSON, three objects; the second uses CRLF + blank lines
    for (idx, hour) in [(0u64, h22), (3, h23), (11, h01)] {
        let mut c = ctx(idx, hour);
        let n = c.count();
        let mut eg = c.events(EventStream::Shop);
        let crlf = idx == 3;
        let raw = if crlf {
            // blank lines: one single before record `b1`, two in a row before `b2`
            let b1 = c.rng.range(1, n / 2);
            let b2 = c.rng.range(n / 2 + 1, n - 1);
            let mut out = Vec::new();
            for i in 0..n {
                if i == b1 {
                    out.extend_from_slice(b"\r\n");
                }
                if i == b2 {
                    out.extend_from_slice(b"\r\n\r\n");
                }
                eg.write_event(&mut out);
                out.extend_from_slice(b"\r\n");
            }
            out
        } else {
            ndjson(&mut eg, n)
        };
        objs.push(Obj {
            key: object_key("", "shop-events", c.key_ms, &c.uuid, ".gz"),
            bytes: gzip(&raw),
            framing: Framing::Newline,
            compression: "gzip",
            framing_desc: if crlf {
                "newline (CRLF, 3 blank lines)"
            } else {
                "newline"
            },
            envelope: "none",
            note: if crlf {
                "a: NDJSON with CRLF line endings and blank lines"
            } else {
                "a: NDJSON"
            },
            counts: plain_counts(n),
        });
    }

    // (b) gzip concatenated JSON: strict `}{`, then one with whitespace and
    // a pretty-printed record
    {
        let mut c = ctx(4, h23);
        let n = c.count();
        let mut eg = c.events(EventStream::Shop);
        objs.push(Obj {
            key: object_key("", "shop-events", c.key_ms, &c.uuid, ".gz"),
            bytes: gzip(&concatenated(&mut eg, n)),
            framing: Framing::Concatenated,
            compression: "gzip",
            framing_desc: "concatenated (no delimiter)",
            envelope: "none",
            note: "b: concatenated JSON `{..}{..}`",
            counts: plain_counts(n),
        });
    }
    {
        let mut c = ctx(7, h00);
        let n = c.count().max(6);
        let mut eg = c.events(EventStream::Shop);
        let pretty_at = c.rng.range(1, n - 2);
        const GAPS: &[&[u8]] = &[b" ", b"\n", b"\r\n", b"\n\n", b"\t", b"  \n  "];
        let mut raw = Vec::new();
        for i in 0..n {
            if i > 0 && (i == pretty_at || i == pretty_at + 1 || c.rng.chance(50)) {
                let gap: &[u8] = GAPS[c.rng.index(GAPS.len())];
                raw.extend_from_slice(gap);
            }
            let ev = eg.event_vec();
            if i == pretty_at {
                raw.extend_from_slice(&pretty(&ev));
            } else {
                raw.extend_from_slice(&ev);
            }
        }
        raw.push(b'\n');
        objs.push(Obj {
            key: object_key("", "shop-events", c.key_ms, &c.uuid, ".gz"),
            bytes: gzip(&raw),
            framing: Framing::Concatenated,
            compression: "gzip",
            framing_desc: "concatenated (whitespace between some values, 1 pretty-printed)",
            envelope: "none",
            note: "b: concatenated JSON with whitespace and a multi-line record",
            counts: plain_counts(n),
        });
    }

    // (c) uncompressed orders: NDJSON and concatenated
    {
        let mut c = ctx(1, h22);
        let n = c.count();
        let mut eg = c.events(EventStream::Orders);
        objs.push(Obj {
            key: object_key("", "orders", c.key_ms, &c.uuid, ""),
            bytes: ndjson(&mut eg, n),
            framing: Framing::Newline,
            compression: "none",
            framing_desc: "newline",
            envelope: "none",
            note: "c: uncompressed NDJSON",
            counts: plain_counts(n),
        });
    }
    {
        let mut c = ctx(8, h00);
        let n = c.count();
        let mut eg = c.events(EventStream::Orders);
        objs.push(Obj {
            key: object_key("", "orders", c.key_ms, &c.uuid, ""),
            bytes: concatenated(&mut eg, n),
            framing: Framing::Concatenated,
            compression: "none",
            framing_desc: "concatenated (no delimiter)",
            envelope: "none",
            note: "c: uncompressed concatenated JSON",
            counts: plain_counts(n),
        });
    }

    // (d) zstd NDJSON
    {
        let mut c = ctx(5, h23);
        let n = c.count();
        let mut eg = c.events(EventStream::Orders);
        objs.push(Obj {
            key: object_key("", "orders", c.key_ms, &c.uuid, ".zst"),
            bytes: zstd_compress(&ndjson(&mut eg, n)),
            framing: Framing::Newline,
            compression: "zstd",
            framing_desc: "newline",
            envelope: "none",
            note: "d: zstd NDJSON",
            counts: plain_counts(n),
        });
    }

    // (e) CloudWatch Logs subscription payloads
    {
        let mut c = ctx(2, h22);
        let (members, counts) = cw_members(&mut c);
        objs.push(Obj {
            key: object_key("", "app-logs", c.key_ms, &c.uuid, ""),
            bytes: members,
            framing: Framing::Concatenated,
            compression: "none (gzip member per record)",
            framing_desc: "concatenated gzip members",
            envelope: "cloudwatch-logs",
            note: "e: CWL payloads, Firehose compression off",
            counts,
        });
    }
    {
        let mut c = ctx(9, h00);
        let (members, counts) = cw_members(&mut c);
        objs.push(Obj {
            key: object_key("", "app-logs", c.key_ms, &c.uuid, ".gz"),
            bytes: gzip(&members),
            framing: Framing::Concatenated,
            compression: "gzip (over gzip member per record)",
            framing_desc: "concatenated gzip members",
            envelope: "cloudwatch-logs",
            note: "e: CWL payloads, Firehose GZIP on top",
            counts,
        });
    }

    // (f) processing-failed error output
    {
        let mut c = ctx(10, h00);
        let n = 4;
        // the failed events arrived just after midnight (their client times a
        // few seconds earlier); Firehose gave up after 4 attempts / 60 s and
        // wrote the error object a little later.
        let mut eg = EventGen::new(c.rng.next_u64(), h00 - 2500, 40, 4, EventStream::Shop);
        let mut arrival = h00 + 123;
        let mut raw = Vec::new();
        for _ in 0..n {
            let mut ev = eg.event_vec();
            ev.push(b'\n');
            let rec = FailedRecord {
                attempts_made: 4,
                arrival_timestamp: arrival,
                error_code: "Lambda.FunctionError",
                error_message:
                    "The Lambda function was successfully invoked but it returned an error result.",
                attempt_ending_timestamp: arrival + 60_000,
                raw_data: base64::engine::general_purpose::STANDARD.encode(&ev),
                lambda_arn: "arn:aws:lambda:eu-west-1:123456789012:function:enrich:$LATEST",
            };
            serde_json::to_writer(&mut raw, &rec).unwrap();
            raw.push(b'\n');
            arrival += c.rng.range(1, 900);
        }
        // Firehose names error objects by delivery time, inside the hour
        let key_ms = h00 + 60_000 + c.rng.below(1000) * 10;
        objs.push(Obj {
            key: object_key("processing-failed/", "shop-events", key_ms, &c.uuid, ".gz"),
            bytes: gzip(&raw),
            framing: Framing::Newline,
            compression: "gzip",
            framing_desc: "newline",
            envelope: "processing-failed",
            note: "f: Lambda transformation failures; rawData = base64(event + \\n)",
            counts: plain_counts(n),
        });
    }

    // (g) malformed: 10 valid records + 4 bad lines in the interior
    {
        let mut c = ctx(6, h23);
        let mut eg = c.events(EventStream::Shop);
        let mut lines: Vec<Vec<u8>> = (0..10).map(|_| eg.event_vec()).collect();
        let mut bad_utf8 = br#"{"event_id":""#.to_vec();
        push_uuid(&mut bad_utf8, &mut c.rng);
        bad_utf8.extend_from_slice(
            b"\",\"event_type\":\"page_view\",\"page\":{\"title\":\"broken \xFF byte\"}}",
        );
        let mut bad: Vec<Vec<u8>> = vec![
            br#"{"event_id":"x","#.to_vec(), // truncated JSON
            b"not json at all".to_vec(),
            bad_utf8,            // invalid UTF-8
            b"[1,2,3]".to_vec(), // valid JSON, not an object: a row {"value":[1,2,3]}
        ];
        c.rng.shuffle(&mut bad);
        // insert each strictly between the first and the last valid record
        for b in bad {
            let at = c.rng.range(1, lines.len() as u64 - 1) as usize;
            lines.insert(at, b);
        }
        let mut raw = Vec::new();
        for l in &lines {
            raw.extend_from_slice(l);
            raw.push(b'\n');
        }
        objs.push(Obj {
            key: object_key("", "shop-events", c.key_ms, &c.uuid, ".gz"),
            bytes: gzip(&raw),
            framing: Framing::Newline,
            compression: "gzip",
            framing_desc: "newline",
            envelope: "none",
            note: "g: 10 valid + truncated JSON, `not json at all`, 0xFF in a string, `[1,2,3]`",
            counts: Counts {
                records: 14,
                rows: 11,
                record_errors: 3,
                control_messages: 0,
            },
        });
    }

    // (h) empty object
    {
        let c = ctx(12, h01);
        objs.push(Obj {
            key: object_key("", "orders", c.key_ms, &c.uuid, ""),
            bytes: Vec::new(),
            framing: Framing::Newline,
            compression: "none",
            framing_desc: "-",
            envelope: "none",
            note: "h: empty (0 bytes)",
            counts: Counts::default(),
        });
    }

    objs.sort_by(|a, b| a.key.cmp(&b.key));
    objs
}

/// Independent re-count of an object from its bytes, following the replay
/// tool's rules; used to check the constructed counts.
fn verify_counts(bytes: &[u8], framing: Framing) -> io::Result<Counts> {
    let mut data = bytes.to_vec();
    loop {
        if data.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            MultiGzDecoder::new(&data[..]).read_to_end(&mut out)?;
            data = out;
        } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            data = zstd::stream::decode_all(&data[..])?;
        } else {
            break;
        }
    }
    let mut c = Counts::default();
    let mut values: Vec<Result<serde_json::Value, ()>> = Vec::new();
    match framing {
        Framing::Newline => {
            for line in data.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                values.push(serde_json::from_slice(line).map_err(|_| ()));
            }
        }
        Framing::Concatenated => {
            for v in serde_json::Deserializer::from_slice(&data).into_iter::<serde_json::Value>() {
                values.push(Ok(
                    v.map_err(|e| invalid(format!("concatenated framing broke: {e}")))?
                ));
            }
        }
    }
    for v in values {
        c.records += 1;
        let Ok(v) = v else {
            c.record_errors += 1;
            continue;
        };
        match v.get("messageType").and_then(|m| m.as_str()) {
            Some("CONTROL_MESSAGE") => c.control_messages += 1,
            Some(_) => c.rows += v["logEvents"].as_array().map_or(0, |a| a.len() as u64),
            None => {
                if let (Some(raw), Some(_)) = (
                    v.get("rawData").and_then(|r| r.as_str()),
                    v.get("attemptsMade"),
                ) {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .map_err(|e| invalid(e.to_string()))?;
                    let inner = verify_counts(&decoded, Framing::Newline)?;
                    c.rows += inner.rows;
                } else {
                    c.rows += 1;
                }
            }
        }
    }
    Ok(c)
}

fn clear_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return fs::create_dir_all(dir);
    }
    let canon = dir.canonicalize()?;
    if canon.parent().is_none() || canon.join("Cargo.toml").exists() || canon.join(".git").exists()
    {
        return Err(invalid(format!(
            "refusing to wipe {}: looks like a root or a project dir",
            canon.display()
        )));
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn cmd_sample(out_dir: &Path) -> io::Result<()> {
    let objs = build_sample();
    clear_dir(out_dir)?;

    let mut per_object = BTreeMap::new();
    let mut total = Counts::default();
    let mut total_bytes = 0usize;
    for o in &objs {
        let path: PathBuf = out_dir.join(&o.key);
        fs::create_dir_all(path.parent().unwrap())?;
        fs::write(&path, &o.bytes)?;
        let recount = verify_counts(&fs::read(&path)?, o.framing)?;
        if recount != o.counts {
            return Err(invalid(format!(
                "{}: constructed {:?} but re-count gives {:?}",
                o.key, o.counts, recount
            )));
        }
        total.add(&o.counts);
        total_bytes += o.bytes.len();
        per_object.insert(o.key.clone(), o.counts);
    }
    let expected = Expected {
        objects: objs.len(),
        records: total.records,
        rows: total.rows,
        record_errors: total.record_errors,
        control_messages: total.control_messages,
        per_object,
    };
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut json = serde_json::to_string_pretty(&expected).unwrap();
    json.push('\n');
    fs::write(parent.join("expected-counts.json"), json)?;

    // Markdown table for sample-data/README.md
    println!(
        "| object (relative key) | compression | framing | envelope | records | rows | record errors | control msgs | notes |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---|");
    for o in &objs {
        let c = o.counts;
        println!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.key,
            o.compression,
            o.framing_desc,
            o.envelope,
            c.records,
            c.rows,
            c.record_errors,
            c.control_messages,
            o.note
        );
    }
    println!(
        "| **total: {} objects** | | | | **{}** | **{}** | **{}** | **{}** | |",
        objs.len(),
        total.records,
        total.rows,
        total.record_errors,
        total.control_messages
    );
    eprintln!(
        "wrote {} objects ({} bytes) under {} and {}",
        objs.len(),
        total_bytes,
        out_dir.display(),
        parent.join("expected-counts.json").display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// `bench`
// ---------------------------------------------------------------------------

struct BenchOpts {
    records: Option<u64>,
    bytes: Option<u64>,
    framing: Framing,
    gzip: bool,
    out: PathBuf,
    seed: u64,
}

fn parse_bench(args: &[String]) -> io::Result<BenchOpts> {
    let mut o = BenchOpts {
        records: None,
        bytes: None,
        framing: Framing::Newline,
        gzip: false,
        out: PathBuf::new(),
        seed: BENCH_SEED,
    };
    let (mut framing, mut compression) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if a.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> io::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage_err(&format!("{flag} needs a value"))),
            }
        };
        let num = |s: String| -> io::Result<u64> {
            s.replace('_', "")
                .parse()
                .map_err(|_| usage_err(&format!("{flag}: not a number: {s}")))
        };
        match flag {
            "--records" => o.records = Some(num(value()?)?),
            "--bytes" => o.bytes = Some(num(value()?)?),
            "--seed" => o.seed = num(value()?)?,
            "--framing" => framing = Some(value()?),
            "--compression" => compression = Some(value()?),
            "--out" => o.out = PathBuf::from(value()?),
            _ => return Err(usage_err(&format!("unknown argument {a}"))),
        }
    }
    if o.records.is_some() == o.bytes.is_some() {
        return Err(usage_err("give exactly one of --records N and --bytes N"));
    }
    o.framing = match framing.as_deref() {
        Some("newline") => Framing::Newline,
        Some("concatenated") => Framing::Concatenated,
        _ => return Err(usage_err("--framing must be newline or concatenated")),
    };
    o.gzip = match compression.as_deref() {
        Some("gzip") => true,
        Some("none") => false,
        _ => return Err(usage_err("--compression must be gzip or none")),
    };
    if o.out.as_os_str().is_empty() {
        return Err(usage_err("--out FILE is required"));
    }
    Ok(o)
}

fn cmd_bench(o: &BenchOpts) -> io::Result<()> {
    let started = Instant::now();
    let file = BufWriter::with_capacity(1 << 20, File::create(&o.out)?);
    let mut gz = None;
    let mut plain = None;
    if o.gzip {
        gz = Some(
            GzBuilder::new()
                .mtime(0)
                .write(file, Compression::new(GZIP_LEVEL)),
        );
    } else {
        plain = Some(file);
    }
    let sink: &mut dyn Write = match (&mut gz, &mut plain) {
        (Some(g), _) => g,
        (_, Some(p)) => p,
        _ => unreachable!(),
    };
    let mut eg = EventGen::new(
        o.seed,
        hour_ms(2026, 11, 25, 22),
        20,
        2000,
        EventStream::Shop,
    );
    const CHUNK: usize = 256 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let (mut records, mut written) = (0u64, 0u64);
    let mut sink_time = std::time::Duration::ZERO;
    loop {
        let done = match (o.records, o.bytes) {
            (Some(n), _) => records >= n,
            (_, Some(b)) => written + buf.len() as u64 >= b,
            _ => unreachable!(),
        };
        if done || buf.len() >= CHUNK {
            written += buf.len() as u64;
            let t = Instant::now();
            sink.write_all(&buf)?;
            sink_time += t.elapsed();
            buf.clear();
            if done {
                break;
            }
        }
        eg.write_event(&mut buf);
        if o.framing == Framing::Newline {
            buf.push(b'\n');
        }
        records += 1;
    }
    // finish the gzip trailer and flush the BufWriter, surfacing errors
    let mut file = match (gz, plain) {
        (Some(g), _) => g.finish()?,
        (_, Some(p)) => p,
        _ => unreachable!(),
    };
    file.flush()?;
    drop(file);
    let compressed = fs::metadata(&o.out)?.len();
    let secs = started.elapsed().as_secs_f64();
    let sink_secs = sink_time.as_secs_f64();
    println!("records={records} uncompressed_bytes={written} compressed_bytes={compressed}");
    eprintln!(
        "{:.2}s total ({:.0} MB/s uncompressed); generation alone {:.2}s ({:.0} MB/s), writing/compression {:.2}s; avg record {:.0} bytes",
        secs,
        written as f64 / secs / 1e6,
        secs - sink_secs,
        written as f64 / (secs - sink_secs) / 1e6,
        sink_secs,
        written as f64 / records.max(1) as f64
    );
    Ok(())
}

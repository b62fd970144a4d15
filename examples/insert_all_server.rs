//! A local insertAll endpoint for the benchmark: accepts every request at once and answers
//! BigQuery's success shape, so `scripts/bench.sh` measures what building and sending requests
//! costs firehose-replay, with no network latency and no faults. Prints its address, then serves
//! until killed. Bodies are read in full but not parsed (that would be BigQuery's CPU, not ours).
//!
//!     cargo run --release --example insert_all_server

fn main() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
    println!(
        "http://{}",
        server.server_addr().to_ip().expect("an IP address")
    );
    let ok = r#"{"kind":"bigquery#tableDataInsertAllResponse"}"#;
    for mut req in server.incoming_requests() {
        std::thread::spawn(move || {
            let mut sink = std::io::sink();
            let _ = std::io::copy(req.as_reader(), &mut sink);
            let resp = tiny_http::Response::from_string(ok).with_header(
                tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                    .expect("a valid header"),
            );
            let _ = req.respond(resp);
        });
    }
}

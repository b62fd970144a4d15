//! `/healthz` (the process is alive and serving) and `/metrics` (Prometheus text format) over
//! HTTP/1.1, for the container platform's probes and scrapers. Anything else is 404.
//!
//! Whoever can reach the port must not be able to starve it (a failing liveness probe restarts
//! the worker) nor the process (file descriptors the SQS and S3 clients need): each connection
//! serves one request, must send its headers within [`Limits::header_read`] and is closed after
//! [`Limits::connection`] whatever it does; at most [`Limits::max_connections`] are open, the
//! oldest closed to make room for a new one (so a flood of idle connections cannot lock a probe
//! out); and a failing `accept` (out of descriptors) pauses the loop instead of spinning.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::WorkerError;

/// What one client may hold of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time from accepting a connection to having its request's headers.
    pub header_read: Duration,
    /// Time a connection may stay open in all (a client that never reads the response).
    pub connection: Duration,
    /// Connections open at once; a new one closes the oldest.
    pub max_connections: usize,
}

impl Default for Limits {
    /// Probes and scrapers send a few hundred bytes from nearby and read a small response:
    /// seconds are plenty.
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(5),
            connection: Duration::from_secs(15),
            max_connections: 32,
        }
    }
}

/// How long to wait before accepting again after `failures` accepts in a row failed (1 for
/// the first): from 10 ms doubling to 1 s. EMFILE and ENFILE stay until descriptors are freed,
/// so retrying at once would spin a core and flood the log.
pub fn accept_backoff(failures: u32) -> Duration {
    let ms = 10u64.saturating_mul(1u64 << failures.saturating_sub(1).min(7));
    Duration::from_millis(ms.min(1000))
}

/// Binds `addr` (port 0: any free port) and serves until `stop`. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<SocketAddr, WorkerError> {
    serve_with(addr, metrics, stop, Limits::default()).await
}

/// [`serve`] with other [`Limits`].
pub async fn serve_with(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    limits: Limits,
) -> Result<SocketAddr, WorkerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| WorkerError::Health(addr, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| WorkerError::Health(addr, e))?;
    // Open connections, oldest first: each one's id and the token that closes it.
    let open: Arc<Mutex<VecDeque<(u64, CancellationToken)>>> = Default::default();
    tokio::spawn(async move {
        let mut failures = 0u32;
        let mut next_id = 0u64;
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        failures = 0;
                        stream
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let pause = accept_backoff(failures);
                        tracing::warn!(
                            pause_ms = pause.as_millis() as u64,
                            "health endpoint: accept failed: {e}"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => continue,
                            _ = stop.cancelled() => return,
                        }
                    }
                },
                _ = stop.cancelled() => return,
            };
            let id = next_id;
            next_id += 1;
            let closer = stop.child_token();
            {
                let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
                while open.len() >= limits.max_connections.max(1) {
                    if let Some((_, oldest)) = open.pop_front() {
                        oldest.cancel();
                    }
                }
                open.push_back((id, closer.clone()));
            }
            let metrics = metrics.clone();
            let open = open.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                // Whichever ends first; dropping the connection closes the socket.
                tokio::select! {
                    _ = conn => {}
                    _ = tokio::time::sleep(limits.connection) => {}
                    _ = closer.cancelled() => {}
                }
                open.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(other, _)| *other != id);
            });
        }
    });
    Ok(bound)
}

fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_accept_pauses_longer_each_time_up_to_a_second() {
        assert_eq!(accept_backoff(1), Duration::from_millis(10));
        assert_eq!(accept_backoff(2), Duration::from_millis(20));
        let mut last = Duration::ZERO;
        for n in 1..100 {
            let d = accept_backoff(n);
            assert!(d >= last && d >= Duration::from_millis(10), "{n}: {d:?}");
            last = d;
        }
        assert_eq!(accept_backoff(u32::MAX), Duration::from_secs(1));
    }
}

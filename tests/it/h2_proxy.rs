//! A TCP proxy that understands just enough HTTP/2 to inject faults into gRPC (h2c) answers.
//!
//! Client→server bytes are forwarded raw. Server→client bytes are parsed into frames (9-byte
//! header: 24-bit length, type, flags, 31-bit stream id; then the payload) and forwarded whole,
//! so a fault acts on an exact frame boundary: everything before the chosen DATA frame reaches
//! the client, nothing from it on does.
//!
//! Only DATA frames (type 0) with a non-empty payload (padding included: the length field is
//! what counts) are counted, across all connections, 1-based. A fault fires once; connections
//! after it are forwarded untouched.
//!
//! Plain `std::net` and threads: usable from synchronous tests and next to any tokio runtime.
//! Dropping the proxy closes the listener and every connection and joins its threads.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to the server→client stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Instead of forwarding the n-th (1-based, counted across all connections, counting only
    /// DATA frames with a non-empty payload sent by the server) server DATA frame, close both
    /// sockets of that connection (RST where the platform allows, else FIN). Later connections
    /// are forwarded untouched (the fault fires once).
    DropServerData(usize),
    /// Withhold the n-th such server DATA frame and everything after it on that connection (keep
    /// the sockets open, forward nothing more to the client, not even the server's EOF), and
    /// signal it through [`H2Proxy::fired`] / [`H2Proxy::wait_fired`]. The test then typically
    /// SIGKILLs the client. Client→server bytes keep flowing.
    HoldServerData(usize),
}

pub struct H2Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    fault: Fault,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    server_data_frames: usize,
    connections: usize,
    fired: bool,
    stopping: bool,
    /// Both sockets of every connection, to shut them down when the proxy is dropped.
    live: Vec<Weak<TcpStream>>,
    threads: Vec<JoinHandle<()>>,
}

/// What to do with one counted server DATA frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Forward,
    Drop,
    Hold,
}

const FRAME_HEADER: usize = 9;
const DATA: u8 = 0;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a non-empty server DATA frame and decides its fate.
    fn on_server_data(&self) -> Action {
        let mut st = self.lock();
        st.server_data_frames += 1;
        let n = st.server_data_frames;
        let action = match self.fault {
            _ if st.fired => Action::Forward,
            Fault::DropServerData(k) if k == n => Action::Drop,
            Fault::HoldServerData(k) if k == n => Action::Hold,
            _ => Action::Forward,
        };
        if action != Action::Forward {
            st.fired = true;
        }
        drop(st);
        self.changed.notify_all();
        action
    }

    /// Waits (condvar, no polling) until `done` holds or `timeout` passes; whether it holds.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let st = self.lock();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, timeout, |s| !done(s))
            .unwrap_or_else(PoisonError::into_inner);
        done(&st)
    }
}

impl H2Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards each accepted connection to `upstream`.
    pub fn start(upstream: SocketAddr, fault: Fault) -> H2Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the h2 proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            fault,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("h2-proxy-accept".into())
                .spawn(move || accept_loop(&listener, upstream, &shared))
                .unwrap()
        };
        H2Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a plaintext (h2c) gRPC channel.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the fault has happened (never, for [`Fault::None`]).
    pub fn fired(&self) -> bool {
        self.shared.lock().fired
    }

    /// Blocks until the fault has happened or `timeout` passes; whether it has.
    pub fn wait_fired(&self, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.fired)
    }

    /// Non-empty server DATA frames seen so far, on all connections (forwarded, dropped or held).
    pub fn server_data_frames(&self) -> usize {
        self.shared.lock().server_data_frames
    }

    /// Blocks until at least `n` non-empty server DATA frames have been seen or `timeout`
    /// passes; whether they have.
    pub fn wait_server_data_frames(&self, n: usize, timeout: Duration) -> bool {
        self.shared
            .wait_until(timeout, |s| s.server_data_frames >= n)
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }
}

impl Drop for H2Proxy {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        // Wake the blocking accept; it sees `stopping` and returns, closing the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // No new connections now: end the live ones (their blocked reads and writes return).
        let (live, threads) = {
            let mut st = self.shared.lock();
            (
                std::mem::take(&mut st.live),
                std::mem::take(&mut st.threads),
            )
        };
        for socket in live.iter().filter_map(Weak::upgrade) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        drop(live);
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.lock().stopping {
            return;
        }
        let Ok((client, _)) = accepted else { continue };
        shared.lock().connections += 1;
        shared.changed.notify_all();
        // Refused or unreachable upstream: the client just sees its connection closed.
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(10)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let client = Arc::new(client);
        let server = Arc::new(server);
        let killed = Arc::new(AtomicBool::new(false));

        let mut st = shared.lock();
        if st.stopping {
            return;
        }
        st.live.retain(|w| w.strong_count() > 0);
        st.threads.retain(|t| !t.is_finished());
        st.live.push(Arc::downgrade(&client));
        st.live.push(Arc::downgrade(&server));
        let n = st.connections;
        let up = {
            let (client, server, killed) = (client.clone(), server.clone(), killed.clone());
            std::thread::Builder::new()
                .name(format!("h2-proxy-c2s-{n}"))
                .spawn(move || client_to_server(&client, &server, &killed))
                .unwrap()
        };
        let down = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("h2-proxy-s2c-{n}"))
                .spawn(move || server_to_client(&shared, &server, &client, &killed))
                .unwrap()
        };
        st.threads.push(up);
        st.threads.push(down);
    }
}

/// Raw bytes; the client's EOF becomes the server's.
fn client_to_server(client: &TcpStream, server: &TcpStream, killed: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader = client;
    let mut writer = server;
    let clean = loop {
        match reader.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                if writer.write_all(&buf[..n]).is_err() {
                    break false;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    if killed.load(Ordering::SeqCst) {
        // The server→client side reset the connection: the sockets close (RST) when the last
        // reference to them goes, which is ours.
        return;
    }
    if clean {
        let _ = server.shutdown(Shutdown::Write);
    } else {
        let _ = server.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
    }
}

/// Parses frames, counts DATA frames and applies the fault at a frame boundary.
fn server_to_client(shared: &Shared, server: &TcpStream, client: &TcpStream, killed: &AtomicBool) {
    let mut reader = server;
    let mut writer = client;
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes read and not yet forwarded (or discarded): at most one partial frame between reads.
    let mut buf: Vec<u8> = Vec::new();
    let mut held = false;
    let clean = loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break false,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Whole frames in `buf[..consumed]`; the first `forward` bytes of them go to the client.
        let mut consumed = 0;
        let mut forward = 0;
        while let Some((ty, len)) = frame_header(&buf[consumed..]) {
            let end = consumed + FRAME_HEADER + len;
            if buf.len() < end {
                break;
            }
            let action = if ty == DATA && len > 0 {
                shared.on_server_data()
            } else {
                Action::Forward
            };
            match action {
                Action::Forward => {}
                Action::Drop => {
                    let _ = writer.write_all(&buf[..forward]);
                    reset(server, client, killed);
                    return;
                }
                Action::Hold => held = true,
            }
            consumed = end;
            if !held {
                forward = end;
            }
        }
        if writer.write_all(&buf[..forward]).is_err() {
            break false;
        }
        buf.drain(..consumed);
    };
    if held {
        // Keep the client's socket open and silent: no EOF, no reset.
        return;
    }
    if clean {
        // A truncated last frame, if any: forwarded as is, then the server's EOF.
        let _ = writer.write_all(&buf);
        let _ = client.shutdown(Shutdown::Write);
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
}

/// `(type, payload length)` of the frame `bytes` starts with, once its header is complete.
fn frame_header(bytes: &[u8]) -> Option<(u8, usize)> {
    let h = bytes.get(..FRAME_HEADER)?;
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    Some((h[3], len))
}

/// Closes both sockets of a connection abruptly: RST where SO_LINGER can be set to zero (the
/// sockets then reset when the last reference closes them), FIN otherwise.
fn reset(server: &TcpStream, client: &TcpStream, killed: &AtomicBool) {
    killed.store(true, Ordering::SeqCst);
    if linger_zero(client) && linger_zero(server) {
        // Wakes the other thread's blocked read without sending anything; it then drops the
        // last references and the close sends the RSTs.
        let _ = client.shutdown(Shutdown::Read);
        let _ = server.shutdown(Shutdown::Read);
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
}

/// `SO_LINGER {on, 0s}`: close() resets the connection. (`TcpStream::set_linger` is unstable.)
#[cfg(any(
    target_os = "macos",
    all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )
    )
))]
fn linger_zero(socket: &TcpStream) -> bool {
    use std::ffi::{c_int, c_void};
    use std::os::fd::AsRawFd;

    #[repr(C)]
    struct Linger {
        l_onoff: c_int,
        l_linger: c_int,
    }
    extern "C" {
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
    #[cfg(target_os = "linux")]
    const SOL_SOCKET: c_int = 1;
    #[cfg(target_os = "linux")]
    const SO_LINGER: c_int = 13;
    #[cfg(target_os = "macos")]
    const SOL_SOCKET: c_int = 0xffff;
    #[cfg(target_os = "macos")]
    const SO_LINGER: c_int = 0x80;

    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid open socket descriptor and a pointer to a live `struct linger` of the
    // given size.
    let rc = unsafe {
        setsockopt(
            socket.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<Linger>() as u32,
        )
    };
    rc == 0
}

#[cfg(not(any(
    target_os = "macos",
    all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )
    )
)))]
fn linger_zero(_socket: &TcpStream) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        assert!(len < 1 << 24);
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.push(ty);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Server SETTINGS (MAX_CONCURRENT_STREAMS = 100).
    fn settings() -> Vec<u8> {
        frame(4, 0, 0, &[0, 3, 0, 0, 0, 100])
    }

    fn settings_ack() -> Vec<u8> {
        frame(4, 1, 0, &[])
    }

    /// What the fake server sends first: SETTINGS, DATA 1 ("hello"), an empty DATA frame (not
    /// counted).
    fn part1() -> Vec<u8> {
        [settings(), frame(0, 0, 1, b"hello"), frame(0, 0, 1, b"")].concat()
    }

    /// What it sends after the client's SETTINGS ack: DATA 2 (padded), DATA 3 (larger than a
    /// read), trailers.
    fn part2() -> Vec<u8> {
        let padded = [&[3u8][..], b"world", &[0, 0, 0]].concat();
        [
            frame(0, 0x8, 1, &padded),
            frame(0, 0, 1, &[7u8; 100_000]),
            frame(1, 0x5, 1, &[0x88]),
        ]
        .concat()
    }

    /// A fake h2 server for `connections` connections, each: read the preface, send `part1`,
    /// read a 9-byte frame, send `part2` in small pieces (so frames arrive split), close its
    /// write side, read to EOF. Joins to what each connection received, in accept order.
    fn fake_server(connections: usize) -> (SocketAddr, JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let conns: Vec<_> = (0..connections)
                .map(|_| {
                    let (s, _) = listener.accept().unwrap();
                    thread::spawn(move || serve(s))
                })
                .collect();
            conns.into_iter().map(|c| c.join().unwrap()).collect()
        });
        (addr, handle)
    }

    fn serve(mut s: TcpStream) -> Vec<u8> {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        let mut got = vec![0u8; PREFACE.len() + FRAME_HEADER];
        let (preface, ack) = got.split_at_mut(PREFACE.len());
        s.read_exact(preface).unwrap();
        assert_eq!(preface, PREFACE);
        s.write_all(&part1()).unwrap();
        s.read_exact(ack).unwrap();
        // Small first pieces split the first frame's header; the rest in larger ones. Writes
        // fail once the proxy has reset the connection.
        let p2 = part2();
        let (small, large) = p2.split_at(21);
        let _ = small
            .chunks(7)
            .chain(large.chunks(4096))
            .try_for_each(|piece| s.write_all(piece));
        let _ = s.shutdown(Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        got.extend_from_slice(&rest);
        got
    }

    fn client(proxy: &H2Proxy) -> TcpStream {
        let c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.set_write_timeout(Some(TIMEOUT)).unwrap();
        c
    }

    fn read_n(c: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        c.read_exact(&mut got).unwrap();
        got
    }

    /// Reads until the proxy closes the connection (EOF or reset, not a timeout); what came.
    fn read_until_closed(c: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        if let Err(e) = c.read_to_end(&mut got) {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ),
                "connection not closed: {e}"
            );
        }
        got
    }

    /// A whole exchange through the proxy, checked byte for byte in both directions.
    fn clean_exchange(proxy: &H2Proxy) {
        let mut c = client(proxy);
        c.write_all(PREFACE).unwrap();
        assert_eq!(read_n(&mut c, part1().len()), part1());
        c.write_all(&settings_ack()).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest == part2(), "part2 differs ({} bytes)", rest.len());
        c.write_all(b"goodbye").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
    }

    #[test]
    fn forwards_exact_bytes_both_ways() {
        let (upstream, server) = fake_server(1);
        let proxy = H2Proxy::start(upstream, Fault::None);
        assert_eq!(proxy.endpoint(), format!("http://{}", proxy.addr()));
        assert!(proxy.addr().ip().is_loopback());

        clean_exchange(&proxy);

        let received = server.join().unwrap();
        assert_eq!(received, [[PREFACE, &settings_ack(), b"goodbye"].concat()]);
        assert!(!proxy.fired());
        assert!(!proxy.wait_fired(Duration::ZERO));
        assert_eq!(proxy.server_data_frames(), 3);
        assert_eq!(proxy.connections(), 1);
    }

    #[test]
    fn drop_server_data_resets_that_connection_once() {
        let (upstream, server) = fake_server(2);
        let proxy = H2Proxy::start(upstream, Fault::DropServerData(2));

        let mut c = client(&proxy);
        c.write_all(PREFACE).unwrap();
        assert_eq!(read_n(&mut c, part1().len()), part1());
        assert!(!proxy.fired());
        c.write_all(&settings_ack()).unwrap();
        // DATA 2 never arrives, nor anything after it.
        assert_eq!(read_until_closed(&mut c), b"");
        assert!(proxy.fired());
        assert!(proxy.wait_fired(TIMEOUT));
        assert_eq!(proxy.server_data_frames(), 2);

        // The fault fired once: the next connection gets everything.
        clean_exchange(&proxy);

        let received = server.join().unwrap();
        assert_eq!(received.len(), 2);
        assert!(received[0].starts_with(&[PREFACE, &settings_ack()].concat()));
        assert_eq!(received[1], [PREFACE, &settings_ack(), b"goodbye"].concat());
        assert_eq!(proxy.server_data_frames(), 5);
        assert_eq!(proxy.connections(), 2);
    }

    #[test]
    fn hold_server_data_withholds_the_rest() {
        let (upstream, server) = fake_server(1);
        let proxy = H2Proxy::start(upstream, Fault::HoldServerData(1));

        let mut c = client(&proxy);
        c.write_all(PREFACE).unwrap();
        // SETTINGS arrives (same read as DATA 1 on the proxy's side), DATA 1 does not.
        assert_eq!(read_n(&mut c, settings().len()), settings());
        assert!(proxy.wait_fired(TIMEOUT));
        assert!(proxy.fired());

        // Client→server still flows; the server answers and closes its side, the proxy reads
        // (and discards) it all.
        c.write_all(&settings_ack()).unwrap();
        assert!(proxy.wait_server_data_frames(3, TIMEOUT));
        assert_eq!(proxy.server_data_frames(), 3);

        // The client's socket stays open and silent: no data, no EOF.
        c.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        match c.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("expected nothing to read, got {other:?}"),
        }
        c.set_nonblocking(false).unwrap();

        // Stopping the proxy closes it; everything it ever forwarded has arrived by then.
        drop(proxy);
        assert_eq!(read_until_closed(&mut c), b"");
        let received = server.join().unwrap();
        assert_eq!(received, [[PREFACE, &settings_ack()].concat()]);
    }
}

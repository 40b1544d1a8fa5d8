//! The metrics and health endpoint: `/metrics`, `/healthz`, `/readyz` over HTTP/1.1.
//!
//! One small mio event loop on its own thread, not pinned, so it floats to whichever core is
//! free and never takes a pinned worker's core. Connections are served side by side, each
//! answered once with `Connection: close`, so a slow or stuck client cannot make a liveness
//! probe wait behind it:
//! - a client gets [`REQUEST_DEADLINE`] from its accept to send its request and take the
//!   answer, all reads and writes together (not per read: one byte every few seconds does not
//!   keep a connection open);
//! - a request head larger than [`MAX_REQUEST_BYTES`] is answered 431 and closed;
//! - beyond [`MAX_CONNECTIONS`] open at once, a new connection is answered 503 and closed at
//!   once rather than queued;
//! - dropping the [`Endpoint`] wakes the loop, which closes every connection and ends: a held
//!   connection never delays the end of the process.
//!
//! No async runtime.
//!
//! - `GET /metrics`: the Prometheus text format ([`super::prometheus`]).
//! - `GET /healthz`: 200 when every stage thread is alive and either making progress or idle
//!   for a known reason (waiting for input, blocked on a full queue, finished); 503 naming the
//!   thread otherwise. Wire it to a supervisor's liveness check.
//! - `GET /readyz`: 200 while the pipeline runs and is not draining, else 503 (also while
//!   the object-storage uploader is stuck, saying why).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener as MioListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::live::Registry;
use crate::error::{Error, Result};

/// How long a client has, from its accept, to send its request and read the answer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request head read; a larger one is answered 431.
pub const MAX_REQUEST_BYTES: usize = 8192;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// A running endpoint; stopped when dropped.
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Binds `addr` and serves `registry` until dropped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pinflow::metrics::{endpoint::Endpoint, live::Registry};
    /// use pinflow::plan::Role;
    ///
    /// let registry = Arc::new(Registry::new(&[Role::Fetch, Role::Writer]));
    /// let ep = Endpoint::start("127.0.0.1:0".parse()?, registry)?;
    /// println!("metrics on http://{}/metrics", ep.addr());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(addr: SocketAddr, registry: Arc<Registry>) -> Result<Endpoint> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Config {
            what: "metrics address".into(),
            why: format!("cannot listen on {addr}: {e}"),
        })?;
        let addr = listener.local_addr().map_err(|e| Error::Config {
            what: "metrics address".into(),
            why: e.to_string(),
        })?;
        let setup = |op: &'static str| {
            move |e: io::Error| Error::Config {
                what: "metrics address".into(),
                why: format!("cannot serve on {addr}: {op}: {e}"),
            }
        };
        listener
            .set_nonblocking(true)
            .map_err(setup("set non-blocking"))?;
        let mut listener = MioListener::from_std(listener);
        let poll = Poll::new().map_err(setup("create poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(setup("register"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(setup("create waker"))?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Server {
            poll,
            listener,
            registry,
            stop: Arc::clone(&stop),
            conns: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("pinflow-metrics".into())
            .spawn(move || {
                if let Err(e) = server.serve() {
                    tracing::error!(error = %e, "metrics endpoint stopped");
                }
            })
            .map_err(|e| Error::Thread {
                thread: "pinflow-metrics".into(),
                why: e.to_string(),
            })?;
        Ok(Endpoint {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The loop wakes at once and closes every connection, whatever its clients do.
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The endpoint thread's state.
struct Server {
    poll: Poll,
    listener: MioListener,
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
    /// Open connections; a connection's token is its index.
    conns: Vec<Option<Conn>>,
}

/// One client: its request so far, then the answer being written.
struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    answer: Vec<u8>,
    written: usize,
    /// From accept: the whole exchange must be over by then.
    deadline: Instant,
}

/// What a connection's events came to.
enum Step {
    /// Waiting for more of the request, or for room to write the answer.
    Wait,
    /// Answered, or given up on: close it.
    Close,
}

impl Server {
    fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            // Past its deadline a connection is closed, whatever it was doing.
            for slot in &mut self.conns {
                if slot.as_ref().is_some_and(|c| c.deadline <= now) {
                    *slot = None;
                }
            }
            let wait = self
                .conns
                .iter()
                .flatten()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(1));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    Token(i) => {
                        let step = match self.conns.get_mut(i).and_then(Option::as_mut) {
                            Some(conn) => conn.advance(&self.registry),
                            None => continue,
                        };
                        if let Step::Close = step {
                            self.conns[i] = None;
                        }
                    }
                }
            }
        }
        // Dropping the connections closes them: no client is waited for.
        Ok(())
    }

    /// Accepts every pending connection: served while under the cap, refused above it.
    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: those waiting are taken at the next connection.
                    tracing::debug!(error = %e, "metrics endpoint: accept failed");
                    return;
                }
            };
            let open = self.conns.iter().flatten().count();
            if open >= MAX_CONNECTIONS {
                // Best effort on a fresh socket, whose send buffer is empty; then closed. What
                // the client sent so far is read first: closing a socket with unread bytes
                // resets it, and the client would lose the answer.
                drain(&mut stream);
                let _ = stream.write(&answer(503, "text/plain", "busy\n"));
                drain(&mut stream);
                continue;
            }
            let slot = match self.conns.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut stream, Token(slot), interest)
                .is_err()
            {
                continue;
            }
            let mut conn = Conn {
                stream,
                request: Vec::new(),
                answer: Vec::new(),
                written: 0,
                deadline: Instant::now() + REQUEST_DEADLINE,
            };
            // Bytes may be there already (edge-triggered: no event would say so again).
            if let Step::Wait = conn.advance(&self.registry) {
                self.conns[slot] = Some(conn);
            }
        }
    }
}

impl Conn {
    /// Reads what has arrived, answers once the request is complete, and writes the answer
    /// as far as the socket takes it.
    fn advance(&mut self, registry: &Registry) -> Step {
        if self.answer.is_empty() {
            match self.read_request(registry) {
                Ok(Some(answer)) => self.answer = answer,
                Ok(None) => return Step::Wait,
                Err(()) => return Step::Close,
            }
        }
        while self.written < self.answer.len() {
            match self.stream.write(&self.answer[self.written..]) {
                Ok(0) => return Step::Close,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        let _ = self.stream.flush();
        Step::Close
    }

    /// Reads until the socket would block. `Ok(Some(answer))`: the request is complete (or
    /// bad) and this is the answer; `Ok(None)`: not complete yet; `Err`: the client went away.
    fn read_request(&mut self, registry: &Registry) -> std::result::Result<Option<Vec<u8>>, ()> {
        let mut chunk = [0u8; 2048];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(()),
                Ok(n) => self.request.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(()),
            }
            if self.request.len() > MAX_REQUEST_BYTES {
                let body = "request head too large\n";
                return Ok(Some(answer(431, "text/plain", body)));
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.request) {
            Ok(httparse::Status::Complete(_)) => Ok(Some(route(&req, registry))),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Ok(Some(answer(400, "text/plain", "bad request\n"))),
        }
    }
}

/// Reads and discards what has arrived, without waiting.
fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 2048];
    for _ in 0..MAX_REQUEST_BYTES / sink.len() {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            return;
        }
    }
}

/// The answer to a complete request.
fn route(req: &httparse::Request<'_, '_>, registry: &Registry) -> Vec<u8> {
    if req.method != Some("GET") {
        return answer(405, "text/plain", "only GET\n");
    }
    let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
    match path {
        "/metrics" => answer(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &super::prometheus::render(registry),
        ),
        "/healthz" => match registry.health() {
            Ok(lines) => answer(200, "text/plain", &(lines.join("\n") + "\n")),
            Err(lines) => answer(503, "text/plain", &(lines.join("\n") + "\n")),
        },
        "/readyz" => {
            if let Some(why) = registry.upload_stalled() {
                answer(503, "text/plain", &(why + "\n"))
            } else if registry.ready() {
                answer(200, "text/plain", "ready\n")
            } else if registry.draining() {
                answer(503, "text/plain", "draining\n")
            } else {
                answer(503, "text/plain", "not running\n")
            }
        }
        _ => answer(404, "text/plain", "try /metrics, /healthz or /readyz\n"),
    }
}

/// A complete response with `Connection: close`.
fn answer(status: u16, ctype: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Role;
    use std::net::TcpStream as StdStream;

    fn endpoint() -> Endpoint {
        let registry = Arc::new(Registry::new(&[Role::Fetch, Role::Writer]));
        Endpoint::start("127.0.0.1:0".parse().unwrap(), registry).unwrap()
    }

    /// Sends `GET path` and reads the whole answer (the server closes after it), waiting at
    /// most 30 s: the test fails rather than hangs when nothing comes.
    fn get(addr: SocketAddr, path: &str) -> String {
        try_get(addr, path).expect("an answer within 30 s")
    }

    fn try_get(addr: SocketAddr, path: &str) -> io::Result<String> {
        let mut s = StdStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// A client that sends one byte a second and never completes its request, in a thread;
    /// returns whether the server closed it (false: still open after 60 bytes).
    fn slowloris(addr: SocketAddr) -> std::thread::JoinHandle<bool> {
        let mut s = StdStream::connect(addr).unwrap();
        std::thread::spawn(move || {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            for &b in b"GET /healthz HTTP/1.1\r\nX-Slow: "
                .iter()
                .chain([b'a'; 30].iter())
            {
                if s.write_all(&[b]).is_err() {
                    return true;
                }
                match s.read(&mut [0u8; 256]) {
                    Ok(_) => return true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => return true,
                }
            }
            false
        })
    }

    #[test]
    fn a_slowloris_client_does_not_hold_up_healthz_and_is_cut_at_the_deadline() {
        let ep = endpoint();
        let slow = slowloris(ep.addr());
        std::thread::sleep(Duration::from_millis(1500));
        // Answered while the slow client is still dribbling, not after it.
        let answer = get(ep.addr(), "/healthz");
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        assert!(!slow.is_finished(), "closed before its deadline");
        assert!(slow.join().unwrap(), "still open after 60 s");
    }

    #[test]
    fn connections_over_the_cap_are_refused_at_once_and_service_goes_on() {
        let ep = endpoint();
        let held: Vec<StdStream> = (0..MAX_CONNECTIONS)
            .map(|_| StdStream::connect(ep.addr()).unwrap())
            .collect();
        // Every slot is taken: the next client is told so at once instead of waiting.
        let mut over = String::new();
        for _ in 0..100 {
            // A reset is a refusal too (a request arriving after the answer was written): try
            // again for the answer itself.
            over = try_get(ep.addr(), "/healthz").unwrap_or_default();
            if over.contains("503") {
                break;
            }
            // The held connections may not all be accepted yet.
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(over.starts_with("HTTP/1.1 503"), "{over}");
        assert!(over.ends_with("busy\n"), "{over}");
        // Once their deadline closes the idle ones, clients are served again.
        let started = Instant::now();
        loop {
            let answer = try_get(ep.addr(), "/readyz").unwrap_or_else(|_| "busy\n".into());
            if !answer.ends_with("busy\n") {
                assert!(answer.ends_with("not running\n"), "{answer}");
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never served");
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(held);
    }

    #[test]
    fn an_oversized_request_head_is_refused() {
        let ep = endpoint();
        let mut s = StdStream::connect(ep.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let big = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n",
            "a".repeat(MAX_REQUEST_BYTES)
        );
        // The server may close before taking every byte.
        let _ = s.write_all(big.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    }

    #[test]
    fn dropping_the_endpoint_does_not_wait_for_a_held_connection() {
        let ep = endpoint();
        let slow = slowloris(ep.addr());
        std::thread::sleep(Duration::from_millis(300));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(ep);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the endpoint stopped while a client held a connection");
        // And the held connection was closed with it.
        assert!(slow.join().unwrap());
    }
}

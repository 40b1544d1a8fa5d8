//! The connection pool: hosts, their addresses, and keep-alive HTTP/1.1 connections to them.
//!
//! A host is `name:port` over plain TCP or over TLS (two hosts, each with its own connections
//! and limits). It has at most `connections_per_host` connections; one that finished a response
//! it may keep goes on its host's idle list and takes that host's next request. Connections
//! live in a slab whose index is their poll token, so an event finds its connection at once;
//! a closed connection's slot is reused. Names are resolved on the resolver thread
//! ([`Resolver`]), which wakes the loop with the answer.
//!
//! The pool moves bytes and keeps sockets; what a response or a failure means for its request
//! (deliver, re-send, retry, fail) is decided by the [`Fetcher`](super::event_loop::Fetcher).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};

use super::protocol::{self as http, HttpError, ResponseDecoder};
use super::resolve::{self, Resolver};
use super::schedule::{Request, TokenBucket};
use super::transport::{self, Transport};
use crate::config::FetchConfig;

/// Initial read buffer per connection; grows only for unusually large response heads.
const READ_BUF: usize = 64 * 1024;

pub(super) enum Addrs {
    Unresolved,
    Resolving,
    Ready(Vec<SocketAddr>),
    Failed(String),
}

pub(super) struct Host {
    pub(super) name: String,
    pub(super) port: u16,
    /// `https://`.
    pub(super) tls: bool,
    addrs: Addrs,
    next_addr: usize,
    /// Requests waiting for a connection of this host.
    pub(super) queue: VecDeque<Request>,
    pub(super) open: usize,
    pub(super) idle: Vec<usize>,
    /// Requests-per-second limit, when configured.
    pub(super) bucket: Option<TokenBucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
    Connecting,
    Idle,
    Active,
}

pub(super) struct Conn {
    stream: Transport,
    host: usize,
    addr: SocketAddr,
    pub(super) state: ConnState,
    pub(super) req: Option<Request>,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    pub(super) rstart: usize,
    pub(super) rend: usize,
    pub(super) body: Vec<u8>,
    pub(super) decoder: ResponseDecoder,
    /// Has completed at least one response: a close before the next one is a stale keep-alive.
    reused: bool,
    deadline: Instant,
    pub(super) sent_at: Instant,
    /// The last time bytes arrived (idle timeout).
    last_byte_at: Instant,
}

/// What went wrong on a connection, and whether the request may be tried again.
pub(super) enum ConnFailure {
    /// Nothing of a response arrived on a reused connection: re-send without counting a try.
    Stale,
    /// A try failed in a way that delivered nothing: retry with backoff up to the limit.
    Retryable { class: &'static str, detail: String },
    /// The response itself is unacceptable: fail the request now.
    Fatal { class: &'static str, detail: String },
}

/// Where a connection's first event leaves it.
pub(super) enum Connected {
    /// Nothing to do: no connection in the slot, or not connected yet (a spurious wake-up).
    Not,
    /// Connected (or connected before): drive it.
    Yes,
    Failed(ConnFailure),
}

/// What one read from a connection brought.
pub(super) enum Received {
    /// No connection in the slot.
    Gone,
    /// Nothing more for now: the socket would block.
    Blocked,
    /// The server closed its end.
    Eof,
    /// Bytes were added to the read buffer.
    Bytes,
    Failed(ConnFailure),
}

/// Where the response on a connection stands after decoding what arrived (or its end).
pub(super) enum Response {
    /// Bytes, or a close, on a connection that carries no request.
    Unasked,
    /// More is to come.
    Partial,
    Complete,
    Failed(ConnFailure),
}

/// The hosts and connections, and the poll their sockets are registered with.
pub(super) struct Pool {
    pub(super) poll: Poll,
    /// The client configuration of every `https://` connection.
    #[cfg(feature = "tls")]
    tls: Arc<rustls::ClientConfig>,
    pub(super) hosts: Vec<Host>,
    host_index: HashMap<(String, u16, bool), usize>,
    /// The host `host_for` found last.
    last_host: usize,
    /// The slab: a connection's index is its poll token.
    pub(super) conns: Vec<Option<Conn>>,
    free_slots: Vec<usize>,
    resolver: Resolver,
    /// Configured request headers, resolved, as CRLF-terminated lines.
    extra_headers: String,
}

impl Pool {
    pub(super) fn new(
        poll: Poll,
        #[cfg(feature = "tls")] tls: Arc<rustls::ClientConfig>,
        resolver: Resolver,
        extra_headers: String,
    ) -> Pool {
        Pool {
            poll,
            #[cfg(feature = "tls")]
            tls,
            hosts: Vec::new(),
            host_index: HashMap::new(),
            last_host: 0,
            conns: Vec::new(),
            free_slots: Vec::new(),
            resolver,
            extra_headers,
        }
    }

    /// The host entry of `name:port` over plain TCP or TLS (two different hosts, with their own
    /// connections and limits).
    pub(super) fn host_for(
        &mut self,
        name: &str,
        port: u16,
        tls: bool,
        cfg: &FetchConfig,
    ) -> usize {
        // Most sources name one host over and over: check the last one before building the
        // owned key the map lookup needs (an allocation per request otherwise).
        if let Some(h) = self.hosts.get(self.last_host) {
            if h.port == port && h.tls == tls && h.name == name {
                return self.last_host;
            }
        }
        if let Some(&i) = self.host_index.get(&(name.to_string(), port, tls)) {
            self.last_host = i;
            return i;
        }
        let i = self.hosts.len();
        let addrs = match resolve::literal(name, port) {
            Some(a) => Addrs::Ready(vec![a]),
            None => Addrs::Unresolved,
        };
        self.hosts.push(Host {
            name: name.to_string(),
            port,
            tls,
            addrs,
            next_addr: 0,
            queue: VecDeque::new(),
            open: 0,
            idle: Vec::new(),
            bucket: cfg
                .rate_limit
                .map(|r| TokenBucket::new(r, cfg.rate_burst.unwrap_or(r))),
        });
        self.host_index.insert((name.to_string(), port, tls), i);
        self.last_host = i;
        i
    }

    /// Whether host `h`'s addresses are known (`Ok(true)`), still awaited (`Ok(false)`: the
    /// resolver is asked the first time), or cannot be had (`Err`, the resolver's reason).
    pub(super) fn addrs_ready(&mut self, h: usize) -> std::result::Result<bool, String> {
        match &self.hosts[h].addrs {
            Addrs::Unresolved => {
                self.resolver
                    .resolve(h, &self.hosts[h].name, self.hosts[h].port);
                self.hosts[h].addrs = Addrs::Resolving;
                Ok(false)
            }
            Addrs::Resolving => Ok(false),
            Addrs::Failed(why) => Err(why.clone()),
            Addrs::Ready(_) => Ok(true),
        }
    }

    /// Takes the resolver's answers (it wakes the loop when there are some).
    pub(super) fn take_resolved(&mut self) {
        while let Ok((h, result)) = self.resolver.answers.try_recv() {
            self.hosts[h].addrs = match result {
                Ok(a) => Addrs::Ready(a),
                Err(e) => Addrs::Failed(e),
            };
        }
    }

    /// Opens a new connection to the resolved host `h` for `req`, or gives the request back
    /// with the reason it cannot go.
    #[allow(clippy::result_large_err)] // Only on failure, and moved straight on.
    pub(super) fn open(
        &mut self,
        h: usize,
        req: Request,
        cfg: &FetchConfig,
    ) -> std::result::Result<(), (Request, ConnFailure)> {
        let addr = match &self.hosts[h].addrs {
            Addrs::Ready(a) => a[self.hosts[h].next_addr % a.len()],
            _ => unreachable!("dispatch opens connections only for resolved hosts"),
        };
        self.hosts[h].next_addr = self.hosts[h].next_addr.wrapping_add(1);
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let connect_failed = |detail| ConnFailure::Retryable {
            class: "connect",
            detail,
        };
        let mut tcp = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                self.free_slots.push(slot);
                return Err((req, connect_failed(format!("connect to {addr}: {e}"))));
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut tcp,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free_slots.push(slot);
            let detail = format!("register socket for {addr}: {e}");
            return Err((req, connect_failed(detail)));
        }
        let stream = if self.hosts[h].tls {
            #[cfg(feature = "tls")]
            match Transport::tls(tcp, &self.tls, &self.hosts[h].name) {
                Ok(t) => t,
                Err(e) => {
                    // Dropping the socket deregisters it.
                    self.free_slots.push(slot);
                    let detail = e.to_string();
                    return Err((
                        req,
                        ConnFailure::Fatal {
                            class: "tls",
                            detail,
                        },
                    ));
                }
            }
            #[cfg(not(feature = "tls"))]
            unreachable!("https:// URLs are rejected when parsed in builds without TLS")
        } else {
            Transport::Plain(tcp)
        };
        self.hosts[h].open += 1;
        let now = Instant::now();
        let mut conn = Conn {
            stream,
            host: h,
            addr,
            state: ConnState::Connecting,
            req: None,
            wbuf: Vec::with_capacity(256),
            wpos: 0,
            rbuf: vec![0; READ_BUF],
            rstart: 0,
            rend: 0,
            body: Vec::new(),
            decoder: ResponseDecoder::new(cfg.max_body_bytes),
            reused: false,
            deadline: now + cfg.connect_timeout,
            sent_at: now,
            last_byte_at: now,
        };
        let host = &self.hosts[h];
        conn.prepare(
            req,
            host,
            now + cfg.connect_timeout,
            cfg,
            &self.extra_headers,
        );
        self.conns[slot] = Some(conn);
        Ok(())
    }

    /// Loads `req` on the idle connection `slot`; the caller then drives it.
    pub(super) fn start(&mut self, slot: usize, req: Request, cfg: &FetchConfig) {
        let deadline = Instant::now() + cfg.request_timeout;
        let host = &self.hosts[req.host];
        let conn = self.conns[slot]
            .as_mut()
            .expect("idle list holds live connections");
        conn.prepare(req, host, deadline, cfg, &self.extra_headers);
        conn.state = ConnState::Active;
    }

    /// A socket event on `slot`: a connecting socket reports whether its connect succeeded.
    pub(super) fn connected(&mut self, slot: usize, cfg: &FetchConfig) -> Connected {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return Connected::Not;
        };
        if conn.state == ConnState::Connecting {
            match conn.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let detail = format!("connect to {}: {e}", conn.addr);
                    return Connected::Failed(ConnFailure::Retryable {
                        class: "connect",
                        detail,
                    });
                }
            }
            match conn.stream.peer_addr() {
                Ok(_) => {
                    conn.state = ConnState::Active;
                    conn.deadline = Instant::now() + cfg.request_timeout;
                }
                // Not connected yet: a spurious wake-up; the next event will tell.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Connected::Not,
                Err(e) => {
                    let detail = format!("connect to {}: {e}", conn.addr);
                    return Connected::Failed(ConnFailure::Retryable {
                        class: "connect",
                        detail,
                    });
                }
            }
        }
        Connected::Yes
    }

    /// Writes what is pending on `slot` (TLS records, then the request) until the socket would
    /// block. Nothing to do without a connection there.
    pub(super) fn send(&mut self, slot: usize) -> std::result::Result<(), ConnFailure> {
        let Some(conn) = self.conns[slot].as_mut() else {
            return Ok(());
        };
        // TLS records left over when the socket last filled up.
        match conn.stream.flush_pending() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(conn.failure_on_error("send", e)),
        }
        if conn.state == ConnState::Active && conn.wpos < conn.wbuf.len() {
            loop {
                match conn.stream.write(&conn.wbuf[conn.wpos..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        conn.wpos += n;
                        if conn.wpos == conn.wbuf.len() {
                            conn.sent_at = Instant::now();
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(conn.failure_on_error("send", e)),
                }
            }
        }
        Ok(())
    }

    /// Reads once from `slot` into its buffer, making room first.
    pub(super) fn receive(&mut self, slot: usize) -> Received {
        let Some(conn) = self.conns[slot].as_mut() else {
            return Received::Gone;
        };
        loop {
            if conn.rend == conn.rbuf.len() {
                if conn.rstart > 0 {
                    conn.rbuf.copy_within(conn.rstart..conn.rend, 0);
                    conn.rend -= conn.rstart;
                    conn.rstart = 0;
                } else {
                    let n = conn.rbuf.len() * 2;
                    conn.rbuf.resize(n, 0);
                }
            }
            let rend = conn.rend;
            return match conn.stream.read(&mut conn.rbuf[rend..]) {
                Ok(0) => Received::Eof,
                Ok(n) => {
                    conn.rend += n;
                    conn.last_byte_at = Instant::now();
                    Received::Bytes
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Received::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Received::Failed(conn.failure_on_error("receive", e)),
            };
        }
    }

    /// Decodes the bytes buffered on `slot`.
    pub(super) fn decode(&mut self, slot: usize) -> Response {
        let conn = self.conns[slot].as_mut().expect("caller checked");
        if conn.state != ConnState::Active {
            // Bytes nobody asked for: the server is confused; drop the connection.
            return Response::Unasked;
        }
        let input = &conn.rbuf[conn.rstart..conn.rend];
        match conn.decoder.decode(input, &mut conn.body) {
            Ok(n) => {
                conn.rstart += n;
                if conn.rstart == conn.rend {
                    conn.rstart = 0;
                    conn.rend = 0;
                }
            }
            Err(e) => return Response::Failed(http_failure(&e)),
        }
        if conn.decoder.is_done() {
            Response::Complete
        } else {
            Response::Partial
        }
    }

    /// The server closed `slot`: whether that ends its response.
    pub(super) fn eof(&mut self, slot: usize) -> Response {
        let conn = self.conns[slot].as_mut().expect("caller checked");
        if conn.state != ConnState::Active {
            // The server closed an idle keep-alive connection: normal.
            return Response::Unasked;
        }
        match conn.decoder.eof() {
            Ok(()) => Response::Complete,
            Err(e) => Response::Failed(if !conn.decoder.started() && conn.reused {
                ConnFailure::Stale
            } else {
                http_failure(&e)
            }),
        }
    }

    /// After a response: readies `slot` for the next one, and puts it on its host's idle list
    /// when it is to be kept (otherwise the caller closes it).
    pub(super) fn reuse(&mut self, slot: usize, keep: bool) {
        let conn = self.conns[slot].as_mut().expect("still there");
        conn.body.clear();
        conn.decoder.reset();
        conn.reused = true;
        if keep {
            conn.state = ConnState::Idle;
            let h = conn.host;
            self.hosts[h].idle.push(slot);
        }
    }

    /// Closes `slot` (shutting an idle one down politely when `graceful`), and gives back the
    /// request it carried.
    pub(super) fn close(&mut self, slot: usize, graceful: bool) -> Option<Request> {
        let mut conn = self.conns[slot].take()?;
        if graceful && conn.state == ConnState::Idle {
            conn.stream.shutdown();
        }
        let _ = self.poll.registry().deregister(conn.stream.tcp_mut());
        self.free_slots.push(slot);
        let host = &mut self.hosts[conn.host];
        host.open -= 1;
        if conn.state == ConnState::Idle {
            host.idle.retain(|&s| s != slot);
        }
        conn.req.take()
    }

    /// Open connections.
    pub(super) fn open_count(&self) -> usize {
        self.conns.iter().flatten().count()
    }

    /// Whether a connection is connecting or carries a request (its deadlines need checking).
    pub(super) fn any_busy(&self) -> bool {
        self.conns
            .iter()
            .flatten()
            .any(|c| c.state != ConnState::Idle)
    }

    /// Moves every connection's deadlines by `by`: time the loop spent blocked on its output
    /// is not the servers' fault.
    pub(super) fn shift_deadlines(&mut self, by: Duration) {
        for conn in self.conns.iter_mut().flatten() {
            conn.deadline += by;
            conn.sent_at += by;
            conn.last_byte_at += by;
        }
    }
}

impl Conn {
    /// Loads `req` for sending; the request bytes go out as soon as the socket is writable.
    fn prepare(
        &mut self,
        req: Request,
        host: &Host,
        deadline: Instant,
        cfg: &FetchConfig,
        extra: &str,
    ) {
        self.wbuf.clear();
        http::write_request(
            &mut self.wbuf,
            &host.name,
            host.port,
            if host.tls { 443 } else { 80 },
            req.path(),
            &cfg.accept_encoding,
            extra,
        );
        self.wpos = 0;
        self.body.clear();
        self.decoder.reset();
        self.deadline = deadline;
        self.sent_at = Instant::now();
        self.last_byte_at = self.sent_at;
        self.req = Some(req);
    }

    /// Why a connection that is not idle has run out of time, if it has: its connect or
    /// request deadline, the first-byte timeout, or the idle timeout.
    pub(super) fn overdue(&self, now: Instant, cfg: &FetchConfig) -> Option<String> {
        let active = self.state == ConnState::Active;
        let started = self.decoder.started();
        if self.deadline <= now {
            Some(if self.state == ConnState::Connecting {
                format!(
                    "connect to {} timed out after {:?}",
                    self.addr, cfg.connect_timeout
                )
            } else {
                format!("request timed out after {:?}", cfg.request_timeout)
            })
        } else if active && !started && now.duration_since(self.sent_at) >= cfg.first_byte_timeout {
            Some(format!(
                "no response within {:?} (first-byte timeout)",
                cfg.first_byte_timeout
            ))
        } else if active && started && now.duration_since(self.last_byte_at) >= cfg.idle_timeout {
            Some(format!(
                "response stalled: no bytes for {:?} (idle timeout)",
                cfg.idle_timeout
            ))
        } else {
            None
        }
    }

    fn failure_on_error(&self, op: &str, e: io::Error) -> ConnFailure {
        if let Some(tls) = transport::tls_error_text(&e) {
            // A certificate the server will present again: retrying cannot help.
            return ConnFailure::Fatal {
                class: "tls",
                detail: format!("{op} to {}: {tls}", self.addr),
            };
        }
        if self.reused
            && !self.decoder.started()
            && matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            )
        {
            ConnFailure::Stale
        } else {
            ConnFailure::Retryable {
                class: "connection",
                detail: format!("{op} to {}: {e}", self.addr),
            }
        }
    }
}

fn http_failure(e: &HttpError) -> ConnFailure {
    match e {
        HttpError::Truncated => ConnFailure::Retryable {
            class: "truncated",
            detail: e.to_string(),
        },
        HttpError::TooLarge { .. } => ConnFailure::Fatal {
            class: "too large",
            detail: e.to_string(),
        },
        // Garbage where a response should be is a broken server or middlebox, usually
        // transient: worth another attempt on a fresh connection.
        HttpError::Malformed(_) => ConnFailure::Retryable {
            class: "malformed http",
            detail: e.to_string(),
        },
    }
}

//! One keep-alive HTTP/1.1 connection: its socket, its buffers, the request it carries and the
//! decoder of its response.
//!
//! A connection moves bytes and says what came of them ([`Received`], [`Response`],
//! [`ConnFailure`]); the [`Pool`](super::pool::Pool) keeps connections, and the
//! [`Fetcher`](super::event_loop::Fetcher) decides what a response or a failure means for the
//! request.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::credentials::Headers;
use super::pool::Host;
use super::protocol::{self as http, HttpError, ResponseDecoder};
use super::schedule::Request;
use super::transport::{self, Transport};
use crate::config::FetchConfig;
use crate::time::after;

/// Initial read buffer per connection; grows only for unusually large response heads.
const READ_BUF: usize = 64 * 1024;
/// A body buffer larger than this is given back after its response, not kept for the next one
/// on the connection: an idle keep-alive connection should not hold on to a large body's memory.
const KEEP_BODY_CAPACITY: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
    Connecting,
    Idle,
    Active,
}

pub(super) struct Conn {
    pub(super) stream: Transport,
    pub(super) host: usize,
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
    pub(super) deadline: Instant,
    pub(super) sent_at: Instant,
    /// The last time bytes arrived (idle timeout).
    last_byte_at: Instant,
    /// The bytes this connection is counted for in the pool's total of buffered bytes
    /// (`Pool::recount` keeps it equal to [`Conn::held`]).
    pub(super) counted: usize,
    /// Since when its socket is not read because the pool holds `max_buffered_bytes`: its
    /// timeouts do not run meanwhile (the wait is not the server's fault).
    pub(super) paused_at: Option<Instant>,
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
    /// Not connected yet: a spurious wake-up; the next event will tell.
    Not,
    /// Connected (or connected before): drive it.
    Yes,
    Failed(ConnFailure),
}

/// What one read from a connection brought.
pub(super) enum Received {
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

impl Conn {
    /// A new connection to `addr` of host `host`, connecting over `stream`.
    pub(super) fn new(stream: Transport, host: usize, addr: SocketAddr, cfg: &FetchConfig) -> Conn {
        let now = Instant::now();
        Conn {
            stream,
            host,
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
            deadline: after(now, cfg.connect_timeout),
            sent_at: now,
            last_byte_at: now,
            counted: 0,
            paused_at: None,
        }
    }

    /// Response bytes this connection holds: the body so far and what is read but not decoded.
    pub(super) fn held(&self) -> usize {
        self.body.len() + (self.rend - self.rstart)
    }

    /// Loads `req` for sending; the request bytes go out as soon as the socket is writable.
    pub(super) fn prepare(
        &mut self,
        req: Request,
        host: &Host,
        deadline: Instant,
        cfg: &FetchConfig,
        extra: &Headers,
    ) {
        self.wbuf.clear();
        let extra = req.headers(extra);
        http::write_request(
            &mut self.wbuf,
            &host.name,
            host.port,
            if host.tls { 443 } else { 80 },
            req.path(),
            &cfg.accept_encoding,
            &extra,
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
        if self.paused_at.is_some() {
            // Not read on purpose (too many bytes buffered): its clocks start again on resume.
            return None;
        }
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
    /// A socket event: a connecting socket reports whether its connect succeeded.
    pub(super) fn connected(&mut self, cfg: &FetchConfig) -> Connected {
        if self.state == ConnState::Connecting {
            match self.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let detail = format!("connect to {}: {e}", self.addr);
                    return Connected::Failed(ConnFailure::Retryable {
                        class: "connect",
                        detail,
                    });
                }
            }
            match self.stream.peer_addr() {
                Ok(_) => {
                    self.state = ConnState::Active;
                    self.deadline = after(Instant::now(), cfg.request_timeout);
                }
                // Not connected yet: a spurious wake-up; the next event will tell.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Connected::Not,
                Err(e) => {
                    let detail = format!("connect to {}: {e}", self.addr);
                    return Connected::Failed(ConnFailure::Retryable {
                        class: "connect",
                        detail,
                    });
                }
            }
        }
        Connected::Yes
    }

    /// Writes what is pending (TLS records, then the request) until the socket would block.
    pub(super) fn send(&mut self) -> std::result::Result<(), ConnFailure> {
        // TLS records left over when the socket last filled up.
        match self.stream.flush_pending() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(self.failure_on_error("send", e)),
        }
        if self.state == ConnState::Active && self.wpos < self.wbuf.len() {
            loop {
                match self.stream.write(&self.wbuf[self.wpos..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.wpos += n;
                        if self.wpos == self.wbuf.len() {
                            self.sent_at = Instant::now();
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.failure_on_error("send", e)),
                }
            }
        }
        Ok(())
    }

    /// Reads once into the buffer, making room first.
    pub(super) fn receive(&mut self) -> Received {
        loop {
            if self.rend == self.rbuf.len() {
                if self.rstart > 0 {
                    self.rbuf.copy_within(self.rstart..self.rend, 0);
                    self.rend -= self.rstart;
                    self.rstart = 0;
                } else {
                    let n = self.rbuf.len() * 2;
                    self.rbuf.resize(n, 0);
                }
            }
            let rend = self.rend;
            return match self.stream.read(&mut self.rbuf[rend..]) {
                Ok(0) => Received::Eof,
                Ok(n) => {
                    self.rend += n;
                    self.last_byte_at = Instant::now();
                    Received::Bytes
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Received::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Received::Failed(self.failure_on_error("receive", e)),
            };
        }
    }

    /// Decodes the buffered bytes.
    pub(super) fn decode(&mut self) -> Response {
        if self.state != ConnState::Active {
            // Bytes nobody asked for: the server is confused; drop the connection.
            return Response::Unasked;
        }
        let input = &self.rbuf[self.rstart..self.rend];
        match self.decoder.decode(input, &mut self.body) {
            Ok(n) => {
                self.rstart += n;
                if self.rstart == self.rend {
                    self.rstart = 0;
                    self.rend = 0;
                }
            }
            Err(e) => return Response::Failed(http_failure(&e)),
        }
        if self.decoder.is_done() {
            Response::Complete
        } else {
            Response::Partial
        }
    }

    /// The server closed the connection: whether that ends its response.
    pub(super) fn eof(&mut self) -> Response {
        if self.state != ConnState::Active {
            // The server closed an idle keep-alive connection: normal.
            return Response::Unasked;
        }
        let until_close = !self.decoder.is_done();
        match self.decoder.eof() {
            // A body delimited by the close, over TLS, cut without close_notify: its end is not
            // authenticated, so it may be a prefix chosen by whoever cut the connection (the
            // truncation attack, issue 23). Not taken as complete; retried like a truncation.
            Ok(()) if until_close && self.stream.closed_without_notify() => {
                Response::Failed(ConnFailure::Retryable {
                    class: "truncated",
                    detail: "connection closed without a TLS close_notify before the end of a \
                             response delimited by the close: it may be cut short"
                        .into(),
                })
            }
            Ok(()) => Response::Complete,
            Err(e) => Response::Failed(if !self.decoder.started() && self.reused {
                ConnFailure::Stale
            } else {
                http_failure(&e)
            }),
        }
    }

    /// After a response: ready for the next one; `Idle` when it is to be kept.
    pub(super) fn reset(&mut self, keep: bool) {
        if self.body.capacity() > KEEP_BODY_CAPACITY {
            self.body = Vec::new();
        }
        self.body.clear();
        self.decoder.reset();
        self.reused = true;
        if keep {
            self.state = ConnState::Idle;
        }
    }

    /// Moves the deadlines by `by` (time the loop spent blocked on its output).
    pub(super) fn shift_deadlines(&mut self, by: Duration) {
        self.deadline = after(self.deadline, by);
        self.sent_at = after(self.sent_at, by);
        self.last_byte_at = after(self.last_byte_at, by);
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

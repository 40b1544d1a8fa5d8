//! The connection pool: hosts, their addresses, and keep-alive HTTP/1.1 connections to them.
//!
//! A host is `name:port` over plain TCP or over TLS (two hosts, each with its own connections
//! and limits). It has at most `connections_per_host` connections; one that finished a response
//! it may keep goes on its host's idle list and takes that host's next request. Connections
//! live in a slab whose index is their poll token, so an event finds its connection at once;
//! a closed connection's slot is reused. Names are resolved on the resolver thread
//! ([`Resolver`]), which wakes the loop with the answer.
//!
//! The pool opens, keeps and closes connections ([`Conn`]); what a response or a failure means
//! for its request (deliver, re-send, retry, fail) is decided by the
//! [`Fetcher`](super::event_loop::Fetcher).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};

use super::conn::{Conn, ConnFailure, ConnState};
use super::resolve::{self, Resolver};
use super::schedule::{Request, TokenBucket};
use super::transport::Transport;
use crate::config::FetchConfig;
use crate::time::after;

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
    // The request goes back by value, as it came: boxing it would allocate on a path that
    // does not now.
    #[allow(clippy::result_large_err)]
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
        let mut conn = Conn::new(stream, h, addr, cfg);
        let connect_deadline = conn.deadline;
        let host = &self.hosts[h];
        conn.prepare(req, host, connect_deadline, cfg, &self.extra_headers);
        self.conns[slot] = Some(conn);
        Ok(())
    }

    /// Loads `req` on the idle connection `slot`; the caller then drives it.
    pub(super) fn start(&mut self, slot: usize, req: Request, cfg: &FetchConfig) {
        let deadline = after(Instant::now(), cfg.request_timeout);
        let host = &self.hosts[req.host];
        let conn = self.conns[slot]
            .as_mut()
            .expect("idle list holds live connections");
        conn.prepare(req, host, deadline, cfg, &self.extra_headers);
        conn.state = ConnState::Active;
    }

    /// After a response: readies `slot` for the next one, and puts it on its host's idle list
    /// when it is to be kept (otherwise the caller closes it).
    pub(super) fn reuse(&mut self, slot: usize, keep: bool) {
        let conn = self.conns[slot].as_mut().expect("still there");
        conn.reset(keep);
        if keep {
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
            conn.shift_deadlines(by);
        }
    }
}

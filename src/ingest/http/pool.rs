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
//!
//! Two pool-wide bounds:
//! - **Buffered bytes** (`fetch.max_buffered_bytes`): the response bytes all connections hold
//!   together. Past it, a connection about to be read is paused instead (its socket left
//!   unread, so TCP flow control holds the server back, and its timeouts stopped) until bytes
//!   are released, when every paused connection is read again. One connection, the leader, is
//!   always read, so a body larger than the bound still completes, or fails by
//!   `max_body_bytes`, instead of waiting forever: the pool holds at most about the bound
//!   plus one body.
//! - **Connections** (file descriptors): at most `RLIMIT_NOFILE` less a reserve for the rest
//!   of the run (see [`Config::descriptor_reserve`](crate::Config::descriptor_reserve)). At
//!   the cap, an idle connection of another host is closed to make room. A connect that still
//!   fails with EMFILE or ENFILE (descriptors taken elsewhere) is back-pressure, not a
//!   failure: the request goes back to its queue, and the cap comes down a few below what is
//!   open, for the rest of the run, so that the writer finds a descriptor when it needs one;
//!   the request goes out when a connection closes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};

use super::conn::{Conn, ConnFailure, ConnState};
use super::credentials::Headers;
use super::event_loop::Fetcher;
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
    extra_headers: Headers,
    /// Response bytes held by all connections (the sum of their `counted`).
    pub(super) buffered: usize,
    /// `fetch.max_buffered_bytes`.
    max_buffered: usize,
    /// The connection read past the bound, so that one always proceeds.
    leader: Option<usize>,
    /// Connections not read because of the bound, to read again when bytes are released.
    paused: Vec<usize>,
    /// Open connections, all hosts together.
    open: usize,
    /// Idle connections, all hosts together (on their hosts' idle lists).
    idle: usize,
    /// The cap in force: the most connections the descriptor limit allows, or fewer after a
    /// connect ran out of descriptors.
    conn_limit: usize,
}

/// Why [`Pool::open`] did not open a connection.
pub(super) enum NotOpened {
    /// The request cannot go, for this reason.
    Failed(Request, ConnFailure),
    /// No file descriptor is free (EMFILE, ENFILE): the request waits for one.
    NoDescriptors(Request),
}

/// Descriptors given back (idle connections closed) when a connect finds none free, for the
/// rest of the process.
const FD_MARGIN: usize = 4;

impl Pool {
    pub(super) fn new(
        poll: Poll,
        #[cfg(feature = "tls")] tls: Arc<rustls::ClientConfig>,
        resolver: Resolver,
        extra_headers: String,
        max_buffered: usize,
        max_conns: usize,
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
            extra_headers: Headers::new(extra_headers),
            buffered: 0,
            max_buffered,
            leader: None,
            paused: Vec::new(),
            open: 0,
            idle: 0,
            conn_limit: max_conns.max(1),
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
    ) -> std::result::Result<(), NotOpened> {
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
            Err(e) if out_of_descriptors(&e) => {
                self.free_slots.push(slot);
                self.no_descriptors(&e);
                return Err(NotOpened::NoDescriptors(req));
            }
            Err(e) => {
                self.free_slots.push(slot);
                let failure = connect_failed(format!("connect to {addr}: {e}"));
                return Err(NotOpened::Failed(req, failure));
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut tcp,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free_slots.push(slot);
            let detail = format!("register socket for {addr}: {e}");
            return Err(NotOpened::Failed(req, connect_failed(detail)));
        }
        let stream = if self.hosts[h].tls {
            #[cfg(feature = "tls")]
            match Transport::tls(tcp, &self.tls, &self.hosts[h].name) {
                Ok(t) => t,
                Err(e) => {
                    // Dropping the socket deregisters it.
                    self.free_slots.push(slot);
                    let detail = e.to_string();
                    let failure = ConnFailure::Fatal {
                        class: "tls",
                        detail,
                    };
                    return Err(NotOpened::Failed(req, failure));
                }
            }
            #[cfg(not(feature = "tls"))]
            unreachable!("https:// URLs are rejected when parsed in builds without TLS")
        } else {
            Transport::Plain(tcp)
        };
        self.hosts[h].open += 1;
        self.open += 1;
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
        self.idle -= 1;
    }

    /// After a response: readies `slot` for the next one, and puts it on its host's idle list
    /// when it is to be kept (otherwise the caller closes it).
    pub(super) fn reuse(&mut self, slot: usize, keep: bool) {
        let conn = self.conns[slot].as_mut().expect("still there");
        conn.reset(keep);
        if keep {
            let h = conn.host;
            self.hosts[h].idle.push(slot);
            self.idle += 1;
            // Above a cap lowered by running out of descriptors: give this one back (and the
            // caller, finding it gone, stops reading it).
            self.shed_idle();
        }
        // Its body is in the batch now: the next leader is chosen when one is needed.
        if self.leader == Some(slot) {
            self.leader = None;
        }
        self.recount(slot);
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
        self.buffered -= conn.counted;
        if self.leader == Some(slot) {
            self.leader = None;
        }
        if conn.paused_at.is_some() {
            self.paused.retain(|&s| s != slot);
        }
        self.open -= 1;
        let host = &mut self.hosts[conn.host];
        host.open -= 1;
        if conn.state == ConnState::Idle {
            host.idle.retain(|&s| s != slot);
            self.idle -= 1;
        }
        conn.req.take()
    }

    /// Open connections.
    pub(super) fn open_count(&self) -> usize {
        self.open
    }

    /// Whether one more connection may be opened now: below the cap, or at it with an idle
    /// connection to close for room ([`Pool::make_room`]).
    pub(super) fn has_room(&self) -> bool {
        self.open < self.conn_limit || self.idle > 0
    }

    /// Before opening a connection that [`Pool::has_room`] allowed: at the cap, closes an
    /// idle connection (of another host: the caller's host has none) to give its descriptor.
    pub(super) fn make_room(&mut self) {
        if self.open < self.conn_limit {
            return;
        }
        if let Some(slot) = self.hosts.iter_mut().find_map(|h| h.idle.pop()) {
            // An idle connection carries no request: nothing comes back.
            self.close(slot, true);
        }
    }

    /// A connect found no free descriptor: the cap comes down a little below what is open
    /// now, for the rest of the run, and idle connections above it are closed (busy ones as
    /// their responses end), so that the writer, which may need a descriptor next (a
    /// dead-letter file, the next output file), finds one free.
    fn no_descriptors(&mut self, e: &std::io::Error) {
        let limit = self.open.saturating_sub(FD_MARGIN).max(1);
        if self.conn_limit > limit {
            tracing::warn!(
                open = self.open,
                cap = limit,
                error = %e,
                "out of file descriptors: fewer connections until one is free; requests wait"
            );
        }
        self.conn_limit = self.conn_limit.min(limit);
        self.shed_idle();
    }

    /// Closes idle connections while more are open than the cap allows.
    fn shed_idle(&mut self) {
        while self.open > self.conn_limit {
            let Some(slot) = self.hosts.iter_mut().find_map(|h| h.idle.pop()) else {
                break;
            };
            self.close(slot, true);
        }
    }

    /// Brings the pool's count of buffered bytes up to date with connection `slot`'s.
    pub(super) fn recount(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].as_mut() {
            let held = conn.held();
            self.buffered = self.buffered - conn.counted + held;
            conn.counted = held;
        }
    }

    /// Whether connection `slot` may be read now: yes below `max_buffered_bytes`, and for the
    /// leader; past the bound the first connection to ask becomes the leader when there is
    /// none, and any other is paused (see the [module docs](self)).
    pub(super) fn may_read(&mut self, slot: usize) -> bool {
        let leads = self.leader == Some(slot);
        if !leads && self.buffered >= self.max_buffered && self.leader.is_some() {
            let conn = self.conns[slot].as_mut().expect("caller checked");
            if conn.paused_at.is_none() {
                conn.paused_at = Some(Instant::now());
                self.paused.push(slot);
            }
            return false;
        }
        if self.buffered >= self.max_buffered {
            self.leader = Some(slot);
        }
        if self.conns[slot]
            .as_ref()
            .is_some_and(|c| c.paused_at.is_some())
        {
            // Read again before `resume_paused` came to it (new bytes woke it): its clocks run.
            self.unpause(slot, Instant::now());
            self.paused.retain(|&s| s != slot);
        }
        true
    }

    /// Takes connection `slot` off the paused list's terms: its timeouts run again, shifted
    /// by the pause. The caller reads it (and removes it from the list).
    fn unpause(&mut self, slot: usize, now: Instant) {
        if let Some(conn) = self.conns[slot].as_mut() {
            if let Some(since) = conn.paused_at.take() {
                conn.shift_deadlines(now.saturating_duration_since(since));
            }
        }
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
        // A paused connection's clocks are stopped already: `unpause` moves them.
        for conn in self
            .conns
            .iter_mut()
            .flatten()
            .filter(|c| c.paused_at.is_none())
        {
            conn.shift_deadlines(by);
        }
    }
}

/// Whether a connect error means no file descriptor was free (EMFILE: this process's limit;
/// ENFILE: the system's).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    // The values of Linux and the BSDs alike (errno.h): EMFILE 24, ENFILE 23.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// The most connections the process's descriptor limit (`RLIMIT_NOFILE`, soft) leaves room
/// for once `reserve` descriptors are kept for the rest of the run; no limit when it cannot be
/// read. At least one: running out is then back-pressure, not a failure.
pub(super) fn connection_cap(reserve: usize) -> usize {
    match open_files_limit() {
        Some(limit) => limit.saturating_sub(reserve).max(1),
        None => usize::MAX,
    }
}

#[cfg(unix)]
fn open_files_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    usize::try_from(lim.rlim_cur).ok()
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<usize> {
    None
}

impl Fetcher {
    /// Reads paused connections again: all of them once the bytes buffered are below the
    /// bound (each pauses again if it fills it), or else the one holding the most, as the new
    /// leader, when the last leader is done. Called every loop turn, so a pause always ends.
    pub(super) fn resume_paused(&mut self) {
        let pool = &mut self.pool;
        if pool.paused.is_empty() || (pool.buffered >= pool.max_buffered && pool.leader.is_some()) {
            return;
        }
        let now = Instant::now();
        if pool.buffered < pool.max_buffered {
            for slot in std::mem::take(&mut pool.paused) {
                self.pool.unpause(slot, now);
                self.drive(slot, true, false);
            }
            return;
        }
        let conns = &pool.conns;
        let Some(at) = (0..pool.paused.len())
            .max_by_key(|&i| conns[pool.paused[i]].as_ref().map_or(0, |c| c.counted))
        else {
            return;
        };
        let slot = pool.paused.swap_remove(at);
        pool.unpause(slot, now);
        pool.leader = Some(slot);
        self.drive(slot, true, false);
    }
}

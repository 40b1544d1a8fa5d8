//! The mio event loop: see the [module docs](super).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, TrySendError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::protocol::{self as http, HttpError, ResponseDecoder};
use super::resolve::{self, Resolver};
use super::transport::{self, Transport};
use crate::batch::BodyBatch;
use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::{downstream_gone, IngestChannels};
use crate::ingest::source::{Feed, HttpUrl, Next, Source, UrlParts};
use crate::ingest::IngestReport;
use crate::metrics::live::{QueueId, Stage, ThreadState};

const WAKER: Token = Token(usize::MAX);
/// Initial read buffer per connection; grows only for unusually large response heads.
const READ_BUF: usize = 64 * 1024;
/// How often the fetch thread copies its counters to the live metrics.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);
/// How often request deadlines are checked while requests are active.
const TIMEOUT_SCAN: Duration = Duration::from_millis(50);
/// Re-sends allowed when a kept-alive connection turns out to be closed by the server.
const MAX_STALE_RESENDS: u32 = 3;
/// How often cursor replies are looked for while pages await theirs.
const CURSOR_POLL: Duration = Duration::from_millis(1);
/// First retry delay; doubles with each attempt, with full jitter.
const RETRY_BASE: Duration = Duration::from_millis(50);

/// Checks what a run of `cfg` reads before its first request (header secrets, TLS certificate
/// and key files), so that a missing file fails the run before any output file is created.
pub fn preflight(cfg: &FetchConfig) -> Result<()> {
    crate::config::resolve_headers(&cfg.headers, |k| std::env::var(k).ok())?;
    #[cfg(feature = "tls")]
    transport::client_config(cfg)?;
    Ok(())
}

/// Runs the fetch loop on the calling thread until the source is drained and every admitted
/// request has ended, or until `stop` is set (then admitted requests still finish).
///
/// With `every` set (continuous mode), a drained source is taken again from the start, one pass
/// beginning `every` after the previous one began, until `stop` is set.
pub fn run(
    cfg: &FetchConfig,
    source: Source,
    every: Option<Duration>,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    // Secrets are read once, here: a missing variable or file fails the run before any request.
    let extra_headers = crate::config::resolve_headers(&cfg.headers, |k| std::env::var(k).ok())?;
    let poll = Poll::new().map_err(|e| Error::Fetch {
        op: "create poll",
        source: e,
    })?;
    let waker = Arc::new(
        Waker::new(poll.registry(), WAKER).map_err(|e| Error::Fetch {
            op: "create waker",
            source: e,
        })?,
    );
    let resolver = Resolver::spawn(Arc::clone(&waker)).map_err(|e| Error::Thread {
        thread: "pinflow-resolve".into(),
        why: e.to_string(),
    })?;
    let wake_source = Arc::clone(&waker);
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = wake_source.wake();
    });
    let wake_on_idle = Arc::clone(&wake);
    chans.parse_idle.set_wake(Box::new(move || wake_on_idle()));
    // Continuous mode keeps a copy to start each later pass from.
    let again = match every {
        Some(_) => Some(source.try_clone()?),
        None => None,
    };
    // Certificates are read once, here: a bad CA or key file fails the run before any request.
    #[cfg(feature = "tls")]
    let tls = transport::client_config(cfg)?;
    let feed = source.into_feed(Arc::clone(&wake))?;
    let mut fetcher = Fetcher {
        #[cfg(feature = "tls")]
        tls,
        poll,
        cfg: cfg.clone(),
        feed,
        feed_done: false,
        hosts: Vec::new(),
        host_index: HashMap::new(),
        conns: Vec::new(),
        free_slots: Vec::new(),
        retries: BinaryHeap::new(),
        retry_store: HashMap::new(),
        next_retry_id: 0,
        in_flight: 0,
        batch: BodyBatch::default(),
        batch_started: None,
        chans,
        resolver,
        stop,
        report: IngestReport::default(),
        rng: 0x2545_F491_4F6C_DD1D,
        last_scan: Instant::now(),
        last_publish: Instant::now(),
        every,
        again,
        wake,
        cycle_started: Instant::now(),
        resume_at: None,
        rate_wake_at: None,
        extra_headers,
        last_host: 0,
        awaiting_cursors: 0,
        spare_urls: Vec::new(),
        parse_threads: Vec::new(),
    };
    fetcher.parse_threads = (0..fetcher.chans.registry.threads().len())
        .filter(|&i| {
            fetcher.chans.registry.threads()[i]
                .name
                .starts_with("parse")
        })
        .collect();
    fetcher
        .chans
        .registry
        .set_state(fetcher.chans.thread, ThreadState::Working);
    let result = fetcher.event_loop();
    fetcher.publish();
    result?;
    fetcher.report.source_error = fetcher.feed.take_error();
    Ok(fetcher.report)
}

struct Request {
    url: String,
    /// The work item's position in the source (its next pages carry the same one).
    seq: u64,
    /// What the request line asks for: see [`Request::path`].
    path: RequestPath,
    host: usize,
    /// Tries that have ended in a retryable failure.
    failures: u32,
    stale_resends: u32,
    /// When the request was admitted: `total_timeout` counts from here.
    admitted_at: Instant,
    /// Redirects followed so far.
    redirects: u32,
    /// Pages followed through `Link: rel="next"` before this one (0 for a source URL).
    page: u32,
}

/// A request's path and query: usually the part of its URL after the authority, kept as that
/// range so that admitting a request does not copy it; a redirect's target or a path the URL
/// lacks (`http://h`, `http://h?q`) is its own string.
enum RequestPath {
    InUrl(std::ops::Range<usize>),
    Own(String),
}

impl RequestPath {
    /// `path` as split from `url` ([`UrlParts::split`]): a range when it is a slice of it.
    fn of(url: &str, path: std::borrow::Cow<'_, str>) -> RequestPath {
        match path {
            std::borrow::Cow::Borrowed(p) => {
                // Where `p` starts, counted from `url`'s first byte. Distinct objects do not
                // overlap, so it lies within `url` only when it is a slice of it (the static
                // "/" given to a URL without a path is not).
                let start = (p.as_ptr() as usize).wrapping_sub(url.as_ptr() as usize);
                match start.checked_add(p.len()) {
                    Some(end) if end <= url.len() => RequestPath::InUrl(start..end),
                    _ => RequestPath::Own(p.to_string()),
                }
            }
            std::borrow::Cow::Owned(p) => RequestPath::Own(p),
        }
    }
}

impl Request {
    /// The path and query the request line asks for, starting with `/`.
    fn path(&self) -> &str {
        match &self.path {
            RequestPath::InUrl(r) => &self.url[r.clone()],
            RequestPath::Own(p) => p,
        }
    }
}

enum Addrs {
    Unresolved,
    Resolving,
    Ready(Vec<SocketAddr>),
    Failed(String),
}

struct Host {
    name: String,
    port: u16,
    /// `https://`.
    tls: bool,
    addrs: Addrs,
    next_addr: usize,
    queue: VecDeque<Request>,
    open: usize,
    idle: Vec<usize>,
    /// Requests-per-second limit, when configured.
    bucket: Option<TokenBucket>,
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> std::result::Result<(), Duration> {
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Connecting,
    Idle,
    Active,
}

struct Conn {
    stream: Transport,
    host: usize,
    addr: SocketAddr,
    state: ConnState,
    req: Option<Request>,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    body: Vec<u8>,
    decoder: ResponseDecoder,
    /// Has completed at least one response: a close before the next one is a stale keep-alive.
    reused: bool,
    deadline: Instant,
    sent_at: Instant,
    /// The last time bytes arrived (idle timeout).
    last_byte_at: Instant,
}

/// What went wrong on a connection, and whether the request may be tried again.
enum ConnFailure {
    /// Nothing of a response arrived on a reused connection: re-send without counting a try.
    Stale,
    /// A try failed in a way that delivered nothing: retry with backoff up to the limit.
    Retryable { class: &'static str, detail: String },
    /// The response itself is unacceptable: fail the request now.
    Fatal { class: &'static str, detail: String },
}

struct Fetcher {
    poll: Poll,
    /// The client configuration of every `https://` connection.
    #[cfg(feature = "tls")]
    tls: Arc<rustls::ClientConfig>,
    cfg: FetchConfig,
    feed: Feed,
    feed_done: bool,
    hosts: Vec<Host>,
    host_index: HashMap<(String, u16, bool), usize>,
    conns: Vec<Option<Conn>>,
    free_slots: Vec<usize>,
    retries: BinaryHeap<Reverse<(Instant, u64)>>,
    retry_store: HashMap<u64, Request>,
    next_retry_id: u64,
    in_flight: usize,
    batch: BodyBatch,
    batch_started: Option<Instant>,
    chans: IngestChannels,
    resolver: Resolver,
    stop: Arc<AtomicBool>,
    report: IngestReport,
    rng: u64,
    last_scan: Instant,
    last_publish: Instant,
    /// Continuous mode: the pass interval and the source to take again.
    every: Option<Duration>,
    again: Option<Source>,
    wake: Arc<dyn Fn() + Send + Sync>,
    cycle_started: Instant,
    /// Set when a pass has ended: when the next one starts.
    resume_at: Option<Instant>,
    /// When a rate-limited host earns its next token.
    rate_wake_at: Option<Instant>,
    /// Configured request headers, resolved, as CRLF-terminated lines.
    extra_headers: String,
    /// The host `host_for` found last.
    last_host: usize,
    /// Page bodies delivered with cursor pagination on whose [`CursorReply`](crate::batch::CursorReply) has not come back:
    /// while any is out, a next page may still appear, so the pass is not over.
    awaiting_cursors: usize,
    /// The parse threads' indices in the registry: when one waits for input, a batch ships.
    parse_threads: Vec<usize>,
    /// URL strings of delivered requests, for the next template URLs (at most [`SPARE_URLS`]).
    spare_urls: Vec<String>,
}

/// How many URL strings the fetcher keeps for reuse: enough for one poll's completions.
const SPARE_URLS: usize = 256;

impl Fetcher {
    fn event_loop(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.admit();
            self.take_cursors();
            self.dispatch();
            if self.feed_done
                && self.in_flight == 0
                && self.awaiting_cursors == 0
                && self.pass_ended()?
            {
                break;
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(Error::Fetch {
                        op: "poll",
                        source: e,
                    });
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.take_resolved();
                } else {
                    self.on_socket_event(ev.token().0);
                    // Ship a full batch before handling the next event: one poll can complete
                    // dozens of large bodies, and the batch must stay near its byte bound.
                    // (Shipping any batch here as soon as a parse thread waited, or the writer
                    // for the short path, was tried: more, smaller batches and a higher p99
                    // handoff; README, Performance, latency steps 4 and 5.)
                    if self.batch_full() {
                        self.ship()?;
                    }
                }
            }
            let now = Instant::now();
            if now.duration_since(self.last_publish) >= PUBLISH_EVERY {
                self.last_publish = now;
                self.publish();
            }
            self.due_retries(now);
            if now.duration_since(self.last_scan) >= TIMEOUT_SCAN {
                self.last_scan = now;
                self.expire(now);
            }
            // A batch waits to fill only while the parse threads are busy: when one of them is
            // waiting for input it goes now, so an idle pipeline adds no batching delay, and a
            // busy one still gets full batches (fewer, cheaper hand-offs).
            let idle = events.is_empty() || self.parse_thread_free();
            if self.batch_due(now) || (idle && !self.batch.is_empty()) {
                self.ship()?;
            } else if !self.batch.is_empty() {
                // Held back while the parse threads are busy: have the first to go idle wake
                // this loop, so the batch leaves then, not at the next event or timer.
                self.chans.parse_idle.want();
                if self.parse_thread_free() {
                    self.ship()?;
                }
            }
        }
        self.ship()?;
        Ok(())
    }

    /// Called while the source is drained and nothing is in flight. Returns true when the run
    /// is over; in continuous mode, starts the next pass when its time has come.
    fn pass_ended(&mut self) -> Result<bool> {
        let stopping = self.stop.load(Ordering::Relaxed);
        let Some(resume_at) = self.resume_at else {
            // The pass just ended: everything fetched goes downstream now, not in 2 ms.
            self.ship()?;
            self.chans.registry.cycles.fetch_add(1, Ordering::Relaxed);
            let Some(every) = self.every.filter(|_| !stopping) else {
                return Ok(true);
            };
            self.resume_at = Some(self.cycle_started + every);
            self.publish();
            tracing::info!(
                requests = self.report.stats.requests,
                failed = self.report.stats.failed,
                next_in_ms = (self.cycle_started + every)
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64,
                "pass over the sources done"
            );
            return Ok(false);
        };
        if stopping {
            self.report.interrupted = true;
            return Ok(true);
        }
        let now = Instant::now();
        if now < resume_at {
            return Ok(false);
        }
        self.resume_at = None;
        self.cycle_started = now;
        let every = self.every.unwrap_or_default();
        let next = self
            .again
            .as_ref()
            .expect("continuous mode keeps its source")
            .try_clone()
            .and_then(|s| s.into_feed(Arc::clone(&self.wake)));
        match next {
            Ok(feed) => {
                self.feed = feed;
                self.feed_done = false;
            }
            Err(e) => {
                // A URL file being replaced, say: skip this pass, try again at the next.
                tracing::warn!(error = %e, "cannot start a pass over the sources; trying again at the next");
                self.resume_at = Some(now + every);
            }
        }
        Ok(false)
    }

    /// Copies the counters to the live metrics (the fetch thread is their only writer).
    fn publish(&self) {
        let open = self.conns.iter().flatten().count();
        let r = &self.chans.registry;
        r.publish_fetch(&self.report.stats, self.in_flight, open);
        r.heartbeat(self.chans.thread);
        if self.feed_done && (self.every.is_none() || self.stop.load(Ordering::Relaxed)) {
            r.set_draining(true);
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut t = Duration::from_millis(500);
        if let Some(Reverse((due, _))) = self.retries.peek() {
            t = t.min(due.saturating_duration_since(now));
        }
        if let Some(at) = self.resume_at {
            t = t.min(at.saturating_duration_since(now));
        }
        if let Some(at) = self.rate_wake_at {
            t = t.min(at.saturating_duration_since(now));
        }
        if let Some(started) = self.batch_started {
            t = t.min((started + self.cfg.batch_max_delay).saturating_duration_since(now));
        }
        if self.awaiting_cursors > 0 {
            // Replies come from the parse threads without a wake-up; a page's round trip to a
            // real API takes far longer than this.
            t = t.min(CURSOR_POLL);
        }
        if self
            .conns
            .iter()
            .flatten()
            .any(|c| c.state != ConnState::Idle)
        {
            t = t.min(TIMEOUT_SCAN);
        }
        Some(t)
    }

    /// Takes work items from the source while the in-flight bound allows.
    fn admit(&mut self) {
        if self.stop.load(Ordering::Relaxed) && !self.feed_done {
            self.feed_done = true;
            self.report.interrupted = true;
        }
        while !self.feed_done && self.in_flight < self.cfg.max_in_flight {
            let item = match self.feed.next_reusing(&mut self.spare_urls) {
                Next::Item(item) => item,
                Next::Pending => return,
                Next::Done => {
                    self.feed_done = true;
                    return;
                }
            };
            if self.cfg.shard.is_some_and(|sh| !sh.keeps(&item.url)) {
                // Another instance's work: not a request of this one.
                self.spare_url(item.url);
                continue;
            }
            if self.chans.skip.contains(item.seq) {
                // Done by an earlier run (resume journal).
                self.report.stats.skipped += 1;
                self.spare_url(item.url);
                continue;
            }
            self.in_flight += 1;
            self.report.stats.requests += 1;
            match UrlParts::split(&item.url) {
                Ok(u) => {
                    let host = self.host_for(u.host, u.port, u.tls);
                    let path = RequestPath::of(&item.url, u.path);
                    self.hosts[host].queue.push_back(Request {
                        url: item.url,
                        seq: item.seq,
                        path,
                        host,
                        failures: 0,
                        stale_resends: 0,
                        admitted_at: Instant::now(),
                        redirects: 0,
                        page: 0,
                    });
                }
                Err(why) => {
                    let url = item.url;
                    self.finish_failed(
                        &url,
                        "invalid url",
                        &format!("invalid URL `{url}`: {why}"),
                        0,
                    );
                }
            }
        }
    }

    /// The host entry of `name:port` over plain TCP or TLS (two different hosts, with their own
    /// connections and limits).
    fn host_for(&mut self, name: &str, port: u16, tls: bool) -> usize {
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
            bucket: self
                .cfg
                .rate_limit
                .map(|r| TokenBucket::new(r, self.cfg.rate_burst.unwrap_or(r))),
        });
        self.host_index.insert((name.to_string(), port, tls), i);
        self.last_host = i;
        i
    }

    /// Gives queued requests to connections.
    fn dispatch(&mut self) {
        self.rate_wake_at = None;
        let now = Instant::now();
        for h in 0..self.hosts.len() {
            if self.hosts[h].queue.is_empty() {
                continue;
            }
            match &self.hosts[h].addrs {
                Addrs::Unresolved => {
                    self.resolver
                        .resolve(h, &self.hosts[h].name, self.hosts[h].port);
                    self.hosts[h].addrs = Addrs::Resolving;
                    continue;
                }
                Addrs::Resolving => continue,
                Addrs::Failed(why) => {
                    let why = why.clone();
                    while let Some(req) = self.hosts[h].queue.pop_front() {
                        self.finish_failed(&req.url, "resolve", &why, req.failures + 1);
                    }
                    continue;
                }
                Addrs::Ready(_) => {}
            }
            while let Some(req) = self.hosts[h].queue.pop_front() {
                let can_send = self.hosts[h].idle.last().is_some()
                    || self.hosts[h].open < self.cfg.connections_per_host;
                if can_send {
                    if let Some(b) = self.hosts[h].bucket.as_mut() {
                        if let Err(wait) = b.take(now) {
                            self.hosts[h].queue.push_front(req);
                            let at = now + wait;
                            self.rate_wake_at = Some(self.rate_wake_at.map_or(at, |t| t.min(at)));
                            break;
                        }
                    }
                }
                if let Some(slot) = self.hosts[h].idle.pop() {
                    self.start_request(slot, req);
                } else if self.hosts[h].open < self.cfg.connections_per_host {
                    self.open_connection(h, req);
                } else {
                    self.hosts[h].queue.push_front(req);
                    break;
                }
            }
        }
    }

    fn open_connection(&mut self, h: usize, req: Request) {
        let addr = match &self.hosts[h].addrs {
            Addrs::Ready(a) => a[self.hosts[h].next_addr % a.len()],
            _ => unreachable!("dispatch opens connections only for resolved hosts"),
        };
        self.hosts[h].next_addr = self.hosts[h].next_addr.wrapping_add(1);
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut tcp = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                self.free_slots.push(slot);
                self.retry_or_fail(req, "connect", format!("connect to {addr}: {e}"), None);
                return;
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut tcp,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free_slots.push(slot);
            self.retry_or_fail(
                req,
                "connect",
                format!("register socket for {addr}: {e}"),
                None,
            );
            return;
        }
        let stream = if self.hosts[h].tls {
            #[cfg(feature = "tls")]
            match Transport::tls(tcp, &self.tls, &self.hosts[h].name) {
                Ok(t) => t,
                Err(e) => {
                    // Dropping the socket deregisters it.
                    self.free_slots.push(slot);
                    let attempts = req.failures + 1;
                    self.finish_failed(&req.url, "tls", &e.to_string(), attempts);
                    return;
                }
            }
            #[cfg(not(feature = "tls"))]
            unreachable!("https:// URLs are rejected when parsed in builds without TLS")
        } else {
            Transport::Plain(tcp)
        };
        self.report.stats.connections += 1;
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
            decoder: ResponseDecoder::new(self.cfg.max_body_bytes),
            reused: false,
            deadline: now + self.cfg.connect_timeout,
            sent_at: now,
            last_byte_at: now,
        };
        let host = &self.hosts[h];
        conn.prepare(
            req,
            host,
            now + self.cfg.connect_timeout,
            &self.cfg,
            &self.extra_headers,
        );
        self.conns[slot] = Some(conn);
    }

    fn start_request(&mut self, slot: usize, req: Request) {
        let deadline = Instant::now() + self.cfg.request_timeout;
        let host = &self.hosts[req.host];
        let conn = self.conns[slot]
            .as_mut()
            .expect("idle list holds live connections");
        conn.prepare(req, host, deadline, &self.cfg, &self.extra_headers);
        conn.state = ConnState::Active;
        self.drive(slot, false, true);
    }

    fn on_socket_event(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if conn.state == ConnState::Connecting {
            match conn.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let detail = format!("connect to {}: {e}", conn.addr);
                    self.close(
                        slot,
                        Some(ConnFailure::Retryable {
                            class: "connect",
                            detail,
                        }),
                    );
                    return;
                }
            }
            match conn.stream.peer_addr() {
                Ok(_) => {
                    conn.state = ConnState::Active;
                    conn.deadline = Instant::now() + self.cfg.request_timeout;
                }
                // Not connected yet: a spurious wake-up; the next event will tell.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let detail = format!("connect to {}: {e}", conn.addr);
                    self.close(
                        slot,
                        Some(ConnFailure::Retryable {
                            class: "connect",
                            detail,
                        }),
                    );
                    return;
                }
            }
        }
        self.drive(slot, true, true);
    }

    /// Writes what is pending and reads what has arrived, until the socket would block.
    fn drive(&mut self, slot: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if writable {
            // TLS records left over when the socket last filled up.
            match conn.stream.flush_pending() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let failure = conn.failure_on_error("send", e);
                    self.close(slot, Some(failure));
                    return;
                }
            }
        }
        if conn.state == ConnState::Active && writable && conn.wpos < conn.wbuf.len() {
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
                    Err(e) => {
                        let failure = conn.failure_on_error("send", e);
                        self.close(slot, Some(failure));
                        return;
                    }
                }
            }
        }
        if !readable {
            return;
        }
        loop {
            let Some(conn) = self.conns[slot].as_mut() else {
                return;
            };
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
            match conn.stream.read(&mut conn.rbuf[rend..]) {
                Ok(0) => {
                    self.on_eof(slot);
                    return;
                }
                Ok(n) => {
                    conn.rend += n;
                    conn.last_byte_at = Instant::now();
                    if !self.on_bytes(slot) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let failure = conn.failure_on_error("receive", e);
                    self.close(slot, Some(failure));
                    return;
                }
            }
        }
    }

    /// Decodes buffered bytes. Returns false when the connection was closed.
    fn on_bytes(&mut self, slot: usize) -> bool {
        let conn = self.conns[slot].as_mut().expect("caller checked");
        if conn.state != ConnState::Active {
            // Bytes nobody asked for: the server is confused; drop the connection.
            self.close(slot, None);
            return false;
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
            Err(e) => {
                let failure = http_failure(&e);
                self.close(slot, Some(failure));
                return false;
            }
        }
        if conn.decoder.is_done() {
            return self.complete(slot);
        }
        true
    }

    fn on_eof(&mut self, slot: usize) {
        let conn = self.conns[slot].as_mut().expect("caller checked");
        if conn.state != ConnState::Active {
            // The server closed an idle keep-alive connection: normal.
            self.close(slot, None);
            return;
        }
        match conn.decoder.eof() {
            Ok(()) => {
                self.complete(slot);
            }
            Err(e) => {
                let failure = if !conn.decoder.started() && conn.reused {
                    ConnFailure::Stale
                } else {
                    http_failure(&e)
                };
                self.close(slot, Some(failure));
            }
        }
    }

    /// A response is complete: deliver or fail it, then reuse or close the connection.
    /// Returns false when the connection was closed.
    fn complete(&mut self, slot: usize) -> bool {
        let now = Instant::now();
        let conn = self.conns[slot].as_mut().expect("caller checked");
        let req = conn
            .req
            .take()
            .expect("an active connection carries a request");
        let status = conn.decoder.status();
        let keep = conn.decoder.keep_alive() && conn.rstart == conn.rend;
        self.chans
            .registry
            .latency(Stage::Fetch)
            .record(now.duration_since(conn.sent_at));
        let attempts = req.failures + 1;
        let encoding = conn.decoder.content_encoding();
        if let ((200..300), Err(unknown)) = (status, &encoding) {
            // Not retried: the server would answer the same way again.
            let detail = format!("unsupported Content-Encoding `{unknown}`");
            self.finish_failed(&req.url, "content encoding", &detail, attempts);
        } else if (200..300).contains(&status) {
            if self.batch.is_empty() {
                self.batch_started = Some(now);
                if self.batch.ticket.is_none() {
                    self.batch.ticket = Some(self.chans.live.ticket());
                }
            }
            let encoding = encoding.unwrap_or_default();
            self.batch
                .push_encoded_body(&req.url, &conn.body, encoding, attempts, now);
            self.batch.set_seq(req.seq);
            if self.chans.cursors.is_some() {
                self.batch.expect_cursor(req.page);
                self.awaiting_cursors += 1;
            }
            self.report.stats.delivered += 1;
            self.report.stats.body_bytes += conn.body.len() as u64;
            self.in_flight -= 1;
            if self.cfg.follow_link_next {
                if let Some(next) = conn.decoder.link_next().map(str::to_string) {
                    self.follow_next(&req, &next);
                }
            }
            // Its text is in the batch now: the string can carry the next template URL.
            self.spare_url(req.url);
        } else {
            *self.report.stats.statuses.entry(status).or_default() += 1;
            let class = format!("http {status}");
            let detail = format!("HTTP status {status}");
            if status == 429 || (500..600).contains(&status) {
                // Overload and server errors are transient: try again, no sooner than asked.
                let after = conn.decoder.retry_after();
                self.retry_or_fail(req, &class, detail, after);
            } else if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let location = conn.decoder.location().map(str::to_string);
                self.redirect(req, status, location, attempts);
            } else {
                self.finish_failed(&req.url, &class, &detail, attempts);
            }
        }
        let conn = self.conns[slot].as_mut().expect("still there");
        conn.body.clear();
        conn.decoder.reset();
        conn.reused = true;
        if keep {
            conn.state = ConnState::Idle;
            let h = conn.host;
            self.hosts[h].idle.push(slot);
        } else {
            self.close(slot, None);
        }
        keep
    }

    /// Closes a connection; a request it carried is re-sent, retried or failed.
    fn close(&mut self, slot: usize, failure: Option<ConnFailure>) {
        let Some(mut conn) = self.conns[slot].take() else {
            return;
        };
        if failure.is_none() && conn.state == ConnState::Idle {
            conn.stream.shutdown();
        }
        let _ = self.poll.registry().deregister(conn.stream.tcp_mut());
        self.free_slots.push(slot);
        let host = &mut self.hosts[conn.host];
        host.open -= 1;
        if conn.state == ConnState::Idle {
            host.idle.retain(|&s| s != slot);
        }
        let Some(mut req) = conn.req.take() else {
            return;
        };
        match failure {
            Some(ConnFailure::Stale) if req.stale_resends < MAX_STALE_RESENDS => {
                req.stale_resends += 1;
                self.report.stats.stale_reconnects += 1;
                self.hosts[req.host].queue.push_front(req);
            }
            Some(ConnFailure::Stale) => {
                self.retry_or_fail(
                    req,
                    "closed",
                    "server closed the connection before answering".into(),
                    None,
                );
            }
            Some(ConnFailure::Retryable { class, detail }) => {
                self.retry_or_fail(req, class, detail, None)
            }
            Some(ConnFailure::Fatal { class, detail }) => {
                let attempts = req.failures + 1;
                self.finish_failed(&req.url, class, &detail, attempts);
            }
            None => {
                self.retry_or_fail(req, "closed", "connection closed".into(), None);
            }
        }
    }

    /// Follows a redirect: the same work item (reported under its original URL) is sent to
    /// the new location, on the same host unless `fetch.redirect_other_hosts`, at most
    /// `fetch.max_redirects` times.
    fn redirect(&mut self, mut req: Request, status: u16, location: Option<String>, attempts: u32) {
        let class = "redirect";
        let Some(location) = location else {
            let detail = format!("HTTP status {status} without a Location header");
            return self.finish_failed(&req.url, class, &detail, attempts);
        };
        if req.redirects >= self.cfg.max_redirects {
            let detail = format!(
                "more than {} redirects (last to {location})",
                self.cfg.max_redirects
            );
            return self.finish_failed(&req.url, class, &detail, attempts);
        }
        let here = &self.hosts[req.host];
        let (host_name, port, tls) = (here.name.clone(), here.port, here.tls);
        let target = match self.resolve_reference(&req, &location) {
            Ok(t) => t,
            Err(why) => {
                let detail = format!("redirect to `{location}` cannot be followed: {why}");
                return self.finish_failed(&req.url, class, &detail, attempts);
            }
        };
        if (target.host != host_name || target.port != port || target.tls != tls)
            && !self.cfg.redirect_other_hosts
        {
            let detail = format!(
                "redirect to another host refused ({location}); set fetch.redirect_other_hosts"
            );
            return self.finish_failed(&req.url, class, &detail, attempts);
        }
        req.redirects += 1;
        req.path = RequestPath::Own(target.path);
        req.host = self.host_for(&target.host, target.port, target.tls);
        let h = req.host;
        self.hosts[h].queue.push_back(req);
    }

    /// Resolves a `Location` or `Link` target against the request's URL: absolute, root-relative
    /// or relative to the path's directory.
    fn resolve_reference(
        &self,
        req: &Request,
        target: &str,
    ) -> std::result::Result<HttpUrl, String> {
        let here = &self.hosts[req.host];
        let (host, port, tls) = (here.name.clone(), here.port, here.tls);
        if target.starts_with('/') {
            Ok(HttpUrl {
                host,
                port,
                tls,
                path: target.to_string(),
            })
        } else if target.contains("://") {
            HttpUrl::parse(target)
        } else {
            let dir = req.path().rsplit_once('/').map_or("", |(d, _)| d);
            Ok(HttpUrl {
                host,
                port,
                tls,
                path: format!("{dir}/{target}"),
            })
        }
    }

    /// Pagination: a delivered page whose `Link` header has `rel="next"` adds the next page as
    /// a new work item (same host unless `redirect_other_hosts`; at most `max_link_pages` pages
    /// from one source URL). A next link that cannot be followed is logged, and the pages so
    /// far stand.
    fn follow_next(&mut self, req: &Request, next: &str) {
        if req.page + 1 >= self.cfg.max_link_pages {
            tracing::warn!(url = %req.url, pages = req.page + 1, "pagination stopped at fetch.max_link_pages");
            return;
        }
        let target = match self.resolve_reference(req, next) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(url = %req.url, next, %why, "next-page link cannot be followed");
                return;
            }
        };
        let h = &self.hosts[req.host];
        if (&target.host, target.port, target.tls) != (&h.name, h.port, h.tls)
            && !self.cfg.redirect_other_hosts
        {
            tracing::warn!(url = %req.url, next, "next-page link to another host not followed");
            return;
        }
        self.enqueue_page(target.to_string(), target, req.page + 1);
    }

    /// Adds a next page (found by `Link` or by cursor) as a new work item. Pages are not
    /// tracked by the resume journal (a journal cannot be combined with pagination).
    fn enqueue_page(&mut self, url: String, target: HttpUrl, page: u32) {
        let host = self.host_for(&target.host, target.port, target.tls);
        self.in_flight += 1;
        self.report.stats.requests += 1;
        self.hosts[host].queue.push_back(Request {
            url,
            seq: crate::batch::NO_SEQ,
            path: RequestPath::Own(target.path),
            host,
            failures: 0,
            stale_resends: 0,
            admitted_at: Instant::now(),
            redirects: 0,
            page,
        });
    }

    /// Cursor pagination: takes the parse threads' replies; each cursor makes the next page of
    /// its chain a work item (the page's URL with `cursor_param` set to it), within
    /// `max_link_pages` and unless the run is stopping.
    fn take_cursors(&mut self) {
        let Some(rx) = &self.chans.cursors else {
            return;
        };
        let mut next = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(reply) => {
                    self.awaiting_cursors = self.awaiting_cursors.saturating_sub(1);
                    next.push(reply);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    // The parse threads are gone: no reply will come (the run is failing).
                    self.awaiting_cursors = 0;
                    break;
                }
            }
        }
        for reply in next {
            let Some(cursor) = reply.cursor else { continue };
            if self.stop.load(Ordering::Relaxed) {
                continue;
            }
            if reply.page + 1 >= self.cfg.max_link_pages {
                tracing::warn!(url = %reply.url, pages = reply.page + 1, "pagination stopped at fetch.max_link_pages");
                continue;
            }
            let url = crate::ingest::source::with_query_param(
                &reply.url,
                &self.cfg.cursor_param,
                &cursor,
            );
            if url == reply.url {
                tracing::warn!(url = %reply.url, cursor, "the next cursor repeats this page's; pagination stopped");
                continue;
            }
            let target = match HttpUrl::parse(&url) {
                Ok(t) => t,
                Err(why) => {
                    tracing::warn!(url, %why, "next page cannot be requested");
                    continue;
                }
            };
            self.enqueue_page(url, target, reply.page + 1);
        }
    }

    /// Schedules another attempt after an exponential backoff with full jitter (or at least
    /// the server's `Retry-After`, capped by `max_retry_after`), or fails the request when its
    /// attempts or its total time are used up, or the run is stopping.
    fn retry_or_fail(
        &mut self,
        mut req: Request,
        class: &str,
        mut detail: String,
        retry_after: Option<Duration>,
    ) {
        req.failures += 1;
        let delay = backoff(&mut self.rng, req.failures, retry_after, &self.cfg);
        let in_time = req.admitted_at.elapsed() + delay < self.cfg.total_timeout;
        if !in_time {
            detail = format!(
                "{detail}; no time left for another attempt within the total timeout of {:?}",
                self.cfg.total_timeout
            );
        }
        if req.failures < self.cfg.max_attempts && in_time && !self.stop.load(Ordering::Relaxed) {
            self.report.stats.retries += 1;
            let id = self.next_retry_id;
            self.next_retry_id += 1;
            self.retries.push(Reverse((Instant::now() + delay, id)));
            self.retry_store.insert(id, req);
        } else {
            let n = req.failures;
            self.finish_failed(
                &req.url,
                class,
                &format!("{detail} (after {n} attempts)"),
                n,
            );
        }
    }

    fn due_retries(&mut self, now: Instant) {
        while let Some(&Reverse((due, id))) = self.retries.peek() {
            if due > now {
                break;
            }
            self.retries.pop();
            if let Some(req) = self.retry_store.remove(&id) {
                self.hosts[req.host].queue.push_back(req);
            }
        }
    }

    /// Fails connections whose connect or request deadline has passed.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let Some(conn) = &self.conns[slot] else {
                continue;
            };
            if conn.state == ConnState::Idle {
                continue;
            }
            let active = conn.state == ConnState::Active;
            let started = conn.decoder.started();
            let detail = if conn.deadline <= now {
                if conn.state == ConnState::Connecting {
                    format!(
                        "connect to {} timed out after {:?}",
                        conn.addr, self.cfg.connect_timeout
                    )
                } else {
                    format!("request timed out after {:?}", self.cfg.request_timeout)
                }
            } else if active
                && !started
                && now.duration_since(conn.sent_at) >= self.cfg.first_byte_timeout
            {
                format!(
                    "no response within {:?} (first-byte timeout)",
                    self.cfg.first_byte_timeout
                )
            } else if active
                && started
                && now.duration_since(conn.last_byte_at) >= self.cfg.idle_timeout
            {
                format!(
                    "response stalled: no bytes for {:?} (idle timeout)",
                    self.cfg.idle_timeout
                )
            } else {
                continue;
            };
            let class = "timeout";
            self.close(slot, Some(ConnFailure::Retryable { class, detail }));
        }
    }

    fn take_resolved(&mut self) {
        while let Ok((h, result)) = self.resolver.answers.try_recv() {
            self.hosts[h].addrs = match result {
                Ok(a) => Addrs::Ready(a),
                Err(e) => Addrs::Failed(e),
            };
        }
    }

    /// Records a work item's final failure; it travels downstream in the batch so the writer can
    /// log it next to dead-lettered records.
    fn finish_failed(&mut self, url: &str, class: &str, detail: &str, attempts: u32) {
        self.report.stats.fail(class, url, detail);
        self.in_flight -= 1;
        let now = Instant::now();
        if self.batch.is_empty() {
            self.batch_started = Some(now);
            if self.batch.ticket.is_none() {
                self.batch.ticket = Some(self.chans.live.ticket());
            }
        }
        self.batch
            .push_failure(url, detail.to_string(), attempts, now);
    }

    /// Keeps a URL string that is no longer needed for the next template URL.
    fn spare_url(&mut self, url: String) {
        if self.spare_urls.len() < SPARE_URLS {
            self.spare_urls.push(url);
        }
    }

    /// Whether a parse thread would take a batch shipped now at once: more of them wait for
    /// input than batches wait in the queue.
    fn parse_thread_free(&self) -> bool {
        self.chans.registry.waiting(&self.parse_threads) > self.chans.out.len()
    }

    fn batch_full(&self) -> bool {
        self.batch.len() >= self.cfg.batch_max_items
            || self.batch.arena.len() >= self.cfg.batch_max_bytes
    }

    fn batch_due(&self, now: Instant) -> bool {
        !self.batch.is_empty()
            && (self.batch_full()
                || self
                    .batch_started
                    .is_some_and(|s| now.duration_since(s) >= self.cfg.batch_max_delay))
    }

    /// Sends the current batch downstream, blocking while the queue is full (back-pressure).
    fn ship(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // The writer has not yet taken the batch the short path left it: join that one.
        if self.chans.try_join(
            &mut self.batch,
            self.cfg.batch_max_bytes,
            self.cfg.batch_max_items,
        ) {
            self.batch_started = None;
            self.chans.parse_idle.clear();
            return Ok(());
        }
        let mut next = self.chans.recycled.try_recv().unwrap_or_default();
        // A batch closes at the first body past `batch_max_bytes`, so a normal arena needs at
        // most that plus one body; anything far above came from an outsized body.
        next.shrink_arena(2 * self.cfg.batch_max_bytes);
        let mut batch = std::mem::replace(&mut self.batch, next);
        self.batch_started = None;
        self.chans.parse_idle.clear();
        if batch.ticket.is_none() {
            batch.ticket = Some(self.chans.live.ticket());
        }
        let batch = match self.chans.try_short_path(batch) {
            Ok(()) => return Ok(()),
            Err(batch) => batch,
        };
        let blocked_at = Instant::now();
        let mut pending = match self.chans.out.try_send(batch) {
            Ok(()) => {
                let depth = self.chans.out.len();
                self.chans.registry.set_queue_depth(QueueId::Bodies, depth);
                return Ok(());
            }
            Err(TrySendError::Full(b)) => b,
            Err(TrySendError::Disconnected(_)) => return Err(downstream_gone()),
        };
        let (registry, thread) = (Arc::clone(&self.chans.registry), self.chans.thread);
        registry.set_queue_depth(QueueId::Bodies, self.chans.out.capacity().unwrap_or(0));
        registry.set_state(thread, ThreadState::BlockedOutput);
        loop {
            match self
                .chans
                .out
                .send_timeout(pending, Duration::from_millis(100))
            {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(b)) => pending = b,
                Err(SendTimeoutError::Disconnected(_)) => return Err(downstream_gone()),
            }
        }
        registry.set_state(thread, ThreadState::Working);
        // Time spent blocked is not the servers' fault: move request deadlines accordingly.
        let blocked = blocked_at.elapsed();
        self.report.stats.blocked += blocked;
        for conn in self.conns.iter_mut().flatten() {
            conn.deadline += blocked;
            conn.sent_at += blocked;
            conn.last_byte_at += blocked;
        }
        Ok(())
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

/// The wait before the next attempt, after `failures` failed ones: exponential backoff from
/// [`RETRY_BASE`] with full jitter (xorshift; quality is irrelevant here), but never shorter
/// than the server's `Retry-After`, itself capped by `max_retry_after`. Shared by both fetchers.
pub(crate) fn backoff(
    rng: &mut u64,
    failures: u32,
    retry_after: Option<Duration>,
    cfg: &FetchConfig,
) -> Duration {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let cap = RETRY_BASE.as_micros() as u64 * (1 << failures.saturating_sub(1).min(10));
    let delay = Duration::from_micros(*rng % cap.max(1));
    match retry_after {
        Some(after) => delay.max(after.min(cfg.max_retry_after)),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the request path stays a range of the URL, and its text.
    fn path_of(url: &str) -> (bool, String) {
        let parts = UrlParts::split(url).expect("valid URL");
        match RequestPath::of(url, parts.path) {
            RequestPath::InUrl(r) => (true, url[r].to_string()),
            RequestPath::Own(p) => (false, p),
        }
    }

    #[test]
    fn request_path_is_a_range_of_the_url_unless_made() {
        assert_eq!(
            path_of("http://127.0.0.1:8080/logs/7?x=1"),
            (true, "/logs/7?x=1".to_string())
        );
        assert_eq!(path_of("http://h/a#frag"), (true, "/a".to_string()));
        assert_eq!(path_of("http://[::1]:81/"), (true, "/".to_string()));
        // Made by the split: the URL has no `/` to point at.
        assert_eq!(path_of("http://h"), (false, "/".to_string()));
        assert_eq!(path_of("http://h:8080?q=1"), (false, "/?q=1".to_string()));
    }

    #[test]
    fn request_path_reads_from_its_own_url() {
        let url = "http://h/a/b?c".to_string();
        let parts = UrlParts::split(&url).expect("valid URL");
        let path = RequestPath::of(&url, parts.path);
        let req = Request {
            url,
            seq: 0,
            path,
            host: 0,
            failures: 0,
            stale_resends: 0,
            admitted_at: Instant::now(),
            redirects: 0,
            page: 0,
        };
        // The URL moved into the request: the range still names its path.
        assert_eq!(req.path(), "/a/b?c");
    }
}

//! The lookup client of one HTTP enricher: one thread, one mio event loop, keep-alive
//! connections to the enricher's host (up to `concurrency`), built from the fetcher's pieces
//! (`protocol::write_request` and `ResponseDecoder`, the TLS `Transport`, its token bucket and
//! backoff).
//!
//! Compute threads send `Job`s (a lookup URL and where to answer) and wake the loop. A job
//! for a URL whose lookup is already in flight joins it (coalescing: one HTTP call, any number
//! of waiters). Each lookup ends exactly once, with an answer or a [`Failure`]; the loop stores
//! answers in the cache before telling the waiters, and on a failure serves what the cache
//! still holds within `max_stale` (stale-on-error). A 429 or 5xx, a timeout or a connection
//! error is retried up to `retries` times with backoff, never sooner than `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::cache::{Answer, Cache, Cached, Scalar};
use super::config::{ColumnType, Spec};
use crate::config::{FetchConfig, UrlPart};
use crate::error::{Error, Result};
use crate::ingest::http::protocol::{write_request, ResponseDecoder};
use crate::ingest::http::transport::Transport;
use crate::ingest::http::{backoff, TokenBucket};
use crate::ingest::source::HttpUrl;
use crate::metrics::live::EnrichStats;

const WAKER: Token = Token(usize::MAX);
/// Largest answer accepted: lookups answer small documents.
const MAX_ANSWER: usize = 4 << 20;

/// Why a lookup failed: a class for metrics, and the detail for `_enrich_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `status`, `timeout`, `connect`, `http`, `json`.
    pub class: &'static str,
    /// What happened, in words.
    pub detail: String,
}

/// A lookup's end.
pub type Outcome = std::result::Result<Answer, Failure>;

/// Where a job's outcome goes: the channel of the batch that asked, and the key's slot there.
pub(crate) type Reply = (Sender<(usize, Outcome)>, usize);

/// A lookup asked of the client: its URL, and whom to answer (none for a revalidation of a
/// stale answer, which only refreshes the cache).
pub(crate) struct Job {
    pub(crate) url: String,
    pub(crate) reply: Option<Reply>,
}

/// The handle of the lookup thread. Dropping it ends the thread (after the lookups in flight).
pub(crate) struct Client {
    jobs: Option<Sender<Job>>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    /// Starts the thread for `spec`; `fetch` gives the TLS settings (the fetcher's).
    pub(crate) fn start(
        spec: Arc<Spec>,
        cache: Arc<Cache>,
        stats: Arc<EnrichStats>,
        fetch: &FetchConfig,
    ) -> Result<Client> {
        let key = |why: String| Error::config(format!("enrich `{}`.url", spec.name), why);
        let Some(UrlPart::Text(head)) = spec.url.first() else {
            return Err(key("must start with http:// or https://".into()));
        };
        // The origin is the text before the first `/` of the path: fields come after it.
        let scheme_end = head.find("://").map_or(0, |i| i + 3);
        let origin_len = head[scheme_end..]
            .find('/')
            .map(|i| scheme_end + i)
            .ok_or_else(|| key("needs a `/` after the host".into()))?;
        let origin = HttpUrl::parse(&head[..origin_len]).map_err(key)?;
        let tls = match origin.tls {
            #[cfg(feature = "tls")]
            true => Some(crate::ingest::http::transport::client_config(fetch)?),
            #[cfg(not(feature = "tls"))]
            true => return Err(key("https:// needs the `tls` cargo feature".into())),
            false => None,
        };
        let thread_error = |why: String| Error::Thread {
            thread: format!("pinflow-{}", spec.name),
            why,
        };
        let poll = Poll::new().map_err(|e| thread_error(format!("poll: {e}")))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).map_err(|e| thread_error(format!("waker: {e}")))?,
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let cfg = &spec.cfg;
        let mut retry_cfg = fetch.clone();
        retry_cfg.max_retry_after = cfg.max_retry_after.unwrap_or(Duration::from_secs(30));
        let lp = Loop {
            poll,
            jobs: rx,
            closed: false,
            origin_len,
            host: origin.host,
            port: origin.port,
            tls,
            addrs: Vec::new(),
            lookups: Vec::new(),
            free: Vec::new(),
            inflight: HashMap::new(),
            ready: VecDeque::new(),
            later: Vec::new(),
            conns: Vec::new(),
            bucket: cfg.rate_limit.map(|r| TokenBucket::new(r, r)),
            rate_wake: None,
            retry_cfg,
            rng: 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()),
            spec: Arc::clone(&spec),
            cache,
            stats,
        };
        let thread = std::thread::Builder::new()
            .name(format!("pinflow-{}", spec.name))
            .spawn(move || lp.run())
            .map_err(|e| thread_error(format!("cannot start: {e}")))?;
        Ok(Client {
            jobs: Some(tx),
            waker,
            thread: Some(thread),
        })
    }

    /// Hands `job` to the loop. `false` when the thread is gone.
    pub(crate) fn ask(&self, job: Job) -> bool {
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        sent && self.waker.wake().is_ok()
    }

    /// Wakes the loop after several [`Client::ask`]s (each also wakes it; this is the one the
    /// caller cannot skip).
    pub(crate) fn wake(&self) {
        let _ = self.waker.wake();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.jobs = None;
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One lookup in flight: its URL, tries so far, who waits.
struct Lookup {
    url: String,
    failures: u32,
    waiters: Vec<Reply>,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Idle,
    Busy,
}

/// One keep-alive connection of the lookup loop.
struct Link {
    stream: Transport,
    state: State,
    lookup: Option<usize>,
    out: Vec<u8>,
    sent: usize,
    input: Vec<u8>,
    body: Vec<u8>,
    decoder: ResponseDecoder,
    deadline: Instant,
    /// Has finished a response: a close before the next one is a stale keep-alive.
    reused: bool,
}

/// What a connection's event came to.
enum Step {
    /// Nothing final yet.
    Wait,
    /// The response is complete.
    Done,
    /// The connection failed; `stale` when it was a reused one that the server had closed
    /// (re-send without counting a try).
    Failed { stale: bool, failure: Failure },
}

struct Loop {
    poll: Poll,
    jobs: Receiver<Job>,
    closed: bool,
    origin_len: usize,
    host: String,
    port: u16,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    #[cfg(not(feature = "tls"))]
    tls: Option<()>,
    addrs: Vec<SocketAddr>,
    lookups: Vec<Option<Lookup>>,
    free: Vec<usize>,
    inflight: HashMap<String, usize>,
    ready: VecDeque<usize>,
    /// Lookups waiting out a backoff: when, which.
    later: Vec<(Instant, usize)>,
    conns: Vec<Option<Link>>,
    bucket: Option<TokenBucket>,
    rate_wake: Option<Instant>,
    retry_cfg: FetchConfig,
    rng: u64,
    spec: Arc<Spec>,
    cache: Arc<Cache>,
    stats: Arc<EnrichStats>,
}

impl Loop {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            self.take_jobs();
            if self.closed && self.inflight.is_empty() {
                break;
            }
            let now = Instant::now();
            self.expire(now);
            self.due(now);
            self.dispatch(now);
            let timeout = self
                .next_wake()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The poll itself broke: fail everything rather than leave waiters hanging.
                tracing::error!(enricher = %self.spec.name, error = %e, "lookup loop failed");
                self.fail_all(format!("the lookup loop failed: {e}"));
                return;
            }
            for ev in events.iter() {
                if ev.token() != WAKER {
                    self.drive(ev.token().0);
                }
            }
        }
        for c in self.conns.iter_mut().flatten() {
            c.stream.shutdown();
        }
    }

    fn take_jobs(&mut self) {
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.add(job),
                Err(crossbeam_channel::TryRecvError::Empty) => return,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// A job: joins the lookup of its URL in flight, or starts one.
    fn add(&mut self, job: Job) {
        if let Some(&id) = self.inflight.get(&job.url) {
            if let (Some(l), Some(reply)) = (self.lookups[id].as_mut(), job.reply) {
                self.stats
                    .coalesced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                l.waiters.push(reply);
            }
            return;
        }
        let lookup = Lookup {
            url: job.url.clone(),
            failures: 0,
            waiters: job.reply.into_iter().collect(),
            started: Instant::now(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.lookups[id] = Some(lookup);
                id
            }
            None => {
                self.lookups.push(Some(lookup));
                self.lookups.len() - 1
            }
        };
        self.inflight.insert(job.url, id);
        self.ready.push_back(id);
    }

    fn next_wake(&self) -> Option<Instant> {
        let conns = self
            .conns
            .iter()
            .flatten()
            .filter(|c| c.state != State::Idle)
            .map(|c| c.deadline);
        let later = self.later.iter().map(|(t, _)| *t);
        conns.chain(later).chain(self.rate_wake).min()
    }

    /// Lookups whose backoff is over go back in line.
    fn due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.later.len() {
            if self.later[i].0 <= now {
                let (_, id) = self.later.swap_remove(i);
                self.ready.push_back(id);
            } else {
                i += 1;
            }
        }
    }

    /// Gives waiting lookups to idle connections, opening more up to `concurrency`, within the
    /// rate limit.
    fn dispatch(&mut self, now: Instant) {
        self.rate_wake = None;
        while let Some(&id) = self.ready.front() {
            let idle = self
                .conns
                .iter()
                .position(|c| c.as_ref().is_some_and(|c| c.state == State::Idle));
            let open = self.conns.iter().flatten().count();
            if idle.is_none() && open >= self.spec.cfg.concurrency {
                return;
            }
            if let Some(b) = self.bucket.as_mut() {
                if let Err(wait) = b.take(now) {
                    self.rate_wake = Some(now + wait);
                    return;
                }
            }
            self.ready.pop_front();
            let slot = match idle {
                Some(slot) => slot,
                None => match self.open(now) {
                    Ok(slot) => slot,
                    Err(failure) => {
                        self.attempt_failed(id, failure, None, now);
                        continue;
                    }
                },
            };
            self.start(slot, id, now);
        }
    }

    /// Opens a connection (not yet connected) and returns its slot.
    fn open(&mut self, now: Instant) -> std::result::Result<usize, Failure> {
        let connect = |detail: String| Failure {
            class: "connect",
            detail,
        };
        if self.addrs.is_empty() {
            // Resolved once, on this thread: the lookups of an enricher all go to one host.
            let found = crate::ingest::http::resolve::literal(&self.host, self.port)
                .map(|a| vec![a])
                .map_or_else(
                    || {
                        (self.host.as_str(), self.port)
                            .to_socket_addrs()
                            .map(Iterator::collect)
                    },
                    Ok,
                );
            self.addrs =
                found.map_err(|e| connect(format!("cannot resolve {}: {e}", self.host)))?;
        }
        let addr = *self
            .addrs
            .first()
            .ok_or_else(|| connect(format!("{}: no addresses", self.host)))?;
        let tcp =
            TcpStream::connect(addr).map_err(|e| connect(format!("connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            #[cfg(feature = "tls")]
            Some(cfg) => Transport::tls(tcp, cfg, &self.host).map_err(|e| Failure {
                class: "tls",
                detail: e.to_string(),
            })?,
            #[cfg(not(feature = "tls"))]
            Some(()) => unreachable!("https:// is refused at start without the tls feature"),
            None => Transport::Plain(tcp),
        };
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let mut link = Link {
            stream,
            state: State::Connecting,
            lookup: None,
            out: Vec::with_capacity(256),
            sent: 0,
            input: vec![0; 16 << 10],
            body: Vec::new(),
            decoder: ResponseDecoder::new(MAX_ANSWER),
            deadline: now,
            reused: false,
        };
        self.poll
            .registry()
            .register(
                link.stream.tcp_mut(),
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| connect(format!("register {addr}: {e}")))?;
        self.conns[slot] = Some(link);
        Ok(slot)
    }

    /// Puts lookup `id` on connection `slot`.
    fn start(&mut self, slot: usize, id: usize, now: Instant) {
        let (Some(link), Some(lookup)) = (self.conns[slot].as_mut(), self.lookups[id].as_ref())
        else {
            return;
        };
        let tls = self.tls.is_some();
        link.out.clear();
        write_request(
            &mut link.out,
            &self.host,
            self.port,
            if tls { 443 } else { 80 },
            &lookup.url[self.origin_len..],
            "",
            "",
        );
        link.sent = 0;
        link.body.clear();
        link.decoder.reset();
        link.lookup = Some(id);
        link.deadline = now + self.spec.cfg.timeout;
        if link.state == State::Idle {
            link.state = State::Busy;
        }
        // The socket may be writable already, with no new event to say so.
        self.drive(slot);
    }

    /// A socket event (or a request just loaded): move bytes, and act on what they complete.
    fn drive(&mut self, slot: usize) {
        let Some(link) = self.conns[slot].as_mut() else {
            return;
        };
        let step = link.step();
        let now = Instant::now();
        match step {
            Step::Wait => {}
            Step::Done => self.complete(slot, now),
            Step::Failed { stale, failure } => {
                let id = self.close(slot);
                if let Some(id) = id {
                    if stale {
                        self.ready.push_front(id);
                    } else {
                        self.attempt_failed(id, failure, None, now);
                    }
                }
            }
        }
    }

    /// Closes a connection; returns the lookup it carried.
    fn close(&mut self, slot: usize) -> Option<usize> {
        let mut link = self.conns[slot].take()?;
        let _ = self.poll.registry().deregister(link.stream.tcp_mut());
        link.stream.shutdown();
        link.lookup
    }

    /// Attempts past their deadline fail as timeouts.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let overdue = self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.state != State::Idle && c.deadline <= now);
            if overdue {
                if let Some(id) = self.close(slot) {
                    let failure = Failure {
                        class: "timeout",
                        detail: format!("no answer within {:?}", self.spec.cfg.timeout),
                    };
                    self.attempt_failed(id, failure, None, now);
                }
            }
        }
    }

    /// A complete response on `slot`.
    fn complete(&mut self, slot: usize, now: Instant) {
        let Some(link) = self.conns[slot].as_mut() else {
            return;
        };
        let status = link.decoder.status();
        let retry_after = link.decoder.retry_after();
        let keep = link.decoder.keep_alive();
        let id = link.lookup.take();
        let body = std::mem::take(&mut link.body);
        link.decoder.reset();
        link.reused = true;
        link.state = State::Idle;
        if !keep {
            self.close(slot);
        }
        let Some(id) = id else { return };
        match status {
            200..=299 => {
                let mut body = body;
                let outcome = answer_of(&self.spec, &mut body);
                self.finish(id, outcome, now);
            }
            404 => self.finish(id, Ok(None), now),
            429 | 500..=599 => {
                let failure = Failure {
                    class: "status",
                    detail: format!("HTTP {status}"),
                };
                self.attempt_failed(id, failure, retry_after, now);
            }
            _ => {
                let failure = Failure {
                    class: "status",
                    detail: format!("HTTP {status}"),
                };
                self.finish(id, Err(failure), now);
            }
        }
    }

    /// A try failed: again after a backoff, or the lookup fails.
    fn attempt_failed(
        &mut self,
        id: usize,
        failure: Failure,
        retry_after: Option<Duration>,
        now: Instant,
    ) {
        let Some(l) = self.lookups[id].as_mut() else {
            return;
        };
        l.failures += 1;
        if l.failures > self.spec.cfg.retries {
            let detail = format!("{} (after {} attempts)", failure.detail, l.failures);
            self.finish(id, Err(Failure { detail, ..failure }), now);
            return;
        }
        self.stats
            .retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait = backoff(&mut self.rng, l.failures, retry_after, &self.retry_cfg);
        self.later.push((now + wait, id));
    }

    /// A lookup's end: cache the answer, or serve a stale one on failure; tell every waiter.
    fn finish(&mut self, id: usize, outcome: Outcome, now: Instant) {
        let Some(l) = self.lookups[id].take() else {
            return;
        };
        self.free.push(id);
        self.inflight.remove(&l.url);
        self.stats.lookup_latency.lock().record(now - l.started);
        let outcome = match outcome {
            Ok(answer) => {
                self.cache.put(l.url, answer.clone(), now);
                Ok(answer)
            }
            Err(f) => {
                self.stats.error(f.class);
                match self.cache.get(&l.url, now) {
                    Cached::Fresh(a) | Cached::Stale(a) => {
                        self.stats.stale_served.fetch_add(
                            l.waiters.len() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        Ok(a)
                    }
                    Cached::Miss => Err(f),
                }
            }
        };
        for (tx, slot) in l.waiters {
            let _ = tx.send((slot, outcome.clone()));
        }
    }

    fn fail_all(&mut self, why: String) {
        let now = Instant::now();
        for id in 0..self.lookups.len() {
            let failure = Failure {
                class: "internal",
                detail: why.clone(),
            };
            self.finish(id, Err(failure), now);
        }
    }
}

impl Link {
    /// Connects, sends, and reads what is there; says whether the response is complete.
    fn step(&mut self) -> Step {
        let fail = |class: &'static str, detail: String| Step::Failed {
            stale: false,
            failure: Failure { class, detail },
        };
        if self.state == State::Connecting {
            match self.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return fail("connect", format!("connect: {e}")),
            }
            match self.stream.peer_addr() {
                Ok(_) => self.state = State::Busy,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Wait,
                Err(e) => return fail("connect", format!("connect: {e}")),
            }
        }
        if let Err(e) = self.flush() {
            return self.io_failure(e);
        }
        loop {
            match self.stream.read(&mut self.input) {
                Ok(0) => {
                    if self.lookup.is_none() {
                        // The server closed an idle keep-alive connection.
                        return fail("connect", "closed".into());
                    }
                    return match self.decoder.eof() {
                        Ok(()) => Step::Done,
                        Err(_) if self.reused && !self.decoder.started() => Step::Failed {
                            stale: true,
                            failure: Failure {
                                class: "connect",
                                detail: "closed".into(),
                            },
                        },
                        Err(e) => fail("http", e.to_string()),
                    };
                }
                Ok(n) => {
                    if self.lookup.is_none() {
                        return fail("http", "bytes nobody asked for".into());
                    }
                    let mut at = 0;
                    while at < n && !self.decoder.is_done() {
                        match self.decoder.decode(&self.input[at..n], &mut self.body) {
                            Ok(0) => break,
                            Ok(used) => at += used,
                            Err(e) => return fail("http", e.to_string()),
                        }
                    }
                    if self.decoder.is_done() {
                        return Step::Done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.io_failure(e),
            }
        }
    }

    /// Writes pending TLS records and the request, as far as the socket takes them.
    fn flush(&mut self) -> io::Result<()> {
        match self.stream.flush_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        while self.state == State::Busy && self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Ok(()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn io_failure(&self, e: io::Error) -> Step {
        if let Some(tls) = crate::ingest::http::transport::tls_error_text(&e) {
            return Step::Failed {
                stale: false,
                failure: Failure {
                    class: "tls",
                    detail: tls,
                },
            };
        }
        let stale = self.reused
            && !self.decoder.started()
            && matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            );
        Step::Failed {
            stale,
            failure: Failure {
                class: "connect",
                detail: e.to_string(),
            },
        }
    }
}

/// The answer in a 2xx body: each column's value at its path, of its type. An empty body,
/// `null` or `{}` is "no value".
pub(crate) fn answer_of(spec: &Spec, body: &mut [u8]) -> Outcome {
    use simd_json::prelude::*;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let doc = simd_json::value::to_borrowed_value(body).map_err(|e| Failure {
        class: "json",
        detail: format!("the answer is not JSON: {e}"),
    })?;
    if doc.is_null() || doc.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    let values = spec
        .columns
        .iter()
        .map(|c| {
            let mut v = Some(&doc);
            for part in &c.path {
                v = v.and_then(|v| v.get(part.as_str()));
            }
            match v {
                None => Scalar::Null,
                Some(v) => scalar_of(v, c.ty, &c.name),
            }
        })
        .collect::<Vec<_>>();
    Ok(Some(Arc::from(values)))
}

fn scalar_of(v: &simd_json::BorrowedValue<'_>, ty: ColumnType, column: &str) -> Scalar {
    use simd_json::prelude::*;
    if v.is_null() {
        return Scalar::Null;
    }
    let got = match ty {
        ColumnType::Str => Some(match v.as_str() {
            Some(s) => Scalar::Str(s.into()),
            None => Scalar::Str(v.encode().into()),
        }),
        ColumnType::Int => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .map(Scalar::Int),
        ColumnType::Float => v.cast_f64().map(Scalar::Float),
        ColumnType::Bool => v.as_bool().map(Scalar::Bool),
    };
    got.unwrap_or_else(|| {
        let mut text = v.encode();
        text.truncate(64);
        Scalar::Bad(format!("`{column}`: {text} is not {}", ty.name()).into())
    })
}

//! A request's life between the source and a connection: admission, the queue per host, rate
//! limits, retries with backoff, deadlines, and its end (delivered or failed).
//!
//! Admission takes work items from the source while fewer than `max_in_flight` are
//! unfinished; every admitted item is counted in `in_flight` until it ends, exactly once, as a
//! body or as a failure in a batch (see the [module docs](super)). A request waits in its
//! host's queue until a connection takes it; one whose try failed without a response waits in
//! the retry heap for its backoff, then goes back to the end of its host's queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{ConnFailure, ConnState};
use super::event_loop::Fetcher;
use super::paginate::Chain;
use super::pool::NotOpened;
use crate::config::FetchConfig;
use crate::ingest::source::{Feed, Next, UrlParts};
use crate::time::after;

/// Re-sends allowed when a kept-alive connection turns out to be closed by the server.
const MAX_STALE_RESENDS: u32 = 3;
/// First retry delay; doubles with each attempt, with full jitter.
const RETRY_BASE: Duration = Duration::from_millis(50);
/// How many URL strings the fetcher keeps for reuse: enough for one poll's completions.
const SPARE_URLS: usize = 256;

pub(super) struct Request {
    pub(super) url: String,
    /// The work item's position in the source (its next pages carry the same one).
    pub(super) seq: u64,
    /// The work item's admission number, for source order ([`InOrder`](super::order::InOrder));
    /// its next pages carry the same one. 0 when source order is off.
    pub(super) order: u64,
    /// What the request line asks for: see [`Request::path`].
    pub(super) path: RequestPath,
    pub(super) host: usize,
    /// Tries that have ended in a retryable failure.
    pub(super) failures: u32,
    pub(super) stale_resends: u32,
    /// When the request was admitted: `total_timeout` counts from here.
    pub(super) admitted_at: Instant,
    /// Redirects followed so far.
    pub(super) redirects: u32,
    /// Pages followed through `Link: rel="next"` before this one (0 for a source URL).
    pub(super) page: u32,
    /// The host (an origin) of the work item's own URL: the only one its credentials go to
    /// (see [`Request::headers`]).
    pub(super) origin: usize,
    /// `Authorization: Basic` for the URL's `user:password@` (a header line), when it has them;
    /// `url` shows them redacted.
    pub(super) auth: Option<Arc<str>>,
    /// The pagination chain this request is a page of, once a next page has been followed.
    pub(super) chain: Option<Box<Chain>>,
}

/// A request's path and query: usually the part of its URL after the authority, kept as that
/// range so that admitting a request does not copy it; a redirect's target or a path the URL
/// lacks (`http://h`, `http://h?q`) is its own string.
pub(super) enum RequestPath {
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
    /// A request for `url` as admission makes one, for unit tests.
    #[cfg(test)]
    pub(super) fn for_test(url: &str) -> Request {
        Request {
            url: url.to_string(),
            seq: 0,
            order: 0,
            path: RequestPath::Own("/".into()),
            host: 0,
            failures: 0,
            stale_resends: 0,
            admitted_at: Instant::now(),
            redirects: 0,
            page: 0,
            origin: 0,
            auth: None,
            chain: None,
        }
    }

    /// The path and query the request line asks for, starting with `/`.
    pub(super) fn path(&self) -> &str {
        match &self.path {
            RequestPath::InUrl(r) => &self.url[r.clone()],
            RequestPath::Own(p) => p,
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub(crate) fn take(&mut self, now: Instant) -> std::result::Result<(), Duration> {
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

/// The source feed, the count of unfinished work items, and the requests waiting to be retried.
/// (The queue of each host is in its [`Host`](super::pool::Host).)
pub(super) struct Schedule {
    pub(super) feed: Feed,
    pub(super) feed_done: bool,
    /// Admitted work items (and pages) that have not ended yet.
    pub(super) in_flight: usize,
    retries: BinaryHeap<Reverse<(Instant, u64)>>,
    retry_store: HashMap<u64, Request>,
    next_retry_id: u64,
    /// The backoff jitter's state.
    rng: u64,
    /// When a rate-limited host earns its next token.
    pub(super) rate_wake_at: Option<Instant>,
    /// When connection deadlines were last checked.
    pub(super) last_scan: Instant,
    /// URL strings of delivered requests, for the next template URLs (at most [`SPARE_URLS`]).
    spare_urls: Vec<String>,
    /// When the stop flag was first seen: `shutdown_timeout` counts from here.
    pub(super) stopping_since: Option<Instant>,
}

impl Schedule {
    pub(super) fn new(feed: Feed) -> Schedule {
        Schedule {
            feed,
            feed_done: false,
            in_flight: 0,
            retries: BinaryHeap::new(),
            retry_store: HashMap::new(),
            next_retry_id: 0,
            rng: 0x2545_F491_4F6C_DD1D,
            rate_wake_at: None,
            last_scan: Instant::now(),
            spare_urls: Vec::new(),
            stopping_since: None,
        }
    }

    /// When the earliest retry is due.
    pub(super) fn next_retry_at(&self) -> Option<Instant> {
        self.retries.peek().map(|&Reverse((due, _))| due)
    }

    /// Takes the next retry whose backoff has passed by `now`.
    fn next_due(&mut self, now: Instant) -> Option<Request> {
        while let Some(&Reverse((due, id))) = self.retries.peek() {
            if due > now {
                break;
            }
            self.retries.pop();
            if let Some(req) = self.retry_store.remove(&id) {
                return Some(req);
            }
        }
        None
    }

    /// Keeps a URL string that is no longer needed for the next template URL.
    pub(super) fn spare_url(&mut self, url: String) {
        if self.spare_urls.len() < SPARE_URLS {
            self.spare_urls.push(url);
        }
    }
}

impl Fetcher {
    /// The stop, checked once per turn of the loop. Once the flag is set nothing new is
    /// admitted or sent: requests not on a connection (queued, awaiting a retry, redirected)
    /// are cancelled at once, and those on one get until `shutdown_timeout`, when they are
    /// cancelled too. A cancelled request is not a failure: it goes in no batch, so the
    /// journal does not mark it done and a resumed run fetches it.
    pub(super) fn stop_if_asked(&mut self, now: Instant) {
        if !self.stop.load(Ordering::Relaxed) {
            return;
        }
        let first = self.schedule.stopping_since.is_none();
        let since = *self.schedule.stopping_since.get_or_insert(now);
        if first {
            self.report.interrupted |= !self.schedule.feed_done;
            self.schedule.feed_done = true;
        }
        let before = self.report.stats.cancelled;
        for h in 0..self.pool.hosts.len() {
            while let Some(req) = self.pool.hosts[h].queue.pop_front() {
                self.cancel(req);
            }
        }
        let retries: Vec<Request> = self.schedule.retry_store.drain().map(|(_, r)| r).collect();
        self.schedule.retries.clear();
        for req in retries {
            self.cancel(req);
        }
        if first {
            let unsent = self.report.stats.cancelled - before;
            let on_wire = self.pool.conns.iter().flatten();
            tracing::info!(
                cancelled_unsent = unsent,
                on_the_wire = on_wire.filter(|c| c.req.is_some()).count(),
                shutdown_timeout_ms = self.cfg.shutdown_timeout.as_millis() as u64,
                "stop: nothing new is sent; requests on the wire may finish until the shutdown timeout"
            );
        }
        if now.saturating_duration_since(since) < self.cfg.shutdown_timeout {
            return;
        }
        let before = self.report.stats.cancelled;
        for slot in 0..self.pool.conns.len() {
            if let Some(req) = self.pool.close(slot, false) {
                self.cancel(req);
            }
        }
        let cut = self.report.stats.cancelled - before;
        if cut > 0 {
            tracing::warn!(
                cancelled = cut,
                shutdown_timeout_ms = self.cfg.shutdown_timeout.as_millis() as u64,
                "stop: requests still unanswered at the shutdown timeout were cancelled"
            );
        }
    }

    /// Ends a request the stop cut short (see [`Fetcher::stop_if_asked`]).
    fn cancel(&mut self, req: Request) {
        self.report.stats.cancelled += 1;
        self.report.interrupted = true;
        self.schedule.in_flight -= 1;
        self.end_item(req.order);
        self.schedule.spare_url(req.url);
    }

    /// Takes work items from the source while the in-flight bound allows.
    pub(super) fn admit(&mut self) {
        // Bodies held for source order count as in flight: they hold memory the same way.
        let held = |f: &Fetcher| f.order.as_ref().map_or(0, |o| o.held());
        while !self.schedule.feed_done
            && self.schedule.in_flight + held(self) < self.cfg.max_in_flight
        {
            let s = &mut self.schedule;
            let item = match s.feed.next_reusing(&mut s.spare_urls) {
                Next::Item(item) => item,
                Next::Pending => return,
                Next::Done => {
                    s.feed_done = true;
                    return;
                }
            };
            if self.cfg.shard.is_some_and(|sh| !sh.keeps(&item.url)) {
                // Another instance's work: not a request of this one.
                self.schedule.spare_url(item.url);
                continue;
            }
            if self.chans.skip.contains(item.seq) {
                // Done by an earlier run (resume journal).
                self.report.stats.skipped += 1;
                self.schedule.spare_url(item.url);
                continue;
            }
            self.schedule.in_flight += 1;
            self.report.stats.requests += 1;
            let order = self.order.as_mut().map_or(0, |o| o.admit());
            // From here on the URL is shown (logs, dead letters, summary) without its password.
            let (url, auth) = crate::ingest::url::take_userinfo(item.url);
            match UrlParts::split(&url) {
                Ok(u) => {
                    let host = self.pool.host_for(u.host, u.port, u.tls, &self.cfg);
                    let path = RequestPath::of(&url, u.path);
                    self.pool.hosts[host].queue.push_back(Request {
                        url,
                        seq: item.seq,
                        order,
                        path,
                        host,
                        failures: 0,
                        stale_resends: 0,
                        admitted_at: Instant::now(),
                        redirects: 0,
                        page: 0,
                        origin: host,
                        auth: auth.map(Arc::from),
                        chain: None,
                    });
                }
                Err(why) => {
                    let url = crate::ingest::url::redact(&url);
                    let detail = format!("invalid URL `{url}`: {why}");
                    self.finish_failed(order, &url, "invalid url", &detail, 0);
                }
            }
        }
    }

    /// Gives queued requests to connections: an idle one of their host, or a new one while the
    /// host has fewer than `connections_per_host`, each only with a token when rate-limited.
    pub(super) fn dispatch(&mut self) {
        self.schedule.rate_wake_at = None;
        let now = Instant::now();
        let per_host = self.cfg.connections_per_host;
        for h in 0..self.pool.hosts.len() {
            if self.pool.hosts[h].queue.is_empty() {
                continue;
            }
            match self.pool.addrs_ready(h) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => {
                    while let Some(req) = self.pool.hosts[h].queue.pop_front() {
                        let (order, attempts) = (req.order, req.failures + 1);
                        self.finish_failed(order, &req.url, "resolve", &why, attempts);
                    }
                    continue;
                }
            }
            while let Some(req) = self.pool.hosts[h].queue.pop_front() {
                // Room for a new connection under the descriptor cap (see pool.rs).
                let room = self.pool.has_room();
                let host = &mut self.pool.hosts[h];
                let can_send = host.idle.last().is_some() || (host.open < per_host && room);
                if can_send {
                    if let Some(b) = host.bucket.as_mut() {
                        if let Err(wait) = b.take(now) {
                            host.queue.push_front(req);
                            let at = after(now, wait);
                            let s = &mut self.schedule;
                            s.rate_wake_at = Some(s.rate_wake_at.map_or(at, |t| t.min(at)));
                            break;
                        }
                    }
                }
                if let Some(slot) = host.idle.pop() {
                    self.start_request(slot, req);
                } else if can_send {
                    self.pool.make_room();
                    if !self.open_connection(h, req) {
                        break;
                    }
                } else {
                    host.queue.push_front(req);
                    break;
                }
            }
        }
    }

    /// Opens a connection for `req`, or fails it; false when no descriptor was free, and the
    /// request is back at the front of its host's queue (back-pressure, not a failure).
    fn open_connection(&mut self, h: usize, req: Request) -> bool {
        match self.pool.open(h, req, &self.cfg) {
            Ok(()) => self.report.stats.connections += 1,
            Err(NotOpened::Failed(req, failure)) => self.fail_request(req, Some(failure)),
            Err(NotOpened::NoDescriptors(req)) => {
                self.pool.hosts[h].queue.push_front(req);
                return false;
            }
        }
        true
    }

    fn start_request(&mut self, slot: usize, req: Request) {
        self.pool.start(slot, req, &self.cfg);
        self.drive(slot, false, true);
    }

    /// What becomes of the request a closed connection carried: re-sent at once after a stale
    /// keep-alive, retried or failed.
    pub(super) fn fail_request(&mut self, mut req: Request, failure: Option<ConnFailure>) {
        match failure {
            Some(ConnFailure::Stale) if req.stale_resends < MAX_STALE_RESENDS => {
                req.stale_resends += 1;
                self.report.stats.stale_reconnects += 1;
                self.pool.hosts[req.host].queue.push_front(req);
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
                self.finish_failed(req.order, &req.url, class, &detail, attempts);
            }
            None => {
                self.retry_or_fail(req, "closed", "connection closed".into(), None);
            }
        }
    }

    /// Schedules another attempt after an exponential backoff with full jitter (or at least
    /// the server's `Retry-After`, capped by `max_retry_after`), or fails the request when its
    /// attempts or its total time are used up, or the run is stopping.
    pub(super) fn retry_or_fail(
        &mut self,
        mut req: Request,
        class: &str,
        mut detail: String,
        retry_after: Option<Duration>,
    ) {
        req.failures += 1;
        let delay = backoff(&mut self.schedule.rng, req.failures, retry_after, &self.cfg);
        let in_time = req.admitted_at.elapsed().saturating_add(delay) < self.cfg.total_timeout;
        if !in_time {
            detail = format!(
                "{detail}; no time left for another attempt within the total timeout of {:?}",
                self.cfg.total_timeout
            );
        }
        if self.stop.load(Ordering::Relaxed) && req.failures < self.cfg.max_attempts && in_time {
            // It would have been tried again: left for a resumed run, not failed.
            self.cancel(req);
        } else if req.failures < self.cfg.max_attempts && in_time {
            self.report.stats.retries += 1;
            let s = &mut self.schedule;
            let id = s.next_retry_id;
            s.next_retry_id += 1;
            s.retries.push(Reverse((after(Instant::now(), delay), id)));
            s.retry_store.insert(id, req);
        } else {
            let n = req.failures;
            self.finish_failed(
                req.order,
                &req.url,
                class,
                &format!("{detail} (after {n} attempts)"),
                n,
            );
        }
    }

    /// Puts the retries whose backoff has passed back at the end of their host's queue.
    pub(super) fn due_retries(&mut self, now: Instant) {
        while let Some(req) = self.schedule.next_due(now) {
            self.pool.hosts[req.host].queue.push_back(req);
        }
    }

    /// Fails connections whose connect or request deadline has passed, and requests whose
    /// total timeout ran out during an attempt (not only between attempts).
    pub(super) fn expire(&mut self, now: Instant) {
        let class = "timeout";
        for slot in 0..self.pool.conns.len() {
            let Some(conn) = &self.pool.conns[slot] else {
                continue;
            };
            if conn.state == ConnState::Idle {
                continue;
            }
            let total = self.cfg.total_timeout;
            if let Some(req) = conn
                .req
                .as_ref()
                .filter(|r| now.saturating_duration_since(r.admitted_at) >= total)
            {
                let detail = format!(
                    "total timeout of {total:?} reached during attempt {}",
                    req.failures + 1
                );
                self.close(slot, Some(ConnFailure::Fatal { class, detail }));
                continue;
            }
            let Some(detail) = conn.overdue(now, &self.cfg) else {
                continue;
            };
            self.close(slot, Some(ConnFailure::Retryable { class, detail }));
        }
    }

    /// Records a work item's final failure; it travels downstream in the batch so the writer can
    /// log it next to dead-lettered records.
    /// Ends its work item (`order`, for source order): a failure has no next page.
    pub(super) fn finish_failed(
        &mut self,
        order: u64,
        url: &str,
        class: &str,
        detail: &str,
        attempts: u32,
    ) {
        self.report.stats.fail(class, url, detail);
        self.schedule.in_flight -= 1;
        let now = Instant::now();
        self.batcher
            .push_failure(url, detail, attempts, now, &self.chans.live);
        self.end_item(order);
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
            path,
            ..Request::for_test("")
        };
        // The URL moved into the request: the range still names its path.
        assert_eq!(req.path(), "/a/b?c");
    }
}

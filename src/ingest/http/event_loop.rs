//! The mio event loop: see the [module docs](super).
//!
//! The [`Fetcher`] ties the parts together: the connection [`Pool`], the request
//! [`Schedule`], [`Pagination`] and the [`Batcher`]. This file has the loop itself, continuous
//! mode's passes, and what a connection's events mean for its request; each part's own state
//! and the methods that mostly touch it are in its file.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use super::batching::Batcher;
use super::conn::{ConnFailure, Connected, Received, Response};
use super::order::InOrder;
use super::paginate::Pagination;
use super::pool::Pool;
use super::resolve::Resolver;
use super::schedule::Schedule;
#[cfg(feature = "tls")]
use super::transport;
use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::IngestChannels;
use crate::ingest::source::Source;
use crate::ingest::IngestReport;
use crate::metrics::live::{Stage, ThreadState};
use crate::time::after;

const WAKER: Token = Token(usize::MAX);
/// How often the fetch thread copies its counters to the live metrics.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);
/// How often request deadlines are checked while requests are active.
const TIMEOUT_SCAN: Duration = Duration::from_millis(50);
/// How often cursor replies are looked for while pages await theirs.
const CURSOR_POLL: Duration = Duration::from_millis(1);

/// Checks what a run of `cfg` reads before its first request (header secrets, TLS certificate
/// and key files), so that a missing file fails the run before any output file is created.
pub fn preflight(cfg: &FetchConfig) -> Result<()> {
    crate::config::resolve_headers(&cfg.headers, |k| std::env::var(k).ok())?;
    #[cfg(feature = "tls")]
    transport::client_config(cfg)?;
    Ok(())
}

/// Runs the fetch loop on the calling thread until the source is drained and every admitted
/// request has ended, or until `stop` is set: then requests on a connection get until
/// `cfg.shutdown_timeout` to finish, and the rest are cancelled.
///
/// With `every` set (continuous mode), a drained source is taken again from the start, one pass
/// beginning `every` after the previous one began, until `stop` is set.
pub fn run(
    cfg: &FetchConfig,
    source: Source,
    every: Option<Duration>,
    mut chans: IngestChannels,
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
    let mut feed = source.into_feed(Arc::clone(&wake))?;
    if let Some(since) = crate::ingest::since_for_pass(cfg, &chans.registry) {
        feed = feed.with_since(&since);
    }
    let max_conns = super::pool::connection_cap(chans.descriptor_reserve);
    if max_conns < cfg.max_in_flight {
        tracing::warn!(
            connections = max_conns,
            reserve = chans.descriptor_reserve,
            "the file descriptor limit (ulimit -n) caps the fetcher's connections below \
             fetch.max_in_flight; raise it for more"
        );
    }
    let threads = chans.registry.threads();
    let parse_threads = (0..threads.len())
        .filter(|&i| threads[i].name.starts_with("parse"))
        .collect();
    let mut fetcher = Fetcher {
        pool: Pool::new(
            poll,
            #[cfg(feature = "tls")]
            tls,
            resolver,
            extra_headers,
            cfg.max_buffered_bytes,
            max_conns,
        ),
        cfg: cfg.clone(),
        schedule: Schedule::new(feed),
        pages: Pagination::new(chans.cursors.take()),
        batcher: Batcher::new(parse_threads),
        order: chans.source_order.then(InOrder::default),
        chans,
        stop,
        report: IngestReport::default(),
        last_publish: Instant::now(),
        passes: Passes {
            every,
            again,
            wake,
            started: Instant::now(),
            resume_at: None,
        },
    };
    fetcher
        .chans
        .registry
        .set_state(fetcher.chans.thread, ThreadState::Working);
    let result = fetcher.event_loop();
    fetcher.publish();
    result?;
    fetcher.report.source_error = fetcher.schedule.feed.take_error();
    Ok(fetcher.report)
}

/// The fetch thread's state, one part per concern.
pub(super) struct Fetcher {
    pub(super) cfg: FetchConfig,
    pub(super) chans: IngestChannels,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) report: IngestReport,
    /// Hosts, connections and their sockets.
    pub(super) pool: Pool,
    /// The source feed, requests in flight and retries.
    pub(super) schedule: Schedule,
    /// Cursor pagination's replies.
    pub(super) pages: Pagination,
    /// The batch being filled.
    pub(super) batcher: Batcher,
    /// Source order (time windows): bodies held until the items before them have ended.
    pub(super) order: Option<InOrder>,
    passes: Passes,
    last_publish: Instant,
}

/// Continuous mode: the pass interval, the source to take again, and where the passes stand.
struct Passes {
    every: Option<Duration>,
    again: Option<Source>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// When the current pass began.
    started: Instant,
    /// Set when a pass has ended: when the next one starts.
    resume_at: Option<Instant>,
}

impl Fetcher {
    fn event_loop(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.stop_if_asked(Instant::now());
            self.admit();
            self.take_cursors();
            self.dispatch();
            self.release_held(false)?;
            if self.schedule.feed_done
                && self.schedule.in_flight == 0
                && self.pages.awaiting == 0
                && self.pass_ended()?
            {
                break;
            }
            let timeout = self.poll_timeout();
            // Time blocked in poll is idle time, not busy time: waiting for the network, the
            // source or the next pass (an idle continuous run would otherwise read 100 % busy).
            let (registry, me) = (&self.chans.registry, self.chans.thread);
            registry.set_state(me, ThreadState::WaitingInput);
            let polled = self.pool.poll.poll(&mut events, timeout);
            registry.set_state(me, ThreadState::Working);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(Error::Fetch {
                        op: "poll",
                        source: e,
                    });
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.pool.take_resolved();
                } else {
                    self.on_socket_event(ev.token().0);
                    // Ship a full batch before handling the next event: one poll can complete
                    // dozens of large bodies, and the batch must stay near its byte bound.
                    // (Shipping any batch here as soon as a parse thread waited, or the writer
                    // for the short path, was tried: more, smaller batches and a higher p99
                    // handoff; CHANGELOG.md, measurement history, latency steps 4 and 5.)
                    self.release_held(false)?;
                    self.ship_if_full()?;
                }
            }
            let now = Instant::now();
            if now.duration_since(self.last_publish) >= PUBLISH_EVERY {
                self.last_publish = now;
                self.publish();
            }
            self.resume_paused();
            self.due_retries(now);
            if now.duration_since(self.schedule.last_scan) >= TIMEOUT_SCAN {
                self.schedule.last_scan = now;
                self.expire(now);
            }
            self.ship_or_hold(now, events.is_empty())?;
        }
        // Every item has ended, so nothing is held; were anything left, it would go now,
        // still in order, rather than be lost.
        self.release_held(true)?;
        self.ship()?;
        Ok(())
    }

    /// Called while the source is drained and nothing is in flight. Returns true when the run
    /// is over; in continuous mode, starts the next pass when its time has come.
    fn pass_ended(&mut self) -> Result<bool> {
        let stopping = self.stop.load(Ordering::Relaxed);
        let Some(resume_at) = self.passes.resume_at else {
            // The pass just ended: everything fetched goes downstream now, not in 2 ms.
            self.ship()?;
            self.chans.registry.cycles.fetch_add(1, Ordering::Relaxed);
            let Some(every) = self.passes.every.filter(|_| !stopping) else {
                return Ok(true);
            };
            self.passes.resume_at = Some(after(self.passes.started, every));
            self.publish();
            tracing::info!(
                requests = self.report.stats.requests,
                failed = self.report.stats.failed,
                next_in_ms = after(self.passes.started, every)
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
        // `{since}` polling: this pass asks from the position the rows written so far reached.
        let since = crate::ingest::since_for_pass(&self.cfg, &self.chans.registry);
        let p = &mut self.passes;
        p.resume_at = None;
        p.started = now;
        let every = p.every.unwrap_or_default();
        let next = p
            .again
            .as_ref()
            .expect("continuous mode keeps its source")
            .try_clone()
            .and_then(|s| s.into_feed(Arc::clone(&p.wake)));
        let next = next.map(|feed| match &since {
            Some(since) => feed.with_since(since),
            None => feed,
        });
        match next {
            Ok(feed) => {
                self.schedule.feed = feed;
                self.schedule.feed_done = false;
            }
            Err(e) => {
                // A URL file being replaced, say: skip this pass, try again at the next.
                tracing::warn!(error = %e, "cannot start a pass over the sources; trying again at the next");
                p.resume_at = Some(after(now, every));
            }
        }
        Ok(false)
    }

    /// Copies the counters to the live metrics (the fetch thread is their only writer).
    fn publish(&self) {
        let open = self.pool.open_count();
        let r = &self.chans.registry;
        r.publish_fetch(&self.report.stats, self.schedule.in_flight, open);
        r.heartbeat(self.chans.thread);
        if self.schedule.feed_done
            && (self.passes.every.is_none() || self.stop.load(Ordering::Relaxed))
        {
            r.set_draining(true);
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut t = Duration::from_millis(500);
        if let Some(due) = self.schedule.next_retry_at() {
            t = t.min(due.saturating_duration_since(now));
        }
        if let Some(at) = self.passes.resume_at {
            t = t.min(at.saturating_duration_since(now));
        }
        if let Some(at) = self.schedule.rate_wake_at {
            t = t.min(at.saturating_duration_since(now));
        }
        if let Some(at) = self.batcher.deadline(&self.cfg) {
            t = t.min(at.saturating_duration_since(now));
        }
        if self.pages.awaiting > 0 {
            // Replies come from the parse threads without a wake-up; a page's round trip to a
            // real API takes far longer than this.
            t = t.min(CURSOR_POLL);
        }
        if self.pool.any_busy() {
            t = t.min(TIMEOUT_SCAN);
        }
        Some(t)
    }

    fn on_socket_event(&mut self, slot: usize) {
        let Some(conn) = self.pool.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        match conn.connected(&self.cfg) {
            Connected::Not => {}
            Connected::Failed(failure) => self.close(slot, Some(failure)),
            Connected::Yes => self.drive(slot, true, true),
        }
    }

    /// Writes what is pending and reads what has arrived, until the socket would block.
    pub(super) fn drive(&mut self, slot: usize, readable: bool, writable: bool) {
        let Some(conn) = self.pool.conns[slot].as_mut() else {
            return;
        };
        if writable {
            if let Err(failure) = conn.send() {
                self.close(slot, Some(failure));
                return;
            }
        }
        if !readable {
            return;
        }
        loop {
            if self.pool.conns[slot].is_none() || !self.pool.may_read(slot) {
                // Paused at `max_buffered_bytes`: read again by `resume_paused`.
                return;
            }
            let conn = self.pool.conns[slot].as_mut().expect("checked above");
            match conn.receive() {
                Received::Bytes => {
                    let open = self.on_bytes(slot);
                    self.pool.recount(slot);
                    if !open {
                        return;
                    }
                }
                Received::Eof => return self.on_eof(slot),
                Received::Blocked => return,
                Received::Failed(failure) => return self.close(slot, Some(failure)),
            }
        }
    }

    /// Decodes buffered bytes. Returns false when the connection was closed.
    fn on_bytes(&mut self, slot: usize) -> bool {
        let conn = self.pool.conns[slot].as_mut().expect("caller checked");
        match conn.decode() {
            Response::Partial => true,
            Response::Complete => self.complete(slot),
            Response::Unasked => {
                self.close(slot, None);
                false
            }
            Response::Failed(failure) => {
                self.close(slot, Some(failure));
                false
            }
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let conn = self.pool.conns[slot].as_mut().expect("caller checked");
        match conn.eof() {
            Response::Complete => {
                self.complete(slot);
            }
            Response::Unasked => self.close(slot, None),
            Response::Failed(failure) => self.close(slot, Some(failure)),
            Response::Partial => unreachable!("an end of input completes or fails a response"),
        }
    }

    /// A response is complete: deliver or fail it, then reuse or close the connection.
    /// Returns false when the connection was closed.
    fn complete(&mut self, slot: usize) -> bool {
        let now = Instant::now();
        let conn = self.pool.conns[slot].as_mut().expect("caller checked");
        let mut req = conn
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
            self.finish_failed(req.order, &req.url, "content encoding", &detail, attempts);
        } else if (200..300).contains(&status) {
            let cursor_page = self.pages.park(&mut req, &self.pool);
            let conn = self.pool.conns[slot].as_mut().expect("caller checked");
            let encoding = encoding.unwrap_or_default();
            match self.order.as_mut().filter(|o| o.must_hold(req.order)) {
                Some(o) => o.hold(req.order, &req, &conn.body, encoding, cursor_page, now),
                None => {
                    let live = &self.chans.live;
                    self.batcher
                        .push_body(&req, &conn.body, encoding, cursor_page, now, live);
                }
            }
            self.report.stats.delivered += 1;
            self.report.stats.body_bytes += conn.body.len() as u64;
            self.schedule.in_flight -= 1;
            let mut continues = cursor_page.is_some();
            if self.cfg.follow_link_next {
                if let Some(next) = conn.decoder.link_next().map(str::to_string) {
                    continues |= self.follow_next(&mut req, &next);
                }
            }
            if !continues {
                // The last page of its work item (with a cursor, the parse threads' reply
                // decides: `take_cursors`).
                self.end_item(req.order);
            }
            // Its text is in the batch now: the string can carry the next template URL.
            self.schedule.spare_url(req.url);
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
                self.finish_failed(req.order, &req.url, &class, &detail, attempts);
            }
        }
        self.pool.reuse(slot, keep);
        if !keep {
            self.close(slot, None);
        }
        keep
    }

    /// Closes a connection; a request it carried is re-sent, retried or failed.
    pub(super) fn close(&mut self, slot: usize, failure: Option<ConnFailure>) {
        if let Some(req) = self.pool.close(slot, failure.is_none()) {
            self.fail_request(req, failure);
        }
    }
}

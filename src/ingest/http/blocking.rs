//! The blocking fallback fetcher: a small pool of threads doing one ureq request at a time.
//!
//! It exists for two reasons: as the baseline that shows what the mio design buys (the bench
//! runs both against the same server), and for networks that only reach the internet through
//! an HTTP proxy (ureq reads `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` from the environment). It
//! keeps the mio fetcher's contract: every work item ends as exactly one of delivered or
//! failed with its reason; 5xx, 429, connection errors and timeouts are retried with backoff
//! and full jitter, never sooner than `Retry-After`; bodies go downstream in batches, their
//! `Content-Encoding` decoded by the parse threads. Redirects are followed here, not by ureq,
//! under the mio engine's rules: at most `max_redirects`, to another host only with
//! `redirect_other_hosts`, targets resolved per RFC 3986, and the configured headers and a
//! URL's `user:password@` (sent as basic auth) only on the work item's own origin. Not
//! supported here: continuous mode. On a stop, work not yet sent and retries are cancelled at
//! once, but an attempt already in ureq's hands runs to its end (at most `request_timeout`):
//! `shutdown_timeout` is the mio loop's. With source order (time windows) it fetches with one
//! worker, one URL at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use parking_lot::Mutex;

use crate::batch::{BodyBatch, ContentEncoding};
use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::IngestChannels;
use crate::ingest::source::{HttpUrl, Next, Source, UrlParts, WorkItem};
use crate::ingest::IngestReport;
use crate::metrics::live::{QueueId, Stage, ThreadState};
use crate::metrics::FetchStats;

/// Runs the pool until the source is drained (or `stop` is set) and every request has ended.
pub fn run(
    cfg: &FetchConfig,
    source: Source,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    let extra = crate::config::resolve_headers(&cfg.headers, |k| std::env::var(k).ok())?;
    let headers = header_pairs(&extra);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(cfg.connect_timeout))
        .timeout_recv_response(Some(cfg.first_byte_timeout))
        .timeout_global(Some(cfg.request_timeout))
        // Redirects are followed in `Worker::attempt`, which knows which headers may go where.
        .max_redirects(0)
        .proxy(ureq::Proxy::try_from_env())
        .user_agent(concat!("pinflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let me = std::thread::current();
    let feed_wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || me.unpark());
    let mut feed = source.into_feed(feed_wake)?;
    if let Some(since) = crate::ingest::since_for_pass(cfg, &chans.registry) {
        feed = feed.with_since(&since);
    }
    let stats = Mutex::new(FetchStats::default());
    // Source order (time windows) from a pool of threads would need their bodies put back in
    // order; one worker fetches in list order instead (the mio engine holds bodies for it).
    let workers = match chans.source_order {
        true => {
            if cfg.connections_per_host > 1 {
                tracing::info!(
                    "time windows need source order: the blocking engine fetches one URL at a \
                     time (fetch.engine = \"mio\" keeps many requests in flight, in order)"
                );
            }
            1
        }
        false => cfg.connections_per_host.max(1),
    };
    let (work_tx, work_rx) = bounded::<(WorkItem, Instant)>(workers);
    let registry = Arc::clone(&chans.registry);
    registry.set_state(chans.thread, ThreadState::Working);
    let mut report = IngestReport::default();
    let shipped: Result<()> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for index in 0..workers {
            let (rx, agent, chans, stats, stop) =
                (work_rx.clone(), agent.clone(), &chans, &stats, &stop);
            let headers = &headers;
            handles.push(scope.spawn(move || -> Result<()> {
                let mut w = Worker {
                    cfg,
                    agent,
                    headers,
                    chans,
                    stats,
                    stop,
                    batch: BodyBatch::default(),
                    batch_started: None,
                    rng: 0x2545_F491_4F6C_DD1D ^ (index as u64 + 1),
                };
                for (item, admitted) in rx {
                    if stop.load(Ordering::Relaxed) {
                        // Not sent before the stop: left for a resumed run.
                        w.stats.lock().cancelled += 1;
                        continue;
                    }
                    w.fetch(item.url, item.seq, admitted);
                    w.ship_if_due(false)?;
                }
                w.ship_if_due(true)
            }));
        }
        drop(work_rx);
        let mut last_publish = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                report.interrupted = true;
                break;
            }
            match feed.next() {
                Next::Item(item) => {
                    if cfg.shard.is_some_and(|sh| !sh.keeps(&item.url)) {
                        continue;
                    }
                    if chans.skip.contains(item.seq) {
                        stats.lock().skipped += 1;
                        continue;
                    }
                    stats.lock().requests += 1;
                    // Waiting for a free worker, or for the source, is not busy time.
                    registry.set_state(chans.thread, ThreadState::BlockedOutput);
                    let sent = work_tx.send((item, Instant::now()));
                    registry.set_state(chans.thread, ThreadState::Working);
                    if sent.is_err() {
                        break;
                    }
                }
                Next::Pending => {
                    registry.set_state(chans.thread, ThreadState::WaitingInput);
                    std::thread::park_timeout(Duration::from_millis(100));
                    registry.set_state(chans.thread, ThreadState::Working);
                }
                Next::Done => break,
            }
            if last_publish.elapsed() >= Duration::from_millis(50) {
                last_publish = Instant::now();
                registry.publish_fetch(&stats.lock(), work_tx.len(), workers);
                registry.heartbeat(chans.thread);
            }
        }
        drop(work_tx);
        registry.set_draining(true);
        let mut first_err = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::Thread {
                    thread: "pinflow-fetch worker".into(),
                    why: "panicked".into(),
                })
            });
            if first_err.is_ok() {
                first_err = r;
            }
        }
        first_err
    });
    report.stats = stats.into_inner();
    registry.publish_fetch(&report.stats, 0, 0);
    registry.cycles.fetch_add(1, Ordering::Relaxed);
    report.source_error = feed.take_error();
    shipped?;
    Ok(report)
}

struct Worker<'a> {
    cfg: &'a FetchConfig,
    agent: ureq::Agent,
    headers: &'a [(String, String)],
    chans: &'a IngestChannels,
    stats: &'a Mutex<FetchStats>,
    stop: &'a AtomicBool,
    batch: BodyBatch,
    batch_started: Option<Instant>,
    rng: u64,
}

/// How one attempt ended.
enum Attempt {
    Body(Vec<u8>, ContentEncoding),
    /// A non-2xx status, with its `Retry-After`.
    Status(u16, Option<Duration>),
    /// Connection error, timeout, oversized or undecodable response: (class, detail, retry?).
    Error(String, String, bool),
}

/// How a failed call ends an attempt: ureq's error in the mio engine's classes and words, so
/// that the summary, the metrics and the dead letters read the same whichever engine ran, and
/// so that a name that cannot be resolved is not retried (mio's rule; issue 23).
fn call_failure(e: ureq::Error, at: &HttpUrl, cfg: &FetchConfig) -> Attempt {
    use std::io::ErrorKind as K;
    use ureq::Timeout as T;
    let addr = format!("{}:{}", at.host, at.port);
    let (class, detail, retry) = match e {
        ureq::Error::Timeout(T::Connect) => (
            "timeout",
            format!(
                "connect to {addr} timed out after {:?}",
                cfg.connect_timeout
            ),
            true,
        ),
        ureq::Error::Timeout(T::RecvResponse) => (
            "timeout",
            format!(
                "no response within {:?} (first-byte timeout)",
                cfg.first_byte_timeout
            ),
            true,
        ),
        ureq::Error::Timeout(T::Global) => (
            "timeout",
            format!("request timed out after {:?}", cfg.request_timeout),
            true,
        ),
        ureq::Error::Timeout(t) => ("timeout", format!("timeout: {t}"), true),
        ureq::Error::HostNotFound => (
            "resolve",
            format!("cannot resolve {}: no addresses", at.host),
            false,
        ),
        // ureq passes getaddrinfo's failure on as the `io::Error` std made of it, whose kind
        // cannot be named on stable Rust: std's message is what tells it from a socket error.
        ureq::Error::Io(io) if io.to_string().contains("failed to lookup address") => (
            "resolve",
            format!("cannot resolve {}: {io}", at.host),
            false,
        ),
        // The proxy refused the tunnel (407, 502, ...): its answer is the reason.
        ureq::Error::ConnectProxyFailed(why) => ("proxy", format!("proxy: {why}"), false),
        // The connection broke after it was made (a reset, a close mid-response).
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            ) =>
        {
            ("connection", format!("{addr}: {io}"), true)
        }
        e @ (ureq::Error::Io(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_)
        | ureq::Error::BodyStalled) => ("connect", e.to_string(), true),
        e => ("connect", e.to_string(), false),
    };
    Attempt::Error(class.into(), detail, retry)
}

/// `Name: value` header lines as (name, value) pairs.
fn header_pairs(lines: &str) -> Vec<(String, String)> {
    lines
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A work item's URL as requested: its origin, and the basic-auth header of its
/// `user:password@`.
struct Target {
    origin: HttpUrl,
    auth: Option<(String, String)>,
}

impl Worker<'_> {
    /// One try of `target`, following redirects.
    fn attempt(&self, target: &Target) -> Attempt {
        let mut at = target.origin.clone();
        let mut redirects = 0;
        loop {
            let resp = match self.call(&at, target) {
                Ok(resp) => resp,
                Err(attempt) => return attempt,
            };
            let status = resp.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return self.read(resp);
            }
            let location = resp
                .headers()
                .get("location")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
            match self.redirect(&at, status, location, redirects) {
                Ok(next) => at = next,
                Err(detail) => return Attempt::Error("redirect".into(), detail, false),
            }
            redirects += 1;
        }
    }

    /// Where a redirect from `at` leads, or why it is not followed (the mio engine's rules and
    /// words).
    fn redirect(
        &self,
        at: &HttpUrl,
        status: u16,
        location: Option<String>,
        redirects: u32,
    ) -> std::result::Result<HttpUrl, String> {
        let Some(location) = location else {
            return Err(format!("HTTP status {status} without a Location header"));
        };
        let shown = crate::ingest::url::redact(&location);
        if redirects >= self.cfg.max_redirects {
            let max = self.cfg.max_redirects;
            return Err(format!("more than {max} redirects (last to {shown})"));
        }
        let next = crate::ingest::url::resolve_http(at, &location)
            .map_err(|why| format!("redirect to `{shown}` cannot be followed: {why}"))?;
        if (&next.host, next.port, next.tls) != (&at.host, at.port, at.tls)
            && !self.cfg.redirect_other_hosts
        {
            return Err(format!(
                "redirect to another host refused ({shown}); set fetch.redirect_other_hosts"
            ));
        }
        Ok(next)
    }

    /// Sends the request for `at`, with the configured headers and the URL's credentials only
    /// on the work item's origin.
    // The error is the attempt's outcome, by value, as `attempt` returns it.
    #[allow(clippy::result_large_err)]
    fn call(
        &self,
        at: &HttpUrl,
        target: &Target,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, Attempt> {
        if at.tls {
            // ureq is built without TLS here: one TLS stack (the mio loop's) is enough.
            let detail =
                "the ureq engine fetches http:// only; use fetch.engine = \"mio\" for https://";
            return Err(Attempt::Error("tls".into(), detail.into(), false));
        }
        // The URL without user information: ureq would send that as basic auth to every host.
        let mut req = self.agent.get(at.to_string());
        if !self.cfg.accept_encoding.is_empty() {
            req = req.header("Accept-Encoding", &self.cfg.accept_encoding);
        }
        let o = &target.origin;
        if (&at.host, at.port, at.tls) == (&o.host, o.port, o.tls) {
            let own_auth = target.auth.is_some();
            for (n, v) in self.headers {
                if !(own_auth && n.eq_ignore_ascii_case("authorization")) {
                    req = req.header(n, v);
                }
            }
            if let Some((n, v)) = &target.auth {
                req = req.header(n, v);
            }
        }
        req.call().map_err(|e| call_failure(e, at, self.cfg))
    }

    /// What a response that is not a redirect comes to: its body, or its status.
    fn read(&self, mut resp: ureq::http::Response<ureq::Body>) -> Attempt {
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(super::protocol::parse_retry_after);
            return Attempt::Status(status, after);
        }
        let header = resp
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let encoding = match ContentEncoding::from_header(header) {
            Ok(e) => e,
            Err(other) => {
                let detail = format!("unsupported Content-Encoding `{other}`");
                return Attempt::Error("content encoding".into(), detail, false);
            }
        };
        match resp
            .body_mut()
            .with_config()
            .limit(self.cfg.max_body_bytes as u64)
            .read_to_vec()
        {
            Ok(body) => Attempt::Body(body, encoding),
            Err(ureq::Error::BodyExceedsLimit(_)) => Attempt::Error(
                "too large".into(),
                format!(
                    "response body larger than {} bytes",
                    self.cfg.max_body_bytes
                ),
                false,
            ),
            Err(e) => Attempt::Error("receive".into(), e.to_string(), true),
        }
    }

    fn fetch(&mut self, url: String, seq: u64, admitted: Instant) {
        // From here on the URL is shown (logs, dead letters, summary) without its password.
        let (url, auth) = crate::ingest::url::take_userinfo(url);
        let target = match UrlParts::split(&url) {
            Ok(u) => Target {
                origin: u.into_owned(),
                auth: auth.as_deref().and_then(|line| header_pairs(line).pop()),
            },
            Err(why) => {
                let url = crate::ingest::url::redact(&url);
                let detail = format!("invalid URL `{url}`: {why}");
                return self.failed(&url, "invalid url", detail, 0);
            }
        };
        let url = url.as_str();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let started = Instant::now();
            let outcome = self.attempt(&target);
            let reg = &self.chans.registry;
            reg.latency(Stage::Fetch).record(started.elapsed());
            let (class, detail, retry, after) = match outcome {
                Attempt::Body(body, encoding) => {
                    let now = Instant::now();
                    if self.batch.is_empty() {
                        self.batch_started = Some(now);
                        self.batch.ticket = Some(self.chans.live.ticket());
                    }
                    self.batch
                        .push_encoded_body(url, &body, encoding, attempts, now);
                    self.batch.set_seq(seq);
                    let mut s = self.stats.lock();
                    s.delivered += 1;
                    s.body_bytes += body.len() as u64;
                    return;
                }
                Attempt::Status(status, after) => {
                    *self.stats.lock().statuses.entry(status).or_default() += 1;
                    let retry = status == 429 || (500..600).contains(&status);
                    (
                        format!("http {status}"),
                        format!("HTTP status {status}"),
                        retry,
                        after,
                    )
                }
                Attempt::Error(class, detail, retry) => (class, detail, retry, None),
            };
            let delay = super::backoff(&mut self.rng, attempts, after, self.cfg);
            let in_time = admitted.elapsed().saturating_add(delay) < self.cfg.total_timeout;
            if retry && attempts < self.cfg.max_attempts && in_time {
                if self.stop.load(Ordering::Relaxed) || !self.wait_unless_stopped(delay) {
                    // It would have been tried again: left for a resumed run, not failed.
                    self.stats.lock().cancelled += 1;
                    return;
                }
                self.stats.lock().retries += 1;
                continue;
            }
            let detail = format!("{detail} (after {attempts} attempts)");
            return self.failed(url, &class, detail, attempts);
        }
    }

    /// Sleeps for `delay`, waking early when the stop flag is set. Returns false then.
    fn wait_unless_stopped(&self, delay: Duration) -> bool {
        let until = crate::time::after(Instant::now(), delay);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// Records a work item's final failure in the batch and the counters.
    fn failed(&mut self, url: &str, class: &str, detail: String, attempts: u32) {
        self.stats.lock().fail(class, url, &detail);
        if self.batch.is_empty() {
            self.batch_started = Some(Instant::now());
            self.batch.ticket = Some(self.chans.live.ticket());
        }
        self.batch
            .push_failure(url, detail, attempts, Instant::now());
    }

    /// Ships the batch when full, old enough, or (`last`) at the end.
    fn ship_if_due(&mut self, last: bool) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let full = self.batch.len() >= self.cfg.batch_max_items
            || self.batch.arena.len() >= self.cfg.batch_max_bytes;
        let old = self
            .batch_started
            .is_some_and(|t| t.elapsed() >= self.cfg.batch_max_delay);
        if !(full || old || last) {
            return Ok(());
        }
        let next = self.chans.recycled.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, next);
        self.batch_started = None;
        self.chans
            .out
            .send(batch)
            .map_err(|_| crate::handoff::downstream_gone())?;
        self.chans
            .registry
            .set_queue_depth(QueueId::Bodies, self.chans.out.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(e: ureq::Error) -> (String, String, bool) {
        let at = UrlParts::split("http://api.test:8080/x")
            .unwrap()
            .into_owned();
        let cfg = FetchConfig {
            connect_timeout: Duration::from_millis(750),
            ..FetchConfig::default()
        };
        match call_failure(e, &at, &cfg) {
            Attempt::Error(class, detail, retry) => (class, detail, retry),
            _ => unreachable!("call_failure makes errors only"),
        }
    }

    #[test]
    fn ureq_errors_read_as_the_mio_engines() {
        use std::io::{Error as Io, ErrorKind};
        let (class, detail, retry) = class_of(ureq::Error::Timeout(ureq::Timeout::Connect));
        assert_eq!((class.as_str(), retry), ("timeout", true));
        assert_eq!(detail, "connect to api.test:8080 timed out after 750ms");
        // std's text for a failed getaddrinfo, as ureq hands it on.
        let lookup = Io::other("failed to lookup address information: Name or service not known");
        let (class, detail, retry) = class_of(ureq::Error::Io(lookup));
        assert_eq!((class.as_str(), retry), ("resolve", false));
        assert!(detail.starts_with("cannot resolve api.test: "), "{detail}");
        let (class, _, retry) = class_of(ureq::Error::HostNotFound);
        assert_eq!((class.as_str(), retry), ("resolve", false));
        let reset = Io::from(ErrorKind::ConnectionReset);
        let (class, _, retry) = class_of(ureq::Error::Io(reset));
        assert_eq!((class.as_str(), retry), ("connection", true));
        let refused = Io::from(ErrorKind::ConnectionRefused);
        let (class, _, retry) = class_of(ureq::Error::Io(refused));
        assert_eq!((class.as_str(), retry), ("connect", true));
        let why = "proxy server responded 407/Proxy Authentication Required".to_string();
        let (class, detail, retry) = class_of(ureq::Error::ConnectProxyFailed(why));
        assert_eq!((class.as_str(), retry), ("proxy", false));
        assert!(detail.contains("407"), "{detail}");
    }
}

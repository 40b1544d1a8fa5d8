//! The blocking fallback fetcher: a small pool of threads doing one ureq request at a time.
//!
//! It exists for two reasons: as the baseline that shows what the mio design buys (the bench
//! runs both against the same server), and for networks that only reach the internet through
//! an HTTP proxy (ureq reads `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` from the environment). It
//! keeps the mio fetcher's contract: every work item ends as exactly one of delivered or
//! failed with its reason; 5xx, 429, connection errors and timeouts are retried with backoff
//! and full jitter, never sooner than `Retry-After`; bodies go downstream in batches, their
//! `Content-Encoding` decoded by the parse threads. Redirects are ureq's own (same limit;
//! ureq may follow them to other hosts). Not supported here: continuous mode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use parking_lot::Mutex;

use crate::batch::{BodyBatch, ContentEncoding};
use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::IngestChannels;
use crate::ingest::source::{Next, Source, WorkItem};
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
    let headers: Vec<(String, String)> = extra
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(cfg.connect_timeout))
        .timeout_recv_response(Some(cfg.first_byte_timeout))
        .timeout_global(Some(cfg.request_timeout))
        .max_redirects(cfg.max_redirects)
        .max_redirects_will_error(true)
        .proxy(ureq::Proxy::try_from_env())
        .user_agent(concat!("pinflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let me = std::thread::current();
    let feed_wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || me.unpark());
    let mut feed = source.into_feed(feed_wake)?;
    let stats = Mutex::new(FetchStats::default());
    let workers = cfg.connections_per_host.max(1);
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
                    w.fetch(&item.url, item.seq, admitted);
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
                    if work_tx.send((item, Instant::now())).is_err() {
                        break;
                    }
                }
                Next::Pending => std::thread::park_timeout(Duration::from_millis(100)),
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

impl Worker<'_> {
    fn attempt(&self, url: &str) -> Attempt {
        if url.starts_with("https://") {
            // ureq is built without TLS here: one TLS stack (the mio loop's) is enough.
            let detail =
                "the ureq engine fetches http:// only; use fetch.engine = \"mio\" for https://";
            return Attempt::Error("tls".into(), detail.into(), false);
        }
        let mut req = self.agent.get(url);
        if !self.cfg.accept_encoding.is_empty() {
            req = req.header("Accept-Encoding", &self.cfg.accept_encoding);
        }
        for (n, v) in self.headers {
            req = req.header(n, v);
        }
        let mut resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                let retry = matches!(
                    e,
                    ureq::Error::Io(_)
                        | ureq::Error::Timeout(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::HostNotFound
                        | ureq::Error::Protocol(_)
                        | ureq::Error::BodyStalled
                );
                let class = match e {
                    ureq::Error::Timeout(_) => "timeout",
                    ureq::Error::TooManyRedirects => "redirect",
                    ureq::Error::HostNotFound => "resolve",
                    _ => "connect",
                };
                return Attempt::Error(class.into(), e.to_string(), retry);
            }
        };
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

    fn fetch(&mut self, url: &str, seq: u64, admitted: Instant) {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let started = Instant::now();
            let outcome = self.attempt(url);
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
            if retry
                && attempts < self.cfg.max_attempts
                && in_time
                && !self.stop.load(Ordering::Relaxed)
            {
                self.stats.lock().retries += 1;
                std::thread::sleep(delay);
                continue;
            }
            let detail = format!("{detail} (after {attempts} attempts)");
            self.stats.lock().fail(&class, url, &detail);
            if self.batch.is_empty() {
                self.batch_started = Some(Instant::now());
                self.batch.ticket = Some(self.chans.live.ticket());
            }
            self.batch
                .push_failure(url, detail, attempts, Instant::now());
            return;
        }
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

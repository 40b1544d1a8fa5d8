//! Live metrics: what a running pipeline exposes while it runs.
//!
//! One [`Registry`] per [`crate::Pipeline`], shared by every stage thread and read by the
//! metrics endpoint, the progress bar and library users. The hot paths touch it at most once per
//! request (the fetch thread publishes its counters once per event-loop turn) or once per batch
//! (parse, compute, write), with relaxed atomics on counters that only one thread writes, so the
//! cost is a few nanoseconds per batch. Counters only ever grow, across every cycle of a
//! continuous run, as Prometheus expects.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{FetchStats, Latency};
use crate::plan::Role;

/// A thread working on one item longer than this is reported as stalled by `/healthz`.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// The queues between stages, in data-flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueId {
    /// fetch → parse: batches of response bodies.
    Bodies = 0,
    /// parse → compute: record batches (unused, depth 0, when the parse threads compute).
    Records = 1,
    /// compute → write: record batches with statistics (and, on the short path, body batches
    /// the writer parses itself).
    Output = 2,
}

impl QueueId {
    /// All queues.
    pub const ALL: [QueueId; 3] = [QueueId::Bodies, QueueId::Records, QueueId::Output];

    /// The label value used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            QueueId::Bodies => "bodies",
            QueueId::Records => "records",
            QueueId::Output => "output",
        }
    }
}

/// Per-stage latency histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Request written → last body byte, per request.
    Fetch = 0,
    /// One body parsed into columns, per body.
    Parse = 1,
    /// Statistics of one batch.
    Compute = 2,
    /// One batch into the Parquet writer.
    Write = 3,
    /// Response complete → its row in a closed (flushed) row group.
    EndToEnd = 4,
    /// Response complete → its batch handed to the writer (the oldest body of each batch).
    Handoff = 5,
}

impl Stage {
    /// All stages.
    pub const ALL: [Stage; 6] = [
        Stage::Fetch,
        Stage::Parse,
        Stage::Compute,
        Stage::Write,
        Stage::EndToEnd,
        Stage::Handoff,
    ];

    /// The label value used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Parse => "parse",
            Stage::Compute => "compute",
            Stage::Write => "write",
            Stage::EndToEnd => "end_to_end",
            Stage::Handoff => "handoff",
        }
    }
}

/// What a stage thread is doing, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    /// Not started yet.
    Starting = 0,
    /// Working on a batch (or, for the fetch thread, running its event loop).
    Working = 1,
    /// Waiting for input from the stage before it: idle for a known reason.
    WaitingInput = 2,
    /// Waiting for room in the queue after it (back-pressure): idle for a known reason.
    BlockedOutput = 3,
    /// Ended normally.
    Finished = 4,
    /// Ended with an error or a panic.
    Failed = 5,
}

impl ThreadState {
    fn from_u8(v: u8) -> ThreadState {
        match v {
            1 => ThreadState::Working,
            2 => ThreadState::WaitingInput,
            3 => ThreadState::BlockedOutput,
            4 => ThreadState::Finished,
            5 => ThreadState::Failed,
            _ => ThreadState::Starting,
        }
    }

    /// Lower-case name for logs and `/healthz`.
    pub fn name(self) -> &'static str {
        match self {
            ThreadState::Starting => "starting",
            ThreadState::Working => "working",
            ThreadState::WaitingInput => "waiting for input",
            ThreadState::BlockedOutput => "blocked on a full queue",
            ThreadState::Finished => "finished",
            ThreadState::Failed => "failed",
        }
    }
}

/// One stage thread's state, heartbeat and busy time.
#[derive(Debug)]
pub struct ThreadHealth {
    /// `fetch`, `parse-0`, ..., `writer`.
    pub name: String,
    state: AtomicU8,
    /// Milliseconds since the registry started, at the last state change or heartbeat.
    beat_ms: AtomicU64,
    /// When the current `Working` spell began (ns since the registry started).
    working_since_ns: AtomicU64,
    busy_ns: AtomicU64,
}

/// The shared live metrics of one pipeline. See the module docs.
#[derive(Debug)]
pub struct Registry {
    started: Instant,
    /// Work items taken from the source.
    pub requests: AtomicU64,
    /// Requests delivered (2xx with a complete body).
    pub delivered: AtomicU64,
    /// Requests failed for good.
    pub failed: AtomicU64,
    /// Requests a stop ended before they were done (see [`FetchStats::cancelled`]).
    pub cancelled: AtomicU64,
    /// Attempts repeated after an error.
    pub retries: AtomicU64,
    /// Requests re-sent on a kept-alive connection the server had closed.
    pub stale_reconnects: AtomicU64,
    /// TCP connections opened.
    pub connections_opened: AtomicU64,
    /// Body bytes received.
    pub body_bytes: AtomicU64,
    /// Responses by status class, index 0 for 1xx ... 4 for 5xx.
    pub responses_by_class: [AtomicU64; 5],
    /// Failed requests by reason class.
    pub failed_by_reason: Mutex<BTreeMap<String, u64>>,
    /// Requests admitted and not yet finished.
    pub in_flight: AtomicU64,
    /// Open connections.
    pub open_connections: AtomicU64,
    /// Nanoseconds the fetch thread spent blocked on a full queue.
    pub fetch_blocked_ns: AtomicU64,
    /// Records found by the parse threads (rows and dead letters).
    pub records_parsed: AtomicU64,
    /// Records that left the compute stage.
    pub records_computed: AtomicU64,
    /// Rows user transforms dropped.
    pub records_filtered: AtomicU64,
    /// Body batches the fetcher handed straight to the writer, which parsed them itself (the
    /// short path, taken only while the pipeline is idle).
    pub short_path_batches: AtomicU64,
    /// Body batches that joined a short-path batch still waiting for the writer
    /// (its mailbox), and so reached it with that batch.
    pub short_path_joins: AtomicU64,
    /// Rows written to Parquet.
    pub records_written: AtomicU64,
    /// Records and bodies dead-lettered by the parse threads.
    pub records_dead_lettered: AtomicU64,
    /// Dead letters by reason class.
    pub dead_by_reason: Mutex<BTreeMap<String, u64>>,
    /// The counters of each `[[enrich]]` lookup, in file order.
    pub enrichers: Mutex<Vec<std::sync::Arc<EnrichStats>>>,
    /// The object-storage uploader's counters, when the output is `s3://`.
    pub uploads: Mutex<Option<std::sync::Arc<UploadStats>>>,
    /// Rows transforms turned away as dead letters (also in `records_dead_lettered`).
    pub records_rejected: AtomicU64,
    /// Those rows by reason class (also in `dead_by_reason`).
    pub rejected_by_reason: Mutex<BTreeMap<String, u64>>,
    /// Row groups closed.
    pub row_groups: AtomicU64,
    /// Parquet files finalized (renamed into place).
    pub files_finalized: AtomicU64,
    /// When a row group or file was last written successfully, in milliseconds since the Unix
    /// epoch (0: not yet). Set through [`Registry::wrote`].
    pub last_write_unix_ms: AtomicU64,
    /// Completed cycles of a continuous run (1 after a one-shot run).
    pub cycles: AtomicU64,
    /// Time windows, when on (all zero otherwise).
    pub window: WindowMetrics,
    /// The Kafka output, when on (all zero otherwise). Shared with the producer's delivery
    /// callback.
    pub kafka: std::sync::Arc<KafkaStats>,
    /// The Kafka source, when on (empty otherwise).
    pub kafka_source: KafkaSourceStats,
    /// `{since}` polling's position (`fetch.since_field`), when on.
    pub since: SincePosition,
    /// The tail source's figures (all zero for other sources).
    pub tail: TailMetrics,
    /// The HTTP receive source's figures (empty for other sources).
    pub receive: ReceiveMetrics,
    /// Work items the journal has committed: how the HTTP receive source
    /// ([`crate::ingest::listen`]) learns that a request's records are durable.
    pub committed: CommittedItems,
    queue_depth: [AtomicUsize; 3],
    queue_capacity: [AtomicUsize; 3],
    latency: [Mutex<Latency>; 6],
    threads: Vec<ThreadHealth>,
    running: AtomicBool,
    draining: AtomicBool,
}

/// `{since}` polling's position (`fetch.since_field`): the highest value of that column among
/// the rows that reached the writer. The writer raises it ([`SincePosition::advance`]); the
/// fetcher reads it at the start of each pass to fill `{since}` in its URLs, and the metrics
/// show it. It lives here, in the registry both threads already share, and like the registry
/// it spans every run of a pipeline (a resumed run raises it to what its journal saved).
#[derive(Debug)]
pub struct SincePosition {
    /// µs since the Unix epoch for a timestamp column, the value for an integer column;
    /// `i64::MIN` while there is none.
    value: std::sync::atomic::AtomicI64,
    /// Whether the column is a timestamp (shown as RFC 3339) rather than an integer.
    timestamp: AtomicBool,
}

impl Default for SincePosition {
    fn default() -> Self {
        SincePosition {
            value: std::sync::atomic::AtomicI64::new(i64::MIN),
            timestamp: AtomicBool::new(false),
        }
    }
}

impl SincePosition {
    /// Raises the position to `value` if it is higher: µs since the Unix epoch when
    /// `timestamp`, else an integer.
    pub fn advance(&self, value: i64, timestamp: bool) {
        // The kind is set first: a reader that sees the value sees its kind.
        self.timestamp.store(timestamp, Relaxed);
        self.value
            .fetch_max(value, std::sync::atomic::Ordering::Release);
    }

    /// The position, and whether it is a timestamp; `None` before any row.
    pub fn get(&self) -> Option<(i64, bool)> {
        let v = self.value.load(std::sync::atomic::Ordering::Acquire);
        (v != i64::MIN).then(|| (v, self.timestamp.load(Relaxed)))
    }

    /// The position as `{since}` text: a timestamp as RFC 3339 in UTC with microseconds
    /// (`2026-12-04T07:54:24.123456Z`), an integer in decimal; `None` before any row.
    ///
    /// ```
    /// let p = pinflow::metrics::live::SincePosition::default();
    /// assert_eq!(p.text(), None);
    /// p.advance(1_500_000, true);
    /// assert_eq!(p.text().as_deref(), Some("1970-01-01T00:00:01.500000Z"));
    /// p.advance(7, true); // lower: no change
    /// assert_eq!(p.get(), Some((1_500_000, true)));
    /// ```
    pub fn text(&self) -> Option<String> {
        self.get().map(|(v, ts)| since_text(v, ts))
    }
}

/// `value` as `{since}` text: RFC 3339 UTC with microseconds when `timestamp`, else decimal.
pub fn since_text(value: i64, timestamp: bool) -> String {
    if !timestamp {
        return value.to_string();
    }
    let mut out = Vec::with_capacity(crate::time::RFC3339_MICROS_LEN);
    crate::time::format_rfc3339_micros(value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The tail source's live figures ([`crate::ingest::tail`]), set by the ingest thread.
#[derive(Debug, Default)]
pub struct TailMetrics {
    /// Files followed now.
    pub files: AtomicU64,
    /// Bytes read from followed files.
    pub bytes_read: AtomicU64,
    /// Followed files that left the pattern by a rename (rotation).
    pub rotations: AtomicU64,
    /// Followed files found shorter than the offset read (read again from byte 0).
    pub truncations: AtomicU64,
}

/// The HTTP receive source's live figures ([`crate::ingest::listen`]), set by the ingest
/// thread.
#[derive(Debug, Default)]
pub struct ReceiveMetrics {
    /// From a request's admission to its 200, when the write-ahead log's sync made it durable.
    pub ack_from_log: Mutex<Latency>,
    /// The same, when a journal checkpoint committed it first.
    pub ack_from_checkpoint: Mutex<Latency>,
    /// TLS connections closed for a failed handshake (a plain-HTTP client, an untrusted client
    /// certificate, a handshake past `listen.header_timeout`) or a bad record.
    pub tls_failures: AtomicU64,
}

/// The time windows' live figures, set by the writer thread (which runs the window operator).
#[derive(Debug)]
pub struct WindowMetrics {
    /// Open (key, window) pairs now.
    pub open: AtomicU64,
    /// Window rows emitted (written to the output and the sinks).
    pub rows_emitted: AtomicU64,
    /// Records dead-lettered as late: every window they belong to had been written.
    pub late: AtomicU64,
    /// (key, window) pairs closed early, marked partial, because `window.max_open` was reached.
    pub closed_early: AtomicU64,
    /// The watermark, in microseconds since the Unix epoch; `i64::MIN` while there is none.
    pub watermark_us: std::sync::atomic::AtomicI64,
}

impl Default for WindowMetrics {
    fn default() -> Self {
        WindowMetrics {
            open: AtomicU64::new(0),
            rows_emitted: AtomicU64::new(0),
            late: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            watermark_us: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }
}

impl WindowMetrics {
    /// Wall-clock now minus the watermark, in seconds: how far the written windows trail real
    /// time (large when replaying old data); `None` before the first watermark.
    pub fn watermark_lag_seconds(&self) -> Option<f64> {
        let w = self.watermark_us.load(Relaxed);
        (w != i64::MIN).then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            (now.saturating_sub(w)) as f64 / 1e6
        })
    }
}

/// The work items committed by the journal's checkpoints so far (the writer adds each
/// checkpoint's items after its commit), with a generation that moves at every addition so a
/// reader polls a counter, not the set. Ranges `lo -> hi` (inclusive), merged when they touch:
/// one entry per gap, not per item.
///
/// A source that needs some items committed soon (a Kafka partition being revoked, whose
/// offsets must be committed before it moves on) asks for them ([`CommittedItems::ask`]): the
/// writer makes a checkpoint as soon as it holds every one, instead of at its next rotation.
#[derive(Debug, Default)]
pub struct CommittedItems {
    ranges: Mutex<BTreeMap<u64, u64>>,
    generation: AtomicU64,
    /// The items asked for, as inclusive ranges (empty: none).
    asked: Mutex<Vec<(u64, u64)>>,
    /// The journal's number of the last checkpoint whose items were added
    /// ([`CommittedItems::add_checkpoint`]; 0: none in this run). Set while `ranges` is locked,
    /// so a reader that finds it the same before and after looking at the items saw the
    /// items of exactly the checkpoints up to it.
    checkpoint: AtomicU64,
    /// A pending checkpoint waiting for the source to commit its position elsewhere.
    landing: Mutex<Landing>,
    landed: parking_lot::Condvar,
}

/// The hand-over of a pending checkpoint (two-phase, `Journal::set_two_phase`) from the
/// writer to the source that commits its position to the Kafka group.
#[derive(Debug, Default)]
struct Landing {
    /// The checkpoint the writer waits for.
    wanted: u64,
    /// The highest checkpoint the source answered for.
    answered: u64,
    /// Why the source could not commit it, once it gave up.
    failure: Option<String>,
}

/// Adds `lo..=hi` to `ranges`, merged with a range that ends just before or overlaps, and
/// with those it reaches.
fn merge_range(ranges: &mut BTreeMap<u64, u64>, mut lo: u64, mut hi: u64) {
    if let Some((&plo, &phi)) = ranges.range(..=lo).next_back() {
        if phi.saturating_add(1) >= lo {
            lo = plo;
            hi = hi.max(phi);
        }
    }
    while let Some((&nlo, &nhi)) = ranges.range(lo..).next() {
        if nlo > hi.saturating_add(1) {
            break;
        }
        hi = hi.max(nhi);
        ranges.remove(&nlo);
    }
    ranges.insert(lo, hi);
}

impl CommittedItems {
    /// Adds the items of a checkpoint just committed, as inclusive ranges.
    pub fn add(&self, items: impl IntoIterator<Item = (u64, u64)>) {
        let mut ranges = self.ranges.lock();
        let mut added = false;
        for (lo, hi) in items {
            added = true;
            merge_range(&mut ranges, lo, hi);
        }
        drop(ranges);
        if added {
            self.generation.fetch_add(1, Relaxed);
        }
    }

    /// Adds the items of checkpoint `number` of the journal, just committed (see
    /// [`CommittedItems::add`]), and makes it the last checkpoint added. A `pending` one
    /// (two-phase) is wanted landed ([`CommittedItems::wait_landed`]) from the instant its
    /// number shows: a reader that sees the number sees that it is wanted.
    pub fn add_checkpoint(
        &self,
        items: impl IntoIterator<Item = (u64, u64)>,
        number: u64,
        pending: bool,
    ) {
        if pending {
            let mut l = self.landing.lock();
            l.wanted = l.wanted.max(number);
        }
        // (Both under one hold of the lock: see `checkpoint`.)
        let mut ranges = self.ranges.lock();
        let mut added = false;
        for (lo, hi) in items {
            added = true;
            merge_range(&mut ranges, lo, hi);
        }
        self.checkpoint.store(number, Relaxed);
        drop(ranges);
        if added {
            self.generation.fetch_add(1, Relaxed);
        }
    }

    /// The journal's number of the last checkpoint added in this run (0: none).
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Relaxed)
    }

    /// The writer: waits until the source answers for pending checkpoint `number` (its
    /// position committed elsewhere), or says why it cannot; `source_alive` is asked between
    /// waits (a source that ended answers nothing more).
    pub fn wait_landed(&self, number: u64, source_alive: impl Fn() -> bool) -> Result<(), String> {
        let mut l = self.landing.lock();
        l.wanted = l.wanted.max(number);
        loop {
            if l.answered >= number {
                return Ok(());
            }
            if let Some(why) = &l.failure {
                return Err(why.clone());
            }
            if !source_alive() {
                return Err("the source ended before it committed the checkpoint's offsets".into());
            }
            self.landed
                .wait_for(&mut l, std::time::Duration::from_millis(50));
        }
    }

    /// The source: the pending checkpoint the writer waits for, if any.
    pub fn landing_wanted(&self) -> Option<u64> {
        let l = self.landing.lock();
        (l.wanted > l.answered && l.failure.is_none()).then_some(l.wanted)
    }

    /// The source: checkpoints up to `number` are landed (their position committed).
    pub fn landed(&self, number: u64) {
        let mut l = self.landing.lock();
        l.answered = l.answered.max(number);
        self.landed.notify_all();
    }

    /// The source: the pending checkpoint cannot be landed, and why.
    pub fn landing_failed(&self, why: String) {
        self.landing.lock().failure.get_or_insert(why);
        self.landed.notify_all();
    }

    /// Moves at every [`CommittedItems::add`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Whether item `seq` has been committed.
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges
            .lock()
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &hi)| hi >= seq)
    }

    /// Asks for a checkpoint once the writer holds every item of `items` (inclusive ranges,
    /// none committed yet), replacing what was asked before; an empty list withdraws it.
    pub fn ask(&self, items: Vec<(u64, u64)>) {
        *self.asked.lock() = items;
    }

    /// Whether a checkpoint was asked for and every item asked is among those `held` says
    /// the writer holds (`held(lo, hi)`: all of `lo..=hi`). Asked items a checkpoint committed
    /// meanwhile are not held any more: the asker asks again for those still uncommitted.
    pub fn asked_and_held(&self, held: impl Fn(u64, u64) -> bool) -> bool {
        let asked = self.asked.lock();
        !asked.is_empty() && asked.iter().all(|&(lo, hi)| held(lo, hi))
    }

    /// Whether every item of `lo..=hi` has been committed.
    pub fn covers(&self, lo: u64, hi: u64) -> bool {
        // Ranges are merged when they touch, so one range holds them all or none does.
        self.ranges
            .lock()
            .range(..=lo)
            .next_back()
            .is_some_and(|(_, &end)| end >= hi)
    }
}

impl Registry {
    /// A registry for the given stage threads.
    pub fn new(roles: &[Role]) -> Registry {
        Registry {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            stale_reconnects: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            responses_by_class: Default::default(),
            failed_by_reason: Mutex::new(BTreeMap::new()),
            in_flight: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            fetch_blocked_ns: AtomicU64::new(0),
            records_parsed: AtomicU64::new(0),
            records_computed: AtomicU64::new(0),
            records_filtered: AtomicU64::new(0),
            short_path_batches: AtomicU64::new(0),
            short_path_joins: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            records_dead_lettered: AtomicU64::new(0),
            dead_by_reason: Mutex::new(BTreeMap::new()),
            enrichers: Mutex::new(Vec::new()),
            uploads: Mutex::new(None),
            records_rejected: AtomicU64::new(0),
            rejected_by_reason: Mutex::new(BTreeMap::new()),
            row_groups: AtomicU64::new(0),
            files_finalized: AtomicU64::new(0),
            last_write_unix_ms: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            window: WindowMetrics::default(),
            kafka: Default::default(),
            kafka_source: KafkaSourceStats::default(),
            since: SincePosition::default(),
            tail: TailMetrics::default(),
            receive: ReceiveMetrics::default(),
            committed: CommittedItems::default(),
            queue_depth: Default::default(),
            queue_capacity: Default::default(),
            latency: Default::default(),
            threads: roles
                .iter()
                .map(|r| ThreadHealth {
                    name: r.to_string(),
                    state: AtomicU8::new(ThreadState::Starting as u8),
                    beat_ms: AtomicU64::new(0),
                    working_since_ns: AtomicU64::new(0),
                    busy_ns: AtomicU64::new(0),
                })
                .collect(),
            running: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// Time since the registry was created.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Index of a role's thread in [`Registry::threads`].
    pub fn thread_index(&self, role: Role) -> Option<usize> {
        let name = role.to_string();
        self.threads.iter().position(|t| t.name == name)
    }

    /// The stage threads.
    pub fn threads(&self) -> &[ThreadHealth] {
        &self.threads
    }

    /// Sets a thread's state (and heartbeat); time spent `Working` adds to its busy time.
    pub fn set_state(&self, thread: usize, state: ThreadState) {
        let Some(t) = self.threads.get(thread) else {
            return;
        };
        let now = self.now_ns();
        let old = ThreadState::from_u8(t.state.swap(state as u8, Relaxed));
        if old == ThreadState::Working && state != ThreadState::Working {
            let since = t.working_since_ns.load(Relaxed);
            t.busy_ns.fetch_add(now.saturating_sub(since), Relaxed);
        }
        if state == ThreadState::Working && old != ThreadState::Working {
            t.working_since_ns.store(now, Relaxed);
        }
        t.beat_ms.store(now / 1_000_000, Relaxed);
    }

    /// How many of `threads` are waiting for input: idle workers, to which handing work now
    /// costs nothing. Reads one atomic per thread.
    pub fn waiting(&self, threads: &[usize]) -> usize {
        threads
            .iter()
            .filter(|&&i| {
                self.threads
                    .get(i)
                    .is_some_and(|t| t.state.load(Relaxed) == ThreadState::WaitingInput as u8)
            })
            .count()
    }

    /// Marks progress without a state change (the fetch thread, once per loop turn).
    pub fn heartbeat(&self, thread: usize) {
        if let Some(t) = self.threads.get(thread) {
            t.beat_ms.store(self.now_ns() / 1_000_000, Relaxed);
        }
    }

    /// A thread's state, seconds since its last heartbeat, and busy seconds so far.
    pub fn thread_status(&self, thread: usize) -> (ThreadState, f64, f64) {
        let t = &self.threads[thread];
        let now = self.now_ns();
        let state = ThreadState::from_u8(t.state.load(Relaxed));
        let mut busy = t.busy_ns.load(Relaxed);
        if state == ThreadState::Working {
            busy += now.saturating_sub(t.working_since_ns.load(Relaxed));
        }
        let idle_s = (now / 1_000_000).saturating_sub(t.beat_ms.load(Relaxed)) as f64 / 1e3;
        (state, idle_s, busy as f64 / 1e9)
    }

    /// Declares a queue's capacity.
    pub fn set_queue_capacity(&self, q: QueueId, capacity: usize) {
        self.queue_capacity[q as usize].store(capacity, Relaxed);
    }

    /// Records a queue's depth as last seen by a producer or consumer.
    #[inline]
    pub fn set_queue_depth(&self, q: QueueId, depth: usize) {
        self.queue_depth[q as usize].store(depth, Relaxed);
    }

    /// A queue's last seen depth and its capacity.
    pub fn queue(&self, q: QueueId) -> (usize, usize) {
        (
            self.queue_depth[q as usize].load(Relaxed),
            self.queue_capacity[q as usize].load(Relaxed),
        )
    }

    /// The latency histogram of a stage.
    pub fn latency(&self, stage: Stage) -> parking_lot::MutexGuard<'_, Latency> {
        self.latency[stage as usize].lock()
    }

    /// Copies the fetch thread's counters (it is their only writer).
    pub fn publish_fetch(&self, s: &FetchStats, in_flight: usize, open: usize) {
        self.requests.store(s.requests, Relaxed);
        self.delivered.store(s.delivered, Relaxed);
        self.cancelled.store(s.cancelled, Relaxed);
        self.retries.store(s.retries, Relaxed);
        self.stale_reconnects.store(s.stale_reconnects, Relaxed);
        self.connections_opened.store(s.connections, Relaxed);
        self.body_bytes.store(s.body_bytes, Relaxed);
        self.fetch_blocked_ns
            .store(s.blocked.as_nanos() as u64, Relaxed);
        self.in_flight.store(in_flight as u64, Relaxed);
        self.open_connections.store(open as u64, Relaxed);
        let mut classes = [0u64; 5];
        classes[1] = s.delivered;
        for (&status, &n) in &s.statuses {
            if (100..600).contains(&status) {
                classes[(status / 100 - 1) as usize] += n;
            }
        }
        for (c, n) in self.responses_by_class.iter().zip(classes) {
            c.store(n, Relaxed);
        }
        // Failures change rarely: copy the map only when the count moved.
        if self.failed.swap(s.failed, Relaxed) != s.failed {
            *self.failed_by_reason.lock() = s.failed_by_reason.clone();
        }
    }

    /// Counts `row_groups` closed and `files` finalized, and stamps the time of the last
    /// successful write (only when something was written).
    pub fn wrote(&self, row_groups: u64, files: u64) {
        self.row_groups.fetch_add(row_groups, Relaxed);
        self.files_finalized.fetch_add(files, Relaxed);
        if row_groups + files > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.last_write_unix_ms
                .store(now.as_millis() as u64, Relaxed);
        }
    }

    /// Adds one parse batch's counts.
    pub fn add_parsed(&self, records: u64, dead: u64, dead_reasons: &[(String, u64)]) {
        self.records_parsed.fetch_add(records, Relaxed);
        if dead > 0 {
            self.records_dead_lettered.fetch_add(dead, Relaxed);
            let mut m = self.dead_by_reason.lock();
            for (k, v) in dead_reasons {
                *m.entry(k.clone()).or_default() += v;
            }
        }
    }

    /// Adds rows a transform turned away: dead letters, one per reason class given.
    pub fn add_rejected<'a>(&self, classes: impl IntoIterator<Item = &'a str>) {
        let mut dead = self.dead_by_reason.lock();
        let mut rejected = self.rejected_by_reason.lock();
        let mut n = 0;
        for class in classes {
            n += 1;
            *dead.entry(class.to_string()).or_default() += 1;
            *rejected.entry(class.to_string()).or_default() += 1;
        }
        self.records_rejected.fetch_add(n, Relaxed);
        self.records_dead_lettered.fetch_add(n, Relaxed);
    }

    /// Whether every stage thread has started and the run is not draining.
    pub fn ready(&self) -> bool {
        self.running.load(Relaxed) && !self.draining.load(Relaxed)
    }

    /// Why the object-storage uploader is stuck, if it is (see [`UploadStats::stalled`]).
    pub fn upload_stalled(&self) -> Option<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.uploads.lock().as_ref()?.stalled(now)
    }

    /// Marks the run as started (all threads spawned) or ended.
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Relaxed);
    }

    /// Marks the run as draining (stop requested or sources exhausted).
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Relaxed);
    }

    /// Whether the run is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Health: `Ok(lines)` when every thread is alive and either making progress or idle for a
    /// known reason; `Err(lines)` naming the threads that are not.
    pub fn health(&self) -> std::result::Result<Vec<String>, Vec<String>> {
        let mut lines = Vec::new();
        let mut bad = false;
        for (i, t) in self.threads.iter().enumerate() {
            let (state, idle_s, busy_s) = self.thread_status(i);
            let problem = match state {
                ThreadState::Failed => Some("failed"),
                ThreadState::Working if idle_s > STALL_AFTER.as_secs_f64() => Some("no progress"),
                _ => None,
            };
            bad |= problem.is_some();
            lines.push(format!(
                "{} {}: {} ({:.1} s since last progress, {:.1} s busy){}",
                if problem.is_some() { "FAIL" } else { "ok  " },
                t.name,
                state.name(),
                idle_s,
                busy_s,
                problem.map(|p| format!(" — {p}")).unwrap_or_default()
            ));
        }
        if bad {
            Err(lines)
        } else {
            Ok(lines)
        }
    }
}

/// Sets a thread to [`ThreadState::Failed`] if dropped while its stage is still running (an
/// error return or a panic), and to [`ThreadState::Finished`] when [`StateGuard::finish`] is
/// called.
pub struct StateGuard<'a> {
    registry: &'a Registry,
    thread: usize,
    done: bool,
}

impl<'a> StateGuard<'a> {
    /// Guards `thread` of `registry`.
    pub fn new(registry: &'a Registry, thread: usize) -> StateGuard<'a> {
        StateGuard {
            registry,
            thread,
            done: false,
        }
    }

    /// Marks a normal end.
    pub fn finish(mut self) {
        self.done = true;
        self.registry.set_state(self.thread, ThreadState::Finished);
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.registry.set_state(self.thread, ThreadState::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_items_merge_and_answer_membership() {
        let c = CommittedItems::default();
        assert!(!c.contains(0));
        let g = c.generation();
        c.add([(0, 4), (10, 12)]);
        assert_ne!(c.generation(), g);
        c.add([(5, 9)]);
        assert_eq!(c.ranges.lock().len(), 1, "touching ranges merge");
        assert!((0..=12).all(|i| c.contains(i)));
        assert!(!c.contains(13));
        c.add([(20, 20)]);
        assert!(c.contains(20) && !c.contains(19) && !c.contains(21));
    }

    #[test]
    fn a_pending_checkpoint_waits_for_the_source_to_land_it_or_say_why_not() {
        let c = std::sync::Arc::new(CommittedItems::default());
        c.add_checkpoint([(0, 9)], 2, false);
        assert_eq!(
            c.landing_wanted(),
            None,
            "a checkpoint not pending is not waited for"
        );
        c.add_checkpoint([(10, 19)], 3, true);
        assert_eq!((c.checkpoint(), c.contains(19)), (3, true));
        assert_eq!(c.landing_wanted(), Some(3));
        let source = {
            let c = std::sync::Arc::clone(&c);
            std::thread::spawn(move || {
                while c.landing_wanted() != Some(3) {
                    std::thread::yield_now();
                }
                c.landed(3);
            })
        };
        assert_eq!(c.wait_landed(3, || true), Ok(()));
        source.join().unwrap();
        assert_eq!(c.landing_wanted(), None);
        // A source that ended answers nothing more; one that gives up says why.
        let e = c.wait_landed(4, || false).unwrap_err();
        assert!(e.contains("source ended"), "{e}");
        c.landing_failed("the group refused".into());
        assert_eq!(c.wait_landed(4, || true), Err("the group refused".into()));
        assert_eq!(c.landing_wanted(), None);
    }

    #[test]
    fn a_checkpoint_is_asked_for_until_withdrawn_and_due_once_every_item_asked_is_held() {
        let c = CommittedItems::default();
        let held = [(3, 9), (20, 20)];
        let holds = |lo, hi| held.iter().any(|&(a, b)| a <= lo && hi <= b);
        assert!(!c.asked_and_held(holds), "nothing asked");
        c.ask(vec![(4, 6), (20, 20)]);
        assert!(c.asked_and_held(holds));
        c.ask(vec![(4, 6), (21, 21)]);
        assert!(!c.asked_and_held(holds), "item 21 not held yet");
        c.ask(Vec::new());
        assert!(!c.asked_and_held(holds), "withdrawn");
    }

    #[test]
    fn busy_time_accumulates_only_while_working() {
        let r = Registry::new(&[Role::Fetch, Role::Writer]);
        let w = r.thread_index(Role::Writer).unwrap();
        r.set_state(w, ThreadState::Working);
        std::thread::sleep(Duration::from_millis(20));
        r.set_state(w, ThreadState::WaitingInput);
        let (_, _, busy) = r.thread_status(w);
        std::thread::sleep(Duration::from_millis(20));
        let (state, _, busy_later) = r.thread_status(w);
        assert_eq!(state, ThreadState::WaitingInput);
        assert!(busy >= 0.02, "{busy}");
        assert_eq!(busy, busy_later, "no busy time accrues while waiting");
    }

    #[test]
    fn a_failed_thread_makes_health_fail_and_names_it() {
        let r = Registry::new(&[Role::Fetch, Role::Parse(0)]);
        assert!(r.health().is_ok());
        {
            let _guard = StateGuard::new(&r, 1); // dropped without finish: failed
        }
        let lines = r.health().unwrap_err();
        assert!(
            lines[1].contains("parse-0") && lines[1].contains("failed"),
            "{lines:?}"
        );
        StateGuard::new(&r, 0).finish();
        assert_eq!(r.thread_status(0).0, ThreadState::Finished);
    }

    #[test]
    fn fetch_counters_publish_by_status_class() {
        let r = Registry::new(&[Role::Fetch]);
        let mut s = FetchStats {
            requests: 5,
            delivered: 3,
            ..Default::default()
        };
        s.statuses.insert(404, 1);
        s.statuses.insert(503, 1);
        s.fail("http 404", "u", "x");
        s.fail("http 503", "v", "y");
        r.publish_fetch(&s, 0, 2);
        let class = |i: usize| r.responses_by_class[i].load(Relaxed);
        assert_eq!((class(1), class(3), class(4)), (3, 1, 1));
        assert_eq!(r.failed_by_reason.lock().get("http 503"), Some(&1));
        assert_eq!(r.open_connections.load(Relaxed), 2);
    }

    #[test]
    fn an_uploader_is_stuck_only_when_files_wait_and_nothing_succeeds_for_long() {
        let u = UploadStats::default();
        u.last_progress_unix.store(1_000, Relaxed);
        let late = 1_000 + UPLOAD_STALL;
        assert_eq!(u.stalled(late), None, "nothing staged");
        u.staged_files.store(3, Relaxed);
        assert_eq!(u.stalled(late), None, "nothing in flight");
        u.in_flight.store(1, Relaxed);
        assert_eq!(u.stalled(late - 1), None, "not quiet long enough");
        let why = u.stalled(late).unwrap();
        assert!(why.contains("3 files staged"), "{why}");
        // `output.s3.stall_after` shortens (or lengthens) the wait.
        u.stall_after_secs.store(5, Relaxed);
        assert_eq!(u.stalled(1_004), None);
        assert!(u.stalled(1_005).is_some());
    }
}

/// How long the uploader may go without a request succeeding while files wait before
/// `/readyz` calls it stuck, by default (`output.s3.stall_after`): longer than one request
/// may take (600 s) plus its retries.
pub const UPLOAD_STALL: u64 = 900;

/// The object-storage uploader's gauges and counters (`--out s3://`), shared with its threads.
#[derive(Debug, Default)]
pub struct UploadStats {
    /// Bytes of finished files waiting in the staging directory (or being uploaded).
    pub staged_bytes: AtomicU64,
    /// Those files.
    pub staged_files: AtomicU64,
    /// When the oldest of them was staged, in seconds since the Unix epoch (0: none).
    pub oldest_staged_unix: AtomicU64,
    /// Files being uploaded at once (up to `output.s3.upload_concurrency`).
    pub in_flight: AtomicU64,
    /// When a request last succeeded (or the current file was begun), in seconds since the
    /// Unix epoch.
    pub last_progress_unix: AtomicU64,
    /// Requests retried (parts and the rest) after a transient failure.
    pub retries: AtomicU64,
    /// Bytes of files uploaded.
    pub bytes_uploaded: AtomicU64,
    /// Files uploaded.
    pub files_uploaded: AtomicU64,
    /// Seconds without a successful request, while files wait, after which the uploader is
    /// stuck (`output.s3.stall_after`); 0: [`UPLOAD_STALL`].
    pub stall_after_secs: AtomicU64,
}

impl UploadStats {
    /// Why the uploader is stuck at `now` (seconds since the Unix epoch): files wait, one is
    /// being uploaded, and no request has succeeded for `stall_after_secs` (by default
    /// [`UPLOAD_STALL`]) seconds. `None` while it moves (or has nothing to do).
    pub fn stalled(&self, now: u64) -> Option<String> {
        let files = self.staged_files.load(Relaxed);
        let quiet = now.saturating_sub(self.last_progress_unix.load(Relaxed));
        let limit = match self.stall_after_secs.load(Relaxed) {
            0 => UPLOAD_STALL,
            s => s,
        };
        (files > 0 && self.in_flight.load(Relaxed) > 0 && quiet >= limit).then(|| {
            format!("uploader stuck: {files} files staged, no request has succeeded for {quiet} s")
        })
    }
}

/// The counters of one enricher (`[[enrich]]`): hits, misses and the rest count distinct keys
/// per batch; errors count failed lookups (and rows with no key) by reason class.
#[derive(Debug)]
pub struct EnrichStats {
    /// The enricher's name (the `enricher` label).
    pub name: String,
    /// Keys answered from the cache (or the table).
    pub hits: AtomicU64,
    /// Keys looked up over HTTP.
    pub misses: AtomicU64,
    /// Lookups that joined one already in flight for the same key (no HTTP call of their own).
    pub coalesced: AtomicU64,
    /// Keys answered "no value" from the cache (a cached 404 or empty answer), or not in the
    /// table.
    pub negative_hits: AtomicU64,
    /// Stale answers served: past their ttl while fetched again, or when fetching failed.
    pub stale_served: AtomicU64,
    /// Attempts retried.
    pub retries: AtomicU64,
    /// Failed lookups by reason class.
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Lookup latency, first try to answer.
    pub lookup_latency: Mutex<Latency>,
}

impl EnrichStats {
    /// Zeroed counters for the enricher `name`.
    pub fn new(name: &str) -> EnrichStats {
        EnrichStats {
            name: name.to_string(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            negative_hits: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            lookup_latency: Mutex::new(Latency::default()),
        }
    }

    /// Counts one error of class `class`.
    pub fn error(&self, class: &'static str) {
        *self.errors.lock().entry(class).or_default() += 1;
    }
}

/// The Kafka source's figures (`--kafka-brokers`): rebalances, and per partition the
/// messages consumed, written and dead-lettered and, for the partitions owned now, the
/// consumer lag.
#[derive(Debug, Default)]
pub struct KafkaSourceStats {
    /// Set once a Kafka source starts: only then are these rendered.
    pub active: AtomicBool,
    /// Partitions assigned to this member, counted one by one over the run.
    pub assigned: AtomicU64,
    /// Partitions revoked from this member, counted one by one over the run.
    pub revoked: AtomicU64,
    /// Per topic and partition: every partition this member has owned during the run.
    pub partitions: Mutex<BTreeMap<(String, i32), KafkaPartitionStats>>,
}

/// One partition's figures in [`KafkaSourceStats`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KafkaPartitionStats {
    /// Whether this member owns the partition now.
    pub owned: bool,
    /// Messages read from it by this member (those an earlier run wrote included).
    pub consumed: u64,
    /// Messages the writer took whose records it wrote (or that held none), counted once a
    /// checkpoint commits them (with a journal) or as it takes them.
    pub written: u64,
    /// Messages that gave no row, only dead letters (not JSON, a tombstone, every record
    /// rejected), counted as [`written`](Self::written) is.
    pub dead_lettered: u64,
    /// Offsets the broker deleted before this member read them (retention: the partition's
    /// log had moved past them when they were to be fetched); their messages are lost.
    pub deleted_unread: u64,
    /// Offsets `auto.offset.reset=latest` skipped when this member's position was gone
    /// (deleted): messages the broker still had, not read.
    pub skipped_by_reset: u64,
    /// Messages in the partition past the next one to read, as librdkafka's last statistics
    /// said (`None`: not known yet, or not owned).
    pub lag: Option<i64>,
}

/// The Kafka output's counters (`--out kafka://...`).
#[derive(Debug, Default)]
pub struct KafkaStats {
    /// Set once a Kafka output starts: only then are these rendered.
    pub active: AtomicBool,
    /// Messages handed to librdkafka and not yet settled by a delivery report.
    pub queue_depth: AtomicU64,
    /// Messages the broker acknowledged.
    pub delivered: AtomicU64,
    /// Messages that failed for good (dead-lettered with the broker's reason).
    pub delivery_failed: AtomicU64,
    /// Times the writer waited because librdkafka's queue was full (back-pressure).
    pub queue_full_waits: AtomicU64,
}

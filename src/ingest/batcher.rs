//! Bodies into batches for the parse threads: what every source that reads bytes itself
//! (files, tail) does the same way, so that each of them keeps only its reading.
//!
//! A [`Batcher`] holds the batch being filled and the source's ledger. Each body or failure
//! it is handed is counted ([`IngestReport::stats`]) and put in the batch; the batch ships when
//! it reaches `fetch.batch_max_items` or `fetch.batch_max_bytes` ([`Batcher::ship_if_full`]),
//! or when the source has nothing more to read for now ([`Batcher::ship`]); shipping takes an
//! emptied batch back from `recycled` (so steady state allocates nothing per body) and marks
//! the thread blocked while the parse queue is full.

use std::time::{Duration, Instant};

use crate::batch::BodyBatch;
use crate::config::FetchConfig;
use crate::error::Result;
use crate::handoff::{downstream_gone, IngestChannels};
use crate::ingest::IngestReport;
use crate::metrics::live::{QueueId, ThreadState};

/// How often the ledger is published to the live metrics while a source reads without pause.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// The batch being filled, the ledger, and the channels they go out by (see the module
/// documentation).
pub(crate) struct Batcher {
    /// The ingest thread's channels (the source reads `skip`, `source_order`, `registry`).
    pub chans: IngestChannels,
    /// The batch being filled.
    pub batch: BodyBatch,
    /// The source's ledger, returned by its `run`.
    pub report: IngestReport,
    /// The partition each new batch gets in source order (time windows): the input being
    /// read. `None`: left as it is.
    pub partition: Option<u32>,
    max_items: usize,
    max_bytes: usize,
    last_publish: Instant,
}

impl Batcher {
    /// An empty batcher sending by `chans`, its batches bounded as `cfg` says.
    pub fn new(chans: IngestChannels, cfg: &FetchConfig) -> Batcher {
        Batcher {
            chans,
            batch: BodyBatch::default(),
            report: IngestReport::default(),
            partition: None,
            max_items: cfg.batch_max_items,
            max_bytes: cfg.batch_max_bytes,
            last_publish: Instant::now(),
        }
    }

    /// Readies the batch for an item: a new batch takes a ticket (counted alive) and the
    /// current partition.
    pub fn start(&mut self) {
        if self.batch.is_empty() && self.batch.ticket.is_none() {
            self.batch.ticket = Some(self.chans.live.ticket());
        }
        if let Some(p) = self.partition {
            self.batch.partition = p;
        }
    }

    /// Hands over one body, work item `seq`, read from `url` (a name for lineage and
    /// messages), and counts it delivered.
    pub fn body(&mut self, url: &str, body: &[u8], seq: u64) {
        self.start();
        let stats = &mut self.report.stats;
        stats.requests += 1;
        stats.delivered += 1;
        stats.body_bytes += body.len() as u64;
        self.batch.push_body(url, body, 1, Instant::now());
        self.batch.set_seq(seq);
    }

    /// Hands over a failed work item (`class` and `detail`: why) in place of its body.
    pub fn fail(&mut self, url: &str, class: &str, detail: String) {
        self.start();
        self.report.stats.requests += 1;
        self.report.stats.fail(class, url, &detail);
        self.batch.push_failure(url, detail, 1, Instant::now());
    }

    /// Ships the batch if it is full, and publishes the ledger now and then.
    pub fn ship_if_full(&mut self) -> Result<()> {
        if self.batch.len() >= self.max_items || self.batch.arena.len() >= self.max_bytes {
            self.ship()?;
        }
        if self.last_publish.elapsed() >= PUBLISH_EVERY {
            self.publish();
        }
        Ok(())
    }

    /// Ships the batch unless it is empty.
    pub fn ship(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.ship_now()
    }

    /// Ships the batch, even an empty one (an end-of-input mark in source order). Fails only
    /// when the later stages are gone.
    pub fn ship_now(&mut self) -> Result<()> {
        let mut next = self.chans.recycled.try_recv().unwrap_or_default();
        next.shrink_arena(2 * self.max_bytes);
        let batch = std::mem::replace(&mut self.batch, next);
        let (registry, thread) = (&self.chans.registry, self.chans.thread);
        registry.set_state(thread, ThreadState::BlockedOutput);
        let started = Instant::now();
        self.chans.out.send(batch).map_err(|_| downstream_gone())?;
        self.report.stats.blocked += started.elapsed();
        registry.set_state(thread, ThreadState::Working);
        registry.set_queue_depth(QueueId::Bodies, self.chans.out.len());
        Ok(())
    }

    /// Publishes the ledger to the live metrics, with this thread's heartbeat.
    pub fn publish(&mut self) {
        self.last_publish = Instant::now();
        let r = &self.chans.registry;
        r.publish_fetch(&self.report.stats, 0, 0);
        r.heartbeat(self.chans.thread);
    }

    /// Sets this thread's state in the live metrics.
    pub fn set_state(&self, state: ThreadState) {
        self.chans.registry.set_state(self.chans.thread, state);
    }
}

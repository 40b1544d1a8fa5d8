//! The batch being filled with finished bodies and failures, and when and how it ships.
//!
//! A batch ships when it is full (`batch_max_items` or `batch_max_bytes`), when it is
//! `batch_max_delay` old, or at once when a parse thread waits for input: it waits to fill only
//! while the parse threads are busy, so an idle pipeline adds no batching delay and a busy one
//! gets full batches (fewer, cheaper hand-offs). Shipping takes the short path to the writer
//! when the pipeline is idle ([`IngestChannels::try_short_path`]), and otherwise blocks on the
//! parse queue while it is full: that is the back-pressure of the [module docs](super).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, TrySendError};

use super::event_loop::Fetcher;
use super::order::HeldBody;
use super::schedule::Request;
use crate::batch::{BodyBatch, ContentEncoding, LiveBatches};
use crate::config::FetchConfig;
use crate::error::Result;
use crate::handoff::{downstream_gone, IngestChannels};
use crate::metrics::live::{QueueId, ThreadState};
use crate::time::after;

pub(super) struct Batcher {
    batch: BodyBatch,
    /// When the first item went into the current batch.
    started: Option<Instant>,
    /// The parse threads' indices in the registry: when one waits for input, a batch ships.
    parse_threads: Vec<usize>,
}

impl Batcher {
    pub(super) fn new(parse_threads: Vec<usize>) -> Batcher {
        Batcher {
            batch: BodyBatch::default(),
            started: None,
            parse_threads,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Notes the start of a new batch when this item is its first.
    fn open(&mut self, now: Instant, live: &Arc<LiveBatches>) {
        if self.batch.is_empty() {
            self.started = Some(now);
            if self.batch.ticket.is_none() {
                self.batch.ticket = Some(live.ticket());
            }
        }
    }

    /// Adds the body delivered for `req`; `cursor_page` (chain and page number) when a cursor
    /// reply is awaited for it (cursor pagination).
    pub(super) fn push_body(
        &mut self,
        req: &Request,
        body: &[u8],
        encoding: ContentEncoding,
        cursor_page: Option<(u64, u32)>,
        now: Instant,
        live: &Arc<LiveBatches>,
    ) {
        self.open(now, live);
        let attempts = req.failures + 1;
        self.batch
            .push_encoded_body(&req.url, body, encoding, attempts, now);
        self.batch.set_seq(req.seq);
        if let Some((chain, page)) = cursor_page {
            self.batch.expect_cursor_in(chain, page);
        }
    }

    /// Adds a body held for source order ([`InOrder`](super::order::InOrder)), as
    /// [`Batcher::push_body`] would have when it was delivered.
    pub(super) fn push_held(&mut self, held: &HeldBody, live: &Arc<LiveBatches>) {
        self.open(Instant::now(), live);
        self.batch
            .push_encoded_body(&held.url, &held.body, held.encoding, held.attempts, held.at);
        self.batch.set_seq(held.seq);
        if let Some((chain, page)) = held.cursor_page {
            self.batch.expect_cursor_in(chain, page);
        }
    }

    /// Adds a work item's final failure.
    pub(super) fn push_failure(
        &mut self,
        url: &str,
        detail: &str,
        attempts: u32,
        now: Instant,
        live: &Arc<LiveBatches>,
    ) {
        self.open(now, live);
        self.batch
            .push_failure(url, detail.to_string(), attempts, now);
    }

    /// When the current batch is due by age.
    pub(super) fn deadline(&self, cfg: &FetchConfig) -> Option<Instant> {
        self.started.map(|s| after(s, cfg.batch_max_delay))
    }

    /// Whether a parse thread would take a batch shipped now at once: more of them wait for
    /// input than batches wait in the queue.
    fn parse_thread_free(&self, chans: &IngestChannels) -> bool {
        chans.registry.waiting(&self.parse_threads) > chans.out.len()
    }

    pub(super) fn full(&self, cfg: &FetchConfig) -> bool {
        self.batch.len() >= cfg.batch_max_items || self.batch.arena.len() >= cfg.batch_max_bytes
    }

    fn due(&self, now: Instant, cfg: &FetchConfig) -> bool {
        !self.batch.is_empty()
            && (self.full(cfg)
                || self
                    .started
                    .is_some_and(|s| now.duration_since(s) >= cfg.batch_max_delay))
    }

    /// Sends the current batch downstream, blocking while the queue is full (back-pressure).
    /// Returns how long it blocked, when it did.
    fn ship(&mut self, chans: &IngestChannels, cfg: &FetchConfig) -> Result<Option<Duration>> {
        if self.batch.is_empty() {
            return Ok(None);
        }
        // The writer has not yet taken the batch the short path left it: join that one.
        if chans.try_join(&mut self.batch, cfg.batch_max_bytes, cfg.batch_max_items) {
            self.started = None;
            chans.parse_idle.clear();
            return Ok(None);
        }
        let mut next = chans.recycled.try_recv().unwrap_or_default();
        // A batch closes at the first body past `batch_max_bytes`, so a normal arena needs at
        // most that plus one body; anything far above came from an outsized body.
        next.shrink_arena(2 * cfg.batch_max_bytes);
        let mut batch = std::mem::replace(&mut self.batch, next);
        self.started = None;
        chans.parse_idle.clear();
        if batch.ticket.is_none() {
            batch.ticket = Some(chans.live.ticket());
        }
        let batch = match chans.try_short_path(batch) {
            Ok(()) => return Ok(None),
            Err(batch) => batch,
        };
        let blocked_at = Instant::now();
        let mut pending = match chans.out.try_send(batch) {
            Ok(()) => {
                let depth = chans.out.len();
                chans.registry.set_queue_depth(QueueId::Bodies, depth);
                return Ok(None);
            }
            Err(TrySendError::Full(b)) => b,
            Err(TrySendError::Disconnected(_)) => return Err(downstream_gone()),
        };
        let (registry, thread) = (&chans.registry, chans.thread);
        registry.set_queue_depth(QueueId::Bodies, chans.out.capacity().unwrap_or(0));
        registry.set_state(thread, ThreadState::BlockedOutput);
        loop {
            match chans.out.send_timeout(pending, Duration::from_millis(100)) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(b)) => pending = b,
                Err(SendTimeoutError::Disconnected(_)) => return Err(downstream_gone()),
            }
        }
        registry.set_state(thread, ThreadState::Working);
        Ok(Some(blocked_at.elapsed()))
    }
}

impl Fetcher {
    /// Sends the current batch downstream (see [`Batcher::ship`]).
    pub(super) fn ship(&mut self) -> Result<()> {
        if let Some(blocked) = self.batcher.ship(&self.chans, &self.cfg)? {
            // Time spent blocked is not the servers' fault: move request deadlines accordingly.
            self.report.stats.blocked += blocked;
            self.pool.shift_deadlines(blocked);
        }
        Ok(())
    }

    /// Ships the batch if it is full (called after each socket event).
    pub(super) fn ship_if_full(&mut self) -> Result<()> {
        if self.batcher.full(&self.cfg) {
            self.ship()?;
        }
        Ok(())
    }

    /// At the end of a loop turn: ships the batch when it is due, or when the pipeline is idle
    /// (no events this turn, or a parse thread waiting for input).
    pub(super) fn ship_or_hold(&mut self, now: Instant, no_events: bool) -> Result<()> {
        // A batch waits to fill only while the parse threads are busy: when one of them is
        // waiting for input it goes now, so an idle pipeline adds no batching delay, and a
        // busy one still gets full batches (fewer, cheaper hand-offs).
        let idle = no_events || self.batcher.parse_thread_free(&self.chans);
        if self.batcher.due(now, &self.cfg) || (idle && !self.batcher.is_empty()) {
            self.ship()?;
        } else if !self.batcher.is_empty() {
            // Held back while the parse threads are busy: have the first to go idle wake
            // this loop, so the batch leaves then, not at the next event or timer.
            self.chans.parse_idle.want();
            if self.batcher.parse_thread_free(&self.chans) {
                self.ship()?;
            }
        }
        Ok(())
    }
}

//! The fetch stage: one thread, one mio event loop, many keep-alive HTTP/1.1 connections.
//!
//! The loop owns every socket and timer. Each turn it
//! 1. admits work items from the source while fewer than `max_in_flight` are unfinished,
//! 2. hands queued requests to idle connections of their host, opening new connections up to
//!    `connections_per_host`,
//! 3. waits for socket readiness (or a timer, or the resolver / source feeder waking it),
//! 4. moves bytes: writes requests, decodes responses with [`http::ResponseDecoder`],
//! 5. appends finished bodies to the current [`BodyBatch`] and ships the batch downstream when
//!    it is full or old enough.
//!
//! It never parses JSON and never computes. When the downstream queue is full it blocks on the
//! send, so it stops reading sockets and issuing requests: TCP flow control carries the
//! back-pressure to the servers, and memory stays bounded by the queue and batch limits.
//!
//! Every admitted work item leaves the loop exactly once, either as a body or as a failure with
//! its reason, inside a batch. A request is retried only when no response could have been
//! delivered (connection refused, reset or closed before a complete response, timeout), so a
//! retry can never produce a second copy of its records.

//!
//! The shared plumbing ([`FetchChannels`], [`FetchReport`]) is always built: the file reader
//! and the push source take the fetcher's seat with it. The HTTP fetchers need the `http`
//! feature (on by default).

#[cfg(feature = "http")]
pub mod blocking;
#[cfg(feature = "http")]
mod event_loop;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
mod resolve;
#[cfg(feature = "http")]
mod transport;

use std::sync::Arc;

use std::time::Duration;

use crossbeam_channel::{Receiver, SendError, SendTimeoutError, Sender, TrySendError};

use crate::batch::{BodyBatch, CursorReply, LiveBatches, Mailbox, ToWriter, Upstream};
use crate::error::Error;
use crate::metrics::live::Registry;
use crate::metrics::FetchStats;

#[cfg(feature = "http")]
pub(crate) use event_loop::backoff;
#[cfg(feature = "http")]
pub use event_loop::{preflight, run};

/// What the fetch thread hands back when it ends.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Counters of the request side of the ledger.
    pub stats: FetchStats,
    /// A read error that cut the source short.
    pub source_error: Option<String>,
    /// Whether the stop flag ended admission early.
    pub interrupted: bool,
}

/// The channels the fetch stage talks through.
pub struct FetchChannels {
    /// Full batches go here (to the parse threads).
    pub out: ToParse,
    /// Emptied batches come back here for reuse.
    pub recycled: Receiver<BodyBatch>,
    /// Counts batches alive in the pipeline.
    pub live: Arc<LiveBatches>,
    /// Live metrics: counters, the fetch latency histogram, this thread's health.
    pub registry: Arc<Registry>,
    /// This thread's index in the registry.
    pub thread: usize,
    /// Cursor pagination (`fetch.cursor_field`): the parse threads' [`CursorReply`] for every
    /// page body, the one path that runs against the flow of data.
    pub cursors: Option<Receiver<CursorReply>>,
    /// Work items to skip: done by an earlier run, says the resume journal.
    pub skip: Arc<crate::journal::RangeSet>,
    /// The parse threads' signal that they ran out of work, for a batch held back to fill.
    pub parse_idle: Arc<crate::batch::IdleSignal>,
    /// The writer's queue, for the short path ([`FetchChannels::try_short_path`]); `None`
    /// sends every batch through the parse threads.
    pub short_path: Option<ShortPath>,
}

impl FetchChannels {
    /// Whether a batch shipped now would take the short path (see
    /// [`FetchChannels::try_short_path`]).
    pub fn short_path_open(&self) -> bool {
        self.short_path.as_ref().is_some_and(|sp| {
            !sp.closed.load(std::sync::atomic::Ordering::Relaxed)
                && self.out.upstream.is_empty()
                && sp.to_writer.is_empty()
                && self.registry.waiting(&[sp.writer_thread]) == 1
        })
    }
}

/// The writer's end of the short path: its queue and its thread, whose state tells whether it
/// waits for input.
pub struct ShortPath {
    /// The writer's queue.
    pub to_writer: Sender<ToWriter>,
    /// The writer thread's index in the registry.
    pub writer_thread: usize,
    /// Set when a batch failed on the writer: the run is stopping, and what is still fetched
    /// goes through the parse threads.
    pub closed: Arc<std::sync::atomic::AtomicBool>,
    /// Where the batches wait for the writer.
    pub mailbox: Arc<Mailbox>,
}

impl FetchChannels {
    /// Hands `batch` straight to the writer when the pipeline is idle, or gives it back.
    ///
    /// Idle means: no batch between the fetcher and the writer's queue ([`Upstream`]), that
    /// queue empty, and the writer waiting for input. Then the writer parses the batch itself
    /// and the batch pays one thread wake-up instead of two, which is most of its latency at
    /// low rates (README, Performance, latency step 5). Under load the conditions fail and
    /// batches take the parse threads as before, so the writer does not take their work.
    ///
    /// Pages of cursor pagination always take the parse threads: the fetcher waits for their
    /// cursor replies, and learns that none will come when the parse threads' reply channel
    /// closes, which a writer holding a sender would prevent.
    pub fn try_short_path(&self, batch: BodyBatch) -> std::result::Result<(), BodyBatch> {
        let Some(sp) = self
            .short_path
            .as_ref()
            .filter(|_| self.short_path_open() && !batch.has_cursor_pages())
        else {
            return Err(batch);
        };
        // A batch still waiting (the writer is between its notice and taking it): this one
        // could not join it, so it goes through the parse threads, behind that notice.
        sp.mailbox.put(batch)?;
        self.out.upstream.mark();
        match sp
            .to_writer
            .try_send(ToWriter::Bodies(Arc::clone(&sp.mailbox)))
        {
            Ok(()) => {
                self.registry
                    .short_path_batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            // Full cannot happen (the queue was empty and nothing upstream sends to it);
            // disconnected: the writer has stopped, and the parse path reports that.
            Err(_) => Err(sp
                .mailbox
                .take()
                .expect("the writer is gone, so nothing took the batch just put")),
        }
    }

    /// Adds `batch` to the batch waiting for the writer in the short path's [`Mailbox`], if
    /// one waits, nothing went to the parse threads since it was left there (so nothing can
    /// be overtaken), and the two together stay within `max_bytes` and `max_items`. `batch` is
    /// left empty, its allocations kept. Returns whether it joined; otherwise ship `batch` as
    /// usual. Not for pages of cursor pagination, nor after a failure on the writer.
    pub fn try_join(&self, batch: &mut BodyBatch, max_bytes: usize, max_items: usize) -> bool {
        let Some(sp) = &self.short_path else {
            return false;
        };
        let joined = !sp.closed.load(std::sync::atomic::Ordering::Relaxed)
            && !self.out.upstream.entered_since_mark()
            && !batch.has_cursor_pages()
            && sp.mailbox.join(batch, max_bytes, max_items);
        if joined {
            self.registry
                .short_path_joins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        joined
    }
}

/// The parse threads' queue. Every send counts the batch into [`Upstream`], so the short path
/// knows when nothing is on its way to the writer.
#[derive(Clone)]
pub struct ToParse {
    tx: Sender<BodyBatch>,
    upstream: Arc<Upstream>,
}

impl ToParse {
    /// The queue `tx`, counting into `upstream`.
    pub fn new(tx: Sender<BodyBatch>, upstream: Arc<Upstream>) -> ToParse {
        ToParse { tx, upstream }
    }

    /// Sends, blocking while the queue is full.
    pub fn send(&self, b: BodyBatch) -> std::result::Result<(), SendError<BodyBatch>> {
        self.upstream.enter();
        self.tx.send(b).inspect_err(|_| self.upstream.cancel())
    }

    /// Sends if there is room now.
    pub fn try_send(&self, b: BodyBatch) -> std::result::Result<(), TrySendError<BodyBatch>> {
        self.upstream.enter();
        self.tx.try_send(b).inspect_err(|_| self.upstream.cancel())
    }

    /// Sends, waiting at most `t` for room.
    pub fn send_timeout(
        &self,
        b: BodyBatch,
        t: Duration,
    ) -> std::result::Result<(), SendTimeoutError<BodyBatch>> {
        self.upstream.enter();
        self.tx
            .send_timeout(b, t)
            .inspect_err(|_| self.upstream.cancel())
    }

    /// Batches queued now.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> Option<usize> {
        self.tx.capacity()
    }
}

pub(crate) fn downstream_gone() -> Error {
    Error::Thread {
        thread: "pinflow-fetch".into(),
        why: "the parse stage stopped accepting batches".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::live::ThreadState;
    use crate::plan::Role;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    struct Rig {
        chans: FetchChannels,
        parse_rx: Receiver<BodyBatch>,
        writer_rx: Receiver<ToWriter>,
        writer: usize,
        closed: Arc<AtomicBool>,
    }

    fn rig() -> Rig {
        let registry = Arc::new(Registry::new(&[Role::Fetch, Role::Parse(0), Role::Writer]));
        let writer = registry.thread_index(Role::Writer).unwrap();
        let (parse_tx, parse_rx) = crossbeam_channel::bounded(4);
        let (writer_tx, writer_rx) = crossbeam_channel::bounded(4);
        let (_, recycled) = crossbeam_channel::bounded(4);
        let closed = Arc::new(AtomicBool::new(false));
        let chans = FetchChannels {
            out: ToParse::new(parse_tx, Arc::new(Upstream::default())),
            recycled,
            live: Arc::new(LiveBatches::default()),
            registry,
            thread: 0,
            cursors: None,
            skip: Arc::default(),
            parse_idle: Arc::default(),
            short_path: Some(ShortPath {
                to_writer: writer_tx,
                writer_thread: writer,
                closed: Arc::clone(&closed),
                mailbox: Arc::default(),
            }),
        };
        Rig {
            chans,
            parse_rx,
            writer_rx,
            writer,
            closed,
        }
    }

    fn one_body() -> BodyBatch {
        let mut b = BodyBatch::default();
        b.push_body("http://127.0.0.1/1", b"{\"id\":1}", 1, Instant::now());
        b
    }

    #[test]
    fn the_short_path_is_taken_only_when_the_pipeline_is_idle() {
        let r = rig();
        // The writer is not waiting yet (starting): refused.
        assert!(r.chans.try_short_path(one_body()).is_err());
        r.chans
            .registry
            .set_state(r.writer, ThreadState::WaitingInput);
        // Idle: the batch goes to the writer and is counted.
        assert!(r.chans.try_short_path(one_body()).is_ok());
        assert!(matches!(r.writer_rx.try_recv(), Ok(ToWriter::Bodies(m)) if m.take().is_some()));
        assert_eq!(
            r.chans.registry.short_path_batches.load(Ordering::Relaxed),
            1
        );
        // A batch on its way through the parse threads: refused until its rows reach the
        // writer's queue, so the next one cannot overtake it.
        r.chans.out.send(one_body()).unwrap();
        assert!(r.chans.try_short_path(one_body()).is_err());
        let _ = r.parse_rx.try_recv().unwrap();
        assert!(
            r.chans.try_short_path(one_body()).is_err(),
            "still upstream"
        );
        r.chans.out.upstream.leave();
        assert!(r.chans.try_short_path(one_body()).is_ok());
        // Something already in the writer's queue: refused.
        assert!(r.chans.try_short_path(one_body()).is_err());
        let _ = r.writer_rx.try_recv().unwrap();
        // Pages of cursor pagination always take the parse threads.
        let mut page = one_body();
        page.expect_cursor(0);
        assert!(r.chans.try_short_path(page).is_err());
        // Closed after a failure on the writer.
        r.closed.store(true, Ordering::Relaxed);
        assert!(r.chans.try_short_path(one_body()).is_err());
        assert!(!r.chans.short_path_open());
    }

    #[test]
    fn a_batch_joins_the_one_waiting_for_the_writer_only_while_nothing_went_the_long_way() {
        let r = rig();
        let joined = |b: &mut BodyBatch| r.chans.try_join(b, 1 << 20, 100);
        r.chans
            .registry
            .set_state(r.writer, ThreadState::WaitingInput);
        // Nothing waits yet.
        let mut b = one_body();
        assert!(!joined(&mut b));
        assert!(r.chans.try_short_path(b).is_ok());
        // The writer has its notice but has not taken the batch: the next one joins it.
        let mut b = one_body();
        assert!(joined(&mut b));
        assert!(b.is_empty());
        assert_eq!(
            r.chans.registry.short_path_batches.load(Ordering::Relaxed),
            1
        );
        assert_eq!(r.chans.registry.short_path_joins.load(Ordering::Relaxed), 1);
        // Pages of cursor pagination never join.
        let mut page = one_body();
        page.expect_cursor(0);
        assert!(!joined(&mut page));
        // A batch that went through the parse threads since: a later one must not overtake
        // it by joining the waiting batch, which the writer will take first.
        r.chans.out.send(one_body()).unwrap();
        let mut b = one_body();
        assert!(!joined(&mut b));
        assert_eq!(b.len(), 1);
        // The writer takes both bodies with its one notice.
        let Ok(ToWriter::Bodies(mailbox)) = r.writer_rx.try_recv() else {
            panic!("no notice for the writer");
        };
        assert_eq!(mailbox.take().map(|w| w.len()), Some(2));
        assert!(r.writer_rx.try_recv().is_err());
        // Closed after a failure on the writer: no joining either.
        let _ = r.parse_rx.try_recv().unwrap();
        r.chans.out.upstream.leave();
        assert!(r.chans.try_short_path(one_body()).is_ok());
        r.closed.store(true, Ordering::Relaxed);
        let mut b = one_body();
        assert!(!joined(&mut b));
    }

    #[test]
    fn a_failed_send_to_the_parse_queue_is_not_counted_upstream() {
        let r = rig();
        drop(r.parse_rx);
        assert!(r.chans.out.send(one_body()).is_err());
        assert!(r.chans.out.try_send(one_body()).is_err());
        assert!(r.chans.out.upstream.is_empty());
    }
}

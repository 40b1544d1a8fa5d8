//! The hand-off between ingest and the stages after it, in one place: the queues' messages,
//! the count of batches on their way, and the short path.
//!
//! ```text
//!  ingest ──ToParse──► parse threads ──► (compute) ──ToWriter::Rows──► writer
//!     └───────────── short path: ToWriter::Bodies(Mailbox) ───────────────┘
//! ```
//!
//! - [`IngestChannels`] is what a source in the ingest seat gets: the parse queue
//!   ([`ToParse`]), the return queue of emptied batches, the live metrics, the resume
//!   journal's items to skip, and the short path.
//! - [`Upstream`] counts batches between the parse queue and the writer's queue, so the short
//!   path knows when a batch handed to the writer directly cannot overtake another.
//! - [`Mailbox`] is where a short-path batch waits for the writer; a batch shipped before the
//!   writer wakes joins it.
//! - [`IdleSignal`] lets an idle parse thread wake an ingest loop holding a batch back.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendError, SendTimeoutError, Sender, TrySendError};

use crate::batch::{BodyBatch, CursorReply, LiveBatches, RecordsBatch};
use crate::error::Error;
use crate::metrics::live::Registry;

/// Body batches between the fetcher and the writer: sent to the parse queue and not yet in
/// the writer's queue (as rows). The fetcher counts a batch in as it enters the parse queue;
/// the thread that hands its rows to the writer counts it out after the send.
///
/// When the count is zero, every batch the fetcher sent before is already in the writer's
/// queue, so a batch handed to the writer directly ([`ToWriter::Bodies`]) lands behind all of
/// them: the short path keeps the order of one producer.
///
/// It also remembers whether any batch entered since the fetcher last handed one to the
/// writer directly ([`Upstream::mark`]): until one does, a later batch may join the one waiting
/// in the [`Mailbox`] without overtaking anything.
#[derive(Debug, Default)]
pub struct Upstream {
    count: AtomicUsize,
    /// Set by every [`Upstream::enter`], cleared by [`Upstream::mark`]; only the fetcher's
    /// thread touches it.
    entered: AtomicBool,
}

impl Upstream {
    /// A batch is about to enter the parse queue (counted before the send, so a parse thread
    /// can never count it out first).
    pub fn enter(&self) {
        self.entered.store(true, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// A batch did not enter after all (the send failed).
    pub fn cancel(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }

    /// A batch's rows are in the writer's queue (called after that send).
    pub fn leave(&self) {
        self.count.fetch_sub(1, Ordering::Release);
    }

    /// Whether no batch is between the fetcher and the writer's queue.
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// The fetcher handed a batch to the writer directly: no batch has entered since.
    pub fn mark(&self) {
        self.entered.store(false, Ordering::Relaxed);
    }

    /// Whether a batch entered the parse queue since the last [`Upstream::mark`] (or ever,
    /// before the first).
    pub fn entered_since_mark(&self) -> bool {
        self.entered.load(Ordering::Relaxed)
    }
}

/// Where the short path leaves a body batch for the writer: the fetcher puts the batch here
/// and sends the writer a notice ([`ToWriter::Bodies`]) that carries this mailbox; the writer
/// takes whatever waits when the notice comes.
///
/// Waking the writer takes tens of microseconds. A batch the fetcher ships in that time joins
/// the one still waiting ([`Mailbox::join`]) instead of going through a parse thread (two more
/// hand-offs): the bursts of responses that a rate limit releases together then reach the
/// writer with the first of them (CHANGELOG.md, measurement history, latency).
#[derive(Debug, Default)]
pub struct Mailbox(parking_lot::Mutex<Option<BodyBatch>>);

impl Mailbox {
    /// Leaves `batch` for the writer, or gives it back when a batch still waits (the writer
    /// has its notice but has not taken it yet): only [`Mailbox::join`] adds to a waiting
    /// batch, within its bounds and never mixing bodies with ready-made records.
    pub fn put(&self, batch: BodyBatch) -> Result<(), BodyBatch> {
        let mut waiting = self.0.lock();
        if waiting.is_some() {
            return Err(batch);
        }
        *waiting = Some(batch);
        Ok(())
    }

    /// Moves `batch`'s items to the end of the waiting batch, leaving `batch` empty (its
    /// allocations kept for reuse), if a batch waits and the two together stay within
    /// `max_bytes` of arena and `max_items` items. Batches of records pushed ready-made do not
    /// join (a batch carries bodies or records, not both). Returns whether it joined.
    pub fn join(&self, batch: &mut BodyBatch, max_bytes: usize, max_items: usize) -> bool {
        if !batch.prebuilt.is_empty() {
            return false;
        }
        let mut waiting = self.0.lock();
        match waiting.as_mut() {
            Some(w)
                if w.prebuilt.is_empty()
                    && w.arena.len() + batch.arena.len() <= max_bytes
                    && w.items.len() + batch.items.len() <= max_items =>
            {
                w.append(batch);
                true
            }
            _ => false,
        }
    }

    /// Takes the waiting batch, if any. (Each notice finds the batch it was sent for: a put
    /// succeeds only once the batch before has been taken.)
    pub fn take(&self) -> Option<BodyBatch> {
        self.0.lock().take()
    }
}

/// What the writer's queue carries.
#[derive(Debug)]
pub enum ToWriter {
    /// Rows from a parse or compute thread.
    Rows(RecordsBatch),
    /// Bodies straight from the fetcher (the short path), waiting in this [`Mailbox`]: the
    /// pipeline was idle, so the writer parses and computes them itself and they pay one
    /// thread hand-off instead of two (fetch → parse → writer). See [`Upstream`] for why the
    /// order is kept.
    Bodies(Arc<Mailbox>),
}

/// How a parse thread running out of work tells the fetcher, which may be holding a partly
/// filled batch back: a batch waits to fill only while the parse threads are busy, and the
/// fetcher, asleep in its event loop, would otherwise learn that they are free only at its
/// next socket event or timer (a millisecond or more later at a low request rate).
///
/// The fetcher calls [`IdleSignal::want`] before it sleeps with a batch held back; a parse
/// thread about to wait for input calls [`IdleSignal::idle`], which wakes the fetcher only when
/// it asked: at most one wake-up per held-back batch, and none while the queues are busy.
#[derive(Default)]
pub struct IdleSignal {
    wanted: AtomicBool,
    wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for IdleSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleSignal")
            .field("wanted", &self.wanted.load(Ordering::Relaxed))
            .field("wake_set", &self.wake.get().is_some())
            .finish()
    }
}

impl IdleSignal {
    /// Sets how to wake the fetcher (once; later calls are ignored).
    pub fn set_wake(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.wake.set(wake);
    }

    /// The fetcher asks to be woken by the next parse thread that goes idle. The caller must
    /// check the parse threads' states *after* this call: together with the fence in
    /// [`IdleSignal::idle`], one side always sees the other (a thread that went idle just
    /// before is seen by the check; one going idle after sees the request).
    pub fn want(&self) {
        self.wanted.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The fetcher no longer holds a batch back (it shipped it).
    pub fn clear(&self) {
        self.wanted.store(false, Ordering::Relaxed);
    }

    /// A parse thread has published that it waits for input: wakes the fetcher if it asked.
    pub fn idle(&self) {
        fence(Ordering::SeqCst);
        if self.wanted.load(Ordering::Relaxed) && self.wanted.swap(false, Ordering::SeqCst) {
            if let Some(wake) = self.wake.get() {
                wake();
            }
        }
    }
}

/// The channels a source in the ingest seat talks through.
pub struct IngestChannels {
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
    pub parse_idle: Arc<IdleSignal>,
    /// The writer's queue, for the short path ([`IngestChannels::try_short_path`]); `None`
    /// sends every batch through the parse threads.
    pub short_path: Option<ShortPath>,
    /// File descriptors the HTTP fetcher leaves to the rest of the run (output, dead letters,
    /// journal, metrics endpoint): its connections are capped at `RLIMIT_NOFILE` less this
    /// ([`crate::Config::descriptor_reserve`]).
    pub descriptor_reserve: usize,
    /// A later stage needs rows in source order, by partition (time windows): a file source
    /// then ships a batch at the end of each file, so no batch mixes two partitions, and
    /// marks it [`BodyBatch::partition_ended`]. See [`crate::batch::SourceOrder`].
    pub source_order: bool,
}

impl IngestChannels {
    /// Whether a batch shipped now would take the short path (see
    /// [`IngestChannels::try_short_path`]).
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

impl IngestChannels {
    /// Hands `batch` straight to the writer when the pipeline is idle, or gives it back.
    ///
    /// Idle means: no batch between the fetcher and the writer's queue ([`Upstream`]), that
    /// queue empty, and the writer waiting for input. Then the writer parses the batch itself
    /// and the batch pays one thread wake-up instead of two, which is most of its latency at
    /// low rates (docs/performance.md, Latency). Under load the conditions fail and
    /// batches take the parse threads as before, so the writer does not take their work.
    ///
    /// Pages of cursor pagination always take the parse threads: the fetcher waits for their
    /// cursor replies, and learns that none will come when the parse threads' reply channel
    /// closes, which a writer holding a sender would prevent.
    pub fn try_short_path(&self, mut batch: BodyBatch) -> std::result::Result<(), BodyBatch> {
        let Some(sp) = self
            .short_path
            .as_ref()
            .filter(|_| self.short_path_open() && !batch.has_cursor_pages())
        else {
            return Err(batch);
        };
        // Numbered before the put: refused, it keeps its number on the parse threads' way.
        self.out.number(&mut batch);
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
///
/// It also numbers the batches in the order they are shipped ([`ToParse::number`]), for the
/// stages that must put them back in source order ([`crate::batch::SourceOrder`]).
#[derive(Clone)]
pub struct ToParse {
    tx: Sender<BodyBatch>,
    upstream: Arc<Upstream>,
    /// The next batch number. Only the ingest thread ships, so the numbers follow its order.
    next_number: Arc<AtomicU64>,
}

impl ToParse {
    /// The queue `tx`, counting into `upstream`.
    pub fn new(tx: Sender<BodyBatch>, upstream: Arc<Upstream>) -> ToParse {
        ToParse {
            tx,
            upstream,
            next_number: Arc::default(),
        }
    }

    /// Gives `b` the next batch number, unless it has one: a batch keeps its number through
    /// retried sends and a refused short path, so numbers have no gaps and follow the order
    /// batches leave the ingest thread.
    pub fn number(&self, b: &mut BodyBatch) {
        if b.order().is_none() {
            b.set_order(self.next_number.fetch_add(1, Ordering::Relaxed));
        }
    }

    /// Sends, blocking while the queue is full.
    pub fn send(&self, mut b: BodyBatch) -> std::result::Result<(), SendError<BodyBatch>> {
        self.number(&mut b);
        self.upstream.enter();
        self.tx.send(b).inspect_err(|_| self.upstream.cancel())
    }

    /// Sends if there is room now.
    // The batch comes back by value when it cannot go (crossbeam's error carries it), so that
    // nothing in it is lost; boxing it would allocate once per batch.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, mut b: BodyBatch) -> std::result::Result<(), TrySendError<BodyBatch>> {
        self.number(&mut b);
        self.upstream.enter();
        self.tx.try_send(b).inspect_err(|_| self.upstream.cancel())
    }

    /// Sends, waiting at most `t` for room.
    #[allow(clippy::result_large_err)] // as `try_send`
    pub fn send_timeout(
        &self,
        mut b: BodyBatch,
        t: Duration,
    ) -> std::result::Result<(), SendTimeoutError<BodyBatch>> {
        self.number(&mut b);
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

/// The error of a source whose parse queue closed: the stages after it have stopped.
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
        chans: IngestChannels,
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
        let chans = IngestChannels {
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
            descriptor_reserve: 0,
            source_order: false,
        };
        Rig {
            chans,
            parse_rx,
            writer_rx,
            writer,
            closed,
        }
    }

    fn bodies(urls_and_bodies: &[(&str, &str)]) -> BodyBatch {
        let mut b = BodyBatch::default();
        for (url, body) in urls_and_bodies {
            b.push_body(url, body.as_bytes(), 1, Instant::now());
        }
        b
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

    #[test]
    fn a_batch_joins_the_waiting_one_within_the_bounds_and_only_bodies_with_bodies() {
        let mailbox = Mailbox::default();
        let mut late = bodies(&[("http://h/2", "{}")]);
        assert!(!mailbox.join(&mut late, 1 << 20, 100), "nothing waits");
        assert_eq!(late.len(), 1);
        mailbox.put(bodies(&[("http://h/1", "{}")])).unwrap();
        // Over the item bound: refused, untouched.
        assert!(!mailbox.join(&mut late, 1 << 20, 1));
        assert_eq!(late.len(), 1);
        // Over the byte bound: refused.
        assert!(!mailbox.join(&mut late, 10, 100));
        assert!(mailbox.join(&mut late, 1 << 20, 100));
        assert!(late.is_empty());
        // Records pushed ready-made do not join bodies.
        let mut records = BodyBatch::default();
        records
            .prebuilt
            .push(arrow_array::RecordBatch::new_empty(Arc::new(
                arrow_schema::Schema::empty(),
            )));
        assert!(!mailbox.join(&mut records, 1 << 20, 100));
        // A put while a batch waits is refused: bodies after records (or a batch past the
        // bounds) would otherwise be merged into it.
        let refused = mailbox.put(bodies(&[("http://h/3", "{}")])).unwrap_err();
        assert_eq!(refused.len(), 1);
        let waiting = mailbox.take().unwrap();
        let urls: Vec<_> = waiting.items.iter().map(|i| waiting.url(i)).collect();
        assert_eq!(urls, ["http://h/1", "http://h/2"]);
        assert!(mailbox.take().is_none());
        // Records waiting: bodies neither join nor are put after them.
        mailbox.put(records).unwrap();
        let mut late = bodies(&[("http://h/4", "{}")]);
        assert!(!mailbox.join(&mut late, 1 << 20, 100));
        assert!(mailbox.put(late).is_err());
    }

    #[test]
    fn an_idle_parse_thread_wakes_the_fetcher_only_when_asked_and_once() {
        let woken = Arc::new(AtomicUsize::new(0));
        let signal = IdleSignal::default();
        let w = Arc::clone(&woken);
        signal.set_wake(Box::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        }));
        signal.idle(); // nothing held back: no wake-up
        assert_eq!(woken.load(Ordering::Relaxed), 0);
        signal.want();
        signal.idle();
        signal.idle(); // one wake-up per request
        assert_eq!(woken.load(Ordering::Relaxed), 1);
        signal.want();
        signal.clear(); // shipped meanwhile: nothing to wake for
        signal.idle();
        assert_eq!(woken.load(Ordering::Relaxed), 1);
    }
}

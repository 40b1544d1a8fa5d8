//! The push source: an embedding program hands records to a running pipeline.
//!
//! [`Source::push`](crate::Source::push) returns a source and a [`PushHandle`]. The handle is a
//! bounded queue: [`try_push`](PushHandle::try_push) never blocks and says why an item was not
//! taken, [`push`](PushHandle::push) waits for room, [`push_timeout`](PushHandle::push_timeout)
//! waits at most so long. It is `Clone + Send + Sync`: any number of producer threads may push.
//!
//! A pushed item is a body — one JSON object, an array of objects, or an NDJSON chunk, parsed
//! like an HTTP response — or an Arrow `RecordBatch` already in the layout's record schema,
//! which skips parsing. In the pipeline, the feeder thread (in the fetcher's seat) takes what
//! is queued, packs it into one batch without waiting for more (an idle pipeline never holds a
//! record back to fill a batch), and hands it to the parse threads.
//!
//! The source ends when every handle is dropped, or when the pipeline is stopped
//! ([`RunHandle::shutdown`](crate::pipeline::RunHandle::shutdown)): everything already queued
//! is still processed, and later pushes fail with [`PushError::Closed`].
//!
//! Order: items from one producer thread enter the pipeline in the order pushed. With one parse
//! and one compute thread (`threads.parse = 1`, `threads.compute = 1`) they also reach the sinks
//! in that order; with more, batches are processed in parallel and may be reordered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};

use crate::batch::BodyBatch;
use crate::config::FetchConfig;
use crate::error::Result;
use crate::handoff::{downstream_gone, IngestChannels};
use crate::ingest::IngestReport;
use crate::metrics::live::{QueueId, ThreadState};

/// One pushed item.
#[derive(Debug, Clone)]
pub enum Pushed {
    /// A body: one JSON object, an array of objects, or NDJSON.
    Body(Vec<u8>),
    /// Records already in the layout's record schema.
    Records(RecordBatch),
}

/// Why a push did not go in. The item comes back, so nothing is lost by a failed push.
#[derive(Debug)]
pub enum PushError {
    /// The queue is full (only from [`PushHandle::try_push`]): the pipeline is behind.
    Full(Pushed),
    /// No room came within the timeout ([`PushHandle::push_timeout`]).
    Timeout(Pushed),
    /// The pipeline has stopped taking input.
    Closed(Pushed),
}

impl PushError {
    /// The item that was not taken.
    pub fn into_inner(self) -> Pushed {
        match self {
            PushError::Full(p) | PushError::Timeout(p) | PushError::Closed(p) => p,
        }
    }
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "the push queue is full: the pipeline is behind",
            PushError::Timeout(_) => "the push queue stayed full until the timeout",
            PushError::Closed(_) => "the pipeline has stopped taking input",
        })
    }
}

impl std::error::Error for PushError {}

/// The producers' end of a push source. Cheap to clone; every clone feeds the same pipeline.
///
/// ```
/// let (source, push) = pinflow::Source::push(16);
/// push.try_push(r#"{"id":1}"#)?;
/// // A full queue says so at once, and gives the item back.
/// for i in 2..100 {
///     if let Err(e) = push.try_push(format!(r#"{{"id":{i}}}"#)) {
///         assert!(matches!(e, pinflow::push::PushError::Full(_)));
///         break;
///     }
/// }
/// # drop(source);
/// # Ok::<(), pinflow::push::PushError>(())
/// ```
#[derive(Clone)]
pub struct PushHandle {
    tx: Sender<Pushed>,
    gate: Arc<Gate>,
}

/// The pipeline's end of a push source (inside [`Source::Push`](crate::Source::Push)).
pub struct PushReceiver {
    rx: Receiver<Pushed>,
    gate: Arc<Gate>,
}

/// Whether pushes are still taken, and how many are on their way into the queue: a push
/// that found the gate open is taken by the feeder even if it closes meanwhile (else an item
/// queued just after the feeder's last look would go with the queue, though `push` said Ok).
#[derive(Default)]
struct Gate {
    closed: AtomicBool,
    sending: AtomicUsize,
}

/// A push on its way through an open [`Gate`].
struct Entered<'a>(&'a Gate);

impl Gate {
    /// Enters unless closed. (SeqCst: the feeder closes, then reads `sending`; a push that
    /// entered after that read sees the gate closed.)
    fn enter(&self) -> Option<Entered<'_>> {
        self.sending.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.sending.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Entered(self))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether a push that entered is still on its way.
    fn busy(&self) -> bool {
        self.sending.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A push source with room for `capacity` queued items, and its handle.
pub fn channel(capacity: usize) -> (PushReceiver, PushHandle) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let gate = Arc::new(Gate::default());
    (
        PushReceiver {
            rx,
            gate: Arc::clone(&gate),
        },
        PushHandle { tx, gate },
    )
}

impl PushHandle {
    /// Queues a body if there is room now; never blocks.
    pub fn try_push(&self, body: impl Into<Vec<u8>>) -> std::result::Result<(), PushError> {
        self.try_send(Pushed::Body(body.into()))
    }

    /// Queues a body, waiting for room as long as it takes.
    pub fn push(&self, body: impl Into<Vec<u8>>) -> std::result::Result<(), PushError> {
        self.send(Pushed::Body(body.into()))
    }

    /// Queues a body, waiting for room at most `timeout`.
    pub fn push_timeout(
        &self,
        body: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> std::result::Result<(), PushError> {
        self.send_timeout(Pushed::Body(body.into()), timeout)
    }

    /// Queues records already in the layout's record schema (see
    /// [`Layout::record_schema`](crate::schema::Layout::record_schema)); a batch of another
    /// schema is dead-lettered by the parse stage. Never blocks.
    pub fn try_push_records(&self, rows: RecordBatch) -> std::result::Result<(), PushError> {
        self.try_send(Pushed::Records(rows))
    }

    /// Queues records, waiting for room as long as it takes.
    pub fn push_records(&self, rows: RecordBatch) -> std::result::Result<(), PushError> {
        self.send(Pushed::Records(rows))
    }

    /// Queues any item, never blocking.
    pub fn try_send(&self, item: Pushed) -> std::result::Result<(), PushError> {
        let Some(_entered) = self.gate.enter() else {
            return Err(PushError::Closed(item));
        };
        self.tx.try_send(item).map_err(|e| match e {
            TrySendError::Full(p) => PushError::Full(p),
            TrySendError::Disconnected(p) => PushError::Closed(p),
        })
    }

    /// Queues any item, waiting for room.
    pub fn send(&self, item: Pushed) -> std::result::Result<(), PushError> {
        let Some(_entered) = self.gate.enter() else {
            return Err(PushError::Closed(item));
        };
        self.tx.send(item).map_err(|e| PushError::Closed(e.0))
    }

    /// Queues any item, waiting for room at most `timeout`.
    pub fn send_timeout(
        &self,
        item: Pushed,
        timeout: Duration,
    ) -> std::result::Result<(), PushError> {
        let Some(_entered) = self.gate.enter() else {
            return Err(PushError::Closed(item));
        };
        self.tx.send_timeout(item, timeout).map_err(|e| match e {
            SendTimeoutError::Timeout(p) => PushError::Timeout(p),
            SendTimeoutError::Disconnected(p) => PushError::Closed(p),
        })
    }

    /// Items queued and not yet taken by the pipeline.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Whether the pipeline has stopped taking input.
    pub fn is_closed(&self) -> bool {
        self.gate.closed.load(Ordering::Acquire)
    }
}

/// The feeder: moves pushed items into body batches until every handle is gone, or `stop` is
/// set and the queue is empty.
pub(crate) fn run(
    input: PushReceiver,
    cfg: &FetchConfig,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    let mut report = IngestReport::default();
    let (registry, thread) = (Arc::clone(&chans.registry), chans.thread);
    let mut last_publish = Instant::now();
    let mut pending: Option<Pushed> = None;
    // A batch emptied by joining the one waiting for the writer, reused for the next.
    let mut spare: Option<BodyBatch> = None;
    let result = (|| -> Result<()> {
        loop {
            let first = match pending.take() {
                Some(p) => p,
                // Stopping: new pushes are refused (handed back to their producer), and what
                // is still queued is taken. Checked before each wait, not only when one times
                // out: a producer pushing more often than that kept the stop from being seen.
                None if stop.load(Ordering::Relaxed) => {
                    input.gate.close();
                    report.interrupted = true;
                    // Whether a push is on its way, asked before the queue is: one that was
                    // not is in the queue by now (a push leaves the gate after its send).
                    let busy = input.gate.busy();
                    match input.rx.try_recv() {
                        Ok(p) => p,
                        Err(_) if busy => {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        Err(_) => return Ok(()),
                    }
                }
                None => {
                    registry.set_state(thread, ThreadState::WaitingInput);
                    match input.rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(p) => p,
                        Err(RecvTimeoutError::Timeout) => {
                            if last_publish.elapsed() >= Duration::from_millis(50) {
                                last_publish = Instant::now();
                                registry.publish_fetch(&report.stats, input.rx.len(), 0);
                                registry.heartbeat(thread);
                            }
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
            };
            registry.set_state(thread, ThreadState::Working);
            let mut batch = spare
                .take()
                .or_else(|| chans.recycled.try_recv().ok())
                .unwrap_or_default();
            batch.shrink_arena(2 * cfg.batch_max_bytes);
            batch.ticket = Some(chans.live.ticket());
            let records_batch = matches!(first, Pushed::Records(_));
            add(&mut batch, first, &mut report);
            // Take what else is queued now, without waiting: bodies with bodies, records with
            // records (a batch carries one kind, so order is kept across kinds too).
            while batch.len() < cfg.batch_max_items && batch.arena.len() < cfg.batch_max_bytes {
                match input.rx.try_recv() {
                    Ok(p) if matches!(p, Pushed::Records(_)) == records_batch => {
                        add(&mut batch, p, &mut report)
                    }
                    Ok(p) => {
                        pending = Some(p);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if chans.try_join(&mut batch, cfg.batch_max_bytes, cfg.batch_max_items) {
                // Emptied, allocations kept: the next batch starts in it.
                spare = Some(batch);
            } else if let Err(batch) = chans.try_short_path(batch) {
                registry.set_state(thread, ThreadState::BlockedOutput);
                chans.out.send(batch).map_err(|_| downstream_gone())?;
                registry.set_queue_depth(QueueId::Bodies, chans.out.len());
            }
            if last_publish.elapsed() >= Duration::from_millis(50) {
                last_publish = Instant::now();
                registry.publish_fetch(&report.stats, input.rx.len(), 0);
                registry.heartbeat(thread);
            }
        }
    })();
    input.gate.close();
    registry.publish_fetch(&report.stats, 0, 0);
    registry
        .cycles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    result.map(|()| report)
}

fn add(batch: &mut BodyBatch, item: Pushed, report: &mut IngestReport) {
    report.stats.requests += 1;
    report.stats.delivered += 1;
    match item {
        Pushed::Body(body) => {
            report.stats.body_bytes += body.len() as u64;
            batch.push_body("push", &body, 1, Instant::now());
        }
        Pushed::Records(rows) => {
            batch.push_body("push", &[], 1, Instant::now());
            batch.prebuilt.push(rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A push that entered before the close keeps the feeder waiting for it; one after is
    /// refused.
    #[test]
    fn the_gate_lets_in_a_push_that_entered_before_it_closed() {
        let gate = Gate::default();
        let entered = gate.enter().expect("open");
        gate.close();
        assert!(gate.busy(), "the feeder waits for the push on its way");
        assert!(gate.enter().is_none(), "closed: refused");
        assert!(gate.busy());
        drop(entered);
        assert!(!gate.busy());
    }

    /// Many producers pushing while the feeder stops: every push that said Ok is taken. (The
    /// gate is asked before the queue: asked after, a send that completed in between and
    /// left the gate was missed, which a run under qemu showed.)
    #[test]
    fn every_push_that_said_ok_is_taken_at_the_stop() {
        for _ in 0..200 {
            let (rx, handle) = channel(4);
            let producers: Vec<_> = (0..4)
                .map(|_| {
                    let h = handle.clone();
                    std::thread::spawn(move || {
                        let mut ok = 0u64;
                        while h.push(b"{}".to_vec()).is_ok() {
                            ok += 1;
                        }
                        ok
                    })
                })
                .collect();
            drop(handle);
            std::thread::sleep(Duration::from_millis(2));
            // The feeder's stop path, as `run` takes it.
            rx.gate.close();
            let mut taken = 0u64;
            loop {
                let busy = rx.gate.busy();
                match rx.rx.try_recv() {
                    Ok(_) => taken += 1,
                    Err(_) if busy => std::thread::yield_now(),
                    Err(_) => break,
                }
            }
            let pushed: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
            assert_eq!(taken, pushed);
        }
    }
}

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

use std::sync::atomic::{AtomicBool, Ordering};
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
    closed: Arc<AtomicBool>,
}

/// The pipeline's end of a push source (inside [`Source::Push`](crate::Source::Push)).
pub struct PushReceiver {
    rx: Receiver<Pushed>,
    closed: Arc<AtomicBool>,
}

/// A push source with room for `capacity` queued items, and its handle.
pub fn channel(capacity: usize) -> (PushReceiver, PushHandle) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let closed = Arc::new(AtomicBool::new(false));
    (
        PushReceiver {
            rx,
            closed: Arc::clone(&closed),
        },
        PushHandle { tx, closed },
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
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(item));
        }
        self.tx.try_send(item).map_err(|e| match e {
            TrySendError::Full(p) => PushError::Full(p),
            TrySendError::Disconnected(p) => PushError::Closed(p),
        })
    }

    /// Queues any item, waiting for room.
    pub fn send(&self, item: Pushed) -> std::result::Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(item));
        }
        self.tx.send(item).map_err(|e| PushError::Closed(e.0))
    }

    /// Queues any item, waiting for room at most `timeout`.
    pub fn send_timeout(
        &self,
        item: Pushed,
        timeout: Duration,
    ) -> std::result::Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(item));
        }
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
        self.closed.load(Ordering::Acquire)
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
                    input.closed.store(true, Ordering::Release);
                    report.interrupted = true;
                    match input.rx.try_recv() {
                        Ok(p) => p,
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
    input.closed.store(true, Ordering::Release);
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

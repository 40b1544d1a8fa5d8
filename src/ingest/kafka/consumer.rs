//! The Kafka source's loop on the ingest thread, and its rebalance callbacks (see the
//! [module documentation](super)).
//!
//! The callbacks run inside `poll`, on this same thread; what they share with the loop (the
//! batch in hand, the partitions owned) is in [`State`], whose lock is never held across a
//! `poll`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::SendTimeoutError;
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Message};

use super::position::{PartitionKey, Positions};
use super::queue::{self, MessageQueue, Taken};
use super::KafkaSource;
use crate::batch::BodyBatch;
use crate::error::{Error, Result};
use crate::handoff::{downstream_gone, IngestChannels};
use crate::ingest::IngestReport;
use crate::journal::RangeSet;
use crate::metrics::live::{QueueId, Registry, ThreadState};
use crate::plan::Role;

/// How long a request to the group coordinator or a partition leader may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the loop publishes its counts and looks at the partitions' ends (what became
/// durable it commits as soon as it sees it).
const TICK: Duration = Duration::from_millis(50);
/// How long the loop waits for a message when it has none in hand (the consumer's queue,
/// rebalances included, is served between waits).
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// How long a batch waits for room in the parse queue before the partitions are paused (the
/// poll loop goes on meanwhile, far within `max.poll.interval.ms`).
const PATIENCE: Duration = Duration::from_millis(200);
/// The work item of a message an earlier run wrote (skipped): durable already.
const DURABLE: u64 = u64::MAX;

/// A partition assigned now.
struct Owned {
    /// This assignment's number: what it shipped is committed to the group only while it
    /// lasts (a revoked partition's entry is gone, and late work of it with it).
    epoch: u64,
    /// The high watermark when it was assigned (`--exit-at-end`), once fetched; and whether
    /// the partition was empty then.
    end: Option<(i64, bool)>,
    /// The next offset to read, where known.
    next: Option<i64>,
    /// With a journal: the offset below which a message read may be one an earlier run wrote
    /// (`None`: none can be), so that most messages need not ask [`Positions::skip`].
    skip_below: Option<u64>,
    /// Messages shipped in this assignment whose checkpoint has not been seen: work item and
    /// the offset after the message, in offset order.
    unsettled: VecDeque<(u64, i64)>,
    /// At the end of the partition, as librdkafka last said.
    eof: bool,
    /// The offset up to which this assignment's messages are durable (what the group's
    /// offset should be), once known.
    durable: Option<i64>,
    /// Messages read since the count was last added to the metrics.
    consumed: u64,
}

impl Owned {
    /// Whether the partition reached its end: librdkafka said so (end of partition, which it
    /// says once every message before the high watermark of a fetch, at least the one of the
    /// assignment, was handed out), or the loop saw the next offset reach the high watermark
    /// of the last fetch ([`State::reached_fetched_ends`]); and no message came since.
    fn at_end(&self) -> bool {
        self.eof
    }

    /// Whether the partition is, by the high watermark of its assignment, at its end.
    fn past_watermark(&self) -> bool {
        match self.end {
            Some((_, true)) => true,
            Some((high, false)) => self.next.is_some_and(|n| n >= high),
            None => false,
        }
    }

    /// Takes the messages at the front that a checkpoint committed; the offset to commit to
    /// the group, if it moved.
    fn settle(&mut self, committed: &crate::metrics::live::CommittedItems) -> Option<i64> {
        let mut to = None;
        while let Some(&(item, next)) = self.unsettled.front() {
            if item != DURABLE && !committed.contains(item) {
                break;
            }
            to = Some(next);
            self.unsettled.pop_front();
        }
        if to.is_some() {
            self.durable = to;
        }
        to
    }
}

/// What the loop and the callbacks share.
struct State {
    /// `None` once the loop let go of them (the drain at the end).
    chans: Option<IngestChannels>,
    batch: BodyBatch,
    /// Batches the parse queue had no room for, oldest first: the partitions are paused
    /// until they go. (More than one only with `batch_per_partition`: a switch of partition
    /// sets the batch in hand aside, at most one a message taken.)
    held: VecDeque<BodyBatch>,
    /// The partition of the batch in hand's messages (with `batch_per_partition`).
    batch_partition: PartitionKey,
    /// A switch of partition set the batch in hand aside since the last ship.
    set_aside: bool,
    paused: bool,
    report: IngestReport,
    next_seq: u64,
    /// (foldhash: looked up once a message, where SipHash was 8 % of a read's samples; the
    /// keys come from the group's assignment, not from anyone who could flood them.)
    owned: HashMap<PartitionKey, Owned, foldhash::fast::FixedState>,
    epochs: u64,
    /// Whether an assignment came (`--exit-at-end` waits for one).
    assigned: bool,
    /// The message's name (`TOPIC/PARTITION@OFFSET`), written in place.
    url: String,
    /// The arena size a recycled batch is shrunk to (an outsized message inflated it).
    arena_bound: usize,
    /// When the batch in hand got its first message: the time its messages were taken.
    batch_at: Instant,
    /// Partitions whose messages jumped past the next offset expected (partition, expected,
    /// the offset of the message that came or of the partition's end), for the loop to tell deleted
    /// messages from offsets that hold none ([`report_lost_offsets`]).
    jumps: Vec<(PartitionKey, i64, i64)>,
}

/// The consumer's context: the rebalance callbacks.
struct SourceContext {
    state: Mutex<State>,
    positions: Arc<Positions>,
    journal: bool,
    registry: Arc<Registry>,
    revoke_wait: Duration,
    /// `auto.offset.reset` moves a position that is gone to the end (`latest`), skipping
    /// what the broker still has (see [`report_lost_offsets`]).
    reset_to_end: bool,
    batch_max_messages: usize,
    batch_max_bytes: usize,
    /// Every batch holds one partition's messages ([`KafkaSource::batch_per_partition`]).
    batch_per_partition: bool,
    /// An error of a callback (the pipeline after it is gone), for the loop to return.
    failure: Mutex<Option<Error>>,
    /// librdkafka's connection errors, logged once a minute each.
    errors: crate::kafka::ClientErrors,
    /// The source's message queue ([`queue`]), to which each partition assigned is
    /// forwarded; null once the loop let go of it.
    messages: queue::QueueSlot,
    /// Rebalances served: the loop empties the consumer's queue after one (see [`queue`]).
    rebalances: AtomicU64,
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transient (a broker down, retried by librdkafka); what fails a message shows in
        // the loop's `poll`.
        self.errors.report("Kafka consumer", &error, reason);
    }

    /// librdkafka's statistics (`statistics.interval.ms`): the consumer lag of the
    /// partitions owned now, for the metrics.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut partitions = self.registry.kafka_source.partitions.lock();
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if let Some(m) = partitions.get_mut(&(topic.clone(), partition)) {
                    if m.owned {
                        m.lag = (p.consumer_lag >= 0).then_some(p.consumer_lag);
                    }
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            // A later commit carries them: the next that moves the partition, or the
            // synchronous one of its revocation or of the end.
            tracing::warn!(error = %e, "Kafka: an offset commit to the group failed");
        }
    }

    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assigning(consumer, tpl);
                let assigned = match cooperative {
                    true => consumer.incremental_assign(tpl),
                    false => consumer.assign(tpl),
                };
                let messages = self.messages.load(Ordering::Acquire);
                if assigned.is_ok() && !messages.is_null() {
                    // SAFETY: the consumer is live (it called this), and the queue clears
                    // `messages` before it is destroyed, which is on this same thread.
                    unsafe { queue::forward(consumer.client().native_ptr(), messages, tpl) };
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoking(consumer, tpl);
                match cooperative {
                    true => consumer.incremental_unassign(tpl),
                    false => consumer.unassign(),
                }
            }
            other => {
                tracing::warn!(error = ?other, "Kafka rebalance failed: letting go of the partitions");
                self.revoking(consumer, tpl);
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "Kafka: the assignment could not be changed");
        }
    }
}

fn keys_of(tpl: &TopicPartitionList) -> Vec<PartitionKey> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl SourceContext {
    /// Partitions come: each starts at the journal's position, or the group's committed
    /// offset when that is further; without a journal position, where librdkafka says (the
    /// committed offset, else `auto.offset.reset`).
    fn assigning(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let keys = keys_of(tpl);
        let saved: Vec<(PartitionKey, u64)> = keys
            .iter()
            .filter_map(|k| self.positions.resume_at(k).map(|r| (k.clone(), r)))
            .collect();
        // The group's committed offsets: where a partition without a journal position
        // starts (known here, for `--exit-at-end`), and past it when they are further.
        let group = match keys.is_empty() {
            true => None,
            false => match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka: the group's committed offsets could not be read; the journal's positions are used");
                    None
                }
            },
        };
        let committed_of = |k: &PartitionKey| {
            group
                .as_ref()
                .and_then(|g| g.find_partition(&k.0, k.1))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o as u64),
                    _ => None,
                })
        };
        let mut behind = TopicPartitionList::new();
        let mut starts: HashMap<PartitionKey, u64> = HashMap::new();
        for (k, resume) in saved {
            let committed = committed_of(&k);
            let start = committed.map_or(resume, |c| c.max(resume));
            if committed.is_none_or(|c| c < resume) {
                // The journal holds more than the group knows (a kill between the two).
                let _ = behind.add_partition_offset(&k.0, k.1, Offset::Offset(resume as i64));
            }
            if let Err(e) = tpl.set_partition_offset(&k.0, k.1, Offset::Offset(start as i64)) {
                tracing::warn!(topic = %k.0, partition = k.1, error = %e, "Kafka: could not set the start offset");
            }
            starts.insert(k, start);
        }
        if behind.count() > 0 {
            if let Err(e) = consumer.commit(&behind, CommitMode::Sync) {
                tracing::warn!(error = %e, "Kafka: could not commit the journal's positions to the group");
            }
        }
        let mut s = self.state.lock();
        s.assigned = true;
        s.paused = false;
        for k in keys {
            let start = starts.get(&k).copied().or_else(|| committed_of(&k));
            let skip_below = self.positions.assign(&k, start);
            s.epochs += 1;
            let epoch = s.epochs;
            tracing::info!(topic = %k.0, partition = k.1, epoch, start = ?start, "Kafka partition assigned");
            let metrics = &self.registry.kafka_source;
            metrics.assigned.fetch_add(1, Ordering::Relaxed);
            let mut partitions = metrics.partitions.lock();
            let m = partitions.entry(k.clone()).or_default();
            m.owned = true;
            m.lag = None;
            drop(partitions);
            s.owned.insert(
                k,
                Owned {
                    epoch,
                    end: None,
                    next: start.map(|o| o as i64),
                    skip_below,
                    unsettled: VecDeque::new(),
                    eof: false,
                    durable: None,
                    consumed: 0,
                },
            );
        }
    }

    /// Partitions go: with a journal, what was read of them is shipped and, for up to
    /// `revoke_wait`, waited for until a checkpoint (asked of the writer) holds it, and its
    /// offsets are committed before the partitions move on. Then their assignment (epoch) ends.
    fn revoking(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let keys = keys_of(tpl);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if self.journal {
            let shipped = self.state.lock().ship(true, true);
            if let Err(e) = shipped {
                self.failure.lock().get_or_insert(e);
            }
            let deadline = Instant::now() + self.revoke_wait;
            loop {
                let mut waiting = RangeSet::default();
                {
                    let s = self.state.lock();
                    keys.iter()
                        .filter_map(|k| s.owned.get(k))
                        .flat_map(|o| o.unsettled.iter())
                        .map(|&(i, _)| i)
                        .filter(|&i| i != DURABLE && !self.registry.committed.contains(i))
                        .for_each(|i| waiting.insert(i));
                }
                if waiting.is_empty() {
                    break;
                }
                if Instant::now() >= deadline || writer_ended(&self.registry) {
                    tracing::warn!(
                        messages = waiting.len(),
                        wait = ?self.revoke_wait,
                        "Kafka partitions revoked before a checkpoint held every message read \
                         of them (the pipeline did not bring them to the writer within \
                         fetch.shutdown_timeout): those are written here, and the partitions' \
                         next owner may read them again"
                    );
                    break;
                }
                // The writer checkpoints once it holds them all, not at its next rotation.
                self.registry.committed.ask(waiting.ranges().collect());
                std::thread::sleep(Duration::from_millis(10));
            }
            self.registry.committed.ask(Vec::new());
            // Every durable offset, not only those that moved: an asynchronous commit made
            // during the rebalance may have been refused.
            let mut s = self.state.lock();
            let mut commit = TopicPartitionList::new();
            for k in &keys {
                if let Some(o) = s.owned.get_mut(k) {
                    o.settle(&self.registry.committed);
                    if let Some(to) = o.durable {
                        let _ = commit.add_partition_offset(&k.0, k.1, Offset::Offset(to));
                    }
                }
            }
            drop(s);
            if commit.count() > 0 {
                if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                    tracing::warn!(error = %e, "Kafka: could not commit the revoked partitions' offsets");
                }
            }
        }
        let mut s = self.state.lock();
        // Eager rebalancing takes every partition and an assignment follows: until it
        // comes, `--exit-at-end` has nothing to look at (no partition is not the end).
        if !cooperative || s.owned.len() <= keys.len() {
            s.assigned = false;
        }
        for k in keys {
            if let Some(o) = s.owned.remove(&k) {
                tracing::info!(topic = %k.0, partition = k.1, epoch = o.epoch, "Kafka partition revoked");
                let metrics = &self.registry.kafka_source;
                metrics.revoked.fetch_add(1, Ordering::Relaxed);
                let mut partitions = metrics.partitions.lock();
                let m = partitions.entry(k).or_default();
                m.owned = false;
                m.lag = None;
                m.consumed += o.consumed;
            }
        }
    }
}

/// Whether the writer thread has ended (then no checkpoint is coming).
fn writer_ended(registry: &Registry) -> bool {
    registry.thread_index(Role::Writer).is_none_or(|t| {
        matches!(
            registry.thread_status(t).0,
            ThreadState::Finished | ThreadState::Failed
        )
    })
}

impl State {
    /// Adds the messages read of each partition owned since the last call to the metrics.
    fn publish_consumed(&mut self, registry: &Registry) {
        let mut partitions = registry.kafka_source.partitions.lock();
        for (k, o) in self.owned.iter_mut().filter(|(_, o)| o.consumed > 0) {
            partitions.entry(k.clone()).or_default().consumed += o.consumed;
            o.consumed = 0;
        }
    }

    /// Appends message `offset` of `key` to the batch in hand, as the next work item (or skips
    /// it: an earlier run wrote it); `payload` is `None` for a tombstone.
    fn take(
        &mut self,
        key: &PartitionKey,
        offset: i64,
        payload: Option<&[u8]>,
        ctx: &SourceContext,
    ) {
        let Some(owned) = self.owned.get_mut(key) else {
            // Of a partition revoked meanwhile: its next owner reads it.
            return;
        };
        if let Some(expected) = owned.next.filter(|&n| offset > n) {
            self.jumps.push((key.clone(), expected, offset));
        }
        owned.next = Some(offset + 1);
        owned.eof = false;
        owned.consumed += 1;
        let at = offset.max(0) as u64;
        if ctx.journal && owned.skip_below.is_some_and(|b| at < b) && ctx.positions.skip(key, at) {
            self.report.stats.skipped += 1;
            owned.unsettled.push_back((DURABLE, offset + 1));
            return;
        }
        let item = self.next_seq;
        self.next_seq += 1;
        if ctx.journal {
            ctx.positions.message(item, key, at);
            owned.unsettled.push_back((item, offset + 1));
        }
        self.url.clear();
        self.url.push_str(&key.0);
        self.url.push('/');
        self.url.push_str(itoa::Buffer::new().format(key.1));
        self.url.push('@');
        self.url.push_str(itoa::Buffer::new().format(offset));
        if ctx.batch_per_partition {
            if !self.batch.is_empty() && self.batch_partition != *key {
                self.set_batch_aside();
            }
            if self.batch.is_empty() {
                self.batch_partition.clone_from(key);
            }
        }
        if self.batch.is_empty() {
            // One clock reading a batch, not one a message (in this loop a reading costs
            // about what taking a message does): a batch is filled from what librdkafka has
            // in hand, in one go, and shipped when it has no more.
            self.batch_at = Instant::now();
            if self.batch.ticket.is_none() {
                if let Some(c) = &self.chans {
                    self.batch.ticket = Some(c.live.ticket());
                }
            }
        }
        let stats = &mut self.report.stats;
        stats.requests += 1;
        let now = self.batch_at;
        match payload {
            Some(body) if !body.is_empty() => {
                stats.delivered += 1;
                stats.body_bytes += body.len() as u64;
                self.batch.push_body(&self.url, body, 1, now);
            }
            payload => {
                let why = match payload {
                    None => "the message has no payload (a tombstone)",
                    Some(_) => "the message is empty",
                };
                let detail = format!("{}: {why}", self.url);
                stats.fail("empty message", &self.url, &detail);
                self.batch.push_failure(&self.url, detail, 1, now);
            }
        }
        self.batch.set_seq(item);
        // The parser then tells the writer which messages gave rows (their offsets go into the
        // files' metadata and the per-partition ledger).
        self.batch.kafka_messages = true;
    }

    fn full(&self, ctx: &SourceContext) -> bool {
        self.batch.len() >= ctx.batch_max_messages || self.batch.arena.len() >= ctx.batch_max_bytes
    }

    /// Whether to ship after a take: the batch in hand is full, or a switch of partition set
    /// the last one aside; not while an older batch waits for room (the loop pauses the
    /// partitions and ships it then).
    fn ship_due(&self, ctx: &SourceContext) -> bool {
        match self.held.len() {
            0 => self.full(ctx),
            1 => self.set_aside,
            _ => false,
        }
    }

    /// Moves the batch in hand to the back of `held` (it holds another partition's messages
    /// than the next one) and starts the next batch.
    fn set_batch_aside(&mut self) {
        let next = self.chans.as_ref().and_then(|c| c.recycled.try_recv().ok());
        let mut next = next.unwrap_or_default();
        next.shrink_arena(self.arena_bound);
        let aside = std::mem::replace(&mut self.batch, next);
        self.held.push_back(aside);
        self.set_aside = true;
    }

    /// Sends the held batches, then the batch in hand when `all`. Without `block`, what the
    /// parse queue has no room for within [`PATIENCE`] stays held.
    fn ship(&mut self, all: bool, block: bool) -> Result<()> {
        self.set_aside = false;
        loop {
            let Some(chans) = &self.chans else {
                return Ok(());
            };
            let b = match self.held.pop_front() {
                Some(b) => b,
                None if !self.batch.is_empty() && all => {
                    let mut next = chans.recycled.try_recv().unwrap_or_default();
                    next.shrink_arena(self.arena_bound);
                    std::mem::replace(&mut self.batch, next)
                }
                None => return Ok(()),
            };
            let (registry, thread) = (&chans.registry, chans.thread);
            if block {
                registry.set_state(thread, ThreadState::BlockedOutput);
                let started = Instant::now();
                chans.out.send(b).map_err(|_| downstream_gone())?;
                self.report.stats.blocked += started.elapsed();
                registry.set_state(thread, ThreadState::Working);
            } else {
                // A short wait first: pausing makes librdkafka drop what it prefetched and
                // fetch it again on resume, far dearer than a moment's wait for a parser.
                registry.set_state(thread, ThreadState::BlockedOutput);
                let started = Instant::now();
                let sent = chans.out.send_timeout(b, PATIENCE);
                self.report.stats.blocked += started.elapsed();
                registry.set_state(thread, ThreadState::Working);
                match sent {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(b)) => {
                        self.held.push_front(b);
                        return Ok(());
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Err(downstream_gone()),
                }
            }
            registry.set_queue_depth(QueueId::Bodies, chans.out.len());
        }
    }

    /// Marks at their end the partitions whose next offset reached the high watermark of
    /// their last fetch (librdkafka's cached one: no request). Its "end of partition" event
    /// comes only with the next fetch, which on a partition read to its end waits
    /// `fetch.wait.max.ms` (500 ms) for nothing. (Not the watermark `fetch_watermarks`
    /// reads on assignment: Tansu answers that with the first offset of its last batch.)
    fn reached_fetched_ends(&mut self, consumer: &BaseConsumer<SourceContext>) {
        for (k, o) in self.owned.iter_mut().filter(|(_, o)| !o.eof) {
            let Some(next) = o.next else { continue };
            // (Negative until a fetch came.)
            if cached_watermarks(consumer, k).is_some_and(|(_, high)| high >= 0 && next >= high) {
                o.eof = true;
            }
        }
    }

    /// Whether every partition owned reached its end (`--exit-at-end`).
    fn at_end(&self) -> bool {
        self.assigned && self.owned.values().all(Owned::at_end)
    }

    /// librdkafka reached the end of partition number `partition` (of which topic, it does
    /// not say): with one topic, or one partition of that number owned, that one; otherwise
    /// those of that number past the high watermark of their assignment.
    fn end_of_partition(&mut self, partition: i32) {
        let owned = self.owned.iter().filter(|(k, _)| k.1 == partition).count();
        for (_, o) in self.owned.iter_mut().filter(|(k, _)| k.1 == partition) {
            if owned == 1 || o.past_watermark() {
                o.eof = true;
            }
        }
    }
}

/// The low and high watermarks of partition `k` that its last fetch response carried (the
/// log's start and end), as librdkafka keeps them (`rd_kafka_get_watermark_offsets`, which
/// rdkafka does not wrap: no request, no wait); `None` when librdkafka knows no such
/// partition.
fn cached_watermarks(
    consumer: &BaseConsumer<SourceContext>,
    k: &PartitionKey,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(k.0.as_str()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer lives as long as `consumer`; `topic` is a NUL-terminated
    // string that outlives the call, which only reads it; `low` and `high` are valid for
    // writes. librdkafka takes its own locks.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            k.1,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).then_some((low, high))
}

/// Partition `k`'s messages jumped from the expected offset `expected` to `came` (a message's
/// offset, or the partition's end where librdkafka said it is). The offsets between that lie below the
/// log's start, as the fetch that brought `came` said, were deleted by the broker before this
/// member read them (retention; librdkafka then moves the position to where
/// `auto.offset.reset` says): logged as a warning and counted
/// (`pinflow_kafka_offsets_deleted_unread_total`, the summary). Past the log's start, with
/// `auto.offset.reset=latest`, the reset skipped messages the broker still had: reported and
/// counted as well (`pinflow_kafka_offsets_skipped_by_reset_total`). Otherwise the offsets
/// past the log's start hold no message (compacted away, transaction markers) and are not
/// reported.
fn report_lost_offsets(
    consumer: &BaseConsumer<SourceContext>,
    ctx: &SourceContext,
    registry: &Registry,
    (k, expected, came): (PartitionKey, i64, i64),
) {
    let Some((low, _)) = cached_watermarks(consumer, &k) else {
        return;
    };
    let deleted_to = low.min(came);
    if deleted_to <= expected {
        return;
    }
    let (topic, partition) = (&k.0, k.1);
    tracing::warn!(
        "Kafka: offsets {expected}..{deleted_to} of {topic}/{partition} were deleted by the \
         broker before they were read (retention): their messages are not in the output"
    );
    // (The position was gone, so librdkafka reset it: to the end, with this setting.)
    let skipped = match ctx.reset_to_end {
        true => came - deleted_to,
        false => 0,
    };
    if skipped > 0 {
        tracing::warn!(
            "Kafka: offsets {deleted_to}..{came} of {topic}/{partition} were skipped: their \
             messages were still on the broker, but auto.offset.reset=latest moved the \
             position past them; they are not in the output"
        );
    }
    {
        let mut partitions = registry.kafka_source.partitions.lock();
        let p = partitions.entry(k.clone()).or_default();
        p.deleted_unread += (deleted_to - expected) as u64;
        p.skipped_by_reset += skipped as u64;
    }
}

/// Whether the properties set `auto.offset.reset` to the end (`latest`, or its synonyms
/// `largest` and `end`); pinflow's default is `earliest`.
fn resets_to_end(properties: &[(String, String)]) -> bool {
    properties
        .iter()
        .rev()
        .find(|(k, _)| k == "auto.offset.reset")
        .is_some_and(|(_, v)| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "latest" | "largest" | "end"
            )
        })
}

/// librdkafka's configuration of the consumer: `auto.offset.reset=earliest` unless the
/// properties say otherwise, then the properties, then what pinflow sets itself.
fn client_config(s: &KafkaSource) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("auto.offset.reset", "earliest");
    for (k, v) in &s.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &s.brokers)
        .set("group.id", &s.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set_log_level(crate::kafka::log_level());
    if !s
        .properties
        .iter()
        .any(|(k, _)| k == "statistics.interval.ms")
    {
        // The consumer lag of the metrics (`SourceContext::stats`).
        c.set("statistics.interval.ms", "1000");
    }
    // Its "end of partition" events say when a partition is read to its end: for
    // `--exit-at-end`, and in any run for offsets lost (deleted by retention, skipped by a
    // reset to the end) with no message after them, which nothing else would show until a
    // message came. (One event each time a partition is caught up with: cheap.)
    c.set("enable.partition.eof", "true");
    if !s
        .properties
        .iter()
        .any(|(k, _)| k == "fetch.queue.backoff.ms")
    {
        // Once more than `queued.min.messages` (100000) wait in its queue, librdkafka fetches
        // again only after this; its default, 1 s, left the loop without messages for most
        // of that second each time the parse threads fell behind for a moment.
        c.set("fetch.queue.backoff.ms", "10");
    }
    c
}

/// Consumes `source` until `stop` (or, with `--exit-at-end`, the partitions' ends), then
/// drains (see the module documentation).
pub(crate) fn run(
    source: KafkaSource,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    let registry = Arc::clone(&chans.registry);
    let thread = chans.thread;
    let next_seq = chans.skip.last().map_or(0, |l| l + 1);
    let ctx = SourceContext {
        state: Mutex::new(State {
            chans: Some(chans),
            batch: BodyBatch::default(),
            held: VecDeque::new(),
            batch_partition: (String::new(), 0),
            set_aside: false,
            paused: false,
            report: IngestReport::default(),
            next_seq,
            owned: HashMap::default(),
            epochs: 0,
            assigned: false,
            url: String::new(),
            arena_bound: 2 * source.batch_max_bytes,
            batch_at: Instant::now(),
            jumps: Vec::new(),
        }),
        positions: Arc::clone(&source.positions),
        journal: source.journal,
        registry: Arc::clone(&registry),
        revoke_wait: source.revoke_wait,
        reset_to_end: resets_to_end(&source.properties),
        batch_max_messages: source.batch_max_messages.max(1),
        batch_max_bytes: source.batch_max_bytes,
        batch_per_partition: source.batch_per_partition,
        failure: Mutex::new(None),
        errors: crate::kafka::ClientErrors::default(),
        messages: queue::QueueSlot::default(),
        rebalances: AtomicU64::new(0),
    };
    let consumer: BaseConsumer<SourceContext> = client_config(&source)
        .create_with_context(ctx)
        .map_err(|e| {
            let why = crate::kafka::without_values(&e, &source.properties);
            Error::config(
                "kafka.properties",
                format!("librdkafka refused the consumer's configuration: {why}"),
            )
        })?;
    // (Before the subscription: its first assignment forwards the partitions there.)
    // SAFETY: the consumer is live, and the queue, declared after it, drops before it (also
    // in `finish`).
    let slot = Arc::clone(&consumer.context().messages);
    let mut messages = unsafe { MessageQueue::new(consumer.client().native_ptr(), slot) }
        .ok_or_else(|| Error::Source {
            source_name: source.describe(),
            why: "librdkafka gave no message queue".to_string(),
        })?;
    let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| Error::Source {
        source_name: source.describe(),
        why: format!("cannot subscribe: {e}"),
    })?;
    tracing::info!(brokers = %source.brokers, topics = %source.topics.join(","), group = %source.group, "Kafka source subscribed");
    registry.set_state(thread, ThreadState::Working);
    registry.kafka_source.active.store(true, Ordering::Relaxed);
    let ctx = Arc::clone(consumer.context());
    let mut last_tick = Instant::now();
    let mut seen_generation = registry.committed.generation();
    let mut last_error = String::new();
    // The partition of the message in hand, kept between messages (no allocation a message).
    let mut key: PartitionKey = (String::new(), 0);
    loop {
        if let Some(e) = ctx.failure.lock().take() {
            return Err(e);
        }
        if stop.load(Ordering::Relaxed) {
            ctx.state.lock().report.interrupted = true;
            break;
        }
        let holding = !ctx.state.lock().held.is_empty();
        // Whether to look for the ends now, not only each tick: the moment librdkafka has
        // nothing more to hand out, or says a partition ended.
        let mut look = false;
        // The consumer's queue first, to its end: rebalances, commits and errors, and any
        // message fetched before its partition was forwarded (older than those forwarded).
        // While a batch is held, only this queue is served, with a short wait.
        let mut wait = match holding {
            true => Duration::from_millis(20),
            false => Duration::ZERO,
        };
        // (Bounded: were a partition's messages to stream in here, the loop still ticks.)
        for _ in 0..ctx.batch_max_messages {
            let rebalances = ctx.rebalances.load(Ordering::Relaxed);
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    let mut s = ctx.state.lock();
                    key.0.clear();
                    key.0.push_str(m.topic());
                    key.1 = m.partition();
                    s.take(&key, m.offset(), m.payload(), &ctx);
                    if s.ship_due(&ctx) {
                        let full = s.full(&ctx);
                        s.ship(full, false)?;
                    }
                }
                // (Rare: an end reached before the partition's queue was forwarded to
                // `messages`. rdkafka's error says neither the topic nor the offset, so
                // offsets lost just before it are reported when a message comes.)
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    ctx.state.lock().end_of_partition(partition);
                    look = true;
                }
                Some(Err(e)) => report_error(e.to_string(), &mut last_error),
                None if ctx.rebalances.load(Ordering::Relaxed) != rebalances => {}
                // A log line or statistics served: more may wait (see `events_waiting`).
                None if messages.events_waiting() => {}
                None => break,
            }
            wait = Duration::ZERO;
        }
        if !holding {
            let (in_hand, room) = {
                let s = ctx.state.lock();
                (
                    !s.batch.is_empty(),
                    ctx.batch_max_messages.saturating_sub(s.batch.len()),
                )
            };
            let wait = if in_hand { Duration::ZERO } else { IDLE_WAIT };
            let mut s = None;
            let mut took = 0;
            let mut shipped = Ok(());
            messages.take(room, wait, |m| {
                let s = s.get_or_insert_with(|| ctx.state.lock());
                match m {
                    Taken::Message {
                        topic,
                        partition,
                        offset,
                        payload,
                    } => {
                        took += 1;
                        if key.0 != topic {
                            key.0.clear();
                            key.0.push_str(topic);
                        }
                        key.1 = partition;
                        s.take(&key, offset, payload, &ctx);
                        // (Full by bytes before by count: large messages.)
                        if s.ship_due(&ctx) && shipped.is_ok() {
                            let full = s.full(&ctx);
                            shipped = s.ship(full, false);
                        }
                    }
                    Taken::End {
                        topic,
                        partition,
                        offset,
                    } => {
                        let k = (topic.to_string(), partition);
                        // (Messages deleted with none after them, or skipped by a reset to
                        // the end, show only here.) The position moves to the end at once,
                        // so that a message coming next is no second jump from `next`.
                        let jumped = s.owned.get_mut(&k).and_then(|o| {
                            o.eof = true;
                            let next = o.next.filter(|&n| offset > n)?;
                            o.next = Some(offset);
                            Some(next)
                        });
                        if let Some(next) = jumped {
                            s.jumps.push((k, next, offset));
                        }
                        look = true;
                    }
                    Taken::Error(text) => report_error(text, &mut last_error),
                }
            });
            shipped?;
            let mut s = s.unwrap_or_else(|| ctx.state.lock());
            if took == 0 {
                // librdkafka has no more in hand: the batch goes as it is.
                s.ship(true, false)?;
                look = true;
            }
        }
        // (Rare: a jump is a compacted topic's gap, a transaction marker, or retention.)
        let jumps = std::mem::take(&mut ctx.state.lock().jumps);
        for jump in jumps {
            report_lost_offsets(&consumer, &ctx, &registry, jump);
        }
        pause_or_resume(&consumer, &ctx)?;
        // A checkpoint's offsets go to the group at once, not at the next tick: until they
        // do, a kill -9 leaves the group behind the journal (see usage, "Not exactly once").
        let generation = registry.committed.generation();
        if generation != seen_generation {
            seen_generation = generation;
            commit_settled(&consumer, &ctx, CommitMode::Async);
        }
        let tick = last_tick.elapsed() >= TICK;
        if tick {
            last_tick = Instant::now();
            let mut s = ctx.state.lock();
            s.publish_consumed(&registry);
            registry.publish_fetch(&s.report.stats, 0, 0);
            registry.heartbeat(thread);
        }
        if (tick || look) && source.exit_at_end && reached_ends(&consumer, &ctx) {
            let s = ctx.state.lock();
            if s.held.is_empty() && s.batch.is_empty() {
                tracing::info!("Kafka source: every assigned partition reached its end");
                break;
            }
        }
    }
    finish(consumer, messages, &ctx, &registry, thread)
}

/// Logs a consumer error librdkafka reports, unless it is the one logged last.
fn report_error(text: String, last: &mut String) {
    if text != *last {
        tracing::warn!(error = %text, "Kafka consumer");
        *last = text;
    }
}

/// Pauses the assigned partitions while a batch is held (the parse queue is full), and
/// resumes them once it went.
fn pause_or_resume(consumer: &BaseConsumer<SourceContext>, ctx: &SourceContext) -> Result<()> {
    let mut s = ctx.state.lock();
    if !s.held.is_empty() {
        s.ship(false, false)?;
    }
    let want = !s.held.is_empty();
    if want == s.paused {
        return Ok(());
    }
    s.paused = want;
    drop(s);
    // (Each pause drops what librdkafka prefetched: the resume fetches it again.)
    match want {
        true => tracing::debug!("Kafka: the parse queue stays full: pausing the partitions"),
        false => tracing::debug!("Kafka: the parse queue has room: resuming the partitions"),
    }
    let assigned = consumer.assignment().unwrap_or_default();
    let r = match want {
        true => consumer.pause(&assigned),
        false => consumer.resume(&assigned),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, paused = want, "Kafka: could not pause or resume the partitions");
    }
    Ok(())
}

/// Commits to the group the offsets whose messages a checkpoint made durable: those that
/// moved (asynchronously, as the run goes), or, `Sync` at the end, every one known.
fn commit_settled(consumer: &BaseConsumer<SourceContext>, ctx: &SourceContext, mode: CommitMode) {
    if !ctx.journal {
        return;
    }
    let every = matches!(mode, CommitMode::Sync);
    let mut commit = TopicPartitionList::new();
    {
        let mut s = ctx.state.lock();
        for (k, o) in s.owned.iter_mut() {
            let moved = o.settle(&ctx.registry.committed);
            if let Some(to) = if every { o.durable } else { moved } {
                let _ = commit.add_partition_offset(&k.0, k.1, Offset::Offset(to));
            }
        }
    }
    if commit.count() > 0 {
        if let Err(e) = consumer.commit(&commit, mode) {
            tracing::warn!(error = %e, "Kafka: could not commit offsets to the group");
        }
    }
}

/// Whether every assigned partition reached its end (see [`Owned::at_end`]); fetches the
/// high watermarks of the assignments not known yet.
fn reached_ends(consumer: &BaseConsumer<SourceContext>, ctx: &SourceContext) -> bool {
    let unknown: Vec<PartitionKey> = {
        let s = ctx.state.lock();
        if !s.assigned {
            return false;
        }
        s.owned
            .iter()
            .filter(|(_, o)| o.end.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    };
    for k in unknown {
        match consumer.fetch_watermarks(&k.0, k.1, REQUEST_TIMEOUT) {
            Ok((low, high)) => {
                tracing::debug!(topic = %k.0, partition = k.1, low, high, "Kafka: the partition's watermarks, read after its assignment");
                if let Some(o) = ctx.state.lock().owned.get_mut(&k) {
                    o.end = Some((high, high <= low));
                }
            }
            Err(e) => {
                tracing::warn!(topic = %k.0, partition = k.1, error = %e, "Kafka: the partition's end could not be read; trying again");
            }
        }
    }
    let mut s = ctx.state.lock();
    s.reached_fetched_ends(consumer);
    s.at_end()
}

/// The end: ships what is held, lets the pipeline drain, waits for the writer's last
/// checkpoint (with a journal) and commits its offsets, then leaves the group.
fn finish(
    consumer: BaseConsumer<SourceContext>,
    messages: MessageQueue,
    ctx: &SourceContext,
    registry: &Registry,
    thread: usize,
) -> Result<IngestReport> {
    {
        let mut s = ctx.state.lock();
        s.ship(true, true)?;
        s.publish_consumed(registry);
        registry.publish_fetch(&s.report.stats, 0, 0);
        // The queues close: the stages after this one drain, and the writer commits its
        // last checkpoint.
        s.chans = None;
    }
    if let Ok(assigned) = consumer.assignment() {
        let _ = consumer.pause(&assigned);
    }
    if ctx.journal {
        registry.set_state(thread, ThreadState::BlockedOutput);
        while !writer_ended(registry) {
            // Polled meanwhile (paused: no message), so that the group keeps this member.
            let _ = consumer.poll(Duration::from_millis(10));
        }
        commit_settled(&consumer, ctx, CommitMode::Sync);
    }
    consumer.unsubscribe();
    // The message queue goes before the consumer (librdkafka's order).
    drop(messages);
    drop(consumer);
    let mut s = ctx.state.lock();
    registry.cycles.fetch_add(1, Ordering::Relaxed);
    Ok(std::mem::take(&mut s.report))
}

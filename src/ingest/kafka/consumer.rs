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
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Message};

use super::landing::GroupMeta;
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
/// How long a running source lets the writer's pending checkpoint wait for its offsets to be
/// committed to the group (a broker outage) before the checkpoint fails: librdkafka's
/// default `max.poll.interval.ms`, after which the group itself gives up on a member that
/// makes no progress.
const LANDING_PATIENCE: Duration = Duration::from_secs(300);
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
    /// The metadata of the group's offset as this member last read or committed it.
    meta: GroupMeta,
    /// The group's committed offset when the partition was assigned, if it had one.
    group_offset: Option<u64>,
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

    /// Takes the messages at the front that a checkpoint committed, moving `durable` past
    /// them.
    fn settle(&mut self, committed: &crate::metrics::live::CommittedItems) {
        while let Some(&(item, next)) = self.unsettled.front() {
            if item != DURABLE && !committed.contains(item) {
                break;
            }
            // (Never back: `commit_durable` may have raised it to the journal's position.)
            self.durable = self.durable.max(Some(next));
            self.unsettled.pop_front();
        }
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
    /// The journal's number and its last checkpoint when the run began (see
    /// [`super::landing`]).
    journal_id: u64,
    journal_checkpoint: u64,
    /// When a failed commit of a pending checkpoint's offsets was last logged.
    landing_warned: Mutex<Option<Instant>>,
    /// Since when the writer's pending checkpoint has waited for offsets the group did not
    /// take (see [`serve_landing`]).
    landing_stuck: Mutex<Option<Instant>>,
    /// Per partition, the last checkpoint whose offsets this run committed to the group
    /// (whoever owns the partition now).
    landed: Mutex<HashMap<PartitionKey, u64>>,
    /// A pending checkpoint failed to land: nothing more is committed to the group (a commit
    /// would land part of it; the next run decides it).
    commits_stopped: AtomicBool,
    /// The source is at its end (`finish`): a checkpoint waits no longer than `revoke_wait`.
    stopping: AtomicBool,
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

// (Offset commits answer on a queue of their own, `commit_within`: no commit callback.)
impl ConsumerContext for SourceContext {
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
    /// The checkpoint the offsets committed now hold, given the last one the writer added in
    /// this run (0: none yet, so the journal's last one from before).
    fn checkpoint_tag_of(&self, added: u64) -> u64 {
        added.max(self.journal_checkpoint)
    }

    /// The writer's pending checkpoint, if it waits for one, and the partitions it moved
    /// whose offsets this run has not committed to the group yet.
    fn unlanded_pending(&self) -> Option<(u64, Vec<PartitionKey>)> {
        let wanted = self.registry.committed.landing_wanted()?;
        let landed = self.landed.lock();
        let unlanded = self
            .positions
            .last_moved()
            .into_iter()
            .filter(|k| landed.get(k).is_none_or(|&n| n < wanted))
            .collect();
        Some((wanted, unlanded))
    }

    /// The writer's pending checkpoint cannot land: it fails (the run stops with `why`), and
    /// nothing more is committed to the group.
    fn fail_landing(&self, why: String) {
        self.commits_stopped.store(true, Ordering::Relaxed);
        tracing::error!(reason = %why, "Kafka: a checkpoint's offsets cannot be committed to the group");
        self.registry.committed.landing_failed(why);
    }

    /// Whether a checkpoint took the journal's positions and had not shown its number yet
    /// (between `SourcePosition::commit` and `CommittedItems::add_checkpoint`), by the last
    /// checkpoint added (`added`) and the checkpoints that took the positions (`took`), each
    /// read once.
    fn positions_in_flight(&self, added: u64, took: u64) -> bool {
        self.journal_checkpoint + took > self.checkpoint_tag_of(added)
    }

    /// The partitions of `tpl`, just committed, hold the offsets of checkpoint `tag`.
    fn record_landed(&self, tpl: &TopicPartitionList, tag: u64) {
        let mut landed = self.landed.lock();
        for e in tpl.elements() {
            let n = landed
                .entry((e.topic().to_string(), e.partition()))
                .or_default();
            *n = (*n).max(tag);
        }
    }

    /// Partitions come: each starts at the journal's position, or the group's committed
    /// offset when that is further; without a journal position, where librdkafka says (the
    /// committed offset, else `auto.offset.reset`).
    fn assigning(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let keys = keys_of(tpl);
        // Where the journal resumes, or past it what this run shipped before the partition was
        // taken away (a lost session, a revocation that did not wait for its checkpoint):
        // those messages are still on their way to a checkpoint of this run.
        let saved: Vec<(PartitionKey, u64)> = keys
            .iter()
            .filter_map(|k| {
                let resume = self.positions.resume_at(k)?;
                let shipped = self.positions.shipped_end(k).unwrap_or(0);
                Some((k.clone(), resume.max(shipped)))
            })
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
        let meta_of = |k: &PartitionKey| match &group {
            None => GroupMeta::unknown(),
            Some(g) => g
                .find_partition(&k.0, k.1)
                .map_or_else(GroupMeta::unknown, |e| {
                    GroupMeta::of_offset(e.metadata(), committed_of(k).is_some())
                }),
        };
        let mut behind = false;
        let mut starts: HashMap<PartitionKey, u64> = HashMap::new();
        for (k, resume) in saved {
            let committed = committed_of(&k);
            let start = committed.map_or(resume, |c| c.max(resume));
            // The journal holds more than the group knows: a partition given back before
            // the group took its checkpoint's offsets (a refused commit, a lost session), or
            // a journal of a pinflow before two-phase checkpoints. Committed below, with the
            // checkpoint those positions belong to (`commit_durable`).
            behind |= committed.is_none_or(|c| c < resume);
            if let Err(e) = tpl.set_partition_offset(&k.0, k.1, Offset::Offset(start as i64)) {
                tracing::warn!(topic = %k.0, partition = k.1, error = %e, "Kafka: could not set the start offset");
            }
            starts.insert(k, start);
        }
        // A pending checkpoint lands whole or not at all: if partitions it moved went to
        // another member meanwhile (given up before the group took their offsets), that
        // member reads their messages again, so it must be undone, and landing it here for
        // the partitions that came back would keep part of it.
        // (One that comes back with the group's offset at or past this journal's position was
        // read on by another member meanwhile.)
        if let Some((wanted, unlanded)) = self.unlanded_pending() {
            let gone: Vec<String> = {
                let s = self.state.lock();
                unlanded
                    .iter()
                    .filter(|k| match keys.contains(k) {
                        true => committed_of(k)
                            .is_some_and(|c| self.positions.resume_at(k).is_none_or(|r| c >= r)),
                        false => !s.owned.contains_key(*k),
                    })
                    .map(|(t, p)| format!("{t}/{p}"))
                    .collect()
            };
            if !gone.is_empty() {
                self.fail_landing(format!(
                    "partitions {} it holds went to another member of the group before the \
                     group took their offsets (a rebalance whose commit the broker refused, or \
                     this member's session expired), so checkpoint {wanted} must not stand",
                    gone.join(", ")
                ));
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
            let (meta, group_offset) = (meta_of(&k), committed_of(&k));
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
                    meta,
                    group_offset,
                },
            );
        }
        drop(s);
        if behind {
            match commit_durable(consumer, self) {
                Ok(_) => {
                    let _ = answer_if_landed(self);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka: could not commit the journal's positions to the group")
                }
            }
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
        // A lost assignment (this member fenced: its session expired) can commit nothing:
        // its partitions' checkpoints land when they come back, or fail (see `serve_landing`).
        if self.journal && !consumer.assignment_lost() {
            let shipped = ship_all(consumer, self);
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
                         fetch.shutdown_timeout): those are written here, and the checkpoint \
                         that holds them lands only if the partitions come back (otherwise the \
                         run stops and its restart undoes it)"
                    );
                    break;
                }
                // The writer checkpoints once it holds them all, not at its next rotation.
                self.registry.committed.ask(waiting.ranges().collect());
                // (Its pending checkpoint waits for this thread's commit.)
                let _ = serve_landing(consumer, self);
                std::thread::sleep(Duration::from_millis(10));
            }
            self.registry.committed.ask(Vec::new());
            // Every owned partition's durable offset, while the generation still holds; and
            // the checkpoint that holds them is landed.
            match commit_durable(consumer, self) {
                Ok(_) => {
                    let _ = answer_if_landed(self);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka: could not commit the revoked partitions' offsets")
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
        if owned.next.is_some_and(|n| offset < n) {
            // Handed out again (a resume refetches what a pause purged, from librdkafka's
            // fetch position): taken already in this assignment.
            return;
        }
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

    /// Sends the held batches, then the batch in hand when `all`; what the parse queue has no
    /// room for within [`PATIENCE`] stays held (see [`ship_all`]).
    fn ship(&mut self, all: bool) -> Result<()> {
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
        journal_id: source.journal_id,
        journal_checkpoint: source.journal_checkpoint,
        landing_warned: Mutex::new(None),
        landing_stuck: Mutex::new(None),
        landed: Mutex::new(HashMap::new()),
        commits_stopped: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
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
                        s.ship(full)?;
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
                            shipped = s.ship(full);
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
                s.ship(true)?;
                look = true;
            }
        }
        // (Rare: a jump is a compacted topic's gap, a transaction marker, or retention.)
        let jumps = std::mem::take(&mut ctx.state.lock().jumps);
        for jump in jumps {
            report_lost_offsets(&consumer, &ctx, &registry, jump);
        }
        pause_or_resume(&consumer, &ctx)?;
        // A pending checkpoint's offsets go to the group at once: the writer waits for them.
        let _ = serve_landing(&consumer, &ctx);
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
        s.ship(false)?;
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
    if !want {
        // A pause purges what librdkafka fetched of the partitions, its queues included, and
        // a resume fetches again from its own position, which is not always the next message
        // this loop takes (messages were lost or handed out twice when pauses came often):
        // each partition is sought to the next offset to take first (with none taken yet and
        // no start known, `auto.offset.reset`'s end of it).
        let reset = match ctx.reset_to_end {
            true => Offset::End,
            false => Offset::Beginning,
        };
        let next: Vec<(PartitionKey, Offset)> = {
            let s = ctx.state.lock();
            s.owned
                .iter()
                .map(|(k, o)| (k.clone(), o.next.map_or(reset, Offset::Offset)))
                .collect()
        };
        let mut seek = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            let _ = seek.add_partition_offset(topic, *partition, *offset);
        }
        if seek.count() > 0 {
            if let Err(e) = consumer.seek_partitions(seek, REQUEST_TIMEOUT) {
                tracing::warn!(error = %e, "Kafka: could not seek the partitions to their next messages before resuming");
            }
        }
    }
    let r = match want {
        true => consumer.pause(&assigned),
        false => consumer.resume(&assigned),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, paused = want, "Kafka: could not pause or resume the partitions");
    }
    Ok(())
}

/// Commits to the group, synchronously, the offset up to which each partition owned now is
/// durable, with metadata naming the journal's last checkpoint those offsets hold
/// ([`super::landing`]). Returns that checkpoint's number.
fn commit_durable(
    consumer: &BaseConsumer<SourceContext>,
    ctx: &SourceContext,
) -> rdkafka::error::KafkaResult<u64> {
    if !ctx.journal || ctx.commits_stopped.load(Ordering::Relaxed) {
        return Ok(0);
    }
    let mut commit = TopicPartitionList::new();
    let tag = {
        let mut s = ctx.state.lock();
        // The checkpoint whose items the offsets hold exactly: the same before and after
        // settling (the writer adds a checkpoint's items and its number at once), with no
        // checkpoint between taking the positions and its line (the journal's positions,
        // which a partition given back starts from, would be ahead of its number).
        let tag = loop {
            // (One reading of each counter, before and after: see `positions_in_flight`.)
            let before = ctx.registry.committed.checkpoint();
            let took = ctx.positions.commits();
            if ctx.positions_in_flight(before, took) {
                return Ok(ctx.checkpoint_tag_of(before));
            }
            for (k, o) in s.owned.iter_mut() {
                o.settle(&ctx.registry.committed);
                // The journal's position where it is ahead of the group (a partition given
                // back before the group took its offsets), never behind it.
                let resume = ctx.positions.resume_at(k);
                if let Some(r) = resume.filter(|&r| o.group_offset.is_none_or(|c| r > c)) {
                    o.durable = o.durable.max(Some(r as i64));
                }
            }
            if ctx.registry.committed.checkpoint() == before && ctx.positions.commits() == took {
                break ctx.checkpoint_tag_of(before);
            }
        };
        // A pending checkpoint lands whole: unless every partition it moved not yet landed
        // goes in this commit, none of its offsets go (see `assigning`). (Its number showed
        // with it wanted.)
        if let Some((wanted, unlanded)) = ctx.unlanded_pending() {
            let all_in = unlanded
                .iter()
                .all(|k| s.owned.get(k).is_some_and(|o| o.durable.is_some()));
            if wanted <= tag && !all_in {
                return Ok(tag);
            }
        }
        for (k, o) in s.owned.iter() {
            if let Some(to) = o.durable {
                let mut e = commit.add_partition(&k.0, k.1);
                let _ = e.set_offset(Offset::Offset(to));
                e.set_metadata(o.meta.with(ctx.journal_id, tag).encode());
            }
        }
        tag
    };
    if commit.count() == 0 {
        return Ok(tag);
    }
    commit_within(consumer, &commit, REQUEST_TIMEOUT)?;
    ctx.record_landed(&commit, tag);
    let mut s = ctx.state.lock();
    for e in commit.elements() {
        if let Some(o) = s.owned.get_mut(&(e.topic().to_string(), e.partition())) {
            o.meta = o.meta.with(ctx.journal_id, tag);
        }
    }
    Ok(tag)
}

/// Commits `offsets` to the group and waits for the answer, at most `timeout`. (rdkafka's
/// synchronous commit waits without end while the group has no coordinator, a broker outage:
/// the loop would stop polling, and see no stop.) A commit that timed out may still land
/// later, as librdkafka sends it once a coordinator answers; the next commit carries the same
/// or newer offsets anyway.
fn commit_within(
    consumer: &BaseConsumer<SourceContext>,
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::bindings as rdsys;
    use rdkafka::error::RDKafkaErrorCode;
    let failed = |code: rdsys::rd_kafka_resp_err_t| {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::from(code)))
    };
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live consumer's handle; the queue is ours until destroyed below
    // (librdkafka keeps its own reference for a reply still to come); `offsets` is copied by
    // librdkafka before this returns; the event is destroyed once read.
    unsafe {
        let queue = rdsys::rd_kafka_queue_new(rk);
        if queue.is_null() {
            return failed(rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FAIL);
        }
        let sent =
            rdsys::rd_kafka_commit_queue(rk, offsets.ptr(), queue, None, std::ptr::null_mut());
        let result = if sent != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            failed(sent)
        } else {
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            let event = rdsys::rd_kafka_queue_poll(queue, ms);
            if event.is_null() {
                failed(rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__TIMED_OUT)
            } else {
                let mut err = rdsys::rd_kafka_event_error(event);
                let list = rdsys::rd_kafka_event_topic_partition_list(event);
                if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && !list.is_null()
                {
                    let l = &*list;
                    for i in 0..l.cnt.max(0) as usize {
                        let e = &*l.elems.add(i);
                        if e.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                            err = e.err;
                            break;
                        }
                    }
                }
                rdsys::rd_kafka_event_destroy(event);
                match err {
                    rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
                    e => failed(e),
                }
            }
        };
        rdsys::rd_kafka_queue_destroy(queue);
        result
    }
}

/// Lands the writer's pending checkpoint, if it waits for one: commits the durable offsets,
/// and answers once every partition the checkpoint moved has its offsets committed by this
/// run (now or before, while it owned the partition). A commit the broker refuses (a
/// coordinator moving, a rebalance under way, the broker away, this member fenced) is tried
/// again at the next call, and a partition given up before its offsets were committed may
/// come back (its assignment commits the journal's position). The checkpoint fails (nothing
/// more is committed, the run stops, the next run decides it by what the group holds) when
/// such a partition goes to another member instead (`assigning`), or when it still waits
/// after [`LANDING_PATIENCE`], or `fetch.shutdown_timeout` once the source is stopping.
/// Returns the error of a commit that failed, if one did.
fn serve_landing(
    consumer: &BaseConsumer<SourceContext>,
    ctx: &SourceContext,
) -> Option<KafkaError> {
    if ctx.commits_stopped.load(Ordering::Relaxed) {
        return None;
    }
    let wanted = ctx.registry.committed.landing_wanted()?;
    let error = commit_durable(consumer, ctx).err();
    let Some(missing) = answer_if_landed(ctx) else {
        return error;
    };
    let missing: Vec<String> = missing.iter().map(|(t, p)| format!("{t}/{p}")).collect();
    let since = *ctx.landing_stuck.lock().get_or_insert_with(Instant::now);
    let why = match &error {
        Some(e) => format!("the last commit failed: {e}"),
        None => "this member does not own them now".into(),
    };
    // Running, a broker outage is waited out (back-pressure holds the rest); stopping, no
    // longer than `fetch.shutdown_timeout`.
    let (patience, what) = match ctx.stopping.load(Ordering::Relaxed) {
        true => (ctx.revoke_wait, "fetch.shutdown_timeout after the stop"),
        false => (LANDING_PATIENCE, "max.poll.interval.ms's default"),
    };
    if since.elapsed() >= patience {
        ctx.fail_landing(format!(
            "the offsets of partitions {} were not committed to the group within {patience:?} \
             ({what}; {why})",
            missing.join(", "),
        ));
    } else {
        let mut warned = ctx.landing_warned.lock();
        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *warned = Some(Instant::now());
            tracing::warn!(checkpoint = wanted, partitions = %missing.join(","), reason = %why, "Kafka: a checkpoint waits for its offsets to be committed to the group; trying again");
        }
    }
    error
}

/// Answers the writer's pending checkpoint if every partition it moved has its offsets
/// committed by this run; otherwise returns those that do not (`None`: nothing waits, or
/// answered now).
fn answer_if_landed(ctx: &SourceContext) -> Option<Vec<PartitionKey>> {
    let (wanted, unlanded) = ctx.unlanded_pending()?;
    if !unlanded.is_empty() {
        return Some(unlanded);
    }
    *ctx.landing_stuck.lock() = None;
    ctx.registry.committed.landed(wanted);
    None
}

/// Ships every batch held and the one in hand, however long the parse queue stays full,
/// landing the writer's pending checkpoints meanwhile: the writer waits for those before it
/// takes more, so a plain blocking send could wait for ever.
fn ship_all(consumer: &BaseConsumer<SourceContext>, ctx: &SourceContext) -> Result<()> {
    loop {
        {
            let mut s = ctx.state.lock();
            s.ship(true)?;
            if s.chans.is_none() || (s.held.is_empty() && s.batch.is_empty()) {
                return Ok(());
            }
        }
        let _ = serve_landing(consumer, ctx);
        if writer_ended(&ctx.registry) {
            // Nothing will take these: the run fails with the writer's error.
            return Err(downstream_gone());
        }
    }
}

/// Whether `source`'s group holds journal `id`'s checkpoint `number` in the committed offset
/// of one of `partitions` (each with the end of its messages there; see
/// [`super::landing::landed`]), asked with a consumer that does not join.
pub(super) fn group_holds(
    source: &KafkaSource,
    id: (u64, bool),
    number: u64,
    partitions: &[(PartitionKey, u64)],
) -> std::result::Result<bool, String> {
    let consumer: BaseConsumer = client_config(source)
        .create()
        .map_err(|e| crate::kafka::without_values(&e, &source.properties))?;
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), _) in partitions {
        tpl.add_partition(topic, *partition);
    }
    let found = consumer
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut holds = false;
    for e in found.elements() {
        if let Err(err) = e.error() {
            return Err(format!("{}/{}: {err}", e.topic(), e.partition()));
        }
        let offset = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        let end = partitions
            .iter()
            .find(|((t, p), _)| t == e.topic() && *p == e.partition())
            .map_or(u64::MAX, |&(_, end)| end);
        holds |= super::landing::landed(e.metadata(), offset, id, number, end);
    }
    Ok(holds)
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
    ctx.stopping.store(true, Ordering::Relaxed);
    ship_all(&consumer, ctx)?;
    {
        let mut s = ctx.state.lock();
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
            // Polled meanwhile (paused: no message), so that the group keeps this member,
            // and the writer's pending checkpoints landed.
            let _ = consumer.poll(Duration::from_millis(10));
            let _ = serve_landing(&consumer, ctx);
        }
        if let Err(e) = commit_durable(&consumer, ctx) {
            tracing::warn!(error = %e, "Kafka: could not commit offsets to the group");
        }
    }
    consumer.unsubscribe();
    // The message queue goes before the consumer (librdkafka's order).
    drop(messages);
    drop(consumer);
    let mut s = ctx.state.lock();
    registry.cycles.fetch_add(1, Ordering::Relaxed);
    Ok(std::mem::take(&mut s.report))
}

//! The queue the Kafka source takes its messages from, a batch a call.
//!
//! librdkafka hands a consumer's messages out of the same queue as its rebalances, commits
//! and errors. rdkafka's `poll` takes one of them a call (reading the clock and allocating for
//! each message), and librdkafka's batch call on that queue would serve the rebalances itself,
//! behind the source's callbacks. So each assigned partition's queue is forwarded to a queue
//! of the source's own ([`forward`], from the assignment callback; librdkafka keeps an
//! application's forwarding when it restarts a partition's fetching), whose messages are taken
//! in batches ([`MessageQueue::take`], `rd_kafka_consume_batch_queue`), while the consumer's
//! queue, left with the events, is served by `poll` as before.
//!
//! Order: messages fetched before a partition was forwarded wait in the consumer's queue, and
//! the forwarding happens inside a `poll` of that queue, on the thread that takes messages;
//! so the source empties the consumer's queue before it takes from this one, and a
//! partition's messages arrive in offset order.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;

/// Where the assignment callback finds the queue to forward partitions to: null while there
/// is none.
pub(super) type QueueSlot = Arc<AtomicPtr<rdsys::rd_kafka_queue_t>>;

/// The source's own message queue (see the [module documentation](self)).
pub(super) struct MessageQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The consumer's queue, where its events wait (logs and statistics among them: the main
    /// queue is forwarded there), to see whether any does ([`events_waiting`](Self::events_waiting)).
    events: Option<crate::kafka::EventQueue>,
    /// Holds `queue` while it lives (cleared before it is destroyed, whatever the way out).
    slot: QueueSlot,
    /// The messages of the last [`take`](MessageQueue::take), until its [`Taken`] drops.
    taken: Vec<*mut rdsys::rd_kafka_message_t>,
}

/// One of the messages taken.
pub(super) enum Taken<'a> {
    /// A message of `topic`'s partition `partition`.
    Message {
        topic: &'a str,
        partition: i32,
        offset: i64,
        /// `None` for a tombstone.
        payload: Option<&'a [u8]>,
    },
    /// librdkafka handed out every message of the partition it has (`enable.partition.eof`).
    End {
        topic: &'a str,
        partition: i32,
        /// The partition's end: the offset its next message will have (librdkafka's fetch
        /// position).
        offset: i64,
    },
    /// An error librdkafka reports in place of a message, in words.
    Error(String),
}

impl MessageQueue {
    /// A new queue of the consumer `client`, put in `slot` until it drops; `None` if
    /// librdkafka gives none.
    ///
    /// # Safety
    /// `client` must be a live consumer handle, and the queue must drop before it does.
    pub(super) unsafe fn new(
        client: *mut rdsys::rd_kafka_t,
        slot: QueueSlot,
    ) -> Option<MessageQueue> {
        // SAFETY: per this function's contract.
        let queue = NonNull::new(unsafe { rdsys::rd_kafka_queue_new(client) })?;
        slot.store(queue.as_ptr(), Ordering::Release);
        // SAFETY: per this function's contract.
        let events = unsafe { crate::kafka::EventQueue::consumer(client) };
        Some(MessageQueue {
            queue,
            events,
            slot,
            taken: Vec::new(),
        })
    }

    /// Whether events wait in the consumer's queue (see [`crate::kafka::EventQueue`]): the
    /// loop serves them all each turn.
    pub(super) fn events_waiting(&self) -> bool {
        self.events.as_ref().is_some_and(|q| q.waiting())
    }

    /// Takes up to `max` messages (at least one): what the queue holds now, or, when it holds
    /// none, the first to come within `wait` and what came with it. `each` sees them in
    /// order; they are released when it returns.
    pub(super) fn take(&mut self, max: usize, wait: Duration, mut each: impl FnMut(Taken<'_>)) {
        let max = max.max(1);
        self.taken.clear();
        self.taken.reserve(max);
        self.consume(0, max);
        if self.taken.is_empty() && !wait.is_zero() {
            // (The batch call waits for `max` messages or the timeout: one, then the rest.)
            let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
            self.consume(ms, 1);
            if !self.taken.is_empty() && max > 1 {
                self.consume(0, max - 1);
            }
        }
        for &m in &self.taken {
            // SAFETY: librdkafka handed out `m` and it is destroyed only below.
            each(unsafe { view(&*m) });
        }
        self.release();
    }

    /// Appends up to `n` messages within `timeout_ms` to `taken`.
    fn consume(&mut self, timeout_ms: i32, n: usize) {
        let len = self.taken.len();
        let n = n.min(self.taken.capacity() - len);
        // SAFETY: the spare capacity holds `n` pointers, which librdkafka writes (returning
        // how many); the queue is live.
        let got = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                self.taken.as_mut_ptr().add(len),
                n,
            )
        };
        if got > 0 {
            // SAFETY: librdkafka wrote `got` (at most `n`) pointers after `len`.
            unsafe { self.taken.set_len(len + got as usize) };
        }
    }

    fn release(&mut self) {
        for m in self.taken.drain(..) {
            // SAFETY: each was handed out by librdkafka and is destroyed once.
            unsafe { rdsys::rd_kafka_message_destroy(m) };
        }
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // No assignment forwards to it from now on.
        self.slot.store(std::ptr::null_mut(), Ordering::Release);
        self.release();
        // SAFETY: the queue was made by `rd_kafka_queue_new` and is destroyed once; the
        // partitions still forwarded to it drop what comes after.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// What message `m` is.
///
/// # Safety
/// `m` must be a message librdkafka handed out and not yet destroyed; the view lives as long
/// as it does.
unsafe fn view(m: &rdsys::rd_kafka_message_t) -> Taken<'_> {
    let topic = match m.rkt.is_null() {
        true => "",
        // SAFETY: a message holds its topic handle, whose name is a NUL-terminated string.
        false => unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(m.rkt)) }
            .to_str()
            .unwrap_or(""),
    };
    match m.err {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {
            let payload = (!m.payload.is_null()).then(|| {
                // SAFETY: librdkafka's payload is `len` bytes that live with the message.
                unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) }
            });
            Taken::Message {
                topic,
                partition: m.partition,
                offset: m.offset,
                payload,
            }
        }
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => Taken::End {
            topic,
            partition: m.partition,
            offset: m.offset,
        },
        err => {
            // SAFETY: librdkafka's error string of the message, NUL-terminated.
            let text = unsafe { CStr::from_ptr(rdsys::rd_kafka_message_errstr(m)) };
            Taken::Error(format!(
                "{} ({topic} partition {}): {}",
                rdkafka::error::RDKafkaErrorCode::from(err),
                m.partition,
                text.to_string_lossy()
            ))
        }
    }
}

/// Forwards the queues of the partitions in `tpl` (assigned now) to `queue`.
///
/// # Safety
/// `client` must be the live consumer `queue` belongs to, and `queue` a live queue.
pub(super) unsafe fn forward(
    client: *mut rdsys::rd_kafka_t,
    queue: *mut rdsys::rd_kafka_queue_t,
    tpl: &TopicPartitionList,
) {
    for e in tpl.elements() {
        let Ok(topic) = CString::new(e.topic()) else {
            continue;
        };
        // SAFETY: per this function's contract; the partition's queue handle is released at
        // once (its forwarding stays with the partition).
        unsafe {
            let partition =
                rdsys::rd_kafka_queue_get_partition(client, topic.as_ptr(), e.partition());
            if !partition.is_null() {
                rdsys::rd_kafka_queue_forward(partition, queue);
                rdsys::rd_kafka_queue_destroy(partition);
            }
        }
    }
}

//! `KafkaOutput`: the writer's [`Output`] for `kafka://`. One JSON object per row (the row as
//! `output::row_json` writes it, statistics columns included), produced by an idempotent
//! `BaseProducer` that the writer thread polls itself.
//!
//! Nothing is counted written when it is handed to librdkafka: each message's delivery report
//! settles it ([`Settled`]): acknowledged by the broker, it is written; failed for good
//! (librdkafka has retried until `message.timeout.ms`), it is a dead letter with the broker's
//! reason and the message as its excerpt. When librdkafka's queue is full the writer polls
//! and waits: the pipeline slows down, nothing is dropped. At the end of the input the output
//! waits for every report; after a stop (SIGTERM) for half of `fetch.shutdown_timeout` at
//! most, then purges what is left, whose reports dead-letter it as not acknowledged.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::{ClientContext, Message};

use super::row_json::JsonRows;
use super::{Holds, Output, OutputReport, Settled};
use crate::error::{Error, Result};
use crate::kafka::KafkaTarget;
use crate::metrics::live::KafkaStats;

/// How often the writer wakes to poll for delivery reports while messages are in flight.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The producer's context: collects the delivery reports that `poll` (on the writer thread)
/// runs, for [`Output::take_settled`], and sends librdkafka's own logs to `tracing`.
struct Reports {
    settled: parking_lot::Mutex<Settled>,
    stats: Arc<KafkaStats>,
    /// Connection errors, for the log (once a minute each) and for the reason of a message
    /// that then times out.
    errors: crate::kafka::ClientErrors,
}

impl ClientContext for Reports {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transient (a broker down, retried by librdkafka); a message that fails for good
        // shows in its delivery report, with the last of these as its cause.
        self.errors.report("kafka", &error, reason);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut s = self.settled.lock();
        match result {
            Ok(_) => {
                s.delivered += 1;
                self.stats.delivered.fetch_add(1, Relaxed);
            }
            Err((e, msg)) => {
                let excerpt = msg
                    .payload()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                s.failed.push((excerpt, reason(e, self.errors.last())));
                self.stats.delivery_failed.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A failed delivery's dead-letter reason; a message that timed out names the brokers' last
/// connection error (`last`), which is usually why: "Message timed out" alone does not say
/// that the TLS handshake or the authentication was refused.
fn reason(e: &KafkaError, last: Option<String>) -> String {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::PurgeQueue) => {
            "kafka: not sent before the shutdown timeout (purged from the producer's queue)".into()
        }
        Some(RDKafkaErrorCode::PurgeInflight) => "kafka: not acknowledged before the shutdown \
             timeout (purged in flight: the broker may have it)"
            .into(),
        Some(RDKafkaErrorCode::MessageTimedOut) if last.is_some() => format!(
            "kafka delivery failed: {e}; the brokers' last error: {}",
            last.unwrap_or_default()
        ),
        _ => format!("kafka delivery failed: {e}"),
    }
}

/// How long [`warm_up`] may hold the start when the brokers do not answer.
const WARM_UP_WAIT: Duration = Duration::from_secs(1);

/// Asks for `topic`'s metadata twice, so that the idempotent producer gets its producer id
/// (without which it sends nothing) within milliseconds, not 0.5 to 1 s after its creation.
/// librdkafka asks for the id on its own only from a broker already up, re-checked on a 500 ms
/// timer or on a metadata answer; and it drops the bootstrap connection as soon as the first
/// answer names the cluster's brokers, connecting to those only when something needs them.
/// The second request is that need: it connects to a broker of the cluster, and its answer,
/// from a broker up, gets the id at once. Measured on Tansu: the id 55–60 ms after the
/// producer's creation, against 0.5 s, or 1.0 s when no message was queued before the first
/// answer (the next timer tick then only connects).
/// Brokers that do not answer within [`WARM_UP_WAIT`] are not an error here: the producer
/// goes on connecting in the background (librdkafka's connection errors are logged), and
/// undeliverable messages fail as they would. A broker that answers that the topic does not
/// exist or may not be written gets a warning now, not only dead letters minutes later (which
/// then name that answer as their cause). As the first message would, the request lets a
/// broker that creates topics on demand create it.
fn warm_up(producer: &BaseProducer<Reports>, topic: &str) {
    use rdkafka::types::RDKafkaRespErr as E;
    let until = Instant::now() + WARM_UP_WAIT;
    let mut refused = None;
    for _ in 0..2 {
        let left = until.saturating_duration_since(Instant::now());
        match producer.client().fetch_metadata(Some(topic), left) {
            // (Not "leader not available": the answer for a topic being created.)
            Ok(m) => {
                refused = m.topics().iter().find_map(|t| t.error()).filter(|e| {
                    matches!(
                        e,
                        E::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                            | E::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
                            | E::RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION
                    )
                })
            }
            Err(e) => {
                tracing::info!(
                    "kafka: no metadata for topic `{topic}` within {WARM_UP_WAIT:?} of the \
                     start ({e}): the producer goes on connecting in the background"
                );
                return;
            }
        }
    }
    if let Some(e) = refused {
        let why = format!(
            "the brokers answer for topic `{topic}`: {}",
            RDKafkaErrorCode::from(e)
        );
        tracing::warn!(
            "kafka: {why}; its messages will fail (after message.timeout.ms) unless that changes"
        );
        // The cause the dead letters of messages that then time out give.
        producer.context().errors.set_last(why);
    }
}

/// The Kafka output: see the module documentation.
pub(crate) struct KafkaOutput {
    /// The producer's main queue, where its delivery reports and logs wait (declared before
    /// `producer`: it drops first).
    events: Option<crate::kafka::EventQueue>,
    producer: BaseProducer<Reports>,
    target: KafkaTarget,
    stats: Arc<KafkaStats>,
    /// The pipeline's stop flag: after a stop, [`Output::finish`] waits only so long.
    stop: Option<Arc<AtomicBool>>,
    url: PathBuf,
    /// The message being written (reused: librdkafka copies it).
    payload: Vec<u8>,
    /// Once stopped: until when the brokers may still take what is queued (half of
    /// `fetch.shutdown_timeout` from the stop seen first).
    stop_deadline: std::cell::Cell<Option<Instant>>,
}

impl KafkaOutput {
    /// A producer for `target`, connected where the brokers answer within a second, so that
    /// its producer id follows within milliseconds ([`warm_up`]). A broker that cannot be
    /// reached shows as failed deliveries (after `message.timeout.ms`), not here.
    pub(crate) fn new(
        target: KafkaTarget,
        stats: Arc<KafkaStats>,
        stop: Option<Arc<AtomicBool>>,
    ) -> Result<KafkaOutput> {
        let url = PathBuf::from(format!(
            "{}{}/{}",
            crate::kafka::SCHEME,
            target.brokers,
            target.topic
        ));
        let context = Reports {
            settled: parking_lot::Mutex::default(),
            stats: Arc::clone(&stats),
            errors: crate::kafka::ClientErrors::default(),
        };
        let producer: BaseProducer<Reports> = crate::kafka::client_config(&target)
            .create_with_context(context)
            .map_err(|e| {
                let why = crate::kafka::without_values(&e, &target.properties);
                Error::config("kafka.properties", why)
            })?;
        stats.active.store(true, Relaxed);
        warm_up(&producer, &target.topic);
        // SAFETY: the producer is live, and `events` drops before it (field order).
        let events = unsafe { crate::kafka::EventQueue::main(producer.client().native_ptr()) };
        Ok(KafkaOutput {
            events,
            producer,
            target,
            stats,
            stop,
            url,
            payload: Vec::with_capacity(1024),
            stop_deadline: std::cell::Cell::new(None),
        })
    }

    /// Whether the pipeline was told to stop (SIGTERM).
    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Runs the delivery reports that are ready (waiting up to `wait` for one) and publishes
    /// the queue depth.
    fn poll(&self, wait: Duration) {
        self.producer.poll(wait);
        // Then what already waits, not one event a call (see `EventQueue`): each write polls
        // once, and librdkafka makes several batches of reports a write. (Bounded.)
        for _ in 0..1024 {
            if !self.events.as_ref().is_some_and(|q| q.waiting()) {
                break;
            }
            self.producer.poll(Duration::ZERO);
        }
        let depth = self.producer.in_flight_count().max(0) as u64;
        self.stats.queue_depth.store(depth, Relaxed);
    }

    /// The column number of the message key (`key_field`), if one is configured; a name that
    /// is not a column of the rows is a configuration error naming the columns there are.
    fn key_column(&self, rows: &RecordBatch) -> Result<Option<usize>> {
        let Some(field) = &self.target.key_field else {
            return Ok(None);
        };
        match rows.schema().column_with_name(field) {
            Some((j, _)) => Ok(Some(j)),
            None => {
                let names: Vec<String> = rows
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                Err(Error::config(
                    "kafka.key_field",
                    format!(
                        "`{field}` is not a column of the rows (their columns: {})",
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    /// Sends one message, waiting (polling) while librdkafka's queue is full: back-pressure,
    /// never a drop. An error other than a full queue (a message over `message.max.bytes`)
    /// settles the message at once as failed.
    fn send(&mut self, payload: &[u8], key: Option<&[u8]>) {
        let mut record = BaseRecord::to(&self.target.topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.stats.queue_full_waits.fetch_add(1, Relaxed);
                    // Stopped, and the brokers still take nothing: what is queued is
                    // dead-lettered (purged: its reports fail it), which makes room. (This
                    // wait was bounded only by `message.timeout.ms`, 300 s by default.)
                    if self.past_stop_deadline() {
                        self.purge("the queue stays full");
                    }
                    self.poll(POLL_EVERY);
                }
                Err((e, _)) => {
                    let mut s = self.producer.context().settled.lock();
                    let excerpt = String::from_utf8_lossy(payload).into_owned();
                    s.failed.push((excerpt, reason(&e, None)));
                    self.stats.delivery_failed.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
    }

    /// Waits for every outstanding delivery report; once the pipeline is stopped (before or
    /// during the wait), for half of `fetch.shutdown_timeout` at most: then it purges what is
    /// left, whose reports settle it as failed.
    fn drain(&mut self) {
        while self.producer.in_flight_count() > 0 {
            if self.past_stop_deadline() {
                self.purge("at the end");
                break;
            }
            self.poll(POLL_EVERY);
        }
        self.poll(Duration::ZERO);
    }

    /// Whether the pipeline stopped more than half of `fetch.shutdown_timeout` ago (the
    /// clock starts at the first call that sees the stop).
    fn past_stop_deadline(&self) -> bool {
        if self.stop_deadline.get().is_none() && self.stopped() {
            let deadline = Instant::now() + self.target.shutdown_timeout / 2;
            self.stop_deadline.set(Some(deadline));
        }
        self.stop_deadline
            .get()
            .is_some_and(|u| Instant::now() >= u)
    }

    /// Purges what librdkafka holds (queued and in flight) and takes the purged messages'
    /// failed reports, which dead-letter them.
    fn purge(&self, when: &str) {
        let left = self.producer.in_flight_count();
        tracing::warn!(
            left,
            when,
            "kafka: messages not acknowledged within the shutdown timeout are dead-lettered"
        );
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        // Purged messages get their (failed) reports on the next polls.
        let until = Instant::now() + Duration::from_secs(5);
        while self.producer.in_flight_count() > 0 && Instant::now() < until {
            self.poll(POLL_EVERY);
        }
    }
}

impl Output for KafkaOutput {
    fn write(
        &mut self,
        rows: &RecordBatch,
        _id: Option<u64>,
        _holds: &mut Holds,
    ) -> Result<Vec<(usize, String)>> {
        let key_column = self.key_column(rows)?;
        let json = JsonRows::new(rows);
        let (mut payload, mut key) = (std::mem::take(&mut self.payload), Vec::new());
        for i in 0..rows.num_rows() {
            payload.clear();
            json.write_row(i, &mut payload);
            // The key: a string as its text, any other value as JSON, none for a null.
            let key = key_column.and_then(|j| {
                if let Some(s) = json.str_value(j, i) {
                    return Some(s.as_bytes());
                }
                if rows.column(j).is_null(i) {
                    return None;
                }
                key.clear();
                json.write_value(j, i, &mut key);
                Some(key.as_slice())
            });
            self.send(&payload, key);
        }
        self.payload = payload;
        self.poll(Duration::ZERO);
        Ok(Vec::new())
    }

    fn deadline(&self) -> Option<Instant> {
        (self.producer.in_flight_count() > 0).then(|| Instant::now() + POLL_EVERY)
    }

    fn flush_aged(&mut self, _holds: &mut Holds) -> Result<()> {
        self.poll(Duration::ZERO);
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        false
    }

    fn finalize_all(&mut self, _holds: &mut Holds) -> Result<()> {
        self.poll(Duration::ZERO);
        Ok(())
    }

    fn seal(&mut self) -> Result<Vec<(PathBuf, PathBuf)>> {
        // (No journal with Kafka: refused by `kafka::target`. Settle everything anyway.)
        self.drain();
        Ok(Vec::new())
    }

    fn publish_sealed(&mut self, _holds: &mut Holds) -> Result<()> {
        Ok(())
    }

    fn discard_sealed(&mut self) {}

    fn keep_sealed(&mut self) {}

    fn finish(&mut self, _holds: &mut Holds) -> Result<()> {
        // Without a stop every report is awaited: librdkafka fails a message that cannot be
        // delivered within `message.timeout.ms`, so this ends.
        self.drain();
        Ok(())
    }

    fn abort(&mut self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        self.poll(Duration::ZERO);
    }

    fn take_finalized(&mut self) -> u64 {
        0
    }

    fn report(&self) -> OutputReport {
        OutputReport {
            row_groups: 0,
            files: 0,
            output: Some(self.url.clone()),
        }
    }

    fn deferred(&self) -> bool {
        true
    }

    fn take_settled(&mut self) -> Settled {
        std::mem::take(&mut *self.producer.context().settled.lock())
    }
}

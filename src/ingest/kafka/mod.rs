//! The Kafka source (`--kafka-brokers HOST:PORT --kafka-topics T --kafka-group G`, feature
//! `kafka`): a member of a consumer group, one record per message.
//!
//! - A librdkafka `BaseConsumer` polled on the ingest thread itself (no async runtime) for
//!   its events (rebalances, commits, errors), its messages taken from a queue of the source's
//!   own a batch a call (`queue.rs`). Each message's payload is one body of the batch in
//!   hand, named `TOPIC/PARTITION@OFFSET` (what `{ meta = "kafka_partition" }` and
//!   `kafka_offset` read), and one work item; the parse threads read it as any body: a JSON
//!   object, an array, or NDJSON. A message that is not JSON is a dead letter naming that
//!   name; one without a payload (a tombstone) is a failed item with its reason. So
//!   received = written + dead-lettered.
//! - Its batches are marked [`kafka_messages`](crate::batch::BodyBatch::kafka_messages): the
//!   parser tells the writer which messages gave rows, which each Parquet file records
//!   ([`OFFSETS_KEY`](crate::kafka::offsets::OFFSETS_KEY)) and the per-partition ledger
//!   counts (written, dead-lettered) when a checkpoint commits them.
//! - With `writer.journal`, each checkpoint saves the partitions' committed offset ranges
//!   ([`position`]), and offsets are committed to the group only once the checkpoint that
//!   holds their messages is durable (the writer's [`CommittedItems`]); on assignment a
//!   partition is read from the journal's position (or the group's committed offset, when
//!   that is further, else `auto.offset.reset`), so a kill -9 and a restart write every
//!   message once. Checkpoints are two-phase ([`landing`]): written pending, then their
//!   offsets committed to the group, then confirmed, so that what a member killed in between
//!   wrote is either in the group's offsets or undone by its restart, never both in its files
//!   and read again by another member. Without a journal no offset is committed, and a
//!   restart reads from the group's committed offsets (if any) or `auto.offset.reset` again.
//! - On revocation (a rebalance), the batch in hand is shipped and the callback waits, up to
//!   `fetch.shutdown_timeout`, for the partition's messages to be committed by a checkpoint,
//!   then commits their offsets before the partition moves. Each assignment has its epoch:
//!   work of a partition lost is never committed to the group afterwards.
//! - Back-pressure: when the parse queue stays full for a moment, the assigned partitions are
//!   paused and polling goes on (so `max.poll.interval.ms` is never exceeded), then resumed.
//! - `--exit-at-end`: stops once every assigned partition reached the high watermark it had
//!   when assigned; otherwise it runs until stopped. Either way it then ships what it holds,
//!   lets the pipeline drain, waits for the last checkpoint and commits its offsets.
//!
//! [`CommittedItems`]: crate::metrics::live::CommittedItems

#[cfg(feature = "kafka")]
mod consumer;
pub mod landing;
pub mod position;
#[cfg(feature = "kafka")]
mod queue;

use std::sync::Arc;
use std::time::Duration;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

#[cfg(feature = "kafka")]
pub(crate) use consumer::run;

use self::position::Positions;

/// How long a restart waits before it asks the group a second time whether a pending
/// checkpoint's offsets are there, when the first answer is no (see
/// `KafkaSource::resolve_pending`).
const PENDING_GRACE: Duration = Duration::from_secs(2);

/// A Kafka source (inside [`Source::Kafka`](crate::Source::Kafka)): what to consume, and
/// the positions the journal commits.
pub struct KafkaSource {
    /// `HOST:PORT[,HOST:PORT]`.
    pub(crate) brokers: String,
    /// The topics subscribed to.
    pub(crate) topics: Vec<String>,
    /// The consumer group.
    pub(crate) group: String,
    /// librdkafka properties, passed through (values never logged).
    pub(crate) properties: Vec<(String, String)>,
    /// Stop at the ends the partitions had when assigned.
    pub(crate) exit_at_end: bool,
    /// With a journal: the positions its checkpoints commit.
    pub(crate) positions: Arc<Positions>,
    /// Whether a journal commits the positions (then offsets are committed to the group).
    pub(crate) journal: bool,
    /// How long a revocation waits for its partitions' messages to be durable.
    pub(crate) revoke_wait: Duration,
    /// Messages a batch holds at most (`kafka.batch_max_messages`)...
    pub(crate) batch_max_messages: usize,
    /// ...and message bytes (`kafka.batch_max_bytes`).
    pub(crate) batch_max_bytes: usize,
    /// Every batch holds the messages of one partition (`writer.file_per_kafka_partition`:
    /// the writer files each batch's rows under its partition).
    pub(crate) batch_per_partition: bool,
    /// With a journal: its number and last checkpoint when the run began, what the offsets
    /// committed to the group name in their metadata ([`landing`]).
    pub(crate) journal_id: u64,
    pub(crate) journal_checkpoint: u64,
}

// By hand: the properties may hold secrets (`sasl.password`), so only their names show.
impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaSource")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("properties", &names)
            .field("exit_at_end", &self.exit_at_end)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// A source consuming `topics` from `brokers` as a member of `group`; errors name the
    /// option that is wrong.
    pub fn new(brokers: &str, topics: &[String], group: &str) -> Result<KafkaSource> {
        crate::kafka::check_brokers(brokers).map_err(|why| Error::config("kafka.brokers", why))?;
        if topics.is_empty() {
            return Err(Error::config(
                "kafka.topics",
                "the Kafka source needs the topics to consume (--kafka-topics T[,T])",
            ));
        }
        for t in topics {
            crate::kafka::check_topic(t).map_err(|why| Error::config("kafka.topics", why))?;
        }
        if group.trim().is_empty() {
            return Err(Error::config(
                "kafka.group",
                "the Kafka source needs a consumer group (--kafka-group G): its members \
                 share the partitions, and it holds the committed offsets",
            ));
        }
        Ok(KafkaSource {
            brokers: brokers.to_string(),
            topics: topics.to_vec(),
            group: group.to_string(),
            properties: Vec::new(),
            exit_at_end: false,
            positions: Arc::default(),
            journal: false,
            revoke_wait: crate::config::FetchConfig::default().shutdown_timeout,
            batch_per_partition: false,
            batch_max_messages: KafkaConfig::DEFAULT_BATCH_MAX_MESSAGES,
            batch_max_bytes: KafkaConfig::DEFAULT_BATCH_MAX_BYTES,
            journal_id: 0,
            journal_checkpoint: 0,
        })
    }

    /// The source `cfg`'s `[kafka]` table asks for, when `kafka.brokers`, `kafka.topics` and
    /// `kafka.group` are all set ([`KafkaSource::incomplete`] says which are missing when
    /// only some are).
    pub fn from_config(cfg: &crate::Config) -> Result<Option<KafkaSource>> {
        let k = &cfg.kafka;
        let (Some(brokers), Some(group)) = (k.brokers.as_deref(), k.group.as_deref()) else {
            return Ok(None);
        };
        if k.topics.is_empty() {
            return Ok(None);
        }
        let mut s = KafkaSource::new(brokers, &k.topics, group)?;
        s.exit_at_end = k.exit_at_end;
        s.batch_max_messages = k.batch_max_messages.max(1);
        s.batch_max_bytes = k.batch_max_bytes.max(1);
        s.properties = crate::kafka::properties_of(&k.properties);
        Ok(Some(s))
    }

    /// When some of `kafka.brokers`, `kafka.topics` and `kafka.group` are set but not all:
    /// what is missing, in words.
    pub fn incomplete(cfg: &crate::Config) -> Option<String> {
        let k = &cfg.kafka;
        let set = [
            ("kafka.brokers (--kafka-brokers)", k.brokers.is_some()),
            ("kafka.topics (--kafka-topics)", !k.topics.is_empty()),
            ("kafka.group (--kafka-group)", k.group.is_some()),
        ];
        let missing: Vec<&str> = set.iter().filter(|s| !s.1).map(|s| s.0).collect();
        (!missing.is_empty() && missing.len() < set.len()).then(|| {
            format!(
                "a Kafka source needs kafka.brokers, kafka.topics and kafka.group; {} not set",
                missing.join(" and ")
            )
        })
    }

    /// Stops once every assigned partition reached the end it had when assigned.
    pub fn exit_at_end(mut self, on: bool) -> KafkaSource {
        self.exit_at_end = on;
        self
    }

    /// A batch goes to the parse threads once it holds `messages` messages or `bytes` of
    /// them (`kafka.batch_max_messages`, `kafka.batch_max_bytes`; defaults
    /// [`KafkaConfig::DEFAULT_BATCH_MAX_MESSAGES`] and
    /// [`KafkaConfig::DEFAULT_BATCH_MAX_BYTES`]), or librdkafka has no more in hand.
    pub fn batch_limits(mut self, messages: usize, bytes: usize) -> KafkaSource {
        self.batch_max_messages = messages.max(1);
        self.batch_max_bytes = bytes.max(1);
        self
    }

    /// Adds a librdkafka property (`name`, `value`), passed through.
    pub fn property(mut self, name: &str, value: &str) -> KafkaSource {
        self.properties.push((name.to_string(), value.to_string()));
        self
    }

    /// What the source reads, for messages and the `pinflow.source` metadata.
    pub fn describe(&self) -> String {
        format!(
            "kafka {} topics {} group {}",
            self.brokers,
            self.topics.join(","),
            self.group
        )
    }

    /// With a journal, resumes from the positions its last checkpoint saved and has every
    /// later checkpoint save them; takes the revocation wait from `cfg`.
    pub(crate) fn prepare(
        &mut self,
        cfg: &crate::Config,
        journal: Option<&mut crate::journal::Journal>,
    ) -> Result<()> {
        self.revoke_wait = cfg.fetch.shutdown_timeout;
        self.batch_per_partition = cfg.writer.file_per_kafka_partition;
        let Some(j) = journal else {
            tracing::warn!(
                group = %self.group,
                "Kafka source without writer.journal: no offset is committed to the group, \
                 and a restart reads again from its committed offsets or auto.offset.reset"
            );
            return Ok(());
        };
        self.resolve_pending(j)?;
        let saved = match j.position() {
            Some(text) => position::load(text).map_err(|why| Error::Source {
                source_name: self.describe(),
                why,
            })?,
            None => Vec::new(),
        };
        self.positions.track(saved);
        self.journal = true;
        self.journal_id = j.id();
        self.journal_checkpoint = j.last_checkpoint();
        j.track_position(Arc::clone(&self.positions) as Arc<_>);
        j.set_two_phase(true);
        Ok(())
    }

    /// Keeps or undoes the pending checkpoint a run killed between its journal line and its
    /// group commit left ([`landing`]): it stands if the group's offset of a partition it
    /// moved names it (see [`landing::landed`]). The group must answer: without its offsets
    /// nothing is decided.
    fn resolve_pending(&self, j: &mut crate::journal::Journal) -> Result<()> {
        let Some((number, pending, before)) = j.left_pending() else {
            return Ok(());
        };
        let source_error = |why: String| Error::Source {
            source_name: self.describe(),
            why,
        };
        let moved = landing::moved_partitions(before, pending).map_err(source_error)?;
        let ask = || {
            self.group_holds((j.id(), j.id_derived()), number, &moved)
                .map_err(|why| {
                    source_error(format!(
                        "the journal's checkpoint {number} is pending (a run stopped between it \
                         and its offsets' commit to group {}), and the group's committed \
                         offsets, which decide whether it stands, could not be read: {why}; \
                         run again once the brokers answer",
                        self.group
                    ))
                })
        };
        let stands = match moved.is_empty() {
            // No offset of it to commit: nothing read again can duplicate it.
            true => true,
            // A commit the stopped run sent just before it died may reach the group a moment
            // after this run asks (its member's session still holds): asked again before the
            // checkpoint is undone, as undoing one the group then takes would lose it.
            false => match ask()? {
                true => true,
                false => {
                    std::thread::sleep(PENDING_GRACE);
                    ask()?
                }
            },
        };
        let files = j.resolve_pending(stands)?;
        match stands {
            true => tracing::warn!(
                journal = %j.path().display(),
                checkpoint = number,
                files,
                "the pending checkpoint's offsets are in the group: it stands (its files renamed into place)"
            ),
            false => tracing::warn!(
                journal = %j.path().display(),
                checkpoint = number,
                files,
                "the pending checkpoint's offsets never reached the group: undone (its files \
                 deleted; its messages are read again, by whichever member owns them)"
            ),
        }
        Ok(())
    }

    #[cfg(feature = "kafka")]
    fn group_holds(
        &self,
        id: (u64, bool),
        number: u64,
        partitions: &[(position::PartitionKey, u64)],
    ) -> std::result::Result<bool, String> {
        consumer::group_holds(self, id, number, partitions)
    }

    #[cfg(not(feature = "kafka"))]
    fn group_holds(
        &self,
        _: (u64, bool),
        _: u64,
        _: &[(position::PartitionKey, u64)],
    ) -> std::result::Result<bool, String> {
        Err("this pinflow was built without Kafka (cargo build --features kafka)".into())
    }
}

/// Checks before anything is opened: this build has Kafka.
pub(crate) fn preflight(source: &crate::Source) -> Result<()> {
    if matches!(source, crate::Source::Kafka(_)) && !cfg!(feature = "kafka") {
        return Err(Error::config(
            "kafka.brokers",
            "this pinflow was built without Kafka (cargo build --features kafka)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_names_the_option_that_is_wrong() {
        let topics = vec!["logs".to_string()];
        let e = KafkaSource::new("a", &topics, "g").unwrap_err().to_string();
        assert!(
            e.contains("kafka.brokers") && e.contains("HOST:PORT"),
            "{e}"
        );
        let e = KafkaSource::new("a:1", &[], "g").unwrap_err().to_string();
        assert!(e.contains("kafka.topics"), "{e}");
        let bad = vec!["lo gs".to_string()];
        let e = KafkaSource::new("a:1", &bad, "g").unwrap_err().to_string();
        assert!(e.contains("not a Kafka topic name"), "{e}");
        let e = KafkaSource::new("a:1", &topics, " ")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka.group"), "{e}");
        assert!(KafkaSource::new("a:1,b:2", &topics, "g").is_ok());
    }
}

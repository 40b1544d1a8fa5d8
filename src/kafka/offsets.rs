//! Which Kafka messages a batch, a file or a checkpoint holds: offsets per topic and
//! partition, kept as ranges.
//!
//! The Kafka source names each message `TOPIC/PARTITION@OFFSET` and marks its batches
//! ([`BodyBatch::kafka_messages`](crate::batch::BodyBatch::kafka_messages)); the parser sorts the
//! messages of such a batch into those that gave rows and those that gave only dead letters
//! ([`MessageOutcomes`], carried by the batch's rows to the writer), so the writer learns
//! which messages it writes without asking the source. A Parquet file written from a Kafka
//! source records the messages whose rows it holds under [`OFFSETS_KEY`], as
//! [`OffsetRanges::to_json`] writes them.

use std::fmt::Write;

/// The Parquet key-value metadata key holding the Kafka messages whose rows a file holds:
/// `{"TOPIC/PARTITION":[[FIRST,LAST],...],...}` (see [`OffsetRanges::to_json`]).
pub const OFFSETS_KEY: &str = "pinflow.kafka.offsets";

/// Reads a message name `TOPIC/PARTITION@OFFSET` (the Kafka source's name for each message):
/// topic, partition and offset, or `None` for any other name. A topic never holds `/` or `@`.
pub fn parse_message_name(name: &str) -> Option<(&str, i32, u64)> {
    // (Byte searches, both being ASCII: `rsplit_once` with a char compared each candidate as a
    // string, a visible share of parsing one-record messages.)
    let at = memchr::memrchr(b'@', name.as_bytes())?;
    let slash = memchr::memrchr(b'/', &name.as_bytes()[..at])?;
    Some((
        &name[..slash],
        name[slash + 1..at].parse().ok()?,
        name[at + 1..].parse().ok()?,
    ))
}

/// The name of a file holding rows of `topic`/`partition` whose first offset is `first`
/// (`writer.file_per_kafka_partition`): `TOPIC+PARTITION+OFFSET.parquet`, the offset
/// zero-padded to 20 digits so that names sort by offset, as Kafka Connect's sinks name
/// theirs.
pub fn file_name(topic: &str, partition: i32, first: u64) -> String {
    format!("{topic}+{partition}+{first:020}.parquet")
}

/// Reads a [`file_name`] back: topic, partition and first offset (a topic never holds `+`).
pub fn parse_file_name(name: &str) -> Option<(&str, i32, u64)> {
    let rest = name.strip_suffix(".parquet")?;
    let (rest, first) = rest.rsplit_once('+')?;
    let (topic, partition) = rest.rsplit_once('+')?;
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if topic.is_empty() || first.len() != 20 || !digits(first) || !digits(partition) {
        return None;
    }
    Some((topic, partition.parse().ok()?, first.parse().ok()?))
}

/// One partition's offsets: ranges `[start, end)`, sorted, disjoint and not adjacent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partition {
    topic: String,
    partition: i32,
    ranges: Vec<(u64, u64)>,
}

/// Offsets of Kafka messages by topic and partition, as ranges: a batch's messages, a file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetRanges {
    /// In the order first seen (a batch holds few partitions: a scan finds one).
    partitions: Vec<Partition>,
}

impl OffsetRanges {
    /// Whether no offset is held.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Forgets every offset, keeping the allocations.
    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    /// Adds the message at `offset` of `topic`/`partition`.
    pub fn add(&mut self, topic: &str, partition: i32, offset: u64) {
        self.add_range(topic, partition, offset, offset.saturating_add(1));
    }

    /// Adds the message named `name` (`TOPIC/PARTITION@OFFSET`); `false` (nothing added)
    /// when `name` is not such a name.
    pub fn add_name(&mut self, name: &str) -> bool {
        match parse_message_name(name) {
            Some((topic, partition, offset)) => {
                self.add(topic, partition, offset);
                true
            }
            None => false,
        }
    }

    /// Adds every offset `other` holds.
    pub fn merge(&mut self, other: &OffsetRanges) {
        for p in &other.partitions {
            for &(a, b) in &p.ranges {
                self.add_range(&p.topic, p.partition, a, b);
            }
        }
    }

    /// Whether the message at `offset` of `topic`/`partition` is held.
    pub fn contains(&self, topic: &str, partition: i32, offset: u64) -> bool {
        self.partitions
            .iter()
            .find(|p| p.partition == partition && p.topic == topic)
            .is_some_and(|p| p.ranges.iter().any(|&(a, b)| a <= offset && offset < b))
    }

    /// The one partition held and its first offset: topic, partition, offset; `None` when
    /// none or several partitions are held.
    pub fn single(&self) -> Option<(&str, i32, u64)> {
        match self.partitions.as_slice() {
            [p] => Some((p.topic.as_str(), p.partition, p.ranges.first()?.0)),
            _ => None,
        }
    }

    /// How many messages are held of each partition: topic, partition, count, in topic and
    /// partition order.
    pub fn counts(&self) -> Vec<(&str, i32, u64)> {
        let mut out: Vec<(&str, i32, u64)> = self
            .partitions
            .iter()
            .map(|p| {
                let n = p.ranges.iter().map(|&(a, b)| b - a).sum();
                (p.topic.as_str(), p.partition, n)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The offsets as JSON: an object whose keys are `TOPIC/PARTITION` and whose values are
    /// lists of `[FIRST, LAST]` pairs, both inclusive, one per run of consecutive offsets,
    /// in offset order; keys in topic and partition order. For example
    /// `{"logs/0":[[0,999]],"logs/1":[[0,511],[600,612]]}`.
    pub fn to_json(&self) -> String {
        let mut sorted: Vec<&Partition> = self.partitions.iter().collect();
        sorted.sort_unstable_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let mut out = String::from("{");
        for (i, p) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // A topic is ASCII letters, digits, `.`, `_` and `-`: nothing to escape.
            let _ = write!(out, "\"{}/{}\":[", p.topic, p.partition);
            for (j, &(a, b)) in p.ranges.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, "[{a},{}]", b - 1);
            }
            out.push(']');
        }
        out.push('}');
        out
    }

    /// Adds the offsets `[start, end)` of `topic`/`partition`.
    fn add_range(&mut self, topic: &str, partition: i32, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let at = match self
            .partitions
            .iter()
            .rposition(|p| p.partition == partition && p.topic == topic)
        {
            Some(at) => at,
            None => {
                self.partitions.push(Partition {
                    topic: topic.to_string(),
                    partition,
                    ranges: Vec::new(),
                });
                self.partitions.len() - 1
            }
        };
        let ranges = &mut self.partitions[at].ranges;
        // The usual case: the next message of the partition, or one past a gap.
        match ranges.last_mut() {
            None => return ranges.push((start, end)),
            Some(last) if last.1 == start => {
                last.1 = end;
                return;
            }
            Some(last) if last.1 < start => return ranges.push((start, end)),
            Some(_) => {}
        }
        // Otherwise merge with every range it touches.
        let first = ranges.partition_point(|&(_, b)| b < start);
        let past = ranges.partition_point(|&(a, _)| a <= end);
        let (mut a, mut b) = (start, end);
        if first < past {
            a = a.min(ranges[first].0);
            b = b.max(ranges[past - 1].1);
        }
        ranges.splice(first..past, [(a, b)]);
    }
}

/// What became of the messages of one batch of a Kafka source, as the parser saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageOutcomes {
    /// Messages that gave rows (some of their records may be dead letters), or held no record
    /// at all (whitespace).
    pub written: OffsetRanges,
    /// Messages that gave no row and at least one dead letter (not JSON, a tombstone, every
    /// record rejected).
    pub dead_lettered: OffsetRanges,
}

impl MessageOutcomes {
    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.dead_lettered.is_empty()
    }

    /// Adds every message `other` holds.
    pub fn merge(&mut self, other: &MessageOutcomes) {
        self.written.merge(&other.written);
        self.dead_lettered.merge(&other.dead_lettered);
    }

    /// Forgets every message, keeping the allocations.
    pub fn clear(&mut self) {
        self.written.clear();
        self.dead_lettered.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_are_read_and_other_names_are_not() {
        assert_eq!(parse_message_name("logs/3@17"), Some(("logs", 3, 17)));
        assert_eq!(parse_message_name("a.b-c_d/0@0"), Some(("a.b-c_d", 0, 0)));
        assert_eq!(parse_message_name("http://x/1@2x"), None);
        assert_eq!(parse_message_name("/var/log/a.log@0-4096"), None);
        assert_eq!(parse_message_name("logs@3"), None);
    }

    #[test]
    fn file_names_read_back_and_sort_by_offset() {
        let name = file_name("app.logs", 12, 4100);
        assert_eq!(name, "app.logs+12+00000000000000004100.parquet");
        assert_eq!(parse_file_name(&name), Some(("app.logs", 12, 4100)));
        assert!(file_name("t", 0, 999) < file_name("t", 0, 1000));
        for bad in [
            "t+0+4100.parquet",
            "t+0+0000000000000000410x.parquet",
            "+0+00000000000000004100.parquet",
            "t+-1+00000000000000004100.parquet",
            "t+0+00000000000000004100.parquet.tmp-1",
            "part-00001.parquet",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn single_names_the_one_partition_and_its_first_offset() {
        let mut r = OffsetRanges::default();
        assert_eq!(r.single(), None);
        r.add("logs", 3, 17);
        r.add("logs", 3, 9);
        assert_eq!(r.single(), Some(("logs", 3, 9)));
        r.add("logs", 4, 1);
        assert_eq!(r.single(), None, "two partitions");
    }

    #[test]
    fn offsets_merge_into_ranges_whatever_the_order() {
        let mut r = OffsetRanges::default();
        for o in [5, 6, 7, 1, 2, 9, 3, 8] {
            r.add("logs", 0, o);
        }
        r.add("logs", 1, 0);
        r.add("app", 0, 4);
        assert_eq!(
            r.to_json(),
            r#"{"app/0":[[4,4]],"logs/0":[[1,3],[5,9]],"logs/1":[[0,0]]}"#
        );
        r.add("logs", 0, 4);
        assert_eq!(r.counts(), [("app", 0, 1), ("logs", 0, 9), ("logs", 1, 1)]);
        assert!(r.contains("logs", 0, 9) && !r.contains("logs", 0, 0));
        assert!(!r.contains("logs", 2, 1) && !r.contains("log", 0, 1));

        let mut other = OffsetRanges::default();
        other.add("logs", 0, 20);
        assert!(other.add_name("logs/0@10") && !other.add_name("http://x"));
        other.add("logs", 0, 0);
        r.merge(&other);
        assert_eq!(
            r.to_json(),
            r#"{"app/0":[[4,4]],"logs/0":[[0,10],[20,20]],"logs/1":[[0,0]]}"#
        );
        r.clear();
        assert!(r.is_empty());
        assert_eq!(r.to_json(), "{}");
    }

    #[test]
    fn a_range_spanning_several_merges_them_all() {
        let mut r = OffsetRanges::default();
        for o in [0, 2, 4, 6, 10] {
            r.add("t", 0, o);
        }
        r.add_range("t", 0, 1, 7);
        assert_eq!(r.to_json(), r#"{"t/0":[[0,6],[10,10]]}"#);
        r.add_range("t", 0, 8, 9);
        assert_eq!(r.to_json(), r#"{"t/0":[[0,6],[8,8],[10,10]]}"#);
        assert_eq!(r.counts(), [("t", 0, 9)]);
    }
}

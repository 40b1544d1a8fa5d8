//! Helpers of the Kafka tests (feature `kafka`), shared by the `it` binary and
//! `kafka_outage` (tests/kafka_outage.rs): the records they produce and read back, the
//! `pinflow run` of a Kafka source, the exactly-once check, and readers of what a broker,
//! a group and pinflow's metrics say.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};

use super::{all_final_ids, pinflow_piped};

/// The flags of runs that are killed or cut off from the broker: the journal, a checkpoint
/// every 100 ms, and a short session, so that librdkafka's mock cluster drops a member gone
/// quiet from the group (and gives its partitions to another, or lets it rejoin) within
/// seconds.
pub const SHORT_SESSION_FLAGS: [&str; 8] = [
    "--journal",
    "true",
    "--rotate-interval",
    "100ms",
    "--kafka-property",
    "session.timeout.ms=3000",
    "--kafka-property",
    "heartbeat.interval.ms=500",
];

/// The session of group members on Tansu: it holds a member's join for about half of
/// `session.timeout.ms` (23 s with librdkafka's 45 s, 3 s with this).
pub const TANSU_SESSION_FLAGS: [&str; 4] = [
    "--kafka-property",
    "session.timeout.ms=6000",
    "--kafka-property",
    "heartbeat.interval.ms=1000",
];

/// Record `id` of the built-in log layout, as a message's payload.
pub fn record(id: u64) -> String {
    format!(
        r#"{{"id":{id},"ts":"2024-05-01T12:00:00Z","service":"api","level":"info","host":"h{}","latency_ms":1.5,"message":"line {id}","values":[1.0,2.0,{id}.0]}}"#,
        id % 4
    )
}

/// Produces `messages` (partition, payload; `None`: a tombstone) with librdkafka's producer,
/// waiting until every one is acknowledged.
pub fn produce(bootstrap: &str, topic: &str, messages: &[(i32, Option<String>)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (partition, payload) in messages {
        let mut r = BaseRecord::<(), str>::to(topic).partition(*partition);
        if let Some(body) = payload {
            r = r.payload(body.as_str());
        }
        let mut r = Some(r);
        while let Some(rec) = r.take() {
            if let Err((e, rec)) = p.send(rec) {
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "{e}"
                );
                p.poll(Duration::from_millis(50));
                r = Some(rec);
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Messages with the records `ids`, each to partition `id % partitions`.
pub fn records_over(ids: std::ops::Range<u64>, partitions: i32) -> Vec<(i32, Option<String>)> {
    ids.map(|i| ((i % partitions as u64) as i32, Some(record(i))))
        .collect()
}

/// `n` NDJSON records of the built-in log layout (so the statistics columns are computed),
/// `id` 0..n, in a file of `dir`.
pub fn records_file(dir: &Path, n: u64) -> PathBuf {
    let path = dir.join("in.ndjson");
    let lines: Vec<String> = (0..n).map(record).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `pinflow run` reading the topic `logs` from `bootstrap` in `group` into `out`, with `extra` flags.
pub fn pinflow_source(
    dir: &Path,
    bootstrap: &str,
    group: &str,
    out: &str,
    extra: &[&str],
) -> Command {
    let mut c = pinflow_piped();
    c.current_dir(dir)
        .args(["run", "--progress", "never", "--kafka-brokers", bootstrap])
        .args([
            "--kafka-topics",
            "logs",
            "--kafka-group",
            group,
            "--out",
            out,
        ])
        .args(extra)
        // Small batches: many checkpoints, each holding part of a partition.
        .env("PINFLOW_KAFKA_BATCH_MAX_MESSAGES", "16");
    c
}

/// What a run said: its standard error, then its standard output.
pub fn logs(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    )
}

/// Asserts that `ids` are exactly `0..n`, each once, naming the missing and the repeated.
pub fn assert_exactly_once(mut ids: Vec<i64>, n: i64, logs: &str) {
    ids.sort_unstable();
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    for &i in &ids {
        *count.entry(i).or_default() += 1;
    }
    let repeated: Vec<_> = count
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(i, _)| *i)
        .collect();
    let missing: Vec<_> = (0..n).filter(|i| !count.contains_key(i)).collect();
    assert!(
        repeated.is_empty() && missing.is_empty() && ids.len() == n as usize,
        "{} rows; repeated {repeated:?}; missing {missing:?}\n{logs}",
        ids.len()
    );
}

/// The final Parquet files of `out` (a directory of rotated files).
pub fn final_ids(out: &Path) -> Vec<i64> {
    if !out.exists() {
        return Vec::new();
    }
    all_final_ids(out)
}

/// Every message of `topic`'s partitions from the start, until `n` arrived (failing the test
/// past a generous deadline): (key, payload as JSON).
pub fn consume(bootstrap: &str, topic: &str, n: usize) -> Vec<(Option<String>, serde_json::Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "pinflow-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages",
            got.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push((
                m.key().map(|k| String::from_utf8(k.to_vec()).unwrap()),
                serde_json::from_slice(m.payload().unwrap()).unwrap(),
            )),
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    // Nothing more than was written: one more poll finds no further message.
    for _ in 0..5 {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            panic!("an extra message: {:?}", m.payload_view::<str>());
        }
    }
    got
}

/// A reader of the offsets a group committed, for tests that ask many times (one client, not
/// one a question: each makes connections and threads).
pub struct GroupOffsets {
    consumer: rdkafka::consumer::BaseConsumer,
    partitions: i32,
}

impl GroupOffsets {
    pub fn new(bootstrap: &str, group: &str, partitions: i32) -> GroupOffsets {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .create()
            .unwrap();
        GroupOffsets {
            consumer,
            partitions,
        }
    }

    /// The committed offsets of partitions `0..partitions` of `logs` (`None`: none).
    pub fn read(&self) -> Vec<Option<i64>> {
        use rdkafka::consumer::Consumer;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition("logs", p);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(30))
            .unwrap();
        (0..self.partitions)
            .map(|p| match got.find_partition("logs", p).unwrap().offset() {
                rdkafka::Offset::Offset(o) => Some(o),
                _ => None,
            })
            .collect()
    }
}

pub use super::metric;

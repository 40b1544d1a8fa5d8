//! The Kafka output (`--out kafka://...`, feature `kafka`) against librdkafka's in-process
//! mock cluster: what pinflow produced is read back by an independent consumer, and a broker
//! that is down makes every record a dead letter with the broker's reason, none counted
//! written.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message};

use crate::common::{ndjson_lines, pinflow_piped};

/// `n` NDJSON log records, `id` 0..n, in a file of `dir`.
fn records(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("in.ndjson");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":{i},"host":"h{}","status":{},"msg":"line {i}"}}"#,
                i % 4,
                200 + i % 3
            )
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Every message of `topic`'s partitions from the start, until `n` arrived (failing the test
/// past a generous deadline): (key, payload as JSON).
fn consume(bootstrap: &str, topic: &str, n: usize) -> Vec<(Option<String>, serde_json::Value)> {
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
        assert!(Instant::now() < deadline, "only {} of {n} messages", got.len());
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

#[test]
fn every_record_is_produced_once_as_json_with_its_key() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = records(dir.path(), 500);
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--kafka-key", "host", "--files"])
        .arg(&input)
        .arg("--out")
        .arg(format!("kafka://{}/logs", cluster.bootstrap_servers()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let got = consume(&cluster.bootstrap_servers(), "logs", 500);
    let ids: BTreeSet<i64> = got.iter().map(|(_, v)| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (0..500).collect(), "every record exactly once");
    for (key, v) in &got {
        let id = v["id"].as_i64().unwrap();
        assert_eq!(v["host"], format!("h{}", id % 4));
        assert_eq!(v["msg"], format!("line {id}"));
        assert_eq!(v["status"].as_i64(), Some(200 + id % 3));
        assert_eq!(key.as_deref(), Some(format!("h{}", id % 4).as_str()));
    }
    // No dead letters: every record was acknowledged.
    assert!(!dir.path().join("logs.deadletter.ndjson").exists(), "{err}");
}

#[test]
fn a_broker_that_is_down_makes_every_record_a_dead_letter_none_counted_written() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("down", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = records(dir.path(), 50);
    let o = pinflow_piped()
        .current_dir(dir.path())
        // librdkafka retries until the message times out, then reports it failed.
        .env("PINFLOW_KAFKA_PROPERTIES", "message.timeout.ms=2000")
        .args(["run", "--progress", "never", "--files"])
        .arg(&input)
        .arg("--out")
        .arg(format!("kafka://{}/down", cluster.bootstrap_servers()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let dead = ndjson_lines(&dir.path().join("down.deadletter.ndjson"));
    assert_eq!(dead.len(), 50, "{err}");
    let mut ids = BTreeSet::new();
    for line in &dead {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.starts_with("kafka delivery failed"), "{reason}");
        let row: serde_json::Value =
            serde_json::from_str(d["excerpt"].as_str().unwrap()).unwrap();
        ids.insert(row["id"].as_i64().unwrap());
    }
    assert_eq!(ids, (0..50).collect(), "each record dead-lettered once");
    // The ledger: none of them written.
    let summary = format!("{err}{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        !summary.contains("50 written") && !summary.contains("written=50"),
        "{summary}"
    );
}

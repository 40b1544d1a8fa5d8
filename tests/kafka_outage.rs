//! Kafka tests that take a broker of librdkafka's mock cluster down, in a test binary of
//! their own and one at a time (`cargo test --features kafka --test kafka_outage`).
//!
//! Why not in `it` with the other Kafka tests: to take a broker down, the mock cluster
//! closes its listening socket and at once binds a new one to the same port, and aborts the
//! whole process (an assertion in rdkafka_mock.c) when that bind fails. It fails whenever
//! another test spawns a process at that instant: the forked child holds a copy of the old
//! socket, still listening, until it execs. Here no other test runs meanwhile, and each test
//! spawns its own processes before or after, never while, it takes a broker down or up.
//!
//! What they show: a broker outage at the start or in the middle of a run loses and repeats
//! nothing, for the source and the output; a broker that stays down makes every record a dead
//! letter with the broker's reason (or, at SIGTERM, with the shutdown's), none counted
//! written.

#[path = "it/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::mocking::MockCluster;

use common::kafka::{
    assert_exactly_once, consume, final_ids, metric, pinflow_source, produce, records_file,
    records_over, GroupOffsets, SHORT_SESSION_FLAGS,
};
use common::{ndjson_lines, pinflow_piped};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the other tests of this binary off until dropped (a test that failed does not
/// fail the others: its poisoned lock is taken all the same).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn a_broker_that_is_down_makes_every_record_a_dead_letter_none_counted_written() {
    let _alone = one_at_a_time();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("down", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = records_file(dir.path(), 50);
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
        let row: serde_json::Value = serde_json::from_str(d["excerpt"].as_str().unwrap()).unwrap();
        ids.insert(row["id"].as_i64().unwrap());
    }
    assert_eq!(ids, (0..50).collect(), "each record dead-lettered once");
    // The ledger: none of them written, each dead-lettered as undelivered.
    let summary = format!("{err}{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        summary.contains("fetched 50 / written 0 / dead-lettered 50"),
        "{summary}"
    );
    assert!(summary.contains("50 × delivery failed"), "{summary}");
}

#[test]
fn sigterm_dead_letters_what_the_broker_has_not_acknowledged() {
    let _alone = one_at_a_time();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("stuck", 1, 1).unwrap();
    // Down for good: librdkafka would retry for its default message.timeout.ms (300 s).
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--shutdown-timeout", "2s"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--files"])
        .arg(records_file(dir.path(), 20))
        .arg("--out")
        .arg(format!("kafka://{}/stuck", cluster.bootstrap_servers()))
        .spawn()
        .unwrap();
    // All 20 handed to the producer (the input is read), none acknowledged: the run waits
    // for their delivery reports until SIGTERM.
    common::wait_for_child(&mut child, "20 messages queued", || {
        metric(port, "pinflow_kafka_producer_queue_depth") == Some(20.0)
    });
    let o = common::sigterm_and_wait(child);
    let err = String::from_utf8_lossy(&o.stderr);
    let dead = ndjson_lines(&dir.path().join("stuck.deadletter.ndjson"));
    assert_eq!(dead.len(), 20, "{err}");
    for line in &dead {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains("before the shutdown timeout"), "{reason}");
    }
    let summary = format!("{err}{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        summary.contains("written 0 / dead-lettered 20"),
        "{summary}"
    );
}

/// A queue full of messages for a broker that is down: the writer waited for room in
/// librdkafka's queue, and so SIGTERM waited, until the messages timed out (300 s by
/// default). Past half the shutdown timeout what is queued is purged, and the rest goes the
/// same way: every record dead-lettered, the run ended within the deadline.
#[test]
fn sigterm_with_the_producer_queue_full_dead_letters_everything_within_the_deadline() {
    let _alone = one_at_a_time();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("full", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = pinflow_piped()
        .current_dir(dir.path())
        .env("PINFLOW_KAFKA_PROPERTIES", "queue.buffering.max.messages=5")
        .args(["run", "--progress", "never", "--shutdown-timeout", "2s"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--files"])
        .arg(records_file(dir.path(), 20))
        .arg("--out")
        .arg(format!("kafka://{}/full", cluster.bootstrap_servers()))
        .spawn()
        .unwrap();
    // Five queued, the writer waiting for room for the sixth.
    common::wait_for_child(&mut child, "the producer's queue full", || {
        metric(port, "pinflow_kafka_producer_queue_depth") == Some(5.0)
            && metric(port, "pinflow_kafka_queue_full_waits_total").is_some_and(|n| n > 0.0)
    });
    let o = common::sigterm_and_wait(child);
    let err = String::from_utf8_lossy(&o.stderr);
    let dead = ndjson_lines(&dir.path().join("full.deadletter.ndjson"));
    assert_eq!(dead.len(), 20, "{err}");
    let summary = format!("{err}{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        summary.contains("written 0 / dead-lettered 20"),
        "{summary}"
    );
}

#[test]
fn the_output_delivers_every_record_once_when_the_broker_comes_back() {
    let _alone = one_at_a_time();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("later", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let child = pinflow_piped()
        .current_dir(dir.path())
        // Bounds the test should the records never be delivered: each fails after a minute.
        .env("PINFLOW_KAFKA_PROPERTIES", "message.timeout.ms=60000")
        .args(["run", "--progress", "never"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--files"])
        .arg(records_file(dir.path(), 200))
        .arg("--out")
        .arg(format!("kafka://{}/later", cluster.bootstrap_servers()))
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(Some(child));
    // Every record handed to the producer, none acknowledged while the broker is down.
    common::wait_for_child(child.0.as_mut().unwrap(), "200 messages queued", || {
        metric(port, "pinflow_kafka_producer_queue_depth") == Some(200.0)
    });
    cluster.broker_up(1).unwrap();
    let o = child.0.take().unwrap().wait_with_output().unwrap();
    let text = common::kafka::logs(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("written 200 / dead-lettered 0"), "{text}");
    // The broker has each once (the producer is idempotent: retries add no copy).
    let got = consume(&cluster.bootstrap_servers(), "later", 200);
    let ids: Vec<i64> = got.iter().map(|(_, v)| v["id"].as_i64().unwrap()).collect();
    assert_exactly_once(ids, 200, &text);
}

#[test]
fn the_source_reads_on_through_a_broker_outage_and_writes_every_message_once() {
    let _alone = one_at_a_time();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..3000, 3));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let log = dir.path().join("run.log");
    // A short session: an outage longer than it makes the group drop the member, which
    // rejoins and gets its partitions back once the broker is up.
    let out_file = "out/x.parquet";
    let child = pinflow_source(dir.path(), &bootstrap, "g1", out_file, &SHORT_SESSION_FLAGS)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(Some(child));
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    common::wait_for_child(child.0.as_mut().unwrap(), "a first checkpoint", || {
        !common::final_parquet_files(&out).is_empty()
    });
    cluster.broker_down(1).unwrap();
    // The outage: longer than the session (3 s) and than librdkafka's reconnect backoff.
    std::thread::sleep(Duration::from_secs(6));
    cluster.broker_up(1).unwrap();
    produce(&bootstrap, "logs", &records_over(3000..6000, 3));
    // Every message durable and its offset committed to the group.
    let group = GroupOffsets::new(&bootstrap, "g1", 3);
    common::wait_for_child(child.0.as_mut().unwrap(), "every offset committed", || {
        group.read() == [Some(2000); 3]
    });
    let o = common::sigterm_and_wait(child.0.take().unwrap());
    assert!(o.status.success(), "{}", logs());
    assert_exactly_once(final_ids(&out), 6000, &logs());
    // The outage was reported, naming the broker it could not reach.
    let text = logs();
    assert!(
        text.contains("Kafka consumer") && text.contains(bootstrap.as_str()),
        "{text}"
    );
}

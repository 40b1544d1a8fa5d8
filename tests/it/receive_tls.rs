//! HTTP receive over TLS (`--listen-tls-cert`, `--listen-tls-key`): a rustls client with the
//! test's CA posts and finds its records written exactly once; a plain-HTTP client and a silent
//! one are closed without disturbing it; bad certificate and key files fail the start, named.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::common::free_port;
use crate::common::{all_final_ids, pinflow_piped, sigterm_and_wait, STOP_DEADLINE};
use crate::receive::{auth, metrics_text, read_answer, start_checkpointing};
use crate::tls::{provider, Ca};

/// An empty directory of this test process, `pinflow-receive-TAG-PID` in the temp directory.
fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pinflow-receive-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The endpoint's certificate (for 127.0.0.1) and key, in two PEM files under `dir`, and the
/// CA's certificate.
fn endpoint_files(dir: &Path, ca: &Ca) -> (PathBuf, PathBuf, PathBuf) {
    let (_, _, pem) = ca.issue(&["127.0.0.1"]);
    let at = pem.find("-----BEGIN PRIVATE KEY-----").unwrap();
    let (cert, key) = (dir.join("receive.pem"), dir.join("receive.key"));
    std::fs::write(&cert, &pem[..at]).unwrap();
    std::fs::write(&key, &pem[at..]).unwrap();
    (cert, key, ca.write_pem(dir, "ca.pem"))
}

type TlsClient = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// A TLS client connection to the endpoint, trusting only the test's CA, presenting the client
/// certificate and key `me` if given.
fn tls_client(port: u16, ca_pem: &Path, me: Option<&Ca>) -> TlsClient {
    let mut roots = RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match me {
        Some(client_ca) => {
            let (cert, key, _) = client_ca.issue(&["receive-test-client"]);
            config.with_client_auth_cert(vec![cert], key).unwrap()
        }
        None => config.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = "127.0.0.1".try_into().unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(STOP_DEADLINE)).unwrap();
    BufReader::new(StreamOwned::new(conn, tcp))
}

/// Posts the records `ids` on a kept-alive TLS connection: the answer's status.
fn post_ids(c: &mut TlsClient, ids: &[i64]) -> u16 {
    send_ids(c, ids).unwrap();
    read_answer(c)
}

/// Sends a request posting the records `ids`.
fn send_ids(c: &mut TlsClient, ids: &[i64]) -> std::io::Result<()> {
    let body: String = ids.iter().map(|id| format!("{{\"id\":{id}}}\n")).collect();
    let w = c.get_mut();
    write!(
        w,
        "POST /ingest HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\n\r\n{body}",
        auth(),
        body.len()
    )?;
    w.flush()
}

/// What the server sent on `s` until it closed the connection (an end or a reset, not the
/// read timeout).
fn read_until_closed(s: &mut TcpStream, who: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got);
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "{who} was not closed: {end:?}"
    );
    got
}

/// A receiving pinflow over TLS.
struct Endpoint {
    child: std::process::Child,
    port: u16,
    /// The PEM file of the CA that issued the endpoint's certificate.
    ca_pem: PathBuf,
    /// The metrics endpoint's address.
    metrics: String,
}

/// Starts pinflow receiving over TLS into `dir`, with a certificate of a new CA and `extra`
/// flags.
fn start_tls(dir: &Path, extra: &[&str]) -> Endpoint {
    let (cert, key, ca_pem) = endpoint_files(dir, &Ca::new("receive test CA"));
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--listen-tls-cert",
        cert.to_str().unwrap(),
        "--listen-tls-key",
        key.to_str().unwrap(),
        "--metrics-addr",
        &metrics,
        // Only the header timeout (1s) can close a client that never makes its handshake.
        "--listen-idle-timeout",
        "1h",
    ];
    args.extend_from_slice(extra);
    let child = start_checkpointing(&dir.join("out.parquet"), port, "200ms", &args);
    Endpoint {
        child,
        port,
        ca_pem,
        metrics,
    }
}

#[test]
fn posts_over_tls_are_written_exactly_once_and_plain_or_silent_clients_are_closed() {
    let dir = fresh_dir("tls");
    let Endpoint {
        child,
        port,
        ca_pem,
        metrics,
    } = start_tls(&dir, &[]);
    // A client that connects and never starts its handshake: closed by the header timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent.set_read_timeout(Some(STOP_DEADLINE)).unwrap();

    let mut client = tls_client(port, &ca_pem, None);
    let mut expected = Vec::new();
    for b in 0..3i64 {
        let ids: Vec<i64> = (0..20).map(|i| b * 100 + i).collect();
        assert_eq!(post_ids(&mut client, &ids), 200, "post {b}");
        expected.extend(ids);
    }
    assert_eq!(
        client.get_ref().conn.alpn_protocol(),
        Some(b"http/1.1".as_slice())
    );

    // Plain HTTP on the TLS port: no HTTP answer, only a TLS alert and the close.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(STOP_DEADLINE)).unwrap();
    plain
        .write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"id\":-1}\n")
        .unwrap();
    let answer = read_until_closed(&mut plain, "the plain client");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "a plain client got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // The silent client is closed for the handshake it never made.
    let rest = read_until_closed(&mut silent, "the silent client");
    assert!(!rest.starts_with(b"HTTP/"), "{rest:?}");

    assert!(
        metrics_text(&metrics).contains("\npinflow_receive_tls_failures_total 2\n"),
        "the plain and the silent client counted"
    );

    // The TLS client was not disturbed: its kept-alive connection goes on.
    assert_eq!(post_ids(&mut client, &[1000, 1001]), 200);
    expected.extend([1000, 1001]);
    let mut second = tls_client(port, &ca_pem, None);
    assert_eq!(post_ids(&mut second, &[2000]), 200);
    expected.push(2000);
    drop((client, second));

    let o = sigterm_and_wait(child);
    assert!(o.status.success(), "{o:?}");
    expected.sort_unstable();
    assert_eq!(
        all_final_ids(&dir),
        expected,
        "every acknowledged record exactly once, none of the plain client's"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_tls_client_ca_only_clients_with_a_certificate_of_that_ca_are_received() {
    let dir = fresh_dir("mtls");
    let clients = Ca::new("receive clients CA");
    let clients_pem = clients.write_pem(&dir, "clients-ca.pem");
    let Endpoint {
        child,
        port,
        ca_pem,
        metrics,
    } = start_tls(
        &dir,
        &["--listen-tls-client-ca", clients_pem.to_str().unwrap()],
    );
    let mut known = tls_client(port, &ca_pem, Some(&clients));
    assert_eq!(post_ids(&mut known, &[1, 2]), 200);
    // No certificate, then one of another CA: the handshake fails, nothing is answered.
    for me in [None, Some(&Ca::new("stranger CA"))] {
        let mut stranger = tls_client(port, &ca_pem, me);
        let sent = send_ids(&mut stranger, &[-1]);
        let mut got = Vec::new();
        let end = sent.and_then(|()| stranger.read_to_end(&mut got));
        assert!(end.is_err() && got.is_empty(), "{end:?} {got:?}");
    }
    assert!(
        metrics_text(&metrics).contains("\npinflow_receive_tls_failures_total 2\n"),
        "both strangers counted"
    );
    assert_eq!(post_ids(&mut known, &[3]), 200);
    drop(known);
    let o = sigterm_and_wait(child);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(all_final_ids(&dir), [1, 2, 3]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs pinflow receiving with `extra` flags, expecting it to fail at start: its stderr.
fn fails_to_start(dir: &Path, extra: &[&str]) -> String {
    let mut child = pinflow_piped()
        .args(["run", "--listen", &free_port().to_string(), "--out"])
        .arg(dir.join("out.parquet"))
        .args([
            "--journal",
            "--rotate-interval",
            "200ms",
            "--field",
            "id:int64",
        ])
        .args(extra)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > STOP_DEADLINE {
            let _ = child.kill();
            panic!("pinflow ran with {extra:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn missing_invalid_or_unused_certificate_and_key_files_fail_the_start_naming_them() {
    let dir = fresh_dir("tls-bad");
    let (cert, key, _) = endpoint_files(&dir, &Ca::new("receive test CA"));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let missing = dir.join("missing.key");
    let missing = missing.to_str().unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.to_str().unwrap();

    let e = fails_to_start(&dir, &["--listen-tls-cert", cert]);
    assert!(
        e.contains("listen.tls_key") && e.contains("listen.tls_cert"),
        "{e}"
    );
    let e = fails_to_start(
        &dir,
        &["--listen-tls-cert", cert, "--listen-tls-key", missing],
    );
    assert!(e.contains("listen.tls_key") && e.contains(missing), "{e}");
    let e = fails_to_start(
        &dir,
        &["--listen-tls-cert", garbage, "--listen-tls-key", key],
    );
    assert!(e.contains("listen.tls_cert") && e.contains(garbage), "{e}");
    // A key that is not the certificate's.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, other_key, _) = endpoint_files(&other, &Ca::new("another CA"));
    let e = fails_to_start(
        &dir,
        &[
            "--listen-tls-cert",
            cert,
            "--listen-tls-key",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(e.contains("listen.tls_key"), "{e}");
    // Without --listen nothing would serve them: refused, not ignored.
    let o = pinflow_piped()
        .args(["run", "--files", garbage, "--listen-tls-cert", cert])
        .args(["--listen-tls-key", key, "--out"])
        .arg(dir.join("files.parquet"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("listen.tls_cert") && e.contains("nothing listens"),
        "{e}"
    );
    assert!(!dir.join("files.parquet").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

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

use crate::common::{all_final_ids, pinflow_piped, sigterm_and_wait, STOP_DEADLINE};
use crate::receive::{auth, free_port, metrics_text, read_answer, start_checkpointing};
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

/// A TLS client connection to the endpoint, trusting only the test's CA.
fn tls_client(port: u16, ca_pem: &Path) -> BufReader<StreamOwned<ClientConnection, TcpStream>> {
    let mut roots = RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = "127.0.0.1".try_into().unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(STOP_DEADLINE)).unwrap();
    BufReader::new(StreamOwned::new(conn, tcp))
}

/// Posts the records `ids` on a kept-alive TLS connection: the answer's status.
fn post_ids(c: &mut BufReader<StreamOwned<ClientConnection, TcpStream>>, ids: &[i64]) -> u16 {
    let body: String = ids.iter().map(|id| format!("{{\"id\":{id}}}\n")).collect();
    let w = c.get_mut();
    write!(
        w,
        "POST /ingest HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\n\r\n{body}",
        auth(),
        body.len()
    )
    .unwrap();
    w.flush().unwrap();
    read_answer(c)
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

#[test]
fn posts_over_tls_are_written_exactly_once_and_plain_or_silent_clients_are_closed() {
    let dir = fresh_dir("tls");
    let ca = Ca::new("receive test CA");
    let (cert, key, ca_pem) = endpoint_files(&dir, &ca);
    let port = free_port();
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let metrics = format!("127.0.0.1:{}", free_port());
    let child = start_checkpointing(
        &dir.join("out.parquet"),
        port,
        "200ms",
        &[
            "--listen-tls-cert",
            cert_arg,
            "--listen-tls-key",
            key_arg,
            "--metrics-addr",
            &metrics,
        ],
    );
    // A client that connects and never starts its handshake (the header timeout is 1s).
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent.set_read_timeout(Some(STOP_DEADLINE)).unwrap();

    let mut client = tls_client(port, &ca_pem);
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
    let mut second = tls_client(port, &ca_pem);
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
fn missing_or_invalid_certificate_and_key_files_fail_the_start_naming_them() {
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
    std::fs::remove_dir_all(&dir).unwrap();
}

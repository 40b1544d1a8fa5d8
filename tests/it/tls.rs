//! `https://` against a real TLS server on loopback, with certificates made in the test: a
//! private CA trusted through `fetch.tls_ca_file`, an unknown CA and a wrong name that fail
//! with clear reasons (and are not retried), and client certificates (mTLS).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::*;
use pinflow::{Config, Pipeline, Source};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority made for one test.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// A leaf certificate for `names` and its key.
    pub(crate) fn issue(
        &self,
        names: &[&str],
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
        self.issue_with(names, |_| {})
    }

    /// A leaf certificate for `names` and its key, its parameters changed by `edit` first (a
    /// validity period in the past, for example).
    pub(crate) fn issue_with(
        &self,
        names: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        (
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            pem,
        )
    }

    pub(crate) fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }
}

/// An HTTPS server on 127.0.0.1 answering every request with one JSON record whose id is the
/// number in the path, except `/redirect?to=URL`, a 302 to URL (hostile_http.rs). `clients`:
/// require client certificates issued by this CA. Returns the base URL and a count of
/// completed TLS handshakes.
pub(crate) fn https_server(
    ca: &Ca,
    names: &[&str],
    clients: Option<&Ca>,
) -> (String, Arc<AtomicUsize>) {
    let (cert, key, _) = ca.issue(names);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(client_ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(client_ca.issuer.der().clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = Arc::new(builder.with_single_cert(vec![cert], key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let handshakes = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&handshakes);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let (config, done) = (Arc::clone(&config), Arc::clone(&done));
            std::thread::spawn(move || {
                let conn = ServerConnection::new(config).unwrap();
                let mut s = StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut counted = false;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/");
                        let id: i64 = path.trim_start_matches('/').parse().unwrap_or(0);
                        let body = format!(r#"{{"id":{id},"service":"tls"}}"#);
                        let resp = match path.strip_prefix("/redirect?to=") {
                            Some(to) => format!(
                                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                            ),
                            None => format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            ),
                        };
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if !counted && !s.conn.is_handshaking() {
                        counted = true;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (base, handshakes)
}

fn urls(base: &str, n: i64) -> Source {
    Source::Urls((1..=n).map(|i| format!("{base}/{i}")).collect())
}

#[test]
fn a_private_ca_in_tls_ca_file_is_trusted_and_connections_are_reused() {
    let ca = Ca::new("pinflow test CA");
    let (base, handshakes) = https_server(&ca, &["localhost", "127.0.0.1"], None);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("tls.parquet"));
    cfg.fetch.tls_ca_file = Some(ca.write_pem(dir.path(), "ca.pem"));
    cfg.fetch.connections_per_host = 4;
    let n = 500;
    let summary = Pipeline::new(cfg).unwrap().run(urls(&base, n)).unwrap();
    assert_eq!(summary.fetch.delivered, n as u64, "{summary}");
    assert_eq!(summary.records_written, n as u64, "{summary}");
    let mut got = ids(summary.output.as_ref().unwrap());
    got.sort_unstable();
    assert_eq!(got, (1..=n).collect::<Vec<_>>());
    // Keep-alive over TLS: a handful of handshakes for 500 requests.
    let hs = handshakes.load(Ordering::Relaxed);
    assert!((1..=4).contains(&hs), "{hs} handshakes");
    assert_eq!(summary.fetch.connections, hs as u64);
}

#[test]
fn an_unknown_ca_fails_each_request_once_with_a_clear_reason() {
    let ca = Ca::new("a CA nobody trusts");
    let (base, handshakes) = https_server(&ca, &["127.0.0.1"], None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path().join("t.parquet"));
    let summary = Pipeline::new(cfg).unwrap().run(urls(&base, 3)).unwrap();
    assert_eq!(summary.fetch.failed, 3, "{summary}");
    assert_eq!(
        summary.fetch.retries, 0,
        "a certificate problem is not retried"
    );
    assert_eq!(summary.fetch.failed_by_reason.get("tls"), Some(&3));
    assert_eq!(handshakes.load(Ordering::Relaxed), 0);
    let dead = ndjson_lines(summary.dead_letter_file.as_ref().unwrap());
    assert_eq!(dead.len(), 3);
    for line in &dead {
        assert!(
            line.contains("UnknownIssuer") && line.contains("fetch.tls_ca_file"),
            "{line}"
        );
    }
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let ca = Ca::new("pinflow test CA");
    let (base, _) = https_server(&ca, &["logs.example.test"], None);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("t.parquet"));
    cfg.fetch.tls_ca_file = Some(ca.write_pem(dir.path(), "ca.pem"));
    let summary = Pipeline::new(cfg).unwrap().run(urls(&base, 1)).unwrap();
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    let (_, reason) = &summary.fetch.failure_samples[0];
    assert!(reason.contains("not valid for name"), "{reason}");
}

#[test]
fn mutual_tls_sends_the_client_certificate_and_fails_clearly_without_one() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let (base, _) = https_server(&server_ca, &["127.0.0.1"], Some(&client_ca));
    let dir = tempfile::tempdir().unwrap();
    let (_, _, client_pem) = client_ca.issue(&["edge-box-7"]);
    // One file holding certificate and key is a common layout; both options may name it.
    let client = dir.path().join("client.pem");
    std::fs::write(&client, client_pem).unwrap();

    let mut cfg = Config::new(dir.path().join("m.parquet"));
    cfg.fetch.tls_ca_file = Some(server_ca.write_pem(dir.path(), "ca.pem"));
    cfg.fetch.tls_client_cert = Some(client.clone());
    cfg.fetch.tls_client_key = Some(client);
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(urls(&base, 20))
        .unwrap();
    assert_eq!(summary.records_written, 20, "{summary}");

    cfg.out = dir.path().join("without.parquet");
    cfg.fetch.tls_client_cert = None;
    cfg.fetch.tls_client_key = None;
    let summary = Pipeline::new(cfg).unwrap().run(urls(&base, 2)).unwrap();
    assert_eq!(summary.fetch.failed, 2, "{summary}");
    assert_eq!(summary.fetch.failed_by_reason.get("tls"), Some(&2));
    let (_, reason) = &summary.fetch.failure_samples[0];
    assert!(
        reason.contains("TLS") && reason.contains("Certificate"),
        "{reason}"
    );
}

#[test]
fn an_unreadable_ca_file_fails_the_run_before_any_request() {
    let ca = Ca::new("pinflow test CA");
    let (base, handshakes) = https_server(&ca, &["127.0.0.1"], None);
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for (path, what) in [
        (dir.path().join("missing.pem"), "missing.pem"),
        (not_pem, "no PEM certificates"),
    ] {
        let mut cfg = Config::new(dir.path().join("never.parquet"));
        cfg.fetch.tls_ca_file = Some(path);
        let err = Pipeline::new(cfg)
            .unwrap()
            .run(urls(&base, 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fetch.tls_ca_file") && err.contains(what),
            "{err}"
        );
    }
    assert_eq!(handshakes.load(Ordering::Relaxed), 0);
    let names = dir_names(dir.path());
    assert!(!names.iter().any(|n| n.contains("never")), "{names:?}");
}

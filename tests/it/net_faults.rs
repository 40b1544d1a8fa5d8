//! Network faults through both fetch engines, against real sockets on loopback (issue 23,
//! "Gaps"): a connect that never completes, a connection reset, a name that cannot be
//! resolved (in a network namespace of its own, so that no packet leaves the machine), HTTP
//! proxies (which the ureq engine honours and the mio engine ignores, as documented), and the
//! TLS trust rules: a configured CA that does not match, an expired certificate, and responses
//! cut without a TLS close_notify (the truncation attack).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use pinflow::config::FetchEngine;
use pinflow::{Config, Pipeline, Source};

const ENGINES: [FetchEngine; 2] = [FetchEngine::Mio, FetchEngine::Ureq];

fn config(dir: &Path, engine: FetchEngine) -> Config {
    let mut cfg = Config::new(dir.join("out.parquet"));
    cfg.fetch.engine = engine;
    cfg
}

/// Reads one request head (up to the blank line); `None` when the peer closed first.
fn read_head(s: &mut impl Read) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A 200 response holding `{"id":ID}` that closes the connection, so that every request
/// comes on a connection of its own and the counts below are exact.
fn ok_closing(id: &str) -> Vec<u8> {
    let body = format!(r#"{{"id":{id}}}"#);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Closes `s` with a TCP reset instead of a FIN (SO_LINGER with a zero timeout).
fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}

/// A listener whose accept queue is full: its backlog is set to 0 and the one connection it
/// then admits is never accepted, so the kernel drops every further SYN and a connect to it
/// never completes (no RST, no answer: what a firewalled or overloaded host looks like).
struct FullBacklog {
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
    addr: SocketAddr,
}

impl FullBacklog {
    fn new() -> FullBacklog {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Linux lets listen() be called again on a listening socket to change its backlog.
        // SAFETY: a valid listening socket.
        let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
        let mut fillers = Vec::new();
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) => panic!("filling the backlog of {addr}: {e}"),
            }
            assert!(fillers.len() < 16, "the backlog of {addr} never filled");
        }
        FullBacklog {
            _listener: listener,
            _fillers: fillers,
            addr,
        }
    }
}

#[test]
fn a_connect_that_never_completes_fails_by_fetch_connect_timeout_in_both_engines() {
    let full = FullBacklog::new();
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), engine);
        cfg.fetch.connect_timeout = Duration::from_millis(500);
        cfg.fetch.max_attempts = 2;
        let url = format!("http://{}/1", full.addr);
        let summary = Pipeline::new(cfg)
            .unwrap()
            .run(Source::Urls(vec![url]))
            .unwrap();
        assert!(summary.ledger_balances(), "{engine:?}: {summary}");
        assert_eq!(summary.fetch.failed, 1, "{engine:?}: {summary}");
        assert_eq!(summary.fetch.retries, 1, "{engine:?}: retried once");
        assert_eq!(
            summary.fetch.failed_by_reason.get("timeout"),
            Some(&1),
            "{engine:?}: {summary}"
        );
        let (_, reason) = &summary.fetch.failure_samples[0];
        let want = format!("connect to {} timed out after 500ms", full.addr);
        assert!(
            reason.contains(&want) && reason.contains("after 2 attempts"),
            "{engine:?}: {reason}"
        );
        assert_eq!(summary.records_written, 0);
    }
}

/// Requests seen per path.
type Hits = Arc<Mutex<HashMap<String, usize>>>;

/// A server that answers `/ok/N` with `{"id":N}`, resets the connection after reading the
/// request for `/always/N`, and for `/once/N` the first time only. Every answer closes its
/// connection (see [`ok_closing`]).
fn resetting_server() -> (String, Hits) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits: Hits = Arc::default();
    let seen = Arc::clone(&hits);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let Some(head) = read_head(&mut s) else {
                continue;
            };
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            let n = {
                let mut seen = seen.lock().unwrap();
                let n = seen.entry(path.clone()).or_default();
                *n += 1;
                *n
            };
            let (kind, id) = path[1..].split_once('/').unwrap_or(("ok", "0"));
            if kind == "always" || (kind == "once" && n == 1) {
                reset(s);
            } else {
                let _ = s.write_all(&ok_closing(id));
            }
        }
    });
    (base, hits)
}

#[test]
fn a_connection_reset_is_retried_then_failed_with_its_reason_and_nothing_is_written_twice() {
    for engine in ENGINES {
        let (base, hits) = resetting_server();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), engine);
        cfg.fetch.max_attempts = 3;
        let urls = ["ok/1", "once/2", "always/3", "ok/4"]
            .iter()
            .map(|p| format!("{base}/{p}"))
            .collect();
        let summary = Pipeline::new(cfg).unwrap().run(Source::Urls(urls)).unwrap();
        assert!(summary.ledger_balances(), "{engine:?}: {summary}");
        assert_eq!(
            (summary.fetch.delivered, summary.fetch.failed),
            (3, 1),
            "{engine:?}: {summary}"
        );
        // One retry of /once/2, two of /always/3.
        assert_eq!(summary.fetch.retries, 3, "{engine:?}: {summary}");
        assert_eq!(
            summary.fetch.failed_by_reason.get("connection"),
            Some(&1),
            "{engine:?}: {summary}"
        );
        let (url, reason) = &summary.fetch.failure_samples[0];
        assert!(url.ends_with("/always/3"), "{engine:?}: {url}");
        assert!(
            reason.contains("reset") && reason.contains("after 3 attempts"),
            "{engine:?}: {reason}"
        );
        let hits = hits.lock().unwrap().clone();
        assert_eq!(hits.get("/once/2"), Some(&2), "{engine:?}: {hits:?}");
        assert_eq!(hits.get("/always/3"), Some(&3), "{engine:?}: {hits:?}");
        let mut got = ids(summary.output.as_ref().unwrap());
        got.sort_unstable();
        assert_eq!(got, [1, 2, 4], "{engine:?}: every row once");
        let dead = ndjson_lines(summary.dead_letter_file.as_ref().unwrap());
        assert_eq!(dead.len(), 1, "{engine:?}: {dead:?}");
        assert!(dead[0].contains("/always/3"), "{engine:?}: {}", dead[0]);
    }
}

/// Whether this machine lets the test make a network namespace (`unshare -rn`: a user
/// namespace too, so that it works without root where user namespaces are allowed).
fn netns_allowed() -> bool {
    Command::new("unshare")
        .args(["-rn", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn ci_exports_no_pinflow_variable_the_binary_would_refuse() {
    // pinflow refuses an unknown PINFLOW_* variable (exit 1), and most tests that start it
    // pass the environment on: one such export in .ci/run (a PINFLOW_REQUIRE_* switch for
    // these tests once) fails every one of them.
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    for line in ci.lines().filter(|l| l.trim_start().starts_with("export ")) {
        for var in line.split_whitespace().skip(1) {
            let name = var.split('=').next().unwrap_or("");
            assert!(!name.starts_with("PINFLOW_"), ".ci/run: {line}");
        }
    }
    assert!(ci.contains("CI_REQUIRE_NETNS=1") && ci.contains("CI_REQUIRE_MOUNT=1"));
}

#[test]
fn a_name_that_cannot_be_resolved_fails_its_request_with_the_reason_in_both_engines() {
    if skip_unless(
        netns_allowed(),
        "CI_REQUIRE_NETNS",
        "a network namespace (unshare -rn)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for engine in ["mio", "ureq"] {
        // A namespace with no interface up and no route: the resolver's queries cannot leave,
        // whatever /etc/resolv.conf says, and nothing reaches the real network.
        let out = dir.path().join(format!("{engine}.parquet"));
        let dead = dir.path().join(format!("{engine}.dead.ndjson"));
        let mut unshare = Command::new("unshare");
        // As `pinflow_piped`: no PINFLOW_* variable of the test's environment reaches pinflow.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PINFLOW_") {
                unshare.env_remove(k);
            }
        }
        let o = unshare
            .args(["-rn", "--", env!("CARGO_BIN_EXE_pinflow")])
            .args([
                "run",
                "--urls",
                "http://name.invalid:8080/1",
                "--engine",
                engine,
            ])
            .args(["--max-attempts", "3", "--progress", "never", "--out"])
            .arg(&out)
            .arg("--dead-letter")
            .arg(&dead)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{engine}: {stdout}\n{stderr}");
        let lines = ndjson_lines(&dead);
        assert_eq!(lines.len(), 1, "{engine}: {lines:?}");
        let line = &lines[0];
        assert!(
            line.contains("cannot resolve name.invalid") && line.contains("name.invalid:8080/1"),
            "{engine}: {line}"
        );
        // Counted by its reason, and not retried (the mio engine's rule, kept by ureq).
        assert!(stdout.contains("resolve"), "{engine}: {stdout}");
        assert!(line.contains(r#""attempts":1"#), "{engine}: {line}");
    }
}

/// A loopback HTTP proxy written for the tests: it opens `CONNECT host:port` tunnels (ureq
/// sends every proxied request through one) to loopback targets, or answers every request with
/// `refuse` (a status line such as `407 Proxy Authentication Required`). It records each
/// tunnel's target and the local address of its upstream connection, and any other request.
struct TestProxy {
    url: String,
    tunnels: Arc<Mutex<Vec<(String, SocketAddr)>>>,
    other: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    fn start(refuse: Option<&'static str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tunnels, other): (Arc<Mutex<Vec<_>>>, Arc<Mutex<Vec<_>>>) = Default::default();
        let (t, o) = (Arc::clone(&tunnels), Arc::clone(&other));
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                let (t, o) = (Arc::clone(&t), Arc::clone(&o));
                std::thread::spawn(move || TestProxy::serve(s, refuse, &t, &o));
            }
        });
        TestProxy {
            url,
            tunnels,
            other,
        }
    }

    fn serve(
        mut client: TcpStream,
        refuse: Option<&str>,
        tunnels: &Mutex<Vec<(String, SocketAddr)>>,
        other: &Mutex<Vec<String>>,
    ) {
        let Some(head) = read_head(&mut client) else {
            return;
        };
        let line = head.lines().next().unwrap_or("").to_string();
        let target = line
            .strip_prefix("CONNECT ")
            .and_then(|rest| rest.split(' ').next())
            .filter(|t| t.starts_with("127.0.0.1:"));
        let (Some(target), None) = (target, refuse) else {
            if refuse.is_none() {
                other.lock().unwrap().push(line);
            }
            let status = refuse.unwrap_or("400 Bad Request");
            let _ = client.write_all(
                format!("HTTP/1.1 {status}\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            return;
        };
        let Ok(upstream) = TcpStream::connect(target) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        tunnels
            .lock()
            .unwrap()
            .push((target.to_string(), upstream.local_addr().unwrap()));
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
        let (mut cl_r, mut cl_w) = (client.try_clone().unwrap(), client);
        let forth = std::thread::spawn(move || {
            let _ = std::io::copy(&mut cl_r, &mut up_w);
            let _ = up_w.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut up_r, &mut cl_w);
        let _ = cl_w.shutdown(std::net::Shutdown::Both);
        let _ = forth.join();
    }
}

/// A keep-alive origin answering `/N` with `{"id":N}`, recording each request's peer address.
fn origin() -> (String, Arc<Mutex<Vec<SocketAddr>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let peers: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
    let log = Arc::clone(&peers);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let peer = s.peer_addr().unwrap();
                while let Some(head) = read_head(&mut s) {
                    log.lock().unwrap().push(peer);
                    let id = head.split(' ').nth(1).unwrap_or("/0")[1..].to_string();
                    let body = format!(r#"{{"id":{id}}}"#);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, peers)
}

/// `pinflow run` of `{base}/{1..n}` with `engine`, its proxy settings from `HTTP_PROXY` =
/// `proxy` only (`NO_PROXY` empty, so that loopback is proxied too).
fn run_via_proxy(dir: &Path, engine: &str, base: &str, n: u32, proxy: &str) -> Output {
    let mut c = pinflow_piped();
    for var in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "http_proxy",
        "no_proxy",
    ] {
        c.env_remove(var);
    }
    c.env("HTTP_PROXY", proxy)
        .env("NO_PROXY", "")
        .args(["run", "--urls", &format!("{base}/{{1..{n}}}")])
        .args(["--engine", engine, "--progress", "never", "--out"])
        .arg(dir.join(format!("{engine}.parquet")))
        .arg("--dead-letter")
        .arg(dir.join(format!("{engine}.dead.ndjson")))
        .output()
        .unwrap()
}

#[test]
fn the_ureq_engine_sends_every_request_through_http_proxy_and_the_mio_engine_ignores_it() {
    let n = 20;
    for engine in ["ureq", "mio"] {
        let (base, peers) = origin();
        let proxy = TestProxy::start(None);
        let dir = tempfile::tempdir().unwrap();
        let o = run_via_proxy(dir.path(), engine, &base, n, &proxy.url);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{engine}: {stderr}");
        let mut got = ids(&dir.path().join(format!("{engine}.parquet")));
        got.sort_unstable();
        assert_eq!(got, (1..=n as i64).collect::<Vec<_>>(), "{engine}");
        let peers = peers.lock().unwrap().clone();
        assert_eq!(peers.len(), n as usize, "{engine}: requests at the origin");
        let tunnels = proxy.tunnels.lock().unwrap().clone();
        assert!(proxy.other.lock().unwrap().is_empty(), "{engine}");
        if engine == "ureq" {
            let origin = base.trim_start_matches("http://");
            assert!(!tunnels.is_empty(), "ureq: no tunnel through the proxy");
            for (target, _) in &tunnels {
                assert_eq!(target, origin, "ureq: a tunnel to elsewhere");
            }
            // Each request reached the origin from one of the proxy's upstream connections.
            let upstream: Vec<SocketAddr> = tunnels.iter().map(|(_, a)| *a).collect();
            for peer in &peers {
                assert!(upstream.contains(peer), "ureq: {peer} bypassed the proxy");
            }
        } else {
            // Documented (docs/usage.md, "The blocking fallback"): the mio engine connects
            // directly and ignores the proxy variables.
            assert!(
                tunnels.is_empty(),
                "mio went through the proxy: {tunnels:?}"
            );
        }
    }
}

#[test]
fn a_proxy_that_refuses_fails_each_request_with_its_answer_as_the_reason() {
    for answer in ["407 Proxy Authentication Required", "502 Bad Gateway"] {
        let (base, peers) = origin();
        let proxy = TestProxy::start(Some(answer));
        let dir = tempfile::tempdir().unwrap();
        let o = run_via_proxy(dir.path(), "ureq", &base, 3, &proxy.url);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{answer}: {stdout}\n{stderr}");
        assert!(stdout.contains("3 × proxy"), "{answer}: {stdout}");
        let dead = ndjson_lines(&dir.path().join("ureq.dead.ndjson"));
        assert_eq!(dead.len(), 3, "{answer}: {dead:?}");
        let code = &answer[..3];
        for line in &dead {
            assert!(
                line.contains("proxy") && line.contains(code) && line.contains(r#""attempts":1"#),
                "{answer}: {line}"
            );
        }
        assert!(
            peers.lock().unwrap().is_empty(),
            "{answer}: reached the origin"
        );
        assert!(proxy.tunnels.lock().unwrap().is_empty());
    }
}

/// The TLS trust rules, on the mio engine (the ureq engine fetches `http://` only).
#[cfg(feature = "tls")]
mod trust {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};

    use super::*;
    use crate::tls::{provider, Ca};

    /// What the server does once it has read a request.
    #[derive(Clone, Copy)]
    enum Answer {
        /// `{"id":N}` with its Content-Length, then a clean TLS close.
        Whole,
        /// Headers promising 60 body bytes, one complete record of them, then the TCP
        /// connection closed without a close_notify.
        CutContentLength,
        /// A body delimited by the close (no Content-Length, `Connection: close`): one record,
        /// then the TCP connection closed, with a close_notify alert first or without one.
        UntilClose { notify: bool },
    }

    /// An HTTPS server on 127.0.0.1 with the certificate `cert` that answers each request as
    /// `answer` says, one request per connection. Returns its base URL and the number of
    /// requests it read (so, of completed handshakes).
    fn server(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        answer: Answer,
    ) -> (String, Arc<AtomicUsize>) {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                let (config, seen) = (Arc::clone(&config), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let conn = ServerConnection::new(config).unwrap();
                    let mut s = StreamOwned::new(conn, tcp);
                    let Some(head) = read_head(&mut s) else {
                        return;
                    };
                    seen.fetch_add(1, Ordering::Relaxed);
                    let id = head.split(' ').nth(1).unwrap_or("/0")[1..].to_string();
                    let record = format!("{{\"id\":{id}}}\n");
                    let (resp, notify) = match answer {
                        Answer::Whole => (
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{record}",
                                record.len()
                            ),
                            true,
                        ),
                        Answer::CutContentLength => (
                            format!("HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n{record}"),
                            false,
                        ),
                        Answer::UntilClose { notify } => (
                            format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{record}"),
                            notify,
                        ),
                    };
                    if s.write_all(resp.as_bytes())
                        .and_then(|_| s.flush())
                        .is_err()
                    {
                        return;
                    }
                    if notify {
                        s.conn.send_close_notify();
                        let _ = s.flush();
                    }
                    // rustls sends no alert of its own on drop: without the call above, the
                    // peer sees a bare TCP close.
                    let _ = s.sock.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        (base, requests)
    }

    fn urls(base: &str, n: u32) -> Source {
        Source::Urls((1..=n).map(|i| format!("{base}/{i}")).collect())
    }

    fn tls_config(dir: &Path, name: &str, ca: &Ca) -> Config {
        let mut cfg = Config::new(dir.join(format!("{name}.parquet")));
        cfg.fetch.tls_ca_file = Some(ca.write_pem(dir, &format!("{name}-ca.pem")));
        cfg.fetch.max_attempts = 3;
        cfg
    }

    #[test]
    fn a_configured_ca_that_did_not_sign_the_server_certificate_fails_once_as_unknown_issuer() {
        let server_ca = Ca::new("the server's CA");
        let other_ca = Ca::new("another private CA");
        let (cert, key, _) = server_ca.issue(&["127.0.0.1"]);
        let (base, requests) = server(cert, key, Answer::Whole);
        let dir = tempfile::tempdir().unwrap();
        let summary = Pipeline::new(tls_config(dir.path(), "other", &other_ca))
            .unwrap()
            .run(urls(&base, 2))
            .unwrap();
        assert!(summary.ledger_balances(), "{summary}");
        assert_eq!(summary.fetch.failed, 2, "{summary}");
        assert_eq!(summary.fetch.retries, 0, "a certificate is not retried");
        assert_eq!(summary.fetch.failed_by_reason.get("tls"), Some(&2));
        for (_, reason) in &summary.fetch.failure_samples {
            assert!(
                reason.contains("UnknownIssuer") && reason.contains("fetch.tls_ca_file"),
                "{reason}"
            );
        }
        assert_eq!(requests.load(Ordering::Relaxed), 0, "no request was sent");
        // The same server, its own CA configured: trusted (the failure above was the CA's).
        let summary = Pipeline::new(tls_config(dir.path(), "own", &server_ca))
            .unwrap()
            .run(urls(&base, 2))
            .unwrap();
        assert_eq!(summary.records_written, 2, "{summary}");
    }

    #[test]
    fn an_expired_server_certificate_is_refused_with_a_reason_saying_expired() {
        let ca = Ca::new("pinflow test CA");
        let (cert, key, _) = ca.issue_with(&["127.0.0.1"], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        let (base, requests) = server(cert, key, Answer::Whole);
        let dir = tempfile::tempdir().unwrap();
        let summary = Pipeline::new(tls_config(dir.path(), "expired", &ca))
            .unwrap()
            .run(urls(&base, 1))
            .unwrap();
        assert_eq!(summary.fetch.failed, 1, "{summary}");
        assert_eq!(
            summary.fetch.retries, 0,
            "an expired certificate is not retried"
        );
        assert_eq!(summary.fetch.failed_by_reason.get("tls"), Some(&1));
        let (_, reason) = &summary.fetch.failure_samples[0];
        assert!(reason.contains("expired"), "{reason}");
        assert_eq!(requests.load(Ordering::Relaxed), 0);
        // A certificate of the same CA that is valid now is accepted.
        let (cert, key, _) = ca.issue(&["127.0.0.1"]);
        let (base, _) = server(cert, key, Answer::Whole);
        let summary = Pipeline::new(tls_config(dir.path(), "valid", &ca))
            .unwrap()
            .run(urls(&base, 1))
            .unwrap();
        assert_eq!(summary.records_written, 1, "{summary}");
    }

    /// Runs `answer` against 2 URLs with 3 attempts each.
    fn cut_run(answer: Answer, name: &str) -> (pinflow::Summary, usize) {
        let ca = Ca::new("pinflow test CA");
        let (cert, key, _) = ca.issue(&["127.0.0.1"]);
        let (base, requests) = server(cert, key, answer);
        let dir = tempfile::tempdir().unwrap();
        let summary = Pipeline::new(tls_config(dir.path(), name, &ca))
            .unwrap()
            .run(urls(&base, 2))
            .unwrap();
        (summary, requests.load(Ordering::Relaxed))
    }

    #[test]
    fn a_content_length_body_cut_without_close_notify_fails_and_no_row_is_written() {
        let (summary, requests) = cut_run(Answer::CutContentLength, "cut-cl");
        assert!(summary.ledger_balances(), "{summary}");
        assert_eq!(summary.fetch.failed, 2, "{summary}");
        assert_eq!(
            summary.records_written, 0,
            "a short body was taken as whole"
        );
        assert_eq!(summary.fetch.failed_by_reason.get("truncated"), Some(&2));
        assert_eq!(requests, 6, "each tried 3 times");
    }

    #[test]
    fn a_close_delimited_body_counts_only_when_the_server_sent_close_notify() {
        // The truncation attack: whoever can cut the TCP connection chooses where the body
        // ends, unless the end is authenticated by the TLS close_notify alert.
        let (summary, requests) = cut_run(Answer::UntilClose { notify: false }, "cut-close");
        assert!(summary.ledger_balances(), "{summary}");
        assert_eq!(summary.fetch.failed, 2, "{summary}");
        assert_eq!(summary.records_written, 0, "a cut body was taken as whole");
        assert_eq!(summary.fetch.failed_by_reason.get("truncated"), Some(&2));
        let (_, reason) = &summary.fetch.failure_samples[0];
        assert!(reason.contains("close_notify"), "{reason}");
        assert_eq!(requests, 6, "each tried 3 times");
        // The same body ended by a close_notify is complete.
        let (summary, _) = cut_run(Answer::UntilClose { notify: true }, "clean-close");
        assert_eq!(summary.fetch.failed, 0, "{summary}");
        assert_eq!(summary.records_written, 2, "{summary}");
    }
}

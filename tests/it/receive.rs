//! HTTP receive (`--listen`): answers, limits, and no acknowledged record lost or doubled across
//! a kill -9 and a restart on the same journal.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{all_final_ids, free_port, pinflow_piped, sigterm_and_wait, STOP_DEADLINE};

const TOKEN: &str = "t0ken-for-tests";

fn start(out: &Path, port: u16) -> std::process::Child {
    start_checkpointing(out, port, "200ms", &[])
}

/// Starts pinflow with checkpoints every `rotate` (`--rotate-interval`), and `extra` flags.
pub(crate) fn start_checkpointing(
    out: &Path,
    port: u16,
    rotate: &str,
    extra: &[&str],
) -> std::process::Child {
    let child = pinflow_piped()
        .args(["run", "--listen", &port.to_string(), "--out"])
        .arg(out)
        .args(["--journal", "--rotate-interval", rotate])
        .args(extra)
        .args(["--field", "id:int64", "--shutdown-timeout", "2s"])
        .env("PINFLOW_LISTEN_TOKEN", TOKEN)
        .env("PINFLOW_LISTEN_HEADER_TIMEOUT", "1s")
        .env("PINFLOW_LISTEN_MAX_BODY_BYTES", "1MiB")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < STOP_DEADLINE, "pinflow never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// One request on a new connection; the status, or `None` when the connection failed.
fn post(port: u16, head_extra: &str, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n{head_extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    // A refused body (413) may be cut off by the answer: read it all the same.
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn acknowledged_records_survive_kill_9_exactly_once_and_bad_posts_are_refused() {
    let dir = std::env::temp_dir().join(format!("pinflow-receive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.parquet");
    let port = free_port();
    let mut child = start(&out, port);

    // Refusals, each naming why.
    assert_eq!(post(port, "", b"{\"id\":-1}"), Some(401), "no token");
    assert_eq!(
        post(port, "Authorization: Bearer wrong\r\n", b"{\"id\":-1}"),
        Some(401)
    );
    assert_eq!(
        post(port, &auth(), b"id,name\n1,x\n"),
        Some(400),
        "not JSON"
    );
    let big = vec![b' '; 2 << 20];
    assert_eq!(post(port, &auth(), &big), Some(413), "over max_body_bytes");
    // A slowloris client holds its own connection only, and is cut at the header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A gzip body goes in while it stalls.
    let gz = gzip(b"{\"id\":-2}\n{\"id\":-3}\n");
    assert_eq!(
        post(port, &format!("{}Content-Encoding: gzip\r\n", auth()), &gz),
        Some(200)
    );
    slow.set_read_timeout(Some(STOP_DEADLINE)).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "slowloris: {answer:?}");

    // Concurrent clients, retrying until acknowledged; pinflow is killed mid-way.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    // Records of a post that got no 2xx before one that did: these alone may be doubled.
    let retried = Arc::new(Mutex::new(BTreeSet::new()));
    let clients: Vec<_> = (0..4i64)
        .map(|c| {
            let acked = Arc::clone(&acked);
            let retried = Arc::clone(&retried);
            std::thread::spawn(move || {
                for b in 0..25i64 {
                    let ids: Vec<i64> = (0..20).map(|i| c * 1_000_000 + b * 100 + i).collect();
                    let body: String = ids.iter().map(|id| format!("{{\"id\":{id}}}\n")).collect();
                    let started = Instant::now();
                    loop {
                        assert!(started.elapsed() < STOP_DEADLINE * 2, "never acknowledged");
                        if post(port, &auth(), body.as_bytes()) == Some(200) {
                            acked.lock().unwrap().extend(ids.iter().copied());
                            break;
                        }
                        retried.lock().unwrap().extend(ids.iter().copied());
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acked.lock().unwrap().len() < 400 {
        assert!(started.elapsed() < STOP_DEADLINE, "no acks");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let child = start(&out, port);
    for c in clients {
        c.join().unwrap();
    }
    let o = sigterm_and_wait(child);
    // A receive run ends only by a stop: its normal end, exit 0.
    assert!(o.status.success(), "{o:?}");

    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for id in all_final_ids(&dir) {
        *counts.entry(id).or_default() += 1;
    }
    let (acked, retried) = (acked.lock().unwrap(), retried.lock().unwrap());
    assert_eq!(acked.len(), 2000);
    for id in acked.iter().chain(&[-2, -3]) {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "acknowledged id {id} is missing");
        assert!(
            n == 1 || retried.contains(id),
            "id {id} written {n} times, though every post of it was acknowledged"
        );
    }
    assert!(!counts.contains_key(&-1), "a refused post was written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads one answer from a kept-alive connection: its status.
pub(crate) fn read_answer<R: std::io::BufRead>(r: &mut R) -> u16 {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut length = 0;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    status
}

#[test]
fn chunked_posts_and_kept_alive_connections_are_acknowledged_in_turn() {
    let dir = std::env::temp_dir().join(format!("pinflow-receive-ka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let child = start(&dir.join("out.parquet"), port);
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(STOP_DEADLINE)).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    // Chunked, split across chunks mid-record.
    write!(
        w,
        "POST /ingest HTTP/1.1\r\nHost: x\r\n{}Transfer-Encoding: chunked\r\n\r\n\
         5\r\n{{\"id\"\r\n9\r\n:1}}\n{{\"id\"\r\n3\r\n:2}}\r\n0\r\n\r\n",
        auth()
    )
    .unwrap();
    assert_eq!(read_answer(&mut r), 200);
    // The same connection: a JSON array, then a wrong path and a wrong method, then one more.
    let body = "[{\"id\":3},{\"id\":4}]";
    write!(
        w,
        "POST /ingest HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\n\r\n{body}",
        auth(),
        body.len()
    )
    .unwrap();
    assert_eq!(read_answer(&mut r), 200);
    assert_eq!(post(port, &auth(), b""), Some(400), "an empty body");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut a = String::new();
    let _ = s.read_to_string(&mut a);
    assert!(a.starts_with("HTTP/1.1 405"), "{a}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let mut a = String::new();
    let _ = s.read_to_string(&mut a);
    assert!(a.starts_with("HTTP/1.1 404"), "{a}");
    let o = sigterm_and_wait(child);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(all_final_ids(&dir), [1, 2, 3, 4]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn records_acknowledged_from_the_write_ahead_log_alone_survive_kill_9_exactly_once() {
    let dir = std::env::temp_dir().join(format!("pinflow-receive-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.parquet");
    let port = free_port();
    // No checkpoint in the first run's life: every answer comes from the log.
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut child = start_checkpointing(&out, port, "1h", &["--metrics-addr", &metrics]);
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(STOP_DEADLINE)).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut acked = Vec::new();
    for b in 0..30i64 {
        let ids: Vec<i64> = (0..50).map(|i| b * 1000 + i).collect();
        let body: String = ids.iter().map(|id| format!("{{\"id\":{id}}}\n")).collect();
        // Every third body gzipped: it is logged as posted and inflated by the parse threads.
        let (body, extra) = match b % 3 {
            0 => (gzip(body.as_bytes()), "Content-Encoding: gzip\r\n"),
            _ => (body.into_bytes(), ""),
        };
        write!(
            w,
            "POST /ingest HTTP/1.1\r\nHost: x\r\n{}{extra}Content-Length: {}\r\n\r\n",
            auth(),
            body.len()
        )
        .unwrap();
        w.write_all(&body).unwrap();
        assert_eq!(read_answer(&mut r), 200, "body {b}");
        acked.extend(ids);
    }
    assert!(
        crate::common::final_parquet_files(&dir).is_empty(),
        "no checkpoint yet, so nothing was written before the kill"
    );
    let text = metrics_text(&metrics);
    assert!(
        text.contains("pinflow_receive_ack_seconds_count{from=\"log\"} 30\n")
            && text.contains("pinflow_receive_ack_seconds_count{from=\"checkpoint\"} 0\n"),
        "every answer came from the log: {text}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop((r, w));
    // The restart admits the logged bodies again; one more post goes in after them.
    let child = start_checkpointing(&out, port, "1h", &[]);
    assert_eq!(post(port, &auth(), b"{\"id\":-7}"), Some(200));
    let o = sigterm_and_wait(child);
    assert!(o.status.success(), "{o:?}");
    acked.push(-7);
    acked.sort_unstable();
    assert_eq!(
        all_final_ids(&dir),
        acked,
        "every acknowledged record exactly once"
    );
    // A third run finds every logged body committed: it writes nothing again.
    let child = start_checkpointing(&out, port, "1h", &[]);
    let o = sigterm_and_wait(child);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(all_final_ids(&dir), acked, "nothing admitted twice");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The metrics endpoint's text at `addr`.
pub(crate) fn metrics_text(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(STOP_DEADLINE)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

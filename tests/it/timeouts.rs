//! Timeouts and Retry-After, observed against servers that misbehave on purpose.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

/// A server that reads a request and then hands the connection to `behave`.
fn server(behave: fn(&mut std::net::TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming().take(64) {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                behave(&mut s);
            });
        }
    });
    base
}

fn run(url: String, cfg: &mut Config) -> pinflow::Summary {
    cfg.fetch.max_attempts = 2;
    Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(vec![url]))
        .unwrap()
}

#[test]
fn a_server_that_never_answers_hits_the_first_byte_timeout() {
    let base = server(|_| std::thread::sleep(Duration::from_secs(5)));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("t.parquet"));
    cfg.fetch.first_byte_timeout = Duration::from_millis(200);
    let summary = run(format!("{base}/x"), &mut cfg);
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    assert!(
        dead.contains("first-byte timeout") && dead.contains("after 2 attempts"),
        "{dead}"
    );
}

#[test]
fn a_response_that_stops_midway_hits_the_idle_timeout() {
    let base = server(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\":");
        std::thread::sleep(Duration::from_secs(5));
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("t.parquet"));
    cfg.fetch.idle_timeout = Duration::from_millis(200);
    let summary = run(format!("{base}/x"), &mut cfg);
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    assert!(dead.contains("idle timeout"), "{dead}");
}

#[test]
fn the_total_timeout_bounds_all_attempts_together() {
    let base = server(|s| {
        let _ = s.write_all(b"HTTP/1.1 503 Busy\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n");
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("t.parquet"));
    cfg.fetch.total_timeout = Duration::from_secs(2);
    cfg.fetch.max_retry_after = Duration::from_secs(60);
    let summary = run(format!("{base}/x"), &mut cfg);
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    assert!(
        dead.contains("HTTP status 503") && dead.contains("total timeout"),
        "{dead}"
    );
}

#[test]
fn retry_after_is_honoured_before_the_next_attempt() {
    // First request: 429 with Retry-After: 1; later ones: a record. The server notes arrivals.
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = Arc::clone(&arrivals);
    let (base, _) = http_server(move |_, _| {
        let mut a = log.lock().unwrap();
        a.push(Instant::now());
        if a.len() == 1 {
            b"HTTP/1.1 429 Slow Down\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            let body = br#"{"id":5}"#;
            let mut r =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            r
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("t.parquet"));
    let summary = run(format!("{base}/x"), &mut cfg);
    assert_eq!(
        (summary.fetch.delivered, summary.records_written),
        (1, 1),
        "{summary}"
    );
    let a = arrivals.lock().unwrap();
    assert_eq!(a.len(), 2);
    // The client may come back later than asked, never sooner.
    assert!(
        a[1].duration_since(a[0]) >= Duration::from_secs(1),
        "{:?}",
        a[1] - a[0]
    );
}

//! The per-host request-rate limit, checked where it matters: on the server, which records
//! when each request arrived.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinflow::{Config, Pipeline, Source};

/// A keep-alive HTTP/1.1 server on loopback that answers every GET with one record and notes
/// the arrival time of each request.
fn recording_server() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&arrivals);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Answer every complete request head in the buffer.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        log.lock().unwrap().push(Instant::now());
                        let body = br#"{"id":1,"values":[1.0,2.0]}"#;
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (base, arrivals)
}

#[test]
fn requests_per_second_stay_within_rate_and_burst() {
    let (base, arrivals) = recording_server();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("r.parquet"));
    cfg.fetch.rate_limit = Some(40);
    cfg.fetch.rate_burst = Some(5);
    let urls: Vec<String> = (0..100).map(|i| format!("{base}/r/{i}")).collect();
    let summary = Pipeline::new(cfg).unwrap().run(Source::Urls(urls)).unwrap();
    assert_eq!(summary.records_written, 100, "{summary}");
    let mut t = arrivals.lock().unwrap().clone();
    t.sort();
    assert_eq!(t.len(), 100);
    // In any window of one second the server saw at most rate + burst requests; over any
    // window, at most burst + rate × window (the bucket's definition), with a little slack
    // for when the server noted the arrival.
    for (i, start) in t.iter().enumerate() {
        for (j, end) in t.iter().enumerate().skip(i) {
            let window = end.duration_since(*start) + Duration::from_millis(5);
            let allowed = 5.0 + 40.0 * window.as_secs_f64();
            let seen = (j - i + 1) as f64;
            assert!(
                seen <= allowed.floor() + 1.0,
                "{seen} requests within {window:?}: more than the bucket allows ({allowed:.1})"
            );
        }
    }
}

//! The per-host request-rate limit, checked where it matters: on the server, which records
//! when each request arrived.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    // Taken before the pipeline (and its token bucket) exists: no request can be sent before.
    let start = Instant::now();
    let summary = Pipeline::new(cfg).unwrap().run(Source::Urls(urls)).unwrap();
    let took = start.elapsed();
    assert_eq!(summary.records_written, 100, "{summary}");
    let mut t = arrivals.lock().unwrap().clone();
    t.sort();
    assert_eq!(t.len(), 100);
    // The bucket's definition, checked so that a busy machine cannot fail it: by any time
    // `start + s`, at most burst + rate × s requests were sent. The server notes a request when
    // it reads it, never before it was sent, so scheduling delays only lower its counts, and
    // `start` precedes the bucket. (Windows between two arrivals, as this test once checked,
    // fail when the server thread is held up and then notes a backlog at once.)
    for (k, at) in t.iter().enumerate() {
        let s = at.duration_since(start).as_secs_f64();
        let allowed = 5.0 + 40.0 * s;
        assert!(
            (k + 1) as f64 <= allowed.floor() + 1.0,
            "request {} arrived {s:.3} s after the start: more than the bucket allows ({allowed:.1})",
            k + 1
        );
    }
    // And from below: 100 requests with a burst of 5 take at least 95 / 40 s however fast the
    // machine (a bound that waiting can only help).
    assert!(
        took.as_secs_f64() >= 95.0 / 40.0,
        "100 requests in {took:?}: faster than 40 per second after a burst of 5"
    );
}

//! Load client for the HTTP receive endpoint (`pinflow run --listen`), used by
//! tools/receive-bench.sh: CLIENTS threads, each on one kept-alive connection, post the
//! NDJSON bodies of FILE (BODY_RECORDS lines each) round-robin until every body is
//! acknowledged (200), retrying after a 503. Plain std threads and sockets: per request it
//! writes one prepared buffer and reads one short answer, so it is not the bottleneck.
//!
//! ```text
//! cargo run --release --example receive_client -- 127.0.0.1:8080 records.ndjson 64 1000
//! ```
//! Prints one JSON line: `{"records":N,"seconds":S,"records_per_s":R,"retries":K}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: receive_client ADDR FILE CLIENTS BODY_RECORDS [TOKEN]");
        std::process::exit(2);
    }
    let (addr, file) = (args[0].clone(), &args[1]);
    let clients: usize = args[2].parse().expect("CLIENTS");
    let per_body: usize = args[3].parse().expect("BODY_RECORDS");
    let auth = args
        .get(4)
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    // Whole requests, prepared before the clock starts.
    let text = std::fs::read_to_string(file).expect("FILE");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let requests: Vec<(Vec<u8>, usize)> = lines
        .chunks(per_body.max(1))
        .map(|chunk| {
            let mut body = chunk.join("\n");
            body.push('\n');
            let mut req = format!(
                "POST /ingest HTTP/1.1\r\nHost: pinflow\r\nContent-Type: application/x-ndjson\r\n{auth}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(body.as_bytes());
            (req, chunk.len())
        })
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let (records, retries) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (requests, next) = (Arc::clone(&requests), Arc::clone(&next));
            let (records, retries, addr) =
                (Arc::clone(&records), Arc::clone(&retries), addr.clone());
            std::thread::spawn(move || {
                let mut conn: Option<BufReader<TcpStream>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((req, n)) = requests.get(i) else {
                        return;
                    };
                    loop {
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => match TcpStream::connect(&addr) {
                                Ok(s) => {
                                    s.set_nodelay(true).ok();
                                    conn.insert(BufReader::new(s))
                                }
                                Err(_) => {
                                    std::thread::sleep(Duration::from_millis(50));
                                    continue;
                                }
                            },
                        };
                        let answer = exchange(c, req);
                        if answer.is_some_and(|(_, close)| close) {
                            conn = None;
                        }
                        match answer.map(|(status, _)| status) {
                            Some(200) => {
                                records.fetch_add(*n as u64, Ordering::Relaxed);
                                break;
                            }
                            Some(status) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                if status != 503 {
                                    eprintln!("answer {status}");
                                }
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            None => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                conn = None;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let secs = started.elapsed().as_secs_f64();
    let n = records.load(Ordering::Relaxed);
    println!(
        "{{\"records\":{n},\"seconds\":{secs:.3},\"records_per_s\":{:.0},\"retries\":{}}}",
        n as f64 / secs,
        retries.load(Ordering::Relaxed)
    );
}

/// Sends one request and reads its answer: its status and whether the server closes the
/// connection after it; `None` when the connection broke.
fn exchange(c: &mut BufReader<TcpStream>, req: &[u8]) -> Option<(u16, bool)> {
    c.get_mut().write_all(req).ok()?;
    let mut line = String::new();
    c.read_line(&mut line).ok()?;
    let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
    let (mut length, mut close) = (0usize, false);
    loop {
        line.clear();
        c.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        close |= lower == "connection: close";
    }
    let mut body = vec![0; length];
    c.read_exact(&mut body).ok()?;
    Some((status, close))
}

//! The `[[enrich]]` benchmark (issue 22), run by `tools/enrich-bench/run.sh`:
//!
//! 1. **Warm cache**: NDJSON records with `--keys` distinct `service` values (50) from a file,
//!    through a pipeline with one HTTP enricher whose cache already holds every key (a first
//!    run warms it; the same pipeline runs again and is timed), against the same pipeline
//!    without the enricher. The target is a ratio of at least 0.9.
//! 2. **Cold start**: a fresh enricher against a lookup server answering after `--latency-ms`
//!    (20): the calls the server counts must equal the distinct keys.
//!
//! The lookup server is written here: std threads on 127.0.0.1, one per connection.
//!
//! ```text
//! cargo run --release --example enrich_bench -- --records 1000000 --keys 50 --runs 3
//! ```

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinflow::config::EnrichConfig;
use pinflow::{Config, Pipeline, Source};

struct Args {
    records: usize,
    keys: usize,
    runs: usize,
    latency: Duration,
}

fn args() -> Args {
    let mut a = Args {
        records: 1_000_000,
        keys: 50,
        runs: 3,
        latency: Duration::from_millis(20),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let n: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--records" => a.records = n as usize,
            "--keys" => a.keys = n as usize,
            "--runs" => a.runs = n.max(1) as usize,
            "--latency-ms" => a.latency = Duration::from_millis(n),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A keep-alive lookup server answering `/services/{key}` after `latency`; counts calls.
fn lookup_server(latency: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let calls = Arc::clone(&counted);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let key = head
                            .split(' ')
                            .nth(1)
                            .and_then(|p| p.rsplit('/').next())
                            .unwrap_or("")
                            .to_string();
                        calls.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(latency);
                        let body = format!(
                            r#"{{"owner": {{"team": "team-of-{key}"}}, "tier": {}}}"#,
                            key.len()
                        );
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).is_err() {
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
    (base, calls)
}

fn table(base: &str) -> EnrichConfig {
    EnrichConfig {
        url: Some(format!("{base}/services/{{service}}")),
        fields: [("team", "owner.team"), ("tier", "tier")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        types: [("tier".to_string(), "int64".to_string())].into(),
        ttl: Duration::from_secs(3600),
        ..EnrichConfig::default()
    }
}

fn pipeline(dir: &std::path::Path, name: &str, enrich: Vec<EnrichConfig>) -> Pipeline {
    let mut cfg = Config::new(dir.join(name));
    cfg.schema.fields = vec![
        "id:int64".into(),
        "service:string".into(),
        "latency_ms:float64".into(),
    ];
    cfg.writer.overwrite = true;
    cfg.enrich = enrich;
    Pipeline::new(cfg).expect("pipeline")
}

/// Records per second of the timed runs (after one untimed run), their median.
fn timed(p: &Pipeline, input: &std::path::Path, runs: usize, records: usize) -> f64 {
    let source = || Source::files(&[input.display().to_string()]).expect("source");
    let first = p.run(source()).expect("run");
    assert_eq!(first.records_written as usize, records);
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let s = p.run(source()).expect("run");
            assert_eq!(s.records_written as usize, records);
            records as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let a = args();
    let dir = std::env::temp_dir().join(format!("pinflow-enrich-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("records.ndjson");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
        for i in 0..a.records {
            writeln!(
                f,
                r#"{{"id": {i}, "service": "svc-{}", "latency_ms": {}.5}}"#,
                i % a.keys,
                i % 1000
            )
            .expect("write");
        }
    }

    // 1. Warm cache against no enrichment.
    let (base, calls) = lookup_server(Duration::ZERO);
    let plain = timed(
        &pipeline(&dir, "plain.parquet", Vec::new()),
        &input,
        a.runs,
        a.records,
    );
    let enriched = timed(
        &pipeline(&dir, "enriched.parquet", vec![table(&base)]),
        &input,
        a.runs,
        a.records,
    );
    let ratio = enriched / plain;
    println!(
        "warm cache: {} records, {} keys: {:.0} records/s enriched, {:.0} without: ratio {:.3} (target >= 0.9); lookup calls {}",
        a.records,
        a.keys,
        enriched,
        plain,
        ratio,
        calls.load(Ordering::Relaxed)
    );

    // 2. Cold start against a slow server: one call per distinct key.
    let (base, calls) = lookup_server(a.latency);
    let p = pipeline(&dir, "cold.parquet", vec![table(&base)]);
    let t = Instant::now();
    let s = p
        .run(Source::files(&[input.display().to_string()]).expect("source"))
        .expect("run");
    let made = calls.load(Ordering::Relaxed);
    println!(
        "cold start: {} records in {:.2} s against a {:?} server: {} calls for {} distinct keys ({})",
        s.records_written,
        t.elapsed().as_secs_f64(),
        a.latency,
        made,
        a.keys,
        if made == a.keys { "ok" } else { "MISMATCH" }
    );
    let _ = std::fs::remove_dir_all(&dir);
    if made != a.keys {
        std::process::exit(1);
    }
}

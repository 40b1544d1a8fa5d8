//! The metrics endpoint, scraped during and after a real run by an independent HTTP client
//! (ureq), its output parsed by a real Prometheus text-format parser and compared with the
//! run's summary.

use std::io::{BufReader, Read};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use pinflow::sim::{SimConfig, Simulator};
use pinflow::{Config, Pipeline, Source};
use prometheus_parse::{Sample, Scrape, Value};

/// A URL list that the test feeds while the run is going: the run cannot end before the test
/// closes it, so mid-run scrapes do not depend on timing.
struct Feed {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Feed {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => (self.buf, self.pos) = (b, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    let mut resp = agent.get(url).call().expect("endpoint answers");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().expect("text body"))
}

fn scrape(agent: &ureq::Agent, base: &str) -> Scrape {
    let (status, text) = get(agent, &format!("{base}/metrics"));
    assert_eq!(status, 200);
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition format")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matches =
        |x: &&Sample| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v));
    let sample = s
        .samples
        .iter()
        .find(matches)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: unexpected {other:?}"),
    }
}

#[test]
fn metrics_during_and_after_a_run_match_the_summary() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("out.parquet"));
    cfg.metrics.addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.writer.row_group_rows = 1000;
    let pipeline = Arc::new(Pipeline::new(cfg).unwrap());

    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let feed = Feed {
        rx,
        buf: Vec::new(),
        pos: 0,
    };
    let source = Source::Lines {
        name: "test feed".into(),
        reader: Box::new(BufReader::new(feed)),
    };
    let runner = {
        let p = Arc::clone(&pipeline);
        std::thread::spawn(move || p.run(source))
    };
    let base_url = format!("http://{}", sim.addr());
    let send = |from: u64, to: u64| {
        let mut lines = String::new();
        for i in from..=to {
            lines.push_str(&format!("{base_url}/logs/{i}.json\n"));
        }
        tx.send(lines.into_bytes()).unwrap();
    };
    send(1, 3000);
    tx.send(format!("{base_url}/status/404\n").repeat(7).into_bytes())
        .unwrap();

    // Mid-run: wait (bounded) until the first 3000 records are written.
    let agent = agent();
    let mut base = None;
    let mut mid = None;
    for _ in 0..3000 {
        if base.is_none() {
            base = pipeline.metrics_addr().map(|a| format!("http://{a}"));
        }
        if let Some(b) = &base {
            let s = scrape(&agent, b);
            if value(&s, "pinflow_records_total", &[("stage", "write")]) >= 3000.0
                && value(&s, "pinflow_requests_total", &[("outcome", "failed")]) >= 7.0
            {
                mid = Some(s);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let base = base.expect("the endpoint started");
    let mid = mid.unwrap_or_else(|| {
        let text = get(&agent, &format!("{base}/metrics")).1;
        panic!("3000 records not written while the feed is open:\n{text}")
    });
    assert_eq!(value(&mid, "pinflow_ready", &[]), 1.0);
    assert_eq!(
        value(&mid, "pinflow_thread_up", &[("thread", "fetch")]),
        1.0
    );
    // The run keeps the default queue capacity.
    assert_eq!(
        value(&mid, "pinflow_queue_capacity", &[("queue", "bodies")]),
        Config::new("x.parquet").queue_capacity as f64
    );
    let (status, health) = get(&agent, &format!("{base}/healthz"));
    assert_eq!(status, 200, "{health}");
    assert!(
        health.contains("fetch") && health.contains("writer"),
        "{health}"
    );
    assert_eq!(get(&agent, &format!("{base}/readyz")).0, 200);
    assert_eq!(get(&agent, &format!("{base}/nope")).0, 404);

    send(3001, 5000);
    drop(tx);
    let summary = runner.join().unwrap().expect("run succeeds");
    assert_eq!(summary.records_written, 5000);
    assert_eq!(summary.fetch.failed, 7);

    // After the run the endpoint still serves the final figures: they equal the summary.
    let s = scrape(&agent, &base);
    let count = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels) as u64;
    assert_eq!(
        count("pinflow_requests_total", &[("outcome", "admitted")]),
        summary.fetch.requests
    );
    assert_eq!(
        count("pinflow_requests_total", &[("outcome", "delivered")]),
        summary.fetch.delivered
    );
    assert_eq!(
        count("pinflow_requests_total", &[("outcome", "failed")]),
        summary.fetch.failed
    );
    assert_eq!(
        count("pinflow_request_failures_total", &[("reason", "http 404")]),
        7
    );
    assert_eq!(count("pinflow_responses_total", &[("class", "2xx")]), 5000);
    assert_eq!(count("pinflow_responses_total", &[("class", "4xx")]), 7);
    assert_eq!(
        count("pinflow_received_bytes_total", &[]),
        summary.fetch.body_bytes
    );
    assert_eq!(
        count("pinflow_records_total", &[("stage", "parse")]),
        summary.records_parsed
    );
    assert_eq!(
        count("pinflow_records_total", &[("stage", "compute")]),
        5000
    );
    assert_eq!(
        count("pinflow_records_total", &[("stage", "write")]),
        summary.records_written
    );
    assert_eq!(
        count("pinflow_dead_letters_total", &[]),
        summary.records_dead_lettered
    );
    assert_eq!(count("pinflow_row_groups_total", &[]), summary.row_groups);
    assert_eq!(summary.row_groups, 5);
    assert_eq!(count("pinflow_files_finalized_total", &[]), 1);
    assert_eq!(
        count("pinflow_short_path_batches_total", &[]),
        summary.short_path_batches
    );
    assert_eq!(
        count("pinflow_short_path_joins_total", &[]),
        summary.short_path_joins
    );
    assert_eq!(count("pinflow_in_flight_requests", &[]), 0);
    for (stage, h) in [
        ("fetch", &summary.latency.fetch),
        ("parse", &summary.latency.parse),
        ("compute", &summary.latency.compute),
        ("write", &summary.latency.write),
        ("end_to_end", &summary.latency.end_to_end),
    ] {
        assert_eq!(
            count("pinflow_stage_latency_seconds_count", &[("stage", stage)]),
            h.percentiles().count,
            "{stage}"
        );
    }
    assert_eq!(summary.latency.fetch.percentiles().count, 5007);
    assert_eq!(value(&s, "pinflow_ready", &[]), 0.0);
    assert_eq!(get(&agent, &format!("{base}/readyz")).0, 503);
    let (status, health) = get(&agent, &format!("{base}/healthz"));
    assert_eq!(status, 200, "finished threads are healthy: {health}");
    sim.stop();
}

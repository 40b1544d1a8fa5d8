//! The metrics endpoint, scraped during and after a real run by an independent HTTP client
//! (ureq), its output parsed by a real Prometheus text-format parser and compared with the
//! run's summary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::net::TcpStream;
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
        count("pinflow_requests_admitted_total", &[]),
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

/// The Prometheus text of `base`'s `/metrics`.
fn metrics_text(agent: &ureq::Agent, base: &str) -> String {
    let (status, text) = get(agent, &format!("{base}/metrics"));
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the one unlabelled sample `name` in exposition `text`.
fn plain(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name}:\n{text}"))
        .parse()
        .unwrap()
}

/// Checks what a Prometheus server relies on, strictly: every family is declared by one HELP
/// and one TYPE before its samples; samples of a family are contiguous; each histogram series
/// has buckets in increasing `le`, cumulative counts, a last `+Inf` bucket equal to its
/// `_count`, and a `_sum`. Returns the families by type.
fn check_exposition(text: &str) -> BTreeMap<String, String> {
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut done = BTreeSet::new();
    let mut current: Option<String> = None;
    // Histogram series (family + labels without le) → [(le, count)], _count, _sum.
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    let mut sums = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(help.insert(name.to_string()), "second HELP for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(help.contains(name), "TYPE before HELP for {name}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "second TYPE for {name}"
            );
            if let Some(prev) = current.replace(name.to_string()) {
                done.insert(prev);
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        let family = current
            .as_deref()
            .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
        assert!(!done.contains(family), "{family} is not contiguous");
        let kind = &types[family];
        let suffix = name
            .strip_prefix(family)
            .unwrap_or_else(|| panic!("{name} outside its family {family}"));
        let allowed: &[&str] = match kind.as_str() {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        assert!(allowed.contains(&suffix), "{name} in {kind} {family}");
        if kind == "histogram" {
            let mut le = None;
            let rest: Vec<&str> = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .filter(|l| match l.strip_prefix("le=") {
                    Some(v) => {
                        le = Some(v.trim_matches('"').to_string());
                        false
                    }
                    None => true,
                })
                .collect();
            let key = format!("{family}{{{}}}", rest.join(","));
            match suffix {
                "_bucket" => {
                    let le = le.unwrap_or_else(|| panic!("bucket without le: {line}"));
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    };
                    buckets.entry(key).or_default().push((bound, value));
                }
                "_count" => {
                    counts.insert(key, value);
                }
                _ => {
                    sums.insert(key);
                }
            }
        }
    }
    for (key, b) in &buckets {
        assert!(
            b.windows(2).all(|w| w[0].0 < w[1].0),
            "{key}: le not increasing {b:?}"
        );
        assert!(
            b.windows(2).all(|w| w[0].1 <= w[1].1),
            "{key}: not cumulative {b:?}"
        );
        let last = b.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{key} ends with +Inf");
        assert_eq!(
            Some(&last.1),
            counts.get(key),
            "{key}: +Inf bucket == _count"
        );
        assert!(sums.contains(key), "{key} has a _sum");
    }
    assert_eq!(buckets.len(), counts.len(), "every _count has buckets");
    types
}

/// Runs `promtool check metrics` on `text` where promtool is installed (Debian: package
/// `prometheus`); says so and skips where it is not, unless `CI_REQUIRE_PROMTOOL=1`
/// (set by `.ci/run`, which installs it), where a missing promtool fails the test.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var_os("CI_REQUIRE_PROMTOOL").is_none_or(|v| v != "1"),
            "CI_REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian: apt-get install prometheus)"
        );
        eprintln!("promtool not found on PATH: skipping `promtool check metrics` (the strict check above still ran)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 3 for lint findings (naming advice) and 1 for a malformed exposition;
    // the format must be valid, and the lint must find nothing either.
    assert!(
        out.status.success(),
        "promtool check metrics: {said}\n{text}"
    );
}

#[test]
fn the_exposition_is_valid_and_outcomes_partition_the_requests() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("out.parquet"));
    cfg.metrics.addr = Some("127.0.0.1:0".parse().unwrap());
    let pipeline = Pipeline::new(cfg).unwrap();
    let mut urls = String::new();
    for i in 1..=300 {
        urls.push_str(&format!("http://{}/logs/{i}.json\n", sim.addr()));
    }
    urls.push_str(&format!("http://{}/status/404\n", sim.addr()).repeat(3));
    let source = Source::Lines {
        name: "urls".into(),
        reader: Box::new(std::io::Cursor::new(urls.into_bytes())),
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let summary = pipeline.run(source).expect("run succeeds");
    assert_eq!(summary.fetch.failed, 3);
    let base = format!("http://{}", pipeline.metrics_addr().expect("endpoint"));
    let text = metrics_text(&agent(), &base);

    let types = check_exposition(&text);
    assert_eq!(types["pinflow_stage_duration_seconds"], "histogram");
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("pinflow_last_successful_write_timestamp_seconds", "gauge"),
        ("pinflow_requests_admitted_total", "counter"),
    ] {
        if name.starts_with("process_") && !cfg!(target_os = "linux") {
            continue;
        }
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    promtool_check(&text);

    // The outcomes partition the requests: summed over `outcome` they are the admitted ones.
    let outcomes: Vec<(&str, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pinflow_requests_total{outcome=\""))
        .map(|l| {
            let (outcome, v) = l.split_once("\"} ").unwrap();
            (outcome, v.parse().unwrap())
        })
        .collect();
    let names: Vec<_> = outcomes.iter().map(|(o, _)| *o).collect();
    assert_eq!(names, ["delivered", "failed", "cancelled"]);
    let sum: f64 = outcomes.iter().map(|(_, v)| v).sum();
    assert_eq!(sum, plain(&text, "pinflow_requests_admitted_total"));
    assert_eq!(sum as u64, summary.fetch.requests);

    // The histogram counts what the summary counts, and its buckets hold every observation.
    let fetch_count = text
        .lines()
        .find_map(|l| l.strip_prefix("pinflow_stage_duration_seconds_count{stage=\"fetch\"} "))
        .unwrap();
    assert_eq!(
        fetch_count.parse::<u64>().unwrap(),
        summary.latency.fetch.percentiles().count
    );

    // Something was written during this run, and the stamp says when.
    let wrote = plain(&text, "pinflow_last_successful_write_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        wrote >= started - 1.0 && wrote <= now + 1.0,
        "{started} <= {wrote} <= {now}"
    );
    if cfg!(target_os = "linux") {
        let start = plain(&text, "process_start_time_seconds");
        assert!(
            start <= started + 1.0 && start > started - 3600.0,
            "{start}"
        );
    }
    sim.stop();
}

#[test]
fn an_idle_continuous_run_reads_as_idle_in_thread_busy_time() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("logs.parquet"));
    cfg.metrics.addr = Some("127.0.0.1:0".parse().unwrap());
    // After its first pass the run has nothing to do for an hour.
    cfg.every = Some(Duration::from_secs(3600));
    let pipeline = Arc::new(Pipeline::new(cfg).unwrap());
    let registry = pipeline.metrics();
    let stop = pipeline.stop_flag();
    let runner = {
        let p = Arc::clone(&pipeline);
        let source = Source::from_arg(&sim.logs_template(200)).unwrap();
        std::thread::spawn(move || p.run(source))
    };
    for _ in 0..3000 {
        if registry.cycles.load(std::sync::atomic::Ordering::Relaxed) >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        registry.cycles.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the first pass ends"
    );
    let base = format!("http://{}", pipeline.metrics_addr().expect("endpoint"));
    let agent = agent();
    // Busy seconds of every thread, and uptime, as a scrape sees them.
    let busy = |s: &Scrape| -> BTreeMap<String, f64> {
        s.samples
            .iter()
            .filter(|x| x.metric == "pinflow_thread_busy_seconds_total")
            .map(|x| match x.value {
                Value::Counter(v) => (x.labels.get("thread").unwrap().to_string(), v),
                ref other => panic!("{other:?}"),
            })
            .collect()
    };
    let first = scrape(&agent, &base);
    // A few seconds of scraping an idle run, as Prometheus would.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        let _ = scrape(&agent, &base);
    }
    let last = scrape(&agent, &base);
    let wall =
        value(&last, "pinflow_uptime_seconds", &[]) - value(&first, "pinflow_uptime_seconds", &[]);
    assert!(wall >= 2.5, "{wall}");
    let (before, after) = (busy(&first), busy(&last));
    assert!(after.contains_key("fetch"), "{after:?}");
    for (thread, b) in &after {
        let delta = b - before[thread];
        assert!(
            delta < 0.5 * wall,
            "thread {thread} reads {delta:.2} s busy over {wall:.2} s of an idle run"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let summary = runner.join().unwrap().expect("the run ends cleanly");
    assert_eq!(summary.records_written, 200);
    sim.stop();
}

#[test]
fn healthz_is_answered_while_four_idle_connections_are_held() {
    use pinflow::metrics::endpoint::Endpoint;
    use pinflow::metrics::live::Registry;
    use pinflow::plan::Role;
    let endpoint = Endpoint::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Registry::new(&[Role::Fetch, Role::Writer])),
    )
    .unwrap();
    // Four clients that connect and say nothing (a stuck scraper, a port scan): served one
    // at a time, each would hold /healthz up for the 5 s request deadline, 20 s in all.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(endpoint.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // The agent gives up after 10 s: half what the four idle clients would cost in turn.
    let (status, body) = get(&agent(), &format!("http://{}/healthz", endpoint.addr()));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fetch"), "{body}");
    drop(idle);
}

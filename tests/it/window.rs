//! Time windows wired into the pipeline (issue 18): lateness decided in source order whatever
//! the thread counts and batch sizes, the flags and the `[window]` table alike, quiet streams
//! closing on `idle`, end of input and SIGTERM writing every open window, late records as
//! dead letters counted in the summary and the metrics, and a ledger that balances.
//!
//! Expected window rows come from a brute force over the generated input (`oracle`), never
//! from the engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use pinflow::window::{Agg, WindowSpec};
use pinflow::{Config, Pipeline, Source};

/// 2026-01-01T00:00:00Z in µs since the epoch.
const BASE_US: i64 = 1_767_225_600_000_000;
const SERVICES: [&str; 3] = ["api", "db", "web"];

/// One generated record.
#[derive(Debug, Clone)]
struct Rec {
    id: i64,
    /// Event time, µs since the epoch.
    ts: i64,
    service: &'static str,
    latency: f64,
}

impl Rec {
    fn line(&self) -> String {
        let off_ms = (self.ts - BASE_US) / 1000;
        format!(
            "{{\"id\":{},\"ts\":\"2026-01-01T{:02}:{:02}:{:02}.{:03}Z\",\"service\":\"{}\",\"latency_ms\":{}}}\n",
            self.id,
            off_ms / 3_600_000,
            off_ms / 60_000 % 60,
            off_ms / 1000 % 60,
            off_ms % 1000,
            self.service,
            self.latency
        )
    }
}

/// `n` records, mostly in order (7 ms apart), a fifth of them up to 1.5 s early-stamped (out of
/// order) and one in a hundred 3 to 10 s behind (late for a lateness under 3 s). Latencies are
/// whole numbers, so sums are exact whatever the order of addition.
fn records(n: usize, seed: u64) -> Vec<Rec> {
    let mut rng = fastrand::Rng::with_seed(seed); // the same stream on every run
    (0..n)
        .map(|i| {
            let mut ts = BASE_US + 20_000_000 + i as i64 * 7_000;
            match rng.u64(..100) {
                0 => ts -= 3_000_000 + rng.u64(..7_000_000) as i64,
                1..=20 => ts -= rng.u64(..1_500_000) as i64,
                _ => {}
            }
            // Millisecond precision, as the lines carry.
            ts -= ts % 1000;
            Rec {
                id: i as i64,
                ts,
                service: SERVICES[rng.u64(..3) as usize],
                latency: rng.u64(..500) as f64,
            }
        })
        .collect()
}

fn write_ndjson(path: &Path, recs: &[Rec]) {
    let text: String = recs.iter().map(Rec::line).collect();
    std::fs::write(path, text).unwrap();
}

/// A window row's figures: (start µs, key, count, latency count, sum, min, max).
type Figures = (i64, String, i64, i64, f64, f64, f64);

/// The brute force: windows `[k*hop, k*hop + size)`, one source partition, the watermark the
/// highest event time seen less `lateness`. A record whose windows have all ended at or before
/// the watermark (as it stood before the record) is late; otherwise it joins each of its
/// windows that has not ended. Returns the rows by (start, key) and the late records' ids.
fn oracle(recs: &[Rec], size: i64, hop: i64, lateness: i64) -> (Vec<Figures>, Vec<i64>) {
    let mut windows: BTreeMap<(i64, String), (i64, f64, f64, f64)> = BTreeMap::new();
    let mut late = Vec::new();
    let mut watermark: Option<i64> = None;
    let mut max_seen = i64::MIN;
    for r in recs {
        let last_start = r.ts.div_euclid(hop) * hop;
        let starts: Vec<i64> = (0..)
            .map(|j| last_start - j * hop)
            .take_while(|s| s + size > r.ts)
            .collect();
        let open: Vec<i64> = starts
            .into_iter()
            .filter(|s| watermark.is_none_or(|w| s + size > w))
            .collect();
        if open.is_empty() {
            late.push(r.id);
        } else {
            for s in open {
                let e = windows.entry((s, r.service.to_string())).or_insert((
                    0,
                    0.0,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ));
                e.0 += 1;
                e.1 += r.latency;
                e.2 = e.2.min(r.latency);
                e.3 = e.3.max(r.latency);
            }
        }
        max_seen = max_seen.max(r.ts);
        watermark = Some(max_seen - lateness);
    }
    let rows = windows
        .into_iter()
        .map(|((s, k), (n, sum, min, max))| (s, k, n, n, sum, min, max))
        .collect();
    (rows, late)
}

/// The window rows of `batches` as figures, sorted by (start, key).
fn figures(batches: &[RecordBatch]) -> Vec<Figures> {
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name} in {:?}", b.schema()))
                .clone()
        };
        let start = col("window_start");
        let start = start.as_primitive::<TimestampMicrosecondType>();
        let key = col("service");
        let count = col("count");
        let n = col("latency_ms_count");
        let sum = col("latency_ms_sum");
        let min = col("latency_ms_min");
        let max = col("latency_ms_max");
        for i in 0..b.num_rows() {
            let key = match key.data_type() {
                DataType::Dictionary(_, _) => {
                    let d = key.as_any_dictionary();
                    let k = d
                        .keys()
                        .as_primitive::<arrow_array::types::Int32Type>()
                        .value(i);
                    d.values().as_string::<i32>().value(k as usize).to_string()
                }
                _ => key.as_string::<i32>().value(i).to_string(),
            };
            let f = |a: &arrow_array::ArrayRef| a.as_primitive::<Float64Type>().value(i);
            out.push((
                start.value(i),
                key,
                count.as_primitive::<Int64Type>().value(i),
                n.as_primitive::<Int64Type>().value(i),
                f(&sum),
                f(&min),
                f(&max),
            ));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

/// The ids of the records in the dead-letter file whose reason says they were late, in file
/// order, and every reason seen.
fn late_dead_letters(path: &Path) -> (Vec<i64>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut ids = Vec::new();
    let mut reasons = Vec::new();
    for line in text.lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let reason = d["reason"].as_str().unwrap().to_string();
        if reason.starts_with("late") {
            let excerpt: serde_json::Value =
                serde_json::from_str(d["excerpt"].as_str().unwrap()).unwrap();
            ids.push(excerpt["id"].as_i64().unwrap());
        }
        reasons.push(reason);
    }
    (ids, reasons)
}

const FIELDS: [&str; 4] = [
    "id:int64",
    "ts:timestamp",
    "service:string",
    "latency_ms:float64",
];

/// The schema of the generated records, as `schema.fields`.
fn fields() -> Vec<String> {
    FIELDS.iter().map(|f| f.to_string()).collect()
}

fn spec(size: Duration, hop: Duration, lateness: Duration) -> WindowSpec {
    WindowSpec::hopping(size, hop)
        .with_by(["service"])
        .with_lateness(lateness)
        .with_aggregates("latency_ms", [Agg::Count, Agg::Sum, Agg::Min, Agg::Max])
}

/// What one library run over files gave: the window rows its callback got, the summary, the
/// late ids in its dead letters, and the late count in its metrics.
struct Run {
    rows: Vec<RecordBatch>,
    summary: pinflow::Summary,
    late: Vec<i64>,
    late_metric: u64,
    emitted_metric: u64,
}

/// Runs `files` through windows of `spec` with `parse`/`compute` threads and file chunks of
/// `chunk` bytes. With `stall`, a transform holds every third batch back a while on its compute
/// thread, so that later batches overtake it on the way to the writer (as they do on a busy
/// machine), and only putting them back in source order gives the same rows.
fn run_files(
    dir: &Path,
    files: &[PathBuf],
    spec: WindowSpec,
    (parse, compute, window_threads): (usize, usize, usize),
    chunk: usize,
    stall: bool,
) -> Run {
    let rows = Arc::new(Mutex::new(Vec::new()));
    let got = Arc::clone(&rows);
    let dead = dir.join(format!(
        "dead-{parse}-{compute}-{window_threads}-{chunk}-{stall}.ndjson"
    ));
    let dead_path = dead.clone();
    let stalled = std::sync::atomic::AtomicU64::new(0);
    let stall_some = move |rows: RecordBatch| {
        let n = stalled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if stall && n.is_multiple_of(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok::<_, pinflow::stage::BoxError>(rows)
    };
    let pipeline = Pipeline::builder()
        .parquet(false)
        .configure(move |c: &mut Config| {
            c.schema.fields = fields();
            c.threads.parse = Some(parse);
            c.threads.compute = Some(compute);
            c.threads.pin = false;
            c.window.threads = window_threads;
            c.queue_capacity = 2;
            c.fetch.batch_max_bytes = chunk;
            c.dead_letter = Some(dead_path);
            c.writer.max_dead_letters = "100%".into();
        })
        .window(spec)
        .transform(stall_some)
        .on_batch(move |b| got.lock().unwrap().push(b.clone()))
        .build()
        .unwrap();
    let specs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let summary = pipeline.run(Source::files(&specs).unwrap()).unwrap();
    let metrics = pipeline.metrics();
    let late = late_dead_letters(&dead).0;
    let rows = std::mem::take(&mut *rows.lock().unwrap());
    Run {
        rows,
        summary,
        late,
        late_metric: metrics
            .window
            .late
            .load(std::sync::atomic::Ordering::Relaxed),
        emitted_metric: metrics
            .window
            .rows_emitted
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// The guard of source order: the same out-of-order input gives the same window rows and the
/// same late records with one parse thread and small chunks as with four parse and two compute
/// threads and large ones, and with the keys spread over three window threads; both agree with the brute force, late records are dead letters
/// counted in the summary and the metrics, and the ledger balances.
#[test]
fn window_rows_and_late_records_do_not_depend_on_threads_or_batch_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(6000, 7);
    let file = dir.path().join("events.ndjson");
    write_ndjson(&file, &recs);
    let (size, lateness) = (Duration::from_secs(1), Duration::from_millis(500));
    let (want, want_late) = oracle(&recs, 1_000_000, 1_000_000, 500_000);
    assert!(want_late.len() > 20, "the input has late records to find");

    let one = std::slice::from_ref(&file);
    let small = run_files(
        dir.path(),
        one,
        spec(size, size, lateness),
        (1, 0, 1),
        4096,
        false,
    );
    let large = run_files(
        dir.path(),
        one,
        spec(size, size, lateness),
        (4, 2, 1),
        1 << 20,
        false,
    );
    let overtaken = run_files(
        dir.path(),
        one,
        spec(size, size, lateness),
        (2, 3, 3),
        4096,
        true,
    );
    for run in [&small, &large, &overtaken] {
        assert_eq!(figures(&run.rows), want);
        assert_eq!(run.late, want_late, "late records, in source order");
        let s = &run.summary;
        assert!(s.ledger_balances(), "{s:?}");
        assert_eq!(s.records_parsed, recs.len() as u64);
        assert_eq!(s.records_windowed, (recs.len() - want_late.len()) as u64);
        assert_eq!(s.window_rows_written, want.len() as u64);
        assert_eq!(s.records_written, 0, "records are not written, windows are");
        assert_eq!(
            s.dead_by_reason.get("window: late").copied(),
            Some(want_late.len() as u64),
            "{:?}",
            s.dead_by_reason
        );
        assert_eq!(run.late_metric, want_late.len() as u64);
        assert_eq!(run.emitted_metric, want.len() as u64);
    }

    // Two files: two source partitions, read one after the other; the runs agree with each
    // other (the rows in emission order, not only as a set).
    let second = dir.path().join("more.ndjson");
    write_ndjson(&second, &records(3000, 11));
    let files = [file, second];
    let a = run_files(
        dir.path(),
        &files,
        spec(size, size, lateness),
        (1, 0, 1),
        4096,
        false,
    );
    let b = run_files(
        dir.path(),
        &files,
        spec(size, size, lateness),
        (2, 3, 3),
        4096,
        true,
    );
    let in_order = |r: &Run| {
        let mut v = Vec::new();
        for batch in &r.rows {
            v.extend(figures(std::slice::from_ref(batch)));
        }
        v
    };
    assert_eq!(in_order(&a), in_order(&b));
    assert_eq!(a.late, b.late);
    assert!(a.summary.ledger_balances() && b.summary.ledger_balances());
}

/// Quiet streams close (the complaint about peers): records pushed, then silence with
/// `idle` set; the window rows reach the callback while the source is still open, before the
/// run ends.
#[test]
fn a_quiet_push_source_writes_its_windows_after_idle_before_the_run_ends() {
    // Dead letters (late records) go here, not beside the default output in the cwd.
    let scratch = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<RecordBatch>();
    let tx = Mutex::new(tx);
    let pipeline = Pipeline::builder()
        .parquet(false)
        .configure(|c| {
            c.schema.fields = fields();
            c.dead_letter = Some(scratch.path().join("dead.ndjson"));
        })
        .window(
            spec(
                Duration::from_secs(10),
                Duration::from_secs(10),
                Duration::ZERO,
            )
            .with_idle(Duration::from_millis(200)),
        )
        .on_batch(move |b| {
            let _ = tx.lock().unwrap().send(b.clone());
        })
        .build()
        .unwrap();
    let (source, push) = Source::push(16);
    let run = pipeline.spawn(source).unwrap();
    let recs = records(50, 3);
    let text: String = recs.iter().map(Rec::line).collect();
    push.push(text).unwrap();
    // Generous: the idle close needs 200 ms of silence; a loaded machine may take longer.
    let mut got = vec![rx
        .recv_timeout(Duration::from_secs(60))
        .expect("window rows within 60 s of silence")];
    // The push handle is alive, so the run cannot have ended: the rows came from `idle`.
    assert!(!run.is_finished());
    drop(push);
    let summary = run.join().unwrap();
    got.extend(rx.try_iter());
    let (want, late) = oracle(&recs, 10_000_000, 10_000_000, 0);
    assert_eq!(figures(&got), want);
    assert_eq!(summary.records_windowed, (recs.len() - late.len()) as u64);
    assert!(summary.ledger_balances(), "{summary:?}");
}

/// A stop (what SIGTERM does in the binary) writes every open window: nothing pushed is lost
/// in a window that had not closed.
#[test]
fn a_stopped_run_writes_every_open_window() {
    // Dead letters (late records) go here, not beside the default output in the cwd.
    let scratch = tempfile::tempdir().unwrap();
    let rows = Arc::new(Mutex::new(Vec::new()));
    let got = Arc::clone(&rows);
    let pipeline = Pipeline::builder()
        .parquet(false)
        .configure(|c| {
            c.schema.fields = fields();
            c.dead_letter = Some(scratch.path().join("dead.ndjson"));
        })
        // An hour: no window closes on event time.
        .window(spec(
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            Duration::ZERO,
        ))
        .on_batch(move |b| got.lock().unwrap().push(b.clone()))
        .build()
        .unwrap();
    let (source, push) = Source::push(16);
    let run = pipeline.spawn(source).unwrap();
    let recs = records(400, 5);
    push.push(recs.iter().map(Rec::line).collect::<String>())
        .unwrap();
    let summary = run.shutdown().unwrap();
    drop(push);
    let (want, late) = oracle(&recs, 3_600_000_000, 3_600_000_000, 0);
    assert!(late.is_empty());
    let rows = rows.lock().unwrap();
    // What the stop let in (everything pushed before it, or a prefix) is all in the rows.
    let total: i64 = figures(&rows).iter().map(|f| f.2).sum();
    assert_eq!(total as u64, summary.records_windowed);
    assert!(summary.ledger_balances(), "{summary:?}");
    if summary.records_parsed == recs.len() as u64 {
        assert_eq!(figures(&rows), want);
    }
}

/// A window key the fixed schema does not have is refused before the run starts, naming the
/// key; with an inferred schema, at the first rows, naming it too.
#[test]
fn a_window_column_the_rows_lack_is_an_error_naming_the_key() {
    // Dead letters (late records) go here, not beside the default output in the cwd.
    let scratch = tempfile::tempdir().unwrap();
    let fixed = Pipeline::builder()
        .parquet(false)
        .configure(|c| {
            c.schema.fields = fields();
            c.dead_letter = Some(scratch.path().join("dead.ndjson"));
        })
        .window(WindowSpec::tumbling(Duration::from_secs(1)).with_by(["region"]))
        .build()
        .unwrap();
    let (source, push) = Source::push(4);
    drop(push);
    let e = fixed.run(source).unwrap_err().to_string();
    assert!(e.contains("region"), "{e}");
    assert!(e.contains("window"), "{e}");

    let inferred = Pipeline::builder()
        .parquet(false)
        .configure(|c| {
            c.schema.infer = Some(true);
            c.dead_letter = Some(scratch.path().join("dead-inferred.ndjson"));
        })
        .window(WindowSpec::tumbling(Duration::from_secs(1)).with_by(["region"]))
        .build()
        .unwrap();
    let (source, push) = Source::push(4);
    let run = inferred.spawn(source).unwrap();
    let _ = push.push("{\"ts\":1767225600000000,\"service\":\"api\"}\n");
    drop(push);
    let e = run.join().unwrap_err().to_string();
    assert!(e.contains("region") && e.contains("window"), "{e}");
}

/// HTTP sources are windowed in URL-list order however many requests are in flight: the
/// fetcher holds a response that completes before those of earlier URLs until they have ended
/// (docs/usage.md, "Time windows"). Some pages are slow (later ones complete first), some
/// fail (their records are in no window), some continue on a second page through
/// `Link: rel="next"` (a chain is one work item, its pages in order); batches overtake each
/// other on three compute threads. The window rows and the late records are the brute
/// force's over the records in URL order, with one request in flight and with sixteen; and
/// with the blocking engine (which follows no `Link`, and fetches with one thread for it).
#[cfg(feature = "http")]
#[test]
fn an_http_source_is_windowed_in_url_list_order_with_many_requests_in_flight() {
    let recs = records(3000, 17);
    let chunks: Vec<&[Rec]> = recs.chunks(50).collect();
    let n = chunks.len();
    let failing = |i: usize| i % 11 == 4;
    let two_pages = |i: usize| i % 7 == 3;
    let text = |rs: &[Rec]| rs.iter().map(Rec::line).collect::<String>();
    let served: Vec<(String, String)> = chunks
        .iter()
        .map(|c| (text(&c[..c.len() / 2]), text(&c[c.len() / 2..])))
        .collect();
    let (base, _) = crate::common::http_server(move |path, _| {
        let mut parts = path.trim_start_matches("/p/").split('/');
        let i: usize = parts.next().unwrap().parse().unwrap();
        let second = parts.next().is_some();
        // Early pages slow, so later ones complete before them when several are in flight.
        if i.is_multiple_of(5) || second {
            std::thread::sleep(Duration::from_millis(30 - (i as u64 % 20)));
        }
        if failing(i) {
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
        }
        let (first_half, second_half) = &served[i];
        let (body, link) = match (two_pages(i), second) {
            (false, _) => (format!("{first_half}{second_half}"), String::new()),
            (true, false) => (
                first_half.clone(),
                format!("Link: </p/{i}/2>; rel=\"next\"\r\n"),
            ),
            (true, true) => (second_half.clone(), String::new()),
        };
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{link}\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let fetched = |second_pages: bool| -> Vec<Rec> {
        let page = |(i, c): (usize, &&[Rec])| match two_pages(i) && !second_pages {
            true => c[..c.len() / 2].to_vec(),
            false => c.to_vec(),
        };
        let pages = chunks.iter().enumerate().filter(|(i, _)| !failing(*i));
        pages.flat_map(page).collect()
    };
    let cases = [
        (1, pinflow::config::FetchEngine::Mio),
        (16, pinflow::config::FetchEngine::Mio),
        (16, pinflow::config::FetchEngine::Ureq),
    ];
    for (in_flight, engine) in cases {
        let mio = engine == pinflow::config::FetchEngine::Mio;
        let fetched = fetched(mio);
        let (want, late) = oracle(&fetched, 1_000_000, 1_000_000, 300_000);
        assert!(!late.is_empty());
        let scratch = tempfile::tempdir().unwrap();
        let rows = Arc::new(Mutex::new(Vec::new()));
        let got = Arc::clone(&rows);
        let stalled = std::sync::atomic::AtomicU64::new(0);
        let pipeline = Pipeline::builder()
            .parquet(false)
            .configure(|c| {
                c.schema.fields = fields();
                c.dead_letter = Some(scratch.path().join("dead.ndjson"));
                c.fetch.max_in_flight = in_flight;
                c.fetch.connections_per_host = in_flight;
                c.fetch.follow_link_next = mio;
                c.fetch.engine = engine;
                c.threads.parse = Some(2);
                c.threads.compute = Some(3);
                c.threads.pin = false;
            })
            .window(spec(
                Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_millis(300),
            ))
            .transform(move |b: RecordBatch| {
                if stalled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(3)
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok::<_, pinflow::stage::BoxError>(b)
            })
            .on_batch(move |b| got.lock().unwrap().push(b.clone()))
            .build()
            .unwrap();
        let source = Source::from_arg(&format!("{base}/p/{{0..{}}}", n - 1)).unwrap();
        let summary = pipeline.run(source).unwrap();
        assert_eq!(
            figures(&rows.lock().unwrap()),
            want,
            "{in_flight} in flight, {engine:?}"
        );
        let (late_ts, _) = late_dead_letters(&scratch.path().join("dead.ndjson"));
        assert_eq!(
            late_ts, late,
            "{in_flight} in flight, {engine:?}: the same late records"
        );
        assert_eq!(
            summary.records_windowed,
            (fetched.len() - late.len()) as u64
        );
        assert_eq!(
            summary.fetch.failed,
            (0..n).filter(|&i| failing(i)).count() as u64
        );
        assert!(summary.ledger_balances(), "{summary:?}");
    }
}

#[cfg(feature = "cli")]
mod cli {
    use super::*;
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    fn pinflow() -> Command {
        crate::common::pinflow_piped()
    }

    /// `--field` for each of [`FIELDS`].
    fn field_flags() -> Vec<String> {
        FIELDS
            .iter()
            .flat_map(|f| ["--field".into(), f.to_string()])
            .collect()
    }

    fn window_rows(out: &Path) -> Vec<Figures> {
        figures(&crate::common::read_parquet(out))
    }

    /// `--window 2s/1s --window-by --window-agg --window-lateness` and the same `[window]`
    /// table in a file give the same (hopping) window rows, those of the brute force.
    #[test]
    fn flags_and_the_window_table_give_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(3000, 13);
        let input = dir.path().join("in.ndjson");
        write_ndjson(&input, &recs);
        let fields = field_flags();
        let by_flags = dir.path().join("flags.parquet");
        let o = pinflow()
            .args(["run", "--progress", "never", "--files"])
            .arg(&input)
            .arg("--out")
            .arg(&by_flags)
            .args(&fields)
            .args(["--window", "2s/1s", "--window-by", "service"])
            .args(["--window-agg", "latency_ms:count,sum"])
            .args(["--window-agg", "latency_ms:min,max"])
            .args(["--window-lateness", "500ms", "--max-dead-letters", "100%"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout.contains("windows    "), "{stdout}");

        let config = dir.path().join("w.toml");
        std::fs::write(
            &config,
            "[window]\nsize = \"2s\"\nhop = \"1s\"\nby = [\"service\"]\nlateness = \"500ms\"\n\
             [window.aggregates]\nlatency_ms = [\"count\", \"sum\", \"min\", \"max\"]\n",
        )
        .unwrap();
        let by_file = dir.path().join("file.parquet");
        let o = pinflow()
            .args(["run", "--progress", "never", "--config"])
            .arg(&config)
            .arg("--files")
            .arg(&input)
            .arg("--out")
            .arg(&by_file)
            .args(&fields)
            .args(["--max-dead-letters", "100%"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (want, _) = oracle(&recs, 2_000_000, 1_000_000, 500_000);
        assert_eq!(window_rows(&by_flags), want);
        assert_eq!(window_rows(&by_file), want);
    }

    /// A `--window-by` column a fixed schema lacks fails at start, before any file is made,
    /// naming the key.
    #[test]
    fn a_window_key_the_fixed_schema_lacks_fails_at_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.ndjson");
        write_ndjson(&input, &records(10, 1));
        let out = dir.path().join("o.parquet");
        let fields = field_flags();
        let o = pinflow()
            .args(["run", "--files"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(&fields)
            .args(["--window", "1s", "--window-by", "region"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            stderr.contains("window") && stderr.contains("region"),
            "{stderr}"
        );
        assert!(!out.exists());
    }

    /// SIGTERM on a stream whose windows are all open (an hour long) writes every one of them:
    /// the rows count every record the run took in, as its summary says.
    #[test]
    fn sigterm_writes_every_open_window() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("w.parquet");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let fields = field_flags();
        let mut child = pinflow()
            .args(["run", "--files", "-", "--progress", "never", "--out"])
            .arg(&out)
            .args(&fields)
            .args(["--window", "1h", "--window-by", "service"])
            .args(["--window-agg", "latency_ms:count,sum,min,max"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        // An endless stream (stdin is read in chunks, so it must keep coming), every record
        // in the first hour.
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            for i in 0i64.. {
                let r = Rec {
                    id: i,
                    ts: BASE_US + (i * 7_000) % 3_000_000_000,
                    service: SERVICES[(i % 3) as usize],
                    latency: (i % 500) as f64,
                };
                if stdin.write_all(r.line().as_bytes()).is_err() {
                    return;
                }
            }
        });
        let open = move || {
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            body.lines()
                .find(|l| l.starts_with("pinflow_window_open "))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        };
        crate::common::wait_for_child(&mut child, "windows open", open);
        let o = crate::common::sigterm_and_wait(child);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let windowed: u64 = stdout
            .split("windows    ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no windows line in {stdout}"));
        assert!(windowed > 0);
        let rows = window_rows(&out);
        let total: i64 = rows.iter().map(|f| f.2).sum();
        assert_eq!(total as u64, windowed, "{stdout}");
    }
}

//! Polling from a saved position (`fetch.since_field`, `{since}` in the URL): an API that
//! answers "the records after `since`" and grows between passes is asked from the highest
//! value written so far, pass after pass and, with the journal, run after run; the
//! placeholder and the option go together, and the column must be able to be a position.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

/// Record `i`'s event time: 2026-01-01, `i` seconds after midnight, as the API writes it.
fn ts(i: u64) -> String {
    format!("2026-01-01T00:{:02}:{:02}.000000Z", i / 60, i % 60)
}

/// The `since` query value of `path`, percent-decoded (`None` when absent).
fn since_of(path: &str) -> Option<String> {
    let (_, q) = path.split_once('?')?;
    let raw = q.split('&').find_map(|p| p.strip_prefix("since="))?;
    let mut out = Vec::new();
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8(out).unwrap())
}

/// A loopback API over records `0..held` whose event times are [`ts`]: `/events?since=T`
/// answers the records whose time is after T (all of them for an empty T), then grows by
/// `step` records, up to `cap`. Returns its URL template (with `{since}`), the `since` values
/// asked for, in order, and how many records it served in all.
struct TimeApi {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicU64>,
}

fn time_api(step: u64, cap: u64) -> TimeApi {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(AtomicU64::new(0));
    let held = Arc::new(AtomicU64::new(step));
    let (log, count) = (Arc::clone(&asked), Arc::clone(&served));
    let (base, _) = http_server(move |path, _| {
        let since = since_of(path).unwrap_or_default();
        log.lock().unwrap().push(since.clone());
        let n = held.load(Ordering::SeqCst);
        // The API's own times compare as text: one format, zero-padded.
        let body: Vec<String> = (0..n)
            .filter(|&i| since.is_empty() || ts(i) > since)
            .map(|i| format!("{{\"id\":{i},\"ts\":\"{}\"}}", ts(i)))
            .collect();
        count.fetch_add(body.len() as u64, Ordering::SeqCst);
        held.store((n + step).min(cap), Ordering::SeqCst);
        let body = format!("[{}]", body.join(","));
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    TimeApi {
        url: format!("{base}/events?since={{since}}&limit=100"),
        asked,
        served,
    }
}

#[test]
fn since_polling_asks_from_the_highest_time_written_and_writes_each_record_once() {
    let api = time_api(10, 30);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("events.parquet"));
    cfg.every = Some(Duration::from_millis(100));
    cfg.schema.fields = vec!["id:int64".into(), "ts:timestamp".into()];
    cfg.fetch.since_field = Some("ts".into());
    // A pass may start before the writer has taken the last one's rows: it then asks from
    // the older position again, and the repeats are dropped here.
    cfg.fetch.dedupe_key = Some("id".into());
    let pipeline = Arc::new(Pipeline::new(cfg).unwrap());
    let stop = pipeline.stop_flag();
    let runner = {
        let p = Arc::clone(&pipeline);
        let source = Source::from_arg(&api.url).unwrap();
        std::thread::spawn(move || p.run(source))
    };
    // Once all 30 records were written, a pass asks from the last one's time.
    let last = ts(29);
    wait_until("a pass asking from the last record's time", || {
        api.asked.lock().unwrap().contains(&last)
    });
    stop.store(true, Ordering::Relaxed);
    let summary = runner.join().unwrap().expect("the run ends cleanly");
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.fetch.failed, 0, "{summary}");
    let want: Vec<i64> = (0..30).collect();
    assert_eq!(all_final_ids(dir.path()), want, "each record once");
    // What the API served more than once is what the deduplication dropped: nothing else.
    let served = api.served.load(Ordering::SeqCst);
    assert_eq!(summary.records_filtered, served - 30, "{summary}");
    let asked = api.asked.lock().unwrap().clone();
    // The first pass asks from `fetch.since_start` (empty), the later ones from the
    // position, which only goes forward, through the last time of each growth step.
    assert_eq!(asked[0], "", "{asked:?}");
    assert!(asked.windows(2).all(|w| w[0] <= w[1]), "{asked:?}");
    for i in [9, 19, 29] {
        assert!(asked.contains(&ts(i)), "{asked:?}");
    }
    // The metrics show the position, in µs since the epoch (2026-01-01T00:00:29Z).
    let (value, timestamp) = pipeline.metrics().since.get().unwrap();
    assert_eq!((value, timestamp), (1_767_225_629_000_000, true));
}

/// A loopback API over records with `seq` 1..=`held`: `/feed?after=N` answers those above N
/// (all for an empty N). Returns its base URL, the `after` values asked for, and the handle
/// that sets how many it holds.
fn seq_api() -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicU64>) {
    let held = Arc::new(AtomicU64::new(0));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (n, log) = (Arc::clone(&held), Arc::clone(&asked));
    let (base, _) = http_server(move |path, _| {
        let after = path
            .split_once("after=")
            .map(|(_, v)| v.split('&').next().unwrap_or("").to_string())
            .unwrap_or_default();
        log.lock().unwrap().push(after.clone());
        let from: u64 = after.parse().unwrap_or(0);
        let body: Vec<String> = (from + 1..=n.load(Ordering::SeqCst))
            .map(|s| format!("{{\"id\":{s},\"seq\":{s}}}"))
            .collect();
        let body = format!("[{}]", body.join(","));
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    (base, asked, held)
}

#[test]
fn a_restarted_run_asks_from_the_position_its_journal_saved() {
    let (base, asked, held) = seq_api();
    let url = format!("{base}/feed?after={{since}}");
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut cfg = Config::new(dir.path().join("feed.parquet"));
        cfg.writer.journal = true;
        cfg.schema.fields = vec!["id:int64".into(), "seq:int64".into()];
        cfg.fetch.since_field = Some("seq".into());
        cfg
    };
    // Each run is a new process's: a new pipeline, whose only memory is the journal.
    let run = || {
        let pipeline = Pipeline::new(config()).unwrap();
        pipeline.run(Source::from_arg(&url).unwrap()).unwrap()
    };
    held.store(5, Ordering::SeqCst);
    let first = run();
    assert_eq!(first.records_written, 5, "{first}");
    let journal = std::fs::read_to_string(dir.path().join("feed.parquet.journal")).unwrap();
    assert!(
        journal.contains(r#""since":["seq","int64",5]"#),
        "{journal}"
    );
    // Records arrive while nothing runs.
    held.store(9, Ordering::SeqCst);
    let second = run();
    assert_eq!(second.records_written, 4, "{second}");
    // Nothing new: the third run asks from 9 and writes nothing.
    let third = run();
    assert_eq!(third.records_written, 0, "{third}");
    assert_eq!(*asked.lock().unwrap(), ["", "5", "9"]);
    let want: Vec<i64> = (1..=9).collect();
    assert_eq!(
        all_final_ids(dir.path()),
        want,
        "each record once across the runs"
    );
    // A position saved for another column is not taken for this one's.
    let mut other = config();
    other.fetch.since_field = Some("id".into());
    let e = Pipeline::new(other)
        .unwrap()
        .run(Source::from_arg(&url).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("saved the position of `seq`"), "{e}");
}

/// The error a run of `cfg` over `url` ends with.
fn run_error(cfg: Config, url: &str) -> String {
    match Pipeline::new(cfg) {
        Err(e) => e.to_string(),
        Ok(p) => p
            .run(Source::from_arg(url).unwrap())
            .expect_err("the run is refused")
            .to_string(),
    }
}

#[test]
fn since_placeholder_and_field_are_refused_apart_and_the_field_must_be_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |field: Option<&str>| {
        let mut cfg = Config::new(dir.path().join("x.parquet"));
        cfg.schema.fields = vec!["id:int64".into(), "ts:timestamp".into(), "v:string".into()];
        cfg.fetch.since_field = field.map(str::to_string);
        cfg
    };
    // Nothing listens on these: every refusal comes before a request.
    let with = "http://127.0.0.1:9/events?since={since}";
    let without = "http://127.0.0.1:9/events";
    let e = run_error(cfg(None), with);
    assert!(
        e.contains("fetch.since_field") && e.contains("{since}"),
        "{e}"
    );
    let e = run_error(cfg(Some("ts")), without);
    assert!(
        e.contains("fetch.since_field") && e.contains("{since}"),
        "{e}"
    );
    let e = run_error(cfg(Some("nope")), with);
    assert!(e.contains("`nope` is not a column"), "{e}");
    let e = run_error(cfg(Some("v")), with);
    assert!(e.contains("not a timestamp or int64"), "{e}");
    let e = run_error(cfg(Some(" ")), with);
    assert!(e.contains("fetch.since_field"), "{e}");
    // Left to the records (no fields listed), the column is checked with the first rows:
    // the run stops there, before any of them is written.
    let (base, _) = http_server(|_, _| {
        let body = r#"[{"id":1,"name":"first"}]"#;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let inferred = tempfile::tempdir().unwrap();
    let mut c = Config::new(inferred.path().join("x.parquet"));
    c.fetch.since_field = Some("name".into());
    let e = run_error(c, &format!("{base}/e?since={{since}}"));
    assert!(
        e.contains("fetch.since_field") && e.contains("column `name` is"),
        "{e}"
    );
    assert!(final_parquet_files(inferred.path()).is_empty());
    // A template keeps its range with the placeholder anywhere.
    let t = Source::from_arg("http://127.0.0.1:9/d/{1..3}?since={since}").unwrap();
    assert_eq!(t.mentions_since(), Some(true));
    // The journal goes with continuous mode only where it keeps a position.
    let mut c = cfg(None);
    c.every = Some(Duration::from_secs(1));
    c.writer.journal = true;
    let e = Pipeline::new(c.clone()).err().expect("refused").to_string();
    assert!(e.contains("writer.journal"), "{e}");
    c.fetch.since_field = Some("ts".into());
    assert!(Pipeline::new(c).is_ok());
}

/// The binary, in continuous mode with the journal: stopped by SIGTERM and started again, it
/// asks first from the position its last checkpoint saved, and writes each record once.
#[test]
#[cfg(feature = "cli")]
fn a_continuous_run_with_the_journal_resumes_from_its_position_after_sigterm() {
    let (base, asked, held) = seq_api();
    held.store(4, Ordering::SeqCst);
    let url = format!("{base}/feed?after={{since}}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("feed.parquet");
    let start = || {
        pinflow_piped()
            .args(["run", "--urls", &url, "--out"])
            .arg(&out)
            .args(["--every", "100ms", "--journal", "--since-field", "seq"])
            .args(["--field", "id:int64", "--field", "seq:int64"])
            .args(["--progress", "never"])
            .spawn()
            .unwrap()
    };
    let asked_for = |v: &str| asked.lock().unwrap().iter().any(|a| a == v);
    let mut child = start();
    wait_for_child(&mut child, "a pass asking after 4", || asked_for("4"));
    let first = sigterm_and_wait(child);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("pass starts"), "{stderr}");
    // Records arrive while nothing runs; the restarted process knows only its journal.
    held.store(7, Ordering::SeqCst);
    let before = asked.lock().unwrap().len();
    let mut child = start();
    wait_for_child(&mut child, "a pass asking after 7", || asked_for("7"));
    let second = sigterm_and_wait(child);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{stderr}");
    let later = asked.lock().unwrap()[before..].to_vec();
    assert_eq!(
        later[0], "4",
        "the restarted run's first request: {later:?}"
    );
    let want: Vec<i64> = (1..=7).collect();
    assert_eq!(
        all_final_ids(dir.path()),
        want,
        "each record once across the runs"
    );
}

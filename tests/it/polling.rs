//! Polling an API without duplicates: continuous mode over a paginated endpoint whose data
//! grows between passes writes each record once with `fetch.dedupe_key`, and without it says
//! plainly, once, that every pass writes everything again (and does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

/// Records on the endpoint after pass `pass` (1-based): it grows for three passes, then stays.
fn total(pass: u64) -> u64 {
    40 * pass.min(3)
}

/// A loopback API: `/items?page=N` serves 25 records a page, ids ascending, with a
/// `Link: rel="next"` while more remain. A request for page 1 starts a pass; the records of a
/// pass are those `total` gives for it. Returns the URL of page 1 and the pass count.
fn growing_api() -> (String, Arc<AtomicU64>) {
    let passes = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&passes);
    let (base, _) = http_server(move |path, _| {
        let page: u64 = path
            .rsplit_once("page=")
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(1);
        let pass = match page {
            1 => counter.fetch_add(1, Ordering::SeqCst) + 1,
            _ => counter.load(Ordering::SeqCst),
        };
        let (from, to) = ((page - 1) * 25, (page * 25).min(total(pass)));
        let body: Vec<String> = (from..to)
            .map(|i| format!("{{\"id\":{i},\"v\":\"item {i}\"}}"))
            .collect();
        let body = format!("[{}]", body.join(","));
        let link = match to < total(pass) {
            true => format!("Link: </items?page={}>; rel=\"next\"\r\n", page + 1),
            false => String::new(),
        };
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{link}\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    (format!("{base}/items?page=1"), passes)
}

fn polling_config(out: &std::path::Path) -> Config {
    let mut cfg = Config::new(out);
    cfg.every = Some(Duration::from_millis(150));
    cfg.fetch.follow_link_next = true;
    cfg.schema.fields = vec!["id:int64".into(), "v:string".into()];
    cfg
}

#[test]
fn a_growing_paginated_api_polled_with_dedupe_key_writes_each_record_once() {
    let (url, passes) = growing_api();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = polling_config(&dir.path().join("items.parquet"));
    cfg.fetch.dedupe_key = Some("id".into());
    let pipeline = Arc::new(Pipeline::new(cfg).unwrap());
    let metrics = pipeline.metrics();
    let stop = pipeline.stop_flag();
    let runner = {
        let p = Arc::clone(&pipeline);
        let source = Source::from_arg(&url).unwrap();
        std::thread::spawn(move || p.run(source))
    };
    // Three growing passes and one more over the same records, all finished.
    let started = std::time::Instant::now();
    while metrics.cycles.load(Ordering::Relaxed) < 4 {
        assert!(
            started.elapsed() < STOP_DEADLINE,
            "four passes not within {STOP_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let summary = runner.join().unwrap().expect("the run ends cleanly");
    assert!(passes.load(Ordering::SeqCst) >= 4);
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.fetch.failed, 0, "{summary}");
    let want: Vec<i64> = (0..120).collect();
    assert_eq!(all_final_ids(dir.path()), want);
    assert_eq!(summary.records_written, 120, "{summary}");
    // Passes 2 and 3 repeated 40 and 80 records, pass 4 (and any later one) all 120: each
    // counted as filtered, none lost.
    assert!(summary.records_filtered >= 40 + 80 + 120, "{summary}");
    assert_eq!(
        summary.records_parsed,
        summary.records_written + summary.records_filtered,
        "{summary}"
    );
}

#[test]
#[cfg(feature = "cli")]
fn polling_without_dedupe_key_warns_once_and_writes_every_pass_again() {
    let (url, _passes) = growing_api();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("items.parquet");
    let child = pinflow_piped()
        .args(["run", "--urls", &url, "--out"])
        .arg(&out)
        .args([
            "--every",
            "150ms",
            "--follow-link-next",
            "--rotate-interval",
            "200ms",
            "--field",
            "id:int64",
            "--field",
            "v:string",
            "--progress",
            "never",
        ])
        .spawn()
        .unwrap();
    let mut child = child;
    // A finalized file holding all 120 ids more than once: passes repeated.
    wait_for_child(&mut child, "a repeated record written", || {
        let ids = all_final_ids(dir.path());
        ids.len() > 120 && ids.windows(2).any(|w| w[0] == w[1])
    });
    let done = sigterm_and_wait(child);
    let stderr = String::from_utf8_lossy(&done.stderr);
    let warnings = stderr
        .matches("continuous mode without fetch.dedupe_key: each pass fetches every URL again")
        .count();
    assert_eq!(warnings, 1, "{stderr}");
}

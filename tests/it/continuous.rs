//! Continuous mode: the sources are polled again and again, files rotate, and a stop request
//! ends the run with every file finalized and every record accounted for.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pinflow::sim::{SimConfig, Simulator};
use pinflow::{Config, Pipeline, Source};

#[test]
fn polls_again_rotates_files_and_stops_cleanly() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("logs.parquet"));
    cfg.every = Some(Duration::from_millis(300));
    cfg.writer.rotate_interval = Some(Duration::from_millis(50));
    let pipeline = Arc::new(Pipeline::new(cfg).unwrap());
    let metrics = pipeline.metrics();
    let stop = pipeline.stop_flag();
    let runner = {
        let p = Arc::clone(&pipeline);
        let source = Source::from_arg(&sim.logs_template(500)).unwrap();
        std::thread::spawn(move || p.run(source))
    };
    // Wait for three passes (an event: the cycle counter), then ask to stop, as SIGTERM would.
    common::wait_until("three passes", || {
        metrics.cycles.load(Ordering::Relaxed) >= 3
    });
    stop.store(true, Ordering::Relaxed);
    let summary = runner.join().unwrap().expect("the run ends cleanly");
    assert!(summary.ledger_balances());
    assert_eq!(summary.fetch.failed, 0);
    assert!(summary.records_written >= 1500, "{summary}");

    // Only finalized files (no temporary ones), named by the rotation pattern, and together
    // they hold every row the summary counts: each id once per completed pass.
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file left behind: {name}");
        assert!(
            name.starts_with("logs-") && name.ends_with(".parquet"),
            "{name}"
        );
        files.push(dir.path().join(name));
    }
    // Not luck: passes start at least 300 ms apart, and the writer checks the 50 ms rotation
    // after every batch it writes and at its deadline, so a rotation always falls between the
    // first pass's first rows and the third pass's last ones, however slow the machine.
    assert!(files.len() >= 2, "files rotate: {files:?}");
    assert_eq!(files.len() as u64, summary.files);
    let mut per_id: HashMap<i64, u64> = HashMap::new();
    let mut rows = 0;
    for f in &files {
        for r in common::rows(f) {
            *per_id.entry(r.record.id).or_default() += 1;
            rows += 1;
        }
    }
    assert_eq!(rows, summary.records_written);
    let passes = metrics.cycles.load(Ordering::Relaxed);
    assert_eq!(per_id.len(), 500);
    for (id, n) in per_id {
        // The pass a stop interrupts may be partial; every earlier pass is complete.
        assert!(
            n >= passes - 1 && n <= passes,
            "id {id} written {n} times in {passes} passes"
        );
    }
    sim.stop();
}

#[test]
fn standard_input_cannot_be_polled_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("x.parquet"));
    cfg.every = Some(Duration::from_secs(1));
    let err = Pipeline::new(cfg)
        .unwrap()
        .run(Source::from_arg("-").unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("standard input"), "{err}");
}

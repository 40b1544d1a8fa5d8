//! Every fault the simulator can inject, mixed in at meaningful rates over 20,000 requests:
//! nothing is lost, nothing is duplicated, and every request ends delivered or failed with a
//! reason.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::*;
use pinflow::config::FetchEngine;
use pinflow::sim::{Chunking, FaultMode, Faults, SimConfig, Simulator};
use pinflow::{Config, Pipeline, Source};

#[test]
fn mixed_faults_lose_and_duplicate_nothing() {
    check(FetchEngine::Mio, 20_000);
}

/// The blocking fallback keeps the same contract (fewer requests: it is the slow one).
#[test]
fn mixed_faults_lose_and_duplicate_nothing_with_the_ureq_fetcher() {
    check(FetchEngine::Ureq, 3_000);
}

fn check(engine: FetchEngine, n: u64) {
    let mut faults = Faults {
        seed: 7,
        retry_after_secs: 1,
        ..Faults::default()
    };
    for mode in FaultMode::ALL {
        faults = faults.with(mode, 0.01);
    }
    let sim = Simulator::start(SimConfig {
        faults,
        // Half the responses chunked, so truncated chunked bodies happen too.
        chunking: Chunking::Alternate,
        ..SimConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("f.parquet"));
    cfg.fetch.first_byte_timeout = Duration::from_millis(300);
    cfg.fetch.idle_timeout = Duration::from_millis(300);
    cfg.fetch.max_attempts = 6;
    cfg.fetch.max_retry_after = Duration::from_secs(2);
    cfg.fetch.request_timeout = Duration::from_secs(5);
    cfg.fetch.engine = engine;
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::from_arg(&sim.logs_template(n)).unwrap())
        .unwrap();
    let stats = sim.stop();
    eprintln!("{summary}injected: {:?}", stats.faults_injected);

    // The request ledger.
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.fetch.requests, n);
    assert_eq!(summary.fetch.delivered + summary.fetch.failed, n);
    assert!(summary.fetch.retries > 0, "{summary}");
    for mode in FaultMode::ALL {
        assert!(stats.injected(mode) > 0, "{} never injected", mode.name());
    }

    // Written: each id at most once, and only ids the server really served whole.
    let written = ids(&cfg.out);
    let unique: BTreeSet<i64> = written.iter().copied().collect();
    assert_eq!(unique.len(), written.len(), "an id was written twice");
    let served: BTreeSet<i64> = stats.served_ok_ids.iter().map(|&i| i as i64).collect();
    assert!(
        unique.is_subset(&served),
        "written ids the server never served whole"
    );

    // Every id not written is in the dead-letter file with a reason (a failed request, or a
    // body that arrived broken, e.g. a Content-Length shorter than the record).
    let dead_text = std::fs::read_to_string(cfg.dead_letter_path()).unwrap_or_default();
    let mut dead: BTreeMap<i64, String> = BTreeMap::new();
    for line in dead_text.lines() {
        let id = line
            .split("/logs/")
            .nth(1)
            .and_then(|rest| rest.split(".json").next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("dead letter without a URL: {line}"));
        assert!(line.contains("\"reason\":\""), "{line}");
        dead.insert(id, line.to_string());
    }
    for id in 1..=n as i64 {
        match (unique.contains(&id), dead.get(&id)) {
            (true, None) | (false, Some(_)) => {}
            (true, Some(line)) => panic!("id {id} written and dead-lettered: {line}"),
            (false, None) => panic!("id {id} neither written nor dead-lettered: lost"),
        }
    }
    assert_eq!(
        summary.records_written + summary.fetch.failed + summary.records_dead_lettered,
        n,
        "{summary}"
    );
}

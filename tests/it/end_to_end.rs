//! Simulator → pipeline → Parquet, read back and compared with what the simulator generated.

use crate::common::*;
use pinflow::sim::{Chunking, SimConfig, Simulator, Workload};
use pinflow::{Config, Pipeline, Source};

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::new(dir.join("out.parquet"));
    // Small row groups so the files hold several of them.
    cfg.writer.row_group_rows = 700;
    cfg
}

#[test]
fn single_record_responses_chunked_and_content_length() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        chunking: Chunking::Alternate,
        ..SimConfig::default()
    })
    .unwrap();
    let n = 3000;
    let summary = Pipeline::new(config(dir.path()))
        .unwrap()
        .run(Source::from_arg(&sim.logs_template(n)).unwrap())
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    // Every batch that reached the writer has its handoff latency (response -> writer).
    let handoff = summary.latency.handoff.percentiles();
    assert!(handoff.count > 0, "{summary}");
    assert_eq!(handoff.count, summary.latency.write.percentiles().count);
    assert_eq!(
        (
            summary.fetch.requests,
            summary.fetch.delivered,
            summary.fetch.failed
        ),
        (n, n, 0)
    );
    assert_eq!(
        (summary.records_written, summary.records_dead_lettered),
        (n, 0)
    );
    assert!(summary.row_groups >= 5, "{} row groups", summary.row_groups);
    assert_rows_match_workload(
        &rows(&dir.path().join("out.parquet")),
        &Workload::default(),
        1..=n,
    );
    // Only the final file: no temporary name left, no dead-letter file for a clean run.
    assert_eq!(dir_names(dir.path()), ["out.parquet"]);
    let stats = sim.stop();
    assert_eq!(stats.requests, n);
}

#[test]
fn ndjson_pages_arrays_and_objects_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let workload = Workload {
        page_size: 250,
        values_per_record: 17,
        ..Workload::default()
    };
    let sim = Simulator::start(SimConfig {
        workload: workload.clone(),
        chunking: Chunking::Always,
        ..SimConfig::default()
    })
    .unwrap();
    // Pages 1-4 as NDJSON (ids 1..=1000), pages 5-6 as arrays (1001..=1500), then objects.
    let mut urls: Vec<String> = (1..=4)
        .map(|j| sim.url(&format!("/pages/{j}.ndjson")))
        .collect();
    urls.extend((5..=6).map(|j| sim.url(&format!("/arrays/{j}.json"))));
    urls.extend((1501..=1600).map(|i| sim.url(&format!("/logs/{i}.json"))));
    let summary = Pipeline::new(config(dir.path()))
        .unwrap()
        .run(Source::Urls(urls))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.records_written, 1600);
    assert_rows_match_workload(&rows(&dir.path().join("out.parquet")), &workload, 1..=1600);
}

#[test]
fn url_list_file_with_comments() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let list = dir.path().join("urls.txt");
    let mut text = String::from("# three records\n\n");
    for i in [5, 6, 7] {
        text.push_str(&format!("{}\n", sim.url(&format!("/logs/{i}.json"))));
    }
    std::fs::write(&list, text).unwrap();
    let summary = Pipeline::new(config(dir.path()))
        .unwrap()
        .run(Source::from_arg(list.to_str().unwrap()).unwrap())
        .unwrap();
    assert_eq!(summary.fetch.requests, 3);
    assert_rows_match_workload(
        &rows(&dir.path().join("out.parquet")),
        &Workload::default(),
        5..=7,
    );
}

#[test]
fn server_closing_keep_alive_connections_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        close_every: Some(3),
        ..SimConfig::default()
    })
    .unwrap();
    let n = 4000;
    let mut cfg = config(dir.path());
    cfg.fetch.connections_per_host = 8;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::from_arg(&sim.logs_template(n)).unwrap())
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(
        (summary.fetch.delivered, summary.fetch.failed),
        (n, 0),
        "{summary}"
    );
    assert_rows_match_workload(
        &rows(&dir.path().join("out.parquet")),
        &Workload::default(),
        1..=n,
    );
    let stats = sim.stop();
    // The server really did close connections: far more than 8 were needed.
    assert!(
        stats.connections >= n / 3,
        "{} connections",
        stats.connections
    );
    assert!(summary.fetch.connections >= n / 3);
}

#[test]
fn back_pressure_bounds_live_batches_with_a_slow_writer() {
    let dir = tempfile::tempdir().unwrap();
    let workload = Workload {
        page_size: 1000,
        ..Workload::default()
    };
    let sim = Simulator::start(SimConfig {
        workload: workload.clone(),
        ..SimConfig::default()
    })
    .unwrap();
    let mut cfg = Config::new(dir.path().join("out.parquet"));
    cfg.queue_capacity = 1;
    cfg.fetch.batch_max_items = 1;
    // A deliberately slow writer: high zstd levels cost far more than parsing.
    cfg.writer.compression = "zstd:17".parse().unwrap();
    cfg.writer.row_group_rows = 20_000;
    let pipeline = Pipeline::new(cfg).unwrap();
    let summary = pipeline
        .run(Source::from_arg(&sim.pages_template(200)).unwrap())
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.records_written, 200_000);
    let plan = pipeline.plan();
    let bound = pipeline
        .config()
        .max_live_batches(plan.parse_threads(), plan.compute_threads());
    assert_eq!(summary.live_batch_bound, bound);
    assert!(
        summary.peak_live_batches <= bound,
        "peak {} > bound {bound}",
        summary.peak_live_batches
    );
    // The fetcher really was held back by the full queue.
    assert!(!summary.fetch.blocked.is_zero(), "{summary}");
    let ids: std::collections::BTreeSet<i64> = rows(&dir.path().join("out.parquet"))
        .iter()
        .map(|r| r.record.id)
        .collect();
    assert_eq!(ids.len(), 200_000);
    assert_eq!((ids.first(), ids.last()), (Some(&1), Some(&200_000)));
}

#[test]
fn shards_split_a_source_without_overlap_or_gap() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut seen = std::collections::BTreeMap::new();
    let mut requests = 0;
    for k in 0..3 {
        let mut cfg = config(dir.path());
        cfg.out = dir.path().join(format!("shard-{k}.parquet"));
        cfg.fetch.shard = Some(format!("{k}/3").parse().unwrap());
        let summary = Pipeline::new(cfg.clone())
            .unwrap()
            .run(Source::from_arg(&sim.logs_template(900)).unwrap())
            .unwrap();
        assert!(summary.ledger_balances());
        // Each instance counts only its own work items as requests.
        requests += summary.fetch.requests;
        assert!(summary.fetch.requests > 200 && summary.fetch.requests < 400);
        for r in rows(&cfg.out) {
            *seen.entry(r.record.id).or_insert(0) += 1;
        }
    }
    assert_eq!(requests, 900);
    assert_eq!(seen.len(), 900, "every id in some shard");
    assert!(seen.values().all(|&n| n == 1), "no id in two shards");
}

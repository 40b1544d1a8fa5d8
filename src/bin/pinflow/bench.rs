//! `pinflow bench`: throughput against the built-in simulator, and `--compare`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pinflow::sim::{SimConfig, Simulator, Workload};
use pinflow::{metrics, Source, Summary};

use crate::alloc::ALLOCATIONS;
use crate::options::{flag_given, load, validated, FlagsSet, Options};
use crate::runtime::run_pipeline;
use crate::Failure;

/// The benchmark's simulator serving `records` records of `values` floats, one per response
/// or in NDJSON pages of `per_response`, with `faults`; and the URL template that covers them.
fn bench_simulator(
    records: u64,
    values: usize,
    per_response: u64,
    faults: pinflow::sim::Faults,
) -> pinflow::Result<(Simulator, String)> {
    let sim = Simulator::start(SimConfig {
        workload: Workload {
            values_per_record: values,
            page_size: per_response,
            ..Workload::default()
        },
        faults,
        ..SimConfig::default()
    })
    .map_err(|e| pinflow::Error::Config {
        what: "simulator".into(),
        why: format!("cannot bind a loopback port: {e}"),
    })?;
    let template = if per_response == 1 {
        sim.logs_template(records.max(1))
    } else {
        sim.pages_template(records.div_ceil(per_response).max(1))
    };
    Ok((sim, template))
}

/// `bench --compare`: the same workload through the mio fetcher, the ureq fallback, and mio
/// against a simulator injecting every fault at 1 %, each on a fresh simulator, one after the
/// other in this process; figures as ratios to the first.
pub fn compare_fetchers(
    file: Option<&Path>,
    records: u64,
    values: usize,
    per_response: u64,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    use pinflow::config::FetchEngine;
    use pinflow::sim::{FaultMode, Faults};
    let (cfg, layers) = load(file, opts)?;
    let mut set = FlagsSet::new();
    let dir = std::env::temp_dir().join(format!("pinflow-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| pinflow::Error::Output {
        path: dir.clone(),
        op: "create",
        cause: e.to_string(),
    })?;
    set.push(("out", "--out"));
    let mut all_faults = Faults::default();
    for mode in FaultMode::ALL {
        all_faults = all_faults.with(mode, 0.01);
    }
    let per_response = per_response.max(1);
    let mut rows: Vec<(&str, Summary)> = Vec::new();
    for (name, engine, faults) in [
        ("mio", FetchEngine::Mio, Faults::default()),
        ("ureq", FetchEngine::Ureq, Faults::default()),
        ("mio, faults 1% each", FetchEngine::Mio, all_faults),
    ] {
        let mut c = cfg.clone();
        c.out = dir.join(format!("{}.parquet", rows.len()));
        c.dead_letter = None;
        c.fetch.engine = engine;
        if faults.enabled() {
            // Stalls would otherwise cost the default 15 s each.
            c.fetch.first_byte_timeout = Duration::from_millis(300);
            c.fetch.idle_timeout = Duration::from_millis(300);
        }
        let c = validated(c, &layers, &set)?;
        let (sim, template) = bench_simulator(records, values, per_response, faults)?;
        let (source, total) = Source::from_arg_counted(&template)?;
        let summary = run_pipeline(c, source, "bench", total)?;
        sim.stop();
        rows.push((name, summary));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let base = rows[0].1.records_per_sec().max(1e-9);
    outln!("bench --compare: {records} records, {values} values each, {per_response} per response");
    outln!(
        "{:<22} {:>12} {:>8} {:>9} {:>9} {:>9} {:>13}",
        "fetcher",
        "records/s",
        "ratio",
        "written",
        "dead",
        "failed",
        "retries"
    );
    for (name, s) in &rows {
        outln!(
            "{:<22} {:>12.0} {:>7.2}x {:>9} {:>9} {:>9} {:>13}",
            name,
            s.records_per_sec(),
            s.records_per_sec() / base,
            s.records_written,
            s.records_dead_lettered,
            s.fetch.failed,
            s.fetch.retries
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pinflow bench`: one run against a fresh simulator, its figures as text or JSON.
pub fn bench(
    file: Option<&Path>,
    records: u64,
    values: usize,
    per_response: u64,
    out: Option<PathBuf>,
    json: bool,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    let (mut cfg, layers) = load(file, opts)?;
    let mut set = FlagsSet::new();
    let per_response = per_response.max(1);
    let tmp_dir = std::env::temp_dir().join(format!("pinflow-bench-{}", std::process::id()));
    let out_path = match &out {
        Some(p) => p.clone(),
        None => {
            std::fs::create_dir_all(&tmp_dir).map_err(|e| pinflow::Error::Output {
                path: tmp_dir.clone(),
                op: "create",
                cause: e.to_string(),
            })?;
            tmp_dir.join("bench.parquet")
        }
    };
    // A benchmark takes the tuning from the configuration, never its output locations.
    cfg.out = out_path;
    if !flag_given(&layers, "dead_letter") {
        cfg.dead_letter = None;
    }
    set.push(("out", "--out"));
    let cfg = validated(cfg, &layers, &set)?;
    let (sim, template) = bench_simulator(records, values, per_response, Default::default())?;
    let cpu_before = metrics::process_cpu_time();
    let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
    let (source, total) = Source::from_arg_counted(&template)?;
    let summary = run_pipeline(cfg, source, "bench", total)?;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_before;
    let allocs_per_record = allocs as f64 / summary.records_written.max(1) as f64;
    let cpu_after = metrics::process_cpu_time();
    let sim_stats = sim.stop();
    if out.is_none() {
        let _ = std::fs::remove_dir_all(&tmp_dir);
    }
    let cpu_total = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let sim_share = match (sim_stats.cpu, cpu_total) {
        (Some(s), Some(t)) if !t.is_zero() => Some(s.as_secs_f64() / t.as_secs_f64()),
        _ => None,
    };
    let rss = metrics::peak_rss_bytes();
    let l = &summary.latency;
    let stages = [
        ("fetch", &l.fetch),
        ("parse", &l.parse),
        ("compute", &l.compute),
        ("write", &l.write),
        ("end_to_end", &l.end_to_end),
        ("handoff", &l.handoff),
    ];
    if json {
        let mut s = format!(
            "{{\"records\":{},\"values\":{values},\"per_response\":{per_response},\"records_written\":{},\"records_windowed\":{},\"records_dead_lettered\":{},\"elapsed_s\":{:.6},\"records_per_s\":{:.1},\"mb_per_s\":{:.2},\"requests\":{},\"failed\":{},\"peak_rss_bytes\":{},\"cpu_s\":{},\"simulator_cpu_share\":{},\"peak_live_batches\":{},\"allocations_per_record\":{:.3},\"plan\":{:?},\"latency_us\":{{",
            records,
            summary.records_written,
            summary.records_windowed,
            summary.records_dead_lettered,
            summary.elapsed.as_secs_f64(),
            summary.records_per_sec(),
            summary.mb_per_sec(),
            summary.fetch.requests,
            summary.fetch.failed,
            rss.map_or("null".into(), |v| v.to_string()),
            cpu_total.map_or("null".into(), |v| format!("{:.3}", v.as_secs_f64())),
            sim_share.map_or("null".into(), |v| format!("{v:.3}")),
            summary.peak_live_batches,
            allocs_per_record,
            summary.plan,
        );
        for (i, (name, h)) in stages.iter().enumerate() {
            let p = h.percentiles();
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "\"{name}\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"n\":{}}}",
                p.p50_us, p.p99_us, p.p999_us, p.count
            ));
        }
        s.push_str("}}");
        outln!("{s}");
    } else {
        outln!("bench: {records} records, {values} values each, {per_response} per response");
        out!("{summary}");
        outln!(
            "peak RSS   {:.1} MiB",
            rss.unwrap_or(0) as f64 / (1 << 20) as f64
        );
        outln!(
            "allocs     {allocs_per_record:.2} per record written (pinflow's threads; the in-process simulator's are not counted)"
        );
        if let (Some(t), Some(share)) = (cpu_total, sim_share) {
            outln!(
                "cpu        {:.2} s in total, simulator {:.1}% of it",
                t.as_secs_f64(),
                share * 100.0
            );
        }
        outln!(
            "throughput {:.0} records/s, {:.1} MB/s",
            summary.records_per_sec(),
            summary.mb_per_sec()
        );
    }
    Ok(if summary.fetch.failed > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

//! `pinflow sim`: the built-in log simulator as a server of its own.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pinflow::sim::{SimConfig, Simulator, Workload};

use crate::runtime::install_signals;
use crate::Failure;

/// Serves on `addr` until SIGINT or SIGTERM, printing URL templates that fetch `records`
/// records of `values` floats (as `demo --records` fetches; at least 1, as the command line
/// checks), one per request or in NDJSON pages of `page_size` (the last page full), then the
/// server's statistics.
pub fn sim(
    addr: SocketAddr,
    records: u64,
    values: usize,
    page_size: u64,
) -> Result<ExitCode, Failure> {
    // Signals first: a SIGTERM right after the URLs are printed must not kill us.
    let stop = install_signals(Arc::new(AtomicBool::new(false)));
    let page_size = page_size.max(1);
    let sim = Simulator::start(SimConfig {
        addr,
        workload: Workload {
            values_per_record: values,
            page_size,
            ..Workload::default()
        },
        ..SimConfig::default()
    })
    .map_err(|e| pinflow::Error::Config {
        what: "simulator".into(),
        why: format!("cannot listen on {addr}: {e}"),
    })?;
    outln!("base    {}", sim.url(""));
    outln!(
        "logs    {}  (one record per request)",
        sim.logs_template(records)
    );
    let pages = records.div_ceil(page_size);
    outln!(
        "pages   {}  (NDJSON, {page_size} records per page, {} records)",
        sim.pages_template(pages),
        pages * page_size
    );
    eprintln!("pinflow sim: serving until SIGINT or SIGTERM");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = sim.stop();
    outln!(
        "served  {} requests, {} bytes, {} connections, server CPU {}",
        stats.requests,
        stats.bytes,
        stats.connections,
        stats
            .cpu
            .map_or("n/a".into(), |c| format!("{:.3} s", c.as_secs_f64()))
    );
    Ok(ExitCode::SUCCESS)
}

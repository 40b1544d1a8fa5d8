//! The `pinflow` command: `demo`, `run` and `bench`.
//!
//! Exit codes: 0 success; 1 the run could not be done (configuration, output, internal error);
//! 2 bad command line; 3 the run finished but some requests failed for good (their URLs and
//! reasons are in the dead-letter file).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pinflow::sim::{SimConfig, Simulator, Workload};
use pinflow::{metrics, Compression, Config, Pipeline, Source, Summary};

#[derive(Parser)]
#[command(
    name = "pinflow",
    version,
    about = "HTTP JSON logs → pinned-thread pipeline → Parquet, nothing lost"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve 20,000 generated log records from the built-in simulator and process them.
    Demo {
        /// Output Parquet file.
        #[arg(long, default_value = "pinflow-demo.parquet")]
        out: PathBuf,
        /// Records to fetch (one per request).
        #[arg(long, default_value_t = 20_000)]
        records: u64,
        #[command(flatten)]
        opts: Options,
    },
    /// Fetch real endpoints: a URL file (one per line), `-` for stdin, or a template
    /// such as `http://host/logs/{1..20000}.json`.
    Run {
        /// URL file, `-`, or template with one `{START..END}` range.
        #[arg(long)]
        urls: String,
        /// Output Parquet file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        opts: Options,
    },
    /// Throughput benchmark against the built-in simulator.
    Bench {
        /// Records to process.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Floats per record.
        #[arg(long, default_value_t = 64)]
        values: usize,
        /// Records per response: 1 (one JSON object per request) or a page size (NDJSON).
        #[arg(long, default_value_t = 1)]
        per_response: u64,
        /// Output file (default: a temporary file, removed afterwards).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: Options,
    },
}

#[derive(Args, Clone)]
struct Options {
    /// Parse threads (default: derived from the cores).
    #[arg(long)]
    parse_threads: Option<usize>,
    /// Compute threads (default: derived from the cores).
    #[arg(long)]
    compute_threads: Option<usize>,
    /// Comma-separated CPU ids to run on (default: all available).
    #[arg(long, value_delimiter = ',')]
    cpus: Option<Vec<usize>>,
    /// Do not pin threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Batches per queue between stages.
    #[arg(long, default_value_t = 8)]
    queue_capacity: usize,
    /// Keep-alive connections per host.
    #[arg(long, default_value_t = 32)]
    connections_per_host: usize,
    /// Requests in flight at once, all hosts together.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Attempts per request on connection errors and timeouts.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Largest accepted response body, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_body_bytes: usize,
    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 65_536)]
    row_group_rows: usize,
    /// none, snappy, zstd or zstd:LEVEL.
    #[arg(long, default_value = "snappy")]
    compression: String,
    /// Dead-letter NDJSON file (default: OUT.deadletter.ndjson).
    #[arg(long)]
    dead_letter: Option<PathBuf>,
}

impl Options {
    fn config(&self, out: PathBuf) -> pinflow::Result<Config> {
        let mut c = Config::new(out);
        c.threads.parse = self.parse_threads;
        c.threads.compute = self.compute_threads;
        c.threads.cpus = self.cpus.clone();
        c.threads.pin = !self.no_pin;
        c.queue_capacity = self.queue_capacity;
        c.fetch.connections_per_host = self.connections_per_host;
        c.fetch.max_in_flight = self.max_in_flight;
        c.fetch.max_attempts = self.max_attempts;
        if !(self.request_timeout.is_finite() && self.request_timeout > 0.0) {
            return Err(pinflow::Error::Config {
                what: "--request-timeout".into(),
                why: "must be a positive number of seconds".into(),
            });
        }
        c.fetch.request_timeout = Duration::from_secs_f64(self.request_timeout);
        c.fetch.max_body_bytes = self.max_body_bytes;
        c.writer.row_group_rows = self.row_group_rows;
        c.writer.compression = self.compression.parse::<Compression>()?;
        c.dead_letter = self.dead_letter.clone();
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pinflow: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGINT/SIGTERM set `stop` (drain and finish); a second one exits at once, leaving only
/// complete files under final names (an unfinished file is still under its temporary name).
fn install_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop));
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    stop
}

fn run_pipeline(cfg: Config, source: Source) -> pinflow::Result<Summary> {
    let pipeline = Pipeline::new(cfg)?;
    let stop = install_signals();
    let flag = pipeline.stop_flag();
    // Forward the signal flag to the pipeline's own flag.
    std::thread::spawn(move || loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    eprintln!("pinflow: threads {}", pipeline.plan().describe());
    pipeline.run(source)
}

fn finish(summary: &Summary) -> ExitCode {
    print!("{summary}");
    if summary.fetch.failed > 0 {
        eprintln!(
            "pinflow: {} request(s) failed; see the dead-letter file for every URL and reason",
            summary.fetch.failed
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

fn run(cmd: Command) -> pinflow::Result<ExitCode> {
    match cmd {
        Command::Demo { out, records, opts } => {
            let cfg = opts.config(out)?;
            let sim =
                Simulator::start(SimConfig::default()).map_err(|e| pinflow::Error::Config {
                    what: "simulator".into(),
                    why: format!("cannot bind a loopback port: {e}"),
                })?;
            eprintln!(
                "pinflow: simulator on {}, fetching {records} records one per request",
                sim.addr()
            );
            let summary = run_pipeline(cfg, Source::from_arg(&sim.logs_template(records.max(1)))?)?;
            Ok(finish(&summary))
        }
        Command::Run { urls, out, opts } => {
            let cfg = opts.config(out)?;
            let source = Source::from_arg(&urls)?;
            let summary = run_pipeline(cfg, source)?;
            Ok(finish(&summary))
        }
        Command::Bench {
            records,
            values,
            per_response,
            out,
            json,
            opts,
        } => bench(records, values, per_response, out, json, &opts),
    }
}

fn bench(
    records: u64,
    values: usize,
    per_response: u64,
    out: Option<PathBuf>,
    json: bool,
    opts: &Options,
) -> pinflow::Result<ExitCode> {
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
    let cfg = opts.config(out_path)?;
    let workload = Workload {
        values_per_record: values,
        page_size: per_response,
        ..Workload::default()
    };
    let sim = Simulator::start(SimConfig {
        workload,
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
    let cpu_before = metrics::process_cpu_time();
    let summary = run_pipeline(cfg, Source::from_arg(&template)?)?;
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
    ];
    if json {
        let mut s = format!(
            "{{\"records\":{},\"values\":{values},\"per_response\":{per_response},\"records_written\":{},\"elapsed_s\":{:.6},\"records_per_s\":{:.1},\"mb_per_s\":{:.2},\"requests\":{},\"failed\":{},\"peak_rss_bytes\":{},\"cpu_s\":{},\"simulator_cpu_share\":{},\"peak_live_batches\":{},\"plan\":{:?},\"latency_us\":{{",
            records,
            summary.records_written,
            summary.elapsed.as_secs_f64(),
            summary.records_per_sec(),
            summary.mb_per_sec(),
            summary.fetch.requests,
            summary.fetch.failed,
            rss.map_or("null".into(), |v| v.to_string()),
            cpu_total.map_or("null".into(), |v| format!("{:.3}", v.as_secs_f64())),
            sim_share.map_or("null".into(), |v| format!("{v:.3}")),
            summary.peak_live_batches,
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
        println!("{s}");
    } else {
        println!("bench: {records} records, {values} values each, {per_response} per response");
        print!("{summary}");
        println!(
            "peak RSS   {:.1} MiB",
            rss.unwrap_or(0) as f64 / (1 << 20) as f64
        );
        if let (Some(t), Some(share)) = (cpu_total, sim_share) {
            println!(
                "cpu        {:.2} s in total, simulator {:.1}% of it",
                t.as_secs_f64(),
                share * 100.0
            );
        }
        println!(
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

//! What every pipeline run of the command shares: the malloc setting, signals, logging, the
//! progress line and the exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pinflow::config::{DeadLetterTolerance, LogFormat, Progress};
use pinflow::{Config, Pipeline, Source, Summary};

use crate::progress;

/// Fixes glibc malloc's mmap threshold at 1 MiB, unless the operator set one
/// (`MALLOC_MMAP_THRESHOLD_`, or `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=N`). Below the
/// threshold malloc serves blocks from its heaps; at or above it, each from its own `mmap`,
/// returned to the kernel when freed.
///
/// By default glibc raises the threshold to the size of each mmap'ed block freed (up to 32 MiB),
/// after which blocks of that size come from the heaps instead, and their fragmentation grows
/// with the length of the run: one record per request peaked at 47 MiB after 200k records and
/// 56 MiB after 2M, while the live heap (valgrind massif) stayed the same. Held at 1 MiB the two
/// runs peak at 43 and 45 MiB at the same speed. Held at 2 MiB the creep stays, so the blocks
/// behind it are 1-2 MiB (Parquet column buffers are that size); held at 128 KiB (glibc's
/// starting value) NDJSON pages lose about 15 % to mmap calls for per-batch Arrow buffers. The
/// library does not do this: a process-wide allocator setting is the embedding program's choice.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: std::ffi::c_int = 1 << 20;
        let set_by_operator = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
        if !set_by_operator {
            // SAFETY: mallopt only changes malloc's parameters, and runs before any other
            // thread exists.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// SIGINT/SIGTERM set `stop` (requests in flight get `fetch.shutdown_timeout`, then the rest
/// is cancelled, drained and finalized); a second one exits at once, leaving only
/// complete files under final names (an unfinished file is still under its temporary name).
/// SIGHUP sets `reopen`: the dead-letter file is closed and re-created (logrotate); and asks
/// every `[[enrich]]` lookup table to be read again before its next batch.
/// SIGXFSZ is caught and ignored, so a write past the file size limit (`ulimit -f`) fails with
/// EFBIG, which the writer reports with the path before stopping cleanly, instead of the signal
/// killing the process mid-file.
pub fn install_signals(reopen: Arc<AtomicBool>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop));
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, reopen);
    let _ =
        signal_hook::flag::register(signal_hook::consts::SIGHUP, pinflow::enrich::reload_flag());
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    );
    stop
}

/// Whether colors are wanted on a terminal: not when `NO_COLOR` is set and not empty
/// (https://no-color.org).
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Writes the errors that end the command (exit 1): `pinflow: error: ...` lines, or under
/// `log.format = "json"` log lines of level ERROR like every other log line, so a log
/// collector reads them too. They are written whatever `log.level` and `RUST_LOG` say.
pub fn fatal(lines: &[String], format: LogFormat) {
    match format {
        LogFormat::Text => {
            for line in lines {
                eprintln!("pinflow: error: {line}");
            }
        }
        LogFormat::Json => {
            // A subscriber of its own: the run's may be filtered, or not installed yet.
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer(std::io::stderr)
                .with_target(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                for line in lines {
                    tracing::error!("{line}");
                }
            });
        }
    }
}

/// Logs go to stderr (journald keeps them under systemd), as text or one JSON object per
/// line; `RUST_LOG` overrides `log.level`. Text is colored on a terminal unless `NO_COLOR`.
pub fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("pinflow={}", cfg.log.level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && color_allowed())
            .try_init(),
    };
}

/// Runs `cfg` over `source`; `label` names the source in the files' `pinflow.source`
/// metadata, and `total` is how many requests the source holds where that is known (the
/// progress line then shows a percentage and an ETA).
pub fn run_pipeline(
    cfg: Config,
    source: Source,
    label: &str,
    total: Option<u64>,
) -> pinflow::Result<Summary> {
    init_logging(&cfg);
    let show_progress = match cfg.log.progress {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    };
    // Continuous mode repeats the source, and a shard fetches only its part of it: the
    // source's size is not the run's.
    let total = total.filter(|_| cfg.every.is_none() && cfg.fetch.shard.is_none());
    let pipeline = Arc::new(Pipeline::new(cfg)?.with_source_label(label));
    let stop = install_signals(pipeline.reopen_flag());
    let flag = pipeline.stop_flag();
    // Forward the signal flag to the pipeline's own flag.
    std::thread::spawn(move || loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!("stop requested: nothing new is sent; requests in flight get fetch.shutdown_timeout, then are cancelled; draining, finalizing");
            flag.store(true, Ordering::Relaxed);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    tracing::info!(plan = %pipeline.plan().describe(), "threads");
    let done = Arc::new(AtomicBool::new(false));
    let progress = show_progress.then(|| {
        let (p, done) = (Arc::clone(&pipeline), Arc::clone(&done));
        std::thread::spawn(move || progress_bar(&p, total, &done))
    });
    let result = pipeline.run(source);
    done.store(true, Ordering::Relaxed);
    if let Some(t) = progress {
        let _ = t.join();
    }
    result
}

/// A one-line live view on stderr ([`progress::line`]).
fn progress_bar(pipeline: &Pipeline, total: Option<u64>, done: &AtomicBool) {
    use pinflow::metrics::live::{QueueId, Stage};
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
    let m = pipeline.metrics();
    let started = std::time::Instant::now();
    while !done.load(Ordering::Relaxed) {
        let failed = m.failed.load(Ordering::Relaxed);
        let fetch = m.latency(Stage::Fetch).percentiles();
        let snapshot = progress::Snapshot {
            elapsed: started.elapsed(),
            done: m.delivered.load(Ordering::Relaxed) + failed,
            total,
            failed,
            written: m.records_written.load(Ordering::Relaxed),
            dead: m.records_dead_lettered.load(Ordering::Relaxed),
            fetch_p50_us: (fetch.count > 0).then_some(fetch.p50_us),
            queues: QueueId::ALL.map(|q| m.queue(q)),
        };
        bar.set_message(progress::line(&snapshot));
        bar.tick();
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}

/// What the exit status of a run is judged against, taken from its configuration before the
/// run (which consumes it).
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// Continuous mode: a stop is how it ends, not work left undone.
    continuous: bool,
    /// Whether a stopped run can be resumed (`writer.journal`).
    journal: bool,
    /// `writer.max_dead_letters`.
    tolerance: DeadLetterTolerance,
    /// Work items the source holds, where known (not for a shard or continuous mode).
    total: Option<u64>,
}

impl Expected {
    /// The expectations of a run of `cfg` over a source of `total` work items.
    pub fn of(cfg: &Config, total: Option<u64>) -> Expected {
        Expected {
            // A tail, too, runs until it is stopped.
            continuous: cfg.every.is_some() || cfg.tail.is_some(),
            journal: cfg.writer.journal,
            tolerance: cfg.writer.dead_letter_tolerance(),
            total: total.filter(|_| cfg.every.is_none() && cfg.fetch.shard.is_none()),
        }
    }

    /// A source that runs until stopped (HTTP receive): a stop is how it ends.
    pub fn until_stopped(mut self) -> Expected {
        self.continuous = true;
        self
    }
}

/// Exit status: the run finished, but some requests failed for good.
pub const EXIT_REQUESTS_FAILED: u8 = 3;
/// Exit status: more records were dead-lettered than `writer.max_dead_letters` allows.
pub const EXIT_DEAD_LETTERS: u8 = 4;
/// Exit status: a one-shot run was stopped (SIGINT/SIGTERM) before all its work was done.
pub const EXIT_STOPPED_EARLY: u8 = 5;

/// Prints the summary and turns it into the exit status (see main.rs): 5 when a one-shot run
/// was stopped with work left, else 3 when requests failed for good, else 4 when more
/// records were dead-lettered than tolerated, else 0. Each reason gets a line naming what was
/// left.
pub fn finish(summary: &Summary, expected: &Expected) -> ExitCode {
    out!("{summary}");
    let (code, lines) = verdict(summary, expected);
    for line in lines {
        outln!("{line}");
    }
    if summary.fetch.failed > 0 {
        tracing::warn!(
            "{} request(s) failed; see the dead-letter file for every URL and reason",
            summary.fetch.failed
        );
    }
    ExitCode::from(code)
}

/// The exit status of a finished run, and the summary lines that explain it.
fn verdict(s: &Summary, e: &Expected) -> (u8, Vec<String>) {
    let mut lines = Vec::new();
    let mut code = 0;
    if s.interrupted && !e.continuous {
        let done = s.fetch.delivered + s.fetch.failed + s.fetch.skipped;
        let left = e.total.map(|total| (total.saturating_sub(done), total));
        let c = s.fetch.cancelled;
        let how = match left {
            Some((n, total)) => {
                format!("{n} of {total} requests not fetched ({c} of them cancelled by the stop)")
            }
            None if c > 0 => {
                format!("{c} requests cancelled by the stop, and the rest of the source not read")
            }
            None => "the rest of the source not read".into(),
        };
        let resume = match e.journal {
            true => "run the same command again to fetch only those (resume journal)",
            false => {
                "without --journal a new run fetches everything again (with it, a stopped \
                 run resumes where it stopped)"
            }
        };
        if left.is_none_or(|(n, _)| n > 0) || c > 0 {
            code = EXIT_STOPPED_EARLY;
            lines.push(format!("left       stopped early: {how}; {resume}"));
        }
    }
    if s.fetch.failed > 0 && code == 0 {
        code = EXIT_REQUESTS_FAILED;
    }
    let dead = s.records_dead_lettered;
    if dead > 0 {
        let allowed = e.tolerance.allows(dead, s.records_parsed);
        let file = s
            .dead_letter_file
            .as_ref()
            .map(|p| format!("; each is in {} with its reason", p.display()))
            .unwrap_or_default();
        lines.push(format!(
            "tolerance  {dead} of {} records dead-lettered, {} the tolerance of {} \
             (--max-dead-letters){file}",
            s.records_parsed,
            if allowed { "within" } else { "beyond" },
            e.tolerance
        ));
        if !allowed && code == 0 {
            code = EXIT_DEAD_LETTERS;
        }
    }
    (code, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(continuous: bool, tolerance: &str, total: Option<u64>) -> Expected {
        Expected {
            continuous,
            journal: false,
            tolerance: tolerance.parse().unwrap(),
            total,
        }
    }

    #[test]
    fn the_exit_status_names_what_was_left_in_order_stopped_failed_dead() {
        let mut s = Summary::default();
        s.fetch.requests = 100;
        s.fetch.delivered = 100;
        s.records_parsed = 100;
        s.records_written = 100;
        assert_eq!(verdict(&s, &expected(false, "0", Some(100))), (0, vec![]));
        s.records_written = 97;
        s.records_dead_lettered = 3;
        let (code, lines) = verdict(&s, &expected(false, "0", Some(100)));
        assert_eq!(code, EXIT_DEAD_LETTERS);
        assert!(lines[0].contains("3 of 100 records dead-lettered, beyond the tolerance of 0"));
        assert_eq!(verdict(&s, &expected(false, "3", None)).0, 0);
        assert_eq!(verdict(&s, &expected(false, "3%", None)).0, 0);
        assert_eq!(
            verdict(&s, &expected(false, "2.9%", None)).0,
            EXIT_DEAD_LETTERS
        );
        s.fetch.failed = 1;
        assert_eq!(
            verdict(&s, &expected(false, "0", None)).0,
            EXIT_REQUESTS_FAILED
        );
        s.interrupted = true;
        s.fetch.cancelled = 4;
        let (code, lines) = verdict(&s, &expected(false, "0", Some(5000)));
        assert_eq!(code, EXIT_STOPPED_EARLY);
        assert!(
            lines[0].contains("4899 of 5000 requests not fetched (4 of them cancelled"),
            "{lines:?}"
        );
        // Continuous mode ends by a stop: not work left undone.
        assert_eq!(
            verdict(&s, &expected(true, "100%", None)).0,
            EXIT_REQUESTS_FAILED
        );
    }
}

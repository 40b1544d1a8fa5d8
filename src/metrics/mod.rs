//! Counters, latency histograms, the run summary, and the live metrics of a running pipeline.
//!
//! - [`Summary`] is the ledger of a finished run.
//! - [`live::Registry`] is what a running pipeline exposes: counters, queue depths, thread
//!   health and latency histograms, shared by the stage threads.
//! - [`prometheus`] renders a registry in the Prometheus text format, and [`endpoint`] serves
//!   it (with `/healthz` and `/readyz`) on its own small, unpinned thread.

#[cfg(feature = "metrics-endpoint")]
pub mod endpoint;
pub mod live;
pub mod prometheus;

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in microseconds (1 µs to 1 hour, 2 significant digits: a value is
/// reported within 1 % of what was recorded).
///
/// Two digits rather than three make each histogram 27 KB instead of 188 KB. A pipeline keeps
/// twelve (six stages, and a copy of each at the start of a run for the run's own figures),
/// so three digits cost 2.3 MB of a 42 MiB file → Parquet run for precision that percentiles
/// of latencies measured on a shared machine do not have.
///
/// Each observation is also counted, exactly, into one of the fixed [`BUCKETS_US`], which the
/// metrics endpoint exposes as a Prometheus histogram: fixed boundaries are what lets
/// Prometheus add histograms across instances and take `rate()` over a recent window, which
/// percentiles of the whole lifetime cannot do.
#[derive(Debug, Clone)]
pub struct Latency {
    hdr: Histogram<u64>,
    /// Observations per fixed bucket (not cumulative); the last one is `+Inf`.
    buckets: [u64; BUCKETS_US.len() + 1],
    /// Exact sum of the observations, in microseconds.
    sum_us: u64,
}

/// The upper bounds (inclusive, microseconds) of the fixed latency buckets exposed by the
/// metrics endpoint: 50 µs to 30 s in 1–2.5–5 steps (plus `+Inf`). Covers a parse of a small
/// body at the low end and a request at the default total timeout at the high end.
pub const BUCKETS_US: [u64; 18] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// The precision of [`Latency`].
const SIGNIFICANT_DIGITS: u8 = 2;

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hdr: Histogram::new_with_bounds(1, 3_600_000_000, SIGNIFICANT_DIGITS)
                .expect("static bounds are valid"),
            buckets: [0; BUCKETS_US.len() + 1],
            sum_us: 0,
        }
    }
}

impl Latency {
    /// Records one observation.
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.hdr.record(us);
        // The first bucket whose bound is not below the value (`le` is inclusive).
        self.buckets[BUCKETS_US.partition_point(|&b| b < us)] += 1;
        self.sum_us += us;
    }

    /// Records several observations.
    pub fn record_all(&mut self, ds: &[Duration]) {
        for &d in ds {
            self.record(d);
        }
    }

    /// Removes the observations of `earlier`, a past copy of this histogram.
    pub fn subtract(&mut self, earlier: &Latency) {
        let _ = self.hdr.subtract(&earlier.hdr);
        for (b, e) in self.buckets.iter_mut().zip(earlier.buckets) {
            *b = b.saturating_sub(e);
        }
        self.sum_us = self.sum_us.saturating_sub(earlier.sum_us);
    }

    /// Adds another histogram's observations.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.hdr.add(&other.hdr);
        for (b, o) in self.buckets.iter_mut().zip(other.buckets) {
            *b += o;
        }
        self.sum_us += other.sum_us;
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.hdr.value_at_quantile(q)
    }

    /// Sum of all observations in microseconds (each clamped to 1 µs..1 h as recorded).
    pub fn sum_us(&self) -> f64 {
        self.sum_us as f64
    }

    /// Cumulative counts of the fixed buckets: `(upper bound in µs, observations at or
    /// below it)` for each of [`BUCKETS_US`], then `(None, count)` for `+Inf`.
    pub fn cumulative_buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let bounds = BUCKETS_US.iter().map(|&b| Some(b)).chain([None]);
        bounds
            .zip(self.buckets.iter())
            .scan(0u64, |acc, (bound, &n)| {
                *acc += n;
                Some((bound, *acc))
            })
    }

    /// Summary figures.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.hdr.len(),
            p50_us: self.hdr.value_at_quantile(0.50),
            p99_us: self.hdr.value_at_quantile(0.99),
            p999_us: self.hdr.value_at_quantile(0.999),
            max_us: self.hdr.max(),
        }
    }
}

/// Percentiles of one stage's latency, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// `v` with three significant digits (`1.02`, `12.3`, `123`), or `None` when it rounds to
/// 1000 or more (the caller moves to the next unit).
pub fn three_digits(v: f64) -> Option<String> {
    for decimals in [2usize, 1, 0] {
        let limit = 10f64.powi(3 - decimals as i32);
        let s = format!("{v:.decimals$}");
        // Judged after rounding: 9.996 is `10.0`, not `10.00`.
        if s.parse::<f64>().is_ok_and(|r| r < limit) {
            return Some(s);
        }
    }
    None
}

/// A duration in microseconds for people: µs below a millisecond, then ms, then s, each with
/// three significant digits (`999 µs`, `1.00 ms`, `1.02 s`), and whole seconds from 1000 s.
///
/// ```
/// use pinflow::metrics::human_micros;
/// assert_eq!(human_micros(1_023_999), "1.02 s");
/// assert_eq!(human_micros(999), "999 µs");
/// assert_eq!(human_micros(999_600), "1.00 s");
/// ```
pub fn human_micros(us: u64) -> String {
    if us < 1000 {
        return format!("{us} µs");
    }
    if let Some(ms) = three_digits(us as f64 / 1e3) {
        return format!("{ms} ms");
    }
    match three_digits(us as f64 / 1e6) {
        Some(s) => format!("{s} s"),
        None => format!("{:.0} s", us as f64 / 1e6),
    }
}

/// Failed requests kept verbatim in [`FetchStats::failure_samples`].
pub const FAILURE_SAMPLES: usize = 10;

/// What the fetcher did: the request side of the ledger.
#[derive(Debug, Clone, Default)]
pub struct FetchStats {
    /// Work items taken from the source.
    pub requests: u64,
    /// Work items skipped because an earlier run's journal says they are done.
    pub skipped: u64,
    /// Requests answered 2xx with a complete body.
    pub delivered: u64,
    /// Requests that ended failed (after retries).
    pub failed: u64,
    /// Requests a stop ended before they were done: never sent, waiting for a retry, or still
    /// unanswered at `fetch.shutdown_timeout`. Not failures: a resumed run fetches them.
    pub cancelled: u64,
    /// Failed requests by reason class (`http 404`, `connect`, `timeout`, ...).
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Non-2xx responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Attempts repeated after a connection error or timeout.
    pub retries: u64,
    /// Requests re-sent because a kept-alive connection turned out closed by the server.
    pub stale_reconnects: u64,
    /// TCP connections opened.
    pub connections: u64,
    /// Body bytes received for delivered requests.
    pub body_bytes: u64,
    /// Time the fetch thread spent blocked on a full queue (back-pressure).
    pub blocked: Duration,
    /// The first few failed requests, `(url, reason)`, for the operator's eyes; all of them are
    /// in the dead-letter file.
    pub failure_samples: Vec<(String, String)>,
}

impl FetchStats {
    pub(crate) fn fail(&mut self, class: &str, url: &str, detail: &str) {
        self.failed += 1;
        *self.failed_by_reason.entry(class.to_string()).or_default() += 1;
        if self.failure_samples.len() < FAILURE_SAMPLES {
            self.failure_samples
                .push((url.to_string(), detail.to_string()));
        }
    }
}

/// Per-stage latencies.
#[derive(Debug, Clone, Default)]
pub struct StageLatencies {
    /// Request sent → last body byte, per request.
    pub fetch: Latency,
    /// Parsing one body into columns, per body.
    pub parse: Latency,
    /// Statistics for one batch, per batch.
    pub compute: Latency,
    /// Writing one batch into the Parquet writer, per batch.
    pub write: Latency,
    /// Response complete → its row in a closed row group (per batch, its oldest response).
    pub end_to_end: Latency,
    /// Response complete → its batch handed to the writer (per batch, its oldest response):
    /// the pipeline's own latency, without the row-group wait.
    pub handoff: Latency,
}

/// The ledger and figures of a finished run.
///
/// The ledger balances: `fetch.requests == fetch.delivered + fetch.failed + fetch.cancelled`,
/// and `records_parsed == records_written + records_dead_lettered + records_filtered +
/// records_windowed`.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Request side.
    pub fetch: FetchStats,
    /// Records found in delivered bodies (good or bad).
    pub records_parsed: u64,
    /// Rows written to Parquet.
    pub records_written: u64,
    /// Records and bodies sent to the dead-letter file (not counting failed requests).
    pub records_dead_lettered: u64,
    /// Rows a user transform ([`crate::stage::Transform`]) dropped on purpose (a filter).
    pub records_filtered: u64,
    /// Time windows: records taken into windows, whose aggregates are the window rows
    /// (records the windows reject, late ones say, are dead letters).
    pub records_windowed: u64,
    /// Time windows: window rows written (one per key and window), not records.
    pub window_rows_written: u64,
    /// `window.records`: the records written as well, to their own file (a copy, outside
    /// the ledger: each is also windowed or dead-lettered), and its last finalized path.
    pub records_also_written: Option<(u64, Option<std::path::PathBuf>)>,
    /// Dead letters by reason class.
    pub dead_by_reason: BTreeMap<String, u64>,
    /// Row groups written.
    pub row_groups: u64,
    /// Parquet files finalized (more than one when rotating).
    pub files: u64,
    /// The output file, if one was finalized.
    pub output: Option<std::path::PathBuf>,
    /// The dead-letter file, if anything was written to it.
    pub dead_letter_file: Option<std::path::PathBuf>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Per-stage latencies.
    pub latency: StageLatencies,
    /// Most batches alive at once, and the configured bound.
    pub peak_live_batches: usize,
    /// The configured bound on live batches.
    pub live_batch_bound: usize,
    /// Body batches that took the short path: handed straight to the idle writer, which
    /// parsed them itself.
    pub short_path_batches: u64,
    /// Body batches that joined a short-path batch before the writer took it.
    pub short_path_joins: u64,
    /// The thread plan as it was applied.
    pub plan: String,
    /// Whether some threads could not get a core of their own.
    pub pinning_partial: bool,
    /// Set when SIGINT/SIGTERM (or [`crate::Pipeline`]'s stop flag) ended the run early.
    pub interrupted: bool,
    /// Whether the output file existed before the run and was replaced
    /// (`writer.overwrite`).
    pub replaced: bool,
    /// Temporary files killed runs had left beside the output, removed at the start.
    pub stale_temporaries_removed: u64,
    /// How the records chose the schema when the configuration did not give one (see
    /// [`crate::config::SchemaConfig::infer`]): the built-in layout, or the inferred fields.
    pub schema: Option<String>,
    /// The Kafka source's ledger per topic and partition: messages consumed, written and
    /// dead-lettered (empty for other sources).
    pub kafka_partitions: BTreeMap<(String, i32), live::KafkaPartitionStats>,
}

impl Summary {
    /// Rows written per second of wall time (with time windows, records aggregated into
    /// windows count too: they are what the run processed).
    pub fn records_per_sec(&self) -> f64 {
        (self.records_written + self.records_windowed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Body megabytes (10^6) received per second of wall time.
    pub fn mb_per_sec(&self) -> f64 {
        self.fetch.body_bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether every request and every record is accounted for.
    pub fn ledger_balances(&self) -> bool {
        self.fetch.requests == self.fetch.delivered + self.fetch.failed + self.fetch.cancelled
            && self.records_parsed
                == self.records_written
                    + self.records_dead_lettered
                    + self.records_filtered
                    + self.records_windowed
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.fetch;
        writeln!(
            f,
            "requests   {} (delivered {}, failed {}, retries {}, reconnects {})",
            s.requests, s.delivered, s.failed, s.retries, s.stale_reconnects
        )?;
        if s.cancelled > 0 {
            writeln!(
                f,
                "  cancelled {} by the stop (not failed; a resumed run fetches them)",
                s.cancelled
            )?;
        }
        if s.skipped > 0 {
            writeln!(f, "  skipped  {} already done (resume journal)", s.skipped)?;
        }
        for (reason, n) in &s.failed_by_reason {
            writeln!(f, "  failed   {n} × {reason}")?;
        }
        for (url, why) in &s.failure_samples {
            writeln!(f, "  e.g.     {url}: {why}")?;
        }
        writeln!(
            f,
            "records    fetched {} / written {} / dead-lettered {}",
            self.records_parsed, self.records_written, self.records_dead_lettered
        )?;
        for (reason, n) in &self.dead_by_reason {
            writeln!(f, "  dead     {n} × {reason}")?;
        }
        for ((topic, partition), p) in &self.kafka_partitions {
            write!(
                f,
                "  kafka    {topic}/{partition}: consumed {} / written {} / dead-lettered {} messages",
                p.consumed, p.written, p.dead_lettered
            )?;
            if p.deleted_unread > 0 {
                write!(
                    f,
                    "; {} offsets deleted by the broker before they were read",
                    p.deleted_unread
                )?;
            }
            if p.skipped_by_reset > 0 {
                write!(
                    f,
                    "; {} offsets skipped by auto.offset.reset=latest",
                    p.skipped_by_reset
                )?;
            }
            writeln!(f)?;
        }
        if let Some(schema) = &self.schema {
            writeln!(f, "schema     {schema}")?;
        }
        if self.records_filtered > 0 {
            writeln!(f, "  filtered {} by transforms", self.records_filtered)?;
        }
        if self.records_windowed > 0 || self.window_rows_written > 0 {
            writeln!(
                f,
                "windows    {} records aggregated into {} window rows written",
                self.records_windowed, self.window_rows_written
            )?;
        }
        if let Some((n, path)) = &self.records_also_written {
            let to = path.as_ref().map(|p| format!(" to {}", p.display()));
            writeln!(
                f,
                "also       {n} records written as well{} (window.records)",
                to.unwrap_or_default()
            )?;
        }
        writeln!(
            f,
            "bytes      {} ({:.1} MB/s)",
            s.body_bytes,
            self.mb_per_sec()
        )?;
        writeln!(
            f,
            "elapsed    {:.3} s, {:.0} records/s",
            self.elapsed.as_secs_f64(),
            self.records_per_sec()
        )?;
        let l = &self.latency;
        for (name, h) in [
            ("fetch", &l.fetch),
            ("parse", &l.parse),
            ("compute", &l.compute),
            ("write", &l.write),
            ("handoff", &l.handoff),
            ("end-to-end", &l.end_to_end),
        ] {
            let p = h.percentiles();
            writeln!(
                f,
                "latency    {name:<10} p50 {:>9}  p99 {:>9}  (n={})",
                human_micros(p.p50_us),
                human_micros(p.p99_us),
                p.count
            )?;
        }
        writeln!(
            f,
            "batches    peak {} live (bound {}), {} by the short path, {} joined to one",
            self.peak_live_batches,
            self.live_batch_bound,
            self.short_path_batches,
            self.short_path_joins
        )?;
        if let Some(out) = &self.output {
            if self.files > 1 {
                writeln!(
                    f,
                    "output     {} files, {} row groups, the last {}",
                    self.files,
                    self.row_groups,
                    out.display()
                )?;
            } else {
                let groups = if self.row_groups == 1 {
                    "group"
                } else {
                    "groups"
                };
                writeln!(
                    f,
                    "output     {} ({} row {groups})",
                    out.display(),
                    self.row_groups
                )?;
            }
        }
        if let Some(out) = self.output.as_ref().filter(|_| self.replaced) {
            writeln!(
                f,
                "replaced   the file that was at {} before the run",
                out.display()
            )?;
        }
        if self.stale_temporaries_removed > 0 {
            writeln!(
                f,
                "cleaned    {} temporary file(s) killed runs had left beside the output",
                self.stale_temporaries_removed
            )?;
        }
        if let Some(dl) = &self.dead_letter_file {
            writeln!(f, "dead       {}", dl.display())?;
        }
        if self.interrupted {
            writeln!(
                f,
                "stopped    early by a signal; everything fetched was written"
            )?;
        }
        Ok(())
    }
}

/// The process's peak resident set size in bytes (`VmHWM`), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time consumed so far by the calling thread, where the OS reports it.
pub fn thread_cpu_time() -> Option<Duration> {
    // schedstat's first field is the time spent on the CPU in nanoseconds.
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// CPU time (user + system) consumed so far by the whole process, where the OS reports it.
pub fn process_cpu_time() -> Option<Duration> {
    // Fields 14 and 15 of /proc/self/stat, after the parenthesised command name, in clock
    // ticks; Linux reports them at USER_HZ = 100 on every architecture.
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The standard `process_*` figures, as the Prometheus client libraries report them. Each is
/// `None` where the OS does not report it (everything but Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size in bytes (`VmRSS`).
    pub resident_memory_bytes: Option<u64>,
    /// User and system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`None` also when unlimited).
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The calling process's [`ProcessStats`], read from `/proc` (a few small files: cheap enough
/// for every scrape).
pub fn process_stats() -> ProcessStats {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the parenthesised command name (which may hold spaces), from field 3.
    let field = |n: usize| -> Option<u64> {
        let s = stat.as_deref()?;
        s[s.rfind(')')? + 2..]
            .split_whitespace()
            .nth(n - 3)?
            .parse()
            .ok()
    };
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let rss_kb = status.as_deref().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    });
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let max_fds = limits.as_deref().and_then(|s| {
        // "Max open files            1024                 1048576              files"
        let rest = s.lines().find_map(|l| l.strip_prefix("Max open files"))?;
        rest.split_whitespace().next()?.parse().ok()
    });
    ProcessStats {
        resident_memory_bytes: rss_kb.map(|kb| kb * 1024),
        cpu_seconds: process_cpu_time().map(|d| d.as_secs_f64()),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds,
        // Field 22 is the start time in clock ticks after boot, at USER_HZ = 100.
        start_time_seconds: boot_time
            .zip(field(22))
            .map(|(boot, ticks)| boot as f64 + ticks as f64 / 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_and_merge() {
        let mut a = Latency::default();
        for us in 1..=100 {
            a.record(Duration::from_micros(us));
        }
        let mut b = Latency::default();
        b.record(Duration::from_secs(1));
        a.merge(&b);
        let p = a.percentiles();
        assert_eq!(p.count, 101);
        assert!((49..=51).contains(&p.p50_us), "{p:?}");
        assert!(p.max_us >= 999_000);
    }

    #[test]
    fn human_micros_picks_the_unit_after_rounding() {
        for (us, want) in [
            (0, "0 µs"),
            (999, "999 µs"),
            (1_000, "1.00 ms"),
            (9_996, "10.0 ms"),
            (12_345, "12.3 ms"),
            (999_499, "999 ms"),
            (999_500, "1.00 s"),
            (1_023_999, "1.02 s"),
            (999_400_000, "999 s"),
            (3_600_000_000, "3600 s"),
        ] {
            assert_eq!(human_micros(us), want, "{us} µs");
        }
    }

    #[test]
    fn fixed_buckets_are_cumulative_inclusive_and_survive_subtract_and_merge() {
        let mut a = Latency::default();
        // On a bound, just above it, and beyond the last finite bound.
        for us in [50, 51, 1_000, 40_000_000] {
            a.record(Duration::from_micros(us));
        }
        let buckets: Vec<_> = a.cumulative_buckets().collect();
        assert_eq!(buckets.len(), BUCKETS_US.len() + 1);
        assert_eq!(buckets[0], (Some(50), 1), "le is inclusive");
        assert_eq!(buckets[1], (Some(100), 2));
        assert_eq!(buckets[4], (Some(1_000), 3));
        assert_eq!(buckets[BUCKETS_US.len() - 1], (Some(30_000_000), 3));
        assert_eq!(
            buckets[BUCKETS_US.len()],
            (None, 4),
            "+Inf holds every observation"
        );
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(
            a.sum_us(),
            (50 + 51 + 1_000 + 40_000_000) as f64,
            "exact sum"
        );

        let earlier = a.clone();
        a.record(Duration::from_micros(200));
        a.subtract(&earlier);
        let after: Vec<_> = a.cumulative_buckets().map(|(_, n)| n).collect();
        assert_eq!(&after[..3], &[0, 0, 1]);
        assert_eq!(a.sum_us(), 200.0);
        a.merge(&earlier);
        assert_eq!(a.cumulative_buckets().last(), Some((None, 5)));
    }

    #[test]
    fn process_stats_are_reported_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let p = process_stats();
        assert!(p.resident_memory_bytes.unwrap() > 1 << 20, "{p:?}");
        assert!(p.cpu_seconds.is_some(), "{p:?}");
        let open = p.open_fds.unwrap();
        assert!(open >= 3, "{p:?}");
        assert!(p.max_fds.is_none_or(|max| max >= open), "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time_seconds.unwrap();
        // The test process started in the past, and not before 2020.
        assert!(
            start <= now + 1.0 && start > 1.577e9,
            "{start} vs now {now}"
        );
    }

    #[test]
    fn rss_is_reported_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 1 << 20);
            assert!(thread_cpu_time().is_some());
        }
    }
}

//! The progress line on a terminal: what it says, as a pure function of a [`Snapshot`] of the
//! live metrics, so that its wording is tested without a terminal.

use std::time::Duration;

use pinflow::metrics::{human_micros, three_digits};

/// What the progress line shows, read from the live metrics.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Since the run started.
    pub elapsed: Duration,
    /// Requests done: delivered or failed for good.
    pub done: u64,
    /// Requests the source holds, where known before the run (a template, a URL file).
    pub total: Option<u64>,
    /// Requests that failed for good.
    pub failed: u64,
    /// Rows written to Parquet.
    pub written: u64,
    /// Records dead-lettered.
    pub dead: u64,
    /// Median fetch latency so far (µs), once there is one.
    pub fetch_p50_us: Option<u64>,
    /// Depth and capacity of the queues in front of the parse, compute and write stages.
    pub queues: [(usize, usize); 3],
}

/// The stage that takes from each queue of [`pinflow::metrics::live::QueueId::ALL`]
/// (bodies, records, output), which is what a person watching wants to know: which stage
/// has work waiting.
const QUEUE_LABELS: [&str; 3] = ["parse", "compute", "write"];

/// A count or rate for people: `812`, `3.21k`, `1.20M` (three significant digits from 1000).
fn human_count(v: f64) -> String {
    if v < 1000.0 {
        return format!("{v:.0}");
    }
    for (unit, scale) in [("k", 1e3), ("M", 1e6), ("G", 1e9)] {
        if let Some(s) = three_digits(v / scale) {
            return format!("{s}{unit}");
        }
    }
    format!("{:.0}G", v / 1e9)
}

/// Time left for people: `42 s`, `3m 05s`, `2h 07m`.
fn human_eta(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The line: requests done (of the total, with percentage and ETA, when the total is known),
/// rates, records, failures, the fetch latency, and the queues labelled by the stage they
/// feed.
pub fn line(s: &Snapshot) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-3);
    let rate = s.done as f64 / secs;
    // Pagination fetches more pages than the source has URLs: past the total it is unknown.
    let total = s.total.filter(|&t| t > 0 && s.done <= t);
    let mut out = match total {
        Some(t) => {
            let eta = if s.done == t {
                "0 s".to_string()
            } else if s.done == 0 {
                "?".to_string()
            } else {
                human_eta((t - s.done) as f64 / rate)
            };
            format!(
                "{}/{} requests ({:.1} %, {}/s, ETA {eta})",
                s.done,
                t,
                s.done as f64 * 100.0 / t as f64,
                human_count(rate),
            )
        }
        None => format!("{} requests ({}/s)", s.done, human_count(rate)),
    };
    out.push_str(&format!(
        ", {} records written ({}/s), {} failed, {} dead letters",
        s.written,
        human_count(s.written as f64 / secs),
        s.failed,
        s.dead
    ));
    if let Some(us) = s.fetch_p50_us {
        out.push_str(&format!(", fetch p50 {}", human_micros(us)));
    }
    out.push_str(", queued for");
    for (label, (depth, cap)) in QUEUE_LABELS.iter().zip(s.queues) {
        out.push_str(&format!(" {label} {depth}/{cap}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            elapsed: Duration::from_secs(10),
            done: 2_500,
            total: Some(20_000),
            failed: 1,
            written: 2_480,
            dead: 2,
            fetch_p50_us: Some(1_023_999),
            queues: [(1, 4), (0, 4), (3, 8)],
        }
    }

    #[test]
    fn queues_are_labelled_by_the_stage_they_feed() {
        let l = line(&snapshot());
        assert!(
            l.ends_with("queued for parse 1/4 compute 0/4 write 3/8"),
            "{l}"
        );
    }

    #[test]
    fn percentage_and_eta_iff_the_total_is_known() {
        let l = line(&snapshot());
        // 250 requests/s, 17,500 left: 70 s.
        assert!(
            l.starts_with("2500/20000 requests (12.5 %, 250/s, ETA 1m 10s)"),
            "{l}"
        );
        let unknown = line(&Snapshot {
            total: None,
            ..snapshot()
        });
        assert!(unknown.starts_with("2500 requests (250/s), "), "{unknown}");
        assert!(
            !unknown.contains("ETA") && !unknown.contains('%'),
            "{unknown}"
        );
        // More done than the source's URLs (pages followed): the total no longer says much.
        let paged = line(&Snapshot {
            total: Some(100),
            ..snapshot()
        });
        assert!(!paged.contains("ETA"), "{paged}");
        let start = line(&Snapshot {
            done: 0,
            ..snapshot()
        });
        assert!(
            start.contains("0/20000 requests (0.0 %, 0/s, ETA ?)"),
            "{start}"
        );
        let end = line(&Snapshot {
            done: 20_000,
            ..snapshot()
        });
        assert!(end.contains("(100.0 %, 2.00k/s, ETA 0 s)"), "{end}");
    }

    #[test]
    fn latencies_and_rates_in_human_units() {
        let l = line(&snapshot());
        assert!(l.contains("fetch p50 1.02 s"), "{l}");
        assert!(l.contains("2480 records written (248/s)"), "{l}");
        assert!(!l.contains("µs"), "{l}");
        assert_eq!(human_count(999.0), "999");
        assert_eq!(human_count(1_000.0), "1.00k");
        assert_eq!(human_count(999_500.0), "1.00M");
        assert_eq!(human_count(123_456.0), "123k");
        assert_eq!(human_eta(59.2), "1m 00s");
        assert_eq!(human_eta(3_599.0), "59m 59s");
        assert_eq!(human_eta(7_620.0), "2h 07m");
        assert_eq!(human_eta(0.2), "1 s");
    }
}

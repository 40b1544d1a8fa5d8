//! The run's ledger: what each stage reported, added up into a [`Summary`].
//!
//! The registry's counters and histograms span every run of a pipeline; a run's summary is
//! the difference between what they read at its end and at its start ([`Baseline`]).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::ingest::IngestReport;
use crate::metrics::live::{Registry, Stage};
use crate::metrics::{Latency, StageLatencies, Summary};
use crate::output::WriterReport;
use crate::parse::ParseStats;

/// The registry's readings when a run starts.
pub(super) struct Baseline {
    started: Instant,
    latency: Vec<Latency>,
    filtered: u64,
    rejected: std::collections::BTreeMap<String, u64>,
    short_path_batches: u64,
    short_path_joins: u64,
}

impl Baseline {
    pub(super) fn take(registry: &Registry) -> Baseline {
        Baseline {
            started: Instant::now(),
            latency: Stage::ALL
                .iter()
                .map(|&s| registry.latency(s).clone())
                .collect(),
            filtered: registry.records_filtered.load(Ordering::Relaxed),
            rejected: registry.rejected_by_reason.lock().clone(),
            short_path_batches: registry.short_path_batches.load(Ordering::Relaxed),
            short_path_joins: registry.short_path_joins.load(Ordering::Relaxed),
        }
    }
}

/// The summary being added up, and the stages' errors.
#[derive(Default)]
pub(super) struct Ledger {
    summary: Summary,
    errors: Vec<Error>,
}

impl Ledger {
    /// The ingest thread's report: the request side of the ledger.
    pub(super) fn ingested(&mut self, report: Result<IngestReport>) {
        match report {
            Ok(r) => {
                if let Some(e) = &r.source_error {
                    self.errors.push(Error::Source {
                        source_name: "url list".into(),
                        why: e.clone(),
                    });
                }
                self.summary.fetch = r.stats;
                self.summary.interrupted = r.interrupted;
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// One parser's counts: records parsed and dead-lettered, by reason.
    pub(super) fn parsed(&mut self, stats: Result<ParseStats>) {
        match stats {
            Ok(stats) => {
                let s = &mut self.summary;
                s.records_parsed += stats.records;
                s.records_dead_lettered += stats.dead;
                for (k, v) in stats.dead_by_reason {
                    *s.dead_by_reason.entry(k).or_default() += v;
                }
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// A compute thread's end.
    pub(super) fn computed(&mut self, end: Result<()>) {
        if let Err(e) = end {
            self.errors.push(e);
        }
    }

    /// The writer's report: rows, row groups and files, and what its parser (the short path)
    /// counted.
    pub(super) fn written(
        &mut self,
        report: Result<WriterReport>,
        writer_parsed: &parking_lot::Mutex<ParseStats>,
    ) {
        match report {
            Ok(w) => {
                self.parsed(Ok(std::mem::take(&mut *writer_parsed.lock())));
                let s = &mut self.summary;
                s.records_written = w.rows;
                if w.records_refused > 0 {
                    s.records_dead_lettered += w.records_refused;
                    *s.dead_by_reason
                        .entry(crate::output::REFUSED_CLASS.into())
                        .or_default() += w.records_refused;
                }
                if w.records_undelivered > 0 {
                    s.records_dead_lettered += w.records_undelivered;
                    *s.dead_by_reason
                        .entry(crate::output::DELIVERY_FAILED_CLASS.into())
                        .or_default() += w.records_undelivered;
                }
                for (class, n) in w.window_rejected {
                    s.records_dead_lettered += n;
                    *s.dead_by_reason.entry(class).or_default() += n;
                }
                s.records_windowed = w.records_windowed;
                s.window_rows_written = w.window_rows;
                s.records_also_written = w.records_also;
                s.row_groups = w.row_groups;
                s.files = w.files;
                s.output = w.output;
                s.dead_letter_file = w.dead_letter_file;
                if let Some(e) = w.stage_failed {
                    self.errors.push(e);
                }
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// The one output file of a run that failed before writing a row: nothing is lost by
    /// removing it, and left in place it would read as the run's result (and refuse the next
    /// run's `--out` without `--overwrite`).
    pub(super) fn empty_file_of_a_failed_run(&self) -> Option<&std::path::Path> {
        let s = &self.summary;
        let failed = !self.errors.is_empty();
        let path = s.output.as_deref()?;
        (failed && s.records_written == 0 && s.files == 1 && path.is_file()).then_some(path)
    }

    /// The summary since `baseline`, or the most downstream error: stages are joined upstream
    /// first, and a failing writer makes the stages before it stop, so the last error is the
    /// root cause.
    pub(super) fn finish(mut self, registry: &Registry, baseline: &Baseline) -> Result<Summary> {
        let s = &mut self.summary;
        s.records_filtered = registry.records_filtered.load(Ordering::Relaxed) - baseline.filtered;
        // Rows the transforms turned away: dead letters, by reason.
        for (class, &n) in registry.rejected_by_reason.lock().iter() {
            let n = n - baseline.rejected.get(class).copied().unwrap_or(0);
            if n > 0 {
                s.records_dead_lettered += n;
                *s.dead_by_reason.entry(class.clone()).or_default() += n;
            }
        }
        s.short_path_batches =
            registry.short_path_batches.load(Ordering::Relaxed) - baseline.short_path_batches;
        s.short_path_joins =
            registry.short_path_joins.load(Ordering::Relaxed) - baseline.short_path_joins;
        if let Some(e) = self.errors.pop() {
            return Err(e);
        }
        let since = |stage: Stage| {
            let mut h = registry.latency(stage).clone();
            h.subtract(&baseline.latency[stage as usize]);
            h
        };
        s.latency = StageLatencies {
            fetch: since(Stage::Fetch),
            parse: since(Stage::Parse),
            compute: since(Stage::Compute),
            write: since(Stage::Write),
            end_to_end: since(Stage::EndToEnd),
            handoff: since(Stage::Handoff),
        };
        s.elapsed = baseline.started.elapsed();
        Ok(self.summary)
    }
}

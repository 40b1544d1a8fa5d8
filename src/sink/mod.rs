//! The write stage: the only thread that touches output files.
//!
//! - [`ParquetFile`] writes rows with arrow-rs `ArrowWriter`, one row group at a time, under a
//!   temporary name; on [`finish`](ParquetFile::finish) it closes the file (footer), fsyncs it,
//!   renames it into place and fsyncs the directory, so a reader never sees a partial file.
//! - [`DeadLetterLog`] appends rejected records and failed requests as NDJSON.

mod deadletter;
mod parquet;

pub use deadletter::DeadLetterLog;
pub use parquet::{writer_properties, ParquetFile};

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::batch::RecordsBatch;
use crate::config::WriterConfig;
use crate::error::Result;
use crate::metrics::live::{QueueId, Registry, Stage, StateGuard, ThreadState};

/// What the writer thread hands back when it ends.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Rows written.
    pub rows: u64,
    /// Row groups in the finalized files.
    pub row_groups: u64,
    /// Parquet files finalized (more than one when rotating).
    pub files: u64,
    /// Dead letters written (all kinds).
    pub dead_letters: u64,
    /// The last finalized output path.
    pub output: Option<std::path::PathBuf>,
    /// The dead-letter file, if anything went to it.
    pub dead_letter_file: Option<std::path::PathBuf>,
}

/// Where output goes and when files rotate.
#[derive(Debug, Clone)]
pub struct Output {
    /// The configured output path.
    pub out: PathBuf,
    /// Parquet settings.
    pub writer: WriterConfig,
    /// Finalize the current file and start the next after this long (files with no rows are
    /// not finalized; their interval just starts again).
    pub rotate: Option<Duration>,
    /// Set (by SIGHUP, say) to make the writer close and re-open the dead-letter file.
    pub reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Output {
    /// The path of file number `seq`: `out` itself without rotation, otherwise
    /// `STEM-YYYYMMDDTHHMMSSZ-NNNNN.EXT` next to it, stamped with the UTC time the file was
    /// started, so names sort by time and never collide within a run.
    pub fn path(&self, seq: u64) -> PathBuf {
        if self.rotate.is_none() {
            return self.out.clone();
        }
        let stem = self
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pinflow".into());
        let ext = self
            .out
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut ts = Vec::with_capacity(32);
        crate::time::format_rfc3339_micros(micros, &mut ts);
        // 2026-11-24T10:00:00.123456Z -> 20261124T100000Z
        let compact: String = String::from_utf8_lossy(&ts[..19])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        self.out
            .with_file_name(format!("{stem}-{compact}Z-{seq:05}{ext}"))
    }

    /// Opens file number `seq` (under its temporary name).
    pub fn open(&self, seq: u64) -> Result<ParquetFile> {
        ParquetFile::create(&self.path(seq), &self.writer)
    }
}

/// Runs the writer loop until the queue closes, then finalizes both files. `file` is file
/// number 1 of `output`, opened by the caller so that an unwritable path fails before anything
/// is fetched. `thread` is this thread's index in `registry`, which receives the write and
/// end-to-end latencies, the row, row-group and file counters, and the thread's state.
///
/// On a write error the temporary Parquet file is removed (no partial file ever appears under
/// the final name), files finalized before stay valid, and the error names the path.
pub fn run(
    rx: Receiver<RecordsBatch>,
    output: &Output,
    file: ParquetFile,
    mut dead: DeadLetterLog,
    registry: &Registry,
    thread: usize,
) -> Result<WriterReport> {
    let guard = StateGuard::new(registry, thread);
    let mut w = Writer {
        report: WriterReport::default(),
        pending: Vec::new(),
        closed_groups: 0,
        rows_in_file: 0,
        failure_log: FailureLog::default(),
        registry,
    };
    let mut file = Some(file);
    let mut seq = 1;
    let mut opened = Instant::now();
    loop {
        registry.set_state(thread, ThreadState::WaitingInput);
        let next = match output.rotate {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(every) => {
                rx.recv_timeout((opened + every).saturating_duration_since(Instant::now()))
            }
        };
        registry.set_state(thread, ThreadState::Working);
        if output.reopen.swap(false, Relaxed) {
            // SIGHUP (logrotate): close the dead-letter file; the next entry re-creates it.
            dead.finish()?;
        }
        let f = file.as_mut().expect("a file is open while the loop runs");
        match next {
            Ok(batch) => {
                registry.set_queue_depth(QueueId::Output, rx.len());
                if let Err(e) = w.write_batch(&batch, f, &mut dead) {
                    if let Some(f) = file.take() {
                        f.abort();
                    }
                    let _ = dead.finish();
                    return Err(e);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        w.failure_log.tick();
        if output.rotate.is_some_and(|every| opened.elapsed() >= every) {
            opened = Instant::now();
            if w.rows_in_file > 0 {
                let full = file.take().expect("open");
                w.finalize(full)?;
                seq += 1;
                file = Some(output.open(seq)?);
                // Make the dead letters of the finished file durable with it.
                dead.finish()?;
            }
        }
    }
    let last = file.take().expect("open");
    if w.rows_in_file > 0 || w.report.files == 0 {
        w.finalize(last)?;
    } else {
        // A rotation just before the end left an empty file: nothing to keep.
        last.abort();
    }
    w.failure_log.report_suppressed();
    let mut report = w.report;
    report.dead_letter_file = dead.finish()?;
    guard.finish();
    Ok(report)
}

struct Writer<'a> {
    report: WriterReport,
    /// When the oldest response of each batch whose rows sit in the open row group completed.
    pending: Vec<Instant>,
    /// Row groups of the current file closed (and counted) before the file is finished.
    closed_groups: u64,
    rows_in_file: u64,
    failure_log: FailureLog,
    registry: &'a Registry,
}

impl Writer<'_> {
    fn write_batch(
        &mut self,
        batch: &RecordsBatch,
        file: &mut ParquetFile,
        dead: &mut DeadLetterLog,
    ) -> Result<()> {
        for d in &batch.dead_letters {
            dead.write(d)?;
            self.failure_log.log(d);
        }
        if !batch.dead_letters.is_empty() {
            // One write per batch: dead letters show up while the run goes on.
            dead.flush()?;
        }
        self.report.dead_letters += batch.dead_letters.len() as u64;
        let Some(rows) = &batch.rows else {
            return Ok(());
        };
        let started = Instant::now();
        let (closed, open_rows) = file.write(rows)?;
        self.registry
            .latency(Stage::Write)
            .record(started.elapsed());
        let n = rows.num_rows() as u64;
        self.report.rows += n;
        self.rows_in_file += n;
        self.registry.records_written.fetch_add(n, Relaxed);
        if let Some(oldest) = batch.oldest {
            self.pending.push(oldest);
        }
        if closed > 0 {
            self.registry.row_groups.fetch_add(closed, Relaxed);
            self.closed_groups += closed;
            // The batch that filled a row group may have left rows in the next one; count it
            // visible once its last row is in a closed group.
            let keep = if open_rows { self.pending.pop() } else { None };
            self.rows_visible();
            self.pending.extend(keep);
        }
        Ok(())
    }

    /// Finalizes a file: footer, fsync, rename, directory fsync; counts it.
    fn finalize(&mut self, file: ParquetFile) -> Result<()> {
        let (path, row_groups) = file.finish()?;
        self.registry
            .row_groups
            .fetch_add(row_groups.saturating_sub(self.closed_groups), Relaxed);
        self.registry.files_finalized.fetch_add(1, Relaxed);
        self.rows_visible();
        self.report.row_groups += row_groups;
        self.report.files += 1;
        self.report.output = Some(path);
        self.closed_groups = 0;
        self.rows_in_file = 0;
        Ok(())
    }

    /// Records end-to-end latency (response complete → row in a closed row group) for every
    /// pending batch.
    fn rows_visible(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut h = self.registry.latency(Stage::EndToEnd);
        for t in self.pending.drain(..) {
            h.record(t.elapsed());
        }
    }
}

/// Failure lines logged per second at most; the rest are counted and summarized, so a flood of
/// bad records cannot fill the disk with logs (every one is in the dead-letter file anyway).
pub const FAILURE_LINES_PER_SEC: u32 = 10;

/// One log line per failed request or dead-lettered record, rate-limited.
struct FailureLog {
    window: Instant,
    in_window: u32,
    suppressed: u64,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            window: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }
}

impl FailureLog {
    /// Starts a new one-second window when the current one is over, first saying how many
    /// lines it suppressed. Called per failure and per turn of the writer loop, so the count
    /// appears even when no failure follows.
    fn tick(&mut self) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.report_suppressed();
            self.window = Instant::now();
            self.in_window = 0;
        }
    }

    /// Logs how many failure lines were left out since the last report (at the end of a run too).
    fn report_suppressed(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                "more failures than {FAILURE_LINES_PER_SEC} per second; the others are only in the dead-letter file"
            );
            self.suppressed = 0;
        }
    }

    fn log(&mut self, d: &crate::batch::DeadLetter) {
        self.tick();
        if self.in_window < FAILURE_LINES_PER_SEC {
            self.in_window += 1;
            if d.kind == "request" {
                tracing::warn!(url = %d.url, reason = %d.reason, attempts = d.attempts, "request failed");
            } else {
                tracing::warn!(kind = d.kind, url = %d.url, reason = %d.reason, "dead letter");
            }
        } else {
            self.suppressed += 1;
        }
    }
}

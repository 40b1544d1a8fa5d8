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

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::batch::RecordsBatch;
use crate::error::Result;
use crate::metrics::live::{QueueId, Registry, Stage, StateGuard, ThreadState};

/// What the writer thread hands back when it ends.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Rows written.
    pub rows: u64,
    /// Row groups in the finalized file.
    pub row_groups: u64,
    /// Dead letters written (all kinds).
    pub dead_letters: u64,
    /// The finalized output path.
    pub output: Option<std::path::PathBuf>,
    /// The dead-letter file, if anything went to it.
    pub dead_letter_file: Option<std::path::PathBuf>,
}

/// Runs the writer loop until the queue closes, then finalizes both files. `thread` is this
/// thread's index in `registry`, which receives the write and end-to-end latencies, the row,
/// row-group and file counters, and the thread's state.
///
/// On a write error the temporary Parquet file is removed (no partial file ever appears under
/// the final name), and the error names the path.
pub fn run(
    rx: Receiver<RecordsBatch>,
    mut file: ParquetFile,
    mut dead: DeadLetterLog,
    registry: &Registry,
    thread: usize,
) -> Result<WriterReport> {
    let guard = StateGuard::new(registry, thread);
    let mut w = Writer {
        report: WriterReport::default(),
        pending: Vec::new(),
        closed_groups: 0,
        registry,
    };
    loop {
        registry.set_state(thread, ThreadState::WaitingInput);
        let Ok(batch) = rx.recv() else { break };
        registry.set_queue_depth(QueueId::Output, rx.len());
        registry.set_state(thread, ThreadState::Working);
        if let Err(e) = w.write_batch(&batch, &mut file, &mut dead) {
            file.abort();
            let _ = dead.finish();
            return Err(e);
        }
    }
    let (output, row_groups) = file.finish()?;
    registry
        .row_groups
        .fetch_add(row_groups.saturating_sub(w.closed_groups), Relaxed);
    w.rows_visible();
    registry.files_finalized.fetch_add(1, Relaxed);
    let mut report = w.report;
    report.output = Some(output);
    report.row_groups = row_groups;
    report.dead_letter_file = dead.finish()?;
    guard.finish();
    Ok(report)
}

struct Writer<'a> {
    report: WriterReport,
    /// When the oldest response of each batch whose rows sit in the open row group completed.
    pending: Vec<Instant>,
    /// Row groups closed (and counted) before the file is finished.
    closed_groups: u64,
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

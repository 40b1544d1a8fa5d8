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

use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::batch::RecordsBatch;
use crate::error::Result;
use crate::metrics::Latency;

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
    /// Per batch: time inside the Parquet writer.
    pub write_latency: Latency,
    /// Per batch: oldest body fetched → batch handed to the Parquet writer.
    pub end_to_end: Latency,
}

/// Runs the writer loop until the queue closes, then finalizes both files.
///
/// On a write error the temporary Parquet file is removed (no partial file ever appears under
/// the final name), and the error names the path.
pub fn run(
    rx: Receiver<RecordsBatch>,
    mut file: ParquetFile,
    mut dead: DeadLetterLog,
) -> Result<WriterReport> {
    let mut report = WriterReport::default();
    for batch in rx {
        if let Err(e) = write_batch(&batch, &mut file, &mut dead, &mut report) {
            file.abort();
            let _ = dead.finish();
            return Err(e);
        }
    }
    let (output, row_groups) = file.finish()?;
    report.output = Some(output);
    report.row_groups = row_groups;
    report.dead_letter_file = dead.finish()?;
    Ok(report)
}

fn write_batch(
    batch: &RecordsBatch,
    file: &mut ParquetFile,
    dead: &mut DeadLetterLog,
    report: &mut WriterReport,
) -> Result<()> {
    for d in &batch.dead_letters {
        dead.write(d)?;
    }
    report.dead_letters += batch.dead_letters.len() as u64;
    if let Some(rows) = &batch.rows {
        let started = Instant::now();
        file.write(rows)?;
        report.write_latency.record(started.elapsed());
        report.rows += rows.num_rows() as u64;
    }
    if let Some(oldest) = batch.oldest {
        report.end_to_end.record(oldest.elapsed());
    }
    Ok(())
}

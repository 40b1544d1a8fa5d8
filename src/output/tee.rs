//! Two outputs committed together: the window rows, and (`window.records`) the records they
//! aggregate, each in files of its own.
//!
//! [`Tee`] is an [`Output`] whose [`write`](Output::write) goes to the main output (the
//! window rows) and whose [`write_records`](Output::write_records) goes to the records'
//! output; everything else (flushes, rotation, the journal's seal, publish and discard, the
//! end, an abort) goes to both, so one checkpoint commits the files of both, and a resumed run
//! finds each record once in the records' files, as it finds each window row once in the
//! window rows'.

use std::path::PathBuf;
use std::time::Instant;

use arrow_array::RecordBatch;

use super::{Holds, Output, OutputReport};
use crate::error::Result;

/// The window rows' output and the records'.
pub(crate) struct Tee<'a> {
    pub(crate) main: Box<dyn Output + 'a>,
    pub(crate) records: Box<dyn Output + 'a>,
    /// Records written to `records`.
    pub(crate) records_written: u64,
}

impl Output for Tee<'_> {
    fn write(
        &mut self,
        rows: &RecordBatch,
        id: Option<u64>,
        holds: &mut Holds,
    ) -> Result<Vec<(usize, String)>> {
        self.main.write(rows, id, holds)
    }

    fn write_records(
        &mut self,
        rows: &RecordBatch,
        holds: &mut Holds,
    ) -> Result<Option<Vec<(usize, String)>>> {
        let refused = self.records.write(rows, None, holds)?;
        self.records_written += (rows.num_rows() - refused.len()) as u64;
        Ok(Some(refused))
    }

    fn deadline(&self) -> Option<Instant> {
        match (self.main.deadline(), self.records.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn flush_aged(&mut self, holds: &mut Holds) -> Result<()> {
        self.main.flush_aged(holds)?;
        self.records.flush_aged(holds)
    }

    fn checkpoint_due(&self) -> bool {
        self.main.checkpoint_due() || self.records.checkpoint_due()
    }

    /// The records file holds the messages' rows; the main output holds window rows.
    fn kafka_messages(&mut self, messages: &crate::kafka::offsets::OffsetRanges) {
        self.records.kafka_messages(messages)
    }

    fn finalize_all(&mut self, holds: &mut Holds) -> Result<()> {
        self.main.finalize_all(holds)?;
        self.records.finalize_all(holds)
    }

    fn seal(&mut self) -> Result<Vec<(PathBuf, PathBuf)>> {
        let mut files = self.main.seal()?;
        files.extend(self.records.seal()?);
        Ok(files)
    }

    fn publish_sealed(&mut self, holds: &mut Holds) -> Result<()> {
        self.main.publish_sealed(holds)?;
        self.records.publish_sealed(holds)
    }

    fn discard_sealed(&mut self) {
        self.main.discard_sealed();
        self.records.discard_sealed();
    }

    fn keep_sealed(&mut self) {
        self.main.keep_sealed();
        self.records.keep_sealed();
    }

    fn finish(&mut self, holds: &mut Holds) -> Result<()> {
        self.main.finish(holds)?;
        self.records.finish(holds)
    }

    fn abort(&mut self) {
        self.main.abort();
        self.records.abort();
    }

    fn take_finalized(&mut self) -> u64 {
        self.main.take_finalized() + self.records.take_finalized()
    }

    /// The window rows' output (the records' files are in the summary apart).
    fn report(&self) -> OutputReport {
        self.main.report()
    }

    fn records_report(&self) -> Option<(u64, OutputReport)> {
        Some((self.records_written, self.records.report()))
    }
}

//! Time windows on the writer thread: batches put back in source order, fed to the window
//! operator ([`crate::window`]), and what it emits and rejects handed back to the writer.
//!
//! Parse and compute threads finish batches out of order; lateness must be decided in source
//! order, so that the same input gives the same rows and the same late records whatever the
//! thread counts and batch sizes. Every batch carries its number in the ingest thread's
//! shipping order ([`SourceOrder`]); [`Reorder`] holds those that arrive early until the ones
//! before them have come. Only runs with windows pay for it: without them the writer takes
//! batches as they come.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::batch::{RecordsBatch, SourceOrder};
use crate::error::{Error, Result};
use crate::metrics::live::Registry;
use crate::window::{PartitionId, WindowOperator, WindowOutput, WindowSpec};

/// Batches back in source order: each is released once every batch numbered before it has
/// been released (or is known never to come, [`Reorder::skip`]).
#[derive(Debug, Default)]
pub(crate) struct Reorder {
    /// The number of the next batch to release.
    next: u64,
    /// Batches that came before their turn, by number.
    waiting: BTreeMap<u64, RecordsBatch>,
    /// Numbers that will never come (a short-path batch whose parse failed).
    skipped: BTreeSet<u64>,
}

impl Reorder {
    /// Takes `batch`; a batch without a number (made outside the pipeline) is released at once.
    pub(crate) fn put(&mut self, batch: RecordsBatch, ready: &mut Vec<RecordsBatch>) {
        match batch.source.number {
            None => ready.push(batch),
            Some(n) => {
                self.waiting.insert(n, batch);
                self.release(ready);
            }
        }
    }

    /// Batch `n` will never come: the ones after it need not wait for it.
    pub(crate) fn skip(&mut self, n: u64, ready: &mut Vec<RecordsBatch>) {
        self.skipped.insert(n);
        self.release(ready);
    }

    fn release(&mut self, ready: &mut Vec<RecordsBatch>) {
        loop {
            if let Some(b) = self.waiting.remove(&self.next) {
                ready.push(b);
            } else if !self.skipped.remove(&self.next) {
                return;
            }
            self.next += 1;
        }
    }

    /// The end of the stream: whatever still waits, in number order. A gap is left only by a
    /// batch lost with a failed stage (the run then ends with that stage's error).
    pub(crate) fn drain(&mut self, ready: &mut Vec<RecordsBatch>) {
        ready.extend(std::mem::take(&mut self.waiting).into_values());
        self.skipped.clear();
    }

    /// Batches waiting for an earlier one.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The window stage the writer owns: the reorder buffer, the operator and its counts.
///
/// The operator is made from the first rows' schema (the layout's, or the inferred one), or
/// restored from a snapshot when [`WindowStage::restore`] is set (a resumed run: the journal's
/// checkpoint saved [`WindowOperator::snapshot`] of [`WindowStage::operator`]).
pub(crate) struct WindowStage {
    spec: Arc<WindowSpec>,
    /// The operator, once the rows' schema is known.
    pub(crate) operator: Option<WindowOperator>,
    /// The state to restore the operator from instead of starting empty (set before the first
    /// batch by a resumed run; an empty one: no operator had been made, start afresh).
    pub(crate) restore: Option<crate::journal::SavedState>,
    /// The schema of the rows the operator was made for (a checkpoint saves it with the state,
    /// so that a resumed run restores the operator before any row comes).
    pub(crate) input: Option<SchemaRef>,
    out: Option<WindowOutput>,
    pub(crate) reorder: Reorder,
    /// Records the operator took into windows (not rejected).
    pub(crate) records_windowed: u64,
    /// Window rows written.
    pub(crate) rows_emitted: u64,
    /// Records the operator rejected (dead-lettered), by reason class.
    pub(crate) rejected_by_class: BTreeMap<String, u64>,
}

/// What one step of the operator gave back: rows to write, rows of the input to dead-letter.
pub(crate) struct Emitted {
    /// Window rows to write, if any closed.
    pub(crate) rows: Option<RecordBatch>,
    /// Rows of the input batch the operator rejected: (row index, reason).
    pub(crate) rejected: Vec<(usize, String)>,
}

impl WindowStage {
    pub(crate) fn new(spec: Arc<WindowSpec>) -> WindowStage {
        WindowStage {
            spec,
            operator: None,
            restore: None,
            input: None,
            out: None,
            reorder: Reorder::default(),
            records_windowed: 0,
            rows_emitted: 0,
            rejected_by_class: BTreeMap::new(),
        }
    }

    /// The operator for rows of `schema`, made (or restored) at the first rows. A spec that
    /// does not fit the rows (a key or field the records do not have, a column of the wrong
    /// type) is a configuration error naming the key.
    pub(crate) fn operator_for(&mut self, schema: &SchemaRef) -> Result<&mut WindowOperator> {
        if self.operator.is_none() {
            let spec = Arc::clone(&self.spec);
            let made = match self.restore.take() {
                Some(saved) if !saved.bytes.is_empty() => {
                    WindowOperator::restore(spec, schema, &saved.bytes).map_err(|e| {
                        Error::Journal {
                            path: saved.path.clone(),
                            line: None,
                            why: format!(
                                "the window state committed by line {} of the journal cannot \
                                 be restored: {e}; to start afresh, move the journal, the \
                                 state file and the files of this output aside",
                                saved.line
                            ),
                        }
                    })
                }
                _ => WindowOperator::new(spec, schema),
            };
            // (A spec that does not fit the rows is a configuration error naming the key and
            // the rows' columns: the engine's message.)
            let op = made?;
            self.out = Some(WindowOutput::new(op.output_schema()));
            self.operator = Some(op);
            self.input = Some(Arc::clone(schema));
        }
        Ok(self.operator.as_mut().expect("just made"))
    }

    /// Feeds a batch's rows, in source order, and marks its partition ended if it is.
    pub(crate) fn push(
        &mut self,
        rows: Option<&RecordBatch>,
        source: SourceOrder,
        now: Instant,
    ) -> Result<Emitted> {
        let partition = PartitionId(source.partition);
        let mut rejected = Vec::new();
        if let Some(rows) = rows.filter(|r| r.num_rows() > 0) {
            self.operator_for(&rows.schema())?;
            let (op, out) = self.parts();
            op.push(partition, rows, now, out);
            rejected = out
                .take_rejected()
                .into_iter()
                .map(|r| (r.row, r.reason))
                .collect();
            for (_, reason) in &rejected {
                *self.rejected_by_class.entry(class_of(reason)).or_default() += 1;
            }
            self.records_windowed += (rows.num_rows() - rejected.len()) as u64;
        }
        if source.partition_ended && self.operator.is_some() {
            let (op, out) = self.parts();
            op.partition_ended(partition, out);
        }
        Ok(Emitted {
            rows: self.take_rows(),
            rejected,
        })
    }

    /// The processing-time step (`window.idle`).
    pub(crate) fn tick(&mut self, now: Instant) -> Option<RecordBatch> {
        self.operator.as_ref()?;
        let (op, out) = self.parts();
        op.tick(now, out);
        self.take_rows()
    }

    /// End of input, or a stop: every open window.
    pub(crate) fn flush(&mut self) -> Option<RecordBatch> {
        self.operator.as_ref()?;
        let (op, out) = self.parts();
        op.flush(out);
        self.take_rows()
    }

    /// When the operator must be ticked even without a batch.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.operator.as_ref()?.next_deadline()
    }

    /// Publishes the operator's gauges to the live metrics.
    pub(crate) fn publish(&self, registry: &Registry) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(op) = &self.operator else { return };
        let g = op.gauges();
        let m = &registry.window;
        m.open.store(g.open, Relaxed);
        m.late.store(g.late, Relaxed);
        m.closed_early.store(g.evicted, Relaxed);
        m.watermark_us
            .store(g.watermark_us.unwrap_or(i64::MIN), Relaxed);
    }

    fn parts(&mut self) -> (&mut WindowOperator, &mut WindowOutput) {
        (
            self.operator.as_mut().expect("operator made"),
            self.out.as_mut().expect("made with the operator"),
        )
    }

    fn take_rows(&mut self) -> Option<RecordBatch> {
        let rows = self.out.as_mut()?.take_rows()?;
        (rows.num_rows() > 0).then_some(rows)
    }
}

/// The dead-letter class (summary, metrics) of a rejection: its reason up to the first `:`
/// (`late`, `window state full`, ...), prefixed so that it reads as the window's.
pub(crate) fn class_of(reason: &str) -> String {
    let head = reason.split(':').next().unwrap_or(reason).trim();
    format!("window: {head}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: Option<u64>) -> RecordsBatch {
        RecordsBatch {
            rows: None,
            layout: None,
            dead_letters: Vec::new(),
            items: vec![n.unwrap_or(u64::MAX)],
            delivered: 0,
            body_bytes: 0,
            oldest: None,
            ticket: None,
            source: SourceOrder {
                number: n,
                ..SourceOrder::default()
            },
        }
    }

    fn numbers(v: &[RecordsBatch]) -> Vec<u64> {
        v.iter().map(|b| b.items[0]).collect()
    }

    #[test]
    fn batches_are_released_in_number_order_whatever_order_they_come_in() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.put(numbered(2), &mut out);
        r.put(numbered(1), &mut out);
        assert!(out.is_empty(), "0 has not come");
        assert_eq!(r.waiting(), 2);
        r.put(numbered(0), &mut out);
        assert_eq!(numbers(&out), [0, 1, 2]);
        out.clear();
        // A number that will never come does not hold the later ones back.
        r.put(numbered(4), &mut out);
        r.skip(3, &mut out);
        assert_eq!(numbers(&out), [4]);
        out.clear();
        // Unnumbered batches pass at once; the end drains what waits, in order.
        r.put(batch(None), &mut out);
        r.put(numbered(7), &mut out);
        r.put(numbered(6), &mut out);
        assert_eq!(numbers(&out), [u64::MAX]);
        out.clear();
        r.drain(&mut out);
        assert_eq!(numbers(&out), [6, 7]);
        assert_eq!(r.waiting(), 0);
    }

    fn numbered(n: u64) -> RecordsBatch {
        batch(Some(n))
    }
}

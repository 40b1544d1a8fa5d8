//! Time windows on the writer thread: batches put back in source order, fed to the window
//! operator ([`crate::window`]), and what it emits and rejects handed back to the writer.
//!
//! Parse and compute threads finish batches out of order; lateness must be decided in source
//! order, so that the same input gives the same rows and the same late records whatever the
//! thread counts and batch sizes. Every batch carries its number in the ingest thread's
//! shipping order ([`SourceOrder`]); [`Reorder`] holds those that arrive early until the ones
//! before them have come. Only runs with windows pay for it, and Kafka sources with the
//! journal (see `WriterParts::in_source_order`): otherwise the writer takes batches as they
//! come.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::batch::{RecordsBatch, SourceOrder};
use crate::error::{Error, Result};
use crate::metrics::live::Registry;
use crate::window::sharded::{ShardLink, ShardedWindows};
use crate::window::{PartitionId, WindowGauges, WindowOperator, WindowOutput, WindowSpec};

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

/// The window engine: one operator on the writer's thread, or a router over window threads
/// (`window.threads` > 1, [`ShardedWindows`]).
pub(crate) enum Engine {
    One(WindowOperator, WindowOutput),
    Sharded(ShardedWindows),
}

impl Engine {
    fn gauges(&self) -> WindowGauges {
        match self {
            Engine::One(op, _) => op.gauges(),
            Engine::Sharded(s) => s.gauges(),
        }
    }
}

/// The window stage the writer owns: the engine and its counts. (The batches reach it in
/// source order: the writer's [`Reorder`].)
///
/// The engine is made from the first rows' schema (the layout's, or the inferred one), or
/// restored from a snapshot when [`WindowStage::restore`] is set (a resumed run: the journal's
/// checkpoint saved [`WindowStage::snapshot`]).
pub(crate) struct WindowStage {
    spec: Arc<WindowSpec>,
    /// The engine, once the rows' schema is known.
    pub(crate) engine: Option<Engine>,
    /// The channels to the window threads, until the engine takes them (none: one operator
    /// on this thread).
    links: Vec<ShardLink>,
    /// The state to restore the engine from instead of starting empty (set before the first
    /// batch by a resumed run; an empty one: no engine had been made, start afresh).
    pub(crate) restore: Option<crate::journal::SavedState>,
    /// The schema of the rows the engine was made for (a checkpoint saves it with the state,
    /// so that a resumed run restores the engine before any row comes).
    pub(crate) input: Option<SchemaRef>,
    /// Records the engine took into windows (not rejected).
    pub(crate) records_windowed: u64,
    /// Window rows written.
    pub(crate) rows_emitted: u64,
    /// Records the engine rejected (dead-lettered), by reason class.
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
    /// The stage for `spec`; with `links`, its keys are spread over those window threads.
    pub(crate) fn new(spec: Arc<WindowSpec>, links: Vec<ShardLink>) -> WindowStage {
        WindowStage {
            spec,
            engine: None,
            links,
            restore: None,
            input: None,
            records_windowed: 0,
            rows_emitted: 0,
            rejected_by_class: BTreeMap::new(),
        }
    }

    /// The engine for rows of `schema`, made (or restored) at the first rows. A spec that
    /// does not fit the rows (a key or field the records do not have, a column of the wrong
    /// type) is a configuration error naming the key.
    pub(crate) fn engine_for(&mut self, schema: &SchemaRef) -> Result<&mut Engine> {
        if self.engine.is_none() {
            let spec = Arc::clone(&self.spec);
            let saved = self.restore.take().filter(|s| !s.bytes.is_empty());
            let bytes = saved.as_ref().map(|s| s.bytes.as_slice());
            let made = match std::mem::take(&mut self.links) {
                links if links.is_empty() => match bytes {
                    Some(b) if crate::window::sharded::is_sharded_state(b) => Err(Error::Stage {
                        stage: "window state".into(),
                        why: "saved by a run with several window threads (window.threads); \
                              run with the same count to resume"
                            .into(),
                    }),
                    Some(b) => WindowOperator::restore(spec, schema, b),
                    None => WindowOperator::new(spec, schema),
                }
                .map(|op| {
                    let out = op.new_output();
                    Engine::One(op, out)
                }),
                links => ShardedWindows::new(spec, schema, links, bytes).map(Engine::Sharded),
            };
            let engine = match (made, &saved) {
                (Ok(e), _) => e,
                (Err(e), Some(saved)) => {
                    return Err(Error::Journal {
                        path: saved.path.clone(),
                        line: None,
                        why: format!(
                            "the window state committed by line {} of the journal cannot \
                             be restored: {e}; to start afresh, move the journal, the \
                             state file and the files of this output aside",
                            saved.line
                        ),
                    })
                }
                // A spec that does not fit the rows is a configuration error naming the key
                // and the rows' columns: the engine's message.
                (Err(e), None) => return Err(e),
            };
            self.engine = Some(engine);
            self.input = Some(Arc::clone(schema));
        }
        Ok(self.engine.as_mut().expect("just made"))
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
        let mut emitted = Vec::new();
        if let Some(rows) = rows.filter(|r| r.num_rows() > 0) {
            let (out_rows, out_rejected) = match self.engine_for(&rows.schema())? {
                Engine::One(op, out) => {
                    op.push(partition, rows, now, out);
                    (take_rows(out), out.take_rejected())
                }
                Engine::Sharded(s) => s.push(partition, rows, now)?,
            };
            emitted.extend(out_rows);
            rejected = out_rejected
                .into_iter()
                .map(|r| (r.row, r.reason))
                .collect();
            for (_, reason) in &rejected {
                *self.rejected_by_class.entry(class_of(reason)).or_default() += 1;
            }
            self.records_windowed += (rows.num_rows() - rejected.len()) as u64;
        }
        if source.partition_ended {
            let ended = match &mut self.engine {
                Some(Engine::One(op, out)) => {
                    op.partition_ended(partition, out);
                    take_rows(out)
                }
                Some(Engine::Sharded(s)) => s.partition_ended(partition)?,
                None => None,
            };
            emitted.extend(ended);
        }
        Ok(Emitted {
            rows: self.concat(emitted)?,
            rejected,
        })
    }

    /// The processing-time step (`window.idle`).
    pub(crate) fn tick(&mut self, now: Instant) -> Result<Option<RecordBatch>> {
        match &mut self.engine {
            Some(Engine::One(op, out)) => {
                op.tick(now, out);
                Ok(take_rows(out))
            }
            Some(Engine::Sharded(s)) => s.tick(now),
            None => Ok(None),
        }
    }

    /// End of input, or a stop: every open window.
    pub(crate) fn flush(&mut self) -> Result<Option<RecordBatch>> {
        match &mut self.engine {
            Some(Engine::One(op, out)) => {
                op.flush(out);
                Ok(take_rows(out))
            }
            Some(Engine::Sharded(s)) => s.flush(),
            None => Ok(None),
        }
    }

    /// When the engine must be ticked even without a batch.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.engine.as_ref()? {
            Engine::One(op, _) => op.next_deadline(),
            Engine::Sharded(s) => s.next_deadline(),
        }
    }

    /// Windows open now (for the log of a stopped run).
    pub(crate) fn open(&self) -> Option<u64> {
        self.engine.as_ref().map(|e| e.gauges().open)
    }

    /// The engine's state as bytes: [`WindowOperator::snapshot`], or
    /// [`ShardedWindows::snapshot`]; `None` before the engine is made.
    pub(crate) fn snapshot(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(match &mut self.engine {
            Some(Engine::One(op, _)) => Some(op.snapshot()),
            Some(Engine::Sharded(s)) => Some(s.snapshot()?),
            None => None,
        })
    }

    /// Publishes the engine's gauges to the live metrics.
    pub(crate) fn publish(&self, registry: &Registry) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(engine) = &self.engine else { return };
        let g = engine.gauges();
        let m = &registry.window;
        m.open.store(g.open, Relaxed);
        m.late.store(g.late, Relaxed);
        m.closed_early.store(g.evicted, Relaxed);
        m.watermark_us
            .store(g.watermark_us.unwrap_or(i64::MIN), Relaxed);
    }

    /// Window rows of one step (a push and its partition's end) as one batch.
    fn concat(&self, mut rows: Vec<RecordBatch>) -> Result<Option<RecordBatch>> {
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            _ => arrow_select::concat::concat_batches(&rows[0].schema(), &rows)
                .map(Some)
                .map_err(|e| Error::Stage {
                    stage: "window".into(),
                    why: format!("putting window rows together: {e}"),
                }),
        }
    }
}

fn take_rows(out: &mut WindowOutput) -> Option<RecordBatch> {
    out.take_rows().filter(|r| r.num_rows() > 0)
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
            kafka: Default::default(),
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

//! The compute stage: what happens to parsed rows before the writer. First the statistics
//! the layout asks for ([`statistics`]), then the user's transforms
//! ([`Transform`]) in order; a transform may drop rows (a filter),
//! and those are counted, never lost silently.
//!
//! This is where further transforms go: time windows, enrichment, config-level filters. Each
//! works on whole record batches, one module each, run by `compute_batch`.

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

pub mod dedupe;
pub mod statistics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;

use crate::batch::{DeadLetter, RecordsBatch};
use crate::error::Result;
use crate::metrics::live::{Registry, Stage};
use crate::stage::{guarded, Transform, DEAD_LETTER_COLUMN};

pub use statistics::add_statistics;

/// The compute stage's work on one batch: the statistics, then the user's transforms in order.
/// Runs on a compute thread, on the parse thread that parsed the batch when the plan has no
/// compute threads, or on the writer for a short-path batch (only when there are no
/// transforms). A failing transform stops the run: what is queued drains, files stay valid,
/// and the run reports the error.
pub(crate) fn compute_batch(
    b: &mut RecordsBatch,
    transforms: &[Arc<dyn Transform>],
    reg: &Registry,
    stop: &AtomicBool,
) -> Result<()> {
    let t = Instant::now();
    if let (Some(rows), Some(layout)) = (&b.rows, &b.layout) {
        let n = rows.num_rows() as u64;
        let mut out = statistics::add_statistics(rows, layout);
        for t in transforms {
            out = guarded("transform", t.name(), || t.apply(out)).inspect_err(|e| {
                stop.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "stopping the pipeline");
            })?;
        }
        let dead = take_dead_letters(&mut out, &mut b.dead_letters)?;
        if dead > 0 {
            reg.add_transform_dead(dead);
        }
        let kept = out.num_rows() as u64;
        if kept + dead < n {
            reg.records_filtered
                .fetch_add(n - kept - dead, Ordering::Relaxed);
        }
        b.rows = (kept > 0).then_some(out);
        reg.records_computed.fetch_add(n, Ordering::Relaxed);
    }
    reg.latency(Stage::Compute).record(t.elapsed());
    Ok(())
}

/// Takes the rows a transform marked in [`DEAD_LETTER_COLUMN`] out of `rows` into
/// `dead_letters`, and drops the column; returns how many.
fn take_dead_letters(rows: &mut RecordBatch, dead_letters: &mut Vec<DeadLetter>) -> Result<u64> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let Ok(at) = rows.schema().index_of(DEAD_LETTER_COLUMN) else {
        return Ok(0);
    };
    let reasons = rows.column(at).clone();
    rows.remove_column(at);
    let Some(reasons) = reasons.as_string_opt::<i32>() else {
        return Ok(0);
    };
    if reasons.null_count() == reasons.len() {
        return Ok(0);
    }
    let keep: arrow_array::BooleanArray = reasons.iter().map(|r| Some(r.is_none())).collect();
    let mut dead = 0;
    for reason in reasons.iter().flatten() {
        dead += 1;
        dead_letters.push(DeadLetter {
            kind: "record",
            url: String::new(),
            reason: format!("transform: {reason}"),
            excerpt: String::new(),
            attempts: 0,
        });
    }
    *rows = arrow_select::filter::filter_record_batch(rows, &keep).map_err(|e| {
        crate::error::Error::Stage {
            stage: "transform dead letters".into(),
            why: e.to_string(),
        }
    })?;
    Ok(dead)
}

//! The compute stage: what happens to parsed rows before the writer. First the statistics
//! the layout asks for ([`statistics`]), then the user's transforms
//! ([`Transform`]) in order; a transform may drop rows (a filter),
//! and those are counted, never lost silently.
//!
//! This is where further transforms go: time windows, enrichment, the configuration's
//! transforms ([`config`]). Each works on whole record batches, one module each, run by
//! `compute_batch`. A transform may turn rows away as dead letters
//! ([`Transform::apply_rejecting`]): those are counted as dead letters, the other rows it
//! leaves out as filtered.

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

pub mod config;
pub mod dedupe;
pub mod statistics;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::batch::{DeadLetter, RecordsBatch};
use crate::error::Result;
use crate::metrics::live::{Registry, Stage};
use crate::stage::{guarded, Transform};

pub use statistics::add_statistics;

/// The compute stage's work on one batch: the statistics, then the user's transforms in order.
/// Runs on a compute thread, on the parse thread that parsed the batch when the plan has no
/// compute threads, or on the writer for a short-path batch (only when there are no
/// transforms). A failing transform's error is returned: the thread that ran it stops the run
/// (what is queued drains, files stay valid) and the run reports the error.
pub(crate) fn compute_batch(
    b: &mut RecordsBatch,
    transforms: &[Arc<dyn Transform>],
    reg: &Registry,
) -> Result<()> {
    let t = Instant::now();
    if let (Some(rows), Some(layout)) = (&b.rows, &b.layout) {
        let n = rows.num_rows() as u64;
        let mut out = statistics::add_statistics(rows, layout);
        let mut rejected = Vec::new();
        for t in transforms {
            out = guarded("transform", t.name(), || {
                t.apply_rejecting(out, &mut rejected)
            })
            .inspect_err(|e| tracing::error!(error = %e, "stopping the pipeline"))?;
        }
        let kept = out.num_rows() as u64;
        // Rows a transform turned away are dead letters; the others it left out, filtered.
        let dead = rejected.len() as u64;
        let filtered = n.saturating_sub(kept + dead);
        if filtered > 0 {
            reg.records_filtered.fetch_add(filtered, Ordering::Relaxed);
        }
        if dead > 0 {
            reg.add_rejected(rejected.iter().map(|r| r.class.as_str()));
            b.dead_letters
                .extend(rejected.into_iter().map(|r| DeadLetter {
                    kind: "record",
                    url: r.source.unwrap_or_default(),
                    reason: r.reason,
                    excerpt: r.excerpt,
                    attempts: 1,
                }));
        }
        b.rows = (kept > 0).then_some(out);
        reg.records_computed.fetch_add(n, Ordering::Relaxed);
    }
    reg.latency(Stage::Compute).record(t.elapsed());
    Ok(())
}

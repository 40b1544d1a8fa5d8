//! Time windows: per-key aggregates on event time, with a watermark, late records and state
//! that can be saved and restored (issue 18).
//!
//! A [`WindowOperator`] takes record batches in **source order**, each tagged with the source
//! partition it came from (a file, a Kafka partition, "the URL list"), and emits one row per
//! (window, key) once the watermark passes the window's end. It runs on one thread (the
//! writer's); nothing in it blocks or sleeps: processing time comes in as [`Instant`]s.
//!
//! # The rules
//!
//! - **Windows** are `[k·hop, k·hop + size)` in µs since the Unix epoch (aligned to the epoch,
//!   whatever the first record); `hop == size` is tumbling. A record of event time `t` belongs
//!   to every window containing `t`. State is kept per (key, pane), a pane being
//!   gcd(size, hop) wide; a window's aggregates are the merge of its panes.
//! - **Keys** are the values of the `by` columns (strings, integers, booleans; null is a key
//!   value of its own); no `by` column: one global key.
//! - **Watermark**: per partition `p`, `max_p` is the highest event time seen. The watermark
//!   `W` is the minimum over partitions that are seen, not ended and not idle of
//!   `max_p − lateness`; when there is no such partition, the maximum over all partitions
//!   `− lateness`. `W` never goes back: a partition that appears (or wakes up) behind it
//!   does not reopen windows already emitted.
//! - For each record, in order: if every window containing `t` has `end ≤ W` (`W` before the
//!   record), the record is **late**: rejected with a reason naming the event time, the
//!   watermark and the window (the last one containing `t`), e.g. `late: event time
//!   2026-01-01T00:00:03.000000Z is behind the watermark 2026-01-01T00:00:10.000000Z; its
//!   window [2026-01-01T00:00:00.000000Z, 2026-01-01T00:00:10.000000Z) closed`. Otherwise it
//!   is added to its windows that are still open (one that already closed is skipped).
//!   Then `max_p` is updated (late records too), `W` recomputed, and every window with
//!   `end ≤ W` is emitted.
//! - **Emission order**: by window start, then by key value (column by column: null first,
//!   then numbers, `false` before `true`, strings by their bytes). Each window is emitted
//!   exactly once. A (key, window) with no record has no row.
//! - **Aggregates** ([`Agg`]): `count` counts the records in the window; per field,
//!   `<field>_count` counts its non-null values and every other aggregate skips nulls (all
//!   null or none: null). `var` is the sample variance (n − 1; null below 2 values) from
//!   merged (n, mean, M2) moments (Welford per value, Chan et al. across panes), never a
//!   naive sum of squares. `pNN` comes from a DDSketch at 0.5 % relative accuracy: the value
//!   returned is within 0.5 % of the value of rank ⌊q·(n − 1)⌋ (0-based) of the window's
//!   sorted values (the lower of the two that DuckDB's `quantile_cont` interpolates between;
//!   where they differ by more than the bound, so may the results). `first`/`last` are the
//!   values at the smallest/largest event time (ties: the first/last in source order).
//!   `sum`, `mean`, `var` and `pNN` are Float64; `min`, `max`, `first`, `last` keep the
//!   field's type.
//! - **Idle** (`spec.idle`, processing time): [`WindowOperator::tick`] marks partitions
//!   silent that long as idle (they stop holding `W` back); when no partition is active any
//!   more, every open window closes and `W` moves to the end of the last of them. A push to
//!   an idle partition makes it active again. [`WindowOperator::next_deadline`] says when
//!   the next tick can change anything.
//! - **End**: [`WindowOperator::partition_ended`] drops a partition from the minimum;
//!   [`WindowOperator::flush`] (end of input, SIGTERM) closes every open window.
//! - **Bounded state**: at most `max_open` open (key, window) pairs. A record that would open
//!   more is, under [`Overflow::DeadLetter`], rejected (`window state full: N open (key,
//!   window) pairs`); under [`Overflow::CloseOldest`] the oldest open pair (smallest window
//!   start; among equal starts a deterministic one) is emitted early with `partial = true`,
//!   and that window and every earlier window of its key count as closed (later records for
//!   them are late, with a reason saying the window was closed early), until there is room.
//! - **Restart**: [`WindowOperator::snapshot`] gives the state as versioned bytes with a
//!   CRC; [`WindowOperator::restore`] and going on gives exactly the rows and rejections of
//!   an operator that never stopped.
//!
//! # Output rows
//!
//! `window_start`, `window_end` (Timestamp µs "UTC"), the key columns (names and types of
//! the input), `count` (Int64), then `<field>_<agg>` in the order of the spec (`latency_ms_p99`,
//! `latency_ms_p99_9`), then `partial` (Boolean) under [`Overflow::CloseOldest`]. Rows collect
//! in a [`WindowOutput`] until [`WindowOutput::take_rows`]; rejected rows (their index in the
//! pushed batch and the reason) until [`WindowOutput::take_rejected`]: take those after each
//! push, since the indexes refer to that batch.
//!
//! # Costs
//!
//! Per record: a hash lookup of the key's bytes (a cache per dictionary entry when the key is
//! one `dict` column), a search of the key's few panes, then per aggregated field one
//! accumulator update (a logarithm more for a percentile). On one thread, 1M records in
//! 10 s tumbling windows: about 9 to 13 M records/s with 40 string keys and count/mean/var/p99,
//! 15 to 20 M without the p99, 55 to 60 M with no key and only `count` (a shared 2-core
//! machine under load; `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo test --lib
//! window::tests::throughput -- --ignored --nocapture`, or the criterion group `cargo bench
//! --bench kernels -- window`). Memory: per open (key, pane) one accumulator per field
//! (about 120 bytes), plus, for a field with a percentile, a sketch of 8 bytes per bin in use:
//! about 230 bins per decade of values at 0.5 %, at most 2048 per sign (16 KiB); per key
//! its bytes. `max_open` bounds the pairs, so it bounds this too.
//!
//! # Comparing percentiles
//!
//! The sketch's bound is relative to a value of the window: `pNN` lies within 0.5 % of the
//! value of rank ⌊q·(n − 1)⌋. DuckDB's `quantile_cont` interpolates between that value and
//! the next one up, so a fair check against it accepts `pNN` within
//! `[lo·(1 − 0.005), hi·(1 + 0.005)]` (for positive values), `lo` and `hi` being those two.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
//! use arrow_schema::{DataType, Field, Schema, TimeUnit};
//! use pinflow::window::{Agg, PartitionId, WindowOperator, WindowSpec};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
//!     Field::new("service", DataType::Utf8, true),
//!     Field::new("latency_ms", DataType::Float64, true),
//! ]));
//! let spec = WindowSpec::tumbling(Duration::from_secs(10))
//!     .with_by(["service"])
//!     .with_aggregates("latency_ms", [Agg::Mean, Agg::parse("p99")?]);
//! let mut op = WindowOperator::new(Arc::new(spec), &schema)?;
//! let mut out = op.new_output();
//!
//! let s = 1_000_000; // µs
//! let rows = RecordBatch::try_new(schema.clone(), vec![
//!     Arc::new(TimestampMicrosecondArray::from(vec![1 * s, 3 * s, 2 * s, 12 * s, 4 * s])
//!         .with_timezone("UTC")),
//!     Arc::new(StringArray::from(vec!["api", "db", "api", "api", "db"])),
//!     Arc::new(Float64Array::from(vec![10.0, 5.0, 20.0, 7.0, 1.0])),
//! ])?;
//! op.push(PartitionId(0), &rows, Instant::now(), &mut out);
//! // 12 s moved the watermark past [0 s, 10 s): its two rows are out; the record at 4 s
//! // came after that and is late.
//! let done = out.take_rows().unwrap();
//! assert_eq!(done.num_rows(), 2);
//! let late = out.take_rejected();
//! assert_eq!(late.len(), 1);
//! assert_eq!(late[0].row, 4);
//! assert!(late[0].reason.starts_with("late: event time 1970-01-01T00:00:04"));
//!
//! op.flush(&mut out); // end of input: [10 s, 20 s) of "api"
//! assert_eq!(out.take_rows().unwrap().num_rows(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Instant`]: std::time::Instant

mod aggregate;
mod operator;
mod output;
pub(crate) mod sharded;
mod snapshot;
mod spec;
#[cfg(test)]
mod tests;

pub use aggregate::SKETCH_ALPHA;
pub use operator::{PartitionId, Rejected, WindowGauges, WindowOperator};
pub use output::WindowOutput;
pub use spec::{
    parse_aggregates, parse_field_aggregates, Agg, Overflow, WindowSpec, DEFAULT_MAX_OPEN,
    DEFAULT_TIME_FIELD,
};

//! Custom stages for embedders: transforms on the compute stage, sinks on the writer thread.
//!
//! ```text
//! parse ─► compute: statistics, then each Transform ─► writer: Parquet, then each Sink
//! ```
//!
//! - A [`Transform`] takes a batch of rows (an Arrow `RecordBatch` with the statistics columns)
//!   and returns a batch: filter rows, add or drop columns, enrich. It runs on the compute
//!   threads (or, when the thread plan has none, on the parse thread that parsed the batch), in
//!   parallel on different batches. [`filter_records`] builds one from a per-record
//!   predicate.
//! - A [`Sink`] receives every finished batch on the writer thread, after the Parquet file has
//!   it (or instead, with `Pipeline::builder().parquet(false)`); [`callback`] builds one from a
//!   closure, for in-process consumers.
//!
//! A transform or sink that returns an error or panics stops the run: the error names the
//! stage, the other stages drain, and the Parquet files finalized so far stay valid (the open
//! one is not finalized). Nothing here is async: a stage is a plain call on a plain thread.

use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::DataType;

use crate::error::{Error, Result};

/// The error type stages return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A batch-to-batch step between the statistics and the writer.
///
/// ```
/// use arrow_array::RecordBatch;
/// use pinflow::stage::{BoxError, Transform};
/// /// Keeps only the first 10 rows of each batch.
/// struct Head;
/// impl Transform for Head {
///     fn apply(&self, rows: RecordBatch) -> Result<RecordBatch, BoxError> {
///         Ok(rows.slice(0, rows.num_rows().min(10)))
///     }
/// }
/// ```
pub trait Transform: Send + Sync + 'static {
    /// A name for errors and logs.
    fn name(&self) -> &str {
        "transform"
    }

    /// Turns one batch into another. Every batch of a run must come out with the same schema
    /// (the Parquet file has one).
    fn apply(&self, rows: RecordBatch) -> std::result::Result<RecordBatch, BoxError>;

    /// [`Transform::apply`] for a transform that may turn rows away as dead letters: each row
    /// it leaves out of its result and adds to `rejected` becomes a dead letter (counted with
    /// the dead letters, not as filtered). The compute stage calls this one; the default
    /// rejects nothing.
    fn apply_rejecting(
        &self,
        rows: RecordBatch,
        rejected: &mut Vec<Rejected>,
    ) -> std::result::Result<RecordBatch, BoxError> {
        let _ = rejected;
        self.apply(rows)
    }
}

/// A row a transform turned away (see [`Transform::apply_rejecting`]): it is written to the
/// dead-letter file with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The reason's class, for the dead-letter counts by reason (`cast failed`).
    pub class: String,
    /// Why, naming the field and the value.
    pub reason: String,
    /// The row, as one JSON object.
    pub excerpt: String,
    /// Where the row came from, when the transform knows (its `_source` lineage column).
    pub source: Option<String>,
}

/// Any `Fn(RecordBatch) -> Result<RecordBatch, BoxError>` is a transform.
impl<F> Transform for F
where
    F: Fn(RecordBatch) -> std::result::Result<RecordBatch, BoxError> + Send + Sync + 'static,
{
    fn apply(&self, rows: RecordBatch) -> std::result::Result<RecordBatch, BoxError> {
        self(rows)
    }
}

/// A consumer of finished batches, on the writer thread.
pub trait Sink: Send + 'static {
    /// A name for errors and logs.
    fn name(&self) -> &str {
        "sink"
    }

    /// Receives one batch (every column, statistics included).
    fn write(&mut self, rows: &RecordBatch) -> std::result::Result<(), BoxError>;

    /// Makes what the sink was given durable, wherever it keeps it. With `writer.journal`,
    /// each checkpoint calls it just before it commits: the work items whose rows the sink got
    /// are then done, and a restart does not read them again, so a sink that buffers writes its
    /// buffer out here. An error fails the run, the checkpoint uncommitted: a restart (or the
    /// same `Pipeline`'s next run) reads its items again, so drop what you buffered. Rows a sink
    /// flushed can come again too when the commit itself then fails, or another sink's flush
    /// does: with a journal a sink gets each row at least once (make its writes idempotent
    /// where that matters). Without a journal it is never called.
    fn flush(&mut self) -> std::result::Result<(), BoxError> {
        Ok(())
    }

    /// Called once when the run ends normally, after the last batch (with `writer.journal`,
    /// after the last checkpoint committed: write buffers out in [`Sink::flush`]).
    fn finish(&mut self) -> std::result::Result<(), BoxError> {
        Ok(())
    }
}

/// A sink calling a closure with each batch: see [`callback`].
pub struct CallbackSink<F>(F);

/// A sink that calls `f` with every finished batch, for in-process consumers.
///
/// ```
/// let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
/// let counter = seen.clone();
/// let sink = pinflow::stage::callback(move |rows: &arrow_array::RecordBatch| {
///     counter.fetch_add(rows.num_rows(), std::sync::atomic::Ordering::Relaxed);
/// });
/// # let _ = sink;
/// ```
pub fn callback<F>(f: F) -> CallbackSink<F>
where
    F: FnMut(&RecordBatch) + Send + 'static,
{
    CallbackSink(f)
}

impl<F> Sink for CallbackSink<F>
where
    F: FnMut(&RecordBatch) + Send + 'static,
{
    fn name(&self) -> &str {
        "callback"
    }

    fn write(&mut self, rows: &RecordBatch) -> std::result::Result<(), BoxError> {
        (self.0)(rows);
        Ok(())
    }
}

/// One row of a batch, as a per-record closure sees it: typed getters by column name, `None`
/// for a null or a missing column.
pub struct Row<'a> {
    rows: &'a RecordBatch,
    index: usize,
}

impl<'a> Row<'a> {
    fn column(&self, name: &str) -> Option<&'a dyn Array> {
        let c = self.rows.column_by_name(name)?;
        (!c.is_null(self.index)).then_some(c.as_ref())
    }

    /// An `int64` column's value.
    pub fn i64(&self, name: &str) -> Option<i64> {
        let c = self.column(name)?;
        (c.data_type() == &DataType::Int64).then(|| c.as_primitive::<Int64Type>().value(self.index))
    }

    /// A `float64` column's value.
    pub fn f64(&self, name: &str) -> Option<f64> {
        let c = self.column(name)?;
        (c.data_type() == &DataType::Float64)
            .then(|| c.as_primitive::<Float64Type>().value(self.index))
    }

    /// A `bool` column's value.
    pub fn bool(&self, name: &str) -> Option<bool> {
        let c = self.column(name)?;
        (c.data_type() == &DataType::Boolean).then(|| c.as_boolean().value(self.index))
    }

    /// A `string` or `dict` column's value.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        let c = self.column(name)?;
        match c.data_type() {
            DataType::Utf8 => Some(c.as_string::<i32>().value(self.index)),
            DataType::Dictionary(_, _) => {
                let d = c.as_dictionary::<arrow_array::types::Int32Type>();
                let key = d.keys().value(self.index) as usize;
                Some(d.values().as_string::<i32>().value(key))
            }
            _ => None,
        }
    }

    /// The row's index in its batch.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// A transform keeping the rows for which `keep` returns true: see [`filter_records`].
pub struct FilterRecords<F>(F);

/// A per-record transform: keeps the rows for which `keep` returns true.
///
/// ```
/// let errors_only = pinflow::stage::filter_records(|row| row.str("level") == Some("error"));
/// # let _ = errors_only;
/// ```
pub fn filter_records<F>(keep: F) -> FilterRecords<F>
where
    F: Fn(&Row<'_>) -> bool + Send + Sync + 'static,
{
    FilterRecords(keep)
}

impl<F> Transform for FilterRecords<F>
where
    F: Fn(&Row<'_>) -> bool + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        "filter"
    }

    fn apply(&self, rows: RecordBatch) -> std::result::Result<RecordBatch, BoxError> {
        let mask: BooleanArray = (0..rows.num_rows())
            .map(|index| Some((self.0)(&Row { rows: &rows, index })))
            .collect();
        Ok(arrow_select::filter::filter_record_batch(&rows, &mask)?)
    }
}

/// Runs a user stage, turning its error or panic into this crate's error naming the stage.
pub(crate) fn guarded<T>(
    kind: &'static str,
    name: &str,
    f: impl FnOnce() -> std::result::Result<T, BoxError>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Stage {
            stage: format!("{kind} `{name}`"),
            why: e.to_string(),
        }),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(Error::Stage {
                stage: format!("{kind} `{name}`"),
                why: format!("panicked: {msg}"),
            })
        }
    }
}

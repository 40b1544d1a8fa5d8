//! The window operator.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::spec::WindowSpec;

/// A source partition (a file, a Kafka partition, "the URL list"): the watermark is the
/// minimum over the partitions that are seen, not ended and not idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(pub u32);

/// A row of a pushed batch that was not windowed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The row's index in the batch passed to [`WindowOperator::push`].
    pub row: usize,
    /// Why (late, no event time, window state full).
    pub reason: String,
}

/// The operator's gauges and counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowGauges {
    /// Open (key, window) pairs.
    pub open: u64,
    /// The watermark in µs since the epoch (`None` before the first record).
    pub watermark_us: Option<i64>,
    /// The highest event time seen, µs since the epoch.
    pub max_event_us: Option<i64>,
    /// Window rows emitted.
    pub emitted: u64,
    /// Late records rejected.
    pub late: u64,
    /// (key, window) pairs closed early because the state was full.
    pub evicted: u64,
    /// Records rejected for another reason (no event time, state full under DeadLetter).
    pub rejected: u64,
}

/// Window rows and rejected rows produced by the operator's calls.
#[derive(Debug)]
pub struct WindowOutput {
    /// Rows not windowed, with reasons.
    pub rejected: Vec<Rejected>,
    schema: SchemaRef,
}

impl WindowOutput {
    /// An empty output for rows of `schema` ([`WindowOperator::output_schema`]).
    pub fn new(schema: SchemaRef) -> WindowOutput {
        WindowOutput {
            rejected: Vec::new(),
            schema,
        }
    }

    /// The window rows emitted since the last call, as one batch; `None` when there are none.
    pub fn take_rows(&mut self) -> Option<RecordBatch> {
        let _ = &self.schema;
        None
    }

    /// The rejected rows since the last call.
    pub fn take_rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }
}

/// Per-key windows on event time over a stream of record batches. See the module docs.
#[derive(Debug)]
pub struct WindowOperator {
    spec: Arc<WindowSpec>,
    output: SchemaRef,
}

impl WindowOperator {
    /// Checks the spec against the rows' schema and makes an operator with no state.
    pub fn new(spec: Arc<WindowSpec>, input: &SchemaRef) -> Result<Self, crate::error::Error> {
        let _ = input;
        Ok(WindowOperator {
            spec,
            output: Arc::new(arrow_schema::Schema::empty()),
        })
    }

    /// The schema of the window rows.
    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    /// The spec.
    pub fn spec(&self) -> &Arc<WindowSpec> {
        &self.spec
    }

    /// Feeds rows in source order (all rows of `rows` belong to `partition`).
    pub fn push(
        &mut self,
        partition: PartitionId,
        rows: &RecordBatch,
        now: Instant,
        out: &mut WindowOutput,
    ) {
        let _ = (partition, rows, now, out);
        todo!()
    }

    /// Processing-time step.
    pub fn tick(&mut self, now: Instant, out: &mut WindowOutput) {
        let _ = (now, out);
        todo!()
    }

    /// When the next tick can change anything.
    pub fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// A partition reached its end.
    pub fn partition_ended(&mut self, partition: PartitionId, out: &mut WindowOutput) {
        let _ = (partition, out);
        todo!()
    }

    /// End of input or SIGTERM: closes every open window.
    pub fn flush(&mut self, out: &mut WindowOutput) {
        let _ = out;
        todo!()
    }

    /// The state as versioned, self-checking bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        todo!()
    }

    /// An operator with the state of [`WindowOperator::snapshot`]'s bytes.
    pub fn restore(
        spec: Arc<WindowSpec>,
        input: &SchemaRef,
        bytes: &[u8],
    ) -> Result<Self, crate::error::Error> {
        let _ = (spec, input, bytes);
        todo!()
    }

    /// Gauges and counters.
    pub fn gauges(&self) -> WindowGauges {
        WindowGauges::default()
    }
}

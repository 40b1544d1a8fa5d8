//! Outputs: where the writer thread puts rows.
//!
//! The writer thread ([`run`], in `writer.rs`) is the only thread that touches output. It
//! drives one [`Output`], the contract below; local Parquet files ([`LocalParquet`], in
//! `local.rs`) are the first implementation; `S3Output` (`s3.rs`, with the `s3` feature) stages
//! them and uploads them to an object store; Kafka is next. Around
//! the output the writer keeps what every output shares: dead letters ([`DeadLetterLog`]), the
//! user's sinks, the resume journal's checkpoints, deadlines and rotation, and the end-to-end
//! latency of each batch ([`Holds`]).
//!
//! - [`ParquetFile`] writes rows with arrow-rs `ArrowWriter`, one row group at a time, under a
//!   temporary name; on [`finish`](ParquetFile::finish) it closes the file (footer), fsyncs it,
//!   renames it into place and fsyncs the directory, so a reader never sees a partial file.
//! - [`LocalParquet`] closes row groups by row count and by age (`writer.flush_interval`),
//!   rotates files by time, rows and bytes, and with `writer.partition_by` splits every batch
//!   into Hive-style partitions ([`Partitioner`]), keeping at most
//!   `writer.max_open_partitions` files open. [`OutputPlan`] names its files.
//! - [`DeadLetterLog`] appends rejected records and failed requests as NDJSON, rotated by size.
//!
//! Every file carries key-value metadata: [`VERSION_KEY`], [`SOURCE_KEY`] and [`RUN_ID_KEY`];
//! a file written from a Kafka source also the offsets of the messages it holds
//! ([`OFFSETS_KEY`](crate::kafka::offsets::OFFSETS_KEY)).

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

mod deadletter;
mod footer;
#[cfg(feature = "kafka")]
mod kafka;
mod local;
mod parquet;
mod partition;
mod plan;
mod row_json;
#[cfg(feature = "s3")]
mod s3;
mod tee;
mod window_state;
mod windows;
mod writer;

pub use deadletter::DeadLetterLog;
pub(crate) use local::LocalParquet;
pub use parquet::{
    file_properties, writer_properties, ParquetFile, SealedFile, FIXED_WIDTH_DICTIONARY_BYTES,
    VERSION_KEY,
};
pub use partition::{escape_value, Partitioner, Split, HIVE_DEFAULT_PARTITION, NAME_MAX};
pub use plan::{OutputPlan, S3Target};
pub use row_json::row_json;
pub(crate) use tee::Tee;
pub(crate) use window_state::key as window_state_key;
pub(crate) use writer::since_column_kind;
pub use writer::DELIVERY_FAILED_CLASS;
pub use writer::{run, Prepare, RecordsOutput, WriterParts, FAILURE_LINES_PER_SEC, REFUSED_CLASS};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow_array::RecordBatch;

use crate::error::Result;
use crate::kafka::offsets::OffsetRanges;
use crate::metrics::live::{Registry, Stage};

/// What the writer thread drives: one place rows go.
///
/// The writer calls [`write`](Output::write) with every batch's rows, in order, and between
/// batches lets the output close what has waited too long ([`flush_aged`](Output::flush_aged),
/// woken at [`deadline`](Output::deadline)). Without a journal it finalizes everything open at
/// each rotation ([`finalize_all`](Output::finalize_all)) and at the end
/// ([`finish`](Output::finish)). With a journal, output becomes visible only at checkpoints:
/// [`seal`](Output::seal) makes what was written durable under temporary names and returns
/// them, the writer commits them to the journal with the work items they hold, and
/// [`publish_sealed`](Output::publish_sealed) makes them visible (or
/// [`discard_sealed`](Output::discard_sealed), when the commit failed). A run that fails calls
/// [`abort`](Output::abort): nothing partial may stay visible.
///
/// An output that keeps rows buffered holds their batch in [`Holds`] until they are durable,
/// so a batch's end-to-end latency ends when its last row is.
pub(crate) trait Output {
    /// Appends the rows of batch `id` (`None`: not tracked for latency). Returns the rows it
    /// cannot hold (by index in `rows`, with the reason: a partition value too long for a
    /// directory name), which the writer turns into dead letters; every other row is written.
    fn write(
        &mut self,
        rows: &RecordBatch,
        id: Option<u64>,
        holds: &mut Holds,
    ) -> Result<Vec<(usize, String)>>;
    /// When buffered rows must be flushed even if no batch comes; `None`: nothing buffered.
    fn deadline(&self) -> Option<Instant>;
    /// Flushes what has waited `writer.flush_interval`.
    fn flush_aged(&mut self, holds: &mut Holds) -> Result<()>;
    /// Journal mode, after a batch: whether a checkpoint is due (a file at its size, too many
    /// open).
    fn checkpoint_due(&self) -> bool;
    /// Rotation without a journal: finalizes everything open that has rows.
    fn finalize_all(&mut self, holds: &mut Holds) -> Result<()>;
    /// Journal mode: makes everything written since the last checkpoint durable under
    /// temporary names, and returns them as (temporary, final) pairs for the journal.
    fn seal(&mut self) -> Result<Vec<(PathBuf, PathBuf)>>;
    /// Journal mode, once the journal has committed what [`seal`](Output::seal) returned:
    /// moves it to its final names.
    fn publish_sealed(&mut self, holds: &mut Holds) -> Result<()>;
    /// Journal mode, when the commit failed: removes what was sealed.
    fn discard_sealed(&mut self);
    /// Journal mode, when a pending checkpoint (two-phase) could not be confirmed: lets go of
    /// what was sealed without removing it, for the next run to finish or undo.
    fn keep_sealed(&mut self);
    /// The end of the stream: finalizes everything.
    fn finish(&mut self, holds: &mut Holds) -> Result<()>;
    /// A failed run: removes everything not yet finalized.
    fn abort(&mut self);
    /// How many files (or objects, messages) were finalized since the last call: the writer
    /// then makes the dead letters durable too.
    fn take_finalized(&mut self) -> u64;
    /// What has been finalized so far.
    fn report(&self) -> OutputReport;
    /// With `window.records` ([`Tee`](tee::Tee)): appends records, besides the window rows
    /// [`write`](Output::write) takes. Returns the rows it cannot hold (as `write`); `None`
    /// from an output that takes no records.
    fn write_records(
        &mut self,
        _rows: &RecordBatch,
        _holds: &mut Holds,
    ) -> Result<Option<Vec<(usize, String)>>> {
        Ok(None)
    }
    /// With `window.records`: the records written, and what their output finalized.
    fn records_report(&self) -> Option<(u64, OutputReport)> {
        None
    }
    /// Whether a row handed to [`write`](Output::write) is written only once the output says
    /// so later ([`take_settled`](Output::take_settled)): Kafka, whose broker acknowledges
    /// each message. The writer then counts rows written as they settle, not as it hands
    /// them over.
    fn deferred(&self) -> bool {
        false
    }
    /// With [`deferred`](Output::deferred): the rows settled since the last call.
    fn take_settled(&mut self) -> Settled {
        Settled::default()
    }
    /// The Kafka source's messages whose rows the next [`write`](Output::write) (or
    /// [`write_records`](Output::write_records)) calls hand over, until the next call (empty:
    /// none). Parquet files record them in each file that takes some of the rows
    /// ([`OFFSETS_KEY`](crate::kafka::offsets::OFFSETS_KEY)); other outputs ignore them.
    fn kafka_messages(&mut self, _messages: &OffsetRanges) {}
}

/// Rows a [`deferred`](Output::deferred) output settled: written, or failed for good.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// Rows now written (acknowledged).
    pub(crate) delivered: u64,
    /// Rows that failed for good: (the row as JSON, the reason), dead-lettered by the writer.
    pub(crate) failed: Vec<(String, String)>,
}

/// What an [`Output`] finalized.
#[derive(Debug, Default, Clone)]
pub(crate) struct OutputReport {
    /// Row groups in the finalized files.
    pub(crate) row_groups: u64,
    /// Files finalized.
    pub(crate) files: u64,
    /// The last finalized path.
    pub(crate) output: Option<PathBuf>,
}

/// Batches whose rows are not all durable yet, by id: when their oldest response completed,
/// and how many holds remain (one per open file with some of their rows in an open row group,
/// and one while the batch is being written). The last release records the batch's end-to-end
/// latency (response complete → every row in a closed row group).
pub(crate) struct Holds<'a> {
    pending: HashMap<u64, (Instant, u32)>,
    registry: &'a Registry,
}

impl<'a> Holds<'a> {
    pub(crate) fn new(registry: &'a Registry) -> Holds<'a> {
        Holds {
            pending: HashMap::new(),
            registry,
        }
    }

    /// Starts tracking batch `id`, with the one hold of its being written.
    pub(crate) fn track(&mut self, id: u64, oldest: Instant) {
        self.pending.insert(id, (oldest, 1));
    }

    /// One more hold on `id`, if it is tracked.
    pub(crate) fn hold(&mut self, id: u64) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.1 += 1;
        }
    }

    /// Drops one hold on `id`; the last one records its end-to-end latency.
    pub(crate) fn release(&mut self, id: u64) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.1 -= 1;
            if p.1 == 0 {
                let (oldest, _) = self.pending.remove(&id).expect("present");
                self.registry
                    .latency(Stage::EndToEnd)
                    .record(oldest.elapsed());
            }
        }
    }
}

/// The key-value metadata key naming what the rows came from (the URL template, URL file or
/// list, `demo`, `bench`).
pub const SOURCE_KEY: &str = "pinflow.source";

/// The key-value metadata key holding the run id ([`new_run_id`]): the same in every file of
/// one run, different in every other run.
pub const RUN_ID_KEY: &str = "pinflow.run_id";

/// A new run id: the start time in microseconds since the epoch and the process id, both in
/// hex (`18b2c3d4e5f60-3039`). Unique across the process's runs (the time part never repeats)
/// and across processes.
pub fn new_run_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut prev = LAST.load(Relaxed);
    let t = loop {
        let t = now.max(prev + 1);
        match LAST.compare_exchange(prev, t, Relaxed, Relaxed) {
            Ok(_) => break t,
            Err(p) => prev = p,
        }
    };
    format!("{t:x}-{:x}", std::process::id())
}

/// What the writer thread hands back when it ends.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Rows written.
    pub rows: u64,
    /// Row groups in the finalized files.
    pub row_groups: u64,
    /// Parquet files finalized (more than one when rotating or partitioning).
    pub files: u64,
    /// Dead letters written (all kinds).
    pub dead_letters: u64,
    /// Rows the output could not hold (a partition value too long for a directory name),
    /// dead-lettered by the writer: parsed records, counted here rather than by a parser.
    pub records_refused: u64,
    /// Rows a deferred output (Kafka) could not deliver, dead-lettered by the writer with the
    /// broker's reason: parsed records, counted here rather than by a parser.
    pub records_undelivered: u64,
    /// The last finalized output path.
    pub output: Option<std::path::PathBuf>,
    /// The dead-letter file, if anything went to it.
    pub dead_letter_file: Option<std::path::PathBuf>,
    /// A batch the writer parsed and computed itself (the short path) failed: the files are
    /// complete, as after a failed parse thread, and the run ends with this error.
    pub stage_failed: Option<crate::error::Error>,
    /// Time windows: window rows written (not counted in `rows`, which are records).
    pub window_rows: u64,
    /// Time windows: records taken into windows (aggregated, so not written as rows).
    pub records_windowed: u64,
    /// Time windows: records the operator dead-lettered (late, ...), by reason class.
    pub window_rejected: std::collections::BTreeMap<String, u64>,
    /// `window.records`: records written as well (a copy of what the windows were given),
    /// and the last finalized file of theirs.
    pub records_also: Option<(u64, Option<std::path::PathBuf>)>,
}

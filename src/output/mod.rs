//! The write stage: the only thread that touches output files.
//!
//! - [`ParquetFile`] writes rows with arrow-rs `ArrowWriter`, one row group at a time, under a
//!   temporary name; on [`finish`](ParquetFile::finish) it closes the file (footer), fsyncs it,
//!   renames it into place and fsyncs the directory, so a reader never sees a partial file.
//! - [`run`] is the writer loop: it closes row groups by row count and by age
//!   (`writer.flush_interval`), rotates files by time, rows and bytes, and with
//!   `writer.partition_by` splits every batch into Hive-style partitions ([`Partitioner`]),
//!   keeping at most `writer.max_open_partitions` files open.
//! - [`DeadLetterLog`] appends rejected records and failed requests as NDJSON, rotated by size.
//!
//! Every file carries key-value metadata: [`VERSION_KEY`], [`SOURCE_KEY`] and [`RUN_ID_KEY`].

mod deadletter;
mod parquet;
mod partition;

pub use deadletter::DeadLetterLog;
pub use parquet::{
    file_properties, writer_properties, ParquetFile, SealedFile, FIXED_WIDTH_DICTIONARY_BYTES,
    VERSION_KEY,
};
pub use partition::{escape_value, Partitioner, HIVE_DEFAULT_PARTITION};

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::parquet::file::properties::WriterProperties;
use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::batch::{BodyBatch, RecordsBatch};
use crate::config::WriterConfig;
use crate::error::{Error, Result};
use crate::fsutil::{parent_dir, sync_dir};
use crate::handoff::ToWriter;
use crate::journal::{Journal, RangeSet};
use crate::metrics::live::{QueueId, Registry, Stage, StateGuard, ThreadState};
use crate::stage::Sink;

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
    /// The last finalized output path.
    pub output: Option<std::path::PathBuf>,
    /// The dead-letter file, if anything went to it.
    pub dead_letter_file: Option<std::path::PathBuf>,
}

/// Where output goes, when files rotate, and what metadata they carry.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// The configured output path: the file (or, rotating, the pattern's stem and directory),
    /// or with `writer.partition_by` the dataset's root directory.
    pub out: PathBuf,
    /// Parquet settings.
    pub writer: WriterConfig,
    /// Finalize the open files after this long (files with no rows are not finalized; their
    /// interval just starts again).
    pub rotate: Option<Duration>,
    /// Set (by SIGHUP, say) to make the writer close and re-open the dead-letter file.
    pub reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// What the rows come from, written as [`SOURCE_KEY`] metadata.
    pub source: String,
    /// This run's id ([`new_run_id`]), written as [`RUN_ID_KEY`] metadata.
    pub run_id: String,
    /// The output schema when the layout is fixed: what a file without rows is written with
    /// (an inferred layout's files take the schema of their first rows).
    pub schema: Option<arrow_schema::SchemaRef>,
    /// Whether Parquet files are written at all (off: rows go only to the user sinks).
    pub enabled: bool,
}

impl OutputPlan {
    /// Whether files rotate: by time (`rotate`), rows or bytes; and with a journal, whose runs
    /// add files beside those of earlier runs.
    pub fn rotates(&self) -> bool {
        self.writer.journal
            || self.rotate.is_some()
            || self.writer.rotate_rows.is_some()
            || self.writer.rotate_bytes.is_some()
    }

    /// Whether rows are split into Hive-style partition directories under `out`.
    pub fn partitioned(&self) -> bool {
        !self.writer.partition_by.is_empty()
    }

    /// The path of file number `seq` (unpartitioned): `out` itself without rotation, otherwise
    /// `STEM-YYYYMMDDTHHMMSSZ-NNNNN.EXT` next to it, stamped with the UTC time the file was
    /// started, so names sort by time and never collide within a run.
    pub fn path(&self, seq: u64) -> PathBuf {
        if !self.rotates() {
            return self.out.clone();
        }
        let stem = self
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pinflow".into());
        let ext = self
            .out
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut ts = Vec::with_capacity(32);
        crate::time::format_rfc3339_micros(micros, &mut ts);
        // 2026-11-24T10:00:00.123456Z -> 20261124T100000Z
        let compact: String = String::from_utf8_lossy(&ts[..19])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        self.out
            .with_file_name(format!("{stem}-{compact}Z-{seq:05}{ext}"))
    }

    /// The path of part number `part` of `partition` (a relative directory such as
    /// `service=api/date=2026-11-24`): `out/partition/part-NNNNN.parquet`.
    pub fn partition_path(&self, partition: &str, part: u64) -> PathBuf {
        self.out
            .join(partition)
            .join(format!("part-{part:05}.parquet"))
    }

    /// The writer properties of every file: [`file_properties`] with the source and run id.
    pub fn properties(&self) -> Result<WriterProperties> {
        file_properties(
            &self.writer,
            &[(SOURCE_KEY, &self.source), (RUN_ID_KEY, &self.run_id)],
        )
    }

    /// The first file number from `from` on whose rotated name is not taken: a run started
    /// within the same second as an earlier one (a quick restart, a resumed run) must not
    /// replace its files.
    pub fn free_seq(&self, from: u64) -> u64 {
        let mut seq = from;
        while self.rotates() && self.path(seq).exists() {
            seq += 1;
        }
        seq
    }

    /// Opens unpartitioned file number `seq` (under its temporary name).
    pub fn open(&self, seq: u64) -> Result<ParquetFile> {
        ParquetFile::create(&self.path(seq), self.properties()?, self.schema.clone())
    }

    /// Checks, before anything is fetched, that output can be written. Unpartitioned: opens
    /// and returns file number 1. Partitioned: creates the root directory `out` if it is
    /// missing (its parent must exist) and checks that a file can be created in it.
    pub fn prepare(&self) -> Result<Option<(u64, ParquetFile)>> {
        if !self.partitioned() {
            let seq = self.free_seq(1);
            return self.open(seq).map(|f| Some((seq, f)));
        }
        if !self.out.is_dir() {
            fs::create_dir(&self.out)
                .map_err(|e| Error::output(&self.out, "create directory", e))?;
            sync_dir(parent_dir(&self.out));
        }
        let probe = self
            .out
            .join(format!(".pinflow-probe-{}", std::process::id()));
        File::create(&probe).map_err(|e| Error::output(&self.out, "create a file in", e))?;
        let _ = fs::remove_file(&probe);
        Ok(None)
    }

    /// Creates the directory of `partition` under `out`, one level at a time, fsyncing each
    /// parent of a new directory so the entry survives a crash. Returns the directory.
    fn partition_dir(&self, partition: &str) -> Result<PathBuf> {
        let mut dir = self.out.clone();
        for part in partition.split('/') {
            let parent = dir.clone();
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => sync_dir(&parent),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::output(&dir, "create directory", e)),
            }
        }
        Ok(dir)
    }
}

/// The first part number after every `part-NNNNN.parquet` already in `dir` (1 if none), so a
/// later run adds to a partition instead of replacing its files.
fn next_free_part(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 1;
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let name = name.to_str()?;
            name.strip_prefix("part-")?
                .strip_suffix(".parquet")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(1, |n| n + 1)
}

/// Runs the writer loop until the queue closes, then finalizes every open file and the
/// dead-letter file. `first` is file number 1 of an unpartitioned `output`, opened by the
/// caller ([`OutputPlan::prepare`]) so that an unwritable path fails before anything is fetched.
/// `thread` is this thread's index in `registry`, which receives the write and end-to-end
/// latencies, the row, row-group and file counters, and the thread's state.
///
/// The loop wakes for batches and for deadlines: the rotation interval, and the oldest open
/// row group reaching `writer.flush_interval`, which closes it even when no batch arrives.
///
/// On a write error (disk full, file too large, ...) every open temporary file is removed (no
/// partial file ever appears under a final name), files finalized before stay valid, and the
/// error names the path; the caller then stops the pipeline.
///
/// With a `journal` ([`crate::journal`]), files are finalized only at checkpoints, all open
/// files together, and only between batches, so that every work item's rows are in the files
/// of exactly one checkpoint: `rotate_rows` and `rotate_bytes` are then reached or passed by
/// whole batches, and `max_open_partitions` may be passed within one batch.
pub fn run(
    rx: Receiver<ToWriter>,
    output: &OutputPlan,
    parts: WriterParts,
    sinks_back: &parking_lot::Mutex<Vec<Box<dyn Sink>>>,
    registry: &Registry,
    thread: usize,
) -> Result<WriterReport> {
    let WriterParts {
        first,
        mut dead,
        journal,
        sinks,
        prepare,
    } = parts;
    let guard = StateGuard::new(registry, thread);
    let mut w = Writer {
        sinks,
        journal,
        items: RangeSet::default(),
        output,
        partitioner: if output.partitioned() {
            Some(Partitioner::new(&output.writer.partition_by)?)
        } else {
            None
        },
        slots: HashMap::new(),
        seq: 0,
        next_part: HashMap::new(),
        tick: 0,
        report: WriterReport::default(),
        pending: HashMap::new(),
        next_batch: 0,
        finalized: 0,
        failure_log: FailureLog::default(),
        registry,
        prepare,
        prepare_failed: None,
    };
    if let Some((seq, file)) = first {
        w.seq = seq;
        w.slots.insert(String::new(), Slot::new(file));
    }
    let mut result = w.run_loop(&rx, &mut dead, thread);
    if result.is_ok() {
        for s in &mut w.sinks {
            let name = s.name().to_string();
            if let Err(e) = crate::stage::guarded("sink", &name, || s.finish()) {
                result = Err(e);
                break;
            }
        }
    }
    *sinks_back.lock() = std::mem::take(&mut w.sinks);
    if let Err(e) = result {
        w.abort_all();
        let _ = dead.finish();
        tracing::error!(error = %e, "writer failed; stopping the pipeline");
        return Err(e);
    }
    w.failure_log.report_suppressed();
    let mut report = std::mem::take(&mut w.report);
    report.dead_letter_file = dead.finish()?;
    guard.finish();
    // A short-path batch failed to parse or compute: the files are complete, as after a
    // failed parse thread, and the run ends with that stage's error.
    if let Some(e) = w.prepare_failed.take() {
        return Err(e);
    }
    Ok(report)
}

/// What the writer thread owns besides its queue and [`OutputPlan`].
pub struct WriterParts {
    /// File number 1 and its number, opened before anything is fetched (unpartitioned).
    pub first: Option<(u64, ParquetFile)>,
    /// The dead-letter file.
    pub dead: DeadLetterLog,
    /// The resume journal, when `writer.journal` is on.
    pub journal: Option<Journal>,
    /// User sinks; handed back through `sinks_back` when the loop ends, for the next run.
    pub sinks: Vec<Box<dyn Sink>>,
    /// Turns the short path's body batches ([`ToWriter::Bodies`]) into rows: parse and
    /// compute, as a parse thread would. Dropped when the loop ends. `None`: no short path.
    pub prepare: Option<Prepare>,
}

/// Parses and computes a body batch on the writer thread (the short path).
pub type Prepare = Box<dyn FnMut(BodyBatch) -> Result<RecordsBatch> + Send>;

/// One open Parquet file and what the writer knows about it.
struct Slot {
    file: ParquetFile,
    /// Rows written to it.
    rows: u64,
    /// Row groups closed (and counted) before the file is finished.
    closed_groups: u64,
    /// When it was last written, in writer ticks (for least-recently-used eviction).
    last_used: u64,
    /// Batches (by id) with rows in this file not yet counted visible.
    pending: Vec<u64>,
}

impl Slot {
    fn new(file: ParquetFile) -> Slot {
        Slot {
            file,
            rows: 0,
            closed_groups: 0,
            last_used: 0,
            pending: Vec::new(),
        }
    }
}

/// Batches not yet wholly in closed row groups, by id: when their oldest response completed,
/// and how many holds remain (one per file with some of their rows in an open row group, and
/// one while the batch is being written).
type Pending = HashMap<u64, (Instant, u32)>;

/// Drops one hold on batch `id`; the last one records its end-to-end latency (response
/// complete → every row in a closed row group).
fn release(pending: &mut Pending, registry: &Registry, id: u64) {
    if let Some(p) = pending.get_mut(&id) {
        p.1 -= 1;
        if p.1 == 0 {
            let (oldest, _) = pending.remove(&id).expect("present");
            registry.latency(Stage::EndToEnd).record(oldest.elapsed());
        }
    }
}

struct Writer<'a> {
    /// User sinks, after the Parquet files.
    sinks: Vec<Box<dyn Sink>>,
    /// The resume journal, when on.
    journal: Option<Journal>,
    /// Items written since the last checkpoint.
    items: RangeSet,
    output: &'a OutputPlan,
    partitioner: Option<Partitioner>,
    /// Open files by partition directory (`""` when unpartitioned).
    slots: HashMap<String, Slot>,
    /// Number of the last unpartitioned file opened.
    seq: u64,
    /// The next part number of each partition seen.
    next_part: HashMap<String, u64>,
    tick: u64,
    report: WriterReport,
    pending: Pending,
    next_batch: u64,
    /// Files finalized since the dead-letter file was last made durable.
    finalized: u64,
    failure_log: FailureLog,
    registry: &'a Registry,
    prepare: Option<Prepare>,
    /// The first error of `prepare`: a parse or compute failure, not the writer's. The
    /// writer goes on draining its queue and finishes its files, as it does when a parse or
    /// compute thread fails, and the run then ends with this error.
    prepare_failed: Option<Error>,
}

impl Writer<'_> {
    fn run_loop(
        &mut self,
        rx: &Receiver<ToWriter>,
        dead: &mut DeadLetterLog,
        thread: usize,
    ) -> Result<()> {
        let mut period = Instant::now();
        loop {
            self.registry.set_state(thread, ThreadState::WaitingInput);
            let next = match self.deadline(period) {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            self.registry.set_state(thread, ThreadState::Working);
            if self.output.reopen.swap(false, Relaxed) {
                // SIGHUP (logrotate): close the dead-letter file; the next entry re-creates it.
                dead.finish()?;
            }
            match next {
                Ok(input) => {
                    self.registry.set_queue_depth(QueueId::Output, rx.len());
                    if let Some(batch) = self.rows_of(input)? {
                        self.write_batch(&batch, dead)?;
                        if self.journal.is_some() {
                            for &seq in &batch.items {
                                self.items.insert(seq);
                            }
                            if self.checkpoint_due() {
                                self.checkpoint(dead)?;
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // (A checkpoint, like a finalized file, makes the dead letters durable itself.)
            self.failure_log.tick();
            self.flush_aged()?;
            if let Some(every) = self.output.rotate {
                if period.elapsed() >= every {
                    period = Instant::now();
                    if self.journal.is_some() {
                        self.checkpoint(dead)?;
                    } else {
                        self.finalize_all()?;
                    }
                }
            }
            if self.finalized > 0 {
                // Make the dead letters of the finished files durable with them.
                self.finalized = 0;
                dead.finish()?;
            }
        }
        if self.journal.is_some() {
            return self.checkpoint(dead);
        }
        self.finish_all()
    }

    /// Journal mode, after a batch: whether a file reached its rotation size or too many
    /// partition files are open.
    fn checkpoint_due(&self) -> bool {
        let w = &self.output.writer;
        self.slots.len() > w.max_open_partitions.max(1)
            || self.slots.values().any(|s| {
                w.rotate_rows.is_some_and(|m| s.rows >= m)
                    || w.rotate_bytes.is_some_and(|m| s.file.estimated_size() >= m)
            })
    }

    /// Journal mode: seals every open file with rows, makes the dead letters durable, commits
    /// the files and the items written since the last checkpoint to the journal, then renames
    /// the files into place. A crash before the commit leaves only temporary files (deleted by
    /// the next run, which fetches those items again); after it, the next run finishes the
    /// renames.
    fn checkpoint(&mut self, dead: &mut DeadLetterLog) -> Result<()> {
        let mut keys: Vec<String> = self.slots.keys().cloned().collect();
        keys.sort();
        let mut sealed = Vec::new();
        for key in keys {
            let slot = self.slots.remove(&key).expect("listed above");
            if slot.rows == 0 {
                slot.file.abort();
                continue;
            }
            match slot.file.seal() {
                Ok(s) => sealed.push((s, slot.closed_groups, slot.pending)),
                Err(e) => {
                    sealed.into_iter().for_each(|(s, _, _)| s.discard());
                    return Err(e);
                }
            }
        }
        if sealed.is_empty() && self.items.is_empty() {
            return Ok(());
        }
        let files: Vec<(PathBuf, PathBuf)> = sealed
            .iter()
            .map(|(s, _, _)| (s.tmp.clone(), s.path.clone()))
            .collect();
        let committed = dead.finish().and_then(|_| {
            self.journal
                .as_mut()
                .expect("journal mode")
                .commit(&files, &self.items)
        });
        if let Err(e) = committed {
            sealed.into_iter().for_each(|(s, _, _)| s.discard());
            return Err(e);
        }
        self.items.clear();
        for (s, closed_groups, pending) in sealed {
            let row_groups = s.row_groups;
            let path = s.publish()?;
            self.count_finalized(path, row_groups, closed_groups, pending);
        }
        Ok(())
    }

    /// The rows of what arrived: as they are, or parsed and computed here (the short path).
    /// `None` when that failed (see `prepare_failed`).
    fn rows_of(&mut self, input: ToWriter) -> Result<Option<RecordsBatch>> {
        let bodies = match input {
            ToWriter::Rows(batch) => return Ok(Some(batch)),
            // Every notice finds its batch (see `Mailbox::take`); an empty mailbox would only
            // mean nothing to write.
            ToWriter::Bodies(mailbox) => match mailbox.take() {
                Some(bodies) => bodies,
                None => return Ok(None),
            },
        };
        let Some(prepare) = &mut self.prepare else {
            return Err(Error::Thread {
                thread: "pinflow-writer".into(),
                why: "a body batch reached a writer without a parser".into(),
            });
        };
        match prepare(bodies) {
            Ok(batch) => Ok(Some(batch)),
            Err(e) => {
                // (`prepare` has already stopped the run and closed the short path.)
                tracing::error!(error = %e, "stopping the pipeline");
                self.prepare_failed.get_or_insert(e);
                Ok(None)
            }
        }
    }

    /// When the loop must wake even without a batch: the end of the rotation period, or the
    /// oldest open row group reaching its maximum age. `None`: only for a batch.
    fn deadline(&self, period: Instant) -> Option<Instant> {
        let max_age = self.output.writer.flush_interval;
        self.slots
            .values()
            .filter_map(|s| s.file.open_since().map(|t| t + max_age))
            .chain(self.output.rotate.map(|every| period + every))
            .min()
    }

    fn write_batch(&mut self, batch: &RecordsBatch, dead: &mut DeadLetterLog) -> Result<()> {
        if let Some(oldest) = batch.oldest {
            self.registry
                .latency(Stage::Handoff)
                .record(oldest.elapsed());
        }
        for d in &batch.dead_letters {
            dead.write(d)?;
            self.failure_log.log(d);
        }
        if !batch.dead_letters.is_empty() {
            // One write per batch: dead letters show up while the run goes on.
            dead.flush()?;
        }
        self.report.dead_letters += batch.dead_letters.len() as u64;
        let Some(rows) = &batch.rows else {
            return Ok(());
        };
        let started = Instant::now();
        let id = self.next_batch;
        self.next_batch += 1;
        let tracked = batch.oldest.map(|oldest| {
            self.pending.insert(id, (oldest, 1));
            id
        });
        if self.output.enabled {
            let parts = match &self.partitioner {
                None => vec![(String::new(), rows.clone())],
                Some(p) => p.split(rows)?,
            };
            for (key, part) in &parts {
                self.write_rows(key, part, tracked)?;
            }
        }
        for s in &mut self.sinks {
            let name = s.name().to_string();
            crate::stage::guarded("sink", &name, || s.write(rows))?;
        }
        self.registry
            .latency(Stage::Write)
            .record(started.elapsed());
        let n = rows.num_rows() as u64;
        self.report.rows += n;
        self.registry.records_written.fetch_add(n, Relaxed);
        if let Some(id) = tracked {
            release(&mut self.pending, self.registry, id);
        }
        Ok(())
    }

    /// Appends `rows` to the file of partition `key`, opening it if needed, and finalizes it
    /// when it reaches `rotate_rows` (splitting the rows exactly there) or `rotate_bytes`.
    fn write_rows(&mut self, key: &str, rows: &RecordBatch, id: Option<u64>) -> Result<()> {
        let n = rows.num_rows();
        let (max_rows, max_bytes) = (
            self.output.writer.rotate_rows,
            self.output.writer.rotate_bytes,
        );
        let mut offset = 0;
        while offset < n {
            if !self.slots.contains_key(key) {
                self.open_slot(key)?;
            }
            self.tick += 1;
            let slot = self.slots.get_mut(key).expect("opened above");
            slot.last_used = self.tick;
            // With a journal a batch is never split: files end between batches (checkpoints).
            let room = match max_rows {
                Some(m) if self.journal.is_none() => m.saturating_sub(slot.rows).max(1),
                _ => u64::MAX,
            };
            let take = (n - offset).min(usize::try_from(room).unwrap_or(usize::MAX));
            let part = if take == n {
                rows.clone()
            } else {
                rows.slice(offset, take)
            };
            let (closed, open_rows) = slot.file.write(&part)?;
            slot.rows += take as u64;
            if let Some(id) = id {
                if slot.pending.last() != Some(&id) {
                    slot.pending.push(id);
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.1 += 1;
                    }
                }
            }
            if closed > 0 {
                self.registry.row_groups.fetch_add(closed, Relaxed);
                slot.closed_groups += closed;
                // The rows that filled a row group may have left some in the next one: that
                // batch stays pending here until they are in a closed group too.
                let keep = match id {
                    Some(id) if open_rows && slot.pending.last() == Some(&id) => slot.pending.pop(),
                    _ => None,
                };
                for done in std::mem::take(&mut slot.pending) {
                    release(&mut self.pending, self.registry, done);
                }
                slot.pending.extend(keep);
            }
            offset += take;
            let full = max_rows.is_some_and(|m| slot.rows >= m)
                || max_bytes.is_some_and(|m| slot.file.estimated_size() >= m);
            if full && self.journal.is_none() {
                self.finalize_slot(key)?;
            }
        }
        Ok(())
    }

    /// Opens the next file for partition `key`; partitioned, first finalizes the least
    /// recently used file when `max_open_partitions` are open.
    fn open_slot(&mut self, key: &str) -> Result<()> {
        let file = if self.partitioner.is_none() {
            self.seq = self.output.free_seq(self.seq + 1);
            self.output.open(self.seq)?
        } else {
            // (With a journal the bound is enforced by a checkpoint after the batch.)
            if self.journal.is_none()
                && self.slots.len() >= self.output.writer.max_open_partitions.max(1)
            {
                let lru = self
                    .slots
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
                    .expect("at least one file is open");
                self.finalize_slot(&lru)?;
            }
            let dir = self.output.partition_dir(key)?;
            let part = match self.next_part.get(key) {
                Some(&n) => n,
                None => next_free_part(&dir),
            };
            self.next_part.insert(key.to_string(), part + 1);
            ParquetFile::create(
                &self.output.partition_path(key, part),
                self.output.properties()?,
                self.output.schema.clone(),
            )?
        };
        self.slots.insert(key.to_string(), Slot::new(file));
        Ok(())
    }

    /// Finalizes the file of `key`: footer, fsync, rename, directory fsync; counts it.
    fn finalize_slot(&mut self, key: &str) -> Result<()> {
        let slot = self.slots.remove(key).expect("finalizing an open file");
        let (path, row_groups) = slot.file.finish()?;
        self.count_finalized(path, row_groups, slot.closed_groups, slot.pending);
        Ok(())
    }

    /// Counts a finalized file in the report and the live metrics.
    fn count_finalized(&mut self, path: PathBuf, row_groups: u64, closed: u64, pending: Vec<u64>) {
        self.registry
            .row_groups
            .fetch_add(row_groups.saturating_sub(closed), Relaxed);
        self.registry.files_finalized.fetch_add(1, Relaxed);
        for id in pending {
            release(&mut self.pending, self.registry, id);
        }
        self.report.row_groups += row_groups;
        self.report.files += 1;
        self.report.output = Some(path);
        self.finalized += 1;
    }

    /// Closes every row group whose oldest row has waited `flush_interval`.
    fn flush_aged(&mut self) -> Result<()> {
        let max_age = self.output.writer.flush_interval;
        for slot in self.slots.values_mut() {
            let aged = slot
                .file
                .open_since()
                .is_some_and(|t| t.elapsed() >= max_age);
            if aged && slot.file.flush_row_group()? {
                self.registry.row_groups.fetch_add(1, Relaxed);
                slot.closed_groups += 1;
                for id in std::mem::take(&mut slot.pending) {
                    release(&mut self.pending, self.registry, id);
                }
            }
        }
        Ok(())
    }

    /// Time rotation: finalizes every open file that has rows (in key order).
    fn finalize_all(&mut self) -> Result<()> {
        let mut keys: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.rows > 0)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for key in keys {
            self.finalize_slot(&key)?;
        }
        Ok(())
    }

    /// The end of the stream: finalizes every file with rows. An unpartitioned run that wrote
    /// no rows at all still finalizes its (empty) file, so `out` always exists afterwards; other
    /// empty files are removed.
    fn finish_all(&mut self) -> Result<()> {
        if self.partitioner.is_none() && self.report.files == 0 {
            if let Some(slot) = self.slots.get_mut("") {
                // Counted as a file with rows of its own, however many.
                slot.rows = slot.rows.max(1);
            }
        }
        self.finalize_all()?;
        for (_, slot) in self.slots.drain() {
            slot.file.abort();
        }
        Ok(())
    }

    /// A failed run: removes every temporary file.
    fn abort_all(&mut self) {
        for (_, slot) in self.slots.drain() {
            slot.file.abort();
        }
    }
}

/// Failure lines logged per second at most; the rest are counted and summarized, so a flood of
/// bad records cannot fill the disk with logs (every one is in the dead-letter file anyway).
pub const FAILURE_LINES_PER_SEC: u32 = 10;

/// One log line per failed request or dead-lettered record, rate-limited.
struct FailureLog {
    window: Instant,
    in_window: u32,
    suppressed: u64,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            window: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }
}

impl FailureLog {
    /// Starts a new one-second window when the current one is over, first saying how many
    /// lines it suppressed. Called per failure and per turn of the writer loop, so the count
    /// appears even when no failure follows.
    fn tick(&mut self) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.report_suppressed();
            self.window = Instant::now();
            self.in_window = 0;
        }
    }

    /// Logs how many failure lines were left out since the last report (at the end of a run too).
    fn report_suppressed(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                "more failures than {FAILURE_LINES_PER_SEC} per second; the others are only in the dead-letter file"
            );
            self.suppressed = 0;
        }
    }

    fn log(&mut self, d: &crate::batch::DeadLetter) {
        self.tick();
        if self.in_window < FAILURE_LINES_PER_SEC {
            self.in_window += 1;
            if d.kind == "request" {
                tracing::warn!(url = %d.url, reason = %d.reason, attempts = d.attempts, "request failed");
            } else {
                tracing::warn!(kind = d.kind, url = %d.url, reason = %d.reason, "dead letter");
            }
        } else {
            self.suppressed += 1;
        }
    }
}

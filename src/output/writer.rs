//! The writer thread: the one thread that touches output. It takes rows from its queue (or
//! body batches by the short path, which it parses itself), writes dead letters, hands rows to
//! the [`Output`] and then to the user's sinks, drives the output's deadlines and rotation,
//! and, with a journal, its checkpoints.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::windows::{Reorder, WindowStage};
use super::{DeadLetterLog, Holds, LocalParquet, Output, OutputPlan, ParquetFile, WriterReport};
use arrow_array::{BooleanArray, RecordBatch};

use crate::batch::{BodyBatch, DeadLetter, RecordsBatch};
use crate::error::{Error, Result};
use crate::handoff::ToWriter;
use crate::journal::{Journal, RangeSet};
use crate::kafka::offsets::{MessageOutcomes, OffsetRanges};
use crate::metrics::live::{QueueId, Registry, Stage, StateGuard, ThreadState};
use crate::plan::Role;
use crate::stage::Sink;

/// Runs the writer loop until the queue closes, then finishes the output and the dead-letter
/// file. `first` is file number 1 of an unpartitioned `output`, opened by the
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
    plan: &OutputPlan,
    parts: WriterParts,
    sinks_back: &parking_lot::Mutex<Vec<Box<dyn Sink>>>,
    registry: &Registry,
    thread: usize,
) -> Result<WriterReport> {
    let WriterParts {
        first,
        mut dead,
        mut journal,
        sinks,
        prepare,
        window,
        window_shards,
        records,
        stop,
        since_field,
        kafka,
        in_source_order,
    } = parts;
    let guard = StateGuard::new(registry, thread);
    // `window.records`: the records' own plan lives as long as the writer's output.
    let (records_plan, records_first) = match records {
        Some(r) => (Some(r.plan), r.first),
        None => (None, None),
    };
    let output: Box<dyn Output + '_> = match kafka {
        Some(target) => kafka_output(target, registry, stop.clone())?,
        None => {
            let local = LocalParquet::new(plan, registry, journal.is_some(), first)?;
            let main: Box<dyn Output + '_> = match &plan.s3 {
                None => Box::new(local),
                #[cfg(feature = "s3")]
                Some(target) => Box::new(super::s3::S3Output::new(
                    local,
                    plan.staging_root().to_path_buf(),
                    target.clone(),
                    &plan.run_id,
                    registry,
                    journal.is_some(),
                    stop.clone(),
                )?),
                #[cfg(not(feature = "s3"))]
                Some(_) => {
                    return Err(Error::config(
                        "out",
                        "s3:// output needs the `s3` cargo feature",
                    ))
                }
            };
            match &records_plan {
                Some(rp) => Box::new(super::Tee {
                    main,
                    records: Box::new(LocalParquet::new(
                        rp,
                        registry,
                        journal.is_some(),
                        records_first,
                    )?),
                    records_written: 0,
                }),
                None => main,
            }
        }
    };
    // A resumed run goes on from the window state its last checkpoint committed (checked
    // against this run's windows when the journal was opened, before anything was fetched).
    let window_key = window.as_deref().map(super::window_state::key);
    let mut window = window.map(|spec| WindowStage::new(spec, window_shards));
    let reorder = (window.is_some() || in_source_order).then(Reorder::default);
    if let Some(j) = &mut journal {
        let saved = j.take_state(window_key.as_deref())?;
        if let (Some(w), Some(saved)) = (&mut window, saved) {
            w.resume(saved)?;
        }
    }
    let mut w = Writer {
        output,
        sinks,
        journal,
        items: RangeSet::default(),
        kafka_uncommitted: MessageOutcomes::default(),
        rotate: plan.rotate,
        reopen: &plan.reopen,
        holds: Holds::new(registry),
        rows: 0,
        dead_letters: 0,
        refused: 0,
        undelivered: 0,
        source: plan.source.clone(),
        next_batch: 0,
        failure_log: FailureLog::default(),
        registry,
        prepare,
        prepare_failed: None,
        window,
        window_key,
        reorder,
        stop,
        window_rows: 0,
        since_field,
    };
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
        w.output.abort();
        let _ = dead.finish();
        tracing::error!(error = %e, "writer failed; stopping the pipeline");
        return Err(e);
    }
    w.failure_log.report_suppressed();
    let out = w.output.report();
    let report = WriterReport {
        rows: w.rows,
        row_groups: out.row_groups,
        files: out.files,
        dead_letters: w.dead_letters,
        records_refused: w.refused,
        records_undelivered: w.undelivered,
        output: out.output,
        dead_letter_file: dead.finish()?,
        stage_failed: w.prepare_failed.take(),
        window_rows: w.window_rows,
        records_windowed: w.window.as_ref().map_or(0, |s| s.records_windowed),
        window_rejected: w
            .window
            .as_mut()
            .map(|s| std::mem::take(&mut s.rejected_by_class))
            .unwrap_or_default(),
        records_also: w
            .output
            .records_report()
            .map(|(n, report)| (n, report.output)),
    };
    guard.finish();
    // When the output was complete, apart from the process's teardown (what
    // tools/kafka-bench.sh times a run to).
    tracing::debug!(
        rows = report.rows,
        files = report.files,
        "writer finished: the output is complete"
    );
    Ok(report)
}

/// `window.records`: where the records go as well, besides the window rows.
pub struct RecordsOutput {
    /// Their files' plan (path, rotation, schema).
    pub plan: OutputPlan,
    /// File number 1 and its number, opened before anything is fetched.
    pub first: Option<(u64, ParquetFile)>,
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
    /// Time windows, when on: the rows go to the window operator, in source order, and its
    /// window rows to the output and the sinks (see `windows.rs`).
    pub window: Option<std::sync::Arc<crate::window::WindowSpec>>,
    /// With `window.threads` > 1: the channels to the window threads, which hold the keys'
    /// windows (see [`crate::window::sharded`]); empty: the writer runs the one operator.
    pub window_shards: Vec<crate::window::sharded::ShardLink>,
    /// `window.records`: the records' own output (its plan, and its first file when opened
    /// before anything is fetched).
    pub records: Option<RecordsOutput>,
    /// The pipeline's stop flag. With windows and a journal, a stopped run (SIGTERM) commits
    /// its open windows in the journal's state instead of writing them early: the next run of
    /// the same command goes on with them and writes each window once, whole, as an
    /// uninterrupted run would. `None`: a stop writes them (as without a journal).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// `fetch.since_field`: the column whose highest value among the rows taken raises the
    /// registry's `{since}` position ([`crate::metrics::live::SincePosition`]), and with a
    /// journal is committed with each checkpoint.
    pub since_field: Option<String>,
    /// `--out kafka://...`: the rows go to this Kafka topic instead of Parquet files.
    pub kafka: Option<crate::kafka::KafkaTarget>,
    /// Take the batches in source order (`windows.rs`'s `Reorder`) even without windows: for a Kafka
    /// source with the journal. Side-by-side parse threads finish batches out of order, and a
    /// file could then hold a partition's later messages while an earlier one was not yet in
    /// any file; the group's committed offset, which covers only a partition's unbroken start,
    /// then lagged behind the output, and another member taking the partition after a kill -9
    /// read those later messages again.
    pub in_source_order: bool,
}

/// Parses and computes a body batch on the writer thread (the short path).
pub type Prepare = Box<dyn FnMut(BodyBatch) -> Result<RecordsBatch> + Send>;

struct Writer<'a> {
    /// Where the rows go.
    output: Box<dyn Output + 'a>,
    /// User sinks, after the output.
    sinks: Vec<Box<dyn Sink>>,
    /// The resume journal, when on.
    journal: Option<Journal>,
    /// Items written since the last checkpoint.
    items: RangeSet,
    /// The Kafka source's messages taken since the last checkpoint, counted in the
    /// per-partition ledger once it commits them.
    kafka_uncommitted: MessageOutcomes,
    /// Finalize (or, with a journal, checkpoint) every this long.
    rotate: Option<Duration>,
    /// Set to close and re-open the dead-letter file (SIGHUP).
    reopen: &'a std::sync::atomic::AtomicBool,
    /// Batches not yet wholly durable, for their end-to-end latency.
    holds: Holds<'a>,
    rows: u64,
    dead_letters: u64,
    /// Rows the output refused, dead-lettered here (see [`Output::write`]).
    refused: u64,
    /// Rows a deferred output could not deliver, dead-lettered here (see `settle`).
    undelivered: u64,
    /// What the rows come from: the `url` of the dead letters of refused rows, whose own
    /// URL is no longer known.
    source: String,
    next_batch: u64,
    failure_log: FailureLog,
    registry: &'a Registry,
    prepare: Option<Prepare>,
    /// The first error of `prepare`: a parse or compute failure, not the writer's. The
    /// writer goes on draining its queue and finishes its files, as it does when a parse or
    /// compute thread fails, and the run then ends with this error.
    prepare_failed: Option<Error>,
    /// Time windows, when on. A checkpoint saves their state ([`WindowStage::snapshot`]).
    window: Option<WindowStage>,
    /// What the window state a checkpoint saves belongs to (`window_state::key`).
    window_key: Option<String>,
    /// Batches put back in source order, with windows and with
    /// [`WriterParts::in_source_order`]; `None`: taken as they come.
    reorder: Option<Reorder>,
    /// See [`WriterParts::stop`].
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Window rows written (the records they aggregate are counted in the window stage).
    window_rows: u64,
    /// See [`WriterParts::since_field`].
    since_field: Option<String>,
}

/// How often a writer with a journal and no batch coming looks for a checkpoint a source
/// asked for.
const ASKED_CHECKPOINT_POLL: Duration = Duration::from_millis(50);

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
            if self.reopen.swap(false, Relaxed) {
                // SIGHUP (logrotate): close the dead-letter file; the next entry re-creates it.
                dead.finish()?;
            }
            match next {
                Ok(input) => {
                    self.registry.set_queue_depth(QueueId::Output, rx.len());
                    let mut ready = Vec::new();
                    if let Some(batch) = self.rows_of(input, &mut ready)? {
                        match &mut self.reorder {
                            // Windows, and Kafka under the journal: in source order.
                            Some(r) => r.put(batch, &mut ready),
                            None => ready.push(batch),
                        }
                    }
                    for batch in ready {
                        self.take_batch(&batch, dead)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.journal.is_some()
                && !self.items.is_empty()
                && self
                    .registry
                    .committed
                    .asked_and_held(|lo, hi| self.items.covers(lo, hi))
            {
                // A source waits for these items (a Kafka revocation): now, not at the next
                // rotation.
                tracing::debug!("checkpoint asked for by the source");
                self.checkpoint(dead)?;
            }
            self.tick_windows(dead)?;
            // (A checkpoint, like a finalized file, makes the dead letters durable itself.)
            self.failure_log.tick();
            self.output.flush_aged(&mut self.holds)?;
            self.settle(dead)?;
            if let Some(every) = self.rotate {
                if period.elapsed() >= every {
                    period = Instant::now();
                    if self.journal.is_some() {
                        self.checkpoint(dead)?;
                    } else {
                        self.output.finalize_all(&mut self.holds)?;
                    }
                }
            }
            if self.output.take_finalized() > 0 {
                // Make the dead letters of the finished files durable with them.
                dead.finish()?;
            }
        }
        // End of input, or a stop (the stages drain, then the queue closes): what still waits
        // for an earlier batch (lost with a failed stage) goes in order, then every open
        // window is written.
        if let Some(r) = &mut self.reorder {
            let mut ready = Vec::new();
            r.drain(&mut ready);
            for batch in ready {
                self.take_batch(&batch, dead)?;
            }
        }
        let stopped = self.stop.as_ref().is_some_and(|s| s.load(Relaxed));
        if self.journal.is_some() && stopped {
            // Kept for the next run (see `WriterParts::stop`), committed by the checkpoint below.
            if let Some(open) = self.window.as_ref().and_then(WindowStage::open) {
                tracing::info!(
                    open,
                    "stopped: the open windows are kept in the journal's state; the next run \
                     of the same command goes on with them"
                );
            }
        } else if let Some(Some(rows)) = self.window.as_mut().map(WindowStage::flush).transpose()? {
            self.write_window_rows(&rows, dead)?;
        }
        if let Some(w) = &self.window {
            w.publish(self.registry);
        }
        if self.journal.is_some() {
            return self.checkpoint(dead);
        }
        self.output.finish(&mut self.holds)?;
        self.settle(dead)
    }

    /// A [`deferred`](Output::deferred) output's rows that settled: the acknowledged ones
    /// counted written, the failed ones dead-lettered with their reason (records a parser
    /// counted, dead-lettered here).
    fn settle(&mut self, dead: &mut DeadLetterLog) -> Result<()> {
        let settled = self.output.take_settled();
        self.rows += settled.delivered;
        self.registry
            .records_written
            .fetch_add(settled.delivered, Relaxed);
        if settled.failed.is_empty() {
            return Ok(());
        }
        for (excerpt, reason) in settled.failed.iter() {
            let d = DeadLetter {
                kind: "record",
                url: self.source.clone(),
                reason: reason.clone(),
                excerpt: excerpt.clone(),
                attempts: 0,
            };
            dead.write(&d)?;
            self.failure_log.log(&d);
        }
        dead.flush()?;
        let n = settled.failed.len() as u64;
        self.dead_letters += n;
        self.undelivered += n;
        self.registry
            .add_parsed(0, n, &[(DELIVERY_FAILED_CLASS.to_string(), n)]);
        Ok(())
    }

    /// One batch, in order: its rows and dead letters written (or, with windows, its rows fed
    /// to the operator), its items noted for the journal's next checkpoint.
    fn take_batch(&mut self, batch: &RecordsBatch, dead: &mut DeadLetterLog) -> Result<()> {
        // Read before anything of the batch is written: a column that cannot be a position
        // stops the run here, with nothing half done.
        let high = match (&self.since_field, &batch.rows) {
            (Some(field), Some(rows)) => since_high(rows, field)?,
            _ => None,
        };
        self.write_batch(batch, dead)?;
        // Only now, once its rows are taken (written, dead-lettered, or held by the windows),
        // may the next pass ask from past them.
        if let Some((value, timestamp)) = high {
            self.registry.since.advance(value, timestamp);
        }
        // The per-partition ledger: at the checkpoint that commits the batch, with a journal.
        match self.journal.is_some() {
            true => self.kafka_uncommitted.merge(&batch.kafka),
            false => count_kafka_messages(self.registry, &batch.kafka),
        }
        if self.journal.is_some() {
            for &seq in &batch.items {
                self.items.insert(seq);
            }
            if self.output.checkpoint_due() {
                self.checkpoint(dead)?;
            }
        }
        Ok(())
    }

    /// Windows: the processing-time step (`window.idle`), when due.
    fn tick_windows(&mut self, dead: &mut DeadLetterLog) -> Result<()> {
        let Some(w) = &mut self.window else {
            return Ok(());
        };
        let now = Instant::now();
        if w.deadline().is_some_and(|at| at <= now) {
            if let Some(rows) = w.tick(now)? {
                self.write_window_rows(&rows, dead)?;
            }
            if let Some(w) = &self.window {
                w.publish(self.registry);
            }
        }
        Ok(())
    }

    /// Journal mode: seals every open file with rows, has the sinks make their rows durable
    /// ([`Sink::flush`]), makes the dead letters durable, commits the files and the items
    /// written since the last checkpoint to the journal, then renames
    /// the files into place. A crash before the commit leaves only temporary files (deleted by
    /// the next run, which fetches those items again); after it, the next run finishes the
    /// renames.
    fn checkpoint(&mut self, dead: &mut DeadLetterLog) -> Result<()> {
        let files = self.output.seal()?;
        if files.is_empty() && self.items.is_empty() {
            return Ok(());
        }
        crate::failpoint::hit("writer.before_commit");
        // The sinks' rows too: committed items are not read again.
        if let Err(e) = self.flush_sinks() {
            self.output.discard_sealed();
            return Err(e);
        }
        // `{since}`: everything taken so far is in these files or earlier ones.
        if let (Some(field), Some((value, timestamp))) =
            (&self.since_field, self.registry.since.get())
        {
            self.journal
                .as_mut()
                .expect("journal mode")
                .set_since(crate::journal::SavedSince {
                    field: field.clone(),
                    timestamp,
                    value,
                });
        }
        // With windows, their state goes with exactly these files and items.
        let bytes = self.window.as_mut().map(WindowStage::state).transpose()?;
        let state = self
            .window_key
            .as_deref()
            .zip(bytes.as_deref())
            .map(|(key, bytes)| crate::journal::State { key, bytes });
        let committed = dead.finish().and_then(|_| {
            self.journal
                .as_mut()
                .expect("journal mode")
                .commit_with_state(&files, &self.items, state)
        });
        if let Err(e) = committed {
            self.output.discard_sealed();
            return Err(e);
        }
        let journal = self.journal.as_mut().expect("journal mode");
        let number = journal.last_checkpoint();
        // Durable now: a source that answers its clients (HTTP receive) may say so, and a
        // Kafka source commits the offsets to its group.
        let pending = journal.unconfirmed().is_some();
        self.registry
            .committed
            .add_checkpoint(self.items.ranges(), number, pending);
        if pending {
            // Two-phase (a Kafka source): the checkpoint stands once the group holds its
            // offsets; a run that stops before leaves it pending for the next to decide.
            crate::failpoint::hit("writer.pending");
            let registry = self.registry;
            let source_alive = || {
                registry.thread_index(Role::Fetch).is_some_and(|t| {
                    !matches!(
                        registry.thread_status(t).0,
                        ThreadState::Finished | ThreadState::Failed
                    )
                })
            };
            let confirmed = registry
                .committed
                .wait_landed(number, source_alive)
                .map_err(|why| Error::Journal {
                    path: journal.path().to_path_buf(),
                    line: None,
                    why: format!(
                        "checkpoint {number} stays pending: {why}; the next run keeps or \
                         undoes it by what the group holds"
                    ),
                })
                .and_then(|()| {
                    crate::failpoint::hit("writer.landed");
                    journal.confirm()
                });
            if let Err(e) = confirmed {
                self.output.keep_sealed();
                return Err(e);
            }
        }
        self.items.clear();
        count_kafka_messages(self.registry, &self.kafka_uncommitted);
        self.kafka_uncommitted.clear();
        crate::failpoint::hit("writer.after_commit");
        self.output.publish_sealed(&mut self.holds)
    }

    /// Asks every sink to make what it was given durable ([`Sink::flush`]).
    fn flush_sinks(&mut self) -> Result<()> {
        for s in &mut self.sinks {
            let name = s.name().to_string();
            crate::stage::guarded("sink", &name, || s.flush())?;
        }
        Ok(())
    }

    /// The rows of what arrived: as they are, or parsed and computed here (the short path).
    /// `None` when that failed (see `prepare_failed`); with windows, the batch's number is then
    /// skipped, and batches it released are added to `ready`.
    fn rows_of(
        &mut self,
        input: ToWriter,
        ready: &mut Vec<RecordsBatch>,
    ) -> Result<Option<RecordsBatch>> {
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
        let number = bodies.order();
        match prepare(bodies) {
            Ok(batch) => Ok(Some(batch)),
            Err(e) => {
                // (`prepare` has already stopped the run and closed the short path.)
                tracing::error!(error = %e, "stopping the pipeline");
                self.prepare_failed.get_or_insert(e);
                if let (Some(r), Some(n)) = (&mut self.reorder, number) {
                    r.skip(n, ready);
                }
                Ok(None)
            }
        }
    }

    /// When the loop must wake even without a batch: the end of the rotation period, or the
    /// output's own deadline (an open row group reaching its maximum age). `None`: only for a
    /// batch.
    fn deadline(&self, period: Instant) -> Option<Instant> {
        self.output
            .deadline()
            .into_iter()
            .chain(self.rotate.map(|every| crate::time::after(period, every)))
            .chain(self.window.as_ref().and_then(WindowStage::deadline))
            // With a journal, a source may ask for a checkpoint (`CommittedItems::ask`) of
            // items the writer already holds: looked at this often even without a batch.
            .chain(
                self.journal
                    .is_some()
                    .then(|| Instant::now() + ASKED_CHECKPOINT_POLL),
            )
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
        self.dead_letters += batch.dead_letters.len() as u64;
        if self.window.is_some() {
            return self.window_batch(batch, dead);
        }
        let Some(rows) = &batch.rows else {
            return Ok(());
        };
        self.output.kafka_messages(&batch.kafka.written);
        let n = self.write_rows(rows, batch.oldest, dead);
        self.output.kafka_messages(&OffsetRanges::default());
        let n = n?;
        if self.output.deferred() {
            // Counted as they settle (`settle`), not as they are handed over.
            return self.settle(dead);
        }
        self.rows += n;
        self.registry.records_written.fetch_add(n, Relaxed);
        Ok(())
    }

    /// Windows: the batch's rows go to the operator; the records it rejects become dead
    /// letters, the windows it closes rows of the output.
    fn window_batch(&mut self, batch: &RecordsBatch, dead: &mut DeadLetterLog) -> Result<()> {
        // `window.records`: the records as well, before the windows take them (a late one
        // is both here and a dead letter of the windows).
        if let Some(rows) = batch.rows.as_ref().filter(|r| r.num_rows() > 0) {
            // (Unpartitioned, so it refuses nothing: a refusal is a partition name.)
            self.output.kafka_messages(&batch.kafka.written);
            let refused = self.output.write_records(rows, &mut self.holds);
            self.output.kafka_messages(&OffsetRanges::default());
            let refused = refused?;
            if let Some((_, why)) = refused.as_ref().and_then(|r| r.first()) {
                return Err(Error::Stage {
                    stage: "window.records".into(),
                    why: why.clone(),
                });
            }
        }
        let w = self.window.as_mut().expect("windows on");
        let emitted = w.push(batch.rows.as_ref(), batch.source, Instant::now())?;
        if let (Some(rows), false) = (&batch.rows, emitted.rejected.is_empty()) {
            let mut by_class = std::collections::BTreeMap::<String, u64>::new();
            for (_, reason) in &emitted.rejected {
                *by_class
                    .entry(super::windows::class_of(reason))
                    .or_default() += 1;
            }
            let classes: Vec<(String, u64)> = by_class.into_iter().collect();
            self.dead_letter_rows(rows, &emitted.rejected, dead)?;
            let n = emitted.rejected.len() as u64;
            self.registry.add_parsed(0, n, &classes);
        }
        if let Some(rows) = emitted.rows {
            self.write_window_rows(&rows, dead)?;
        }
        if let Some(w) = &self.window {
            w.publish(self.registry);
        }
        Ok(())
    }

    /// Writes window rows to the output and the sinks, counted apart from records.
    fn write_window_rows(&mut self, rows: &RecordBatch, dead: &mut DeadLetterLog) -> Result<()> {
        let n = self.write_rows(rows, None, dead)?;
        self.window_rows += n;
        self.registry.window.rows_emitted.fetch_add(n, Relaxed);
        if let Some(w) = &mut self.window {
            w.rows_emitted += n;
        }
        Ok(())
    }

    /// Writes `rows` to the output, then the sinks; returns how many the output held (the
    /// others it refused are dead letters). `oldest`: the earliest fetch completion among their
    /// bodies, for the end-to-end latency.
    fn write_rows(
        &mut self,
        rows: &RecordBatch,
        oldest: Option<Instant>,
        dead: &mut DeadLetterLog,
    ) -> Result<u64> {
        let started = Instant::now();
        let id = self.next_batch;
        self.next_batch += 1;
        let tracked = oldest.map(|oldest| {
            self.holds.track(id, oldest);
            id
        });
        let refused = self.output.write(rows, tracked, &mut self.holds)?;
        let kept;
        let rows = match refused.is_empty() {
            true => rows,
            false => {
                kept = self.refuse(rows, &refused, dead)?;
                &kept
            }
        };
        for s in &mut self.sinks {
            let name = s.name().to_string();
            crate::stage::guarded("sink", &name, || s.write(rows))?;
        }
        self.registry
            .latency(Stage::Write)
            .record(started.elapsed());
        if let Some(id) = tracked {
            self.holds.release(id);
        }
        Ok(rows.num_rows() as u64)
    }
}

impl Writer<'_> {
    /// Dead-letters rows of `rows` (by index, each with its reason, the row as JSON for its
    /// excerpt): rows the output refused, records the window operator rejected.
    fn dead_letter_rows(
        &mut self,
        rows: &RecordBatch,
        which: &[(usize, String)],
        dead: &mut DeadLetterLog,
    ) -> Result<()> {
        for (i, reason) in which {
            let d = DeadLetter {
                kind: "record",
                url: self.source.clone(),
                reason: reason.clone(),
                excerpt: super::row_json(rows, *i),
                attempts: 0,
            };
            dead.write(&d)?;
            self.failure_log.log(&d);
        }
        dead.flush()?;
        self.dead_letters += which.len() as u64;
        Ok(())
    }
}

/// Adds the Kafka source's messages of `outcomes` to the per-partition ledger: written, or
/// dead-lettered (the source counts them consumed).
fn count_kafka_messages(registry: &Registry, outcomes: &MessageOutcomes) {
    if outcomes.is_empty() {
        return;
    }
    let mut partitions = registry.kafka_source.partitions.lock();
    for (topic, partition, n) in outcomes.written.counts() {
        partitions
            .entry((topic.to_string(), partition))
            .or_default()
            .written += n;
    }
    for (topic, partition, n) in outcomes.dead_lettered.counts() {
        partitions
            .entry((topic.to_string(), partition))
            .or_default()
            .dead_lettered += n;
    }
}

/// The dead-letter class of rows a [`deferred`](Output::deferred) output could not deliver.
pub const DELIVERY_FAILED_CLASS: &str = "delivery failed";

/// The Kafka output for `target` (feature `kafka`).
#[cfg(feature = "kafka")]
fn kafka_output<'a>(
    target: crate::kafka::KafkaTarget,
    registry: &'a Registry,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> Result<Box<dyn Output + 'a>> {
    let out = super::kafka::KafkaOutput::new(target, registry.kafka.clone(), stop)?;
    Ok(Box::new(out))
}

/// Without the feature a `kafka://` output is refused before the run (`kafka::target`).
#[cfg(not(feature = "kafka"))]
fn kafka_output<'a>(
    _: crate::kafka::KafkaTarget,
    _: &'a Registry,
    _: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> Result<Box<dyn Output + 'a>> {
    Err(Error::config("out", "this pinflow was built without Kafka"))
}

/// The dead-letter class (in the summary and the metrics) of rows the output refused.
pub const REFUSED_CLASS: &str = "partition value too long";

impl Writer<'_> {
    /// Dead-letters the rows of `rows` the output refused (each with its reason and the row
    /// as JSON) and returns the others, which the sinks get and the ledger counts written.
    fn refuse(
        &mut self,
        rows: &RecordBatch,
        refused: &[(usize, String)],
        dead: &mut DeadLetterLog,
    ) -> Result<RecordBatch> {
        self.dead_letter_rows(rows, refused, dead)?;
        let n = refused.len() as u64;
        self.refused += n;
        self.registry
            .add_parsed(0, n, &[(REFUSED_CLASS.to_string(), n)]);
        let mut keep = vec![true; rows.num_rows()];
        for &(i, _) in refused {
            keep[i] = false;
        }
        arrow_select::filter::filter_record_batch(rows, &BooleanArray::from(keep)).map_err(|e| {
            Error::Thread {
                thread: "pinflow-writer".into(),
                why: format!("leaving out refused rows: {e}"),
            }
        })
    }
}

/// Whether `fetch.since_field`'s column `field` of `schema` is a timestamp (true) or an int64
/// (false): a column that is missing, or of another type, is a configuration error naming the
/// option. Checked on the configured schema before a run, and on the rows otherwise.
pub(crate) fn since_column_kind(schema: &arrow_schema::Schema, field: &str) -> Result<bool> {
    use arrow_schema::{DataType, TimeUnit};
    let bad = |why: String| Error::config("fetch.since_field", why);
    let f = schema.field_with_name(field).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        bad(format!(
            "`{field}` is not a column of the rows (their columns: {})",
            names.join(", ")
        ))
    })?;
    match f.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(true),
        DataType::Int64 => Ok(false),
        other => Err(bad(format!(
            "column `{field}` is {other}, not a timestamp or int64 (declare it \
             `{field}:timestamp` or `{field}:int64`): it cannot be a position"
        ))),
    }
}

/// The highest value of `rows`' column `field` (nulls left out), and whether it is a
/// timestamp: `None` when every value is null. The column is checked by [`since_column_kind`].
fn since_high(rows: &RecordBatch, field: &str) -> Result<Option<(i64, bool)>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    let timestamp = since_column_kind(rows.schema_ref(), field)?;
    let col = rows.column_by_name(field).expect("checked above");
    let high = match timestamp {
        true => col
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .flatten()
            .max(),
        false => col.as_primitive::<Int64Type>().iter().flatten().max(),
    };
    Ok(high.map(|v| (v, timestamp)))
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

//! The stage threads of one run, each spawned on the core the thread plan gives its role and
//! each returning its own report type: the ingest thread an [`IngestReport`], a parse thread
//! its [`ParseStats`], a compute thread nothing, the writer a [`WriterReport`].
//!
//! They are started downstream first (writer, compute, parse, ingest), so that every thread
//! has somewhere to send from its first batch on, and joined upstream first by [`run`]'s
//! caller (see `Pipeline::run`).
//!
//! [`run`]: super::Pipeline::run

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::batch::{BodyBatch, CursorReply, LiveBatches, RecordsBatch};
use crate::config::{Config, FetchConfig};
use crate::error::{Error, Result};
use crate::handoff::{IdleSignal, IngestChannels, ShortPath, ToParse, ToWriter, Upstream};
use crate::ingest::{self, IngestReport, Source};
use crate::journal::{Journal, RangeSet};
use crate::metrics::live::{QueueId, Registry, Stage, StateGuard, ThreadState};
use crate::output::{self, DeadLetterLog, OutputPlan, ParquetFile, WriterReport};
use crate::parse::{ParseStats, Parser};
use crate::plan::{self, Role, ThreadPlan};
use crate::schema::Layout;
use crate::stage::{Sink, Transform};
use crate::transform::compute_batch;

/// A running stage thread whose body returns a `T`.
pub(super) struct StageThread<T> {
    name: String,
    handle: JoinHandle<Result<T>>,
}

impl<T> StageThread<T> {
    /// Waits for the thread; a panic becomes [`Error::Thread`] naming it.
    pub(super) fn join(self) -> Result<T> {
        self.handle.join().unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Thread {
                thread: self.name,
                why: format!("panicked: {why}"),
            })
        })
    }
}

/// Starts stage threads, named `pinflow-ROLE` and pinned as the plan says.
pub(super) struct Spawner {
    plan: ThreadPlan,
    registry: Arc<Registry>,
    /// Set by a thread that could not pin itself (the summary says so).
    pin_failed: Arc<AtomicBool>,
    /// The pipeline's stop, set by a stage that fails or panics...
    stop: Arc<AtomicBool>,
    /// ...which then says so here: the stop is lifted when the run is over (the
    /// [`Spawner`] dropped), so that the pipeline's next run is not stopped from the start.
    stopped_on_failure: Arc<AtomicBool>,
}

/// Stops the pipeline for a stage that failed, unless something else stopped it already.
fn stop_on_failure(stop: &AtomicBool, stopped_on_failure: &AtomicBool) {
    if !stop.swap(true, Ordering::Relaxed) {
        stopped_on_failure.store(true, Ordering::Relaxed);
    }
}

/// Stops the pipeline when its thread unwinds (a stage that panicked).
struct StopOnPanic(Arc<AtomicBool>, Arc<AtomicBool>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            stop_on_failure(&self.0, &self.1);
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        if self.stopped_on_failure.load(Ordering::Relaxed) {
            self.stop.store(false, Ordering::Relaxed);
        }
    }
}

impl Spawner {
    pub(super) fn new(
        plan: ThreadPlan,
        registry: &Arc<Registry>,
        stop: &Arc<AtomicBool>,
    ) -> Spawner {
        Spawner {
            plan,
            registry: Arc::clone(registry),
            pin_failed: Arc::new(AtomicBool::new(false)),
            stop: Arc::clone(stop),
            stopped_on_failure: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Spawns `body` for `role`; it gets the registry and its own index there.
    pub(super) fn spawn<T: Send + 'static>(
        &self,
        role: Role,
        body: impl FnOnce(&Arc<Registry>, usize) -> Result<T> + Send + 'static,
    ) -> Result<StageThread<T>> {
        let core = self.plan.core_of(role);
        let pin_failed = Arc::clone(&self.pin_failed);
        let registry = Arc::clone(&self.registry);
        let index = registry.thread_index(role).unwrap_or(usize::MAX);
        let name = format!("pinflow-{role}");
        let stop = Arc::clone(&self.stop);
        let stopped_on_failure = Arc::clone(&self.stopped_on_failure);
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // A stage that fails or panics stops the others, as a signal would: a source
                // waiting for input, or a fetcher waiting for a failed parse thread's cursor
                // reply while the other parse threads live on, would wait on.
                let _unwinding = StopOnPanic(Arc::clone(&stop), Arc::clone(&stopped_on_failure));
                if !plan::pin_current(core) {
                    pin_failed.store(true, Ordering::Relaxed);
                }
                let result = body(&registry, index);
                if result.is_err() {
                    stop_on_failure(&stop, &stopped_on_failure);
                }
                result
            })
            .map_err(|e| Error::Thread {
                thread: name.clone(),
                why: e.to_string(),
            })?;
        Ok(StageThread { name, handle })
    }

    /// Stops the run as a stage thread that fails does, for a failure that does not end its
    /// thread (the writer's short path, which drains on): lifted, like theirs, when the run
    /// is over.
    fn stop_for_failure(&self) -> impl Fn() + Send + 'static {
        let (stop, own) = (Arc::clone(&self.stop), Arc::clone(&self.stopped_on_failure));
        move || stop_on_failure(&stop, &own)
    }

    /// Whether a thread could not be pinned.
    pub(super) fn pin_failed(&self) -> bool {
        self.pin_failed.load(Ordering::Relaxed)
    }
}

/// The queues between the stages, and what travels against the flow: emptied body batches
/// back to ingest, cursor replies back to the HTTP fetcher, and the parse threads' idle signal.
pub(super) struct Queues {
    body_tx: Sender<BodyBatch>,
    body_rx: Receiver<BodyBatch>,
    recycle_tx: Sender<BodyBatch>,
    recycle_rx: Receiver<BodyBatch>,
    rows_tx: Sender<RecordsBatch>,
    rows_rx: Receiver<RecordsBatch>,
    out_tx: Sender<ToWriter>,
    out_rx: Receiver<ToWriter>,
    upstream: Arc<Upstream>,
    /// Cursor pagination: parse threads tell the fetcher each page's next cursor. Unbounded,
    /// yet bounded in practice: one reply per page body, and bodies in flight are bounded.
    cursor_tx: Option<Sender<CursorReply>>,
    cursor_rx: Option<Receiver<CursorReply>>,
    parse_idle: Arc<IdleSignal>,
}

impl Queues {
    /// Every queue holds `cfg.queue_capacity` batches; the return queue also has room for
    /// the batches the parse threads hold.
    pub(super) fn new(cfg: &Config, parse_threads: usize, registry: &Registry) -> Queues {
        let q = cfg.queue_capacity;
        let (body_tx, body_rx) = bounded(q);
        let (recycle_tx, recycle_rx) = bounded(q + parse_threads + 2);
        let (rows_tx, rows_rx) = bounded(q);
        let (out_tx, out_rx) = bounded(q);
        for id in QueueId::ALL {
            registry.set_queue_capacity(id, q);
        }
        let (cursor_tx, cursor_rx) = match cfg.fetch.cursor_field {
            Some(_) => {
                let (tx, rx) = crossbeam_channel::unbounded();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        Queues {
            body_tx,
            body_rx,
            recycle_tx,
            recycle_rx,
            rows_tx,
            rows_rx,
            out_tx,
            out_rx,
            upstream: Arc::new(Upstream::default()),
            cursor_tx,
            cursor_rx,
            parse_idle: Arc::new(IdleSignal::default()),
        }
    }
}

/// Makes the parsers of a run: each with the fixed layout, or inferring one that the first
/// parser to see records shares with the others.
pub(super) struct Parsers {
    fixed: Option<Arc<Layout>>,
    inferred: Arc<OnceLock<Arc<Layout>>>,
    schema: Arc<crate::config::SchemaConfig>,
    fetch: FetchConfig,
}

impl Parsers {
    pub(super) fn new(cfg: &Config) -> Result<Parsers> {
        Ok(Parsers {
            fixed: cfg.schema.layout()?.map(Arc::new),
            inferred: Arc::new(OnceLock::new()),
            schema: Arc::new(cfg.schema.clone()),
            fetch: cfg.fetch.clone(),
        })
    }

    pub(super) fn make(&self) -> Parser {
        let mut parser = match self.fixed.clone() {
            Some(layout) => Parser::with_layout(layout),
            None => {
                let schema = Arc::clone(&self.schema);
                Parser::inferring(
                    Arc::clone(&self.inferred),
                    Arc::new(move |fields| {
                        // No schema given: records of the log fields keep the built-in layout
                        // (and its types); records of any other shape get their own fields.
                        if schema.decides_from_records() && crate::schema::fits_log_layout(&fields)
                        {
                            schema.layout_of(crate::schema::log_fields())
                        } else {
                            schema.layout_of(fields)
                        }
                    }),
                )
            }
        };
        parser.max_body = self.fetch.max_body_bytes;
        // No password of a URL reaches a file through the `_source` lineage column.
        parser.set_source_redactor(crate::ingest::url::redact);
        parser.set_envelope(
            self.fetch.records_field.as_deref(),
            self.fetch.cursor_field.as_deref(),
        );
        parser
    }
}

/// The user's transforms, for a thread that computes batches, and the pipeline's stop flag
/// (which the writer and the source watch; a failing stage sets it through the [`Spawner`]).
#[derive(Clone)]
pub(super) struct Compute {
    pub(super) transforms: Vec<Arc<dyn Transform>>,
    pub(super) stop: Arc<AtomicBool>,
}

/// What a parse thread does with one body batch: parse it, hand the cursors of paginated
/// bodies back to the fetcher, recycle the emptied batch, publish the counts and, when no
/// compute thread follows, compute the statistics and run the transforms. The writer holds one
/// too, for the short path.
struct ParseWork {
    parser: Parser,
    /// The parser's counts as last published to the registry.
    published: ParseStats,
    cursors: Option<Sender<CursorReply>>,
    recycle: Sender<BodyBatch>,
    /// The transforms, when this thread computes its own batches.
    compute: Option<Compute>,
    registry: Arc<Registry>,
    /// Where the counts go when this is dropped (the writer's, which returns no stats).
    report_to: Option<Arc<parking_lot::Mutex<ParseStats>>>,
}

impl ParseWork {
    fn process(&mut self, mut batch: BodyBatch) -> Result<RecordsBatch> {
        let reg = &*self.registry;
        let mut out = self.parser.try_parse_batch(&mut batch)?;
        let replies = self.parser.cursor_replies.drain(..);
        match &self.cursors {
            // The fetcher gone means the run is ending anyway.
            Some(cursors) => {
                for reply in replies {
                    let _ = cursors.send(reply);
                }
            }
            // No pagination, or the writer's parser: the short path takes no paginated bodies.
            None => drop(replies),
        }
        batch.clear();
        let _ = self.recycle.try_send(batch);
        publish_parse(reg, &self.parser, &mut self.published);
        if let Some(c) = &self.compute {
            compute_batch(&mut out, &c.transforms, reg)?;
        }
        Ok(out)
    }
}

impl Drop for ParseWork {
    fn drop(&mut self) {
        if let Some(to) = &self.report_to {
            *to.lock() = std::mem::take(&mut self.parser.stats);
        }
    }
}

/// Adds what a parse thread counted since the last call to the live metrics.
fn publish_parse(reg: &Registry, parser: &Parser, published: &mut ParseStats) {
    let s = &parser.stats;
    reg.latency(Stage::Parse).record_all(&parser.body_times);
    let dead = s.dead - published.dead;
    let reasons: Vec<(String, u64)> = if dead > 0 {
        s.dead_by_reason
            .iter()
            .filter_map(|(k, &v)| {
                let before = published.dead_by_reason.get(k).copied().unwrap_or(0);
                (v > before).then(|| (k.clone(), v - before))
            })
            .collect()
    } else {
        Vec::new()
    };
    reg.add_parsed(s.records - published.records, dead, &reasons);
    if dead > 0 {
        published.dead_by_reason = s.dead_by_reason.clone();
    }
    published.records = s.records;
    published.dead = s.dead;
}

/// What a run's stage threads are made from, besides the queues.
pub(super) struct StageInputs {
    /// The run's source, for the ingest thread.
    pub(super) source: Source,
    /// Work items the resume journal found done.
    pub(super) skip: Arc<RangeSet>,
    /// Where the writer writes, and the files and logs it owns.
    pub(super) output: OutputPlan,
    pub(super) first_file: Option<(u64, ParquetFile)>,
    pub(super) dead: DeadLetterLog,
    pub(super) journal: Option<Journal>,
    pub(super) sinks: Vec<Box<dyn Sink>>,
    /// The user's transforms and the stop flag.
    pub(super) compute: Compute,
    /// Time windows, when on: run by the writer, on rows put back in source order.
    pub(super) window: Option<Arc<crate::window::WindowSpec>>,
    /// `window.records`: the records' own output.
    pub(super) records: Option<output::RecordsOutput>,
    /// `--out kafka://...`: the writer produces to Kafka instead of writing Parquet.
    pub(super) kafka: Option<crate::kafka::KafkaTarget>,
}

/// A run's stage threads, once started; `Pipeline::run` joins them, upstream first.
pub(super) struct Running {
    pub(super) ingest: StageThread<IngestReport>,
    pub(super) parsers: Vec<StageThread<ParseStats>>,
    pub(super) computes: Vec<StageThread<()>>,
    pub(super) writer: StageThread<WriterReport>,
    /// The window threads (`window.threads` > 1); they end when the writer does.
    pub(super) windows: Vec<StageThread<()>>,
    /// The writer's parser's counts (the short path), once the writer has dropped it.
    pub(super) writer_parsed: Arc<parking_lot::Mutex<ParseStats>>,
    /// The user's sinks, handed back by the writer for the next run.
    pub(super) sinks_back: Arc<parking_lot::Mutex<Vec<Box<dyn Sink>>>>,
    /// Batches alive in the pipeline (their peak goes into the summary).
    pub(super) live: Arc<LiveBatches>,
    /// The layout the records chose, when the configuration left it to them.
    pub(super) inferred: Arc<OnceLock<Arc<Layout>>>,
}

/// Starts every stage of a run, downstream first.
pub(super) fn start(
    sp: &Spawner,
    cfg: &Config,
    registry: &Arc<Registry>,
    input: StageInputs,
) -> Result<Running> {
    let parse_n = sp.plan.parse_threads();
    let compute_n = sp.plan.compute_threads();
    let q = Queues::new(cfg, parse_n, registry);
    let parsers = Parsers::new(cfg)?;
    let StageInputs {
        source,
        skip,
        output,
        first_file,
        dead,
        journal,
        sinks,
        compute,
        window,
        records,
        kafka,
    } = input;
    // The short path: the writer parses and computes what ingest hands it while the pipeline
    // is idle (`IngestChannels::try_short_path`). Its parser's counts join the parse threads'
    // when the writer drops it. Not with user transforms: they keep running one batch at a
    // time, in order, on the threads the plan gives them.
    let writer_parsed = Arc::new(parking_lot::Mutex::new(ParseStats::default()));
    let short_path_closed = Arc::new(AtomicBool::new(false));
    let prepare = compute.transforms.is_empty().then(|| {
        let work = ParseWork {
            parser: parsers.make(),
            published: ParseStats::default(),
            cursors: None,
            recycle: q.recycle_tx.clone(),
            compute: Some(compute.clone()),
            registry: Arc::clone(registry),
            report_to: Some(Arc::clone(&writer_parsed)),
        };
        short_path_prepare(work, sp.stop_for_failure(), &short_path_closed)
    });
    let short_path = registry
        .thread_index(Role::Writer)
        .filter(|_| prepare.is_some())
        .map(|writer_thread| ShortPath {
            to_writer: q.out_tx.clone(),
            writer_thread,
            closed: Arc::clone(&short_path_closed),
            mailbox: Arc::default(),
        });
    let sinks_back = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (windows, window_shards) = match &window {
        Some(spec) => spawn_windows(sp, spec)?,
        None => (Vec::new(), Vec::new()),
    };
    // A Kafka source's files hold each partition's messages in order under the journal (see
    // `WriterParts::in_source_order`).
    let in_source_order = journal.is_some() && matches!(source, Source::Kafka(_));
    let parts = output::WriterParts {
        first: first_file,
        dead,
        journal,
        sinks,
        prepare,
        window: window.clone(),
        window_shards,
        records,
        stop: Some(Arc::clone(&compute.stop)),
        since_field: cfg.fetch.since_field.clone(),
        kafka,
        in_source_order,
    };
    let writer = spawn_writer(sp, &q, output, parts, &sinks_back, short_path_closed)?;
    let computes = (0..compute_n)
        .map(|j| spawn_compute(sp, j, &q, &compute))
        .collect::<Result<Vec<_>>>()?;
    let inline = (compute_n == 0).then_some(&compute);
    let parse_threads = (0..parse_n)
        .map(|i| spawn_parse(sp, i, &q, parsers.make(), inline, registry))
        .collect::<Result<Vec<_>>>()?;
    let live = Arc::new(LiveBatches::default());
    let Queues {
        body_tx,
        recycle_rx,
        upstream,
        cursor_rx,
        parse_idle,
        ..
    } = q;
    // (The other ends of every queue dropped with `q`: each stage now holds the only
    // senders to the next, so shutdown flows downstream when ingest ends.)
    let chans = IngestChannels {
        out: ToParse::new(body_tx, upstream),
        recycled: recycle_rx,
        live: Arc::clone(&live),
        registry: Arc::clone(registry),
        thread: usize::MAX, // set by the ingest thread: its own index
        cursors: cursor_rx,
        skip,
        parse_idle,
        short_path,
        descriptor_reserve: cfg.descriptor_reserve(),
        source_order: window.is_some(),
    };
    let ingest = spawn_ingest(sp, source, cfg, chans, compute.stop)?;
    Ok(Running {
        ingest,
        parsers: parse_threads,
        computes,
        writer,
        windows,
        writer_parsed,
        sinks_back,
        live,
        inferred: Arc::clone(&parsers.inferred),
    })
}

/// The writer's parse-and-compute for short-path batches; a failure stops the run, as a
/// failing parse thread does, and closes the short path.
fn short_path_prepare(
    mut work: ParseWork,
    stop_for_failure: impl Fn() + Send + 'static,
    closed: &Arc<AtomicBool>,
) -> output::Prepare {
    let closed = Arc::clone(closed);
    Box::new(move |bodies| {
        work.process(bodies).inspect_err(|_| {
            // As when a parse thread fails: the run stops, what is queued drains.
            stop_for_failure();
            closed.store(true, Ordering::Relaxed);
        })
    })
}

fn spawn_writer(
    sp: &Spawner,
    q: &Queues,
    output: OutputPlan,
    parts: output::WriterParts,
    sinks_back: &Arc<parking_lot::Mutex<Vec<Box<dyn Sink>>>>,
    short_path_closed: Arc<AtomicBool>,
) -> Result<StageThread<WriterReport>> {
    let rx = q.out_rx.clone();
    let sinks_back = Arc::clone(sinks_back);
    sp.spawn(Role::Writer, move |reg, me| {
        let result = output::run(rx, &output, parts, &sinks_back, reg, me);
        // Whatever ended the writer, nothing may join a batch it will never take.
        short_path_closed.store(true, Ordering::Relaxed);
        result
    })
}

/// The window threads of the plan (`Role::Window`), each holding its share of the keys'
/// windows, and the writer's channels to them; none when the writer holds the windows.
fn spawn_windows(
    sp: &Spawner,
    spec: &Arc<crate::window::WindowSpec>,
) -> Result<(Vec<StageThread<()>>, Vec<crate::window::sharded::ShardLink>)> {
    use crate::window::sharded::{run_shard, shard_spec, ShardLink};
    let roles: Vec<Role> = sp
        .plan
        .threads
        .iter()
        .map(|t| t.0)
        .filter(|r| matches!(r, Role::Window(_)))
        .collect();
    let shard = Arc::new(shard_spec(spec, roles.len()));
    let (mut threads, mut links) = (Vec::new(), Vec::new());
    for role in roles {
        // One job at a time each way: the writer waits for every reply of a round.
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(1);
        let (replies_tx, replies_rx) = crossbeam_channel::bounded(1);
        let spec = Arc::clone(&shard);
        threads.push(sp.spawn(role, move |reg, me| {
            let guard = StateGuard::new(reg, me);
            let waiting = |w: bool| {
                let state = match w {
                    true => ThreadState::WaitingInput,
                    false => ThreadState::Working,
                };
                reg.set_state(me, state);
                reg.heartbeat(me);
            };
            run_shard(spec, jobs_rx, replies_tx, waiting);
            guard.finish();
            Ok(())
        })?);
        links.push(ShardLink {
            jobs: jobs_tx,
            replies: replies_rx,
        });
    }
    Ok((threads, links))
}

fn spawn_compute(sp: &Spawner, j: usize, q: &Queues, compute: &Compute) -> Result<StageThread<()>> {
    let (rx, tx) = (q.rows_rx.clone(), q.out_tx.clone());
    let upstream = Arc::clone(&q.upstream);
    let compute = compute.clone();
    // (Set before the thread's sender to the writer goes: a writer that saw its input end
    // before the stop would take the failed run for a finished one.)
    let stop_for_failure = sp.stop_for_failure();
    sp.spawn(Role::Compute(j), move |reg, me| {
        let guard = StateGuard::new(reg, me);
        loop {
            reg.set_state(me, ThreadState::WaitingInput);
            let Ok(mut b) = rx.recv() else { break };
            reg.set_queue_depth(QueueId::Records, rx.len());
            reg.set_state(me, ThreadState::Working);
            compute_batch(&mut b, &compute.transforms, reg).inspect_err(|_| stop_for_failure())?;
            reg.set_state(me, ThreadState::BlockedOutput);
            if tx.send(ToWriter::Rows(b)).is_err() {
                break;
            }
            upstream.leave();
            reg.set_queue_depth(QueueId::Output, tx.len());
        }
        guard.finish();
        Ok(())
    })
}

/// A parse thread. With `inline` (no compute threads), it computes its own batches and hands
/// them straight to the writer.
fn spawn_parse(
    sp: &Spawner,
    i: usize,
    q: &Queues,
    parser: Parser,
    inline: Option<&Compute>,
    registry: &Arc<Registry>,
) -> Result<StageThread<ParseStats>> {
    let idle = Arc::clone(&q.parse_idle);
    let (rows_out, to_queue) = match inline {
        Some(_) => (None, QueueId::Output),
        None => (Some(q.rows_tx.clone()), QueueId::Records),
    };
    let to_writer = q.out_tx.clone();
    let upstream = Arc::clone(&q.upstream);
    let rx = q.body_rx.clone();
    let mut work = ParseWork {
        parser,
        published: ParseStats::default(),
        cursors: q.cursor_tx.clone(),
        recycle: q.recycle_tx.clone(),
        compute: inline.cloned(),
        registry: Arc::clone(registry),
        report_to: None,
    };
    // (As for a compute thread: the stop before the sender to the writer goes.)
    let stop_for_failure = sp.stop_for_failure();
    sp.spawn(Role::Parse(i), move |reg, me| {
        let guard = StateGuard::new(reg, me);
        loop {
            reg.set_state(me, ThreadState::WaitingInput);
            // About to block: tell a fetcher holding a batch back (see IdleSignal).
            let next = match rx.try_recv() {
                Ok(batch) => Ok(batch),
                Err(_) => {
                    idle.idle();
                    rx.recv()
                }
            };
            let Ok(batch) = next else { break };
            reg.set_queue_depth(QueueId::Bodies, rx.len());
            reg.set_state(me, ThreadState::Working);
            let out = work.process(batch).inspect_err(|_| stop_for_failure())?;
            reg.set_state(me, ThreadState::BlockedOutput);
            let depth = match &rows_out {
                Some(tx) => match tx.send(out) {
                    Ok(()) => tx.len(),
                    Err(_) => break,
                },
                None => match to_writer.send(ToWriter::Rows(out)) {
                    Ok(()) => {
                        upstream.leave();
                        to_writer.len()
                    }
                    Err(_) => break,
                },
            };
            reg.set_queue_depth(to_queue, depth);
        }
        guard.finish();
        Ok(std::mem::take(&mut work.parser.stats))
    })
}

/// The ingest thread: the source's implementation in the fetch seat (see [`ingest`]).
fn spawn_ingest(
    sp: &Spawner,
    source: Source,
    cfg: &Config,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<StageThread<IngestReport>> {
    let fetch_cfg = cfg.fetch.clone();
    let file_opts = ingest::files::FileOptions::from_config(cfg);
    let every: Option<Duration> = cfg.every;
    sp.spawn(Role::Fetch, move |reg, me| {
        let guard = StateGuard::new(reg, me);
        let chans = IngestChannels {
            thread: me,
            ..chans
        };
        let report = ingest::run(source, &fetch_cfg, &file_opts, every, chans, stop)?;
        guard.finish();
        Ok(report)
    })
}

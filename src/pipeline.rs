//! The wiring: threads, queues, pinning, shutdown, and the ledger of a run.
//!
//! ```text
//!  source ─► fetch (mio) ─[bodies]─► parse ×N ─[rows]─► compute ×M ─[rows+stats]─► writer ─► .parquet
//!               ▲                      │                                              └────► dead letters
//!               └──────[recycled body batches]─┘
//! ```
//!
//! With no compute threads (M = 0, the plan below four worker cores) each parse thread computes
//! the statistics and runs the transforms of its own batches and sends them straight to the
//! writer; the `[rows]` queue is then unused (its depth stays 0).
//!
//! Every queue is a bounded crossbeam channel of *batches*. Shutdown flows downstream: the
//! fetcher ends when its source is drained (or the stop flag is set) and every admitted request
//! has ended; dropping its sender ends the parse threads once the queue is empty, and so on to
//! the writer, which then finalizes the file. Nothing in a queue is ever discarded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::bounded;

use crate::batch::{BodyBatch, CursorReply, LiveBatches, RecordsBatch};
use crate::config::Config;
use crate::error::{Error, Result};
#[cfg(feature = "http")]
use crate::handoff::{IdleSignal, IngestChannels, ShortPath, ToParse, ToWriter, Upstream};
use crate::ingest::source::Source;
use crate::ingest::{self, IngestReport};
use crate::journal::Journal;
#[cfg(feature = "metrics-endpoint")]
use crate::metrics::endpoint::Endpoint;
use crate::metrics::live::{QueueId, Registry, Stage, StateGuard, ThreadState};
use crate::metrics::{Latency, StageLatencies, Summary};
use crate::output::{self, DeadLetterLog, OutputPlan, WriterReport};
use crate::parse::{ParseStats, Parser};
use crate::plan::{self, Role, ThreadPlan};
use crate::stage::{Row, Sink, Transform};
use crate::transform::compute_batch;

/// How often continuous mode rotates files when `writer.rotate_interval` is not set.
pub const DEFAULT_CONTINUOUS_ROTATION: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a stage thread returns: its report, downcast by [`join`].
type StageResult = Result<Box<dyn std::any::Any + Send>>;
/// A stage thread's body; it gets the registry and its own index there.
type StageBody = Box<dyn FnOnce(&Arc<Registry>, usize) -> StageResult + Send>;

/// A configured pipeline, ready to run over a source.
///
/// ```no_run
/// use pinflow::{Config, Pipeline, Source};
/// let pipeline = Pipeline::new(Config::new("logs.parquet"))?;
/// let summary = pipeline.run(Source::from_arg("http://127.0.0.1:8080/logs/{1..1000}.json")?)?;
/// println!("{summary}");
/// # Ok::<(), pinflow::Error>(())
/// ```
pub struct Pipeline {
    cfg: Config,
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    registry: Arc<Registry>,
    /// Started by the first run when `metrics.addr` is set; serves until the pipeline is
    /// dropped, so the final figures can still be scraped after a run.
    #[cfg(feature = "metrics-endpoint")]
    endpoint: parking_lot::Mutex<Option<Endpoint>>,
    /// What the files' `pinflow.source` metadata says; `None`: described from the source.
    source_label: Option<String>,
    /// User transforms, run on the compute stage after the statistics (the compute threads, or
    /// the parse threads when the plan has none).
    transforms: Vec<Arc<dyn Transform>>,
    /// User sinks, run on the writer thread; taken by a run and put back after it.
    sinks: parking_lot::Mutex<Vec<Box<dyn Sink>>>,
    /// Whether Parquet files are written at all (off: only the sinks get the rows).
    parquet: bool,
}

/// Builds a [`Pipeline`]: the typed configuration (the same [`Config`] the command line and
/// TOML files fill in) plus custom stages.
///
/// ```
/// use pinflow::{Pipeline, Source};
/// let dir = std::env::temp_dir().join(format!("pinflow-doc-builder-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
/// let counter = seen.clone();
/// let pipeline = Pipeline::builder()
///     .out(dir.join("kept.parquet"))
///     .configure(|c| c.threads.parse = Some(1))
///     .filter(|row| row.i64("id").is_some_and(|id| id % 2 == 0))
///     .on_batch(move |rows| {
///         counter.fetch_add(rows.num_rows(), std::sync::atomic::Ordering::Relaxed);
///     })
///     .build()?;
/// let (source, push) = Source::push(64);
/// let run = pipeline.spawn(source)?;
/// push.push("{\"id\":1}\n{\"id\":2}\n{\"id\":4}")?;
/// drop(push);
/// let summary = run.join()?;
/// assert_eq!((summary.records_written, summary.records_filtered), (2, 1));
/// assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 2);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct PipelineBuilder {
    cfg: Config,
    transforms: Vec<Arc<dyn Transform>>,
    sinks: Vec<Box<dyn Sink>>,
    parquet: bool,
    source_label: Option<String>,
}

impl PipelineBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, cfg: Config) -> Self {
        self.cfg = cfg;
        self
    }

    /// Edits the configuration in place: `.configure(|c| c.fetch.max_in_flight = 64)`.
    pub fn configure(mut self, edit: impl FnOnce(&mut Config)) -> Self {
        edit(&mut self.cfg);
        self
    }

    /// The Parquet output path (`out`).
    pub fn out(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.cfg.out = path.into();
        self
    }

    /// Adds a transform, run after the statistics and after the transforms added before it.
    pub fn transform(mut self, t: impl Transform) -> Self {
        self.transforms.push(Arc::new(t));
        self
    }

    /// Adds a per-record filter: rows for which `keep` is false are dropped (and counted as
    /// filtered in the ledger).
    pub fn filter(self, keep: impl Fn(&Row<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.transform(crate::stage::filter_records(keep))
    }

    /// Adds a sink, called with every finished batch on the writer thread.
    pub fn sink(mut self, s: impl Sink) -> Self {
        self.sinks.push(Box::new(s));
        self
    }

    /// Adds a callback sink: `f` gets every finished batch, for in-process consumers.
    pub fn on_batch(self, f: impl FnMut(&arrow_array::RecordBatch) + Send + 'static) -> Self {
        self.sink(crate::stage::callback(f))
    }

    /// Whether to write Parquet files (default: yes). Off, the rows go only to the sinks and
    /// `out` is not touched.
    pub fn parquet(mut self, on: bool) -> Self {
        self.parquet = on;
        self
    }

    /// Names the source in the files' `pinflow.source` metadata.
    pub fn source_label(mut self, label: impl Into<String>) -> Self {
        self.source_label = Some(label.into());
        self
    }

    /// Validates the configuration and makes the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let mut p = Pipeline::new(self.cfg)?;
        p.transforms = self.transforms;
        p.sinks = parking_lot::Mutex::new(self.sinks);
        p.parquet = self.parquet;
        p.source_label = self.source_label;
        Ok(p)
    }
}

/// A run in progress on its own threads: see [`Pipeline::spawn`].
pub struct RunHandle {
    thread: JoinHandle<Result<Summary>>,
    stop: Arc<AtomicBool>,
    registry: Arc<Registry>,
}

impl RunHandle {
    /// The live metrics of the run: counters, queue depths, thread states, latencies.
    pub fn metrics(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops taking new work (a push source refuses further pushes), lets everything already
    /// taken drain through every stage, finalizes the files, and returns the ledger.
    pub fn shutdown(self) -> Result<Summary> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits for the run to end by itself (its source drained) and returns the ledger.
    pub fn join(self) -> Result<Summary> {
        self.thread.join().unwrap_or_else(|_| {
            Err(Error::Thread {
                thread: "pinflow-run".into(),
                why: "panicked".into(),
            })
        })
    }
}

impl Pipeline {
    /// A builder: configuration plus custom stages.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            cfg: Config::default(),
            transforms: Vec::new(),
            sinks: Vec::new(),
            parquet: true,
            source_label: None,
        }
    }

    /// Starts a run over `source` on its own threads and returns at once; the handle gives its
    /// metrics, and its ledger once it ends ([`RunHandle::join`]) or is stopped
    /// ([`RunHandle::shutdown`]).
    pub fn spawn(self, source: Source) -> Result<RunHandle> {
        let stop = self.stop_flag();
        let registry = self.metrics();
        let thread = thread::Builder::new()
            .name("pinflow-run".into())
            .spawn(move || self.run(source))
            .map_err(|e| Error::Thread {
                thread: "pinflow-run".into(),
                why: e.to_string(),
            })?;
        Ok(RunHandle {
            thread,
            stop,
            registry,
        })
    }

    /// Validates `cfg`.
    pub fn new(cfg: Config) -> Result<Pipeline> {
        cfg.validate()?;
        let roles: Vec<Role> = ThreadPlan::for_this_machine(&cfg.threads)
            .threads
            .iter()
            .map(|t| t.0)
            .collect();
        Ok(Pipeline {
            cfg,
            stop: Arc::new(AtomicBool::new(false)),
            reopen: Arc::new(AtomicBool::new(false)),
            registry: Arc::new(Registry::new(&roles)),
            #[cfg(feature = "metrics-endpoint")]
            endpoint: parking_lot::Mutex::new(None),
            source_label: None,
            transforms: Vec::new(),
            sinks: parking_lot::Mutex::new(Vec::new()),
            parquet: true,
        })
    }

    /// Names the source in every file's `pinflow.source` metadata (the command line passes
    /// the `--urls` argument, `demo` or `bench`). Without it, a run describes its [`Source`]:
    /// the template, the file name, or the first URL of a list and how many there are.
    pub fn with_source_label(mut self, label: impl Into<String>) -> Pipeline {
        self.source_label = Some(label.into());
        self
    }

    /// The flag that, once set (by a signal handler, another thread), stops taking new work;
    /// requests already admitted finish, the queues drain and the file is finalized.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The flag that, once set (by a SIGHUP handler, say), makes the writer close the
    /// dead-letter file and re-create it at its next entry: what logrotate expects.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.reopen)
    }

    /// The live metrics: counters, queue depths, thread health and latency histograms, updated
    /// while [`Pipeline::run`] runs (from another thread) and kept across runs.
    pub fn metrics(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The address the metrics endpoint listens on, once a run has started it (useful when
    /// `metrics.addr` asks for port 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        #[cfg(feature = "metrics-endpoint")]
        return self.endpoint.lock().as_ref().map(Endpoint::addr);
        #[cfg(not(feature = "metrics-endpoint"))]
        None
    }

    fn start_endpoint(&self) -> Result<()> {
        #[cfg(feature = "metrics-endpoint")]
        {
            let mut ep = self.endpoint.lock();
            if let (None, Some(addr)) = (ep.as_ref(), self.cfg.metrics.addr) {
                *ep = Some(Endpoint::start(addr, Arc::clone(&self.registry))?);
            }
            Ok(())
        }
        #[cfg(not(feature = "metrics-endpoint"))]
        match self.cfg.metrics.addr {
            Some(_) => Err(Error::config(
                "metrics.addr",
                "this build has no metrics endpoint (cargo feature `metrics-endpoint`)",
            )),
            None => Ok(()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The thread plan a run would use on this machine.
    pub fn plan(&self) -> ThreadPlan {
        ThreadPlan::for_this_machine(&self.cfg.threads)
    }

    /// Runs the pipeline over `source` to the end and returns the ledger.
    pub fn run(&self, source: Source) -> Result<Summary> {
        let started = Instant::now();
        let cfg = &self.cfg;
        let plan = self.plan();
        let (parse_n, compute_n) = (plan.parse_threads(), plan.compute_threads());
        let registry = Arc::clone(&self.registry);
        // Latencies in the summary are this run's: the registry's histograms span all runs.
        let latency_before: Vec<Latency> = Stage::ALL
            .iter()
            .map(|&s| registry.latency(s).clone())
            .collect();
        // Open the output before fetching anything: an unwritable path fails the run at once.
        let output = OutputPlan {
            out: cfg.out.clone(),
            writer: cfg.writer.clone(),
            // Continuous mode always rotates, hourly unless told otherwise: a file is visible
            // only once finalized, and one file per run would never be.
            rotate: cfg
                .writer
                .rotate_interval
                .or(cfg.every.map(|_| DEFAULT_CONTINUOUS_ROTATION)),
            reopen: Arc::clone(&self.reopen),
            source: self
                .source_label
                .clone()
                .unwrap_or_else(|| describe_source(&source)),
            run_id: output::new_run_id(),
            // Transforms may reshape the rows: then a file takes the schema of its first rows.
            schema: match self.transforms.is_empty() {
                true => cfg.schema.layout()?.map(|l| l.output_schema()),
                false => None,
            },
            enabled: self.parquet,
        };
        ingest::preflight(&source, &cfg.fetch, cfg.every)?;
        tracing::info!(run_id = %output.run_id, source = %output.source, "run started");
        // The journal first: it finishes or clears what a killed run left, before this run
        // opens its own files.
        let journal = match cfg.writer.journal {
            true => Some(self.open_journal(cfg, &output, matches!(source, Source::Files(_)))?),
            false => None,
        };
        let skip = Arc::new(
            journal
                .as_ref()
                .map(|j| j.done().clone())
                .unwrap_or_default(),
        );
        let file = match self.parquet {
            true => output.prepare()?,
            false => None,
        };
        let filtered_before = registry.records_filtered.load(Ordering::Relaxed);
        let short_before = registry.short_path_batches.load(Ordering::Relaxed);
        let joins_before = registry.short_path_joins.load(Ordering::Relaxed);
        let sinks = std::mem::take(&mut *self.sinks.lock());
        let dead = DeadLetterLog::new(cfg.dead_letter_path()).with_rotation(
            cfg.writer.dead_letter_max_bytes,
            cfg.writer.dead_letter_keep,
        );
        self.start_endpoint()?;

        let q = cfg.queue_capacity;
        let (body_tx, body_rx) = bounded::<BodyBatch>(q);
        let (recycle_tx, recycle_rx) = bounded::<BodyBatch>(q + parse_n + 2);
        let (rows_tx, rows_rx) = bounded::<RecordsBatch>(q);
        let (out_tx, out_rx) = bounded::<ToWriter>(q);
        let upstream = Arc::new(Upstream::default());
        for id in QueueId::ALL {
            registry.set_queue_capacity(id, q);
        }
        registry.set_draining(false);
        let live = Arc::new(LiveBatches::default());
        let pin_failed = Arc::new(AtomicBool::new(false));

        let spawn = |role: Role, body: StageBody| -> Result<JoinHandle<StageResult>> {
            let core = plan.core_of(role);
            let pin_failed = Arc::clone(&pin_failed);
            let registry = Arc::clone(&registry);
            let index = registry.thread_index(role).unwrap_or(usize::MAX);
            thread::Builder::new()
                .name(format!("pinflow-{role}"))
                .spawn(move || {
                    if !plan::pin_current(core) {
                        pin_failed.store(true, Ordering::Relaxed);
                    }
                    body(&registry, index)
                })
                .map_err(|e| Error::Thread {
                    thread: format!("pinflow-{role}"),
                    why: e.to_string(),
                })
        };

        // Cursor pagination: parse threads tell the fetcher each page's next cursor. Unbounded,
        // yet bounded in practice: one reply per page body, and bodies in flight are bounded.
        let (cursor_tx, cursor_rx) = match cfg.fetch.cursor_field {
            Some(_) => {
                let (tx, rx) = crossbeam_channel::unbounded();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        // The layout: fixed now, or inferred by the first parser that sees records and shared
        // through `inferred`.
        let fixed = cfg.schema.layout()?.map(Arc::new);
        let inferred = Arc::new(std::sync::OnceLock::new());
        let schema_cfg = Arc::new(cfg.schema.clone());
        let envelope = (
            cfg.fetch.records_field.clone(),
            cfg.fetch.cursor_field.clone(),
        );
        let max_body = cfg.fetch.max_body_bytes;
        let make_parser = move || {
            let mut parser = match fixed.clone() {
                Some(layout) => Parser::with_layout(layout),
                None => {
                    let schema_cfg = Arc::clone(&schema_cfg);
                    Parser::inferring(
                        Arc::clone(&inferred),
                        Arc::new(move |fields| schema_cfg.layout_of(fields)),
                    )
                }
            };
            parser.max_body = max_body;
            parser.set_envelope(envelope.0.as_deref(), envelope.1.as_deref());
            parser
        };
        let compute_inline = (self.transforms.clone(), Arc::clone(&self.stop));

        // The short path: the writer parses and computes what the fetcher hands it while the
        // pipeline is idle (`IngestChannels::try_short_path`). Its parser's counts join the
        // parse threads' when the writer drops it. Not with user transforms: they keep
        // running one batch at a time, in order, on the threads the plan gives them.
        let writer_parsed = Arc::new(parking_lot::Mutex::new(ParseStats::default()));
        let short_path_closed = Arc::new(AtomicBool::new(false));
        let prepare: Option<output::Prepare> = self.transforms.is_empty().then(|| {
            let mut work = ParseWork {
                parser: make_parser(),
                published: ParseStats::default(),
                cursors: None,
                recycle: recycle_tx.clone(),
                compute: Some(compute_inline.clone()),
                registry: Arc::clone(&registry),
                report_to: Some(Arc::clone(&writer_parsed)),
            };
            let (stop, closed) = (Arc::clone(&self.stop), Arc::clone(&short_path_closed));
            Box::new(move |bodies| {
                work.process(bodies).inspect_err(|_| {
                    // As when a parse thread fails: the run stops, what is queued drains.
                    stop.store(true, Ordering::Relaxed);
                    closed.store(true, Ordering::Relaxed);
                })
            }) as output::Prepare
        });
        let short_path_on = prepare.is_some();
        let returned_sinks = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sinks_back = Arc::clone(&returned_sinks);
        let writer_gone = Arc::clone(&short_path_closed);
        let writer = spawn(
            Role::Writer,
            Box::new(move |reg, me| {
                let parts = output::WriterParts {
                    first: file,
                    dead,
                    journal,
                    sinks,
                    prepare,
                };
                let result = output::run(out_rx, &output, parts, &sinks_back, reg, me);
                // Whatever ended the writer, nothing may join a batch it will never take.
                writer_gone.store(true, Ordering::Relaxed);
                result.map(|r| Box::new(r) as _)
            }),
        )?;
        let mut computes = Vec::new();
        for j in 0..compute_n {
            let (rx, tx) = (rows_rx.clone(), out_tx.clone());
            let upstream = Arc::clone(&upstream);
            let transforms = self.transforms.clone();
            let stop = Arc::clone(&self.stop);
            computes.push(spawn(
                Role::Compute(j),
                Box::new(move |reg, me| {
                    let guard = StateGuard::new(reg, me);
                    loop {
                        reg.set_state(me, ThreadState::WaitingInput);
                        let Ok(mut b) = rx.recv() else { break };
                        reg.set_queue_depth(QueueId::Records, rx.len());
                        reg.set_state(me, ThreadState::Working);
                        compute_batch(&mut b, &transforms, reg, &stop)?;
                        reg.set_state(me, ThreadState::BlockedOutput);
                        if tx.send(ToWriter::Rows(b)).is_err() {
                            break;
                        }
                        upstream.leave();
                        reg.set_queue_depth(QueueId::Output, tx.len());
                    }
                    guard.finish();
                    Ok(Box::new(()) as _)
                }),
            )?);
        }
        drop(rows_rx);
        let parse_idle = Arc::new(IdleSignal::default());
        // No compute threads: each parse thread computes its own batches and hands them
        // straight to the writer.
        let inline = compute_n == 0;
        let mut parsers = Vec::new();
        for i in 0..parse_n {
            let idle = Arc::clone(&parse_idle);
            let (rows_out, to_queue) = match inline {
                true => (None, QueueId::Output),
                false => (Some(rows_tx.clone()), QueueId::Records),
            };
            let to_writer = out_tx.clone();
            let upstream = Arc::clone(&upstream);
            let rx = body_rx.clone();
            let mut work = ParseWork {
                parser: make_parser(),
                published: ParseStats::default(),
                cursors: cursor_tx.clone(),
                recycle: recycle_tx.clone(),
                compute: inline.then(|| compute_inline.clone()),
                registry: Arc::clone(&registry),
                report_to: None,
            };
            parsers.push(spawn(
                Role::Parse(i),
                Box::new(move |reg, me| {
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
                        let out = work.process(batch)?;
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
                    Ok(Box::new(std::mem::take(&mut work.parser.stats)) as _)
                }),
            )?);
        }
        let short_path = registry
            .thread_index(Role::Writer)
            .filter(|_| short_path_on)
            .map(|writer_thread| ShortPath {
                to_writer: out_tx.clone(),
                writer_thread,
                closed: short_path_closed,
                mailbox: Arc::default(),
            });
        drop((body_rx, rows_tx, out_tx, recycle_tx, cursor_tx));
        let fetch_cfg = cfg.fetch.clone();
        let every = cfg.every;
        let stop = Arc::clone(&self.stop);
        let live2 = Arc::clone(&live);
        let fetcher = spawn(
            Role::Fetch,
            Box::new(move |reg, me| {
                let guard = StateGuard::new(reg, me);
                let chans = IngestChannels {
                    out: ToParse::new(body_tx, upstream),
                    recycled: recycle_rx,
                    live: live2,
                    registry: Arc::clone(reg),
                    thread: me,
                    cursors: cursor_rx,
                    skip,
                    parse_idle,
                    short_path,
                };
                let r = ingest::run(source, &fetch_cfg, every, chans, stop)?;
                guard.finish();
                Ok(Box::new(r) as _)
            }),
        )?;
        registry.set_running(true);

        // Join upstream first; report the most downstream error, which is the root cause when a
        // failing writer made the upstream stages stop.
        let mut errors: Vec<Error> = Vec::new();
        let mut summary = Summary::default();
        match join::<IngestReport>(fetcher, "pinflow-fetch") {
            Ok(r) => {
                if let Some(e) = &r.source_error {
                    errors.push(Error::Source {
                        source_name: "url list".into(),
                        why: e.clone(),
                    });
                }
                summary.fetch = r.stats;
                summary.interrupted = r.interrupted;
            }
            Err(e) => errors.push(e),
        }
        registry.set_draining(true);
        for (i, h) in parsers.into_iter().enumerate() {
            match join::<ParseStats>(h, &format!("pinflow-parse-{i}")) {
                Ok(stats) => add_parsed(&mut summary, stats),
                Err(e) => errors.push(e),
            }
        }
        for (j, h) in computes.into_iter().enumerate() {
            if let Err(e) = join::<()>(h, &format!("pinflow-compute-{j}")) {
                errors.push(e);
            }
        }
        match join::<WriterReport>(writer, "pinflow-writer") {
            Ok(w) => {
                add_parsed(&mut summary, std::mem::take(&mut *writer_parsed.lock()));
                summary.records_written = w.rows;
                summary.row_groups = w.row_groups;
                summary.files = w.files;
                summary.output = w.output;
                summary.dead_letter_file = w.dead_letter_file;
            }
            Err(e) => errors.push(e),
        }
        registry.set_running(false);
        // The sinks come back for the next run.
        *self.sinks.lock() = std::mem::take(&mut *returned_sinks.lock());
        summary.records_filtered =
            registry.records_filtered.load(Ordering::Relaxed) - filtered_before;
        summary.short_path_batches =
            registry.short_path_batches.load(Ordering::Relaxed) - short_before;
        summary.short_path_joins = registry.short_path_joins.load(Ordering::Relaxed) - joins_before;
        if let Some(e) = errors.pop() {
            return Err(e);
        }
        let since = |stage: Stage| {
            let mut h = registry.latency(stage).clone();
            h.subtract(&latency_before[stage as usize]);
            h
        };
        summary.latency = StageLatencies {
            fetch: since(Stage::Fetch),
            parse: since(Stage::Parse),
            compute: since(Stage::Compute),
            write: since(Stage::Write),
            end_to_end: since(Stage::EndToEnd),
            handoff: since(Stage::Handoff),
        };
        summary.elapsed = started.elapsed();
        summary.peak_live_batches = live.peak();
        summary.live_batch_bound = cfg.max_live_batches(parse_n, compute_n);
        summary.pinning_partial = plan.partial || pin_failed.load(Ordering::Relaxed);
        summary.plan = plan.describe();
        if pin_failed.load(Ordering::Relaxed) {
            summary.plan.push_str(" (some threads could not be pinned)");
        }
        Ok(summary)
    }
}

impl Pipeline {
    /// Opens the resume journal of `cfg.out` (see [`crate::journal`]), recovering what a killed
    /// run left. The journal belongs to one command: its source, schema and partitioning, and
    /// for file sources the chunk size, since a file's work items are its chunks (a resume
    /// with other chunk boundaries would read some lines twice).
    fn open_journal(&self, cfg: &Config, output: &OutputPlan, files: bool) -> Result<Journal> {
        let mut identity = format!(
            "source={}; fields={}; stats={}; partition_by={}",
            output.source,
            cfg.schema.fields.join(","),
            cfg.schema.stats.as_deref().unwrap_or_default().join(";"),
            cfg.writer.partition_by.join(",")
        );
        if files {
            identity.push_str(&format!("; chunk_bytes={}", cfg.fetch.batch_max_bytes));
        }
        let path = Journal::path_for(&cfg.out);
        let temps = if output.partitioned() {
            crate::journal::TempFiles::Under(cfg.out.clone())
        } else {
            crate::journal::TempFiles::Beside(cfg.out.clone())
        };
        let (journal, rec) = Journal::open(&path, &identity, &[temps])?;
        if rec.checkpoints > 0 {
            tracing::info!(
                journal = %path.display(),
                checkpoints = rec.checkpoints,
                items_done = journal.done().len(),
                renamed = rec.renamed,
                removed_temporary = rec.removed,
                "resuming: items in committed checkpoints are skipped"
            );
        }
        Ok(journal)
    }
}

/// A source as the `pinflow.source` metadata names it when no label was given.
fn describe_source(source: &Source) -> String {
    match source {
        Source::Template(t) => t.to_string(),
        Source::Lines { name, .. } => name.clone(),
        Source::Push(_) => "push".into(),
        Source::Files(inputs) => match inputs.first() {
            Some(first) if inputs.len() > 1 => {
                format!("{first} and {} more files", inputs.len() - 1)
            }
            Some(first) => first.to_string(),
            None => "no files".into(),
        },
        Source::Urls(urls) => match urls.first() {
            Some(first) if urls.len() > 1 => format!("{first} and {} more URLs", urls.len() - 1),
            Some(first) => first.clone(),
            None => "no URLs".into(),
        },
    }
}

/// The user's transforms and the pipeline's stop flag, for a thread that computes batches.
type InlineCompute = (Vec<Arc<dyn Transform>>, Arc<AtomicBool>);

/// What a parse thread does with one body batch: parse it, hand the cursors of paginated
/// bodies back to the fetcher, recycle the emptied batch, publish the counts and, when no
/// compute thread follows, compute the statistics and run the transforms. The writer holds one
/// too, for the short path.
struct ParseWork {
    parser: Parser,
    /// The parser's counts as last published to the registry.
    published: ParseStats,
    cursors: Option<crossbeam_channel::Sender<CursorReply>>,
    recycle: crossbeam_channel::Sender<BodyBatch>,
    /// Transforms and the stop flag, when this thread computes its own batches.
    compute: Option<InlineCompute>,
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
        if let Some((transforms, stop)) = &self.compute {
            compute_batch(&mut out, transforms, reg, stop)?;
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

/// Adds one parser's counts to the run's ledger.
fn add_parsed(summary: &mut Summary, stats: ParseStats) {
    summary.records_parsed += stats.records;
    summary.records_dead_lettered += stats.dead;
    for (k, v) in stats.dead_by_reason {
        *summary.dead_by_reason.entry(k).or_default() += v;
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

fn join<T: 'static>(h: JoinHandle<StageResult>, name: &str) -> Result<T> {
    match h.join() {
        Ok(Ok(any)) => Ok(*any
            .downcast::<T>()
            .expect("each thread returns its own report type")),
        Ok(Err(e)) => Err(e),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Thread {
                thread: name.to_string(),
                why: format!("panicked: {why}"),
            })
        }
    }
}

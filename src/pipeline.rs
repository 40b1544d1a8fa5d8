//! The wiring: threads, queues, pinning, shutdown, and the ledger of a run.
//!
//! ```text
//!  source ─► fetch (mio) ─[bodies]─► parse ×N ─[rows]─► compute ×M ─[rows+stats]─► writer ─► .parquet
//!               ▲                      │                                              └────► dead letters
//!               └──────[recycled body batches]─┘
//! ```
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

use crate::batch::{BodyBatch, LiveBatches, RecordsBatch};
use crate::compute;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fetch::{self, FetchChannels, FetchReport};
use crate::metrics::{Latency, Summary};
use crate::parse::{ParseStats, Parser};
use crate::plan::{self, Role, ThreadPlan};
use crate::sink::{self, DeadLetterLog, ParquetFile, WriterReport};
use crate::source::Source;

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
}

impl Pipeline {
    /// Validates `cfg`.
    pub fn new(cfg: Config) -> Result<Pipeline> {
        cfg.validate()?;
        Ok(Pipeline {
            cfg,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The flag that, once set (by a signal handler, another thread), stops taking new work;
    /// requests already admitted finish, the queues drain and the file is finalized.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
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
        // Open the output before fetching anything: an unwritable path fails the run at once.
        let file = ParquetFile::create(&cfg.out, &cfg.writer)?;
        let dead = DeadLetterLog::new(cfg.dead_letter_path());

        let q = cfg.queue_capacity;
        let (body_tx, body_rx) = bounded::<BodyBatch>(q);
        let (recycle_tx, recycle_rx) = bounded::<BodyBatch>(q + parse_n + 2);
        let (rows_tx, rows_rx) = bounded::<RecordsBatch>(q);
        let (out_tx, out_rx) = bounded::<RecordsBatch>(q);
        let live = Arc::new(LiveBatches::default());
        let pin_failed = Arc::new(AtomicBool::new(false));

        let spawn = |role: Role,
                     body: Box<dyn FnOnce() -> Result<Box<dyn std::any::Any + Send>> + Send>|
         -> Result<JoinHandle<Result<Box<dyn std::any::Any + Send>>>> {
            let core = plan.core_of(role);
            let pin_failed = Arc::clone(&pin_failed);
            thread::Builder::new()
                .name(format!("pinflow-{role}"))
                .spawn(move || {
                    if !plan::pin_current(core) {
                        pin_failed.store(true, Ordering::Relaxed);
                    }
                    body()
                })
                .map_err(|e| Error::Thread {
                    thread: format!("pinflow-{role}"),
                    why: e.to_string(),
                })
        };

        let writer = spawn(
            Role::Writer,
            Box::new(move || sink::run(out_rx, file, dead).map(|r| Box::new(r) as _)),
        )?;
        let mut computes = Vec::new();
        for j in 0..compute_n {
            let (rx, tx) = (rows_rx.clone(), out_tx.clone());
            computes.push(spawn(
                Role::Compute(j),
                Box::new(move || {
                    let mut latency = Latency::default();
                    for mut b in rx {
                        let t = Instant::now();
                        if let Some(rows) = &b.rows {
                            b.rows = Some(compute::add_statistics(rows));
                        }
                        latency.record(t.elapsed());
                        if tx.send(b).is_err() {
                            break;
                        }
                    }
                    Ok(Box::new(latency) as _)
                }),
            )?);
        }
        drop((rows_rx, out_tx));
        let mut parsers = Vec::new();
        for i in 0..parse_n {
            let (rx, tx, recycle) = (body_rx.clone(), rows_tx.clone(), recycle_tx.clone());
            parsers.push(spawn(
                Role::Parse(i),
                Box::new(move || {
                    let mut parser = Parser::new();
                    for mut batch in rx {
                        let out = parser.parse_batch(&mut batch);
                        batch.clear();
                        let _ = recycle.try_send(batch);
                        if tx.send(out).is_err() {
                            break;
                        }
                    }
                    Ok(Box::new((parser.stats, parser.latency)) as _)
                }),
            )?);
        }
        drop((body_rx, rows_tx, recycle_tx));
        let fetch_cfg = cfg.fetch.clone();
        let stop = Arc::clone(&self.stop);
        let chans = FetchChannels {
            out: body_tx,
            recycled: recycle_rx,
            live: Arc::clone(&live),
        };
        let fetcher = spawn(
            Role::Fetch,
            Box::new(move || fetch::run(&fetch_cfg, source, chans, stop).map(|r| Box::new(r) as _)),
        )?;

        // Join upstream first; report the most downstream error, which is the root cause when a
        // failing writer made the upstream stages stop.
        let mut errors: Vec<Error> = Vec::new();
        let mut summary = Summary::default();
        match join::<FetchReport>(fetcher, "pinflow-fetch") {
            Ok(r) => {
                if let Some(e) = &r.source_error {
                    errors.push(Error::Source {
                        source_name: "url list".into(),
                        why: e.clone(),
                    });
                }
                summary.fetch = r.stats;
                summary.latency.fetch = r.latency;
                summary.interrupted = r.interrupted;
            }
            Err(e) => errors.push(e),
        }
        for (i, h) in parsers.into_iter().enumerate() {
            match join::<(ParseStats, Latency)>(h, &format!("pinflow-parse-{i}")) {
                Ok((stats, latency)) => {
                    summary.records_parsed += stats.records;
                    summary.records_dead_lettered += stats.dead;
                    for (k, v) in stats.dead_by_reason {
                        *summary.dead_by_reason.entry(k).or_default() += v;
                    }
                    summary.latency.parse.merge(&latency);
                }
                Err(e) => errors.push(e),
            }
        }
        for (j, h) in computes.into_iter().enumerate() {
            match join::<Latency>(h, &format!("pinflow-compute-{j}")) {
                Ok(latency) => summary.latency.compute.merge(&latency),
                Err(e) => errors.push(e),
            }
        }
        match join::<WriterReport>(writer, "pinflow-writer") {
            Ok(w) => {
                summary.records_written = w.rows;
                summary.row_groups = w.row_groups;
                summary.output = w.output;
                summary.dead_letter_file = w.dead_letter_file;
                summary.latency.write = w.write_latency;
                summary.latency.end_to_end = w.end_to_end;
            }
            Err(e) => errors.push(e),
        }
        if let Some(e) = errors.pop() {
            return Err(e);
        }
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

fn join<T: 'static>(h: JoinHandle<Result<Box<dyn std::any::Any + Send>>>, name: &str) -> Result<T> {
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

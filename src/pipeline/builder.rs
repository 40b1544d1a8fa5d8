//! [`PipelineBuilder`] (configuration plus custom stages) and [`RunHandle`] (a run on its own
//! threads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::Pipeline;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ingest::Source;
use crate::metrics::live::Registry;
use crate::metrics::Summary;
use crate::stage::{Row, Sink, Transform};

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
    window: Option<crate::window::WindowSpec>,
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

    /// Time windows: the rows are aggregated per key and window on event time, and the window
    /// rows (`window_start`, `window_end`, the keys, `count`, `FIELD_AGG`...) are what the
    /// output and the sinks get, instead of the records. Replaces the configuration's `window`
    /// table. Late records are dead letters; a quiet source closes its windows after
    /// [`WindowSpec::with_idle`](crate::window::WindowSpec::with_idle), and the end of the
    /// run (or [`RunHandle::shutdown`]) writes every open window. See docs/usage.md, "Time
    /// windows".
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use pinflow::window::{Agg, WindowSpec};
    /// use pinflow::{Pipeline, Source};
    ///
    /// let rows = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&rows);
    /// let pipeline = Pipeline::builder()
    ///     .parquet(false) // window rows go only to the callback
    ///     .configure(|c| c.schema.fields = vec!["ts:timestamp".into(), "service:string".into(), "latency_ms:float64".into()])
    ///     .window(
    ///         WindowSpec::tumbling(Duration::from_secs(10))
    ///             .with_by(["service"])
    ///             .with_aggregates("latency_ms", [Agg::Count, Agg::Mean]),
    ///     )
    ///     .on_batch(move |batch| seen.lock().unwrap().push(batch.clone()))
    ///     .build()?;
    /// let (source, push) = Source::push(16);
    /// let run = pipeline.spawn(source)?;
    /// push.push(concat!(
    ///     "{\"ts\":\"2026-01-01T00:00:01Z\",\"service\":\"api\",\"latency_ms\":10}\n",
    ///     "{\"ts\":\"2026-01-01T00:00:04Z\",\"service\":\"api\",\"latency_ms\":30}\n",
    /// ))?;
    /// drop(push); // the end of input writes every open window
    /// let summary = run.join()?;
    /// assert_eq!((summary.records_windowed, summary.window_rows_written), (2, 1));
    /// assert!(summary.ledger_balances());
    /// let rows = rows.lock().unwrap();
    /// assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn window(mut self, spec: crate::window::WindowSpec) -> Self {
        self.window = Some(spec);
        self
    }

    /// Names the source in the files' `pinflow.source` metadata.
    pub fn source_label(mut self, label: impl Into<String>) -> Self {
        self.source_label = Some(label.into());
        self
    }

    /// Validates the configuration and makes the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let mut p = Pipeline::with_windows(self.cfg, self.window.is_some())?;
        // After the enrichers of the configuration's `[[enrich]]` tables.
        p.transforms.extend(self.transforms);
        p.sinks = parking_lot::Mutex::new(self.sinks);
        p.parquet = self.parquet;
        p.source_label = self.source_label;
        if let Some(spec) = self.window {
            spec.validate()
                .map_err(|why| Error::config("window", why))?;
            p.window = Some(Arc::new(spec));
        }
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

    /// Stops taking new work (a push source refuses further pushes; requests not yet sent are
    /// cancelled, those on a connection get `fetch.shutdown_timeout`), lets everything already
    /// received drain through every stage, finalizes the files, and returns the ledger.
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
            window: None,
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
}

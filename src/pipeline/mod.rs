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
//! fetcher ends when its source is drained and every admitted request has ended (or, once the
//! stop flag is set, when the requests on the wire have ended or `fetch.shutdown_timeout` has
//! cancelled them); dropping its sender ends the parse threads once the queue is empty, and so on to
//! the writer, which then finalizes the file. Nothing in a queue is ever discarded.

mod builder;
mod inspect;
mod ledger;
mod paths;
mod stages;

pub use builder::{PipelineBuilder, RunHandle};
pub use inspect::Inspection;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ingest::{self, Source};
use crate::journal::Journal;
#[cfg(feature = "metrics-endpoint")]
use crate::metrics::endpoint::Endpoint;
use crate::metrics::live::Registry;
use crate::metrics::Summary;
use crate::output::{self, DeadLetterLog, OutputPlan};
use crate::plan::{Role, ThreadPlan};
use crate::stage::{Sink, Transform};
use crate::transform::config as transform_config;
use ledger::{Baseline, Ledger};
use stages::{Compute, Spawner, StageInputs};

/// How often continuous mode (and a source that reads until stopped: a tail, a Kafka group
/// member without `exit_at_end`) rotates files when `writer.rotate_interval` is not set.
pub const DEFAULT_CONTINUOUS_ROTATION: std::time::Duration = std::time::Duration::from_secs(3600);

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
    /// The configuration's transforms (`[[transform]]`, `filter`, `drop`), run before the
    /// user's.
    config_steps: Vec<Arc<dyn Transform>>,
    /// User sinks, run on the writer thread; taken by a run and put back after it.
    sinks: parking_lot::Mutex<Vec<Box<dyn Sink>>>,
    /// Whether Parquet files are written at all (off: only the sinks get the rows).
    parquet: bool,
    /// Time windows: `window` of the configuration, or what [`PipelineBuilder::window`] set.
    /// On, the writer aggregates the rows into window rows, which are what is written.
    window: Option<Arc<crate::window::WindowSpec>>,
    /// `--out s3://BUCKET/PREFIX/`: where the files go; `cfg.out` is then in the staging
    /// directory.
    s3: Option<output::S3Target>,
}

/// The `[[enrich]]` lookups of `cfg`, in file order, their counters in `registry`: the first
/// transforms of the compute stage (the configuration's `[[transform]]` steps and a library
/// user's come after them), and the columns they add. Their lookup threads and caches live as
/// long as the pipeline, across the passes of continuous mode.
type Enrichers = (Vec<Arc<dyn Transform>>, Vec<arrow_schema::FieldRef>);
fn enrichers(cfg: &Config, registry: &Registry) -> Result<Enrichers> {
    #[cfg(feature = "http")]
    {
        let built = crate::enrich::build(&cfg.enrich, &cfg.fetch)?;
        registry
            .enrichers
            .lock()
            .extend(built.iter().map(|e| e.stats()));
        let added = built.iter().flat_map(|e| e.added_columns()).collect();
        Ok((
            built.into_iter().map(|e| e as Arc<dyn Transform>).collect(),
            added,
        ))
    }
    #[cfg(not(feature = "http"))]
    {
        let _ = registry;
        match cfg.enrich.is_empty() {
            true => Ok((Vec::new(), Vec::new())),
            false => Err(Error::config(
                "enrich",
                "lookups need the `http` cargo feature",
            )),
        }
    }
}

/// `--out s3://BUCKET/PREFIX/`: the target, with `cfg.out` turned into the local staging
/// path (`output.s3.staging_dir`, default `pinflow-s3-staging/BUCKET/PREFIX` in the working
/// directory; created): `part.parquet` in it, or the directory itself when partitioned.
fn stage_s3(cfg: &mut Config) -> Result<Option<output::S3Target>> {
    let Some(target) = cfg.out.to_str().and_then(output::S3Target::parse) else {
        return Ok(None);
    };
    let mut target = target?;
    target.config = cfg.output.s3.clone();
    #[cfg(feature = "s3")]
    crate::s3::refuse_retired_variables(|k| std::env::var(k).ok())?;
    let root = match &target.config.staging_dir {
        Some(dir) => dir.clone(),
        None => std::path::Path::new("pinflow-s3-staging")
            .join(&target.bucket)
            .join(target.prefix.trim_end_matches('/')),
    };
    std::fs::create_dir_all(&root)
        .map_err(|e| Error::output(&root, "create the staging directory", e))?;
    cfg.out = match cfg.writer.partition_by.is_empty() && !cfg.writer.file_per_kafka_partition {
        true => root.join("part.parquet"),
        false => root,
    };
    Ok(Some(target))
}

impl Pipeline {
    /// Validates `cfg`.
    pub fn new(cfg: Config) -> Result<Pipeline> {
        Pipeline::with_windows(cfg, false)
    }

    /// [`Pipeline::new`] for a pipeline that aggregates time windows even without `[window]`
    /// in `cfg` (the builder's [`PipelineBuilder::window`]): the thread plan depends on it.
    pub(crate) fn with_windows(mut cfg: Config, windowed: bool) -> Result<Pipeline> {
        let s3 = stage_s3(&mut cfg)?;
        cfg.validate()?;
        let window = match cfg.window.enabled() {
            true => Some(Arc::new(
                cfg.window_spec()
                    .map_err(|why| Error::config("window", why))?,
            )),
            false => None,
        };
        let windowed = windowed || window.is_some();
        let roles: Vec<Role> = ThreadPlan::for_run(
            &cfg.threads,
            windowed,
            cfg.window.threads,
            cfg.kafka.is_source(),
        )
        .threads
        .iter()
        .map(|t| t.0)
        .collect();
        let registry = Arc::new(Registry::new(&roles));
        // Duplicates first (no lookup is spent on a row that is dropped), then the `[[enrich]]`
        // lookups, then the `[[transform]]` steps and the flags' (which may use the looked-up
        // columns), then the library user's.
        let mut config_steps: Vec<Arc<dyn Transform>> = Vec::new();
        if let Some(key) = &cfg.fetch.dedupe_key {
            config_steps.push(Arc::new(crate::transform::dedupe::Dedupe::new(
                key,
                cfg.fetch.dedupe_window,
            )));
        }
        let (lookups, enriched) = enrichers(&cfg, &registry)?;
        config_steps.extend(lookups);
        // Bound at once to a fixed schema (with the looked-up columns): a step naming a column
        // the rows lack fails here.
        let layout = transform_config::parse_schema(&cfg).layout()?;
        config_steps.extend(transform_config::build_steps(
            &cfg,
            layout.as_ref(),
            &enriched,
        )?);
        Ok(Pipeline {
            cfg,
            stop: Arc::new(AtomicBool::new(false)),
            reopen: Arc::new(AtomicBool::new(false)),
            registry,
            #[cfg(feature = "metrics-endpoint")]
            endpoint: parking_lot::Mutex::new(None),
            source_label: None,
            transforms: Vec::new(),
            config_steps,
            sinks: parking_lot::Mutex::new(Vec::new()),
            parquet: true,
            window,
            s3,
        })
    }

    /// Names the source in every file's `pinflow.source` metadata (the command line passes
    /// the `--urls` argument, `demo` or `bench`). Without it, a run describes its [`Source`]:
    /// the template, the file name, or the first URL of a list and how many there are.
    pub fn with_source_label(mut self, label: impl Into<String>) -> Pipeline {
        self.source_label = Some(label.into());
        self
    }

    /// The flag that, once set (by a signal handler, another thread), stops taking new work:
    /// requests not yet sent are cancelled at once, those on a connection get
    /// `fetch.shutdown_timeout` to finish and are then cancelled (counted in
    /// [`FetchStats::cancelled`](crate::metrics::FetchStats::cancelled), left for a resumed
    /// run); every row already received is written and the file is finalized.
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
        ThreadPlan::for_run(
            &self.cfg.threads,
            self.window.is_some(),
            self.cfg.window.threads,
            self.cfg.kafka.is_source(),
        )
    }

    /// Runs the pipeline over `source` to the end and returns the ledger.
    ///
    /// Preflight and the output first (everything that can fail before a file exists or a
    /// request goes out), then the stage threads, downstream first; then the joins, upstream
    /// first, and the ledger.
    pub fn run(&self, mut source: Source) -> Result<Summary> {
        // CSV without configured fields: the header and first rows type the columns now, so
        // that every chunk's cells are written as the types the parse stage expects.
        let csv_cfg = match &source {
            Source::Files(inputs) => ingest::files::infer_schema(&self.cfg, inputs),
            _ => None,
        };
        let cfg = csv_cfg.as_ref().unwrap_or(&self.cfg);
        let plan = self.plan();
        let registry = &self.registry;
        // Latencies in the summary are this run's: the registry's histograms span all runs.
        let baseline = Baseline::take(registry);

        // `--out kafka://...`: no Parquet file (nothing to lock, replace or open), the
        // writer produces to the topic.
        let kafka = crate::kafka::target(
            &cfg.out,
            crate::kafka::Options {
                key_field: cfg.kafka.key_field.as_deref(),
                properties: &cfg.kafka.properties,
                journal: cfg.writer.journal,
                windows: self.window.is_some(),
                shutdown_timeout: cfg.fetch.shutdown_timeout,
            },
        )?;
        let parquet = self.parquet && kafka.is_none();
        // Open the output before fetching anything: an unwritable path fails the run at once.
        let mut output = self.output_plan(&source)?;
        output.enabled &= parquet;
        let records = self.records_plan(&output)?;
        ingest::preflight(&source, &cfg.fetch, cfg.every)?;
        ingest::listen::preflight(&source, cfg)?;
        self.check_since_field()?;
        self.check_file_per_kafka_partition(&source, parquet)?;
        transform_config::check_source(cfg, &source)?;
        paths::check(cfg, &source, &output)?;
        // Lock the output (held until this function returns): a second run writing the same
        // output is refused here, before it touches the first one's files or the journal.
        let _lock = match parquet {
            true => {
                output.check_target()?;
                Some(output.lock()?)
            }
            false => None,
        };
        let _records_lock = match &records {
            Some(r) => {
                r.check_target()?;
                Some(r.lock()?)
            }
            None => None,
        };
        tracing::info!(run_id = %output.run_id, source = %output.source, "run started");
        let polled = !matches!(
            source,
            Source::Files(_)
                | Source::Push(_)
                | Source::Tail(_)
                | Source::Listen(_)
                | Source::Kafka(_)
        );
        if cfg.every.is_some() && polled && cfg.fetch.dedupe_key.is_none() {
            tracing::warn!(
                "continuous mode without fetch.dedupe_key: each pass fetches every URL again \
                 and writes all of its records again (set fetch.dedupe_key to the column that \
                 identifies a record to drop the repeats)"
            );
        }
        // An output file from before is replaced only when asked: refused here, before
        // anything is fetched or any file touched.
        let replacing = parquet && output.replaces_a_file();
        let replaced = (replacing.then_some(&output).into_iter())
            .chain(records.iter().filter(|r| r.replaces_a_file()));
        for plan in replaced {
            if !cfg.writer.overwrite {
                return Err(Error::output(
                    &plan.out,
                    "check",
                    "already exists, and this run would replace it: give --overwrite \
                     (writer.overwrite = true) to replace it, or another path",
                ));
            }
        }
        // What killed runs left under temporary names (without a journal: its recovery
        // clears them itself, keeping those of committed checkpoints).
        let stale = match parquet && !cfg.writer.journal {
            true => self.output_files(&output).remove_dead_temps(),
            false => Vec::new(),
        };
        for path in &stale {
            tracing::warn!(file = %path.display(), "removed a temporary file a killed run left");
        }
        // The journal first: it finishes or clears what a killed run left, before this run
        // opens its own files.
        let mut journal = match cfg.writer.journal {
            true => Some(self.open_journal(
                &output,
                match &source {
                    Source::Files(inputs) => Some(inputs.as_slice()),
                    _ => None,
                },
            )?),
            false => None,
        };
        // A receive run logs admitted bodies beside its output and acknowledges them from
        // there (a killed run's log is read back by the next).
        if let Source::Listen(o) = &mut source {
            o.wal_dir = Some(crate::ingest::listen::wal_dir_for(&cfg.out));
            o.wal_owner = journal.as_ref().map_or(0, Journal::started);
        }
        // A tail resumes from the positions the journal saved, not by work items.
        if let Source::Tail(t) = &mut source {
            t.prepare(cfg, journal.as_mut())?;
        }
        // So does a Kafka source, by partition and offset.
        if let Source::Kafka(k) = &mut source {
            k.prepare(cfg, journal.as_mut())?;
        }
        // `{since}` polling resumes from its saved position, not by work items: every URL is
        // asked again, from where the committed rows reached.
        let skip = Arc::new(
            journal
                .as_ref()
                .filter(|_| cfg.fetch.since_field.is_none())
                .map(|j| j.done().clone())
                .unwrap_or_default(),
        );
        if let Some(j) = &journal {
            self.resume_since(cfg, j)?;
        }
        let first_file = match parquet {
            true => output.prepare()?,
            false => None,
        };
        let records = match records {
            Some(plan) => Some(output::RecordsOutput {
                first: plan.prepare()?,
                plan,
            }),
            None => None,
        };
        let dead = DeadLetterLog::new(cfg.dead_letter_path()).with_rotation(
            cfg.writer.dead_letter_max_bytes,
            cfg.writer.dead_letter_keep,
        );
        self.start_endpoint()?;

        registry.set_draining(false);
        let spawner = Spawner::new(plan.clone(), registry, &self.stop);
        let inputs = StageInputs {
            source,
            skip,
            output,
            first_file,
            dead,
            journal,
            sinks: std::mem::take(&mut *self.sinks.lock()),
            compute: Compute {
                transforms: self.all_transforms(),
                stop: Arc::clone(&self.stop),
            },
            window: self.window.clone(),
            records,
            kafka,
        };
        // The parse stage also makes the lineage columns the transforms' metadata reads.
        let parse_cfg = Config {
            schema: transform_config::parse_schema(cfg),
            ..cfg.clone()
        };
        let running = stages::start(&spawner, &parse_cfg, registry, inputs)?;
        registry.set_running(true);

        // Each stage ends once the one before it has ended and its queue is empty.
        let mut ledger = Ledger::default();
        ledger.ingested(running.ingest.join());
        registry.set_draining(true);
        for parser in running.parsers {
            ledger.parsed(parser.join());
        }
        for compute in running.computes {
            ledger.computed(compute.join());
        }
        ledger.written(running.writer.join(), &running.writer_parsed);
        for window in running.windows {
            ledger.computed(window.join());
        }
        registry.set_running(false);
        // The sinks come back for the next run.
        *self.sinks.lock() = std::mem::take(&mut *running.sinks_back.lock());

        if let Some(empty) = ledger
            .empty_file_of_a_failed_run()
            .filter(|_| !cfg.writer.journal)
        {
            match std::fs::remove_file(empty) {
                Ok(()) => {
                    tracing::info!(file = %empty.display(), "removed the run's empty output file")
                }
                Err(e) => {
                    tracing::warn!(file = %empty.display(), error = %e, "could not remove the run's empty output file")
                }
            }
        }
        let mut summary = ledger.finish(registry, &baseline)?;
        summary.peak_live_batches = running.live.peak();
        summary.live_batch_bound =
            cfg.max_live_batches(plan.parse_threads(), plan.compute_threads());
        summary.pinning_partial = plan.partial || spawner.pin_failed();
        summary.replaced = replacing && summary.output.as_deref() == Some(cfg.out.as_path());
        summary.stale_temporaries_removed = stale.len() as u64;
        if registry
            .kafka_source
            .active
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            summary.kafka_partitions = registry.kafka_source.partitions.lock().clone();
        }
        summary.plan = plan.describe();
        summary.schema = running.inferred.get().map(|l| l.describe_inferred());
        if let Some(c) = &csv_cfg {
            summary.schema = Some(format!(
                "inferred from the CSV header and first rows: {}",
                c.schema.fields.join(", ")
            ));
        }
        if spawner.pin_failed() {
            summary.plan.push_str(" (some threads could not be pinned)");
        }
        Ok(summary)
    }

    /// Where this run's output goes, and what its files say about it.
    fn output_plan(&self, source: &Source) -> Result<OutputPlan> {
        let cfg = &self.cfg;
        Ok(OutputPlan {
            out: cfg.out.clone(),
            writer: cfg.writer.clone(),
            // Continuous mode always rotates, hourly unless told otherwise: a file is visible
            // only once finalized, and one file per run would never be. So does a source that
            // reads until stopped, whose checkpoints also commit its position (a Kafka group's
            // offsets, a tail's): without them nothing would be committed before the stop.
            rotate: cfg
                .writer
                .rotate_interval
                .or((cfg.every.is_some() || source.runs_until_stopped())
                    .then_some(DEFAULT_CONTINUOUS_ROTATION)),
            reopen: Arc::clone(&self.reopen),
            // A label is often the `--urls` argument: no password of it goes into a file.
            source: self
                .source_label
                .as_deref()
                .map(|l| crate::ingest::url::redact(l).into_owned())
                .unwrap_or_else(|| source.describe()),
            run_id: output::new_run_id(),
            // Transforms may reshape the rows: then a file takes the schema of its first rows.
            schema: match self.window.as_ref() {
                Some(spec) => self.window_schema(spec)?,
                None => self.record_schema()?,
            },
            enabled: self.parquet,
            s3: self.s3.clone(),
        })
    }

    /// The schema of the records' rows, when it is known before any record is read.
    fn record_schema(&self) -> Result<Option<arrow_schema::SchemaRef>> {
        let cfg = &self.cfg;
        Ok(match self.all_transforms().is_empty() {
            // Left to the records: a run that finds none still writes the log layout.
            true if cfg.schema.decides_from_records() => cfg
                .schema
                .layout_of(crate::schema::log_fields())
                .ok()
                .map(|l| l.output_schema()),
            true => cfg.schema.layout()?.map(|l| l.output_schema()),
            false => None,
        })
    }

    /// Windows: the schema of the window rows, when the records' schema is fixed (given by
    /// `schema.fields`, or no inference): the spec is checked against it here, before anything
    /// is fetched, and a column it names that the rows lack is an error naming its key. Left
    /// to the records (inferred, or reshaped by transforms), the check comes with the first
    /// rows, on the writer.
    fn window_schema(
        &self,
        spec: &crate::window::WindowSpec,
    ) -> Result<Option<arrow_schema::SchemaRef>> {
        let cfg = &self.cfg;
        if !self.all_transforms().is_empty() || cfg.schema.decides_from_records() {
            return Ok(None);
        }
        let Some(rows) = cfg.schema.layout()?.map(|l| l.output_schema()) else {
            return Ok(None);
        };
        crate::window::WindowOperator::new(Arc::new(spec.clone()), &rows)
            .map(|op| Some(op.output_schema()))
    }
}

impl Pipeline {
    /// `fetch.since_field` against the records' schema, when it is known before any record
    /// (fixed fields, no transforms): the column must be there, a timestamp or an int64.
    /// Left to the records, the writer checks it with the first rows.
    fn check_since_field(&self) -> Result<()> {
        let Some(field) = self.cfg.fetch.since_field.as_deref() else {
            return Ok(());
        };
        // Dropping duplicates reshapes nothing; other transforms may.
        let reshaped = self
            .all_transforms()
            .iter()
            .any(|t| t.name() != "fetch.dedupe_key");
        if reshaped || self.cfg.schema.decides_from_records() {
            return Ok(());
        }
        let Some(schema) = self.cfg.schema.layout()?.map(|l| l.output_schema()) else {
            return Ok(());
        };
        crate::output::since_column_kind(&schema, field).map(|_| ())
    }

    /// A resumed run's `{since}` position: what the journal's last checkpoint saved. A
    /// position saved for another column is refused rather than taken for this one's.
    fn resume_since(&self, cfg: &Config, journal: &Journal) -> Result<()> {
        let (Some(field), Some(saved)) = (cfg.fetch.since_field.as_deref(), journal.since()) else {
            return Ok(());
        };
        if saved.field != field {
            return Err(Error::config(
                "fetch.since_field",
                format!(
                    "is `{field}`, but the journal {} saved the position of `{}`: run with \
                     --since-field {} to go on from it, or start afresh (move the journal aside)",
                    Journal::path_for(&cfg.out).display(),
                    saved.field,
                    saved.field
                ),
            ));
        }
        self.registry.since.advance(saved.value, saved.timestamp);
        tracing::info!(
            field,
            since = %crate::metrics::live::since_text(saved.value, saved.timestamp),
            "resuming from the {{since}} position the journal saved"
        );
        Ok(())
    }

    /// `writer.file_per_kafka_partition` needs what names its files (a Kafka source), what
    /// keeps each offset in one file (a journal: a run without one may write an offset again,
    /// and a file of the same name would replace the first), and rows of one partition each
    /// (not window rows, not another partitioning).
    fn check_file_per_kafka_partition(&self, source: &Source, parquet: bool) -> Result<()> {
        let w = &self.cfg.writer;
        if !w.file_per_kafka_partition {
            return Ok(());
        }
        let why = if !matches!(source, Source::Kafka(_)) {
            "needs a Kafka source (kafka.brokers, kafka.topics, kafka.group): files are named by \
             Kafka topic, partition and offset"
        } else if !parquet {
            "needs Parquet files as the output"
        } else if !w.journal {
            "needs writer.journal (--journal): without it a restart may write an offset again, \
             and its file would take the name of the file that already holds it"
        } else if !w.partition_by.is_empty() {
            "cannot be combined with writer.partition_by: the directories are topic=T/partition=P"
        } else if self.window.is_some() {
            "cannot be combined with windows: a window's rows come from many partitions"
        } else {
            return Ok(());
        };
        Err(Error::config("writer.file_per_kafka_partition", why))
    }

    /// The configuration's transforms, then the user's.
    fn all_transforms(&self) -> Vec<Arc<dyn Transform>> {
        self.config_steps
            .iter()
            .chain(&self.transforms)
            .cloned()
            .collect()
    }

    /// How the files of `output` are named (for the journal and the stale-file cleanup); with
    /// `window.records`, the records' files too.
    fn output_files(&self, output: &OutputPlan) -> crate::journal::OutputFiles {
        use crate::journal::OutputFiles;
        let main = if output.partitioned() {
            OutputFiles::Under {
                root: output.out.clone(),
                partition_by: match output.writer.file_per_kafka_partition {
                    true => vec!["topic".into(), "partition".into()],
                    false => output.writer.partition_by.clone(),
                },
                kafka_names: output.writer.file_per_kafka_partition,
            }
        } else {
            OutputFiles::Beside(output.out.clone())
        };
        match self.records_path() {
            Some(records) => {
                OutputFiles::Both(Box::new(main), Box::new(OutputFiles::Beside(records)))
            }
            None => main,
        }
    }

    /// `window.records`, when windows are on and files are written.
    fn records_path(&self) -> Option<std::path::PathBuf> {
        let on = self.window.is_some() && self.parquet;
        self.cfg.window.records.clone().filter(|_| on)
    }

    /// `window.records`: the records' output, beside the window rows' and like it (rotation,
    /// row groups, codec, run identity) but unpartitioned, with the records' schema.
    fn records_plan(&self, output: &OutputPlan) -> Result<Option<OutputPlan>> {
        let Some(out) = self.records_path() else {
            return Ok(None);
        };
        let mut plan = output.clone();
        plan.out = out;
        // Local files: the window rows may go to object storage, the records stay here.
        plan.s3 = None;
        plan.writer.partition_by.clear();
        plan.writer.file_per_kafka_partition = false;
        plan.schema = self.record_schema()?;
        Ok(Some(plan))
    }

    /// Opens the resume journal of `cfg.out` (see [`crate::journal`]), recovering what a killed
    /// run left. The journal belongs to one command: its source, schema and partitioning, and
    /// for file sources the chunk size, since a file's work items are its chunks (a resume
    /// with other chunk boundaries would read some lines twice), and for objects of a store
    /// their ETags and sizes (a resume over an object that changed, or a listing that gained
    /// or lost one, would skip the wrong chunks).
    fn open_journal(
        &self,
        output: &OutputPlan,
        files: Option<&[ingest::files::FileInput]>,
    ) -> Result<Journal> {
        let cfg = &self.cfg;
        let mut identity = format!(
            "source={}; fields={}; stats={}; partition_by={}",
            output.source,
            cfg.schema.fields.join(","),
            cfg.schema.stats.as_deref().unwrap_or_default().join(";"),
            cfg.writer.partition_by.join(",")
        );
        // (Only when on: the journals of earlier runs, without the key, stay valid.)
        if cfg.writer.file_per_kafka_partition {
            identity.push_str("; file_per_kafka_partition");
        }
        if let Some(inputs) = files {
            identity.push_str(&format!("; chunk_bytes={}", cfg.fetch.batch_max_bytes));
            if let Some(objects) = ingest::files::objects_identity(inputs) {
                identity.push_str(&format!("; objects={objects}"));
            }
        }
        // The transforms shape the rows: a resume with others would mix two shapes.
        if !(cfg.transform.is_empty()
            && cfg.filter.is_empty()
            && cfg.drop.is_empty()
            && cfg.rename.is_empty())
        {
            let tables: Vec<String> = cfg
                .transform
                .iter()
                .map(|t| toml::to_string(t).unwrap_or_default().replace('\n', " "))
                .collect();
            identity.push_str(&format!(
                "; transforms={tables:?}; filter={:?}; drop={:?}; rename={:?}",
                cfg.filter, cfg.drop, cfg.rename
            ));
        }
        // With the records written as well, a journal begun without them (or with them
        // elsewhere) would resume with the records of its committed items missing.
        if let Some(records) = self.records_path() {
            identity.push_str(&format!("; window.records={}", records.display()));
        }
        let path = Journal::path_for(&cfg.out);
        let files = self.output_files(output);
        let (journal, rec) = Journal::open(&path, &identity, &files)?;
        // Windows: the state the last checkpoint saved must be of these windows (the writer
        // restores it before its first batch).
        let window_key = match cfg.window.enabled() {
            true => Some(crate::output::window_state_key(
                &cfg.window_spec().map_err(|why| Error::Config {
                    what: "window".into(),
                    why,
                })?,
            )),
            false => None,
        };
        journal.check_state(window_key.as_deref())?;
        if rec.torn_line {
            tracing::warn!(
                journal = %path.display(),
                "cut off the journal's torn last line (a crash while it was appended): its \
                 checkpoint was never committed, and its items are fetched again"
            );
        }
        if rec.checkpoints > 0 && cfg.fetch.since_field.is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rotation period the writer gets for `source` under `cfg`.
    fn rotation(cfg: Config, source: &Source) -> Option<std::time::Duration> {
        Pipeline::new(cfg)
            .unwrap()
            .output_plan(source)
            .unwrap()
            .rotate
    }

    #[test]
    fn sources_that_read_until_stopped_rotate_hourly_unless_told_otherwise() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::new(d.path().join("o.parquet"));
        let tail = Source::tail(&d.path().join("*.log").display().to_string()).unwrap();
        assert_eq!(
            rotation(cfg.clone(), &tail),
            Some(DEFAULT_CONTINUOUS_ROTATION)
        );
        let mut every_minute = cfg.clone();
        every_minute.writer.rotate_interval = Some(std::time::Duration::from_secs(60));
        assert_eq!(
            rotation(every_minute, &tail),
            Some(std::time::Duration::from_secs(60))
        );
        let file = d.path().join("in.ndjson");
        std::fs::write(&file, "{}\n").unwrap();
        let files = Source::files(&[file.display().to_string()]).unwrap();
        assert_eq!(rotation(cfg.clone(), &files), None, "a run that ends");
        #[cfg(feature = "kafka")]
        {
            let kafka = |exit_at_end| {
                let k = crate::ingest::kafka::KafkaSource::new("127.0.0.1:9", &["t".into()], "g")
                    .unwrap()
                    .exit_at_end(exit_at_end);
                Source::kafka(k)
            };
            assert_eq!(
                rotation(cfg.clone(), &kafka(false)),
                Some(DEFAULT_CONTINUOUS_ROTATION)
            );
            assert_eq!(rotation(cfg, &kafka(true)), None, "--exit-at-end ends");
        }
    }
}

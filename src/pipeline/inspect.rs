//! `Pipeline::inspect`: the first records of a source, what they look like, and what a run
//! would make of them, without writing anything (`pinflow inspect`).
//!
//! The source's own ingest (the mio fetcher, the file reader) runs alone on a thread until it
//! has delivered bodies holding enough records, then is stopped; the bodies are parsed and
//! computed (statistics, the configuration's transforms, the library's transforms) on the
//! calling thread, by the same code a run's stage threads use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use crossbeam_channel::bounded;

use super::stages::{Compute, Parsers};
use super::Pipeline;
use crate::batch::{BodyBatch, DeadLetter, LiveBatches, Outcome};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::handoff::{IdleSignal, IngestChannels, ToParse, Upstream};
use crate::ingest::{self, Source};
use crate::metrics::live::Registry;
use crate::plan::Role;
use crate::schema::Layout;
use crate::transform::{compute_batch, config as transform_config};

/// What [`Pipeline::inspect`] found.
#[derive(Debug)]
pub struct Inspection {
    /// Bodies read (responses, file chunks).
    pub bodies: usize,
    /// Requests that failed, with their URL and reason.
    pub failures: Vec<(String, String)>,
    /// The shape of the bodies, in words (`NDJSON`, `a JSON array`, an envelope's field).
    pub envelope: String,
    /// The envelope field the records were found in, when the bodies look like envelopes and
    /// `fetch.records_field` is not set (what to set it to).
    pub suggested_records_field: Option<String>,
    /// The layout a run would use: the configured schema, or the one the records chose.
    pub layout: Option<Arc<Layout>>,
    /// Whether `layout` was inferred from these records (not configured).
    pub inferred: bool,
    /// Records parsed (rows and dead letters) from the bodies read.
    pub records: u64,
    /// The first rows after the statistics and the transforms (at most the number asked for).
    pub rows: Vec<RecordBatch>,
    /// Rows the transforms filtered out, among the records parsed.
    pub filtered: u64,
    /// Records the parse stage or the transforms turned away.
    pub dead_letters: Vec<DeadLetter>,
}

/// The shape of the first body, in words.
fn envelope_of(body: &[u8], records_field: Option<&str>) -> String {
    if let Some(f) = records_field {
        return format!("a JSON object with the records in `{f}` (fetch.records_field)");
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let Some(start) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return "empty".into();
    };
    let body = &body[start..];
    match body[0] {
        b'[' => "a JSON array of records".into(),
        b'{' if body.windows(2).any(|w| w == b"\n{") => "NDJSON: one JSON object per line".into(),
        b'{' => "one JSON object: a record".into(),
        _ => "not JSON".into(),
    }
}

/// Runs `source`'s ingest alone until its bodies hold `want` records (or it ends).
fn sample(cfg: &Config, source: Source, want: usize) -> Result<Vec<BodyBatch>> {
    let registry = Arc::new(Registry::new(&[Role::Fetch]));
    let q = cfg.queue_capacity.max(1);
    let (body_tx, body_rx) = bounded::<BodyBatch>(q);
    let (_recycle_tx, recycle_rx) = bounded(q + 2);
    // No parse thread replies with a page's cursor here: the first pages are enough. The
    // sender goes at once, so the fetcher sees that no reply will come and ends each chain
    // (kept, it waited for one forever).
    let (cursor_tx, cursor_rx) = crossbeam_channel::unbounded();
    drop(cursor_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let chans = IngestChannels {
        out: ToParse::new(body_tx, Arc::new(Upstream::default())),
        recycled: recycle_rx,
        live: Arc::new(LiveBatches::default()),
        registry: Arc::clone(&registry),
        thread: registry.thread_index(Role::Fetch).unwrap_or(usize::MAX),
        cursors: cfg.fetch.cursor_field.as_ref().map(|_| cursor_rx),
        skip: Arc::default(),
        parse_idle: Arc::new(IdleSignal::default()),
        short_path: None,
        descriptor_reserve: cfg.descriptor_reserve(),
        // Nothing is windowed here: batches need no end-of-file marks.
        source_order: false,
    };
    let file_opts = ingest::files::FileOptions::from_config(cfg);
    let mut fetch = cfg.fetch.clone();
    // A handful of records needs a handful of requests at a time (a template's next URLs are
    // not sent once enough came back), and what is still on the wire when they have come is
    // not waited for long: nothing is written.
    fetch.max_in_flight = fetch.max_in_flight.min(want.max(4));
    fetch.shutdown_timeout = fetch
        .shutdown_timeout
        .min(std::time::Duration::from_secs(1));
    let stop_ingest = Arc::clone(&stop);
    let ingest = std::thread::Builder::new()
        .name("pinflow-inspect".into())
        .spawn(move || ingest::run(source, &fetch, &file_opts, None, chans, stop_ingest))
        .map_err(|e| Error::Thread {
            thread: "pinflow-inspect".into(),
            why: e.to_string(),
        })?;
    let path: Option<Vec<String>> = cfg
        .fetch
        .records_field
        .as_ref()
        .map(|f| f.split('.').map(String::from).collect());
    let mut out = Vec::new();
    let mut records = 0;
    let mut scratch = Vec::new();
    while let Ok(batch) = body_rx.recv() {
        for item in &batch.items {
            if item.outcome != Outcome::Body {
                continue;
            }
            let body = &batch.arena[item.body.clone()];
            if crate::parse::inflate(body, item.encoding, cfg.fetch.max_body_bytes, &mut scratch)
                .is_ok()
            {
                records +=
                    crate::parse::infer::infer(std::iter::once(&scratch[..]), path.as_deref()).1;
            }
        }
        out.push(batch);
        if records >= want {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Whatever the fetcher still sends finds no receiver, and it ends.
    drop(body_rx);
    match ingest.join() {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(Error::Thread {
                thread: "pinflow-inspect".into(),
                why: "panicked".into(),
            })
        }
    }
    Ok(out)
}

impl Pipeline {
    /// Reads (or fetches) the first `n` records of `source` and shows what a run would make
    /// of them: the bodies' envelope, the layout (configured, or inferred from these
    /// records), and the first rows after the statistics and the transforms. Writes nothing;
    /// the source is stopped once it has delivered enough.
    pub fn inspect(&self, source: Source, n: usize) -> Result<Inspection> {
        let cfg = &self.cfg;
        transform_config::check_source(cfg, &source)?;
        let mut batches = sample(cfg, source, n.max(1))?;
        let parse_cfg = Config {
            schema: transform_config::parse_schema(cfg),
            ..cfg.clone()
        };
        let parsers = Parsers::new(&parse_cfg)?;
        let mut parser = parsers.make();
        let compute = Compute {
            transforms: self.all_transforms(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let registry = Registry::new(&[]);
        let mut found = Inspection {
            bodies: 0,
            failures: Vec::new(),
            envelope: "no body was read".into(),
            suggested_records_field: None,
            layout: None,
            inferred: cfg.schema.fields.is_empty(),
            records: 0,
            rows: Vec::new(),
            filtered: 0,
            dead_letters: Vec::new(),
        };
        let mut scratch = Vec::new();
        let mut decoded: Vec<Vec<u8>> = Vec::new();
        let mut rows = 0;
        for batch in &mut batches {
            for item in &batch.items {
                match &item.outcome {
                    Outcome::Body => {
                        found.bodies += 1;
                        let body = &batch.arena[item.body.clone()];
                        if crate::parse::inflate(
                            body,
                            item.encoding,
                            cfg.fetch.max_body_bytes,
                            &mut scratch,
                        )
                        .is_ok()
                        {
                            decoded.push(scratch.clone());
                        }
                    }
                    Outcome::Failed(why) => found
                        .failures
                        .push((batch.url(item).to_string(), why.clone())),
                }
            }
            if rows >= n {
                continue;
            }
            let mut out = parser.try_parse_batch(batch)?;
            let before = registry.records_filtered.load(Ordering::Relaxed);
            compute_batch(&mut out, &compute.transforms, &registry)?;
            found.filtered += registry.records_filtered.load(Ordering::Relaxed) - before;
            found.dead_letters.append(&mut out.dead_letters);
            if let Some(r) = out.rows.take() {
                let take = r.num_rows().min(n - rows);
                rows += take;
                found.rows.push(r.slice(0, take));
            }
        }
        found.records = parser.stats.records;
        found.layout = parser.layout().cloned();
        if let Some(first) = decoded.first() {
            found.envelope = envelope_of(first, cfg.fetch.records_field.as_deref());
        }
        if cfg.fetch.records_field.is_none() {
            found.suggested_records_field =
                crate::parse::infer::envelope_field(decoded.iter().map(Vec::as_slice));
        }
        Ok(found)
    }
}

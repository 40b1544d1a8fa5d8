//! Enrichment: `[[enrich]]` lookups that add columns to every row, on the compute stage.
//!
//! Each `[[enrich]]` table becomes an [`Enricher`], a [`Transform`] the pipeline runs before
//! the user's transforms (in file order). For each batch it
//! 1. makes each row's lookup key: the URL template filled with the row's fields,
//!    percent-escaped (HTTP), or the key field's text (a static table). A row whose key field
//!    is null or missing gets no lookup: null columns and the reason;
//! 2. looks up each *distinct* key once: in the cache (HTTP), or in the table;
//! 3. asks the lookup client for the misses and **waits** for them. The compute thread blocks,
//!    so batches waiting for lookups are bounded by the compute threads (the parse threads when
//!    the plan has none), and the queues behind them fill: back-pressure, as with a slow
//!    writer. Order is kept, because the batch leaves only once complete;
//! 4. appends the new typed columns (`fields`, typed by `types`), and `_enrich_error` (the
//!    reason of a row's failure, null when it has none) with `on_error = "null"`. With
//!    `"dead-letter"` a failed row is taken out of the batch and written to the dead-letter
//!    file with its reason (through [`Transform::apply_rejecting`], class `enrich failed`);
//!    with `"fail"` the run stops with the reason.
//!
//! A 404, an empty body, `null` or `{}` is "no value": null columns, no error, cached for
//! `negative_ttl`. A key missing from a table is the same.
//!
//! The HTTP side ([`client`]) is one thread per enricher with a mio event loop, keep-alive
//! connections up to `concurrency`, the fetcher's HTTP/1.1 framing and TLS; concurrent lookups
//! of one URL make one HTTP call (coalescing). The cache ([`cache`]) serves answers for `ttl`,
//! "no value" for `negative_ttl`, and stale answers up to `max_stale` past them while they are
//! fetched again, or when fetching them again fails.
//!
//! Metrics (per enricher, label `enricher`): `pinflow_enrich_hits_total`, `_misses_total`,
//! `_coalesced_total`, `_negative_hits_total`, `_stale_served_total`, `_retries_total`,
//! `_errors_total{reason}` and the histogram `pinflow_enrich_lookup_duration_seconds`. Hits,
//! misses, negative hits and stale serves count distinct keys per batch.

pub mod cache;
pub mod client;
pub mod config;
pub mod table;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use self::cache::{Cache, Cached, Scalar};
use self::client::{Client, Failure, Job, Outcome};
use self::config::{escape_into, key_text, ColumnType, OnError, Spec};
use self::table::Reloadable;
use crate::config::{EnrichConfig, FetchConfig, UrlPart};
use crate::error::{Error, Result};
use crate::metrics::live::EnrichStats;
use crate::stage::{BoxError, Rejected, Transform};

pub use self::table::reload_flag;

/// The column that says why a row's lookup failed (`on_error = "null"`).
pub const ERROR_COLUMN: &str = "_enrich_error";

/// Where an enricher's answers come from.
enum Lookups {
    Http { cache: Arc<Cache>, client: Client },
    Table(Reloadable),
}

/// One `[[enrich]]` table at work: a transform adding its columns to every batch.
pub struct Enricher {
    spec: Arc<Spec>,
    lookups: Lookups,
    stats: Arc<EnrichStats>,
}

/// A row's key: its slot among the batch's distinct keys, or why it has none.
enum RowKey {
    Slot(u32),
    None(Arc<str>),
}

impl Enricher {
    /// The enricher of the `n`th `[[enrich]]` table (`cfg`), with the fetcher's TLS settings
    /// (`fetch`). An HTTP enricher starts its lookup thread; a table is read now (an error
    /// names the file).
    pub fn new(n: usize, cfg: &EnrichConfig, fetch: &FetchConfig) -> Result<Enricher> {
        let spec = Arc::new(Spec::new(n, cfg)?);
        let stats = Arc::new(EnrichStats::new(&spec.name));
        let lookups = match &cfg.table {
            Some(path) => Lookups::Table(Reloadable::open(path, &spec)?),
            None => {
                let cache = Arc::new(Cache::new(
                    cfg.max_entries,
                    cfg.max_bytes,
                    cfg.ttl,
                    cfg.negative_ttl,
                    cfg.max_stale,
                ));
                let client = Client::start(
                    Arc::clone(&spec),
                    Arc::clone(&cache),
                    Arc::clone(&stats),
                    fetch,
                )?;
                Lookups::Http { cache, client }
            }
        };
        Ok(Enricher {
            spec,
            lookups,
            stats,
        })
    }

    /// Its counters, for the metrics registry.
    pub fn stats(&self) -> Arc<EnrichStats> {
        Arc::clone(&self.stats)
    }

    /// Its name (`name`, or `enrich-N`).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Where its table was written in the configuration file (for ordering it among other
    /// steps of the file).
    pub fn position(&self) -> crate::config::EnrichPosition {
        self.spec.cfg.position
    }

    /// Reads a static table's file again now; a failure keeps the table in use (and is
    /// returned). Returns the rows read. An HTTP enricher has nothing to reload: `Ok(0)`.
    pub fn reload(&self) -> Result<usize> {
        match &self.lookups {
            Lookups::Table(t) => t.reload(&self.spec),
            Lookups::Http { .. } => Ok(0),
        }
    }

    /// Each row's key (a slot in `keys`) or why it has none.
    fn keys(&self, rows: &RecordBatch) -> (Vec<RowKey>, Vec<String>) {
        let fields = self.spec.key_fields();
        let cols: Vec<Option<&dyn Array>> = fields
            .iter()
            .map(|f| rows.column_by_name(f).map(|c| c.as_ref()))
            .collect();
        let mut distinct: HashMap<String, u32> = HashMap::new();
        let mut keys = Vec::new();
        let mut reasons: HashMap<String, Arc<str>> = HashMap::new();
        let mut out = Vec::with_capacity(rows.num_rows());
        // Rows are matched by their fields' texts (length-prefixed, so no two differ only in
        // where one ends); the URL is made once per distinct key, not per row.
        let mut raw = String::new();
        for i in 0..rows.num_rows() {
            raw.clear();
            let made = fields.iter().zip(&cols).try_for_each(|(f, c)| {
                let text = key_text(*c, f, i)?;
                let _ = write!(raw, "{}:{text}", text.len());
                Ok::<(), String>(())
            });
            let made = made.and_then(|()| match distinct.get(raw.as_str()) {
                Some(&s) => Ok(s),
                None => {
                    let mut key = String::new();
                    match self.lookups {
                        Lookups::Table(_) => key.push_str(&key_text(cols[0], fields[0], i)?),
                        Lookups::Http { .. } => self.url_of(&cols, i, &mut key)?,
                    }
                    let s = keys.len() as u32;
                    distinct.insert(raw.clone(), s);
                    keys.push(key);
                    Ok(s)
                }
            });
            out.push(match made {
                Ok(s) => RowKey::Slot(s),
                Err(why) => {
                    self.stats.error("no_key");
                    let r = reasons
                        .entry(why)
                        .or_insert_with_key(|w| Arc::from(format!("{}: {w}", self.spec.name)));
                    RowKey::None(Arc::clone(r))
                }
            });
        }
        (out, keys)
    }

    /// Row `i`'s lookup URL, into `out`.
    fn url_of(
        &self,
        cols: &[Option<&dyn Array>],
        i: usize,
        out: &mut String,
    ) -> std::result::Result<(), String> {
        let mut field = 0;
        for part in &self.spec.url {
            match part {
                UrlPart::Text(t) => out.push_str(t),
                UrlPart::Field(f) => {
                    escape_into(out, &key_text(cols[field], f, i)?);
                    field += 1;
                }
            }
        }
        Ok(())
    }

    /// The answer for each distinct key: from the cache, or asked of the client and waited
    /// for.
    fn answers(&self, keys: Vec<String>) -> Vec<Outcome> {
        match &self.lookups {
            Lookups::Table(t) => {
                let table = t.table(&self.spec);
                keys.iter()
                    .map(|k| {
                        let a = table.get(k);
                        let counter = match a {
                            Some(_) => &self.stats.hits,
                            None => &self.stats.negative_hits,
                        };
                        counter.fetch_add(1, Relaxed);
                        Ok(a)
                    })
                    .collect()
            }
            Lookups::Http { cache, client } => self.ask(cache, client, keys),
        }
    }

    fn ask(&self, cache: &Cache, client: &Client, keys: Vec<String>) -> Vec<Outcome> {
        let now = Instant::now();
        let mut out: Vec<Option<Outcome>> = vec![None; keys.len()];
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut waiting = 0usize;
        let s = &self.stats;
        for (slot, url) in keys.into_iter().enumerate() {
            match cache.get(&url, now) {
                Cached::Fresh(a) => {
                    match a {
                        Some(_) => s.hits.fetch_add(1, Relaxed),
                        None => s.negative_hits.fetch_add(1, Relaxed),
                    };
                    out[slot] = Some(Ok(a));
                }
                Cached::Stale(a) => {
                    s.stale_served.fetch_add(1, Relaxed);
                    // Served now; the answer is fetched again for the batches after this one.
                    client.ask(Job { url, reply: None });
                    out[slot] = Some(Ok(a));
                }
                Cached::Miss => {
                    s.misses.fetch_add(1, Relaxed);
                    let reply = Some((tx.clone(), slot));
                    if client.ask(Job { url, reply }) {
                        waiting += 1;
                    }
                }
            }
        }
        drop(tx);
        client.wake();
        // Every job sent is answered exactly once; the channel closes early only if the
        // lookup thread is gone, and the keys still open then fail below.
        while waiting > 0 {
            match rx.recv() {
                Ok((slot, o)) => {
                    out[slot] = Some(o);
                    waiting -= 1;
                }
                Err(_) => break,
            }
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(Failure {
                        class: "internal",
                        detail: "the lookup thread has ended".into(),
                    })
                })
            })
            .collect()
    }
}

impl Enricher {
    /// The columns this enricher adds to (or replaces in) every batch, as the steps after it
    /// see them: the `fields`, typed, then `_enrich_error` with `on_error = "null"`.
    pub fn added_columns(&self) -> Vec<arrow_schema::FieldRef> {
        let spec = &self.spec;
        let mut out: Vec<arrow_schema::FieldRef> = spec
            .columns
            .iter()
            .map(|c| Arc::new(Field::new(&c.name, c.ty.data_type(), true)))
            .collect();
        if spec.on_error == OnError::Null && spec.error_column {
            out.push(Arc::new(Field::new(ERROR_COLUMN, DataType::Utf8, true)));
        }
        out
    }
}

impl Transform for Enricher {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn apply(&self, rows: RecordBatch) -> std::result::Result<RecordBatch, BoxError> {
        let mut rejected = Vec::new();
        let out = self.apply_rejecting(rows, &mut rejected)?;
        match rejected.first() {
            // Called without a place for dead letters: failing is the only way not to lose them.
            Some(r) => Err(format!(
                "{} row(s) to dead-letter (on_error = \"dead-letter\"), the first: {}",
                rejected.len(),
                r.reason
            )
            .into()),
            None => Ok(out),
        }
    }

    fn apply_rejecting(
        &self,
        rows: RecordBatch,
        rejected: &mut Vec<Rejected>,
    ) -> std::result::Result<RecordBatch, BoxError> {
        let (row_keys, keys) = self.keys(&rows);
        let answers = self.answers(keys);
        let failed: Vec<Option<Arc<str>>> = answers
            .iter()
            .map(|a| {
                a.as_ref()
                    .err()
                    .map(|f| Arc::from(format!("{}: {}", self.spec.name, f.detail)))
            })
            .collect();
        let spec = &self.spec;
        let mut builders: Vec<ColumnBuilder> = spec
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(c.ty, rows.num_rows()))
            .collect();
        let mut errors: Vec<Option<String>> = Vec::with_capacity(rows.num_rows());
        let mut any_error = false;
        for key in &row_keys {
            let mut why: Option<String> = None;
            match key {
                RowKey::None(reason) => why = Some(reason.to_string()),
                RowKey::Slot(s) => match &answers[*s as usize] {
                    Ok(Some(values)) => {
                        for (b, v) in builders.iter_mut().zip(values.iter()) {
                            if let Scalar::Bad(reason) = v {
                                let text = format!("{}: {reason}", spec.name);
                                why = Some(match why {
                                    Some(w) => format!("{w}; {text}"),
                                    None => text,
                                });
                            }
                            b.push(v);
                        }
                    }
                    Ok(None) => builders.iter_mut().for_each(|b| b.push(&Scalar::Null)),
                    Err(_) => why = failed[*s as usize].as_deref().map(str::to_string),
                },
            }
            if why.is_some() {
                any_error = true;
                if !matches!(key, RowKey::Slot(s) if matches!(answers[*s as usize], Ok(Some(_)))) {
                    builders.iter_mut().for_each(|b| b.push(&Scalar::Null));
                }
            }
            errors.push(why);
        }
        if any_error && spec.on_error == OnError::Fail {
            let (n, first) = errors
                .iter()
                .flatten()
                .fold((0, None), |(n, f), e| (n + 1, f.or(Some(e))));
            return Err(format!(
                "{n} row(s) of a batch could not be enriched (on_error = \"fail\"), the first: {}",
                first.map_or("", |s| s.as_str())
            )
            .into());
        }
        let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        for (c, b) in spec.columns.iter().zip(builders) {
            if let Some(at) = fields.iter().position(|f| f.name() == &c.name) {
                // The record already has a field of that name: the lookup's value replaces it.
                fields[at] = Arc::new(Field::new(&c.name, c.ty.data_type(), true));
                columns[at] = b.finish();
            } else {
                fields.push(Arc::new(Field::new(&c.name, c.ty.data_type(), true)));
                columns.push(b.finish());
            }
        }
        let dead_letter = spec.on_error == OnError::DeadLetter && any_error;
        let failed_rows: Vec<bool> = match dead_letter {
            true => errors.iter().map(Option::is_some).collect(),
            false => Vec::new(),
        };
        if spec.on_error == OnError::Null && spec.error_column {
            merge_text_column(&mut fields, &mut columns, ERROR_COLUMN, errors);
        } else if dead_letter {
            let original = &rows;
            for (i, why) in errors.into_iter().enumerate() {
                if let Some(reason) = why {
                    rejected.push(Rejected {
                        class: "enrich failed".into(),
                        reason,
                        // The row as this enricher received it.
                        excerpt: crate::output::row_json(original, i),
                        source: None,
                    });
                }
            }
        }
        let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        if !dead_letter {
            return Ok(out);
        }
        let keep: arrow_array::BooleanArray = failed_rows.iter().map(|f| Some(!f)).collect();
        Ok(arrow_select::filter::filter_record_batch(&out, &keep)?)
    }
}

/// Adds the text column `name`, or, when an earlier enricher added it, joins both texts
/// (`a; b`) row by row.
fn merge_text_column(
    fields: &mut Vec<Arc<Field>>,
    columns: &mut Vec<ArrayRef>,
    name: &str,
    texts: Vec<Option<String>>,
) {
    let existing = fields.iter().position(|f| f.name() == name);
    let earlier = existing.and_then(|at| {
        (columns[at].data_type() == &DataType::Utf8).then(|| columns[at].as_string::<i32>().clone())
    });
    let mut b = StringBuilder::with_capacity(texts.len(), 0);
    for (i, t) in texts.into_iter().enumerate() {
        let before = earlier
            .as_ref()
            .filter(|e| !e.is_null(i))
            .map(|e| e.value(i));
        match (before, t) {
            (Some(a), Some(b2)) => b.append_value(format!("{a}; {b2}")),
            (Some(a), None) => b.append_value(a),
            (None, Some(t)) => b.append_value(t),
            (None, None) => b.append_null(),
        }
    }
    let col: ArrayRef = Arc::new(b.finish());
    match existing {
        Some(at) => {
            fields[at] = Arc::new(Field::new(name, DataType::Utf8, true));
            columns[at] = col;
        }
        None => {
            fields.push(Arc::new(Field::new(name, DataType::Utf8, true)));
            columns.push(col);
        }
    }
}

/// A typed column being built.
enum ColumnBuilder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType, rows: usize) -> ColumnBuilder {
        match ty {
            ColumnType::Str => ColumnBuilder::Str(StringBuilder::with_capacity(rows, rows * 8)),
            ColumnType::Int => ColumnBuilder::Int(Int64Builder::with_capacity(rows)),
            ColumnType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(rows)),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }

    /// Appends `v`; a value of another type (never made: answers are typed) or a bad one is
    /// null.
    fn push(&mut self, v: &Scalar) {
        match (self, v) {
            (ColumnBuilder::Str(b), Scalar::Str(s)) => b.append_value(s),
            (ColumnBuilder::Int(b), Scalar::Int(n)) => b.append_value(*n),
            (ColumnBuilder::Float(b), Scalar::Float(x)) => b.append_value(*x),
            (ColumnBuilder::Bool(b), Scalar::Bool(x)) => b.append_value(*x),
            (ColumnBuilder::Str(b), _) => b.append_null(),
            (ColumnBuilder::Int(b), _) => b.append_null(),
            (ColumnBuilder::Float(b), _) => b.append_null(),
            (ColumnBuilder::Bool(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The enrichers of a configuration's `[[enrich]]` tables, in file order.
pub fn build(tables: &[EnrichConfig], fetch: &FetchConfig) -> Result<Vec<Arc<Enricher>>> {
    tables
        .iter()
        .enumerate()
        .map(|(n, cfg)| Enricher::new(n, cfg, fetch).map(Arc::new))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| match e {
            Error::Config { .. } | Error::Source { .. } | Error::Thread { .. } => e,
            other => Error::config("enrich", other.to_string()),
        })
}

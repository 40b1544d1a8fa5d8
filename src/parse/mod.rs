//! The parse stage: bodies → Arrow columns, with simd-json parsing in place.
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON (one object per line). The
//! format is recognised from the bytes: a body starting with `[` is an array; a body in which a
//! line starts with `{` right after a newline is NDJSON; anything else starting with `{` is one
//! object (pretty-printed objects indent their nested lines, so they are not mistaken for
//! NDJSON). Whitespace and a UTF-8 byte-order mark before the first byte are skipped.
//!
//! With an envelope configured ([`Parser::set_envelope`], from `fetch.records_field`), every
//! body is one object whose field at that dotted path holds the array of records; the
//! envelope's cursor field (`fetch.cursor_field`) is read at the same time and sent back to the
//! fetcher as a [`CursorReply`], one per paginated body.
//!
//! Each document is parsed by `simd_json::fill_tape_padded` directly in the batch arena (the
//! fetcher leaves padding after every body), with the tape and scratch buffers reused across
//! documents, then read field by field into the column builders. A record whose fields have the
//! wrong type is not half-appended: all fields are checked first, then appended, or the record
//! goes to the dead letters with the field and the reason.

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

mod columns;
pub mod infer;
mod json_error;

use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use simd_json::{Buffers, Node, StaticNode, Tape};

use crate::batch::{
    excerpt, BodyBatch, ContentEncoding, CursorReply, DeadLetter, Outcome, RecordsBatch,
    BODY_PADDING,
};
use crate::error::{Error, Result};
use crate::schema::{FieldSpec, Layout};
use columns::Columns;

/// Longest excerpt of a rejected record or body kept in a dead letter.
pub const EXCERPT_BYTES: usize = 4096;

/// Batches of at most this many bodies have each body timed for the parse latency
/// histogram; larger ones are timed as a whole (see `Parser::parse_known`).
const TIMED_EACH_MAX_BODIES: usize = 64;

/// Counters of one parse thread.
#[derive(Debug, Default, Clone)]
pub struct ParseStats {
    /// Records (or unreadable bodies) seen.
    pub records: u64,
    /// Records that became rows.
    pub rows: u64,
    /// Records and bodies dead-lettered.
    pub dead: u64,
    /// Dead letters by class.
    pub dead_by_reason: std::collections::BTreeMap<String, u64>,
}

/// One parse thread's state: reusable simd-json buffers and column builders.
pub struct Parser {
    buffers: Buffers,
    tape: Tape<'static>,
    pristine: Vec<u8>,
    /// The builders; `None` until an inferred layout is known.
    cols: Option<Columns>,
    /// Inference (`schema.infer`): the run's layout, set by the first parse thread that sees
    /// records, and how to make a layout of the inferred fields.
    inference: Option<Inference>,
    /// `cols` is a stand-in used while inference has seen no records yet.
    stale_layout: bool,
    /// Counters.
    pub stats: ParseStats,
    /// Time to parse each body of the last batch (cleared by each [`Parser::parse_batch`]), for
    /// the caller to record; kept as plain durations so recording takes one lock per batch. In
    /// a batch of more than 64 bodies each body has the batch's mean (one clock reading a
    /// body was 1 % of a Kafka read).
    pub body_times: Vec<std::time::Duration>,
    /// Largest decompressed body accepted (a gzip bomb becomes a dead letter, not an
    /// out-of-memory); the pipeline sets it to `fetch.max_body_bytes`.
    pub max_body: usize,
    /// Reused buffer for decompressed bodies.
    inflated: Vec<u8>,
    /// Bodies are envelopes: the path of their array of records.
    records_field: Option<Vec<String>>,
    /// The path of the next-page cursor in an envelope.
    cursor_field: Option<Vec<String>>,
    /// The cursor found in the body parsed last.
    cursor_found: Option<String>,
    /// One reply per paginated body of the last batch (cleared by each
    /// [`Parser::parse_batch`]), for the caller to send to the fetcher.
    pub cursor_replies: Vec<CursorReply>,
    /// What a body's URL becomes in the `_source` lineage column (see
    /// [`Parser::set_source_redactor`]).
    redact_source: Redactor,
}

/// Turns a URL into the text that may be written in a file (credentials removed).
pub type Redactor = fn(&str) -> std::borrow::Cow<'_, str>;

struct Reject {
    class: &'static str,
    detail: String,
}

/// How a layout gets inferred (see [`Parser::inferring`]).
pub type LayoutMaker =
    Arc<dyn Fn(Vec<FieldSpec>) -> std::result::Result<Layout, String> + Send + Sync>;

struct Inference {
    cell: Arc<OnceLock<Arc<Layout>>>,
    make: LayoutMaker,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser for the built-in log workload ([`Layout::logs`]).
    pub fn new() -> Parser {
        Parser::with_layout(Arc::new(Layout::logs()))
    }

    /// A parser producing the columns of `layout`.
    pub fn with_layout(layout: Arc<Layout>) -> Parser {
        let mut p = Parser::empty();
        p.cols = Some(Columns::new(layout));
        p
    }

    /// A parser whose layout is inferred from the first records it or a sibling sees
    /// (`schema.infer`): the first parse thread to find records in a batch infers the fields
    /// ([`infer::infer`]), `make` turns them into the layout, and every thread sharing `cell`
    /// uses that one layout, so all files of a run have one schema. Use
    /// [`Parser::try_parse_batch`]: making the layout can fail.
    pub fn inferring(cell: Arc<OnceLock<Arc<Layout>>>, make: LayoutMaker) -> Parser {
        let mut p = Parser::empty();
        p.inference = Some(Inference { cell, make });
        p
    }

    /// The layout in use, once known.
    pub fn layout(&self) -> Option<&Arc<Layout>> {
        self.cols.as_ref().map(Columns::layout)
    }

    fn empty() -> Parser {
        Parser {
            buffers: Buffers::new(4096),
            tape: Tape(Vec::new()),
            pristine: Vec::new(),
            cols: None,
            inference: None,
            stale_layout: false,
            stats: ParseStats::default(),
            body_times: Vec::with_capacity(256),
            max_body: 64 << 20,
            inflated: Vec::new(),
            records_field: None,
            cursor_field: None,
            cursor_found: None,
            cursor_replies: Vec::new(),
            redact_source: |url| std::borrow::Cow::Borrowed(url),
        }
    }

    /// How a body's URL is redacted before it is written in the `_source` lineage column of a
    /// layout that asks for it. The default writes it as it is: the pipeline sets the
    /// fetcher's redaction (passwords of `user:password@` replaced by `***`); a caller that
    /// parses URLs with credentials and lineage sets its own.
    pub fn set_source_redactor(&mut self, redact: Redactor) {
        self.redact_source = redact;
    }

    /// Treats every body as an envelope object whose field at the dotted path `records` holds
    /// the array of records, and reads the next-page cursor at `cursor` (see
    /// `fetch.records_field` and `fetch.cursor_field`).
    ///
    /// ```
    /// use pinflow::batch::BodyBatch;
    /// let mut p = pinflow::parse::Parser::new();
    /// p.set_envelope(Some("data"), Some("meta.next"));
    /// let mut batch = BodyBatch::default();
    /// let body = br#"{"data":[{"id":1},{"id":2}],"meta":{"next":"c2"}}"#;
    /// batch.push_body("http://h/logs", body, 1, std::time::Instant::now());
    /// batch.expect_cursor(0);
    /// let out = p.parse_batch(&mut batch);
    /// assert_eq!(out.rows.unwrap().num_rows(), 2);
    /// assert_eq!(p.cursor_replies[0].cursor.as_deref(), Some("c2"));
    /// ```
    pub fn set_envelope(&mut self, records: Option<&str>, cursor: Option<&str>) {
        let split = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        self.records_field = records.map(split);
        self.cursor_field = cursor.map(split);
    }

    /// Parses every body of `batch` into one [`RecordsBatch`]. Failed requests in the batch
    /// become `request` dead letters; the batch is left for recycling (its arena is modified).
    ///
    /// For a parser with a fixed layout ([`Parser::new`], [`Parser::with_layout`]), which
    /// cannot fail; an inferring parser uses [`Parser::try_parse_batch`].
    pub fn parse_batch(&mut self, batch: &mut BodyBatch) -> RecordsBatch {
        match self.try_parse_batch(batch) {
            Ok(out) => out,
            Err(e) => unreachable!("a fixed layout cannot fail: {e}"),
        }
    }

    /// [`Parser::parse_batch`], inferring the layout first if it is not known yet; fails when
    /// the inferred fields make no valid layout (say, `schema.stats` names a column that the
    /// records do not have).
    pub fn try_parse_batch(&mut self, batch: &mut BodyBatch) -> Result<RecordsBatch> {
        if self.cols.is_none() {
            self.settle_layout(batch)?;
        }
        Ok(self.parse_known(batch))
    }

    /// Takes the run's inferred layout, inferring it from `batch` if no thread has yet.
    fn settle_layout(&mut self, batch: &BodyBatch) -> Result<()> {
        let inference = self.inference.as_ref().expect("no layout means inference");
        if let Some(l) = inference.cell.get() {
            self.cols = Some(Columns::new(Arc::clone(l)));
            return Ok(());
        }
        let mut decoded = Vec::new();
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for item in &batch.items {
            if !matches!(item.outcome, Outcome::Body) {
                continue;
            }
            let raw = &batch.arena[item.body.clone()];
            if item.encoding == ContentEncoding::Identity {
                bodies.push(raw.to_vec());
            } else if let Ok(len) = inflate(raw, item.encoding, self.max_body, &mut decoded) {
                bodies.push(decoded[..len].to_vec());
            }
        }
        if self.records_field.is_none() {
            if let Some(key) = infer::envelope_field(bodies.iter().map(Vec::as_slice)) {
                // Inferred from the envelope itself, the layout would drop the records.
                return Err(Error::config(
                    "schema",
                    format!(
                        "each response is one object whose field `{key}` holds an array of \
                         objects: take the records from it with fetch.records_field = \"{key}\" \
                         (--records-field {key}), or list the fields with schema.fields (--field)"
                    ),
                ));
            }
        }
        let (fields, records) = infer::infer(
            bodies.iter().map(Vec::as_slice),
            self.records_field.as_deref(),
        );
        if records == 0 {
            // Nothing to learn from (failures, empty or broken bodies): this batch makes dead
            // letters only, which any layout does; keep waiting for records.
            self.cols = Some(Columns::new(Arc::new(Layout::logs())));
            self.stale_layout = true;
            return Ok(());
        }
        let layout = (inference.make)(fields).map_err(|why| {
            Error::config("schema", format!("inferred from the first records: {why}"))
        })?;
        if layout.fields == crate::schema::log_fields() {
            tracing::info!(
                records,
                "schema: the built-in log layout (every field of the first records is one of its own)"
            );
        } else {
            tracing::info!(
                records,
                columns = %layout.fields.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                "schema inferred"
            );
        }
        let l = inference.cell.get_or_init(|| Arc::new(layout));
        self.cols = Some(Columns::new(Arc::clone(l)));
        Ok(())
    }

    fn parse_known(&mut self, batch: &mut BodyBatch) -> RecordsBatch {
        let mut dead = Vec::new();
        let mut delivered = 0;
        self.body_times.clear();
        let mut oldest = None;
        self.cursor_replies.clear();
        let mut items = Vec::new();
        let mut kafka = crate::kafka::offsets::MessageOutcomes::default();
        // A body's parse time runs from the end of the one before: one clock reading a body
        // (two were a visible share of parsing one-record Kafka messages). A batch of many
        // bodies (Kafka messages, small pages) is timed as a whole instead, each body given
        // the mean: even one reading a body was 1 % of a Kafka read's samples.
        let started = std::time::Instant::now();
        let mut clock = started;
        let time_each = batch.items.len() <= TIMED_EACH_MAX_BODIES;
        for idx in 0..batch.items.len() {
            let it = &batch.items[idx];
            // A failed request is not committed (a resumed run asks again); a failed Kafka
            // message (a tombstone, an empty one) is: its dead letter is all it will ever give,
            // and it must not hold the partition's committed offset back.
            let done = matches!(it.outcome, Outcome::Body) || batch.kafka_messages;
            if done && it.seq != crate::batch::NO_SEQ {
                items.push(it.seq);
            }
            self.cursor_found = None;
            let before = (self.pending_rows(), dead.len());
            self.parse_item(
                batch,
                idx,
                &mut dead,
                &mut delivered,
                &mut oldest,
                time_each.then_some(&mut clock),
            );
            if batch.kafka_messages {
                let name = &batch.urls[batch.items[idx].url.clone()];
                let gave_rows = self.pending_rows() > before.0;
                match gave_rows || dead.len() == before.1 {
                    true => kafka.written.add_name(name),
                    false => kafka.dead_lettered.add_name(name),
                };
            }
            if let Some(page) = batch.items[idx].cursor_page {
                self.cursor_replies.push(CursorReply {
                    url: batch.urls[batch.items[idx].url.clone()].to_string(),
                    page,
                    chain: batch.items[idx].cursor_chain,
                    cursor: self.cursor_found.take(),
                });
            }
        }
        if !time_each {
            let bodies = batch
                .items
                .iter()
                .filter(|it| matches!(it.outcome, Outcome::Body))
                .count();
            if bodies > 0 {
                let each = started.elapsed() / bodies as u32;
                self.body_times.extend(std::iter::repeat_n(each, bodies));
            }
        }
        let cols = self.cols.as_mut().expect("layout settled");
        let mut rows = cols.finish();
        if !batch.prebuilt.is_empty() {
            rows = self.take_prebuilt(batch, rows, &mut dead);
        }
        let cols = self.cols.as_mut().expect("layout settled");
        let layout = Some(Arc::clone(cols.layout()));
        if self.stale_layout {
            // A stand-in for a batch without records: infer again at the next batch.
            self.cols = None;
            self.stale_layout = false;
        }
        RecordsBatch {
            rows,
            layout,
            items,
            dead_letters: dead,
            delivered,
            body_bytes: batch.body_bytes() as u64,
            oldest,
            ticket: batch.ticket.take(),
            source: crate::batch::SourceOrder {
                number: batch.order(),
                partition: batch.partition,
                partition_ended: batch.partition_ended,
            },
            kafka,
        }
    }

    /// Rows appended since the batch began (none before the layout is settled).
    fn pending_rows(&self) -> usize {
        self.cols.as_ref().map_or(0, Columns::pending_rows)
    }

    /// Parses item `idx` of `batch`: a failed request becomes a dead letter, a body rows.
    fn parse_item(
        &mut self,
        batch: &mut BodyBatch,
        idx: usize,
        dead: &mut Vec<DeadLetter>,
        delivered: &mut u64,
        oldest: &mut Option<std::time::Instant>,
        clock: Option<&mut std::time::Instant>,
    ) {
        let item = &batch.items[idx];
        let url = &batch.urls[item.url.clone()];
        match &item.outcome {
            Outcome::Failed(reason) => dead.push(DeadLetter {
                kind: "request",
                url: url.to_string(),
                reason: reason.clone(),
                excerpt: String::new(),
                attempts: item.attempts,
            }),
            Outcome::Body => {
                if let Some(cols) = self.cols.as_mut().filter(|c| c.wants_origin()) {
                    cols.set_origin(&(self.redact_source)(url), wall_micros(item.done_at));
                }
                *delivered += 1;
                *oldest =
                    Some(oldest.map_or(item.done_at, |o: std::time::Instant| o.min(item.done_at)));
                let range = item.body.clone();
                let attempts = item.attempts;
                let encoding = item.encoding;
                if encoding != ContentEncoding::Identity {
                    let url = batch.urls[item.url.clone()].to_string();
                    let mut buf = std::mem::take(&mut self.inflated);
                    match inflate(
                        &batch.arena[range.clone()],
                        encoding,
                        self.max_body,
                        &mut buf,
                    ) {
                        Ok(len) => self.parse_body(&mut buf, len, &url, attempts, dead),
                        Err(why) => {
                            let r = Reject {
                                class: "bad encoding",
                                detail: why,
                            };
                            let ex = excerpt(&batch.arena[range.clone()], 64);
                            // The undecodable body counts as one (rejected) record.
                            self.stats.records += 1;
                            self.reject("body", &url, r, ex, attempts, dead);
                        }
                    }
                    self.inflated = buf;
                    self.time_body(clock);
                    return;
                }
                // Split borrows: the URL text and the arena are different fields.
                let (urls, arena) = (&batch.urls, &mut batch.arena);
                let url = &urls[batch.items[idx].url.clone()];
                self.parse_body(
                    &mut arena[range.start..range.end + BODY_PADDING],
                    range.len(),
                    url,
                    attempts,
                    dead,
                );
                self.time_body(clock);
            }
        }
    }

    /// Records a body's parse time: since `clock`, which becomes now (none: the batch is
    /// timed as a whole).
    fn time_body(&mut self, clock: Option<&mut std::time::Instant>) {
        if let Some(clock) = clock {
            let now = std::time::Instant::now();
            self.body_times.push(now - *clock);
            *clock = now;
        }
    }

    /// Parses one body of `len` bytes; `buf` holds the body followed by padding.
    fn parse_body(
        &mut self,
        buf: &mut [u8],
        len: usize,
        url: &str,
        attempts: u32,
        dead: &mut Vec<DeadLetter>,
    ) {
        let mut start = 0;
        if buf[..len].starts_with(b"\xEF\xBB\xBF") {
            start = 3;
        }
        while start < len && buf[start].is_ascii_whitespace() {
            start += 1;
        }
        if start == len {
            return; // An empty body holds no records.
        }
        if self.records_field.is_some() {
            self.parse_envelope(&mut buf[start..], len - start, url, attempts, dead);
            return;
        }
        let body = &buf[start..len];
        // (memchr: a byte-pair scan of every one-record body was a visible share of parsing
        // one-message Kafka bodies.)
        let ndjson = body[0] == b'{'
            && memchr::memchr_iter(b'\n', body).any(|p| body.get(p + 1) == Some(&b'{'));
        if body[0] == b'[' {
            self.parse_array(&mut buf[start..], len - start, url, attempts, dead);
        } else if ndjson {
            let mut line_start = start;
            while line_start < len {
                let line_end =
                    memchr::memchr(b'\n', &buf[line_start..len]).map_or(len, |p| line_start + p);
                let mut s = line_start;
                let mut e = line_end;
                while s < e && buf[s].is_ascii_whitespace() {
                    s += 1;
                }
                while e > s && buf[e - 1].is_ascii_whitespace() {
                    e -= 1;
                }
                if e > s {
                    self.parse_object_doc(&mut buf[s..], e - s, url, attempts, dead);
                }
                line_start = line_end + 1;
            }
        } else {
            self.parse_object_doc(&mut buf[start..], len - start, url, attempts, dead);
        }
    }

    /// Parses `doc[..len]`, which should be one JSON object.
    fn parse_object_doc(
        &mut self,
        doc: &mut [u8],
        len: usize,
        url: &str,
        attempts: u32,
        dead: &mut Vec<DeadLetter>,
    ) {
        self.stats.records += 1;
        // In-place parsing rewrites escaped strings; keep the original text for a dead letter.
        // (memchr's vector search: the slice's `contains` was 1 % of a Kafka read's samples.)
        let escaped = memchr::memchr(b'\\', &doc[..len]).is_some();
        if escaped {
            self.pristine.clear();
            self.pristine.extend_from_slice(&doc[..len]);
        }
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        // Described once the tape no longer borrows the document.
        let mut bad_json = None;
        let result = match simd_json::fill_tape_padded(doc, len, &mut self.buffers, &mut tape) {
            Ok(()) => {
                if let Some(Node::Object { .. }) = tape.0.first() {
                    self.record(&tape.0)
                } else {
                    Err(Reject {
                        class: "not an object",
                        detail: format!(
                            "expected a JSON object, got {}",
                            type_name(tape.0.first())
                        ),
                    })
                }
            }
            Err(e) => {
                bad_json = Some(e);
                Err(Reject {
                    class: "invalid json",
                    detail: String::new(),
                })
            }
        };
        self.tape = tape.reset();
        if let Err(mut r) = result {
            let text = if escaped {
                &self.pristine[..]
            } else {
                &doc[..len]
            };
            if let Some(e) = &bad_json {
                r.detail = json_error::describe(e, text);
            }
            let text = excerpt(text, EXCERPT_BYTES);
            self.reject("record", url, r, text, attempts, dead);
        }
    }

    /// Parses `buf[..len]`, which should be a JSON array of objects.
    fn parse_array(
        &mut self,
        buf: &mut [u8],
        len: usize,
        url: &str,
        attempts: u32,
        dead: &mut Vec<DeadLetter>,
    ) {
        let body_excerpt = excerpt(&buf[..len], EXCERPT_BYTES);
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let bad_json = match simd_json::fill_tape_padded(buf, len, &mut self.buffers, &mut tape) {
            Err(e) => Some(e),
            Ok(()) => {
                self.array_elements(&tape.0, 0, url, attempts, &body_excerpt, dead);
                None
            }
        };
        self.tape = tape.reset();
        if let Some(e) = bad_json {
            self.stats.records += 1;
            let r = Reject {
                class: "invalid json",
                detail: json_error::describe(&e, &buf[..len]),
            };
            self.reject("body", url, r, body_excerpt, attempts, dead);
        }
    }

    /// Takes each element of the array at `nodes[at]` as a record.
    fn array_elements(
        &mut self,
        nodes: &[Node<'_>],
        at: usize,
        url: &str,
        attempts: u32,
        body_excerpt: &str,
        dead: &mut Vec<DeadLetter>,
    ) {
        let Node::Array { len: n, .. } = nodes[at] else {
            unreachable!("the caller found an array")
        };
        let mut idx = at + 1;
        for element in 0..n {
            self.stats.records += 1;
            let span = node_span(&nodes[idx]);
            let result = match nodes[idx] {
                Node::Object { .. } => self.record(&nodes[idx..idx + span]),
                ref other => Err(Reject {
                    class: "not an object",
                    detail: format!("expected a JSON object, got {}", type_name(Some(other))),
                }),
            };
            if let Err(mut r) = result {
                r.detail = format!("array element {element}: {}", r.detail);
                let ex = body_excerpt.to_string();
                self.reject("record", url, r, ex, attempts, dead);
            }
            idx += span;
        }
    }

    /// Parses `buf[..len]`, which should be an envelope object: records from the array at
    /// `records_field`, the next-page cursor from `cursor_field`.
    fn parse_envelope(
        &mut self,
        buf: &mut [u8],
        len: usize,
        url: &str,
        attempts: u32,
        dead: &mut Vec<DeadLetter>,
    ) {
        let body_excerpt = excerpt(&buf[..len], EXCERPT_BYTES);
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let mut bad_json = None;
        let outcome = match simd_json::fill_tape_padded(buf, len, &mut self.buffers, &mut tape) {
            Err(e) => {
                bad_json = Some(e);
                Err(Reject {
                    class: "invalid json",
                    detail: String::new(),
                })
            }
            Ok(()) => {
                let nodes = &tape.0;
                let path = self.records_field.as_deref().unwrap_or_default();
                if !matches!(nodes.first(), Some(Node::Object { .. })) {
                    Err(Reject {
                        class: "not an object",
                        detail: format!(
                            "expected a JSON object with the records in `{}`, got {}",
                            path.join("."),
                            type_name(nodes.first())
                        ),
                    })
                } else {
                    if let Some(cursor) = &self.cursor_field {
                        self.cursor_found =
                            lookup(nodes, cursor).and_then(|i| cursor_text(&nodes[i]));
                    }
                    match lookup(nodes, path) {
                        // A page with no records (often the last one).
                        None => Ok(()),
                        Some(i) if matches!(nodes[i], Node::Static(StaticNode::Null)) => Ok(()),
                        Some(i) if matches!(nodes[i], Node::Array { .. }) => {
                            self.array_elements(nodes, i, url, attempts, &body_excerpt, dead);
                            Ok(())
                        }
                        Some(i) => Err(Reject {
                            class: "not an array",
                            detail: format!(
                                "field `{}` is {}, expected an array of records",
                                path.join("."),
                                type_name(Some(&nodes[i]))
                            ),
                        }),
                    }
                }
            }
        };
        self.tape = tape.reset();
        if let Err(mut r) = outcome {
            if let Some(e) = &bad_json {
                r.detail = json_error::describe(e, &buf[..len]);
            }
            // The whole body counts as one (rejected) record.
            self.stats.records += 1;
            self.reject("body", url, r, body_excerpt, attempts, dead);
        }
    }

    fn reject(
        &mut self,
        kind: &'static str,
        url: &str,
        r: Reject,
        excerpt: String,
        attempts: u32,
        dead: &mut Vec<DeadLetter>,
    ) {
        self.stats.dead += 1;
        *self
            .stats
            .dead_by_reason
            .entry(r.class.to_string())
            .or_default() += 1;
        dead.push(DeadLetter {
            kind,
            url: url.to_string(),
            reason: r.detail,
            excerpt,
            attempts,
        });
    }

    /// Pushed records ([`crate::push`]): those in the layout's record schema join the parsed
    /// rows; a batch in another schema is one dead letter naming the difference.
    fn take_prebuilt(
        &mut self,
        batch: &mut BodyBatch,
        parsed: Option<RecordBatch>,
        dead: &mut Vec<DeadLetter>,
    ) -> Option<RecordBatch> {
        let schema = self
            .cols
            .as_ref()
            .expect("layout settled")
            .layout()
            .record_schema();
        let mut keep: Vec<RecordBatch> = parsed.into_iter().collect();
        for rb in batch.prebuilt.drain(..) {
            let n = rb.num_rows() as u64;
            self.stats.records += n;
            let same = rb.schema().fields().len() == schema.fields().len()
                && rb
                    .schema()
                    .fields()
                    .iter()
                    .zip(schema.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
            if same {
                self.stats.rows += n;
                // Same fields; take the layout's schema object (nullability, metadata).
                match RecordBatch::try_new(std::sync::Arc::clone(&schema), rb.columns().to_vec()) {
                    Ok(rb) => keep.push(rb),
                    Err(e) => self.reject_pushed(n, format!("pushed records: {e}"), dead),
                }
            } else {
                let why = format!(
                    "pushed records do not match the schema: got {:?}, expected {:?}",
                    rb.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>(),
                    schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
                );
                self.reject_pushed(n, why, dead);
            }
        }
        match keep.len() {
            0 => None,
            1 => keep.pop(),
            _ => arrow_select::concat::concat_batches(&schema, &keep).ok(),
        }
    }

    fn reject_pushed(&mut self, records: u64, why: String, dead: &mut Vec<DeadLetter>) {
        let r = Reject {
            class: "schema mismatch",
            detail: why,
        };
        self.reject("records", "push", r, format!("{records} records"), 1, dead);
        // The ledger counts records: all of them were dead-lettered, in one letter.
        self.stats.dead += records.saturating_sub(1);
    }

    /// Checks one object against the layout, then appends it as a row.
    fn record(&mut self, nodes: &[Node<'_>]) -> std::result::Result<(), Reject> {
        self.cols.as_mut().expect("layout settled").record(nodes)?;
        self.stats.rows += 1;
        Ok(())
    }
}

/// `at` as µs since the epoch: the wall clock now, less the time since `at` (an `Instant` has
/// no wall-clock time of its own).
fn wall_micros(at: std::time::Instant) -> i64 {
    let now = std::time::SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(std::time::UNIX_EPOCH);
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The index of the value at the dotted `path` of the object at `nodes[0]`.
fn lookup(nodes: &[Node<'_>], path: &[String]) -> Option<usize> {
    let mut at = 0;
    for key in path {
        let Node::Object { len, .. } = nodes[at] else {
            return None;
        };
        let mut idx = at + 1;
        let mut found = None;
        for _ in 0..len {
            let Node::String(k) = nodes[idx] else {
                return None;
            };
            if k == key {
                found = Some(idx + 1);
                break;
            }
            idx += 1 + node_span(&nodes[idx + 1]);
        }
        at = found?;
    }
    Some(at)
}

/// A cursor value as text: a non-empty string, or an integer. Anything else ends the chain.
fn cursor_text(n: &Node<'_>) -> Option<String> {
    match n {
        Node::String(s) if !s.is_empty() => Some((*s).to_string()),
        Node::Static(StaticNode::I64(i)) => Some(i.to_string()),
        Node::Static(StaticNode::U64(u)) => Some(u.to_string()),
        _ => None,
    }
}

/// Nodes taken by a value, itself included.
fn node_span(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

fn type_name(n: Option<&Node<'_>>) -> &'static str {
    match n {
        None => "nothing",
        Some(Node::String(_)) => "a string",
        Some(Node::Object { .. }) => "an object",
        Some(Node::Array { .. }) => "an array",
        Some(Node::Static(StaticNode::Null)) => "null",
        Some(Node::Static(StaticNode::Bool(_))) => "a boolean",
        Some(Node::Static(StaticNode::F64(_))) => "a fractional number",
        Some(Node::Static(_)) => "an integer",
    }
}

fn wrong_type(field: &str, expected: &str, got: Option<&Node<'_>>) -> Reject {
    Reject {
        class: "wrong type",
        detail: format!(
            "field `{field}`: expected {expected}, got {}",
            type_name(got)
        ),
    }
}

fn number(n: &Node<'_>) -> Option<f64> {
    match n {
        Node::Static(StaticNode::F64(x)) => Some(*x),
        Node::Static(StaticNode::I64(x)) => Some(*x as f64),
        Node::Static(StaticNode::U64(x)) => Some(*x as f64),
        _ => None,
    }
}

/// Decompresses `body` into `out` (followed by simd-json's padding); returns the decoded
/// length. More than `max` decoded bytes is an error, so a small compressed body cannot expand
/// without bound.
pub(crate) fn inflate(
    body: &[u8],
    encoding: ContentEncoding,
    max: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<usize, String> {
    use std::io::Read;
    out.clear();
    let limit = max as u64 + 1;
    let read = match encoding {
        ContentEncoding::Gzip => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(out),
        ContentEncoding::Deflate => flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(out),
        ContentEncoding::Identity => {
            out.extend_from_slice(body);
            Ok(body.len())
        }
    };
    let name = match encoding {
        ContentEncoding::Gzip => "gzip",
        ContentEncoding::Deflate => "deflate",
        ContentEncoding::Identity => "identity",
    };
    let n = read.map_err(|e| format!("{name} body cannot be decoded: {e}"))?;
    if n > max {
        return Err(format!(
            "{name} body decodes to more than {max} bytes (fetch.max_body_bytes)"
        ));
    }
    out.resize(n + BODY_PADDING, 0);
    Ok(n)
}

/// The property the `ndjson_split` fuzz target checks, and `tests/it/fuzz_corpora.rs` replays
/// on stable: whatever a body holds, parsing it does not panic and loses nothing (every record
/// seen is a row or a dead letter with a bounded excerpt), and a body in NDJSON form (after a
/// byte-order mark and leading whitespace, it starts with `{` and has a line that starts with
/// `{`) is split into exactly its non-blank lines. Panics when the property fails.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let mut p = Parser::new();
    let mut batch = BodyBatch::default();
    batch.push_body("http://fuzz/", data, 1, std::time::Instant::now());
    let out = p.parse_batch(&mut batch);
    let s = &p.stats;
    let rows = out.rows.as_ref().map_or(0, |r| r.num_rows() as u64);
    assert_eq!(s.records, s.rows + s.dead, "{s:?}");
    assert_eq!((rows, out.dead_letters.len() as u64), (s.rows, s.dead));
    assert_eq!(out.delivered, 1);
    for d in &out.dead_letters {
        assert!(
            d.excerpt.chars().count() <= EXCERPT_BYTES + 1,
            "{}",
            d.reason
        );
    }
    // The split, counted independently of the parser's own loop.
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let body = body.trim_ascii_start();
    if body.first() == Some(&b'{') && body.windows(2).any(|w| w == b"\n{") {
        let lines = body.split(|&b| b == b'\n');
        let records = lines.filter(|l| !l.trim_ascii().is_empty()).count() as u64;
        assert_eq!(s.records, records, "records of an NDJSON body");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::Array;
    use std::time::Instant;

    fn batch_of(bodies: &[&str]) -> BodyBatch {
        let mut b = BodyBatch::default();
        for (i, body) in bodies.iter().enumerate() {
            b.push_body(&format!("http://t/{i}"), body.as_bytes(), 1, Instant::now());
        }
        b
    }

    #[test]
    fn each_body_has_a_parse_time_in_small_and_large_batches() {
        use crate::schema::Unknown;
        for n in [3, TIMED_EACH_MAX_BODIES + 1, 300] {
            let mut p = Parser::with_layout(layout(&["n:int64"], Unknown::Ignore));
            let bodies: Vec<String> = (0..n).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
            let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
            let rb = p.parse_batch(&mut batch_of(&refs));
            assert_eq!(rb.rows.map(|r| r.num_rows()), Some(n));
            assert_eq!(p.body_times.len(), n, "{n} bodies");
        }
    }

    fn ids(rb: &RecordBatch) -> Vec<Option<i64>> {
        rb.column(0).as_primitive::<Int64Type>().iter().collect()
    }

    fn layout(fields: &[&str], unknown: crate::schema::Unknown) -> Arc<Layout> {
        let fields = fields.iter().map(|f| f.parse().unwrap()).collect();
        Arc::new(Layout::new(fields, unknown, vec![]).unwrap())
    }

    #[test]
    fn every_type_nested_paths_and_nulls() {
        use crate::schema::Unknown;
        let l = layout(
            &[
                "n:int64",
                "x:float64",
                "ok:bool",
                "s:string",
                "d:dict",
                "t:timestamp",
                "lf:list<float64>",
                "li:list<int64>",
                "http.status:int64",
                "http.req.path:string as path",
            ],
            Unknown::Extra,
        );
        let mut p = Parser::with_layout(Arc::clone(&l));
        let mut b = batch_of(&[concat!(
            r#"{"n":-5,"x":1,"ok":true,"s":"a\"b","d":"api","t":"2026-11-24T10:00:00.5+01:00","#,
            r#""lf":[1.5,2],"li":[3,4],"http":{"status":200,"req":{"path":"/x","q":1}},"zz":[1,{"a":null}]}"#,
            "\n",
            r#"{"n":null,"http":null,"d":"api","lf":[]}"#,
            "\n",
            r#"{"n":1.5}"#,
            "\n",
            r#"{"http":{"status":"200"}}"#,
            "\n",
            r#"{"li":[1,2.5]}"#,
        )]);
        let out = p.parse_batch(&mut b);
        let rows = out.rows.unwrap();
        assert_eq!(rows.schema(), l.record_schema());
        assert_eq!(rows.num_rows(), 2, "{:?}", out.dead_letters);
        let reasons: Vec<&str> = out.dead_letters.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "field `n`: expected an integer, got a fractional number",
                "field `http.status`: expected an integer, got a string",
                "field `li[1]`: expected an integer, got a fractional number",
            ]
        );
        let col = |name: &str| rows.column_by_name(name).unwrap().clone();
        assert_eq!(col("n").as_primitive::<Int64Type>().value(0), -5);
        assert!(col("n").is_null(1));
        assert_eq!(col("x").as_primitive::<Float64Type>().value(0), 1.0);
        assert!(col("ok").as_boolean().value(0));
        assert_eq!(col("s").as_string::<i32>().value(0), "a\"b");
        let d = col("d");
        let d = d.as_dictionary::<arrow_array::types::Int32Type>();
        assert_eq!(d.values().len(), 1, "one dictionary entry for two rows");
        let t = col("t");
        let t = t.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!(t.value(0), 1_795_510_800_500_000);
        assert_eq!(col("http_status").as_primitive::<Int64Type>().value(0), 200);
        assert!(col("http_status").is_null(1));
        assert_eq!(col("path").as_string::<i32>().value(0), "/x");
        let lf = col("lf");
        let lf = lf.as_list::<i32>();
        assert_eq!(
            lf.value(0).as_primitive::<Float64Type>().values(),
            &[1.5, 2.0]
        );
        assert_eq!(lf.value(1).len(), 0);
        let li = col("li");
        assert_eq!(
            li.as_list::<i32>()
                .value(0)
                .as_primitive::<Int64Type>()
                .values(),
            &[3, 4]
        );
        assert!(li.is_null(1));
        let extra = col("_extra");
        let extra = extra.as_string::<i32>();
        assert_eq!(extra.value(0), r#"{"http.req.q":1,"zz":[1,{"a":null}]}"#);
        assert!(extra.is_null(1));
    }

    #[test]
    fn unknown_fields_can_be_rejected() {
        let l = layout(&["a:int64"], crate::schema::Unknown::Reject);
        let mut p = Parser::with_layout(l);
        let mut b = batch_of(&["{\"a\":1}\n{\"a\":2,\"b\":3}"]);
        let out = p.parse_batch(&mut b);
        assert_eq!(out.rows.unwrap().num_rows(), 1);
        assert_eq!(
            out.dead_letters[0].reason,
            "field `b` is not in the schema (schema.unknown = \"reject\")"
        );
    }

    #[test]
    fn a_record_with_no_field_of_the_schema_is_a_dead_letter_not_a_row_of_nulls() {
        for unknown in [
            crate::schema::Unknown::Ignore,
            crate::schema::Unknown::Extra,
        ] {
            let mut p = Parser::with_layout(layout(&["a:int64", "o.b:string"], unknown));
            let mut b = batch_of(&[
                "{\"a\":null}\n{\"o\":null}\n{\"o\":{\"b\":\"x\"}}\n{\"u\":1,\"v\":[{\"a\":1}]}\n{}",
            ]);
            let out = p.parse_batch(&mut b);
            let dead: Vec<&str> = out.dead_letters.iter().map(|d| d.reason.as_str()).collect();
            match unknown {
                // Unknown fields kept in `_extra` are not lost: only the empty object is refused.
                crate::schema::Unknown::Extra => {
                    assert_eq!(out.rows.unwrap().num_rows(), 4);
                    assert_eq!(
                        dead,
                        ["the record is an empty object: no field of the schema"]
                    );
                }
                _ => {
                    assert_eq!(out.rows.unwrap().num_rows(), 3);
                    assert_eq!(dead.len(), 2, "{dead:?}");
                    assert!(dead[0].starts_with("none of the record's fields (`u`, `v`)"));
                    assert!(dead[0].contains("--records-field v"), "{}", dead[0]);
                    assert_eq!(p.stats.dead_by_reason["no field of the schema"], 2);
                }
            }
        }
    }

    #[test]
    fn an_inferred_layout_is_shared_by_every_parser() {
        let cell = Arc::new(OnceLock::new());
        let make: LayoutMaker =
            Arc::new(|f| Layout::new(f, crate::schema::Unknown::Ignore, vec![]));
        let mut a = Parser::inferring(Arc::clone(&cell), Arc::clone(&make));
        let mut b = Parser::inferring(Arc::clone(&cell), make);
        // A batch with no records settles nothing.
        let mut none = batch_of(&["not json"]);
        let out = a.try_parse_batch(&mut none).unwrap();
        assert!(out.rows.is_none() && cell.get().is_none());
        let mut first = batch_of(&[r#"{"id":1,"m":{"k":"v"}}"#]);
        let rows = a.try_parse_batch(&mut first).unwrap().rows.unwrap();
        assert_eq!(rows.num_columns(), 2);
        // The other parser takes the same layout, even from different records.
        let mut other = batch_of(&[r#"{"id":2,"z":true}"#]);
        let rows2 = b.try_parse_batch(&mut other).unwrap().rows.unwrap();
        assert_eq!(rows2.schema(), rows.schema());
    }

    #[test]
    fn object_array_and_ndjson_bodies() {
        let mut p = Parser::new();
        let mut b = batch_of(&[
            r#"{"id":1,"values":[1,2.5]}"#,
            "[{\"id\":2},{\"id\":3}]",
            "{\"id\":4}\n{\"id\":5}\r\n\n{\"id\":6}\n",
            "  {\n  \"id\": 7,\n  \"nested\": {\n    \"a\": 1\n  }\n}\n",
            "",
            "[]",
        ]);
        let out = p.parse_batch(&mut b);
        let rows = out.rows.unwrap();
        assert_eq!(ids(&rows), (1..=7).map(Some).collect::<Vec<_>>());
        assert!(out.dead_letters.is_empty());
        assert_eq!(out.delivered, 6);
        let values = rows.column_by_name("values").unwrap().as_list::<i32>();
        assert_eq!(
            values
                .value(0)
                .as_primitive::<Float64Type>()
                .values()
                .to_vec(),
            vec![1.0, 2.5]
        );
        assert!(values.is_null(1));
    }

    #[test]
    fn wrong_types_are_dead_lettered_without_partial_rows() {
        let mut p = Parser::new();
        let mut b = batch_of(&[
            "{\"id\":1,\"service\":\"a\"}\n{\"id\":\"two\",\"service\":\"b\"}\n{\"id\":3,\"values\":[1,\"x\"]}\n{\"id\":4,\"ts\":\"noon\"}\n{\"id\":5,\"values\":[[1]]}\n[1]\n",
        ]);
        let out = p.parse_batch(&mut b);
        let rows = out.rows.unwrap();
        assert_eq!(ids(&rows), vec![Some(1)]);
        assert_eq!(rows.column(2).as_string::<i32>().value(0), "a");
        let reasons: Vec<&str> = out.dead_letters.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(
            reasons[0].contains("field `id`") && reasons[0].contains("string"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("values[1]"), "{reasons:?}");
        assert!(reasons[2].contains("`ts`"), "{reasons:?}");
        assert!(reasons[3].contains("`values`"), "{reasons:?}");
        assert!(reasons[4].contains("expected a JSON object"), "{reasons:?}");
        assert_eq!(
            out.dead_letters[0].excerpt,
            "{\"id\":\"two\",\"service\":\"b\"}"
        );
        assert_eq!(p.stats.records, 6);
        assert_eq!(p.stats.rows + p.stats.dead, 6);
    }

    #[test]
    fn a_kafka_batch_says_which_messages_gave_rows_and_which_only_dead_letters() {
        let mut p = Parser::new();
        let mut b = BodyBatch::default();
        let now = Instant::now();
        b.push_body("logs/0@7", b"{\"id\":1}", 1, now);
        b.push_body("logs/0@8", b"not json", 1, now);
        // One good record and one bad: it gave a row.
        b.push_body("logs/1@3", b"{\"id\":2}\n{\"id\":\"x\"}\n", 1, now);
        b.push_body("logs/1@4", b"[{\"id\":\"y\"}]", 1, now);
        b.push_failure("logs/1@5", "a tombstone".into(), 1, now);
        b.push_body("logs/0@9", b" \n", 1, now);
        b.kafka_messages = true;
        let out = p.parse_batch(&mut b);
        assert_eq!(ids(&out.rows.unwrap()), vec![Some(1), Some(2)]);
        assert_eq!(
            out.kafka.written.to_json(),
            r#"{"logs/0":[[7,7],[9,9]],"logs/1":[[3,3]]}"#
        );
        assert_eq!(
            out.kafka.dead_lettered.to_json(),
            r#"{"logs/0":[[8,8]],"logs/1":[[4,5]]}"#
        );
        // Other sources' batches say nothing.
        let mut b = batch_of(&["{\"id\":1}"]);
        assert!(p.parse_batch(&mut b).kafka.is_empty());
    }

    #[test]
    fn non_json_and_escapes() {
        let mut p = Parser::new();
        let mut b = batch_of(&[
            "<html>oops</html>",
            r#"{"id":9,"message":"say \"hi\"","junk":"\\u00e9"#,
            r#"{"id":10,"message":"caf\u00e9 \"x\""}"#,
        ]);
        b.push_failure("http://t/dead", "HTTP status 503".into(), 1, Instant::now());
        let out = p.parse_batch(&mut b);
        let rows = out.rows.unwrap();
        assert_eq!(ids(&rows), vec![Some(10)]);
        assert_eq!(rows.column(6).as_string::<i32>().value(0), "café \"x\"");
        assert_eq!(out.dead_letters.len(), 3);
        assert!(out.dead_letters[0].reason.contains("invalid JSON"));
        // The excerpt of a rejected record is its original text, escapes included.
        assert_eq!(
            out.dead_letters[1].excerpt,
            r#"{"id":9,"message":"say \"hi\"","junk":"\\u00e9"#
        );
        assert_eq!(
            (
                out.dead_letters[2].kind,
                out.dead_letters[2].reason.as_str()
            ),
            ("request", "HTTP status 503")
        );
        assert_eq!(out.delivered, 3);
    }
}

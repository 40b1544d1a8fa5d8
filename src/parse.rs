//! The parse stage: bodies → Arrow columns, with simd-json parsing in place.
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON (one object per line). The
//! format is recognised from the bytes: a body starting with `[` is an array; a body in which a
//! line starts with `{` right after a newline is NDJSON; anything else starting with `{` is one
//! object (pretty-printed objects indent their nested lines, so they are not mistaken for
//! NDJSON). Whitespace and a UTF-8 byte-order mark before the first byte are skipped.
//!
//! Each document is parsed by `simd_json::fill_tape_padded` directly in the batch arena (the
//! fetcher leaves padding after every body), with the tape and scratch buffers reused across
//! documents, then read field by field into the column builders. A record whose fields have the
//! wrong type is not half-appended: all fields are checked first, then appended, or the record
//! goes to the dead letters with the field and the reason.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use simd_json::{Buffers, Node, StaticNode, Tape};

use crate::batch::{
    excerpt, BodyBatch, ContentEncoding, DeadLetter, Outcome, RecordsBatch, BODY_PADDING,
};
use crate::schema;
use crate::time::parse_rfc3339;

/// Longest excerpt of a rejected record or body kept in a dead letter.
pub const EXCERPT_BYTES: usize = 4096;

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
    values: Vec<f64>,
    pristine: Vec<u8>,
    cols: Columns,
    /// Counters.
    pub stats: ParseStats,
    /// Time to parse each body of the last batch (cleared by each [`Parser::parse_batch`]), for
    /// the caller to record; kept as plain durations so recording takes one lock per batch.
    pub body_times: Vec<std::time::Duration>,
    /// Largest decompressed body accepted (a gzip bomb becomes a dead letter, not an
    /// out-of-memory); the pipeline sets it to `fetch.max_body_bytes`.
    pub max_body: usize,
    /// Reused buffer for decompressed bodies.
    inflated: Vec<u8>,
}

struct Columns {
    id: Int64Builder,
    ts: TimestampMicrosecondBuilder,
    service: StringBuilder,
    level: StringBuilder,
    host: StringBuilder,
    latency_ms: Float64Builder,
    message: StringBuilder,
    values: ListBuilder<Float64Builder>,
    rows: usize,
}

impl Columns {
    fn new() -> Columns {
        Columns {
            id: Int64Builder::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            service: StringBuilder::new(),
            level: StringBuilder::new(),
            host: StringBuilder::new(),
            latency_ms: Float64Builder::new(),
            message: StringBuilder::new(),
            values: ListBuilder::new(Float64Builder::new()).with_field(schema::values_item()),
            rows: 0,
        }
    }

    fn finish(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.values.finish()),
        ];
        Some(
            RecordBatch::try_new(schema::record_schema(), columns)
                .expect("builders match the record schema"),
        )
    }
}

/// The fields of one record, checked and borrowed from the tape, ready to append.
#[derive(Default)]
struct Fields<'a> {
    id: Option<i64>,
    ts: Option<i64>,
    service: Option<&'a str>,
    level: Option<&'a str>,
    host: Option<&'a str>,
    latency_ms: Option<f64>,
    message: Option<&'a str>,
    has_values: bool,
}

/// Why a record was rejected: a class for counting, and the detail for the dead letter.
struct Reject {
    class: &'static str,
    detail: String,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser with empty builders.
    pub fn new() -> Parser {
        Parser {
            buffers: Buffers::new(4096),
            tape: Tape(Vec::new()),
            values: Vec::with_capacity(256),
            pristine: Vec::new(),
            cols: Columns::new(),
            stats: ParseStats::default(),
            body_times: Vec::with_capacity(256),
            max_body: 64 << 20,
            inflated: Vec::new(),
        }
    }

    /// Parses every body of `batch` into one [`RecordsBatch`]. Failed requests in the batch
    /// become `request` dead letters; the batch is left for recycling (its arena is modified).
    pub fn parse_batch(&mut self, batch: &mut BodyBatch) -> RecordsBatch {
        let mut dead = Vec::new();
        let mut delivered = 0;
        self.body_times.clear();
        let mut oldest = None;
        for idx in 0..batch.items.len() {
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
                    delivered += 1;
                    oldest = Some(
                        oldest.map_or(item.done_at, |o: std::time::Instant| o.min(item.done_at)),
                    );
                    let started = std::time::Instant::now();
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
                            Ok(len) => self.parse_body(&mut buf, len, &url, attempts, &mut dead),
                            Err(why) => {
                                let r = Reject {
                                    class: "bad encoding",
                                    detail: why,
                                };
                                let ex = excerpt(&batch.arena[range.clone()], 64);
                                // The undecodable body counts as one (rejected) record.
                                self.stats.records += 1;
                                self.reject("body", &url, r, ex, attempts, &mut dead);
                            }
                        }
                        self.inflated = buf;
                        self.body_times.push(started.elapsed());
                        continue;
                    }
                    // Split borrows: the URL text and the arena are different fields.
                    let (urls, arena) = (&batch.urls, &mut batch.arena);
                    let url = &urls[batch.items[idx].url.clone()];
                    self.parse_body(
                        &mut arena[range.start..range.end + BODY_PADDING],
                        range.len(),
                        url,
                        attempts,
                        &mut dead,
                    );
                    self.body_times.push(started.elapsed());
                }
            }
        }
        RecordsBatch {
            rows: self.cols.finish(),
            dead_letters: dead,
            delivered,
            body_bytes: batch.body_bytes() as u64,
            oldest,
            ticket: batch.ticket.take(),
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
        let body = &buf[start..len];
        let ndjson = body[0] == b'{' && body.windows(2).any(|w| w == b"\n{");
        if body[0] == b'[' {
            self.parse_array(&mut buf[start..], len - start, url, attempts, dead);
        } else if ndjson {
            let mut line_start = start;
            while line_start < len {
                let line_end = buf[line_start..len]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(len, |p| line_start + p);
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
        let escaped = doc[..len].contains(&b'\\');
        if escaped {
            self.pristine.clear();
            self.pristine.extend_from_slice(&doc[..len]);
        }
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
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
            Err(e) => Err(Reject {
                class: "invalid json",
                detail: format!("invalid JSON: {e}"),
            }),
        };
        self.tape = tape.reset();
        if let Err(r) = result {
            let text = if escaped {
                &self.pristine[..]
            } else {
                &doc[..len]
            };
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
        match simd_json::fill_tape_padded(buf, len, &mut self.buffers, &mut tape) {
            Err(e) => {
                self.stats.records += 1;
                let r = Reject {
                    class: "invalid json",
                    detail: format!("invalid JSON: {e}"),
                };
                self.reject("body", url, r, body_excerpt, attempts, dead);
            }
            Ok(()) => {
                let nodes = &tape.0;
                let Some(&Node::Array { len: n, .. }) = nodes.first() else {
                    unreachable!("the body starts with [")
                };
                let mut idx = 1;
                for element in 0..n {
                    self.stats.records += 1;
                    let span = node_span(&nodes[idx]);
                    let result = match nodes[idx] {
                        Node::Object { .. } => self.record(&nodes[idx..idx + span]),
                        ref other => Err(Reject {
                            class: "not an object",
                            detail: format!(
                                "expected a JSON object, got {}",
                                type_name(Some(other))
                            ),
                        }),
                    };
                    if let Err(mut r) = result {
                        r.detail = format!("array element {element}: {}", r.detail);
                        self.reject("record", url, r, body_excerpt.clone(), attempts, dead);
                    }
                    idx += span;
                }
            }
        }
        self.tape = tape.reset();
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

    /// Checks one object's fields, then appends them as a row.
    fn record(&mut self, nodes: &[Node<'_>]) -> Result<(), Reject> {
        let Node::Object { len, .. } = nodes[0] else {
            unreachable!("caller checked")
        };
        let mut f = Fields::default();
        self.values.clear();
        let mut idx = 1;
        for _ in 0..len {
            let Node::String(key) = nodes[idx] else {
                unreachable!("object keys are strings")
            };
            let value = &nodes[idx + 1];
            let span = node_span(value);
            match key {
                "id" => f.id = int(key, value)?,
                "ts" => {
                    f.ts = match string(key, value)? {
                        None => None,
                        Some(s) => Some(parse_rfc3339(s).ok_or_else(|| Reject {
                            class: "invalid timestamp",
                            detail: format!("field `ts`: `{s}` is not an RFC 3339 date-time"),
                        })?),
                    }
                }
                "service" => f.service = string(key, value)?,
                "level" => f.level = string(key, value)?,
                "host" => f.host = string(key, value)?,
                "latency_ms" => f.latency_ms = float(key, value)?,
                "message" => f.message = string(key, value)?,
                "values" => {
                    self.values.clear();
                    f.has_values = match value {
                        Node::Static(StaticNode::Null) => false,
                        Node::Array { len, count } if len == count => {
                            for (k, v) in nodes[idx + 2..idx + 2 + len].iter().enumerate() {
                                match number(v) {
                                    Some(x) => self.values.push(x),
                                    None => {
                                        return Err(wrong_type(
                                            &format!("values[{k}]"),
                                            "number",
                                            Some(v),
                                        ));
                                    }
                                }
                            }
                            true
                        }
                        Node::Array { .. } => {
                            return Err(wrong_type(
                                key,
                                "array of numbers",
                                Some(&Node::Array { len: 0, count: 1 }),
                            ))
                        }
                        other => return Err(wrong_type(key, "array of numbers", Some(other))),
                    };
                }
                _ => {} // Unknown fields are ignored.
            }
            idx += 1 + span;
        }
        let c = &mut self.cols;
        c.id.append_option(f.id);
        c.ts.append_option(f.ts);
        c.service.append_option(f.service);
        c.level.append_option(f.level);
        c.host.append_option(f.host);
        c.latency_ms.append_option(f.latency_ms);
        c.message.append_option(f.message);
        if f.has_values {
            c.values.values().append_slice(&self.values);
            c.values.append(true);
        } else {
            c.values.append(false);
        }
        c.rows += 1;
        self.stats.rows += 1;
        Ok(())
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

fn int(key: &str, n: &Node<'_>) -> Result<Option<i64>, Reject> {
    match n {
        Node::Static(StaticNode::Null) => Ok(None),
        Node::Static(StaticNode::I64(x)) => Ok(Some(*x)),
        Node::Static(StaticNode::U64(x)) => i64::try_from(*x).map(Some).map_err(|_| Reject {
            class: "out of range",
            detail: format!("field `{key}`: {x} does not fit in a signed 64-bit integer"),
        }),
        other => Err(wrong_type(key, "an integer", Some(other))),
    }
}

fn float(key: &str, n: &Node<'_>) -> Result<Option<f64>, Reject> {
    match n {
        Node::Static(StaticNode::Null) => Ok(None),
        other => number(other)
            .map(Some)
            .ok_or_else(|| wrong_type(key, "a number", Some(other))),
    }
}

fn string<'a>(key: &str, n: &Node<'a>) -> Result<Option<&'a str>, Reject> {
    match n {
        Node::Static(StaticNode::Null) => Ok(None),
        Node::String(s) => Ok(Some(s)),
        other => Err(wrong_type(key, "a string", Some(other))),
    }
}

/// Decompresses `body` into `out` (followed by simd-json's padding); returns the decoded
/// length. More than `max` decoded bytes is an error, so a small compressed body cannot expand
/// without bound.
fn inflate(
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

    fn ids(rb: &RecordBatch) -> Vec<Option<i64>> {
        rb.column(0).as_primitive::<Int64Type>().iter().collect()
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
        let values = rows.column(schema::VALUES_COLUMN).as_list::<i32>();
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

//! Records → Arrow column builders, for any [`Layout`].
//!
//! A record (an object on the simd-json tape) is walked once against a tree of the configured
//! paths. Each field's value is checked and *staged* (numbers by value, strings as tape
//! positions, list elements in shared scratch vectors); only when every field passed are the
//! staged values appended, so a rejected record never leaves a half-written row.

use std::cell::Cell;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, FieldRef};
use simd_json::{Node, StaticNode};

use super::{node_span, Reject};
use crate::schema::{list_item, FieldType, Layout, Unknown};
use crate::time::{parse_rfc3339, TimeFormat};

/// Where a key leads: a column, or an object holding configured paths.
enum Target {
    Column(usize),
    Object(PathTree),
}

/// The configured paths below one object, as a small list (records have few keys; a linear
/// scan beats hashing at that size).
#[derive(Default)]
struct PathTree {
    keys: Vec<(Box<str>, Target)>,
    /// For the n-th key of the last object walked against this tree, where in `keys` it was
    /// found ([`NO_HINT`]: not found): records of one stream list their keys in one order, so
    /// the n-th key of the next record is most often that one again, found with one comparison
    /// instead of a scan. Only a guess: a miss scans as before.
    hints: Vec<Cell<u32>>,
}

/// A [`PathTree::hints`] slot with no guess.
const NO_HINT: u32 = u32::MAX;

/// Whether two keys are the same bytes. Keys are short (most under 16 bytes), and the
/// slices' `==` calls `memcmp` for each: 4 % of a Kafka read's samples went to those calls.
/// Two overlapping word loads compare a key of 4 to 16 bytes without one.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    #[inline]
    fn word8(s: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"))
    }
    #[inline]
    fn word4(s: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(s[at..at + 4].try_into().expect("4 bytes"))
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

impl PathTree {
    fn build(layout: &Layout) -> PathTree {
        let mut root = PathTree::default();
        for (col, f) in layout.fields.iter().enumerate() {
            let mut node = &mut root;
            for (depth, part) in f.path.iter().enumerate() {
                let last = depth + 1 == f.path.len();
                let at = match node.keys.iter().position(|(k, _)| **k == **part) {
                    Some(i) => i,
                    None => {
                        let t = if last {
                            Target::Column(col)
                        } else {
                            Target::Object(PathTree::default())
                        };
                        node.keys.push((part.as_str().into(), t));
                        node.keys.len() - 1
                    }
                };
                match &mut node.keys[at].1 {
                    Target::Object(child) if !last => node = child,
                    // Layout::new rejects a path that is both a field and a parent.
                    _ => break,
                }
            }
        }
        root
    }

    /// Makes room for a guess for each of the first `keys.len() + 8` keys of an object
    /// (unknown keys among them included); keys past that are looked up without one.
    fn with_hints(mut self) -> PathTree {
        self.hints = (0..self.keys.len() + 8)
            .map(|_| Cell::new(NO_HINT))
            .collect();
        for (_, t) in &mut self.keys {
            if let Target::Object(child) = t {
                *child = std::mem::take(child).with_hints();
            }
        }
        self
    }

    /// Where `key`, the `nth` key of its object, leads.
    fn find(&self, key: &str, nth: usize) -> Option<&Target> {
        let hint = self.hints.get(nth);
        if let Some(h) = hint {
            if let Some((k, t)) = self.keys.get(h.get() as usize) {
                if same_key(k.as_bytes(), key.as_bytes()) {
                    return Some(t);
                }
            }
        }
        let found = self
            .keys
            .iter()
            .position(|(k, _)| same_key(k.as_bytes(), key.as_bytes()));
        if let Some(h) = hint {
            h.set(found.map_or(NO_HINT, |i| i as u32));
        }
        found.map(|i| &self.keys[i].1)
    }
}

/// A checked value waiting to be appended.
#[derive(Clone)]
enum Staged {
    Missing,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A string: the index of its node on the record's tape.
    Str(usize),
    Ts(i64),
    ListF(Range<usize>),
    ListI(Range<usize>),
}

enum Builder {
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Dict(StringDictionaryBuilder<Int32Type>),
    Ts(TimestampMicrosecondBuilder),
    ListF(ListBuilder<Float64Builder>),
    ListI(ListBuilder<Int64Builder>),
}

/// How much the next batch's builders reserve: what the batch before held, a quarter more (one
/// record per request makes batches of varying length), at most [`Sizes::CAP_BYTES`] a
/// buffer. Arrow builders give up their buffers at `finish`, so without this every batch would
/// grow each buffer again from nothing (a 64-value list column of 30 rows: nine reallocations
/// instead of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sizes {
    rows: usize,
    /// List items, or a string column's distinct values (dictionary).
    values: usize,
    /// String bytes.
    bytes: usize,
}

impl Sizes {
    /// The arrow builders' own starting capacity, for the first batch.
    const FIRST: Sizes = Sizes {
        rows: 1024,
        values: 1024,
        bytes: 1024,
    };

    /// The most a buffer reserves: 1 MiB (of 8-byte values, or of string bytes). A batch past
    /// it (one huge page) grows its buffers as it goes, and the next batch does not reserve as
    /// much again: the arrays it hands on carry no outsized capacity through the queues.
    const CAP_BYTES: usize = 1 << 20;

    /// Sized for a batch like the one `a` came from.
    fn of(a: &dyn Array) -> Sizes {
        let n = Sizes::held(a);
        let next = |v: usize, cap: usize| (v + v / 4).min(cap);
        Sizes {
            rows: next(n.rows, Sizes::CAP_BYTES / 8),
            values: next(n.values, Sizes::CAP_BYTES / 8),
            bytes: next(n.bytes, Sizes::CAP_BYTES),
        }
    }

    fn held(a: &dyn Array) -> Sizes {
        use arrow_array::cast::AsArray;
        let rows = a.len();
        match a.data_type() {
            DataType::List(_) => Sizes {
                rows,
                values: a.as_list::<i32>().values().len(),
                bytes: 0,
            },
            DataType::Utf8 => Sizes {
                rows,
                values: 0,
                bytes: a.as_string::<i32>().value_data().len(),
            },
            DataType::Dictionary(_, _) => {
                let dict = a.as_dictionary::<Int32Type>().values();
                Sizes {
                    rows,
                    values: dict.len(),
                    bytes: dict
                        .as_string_opt::<i32>()
                        .map_or(0, |d| d.value_data().len()),
                }
            }
            _ => Sizes {
                rows,
                values: 0,
                bytes: 0,
            },
        }
    }
}

/// What every new builder shares, made once per parse thread rather than once per batch.
struct Shared {
    float_item: FieldRef,
    int_item: FieldRef,
    utc: Arc<str>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            float_item: list_item(DataType::Float64),
            int_item: list_item(DataType::Int64),
            utc: Arc::from("UTC"),
        }
    }
}

impl Builder {
    fn new(ty: FieldType, n: Sizes, shared: &Shared) -> Builder {
        match ty {
            FieldType::Int64 => Builder::I64(Int64Builder::with_capacity(n.rows)),
            FieldType::Float64 => Builder::F64(Float64Builder::with_capacity(n.rows)),
            FieldType::Bool => Builder::Bool(BooleanBuilder::with_capacity(n.rows)),
            FieldType::String => Builder::Str(StringBuilder::with_capacity(n.rows, n.bytes)),
            FieldType::Dict => Builder::Dict(StringDictionaryBuilder::with_capacity(
                n.rows, n.values, n.bytes,
            )),
            FieldType::Timestamp => Builder::Ts(
                TimestampMicrosecondBuilder::with_capacity(n.rows)
                    .with_timezone(Arc::clone(&shared.utc)),
            ),
            FieldType::ListFloat64 => Builder::ListF(
                ListBuilder::with_capacity(Float64Builder::with_capacity(n.values), n.rows)
                    .with_field(Arc::clone(&shared.float_item)),
            ),
            FieldType::ListInt64 => Builder::ListI(
                ListBuilder::with_capacity(Int64Builder::with_capacity(n.values), n.rows)
                    .with_field(Arc::clone(&shared.int_item)),
            ),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Dict(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::ListF(b) => Arc::new(b.finish()),
            Builder::ListI(b) => Arc::new(b.finish()),
        }
    }
}

/// The column builders of one parse thread, and the scratch space of the record being read.
pub(crate) struct Columns {
    layout: Arc<Layout>,
    tree: PathTree,
    builders: Vec<Builder>,
    shared: Shared,
    extra: Option<StringBuilder>,
    staged: Vec<Staged>,
    floats: Vec<f64>,
    ints: Vec<i64>,
    /// The record's unknown fields as a JSON object (with [`Unknown::Extra`]).
    extra_json: Vec<u8>,
    /// The dotted path of the object being walked, for messages and `_extra` keys.
    prefix: String,
    /// The lineage columns asked for, and the origin of the body being parsed.
    lineage: Option<LineageColumns>,
    pub(crate) rows: usize,
}

/// The builders of the lineage columns, and what the rows of the current body get.
struct LineageColumns {
    source: Option<StringBuilder>,
    fetched_at: Option<TimestampMicrosecondBuilder>,
    /// The current body's source, redacted.
    origin: String,
    /// When the current body was fetched, µs since the epoch.
    origin_at: i64,
}

impl LineageColumns {
    fn append(&mut self) {
        if let Some(b) = &mut self.source {
            b.append_value(&self.origin);
        }
        if let Some(b) = &mut self.fetched_at {
            b.append_value(self.origin_at);
        }
    }

    fn finish(&mut self, utc: &Arc<str>, columns: &mut Vec<ArrayRef>) {
        if let Some(b) = &mut self.source {
            let column = b.finish();
            let n = Sizes::of(&column);
            *b = StringBuilder::with_capacity(n.rows, n.bytes);
            columns.push(Arc::new(column));
        }
        if let Some(b) = &mut self.fetched_at {
            let column = b.finish();
            *b = TimestampMicrosecondBuilder::with_capacity(column.len())
                .with_timezone(Arc::clone(utc));
            columns.push(Arc::new(column));
        }
    }
}

impl Columns {
    pub(crate) fn new(layout: Arc<Layout>) -> Columns {
        let shared = Shared::new();
        let builders = layout
            .fields
            .iter()
            .map(|f| Builder::new(f.ty, Sizes::FIRST, &shared))
            .collect();
        let n = layout.fields.len();
        let lineage = layout.lineage.any().then(|| LineageColumns {
            source: layout.lineage.source.then(StringBuilder::new),
            fetched_at: layout
                .lineage
                .fetched_at
                .then(|| TimestampMicrosecondBuilder::new().with_timezone(Arc::clone(&shared.utc))),
            origin: String::new(),
            origin_at: 0,
        });
        Columns {
            lineage,
            tree: PathTree::build(&layout).with_hints(),
            extra: (layout.unknown == Unknown::Extra).then(StringBuilder::new),
            layout,
            builders,
            shared,
            staged: vec![Staged::Missing; n],
            floats: Vec::with_capacity(256),
            ints: Vec::new(),
            extra_json: Vec::new(),
            prefix: String::new(),
            rows: 0,
        }
    }

    pub(crate) fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Whether rows carry lineage columns (then [`Columns::set_origin`] is called per body).
    pub(crate) fn wants_origin(&self) -> bool {
        self.lineage.is_some()
    }

    /// The lineage of the rows of the next body: its source (already redacted) and when it
    /// was fetched, µs since the epoch.
    pub(crate) fn set_origin(&mut self, source: &str, fetched_at: i64) {
        if let Some(l) = &mut self.lineage {
            l.origin.clear();
            l.origin.push_str(source);
            l.origin_at = fetched_at;
        }
    }

    /// How many rows were appended since the last [`Columns::finish`].
    pub(crate) fn pending_rows(&self) -> usize {
        self.rows
    }

    /// The rows appended since the last call, as one batch of the layout's record schema.
    pub(crate) fn finish(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        self.rows = 0;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.builders.len() + 1);
        for (b, f) in self.builders.iter_mut().zip(&self.layout.fields) {
            let column = b.finish();
            *b = Builder::new(f.ty, Sizes::of(column.as_ref()), &self.shared);
            columns.push(column);
        }
        if let Some(extra) = &mut self.extra {
            let column = extra.finish();
            let n = Sizes::of(&column);
            *extra = StringBuilder::with_capacity(n.rows, n.bytes);
            columns.push(Arc::new(column));
        }
        if let Some(l) = &mut self.lineage {
            l.finish(&self.shared.utc, &mut columns);
        }
        Some(
            RecordBatch::try_new(self.layout.record_schema(), columns)
                .expect("builders match the record schema"),
        )
    }

    /// Checks the object at `nodes[0]` against the layout and appends it as a row, or says why
    /// not (and appends nothing).
    pub(crate) fn record(&mut self, nodes: &[Node<'_>]) -> Result<(), Reject> {
        self.staged.fill(Staged::Missing);
        self.floats.clear();
        self.ints.clear();
        self.extra_json.clear();
        self.prefix.clear();
        let mut st = Stage {
            layout: &self.layout,
            staged: &mut self.staged,
            floats: &mut self.floats,
            ints: &mut self.ints,
            extra: &mut self.extra_json,
            prefix: &mut self.prefix,
            matched: false,
        };
        st.walk(nodes, 0, &self.tree)?;
        if !st.matched && self.extra_json.is_empty() {
            // Every column would be null: the record is of another shape, and a row of nulls
            // would lose it without a word.
            return Err(no_field_of_the_schema(nodes));
        }
        for (b, s) in self.builders.iter_mut().zip(&self.staged) {
            append(b, s, nodes, &self.floats, &self.ints);
        }
        if let Some(extra) = &mut self.extra {
            if self.extra_json.is_empty() {
                extra.append_null();
            } else {
                self.extra_json.push(b'}');
                // Built from valid UTF-8 keys and values only.
                extra.append_value(std::str::from_utf8(&self.extra_json).unwrap_or("{}"));
            }
        }
        if let Some(l) = &mut self.lineage {
            l.append();
        }
        self.rows += 1;
        Ok(())
    }
}

fn append(b: &mut Builder, s: &Staged, nodes: &[Node<'_>], floats: &[f64], ints: &[i64]) {
    match (b, s) {
        (Builder::I64(b), Staged::Int(v)) => b.append_value(*v),
        (Builder::F64(b), Staged::Float(v)) => b.append_value(*v),
        (Builder::Bool(b), Staged::Bool(v)) => b.append_value(*v),
        (Builder::Ts(b), Staged::Ts(v)) => b.append_value(*v),
        (Builder::Str(b), Staged::Str(i)) => b.append_value(node_str(&nodes[*i])),
        (Builder::Dict(b), Staged::Str(i)) => {
            // Fails only past 2³¹ distinct values in one batch.
            let _ = b.append(node_str(&nodes[*i]));
        }
        (Builder::ListF(b), Staged::ListF(r)) => {
            b.values().append_slice(&floats[r.clone()]);
            b.append(true);
        }
        (Builder::ListI(b), Staged::ListI(r)) => {
            b.values().append_slice(&ints[r.clone()]);
            b.append(true);
        }
        (Builder::I64(b), _) => b.append_null(),
        (Builder::F64(b), _) => b.append_null(),
        (Builder::Bool(b), _) => b.append_null(),
        (Builder::Ts(b), _) => b.append_null(),
        (Builder::Str(b), _) => b.append_null(),
        (Builder::Dict(b), _) => b.append_null(),
        (Builder::ListF(b), _) => b.append(false),
        (Builder::ListI(b), _) => b.append(false),
    }
}

fn node_str<'a>(n: &Node<'a>) -> &'a str {
    match n {
        Node::String(s) => s,
        _ => unreachable!("staged as a string"),
    }
}

/// The walk over one record, borrowing the parts of [`Columns`] it fills.
struct Stage<'c> {
    layout: &'c Layout,
    staged: &'c mut [Staged],
    floats: &'c mut Vec<f64>,
    ints: &'c mut Vec<i64>,
    extra: &'c mut Vec<u8>,
    prefix: &'c mut String,
    /// Whether some field of the schema was found (a null value included).
    matched: bool,
}

impl Stage<'_> {
    fn walk(&mut self, nodes: &[Node<'_>], at: usize, tree: &PathTree) -> Result<(), Reject> {
        let Node::Object { len, .. } = nodes[at] else {
            unreachable!("the caller found an object")
        };
        let mut idx = at + 1;
        for nth in 0..len {
            let Node::String(key) = nodes[idx] else {
                unreachable!("object keys are strings")
            };
            let v = idx + 1;
            let span = node_span(&nodes[v]);
            match tree.find(key, nth) {
                Some(Target::Column(c)) => self.stage(*c, nodes, v, key)?,
                Some(Target::Object(child)) => match nodes[v] {
                    Node::Object { .. } => {
                        let keep = self.prefix.len();
                        self.prefix.push_str(key);
                        self.prefix.push('.');
                        let r = self.walk(nodes, v, child);
                        self.prefix.truncate(keep);
                        r?;
                    }
                    // A missing parent: its fields are null (and present, as a null is).
                    Node::Static(StaticNode::Null) => self.matched = true,
                    ref other => {
                        return Err(wrong_type(
                            &format!("{}{key}", self.prefix),
                            "an object",
                            other,
                        ))
                    }
                },
                None => match self.layout.unknown {
                    Unknown::Ignore => {}
                    Unknown::Reject => {
                        return Err(Reject {
                            class: "unknown field",
                            detail: format!(
                            "field `{}{key}` is not in the schema (schema.unknown = \"reject\")",
                            self.prefix
                        ),
                        })
                    }
                    Unknown::Extra => {
                        self.extra
                            .push(if self.extra.is_empty() { b'{' } else { b',' });
                        let name = format!("{}{key}", self.prefix);
                        crate::json::write_string(self.extra, &name);
                        self.extra.push(b':');
                        write_node(nodes, v, self.extra);
                    }
                },
            }
            idx = v + span;
        }
        Ok(())
    }

    fn stage(&mut self, col: usize, nodes: &[Node<'_>], v: usize, key: &str) -> Result<(), Reject> {
        self.matched = true;
        let n = &nodes[v];
        if matches!(n, Node::Static(StaticNode::Null)) {
            self.staged[col] = Staged::Missing;
            return Ok(());
        }
        let field = || format!("{}{key}", self.prefix);
        let ty = self.layout.fields[col].ty;
        self.staged[col] = match ty {
            // The field's name is built only for an error: no allocation per record.
            FieldType::Int64 => Staged::Int(int(field, n)?),
            FieldType::Float64 => match number(n) {
                Some(x) => Staged::Float(x),
                None => return Err(wrong_type(&field(), "a number", n)),
            },
            FieldType::Bool => match n {
                Node::Static(StaticNode::Bool(b)) => Staged::Bool(*b),
                other => return Err(wrong_type(&field(), "true or false", other)),
            },
            FieldType::String | FieldType::Dict => match n {
                Node::String(_) => Staged::Str(v),
                other => return Err(wrong_type(&field(), "a string", other)),
            },
            FieldType::Timestamp => {
                let rule = &self.layout.timestamps;
                let read = match n {
                    // The fast path: the default format, a date-time with its offset.
                    Node::String(s) if rule.format == TimeFormat::Rfc3339 => match parse_rfc3339(s)
                    {
                        Some(us) => Ok(us),
                        None => rule.parse_rfc3339_or_local(s),
                    },
                    Node::String(s) => rule.parse_str(s),
                    other => match number(other) {
                        Some(x) => rule.parse_number(x),
                        None => {
                            return Err(wrong_type(
                                &field(),
                                "a date-time string or an epoch number",
                                other,
                            ))
                        }
                    },
                };
                Staged::Ts(read.map_err(|why| Reject {
                    class: "invalid timestamp",
                    detail: format!("field `{}`: {why}", field()),
                })?)
            }
            FieldType::ListFloat64 | FieldType::ListInt64 => {
                let Node::Array { len, count } = *n else {
                    return Err(wrong_type(&field(), "an array of numbers", n));
                };
                if len != count {
                    return Err(Reject {
                        class: "wrong type",
                        detail: format!(
                            "field `{}`: expected an array of numbers, got nested arrays or objects",
                            field()
                        ),
                    });
                }
                let items = &nodes[v + 1..v + 1 + len];
                if ty == FieldType::ListFloat64 {
                    let start = self.floats.len();
                    for (k, item) in items.iter().enumerate() {
                        match number(item) {
                            Some(x) => self.floats.push(x),
                            None => {
                                return Err(wrong_type(
                                    &format!("{}[{k}]", field()),
                                    "a number",
                                    item,
                                ))
                            }
                        }
                    }
                    Staged::ListF(start..self.floats.len())
                } else {
                    let start = self.ints.len();
                    for (k, item) in items.iter().enumerate() {
                        self.ints.push(int(|| format!("{}[{k}]", field()), item)?);
                    }
                    Staged::ListI(start..self.ints.len())
                }
            }
        };
        Ok(())
    }
}

/// The dead-letter class of a record none of whose fields is in the schema.
pub(crate) const NO_FIELD_CLASS: &str = "no field of the schema";

/// Why the object at `nodes[0]` is refused when none of its fields is in the schema: its first
/// few keys, and a hint when one of them holds an array of objects (the records of an
/// envelope, most likely).
fn no_field_of_the_schema(nodes: &[Node<'_>]) -> Reject {
    let Node::Object { len, .. } = nodes[0] else {
        unreachable!("the caller found an object")
    };
    let mut keys = Vec::new();
    let mut envelope = None;
    let mut idx = 1;
    for _ in 0..len {
        let Node::String(key) = nodes[idx] else {
            unreachable!("object keys are strings")
        };
        if keys.len() < 5 {
            keys.push(format!("`{key}`"));
        }
        if let Node::Array { len: n, .. } = nodes[idx + 1] {
            if n > 0 && envelope.is_none() && matches!(nodes[idx + 2], Node::Object { .. }) {
                envelope = Some(key.to_string());
            }
        }
        idx += 1 + node_span(&nodes[idx + 1]);
    }
    let mut detail = match len {
        0 => "the record is an empty object: no field of the schema".to_string(),
        _ => format!(
            "none of the record's fields ({}{}) is in the schema",
            keys.join(", "),
            if len > keys.len() { ", ..." } else { "" }
        ),
    };
    if let Some(key) = envelope {
        detail.push_str(&format!(
            "; `{key}` holds an array of objects: if the records are in it, set \
             fetch.records_field = \"{key}\" (--records-field {key})"
        ));
    }
    Reject {
        class: NO_FIELD_CLASS,
        detail,
    }
}

fn wrong_type(field: &str, expected: &str, got: &Node<'_>) -> Reject {
    super::wrong_type(field, expected, Some(got))
}

fn number(n: &Node<'_>) -> Option<f64> {
    super::number(n)
}

fn int(field: impl Fn() -> String, n: &Node<'_>) -> Result<i64, Reject> {
    match n {
        Node::Static(StaticNode::I64(x)) => Ok(*x),
        Node::Static(StaticNode::U64(x)) => i64::try_from(*x).map_err(|_| Reject {
            class: "out of range",
            detail: format!(
                "field `{}`: {x} does not fit in a signed 64-bit integer",
                field()
            ),
        }),
        other => Err(super::wrong_type(&field(), "an integer", Some(other))),
    }
}

/// Writes the value at `nodes[i]` back as JSON text.
pub(crate) fn write_node(nodes: &[Node<'_>], i: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    match &nodes[i] {
        Node::String(s) => crate::json::write_string(out, s),
        Node::Static(StaticNode::Null) => out.extend_from_slice(b"null"),
        Node::Static(StaticNode::Bool(b)) => {
            out.extend_from_slice(if *b { b"true" } else { b"false" })
        }
        Node::Static(StaticNode::I64(x)) => {
            let _ = write!(out, "{x}");
        }
        Node::Static(StaticNode::U64(x)) => {
            let _ = write!(out, "{x}");
        }
        Node::Static(StaticNode::F64(x)) => {
            // `{:?}` keeps a decimal point or exponent, so the value reads back as a float.
            let _ = write!(out, "{x:?}");
        }
        Node::Array { len, .. } => {
            out.push(b'[');
            let mut j = i + 1;
            for k in 0..*len {
                if k > 0 {
                    out.push(b',');
                }
                write_node(nodes, j, out);
                j += node_span(&nodes[j]);
            }
            out.push(b']');
        }
        Node::Object { len, .. } => {
            out.push(b'{');
            let mut j = i + 1;
            for k in 0..*len {
                if k > 0 {
                    out.push(b',');
                }
                write_node(nodes, j, out);
                out.push(b':');
                write_node(nodes, j + 1, out);
                j += 1 + node_span(&nodes[j + 1]);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};

    fn sizes(s: Sizes) -> (usize, usize, usize) {
        (s.rows, s.values, s.bytes)
    }

    #[test]
    fn same_key_agrees_with_equality_at_every_length_and_differing_byte() {
        for n in 0..=24usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_key(&a, &a.clone()), "{n} bytes");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_key(&a, &b), "{n} bytes, differing at {at}");
            }
            let mut longer = a.clone();
            longer.push(b'z');
            assert!(
                !same_key(&a, &longer) && !same_key(&longer, &a),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn a_key_is_found_whatever_the_order_of_the_records_keys() {
        let names = [
            "id",
            "ts",
            "level",
            "status",
            "values",
            "latency_ms",
            "a_long_key_name_1",
        ];
        let tree = PathTree {
            keys: names
                .iter()
                .enumerate()
                .map(|(i, k)| ((*k).into(), Target::Column(i)))
                .collect(),
            hints: Vec::new(),
        }
        .with_hints();
        let column = |t: Option<&Target>| match t {
            Some(Target::Column(c)) => Some(*c),
            Some(Target::Object(_)) => panic!("no objects here"),
            None => None,
        };
        // The schema's order, then others, unknown keys among them, repeated so that the
        // guesses of one record meet the keys of the next.
        let records: Vec<Vec<&str>> = vec![
            names.to_vec(),
            names.to_vec(),
            names.iter().rev().copied().collect(),
            vec![
                "ts",
                "unknown",
                "id",
                "a_long_key_name_2",
                "a_long_key_name_1",
            ],
            vec!["unknown", "ts", "id"],
            names.to_vec(),
            vec![
                "x", "y", "z", "w", "v", "u", "t", "s", "r", "q", "p", "o", "n", "m", "id",
            ],
        ];
        for _ in 0..2 {
            for r in &records {
                for (nth, key) in r.iter().enumerate() {
                    let want = names.iter().position(|k| k == key);
                    assert_eq!(
                        column(tree.find(key, nth)),
                        want,
                        "{key} as key {nth} of {r:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_next_batch_reserves_a_quarter_more_than_the_last_held_and_no_more_than_the_cap() {
        // 30 rows of 64 values: the list column of one record per request.
        let mut b = ListBuilder::new(Float64Builder::new());
        for _ in 0..30 {
            b.values().append_slice(&[1.5; 64]);
            b.append(true);
        }
        assert_eq!(sizes(Sizes::of(&b.finish())), (37, 2400, 0));
        let s = StringArray::from(vec!["abcd"; 40]);
        assert_eq!(sizes(Sizes::of(&s)), (50, 0, 200));
        let mut d = StringDictionaryBuilder::<Int32Type>::new();
        for v in ["a", "bb", "a", "ccc"] {
            d.append_value(v);
        }
        assert_eq!(sizes(Sizes::of(&d.finish())), (5, 3, 7));
        // One huge batch: the next reserves at most 1 MiB a buffer.
        let big = Int64Array::from(vec![7; 1 << 20]);
        assert_eq!(Sizes::of(&big).rows, Sizes::CAP_BYTES / 8);
        let long = StringArray::from(vec!["x".repeat(1 << 21)]);
        assert_eq!(sizes(Sizes::of(&long)), (1, 0, Sizes::CAP_BYTES));
    }
}

//! [`WindowOutput`]: the window rows an operator call produced, and the rows it rejected.

use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    Int8Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_schema::{DataType, SchemaRef};

use super::operator::{decode_key, KeyKind, KeyValue, Rejected};

/// One window row, as the operator hands it over.
pub(crate) struct OutRow<'a> {
    pub start: i64,
    pub end: i64,
    pub key: &'a [u8],
    pub count: u64,
    /// Per aggregate column, raw bits of its type (see `Acc::value`); `None` is null.
    pub values: &'a [Option<u64>],
    pub partial: Option<bool>,
}

/// Window rows and rejected rows produced by the operator's calls. Rows collect until
/// [`take_rows`](WindowOutput::take_rows); rejected rows until
/// [`take_rejected`](WindowOutput::take_rejected) (or read `rejected` directly).
#[derive(Debug)]
pub struct WindowOutput {
    /// Rows not windowed, with reasons (row indexes refer to the batch of the `push` that
    /// rejected them: take them after each push).
    pub rejected: Vec<Rejected>,
    schema: SchemaRef,
    key_kinds: Vec<KeyKind>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    /// Encoded keys, one after the other, and where each ends.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    counts: Vec<i64>,
    /// Column-major: `values[c][row]`.
    values: Vec<Vec<Option<u64>>>,
    partial: Vec<bool>,
}

impl WindowOutput {
    /// An empty output for rows of `schema` (the operator's
    /// [`output_schema`](super::WindowOperator::output_schema)).
    pub fn new(schema: SchemaRef) -> WindowOutput {
        let fields = schema.fields();
        let count_at = fields
            .iter()
            .position(|f| f.name() == "count")
            .unwrap_or(fields.len());
        let key_kinds = fields
            .iter()
            .take(count_at)
            .skip(2)
            .map(|f| key_kind(f.data_type()))
            .collect();
        let has_partial = fields.last().is_some_and(|f| f.name() == "partial");
        let n_values = fields
            .len()
            .saturating_sub(count_at + 1 + usize::from(has_partial));
        WindowOutput {
            rejected: Vec::new(),
            schema,
            key_kinds,
            starts: Vec::new(),
            ends: Vec::new(),
            keys: Vec::new(),
            key_ends: Vec::new(),
            counts: Vec::new(),
            values: vec![Vec::new(); n_values],
            partial: Vec::new(),
        }
    }

    /// The schema of the rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Window rows waiting to be taken.
    pub fn pending_rows(&self) -> usize {
        self.starts.len()
    }

    pub(crate) fn push_row(&mut self, r: OutRow<'_>) {
        self.starts.push(r.start);
        self.ends.push(r.end);
        self.keys.extend_from_slice(r.key);
        self.key_ends.push(self.keys.len());
        self.counts.push(r.count as i64);
        for (col, v) in self.values.iter_mut().zip(r.values) {
            col.push(*v);
        }
        if let Some(p) = r.partial {
            self.partial.push(p);
        }
    }

    /// The window rows emitted since the last call, as one batch in emission order; `None`
    /// when there are none.
    pub fn take_rows(&mut self) -> Option<RecordBatch> {
        if self.starts.is_empty() {
            return None;
        }
        let fields = self.schema.fields().clone();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(fields.len());
        let ts = |v: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
        };
        cols.push(ts(std::mem::take(&mut self.starts)));
        cols.push(ts(std::mem::take(&mut self.ends)));
        // Keys, decoded column by column.
        let mut decoded: Vec<Vec<KeyValue<'_>>> = Vec::with_capacity(self.key_ends.len());
        let mut from = 0;
        for &end in &self.key_ends {
            decoded.push(decode_key(&self.key_kinds, &self.keys[from..end]));
            from = end;
        }
        for (c, kind) in self.key_kinds.iter().enumerate() {
            let t = fields[2 + c].data_type();
            let col = decoded.iter().map(|row| row[c]);
            cols.push(key_array(t, *kind, col));
        }
        drop(decoded);
        self.keys.clear();
        self.key_ends.clear();
        cols.push(Arc::new(Int64Array::from(std::mem::take(&mut self.counts))));
        let first_value = 2 + self.key_kinds.len() + 1;
        for (i, v) in self.values.iter_mut().enumerate() {
            cols.push(value_array(
                fields[first_value + i].data_type(),
                std::mem::take(v),
            ));
        }
        if cols.len() < fields.len() {
            cols.push(Arc::new(BooleanArray::from(std::mem::take(
                &mut self.partial,
            ))));
        }
        // The columns are built from the schema's own types, so this cannot fail short of a
        // bug; a bug loses these rows loudly in debug builds and returns None in release.
        match RecordBatch::try_new(self.schema.clone(), cols) {
            Ok(b) => Some(b),
            Err(e) => {
                debug_assert!(false, "window rows do not match their schema: {e}");
                None
            }
        }
    }

    /// The rejected rows since the last call.
    pub fn take_rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }
}

fn key_kind(t: &DataType) -> KeyKind {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => KeyKind::Signed,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            KeyKind::Unsigned
        }
        DataType::Boolean => KeyKind::Bool,
        _ => KeyKind::Str,
    }
}

fn key_array<'a>(
    t: &DataType,
    kind: KeyKind,
    vals: impl Iterator<Item = KeyValue<'a>>,
) -> ArrayRef {
    let signed = |v: KeyValue<'_>| match v {
        KeyValue::Signed(x) => Some(x),
        _ => None,
    };
    let unsigned = |v: KeyValue<'_>| match v {
        KeyValue::Unsigned(x) => Some(x),
        _ => None,
    };
    let string = |v: KeyValue<'a>| match v {
        KeyValue::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    match (kind, t) {
        (KeyKind::Bool, _) => Arc::new(
            vals.map(|v| match v {
                KeyValue::Bool(b) => Some(b),
                _ => None,
            })
            .collect::<BooleanArray>(),
        ),
        (_, DataType::Int64) => Arc::new(vals.map(signed).collect::<Int64Array>()),
        (_, DataType::Int32) => Arc::new(
            vals.map(|v| signed(v).map(|x| x as i32))
                .collect::<Int32Array>(),
        ),
        (_, DataType::Int16) => Arc::new(
            vals.map(|v| signed(v).map(|x| x as i16))
                .collect::<Int16Array>(),
        ),
        (_, DataType::Int8) => Arc::new(
            vals.map(|v| signed(v).map(|x| x as i8))
                .collect::<Int8Array>(),
        ),
        (_, DataType::UInt64) => Arc::new(vals.map(unsigned).collect::<UInt64Array>()),
        (_, DataType::UInt32) => Arc::new(
            vals.map(|v| unsigned(v).map(|x| x as u32))
                .collect::<UInt32Array>(),
        ),
        (_, DataType::UInt16) => Arc::new(
            vals.map(|v| unsigned(v).map(|x| x as u16))
                .collect::<UInt16Array>(),
        ),
        (_, DataType::UInt8) => Arc::new(
            vals.map(|v| unsigned(v).map(|x| x as u8))
                .collect::<UInt8Array>(),
        ),
        (_, DataType::LargeUtf8) => Arc::new(vals.map(string).collect::<LargeStringArray>()),
        (_, DataType::Utf8View) => Arc::new(vals.map(string).collect::<StringViewArray>()),
        (_, DataType::Dictionary(_, _)) => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            for v in vals {
                match string(v) {
                    Some(s) => {
                        b.append_value(s);
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        _ => Arc::new(vals.map(string).collect::<StringArray>()),
    }
}

fn value_array(t: &DataType, v: Vec<Option<u64>>) -> ArrayRef {
    let it = v.into_iter();
    match t {
        DataType::Float64 => Arc::new(it.map(|b| b.map(f64::from_bits)).collect::<Float64Array>()),
        DataType::Float32 => Arc::new(
            it.map(|b| b.map(|b| f64::from_bits(b) as f32))
                .collect::<Float32Array>(),
        ),
        DataType::Int64 => Arc::new(it.map(|b| b.map(|b| b as i64)).collect::<Int64Array>()),
        DataType::Int32 => Arc::new(
            it.map(|b| b.map(|b| b as i64 as i32))
                .collect::<Int32Array>(),
        ),
        DataType::Int16 => Arc::new(
            it.map(|b| b.map(|b| b as i64 as i16))
                .collect::<Int16Array>(),
        ),
        DataType::Int8 => Arc::new(it.map(|b| b.map(|b| b as i64 as i8)).collect::<Int8Array>()),
        DataType::UInt64 => Arc::new(it.collect::<UInt64Array>()),
        DataType::UInt32 => Arc::new(it.map(|b| b.map(|b| b as u32)).collect::<UInt32Array>()),
        DataType::UInt16 => Arc::new(it.map(|b| b.map(|b| b as u16)).collect::<UInt16Array>()),
        DataType::UInt8 => Arc::new(it.map(|b| b.map(|b| b as u8)).collect::<UInt8Array>()),
        // The operator makes only the types above.
        _ => Arc::new(it.map(|b| b.map(f64::from_bits)).collect::<Float64Array>()),
    }
}

//! Rows as JSON objects: the dead-letter excerpt of a row refused after it was parsed, and the
//! message of each row a `kafka://` output produces.
//!
//! [`JsonRows`] looks at a batch's columns once (their types, dictionary keys) and then writes
//! any row into a buffer the caller reuses: the Kafka output writes every row of every batch
//! through it, so nothing is allocated per value (numbers through `itoa`/`zmij`, not `Display`
//! into a fresh `String`) and nothing is re-inspected per row.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::json::write_string;
use crate::time::format_rfc3339_micros;

/// Row `i` of `rows` as one JSON object, columns in order. Timestamps are RFC 3339 strings, as
/// they were read; floats that are not finite are `null` (JSON has no NaN); a type no layout
/// produces is written as its Arrow type name.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
/// let rows = RecordBatch::try_from_iter([
///     ("id", Arc::new(Int64Array::from(vec![7])) as _),
///     ("msg", Arc::new(StringArray::from(vec!["a \"b\""])) as _),
///     ("ms", Arc::new(Float64Array::from(vec![1.5])) as _),
/// ])
/// .unwrap();
/// assert_eq!(pinflow::output::row_json(&rows, 0), r#"{"id":7,"msg":"a \"b\"","ms":1.5}"#);
/// ```
pub fn row_json(rows: &RecordBatch, i: usize) -> String {
    let mut out = Vec::with_capacity(256);
    JsonRows::new(rows).write_row(i, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A batch's rows, ready to be written as JSON objects one by one.
pub(crate) struct JsonRows<'a> {
    /// Each column's name, already quoted and followed by `:` (with a leading `,` after the
    /// first), and its encoder.
    columns: Vec<(Vec<u8>, Column<'a>)>,
}

impl<'a> JsonRows<'a> {
    pub(crate) fn new(rows: &'a RecordBatch) -> JsonRows<'a> {
        let schema = rows.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(rows.columns())
            .enumerate()
            .map(|(j, (field, array))| {
                let mut name = Vec::with_capacity(field.name().len() + 4);
                if j > 0 {
                    name.push(b',');
                }
                write_string(&mut name, field.name());
                name.push(b':');
                (name, Column::new(array.as_ref()))
            })
            .collect();
        JsonRows { columns }
    }

    /// Appends row `i` as one JSON object to `out`.
    pub(crate) fn write_row(&self, i: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        for (name, column) in &self.columns {
            out.extend_from_slice(name);
            column.write(i, out);
        }
        out.push(b'}');
    }

    /// Appends the value of row `i` in column number `j` as JSON.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))] // (A Kafka message's key.)
    pub(crate) fn write_value(&self, j: usize, i: usize, out: &mut Vec<u8>) {
        self.columns[j].1.write(i, out);
    }

    /// The text of row `i` in column number `j` if it is a string (not JSON-quoted).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn str_value(&self, j: usize, i: usize) -> Option<&'a str> {
        self.columns[j].1.str_value(i)
    }
}

/// One column, downcast once.
enum Column<'a> {
    Int8(&'a PrimitiveArray<Int8Type>),
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    UInt8(&'a PrimitiveArray<UInt8Type>),
    UInt16(&'a PrimitiveArray<UInt16Type>),
    UInt32(&'a PrimitiveArray<UInt32Type>),
    UInt64(&'a PrimitiveArray<UInt64Type>),
    Float32(&'a PrimitiveArray<Float32Type>),
    Float64(&'a PrimitiveArray<Float64Type>),
    Boolean(&'a BooleanArray),
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Micros(&'a PrimitiveArray<TimestampMicrosecondType>),
    /// A dictionary: each row's key (normalized once for the whole column) into its values.
    Dictionary {
        array: &'a dyn Array,
        keys: Vec<usize>,
        values: Box<Column<'a>>,
    },
    List {
        array: &'a arrow_array::ListArray,
        items: Box<Column<'a>>,
    },
    /// A type no layout produces: its Arrow type name.
    Other(&'a dyn Array),
}

impl<'a> Column<'a> {
    fn new(a: &'a dyn Array) -> Column<'a> {
        match a.data_type() {
            DataType::Int8 => Column::Int8(a.as_primitive()),
            DataType::Int16 => Column::Int16(a.as_primitive()),
            DataType::Int32 => Column::Int32(a.as_primitive()),
            DataType::Int64 => Column::Int64(a.as_primitive()),
            DataType::UInt8 => Column::UInt8(a.as_primitive()),
            DataType::UInt16 => Column::UInt16(a.as_primitive()),
            DataType::UInt32 => Column::UInt32(a.as_primitive()),
            DataType::UInt64 => Column::UInt64(a.as_primitive()),
            DataType::Float32 => Column::Float32(a.as_primitive()),
            DataType::Float64 => Column::Float64(a.as_primitive()),
            DataType::Boolean => Column::Boolean(a.as_boolean()),
            DataType::Utf8 => Column::Utf8(a.as_string()),
            DataType::LargeUtf8 => Column::LargeUtf8(a.as_string()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Column::Micros(a.as_primitive()),
            DataType::Dictionary(_, _) => {
                let d = a.as_any_dictionary();
                Column::Dictionary {
                    array: a,
                    keys: d.normalized_keys(),
                    values: Box::new(Column::new(dictionary_values(d))),
                }
            }
            DataType::List(_) => {
                let array = a.as_list::<i32>();
                Column::List {
                    array,
                    items: Box::new(Column::new(array.values().as_ref())),
                }
            }
            _ => Column::Other(a),
        }
    }

    fn array(&self) -> &dyn Array {
        match self {
            Column::Int8(a) => *a,
            Column::Int16(a) => *a,
            Column::Int32(a) => *a,
            Column::Int64(a) => *a,
            Column::UInt8(a) => *a,
            Column::UInt16(a) => *a,
            Column::UInt32(a) => *a,
            Column::UInt64(a) => *a,
            Column::Float32(a) => *a,
            Column::Float64(a) => *a,
            Column::Boolean(a) => *a,
            Column::Utf8(a) => *a,
            Column::LargeUtf8(a) => *a,
            Column::Micros(a) => *a,
            Column::Dictionary { array, .. } => *array,
            Column::List { array, .. } => *array,
            Column::Other(a) => *a,
        }
    }

    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    fn str_value(&self, i: usize) -> Option<&'a str> {
        if self.array().is_null(i) {
            return None;
        }
        match self {
            Column::Utf8(a) => Some(a.value(i)),
            Column::LargeUtf8(a) => Some(a.value(i)),
            Column::Dictionary { keys, values, .. } => values.str_value(*keys.get(i)?),
            _ => None,
        }
    }

    fn write(&self, i: usize, out: &mut Vec<u8>) {
        if self.array().is_null(i) {
            out.extend_from_slice(b"null");
            return;
        }
        let mut ints = itoa::Buffer::new();
        let mut int = |s: &str| out.extend_from_slice(s.as_bytes());
        match self {
            Column::Int8(a) => int(ints.format(a.value(i))),
            Column::Int16(a) => int(ints.format(a.value(i))),
            Column::Int32(a) => int(ints.format(a.value(i))),
            Column::Int64(a) => int(ints.format(a.value(i))),
            Column::UInt8(a) => int(ints.format(a.value(i))),
            Column::UInt16(a) => int(ints.format(a.value(i))),
            Column::UInt32(a) => int(ints.format(a.value(i))),
            Column::UInt64(a) => int(ints.format(a.value(i))),
            Column::Float32(a) => write_float(a.value(i) as f64, out),
            Column::Float64(a) => write_float(a.value(i), out),
            Column::Boolean(a) => {
                out.extend_from_slice(if a.value(i) { b"true" } else { b"false" })
            }
            Column::Utf8(a) => write_string(out, a.value(i)),
            Column::LargeUtf8(a) => write_string(out, a.value(i)),
            Column::Micros(a) => {
                out.push(b'"');
                format_rfc3339_micros(a.value(i), out);
                out.push(b'"');
            }
            Column::Dictionary { keys, values, .. } => match keys.get(i) {
                Some(&k) => values.write(k, out),
                None => out.extend_from_slice(b"null"),
            },
            Column::List { array, items } => {
                let offsets = array.value_offsets();
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                out.push(b'[');
                for k in from..to {
                    if k > from {
                        out.push(b',');
                    }
                    items.write(k, out);
                }
                out.push(b']');
            }
            Column::Other(a) => write_string(out, &a.data_type().to_string()),
        }
    }
}

/// A dictionary's values array, whatever its key type.
fn dictionary_values(d: &dyn arrow_array::AnyDictionaryArray) -> &dyn Array {
    let values: &ArrayRef = d.values();
    values.as_ref()
}

/// A float as JSON: the shortest text that reads back as the same value (`zmij`, serde_json's
/// own; `ryu` before it took 26 % of the Kafka output's writer thread); `null` for NaN and the
/// infinities, which JSON cannot hold.
fn write_float(v: f64, out: &mut Vec<u8>) {
    match v.is_finite() {
        true => out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes()),
        false => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{Float64Builder, ListBuilder, StringDictionaryBuilder};
    use arrow_array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn every_layout_type_is_written_as_json_that_reads_back_to_the_same_values() {
        let mut dict = StringDictionaryBuilder::<Int32Type>::new();
        dict.append_value("INFO");
        dict.append_null();
        dict.append_value("WARN");
        let mut list = ListBuilder::new(Float64Builder::new());
        list.values().append_value(1.0);
        list.values().append_value(2.5);
        list.append(true);
        list.append(false);
        list.values().append_value(-3e-7);
        list.append(true);
        let rows = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from(vec![1, -2, i64::MAX])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(0.1), None, Some(f64::NAN)])),
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["a\nb", "\"", "\u{1}"])),
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![0, 1_500_000, -1])),
            ),
            ("level", Arc::new(dict.finish())),
            ("values", Arc::new(list.finish())),
            ("ok", Arc::new(BooleanArray::from(vec![true, false, true]))),
        ])
        .unwrap();
        let got: Vec<serde_json::Value> = (0..3)
            .map(|i| serde_json::from_str(&row_json(&rows, i)).unwrap())
            .collect();
        let want = [
            serde_json::json!({"id": 1, "f": 0.1, "s": "a\nb", "ts": "1970-01-01T00:00:00.000000Z",
                               "level": "INFO", "values": [1.0, 2.5], "ok": true}),
            serde_json::json!({"id": -2, "f": null, "s": "\"", "ts": "1970-01-01T00:00:01.500000Z",
                               "level": null, "values": null, "ok": false}),
            serde_json::json!({"id": i64::MAX, "f": null, "s": "\u{1}",
                               "ts": "1969-12-31T23:59:59.999999Z", "level": "WARN",
                               "values": [-3e-7], "ok": true}),
        ];
        assert_eq!(got, want);
        let enc = JsonRows::new(&rows);
        assert_eq!(enc.str_value(4, 2), Some("WARN"));
        assert_eq!(enc.str_value(4, 1), None);
        assert_eq!(enc.str_value(0, 0), None);
        let mut v = Vec::new();
        enc.write_value(0, 2, &mut v);
        assert_eq!(v, i64::MAX.to_string().as_bytes());
    }

    #[test]
    fn a_sliced_batch_writes_its_own_rows() {
        let rows = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int64Array::from(vec![10, 11, 12])) as ArrayRef,
        )])
        .unwrap()
        .slice(1, 2);
        assert_eq!(row_json(&rows, 0), r#"{"id":11}"#);
        assert_eq!(row_json(&rows, 1), r#"{"id":12}"#);
    }

    #[test]
    fn a_refused_row_reads_back_as_json() {
        use arrow_array::builder::{Float64Builder, ListBuilder};
        use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};
        use arrow_schema::{Field, Schema};
        use std::sync::Arc;
        let mut list = ListBuilder::new(Float64Builder::new());
        list.values().append_value(1.5);
        list.values().append_value(f64::NAN);
        list.append(true);
        list.append(false);
        let rows = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("service", DataType::Utf8, true),
                Field::new(
                    "ts",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
                Field::new(
                    "values",
                    DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
                    true,
                ),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(StringArray::from(vec![Some("a\"b"), Some("c")])),
                Arc::new(TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("UTC")),
                Arc::new(list.finish()),
            ],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&row_json(&rows, 0)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": 7, "service": "a\"b", "ts": "1970-01-01T00:00:00.000000Z",
                "values": [1.5, null]})
        );
        assert_eq!(
            row_json(&rows, 1),
            r#"{"id":null,"service":"c","ts":null,"values":null}"#
        );
    }
}

//! Hive-style partitioning: which directory each row belongs in, and record batches split by it.
//!
//! A partition is a relative directory such as `service=api-gw-3/date=2026-11-24`, one
//! `NAME=VALUE` segment per configured name, in the configured order. Values are escaped the
//! Hive way (`/` → `%2F`, `=` → `%3D`, ...); a null or empty value is
//! [`HIVE_DEFAULT_PARTITION`]. The special name `date` is the UTC date (`YYYY-MM-DD`) of the
//! `ts` column.
//!
//! A segment longer than [`NAME_MAX`] bytes cannot be a directory name: its row is refused
//! ([`Split::refused`]) and becomes a dead letter, rather than failing the run or being
//! written under a made-up (hashed or cut) name that readers would take for the value.

use std::collections::HashMap;
use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, TimeUnit};

use crate::error::{Error, Result};
use crate::schema::{DATE_PARTITION, DATE_SOURCE};

/// The directory value of a null or empty partition value, as Hive, Spark and pyarrow write it.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Appends `value` to `out`, escaped like Hive's `FileUtils.escapePathName`: control
/// characters and `"#%'*/:=?\{[]^<>|` and DEL become `%XX` (upper-case hex); everything else,
/// other UTF-8 included, stays as it is.
pub fn escape_value(value: &str, out: &mut String) {
    for c in value.chars() {
        let escape = c.is_ascii_control()
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '{'
                    | '['
                    | ']'
                    | '^'
                    | '<'
                    | '>'
                    | '|'
            );
        if escape {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// The longest directory name, in bytes, that file systems take (`NAME_MAX` on Linux, the BSDs
/// and macOS; ext4, XFS, btrfs, ZFS and APFS all stop at 255).
pub const NAME_MAX: usize = 255;

/// A batch split by partition: see [`Partitioner::split`].
#[derive(Debug, Default)]
pub struct Split {
    /// The rows of each partition directory, in the order each first appears.
    pub parts: Vec<(String, RecordBatch)>,
    /// Rows (by index in the batch) that no directory can hold, with the reason.
    pub refused: Vec<(usize, String)>,
}

/// Splits record batches by the configured partition names.
#[derive(Debug, Clone)]
pub struct Partitioner {
    names: Vec<String>,
}

/// One column's values as the partitioner reads them.
enum Values<'a> {
    Str(&'a dyn Array),
    Int(&'a dyn Array),
    Date(&'a arrow_array::PrimitiveArray<TimestampMicrosecondType>),
}

impl Partitioner {
    /// A partitioner for `names`; each is checked against the rows it splits (with
    /// [`check_partition_column`](crate::schema::check_partition_column) when the layout is fixed, at configuration time).
    pub fn new(names: &[String]) -> Result<Partitioner> {
        Ok(Partitioner {
            names: names.to_vec(),
        })
    }

    /// The rows of `rows` grouped by partition directory, in the order each partition first
    /// appears; rows keep their order within a partition. A batch of one partition is
    /// returned as it is, without copying. A row whose directory name for some partition
    /// would pass [`NAME_MAX`] bytes is refused instead, with the reason.
    pub fn split(&self, rows: &RecordBatch) -> Result<Split> {
        let columns = self
            .names
            .iter()
            .map(|name| column(rows, name))
            .collect::<Result<Vec<_>>>()?;
        let mut key = String::with_capacity(64);
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        // Consecutive rows mostly share a day: format each date once.
        let mut day_cache: Option<(i64, String)> = None;
        let mut refused = Vec::new();
        'rows: for row in 0..rows.num_rows() {
            key.clear();
            for (j, (name, values)) in self.names.iter().zip(&columns).enumerate() {
                if j > 0 {
                    key.push('/');
                }
                let start = key.len();
                key.push_str(name);
                key.push('=');
                value_at(values, row, &mut key, &mut day_cache);
                let len = key.len() - start;
                if len > NAME_MAX {
                    refused.push((
                        row,
                        format!(
                            "partition value of `{name}` is too long for a directory name: \
                             `{name}=…` would be {len} bytes once escaped, the limit is \
                             {NAME_MAX}"
                        ),
                    ));
                    continue 'rows;
                }
            }
            let g = match index.get(key.as_str()) {
                Some(&g) => g,
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[g].1.push(row as u32);
        }
        if groups.len() == 1 && refused.is_empty() {
            let (key, _) = groups.pop().expect("one group");
            return Ok(Split {
                parts: vec![(key, rows.clone())],
                refused,
            });
        }
        let parts = groups
            .into_iter()
            .map(|(key, idx)| {
                let part = arrow_select::take::take_record_batch(rows, &UInt32Array::from(idx))
                    .map_err(|e| Error::Thread {
                        thread: "pinflow-writer".into(),
                        why: format!("splitting a batch by partition: {e}"),
                    })?;
                Ok((key, part))
            })
            .collect::<Result<_>>()?;
        Ok(Split { parts, refused })
    }
}

/// The column the `date` partition of window rows is taken from.
const WINDOW_DATE_SOURCE: &str = "window_start";

fn column<'a>(rows: &'a RecordBatch, name: &str) -> Result<Values<'a>> {
    let missing = |what: &str| Error::config("writer.partition_by", what.to_string());
    if name == DATE_PARTITION {
        // Window rows have no `ts`: their date is their window's start.
        let ts: &ArrayRef = rows
            .column_by_name(DATE_SOURCE)
            .or_else(|| rows.column_by_name(WINDOW_DATE_SOURCE))
            .ok_or_else(|| missing("no `ts` column for the `date` partition"))?;
        return match ts.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Ok(Values::Date(ts.as_primitive::<TimestampMicrosecondType>()))
            }
            other => Err(missing(&format!("`ts` is {other}, not a µs timestamp"))),
        };
    }
    let col = rows
        .column_by_name(name)
        .ok_or_else(|| missing(&format!("no column `{name}`")))?;
    match col.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => Ok(Values::Str(col.as_ref())),
        t if t.is_integer() => Ok(Values::Int(col.as_ref())),
        other => Err(missing(&format!("column `{name}` is {other}"))),
    }
}

/// Appends the escaped directory value of row `i`.
fn value_at(
    values: &Values<'_>,
    i: usize,
    out: &mut String,
    day_cache: &mut Option<(i64, String)>,
) {
    let default = |out: &mut String| out.push_str(HIVE_DEFAULT_PARTITION);
    match values {
        Values::Str(a) => {
            if a.is_null(i) {
                return default(out);
            }
            let s = match a.data_type() {
                DataType::LargeUtf8 => a.as_string::<i64>().value(i),
                _ => a.as_string::<i32>().value(i),
            };
            if s.is_empty() {
                default(out)
            } else {
                escape_value(s, out)
            }
        }
        Values::Int(a) => {
            if a.is_null(i) {
                return default(out);
            }
            let _ = match a.data_type() {
                DataType::Int8 => write!(out, "{}", a.as_primitive::<Int8Type>().value(i)),
                DataType::Int16 => write!(out, "{}", a.as_primitive::<Int16Type>().value(i)),
                DataType::Int32 => write!(out, "{}", a.as_primitive::<Int32Type>().value(i)),
                DataType::Int64 => write!(out, "{}", a.as_primitive::<Int64Type>().value(i)),
                DataType::UInt8 => write!(out, "{}", a.as_primitive::<UInt8Type>().value(i)),
                DataType::UInt16 => write!(out, "{}", a.as_primitive::<UInt16Type>().value(i)),
                DataType::UInt32 => write!(out, "{}", a.as_primitive::<UInt32Type>().value(i)),
                _ => write!(out, "{}", a.as_primitive::<UInt64Type>().value(i)),
            };
        }
        Values::Date(ts) => {
            if ts.is_null(i) {
                return default(out);
            }
            let day = ts.value(i).div_euclid(86_400_000_000);
            match day_cache {
                Some((d, s)) if *d == day => out.push_str(s),
                _ => {
                    let mut text = Vec::with_capacity(32);
                    crate::time::format_rfc3339_micros(day * 86_400_000_000, &mut text);
                    let text = String::from_utf8_lossy(&text);
                    let date = text.split('T').next().unwrap_or_default().to_string();
                    out.push_str(&date);
                    *day_cache = Some((day, date));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn values_are_escaped_the_hive_way() {
        let esc = |s: &str| {
            let mut out = String::new();
            escape_value(s, &mut out);
            out
        };
        assert_eq!(esc("api-gw-3"), "api-gw-3");
        assert_eq!(esc("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(esc("100%"), "100%25");
        assert_eq!(esc("x:y?z#\n"), "x%3Ay%3Fz%23%0A");
        assert_eq!(esc("..\\"), "..%5C");
        assert_eq!(esc("héllo wörld"), "héllo wörld");
    }

    #[test]
    fn rows_split_by_value_and_date() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("service", DataType::Utf8, true),
        ]));
        let day = 86_400_000_000i64;
        // 2026-11-24 is day 20_781 since the epoch.
        let d0 = 20_781 * day;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(d0),
                        Some(d0 + 5),
                        Some(d0 + day),
                        None,
                        Some(d0 - 1),
                        Some(d0 + 7),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    Some("a/b"),
                    Some("x"),
                    Some("a/b"),
                    None,
                    Some(""),
                    Some("a/b"),
                ])),
            ],
        )
        .unwrap();
        let p = Partitioner::new(&["service".into(), "date".into()]).unwrap();
        let parts = p.split(&batch).unwrap().parts;
        let got: Vec<(String, Vec<i64>)> = parts
            .iter()
            .map(|(k, b)| {
                let ids = b.column(0).as_primitive::<Int64Type>().values().to_vec();
                (k.clone(), ids)
            })
            .collect();
        let want = [
            ("service=a%2Fb/date=2026-11-24", vec![1, 6]),
            ("service=x/date=2026-11-24", vec![2]),
            ("service=a%2Fb/date=2026-11-25", vec![3]),
            (
                "service=__HIVE_DEFAULT_PARTITION__/date=__HIVE_DEFAULT_PARTITION__",
                vec![4],
            ),
            (
                "service=__HIVE_DEFAULT_PARTITION__/date=2026-11-23",
                vec![5],
            ),
        ];
        let want: Vec<(String, Vec<i64>)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, want);

        // One partition: the batch itself.
        let p = Partitioner::new(&["id".into()]).unwrap();
        let one = batch.slice(1, 1);
        let parts = p.split(&one).unwrap().parts;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, "id=2");
    }

    #[test]
    fn a_value_too_long_for_a_directory_name_is_refused_not_fatal() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("service", DataType::Utf8, true),
        ]));
        // `service=` is 8 bytes: 247 more make the longest name (255); escaping counts, so 100
        // slashes (300 bytes as `%2F`) do not fit however short they look.
        let fits = "a".repeat(NAME_MAX - 8);
        let long = "b".repeat(NAME_MAX - 7);
        let slashes = "/".repeat(100);
        let values = [fits.as_str(), long.as_str(), "x", slashes.as_str()];
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![0, 1, 2, 3])),
                Arc::new(StringArray::from(values.to_vec())),
            ],
        )
        .unwrap();
        let split = Partitioner::new(&["service".into()])
            .unwrap()
            .split(&batch)
            .unwrap();
        let keys: Vec<&str> = split.parts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [format!("service={fits}").as_str(), "service=x"]);
        assert_eq!(split.parts[0].0.len(), NAME_MAX);
        let refused: Vec<usize> = split.refused.iter().map(|(i, _)| *i).collect();
        assert_eq!(refused, [1, 3]);
        assert!(
            split.refused[0].1.contains("`service`") && split.refused[0].1.contains("256 bytes"),
            "{}",
            split.refused[0].1
        );
        assert!(
            split.refused[1].1.contains("308 bytes"),
            "{}",
            split.refused[1].1
        );
        // One partition left, but a row refused: not the batch as it is.
        let one = batch.slice(1, 2);
        let split = Partitioner::new(&["service".into()])
            .unwrap()
            .split(&one)
            .unwrap();
        assert_eq!(split.parts.len(), 1);
        assert_eq!(split.parts[0].1.num_rows(), 1);
        assert_eq!(split.refused.len(), 1);
    }
}

//! Polling without duplicates (`fetch.dedupe_key`): continuous mode fetches the same URLs on
//! every pass, so an API without a "since" parameter returns the records of earlier passes
//! again. This transform drops a row whose key (its value in the `dedupe_key` column) is among
//! the last `dedupe_window` keys kept, and the compute stage counts it as filtered (so the
//! ledger still balances: parsed = written + dead-lettered + filtered).
//!
//! The window is shared by every compute thread (one lock per batch), lives as long as the
//! pipeline (across passes), and is bounded: past `dedupe_window` keys the oldest is
//! forgotten, and a record seen again only after that many newer ones is written again. A row
//! with a null key is always kept: nothing says it is a duplicate. The window is in memory: a
//! restarted process starts with an empty one.

use std::collections::{HashSet, VecDeque};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parking_lot::Mutex;

use crate::stage::{BoxError, Transform};

/// A key's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Text(Box<str>),
}

/// The keys kept, oldest first.
#[derive(Default)]
struct Window {
    set: HashSet<Key>,
    order: VecDeque<Key>,
}

/// The transform: see the module docs.
pub struct Dedupe {
    column: String,
    window: usize,
    seen: Mutex<Window>,
}

impl Dedupe {
    /// Drops rows whose `column` value is among the last `window` kept.
    pub fn new(column: &str, window: usize) -> Dedupe {
        Dedupe {
            column: column.to_string(),
            window: window.max(1),
            seen: Mutex::new(Window::default()),
        }
    }
}

/// The key of row `i` of `col`, or `None` for a null (or a type that cannot be a key).
fn key(col: &ArrayRef, i: usize) -> Option<Key> {
    if col.is_null(i) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Int64 => Key::Int(col.as_primitive::<Int64Type>().value(i)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Key::Int(col.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        DataType::Float64 => Key::Int(
            col.as_primitive::<arrow_array::types::Float64Type>()
                .value(i)
                .to_bits() as i64,
        ),
        DataType::Boolean => Key::Int(i64::from(col.as_boolean().value(i))),
        DataType::Utf8 => Key::Text(col.as_string::<i32>().value(i).into()),
        DataType::Dictionary(..) => {
            let d = col.as_dictionary_opt::<Int32Type>()?;
            let k = d.keys().value(i) as usize;
            Key::Text(d.values().as_string_opt::<i32>()?.value(k).into())
        }
        _ => return None,
    })
}

impl Transform for Dedupe {
    fn name(&self) -> &str {
        "fetch.dedupe_key"
    }

    fn apply(&self, rows: RecordBatch) -> Result<RecordBatch, BoxError> {
        let Ok(at) = rows.schema().index_of(&self.column) else {
            return Err(format!(
                "the rows have no column `{}` (its columns: {})",
                self.column,
                rows.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into());
        };
        let col = rows.column(at).clone();
        let mut keep = Vec::with_capacity(rows.num_rows());
        let mut seen = self.seen.lock();
        for i in 0..rows.num_rows() {
            let Some(k) = key(&col, i) else {
                keep.push(true);
                continue;
            };
            if seen.set.contains(&k) {
                keep.push(false);
                continue;
            }
            keep.push(true);
            seen.set.insert(k.clone());
            seen.order.push_back(k);
            if seen.order.len() > self.window {
                if let Some(old) = seen.order.pop_front() {
                    seen.set.remove(&old);
                }
            }
        }
        drop(seen);
        if keep.iter().all(|k| *k) {
            return Ok(rows);
        }
        let mask = BooleanArray::from(keep);
        Ok(arrow_select::filter::filter_record_batch(&rows, &mask)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn batch(ids: &[Option<i64>]) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("{i:?}")).collect();
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
        ])
        .unwrap()
    }

    fn ids(b: &RecordBatch) -> Vec<Option<i64>> {
        b.column(0).as_primitive::<Int64Type>().iter().collect()
    }

    #[test]
    fn repeated_keys_are_dropped_within_the_window_and_nulls_kept() {
        let d = Dedupe::new("id", 3);
        let out = d
            .apply(batch(&[Some(1), Some(2), Some(1), None, None]))
            .unwrap();
        assert_eq!(ids(&out), [Some(1), Some(2), None, None]);
        let out = d.apply(batch(&[Some(2), Some(3), Some(4)])).unwrap();
        assert_eq!(ids(&out), [Some(3), Some(4)]);
        // 1 was the oldest of four kept keys: forgotten, so written again.
        let out = d.apply(batch(&[Some(1), Some(4)])).unwrap();
        assert_eq!(ids(&out), [Some(1)]);
        let by_name = Dedupe::new("name", 10);
        assert_eq!(
            by_name
                .apply(batch(&[Some(7), Some(7)]))
                .unwrap()
                .num_rows(),
            1
        );
    }

    #[test]
    fn a_missing_key_column_is_an_error_naming_the_columns() {
        let err = Dedupe::new("event_id", 3)
            .apply(batch(&[Some(1)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column `event_id`") && err.contains("id, name"),
            "{err}"
        );
    }
}

//! The compute stage: appends the statistics columns to a batch of parsed records.
//!
//! A `list<float64>` column is one flat `f64` buffer plus offsets, so each record's values are
//! a contiguous slice handed straight to the vectorized kernel in [`crate::stats`]: no copy,
//! no per-record allocation (a `list<int64>` is converted into one reused buffer; quantiles
//! sort a copy in another).

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::schema::{Layout, StatOp};
use crate::stats;

/// Appends the statistics `layout` asks for (`schema.stats`) to a batch of its record schema:
/// for each numeric list column, one column per statistic, null where the list is null.
pub fn add_statistics(rows: &RecordBatch, layout: &Layout) -> RecordBatch {
    let n = rows.num_rows();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    let mut as_f64: Vec<f64> = Vec::new();
    let mut scratch: Vec<f64> = Vec::new();
    for (spec, &col) in layout.stats.iter().zip(layout.stat_columns()) {
        let list = rows.column(col).as_list::<i32>();
        let offsets = list.value_offsets();
        let ints = matches!(list.value_type(), DataType::Int64);
        let mut counts: Vec<Int64Builder> = Vec::new();
        let mut floats: Vec<Float64Builder> = Vec::new();
        for op in &spec.ops {
            if *op == StatOp::Count {
                counts.push(Int64Builder::with_capacity(n));
            } else {
                floats.push(Float64Builder::with_capacity(n));
            }
        }
        for row in 0..n {
            if list.is_null(row) {
                counts.iter_mut().for_each(|b| b.append_null());
                floats.iter_mut().for_each(|b| b.append_null());
                continue;
            }
            let range = offsets[row] as usize..offsets[row + 1] as usize;
            // The list's child array may be sliced: offsets index its logical values.
            let values: &[f64] = if ints {
                let child = list.values().as_primitive::<Int64Type>();
                as_f64.clear();
                as_f64.extend(child.values()[range].iter().map(|&i| i as f64));
                &as_f64
            } else {
                &list.values().as_primitive::<Float64Type>().values()[range]
            };
            let s = stats::compute(values);
            let (mut c, mut f) = (counts.iter_mut(), floats.iter_mut());
            for op in &spec.ops {
                let v = match *op {
                    StatOp::Count => {
                        c.next()
                            .expect("one builder per count")
                            .append_value(s.count as i64);
                        continue;
                    }
                    StatOp::Sum => s.sum,
                    StatOp::Mean => s.mean,
                    StatOp::Variance => s.variance,
                    StatOp::Stddev => s.variance.map(f64::sqrt),
                    StatOp::Min => s.min,
                    StatOp::Max => s.max,
                    StatOp::Quantile(q) => stats::quantile(values, q, &mut scratch),
                };
                f.next()
                    .expect("one builder per statistic")
                    .append_option(v);
            }
        }
        let (mut c, mut f) = (counts.into_iter(), floats.into_iter());
        for op in &spec.ops {
            let array: ArrayRef = if *op == StatOp::Count {
                Arc::new(c.next().expect("built").finish())
            } else {
                Arc::new(f.next().expect("built").finish())
            };
            columns.push(array);
        }
    }
    RecordBatch::try_new(layout.output_schema(), columns)
        .expect("statistics columns match the output schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BodyBatch;
    use crate::parse::Parser;
    use arrow_array::types::Int64Type;

    #[test]
    fn statistics_per_row_with_nulls() {
        let mut b = BodyBatch::default();
        let body = "{\"id\":1,\"values\":[1,2,3,4]}\n{\"id\":2}\n{\"id\":3,\"values\":[]}\n{\"id\":4,\"values\":[7]}\n";
        b.push_body("u", body.as_bytes(), 1, std::time::Instant::now());
        let rows = Parser::new().parse_batch(&mut b).rows.unwrap();
        let layout = Layout::logs();
        let out = add_statistics(&rows, &layout);
        assert_eq!(out.schema(), layout.output_schema());
        let count: Vec<Option<i64>> = out.column(8).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(count, vec![Some(4), None, Some(0), Some(1)]);
        let mean: Vec<Option<f64>> = out.column(9).as_primitive::<Float64Type>().iter().collect();
        assert_eq!(mean, vec![Some(2.5), None, None, Some(7.0)]);
        let var: Vec<Option<f64>> = out
            .column(12)
            .as_primitive::<Float64Type>()
            .iter()
            .collect();
        assert_eq!(var[0], stats::reference(&[1.0, 2.0, 3.0, 4.0]).variance);
        assert_eq!(&var[1..], &[None, None, None]);
    }
}

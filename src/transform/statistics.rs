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
        // One builder per statistic, in spec order: Int64 for counts (and exact integer
        // min/max), Float64 for the rest.
        let mut builders: Vec<Out> = spec
            .ops
            .iter()
            .map(|op| match (op, ints) {
                (StatOp::Count, _) | (StatOp::Min | StatOp::Max, true) => {
                    Out::I(Int64Builder::with_capacity(n))
                }
                _ => Out::F(Float64Builder::with_capacity(n)),
            })
            .collect();
        for row in 0..n {
            if list.is_null(row) {
                builders.iter_mut().for_each(Out::null);
                continue;
            }
            let range = offsets[row] as usize..offsets[row + 1] as usize;
            // The list's child array may be sliced: offsets index its logical values.
            let exact: Option<&[i64]> =
                ints.then(|| &list.values().as_primitive::<Int64Type>().values()[range.clone()]);
            let values: &[f64] = match exact {
                Some(v) => {
                    as_f64.clear();
                    as_f64.extend(v.iter().map(|&i| i as f64));
                    &as_f64
                }
                None => &list.values().as_primitive::<Float64Type>().values()[range],
            };
            let s = stats::compute(values);
            // An integer list's exact sum (128 bits), once for both `sum` and `mean`.
            let exact_sum = exact
                .filter(|v| !v.is_empty())
                .map(|v| v.iter().map(|&i| i128::from(i)).sum::<i128>());
            for (op, b) in spec.ops.iter().zip(builders.iter_mut()) {
                match (op, b, exact) {
                    (StatOp::Count, Out::I(b), _) => b.append_value(s.count as i64),
                    (StatOp::Min, Out::I(b), Some(v)) => b.append_option(v.iter().min().copied()),
                    (StatOp::Max, Out::I(b), Some(v)) => b.append_option(v.iter().max().copied()),
                    (StatOp::Sum, Out::F(b), Some(_)) => {
                        b.append_option(exact_sum.map(|t| t as f64))
                    }
                    (StatOp::Mean, Out::F(b), Some(v)) => {
                        b.append_option(exact_sum.map(|t| t as f64 / v.len() as f64))
                    }
                    (op, Out::F(b), _) => b.append_option(match *op {
                        StatOp::Sum => s.sum,
                        StatOp::Mean => s.mean,
                        StatOp::Variance => s.variance,
                        StatOp::Stddev => s.variance.map(f64::sqrt),
                        StatOp::Min => s.min,
                        StatOp::Max => s.max,
                        StatOp::Quantile(q) => stats::quantile(values, q, &mut scratch),
                        StatOp::Count => unreachable!("counts are Int64"),
                    }),
                    (_, Out::I(_), _) => {
                        unreachable!("Int64 builders are for counts and exact min/max")
                    }
                }
            }
        }
        columns.extend(builders.into_iter().map(Out::finish));
    }
    RecordBatch::try_new(layout.output_schema(), columns)
        .expect("statistics columns match the output schema")
}

/// A statistics column being built.
enum Out {
    I(Int64Builder),
    F(Float64Builder),
}

impl Out {
    fn null(&mut self) {
        match self {
            Out::I(b) => b.append_null(),
            Out::F(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Out::I(mut b) => Arc::new(b.finish()),
            Out::F(mut b) => Arc::new(b.finish()),
        }
    }
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

    #[test]
    fn integer_lists_keep_exact_min_max_and_sum() {
        let fields = vec![
            "id:int64".parse().unwrap(),
            "n:list<int64>".parse().unwrap(),
        ];
        let stats = vec!["n:min,max,sum,mean".parse().unwrap()];
        let layout = std::sync::Arc::new(
            Layout::new(fields, crate::schema::Unknown::Ignore, stats).unwrap(),
        );
        let mut b = BodyBatch::default();
        let body = format!(
            "{{\"id\":1,\"n\":[9007199254740993]}}\n{{\"id\":2,\"n\":[{},{}]}}\n{{\"id\":3,\"n\":[]}}",
            i64::MAX,
            i64::MIN
        );
        b.push_body("u", body.as_bytes(), 1, std::time::Instant::now());
        let rows = Parser::with_layout(std::sync::Arc::clone(&layout))
            .parse_batch(&mut b)
            .rows
            .unwrap();
        let out = add_statistics(&rows, &layout);
        let i = |name: &str| -> Vec<Option<i64>> {
            out.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .collect()
        };
        let f = |name: &str| -> Vec<Option<f64>> {
            out.column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .iter()
                .collect()
        };
        assert_eq!(i("n_min"), [Some(9007199254740993), Some(i64::MIN), None]);
        assert_eq!(i("n_max"), [Some(9007199254740993), Some(i64::MAX), None]);
        assert_eq!(f("n_sum"), [Some(9007199254740993.0), Some(-1.0), None]);
        assert_eq!(f("n_mean"), [Some(9007199254740993.0), Some(-0.5), None]);
    }
}

//! The compute stage: appends the statistics columns to a batch of parsed records.
//!
//! The `values` list column is one flat `f64` buffer plus offsets, so each record's values are
//! a contiguous slice handed straight to the vectorized kernel in [`crate::stats`]: no copy,
//! no per-record allocation.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};

use crate::schema;
use crate::stats;

/// Adds `values_count`, `values_mean`, `values_min`, `values_max` and `values_variance` to a
/// batch with the [record schema](schema::record_schema).
pub fn add_statistics(rows: &RecordBatch) -> RecordBatch {
    let list = rows.column(schema::VALUES_COLUMN).as_list::<i32>();
    let offsets = list.value_offsets();
    let flat = list.values().as_primitive::<Float64Type>();
    // The list's child array may be sliced: offsets index into the child's logical values.
    let data = flat.values();
    let n = rows.num_rows();
    let mut count = Int64Builder::with_capacity(n);
    let mut mean = Float64Builder::with_capacity(n);
    let mut min = Float64Builder::with_capacity(n);
    let mut max = Float64Builder::with_capacity(n);
    let mut var = Float64Builder::with_capacity(n);
    for row in 0..n {
        if list.is_null(row) {
            count.append_null();
            mean.append_null();
            min.append_null();
            max.append_null();
            var.append_null();
            continue;
        }
        let s = stats::compute(&data[offsets[row] as usize..offsets[row + 1] as usize]);
        count.append_value(s.count as i64);
        mean.append_option(s.mean);
        min.append_option(s.min);
        max.append_option(s.max);
        var.append_option(s.variance);
    }
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    columns.push(Arc::new(count.finish()));
    columns.push(Arc::new(mean.finish()));
    columns.push(Arc::new(min.finish()));
    columns.push(Arc::new(max.finish()));
    columns.push(Arc::new(var.finish()));
    RecordBatch::try_new(schema::output_schema(), columns)
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
        let out = add_statistics(&rows);
        assert_eq!(out.schema(), schema::output_schema());
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

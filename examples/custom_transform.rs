//! A custom transform between the statistics and the writer: it adds a column computed from
//! the statistics (a z-score of each record's mean against a fixed baseline), and a per-record
//! filter drops debug records. Both run on the pinned compute threads.
//!
//! ```sh
//! cargo run --release --example custom_transform
//! ```

use std::sync::Arc;

use arrow_array::builder::Float64Builder;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use pinflow::stage::{BoxError, Transform};
use pinflow::{Pipeline, Source};

/// Adds `mean_z`: how many baseline standard deviations each record's mean is from the
/// baseline mean.
struct ZScore {
    baseline_mean: f64,
    baseline_sd: f64,
}

impl Transform for ZScore {
    fn name(&self) -> &str {
        "z-score"
    }

    fn apply(&self, rows: RecordBatch) -> Result<RecordBatch, BoxError> {
        let mean = rows
            .column_by_name("values_mean")
            .ok_or("no values_mean column")?
            .as_primitive::<Float64Type>();
        let mut z = Float64Builder::with_capacity(rows.num_rows());
        for i in 0..mean.len() {
            if mean.is_null(i) {
                z.append_null();
            } else {
                z.append_value((mean.value(i) - self.baseline_mean) / self.baseline_sd);
            }
        }
        let mut fields: Vec<Field> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("mean_z", DataType::Float64, true));
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(z.finish()));
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::temp_dir().join("pinflow-transform-example.parquet");
    let pipeline = Pipeline::builder()
        .out(&out)
        .filter(|row| row.str("level") != Some("debug"))
        .transform(ZScore {
            baseline_mean: 50.0,
            baseline_sd: 10.0,
        })
        .build()?;
    let (source, push) = Source::push(1024);
    let run = pipeline.spawn(source)?;
    for i in 0..50_000u64 {
        let level = if i % 4 == 0 { "debug" } else { "info" };
        let v = (i % 97) as f64;
        push.push(format!(
            r#"{{"id":{i},"level":"{level}","values":[{v},{},{}]}}"#,
            v + 1.0,
            v + 2.0
        ))?;
    }
    drop(push);
    let summary = run.join()?;
    println!("{summary}");
    println!(
        "kept {} rows (filtered {} debug records), each with a mean_z column, in {}",
        summary.records_written,
        summary.records_filtered,
        out.display()
    );
    Ok(())
}

//! The columns pinflow writes for the log workload.
//!
//! | column            | Arrow type                    | from                                  |
//! |-------------------|-------------------------------|---------------------------------------|
//! | `id`              | Int64                         | `id` (integer)                        |
//! | `ts`              | Timestamp(µs, "UTC")          | `ts` (RFC 3339 string)                |
//! | `service`         | Utf8                          | `service`                             |
//! | `level`           | Utf8                          | `level`                               |
//! | `host`            | Utf8                          | `host`                                |
//! | `latency_ms`      | Float64                       | `latency_ms` (any JSON number)        |
//! | `message`         | Utf8                          | `message`                             |
//! | `values`          | List<Float64>                 | `values` (array of numbers)           |
//! | `values_count`    | Int64                         | computed: number of values            |
//! | `values_mean`     | Float64                       | computed                              |
//! | `values_min`      | Float64                       | computed                              |
//! | `values_max`      | Float64                       | computed                              |
//! | `values_variance` | Float64                       | computed: sample variance (n − 1)     |
//!
//! Every column is nullable: a missing field is null, and statistics of a missing or too short
//! `values` list are null (see [`crate::stats`]).

use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

/// Index of the `values` column in both schemas.
pub const VALUES_COLUMN: usize = 7;

/// The element field of the `values` list.
pub fn values_item() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Float64, true))
}

/// The columns the parse stage produces.
pub fn record_schema() -> SchemaRef {
    Arc::new(Schema::new(record_fields()))
}

fn record_fields() -> Vec<Field> {
    vec![
        Field::new("id", DataType::Int64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("service", DataType::Utf8, true),
        Field::new("level", DataType::Utf8, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("message", DataType::Utf8, true),
        Field::new_list("values", values_item(), true),
    ]
}

/// The columns written to Parquet: the record columns and the statistics.
pub fn output_schema() -> SchemaRef {
    let mut fields = record_fields();
    fields.push(Field::new("values_count", DataType::Int64, true));
    for name in ["values_mean", "values_min", "values_max", "values_variance"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    Arc::new(Schema::new(fields))
}

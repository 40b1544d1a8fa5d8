//! The shape of the output: which JSON fields become which columns, and which statistics are
//! added.
//!
//! A [`Layout`] is resolved once per run, from the configuration's `[schema]` table:
//!
//! - `fields`: `PATH:TYPE` or `PATH:TYPE as COLUMN`, e.g. `"http.status:int64"`. A dotted path
//!   reaches into nested objects, and the column is flat: its name is the path with `.` turned
//!   into `_` (`http_status`) unless `as` names it. Types: see [`FieldType`].
//! - `unknown`: what happens to fields not in the list ([`Unknown`]): ignored (the default),
//!   the record rejected, or kept as one JSON object string column `_extra`.
//! - `infer`: with no `fields`, derive them from the first records instead (see
//!   [`crate::parse::infer`] for the rules); unset, the first records choose between the
//!   built-in layout and inference ([`fits_log_layout`]).
//! - `stats`: `FIELD` or `FIELD:OP,OP,...` over a numeric list column (see [`StatOp`]), each op
//!   a column `FIELD_OP` (`values_p99`, `values_p99_9`).
//!
//! The built-in log workload's layout ([`Layout::logs`]), taken when no fields are given and
//! the records fit it: the columns below, plus count, mean, min, max and variance of `values`.
//!
//! | column            | Arrow type                    | from                                  |
//! |-------------------|-------------------------------|---------------------------------------|
//! | `id`              | Int64                         | `id` (integer)                        |
//! | `ts`              | Timestamp(µs, "UTC")          | `ts` (RFC 3339, or epoch number)      |
//! | `service`         | Utf8                          | `service`                             |
//! | `level`           | Utf8                          | `level`                               |
//! | `host`            | Utf8                          | `host`                                |
//! | `latency_ms`      | Float64                       | `latency_ms` (any JSON number)        |
//! | `message`         | Utf8                          | `message`                             |
//! | `values`          | `List<Float64>`               | `values` (array of numbers)           |
//! | `values_count`    | Int64                         | computed: number of values            |
//! | `values_mean`     | Float64                       | computed                              |
//! | `values_min`      | Float64                       | computed                              |
//! | `values_max`      | Float64                       | computed                              |
//! | `values_variance` | Float64                       | computed: sample variance (n − 1)     |
//!
//! Every column is nullable: a missing field is null, and statistics of a missing or too short
//! list are null (see [`crate::stats`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

/// The name of the column that holds unknown fields with [`Unknown::Extra`].
pub const EXTRA_COLUMN: &str = "_extra";

/// The lineage column of each row's source: the URL it was fetched from (its password
/// redacted), or the file and line range it was read from.
pub const SOURCE_COLUMN: &str = "_source";

/// The lineage column of when each row's body was fetched (or read), µs since the epoch, UTC.
pub const FETCHED_AT_COLUMN: &str = "_fetched_at";

/// Which lineage columns each row gets (`schema.lineage`), after the record columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lineage {
    /// [`SOURCE_COLUMN`].
    pub source: bool,
    /// [`FETCHED_AT_COLUMN`].
    pub fetched_at: bool,
}

impl Lineage {
    /// From the names `source` and `fetched_at`.
    ///
    /// ```
    /// use pinflow::schema::Lineage;
    /// let l = Lineage::from_names(&["fetched_at".into()]).unwrap();
    /// assert!(l.fetched_at && !l.source);
    /// assert!(Lineage::from_names(&["url".into()]).unwrap_err().contains("source"));
    /// ```
    pub fn from_names(names: &[String]) -> Result<Lineage, String> {
        let mut l = Lineage::default();
        for n in names {
            match n.as_str() {
                "source" => l.source = true,
                "fetched_at" => l.fetched_at = true,
                other => {
                    return Err(format!(
                        "`{other}` is not a lineage column (source, fetched_at)"
                    ))
                }
            }
        }
        Ok(l)
    }

    /// Whether any column is asked for.
    pub fn any(self) -> bool {
        self.source || self.fetched_at
    }
}

/// A column's type, as written in `PATH:TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `int64`: a JSON integer.
    Int64,
    /// `float64`: any JSON number.
    Float64,
    /// `bool`.
    Bool,
    /// `string`.
    String,
    /// `dict`: a string column dictionary-encoded in Arrow too (low-cardinality strings such as
    /// a service or a level; Parquet dictionary-encodes every column by default anyway).
    Dict,
    /// `timestamp`: an RFC 3339 string or an epoch number (or as `schema.timestamp_format`
    /// says), stored as µs since the epoch, UTC.
    Timestamp,
    /// `list<float64>`: an array of numbers.
    ListFloat64,
    /// `list<int64>`: an array of integers.
    ListInt64,
}

impl FieldType {
    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            FieldType::Int64 => DataType::Int64,
            FieldType::Float64 => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::String => DataType::Utf8,
            FieldType::Dict => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
            FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            FieldType::ListFloat64 => DataType::List(list_item(DataType::Float64)),
            FieldType::ListInt64 => DataType::List(list_item(DataType::Int64)),
        }
    }

    /// Whether statistics can be computed over it.
    pub fn is_numeric_list(self) -> bool {
        matches!(self, FieldType::ListFloat64 | FieldType::ListInt64)
    }
}

/// The element field of a list column.
pub fn list_item(t: DataType) -> FieldRef {
    Arc::new(Field::new_list_field(t, true))
}

impl FromStr for FieldType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "int64" | "int" | "integer" | "long" => FieldType::Int64,
            "float64" | "float" | "double" => FieldType::Float64,
            "bool" | "boolean" => FieldType::Bool,
            "string" | "str" | "utf8" => FieldType::String,
            "dict" | "dictionary" => FieldType::Dict,
            "timestamp" => FieldType::Timestamp,
            "list<float64>" | "list<float>" | "list<double>" => FieldType::ListFloat64,
            "list<int64>" | "list<int>" => FieldType::ListInt64,
            other => {
                return Err(format!(
                    "`{other}` is not a type (int64, float64, bool, string, dict, timestamp, \
                     list<float64>, list<int64>)"
                ))
            }
        })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Int64 => "int64",
            FieldType::Float64 => "float64",
            FieldType::Bool => "bool",
            FieldType::String => "string",
            FieldType::Dict => "dict",
            FieldType::Timestamp => "timestamp",
            FieldType::ListFloat64 => "list<float64>",
            FieldType::ListInt64 => "list<int64>",
        })
    }
}

/// One configured field: where it is in a record, what column it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// The dotted path, split: `http.status` is `["http", "status"]`.
    pub path: Vec<String>,
    /// The column name.
    pub column: String,
    /// The column type.
    pub ty: FieldType,
}

impl FieldSpec {
    /// A field at the top level, its column named after it.
    pub fn new(name: &str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            path: vec![name.to_string()],
            column: name.to_string(),
            ty,
        }
    }

    /// The path as written, with dots.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

impl FromStr for FieldSpec {
    type Err = String;
    /// `PATH:TYPE` or `PATH:TYPE as COLUMN`.
    ///
    /// ```
    /// use pinflow::schema::{FieldSpec, FieldType};
    /// let f: FieldSpec = "http.status:int64".parse().unwrap();
    /// assert_eq!((f.column.as_str(), f.ty), ("http_status", FieldType::Int64));
    /// let f: FieldSpec = "a.b:dict as svc".parse().unwrap();
    /// assert_eq!((f.path.len(), f.column.as_str()), (2, "svc"));
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not PATH:TYPE (e.g. \"http.status:int64\")"))?;
        let (ty, column) = match rest.split_once(" as ") {
            Some((t, c)) => (t, Some(c.trim())),
            None => (rest, None),
        };
        let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(format!("`{s}`: the path has an empty part"));
        }
        let column = column.map_or_else(|| path.join("_"), str::to_string);
        if column.is_empty() {
            return Err(format!("`{s}`: empty column name"));
        }
        Ok(FieldSpec {
            path,
            column,
            ty: ty.parse()?,
        })
    }
}

impl fmt::Display for FieldSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.dotted(), self.ty)?;
        if self.column != self.path.join("_") {
            write!(f, " as {}", self.column)?;
        }
        Ok(())
    }
}

/// What happens to a record's fields that are not in the schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unknown {
    /// Dropped (the default).
    #[default]
    Ignore,
    /// The record is dead-lettered, naming the field.
    Reject,
    /// Kept, as one JSON object per row (keys are dotted paths) in the string column `_extra`.
    Extra,
}

impl FromStr for Unknown {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ignore" => Ok(Unknown::Ignore),
            "reject" => Ok(Unknown::Reject),
            "extra" => Ok(Unknown::Extra),
            _ => Err(format!("`{s}` is not ignore, reject or extra")),
        }
    }
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unknown::Ignore => "ignore",
            Unknown::Reject => "reject",
            Unknown::Extra => "extra",
        })
    }
}

/// One statistic of a numeric list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatOp {
    /// `count`: number of values (Int64; 0 for an empty list).
    Count,
    /// `sum`.
    Sum,
    /// `mean`.
    Mean,
    /// `variance`: the sample variance (n − 1).
    Variance,
    /// `stddev`: its square root.
    Stddev,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `pNN` (`p50`, `p99`, `p99.9`): the quantile, by linear interpolation between the closest
    /// ranks (exact: a record's list is at hand).
    Quantile(f64),
}

impl StatOp {
    /// The suffix of the column name: `count`, `p99`, `p99_9`.
    pub fn suffix(self) -> String {
        match self {
            StatOp::Quantile(q) => {
                let pct = format!("{}", (q * 100_000.0).round() / 1000.0);
                format!("p{}", pct.replace('.', "_"))
            }
            other => other.to_string(),
        }
    }

    /// The Arrow type of the column, over a list of `list` type: the count is Int64, and so
    /// are the min and max of a `list<int64>` (exact); everything else is Float64 (the sum of
    /// a `list<int64>` is summed exactly, then rounded once).
    pub fn data_type(self, list: FieldType) -> DataType {
        match (self, list) {
            (StatOp::Count, _) => DataType::Int64,
            (StatOp::Min | StatOp::Max, FieldType::ListInt64) => DataType::Int64,
            _ => DataType::Float64,
        }
    }
}

impl FromStr for StatOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "count" => StatOp::Count,
            "sum" => StatOp::Sum,
            "mean" | "avg" => StatOp::Mean,
            "variance" | "var" => StatOp::Variance,
            "stddev" | "std" => StatOp::Stddev,
            "min" => StatOp::Min,
            "max" => StatOp::Max,
            p if p.starts_with('p') => {
                let pct: f64 = p[1..]
                    .parse()
                    .map_err(|_| format!("`{p}` is not a percentile such as p50 or p99.9"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(format!("`{p}`: a percentile is between p0 and p100"));
                }
                StatOp::Quantile(pct / 100.0)
            }
            other => {
                return Err(format!(
                    "`{other}` is not a statistic (count, sum, mean, variance, stddev, min, max, \
                     or a percentile such as p99)"
                ))
            }
        })
    }
}

impl fmt::Display for StatOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatOp::Count => f.write_str("count"),
            StatOp::Sum => f.write_str("sum"),
            StatOp::Mean => f.write_str("mean"),
            StatOp::Variance => f.write_str("variance"),
            StatOp::Stddev => f.write_str("stddev"),
            StatOp::Min => f.write_str("min"),
            StatOp::Max => f.write_str("max"),
            StatOp::Quantile(q) => write!(f, "p{}", (q * 100_000.0).round() / 1000.0),
        }
    }
}

/// The statistics of one list column.
#[derive(Debug, Clone, PartialEq)]
pub struct StatSpec {
    /// The list column.
    pub column: String,
    /// The statistics, in column order.
    pub ops: Vec<StatOp>,
}

/// What `FIELD` alone asks for.
pub const DEFAULT_STATS: [StatOp; 5] = [
    StatOp::Count,
    StatOp::Mean,
    StatOp::Min,
    StatOp::Max,
    StatOp::Variance,
];

impl FromStr for StatSpec {
    type Err = String;
    /// `COLUMN` (count, mean, min, max, variance) or `COLUMN:OP,OP,...`.
    ///
    /// ```
    /// use pinflow::schema::{StatOp, StatSpec};
    /// let s: StatSpec = "latencies:mean,p99".parse().unwrap();
    /// assert_eq!(s.ops, [StatOp::Mean, StatOp::Quantile(0.99)]);
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        let (column, ops) = match s.split_once(':') {
            Some((c, ops)) => (
                c.trim(),
                ops.split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<StatOp>, String>>()?,
            ),
            None => (s.trim(), DEFAULT_STATS.to_vec()),
        };
        if column.is_empty() || ops.is_empty() {
            return Err(format!("`{s}` is not COLUMN or COLUMN:OP,OP,..."));
        }
        Ok(StatSpec {
            column: column.to_string(),
            ops,
        })
    }
}

impl fmt::Display for StatSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.column)?;
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}")?;
        }
        Ok(())
    }
}

/// The resolved shape of a run's output.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The record columns, in order.
    pub fields: Vec<FieldSpec>,
    /// What to do with fields not listed.
    pub unknown: Unknown,
    /// The statistics appended after the record columns.
    pub stats: Vec<StatSpec>,
    /// How `timestamp` fields are read (`schema.timestamp_format`, `schema.timestamp_zone`).
    pub timestamps: crate::time::TimestampRule,
    /// The lineage columns, after the record columns (and `_extra`).
    pub lineage: Lineage,
    record_schema: SchemaRef,
    output_schema: SchemaRef,
    /// Per statistic spec, the index of its list column.
    stat_columns: Vec<usize>,
}

impl Layout {
    /// Checks and resolves a layout: column names unique (and not `_extra` when it is used),
    /// no path that is both a field and the parent of another, statistics over numeric list
    /// columns that exist.
    pub fn new(
        fields: Vec<FieldSpec>,
        unknown: Unknown,
        stats: Vec<StatSpec>,
    ) -> Result<Layout, String> {
        Layout::build(fields, unknown, stats, Lineage::default())
    }

    /// This layout with the `lineage` columns; fails when a field takes one of their names.
    pub fn with_lineage(self, lineage: Lineage) -> Result<Layout, String> {
        let timestamps = self.timestamps.clone();
        Ok(
            Layout::build(self.fields, self.unknown, self.stats, lineage)?
                .with_timestamps(timestamps),
        )
    }

    fn build(
        fields: Vec<FieldSpec>,
        unknown: Unknown,
        stats: Vec<StatSpec>,
        lineage: Lineage,
    ) -> Result<Layout, String> {
        if fields.is_empty() {
            return Err("the schema has no fields".into());
        }
        let mut names: Vec<&str> = Vec::new();
        for f in &fields {
            if names.contains(&f.column.as_str()) {
                return Err(format!("two fields make the column `{}`", f.column));
            }
            if unknown == Unknown::Extra && f.column == EXTRA_COLUMN {
                return Err(format!("`{EXTRA_COLUMN}` is the column of unknown fields"));
            }
            if (lineage.source && f.column == SOURCE_COLUMN)
                || (lineage.fetched_at && f.column == FETCHED_AT_COLUMN)
            {
                return Err(format!("`{}` is a lineage column", f.column));
            }
            names.push(&f.column);
        }
        for a in &fields {
            for b in &fields {
                if b.path.len() > a.path.len() && b.path.starts_with(&a.path) {
                    return Err(format!(
                        "`{}` is a field and also the parent of `{}`",
                        a.dotted(),
                        b.dotted()
                    ));
                }
                if a.path == b.path && !std::ptr::eq(a, b) {
                    return Err(format!("the path `{}` is listed twice", a.dotted()));
                }
            }
        }
        let mut stat_columns = Vec::new();
        let mut out_fields: Vec<Field> = fields
            .iter()
            .map(|f| Field::new(&f.column, f.ty.data_type(), true))
            .collect();
        if unknown == Unknown::Extra {
            out_fields.push(Field::new(EXTRA_COLUMN, DataType::Utf8, true));
        }
        if lineage.source {
            out_fields.push(Field::new(SOURCE_COLUMN, DataType::Utf8, true));
        }
        if lineage.fetched_at {
            out_fields.push(Field::new(
                FETCHED_AT_COLUMN,
                FieldType::Timestamp.data_type(),
                true,
            ));
        }
        let record_schema = Arc::new(Schema::new(out_fields.clone()));
        for s in &stats {
            let i = fields
                .iter()
                .position(|f| f.column == s.column)
                .ok_or_else(|| format!("statistics of `{}`: no such column", s.column))?;
            if !fields[i].ty.is_numeric_list() {
                return Err(format!(
                    "statistics of `{}`: it is {}, not list<float64> or list<int64>",
                    s.column, fields[i].ty
                ));
            }
            stat_columns.push(i);
            for op in &s.ops {
                let name = format!("{}_{}", s.column, op.suffix());
                if out_fields.iter().any(|f| f.name() == &name) {
                    return Err(format!("the statistic column `{name}` exists already"));
                }
                out_fields.push(Field::new(name, op.data_type(fields[i].ty), true));
            }
        }
        Ok(Layout {
            fields,
            unknown,
            stats,
            timestamps: crate::time::TimestampRule::default(),
            lineage,
            record_schema,
            output_schema: Arc::new(Schema::new(out_fields)),
            stat_columns,
        })
    }

    /// The built-in log workload: the columns in the module docs, and count, mean, min, max and
    /// variance of `values`.
    pub fn logs() -> Layout {
        Layout::new(
            log_fields(),
            Unknown::Ignore,
            vec![StatSpec {
                column: "values".into(),
                ops: DEFAULT_STATS.to_vec(),
            }],
        )
        .expect("the built-in layout is valid")
    }

    /// One line on how this layout came from the records, for a run whose schema was not
    /// given: the built-in layout, or the inferred fields.
    pub fn describe_inferred(&self) -> String {
        if self.fields == log_fields() {
            return "the built-in log layout (the records' fields are all its own)".into();
        }
        let fields: Vec<String> = self.fields.iter().map(ToString::to_string).collect();
        format!("inferred from the first records: {}", fields.join(", "))
    }

    /// This layout, reading `timestamp` fields by `rule`.
    pub fn with_timestamps(mut self, rule: crate::time::TimestampRule) -> Layout {
        self.timestamps = rule;
        self
    }

    /// The columns the parse stage produces (the fields, then `_extra` if kept, then the
    /// lineage columns asked for).
    pub fn record_schema(&self) -> SchemaRef {
        Arc::clone(&self.record_schema)
    }

    /// The columns written: the record columns, then the statistics.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    /// The index of each statistic spec's list column in the record schema.
    pub fn stat_columns(&self) -> &[usize] {
        &self.stat_columns
    }
}

/// The fields of the built-in log workload.
pub fn log_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::new("id", FieldType::Int64),
        FieldSpec::new("ts", FieldType::Timestamp),
        FieldSpec::new("service", FieldType::String),
        FieldSpec::new("level", FieldType::String),
        FieldSpec::new("host", FieldType::String),
        FieldSpec::new("latency_ms", FieldType::Float64),
        FieldSpec::new("message", FieldType::String),
        FieldSpec::new("values", FieldType::ListFloat64),
    ]
}

/// Whether records with the inferred `fields` fit the built-in log layout: every field is one
/// of its own (or below one of them), so taking it loses nothing. With no schema configured,
/// such records get the built-in layout and any others an inferred one.
pub fn fits_log_layout(fields: &[FieldSpec]) -> bool {
    let own = log_fields();
    fields
        .iter()
        .all(|f| own.iter().any(|o| o.path[0] == f.path[0]))
}

/// The columns the parse stage produces for the built-in log workload.
pub fn record_schema() -> SchemaRef {
    Layout::logs().record_schema()
}

/// The columns written for the built-in log workload.
pub fn output_schema() -> SchemaRef {
    Layout::logs().output_schema()
}

// ---------------------------------------------------------------------------------------------
// Partitioning rules: which output columns can name a Hive partition directory.

/// The partition name that means "the UTC date of `ts`".
pub const DATE_PARTITION: &str = "date";

/// The timestamp column [`DATE_PARTITION`] is taken from.
pub(crate) const DATE_SOURCE: &str = "ts";

/// Whether output of `schema` can be partitioned by `name`: a string or integer column, or
/// `date`. The error lists the names that would do.
pub fn check_partition_column(
    name: &str,
    schema: &arrow_schema::Schema,
) -> std::result::Result<(), String> {
    let usable: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| usable_type(f.data_type()))
        .map(|f| f.name().as_str())
        .collect();
    if name == DATE_PARTITION || usable.contains(&name) {
        return Ok(());
    }
    let why = match schema.field_with_name(name) {
        Ok(f) => format!(
            "column `{name}` is {}, not a string or integer",
            f.data_type()
        ),
        Err(_) => format!("`{name}` is not an output column"),
    };
    Err(format!(
        "{why}; partition by one of {}, or `{DATE_PARTITION}` (the UTC date of `{DATE_SOURCE}`)",
        usable.join(", ")
    ))
}

fn usable_type(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Utf8 | DataType::LargeUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_string_and_integer_columns_or_date() {
        let s = crate::schema::output_schema();
        for ok in ["service", "level", "host", "id", "values_count", "date"] {
            assert!(check_partition_column(ok, &s).is_ok(), "{ok}");
        }
        let e = check_partition_column("latency_ms", &s).unwrap_err();
        assert!(e.contains("Float64") && e.contains("service"), "{e}");
        let e = check_partition_column("ts", &s).unwrap_err();
        assert!(e.contains("date"), "{e}");
        assert!(check_partition_column("Service", &s).is_err());
    }

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "id:int64",
            "http.status:int64",
            "a.b:dict as svc",
            "ts:timestamp",
            "v:list<float64>",
            "n:list<int64>",
        ] {
            let f: FieldSpec = s.parse().unwrap();
            assert_eq!(f.to_string(), s);
        }
        assert!("id".parse::<FieldSpec>().is_err());
        assert!("id:int32"
            .parse::<FieldSpec>()
            .unwrap_err()
            .contains("int32"));
        assert!("a..b:int64".parse::<FieldSpec>().is_err());
        let s: StatSpec = "values:count,sum,stddev,p50,p99.9".parse().unwrap();
        assert_eq!(s.to_string(), "values:count,sum,stddev,p50,p99.9");
        let names: Vec<String> = s.ops.iter().map(|o| o.suffix()).collect();
        assert_eq!(names, ["count", "sum", "stddev", "p50", "p99_9"]);
        assert!("values:median".parse::<StatSpec>().is_err());
        assert!("values:p101".parse::<StatSpec>().is_err());
    }

    #[test]
    fn layouts_are_checked() {
        let f = |s: &str| s.parse::<FieldSpec>().unwrap();
        let stats = |s: &str| vec![s.parse::<StatSpec>().unwrap()];
        let err = Layout::new(
            vec![f("a:int64"), f("b:int64 as a")],
            Unknown::Ignore,
            vec![],
        )
        .unwrap_err();
        assert!(err.contains("`a`"), "{err}");
        let err =
            Layout::new(vec![f("a:string"), f("a.b:int64")], Unknown::Ignore, vec![]).unwrap_err();
        assert!(err.contains("parent"), "{err}");
        let err = Layout::new(vec![f("a:string")], Unknown::Ignore, stats("a")).unwrap_err();
        assert!(err.contains("not list"), "{err}");
        let err = Layout::new(vec![f("a:string")], Unknown::Ignore, stats("z")).unwrap_err();
        assert!(err.contains("no such column"), "{err}");
        let l = Layout::new(
            vec![f("v:list<int64>"), f("x.y:float64")],
            Unknown::Extra,
            stats("v:sum,p99"),
        )
        .unwrap();
        let names = output_names(&l);
        assert_eq!(names, ["v", "x_y", "_extra", "v_sum", "v_p99"]);
        assert_eq!(l.stat_columns(), [0]);
        assert_eq!(Layout::logs().output_schema().fields().len(), 13);
    }

    fn output_names(l: &Layout) -> Vec<String> {
        l.output_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn lineage_columns_follow_the_record_columns_and_take_no_field_name() {
        let f = |s: &str| s.parse::<FieldSpec>().unwrap();
        let both = Lineage {
            source: true,
            fetched_at: true,
        };
        let l = Layout::new(
            vec![f("v:list<int64>")],
            Unknown::Extra,
            vec!["v:sum".parse().unwrap()],
        )
        .unwrap()
        .with_lineage(both)
        .unwrap();
        let names = output_names(&l);
        assert_eq!(names, ["v", "_extra", "_source", "_fetched_at", "v_sum"]);
        let err = Layout::new(vec![f("_source:string")], Unknown::Ignore, vec![])
            .unwrap()
            .with_lineage(both)
            .unwrap_err();
        assert!(err.contains("lineage"), "{err}");
    }

    #[test]
    fn only_records_of_the_log_fields_fit_the_log_layout() {
        let f = |s: &str| s.parse::<FieldSpec>().unwrap();
        assert!(fits_log_layout(&[f("id:int64"), f("latency_ms:float64")]));
        assert!(fits_log_layout(&[]));
        assert!(!fits_log_layout(&[f("id:int64"), f("user:string")]));
        assert!(!fits_log_layout(&[f("user:string"), f("amount:int64")]));
    }
}

//! The steps of `[[transform]]` tables: each a [`Transform`] that binds itself to the schema of
//! the rows it receives (once: every batch of a run has one schema), then filters, drops,
//! renames, sets or casts.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parking_lot::Mutex;

use super::eval::{self, columns_of, resolve, Bound};
use crate::config::{Position, SetValue};
use crate::expr::Expr;
use crate::schema::{FieldType, FETCHED_AT_COLUMN, SOURCE_COLUMN};
use crate::stage::{BoxError, Rejected, Transform};
use crate::time::TimestampRule;

/// A type `cast` converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastTo {
    Int64,
    Float64,
    Str,
    Bool,
    Timestamp,
}

impl CastTo {
    pub(crate) fn parse(s: &str) -> Option<CastTo> {
        Some(match s {
            "int64" => CastTo::Int64,
            "float64" => CastTo::Float64,
            "string" => CastTo::Str,
            "bool" => CastTo::Bool,
            "timestamp" => CastTo::Timestamp,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            CastTo::Int64 => "int64",
            CastTo::Float64 => "float64",
            CastTo::Str => "string",
            CastTo::Bool => "bool",
            CastTo::Timestamp => "timestamp",
        }
    }

    fn data_type(self) -> DataType {
        match self {
            CastTo::Int64 => DataType::Int64,
            CastTo::Float64 => DataType::Float64,
            CastTo::Str => DataType::Utf8,
            CastTo::Bool => DataType::Boolean,
            CastTo::Timestamp => FieldType::Timestamp.data_type(),
        }
    }
}

/// What a `set` entry reads.
#[derive(Debug, Clone)]
pub(crate) enum SetFrom {
    Const(SetValue),
    Field(String),
    /// A lineage column, and the part of it taken.
    Lineage(&'static str, LineagePart),
}

/// What a step does.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Filter {
        expr: Expr,
        text: String,
    },
    /// Columns to drop; `quiet`: one missing is fine (the hidden lineage columns).
    Drop {
        columns: Vec<String>,
        quiet: bool,
    },
    Rename(Vec<(String, String)>),
    Set(Vec<(String, SetFrom)>),
    Cast(Vec<(String, CastTo)>, TimestampRule),
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Action::Filter { .. } => "filter",
            Action::Drop { .. } => "drop",
            Action::Rename(_) => "rename",
            Action::Set(_) => "set",
            Action::Cast(..) => "cast",
        }
    }
}

/// A step bound to one input schema.
enum Plan {
    Filter(Bound),
    /// Columns taken from the input, by index, in order, under the output schema.
    Select(Vec<usize>),
    /// The same columns under other names.
    Rename,
    /// Columns made: (index to replace or `None` to append, source).
    Set(Vec<(Option<usize>, SetPlan)>),
    Cast(Vec<(usize, CastTo)>),
}

enum SetPlan {
    Const(SetValue),
    Copy(usize),
    Lineage(usize, LineagePart),
}

/// What a `set` entry takes of a lineage column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineagePart {
    /// The whole value.
    Whole,
    /// The file, with the `:FIRST-LAST` line range cut off (`source_file`).
    File,
    /// A Kafka message's partition, from its source `TOPIC/PARTITION@OFFSET` (an int64).
    KafkaPartition,
    /// A Kafka message's offset, from its source `TOPIC/PARTITION@OFFSET` (an int64).
    KafkaOffset,
}

/// A plan and the schema of what it makes.
type Planned = (Plan, SchemaRef);

/// One `[[transform]]` step.
pub(crate) struct Step {
    action: Action,
    at: Position,
    label: String,
    /// The plan for the last input schema seen (every batch of a run has the same one).
    plan: Mutex<Option<(SchemaRef, Arc<Planned>)>>,
}

impl Step {
    pub(crate) fn new(action: Action, at: Position) -> Step {
        let label = format!("{} at {at}", action.verb());
        Step {
            action,
            at,
            label,
            plan: Mutex::new(None),
        }
    }

    /// A message about this step: `filter at p.toml:7: ...`; for a filter with an offset into
    /// its expression, its line and column.
    fn message(&self, offset: Option<usize>, why: &str) -> String {
        match (&self.action, offset) {
            (Action::Filter { text, .. }, Some(o)) if self.at.expr_line > 0 => {
                let (line, col) = self.at.of_offset(text, o);
                format!("{}: line {line}, column {col}: {why}", self.label)
            }
            (Action::Filter { .. }, Some(o)) => {
                format!("{}: column {}: {why}", self.label, o + 1)
            }
            _ => format!("{}: {why}", self.label),
        }
    }

    /// The schema of what this step makes of rows of `input`, or why it cannot take them.
    pub(crate) fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, String> {
        Ok(self.bound(input)?.1.clone())
    }

    fn bound(&self, input: &SchemaRef) -> Result<Arc<Planned>, String> {
        let mut cached = self.plan.lock();
        if let Some((schema, plan)) = cached.as_ref() {
            if Arc::ptr_eq(schema, input) || schema == input {
                return Ok(Arc::clone(plan));
            }
        }
        let plan = Arc::new(self.bind(input)?);
        *cached = Some((Arc::clone(input), Arc::clone(&plan)));
        Ok(plan)
    }

    fn column(&self, schema: &Schema, name: &str) -> Result<usize, String> {
        resolve(schema, name).ok_or_else(|| {
            self.message(
                None,
                &format!("no column `{name}` ({})", columns_of(schema)),
            )
        })
    }

    fn bind(&self, input: &SchemaRef) -> Result<Planned, String> {
        let fields = input.fields();
        match &self.action {
            Action::Filter { expr, .. } => {
                let b = eval::bind(expr, input)
                    .map_err(|e| self.message(Some(e.offset), &e.message))?;
                Ok((Plan::Filter(b), Arc::clone(input)))
            }
            Action::Drop { columns, quiet } => {
                let mut gone = Vec::new();
                for c in columns {
                    match resolve(input, c) {
                        Some(i) => gone.push(i),
                        None if *quiet => {}
                        None => return Err(self.column(input, c).unwrap_err()),
                    }
                }
                let keep: Vec<usize> = (0..fields.len()).filter(|i| !gone.contains(i)).collect();
                let schema =
                    Schema::new(keep.iter().map(|&i| fields[i].clone()).collect::<Vec<_>>());
                Ok((Plan::Select(keep), Arc::new(schema)))
            }
            Action::Rename(pairs) => {
                let mut names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
                for (old, new) in pairs {
                    let i = self.column(input, old)?;
                    names[i] = new.clone();
                }
                for (i, n) in names.iter().enumerate() {
                    if names[..i].contains(n) {
                        return Err(
                            self.message(None, &format!("two columns would be named `{n}`"))
                        );
                    }
                }
                let schema = Schema::new(
                    fields
                        .iter()
                        .zip(&names)
                        .map(|(f, n)| f.as_ref().clone().with_name(n))
                        .collect::<Vec<_>>(),
                );
                Ok((Plan::Rename, Arc::new(schema)))
            }
            Action::Set(entries) => {
                let mut out: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
                let mut plan = Vec::new();
                for (name, from) in entries {
                    let (source, dt) = match from {
                        SetFrom::Const(v) => (SetPlan::Const(v.clone()), const_type(v)),
                        SetFrom::Field(f) => {
                            let i = self.column(input, f)?;
                            (SetPlan::Copy(i), fields[i].data_type().clone())
                        }
                        SetFrom::Lineage(col, part) => {
                            let i = self.column(input, col)?;
                            let dt = match part {
                                LineagePart::KafkaPartition | LineagePart::KafkaOffset => {
                                    DataType::Int64
                                }
                                _ => fields[i].data_type().clone(),
                            };
                            (SetPlan::Lineage(i, *part), dt)
                        }
                    };
                    let target = input.index_of(name).ok();
                    match target {
                        Some(i) => out[i] = Field::new(name, dt, true),
                        None => out.push(Field::new(name, dt, true)),
                    }
                    plan.push((target, source));
                }
                Ok((Plan::Set(plan), Arc::new(Schema::new(out))))
            }
            Action::Cast(cols, _) => {
                let mut out: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
                let mut plan = Vec::new();
                for (name, to) in cols {
                    let i = self.column(input, name)?;
                    let from = fields[i].data_type();
                    if !castable(from) {
                        return Err(self.message(
                            None,
                            &format!("`{name}` is {from}: cast converts numbers, strings, booleans and timestamps"),
                        ));
                    }
                    out[i] = Field::new(fields[i].name(), to.data_type(), true);
                    plan.push((i, *to));
                }
                Ok((Plan::Cast(plan), Arc::new(Schema::new(out))))
            }
        }
    }
}

fn castable(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int64
            | DataType::Float64
            | DataType::Utf8
            | DataType::Boolean
            | DataType::Timestamp(..)
            | DataType::Dictionary(..)
    )
}

fn const_type(v: &SetValue) -> DataType {
    match v {
        SetValue::Bool(_) => DataType::Boolean,
        SetValue::Int(_) => DataType::Int64,
        SetValue::Float(_) => DataType::Float64,
        _ => DataType::Utf8,
    }
}

fn constant(v: &SetValue, n: usize) -> ArrayRef {
    match v {
        SetValue::Bool(b) => Arc::new(BooleanArray::from(vec![*b; n])),
        SetValue::Int(i) => Arc::new(Int64Array::from(vec![*i; n])),
        SetValue::Float(x) => Arc::new(Float64Array::from(vec![*x; n])),
        SetValue::Text(s) => Arc::new(StringArray::from(vec![s.as_str(); n])),
        // Field and metadata sources are planned as copies; never a constant.
        SetValue::Field { .. } | SetValue::Meta { .. } => {
            Arc::new(StringArray::from(vec![None::<&str>; n]))
        }
    }
}

/// The partition (or, with `offset`, the offset) of a Kafka message's source name,
/// `TOPIC/PARTITION@OFFSET` (a topic name holds neither `/` nor `@`).
fn kafka_position(source: &str, offset: bool) -> Option<i64> {
    let (rest, at) = source.rsplit_once('@')?;
    let (_, partition) = rest.rsplit_once('/')?;
    if offset {
        at.parse().ok()
    } else {
        partition.parse().ok()
    }
}

/// A `_source` value without its `:FIRST-LAST` line range (`--files`) or its `@START-END`
/// byte range (`--tail`): the file a row was read from.
fn file_of(source: &str) -> &str {
    let cut = match (source.rsplit_once(':'), source.rsplit_once('@')) {
        // The later separator is the range's: a path may hold the other character.
        (Some(c), Some(a)) => Some(if c.0.len() > a.0.len() { c } else { a }),
        (c, a) => c.or(a),
    };
    match cut {
        Some((file, range))
            if !range.is_empty()
                && range.split_once('-').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && a.bytes().all(|c| c.is_ascii_digit())
                        && b.bytes().all(|c| c.is_ascii_digit())
                }) =>
        {
            file
        }
        _ => source,
    }
}

impl Transform for Step {
    fn name(&self) -> &str {
        &self.label
    }

    fn apply(&self, rows: RecordBatch) -> Result<RecordBatch, BoxError> {
        let mut rejected = Vec::new();
        let out = self.apply_rejecting(rows, &mut rejected)?;
        match rejected.first() {
            // Called as a plain transform: a row that does not cast is an error then.
            Some(r) => Err(r.reason.clone().into()),
            None => Ok(out),
        }
    }

    fn apply_rejecting(
        &self,
        rows: RecordBatch,
        rejected: &mut Vec<Rejected>,
    ) -> Result<RecordBatch, BoxError> {
        let bound = self.bound(&rows.schema())?;
        let (plan, schema) = (&bound.0, &bound.1);
        let n = rows.num_rows();
        Ok(match plan {
            Plan::Filter(b) => {
                if n == 0 {
                    return Ok(rows);
                }
                arrow_select::filter::filter_record_batch(&rows, &b.mask(&rows))?
            }
            Plan::Select(keep) => {
                let cols = keep.iter().map(|&i| Arc::clone(rows.column(i))).collect();
                RecordBatch::try_new_with_options(
                    Arc::clone(schema),
                    cols,
                    &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
                )?
            }
            Plan::Rename => RecordBatch::try_new(Arc::clone(schema), rows.columns().to_vec())?,
            Plan::Set(entries) => {
                let mut cols = rows.columns().to_vec();
                for (target, source) in entries {
                    let col = match source {
                        SetPlan::Const(v) => constant(v, n),
                        SetPlan::Copy(i) => Arc::clone(rows.column(*i)),
                        SetPlan::Lineage(i, LineagePart::Whole) => Arc::clone(rows.column(*i)),
                        SetPlan::Lineage(i, LineagePart::File) => {
                            let s = rows.column(*i).as_string::<i32>();
                            Arc::new(s.iter().map(|v| v.map(file_of)).collect::<StringArray>())
                        }
                        SetPlan::Lineage(i, part) => {
                            let s = rows.column(*i).as_string::<i32>();
                            let offset = *part == LineagePart::KafkaOffset;
                            Arc::new(
                                s.iter()
                                    .map(|v| v.and_then(|v| kafka_position(v, offset)))
                                    .collect::<arrow_array::Int64Array>(),
                            )
                        }
                    };
                    match target {
                        Some(i) => cols[*i] = col,
                        None => cols.push(col),
                    }
                }
                RecordBatch::try_new(Arc::clone(schema), cols)?
            }
            Plan::Cast(cols_to) => {
                let Action::Cast(_, rule) = &self.action else {
                    unreachable!("a cast plan comes from a cast action")
                };
                let mut cols = rows.columns().to_vec();
                // Per row, the first failure (a row is one dead letter, whatever else fails).
                let mut bad: BTreeMap<usize, String> = BTreeMap::new();
                for &(i, to) in cols_to {
                    let name = rows.schema().field(i).name().clone();
                    let (col, fails) = cast(rows.column(i).as_ref(), to, rule);
                    for (row, value) in fails {
                        bad.entry(row).or_insert_with(|| {
                            format!(
                                "{}: `{name}`: {value} is not {} ({})",
                                self.label,
                                to.name(),
                                article(to)
                            )
                        });
                    }
                    cols[i] = col;
                }
                let out = RecordBatch::try_new(Arc::clone(schema), cols)?;
                if bad.is_empty() {
                    out
                } else {
                    let source = rows
                        .schema()
                        .index_of(SOURCE_COLUMN)
                        .ok()
                        .filter(|&i| rows.column(i).data_type() == &DataType::Utf8);
                    let mut keep = vec![true; n];
                    for (row, reason) in bad {
                        keep[row] = false;
                        rejected.push(Rejected {
                            class: "cast failed".into(),
                            reason,
                            // The row as this step received it: the value that failed is there.
                            excerpt: crate::output::row_json(&rows, row),
                            source: source.and_then(|s| {
                                let c = rows.column(s).as_string::<i32>();
                                c.is_valid(row).then(|| c.value(row).to_string())
                            }),
                        });
                    }
                    arrow_select::filter::filter_record_batch(&out, &BooleanArray::from(keep))?
                }
            }
        })
    }
}

fn article(to: CastTo) -> &'static str {
    match to {
        CastTo::Int64 => "a whole number in range",
        CastTo::Float64 => "a finite number",
        CastTo::Str => "text",
        CastTo::Bool => "true, false, 1 or 0",
        CastTo::Timestamp => "a date-time or an epoch number",
    }
}

/// One value of a column, for a cast: `None` for null.
enum V<'a> {
    I(i64),
    F(f64),
    S(&'a str),
    B(bool),
    T(i64),
}

fn value_at(a: &dyn Array, i: usize) -> Option<V<'_>> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Int64 => V::I(a.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => V::F(a.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => V::B(a.as_boolean().value(i)),
        DataType::Timestamp(..) => V::T(a.as_primitive::<TimestampMicrosecondType>().value(i)),
        DataType::Dictionary(..) => {
            let d = a.as_dictionary::<Int32Type>();
            let k = d.keys().value(i) as usize;
            V::S(d.values().as_string::<i32>().value(k))
        }
        _ => V::S(a.as_string::<i32>().value(i)),
    })
}

fn shown(v: &V<'_>) -> String {
    match v {
        V::I(i) => i.to_string(),
        V::F(x) => format!("{x:?}"),
        V::S(s) => format!("{s:?}"),
        V::B(b) => b.to_string(),
        V::T(t) => t.to_string(),
    }
}

fn rfc3339(us: i64) -> String {
    let mut out = Vec::new();
    crate::time::format_rfc3339_micros(us, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The column converted (failed values null), and the rows that failed with their values.
fn cast(a: &dyn Array, to: CastTo, rule: &TimestampRule) -> (ArrayRef, Vec<(usize, String)>) {
    let n = a.len();
    let mut fails = Vec::new();
    macro_rules! build {
        ($builder:expr, $conv:expr) => {{
            let mut b = $builder;
            for i in 0..n {
                match value_at(a, i) {
                    None => b.append_null(),
                    Some(v) => match $conv(&v) {
                        Some(x) => b.append_value(x),
                        None => {
                            fails.push((i, shown(&v)));
                            b.append_null();
                        }
                    },
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let col = match to {
        CastTo::Int64 => build!(Int64Builder::with_capacity(n), |v: &V<'_>| match *v {
            V::I(i) | V::T(i) => Some(i),
            V::B(b) => Some(b as i64),
            // Only a whole number in range: a cast that rounds would change the data unseen.
            V::F(x) => (x.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&x)).then_some(x as i64),
            V::S(s) => s.trim().parse::<i64>().ok(),
        }),
        CastTo::Float64 => build!(Float64Builder::with_capacity(n), |v: &V<'_>| match *v {
            V::I(i) | V::T(i) => Some(i as f64),
            V::F(x) => Some(x),
            V::B(b) => Some(b as i64 as f64),
            V::S(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        }),
        CastTo::Bool => build!(BooleanBuilder::with_capacity(n), |v: &V<'_>| match *v {
            V::B(b) => Some(b),
            V::I(0) => Some(false),
            V::I(1) => Some(true),
            V::S(s) => match s.trim() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }),
        CastTo::Str => build!(StringBuilder::with_capacity(n, n * 8), |v: &V<'_>| Some(
            match *v {
                V::I(i) => i.to_string(),
                V::F(x) => x.to_string(),
                V::B(b) => b.to_string(),
                V::S(s) => s.to_string(),
                V::T(t) => rfc3339(t),
            }
        )),
        CastTo::Timestamp => {
            let mut b = TimestampMicrosecondArray::builder(n);
            for i in 0..n {
                let parsed = match value_at(a, i) {
                    None => {
                        b.append_null();
                        continue;
                    }
                    Some(V::T(t)) => Ok(t),
                    Some(V::I(x)) => rule.parse_number(x as f64),
                    Some(V::F(x)) => rule.parse_number(x),
                    Some(V::S(s)) => rule.parse_str(s),
                    Some(V::B(_)) => Err(String::new()),
                };
                match parsed {
                    Ok(t) => b.append_value(t),
                    Err(_) => {
                        let v = value_at(a, i).map(|v| shown(&v)).unwrap_or_default();
                        fails.push((i, v));
                        b.append_null();
                    }
                }
            }
            Arc::new(b.finish().with_timezone("UTC")) as ArrayRef
        }
    };
    (col, fails)
}

/// The hidden lineage columns dropped after the config steps.
pub(crate) const LINEAGE_COLUMNS: [&str; 2] = [SOURCE_COLUMN, FETCHED_AT_COLUMN];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_file_cuts_the_line_range_only() {
        assert_eq!(file_of("/var/log/a.ndjson:1-40"), "/var/log/a.ndjson");
        assert_eq!(file_of("C:/x:3-3"), "C:/x");
        assert_eq!(file_of("/a:b"), "/a:b");
        assert_eq!(file_of("-:1-2"), "-");
        assert_eq!(file_of("/var/log/app.log@0-4096"), "/var/log/app.log");
        assert_eq!(file_of("/logs/a@b.log@10-20"), "/logs/a@b.log");
        assert_eq!(file_of("/logs/a@b.log:3-4"), "/logs/a@b.log");
        assert_eq!(file_of("/logs/x:y@1-2"), "/logs/x:y");
        assert_eq!(file_of("/logs/user@host"), "/logs/user@host");
    }

    #[test]
    fn casts_convert_or_name_the_value() {
        let a = StringArray::from(vec![Some("1.5"), None, Some("x"), Some(" 7 ")]);
        let rule = TimestampRule::default();
        let (c, fails) = cast(&a, CastTo::Float64, &rule);
        assert_eq!(fails, [(2, "\"x\"".to_string())]);
        let c = c.as_primitive::<Float64Type>();
        assert_eq!((c.value(0), c.is_null(1), c.value(3)), (1.5, true, 7.0));
        let f = Float64Array::from(vec![2.0, 2.5]);
        let (_, fails) = cast(&f, CastTo::Int64, &rule);
        assert_eq!(fails, [(1, "2.5".to_string())]);
        let s = StringArray::from(vec!["2024-01-02T03:04:05Z", "soon"]);
        let (t, fails) = cast(&s, CastTo::Timestamp, &rule);
        assert_eq!(fails, [(1, "\"soon\"".to_string())]);
        assert_eq!(
            t.as_primitive::<TimestampMicrosecondType>().value(0),
            1_704_164_645_000_000
        );
    }
}

//! Filter expressions bound to a schema, and evaluated a column at a time over a batch.
//!
//! Null semantics are SQL's (three-valued logic): a comparison, a regex match or an `in`
//! with a null (or missing) field is *unknown*; `not unknown` is unknown; `false and unknown`
//! is false, `true or unknown` is true, anything else with unknown is unknown; a row is kept
//! only when the whole expression is *true*. `is null` and `is not null` are never unknown.
//! So `level != "DEBUG"` drops the rows without a level too: write
//! `level is null or level != "DEBUG"` to keep them.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Schema, TimeUnit};

use crate::expr::{CmpOp, Expr, Lit};

/// What a column or literal holds, for type checks at bind time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num,
    Str,
    Bool,
    Time,
}

impl Kind {
    fn of(dt: &DataType) -> Option<Kind> {
        match dt {
            DataType::Int64 | DataType::Float64 => Some(Kind::Num),
            DataType::Utf8 => Some(Kind::Str),
            DataType::Dictionary(k, v)
                if k.as_ref() == &DataType::Int32 && v.as_ref() == &DataType::Utf8 =>
            {
                Some(Kind::Str)
            }
            DataType::Boolean => Some(Kind::Bool),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Some(Kind::Time),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Num => "a number",
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::Time => "a timestamp",
        }
    }
}

/// One side of a comparison.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Column(usize),
    Const(Scalar),
}

/// A literal value, once bound (a string compared with a timestamp becomes µs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    I(i64),
    F(f64),
    S(String),
    B(bool),
    T(i64),
}

/// A value of one row, borrowed from its column or from a literal.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    I(i64),
    F(f64),
    S(&'a str),
    B(bool),
    T(i64),
}

impl Scalar {
    fn val(&self) -> Val<'_> {
        match self {
            Scalar::I(i) => Val::I(*i),
            Scalar::F(x) => Val::F(*x),
            Scalar::S(s) => Val::S(s),
            Scalar::B(b) => Val::B(*b),
            Scalar::T(t) => Val::T(*t),
        }
    }
}

fn compare(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::I(a), Val::I(b)) => Some(a.cmp(&b)),
        (Val::I(a), Val::F(b)) => (a as f64).partial_cmp(&b),
        (Val::F(a), Val::I(b)) => a.partial_cmp(&(b as f64)),
        (Val::F(a), Val::F(b)) => a.partial_cmp(&b),
        (Val::S(a), Val::S(b)) => Some(a.cmp(b)),
        (Val::B(a), Val::B(b)) => Some(a.cmp(&b)),
        (Val::T(a), Val::T(b)) => Some(a.cmp(&b)),
        _ => None,
    }
}

/// A bound expression: column indices resolved, types checked.
#[derive(Debug, Clone)]
pub(crate) enum Bound {
    /// `a OP b`.
    Cmp(CmpOp, Operand, Operand),
    /// Kleene and.
    And(Box<Bound>, Box<Bound>),
    /// Kleene or.
    Or(Box<Bound>, Box<Bound>),
    /// Negation (unknown stays unknown).
    Not(Box<Bound>),
    /// A regex match on a string column.
    Match(usize, regex::Regex, bool),
    /// A null check.
    IsNull(Operand, bool),
    /// Membership in a list of literals.
    In(Operand, Vec<Scalar>, bool),
    /// A boolean column used as a condition.
    Column(usize),
    /// A constant.
    Const(bool),
}

/// A problem binding an expression to a schema, at a byte offset of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindError {
    /// Where in the expression (the start of the field named).
    pub(crate) offset: usize,
    /// What is wrong.
    pub(crate) message: String,
}

/// The index of the column a field reference names: the name itself, or a dotted path's
/// column (`http.status` → `http_status`).
pub fn resolve(schema: &Schema, name: &str) -> Option<usize> {
    schema
        .index_of(name)
        .ok()
        .or_else(|| schema.index_of(&name.replace('.', "_")).ok())
}

/// "columns: a, b, c", for errors about a missing column.
pub fn columns_of(schema: &Schema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    format!("the columns are {}", names.join(", "))
}

struct Binder<'a> {
    schema: &'a Schema,
}

impl Binder<'_> {
    fn column(&self, name: &str, offset: usize) -> Result<(usize, Kind), BindError> {
        let i = resolve(self.schema, name).ok_or_else(|| BindError {
            offset,
            message: format!("no column `{name}` ({})", columns_of(self.schema)),
        })?;
        let dt = self.schema.field(i).data_type();
        let kind = Kind::of(dt).ok_or_else(|| BindError {
            offset,
            message: format!(
                "`{name}` is {dt}: a filter reads numbers, strings, booleans and timestamps"
            ),
        })?;
        Ok((i, kind))
    }

    /// An operand and its kind; `None` kind for a null literal.
    fn operand(&self, e: &Expr) -> Result<(Operand, Option<Kind>), BindError> {
        Ok(match e {
            Expr::Field(name, offset) => {
                let (i, k) = self.column(name, *offset)?;
                (Operand::Column(i), Some(k))
            }
            Expr::Lit(l) => match l {
                Lit::Null => (Operand::Const(Scalar::B(false)), None),
                Lit::Bool(b) => (Operand::Const(Scalar::B(*b)), Some(Kind::Bool)),
                Lit::Int(i) => (Operand::Const(Scalar::I(*i)), Some(Kind::Num)),
                Lit::Float(x) => (Operand::Const(Scalar::F(*x)), Some(Kind::Num)),
                Lit::Str(s) => (Operand::Const(Scalar::S(s.clone())), Some(Kind::Str)),
            },
            other => {
                return Err(BindError {
                    offset: first_offset(other),
                    message: format!("a condition is not a value: {other} cannot be compared"),
                })
            }
        })
    }

    /// Makes two operands comparable: a string literal against a timestamp becomes µs.
    fn unify(
        &self,
        (a, ka): (Operand, Kind),
        (b, kb): (Operand, Kind),
        at: usize,
    ) -> Result<(Operand, Operand), BindError> {
        let time = |op: Operand| -> Result<Operand, BindError> {
            match op {
                Operand::Const(Scalar::S(s)) => match crate::time::parse_rfc3339(&s) {
                    Some(us) => Ok(Operand::Const(Scalar::T(us))),
                    None => Err(BindError {
                        offset: at,
                        message: format!(
                            "\"{s}\" is not an RFC 3339 date-time, to compare with a timestamp"
                        ),
                    }),
                },
                other => Ok(other),
            }
        };
        match (ka, kb) {
            _ if ka == kb => Ok((a, b)),
            (Kind::Time, Kind::Str) if matches!(b, Operand::Const(_)) => Ok((a, time(b)?)),
            (Kind::Str, Kind::Time) if matches!(a, Operand::Const(_)) => Ok((time(a)?, b)),
            _ => Err(BindError {
                offset: at,
                message: format!("cannot compare {} with {}", ka.name(), kb.name()),
            }),
        }
    }

    fn bind(&self, e: &Expr) -> Result<Bound, BindError> {
        Ok(match e {
            Expr::And(a, b) => Bound::And(Box::new(self.bind(a)?), Box::new(self.bind(b)?)),
            Expr::Or(a, b) => Bound::Or(Box::new(self.bind(a)?), Box::new(self.bind(b)?)),
            Expr::Not(a) => Bound::Not(Box::new(self.bind(a)?)),
            Expr::Lit(Lit::Bool(b)) => Bound::Const(*b),
            Expr::Field(name, offset) => match self.column(name, *offset)? {
                (i, Kind::Bool) => Bound::Column(i),
                (_, k) => {
                    return Err(BindError {
                        offset: *offset,
                        message: format!(
                            "`{name}` is {}, not a condition: compare it (`{name} == ...`)",
                            k.name()
                        ),
                    })
                }
            },
            Expr::Lit(l) => {
                return Err(BindError {
                    offset: 0,
                    message: format!("{l} is not a condition"),
                })
            }
            Expr::Cmp(op, a, b) => {
                let at = first_offset(a);
                let (oa, ka) = self.operand(a)?;
                let (ob, kb) = self.operand(b)?;
                // The parser refuses `== null`, so both kinds are known.
                let (ka, kb) = (ka.unwrap_or(Kind::Bool), kb.unwrap_or(Kind::Bool));
                let (oa, ob) = self.unify((oa, ka), (ob, kb), at)?;
                Bound::Cmp(*op, oa, ob)
            }
            Expr::Match {
                subject,
                regex,
                negate,
            } => match subject.as_ref() {
                Expr::Field(name, offset) => match self.column(name, *offset)? {
                    (i, Kind::Str) => Bound::Match(i, regex.clone(), *negate),
                    (_, k) => {
                        return Err(BindError {
                            offset: *offset,
                            message: format!(
                                "`{name}` is {}: `=~` and `!~` match strings",
                                k.name()
                            ),
                        })
                    }
                },
                other => {
                    return Err(BindError {
                        offset: first_offset(other),
                        message: "`=~` and `!~` match a string field".into(),
                    })
                }
            },
            Expr::IsNull(a, negate) => {
                let (o, _) = self.operand(a)?;
                let o = match (a.as_ref(), o) {
                    (Expr::Lit(Lit::Null), _) => return Ok(Bound::Const(!negate)),
                    (_, Operand::Const(_)) => return Ok(Bound::Const(*negate)),
                    (_, o) => o,
                };
                Bound::IsNull(o, *negate)
            }
            Expr::In(a, list, negate) => {
                let at = first_offset(a);
                let (o, k) = self.operand(a)?;
                let k = k.unwrap_or(Kind::Bool);
                let mut items = Vec::new();
                for l in list {
                    let (lo, lk) = self.operand(&Expr::Lit(l.clone()))?;
                    let (_, lo) = self.unify((o.clone(), k), (lo, lk.unwrap_or(k)), at)?;
                    if let Operand::Const(s) = lo {
                        items.push(s);
                    }
                }
                Bound::In(o, items, *negate)
            }
        })
    }
}

/// The offset of the first field named in `e` (0 when none): where a type error points.
fn first_offset(e: &Expr) -> usize {
    match e {
        Expr::Field(_, o) => *o,
        Expr::Lit(_) => 0,
        Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            let o = first_offset(a);
            if o == 0 {
                first_offset(b)
            } else {
                o
            }
        }
        Expr::Not(a) | Expr::IsNull(a, _) | Expr::In(a, _, _) => first_offset(a),
        Expr::Match { subject, .. } => first_offset(subject),
    }
}

/// Binds `e` to `schema`: every field a column, every comparison between values of one kind.
pub(crate) fn bind(e: &Expr, schema: &Schema) -> Result<Bound, BindError> {
    Binder { schema }.bind(e)
}

const FALSE: u8 = 0;
const TRUE: u8 = 1;
const UNKNOWN: u8 = 2;

/// Reads one column's values, or a constant.
enum Getter<'a> {
    I64(&'a arrow_array::Int64Array),
    F64(&'a arrow_array::Float64Array),
    Ts(&'a arrow_array::TimestampMicrosecondArray),
    Str(&'a arrow_array::StringArray),
    Dict(&'a arrow_array::Int32Array, &'a arrow_array::StringArray),
    Bool(&'a BooleanArray),
    Const(Val<'a>),
}

impl<'a> Getter<'a> {
    fn new(o: &'a Operand, rows: &'a RecordBatch) -> Getter<'a> {
        let i = match o {
            Operand::Const(s) => return Getter::Const(s.val()),
            Operand::Column(i) => *i,
        };
        let c = rows.column(i).as_ref();
        match c.data_type() {
            DataType::Int64 => Getter::I64(c.as_primitive::<Int64Type>()),
            DataType::Float64 => Getter::F64(c.as_primitive::<Float64Type>()),
            DataType::Timestamp(..) => Getter::Ts(c.as_primitive::<TimestampMicrosecondType>()),
            DataType::Utf8 => Getter::Str(c.as_string::<i32>()),
            DataType::Boolean => Getter::Bool(c.as_boolean()),
            _ => {
                let d = c.as_dictionary::<Int32Type>();
                Getter::Dict(d.keys(), d.values().as_string::<i32>())
            }
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<Val<'a>> {
        match self {
            Getter::I64(a) => a.is_valid(i).then(|| Val::I(a.value(i))),
            Getter::F64(a) => a.is_valid(i).then(|| Val::F(a.value(i))),
            Getter::Ts(a) => a.is_valid(i).then(|| Val::T(a.value(i))),
            Getter::Str(a) => a.is_valid(i).then(|| Val::S(a.value(i))),
            Getter::Bool(a) => a.is_valid(i).then(|| Val::B(a.value(i))),
            Getter::Dict(k, v) => k.is_valid(i).then(|| {
                let key = k.value(i) as usize;
                Val::S(v.value(key))
            }),
            Getter::Const(v) => Some(*v),
        }
    }
}

impl Bound {
    /// The three-valued result per row: 0 false, 1 true, 2 unknown.
    fn eval(&self, rows: &RecordBatch) -> Vec<u8> {
        let n = rows.num_rows();
        match self {
            Bound::Const(b) => vec![*b as u8; n],
            Bound::Column(i) => {
                let g = Getter::Bool(rows.column(*i).as_boolean());
                (0..n)
                    .map(|r| match g.get(r) {
                        Some(Val::B(b)) => b as u8,
                        _ => UNKNOWN,
                    })
                    .collect()
            }
            Bound::Cmp(op, a, b) => {
                let (ga, gb) = (Getter::new(a, rows), Getter::new(b, rows));
                (0..n)
                    .map(|r| match (ga.get(r), gb.get(r)) {
                        (Some(x), Some(y)) => match compare(x, y) {
                            Some(ord) => op.holds(ord) as u8,
                            // NaN: no order, as SQL's unknown.
                            None => UNKNOWN,
                        },
                        _ => UNKNOWN,
                    })
                    .collect()
            }
            Bound::And(a, b) => {
                let (mut x, y) = (a.eval(rows), b.eval(rows));
                for (x, y) in x.iter_mut().zip(y) {
                    *x = match (*x, y) {
                        (FALSE, _) | (_, FALSE) => FALSE,
                        (TRUE, TRUE) => TRUE,
                        _ => UNKNOWN,
                    };
                }
                x
            }
            Bound::Or(a, b) => {
                let (mut x, y) = (a.eval(rows), b.eval(rows));
                for (x, y) in x.iter_mut().zip(y) {
                    *x = match (*x, y) {
                        (TRUE, _) | (_, TRUE) => TRUE,
                        (FALSE, FALSE) => FALSE,
                        _ => UNKNOWN,
                    };
                }
                x
            }
            Bound::Not(a) => {
                let mut x = a.eval(rows);
                for x in &mut x {
                    *x = match *x {
                        FALSE => TRUE,
                        TRUE => FALSE,
                        u => u,
                    };
                }
                x
            }
            Bound::Match(i, re, negate) => {
                let o = Operand::Column(*i);
                let g = Getter::new(&o, rows);
                (0..n)
                    .map(|r| match g.get(r) {
                        Some(Val::S(s)) => (re.is_match(s) != *negate) as u8,
                        _ => UNKNOWN,
                    })
                    .collect()
            }
            Bound::IsNull(o, negate) => {
                let g = Getter::new(o, rows);
                (0..n)
                    .map(|r| (g.get(r).is_none() != *negate) as u8)
                    .collect()
            }
            Bound::In(o, list, negate) => {
                let g = Getter::new(o, rows);
                (0..n)
                    .map(|r| match g.get(r) {
                        Some(v) => {
                            let found = list
                                .iter()
                                .any(|l| compare(v, l.val()) == Some(Ordering::Equal));
                            (found != *negate) as u8
                        }
                        None => UNKNOWN,
                    })
                    .collect()
            }
        }
    }

    /// The rows to keep: those for which the expression is true.
    pub(crate) fn mask(&self, rows: &RecordBatch) -> BooleanArray {
        self.eval(rows)
            .into_iter()
            .map(|t| Some(t == TRUE))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow_schema::Field;

    use super::*;
    use crate::expr::parse;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("http_status", DataType::Int64, true),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])),
            Arc::new(Float64Array::from(vec![
                Some(0.5),
                Some(2.0),
                None,
                Some(4.0),
            ])),
            Arc::new(StringArray::from(vec![
                Some("ab"),
                Some("b"),
                None,
                Some("abc"),
            ])),
            Arc::new(Int64Array::from(vec![200, 500, 404, 503])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn kept(src: &str) -> Vec<usize> {
        let b = batch();
        let bound = bind(&parse(src).unwrap(), &b.schema()).unwrap();
        let m = bound.mask(&b);
        (0..m.len()).filter(|&i| m.value(i)).collect()
    }

    fn bind_error(src: &str) -> BindError {
        bind(&parse(src).unwrap(), &batch().schema()).unwrap_err()
    }

    #[test]
    fn comparisons_with_nulls_are_unknown_and_unknown_is_not_kept() {
        assert_eq!(kept("a > 1"), [2, 3]);
        assert_eq!(kept("not a > 1"), [0]);
        assert_eq!(kept("a > 1 or a is null"), [1, 2, 3]);
        // true or unknown is true; false and unknown is false.
        assert_eq!(kept("x > 1 or a > 2"), [1, 2, 3]);
        assert_eq!(kept("not (x > 1 and a > 2)"), [0]);
        assert_eq!(kept("a == x"), [3]);
        assert_eq!(kept("s =~ '^a'"), [0, 3]);
        assert_eq!(kept("s !~ '^a'"), [1]);
        assert_eq!(kept("s in ['b', 'abc']"), [1, 3]);
        assert_eq!(kept("s not in ['b', 'abc']"), [0]);
        assert_eq!(kept("http.status >= 500"), [1, 3]);
        assert_eq!(kept("a in [1, 4.0]"), [0, 3]);
        assert_eq!(kept("true"), [0, 1, 2, 3]);
        assert_eq!(kept("s is not null and false"), Vec::<usize>::new());
    }

    #[test]
    fn binding_names_missing_columns_and_type_clashes_at_their_offset() {
        let e = bind_error("a > 1 and nope == 2");
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("no column `nope`"), "{}", e.message);
        assert!(e.message.contains("a, x, s, http_status"), "{}", e.message);
        let e = bind_error("s > 1");
        assert_eq!(
            (e.offset, e.message.as_str()),
            (0, "cannot compare a string with a number")
        );
        assert!(bind_error("a =~ 'x'").message.contains("match strings"));
        assert!(bind_error("a and s == 'x'")
            .message
            .contains("not a condition"));
    }
}

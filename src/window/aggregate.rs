//! The accumulators of one field in one pane, and how two panes' accumulators merge.
//!
//! A value is held as 64 raw bits whose meaning is the field's [`Kind`] (an `f64`'s bits, an
//! `i64`, a `u64`), so `min`, `max`, `first` and `last` come out in the field's own type with
//! no rounding through `f64`. Moments are (n, mean, M2), updated per value by Welford's method
//! and merged by Chan et al.'s formula: never a naive sum of squares, which loses every
//! digit of the variance of values like 1e9 + small noise.

use arrow_schema::DataType;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use super::spec::Agg;

/// The DDSketch relative accuracy: a quantile is within 0.5 % of a value of its rank.
pub const SKETCH_ALPHA: f64 = 0.005;
/// DDSketch bins per sign before the lowest collapse (the crate's default; it is also what
/// the crate's decoder assumes, so a restored sketch is the same sketch). At 0.5 % accuracy
/// 2048 bins span a ratio of about 8·10⁸ between the smallest and largest magnitude kept
/// exactly; below that, the lowest bins merge (low quantiles lose accuracy first).
const SKETCH_BINS: u32 = 2048;
/// Magnitudes below this count as zero in the sketch (the crate's default, for the same
/// reason as [`SKETCH_BINS`]).
const SKETCH_MIN: f64 = 1.0e-9;

pub(crate) fn new_sketch() -> DDSketch {
    DDSketch::new(SketchConfig::new(SKETCH_ALPHA, SKETCH_BINS, SKETCH_MIN))
}

/// How a numeric field's values are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Float32 and Float64, as `f64` bits.
    Float,
    /// Int8 to Int64, as `i64`.
    Signed,
    /// UInt8 to UInt64, as `u64`.
    Unsigned,
}

impl Kind {
    /// The kind of an aggregatable column type; `None` for anything else.
    pub(crate) fn of(t: &DataType) -> Option<Kind> {
        Some(match t {
            DataType::Float32 | DataType::Float64 => Kind::Float,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Kind::Signed,
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                Kind::Unsigned
            }
            _ => return None,
        })
    }

    /// `a < b` in this kind's order (floats: IEEE total order, NaN above +∞).
    #[inline]
    pub(crate) fn less(self, a: u64, b: u64) -> bool {
        match self {
            Kind::Float => f64::from_bits(a).total_cmp(&f64::from_bits(b)).is_lt(),
            Kind::Signed => (a as i64) < (b as i64),
            Kind::Unsigned => a < b,
        }
    }
}

/// Which parts of [`Acc`] a field's aggregates need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    pub sum: bool,
    pub moments: bool,
    pub min: bool,
    pub max: bool,
    pub first: bool,
    pub last: bool,
    pub sketch: bool,
}

impl Needs {
    pub(crate) fn of(aggs: &[Agg]) -> Needs {
        let mut n = Needs::default();
        for a in aggs {
            match a {
                Agg::Count => {}
                Agg::Sum => n.sum = true,
                Agg::Mean | Agg::Var => n.moments = true,
                Agg::Min => n.min = true,
                Agg::Max => n.max = true,
                Agg::First => n.first = true,
                Agg::Last => n.last = true,
                Agg::Quantile(_) => n.sketch = true,
            }
        }
        n
    }
}

/// One field's accumulators in one pane (or, merged, in one window).
#[derive(Clone)]
pub(crate) struct Acc {
    /// Non-null values.
    pub n: u64,
    pub sum: f64,
    /// The first value: moments are kept of `x − shift`, which is exact for values close to
    /// each other (1e9 + small noise), so no digit of the variance is lost to the offset.
    pub shift: f64,
    /// Mean of `x − shift`.
    pub mean: f64,
    pub m2: f64,
    pub min: u64,
    pub max: u64,
    pub first_t: i64,
    pub first: u64,
    pub last_t: i64,
    pub last: u64,
    pub sketch: Option<Box<DDSketch>>,
}

impl std::fmt::Debug for Acc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // DDSketch has no Debug: show its count.
        f.debug_struct("Acc")
            .field("n", &self.n)
            .field("mean", &self.mean)
            .field("m2", &self.m2)
            .field("sketch", &self.sketch.as_ref().map(|s| s.count()))
            .finish_non_exhaustive()
    }
}

impl Acc {
    pub(crate) fn new(needs: Needs) -> Acc {
        Acc {
            n: 0,
            sum: 0.0,
            shift: 0.0,
            mean: 0.0,
            m2: 0.0,
            min: 0,
            max: 0,
            first_t: 0,
            first: 0,
            last_t: 0,
            last: 0,
            sketch: needs.sketch.then(|| Box::new(new_sketch())),
        }
    }

    /// Adds one non-null value `bits` (`x` as f64) of event time `t`; values come in source
    /// order, so ties of `first` keep the earlier and ties of `last` take the later.
    #[inline]
    pub(crate) fn add(&mut self, kind: Kind, needs: Needs, bits: u64, x: f64, t: i64) {
        self.n += 1;
        let first = self.n == 1;
        if needs.sum {
            self.sum += x;
        }
        if needs.moments {
            if first {
                self.shift = x;
            }
            let y = x - self.shift;
            let d = y - self.mean;
            self.mean += d / self.n as f64;
            self.m2 += d * (y - self.mean);
        }
        if needs.min && (first || kind.less(bits, self.min)) {
            self.min = bits;
        }
        if needs.max && (first || kind.less(self.max, bits)) {
            self.max = bits;
        }
        if needs.first && (first || t < self.first_t) {
            (self.first_t, self.first) = (t, bits);
        }
        if needs.last && (first || t >= self.last_t) {
            (self.last_t, self.last) = (t, bits);
        }
        if let Some(s) = &mut self.sketch {
            // A NaN has no rank; it still counts in `count` and poisons the moments, as in SQL.
            if !x.is_nan() {
                s.add(x);
            }
        }
    }

    /// Merges `o`, the accumulators of a later pane (ties of event time cannot occur
    /// between panes: they cover disjoint time ranges).
    pub(crate) fn merge(&mut self, kind: Kind, needs: Needs, o: &Acc) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = o.clone();
            return;
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let n = na + nb;
        if needs.sum {
            self.sum += o.sum;
        }
        if needs.moments {
            let d = (o.shift - self.shift) + (o.mean - self.mean);
            self.mean += d * (nb / n);
            self.m2 += o.m2 + d * d * (na * nb / n);
        }
        if needs.min && kind.less(o.min, self.min) {
            self.min = o.min;
        }
        if needs.max && kind.less(self.max, o.max) {
            self.max = o.max;
        }
        if needs.first && o.first_t < self.first_t {
            (self.first_t, self.first) = (o.first_t, o.first);
        }
        if needs.last && o.last_t >= self.last_t {
            (self.last_t, self.last) = (o.last_t, o.last);
        }
        if let (Some(s), Some(os)) = (&mut self.sketch, &o.sketch) {
            // Same configuration on both sides by construction: merge cannot fail.
            let _ = s.merge(os);
        }
        self.n += o.n;
    }

    /// The value of `agg` as raw bits of the output column's type (Int64 for `count`,
    /// Float64 for sum/mean/var/pNN, the field's kind for min/max/first/last); `None` is null.
    pub(crate) fn value(&self, agg: Agg) -> Option<u64> {
        let some = self.n > 0;
        match agg {
            Agg::Count => Some(self.n),
            Agg::Sum => some.then(|| self.sum.to_bits()),
            Agg::Mean => some.then(|| (self.shift + self.mean).to_bits()),
            Agg::Var => (self.n >= 2).then(|| (self.m2 / (self.n - 1) as f64).to_bits()),
            Agg::Min => some.then_some(self.min),
            Agg::Max => some.then_some(self.max),
            Agg::First => some.then_some(self.first),
            Agg::Last => some.then_some(self.last),
            Agg::Quantile(_) => {
                let q = agg.fraction()?;
                let s = self.sketch.as_ref()?;
                s.quantile(q).ok().flatten().map(f64::to_bits)
            }
        }
    }
}

/// The output type of `agg` over a field of type `field`.
pub(crate) fn output_type(agg: Agg, field: &DataType) -> DataType {
    match agg {
        Agg::Count => DataType::Int64,
        Agg::Sum | Agg::Mean | Agg::Var | Agg::Quantile(_) => DataType::Float64,
        Agg::Min | Agg::Max | Agg::First | Agg::Last => field.clone(),
    }
}

//! Per-record statistics over a list of `f64`: the vectorized kernel and its scalar reference.
//!
//! The kernel works on [`LANES`] independent accumulators so that LLVM turns the loops into
//! packed SIMD (SSE2/AVX on x86_64, NEON on aarch64) without `unsafe` or target-specific code:
//! the portable fallback is the same source compiled for a narrower vector unit.
//!
//! Numerics: the variance is the *corrected two-pass* algorithm (Chan, Golub & LeVeque): the
//! first pass finds the mean, the second sums squared deviations **and** plain deviations, and
//! `(Σd² − (Σd)²/n) / (n − 1)` cancels, to first order, whatever rounding error the mean carries.
//! Data with a large offset (1e9 plus small noise) therefore keeps full precision, where the
//! textbook one-pass `Σx² − (Σx)²/n` loses every digit.
//!
//! Conventions shared by the kernel and [`reference()`]:
//! - an empty list has `count = 0` and every other statistic `None`;
//! - a single value has mean = min = max = that value and variance `None` (the sample variance
//!   needs two values);
//! - if any value is NaN, mean, min, max and variance are all NaN.

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

/// The `q`-quantile (0 ≤ q ≤ 1) of `values` by linear interpolation between the closest ranks
/// (numpy's default, DuckDB's `quantile_cont`), using `scratch` for a sorted copy; `None` when
/// empty, NaN when any value is NaN.
///
/// ```
/// let mut scratch = Vec::new();
/// let mut q = |p| pinflow::stats::quantile(&[4.0, 1.0, 3.0, 2.0], p, &mut scratch);
/// assert_eq!((q(0.0), q(0.5), q(1.0)), (Some(1.0), Some(2.5), Some(4.0)));
/// ```
pub fn quantile(values: &[f64], q: f64, scratch: &mut Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    if values.iter().any(|x| x.is_nan()) {
        return Some(f64::NAN);
    }
    scratch.clear();
    scratch.extend_from_slice(values);
    scratch.sort_unstable_by(f64::total_cmp);
    let h = (scratch.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    let (a, b) = (scratch[lo], scratch[hi]);
    Some(if lo == hi {
        a
    } else {
        a + (b - a) * (h - lo as f64)
    })
}

/// Accumulators per pass: 8 × f64 fills two AVX2 registers or four SSE2/NEON ones.
pub const LANES: usize = 8;

/// The statistics pinflow computes for one record's numeric list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Number of values.
    pub count: usize,
    /// Sum of the values; `None` when empty.
    pub sum: Option<f64>,
    /// Arithmetic mean; `None` when empty.
    pub mean: Option<f64>,
    /// Smallest value; `None` when empty.
    pub min: Option<f64>,
    /// Largest value; `None` when empty.
    pub max: Option<f64>,
    /// Sample variance (denominator `n − 1`); `None` below two values.
    pub variance: Option<f64>,
}

impl Stats {
    /// The statistics of an empty list.
    pub const EMPTY: Stats = Stats {
        count: 0,
        sum: None,
        mean: None,
        min: None,
        max: None,
        variance: None,
    };

    fn all_nan(count: usize) -> Stats {
        Stats {
            count,
            sum: Some(f64::NAN),
            mean: Some(f64::NAN),
            min: Some(f64::NAN),
            max: Some(f64::NAN),
            variance: (count >= 2).then_some(f64::NAN),
        }
    }
}

/// Computes [`Stats`] of `values` with the vectorized kernel.
///
/// ```
/// let s = pinflow::stats::compute(&[1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(s.count, 4);
/// assert_eq!(s.mean, Some(2.5));
/// assert_eq!((s.min, s.max), (Some(1.0), Some(4.0)));
/// assert!((s.variance.unwrap() - 5.0 / 3.0).abs() < 1e-15);
/// ```
pub fn compute(values: &[f64]) -> Stats {
    let n = values.len();
    if n == 0 {
        return Stats::EMPTY;
    }
    let (sum, min, max) = sum_min_max(values);
    if sum.is_nan() && values.iter().any(|x| x.is_nan()) {
        // Rare path: a NaN poisons every statistic (an inf − inf sum without NaN input
        // falls through and yields NaN mean and variance naturally).
        return Stats::all_nan(n);
    }
    let mean = sum / n as f64;
    let variance = (n >= 2).then(|| {
        let (sq, dev) = squared_and_plain_deviations(values, mean);
        let v = (sq - dev * dev / n as f64) / (n - 1) as f64;
        // Rounding can leave a tiny negative for constant input; NaN must stay NaN.
        if v < 0.0 {
            0.0
        } else {
            v
        }
    });
    Stats {
        count: n,
        sum: Some(sum),
        mean: Some(mean),
        min: Some(min),
        max: Some(max),
        variance,
    }
}

/// First pass: sum, min and max in `LANES` independent accumulators.
#[inline]
fn sum_min_max(values: &[f64]) -> (f64, f64, f64) {
    let mut sum = [0.0f64; LANES];
    let mut min = [f64::INFINITY; LANES];
    let mut max = [f64::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            let x = chunk[l];
            sum[l] += x;
            // Written as selects, not f64::min, so the loop maps to minpd/maxpd blends.
            min[l] = if x < min[l] { x } else { min[l] };
            max[l] = if x > max[l] { x } else { max[l] };
        }
    }
    for (l, &x) in tail.iter().enumerate() {
        sum[l] += x;
        min[l] = if x < min[l] { x } else { min[l] };
        max[l] = if x > max[l] { x } else { max[l] };
    }
    let s = pairwise_sum(&sum);
    let mn = min
        .iter()
        .copied()
        .fold(f64::INFINITY, |a, b| if b < a { b } else { a });
    let mx = max
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, |a, b| if b > a { b } else { a });
    (s, mn, mx)
}

/// Second pass: Σ(x − mean)² and Σ(x − mean), lane-wise.
#[inline]
fn squared_and_plain_deviations(values: &[f64], mean: f64) -> (f64, f64) {
    let mut sq = [0.0f64; LANES];
    let mut dev = [0.0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            let d = chunk[l] - mean;
            sq[l] += d * d;
            dev[l] += d;
        }
    }
    for (l, &x) in tail.iter().enumerate() {
        let d = x - mean;
        sq[l] += d * d;
        dev[l] += d;
    }
    (pairwise_sum(&sq), pairwise_sum(&dev))
}

#[inline]
fn pairwise_sum(lanes: &[f64; LANES]) -> f64 {
    let a = (lanes[0] + lanes[4]) + (lanes[2] + lanes[6]);
    let b = (lanes[1] + lanes[5]) + (lanes[3] + lanes[7]);
    a + b
}

/// The plain scalar reference the kernel is tested against: one value at a time, a
/// compensated (Neumaier) sum for the mean, then the textbook second pass `Σ(x − mean)²`.
///
/// It is slow on purpose and shares no code with [`compute`].
pub fn reference(values: &[f64]) -> Stats {
    let n = values.len();
    if n == 0 {
        return Stats::EMPTY;
    }
    if values.iter().any(|x| x.is_nan()) {
        return Stats::all_nan(n);
    }
    let (mut sum, mut comp) = (0.0f64, 0.0f64);
    let mut min = values[0];
    let mut max = values[0];
    for &x in values {
        let t = sum + x;
        comp += if sum.abs() >= x.abs() {
            (sum - t) + x
        } else {
            (x - t) + sum
        };
        sum = t;
        if x < min {
            min = x;
        }
        if x > max {
            max = x;
        }
    }
    // With an infinity in the input the compensation term is inf − inf: use the plain sum.
    let mean = if comp.is_finite() { sum + comp } else { sum } / n as f64;
    let variance = (n >= 2).then(|| {
        let mut sq = 0.0;
        for &x in values {
            sq += (x - mean) * (x - mean);
        }
        sq / (n - 1) as f64
    });
    Stats {
        count: n,
        sum: Some(if comp.is_finite() { sum + comp } else { sum }),
        mean: Some(mean),
        min: Some(min),
        max: Some(max),
        variance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64) so the tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn close(a: Option<f64>, b: Option<f64>, rel: f64) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) if a.is_nan() && b.is_nan() => true,
            (Some(a), Some(b)) => a == b || (a - b).abs() <= rel * a.abs().max(b.abs()),
            _ => false,
        }
    }

    fn assert_matches_reference(values: &[f64], rel: f64) {
        let k = compute(values);
        let r = reference(values);
        assert_eq!(k.count, r.count);
        assert!(close(k.mean, r.mean, rel), "mean {k:?} vs {r:?}");
        assert_eq!(k.min.map(f64::to_bits), r.min.map(f64::to_bits), "min");
        assert_eq!(k.max.map(f64::to_bits), r.max.map(f64::to_bits), "max");
        assert!(
            close(k.variance, r.variance, rel),
            "variance {k:?} vs {r:?}"
        );
    }

    #[test]
    fn empty_single_and_pair() {
        assert_eq!(compute(&[]), Stats::EMPTY);
        let one = compute(&[42.5]);
        assert_eq!(one.count, 1);
        assert_eq!(
            (one.mean, one.min, one.max),
            (Some(42.5), Some(42.5), Some(42.5))
        );
        assert_eq!(one.variance, None);
        let two = compute(&[1.0, 3.0]);
        assert_eq!(two.variance, Some(2.0));
        assert_eq!(two.mean, Some(2.0));
    }

    #[test]
    fn nan_poisons_every_statistic_at_any_position() {
        for len in [1usize, 2, 7, 8, 9, 64, 65] {
            for pos in [0, len / 2, len - 1] {
                let mut v: Vec<f64> = (0..len).map(|i| i as f64).collect();
                v[pos] = f64::NAN;
                let s = compute(&v);
                assert_eq!(s.count, len);
                assert!(s.mean.unwrap().is_nan() && s.min.unwrap().is_nan());
                assert!(s.max.unwrap().is_nan());
                assert_eq!(s.variance.map(f64::is_nan), (len >= 2).then_some(true));
                assert_matches_reference(&v, 0.0);
            }
        }
    }

    #[test]
    fn random_lengths_match_the_scalar_reference() {
        let mut rng = Rng(7);
        for len in 0..200 {
            let v: Vec<f64> = (0..len).map(|_| rng.next_f64() * 2000.0 - 1000.0).collect();
            assert_matches_reference(&v, 1e-12);
        }
    }

    #[test]
    fn large_offset_keeps_precision() {
        let mut rng = Rng(11);
        for len in [2usize, 3, 8, 64, 1000, 100_000] {
            let v: Vec<f64> = (0..len).map(|_| 1e9 + rng.next_f64()).collect();
            assert_matches_reference(&v, 1e-12);
            // The noise is uniform on [0, 1): its variance is near 1/12, which the naive
            // one-pass formula could not recover at this offset.
            if len >= 1000 {
                let var = compute(&v).variance.unwrap();
                assert!((var - 1.0 / 12.0).abs() < 0.01, "variance {var}");
            }
        }
    }

    #[test]
    fn constant_input_has_zero_variance() {
        let v = vec![3.25; 67];
        assert_eq!(compute(&v).variance, Some(0.0));
        let big = vec![1e9 + 0.5; 1000];
        assert_eq!(compute(&big).variance, Some(0.0));
    }

    #[test]
    fn infinities_follow_ieee() {
        let s = compute(&[1.0, f64::INFINITY, 2.0]);
        assert_eq!(s.max, Some(f64::INFINITY));
        assert_eq!(s.min, Some(1.0));
        assert_eq!(s.mean, Some(f64::INFINITY));
        assert_matches_reference(&[1.0, f64::INFINITY, f64::NEG_INFINITY], 0.0);
    }
}

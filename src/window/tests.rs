//! The window engine against a brute-force oracle, and its policies one by one.
//!
//! The oracle keeps every accepted record in a list per (window, key) and applies the rules
//! of the module docs literally, record by record: lateness against the watermark before the
//! record, the watermark as the monotonic minimum over active partitions, emission ordered by
//! (window start, key). Its aggregates are recomputed from the kept values: exact sums (the
//! test values are multiples of 1/8, so every order of addition is exact), two-pass variance,
//! and exact quantiles by sorting (the value of rank ⌊q·(n−1)⌋, the one the sketch's bound
//! is stated against).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::*;

const S: i64 = 1_000_000;

/// Seeded random cases (fastrand), so every failure replays, with the draws the cases use.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.u64(..n.max(1))
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        self.0.i64(lo..=hi)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("service", DataType::Utf8, true),
        Field::new("host", DataType::Int64, true),
        Field::new("v", DataType::Float64, true),
        Field::new("n", DataType::Int64, true),
    ]))
}

/// One input record.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    t: Option<i64>,
    service: Option<String>,
    host: Option<i64>,
    v: Option<f64>,
    n: Option<i64>,
}

fn batch(recs: &[Rec]) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            recs.iter()
                .map(|r| r.t)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            recs.iter()
                .map(|r| r.service.clone())
                .collect::<StringArray>(),
        ),
        Arc::new(recs.iter().map(|r| r.host).collect::<Int64Array>()),
        Arc::new(recs.iter().map(|r| r.v).collect::<Float64Array>()),
        Arc::new(recs.iter().map(|r| r.n).collect::<Int64Array>()),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

const V_AGGS: [Agg; 11] = [
    Agg::Count,
    Agg::Sum,
    Agg::Mean,
    Agg::Var,
    Agg::Min,
    Agg::Max,
    Agg::First,
    Agg::Last,
    Agg::Quantile(5000),
    Agg::Quantile(9000),
    Agg::Quantile(9900),
];
const N_AGGS: [Agg; 6] = [
    Agg::Count,
    Agg::Sum,
    Agg::Min,
    Agg::Max,
    Agg::First,
    Agg::Last,
];

fn spec(size: i64, hop: i64, lateness: i64, by: &[&str]) -> WindowSpec {
    let mut s = WindowSpec::hopping(
        Duration::from_micros(size as u64),
        Duration::from_micros(hop as u64),
    )
    .with_by(by.iter().copied())
    .with_lateness(Duration::from_micros(lateness as u64))
    .with_aggregates("v", V_AGGS)
    .with_aggregates("n", N_AGGS);
    s.max_open = 1 << 30;
    s
}

/// What happens to the operator, in order.
#[derive(Debug, Clone)]
enum Event {
    Push(u32, Vec<Rec>),
    End(u32),
    Flush,
}

/// A window row as plain values (floats as f64, ints as i64 in f64 where exact).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    start: i64,
    end: i64,
    key: Vec<KeyVal>,
    count: i64,
    /// Per output aggregate column.
    vals: Vec<Option<f64>>,
    partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyVal {
    Null,
    I(i64),
    S(String),
}

/// Window rows of the operator's output batches as [`Row`]s.
fn rows_of(b: &RecordBatch, n_keys: usize) -> Vec<Row> {
    let starts = b.column(0).as_primitive::<TimestampMicrosecondType>();
    let ends = b.column(1).as_primitive::<TimestampMicrosecondType>();
    let count = b.column(2 + n_keys).as_primitive::<Int64Type>();
    let has_partial = b.schema().fields().last().unwrap().name() == "partial";
    let last_val = b.num_columns() - usize::from(has_partial);
    (0..b.num_rows())
        .map(|i| {
            let key = (0..n_keys)
                .map(|k| {
                    let c = b.column(2 + k);
                    if c.is_null(i) {
                        KeyVal::Null
                    } else {
                        match c.data_type() {
                            DataType::Int64 => KeyVal::I(c.as_primitive::<Int64Type>().value(i)),
                            _ => KeyVal::S(c.as_string::<i32>().value(i).to_string()),
                        }
                    }
                })
                .collect();
            let vals = (3 + n_keys..last_val)
                .map(|c| {
                    let c = b.column(c);
                    if c.is_null(i) {
                        return None;
                    }
                    Some(match c.data_type() {
                        DataType::Int64 => c.as_primitive::<Int64Type>().value(i) as f64,
                        _ => c.as_primitive::<Float64Type>().value(i),
                    })
                })
                .collect();
            Row {
                start: starts.value(i),
                end: ends.value(i),
                key,
                count: count.value(i),
                vals,
                partial: has_partial && b.column(b.num_columns() - 1).as_boolean().value(i),
            }
        })
        .collect()
}

fn key_of(r: &Rec, by: &[&str]) -> Vec<KeyVal> {
    by.iter()
        .map(|b| match *b {
            "service" => r.service.clone().map_or(KeyVal::Null, KeyVal::S),
            "host" => r.host.map_or(KeyVal::Null, KeyVal::I),
            _ => unreachable!(),
        })
        .collect()
}

/// The brute-force model of the rules.
struct Oracle {
    size: i64,
    hop: i64,
    lateness: i64,
    by: Vec<&'static str>,
    wm: i64,
    parts: BTreeMap<u32, (i64, bool)>,
    /// (window start, key) → accepted records.
    buckets: BTreeMap<(i64, Vec<KeyVal>), Vec<Rec>>,
    rows: Vec<Row>,
    /// (event index, row) of late records.
    late: Vec<(usize, usize)>,
    /// The state cap and its policy.
    max_open: usize,
    overflow: Overflow,
    /// Per key: windows starting before this were closed early.
    closed_below: BTreeMap<Vec<KeyVal>, i64>,
    /// (event index, row) of records refused under `Overflow::DeadLetter`.
    full: Vec<(usize, usize)>,
}

impl Oracle {
    fn new(size: i64, hop: i64, lateness: i64, by: &[&'static str]) -> Oracle {
        Oracle {
            size,
            hop,
            lateness,
            by: by.to_vec(),
            wm: i64::MIN,
            parts: BTreeMap::new(),
            buckets: BTreeMap::new(),
            rows: Vec::new(),
            late: Vec::new(),
            max_open: usize::MAX,
            overflow: Overflow::CloseOldest,
            closed_below: BTreeMap::new(),
            full: Vec::new(),
        }
    }

    /// Places record `r` (not late by the watermark) under the state cap.
    fn place(&mut self, ei: usize, row: usize, r: &Rec, t: i64) {
        let key = key_of(r, &self.by);
        let latest = t.div_euclid(self.hop) * self.hop;
        loop {
            let cb = self.closed_below.get(&key).copied().unwrap_or(i64::MIN);
            if latest < cb {
                self.late.push((ei, row));
                return;
            }
            let mut windows = Vec::new();
            let mut s = latest;
            while s + self.size > t {
                if s + self.size > self.wm && s >= cb {
                    windows.push(s);
                }
                s -= self.hop;
            }
            let new = windows
                .iter()
                .filter(|s| !self.buckets.contains_key(&(**s, key.clone())))
                .count();
            if new == 0 || self.buckets.len() + new <= self.max_open || self.buckets.is_empty() {
                for s in windows {
                    self.buckets
                        .entry((s, key.clone()))
                        .or_default()
                        .push(r.clone());
                }
                return;
            }
            match self.overflow {
                Overflow::DeadLetter => {
                    self.full.push((ei, row));
                    return;
                }
                Overflow::CloseOldest => {
                    // The oldest pair; the tests that get here have one key, so no ties.
                    let (s0, k0) = self.buckets.keys().next().cloned().unwrap();
                    let recs = self.buckets.remove(&(s0, k0.clone())).unwrap();
                    let mut row = oracle_row(s0, s0 + self.size, k0.clone(), &recs);
                    row.partial = true;
                    self.rows.push(row);
                    let e = self.closed_below.entry(k0).or_insert(i64::MIN);
                    *e = (*e).max(s0 + self.hop);
                }
            }
        }
    }

    fn recompute(&mut self) {
        let seen: Vec<(i64, bool)> = self.parts.values().copied().collect();
        let active = seen
            .iter()
            .filter(|(_, ended)| !ended)
            .map(|(m, _)| *m)
            .min();
        let cand = active.or_else(|| seen.iter().map(|(m, _)| *m).max());
        if let Some(c) = cand {
            self.wm = self.wm.max(c - self.lateness);
        }
        self.emit();
    }

    fn emit(&mut self) {
        let due: Vec<(i64, Vec<KeyVal>)> = self
            .buckets
            .keys()
            .filter(|(s, _)| s + self.size <= self.wm)
            .cloned()
            .collect();
        for k in due {
            let recs = self.buckets.remove(&k).unwrap();
            self.rows.push(oracle_row(k.0, k.0 + self.size, k.1, &recs));
        }
    }

    fn run(&mut self, events: &[Event]) {
        for (ei, e) in events.iter().enumerate() {
            match e {
                Event::Push(p, recs) => {
                    if let Some(part) = self.parts.get_mut(p) {
                        part.1 = false;
                    }
                    for (row, r) in recs.iter().enumerate() {
                        let Some(t) = r.t else { continue };
                        let latest = t.div_euclid(self.hop) * self.hop;
                        if latest + self.size <= self.wm {
                            self.late.push((ei, row));
                        } else {
                            self.place(ei, row, r, t);
                        }
                        let part = self.parts.entry(*p).or_insert((i64::MIN, false));
                        part.0 = part.0.max(t);
                        self.recompute();
                    }
                }
                Event::End(p) => {
                    if let Some(part) = self.parts.get_mut(p) {
                        part.1 = true;
                    }
                    self.recompute();
                }
                Event::Flush => {
                    if let Some(last) = self.buckets.keys().map(|(s, _)| *s).max() {
                        self.wm = self.wm.max(last + self.size);
                    }
                    self.emit();
                }
            }
        }
    }
}

/// The expected row of window `[start, end)` of `key` over `recs` (in source order).
fn oracle_row(start: i64, end: i64, key: Vec<KeyVal>, recs: &[Rec]) -> Row {
    let mut vals = Vec::new();
    // v: count, sum, mean, var, min, max, first, last, p50, p90, p99
    let vs: Vec<(i64, f64)> = recs.iter().filter_map(|r| Some((r.t?, r.v?))).collect();
    let n = vs.len();
    let sum: f64 = vs.iter().map(|x| x.1).sum();
    let mean = sum / n as f64;
    let var = vs.iter().map(|x| (x.1 - mean) * (x.1 - mean)).sum::<f64>() / (n as f64 - 1.0);
    let mut sorted: Vec<f64> = vs.iter().map(|x| x.1).collect();
    sorted.sort_by(f64::total_cmp);
    let first = |xs: &[(i64, f64)]| {
        let t = xs.iter().map(|x| x.0).min()?;
        xs.iter().find(|x| x.0 == t).map(|x| x.1)
    };
    let last = |xs: &[(i64, f64)]| {
        let t = xs.iter().map(|x| x.0).max()?;
        xs.iter().rev().find(|x| x.0 == t).map(|x| x.1)
    };
    let q = |p: f64| (n > 0).then(|| sorted[(p * (n as f64 - 1.0)) as usize]);
    let some = n > 0;
    vals.push(Some(n as f64));
    vals.push(some.then_some(sum));
    vals.push(some.then_some(mean));
    vals.push((n >= 2).then_some(var));
    vals.push(sorted.first().copied());
    vals.push(sorted.last().copied());
    vals.push(first(&vs));
    vals.push(last(&vs));
    vals.push(q(0.5));
    vals.push(q(0.9));
    vals.push(q(0.99));
    // n: count, sum, min, max, first, last (as f64: the test's ints are small)
    let ns: Vec<(i64, f64)> = recs
        .iter()
        .filter_map(|r| Some((r.t?, r.n? as f64)))
        .collect();
    let some = !ns.is_empty();
    vals.push(Some(ns.len() as f64));
    vals.push(some.then(|| ns.iter().map(|x| x.1).sum()));
    vals.push(ns.iter().map(|x| x.1).min_by(f64::total_cmp));
    vals.push(ns.iter().map(|x| x.1).max_by(f64::total_cmp));
    vals.push(first(&ns));
    vals.push(last(&ns));
    Row {
        start,
        end,
        key,
        count: recs.len() as i64,
        vals,
        partial: false,
    }
}

/// Runs the operator over `events`, optionally snapshotting and restoring before the
/// events whose index is in `restarts`; returns rows and (event, row, reason) rejections.
fn run_op(
    spec: &Arc<WindowSpec>,
    events: &[Event],
    restarts: &[usize],
) -> (Vec<RecordBatch>, Vec<(usize, usize, String)>) {
    let mut op = WindowOperator::new(spec.clone(), &schema()).unwrap();
    let mut out = op.new_output();
    let mut batches = Vec::new();
    let mut rejected = Vec::new();
    let now = Instant::now();
    for (ei, e) in events.iter().enumerate() {
        if restarts.contains(&ei) {
            let bytes = op.snapshot();
            op = WindowOperator::restore(spec.clone(), &schema(), &bytes).unwrap();
        }
        match e {
            Event::Push(p, recs) => op.push(PartitionId(*p), &batch(recs), now, &mut out),
            Event::End(p) => op.partition_ended(PartitionId(*p), &mut out),
            Event::Flush => op.flush(&mut out),
        }
        for r in out.take_rejected() {
            rejected.push((ei, r.row, r.reason));
        }
        batches.extend(out.take_rows());
    }
    (batches, rejected)
}

/// A random out-of-order stream: `n` records over several partitions and keys, mostly near
/// a clock that moves forward, some far behind it (late), some with null fields.
fn stream(rng: &mut Rng, n: usize, parts: u32, step: i64, jitter: i64) -> Vec<Event> {
    let services = ["api", "db", "cache", "auth", "édge"];
    let mut clocks: Vec<i64> = (0..parts).map(|_| rng.range(0, 5 * S)).collect();
    let mut events = Vec::new();
    let mut left = n;
    let mut ended = vec![false; parts as usize];
    while left > 0 {
        let p = rng.below(u64::from(parts)) as u32;
        let len = (rng.range(1, 40) as usize).min(left);
        left -= len;
        let mut recs = Vec::with_capacity(len);
        for _ in 0..len {
            let clock = &mut clocks[p as usize];
            *clock += rng.range(0, step);
            let mut t = *clock + rng.range(-jitter, jitter);
            if rng.chance(3) {
                t -= rng.range(0, 30 * S); // far behind: often late
            }
            // A coarse grid makes equal event times (first/last ties) common.
            t -= t.rem_euclid(S / 4);
            recs.push(Rec {
                t: (!rng.chance(2)).then_some(t),
                service: (!rng.chance(5))
                    .then(|| services[rng.below(services.len() as u64) as usize].to_string()),
                host: (!rng.chance(5)).then(|| rng.range(-2, 2)),
                v: (!rng.chance(5)).then(|| rng.range(-4000, 40_000) as f64 / 8.0),
                n: (!rng.chance(5)).then(|| rng.range(-100, 1000)),
            });
        }
        events.push(Event::Push(p, recs));
        ended[p as usize] = false;
        if rng.chance(5) {
            let e = rng.below(u64::from(parts)) as u32;
            events.push(Event::End(e));
            ended[e as usize] = true;
        }
    }
    if rng.chance(80) {
        events.push(Event::Flush);
    }
    events
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
}

/// Compares operator rows with the oracle's: exact where exact, mean and var to 1e-9
/// relative, percentiles within the sketch's bound of the exact lower-rank quantile.
fn compare(got: &[Row], want: &[Row], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ctx = || format!("{what}: row {i}: got {g:?}\nwant {w:?}");
        assert_eq!(
            (g.start, g.end, &g.key, g.count),
            (w.start, w.end, &w.key, w.count),
            "{}",
            ctx()
        );
        assert_eq!(g.partial, w.partial, "{}", ctx());
        for (c, (gv, wv)) in g.vals.iter().zip(&w.vals).enumerate() {
            match (gv, wv) {
                (None, None) => {}
                (Some(gv), Some(wv)) => {
                    let ok = match c {
                        2 | 3 => close(*gv, *wv, 1e-9),
                        8..=10 => (gv - wv).abs() <= SKETCH_ALPHA * (1.0 + 1e-9) * wv.abs(),
                        _ => gv == wv,
                    };
                    assert!(ok, "column {c}: {gv} vs {wv}: {}", ctx());
                }
                _ => panic!("column {c}: null mismatch: {}", ctx()),
            }
        }
    }
    assert_eq!(got.len(), want.len(), "{what}: row counts differ");
}

fn check_against_oracle(seed: u64, size: i64, hop: i64, lateness: i64, by: &[&'static str]) {
    check_policy_against_oracle(
        seed,
        size,
        hop,
        lateness,
        by,
        usize::MAX,
        Overflow::CloseOldest,
    );
}

fn check_policy_against_oracle(
    seed: u64,
    size: i64,
    hop: i64,
    lateness: i64,
    by: &[&'static str],
    max_open: usize,
    overflow: Overflow,
) {
    let mut rng = Rng::new(seed | 1);
    let parts = 1 + rng.below(3) as u32;
    let events = stream(&mut rng, 1500, parts, S / 2, 3 * S);
    let mut sp = spec(size, hop, lateness, by);
    if max_open != usize::MAX {
        (sp.max_open, sp.overflow) = (max_open, overflow);
    }
    let spec = Arc::new(sp);
    let (batches, rejected) = run_op(&spec, &events, &[]);
    let got: Vec<Row> = batches.iter().flat_map(|b| rows_of(b, by.len())).collect();
    let mut oracle = Oracle::new(size, hop, lateness, by);
    (oracle.max_open, oracle.overflow) = (spec.max_open, spec.overflow);
    oracle.run(&events);
    let what = format!(
        "seed {seed} size {size} hop {hop} lateness {lateness} by {by:?} max_open {max_open}"
    );
    compare(&got, &oracle.rows, &what);
    let of = |prefix: &str| -> Vec<(usize, usize)> {
        rejected
            .iter()
            .filter(|r| r.2.starts_with(prefix))
            .map(|r| (r.0, r.1))
            .collect()
    };
    assert_eq!(of("late: "), oracle.late, "{what}: late rows");
    assert_eq!(
        of("window state full: "),
        oracle.full,
        "{what}: refused rows"
    );
    // Everything else rejected is a null event time.
    for (ei, row, reason) in rejected
        .iter()
        .filter(|r| !r.2.starts_with("late: ") && !r.2.starts_with("window state full: "))
    {
        let Event::Push(_, recs) = &events[*ei] else {
            panic!()
        };
        assert!(recs[*row].t.is_none(), "{what}: {reason}");
        assert_eq!(reason, "no event time: `ts` is null");
    }
    assert!(
        !oracle.rows.is_empty() && !oracle.late.is_empty(),
        "{what}: a weak stream"
    );
    if max_open != usize::MAX {
        let hit = match overflow {
            Overflow::CloseOldest => oracle.rows.iter().any(|r| r.partial),
            Overflow::DeadLetter => !oracle.full.is_empty(),
        };
        assert!(hit, "{what}: the cap was never reached");
    }
}

#[test]
fn over_max_open_policies_match_the_oracle() {
    for seed in 1..=6 {
        // One key: the oldest pair is never a tie.
        check_policy_against_oracle(seed, 2 * S, 2 * S, 3 * S, &[], 2, Overflow::CloseOldest);
        check_policy_against_oracle(seed * 3, 4 * S, 2 * S, 4 * S, &[], 3, Overflow::CloseOldest);
        check_policy_against_oracle(
            seed * 5,
            4 * S,
            4 * S,
            S,
            &["service"],
            4,
            Overflow::DeadLetter,
        );
        check_policy_against_oracle(
            seed * 7,
            6 * S,
            3 * S,
            2 * S,
            &["service", "host"],
            10,
            Overflow::DeadLetter,
        );
    }
}

#[test]
fn tumbling_windows_match_the_oracle() {
    for seed in 1..=6 {
        check_against_oracle(seed, 10 * S, 10 * S, 0, &["service"]);
        check_against_oracle(seed * 7, 5 * S, 5 * S, 2 * S, &[]);
    }
}

#[test]
fn hopping_windows_match_the_oracle() {
    for seed in 1..=6 {
        check_against_oracle(seed * 11, 10 * S, 5 * S, 0, &["service"]);
        check_against_oracle(seed * 13, 10 * S, 4 * S, S, &["service", "host"]);
        check_against_oracle(seed * 17, 9 * S, 6 * S, 3 * S, &["host"]);
    }
}

#[test]
fn snapshot_and_restore_at_random_points_equals_an_uninterrupted_run() {
    for seed in 1..=8u64 {
        let mut rng = Rng::new(seed * 31 + 1);
        let events = stream(&mut rng, 800, 2, S / 2, 3 * S);
        let (size, hop) = if seed % 2 == 0 {
            (10 * S, 5 * S)
        } else {
            (6 * S, 6 * S)
        };
        let mut spec = spec(size, hop, S, &["service", "host"]);
        // Some runs with a small cap, so that early closes and refusals are in the state.
        match seed % 3 {
            1 => (spec.max_open, spec.overflow) = (12, Overflow::CloseOldest),
            2 => (spec.max_open, spec.overflow) = (12, Overflow::DeadLetter),
            _ => {}
        }
        let spec = Arc::new(spec);
        let (want_rows, want_rej) = run_op(&spec, &events, &[]);
        let restarts: Vec<usize> = (0..events.len()).filter(|_| rng.chance(15)).collect();
        assert!(!restarts.is_empty());
        let (got_rows, got_rej) = run_op(&spec, &events, &restarts);
        if seed % 3 == 1 {
            let partial = |b: &RecordBatch| b.column(b.num_columns() - 1).as_boolean().true_count();
            let n: usize = want_rows.iter().map(partial).sum();
            assert!(n > 0, "seed {seed}: no early close");
        }
        if seed % 3 == 2 {
            let full = want_rej
                .iter()
                .any(|r| r.2.starts_with("window state full"));
            assert!(full, "seed {seed}: no refusal");
        }
        assert_eq!(got_rej, want_rej, "seed {seed}");
        let cat = |b: &[RecordBatch]| {
            arrow_select::concat::concat_batches(&spec_schema(&spec), b).unwrap()
        };
        assert_eq!(cat(&got_rows), cat(&want_rows), "seed {seed}");
    }
}

fn spec_schema(spec: &Arc<WindowSpec>) -> SchemaRef {
    WindowOperator::new(spec.clone(), &schema())
        .unwrap()
        .output_schema()
}

#[test]
fn restore_refuses_damaged_bytes_and_other_settings() {
    let spec1 = Arc::new(spec(10 * S, 10 * S, 0, &["service"]));
    let mut op = WindowOperator::new(spec1.clone(), &schema()).unwrap();
    let mut out = op.new_output();
    let recs: Vec<Rec> = (0..5)
        .map(|i| Rec {
            t: Some(i * S),
            service: Some("a".into()),
            host: None,
            v: Some(i as f64),
            n: Some(i),
        })
        .collect();
    op.push(PartitionId(0), &batch(&recs), Instant::now(), &mut out);
    let bytes = op.snapshot();
    assert!(WindowOperator::restore(spec1.clone(), &schema(), &bytes).is_ok());
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 1;
    let e = WindowOperator::restore(spec1.clone(), &schema(), &flipped).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    let e =
        WindowOperator::restore(spec1.clone(), &schema(), &bytes[..bytes.len() - 1]).unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
    let spec2 = Arc::new(spec(20 * S, 10 * S, 0, &["service"]));
    let e = WindowOperator::restore(spec2, &schema(), &bytes).unwrap_err();
    assert!(e.to_string().contains("settings changed"), "{e}");
    let mut v2 = bytes.clone();
    v2[4] = 9;
    let e = WindowOperator::restore(spec1, &schema(), &v2).unwrap_err();
    assert!(e.to_string().contains("version 9"), "{e}");
}

fn rec(t: i64, service: &str, v: f64) -> Rec {
    Rec {
        t: Some(t),
        service: Some(service.into()),
        host: None,
        v: Some(v),
        n: None,
    }
}

#[test]
fn variance_on_cancellation_heavy_input_matches_an_exact_reference() {
    // 1e9 + k/1024: a naive sum of squares loses every digit here. The exact variance is
    // (n·Σy² − (Σy)²) / (n(n−1)) / 1024² over the integers y = k.
    let mut rng = Rng::new(99);
    for (size, hop) in [(10 * S, 10 * S), (10 * S, 2 * S)] {
        let spec = Arc::new(
            WindowSpec::hopping(
                Duration::from_micros(size as u64),
                Duration::from_micros(hop as u64),
            )
            .with_aggregates("v", [Agg::Var, Agg::Mean]),
        );
        let mut op = WindowOperator::new(spec, &schema()).unwrap();
        let mut out = op.new_output();
        let mut ys: Vec<(i64, i64)> = Vec::new();
        let recs: Vec<Rec> = (0..3000)
            .map(|i| {
                let y = rng.range(-5000, 5000);
                let t = i * S / 10; // 10 records a second, in order
                ys.push((t, y));
                rec(t, "x", 1e9 + y as f64 / 1024.0)
            })
            .collect();
        op.push(PartitionId(0), &batch(&recs), Instant::now(), &mut out);
        op.flush(&mut out);
        let b = out.take_rows().unwrap();
        let starts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let var = b.column(3).as_primitive::<Float64Type>();
        let mut checked = 0;
        for i in 0..b.num_rows() {
            let s = starts.value(i);
            let in_w: Vec<i128> = ys
                .iter()
                .filter(|(t, _)| *t >= s && *t < s + size)
                .map(|(_, y)| i128::from(*y))
                .collect();
            let n = in_w.len() as i128;
            if n < 2 {
                continue;
            }
            let (sy, syy) = (
                in_w.iter().sum::<i128>(),
                in_w.iter().map(|y| y * y).sum::<i128>(),
            );
            let exact = (n * syy - sy * sy) as f64 / (n * (n - 1)) as f64 / (1024.0 * 1024.0);
            assert!(
                close(var.value(i), exact, 1e-9),
                "window {s}: {} vs exact {exact}",
                var.value(i)
            );
            checked += 1;
        }
        assert!(checked >= 25);
    }
}

fn one_service_spec(max_open: usize, overflow: Overflow) -> Arc<WindowSpec> {
    Arc::new(
        WindowSpec::tumbling(Duration::from_secs(10))
            .with_by(["service"])
            .with_aggregates("v", [Agg::Sum])
            .with_max_open(max_open, overflow),
    )
}

#[test]
fn over_max_open_dead_letter_rejects_the_record_that_would_open_a_new_pair() {
    let mut op = WindowOperator::new(one_service_spec(2, Overflow::DeadLetter), &schema()).unwrap();
    let mut out = op.new_output();
    let recs = [
        rec(S, "a", 1.0),
        rec(2 * S, "b", 2.0),
        rec(3 * S, "c", 3.0), // a third pair: rejected
        rec(4 * S, "a", 4.0), // an open pair: fine
    ];
    op.push(PartitionId(0), &batch(&recs), Instant::now(), &mut out);
    let rej = out.take_rejected();
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].row, 2);
    assert_eq!(
        rej[0].reason,
        "window state full: 2 open (key, window) pairs (max_open)"
    );
    assert_eq!(op.gauges().rejected, 1);
    op.flush(&mut out);
    let b = out.take_rows().unwrap();
    assert_eq!(b.num_rows(), 2);
    assert_eq!(
        b.schema().fields().len(),
        5,
        "no `partial` under dead_letter"
    );
    assert_eq!(
        b.column(4).as_primitive::<Float64Type>().values(),
        &[5.0, 2.0]
    );
}

#[test]
fn over_max_open_close_oldest_emits_the_oldest_pair_early_as_partial() {
    let mut op =
        WindowOperator::new(one_service_spec(2, Overflow::CloseOldest), &schema()).unwrap();
    let mut out = op.new_output();
    let recs = [
        rec(S, "b", 1.0),
        rec(2 * S, "a", 2.0),
        rec(3 * S, "c", 3.0), // a third pair: the oldest goes (same start: "b", seen first)
        rec(4 * S, "b", 4.0), // its window was closed early: late
    ];
    op.push(PartitionId(0), &batch(&recs), Instant::now(), &mut out);
    let early = out.take_rows().unwrap();
    assert_eq!(early.num_rows(), 1);
    assert_eq!(early.column(2).as_string::<i32>().value(0), "b");
    assert_eq!(early.column(4).as_primitive::<Float64Type>().value(0), 1.0);
    assert!(early.column(5).as_boolean().value(0), "marked partial");
    assert_eq!(op.gauges().evicted, 1);
    let rej = out.take_rejected();
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].row, 3);
    assert_eq!(
        rej[0].reason,
        "late: event time 1970-01-01T00:00:04.000000Z: its window \
         [1970-01-01T00:00:00.000000Z, 1970-01-01T00:00:10.000000Z) was closed early because \
         the window state was full (max_open 2 open (key, window) pairs)"
    );
    assert_eq!(op.gauges().late, 1);
    op.flush(&mut out);
    let rest = out.take_rows().unwrap();
    assert_eq!(rest.num_rows(), 2);
    assert_eq!(rest.column(2).as_string::<i32>().value(0), "a");
    assert!(!rest.column(5).as_boolean().value(0));
    assert_eq!(op.gauges().open, 0);
}

#[test]
fn idle_partitions_stop_holding_the_watermark_and_close_windows_when_all_are_quiet() {
    let spec = Arc::new(
        WindowSpec::tumbling(Duration::from_secs(10))
            .with_idle(Duration::from_secs(30))
            .with_aggregates("v", [Agg::Sum]),
    );
    let mut op = WindowOperator::new(spec, &schema()).unwrap();
    let mut out = op.new_output();
    let t0 = Instant::now();
    assert_eq!(op.next_deadline(), None);
    // Partition 0 is at 5 s, partition 1 at 25 s: the watermark is 5 s.
    op.push(
        PartitionId(0),
        &batch(&[rec(5 * S, "a", 1.0)]),
        t0,
        &mut out,
    );
    op.push(
        PartitionId(1),
        &batch(&[rec(25 * S, "a", 2.0)]),
        t0 + Duration::from_secs(10),
        &mut out,
    );
    assert_eq!(op.gauges().watermark_us, Some(5 * S));
    assert!(out.take_rows().is_none());
    assert_eq!(op.next_deadline(), Some(t0 + Duration::from_secs(30)));
    // 20 s later nothing is idle yet.
    op.tick(t0 + Duration::from_secs(20), &mut out);
    assert!(out.take_rows().is_none());
    // Partition 0 idle: it no longer holds W back; partition 1 moves it to 25 s.
    op.tick(t0 + Duration::from_secs(30), &mut out);
    assert_eq!(out.take_rows().unwrap().num_rows(), 1);
    assert_eq!(op.gauges().watermark_us, Some(25 * S));
    assert_eq!(op.next_deadline(), Some(t0 + Duration::from_secs(40)));
    // Partition 1 idle too: every window closes.
    op.tick(t0 + Duration::from_secs(40), &mut out);
    let b = out.take_rows().unwrap();
    assert_eq!(b.num_rows(), 1);
    assert_eq!(
        b.column(0)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        20 * S
    );
    assert_eq!(op.next_deadline(), None);
    assert_eq!(op.gauges().open, 0);
    // A record for a closed window is late; a push wakes its partition up.
    op.push(
        PartitionId(1),
        &batch(&[rec(21 * S, "a", 1.0), rec(31 * S, "a", 1.0)]),
        t0 + Duration::from_secs(50),
        &mut out,
    );
    let rej = out.take_rejected();
    assert_eq!(rej.len(), 1);
    assert!(rej[0].reason.starts_with("late: event time 1970-01-01T00:00:21.000000Z is behind the watermark 1970-01-01T00:00:30.000000Z; its window [1970-01-01T00:00:20.000000Z, 1970-01-01T00:00:30.000000Z) closed"), "{}", rej[0].reason);
    assert_eq!(op.next_deadline(), Some(t0 + Duration::from_secs(80)));
}

#[test]
fn an_ended_partition_no_longer_holds_the_watermark_back() {
    let spec = Arc::new(WindowSpec::tumbling(Duration::from_secs(10)));
    let mut op = WindowOperator::new(spec, &schema()).unwrap();
    let mut out = op.new_output();
    let now = Instant::now();
    op.push(
        PartitionId(0),
        &batch(&[rec(3 * S, "a", 1.0)]),
        now,
        &mut out,
    );
    op.push(
        PartitionId(1),
        &batch(&[rec(25 * S, "a", 1.0)]),
        now,
        &mut out,
    );
    assert!(out.take_rows().is_none());
    op.partition_ended(PartitionId(0), &mut out);
    assert_eq!(out.take_rows().unwrap().num_rows(), 1);
    assert_eq!(op.gauges().watermark_us, Some(25 * S));
}

#[test]
fn agg_parse_and_suffix() {
    for (s, a, suffix) in [
        ("count", Agg::Count, "count"),
        ("mean", Agg::Mean, "mean"),
        ("var", Agg::Var, "var"),
        ("p50", Agg::Quantile(5000), "p50"),
        ("p99", Agg::Quantile(9900), "p99"),
        ("p99.9", Agg::Quantile(9990), "p99_9"),
        ("p99.99", Agg::Quantile(9999), "p99_99"),
        ("p99.05", Agg::Quantile(9905), "p99_05"),
        ("p1", Agg::Quantile(100), "p1"),
    ] {
        assert_eq!(Agg::parse(s), Ok(a), "{s}");
        assert_eq!(a.suffix(), suffix);
    }
    for bad in [
        "p", "p100", "p0", "p99.999", "p-1", "p9x", "median2", "stddev", "",
    ] {
        assert!(Agg::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn validate_names_what_is_wrong() {
    let ok = WindowSpec::hopping(Duration::from_secs(10), Duration::from_secs(5));
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(ok.pane_us(), 5 * S);
    assert_eq!(ok.time_field, "ts");
    assert_eq!(ok.max_open, 1_000_000);
    let bad = WindowSpec::hopping(Duration::from_secs(5), Duration::from_secs(10));
    assert!(bad.validate().unwrap_err().contains("hop (10s) is longer"));
    let bad = WindowSpec::tumbling(Duration::ZERO);
    assert!(bad
        .validate()
        .unwrap_err()
        .contains("size must be positive"));
    let bad = WindowSpec::hopping(Duration::from_secs(10), Duration::from_secs(1))
        .with_max_open(5, Overflow::CloseOldest);
    assert!(bad
        .validate()
        .unwrap_err()
        .contains("max_open (5) is below 10"));
    let bad = WindowSpec::tumbling(Duration::from_secs(1)).with_by(["count"]);
    assert!(bad.validate().unwrap_err().contains("named `count`"));
    let bad =
        WindowSpec::tumbling(Duration::from_secs(1)).with_aggregates("v", [Agg::Mean, Agg::Mean]);
    assert!(bad.validate().unwrap_err().contains("listed twice"));
}

#[test]
fn new_checks_the_columns_against_the_schema() {
    let s = schema();
    let e = |spec: WindowSpec| {
        WindowOperator::new(Arc::new(spec), &s)
            .unwrap_err()
            .to_string()
    };
    let base = || WindowSpec::tumbling(Duration::from_secs(1));
    assert!(e(base().with_time_field("when")).contains("time field `when` is not a column"));
    assert!(e(base().with_time_field("service")).contains("not a timestamp"));
    assert!(e(base().with_by(["v"])).contains("keys are strings, integers or booleans"));
    assert!(e(base().with_aggregates("service", [Agg::Sum])).contains("need a number column"));
    let op = WindowOperator::new(
        Arc::new(
            base()
                .with_by(["service", "host"])
                .with_aggregates("n", [Agg::Min, Agg::Mean, Agg::Quantile(9990)]),
        ),
        &s,
    )
    .unwrap();
    let names: Vec<String> = op
        .output_schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        names,
        [
            "window_start:Timestamp(µs, \"UTC\")",
            "window_end:Timestamp(µs, \"UTC\")",
            "service:Utf8",
            "host:Int64",
            "count:Int64",
            "n_min:Int64",
            "n_mean:Float64",
            "n_p99_9:Float64",
            "partial:Boolean",
        ]
    );
}

#[test]
fn epoch_number_time_columns_are_read_by_magnitude() {
    // Schema inference makes an int64 column of epoch numbers: seconds and milliseconds.
    let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Int64, true)]));
    let spec = Arc::new(WindowSpec::tumbling(Duration::from_secs(60)));
    let mut op = WindowOperator::new(spec, &schema).unwrap();
    let mut out = op.new_output();
    let secs = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![
            secs,
            secs * 1000 + 30_000,
            secs + 61,
        ]))],
    )
    .unwrap();
    op.push(PartitionId(0), &b, Instant::now(), &mut out);
    let rows = out.take_rows().unwrap();
    assert_eq!(rows.num_rows(), 1);
    // Fractional epoch numbers make a float64 column: read the same way.
    let fschema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Float64, true)]));
    let spec = Arc::new(WindowSpec::tumbling(Duration::from_secs(60)));
    let mut fop = WindowOperator::new(spec, &fschema).unwrap();
    let fb = RecordBatch::try_new(
        fschema.clone(),
        vec![Arc::new(Float64Array::from(vec![
            secs as f64 + 0.5,
            (secs * 1000 + 59_999) as f64 + 0.4,
            secs as f64 + 60.0,
            f64::NAN,
        ]))],
    )
    .unwrap();
    fop.push(PartitionId(0), &fb, Instant::now(), &mut out);
    let frows = out.take_rows().unwrap();
    assert_eq!(frows.column(2).as_primitive::<Int64Type>().value(0), 2);
    assert_eq!(out.take_rejected().len(), 1, "NaN is out of range");
    assert_eq!(
        rows.column(0)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        secs * S
    );
    assert_eq!(rows.column(2).as_primitive::<Int64Type>().value(0), 2);
}

#[test]
fn percentiles_of_negative_and_zero_values_stay_within_the_bound() {
    let spec = Arc::new(
        WindowSpec::tumbling(Duration::from_secs(10)).with_aggregates(
            "v",
            [Agg::Quantile(100), Agg::Quantile(5000), Agg::Quantile(9900)],
        ),
    );
    let mut op = WindowOperator::new(spec, &schema()).unwrap();
    let mut out = op.new_output();
    let mut rng = Rng::new(5);
    let mut vals: Vec<f64> = (0..5000)
        .map(|i| match i % 5 {
            0 => 0.0,
            1 => -(rng.range(1, 1_000_000) as f64) / 100.0,
            _ => rng.range(1, 1_000_000) as f64 / 100.0,
        })
        .collect();
    let recs: Vec<Rec> = vals.iter().map(|v| rec(S, "x", *v)).collect();
    op.push(PartitionId(0), &batch(&recs), Instant::now(), &mut out);
    op.flush(&mut out);
    let b = out.take_rows().unwrap();
    vals.sort_by(f64::total_cmp);
    for (c, q) in [(3, 0.01), (4, 0.5), (5, 0.99)] {
        let got = b.column(c).as_primitive::<Float64Type>().value(0);
        let want = vals[(q * (vals.len() as f64 - 1.0)) as usize];
        assert!(
            (got - want).abs() <= SKETCH_ALPHA * (1.0 + 1e-9) * want.abs(),
            "q {q}: {got} vs {want}"
        );
    }
}

/// Single-thread throughput, by hand (debug numbers mean nothing):
/// `cargo test --release --lib window::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let n = 1_000_000usize;
    let services: Vec<String> = (0..40).map(|i| format!("service-{i:02}")).collect();
    let mut rng = Rng::new(7);
    let mut batches = Vec::new();
    let mut t = 1_767_225_600 * S;
    for chunk in 0..n / 4096 + 1 {
        let len = 4096.min(n - chunk * 4096);
        if len == 0 {
            break;
        }
        let recs: Vec<Rec> = (0..len)
            .map(|_| {
                t += 1000; // 1000 records a second
                Rec {
                    t: Some(t - rng.range(0, 2 * S)),
                    service: Some(services[rng.below(40) as usize].clone()),
                    host: None,
                    v: Some(rng.range(1, 100_000) as f64 / 100.0),
                    n: None,
                }
            })
            .collect();
        batches.push(batch(&recs));
    }
    let base =
        || WindowSpec::tumbling(Duration::from_secs(10)).with_lateness(Duration::from_secs(2));
    let cases = [
        ("no key, count only", base()),
        ("40 keys, count only", base().with_by(["service"])),
        (
            "40 keys, count/mean/var",
            base()
                .with_by(["service"])
                .with_aggregates("v", [Agg::Count, Agg::Mean, Agg::Var]),
        ),
        (
            "40 keys, count/mean/var/p99",
            base()
                .with_by(["service"])
                .with_aggregates("v", [Agg::Count, Agg::Mean, Agg::Var, Agg::Quantile(9900)]),
        ),
    ];
    for (what, spec) in cases {
        let mut op = WindowOperator::new(Arc::new(spec), &schema()).unwrap();
        let mut out = op.new_output();
        let now = Instant::now();
        let start = Instant::now();
        let mut rows = 0;
        for b in &batches {
            op.push(PartitionId(0), b, now, &mut out);
            rows += out.take_rows().map_or(0, |b| b.num_rows());
            out.take_rejected();
        }
        op.flush(&mut out);
        rows += out.take_rows().map_or(0, |b| b.num_rows());
        let el = start.elapsed();
        println!(
            "window throughput, {n} records, 10 s tumbling, {what}: {:.2} M records/s ({rows} rows, {} late)",
            n as f64 / el.as_secs_f64() / 1e6,
            op.gauges().late
        );
    }
}

#[test]
fn dictionary_keys_are_cached_per_entry_and_come_out_as_dictionaries() {
    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::types::Int32Type;
    let dict_t = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("service", dict_t.clone(), true),
    ]));
    let spec = Arc::new(WindowSpec::tumbling(Duration::from_secs(10)).with_by(["service"]));
    let mut op = WindowOperator::new(spec, &schema).unwrap();
    let mut out = op.new_output();
    for round in 0..3i64 {
        let mut d = StringDictionaryBuilder::<Int32Type>::new();
        for s in ["b", "a", "b"] {
            d.append_value(s);
        }
        d.append_null();
        let ts: Vec<i64> = (0..4).map(|i| round * 10 * S + i * S).collect();
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                Arc::new(d.finish()),
            ],
        )
        .unwrap();
        op.push(PartitionId(0), &b, Instant::now(), &mut out);
    }
    op.flush(&mut out);
    let b = out.take_rows().unwrap();
    assert_eq!(b.column(2).data_type(), &dict_t);
    assert_eq!(b.num_rows(), 9);
    let keys = b.column(2).as_dictionary::<Int32Type>();
    let vals = keys.values().as_string::<i32>();
    let names: Vec<Option<&str>> = (0..3).map(|i| keys.key(i).map(|k| vals.value(k))).collect();
    assert_eq!(
        names,
        [None, Some("a"), Some("b")],
        "null first, then by value"
    );
    assert_eq!(
        b.column(3).as_primitive::<Int64Type>().values(),
        &[1, 1, 2, 1, 1, 2, 1, 1, 2]
    );
    let _ = Float64Array::from(vec![0.0]).len();
}

#[test]
fn keys_of_every_supported_type_come_out_by_name_and_type_in_key_order() {
    use arrow_array::{BooleanArray, Int32Array, LargeStringArray, StringViewArray, UInt64Array};
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("shard", DataType::UInt64, true),
        Field::new("code", DataType::Int32, true),
        Field::new("region", DataType::LargeUtf8, true),
        Field::new("zone", DataType::Utf8View, true),
    ]));
    let spec = Arc::new(
        WindowSpec::tumbling(Duration::from_secs(10))
            .with_by(["ok", "shard", "code", "region", "zone"])
            .with_max_open(100, Overflow::DeadLetter),
    );
    let mut op = WindowOperator::new(spec, &schema).unwrap();
    let out_schema = op.output_schema();
    for (i, t) in [
        DataType::Boolean,
        DataType::UInt64,
        DataType::Int32,
        DataType::LargeUtf8,
        DataType::Utf8View,
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(out_schema.field(2 + i).data_type(), t);
    }
    let mut out = op.new_output();
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow_array::TimestampMillisecondArray::from(vec![
                1000, 2000, 3000, 4000, 5000, 6000,
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                Some(true),
                None,
                Some(true),
                Some(true),
            ])),
            Arc::new(UInt64Array::from(vec![u64::MAX, 1, 1, 1, 2, u64::MAX])),
            Arc::new(Int32Array::from(vec![-1, 5, 5, 5, 5, -1])),
            Arc::new(LargeStringArray::from(vec![
                "eu", "eu", "eu", "eu", "us", "eu",
            ])),
            Arc::new(StringViewArray::from(vec![
                Some("a"),
                Some("a"),
                None,
                Some("a"),
                Some("a"),
                Some("a"),
            ])),
        ],
    )
    .unwrap();
    op.push(PartitionId(0), &b, Instant::now(), &mut out);
    op.flush(&mut out);
    let rows = out.take_rows().unwrap();
    // Key order: ok (null, false, true), then shard, ...
    let ok = rows.column(2).as_boolean();
    let shard = rows
        .column(3)
        .as_primitive::<arrow_array::types::UInt64Type>();
    let count = rows.column(7).as_primitive::<Int64Type>();
    let got: Vec<(Option<bool>, u64, i64)> = (0..rows.num_rows())
        .map(|i| {
            (
                ok.is_valid(i).then(|| ok.value(i)),
                shard.value(i),
                count.value(i),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (None, 1, 1),
            (Some(false), 1, 1),
            (Some(true), 1, 1),
            (Some(true), 2, 1),
            (Some(true), u64::MAX, 2),
        ]
    );
    assert!(rows.column(6).is_null(2), "a null key value stays null");
}

#[test]
fn rows_that_cannot_be_windowed_are_rejected_with_the_reason() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Second, None),
        true,
    )]));
    let spec = Arc::new(WindowSpec::tumbling(Duration::from_secs(10)));
    let mut op = WindowOperator::new(spec.clone(), &schema).unwrap();
    let mut out = op.new_output();
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow_array::TimestampSecondArray::from(vec![
            Some(5),
            None,
            Some(400_000_000_000),
        ]))],
    )
    .unwrap();
    op.push(PartitionId(0), &b, Instant::now(), &mut out);
    let rej = out.take_rejected();
    assert_eq!(
        rej,
        [
            Rejected {
                row: 1,
                reason: "no event time: `ts` is null".into()
            },
            Rejected {
                row: 2,
                reason: "event time out of range: `ts` is 400000000000 (Second since the epoch) \
                         (years 0000 to 9999 are accepted)"
                    .into()
            },
        ]
    );
    // A batch of another shape: every row rejected, saying why.
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("ts", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![1, 2]))],
    )
    .unwrap();
    op.push(PartitionId(0), &other, Instant::now(), &mut out);
    let rej = out.take_rejected();
    assert_eq!(rej.len(), 2);
    assert!(
        rej[0].reason.contains("column `ts` is Int64"),
        "{}",
        rej[0].reason
    );
    assert_eq!(op.gauges().rejected, 4);
    op.flush(&mut out);
    assert_eq!(out.take_rows().unwrap().num_rows(), 1);
}

#[test]
fn columns_are_found_by_name_in_batches_of_another_layout() {
    let spec = Arc::new(
        WindowSpec::tumbling(Duration::from_secs(10))
            .with_by(["service"])
            .with_aggregates("v", [Agg::Sum]),
    );
    let mut op = WindowOperator::new(spec, &schema()).unwrap();
    let mut out = op.new_output();
    op.push(
        PartitionId(0),
        &batch(&[rec(S, "a", 1.0)]),
        Instant::now(),
        &mut out,
    );
    // The same columns in another order, with one more (as a transform might add).
    let other = Arc::new(Schema::new(vec![
        Field::new("extra", DataType::Utf8, true),
        Field::new("v", DataType::Float64, true),
        Field::new("service", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]));
    let b = RecordBatch::try_new(
        other,
        vec![
            Arc::new(StringArray::from(vec!["x"])),
            Arc::new(Float64Array::from(vec![2.0])),
            Arc::new(StringArray::from(vec!["a"])),
            Arc::new(TimestampMicrosecondArray::from(vec![2 * S]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    op.push(PartitionId(0), &b, Instant::now(), &mut out);
    op.push(
        PartitionId(0),
        &batch(&[rec(3 * S, "a", 4.0)]),
        Instant::now(),
        &mut out,
    );
    assert!(out.take_rejected().is_empty());
    op.flush(&mut out);
    let rows = out.take_rows().unwrap();
    assert_eq!(rows.column(3).as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(rows.column(4).as_primitive::<Float64Type>().value(0), 7.0);
}

/// `n` window threads running [`run_shard`](super::sharded::run_shard) for `spec`, and the
/// links to them.
fn shard_links(spec: &WindowSpec, n: usize) -> Vec<super::sharded::ShardLink> {
    use super::sharded::{run_shard, shard_spec, ShardLink};
    let shard = Arc::new(shard_spec(spec, n));
    (0..n)
        .map(|_| {
            let (jobs, jobs_rx) = crossbeam_channel::bounded(1);
            let (replies_tx, replies) = crossbeam_channel::bounded(1);
            let s = Arc::clone(&shard);
            std::thread::spawn(move || run_shard(s, jobs_rx, replies_tx, |_| {}));
            ShardLink { jobs, replies }
        })
        .collect()
}

/// Runs [`ShardedWindows`](super::sharded::ShardedWindows) over `events` with `n` shard
/// threads, snapshotting and restoring (new threads) before the events in `restarts`.
fn run_sharded(
    spec: &Arc<WindowSpec>,
    events: &[Event],
    n: usize,
    restarts: &[usize],
) -> (Vec<RecordBatch>, Vec<(usize, usize, String)>) {
    use super::sharded::ShardedWindows;
    let start = |saved: Option<&[u8]>| {
        let links = shard_links(spec, n);
        ShardedWindows::new(spec.clone(), &schema(), links, saved).unwrap()
    };
    let mut w = start(None);
    let (mut batches, mut rejected) = (Vec::new(), Vec::new());
    let now = Instant::now();
    for (ei, e) in events.iter().enumerate() {
        if restarts.contains(&ei) {
            let bytes = w.snapshot().unwrap();
            w = start(Some(&bytes));
        }
        let (rows, rej) = match e {
            Event::Push(p, recs) => w.push(PartitionId(*p), &batch(recs), now).unwrap(),
            Event::End(p) => (w.partition_ended(PartitionId(*p)).unwrap(), Vec::new()),
            Event::Flush => (w.flush().unwrap(), Vec::new()),
        };
        rejected.extend(rej.into_iter().map(|r| (ei, r.row, r.reason)));
        batches.extend(rows);
    }
    (batches, rejected)
}

/// Keys spread over several window threads give the rows and the late records of one
/// operator: the same rows in the same order and the same rejections, row for row with the
/// same reasons; through snapshots and restores onto new threads too.
#[test]
fn window_threads_give_the_rows_and_late_records_of_one_operator() {
    for seed in 1..=6u64 {
        let mut rng = Rng::new(seed * 17 + 5);
        let events = stream(&mut rng, 1200, 3, S / 2, 3 * S);
        let (size, hop) = match seed % 2 {
            0 => (10 * S, 5 * S),
            _ => (6 * S, 6 * S),
        };
        let spec = Arc::new(spec(size, hop, S, &["service", "host"]));
        let (want_rows, want_rej) = run_op(&spec, &events, &[]);
        assert!(want_rej.iter().any(|r| r.2.starts_with("late")));
        let in_order =
            |b: &[RecordBatch]| -> Vec<Row> { b.iter().flat_map(|b| rows_of(b, 2)).collect() };
        for n in [2, 3, 5] {
            let restarts: Vec<usize> = match n {
                3 => (0..events.len()).filter(|_| rng.chance(10)).collect(),
                _ => Vec::new(),
            };
            let (rows, rej) = run_sharded(&spec, &events, n, &restarts);
            assert_eq!(rej, want_rej, "seed {seed}, {n} threads");
            let (got, want) = (in_order(&rows), in_order(&want_rows));
            assert_eq!(got, want, "seed {seed}, {n} threads");
        }
    }
}

/// A saved state of several window threads is refused by a run with another count, naming
/// both counts.
#[test]
fn window_thread_state_needs_the_same_thread_count() {
    let mut rng = Rng::new(99);
    let events = stream(&mut rng, 200, 1, S / 2, S);
    let spec = Arc::new(spec(6 * S, 6 * S, S, &["service"]));
    let (_, _) = run_sharded(&spec, &events, 2, &[]);
    use super::sharded::ShardedWindows;
    let links = |n: usize| shard_links(&spec, n);
    let mut w = ShardedWindows::new(spec.clone(), &schema(), links(2), None).unwrap();
    if let Event::Push(p, recs) = &events[0] {
        w.push(PartitionId(*p), &batch(recs), Instant::now())
            .unwrap();
    }
    let bytes = w.snapshot().unwrap();
    let e = ShardedWindows::new(spec.clone(), &schema(), links(3), Some(&bytes))
        .err()
        .expect("another count is refused")
        .to_string();
    assert!(
        e.contains("2 window threads") && e.contains("this run has 3"),
        "{e}"
    );
    let mut cut = bytes.clone();
    cut.truncate(bytes.len() - 3);
    assert!(ShardedWindows::new(spec.clone(), &schema(), links(2), Some(&cut)).is_err());
    assert!(ShardedWindows::new(spec.clone(), &schema(), links(2), Some(&bytes)).is_ok());
}

/// Idle partitions (processing time) over several window threads: with pushes, ticks and
/// ends interleaved at random instants, the rows (in order) and the rejections are one
/// operator's.
#[test]
fn window_threads_close_idle_streams_as_one_operator_does() {
    use super::sharded::ShardedWindows;
    enum Step {
        Push(u32, Vec<Rec>, Instant),
        Tick(Instant),
        End(u32),
    }
    for seed in 1..=4u64 {
        let mut rng = Rng::new(seed * 7 + 3);
        let spec =
            Arc::new(spec(4 * S, 2 * S, S, &["service", "host"]).with_idle(Duration::from_secs(3)));
        let t0 = Instant::now();
        let mut at = t0;
        let mut steps = Vec::new();
        for e in stream(&mut rng, 600, 3, S / 3, 2 * S) {
            at += Duration::from_millis(rng.below(1500));
            match e {
                Event::Push(p, recs) => steps.push(Step::Push(p, recs, at)),
                Event::End(p) => steps.push(Step::End(p)),
                Event::Flush => {}
            }
            if rng.chance(30) {
                at += Duration::from_millis(rng.below(5000));
                steps.push(Step::Tick(at));
            }
        }
        let rows =
            |b: &[RecordBatch]| -> Vec<Row> { b.iter().flat_map(|b| rows_of(b, 2)).collect() };
        // One operator, and three window threads, step by step.
        let mut op = WindowOperator::new(spec.clone(), &schema()).unwrap();
        let mut out = op.new_output();
        let links = shard_links(&spec, 3);
        let mut w = ShardedWindows::new(spec.clone(), &schema(), links, None).unwrap();
        let (mut want, mut want_rej) = (Vec::new(), Vec::new());
        let (mut got, mut got_rej) = (Vec::new(), Vec::new());
        for (i, s) in steps.iter().enumerate() {
            let (r, rej) = match s {
                Step::Push(p, recs, at) => {
                    op.push(PartitionId(*p), &batch(recs), *at, &mut out);
                    w.push(PartitionId(*p), &batch(recs), *at).unwrap()
                }
                Step::Tick(at) => {
                    op.tick(*at, &mut out);
                    (w.tick(*at).unwrap(), Vec::new())
                }
                Step::End(p) => {
                    op.partition_ended(PartitionId(*p), &mut out);
                    (w.partition_ended(PartitionId(*p)).unwrap(), Vec::new())
                }
            };
            want_rej.extend(
                out.take_rejected()
                    .into_iter()
                    .map(|r| (i, r.row, r.reason)),
            );
            want.extend(out.take_rows());
            got_rej.extend(rej.into_iter().map(|r| (i, r.row, r.reason)));
            got.extend(r);
            assert_eq!(
                w.next_deadline(),
                op.next_deadline(),
                "seed {seed}, step {i}"
            );
            assert_eq!(w.gauges(), op.gauges(), "seed {seed}, step {i}");
        }
        assert!(
            want_rej.iter().any(|r| r.2.starts_with("late")),
            "seed {seed}: some late records"
        );
        assert_eq!(got_rej, want_rej, "seed {seed}");
        assert_eq!(rows(&got), rows(&want), "seed {seed}");
    }
}

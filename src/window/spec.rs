//! What a window operator computes: [`WindowSpec`], its aggregates ([`Agg`]) and the policy
//! past the state cap ([`Overflow`]).

use std::time::Duration;

/// The default event-time column.
pub const DEFAULT_TIME_FIELD: &str = "ts";
/// The default cap on open (key, window) pairs.
pub const DEFAULT_MAX_OPEN: usize = 1_000_000;

/// A window definition: size and hop, event-time column, keys, lateness, idle closing, the
/// state cap and the aggregates. Build one with [`WindowSpec::tumbling`] or
/// [`WindowSpec::hopping`] and the `with_*` methods; check it with [`WindowSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length in µs.
    pub size_us: i64,
    /// Distance between window starts in µs; `hop_us == size_us` is a tumbling window.
    pub hop_us: i64,
    /// The event-time column (default `ts`).
    pub time_field: String,
    /// Key columns; empty: one global key.
    pub by: Vec<String>,
    /// How far behind the highest event time the watermark trails, in µs (default 0).
    pub lateness_us: i64,
    /// Processing time after which a silent partition stops holding the watermark back;
    /// `None`: never.
    pub idle: Option<Duration>,
    /// Cap on open (key, window) pairs (default 1 000 000).
    pub max_open: usize,
    /// What happens past `max_open` (default [`Overflow::CloseOldest`]).
    pub overflow: Overflow,
    /// Field → aggregates, in the order given (that is the order of the output columns).
    pub aggregates: Vec<(String, Vec<Agg>)>,
}

/// The policy once `max_open` (key, window) pairs are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Emit the oldest open pair early, with `partial = true`; that window and every earlier
    /// window of its key are then closed (later records for them are late).
    #[default]
    CloseOldest,
    /// Reject (dead-letter) the record that would open a new pair.
    DeadLetter,
}

impl Overflow {
    /// `close_oldest` or `dead_letter`.
    pub fn parse(s: &str) -> Result<Overflow, String> {
        match s {
            "close_oldest" => Ok(Overflow::CloseOldest),
            "dead_letter" => Ok(Overflow::DeadLetter),
            other => Err(format!(
                "`{other}` is not a window overflow policy (close_oldest, dead_letter)"
            )),
        }
    }

    /// The name [`Overflow::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Overflow::CloseOldest => "close_oldest",
            Overflow::DeadLetter => "dead_letter",
        }
    }
}

/// One aggregate of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Agg {
    /// Non-null values (Int64).
    Count,
    /// Sum of the values (Float64).
    Sum,
    /// Mean (Float64).
    Mean,
    /// Sample variance, n − 1 (Float64; null below 2 values).
    Var,
    /// Smallest value (the field's type).
    Min,
    /// Largest value (the field's type).
    Max,
    /// A quantile from a DDSketch (Float64, within 0.5 % relative of a value of rank
    /// ⌊q·(n−1)⌋ in sorted order), in hundredths of a percent: p99 = 9900, p99.9 = 9990.
    Quantile(u16),
    /// The value with the smallest event time (ties: the first in source order).
    First,
    /// The value with the largest event time (ties: the last in source order).
    Last,
}

impl Agg {
    /// `count`, `sum`, `mean` (or `avg`), `var` (or `variance`), `min`, `max`, `first`,
    /// `last`, `median` (p50), or `pNN` with up to two decimals (`p50`, `p99`, `p99.9`,
    /// `p99.99`; 0 < NN < 100, and `p0`/`p100` are min/max).
    ///
    /// ```
    /// use pinflow::window::Agg;
    /// assert_eq!(Agg::parse("p99.9"), Ok(Agg::Quantile(9990)));
    /// assert_eq!(Agg::parse("p99.9").unwrap().suffix(), "p99_9");
    /// assert!(Agg::parse("p100").unwrap_err().contains("max"));
    /// ```
    pub fn parse(s: &str) -> Result<Agg, String> {
        Ok(match s {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "mean" | "avg" => Agg::Mean,
            "var" | "variance" => Agg::Var,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "first" => Agg::First,
            "last" => Agg::Last,
            "median" => Agg::Quantile(5000),
            _ => match s.strip_prefix('p') {
                Some(q) => Agg::Quantile(
                    parse_percent(q).map_err(|why| format!("`{s}` is not a percentile: {why}"))?,
                ),
                None => {
                    return Err(format!(
                        "`{s}` is not an aggregate (count, sum, mean, var, min, max, first, \
                         last, or a percentile such as p50, p99, p99.9)"
                    ))
                }
            },
        })
    }

    /// The column-name suffix: `count`, `sum`, `mean`, `var`, `min`, `max`, `first`, `last`,
    /// `p50`, `p99`, `p99_9` (the column is `<field>_<suffix>`).
    pub fn suffix(&self) -> String {
        match self {
            Agg::Count => "count".into(),
            Agg::Sum => "sum".into(),
            Agg::Mean => "mean".into(),
            Agg::Var => "var".into(),
            Agg::Min => "min".into(),
            Agg::Max => "max".into(),
            Agg::First => "first".into(),
            Agg::Last => "last".into(),
            Agg::Quantile(q) => {
                let (whole, frac) = (q / 100, q % 100);
                match frac {
                    0 => format!("p{whole}"),
                    f if f % 10 == 0 => format!("p{whole}_{}", f / 10),
                    f => format!("p{whole}_{f:02}"),
                }
            }
        }
    }

    /// The quantile as a fraction (p99 → 0.99), for [`Agg::Quantile`].
    pub fn fraction(&self) -> Option<f64> {
        match self {
            Agg::Quantile(q) => Some(f64::from(*q) / 10_000.0),
            _ => None,
        }
    }
}

/// A comma-separated list of aggregates (`count,mean,var,p99`), in order, none twice.
///
/// ```
/// use pinflow::window::{parse_aggregates, Agg};
/// assert_eq!(parse_aggregates("count, p99"), Ok(vec![Agg::Count, Agg::Quantile(9900)]));
/// assert!(parse_aggregates("mean,mean").unwrap_err().contains("twice"));
/// ```
pub fn parse_aggregates(list: &str) -> Result<Vec<Agg>, String> {
    let mut out: Vec<Agg> = Vec::new();
    for item in list.split(',').map(str::trim) {
        let a = Agg::parse(item)?;
        if out.contains(&a) {
            return Err(format!("`{item}` is listed twice"));
        }
        out.push(a);
    }
    Ok(out)
}

/// `FIELD:AGG[,AGG...]`, the value of `--window-agg` (`latency_ms:count,mean,p99`).
///
/// ```
/// use pinflow::window::{parse_field_aggregates, Agg};
/// let (field, aggs) = parse_field_aggregates("latency_ms:count,p99.9").unwrap();
/// assert_eq!((field.as_str(), aggs), ("latency_ms", vec![Agg::Count, Agg::Quantile(9990)]));
/// assert!(parse_field_aggregates("latency_ms").unwrap_err().contains("FIELD:AGG"));
/// ```
pub fn parse_field_aggregates(s: &str) -> Result<(String, Vec<Agg>), String> {
    let (field, list) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}`: expected FIELD:AGG[,AGG...], e.g. latency_ms:mean,p99"))?;
    let field = field.trim();
    if field.is_empty() {
        return Err(format!("`{s}`: the field name is empty"));
    }
    Ok((field.to_string(), parse_aggregates(list)?))
}

impl std::fmt::Display for Agg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Agg::Quantile(_) => f.write_str(&self.suffix().replace('_', ".")),
            _ => f.write_str(&self.suffix()),
        }
    }
}

/// `99` → 9900, `99.9` → 9990, `99.99` → 9999; strictly between 0 and 100.
fn parse_percent(s: &str) -> Result<u16, String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (s.contains('.') && !digits(frac)) {
        return Err("expected p followed by a number, e.g. p99 or p99.9".into());
    }
    if frac.len() > 2 {
        return Err("at most two decimals (p99.99)".into());
    }
    let whole: u32 = whole.parse().map_err(|_| "number too large".to_string())?;
    let frac_val: u32 = if frac.is_empty() {
        0
    } else {
        let f: u32 = frac.parse().map_err(|_| "bad decimals".to_string())?;
        if frac.len() == 1 {
            f * 10
        } else {
            f
        }
    };
    let q = whole.saturating_mul(100).saturating_add(frac_val);
    if q == 0 {
        return Err("p0 is the minimum: use `min`".into());
    }
    if q >= 10_000 {
        return Err("a percentile is below 100; p100 is the maximum: use `max`".into());
    }
    Ok(q as u16)
}

impl WindowSpec {
    /// A tumbling window of `size` with the defaults: time field `ts`, no keys, lateness 0,
    /// no idle closing, `max_open` 1 000 000, [`Overflow::CloseOldest`], no aggregates (rows
    /// then carry only `count`).
    pub fn tumbling(size: Duration) -> WindowSpec {
        let us = duration_us(size);
        WindowSpec::hopping(size, Duration::from_micros(us as u64))
    }

    /// A hopping window of `size`, one starting every `hop`, with the defaults of
    /// [`WindowSpec::tumbling`].
    pub fn hopping(size: Duration, hop: Duration) -> WindowSpec {
        WindowSpec {
            size_us: duration_us(size),
            hop_us: duration_us(hop),
            time_field: DEFAULT_TIME_FIELD.into(),
            by: Vec::new(),
            lateness_us: 0,
            idle: None,
            max_open: DEFAULT_MAX_OPEN,
            overflow: Overflow::CloseOldest,
            aggregates: Vec::new(),
        }
    }

    /// The event-time column.
    pub fn with_time_field(mut self, field: impl Into<String>) -> WindowSpec {
        self.time_field = field.into();
        self
    }

    /// The key columns.
    pub fn with_by<S: Into<String>>(mut self, by: impl IntoIterator<Item = S>) -> WindowSpec {
        self.by = by.into_iter().map(Into::into).collect();
        self
    }

    /// How far the watermark trails the highest event time.
    pub fn with_lateness(mut self, lateness: Duration) -> WindowSpec {
        self.lateness_us = duration_us(lateness);
        self
    }

    /// Close windows after this much processing time without input.
    pub fn with_idle(mut self, idle: Duration) -> WindowSpec {
        self.idle = Some(idle);
        self
    }

    /// The cap on open (key, window) pairs and the policy past it.
    pub fn with_max_open(mut self, max_open: usize, overflow: Overflow) -> WindowSpec {
        self.max_open = max_open;
        self.overflow = overflow;
        self
    }

    /// Adds aggregates of `field` (appended to those of the field if it is already listed).
    pub fn with_aggregates(
        mut self,
        field: impl Into<String>,
        aggs: impl IntoIterator<Item = Agg>,
    ) -> WindowSpec {
        let field = field.into();
        let aggs: Vec<Agg> = aggs.into_iter().collect();
        match self.aggregates.iter_mut().find(|(f, _)| *f == field) {
            Some((_, list)) => list.extend(aggs),
            None => self.aggregates.push((field, aggs)),
        }
        self
    }

    /// Is it tumbling (hop = size)?
    pub fn is_tumbling(&self) -> bool {
        self.hop_us == self.size_us
    }

    /// The pane width, gcd(size, hop): state is kept per (key, pane).
    pub fn pane_us(&self) -> i64 {
        gcd(self.size_us, self.hop_us)
    }

    /// Checks the spec on its own (the input schema is checked by
    /// [`WindowOperator::new`](super::WindowOperator::new)): size and hop positive, hop at
    /// most size, lateness not negative, `max_open` at least the windows one record opens,
    /// idle not zero, names not empty, no aggregate twice, no two output columns of one name.
    pub fn validate(&self) -> Result<(), String> {
        if self.size_us <= 0 {
            return Err("the window size must be positive (e.g. 10s)".into());
        }
        if self.hop_us <= 0 {
            return Err("the window hop must be positive (e.g. 10s/5s)".into());
        }
        if self.hop_us > self.size_us {
            return Err(format!(
                "the hop ({}) is longer than the window ({}): records between windows would \
                 belong to none",
                fmt_us(self.hop_us),
                fmt_us(self.size_us)
            ));
        }
        // Years of windows are nonsense and keep the arithmetic far from i64's ends.
        const MAX_US: i64 = 100 * 366 * 86_400 * 1_000_000;
        if self.size_us > MAX_US || self.lateness_us > MAX_US {
            return Err("window size and lateness are limited to 100 years".into());
        }
        let per_record = self.size_us / self.hop_us + i64::from(self.size_us % self.hop_us != 0);
        if self.size_us / self.pane_us() > 100_000 {
            return Err(format!(
                "the window ({}) is more than 100000 panes of gcd(size, hop) = {}: choose a \
                 hop that divides the size",
                fmt_us(self.size_us),
                fmt_us(self.pane_us())
            ));
        }
        if self.lateness_us < 0 {
            return Err("the lateness must not be negative".into());
        }
        if self.idle == Some(Duration::ZERO) {
            return Err("the idle time must be positive (or not set)".into());
        }
        if (self.max_open as i64) < per_record {
            return Err(format!(
                "max_open ({}) is below {per_record}, the number of windows one record belongs to",
                self.max_open
            ));
        }
        if self.time_field.is_empty() {
            return Err("the time field's name is empty".into());
        }
        if let Some(b) = self.by.iter().find(|b| b.is_empty()) {
            return Err(format!("a `by` column's name is empty ({b:?})"));
        }
        if self.by.contains(&self.time_field) {
            return Err(format!(
                "`{}` is the time field and cannot be a key",
                self.time_field
            ));
        }
        let mut names: Vec<String> = vec!["window_start".into(), "window_end".into()];
        names.extend(self.by.iter().cloned());
        names.push("count".into());
        for (field, aggs) in &self.aggregates {
            if field.is_empty() {
                return Err("an aggregated field's name is empty".into());
            }
            if aggs.is_empty() {
                return Err(format!("`{field}` has no aggregates"));
            }
            for (i, a) in aggs.iter().enumerate() {
                if aggs[..i].contains(a) {
                    return Err(format!("`{field}`: `{a}` is listed twice"));
                }
                names.push(format!("{field}_{}", a.suffix()));
            }
        }
        if self.overflow == Overflow::CloseOldest {
            names.push("partial".into());
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("two output columns would be named `{n}`"));
            }
        }
        Ok(())
    }
}

/// `d` in µs, saturating.
fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs().max(1)
}

/// `10s`, `1500ms`, `250us`: a duration in words for messages.
pub(crate) fn fmt_us(us: i64) -> String {
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

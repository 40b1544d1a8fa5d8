//! [`DeadLetterTolerance`]: how many dead-lettered records a run may have and still succeed
//! (`writer.max_dead_letters`).

use std::fmt;
use std::str::FromStr;

/// How many records a run may dead-letter and still count as a success: a number of records
/// (`"5"`), or a percentage of the records found in delivered bodies (`"2.5%"`). The default,
/// `0`, lets none through: any dead-lettered record makes `pinflow` exit with status 4.
///
/// ```
/// use pinflow::config::DeadLetterTolerance;
///
/// let t: DeadLetterTolerance = "5".parse().unwrap();
/// assert!(t.allows(5, 10) && !t.allows(6, 1000));
/// let p: DeadLetterTolerance = "10%".parse().unwrap();
/// assert!(p.allows(10, 100) && !p.allows(11, 100));
/// assert!("100%".parse::<DeadLetterTolerance>().unwrap().allows(7, 7));
/// assert!("-1".parse::<DeadLetterTolerance>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeadLetterTolerance {
    /// At most this many records.
    Count(u64),
    /// At most this percentage (0 to 100) of the records found.
    Percent(f64),
}

impl Default for DeadLetterTolerance {
    fn default() -> Self {
        DeadLetterTolerance::Count(0)
    }
}

impl DeadLetterTolerance {
    /// Whether `dead` dead-lettered records out of `records` found are within the tolerance.
    pub fn allows(self, dead: u64, records: u64) -> bool {
        match self {
            DeadLetterTolerance::Count(n) => dead <= n,
            // In integers where exact: 100 * dead <= p * records, with p in hundredths of a
            // percent so that `2.5%` is not rounded.
            DeadLetterTolerance::Percent(p) => {
                let basis_points = (p * 100.0).round() as u128;
                u128::from(dead) * 10_000 <= basis_points * u128::from(records)
            }
        }
    }
}

impl FromStr for DeadLetterTolerance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "`{s}` is not a tolerance: a number of records (`5`) or a percentage of the \
                 records (`2.5%`, at most `100%`)"
            )
        };
        match t.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(bad());
                }
                Ok(DeadLetterTolerance::Percent(p))
            }
            None => t.parse().map(DeadLetterTolerance::Count).map_err(|_| bad()),
        }
    }
}

impl fmt::Display for DeadLetterTolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterTolerance::Count(n) => write!(f, "{n}"),
            DeadLetterTolerance::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages_parse_and_bound_the_dead_letters() {
        let t = |s: &str| s.parse::<DeadLetterTolerance>();
        assert_eq!(t("0"), Ok(DeadLetterTolerance::Count(0)));
        assert_eq!(t(" 12 "), Ok(DeadLetterTolerance::Count(12)));
        assert_eq!(t("2.5%"), Ok(DeadLetterTolerance::Percent(2.5)));
        for bad in ["", "-1", "x", "101%", "-1%", "5 %%", "NaN%"] {
            assert!(t(bad).is_err(), "{bad}");
        }
        let zero = DeadLetterTolerance::default();
        assert!(zero.allows(0, 0) && zero.allows(0, 9) && !zero.allows(1, 1_000_000));
        let p = t("2.5%").unwrap();
        assert!(p.allows(25, 1000) && !p.allows(26, 1000));
        assert!(t("100%").unwrap().allows(u64::MAX, u64::MAX));
        assert!(t("0%").unwrap().allows(0, 5) && !t("0%").unwrap().allows(1, 5));
        assert_eq!(p.to_string(), "2.5%");
    }
}

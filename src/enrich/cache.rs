//! The answers of one HTTP enricher, by lookup URL: quick_cache's sync cache (sharded, CLOCK-Pro
//! eviction, no thread of its own), bounded by `max_entries` and `max_bytes` through a
//! weighter, with the freshness rules on top: `ttl` for answers, `negative_ttl` for "no value"
//! (404, empty), and `max_stale` past either, during which an answer is still served while it
//! is fetched again or when fetching it again fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::Weighter;

/// One value of an answer, already of its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Absent or JSON null.
    Null,
    /// A `string` column's value.
    Str(Box<str>),
    /// An `int64` column's value.
    Int(i64),
    /// A `float64` column's value.
    Float(f64),
    /// A `bool` column's value.
    Bool(bool),
    /// A value that does not fit its column's type: null, and this reason in the row's error.
    Bad(Box<str>),
}

impl Scalar {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Scalar>()
            + match self {
                Scalar::Str(s) | Scalar::Bad(s) => s.len(),
                _ => 0,
            }
    }
}

/// An answer: one value per column (in the enricher's column order), or `None` for "no value"
/// (a 404 or an empty answer, or a key not in a table).
pub type Answer = Option<Arc<[Scalar]>>;

/// A cached answer and when it was stored.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The answer.
    pub answer: Answer,
    /// When it arrived.
    pub stored: Instant,
}

/// What the cache holds for a key, now.
#[derive(Debug, Clone)]
pub enum Cached {
    /// An answer within its `ttl` (or `negative_ttl`).
    Fresh(Answer),
    /// An answer past it, within `max_stale`: serve it, and fetch it again.
    Stale(Answer),
    /// Nothing usable.
    Miss,
}

/// Each entry weighs its bytes, but at least `max_bytes / max_entries`: so both bounds hold
/// with a single weight capacity (`max_bytes`). Without `max_bytes` every entry weighs 1.
#[derive(Debug, Clone, Copy)]
struct Weigh {
    floor: Option<u64>,
}

impl Weighter<String, Entry> for Weigh {
    fn weight(&self, key: &String, val: &Entry) -> u64 {
        match self.floor {
            None => 1,
            Some(floor) => {
                let bytes = key.len()
                    + std::mem::size_of::<Entry>()
                    + val
                        .answer
                        .as_ref()
                        .map_or(0, |a| a.iter().map(Scalar::bytes).sum());
                (bytes as u64).max(floor)
            }
        }
    }
}

/// The cache of one enricher.
pub struct Cache {
    inner: quick_cache::sync::Cache<String, Entry, Weigh>,
    ttl: Duration,
    negative_ttl: Duration,
    max_stale: Duration,
}

impl Cache {
    /// A cache of at most `max_entries` answers and, when given, `max_bytes` bytes.
    pub fn new(
        max_entries: usize,
        max_bytes: Option<u64>,
        ttl: Duration,
        negative_ttl: Duration,
        max_stale: Duration,
    ) -> Cache {
        let max_entries = max_entries.max(1);
        let (capacity, floor) = match max_bytes {
            Some(b) => (b.max(1), Some((b / max_entries as u64).max(1))),
            None => (max_entries as u64, None),
        };
        Cache {
            inner: quick_cache::sync::Cache::with_weighter(
                max_entries.min(1 << 16),
                capacity,
                Weigh { floor },
            ),
            ttl,
            negative_ttl,
            max_stale,
        }
    }

    /// What is cached for `key` at `now`.
    pub fn get(&self, key: &str, now: Instant) -> Cached {
        match self.inner.get(key) {
            None => Cached::Miss,
            Some(e) => {
                let age = now.saturating_duration_since(e.stored);
                let ttl = match e.answer {
                    Some(_) => self.ttl,
                    None => self.negative_ttl,
                };
                if age < ttl {
                    Cached::Fresh(e.answer)
                } else if age < ttl.saturating_add(self.max_stale) {
                    Cached::Stale(e.answer)
                } else {
                    Cached::Miss
                }
            }
        }
    }

    /// Stores an answer that arrived at `now`.
    pub fn put(&self, key: String, answer: Answer, now: Instant) {
        self.inner.insert(
            key,
            Entry {
                answer,
                stored: now,
            },
        );
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(s: &str) -> Answer {
        Some(Arc::from(vec![Scalar::Str(s.into())]))
    }

    #[test]
    fn freshness_follows_ttl_negative_ttl_and_max_stale() {
        let c = Cache::new(
            10,
            None,
            Duration::from_secs(10),
            Duration::from_secs(2),
            Duration::from_secs(5),
        );
        let t0 = Instant::now();
        c.put("a".into(), answer("x"), t0);
        c.put("gone".into(), None, t0);
        assert!(matches!(
            c.get("a", t0 + Duration::from_secs(9)),
            Cached::Fresh(Some(_))
        ));
        assert!(matches!(
            c.get("a", t0 + Duration::from_secs(11)),
            Cached::Stale(Some(_))
        ));
        assert!(matches!(
            c.get("a", t0 + Duration::from_secs(16)),
            Cached::Miss
        ));
        assert!(matches!(
            c.get("gone", t0 + Duration::from_secs(1)),
            Cached::Fresh(None)
        ));
        assert!(matches!(
            c.get("gone", t0 + Duration::from_secs(3)),
            Cached::Stale(None)
        ));
        assert!(matches!(c.get("nope", t0), Cached::Miss));
    }

    #[test]
    fn bounded_by_entries_and_by_bytes() {
        let long = Duration::from_secs(60);
        let by_count = Cache::new(50, None, long, long, long);
        let by_bytes = Cache::new(1_000_000, Some(20_000), long, long, long);
        let both = Cache::new(50, Some(1_000_000), long, long, long);
        let now = Instant::now();
        for i in 0..5_000 {
            let big = "v".repeat(1_000);
            by_count.put(format!("k{i}"), answer("x"), now);
            by_bytes.put(format!("k{i}"), answer(&big), now);
            both.put(format!("k{i}"), answer("x"), now);
        }
        assert!(by_count.len() <= 50, "{}", by_count.len());
        // Each entry weighs over 1,000 bytes: at most 20 fit in 20,000.
        assert!(by_bytes.len() <= 20, "{}", by_bytes.len());
        assert!(both.len() <= 50, "{}", both.len());
        assert!(!by_count.is_empty() && !by_bytes.is_empty());
    }
}

//! The workload the simulator serves: deterministic log records from a seed.
//!
//! Record `i` is a pure function of `(seed, i)`, so a test can recompute exactly what the
//! server sent. To keep the server cheap, the JSON of `distinct` record *variants* is rendered
//! once; serving record `i` copies variant `i % distinct` and patches two fixed-width slots,
//! the id (right-aligned in 20 bytes, padded with JSON whitespace) and the timestamp.

use crate::json::write_string;
use crate::time::{format_rfc3339_micros, RFC3339_MICROS_LEN};

/// The shape of the generated records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Seed of every generated value.
    pub seed: u64,
    /// Floats in each record's `values` (K).
    pub values_per_record: usize,
    /// Records per NDJSON or array page (P).
    pub page_size: u64,
    /// Distinct record bodies rendered up front; record `i` reuses variant `i % distinct`.
    pub distinct: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            seed: 42,
            values_per_record: 64,
            page_size: 1000,
            distinct: 1024,
        }
    }
}

/// One generated log record, as the simulator serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `id`.
    pub id: i64,
    /// `ts`, microseconds since the epoch, UTC.
    pub ts_micros: i64,
    /// `service`.
    pub service: String,
    /// `level`.
    pub level: &'static str,
    /// `host`.
    pub host: String,
    /// `latency_ms`.
    pub latency_ms: f64,
    /// `message`.
    pub message: String,
    /// `values`.
    pub values: Vec<f64>,
}

/// 2026-11-24T00:00:00Z: record `i` is stamped `i` milliseconds after it.
pub const BASE_TS_MICROS: i64 = 1_795_478_400_000_000;
const ID_SLOT: usize = 20;
const SERVICES: [&str; 8] = [
    "api-gw-1",
    "api-gw-2",
    "api-gw-3",
    "auth",
    "billing",
    "search",
    "ingest",
    "edge-proxy",
];
const MESSAGES: [&str; 6] = [
    "request served",
    "cache miss for key \"user:42\"",
    "upstream timeout; retrying",
    "payload 'naïve café' accepted ✓",
    "wrote C:\\logs\\app.log\tok",
    "connection reset by peer",
];

/// SplitMix64: small, fast, and the same on every platform.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Workload {
    /// The record with id `i` (ids start at 1).
    pub fn record(&self, i: u64) -> Record {
        let mut r = self.variant(i % self.distinct.max(1));
        r.id = i as i64;
        r.ts_micros = BASE_TS_MICROS + i as i64 * 1000;
        r
    }

    fn variant(&self, v: u64) -> Record {
        let mut state = mix(self.seed ^ mix(v));
        let mut next = || {
            state = mix(state);
            state
        };
        let service = SERVICES[(next() % SERVICES.len() as u64) as usize].to_string();
        let level = match next() % 20 {
            0..=3 => "DEBUG",
            4..=15 => "INFO",
            16..=18 => "WARN",
            _ => "ERROR",
        };
        let host = format!("node-{:02}", next() % 32);
        let latency_ms = (next() % 5_000_000) as f64 / 1000.0;
        let message = MESSAGES[(next() % MESSAGES.len() as u64) as usize].to_string();
        let base = (next() % 1000) as i64 * 1_000_000;
        let values = (0..self.values_per_record)
            .map(|_| (base + (next() % 200_000_000) as i64 - 100_000_000) as f64 / 1e6)
            .collect();
        Record {
            id: 0,
            ts_micros: 0,
            service,
            level,
            host,
            latency_ms,
            message,
            values,
        }
    }

    /// Records of page `j` (from 1): ids `(j−1)·P+1 ..= j·P`.
    pub fn page_ids(&self, j: u64) -> std::ops::RangeInclusive<u64> {
        let p = self.page_size.max(1);
        (j.saturating_sub(1)) * p + 1..=j * p
    }
}

/// Pre-rendered variants; see the module docs.
pub(crate) struct Renderer {
    templates: Vec<Template>,
}

struct Template {
    json: Vec<u8>,
    id_at: usize,
    ts_at: usize,
}

impl Renderer {
    pub(crate) fn new(w: &Workload) -> Renderer {
        let templates = (0..w.distinct.max(1))
            .map(|v| {
                let r = w.variant(v);
                let mut json = Vec::with_capacity(1200);
                json.extend_from_slice(b"{\"id\":");
                let id_at = json.len();
                json.extend_from_slice(&[b' '; ID_SLOT]);
                json.extend_from_slice(b",\"ts\":\"");
                let ts_at = json.len();
                json.extend_from_slice(&[b'0'; RFC3339_MICROS_LEN]);
                json.extend_from_slice(b"\",\"service\":");
                write_string(&mut json, &r.service);
                json.extend_from_slice(b",\"level\":");
                write_string(&mut json, r.level);
                json.extend_from_slice(b",\"host\":");
                write_string(&mut json, &r.host);
                json.extend_from_slice(
                    format!(",\"latency_ms\":{:?},\"message\":", r.latency_ms).as_bytes(),
                );
                write_string(&mut json, &r.message);
                json.extend_from_slice(b",\"values\":[");
                for (k, x) in r.values.iter().enumerate() {
                    if k > 0 {
                        json.push(b',');
                    }
                    // `{:?}` is the shortest text that parses back to the same f64.
                    json.extend_from_slice(format!("{x:?}").as_bytes());
                }
                json.extend_from_slice(b"]}");
                Template { json, id_at, ts_at }
            })
            .collect();
        Renderer { templates }
    }

    /// Appends record `i`'s JSON (no trailing newline) to `out`.
    pub(crate) fn render(&self, i: u64, out: &mut Vec<u8>) {
        let t = &self.templates[(i % self.templates.len() as u64) as usize];
        let start = out.len();
        out.extend_from_slice(&t.json);
        let mut digits = [0u8; ID_SLOT];
        let mut n = i;
        let mut k = ID_SLOT;
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let slot = &mut out[start + t.id_at..start + t.id_at + ID_SLOT];
        slot[k..].copy_from_slice(&digits[k..]);
        // The timestamp is formatted past the end, moved into its slot, and cut off again:
        // no allocation per record.
        let end = out.len();
        format_rfc3339_micros(BASE_TS_MICROS + i as i64 * 1000, out);
        debug_assert_eq!(out.len() - end, RFC3339_MICROS_LEN);
        out.copy_within(end..end + RFC3339_MICROS_LEN, start + t.ts_at);
        out.truncate(end);
    }

    /// Length of record `i`'s JSON.
    pub(crate) fn len_of(&self, i: u64) -> usize {
        self.templates[(i % self.templates.len() as u64) as usize]
            .json
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_and_distinct() {
        let w = Workload::default();
        assert_eq!(w.record(7), w.record(7));
        assert_ne!(w.record(7).values, w.record(8).values);
        assert_eq!(w.record(7).values, w.record(7 + w.distinct).values);
        assert_eq!(w.record(7).values.len(), 64);
        assert_eq!(w.page_ids(2), 1001..=2000);
    }

    #[test]
    fn rendered_json_carries_id_and_ts() {
        let w = Workload::default();
        let r = Renderer::new(&w);
        let mut out = Vec::new();
        r.render(123_456, &mut out);
        assert_eq!(out.len(), r.len_of(123_456));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("{\"id\":              123456,\"ts\":\"2026-11-24T00:02:03.456000Z\""),
            "{text}"
        );
        assert!((900..1400).contains(&text.len()), "{} bytes", text.len());
    }
}

//! Fault injection for the simulator: the ways real servers and networks break a response.
//!
//! See [`Faults`] for the modes. Selection is a pure function of `(seed, n)` where `n` counts
//! the workload requests the server has answered, so a run is reproducible.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::workload::mix;

/// Fault modes of the simulator, each with a rate: the probability, per response to a
/// workload route, that the response is broken that way.
///
/// Faults apply only to the workload routes (`/logs/{i}.json`, `/pages/{j}.ndjson`,
/// `/arrays/{j}.json`), never to canned routes ([`SimConfig::route`](super::SimConfig::route))
/// nor to `/status/{code}`. [`Faults::default()`] injects nothing, and a simulator without
/// faults behaves (and costs) exactly as before they existed.
///
/// For each response one number in `[0, 1)` is drawn from `(seed, n)`, `n` counting the
/// workload requests this server has answered, and the modes are tried in field order, each
/// taking its rate's share of `[0, 1)`; the response is correct when the draw lands past all
/// of them. Rates outside `[0, 1]` (or NaN) are clamped; when they add up to more than 1 they
/// are scaled down in proportion, so every response is faulted. With several connections the
/// order in which requests arrive decides which URL gets which fault; the sequence of faults
/// itself is the same on every run.
///
/// What each mode does, and what a correct client does about it. *Retry* means: the request is
/// not answered, send it again (on a fresh connection where this one was closed), and give up
/// with a reason once the attempts are spent; it must never deliver a body from these:
///
/// | field | the server | a correct client |
/// |---|---|---|
/// | `status_500` | answers `500 Internal Server Error` with a small JSON body; keeps the connection | retry (5xx is transient), or fail with reason "status 500" |
/// | `status_429` | answers `429 Too Many Requests` with `Retry-After`, alternately delta-seconds (`Retry-After: 1`) and an IMF-fixdate `retry_after_secs` from now (`Retry-After: Sun, 06 Nov 1994 08:49:37 GMT`, rounded up to the next second); keeps the connection | wait at least that long, then retry; or fail with reason "status 429" |
/// | `close_before_body` | sends the status line and headers of a 200 (with the real `Content-Length`, or chunked), then closes the connection (a plain close, FIN, not RST) | treat the early EOF as a connection error: retry |
/// | `close_mid_body` | sends a 200 with the real `Content-Length` and half the body, then closes | early EOF: retry; never deliver the half body |
/// | `stall` | reads the request and never answers; keeps the connection open (reading and discarding) until the client closes it | time out, close, retry |
/// | `truncated_chunked` | sends a chunked 200 whose single chunk is cut in half by a close: no chunk end, no terminating `0` chunk | early EOF: retry |
/// | `length_short` | declares a `Content-Length` that ends inside the first record, writes the whole body anyway, then closes | the declared body is a record prefix: it must end as a dead letter (it never parses), never as a row; bytes after a complete response with nothing asked for mean the connection is corrupt, and a stricter client fails or retries that response. Either way the records past the cut were never delivered: only a retry recovers them |
/// | `length_long` | declares a `Content-Length` larger than the body, writes the body, then closes | early EOF: retry |
/// | `garbage_status` | answers `HELLO WORLD\r\n\r\n` instead of a status line, then closes | not HTTP: a protocol error; retry or fail with a reason |
/// | `trickle` | a correct response, written a few bytes at a time (16 bytes every 2 ms; a 900-byte record takes about 120 ms, a large page about 130 ms in bigger steps), without blocking the server | read it all: it is a valid response (only a too-short timeout fails it) |
///
/// The simulator tells a test's ledger what it served: with any fault enabled,
/// [`SimStats::served_ok_ids`](super::SimStats::served_ok_ids) lists the record ids of every
/// complete, correct 200 it wrote to a socket (trickled ones included once their last byte is
/// written), and [`SimStats::faults_injected`](super::SimStats::faults_injected) counts the
/// faults by mode name ([`FaultMode::name`]).
///
/// ```
/// use pinflow::sim::{FaultMode, Faults, SimConfig};
/// let cfg = SimConfig {
///     faults: Faults { seed: 7, status_500: 0.05, stall: 0.01, ..Faults::default() }
///         .with(FaultMode::Trickle, 0.02),
///     ..SimConfig::default()
/// };
/// assert!(cfg.faults.enabled());
/// assert!(!Faults::default().enabled());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Seed of the fault draws.
    pub seed: u64,
    /// Rate of `500 Internal Server Error` answers.
    pub status_500: f64,
    /// Rate of `429 Too Many Requests` answers with `Retry-After`.
    pub status_429: f64,
    /// The delay the 429 answers ask for, in seconds (default 1).
    pub retry_after_secs: u64,
    /// Rate of 200 heads followed by a close, no body.
    pub close_before_body: f64,
    /// Rate of 200 heads and half the body, then a close.
    pub close_mid_body: f64,
    /// Rate of requests never answered (connection kept open).
    pub stall: f64,
    /// Rate of chunked bodies closed in the middle of a chunk.
    pub truncated_chunked: f64,
    /// Rate of `Content-Length` shorter than the bytes sent (then a close).
    pub length_short: f64,
    /// Rate of `Content-Length` longer than the bytes sent (then a close).
    pub length_long: f64,
    /// Rate of `HELLO WORLD` instead of a status line (then a close).
    pub garbage_status: f64,
    /// Rate of correct responses written a few bytes at a time.
    pub trickle: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            status_500: 0.0,
            status_429: 0.0,
            retry_after_secs: 1,
            close_before_body: 0.0,
            close_mid_body: 0.0,
            stall: 0.0,
            truncated_chunked: 0.0,
            length_short: 0.0,
            length_long: 0.0,
            garbage_status: 0.0,
            trickle: 0.0,
        }
    }
}

/// One fault mode; see [`Faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultMode {
    /// [`Faults::status_500`].
    Status500,
    /// [`Faults::status_429`].
    Status429,
    /// [`Faults::close_before_body`].
    CloseBeforeBody,
    /// [`Faults::close_mid_body`].
    CloseMidBody,
    /// [`Faults::stall`].
    Stall,
    /// [`Faults::truncated_chunked`].
    TruncatedChunked,
    /// [`Faults::length_short`].
    LengthShort,
    /// [`Faults::length_long`].
    LengthLong,
    /// [`Faults::garbage_status`].
    GarbageStatus,
    /// [`Faults::trickle`].
    Trickle,
}

impl FaultMode {
    /// Every mode, in the order the draw tries them (the field order of [`Faults`]).
    pub const ALL: [FaultMode; 10] = [
        FaultMode::Status500,
        FaultMode::Status429,
        FaultMode::CloseBeforeBody,
        FaultMode::CloseMidBody,
        FaultMode::Stall,
        FaultMode::TruncatedChunked,
        FaultMode::LengthShort,
        FaultMode::LengthLong,
        FaultMode::GarbageStatus,
        FaultMode::Trickle,
    ];

    /// The mode's name: the name of its field in [`Faults`] (and its key in
    /// [`SimStats::faults_injected`](super::SimStats::faults_injected)).
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::Status500 => "status_500",
            FaultMode::Status429 => "status_429",
            FaultMode::CloseBeforeBody => "close_before_body",
            FaultMode::CloseMidBody => "close_mid_body",
            FaultMode::Stall => "stall",
            FaultMode::TruncatedChunked => "truncated_chunked",
            FaultMode::LengthShort => "length_short",
            FaultMode::LengthLong => "length_long",
            FaultMode::GarbageStatus => "garbage_status",
            FaultMode::Trickle => "trickle",
        }
    }
}

impl Faults {
    /// The rate of `mode`.
    pub fn rate(&self, mode: FaultMode) -> f64 {
        match mode {
            FaultMode::Status500 => self.status_500,
            FaultMode::Status429 => self.status_429,
            FaultMode::CloseBeforeBody => self.close_before_body,
            FaultMode::CloseMidBody => self.close_mid_body,
            FaultMode::Stall => self.stall,
            FaultMode::TruncatedChunked => self.truncated_chunked,
            FaultMode::LengthShort => self.length_short,
            FaultMode::LengthLong => self.length_long,
            FaultMode::GarbageStatus => self.garbage_status,
            FaultMode::Trickle => self.trickle,
        }
    }

    /// These faults with `mode` at `rate`.
    pub fn with(mut self, mode: FaultMode, rate: f64) -> Faults {
        *match mode {
            FaultMode::Status500 => &mut self.status_500,
            FaultMode::Status429 => &mut self.status_429,
            FaultMode::CloseBeforeBody => &mut self.close_before_body,
            FaultMode::CloseMidBody => &mut self.close_mid_body,
            FaultMode::Stall => &mut self.stall,
            FaultMode::TruncatedChunked => &mut self.truncated_chunked,
            FaultMode::LengthShort => &mut self.length_short,
            FaultMode::LengthLong => &mut self.length_long,
            FaultMode::GarbageStatus => &mut self.garbage_status,
            FaultMode::Trickle => &mut self.trickle,
        } = rate;
        self
    }

    /// Whether any mode has a rate above 0: only then does the simulator draw faults and keep
    /// its ledger of served ids.
    pub fn enabled(&self) -> bool {
        FaultMode::ALL.iter().any(|&m| clamp(self.rate(m)) > 0.0)
    }
}

fn clamp(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// The server's fault state: the draw, and what it injected.
pub(super) struct Injector {
    /// Whether faults are on at all; when off nothing below is used.
    pub(super) on: bool,
    /// Upper bounds of each mode's share of `[0, 1)`, in [`FaultMode::ALL`] order.
    bounds: [f64; FaultMode::ALL.len()],
    seed: u64,
    /// Workload requests drawn for so far.
    seq: u64,
    /// 429s sent so far (even: delta-seconds, odd: HTTP-date).
    n429: u64,
    retry_after_secs: u64,
    /// Injections per mode, in [`FaultMode::ALL`] order.
    pub(super) injected: [u64; FaultMode::ALL.len()],
}

impl Injector {
    pub(super) fn new(f: &Faults) -> Injector {
        let total: f64 = FaultMode::ALL.iter().map(|&m| clamp(f.rate(m))).sum();
        let scale = if total > 1.0 { 1.0 / total } else { 1.0 };
        let mut bounds = [0.0; FaultMode::ALL.len()];
        let mut acc = 0.0;
        for (b, &m) in bounds.iter_mut().zip(FaultMode::ALL.iter()) {
            acc += clamp(f.rate(m)) * scale;
            *b = acc;
        }
        Injector {
            on: total > 0.0,
            bounds,
            seed: f.seed,
            seq: 0,
            n429: 0,
            retry_after_secs: f.retry_after_secs,
            injected: [0; FaultMode::ALL.len()],
        }
    }

    /// Draws for the next workload response: the fault to inject, if any.
    pub(super) fn draw(&mut self) -> Option<FaultMode> {
        if !self.on {
            return None;
        }
        let n = self.seq;
        self.seq += 1;
        // 53 random bits → a uniform f64 in [0, 1).
        let u = (mix(self.seed ^ mix(n)) >> 11) as f64 / (1u64 << 53) as f64;
        let k = self.bounds.iter().position(|&b| u < b)?;
        self.injected[k] += 1;
        Some(FaultMode::ALL[k])
    }

    /// Appends the `Retry-After` header line of the next 429 to `out`.
    pub(super) fn retry_after(&mut self, out: &mut Vec<u8>) {
        let n = self.n429;
        self.n429 += 1;
        let secs = self.retry_after_secs;
        if n.is_multiple_of(2) {
            let _ = write!(out, "Retry-After: {secs}\r\n");
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            // Rounded up, so the date is never less than `secs` away.
            let at = now.as_secs() + u64::from(now.subsec_nanos() > 0) + secs;
            out.extend_from_slice(b"Retry-After: ");
            out.extend_from_slice(crate::time::format_http_date(at as i64).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_and_follow_the_rates() {
        let f = Faults {
            seed: 9,
            status_500: 0.25,
            stall: 0.25,
            ..Faults::default()
        };
        let (mut a, mut b) = (Injector::new(&f), Injector::new(&f));
        let seq: Vec<_> = (0..4000).map(|_| a.draw()).collect();
        assert!(seq
            .iter()
            .zip((0..4000).map(|_| b.draw()))
            .all(|(x, y)| *x == y));
        let count = |m| seq.iter().filter(|x| **x == Some(m)).count();
        for m in [FaultMode::Status500, FaultMode::Stall] {
            assert!((800..1200).contains(&count(m)), "{m:?}: {}", count(m));
        }
        assert_eq!(a.injected[0] as usize, count(FaultMode::Status500));
        assert_eq!(count(FaultMode::Trickle), 0);
        let other = Injector::new(&Faults { seed: 10, ..f });
        let mut other = other;
        assert!((0..4000).any(|i| other.draw() != seq[i]));

        // Rates adding up to more than 1 are scaled: every response is faulted.
        let mut all = Injector::new(&Faults {
            status_500: 1.0,
            trickle: 1.0,
            ..Faults::default()
        });
        assert!((0..1000).all(|_| all.draw().is_some()));
        assert!(all.injected[0] > 400 && all.injected[9] > 400);
        // Nothing enabled: nothing drawn.
        let mut none = Injector::new(&Faults::default());
        assert!(!none.on && none.draw().is_none());
        assert!(!Faults::default().with(FaultMode::Stall, f64::NAN).enabled());
    }
}

//! Values as text: durations, byte sizes, listen addresses, shards, and the named choices (compression,
//! fetch engine, log format, progress).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// One shard of a work source: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This instance's shard, from 0.
    pub index: u64,
    /// How many instances share the source.
    pub count: u64,
}

impl Shard {
    /// Whether `url` belongs to this shard: FNV-1a 64 of its bytes, modulo `count`. Stable
    /// across runs, machines and versions, so N instances never overlap nor miss an item.
    pub fn keeps(&self, url: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in url.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("`{s}` is not K/N with K in 0..N (e.g. 0/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<u64>().map_err(|_| bad())?,
            n.trim().parse::<u64>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Which fetcher runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchEngine {
    /// One mio event loop multiplexing every connection (the default).
    #[default]
    Mio,
    /// A pool of `connections_per_host` threads doing blocking ureq requests: for HTTP
    /// proxies (`HTTP_PROXY`), and as the benchmark's baseline. No continuous mode.
    Ureq,
}

impl std::str::FromStr for FetchEngine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mio" => Ok(FetchEngine::Mio),
            "ureq" => Ok(FetchEngine::Ureq),
            _ => Err(format!("`{s}` is not mio or ureq")),
        }
    }
}

impl fmt::Display for FetchEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FetchEngine::Mio => "mio",
            FetchEngine::Ureq => "ureq",
        })
    }
}

/// When the progress line is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Progress {
    /// Only when standard error is a terminal (the default).
    #[default]
    Auto,
    /// Always, even into a file or pipe.
    Always,
    /// Never.
    Never,
}

/// Parquet column compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy (the default: fast, and what most readers expect).
    Snappy,
    /// Zstandard at the given level (1..=22).
    Zstd(i32),
    /// LZ4 (Parquet's `LZ4_RAW` codec): the fastest to decompress, larger than zstd.
    Lz4,
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(
                "compression",
                format!("`{s}` is not none, snappy, lz4, zstd or zstd:LEVEL"),
            )
        };
        match s {
            "none" | "uncompressed" => Ok(Compression::None),
            "snappy" => Ok(Compression::Snappy),
            "lz4" | "lz4_raw" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd(3)),
            _ => match s.strip_prefix("zstd:") {
                Some(level) => match level.parse::<i32>() {
                    Ok(l) if (1..=22).contains(&l) => Ok(Compression::Zstd(l)),
                    _ => Err(bad()),
                },
                None => Err(bad()),
            },
        }
    }
}

/// `none`, `snappy`, `lz4` or `zstd:LEVEL`: what [`FromStr`](std::str::FromStr) reads back.
impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Snappy => f.write_str("snappy"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
            Compression::Lz4 => f.write_str("lz4"),
        }
    }
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<Compression>()
            .map_err(|_| serde::de::Error::custom(compression_error(&s)))
    }
}

pub(super) fn compression_error(s: &str) -> String {
    format!("`{s}` is not none, snappy, lz4, zstd or zstd:LEVEL (LEVEL 1..=22)")
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is not text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl std::str::FromStr for Progress {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Progress::Auto),
            "always" => Ok(Progress::Always),
            "never" => Ok(Progress::Never),
            _ => Err(format!("`{s}` is not auto, always or never")),
        }
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Progress::Auto => "auto",
            Progress::Always => "always",
            Progress::Never => "never",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Durations and addresses as text.

/// Reads a duration written with a unit: `"250us"`, `"2ms"`, `"1.5s"`, `"30s"`, `"5m"`,
/// `"1h"`; parts add up (`"1h30m"`). Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`.
/// A bare `"0"` is zero; any other number needs a unit.
///
/// ```
/// use std::time::Duration;
/// use pinflow::config::parse_duration;
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse_duration("30").is_err());
/// ```
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. \"30s\"".to_string());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad =
        |why: &str| format!("`{s}` is not a duration: {why} (e.g. \"250us\", \"1.5s\", \"5m\")");
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        rest = tail;
        if num.is_empty() {
            return Err(bad("a unit without a number"));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "" => return Err(bad("a number needs a unit: ns, us, ms, s, m, h or d")),
            _ => return Err(bad(&format!("unknown unit `{unit}`"))),
        };
        let part = scaled(num, scale, 18).map_err(|e| {
            bad(match e {
                Scaled::Malformed => "malformed number",
                Scaled::TooLarge => "too long",
                Scaled::TooManyDecimals => "too many decimals",
                Scaled::NotWhole => "finer than a nanosecond",
            })
        })?;
        total = total.checked_add(part).ok_or_else(|| bad("too long"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("too long"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Writes a duration the way [`parse_duration`] reads it, in the largest unit that keeps it
/// exact: `30s`, `2ms`, `1500ms`, `5m`, `1h`, `0s`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(pinflow::config::format_duration(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(pinflow::config::format_duration(Duration::from_secs(3600)), "1h");
/// ```
pub fn format_duration(d: Duration) -> String {
    let n = d.as_nanos();
    if n == 0 {
        return "0s".to_string();
    }
    for (unit, scale) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if n.is_multiple_of(scale) {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n}ns")
}

/// Reads a byte size: a plain number of bytes (`1048576`), or a number with a unit: IEC
/// `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), SI `kB`/`KB`, `MB`, `GB`, `TB` (powers of
/// 1000, as disk makers and `ls --si` count), or `B`. Units are case-insensitive; a space may
/// separate them from the number, and a fraction is allowed where the size comes out whole
/// (`1.5KiB`). A bare `K`, `M`, `G` or `T` is refused with a hint: tools disagree on
/// whether it means 1000 or 1024.
///
/// ```
/// use pinflow::config::parse_bytes;
/// assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
/// assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
/// assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
/// assert_eq!(parse_bytes("4096"), Ok(4096));
/// assert!(parse_bytes("64M").unwrap_err().contains("64MiB"));
/// ```
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let text = s.trim();
    let bad = |why: &str| {
        format!("`{s}` is not a byte size: {why} (e.g. \"64MiB\", \"512KiB\", \"1GB\", \"4096\")")
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let unit = unit.trim_start();
    if num.is_empty() {
        return Err(bad(if text.starts_with('-') {
            "must not be negative"
        } else {
            "no number"
        }));
    }
    let scale: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "m" | "g" | "t" => {
            let u = unit.to_ascii_uppercase();
            return Err(bad(&format!(
                "`{unit}` is ambiguous; write {num}{u}iB (powers of 1024) or {num}{u}B (powers of 1000)"
            )));
        }
        _ => return Err(bad(&format!("unknown unit `{unit}`"))),
    };
    let total = scaled(num, scale, 12).map_err(|e| {
        bad(match e {
            Scaled::Malformed => "malformed number",
            Scaled::TooLarge => "too large",
            Scaled::TooManyDecimals => "too many decimals",
            Scaled::NotWhole => "not a whole number of bytes",
        })
    })?;
    u64::try_from(total).map_err(|_| bad("too large"))
}

/// Why [`scaled`] refused a number.
enum Scaled {
    Malformed,
    TooLarge,
    TooManyDecimals,
    NotWhole,
}

/// `num` (digits with at most one `.`, at most `max_decimals` after it) times `scale`, exactly:
/// in whole smallest units (nanoseconds, bytes), or why not.
fn scaled(num: &str, scale: u128, max_decimals: usize) -> std::result::Result<u128, Scaled> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(Scaled::Malformed);
    }
    let int: u128 = match int.is_empty() {
        true => 0,
        false => int.parse().map_err(|_| Scaled::TooLarge)?,
    };
    let whole = int.checked_mul(scale).ok_or(Scaled::TooLarge)?;
    if frac.is_empty() {
        return Ok(whole);
    }
    if frac.len() > max_decimals {
        return Err(Scaled::TooManyDecimals);
    }
    let digits: u128 = frac.parse().map_err(|_| Scaled::Malformed)?;
    let denom = 10u128.pow(frac.len() as u32);
    let parts = digits.checked_mul(scale).ok_or(Scaled::TooLarge)?;
    if !parts.is_multiple_of(denom) {
        return Err(Scaled::NotWhole);
    }
    whole.checked_add(parts / denom).ok_or(Scaled::TooLarge)
}

/// Writes a byte size the way [`parse_bytes`] reads it, in the largest IEC unit that keeps it
/// exact: `64MiB`, `1536KiB`, `1000`.
///
/// ```
/// assert_eq!(pinflow::config::format_bytes(64 << 20), "64MiB");
/// assert_eq!(pinflow::config::format_bytes(1000), "1000");
/// ```
pub fn format_bytes(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n != 0 && n.trailing_zeros() >= shift {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Reads a listen address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT`, or a bare `PORT`,
/// which means `127.0.0.1:PORT` (loopback unless said otherwise).
///
/// ```
/// let a = pinflow::config::parse_listen_addr("9100").unwrap();
/// assert_eq!(a.to_string(), "127.0.0.1:9100");
/// assert_eq!(pinflow::config::parse_listen_addr("0.0.0.0:9100").unwrap().port(), 9100);
/// ```
pub fn parse_listen_addr(s: &str) -> std::result::Result<SocketAddr, String> {
    let s = s.trim();
    let loopback = |port: &str| {
        port.parse::<u16>()
            .ok()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(a) = loopback(s) {
            return Ok(a);
        }
    } else if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    } else if let Some(a) = s.strip_prefix("localhost:").and_then(loopback) {
        return Ok(a);
    }
    Err(format!(
        "`{s}` is not an address to listen on: PORT, IP:PORT or localhost:PORT"
    ))
}

pub(super) mod duration_serde {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

pub(super) mod opt_duration_serde {
    use super::*;

    pub fn serialize<S: Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => parse_duration(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

pub(super) mod opt_shard_serde {
    use super::*;

    pub fn serialize<S: Serializer>(
        v: &Option<Shard>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Shard>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

pub(super) mod opt_addr_serde {
    use super::*;

    pub fn serialize<S: Serializer>(
        a: &Option<SocketAddr>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_some(&a.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<SocketAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => parse_listen_addr(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

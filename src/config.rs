//! One typed configuration for a run. The CLI fills it from flags; library users build it in
//! code; both go through [`Config::validate`] before anything starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Everything a pipeline run needs besides its work source.
///
/// ```
/// let mut cfg = pinflow::Config::new("out.parquet");
/// cfg.queue_capacity = 4;
/// cfg.threads.parse = Some(2);
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The Parquet file to produce. It appears under this name only once complete.
    pub out: PathBuf,
    /// Where rejected records and failed requests go (NDJSON); default `<out>.deadletter.ndjson`.
    pub dead_letter: Option<PathBuf>,
    /// Capacity, in batches, of each queue between stages. Small is enough: batches are large.
    pub queue_capacity: usize,
    /// How many threads of each role, and where they run.
    pub threads: ThreadConfig,
    /// The HTTP fetcher.
    pub fetch: FetchConfig,
    /// The Parquet writer.
    pub writer: WriterConfig,
}

/// Threads per role and pinning. `None` means "derive from the available cores".
#[derive(Debug, Clone)]
pub struct ThreadConfig {
    /// Parse threads (simd-json into Arrow columns).
    pub parse: Option<usize>,
    /// Compute threads (statistics kernels).
    pub compute: Option<usize>,
    /// Restrict the plan to these CPU ids (default: every core this process may use).
    pub cpus: Option<Vec<usize>>,
    /// Pin threads to cores at all.
    pub pin: bool,
}

/// The mio fetcher's limits and batching.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Keep-alive connections opened per host (`host:port`).
    pub connections_per_host: usize,
    /// Requests admitted from the source but not yet finished, across all hosts. Bounds memory.
    pub max_in_flight: usize,
    /// Attempts per request for connection errors and timeouts (the first try included).
    pub max_attempts: u32,
    /// Give up on a TCP connect after this long.
    pub connect_timeout: Duration,
    /// Give up on a request (send to last body byte) after this long.
    pub request_timeout: Duration,
    /// A larger response body fails its request instead of exhausting memory.
    pub max_body_bytes: usize,
    /// A batch of bodies is handed to the parse threads when it holds this many responses...
    pub batch_max_items: usize,
    /// ...or this many body bytes...
    pub batch_max_bytes: usize,
    /// ...or when its oldest body has waited this long.
    pub batch_max_delay: Duration,
}

/// Parquet output settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Rows per row group (a row group is written as soon as it is full).
    pub row_group_rows: usize,
    /// Column compression.
    pub compression: Compression,
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
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(
                "compression",
                format!("`{s}` is not none, snappy, zstd or zstd:LEVEL"),
            )
        };
        match s {
            "none" | "uncompressed" => Ok(Compression::None),
            "snappy" => Ok(Compression::Snappy),
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

impl Default for ThreadConfig {
    fn default() -> Self {
        ThreadConfig {
            parse: None,
            compute: None,
            cpus: None,
            pin: true,
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connections_per_host: 32,
            max_in_flight: 512,
            max_attempts: 3,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 64 << 20,
            batch_max_items: 256,
            batch_max_bytes: 1 << 20,
            batch_max_delay: Duration::from_millis(2),
        }
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            row_group_rows: 64 * 1024,
            compression: Compression::Snappy,
        }
    }
}

impl Config {
    /// Defaults for everything, writing to `out`.
    pub fn new(out: impl Into<PathBuf>) -> Config {
        Config {
            out: out.into(),
            dead_letter: None,
            queue_capacity: 8,
            threads: ThreadConfig::default(),
            fetch: FetchConfig::default(),
            writer: WriterConfig::default(),
        }
    }

    /// The dead-letter path: the configured one, or `<out>.deadletter.ndjson`.
    pub fn dead_letter_path(&self) -> PathBuf {
        match &self.dead_letter {
            Some(p) => p.clone(),
            None => with_suffix(&self.out, ".deadletter.ndjson"),
        }
    }

    /// The most batches that can be alive in the pipeline at once: one per queue slot plus one
    /// held by each thread. Memory is bounded by this times the batch size limits.
    pub fn max_live_batches(&self, parse_threads: usize, compute_threads: usize) -> usize {
        // Three queues (fetch→parse, parse→compute, compute→write); the fetcher holds one
        // batch it is filling and one it is sending; every other thread holds one.
        3 * self.queue_capacity + 2 + parse_threads + compute_threads + 1
    }

    /// Rejects values that cannot work, naming the option.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("queue_capacity", self.queue_capacity),
            ("connections_per_host", self.fetch.connections_per_host),
            ("max_in_flight", self.fetch.max_in_flight),
            ("batch_max_items", self.fetch.batch_max_items),
            ("batch_max_bytes", self.fetch.batch_max_bytes),
            ("max_body_bytes", self.fetch.max_body_bytes),
            ("row_group_rows", self.writer.row_group_rows),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::config(name, "must be at least 1"));
            }
        }
        if self.fetch.max_attempts == 0 {
            return Err(Error::config("max_attempts", "must be at least 1"));
        }
        for (name, n) in [
            ("parse threads", self.threads.parse),
            ("compute threads", self.threads.compute),
        ] {
            if n == Some(0) {
                return Err(Error::config(name, "must be at least 1"));
            }
        }
        if self.out.as_os_str().is_empty() || self.out.file_name().is_none() {
            return Err(Error::config(
                "out",
                format!("`{}` is not a file path", self.out.display()),
            ));
        }
        if let Some(cpus) = &self.threads.cpus {
            if cpus.is_empty() {
                return Err(Error::config("cpus", "the list is empty"));
            }
        }
        Ok(())
    }
}

/// `dir/name.parquet` + `.x` → `dir/name.parquet.x`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_names() {
        assert_eq!(
            "snappy".parse::<Compression>().unwrap(),
            Compression::Snappy
        );
        assert_eq!(
            "zstd:9".parse::<Compression>().unwrap(),
            Compression::Zstd(9)
        );
        assert!("zstd:99".parse::<Compression>().is_err());
        assert!("lzo".parse::<Compression>().is_err());
    }

    #[test]
    fn zero_values_are_rejected_by_name() {
        let mut c = Config::new("x.parquet");
        c.queue_capacity = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("queue_capacity"), "{e}");
        let mut c = Config::new("x.parquet");
        c.threads.parse = Some(0);
        assert!(c.validate().is_err());
    }

    #[test]
    fn dead_letter_defaults_beside_the_output() {
        let c = Config::new("/tmp/a/out.parquet");
        assert_eq!(
            c.dead_letter_path(),
            PathBuf::from("/tmp/a/out.parquet.deadletter.ndjson")
        );
    }
}

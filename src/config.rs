//! One typed configuration for a run, and where its values come from.
//!
//! Library users build a [`Config`] in code; the `pinflow` command fills one from layers, each
//! overriding the one before: built-in defaults ([`Config::default`]) < a TOML file
//! ([`ConfigLayer::from_toml`]) < `PINFLOW_*` environment variables ([`ConfigLayer::from_env`])
//! < command-line flags. Both go through [`Config::validate`] before anything starts.
//!
//! Every option has a dotted key path (`queue_capacity`, `fetch.max_in_flight`, ...): the TOML
//! key, and, upper-cased with `PINFLOW_` in front and `_` for `.`, the environment variable
//! (`PINFLOW_FETCH_MAX_IN_FLIGHT`). Unknown keys and variables are errors, never ignored.
//! [`Config::default_toml`] prints every key with its default and what it does.
//!
//! ```
//! use pinflow::config::{Config, ConfigLayer};
//!
//! let file = ConfigLayer::from_toml(
//!     "pinflow.toml",
//!     "queue_capacity = 4\n[fetch]\nrequest_timeout = \"10s\"\n",
//! )
//! .unwrap();
//! let env = ConfigLayer::from_env([("PINFLOW_QUEUE_CAPACITY".to_string(), "16".to_string())])
//!     .unwrap();
//! let cfg = Config::from_layers(&[file, env]).unwrap();
//! assert_eq!(cfg.queue_capacity, 16); // the environment overrides the file
//! assert_eq!(cfg.fetch.request_timeout, std::time::Duration::from_secs(10));
//! assert!(cfg.validate().is_ok());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::schema::{FieldSpec, Layout, StatSpec, Unknown};

/// Everything a pipeline run needs besides its work source.
///
/// ```
/// let mut cfg = pinflow::Config::new("out.parquet");
/// cfg.queue_capacity = 4;
/// cfg.threads.parse = Some(2);
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The Parquet file to produce. It appears under this name only once complete.
    pub out: PathBuf,
    /// Where rejected records and failed requests go (NDJSON); default `<out>.deadletter.ndjson`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<PathBuf>,
    /// The work source `pinflow run` uses when `--urls` is not given: a URL file, `-` for
    /// standard input, or a template (see [`Source::from_arg`](crate::Source::from_arg)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Local files instead of URLs (`pinflow run --files`): paths, directories (their `.json`,
    /// `.ndjson` and `.jsonl` files) or glob patterns, and `-` for standard input. See
    /// [`Source::files`](crate::Source::files).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Continuous mode: poll the sources again every this long until signalled.
    /// `None` (the default) runs once.
    #[serde(with = "opt_duration_serde", skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// Capacity, in batches, of each queue between stages. Small is enough: batches are large.
    /// The default, 4, bounds what piles up while the writer closes a row group (three
    /// queues' worth plus one per thread, see [`Config::max_live_batches`]); with
    /// many parse threads a deeper queue can keep them all fed.
    pub queue_capacity: usize,
    /// How many threads of each role, and where they run.
    pub threads: ThreadConfig,
    /// The HTTP fetcher.
    pub fetch: FetchConfig,
    /// The Parquet writer.
    pub writer: WriterConfig,
    /// The columns and statistics written.
    pub schema: SchemaConfig,
    /// The Prometheus metrics and health endpoint.
    pub metrics: MetricsConfig,
    /// Logging and the progress line.
    pub log: LogConfig,
}

/// Threads per role and pinning. `None` means "derive from the available cores".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThreadConfig {
    /// Parse threads (simd-json into Arrow columns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse: Option<usize>,
    /// Compute threads (statistics kernels, user transforms). 0: none, each parse thread
    /// computes the batches it parsed (the default below four worker cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<usize>,
    /// Restrict the plan to these CPU ids (default: every core this process may use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<usize>>,
    /// Pin threads to cores, where each thread gets a core of its own.
    pub pin: bool,
    /// Pin even when threads must share cores (more threads than cores). Off by default: a
    /// pinned thread sharing its core cannot move to an idle one (see [`crate::plan`]).
    pub pin_shared: bool,
}

/// The mio fetcher's limits and batching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Keep-alive connections opened per host (`host:port`).
    pub connections_per_host: usize,
    /// Requests admitted from the source but not yet finished, across all hosts. Bounds memory.
    pub max_in_flight: usize,
    /// Attempts per request for connection errors and timeouts (the first try included).
    pub max_attempts: u32,
    /// Give up on a TCP connect after this long.
    #[serde(with = "duration_serde")]
    pub connect_timeout: Duration,
    /// Give up on an attempt (request sent to last body byte) after this long.
    #[serde(with = "duration_serde")]
    pub request_timeout: Duration,
    /// Give up on an attempt when no response byte arrived this long after the request.
    #[serde(with = "duration_serde")]
    pub first_byte_timeout: Duration,
    /// Give up on an attempt when a response stops for this long between two reads (a
    /// trickling or stalled server).
    #[serde(with = "duration_serde")]
    pub idle_timeout: Duration,
    /// Give up on a request, all attempts and waits between them together, after this long.
    #[serde(with = "duration_serde")]
    pub total_timeout: Duration,
    /// The longest `Retry-After` honoured; a server asking for more is retried after this.
    #[serde(with = "duration_serde")]
    pub max_retry_after: Duration,
    /// Keep only the work items of one shard, `K/N` (K in 0..N): N instances with the same
    /// source and K = 0..N-1 split it with no coordination (stable FNV-1a hash of the URL).
    #[serde(with = "opt_shard_serde", skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Extra request headers, each `Name: value`. A value may contain `${env:VAR}` (the
    /// environment variable) or `${file:PATH}` (the file's content, trimmed), resolved when the
    /// run starts, so secrets such as tokens stay out of the configuration and the command line.
    pub headers: Vec<String>,
    /// Pagination: a page whose `Link` header has `rel="next"` makes the next page a work item.
    pub follow_link_next: bool,
    /// Pages followed from one source URL at most, by `Link` or by cursor (a guard against
    /// pagination loops).
    pub max_link_pages: u32,
    /// The body is a JSON object (an envelope such as `{"data": [...], "next": "..."}`) whose
    /// field at this dotted path holds the array of records. `None`: the body is a record, an
    /// array of records, or NDJSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_field: Option<String>,
    /// Cursor pagination: the dotted path, in the envelope, of the next page's cursor (a string
    /// or number; null, missing or empty ends the chain). The next page is the page's URL with
    /// `cursor_param` set to it. Needs `records_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_field: Option<String>,
    /// The query parameter that carries the cursor.
    pub cursor_param: String,
    /// Which fetcher runs: `mio` (the event loop) or `ureq` (blocking threads, proxies).
    pub engine: FetchEngine,
    /// Redirects (301, 302, 303, 307, 308) followed per request at most.
    pub max_redirects: u32,
    /// Whether a redirect may lead to another host (off: such a request fails with a reason).
    pub redirect_other_hosts: bool,
    /// Sent as `Accept-Encoding` (empty: not sent). The parse threads decode `gzip` and
    /// `deflate` bodies; the I/O thread never does.
    pub accept_encoding: String,
    /// At most this many requests per second to each host (a token bucket); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Requests a host may get at once after a quiet spell (the bucket's size); default: one
    /// second's worth, `rate_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_burst: Option<u32>,
    /// A larger response body fails its request instead of exhausting memory.
    pub max_body_bytes: usize,
    /// `https://`: a PEM file of CA certificates trusted in addition to the built-in web PKI
    /// roots (Mozilla's), for servers with certificates from a private CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// `https://` with client certificates (mTLS): a PEM file with the certificate chain,
    /// leaf first. Needs `tls_client_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_client_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<PathBuf>,
    /// A batch of bodies is handed to the parse threads when it holds this many responses...
    pub batch_max_items: usize,
    /// ...or this many body bytes...
    pub batch_max_bytes: usize,
    /// ...or when its oldest body has waited this long.
    #[serde(with = "duration_serde")]
    pub batch_max_delay: Duration,
}

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

/// Parquet output settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterConfig {
    /// Rows per row group (a row group is written as soon as it is full).
    pub row_group_rows: usize,
    /// ...or as soon as its encoded size in memory reaches this many bytes (the writer's
    /// estimate, checked after each batch), so that the memory an open row group takes is
    /// bounded whatever the size of the records. 0: no bound by size. The default, 8 MiB,
    /// keeps a file → Parquet run of distinct values at about 37 MiB in all (46 MiB with
    /// 16 MiB), for files 1–2.5 % larger.
    pub row_group_max_bytes: u64,
    /// Uncompressed bytes per Parquet data page (a column chunk is cut into pages of about
    /// this size; readers skip by page with the page index). The default, 256 KiB, keeps each
    /// page's buffer below the binary's 1 MiB mmap threshold: 1 MiB pages made file → Parquet
    /// 10 % slower.
    pub data_page_bytes: usize,
    /// Column compression.
    pub compression: Compression,
    /// Finalize the current Parquet file and start a new one after this long (continuous
    /// mode). `None` (the default): one file per run.
    #[serde(with = "opt_duration_serde", skip_serializing_if = "Option::is_none")]
    pub rotate_interval: Option<Duration>,
    /// Close the open row group once its oldest row has waited this long, even if it is not
    /// full, so that a slow stream's rows reach a closed row group on disk within this time.
    #[serde(with = "duration_serde")]
    pub flush_interval: Duration,
    /// Finalize a file once it holds this many rows (exactly: a batch is split across files).
    /// `None` (the default): no rotation by rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_rows: Option<u64>,
    /// Finalize a file once its size reaches this many bytes: the bytes written so far plus the
    /// writer's estimate of the open row group, checked after each batch, so files end a
    /// little over it. `None` (the default): no rotation by size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_bytes: Option<u64>,
    /// Hive-style partitioning: output column names (string or integer columns) or `date`
    /// (the UTC date of `ts`). Empty (the default): no partitioning, `out` is one file. When
    /// set, `out` is the dataset's root directory and files go to
    /// `out/COL=VALUE/.../part-NNNNN.parquet`.
    pub partition_by: Vec<String>,
    /// Partition files open at once at most; when a row needs one more, the least recently
    /// used file is finalized (a later row of that partition starts its next part).
    pub max_open_partitions: usize,
    /// Rotate the dead-letter file when the next entry would take it past this many bytes:
    /// `NAME` becomes `NAME.1`, `NAME.1` becomes `NAME.2`, and so on. 0: never (logrotate).
    pub dead_letter_max_bytes: u64,
    /// Rotated dead-letter files kept (`NAME.1` ..= `NAME.N`); older ones are deleted.
    pub dead_letter_keep: usize,
    /// Crash-safe resume: finalize files only at checkpoints recorded in `OUT.journal`, so
    /// that the same command run again after a crash skips what is done and writes every
    /// record exactly once (see [`crate::journal`]). One-shot runs without pagination only.
    pub journal: bool,
}

/// Which columns are written and which statistics are added (see [`crate::schema`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaConfig {
    /// The fields, each `PATH:TYPE` or `PATH:TYPE as COLUMN` (`"http.status:int64"`). Empty:
    /// the built-in log layout, or inference with `infer`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// With no `fields`, infer them from the first records (see [`crate::parse::infer`]).
    pub infer: bool,
    /// Fields not in the schema: `ignore`, `reject` (dead-letter the record) or `extra` (keep
    /// them as a JSON object in the column `_extra`).
    pub unknown: String,
    /// Statistics, each `COLUMN` (count, mean, min, max, variance) or `COLUMN:OP,OP,...` over a
    /// numeric list column. Unset: the default statistics of `values` when it is a numeric
    /// list; `[]`: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<String>>,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            fields: Vec::new(),
            infer: false,
            unknown: "ignore".into(),
            stats: None,
        }
    }
}

impl SchemaConfig {
    /// The fixed layout, or `None` when it is to be inferred. Errors name the key.
    pub fn layout(&self) -> Result<Option<Layout>> {
        if self.fields.is_empty() && self.infer {
            return Ok(None);
        }
        let fields = if self.fields.is_empty() {
            crate::schema::log_fields()
        } else {
            self.fields
                .iter()
                .map(|f| f.parse::<FieldSpec>())
                .collect::<std::result::Result<Vec<_>, String>>()
                .map_err(|why| Error::config("schema.fields", why))?
        };
        self.layout_of(fields)
            .map(Some)
            .map_err(|why| Error::config("schema", why))
    }

    /// The layout of `fields` with this configuration's `unknown` and `stats`.
    pub fn layout_of(&self, fields: Vec<FieldSpec>) -> std::result::Result<Layout, String> {
        let unknown = self.unknown.parse::<Unknown>()?;
        let stats = match &self.stats {
            Some(list) => list
                .iter()
                .map(|s| s.parse::<StatSpec>())
                .collect::<std::result::Result<Vec<_>, String>>()?,
            None => fields
                .iter()
                .filter(|f| f.column == "values" && f.ty.is_numeric_list())
                .map(|_| StatSpec {
                    column: "values".into(),
                    ops: crate::schema::DEFAULT_STATS.to_vec(),
                })
                .collect(),
        };
        Layout::new(fields, unknown, stats)
    }
}

/// The HTTP endpoint serving Prometheus metrics and health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to listen on; `None` (the default) serves nothing. In files, environment and
    /// flags it is written `HOST:PORT` or a bare `PORT`, which means `127.0.0.1:PORT`
    /// (see [`parse_listen_addr`]).
    #[serde(with = "opt_addr_serde", skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
}

/// Diagnostics on standard error: their format, their level and the progress line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Plain text lines or one JSON object per line.
    pub format: LogFormat,
    /// The least severe messages shown: `error`, `warn`, `info` (the default), `debug`,
    /// `trace` or `off`.
    pub level: String,
    /// Whether to show a progress line.
    pub progress: Progress,
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

/// The log levels [`LogConfig::level`] accepts.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

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

fn compression_error(s: &str) -> String {
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

impl Default for ThreadConfig {
    fn default() -> Self {
        ThreadConfig {
            parse: None,
            compute: None,
            cpus: None,
            pin: true,
            pin_shared: false,
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
            first_byte_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(15),
            total_timeout: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(60),
            shard: None,
            rate_limit: None,
            rate_burst: None,
            accept_encoding: "gzip, deflate".into(),
            headers: Vec::new(),
            follow_link_next: false,
            max_link_pages: 100_000,
            records_field: None,
            cursor_field: None,
            cursor_param: "cursor".into(),
            engine: FetchEngine::Mio,
            max_redirects: 5,
            redirect_other_hosts: false,
            max_body_bytes: 64 << 20,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
            batch_max_items: 256,
            batch_max_bytes: 256 << 10,
            batch_max_delay: Duration::from_millis(2),
        }
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            row_group_rows: 64 * 1024,
            row_group_max_bytes: 8 << 20,
            data_page_bytes: 256 << 10,
            compression: Compression::Snappy,
            rotate_interval: None,
            flush_interval: Duration::from_secs(10),
            rotate_rows: None,
            rotate_bytes: None,
            partition_by: Vec::new(),
            max_open_partitions: 64,
            dead_letter_max_bytes: 64 << 20,
            dead_letter_keep: 5,
            journal: false,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
            progress: Progress::Auto,
        }
    }
}

/// Defaults for everything, writing to `pinflow.parquet` in the current directory
/// ([`Config::DEFAULT_OUT`]).
impl Default for Config {
    fn default() -> Self {
        Config::new(Config::DEFAULT_OUT)
    }
}

impl Config {
    /// The output file of [`Config::default`] (and of a configuration file without `out`).
    pub const DEFAULT_OUT: &'static str = "pinflow.parquet";

    /// Defaults for everything, writing to `out`.
    pub fn new(out: impl Into<PathBuf>) -> Config {
        Config {
            out: out.into(),
            dead_letter: None,
            source: None,
            files: Vec::new(),
            every: None,
            queue_capacity: 4,
            threads: ThreadConfig::default(),
            fetch: FetchConfig::default(),
            writer: WriterConfig::default(),
            schema: SchemaConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
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
        // Three queues (fetch→parse, parse→compute, compute→write; the middle one unused
        // without compute threads, so then this is an over-estimate); the fetcher holds one
        // batch it is filling and one it is sending; every other thread holds one.
        3 * self.queue_capacity + 2 + parse_threads + compute_threads + 1
    }

    /// Rejects values that cannot work, naming the option by its key path (the first of
    /// [`Config::problems`]).
    pub fn validate(&self) -> Result<()> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some(d) => Err(Error::config(d.key.unwrap_or_default(), d.message)),
        }
    }

    /// Every value that cannot work, each with its key path (e.g. `fetch.max_in_flight`) and
    /// no origin; [`Config::problems_in`] adds where each value came from.
    pub fn problems(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut bad = |key: &str, why: String| {
            out.push(Diagnostic {
                origin: None,
                key: Some(key.to_string()),
                message: why,
            })
        };
        let at_least_one = "must be at least 1".to_string();
        if self.out.as_os_str().is_empty() || self.out.file_name().is_none() {
            bad(
                "out",
                format!("`{}` is not a file path", self.out.display()),
            );
        }
        if let Some(p) = &self.dead_letter {
            if p.as_os_str().is_empty() || p.file_name().is_none() {
                bad(
                    "dead_letter",
                    format!("`{}` is not a file path", p.display()),
                );
            }
        }
        if self.files.iter().any(|f| f.trim().is_empty()) {
            bad("files", "holds an empty path".into());
        }
        if self.source.as_deref().is_some_and(|s| s.trim().is_empty()) {
            bad("source", "is empty".into());
        }
        if self.every == Some(Duration::ZERO) {
            bad("every", "must be longer than zero".into());
        }
        if self.queue_capacity == 0 {
            bad("queue_capacity", at_least_one.clone());
        }
        if self.threads.parse == Some(0) {
            bad("threads.parse", at_least_one.clone());
        }
        if self.threads.cpus.as_ref().is_some_and(|c| c.is_empty()) {
            bad("threads.cpus", "the list is empty".into());
        }
        let f = &self.fetch;
        for (key, v) in [
            ("fetch.connections_per_host", f.connections_per_host),
            ("fetch.max_in_flight", f.max_in_flight),
            ("fetch.max_attempts", f.max_attempts as usize),
            ("fetch.max_body_bytes", f.max_body_bytes),
            ("fetch.batch_max_items", f.batch_max_items),
            ("fetch.batch_max_bytes", f.batch_max_bytes),
            ("fetch.rate_limit", f.rate_limit.map_or(1, |v| v as usize)),
            ("fetch.rate_burst", f.rate_burst.map_or(1, |v| v as usize)),
        ] {
            if v == 0 {
                bad(key, at_least_one.clone());
            }
        }
        for (key, d) in [
            ("fetch.connect_timeout", f.connect_timeout),
            ("fetch.request_timeout", f.request_timeout),
            ("fetch.first_byte_timeout", f.first_byte_timeout),
            ("fetch.idle_timeout", f.idle_timeout),
            ("fetch.total_timeout", f.total_timeout),
        ] {
            if d.is_zero() {
                bad(key, "must be longer than zero".into());
            }
        }
        for (n, h) in f.headers.iter().enumerate() {
            if let Err(e) = check_header(h) {
                bad(&format!("fetch.headers[{n}]"), e);
            }
        }
        for token in f.accept_encoding.split(',').map(str::trim) {
            if !matches!(token, "" | "gzip" | "deflate" | "identity")
                && !token.starts_with("identity;")
            {
                bad(
                    "fetch.accept_encoding",
                    format!(
                        "`{token}` is not an encoding pinflow decodes (gzip, deflate, identity)"
                    ),
                );
            }
        }
        match (&f.tls_client_cert, &f.tls_client_key) {
            (Some(_), None) => bad(
                "fetch.tls_client_key",
                "is needed with fetch.tls_client_cert".into(),
            ),
            (None, Some(_)) => bad(
                "fetch.tls_client_cert",
                "is needed with fetch.tls_client_key".into(),
            ),
            _ => {}
        }
        for (key, p) in [
            ("fetch.tls_ca_file", &f.tls_ca_file),
            ("fetch.tls_client_cert", &f.tls_client_cert),
            ("fetch.tls_client_key", &f.tls_client_key),
        ] {
            if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                bad(key, "is empty".into());
            }
        }
        if f.cursor_field.is_some() && f.records_field.is_none() {
            bad(
                "fetch.cursor_field",
                "needs fetch.records_field (the envelope's array of records)".into(),
            );
        }
        for (key, path) in [
            ("fetch.records_field", &f.records_field),
            ("fetch.cursor_field", &f.cursor_field),
        ] {
            if path
                .as_deref()
                .is_some_and(|p| p.split('.').any(str::is_empty))
            {
                bad(
                    key,
                    "is not a dotted field path such as `data` or `meta.next`".into(),
                );
            }
        }
        if f.cursor_param.is_empty() || f.cursor_param.contains(['&', '=', '#', '?', ' ']) {
            bad(
                "fetch.cursor_param",
                format!("`{}` is not a query parameter name", f.cursor_param),
            );
        }
        if f.engine == FetchEngine::Ureq && f.cursor_field.is_some() {
            bad(
                "fetch.cursor_field",
                "cursor pagination is supported by the mio fetcher only".into(),
            );
        }
        if self.writer.journal {
            if self.every.is_some() {
                bad(
                    "writer.journal",
                    "is for one-shot runs; continuous mode (`every`) resumes with its next pass"
                        .into(),
                );
            }
            if f.follow_link_next || f.cursor_field.is_some() {
                bad(
                    "writer.journal",
                    "cannot track the pages of paginated sources (follow_link_next, cursor_field)"
                        .into(),
                );
            }
        }
        if f.engine == FetchEngine::Ureq && f.follow_link_next {
            bad(
                "fetch.follow_link_next",
                "pagination is supported by the mio fetcher only".into(),
            );
        }
        if f.engine == FetchEngine::Ureq && self.every.is_some() {
            bad(
                "fetch.engine",
                "the ureq fetcher does not support continuous mode (`every`); use mio".into(),
            );
        }
        let sc = &self.schema;
        let mut schema_ok = true;
        if let Err(why) = sc.unknown.parse::<Unknown>() {
            bad("schema.unknown", why);
            schema_ok = false;
        }
        for (n, f) in sc.fields.iter().enumerate() {
            if let Err(why) = f.parse::<FieldSpec>() {
                bad(&format!("schema.fields[{n}]"), why);
                schema_ok = false;
            }
        }
        for (n, st) in sc.stats.iter().flatten().enumerate() {
            if let Err(why) = st.parse::<StatSpec>() {
                bad(&format!("schema.stats[{n}]"), why);
                schema_ok = false;
            }
        }
        if sc.infer && !sc.fields.is_empty() {
            bad(
                "schema.infer",
                "infers the fields when none are listed; remove schema.fields or infer".into(),
            );
        }
        if !(sc.infer && sc.fields.is_empty()) {
            // A fixed layout can be checked as a whole now (duplicate columns, statistics of a
            // column that is not a numeric list...).
            if let (true, Err(Error::Config { why, .. })) = (schema_ok, sc.layout()) {
                bad("schema", why);
            }
        }
        if self.writer.data_page_bytes == 0 {
            bad("writer.data_page_bytes", at_least_one.clone());
        }
        if self.writer.row_group_rows == 0 {
            bad("writer.row_group_rows", at_least_one);
        }
        if let Compression::Zstd(level) = self.writer.compression {
            if !(1..=22).contains(&level) {
                bad(
                    "writer.compression",
                    format!("zstd level {level} is not in 1..=22"),
                );
            }
        }
        let w = &self.writer;
        if w.rotate_interval == Some(Duration::ZERO) {
            bad("writer.rotate_interval", "must be longer than zero".into());
        }
        if w.flush_interval.is_zero() {
            bad("writer.flush_interval", "must be longer than zero".into());
        }
        for (key, v) in [
            ("writer.rotate_rows", w.rotate_rows),
            ("writer.rotate_bytes", w.rotate_bytes),
            (
                "writer.max_open_partitions",
                Some(w.max_open_partitions as u64),
            ),
        ] {
            if v == Some(0) {
                bad(key, "must be at least 1".into());
            }
        }
        // Problems name the whole key (not `[n]`), so they are attributed to where it was set.
        // Columns are checked against a fixed layout now; an inferred one is checked when known.
        let fixed_schema = self
            .schema
            .layout()
            .ok()
            .flatten()
            .map(|l| l.output_schema());
        for (n, name) in w.partition_by.iter().enumerate() {
            let check = fixed_schema
                .as_ref()
                .map_or(Ok(()), |s| crate::schema::check_partition_column(name, s));
            if let Err(why) = check {
                bad("writer.partition_by", why);
            } else if w.partition_by[..n].contains(name) {
                bad("writer.partition_by", format!("`{name}` is listed twice"));
            }
        }
        let level = self.log.level.to_ascii_lowercase();
        if !LOG_LEVELS.contains(&level.as_str()) {
            bad(
                "log.level",
                format!(
                    "`{}` is not one of {}",
                    self.log.level,
                    LOG_LEVELS.join(", ")
                ),
            );
        }
        out
    }

    /// [`Config::problems`], each attributed to the last of `layers` that set its key (the
    /// file and line, or the environment variable).
    pub fn problems_in(&self, layers: &[ConfigLayer]) -> Vec<Diagnostic> {
        let mut problems = self.problems();
        for p in &mut problems {
            if let Some(key) = &p.key {
                p.origin = layers.iter().rev().find_map(|l| l.origin(key).cloned());
            }
        }
        problems
    }

    /// Builds a configuration from layers over the defaults, each overriding the ones before
    /// it (typically a file, then the environment). The values are checked for their type and
    /// form when each layer is made; this does not run [`Config::validate`].
    pub fn from_layers(layers: &[ConfigLayer]) -> std::result::Result<Config, Vec<Diagnostic>> {
        let mut merged = toml::Table::new();
        for layer in layers {
            merge(&mut merged, &layer.values);
        }
        toml::Value::Table(merged)
            .try_into::<Config>()
            .map_err(|e| {
                vec![Diagnostic {
                    origin: None,
                    key: None,
                    message: e.message().to_string(),
                }]
            })
    }

    /// Reads a TOML configuration document (missing keys keep their defaults) and validates
    /// it. Every problem found is in the error, one per line.
    ///
    /// ```
    /// let cfg = pinflow::Config::from_toml("out = \"logs.parquet\"\n[writer]\ncompression = \"zstd:5\"\n")?;
    /// assert_eq!(cfg.writer.compression, pinflow::Compression::Zstd(5));
    /// assert!(pinflow::Config::from_toml("[fetch]\nmax_inflight = 3\n").is_err());
    /// # Ok::<(), pinflow::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Config> {
        match check("configuration", text) {
            (Some(cfg), _) => Ok(cfg),
            (None, diags) => {
                let why = diags
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n");
                Err(Error::config("configuration file", why))
            }
        }
    }

    /// This configuration as a TOML document that [`Config::from_toml`] reads back as equal.
    /// Options that are `None` are left out.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::config("configuration", e.to_string()))
    }

    /// A complete, commented configuration file: every key with its default value and a
    /// comment saying what it does, its environment variable and its flag. Keys without a
    /// default (`threads.parse`, `metrics.addr`, ...), and `out`, are shown commented out with
    /// an example. Read back, it gives [`Config::default`].
    pub fn default_toml() -> String {
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        let mut s = String::new();
        s.push_str(
            "# pinflow configuration (`pinflow config default` wrote this file).\n\
             #\n\
             # Every key is optional: a missing key keeps the default shown here. Values are\n\
             # overridden by PINFLOW_* environment variables (the key path upper-cased, `.` as `_`,\n\
             # e.g. PINFLOW_FETCH_MAX_IN_FLIGHT) and those by command-line flags. Unknown keys are\n\
             # errors. Durations are strings with a unit: \"250us\", \"2ms\", \"1.5s\", \"30s\", \"5m\",\n\
             # \"1h\". Check a file with `pinflow config check FILE`.\n",
        );
        let mut section = "";
        for key in KEYS {
            let (sec, name) = match key.path.split_once('.') {
                Some((sec, name)) => (sec, name),
                None => ("", key.path),
            };
            if sec != section {
                section = sec;
                let doc = SECTIONS
                    .iter()
                    .find(|(name, _)| *name == sec)
                    .map_or("", |(_, doc)| *doc);
                s.push('\n');
                push_comment(&mut s, doc);
                s.push_str(&format!("[{sec}]\n"));
            }
            s.push('\n');
            push_comment(&mut s, key.doc);
            let mut how = format!("Env {}", env_name(key.path));
            if !key.flag.is_empty() {
                how.push_str(&format!(", flag {}", key.flag));
            }
            push_comment(&mut s, &format!("{how}."));
            match lookup(&defaults, key.path) {
                Some(v) if key.example.is_empty() => s.push_str(&format!("{name} = {v}\n")),
                _ => s.push_str(&format!("# {name} = {}\n", key.example)),
            }
        }
        s
    }
}

fn push_comment(s: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 95 && line.len() > 1 {
            s.push_str(&line);
            s.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        s.push_str(&line);
        s.push('\n');
    }
}

fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    match path.split_once('.') {
        Some((sec, rest)) => table.get(sec)?.as_table().and_then(|t| lookup(t, rest)),
        None => table.get(path),
    }
}

fn merge(into: &mut toml::Table, from: &toml::Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `dir/name.parquet` + `.x` → `dir/name.parquet.x`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------------------------
// Where values come from, and what is wrong with them.

/// Where a value came from: a file (and line), an environment variable or a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file name as given, the variable's name, or the flag.
    pub name: String,
    /// The line in the file, counting from 1.
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One problem with a configuration, displayed as `origin: key: message`, e.g.
/// `pinflow.toml:12: fetch.max_in_flight: must be at least 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the offending value is, when known.
    pub origin: Option<Origin>,
    /// The key path (`fetch.max_in_flight`, `threads.cpus[1]`), when the problem has one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The values one source of configuration sets (a TOML file or the environment), already
/// checked against the known keys and their types, with where each came from.
/// [`Config::from_layers`] stacks them over the defaults.
#[derive(Debug, Clone, Default)]
pub struct ConfigLayer {
    values: toml::Table,
    origins: BTreeMap<String, Origin>,
}

/// The prefix of the environment variables read by [`ConfigLayer::from_env`].
pub const ENV_PREFIX: &str = "PINFLOW_";

/// The environment variable for a key path: `fetch.max_in_flight` →
/// `PINFLOW_FETCH_MAX_IN_FLIGHT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Every configuration key path, in the order of [`Config::default_toml`].
pub fn key_paths() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.path)
}

impl ConfigLayer {
    /// Reads a TOML document. `name` (usually the file name) is used in diagnostics. Every
    /// problem is reported, not just the first: syntax errors, unknown keys, values of the
    /// wrong type or form, each with its line.
    pub fn from_toml(name: &str, text: &str) -> std::result::Result<ConfigLayer, Vec<Diagnostic>> {
        let (layer, diags) = parse_layer(name, text);
        if diags.is_empty() {
            Ok(layer)
        } else {
            Err(diags)
        }
    }

    /// Reads a configuration file: [`ConfigLayer::from_toml`] with the path as its name.
    pub fn from_file(path: &Path) -> std::result::Result<ConfigLayer, Vec<Diagnostic>> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => ConfigLayer::from_toml(&name, &text),
            Err(e) => Err(vec![Diagnostic {
                origin: Some(Origin { name, line: None }),
                key: None,
                message: format!("cannot read: {e}"),
            }]),
        }
    }

    /// Reads `PINFLOW_*` variables from `(name, value)` pairs (e.g. `std::env::vars()`);
    /// other names are skipped. A `PINFLOW_` name that is no key's variable is an error, and so
    /// is a value that does not fit its key; every such problem is reported, naming the
    /// variable. Values are written as on the command line: `16`, `true`, `30s`, `zstd:5`,
    /// `0,1,2` for `threads.cpus`, `9100` or `127.0.0.1:9100` for `metrics.addr`.
    pub fn from_env<I, K, V>(vars: I) -> std::result::Result<ConfigLayer, Vec<Diagnostic>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut layer = ConfigLayer::default();
        let mut diags = Vec::new();
        for (var, value) in vars {
            let (var, value) = (var.as_ref(), value.as_ref());
            if !var.starts_with(ENV_PREFIX) {
                continue;
            }
            let origin = Origin {
                name: var.to_string(),
                line: None,
            };
            let Some(key) = KEYS.iter().find(|k| env_name(k.path) == var) else {
                let names: Vec<String> = KEYS.iter().map(|k| env_name(k.path)).collect();
                let suffixes = names.iter().map(|n| &n[ENV_PREFIX.len()..]);
                let mut message = "unknown configuration variable".to_string();
                if let Some(s) = suggest(&var[ENV_PREFIX.len()..], suffixes) {
                    message.push_str(&format!("; did you mean {ENV_PREFIX}{s}?"));
                }
                diags.push(Diagnostic {
                    origin: Some(origin),
                    key: None,
                    message,
                });
                continue;
            };
            match key.kind.read_text(value.trim()) {
                Ok(v) => {
                    layer.set(key.path, v);
                    layer.origins.insert(key.path.to_string(), origin);
                }
                Err(message) => diags.push(Diagnostic {
                    origin: Some(origin),
                    key: Some(key.path.to_string()),
                    message,
                }),
            }
        }
        if diags.is_empty() {
            Ok(layer)
        } else {
            diags.sort_by(|a, b| {
                a.origin
                    .as_ref()
                    .map(|o| &o.name)
                    .cmp(&b.origin.as_ref().map(|o| &o.name))
            });
            Err(diags)
        }
    }

    /// Whether this layer sets `key` (a path such as `fetch.max_in_flight`).
    pub fn is_set(&self, key: &str) -> bool {
        self.origins.contains_key(key)
    }

    /// Where this layer's value for `key` came from.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }

    fn unset(&mut self, path: &str) {
        self.origins.remove(path);
        let mut table = &mut self.values;
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("non-empty path");
        for p in parts {
            match table.get_mut(p).and_then(|v| v.as_table_mut()) {
                Some(t) => table = t,
                None => return,
            }
        }
        table.remove(last);
    }

    fn set(&mut self, path: &str, value: toml::Value) {
        let mut table = &mut self.values;
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("non-empty path");
        for p in parts {
            table = table
                .entry(p)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("sections are tables");
        }
        table.insert(last.to_string(), value);
    }
}

/// Checks a TOML configuration document and reports every problem: syntax, unknown keys,
/// wrong types and forms, and the checks of [`Config::validate`] for the values it sets — each
/// with its line. Empty when the document is good. `name` starts each diagnostic.
pub fn check_toml(name: &str, text: &str) -> Vec<Diagnostic> {
    check(name, text).1
}

/// The configuration a document gives (when it has no problem at all) and every problem.
fn check(name: &str, text: &str) -> (Option<Config>, Vec<Diagnostic>) {
    // The values that were understood are checked even when others were not.
    let (layer, mut diags) = parse_layer(name, text);
    let layers = [layer];
    match Config::from_layers(&layers) {
        Ok(cfg) => {
            diags.extend(cfg.problems_in(&layers));
            diags.sort_by_key(|d| d.origin.as_ref().and_then(|o| o.line));
            let cfg = diags.is_empty().then_some(cfg);
            (cfg, diags)
        }
        Err(more) => {
            diags.extend(more);
            (None, diags)
        }
    }
}

/// The good values of a document (normalized, with their lines) and a diagnostic for each
/// problem: syntax errors, unknown keys, values of the wrong type or form.
fn parse_layer(name: &str, text: &str) -> (ConfigLayer, Vec<Diagnostic>) {
    let mut layer = ConfigLayer::default();
    let mut diags = Vec::new();
    let lines = LineIndex::new(text);
    let (doc, errors) = toml::de::DeTable::parse_recoverable(text);
    for e in errors {
        diags.push(Diagnostic {
            origin: Some(Origin {
                name: name.to_string(),
                line: e.span().map(|s| lines.line(s.start)),
            }),
            key: None,
            message: format!("invalid TOML: {}", e.message()),
        });
    }
    let syntax_errors = diags.len();
    let mut walk = Walk {
        name,
        lines: &lines,
        origins: &mut layer.origins,
        diags: &mut diags,
    };
    walk.table(doc.get_ref(), "", &mut layer.values);
    // Recovery from a syntax error can leave odd keys and values after it: past the first
    // syntax error, only syntax errors are reported.
    let first_bad_line = diags[..syntax_errors]
        .iter()
        .map(|d| d.origin.as_ref().and_then(|o| o.line).unwrap_or(0))
        .min();
    if let Some(first) = first_bad_line {
        let mut n = 0;
        diags.retain(|d| {
            n += 1;
            n <= syntax_errors || d.origin.as_ref().and_then(|o| o.line).unwrap_or(0) < first
        });
        let doubtful: Vec<String> = layer
            .origins
            .iter()
            .filter(|(_, o)| o.line.unwrap_or(0) >= first)
            .map(|(k, _)| k.clone())
            .collect();
        for key in doubtful {
            layer.unset(&key);
        }
    }
    diags.sort_by_key(|d| d.origin.as_ref().and_then(|o| o.line));
    (layer, diags)
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// Walks a parsed document against the schema, keeping the good values (normalized) and
/// collecting a diagnostic for each bad one.
struct Walk<'a> {
    name: &'a str,
    lines: &'a LineIndex,
    origins: &'a mut BTreeMap<String, Origin>,
    diags: &'a mut Vec<Diagnostic>,
}

impl Walk<'_> {
    fn origin(&self, span: std::ops::Range<usize>) -> Origin {
        Origin {
            name: self.name.to_string(),
            line: Some(self.lines.line(span.start)),
        }
    }

    fn error(&mut self, span: std::ops::Range<usize>, key: &str, message: String) {
        let origin = Some(self.origin(span));
        self.diags.push(Diagnostic {
            origin,
            key: Some(key.to_string()),
            message,
        });
    }

    fn table(&mut self, table: &toml::de::DeTable<'_>, prefix: &str, out: &mut toml::Table) {
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            if SECTIONS.iter().any(|(s, _)| *s == path) {
                match v.get_ref() {
                    toml::de::DeValue::Table(t) => {
                        let sub = out
                            .entry(name)
                            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                        if let toml::Value::Table(sub) = sub {
                            self.table(t, &path, sub);
                        }
                    }
                    other => {
                        self.error(
                            k.span(),
                            &path,
                            format!("expected a table ([{path}]), got {}", describe(other)),
                        );
                    }
                }
            } else if let Some(key) = KEYS.iter().find(|key| key.path == path) {
                match key.kind.read_toml(v.get_ref(), &path) {
                    Ok(value) => {
                        out.insert(name.to_string(), value);
                        let origin = self.origin(k.span());
                        self.origins.insert(path, origin);
                    }
                    Err((key_path, message)) => self.error(k.span(), &key_path, message),
                }
            } else {
                let candidates = KEYS
                    .iter()
                    .map(|k| k.path)
                    .chain(SECTIONS.iter().map(|(s, _)| *s));
                let mut message = "unknown key".to_string();
                if let Some(s) = suggest(&path, candidates) {
                    message.push_str(&format!("; did you mean `{s}`?"));
                }
                self.error(k.span(), &path, message);
            }
        }
    }
}

fn describe(v: &toml::de::DeValue<'_>) -> String {
    use toml::de::DeValue;
    match v {
        DeValue::String(s) => format!("the string \"{s}\""),
        DeValue::Integer(i) => format!("the integer {i}"),
        DeValue::Float(x) => format!("the float {x}"),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// The closest candidate within a small edit distance, if any.
fn suggest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.len() / 3).max(2);
    candidates
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// The schema: every key, its type, and its documentation.

/// What a key holds, and so how it is read from TOML and from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A non-negative integer (`usize`).
    Count,
    /// A non-negative integer that fits `u32`.
    Count32,
    Bool,
    /// A string.
    Text,
    /// `K/N`.
    Shard,
    /// `mio` or `ureq`.
    Engine,
    /// An array of `Name: value` strings; in the environment, one per line.
    HeaderList,
    /// A file path (a string).
    Path,
    /// A duration string such as `"30s"`.
    Duration,
    Compression,
    /// A list of CPU ids.
    CpuList,
    /// An array of names (strings); in the environment, comma-separated.
    NameList,
    /// An array of file paths or glob patterns; in the environment, one per line.
    StringList,
    /// `HOST:PORT` or a bare port.
    ListenAddr,
    LogFormat,
    Progress,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Count | Kind::Count32 => "a non-negative integer",
            Kind::Bool => "true or false",
            Kind::Text => "a string",
            Kind::HeaderList => "an array of \"Name: value\" strings",
            Kind::Shard => "a shard such as \"0/4\" (K/N, K in 0..N)",
            Kind::Path => "a file path (a string)",
            Kind::Duration => "a duration string such as \"30s\"",
            Kind::Compression => "\"none\", \"snappy\", \"lz4\", \"zstd\" or \"zstd:LEVEL\"",
            Kind::CpuList => "an array of CPU ids such as [0, 1]",
            Kind::NameList => "an array of names such as [\"service\", \"date\"]",
            Kind::StringList => "an array of strings",
            Kind::ListenAddr => "\"HOST:PORT\" or \"PORT\" (a string)",
            Kind::LogFormat => "\"text\" or \"json\"",
            Kind::Engine => "\"mio\" or \"ureq\"",
            Kind::Progress => "\"auto\", \"always\" or \"never\"",
        }
    }

    fn count(self, n: i128) -> std::result::Result<toml::Value, String> {
        let max = match self {
            Kind::Count32 => i128::from(u32::MAX),
            _ => i128::from(i64::MAX).min(usize::MAX as i128),
        };
        if n < 0 {
            Err(format!("must not be negative, got {n}"))
        } else if n > max {
            Err(format!("{n} is too large (at most {max})"))
        } else {
            Ok(toml::Value::Integer(n as i64))
        }
    }

    /// A TOML value for this key, normalized; or the key path (with an index for array
    /// elements) and what is wrong.
    fn read_toml(
        self,
        v: &toml::de::DeValue<'_>,
        path: &str,
    ) -> std::result::Result<toml::Value, (String, String)> {
        use toml::de::DeValue;
        let wrong = || {
            (
                path.to_string(),
                format!("expected {}, got {}", self.expected(), describe(v)),
            )
        };
        let at = |message: String| (path.to_string(), message);
        match (self, v) {
            (Kind::Count | Kind::Count32, DeValue::Integer(i)) => {
                let n = i128::from_str_radix(i.as_str(), i.radix()).map_err(|_| wrong())?;
                self.count(n).map_err(at)
            }
            (Kind::Bool, DeValue::Boolean(b)) => Ok(toml::Value::Boolean(*b)),
            (Kind::CpuList, DeValue::Array(items)) => {
                let mut ids = Vec::new();
                let mut first_err = None;
                for (n, item) in items.iter().enumerate() {
                    let r = match item.get_ref() {
                        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
                            .map_err(|e| e.to_string())
                            .and_then(|n| Kind::Count.count(n)),
                        other => Err(format!("expected a CPU id, got {}", describe(other))),
                    };
                    match r {
                        Ok(v) => ids.push(v),
                        Err(e) => {
                            first_err.get_or_insert((format!("{path}[{n}]"), e));
                        }
                    }
                }
                match first_err {
                    Some(e) => Err(e),
                    None => Ok(toml::Value::Array(ids)),
                }
            }
            (Kind::HeaderList, DeValue::Array(items)) => {
                let mut out = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::String(h) => {
                            check_header(h).map_err(|e| (format!("{path}[{n}]"), e))?;
                            out.push(toml::Value::String(h.to_string()));
                        }
                        other => {
                            return Err((
                                format!("{path}[{n}]"),
                                format!("expected \"Name: value\", got {}", describe(other)),
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(out))
            }
            (Kind::StringList, DeValue::Array(items)) => {
                let mut out = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::String(p) if !p.is_empty() => {
                            out.push(toml::Value::String(p.to_string()));
                        }
                        other => {
                            return Err((
                                format!("{path}[{n}]"),
                                format!("expected a path, got {}", describe(other)),
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(out))
            }
            (Kind::NameList, DeValue::Array(items)) => {
                let mut out = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::String(name) if !name.trim().is_empty() => {
                            out.push(toml::Value::String(name.trim().to_string()));
                        }
                        other => {
                            return Err((
                                format!("{path}[{n}]"),
                                format!("expected a name, got {}", describe(other)),
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(out))
            }
            (
                Kind::CpuList
                | Kind::HeaderList
                | Kind::NameList
                | Kind::StringList
                | Kind::Count
                | Kind::Count32
                | Kind::Bool,
                _,
            ) => Err(wrong()),
            (_, DeValue::String(s)) => self.read_text(s).map_err(at),
            _ => Err(wrong()),
        }
    }

    /// A value for this key from text (an environment variable, or a TOML string).
    fn read_text(self, s: &str) -> std::result::Result<toml::Value, String> {
        let string = |s: String| Ok(toml::Value::String(s));
        match self {
            Kind::Count | Kind::Count32 => match s.parse::<i128>() {
                Ok(n) => self.count(n),
                Err(_) => Err(format!("`{s}` is not {}", self.expected())),
            },
            Kind::Bool => match s {
                "true" | "1" => Ok(toml::Value::Boolean(true)),
                "false" | "0" => Ok(toml::Value::Boolean(false)),
                _ => Err(format!("`{s}` is not true or false")),
            },
            Kind::Text => string(s.to_string()),
            Kind::Shard => match s.parse::<Shard>() {
                Ok(sh) => string(sh.to_string()),
                Err(e) => Err(e),
            },
            Kind::Path => {
                if s.is_empty() {
                    Err("the path is empty".to_string())
                } else {
                    string(s.to_string())
                }
            }
            Kind::Duration => string(format_duration(parse_duration(s)?)),
            Kind::Compression => match s.parse::<Compression>() {
                Ok(c) => string(c.to_string()),
                Err(_) => Err(compression_error(s)),
            },
            Kind::CpuList => {
                let mut ids = Vec::new();
                for part in s.split(',') {
                    match part.trim().parse::<u32>() {
                        Ok(n) => ids.push(toml::Value::Integer(i64::from(n))),
                        Err(_) => {
                            return Err(format!(
                                "`{s}` is not a comma-separated list of CPU ids such as 0,1,2"
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(ids))
            }
            Kind::StringList => Ok(toml::Value::Array(
                s.lines()
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| toml::Value::String(p.to_string()))
                    .collect(),
            )),
            Kind::NameList => Ok(toml::Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| toml::Value::String(n.to_string()))
                    .collect(),
            )),
            Kind::HeaderList => {
                let mut out = Vec::new();
                for h in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    check_header(h)?;
                    out.push(toml::Value::String(h.to_string()));
                }
                Ok(toml::Value::Array(out))
            }
            Kind::ListenAddr => string(parse_listen_addr(s)?.to_string()),
            Kind::LogFormat => string(s.parse::<LogFormat>()?.to_string()),
            Kind::Engine => string(s.parse::<FetchEngine>()?.to_string()),
            Kind::Progress => string(s.parse::<Progress>()?.to_string()),
        }
    }
}

/// Checks the shape of a `Name: value` header (the value's `${...}` are resolved later).
fn check_header(h: &str) -> std::result::Result<(), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("`{h}` is not \"Name: value\""))?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!(
            "the value of header `{name}` contains a line break"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["host", "content-length", "transfer-encoding", "connection"].contains(&lower.as_str()) {
        return Err(format!("header `{name}` is set by pinflow itself"));
    }
    Ok(())
}

/// Resolves `${env:VAR}` and `${file:PATH}` in configured headers into request header lines
/// (`Name: value\r\n` each). Errors name the header and what could not be read.
pub fn resolve_headers(headers: &[String], env: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    for h in headers {
        check_header(h).map_err(|e| Error::config("fetch.headers", e))?;
        let (name, value) = h.split_once(':').expect("checked");
        let mut v = value.trim().to_string();
        // Scan on after each substitution: text read from a file is never expanded again.
        let mut from = 0;
        while let Some(rel) = v[from..].find("${") {
            let start = from + rel;
            let end = v[start..].find('}').map(|e| start + e).ok_or_else(|| {
                Error::config("fetch.headers", format!("header `{name}`: unclosed `${{`"))
            })?;
            let what = &v[start + 2..end];
            let text = if let Some(var) = what.strip_prefix("env:") {
                env(var).ok_or_else(|| {
                    Error::config(
                        "fetch.headers",
                        format!("header `{name}`: environment variable {var} is not set"),
                    )
                })?
            } else if let Some(path) = what.strip_prefix("file:") {
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        Error::config(
                            "fetch.headers",
                            format!("header `{name}`: cannot read {path}: {e}"),
                        )
                    })?
                    .trim()
                    .to_string()
            } else {
                return Err(Error::config(
                    "fetch.headers",
                    format!(
                        "header `{name}`: `${{{what}}}` is neither ${{env:VAR}} nor ${{file:PATH}}"
                    ),
                ));
            };
            if text.contains(['\r', '\n']) {
                return Err(Error::config(
                    "fetch.headers",
                    format!("header `{name}`: the value read for `${{{what}}}` has a line break"),
                ));
            }
            v.replace_range(start..=end, &text);
            from = start + text.len();
        }
        out.push_str(&format!("{name}: {v}\r\n"));
    }
    Ok(out)
}

/// One configuration key.
struct KeySpec {
    /// Dotted path: `queue_capacity`, `fetch.max_in_flight`.
    path: &'static str,
    kind: Kind,
    /// What it does (shown in `pinflow config default`).
    doc: &'static str,
    /// The command-line flag that overrides it, or "".
    flag: &'static str,
    /// For keys without a default value (and `out`): an example, shown commented out.
    example: &'static str,
}

const fn key(path: &'static str, kind: Kind, flag: &'static str, doc: &'static str) -> KeySpec {
    KeySpec {
        path,
        kind,
        doc,
        flag,
        example: "",
    }
}

const fn opt(
    path: &'static str,
    kind: Kind,
    flag: &'static str,
    example: &'static str,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        path,
        kind,
        doc,
        flag,
        example,
    }
}

/// The tables, in file order, with what they hold.
const SECTIONS: &[(&str, &str)] = &[
    (
        "threads",
        "How many threads of each role, and where they run.",
    ),
    ("fetch", "The HTTP fetcher (one mio event-loop thread)."),
    ("writer", "The Parquet writer."),
    (
        "schema",
        "The columns written and the statistics added (default: the built-in log layout).",
    ),
    ("metrics", "The Prometheus metrics and health endpoint."),
    ("log", "Diagnostics on standard error."),
];

/// Every key, top-level ones first, then table by table in [`SECTIONS`] order.
const KEYS: &[KeySpec] = &[
    opt(
        "out",
        Kind::Path,
        "--out",
        "\"logs.parquet\"",
        "The Parquet file to write; it appears under this name only once complete. \
         `pinflow run` needs it here or in --out; `demo` and `bench` use only --out.",
    ),
    opt(
        "dead_letter",
        Kind::Path,
        "--dead-letter",
        "\"logs.deadletter.ndjson\"",
        "Where rejected records and failed requests go (NDJSON). Default: OUT.deadletter.ndjson.",
    ),
    opt(
        "source",
        Kind::Text,
        "--urls",
        "\"http://127.0.0.1:8080/logs/{1..20000}.json\"",
        "The work source of `pinflow run` when --urls is not given: a file with one URL per \
         line, \"-\" for standard input, or a template with one {START..END} range.",
    ),
    opt(
        "files",
        Kind::StringList,
        "--files",
        "[\"/var/log/app/*.ndjson\"]",
        "Local files instead of URLs: paths, directories or glob patterns, `-` for stdin. \
         NDJSON is streamed in chunks; a .json file is one document (object or array).",
    ),
    opt(
        "every",
        Kind::Duration,
        "--every",
        "\"30s\"",
        "Continuous mode: poll the source again every this long until SIGINT or SIGTERM. \
         Unset: run once.",
    ),
    key(
        "queue_capacity",
        Kind::Count,
        "--queue-capacity",
        "Batches per queue between stages (at least 1). Small is enough: batches are large.",
    ),
    opt(
        "threads.parse",
        Kind::Count,
        "--parse-threads",
        "2",
        "Parse threads (simd-json into Arrow columns). Unset: derived from the cores.",
    ),
    opt(
        "threads.compute",
        Kind::Count,
        "--compute-threads",
        "1",
        "Compute threads (statistics kernels, transforms); 0: the parse threads compute their own \
         batches. Unset: derived from the cores (0 below four worker cores).",
    ),
    opt(
        "threads.cpus",
        Kind::CpuList,
        "--cpus",
        "[0, 1, 2, 3]",
        "Run only on these CPU ids. Unset: every core this process may use.",
    ),
    key(
        "threads.pin",
        Kind::Bool,
        "--pin / --no-pin",
        "Pin each thread to its core when every thread gets a core of its own; false lets the \
         OS place them.",
    ),
    key(
        "threads.pin_shared",
        Kind::Bool,
        "--pin-shared",
        "Pin even when threads outnumber cores and must share them (a pinned thread cannot \
         move to an idle core).",
    ),
    key(
        "fetch.connections_per_host",
        Kind::Count,
        "--connections-per-host",
        "Keep-alive connections opened per host (host:port).",
    ),
    key(
        "fetch.max_in_flight",
        Kind::Count,
        "--max-in-flight",
        "Requests admitted but not yet finished, all hosts together. Bounds memory.",
    ),
    key(
        "fetch.max_attempts",
        Kind::Count32,
        "--max-attempts",
        "Attempts per request on connection errors and timeouts, the first one included.",
    ),
    key(
        "fetch.connect_timeout",
        Kind::Duration,
        "--connect-timeout",
        "Give up on a TCP connect after this long.",
    ),
    key(
        "fetch.request_timeout",
        Kind::Duration,
        "--request-timeout",
        "Give up on an attempt (request sent to last body byte) after this long.",
    ),
    key(
        "fetch.first_byte_timeout",
        Kind::Duration,
        "--first-byte-timeout",
        "Give up on an attempt when no response byte arrived this long after the request.",
    ),
    key(
        "fetch.idle_timeout",
        Kind::Duration,
        "--idle-timeout",
        "Give up on an attempt when a response stops this long between two reads.",
    ),
    key(
        "fetch.total_timeout",
        Kind::Duration,
        "--total-timeout",
        "Give up on a request, all attempts and the waits between them together, after this long.",
    ),
    key(
        "fetch.max_retry_after",
        Kind::Duration,
        "--max-retry-after",
        "The longest Retry-After honoured (429 and 5xx responses); longer requests wait this long.",
    ),
    opt(
        "fetch.shard",
        Kind::Shard,
        "--shard",
        "\"0/4\"",
        "Keep only the work items of shard K of N (K in 0..N, a stable hash of the URL), so N \
         instances split one source with no coordination.",
    ),
    key(
        "fetch.follow_link_next",
        Kind::Bool,
        "--follow-link-next",
        "Pagination: when a page's Link header has rel=\"next\", fetch that page too (same host \
         unless redirect_other_hosts).",
    ),
    key(
        "fetch.max_link_pages",
        Kind::Count32,
        "--max-link-pages",
        "Pages followed from one source URL at most, by Link or cursor (a guard against loops).",
    ),
    opt(
        "fetch.records_field",
        Kind::Text,
        "--records-field",
        "\"data\"",
        "The body is an envelope object; the records are the array at this dotted path.",
    ),
    opt(
        "fetch.cursor_field",
        Kind::Text,
        "--cursor-field",
        "\"next_cursor\"",
        "Cursor pagination: the envelope's field (dotted path) with the next page's cursor; \
         null, missing or empty ends the chain. Needs records_field.",
    ),
    key(
        "fetch.cursor_param",
        Kind::Text,
        "--cursor-param",
        "The query parameter that carries the cursor in the next page's URL.",
    ),
    key(
        "fetch.engine",
        Kind::Engine,
        "--engine",
        "The fetcher: \"mio\" (one event loop for every connection) or \"ureq\" (blocking \
         threads; honours HTTP_PROXY; the benchmark's baseline; no continuous mode).",
    ),
    key(
        "fetch.max_redirects",
        Kind::Count32,
        "--max-redirects",
        "Redirects (301, 302, 303, 307, 308) followed per request at most; 0 follows none.",
    ),
    key(
        "fetch.redirect_other_hosts",
        Kind::Bool,
        "--redirect-other-hosts",
        "Whether a redirect may lead to another host (off: such a request fails, with the reason).",
    ),
    key(
        "fetch.headers",
        Kind::HeaderList,
        "--header",
        "Extra request headers, each \"Name: value\". In a value, ${env:VAR} and ${file:PATH} \
         are replaced when the run starts (keep tokens out of files and command lines).",
    ),
    key(
        "fetch.accept_encoding",
        Kind::Text,
        "--accept-encoding",
        "Sent as Accept-Encoding (\"\" to send none); gzip and deflate bodies are decoded by the \
         parse threads.",
    ),
    opt(
        "fetch.rate_limit",
        Kind::Count32,
        "--rate-limit",
        "100",
        "At most this many requests per second to each host (token bucket). Default: no limit.",
    ),
    opt(
        "fetch.rate_burst",
        Kind::Count32,
        "--rate-burst",
        "10",
        "Requests a host may get at once after a quiet spell. Default: rate_limit.",
    ),
    key(
        "fetch.max_body_bytes",
        Kind::Count,
        "--max-body-bytes",
        "A larger response body fails its request (and nothing else) instead of exhausting memory.",
    ),
    opt(
        "fetch.tls_ca_file",
        Kind::Path,
        "--tls-ca-file",
        "\"/etc/pinflow/ca.pem\"",
        "https://: PEM CA certificates trusted besides the built-in web PKI roots (a private CA).",
    ),
    opt(
        "fetch.tls_client_cert",
        Kind::Path,
        "--tls-client-cert",
        "\"/etc/pinflow/client.pem\"",
        "https:// client certificate chain (PEM, leaf first) for servers that require mTLS.",
    ),
    opt(
        "fetch.tls_client_key",
        Kind::Path,
        "--tls-client-key",
        "\"/etc/pinflow/client.key\"",
        "The PEM private key of tls_client_cert.",
    ),
    key(
        "fetch.batch_max_items",
        Kind::Count,
        "",
        "A batch of bodies goes to the parse threads when it holds this many responses...",
    ),
    key(
        "fetch.batch_max_bytes",
        Kind::Count,
        "",
        "...or this many body bytes...",
    ),
    key(
        "fetch.batch_max_delay",
        Kind::Duration,
        "",
        "...or when its oldest body has waited this long.",
    ),
    key(
        "writer.row_group_rows",
        Kind::Count,
        "--row-group-rows",
        "Rows per Parquet row group; a row group is written as soon as it is full.",
    ),
    key(
        "writer.row_group_max_bytes",
        Kind::Count,
        "--row-group-max-bytes",
        "...or as soon as its encoded size in memory reaches this many bytes, which bounds the \
         memory of an open row group whatever the records' size. 0: no bound by size.",
    ),
    key(
        "writer.data_page_bytes",
        Kind::Count,
        "--data-page-bytes",
        "Uncompressed bytes per Parquet data page (readers skip by page with the page index).",
    ),
    key(
        "writer.compression",
        Kind::Compression,
        "--compression",
        "Column compression: \"none\", \"snappy\", \"lz4\" (Parquet LZ4_RAW), \"zstd\" (level 3) \
         or \"zstd:LEVEL\" (1..=22).",
    ),
    opt(
        "writer.rotate_interval",
        Kind::Duration,
        "--rotate-interval",
        "\"1h\"",
        "Finalize the current Parquet file and start a new one after this long (continuous \
         mode). Unset: one file per run.",
    ),
    key(
        "writer.flush_interval",
        Kind::Duration,
        "--flush-interval",
        "Close the open row group once its oldest row has waited this long, full or not, so a \
         slow stream's rows reach a closed row group on disk within this time.",
    ),
    opt(
        "writer.rotate_rows",
        Kind::Count,
        "--rotate-rows",
        "1000000",
        "Finalize a file once it holds this many rows and start the next. Unset: no rotation \
         by rows. Any rotation names files OUTSTEM-YYYYMMDDTHHMMSSZ-NNNNN.parquet.",
    ),
    opt(
        "writer.rotate_bytes",
        Kind::Count,
        "--rotate-bytes",
        "268435456",
        "Finalize a file once its size (bytes written plus the estimated open row group) \
         reaches this many bytes; files end a little over it. Unset: no rotation by size.",
    ),
    key(
        "writer.partition_by",
        Kind::NameList,
        "--partition-by",
        "Hive-style partitions: string or integer output columns, or \"date\" (the UTC date of \
         ts), e.g. [\"service\", \"date\"]. Then `out` is a directory and files are \
         OUT/service=X/date=YYYY-MM-DD/part-NNNNN.parquet. Empty: one file (or rotated files).",
    ),
    key(
        "writer.max_open_partitions",
        Kind::Count,
        "--max-open-partitions",
        "Partition files open at once at most; the least recently used one is finalized to \
         make room (a later row of its partition starts the next part).",
    ),
    key(
        "writer.dead_letter_max_bytes",
        Kind::Count,
        "--dead-letter-max-bytes",
        "Rotate the dead-letter file before it passes this size: NAME becomes NAME.1, NAME.1 \
         becomes NAME.2, ... 0: never (leave it to logrotate).",
    ),
    key(
        "writer.dead_letter_keep",
        Kind::Count,
        "--dead-letter-keep",
        "Rotated dead-letter files kept (NAME.1 to NAME.N); the oldest is deleted. 0 keeps none.",
    ),
    key(
        "writer.journal",
        Kind::Bool,
        "--journal",
        "Crash-safe resume: files are finalized at checkpoints recorded in OUT.journal; the same \
         command run again after a crash skips what is done. One-shot runs, no pagination.",
    ),
    opt(
        "schema.fields",
        Kind::StringList,
        "--field",
        "[\"id:int64\", \"ts:timestamp\", \"service:dict\", \"http.status:int64\", \"values:list<float64>\"]",
        "The fields, PATH:TYPE or PATH:TYPE as COLUMN; types int64, float64, bool, string, dict, \
         timestamp, list<float64>, list<int64>; a dotted PATH reaches into nested objects and \
         becomes a flat column (http.status -> http_status). Unset: the built-in log layout.",
    ),
    key(
        "schema.infer",
        Kind::Bool,
        "--infer-schema",
        "With no fields listed, infer them from the first records (up to 1000).",
    ),
    key(
        "schema.unknown",
        Kind::Text,
        "--unknown-fields",
        "Fields not in the schema: ignore, reject (dead-letter the record) or extra (a JSON \
         object column _extra).",
    ),
    opt(
        "schema.stats",
        Kind::StringList,
        "--stats",
        "[\"values:count,mean,min,max,variance,stddev,p50,p99\"]",
        "Statistics of numeric list columns, COLUMN or COLUMN:OP,...; ops count, sum, mean, \
         variance, stddev, min, max, pNN. Unset: count, mean, min, max, variance of `values`.",
    ),
    opt(
        "metrics.addr",
        Kind::ListenAddr,
        "--metrics-addr",
        "\"127.0.0.1:9100\"",
        "Serve Prometheus metrics and health checks over HTTP on this address: \"HOST:PORT\", \
         or \"PORT\" for 127.0.0.1:PORT. Unset: no endpoint.",
    ),
    key(
        "log.format",
        Kind::LogFormat,
        "--log-format",
        "\"text\" lines or \"json\" (one object per line).",
    ),
    key(
        "log.level",
        Kind::Text,
        "--log-level",
        "The least severe messages shown: off, error, warn, info, debug or trace.",
    ),
    key(
        "log.progress",
        Kind::Progress,
        "--progress",
        "Progress line: \"auto\" (only on a terminal), \"always\" or \"never\".",
    ),
];

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
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(bad("malformed number"));
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad("number too large"))?
        };
        let mut part = int.checked_mul(scale).ok_or_else(|| bad("too long"))?;
        if !frac.is_empty() {
            if frac.len() > 18 {
                return Err(bad("too many decimals"));
            }
            let digits: u128 = frac.parse().map_err(|_| bad("malformed number"))?;
            let denom = 10u128.pow(frac.len() as u32);
            let nanos = digits * scale;
            if !nanos.is_multiple_of(denom) {
                return Err(bad("finer than a nanosecond"));
            }
            part += nanos / denom;
        }
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

mod duration_serde {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_duration_serde {
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

mod opt_shard_serde {
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

mod opt_addr_serde {
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

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn headers_resolve_env_and_files_and_name_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret ${env:NOPE}\n").unwrap();
        let env = |k: &str| (k == "USER_ID").then(|| "42".to_string());
        let h = vec![
            "X-User: ${env:USER_ID}".to_string(),
            format!("Authorization: Bearer ${{file:{}}}", token.display()),
        ];
        assert_eq!(
            resolve_headers(&h, env).unwrap(),
            "X-User: 42\r\nAuthorization: Bearer s3cret ${env:NOPE}\r\n",
            "file content is not expanded again"
        );
        let e = resolve_headers(&["X: ${env:MISSING}".into()], env).unwrap_err();
        assert!(e.to_string().contains("MISSING is not set"), "{e}");
        let e = resolve_headers(&["Host: x".into()], env).unwrap_err();
        assert!(e.to_string().contains("set by pinflow"), "{e}");
        assert!(check_header("Bad Name: x").is_err());
    }
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
        assert_eq!("lz4".parse::<Compression>().unwrap(), Compression::Lz4);
        for c in [
            Compression::None,
            Compression::Snappy,
            Compression::Zstd(5),
            Compression::Lz4,
        ] {
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
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
    fn problems_lists_every_bad_value() {
        let mut c = Config::new("x.parquet");
        c.queue_capacity = 0;
        c.fetch.max_in_flight = 0;
        c.fetch.request_timeout = Duration::ZERO;
        c.every = Some(Duration::ZERO);
        c.log.level = "loud".into();
        c.writer.compression = Compression::Zstd(0);
        let keys: Vec<String> = c.problems().into_iter().filter_map(|d| d.key).collect();
        assert_eq!(
            keys,
            [
                "every",
                "queue_capacity",
                "fetch.max_in_flight",
                "fetch.request_timeout",
                "writer.compression",
                "log.level"
            ]
        );
        assert!(Config::default().problems().is_empty());
    }

    #[test]
    fn writer_output_keys_are_checked() {
        let mut c = Config::new("x.parquet");
        c.writer.flush_interval = Duration::ZERO;
        c.writer.rotate_rows = Some(0);
        c.writer.rotate_bytes = Some(0);
        c.writer.max_open_partitions = 0;
        c.writer.partition_by = vec![
            "service".into(),
            "latency_ms".into(),
            "date".into(),
            "nope".into(),
            "service".into(),
        ];
        let shown: Vec<String> = c.problems().iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 7, "{shown:#?}");
        for (at, key) in [
            (0, "writer.flush_interval"),
            (1, "writer.rotate_rows"),
            (2, "writer.rotate_bytes"),
            (3, "writer.max_open_partitions"),
            (4, "writer.partition_by"),
            (5, "writer.partition_by"),
            (6, "writer.partition_by"),
        ] {
            assert!(shown[at].starts_with(key), "{shown:#?}");
        }
        assert!(shown[4].contains("latency_ms"), "{}", shown[4]);
        assert!(shown[5].contains("`nope`"), "{}", shown[5]);
        assert!(shown[6].contains("twice"), "{}", shown[6]);
        // Environment: a comma-separated list; TOML: an array of strings.
        let layer = ConfigLayer::from_env([(
            "PINFLOW_WRITER_PARTITION_BY".to_string(),
            "service, date".to_string(),
        )])
        .unwrap();
        let c = Config::from_layers(&[layer]).unwrap();
        assert_eq!(c.writer.partition_by, ["service", "date"]);
        let diags = check_toml("p.toml", "[writer]\npartition_by = \"service\"\n");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("array of names"), "{diags:?}");
        let diags = check_toml("p.toml", "[writer]\npartition_by = [\"host\", 3]\n");
        assert_eq!(diags[0].key.as_deref(), Some("writer.partition_by[1]"));
    }

    #[test]
    fn dead_letter_defaults_beside_the_output() {
        let c = Config::new("/tmp/a/out.parquet");
        assert_eq!(
            c.dead_letter_path(),
            PathBuf::from("/tmp/a/out.parquet.deadletter.ndjson")
        );
    }

    #[test]
    fn durations_parse() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("250µs"), Duration::from_micros(250));
        assert_eq!(ok("2ms"), Duration::from_millis(2));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("2d"), Duration::from_secs(172_800));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok(" 10s "), Duration::from_secs(10));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        for bad in [
            "",
            "30",
            "s",
            "1.5",
            "10 s",
            "1x",
            "1.2.3s",
            "-1s",
            "1.0000000001s",
            "1..s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse_duration("30").unwrap_err();
        assert!(e.contains("unit"), "{e}");
        assert!(parse_duration("99999999999999999999999h").is_err());
    }

    #[test]
    fn durations_format_and_round_trip() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_micros(250), "250us"),
            (Duration::from_millis(2), "2ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(86_400), "24h"),
            (Duration::new(1, 1), "1000000001ns"),
        ];
        for (d, s) in cases {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s).unwrap(), d, "{s}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr("9100").unwrap().to_string(),
            "127.0.0.1:9100"
        );
        assert_eq!(
            parse_listen_addr("localhost:9100").unwrap().to_string(),
            "127.0.0.1:9100"
        );
        assert_eq!(
            parse_listen_addr("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(
            parse_listen_addr("[::1]:9100").unwrap().to_string(),
            "[::1]:9100"
        );
        for bad in ["", "99999", "host", "example.com:80", "1.2.3.4"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad:?}");
        }
    }

    /// A configuration with every option set to something other than its default.
    fn everything_set() -> Config {
        Config {
            out: "/data/logs.parquet".into(),
            dead_letter: Some("/data/dead.ndjson".into()),
            source: Some("http://127.0.0.1:8080/logs/{1..10}.json".into()),
            files: vec!["/var/log/app/*.ndjson".into(), "-".into()],
            every: Some(Duration::from_secs(30)),
            queue_capacity: 3,
            threads: ThreadConfig {
                parse: Some(5),
                compute: Some(2),
                cpus: Some(vec![1, 3]),
                pin: false,
                pin_shared: true,
            },
            fetch: FetchConfig {
                connections_per_host: 4,
                max_in_flight: 64,
                max_attempts: 7,
                connect_timeout: Duration::from_millis(1500),
                request_timeout: Duration::from_secs(90),
                first_byte_timeout: Duration::from_secs(9),
                idle_timeout: Duration::from_secs(8),
                total_timeout: Duration::from_secs(700),
                max_retry_after: Duration::from_secs(11),
                shard: Some(Shard { index: 2, count: 5 }),
                rate_limit: Some(40),
                rate_burst: Some(3),
                accept_encoding: "gzip".into(),
                headers: vec!["Authorization: Bearer ${env:TOKEN}".into(), "X-A: b".into()],
                follow_link_next: true,
                max_link_pages: 77,
                records_field: Some("data.items".into()),
                cursor_field: Some("meta.next".into()),
                cursor_param: "page_token".into(),
                // Not ureq: it excludes continuous mode, which this config turns on.
                engine: FetchEngine::Mio,
                max_redirects: 2,
                redirect_other_hosts: true,
                max_body_bytes: 1000,
                tls_ca_file: Some("/etc/pinflow/ca.pem".into()),
                tls_client_cert: Some("/etc/pinflow/client.pem".into()),
                tls_client_key: Some("/etc/pinflow/client.key".into()),
                batch_max_items: 17,
                batch_max_bytes: 4096,
                batch_max_delay: Duration::from_micros(250),
            },
            writer: WriterConfig {
                row_group_rows: 999,
                row_group_max_bytes: 1 << 22,
                data_page_bytes: 1 << 19,
                compression: Compression::Zstd(7),
                rotate_interval: Some(Duration::from_secs(3600)),
                flush_interval: Duration::from_millis(1500),
                rotate_rows: Some(100_000),
                rotate_bytes: Some(1 << 28),
                partition_by: vec!["service".into(), "date".into()],
                max_open_partitions: 9,
                dead_letter_max_bytes: 1 << 20,
                dead_letter_keep: 2,
                // Not with continuous mode, which this config turns on.
                journal: false,
            },
            schema: SchemaConfig {
                fields: vec![
                    "id:int64".into(),
                    "http.status:int64 as status".into(),
                    "service:string".into(),
                    "lat:list<float64>".into(),
                ],
                infer: false,
                unknown: "extra".into(),
                stats: Some(vec!["lat:mean,p99".into()]),
            },
            metrics: MetricsConfig {
                addr: Some("0.0.0.0:9100".parse().unwrap()),
            },
            log: LogConfig {
                format: LogFormat::Json,
                level: "debug".into(),
                progress: Progress::Never,
            },
        }
    }

    fn leaf_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => leaf_paths(t, &path, out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn the_schema_lists_exactly_the_fields() {
        let table = toml::Table::try_from(everything_set()).unwrap();
        let mut fields = Vec::new();
        leaf_paths(&table, "", &mut fields);
        fields.sort();
        let mut keys: Vec<String> = key_paths().map(String::from).collect();
        keys.sort();
        assert_eq!(fields, keys);
        // Sections in KEYS come in SECTIONS order, so the default file groups them.
        let order: Vec<&str> = KEYS
            .iter()
            .filter_map(|k| k.path.split_once('.').map(|(s, _)| s))
            .collect();
        let mut dedup = order.clone();
        dedup.dedup();
        assert_eq!(dedup, SECTIONS.iter().map(|(s, _)| *s).collect::<Vec<_>>());
    }

    #[test]
    fn the_ureq_engine_is_read_and_excludes_continuous_mode() {
        let cfg = Config::from_toml("[fetch]\nengine = \"ureq\"\n").unwrap();
        assert_eq!(cfg.fetch.engine, FetchEngine::Ureq);
        let err = Config::from_toml("every = \"1s\"\n[fetch]\nengine = \"ureq\"\n").unwrap_err();
        assert!(format!("{err:?}").contains("continuous mode"), "{err:?}");
    }

    #[test]
    fn every_option_round_trips_through_toml() {
        let cfg = everything_set();
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let text = cfg.to_toml().unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), cfg, "{text}");
        let layer = ConfigLayer::from_toml("t.toml", &text).unwrap();
        for k in key_paths() {
            assert!(layer.is_set(k), "{k} not written:\n{text}");
        }
        assert!(text.contains("compression = \"zstd:7\""), "{text}");
        assert!(text.contains("batch_max_delay = \"250us\""), "{text}");
    }

    #[test]
    fn the_default_file_is_the_defaults() {
        let text = Config::default_toml();
        assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
        for k in key_paths() {
            let name = k.rsplit('.').next().unwrap();
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{name} = "))
                    || l.starts_with(&format!("# {name} = "))),
                "{k} missing"
            );
            assert!(text.contains(&env_name(k)), "{k}");
        }
        // The commented-out examples are valid too.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = Config::from_toml(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(cfg.threads.cpus, Some(vec![0, 1, 2, 3]));
        assert_eq!(cfg.metrics.addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(cfg.every, Some(Duration::from_secs(30)));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_all_reported_with_lines() {
        let text = "queue_capacity = \"8\"\n\
                    [fetch]\n\
                    max_inflight = 3\n\
                    request_timeout = 30\n\
                    max_in_flight = 0\n\
                    [threads]\n\
                    cpus = [0, -1]\n\
                    [writer]\n\
                    compression = \"lzo\"\n\
                    [bogus]\n";
        let diags = check_toml("p.toml", text);
        let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        let expect = [
            "p.toml:1: queue_capacity: expected a non-negative integer, got the string \"8\"",
            "p.toml:3: fetch.max_inflight: unknown key; did you mean `fetch.max_in_flight`?",
            "p.toml:4: fetch.request_timeout: expected a duration string such as \"30s\", got the integer 30",
            "p.toml:5: fetch.max_in_flight: must be at least 1",
            "p.toml:7: threads.cpus[1]: must not be negative, got -1",
            "p.toml:9: writer.compression: `lzo` is not none, snappy, lz4, zstd or zstd:LEVEL (LEVEL 1..=22)",
            "p.toml:10: bogus: unknown key",
        ];
        assert_eq!(shown, expect);
    }

    #[test]
    fn syntax_errors_have_lines() {
        let diags = check_toml("p.toml", "queue_capacity = 4\n[fetch\nmax_in_flight = 2\n");
        assert!(!diags.is_empty());
        assert_eq!(diags[0].origin.as_ref().unwrap().line, Some(2), "{diags:?}");
        assert!(diags[0].message.contains("invalid TOML"), "{diags:?}");
        let diags = check_toml("p.toml", "queue_capacity = 4\nqueue_capacity = 5\n");
        assert!(!diags.is_empty());
        // Recovery leaves a table where the broken header was; only the syntax error is shown.
        let diags = check_toml("p.toml", "[fetch\nmax_in_flight = 2\nqueue_capacity = 5\n");
        assert!(
            diags.iter().all(|d| d.message.contains("invalid TOML")),
            "{diags:?}"
        );
    }

    #[test]
    fn sections_must_be_tables() {
        let diags = check_toml("p.toml", "fetch = 3\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].key.as_deref(), Some("fetch"));
        // Dotted keys and inline tables work like [sections].
        let cfg = Config::from_toml("fetch.max_in_flight = 7\nwriter = { row_group_rows = 9 }\n")
            .unwrap();
        assert_eq!(cfg.fetch.max_in_flight, 7);
        assert_eq!(cfg.writer.row_group_rows, 9);
    }

    fn env(pairs: &[(&str, &str)]) -> std::result::Result<ConfigLayer, Vec<Diagnostic>> {
        ConfigLayer::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn environment_variables() {
        let layer = env(&[
            ("PATH", "/bin"),
            ("PINFLOW_QUEUE_CAPACITY", "4"),
            ("PINFLOW_FETCH_MAX_IN_FLIGHT", "256"),
            ("PINFLOW_FETCH_REQUEST_TIMEOUT", "1.5s"),
            ("PINFLOW_WRITER_COMPRESSION", "zstd:5"),
            ("PINFLOW_METRICS_ADDR", "9100"),
            ("PINFLOW_THREADS_CPUS", "0, 2"),
            ("PINFLOW_THREADS_PIN", "false"),
            ("PINFLOW_LOG_FORMAT", "json"),
            ("PINFLOW_OUT", "o.parquet"),
        ])
        .unwrap();
        assert!(layer.is_set("fetch.max_in_flight"));
        assert_eq!(
            layer.origin("queue_capacity").unwrap().to_string(),
            "PINFLOW_QUEUE_CAPACITY"
        );
        let c = Config::from_layers(&[layer]).unwrap();
        assert_eq!(c.queue_capacity, 4);
        assert_eq!(c.fetch.max_in_flight, 256);
        assert_eq!(c.fetch.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.writer.compression, Compression::Zstd(5));
        assert_eq!(c.metrics.addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.threads.cpus, Some(vec![0, 2]));
        assert!(!c.threads.pin);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.out, PathBuf::from("o.parquet"));
    }

    #[test]
    fn bad_environment_variables_are_named() {
        let diags = env(&[
            ("PINFLOW_FETCH_MAX_INFLIGHT", "3"),
            ("PINFLOW_QUEUE_CAPACITY", "many"),
            ("PINFLOW_EVERY", "30"),
            ("PINFLOW_BOGUS", "1"),
        ])
        .unwrap_err();
        let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        // Sorted by variable name.
        assert_eq!(
            shown,
            [
                "PINFLOW_BOGUS: unknown configuration variable",
                "PINFLOW_EVERY: every: `30` is not a duration: a number needs a unit: ns, us, \
                 ms, s, m, h or d (e.g. \"250us\", \"1.5s\", \"5m\")",
                "PINFLOW_FETCH_MAX_INFLIGHT: unknown configuration variable; did you mean \
                 PINFLOW_FETCH_MAX_IN_FLIGHT?",
                "PINFLOW_QUEUE_CAPACITY: queue_capacity: `many` is not a non-negative integer",
            ]
        );
    }

    #[test]
    fn later_layers_override_earlier_ones_and_problems_name_their_origin() {
        let file = ConfigLayer::from_toml(
            "p.toml",
            "queue_capacity = 2\n[fetch]\nmax_in_flight = 0\nmax_attempts = 9\n",
        )
        .unwrap();
        let environment = env(&[("PINFLOW_FETCH_MAX_ATTEMPTS", "4")]).unwrap();
        let layers = [file, environment];
        let c = Config::from_layers(&layers).unwrap();
        assert_eq!(c.queue_capacity, 2);
        assert_eq!(c.fetch.max_attempts, 4);
        assert_eq!(c.fetch.connections_per_host, 32);
        let problems: Vec<String> = c
            .problems_in(&layers)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            problems,
            ["p.toml:3: fetch.max_in_flight: must be at least 1"]
        );
    }
}

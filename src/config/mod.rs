//! One typed configuration for a run, and where its values come from.
//!
//! Library users build a [`Config`] in code; the `pinflow` command fills one from layers, each
//! overriding the one before: built-in defaults ([`Config::default`]) < a TOML file
//! ([`ConfigLayer::from_toml`]) < `PINFLOW_*` environment variables ([`ConfigLayer::from_env`])
//! < command-line flags (`kafka.properties` overridden property by property, not as a whole
//! list). Both go through [`Config::validate`] before anything starts.
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

mod check;
mod enrich;
mod headers;
mod kind;
mod layers;
mod registry;
mod render;
mod tolerance;
mod transforms;
mod values;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{FieldSpec, Layout, StatSpec, Unknown};

/// File descriptors kept, whatever the configuration, for all but the fetcher's connections
/// (see [`Config::descriptor_reserve`]): standard streams, the poll and its waker, the output
/// and its temporary file, the dead-letter file, the journal and the locks, a URL file, the
/// resolver's sockets, TLS files, with room to spare.
pub const DESCRIPTOR_RESERVE: usize = 32;
/// File descriptors kept for the metrics endpoint's listener and its connections, when it is on.
pub const METRICS_DESCRIPTORS: usize = 16;

#[doc(hidden)]
pub use check::fuzz_check;
pub use check::{check_config, check_toml, Diagnostic, Origin};
pub use enrich::{
    url_template, EnrichConfig, Position as EnrichPosition, UrlPart, ENRICH_TYPES, ON_ERROR,
};
pub use headers::resolve_headers;
pub use layers::ConfigLayer;
pub use registry::{
    env_name, key_paths, option, options, Bounds, Flag, OptionSpec, Topic, ENV_PREFIX,
};
pub use render::{reference_markdown, REFERENCE_BEGIN, REFERENCE_END};
pub use tolerance::DeadLetterTolerance;
pub(crate) use transforms::metadata_problem;
pub use transforms::{Position, SetValue, TransformConfig, ACTIONS, CAST_TYPES, METADATA};
pub use values::{
    format_bytes, format_duration, parse_bytes, parse_duration, parse_listen_addr, Compression,
    FetchEngine, LogFormat, Progress, Shard,
};

use values::{duration_serde, opt_addr_serde, opt_duration_serde, opt_shard_serde};

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
    /// Growing NDJSON files to follow until stopped (`pinflow run --tail`): a path or a glob
    /// pattern. See [`Source::tail`](crate::Source::tail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    /// How often the tail looks at its files and its pattern's matches when nothing woke it
    /// (inotify, where there is one, wakes it at once).
    #[serde(with = "duration_serde")]
    pub tail_poll_interval: Duration,
    /// How long a file rotated away (or deleted) must stay unchanged, once read to its end,
    /// before the tail lets go of it: a writer may still append to it for a moment.
    #[serde(with = "duration_serde")]
    pub tail_rotate_wait: Duration,
    /// How `files` are read: `auto` (by name: `.csv` and `.csv.gz` are CSV, `.json` one
    /// document, anything else NDJSON), `ndjson` or `csv` (every input, stdin too).
    pub format: String,
    /// The CSV field delimiter: one ASCII character (`","`, `";"`, `"\t"`), or `tab`.
    pub csv_delimiter: String,
    /// Whether a CSV file's first row names its columns; without one they are `column0`,
    /// `column1`, ...
    pub csv_header: bool,
    /// Continuous mode: poll the sources again every this long until signalled.
    /// `None` (the default) runs once.
    #[serde(with = "opt_duration_serde", skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// Filters applied after the `[[transform]]` steps, in order (`--filter`): each an
    /// expression as in a `[[transform]] filter`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<String>,
    /// Columns removed after the `[[transform]]` steps and the filters (`--drop`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// Columns renamed last, each `OLD=NEW` (`--rename`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<String>,
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
    /// Time windows: per-key aggregates over event time (off unless `window.size` is set).
    pub window: WindowConfig,
    /// The Prometheus metrics and health endpoint.
    pub metrics: MetricsConfig,
    /// The HTTP receive endpoint (a source, when its address is set).
    pub listen: ListenConfig,
    /// Logging and the progress line.
    pub log: LogConfig,
    /// Kafka: the output (`--out kafka://...`) and the source (`--kafka-brokers`).
    pub kafka: KafkaConfig,
    /// Outputs that need more than a path: `[output.s3]`.
    pub output: OutputConfig,
    /// Lookups adding columns to every row, in file order (`[[enrich]]` tables; see
    /// [`crate::enrich`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enrich: Vec<EnrichConfig>,
    /// The `[[transform]]` tables, in file order (see [`TransformConfig`] and
    /// [`crate::transform::config`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<TransformConfig>,
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
    /// On a stop (SIGTERM, [`Pipeline::stop_flag`](crate::Pipeline::stop_flag)), how long
    /// requests already on a connection may still finish; then they are cancelled (not
    /// failed: a resumed run fetches them). Requests not yet sent are cancelled at once.
    #[serde(with = "duration_serde")]
    pub shutdown_timeout: Duration,
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
    /// Continuous mode without duplicates: a row whose value in this column was already
    /// written (within the last `dedupe_window` keys) is dropped and counted as filtered (see
    /// [`crate::transform::dedupe`]). Unset: every pass writes everything it fetches again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
    /// How many of the latest keys `dedupe_key` remembers (the bound on its memory).
    pub dedupe_window: usize,
    /// `{since}` polling: the column (timestamp or int64) whose highest value among the rows
    /// that reached the writer fills the `{since}` placeholder of the source's URLs at the
    /// start of each pass (see [`crate::source::fill_since`]); with `writer.journal` it is
    /// saved with every checkpoint, and a restarted run starts from it. Needs `{since}` in
    /// the source's URLs, and the placeholder needs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_field: Option<String>,
    /// What `{since}` is before any row of `since_field` was written (empty by default).
    pub since_start: String,
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
    /// Response bytes held by all connections together (the mio fetcher): past it, sockets are
    /// not read until some are released (back-pressure, never a failure); one connection always
    /// proceeds, so a single body larger than this still completes (or fails by
    /// `max_body_bytes`).
    pub max_buffered_bytes: usize,
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
    /// Finalize the current Parquet file and start a new one after this long (with a journal,
    /// a checkpoint). `None` (the default): one file per run, except for runs that go on
    /// until stopped (`every`, a tail, a Kafka source without `exit_at_end`), which rotate
    /// hourly.
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
    /// With a Kafka source: every file holds the rows of one topic partition and is named by
    /// its first offset, `out/topic=T/partition=P/T+P+OFFSET.parquet` (`OFFSET` zero-padded
    /// to 20 digits); `out` is then the dataset's root directory. Needs `journal`.
    pub file_per_kafka_partition: bool,
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
    /// record exactly once (see docs/operations.md, "Crash safety and resume"). One-shot runs without pagination only.
    pub journal: bool,
    /// Replace an output file that already exists. Off (the default): a run whose output
    /// file (unrotated, unpartitioned) exists is refused before anything is fetched. Rotated
    /// and partitioned outputs never replace a file: their new files take free names.
    pub overwrite: bool,
    /// How many dead-lettered records the run may have and still succeed: a number of
    /// records or a percentage of the records found (`"5"`, `"2.5%"`; see
    /// [`DeadLetterTolerance`]). Beyond it `pinflow` exits with status 4. Default `"0"`.
    pub max_dead_letters: String,
}

impl WriterConfig {
    /// [`max_dead_letters`](Self::max_dead_letters), read; the default (none) where it does
    /// not parse, which [`Config::validate`] reports.
    pub fn dead_letter_tolerance(&self) -> DeadLetterTolerance {
        self.max_dead_letters.parse().unwrap_or_default()
    }
}

/// Which columns are written and which statistics are added (see [`crate::schema`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaConfig {
    /// The fields, each `PATH:TYPE` or `PATH:TYPE as COLUMN` (`"http.status:int64"`). Empty:
    /// decided by `infer`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// With no `fields`: `Some(true)` infers them from the first records (see
    /// [`crate::parse::infer`]); `Some(false)` takes the built-in log layout; `None` (unset)
    /// decides from the first records: the built-in layout when every field they hold is one of
    /// its own, inference otherwise, so that records of another shape never become rows of
    /// nulls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infer: Option<bool>,
    /// Fields not in the schema: `ignore`, `reject` (dead-letter the record) or `extra` (keep
    /// them as a JSON object in the column `_extra`).
    pub unknown: String,
    /// Statistics, each `COLUMN` (count, mean, min, max, variance) or `COLUMN:OP,OP,...` over a
    /// numeric list column. Unset: the default statistics of `values` when it is a numeric
    /// list; `[]`: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<String>>,
    /// How `timestamp` fields are read: `rfc3339` (strings with an offset; a number is an
    /// epoch time of the unit its magnitude says), `epoch_s`, `epoch_ms`, `epoch_us`,
    /// `epoch_ns`, or a strftime pattern (see [`crate::time::TimeFormat`]).
    pub timestamp_format: String,
    /// The zone of date-times that carry no offset: `UTC` or a fixed offset such as `+02:00`
    /// (see [`crate::time::parse_zone`]). Unset: such an RFC 3339 date-time is dead-lettered,
    /// and a pattern without `%z` is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_zone: Option<String>,
    /// Lineage columns added to every row: `source` (`_source`: the URL, its password
    /// redacted, or the file and line range) and `fetched_at` (`_fetched_at`: when its body
    /// was fetched or read). See [`crate::schema::Lineage`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            fields: Vec::new(),
            infer: None,
            unknown: "ignore".into(),
            stats: None,
            timestamp_format: "rfc3339".into(),
            timestamp_zone: None,
            lineage: Vec::new(),
        }
    }
}

impl SchemaConfig {
    /// The fixed layout, or `None` when it is decided from the records (inferred, or chosen
    /// by [`SchemaConfig::decides_from_records`]). Errors name the key.
    pub fn layout(&self) -> Result<Option<Layout>> {
        if self.fields.is_empty() && self.infer != Some(false) {
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

    /// Whether nothing says what the schema is (no `fields`, `infer` unset): the first records
    /// decide between the built-in log layout and inference (see [`SchemaConfig::infer`]).
    pub fn decides_from_records(&self) -> bool {
        self.fields.is_empty() && self.infer.is_none()
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
        let lineage = crate::schema::Lineage::from_names(&self.lineage)?;
        Layout::new(fields, unknown, stats)?
            .with_timestamps(self.timestamp_rule()?)
            .with_lineage(lineage)
    }

    /// How `timestamp` fields are read, from `timestamp_format` and `timestamp_zone`.
    pub fn timestamp_rule(&self) -> std::result::Result<crate::time::TimestampRule, String> {
        let format: crate::time::TimeFormat = self.timestamp_format.parse()?;
        let zone = self
            .timestamp_zone
            .as_deref()
            .map(crate::time::parse_zone)
            .transpose()?;
        if zone.is_none() && !format.has_offset() {
            return Err(format!(
                "the timestamp format `{}` has no %z: set schema.timestamp_zone (UTC or an \
                 offset such as +02:00) to say which zone its times are in",
                self.timestamp_format
            ));
        }
        Ok(crate::time::TimestampRule { format, zone })
    }
}

/// Time windows (`[window]`): per-key aggregates over event time, written as rows instead of
/// the records. Off unless [`size`](WindowConfig::size) is set; see docs/usage.md, "Time
/// windows", and [`WindowConfig::spec`] for the engine's form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// The window size; `None` (the default) turns windows off.
    #[serde(with = "opt_duration_serde", skip_serializing_if = "Option::is_none")]
    pub size: Option<Duration>,
    /// Hopping windows: a new window every `hop` (at most `size`). `None`: tumbling.
    #[serde(with = "opt_duration_serde", skip_serializing_if = "Option::is_none")]
    pub hop: Option<Duration>,
    /// The event-time column (a timestamp, or an integer of epoch microseconds).
    pub time: String,
    /// Key columns (strings or integers); empty: one global key.
    pub by: Vec<String>,
    /// The watermark trails the highest event time seen by this much.
    #[serde(with = "duration_serde")]
    pub lateness: Duration,
    /// Processing time after which a silent source stops holding windows open; `None`: never.
    #[serde(with = "opt_duration_serde", skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
    /// The most open (key, window) pairs.
    pub max_open: usize,
    /// Past `max_open`: `close-oldest` or `dead-letter`.
    pub overflow: String,
    /// Threads holding the windows: 1 runs them on the writer's thread; more spread the keys
    /// over that many window threads by hash.
    pub threads: usize,
    /// Where the records themselves go as well (Parquet, rotated like `out`); `None`: only
    /// the window rows are written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<PathBuf>,
    /// Field -> aggregates (`count`, `sum`, `mean`, `var`, `min`, `max`, `pNN`, `first`,
    /// `last`). Columns follow the field names' order (a TOML table has no other), each field's
    /// aggregates in the order given.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub aggregates: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            size: None,
            hop: None,
            time: "ts".into(),
            by: Vec::new(),
            lateness: Duration::ZERO,
            idle: None,
            max_open: 1_000_000,
            overflow: "close-oldest".into(),
            threads: 1,
            records: None,
            aggregates: std::collections::BTreeMap::new(),
        }
    }
}

impl WindowConfig {
    /// Whether windows are on (`size` is set).
    pub fn enabled(&self) -> bool {
        self.size.is_some()
    }

    /// The engine's form of these settings, for [`PipelineBuilder::window`](crate::PipelineBuilder::window)
    /// and the writer; an error says what cannot be read (an aggregate name), and
    /// [`WindowSpec::validate`](crate::window::WindowSpec::validate) the rest. Windows must
    /// be on.
    pub fn spec(&self) -> std::result::Result<crate::window::WindowSpec, String> {
        let size = self
            .size
            .ok_or_else(|| "windows are off: window.size is not set".to_string())?;
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let aggregates = self
            .aggregates
            .iter()
            .map(|(field, aggs)| {
                let aggs = crate::window::parse_aggregates(&aggs.join(","))
                    .map_err(|why| format!("{field}: {why}"))?;
                Ok((field.clone(), aggs))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(crate::window::WindowSpec {
            size_us: micros(size),
            hop_us: micros(self.hop.unwrap_or(size)),
            time_field: self.time.clone(),
            by: self.by.clone(),
            lateness_us: micros(self.lateness),
            idle: self.idle,
            max_open: self.max_open,
            overflow: window_overflow(&self.overflow)?,
            aggregates,
        })
    }
}

/// `window.overflow`: `close-oldest` or `dead-letter` (the engine's `close_oldest` and
/// `dead_letter` are read too).
fn window_overflow(text: &str) -> std::result::Result<crate::window::Overflow, String> {
    crate::window::Overflow::parse(&text.replace('-', "_"))
        .map_err(|_| format!("`{text}` is not a policy: close-oldest or dead-letter"))
}

impl Config {
    /// The window spec, when windows are on ([`WindowConfig::spec`]).
    pub(crate) fn window_spec(&self) -> std::result::Result<crate::window::WindowSpec, String> {
        self.window.spec()
    }

    /// Checks the window's columns against the rows' schema (the time column, the keys, the
    /// aggregated fields): the error names the key to change.
    pub(crate) fn window_against(
        &self,
        rows: &arrow_schema::SchemaRef,
    ) -> std::result::Result<(), (String, String)> {
        let spec = self
            .window_spec()
            .map_err(|why| ("window".to_string(), why))?;
        window_spec_against(&spec, rows)
    }
}

/// Whether windows of `spec` can run on rows of `schema`: the engine's own check, with the
/// configuration key each problem is about (`window.time`, `window.by`, `window.aggregates`).
pub(crate) fn window_spec_against(
    spec: &crate::window::WindowSpec,
    schema: &arrow_schema::SchemaRef,
) -> std::result::Result<(), (String, String)> {
    let spec = std::sync::Arc::new(spec.clone());
    match crate::window::WindowOperator::new(spec, schema) {
        Ok(_) => Ok(()),
        Err(Error::Config { what, why }) => Err((what, why)),
        Err(e) => Err(("window".to_string(), e.to_string())),
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

/// The HTTP receive endpoint (`[listen]`, see [`crate::ingest::listen`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Address to listen on; `None` (the default): no endpoint.
    #[serde(with = "opt_addr_serde", skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// The bearer token clients must send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Largest request body, as sent.
    pub max_body_bytes: usize,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time for a request's headers.
    #[serde(with = "duration_serde")]
    pub header_timeout: Duration,
    /// Time for a request's body.
    #[serde(with = "duration_serde")]
    pub body_timeout: Duration,
    /// Idle kept-alive connections are closed after this.
    #[serde(with = "duration_serde")]
    pub idle_timeout: Duration,
    /// How long a request waits for its commit.
    #[serde(with = "duration_serde")]
    pub ack_timeout: Duration,
    /// TLS: the server's PEM certificate chain, leaf first. Needs `tls_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// TLS: PEM CA certificates; set, clients must present a certificate one of them issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
}

impl Default for ListenConfig {
    fn default() -> ListenConfig {
        ListenConfig {
            addr: None,
            token: None,
            max_body_bytes: 16 << 20,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            ack_timeout: Duration::from_secs(60),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// Kafka: the output (`--out kafka://HOST:PORT/TOPIC`; see [`crate::kafka`]) and the
/// consumer-group source (`--kafka-brokers`; see [`crate::ingest::kafka`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// The column whose value is each message's key; `None`: no key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
    /// librdkafka properties, each `name=value`, passed through (values never logged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
    /// The Kafka source's brokers, `HOST:PORT[,HOST:PORT]`; set, the run reads Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// The topics the Kafka source subscribes to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// The Kafka source's consumer group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The Kafka source stops once every assigned partition reached the end it had when
    /// assigned, and what was read is durable (otherwise it runs until stopped).
    pub exit_at_end: bool,
    /// A batch of the Kafka source goes to the parse threads when it holds this many
    /// messages...
    pub batch_max_messages: usize,
    /// ...or this many message bytes (or when librdkafka has no more in hand).
    pub batch_max_bytes: usize,
}

impl KafkaConfig {
    /// The default of `kafka.batch_max_messages`: messages a batch holds at most.
    pub const DEFAULT_BATCH_MAX_MESSAGES: usize = 4096;
    /// The default of `kafka.batch_max_bytes`: message bytes a batch holds at most (about).
    pub const DEFAULT_BATCH_MAX_BYTES: usize = 1 << 20;

    /// Whether the run's source is a Kafka consumer group: `brokers`, `topics` and `group`
    /// all set.
    pub fn is_source(&self) -> bool {
        self.brokers.is_some() && self.group.is_some() && !self.topics.is_empty()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            key_field: None,
            properties: Vec::new(),
            brokers: None,
            topics: Vec::new(),
            group: None,
            exit_at_end: false,
            batch_max_messages: KafkaConfig::DEFAULT_BATCH_MAX_MESSAGES,
            batch_max_bytes: KafkaConfig::DEFAULT_BATCH_MAX_BYTES,
        }
    }
}

// By hand: a property's value may be a secret (`sasl.password=...`); only names show.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .properties
            .iter()
            .map(|p| p.split('=').next().unwrap_or_default())
            .collect();
        f.debug_struct("KafkaConfig")
            .field("key_field", &self.key_field)
            .field("properties", &names)
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("exit_at_end", &self.exit_at_end)
            .field("batch_max_messages", &self.batch_max_messages)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .finish()
    }
}

/// Outputs that need more than a path (`[output.*]` tables).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// `--out s3://BUCKET/PREFIX/` (feature `s3`; see docs/object-storage.md).
    pub s3: S3Config,
}

/// The object-storage output (`--out s3://BUCKET/PREFIX/`). Credentials are not here: they
/// are read from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, the
/// way AWS tools read them, and never logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The store's URL; `None`: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, or AWS's own
    /// (`https://s3.REGION.amazonaws.com`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region signed for; `None`: `AWS_REGION`, `AWS_DEFAULT_REGION`, or `us-east-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) even for a named host (MinIO, Ceph);
    /// an IP address or `localhost` always gets it.
    pub path_style: bool,
    /// A PEM file of the CA certificates an `https://` endpoint is checked against (a private
    /// CA); `None`: Mozilla's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Where files are written before they are uploaded; `None`:
    /// `pinflow-s3-staging/BUCKET/PREFIX` in the working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staging_dir: Option<PathBuf>,
    /// Staged bytes past which the writer waits for the uploader (back-pressure).
    pub staging_max_bytes: u64,
    /// The size of a multipart upload's parts, and the size from which a file goes up in
    /// parts (larger for a file that would need more than 10,000).
    pub part_size: u64,
    /// Attempts per request before a transient failure fails the run, at its end or after a
    /// stop (while it goes on, a store that stays away is waited for).
    pub attempts: u32,
    /// The bytes one ranged GET of a `--files s3://` object asks for: a dropped connection
    /// costs at most this, read again.
    pub read_chunk_bytes: u64,
    /// Requests to the store at once: files uploaded side by side, and the parts of one
    /// multipart upload sent side by side, together at most this many.
    pub upload_concurrency: u32,
    /// How long the uploader may go without a request succeeding, while files wait, before
    /// `/readyz` reports it stuck.
    #[serde(with = "duration_serde")]
    pub stall_after: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            path_style: false,
            ca_file: None,
            staging_dir: None,
            staging_max_bytes: 1 << 30,
            part_size: 8 << 20,
            attempts: 8,
            read_chunk_bytes: 8 << 20,
            upload_concurrency: 4,
            stall_after: Duration::from_secs(900),
        }
    }
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

/// The default of `fetch.shutdown_timeout`: well under the 60 s that systemd (and
/// deploy/pinflow.service) give a unit to stop, leaving time to finalize the files.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// The smallest part of a multipart upload S3 accepts (except the last): the least
/// `output.s3.part_size`.
pub const S3_MIN_PART_SIZE: u64 = 5 << 20;

/// The longest `fetch.shutdown_timeout` accepted: a stop that may wait longer is not one.
pub const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3600);

/// The log levels [`LogConfig::level`] accepts.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

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
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
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
            dedupe_key: None,
            dedupe_window: 1_000_000,
            since_field: None,
            since_start: String::new(),
            engine: FetchEngine::Mio,
            max_redirects: 5,
            redirect_other_hosts: false,
            max_body_bytes: 64 << 20,
            max_buffered_bytes: 256 << 20,
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
            file_per_kafka_partition: false,
            max_open_partitions: 64,
            dead_letter_max_bytes: 64 << 20,
            dead_letter_keep: 5,
            journal: false,
            overwrite: false,
            max_dead_letters: "0".into(),
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

/// The default of [`Config::tail_poll_interval`].
pub const DEFAULT_TAIL_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The default of [`Config::tail_rotate_wait`].
pub const DEFAULT_TAIL_ROTATE_WAIT: Duration = Duration::from_secs(5);

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
            tail: None,
            tail_poll_interval: DEFAULT_TAIL_POLL_INTERVAL,
            tail_rotate_wait: DEFAULT_TAIL_ROTATE_WAIT,
            format: "auto".into(),
            csv_delimiter: ",".into(),
            csv_header: true,
            every: None,
            queue_capacity: 4,
            threads: ThreadConfig::default(),
            fetch: FetchConfig::default(),
            writer: WriterConfig::default(),
            schema: SchemaConfig::default(),
            window: WindowConfig::default(),
            metrics: MetricsConfig::default(),
            listen: ListenConfig::default(),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            output: OutputConfig::default(),
            enrich: Vec::new(),
            filter: Vec::new(),
            drop: Vec::new(),
            rename: Vec::new(),
            transform: Vec::new(),
        }
    }

    /// The dead-letter path: the configured one, or `<out>.deadletter.ndjson`.
    pub fn dead_letter_path(&self) -> PathBuf {
        match &self.dead_letter {
            Some(p) => p.clone(),
            // `kafka://HOST:PORT/TOPIC`: TOPIC.deadletter.ndjson in the working directory.
            None if crate::kafka::is_kafka_url(&self.out) => {
                let url = self.out.to_string_lossy();
                let topic = url.rsplit('/').next().unwrap_or("kafka");
                PathBuf::from(format!("{topic}.deadletter.ndjson"))
            }
            None => crate::fsutil::with_suffix(&self.out, ".deadletter.ndjson"),
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

    /// File descriptors kept for everything but the HTTP fetcher's connections, which get
    /// the rest of `RLIMIT_NOFILE` (`ulimit -n`): [`DESCRIPTOR_RESERVE`] for standard streams,
    /// the poll, the output and its temporary file, the dead-letter file and its rotation, the
    /// journal and the locks, a URL file, the resolver and TLS files; plus one per partition
    /// file open at once (`writer.max_open_partitions`, when partitioning), plus
    /// [`METRICS_DESCRIPTORS`] for the metrics endpoint's connections when it is on.
    ///
    /// ```
    /// let cfg = pinflow::Config::new("out.parquet");
    /// assert_eq!(cfg.descriptor_reserve(), pinflow::config::DESCRIPTOR_RESERVE + 1);
    /// ```
    pub fn descriptor_reserve(&self) -> usize {
        let partitions = if self.writer.partition_by.is_empty() {
            1
        } else {
            self.writer.max_open_partitions
        };
        let metrics = if self.metrics.addr.is_some() {
            METRICS_DESCRIPTORS
        } else {
            0
        };
        DESCRIPTOR_RESERVE + partitions + metrics
    }

    /// Rejects values that cannot work, naming the option by its key path (the first of
    /// [`Config::problems`]).
    pub fn validate(&self) -> Result<()> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some(d) => Err(Error::config(d.key.unwrap_or_default(), d.message)),
        }
    }

    /// Builds a configuration from layers over the defaults, each overriding the ones before
    /// it (typically a file, then the environment): a value replaces the earlier one, except
    /// `kafka.properties`, where a layer replaces the properties it sets (by name or alias) and
    /// keeps the others. The values are checked for their type and form when each layer is
    /// made; this does not run [`Config::validate`].
    pub fn from_layers(layers: &[ConfigLayer]) -> std::result::Result<Config, Vec<Diagnostic>> {
        layers::stack(layers).try_into::<Config>().map_err(|e| {
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
        match check::check("configuration", text) {
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
}

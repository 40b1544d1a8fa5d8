//! The `pinflow` command: `demo`, `run`, `bench` and `config`.
//!
//! Settings come from, each overriding the one before: built-in defaults, the `--config` TOML
//! file, `PINFLOW_*` environment variables, and the flags.
//!
//! Exit codes: 0 success; 1 the run could not be done (configuration, output, internal error);
//! 2 bad command line; 3 the run finished but some requests failed for good (their URLs and
//! reasons are in the dead-letter file).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use pinflow::config::{
    check_toml, parse_duration, parse_listen_addr, ConfigLayer, Diagnostic, LogFormat, Origin,
    Progress,
};
use pinflow::sim::{SimConfig, Simulator, Workload};
use pinflow::{metrics, Compression, Config, Pipeline, Source, Summary};

#[derive(Parser)]
#[command(
    name = "pinflow",
    version,
    about = "HTTP JSON logs → pinned-thread pipeline → Parquet, nothing lost",
    after_help = "Settings: built-in defaults < --config FILE < PINFLOW_* environment variables \
                  < flags. `pinflow config default` prints every setting with its default."
)]
struct Cli {
    /// TOML configuration file (`pinflow config default` prints a complete one).
    /// PINFLOW_* environment variables and flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve 20,000 generated log records from the built-in simulator and process them.
    Demo {
        /// Output Parquet file [default: pinflow-demo.parquet; the config file's `out` is
        /// not used].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Records to fetch (one per request).
        #[arg(long, default_value_t = 20_000)]
        records: u64,
        #[command(flatten)]
        opts: Options,
    },
    /// Fetch real endpoints: a URL file (one per line), `-` for stdin, or a template
    /// such as `http://host/logs/{1..20000}.json`.
    Run {
        /// URL file, `-`, or template with one `{START..END}` range [default: `source` from
        /// the config file or PINFLOW_SOURCE].
        #[arg(long, value_name = "SOURCE")]
        urls: Option<String>,
        /// Local files instead of URLs: paths, directories, glob patterns ('logs/*.ndjson'),
        /// or `-` for NDJSON on stdin [default: `files` from the config file].
        #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "urls")]
        files: Vec<String>,
        /// Output Parquet file [default: `out` from the config file or PINFLOW_OUT].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        #[command(flatten)]
        opts: Options,
    },
    /// Throughput benchmark against the built-in simulator.
    Bench {
        /// Records to process.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Floats per record.
        #[arg(long, default_value_t = 64)]
        values: usize,
        /// Records per response: 1 (one JSON object per request) or a page size (NDJSON).
        #[arg(long, default_value_t = 1)]
        per_response: u64,
        /// Output file (default: a temporary file, removed afterwards; the config file's
        /// `out` is not used).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Run three variants in one go against fresh simulators and print them as ratios:
        /// the mio fetcher, the ureq fallback, and mio with every simulator fault at 1 %.
        #[arg(long)]
        compare: bool,
        #[command(flatten)]
        opts: Options,
    },
    /// Serve the built-in log simulator until SIGINT/SIGTERM (for wrk, other clients, or a
    /// `pinflow run` in another process); prints its URLs, then its statistics on exit.
    Sim {
        /// Address to listen on; port 0 picks a free one (the printed URLs show it).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
        addr: SocketAddr,
        /// Records covered by the printed URL templates (the server answers any id).
        #[arg(long, default_value_t = 20_000)]
        records: u64,
        /// Floats per record.
        #[arg(long, default_value_t = 64)]
        values: usize,
        /// Records per NDJSON page (`/pages/{j}.ndjson`).
        #[arg(long, default_value_t = 1000)]
        page_size: u64,
    },
    /// Configuration files: check one, or print the defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Report every problem in a configuration file, each with its line; exit 1 if any.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print a complete configuration file: every key, its default and what it does.
    Default,
}

/// Flags that override the configuration. None has a clap default: a flag that is not given
/// leaves the file's or environment's value (or the built-in default shown in its help).
#[derive(Args, Clone)]
struct Options {
    /// Parse threads [default: derived from the cores].
    #[arg(long, value_name = "N")]
    parse_threads: Option<usize>,
    /// Compute threads; 0: the parse threads compute their own batches [default: derived from the cores, 0 below four worker cores].
    #[arg(long, value_name = "N")]
    compute_threads: Option<usize>,
    /// Comma-separated CPU ids to run on [default: all available].
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    cpus: Option<Vec<usize>>,
    /// Pin threads to cores [default] (overrides `threads.pin = false`).
    #[arg(long, overrides_with = "no_pin")]
    pin: bool,
    /// Do not pin threads to cores.
    #[arg(long, overrides_with = "pin")]
    no_pin: bool,
    /// Pin even when threads outnumber cores and share them [default: then nothing is pinned].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pin_shared: Option<bool>,
    /// Batches per queue between stages [default: 4].
    #[arg(long, value_name = "N")]
    queue_capacity: Option<usize>,
    /// Keep-alive connections per host [default: 32].
    #[arg(long, value_name = "N")]
    connections_per_host: Option<usize>,
    /// Requests in flight at once, all hosts together [default: 512].
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,
    /// Attempts per request on connection errors and timeouts [default: 3].
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// TCP connect timeout: a duration (5s, 500ms) or seconds [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    connect_timeout: Option<Duration>,
    /// Request timeout: a duration (30s, 1m) or seconds [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    request_timeout: Option<Duration>,
    /// No response byte this long after the request fails the attempt [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    first_byte_timeout: Option<Duration>,
    /// A response pausing this long between reads fails the attempt [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    idle_timeout: Option<Duration>,
    /// All attempts of a request and the waits between them, together [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    total_timeout: Option<Duration>,
    /// The longest Retry-After honoured [default: 1m].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    max_retry_after: Option<Duration>,
    /// Keep only shard K of N of the work items (K in 0..N; stable hash of the URL).
    #[arg(long, value_name = "K/N", value_parser = |s: &str| s.parse::<pinflow::config::Shard>())]
    shard: Option<pinflow::config::Shard>,
    /// At most N requests per second to each host [default: no limit].
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// Requests a host may get at once after a quiet spell [default: the rate limit].
    #[arg(long, value_name = "N")]
    rate_burst: Option<u32>,
    /// Accept-Encoding sent with requests; "" sends none [default: "gzip, deflate"].
    #[arg(long, value_name = "ENCODINGS")]
    accept_encoding: Option<String>,
    /// Extra request header `Name: value` (repeatable); `${env:VAR}` and `${file:PATH}` in the
    /// value are replaced at start, so tokens need not be on the command line.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Option<Vec<String>>,
    /// The fetcher: mio (event loop) or ureq (blocking threads, proxies) [default: mio].
    #[arg(long, value_name = "ENGINE", value_parser = |s: &str| s.parse::<pinflow::config::FetchEngine>())]
    engine: Option<pinflow::config::FetchEngine>,
    /// Follow `Link: <...>; rel="next"` pagination [default: off].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    follow_link_next: Option<bool>,
    /// Pages followed from one source URL at most [default: 100000].
    #[arg(long, value_name = "N")]
    max_link_pages: Option<u32>,
    /// The body is an envelope object; the records are the array at this dotted path.
    #[arg(long, value_name = "PATH")]
    records_field: Option<String>,
    /// Cursor pagination: the envelope's field (dotted path) holding the next page's cursor.
    #[arg(long, value_name = "PATH")]
    cursor_field: Option<String>,
    /// Query parameter carrying the cursor [default: cursor].
    #[arg(long, value_name = "NAME")]
    cursor_param: Option<String>,
    /// Redirects followed per request at most [default: 5].
    #[arg(long, value_name = "N")]
    max_redirects: Option<u32>,
    /// Let redirects lead to other hosts [default: same host only].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    redirect_other_hosts: Option<bool>,
    /// Largest accepted response body, in bytes [default: 67108864].
    #[arg(long, value_name = "N")]
    max_body_bytes: Option<usize>,
    /// PEM CA certificates trusted for https:// besides the built-in web PKI roots.
    #[arg(long, value_name = "PATH")]
    tls_ca_file: Option<PathBuf>,
    /// PEM client certificate chain for https:// servers that require mTLS.
    #[arg(long, value_name = "PATH")]
    tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, value_name = "PATH")]
    tls_client_key: Option<PathBuf>,
    /// A schema field, PATH:TYPE or PATH:TYPE as COLUMN (repeatable) [default: the built-in
    /// log layout].
    #[arg(long = "field", value_name = "PATH:TYPE", action = clap::ArgAction::Append)]
    fields: Option<Vec<String>>,
    /// Infer the fields from the first records [default: off].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    infer_schema: Option<bool>,
    /// Fields not in the schema: ignore, reject or extra [default: ignore].
    #[arg(long, value_name = "POLICY")]
    unknown_fields: Option<String>,
    /// Statistics of a numeric list column, COLUMN or COLUMN:OP,OP,... (repeatable)
    /// [default: count, mean, min, max, variance of `values`].
    #[arg(long = "stats", value_name = "SPEC", action = clap::ArgAction::Append)]
    stats: Option<Vec<String>>,
    /// Crash-safe resume through OUT.journal: run the same command again after a crash
    /// [default: off].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    journal: Option<bool>,
    /// Rows per Parquet row group [default: 65536].
    #[arg(long, value_name = "N")]
    row_group_rows: Option<usize>,
    /// ...or once its encoded size reaches N bytes; 0 no bound [default: 8388608].
    #[arg(long, value_name = "N")]
    row_group_max_bytes: Option<u64>,
    /// Uncompressed bytes per Parquet data page [default: 262144].
    #[arg(long, value_name = "N")]
    data_page_bytes: Option<usize>,
    /// none, snappy, lz4, zstd or zstd:LEVEL [default: snappy].
    #[arg(long, value_name = "C", value_parser = cli_compression)]
    compression: Option<Compression>,
    /// Close a row group once its oldest row has waited this long [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    flush_interval: Option<Duration>,
    /// Start a new Parquet file every N rows [default: no rotation by rows].
    #[arg(long, value_name = "N")]
    rotate_rows: Option<u64>,
    /// Start a new Parquet file once one reaches about N bytes [default: no rotation by size].
    #[arg(long, value_name = "N")]
    rotate_bytes: Option<u64>,
    /// Hive-style partitions by these comma-separated columns (and `date`, the UTC date of
    /// ts); --out is then a directory [default: none].
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    partition_by: Option<Vec<String>>,
    /// Partition files open at once at most [default: 64].
    #[arg(long, value_name = "N")]
    max_open_partitions: Option<usize>,
    /// Rotate the dead-letter file before it passes N bytes; 0 never [default: 67108864].
    #[arg(long, value_name = "N")]
    dead_letter_max_bytes: Option<u64>,
    /// Rotated dead-letter files kept (NAME.1 to NAME.N) [default: 5].
    #[arg(long, value_name = "N")]
    dead_letter_keep: Option<usize>,
    /// Dead-letter NDJSON file [default: OUT.deadletter.ndjson].
    #[arg(long, value_name = "PATH")]
    dead_letter: Option<PathBuf>,
    /// Continuous mode: poll the source again every DURATION (30s, 5m) until signalled
    /// [default: run once].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    every: Option<Duration>,
    /// Start a new Parquet file every DURATION (1h) in continuous mode [default: one file].
    #[arg(long, value_name = "DURATION", value_parser = cli_duration)]
    rotate_interval: Option<Duration>,
    /// Serve Prometheus metrics and health checks on HOST:PORT, or PORT for 127.0.0.1:PORT
    /// [default: off].
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    metrics_addr: Option<SocketAddr>,
    /// Log lines as text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Least severe messages shown: off, error, warn, info, debug, trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Progress line: auto (on a terminal), always, never [default: auto].
    #[arg(long, value_name = "WHEN")]
    progress: Option<Progress>,
}

/// A duration with a unit (`30s`, `250ms`, `1.5s`, `5m`), or a bare number of seconds.
fn cli_duration(s: &str) -> Result<Duration, String> {
    if s.trim().parse::<f64>().is_ok() {
        parse_duration(&format!("{}s", s.trim()))
    } else {
        parse_duration(s)
    }
}

fn cli_compression(s: &str) -> Result<Compression, String> {
    s.parse::<Compression>()
        .map_err(|_| format!("`{s}` is not none, snappy, lz4, zstd or zstd:LEVEL (LEVEL 1..=22)"))
}

/// Which configuration key each flag that was given set, for error messages.
type FlagsSet = Vec<(&'static str, &'static str)>;

impl Options {
    /// Writes the flags that were given over `c`.
    fn apply(&self, c: &mut Config) -> FlagsSet {
        let mut set = FlagsSet::new();
        macro_rules! flag {
            ($opt:expr, $field:expr, $wrap:expr, $key:literal, $flag:literal) => {
                if let Some(v) = &$opt {
                    $field = $wrap(v.clone());
                    set.push(($key, $flag));
                }
            };
        }
        fn same<T>(v: T) -> T {
            v
        }
        flag!(
            self.parse_threads,
            c.threads.parse,
            Some,
            "threads.parse",
            "--parse-threads"
        );
        flag!(
            self.compute_threads,
            c.threads.compute,
            Some,
            "threads.compute",
            "--compute-threads"
        );
        flag!(self.cpus, c.threads.cpus, Some, "threads.cpus", "--cpus");
        flag!(
            self.first_byte_timeout,
            c.fetch.first_byte_timeout,
            same,
            "fetch.first_byte_timeout",
            "--first-byte-timeout"
        );
        flag!(
            self.idle_timeout,
            c.fetch.idle_timeout,
            same,
            "fetch.idle_timeout",
            "--idle-timeout"
        );
        flag!(
            self.total_timeout,
            c.fetch.total_timeout,
            same,
            "fetch.total_timeout",
            "--total-timeout"
        );
        flag!(
            self.max_retry_after,
            c.fetch.max_retry_after,
            same,
            "fetch.max_retry_after",
            "--max-retry-after"
        );
        flag!(self.shard, c.fetch.shard, Some, "fetch.shard", "--shard");
        flag!(
            self.rate_limit,
            c.fetch.rate_limit,
            Some,
            "fetch.rate_limit",
            "--rate-limit"
        );
        flag!(
            self.engine,
            c.fetch.engine,
            same,
            "fetch.engine",
            "--engine"
        );
        flag!(
            self.follow_link_next,
            c.fetch.follow_link_next,
            same,
            "fetch.follow_link_next",
            "--follow-link-next"
        );
        flag!(
            self.max_link_pages,
            c.fetch.max_link_pages,
            same,
            "fetch.max_link_pages",
            "--max-link-pages"
        );
        flag!(
            self.records_field,
            c.fetch.records_field,
            Some,
            "fetch.records_field",
            "--records-field"
        );
        flag!(
            self.cursor_field,
            c.fetch.cursor_field,
            Some,
            "fetch.cursor_field",
            "--cursor-field"
        );
        flag!(
            self.cursor_param,
            c.fetch.cursor_param,
            same,
            "fetch.cursor_param",
            "--cursor-param"
        );
        flag!(
            self.max_redirects,
            c.fetch.max_redirects,
            same,
            "fetch.max_redirects",
            "--max-redirects"
        );
        flag!(
            self.redirect_other_hosts,
            c.fetch.redirect_other_hosts,
            same,
            "fetch.redirect_other_hosts",
            "--redirect-other-hosts"
        );
        flag!(
            self.headers,
            c.fetch.headers,
            same,
            "fetch.headers",
            "--header"
        );
        flag!(
            self.accept_encoding,
            c.fetch.accept_encoding,
            same,
            "fetch.accept_encoding",
            "--accept-encoding"
        );
        flag!(
            self.rate_burst,
            c.fetch.rate_burst,
            Some,
            "fetch.rate_burst",
            "--rate-burst"
        );
        if self.pin || self.no_pin {
            c.threads.pin = self.pin;
            set.push(("threads.pin", if self.pin { "--pin" } else { "--no-pin" }));
        }
        flag!(
            self.pin_shared,
            c.threads.pin_shared,
            same,
            "threads.pin_shared",
            "--pin-shared"
        );
        flag!(
            self.queue_capacity,
            c.queue_capacity,
            same,
            "queue_capacity",
            "--queue-capacity"
        );
        let f = &mut c.fetch;
        flag!(
            self.connections_per_host,
            f.connections_per_host,
            same,
            "fetch.connections_per_host",
            "--connections-per-host"
        );
        flag!(
            self.max_in_flight,
            f.max_in_flight,
            same,
            "fetch.max_in_flight",
            "--max-in-flight"
        );
        flag!(
            self.max_attempts,
            f.max_attempts,
            same,
            "fetch.max_attempts",
            "--max-attempts"
        );
        flag!(
            self.connect_timeout,
            f.connect_timeout,
            same,
            "fetch.connect_timeout",
            "--connect-timeout"
        );
        flag!(
            self.request_timeout,
            f.request_timeout,
            same,
            "fetch.request_timeout",
            "--request-timeout"
        );
        flag!(
            self.max_body_bytes,
            f.max_body_bytes,
            same,
            "fetch.max_body_bytes",
            "--max-body-bytes"
        );
        flag!(
            self.tls_ca_file,
            f.tls_ca_file,
            Some,
            "fetch.tls_ca_file",
            "--tls-ca-file"
        );
        flag!(
            self.tls_client_cert,
            f.tls_client_cert,
            Some,
            "fetch.tls_client_cert",
            "--tls-client-cert"
        );
        flag!(
            self.tls_client_key,
            f.tls_client_key,
            Some,
            "fetch.tls_client_key",
            "--tls-client-key"
        );
        flag!(
            self.fields,
            c.schema.fields,
            same,
            "schema.fields",
            "--field"
        );
        flag!(
            self.infer_schema,
            c.schema.infer,
            same,
            "schema.infer",
            "--infer-schema"
        );
        flag!(
            self.unknown_fields,
            c.schema.unknown,
            same,
            "schema.unknown",
            "--unknown-fields"
        );
        flag!(self.stats, c.schema.stats, Some, "schema.stats", "--stats");
        flag!(
            self.journal,
            c.writer.journal,
            same,
            "writer.journal",
            "--journal"
        );
        let w = &mut c.writer;
        flag!(
            self.row_group_rows,
            w.row_group_rows,
            same,
            "writer.row_group_rows",
            "--row-group-rows"
        );
        flag!(
            self.row_group_max_bytes,
            w.row_group_max_bytes,
            same,
            "writer.row_group_max_bytes",
            "--row-group-max-bytes"
        );
        flag!(
            self.data_page_bytes,
            w.data_page_bytes,
            same,
            "writer.data_page_bytes",
            "--data-page-bytes"
        );
        flag!(
            self.compression,
            w.compression,
            same,
            "writer.compression",
            "--compression"
        );
        flag!(
            self.rotate_interval,
            w.rotate_interval,
            Some,
            "writer.rotate_interval",
            "--rotate-interval"
        );
        flag!(
            self.flush_interval,
            w.flush_interval,
            same,
            "writer.flush_interval",
            "--flush-interval"
        );
        flag!(
            self.rotate_rows,
            w.rotate_rows,
            Some,
            "writer.rotate_rows",
            "--rotate-rows"
        );
        flag!(
            self.rotate_bytes,
            w.rotate_bytes,
            Some,
            "writer.rotate_bytes",
            "--rotate-bytes"
        );
        flag!(
            self.partition_by,
            w.partition_by,
            same,
            "writer.partition_by",
            "--partition-by"
        );
        flag!(
            self.max_open_partitions,
            w.max_open_partitions,
            same,
            "writer.max_open_partitions",
            "--max-open-partitions"
        );
        flag!(
            self.dead_letter_max_bytes,
            w.dead_letter_max_bytes,
            same,
            "writer.dead_letter_max_bytes",
            "--dead-letter-max-bytes"
        );
        flag!(
            self.dead_letter_keep,
            w.dead_letter_keep,
            same,
            "writer.dead_letter_keep",
            "--dead-letter-keep"
        );
        flag!(
            self.dead_letter,
            c.dead_letter,
            Some,
            "dead_letter",
            "--dead-letter"
        );
        flag!(self.every, c.every, Some, "every", "--every");
        flag!(
            self.metrics_addr,
            c.metrics.addr,
            Some,
            "metrics.addr",
            "--metrics-addr"
        );
        flag!(
            self.log_format,
            c.log.format,
            same,
            "log.format",
            "--log-format"
        );
        flag!(
            self.log_level,
            c.log.level,
            same,
            "log.level",
            "--log-level"
        );
        flag!(
            self.progress,
            c.log.progress,
            same,
            "log.progress",
            "--progress"
        );
        set
    }
}

/// Why the command stopped before running.
enum Failure {
    /// Bad command line of `pinflow run` (exit 2).
    Usage(String),
    /// Bad configuration or a failed run (exit 1), one message per line.
    Errors(Vec<String>),
}

impl From<pinflow::Error> for Failure {
    fn from(e: pinflow::Error) -> Failure {
        Failure::Errors(vec![e.to_string()])
    }
}

fn lines(diags: &[Diagnostic]) -> Failure {
    Failure::Errors(diags.iter().map(|d| d.to_string()).collect())
}

/// The configuration layers below the flags: the file, if any, then the environment. Every
/// problem in either is reported at once.
fn layers(file: Option<&Path>) -> Result<Vec<ConfigLayer>, Failure> {
    let mut layers = Vec::new();
    let mut diags = Vec::new();
    if let Some(path) = file {
        match ConfigLayer::from_file(path) {
            Ok(l) => layers.push(l),
            Err(d) => diags.extend(d),
        }
    }
    let vars = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    match ConfigLayer::from_env(vars) {
        Ok(l) => layers.push(l),
        Err(d) => diags.extend(d),
    }
    if diags.is_empty() {
        Ok(layers)
    } else {
        Err(lines(&diags))
    }
}

/// Defaults < file < environment < flags. The caller sets `out` (and anything else it
/// decides) and then calls [`validated`].
fn load(
    file: Option<&Path>,
    opts: &Options,
) -> Result<(Config, Vec<ConfigLayer>, FlagsSet), Failure> {
    let layers = layers(file)?;
    let mut cfg = Config::from_layers(&layers).map_err(|d| lines(&d))?;
    let set = opts.apply(&mut cfg);
    Ok((cfg, layers, set))
}

/// Every problem of the final configuration, each naming where its value came from.
fn validated(cfg: Config, layers: &[ConfigLayer], set: &FlagsSet) -> Result<Config, Failure> {
    let mut problems = cfg.problems_in(layers);
    if problems.is_empty() {
        return Ok(cfg);
    }
    for p in &mut problems {
        if let Some((_, flag)) = set.iter().find(|(k, _)| Some(*k) == p.key.as_deref()) {
            p.origin = Some(Origin {
                name: flag.to_string(),
                line: None,
            });
        }
    }
    Err(lines(&problems))
}

/// Counts heap allocations (and reallocations), so `bench` can report allocations per record:
/// the hot path should allocate per batch, not per record. One relaxed atomic add each.
struct CountingAlloc;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts an allocation unless it is the in-process simulator's: the figure is pinflow's own.
fn count_allocation() {
    if !pinflow::sim::in_simulator_thread() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the counter has no effect on memory (the thread-local flag it reads is const-initialized and
// never allocates).
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        std::alloc::System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        std::alloc::System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        count_allocation();
        std::alloc::System.realloc(ptr, layout, size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn main() -> ExitCode {
    fix_mmap_threshold();
    let cli = Cli::parse();
    match run(cli.config.as_deref(), cli.command) {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            let mut cmd = Cli::command();
            cmd.build();
            let run = cmd.find_subcommand_mut("run").expect("the run subcommand");
            run.error(clap::error::ErrorKind::MissingRequiredArgument, msg)
                .exit()
        }
        Err(Failure::Errors(lines)) => {
            for line in lines {
                eprintln!("pinflow: error: {line}");
            }
            ExitCode::from(1)
        }
    }
}

/// Fixes glibc malloc's mmap threshold at 1 MiB, unless the operator set one
/// (`MALLOC_MMAP_THRESHOLD_`, or `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=N`). Below the
/// threshold malloc serves blocks from its heaps; at or above it, each from its own `mmap`,
/// returned to the kernel when freed.
///
/// By default glibc raises the threshold to the size of each mmap'ed block freed (up to 32 MiB),
/// after which blocks of that size come from the heaps instead, and their fragmentation grows
/// with the length of the run: one record per request peaked at 47 MiB after 200k records and
/// 56 MiB after 2M, while the live heap (valgrind massif) stayed the same. Held at 1 MiB the two
/// runs peak at 43 and 45 MiB at the same speed. Held at 2 MiB the creep stays, so the blocks
/// behind it are 1-2 MiB (Parquet column buffers are that size); held at 128 KiB (glibc's
/// starting value) NDJSON pages lose about 15 % to mmap calls for per-batch Arrow buffers. The
/// library does not do this: a process-wide allocator setting is the embedding program's choice.
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: std::ffi::c_int = 1 << 20;
        let set_by_operator = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
        if !set_by_operator {
            // SAFETY: mallopt only changes malloc's parameters, and runs before any other
            // thread exists.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// SIGINT/SIGTERM set `stop` (drain and finish); a second one exits at once, leaving only
/// complete files under final names (an unfinished file is still under its temporary name).
/// SIGHUP sets `reopen`: the dead-letter file is closed and re-created (logrotate).
/// SIGXFSZ is caught and ignored, so a write past the file size limit (`ulimit -f`) fails with
/// EFBIG, which the writer reports with the path before stopping cleanly, instead of the signal
/// killing the process mid-file.
fn install_signals(reopen: Arc<AtomicBool>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop));
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, reopen);
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    );
    stop
}

/// Logs go to stderr (journald keeps them under systemd), as text or one JSON object per
/// line; `RUST_LOG` overrides `log.level`.
fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("pinflow={}", cfg.log.level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Runs `cfg` over `source`; `label` names the source in the files' `pinflow.source`
/// metadata.
fn run_pipeline(cfg: Config, source: Source, label: &str) -> pinflow::Result<Summary> {
    init_logging(&cfg);
    let show_progress = match cfg.log.progress {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    };
    let pipeline = Arc::new(Pipeline::new(cfg)?.with_source_label(label));
    let stop = install_signals(pipeline.reopen_flag());
    let flag = pipeline.stop_flag();
    // Forward the signal flag to the pipeline's own flag.
    std::thread::spawn(move || loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!("stop requested: finishing requests in flight, draining, finalizing");
            flag.store(true, Ordering::Relaxed);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    tracing::info!(plan = %pipeline.plan().describe(), "threads");
    let done = Arc::new(AtomicBool::new(false));
    let progress = show_progress.then(|| {
        let (p, done) = (Arc::clone(&pipeline), Arc::clone(&done));
        std::thread::spawn(move || progress_bar(&p, &done))
    });
    let result = pipeline.run(source);
    done.store(true, Ordering::Relaxed);
    if let Some(t) = progress {
        let _ = t.join();
    }
    result
}

/// A one-line live view on stderr: records written, rate, queue fill, failures.
fn progress_bar(pipeline: &Pipeline, done: &AtomicBool) {
    use pinflow::metrics::live::QueueId;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
    let m = pipeline.metrics();
    let started = std::time::Instant::now();
    while !done.load(Ordering::Relaxed) {
        let written = m.records_written.load(Ordering::Relaxed);
        let fill: Vec<String> = QueueId::ALL
            .iter()
            .map(|&q| {
                let (d, c) = m.queue(q);
                format!("{}/{}", d, c)
            })
            .collect();
        bar.set_message(format!(
            "{written} records written ({:.0}/s), {} requests, {} failed, {} dead letters, queues {}",
            written as f64 / started.elapsed().as_secs_f64().max(1e-3),
            m.requests.load(Ordering::Relaxed),
            m.failed.load(Ordering::Relaxed),
            m.records_dead_lettered.load(Ordering::Relaxed),
            fill.join(" "),
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}

fn finish(summary: &Summary) -> ExitCode {
    print!("{summary}");
    if summary.fetch.failed > 0 {
        tracing::warn!(
            "{} request(s) failed; see the dead-letter file for every URL and reason",
            summary.fetch.failed
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

fn run(file: Option<&Path>, cmd: Command) -> Result<ExitCode, Failure> {
    match cmd {
        Command::Demo { out, records, opts } => {
            let (mut cfg, layers, mut set) = load(file, &opts)?;
            // A demo never writes where production output goes.
            cfg.out = out.unwrap_or_else(|| PathBuf::from("pinflow-demo.parquet"));
            cfg.dead_letter = opts.dead_letter.clone();
            set.push(("out", "--out"));
            let cfg = validated(cfg, &layers, &set)?;
            let sim =
                Simulator::start(SimConfig::default()).map_err(|e| pinflow::Error::Config {
                    what: "simulator".into(),
                    why: format!("cannot bind a loopback port: {e}"),
                })?;
            eprintln!(
                "pinflow: simulator on {}, fetching {records} records one per request",
                sim.addr()
            );
            let source = Source::from_arg(&sim.logs_template(records.max(1)))?;
            let summary = run_pipeline(cfg, source, "demo")?;
            Ok(finish(&summary))
        }
        Command::Run {
            urls,
            files,
            out,
            opts,
        } => {
            let (mut cfg, layers, mut set) = load(file, &opts)?;
            if let Some(out) = out {
                cfg.out = out;
                set.push(("out", "--out"));
            } else if !layers.iter().any(|l| l.is_set("out")) {
                return Err(Failure::Usage(
                    "no output file: give --out PATH, or set `out` in the --config file or \
                     PINFLOW_OUT"
                        .into(),
                ));
            }
            if !files.is_empty() {
                cfg.files = files;
                set.push(("files", "--files"));
            }
            // A flag picks the source; otherwise the configuration must name exactly one.
            let from_flag = urls.is_some() || set.iter().any(|(k, _)| *k == "files");
            let use_files = if from_flag {
                urls.is_none()
            } else if cfg.source.is_some() && !cfg.files.is_empty() {
                return Err(Failure::Usage(
                    "both `source` (URLs) and `files` are configured: give --urls or --files"
                        .into(),
                ));
            } else {
                !cfg.files.is_empty()
            };
            if use_files {
                let cfg = validated(cfg, &layers, &set)?;
                let label = cfg.files.join(" ");
                let source = Source::files(&cfg.files)?;
                let summary = run_pipeline(cfg, source, &label)?;
                return Ok(finish(&summary));
            }
            let urls = match urls.or_else(|| cfg.source.clone()) {
                Some(u) => u,
                None => {
                    return Err(Failure::Usage(
                        "no work source: give --urls FILE|-|TEMPLATE or --files PATH, or set \
                         `source` or `files` in the --config file or the environment"
                            .into(),
                    ))
                }
            };
            let cfg = validated(cfg, &layers, &set)?;
            let source = Source::from_arg(&urls)?;
            let summary = run_pipeline(cfg, source, &urls)?;
            Ok(finish(&summary))
        }
        Command::Bench {
            records,
            values,
            per_response,
            out,
            json,
            compare,
            opts,
        } => {
            if compare {
                compare_fetchers(file, records, values, per_response, &opts)
            } else {
                bench(file, records, values, per_response, out, json, &opts)
            }
        }
        Command::Sim {
            addr,
            records,
            values,
            page_size,
        } => {
            // Signals first: a SIGTERM right after the URLs are printed must not kill us.
            let stop = install_signals(Arc::new(AtomicBool::new(false)));
            let page_size = page_size.max(1);
            let sim = Simulator::start(SimConfig {
                addr,
                workload: Workload {
                    values_per_record: values,
                    page_size,
                    ..Workload::default()
                },
                ..SimConfig::default()
            })
            .map_err(|e| pinflow::Error::Config {
                what: "simulator".into(),
                why: format!("cannot listen on {addr}: {e}"),
            })?;
            let records = records.max(1);
            println!("base    {}", sim.url(""));
            println!(
                "logs    {}  (one record per request)",
                sim.logs_template(records)
            );
            println!(
                "pages   {}  (NDJSON, {page_size} records per page)",
                sim.pages_template(records.div_ceil(page_size))
            );
            eprintln!("pinflow sim: serving until SIGINT or SIGTERM");
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let stats = sim.stop();
            println!(
                "served  {} requests, {} bytes, {} connections, server CPU {}",
                stats.requests,
                stats.bytes,
                stats.connections,
                stats
                    .cpu
                    .map_or("n/a".into(), |c| format!("{:.3} s", c.as_secs_f64()))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", Config::default_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Errors(vec![format!("{name}: cannot read: {e}")]))?;
            let diags = check_toml(&name, &text);
            if diags.is_empty() {
                println!("{name}: ok");
                return Ok(ExitCode::SUCCESS);
            }
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "{name}: {} problem{}",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::from(1))
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// The benchmark's simulator serving `records` records of `values` floats, one per response
/// or in NDJSON pages of `per_response`, with `faults`; and the URL template that covers them.
fn bench_simulator(
    records: u64,
    values: usize,
    per_response: u64,
    faults: pinflow::sim::Faults,
) -> pinflow::Result<(Simulator, String)> {
    let sim = Simulator::start(SimConfig {
        workload: Workload {
            values_per_record: values,
            page_size: per_response,
            ..Workload::default()
        },
        faults,
        ..SimConfig::default()
    })
    .map_err(|e| pinflow::Error::Config {
        what: "simulator".into(),
        why: format!("cannot bind a loopback port: {e}"),
    })?;
    let template = if per_response == 1 {
        sim.logs_template(records.max(1))
    } else {
        sim.pages_template(records.div_ceil(per_response).max(1))
    };
    Ok((sim, template))
}

/// `bench --compare`: the same workload through the mio fetcher, the ureq fallback, and mio
/// against a simulator injecting every fault at 1 %, each on a fresh simulator, one after the
/// other in this process; figures as ratios to the first.
fn compare_fetchers(
    file: Option<&Path>,
    records: u64,
    values: usize,
    per_response: u64,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    use pinflow::config::FetchEngine;
    use pinflow::sim::{FaultMode, Faults};
    let (cfg, layers, mut set) = load(file, opts)?;
    let dir = std::env::temp_dir().join(format!("pinflow-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| pinflow::Error::Output {
        path: dir.clone(),
        op: "create",
        cause: e.to_string(),
    })?;
    set.push(("out", "--out"));
    let mut all_faults = Faults::default();
    for mode in FaultMode::ALL {
        all_faults = all_faults.with(mode, 0.01);
    }
    let per_response = per_response.max(1);
    let mut rows: Vec<(&str, Summary)> = Vec::new();
    for (name, engine, faults) in [
        ("mio", FetchEngine::Mio, Faults::default()),
        ("ureq", FetchEngine::Ureq, Faults::default()),
        ("mio, faults 1% each", FetchEngine::Mio, all_faults),
    ] {
        let mut c = cfg.clone();
        c.out = dir.join(format!("{}.parquet", rows.len()));
        c.dead_letter = None;
        c.fetch.engine = engine;
        if faults.enabled() {
            // Stalls would otherwise cost the default 15 s each.
            c.fetch.first_byte_timeout = Duration::from_millis(300);
            c.fetch.idle_timeout = Duration::from_millis(300);
        }
        let c = validated(c, &layers, &set)?;
        let (sim, template) = bench_simulator(records, values, per_response, faults)?;
        let summary = run_pipeline(c, Source::from_arg(&template)?, "bench")?;
        sim.stop();
        rows.push((name, summary));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let base = rows[0].1.records_per_sec().max(1e-9);
    println!(
        "bench --compare: {records} records, {values} values each, {per_response} per response"
    );
    println!(
        "{:<22} {:>12} {:>8} {:>9} {:>9} {:>9} {:>13}",
        "fetcher", "records/s", "ratio", "written", "dead", "failed", "retries"
    );
    for (name, s) in &rows {
        println!(
            "{:<22} {:>12.0} {:>7.2}x {:>9} {:>9} {:>9} {:>13}",
            name,
            s.records_per_sec(),
            s.records_per_sec() / base,
            s.records_written,
            s.records_dead_lettered,
            s.fetch.failed,
            s.fetch.retries
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(
    file: Option<&Path>,
    records: u64,
    values: usize,
    per_response: u64,
    out: Option<PathBuf>,
    json: bool,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    let (mut cfg, layers, mut set) = load(file, opts)?;
    let per_response = per_response.max(1);
    let tmp_dir = std::env::temp_dir().join(format!("pinflow-bench-{}", std::process::id()));
    let out_path = match &out {
        Some(p) => p.clone(),
        None => {
            std::fs::create_dir_all(&tmp_dir).map_err(|e| pinflow::Error::Output {
                path: tmp_dir.clone(),
                op: "create",
                cause: e.to_string(),
            })?;
            tmp_dir.join("bench.parquet")
        }
    };
    // A benchmark takes the tuning from the configuration, never its output locations.
    cfg.out = out_path;
    cfg.dead_letter = opts.dead_letter.clone();
    set.push(("out", "--out"));
    let cfg = validated(cfg, &layers, &set)?;
    let (sim, template) = bench_simulator(records, values, per_response, Default::default())?;
    let cpu_before = metrics::process_cpu_time();
    let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
    let summary = run_pipeline(cfg, Source::from_arg(&template)?, "bench")?;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_before;
    let allocs_per_record = allocs as f64 / summary.records_written.max(1) as f64;
    let cpu_after = metrics::process_cpu_time();
    let sim_stats = sim.stop();
    if out.is_none() {
        let _ = std::fs::remove_dir_all(&tmp_dir);
    }
    let cpu_total = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let sim_share = match (sim_stats.cpu, cpu_total) {
        (Some(s), Some(t)) if !t.is_zero() => Some(s.as_secs_f64() / t.as_secs_f64()),
        _ => None,
    };
    let rss = metrics::peak_rss_bytes();
    let l = &summary.latency;
    let stages = [
        ("fetch", &l.fetch),
        ("parse", &l.parse),
        ("compute", &l.compute),
        ("write", &l.write),
        ("end_to_end", &l.end_to_end),
        ("handoff", &l.handoff),
    ];
    if json {
        let mut s = format!(
            "{{\"records\":{},\"values\":{values},\"per_response\":{per_response},\"records_written\":{},\"elapsed_s\":{:.6},\"records_per_s\":{:.1},\"mb_per_s\":{:.2},\"requests\":{},\"failed\":{},\"peak_rss_bytes\":{},\"cpu_s\":{},\"simulator_cpu_share\":{},\"peak_live_batches\":{},\"allocations_per_record\":{:.3},\"plan\":{:?},\"latency_us\":{{",
            records,
            summary.records_written,
            summary.elapsed.as_secs_f64(),
            summary.records_per_sec(),
            summary.mb_per_sec(),
            summary.fetch.requests,
            summary.fetch.failed,
            rss.map_or("null".into(), |v| v.to_string()),
            cpu_total.map_or("null".into(), |v| format!("{:.3}", v.as_secs_f64())),
            sim_share.map_or("null".into(), |v| format!("{v:.3}")),
            summary.peak_live_batches,
            allocs_per_record,
            summary.plan,
        );
        for (i, (name, h)) in stages.iter().enumerate() {
            let p = h.percentiles();
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "\"{name}\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"n\":{}}}",
                p.p50_us, p.p99_us, p.p999_us, p.count
            ));
        }
        s.push_str("}}");
        println!("{s}");
    } else {
        println!("bench: {records} records, {values} values each, {per_response} per response");
        print!("{summary}");
        println!(
            "peak RSS   {:.1} MiB",
            rss.unwrap_or(0) as f64 / (1 << 20) as f64
        );
        println!(
            "allocs     {allocs_per_record:.2} per record written (pinflow's threads; the in-process simulator's are not counted)"
        );
        if let (Some(t), Some(share)) = (cpu_total, sim_share) {
            println!(
                "cpu        {:.2} s in total, simulator {:.1}% of it",
                t.as_secs_f64(),
                share * 100.0
            );
        }
        println!(
            "throughput {:.0} records/s, {:.1} MB/s",
            summary.records_per_sec(),
            summary.mb_per_sec()
        );
    }
    Ok(if summary.fetch.failed > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

//! The registry: every option once, with its key, type, flag and documentation.

use super::kind::Kind;

/// The prefix of the environment variables read by [`ConfigLayer::from_env`](super::ConfigLayer::from_env).
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

/// One configuration key.
pub(super) struct KeySpec {
    /// Dotted path: `queue_capacity`, `fetch.max_in_flight`.
    pub(super) path: &'static str,
    pub(super) kind: Kind,
    /// What it does (shown in `pinflow config default`).
    pub(super) doc: &'static str,
    /// The command-line flag that overrides it, or "".
    pub(super) flag: &'static str,
    /// For keys without a default value (and `out`): an example, shown commented out.
    pub(super) example: &'static str,
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
pub(super) const SECTIONS: &[(&str, &str)] = &[
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
pub(super) const KEYS: &[KeySpec] = &[
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

//! The registry: every option declared once, in [`OPTIONS`], with its key (and so its
//! environment variable), type, flag, help and documentation.
//!
//! Everything that lists options is made from it: the TOML schema and its unknown-key check
//! ([`ConfigLayer::from_toml`]), the `PINFLOW_*` variables ([`ConfigLayer::from_env`]), the
//! command-line flags of `pinflow demo|run|bench` (the binary builds its clap arguments from
//! [`options`], and reads their values with [`ConfigLayer::from_flags`]), `pinflow config
//! default` ([`Config::default_toml`]) and the reference in docs/configuration.md
//! ([`reference_markdown`](super::reference_markdown)). The typed [`Config`] stays the library's
//! configuration: a key path is the path of its field (serde maps one onto the other), and its
//! default is the field's [`Default`].

use std::time::Duration;

use super::check::{rule, Check, MAX_DURATION, NONZERO};
use super::kind::Kind;
#[allow(unused_imports)] // for the links in the documentation above
use super::{Config, ConfigLayer, MAX_SHUTDOWN_TIMEOUT};

/// The prefix of the environment variables read by [`ConfigLayer::from_env`].
pub const ENV_PREFIX: &str = "PINFLOW_";

/// The environment variable for a key path: `fetch.max_in_flight` →
/// `PINFLOW_FETCH_MAX_IN_FLIGHT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Every configuration key path, in the order of [`Config::default_toml`].
pub fn key_paths() -> impl Iterator<Item = &'static str> {
    OPTIONS.iter().map(|o| o.key)
}

/// Every option, in the order of [`Config::default_toml`]: top-level keys first, then table
/// by table in [`Topic::ALL`] order.
///
/// ```
/// let o = pinflow::config::option("fetch.max_in_flight").unwrap();
/// assert_eq!(o.env(), "PINFLOW_FETCH_MAX_IN_FLIGHT");
/// assert_eq!(o.flag(), pinflow::config::Flag::Shared("--max-in-flight"));
/// assert!(pinflow::config::options().iter().any(|o| o.key() == "log.level"));
/// ```
pub fn options() -> &'static [OptionSpec] {
    OPTIONS
}

/// The option with this key path, if there is one.
pub fn option(key: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.key == key)
}

/// One option: how it is written in each source, and what it does.
#[derive(Debug)]
pub struct OptionSpec {
    /// Dotted key path: `queue_capacity`, `fetch.max_in_flight`.
    key: &'static str,
    /// How its values are read (from TOML, and from text in variables and flags).
    pub(super) kind: Kind,
    /// How it is given on the command line.
    flag: Flag,
    /// The flag's value placeholder in `--help` (`N`, `DURATION`).
    value_name: &'static str,
    /// The flag's one-line help, with its default in `[default: ...]`.
    help: &'static str,
    /// What it does: the comment in `pinflow config default` and the reference's text.
    doc: &'static str,
    /// For keys without a default value (and `out`): an example in TOML, shown commented out.
    example: &'static str,
    /// The rule its value must follow on its own, run by [`Config::problems`] (rules relating
    /// several options are in check.rs).
    pub(super) check: Check,
}

/// How an option is given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flag {
    /// None: the file and the environment only.
    None,
    /// A flag of `demo`, `run` and `bench` alike, made from the registry (`--max-in-flight`).
    Shared(&'static str),
    /// A pair of switches of `demo`, `run` and `bench`, setting the option on or off
    /// (`--pin` / `--no-pin`), the last one given winning.
    Negatable {
        /// The switch that sets it to true.
        on: &'static str,
        /// The switch that sets it to false.
        off: &'static str,
        /// The help of `off` (the option's own help is `on`'s).
        off_help: &'static str,
    },
    /// A flag declared by the subcommands that take it, with help of their own (`--out`,
    /// `--urls`, `--files`).
    Command(&'static str),
}

impl Flag {
    /// The flags, as `pinflow config default` names them: `--pin / --no-pin`; empty for none.
    pub fn describe(&self) -> String {
        match self {
            Flag::None => String::new(),
            Flag::Shared(f) | Flag::Command(f) => f.to_string(),
            Flag::Negatable { on, off, .. } => format!("{on} / {off}"),
        }
    }
}

/// A group of options: a TOML table (or the top level), and a heading in `--help` and in the
/// reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Top-level keys: input, output, continuous mode, queues.
    Pipeline,
    /// `[threads]`.
    Threads,
    /// `[fetch]`.
    Fetch,
    /// `[writer]`.
    Writer,
    /// `[schema]`.
    Schema,
    /// `[window]`.
    Window,
    /// `[metrics]`.
    Metrics,
    /// `[listen]`.
    Listen,
    /// `[log]`.
    Log,
    /// `[kafka]`.
    Kafka,
    /// `[output.s3]`.
    OutputS3,
}

impl Topic {
    /// Every topic, in file order.
    pub const ALL: [Topic; 11] = [
        Topic::Pipeline,
        Topic::Threads,
        Topic::Fetch,
        Topic::Writer,
        Topic::Schema,
        Topic::Window,
        Topic::Metrics,
        Topic::Listen,
        Topic::Log,
        Topic::Kafka,
        Topic::OutputS3,
    ];

    /// The TOML table (`fetch`); empty for top-level keys.
    pub fn section(self) -> &'static str {
        match self {
            Topic::Pipeline => "",
            Topic::Threads => "threads",
            Topic::Fetch => "fetch",
            Topic::Writer => "writer",
            Topic::Schema => "schema",
            Topic::Window => "window",
            Topic::Metrics => "metrics",
            Topic::Listen => "listen",
            Topic::Log => "log",
            Topic::Kafka => "kafka",
            Topic::OutputS3 => "output.s3",
        }
    }

    /// The heading of its flags in `--help` and of its table in the reference.
    pub fn heading(self) -> &'static str {
        match self {
            Topic::Pipeline => "Pipeline",
            Topic::Threads => "Threads",
            Topic::Fetch => "Fetch",
            Topic::Writer => "Writer",
            Topic::Schema => "Schema",
            Topic::Window => "Window",
            Topic::Metrics => "Metrics",
            Topic::Listen => "Listen",
            Topic::Log => "Log",
            Topic::Kafka => "Kafka",
            Topic::OutputS3 => "Object storage",
        }
    }

    /// What its options are about.
    pub fn doc(self) -> &'static str {
        match self {
            Topic::Pipeline => "Input, output, continuous mode and the queues between stages.",
            Topic::Threads => "How many threads of each role, and where they run.",
            Topic::Fetch => "The HTTP fetcher (one mio event-loop thread).",
            Topic::Writer => "The Parquet writer.",
            Topic::Schema => {
                "The columns written and the statistics added (default: the built-in log layout)."
            }
            Topic::Window => {
                "Time windows: per-key aggregates over event time, written instead of the records \
                 (off unless `size` is set). See docs/usage.md, \"Time windows\"."
            }
            Topic::Metrics => "The Prometheus metrics and health endpoint.",
            Topic::Listen => {
                "HTTP receive: clients POST records to /ingest (off unless `addr` is set). See \
                 docs/usage.md, \"Receiving records over HTTP\"."
            }
            Topic::Log => "Diagnostics on standard error.",
            Topic::Kafka => {
                "Kafka (feature `kafka`): the output (`--out kafka://HOST:PORT/TOPIC`) and \
                 the consumer-group source (`--kafka-brokers`). See docs/usage.md, \"Kafka \
                 output\" and \"Kafka source\"."
            }
            Topic::OutputS3 => {
                "The object-storage output (`--out s3://BUCKET/PREFIX/`, feature `s3`); its \
                 endpoint, region, path_style, ca_file and attempts serve `--files s3://` \
                 reads too. Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and \
                 AWS_SESSION_TOKEN, never from here. See docs/object-storage.md."
            }
        }
    }

    /// The topic of a TOML table name, if it is one.
    pub(super) fn of_section(section: &str) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|t| !section.is_empty() && t.section() == section)
    }

    /// Whether a TOML table name holds topics' tables (`output`, for `[output.s3]`).
    pub(super) fn is_parent(section: &str) -> bool {
        !section.is_empty()
            && Topic::ALL.into_iter().any(|t| {
                t.section()
                    .strip_prefix(section)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
    }
}

impl OptionSpec {
    /// The dotted key path, which is also the TOML key: `fetch.max_in_flight`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The key without its table: `max_in_flight`.
    pub fn name(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }

    /// The environment variable: `PINFLOW_FETCH_MAX_IN_FLIGHT`.
    pub fn env(&self) -> String {
        env_name(self.key)
    }

    /// Its group: the TOML table it is in.
    pub fn topic(&self) -> Topic {
        // The table is all but the last part: `output.s3` for `output.s3.part_size`.
        match self.key.rsplit_once('.') {
            Some((section, _)) => Topic::of_section(section).unwrap_or(Topic::Pipeline),
            None => Topic::Pipeline,
        }
    }

    /// How it is given on the command line.
    pub fn flag(&self) -> Flag {
        self.flag
    }

    /// The flag's value placeholder in `--help`; empty for a switch without one.
    pub fn value_name(&self) -> &'static str {
        self.value_name
    }

    /// The flag's help line in `--help` (for [`Flag::Shared`] and [`Flag::Negatable`]).
    pub fn help(&self) -> &'static str {
        self.help
    }

    /// What the option does.
    pub fn doc(&self) -> &'static str {
        self.doc
    }

    /// An example value in TOML syntax, for options without a default; `None` otherwise.
    pub fn example(&self) -> Option<&'static str> {
        (!self.example.is_empty()).then_some(self.example)
    }

    /// Its type, in words: `integer`, `duration`, `list of strings`...
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Whether it is true or false: its flag takes an optional `true`/`false`.
    pub fn is_switch(&self) -> bool {
        self.kind == Kind::Bool
    }

    /// Whether it holds a list: its flag may be repeated, the values adding up.
    pub fn is_list(&self) -> bool {
        self.kind.is_list()
    }

    /// Its default in TOML syntax (`512`, `"30s"`), from [`Config::default`]; `None` when it
    /// has none (unset by default).
    pub fn default_value(&self) -> Option<String> {
        let defaults = toml::Table::try_from(Config::default()).ok()?;
        super::layers::lookup(&defaults, self.key).map(|v| v.to_string())
    }

    /// The values it accepts, for an integer or duration option (every one has bounds, so
    /// that no accepted value overflows a clock or exhausts memory); `None` for other types.
    ///
    /// ```
    /// use pinflow::config::{option, Bounds};
    /// let q = option("queue_capacity").unwrap();
    /// assert!(matches!(q.bounds(), Some(Bounds::Integer { min: 1, .. })));
    /// ```
    pub fn bounds(&self) -> Option<Bounds> {
        self.check.bounds()
    }

    /// Checks a flag's value as [`ConfigLayer::from_flags`] reads it: the text form of the
    /// environment, and, for durations, also a bare number of seconds (`--request-timeout 30`).
    /// The error says what is wrong.
    pub fn check_flag_value(&self, text: &str) -> Result<(), String> {
        self.kind.read_flag(text).map(|_| ())
    }
}

/// The values an integer or duration option accepts, both ends included (see
/// [`OptionSpec::bounds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bounds {
    /// An integer option.
    Integer {
        /// The least value accepted.
        min: u64,
        /// The greatest value accepted.
        max: u64,
    },
    /// A duration option.
    Duration {
        /// The shortest duration accepted (1ns where zero is not).
        min: std::time::Duration,
        /// The longest duration accepted.
        max: std::time::Duration,
    },
}

/// All fields empty, for the table below to fill in.
const BLANK: OptionSpec = OptionSpec {
    key: "",
    kind: Kind::Text,
    flag: Flag::None,
    value_name: "",
    help: "",
    doc: "",
    example: "",
    check: Check::None,
};

/// Every option, top-level keys first, then table by table in [`Topic::ALL`] order.
// Every entry ends in `..BLANK`, whether or not it fills in every field, so all read alike.
#[allow(clippy::needless_update)]
pub(super) const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "out",
        kind: Kind::Path,
        flag: Flag::Command("--out"),
        example: "\"logs.parquet\"",
        doc: "The Parquet file to write; it appears under this name only once complete. \
         `pinflow run` needs it here or in --out; `demo` and `bench` use only --out.",
        check: Check::FilePath(|c| Some(&c.out)),
        ..BLANK
    },
    OptionSpec {
        key: "dead_letter",
        kind: Kind::Path,
        flag: Flag::Shared("--dead-letter"),
        value_name: "PATH",
        help: "Dead-letter NDJSON file [default: OUT.deadletter.ndjson]",
        example: "\"logs.deadletter.ndjson\"",
        doc: "Where rejected records and failed requests go (NDJSON). Default: OUT.deadletter.ndjson.",
        check: Check::FilePath(|c| c.dead_letter.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "source",
        kind: Kind::Text,
        flag: Flag::Command("--urls"),
        example: "\"http://127.0.0.1:8080/logs/{1..20000}.json\"",
        doc: "The work source of `pinflow run` when --urls is not given: one http:// or https:// \
         URL, a file with one URL per line (every line checked before the run), \"-\" for \
         standard input, or a template with one {START..END} range.",
        check: Check::Custom(rule::source),
        ..BLANK
    },
    OptionSpec {
        key: "files",
        kind: Kind::StringList,
        flag: Flag::Command("--files"),
        example: "[\"/var/log/app/*.ndjson\"]",
        doc: "Local files instead of URLs: paths, directories or glob patterns, `-` for stdin, \
         or objects of an S3-compatible store (`s3://BUCKET/PREFIX/*.ndjson`, see \
         docs/object-storage.md). NDJSON is streamed in chunks; a .json file is one document \
         (object or array).",
        check: Check::Custom(rule::files),
        ..BLANK
    },
    OptionSpec {
        key: "tail",
        kind: Kind::Text,
        flag: Flag::Command("--tail"),
        example: "\"/var/log/app/*.log\"",
        doc: "Growing NDJSON files to follow until SIGINT or SIGTERM instead of URLs: a path or \
         a glob pattern (new matches are followed as they appear). Rotation by rename and \
         truncation are followed; with writer.journal a restart goes on where the committed \
         lines end. See docs/usage.md, \"Tailing files\".",
        check: Check::Custom(rule::tail),
        ..BLANK
    },
    OptionSpec {
        key: "tail_poll_interval",
        kind: Kind::Duration,
        flag: Flag::Shared("--tail-poll-interval"),
        value_name: "DURATION",
        help: "How often --tail looks at its files when nothing woke it (inotify wakes it at once) [default: 250ms]",
        doc: "How often the tail looks at its files and at its pattern's matches when nothing \
         woke it; where inotify works (Linux, local file systems) a change wakes it at once.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.tail_poll_interval)),
        ..BLANK
    },
    OptionSpec {
        key: "tail_rotate_wait",
        kind: Kind::Duration,
        flag: Flag::Shared("--tail-rotate-wait"),
        value_name: "DURATION",
        help: "How long a rotated-away file, read to its end, stays followed unchanged before --tail lets go of it [default: 5s]",
        doc: "How long a file renamed away from the tail's pattern (rotated) or deleted, once \
         read to its end, must stay unchanged before the tail lets go of it (a writer may still \
         append to it for a moment).",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.tail_rotate_wait)),
        ..BLANK
    },
    OptionSpec {
        key: "filter",
        kind: Kind::StringList,
        flag: Flag::Shared("--filter"),
        value_name: "EXPR",
        example: "['level != \"DEBUG\" and latency_ms > 5']",
        help: "Keep only the rows for which EXPR is true, after the [[transform]] steps (repeatable; see docs/usage.md, Transforms) [default: none]",
        doc: "Filters applied after the `[[transform]]` steps, in order: each keeps the rows for \
         which its expression is true (a null compared is unknown, and unknown is not kept; \
         see docs/usage.md, \"Transforms\"). The rows filtered out are counted as filtered.",
        check: Check::Custom(rule::filters),
        ..BLANK
    },
    OptionSpec {
        key: "drop",
        kind: Kind::NameList,
        flag: Flag::Shared("--drop"),
        value_name: "COLUMNS",
        example: "[\"message\"]",
        help: "Remove these columns (comma-separated) after the [[transform]] steps and the filters [default: none]",
        doc: "Columns removed after the `[[transform]]` steps and the filters; a column the \
         rows do not have is an error.",
        ..BLANK
    },
    OptionSpec {
        key: "rename",
        kind: Kind::NameList,
        flag: Flag::Shared("--rename"),
        value_name: "OLD=NEW",
        example: "[\"latency_ms=latency\"]",
        help: "Rename columns (comma-separated OLD=NEW), last of the transforms [default: none]",
        doc: "Columns renamed after every other transform (`[[transform]]` steps, `filter`, \
         `drop`), each `OLD=NEW`; all at once, as a `[[transform]] rename` table.",
        check: Check::Custom(rule::renames),
        ..BLANK
    },
    OptionSpec {
        key: "format",
        kind: Kind::Text,
        flag: Flag::Shared("--format"),
        value_name: "FORMAT",
        help: "How --files are read: auto (by name), ndjson or csv [default: auto]",
        doc: "How `files` are read: `auto` (by name: `.csv` and `.csv.gz` are CSV, `.json` is one \
         document, anything else NDJSON), `ndjson`, or `csv` (every input, stdin included).",
        check: Check::Custom(rule::format),
        ..BLANK
    },
    OptionSpec {
        key: "csv_delimiter",
        kind: Kind::Text,
        flag: Flag::Shared("--csv-delimiter"),
        value_name: "CHAR",
        help: "The CSV field delimiter: one ASCII character, or tab [default: ,]",
        doc: "The CSV field delimiter: one ASCII character (`\",\"`, `\";\"`, `\"\\t\"`), or `\"tab\"` (for the \
         environment, which trims a bare tab).",
        check: Check::Custom(rule::csv_delimiter),
        ..BLANK
    },
    OptionSpec {
        key: "csv_header",
        kind: Kind::Bool,
        flag: Flag::Shared("--csv-header"),
        value_name: "BOOL",
        help: "Whether a CSV file's first row names its columns [default: true]",
        doc: "Whether a CSV file's first row names its columns; false names them `column0`, \
         `column1`, ... and reads the first row as data.",
        ..BLANK
    },
    OptionSpec {
        key: "every",
        kind: Kind::Duration,
        flag: Flag::Shared("--every"),
        value_name: "DURATION",
        help: "Continuous mode: poll the source again every DURATION (30s, 5m) until signalled [default: run once]",
        example: "\"30s\"",
        doc: "Continuous mode: poll the source again every this long until SIGINT or SIGTERM. \
         Unset: run once.",
        check: Check::span(NONZERO, MAX_DURATION, |c| c.every),
        ..BLANK
    },
    OptionSpec {
        key: "queue_capacity",
        kind: Kind::Count,
        flag: Flag::Shared("--queue-capacity"),
        value_name: "N",
        help: "Batches per queue between stages [default: 4]",
        doc: "Batches per queue between stages (at least 1). Small is enough: batches are large.",
        check: Check::int(1, 1024, |c| Some(c.queue_capacity as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "threads.parse",
        kind: Kind::Count,
        flag: Flag::Shared("--parse-threads"),
        value_name: "N",
        help: "Parse threads [default: derived from the cores]",
        example: "2",
        doc: "Parse threads (simd-json into Arrow columns). Unset: derived from the cores.",
        check: Check::int(1, 1024, |c| c.threads.parse.map(|n| n as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "threads.compute",
        kind: Kind::Count,
        flag: Flag::Shared("--compute-threads"),
        value_name: "N",
        help: "Compute threads; 0: the parse threads compute their own batches [default: derived from the cores, 0 below four worker cores]",
        example: "1",
        doc: "Compute threads (statistics kernels, transforms); 0: the parse threads compute their own \
         batches. Unset: derived from the cores (0 below four worker cores).",
        check: Check::int(0, 1024, |c| c.threads.compute.map(|n| n as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "threads.cpus",
        kind: Kind::CpuList,
        flag: Flag::Shared("--cpus"),
        value_name: "IDS",
        help: "Comma-separated CPU ids to run on [default: all available]",
        example: "[0, 1, 2, 3]",
        doc: "Run only on these CPU ids. Unset: every core this process may use.",
        check: Check::Custom(rule::cpus),
        ..BLANK
    },
    OptionSpec {
        key: "threads.pin",
        kind: Kind::Bool,
        flag: Flag::Negatable {
            on: "--pin",
            off: "--no-pin",
            off_help: "Do not pin threads to cores",
        },
        help: "Pin threads to cores [default] (overrides `threads.pin = false`)",
        doc: "Pin each thread to its core when every thread gets a core of its own; false lets the \
         OS place them.",
        ..BLANK
    },
    OptionSpec {
        key: "threads.pin_shared",
        kind: Kind::Bool,
        flag: Flag::Shared("--pin-shared"),
        value_name: "BOOL",
        help: "Pin even when threads outnumber cores and share them [default: then nothing is pinned]",
        doc: "Pin even when threads outnumber cores and must share them (a pinned thread cannot \
         move to an idle core).",
        ..BLANK
    },
    OptionSpec {
        key: "fetch.connections_per_host",
        kind: Kind::Count,
        flag: Flag::Shared("--connections-per-host"),
        value_name: "N",
        help: "Keep-alive connections per host [default: 32]",
        doc: "Keep-alive connections opened per host (host:port).",
        check: Check::int(1, 4096, |c| Some(c.fetch.connections_per_host as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.max_in_flight",
        kind: Kind::Count,
        flag: Flag::Shared("--max-in-flight"),
        value_name: "N",
        help: "Requests in flight at once, all hosts together [default: 512]",
        doc: "Requests admitted but not yet finished, all hosts together. Bounds memory.",
        check: Check::int(1, 1 << 20, |c| Some(c.fetch.max_in_flight as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.max_attempts",
        kind: Kind::Count32,
        flag: Flag::Shared("--max-attempts"),
        value_name: "N",
        help: "Attempts per request on connection errors and timeouts [default: 3]",
        doc: "Attempts per request on connection errors and timeouts, the first one included.",
        check: Check::int(1, 100, |c| Some(u64::from(c.fetch.max_attempts))),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.connect_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--connect-timeout"),
        value_name: "DURATION",
        help: "TCP connect timeout: a duration (5s, 500ms) or seconds [default: 5s]",
        doc: "Give up on a TCP connect after this long.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.fetch.connect_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.request_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--request-timeout"),
        value_name: "DURATION",
        help: "Request timeout: a duration (30s, 1m) or seconds [default: 30s]",
        doc: "Give up on an attempt (request sent to last body byte) after this long.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.fetch.request_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.first_byte_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--first-byte-timeout"),
        value_name: "DURATION",
        help: "No response byte this long after the request fails the attempt [default: 15s]",
        doc: "Give up on an attempt when no response byte arrived this long after the request.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.fetch.first_byte_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.idle_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--idle-timeout"),
        value_name: "DURATION",
        help: "A response pausing this long between reads fails the attempt [default: 15s]",
        doc: "Give up on an attempt when a response stops this long between two reads.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.fetch.idle_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.total_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--total-timeout"),
        value_name: "DURATION",
        help: "All attempts of a request and the waits between them, together [default: 5m]",
        doc: "Give up on a request, all attempts and the waits between them together, after this long.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.fetch.total_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.max_retry_after",
        kind: Kind::Duration,
        flag: Flag::Shared("--max-retry-after"),
        value_name: "DURATION",
        help: "The longest Retry-After honoured [default: 1m]",
        doc: "The longest Retry-After honoured (429 and 5xx responses); longer requests wait this long.",
        check: Check::span(Duration::ZERO, MAX_DURATION, |c| Some(c.fetch.max_retry_after)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.shutdown_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--shutdown-timeout"),
        value_name: "DURATION",
        help: "On SIGTERM/SIGINT, how long requests on the wire may finish before they are cancelled [default: 20s]",
        doc: "On a stop (SIGTERM, SIGINT), how long requests already sent may still finish; \
         then they are cancelled. Requests not yet sent are cancelled at once. Cancelled requests \
         are counted as such (not as failures) and a resumed run with the journal fetches them; \
         every row already received is written and the file finalized. 0s cancels at once; at \
         most 1h. Keep it well under the service manager's stop timeout (systemd's \
         TimeoutStopSec, 60s in deploy/pinflow.service).",
        check: Check::span(Duration::ZERO, MAX_SHUTDOWN_TIMEOUT, |c| Some(c.fetch.shutdown_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.shard",
        kind: Kind::Shard,
        flag: Flag::Shared("--shard"),
        value_name: "K/N",
        help: "Keep only shard K of N of the work items (K in 0..N; stable hash of the URL)",
        example: "\"0/4\"",
        doc: "Keep only the work items of shard K of N (K in 0..N, a stable hash of the URL), so N \
         instances split one source with no coordination.",
        ..BLANK
    },
    OptionSpec {
        key: "fetch.follow_link_next",
        kind: Kind::Bool,
        flag: Flag::Shared("--follow-link-next"),
        value_name: "BOOL",
        help: "Follow `Link: <...>; rel=\"next\"` pagination [default: off]",
        doc: "Pagination: when a page's Link header has rel=\"next\", fetch that page too (same host \
         unless redirect_other_hosts).",
        ..BLANK
    },
    OptionSpec {
        key: "fetch.max_link_pages",
        kind: Kind::Count32,
        flag: Flag::Shared("--max-link-pages"),
        value_name: "N",
        help: "Pages followed from one source URL at most [default: 100000]",
        doc: "Pages followed from one source URL at most, by Link or cursor (a guard against loops).",
        check: Check::int(0, 10_000_000, |c| Some(u64::from(c.fetch.max_link_pages))),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.records_field",
        kind: Kind::Text,
        flag: Flag::Shared("--records-field"),
        value_name: "PATH",
        help: "The body is an envelope object; the records are the array at this dotted path",
        example: "\"data\"",
        doc: "The body is an envelope object; the records are the array at this dotted path.",
        check: Check::FieldPath(|c| c.fetch.records_field.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.cursor_field",
        kind: Kind::Text,
        flag: Flag::Shared("--cursor-field"),
        value_name: "PATH",
        help: "Cursor pagination: the envelope's field (dotted path) holding the next page's cursor",
        example: "\"next_cursor\"",
        doc: "Cursor pagination: the envelope's field (dotted path) with the next page's cursor; \
         null, missing or empty ends the chain. Needs records_field.",
        check: Check::FieldPath(|c| c.fetch.cursor_field.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.cursor_param",
        kind: Kind::Text,
        flag: Flag::Shared("--cursor-param"),
        value_name: "NAME",
        help: "Query parameter carrying the cursor [default: cursor]",
        doc: "The query parameter that carries the cursor in the next page's URL.",
        check: Check::Custom(rule::cursor_param),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.dedupe_key",
        kind: Kind::Text,
        flag: Flag::Shared("--dedupe-key"),
        value_name: "COLUMN",
        help: "Continuous mode: drop rows whose COLUMN value was already written (counted as filtered)",
        example: "\"id\"",
        doc: "Polling without duplicates: a row whose value in this column is among the last \
         `dedupe_window` written is dropped and counted as filtered. Unset, each pass of \
         continuous mode writes everything it fetches again.",
        check: Check::Custom(rule::dedupe_key),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.dedupe_window",
        kind: Kind::Count,
        flag: Flag::Shared("--dedupe-window"),
        value_name: "N",
        help: "Keys `--dedupe-key` remembers, the bound on its memory [default: 1000000]",
        doc: "How many of the latest keys `dedupe_key` remembers: a duplicate older than this many \
         keys is written again. Bounds the memory (about 100 bytes a key).",
        check: Check::int(1, 1 << 30, |c| Some(c.fetch.dedupe_window as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.since_field",
        kind: Kind::Text,
        flag: Flag::Shared("--since-field"),
        value_name: "COLUMN",
        help: "Fill `{since}` in the URLs with COLUMN's highest value written so far (a timestamp or int64 column)",
        example: "\"ts\"",
        doc: "Polling from a saved position: each pass (and a one-shot run) fills the `{since}` \
         placeholder of the source's URLs with the highest value of this column (timestamp: \
         RFC 3339 UTC with microseconds; int64: decimal) among the rows that reached the \
         writer, percent-encoded. With `writer.journal` the value is saved with every \
         checkpoint and a restarted run starts from it. Needs `{since}` in the URLs.",
        check: Check::Custom(rule::since_field),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.since_start",
        kind: Kind::Text,
        flag: Flag::Shared("--since-start"),
        value_name: "VALUE",
        help: "What `{since}` is before any row was written [default: empty]",
        example: "\"2026-01-01T00:00:00Z\"",
        doc: "What `{since}` is filled with before any row of `since_field` was written (and \
         saved): empty by default; give the API's \"from the beginning\" value if it refuses \
         an empty one.",
        ..BLANK
    },
    OptionSpec {
        key: "fetch.engine",
        kind: Kind::Engine,
        flag: Flag::Shared("--engine"),
        value_name: "ENGINE",
        help: "The fetcher: mio (event loop) or ureq (blocking threads, proxies) [default: mio]",
        doc: "The fetcher: \"mio\" (one event loop for every connection) or \"ureq\" (blocking \
         threads; honours HTTP_PROXY; the benchmark's baseline; no continuous mode).",
        ..BLANK
    },
    OptionSpec {
        key: "fetch.max_redirects",
        kind: Kind::Count32,
        flag: Flag::Shared("--max-redirects"),
        value_name: "N",
        help: "Redirects followed per request at most [default: 5]",
        doc: "Redirects (301, 302, 303, 307, 308) followed per request at most; 0 follows none.",
        check: Check::int(0, 100, |c| Some(u64::from(c.fetch.max_redirects))),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.redirect_other_hosts",
        kind: Kind::Bool,
        flag: Flag::Shared("--redirect-other-hosts"),
        value_name: "BOOL",
        help: "Let redirects lead to other hosts [default: same host only]",
        doc: "Whether a redirect may lead to another host (off: such a request fails, with the reason). \
         Either way, fetch.headers and a URL's user:password@ are sent only to the URL's own origin.",
        ..BLANK
    },
    OptionSpec {
        key: "fetch.headers",
        kind: Kind::HeaderList,
        flag: Flag::Shared("--header"),
        value_name: "NAME: VALUE",
        help: "Extra request header `Name: value` (repeatable); `${env:VAR}` and `${file:PATH}` in the value are replaced at start, so tokens need not be on the command line",
        doc: "Extra request headers, each \"Name: value\". In a value, ${env:VAR} and ${file:PATH} \
         are replaced when the run starts (keep tokens out of files and command lines). Sent only \
         to the origin (scheme, host, port) of each source URL: never after a redirect or a next \
         page to another.",
        check: Check::Custom(rule::headers),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.accept_encoding",
        kind: Kind::Text,
        flag: Flag::Shared("--accept-encoding"),
        value_name: "ENCODINGS",
        help: "Accept-Encoding sent with requests; \"\" sends none [default: \"gzip, deflate\"]",
        doc: "Sent as Accept-Encoding (\"\" to send none); gzip and deflate bodies are decoded by the \
         parse threads.",
        check: Check::Custom(rule::accept_encoding),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.rate_limit",
        kind: Kind::Count32,
        flag: Flag::Shared("--rate-limit"),
        value_name: "N",
        help: "At most N requests per second to each host [default: no limit]",
        example: "100",
        doc: "At most this many requests per second to each host (token bucket). Default: no limit.",
        check: Check::int(1, 1_000_000, |c| c.fetch.rate_limit.map(u64::from)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.rate_burst",
        kind: Kind::Count32,
        flag: Flag::Shared("--rate-burst"),
        value_name: "N",
        help: "Requests a host may get at once after a quiet spell [default: the rate limit]",
        example: "10",
        doc: "Requests a host may get at once after a quiet spell. Default: rate_limit.",
        check: Check::int(1, 1_000_000, |c| c.fetch.rate_burst.map(u64::from)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.max_body_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--max-body-bytes"),
        value_name: "SIZE",
        help: "Largest accepted response body (64MiB, 512KiB or bytes) [default: 64MiB]",
        doc: "A larger response body fails its request (and nothing else) instead of exhausting memory.",
        check: Check::int(1, 2 << 30, |c| Some(c.fetch.max_body_bytes as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.max_buffered_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--max-buffered-bytes"),
        value_name: "SIZE",
        help: "Response bytes buffered by all connections together before reads pause [default: 256MiB]",
        doc: "Response bytes held by all connections together (mio fetcher). Past it no socket is \
         read until bytes are released (back-pressure, never a failure), except one connection, \
         so a body larger than this still completes or fails by max_body_bytes: the fetcher holds \
         at most about this plus one body.",
        check: Check::int(1 << 20, 64 << 30, |c| Some(c.fetch.max_buffered_bytes as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.tls_ca_file",
        kind: Kind::Path,
        flag: Flag::Shared("--tls-ca-file"),
        value_name: "PATH",
        help: "PEM CA certificates trusted for https:// besides the built-in web PKI roots",
        example: "\"/etc/pinflow/ca.pem\"",
        doc: "https://: PEM CA certificates trusted besides the built-in web PKI roots (a private CA).",
        check: Check::NonEmptyPath(|c| c.fetch.tls_ca_file.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.tls_client_cert",
        kind: Kind::Path,
        flag: Flag::Shared("--tls-client-cert"),
        value_name: "PATH",
        help: "PEM client certificate chain for https:// servers that require mTLS",
        example: "\"/etc/pinflow/client.pem\"",
        doc: "https:// client certificate chain (PEM, leaf first) for servers that require mTLS.",
        check: Check::NonEmptyPath(|c| c.fetch.tls_client_cert.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.tls_client_key",
        kind: Kind::Path,
        flag: Flag::Shared("--tls-client-key"),
        value_name: "PATH",
        help: "PEM private key of --tls-client-cert",
        example: "\"/etc/pinflow/client.key\"",
        doc: "The PEM private key of tls_client_cert.",
        check: Check::NonEmptyPath(|c| c.fetch.tls_client_key.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.batch_max_items",
        kind: Kind::Count,
        doc: "A batch of bodies goes to the parse threads when it holds this many responses...",
        check: Check::int(1, 1_000_000, |c| Some(c.fetch.batch_max_items as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.batch_max_bytes",
        kind: Kind::Bytes,
        doc: "...or this many body bytes...",
        check: Check::int(1, 1 << 30, |c| Some(c.fetch.batch_max_bytes as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "fetch.batch_max_delay",
        kind: Kind::Duration,
        doc: "...or when its oldest body has waited this long.",
        check: Check::span(Duration::ZERO, Duration::from_secs(3600), |c| Some(c.fetch.batch_max_delay)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.row_group_rows",
        kind: Kind::Count,
        flag: Flag::Shared("--row-group-rows"),
        value_name: "N",
        help: "Rows per Parquet row group [default: 65536]",
        doc: "Rows per Parquet row group; a row group is written as soon as it is full.",
        check: Check::int(1, 1 << 24, |c| Some(c.writer.row_group_rows as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.row_group_max_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--row-group-max-bytes"),
        value_name: "SIZE",
        help: "...or once its encoded size reaches SIZE; 0 no bound [default: 8MiB]",
        doc: "...or as soon as its encoded size in memory reaches this many bytes, which bounds the \
         memory of an open row group whatever the records' size. 0: no bound by size.",
        check: Check::int(0, 64 << 30, |c| Some(c.writer.row_group_max_bytes)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.data_page_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--data-page-bytes"),
        value_name: "SIZE",
        help: "Uncompressed size of a Parquet data page [default: 256KiB]",
        doc: "Uncompressed bytes per Parquet data page (readers skip by page with the page index).",
        check: Check::int(1, 1 << 30, |c| Some(c.writer.data_page_bytes as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.compression",
        kind: Kind::Compression,
        flag: Flag::Shared("--compression"),
        value_name: "C",
        help: "none, snappy, lz4, zstd or zstd:LEVEL [default: snappy]",
        doc: "Column compression: \"none\", \"snappy\", \"lz4\" (Parquet LZ4_RAW), \"zstd\" (level 3) \
         or \"zstd:LEVEL\" (1..=22).",
        check: Check::Custom(rule::compression),
        ..BLANK
    },
    OptionSpec {
        key: "writer.rotate_interval",
        kind: Kind::Duration,
        flag: Flag::Shared("--rotate-interval"),
        value_name: "DURATION",
        help: "Start a new Parquet file every DURATION (1h) in continuous mode [default: one file; 1h with --every, --tail or a Kafka source without --exit-at-end]",
        example: "\"1h\"",
        doc: "Finalize the current Parquet file and start a new one after this long (with \
         `writer.journal`, each is a checkpoint: it commits what was read, a Kafka group's \
         offsets included). Unset: one file per run, except for runs that go on until stopped \
         (`--every`, `--tail`, a Kafka source without `exit_at_end`), which rotate hourly.",
        check: Check::span(NONZERO, MAX_DURATION, |c| c.writer.rotate_interval),
        ..BLANK
    },
    OptionSpec {
        key: "writer.flush_interval",
        kind: Kind::Duration,
        flag: Flag::Shared("--flush-interval"),
        value_name: "DURATION",
        help: "Close a row group once its oldest row has waited this long [default: 10s]",
        doc: "Close the open row group once its oldest row has waited this long, full or not, so a \
         slow stream's rows reach a closed row group on disk within this time.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.writer.flush_interval)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.rotate_rows",
        kind: Kind::Count,
        flag: Flag::Shared("--rotate-rows"),
        value_name: "N",
        help: "Start a new Parquet file every N rows [default: no rotation by rows]",
        example: "1000000",
        doc: "Finalize a file once it holds this many rows and start the next. Unset: no rotation \
         by rows. Any rotation names files OUTSTEM-YYYYMMDDTHHMMSSZ-NNNNN.parquet.",
        check: Check::int(1, 1 << 40, |c| c.writer.rotate_rows),
        ..BLANK
    },
    OptionSpec {
        key: "writer.rotate_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--rotate-bytes"),
        value_name: "SIZE",
        help: "Start a new Parquet file once one reaches about SIZE (1GiB) [default: no rotation by size]",
        example: "268435456",
        doc: "Finalize a file once its size (bytes written plus the estimated open row group) \
         reaches this many bytes; files end a little over it. Unset: no rotation by size.",
        check: Check::int(1, 1 << 50, |c| c.writer.rotate_bytes),
        ..BLANK
    },
    OptionSpec {
        key: "writer.partition_by",
        kind: Kind::NameList,
        flag: Flag::Shared("--partition-by"),
        value_name: "COLUMNS",
        help: "Hive-style partitions by these comma-separated columns (and `date`, the UTC date of ts); --out is then a directory [default: none]",
        doc: "Hive-style partitions: string or integer output columns, or \"date\" (the UTC date of \
         ts), e.g. [\"service\", \"date\"]. Then `out` is a directory and files are \
         OUT/service=X/date=YYYY-MM-DD/part-NNNNN.parquet. Empty: one file (or rotated files).",
        ..BLANK
    },
    OptionSpec {
        key: "writer.file_per_kafka_partition",
        kind: Kind::Bool,
        flag: Flag::Shared("--file-per-kafka-partition"),
        value_name: "BOOL",
        help: "Kafka source: each file holds one topic partition's rows and is named by its first offset; --out is then a directory [default: off]",
        doc: "With a Kafka source and writer.journal: every file holds the rows of one topic \
         partition and is named by the first offset it holds, \
         OUT/topic=T/partition=P/T+P+OFFSET.parquet (OFFSET zero-padded to 20 digits, so \
         names sort by offset; readers get `topic` and `partition` as Hive columns). `out` \
         is then a directory. Not with writer.partition_by or windows.",
        ..BLANK
    },
    OptionSpec {
        key: "writer.max_open_partitions",
        kind: Kind::Count,
        flag: Flag::Shared("--max-open-partitions"),
        value_name: "N",
        help: "Partition files open at once at most [default: 64]",
        doc: "Partition files open at once at most; the least recently used one is finalized to \
         make room (a later row of its partition starts the next part).",
        check: Check::int(1, 4096, |c| Some(c.writer.max_open_partitions as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.dead_letter_max_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--dead-letter-max-bytes"),
        value_name: "SIZE",
        help: "Rotate the dead-letter file before it passes SIZE; 0 never [default: 64MiB]",
        doc: "Rotate the dead-letter file before it passes this size: NAME becomes NAME.1, NAME.1 \
         becomes NAME.2, ... 0: never (leave it to logrotate).",
        check: Check::int(0, 1 << 50, |c| Some(c.writer.dead_letter_max_bytes)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.dead_letter_keep",
        kind: Kind::Count,
        flag: Flag::Shared("--dead-letter-keep"),
        value_name: "N",
        help: "Rotated dead-letter files kept (NAME.1 to NAME.N) [default: 5]",
        doc: "Rotated dead-letter files kept (NAME.1 to NAME.N); the oldest is deleted. 0 keeps none.",
        check: Check::int(0, 1000, |c| Some(c.writer.dead_letter_keep as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "writer.journal",
        kind: Kind::Bool,
        flag: Flag::Shared("--journal"),
        value_name: "BOOL",
        help: "Crash-safe resume through OUT.journal: run the same command again after a crash [default: off]",
        doc: "Crash-safe resume: files are finalized at checkpoints recorded in OUT.journal; the same \
         command run again after a crash skips what is done. One-shot runs (or, with \
         fetch.since_field, continuous ones: it keeps the `{since}` position), no pagination.",
        ..BLANK
    },
    OptionSpec {
        key: "writer.overwrite",
        kind: Kind::Bool,
        flag: Flag::Shared("--overwrite"),
        value_name: "BOOL",
        help: "Replace the output file if it exists [default: refuse to start]",
        doc: "Replace an output file that already exists. Off: a run whose output file exists is \
         refused before anything is fetched. Rotated and partitioned outputs never replace a \
         file (new files take free names), so this concerns one-file outputs.",
        ..BLANK
    },
    OptionSpec {
        key: "writer.max_dead_letters",
        kind: Kind::Text,
        flag: Flag::Shared("--max-dead-letters"),
        value_name: "N|P%",
        help: "Dead-lettered records tolerated before exit status 4: a count or a percentage [default: 0]",
        doc: "Dead-lettered records a run may have and still exit 0: a number of records (\"5\") or \
         a percentage of the records found (\"2.5%\"). Beyond it the command exits with status 4 \
         (the records are in the dead-letter file either way).",
        check: Check::Custom(rule::max_dead_letters),
        ..BLANK
    },
    OptionSpec {
        key: "schema.fields",
        kind: Kind::StringList,
        flag: Flag::Shared("--field"),
        value_name: "PATH:TYPE",
        help: "A schema field, PATH:TYPE or PATH:TYPE as COLUMN (repeatable) [default: the built-in log layout]",
        example: "[\"id:int64\", \"ts:timestamp\", \"service:dict\", \"http.status:int64\", \"values:list<float64>\"]",
        doc: "The fields, PATH:TYPE or PATH:TYPE as COLUMN; types int64, float64, bool, string, dict, \
         timestamp, list<float64>, list<int64>; a dotted PATH reaches into nested objects and \
         becomes a flat column (http.status -> http_status). Unset: the built-in log layout.",
        check: Check::Custom(rule::fields),
        ..BLANK
    },
    OptionSpec {
        key: "schema.infer",
        kind: Kind::Bool,
        flag: Flag::Shared("--infer-schema"),
        value_name: "BOOL",
        example: "false",
        help: "With no --field: true infers the fields from the first records, false takes the built-in log layout [default: the built-in layout if the records' fields are all its own, else inferred]",
        doc: "With no fields listed: true infers them from the first records (up to 1000), false \
         takes the built-in log layout. Unset: the first records decide, the built-in layout \
         when every field they hold is one of its own, inference otherwise.",
        ..BLANK
    },
    OptionSpec {
        key: "schema.unknown",
        kind: Kind::Text,
        flag: Flag::Shared("--unknown-fields"),
        value_name: "POLICY",
        help: "Fields not in the schema: ignore, reject or extra [default: ignore]",
        doc: "Fields not in the schema: ignore, reject (dead-letter the record) or extra (a JSON \
         object column _extra).",
        check: Check::Custom(rule::unknown),
        ..BLANK
    },
    OptionSpec {
        key: "schema.stats",
        kind: Kind::StringList,
        flag: Flag::Shared("--stats"),
        value_name: "SPEC",
        help: "Statistics of a numeric list column, COLUMN or COLUMN:OP,OP,... (repeatable) [default: count, mean, min, max, variance of `values`]",
        example: "[\"values:count,mean,min,max,variance,stddev,p50,p99\"]",
        doc: "Statistics of numeric list columns, COLUMN or COLUMN:OP,...; ops count, sum, mean, \
         variance, stddev, min, max, pNN. Unset: count, mean, min, max, variance of `values`.",
        check: Check::Custom(rule::stats),
        ..BLANK
    },
    OptionSpec {
        key: "schema.timestamp_format",
        kind: Kind::Text,
        flag: Flag::Shared("--timestamp-format"),
        value_name: "FORMAT",
        help: "How timestamp fields are read: rfc3339, epoch_s, epoch_ms, epoch_us, epoch_ns or a strftime pattern [default: rfc3339]",
        doc: "How timestamp fields are read: rfc3339 (strings with an offset; a number is an \
         epoch time, its unit decided by magnitude), epoch_s, epoch_ms, epoch_us, epoch_ns, or \
         a strftime pattern of %Y %m %d %e %j %b %H %M %S %f %z %T %F %% (\"%d/%b/%Y:%H:%M:%S %z\").",
        check: Check::Custom(rule::timestamp_format),
        ..BLANK
    },
    OptionSpec {
        key: "schema.timestamp_zone",
        kind: Kind::Text,
        flag: Flag::Shared("--timestamp-zone"),
        value_name: "ZONE",
        example: "\"+02:00\"",
        help: "The zone of timestamps without an offset: UTC or +HH:MM (zone names are refused) [default: none, such timestamps are dead-lettered]",
        doc: "The zone of timestamps that carry no offset: \"UTC\" or a fixed offset such as \
         \"+02:00\"; zone names (Europe/Paris) are refused, their offset changes with daylight \
         saving time. Unset: an RFC 3339 date-time without an offset is dead-lettered, and a \
         pattern without %z is refused.",
        check: Check::Custom(rule::timestamp_zone),
        ..BLANK
    },
    OptionSpec {
        key: "schema.lineage",
        kind: Kind::NameList,
        flag: Flag::Shared("--lineage"),
        value_name: "COLUMNS",
        example: "[\"source\", \"fetched_at\"]",
        help: "Lineage columns on every row: source (_source: the URL, password redacted, or file:lines), fetched_at (_fetched_at) [default: none]",
        doc: "Lineage columns added to every row: source (_source: the URL it was fetched from, \
         its password redacted, or FILE:FIRST-LAST lines of a file source) and fetched_at \
         (_fetched_at: when its body was fetched or read, UTC).",
        check: Check::Custom(rule::lineage),
        ..BLANK
    },
    OptionSpec {
        key: "window.size",
        kind: Kind::WindowSize,
        flag: Flag::Shared("--window"),
        value_name: "SIZE[/HOP]",
        help: "Time windows of this size on event time, SIZE or SIZE/HOP for hopping windows (e.g. 10s, 10s/5s); rows become per-window aggregates [default: off]",
        example: "\"10s\"",
        doc: "Turns time windows on: windows of this size on the event-time column, aligned to the \
         Unix epoch ([k*hop, k*hop + size)). Each window's aggregates are written as one row per \
         key once the watermark passes its end, instead of the records. The flag also takes \
         SIZE/HOP (sets `window.hop`).",
        check: Check::span(NONZERO, MAX_DURATION, |c| c.window.size),
        ..BLANK
    },
    OptionSpec {
        key: "window.hop",
        kind: Kind::Duration,
        flag: Flag::Shared("--window-hop"),
        value_name: "DURATION",
        help: "Hopping windows: a new window every this long, at most the size (or give the window flag SIZE/HOP) [default: the size, tumbling]",
        example: "\"5s\"",
        doc: "Hopping windows: a new window starts every `hop` (at most `size`, and `size` a whole \
         number of hops is not required: state is kept in panes of gcd(size, hop)). Unset: \
         tumbling windows (the hop is the size). On the command line also --window SIZE/HOP.",
        check: Check::span(NONZERO, MAX_DURATION, |c| c.window.hop),
        ..BLANK
    },
    OptionSpec {
        key: "window.time",
        kind: Kind::Text,
        flag: Flag::Shared("--window-time"),
        value_name: "COLUMN",
        help: "The event-time column windows are on: a timestamp or an integer of epoch microseconds [default: ts]",
        doc: "The event-time column: a timestamp column, or an integer column of epoch microseconds.",
        check: Check::Custom(rule::window_time),
        ..BLANK
    },
    OptionSpec {
        key: "window.by",
        kind: Kind::NameList,
        flag: Flag::Shared("--window-by"),
        value_name: "COLUMNS",
        help: "Key columns (strings or integers), comma-separated: one row per key and window [default: one global key]",
        example: "[\"service\"]",
        doc: "Key columns (string or integer): one row per key and window, the key columns by their \
         names. Empty: one global key.",
        check: Check::Custom(rule::window_by),
        ..BLANK
    },
    OptionSpec {
        key: "window.lateness",
        kind: Kind::Duration,
        flag: Flag::Shared("--window-lateness"),
        value_name: "DURATION",
        help: "How far behind the highest event time seen a record may be before its window closes [default: 0s]",
        doc: "The watermark is the highest event time seen less this: a window is written once the \
         watermark passes its end, and a record whose windows have all been written is late (a \
         dead letter whose reason names the window).",
        check: Check::span(Duration::ZERO, MAX_DURATION, |c| Some(c.window.lateness)),
        ..BLANK
    },
    OptionSpec {
        key: "window.idle",
        kind: Kind::Duration,
        flag: Flag::Shared("--window-idle"),
        value_name: "DURATION",
        help: "Close windows when nothing arrives for this long (processing time) [default: never]",
        example: "\"30s\"",
        doc: "Processing time: a source partition silent this long stops holding the watermark \
         back, and when every one is, every open window is written. Unset: windows close only on \
         event time, at the end of input and at a stop.",
        check: Check::span(NONZERO, MAX_DURATION, |c| c.window.idle),
        ..BLANK
    },
    OptionSpec {
        key: "window.max_open",
        kind: Kind::Count,
        flag: Flag::Shared("--window-max-open"),
        value_name: "N",
        help: "Most open (key, window) pairs kept; past it `window.overflow` applies [default: 1000000]",
        doc: "The most open (key, window) pairs held in memory; past it, `window.overflow` decides.",
        check: Check::int(1, 1 << 32, |c| Some(c.window.max_open as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "window.overflow",
        kind: Kind::Text,
        flag: Flag::Shared("--window-overflow"),
        value_name: "POLICY",
        help: "Past window.max_open: close-oldest (write the oldest pair early, partial = true) or dead-letter (new keys) [default: close-oldest]",
        doc: "Past `max_open`: \"close-oldest\" writes the oldest open pair early, marked in the \
         `partial` column; \"dead-letter\" dead-letters the records that would open a new pair. \
         Counted in pinflow_window_closed_early_total or as dead letters.",
        check: Check::Custom(rule::window_overflow),
        ..BLANK
    },
    OptionSpec {
        key: "window.threads",
        kind: Kind::Count,
        flag: Flag::Shared("--window-threads"),
        value_name: "N",
        help: "Threads holding the windows, keys spread over them by hash [default: 1: the writer's]",
        doc: "Threads that hold the windows. 1 (the default) runs them on the writer's thread; \
         more spread the keys over that many window threads by a hash of their values, each \
         thread placed on a worker core (pinned only with --pin-shared: the window threads \
         share the parse threads' cores), for runs whose aggregates (many percentiles, many \
         keys) are more than one core's work. The rows and late records are those of one thread, \
         but `max_open` is split evenly over the threads, and a resumed run needs the same \
         count. Needs `window.by`.",
        check: Check::int(1, 256, |c| Some(c.window.threads as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "window.records",
        kind: Kind::Path,
        flag: Flag::Shared("--window-records"),
        value_name: "PATH",
        help: "Write the records themselves as well, to this Parquet file [default: only window rows]",
        example: "\"records.parquet\"",
        doc: "Also write the records themselves, every one the windows are given (late ones \
         too: they are dead-lettered for the windows, and here), as Parquet to this path, \
         rotated like `out` (unpartitioned) and committed by the same journal checkpoints. \
         Unset: only the window rows are written.",
        check: Check::FilePath(|c| c.window.records.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "window.aggregates",
        kind: Kind::AggregateTable,
        flag: Flag::Shared("--window-agg"),
        value_name: "FIELD:AGG,...",
        help: "Aggregates of a numeric field per window, FIELD:AGG,... (repeatable); count, sum, mean, var, min, max, pNN, first, last [default: count only]",
        example: "{ http_status = [\"count\", \"mean\", \"var\", \"p99\"] }",
        doc: "Aggregates per numeric field, written as FIELD_AGG columns (fields in name order, \
         aggregates in the order given): count (non-null values), sum, mean, var (sample, n-1; null \
         below 2 values), min, max, pNN (p50, p99, p99.9; DDSketch, relative error at most 1 %), \
         first and last (by event time). In TOML a table of field names to lists of aggregates (see \
         the example); on the command line and in the environment FIELD:AGG,... (one per line).",
        check: Check::Custom(rule::window_aggregates),
        ..BLANK
    },
    OptionSpec {
        key: "metrics.addr",
        kind: Kind::ListenAddr,
        flag: Flag::Shared("--metrics-addr"),
        value_name: "ADDR",
        help: "Serve Prometheus metrics and health checks on HOST:PORT, or PORT for 127.0.0.1:PORT [default: off]",
        example: "\"127.0.0.1:9100\"",
        doc: "Serve Prometheus metrics and health checks over HTTP on this address: \"HOST:PORT\", \
         or \"PORT\" for 127.0.0.1:PORT. Unset: no endpoint.",
        ..BLANK
    },
    OptionSpec {
        key: "listen.addr",
        kind: Kind::ListenAddr,
        flag: Flag::Shared("--listen"),
        value_name: "ADDR",
        help: "Receive records: POST /ingest on HOST:PORT, or PORT for 127.0.0.1:PORT (needs writer.journal and writer.rotate_interval) [default: off]",
        example: "\"0.0.0.0:8080\"",
        doc: "Receive records over HTTP instead of fetching: clients POST a JSON object, array or \
         NDJSON (gzip accepted) to /ingest on this address, and get 200 once the records are \
         durable: fsynced in the write-ahead log OUT.receive-wal/ beside the output, or \
         committed by the journal (writer.journal on; checkpoints every \
         writer.rotate_interval free the log). Unset: off.",
        ..BLANK
    },
    OptionSpec {
        key: "listen.token",
        kind: Kind::Text,
        flag: Flag::Shared("--listen-token"),
        value_name: "TOKEN",
        help: "Bearer token receive clients must send (prefer PINFLOW_LISTEN_TOKEN: a flag shows in ps) [default: none]",
        example: "\"s3cret\"",
        doc: "Bearer token clients must send (`Authorization: Bearer TOKEN`); others get 401. \
         Compared in constant time and never logged. Unset: no token asked.",
        ..BLANK
    },
    OptionSpec {
        key: "listen.max_body_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--listen-max-body-bytes"),
        value_name: "SIZE",
        help: "Largest received request body, as sent [default: 16MiB]",
        doc: "Largest request body as sent (before gzip is inflated); larger ones get 413.",
        check: Check::int(1, 2 << 30, |c| Some(c.listen.max_body_bytes as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "listen.max_connections",
        kind: Kind::Count,
        flag: Flag::Shared("--listen-max-connections"),
        value_name: "N",
        help: "Open receive connections at most [default: 1024]",
        doc: "Open client connections at most; more are answered 503 (Retry-After) and closed.",
        check: Check::int(1, 1 << 20, |c| Some(c.listen.max_connections as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "listen.header_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--listen-header-timeout"),
        value_name: "DURATION",
        help: "Time for a received request's headers [default: 10s]",
        doc: "Time for a request's headers to arrive from its first byte; then 408 and close.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.listen.header_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "listen.body_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--listen-body-timeout"),
        value_name: "DURATION",
        help: "Time for a received request's body [default: 30s]",
        doc: "Time for a request's body to arrive after its headers; then 408 and close.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.listen.body_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "listen.idle_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--listen-idle-timeout"),
        value_name: "DURATION",
        help: "Idle kept-alive receive connections are closed after this [default: 60s]",
        doc: "A kept-alive connection with no request for this long is closed.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.listen.idle_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "listen.ack_timeout",
        kind: Kind::Duration,
        flag: Flag::Shared("--listen-ack-timeout"),
        value_name: "DURATION",
        help: "How long a received request waits for room and durability before 503 [default: 60s]",
        doc: "How long a request waits for room in the pipeline, then for the write-ahead \
         log's fsync (or the checkpoint) that makes it durable; then 503 (once admitted, its \
         records may still be written: a retry may duplicate them).",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.listen.ack_timeout)),
        ..BLANK
    },
    OptionSpec {
        key: "listen.tls_cert",
        kind: Kind::Path,
        flag: Flag::Shared("--listen-tls-cert"),
        value_name: "PATH",
        help: "Receive over https: PEM certificate chain of the endpoint (with --listen-tls-key) [default: plain HTTP]",
        example: "\"/etc/pinflow/receive.pem\"",
        doc: "Serve the receive endpoint over TLS (https://) with this PEM certificate chain, \
         leaf first; needs tls_key and listen.addr (set without an address, it is refused \
         rather than ignored). Read at start: a missing or invalid file fails the run. Unset: \
         plain HTTP.",
        check: Check::NonEmptyPath(|c| c.listen.tls_cert.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "listen.tls_key",
        kind: Kind::Path,
        flag: Flag::Shared("--listen-tls-key"),
        value_name: "PATH",
        help: "PEM private key of --listen-tls-cert",
        example: "\"/etc/pinflow/receive.key\"",
        doc: "The PEM private key (PKCS#8, PKCS#1 or SEC1) of tls_cert.",
        check: Check::NonEmptyPath(|c| c.listen.tls_key.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "listen.tls_client_ca",
        kind: Kind::Path,
        flag: Flag::Shared("--listen-tls-client-ca"),
        value_name: "PATH",
        help: "Require receive clients to present a certificate issued by a CA in this PEM file (mTLS) [default: not asked]",
        example: "\"/etc/pinflow/clients-ca.pem\"",
        doc: "Mutual TLS: clients must present a certificate issued by one of the CA \
         certificates in this PEM file, or their handshake fails. Needs tls_cert. Unset: no \
         client certificate asked.",
        check: Check::NonEmptyPath(|c| c.listen.tls_client_ca.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "log.format",
        kind: Kind::LogFormat,
        flag: Flag::Shared("--log-format"),
        value_name: "FORMAT",
        help: "Log lines as text or json [default: text]",
        doc: "\"text\" lines or \"json\" (one object per line).",
        ..BLANK
    },
    OptionSpec {
        key: "log.level",
        kind: Kind::Text,
        flag: Flag::Shared("--log-level"),
        value_name: "LEVEL",
        help: "Least severe messages shown: off, error, warn, info, debug, trace [default: info]",
        doc: "The least severe messages shown: off, error, warn, info, debug or trace.",
        check: Check::Custom(rule::log_level),
        ..BLANK
    },
    OptionSpec {
        key: "log.progress",
        kind: Kind::Progress,
        flag: Flag::Shared("--progress"),
        value_name: "WHEN",
        help: "Progress line: auto (on a terminal), always, never [default: auto]",
        doc: "Progress line: \"auto\" (only on a terminal), \"always\" or \"never\".",
        ..BLANK
    },
    OptionSpec {
        key: "kafka.key_field",
        kind: Kind::Text,
        flag: Flag::Shared("--kafka-key"),
        value_name: "COLUMN",
        help: "Kafka output: the message key is COLUMN's value [default: no key]",
        example: "\"host\"",
        doc: "The column whose value is each Kafka message's key (strings as they are, other \
         values as JSON; a null: no key), so that records with the same value go to the same \
         partition, in order. Default: no key (librdkafka spreads the messages).",
        ..BLANK
    },
    OptionSpec {
        key: "kafka.properties",
        kind: Kind::StringList,
        flag: Flag::Shared("--kafka-property"),
        value_name: "NAME=VALUE",
        help: "Kafka source and output: a librdkafka property (repeatable; put secrets in the config file, not here) [default: none]",
        example: "[\"compression.type=lz4\", \"linger.ms=20\"]",
        doc: "librdkafka properties for the Kafka source's consumer and the Kafka output's \
         producer, each `name=value`, passed through as given (TLS with \
         `security.protocol=ssl` and `ssl.ca.location`, SASL PLAIN and SCRAM, through the \
         system's OpenSSL; not Kerberos; values are never logged). `bootstrap.servers`, `enable.idempotence`, `acks`, \
         `group.id`, `enable.partition.eof` and the offset-commit settings (and their other \
         names) are pinflow's own: the brokers come from \
         the URL or kafka.brokers, the producer is idempotent with `acks=all`, and the \
         source commits offsets itself once they are durable. Unlike other lists, the \
         layers merge by property name: the environment or a flag replaces the same \
         property of the file and keeps the file's others (its secrets), so \
         `--kafka-property linger.ms=5` changes one property. A property set twice (under \
         one name, an alias or a `topic.` prefix) takes the last value given.",
        check: Check::Custom(rule::kafka_properties),
        ..BLANK
    },
    OptionSpec {
        key: "kafka.brokers",
        kind: Kind::Text,
        flag: Flag::Shared("--kafka-brokers"),
        value_name: "HOST:PORT[,...]",
        help: "Kafka source: the brokers to consume the topics (--kafka-topics) from, as a member of the group (--kafka-group) [default: no Kafka source]",
        example: "\"127.0.0.1:9092\"",
        doc: "The Kafka source's brokers, `HOST:PORT[,HOST:PORT]` (librdkafka's \
         `bootstrap.servers`): set, `pinflow run` consumes `kafka.topics` as a member of \
         `kafka.group` instead of fetching URLs, one record per message (a JSON object; NDJSON \
         or an array in one message also work). See docs/usage.md, \"Kafka source\".",
        check: Check::Custom(rule::kafka_brokers),
        ..BLANK
    },
    OptionSpec {
        key: "kafka.topics",
        kind: Kind::NameList,
        flag: Flag::Shared("--kafka-topics"),
        value_name: "TOPICS",
        help: "Kafka source: the topics to consume (comma-separated) [default: none]",
        example: "[\"logs\"]",
        doc: "The topics the Kafka source subscribes to (needs `kafka.brokers` and \
         `kafka.group`).",
        check: Check::Custom(rule::kafka_topics),
        ..BLANK
    },
    OptionSpec {
        key: "kafka.group",
        kind: Kind::Text,
        flag: Flag::Shared("--kafka-group"),
        value_name: "GROUP",
        help: "Kafka source: the consumer group (processes of one group share the partitions) [default: none]",
        example: "\"pinflow\"",
        doc: "The Kafka source's consumer group (`group.id`): the processes of one group share \
         the topics' partitions, and a partition moves to another member when its reader \
         stops. Offsets are committed to it only once what they cover is durable.",
        ..BLANK
    },
    OptionSpec {
        key: "kafka.exit_at_end",
        kind: Kind::Bool,
        flag: Flag::Shared("--exit-at-end"),
        value_name: "BOOL",
        help: "Kafka source: stop once every assigned partition reached the end it had when assigned [default: false: run until stopped]",
        doc: "The Kafka source stops once every partition assigned to it reached the end \
         offset (high watermark) it had when it was assigned, and what it read is durable \
         (for batch-style runs); false: it runs until SIGINT or SIGTERM, which drain and \
         commit.",
        ..BLANK
    },
    OptionSpec {
        key: "kafka.batch_max_messages",
        kind: Kind::Count,
        doc: "A batch of the Kafka source goes to the parse threads when it holds this many \
         messages...",
        check: Check::int(1, 1_000_000, |c| Some(c.kafka.batch_max_messages as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "kafka.batch_max_bytes",
        kind: Kind::Bytes,
        doc: "...or this many message bytes, or when librdkafka has no more in hand (so under \
         a light flow batches stay small). The Kafka source's own, not fetch.batch_max_items \
         and fetch.batch_max_bytes, which are sized for HTTP responses: a message is usually \
         one small record, and batches that small made the per-batch work a visible share of \
         a Kafka read (docs/performance.md).",
        check: Check::int(1, 1 << 30, |c| Some(c.kafka.batch_max_bytes as u64)),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.endpoint",
        kind: Kind::Text,
        flag: Flag::Shared("--s3-endpoint"),
        value_name: "URL",
        help: "Object storage: the store's URL [default: AWS_ENDPOINT_URL, or AWS]",
        example: "\"http://127.0.0.1:9000\"",
        doc: "The object store's URL (AWS, MinIO, Ceph, moto), `https://` or `http://`. \
         Unset: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS's own for the region.",
        check: Check::Custom(rule::output_s3_endpoint),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.region",
        kind: Kind::Text,
        flag: Flag::Shared("--s3-region"),
        value_name: "REGION",
        help: "Object storage: the region signed for [default: AWS_REGION, or us-east-1]",
        example: "\"eu-west-1\"",
        doc: "The region requests are signed for. Unset: AWS_REGION, AWS_DEFAULT_REGION, or \
         us-east-1.",
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.path_style",
        kind: Kind::Bool,
        flag: Flag::Negatable {
            on: "--s3-path-style",
            off: "--no-s3-path-style",
            off_help: "Object storage: virtual-host addressing unless the endpoint is an IP address",
        },
        help: "Object storage: path-style addressing (ENDPOINT/BUCKET/KEY) [default: only for an IP address or localhost]",
        doc: "Address objects as ENDPOINT/BUCKET/KEY (MinIO, Ceph, moto by name) rather than \
         BUCKET.ENDPOINT/KEY. An endpoint that is an IP address or `localhost` always is.",
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.ca_file",
        kind: Kind::Path,
        flag: Flag::Shared("--s3-ca-file"),
        value_name: "PATH",
        help: "Object storage: PEM file of the CAs an https:// store is checked against [default: Mozilla's roots]",
        example: "\"/etc/pinflow/store-ca.pem\"",
        doc: "A PEM file of the CA certificates an https:// endpoint's certificate is checked \
         against, instead of Mozilla's roots (a private CA, a self-signed store). Unset: \
         Mozilla's roots.",
        check: Check::FilePath(|c| c.output.s3.ca_file.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.staging_dir",
        kind: Kind::Path,
        flag: Flag::Shared("--s3-staging-dir"),
        value_name: "DIR",
        help: "Object storage: where files wait to be uploaded [default: pinflow-s3-staging/BUCKET/PREFIX]",
        example: "\"/var/spool/pinflow\"",
        doc: "Where finished files wait to be uploaded (with each file's upload state beside \
         it); a later run to the same directory uploads what an earlier one left. Unset: \
         pinflow-s3-staging/BUCKET/PREFIX in the working directory.",
        check: Check::NonEmptyPath(|c| c.output.s3.staging_dir.as_deref()),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.staging_max_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--s3-staging-max-bytes"),
        value_name: "SIZE",
        help: "Object storage: staged bytes past which the writer waits [default: 1GiB]",
        doc: "Staged bytes past which the writer waits for the uploader (and so the pipeline \
         slows down); nothing is discarded. A file being written is not counted until it is \
         finished.",
        check: Check::int(1, 1 << 50, |c| Some(c.output.s3.staging_max_bytes)),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.part_size",
        kind: Kind::Bytes,
        flag: Flag::Shared("--s3-part-size"),
        value_name: "SIZE",
        help: "Object storage: multipart part size, at least 5MiB [default: 8MiB]",
        doc: "Files of at least this size go up as multipart uploads in parts of this size \
         (or of size/10,000, for a file that would need more parts); smaller ones in one PUT. \
         S3 takes parts of 5 MiB to 5 GiB.",
        check: Check::int(
            crate::config::S3_MIN_PART_SIZE,
            5 << 30,
            |c| Some(c.output.s3.part_size),
        ),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.attempts",
        kind: Kind::Count32,
        flag: Flag::Shared("--s3-attempts"),
        value_name: "N",
        help: "Object storage: attempts per request [default: 8]",
        doc: "Attempts per request (the first included) before a transient failure (5xx, \
         SlowDown, a dropped connection, a timeout) fails the run, keeping the staged files; \
         this bounds them at the end of the run or after a stop, while before it a store that \
         stays away is waited for (files stay staged, the staging bound slows the pipeline).",
        check: Check::int(1, 1000, |c| Some(u64::from(c.output.s3.attempts))),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.read_chunk_bytes",
        kind: Kind::Bytes,
        flag: Flag::Shared("--s3-read-chunk-bytes"),
        value_name: "SIZE",
        help: "Object storage: bytes per ranged GET of a --files s3:// object [default: 8MiB]",
        doc: "`--files s3://` reads each object by ranged GETs of this many bytes, streamed \
         (no object is held whole in memory); a connection dropped mid-range is read again \
         from the byte reached. The reads use this table's endpoint, region, path_style, \
         ca_file and attempts too.",
        check: Check::int(1024, 1 << 32, |c| Some(c.output.s3.read_chunk_bytes)),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.upload_concurrency",
        kind: Kind::Count32,
        flag: Flag::Shared("--s3-upload-concurrency"),
        value_name: "N",
        help: "Object storage: requests to the store at once [default: 4]",
        doc: "Requests to the store at once: staged files are uploaded side by side, and the \
         parts of one multipart upload are sent side by side, together at most this many \
         (each file still goes through its own recorded steps, so a kill leaves each one \
         resumable). Each request reads its file or part from the staging directory as it \
         sends it, holding none of it in memory.",
        check: Check::int(1, 64, |c| Some(u64::from(c.output.s3.upload_concurrency))),
        ..BLANK
    },
    OptionSpec {
        key: "output.s3.stall_after",
        kind: Kind::Duration,
        flag: Flag::Shared("--s3-stall-after"),
        value_name: "DURATION",
        help: "Object storage: no successful request for this long while files wait, and /readyz reports the uploader stuck [default: 15m]",
        doc: "How long the uploader may go without a request to the store succeeding, while \
         files wait to be uploaded, before `/readyz` answers 503 naming it stuck (the run goes \
         on waiting for the store; readiness comes back with the next success). The default \
         outlasts one request's own limit (600 s) and its retries; lower it where an \
         orchestrator should notice an unreachable store sooner.",
        check: Check::span(NONZERO, MAX_DURATION, |c| Some(c.output.s3.stall_after)),
        ..BLANK
    },
];

//! What is wrong with a configuration: the checks of [`Config::problems`], diagnostics with
//! where each value came from, and did-you-mean suggestions for unknown keys.
//!
//! A rule about one option's value is declared with the option, as its [`Check`] in the
//! registry ([`OPTIONS`]), so that an option brings its validation with it; the rules that
//! relate two or more options are code here ([`Config::cross_key_problems`]).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::headers::check_header;
use super::layers::parse_layer;
use super::registry::OPTIONS;
use super::{Compression, Config, ConfigLayer, FetchEngine, LOG_LEVELS};
use crate::error::Error;
use crate::schema::{FieldSpec, StatSpec, Unknown};

/// "must be at least 1", the most common problem.
const AT_LEAST_ONE: &str = "must be at least 1";
/// What a zero duration is told.
const LONGER_THAN_ZERO: &str = "must be longer than zero";

/// The longest duration any option takes: long enough for any real timeout or period, short
/// enough that adding it to a clock reading never overflows.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The least duration of an option where zero is meaningless ("must be longer than zero").
pub(super) const NONZERO: Duration = Duration::from_nanos(1);

/// The rule an option's value must follow, whatever the other options are: declared with the
/// option in the registry, run by [`Config::problems`]. Each reads the option's value from the
/// typed [`Config`]; a test sets every checked key to a bad value and expects a problem named
/// by that key, so a rule cannot read the wrong field unnoticed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Check {
    /// Any value the option's type reads is good.
    None,
    /// An integer that, when set, lies in `min..=max`: "must be at least 1", "must be at most
    /// 1024". Every integer option has one, so that no value can overflow or exhaust memory.
    Int {
        /// The least value accepted.
        min: u64,
        /// The greatest value accepted.
        max: u64,
        /// The option's value.
        value: fn(&Config) -> Option<u64>,
    },
    /// A duration that, when set, lies in `min..=max` ([`NONZERO`] for "must be longer than
    /// zero"). Every duration option has one, at most [`MAX_DURATION`].
    Span {
        /// The least duration accepted.
        min: Duration,
        /// The longest duration accepted.
        max: Duration,
        /// The option's value.
        value: fn(&Config) -> Option<Duration>,
    },
    /// A path that, when set, names a file (not empty, not `/` or `..`).
    FilePath(fn(&Config) -> Option<&Path>),
    /// A path that, when set, is not empty: "is empty".
    NonEmptyPath(fn(&Config) -> Option<&Path>),
    /// A dotted field path into a JSON object (`data`, `meta.next`), when set.
    FieldPath(fn(&Config) -> Option<&str>),
    /// A rule of its own, in [`rule`]: every problem with the value.
    Custom(fn(&Config) -> Vec<Bad>),
}

/// A problem a [`Check`] found with its option's value.
#[derive(Debug)]
pub(super) struct Bad {
    /// The list element it is about, shown as `key[n]`; `None` for the whole value.
    item: Option<usize>,
    /// What is wrong.
    why: String,
}

impl Bad {
    /// The whole value is wrong, because `why`.
    fn value(why: impl Into<String>) -> Bad {
        Bad {
            item: None,
            why: why.into(),
        }
    }

    /// One problem, `why`, when `wrong`; none otherwise.
    fn when(wrong: bool, why: impl Into<String>) -> Vec<Bad> {
        if wrong {
            vec![Bad::value(why)]
        } else {
            Vec::new()
        }
    }

    /// A problem for each element of a list that is wrong (an `Err` saying why).
    fn items<T>(results: impl Iterator<Item = Result<T, String>>) -> Vec<Bad> {
        results
            .enumerate()
            .filter_map(|(n, r)| r.err().map(|why| Bad { item: Some(n), why }))
            .collect()
    }
}

impl Check {
    /// An integer option's check: its value, when set, in `min..=max`.
    pub(super) const fn int(min: u64, max: u64, value: fn(&Config) -> Option<u64>) -> Check {
        Check::Int { min, max, value }
    }

    /// A duration option's check: its value, when set, in `min..=max`.
    pub(super) const fn span(
        min: Duration,
        max: Duration,
        value: fn(&Config) -> Option<Duration>,
    ) -> Check {
        Check::Span { min, max, value }
    }

    /// The range of values accepted, for an integer or duration option.
    pub(super) fn bounds(&self) -> Option<super::Bounds> {
        match *self {
            Check::Int { min, max, .. } => Some(super::Bounds::Integer { min, max }),
            Check::Span { min, max, .. } => Some(super::Bounds::Duration { min, max }),
            _ => None,
        }
    }

    /// What is wrong with the option's value in `cfg`; empty when it is good.
    pub(super) fn problems(&self, cfg: &Config) -> Vec<Bad> {
        match *self {
            Check::None => Vec::new(),
            Check::Int { min, max, value } => match value(cfg) {
                Some(0) if min == 1 => vec![Bad::value(AT_LEAST_ONE)],
                Some(n) if n < min => vec![Bad::value(format!("must be at least {min}"))],
                Some(n) if n > max => vec![Bad::value(format!("must be at most {max}, got {n}"))],
                _ => Vec::new(),
            },
            Check::Span { min, max, value } => match value(cfg) {
                Some(d) if d.is_zero() && min == NONZERO => vec![Bad::value(LONGER_THAN_ZERO)],
                Some(d) if d < min => vec![Bad::value(format!(
                    "must be at least {}",
                    super::format_duration(min)
                ))],
                Some(d) if d > max => vec![Bad::value(format!(
                    "must be at most {}, got {}",
                    super::format_duration(max),
                    super::format_duration(d)
                ))],
                _ => Vec::new(),
            },
            Check::FilePath(value) => match value(cfg) {
                Some(p) if p.as_os_str().is_empty() || p.file_name().is_none() => {
                    vec![Bad::value(format!("`{}` is not a file path", p.display()))]
                }
                _ => Vec::new(),
            },
            Check::NonEmptyPath(value) => Bad::when(
                value(cfg).is_some_and(|p| p.as_os_str().is_empty()),
                "is empty",
            ),
            Check::FieldPath(value) => Bad::when(
                value(cfg).is_some_and(|p| p.split('.').any(str::is_empty)),
                "is not a dotted field path such as `data` or `meta.next`",
            ),
            Check::Custom(rule) => rule(cfg),
        }
    }
}

/// The [`Check::Custom`] rules of the registry's options, one function per option, named
/// after it.
pub(super) mod rule {
    use super::*;

    pub(in crate::config) fn kafka_properties(c: &Config) -> Vec<Bad> {
        let mut bad = Vec::new();
        for (i, p) in c.kafka.properties.iter().enumerate() {
            match p.split_once('=') {
                Some((name, _)) if !name.trim().is_empty() => {
                    if crate::kafka::is_fixed_property(name) {
                        bad.push(Bad::value(format!(
                            "`{}` is set by pinflow itself and cannot be changed",
                            name.trim()
                        )));
                    }
                }
                // (Not shown: it may be a secret.)
                _ => bad.push(Bad::value(format!("entry {} is not `name=value`", i + 1))),
            }
        }
        bad
    }

    pub(in crate::config) fn kafka_brokers(c: &Config) -> Vec<Bad> {
        match c.kafka.brokers.as_deref().map(crate::kafka::check_brokers) {
            Some(Err(why)) => vec![Bad::value(why)],
            _ => Vec::new(),
        }
    }

    pub(in crate::config) fn kafka_topics(c: &Config) -> Vec<Bad> {
        Bad::items(c.kafka.topics.iter().map(|t| crate::kafka::check_topic(t)))
    }

    pub(in crate::config) fn output_s3_endpoint(c: &Config) -> Vec<Bad> {
        let Some(e) = &c.output.s3.endpoint else {
            return Vec::new();
        };
        let host = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"));
        Bad::when(
            host.is_none_or(|h| h.is_empty() || h.starts_with('/')),
            format!("`{e}` is not an http:// or https:// URL with a host"),
        )
    }

    pub(in crate::config) fn window_time(c: &Config) -> Vec<Bad> {
        Bad::when(c.window.time.trim().is_empty(), "is empty")
    }

    pub(in crate::config) fn window_by(c: &Config) -> Vec<Bad> {
        let by = &c.window.by;
        Bad::items(by.iter().enumerate().map(|(n, name)| {
            if by[..n].contains(name) {
                Err(format!("`{name}` is listed twice"))
            } else if *name == c.window.time {
                Err(format!(
                    "`{name}` is the event-time column (window.time); a key must be another column"
                ))
            } else {
                Ok(())
            }
        }))
    }

    pub(in crate::config) fn window_overflow(c: &Config) -> Vec<Bad> {
        super::super::window_overflow(&c.window.overflow)
            .err()
            .map(Bad::value)
            .into_iter()
            .collect()
    }

    pub(in crate::config) fn window_aggregates(c: &Config) -> Vec<Bad> {
        let mut bad = Vec::new();
        for (field, aggs) in &c.window.aggregates {
            if field.trim().is_empty() {
                bad.push(Bad::value("a field name is empty"));
            }
            if let Err(why) = crate::window::parse_aggregates(&aggs.join(",")) {
                bad.push(Bad::value(format!("{field}: {why}")));
            }
        }
        bad
    }

    pub(in crate::config) fn source(c: &Config) -> Vec<Bad> {
        Bad::when(
            c.source.as_deref().is_some_and(|s| s.trim().is_empty()),
            "is empty",
        )
    }

    pub(in crate::config) fn files(c: &Config) -> Vec<Bad> {
        Bad::when(
            c.files.iter().any(|f| f.trim().is_empty()),
            "holds an empty path",
        )
    }

    pub(in crate::config) fn tail(c: &Config) -> Vec<Bad> {
        match c.tail.as_deref() {
            Some(t) if t.trim().is_empty() => Bad::when(true, "is empty"),
            Some(t) => Bad::when(
                glob::Pattern::new(t).is_err(),
                "is not a path or glob pattern",
            ),
            None => Vec::new(),
        }
    }

    pub(in crate::config) fn format(c: &Config) -> Vec<Bad> {
        Bad::when(
            !matches!(c.format.as_str(), "auto" | "ndjson" | "csv"),
            "is not auto, ndjson or csv",
        )
    }

    pub(in crate::config) fn csv_delimiter(c: &Config) -> Vec<Bad> {
        let d = c.csv_delimiter.as_bytes();
        Bad::when(
            c.csv_delimiter != "tab" && (d.len() != 1 || matches!(d[0], b'"' | b'\n' | b'\r')),
            "is not one ASCII character other than a quote or a line break, or `tab`",
        )
    }

    pub(in crate::config) fn dedupe_key(c: &Config) -> Vec<Bad> {
        Bad::when(
            c.fetch
                .dedupe_key
                .as_deref()
                .is_some_and(|k| k.trim().is_empty()),
            "is empty: give the column whose value identifies a record",
        )
    }

    pub(in crate::config) fn since_field(c: &Config) -> Vec<Bad> {
        Bad::when(
            c.fetch
                .since_field
                .as_deref()
                .is_some_and(|k| k.trim().is_empty()),
            "is empty: give the timestamp or int64 column whose highest value fills `{since}`",
        )
    }

    pub(in crate::config) fn cpus(c: &Config) -> Vec<Bad> {
        Bad::when(
            c.threads.cpus.as_ref().is_some_and(|c| c.is_empty()),
            "the list is empty",
        )
    }

    pub(in crate::config) fn cursor_param(c: &Config) -> Vec<Bad> {
        let p = &c.fetch.cursor_param;
        Bad::when(
            p.is_empty() || p.contains(['&', '=', '#', '?', ' ']),
            format!("`{p}` is not a query parameter name"),
        )
    }

    pub(in crate::config) fn headers(c: &Config) -> Vec<Bad> {
        Bad::items(c.fetch.headers.iter().map(|h| check_header(h)))
    }

    pub(in crate::config) fn accept_encoding(c: &Config) -> Vec<Bad> {
        c.fetch
            .accept_encoding
            .split(',')
            .map(str::trim)
            .filter(|token| {
                !matches!(*token, "" | "gzip" | "deflate" | "identity")
                    && !token.starts_with("identity;")
            })
            .map(|token| {
                Bad::value(format!(
                    "`{token}` is not an encoding pinflow decodes (gzip, deflate, identity)"
                ))
            })
            .collect()
    }

    pub(in crate::config) fn compression(c: &Config) -> Vec<Bad> {
        match c.writer.compression {
            Compression::Zstd(level) if !(1..=22).contains(&level) => {
                vec![Bad::value(format!("zstd level {level} is not in 1..=22"))]
            }
            _ => Vec::new(),
        }
    }

    pub(in crate::config) fn fields(c: &Config) -> Vec<Bad> {
        Bad::items(c.schema.fields.iter().map(|f| f.parse::<FieldSpec>()))
    }

    pub(in crate::config) fn unknown(c: &Config) -> Vec<Bad> {
        match c.schema.unknown.parse::<Unknown>() {
            Ok(_) => Vec::new(),
            Err(why) => vec![Bad::value(why)],
        }
    }

    pub(in crate::config) fn max_dead_letters(c: &Config) -> Vec<Bad> {
        match c
            .writer
            .max_dead_letters
            .parse::<super::super::DeadLetterTolerance>()
        {
            Ok(_) => Vec::new(),
            Err(why) => vec![Bad::value(why)],
        }
    }

    pub(in crate::config) fn timestamp_format(c: &Config) -> Vec<Bad> {
        match c.schema.timestamp_format.parse::<crate::time::TimeFormat>() {
            Ok(_) => Vec::new(),
            Err(why) => vec![Bad::value(why)],
        }
    }

    pub(in crate::config) fn timestamp_zone(c: &Config) -> Vec<Bad> {
        match c
            .schema
            .timestamp_zone
            .as_deref()
            .map(crate::time::parse_zone)
        {
            Some(Err(why)) => vec![Bad::value(why)],
            _ => Vec::new(),
        }
    }

    /// Each `filter` expression parses.
    pub(in crate::config) fn filters(c: &Config) -> Vec<Bad> {
        Bad::items(c.filter.iter().map(|f| {
            crate::expr::parse(f)
                .map(|_| ())
                .map_err(|e| format!("column {}: {}", e.offset + 1, e.message))
        }))
    }

    /// Each `rename` entry is `OLD=NEW`, neither empty.
    pub(in crate::config) fn renames(c: &Config) -> Vec<Bad> {
        Bad::items(c.rename.iter().map(|r| match r.split_once('=') {
            Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => Ok(()),
            _ => Err(format!("`{r}` is not OLD=NEW")),
        }))
    }

    pub(in crate::config) fn lineage(c: &Config) -> Vec<Bad> {
        match crate::schema::Lineage::from_names(&c.schema.lineage) {
            Ok(_) => Vec::new(),
            Err(why) => vec![Bad::value(why)],
        }
    }

    pub(in crate::config) fn stats(c: &Config) -> Vec<Bad> {
        Bad::items(
            c.schema
                .stats
                .iter()
                .flatten()
                .map(|s| s.parse::<StatSpec>()),
        )
    }

    pub(in crate::config) fn log_level(c: &Config) -> Vec<Bad> {
        let level = c.log.level.to_ascii_lowercase();
        Bad::when(
            !LOG_LEVELS.contains(&level.as_str()),
            format!("`{}` is not one of {}", c.log.level, LOG_LEVELS.join(", ")),
        )
    }
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<Diagnostic>);

impl Problems {
    /// `key`'s value cannot work, because `why`.
    fn bad(&mut self, key: &str, why: String) {
        self.0.push(Diagnostic {
            origin: None,
            key: Some(key.to_string()),
            message: why,
        });
    }
}

impl Config {
    /// Every value that cannot work, each with its key path (e.g. `fetch.max_in_flight`) and
    /// no origin; [`Config::problems_in`] adds where each value came from. First each option's
    /// own check (`Check`), in registry order (the order of `pinflow config default`), then the rules
    /// that relate several options.
    pub fn problems(&self) -> Vec<Diagnostic> {
        let mut found = Problems::default();
        for o in OPTIONS {
            for Bad { item, why } in o.check.problems(self) {
                match item {
                    Some(n) => found.bad(&format!("{}[{n}]", o.key()), why),
                    None => found.bad(o.key(), why),
                }
            }
        }
        self.cross_key_problems(&mut found);
        found.0
    }

    /// The rules that relate two or more options, so belong to no one option's [`Check`]:
    /// each names the key whose value is to change. Some of them only make sense once the
    /// values they combine are good on their own (a schema is checked as a whole only when
    /// each of its fields and statistics reads), which is why they come after every [`Check`].
    fn cross_key_problems(&self, found: &mut Problems) {
        self.tls_pair_problems(found);
        self.pagination_problems(found);
        self.schema_problems(found);
        self.partition_problems(found);
        for (key, why) in super::enrich::enrich_problems(&self.enrich) {
            found.bad(&key, why);
        }
        self.transform_problems(found);
        self.window_problems(found);
    }

    /// Each `[[transform]]` table on its own (a file's are checked as they are read, with
    /// their lines; this is for a configuration built in code).
    fn transform_problems(&self, found: &mut Problems) {
        for (i, t) in self.transform.iter().enumerate() {
            if let Some((why, offset)) = t.problem() {
                let why = match offset {
                    Some(o) => format!("at byte {o} of the expression: {why}"),
                    None => why,
                };
                found.bad(&format!("transform[{i}]"), why);
            }
        }
    }

    /// Windows: the hop within the size, window keys only with windows on, and the columns
    /// named against a fixed schema (an inferred one is checked at the first batch).
    fn window_problems(&self, found: &mut Problems) {
        let w = &self.window;
        let Some(size) = w.size else {
            // Keys and aggregates without a size would be a run that silently writes records
            // instead of windows; the durations alone change nothing, and are left alone.
            let set = [
                ("window.by", !w.by.is_empty()),
                ("window.aggregates", !w.aggregates.is_empty()),
                ("window.records", w.records.is_some()),
            ];
            for (key, _) in set.iter().filter(|(_, on)| *on) {
                found.bad(
                    key,
                    "is set but windows are off: set window.size (--window) too".into(),
                );
            }
            return;
        };
        if w.threads > 1 && w.by.is_empty() {
            found.bad(
                "window.threads",
                "is more than 1 without window.by: the keys are what is spread over the \
                 threads, and without window.by there is one"
                    .into(),
            );
        }
        if let Some(records) = &w.records {
            let dir = |p: &std::path::Path| crate::fsutil::parent_dir(p).to_path_buf();
            if *records == self.out {
                found.bad(
                    "window.records",
                    "is the output file (out): the records need a file of their own".into(),
                );
            } else if self.writer.journal && dir(records) != dir(&self.out) {
                found.bad(
                    "window.records",
                    format!(
                        "is not in the output's directory ({}): with writer.journal the \
                         journal there commits the records' files too, so they go beside it",
                        dir(&self.out).display()
                    ),
                );
            }
        }
        if w.hop.is_some_and(|hop| hop > size) {
            found.bad(
                "window.hop",
                format!(
                    "must be at most window.size ({}): a longer hop would skip records",
                    super::format_duration(size)
                ),
            );
        }
        // Each part already had its own check; a bad one is reported there.
        let parts_ok = [
            rule::window_time,
            rule::window_by,
            rule::window_overflow,
            rule::window_aggregates,
        ]
        .iter()
        .all(|r| r(self).is_empty());
        if !parts_ok {
            return;
        }
        if let Err(why) = self.window_spec().and_then(|spec| spec.validate()) {
            found.bad("window", why);
            return;
        }
        if let Ok(Some(layout)) = self.schema.layout() {
            if let Err((key, why)) = self.window_against(&layout.output_schema()) {
                found.bad(&key, why);
            }
        }
    }

    /// A certificate and its key go together (the fetcher's client one, the receive endpoint's).
    fn tls_pair_problems(&self, found: &mut Problems) {
        match (&self.fetch.tls_client_cert, &self.fetch.tls_client_key) {
            (Some(_), None) => found.bad(
                "fetch.tls_client_key",
                "is needed with fetch.tls_client_cert".into(),
            ),
            (None, Some(_)) => found.bad(
                "fetch.tls_client_cert",
                "is needed with fetch.tls_client_key".into(),
            ),
            _ => {}
        }
        let l = &self.listen;
        match (&l.tls_cert, &l.tls_key) {
            (Some(_), None) => found.bad("listen.tls_key", "is needed with listen.tls_cert".into()),
            (None, Some(_)) => found.bad("listen.tls_cert", "is needed with listen.tls_key".into()),
            _ => {}
        }
        // Without an address nothing listens: TLS files there would be ignored in silence.
        if l.addr.is_none() {
            let set = [
                ("listen.tls_cert", l.tls_cert.is_some()),
                ("listen.tls_key", l.tls_key.is_some()),
                ("listen.tls_client_ca", l.tls_client_ca.is_some()),
            ];
            for (key, _) in set.iter().filter(|(_, on)| *on) {
                found.bad(
                    key,
                    "is set, but nothing listens: it needs listen.addr (--listen)".into(),
                );
            }
        }
        if l.tls_client_ca.is_some() && l.tls_cert.is_none() {
            found.bad(
                "listen.tls_client_ca",
                "needs listen.tls_cert and listen.tls_key (client certificates are asked over TLS)"
                    .into(),
            );
        }
    }

    /// Pagination, and what the journal and the ureq engine exclude.
    fn pagination_problems(&self, found: &mut Problems) {
        let f = &self.fetch;
        if f.cursor_field.is_some() && f.records_field.is_none() {
            found.bad(
                "fetch.cursor_field",
                "needs fetch.records_field (the envelope's array of records)".into(),
            );
        }
        if f.engine == FetchEngine::Ureq && f.cursor_field.is_some() {
            found.bad(
                "fetch.cursor_field",
                "cursor pagination is supported by the mio fetcher only".into(),
            );
        }
        if self.writer.journal {
            // With `{since}`, the journal keeps the position a restarted run starts from.
            if self.every.is_some() && f.since_field.is_none() {
                found.bad(
                    "writer.journal",
                    "is for one-shot runs; continuous mode (`every`) resumes with its next pass \
                     (with fetch.since_field, the journal keeps its position)"
                        .into(),
                );
            }
            if f.follow_link_next || f.cursor_field.is_some() {
                found.bad(
                    "writer.journal",
                    "cannot track the pages of paginated sources (follow_link_next, cursor_field)"
                        .into(),
                );
            }
        }
        if f.engine == FetchEngine::Ureq && f.follow_link_next {
            found.bad(
                "fetch.follow_link_next",
                "pagination is supported by the mio fetcher only".into(),
            );
        }
        if f.engine == FetchEngine::Ureq && self.every.is_some() {
            found.bad(
                "fetch.engine",
                "the ureq fetcher does not support continuous mode (`every`); use mio".into(),
            );
        }
    }

    /// Listed fields with inference, and a fixed layout as a whole (fields, statistics and
    /// the unknown-field policy together).
    fn schema_problems(&self, found: &mut Problems) {
        let sc = &self.schema;
        if sc.infer == Some(true) && !sc.fields.is_empty() {
            found.bad(
                "schema.infer",
                "infers the fields when none are listed; remove schema.fields or infer".into(),
            );
        }
        // Each part already had its own check; a bad one is reported there, not again here.
        let parts_ok = [
            rule::unknown,
            rule::fields,
            rule::stats,
            rule::timestamp_format,
            rule::timestamp_zone,
            rule::lineage,
        ]
        .iter()
        .all(|r| r(self).is_empty());
        if parts_ok {
            // A pattern without %z needs a zone, whatever the layout.
            if let Err(why) = sc.timestamp_rule() {
                found.bad("schema.timestamp_zone", why);
            }
        }
        if parts_ok && (!sc.fields.is_empty() || sc.infer == Some(false)) {
            // A fixed layout can be checked as a whole now (duplicate columns, statistics of a
            // column that is not a numeric list...).
            if let Err(Error::Config { why, .. }) = sc.layout() {
                found.bad("schema", why);
            }
        }
    }

    /// Partition columns, which must be columns of the schema (when it is fixed); files by
    /// Kafka partition, which need a journal and rows of one partition each. (Without a
    /// Kafka source the run says so: it needs one.)
    fn partition_problems(&self, found: &mut Problems) {
        let w = &self.writer;
        if w.file_per_kafka_partition && self.kafka.is_source() {
            let key = "writer.file_per_kafka_partition";
            if !w.journal {
                found.bad(
                    key,
                    "needs writer.journal (--journal): without it a restart may write an offset \
                     again, and its file would take the name of the file that already holds it"
                        .into(),
                );
            }
            if !w.partition_by.is_empty() {
                found.bad(
                    key,
                    "cannot be combined with writer.partition_by: the directories are \
                     topic=T/partition=P"
                        .into(),
                );
            }
            if self.window.enabled() {
                found.bad(
                    key,
                    "cannot be combined with windows: a window's rows come from many partitions"
                        .into(),
                );
            }
        }
        // Problems name the whole key (not `[n]`), so they are attributed to where it was set.
        // Columns are checked against a fixed layout now; an inferred one is checked when known.
        // With windows the rows written are window rows, whose columns are known once the
        // operator is: checked then, at the first rows.
        let fixed_schema = self
            .schema
            .layout()
            .ok()
            .flatten()
            .filter(|_| !self.window.enabled())
            .map(|l| l.output_schema());
        for (n, name) in w.partition_by.iter().enumerate() {
            let check = fixed_schema
                .as_ref()
                .map_or(Ok(()), |s| crate::schema::check_partition_column(name, s));
            if let Err(why) = check {
                found.bad("writer.partition_by", why);
            } else if w.partition_by[..n].contains(name) {
                found.bad("writer.partition_by", format!("`{name}` is listed twice"));
            }
        }
    }

    /// [`Config::problems`], each attributed to the last of `layers` that set its key (the
    /// file and line, or the environment variable). The problems of `kafka.properties`,
    /// whose layers merge, each to the layer whose own list holds the entry, counted there.
    pub fn problems_in(&self, layers: &[ConfigLayer]) -> Vec<Diagnostic> {
        let mut problems = self.problems();
        let properties = "kafka.properties";
        let merged_list_is_bad = problems
            .iter()
            .any(|p| p.key.as_deref() == Some(properties));
        problems.retain(|p| p.key.as_deref() != Some(properties));
        for p in &mut problems {
            if let Some(key) = &p.key {
                // A key that was not written (a missing `[[enrich]]` key) takes the line of
                // the table it belongs in.
                let mut at = key.as_str();
                loop {
                    p.origin = layers.iter().rev().find_map(|l| l.origin(at).cloned());
                    match at.rsplit_once('.') {
                        Some((table, _)) if p.origin.is_none() && at.starts_with("enrich[") => {
                            at = table;
                        }
                        _ => break,
                    }
                }
            }
        }
        // Each list on its own, its problems attributed to `origin`.
        let check = |list: Vec<String>, origin: Option<&Origin>| {
            let mut alone = Config::default();
            alone.kafka.properties = list;
            rule::kafka_properties(&alone)
                .into_iter()
                .map(|Bad { why, .. }| Diagnostic {
                    origin: origin.cloned(),
                    key: Some(properties.to_string()),
                    message: why,
                })
                .collect::<Vec<_>>()
        };
        if merged_list_is_bad {
            let mut own: Vec<Diagnostic> = layers
                .iter()
                .filter_map(|l| Some(check(l.kafka_properties()?, l.origin(properties))))
                .flatten()
                .collect();
            if own.is_empty() {
                // A list no layer holds (changed in code after the layers): as it is.
                own = check(self.kafka.properties.clone(), None);
            }
            problems.extend(own);
        }
        problems
    }
}

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

/// Checks a TOML configuration document and reports every problem: syntax, unknown keys,
/// wrong types and forms, and the checks of [`Config::validate`] for the values it sets — each
/// with its line. Empty when the document is good. `name` starts each diagnostic.
pub fn check_toml(name: &str, text: &str) -> Vec<Diagnostic> {
    check(name, text).1
}

/// What `pinflow config check` reports: [`check_toml`] of the document, if any (`file` is its
/// name and text), with the `PINFLOW_*` variables among `vars` stacked over it as a run stacks
/// them: the problems of each, and the checks of the values they give together, each naming
/// the file and line or the variable that set it. Empty when a run would accept both.
///
/// ```
/// let diags = pinflow::config::check_config(
///     Some(("p.toml", "[fetch]\nmax_attempts = 2\n")),
///     [("PINFLOW_FETCH_MAX_IN_FLIGHT", "0")],
/// );
/// assert_eq!(diags[0].to_string(), "PINFLOW_FETCH_MAX_IN_FLIGHT: fetch.max_in_flight: must be at least 1");
/// ```
pub fn check_config<I, K, V>(file: Option<(&str, &str)>, vars: I) -> Vec<Diagnostic>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut layers = Vec::new();
    let mut diags = Vec::new();
    if let Some((name, text)) = file {
        let (layer, d) = parse_layer(name, text);
        layers.push(layer);
        diags.extend(d);
    }
    match ConfigLayer::from_env(vars) {
        Ok(layer) => layers.push(layer),
        Err(d) => diags.extend(d),
    }
    match Config::from_layers(&layers) {
        Ok(cfg) => diags.extend(cfg.problems_in(&layers)),
        Err(more) => diags.extend(more),
    }
    // The file's problems by line, then the variables'.
    diags.sort_by_key(|d| {
        d.origin
            .as_ref()
            .map(|o| (o.line.is_none(), o.line, o.name.clone()))
    });
    diags
}

/// The configuration a document gives (when it has no problem at all) and every problem.
pub(super) fn check(name: &str, text: &str) -> (Option<Config>, Vec<Diagnostic>) {
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

/// The property the `config_parser` fuzz target checks, and `tests/it/fuzz_corpora.rs`
/// replays on stable: whatever a configuration file holds (`data` read as UTF-8, invalid
/// sequences replaced), checking it does not panic; it gives a configuration exactly when it
/// reports no problem, every line it names is in the text, and a configuration it accepts
/// reads back equal from [`Config::to_toml`]. Panics when the property fails.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (cfg, diags) = check("fuzz.toml", &text);
    assert_eq!(cfg.is_some(), diags.is_empty(), "{diags:?}");
    let lines = text.split('\n').count();
    for d in &diags {
        if let Some(line) = d.origin.as_ref().and_then(|o| o.line) {
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {d}");
        }
    }
    if let Some(cfg) = cfg {
        let again = cfg.to_toml().and_then(|t| Config::from_toml(&t));
        assert_eq!(again.as_ref().ok(), Some(&cfg), "{again:?}");
    }
}

pub(super) fn describe(v: &toml::de::DeValue<'_>) -> String {
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
pub(super) fn suggest<'a>(
    wrong: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
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

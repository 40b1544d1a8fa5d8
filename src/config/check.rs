//! What is wrong with a configuration: the checks of [`Config::problems`], diagnostics with
//! where each value came from, and did-you-mean suggestions for unknown keys.

use std::fmt;
use std::time::Duration;

use super::headers::check_header;
use super::layers::parse_layer;
use super::{Compression, Config, ConfigLayer, FetchEngine, LOG_LEVELS};
use crate::error::Error;
use crate::schema::{FieldSpec, StatSpec, Unknown};

/// "must be at least 1", the most common problem.
const AT_LEAST_ONE: &str = "must be at least 1";

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
    /// no origin; [`Config::problems_in`] adds where each value came from.
    pub fn problems(&self) -> Vec<Diagnostic> {
        let mut found = Problems::default();
        self.pipeline_problems(&mut found);
        self.fetch_limit_problems(&mut found);
        self.pagination_problems(&mut found);
        self.schema_problems(&mut found);
        self.writer_problems(&mut found);
        let level = self.log.level.to_ascii_lowercase();
        if !LOG_LEVELS.contains(&level.as_str()) {
            found.bad(
                "log.level",
                format!(
                    "`{}` is not one of {}",
                    self.log.level,
                    LOG_LEVELS.join(", ")
                ),
            );
        }
        found.0
    }

    /// Output, input, continuous mode, queues and threads.
    fn pipeline_problems(&self, found: &mut Problems) {
        if self.out.as_os_str().is_empty() || self.out.file_name().is_none() {
            found.bad(
                "out",
                format!("`{}` is not a file path", self.out.display()),
            );
        }
        if let Some(p) = &self.dead_letter {
            if p.as_os_str().is_empty() || p.file_name().is_none() {
                found.bad(
                    "dead_letter",
                    format!("`{}` is not a file path", p.display()),
                );
            }
        }
        if self.files.iter().any(|f| f.trim().is_empty()) {
            found.bad("files", "holds an empty path".into());
        }
        if self.source.as_deref().is_some_and(|s| s.trim().is_empty()) {
            found.bad("source", "is empty".into());
        }
        if self.every == Some(Duration::ZERO) {
            found.bad("every", "must be longer than zero".into());
        }
        if self.queue_capacity == 0 {
            found.bad("queue_capacity", AT_LEAST_ONE.into());
        }
        if self.threads.parse == Some(0) {
            found.bad("threads.parse", AT_LEAST_ONE.into());
        }
        if self.threads.cpus.as_ref().is_some_and(|c| c.is_empty()) {
            found.bad("threads.cpus", "the list is empty".into());
        }
    }

    /// The fetcher's limits, timeouts, headers, encodings and TLS files.
    fn fetch_limit_problems(&self, found: &mut Problems) {
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
                found.bad(key, AT_LEAST_ONE.into());
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
                found.bad(key, "must be longer than zero".into());
            }
        }
        for (n, h) in f.headers.iter().enumerate() {
            if let Err(e) = check_header(h) {
                found.bad(&format!("fetch.headers[{n}]"), e);
            }
        }
        for token in f.accept_encoding.split(',').map(str::trim) {
            if !matches!(token, "" | "gzip" | "deflate" | "identity")
                && !token.starts_with("identity;")
            {
                found.bad(
                    "fetch.accept_encoding",
                    format!(
                        "`{token}` is not an encoding pinflow decodes (gzip, deflate, identity)"
                    ),
                );
            }
        }
        match (&f.tls_client_cert, &f.tls_client_key) {
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
        for (key, p) in [
            ("fetch.tls_ca_file", &f.tls_ca_file),
            ("fetch.tls_client_cert", &f.tls_client_cert),
            ("fetch.tls_client_key", &f.tls_client_key),
        ] {
            if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                found.bad(key, "is empty".into());
            }
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
        for (key, path) in [
            ("fetch.records_field", &f.records_field),
            ("fetch.cursor_field", &f.cursor_field),
        ] {
            if path
                .as_deref()
                .is_some_and(|p| p.split('.').any(str::is_empty))
            {
                found.bad(
                    key,
                    "is not a dotted field path such as `data` or `meta.next`".into(),
                );
            }
        }
        if f.cursor_param.is_empty() || f.cursor_param.contains(['&', '=', '#', '?', ' ']) {
            found.bad(
                "fetch.cursor_param",
                format!("`{}` is not a query parameter name", f.cursor_param),
            );
        }
        if f.engine == FetchEngine::Ureq && f.cursor_field.is_some() {
            found.bad(
                "fetch.cursor_field",
                "cursor pagination is supported by the mio fetcher only".into(),
            );
        }
        if self.writer.journal {
            if self.every.is_some() {
                found.bad(
                    "writer.journal",
                    "is for one-shot runs; continuous mode (`every`) resumes with its next pass"
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

    /// The schema's fields, statistics and unknown-field policy, and a fixed layout as a whole.
    fn schema_problems(&self, found: &mut Problems) {
        let sc = &self.schema;
        let mut schema_ok = true;
        if let Err(why) = sc.unknown.parse::<Unknown>() {
            found.bad("schema.unknown", why);
            schema_ok = false;
        }
        for (n, f) in sc.fields.iter().enumerate() {
            if let Err(why) = f.parse::<FieldSpec>() {
                found.bad(&format!("schema.fields[{n}]"), why);
                schema_ok = false;
            }
        }
        for (n, st) in sc.stats.iter().flatten().enumerate() {
            if let Err(why) = st.parse::<StatSpec>() {
                found.bad(&format!("schema.stats[{n}]"), why);
                schema_ok = false;
            }
        }
        if sc.infer && !sc.fields.is_empty() {
            found.bad(
                "schema.infer",
                "infers the fields when none are listed; remove schema.fields or infer".into(),
            );
        }
        if !(sc.infer && sc.fields.is_empty()) {
            // A fixed layout can be checked as a whole now (duplicate columns, statistics of a
            // column that is not a numeric list...).
            if let (true, Err(Error::Config { why, .. })) = (schema_ok, sc.layout()) {
                found.bad("schema", why);
            }
        }
    }

    /// The writer's sizes, compression, rotation and partitions.
    fn writer_problems(&self, found: &mut Problems) {
        if self.writer.data_page_bytes == 0 {
            found.bad("writer.data_page_bytes", AT_LEAST_ONE.into());
        }
        if self.writer.row_group_rows == 0 {
            found.bad("writer.row_group_rows", AT_LEAST_ONE.into());
        }
        if let Compression::Zstd(level) = self.writer.compression {
            if !(1..=22).contains(&level) {
                found.bad(
                    "writer.compression",
                    format!("zstd level {level} is not in 1..=22"),
                );
            }
        }
        let w = &self.writer;
        if w.rotate_interval == Some(Duration::ZERO) {
            found.bad("writer.rotate_interval", "must be longer than zero".into());
        }
        if w.flush_interval.is_zero() {
            found.bad("writer.flush_interval", "must be longer than zero".into());
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
                found.bad(key, "must be at least 1".into());
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
                found.bad("writer.partition_by", why);
            } else if w.partition_by[..n].contains(name) {
                found.bad("writer.partition_by", format!("`{name}` is listed twice"));
            }
        }
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

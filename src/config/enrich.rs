//! `[[enrich]]` tables: lookups that add columns to every row (see [`crate::enrich`] for what
//! runs them). An array of tables, so not in the option registry: each table is read here,
//! key by key, with the line of every value, and checked as a whole by [`enrich_problems`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::describe;
use super::kind::Kind;
use super::values::{duration_serde, opt_duration_serde};

/// The types an enriched column may have (`types = { tier = "int64" }`); `string` by default.
pub const ENRICH_TYPES: [&str; 4] = ["string", "int64", "float64", "bool"];
/// What happens to a row whose lookup failed.
pub const ON_ERROR: [&str; 3] = ["null", "dead-letter", "fail"];

/// Where a table was written in its file: kept for ordering enrichers among other steps of the
/// file, never part of what the table means (two tables equal in every key are equal).
#[derive(Debug, Clone, Copy, Default)]
pub struct Position {
    /// The line of the `[[enrich]]` header, counting from 1; `None` when built in code.
    pub line: Option<usize>,
}

impl PartialEq for Position {
    fn eq(&self, _: &Position) -> bool {
        true
    }
}
impl Eq for Position {}

/// Read from the line the configuration reader records (a user cannot write the key: it is
/// not among the keys of `[[enrich]]`).
impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Position, D::Error> {
        Ok(Position {
            line: Option::<usize>::deserialize(d)?,
        })
    }
}

/// One `[[enrich]]` table: an HTTP lookup (`url`) or a static table (`table` and `key`) whose
/// answer fills the columns named in `fields`.
///
/// ```
/// let cfg = pinflow::Config::from_toml(
///     "[[enrich]]\nurl = \"http://team-api/services/{service}\"\nfields = { team = \"owner.team\", tier = \"tier\" }\ntypes = { tier = \"int64\" }\nttl = \"10m\"\n",
/// )?;
/// assert_eq!(cfg.enrich[0].fields["team"], "owner.team");
/// assert_eq!(cfg.enrich[0].position.line, Some(1));
/// # Ok::<(), pinflow::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// A name for metrics and errors; default `enrich-N` (N counting from 0 in file order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP lookup: the URL, with `{field}` filled from each record (percent-escaped). A
    /// record whose field is null or missing gets no lookup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Static lookup: a CSV (with a header line) or Parquet file, reloaded on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<PathBuf>,
    /// Static lookup: the record field matched against the table's column of the same name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// New columns: name → dotted JSON path in the response (HTTP), or the table's column.
    pub fields: BTreeMap<String, String>,
    /// Column types: name → `string` (the default), `int64`, `float64` or `bool`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, String>,
    /// How long an answer is fresh.
    #[serde(with = "duration_serde")]
    pub ttl: Duration,
    /// How long a 404 or an empty answer (null, `{}`, empty body) is cached as "no value".
    #[serde(with = "duration_serde")]
    pub negative_ttl: Duration,
    /// How long past its `ttl` an answer may still be served: at once while it is fetched
    /// again (stale-while-revalidate), and when fetching it again fails (stale-on-error).
    #[serde(with = "duration_serde")]
    pub max_stale: Duration,
    /// Answers cached at most.
    pub max_entries: usize,
    /// Bytes the cached answers take at most (keys and values); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// One attempt's limit, connect to last byte.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    /// Keep-alive connections per host at most.
    pub concurrency: usize,
    /// Lookups per second at most (a token bucket of one second's worth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Further attempts after a failed one (connection errors, timeouts, 429, 5xx), with
    /// exponential backoff, and never sooner than a `Retry-After`.
    pub retries: u32,
    /// The longest `Retry-After` honoured; default 30 s.
    #[serde(with = "opt_duration_serde", skip_serializing_if = "Option::is_none")]
    pub max_retry_after: Option<Duration>,
    /// A failed lookup: `null` (null columns, the reason in `_enrich_error`), `dead-letter`
    /// (the record goes to the dead-letter file with the reason) or `fail` (the run stops).
    pub on_error: String,
    /// Add the `_enrich_error` column (with `on_error = "null"`).
    pub error_column: bool,
    /// Where the table was written (not a key).
    #[serde(skip_serializing)]
    pub position: Position,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            name: None,
            url: None,
            table: None,
            key: None,
            fields: BTreeMap::new(),
            types: BTreeMap::new(),
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(60),
            max_stale: Duration::from_secs(3600),
            max_entries: 100_000,
            max_bytes: None,
            timeout: Duration::from_secs(5),
            concurrency: 8,
            rate_limit: None,
            retries: 2,
            max_retry_after: None,
            on_error: "null".into(),
            error_column: true,
            position: Position::default(),
        }
    }
}

/// One piece of a URL template: text, or a record field to fill in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlPart {
    /// Literal text.
    Text(String),
    /// `{field}`: the record's field, percent-escaped.
    Field(String),
}

/// Splits `url` into text and `{field}` parts; `{{` and `}}` are literal braces. The error says
/// what is wrong and where.
///
/// ```
/// use pinflow::config::{url_template, UrlPart};
/// let parts = url_template("http://h/s/{service}?x={{1}}").unwrap();
/// assert_eq!(parts[1], UrlPart::Field("service".into()));
/// assert!(url_template("http://h/{}").is_err());
/// ```
pub fn url_template(url: &str) -> std::result::Result<Vec<UrlPart>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = url.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let rest = &url[at + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(format!("`{{` at column {} is never closed", at + 1));
                };
                let name = rest[..end].trim();
                if name.is_empty() || name.contains('{') {
                    return Err(format!(
                        "`{{` at column {} does not name a field (write `{{service}}`)",
                        at + 1
                    ));
                }
                if !text.is_empty() {
                    parts.push(UrlPart::Text(std::mem::take(&mut text)));
                }
                parts.push(UrlPart::Field(name.to_string()));
                for _ in 0..=end {
                    chars.next();
                }
            }
            '}' => return Err(format!("`}}` at column {} closes nothing", at + 1)),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(UrlPart::Text(text));
    }
    if !parts.iter().any(|p| matches!(p, UrlPart::Field(_))) {
        return Err("names no record field (write e.g. `http://api/services/{service}`)".into());
    }
    Ok(parts)
}

/// The keys of an `[[enrich]]` table and how each is read.
pub(super) const KEYS: [(&str, Option<Kind>); 19] = [
    ("name", Some(Kind::Text)),
    ("url", Some(Kind::Text)),
    ("table", Some(Kind::Path)),
    ("key", Some(Kind::Text)),
    ("fields", None),
    ("types", None),
    ("ttl", Some(Kind::Duration)),
    ("negative_ttl", Some(Kind::Duration)),
    ("max_stale", Some(Kind::Duration)),
    ("max_entries", Some(Kind::Count)),
    ("max_bytes", Some(Kind::Bytes)),
    ("timeout", Some(Kind::Duration)),
    ("concurrency", Some(Kind::Count)),
    ("rate_limit", Some(Kind::Count32)),
    ("retries", Some(Kind::Count32)),
    ("max_retry_after", Some(Kind::Duration)),
    ("on_error", Some(Kind::Text)),
    ("error_column", Some(Kind::Bool)),
    ("position", None),
];

/// A value read from one `[[enrich]]` table, or what is wrong with it; spans are the key's.
pub(super) enum Read {
    /// A good value at `path` (`enrich[0].ttl`): its key's span.
    Value(String, std::ops::Range<usize>),
    /// A bad one: the span, the key path, the message.
    Bad(std::ops::Range<usize>, String, String),
}

/// Reads the `enrich` key of a document: an array of tables. Returns the normalized tables,
/// the header line spans, and every value and problem in them.
pub(super) fn read(
    value: &toml::de::DeValue<'_>,
    span: std::ops::Range<usize>,
) -> (Vec<toml::Value>, Vec<std::ops::Range<usize>>, Vec<Read>) {
    use toml::de::DeValue;
    let mut tables = Vec::new();
    let mut starts = Vec::new();
    let mut found = Vec::new();
    let DeValue::Array(items) = value else {
        found.push(Read::Bad(
            span,
            "enrich".into(),
            format!("expected tables ([[enrich]]), got {}", describe(value)),
        ));
        return (tables, starts, found);
    };
    for (n, item) in items.iter().enumerate() {
        let DeValue::Table(t) = item.get_ref() else {
            found.push(Read::Bad(
                item.span(),
                format!("enrich[{n}]"),
                format!(
                    "expected a table ([[enrich]]), got {}",
                    describe(item.get_ref())
                ),
            ));
            continue;
        };
        let mut out = toml::Table::new();
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let path = format!("enrich[{n}].{name}");
            let read = match KEYS
                .iter()
                .find(|(key, _)| *key == name && *key != "position")
            {
                None => Err((path.clone(), unknown(name))),
                Some((_, Some(kind))) => kind.read_toml(v.get_ref(), &path),
                Some((_, None)) => string_map(v.get_ref(), &path),
            };
            match read {
                Ok(value) => {
                    out.insert(name.to_string(), value);
                    found.push(Read::Value(path, k.span()));
                }
                Err((key, message)) => found.push(Read::Bad(k.span(), key, message)),
            }
        }
        tables.push(toml::Value::Table(out));
        starts.push(item.span());
    }
    (tables, starts, found)
}

fn unknown(name: &str) -> String {
    let mut message = "unknown key in [[enrich]]".to_string();
    let keys = KEYS.iter().map(|(k, _)| *k).filter(|k| *k != "position");
    if let Some(s) = super::check::suggest(name, keys) {
        message.push_str(&format!("; did you mean `{s}`?"));
    }
    message
}

/// `fields` and `types`: an inline table of strings.
fn string_map(
    v: &toml::de::DeValue<'_>,
    path: &str,
) -> std::result::Result<toml::Value, (String, String)> {
    use toml::de::DeValue;
    let DeValue::Table(t) = v else {
        return Err((
            path.to_string(),
            format!(
                "expected a table of strings such as {{ team = \"owner.team\" }}, got {}",
                describe(v)
            ),
        ));
    };
    let mut out = toml::Table::new();
    for (k, v) in t.iter() {
        match v.get_ref() {
            DeValue::String(s) => {
                out.insert(k.get_ref().to_string(), toml::Value::String(s.to_string()));
            }
            other => {
                return Err((
                    format!("{path}.{}", k.get_ref()),
                    format!("expected a string, got {}", describe(other)),
                ))
            }
        }
    }
    Ok(toml::Value::Table(out))
}

/// What cannot work in the `[[enrich]]` tables, each `(key path, why)`.
pub(super) fn enrich_problems(tables: &[EnrichConfig]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut columns: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, e) in tables.iter().enumerate() {
        let mut bad = |key: &str, why: String| {
            let path = if key.is_empty() {
                format!("enrich[{n}]")
            } else {
                format!("enrich[{n}].{key}")
            };
            found.push((path, why));
        };
        match (&e.url, &e.table) {
            (Some(_), Some(_)) => bad(
                "table",
                "an [[enrich]] table has `url` or `table`, not both".into(),
            ),
            (None, None) => bad(
                "",
                "needs `url` (an HTTP lookup) or `table` (a CSV or Parquet file)".into(),
            ),
            (Some(url), None) => {
                match url_template(url) {
                    Err(why) => bad("url", why),
                    Ok(parts) => {
                        // The host must be literal: one connection pool per enricher.
                        let head = match parts.first() {
                            Some(UrlPart::Text(head)) => head.as_str(),
                            _ => "",
                        };
                        let host = head
                            .strip_prefix("http://")
                            .or_else(|| head.strip_prefix("https://"));
                        if !host.is_some_and(|h| h.contains('/') && !h.starts_with('/')) {
                            bad(
                                "url",
                                "must start with http:// or https://, a host and a `/` before any `{field}`".into(),
                            );
                        }
                    }
                }
                if e.key.is_some() {
                    bad(
                        "key",
                        "is for `table` lookups; a `url` names its fields in `{}`".into(),
                    );
                }
            }
            (None, Some(path)) => {
                if e.key.as_deref().is_none_or(|k| k.trim().is_empty()) {
                    bad(
                        "key",
                        "a `table` lookup needs `key`: the record field to match".into(),
                    );
                }
                let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
                if !matches!(ext, "csv" | "parquet") {
                    bad(
                        "table",
                        format!("`{}`: a .csv or .parquet file", path.display()),
                    );
                }
            }
        }
        if e.fields.is_empty() {
            bad(
                "fields",
                "names no column to add (e.g. fields = { team = \"owner.team\" })".into(),
            );
        }
        for (col, path) in &e.fields {
            if col.trim().is_empty() || path.trim().is_empty() {
                bad(
                    "fields",
                    format!("`{col} = \"{path}\"`: names must not be empty"),
                );
            } else if col.starts_with("_enrich") {
                bad(
                    "fields",
                    format!("`{col}`: names starting with _enrich are pinflow's"),
                );
            } else if let Some(first) = columns.insert(col, n) {
                bad(
                    "fields",
                    format!("column `{col}` is also added by enrich[{first}]"),
                );
            }
        }
        for (col, ty) in &e.types {
            if !e.fields.contains_key(col) {
                bad("types", format!("`{col}` is not one of the `fields`"));
            } else if !ENRICH_TYPES.contains(&ty.as_str()) {
                bad(
                    "types",
                    format!(
                        "`{ty}` (for `{col}`) is not one of {}",
                        ENRICH_TYPES.join(", ")
                    ),
                );
            }
        }
        if !ON_ERROR.contains(&e.on_error.as_str()) {
            bad(
                "on_error",
                format!("`{}` is not one of {}", e.on_error, ON_ERROR.join(", ")),
            );
        }
        if e.max_entries == 0 {
            bad("max_entries", "must be at least 1".into());
        }
        if e.max_bytes == Some(0) {
            bad("max_bytes", "must be at least 1".into());
        }
        if e.concurrency == 0 {
            bad("concurrency", "must be at least 1".into());
        }
        if e.rate_limit == Some(0) {
            bad(
                "rate_limit",
                "must be at least 1 (leave it out for no limit)".into(),
            );
        }
        if e.timeout.is_zero() {
            bad("timeout", "must be longer than 0s".into());
        }
    }
    found
}

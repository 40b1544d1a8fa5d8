//! Where values come from: a TOML file, the environment, the flags; each a [`ConfigLayer`]
//! checked against the registry, stacked over the defaults by [`Config::from_layers`](super::Config::from_layers).

use std::collections::BTreeMap;
use std::path::Path;

use super::check::{describe, suggest};
use super::registry::{option, options, Topic, ENV_PREFIX};
use super::{Diagnostic, Origin};

/// The values one source of configuration sets (a TOML file or the environment), already
/// checked against the known keys and their types, with where each came from.
/// [`Config::from_layers`](super::Config::from_layers) stacks them over the defaults.
#[derive(Debug, Clone, Default)]
pub struct ConfigLayer {
    values: toml::Table,
    origins: BTreeMap<String, Origin>,
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

    /// Reads what it can of a TOML document: the values that are good, and a diagnostic for
    /// each problem (see [`ConfigLayer::from_toml`]). For a setting that must be known even
    /// when the file is wrong, such as the log format its errors are written in.
    pub fn from_toml_partial(name: &str, text: &str) -> (ConfigLayer, Vec<Diagnostic>) {
        parse_layer(name, text)
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
            // Not a configuration key: the test-only fail point (src/failpoint.rs).
            if var == crate::failpoint::ENV {
                if let Some(message) = crate::failpoint::refusal(value) {
                    diags.push(Diagnostic {
                        origin: Some(origin),
                        key: None,
                        message,
                    });
                }
                continue;
            }
            let Some(key) = options().iter().find(|o| o.env() == var) else {
                let names: Vec<String> = options().iter().map(|o| o.env()).collect();
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
                    layer.set(key.key(), v);
                    layer.origins.insert(key.key().to_string(), origin);
                }
                Err(message) => diags.push(Diagnostic {
                    origin: Some(origin),
                    key: Some(key.key().to_string()),
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

    /// Reads command-line flags: `(key, flag, value)` for each one given, in command-line
    /// order, the value as the user wrote it (`--pin` is `("threads.pin", "--pin", "true")`).
    /// Values are read as from the environment (see [`ConfigLayer::from_env`]), durations
    /// also as bare seconds; a list option's values add up, one per flag given. Problems name
    /// the flag; every one is reported.
    ///
    /// ```
    /// use pinflow::config::{Config, ConfigLayer};
    /// let flags = ConfigLayer::from_flags([
    ///     ("fetch.request_timeout", "--request-timeout", "1.5"),
    ///     ("fetch.headers", "--header", "X-A: 1"),
    ///     ("fetch.headers", "--header", "X-B: 2"),
    /// ])
    /// .unwrap();
    /// let cfg = Config::from_layers(&[flags]).unwrap();
    /// assert_eq!(cfg.fetch.request_timeout, std::time::Duration::from_millis(1500));
    /// assert_eq!(cfg.fetch.headers, ["X-A: 1", "X-B: 2"]);
    /// ```
    pub fn from_flags<'a, I>(flags: I) -> std::result::Result<ConfigLayer, Vec<Diagnostic>>
    where
        I: IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    {
        let mut layer = ConfigLayer::default();
        let mut diags = Vec::new();
        for (key, flag, text) in flags {
            let origin = Origin {
                name: flag.to_string(),
                line: None,
            };
            let Some(spec) = option(key) else {
                diags.push(Diagnostic {
                    origin: Some(origin),
                    key: Some(key.to_string()),
                    message: "unknown configuration key".to_string(),
                });
                continue;
            };
            // `--window SIZE/HOP` sets `window.hop` too.
            if let (Some(hop), Some(hop_spec)) = (
                (spec.kind == super::kind::Kind::WindowSize)
                    .then(|| text.split_once('/').map(|(_, h)| h))
                    .flatten(),
                option("window.hop"),
            ) {
                if let Ok(v) = hop_spec.kind.read_flag(hop) {
                    layer.set(hop_spec.key(), v);
                    layer
                        .origins
                        .insert(hop_spec.key().to_string(), origin.clone());
                }
            }
            match spec.kind.read_flag(text) {
                Ok(toml::Value::Array(more)) if layer.is_set(key) => {
                    if let Some(toml::Value::Array(items)) = layer.get_mut(key) {
                        items.extend(more);
                    }
                    layer.origins.insert(key.to_string(), origin);
                }
                // A repeated table flag (`--window-agg`): its fields add up.
                Ok(toml::Value::Table(more)) if layer.is_set(key) => {
                    if let Some(toml::Value::Table(have)) = layer.get_mut(key) {
                        for (field, aggs) in more {
                            match (have.get_mut(&field), aggs) {
                                (Some(toml::Value::Array(a)), toml::Value::Array(b)) => a.extend(b),
                                (_, aggs) => {
                                    have.insert(field, aggs);
                                }
                            }
                        }
                    }
                    layer.origins.insert(key.to_string(), origin);
                }
                Ok(value) => {
                    layer.set(key, value);
                    layer.origins.insert(key.to_string(), origin);
                }
                Err(message) => diags.push(Diagnostic {
                    origin: Some(origin),
                    key: Some(key.to_string()),
                    message,
                }),
            }
        }
        if diags.is_empty() {
            Ok(layer)
        } else {
            Err(diags)
        }
    }

    /// This layer's value at a key path, to change in place.
    fn get_mut(&mut self, path: &str) -> Option<&mut toml::Value> {
        let mut table = &mut self.values;
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop()?;
        for p in parts {
            table = table.get_mut(p)?.as_table_mut()?;
        }
        table.get_mut(last)
    }

    /// This layer's own `kafka.properties` (layers merge them, [`stack`]), if it sets them.
    pub(super) fn kafka_properties(&self) -> Option<Vec<String>> {
        let list = lookup(&self.values, KAFKA_PROPERTIES)?.as_array()?;
        Some(
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
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

pub(super) fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
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

/// The key whose layers merge by property name rather than replace each other.
const KAFKA_PROPERTIES: &str = "kafka.properties";

/// The values of `layers`, later ones overriding earlier ones; `kafka.properties` by
/// property name ([`by_property_name`]).
pub(super) fn stack(layers: &[ConfigLayer]) -> toml::Value {
    let mut merged = toml::Table::new();
    for layer in layers {
        let earlier = lookup(&merged, KAFKA_PROPERTIES).cloned();
        merge(&mut merged, &layer.values);
        if let (Some(toml::Value::Array(earlier)), Some(toml::Value::Array(later))) =
            (earlier, lookup(&layer.values, KAFKA_PROPERTIES))
        {
            let (section, key) = KAFKA_PROPERTIES.split_once('.').expect("a section's key");
            if let Some(t) = merged.get_mut(section).and_then(|v| v.as_table_mut()) {
                t.insert(key.into(), by_property_name(earlier, later));
            }
        }
    }
    toml::Value::Table(merged)
}

/// librdkafka properties (`name=value`) of an earlier layer and a later one: the later ones,
/// after the earlier ones whose properties they do not set again (under the same name or an
/// alias: `linger.ms` and `queue.buffering.max.ms` are one). A property is a setting of its
/// own, so that the secrets of a `[kafka]` file stand while a flag adds or changes another
/// (`--kafka-property linger.ms=5`); a whole list in the later layer would drop them.
fn by_property_name(earlier: Vec<toml::Value>, later: &[toml::Value]) -> toml::Value {
    let name = |v: &toml::Value| {
        v.as_str().map(|s| {
            let name = s.split_once('=').map_or(s, |(n, _)| n);
            crate::kafka::property_name(name).to_string()
        })
    };
    let set_again: std::collections::HashSet<Option<String>> = later.iter().map(name).collect();
    let kept = earlier
        .into_iter()
        .filter(|v| !set_again.contains(&name(v)));
    toml::Value::Array(kept.chain(later.iter().cloned()).collect())
}

/// The good values of a document (normalized, with their lines) and a diagnostic for each
/// problem: syntax errors, unknown keys, values of the wrong type or form.
pub(super) fn parse_layer(name: &str, text: &str) -> (ConfigLayer, Vec<Diagnostic>) {
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
        text,
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
    text: &'a str,
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

    /// The `[[enrich]]` tables: each key's value and line, and the line of each table (kept
    /// in the table's `position`, and as the origin of `enrich[N]`).
    fn enrich(
        &mut self,
        value: &toml::de::DeValue<'_>,
        span: std::ops::Range<usize>,
        out: &mut toml::Table,
    ) {
        let (mut tables, starts, found) = super::enrich::read(value, span);
        for read in found {
            match read {
                super::enrich::Read::Value(path, span) => {
                    let origin = self.origin(span);
                    self.origins.insert(path, origin);
                }
                super::enrich::Read::Bad(span, key, message) => self.error(span, &key, message),
            }
        }
        for (n, (table, start)) in tables.iter_mut().zip(starts).enumerate() {
            let origin = self.origin(start);
            if let (toml::Value::Table(t), Some(line)) = (table, origin.line) {
                t.insert("position".into(), toml::Value::Integer(line as i64));
            }
            self.origins.insert(format!("enrich[{n}]"), origin);
        }
        out.insert("enrich".into(), toml::Value::Array(tables));
    }

    fn table(&mut self, table: &toml::de::DeTable<'_>, prefix: &str, out: &mut toml::Table) {
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            if path == "enrich" {
                self.enrich(v.get_ref(), k.span(), out);
            } else if path == "transform" {
                // `[[transform]]` tables: an array, read with their own rules and positions.
                let lines = self.lines;
                let line_of = |offset: usize| lines.line(offset);
                let value = super::transforms::read(
                    self.name,
                    self.text,
                    &line_of,
                    k.span(),
                    v.get_ref(),
                    self.diags,
                );
                if let Some(value) = value {
                    out.insert(name.to_string(), value);
                    let origin = self.origin(k.span());
                    self.origins.insert(path, origin);
                }
            } else if Topic::of_section(&path).is_some() || Topic::is_parent(&path) {
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
            } else if let Some(key) = option(&path) {
                match key.kind.read_toml(v.get_ref(), &path) {
                    Ok(value) => {
                        out.insert(name.to_string(), value);
                        let origin = self.origin(k.span());
                        self.origins.insert(path, origin);
                    }
                    Err((key_path, message)) => self.error(k.span(), &key_path, message),
                }
            } else {
                let candidates = options().iter().map(|o| o.key()).chain(
                    Topic::ALL
                        .iter()
                        .map(|t| t.section())
                        .filter(|s| !s.is_empty()),
                );
                let mut message = "unknown key".to_string();
                if let Some(s) = suggest(&path, candidates) {
                    message.push_str(&format!("; did you mean `{s}`?"));
                }
                self.error(k.span(), &path, message);
            }
        }
    }
}

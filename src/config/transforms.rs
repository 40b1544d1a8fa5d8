//! `[[transform]]` tables: their types, and how they are read from a TOML file with the line
//! (and, for a filter, the column) of every problem.
//!
//! ```toml
//! [[transform]]
//! filter = 'level != "DEBUG" and latency_ms > 5'
//! [[transform]]
//! drop = ["message"]
//! [[transform]]
//! rename = { latency_ms = "latency" }
//! [[transform]]
//! set = { env = "prod", host2 = { field = "host" }, origin = { meta = "source_url" } }
//! [[transform]]
//! cast = { latency = "int64" }
//! ```
//!
//! Each table has exactly one action key; the steps run in file order (what builds them:
//! `transform::config`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Diagnostic;

/// The action keys of a `[[transform]]` table.
pub const ACTIONS: [&str; 5] = ["filter", "drop", "rename", "set", "cast"];

/// The types `cast` converts to.
pub const CAST_TYPES: [&str; 5] = ["int64", "float64", "string", "bool", "timestamp"];

/// The metadata a `set = { COLUMN = { meta = "..." } }` reads.
pub const METADATA: [&str; 5] = [
    "source_url",
    "source_file",
    "fetched_at",
    "kafka_partition",
    "kafka_offset",
];

/// One `[[transform]]` table: exactly one of its action fields is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformConfig {
    /// Keeps the rows for which this expression is true (see `docs/usage.md`, "Transforms").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Removes these columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<Vec<String>>,
    /// Renames columns: `{ old = "new" }`, all at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rename: Option<BTreeMap<String, String>>,
    /// Sets columns (replacing one of that name, else appended, in name order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<BTreeMap<String, SetValue>>,
    /// Converts columns: `{ column = "float64" }`; a value that does not convert makes its row
    /// a dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cast: Option<BTreeMap<String, String>>,
    /// Where the table was read, for messages; not written back by [`super::Config::to_toml`].
    #[serde(skip_serializing)]
    pub at: Position,
}

/// What `set` gives a column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SetValue {
    /// A boolean constant.
    Bool(bool),
    /// An integer constant (an `int64` column).
    Int(i64),
    /// A number constant (a `float64` column).
    Float(f64),
    /// A string constant.
    Text(String),
    /// A copy of another column: `{ field = "host" }`.
    Field {
        /// The column copied.
        field: String,
    },
    /// A metadata column: `{ meta = "source_url" }` (see [`METADATA`]).
    Meta {
        /// What it holds.
        meta: String,
    },
}

/// Where a `[[transform]]` table's action is in its file. Two positions always compare equal:
/// a configuration is the same wherever its tables are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Position {
    /// The file name (empty when the configuration was not read from a file).
    pub file: String,
    /// The line of the action key, from 1 (0: unknown).
    pub line: usize,
    /// The table's index among the `[[transform]]` tables, from 0 (the order `[[enrich]]`
    /// tables interleave with).
    pub index: usize,
    /// A filter: the line and column of the expression's first character (0: unknown).
    pub expr_line: usize,
    /// See `expr_line`.
    pub expr_column: usize,
}

impl PartialEq for Position {
    fn eq(&self, _: &Position) -> bool {
        true
    }
}

impl Position {
    /// The line and column of byte `offset` of the filter expression `expr` (exact for a
    /// literal string, `'...'`; escapes in a `"..."` string shift the column).
    pub fn of_offset(&self, expr: &str, offset: usize) -> (usize, usize) {
        let (mut line, mut col) = (self.expr_line, self.expr_column);
        for ch in expr[..offset.min(expr.len())].chars() {
            if ch == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        (line, col)
    }
}

impl fmt::Display for Position {
    /// `pinflow.toml:7`; for a table not read from a file, `[[transform]] #3`; for an entry
    /// of the top-level `filter` list, `filter[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 && !self.file.is_empty() {
            f.write_str(&self.file)
        } else if self.line == 0 {
            write!(f, "[[transform]] #{}", self.index + 1)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

impl TransformConfig {
    /// The action keys set.
    pub fn actions(&self) -> Vec<&'static str> {
        let set = [
            self.filter.is_some(),
            self.drop.is_some(),
            self.rename.is_some(),
            self.set.is_some(),
            self.cast.is_some(),
        ];
        ACTIONS
            .iter()
            .zip(set)
            .filter(|(_, s)| *s)
            .map(|(a, _)| *a)
            .collect()
    }

    /// What is wrong with the table on its own (not against a schema): none or two actions,
    /// an expression that does not parse, an unknown cast type or metadata; with the byte
    /// offset in the filter expression for a parse error.
    pub fn problem(&self) -> Option<(String, Option<usize>)> {
        let actions = self.actions();
        if actions.len() != 1 {
            let found = match actions.len() {
                0 => "none".to_string(),
                _ => actions.join(", "),
            };
            return Some((
                format!(
                    "a [[transform]] table takes exactly one of {} (found {found})",
                    ACTIONS.join(", ")
                ),
                None,
            ));
        }
        if let Some(f) = &self.filter {
            if let Err(e) = crate::expr::parse(f) {
                return Some((e.message, Some(e.offset)));
            }
        }
        let empty = |n: usize| (n == 0).then(|| (format!("`{}` is empty", actions[0]), None));
        if let Some(d) = &self.drop {
            return empty(d.len());
        }
        if let Some(r) = &self.rename {
            if let Some((old, _)) = r.iter().find(|(_, new)| new.is_empty()) {
                return Some((format!("rename: `{old}` is renamed to an empty name"), None));
            }
            return empty(r.len());
        }
        if let Some(c) = &self.cast {
            for (col, ty) in c {
                if !CAST_TYPES.contains(&ty.as_str()) {
                    return Some((
                        format!(
                            "cast: `{col}` to `{ty}`: the types are {}",
                            CAST_TYPES.join(", ")
                        ),
                        None,
                    ));
                }
            }
            return empty(c.len());
        }
        if let Some(s) = &self.set {
            for (col, v) in s {
                if let SetValue::Meta { meta } = v {
                    if let Some(why) = metadata_problem(meta) {
                        return Some((format!("set: `{col}`: {why}"), None));
                    }
                }
            }
            return empty(s.len());
        }
        None
    }
}

/// Why a metadata name cannot be used (whatever the source), if it cannot.
pub(crate) fn metadata_problem(meta: &str) -> Option<String> {
    match meta {
        m if METADATA.contains(&m) => None,
        other => Some(format!(
            "`{other}` is no metadata ({})",
            METADATA.join(", ")
        )),
    }
}

/// Reads the `[[transform]]` array of a document: a normalized table per good entry (with its
/// position under `at`) and a diagnostic per problem, each naming the line (and for a filter
/// expression, the column).
pub(super) fn read(
    name: &str,
    text: &str,
    line_of: &dyn Fn(usize) -> usize,
    key_span: std::ops::Range<usize>,
    value: &toml::de::DeValue<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<toml::Value> {
    use toml::de::DeValue;
    let origin = |offset: usize| {
        Some(super::Origin {
            name: name.to_string(),
            line: Some(line_of(offset)),
        })
    };
    let DeValue::Array(items) = value else {
        diags.push(Diagnostic {
            origin: origin(key_span.start),
            key: Some("transform".into()),
            message: "expected [[transform]] tables".into(),
        });
        return None;
    };
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let key = format!("transform[{index}]");
        let DeValue::Table(table) = item.get_ref() else {
            diags.push(Diagnostic {
                origin: origin(item.span().start),
                key: Some(key),
                message: "expected a table".into(),
            });
            continue;
        };
        // The table's header line: the span of the first key, else of the item.
        let mut at_offset = item.span().start;
        let mut expr_start = None;
        let mut normalized = toml::Table::new();
        let mut bad = false;
        for (k, v) in table.iter() {
            let action: &str = k.get_ref();
            if !ACTIONS.contains(&action) {
                let mut message = format!(
                    "unknown key; a [[transform]] table takes one of {}",
                    ACTIONS.join(", ")
                );
                if let Some(s) = super::check::suggest(action, ACTIONS.iter().copied()) {
                    message = format!("unknown key; did you mean `{s}`?");
                }
                diags.push(Diagnostic {
                    origin: origin(k.span().start),
                    key: Some(format!("{key}.{action}")),
                    message,
                });
                bad = true;
                continue;
            }
            // The first action in the file names the table.
            if normalized.is_empty() || k.span().start < at_offset {
                at_offset = k.span().start;
            }
            if action == "filter" {
                expr_start = Some(content_start(text, v.span()));
            }
            normalized.insert(action.to_string(), plain(v.get_ref()));
        }
        if bad {
            continue;
        }
        let (expr_line, expr_column) = match expr_start {
            Some(o) => (line_of(o), column_of(text, o)),
            None => (0, 0),
        };
        let at = Position {
            file: name.to_string(),
            line: line_of(at_offset),
            index,
            expr_line,
            expr_column,
        };
        let parsed = toml::Value::Table(normalized.clone()).try_into::<TransformConfig>();
        let cfg = match parsed {
            Ok(c) => c,
            Err(e) => {
                let mut message = e.message().trim().to_string();
                // serde's words for a value that fits no form of `set`.
                if message.contains("SetValue") {
                    message = "set: each value is a constant (a string, a number, true or \
                               false), { field = \"COLUMN\" } or { meta = \"source_url\" | \
                               \"source_file\" | \"fetched_at\" }"
                        .into();
                }
                diags.push(Diagnostic {
                    origin: origin(at_offset),
                    key: Some(key),
                    message,
                });
                continue;
            }
        };
        if let Some((message, offset)) = cfg.problem() {
            let (line, message) = match (offset, &cfg.filter) {
                (Some(off), Some(f)) => {
                    let (l, c) = at.of_offset(f, off);
                    (l, format!("column {c}: {message}"))
                }
                _ => (at.line, message),
            };
            // A table with none or two actions is named as a whole.
            let actions = cfg.actions();
            let action = if actions.len() == 1 { actions[0] } else { "" };
            diags.push(Diagnostic {
                origin: Some(super::Origin {
                    name: name.to_string(),
                    line: Some(line),
                }),
                key: Some(if action.is_empty() {
                    key
                } else {
                    format!("{key}.{action}")
                }),
                message,
            });
            continue;
        }
        if let Ok(toml::Value::Table(mut t)) = toml::Value::try_from(&at) {
            t.retain(|_, v| !matches!(v, toml::Value::String(s) if s.is_empty()));
            normalized.insert("at".into(), toml::Value::Table(t));
        }
        out.push(toml::Value::Table(normalized));
    }
    Some(toml::Value::Array(out))
}

/// The byte offset of a string value's first character, from the span of its literal.
fn content_start(text: &str, span: std::ops::Range<usize>) -> usize {
    let raw = text.get(span.clone()).unwrap_or_default();
    let mut skip = 0;
    if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        skip = 3;
        // A newline right after the opening quotes is not part of the string.
        if raw[3..].starts_with("\r\n") {
            skip += 2;
        } else if raw[3..].starts_with('\n') {
            skip += 1;
        }
    } else if raw.starts_with('\'') || raw.starts_with('"') {
        skip = 1;
    }
    span.start + skip
}

/// The 1-based column (in characters) of byte `offset`.
fn column_of(text: &str, offset: usize) -> usize {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    before[line_start..].chars().count() + 1
}

/// A parsed TOML value as a plain one.
fn plain(v: &toml::de::DeValue<'_>) -> toml::Value {
    use toml::de::DeValue;
    match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        // (The parser has checked the digits: what does not fit an i64 stays text, and is
        // refused where a number is expected.)
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => toml::Value::String(i.as_str().to_string()),
        },
        DeValue::Float(x) => match x.as_str().replace('_', "").parse::<f64>() {
            Ok(n) => toml::Value::Float(n),
            Err(_) => toml::Value::String(x.as_str().to_string()),
        },
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::String(d.to_string()),
        DeValue::Array(a) => toml::Value::Array(a.iter().map(|v| plain(v.get_ref())).collect()),
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), plain(v.get_ref())))
                .collect(),
        ),
    }
}

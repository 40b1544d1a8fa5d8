//! An `[[enrich]]` table made ready to run: the URL template split, the JSON paths split, the
//! column types read, the names settled.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;

use crate::config::{url_template, EnrichConfig, UrlPart};
use crate::error::{Error, Result};

/// An enriched column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `string`: a JSON string as is; a number or boolean as its text; an object or array
    /// as its JSON text.
    Str,
    /// `int64`: a JSON integer (or a float with no fraction).
    Int,
    /// `float64`: any JSON number.
    Float,
    /// `bool`: a JSON boolean.
    Bool,
}

impl ColumnType {
    fn parse(s: &str) -> ColumnType {
        match s {
            "int64" => ColumnType::Int,
            "float64" => ColumnType::Float,
            "bool" => ColumnType::Bool,
            _ => ColumnType::Str,
        }
    }

    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Str => DataType::Utf8,
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
        }
    }

    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Str => "string",
            ColumnType::Int => "int64",
            ColumnType::Float => "float64",
            ColumnType::Bool => "bool",
        }
    }
}

/// One new column: its name, where its value is in an answer, its type.
#[derive(Debug, Clone)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The dotted path in the JSON answer (HTTP), or the table's column name.
    pub path: Vec<String>,
    /// Its type.
    pub ty: ColumnType,
}

/// What a failed row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Null columns and the reason in `_enrich_error`.
    Null,
    /// The record is dead-lettered with the reason.
    DeadLetter,
    /// The run stops.
    Fail,
}

/// An `[[enrich]]` table ready to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// For metrics, logs and reasons.
    pub name: String,
    /// The URL template (HTTP lookups).
    pub url: Vec<UrlPart>,
    /// The new columns, in name order.
    pub columns: Vec<Column>,
    /// What a failed row does.
    pub on_error: OnError,
    /// Whether the `_enrich_error` column is added.
    pub error_column: bool,
    /// The table as configured.
    pub cfg: Arc<EnrichConfig>,
}

impl Spec {
    /// Reads the `n`th `[[enrich]]` table; the configuration was validated, so an error here
    /// names the key anyway.
    pub fn new(n: usize, cfg: &EnrichConfig) -> Result<Spec> {
        let key = |k: &str| format!("enrich[{n}].{k}");
        let url = match &cfg.url {
            Some(u) => url_template(u).map_err(|why| Error::config(key("url"), why))?,
            None => Vec::new(),
        };
        let columns = cfg
            .fields
            .iter()
            .map(|(name, path)| Column {
                name: name.clone(),
                path: match cfg.url {
                    Some(_) => path.split('.').map(str::to_string).collect(),
                    None => vec![path.clone()],
                },
                ty: ColumnType::parse(cfg.types.get(name).map_or("string", String::as_str)),
            })
            .collect();
        let on_error = match cfg.on_error.as_str() {
            "null" => OnError::Null,
            "dead-letter" => OnError::DeadLetter,
            "fail" => OnError::Fail,
            other => {
                return Err(Error::config(
                    key("on_error"),
                    format!("`{other}` is not one of null, dead-letter, fail"),
                ))
            }
        };
        Ok(Spec {
            name: cfg.name.clone().unwrap_or_else(|| format!("enrich-{n}")),
            url,
            columns,
            on_error,
            error_column: cfg.error_column && on_error == OnError::Null,
            cfg: Arc::new(cfg.clone()),
        })
    }

    /// The record fields the lookup key is made of.
    pub fn key_fields(&self) -> Vec<&str> {
        match &self.cfg.key {
            Some(k) => vec![k.as_str()],
            None => self
                .url
                .iter()
                .filter_map(|p| match p {
                    UrlPart::Field(f) => Some(f.as_str()),
                    UrlPart::Text(_) => None,
                })
                .collect(),
        }
    }
}

/// The text of a key field's value in row `i`: strings as they are, numbers and booleans as
/// their text. `Err` says why there is none (null, missing, a type that makes no key).
pub(crate) fn key_text<'a>(
    col: Option<&'a dyn Array>,
    field: &str,
    i: usize,
) -> std::result::Result<Cow<'a, str>, String> {
    let Some(c) = col else {
        return Err(format!("the record has no field `{field}`"));
    };
    if c.is_null(i) {
        return Err(format!("field `{field}` is null"));
    }
    Ok(match c.data_type() {
        DataType::Utf8 => Cow::Borrowed(c.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Cow::Borrowed(c.as_string::<i64>().value(i)),
        DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
            let d = c.as_dictionary::<Int32Type>();
            let key = d.keys().value(i) as usize;
            Cow::Borrowed(d.values().as_string::<i32>().value(key))
        }
        DataType::Int64 => Cow::Owned(c.as_primitive::<Int64Type>().value(i).to_string()),
        DataType::Float64 => Cow::Owned(c.as_primitive::<Float64Type>().value(i).to_string()),
        DataType::Boolean => Cow::Owned(c.as_boolean().value(i).to_string()),
        other => {
            return Err(format!(
                "field `{field}` is {other}, which makes no lookup key"
            ))
        }
    })
}

/// Appends `s` to `out` percent-escaped: everything but RFC 3986's unreserved characters, so a
/// value cannot add a path segment, a query or a fragment.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

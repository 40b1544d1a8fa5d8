//! How a value of each type is read: from TOML, and from text (environment, flags).

use super::check::describe;
use super::headers::check_header;
use super::values::compression_error;
use super::{format_duration, parse_bytes, parse_duration, parse_listen_addr};
use super::{Compression, FetchEngine, LogFormat, Progress, Shard};

/// What a key holds, and so how it is read from TOML and from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A non-negative integer (`usize`).
    Count,
    /// A non-negative integer that fits `u32`.
    Count32,
    /// A byte size: an integer, or text with a unit (`"64MiB"`, see
    /// [`parse_bytes`]); normalized to an integer.
    Bytes,
    Bool,
    /// A string.
    Text,
    /// `K/N`.
    Shard,
    /// `mio` or `ureq`.
    Engine,
    /// An array of `Name: value` strings; in the environment, one per line.
    HeaderList,
    /// A file path (a string).
    Path,
    /// A duration string such as `"30s"`.
    Duration,
    Compression,
    /// A list of CPU ids.
    CpuList,
    /// An array of names (strings); in the environment, comma-separated.
    NameList,
    /// An array of file paths or glob patterns; in the environment, one per line.
    StringList,
    /// `HOST:PORT` or a bare port.
    ListenAddr,
    LogFormat,
    Progress,
    /// A duration, whose flag also takes `SIZE/HOP` (`--window 10s/5s`: the hop goes to
    /// `window.hop`, see [`ConfigLayer::from_flags`](super::ConfigLayer::from_flags)).
    WindowSize,
    /// A table of field name -> array of aggregate names; in the environment and on the
    /// command line, `FIELD:AGG,AGG` (one per line in the environment; flags repeat).
    AggregateTable,
}

impl Kind {
    /// The type in words, for the reference.
    pub(super) fn type_name(self) -> &'static str {
        match self {
            Kind::Count | Kind::Count32 => "integer",
            Kind::Bytes => "byte size",
            Kind::Bool => "boolean",
            Kind::Text => "string",
            Kind::Shard => "shard (K/N)",
            Kind::Engine => "mio or ureq",
            Kind::HeaderList => "list of headers",
            Kind::Path => "path",
            Kind::Duration => "duration",
            Kind::Compression => "compression",
            Kind::CpuList => "list of CPU ids",
            Kind::NameList => "list of names",
            Kind::StringList => "list of strings",
            Kind::ListenAddr => "address",
            Kind::LogFormat => "text or json",
            Kind::Progress => "auto, always or never",
            Kind::WindowSize => "duration",
            Kind::AggregateTable => "table of aggregate lists",
        }
    }

    /// Whether values are arrays, which repeated flags add up to.
    pub(super) fn is_list(self) -> bool {
        matches!(
            self,
            Kind::CpuList
                | Kind::HeaderList
                | Kind::NameList
                | Kind::StringList
                | Kind::AggregateTable
        )
    }

    /// A value for this key from a flag: as from the environment ([`Kind::read_text`]), but a
    /// duration may also be a bare number of seconds (`--request-timeout 30`, `1.5`), as the
    /// flags have always taken it; files and variables need the unit.
    pub(super) fn read_flag(self, s: &str) -> std::result::Result<toml::Value, String> {
        match self {
            Kind::Duration if s.trim().parse::<f64>().is_ok() => {
                self.read_text(&format!("{}s", s.trim()))
            }
            // `SIZE/HOP`: both must read; the size is this key's value.
            Kind::WindowSize => match s.split_once('/') {
                Some((size, hop)) => {
                    Kind::Duration.read_flag(hop)?;
                    Kind::Duration.read_flag(size)
                }
                None => Kind::Duration.read_flag(s),
            },
            _ => self.read_text(s),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Count | Kind::Count32 => "a non-negative integer",
            Kind::Bytes => "a byte size such as \"64MiB\" or a number of bytes",
            Kind::Bool => "true or false",
            Kind::Text => "a string",
            Kind::HeaderList => "an array of \"Name: value\" strings",
            Kind::Shard => "a shard such as \"0/4\" (K/N, K in 0..N)",
            Kind::Path => "a file path (a string)",
            Kind::Duration => "a duration string such as \"30s\"",
            Kind::Compression => "\"none\", \"snappy\", \"lz4\", \"zstd\" or \"zstd:LEVEL\"",
            Kind::CpuList => "an array of CPU ids such as [0, 1]",
            Kind::NameList => "an array of names such as [\"service\", \"date\"]",
            Kind::StringList => "an array of strings",
            Kind::ListenAddr => "\"HOST:PORT\" or \"PORT\" (a string)",
            Kind::LogFormat => "\"text\" or \"json\"",
            Kind::Engine => "\"mio\" or \"ureq\"",
            Kind::Progress => "\"auto\", \"always\" or \"never\"",
            Kind::WindowSize => "a duration string such as \"10s\"",
            Kind::AggregateTable => {
                "a table of aggregate lists such as { latency_ms = [\"count\", \"p99\"] }"
            }
        }
    }

    fn count(self, n: i128) -> std::result::Result<toml::Value, String> {
        let max = match self {
            Kind::Count32 => i128::from(u32::MAX),
            _ => i128::from(i64::MAX).min(usize::MAX as i128),
        };
        if n < 0 {
            Err(format!("must not be negative, got {n}"))
        } else if n > max {
            Err(format!("{n} is too large (at most {max})"))
        } else {
            Ok(toml::Value::Integer(n as i64))
        }
    }

    /// A TOML value for this key, normalized; or the key path (with an index for array
    /// elements) and what is wrong.
    pub(super) fn read_toml(
        self,
        v: &toml::de::DeValue<'_>,
        path: &str,
    ) -> std::result::Result<toml::Value, (String, String)> {
        use toml::de::DeValue;
        let wrong = || {
            (
                path.to_string(),
                format!("expected {}, got {}", self.expected(), describe(v)),
            )
        };
        let at = |message: String| (path.to_string(), message);
        match (self, v) {
            (Kind::Count | Kind::Count32 | Kind::Bytes, DeValue::Integer(i)) => {
                let n = i128::from_str_radix(i.as_str(), i.radix()).map_err(|_| wrong())?;
                self.count(n).map_err(at)
            }
            (Kind::Bool, DeValue::Boolean(b)) => Ok(toml::Value::Boolean(*b)),
            (Kind::CpuList, DeValue::Array(items)) => {
                let mut ids = Vec::new();
                let mut first_err = None;
                for (n, item) in items.iter().enumerate() {
                    let r = match item.get_ref() {
                        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
                            .map_err(|e| e.to_string())
                            .and_then(|n| Kind::Count.count(n)),
                        other => Err(format!("expected a CPU id, got {}", describe(other))),
                    };
                    match r {
                        Ok(v) => ids.push(v),
                        Err(e) => {
                            first_err.get_or_insert((format!("{path}[{n}]"), e));
                        }
                    }
                }
                match first_err {
                    Some(e) => Err(e),
                    None => Ok(toml::Value::Array(ids)),
                }
            }
            (Kind::HeaderList, DeValue::Array(items)) => {
                let mut out = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::String(h) => {
                            check_header(h).map_err(|e| (format!("{path}[{n}]"), e))?;
                            out.push(toml::Value::String(h.to_string()));
                        }
                        other => {
                            return Err((
                                format!("{path}[{n}]"),
                                format!("expected \"Name: value\", got {}", describe(other)),
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(out))
            }
            (Kind::StringList, DeValue::Array(items)) => {
                let mut out = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::String(p) if !p.is_empty() => {
                            out.push(toml::Value::String(p.to_string()));
                        }
                        other => {
                            return Err((
                                format!("{path}[{n}]"),
                                format!("expected a path, got {}", describe(other)),
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(out))
            }
            (Kind::NameList, DeValue::Array(items)) => {
                let mut out = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::String(name) if !name.trim().is_empty() => {
                            out.push(toml::Value::String(name.trim().to_string()));
                        }
                        other => {
                            return Err((
                                format!("{path}[{n}]"),
                                format!("expected a name, got {}", describe(other)),
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(out))
            }
            (Kind::AggregateTable, DeValue::Table(fields)) => {
                let mut out = toml::Table::new();
                for (field, aggs) in fields.iter() {
                    let field: &str = field.get_ref();
                    let at = format!("{path}.{field}");
                    let DeValue::Array(items) = aggs.get_ref() else {
                        return Err((
                            at,
                            format!(
                                "expected an array of aggregate names, got {}",
                                describe(aggs.get_ref())
                            ),
                        ));
                    };
                    let mut names = Vec::new();
                    for (n, item) in items.iter().enumerate() {
                        match item.get_ref() {
                            DeValue::String(a) if !a.trim().is_empty() => {
                                names.push(toml::Value::String(a.trim().to_string()))
                            }
                            other => {
                                return Err((
                                    format!("{at}[{n}]"),
                                    format!("expected an aggregate name, got {}", describe(other)),
                                ))
                            }
                        }
                    }
                    out.insert(field.to_string(), toml::Value::Array(names));
                }
                Ok(toml::Value::Table(out))
            }
            (
                Kind::AggregateTable
                | Kind::CpuList
                | Kind::HeaderList
                | Kind::NameList
                | Kind::StringList
                | Kind::Count
                | Kind::Count32
                | Kind::Bool,
                _,
            ) => Err(wrong()),
            (_, DeValue::String(s)) => self.read_text(s).map_err(at),
            _ => Err(wrong()),
        }
    }

    /// A value for this key from text (an environment variable, or a TOML string).
    pub(super) fn read_text(self, s: &str) -> std::result::Result<toml::Value, String> {
        let string = |s: String| Ok(toml::Value::String(s));
        match self {
            Kind::Count | Kind::Count32 => match s.parse::<i128>() {
                Ok(n) => self.count(n),
                Err(_) => Err(format!("`{s}` is not {}", self.expected())),
            },
            Kind::Bool => match s {
                "true" | "1" => Ok(toml::Value::Boolean(true)),
                "false" | "0" => Ok(toml::Value::Boolean(false)),
                _ => Err(format!("`{s}` is not true or false")),
            },
            Kind::Bytes => self.count(i128::from(parse_bytes(s)?)),
            Kind::Text => string(s.to_string()),
            Kind::Shard => match s.parse::<Shard>() {
                Ok(sh) => string(sh.to_string()),
                Err(e) => Err(e),
            },
            Kind::Path => {
                if s.is_empty() {
                    Err("the path is empty".to_string())
                } else {
                    string(s.to_string())
                }
            }
            Kind::Duration => string(format_duration(parse_duration(s)?)),
            Kind::Compression => match s.parse::<Compression>() {
                Ok(c) => string(c.to_string()),
                Err(_) => Err(compression_error(s)),
            },
            Kind::CpuList => {
                let mut ids = Vec::new();
                for part in s.split(',') {
                    match part.trim().parse::<u32>() {
                        Ok(n) => ids.push(toml::Value::Integer(i64::from(n))),
                        Err(_) => {
                            return Err(format!(
                                "`{s}` is not a comma-separated list of CPU ids such as 0,1,2"
                            ))
                        }
                    }
                }
                Ok(toml::Value::Array(ids))
            }
            Kind::StringList => Ok(toml::Value::Array(
                s.lines()
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| toml::Value::String(p.to_string()))
                    .collect(),
            )),
            Kind::NameList => Ok(toml::Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| toml::Value::String(n.to_string()))
                    .collect(),
            )),
            Kind::HeaderList => {
                let mut out = Vec::new();
                for h in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    check_header(h)?;
                    out.push(toml::Value::String(h.to_string()));
                }
                Ok(toml::Value::Array(out))
            }
            Kind::ListenAddr => string(parse_listen_addr(s)?.to_string()),
            Kind::LogFormat => string(s.parse::<LogFormat>()?.to_string()),
            Kind::Engine => string(s.parse::<FetchEngine>()?.to_string()),
            Kind::Progress => string(s.parse::<Progress>()?.to_string()),
            Kind::WindowSize => Kind::Duration.read_text(s),
            Kind::AggregateTable => {
                let mut out = toml::Table::new();
                for spec in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let Some((field, aggs)) = spec.split_once(':') else {
                        return Err(format!(
                            "`{spec}` is not FIELD:AGG,... (e.g. latency_ms:count,mean,p99)"
                        ));
                    };
                    let names: Vec<toml::Value> = aggs
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(|a| toml::Value::String(a.to_string()))
                        .collect();
                    if field.trim().is_empty() || names.is_empty() {
                        return Err(format!(
                            "`{spec}` is not FIELD:AGG,... (e.g. latency_ms:count,mean,p99)"
                        ));
                    }
                    match out.get_mut(field.trim()) {
                        Some(toml::Value::Array(have)) => have.extend(names),
                        _ => {
                            out.insert(field.trim().to_string(), toml::Value::Array(names));
                        }
                    }
                }
                Ok(toml::Value::Table(out))
            }
        }
    }
}

//! Documents made from the registry: `pinflow config default` and the option reference.

use super::kind::Kind;
use super::layers::lookup;
use super::registry::{options, Bounds, Flag, OptionSpec, Topic};
use super::values::{format_bytes, format_duration};
use super::Config;

impl Config {
    /// A complete, commented configuration file: every key with its default value and a
    /// comment saying what it does, its environment variable and its flag. Keys without a
    /// default (`threads.parse`, `metrics.addr`, ...), and `out`, are shown commented out with
    /// an example. Read back, it gives [`Config::default`].
    pub fn default_toml() -> String {
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        let mut s = String::new();
        s.push_str(
            "# pinflow configuration (`pinflow config default` wrote this file).\n\
             #\n\
             # Every key is optional: a missing key keeps the default shown here. Values are\n\
             # overridden by PINFLOW_* environment variables (the key path upper-cased, `.` as `_`,\n\
             # e.g. PINFLOW_FETCH_MAX_IN_FLIGHT) and those by command-line flags. Unknown keys are\n\
             # errors. Durations are strings with a unit: \"250us\", \"2ms\", \"1.5s\", \"30s\", \"5m\",\n\
             # \"1h\". Check a file with `pinflow config check FILE`.\n",
        );
        let mut topic = Topic::Pipeline;
        for o in options() {
            if o.topic() != topic {
                topic = o.topic();
                s.push('\n');
                push_comment(&mut s, topic.doc());
                s.push_str(&format!("[{}]\n", topic.section()));
            }
            s.push('\n');
            push_comment(&mut s, o.doc());
            let mut how = format!("Env {}", o.env());
            if o.flag() != Flag::None {
                how.push_str(&format!(", flag {}", flags(o)));
            }
            push_comment(&mut s, &format!("{how}."));
            match (lookup(&defaults, o.key()), o.example()) {
                (Some(v), None) => s.push_str(&format!("{} = {v}\n", o.name())),
                (_, example) => {
                    s.push_str(&format!("# {} = {}\n", o.name(), example.unwrap_or("")))
                }
            }
        }
        s.push_str(STEP_TABLES_TOML);
        s
    }
}

/// The repeatable tables, which are steps in file order rather than options with a default:
/// shown commented out, with a pointer to their documentation.
const STEP_TABLES_TOML: &str = "
# Steps: tables that may be repeated, applied in file order on the compute stage, lookups
# first (docs/usage.md, \"Enrichment\" and \"Transforms\"). None by default.
#
# [[enrich]]                            # a lookup: HTTP (url) or a CSV/Parquet table (table, key)
# name = \"teams\"
# url = \"http://team-api/services/{service}\"
# fields = { team = \"owner.team\" }      # new column = dotted path in the JSON answer
# ttl = \"5m\"
# on_error = \"null\"                     # or \"dead-letter\", or \"fail\"
#
# [[transform]]                         # one action per table: filter, drop, rename, set, cast
# filter = 'level != \"DEBUG\" and latency_ms > 5'
";

/// The same tables in the option reference.
const STEP_TABLES_MD: &str = "
### Steps: `[[enrich]]` and `[[transform]]`

Repeatable tables, applied in file order on the compute stage: the `[[enrich]]` lookups first,
then the `[[transform]]` steps, then the top-level `filter`, `drop` and `rename` lists. None by
default, and not settable from the environment or flags (except through `--filter`, `--drop`
and `--rename`).

| table | keys | documented in |
|---|---|---|
| `[[enrich]]` | `name`; `url` (a template of record fields) or `table` and `key`; `fields`, `types`, `ttl`, `negative_ttl`, `max_stale`, `max_entries`, `max_bytes`, `timeout`, `concurrency`, `rate_limit`, `retries`, `max_retry_after`, `on_error`, `error_column` | [usage.md, Enrichment](usage.md#enrichment) |
| `[[transform]]` | one of `filter`, `drop`, `rename`, `set`, `cast` | [usage.md, Transforms](usage.md#transforms) |
";

fn push_comment(s: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 95 && line.len() > 1 {
            s.push_str(&line);
            s.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        s.push_str(&line);
        s.push('\n');
    }
}

/// The marker line before the generated reference in docs/configuration.md.
pub const REFERENCE_BEGIN: &str = "<!-- BEGIN GENERATED: option reference -->";
/// The marker line after it.
pub const REFERENCE_END: &str = "<!-- END GENERATED: option reference -->";

/// The option reference in Markdown, made from the registry: per topic, a table of every key
/// with its environment variable, flag, type, default and what it does. docs/configuration.md
/// holds it between [`REFERENCE_BEGIN`] and [`REFERENCE_END`] (a test keeps it up to date).
///
/// ```
/// let md = pinflow::config::reference_markdown();
/// assert!(md.contains("| `fetch.max_in_flight` | `PINFLOW_FETCH_MAX_IN_FLIGHT` | `--max-in-flight` |"));
/// ```
pub fn reference_markdown() -> String {
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
    let mut s = String::from(
        "Every option by topic: its TOML key (a `[table]` for dotted keys), its environment \
         variable, its flag (of `pinflow demo`, `run` and `bench`), its type and default. \
         Later sources override earlier ones: defaults < `--config FILE` < `PINFLOW_*` < \
         flags.\n",
    );
    for topic in Topic::ALL {
        s.push_str(&format!("\n### {}\n\n", topic.heading()));
        if !topic.section().is_empty() {
            s.push_str(&format!("Table `[{}]`. ", topic.section()));
        }
        s.push_str(topic.doc());
        s.push_str("\n\n| Key | Environment | Flag | Type | Default | Description |\n");
        s.push_str("|---|---|---|---|---|---|\n");
        for o in options().iter().filter(|o| o.topic() == topic) {
            let flag = match o.flag() {
                Flag::None => "—".to_string(),
                _ => flags(o)
                    .split(" / ")
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(" / "),
            };
            let bytes = o.kind == Kind::Bytes;
            let default = match lookup(&defaults, o.key()) {
                // A byte size also in the unit a flag would take.
                Some(toml::Value::Integer(n)) if bytes && *n > 0 => {
                    format!("`{n}` ({})", format_bytes(*n as u64))
                }
                Some(v) => format!("`{}`", v.to_string().replace('|', "\\|")),
                None => "unset".to_string(),
            };
            let type_name = match o.bounds() {
                Some(Bounds::Integer { min, max }) if bytes => format!(
                    "{} ({} to {})",
                    o.type_name(),
                    format_bytes(min),
                    format_bytes(max)
                ),
                Some(Bounds::Integer { min, max }) => {
                    format!("{} ({min} to {max})", o.type_name())
                }
                Some(Bounds::Duration { min, max }) if min.is_zero() => {
                    format!("{} (at most {})", o.type_name(), format_duration(max))
                }
                Some(Bounds::Duration { max, .. }) => format!(
                    "{} (above 0, at most {})",
                    o.type_name(),
                    format_duration(max)
                ),
                _ => o.type_name().to_string(),
            };
            s.push_str(&format!(
                "| `{}` | `{}` | {flag} | {type_name} | {default} | {} |\n",
                o.key(),
                o.env(),
                cell(o.doc()),
            ));
        }
    }
    s.push_str(STEP_TABLES_MD);
    s
}

/// The flags of an option as the binary makes them: a boolean's `--x` comes with `--no-x`.
fn flags(o: &OptionSpec) -> String {
    match o.flag() {
        Flag::Shared(on) if o.is_switch() => format!("{on} / --no-{}", &on[2..]),
        f => f.describe(),
    }
}

/// Text for one table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::STEP_TABLES_MD;

    #[test]
    fn the_step_tables_reference_names_every_enrich_key() {
        for (key, _) in super::super::enrich::KEYS {
            // `position` is the table's place in the file, kept for error messages.
            if key != "position" {
                assert!(STEP_TABLES_MD.contains(&format!("`{key}`")), "{key}");
            }
        }
    }
}

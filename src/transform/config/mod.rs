//! Transforms declared in the configuration: `[[transform]]` tables (filter, drop, rename,
//! set, cast), then the top-level `filter`, `drop` and `rename` lists (`--filter`, `--drop`,
//! `--rename`), each made
//! into a [`Transform`] step that the compute stage runs in order, after the statistics and
//! before the transforms of the library's builder.
//!
//! Each step binds itself to the schema of the rows it gets: with a fixed schema
//! (`schema.fields`), [`build_steps`] binds every step at start, so a step naming a column the
//! rows will not have fails the run before anything is fetched, naming the step's line; with
//! an inferred schema, the first batch does.
//!
//! - `eval`: binding a filter expression ([`crate::expr`]) to a schema, and evaluating it a
//!   column at a time with SQL's null semantics.
//! - `actions`: the steps.
//!
//! [`TransformConfig::at`](crate::config::TransformConfig::at) records each table's position,
//! so that steps of other kinds (`[[enrich]]`) can be interleaved with these by file order.

mod actions;
pub(crate) mod eval;

use std::sync::Arc;

use crate::config::{Config, Position, SchemaConfig, SetValue, TransformConfig};
use crate::error::{Error, Result};
use crate::expr;
use crate::ingest::Source;
use crate::schema::{Layout, FETCHED_AT_COLUMN, SOURCE_COLUMN};
use crate::stage::Transform;

use actions::{Action, CastTo, LineagePart, SetFrom, Step, LINEAGE_COLUMNS};

/// The metadata names of the `set` entries of `cfg`'s transforms.
fn metadata(cfg: &Config) -> impl Iterator<Item = &str> {
    cfg.transform
        .iter()
        .filter_map(|t| t.set.as_ref())
        .flat_map(|s| s.values())
        .filter_map(|v| match v {
            SetValue::Meta { meta } => Some(meta.as_str()),
            _ => None,
        })
}

/// The lineage column (`source`, `fetched_at`) a metadata name reads.
fn lineage_of(meta: &str) -> Option<&'static str> {
    match meta {
        "source_url" | "source_file" | "kafka_partition" | "kafka_offset" => Some("source"),
        "fetched_at" => Some("fetched_at"),
        _ => None,
    }
}

/// The lineage columns the transforms read that `schema.lineage` does not ask for: the parse
/// stage makes them, and a last step drops them again.
fn hidden_lineage(cfg: &Config) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for l in metadata(cfg).filter_map(lineage_of) {
        if !cfg.schema.lineage.iter().any(|x| x == l) && !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// The schema configuration the parse stage uses: `cfg.schema`, with the lineage columns the
/// transforms' metadata reads.
pub fn parse_schema(cfg: &Config) -> SchemaConfig {
    let mut schema = cfg.schema.clone();
    schema
        .lineage
        .extend(hidden_lineage(cfg).into_iter().map(String::from));
    schema
}

/// Whether `source` has the metadata the transforms read: `source_url` needs an HTTP source
/// (a URL list, a template), `source_file` a file source (`--files`, `--tail`),
/// `kafka_partition` and `kafka_offset` the Kafka source.
pub fn check_source(cfg: &Config, source: &Source) -> Result<()> {
    // What each kind of source has, and how a message says so.
    let (has_url, has_file, has_kafka, what) = match source {
        Source::Files(_) | Source::Tail(_) => (false, true, false, "a file source has source_file"),
        Source::Push(_) => (
            false,
            false,
            false,
            "pushed records have neither source_url nor source_file",
        ),
        Source::Listen(_) => (
            false,
            false,
            false,
            "received records have neither source_url nor source_file",
        ),
        Source::Kafka(_) => (
            false,
            false,
            true,
            "a Kafka source has kafka_partition and kafka_offset",
        ),
        _ => (true, false, false, "an HTTP source has source_url"),
    };
    for (i, t) in cfg.transform.iter().enumerate() {
        for (col, v) in t.set.iter().flatten() {
            let SetValue::Meta { meta } = v else { continue };
            let missing = match meta.as_str() {
                "source_url" => !has_url,
                "source_file" => !has_file,
                "kafka_partition" | "kafka_offset" => !has_kafka,
                _ => false,
            };
            if missing {
                return Err(Error::config(
                    format!("transform[{i}].set.{col}"),
                    format!(
                        "set at {}: `{meta}` is not available for this source ({what})",
                        t.at
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn action(t: &TransformConfig, cfg: &Config) -> Result<Action> {
    let bad = |why: String| {
        Error::config(
            format!("transform[{}]", t.at.index),
            format!("{}: {why}", t.at),
        )
    };
    if let Some((why, offset)) = t.problem() {
        let why = match (offset, &t.filter) {
            (Some(o), Some(f)) if t.at.expr_line > 0 => {
                let (l, c) = t.at.of_offset(f, o);
                format!("line {l}, column {c}: {why}")
            }
            (Some(o), _) => format!("column {}: {why}", o + 1),
            _ => why,
        };
        return Err(bad(why));
    }
    if let Some(f) = &t.filter {
        let expr = expr::parse(f).map_err(|e| bad(e.message))?;
        return Ok(Action::Filter {
            expr,
            text: f.clone(),
        });
    }
    if let Some(d) = &t.drop {
        return Ok(Action::Drop {
            columns: d.clone(),
            quiet: false,
        });
    }
    if let Some(r) = &t.rename {
        return Ok(Action::Rename(
            r.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
        ));
    }
    if let Some(s) = &t.set {
        let mut entries = Vec::new();
        for (col, v) in s {
            let from = match v {
                SetValue::Field { field } => SetFrom::Field(field.clone()),
                SetValue::Meta { meta } => match meta.as_str() {
                    "source_url" => SetFrom::Lineage(SOURCE_COLUMN, LineagePart::Whole),
                    "source_file" => SetFrom::Lineage(SOURCE_COLUMN, LineagePart::File),
                    "fetched_at" => SetFrom::Lineage(FETCHED_AT_COLUMN, LineagePart::Whole),
                    "kafka_partition" => {
                        SetFrom::Lineage(SOURCE_COLUMN, LineagePart::KafkaPartition)
                    }
                    "kafka_offset" => SetFrom::Lineage(SOURCE_COLUMN, LineagePart::KafkaOffset),
                    other => {
                        let why = crate::config::metadata_problem(other)
                            .unwrap_or_else(|| format!("`{other}` is no metadata"));
                        return Err(bad(why));
                    }
                },
                constant => SetFrom::Const(constant.clone()),
            };
            entries.push((col.clone(), from));
        }
        return Ok(Action::Set(entries));
    }
    if let Some(c) = &t.cast {
        let rule = cfg.schema.timestamp_rule().unwrap_or_default();
        let mut cols = Vec::new();
        for (col, ty) in c {
            let to = CastTo::parse(ty).ok_or_else(|| bad(format!("cast: `{ty}` is no type")))?;
            cols.push((col.clone(), to));
        }
        return Ok(Action::Cast(cols, rule));
    }
    Err(bad("no action".into()))
}

/// Every step the configuration declares, in order: the `[[transform]]` tables, then each
/// `filter` expression, then `drop`, then `rename`. With `layout` (a fixed schema, made with
/// [`parse_schema`]), each step is bound at once to the rows it will get, so a step naming a
/// column they do not have is an error here, naming the step's position. `added` are the
/// columns the steps before these add (the `[[enrich]]` lookups'), for that check.
pub fn build_steps(
    cfg: &Config,
    layout: Option<&Layout>,
    added: &[arrow_schema::FieldRef],
) -> Result<Vec<Arc<dyn Transform>>> {
    let mut steps: Vec<Step> = Vec::new();
    for (i, t) in cfg.transform.iter().enumerate() {
        let mut t = t.clone();
        t.at.index = i;
        let a = action(&t, cfg)?;
        steps.push(Step::new(a, t.at.clone()));
    }
    for (i, f) in cfg.filter.iter().enumerate() {
        let at = Position {
            file: format!("filter[{i}]"),
            ..Position::default()
        };
        let expr = expr::parse(f).map_err(|e| {
            Error::config(
                format!("filter[{i}]"),
                format!("column {}: {}", e.offset + 1, e.message),
            )
        })?;
        steps.push(Step::new(
            Action::Filter {
                expr,
                text: f.clone(),
            },
            at,
        ));
    }
    if !cfg.drop.is_empty() {
        let at = Position {
            file: "drop".into(),
            ..Position::default()
        };
        steps.push(Step::new(
            Action::Drop {
                columns: cfg.drop.clone(),
                quiet: false,
            },
            at,
        ));
    }
    if !cfg.rename.is_empty() {
        let mut pairs = Vec::new();
        for r in &cfg.rename {
            match r.split_once('=') {
                Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => {
                    pairs.push((old.trim().to_string(), new.trim().to_string()))
                }
                _ => return Err(Error::config("rename", format!("`{r}` is not OLD=NEW"))),
            }
        }
        let at = Position {
            file: "rename".into(),
            ..Position::default()
        };
        steps.push(Step::new(Action::Rename(pairs), at));
    }
    let hidden = hidden_lineage(cfg);
    if !hidden.is_empty() {
        let columns = LINEAGE_COLUMNS
            .iter()
            .zip(["source", "fetched_at"])
            .filter(|(_, l)| hidden.contains(l))
            .map(|(c, _)| c.to_string())
            .collect();
        let at = Position {
            file: "the lineage columns the transforms read".into(),
            ..Position::default()
        };
        steps.push(Step::new(
            Action::Drop {
                columns,
                quiet: true,
            },
            at,
        ));
    }
    if let Some(layout) = layout {
        let mut schema = layout.output_schema();
        if !added.is_empty() {
            let mut fields: Vec<arrow_schema::FieldRef> = schema.fields().iter().cloned().collect();
            for f in added {
                match fields.iter().position(|g| g.name() == f.name()) {
                    Some(at) => fields[at] = f.clone(),
                    None => fields.push(f.clone()),
                }
            }
            schema = Arc::new(arrow_schema::Schema::new(fields));
        }
        for s in &steps {
            schema = s
                .output_schema(&schema)
                .map_err(|why| Error::config("transform", why))?;
        }
    }
    Ok(steps
        .into_iter()
        .map(|s| Arc::new(s) as Arc<dyn Transform>)
        .collect())
}

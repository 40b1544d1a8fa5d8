//! `pinflow inspect`: the first records of the configured source, what they look like, and
//! what a run would write: the quickest way to see the shape of a new API or file.

use std::path::Path;
use std::process::ExitCode;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use pinflow::{Pipeline, Source};

use crate::options::{load, validated, FlagsSet, Options};
use crate::Failure;

/// Reads (or fetches) the first `n` records of `urls`, `files` or the configured source and
/// prints the envelope, the schema as TOML and the first rows after the transforms.
pub fn inspect(
    file: Option<&Path>,
    urls: Option<String>,
    files: Vec<String>,
    n: usize,
    json: bool,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    let (mut cfg, layers) = load(file, opts)?;
    let mut set = FlagsSet::new();
    if !files.is_empty() {
        cfg.files = files;
        set.push(("files", "--files"));
    }
    let use_files = match (&urls, cfg.files.is_empty(), &cfg.source) {
        (Some(_), _, _) => false,
        (None, false, _) => true,
        (None, true, Some(_)) => false,
        (None, true, None) => {
            return Err(Failure::Usage(
                "no work source: give --urls or --files, or set `source` or `files` in the \
                 --config file"
                    .into(),
            ))
        }
    };
    let cfg = validated(cfg, &layers, &set)?;
    crate::runtime::init_logging(&cfg);
    let (source, label) = if use_files {
        (Source::files_in(&cfg.files, &cfg)?, cfg.files.join(" "))
    } else {
        let u = urls.or_else(|| cfg.source.clone()).unwrap_or_default();
        (Source::from_arg_counted(&u)?.0, u)
    };
    let pipeline = Pipeline::new(cfg)?;
    let found = pipeline.inspect(source, n)?;
    if json {
        for b in &found.rows {
            for i in 0..b.num_rows() {
                outln!("{}", pinflow::output::row_json(b, i));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    outln!(
        "source     {label} ({} read)",
        plural(found.bodies, "body", "bodies")
    );
    for (url, why) in &found.failures {
        outln!("failed     {url}: {why}");
    }
    outln!("envelope   {}", found.envelope);
    if let Some(f) = &found.suggested_records_field {
        outln!(
            "           the bodies look like envelopes with the records in `{f}`: set \
             fetch.records_field = \"{f}\" (--records-field {f})"
        );
    }
    match &found.layout {
        Some(layout) => {
            let how = if found.inferred {
                "inferred from these records; to fix it, put this in the configuration file"
            } else {
                "as configured"
            };
            outln!("schema     {how}:\n");
            outln!("[schema]");
            outln!("fields = [");
            for f in &layout.fields {
                outln!("    \"{f}\",");
            }
            outln!("]\n");
        }
        None => outln!("schema     no record was found to infer it from"),
    }
    let shown: usize = found.rows.iter().map(RecordBatch::num_rows).sum();
    outln!(
        "rows       {} parsed; the first {shown} after the transforms ({} filtered, {}):\n",
        plural(found.records as usize, "record", "records"),
        found.filtered,
        plural(found.dead_letters.len(), "dead letter", "dead letters")
    );
    if let Some(first) = found.rows.first() {
        let names: Vec<String> = first
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut table = vec![names];
        for b in &found.rows {
            for i in 0..b.num_rows() {
                table.push(
                    (0..b.num_columns())
                        .map(|c| cell(b.column(c).as_ref(), i))
                        .collect(),
                );
            }
        }
        print_table(&table);
    }
    for d in found.dead_letters.iter().take(n) {
        outln!("dead       {}: {}", d.url, d.reason);
    }
    Ok(ExitCode::SUCCESS)
}

/// Columns aligned, separated by two spaces; cells cut to 40 characters.
fn print_table(rows: &[Vec<String>]) {
    let cut = |s: &str| -> String {
        if s.chars().count() > 40 {
            format!("{}…", s.chars().take(39).collect::<String>())
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
}

/// One value as text: null as `null`, timestamps in RFC 3339, lists as `[a, b]`.
fn cell(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return "null".into();
    }
    match a.data_type() {
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Float64 => a.as_primitive::<Float64Type>().value(i).to_string(),
        DataType::Boolean => a.as_boolean().value(i).to_string(),
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::Timestamp(..) => {
            let mut out = Vec::new();
            pinflow::time::format_rfc3339_micros(
                a.as_primitive::<TimestampMicrosecondType>().value(i),
                &mut out,
            );
            String::from_utf8_lossy(&out).into_owned()
        }
        DataType::Dictionary(..) => {
            let d = a.as_dictionary::<Int32Type>();
            cell(d.values().as_ref(), d.keys().value(i) as usize)
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let items = l.value(i);
            let parts: Vec<String> = (0..items.len()).map(|j| cell(items.as_ref(), j)).collect();
            format!("[{}]", parts.join(", "))
        }
        other => format!("({other})"),
    }
}

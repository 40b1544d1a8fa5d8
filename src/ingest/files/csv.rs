//! CSV inputs (`format = "csv"`, or a `.csv` / `.csv.gz` name): rows turned into NDJSON
//! records, one JSON object per row, so the parse stage, statistics, partitions, transforms,
//! lineage and dead letters work on them unchanged.
//!
//! The csv crate (csv-core underneath, already in the tree for `[[enrich]]` tables) splits
//! records: quoting, doubled quotes, delimiters and line breaks inside quoted fields, CRLF, a
//! UTF-8 BOM. A chunk of rows is cut only between records, never inside a quoted field.
//! (arrow-csv would build Arrow arrays directly, but outside pinflow's own column builders:
//! no per-row dead letters with line numbers, no lineage columns, and arrow-cast's build time.)
//!
//! Each cell is written as its column's JSON type: the `[schema] fields` named after the
//! header's columns, or the types [`infer_schema`] found in the first rows (the rules of
//! [`crate::parse::infer`]: integers, floats, booleans, RFC 3339 timestamps, strings; a
//! column holding two kinds of value is a string column). An empty cell is null. A row with
//! the wrong number of fields, or a cell that does not fit its column's type, is one failed
//! work item named `PATH:LINE` with an excerpt (a dead letter); the rest of its chunk goes on.
//!
//! A chunk of rows is one body named `PATH:FIRST-LAST` (the lines its rows start on); its
//! position for the resume journal is the byte offset of its first row in the (decompressed)
//! file, as for NDJSON chunks: the same files cut the same way on every run.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{FileInput, Reader};
use crate::config::Config;
use crate::error::Result;
use crate::schema::{FieldSpec, FieldType};
use crate::time::parse_rfc3339;

/// Rows looked at to infer the columns' types (as many as [`crate::parse::infer`] looks at).
const SAMPLE_ROWS: usize = crate::parse::infer::SAMPLE_RECORDS;

/// How CSV inputs are read: from the top-level `csv_delimiter` and `csv_header`, and the
/// `[schema]` fields for the cells' types.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    delimiter: u8,
    header: bool,
    /// Column name → type, from `schema.fields` (top-level fields only).
    types: HashMap<String, FieldType>,
    /// Timestamps are read by a rule the parse stage applies (a strftime pattern, an epoch
    /// unit, a zone for date-times without an offset): passed on as they are.
    lenient_time: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            header: true,
            types: HashMap::new(),
            lenient_time: false,
        }
    }
}

impl CsvOptions {
    /// The options of `cfg` (its schema as given: see [`infer_schema`] for one to infer).
    pub fn from_config(cfg: &Config) -> CsvOptions {
        let types = cfg
            .schema
            .fields
            .iter()
            .filter_map(|f| f.parse::<FieldSpec>().ok())
            .map(|f| (f.dotted(), f.ty))
            .collect();
        CsvOptions {
            delimiter: match cfg.csv_delimiter.as_str() {
                "tab" => b'\t',
                d => d.bytes().next().unwrap_or(b','),
            },
            header: cfg.csv_header,
            types,
            lenient_time: cfg.schema.timestamp_format != "rfc3339"
                || cfg.schema.timestamp_zone.is_some(),
        }
    }
}

/// Opens a CSV file, through a gzip decoder when its name ends in `.gz`.
fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    let file = File::open(path)?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(match gz {
        true => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
        false => Box::new(file),
    })
}

/// Opens `input` as CSV.
pub(super) fn open_input(input: &FileInput) -> io::Result<Box<dyn Read>> {
    match input {
        FileInput::Stdin => Ok(Box::new(io::stdin().lock())),
        FileInput::Path(p) => open(p),
        // Read by `Reader::read_object`, through the store's client.
        FileInput::Object(o) => Err(io::Error::other(format!("{}: not a local file", o.url))),
    }
}

fn reader(opts: &CsvOptions, input: Box<dyn Read>) -> csv::Reader<Box<dyn Read>> {
    csv::ReaderBuilder::new()
        .delimiter(opts.delimiter)
        .has_headers(false)
        // Field counts are checked here, row by row, so that a short row is a dead letter.
        .flexible(true)
        .from_reader(input)
}

/// The column names: the header row's (a BOM dropped, an empty name or one holding `.` or
/// `:`, which a schema path cannot, made usable), or `column0`, `column1`, ... for `width`.
fn names(header: Option<&csv::ByteRecord>, width: usize) -> Vec<String> {
    let Some(h) = header else {
        return (0..width).map(|i| format!("column{i}")).collect();
    };
    h.iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f);
            let name = String::from_utf8_lossy(f).trim().replace(['.', ':'], "_");
            match name.is_empty() {
                true => format!("column{i}"),
                false => name,
            }
        })
        .collect()
}

/// What one cell looks like, for inference.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bool,
    Time,
    Text,
}

fn kind(cell: &str) -> Kind {
    if cell.parse::<i64>().is_ok() {
        Kind::Int
    } else if float(cell).is_some() {
        Kind::Float
    } else if cell.eq_ignore_ascii_case("true") || cell.eq_ignore_ascii_case("false") {
        Kind::Bool
    } else if parse_rfc3339(cell).is_some() {
        Kind::Time
    } else {
        Kind::Text
    }
}

/// A float written as JSON can hold it: digits, sign, point and exponent only (no `inf`).
fn float(cell: &str) -> Option<f64> {
    let ok = cell.bytes().any(|b| b.is_ascii_digit())
        && cell
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    ok.then(|| cell.parse::<f64>().ok())
        .flatten()
        .filter(|f| f.is_finite())
}

/// With no `[schema] fields` (and `schema.infer` not false) and a CSV input first among
/// `inputs`: `cfg` with the fields of that file's header, typed by its first rows. The
/// schema is settled before the run so that every chunk's cells are written as the same
/// types the parse stage expects. `None`: nothing to infer, or the file cannot be read (its
/// reader then fails it with the reason).
pub fn infer_schema(cfg: &Config, inputs: &[FileInput]) -> Option<Config> {
    if !cfg.schema.fields.is_empty() || cfg.schema.infer == Some(false) {
        return None;
    }
    let first = inputs.first()?;
    if !super::is_csv(cfg, first) {
        return None;
    }
    let FileInput::Path(path) = first else {
        // Standard input cannot be read twice.
        return None;
    };
    let opts = CsvOptions::from_config(cfg);
    let mut rdr = reader(&opts, open(path).ok()?);
    let mut rec = csv::ByteRecord::new();
    let mut header = None;
    if opts.header {
        if !rdr.read_byte_record(&mut rec).ok()? {
            return None;
        }
        header = Some(rec.clone());
    }
    let mut seen: Vec<Vec<Kind>> = Vec::new();
    let mut width = header.as_ref().map_or(0, |h| h.len());
    for _ in 0..SAMPLE_ROWS {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            _ => break,
        }
        if header.is_none() {
            width = width.max(rec.len());
        }
        seen.resize(seen.len().max(rec.len()), Vec::new());
        for (i, cell) in rec.iter().enumerate() {
            if cell.is_empty() {
                continue;
            }
            let k = std::str::from_utf8(cell).map_or(Kind::Text, kind);
            if !seen[i].contains(&k) {
                seen[i].push(k);
            }
        }
    }
    let names = names(header.as_ref(), width);
    let fields = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let kinds = seen.get(i).map_or(&[][..], Vec::as_slice);
            let ty = match kinds {
                [Kind::Int] => FieldType::Int64,
                [Kind::Bool] => FieldType::Bool,
                [Kind::Time] => FieldType::Timestamp,
                k if !k.is_empty() && k.iter().all(|k| matches!(k, Kind::Int | Kind::Float)) => {
                    FieldType::Float64
                }
                _ => FieldType::String,
            };
            format!("{name}:{ty}")
        })
        .collect();
    let mut out = cfg.clone();
    out.schema.fields = fields;
    Some(out)
}

/// One column: its JSON key (quoted, with the colon) and its type.
struct Column {
    key: Vec<u8>,
    ty: FieldType,
}

/// Rows held for the chunk being built.
struct Chunk {
    /// The byte offset of its first row.
    offset: Option<u64>,
    first: u64,
    last: u64,
    /// Bad rows: `PATH:LINE` and the reason.
    bad: Vec<(String, String)>,
}

impl Reader<'_> {
    /// Reads one CSV input into chunks of NDJSON records.
    pub(super) fn read_csv(
        &mut self,
        name: &str,
        input: Box<dyn Read>,
        stop: &AtomicBool,
    ) -> Result<()> {
        let opts = self.csv.clone();
        let mut rdr = reader(&opts, input);
        let mut rec = csv::ByteRecord::new();
        let mut header = None;
        let read_error =
            |line: u64, e: csv::Error| format!("{name}: read error after line {line}: {e}");
        if opts.header {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => header = Some(rec.clone()),
                Ok(false) => return Ok(()), // An empty file holds no rows.
                Err(e) => {
                    self.out.fail(name, "read", read_error(0, e));
                    return Ok(());
                }
            }
        }
        let mut columns: Option<Vec<Column>> = None;
        let target = self.cfg.batch_max_bytes.max(4096);
        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        let mut chunk = Chunk {
            offset: None,
            first: 0,
            last: 0,
            bad: Vec::new(),
        };
        let mut line = 1;
        loop {
            if stop.load(Ordering::Relaxed) {
                self.out.report.interrupted = true;
                break;
            }
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // I/O or gzip errors only: csv-core reads any bytes as some record.
                    self.out
                        .fail(&format!("{name}:{line}"), "read", read_error(line, e));
                    break;
                }
            }
            let pos = rec.position().cloned().unwrap_or_else(csv::Position::new);
            line = pos.line();
            let cols = columns.get_or_insert_with(|| {
                names(header.as_ref(), rec.len())
                    .into_iter()
                    .map(|n| {
                        let ty = opts.types.get(&n).copied().unwrap_or(FieldType::String);
                        let mut key = Vec::new();
                        json_string(&n, &mut key);
                        key.push(b':');
                        Column { key, ty }
                    })
                    .collect()
            });
            if chunk.offset.is_none() {
                chunk.offset = Some(pos.byte());
                chunk.first = line;
            }
            chunk.last = line;
            let mark = body.len();
            if let Err(why) = row_json(&rec, cols, opts.lenient_time, &mut body) {
                body.truncate(mark);
                let excerpt = excerpt(&rec, opts.delimiter);
                chunk.bad.push((
                    format!("{name}:{line}"),
                    format!("{name}: line {line}: {why}: {excerpt}"),
                ));
            }
            if body.len() >= target || chunk.bad.len() >= self.cfg.batch_max_items {
                self.ship_chunk(name, &mut chunk, &mut body)?;
            }
        }
        self.ship_chunk(name, &mut chunk, &mut body)?;
        self.buf = body;
        Ok(())
    }

    /// Hands over the chunk's bad rows and its records (unless the journal says an earlier
    /// run wrote them: then neither, as the rows' dead letters were written with them).
    fn ship_chunk(&mut self, name: &str, chunk: &mut Chunk, body: &mut Vec<u8>) -> Result<()> {
        let Some(offset) = chunk.offset.take() else {
            return Ok(());
        };
        let bad = std::mem::take(&mut chunk.bad);
        if !self.out.chans.skip.contains((self.index << 40) | offset) {
            for (url, why) in bad {
                self.out.fail(&url, "bad row", why);
            }
        }
        // Delivered even when every row was bad: its position goes in the journal all the same.
        let url = format!("{name}:{}-{}", chunk.first, chunk.last);
        self.deliver(&url, body, offset);
        body.clear();
        self.out.ship_if_full()
    }
}

/// Appends `rec` as one JSON object line, each cell as its column's type; the reason when a
/// row does not fit (the caller drops what was appended).
fn row_json(
    rec: &csv::ByteRecord,
    cols: &[Column],
    lenient_time: bool,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    if rec.len() != cols.len() {
        return Err(format!(
            "{} fields where the header has {}",
            rec.len(),
            cols.len()
        ));
    }
    out.push(b'{');
    for (i, (cell, col)) in rec.iter().zip(cols).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&col.key);
        if cell.is_empty() {
            out.extend_from_slice(b"null");
            continue;
        }
        let column = || String::from_utf8_lossy(&col.key[1..col.key.len() - 2]).into_owned();
        let text =
            std::str::from_utf8(cell).map_err(|_| format!("column `{}` is not UTF-8", column()))?;
        let bad = |ty: &str| format!("`{text}` in column `{}` is not {ty}", column());
        match col.ty {
            FieldType::Int64 => {
                let v: i64 = text.parse().map_err(|_| bad("an int64"))?;
                out.extend_from_slice(v.to_string().as_bytes());
            }
            FieldType::Float64 => {
                let v = float(text).ok_or_else(|| bad("a float64"))?;
                // `{:?}` keeps a point or an exponent (1.0, 1e21): a float to the parse stage.
                out.extend_from_slice(format!("{v:?}").as_bytes());
            }
            FieldType::Bool => match text {
                t if t.eq_ignore_ascii_case("true") => out.extend_from_slice(b"true"),
                t if t.eq_ignore_ascii_case("false") => out.extend_from_slice(b"false"),
                _ => return Err(bad("a bool (true or false)")),
            },
            FieldType::Timestamp => {
                if let Ok(v) = text.parse::<i64>() {
                    // An epoch number, read by schema.timestamp_format's rule.
                    out.extend_from_slice(v.to_string().as_bytes());
                } else if lenient_time || parse_rfc3339(text).is_some() {
                    json_string(text, out);
                } else {
                    return Err(bad("an RFC 3339 timestamp"));
                }
            }
            FieldType::ListFloat64 | FieldType::ListInt64 => {
                // A JSON array as the cell's text; the parse stage checks its elements.
                if !text.trim_start().starts_with('[') {
                    return Err(bad("a JSON array"));
                }
                out.extend_from_slice(text.as_bytes());
            }
            FieldType::String | FieldType::Dict => json_string(text, out),
        }
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// Appends `s` as a JSON string.
fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// The row as text for a dead letter, cut at 200 bytes.
fn excerpt(rec: &csv::ByteRecord, delimiter: u8) -> String {
    let mut raw = Vec::new();
    for (i, f) in rec.iter().enumerate() {
        if i > 0 {
            raw.push(delimiter);
        }
        raw.extend_from_slice(f);
    }
    let cut = raw.len() > 200;
    raw.truncate(200);
    let mut s = String::from_utf8_lossy(&raw).into_owned();
    if cut {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, types: &[(&str, FieldType)]) -> Vec<std::result::Result<String, String>> {
        let opts = CsvOptions::default();
        let mut rdr = reader(&opts, Box::new(io::Cursor::new(text.as_bytes().to_vec())));
        let mut rec = csv::ByteRecord::new();
        assert!(rdr.read_byte_record(&mut rec).unwrap());
        let cols: Vec<Column> = names(Some(&rec), rec.len())
            .into_iter()
            .map(|n| {
                let ty = types
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map_or(FieldType::String, |t| t.1);
                let mut key = Vec::new();
                json_string(&n, &mut key);
                key.push(b':');
                Column { key, ty }
            })
            .collect();
        let mut out = Vec::new();
        while rdr.read_byte_record(&mut rec).unwrap() {
            let mut line = Vec::new();
            out.push(
                row_json(&rec, &cols, false, &mut line).map(|()| String::from_utf8(line).unwrap()),
            );
        }
        out
    }

    #[test]
    fn cells_become_json_of_their_column_type_and_bad_cells_say_why() {
        let types = [
            ("n", FieldType::Int64),
            ("x", FieldType::Float64),
            ("ok", FieldType::Bool),
            ("at", FieldType::Timestamp),
        ];
        let got = rows(
            "\u{feff}n,x,ok,at,s\r\n1,2,TRUE,2024-01-01T00:00:00Z,\"a \"\"q\"\",\nb\"\r\n,,,,\nx,1,true,,\n1,2\n",
            &types,
        );
        assert_eq!(
            got[0].as_deref().unwrap(),
            "{\"n\":1,\"x\":2.0,\"ok\":true,\"at\":\"2024-01-01T00:00:00Z\",\"s\":\"a \\\"q\\\",\\nb\"}\n"
        );
        assert_eq!(
            got[1].as_deref().unwrap(),
            "{\"n\":null,\"x\":null,\"ok\":null,\"at\":null,\"s\":null}\n"
        );
        assert!(got[2]
            .as_ref()
            .unwrap_err()
            .contains("`x` in column `n` is not an int64"));
        assert!(got[3]
            .as_ref()
            .unwrap_err()
            .contains("2 fields where the header has 5"));
    }

    #[test]
    fn inference_follows_the_ndjson_rules_per_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(
            &path,
            "i,f,b,t,s,mixed,empty,a.b\n1,1,true,2024-01-01T00:00:00Z,x,1,,1\n2,1.5,false,2024-01-02T00:00:00+02:00,2,true,,2\n",
        )
        .unwrap();
        let cfg = Config::new("out.parquet");
        let got = infer_schema(&cfg, &[FileInput::Path(path)]).unwrap();
        assert_eq!(
            got.schema.fields,
            [
                "i:int64",
                "f:float64",
                "b:bool",
                "t:timestamp",
                "s:string",
                "mixed:string",
                "empty:string",
                "a_b:int64"
            ]
        );
    }
}

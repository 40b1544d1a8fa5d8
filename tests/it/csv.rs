//! CSV files: what pinflow writes from a CSV file is what DuckDB's `read_csv` reads from it,
//! cell by cell (quoted newlines, embedded delimiters and quotes, CRLF, a BOM, empty cells,
//! gzip); bad rows are dead letters naming their line; a killed run resumes to every row once.
//!
//! The DuckDB comparisons use the Python environment tools/interop-check.sh makes in
//! target/interop-venv (made here the same way when missing and python3 is there); without
//! Python they are skipped with the reason, unless `CI_REQUIRE_PYARROW=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

/// Writes `cell` as a CSV field: quoted when it holds the delimiter, a quote or a line break.
fn field(cell: &str, delim: char) -> String {
    if cell.contains([delim, '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// The cells of row `i`: every awkward case several times over.
fn cells(i: i64) -> Vec<String> {
    let name = match i {
        i if i % 17 == 0 => String::new(),
        i if i % 13 == 0 => format!("two\nlines {i}"),
        i if i % 11 == 0 => format!("says \"hi\" {i}"),
        i if i % 7 == 0 => format!("has, comma; and semicolon {i}"),
        i if i % 5 == 0 => format!("crlf\r\ninside {i}"),
        _ => format!("name{i}"),
    };
    let score = match i {
        i if i % 5 == 0 => String::new(),
        i if i % 3 == 0 => format!("{}", i * 2),
        _ => format!("{}.{}", i, i % 10),
    };
    let ok = match i % 19 {
        0 => String::new(),
        _ => (i % 2 == 0).to_string(),
    };
    let at = match i % 23 {
        0 => String::new(),
        _ if i % 2 == 0 => format!("2024-03-01T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
        _ => format!("2024-03-01T12:{:02}:{:02}+02:00", (i / 60) % 60, i % 60),
    };
    let count = match i % 29 {
        0 => String::new(),
        _ => format!("{}", i - 1000),
    };
    vec![i.to_string(), name, score, ok, at, count]
}

/// A CSV file of `rows` rows (with a BOM and CRLF line ends when `windows`); returns its
/// text and the line each row starts on.
fn csv_text(rows: std::ops::Range<i64>, delim: char, windows: bool) -> (String, Vec<u64>) {
    let eol = if windows { "\r\n" } else { "\n" };
    let mut text = String::new();
    if windows {
        text.push('\u{feff}');
    }
    let header = ["id", "name", "score", "ok", "at", "count"];
    text.push_str(&header.join(&delim.to_string()));
    text.push_str(eol);
    let mut starts = Vec::new();
    let mut line = 2;
    for i in rows {
        starts.push(line);
        let row: Vec<String> = cells(i).iter().map(|c| field(c, delim)).collect();
        let row = row.join(&delim.to_string());
        line += row.matches('\n').count() as u64 + 1;
        text.push_str(&row);
        text.push_str(eol);
    }
    (text, starts)
}

/// Compares, cell by cell and ordered by the first column, DuckDB's `read_csv` of `csv` with DuckDB's
/// reading of pinflow's Parquet files `parquet`; timestamps as µs since the epoch (UTC).
const COMPARE: &str = r#"
import datetime, sys, duckdb
csv, delim, header, parquet = sys.argv[1], sys.argv[2], sys.argv[3] == "true", sys.argv[4:]
con = duckdb.connect()
def fetch(rel, params):
    # Timestamps as µs since the epoch in SQL (their Python form would need pytz).
    desc = con.execute("describe select * from " + rel, params).fetchall()
    sel = ", ".join(
        f'epoch_us("{c}") as "{c}"' if t.startswith("TIMESTAMP") else f'"{c}"' for c, t, *_ in desc
    )
    cur = con.execute(f'select {sel} from {rel} order by "{desc[0][0]}"', params)
    return [d[0] for d in desc], [d[1] for d in desc], cur.fetchall()
a_cols, a_types, a_rows = fetch("read_csv(?, header = ?, delim = ?)", [csv, header, delim])
b_cols, b_types, b_rows = fetch("read_parquet(?)", [parquet])
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def norm(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return ("ts", (v - epoch) // datetime.timedelta(microseconds=1))
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        return ("num", float(v))
    return (type(v).__name__, v)
bad = []
if len(a_rows) != len(b_rows):
    bad.append(f"{len(a_rows)} rows in DuckDB's read_csv, {len(b_rows)} in pinflow's output")
missing = [c for c in a_cols if c not in b_cols]
if missing:
    bad.append(f"columns missing from pinflow's output: {missing}")
cells = 0
for ra, rb in zip(a_rows, b_rows):
    for i, c in enumerate(a_cols):
        if c in missing:
            continue
        x, y = norm(ra[i]), norm(rb[b_cols.index(c)])
        cells += 1
        if x != y:
            bad.append(f"id {ra[0]} column {c}: read_csv {ra[i]!r}, pinflow {rb[b_cols.index(c)]!r}")
print(f"compared {cells} cells; read_csv types {dict(zip(a_cols, a_types))}")
for line in bad[:20]:
    print("MISMATCH", line)
sys.exit(1 if bad else 0)
"#;

fn assert_same_as_duckdb(
    python: &Path,
    csv: &Path,
    delim: char,
    header: bool,
    parquet: &[PathBuf],
) {
    let out = Command::new(python)
        .arg("-c")
        .arg(COMPARE)
        .arg(csv)
        .arg(delim.to_string())
        .arg(header.to_string())
        .args(parquet)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}: {said}", csv.display());
    assert!(said.contains("compared "), "{said}");
    eprintln!("{}: {said}", csv.display());
}

fn run_files(cfg: Config, spec: &Path) -> pinflow::Summary {
    let source = Source::files(&[spec.display().to_string()]).unwrap();
    Pipeline::new(cfg).unwrap().run(source).unwrap()
}

#[test]
fn csv_output_matches_duckdb_read_csv_cell_by_cell() {
    let Some(python) = interop_python("csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    // CRLF with a BOM, comma-delimited; and the same rows LF, `;`-delimited, named .txt.
    let (windows, _) = csv_text(0..n, ',', true);
    let plain = dir.path().join("rows.csv");
    std::fs::write(&plain, &windows).unwrap();
    let (semi, _) = csv_text(0..n, ';', false);
    let semi_path = dir.path().join("rows.txt");
    std::fs::write(&semi_path, &semi).unwrap();
    // And gzip.
    let gz = dir.path().join("rows.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(windows.as_bytes()).unwrap();
    enc.finish().unwrap();

    // And without a header row: columns `column0`, `column1`, ... as DuckDB names them.
    let headless = dir.path().join("headless.csv");
    std::fs::write(&headless, semi.split_once('\n').unwrap().1).unwrap();
    for (input, delim, format, header) in [
        (&plain, ',', "auto", true),
        (&semi_path, ';', "csv", true),
        (&gz, ',', "auto", true),
        (&headless, ';', "auto", false),
    ] {
        let mut cfg = Config::new(dir.path().join(format!(
            "{}.parquet",
            input.file_name().unwrap().to_string_lossy()
        )));
        // Small chunks: rows with quoted line breaks land on chunk edges.
        cfg.fetch.batch_max_bytes = 4096;
        cfg.format = format.into();
        cfg.csv_delimiter = delim.to_string();
        cfg.csv_header = header;
        let summary = run_files(cfg, input);
        assert!(summary.ledger_balances(), "{summary}");
        assert_eq!(summary.records_written, n as u64, "{summary}");
        assert_eq!(summary.fetch.failed, 0, "{summary}");
        assert!(summary.fetch.requests > 10, "chunked: {summary}");
        let schema = summary.schema.clone().unwrap_or_default();
        let names = match header {
            true => ["id", "name", "score", "ok", "at"],
            false => ["column0", "column1", "column2", "column3", "column4"],
        };
        for (name, ty) in names
            .iter()
            .zip(["int64", "string", "float64", "bool", "timestamp"])
        {
            assert!(schema.contains(&format!("{name}:{ty}")), "{schema}");
        }
        let out = summary.output.clone().unwrap();
        assert_same_as_duckdb(python, input, delim, header, &[out]);
    }
}

#[test]
fn a_csv_file_infers_the_same_schema_as_the_same_records_in_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("same.csv");
    std::fs::write(
        &csv,
        "id,x,ok,at,s\n1,1.5,true,2024-01-01T00:00:00Z,a\n2,2,false,2024-01-01T00:00:01Z,b\n",
    )
    .unwrap();
    let ndjson = dir.path().join("same.ndjson");
    std::fs::write(
        &ndjson,
        "{\"id\":1,\"x\":1.5,\"ok\":true,\"at\":\"2024-01-01T00:00:00Z\",\"s\":\"a\"}\n\
         {\"id\":2,\"x\":2,\"ok\":false,\"at\":\"2024-01-01T00:00:01Z\",\"s\":\"b\"}\n",
    )
    .unwrap();
    let schema_of = |input: &Path, out: &str| {
        let mut cfg = Config::new(dir.path().join(out));
        cfg.schema.infer = Some(true);
        let summary = run_files(cfg, input);
        let batches = read_parquet(summary.output.as_ref().unwrap());
        batches[0].schema()
    };
    let (a, b) = (
        schema_of(&csv, "a.parquet"),
        schema_of(&ndjson, "b.parquet"),
    );
    let fields = |s: &arrow_schema::Schema| -> Vec<(String, arrow_schema::DataType)> {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    assert_eq!(fields(&a), fields(&b));
}

#[test]
fn bad_csv_rows_are_dead_letters_with_their_line_and_the_rest_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (text, starts) = csv_text(0..2000, ',', false);
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    // Rows 1500 and 1700 (after the rows inference looks at): a cell that is no int64, and a
    // row one field short. Both start on a line of their own (no quoted break in them).
    let row_line = |i: usize| starts[i] as usize;
    for i in [1500usize, 1700] {
        assert!(!lines[row_line(i) - 1].starts_with('"'));
        assert!(lines[row_line(i) - 1].matches('\n').count() == 1);
    }
    lines[row_line(1500) - 1] = lines[row_line(1500) - 1].replacen("1500,", "x1500,", 1);
    let short = lines[row_line(1700) - 1]
        .rsplit_once(',')
        .unwrap()
        .0
        .to_string()
        + "\n";
    lines[row_line(1700) - 1] = short;
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, lines.concat()).unwrap();
    let mut cfg = Config::new(dir.path().join("bad.parquet"));
    cfg.fetch.batch_max_bytes = 4096;
    let dead_path = cfg.dead_letter_path();
    let summary = run_files(cfg, &input);
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.records_written, 1998, "{summary}");
    assert_eq!(summary.fetch.failed, 2, "{summary}");
    let mut got = ids(summary.output.as_ref().unwrap());
    got.sort_unstable();
    let want: Vec<i64> = (0..2000).filter(|i| *i != 1500 && *i != 1700).collect();
    assert_eq!(got, want);
    let dead = ndjson_lines(&dead_path);
    assert_eq!(dead.len(), 2, "{dead:?}");
    let (l1500, l1700) = (starts[1500], starts[1700]);
    assert!(
        dead[0].contains(&format!("bad.csv:{l1500}"))
            && dead[0].contains(&format!(
                "line {l1500}: `x1500` in column `id` is not an int64"
            )),
        "{}",
        dead[0]
    );
    assert!(
        dead[1].contains(&format!("line {l1700}: 5 fields where the header has 6")),
        "{}",
        dead[1]
    );
}

#[test]
#[cfg(feature = "cli")]
fn a_csv_run_killed_and_resumed_with_the_journal_writes_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = 60_000;
    let (text, _) = csv_text(0..n, ',', true);
    let input = dir.path().join("big.csv");
    std::fs::write(&input, text).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let args = crate::resume::journal_run_args(&input, &out_dir.join("rows.parquet"), 5000);
    let env = [("PINFLOW_FETCH_BATCH_MAX_BYTES", "16384")];
    let all = crate::resume::kill_and_resume(&out_dir, &args, &env, 4, 0xC5F_0001);
    crate::resume::assert_exactly_once(&all, 0..n);
}

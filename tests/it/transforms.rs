//! Transforms in the configuration (`[[transform]]`, `--filter`, `--drop`): the filter against a
//! brute-force evaluation on random records, each action through the command line with a file
//! source, the order of steps, casts that fail as dead letters, the filtered count in the
//! summary and the metrics, and the errors of `config check` and of a run that names a column
//! the rows lack.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use serde_json::{json, Value};

use crate::common::*;
use pinflow::config::TransformConfig;
use pinflow::{Pipeline, Source};

// ---------------------------------------------------------------------------------------------
// The property: the rows the pipeline's filter keeps are those a brute-force evaluation keeps.

/// Seeded random cases (the same on every run), with the picks the cases use.
struct Rng(fastrand::Rng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.u64(..n)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.0.usize(..items.len())]
    }
}

const STRINGS: [&str; 6] = ["ab", "b", "abc", "x", "", "Ab"];
const NUM_FIELDS: [&str; 2] = ["a", "b"];
const STR_FIELDS: [&str; 2] = ["s", "d"];
/// What a pattern matches, decided here without a regex engine.
type Matches = fn(&str) -> bool;
/// Patterns and what they mean.
const PATTERNS: [(&str, Matches); 5] = [
    ("^a", |s| s.starts_with('a')),
    ("b$", |s| s.ends_with('b')),
    ("^$", |s| s.is_empty()),
    ("c", |s| s.contains('c')),
    ("^[aA]b", |s| s.starts_with("ab") || s.starts_with("Ab")),
];

/// A record: `id`, then each other field a value, null or missing.
fn record(rng: &mut Rng, id: i64) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(id));
    let mut maybe = |rng: &mut Rng, name: &str, v: Value| match rng.below(5) {
        0 => {}
        1 => {
            m.insert(name.into(), Value::Null);
        }
        _ => {
            m.insert(name.into(), v);
        }
    };
    let a = json!(rng.below(7) as i64 - 3);
    maybe(rng, "a", a);
    let b = json!((rng.below(13) as f64 - 6.0) / 2.0);
    maybe(rng, "b", b);
    let s = json!(rng.pick(&STRINGS));
    maybe(rng, "s", s);
    let d = json!(rng.pick(&STRINGS));
    maybe(rng, "d", d);
    let t = json!(rng.below(2) == 1);
    maybe(rng, "t", t);
    Value::Object(m)
}

#[derive(Debug, Clone)]
enum Lit {
    Num(f64, bool),
    Str(&'static str),
    Bool(bool),
}

impl Lit {
    fn render(&self) -> String {
        match self {
            Lit::Num(x, true) => format!("{}", *x as i64),
            Lit::Num(x, false) => format!("{x:?}"),
            Lit::Str(s) => format!("'{s}'"),
            Lit::Bool(b) => b.to_string(),
        }
    }
    fn value(&self) -> Value {
        match self {
            Lit::Num(x, _) => json!(x),
            Lit::Str(s) => json!(s),
            Lit::Bool(b) => json!(b),
        }
    }
}

#[derive(Debug, Clone)]
enum Operand {
    Field(&'static str),
    Lit(Lit),
}

#[derive(Debug, Clone)]
enum E {
    Cmp(&'static str, Operand, Operand),
    And(Box<E>, Box<E>),
    Or(Box<E>, Box<E>),
    Not(Box<E>),
    IsNull(&'static str, bool),
    Match(&'static str, usize, bool),
    In(&'static str, Vec<Lit>, bool),
    Flag,
}

const OPS: [&str; 6] = ["==", "!=", "<", "<=", ">", ">="];

fn num_lit(rng: &mut Rng) -> Lit {
    match rng.below(2) {
        0 => Lit::Num(rng.below(7) as f64 - 3.0, true),
        _ => Lit::Num((rng.below(13) as f64 - 6.0) / 2.0, false),
    }
}

fn gen(rng: &mut Rng, depth: u32) -> E {
    let leaf = depth == 0 || rng.below(3) == 0;
    if !leaf {
        return match rng.below(3) {
            0 => E::And(Box::new(gen(rng, depth - 1)), Box::new(gen(rng, depth - 1))),
            1 => E::Or(Box::new(gen(rng, depth - 1)), Box::new(gen(rng, depth - 1))),
            _ => E::Not(Box::new(gen(rng, depth - 1))),
        };
    }
    let op = rng.pick(&OPS);
    match rng.below(9) {
        0 | 1 => {
            let f = rng.pick(&NUM_FIELDS);
            let other = match rng.below(3) {
                0 => Operand::Field(rng.pick(&NUM_FIELDS)),
                _ => Operand::Lit(num_lit(rng)),
            };
            // Literal first sometimes: `3 < a` reads as well as `a > 3`.
            if rng.below(4) == 0 {
                E::Cmp(op, other, Operand::Field(f))
            } else {
                E::Cmp(op, Operand::Field(f), other)
            }
        }
        2 | 3 => {
            let f = rng.pick(&STR_FIELDS);
            let other = match rng.below(3) {
                0 => Operand::Field(rng.pick(&STR_FIELDS)),
                _ => Operand::Lit(Lit::Str(rng.pick(&STRINGS))),
            };
            E::Cmp(op, Operand::Field(f), other)
        }
        4 => E::Cmp(
            rng.pick(&["==", "!="]),
            Operand::Field("t"),
            Operand::Lit(Lit::Bool(rng.below(2) == 1)),
        ),
        5 => E::IsNull(rng.pick(&["a", "b", "s", "d", "t"]), rng.below(2) == 1),
        6 => E::Match(
            rng.pick(&STR_FIELDS),
            rng.below(PATTERNS.len() as u64) as usize,
            rng.below(2) == 1,
        ),
        7 => {
            let n = 1 + rng.below(3);
            if rng.below(2) == 0 {
                let list = (0..n).map(|_| num_lit(rng)).collect();
                E::In(rng.pick(&NUM_FIELDS), list, rng.below(2) == 1)
            } else {
                let list = (0..n).map(|_| Lit::Str(rng.pick(&STRINGS))).collect();
                E::In(rng.pick(&STR_FIELDS), list, rng.below(2) == 1)
            }
        }
        _ => E::Flag,
    }
}

/// Precedence: or 1, and 2, not 3, a predicate 4.
fn prec(e: &E) -> u8 {
    match e {
        E::Or(..) => 1,
        E::And(..) => 2,
        E::Not(_) => 3,
        _ => 4,
    }
}

/// The expression as text: with only the parentheses precedence needs, or (`full`) around
/// everything.
fn render(e: &E, need: u8, full: bool) -> String {
    let operand = |o: &Operand| match o {
        Operand::Field(f) => f.to_string(),
        Operand::Lit(l) => l.render(),
    };
    let s = match e {
        E::Cmp(op, a, b) => format!("{} {op} {}", operand(a), operand(b)),
        E::And(a, b) => format!("{} and {}", render(a, 2, full), render(b, 3, full)),
        E::Or(a, b) => format!("{} or {}", render(a, 1, full), render(b, 2, full)),
        E::Not(a) => format!("not {}", render(a, 3, full)),
        E::IsNull(f, neg) => format!("{f} is {}null", if *neg { "not " } else { "" }),
        E::Match(f, p, neg) => {
            format!(
                "{f} {} \"{}\"",
                if *neg { "!~" } else { "=~" },
                PATTERNS[*p].0
            )
        }
        E::In(f, list, neg) => {
            let items: Vec<String> = list.iter().map(Lit::render).collect();
            format!(
                "{f} {}in [{}]",
                if *neg { "not " } else { "" },
                items.join(", ")
            )
        }
        E::Flag => "t".to_string(),
    };
    if full || prec(e) < need {
        format!("({s})")
    } else {
        s
    }
}

/// SQL's three-valued evaluation of `e` on one record: `None` is unknown.
fn brute(e: &E, r: &Value) -> Option<bool> {
    let get = |o: &Operand| -> Option<Value> {
        match o {
            Operand::Field(f) => r.get(*f).filter(|v| !v.is_null()).cloned(),
            Operand::Lit(l) => Some(l.value()),
        }
    };
    let order = |a: &Value, b: &Value| -> Option<std::cmp::Ordering> {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
            (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
            (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
            _ => None,
        }
    };
    match e {
        E::Cmp(op, a, b) => {
            let ord = order(&get(a)?, &get(b)?)?;
            Some(match *op {
                "==" => ord.is_eq(),
                "!=" => ord.is_ne(),
                "<" => ord.is_lt(),
                "<=" => ord.is_le(),
                ">" => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        E::And(a, b) => match (brute(a, r), brute(b, r)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        E::Or(a, b) => match (brute(a, r), brute(b, r)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        E::Not(a) => brute(a, r).map(|b| !b),
        E::IsNull(f, neg) => Some(r.get(*f).is_none_or(Value::is_null) != *neg),
        E::Match(f, p, neg) => {
            let s = r.get(*f)?.as_str()?;
            Some((PATTERNS[*p].1)(s) != *neg)
        }
        E::In(f, list, neg) => {
            let v = get(&Operand::Field(f))?;
            let found = list
                .iter()
                .any(|l| order(&v, &l.value()).is_some_and(|o| o.is_eq()));
            Some(found != *neg)
        }
        E::Flag => r.get("t")?.as_bool(),
    }
}

/// The ids a pipeline with `filter` keeps out of `records`, and its summary's filtered count.
fn pipeline_keeps(filter: &str, records: &[Value]) -> (Vec<i64>, u64) {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&kept);
    let pipeline = Pipeline::builder()
        .configure(|c| {
            c.threads.parse = Some(1);
            c.threads.compute = Some(0);
            c.schema.fields = [
                "id:int64",
                "a:int64",
                "b:float64",
                "s:string",
                "d:dict",
                "t:bool",
            ]
            .map(String::from)
            .to_vec();
            c.transform = vec![TransformConfig {
                filter: Some(filter.to_string()),
                ..TransformConfig::default()
            }];
        })
        .parquet(false)
        .on_batch(move |rows: &RecordBatch| {
            let ids = rows
                .column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>();
            sink.lock().unwrap().extend(ids.values().iter().copied());
        })
        .build()
        .unwrap_or_else(|e| panic!("{filter}: {e}"));
    let (source, push) = Source::push(4);
    let run = pipeline.spawn(source).unwrap();
    let body: String = records.iter().map(|r| format!("{r}\n")).collect();
    push.push(body).unwrap();
    drop(push);
    let summary = run.join().unwrap_or_else(|e| panic!("{filter}: {e}"));
    assert!(summary.ledger_balances(), "{filter}: {summary:?}");
    let mut ids = kept.lock().unwrap().clone();
    ids.sort_unstable();
    (ids, summary.records_filtered)
}

#[test]
fn the_filter_keeps_exactly_the_rows_a_brute_force_evaluation_keeps() {
    let mut rng = Rng(fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15));
    let records: Vec<Value> = (0..80).map(|id| record(&mut rng, id)).collect();
    let mut nontrivial = 0;
    for case in 0..300 {
        let e = gen(&mut rng, 3);
        let text = render(&e, 0, case % 4 == 0);
        let want: Vec<i64> = records
            .iter()
            .filter(|r| brute(&e, r) == Some(true))
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        let (got, filtered) = pipeline_keeps(&text, &records);
        assert_eq!(got, want, "case {case}: {text}\n{e:?}");
        assert_eq!(filtered, (records.len() - want.len()) as u64, "{text}");
        if !want.is_empty() && want.len() < records.len() {
            nontrivial += 1;
        }
    }
    // The cases are not all "keep everything" or "keep nothing".
    assert!(
        nontrivial > 100,
        "only {nontrivial} cases kept some rows and not others"
    );
}

// ---------------------------------------------------------------------------------------------
// Through the command line.

const LOGS: &str = r#"{"id":1,"level":"INFO","latency_ms":"3.5","host":"a"}
{"id":2,"level":"DEBUG","latency_ms":"9","host":"b"}
{"id":3,"level":"WARN","latency_ms":"x","host":"c"}
{"id":4,"latency_ms":"12","host":"d"}
{"id":5,"level":"ERROR","latency_ms":"40","host":"e"}
"#;

const FIELDS: &str =
    "[schema]\nfields = [\"id:int64\", \"level:string\", \"latency_ms:string\", \"host:string\"]\n";

/// Runs `pinflow run --files in.ndjson` in `dir` with the configuration `toml` and `args`.
fn run(dir: &Path, toml: &str, args: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("in.ndjson"), LOGS).unwrap();
    std::fs::write(dir.join("p.toml"), toml).unwrap();
    pinflow_piped()
        .current_dir(dir)
        .args([
            "run",
            "--config",
            "p.toml",
            "--files",
            "in.ndjson",
            "--out",
            "o.parquet",
        ])
        .args(["--max-dead-letters", "100%", "--parse-threads", "1"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn column_names(b: &RecordBatch) -> Vec<String> {
    b.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(col).unwrap_or_else(|| panic!("no {col}"));
    let a = a.as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

fn one_batch(path: &Path) -> RecordBatch {
    let batches = read_parquet(path);
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

#[test]
fn each_action_reshapes_the_rows_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{FIELDS}\
         [[transform]]\n\
         cast = {{ latency_ms = \"float64\" }}\n\
         [[transform]]\n\
         filter = 'level is null or level != \"DEBUG\"'\n\
         [[transform]]\n\
         set = {{ env = \"prod\", n = 7, host2 = {{ field = \"host\" }}, file = {{ meta = \"source_file\" }} }}\n\
         [[transform]]\n\
         rename = {{ host = \"h\" }}\n\
         [[transform]]\n\
         drop = [\"level\"]\n\
         [[transform]]\n\
         filter = 'h != \"e\"'\n"
    );
    let out = run(dir.path(), &toml, &[]);
    let text = ok(&out);
    let b = one_batch(&dir.path().join("o.parquet"));
    assert_eq!(
        column_names(&b),
        ["id", "latency_ms", "h", "env", "file", "host2", "n"],
        "{text}"
    );
    // 2 filtered (DEBUG, then host e), 3 a dead letter (latency "x"): 1 and 4 are left.
    let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    assert_eq!(ids.values().to_vec(), [1, 4]);
    let lat = b
        .column_by_name("latency_ms")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(lat.values().to_vec(), [3.5, 12.0]);
    assert_eq!(strings(&b, "h"), [Some("a".into()), Some("d".into())]);
    assert_eq!(strings(&b, "host2"), strings(&b, "h"));
    assert_eq!(
        strings(&b, "env"),
        [Some("prod".into()), Some("prod".into())]
    );
    // The metadata column names the file, without the line range of `_source`, and the
    // lineage column it was read from is not written (it was not asked for).
    assert_eq!(
        strings(&b, "file"),
        [Some("in.ndjson".into()), Some("in.ndjson".into())]
    );
    assert!(text.contains("filtered 2 by transforms"), "{text}");
    assert!(text.contains("dead-lettered 1"), "{text}");
}

#[test]
fn a_value_that_does_not_cast_is_a_dead_letter_naming_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{FIELDS}\n[[transform]]\ncast = {{ latency_ms = \"float64\" }}\n");
    let text = ok(&run(dir.path(), &toml, &[]));
    assert_eq!(ids(&dir.path().join("o.parquet")), [1, 2, 4, 5], "{text}");
    let dead = ndjson_lines(&dir.path().join("o.parquet.deadletter.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(
        d["reason"],
        "cast at p.toml:5: `latency_ms`: \"x\" is not float64 (a finite number)"
    );
    assert_eq!(d["kind"], "record");
    let row: Value = serde_json::from_str(d["excerpt"].as_str().unwrap()).unwrap();
    assert_eq!(
        (row["id"].as_i64(), row["latency_ms"].as_str()),
        (Some(3), Some("x"))
    );
    assert!(text.contains("1 × cast failed"), "{text}");
    // Without a tolerance for dead letters, the run says so in its exit status.
    std::fs::remove_file(dir.path().join("o.parquet")).unwrap();
    let strict = pinflow_piped()
        .current_dir(dir.path())
        .args([
            "run",
            "--config",
            "p.toml",
            "--files",
            "in.ndjson",
            "--out",
            "o.parquet",
        ])
        .output()
        .unwrap();
    assert_eq!(
        strict.status.code(),
        Some(4),
        "exit 4: more dead letters than allowed"
    );
}

#[test]
fn filter_drop_and_rename_flags_apply_after_the_file_steps() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{FIELDS}\n[[transform]]\nrename = {{ level = \"lvl\" }}\n");
    let out = run(
        dir.path(),
        &toml,
        &[
            "--filter",
            "lvl in ['INFO', 'ERROR']",
            "--filter",
            "id > 1",
            "--drop",
            "host,latency_ms",
            "--rename",
            "lvl=severity",
        ],
    );
    let text = ok(&out);
    let b = one_batch(&dir.path().join("o.parquet"));
    assert_eq!(column_names(&b), ["id", "severity"], "{text}");
    assert_eq!(strings(&b, "severity"), [Some("ERROR".into())]);
    assert!(text.contains("filtered 4 by transforms"), "{text}");
}

#[test]
fn a_step_naming_a_missing_column_fails_at_start_with_a_fixed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{FIELDS}\n[[transform]]\nrename = {{ level = \"lvl\" }}\n[[transform]]\nfilter = 'id > 1 and level == \"x\"'\n"
    );
    let out = run(dir.path(), &toml, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("filter at p.toml:7: line 7, column 22: no column `level`"),
        "{err}"
    );
    // Before anything was written.
    assert!(!dir.path().join("o.parquet").exists());
}

#[test]
fn a_step_naming_a_missing_column_fails_at_the_first_batch_with_an_inferred_schema() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[schema]\ninfer = true\n[[transform]]\ndrop = [\"nope\"]\n";
    let out = run(dir.path(), toml, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("drop at p.toml:4: no column `nope`"), "{err}");
}

#[test]
fn source_url_is_not_available_for_a_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{FIELDS}\n[[transform]]\nset = {{ u = {{ meta = \"source_url\" }} }}\n");
    let out = run(dir.path(), &toml, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`source_url` is not available for this source"),
        "{err}"
    );
}

#[test]
fn config_check_prints_the_line_and_column_of_a_bad_expression() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "out = \"x.parquet\"\n\n[[transform]]\nfilter = 'level == \"a\" and (latency_ms > 5'\n",
    )
    .unwrap();
    let out = pinflow_piped()
        .current_dir(dir.path())
        .args(["config", "check", "p.toml"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("p.toml:4: transform[0].filter: column 43: expected `)` to close the `(`"),
        "{text}"
    );
    // A bad --filter on the command line is refused too, naming the flag.
    let out = pinflow_piped()
        .current_dir(dir.path())
        .args([
            "run",
            "--files",
            "in.ndjson",
            "--out",
            "o.parquet",
            "--filter",
            "a = 1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("column 3: `=` is not an operator"), "{err}");
}

#[test]
fn filtered_rows_are_counted_in_the_summary_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ndjson"), LOGS).unwrap();
    let input = dir.path().join("in.ndjson").display().to_string();
    let pipeline = Pipeline::builder()
        .out(dir.path().join("o.parquet"))
        .configure(|c| {
            c.threads.parse = Some(1);
            c.schema.fields = ["id:int64", "level:string"].map(String::from).to_vec();
            c.filter = vec!["level == 'INFO' or level == 'WARN'".into()];
        })
        .build()
        .unwrap();
    let summary = pipeline.run(Source::files(&[input]).unwrap()).unwrap();
    assert_eq!((summary.records_written, summary.records_filtered), (2, 3));
    assert!(summary.ledger_balances());
    let metrics = pinflow::metrics::prometheus::render(&pipeline.metrics());
    assert!(
        metrics
            .lines()
            .any(|l| l == "pinflow_records_filtered_total 3"),
        "{metrics}"
    );
}

#[test]
fn metadata_columns_name_the_url_and_the_fetch_time_of_each_row() {
    let (base, _) = http_server(|path, _| {
        let n: i64 = path
            .trim_start_matches("/logs/")
            .trim_end_matches(".json")
            .parse()
            .unwrap_or(0);
        let body = format!("{{\"id\":{n},\"host\":\"h{n}\"}}\n");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[schema]\nfields = [\"id:int64\", \"host:string\"]\n\
         [[transform]]\nset = { origin = { meta = \"source_url\" }, at = { meta = \"fetched_at\" } }\n",
    )
    .unwrap();
    let out = pinflow_piped()
        .current_dir(dir.path())
        .args(["run", "--config", "p.toml", "--out", "o.parquet"])
        .args(["--urls", &format!("{base}/logs/{{1..3}}.json")])
        .output()
        .unwrap();
    ok(&out);
    let b = one_batch(&dir.path().join("o.parquet"));
    // The lineage columns the metadata came from were not asked for: not written.
    assert_eq!(column_names(&b), ["id", "host", "at", "origin"]);
    let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    let origins = strings(&b, "origin");
    for (i, origin) in origins.iter().enumerate() {
        assert_eq!(
            origin.as_deref(),
            Some(format!("{base}/logs/{}.json", ids.value(i)).as_str())
        );
    }
    let at = b.column_by_name("at").unwrap();
    assert!(
        matches!(at.data_type(), arrow_schema::DataType::Timestamp(_, Some(tz)) if &**tz == "UTC")
    );
    assert_eq!(at.null_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// `pinflow inspect`.

#[test]
fn inspect_shows_the_envelope_a_schema_to_paste_and_the_first_rows_after_the_transforms() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (1..=30)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"level\":\"{}\",\"http\":{{\"status\":{}}},\"ts\":\"2024-05-01T00:00:{:02}Z\"}}\n",
                if i % 2 == 0 { "DEBUG" } else { "INFO" },
                200 + i,
                i
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.ndjson"), lines).unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[[transform]]\nfilter = 'level != \"DEBUG\"'\n[[transform]]\ndrop = [\"ts\"]\n",
    )
    .unwrap();
    let out = pinflow_piped()
        .current_dir(dir.path())
        .args([
            "inspect",
            "--config",
            "p.toml",
            "--files",
            "in.ndjson",
            "-n",
            "3",
        ])
        .output()
        .unwrap();
    let text = ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("envelope   NDJSON: one JSON object per line"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "30 records parsed; the first 3 after the transforms (15 filtered, 0 dead letters)"
        ),
        "{stdout}"
    );
    // The rows: a header, then ids 1, 3, 5 (the DEBUG ones filtered, `ts` dropped).
    let table: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("id "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        table,
        [
            vec!["id", "level", "http_status"],
            vec!["1", "INFO", "201"],
            vec!["3", "INFO", "203"],
            vec!["5", "INFO", "205"],
        ],
        "{text}"
    );
    // The schema block is TOML a configuration takes as it is, and a run with it writes the
    // types inspect showed.
    let block: String = stdout
        .lines()
        .skip_while(|l| *l != "[schema]")
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(block.contains("\"http.status:int64\","), "{block}");
    assert!(block.contains("\"ts:timestamp\","), "{block}");
    std::fs::write(dir.path().join("fixed.toml"), &block).unwrap();
    let check = pinflow_piped()
        .current_dir(dir.path())
        .args(["config", "check", "fixed.toml"])
        .output()
        .unwrap();
    ok(&check);
    // With --json, the rows alone, one object per line.
    let json = pinflow_piped()
        .current_dir(dir.path())
        .args([
            "inspect",
            "--config",
            "p.toml",
            "--files",
            "in.ndjson",
            "-n",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    let rows: Vec<Value> = String::from_utf8_lossy(&ok_out(&json))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            json!({"id":1,"level":"INFO","http_status":201}),
            json!({"id":3,"level":"INFO","http_status":203})
        ]
    );
    // Nothing was written.
    assert!(!dir.path().join("pinflow.parquet").exists());
}

fn ok_out(out: &std::process::Output) -> Vec<u8> {
    ok(out);
    out.stdout.clone()
}

#[test]
fn inspect_fetches_the_first_pages_of_an_http_source() {
    let (base, heads) = http_server(|path, _| {
        let page: i64 = path
            .trim_start_matches("/p/")
            .trim_end_matches(".json")
            .parse()
            .unwrap_or(0);
        let records: Vec<String> = (0..5)
            .map(|k| format!("{{\"id\":{},\"page\":{page}}}", page * 10 + k))
            .collect();
        let body = format!("{{\"data\":[{}],\"next\":null}}", records.join(","));
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let out = pinflow_piped()
        .args(["inspect", "--urls", &format!("{base}/p/{{1..2}}.json")])
        .args(["--records-field", "data", "-n", "7"])
        .output()
        .unwrap();
    let text = ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("envelope   a JSON object with the records in `data`"),
        "{text}"
    );
    assert!(stdout.contains("\"page:int64\","), "{text}");
    let rows = stdout.lines().skip_while(|l| !l.starts_with("id ")).count();
    assert_eq!(rows, 1 + 7, "{text}");
    assert_eq!(heads.lock().unwrap().len(), 2);
}

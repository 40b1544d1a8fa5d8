//! Helpers shared by the integration tests: reading Parquet back and comparing rows with what
//! the simulator generated.

#![allow(dead_code)]

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
#[cfg(feature = "sim")]
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
#[cfg(feature = "sim")]
use pinflow::sim::Record;

#[cfg(all(feature = "kafka", feature = "cli"))]
pub mod kafka;

/// A loopback port nothing listened on a moment ago (the kernel's pick), for a server a test
/// starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every batch of a Parquet file, read with the parquet crate's own reader.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("valid parquet footer")
        .build()
        .expect("reader");
    reader.map(|b| b.expect("readable batch")).collect()
}

/// A row as read back: the record fields and the statistics.
#[cfg(feature = "sim")]
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub record: Record,
    pub count: Option<i64>,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub variance: Option<f64>,
}

fn f64_at(b: &RecordBatch, col: &str, i: usize) -> Option<f64> {
    let a = b.column_by_name(col).unwrap().as_primitive::<Float64Type>();
    a.is_valid(i).then(|| a.value(i))
}

fn str_at(b: &RecordBatch, col: &str, i: usize) -> String {
    b.column_by_name(col)
        .unwrap()
        .as_string::<i32>()
        .value(i)
        .to_string()
}

/// All rows of a file (records with every field present).
#[cfg(feature = "sim")]
pub fn rows(path: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    for b in read_parquet(path) {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let values = b.column_by_name("values").unwrap().as_list::<i32>();
        let counts = b
            .column_by_name("values_count")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let level: &'static str = match str_at(&b, "level", i).as_str() {
                "DEBUG" => "DEBUG",
                "INFO" => "INFO",
                "WARN" => "WARN",
                "ERROR" => "ERROR",
                other => panic!("unexpected level {other}"),
            };
            out.push(Row {
                record: Record {
                    id: ids.value(i),
                    ts_micros: ts.value(i),
                    service: str_at(&b, "service", i),
                    level,
                    host: str_at(&b, "host", i),
                    latency_ms: f64_at(&b, "latency_ms", i).unwrap(),
                    message: str_at(&b, "message", i),
                    values: values
                        .value(i)
                        .as_primitive::<Float64Type>()
                        .values()
                        .to_vec(),
                },
                count: counts.is_valid(i).then(|| counts.value(i)),
                mean: f64_at(&b, "values_mean", i),
                min: f64_at(&b, "values_min", i),
                max: f64_at(&b, "values_max", i),
                variance: f64_at(&b, "values_variance", i),
            });
        }
    }
    out
}

/// Relative closeness for statistics.
pub fn close(a: Option<f64>, b: Option<f64>, rel: f64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b || (a - b).abs() <= rel * a.abs().max(b.abs()),
        _ => false,
    }
}

/// Checks that `rows` hold exactly the ids `expected`, each once, with every field equal to
/// the simulator's record and statistics equal to the scalar reference within 1e-12 relative.
#[cfg(feature = "sim")]
pub fn assert_rows_match_workload(
    rows: &[Row],
    workload: &pinflow::sim::Workload,
    expected: impl IntoIterator<Item = u64>,
) {
    let mut ids: Vec<i64> = rows.iter().map(|r| r.record.id).collect();
    ids.sort_unstable();
    let want: Vec<i64> = expected.into_iter().map(|i| i as i64).collect();
    assert_eq!(ids.len(), want.len(), "row count");
    assert_eq!(ids, want, "every id exactly once");
    for row in rows {
        let rec = workload.record(row.record.id as u64);
        assert_eq!(row.record, rec, "fields of record {}", rec.id);
        let r = pinflow::stats::reference(&rec.values);
        assert_eq!(row.count, Some(r.count as i64));
        for (name, got, want) in [
            ("mean", row.mean, r.mean),
            ("min", row.min, r.min),
            ("max", row.max, r.max),
            ("variance", row.variance, r.variance),
        ] {
            assert!(
                close(got, want, 1e-12),
                "{name} of record {}: {got:?} vs {want:?}",
                rec.id
            );
        }
    }
}

/// Lines of an NDJSON file.
pub fn ndjson_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Names of the files in a directory.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A keep-alive HTTP/1.1 server on loopback whose answers come from `respond(path, head)`,
/// which returns the complete response bytes. Returns its base URL and every request head.
pub fn http_server(
    respond: impl Fn(&str, &str) -> Vec<u8> + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (log, respond) = (Arc::clone(&heads), Arc::new(respond));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let (log, respond) = (Arc::clone(&log), Arc::clone(&respond));
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        log.lock().unwrap().push(head.clone());
                        if s.write_all(&respond(&path, &head)).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (base, heads)
}

/// The `id` column of every row of a file (rows may lack other fields).
pub fn ids(path: &Path) -> Vec<i64> {
    read_parquet(path)
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

/// Every row's id across the final Parquet files under `dir`, sorted (each file is read
/// whole: the reader panics on a partial or corrupt one).
pub fn all_final_ids(dir: &Path) -> Vec<i64> {
    let mut all: Vec<i64> = final_parquet_files(dir)
        .iter()
        .flat_map(|f| ids(f))
        .collect();
    all.sort_unstable();
    all
}

/// The final Parquet files under `dir`, in its subdirectories too (not the hidden temporary
/// ones), sorted.
pub fn final_parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(final_parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet")
            && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// How long a process told to stop may take to exit in the tests that stop one: far more than
/// the 2 s `fetch.shutdown_timeout` they set.
pub const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits up to [`STOP_DEADLINE`] for `cond`, failing the test (and killing `child`) past it or
/// if `child` ends first.
pub fn wait_for_child(child: &mut std::process::Child, what: &str, cond: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("pinflow ended ({status}) before {what}");
        }
        if started.elapsed() > STOP_DEADLINE {
            let _ = child.kill();
            panic!("{what}: not within {STOP_DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends SIGTERM and waits for the process to exit, failing the test if it takes more than
/// [`STOP_DEADLINE`].
pub fn sigterm_and_wait(mut child: std::process::Child) -> std::process::Output {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > STOP_DEADLINE {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "still running {STOP_DEADLINE:?} after SIGTERM\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The `pinflow` command with no `PINFLOW_*` variable of the test's environment, its standard
/// output and error captured.
#[cfg(feature = "cli")]
pub fn pinflow_piped() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pinflow"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PINFLOW_") {
            c.env_remove(k);
        }
    }
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// Whether to skip a test whose environment is missing (a network namespace, a mount): true
/// (and the reason printed) when `allowed` is false, unless the environment variable `require`
/// is 1, as the CI sets it where the environment is there: then the test fails instead.
pub fn skip_unless(allowed: bool, require: &str, what: &str) -> bool {
    if allowed {
        return false;
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{what} is not permitted here, and {require}=1 requires it"
    );
    eprintln!("skipped: {what} is not permitted here (set {require}=1 to make that a failure)");
    true
}

/// Waits up to [`STOP_DEADLINE`] for `cond` (checked every millisecond), failing the test past
/// it: for tests that wait for an event (a counter, a thread's state) instead of sleeping.
pub fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < STOP_DEADLINE,
            "{what}: not within {STOP_DEADLINE:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether a run's writer thread waits for input: one of the short path's conditions
/// (`IngestChannels::short_path_open` in src/handoff.rs).
pub fn writer_waiting(metrics: &pinflow::metrics::live::Registry) -> bool {
    let writer = metrics
        .thread_index(pinflow::plan::Role::Writer)
        .expect("a writer thread");
    metrics.waiting(&[writer]) == 1
}

/// The interop check's Python with pyarrow and DuckDB (target/interop-venv, or `INTEROP_VENV`),
/// created the way tools/interop-check.sh creates it when missing, once per test process: tests
/// running in parallel must not each `venv --clear` the same directory. `None` (after saying
/// why) when it cannot be had; a failure instead when `CI_REQUIRE_PYARROW=1`, as .ci/run sets.
pub fn interop_python(test: &str) -> Option<&'static Path> {
    static PY: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let py = PY.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = std::env::var_os("INTEROP_VENV")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target/interop-venv"));
        let py = venv.join("bin/python");
        let works = |py: &Path| {
            std::process::Command::new(py)
                .args(["-c", "import pyarrow, duckdb"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if works(&py) {
            return Some(py);
        }
        let req = root.join("tools/interop/requirements.txt");
        eprintln!(
            "creating {} with {} (as tools/interop-check.sh does)",
            venv.display(),
            req.display()
        );
        // The requirements' hash is what tools/interop-check.sh compares to reuse the venv.
        let script = r#"set -e
python3 -m venv --clear "$1"
"$1/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$2"
sha256sum "$2" | cut -d' ' -f1 >"$1/.interop-requirements.sha256""#;
        let made = std::process::Command::new("bash")
            .args(["-c", script, "venv"])
            .arg(&venv)
            .arg(&req)
            .output();
        match made {
            Ok(o) if o.status.success() && works(&py) => Some(py),
            Ok(o) => {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                None
            }
            Err(e) => {
                eprintln!("cannot run bash: {e}");
                None
            }
        }
    });
    if py.is_none() {
        assert!(
            std::env::var_os("CI_REQUIRE_PYARROW").is_none_or(|v| v != "1"),
            "{test}: CI_REQUIRE_PYARROW=1 but no Python with pyarrow and DuckDB could be had \
             (python3 with venv and pip, and PyPI for the first run)"
        );
        eprintln!(
            "{test}: SKIPPED: no Python with pyarrow and DuckDB (python3 with venv and pip, and \
             PyPI for the first run); set CI_REQUIRE_PYARROW=1 to fail instead"
        );
    }
    py.as_deref()
}

/// A child process killed when the test ends early (a failed assertion), so none outlives it.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A metric's value in pinflow's `/metrics` on `port` (`None` while it cannot be read).
pub fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

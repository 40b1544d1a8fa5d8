//! The tail source (`--tail`, `Source::tail`): lines as they are appended, across rotation by
//! rename and truncation, partial and oversized lines, and exactly once across kill -9 and a
//! restart from the journal.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use pinflow::{Config, Pipeline, Source};

use crate::common::{all_final_ids, wait_until};

/// A configuration writing into `dir`, looking at the files often and letting go of rotated
/// ones soon (the waits below are for the tail's counters, never for time).
fn config(dir: &Path) -> Config {
    let mut cfg = Config::new(dir.join("out.parquet"));
    cfg.tail_poll_interval = Duration::from_millis(20);
    cfg.tail_rotate_wait = Duration::from_millis(100);
    cfg
}

fn lines(ids: std::ops::Range<i64>) -> String {
    ids.map(|i| format!("{{\"id\":{i},\"msg\":\"line {i}\"}}\n"))
        .collect()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Every id once, in order: what a tail must have written.
fn assert_exactly_once(ids: &[i64], want: std::ops::Range<i64>) {
    let expected: Vec<i64> = want.collect();
    if ids != expected {
        let mut seen = std::collections::HashMap::new();
        for id in ids {
            *seen.entry(*id).or_insert(0) += 1;
        }
        let twice: Vec<_> = seen
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(k, _)| k)
            .take(10)
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|i| !seen.contains_key(i))
            .take(10)
            .collect();
        panic!(
            "{} rows for {} ids: twice {twice:?}, missing {missing:?}",
            ids.len(),
            expected.len()
        );
    }
}

#[test]
fn appended_lines_are_written_and_a_partial_last_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines(0..100));
    append(&log, "{\"id\":100,\"msg\":");
    let run = Pipeline::new(config(dir.path()))
        .unwrap()
        .spawn(Source::tail(&log.display().to_string()).unwrap())
        .unwrap();
    let m = run.metrics();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    wait_until("the first lines read", || {
        m.tail.bytes_read.load(Relaxed) == size(&log)
    });
    // The rest of the partial line, more lines, and a partial line left at the stop.
    append(&log, "\"line 100\"}\n");
    append(&log, &lines(101..150));
    append(&log, "{\"id\":150");
    wait_until("the appended lines read", || {
        m.tail.bytes_read.load(Relaxed) == size(&log)
    });
    assert_eq!(m.tail.files.load(Relaxed), 1);
    let summary = run.shutdown().unwrap();
    assert_exactly_once(&all_final_ids(dir.path()), 0..150);
    assert_eq!(summary.records_dead_lettered, 0);
}

#[test]
fn a_truncated_file_is_read_again_from_its_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines(0..200));
    let run = Pipeline::new(config(dir.path()))
        .unwrap()
        .spawn(Source::tail(&log.display().to_string()).unwrap())
        .unwrap();
    let m = run.metrics();
    let first = std::fs::metadata(&log).unwrap().len();
    wait_until("the first lines read", || {
        m.tail.bytes_read.load(Relaxed) == first
    });
    // copytruncate: emptied in place, then written again (shorter than before).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &lines(200..250));
    let second = std::fs::metadata(&log).unwrap().len();
    assert!(second < first);
    wait_until("the truncation seen and the new lines read", || {
        m.tail.truncations.load(Relaxed) == 1 && m.tail.bytes_read.load(Relaxed) == first + second
    });
    run.shutdown().unwrap();
    assert_exactly_once(&all_final_ids(dir.path()), 0..250);
}

#[test]
fn a_file_renamed_away_is_read_to_its_end_then_the_new_one_from_its_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &lines(0..100));
    let run = Pipeline::new(config(dir.path()))
        .unwrap()
        .spawn(Source::tail(&log.display().to_string()).unwrap())
        .unwrap();
    let m = run.metrics();
    wait_until("the first lines read", || {
        m.tail.bytes_read.load(Relaxed) > 0
    });
    // The writer keeps its descriptor across the rename for a moment: those lines too.
    let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    old.write_all(lines(100..120).as_bytes()).unwrap();
    drop(old);
    append(&log, &lines(120..200));
    let total = std::fs::metadata(dir.path().join("app.log.1"))
        .unwrap()
        .len()
        + std::fs::metadata(&log).unwrap().len();
    wait_until("both files read and the old one let go of", || {
        m.tail.bytes_read.load(Relaxed) == total
            && m.tail.rotations.load(Relaxed) == 1
            && m.tail.files.load(Relaxed) == 1
    });
    run.shutdown().unwrap();
    assert_exactly_once(&all_final_ids(dir.path()), 0..200);
}

#[test]
fn a_line_longer_than_max_body_bytes_is_a_dead_letter_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut cfg = config(dir.path());
    cfg.fetch.max_body_bytes = 1000;
    cfg.fetch.batch_max_bytes = 256;
    let head = lines(0..10);
    append(&log, &head);
    append(
        &log,
        &format!("{{\"id\":-1,\"msg\":\"{}\"}}\n", "x".repeat(5000)),
    );
    append(&log, &lines(10..20));
    let run = Pipeline::new(cfg)
        .unwrap()
        .spawn(Source::tail(&log.display().to_string()).unwrap())
        .unwrap();
    let m = run.metrics();
    let size = std::fs::metadata(&log).unwrap().len();
    wait_until("the file read", || m.tail.bytes_read.load(Relaxed) == size);
    let summary = run.shutdown().unwrap();
    assert_exactly_once(&all_final_ids(dir.path()), 0..20);
    assert_eq!(summary.fetch.failed, 1);
    let dead = std::fs::read_to_string(dir.path().join("out.parquet.deadletter.ndjson")).unwrap();
    let want = format!(
        "the line at byte {} is longer than fetch.max_body_bytes",
        head.len()
    );
    assert!(dead.contains(&want) && dead.contains("app.log"), "{dead}");
}

#[test]
fn a_pattern_that_matches_nothing_yet_waits_for_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("logs/*.log").display().to_string();
    let run = Pipeline::new(config(dir.path()))
        .unwrap()
        .spawn(Source::tail(&pattern).unwrap())
        .unwrap();
    let m = run.metrics();
    // The directory itself appears later (nothing to watch at first: polled).
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    append(&dir.path().join("logs/a.log"), &lines(0..30));
    append(&dir.path().join("logs/b.log"), &lines(30..60));
    append(&dir.path().join("logs/c.txt"), &lines(60..90));
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len();
    let want = size("logs/a.log") + size("logs/b.log");
    wait_until("both matches followed and read", || {
        m.tail.files.load(Relaxed) == 2 && m.tail.bytes_read.load(Relaxed) == want
    });
    run.shutdown().unwrap();
    assert_exactly_once(&all_final_ids(dir.path()), 0..60);
}

#[test]
fn a_restart_goes_on_where_the_committed_lines_end_and_finds_a_file_rotated_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut cfg = config(dir.path());
    cfg.writer.journal = true;
    append(&log, &lines(0..100));
    let pattern = log.display().to_string();
    let run = Pipeline::new(cfg.clone())
        .unwrap()
        .spawn(Source::tail(&pattern).unwrap())
        .unwrap();
    let m = run.metrics();
    let first = std::fs::metadata(&log).unwrap().len();
    wait_until("the first lines read", || {
        m.tail.bytes_read.load(Relaxed) == first
    });
    run.shutdown().unwrap();
    // While pinflow is down: lines appended, the file rotated out of the pattern, a new one.
    append(&log, &lines(100..150));
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&log, &lines(150..200));
    let run = Pipeline::new(cfg)
        .unwrap()
        .spawn(Source::tail(&pattern).unwrap())
        .unwrap();
    let m = run.metrics();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let want = size(&rotated) - first + size(&log);
    wait_until(
        "only the new lines read, the rotated file let go of",
        || m.tail.bytes_read.load(Relaxed) == want && m.tail.files.load(Relaxed) == 1,
    );
    run.shutdown().unwrap();
    assert_exactly_once(&all_final_ids(dir.path()), 0..200);
}

#[test]
fn an_output_the_tail_pattern_would_read_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("*").display().to_string();
    let e = Pipeline::new(config(dir.path()))
        .unwrap()
        .run(Source::tail(&pattern).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("would be read as an input (--tail"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[cfg(feature = "cli")]
mod cli {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Duration;

    use super::{append, assert_exactly_once, lines};
    use crate::common::{all_final_ids, final_parquet_files, sigterm_and_wait, wait_for_child};

    /// How many lines the writer appends, and how many go to a file before it is rotated.
    const TOTAL: i64 = 24_000;
    const PER_FILE: i64 = 3_000;

    fn start(pattern: &str, out: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_pinflow"))
            .args(["run", "--tail", pattern])
            .arg("--out")
            .arg(out)
            .args(["--journal", "--rotate-rows", "1500", "--progress", "never"])
            .args([
                "--tail-poll-interval",
                "20ms",
                "--tail-rotate-wait",
                "200ms",
            ])
            // Small chunks: many work items, many checkpoints between the kills.
            .env("PINFLOW_FETCH_BATCH_MAX_BYTES", "8192")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Appends `TOTAL` lines to `log` at a rate, renaming it to `app.log.N` every `PER_FILE`
    /// lines, and writing every hundred lines in two pieces, split inside a line (a partial
    /// last line for a moment). `written` is how far it got.
    fn writer(log: PathBuf, written: Arc<AtomicI64>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut rotation = 0;
            let mut id = 0;
            while id < TOTAL {
                let end = (id + 100).min(TOTAL);
                let text = lines(id..end);
                // Split inside a line: the tail may see the first part alone.
                let (a, b) = text.split_at(text.len() / 2 + 3);
                append(&log, a);
                std::thread::sleep(Duration::from_millis(1));
                append(&log, b);
                id = end;
                written.store(id, SeqCst);
                if id % PER_FILE == 0 && id < TOTAL {
                    rotation += 1;
                    let to = log.with_file_name(format!("app.log.{rotation}"));
                    std::fs::rename(&log, to).unwrap();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    }

    #[test]
    fn tail_across_rotations_kill_9_and_restart_writes_every_line_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("logs.parquet");
        let written = Arc::new(AtomicI64::new(0));
        let w = writer(log.clone(), Arc::clone(&written));
        // The rotated names match too: a file created and rotated while pinflow is down is
        // found (a pattern of the live name only would never see it).
        let pattern = format!("{}*", log.display());

        // First run: killed once a checkpoint is committed and a rotation is behind it.
        let mut first = start(&pattern, &out);
        wait_for_child(&mut first, "a committed file and a rotation", || {
            !final_parquet_files(&out_dir).is_empty() && written.load(SeqCst) > PER_FILE + 500
        });
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();
        // Lines appended and files rotated while it is down.
        let at_kill = written.load(SeqCst);
        while written.load(SeqCst) < (at_kill + PER_FILE + 500).min(TOTAL) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Second run (same journal): to the end of the writer, then stopped.
        let mut second = start(&pattern, &out);
        wait_for_child(&mut second, "the writer's end", || {
            written.load(SeqCst) == TOTAL
        });
        w.join().unwrap();
        let o = sigterm_and_wait(second);
        assert!(
            o.status.success(),
            "{}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert_exactly_once(&all_final_ids(&out_dir), 0..TOTAL);
        // The rotated files are all there, untouched by pinflow.
        assert!(dir.path().join("app.log.1").exists());
    }
}

#[test]
fn source_file_names_the_tailed_file_without_its_byte_range() {
    use arrow_array::{cast::AsArray, Array};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app@edge.log");
    append(&log, &lines(0..20));
    let toml = "[[transform]]\nset = { file = { meta = \"source_file\" } }\n";
    let mut cfg = Config::from_toml(toml).unwrap();
    cfg.out = dir.path().join("out.parquet");
    cfg.tail_poll_interval = Duration::from_millis(20);
    let run = Pipeline::new(cfg)
        .unwrap()
        .spawn(Source::tail(&log.display().to_string()).unwrap())
        .unwrap();
    let m = run.metrics();
    wait_until("the lines read", || {
        m.tail.bytes_read.load(Relaxed) == std::fs::metadata(&log).unwrap().len()
    });
    run.shutdown().unwrap();
    let files = crate::common::final_parquet_files(dir.path());
    let mut names = Vec::new();
    for b in files.iter().flat_map(|f| crate::common::read_parquet(f)) {
        let c = b.column_by_name("file").expect("the `file` column");
        let c = c.as_string::<i32>();
        names.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    assert_eq!(names.len(), 20);
    let want = log.display().to_string();
    assert!(names.iter().all(|n| *n == want), "{names:?}");
}

#[test]
fn source_url_is_refused_for_a_tail_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[[transform]]\nset = { u = { meta = \"source_url\" } }\n";
    let mut cfg = Config::from_toml(toml).unwrap();
    cfg.out = dir.path().join("out.parquet");
    let log = dir.path().join("app.log").display().to_string();
    // The check runs when the pipeline starts; its error comes back with the run's end.
    let ran = Pipeline::new(cfg)
        .and_then(|p| p.spawn(Source::tail(&log).unwrap()))
        .and_then(|run| run.shutdown());
    let err = match ran {
        Ok(_) => panic!("a tail has no source_url"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("source_url") && err.contains("a file source has source_file"),
        "{err}"
    );
}

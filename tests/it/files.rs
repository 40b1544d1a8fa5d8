//! File sources: NDJSON and JSON files, directories, globs and stdin through the same parse,
//! compute and write threads, with every record written once or dead-lettered with its place.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

fn record(id: i64) -> String {
    format!(
        r#"{{"id":{id},"service":"svc-{}","values":[{}.5,{},{}]}}"#,
        id % 7,
        id,
        id * 2,
        id % 13
    )
}

fn ndjson(ids: std::ops::Range<i64>) -> String {
    ids.map(|i| record(i) + "\n").collect()
}

#[test]
fn directories_globs_and_json_files_are_read_whole_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // Two NDJSON files (one without a final newline, one with CRLF and blank lines), a JSON
    // array file, a pretty-printed JSON object, and a file the directory scan must skip.
    std::fs::write(input.join("a.ndjson"), ndjson(0..5000).trim_end()).unwrap();
    let crlf = ndjson(5000..6000).replace('\n', "\r\n\r\n");
    std::fs::write(input.join("b.jsonl"), crlf).unwrap();
    let array = format!(
        "[{}]",
        (6000..6100).map(record).collect::<Vec<_>>().join(",\n  ")
    );
    std::fs::write(input.join("c.json"), array).unwrap();
    std::fs::write(
        input.join("d.json"),
        "{\n  \"id\": 6100,\n  \"values\": [1, 2]\n}\n",
    )
    .unwrap();
    std::fs::write(input.join("README.txt"), "not data\n").unwrap();

    let mut cfg = Config::new(dir.path().join("out.parquet"));
    // Small chunks: many bodies per file, lines cut at chunk edges.
    cfg.fetch.batch_max_bytes = 16 * 1024;
    let source = Source::files(&[input.display().to_string()]).unwrap();
    let summary = Pipeline::new(cfg.clone()).unwrap().run(source).unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.records_written, 6101, "{summary}");
    assert_eq!(summary.fetch.failed, 0, "{summary}");
    assert!(summary.fetch.requests > 20, "chunked: {summary}");
    let mut got = ids(summary.output.as_ref().unwrap());
    got.sort_unstable();
    assert_eq!(got, (0..6101).collect::<Vec<_>>());
    // Statistics were computed for file records too.
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    let mut checked = 0;
    for b in read_parquet(summary.output.as_ref().unwrap()) {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let count = b
            .column_by_name("values_count")
            .unwrap()
            .as_primitive::<Int64Type>();
        let mean = b
            .column_by_name("values_mean")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in (0..b.num_rows()).filter(|&i| id.value(i) < 6000) {
            let x = id.value(i) as f64;
            assert_eq!(count.value(i), 3);
            let want = (x + 0.5 + 2.0 * x + (id.value(i) % 13) as f64) / 3.0;
            assert!(close(Some(mean.value(i)), Some(want), 1e-12));
            checked += 1;
        }
    }
    assert_eq!(checked, 6000);

    // A glob picks files by pattern (only the NDJSON ones here).
    cfg.out = dir.path().join("glob.parquet");
    let glob = format!("{}/*.nd*", input.display());
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::files(&[glob]).unwrap())
        .unwrap();
    assert_eq!(summary.records_written, 5000, "{summary}");
}

#[test]
fn bad_lines_and_overlong_lines_are_dead_lettered_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.ndjson");
    let mut text = ndjson(0..100);
    text.push_str("{\"id\": 100, \"values\": [1, oops]}\n"); // line 101
    text.push_str(&format!(
        "{{\"id\":101,\"message\":\"{}\"}}\n",
        "x".repeat(40_000)
    )); // long, fits
    text.push_str(&format!(
        "{{\"id\":102,\"message\":\"{}\"}}\n",
        "y".repeat(300_000)
    )); // too long
    text.push_str(&ndjson(103..200));
    std::fs::write(&path, text).unwrap();

    let mut cfg = Config::new(dir.path().join("out.parquet"));
    cfg.fetch.batch_max_bytes = 8 * 1024;
    cfg.fetch.max_body_bytes = 100_000;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::files(&[path.display().to_string()]).unwrap())
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    // 0..100, 101 and 103..200 written; 100 dead-lettered; 102 failed as too long.
    assert_eq!(summary.records_written, 100 + 1 + 97, "{summary}");
    assert_eq!(summary.records_dead_lettered, 1, "{summary}");
    assert_eq!(summary.fetch.failed_by_reason.get("too large"), Some(&1));
    let dead = ndjson_lines(summary.dead_letter_file.as_ref().unwrap());
    assert_eq!(dead.len(), 2, "{dead:?}");
    let name = path.display().to_string();
    assert!(
        dead.iter()
            .any(|l| l.contains(&format!("{name}:103")) && l.contains("longer than")),
        "{dead:?}"
    );
    // The bad record's body is named by its line range, which contains line 101.
    let bad = dead.iter().find(|l| l.contains("invalid JSON")).unwrap();
    let v: serde_json::Value = serde_json::from_str(bad).unwrap();
    let url = v["url"].as_str().unwrap();
    let range = url.rsplit(':').next().unwrap();
    let (a, b) = range.split_once('-').unwrap();
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    assert!(a <= 101 && 101 <= b, "{url}");
}

#[test]
fn standard_input_streams_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdin.parquet");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(["run", "--files", "-", "--progress", "never", "--out"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for block in 0..20 {
            stdin
                .write_all(ndjson(block * 1000..(block + 1) * 1000).as_bytes())
                .unwrap();
        }
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut got = ids(&out);
    got.sort_unstable();
    assert_eq!(got, (0..20_000).collect::<Vec<_>>());
}

#[test]
fn a_spec_that_matches_nothing_fails_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(["run", "--files"])
        .arg(dir.path().join("*.ndjson"))
        .arg("--out")
        .arg(dir.path().join("x.parquet"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no file matches") && err.contains("*.ndjson"),
        "{err}"
    );
    assert!(dir_names(dir.path()).is_empty());
}

/// A FIFO's chunks are cut where it pauses, so a journal cannot resume it: the second run
/// over one is refused, naming it, as standard input is.
#[test]
fn a_fifo_read_with_a_journal_is_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.ndjson");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let feed = |fifo: std::path::PathBuf| {
        std::thread::spawn(move || {
            // (Opening blocks until pinflow opens it to read; a refused run closes it.)
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                for id in 0..3 {
                    let _ = writeln!(f, "{{\"id\":{id}}}");
                }
            }
        })
    };
    let run = || {
        pinflow_piped()
            .current_dir(dir.path())
            .args(["run", "--progress", "never", "--journal", "true"])
            .args(["--files", "in.ndjson", "--out", "o.parquet"])
            .output()
            .unwrap()
    };
    let writer = feed(fifo.clone());
    let first = run();
    writer.join().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let writer = feed(fifo.clone());
    let second = run();
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("in.ndjson is a pipe or a device, which cannot be resumed"),
        "{err}"
    );
}

/// A stage that fails stops the pipeline's other stages; the stop is lifted when that run is
/// over, so the same pipeline's next run reads its input to the end.
#[test]
fn a_pipeline_whose_run_failed_runs_again_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let without = dir.path().join("without.ndjson");
    std::fs::write(&without, "{\"id\":1}\n{\"id\":2}\n").unwrap();
    let with = dir.path().join("with.ndjson");
    std::fs::write(
        &with,
        "{\"id\":1,\"lat\":[1.0,2.0]}\n{\"id\":2,\"lat\":[3.0]}\n",
    )
    .unwrap();
    let mut cfg = Config::new(dir.path().join("o.parquet"));
    cfg.writer.overwrite = true;
    // Statistics of `lat`: the layout inferred from records without it cannot be built.
    cfg.schema.stats = Some(vec!["lat".into()]);
    let p = Pipeline::new(cfg).unwrap();
    let failed = p.run(Source::files(&[without.display().to_string()]).unwrap());
    assert!(failed.is_err_and(|e| e.to_string().contains("lat")));
    let summary = p
        .run(Source::files(&[with.display().to_string()]).unwrap())
        .unwrap();
    assert_eq!(summary.records_written, 2, "{summary}");
    assert!(!summary.interrupted, "{summary}");
}

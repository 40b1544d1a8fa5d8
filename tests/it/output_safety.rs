//! The output is the run's alone (issue 16, items 2, 4 and 5): a second run writing the same
//! output is refused while the first one holds its lock, and takes it once the first has ended
//! or died; a partition value too long for a directory name is one dead letter, not the end of
//! the run; and the output, dead-letter file, journal and inputs may not alias, nor may the
//! output be a directory, a link or a FIFO: each refused before anything is fetched or written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

fn record(id: i64) -> String {
    format!(
        r#"{{"id":{id},"service":"svc-{}","values":[{id}.5,1,2]}}"#,
        id % 3
    )
}

fn ndjson(ids: std::ops::Range<i64>) -> String {
    ids.map(|i| record(i) + "\n").collect()
}

fn pinflow(args: &[&str], paths: &[(&str, &Path)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pinflow"));
    c.arg("run").args(["--progress", "never"]).args(args);
    for (flag, path) in paths {
        c.arg(flag).arg(path);
    }
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A run reading its records from standard input, which stays alive (holding its output)
/// until its stdin is closed; `args` name the output.
fn start_held(args: &[&str], out: &Path) -> (Child, ChildStdin) {
    let mut child = pinflow(&["--files", "-"], &[("--out", out)])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(ndjson(0..1000).as_bytes()).unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

/// Waits (60 s at most) until `lock` names `pid` as its holder.
fn wait_for_lock(lock: &Path, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(lock).ok().as_deref() != Some(&format!("{pid}\n")) {
        assert!(
            Instant::now() < deadline,
            "{} never named pid {pid}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server that counts the requests it gets: the refused runs must send none.
fn counting_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    http_server(|_, _| {
        let body = r#"{"id":1,"values":[1]}"#;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

/// Every `*.parquet` file under `dir`, recursively.
fn parquet_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(parquet_under(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

/// The second run is refused while the first holds the output (`args` add partitioning or
/// not); the first then finishes with every row of its own, in the Parquet files under `root`.
fn second_writer_is_refused(args: &[&str], out: &Path, lock: &Path, root: &Path) {
    let (first, mut stdin) = start_held(args, out);
    wait_for_lock(lock, first.id());

    let (base, requests) = counting_server();
    let urls = format!("{base}/{{1..5}}.json");
    let second = pinflow(&["--urls", &urls], &[("--out", out)])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains(&format!("another pinflow run (pid {})", first.id()))
            && err.contains(&out.display().to_string())
            && err.contains(".pinflow.lock"),
        "{err}"
    );
    assert!(
        requests.lock().unwrap().is_empty(),
        "the refused run fetched"
    );

    stdin.write_all(ndjson(1000..2000).as_bytes()).unwrap();
    drop(stdin);
    let done = first.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    let ids: Vec<i64> = parquet_under(root).iter().flat_map(|p| ids(p)).collect();
    assert_eq!(sorted(ids), (0..2000).collect::<Vec<_>>());
    assert!(!lock.exists(), "the lock file outlived its run");
}

#[test]
fn a_second_run_to_the_same_out_is_refused_while_the_first_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let lock = dir.path().join(".out.parquet.pinflow.lock");
    second_writer_is_refused(&[], &out, &lock, dir.path());

    // The first run has ended: its lock is free, and a new run takes it.
    let input = dir.path().join("more.ndjson");
    std::fs::write(&input, ndjson(5000..5010)).unwrap();
    let next = pinflow(&["--overwrite"], &[("--files", &input), ("--out", &out)])
        .output()
        .unwrap();
    assert!(next.status.success(), "{}", stderr(&next));
    assert_eq!(sorted(ids(&out)), (5000..5010).collect::<Vec<_>>());
}

#[test]
fn a_second_run_into_the_same_partitioned_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let args = ["--partition-by", "service"];
    second_writer_is_refused(&args, &ds, &ds.join(".pinflow.lock"), &ds);
    // One file per partition, all the first run's: nobody else wrote part-00001 beside it.
    let names: Vec<String> = parquet_under(&ds)
        .iter()
        .map(|p| p.strip_prefix(&ds).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "service=svc-0/part-00001.parquet",
            "service=svc-1/part-00001.parquet",
            "service=svc-2/part-00001.parquet"
        ]
    );
}

#[test]
fn a_lock_left_by_a_killed_run_does_not_block_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let lock = dir.path().join(".out.parquet.pinflow.lock");
    let (mut first, stdin) = start_held(&[], &out);
    wait_for_lock(&lock, first.id());
    first.kill().unwrap(); // SIGKILL: no clean-up runs
    first.wait().unwrap();
    drop(stdin);
    assert!(lock.exists(), "a killed run cannot remove its lock file");

    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, ndjson(0..10)).unwrap();
    let next = pinflow(&[], &[("--files", &input), ("--out", &out)])
        .output()
        .unwrap();
    assert!(next.status.success(), "{}", stderr(&next));
    assert_eq!(sorted(ids(&out)), (0..10).collect::<Vec<_>>());
    assert!(!lock.exists());
}

#[test]
fn a_pipeline_refuses_an_output_another_pipeline_is_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lib.parquet");
    let (source, push) = Source::push(16);
    let first = Pipeline::new(Config::new(&out))
        .unwrap()
        .spawn(source)
        .unwrap();
    let lock = dir.path().join(".lib.parquet.pinflow.lock");
    wait_for_lock(&lock, std::process::id());

    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, ndjson(0..10)).unwrap();
    let mut cfg = Config::new(&out);
    // Its second run below replaces the first pipeline's file.
    cfg.writer.overwrite = true;
    let second = Pipeline::new(cfg).unwrap();
    let files = || Source::files(&[input.display().to_string()]).unwrap();
    let e = second.run(files()).unwrap_err().to_string();
    assert!(
        e.contains("another pinflow run") && e.contains("lib.parquet"),
        "{e}"
    );

    for i in 100..110 {
        push.push(record(i)).unwrap();
    }
    drop(push);
    let summary = first.join().unwrap();
    assert_eq!(summary.records_written, 10);
    assert_eq!(sorted(ids(&out)), (100..110).collect::<Vec<_>>());
    // Free again once the first has ended.
    second.run(files()).unwrap();
    assert_eq!(sorted(ids(&out)), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_partition_value_too_long_for_a_directory_name_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let long = "x".repeat(300);
    let mut text = ndjson(0..50);
    text.push_str(&format!(
        "{{\"id\":50,\"service\":\"{long}\",\"values\":[1]}}\n"
    ));
    text.push_str(&ndjson(51..100));
    std::fs::write(&input, text).unwrap();
    let ds = dir.path().join("ds");
    let o = pinflow(
        &["--partition-by", "service"],
        &[("--files", &input), ("--out", &ds)],
    )
    .output()
    .unwrap();
    // The record dead-lettered beyond the default tolerance (0) makes it exit 4.
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let written: Vec<i64> = parquet_under(&ds).iter().flat_map(|p| ids(p)).collect();
    let want: Vec<i64> = (0..100).filter(|&i| i != 50).collect();
    assert_eq!(sorted(written), want);

    let dead = ndjson_lines(&dir.path().join("ds.deadletter.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(d["kind"], "record");
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("`service`") && reason.contains("too long") && reason.contains("308"),
        "{reason}"
    );
    let row: serde_json::Value = serde_json::from_str(d["excerpt"].as_str().unwrap()).unwrap();
    assert_eq!(row["id"], 50);
    assert_eq!(row["service"], long.as_str());
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("partition value too long"), "{summary}");
}

/// A refused run: exit 1 and `wants` in its message.
fn refused(o: &Output, wants: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in wants {
        assert!(err.contains(w), "no `{w}` in: {err}");
    }
}

#[test]
fn outputs_that_alias_an_input_or_each_other_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.ndjson");
    let data = ndjson(0..20);
    std::fs::write(&input, &data).unwrap();
    let out = d.join("out.parquet");

    // --out is the input: it would have been replaced by Parquet.
    let o = pinflow(&[], &[("--files", &input), ("--out", &input)])
        .output()
        .unwrap();
    refused(&o, &["out:", "in.ndjson", "an input"]);
    assert_eq!(std::fs::read_to_string(&input).unwrap(), data);

    // --dead-letter is --out: the dead letters would have been lost.
    let o = pinflow(
        &[],
        &[
            ("--files", &input),
            ("--out", &out),
            ("--dead-letter", &out),
        ],
    )
    .output()
    .unwrap();
    refused(&o, &["dead_letter:", "out.parquet", "the output"]);
    assert!(!out.exists());

    // --dead-letter is the journal.
    let o = pinflow(
        &["--journal"],
        &[
            ("--files", &input),
            ("--out", &out),
            ("--dead-letter", &d.join("out.parquet.journal")),
        ],
    )
    .output()
    .unwrap();
    refused(&o, &["journal", "out.parquet.journal"]);
    assert!(!out.exists());

    // The dead-letter file in the directory read: a later run would read it back forever.
    let o = pinflow(
        &[],
        &[
            ("--files", d),
            ("--out", &out),
            ("--dead-letter", &d.join("dead.ndjson")),
        ],
    )
    .output()
    .unwrap();
    refused(&o, &["dead_letter:", "dead.ndjson", "read as an input"]);
    assert_eq!(dir_names(d), ["in.ndjson"]);

    // --out is the URL list: refused before a request goes out.
    let (base, requests) = counting_server();
    let list = d.join("urls.txt");
    let urls = format!("{base}/1.json\n{base}/2.json\n");
    std::fs::write(&list, &urls).unwrap();
    let o = pinflow(&[], &[("--urls", &list), ("--out", &list)])
        .output()
        .unwrap();
    refused(&o, &["out:", "urls.txt", "an input"]);
    assert_eq!(std::fs::read_to_string(&list).unwrap(), urls);
    assert!(requests.lock().unwrap().is_empty());
}

#[test]
fn an_out_that_is_a_directory_link_or_fifo_is_refused_before_anything_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (base, requests) = counting_server();
    let urls = format!("{base}/{{1..20}}.json");
    let run = |out: &Path| {
        pinflow(&["--urls", &urls], &[("--out", out)])
            .output()
            .unwrap()
    };

    let existing = d.join("existing");
    std::fs::create_dir(&existing).unwrap();
    refused(&run(&existing), &["existing", "is a directory"]);
    assert!(
        dir_names(&existing).is_empty(),
        "{:?}",
        dir_names(&existing)
    );

    let target = d.join("target.parquet");
    std::fs::write(&target, "not touched").unwrap();
    let link = d.join("link.parquet");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    refused(&run(&link), &["link.parquet", "symbolic link"]);
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "not touched");

    let fifo = d.join("fifo.parquet");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    refused(&run(&fifo), &["fifo.parquet", "not a regular file"]);

    assert!(requests.lock().unwrap().is_empty(), "a refused run fetched");
    // Nothing was left beside them either (no temporary file, no lock file).
    assert_eq!(
        dir_names(d),
        ["existing", "fifo.parquet", "link.parquet", "target.parquet"]
    );
}

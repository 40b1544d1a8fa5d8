//! What a new user tries in the first hour (issue 17): one URL given to `--urls`, typos in
//! schemes and URL files, a range the shell expanded, and output piped into `head`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::*;
use pinflow::sim::{SimConfig, Simulator, Workload};

fn pinflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pinflow"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `pinflow run --urls URLS --out OUT`: its exit code and standard error.
fn run_urls(urls: impl AsRef<OsStr>, out: &Path) -> (Option<i32>, String) {
    let o = pinflow()
        .args(["run", "--urls"])
        .arg(urls)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (o.status.code(), text(&o.stderr))
}

/// `pinflow ARGS` with standard output a pipe whose reader is already closed, as after
/// `| head -1` has read its line: the first write fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    pinflow()
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn one_url_given_to_urls_is_fetched_and_its_record_written() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("one.parquet");
    let url = sim.url("/logs/7.json");
    let o = pinflow()
        .args(["run", "--urls", &url, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert_rows_match_workload(&rows(&out), &Workload::default(), 7..=7);
    // The summary's latencies are in units a person reads (`1.02 s`, not `1023999 µs`).
    let latency: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("latency"))
        .collect();
    assert!(!latency.is_empty(), "{stdout}");
    for l in latency {
        let big_micros = l
            .split("  ")
            .any(|part| part.trim().strip_suffix(" µs").is_some_and(|n| n.len() > 3));
        assert!(!big_micros, "{l}");
    }
}

#[test]
fn an_unsupported_scheme_is_named_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    for (url, scheme) in [
        ("htp://127.0.0.1:1/x.json", "htp"),
        ("ftp://127.0.0.1:1/x.json", "ftp"),
    ] {
        let (code, stderr) = run_urls(url, &out);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("unsupported scheme `{scheme}`")),
            "{stderr}"
        );
        assert!(!stderr.contains("No such file"), "{stderr}");
        assert!(!out.exists());
    }
}

#[test]
fn a_bad_line_in_a_url_file_is_named_with_its_line_and_nothing_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let (base, heads) =
        http_server(|_, _| b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"id\":1}\n".to_vec());
    let list = dir.path().join("urls.txt");
    std::fs::write(
        &list,
        format!("{base}/1.json\n# a comment\nhtp://127.0.0.1/3.json\n{base}/4.json\n"),
    )
    .unwrap();
    let out = dir.path().join("x.parquet");
    let (code, stderr) = run_urls(&list, &out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3: `htp://127.0.0.1/3.json`", list.display())),
        "{stderr}"
    );
    assert!(stderr.contains("unsupported scheme `htp`"), "{stderr}");
    assert!(heads.lock().unwrap().is_empty(), "fetched before checking");
    assert!(!out.exists());
}

#[test]
fn a_range_the_shell_expanded_gets_the_template_to_quote() {
    let mut args = vec!["run".to_string(), "--urls".to_string()];
    args.extend((1..=5).map(|i| format!("http://127.0.0.1:1/logs/{i}.json")));
    args.extend(["--out".to_string(), "never.parquet".to_string()]);
    let o = pinflow().args(&args).output().unwrap();
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--urls 'http://127.0.0.1:1/logs/{1..5}.json'"),
        "{stderr}"
    );
    assert!(stderr.contains("Quote it"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_closed_stdout_ends_config_default_quietly() {
    let o = with_closed_stdout(&["config", "default"]);
    let stderr = text(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_closed_stdout_does_not_turn_a_finished_run_into_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("piped.parquet");
    let template = sim.logs_template(20);
    let out_arg = out.display().to_string();
    let o = with_closed_stdout(&["run", "--urls", &template, "--out", &out_arg]);
    let stderr = text(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=20);
}

#[test]
fn a_url_list_behind_a_pipe_path_is_read_once_not_checked_away() {
    // `--urls <(list-urls)` names a pipe: checking its lines up front would consume them.
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("piped-list.parquet");
    let mut child = pinflow()
        .args(["run", "--urls", "/dev/stdin", "--out"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 1..=3 {
            writeln!(stdin, "{}", sim.url(&format!("/logs/{i}.json"))).unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=3);
}

#[test]
fn an_output_whose_directory_does_not_exist_names_that_directory_and_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{\"id\":1}\n").unwrap();
    let missing = dir.path().join("not-made").join("yet");
    let out = missing.join("x.parquet");
    let o = pinflow()
        .args(["run", "--progress", "never", "--files"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = text(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "its directory {} does not exist",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("os error"), "{stderr}");
    assert!(!dir.path().join("not-made").exists(), "nothing made");
}

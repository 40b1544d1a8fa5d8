//! The `pinflow` binary as an operator runs it: exit codes, messages, files, signals.

use std::process::{Command, Stdio};

use crate::common::*;
use pinflow::sim::{SimConfig, Simulator, Workload};

fn pinflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pinflow"))
}

#[test]
fn demo_writes_the_records_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.parquet");
    let o = pinflow()
        .args(["demo", "--records", "500", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("written 500"), "{stdout}");
    assert!(stdout.contains("latency    parse"), "{stdout}");
    assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=500);
}

#[test]
fn run_reports_failed_requests_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let list = dir.path().join("urls.txt");
    std::fs::write(
        &list,
        format!(
            "{}\n{}\nhttp://127.0.0.1:1/x\n",
            sim.url("/logs/1.json"),
            sim.url("/status/500")
        ),
    )
    .unwrap();
    let out = dir.path().join("o.parquet");
    let o = pinflow()
        .args(["run", "--max-attempts", "2", "--urls"])
        .arg(&list)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("http://127.0.0.1:1/x") && stdout.contains("HTTP status 500"),
        "{stdout}"
    );
    assert!(stderr.contains("2 request(s) failed"), "{stderr}");
    assert_eq!(rows(&out).len(), 1);
    assert_eq!(
        ndjson_lines(&dir.path().join("o.parquet.deadletter.ndjson")).len(),
        2
    );
}

#[test]
fn errors_name_what_and_where() {
    let o = pinflow()
        .args([
            "run",
            "--urls",
            "http://127.0.0.1:9/{1..2}",
            "--out",
            "/nonexistent-pinflow/x.parquet",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("its directory /nonexistent-pinflow does not exist"),
        "{e}"
    );

    let o = pinflow()
        .args([
            "run",
            "--urls",
            "/nonexistent-list.txt",
            "--out",
            "x.parquet",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent-list.txt: cannot open"));

    let o = pinflow()
        .args(["demo", "--queue-capacity", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("queue_capacity"));

    let o = pinflow()
        .args(["run", "--urls", "http://h/{9..1}", "--out", "x.parquet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("range end is below its start"));

    let o = pinflow()
        .args(["run", "--out", "x.parquet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "clap usage error");
}

#[test]
fn urls_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("s.parquet");
    let mut child = pinflow()
        .args(["run", "--urls", "-", "--out"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 1..=2500 {
            writeln!(stdin, "{}", sim.url(&format!("/logs/{i}.json"))).unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
    assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=2500);
}

#[test]
fn sigterm_drains_and_finalizes() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("t.parquet");
    // Row groups of 1000 rows: the temporary file grows as soon as rows are written.
    let mut child = pinflow()
        .args(["run", "--urls", &sim.logs_template(5_000_000)])
        .args(["--row-group-rows", "1000", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once rows are written (a row group is in the temporary file): an event, not a
    // guess at how long a busy machine takes to get there.
    let tmp = dir.path().join(format!(".t.parquet.tmp-{}", child.id()));
    wait_for_child(&mut child, "a row group in the temporary file", || {
        std::fs::metadata(&tmp).is_ok_and(|m| m.len() > 1000)
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    // 5: stopped with work left (the summary says how much).
    assert_eq!(
        o.status.code(),
        Some(5),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("stopped    early"), "{stdout}");
    let written = rows(&out);
    assert!(!written.is_empty() && written.len() < 5_000_000);
    // Every delivered request was written: the summary's two numbers agree with the file.
    let delivered: usize = stdout
        .split("delivered ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(written.len(), delivered, "{stdout}");
    let ids: std::collections::BTreeSet<i64> = written.iter().map(|r| r.record.id).collect();
    assert_eq!(ids.len(), written.len(), "no duplicates");
    assert_eq!(dir_names(dir.path()), ["t.parquet"]);
}

#[test]
fn bench_prints_machine_readable_json() {
    let o = pinflow()
        .args([
            "bench",
            "--records",
            "3000",
            "--per-response",
            "100",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value =
        serde_json::from_str(s.trim_end()).unwrap_or_else(|e| panic!("{e}: {s}"));
    let int = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{k} not an integer in {s}"))
    };
    let num = |k: &str| {
        let x = v[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} not a number in {s}"));
        assert!(x.is_finite() && x >= 0.0, "{k} = {x}");
        x
    };
    // What was asked, and all of it.
    assert_eq!(
        (int("records"), int("per_response"), int("records_written")),
        (3000, 100, 3000),
        "{s}"
    );
    assert_eq!((int("requests"), int("failed")), (30, 0), "{s}");
    assert_eq!(
        (int("records_windowed"), int("records_dead_lettered")),
        (0, 0),
        "{s}"
    );
    // Rates are positive and agree with the count and the time (to the printed precision).
    let elapsed = num("elapsed_s");
    assert!(elapsed > 0.0, "{s}");
    let rate = num("records_per_s");
    let expected = 3000.0 / elapsed;
    assert!(
        (rate - expected).abs() <= expected * 1e-3 + 0.1,
        "{rate} vs {expected}: {s}"
    );
    assert!(num("mb_per_s") > 0.0, "{s}");
    // Measurements the platform may not offer are null, never a made-up number.
    for k in ["peak_rss_bytes", "cpu_s", "simulator_cpu_share"] {
        assert!(v[k].is_null() || v[k].is_number(), "{k}: {s}");
    }
    if !v["peak_rss_bytes"].is_null() {
        assert!(int("peak_rss_bytes") > 0, "{s}");
    }
    if !v["cpu_s"].is_null() {
        num("cpu_s");
    }
    if !v["simulator_cpu_share"].is_null() {
        assert!(num("simulator_cpu_share") <= 1.0, "a share: {s}");
    }
    assert!(int("peak_live_batches") >= 1, "{s}");
    num("allocations_per_record");
    assert!(v["plan"].as_str().is_some_and(|p| !p.is_empty()), "{s}");
    // Every stage's percentiles are ordered, and each stage saw something.
    let stages = v["latency_us"].as_object().unwrap_or_else(|| panic!("{s}"));
    let names: Vec<&str> = stages.keys().map(String::as_str).collect();
    for name in [
        "fetch",
        "parse",
        "compute",
        "write",
        "end_to_end",
        "handoff",
    ] {
        assert!(names.contains(&name), "{name} missing in {s}");
    }
    for (name, st) in stages {
        let p = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{name}.{k}: {s}"));
        assert!(p("p50") <= p("p99") && p("p99") <= p("p999"), "{name}: {s}");
        assert!(p("n") > 0, "{name}: {s}");
    }
    assert_eq!(
        stages["fetch"]["n"].as_u64(),
        Some(30),
        "one per request: {s}"
    );
}

/// Continuous mode under an operator's tools: JSON logs naming each failure, SIGHUP re-creating
/// the dead-letter file after logrotate moved it, SIGTERM ending the run with valid files.
#[test]
fn continuous_run_with_json_logs_sighup_and_sigterm() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let base = format!("http://{}", sim.addr());
    let list = dir.path().join("urls.txt");
    let mut urls: String = (1..=50)
        .map(|i| format!("{base}/logs/{i}.json\n"))
        .collect();
    urls.push_str(&format!("{base}/status/404\n"));
    std::fs::write(&list, urls).unwrap();
    let out = dir.path().join("c.parquet");
    let dead = dir.path().join("c.parquet.deadletter.ndjson");
    let child = pinflow()
        .args(["run", "--every", "100ms", "--log-format", "json", "--urls"])
        .arg(&list)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let wait_for = |p: &std::path::Path| {
        for _ in 0..3000 {
            if std::fs::metadata(p).is_ok_and(|m| m.len() > 0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} never appeared", p.display());
    };
    // logrotate: move the file away, then SIGHUP; the next failure re-creates it.
    wait_for(&dead);
    let rotated = dir.path().join("rotated.ndjson");
    std::fs::rename(&dead, &rotated).unwrap();
    let kill = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success())
    };
    kill("-HUP");
    wait_for(&dead);
    kill("-TERM");
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Some requests (the 404s) failed for good: exit code 3, after a clean drain.
    assert_eq!(o.status.code(), Some(3), "{stdout}\n{stderr}");
    for f in [&rotated, &dead] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.lines().all(|l| l.contains("HTTP status 404")),
            "{text}"
        );
    }
    // Every stderr line is one JSON object; failures are logged with their URL and reason.
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect();
    assert!(
        lines.iter().any(|l| {
            let f = &l["fields"];
            f["message"] == "request failed"
                && f["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/status/404"))
                && f["reason"].as_str().is_some_and(|r| r.contains("404"))
        }),
        "{stderr}"
    );
    // Only finalized files besides the URL list and the dead letters.
    let mut parquet = 0;
    for name in dir_names(dir.path()) {
        assert!(!name.starts_with('.'), "temporary file left: {name}");
        if name.ends_with(".parquet") {
            parquet += 1;
            let rows = rows(&dir.path().join(&name));
            assert!(!rows.is_empty());
        }
    }
    assert!(parquet >= 1);
}

#[test]
fn bench_compare_runs_mio_ureq_and_faults_in_one_go() {
    let o = pinflow()
        .args([
            "bench",
            "--compare",
            "--records",
            "300",
            "--progress",
            "never",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows: Vec<&str> = stdout.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(
        rows[0].starts_with("mio ") && rows[0].contains("1.00x"),
        "{stdout}"
    );
    assert!(rows[1].starts_with("ureq "), "{stdout}");
    assert!(rows[2].starts_with("mio, faults"), "{stdout}");
    // Clean runs write every record.
    for row in &rows[..2] {
        assert_eq!(row.split_whitespace().nth(3), Some("300"), "{row}");
    }
}

/// A flood of failures logs at most 10 lines a second, then says how many it left out; every
/// failure is still in the dead-letter file.
#[test]
fn failure_logs_are_rate_limited_and_the_rest_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let list = dir.path().join("urls.txt");
    let failures = 200;
    let urls: String = (0..failures)
        .map(|i| format!("http://{}/status/404?n={i}\n", sim.addr()))
        .collect();
    std::fs::write(&list, urls).unwrap();
    let out = dir.path().join("f.parquet");
    let started = std::time::Instant::now();
    let o = pinflow()
        .args(["run", "--log-format", "json", "--urls"])
        .arg(&list)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    let logged = stderr
        .lines()
        .filter(|l| l.contains("request failed"))
        .count();
    let suppressed: usize = stderr
        .lines()
        .filter_map(|l| l.split("\"suppressed\":").nth(1))
        .map(|rest| {
            rest.split([',', '}'])
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    // At most 10 lines in each one-second window the run lasted: a bound that grows with the
    // time taken, so a slow (busy) machine cannot fail it. Without the limit all 200 would be
    // logged, which this bound refuses for any run under 19 s.
    let windows = took.as_secs() as usize + 1;
    assert!(
        logged <= 10 * windows,
        "{logged} failure lines in {took:?}:\n{stderr}"
    );
    assert_eq!(logged + suppressed, failures, "{stderr}");
    let dead = std::fs::read_to_string(dir.path().join("f.parquet.deadletter.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), failures);
}

/// `demo`, `run` and `bench --help` group the configuration flags under their topic's heading
/// (the registry's), each flag once, under its own topic.
#[test]
fn help_groups_the_configuration_flags_by_topic() {
    use pinflow::config::{options, Flag};
    for cmd in ["demo", "run", "bench"] {
        let o = pinflow().args([cmd, "--help"]).output().unwrap();
        assert!(o.status.success());
        let help = String::from_utf8_lossy(&o.stdout);
        for spec in options() {
            let flag = match spec.flag() {
                Flag::Shared(f) => f,
                Flag::Negatable { on, .. } => on,
                _ => continue,
            };
            let at = help
                .find(&format!("      {flag} "))
                .or_else(|| help.find(&format!("      {flag}\n")))
                .unwrap_or_else(|| panic!("{cmd}: {flag} missing in\n{help}"));
            let heading = help[..at]
                .rfind("\n\n")
                .map(|h| help[h + 2..].lines().next().unwrap_or(""))
                .unwrap_or("");
            assert_eq!(
                heading,
                format!("{}:", spec.topic().heading()),
                "{cmd}: {flag}"
            );
            // Once: its own line (help after it, or on the next line when long), never
            // another flag's help naming it as a word.
            assert_eq!(
                help.matches(&format!(" {flag} ")).count()
                    + help.lines().filter(|l| l.trim_start() == flag).count(),
                1,
                "{cmd}: {flag}"
            );
        }
    }
}

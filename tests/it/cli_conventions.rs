//! The command line's conventions (issue 17, item 8): boolean switches, byte sizes with units,
//! `--records`, completions and the man page, JSON fatal errors, `NO_COLOR`, and what
//! `config check` reads.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pinflow::config::{options, Flag};
use pinflow::sim::{SimConfig, Simulator};

fn pinflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pinflow"));
    // The tests set what they test; nothing of the caller's environment leaks in.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PINFLOW_") || k == "NO_COLOR" || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The process's exit status within `secs`, killing it (and failing) past that.
fn wait_exit(mut child: std::process::Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_boolean_flag_is_a_pair_of_switches_without_a_value() {
    let o = pinflow().args(["run", "--help"]).output().unwrap();
    let (help, _) = text(&o);
    assert!(o.status.success());
    assert!(
        !help.contains("<BOOL>"),
        "a boolean flag takes a value:\n{help}"
    );
    let mut checked = 0;
    for spec in options().iter().filter(|o| o.is_switch()) {
        let (on, off) = match spec.flag() {
            Flag::Shared(on) => (on.to_string(), format!("--no-{}", &on[2..])),
            Flag::Negatable { on, off, .. } => (on.to_string(), off.to_string()),
            _ => continue,
        };
        for f in [&on, &off] {
            assert!(
                // Its help on the same line, or (a long one) on the next.
                help.lines().any(|l| {
                    let l = l.trim_start();
                    l == f.as_str() || l.starts_with(&format!("{f} "))
                }),
                "{}: no switch {f} in run --help:\n{help}",
                spec.key()
            );
        }
        checked += 1;
    }
    assert!(checked >= 6, "{checked} boolean flags");
}

#[test]
fn no_switch_turns_a_configured_boolean_off_and_the_old_spelling_still_works() {
    let dir = tempfile::tempdir().unwrap();
    // The journal cannot track paginated sources: this file is refused as it stands.
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[writer]\njournal = true\n[fetch]\nfollow_link_next = true\n",
    )
    .unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let url = sim.url("/logs/1.json");
    let run = |extra: &[&str], out: &str| {
        pinflow()
            .args(["run", "--progress", "never", "--config"])
            .arg(&cfg)
            .args(["--urls", &url, "--out"])
            .arg(dir.path().join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[], "a.parquet");
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writer.journal"), "{stderr}");
    for (n, extra) in [
        &["--no-journal"][..],
        &["--journal", "--no-journal"],
        &["--journal", "false"],
        &["--journal=false"],
        &["--no-follow-link-next"],
    ]
    .iter()
    .enumerate()
    {
        let o = run(extra, &format!("o{n}.parquet"));
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{extra:?}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("written 1"), "{extra:?}: {stdout}");
    }
}

#[test]
fn byte_size_flags_and_variables_take_units() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let url = sim.url("/logs/1.json");
    let run = |flag: Option<&str>, var: Option<&str>, out: &str| {
        let mut c = pinflow();
        c.args([
            "run",
            "--progress",
            "never",
            "--max-attempts",
            "1",
            "--urls",
            &url,
            "--overwrite",
            "--out",
        ])
        .arg(dir.path().join(out));
        if let Some(v) = flag {
            c.args(["--max-body-bytes", v]);
        }
        if let Some(v) = var {
            c.env("PINFLOW_FETCH_MAX_BODY_BYTES", v);
        }
        c.output().unwrap()
    };
    // A record's body is over 512 bytes and under 1 MiB: the unit is what decides.
    for (flag, var, ok) in [
        (Some("1MiB"), None, true),
        (Some("0.5KiB"), None, false),
        (None, Some("1 MiB"), true),
        (None, Some("512B"), false),
        (Some("1MB"), Some("512B"), true),
    ] {
        let o = run(flag, var, "o.parquet");
        let (stdout, stderr) = text(&o);
        let want = if ok { 0 } else { 3 };
        assert_eq!(
            o.status.code(),
            Some(want),
            "{flag:?} {var:?}:\n{stdout}\n{stderr}"
        );
    }
    // Errors name the option and the value; an ambiguous unit gets a hint.
    let o = run(Some("64M"), None, "bad.parquet");
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-body-bytes") && stderr.contains("`64M`") && stderr.contains("64MiB"),
        "{stderr}"
    );
    let o = run(None, Some("lots"), "bad.parquet");
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("PINFLOW_FETCH_MAX_BODY_BYTES: fetch.max_body_bytes: `lots`"),
        "{stderr}"
    );
}

#[test]
fn records_zero_is_refused_by_demo_and_sim() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.parquet");
    let o = pinflow()
        .args(["demo", "--records", "0", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--records") && stderr.contains("at least 1"),
        "{stderr}"
    );
    assert!(!out.exists(), "demo --records 0 wrote a file");
    let child = pinflow()
        .args(["sim", "--addr", "127.0.0.1:0", "--records", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(child, 60, "pinflow sim --records 0");
    assert_eq!(status.code(), Some(2));
}

#[test]
fn sim_records_are_the_records_its_templates_fetch() {
    let mut child = pinflow()
        .args([
            "sim",
            "--addr",
            "127.0.0.1:0",
            "--records",
            "1500",
            "--page-size",
            "1000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines[1].contains("/logs/{1..1500}.json"), "{lines:?}");
    // The pages template fetches whole pages, and says how many records that is.
    assert!(
        lines[2].contains("/pages/{1..2}.ndjson") && lines[2].contains("2000 records"),
        "{lines:?}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let o = pinflow().args(["completions", shell]).output().unwrap();
        let (script, stderr) = text(&o);
        assert!(o.status.success(), "{shell}: {stderr}");
        assert!(script.contains("shutdown-timeout"), "{shell}:\n{script}");
        assert!(script.contains("no-journal"), "{shell}:\n{script}");
    }
}

#[test]
fn the_man_page_is_roff_that_groff_renders_without_warnings() {
    let o = pinflow().arg("man").output().unwrap();
    let (page, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        page.starts_with(".TH pinflow 1"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains("\\-\\-out"), "--out is not in the page");
    assert!(page.contains("\\-\\-shutdown\\-timeout"));
    assert!(page.is_ascii(), "groff reads ASCII; escape the rest");
    let groff = Command::new("groff").arg("--version").output();
    if !groff.is_ok_and(|g| g.status.success()) {
        eprintln!("groff is not installed: the page is not rendered");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pinflow.1");
    std::fs::write(&file, &page).unwrap();
    let r = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .unwrap();
    let (_, warnings) = text(&r);
    assert!(r.status.success() && warnings.is_empty(), "{warnings}");
}

/// The JSON objects among `stderr`'s lines, and whether any line is not one.
fn json_lines(stderr: &str) -> (Vec<serde_json::Value>, Vec<&str>) {
    let mut objects = Vec::new();
    let mut other = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => objects.push(v),
            _ => other.push(line),
        }
    }
    (objects, other)
}

#[test]
fn the_fatal_error_is_a_json_log_line_under_log_format_json() {
    let dir = tempfile::tempdir().unwrap();
    let bad_out = "/nonexistent-pinflow/x.parquet";
    let json_file = dir.path().join("json.toml");
    std::fs::write(
        &json_file,
        "[log]\nformat = \"json\"\n[fetch]\nmax_in_flight = 0\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, Option<&str>, &str)> = vec![
        (
            vec![
                "--log-format".into(),
                "json".into(),
                "--out".into(),
                bad_out.into(),
            ],
            None,
            "/nonexistent-pinflow",
        ),
        (
            vec!["--out".into(), bad_out.into()],
            Some("json"),
            "/nonexistent-pinflow",
        ),
        (
            vec![
                "--config".into(),
                json_file.display().to_string(),
                "--out".into(),
                dir.path().join("o.parquet").display().to_string(),
            ],
            None,
            "fetch.max_in_flight: must be at least 1",
        ),
    ];
    for (args, var, message) in cases {
        let mut c = pinflow();
        c.args([
            "run",
            "--progress",
            "never",
            "--urls",
            "http://127.0.0.1:9/x",
        ])
        .args(&args);
        if let Some(v) = var {
            c.env("PINFLOW_LOG_FORMAT", v);
        }
        let o = c.output().unwrap();
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        let (objects, other) = json_lines(&stderr);
        assert!(
            other.is_empty(),
            "{args:?}: lines that are not JSON: {other:?}"
        );
        let error = objects
            .iter()
            .find(|v| v["level"] == "ERROR")
            .unwrap_or_else(|| panic!("{args:?}: no ERROR line: {stderr}"));
        let text = error["fields"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{args:?}: {error}");
    }
    // Text logs keep the plain line.
    let o = pinflow()
        .args(["run", "--urls", "http://127.0.0.1:9/x", "--out", bad_out])
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("pinflow: error: ") && l.contains("/nonexistent-pinflow")),
        "{stderr}"
    );
}

/// Whether `s` holds an SGR escape (a color or text style): ESC `[` digits/`;` `m`.
fn has_sgr(s: &str) -> bool {
    s.split("\x1b[").skip(1).any(|rest| {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ';'));
        end.is_some_and(|i| rest[i..].starts_with('m'))
    })
}

/// Runs `command` on a pseudo-terminal (util-linux `script`), with `NO_COLOR` as given; its
/// output, or `None` where `script` is not installed.
fn on_a_terminal(command: &str, no_color: Option<&str>, dir: &Path) -> Option<String> {
    if !Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return None;
    }
    let mut c = Command::new("script");
    c.args(["-qec", command, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PINFLOW_") || k == "NO_COLOR" || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn no_color_turns_the_colors_off_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "'{}' demo --records 50 --progress always --out o.parquet --overwrite",
        env!("CARGO_BIN_EXE_pinflow")
    );
    let Some(colored) = on_a_terminal(&command, None, dir.path()) else {
        eprintln!("`script` is not installed: no pseudo-terminal to test on");
        return;
    };
    // On a terminal, logs are colored (so the check below can fail)...
    assert!(has_sgr(&colored), "{colored:?}");
    // ...unless NO_COLOR is set and not empty; an empty one changes nothing.
    let plain = on_a_terminal(&command, Some("1"), dir.path()).unwrap();
    assert!(plain.contains("records    fetched 50"), "{plain:?}");
    assert!(!has_sgr(&plain), "{plain:?}");
    let empty = on_a_terminal(&command, Some(""), dir.path()).unwrap();
    assert!(has_sgr(&empty), "{empty:?}");
}

#[test]
fn config_check_reads_the_config_flag_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[fetch]\nmax_attempts = 2\nmax_in_flight = 0\n").unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[fetch]\nmax_attempts = 2\nmax_body_bytes = \"64MiB\"\n",
    )
    .unwrap();
    // --config names the file to check.
    let o = pinflow()
        .args(["config", "check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.toml:3: fetch.max_in_flight: must be at least 1"),
        "{stderr}"
    );
    let o = pinflow()
        .args(["config", "check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("good.toml: ok"), "{stdout}");
    // Two different files are refused, not one of them silently dropped.
    let o = pinflow()
        .args(["config", "check"])
        .arg(&good)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("give one"), "{stderr}");
    // The variables are checked with the file, as a run stacks them.
    for (var, value, message) in [
        (
            "PINFLOW_FETCH_MAX_IN_FLIGHT",
            "0",
            "fetch.max_in_flight: must be at least 1",
        ),
        (
            "PINFLOW_FETCH_MAX_ATTEMPTS",
            "lots",
            "fetch.max_attempts: `lots`",
        ),
        (
            "PINFLOW_FETCH_MAX_INFLIGHT",
            "3",
            "unknown configuration variable; did you mean PINFLOW_FETCH_MAX_IN_FLIGHT?",
        ),
    ] {
        let o = pinflow()
            .args(["config", "check"])
            .arg(&good)
            .env(var, value)
            .output()
            .unwrap();
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{var}: {stderr}");
        assert!(
            stderr.contains(&format!("{var}: {message}")),
            "{var}: {stderr}"
        );
    }
}

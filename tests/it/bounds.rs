//! Hard bounds under hostile input and extreme settings (issue 16, items 8 to 10): memory held
//! by stalled connections, endless URL lines, a low file-descriptor limit, every option's
//! maximum, and documents simd-json rejects.
//!
//! Memory is measured as the spawned process's peak resident set (VmHWM in
//! /proc/PID/status): a bound, not a timing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pinflow::config::{format_duration, options, Bounds, ConfigLayer};
use pinflow::{Config, Pipeline, Source};

use crate::common::*;

fn pinflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pinflow"))
}

/// The high-water mark of `pid`'s resident set (VmHWM), in bytes, while it runs.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Waits for `child` (at most `limit`, killing it after) and returns its exit status and peak
/// resident set in bytes: VmHWM, read every few milliseconds until it exits (a high-water
/// mark, so the last reading holds the peak so far). Not `ru_maxrss`: that counts the test
/// process's own resident set too, recorded when the child's exec replaced it.
fn wait_with_peak_rss(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, u64) {
    let deadline = Instant::now() + limit;
    let mut peak = 0;
    loop {
        if let Some(hwm) = vm_hwm(child.id()) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pinflow did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads one request head from `s`; false when the peer closed first.
fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// A server whose every connection answers one request with `Content-Length: total`, sends
/// `sent` bytes of it, waits a little and closes: a response that fails as truncated, after
/// the fetcher buffered `sent` bytes of it.
fn truncating_server(total: usize, sent: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                if !read_head(&mut s) {
                    return;
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 << 10];
                let mut left = sent;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if s.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
                std::thread::sleep(Duration::from_millis(300));
            });
        }
    });
    base
}

/// A URL file of `urls`.
fn url_file(dir: &Path, urls: &[String]) -> std::path::PathBuf {
    let path = dir.join("urls.txt");
    std::fs::write(&path, urls.join("\n") + "\n").unwrap();
    path
}

/// 32 connections each buffer 12 MB and stall (then close): 384 MB held at once without a
/// bound. With `--max-buffered-bytes` 16 MiB the process peaks near the bound plus one body.
#[test]
fn stalled_connections_hold_no_more_than_max_buffered_bytes() {
    const CONNS: usize = 32;
    const SENT: usize = 12_000_000;
    let dir = tempfile::tempdir().unwrap();
    let base = truncating_server(SENT + 1_000_000, SENT);
    let urls: Vec<String> = (0..CONNS).map(|i| format!("{base}/big/{i}")).collect();
    let list = url_file(dir.path(), &urls);
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = pinflow()
        .args(["run", "--urls"])
        .arg(&list)
        .arg("--out")
        .arg(dir.path().join("out.parquet"))
        .args([
            "--max-buffered-bytes",
            &(16 << 20).to_string(),
            "--connections-per-host",
            "64",
            "--max-attempts",
            "1",
            "--progress",
            "never",
        ])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let (status, peak) = wait_with_peak_rss(&mut child, Duration::from_secs(120));
    eprintln!("peak RSS {} MiB", peak >> 20);
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    // Every request failed as truncated (that is the server), none for another reason.
    let dead = ndjson_lines(&dir.path().join("out.parquet.deadletter.ndjson"));
    assert_eq!(dead.len(), CONNS, "{log}");
    assert!(
        dead.iter()
            .all(|l| l.contains("closed before the response was complete")),
        "{dead:?}"
    );
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
    // The bound (16 MiB), the leader's body (12 MB) and the process itself, with room to
    // spare: measured 37 MiB with the bound, 373 MiB without it (--max-buffered-bytes 64 GiB).
    let limit = 96 << 20;
    assert!(
        peak < limit,
        "peak RSS {} MiB, over {} MiB",
        peak >> 20,
        limit >> 20
    );
}

/// `--urls -` fed one endless line: the run stops with an error naming standard input and the
/// line, having held no more than the line limit (the unbounded reader grew with the input).
#[test]
fn an_endless_url_line_on_stdin_stops_with_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = pinflow()
        .args(["run", "--urls", "-", "--progress", "never", "--out"])
        .arg(dir.path().join("out.parquet"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // 256 MB of one line, unless the reader stops first (then the pipe breaks).
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..256 {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let (status, peak) = wait_with_peak_rss(&mut child, Duration::from_secs(120));
    feeder.join().unwrap();
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_ne!(status.code(), Some(0), "{log}");
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
    assert!(
        log.contains("-: line 1 is longer than 65536 bytes"),
        "the error names the source and the line: {log}"
    );
    assert!(peak < 96 << 20, "peak RSS {} MiB", peak >> 20);
}

/// `n` loopback "hosts" (distinct ports), each answering `{"id":I}` on keep-alive
/// connections; host `bad` answers a document with NaN instead, for a dead letter.
fn hosts(n: usize, bad: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (base, _) = http_server(move |_, _| {
                let body = if i == bad {
                    format!("{{\"id\":{i},\"latency_ms\":NaN}}")
                } else {
                    format!("{{\"id\":{i}}}")
                };
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            });
            format!("{base}/r/{i}")
        })
        .collect()
}

/// Runs pinflow under `ulimit -n 64` over 100 hosts, with `extra_fds` descriptors held open
/// from the start (taken by something else), and checks that nothing was lost to EMFILE.
fn run_under_64_descriptors(extra_fds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let urls = hosts(100, 99);
    let list = url_file(dir.path(), &urls);
    let out = dir.path().join("out.parquet");
    // Descriptors 10.. held open by the shell are inherited by pinflow.
    let script = format!(
        "ulimit -n 64 || exit 99; for fd in $(seq 10 {}); do eval \"exec $fd</dev/null\"; done; \
         exec \"$0\" \"$@\"",
        9 + extra_fds
    );
    let o = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_pinflow")])
        .args(["run", "--progress", "never", "--urls"])
        .arg(&list)
        .arg("--out")
        .arg(&out)
        // The one bad record (a NaN) is expected: exit 0 with it.
        .args(["--max-dead-letters", "1"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{log}\n{summary}");
    if extra_fds == 0 {
        assert!(log.contains("caps the fetcher's connections"), "{log}");
        assert!(!log.contains("Too many open files"), "{log}");
    } else {
        // The case under test did happen.
        assert!(log.contains("out of file descriptors"), "{log}");
    }
    let mut got = ids(&out);
    got.sort_unstable();
    assert_eq!(got, (0..99).collect::<Vec<i64>>(), "{log}");
    // The writer could create the dead-letter file while the fetcher held its connections.
    let dead = ndjson_lines(&dir.path().join("out.parquet.deadletter.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("NaN is not a JSON number"), "{dead:?}");
}

/// 100 hosts under `ulimit -n 64`: connections are capped from the limit, leaving room for
/// the writer; every row and the dead letter are written, no request fails.
#[test]
fn a_low_descriptor_limit_caps_connections_and_loses_nothing() {
    run_under_64_descriptors(0);
}

/// As above, with 30 of the 64 descriptors taken before the run: connects fail with EMFILE,
/// which is back-pressure (the request waits for a descriptor), never a request failure.
#[test]
fn emfile_on_connect_is_back_pressure_not_a_failure() {
    run_under_64_descriptors(30);
}

/// The text of a value one past `b`'s maximum, and of `b`'s maximum, as an environment
/// variable or a flag would give it.
fn past_and_at_max(b: Bounds) -> (String, String) {
    match b {
        Bounds::Integer { max, .. } => ((max + 1).to_string(), max.to_string()),
        Bounds::Duration { max, .. } => (
            format_duration(max + Duration::from_nanos(1)),
            format_duration(max),
        ),
        other => panic!("a new kind of bounds: {other:?}"),
    }
}

/// The problems `cfg` has with `key`.
fn problems_of(key: &str, text: &str) -> Vec<String> {
    let o = pinflow::config::option(key).unwrap();
    let layer = ConfigLayer::from_env([(o.env(), text.to_string())])
        .unwrap_or_else(|e| panic!("{key} = {text}: {e:?}"));
    let cfg = Config::from_layers(&[layer]).unwrap();
    cfg.problems()
        .into_iter()
        .filter(|d| d.key.as_deref() == Some(key))
        .map(|d| d.message)
        .collect()
}

/// Every integer and duration option, read from the registry (so a new one is covered as it
/// is added), has bounds; one past its maximum is refused with a message saying the maximum,
/// its maximum is accepted, and one below a minimum above zero is refused.
#[test]
fn every_integer_and_duration_option_rejects_one_past_its_maximum() {
    let mut checked = 0;
    for o in options() {
        if !matches!(o.type_name(), "integer" | "byte size" | "duration") {
            continue;
        }
        let bounds = o
            .bounds()
            .unwrap_or_else(|| panic!("{}: declare its bounds in the registry", o.key()));
        let (past, at) = past_and_at_max(bounds);
        let why = problems_of(o.key(), &past);
        assert!(
            why.iter().any(|m| m.contains("must be at most")),
            "{} = {past}: {why:?}",
            o.key()
        );
        assert_eq!(
            problems_of(o.key(), &at),
            Vec::<String>::new(),
            "{}",
            o.key()
        );
        match bounds {
            Bounds::Integer { min, .. } if min > 0 => {
                let why = problems_of(o.key(), &(min - 1).to_string());
                assert!(why.iter().any(|m| m.contains("at least")), "{}", o.key());
            }
            Bounds::Duration { min, .. } if !min.is_zero() => {
                assert_eq!(problems_of(o.key(), "0"), ["must be longer than zero"]);
            }
            _ => {}
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} options checked");
}

/// The command line says the same, and a value that used to abort the process on allocation
/// (`--queue-capacity 10^12`) or panic it (a duration near u64::MAX seconds) is refused before
/// anything starts: every flag of a bounded option, one past its maximum.
#[test]
fn every_bounded_flag_refuses_one_past_its_maximum_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    for o in options() {
        let (Some(bounds), pinflow::config::Flag::Shared(flag)) = (o.bounds(), o.flag()) else {
            continue;
        };
        let (past, _) = past_and_at_max(bounds);
        let out = pinflow()
            .args(["run", "--urls", "http://127.0.0.1:9/x", "--out"])
            .arg(dir.path().join("out.parquet"))
            .args([flag, &past])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code().is_some_and(|c| c != 0),
            "{flag} {past}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{}: must be at most", o.key())),
            "{flag} {past}: {stderr}"
        );
        assert!(!dir.path().join("out.parquet").exists());
    }
    let out = pinflow()
        .args(["run", "--urls", "http://127.0.0.1:9/x", "--out"])
        .arg(dir.path().join("out.parquet"))
        .args(["--queue-capacity", "1000000000000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("queue_capacity: must be at most 1024, got 1000000000000"),
        "{stderr}"
    );
}

/// Every duration at its maximum (continuous mode every 8760h, timeouts, rotation, flushing,
/// retry waits) and the large integer limits at theirs: the run fetches, writes, and exits
/// normally on SIGTERM, with no "overflow when adding durations" panic in any thread.
#[test]
fn the_longest_durations_and_largest_limits_run_and_exit_normally() {
    let dir = tempfile::tempdir().unwrap();
    let (base, heads) = http_server(|path, _| {
        let id: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
        let body = format!("{{\"id\":{id}}}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let out = dir.path().join("out.parquet");
    let mut args: Vec<String> = vec!["run".into(), "--urls".into()];
    args.push(format!("{base}/r/{{1..20}}"));
    args.extend(["--progress", "never", "--out"].map(String::from));
    args.push(out.display().to_string());
    let skip = [
        // Thousands of threads or connections: accepted, but not for a test on a small box.
        "threads.parse",
        "threads.compute",
        "fetch.connections_per_host",
        // Turns time windows on: the records would become window rows (these have no event
        // time at all). tests/it/window.rs runs windows.
        "window.size",
    ];
    for o in options() {
        let (Some(bounds), pinflow::config::Flag::Shared(flag)) = (o.bounds(), o.flag()) else {
            continue;
        };
        if skip.contains(&o.key()) {
            continue;
        }
        args.push(flag.into());
        args.push(past_and_at_max(bounds).1);
    }
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = pinflow()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    // The first pass has fetched every URL (the next one is a year away).
    let deadline = Instant::now() + Duration::from_secs(60);
    while heads.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "20 requests within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (status, _) = wait_with_peak_rss(&mut child, Duration::from_secs(60));
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    // Rotation (by time, rows or bytes) names the file OUTSTEM-TIMESTAMP-NNNNN.parquet.
    let files: Vec<String> = dir_names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("out-") && n.ends_with(".parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?} {log}");
    let mut got = ids(&dir.path().join(&files[0]));
    got.sort_unstable();
    assert_eq!(got, (1..=20).collect::<Vec<i64>>(), "{log}");
}

/// A `Retry-After` of 2^63 seconds with `max_retry_after` at its maximum (a year): the wait is
/// capped, its arithmetic does not overflow, and the request fails with its reason (no time
/// left within the total timeout) instead of panicking the fetch thread.
#[test]
fn a_retry_after_of_2_pow_63_seconds_fails_the_request_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (base, heads) = http_server(|_, _| {
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 9223372036854775808\r\n\
          Content-Length: 0\r\n\r\n"
            .to_vec()
    });
    let mut cfg = Config::new(dir.path().join("out.parquet"));
    cfg.fetch.max_retry_after = Duration::from_secs(365 * 24 * 3600);
    cfg.fetch.max_attempts = 100;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::Urls(vec![format!("{base}/x")]))
        .unwrap();
    assert_eq!(
        (summary.fetch.failed, heads.lock().unwrap().len()),
        (1, 1),
        "{summary}"
    );
    let dead = ndjson_lines(&dir.path().join("out.parquet.deadletter.ndjson"));
    assert!(
        dead[0].contains("HTTP status 503") && dead[0].contains("no time left"),
        "{dead:?}"
    );
}

/// Bodies of 3 MB each over 8 connections, with `max_buffered_bytes` at its least (1 MiB):
/// every connection but the leader pauses, yet every body completes and every record is
/// written; the run does not wait forever on its own bound.
#[test]
fn bodies_larger_than_max_buffered_bytes_still_complete() {
    let dir = tempfile::tempdir().unwrap();
    // 3 MB of records: 30,000 lines of about 100 bytes.
    let (base, _) = http_server(|path, _| {
        let n: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
        let pad = "x".repeat(80);
        let body: String = (0..30_000)
            .map(|i| format!("{{\"id\":{},\"message\":\"{pad}\"}}\n", n * 100_000 + i))
            .collect();
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        r.push_str(&body);
        r.into_bytes()
    });
    let out = dir.path().join("out.parquet");
    let mut cfg = Config::new(&out);
    cfg.fetch.max_buffered_bytes = 1 << 20;
    cfg.fetch.connections_per_host = 8;
    let urls: Vec<String> = (0..8).map(|i| format!("{base}/r/{i}")).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Pipeline::new(cfg).unwrap().run(Source::Urls(urls)));
    });
    let summary = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the run ends within 120 s")
        .unwrap();
    assert_eq!(
        (summary.fetch.delivered, summary.fetch.failed),
        (8, 0),
        "{summary}"
    );
    assert_eq!(summary.records_written, 240_000, "{summary}");
}

/// Documents with NaN, Infinity or characters after the value are dead-lettered with what is
/// wrong and where, not simd-json's "InternalError".
#[test]
fn nan_infinity_and_trailing_characters_are_named_in_the_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = [
        r#"{"id":1,"latency_ms":NaN}"#,
        r#"{"id":2,"latency_ms":Infinity}"#,
        r#"{"id":3,"latency_ms":-Infinity}"#,
        r#"{"id":4} trailing"#,
        r#"{"id":5}"#,
    ];
    let (base, _) = http_server(move |path, _| {
        let i: usize = path.rsplit('/').next().unwrap().parse().unwrap();
        let body = bodies[i];
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let out = dir.path().join("out.parquet");
    let urls: Vec<String> = (0..bodies.len()).map(|i| format!("{base}/r/{i}")).collect();
    let summary = Pipeline::new(Config::new(&out))
        .unwrap()
        .run(Source::Urls(urls.clone()))
        .unwrap();
    assert_eq!(summary.records_written, 1, "{summary}");
    let dead = ndjson_lines(&dir.path().join("out.parquet.deadletter.ndjson"));
    let reason = |i: usize| {
        dead.iter()
            .find(|l| l.contains(&format!("\"{}\"", urls[i])))
            .unwrap_or_else(|| panic!("no dead letter for {}: {dead:?}", urls[i]))
            .clone()
    };
    assert!(
        reason(0).contains("at byte 21: NaN is not a JSON number"),
        "{}",
        reason(0)
    );
    assert!(
        reason(1).contains("at byte 21: Infinity is not a JSON number"),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("at byte 21: -Infinity is not a JSON number"),
        "{}",
        reason(2)
    );
    assert!(
        reason(3).contains("at byte 9: trailing characters after the value"),
        "{}",
        reason(3)
    );
    assert!(
        dead.iter().all(|l| !l.contains("InternalError")),
        "{dead:?}"
    );
}

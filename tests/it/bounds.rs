//! Hard bounds under hostile input and extreme settings (issue 16, items 8 to 10): memory held
//! by stalled connections, endless URL lines, a low file-descriptor limit, every option's
//! maximum, and documents simd-json rejects.
//!
//! Memory is measured as the spawned process's peak resident set (`ru_maxrss` from `wait4`,
//! the kernel's high-water mark, the same figure as VmHWM in /proc/PID/status): a bound, not a
//! timing.

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

/// Waits for `child` (at most `limit`, killing it after) and returns its exit status and peak
/// resident set in bytes.
fn wait_with_peak_rss(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, u64) {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid value; wait4 writes both out-parameters.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            // ru_maxrss is in KiB on Linux.
            let peak = usage.ru_maxrss as u64 * 1024;
            return (std::process::ExitStatus::from_raw(status), peak);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pinflow did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
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
    // spare: measured 33 MiB with the bound, 354 MiB without it (--max-buffered-bytes 64 GiB).
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

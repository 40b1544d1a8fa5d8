//! Stopping has a deadline (issue 16, item 1): on SIGTERM nothing new is sent, requests on the
//! wire get `fetch.shutdown_timeout`, the rest is cancelled (counted, not failed, and fetched by
//! a resumed run), and every row already received is in a finalized file. The same holds for
//! an endless file and for a metrics client that never finishes its request; and the total
//! timeout cuts an attempt already running.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

/// How long a stopped process may take to exit in these tests: far more than the 2 s
/// shutdown timeout they set, far less than the minutes a stop took without a deadline.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

/// A loopback HTTP/1.1 server. `GET /N` is answered `{"id":N}` at once, unless `stall` is
/// set: then the request is read and not answered while it stays set.
struct Server {
    base: String,
    stall: Arc<AtomicBool>,
    /// Every request head received.
    heads: Arc<Mutex<Vec<String>>>,
    /// Requests read and held unanswered.
    held: Arc<AtomicUsize>,
}

impl Server {
    fn start(stall: bool) -> Server {
        let stall = Arc::new(AtomicBool::new(stall));
        let held = Arc::new(AtomicUsize::new(0));
        let (st, he) = (Arc::clone(&stall), Arc::clone(&held));
        let (base, heads) = http_server(move |path, _| {
            if st.load(Ordering::Relaxed) {
                he.fetch_add(1, Ordering::Relaxed);
                while st.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let body = format!("{{\"id\":{}}}", path.trim_start_matches('/'));
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        Server {
            base,
            stall,
            heads,
            held,
        }
    }

    fn urls(&self, ids: std::ops::Range<u64>) -> impl Iterator<Item = String> + '_ {
        ids.map(|i| format!("{}/{i}", self.base))
    }

    /// A closure telling how many requests have come in.
    fn requests(&self) -> impl Fn() -> usize {
        let heads = Arc::clone(&self.heads);
        move || heads.lock().unwrap().len()
    }
}

fn pinflow() -> Command {
    pinflow_piped()
}

/// The number after `label` in the summary (`delivered 100,` or `cancelled 5 by`), 0 when
/// the summary has no such figure.
fn figure(summary: &str, label: &str) -> u64 {
    summary
        .split(label)
        .nth(1)
        .map(|rest| {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            n.parse().unwrap()
        })
        .unwrap_or(0)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The final Parquet files under `dir` (not temporary ones), sorted.
fn final_parquet(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "parquet")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect();
    v.sort();
    v
}

/// 100 URLs of a healthy host, then 2,000 of a host that never answers: the run is stopped
/// once the healthy ones are answered and the stalled ones occupy connections.
fn stalled_run(dir: &Path, extra: &[&str]) -> (Server, Server, Child) {
    let healthy = Server::start(false);
    let stalling = Server::start(true);
    let list: Vec<String> = healthy
        .urls(0..100)
        .chain(stalling.urls(100..2100))
        .collect();
    let urls = dir.join("urls.txt");
    std::fs::write(&urls, list.join("\n") + "\n").unwrap();
    let mut child = pinflow()
        .args(["run", "--urls"])
        .arg(&urls)
        .arg("--out")
        .arg(dir.join("t.parquet"))
        .args(["--shutdown-timeout", "2s", "--progress", "never"])
        .args(extra)
        .spawn()
        .unwrap();
    let (answered, held) = (healthy.requests(), Arc::clone(&stalling.held));
    wait_for_child(
        &mut child,
        "the healthy URLs answered and stalled ones sent",
        || answered() >= 100 && held.load(Ordering::Relaxed) >= 1,
    );
    (healthy, stalling, child)
}

#[test]
fn sigterm_with_requests_stalled_on_the_wire_exits_with_the_received_rows_final() {
    let dir = tempfile::tempdir().unwrap();
    let (_healthy, _stalling, child) = stalled_run(dir.path(), &[]);
    let o = sigterm_and_wait(child);
    let (stdout, stderr) = text(&o);
    // Nothing failed: the stalled requests were cancelled, not failed; the exit status says
    // the run stopped with work left (5), and the summary how much.
    assert_eq!(o.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(stdout.contains("stopped early: "), "{stdout}");
    assert!(stdout.contains("stopped    early"), "{stdout}");
    let (requests, delivered) = (
        figure(&stdout, "requests   "),
        figure(&stdout, "delivered "),
    );
    let (failed, cancelled) = (figure(&stdout, "failed "), figure(&stdout, "cancelled "));
    assert_eq!((delivered, failed), (100, 0), "{stdout}");
    // Every admitted stalled request is accounted for as cancelled: those queued at once,
    // those on the wire at the shutdown timeout.
    assert!(cancelled >= 1, "{stdout}");
    assert_eq!(requests, delivered + cancelled, "{stdout}");
    assert!(stderr.contains("shutdown timeout"), "{stderr}");
    // The file is under its final name and holds every row received.
    assert_eq!(dir_names(dir.path()), ["t.parquet", "urls.txt"]);
    let mut got = ids(&dir.path().join("t.parquet"));
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<i64>>());
}

#[test]
fn a_journal_run_stopped_at_the_deadline_resumes_and_fetches_what_was_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (healthy, stalling, child) = stalled_run(dir.path(), &["--journal"]);
    let o = sigterm_and_wait(child);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(stdout.contains("run the same command again"), "{stdout}");
    assert!(figure(&stdout, "cancelled ") >= 1, "{stdout}");
    // The same command again, the stalling host now answering: it fetches what the stop
    // cancelled (and what was never admitted), and skips what the first run wrote.
    stalling.stall.store(false, Ordering::Relaxed);
    let again = pinflow()
        .args(["run", "--urls"])
        .arg(dir.path().join("urls.txt"))
        .arg("--out")
        .arg(dir.path().join("t.parquet"))
        .args(["--journal", "--progress", "never"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(figure(&stdout, "skipped  "), 100, "{stdout}");
    assert_eq!(figure(&stdout, "delivered "), 2000, "{stdout}");
    assert_eq!(healthy.requests()(), 100, "not fetched twice");
    let mut got: Vec<i64> = final_parquet(dir.path())
        .iter()
        .flat_map(|p| ids(p))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..2100).collect::<Vec<i64>>(),
        "every row exactly once"
    );
}

#[test]
fn files_from_an_endless_device_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let mut child = pinflow()
        .args([
            "run",
            "--files",
            "/dev/zero",
            "--progress",
            "never",
            "--out",
        ])
        .arg(&out)
        .spawn()
        .unwrap();
    // Under way: its temporary file exists (/dev/zero has no line to write; the reader runs
    // on through it until stopped).
    let tmp = dir.path().join(format!(".t.parquet.tmp-{}", child.id()));
    wait_for_child(&mut child, "the run started", || tmp.exists());
    let o = sigterm_and_wait(child);
    let (stdout, stderr) = text(&o);
    // An orderly exit, not a kill: 5, stopped before the end of its input (which comes
    // before 3, for the endless line failed as longer than fetch.max_body_bytes).
    assert_eq!(o.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(stdout.contains("stopped    early"), "{stdout}");
    assert!(!tmp.exists(), "the temporary file is finalized or removed");
}

#[test]
fn an_endless_stdin_stream_stops_on_sigterm_with_every_row_received_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let mut child = pinflow()
        .args(["run", "--files", "-", "--progress", "never", "--out"])
        .arg(&out)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    std::thread::spawn(move || {
        for id in 0u64.. {
            if writeln!(stdin, "{{\"id\":{id}}}").is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    wait_for_child(&mut child, "100,000 lines read", || {
        sent.load(Ordering::Relaxed) > 100_000
    });
    let o = sigterm_and_wait(child);
    let (stdout, stderr) = text(&o);
    // 5: stopped before the end of its input.
    assert_eq!(o.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(stdout.contains("stopped    early"), "{stdout}");
    // Chunks are whole lines handed over in order: what was written is a prefix of the input,
    // each line once.
    let mut got = ids(&out);
    got.sort_unstable();
    assert!(!got.is_empty());
    assert_eq!(got, (0..got.len() as i64).collect::<Vec<_>>());
}

/// A pipe that pauses (`tail -f app.log | pinflow run --files -`): the lines that came are
/// parsed without waiting for more to fill a chunk, and SIGTERM ends the run though no more
/// comes and the pipe stays open (the reader waited in `read` for a full chunk before).
#[test]
fn a_paused_stdin_stream_hands_its_lines_over_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let port = free_port();
    let mut child = pinflow()
        .args(["run", "--files", "-", "--progress", "never", "--out"])
        .arg(&out)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for id in 0..3 {
        writeln!(stdin, "{{\"id\":{id}}}").unwrap();
    }
    stdin.flush().unwrap();
    // The three lines are parsed while the pipe stays open and quiet.
    wait_for_child(&mut child, "the three lines parsed", || {
        metric(port, "pinflow_records_total{stage=\"parse\"}") == Some(3.0)
    });
    let o = sigterm_and_wait(child);
    drop(stdin);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{stdout}\n{stderr}");
    let mut got = ids(&out);
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2], "{stdout}\n{stderr}");
}

#[test]
fn a_held_metrics_connection_does_not_delay_exit() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Server::start(false);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = pinflow()
        .args([
            "run",
            "--every",
            "1h",
            "--urls",
            &format!("{}/{{7..7}}", healthy.base),
        ])
        .arg("--out")
        .arg(dir.path().join("t.parquet"))
        .args(["--progress", "never", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let answered = healthy.requests();
    wait_for_child(&mut child, "the first pass fetched", || answered() >= 1);
    // A slow client: one byte a second, its request never complete, kept open.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let stop_slow = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&stop_slow);
    let dribbler = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) && slow.write_all(b"G").is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let o = sigterm_and_wait(child);
    let (stdout, stderr) = text(&o);
    stop_slow.store(true, Ordering::Relaxed);
    dribbler.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        final_parquet(dir.path())
            .iter()
            .flat_map(|p| ids(p))
            .count(),
        1
    );
}

/// A server that reads requests and never answers, holding each connection open.
fn stalling_server() -> (String, Arc<AtomicUsize>) {
    let s = Server::start(true);
    (s.base.clone(), Arc::clone(&s.held))
}

#[test]
fn the_total_timeout_cuts_an_attempt_already_running() {
    let (base, _held) = stalling_server();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("t.parquet"));
    cfg.fetch.total_timeout = Duration::from_secs(1);
    // Without the cut the attempt would run to these, and fail under another reason.
    cfg.fetch.first_byte_timeout = Duration::from_secs(30);
    cfg.fetch.request_timeout = Duration::from_secs(30);
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(vec![format!("{base}/1")]))
        .unwrap();
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    assert!(
        dead.contains("total timeout of 1s reached during attempt 1"),
        "{dead}"
    );
}

#[test]
fn a_library_shutdown_cancels_stalled_requests_at_the_shutdown_timeout() {
    let stalling = Server::start(true);
    let healthy = Server::start(false);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("t.parquet"));
    cfg.fetch.shutdown_timeout = Duration::from_secs(1);
    cfg.fetch.connections_per_host = 4;
    let urls: Vec<String> = healthy.urls(0..10).chain(stalling.urls(10..60)).collect();
    let handle = Pipeline::new(cfg)
        .unwrap()
        .spawn(Source::Urls(urls))
        .unwrap();
    let started = Instant::now();
    let answered = healthy.requests();
    while answered() < 10 || stalling.held.load(Ordering::Relaxed) < 4 {
        assert!(started.elapsed() < EXIT_DEADLINE, "requests never went out");
        std::thread::sleep(Duration::from_millis(20));
    }
    let summary = handle.shutdown().unwrap();
    assert!(summary.interrupted, "{summary}");
    assert_eq!(summary.fetch.delivered, 10, "{summary}");
    assert_eq!(summary.fetch.failed, 0, "{summary}");
    assert_eq!(summary.fetch.cancelled, 50, "{summary}");
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.records_written, 10, "{summary}");
    // No request the stop cancelled went out after the stop: only the four on the wire.
    assert_eq!(stalling.held.load(Ordering::Relaxed), 4);
}

/// A library shutdown while a producer keeps pushing: the feeder saw the stop only when a
/// wait for the next push timed out (50 ms), so a producer pushing more often than that kept
/// the run, and `shutdown`, going for as long as it pushed. Now the shutdown returns, every
/// push the run took is written, and the producer's later pushes are handed back (closed).
#[test]
fn a_library_shutdown_returns_while_a_producer_keeps_pushing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pushed.parquet");
    let (input, handle) = pinflow::push::channel(64);
    let run = Pipeline::new(Config::new(&out))
        .unwrap()
        .spawn(Source::Push(input))
        .unwrap();
    let stop_pushing = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop_pushing = Arc::clone(&stop_pushing);
        std::thread::spawn(move || {
            let (mut accepted, mut refused) = (0u64, 0u64);
            let mut id = 0u64;
            // Bounded: ends when told to, or after at most 10 minutes of pushing.
            let started = Instant::now();
            while !stop_pushing.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(600)
            {
                let body = format!(r#"{{"id":{id},"ts":"2024-05-01T12:00:00Z","values":[1.0]}}"#);
                match handle.push(body) {
                    Ok(()) => accepted += 1,
                    Err(_) => refused += 1,
                }
                id += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (accepted, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(run.shutdown().map(|s| s.records_written));
    });
    let written = finished.recv_timeout(EXIT_DEADLINE);
    stop_pushing.store(true, Ordering::Relaxed);
    let (accepted, refused) = producer.join().unwrap();
    let written = written
        .expect("shutdown did not return while a producer kept pushing")
        .unwrap();
    assert!(refused > 0, "pushes after the stop are refused");
    assert_eq!(written, accepted, "every push the run took is written");
    assert_eq!(crate::common::ids(&out).len() as u64, accepted);
}

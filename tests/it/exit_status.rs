//! The exit status says what happened (issue 17, items 2 and 4): records dead-lettered beyond
//! `--max-dead-letters` exit 4, a one-shot run stopped with work left exits 5 and says how much
//! was not fetched, a stopped continuous run still exits 0; an existing output file is not
//! replaced unless `--overwrite`, and the temporary files of killed runs are cleaned up.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

fn pinflow() -> Command {
    pinflow_piped()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A server answering `GET /N` with `{"id":N}`, or with a body that is not JSON for
/// `N < bad`. Returns its base URL and a count of the requests it received.
fn server(bad: u64) -> (String, impl Fn() -> usize) {
    let (base, heads) = http_server(move |path, _| {
        let n: u64 = path.trim_start_matches('/').parse().unwrap_or(0);
        let body = match n < bad {
            true => "{not json".to_string(),
            false => format!("{{\"id\":{n}}}"),
        };
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    (base, move || heads.lock().unwrap().len())
}

/// `pinflow run` over `/0` .. `/9` of `base` into `out`, with `extra` flags.
fn run_ten(base: &str, out: &Path, extra: &[&str]) -> Output {
    pinflow()
        .args([
            "run",
            "--urls",
            &format!("{base}/{{0..9}}"),
            "--progress",
            "never",
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_run_whose_every_record_is_dead_lettered_exits_4_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = server(10);
    let o = run_ten(&base, &dir.path().join("t.parquet"), &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("10 of 10 records dead-lettered, beyond the tolerance of 0"),
        "{stdout}"
    );
}

#[test]
fn max_dead_letters_100_percent_lets_an_all_bad_run_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = server(10);
    let o = run_ten(
        &base,
        &dir.path().join("t.parquet"),
        &["--max-dead-letters", "100%"],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("within the tolerance of 100%"), "{stdout}");
}

#[test]
fn max_dead_letters_5_tolerates_3_bad_records_but_not_6() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, code) in [(3, 0), (6, 4)] {
        let (base, _) = server(bad);
        let out = dir.path().join(format!("t{bad}.parquet"));
        let o = run_ten(&base, &out, &["--max-dead-letters", "5"]);
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{bad} bad\n{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("{bad} of 10 records dead-lettered")),
            "{stdout}"
        );
        assert_eq!(
            ids(&out).len(),
            10 - bad as usize,
            "the good rows are written"
        );
    }
    // The tolerance is checked before the run, like every option's value.
    let (base, requests) = server(0);
    let o = run_ten(
        &base,
        &dir.path().join("x.parquet"),
        &["--max-dead-letters", "5 records"],
    );
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--max-dead-letters") && stderr.contains("is not a tolerance"),
        "{stderr}"
    );
    assert_eq!(requests(), 0);
}

#[test]
fn a_one_shot_run_stopped_with_work_left_exits_5_and_says_how_much_was_not_fetched() {
    let dir = tempfile::tempdir().unwrap();
    // `/0` .. `/99` are answered; from `/100` on requests are held unanswered while `stall`.
    let stall = Arc::new(AtomicBool::new(true));
    let held = Arc::new(AtomicUsize::new(0));
    let (st, he) = (Arc::clone(&stall), Arc::clone(&held));
    let (base, heads) = http_server(move |path, _| {
        let n: u64 = path.trim_start_matches('/').parse().unwrap_or(0);
        if n >= 100 {
            he.fetch_add(1, Ordering::Relaxed);
            while st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let body = format!("{{\"id\":{n}}}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let mut child = pinflow()
        .args(["run", "--urls", &format!("{base}/{{0..2099}}")])
        .args(["--shutdown-timeout", "2s", "--progress", "never", "--out"])
        .arg(dir.path().join("t.parquet"))
        // One connection: the first 100 are answered in order before any held one is sent.
        .args(["--connections-per-host", "1"])
        .spawn()
        .unwrap();
    let answered = move || heads.lock().unwrap().len();
    wait_for_child(&mut child, "100 answered and one held", || {
        answered() > 100 && held.load(Ordering::Relaxed) >= 1
    });
    let o = sigterm_and_wait(child);
    stall.store(false, Ordering::Relaxed);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("stopped early: 2000 of 2100 requests not fetched"),
        "{stdout}"
    );
    assert!(stdout.contains("--journal"), "{stdout}");
    assert_eq!(ids(&dir.path().join("t.parquet")).len(), 100);
}

#[test]
fn a_stopped_continuous_run_still_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (base, requests) = server(0);
    let mut child = pinflow()
        .args([
            "run",
            "--urls",
            &format!("{base}/{{0..9}}"),
            "--every",
            "1s",
        ])
        .args(["--shutdown-timeout", "2s", "--progress", "never", "--out"])
        .arg(dir.path().join("t.parquet"))
        .spawn()
        .unwrap();
    wait_for_child(&mut child, "two passes", || requests() >= 20);
    let o = sigterm_and_wait(child);
    let (stdout, stderr) = text(&o);
    // A stop is how continuous mode ends: not work left undone, not a failure for systemd.
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("not fetched"), "{stdout}");
}

#[test]
fn a_second_run_to_the_same_out_is_refused_before_fetching_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let (base, requests) = server(0);
    let first = run_ten(&base, &out, &[]);
    assert_eq!(first.status.code(), Some(0), "{:?}", text(&first));
    assert!(!text(&first).0.contains("replaced"));
    let before = std::fs::read(&out).unwrap();

    // Another run, of other URLs, to the same file.
    let again = |extra: &[&str]| {
        pinflow()
            .args(["run", "--urls", &format!("{base}/{{100..104}}")])
            .args(["--progress", "never", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let second = again(&[]);
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&out.display().to_string())
            && stderr.contains("already exists")
            && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(requests(), 10, "refused before anything was fetched");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the first file is untouched"
    );

    let third = again(&["--overwrite"]);
    let (stdout, stderr) = text(&third);
    assert_eq!(third.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "replaced   the file that was at {}",
            out.display()
        )),
        "{stdout}"
    );
    let mut got = ids(&out);
    got.sort_unstable();
    assert_eq!(got, (100..105).collect::<Vec<i64>>());
}

#[test]
fn a_dead_runs_temporary_file_is_removed_and_reported_a_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    // A process that has ended (and been reaped): its pid runs nothing now.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let dead = dir.path().join(format!(".t.parquet.tmp-{dead_pid}"));
    let live = dir
        .path()
        .join(format!(".t.parquet.tmp-{}", std::process::id()));
    let other = dir.path().join(format!(".other.parquet.tmp-{dead_pid}"));
    for f in [&dead, &live, &other] {
        std::fs::write(f, b"PAR1 half a file").unwrap();
    }
    let (base, _) = server(0);
    let o = run_ten(&base, &out, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!dead.exists(), "a dead run's temporary file is removed");
    assert!(live.exists(), "a live process's temporary file is kept");
    assert!(
        other.exists(),
        "another output's temporary file is not this run's"
    );
    assert!(stdout.contains("cleaned    1 temporary file"), "{stdout}");
    assert!(stderr.contains(&dead.display().to_string()), "{stderr}");
    assert_eq!(ids(&out).len(), 10);
}

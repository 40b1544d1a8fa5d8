//! Crash safety and resume: a run killed with SIGKILL at random points leaves only complete
//! Parquet files, and the same command run again finishes with every record exactly once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Deterministic kill points (xorshift) within a run.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `pinflow run --files INPUT --out OUT --journal --rotate-rows ROWS --progress never`: the
/// command the kill-and-resume tests run again and again.
pub(crate) fn journal_run_args(input: &Path, out: &Path, rotate_rows: u64) -> Vec<String> {
    let (input, out) = (input.display().to_string(), out.display().to_string());
    let rows = rotate_rows.to_string();
    [
        "run",
        "--files",
        &input,
        "--out",
        &out,
        "--journal",
        "--rotate-rows",
        &rows,
    ]
    .into_iter()
    .chain(["--progress", "never"])
    .map(String::from)
    .collect()
}

/// Runs `args` (plus `env`), killing it after `kill_after` if given. Returns whether it was
/// killed before finishing.
pub(crate) fn run_once(
    args: &[String],
    env: &[(&str, &str)],
    kill_after: Option<Duration>,
) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Some(after) = kill_after else {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "pinflow {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return false;
    };
    let started = Instant::now();
    while started.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

/// Kills the command `kills` times at random points, checking after each that every final
/// file reads back completely, then lets it finish; returns the ids across all final files.
pub(crate) fn kill_and_resume(
    dir: &Path,
    args: &[String],
    env: &[(&str, &str)],
    kills: usize,
    seed: u64,
) -> Vec<i64> {
    // Kill times are fractions of how long the whole command takes on this machine now (a
    // debug build on a busy CI machine is many times slower than a quiet release one), found
    // by one uninterrupted run of the same command into a scratch directory. The first kill
    // lands in the first 30 % of a run so that at least one run dies mid-way.
    // The same layout one level down (a partitioned output's journal sits beside its root).
    let scratch = tempfile::tempdir().unwrap();
    let scratch_dir = scratch.path().join(dir.file_name().unwrap());
    std::fs::create_dir(&scratch_dir).unwrap();
    let (from, to) = (dir.to_str().unwrap(), scratch_dir.to_str().unwrap());
    let scratch_args: Vec<String> = args.iter().map(|a| a.replace(from, to)).collect();
    let started = Instant::now();
    run_once(&scratch_args, env, None);
    let full_ms = started.elapsed().as_millis().max(40) as u64;
    drop(scratch);
    let mut rng = Rng(seed);
    let mut killed = 0;
    for k in 0..kills {
        let at_ms = if k == 0 {
            full_ms / 20 + rng.below(full_ms / 4)
        } else {
            full_ms / 20 + rng.below(full_ms * 85 / 100)
        };
        let at = Duration::from_millis(at_ms.max(5));
        if run_once(args, env, Some(at)) {
            killed += 1;
        }
        for f in final_parquet_files(dir) {
            // Panics on a partial or corrupt file.
            read_parquet(&f);
        }
    }
    assert!(
        killed > 0,
        "no run was killed mid-way; the test proves nothing"
    );
    run_once(args, env, None);
    let mut all = Vec::new();
    for f in final_parquet_files(dir) {
        all.extend(ids(&f));
    }
    all.sort_unstable();
    all
}

/// `sorted` holds each id of `want` exactly once (says how it does not, without printing every id).
pub(crate) fn assert_exactly_once(sorted: &[i64], want: std::ops::Range<i64>) {
    let dups = sorted.windows(2).filter(|w| w[0] == w[1]).count();
    let mut uniq = sorted.to_vec();
    uniq.dedup();
    let missing = want
        .clone()
        .filter(|i| uniq.binary_search(i).is_err())
        .count();
    let extra = uniq.iter().filter(|i| !want.contains(i)).count();
    assert!(
        dups == 0 && missing == 0 && extra == 0,
        "{} rows: {dups} duplicates, {missing} missing, {extra} unexpected",
        sorted.len()
    );
}

#[test]
fn a_file_source_killed_at_random_points_resumes_to_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let n = 200_000i64;
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"service\":\"s{}\",\"values\":[{i},1,2]}}\n",
                i % 9
            )
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let args = journal_run_args(&input, &out_dir.join("logs.parquet"), 10_000);
    // Small chunks and batches: many checkpoints and many kill points between them.
    let env = [("PINFLOW_FETCH_BATCH_MAX_BYTES", "16384")];
    let all = kill_and_resume(&out_dir, &args, &env, 8, 0x5EED_1234);
    assert_exactly_once(&all, 0..n);
    assert!(dir.path().join("out/logs.parquet.journal").exists());
    // Running it again finds nothing left to do and writes nothing: every file in the output
    // directory, the journal included, has the same bytes afterwards.
    let journal = dir.path().join("out/logs.parquet.journal");
    let (files_before, journal_before) =
        (content_hashes(&out_dir), std::fs::read(&journal).unwrap());
    run_once(&args, &env, None);
    let journal_after = std::fs::read(&journal).unwrap();
    assert_eq!(journal_after.len(), journal_before.len(), "journal length");
    assert!(journal_after == journal_before, "journal bytes changed");
    assert_eq!(content_hashes(&out_dir), files_before);
}

/// Each file under `dir` (recursively, hidden ones too) by path: its length and a hash of its
/// bytes.
fn content_hashes(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, (u64, u64)> {
    use std::hash::{DefaultHasher, Hasher};
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(content_hashes(&p));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            let mut h = DefaultHasher::new();
            h.write(&bytes);
            out.insert(p, (bytes.len() as u64, h.finish()));
        }
    }
    out
}

#[test]
fn a_partitioned_output_killed_at_random_points_resumes_to_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let n = 60_000i64;
    let text: String = (0..n)
        .map(|i| format!("{{\"id\":{i},\"service\":\"svc-{}\"}}\n", i % 7))
        .collect();
    std::fs::write(&input, text).unwrap();
    let root = dir.path().join("dataset");
    let args: Vec<String> = [
        "run",
        "--files",
        input.to_str().unwrap(),
        "--out",
        root.to_str().unwrap(),
        "--partition-by",
        "service",
        "--max-open-partitions",
        "3",
        "--journal",
        "--progress",
        "never",
    ]
    .map(String::from)
    .to_vec();
    let env = [("PINFLOW_FETCH_BATCH_MAX_BYTES", "8192")];
    std::fs::create_dir(&root).unwrap();
    let all = kill_and_resume(&root, &args, &env, 6, 0xABCD);
    assert_exactly_once(&all, 0..n);
    // Each file holds one service only.
    for f in final_parquet_files(&root) {
        let dir = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for id in ids(&f) {
            assert_eq!(dir, format!("service=svc-{}", id % 7));
        }
    }
}

#[test]
fn an_http_source_killed_at_random_points_resumes_to_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30_000i64;
    let args: Vec<String> = [
        "demo",
        "--records",
        &n.to_string(),
        "--out",
        dir.path().join("d.parquet").to_str().unwrap(),
        "--journal",
        "--rotate-rows",
        "2000",
        "--progress",
        "never",
    ]
    .map(String::from)
    .to_vec();
    let all = kill_and_resume(dir.path(), &args, &[], 5, 0xC0FFEE);
    assert_exactly_once(&all, 1..n + 1);
}

#[test]
fn a_journal_refuses_another_command() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.ndjson");
    std::fs::write(&input, "{\"id\":1}\n").unwrap();
    let out = dir.path().join("o.parquet");
    let run_chunked = |files: &Path, chunk: &str| {
        Command::new(env!("CARGO_BIN_EXE_pinflow"))
            .args(["run", "--journal", "--files"])
            .arg(files)
            .arg("--out")
            .arg(&out)
            .env("PINFLOW_FETCH_BATCH_MAX_BYTES", chunk)
            .output()
            .unwrap()
    };
    let run = |files: &Path| run_chunked(files, "65536");
    assert!(run(&input).status.success());
    // Other chunk boundaries would make other work items of the same file: refused too.
    let o = run_chunked(&input, "131072");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("chunk_bytes=65536"), "{err}");
    let other = dir.path().join("b.ndjson");
    std::fs::write(&other, "{\"id\":2}\n").unwrap();
    let o = run(&other);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("journal") && err.contains("another command"),
        "{err}"
    );
}

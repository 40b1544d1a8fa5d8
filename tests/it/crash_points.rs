//! Targeted crash points (src/failpoint.rs, cargo feature `failpoints`): the binary aborts
//! exactly at a named point (`PINFLOW_FAILPOINT=NAME@N`), the same command is run again, and
//! the final files hold every record exactly once, counted by readers independent of the
//! parquet crate that wrote them (pyarrow and DuckDB, tools/interop/exactly_once.py). A third
//! run then finds nothing to do and changes no byte: no temporary file or lock is left that
//! would break it.
//!
//! Run with `cargo test --features failpoints --test it crash_points`. The readers live in
//! the interop check's virtual environment (target/interop-venv, tools/interop-check.sh),
//! created here the same way when missing; without Python the tests say so and skip, unless
//! `CI_REQUIRE_PYARROW=1` (as .ci/run sets), which makes that a failure.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// Records in each test's input; ids 0..N.
const N: i64 = 20_000;

/// The interop check's Python with pyarrow and DuckDB.
fn python() -> Option<&'static Path> {
    interop_python("crash_points")
}

/// One run's input and output: `N` records over `services` services, in a scratch directory.
struct Case {
    _dir: tempfile::TempDir,
    out_dir: PathBuf,
    args: Vec<String>,
}

impl Case {
    /// `extra`: the output's flags (`--out` is added: `out/logs.parquet`, or the directory
    /// `out` itself with `--partition-by`).
    fn new(services: i64, extra: &[&str]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.ndjson");
        let text: String = (0..N)
            .map(|i| {
                format!(
                    "{{\"id\":{i},\"service\":\"svc-{}\",\"values\":[{i},1,2]}}\n",
                    i % services
                )
            })
            .collect();
        std::fs::write(&input, text).unwrap();
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let out = match extra.contains(&"--partition-by") {
            true => out_dir.clone(),
            false => out_dir.join("logs.parquet"),
        };
        let mut args: Vec<String> = [
            "run",
            "--files",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--journal",
            "--row-group-rows",
            "500",
            "--progress",
            "never",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        Case {
            _dir: dir,
            out_dir,
            args,
        }
    }

    /// Runs the command, with `point` (`NAME@N`) armed if given.
    fn run(&self, point: Option<&str>) -> Output {
        let mut c = pinflow_piped();
        c.args(&self.args)
            // Small chunks: many work items, batches and checkpoints in one run.
            .env("PINFLOW_FETCH_BATCH_MAX_BYTES", "16384");
        if let Some(p) = point {
            c.env("PINFLOW_FAILPOINT", p);
        }
        c.output().unwrap()
    }

    /// Runs the command with `point` armed and checks that it aborted there.
    fn crash_at(&self, point: &str) {
        let o = self.run(Some(point));
        let stderr = String::from_utf8_lossy(&o.stderr);
        let name = point.split('@').next().unwrap();
        assert_eq!(
            o.status.signal(),
            Some(libc_sigabrt()),
            "{point}: expected an abort (SIGABRT), got {}\n{stderr}",
            o.status
        );
        assert!(
            stderr.contains(&format!("fail point {name} reached")),
            "{point}: aborted, but not at the fail point\n{stderr}"
        );
    }

    /// Runs the command with nothing armed; it must succeed. Returns its standard error.
    fn finish(&self) -> String {
        let o = self.run(None);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{}\n{stderr}", o.status);
        stderr
    }

    /// Every record exactly once in the final files, by pyarrow and by DuckDB; no temporary
    /// file left; and a third run changes nothing (no stale file or lock breaks it).
    fn check_exactly_once(&self, py: &Path) {
        let counts = count_ids(py, &self.out_dir);
        for v in &counts {
            let count = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
            assert!(count("files") > 0, "{v}");
            assert_eq!(
                (
                    count("rows"),
                    count("duplicates"),
                    count("missing"),
                    count("unexpected")
                ),
                (N as u64, 0, 0, 0),
                "{v}"
            );
        }
        let temps: Vec<String> = all_files(&self.out_dir)
            .into_keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|name| name.contains(".tmp") || name.ends_with(".lock"))
            .collect();
        assert!(temps.is_empty(), "temporary or lock files left: {temps:?}");
        let before = all_files(&self.out_dir);
        self.finish();
        let after = all_files(&self.out_dir);
        let changed: Vec<&PathBuf> = before
            .keys()
            .chain(after.keys())
            .filter(|p| before.get(*p) != after.get(*p))
            .collect();
        assert!(changed.is_empty(), "a third run changed {changed:?}");
    }
}

/// What pyarrow and DuckDB count in the final files under `dir` against the ids 0..N
/// (tools/interop/exactly_once.py): one JSON object per reader. Fails the test on a file
/// either cannot read.
fn count_ids(py: &Path, dir: &Path) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/interop/exactly_once.py");
    let o = std::process::Command::new(py)
        .arg(&script)
        .arg(dir)
        .arg(N.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{}\n{stdout}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let counts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let readers: Vec<&str> = counts.iter().filter_map(|v| v["reader"].as_str()).collect();
    assert_eq!(readers, ["pyarrow", "duckdb"], "{stdout}");
    counts
}

/// SIGABRT (6 on every Unix pinflow builds for).
fn libc_sigabrt() -> i32 {
    6
}

/// Every file under `dir`, hidden ones and the journal too, with its bytes.
fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// How many final files the output directory holds.
fn finals(case: &Case) -> usize {
    final_parquet_files(&case.out_dir).len()
}

#[test]
fn an_abort_after_a_row_group_before_its_journal_line_loses_and_duplicates_nothing() {
    let Some(py) = python() else { return };
    let case = Case::new(5, &["--rotate-rows", "4000"]);
    // Row group 3: checkpoint 1 (4000 rows, 8 groups) is not reached yet.
    case.crash_at("writer.after_row_group@3");
    assert_eq!(
        finals(&case),
        0,
        "nothing was committed, nothing may be final"
    );
    case.finish();
    case.check_exactly_once(py);
}

#[test]
fn an_abort_between_sealing_and_the_journal_line_loses_and_duplicates_nothing() {
    let Some(py) = python() else { return };
    let case = Case::new(5, &["--rotate-rows", "4000"]);
    // Checkpoint 1 is done; checkpoint 2's file is complete and fsynced, but uncommitted.
    case.crash_at("writer.before_commit@2");
    assert_eq!(finals(&case), 1, "checkpoint 1's file only");
    case.finish();
    case.check_exactly_once(py);
}

#[test]
fn an_abort_between_the_journal_line_and_the_rename_loses_and_duplicates_nothing() {
    let Some(py) = python() else { return };
    let case = Case::new(5, &["--rotate-rows", "4000"]);
    // Checkpoint 2 is committed but its file still has its temporary name: the next run
    // must rename it, not fetch its items again.
    case.crash_at("writer.after_commit@2");
    assert_eq!(finals(&case), 1, "checkpoint 2 is not renamed yet");
    case.finish();
    case.check_exactly_once(py);
}

#[test]
fn an_abort_between_the_renames_of_one_checkpoint_loses_and_duplicates_nothing() {
    let Some(py) = python() else { return };
    // Five partitions, all open: each checkpoint commits five files.
    let case = Case::new(
        5,
        &["--partition-by", "service", "--max-open-partitions", "8"],
    );
    case.crash_at("writer.mid_publish@2");
    assert_eq!(finals(&case), 2, "two of the first checkpoint's files");
    case.finish();
    case.check_exactly_once(py);
}

#[test]
fn an_abort_during_recovery_itself_is_recovered_by_the_next_run() {
    let Some(py) = python() else { return };
    let case = Case::new(
        5,
        &["--partition-by", "service", "--max-open-partitions", "8"],
    );
    // A committed checkpoint of five files, none renamed ...
    case.crash_at("writer.after_commit@1");
    assert_eq!(finals(&case), 0);
    // ... then the run that finishes it dies after renaming two of them ...
    case.crash_at("journal.recover@2");
    assert_eq!(
        finals(&case),
        2,
        "recovery renamed two files before the abort"
    );
    // ... and the next one finishes the rest.
    case.finish();
    case.check_exactly_once(py);
}

#[test]
fn an_abort_while_evicting_a_partition_loses_and_duplicates_nothing() {
    let Some(py) = python() else { return };
    // Seven services, three open files: with a journal, the checkpoint after a batch that
    // opened a fourth partition seals (evicts) them all. The abort comes after the second
    // file of such a checkpoint is sealed, before its journal line.
    let case = Case::new(
        7,
        &["--partition-by", "service", "--max-open-partitions", "3"],
    );
    case.crash_at("output.evict@2");
    case.finish();
    case.check_exactly_once(py);
}

#[test]
fn without_a_journal_an_abort_while_evicting_leaves_only_whole_files() {
    // Without a journal there is no exactly-once (a rerun writes everything again); the
    // promise is that no partial file appears under a final name.
    let Some(py) = python() else { return };
    let case = Case::new(
        7,
        &["--partition-by", "service", "--max-open-partitions", "3"],
    );
    let args: Vec<String> = case
        .args
        .iter()
        .filter(|a| *a != "--journal")
        .cloned()
        .collect();
    let o = pinflow_piped()
        .args(&args)
        .env("PINFLOW_FETCH_BATCH_MAX_BYTES", "16384")
        .env("PINFLOW_FAILPOINT", "output.evict@1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.signal(),
        Some(libc_sigabrt()),
        "{}\n{stderr}",
        o.status
    );
    assert!(
        stderr.contains("fail point output.evict reached"),
        "{stderr}"
    );
    assert_eq!(finals(&case), 1, "the evicted file, and only it, is final");
    // (count_ids fails on a file the readers cannot read; the counts are not exactly-once.)
    for v in count_ids(py, &case.out_dir) {
        assert!(v["rows"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["duplicates"].as_u64(), Some(0), "{v}");
    }
}

#[test]
fn an_unknown_fail_point_is_refused_by_name() {
    let case = Case::new(1, &[]);
    let o = case.run(Some("writer.nowhere"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && o.status.signal().is_none(),
        "{}",
        o.status
    );
    assert!(
        stderr.contains("PINFLOW_FAILPOINT") && stderr.contains("`writer.nowhere`"),
        "{stderr}"
    );
}

/// The object-storage output's points: files staged, a run uploading them aborts at `point`,
/// the next run finishes, and every record is in exactly one object, no multipart upload is
/// open and nothing is left staged (tests/it/s3.rs, `StagedCase`). The next run says it
/// took the path `settled` names (resumed, found the object, aborted the orphan).
#[cfg(feature = "s3")]
fn s3_abort_at(point: &str, settled: &str) {
    use crate::s3::{Moto, StagedCase};
    let Some(moto) = Moto::start(&format!("crash point {point}")) else {
        return;
    };
    let bucket = "pinflow-crash";
    moto.create_bucket(bucket);
    let case = StagedCase::new(12_000);
    let o = case
        .command(&moto.endpoint(), bucket)
        .env("PINFLOW_FAILPOINT", point)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), Some(libc_sigabrt()), "{err}");
    assert!(
        err.contains(&format!("fail point {point} reached")),
        "{err}"
    );
    let err = case.finish_and_check(&moto, bucket, point);
    assert!(
        err.contains(settled),
        "{point}: expected `{settled}` in:\n{err}"
    );
}

#[cfg(feature = "s3")]
#[test]
fn an_abort_after_a_multipart_upload_is_created_before_it_is_recorded_leaves_no_orphan() {
    s3_abort_at(
        "objstore.after_create",
        "aborting a multipart upload an earlier run left",
    );
}

#[cfg(feature = "s3")]
#[test]
fn an_abort_after_a_part_is_stored_before_it_is_recorded_loses_and_duplicates_nothing() {
    s3_abort_at("objstore.after_part", "resuming a multipart upload");
}

#[cfg(feature = "s3")]
#[test]
fn an_abort_after_an_object_completes_before_it_is_recorded_uploads_it_once() {
    s3_abort_at(
        "objstore.after_complete",
        "found this file's object in the store",
    );
}

#[cfg(feature = "s3")]
#[test]
fn an_abort_after_an_upload_is_recorded_before_the_local_copy_goes_uploads_it_once() {
    s3_abort_at(
        "objstore.after_uploaded",
        "an earlier run uploaded this file (its state says so)",
    );
}

//! A full disk with the resume journal on (issue 23, "Gaps"): a real ENOSPC from a small tmpfs
//! (not RLIMIT_FSIZE), in the Parquet files and in the journal append itself. The run stops
//! with the path and the error, leaves nothing partial under a final name and a journal the
//! next run accepts; the same command run again once there is room writes every record exactly
//! once.
//!
//! Mounting needs root (CAP_SYS_ADMIN): where it is not permitted the tests say so and pass,
//! unless `CI_REQUIRE_MOUNT=1` (set by .ci/run, whose machine runs them as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;

/// A tmpfs mounted for one test; unmounted (lazily, so that a failed test cannot leave it
/// busy) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on the directory `dir`, made
    /// here; `None` when mounting is not permitted.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !o.status.success() {
            eprintln!("mount: {}", String::from_utf8_lossy(&o.stderr).trim());
            return None;
        }
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Mounts a tmpfs, or says why the test is skipped (see the module documentation).
fn tmpfs(dir: &Path, size: &str) -> Option<Tmpfs> {
    let fs = Tmpfs::mount(dir, size);
    if skip_unless(fs.is_some(), "CI_REQUIRE_MOUNT", "mounting a tmpfs") {
        return None;
    }
    fs
}

/// Pseudo-random hex (xorshift): text that does not compress, so that the Parquet output is
/// about as large as its values.
fn noise(state: &mut u64) -> String {
    let mut s = String::with_capacity(32);
    for _ in 0..2 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        s.push_str(&format!("{:016x}", *state));
    }
    s
}

/// `n` NDJSON records with ids 0..n, spread over `services` services.
fn records(n: usize, services: usize) -> String {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|i| {
            let msg = noise(&mut state);
            format!(
                "{{\"id\":{i},\"service\":\"s{:03}\",\"message\":\"{msg}\"}}\n",
                i % services
            )
        })
        .collect()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The names of the temporary files left under `dir`, in subdirectories too.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(temporaries(&p));
        } else if p.to_string_lossy().contains(".tmp-") {
            out.push(p.display().to_string());
        }
    }
    out
}

const NO_SPACE: &str = "No space left on device";

#[test]
fn a_full_disk_stops_the_journal_run_and_the_rerun_after_growing_it_writes_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = tmpfs(&dir.path().join("mnt"), "2m") else {
        return;
    };
    // About 5 MB of Parquet (incompressible messages) for a 2 MB file system; the input
    // itself is on the ordinary disk.
    let n = 200_000;
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, records(n, 7)).unwrap();
    let out = fs.dir.join("logs.parquet");
    let run = || {
        pinflow_piped()
            .args([
                "run",
                "--journal",
                "--rotate-rows",
                "10000",
                "--progress",
                "never",
            ])
            .arg("--files")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    let mnt = fs.dir.display().to_string();
    assert!(
        stderr.contains(NO_SPACE) && stderr.contains(&mnt),
        "the error names the path and the cause: {stderr}"
    );
    // Checkpoints before the disk filled are under their final names, whole; nothing
    // partial is left behind, under a final name or a temporary one.
    let before = all_final_ids(&fs.dir);
    assert!(
        !before.is_empty(),
        "no checkpoint before the disk filled: {stderr}"
    );
    assert!(before.len() < n, "the disk never filled");
    assert!(
        before.windows(2).all(|w| w[0] < w[1]),
        "a row written twice"
    );
    assert_eq!(temporaries(&fs.dir), Vec::<String>::new());
    // Room again: the same command finishes the work, trusting the journal as it is.
    fs.resize("64m");
    let o = run();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        all_final_ids(&fs.dir),
        (0..n as i64).collect::<Vec<_>>(),
        "every record exactly once"
    );
}

/// Fills the file system holding `dir` to the last page with a file there.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    for size in [chunk.len(), 4096, 1] {
        loop {
            match f.write(&chunk[..size]) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    path
}

#[test]
fn a_journal_append_that_meets_a_full_disk_stops_the_run_and_the_rerun_writes_each_record_once() {
    // The journal of a partitioned output sits beside its root directory: the root is a file
    // system of its own, with room, and the journal's is filled to the last page once the run
    // has created the journal. The run's one checkpoint (at the end of its input) names one
    // file per partition, a line of many pages: its append cannot fit, whatever is left of
    // the journal's last page, and may leave a line cut short, as a crash mid-append would.
    let dir = tempfile::tempdir().unwrap();
    let Some(outer) = tmpfs(&dir.path().join("mnt"), "1m") else {
        return;
    };
    let root = outer.dir.join("data");
    let Some(inner) = tmpfs(&root, "64m") else {
        return;
    };
    let (n, services) = (6_000, 300);
    let input = records(n, services);
    let journal = outer.dir.join("data.journal");
    let run = |fill_first: bool| -> Output {
        let mut child = pinflow_piped()
            .args(["run", "--journal", "--files", "-", "--progress", "never"])
            .args(["--partition-by", "service", "--max-open-partitions", "1000"])
            .arg("--out")
            .arg(&root)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_child(&mut child, "the journal is created", || journal.exists());
        let filler = fill_first.then(|| fill(&outer.dir));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        if let Some(filler) = filler {
            std::fs::remove_file(filler).unwrap();
        }
        o
    };
    let o = run(true);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(NO_SPACE) && stderr.contains(&journal.display().to_string()),
        "the error names the journal and the cause: {stderr}"
    );
    // Nothing was committed, so nothing is under a final name, and the sealed temporary
    // files were removed.
    assert_eq!(all_final_ids(&inner.dir), Vec::<i64>::new());
    assert_eq!(temporaries(&inner.dir), Vec::<String>::new());
    let o = run(false);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        all_final_ids(&inner.dir),
        (0..n as i64).collect::<Vec<_>>(),
        "every record exactly once"
    );
    assert_eq!(final_parquet_files(&inner.dir).len(), services);
    // The journal now ends with the rerun's whole checkpoint line.
    let bytes = std::fs::read(&journal).unwrap();
    assert!(bytes.ends_with(b"\n"), "the journal ends mid-line");
}

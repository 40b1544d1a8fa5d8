//! The resume journal is not trusted blindly (issue 16, item 3): a journal that does not check
//! out (forged names, truncated, emptied, cut, garbage) or whose files changed (one deleted or
//! resized) stops the run before anything is fetched, renamed or deleted, with what is wrong,
//! where (`PATH:LINE`) and how to start afresh; never a silent redo. The one damage a crash
//! causes, a last line torn while it was appended, is still resumed from.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::*;

/// A command run to the end with a journal, and what it left.
struct Finished {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    n: i64,
}

impl Finished {
    /// `n` records from a file, many checkpoints (1,000 rows each).
    fn files(n: i64) -> Finished {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.ndjson");
        let text: String = (0..n).map(|i| format!("{{\"id\":{i}}}\n")).collect();
        std::fs::write(&input, text).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let out = dir.path().join("out/logs.parquet");
        let args = [
            "run",
            "--files",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--journal",
            "--rotate-rows",
            "1000",
            "--progress",
            "never",
        ];
        Finished::start(
            dir,
            &args,
            vec![("PINFLOW_FETCH_BATCH_MAX_BYTES", "4096")],
            n,
        )
    }

    fn start(
        dir: tempfile::TempDir,
        args: &[&str],
        env: Vec<(&'static str, &'static str)>,
        n: i64,
    ) -> Finished {
        let f = Finished {
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            env,
            n,
        };
        let o = f.run();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            f.parquet().len() >= 2,
            "several checkpoints: {:?}",
            f.parquet()
        );
        f.assert_exactly_once();
        f
    }

    fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn journal(&self) -> PathBuf {
        self.out_dir().join("logs.parquet.journal")
    }

    fn run(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pinflow"))
            .args(&self.args)
            .envs(self.env.iter().copied())
            .output()
            .unwrap()
    }

    /// Runs the command against a damaged journal: it must fail with status 1 and leave every
    /// file of the output, the journal included, as it was. Returns the message.
    fn refused(&self) -> String {
        let before = self.snapshot();
        let o = self.run();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(self.snapshot(), before, "the output changed: {err}");
        assert!(err.contains("to start afresh"), "{err}");
        err
    }

    /// Every file of the output directory (hidden ones too) with its contents.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        dir_names(&self.out_dir())
            .into_iter()
            .map(|name| {
                let bytes = std::fs::read(self.out_dir().join(&name)).unwrap();
                (name, bytes)
            })
            .collect()
    }

    fn parquet(&self) -> Vec<PathBuf> {
        dir_names(&self.out_dir())
            .into_iter()
            .filter(|n| n.ends_with(".parquet") && !n.starts_with('.'))
            .map(|n| self.out_dir().join(n))
            .collect()
    }

    fn assert_exactly_once(&self) {
        let mut all: Vec<i64> = self.parquet().iter().flat_map(|f| ids(f)).collect();
        all.sort_unstable();
        let want: Vec<i64> = (0..self.n).collect();
        assert!(all == want, "{} rows for {} ids", all.len(), self.n);
    }

    fn lines(&self) -> Vec<Vec<u8>> {
        std::fs::read(self.journal())
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// A journal line as pinflow writes it: `body` (a JSON object without its closing brace)
/// sealed with its CRC-32, so that only the checks behind the checksum can refuse it.
fn sealed(body: &str) -> Vec<u8> {
    format!(
        "{body},\"crc32\":\"{:08x}\"}}\n",
        crc32fast::hash(body.as_bytes())
    )
    .into_bytes()
}

/// No byte that a terminal would act on: control characters (but the newlines between
/// messages) and DEL.
fn assert_no_control_bytes(err: &str) {
    let bad: Vec<u8> = err
        .bytes()
        .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
        .collect();
    assert!(bad.is_empty(), "raw control bytes {bad:?} in {err:?}");
}

#[test]
fn forged_journal_lines_cannot_rename_files_outside_the_output() {
    let f = Finished::files(5_000);
    let original = std::fs::read(f.journal()).unwrap();
    let next = f.lines().len();
    let secret = f.dir.path().join("secret");
    let stolen = f.dir.path().join("stolen");
    std::fs::write(&secret, "secret").unwrap();
    let forged = [
        // `..` out of the output directory.
        ("../secret".to_string(), "../stolen".to_string(), "`..`"),
        // Absolute paths.
        (
            secret.to_str().unwrap().to_string(),
            stolen.to_str().unwrap().to_string(),
            "absolute",
        ),
        // Inside the directory, but not a name this output gives its files.
        (
            ".logs.parquet.journal.tmp-1".to_string(),
            "logs.parquet".to_string(),
            "not a name this output gives its files",
        ),
    ];
    for (tmp, fin, why) in forged {
        let mut journal = original.clone();
        journal.extend(sealed(&format!(
            "{{\"checkpoint\":{next},\"files\":[[{tmp:?},{fin:?},6]],\"items\":\"999999\""
        )));
        std::fs::write(f.journal(), &journal).unwrap();
        let err = f.refused();
        let at = format!("logs.parquet.journal:{}:", next + 1);
        assert!(err.contains(&at) && err.contains(why), "{err}");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "secret");
        assert!(!stolen.exists());
    }
    std::fs::write(f.journal(), &original).unwrap();
    f.assert_exactly_once();
}

#[test]
fn a_truncated_journal_is_refused_and_no_row_is_written_twice() {
    let f = Finished::files(5_000);
    let original = std::fs::read(f.journal()).unwrap();
    let lines = f.lines();
    // Cut in the middle of a line (what `truncate -s` does), and at a line boundary (lines
    // dropped whole): either way the files of the lost lines are there, named by none.
    let at_boundary: usize = lines[..lines.len() - 2].iter().map(Vec::len).sum();
    for cut in [original.len() / 2, at_boundary] {
        std::fs::write(f.journal(), &original[..cut]).unwrap();
        let err = f.refused();
        assert!(
            err.contains("no line names it") && err.contains("logs-"),
            "{err}"
        );
        f.assert_exactly_once();
    }
}

#[test]
fn an_empty_journal_or_a_torn_header_is_refused_before_anything_is_fetched() {
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    let (base, _) = http_server(move |path, _| {
        count.fetch_add(1, Ordering::SeqCst);
        let i: u64 = path.trim_start_matches("/r/").parse().unwrap();
        let body = format!("{{\"id\":{i}}}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let template = format!("{base}/r/{{0..599}}");
    let out = dir.path().join("out/logs.parquet");
    let args = [
        "run",
        "--urls",
        &template,
        "--out",
        out.to_str().unwrap(),
        "--journal",
        "--rotate-rows",
        "100",
        "--progress",
        "never",
    ];
    let f = Finished::start(dir, &args, Vec::new(), 600);
    assert_eq!(served.load(Ordering::SeqCst), 600);
    let original = std::fs::read(f.journal()).unwrap();
    for (journal, want) in [(&original[..0], "empty"), (&original[..20], "incomplete")] {
        std::fs::write(f.journal(), journal).unwrap();
        let err = f.refused();
        assert!(
            err.contains("logs.parquet.journal:1: ") && err.contains(want),
            "{err}"
        );
        assert_eq!(served.load(Ordering::SeqCst), 600, "nothing fetched again");
    }
    f.assert_exactly_once();
}

#[test]
fn a_deleted_or_resized_final_file_is_refused_naming_it() {
    let f = Finished::files(5_000);
    let files = f.parquet();
    assert!(files.len() >= 3, "{files:?}");
    let gone = &files[1];
    let kept = std::fs::read(gone).unwrap();
    std::fs::remove_file(gone).unwrap();
    let name = gone.file_name().unwrap().to_str().unwrap();
    let err = f.refused();
    assert!(err.contains(name) && err.contains("is missing"), "{err}");
    std::fs::write(gone, &kept).unwrap();
    // One byte more: not the file that was committed.
    let changed = &files[2];
    let mut bytes = std::fs::read(changed).unwrap();
    let size = bytes.len();
    bytes.push(b'\n');
    std::fs::write(changed, &bytes).unwrap();
    let err = f.refused();
    let name = changed.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name) && err.contains(&format!("but {size} bytes were committed")),
        "{err}"
    );
    bytes.pop();
    std::fs::write(changed, &bytes).unwrap();
    // Put back, the journal checks out again and there is nothing left to do.
    let o = f.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    f.assert_exactly_once();
}

#[test]
fn a_garbage_journal_is_reported_without_raw_control_bytes() {
    let f = Finished::files(3_000);
    let original = std::fs::read(f.journal()).unwrap();
    let header = f.lines()[0].clone();
    let next = f.lines().len();
    // Binary garbage, terminal escapes and a long first line.
    let mut garbage = b"\x1b[2J\x1b]0;owned\x07\0\xff\xfe".to_vec();
    garbage.extend(std::iter::repeat_n(b'\x1b', 100_000));
    garbage.extend(b"\n\x1b[31m{\"checkpoint\":1}\n");
    // A checkpoint line with a valid checksum whose file name holds escapes (JSON-escaped in
    // the file, raw once decoded).
    let mut escaped_name = header.clone();
    escaped_name.extend(sealed(&format!(
        "{{\"checkpoint\":{next},\"files\":[[\".x.tmp-1\",\"logs-\\u001b[2J\\u0007\\u0000.parquet\",6]],\"items\":\"999999\""
    )));
    // A first line of this format whose `run` holds escapes.
    let other_run = sealed(
        "{\"pinflow_journal\":2,\"run\":\"source=\\u001b]0;x\\u0007; fields=\",\"started\":1",
    );
    for journal in [garbage, escaped_name, other_run] {
        std::fs::write(f.journal(), &journal).unwrap();
        let err = f.refused();
        assert_no_control_bytes(&err);
        assert!(
            err.contains("\\u{1b}"),
            "the escape is shown escaped: {err}"
        );
        assert!(err.len() < 2_000, "{} bytes of message", err.len());
    }
    std::fs::write(f.journal(), &original).unwrap();
    f.assert_exactly_once();
}

#[test]
fn a_line_torn_by_a_crash_while_appending_is_cut_off_and_the_run_resumes() {
    let f = Finished::files(3_000);
    let original = std::fs::read(f.journal()).unwrap();
    let next = f.lines().len();
    // What a crash in the middle of appending checkpoint `next` leaves: the start of its line,
    // and its sealed files under their temporary names.
    let torn = format!("{{\"checkpoint\":{next},\"files\":[[\".logs-2026");
    let mut journal = original.clone();
    journal.extend(torn.as_bytes());
    std::fs::write(f.journal(), &journal).unwrap();
    let tmp = f
        .out_dir()
        .join(".logs-20261124T100000Z-00099.parquet.tmp-4242");
    std::fs::write(&tmp, "sealed but never committed").unwrap();
    let o = f.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !tmp.exists(),
        "the uncommitted checkpoint's file is deleted"
    );
    assert_eq!(
        std::fs::read(f.journal()).unwrap(),
        original,
        "the torn line is cut off (and nothing was left to commit)"
    );
    f.assert_exactly_once();
}

/// The partitioned layout checks names the same way: its files are
/// `ROOT/NAME=VALUE/part-NNNNN.parquet`, and `..` cannot climb out of it.
#[test]
fn a_partitioned_outputs_journal_refuses_names_outside_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let text: String = (0..2_000)
        .map(|i| format!("{{\"id\":{i},\"service\":\"s{}\"}}\n", i % 3))
        .collect();
    std::fs::write(&input, text).unwrap();
    let root = dir.path().join("ds");
    let journal = dir.path().join("ds.journal");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_pinflow"))
            .args(["run", "--journal", "--partition-by", "service", "--files"])
            .arg(&input)
            .arg("--out")
            .arg(&root)
            .env("PINFLOW_FETCH_BATCH_MAX_BYTES", "4096")
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let original = std::fs::read(&journal).unwrap();
    let next = original.iter().filter(|&&b| b == b'\n').count();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "v").unwrap();
    let mut forged = original.clone();
    forged.extend(sealed(&format!(
        "{{\"checkpoint\":{next},\"files\":[[\"victim\",\"ds/service=s0/../../moved\",1]],\"items\":\"999999\""
    )));
    std::fs::write(&journal, &forged).unwrap();
    let o = run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("ds.journal:{}:", next + 1)) && err.contains("`..`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("the output directory {}", root.display())),
        "{err}"
    );
    assert!(victim.exists() && !dir.path().join("moved").exists());
    assert_eq!(std::fs::read(&journal).unwrap(), forged);
    let mut rows: Vec<i64> = final_parquet_files(&root)
        .iter()
        .flat_map(|f| ids(f))
        .collect();
    rows.sort_unstable();
    assert_eq!(rows, (0..2_000).collect::<Vec<i64>>());
}

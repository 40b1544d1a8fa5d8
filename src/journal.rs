//! The resume journal: which work items are safely in finalized files, so that a run killed at
//! any instant can be run again and finish with every record exactly once.
//!
//! With `writer.journal` on, the writer finalizes files only at *checkpoints*: every open file
//! is closed (footer written, fsynced) under its temporary name, then one JSON line is appended
//! to the journal and fsynced:
//!
//! ```text
//! {"checkpoint":3,"files":[[".logs-…-00003.parquet.tmp-812","logs-…-00003.parquet"]],"items":"0-4095,4100"}
//! ```
//!
//! and only then are the files renamed into place. The journal line is the commit point: once it
//! is durable, the checkpoint's files are complete and its items (source positions) are done.
//! A crash before it leaves only temporary files, which the next run deletes, and their items are
//! fetched again; a crash after it but before the renames is finished by the next run
//! ([`Journal::open`] renames what is left). Either way no record is in two final files and none
//! is missing.
//!
//! The first line names the run's source and output schema; a journal made by another command
//! is refused rather than silently mixed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A set of `u64`s as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// Whether `x` is in the set.
    pub fn contains(&self, x: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, hi)| hi < x);
        self.ranges.get(i).is_some_and(|&(lo, _)| lo <= x)
    }

    /// Adds `x`.
    pub fn insert(&mut self, x: u64) {
        self.insert_range(x, x);
    }

    /// Adds `lo..=hi`.
    pub fn insert_range(&mut self, lo: u64, hi: u64) {
        // Fast path: appending in order, as the writer mostly does.
        if let Some(last) = self.ranges.last_mut() {
            if lo > last.1 && lo - last.1 == 1 {
                last.1 = last.1.max(hi);
                return;
            }
            if lo > last.1 {
                self.ranges.push((lo, hi));
                return;
            }
        }
        let i = self
            .ranges
            .partition_point(|&(_, h)| h.saturating_add(1) < lo);
        let mut j = i;
        let (mut nlo, mut nhi) = (lo, hi);
        while j < self.ranges.len() && self.ranges[j].0 <= hi.saturating_add(1) {
            nlo = nlo.min(self.ranges[j].0);
            nhi = nhi.max(self.ranges[j].1);
            j += 1;
        }
        self.ranges.splice(i..j, [(nlo, nhi)]);
    }

    /// Adds every member of `other`.
    pub fn extend(&mut self, other: &RangeSet) {
        for &(lo, hi) in &other.ranges {
            self.insert_range(lo, hi);
        }
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|&(lo, hi)| hi - lo + 1).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

impl std::fmt::Display for RangeSet {
    /// `0-4095,4100`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for RangeSet {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut set = RangeSet::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let lo: u64 = lo.parse().map_err(|_| format!("`{part}` is not a range"))?;
            let hi: u64 = hi.parse().map_err(|_| format!("`{part}` is not a range"))?;
            if hi < lo {
                return Err(format!("`{part}` is not a range"));
            }
            set.insert_range(lo, hi);
        }
        Ok(set)
    }
}

/// The journal of one output.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Items in committed checkpoints.
    done: RangeSet,
    next_checkpoint: u64,
}

/// What [`Journal::open`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Checkpoints committed by earlier runs.
    pub checkpoints: u64,
    /// Files a crash left under their temporary names after their checkpoint, now renamed.
    pub renamed: u64,
    /// Temporary files of unfinished checkpoints, deleted (their items are fetched again).
    pub removed: u64,
}

impl Journal {
    /// The journal of `out`: `OUT.journal` beside it.
    pub fn path_for(out: &Path) -> PathBuf {
        crate::fsutil::with_suffix(out, ".journal")
    }

    /// Opens (or starts) the journal at `path` for a run described by `identity` (its source
    /// and schema). Finishes the renames of a checkpoint a crash interrupted, deletes the
    /// temporary files of unfinished ones (those of `temps`, and only those: other programs'
    /// and other runs' files next to the output are left alone), and loads the items already
    /// done.
    pub fn open(path: &Path, identity: &str, temps: &[TempFiles]) -> Result<(Journal, Recovery)> {
        let bad = |why: String| Error::Output {
            path: path.to_path_buf(),
            op: "read journal",
            cause: why,
        };
        let mut done = RangeSet::default();
        let mut rec = Recovery::default();
        let mut committed_tmps: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut next_checkpoint = 1;
        // The journal is locked (an advisory flock, released when the run ends or dies) before
        // anything is read or deleted: a second run of the same command at the same time would
        // otherwise take the first one's temporary files for a crash's leftovers.
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::output(path, "open journal", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(bad(
                    "another pinflow run is using it (the same command started twice?); \
                     wait for that run to end"
                        .into(),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::output(path, "lock journal", e)),
        }
        // Where the last complete line ends: a crash while appending leaves a torn line, which
        // was never committed and is cut off before anything is appended after it.
        let mut valid_end = 0u64;
        let text = fs::read(path).map_err(|e| bad(e.to_string()))?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Without a complete first line nothing was ever committed (a crash while the journal
        // was being started): start it afresh.
        let exists = complete > 0;
        if exists {
            let text = String::from_utf8_lossy(&text[..complete]).into_owned();
            let mut lines = text.lines();
            match lines.next() {
                Some(first) => {
                    let header = header_line(identity);
                    if first != header {
                        return Err(bad(format!(
                            "it was written by another command (its header is {first}; this \
                             run's is {header}); finish that run, or remove the journal and \
                             its files to start over"
                        )));
                    }
                }
                None => return Err(bad("no complete first line".into())),
            }
            for (n, line) in lines.enumerate() {
                let c =
                    parse_checkpoint(line).map_err(|why| bad(format!("line {}: {why}", n + 2)))?;
                done.extend(&c.items);
                committed_tmps.extend(c.files);
                next_checkpoint = c.number + 1;
                rec.checkpoints += 1;
            }
            valid_end = complete as u64;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for (tmp, fin) in &committed_tmps {
            let (tmp, fin) = (base.join(tmp), base.join(fin));
            if tmp.exists() && !fin.exists() {
                fs::rename(&tmp, &fin).map_err(|e| Error::output(&fin, "rename into place", e))?;
                crate::fsutil::sync_parent(&fin);
                rec.renamed += 1;
            }
        }
        // Temporary files of ours not in a committed checkpoint: an unfinished checkpoint.
        let committed: std::collections::HashSet<PathBuf> =
            committed_tmps.iter().map(|(t, _)| base.join(t)).collect();
        for scope in temps {
            rec.removed += scope.remove_stale(&committed);
        }
        if file.metadata().map(|m| m.len()).unwrap_or(0) > valid_end {
            file.set_len(valid_end)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::output(path, "truncate a torn journal line", e))?;
        }
        if !exists {
            writeln!(file, "{}", header_line(identity))
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::output(path, "write journal", e))?;
            crate::fsutil::sync_parent(path);
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                done,
                next_checkpoint,
            },
            rec,
        ))
    }

    /// The items done by committed checkpoints.
    pub fn done(&self) -> &RangeSet {
        &self.done
    }

    /// Commits a checkpoint: `files` (temporary, final) are complete and fsynced, and hold
    /// exactly the rows of `items`. Returns once the line is durable; the caller then renames.
    pub fn commit(&mut self, files: &[(PathBuf, PathBuf)], items: &RangeSet) -> Result<()> {
        let base = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let rel = |p: &Path| -> String {
            p.strip_prefix(&base)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(
            format!("{{\"checkpoint\":{},\"files\":[", self.next_checkpoint).as_bytes(),
        );
        for (i, (tmp, fin)) in files.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.push(b'[');
            crate::json::write_string(&mut line, &rel(tmp));
            line.push(b',');
            crate::json::write_string(&mut line, &rel(fin));
            line.push(b']');
        }
        line.extend_from_slice(format!("],\"items\":\"{items}\"}}\n").as_bytes());
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::output(&self.path, "write journal", e))?;
        self.done.extend(items);
        self.next_checkpoint += 1;
        Ok(())
    }
}

fn header_line(identity: &str) -> String {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"pinflow_journal\":1,\"run\":");
    crate::json::write_string(&mut out, identity);
    out.push(b'}');
    String::from_utf8(out).expect("JSON text is UTF-8")
}

struct Checkpoint {
    number: u64,
    files: Vec<(PathBuf, PathBuf)>,
    items: RangeSet,
}

fn parse_checkpoint(line: &str) -> std::result::Result<Checkpoint, String> {
    let mut bytes = line.as_bytes().to_vec();
    let v = simd_json::to_owned_value(&mut bytes).map_err(|e| e.to_string())?;
    use simd_json::prelude::*;
    let number = v
        .get("checkpoint")
        .and_then(|n| n.as_u64())
        .ok_or("no checkpoint number")?;
    let items = v
        .get("items")
        .and_then(|i| i.as_str())
        .ok_or("no items")?
        .parse()?;
    let mut files = Vec::new();
    for f in v
        .get("files")
        .and_then(|f| f.as_array())
        .ok_or("no files")?
    {
        let pair = f.as_array().ok_or("a file is not a pair")?;
        match (
            pair.first().and_then(|t| t.as_str()),
            pair.get(1).and_then(|t| t.as_str()),
        ) {
            (Some(t), Some(f)) => files.push((PathBuf::from(t), PathBuf::from(f))),
            _ => return Err("a file is not a pair of names".into()),
        }
    }
    Ok(Checkpoint {
        number,
        files,
        items,
    })
}

/// Where a run's temporary files (`.NAME.tmp-PID`, see [`crate::output`]) can be, so that
/// recovery deletes only its own.
#[derive(Debug, Clone)]
pub enum TempFiles {
    /// Beside the unpartitioned output `OUT` (`dir/STEM.EXT`): the temporary files of `OUT`
    /// itself and of its rotated names `STEM-YYYYMMDDTHHMMSSZ-NNNNN.EXT`, in `dir` only.
    /// Anything else there (another output's files, a subdirectory) is not this run's.
    Beside(PathBuf),
    /// Anywhere under this directory: a partitioned output's tree belongs to its run.
    Under(PathBuf),
}

impl TempFiles {
    /// Deletes the temporary files of this scope that are not in `keep`. Returns how many.
    fn remove_stale(&self, keep: &std::collections::HashSet<PathBuf>) -> u64 {
        match self {
            TempFiles::Under(dir) => {
                remove_stale_temps(dir, true, &|name| name.ends_with(".parquet"), keep)
            }
            TempFiles::Beside(out) => {
                let dir = match out.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
                let stem = out.file_stem().map(|n| n.to_string_lossy().into_owned());
                let ext = out
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_default();
                let (Some(name), Some(stem)) = (name, stem) else {
                    return 0;
                };
                let ours = |file: &str| file == name || is_rotated_name(file, &stem, &ext);
                remove_stale_temps(dir, false, &ours, keep)
            }
        }
    }
}

/// `file` is `STEM-YYYYMMDDTHHMMSSZ-NNNNN.EXT`, a rotated name of the output `STEM.EXT`.
fn is_rotated_name(file: &str, stem: &str, ext: &str) -> bool {
    let Some(rest) = file
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(ext))
    else {
        return false;
    };
    let b = rest.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() > 18
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && &b[15..17] == b"Z-"
        && digits(17..b.len())
}

/// Deletes pinflow temporary files (`.NAME.tmp-PID`, NAME accepted by `ours`) in
/// `dir` (and its subdirectories if `recursive`) that are not in `keep`. Returns how many.
fn remove_stale_temps(
    dir: &Path,
    recursive: bool,
    ours: &dyn Fn(&str) -> bool,
    keep: &std::collections::HashSet<PathBuf>,
) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        let file = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if recursive {
                n += remove_stale_temps(&p, recursive, ours, keep);
            }
            continue;
        }
        let name = file
            .strip_prefix('.')
            .and_then(|f| f.rsplit_once(".tmp-"))
            .filter(|(_, pid)| !pid.is_empty() && pid.bytes().all(|c| c.is_ascii_digit()))
            .map(|(name, _)| name);
        if name.is_some_and(ours) && !keep.contains(&p) && fs::remove_file(&p).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_sets_merge_and_print() {
        let mut s = RangeSet::default();
        for x in [5, 1, 2, 3, 10, 4, 12, 11, 100] {
            s.insert(x);
        }
        assert_eq!(s.to_string(), "1-5,10-12,100");
        assert_eq!(s.len(), 9);
        assert!(s.contains(4) && s.contains(100) && !s.contains(6) && !s.contains(0));
        s.insert_range(6, 9);
        assert_eq!(s.to_string(), "1-12,100");
        let back: RangeSet = s.to_string().parse().unwrap();
        assert_eq!(back, s);
        assert!("3-1".parse::<RangeSet>().is_err());
    }

    #[test]
    fn a_committed_checkpoint_is_finished_and_an_unfinished_one_undone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = d.join("o.parquet.journal");
        let (mut j, rec) =
            Journal::open(&path, "src", &[TempFiles::Under(d.to_path_buf())]).unwrap();
        assert_eq!(rec.checkpoints, 0);
        // Checkpoint 1: committed and renamed. Checkpoint 2: committed, crash before rename.
        std::fs::write(d.join("a.parquet"), "a").unwrap();
        std::fs::write(d.join(".b.parquet.tmp-1"), "b").unwrap();
        std::fs::write(d.join(".c.parquet.tmp-1"), "c").unwrap();
        let items: RangeSet = "0-9".parse().unwrap();
        j.commit(&[(d.join(".a.parquet.tmp-1"), d.join("a.parquet"))], &items)
            .unwrap();
        j.commit(
            &[(d.join(".b.parquet.tmp-1"), d.join("b.parquet"))],
            &"10-19".parse().unwrap(),
        )
        .unwrap();
        drop(j);
        // A torn line at the end is ignored, and cut off before the next commit.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"checkpoint\":3,\"fi").unwrap();
        drop(f);
        let (mut j, rec) =
            Journal::open(&path, "src", &[TempFiles::Under(d.to_path_buf())]).unwrap();
        assert_eq!((rec.checkpoints, rec.renamed, rec.removed), (2, 1, 1));
        assert_eq!(j.done().to_string(), "0-19");
        j.commit(&[], &"20".parse().unwrap()).unwrap();
        drop(j);
        let (j, _) = Journal::open(&path, "src", &[]).unwrap();
        assert_eq!(j.done().to_string(), "0-20");
        assert!(d.join("b.parquet").exists() && !d.join(".c.parquet.tmp-1").exists());
        drop(j);
        // Another command's journal is refused.
        let err = Journal::open(&path, "other", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another command"), "{err}");
    }

    #[test]
    fn recovery_deletes_only_the_outputs_own_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        let ours = [
            ".o.parquet.tmp-7",
            ".o-20261124T100000Z-00003.parquet.tmp-7",
        ];
        let others = [
            ".other.parquet.tmp-5",
            ".o-old.parquet.tmp-5",
            ".o-20261124T100000Z-00003.parquet.tmp-x",
            "o.parquet",
            "sub/.o.parquet.tmp-5",
        ];
        for f in ours.iter().chain(&others) {
            std::fs::write(d.join(f), "x").unwrap();
        }
        let path = d.join("o.parquet.journal");
        let (_, rec) =
            Journal::open(&path, "src", &[TempFiles::Beside(d.join("o.parquet"))]).unwrap();
        assert_eq!(rec.removed, 2);
        assert!(ours.iter().all(|f| !d.join(f).exists()));
        assert!(others.iter().all(|f| d.join(f).exists()));
    }

    #[test]
    fn a_journal_in_use_is_refused_and_a_torn_start_begins_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet.journal");
        let (first, _) = Journal::open(&path, "src", &[]).unwrap();
        let err = Journal::open(&path, "src", &[]).err().unwrap().to_string();
        assert!(err.contains("another pinflow run is using it"), "{err}");
        drop(first);
        let (j, rec) = Journal::open(&path, "src", &[]).unwrap();
        assert_eq!(rec.checkpoints, 0);
        drop(j);
        // A crash while the first line was being written: no checkpoint can exist yet.
        std::fs::write(&path, "{\"pinflow_jour").unwrap();
        let (mut j, rec) = Journal::open(&path, "src", &[]).unwrap();
        assert_eq!(rec.checkpoints, 0);
        j.commit(&[], &"1-3".parse().unwrap()).unwrap();
        drop(j);
        let (j, rec) = Journal::open(&path, "src", &[]).unwrap();
        assert_eq!(
            (rec.checkpoints, j.done().to_string()),
            (1, "1-3".to_string())
        );
    }
}

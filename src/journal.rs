//! The resume journal: which work items are safely in finalized files, so that a run killed at
//! any instant can be run again and finish with every record exactly once.
//!
//! With `writer.journal` on, the writer finalizes files only at *checkpoints*: every open file
//! is closed (footer written, fsynced) under its temporary name, then one JSON line is appended
//! to the journal and fsynced:
//!
//! ```text
//! {"checkpoint":3,"files":[[".logs-…-00003.parquet.tmp-812","logs-…-00003.parquet",48213]],"items":"0-4095,4100","crc32":"1c291ca3"}
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
//! is refused rather than silently mixed. The journal is created whole (written under a
//! temporary name, then linked into place), so it always has that first line.
//!
//! The journal is not trusted blindly: before anything is renamed, deleted or fetched,
//! [`check`] reads every line (each ends with the CRC-32 of what precedes it; file names must
//! be names this output gives its files, inside its directory; checkpoints are numbered
//! 1, 2, 3, …) and [`Journal::open`] checks the files on disk against it (every committed file
//! present, under its final or temporary name, with the size recorded; no file of this output
//! written since the journal started that the journal does not name: its lines were lost).
//! Anything that does not check out stops the run with what is wrong, where (`PATH:LINE`) and
//! how to start afresh. The one damage a crash itself causes, a last line cut short while it
//! was being appended (no newline at its end), is the uncommitted checkpoint it was: it is cut
//! off and its temporary files deleted.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

mod state;

/// Where the object-storage output (`--out s3://`) records the upload of the staged file
/// `file`: `.NAME.s3` beside it, one step a line (`src/output/s3/state.rs`). With a journal
/// the record is kept once the file is uploaded and removed, ending in `uploaded`: the file's
/// rows are in the store, and [`Journal::open`] takes the record for the file.
pub fn upload_state_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.s3"))
}

/// Whether `file` is absent because it was uploaded: its upload record's last complete line
/// is `uploaded`.
fn uploaded(file: &Path) -> bool {
    fs::read_to_string(upload_state_path(file))
        .is_ok_and(|t| t.lines().any(|l| l == "uploaded") && t.ends_with('\n'))
}
pub use state::{SavedState, State};

/// The position of `{since}` polling (`fetch.since_field`) a checkpoint commits: the highest
/// value of the column among the rows of its files and of every earlier checkpoint's. It
/// goes into the checkpoint line as `"since":[FIELD,"timestamp"|"int64",VALUE]` (inside the
/// line's CRC; journals without it read as before), and a restarted run starts from the last
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSince {
    /// The column (`fetch.since_field`).
    pub field: String,
    /// Whether it is a timestamp (`value` in µs since the Unix epoch) rather than an int64.
    pub timestamp: bool,
    /// The highest value committed.
    pub value: i64,
}

impl SavedSince {
    /// Appends `,"since":[…]` to a checkpoint line being built.
    fn to_json(&self, line: &mut Vec<u8>) {
        line.extend_from_slice(b",\"since\":[");
        crate::json::write_string(line, &self.field);
        let kind = if self.timestamp { "timestamp" } else { "int64" };
        line.extend_from_slice(format!(",\"{kind}\",{}]", self.value).as_bytes());
    }

    /// The `since` of a checkpoint line, if it has one.
    fn parse(v: &simd_json::OwnedValue) -> std::result::Result<Option<SavedSince>, Defect> {
        use simd_json::prelude::*;
        let Some(s) = v.get("since") else {
            return Ok(None);
        };
        let parts = s.as_array().map(|a| {
            (
                a.first().and_then(|f| f.as_str()),
                a.get(1).and_then(|k| k.as_str()),
                a.get(2).and_then(|n| n.as_i64()),
                a.len(),
            )
        });
        match parts {
            Some((Some(field), Some(kind @ ("timestamp" | "int64")), Some(value), 3)) => {
                Ok(Some(SavedSince {
                    field: field.to_string(),
                    timestamp: kind == "timestamp",
                    value,
                }))
            }
            _ => Err(Defect::Malformed(
                "`since` is not [column, \"timestamp\" or \"int64\", integer]".into(),
            )),
        }
    }
}

/// A source's own resume position, committed with each checkpoint as its `"position"` (a JSON
/// value inside the line's CRC; journals without it read as before). A source whose work
/// items are not stable numbers across runs (a tail of growing files: what one chunk holds
/// depends on when it was read) keeps its position here instead: [`SourcePosition::commit`]
/// is told which of its items the checkpoint commits, and returns the position they reach.
/// A restarted run reads the last one back with [`Journal::position`].
pub trait SourcePosition: Send + Sync {
    /// The position once the items in `items` are committed, as one JSON value. Called once
    /// per checkpoint, just before its line is written.
    fn commit(&self, items: &RangeSet) -> String;
}

/// The journal format this version writes. Format 3 added the journal's number (`"id"`)
/// and pending checkpoints (`"pending":true`, `{"confirmed":N}`), which a pinflow reading
/// format 2 only would take for committed ones (so it refuses format 3); format 2 journals
/// are read as before. Format 2 added a CRC-32 to every line, the size of every committed
/// file and the time the journal was started; format 1 had none of them and is refused with
/// a message.
pub const FORMAT: u64 = 3;

/// The oldest format this version reads.
pub const OLDEST_FORMAT: u64 = 2;

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

    /// Whether every `x` of `lo..=hi` is in the set.
    pub fn covers(&self, lo: u64, hi: u64) -> bool {
        // Ranges are disjoint and never adjacent: one range holds them all or none does.
        let i = self.ranges.partition_point(|&(_, end)| end < lo);
        self.ranges
            .get(i)
            .is_some_and(|&(start, end)| start <= lo && end >= hi)
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

    /// The members as inclusive ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().copied()
    }

    /// The largest member.
    pub fn last(&self) -> Option<u64> {
        self.ranges.last().map(|&(_, hi)| hi)
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        // Saturating: a journal's `0-18446744073709551615` has one more member than a u64 holds.
        self.ranges.iter().fold(0u64, |n, &(lo, hi)| {
            n.saturating_add((hi - lo).saturating_add(1))
        })
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

/// How an output names its files: what names a journal line may hold, and where this
/// output's temporary files can be, so that recovery deletes only its own.
#[derive(Debug, Clone)]
pub enum OutputFiles {
    /// The unpartitioned output `OUT` (`dir/STEM.EXT`), whose files (with a journal, always
    /// rotated: `STEM-YYYYMMDDTHHMMSSZ-NNNNN.EXT`) and their temporary names
    /// (`.NAME.tmp-PID`) are beside it, in `dir` only. Anything else there (another output's
    /// files, a subdirectory) is not this run's.
    Beside(PathBuf),
    /// A partitioned output: the tree under `root` belongs to its run, and its files are
    /// `root/NAME=VALUE/…/part-NNNNN.parquet`, one `NAME=VALUE` directory per name of
    /// `partition_by`, in that order.
    Under {
        /// The dataset's root directory.
        root: PathBuf,
        /// The partition column names, in order.
        partition_by: Vec<String>,
        /// Files are named `TOPIC+PARTITION+OFFSET.parquet` under `topic=TOPIC/
        /// partition=PARTITION/` (`writer.file_per_kafka_partition`; `partition_by` is then
        /// `topic`, `partition`), not `part-NNNNN.parquet`.
        kafka_names: bool,
    },
    /// Two outputs committed by the same checkpoints (the window rows and, with
    /// `window.records`, the records): a name may be either's.
    Both(Box<OutputFiles>, Box<OutputFiles>),
}

impl OutputFiles {
    /// How to start afresh: which files to move aside.
    fn afresh(&self, journal: &Path) -> String {
        format!(
            "to start afresh (every item fetched again), move {} aside, then run the \
             command again",
            self.what(journal)
        )
    }

    /// The journal and the files of this output, for [`OutputFiles::afresh`].
    fn what(&self, journal: &Path) -> String {
        match self {
            OutputFiles::Both(a, b) => {
                let b = b.what(journal);
                let b = b.split_once(" and ").map_or(b.as_str(), |(_, rest)| rest);
                format!("{} and {b}", a.what(journal))
            }
            OutputFiles::Beside(out) => {
                let (stem, ext) = stem_ext(out);
                let dir = crate::fsutil::parent_dir(out);
                format!(
                    "the journal {} and the files of this output ({}/{stem}-YYYYMMDDTHHMMSSZ-NNNNN{ext})",
                    journal.display(),
                    dir.display()
                )
            }
            OutputFiles::Under { root, .. } => format!(
                "the journal {} and the output directory {}",
                journal.display(),
                root.display()
            ),
        }
    }
}

/// `dir/STEM.EXT` → (`STEM`, `.EXT`).
fn stem_ext(out: &Path) -> (String, String) {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pinflow".into());
    let ext = out
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// What names the lines of one journal may hold: names relative to the journal's directory,
/// of the form its output gives its files.
struct Names<'a> {
    files: &'a OutputFiles,
    /// Both: the two outputs' names.
    both: Option<(Box<Names<'a>>, Box<Names<'a>>)>,
    /// Beside: the output's stem and extension. Under: unused.
    stem: String,
    ext: String,
    /// Under: the root's path relative to the journal's directory, one entry per directory
    /// (`None`: the root is not under it, so no name is acceptable).
    root: Option<Vec<String>>,
}

impl<'a> Names<'a> {
    fn new(journal: &Path, files: &'a OutputFiles) -> Names<'a> {
        let base = journal.parent().unwrap_or(Path::new(""));
        let mut both = None;
        let (stem, ext, root) = match files {
            OutputFiles::Both(a, b) => {
                both = Some((
                    Box::new(Names::new(journal, a)),
                    Box::new(Names::new(journal, b)),
                ));
                (String::new(), String::new(), None)
            }
            OutputFiles::Beside(out) => {
                let (stem, ext) = stem_ext(out);
                (stem, ext, None)
            }
            OutputFiles::Under { root, .. } => {
                let rel = root.strip_prefix(base).ok().map(|r| {
                    r.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect()
                });
                (String::new(), String::new(), rel)
            }
        };
        Names {
            files,
            both,
            stem,
            ext,
            root,
        }
    }

    /// Checks a final name; `Err` says why it is not one of this output's.
    fn check_final(&self, name: &str) -> std::result::Result<(), String> {
        plain_relative(name)?;
        if let Some((a, b)) = &self.both {
            return a.check_final(name).or_else(|_| b.check_final(name));
        }
        match self.files {
            OutputFiles::Both(..) => unreachable!("checked above"),
            OutputFiles::Beside(_) => {
                if name.contains('/') {
                    return Err("has a path separator, but this output's files are all in \
                                its own directory"
                        .into());
                }
                if !is_rotated_name(name, &self.stem, &self.ext) {
                    return Err(format!(
                        "is not a name this output gives its files ({}-YYYYMMDDTHHMMSSZ-NNNNN{})",
                        self.stem, self.ext
                    ));
                }
                Ok(())
            }
            OutputFiles::Under {
                partition_by,
                kafka_names,
                ..
            } => {
                let Some(root) = &self.root else {
                    return Err(
                        "cannot be in the output directory, which is not beside the \
                                journal"
                            .into(),
                    );
                };
                let parts: Vec<&str> = name.split('/').collect();
                let form = || {
                    let dirs: String = partition_by.iter().map(|p| format!("{p}=VALUE/")).collect();
                    format!(
                        "is not a name this output gives its files ({}{dirs}part-NNNNN.parquet)",
                        root.iter().map(|r| format!("{r}/")).collect::<String>()
                    )
                };
                if parts.len() != root.len() + partition_by.len() + 1
                    || parts.iter().zip(root).any(|(p, r)| p != r)
                {
                    return Err(form());
                }
                let dirs = &parts[root.len()..parts.len() - 1];
                for (dir, col) in dirs.iter().zip(partition_by) {
                    let value = dir
                        .strip_prefix(col.as_str())
                        .and_then(|v| v.strip_prefix('='));
                    if value.is_none_or(|v| v.is_empty()) {
                        return Err(form());
                    }
                }
                let file = parts[parts.len() - 1];
                if *kafka_names {
                    // The name repeats the directories' topic and partition.
                    let named = crate::kafka::offsets::parse_file_name(file);
                    let dirs_say = (
                        dirs[0].strip_prefix("topic="),
                        dirs[1].strip_prefix("partition="),
                    );
                    return match (named, dirs_say) {
                        (Some((t, p, _)), (Some(dt), Some(dp)))
                            if t == dt && p.to_string() == dp =>
                        {
                            Ok(())
                        }
                        _ => Err(format!(
                            "is not a name this output gives its files ({}topic=T/partition=P/\
                             T+P+OFFSET.parquet, OFFSET of 20 digits)",
                            root.iter().map(|r| format!("{r}/")).collect::<String>()
                        )),
                    };
                }
                let digits = file
                    .strip_prefix("part-")
                    .and_then(|f| f.strip_suffix(".parquet"));
                if !digits.is_some_and(|d| d.len() >= 5 && d.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(form());
                }
                Ok(())
            }
        }
    }

    /// Checks a (temporary, final) pair: the final name is one of this output's, and the
    /// temporary one is its temporary name (`.NAME.tmp-PID` in the same directory).
    fn check_pair(&self, tmp: &str, fin: &str) -> std::result::Result<(), Defect> {
        let bad = |name: &str, why: String| Defect::Name {
            name: name.to_string(),
            why,
        };
        self.check_final(fin).map_err(|why| bad(fin, why))?;
        plain_relative(tmp).map_err(|why| bad(tmp, why))?;
        let (fdir, fname) = fin.rsplit_once('/').unwrap_or(("", fin));
        let (tdir, tname) = tmp.rsplit_once('/').unwrap_or(("", tmp));
        if tdir != fdir || temp_target(tname) != Some(fname) {
            return Err(bad(
                tmp,
                format!(
                    "is not a temporary name of {} (.NAME.tmp-PID beside it)",
                    quoted(fin)
                ),
            ));
        }
        Ok(())
    }
}

/// `name` is a plain relative path: not empty, no NUL or other ASCII control character, no
/// backslash, not absolute, no empty, `.` or `..` component.
fn plain_relative(name: &str) -> std::result::Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name.bytes().any(|b| b.is_ascii_control()) {
        "contains a control character"
    } else if name.starts_with('/') {
        "is an absolute path, outside the output directory"
    } else if name.contains('\\') {
        "contains a backslash"
    } else if name.split('/').any(|p| p == "..") {
        "climbs out of the output directory (`..`)"
    } else if name.split('/').any(|p| p.is_empty() || p == ".") {
        "is not a plain relative path"
    } else {
        return Ok(());
    };
    Err(why.into())
}

/// `.NAME.tmp-PID` → `NAME`.
fn temp_target(file: &str) -> Option<&str> {
    file.strip_prefix('.')
        .and_then(|f| f.rsplit_once(".tmp-"))
        .filter(|(name, pid)| {
            !name.is_empty() && !pid.is_empty() && pid.bytes().all(|c| c.is_ascii_digit())
        })
        .map(|(name, _)| name)
}

/// What is wrong with a journal (see [`JournalError`] for where).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Defect {
    /// The journal exists but is empty: it is created with its first line, so it was emptied.
    Empty,
    /// The first line is incomplete: the journal is created whole, so it was cut.
    TornHeader,
    /// The first line is not a pinflow journal's.
    NotAJournal(String),
    /// A journal of another format version.
    Version(u64),
    /// A journal of another command: its `run`, and this run's.
    OtherCommand {
        /// What the journal's first line says.
        theirs: String,
        /// This run's identity.
        ours: String,
    },
    /// A line's CRC-32 is missing or does not match its content.
    Checksum,
    /// A line that is not what pinflow writes.
    Malformed(String),
    /// Checkpoints are not numbered 1, 2, 3, …: lines were lost or added.
    Sequence {
        /// The number the line should have.
        expected: u64,
        /// The number it has.
        found: u64,
    },
    /// A file name that is not one this output gives its files.
    Name {
        /// The name, as the line has it.
        name: String,
        /// Why it was refused.
        why: String,
    },
    /// A file named by two checkpoints.
    Duplicate(String),
    /// An incomplete last line that is not the start of a checkpoint line.
    Garbage(String),
    /// A committed file that is neither under its final nor under its temporary name.
    Missing {
        /// Its final path.
        file: PathBuf,
        /// Its temporary path.
        tmp: PathBuf,
    },
    /// A committed file of another size than the journal recorded.
    Size {
        /// The file.
        file: PathBuf,
        /// The size recorded.
        want: u64,
        /// Its size now.
        found: u64,
    },
    /// A committed file's name is something other than a regular file.
    NotAFile(PathBuf),
    /// The state file a checkpoint commits (the open time windows) is missing or damaged.
    StateFile {
        /// The state file.
        file: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Files of this output written since the journal was started that no line names.
    Unlisted {
        /// The first of them.
        file: PathBuf,
        /// How many.
        count: usize,
    },
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Defect::Empty => f.write_str(
                "the journal is empty, but it is always created with its first line: it was \
                 emptied, and which files hold which items is lost",
            ),
            Defect::TornHeader => f.write_str(
                "the first line is incomplete, but the journal is always created whole: it was \
                 cut, and which files hold which items is lost",
            ),
            Defect::NotAJournal(line) => {
                write!(
                    f,
                    "this is not a pinflow journal (it starts {})",
                    quoted(line)
                )
            }
            Defect::Version(1) => f.write_str(
                "the journal is of format 1 (an earlier pinflow, without checksums or file \
                 sizes); finish its run with that pinflow",
            ),
            Defect::Version(v) => write!(
                f,
                "the journal is of format {v}; this pinflow reads formats {OLDEST_FORMAT} to \
                 {FORMAT}"
            ),
            Defect::OtherCommand { theirs, ours } => {
                let (a, b): (Vec<&str>, Vec<&str>) =
                    (theirs.split("; ").collect(), ours.split("; ").collect());
                f.write_str("it was written by another command (")?;
                if a.len() == b.len() {
                    let diff: Vec<String> = a
                        .iter()
                        .zip(&b)
                        .filter(|(x, y)| x != y)
                        .map(|(x, y)| format!("its {}, this run's {}", quoted(x), quoted(y)))
                        .collect();
                    f.write_str(&diff.join("; "))?;
                } else {
                    write!(
                        f,
                        "its run is {}, this one's {}",
                        quoted(theirs),
                        quoted(ours)
                    )?;
                }
                f.write_str("); run that command to finish it")
            }
            Defect::Checksum => f.write_str(
                "the line's checksum does not match its content: it was changed or damaged",
            ),
            Defect::Malformed(why) => write!(f, "not a journal line: {}", quoted(why)),
            Defect::Sequence { expected, found } => write!(
                f,
                "checkpoint {found} where checkpoint {expected} should be: lines were lost or added"
            ),
            Defect::Name { name, why } => write!(f, "file name {} {why}", quoted(name)),
            Defect::Duplicate(name) => {
                write!(f, "file {} is committed twice", quoted(name))
            }
            Defect::Garbage(tail) => write!(
                f,
                "the last line is incomplete and is not the start of a checkpoint (it is {}): \
                 not what a crash while appending leaves",
                quoted(tail)
            ),
            Defect::Missing { file, tmp } => write!(
                f,
                "{} is missing (neither it nor its temporary name {} exists): its rows would \
                 be lost",
                file.display(),
                tmp.display()
            ),
            Defect::Size { file, want, found } => write!(
                f,
                "{} is {found} bytes, but {want} bytes were committed: it was changed",
                file.display()
            ),
            Defect::NotAFile(file) => {
                write!(f, "{} is not a regular file", file.display())
            }
            Defect::StateFile { file, why } => write!(f, "the state file {} {why}", file.display()),
            Defect::Unlisted { file, count } => {
                write!(f, "{}", file.display())?;
                if *count > 1 {
                    write!(f, " (and {} more)", count - 1)?;
                }
                f.write_str(
                    " is a file of this output written since the journal was started, but no \
                     line names it: lines of the journal were lost (was it truncated or \
                     edited?), and resuming would write its rows again",
                )
            }
        }
    }
}

/// A journal that does not check out: what is wrong, and on which line (1 is the first line;
/// `None` when no single line is at fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalError {
    /// The line at fault.
    pub line: Option<u64>,
    /// What is wrong.
    pub defect: Defect,
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.defect),
            None => write!(f, "{}", self.defect),
        }
    }
}

impl std::error::Error for JournalError {}

fn at(line: usize, defect: Defect) -> JournalError {
    JournalError {
        line: Some(line as u64),
        defect,
    }
}

/// What a journal that checks out says.
#[derive(Debug, Clone)]
pub struct Contents {
    /// When the journal was started (seconds since the Unix epoch).
    pub started: u64,
    /// The journal's own number ([`Journal::id`]).
    pub id: u64,
    /// Whether `id` was derived from the first line (a journal from before they had one).
    pub id_derived: bool,
    /// Its committed checkpoints, in order.
    pub checkpoints: Vec<Checkpoint>,
    /// Where its last complete line ends: anything after it is a torn line that was never
    /// committed.
    pub valid_end: u64,
    /// Whether there is such a torn line.
    pub torn_tail: bool,
}

/// One committed checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its line in the journal.
    pub line: u64,
    /// Its number (1, 2, 3, …).
    pub number: u64,
    /// Its files.
    pub files: Vec<CommittedFile>,
    /// The work items whose rows they hold.
    pub items: RangeSet,
    /// The operator state committed with them ([`state`]), if any.
    state: Option<state::StateRef>,
    /// The `{since}` position committed with them, if any.
    pub since: Option<SavedSince>,
    /// The source's own position committed with them ([`SourcePosition`]), as JSON text.
    pub position: Option<String>,
    /// Written as pending ([`Journal::set_two_phase`]) and not confirmed (no `confirmed`
    /// line follows): only the last checkpoint can be, and what becomes of it is decided
    /// outside the journal ([`Journal::resolve_pending`]).
    pub pending: bool,
    /// Where its line starts in the journal (a pending checkpoint undone is cut off there).
    pub offset: u64,
}

/// A file of a committed checkpoint, names relative to the journal's directory (checked by
/// [`check`]: plain names of the output's form, inside its directory).
#[derive(Debug, Clone)]
pub struct CommittedFile {
    /// Its temporary name.
    pub tmp: String,
    /// Its final name.
    pub fin: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Reads and checks the journal `bytes` of the journal at `journal` (its directory is what
/// names are relative to), for a run described by `identity` whose output names its files as
/// `files` say. Touches no file: [`Journal::open`] checks the files on disk against what this
/// returns. Never panics, whatever the bytes.
pub fn check(
    journal: &Path,
    bytes: &[u8],
    identity: &str,
    files: &OutputFiles,
) -> std::result::Result<Contents, JournalError> {
    if bytes.is_empty() {
        return Err(at(1, Defect::Empty));
    }
    let Some(last_newline) = memchr::memrchr(b'\n', bytes) else {
        return Err(at(1, Defect::TornHeader));
    };
    let (complete, tail) = bytes.split_at(last_newline + 1);
    let mut lines = complete[..last_newline].split(|&b| b == b'\n');
    let header = lines.next().unwrap_or_default();
    let (started, id) = parse_header(header, identity).map_err(|d| at(1, d))?;
    let names = Names::new(journal, files);
    let mut out = Contents {
        started,
        id: id.unwrap_or_else(|| derived_id(header)),
        id_derived: id.is_none(),
        checkpoints: Vec::new(),
        valid_end: complete.len() as u64,
        torn_tail: !tail.is_empty(),
    };
    let mut finals = HashSet::new();
    let mut n = 1;
    let mut offset = header.len() as u64 + 1;
    for line in lines {
        n += 1;
        let line_offset = offset;
        offset += line.len() as u64 + 1;
        if line.starts_with(CONFIRMED_START) {
            let number = parse_confirmed(line).map_err(|d| at(n, d))?;
            match out.checkpoints.last_mut() {
                Some(c) if c.pending && c.number == number => c.pending = false,
                _ => {
                    return Err(at(
                        n,
                        Defect::Malformed(format!(
                            "confirms checkpoint {number}, which is not the pending checkpoint \
                             just before it"
                        )),
                    ))
                }
            }
            continue;
        }
        let mut c = parse_checkpoint(line, n as u64, journal, &names).map_err(|d| at(n, d))?;
        c.offset = line_offset;
        if let Some(p) = out.checkpoints.last().filter(|p| p.pending) {
            return Err(at(
                n,
                Defect::Malformed(format!(
                    "checkpoint {} follows checkpoint {}, which is pending (never confirmed)",
                    c.number, p.number
                )),
            ));
        }
        let expected = out.checkpoints.len() as u64 + 1;
        if c.number != expected {
            return Err(at(
                n,
                Defect::Sequence {
                    expected,
                    found: c.number,
                },
            ));
        }
        for f in &c.files {
            if !finals.insert(f.fin.clone()) {
                return Err(at(n, Defect::Duplicate(f.fin.clone())));
            }
        }
        out.checkpoints.push(c);
    }
    if !is_torn_append(tail) {
        return Err(at(n + 1, Defect::Garbage(lossy(tail))));
    }
    Ok(out)
}

/// Whether `tail`, the bytes after the last newline, is what a crash while a checkpoint line
/// was being appended can leave: nothing, the start of the line, and possibly zeros after it
/// (a file system that extended the file before its data reached the disk).
fn is_torn_append(tail: &[u8]) -> bool {
    const START: &[u8] = b"{\"checkpoint\":";
    let end = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let t = &tail[..end];
    [START, CONFIRMED_START]
        .iter()
        .any(|start| t.starts_with(start) || start.starts_with(t))
}

/// How a line confirming a pending checkpoint starts: `{"confirmed":N,"crc32":"…"}`.
const CONFIRMED_START: &[u8] = b"{\"confirmed\":";

fn confirmed_line(number: u64) -> Vec<u8> {
    let mut line = format!("{{\"confirmed\":{number}").into_bytes();
    seal(&mut line);
    line
}

fn parse_confirmed(line: &[u8]) -> std::result::Result<u64, Defect> {
    use simd_json::prelude::*;
    verify(line)?;
    parse_json(line)
        .map_err(Defect::Malformed)?
        .get("confirmed")
        .and_then(|n| n.as_u64())
        .ok_or_else(|| Defect::Malformed("a `confirmed` line without a checkpoint number".into()))
}

/// The number of a journal whose first line has none (journals written before it had one):
/// taken from that line, which holds the command and the second it was started, the same
/// by every build (two CRC-32s; not std's hasher, which may change between Rust releases).
/// Another member's old journal may have the same, so it is not trusted alone
/// ([`Journal::id_derived`]).
fn derived_id(header: &[u8]) -> u64 {
    let mut second = crc32fast::Hasher::new();
    second.update(b"pinflow journal id");
    second.update(header);
    (u64::from(crc32fast::hash(header)) << 32) | u64::from(second.finalize())
}

/// A new journal's number: random, so that journals started by the same command in the
/// same second on two machines (a fleet's members) have different ones.
fn new_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, std::process::id()))
}

/// The suffix of every line: `,"crc32":"XXXXXXXX"}`, the CRC-32 of the bytes before it.
const CRC_KEY: &[u8] = b",\"crc32\":\"";
const CRC_SUFFIX_LEN: usize = CRC_KEY.len() + 8 + 2;

/// Ends the JSON object `body` (all but its closing brace) with its checksum and a newline.
fn seal(body: &mut Vec<u8>) {
    let crc = crc32fast::hash(body);
    body.extend_from_slice(CRC_KEY);
    body.extend_from_slice(format!("{crc:08x}\"}}\n").as_bytes());
}

/// Checks the checksum at the end of `line` (without its newline).
fn verify(line: &[u8]) -> std::result::Result<(), Defect> {
    let Some(split) = line.len().checked_sub(CRC_SUFFIX_LEN) else {
        return Err(Defect::Checksum);
    };
    let (body, suffix) = line.split_at(split);
    let (key, rest) = suffix.split_at(CRC_KEY.len());
    let (hex, close) = rest.split_at(8);
    let want = std::str::from_utf8(hex)
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u32::from_str_radix(h, 16).ok());
    // Under the fuzzer (`--cfg fuzzing`, set by cargo-fuzz) any 8 hex digits do: it could
    // hardly ever find a matching CRC, and would never get past it to the names.
    let matches = |want: u32| cfg!(fuzzing) || crc32fast::hash(body) == want;
    match want {
        Some(want) if key == CRC_KEY && close == b"\"}" && matches(want) => Ok(()),
        _ => Err(Defect::Checksum),
    }
}

fn header_line(identity: &str, started: u64, id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(format!("{{\"pinflow_journal\":{FORMAT},\"run\":").as_bytes());
    crate::json::write_string(&mut out, identity);
    out.extend_from_slice(format!(",\"started\":{started},\"id\":\"{id:016x}\"").as_bytes());
    seal(&mut out);
    out
}

/// A checkpoint line: its number, its files (temporary name, final name, size; names
/// relative to the journal's directory) and the items their rows hold.
fn checkpoint_line(
    number: u64,
    files: &[(String, String, u64)],
    items: &RangeSet,
    state: Option<&state::StateRef>,
    since: Option<&SavedSince>,
    position: Option<&str>,
    pending: bool,
) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(format!("{{\"checkpoint\":{number},\"files\":[").as_bytes());
    for (i, (tmp, fin, size)) in files.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'[');
        crate::json::write_string(&mut line, tmp);
        line.push(b',');
        crate::json::write_string(&mut line, fin);
        line.extend_from_slice(format!(",{size}]").as_bytes());
    }
    line.extend_from_slice(format!("],\"items\":\"{items}\"").as_bytes());
    if let Some(r) = state {
        state::to_json(r, &mut line);
    }
    if let Some(s) = since {
        s.to_json(&mut line);
    }
    if let Some(p) = position {
        line.extend_from_slice(b",\"position\":");
        line.extend_from_slice(p.as_bytes());
    }
    if pending {
        line.extend_from_slice(b",\"pending\":true");
    }
    seal(&mut line);
    line
}

fn parse_json(line: &[u8]) -> std::result::Result<simd_json::OwnedValue, String> {
    let mut bytes = line.to_vec();
    simd_json::to_owned_value(&mut bytes).map_err(|e| e.to_string())
}

/// The header's start time and number (journals written before it had one have none), once
/// it is found to be a journal of this format and command.
fn parse_header(line: &[u8], identity: &str) -> std::result::Result<(u64, Option<u64>), Defect> {
    use simd_json::prelude::*;
    let not_one = || Defect::NotAJournal(lossy(line));
    let v = parse_json(line).map_err(|_| not_one())?;
    let version = v
        .get("pinflow_journal")
        .and_then(|n| n.as_u64())
        .ok_or_else(not_one)?;
    if !(OLDEST_FORMAT..=FORMAT).contains(&version) {
        return Err(Defect::Version(version));
    }
    verify(line)?;
    let run = v
        .get("run")
        .and_then(|r| r.as_str())
        .ok_or_else(|| Defect::Malformed("the first line has no `run`".into()))?;
    if run != identity {
        return Err(Defect::OtherCommand {
            theirs: run.to_string(),
            ours: identity.to_string(),
        });
    }
    let started = v
        .get("started")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| Defect::Malformed("the first line has no `started` time".into()))?;
    let id = match v.get("id") {
        None => None,
        Some(id) => Some(
            id.as_str()
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Defect::Malformed("the first line's `id` is not hexadecimal".into())
                })?,
        ),
    };
    Ok((started, id))
}

fn parse_checkpoint(
    line: &[u8],
    n: u64,
    journal: &Path,
    names: &Names<'_>,
) -> std::result::Result<Checkpoint, Defect> {
    use simd_json::prelude::*;
    verify(line)?;
    let bad = |why: &str| Defect::Malformed(why.to_string());
    let v = parse_json(line).map_err(Defect::Malformed)?;
    let number = v
        .get("checkpoint")
        .and_then(|n| n.as_u64())
        .ok_or_else(|| bad("no checkpoint number"))?;
    let items = v
        .get("items")
        .and_then(|i| i.as_str())
        .ok_or_else(|| bad("no items"))?
        .parse()
        .map_err(Defect::Malformed)?;
    let state = state::parse(&v, journal, number)?;
    let since = SavedSince::parse(&v)?;
    let position = v.get("position").map(|p| p.encode());
    let pending = match v.get("pending") {
        None => false,
        Some(p) => p
            .as_bool()
            .filter(|&p| p)
            .ok_or_else(|| bad("`pending` is not true"))?,
    };
    let mut files = Vec::new();
    for f in v
        .get("files")
        .and_then(|f| f.as_array())
        .ok_or_else(|| bad("no files"))?
    {
        let triple = f.as_array().map(|t| {
            (
                t.first().and_then(|t| t.as_str()),
                t.get(1).and_then(|f| f.as_str()),
                t.get(2).and_then(|s| s.as_u64()),
                t.len(),
            )
        });
        let Some((Some(tmp), Some(fin), Some(size), 3)) = triple else {
            return Err(bad(
                "a file is not [temporary name, final name, size in bytes]",
            ));
        };
        names.check_pair(tmp, fin)?;
        files.push(CommittedFile {
            tmp: tmp.to_string(),
            fin: fin.to_string(),
            size,
        });
    }
    Ok(Checkpoint {
        line: n,
        number,
        files,
        items,
        state,
        since,
        position,
        pending,
        offset: 0,
    })
}

/// `bytes` as text, invalid UTF-8 replaced (for messages: [`quoted`] escapes it).
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(4 * QUOTE_CHARS)]).into_owned()
}

/// How much of something read from a journal a message shows.
const QUOTE_CHARS: usize = 80;

/// `s` for a message: quoted, control characters and other non-printing ones escaped (a
/// journal may hold anything, and a terminal must not be sent escape sequences), and cut
/// after [`QUOTE_CHARS`] characters.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// How two state keys (`--flag value` lists) differ, for a message: each option of the
/// journal's that this run does not have, and this run's in its place.
fn key_diff(theirs: &str, ours: &str) -> String {
    let split = |k: &'_ str| -> Vec<String> {
        k.split(" --")
            .map(|p| format!("--{}", p.trim_start_matches("--")))
            .collect()
    };
    let (a, b) = (split(theirs), split(ours));
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter()
            .filter(|o| !y.contains(o))
            .map(|o| quoted(o))
            .collect()
    };
    format!(
        "its {}, this run's {}",
        only(&a, &b).join(" "),
        only(&b, &a).join(" ")
    )
}

/// The journal of one output.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// What names its lines may hold (checked at each commit too, so that a name the next
    /// run would refuse is never committed).
    files: OutputFiles,
    /// Items in committed checkpoints.
    done: RangeSet,
    /// When the journal was started (seconds since the Unix epoch): what tells this journal
    /// from one started afresh at the same path.
    started: u64,
    next_checkpoint: u64,
    /// The line of the last committed checkpoint, if any.
    last_line: Option<u64>,
    /// The last committed checkpoint's state, until [`Journal::take_state`] takes it.
    saved: Option<SavedState>,
    /// The file of the last committed state: deleted once a newer one is committed.
    state_file: Option<String>,
    /// Whether [`Journal::take_state`] took the state.
    state_taken: bool,
    /// The `{since}` position: the last committed one, then what [`Journal::set_since`]
    /// gives, which every later checkpoint line carries.
    since: Option<SavedSince>,
    /// The source's position ([`SourcePosition`]): the last committed one, as JSON text.
    position: Option<String>,
    /// Where the next checkpoints take the source's position from.
    position_source: Option<std::sync::Arc<dyn SourcePosition>>,
    /// The journal's number ([`Journal::id`]).
    id: u64,
    /// Whether `id` was derived from the first line ([`Journal::id_derived`]).
    id_derived: bool,
    /// Checkpoints are written pending and confirmed apart ([`Journal::set_two_phase`]).
    two_phase: bool,
    /// The pending checkpoint an earlier run left, until [`Journal::resolve_pending`].
    left_pending: Option<Checkpoint>,
    /// The number of this run's pending checkpoint, until [`Journal::confirm`].
    unconfirmed: Option<u64>,
    /// The state file a pending checkpoint replaced: deleted once it is confirmed.
    superseded_state: Option<String>,
    /// Complete lines in the journal (the header's included).
    lines: u64,
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
    /// Whether a torn last line (a crash while it was appended) was cut off.
    pub torn_line: bool,
    /// The number of a pending checkpoint an earlier run left (see
    /// [`Journal::resolve_pending`]): not counted in `checkpoints`, its files left as they are.
    pub pending: Option<u64>,
}

/// A committed file's name on disk.
enum OnDisk {
    Absent,
    File(u64),
    Other,
}

fn on_disk(p: &Path) -> io::Result<OnDisk> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => Ok(OnDisk::File(m.len())),
        Ok(_) => Ok(OnDisk::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OnDisk::Absent),
        Err(e) => Err(e),
    }
}

impl Journal {
    /// The journal of `out`: `OUT.journal` beside it.
    pub fn path_for(out: &Path) -> PathBuf {
        crate::fsutil::with_suffix(out, ".journal")
    }

    /// Opens (or starts) the journal at `path` for a run described by `identity` (its source
    /// and schema), whose output names its files as `files` says. Checks the journal and the
    /// files on disk against it (see the module documentation) before anything is changed;
    /// then finishes the renames of a checkpoint a crash interrupted, deletes the temporary
    /// files of unfinished ones (this output's own only: other programs' and other outputs'
    /// files next to it are left alone), and loads the items already done.
    pub fn open(path: &Path, identity: &str, files: &OutputFiles) -> Result<(Journal, Recovery)> {
        let refuse = |e: JournalError| Error::Journal {
            path: path.to_path_buf(),
            line: e.line,
            why: format!("{}; {}", e.defect, files.afresh(path)),
        };
        create(path, identity)?;
        // The journal is locked (an advisory flock, released when the run ends or dies) before
        // anything is read or deleted: a second run of the same command at the same time would
        // otherwise take the first one's temporary files for a crash's leftovers.
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::output(path, "open journal", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Journal {
                    path: path.to_path_buf(),
                    line: None,
                    why: "another pinflow run is using it (the same command started twice?); \
                          wait for that run to end"
                        .into(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::output(path, "lock journal", e)),
        }
        remove_creation_leftovers(path);
        let bytes = fs::read(path).map_err(|e| Error::output(path, "read journal", e))?;
        let mut contents = check(path, &bytes, identity, files).map_err(refuse)?;
        let left_pending = match contents.checkpoints.last() {
            Some(c) if c.pending => contents.checkpoints.pop(),
            _ => None,
        };

        // Every committed file must be there, whole, before anything is renamed or deleted.
        let base = crate::fsutil::parent_dir(path);
        let mut renames = Vec::new();
        let mut committed = HashSet::new();
        let mut committed_tmps = HashSet::new();
        let mut done = RangeSet::default();
        for c in &contents.checkpoints {
            let line = Some(c.line);
            let wrong = |defect| refuse(JournalError { line, defect });
            for f in &c.files {
                let (tmp, fin) = (base.join(&f.tmp), base.join(&f.fin));
                let state = |p: &Path| on_disk(p).map_err(|e| Error::output(p, "inspect", e));
                let size = |file: &Path, found| {
                    wrong(Defect::Size {
                        file: file.to_path_buf(),
                        want: f.size,
                        found,
                    })
                };
                match state(&fin)? {
                    OnDisk::File(len) if len == f.size => {}
                    OnDisk::File(len) => return Err(size(&fin, len)),
                    OnDisk::Other => return Err(wrong(Defect::NotAFile(fin))),
                    OnDisk::Absent => match state(&tmp)? {
                        OnDisk::File(len) if len == f.size => renames.push((tmp.clone(), fin)),
                        OnDisk::File(len) => return Err(size(&tmp, len)),
                        OnDisk::Other => return Err(wrong(Defect::NotAFile(tmp))),
                        // Uploaded to object storage and removed here: its rows are safe.
                        OnDisk::Absent if uploaded(&fin) => {}
                        OnDisk::Absent => return Err(wrong(Defect::Missing { file: fin, tmp })),
                    },
                }
                committed.insert(f.fin.clone());
                committed_tmps.insert(base.join(&f.tmp));
            }
            done.extend(&c.items);
        }
        // A pending checkpoint's files are whole under their temporary names, and kept for
        // [`Journal::resolve_pending`].
        if let Some(c) = &left_pending {
            for f in &c.files {
                let tmp = base.join(&f.tmp);
                let wrong = |defect| {
                    refuse(JournalError {
                        line: Some(c.line),
                        defect,
                    })
                };
                match on_disk(&tmp).map_err(|e| Error::output(&tmp, "inspect", e))? {
                    OnDisk::File(len) if len == f.size => {}
                    OnDisk::File(found) => {
                        return Err(wrong(Defect::Size {
                            file: tmp,
                            want: f.size,
                            found,
                        }))
                    }
                    OnDisk::Other => return Err(wrong(Defect::NotAFile(tmp))),
                    OnDisk::Absent => {
                        return Err(wrong(Defect::Missing {
                            file: base.join(&f.fin),
                            tmp,
                        }))
                    }
                }
                committed_tmps.insert(tmp);
            }
        }
        // The state the last checkpoint committed (its windows), whole, before any change.
        let last = contents.checkpoints.last();
        let saved = match last.and_then(|c| c.state.as_ref().map(|r| (c, r))) {
            None => None,
            Some((c, r)) => {
                let bytes = state::load(path, r).map_err(|defect| {
                    refuse(JournalError {
                        line: Some(c.line),
                        defect,
                    })
                })?;
                Some(SavedState {
                    key: r.key.clone(),
                    bytes,
                    path: path.with_file_name(&r.file),
                    line: c.line,
                })
            }
        };
        let state_file = last.and_then(|c| c.state.as_ref().map(|r| r.file.clone()));
        let since = contents
            .checkpoints
            .iter()
            .rev()
            .find_map(|c| c.since.clone());
        let position = contents
            .checkpoints
            .iter()
            .rev()
            .find_map(|c| c.position.clone());
        let last_line = last.map(|c| c.line);
        // A file of this output written since the journal started, but named by no line:
        // lines were lost (a truncated journal), and resuming would write its rows twice.
        let unlisted: Vec<PathBuf> = recent_files(path, files, contents.started)
            .into_iter()
            .filter(|name| !committed.contains(name))
            .map(|name| base.join(name))
            .collect();
        if let Some(first) = unlisted.first() {
            return Err(refuse(JournalError {
                line: None,
                defect: Defect::Unlisted {
                    file: first.clone(),
                    count: unlisted.len(),
                },
            }));
        }

        let mut rec = Recovery {
            checkpoints: contents.checkpoints.len() as u64,
            torn_line: contents.torn_tail,
            pending: left_pending.as_ref().map(|c| c.number),
            ..Recovery::default()
        };
        for (tmp, fin) in renames {
            fs::rename(&tmp, &fin).map_err(|e| Error::output(&fin, "rename into place", e))?;
            crate::fsutil::sync_parent(&fin);
            rec.renamed += 1;
            crate::failpoint::hit("journal.recover");
        }
        // Temporary files of ours not in a committed checkpoint: an unfinished checkpoint.
        rec.removed = files.remove_stale(&committed_tmps);
        let pending_state = left_pending
            .as_ref()
            .and_then(|c| c.state.as_ref().map(|r| r.file.as_str()));
        state::sweep(path, &[state_file.as_deref(), pending_state]);
        if contents.torn_tail {
            file.set_len(contents.valid_end)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::output(path, "truncate a torn journal line", e))?;
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                files: files.clone(),
                done,
                started: contents.started,
                next_checkpoint: rec.checkpoints + 1,
                last_line,
                saved,
                state_file,
                state_taken: false,
                since,
                position,
                position_source: None,
                id: contents.id,
                id_derived: contents.id_derived,
                two_phase: false,
                left_pending,
                unconfirmed: None,
                superseded_state: None,
                lines: memchr::memchr_iter(b'\n', &bytes[..contents.valid_end as usize]).count()
                    as u64,
            },
            rec,
        ))
    }

    /// The items done by committed checkpoints.
    pub fn done(&self) -> &RangeSet {
        &self.done
    }

    /// When the journal was started (seconds since the Unix epoch).
    pub fn started(&self) -> u64 {
        self.started
    }

    /// The `{since}` position the last committed checkpoint saved (or, once
    /// [`Journal::set_since`] was called, the one the next checkpoint will).
    pub fn since(&self) -> Option<&SavedSince> {
        self.since.as_ref()
    }

    /// The `{since}` position the next checkpoints commit: the highest value among every row
    /// they and the earlier ones hold (the writer's, at the checkpoint).
    pub fn set_since(&mut self, since: SavedSince) {
        self.since = Some(since);
    }

    /// The source's position ([`SourcePosition`]) the last committed checkpoint saved, as
    /// JSON text; `None` when no checkpoint saved one.
    pub fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    /// Makes every later checkpoint commit `source`'s position with its items.
    pub fn track_position(&mut self, source: std::sync::Arc<dyn SourcePosition>) {
        self.position_source = Some(source);
    }

    /// Commits a checkpoint: `files` (temporary, final) are complete and fsynced, and hold
    /// exactly the rows of `items`. Returns once the line is durable; the caller then renames.
    pub fn commit(&mut self, files: &[(PathBuf, PathBuf)], items: &RangeSet) -> Result<()> {
        self.commit_with_state(files, items, None)
    }

    /// The state the last committed checkpoint saved, for a run whose state is keyed `key`
    /// (`None`: a run without one), taken once; `None` when there is nothing to resume from.
    /// Refused, with the journal's path and line, when it cannot be resumed from: the state
    /// is of other windows (the key differs), the run has none but the journal has one, or
    /// the checkpoints were committed without state (a run without windows, whose rows the
    /// windows would miss).
    pub fn take_state(&mut self, key: Option<&str>) -> Result<Option<SavedState>> {
        self.check_state(key)?;
        self.state_taken = true;
        Ok(self.saved.take())
    }

    /// Whether a run whose state is keyed `key` can resume from this journal (see
    /// [`Journal::take_state`], which it leaves the state to): called when the journal is
    /// opened, so that a refusal comes before anything is fetched.
    pub fn check_state(&self, key: Option<&str>) -> Result<()> {
        let refuse = |why: String| Error::Journal {
            path: self.path.clone(),
            line: self.last_line,
            why: format!("{why}; {}", self.files.afresh(&self.path)),
        };
        match (key, self.saved.as_ref()) {
            (Some(ours), Some(s)) if s.key == ours => Ok(()),
            (Some(ours), Some(s)) => Err(refuse(format!(
                "the window state committed here is of other windows ({}): resuming would mix \
                 the two; run with the same window options to finish it",
                key_diff(&s.key, ours)
            ))),
            (None, Some(s)) => Err(refuse(format!(
                "the journal holds the state of windows ({}), but this run has no windows; \
                 run with the same window options to finish it",
                quoted(&s.key)
            ))),
            (Some(_), None) if self.last_line.is_some() && !self.state_taken => Err(refuse(
                "the checkpoints were committed without window state (by a run without \
                 windows): the windows would miss their rows"
                    .into(),
            )),
            (_, None) => Ok(()),
        }
    }

    /// Commits a checkpoint as [`Journal::commit`] does, with the operator `state` that goes
    /// with exactly these files and items (see [`state`]): the state file is made durable
    /// first, and the line that commits the files commits it too.
    pub fn commit_with_state(
        &mut self,
        files: &[(PathBuf, PathBuf)],
        items: &RangeSet,
        state: Option<State<'_>>,
    ) -> Result<()> {
        let base = self.path.parent().unwrap_or(Path::new("")).to_path_buf();
        let names = Names::new(&self.path, &self.files);
        // A name the next run would refuse must not be committed: it would stop every resume.
        let refuse = |defect| Error::Journal {
            path: self.path.clone(),
            line: Some(self.lines + 1),
            why: format!("will not commit: {defect}"),
        };
        if let Some(n) = self
            .unconfirmed
            .or(self.left_pending.as_ref().map(|c| c.number))
        {
            return Err(Error::Journal {
                path: self.path.clone(),
                line: Some(self.lines),
                why: format!(
                    "will not commit: checkpoint {n} is pending (neither confirmed nor undone)"
                ),
            });
        }
        let rel = |p: &Path| -> Result<String> {
            match p.strip_prefix(&base) {
                Ok(r) => Ok(r.to_string_lossy().into_owned()),
                Err(_) => Err(refuse(Defect::Name {
                    name: p.to_string_lossy().into_owned(),
                    why: "is not in the journal's directory".into(),
                })),
            }
        };
        let mut named = Vec::with_capacity(files.len());
        for (tmp, fin) in files {
            let size = fs::metadata(tmp)
                .map_err(|e| Error::output(tmp, "read the size of", e))?
                .len();
            let (t, f) = (rel(tmp)?, rel(fin)?);
            names.check_pair(&t, &f).map_err(refuse)?;
            named.push((t, f, size));
        }
        let saved = match state {
            Some(s) => Some(state::write(&self.path, self.next_checkpoint, &s)?),
            None => None,
        };
        if saved.is_some() {
            crate::failpoint::hit("journal.after_state");
        }
        let position = self.position_source.as_ref().map(|p| p.commit(items));
        let line = checkpoint_line(
            self.next_checkpoint,
            &named,
            items,
            saved.as_ref(),
            self.since.as_ref(),
            position.as_deref(),
            self.two_phase,
        );
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::output(&self.path, "write journal", e))?;
        self.done.extend(items);
        if position.is_some() {
            self.position = position;
        }
        self.lines += 1;
        self.last_line = Some(self.lines);
        if self.two_phase {
            self.unconfirmed = Some(self.next_checkpoint);
        }
        self.next_checkpoint += 1;
        // The older state is no longer needed once this line is confirmed: it names the
        // newer one. (A pending line undone by the next run leaves the older one in force.)
        let old = std::mem::replace(&mut self.state_file, saved.map(|s| s.file));
        match self.two_phase {
            true => self.superseded_state = old,
            false => remove_state_file(&self.path, old),
        }
        Ok(())
    }

    /// The journal's number: random, written in its first line when it was started (or, in
    /// a journal from before that, taken from that line), so it tells this output's
    /// checkpoints from other outputs' in what they leave elsewhere (a Kafka group's offset
    /// metadata).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether [`Journal::id`] was derived from the first line, in a journal from before they
    /// had a number: the same command started in the same second elsewhere has the same.
    pub fn id_derived(&self) -> bool {
        self.id_derived
    }

    /// Makes every later checkpoint line pending (`"pending":true`): its files and items are
    /// durable, but it stands only once [`Journal::confirm`] appends `{"confirmed":N}`, and
    /// the next run decides about one left unconfirmed ([`Journal::resolve_pending`]). For a
    /// source whose position lives elsewhere too (a Kafka group's committed offsets): the
    /// checkpoint is confirmed once that position is, so both agree whenever a run stops.
    pub fn set_two_phase(&mut self, on: bool) {
        self.two_phase = on;
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of the last checkpoint committed (0: none yet).
    pub fn last_checkpoint(&self) -> u64 {
        self.next_checkpoint - 1
    }

    /// This run's pending checkpoint, if any: its number.
    pub fn unconfirmed(&self) -> Option<u64> {
        self.unconfirmed
    }

    /// Confirms this run's pending checkpoint: appends `{"confirmed":N}` and makes it
    /// durable; the caller then renames the files into place.
    pub fn confirm(&mut self) -> Result<()> {
        let Some(n) = self.unconfirmed else {
            return Ok(());
        };
        self.file
            .write_all(&confirmed_line(n))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::output(&self.path, "write journal", e))?;
        self.lines += 1;
        self.unconfirmed = None;
        remove_state_file(&self.path, self.superseded_state.take());
        Ok(())
    }

    /// The pending checkpoint an earlier run left: its number, the source position saved
    /// with it and the one before it (JSON text), for the caller to decide whether it stands
    /// ([`Journal::resolve_pending`]).
    pub fn left_pending(&self) -> Option<(u64, Option<&str>, Option<&str>)> {
        self.left_pending
            .as_ref()
            .map(|c| (c.number, c.position.as_deref(), self.position.as_deref()))
    }

    /// Decides the pending checkpoint an earlier run left: `stands` confirms it (the
    /// `confirmed` line, then its files renamed into place, its items done and its position
    /// and state in force), otherwise it is undone (its temporary files and state deleted,
    /// its line cut off: its items are read again). Returns how many files were renamed or
    /// deleted.
    pub fn resolve_pending(&mut self, stands: bool) -> Result<u64> {
        let Some(c) = self.left_pending.take() else {
            return Ok(0);
        };
        let base = crate::fsutil::parent_dir(&self.path).to_path_buf();
        let mut touched = 0;
        if !stands {
            // The line first: a crash after it leaves temporary files no line names, which
            // the next run deletes; the other way round, a line naming files that are gone.
            self.file
                .set_len(c.offset)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| Error::output(&self.path, "cut off a pending journal line", e))?;
            self.lines -= 1;
            for f in &c.files {
                let tmp = base.join(&f.tmp);
                fs::remove_file(&tmp).map_err(|e| Error::output(&tmp, "delete", e))?;
                touched += 1;
            }
            remove_state_file(&self.path, c.state.as_ref().map(|r| r.file.clone()));
            return Ok(touched);
        }
        let saved = match &c.state {
            None => None,
            Some(r) => {
                let bytes = state::load(&self.path, r).map_err(|defect| Error::Journal {
                    path: self.path.clone(),
                    line: Some(c.line),
                    why: defect.to_string(),
                })?;
                Some(SavedState {
                    key: r.key.clone(),
                    bytes,
                    path: self.path.with_file_name(&r.file),
                    line: c.line,
                })
            }
        };
        self.unconfirmed = Some(c.number);
        self.confirm()?;
        for f in &c.files {
            let (tmp, fin) = (base.join(&f.tmp), base.join(&f.fin));
            fs::rename(&tmp, &fin).map_err(|e| Error::output(&fin, "rename into place", e))?;
            crate::fsutil::sync_parent(&fin);
            touched += 1;
        }
        self.done.extend(&c.items);
        if c.position.is_some() {
            self.position = c.position.clone();
        }
        if c.since.is_some() {
            self.since = c.since.clone();
        }
        if let Some(r) = &c.state {
            let old = self.state_file.replace(r.file.clone());
            remove_state_file(&self.path, old);
            self.saved = saved;
        }
        self.last_line = Some(c.line);
        self.next_checkpoint = c.number + 1;
        Ok(touched)
    }
}

/// Deletes the state file `name` beside the journal at `journal`, if any (best effort: the
/// next run's sweep deletes one left behind).
fn remove_state_file(journal: &Path, name: Option<String>) {
    if let Some(name) = name {
        let _ = fs::remove_file(journal.with_file_name(name));
    }
}

/// `.NAME.tmp-PID`, beside `path`.
fn creation_temp(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Starts the journal at `path` unless it exists, whole: its first line is written and
/// fsynced under a temporary name, then linked into place (a link, unlike a rename, fails if
/// another run has created the journal meanwhile). So an existing journal always has its first
/// line, and an empty one or one with a torn first line was damaged after the fact.
fn create(path: &Path, identity: &str) -> Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = header_line(identity, started, new_id());
    let tmp = creation_temp(path);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&header)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::output(&tmp, "start journal", e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        // A file system without hard links: created in place, where a crash in between
        // leaves an empty journal (refused by the next run, with how to start afresh).
        Err(_) => match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => f
                .write_all(&header)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::output(path, "start journal", e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(Error::output(path, "start journal", e)),
        },
    }
    crate::fsutil::sync_parent(path);
    Ok(())
}

/// Deletes what a run killed while starting the journal left: `.NAME.tmp-PID` beside it.
fn remove_creation_leftovers(path: &Path) {
    let (Some(name), Ok(entries)) = (
        path.file_name().map(|n| n.to_string_lossy().into_owned()),
        fs::read_dir(crate::fsutil::parent_dir(path)),
    ) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if temp_target(&file) == Some(name.as_str()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The final files of this output (names relative to the directory of `journal`) last
/// modified at or after `since` (seconds since the Unix epoch): what runs of this journal may
/// have written.
fn recent_files(journal: &Path, files: &OutputFiles, since: u64) -> Vec<String> {
    if let OutputFiles::Both(a, b) = files {
        let mut found = recent_files(journal, a, since);
        found.extend(recent_files(journal, b, since));
        found.sort();
        return found;
    }
    let names = Names::new(journal, files);
    let base = crate::fsutil::parent_dir(journal);
    let mut found = Vec::new();
    let recent = |m: &fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|d| d.as_secs() >= since)
    };
    // Directories to read, relative to `base`, with how many levels further down to go.
    let mut todo: Vec<(String, usize)> = match (files, &names.root) {
        (OutputFiles::Beside(_), _) => vec![(String::new(), 0)],
        (OutputFiles::Under { partition_by, .. }, Some(root)) => {
            vec![(root.join("/"), partition_by.len())]
        }
        (OutputFiles::Under { .. }, None) | (OutputFiles::Both(..), _) => Vec::new(),
    };
    while let Some((rel, depth)) = todo.pop() {
        let Ok(entries) = fs::read_dir(base.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = match rel.is_empty() {
                true => name,
                false => format!("{rel}/{name}"),
            };
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() && depth > 0 {
                todo.push((child, depth - 1));
            } else if kind.is_file()
                && depth == 0
                && names.check_final(&child).is_ok()
                && e.metadata().is_ok_and(|m| recent(&m))
            {
                found.push(child);
            }
        }
    }
    found.sort();
    found
}

impl OutputFiles {
    /// Deletes the temporary files of this output that are not in `keep`. Returns how many.
    fn remove_stale(&self, keep: &HashSet<PathBuf>) -> u64 {
        self.remove_temps(keep, false).len() as u64
    }

    /// Deletes the temporary files (`.NAME.tmp-PID`) of this output whose process is gone:
    /// what a run killed before it could finish (SIGKILL, a second SIGINT, a power cut) left.
    /// For runs without a journal (a journal's recovery clears its own, keeping those of
    /// committed checkpoints). The caller holds the output's lock, so no other run is writing
    /// here; the process check keeps the files of a live one anyway (an older version without
    /// the lock, a lock on a file system that does not share it). Returns the files deleted.
    pub(crate) fn remove_dead_temps(&self) -> Vec<PathBuf> {
        self.remove_temps(&HashSet::new(), true)
    }

    /// Deletes the temporary files of this output not in `keep` (only those of a dead
    /// process if `dead_only`). Returns the files deleted.
    fn remove_temps(&self, keep: &HashSet<PathBuf>, dead_only: bool) -> Vec<PathBuf> {
        match self {
            OutputFiles::Both(a, b) => {
                let mut removed = a.remove_temps(keep, dead_only);
                removed.extend(b.remove_temps(keep, dead_only));
                removed
            }
            OutputFiles::Under { root, .. } => {
                let ours = |name: &str| name.ends_with(".parquet");
                remove_stale_temps(root, true, &ours, keep, dead_only)
            }
            OutputFiles::Beside(out) => {
                let dir = crate::fsutil::parent_dir(out);
                let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    return Vec::new();
                };
                let (stem, ext) = stem_ext(out);
                let ours = |file: &str| file == name || is_rotated_name(file, &stem, &ext);
                remove_stale_temps(dir, false, &ours, keep, dead_only)
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
/// `dir` (and its subdirectories if `recursive`) that are not in `keep`, and if `dead_only`
/// whose process PID no longer runs. Returns the files deleted.
fn remove_stale_temps(
    dir: &Path,
    recursive: bool,
    ours: &dyn Fn(&str) -> bool,
    keep: &HashSet<PathBuf>,
    dead_only: bool,
) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let file = e.file_name().to_string_lossy().into_owned();
        // Not followed: a symbolic link is not part of the output's tree.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if recursive {
                removed.extend(remove_stale_temps(&p, recursive, ours, keep, dead_only));
            }
            continue;
        }
        let gone = || {
            let pid = file
                .rsplit_once(".tmp-")
                .and_then(|(_, pid)| pid.parse().ok());
            pid.is_some_and(|pid| !crate::fsutil::process_alive(pid))
        };
        if temp_target(&file).is_some_and(ours)
            && !keep.contains(&p)
            && (!dead_only || gone())
            && fs::remove_file(&p).is_ok()
        {
            removed.push(p);
        }
    }
    removed
}

/// The property the `journal_reader` fuzz target checks, and `tests/it/fuzz_corpora.rs`
/// replays on stable: whatever a journal holds, [`check`] does not panic; what it accepts names
/// only files inside the output, and its errors send a terminal no control bytes. The first
/// byte of `data` chooses the layout (rotated files beside `o.parquet`, or a dataset
/// partitioned by `service`), the rest is the journal. Panics when the property fails.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&layout, bytes)) = data.split_first() else {
        return;
    };
    let dir = Path::new("/data/out");
    let (journal, files) = match layout % 2 {
        0 => (
            dir.join("o.parquet.journal"),
            OutputFiles::Beside(dir.join("o.parquet")),
        ),
        _ => (
            dir.join("ds.journal"),
            OutputFiles::Under {
                root: dir.join("ds"),
                partition_by: vec!["service".into()],
                kafka_names: false,
            },
        ),
    };
    match check(&journal, bytes, "src", &files) {
        Ok(contents) => {
            assert!(contents.valid_end <= bytes.len() as u64);
            for f in contents.checkpoints.iter().flat_map(|c| &c.files) {
                for name in [&f.tmp, &f.fin] {
                    let inside = Path::new(name)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                    assert!(inside && !name.contains('\0'), "{name:?} accepted");
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.bytes().any(|b| b.is_ascii_control()), "{msg:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotated name of `o.parquet`.
    fn rotated(seq: u64) -> String {
        format!("o-20261124T100000Z-{seq:05}.parquet")
    }

    fn beside(d: &Path) -> OutputFiles {
        OutputFiles::Beside(d.join("o.parquet"))
    }

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
        let all: RangeSet = format!("0-{}", u64::MAX).parse().unwrap();
        assert_eq!(all.len(), u64::MAX);
    }

    #[test]
    fn a_range_set_covers_a_span_only_when_one_of_its_ranges_holds_it_all() {
        let s: RangeSet = "1-5,7-9".parse().unwrap();
        assert!(s.covers(1, 5) && s.covers(2, 3) && s.covers(7, 7) && s.covers(9, 9));
        assert!(!s.covers(0, 1) && !s.covers(5, 7) && !s.covers(6, 6) && !s.covers(8, 10));
        assert!(!RangeSet::default().covers(0, 0));
    }

    #[test]
    fn the_since_position_is_committed_with_checkpoints_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("o.parquet.journal");
        let files = beside(d.path());
        let (mut j, _) = Journal::open(&path, "id", &files).unwrap();
        assert_eq!(j.since(), None);
        // A checkpoint before any position, then two with one: the last one counts.
        j.commit(&[], &"0".parse().unwrap()).unwrap();
        let at = |value| SavedSince {
            field: "ts".into(),
            timestamp: true,
            value,
        };
        j.set_since(at(-5));
        j.commit(&[], &"1".parse().unwrap()).unwrap();
        j.set_since(at(1_767_225_629_000_000));
        j.commit(&[], &"2".parse().unwrap()).unwrap();
        drop(j);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#""since":["ts","timestamp",1767225629000000],"crc32""#),
            "{text}"
        );
        let (j, rec) = Journal::open(&path, "id", &files).unwrap();
        assert_eq!(rec.checkpoints, 3);
        assert_eq!(j.since(), Some(&at(1_767_225_629_000_000)));
        drop(j);
        // The position is inside the line's checksum: changed, the line is refused.
        fs::write(&path, text.replace("1767225629000000", "1767225629000001")).unwrap();
        let e = Journal::open(&path, "id", &files)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("checksum") || e.contains("CRC"), "{e}");
        // A position of another shape is malformed, whatever its checksum.
        let mut line =
            b"{\"checkpoint\":1,\"files\":[],\"items\":\"0\",\"since\":[\"ts\",\"date\",1]"
                .to_vec();
        seal(&mut line);
        let mut bytes = header_line("id", 0, 7);
        bytes.extend_from_slice(&line);
        let e = check(&path, &bytes, "id", &files).unwrap_err();
        assert!(
            matches!(e.defect, Defect::Malformed(ref m) if m.contains("since")),
            "{e:?}"
        );
    }

    #[test]
    fn a_source_position_is_committed_with_checkpoints_and_read_back() {
        // The items each checkpoint commits, as the source is told them.
        struct Seen(parking_lot::Mutex<Vec<String>>);
        impl SourcePosition for Seen {
            fn commit(&self, items: &RangeSet) -> String {
                let mut seen = self.0.lock();
                seen.push(format!("\"{items}\""));
                format!("{{\"upto\":[{}]}}", seen.join(","))
            }
        }
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("o.parquet.journal");
        let files = beside(d.path());
        let (mut j, _) = Journal::open(&path, "id", &files).unwrap();
        assert_eq!(j.position(), None);
        j.commit(&[], &"0".parse().unwrap()).unwrap();
        let seen = std::sync::Arc::new(Seen(Default::default()));
        j.track_position(seen.clone());
        j.commit(&[], &"1-3".parse().unwrap()).unwrap();
        j.commit(&[], &"7".parse().unwrap()).unwrap();
        assert_eq!(*seen.0.lock(), ["\"1-3\"", "\"7\""]);
        drop(j);
        let (j, rec) = Journal::open(&path, "id", &files).unwrap();
        assert_eq!(rec.checkpoints, 3);
        // The last one, re-encoded: the same value.
        let back: serde_json::Value = serde_json::from_str(j.position().unwrap()).unwrap();
        assert_eq!(back, serde_json::json!({"upto": ["1-3", "7"]}));
    }

    #[test]
    fn a_committed_checkpoint_is_finished_and_an_unfinished_one_undone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = d.join("o.parquet.journal");
        let (mut j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!(rec.checkpoints, 0);
        // Checkpoint 1: committed and renamed. Checkpoint 2: committed, crash before rename.
        // Checkpoint 3: a crash while its line was appended.
        let tmp = |seq| d.join(format!(".{}.tmp-1", rotated(seq)));
        for (seq, body) in [(1, "a"), (2, "bb"), (3, "ccc")] {
            std::fs::write(tmp(seq), body).unwrap();
        }
        j.commit(&[(tmp(1), d.join(rotated(1)))], &"0-9".parse().unwrap())
            .unwrap();
        std::fs::rename(tmp(1), d.join(rotated(1))).unwrap();
        j.commit(&[(tmp(2), d.join(rotated(2)))], &"10-19".parse().unwrap())
            .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"checkpoint\":3,\"fi").unwrap();
        drop(f);
        let (mut j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!(
            (rec.checkpoints, rec.renamed, rec.removed, rec.torn_line),
            (2, 1, 1, true)
        );
        assert_eq!(j.done().to_string(), "0-19");
        assert!(d.join(rotated(2)).exists() && !tmp(3).exists());
        // The torn line was cut off before the next commit.
        j.commit(&[], &"20".parse().unwrap()).unwrap();
        drop(j);
        let (j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!(j.done().to_string(), "0-20");
        assert!(!rec.torn_line);
        drop(j);
        // Another command's journal is refused, saying what differs.
        let err = Journal::open(&path, "source=a; chunk=2", &beside(d))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("another command") && err.contains(":1:"),
            "{err}"
        );
    }

    #[test]
    fn a_pending_checkpoint_is_left_to_be_decided_then_stands_or_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = d.join("o.parquet.journal");
        let tmp = |seq| d.join(format!(".{}.tmp-1", rotated(seq)));
        let (mut j, _) = Journal::open(&path, "src", &beside(d)).unwrap();
        let id = j.id();
        j.set_two_phase(true);
        // Checkpoint 1: pending, confirmed, renamed.
        std::fs::write(tmp(1), "a").unwrap();
        j.commit(&[(tmp(1), d.join(rotated(1)))], &"0-9".parse().unwrap())
            .unwrap();
        assert_eq!(j.unconfirmed(), Some(1));
        let refused = j.commit(&[], &"10".parse().unwrap()).unwrap_err();
        assert!(refused.to_string().contains("pending"), "{refused}");
        j.confirm().unwrap();
        std::fs::rename(tmp(1), d.join(rotated(1))).unwrap();
        // Checkpoint 2: pending when the run stops.
        std::fs::write(tmp(2), "bb").unwrap();
        j.commit(&[(tmp(2), d.join(rotated(2)))], &"10-19".parse().unwrap())
            .unwrap();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.contains(r#""pending":true"#) && text.contains(r#"{"confirmed":1,"#));
        let snapshot = std::fs::read(&path).unwrap();

        // Undone: its file deleted, its line cut off, its items to be read again.
        let (mut j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!((rec.checkpoints, rec.pending, rec.removed), (1, Some(2), 0));
        assert_eq!(j.id(), id, "the journal keeps its number");
        assert_eq!(j.left_pending().map(|p| p.0), Some(2));
        assert!(
            tmp(2).exists(),
            "a pending checkpoint's file waits for the decision"
        );
        assert_eq!(j.done().to_string(), "0-9");
        assert_eq!(j.resolve_pending(false).unwrap(), 1);
        assert!(!tmp(2).exists() && !d.join(rotated(2)).exists());
        j.commit(&[], &"10".parse().unwrap()).unwrap();
        drop(j);
        let (j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!((rec.checkpoints, rec.pending), (2, None));
        assert_eq!(j.done().to_string(), "0-10");
        drop(j);

        // The same pending checkpoint standing: confirmed, renamed, its items done.
        std::fs::write(&path, &snapshot).unwrap();
        std::fs::write(tmp(2), "bb").unwrap();
        let (mut j, _) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!(j.resolve_pending(true).unwrap(), 1);
        assert!(d.join(rotated(2)).exists() && !tmp(2).exists());
        assert_eq!(j.done().to_string(), "0-19");
        assert_eq!(j.last_checkpoint(), 2);
        j.commit(&[], &"20".parse().unwrap()).unwrap();
        drop(j);
        let (j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!((rec.checkpoints, rec.pending), (3, None));
        assert_eq!(j.done().to_string(), "0-20");
        drop(j);

        // A checkpoint after a pending one, or a confirmation of another, is damage.
        let mut bad = snapshot.clone();
        bad.extend_from_slice(&confirmed_line(1));
        std::fs::write(&path, &bad).unwrap();
        let e = Journal::open(&path, "src", &beside(d))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("confirms checkpoint 1"), "{e}");
        let mut bad = snapshot.clone();
        bad.extend_from_slice(&checkpoint_line(
            3,
            &[],
            &"30".parse().unwrap(),
            None,
            None,
            None,
            false,
        ));
        std::fs::write(&path, &bad).unwrap();
        let e = Journal::open(&path, "src", &beside(d))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("follows checkpoint 2, which is pending"), "{e}");
        // A confirmation torn while it was appended is no confirmation.
        let mut torn = snapshot.clone();
        torn.extend_from_slice(b"{\"confirmed\":2,\"cr");
        std::fs::write(&path, &torn).unwrap();
        std::fs::rename(d.join(rotated(2)), tmp(2)).unwrap();
        let (j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!((rec.pending, rec.torn_line), (Some(2), true));
        drop(j);
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
        let (_, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!(rec.removed, 2);
        assert!(ours.iter().all(|f| !d.join(f).exists()));
        assert!(others.iter().all(|f| d.join(f).exists()));
    }

    #[test]
    fn a_journal_in_use_is_refused_and_a_damaged_start_is_not_taken_for_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = d.join("o.parquet.journal");
        let (first, _) = Journal::open(&path, "src", &beside(d)).unwrap();
        let err = Journal::open(&path, "src", &beside(d))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another pinflow run is using it"), "{err}");
        drop(first);
        let (j, rec) = Journal::open(&path, "src", &beside(d)).unwrap();
        assert_eq!(rec.checkpoints, 0);
        drop(j);
        // The journal is created whole, so an empty one or a cut first line is damage.
        let whole = std::fs::read(&path).unwrap();
        for (bytes, want) in [(&whole[..0], "is empty"), (&whole[..14], "incomplete")] {
            std::fs::write(&path, bytes).unwrap();
            let err = Journal::open(&path, "src", &beside(d))
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains(want) && err.contains("to start afresh"),
                "{err}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
        }
        // A format 1 journal (no checksums) is refused with what it is.
        std::fs::write(&path, "{\"pinflow_journal\":1,\"run\":\"src\"}\n").unwrap();
        let err = Journal::open(&path, "src", &beside(d))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("format 1"), "{err}");
    }

    #[test]
    fn names_outside_the_output_or_not_of_its_form_are_refused() {
        let d = Path::new("/data/out");
        let journal = d.join("o.parquet.journal");
        let files = beside(d);
        let names = Names::new(&journal, &files);
        let ok = rotated(3);
        assert_eq!(names.check_pair(&format!(".{ok}.tmp-12"), &ok), Ok(()));
        let refused = [
            ("../victim.tmp", "../victim", "`..`"),
            ("/etc/x.tmp", "/etc/x", "absolute"),
            ("", "", "empty"),
            (".a.tmp-1", "o-20261124T100000Z-00001.parquet\0", "NUL"),
            (
                ".a.tmp-1",
                "sub/o-20261124T100000Z-00001.parquet",
                "separator",
            ),
            (".o.parquet.tmp-1", "o.parquet", "not a name this output"),
            (
                ".p-20261124T100000Z-00001.parquet.tmp-1",
                "p-20261124T100000Z-00001.parquet",
                "not a name",
            ),
            (
                "../.o-20261124T100000Z-00001.parquet.tmp-1",
                "o-20261124T100000Z-00001.parquet",
                "`..`",
            ),
            (
                ".other.tmp-1",
                "o-20261124T100000Z-00001.parquet",
                "not a temporary name",
            ),
            (
                "o-20261124T100000Z-00001.parquet",
                "o-20261124T100000Z-00001.parquet",
                "not a temporary name",
            ),
            (
                ".o-20261124T100000Z-00001.parquet.tmp-1",
                "o-20261124T100000Z-00001.parquet\u{1b}[2J",
                "control",
            ),
        ];
        for (tmp, fin, why) in refused {
            let err = names.check_pair(tmp, fin).unwrap_err().to_string();
            assert!(err.contains(why), "{tmp} {fin}: {err}");
            assert!(!err.contains('\u{1b}') && !err.contains('\0'), "{err:?}");
        }
        let files = OutputFiles::Under {
            root: d.join("ds"),
            partition_by: vec!["service".into(), "date".into()],
            kafka_names: false,
        };
        let names = Names::new(&d.join("ds.journal"), &files);
        let fin = "ds/service=a%2Fb/date=2026-11-24/part-00012.parquet";
        let tmp = "ds/service=a%2Fb/date=2026-11-24/.part-00012.parquet.tmp-9";
        assert_eq!(names.check_pair(tmp, fin), Ok(()));
        // A value `..` is the directory `service=..`, inside the output.
        let fin = "ds/service=../date=../part-00012.parquet";
        let tmp = "ds/service=../date=../.part-00012.parquet.tmp-9";
        assert_eq!(names.check_pair(tmp, fin), Ok(()));
        for fin in [
            "ds/service=a/part-00012.parquet",
            "ds/service=a/date=x/y/part-00012.parquet",
            "ds/service=a/../../part-00012.parquet",
            "other/service=a/date=b/part-00012.parquet",
            "ds/date=b/service=a/part-00012.parquet",
            "ds/service=/date=b/part-00012.parquet",
            "ds/service=a/date=b/part-12.parquet",
            "ds/service=a/date=b/secret",
        ] {
            let tmp = fin.replace("part-", ".part-") + ".tmp-1";
            assert!(names.check_pair(&tmp, fin).is_err(), "{fin}");
        }
        assert!(names
            .check_pair(
                "ds/service=a/date=b/.part-00012.parquet.tmp-1",
                "ds/service=a/date=c/part-00012.parquet"
            )
            .is_err());

        // writer.file_per_kafka_partition: the name repeats the directories' topic and
        // partition, with a 20-digit offset.
        let files = OutputFiles::Under {
            root: d.join("ds"),
            partition_by: vec!["topic".into(), "partition".into()],
            kafka_names: true,
        };
        let names = Names::new(&d.join("ds.journal"), &files);
        let fin = "ds/topic=logs/partition=3/logs+3+00000000000000004100.parquet";
        let tmp = "ds/topic=logs/partition=3/.logs+3+00000000000000004100.parquet.tmp-9";
        assert_eq!(names.check_pair(tmp, fin), Ok(()));
        for fin in [
            "ds/topic=logs/partition=3/part-00012.parquet",
            "ds/topic=logs/partition=3/logs+4+00000000000000004100.parquet",
            "ds/topic=logs/partition=3/other+3+00000000000000004100.parquet",
            "ds/topic=logs/partition=3/logs+3+4100.parquet",
            "ds/partition=3/topic=logs/logs+3+00000000000000004100.parquet",
        ] {
            let (dir, file) = fin.rsplit_once('/').unwrap();
            let tmp = format!("{dir}/.{file}.tmp-1");
            let why = names.check_pair(&tmp, fin).unwrap_err().to_string();
            assert!(
                why.contains("is not a name this output gives"),
                "{fin}: {why}"
            );
        }
    }

    /// Deterministic pseudo-random numbers (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// A valid journal of `n` checkpoints for either layout, as [`Journal::commit`] writes it.
    fn sample(rng: &mut Rng, n: u64, partitioned: bool) -> Vec<u8> {
        let mut out = header_line("src", 1_700_000_000, 7);
        for k in 1..=n {
            let files: Vec<(String, String, u64)> = (0..rng.below(3) as u64)
                .map(|i| {
                    let seq = k * 10 + i;
                    let size = rng.next() % 100_000;
                    match partitioned {
                        false => (format!(".{}.tmp-42", rotated(seq)), rotated(seq), size),
                        true => (
                            format!("ds/service=s{i}/.part-{seq:05}.parquet.tmp-42"),
                            format!("ds/service=s{i}/part-{seq:05}.parquet"),
                            size,
                        ),
                    }
                })
                .collect();
            let items: RangeSet = format!("{}-{}", k * 100, k * 100 + 99).parse().unwrap();
            out.extend(checkpoint_line(k, &files, &items, None, None, None, false));
        }
        out
    }

    /// Checks `bytes` against both layouts; whatever they are, the answer is a journal whose
    /// every name is inside the output, or a typed error.
    fn check_any(bytes: &[u8]) -> [std::result::Result<Contents, JournalError>; 2] {
        let d = Path::new("/data/out");
        let layouts = [
            (d.join("o.parquet.journal"), beside(d)),
            (
                d.join("ds.journal"),
                OutputFiles::Under {
                    root: d.join("ds"),
                    partition_by: vec!["service".into()],
                    kafka_names: false,
                },
            ),
        ];
        layouts.map(|(journal, files)| {
            let r = check(&journal, bytes, "src", &files);
            if let Ok(c) = &r {
                for f in c.checkpoints.iter().flat_map(|c| &c.files) {
                    for name in [&f.tmp, &f.fin] {
                        assert!(plain_relative(name).is_ok(), "{name:?} accepted");
                    }
                }
            }
            if let Err(e) = &r {
                let msg = e.to_string();
                assert!(
                    !msg.bytes().any(|b| b.is_ascii_control()) && msg.len() < 2000,
                    "{msg:?}"
                );
            }
            r
        })
    }

    #[test]
    fn random_and_damaged_journals_never_panic_and_damage_is_caught() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        let alphabet = b"{}[]\",:0123456789-abcdefghijklmnopqrstuvwxyz./=\\\n\0\x1b\xff";
        for round in 0..6000 {
            let n = rng.below(5) as u64;
            let partitioned = round % 2 == 1;
            let good = sample(&mut rng, n, partitioned);
            let at = usize::from(partitioned);
            let checked = check_any(&good);
            let ok = checked[at].as_ref().map(|c| c.checkpoints.len());
            assert_eq!(ok, Ok(n as usize), "a valid journal checks out");
            let mut bad = good.clone();
            match round % 8 {
                // Truncated: the lines cut off are gone, a cut line is a torn append.
                0 => {
                    let cut = rng.below(good.len() + 1);
                    bad.truncate(cut);
                    let first = memchr::memchr(b'\n', &good).unwrap();
                    let r = &check_any(&bad)[at];
                    assert_eq!(r.is_ok(), cut > first, "cut at {cut}: {r:?}");
                    if let Ok(c) = r {
                        let complete = bad.iter().filter(|&&b| b == b'\n').count() - 1;
                        assert_eq!(c.checkpoints.len(), complete);
                        assert_eq!(c.torn_tail, cut > 0 && bad.last() != Some(&b'\n'));
                    }
                    continue;
                }
                // One byte changed: caught by the checksums, unless it is the last newline
                // (then the last line reads as a torn append: cut off as uncommitted, and the
                // files on disk tell whether it was; see `Journal::open`).
                1 => {
                    let i = rng.below(good.len());
                    bad[i] ^= 1 + rng.below(255) as u8;
                    let r = &check_any(&bad)[at];
                    if i == good.len() - 1 && n > 0 {
                        assert_eq!(
                            r.as_ref().map(|c| c.checkpoints.len()).ok(),
                            Some(n as usize - 1)
                        );
                    } else {
                        assert!(r.is_err(), "byte {i} of {} changed: {r:?}", good.len());
                    }
                    continue;
                }
                2 => {
                    let at = rng.below(bad.len() + 1);
                    let junk: Vec<u8> = (0..1 + rng.below(20))
                        .map(|_| alphabet[rng.below(alphabet.len())])
                        .collect();
                    bad.splice(at..at, junk);
                }
                3 => {
                    let a = rng.below(bad.len());
                    let b = a + rng.below(bad.len() - a);
                    bad.drain(a..b);
                }
                // Lines repeated, swapped or lost: caught by the numbering.
                4 | 5 => {
                    let mut lines: Vec<&[u8]> = good.split_inclusive(|&b| b == b'\n').collect();
                    if lines.len() < 3 {
                        continue;
                    }
                    let i = 1 + rng.below(lines.len() - 2);
                    match round % 8 {
                        4 => lines.insert(i, lines[i]),
                        _ => lines.swap(i, i + 1),
                    }
                    bad = lines.concat();
                    assert!(check_any(&bad)[at].is_err());
                    continue;
                }
                6 => {
                    bad = (0..rng.below(300))
                        .map(|_| alphabet[rng.below(alphabet.len())])
                        .collect();
                }
                _ => {
                    // Another layout's lines, with valid checksums: refused by the names.
                    let other = sample(&mut rng, n.max(1), !partitioned);
                    let r = &check_any(&other)[at];
                    let named = other.windows(7).any(|w| w == b"parquet");
                    assert!(r.is_err() || !named, "{r:?}");
                    continue;
                }
            }
            let _ = check_any(&bad);
        }
    }
}

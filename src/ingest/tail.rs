//! The tail: follows growing NDJSON files (`--tail PATH|GLOB`), as Fluent Bit's `tail` does
//! with its offsets database, until the run is stopped.
//!
//! - New whole lines are read as they are appended, in chunks of about
//!   `fetch.batch_max_bytes` cut after a newline; a partial last line waits for its newline.
//!   A line longer than `fetch.max_body_bytes` is a dead letter naming the file and the byte
//!   offset where it starts, and the rest of it is skipped.
//! - The pattern is looked at again every `tail_poll_interval` (and at once when inotify says
//!   a watched directory changed): a new match is followed from its first byte.
//! - Files are told apart by device and inode, not by name. A followed file renamed away
//!   (rotation) or deleted stays open: it is read to its end, and let go of once it has not
//!   grown for `tail_rotate_wait` while out of the pattern; its successor under the old name
//!   is another inode, followed from its first byte. A file that shrinks below the offset read
//!   (truncation, `copytruncate`) is read again from byte 0.
//! - With `writer.journal`, each checkpoint saves every file's committed byte ranges (see
//!   [`position`]), and a restarted run goes on from them: lines appended while pinflow was
//!   down are read, none twice. Without a journal, files are read from their first byte.
//! - On stop, every complete line already in the files is read and shipped before the thread
//!   returns (for at most `fetch.shutdown_timeout` while a writer keeps appending); a partial
//!   last line is left for the next run.
//!
//! Each chunk is one work item (body `PATH@START-END`, its byte range); a line dead-lettered
//! for its length or cut off by a truncation is a failed one. So the ledger holds as for every
//! source: items received = delivered + failed, and rows written + dead-lettered = records.

pub mod position;
mod watch;

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::IngestChannels;
use crate::ingest::batcher::Batcher;
use crate::ingest::IngestReport;
use crate::metrics::live::ThreadState;

use self::position::{FileEntry, Positions};

use crate::config::{DEFAULT_TAIL_POLL_INTERVAL, DEFAULT_TAIL_ROTATE_WAIT};

/// A tail source (inside [`Source::Tail`](crate::Source::Tail)): the pattern, and the
/// positions the journal commits.
#[derive(Debug)]
pub struct TailSource {
    pattern: String,
    positions: Arc<Positions>,
    /// What the journal's last checkpoint saved.
    saved: Vec<FileEntry>,
    poll_interval: Duration,
    rotate_wait: Duration,
}

impl TailSource {
    /// A tail of the files `pattern` (a path or a glob pattern) names, now or later. An
    /// invalid glob pattern is an error naming it; a pattern that matches nothing yet is not.
    pub fn new(pattern: &str) -> Result<TailSource> {
        let bad = |why: String| Error::Source {
            source_name: pattern.to_string(),
            why,
        };
        if pattern.trim().is_empty() {
            return Err(bad("the tail pattern is empty".into()));
        }
        glob::Pattern::new(pattern).map_err(|e| bad(format!("not a glob pattern: {e}")))?;
        if Path::new(pattern).is_dir() {
            return Err(bad(
                "is a directory: tail its files with a pattern (`DIR/*.log`)".into(),
            ));
        }
        Ok(TailSource {
            pattern: pattern.to_string(),
            positions: Arc::default(),
            saved: Vec::new(),
            poll_interval: DEFAULT_TAIL_POLL_INTERVAL,
            rotate_wait: DEFAULT_TAIL_ROTATE_WAIT,
        })
    }

    /// The pattern.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Takes the intervals of `cfg`, and, with a journal, resumes from the positions its last
    /// checkpoint saved and has every later checkpoint save them.
    pub(crate) fn prepare(
        &mut self,
        cfg: &crate::Config,
        journal: Option<&mut crate::journal::Journal>,
    ) -> Result<()> {
        self.poll_interval = cfg.tail_poll_interval;
        self.rotate_wait = cfg.tail_rotate_wait;
        let Some(j) = journal else {
            tracing::warn!(
                pattern = %self.pattern,
                "tail without writer.journal: positions are not saved, and a restart reads \
                 the files again from their first byte"
            );
            return Ok(());
        };
        if let Some(text) = j.position() {
            self.saved = position::load(text).map_err(|why| Error::Source {
                source_name: self.pattern.clone(),
                why,
            })?;
        }
        self.positions.track();
        j.track_position(Arc::clone(&self.positions) as Arc<_>);
        Ok(())
    }
}

/// The directory to watch for `pattern`: the part before its first wildcard, up to a `/`.
fn base_dir(pattern: &str) -> PathBuf {
    let fixed = match pattern.find(['*', '?', '[']) {
        Some(i) => &pattern[..i],
        None => pattern,
    };
    match fixed.rfind('/') {
        Some(0) => PathBuf::from("/"),
        Some(i) => PathBuf::from(&fixed[..i]),
        None => PathBuf::from("."),
    }
}

/// A file's identity: device and inode.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// One file followed.
struct Followed {
    slot: u64,
    file: File,
    dev: u64,
    ino: u64,
    name: String,
    /// The next byte to read.
    offset: u64,
    /// Bytes read after the last complete line (a partial line), from `line_start`.
    partial: Vec<u8>,
    line_start: u64,
    /// The first byte no work item accounts for yet (before `line_start` after a dead-lettered
    /// long line: the next chunk's range covers it).
    unaccounted: u64,
    /// Skipping the rest of a line too long to keep.
    oversized: bool,
    /// Committed ranges past `offset` (a resumed file): their lines are not shipped again.
    skip: Vec<(u64, u64)>,
    /// Since when the file is out of the pattern (renamed away or deleted), if it is.
    gone_since: Option<Instant>,
    /// When it last grew.
    grew_at: Instant,
}

struct Tail<'a> {
    source: TailSource,
    cfg: &'a FetchConfig,
    /// The batch being filled, the ledger, the channels.
    out: Batcher,
    files: Vec<Followed>,
    /// Files that could not be opened, reported once each.
    refused: HashSet<PathBuf>,
    watch: watch::Watch,
    last_scan: Option<Instant>,
    /// Whether the last scan matched nothing (logged once until it matches).
    said_empty: bool,
}

/// Follows the files of `source` until `stop` is set, then drains (see the module
/// documentation).
pub fn run(
    source: TailSource,
    cfg: &FetchConfig,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    let mut t = Tail {
        source,
        cfg,
        out: Batcher::new(chans, cfg),
        files: Vec::new(),
        refused: HashSet::new(),
        watch: watch::Watch::new(true),
        last_scan: None,
        said_empty: false,
    };
    t.out.set_state(ThreadState::Working);
    t.resume();
    // When the stop was first seen: the drain reads what the files hold then, but a writer
    // that never pauses must not keep the run from ending, so it gets fetch.shutdown_timeout.
    let mut stopped_at: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && stopped_at.is_none() {
            stopped_at = Some(Instant::now());
        }
        let due = t
            .last_scan
            .is_none_or(|at| at.elapsed() >= t.source.poll_interval);
        if due || stopping {
            t.scan();
        }
        let read = t.read_all()?;
        let out_of_time = stopped_at.is_some_and(|at| at.elapsed() >= cfg.shutdown_timeout);
        if stopping && (!read || out_of_time) {
            if read {
                tracing::warn!(
                    timeout = ?cfg.shutdown_timeout,
                    "stopped while the files still grew: the lines not read by \
                     fetch.shutdown_timeout are left for the next run"
                );
            }
            break;
        }
        if read {
            t.out.ship_if_full()?;
            continue;
        }
        t.let_go();
        t.out.ship()?;
        t.out.publish();
        t.out.set_state(ThreadState::WaitingInput);
        let live = t.watch.is_live();
        t.watch.wait(t.source.poll_interval, &stop);
        t.out.set_state(ThreadState::Working);
        if live {
            // A change woke us (or the interval passed): look at the pattern again.
            t.last_scan = None;
        }
    }
    for f in &t.files {
        if !f.partial.is_empty() {
            tracing::info!(
                file = %f.name,
                bytes = f.partial.len(),
                at = f.line_start,
                "stopped with a partial last line, not written: the next run reads it once \
                 its newline is there"
            );
        }
    }
    t.out.ship()?;
    t.out.chans.registry.cycles.fetch_add(1, Ordering::Relaxed);
    t.out.publish();
    Ok(t.out.report)
}

impl Tail<'_> {
    /// Follows the files the journal saved positions for: where the pattern matches them,
    /// under their saved name, or beside it under another (rotated while pinflow was down).
    /// A file not found is forgotten.
    fn resume(&mut self) {
        let saved = std::mem::take(&mut self.source.saved);
        // An open entry wins over a closed one of the same inode (a truncation's old content).
        let open: HashSet<(u64, u64)> = saved
            .iter()
            .filter(|e| !e.closed)
            .map(|e| (e.dev, e.ino))
            .collect();
        for entry in saved {
            if entry.closed && open.contains(&(entry.dev, entry.ino)) {
                continue;
            }
            match find(&entry) {
                Some((path, file, meta)) => {
                    let name = path.display().to_string();
                    self.follow(file, &meta, name, Some(entry));
                }
                None => tracing::info!(
                    file = %entry.name,
                    "a file the journal has a position for is gone: its position is forgotten"
                ),
            }
        }
    }

    /// Looks at the pattern's matches: follows new files, notices the ones that left it.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let base = base_dir(&self.source.pattern);
        self.watch.add(&base);
        let matches: Vec<PathBuf> = match glob::glob(&self.source.pattern) {
            Ok(paths) => paths
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        let empty = matches.is_empty() && self.files.is_empty();
        if empty && !self.said_empty {
            tracing::info!(pattern = %self.source.pattern, "no file matches the tail pattern yet: waiting for one");
        }
        self.said_empty = empty;
        let mut seen = HashSet::new();
        for path in matches {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = identity(&meta);
            seen.insert(id);
            let name = path.display().to_string();
            if let Some(f) = self.files.iter_mut().find(|f| (f.dev, f.ino) == id) {
                if f.gone_since.take().is_some() || f.name != name {
                    f.name.clone_from(&name);
                    self.source.positions.rename(f.slot, &name);
                }
                continue;
            }
            match File::open(&path) {
                Ok(file) => {
                    self.refused.remove(&path);
                    let meta = file.metadata().unwrap_or(meta);
                    tracing::info!(file = %name, "following a new file");
                    self.follow(file, &meta, name, None);
                }
                Err(e) => {
                    if self.refused.insert(path.clone()) {
                        tracing::warn!(file = %name, error = %e, "cannot open a file the tail pattern matches; trying again at each look");
                        self.out
                            .fail(&name, "open", format!("{name}: cannot open: {e}"));
                    }
                }
            }
        }
        let tail = &self.out.chans.registry.tail;
        for f in &mut self.files {
            if seen.contains(&(f.dev, f.ino)) || f.gone_since.is_some() {
                continue;
            }
            f.gone_since = Some(Instant::now());
            let removed = f.file.metadata().is_ok_and(|m| m.nlink() == 0);
            if !removed {
                tail.rotations.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(
                file = %f.name,
                how = if removed { "deleted" } else { "renamed away (rotated)" },
                "a followed file left the pattern: it is read to its end, then let go of"
            );
        }
    }

    /// Starts following `file`, from its saved position if it has one.
    fn follow(
        &mut self,
        file: File,
        meta: &std::fs::Metadata,
        name: String,
        saved: Option<FileEntry>,
    ) {
        let (dev, ino) = identity(meta);
        let mut entry = saved.unwrap_or_else(|| FileEntry::new(dev, ino, name.clone()));
        let mut at = entry.resume_at();
        if meta.len() < at {
            // Truncated while pinflow was down: what is there now is new.
            tracing::warn!(file = %name, size = meta.len(), saved = at, "the file is shorter than the position saved for it (truncated): reading it from its first byte");
            self.out
                .chans
                .registry
                .tail
                .truncations
                .fetch_add(1, Ordering::Relaxed);
            entry = FileEntry::new(dev, ino, name.clone());
            at = 0;
        }
        entry.name.clone_from(&name);
        entry.closed = false;
        let skip: Vec<(u64, u64)> = entry.done.iter().copied().filter(|r| r.1 > at).collect();
        let in_pattern = glob::Pattern::new(&self.source.pattern)
            .is_ok_and(|p| p.matches_path(Path::new(&name)));
        let slot = self.source.positions.add_file(entry);
        self.files.push(Followed {
            slot,
            file,
            dev,
            ino,
            name,
            offset: at,
            partial: Vec::new(),
            line_start: at,
            unaccounted: at,
            oversized: false,
            skip,
            gone_since: (!in_pattern).then(Instant::now),
            grew_at: Instant::now(),
        });
        self.publish_files();
    }

    /// Reads what every followed file has gained; whether anything was read.
    fn read_all(&mut self) -> Result<bool> {
        let mut any = false;
        // Out of `self` while read, so that reading one can ship batches.
        let mut files = std::mem::take(&mut self.files);
        let mut result = Ok(());
        for f in &mut files {
            match self.read_file(f) {
                Ok(read) => any |= read,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.files = files;
        result.map(|()| any)
    }

    /// Reads up to a few chunks of `f`; whether anything was read.
    fn read_file(&mut self, f: &mut Followed) -> Result<bool> {
        let size = match f.file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return Ok(false),
        };
        if size < f.offset {
            self.truncated(f, size);
        }
        let chunk = self.cfg.batch_max_bytes.max(4096);
        let limit = self.cfg.max_body_bytes;
        let mut any = false;
        // A few chunks at a time, so that one busy file does not keep the others waiting.
        for _ in 0..16 {
            if f.offset >= size {
                break;
            }
            let mut buf = std::mem::take(&mut f.partial);
            let old = buf.len();
            let want = chunk.min((size - f.offset) as usize).max(1);
            buf.resize(old + want, 0);
            let n = match f.file.read_at(&mut buf[old..], f.offset) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    buf.truncate(old);
                    f.partial = buf;
                    tracing::warn!(file = %f.name, at = f.offset, error = %e, "read error; trying again at the next look");
                    return Ok(any);
                }
            };
            buf.truncate(old + n);
            if n == 0 {
                f.partial = buf;
                break;
            }
            any = true;
            f.offset += n as u64;
            f.grew_at = Instant::now();
            self.out
                .chans
                .registry
                .tail
                .bytes_read
                .fetch_add(n as u64, Ordering::Relaxed);
            if f.oversized {
                match memchr::memchr(b'\n', &buf) {
                    None => {
                        f.line_start = f.offset;
                        buf.clear();
                        f.partial = buf;
                        continue;
                    }
                    Some(nl) => {
                        buf.drain(..=nl);
                        f.line_start += nl as u64 + 1;
                        f.oversized = false;
                    }
                }
            }
            if let Some(nl) = memchr::memrchr(b'\n', &buf) {
                let cut = nl + 1;
                self.deliver(f, &buf[..cut]);
                buf.drain(..cut);
                f.line_start += cut as u64;
            }
            // What is left is a partial line: it waits for its newline, up to the bound.
            if buf.len() > limit {
                let (name, at) = (&f.name, f.line_start);
                let why = format!(
                    "{name}: the line at byte {at} is longer than fetch.max_body_bytes \
                     ({limit} bytes)"
                );
                self.out.fail(&format!("{name}@{at}"), "too large", why);
                f.line_start = f.offset;
                buf.clear();
                f.oversized = true;
            }
            f.partial = buf;
            self.out.ship_if_full()?;
        }
        Ok(any)
    }

    /// The file shrank below what was read: reads it again from byte 0, as a new slot.
    fn truncated(&mut self, f: &mut Followed, size: u64) {
        tracing::warn!(file = %f.name, size, read = f.offset, "the file was truncated: reading it again from its first byte");
        self.out
            .chans
            .registry
            .tail
            .truncations
            .fetch_add(1, Ordering::Relaxed);
        if !f.partial.is_empty() {
            let (name, at, n) = (&f.name, f.line_start, f.partial.len());
            let why = format!(
                "{name}: truncated before the line at byte {at} ended ({n} bytes without a \
                 newline)"
            );
            self.out.fail(&format!("{name}@{at}"), "truncated", why);
        }
        self.source.positions.close(f.slot);
        f.slot = self
            .source
            .positions
            .add_file(FileEntry::new(f.dev, f.ino, f.name.clone()));
        f.offset = 0;
        f.line_start = 0;
        f.unaccounted = 0;
        f.partial.clear();
        f.skip.clear();
        f.oversized = false;
    }

    /// Hands over the whole lines `bytes` of `f` (from `f.line_start`), less the bytes an
    /// earlier run committed.
    fn deliver(&mut self, f: &mut Followed, bytes: &[u8]) {
        let start = f.line_start;
        let end = start + bytes.len() as u64;
        for (a, b, ship) in split_committed(start, end, &mut f.skip) {
            let piece = &bytes[(a - start) as usize..(b - start) as usize];
            if ship {
                self.deliver_piece(f, a, piece);
            } else {
                // Committed by an earlier run: accounted for already.
                self.out.report.stats.skipped += 1;
                f.unaccounted = b;
            }
        }
    }

    fn deliver_piece(&mut self, f: &mut Followed, at: u64, body: &[u8]) {
        let end = at + body.len() as u64;
        let item = self
            .source
            .positions
            .chunk(f.slot, f.unaccounted.min(at), end);
        f.unaccounted = end;
        let url = format!("{}@{at}-{end}", f.name);
        self.out.body(&url, body, item);
    }

    /// Lets go of the files out of the pattern that were read to their end and have not
    /// grown for `tail_rotate_wait`.
    fn let_go(&mut self) {
        let wait = self.source.rotate_wait;
        let mut i = 0;
        while i < self.files.len() {
            let f = &self.files[i];
            let idle = f.grew_at.elapsed() >= wait;
            let done = f.gone_since.is_some_and(|at| at.elapsed() >= wait) && idle;
            if !done {
                i += 1;
                continue;
            }
            let f = self.files.remove(i);
            if !f.partial.is_empty() && !f.oversized {
                let (name, at, n) = (&f.name, f.line_start, f.partial.len());
                let why = format!(
                    "{name}: ends without a newline after byte {at} ({n} bytes), and was \
                     let go of (rotated away or deleted)"
                );
                self.out.fail(&format!("{name}@{at}"), "partial line", why);
            }
            tracing::info!(file = %f.name, read = f.offset, "let go of a file read to its end");
            self.source.positions.close(f.slot);
            self.publish_files();
        }
    }

    fn publish_files(&self) {
        let n = self.files.len() as u64;
        self.out
            .chans
            .registry
            .tail
            .files
            .store(n, Ordering::Relaxed);
    }
}

/// Splits the bytes `[start, end)` into pieces `(from, to, ship)`: those to ship, and those an
/// earlier run committed (`skip`, sorted; the ranges passed are removed from it). Both are
/// whole lines, since every committed range is.
fn split_committed(start: u64, end: u64, skip: &mut Vec<(u64, u64)>) -> Vec<(u64, u64, bool)> {
    let mut out = Vec::new();
    let mut at = start;
    while let Some(&(a, b)) = skip.first() {
        if b <= at {
            skip.remove(0);
            continue;
        }
        if a >= end {
            break;
        }
        if a > at {
            out.push((at, a, true));
        }
        let to = b.min(end);
        out.push((at.max(a), to, false));
        at = to;
        if b > end {
            break;
        }
        skip.remove(0);
    }
    if at < end {
        out.push((at, end, true));
    }
    out
}

/// Finds the file of a saved `entry`: under its saved name, or another name in the same
/// directory (renamed while pinflow was down), by device and inode.
fn find(entry: &FileEntry) -> Option<(PathBuf, File, std::fs::Metadata)> {
    let same = |p: &Path| -> Option<(File, std::fs::Metadata)> {
        let file = File::open(p).ok()?;
        let meta = file.metadata().ok()?;
        (identity(&meta) == (entry.dev, entry.ino)).then_some((file, meta))
    };
    let named = PathBuf::from(&entry.name);
    if let Some((file, meta)) = same(&named) {
        return Some((named, file, meta));
    }
    let dir = crate::fsutil::parent_dir(&named);
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let hit = e
            .metadata()
            .is_ok_and(|m| m.is_file() && identity(&m) == (entry.dev, entry.ino));
        if hit {
            let path = e.path();
            if let Some((file, meta)) = same(&path) {
                return Some((path, file, meta));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_ranges_are_cut_out_of_what_is_read_again() {
        // A restart read from 100; 150-200 and 300-400 were committed by the killed run.
        let mut skip = vec![(150, 200), (300, 400)];
        assert_eq!(
            split_committed(100, 350, &mut skip),
            [
                (100, 150, true),
                (150, 200, false),
                (200, 300, true),
                (300, 350, false)
            ]
        );
        // The rest of the second range comes with the next read.
        assert_eq!(skip, [(300, 400)]);
        assert_eq!(
            split_committed(350, 500, &mut skip),
            [(350, 400, false), (400, 500, true)]
        );
        assert!(skip.is_empty());
        assert_eq!(split_committed(500, 600, &mut skip), [(500, 600, true)]);
    }

    #[test]
    fn the_directory_watched_is_the_pattern_part_before_its_first_wildcard() {
        assert_eq!(base_dir("/var/log/app/*.log"), Path::new("/var/log/app"));
        assert_eq!(base_dir("/var/log/app.log"), Path::new("/var/log"));
        assert_eq!(base_dir("/var/log/*/x.log"), Path::new("/var/log"));
        assert_eq!(base_dir("app.log*"), Path::new("."));
        assert_eq!(base_dir("/app.log"), Path::new("/"));
    }

    #[test]
    fn a_pattern_is_checked_when_the_source_is_made() {
        let e = TailSource::new("logs/[.log").unwrap_err().to_string();
        assert!(e.contains("not a glob pattern"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = TailSource::new(&dir.path().display().to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert!(TailSource::new(" ").is_err());
        // Nothing matches yet: a tail waits for it.
        assert!(TailSource::new(&format!("{}/*.log", dir.path().display())).is_ok());
    }
}

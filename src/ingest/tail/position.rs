//! The tail's positions: which bytes of which files are in committed files, and what a
//! checkpoint saves of it.
//!
//! # Work items and byte ranges
//!
//! A tail's chunks are not the same from one run to the next (what one read returns depends
//! on when it ran), so its work items are not positions: each chunk shipped is given the next
//! number of this run (from 0), and [`Positions`] remembers which file (a *slot*: one device
//! and inode, from its first byte or from a truncation on) and which byte range
//! `[start, end)` that number stands for. When a checkpoint commits a set of work items (the
//! writer's, once their rows are in finalized files), [`Positions::commit`] moves each one's
//! range into its file's `done` ranges, and the checkpoint line saves, for every file, its
//! device, inode, name and `done` ranges:
//!
//! ```text
//! "position":{"tail":[{"dev":2049,"ino":131,"name":"/var/log/app.log","closed":false,"done":[[0,81920]]}]}
//! ```
//!
//! The ranges are whole lines (chunks are cut after a newline). Chunks are written in any
//! order, so `done` may have a gap (a chunk still in a parse thread when the checkpoint came);
//! a restarted run reads each file from the end of its first range and skips the bytes of
//! the later ones, so every line is written exactly once. A range may start before its
//! chunk's first line: the bytes of a line too long to keep (dead-lettered) belong to the
//! chunk after it.
//!
//! A file the tail let go of (rotated away and drained, or deleted) is `closed`; once none of
//! its chunks is waiting for a checkpoint, it is left out of the next one: its position is
//! forgotten.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::journal::{RangeSet, SourcePosition};

/// One file's saved position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file system's device number.
    pub dev: u64,
    /// The inode: with `dev`, what the file is (a rotation renames it, a new file has another).
    pub ino: u64,
    /// The path it was last seen under (for messages, and to look for it after a restart).
    pub name: String,
    /// Let go of: rotated away and drained, deleted, or truncated (then a new entry follows
    /// the same inode from byte 0).
    #[serde(default)]
    pub closed: bool,
    /// Byte ranges `[start, end)` whose lines are in committed files: sorted, disjoint and
    /// not adjacent.
    pub done: Vec<(u64, u64)>,
}

impl FileEntry {
    /// An entry for a file read from its first byte.
    pub fn new(dev: u64, ino: u64, name: String) -> FileEntry {
        FileEntry {
            dev,
            ino,
            name,
            closed: false,
            done: Vec::new(),
        }
    }

    /// Where reading resumes: the end of the committed range at byte 0 (0 without one).
    pub fn resume_at(&self) -> u64 {
        match self.done.first() {
            Some(&(0, end)) => end,
            _ => 0,
        }
    }
}

/// Adds `[start, end)` to `ranges` (sorted, disjoint, not adjacent), merging.
pub fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    let (mut lo, mut hi) = (start, end);
    // The ranges that touch or overlap [lo, hi) are merged into it.
    let first = ranges.partition_point(|&(_, e)| e < lo);
    let mut last = first;
    while last < ranges.len() && ranges[last].0 <= hi {
        lo = lo.min(ranges[last].0);
        hi = hi.max(ranges[last].1);
        last += 1;
    }
    ranges.splice(first..last, [(lo, hi)]);
}

/// What the saved position of a checkpoint holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    tail: Vec<FileEntry>,
}

/// Reads a saved position (the journal's `"position"`); a position of another source, or
/// none, is an error naming what it holds.
pub fn load(json: &str) -> Result<Vec<FileEntry>, String> {
    serde_json::from_str::<Saved>(json)
        .map(|s| s.tail)
        .map_err(|e| format!("the saved position is not a tail's ({e}): {json:.200}"))
}

#[derive(Debug, Default)]
struct Inner {
    /// Whether a journal commits the positions ([`Positions::track`]); without one nothing
    /// is kept past its use, so that a long run holds no record of every chunk it shipped.
    tracked: bool,
    next_item: u64,
    next_slot: u64,
    /// Work items shipped and not yet committed: slot and byte range.
    pending: BTreeMap<u64, (u64, u64, u64)>,
    /// Every file followed or remembered, by slot.
    files: BTreeMap<u64, FileEntry>,
}

/// The positions of one tail, shared by its ingest thread (which adds files and chunks) and
/// the journal (which commits them, see the module documentation).
#[derive(Debug, Default)]
pub struct Positions {
    inner: parking_lot::Mutex<Inner>,
}

impl Positions {
    /// Keeps the chunks and files for a journal's checkpoints to commit.
    pub fn track(&self) {
        self.inner.lock().tracked = true;
    }

    /// Starts following a file from `entry` (its `done` ranges as saved); returns its slot.
    pub fn add_file(&self, entry: FileEntry) -> u64 {
        let mut i = self.inner.lock();
        let slot = i.next_slot;
        i.next_slot += 1;
        i.files.insert(slot, entry);
        slot
    }

    /// The work item number of a chunk of `slot` that accounts for bytes `[start, end)`.
    pub fn chunk(&self, slot: u64, start: u64, end: u64) -> u64 {
        let mut i = self.inner.lock();
        let item = i.next_item;
        i.next_item += 1;
        if i.tracked {
            i.pending.insert(item, (slot, start, end));
        }
        item
    }

    /// Lets go of `slot`: forgotten once its chunks are committed.
    pub fn close(&self, slot: u64) {
        let mut i = self.inner.lock();
        if !i.tracked {
            i.files.remove(&slot);
        } else if let Some(f) = i.files.get_mut(&slot) {
            f.closed = true;
        }
    }

    /// Renames `slot` (seen under another path).
    pub fn rename(&self, slot: u64, name: &str) {
        if let Some(f) = self.inner.lock().files.get_mut(&slot) {
            name.clone_into(&mut f.name);
        }
    }

    /// The entries a checkpoint would save now, in slot order.
    pub fn entries(&self) -> Vec<FileEntry> {
        self.inner.lock().files.values().cloned().collect()
    }
}

impl SourcePosition for Positions {
    fn commit(&self, items: &RangeSet) -> String {
        let mut i = self.inner.lock();
        let committed: Vec<u64> = i
            .pending
            .keys()
            .copied()
            .filter(|&k| items.contains(k))
            .collect();
        for k in committed {
            if let Some((slot, start, end)) = i.pending.remove(&k) {
                if let Some(f) = i.files.get_mut(&slot) {
                    add_range(&mut f.done, start, end);
                }
            }
        }
        // Closed files whose every chunk is committed are forgotten.
        let waiting: std::collections::HashSet<u64> = i.pending.values().map(|p| p.0).collect();
        i.files
            .retain(|slot, f| !f.closed || waiting.contains(slot));
        let saved = Saved {
            tail: i.files.values().cloned().collect(),
        };
        serde_json::to_string(&saved).unwrap_or_else(|_| "{\"tail\":[]}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_when_they_touch_and_stay_apart_otherwise() {
        let mut r = Vec::new();
        add_range(&mut r, 10, 20);
        add_range(&mut r, 30, 40);
        add_range(&mut r, 0, 5);
        assert_eq!(r, [(0, 5), (10, 20), (30, 40)]);
        add_range(&mut r, 20, 30);
        assert_eq!(r, [(0, 5), (10, 40)]);
        add_range(&mut r, 5, 10);
        assert_eq!(r, [(0, 40)]);
        add_range(&mut r, 7, 7);
        assert_eq!(r, [(0, 40)]);
    }

    #[test]
    fn only_committed_chunks_advance_a_file_and_a_gap_is_kept() {
        let p = Positions::default();
        p.track();
        let a = p.add_file(FileEntry::new(1, 2, "a.log".into()));
        let c0 = p.chunk(a, 0, 100);
        let c1 = p.chunk(a, 100, 250);
        let c2 = p.chunk(a, 250, 300);
        // Chunks 0 and 2 written, 1 still in a parse thread.
        let mut items = RangeSet::default();
        items.insert(c0);
        items.insert(c2);
        let saved = load(&p.commit(&items)).unwrap();
        assert_eq!(saved[0].done, [(0, 100), (250, 300)]);
        assert_eq!(saved[0].resume_at(), 100);
        let mut items = RangeSet::default();
        items.insert(c1);
        let saved = load(&p.commit(&items)).unwrap();
        assert_eq!(saved[0].done, [(0, 300)]);
        assert_eq!(saved[0].resume_at(), 300);
    }

    #[test]
    fn a_closed_file_is_forgotten_once_its_chunks_are_committed() {
        let p = Positions::default();
        p.track();
        let old = p.add_file(FileEntry::new(1, 2, "app.log".into()));
        let new = p.add_file(FileEntry::new(1, 3, "app.log".into()));
        let c = p.chunk(old, 0, 10);
        p.rename(old, "app.log.1");
        p.close(old);
        // Its chunk is not committed yet: it stays, under its new name.
        let saved = load(&p.commit(&RangeSet::default())).unwrap();
        assert_eq!(saved.len(), 2);
        assert_eq!(
            (saved[0].name.as_str(), saved[0].closed),
            ("app.log.1", true)
        );
        let mut items = RangeSet::default();
        items.insert(c);
        let saved = load(&p.commit(&items)).unwrap();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].ino, 3);
        let _ = new;
    }

    #[test]
    fn without_a_journal_nothing_is_kept_past_its_use() {
        let p = Positions::default();
        let a = p.add_file(FileEntry::new(1, 2, "a.log".into()));
        for k in 0..1000 {
            p.chunk(a, k * 10, k * 10 + 10);
        }
        assert!(p.inner.lock().pending.is_empty());
        p.close(a);
        assert!(p.entries().is_empty());
    }

    #[test]
    fn another_sources_position_is_refused_with_what_it_holds() {
        let e = load("{\"cursor\":\"x\"}").unwrap_err();
        assert!(e.contains("not a tail's") && e.contains("cursor"), "{e}");
    }
}

//! The Kafka source's position in the journal: which offsets of which partitions are in
//! committed files.
//!
//! Each message shipped is one work item, numbered past every item the journal holds, and
//! [`Positions`] remembers which partition and which offsets `[start, end)` it accounts for
//! (`start` is the end of the message shipped before it in the partition, so that a gap in
//! the offsets, compaction's or a transaction marker's, belongs to the message after it).
//! When a checkpoint commits a set of items, [`Positions::commit`] moves their ranges into
//! their partition's `done` ranges, and the checkpoint line saves them:
//!
//! ```text
//! "position":{"kafka":[{"topic":"logs","partition":0,"from":0,"done":[[0,5000]]}]}
//! ```
//!
//! Messages are written in any order (parse threads run side by side), so `done` may have a
//! gap: a restarted run reads a partition from the end of the range that holds `from` (where
//! this output began to read it) and skips the messages of the later ranges, so every
//! message is written once. The position wins over the group's committed offset unless that
//! one is further (another member of the group wrote what lies between).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ingest::tail::position::add_range;
use crate::journal::{RangeSet, SourcePosition};

/// One partition's saved position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEntry {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Where this output began to read the partition (or, after the group's committed offset
    /// moved past its position, where it began again).
    pub from: u64,
    /// Offset ranges `[start, end)` whose messages are in committed files: sorted, disjoint
    /// and not adjacent.
    pub done: Vec<(u64, u64)>,
}

impl PartitionEntry {
    /// Where reading resumes: the end of the committed range that holds `from`, or `from`.
    pub fn resume_at(&self) -> u64 {
        self.done
            .iter()
            .find(|&&(a, b)| a <= self.from && self.from <= b)
            .map_or(self.from, |&(_, b)| b)
    }

    /// Whether the message at `offset` is in a committed file already.
    pub fn is_done(&self, offset: u64) -> bool {
        self.done.iter().any(|&(a, b)| a <= offset && offset < b)
    }
}

/// What the saved position of a checkpoint holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    kafka: Vec<PartitionEntry>,
}

/// Reads a saved position (the journal's `"position"`); a position of another source is an
/// error naming what it holds.
pub fn load(json: &str) -> Result<Vec<PartitionEntry>, String> {
    serde_json::from_str::<Saved>(json)
        .map(|s| s.kafka)
        .map_err(|e| format!("the saved position is not a Kafka source's ({e}): {json:.200}"))
}

/// A partition: topic and number.
pub type PartitionKey = (String, i32);

#[derive(Debug, Default)]
struct Tracked {
    /// Its number in [`Inner::keys`], once a message of it was shipped.
    index: Option<u32>,
    entry: Option<PartitionEntry>,
    /// The first offset no work item accounts for yet (`None`: not known before the first
    /// message, when librdkafka picks the start).
    unaccounted: Option<u64>,
}

/// Work items `first..=last`, messages of one partition (its number in [`Inner::keys`]) at
/// consecutive offsets: item `first` accounts for offsets `[start, first_end)` (a gap before
/// it included), each later one for the next offset. A run is one entry where an entry an
/// item made the map's insert and remove a fifth of the ingest thread's time.
#[derive(Debug, Clone, Copy)]
struct Run {
    first: u64,
    last: u64,
    index: u32,
    start: u64,
    first_end: u64,
}

impl Run {
    /// The offsets `[start, end)` item `k` of the run accounts for.
    fn offsets(&self, k: u64) -> (u64, u64) {
        match k == self.first {
            true => (self.start, self.first_end),
            false => {
                let end = self.first_end + (k - self.first);
                (end - 1, end)
            }
        }
    }

    /// The end of the run's offsets: the next offset of its partition.
    fn end(&self) -> u64 {
        self.first_end + (self.last - self.first)
    }

    /// Items `from..=to` of the run, as a run of their own.
    fn part(&self, from: u64, to: u64) -> Run {
        let (start, first_end) = self.offsets(from);
        Run {
            first: from,
            last: to,
            index: self.index,
            start,
            first_end,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Whether a journal commits the positions ([`Positions::track`]).
    tracked: bool,
    /// Work items shipped and not yet committed, in item order (but [`Inner::open`]).
    pending: Vec<Run>,
    /// The run the next message may extend. Its partition's `unaccounted` is brought up to
    /// its end when it closes ([`Inner::close_run`]), which whatever else reads or moves
    /// that does first.
    open: Option<Run>,
    partitions: BTreeMap<PartitionKey, Tracked>,
    /// The partitions of `pending`, numbered in the order first shipped (so that an item
    /// costs no copy of its topic's name).
    keys: Vec<PartitionKey>,
    /// The partitions whose ranges the last [`SourcePosition::commit`] moved.
    last_moved: Vec<PartitionKey>,
    /// The number of [`SourcePosition::commit`] calls (checkpoints) so far.
    commits: u64,
}

impl Inner {
    /// Moves the open run to `pending`, and its partition's first unaccounted offset to the
    /// run's end.
    fn close_run(&mut self) {
        let Some(r) = self.open.take() else { return };
        if let Some(t) = self.partitions.get_mut(&self.keys[r.index as usize]) {
            t.unaccounted = Some(r.end());
        }
        self.pending.push(r);
    }
}

/// The positions of one Kafka source, shared by its ingest thread (which ships messages)
/// and the journal (which commits them; see the module documentation).
#[derive(Debug, Default)]
pub struct Positions {
    inner: parking_lot::Mutex<Inner>,
}

impl Positions {
    /// Keeps the items and partitions for a journal's checkpoints to commit, starting from
    /// what the last checkpoint saved.
    pub fn track(&self, saved: Vec<PartitionEntry>) {
        let mut i = self.inner.lock();
        i.close_run();
        i.tracked = true;
        for e in saved {
            let key = (e.topic.clone(), e.partition);
            i.partitions.insert(
                key,
                Tracked {
                    index: None,
                    entry: Some(e),
                    unaccounted: None,
                },
            );
        }
    }

    /// Where the journal says `key` resumes, if it has a position for it.
    pub fn resume_at(&self, key: &PartitionKey) -> Option<u64> {
        let i = self.inner.lock();
        i.partitions.get(key)?.entry.as_ref().map(|e| e.resume_at())
    }

    /// The offset after the last message of `key` this run shipped, whether or not a
    /// checkpoint holds it yet (`None`: none shipped since the partition was last assigned
    /// without a start). A partition given back to this member starts there: what was
    /// shipped before it was taken away is still on its way to a checkpoint.
    pub fn shipped_end(&self, key: &PartitionKey) -> Option<u64> {
        let mut i = self.inner.lock();
        i.close_run();
        i.partitions.get(key)?.unaccounted
    }

    /// `key` is assigned, read from `start` (`None`: librdkafka picks it). A start past the
    /// journal's position (the group's committed offset, moved on by another member) becomes
    /// the partition's `from`. Returns the offset below which a message read may be one the
    /// journal holds already ([`skip`](Positions::skip) needs asking only below it; `None`:
    /// none can be).
    pub fn assign(&self, key: &PartitionKey, start: Option<u64>) -> Option<u64> {
        let mut i = self.inner.lock();
        i.close_run();
        let tracked = i.tracked;
        let t = i.partitions.entry(key.clone()).or_default();
        t.unaccounted = start;
        if let (Some(start), Some(e)) = (start, t.entry.as_mut()) {
            if start > e.resume_at() {
                e.from = start;
                e.done.retain(|&(_, b)| b > start);
            }
        }
        if !tracked {
            t.entry = None;
        }
        let done_end = t.entry.as_ref()?.done.last().map(|&(_, b)| b)?;
        (start.is_none_or(|s| s < done_end)).then_some(done_end)
    }

    /// Whether the message at `offset` of `key` is in a committed file (an earlier run wrote
    /// it after a gap): then it is accounted for, and not shipped again.
    pub fn skip(&self, key: &PartitionKey, offset: u64) -> bool {
        let mut i = self.inner.lock();
        i.close_run();
        let Some(t) = i.partitions.get_mut(key) else {
            return false;
        };
        let done = t.entry.as_ref().is_some_and(|e| e.is_done(offset));
        if done {
            t.unaccounted = Some(offset + 1);
        }
        done
    }

    /// Work item `item` is the message at `offset` of `key`.
    pub fn message(&self, item: u64, key: &PartitionKey, offset: u64) {
        let mut i = self.inner.lock();
        if !i.tracked {
            return;
        }
        // The next message of the run in hand: nothing else to do.
        let inner = &mut *i;
        if let Some(r) = &mut inner.open {
            if item == r.last + 1 && offset == r.end() {
                let k = &inner.keys[r.index as usize];
                if k.1 == key.1 && k.0 == key.0 {
                    r.last = item;
                    return;
                }
            }
        }
        i.close_run();
        let Inner {
            partitions,
            keys,
            open,
            ..
        } = &mut *i;
        if !partitions.contains_key(key) {
            partitions.insert(key.clone(), Tracked::default());
        }
        let t = partitions.get_mut(key).expect("inserted above");
        let index = *t.index.get_or_insert_with(|| {
            keys.push(key.clone());
            (keys.len() - 1) as u32
        });
        let start = t.unaccounted.map_or(offset, |u| u.min(offset));
        t.unaccounted = Some(offset + 1);
        let e = t.entry.get_or_insert_with(|| PartitionEntry {
            topic: key.0.clone(),
            partition: key.1,
            from: start,
            done: Vec::new(),
        });
        if e.done.is_empty() && e.from > start {
            e.from = start;
        }
        *open = Some(Run {
            first: item,
            last: item,
            index,
            start,
            first_end: offset + 1,
        });
    }

    /// The entries a checkpoint would save now, in partition order.
    pub fn entries(&self) -> Vec<PartitionEntry> {
        let mut i = self.inner.lock();
        i.close_run();
        i.partitions
            .values()
            .filter_map(|t| t.entry.clone())
            .collect()
    }
}

impl Positions {
    /// The partitions whose committed ranges the last checkpoint moved (the last
    /// [`SourcePosition::commit`]).
    pub fn last_moved(&self) -> Vec<PartitionKey> {
        self.inner.lock().last_moved.clone()
    }

    /// How many checkpoints took the positions so far ([`SourcePosition::commit`], called
    /// before each checkpoint's line is written).
    pub fn commits(&self) -> u64 {
        self.inner.lock().commits
    }
}

impl SourcePosition for Positions {
    fn commit(&self, items: &RangeSet) -> String {
        let mut i = self.inner.lock();
        i.close_run();
        let Inner {
            pending,
            partitions,
            keys,
            last_moved,
            commits,
            ..
        } = &mut *i;
        last_moved.clear();
        *commits += 1;
        // Each run splits into its stretches of committed and of uncommitted items: the
        // committed ones' offsets are done, the others stay pending.
        let mut kept = Vec::with_capacity(pending.len());
        for r in pending.drain(..) {
            let mut k = r.first;
            while k <= r.last {
                let committed = items.contains(k);
                let mut to = k;
                while to < r.last && items.contains(to + 1) == committed {
                    to += 1;
                }
                let part = r.part(k, to);
                if !committed {
                    kept.push(part);
                } else if let Some(e) = partitions
                    .get_mut(&keys[r.index as usize])
                    .and_then(|t| t.entry.as_mut())
                {
                    add_range(&mut e.done, part.start, part.end());
                    let key = &keys[r.index as usize];
                    if !last_moved.contains(key) {
                        last_moved.push(key.clone());
                    }
                }
                k = to + 1;
            }
        }
        *pending = kept;
        let saved = Saved {
            kafka: i
                .partitions
                .values()
                .filter_map(|t| t.entry.clone())
                .collect(),
        };
        serde_json::to_string(&saved).unwrap_or_else(|_| "{\"kafka\":[]}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        ("logs".to_string(), p)
    }

    fn items(of: &[u64]) -> RangeSet {
        let mut r = RangeSet::default();
        for &x in of {
            r.insert(x);
        }
        r
    }

    #[test]
    fn a_gap_is_kept_and_the_messages_after_it_are_skipped_on_resume() {
        let p = Positions::default();
        p.track(Vec::new());
        p.assign(&key(0), None);
        // Offsets 10, 11, 13 (12 compacted away): items 100..103.
        p.message(100, &key(0), 10);
        p.message(101, &key(0), 11);
        p.message(102, &key(0), 13);
        // 100 and 102 written, 101 still in a parse thread.
        let saved = load(&p.commit(&items(&[100, 102]))).unwrap();
        assert_eq!(saved[0].from, 10);
        assert_eq!(saved[0].done, [(10, 11), (12, 14)]);
        assert_eq!(saved[0].resume_at(), 11);
        // A restart: reads from 11, writes 11, skips 13.
        let q = Positions::default();
        q.track(saved);
        assert_eq!(q.resume_at(&key(0)), Some(11));
        // Messages below 14 may be written ones: those ask `skip`.
        assert_eq!(q.assign(&key(0), Some(11)), Some(14));
        assert!(!q.skip(&key(0), 11));
        q.message(0, &key(0), 11);
        assert!(q.skip(&key(0), 13));
        let saved = load(&q.commit(&items(&[0]))).unwrap();
        assert_eq!(saved[0].done, [(10, 14)]);
        assert_eq!(saved[0].resume_at(), 14);
    }

    #[test]
    fn a_group_offset_past_the_position_moves_where_the_partition_begins() {
        let p = Positions::default();
        p.track(vec![PartitionEntry {
            topic: "logs".into(),
            partition: 1,
            from: 0,
            done: vec![(0, 50)],
        }]);
        // Another member wrote 50..80 and committed 80: nothing past it was written here.
        assert_eq!(p.assign(&key(1), Some(80)), None);
        p.message(7, &key(1), 80);
        let saved = load(&p.commit(&items(&[7]))).unwrap();
        assert_eq!(saved[0].from, 80);
        assert_eq!(saved[0].done, [(80, 81)]);
        assert_eq!(saved[0].resume_at(), 81);
    }

    /// Runs of items against one entry per item (the way positions were kept before runs):
    /// messages of three partitions interleaved in stretches, with gaps in the offsets, and
    /// checkpoints committing random sets of the items shipped, in any order.
    #[test]
    fn runs_of_items_commit_what_one_entry_per_item_would() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let p = Positions::default();
            p.track(Vec::new());
            // The reference: item -> (partition, start, end), and each partition's next.
            let mut pending: BTreeMap<u64, (i32, u64, u64)> = BTreeMap::new();
            let mut unaccounted: BTreeMap<i32, u64> = BTreeMap::new();
            let mut done: BTreeMap<i32, Vec<(u64, u64)>> = BTreeMap::new();
            let mut next_offset = [0u64; 3];
            let mut shipped = Vec::new();
            let mut item = 0;
            for _ in 0..rng.usize(1..40) {
                let part = rng.i32(0..3);
                for _ in 0..rng.usize(1..20) {
                    // A gap now and then (compaction, a transaction marker).
                    let o = &mut next_offset[part as usize];
                    *o += if rng.u8(..) < 20 { rng.u64(2..5) } else { 1 };
                    let offset = *o - 1;
                    p.message(item, &key(part), offset);
                    let start = unaccounted.get(&part).map_or(offset, |&u| u.min(offset));
                    unaccounted.insert(part, offset + 1);
                    pending.insert(item, (part, start, offset + 1));
                    shipped.push(item);
                    item += 1;
                }
                if rng.bool() {
                    let mut commit = RangeSet::default();
                    for &k in &shipped {
                        if rng.u8(..) < 160 {
                            commit.insert(k);
                        }
                    }
                    shipped.retain(|&k| !commit.contains(k));
                    for k in commit.ranges().flat_map(|(lo, hi)| lo..=hi) {
                        if let Some((part, a, b)) = pending.remove(&k) {
                            add_range(done.entry(part).or_default(), a, b);
                        }
                    }
                    let saved = load(&p.commit(&commit)).unwrap();
                    let got: BTreeMap<i32, Vec<(u64, u64)>> = saved
                        .into_iter()
                        .filter(|e| !e.done.is_empty())
                        .map(|e| (e.partition, e.done))
                        .collect();
                    assert_eq!(got, done);
                }
            }
        }
    }

    #[test]
    fn without_a_journal_nothing_is_kept() {
        let p = Positions::default();
        p.assign(&key(0), Some(0));
        for k in 0..100 {
            p.message(k, &key(0), k);
        }
        assert!(p.inner.lock().pending.is_empty());
        assert!(p.entries().is_empty());
    }

    #[test]
    fn another_sources_position_is_refused_with_what_it_holds() {
        let e = load("{\"tail\":[]}").unwrap_err();
        assert!(
            e.contains("not a Kafka source's") && e.contains("tail"),
            "{e}"
        );
    }
}

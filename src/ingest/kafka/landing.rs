//! Two-phase checkpoints of the Kafka source: how a checkpoint's offsets "land" in the group.
//!
//! With the journal, a checkpoint is written *pending* (its files durable under temporary
//! names), then the source commits the offsets it makes durable to the group, synchronously,
//! and only then is the checkpoint confirmed and its files renamed
//! ([`Journal::set_two_phase`](crate::journal::Journal::set_two_phase)). A member killed in
//! between leaves a pending checkpoint whose offsets the group may or may not hold; the
//! group's offsets alone cannot tell (another member may have moved them on since, from
//! either side of it). So each offset committed carries metadata naming, for each journal that
//! committed the partition, the last of its checkpoints in the offsets it committed:
//!
//! ```text
//! pinflow1:3f2a9c0d11e4b702=17;90ab31c2d4e5f607=4
//! ```
//!
//! A member that takes the partition keeps what it found and puts its own entry first, so a
//! restarted member finds its entry whoever committed last: its pending checkpoint stands if
//! a partition it moved names it (or a later one), and is undone otherwise (its messages are
//! read again, by whoever owns them now). Each partition's metadata keeps the newest
//! [`GroupMeta::ENTRIES`] journals. Where an entry may have been dropped (the list is full;
//! a commit without pinflow's metadata came between, marked `?` once pinflow commits over
//! it; the group could not be read when the partition was assigned; a journal from before
//! journals had a number), the offset decides, erring towards a duplicate rather than a loss
//! ([`landed`]).

use super::position::{load, PartitionKey};

/// What a committed offset's metadata says: (journal, last checkpoint) pairs, newest first;
/// and whether the list is whole (no entry can have been dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    entries: Vec<(u64, u64)>,
    whole: bool,
}

const PREFIX: &str = "pinflow1:";
/// The entry that says the list is not whole.
const NOT_WHOLE: &str = "?";

impl GroupMeta {
    /// Journals kept a partition (past it, the oldest are dropped): 16 entries are at most
    /// 630 bytes, within the broker's `offset.metadata.max.bytes` (4096 by default).
    pub const ENTRIES: usize = 16;

    /// The metadata of a partition that has no committed offset: nothing was dropped.
    pub fn none() -> GroupMeta {
        GroupMeta {
            entries: Vec::new(),
            whole: true,
        }
    }

    /// The metadata of a partition whose committed offset could not be read.
    pub fn unknown() -> GroupMeta {
        GroupMeta {
            entries: Vec::new(),
            whole: false,
        }
    }

    /// Reads the metadata of a committed offset (`has_offset`: there is one). Another
    /// tool's, or none beside an offset, is a list that is not whole.
    pub fn of_offset(text: &str, has_offset: bool) -> GroupMeta {
        let Some(list) = text.strip_prefix(PREFIX) else {
            return match text.is_empty() && !has_offset {
                true => GroupMeta::none(),
                false => GroupMeta::unknown(),
            };
        };
        let mut whole = true;
        let mut entries = Vec::new();
        for e in list.split(';') {
            let parsed = e
                .split_once('=')
                .and_then(|(id, n)| Some((u64::from_str_radix(id, 16).ok()?, n.parse().ok()?)));
            match parsed {
                Some(entry) if entries.len() < Self::ENTRIES => entries.push(entry),
                // (Unreadable, `?`, or past the limit.)
                _ => whole = false,
            }
        }
        GroupMeta { entries, whole }
    }

    /// The metadata with journal `id`'s entry set to `checkpoint`, first.
    pub fn with(&self, id: u64, checkpoint: u64) -> GroupMeta {
        let mut entries = vec![(id, checkpoint)];
        entries.extend(self.entries.iter().filter(|&&(j, _)| j != id));
        let whole = self.whole && entries.len() <= Self::ENTRIES;
        entries.truncate(Self::ENTRIES);
        GroupMeta { entries, whole }
    }

    /// What the metadata says of journal `id`'s checkpoint `checkpoint`: in the offset (the
    /// entry names it or a later one), not in it (an older one, or no entry in a whole
    /// list), or `None`: no entry, and it may have been dropped.
    pub fn holds(&self, id: u64, checkpoint: u64) -> Option<bool> {
        match self.entries.iter().find(|&&(j, _)| j == id) {
            Some(&(_, n)) => Some(n >= checkpoint),
            None if self.whole => Some(false),
            None => None,
        }
    }

    /// The metadata to commit.
    pub fn encode(&self) -> String {
        let mut parts: Vec<String> = self
            .entries
            .iter()
            .map(|(id, n)| format!("{id:016x}={n}"))
            .collect();
        if !self.whole {
            parts.push(NOT_WHOLE.into());
        }
        format!("{PREFIX}{}", parts.join(";"))
    }
}

/// Whether a pending checkpoint of journal `id` numbered `checkpoint`, which moved a
/// partition to `end` (the end of its messages), is in the group's committed offset `offset`
/// with metadata `meta`: as the metadata says, or, where it cannot tell (or `id` is not the
/// journal's own but derived: a journal from before they had one, whose number another
/// member's journal may share), whether the offset reached `end` (then a member that read
/// those messages again may have moved it there: a duplicate, where undoing a checkpoint the
/// group holds would lose them).
pub fn landed(
    meta: &str,
    offset: Option<i64>,
    (id, derived): (u64, bool),
    checkpoint: u64,
    end: u64,
) -> bool {
    let offset = offset.filter(|&o| o >= 0);
    let said = match derived {
        true => None,
        false => GroupMeta::of_offset(meta, offset.is_some()).holds(id, checkpoint),
    };
    said.unwrap_or_else(|| offset.is_some_and(|o| o as u64 >= end))
}

/// The partitions whose messages a pending checkpoint added, with the end of their
/// committed ranges: those whose ranges reach further in the position it saved (`pending`)
/// than in the one before it (`before`). (A partition whose ranges were only cut, its start
/// moved to the group's offset on an assignment, added nothing.)
pub fn moved_partitions(
    before: Option<&str>,
    pending: Option<&str>,
) -> Result<Vec<(PartitionKey, u64)>, String> {
    let before = before.map(load).transpose()?.unwrap_or_default();
    let pending = pending.map(load).transpose()?.unwrap_or_default();
    let end_of = |e: &super::position::PartitionEntry| e.done.iter().map(|&(_, b)| b).max();
    Ok(pending
        .iter()
        .filter_map(|p| {
            let end = end_of(p)?;
            let was = before
                .iter()
                .find(|b| b.topic == p.topic && b.partition == p.partition)
                .and_then(end_of);
            (was.is_none_or(|w| end > w)).then(|| ((p.topic.clone(), p.partition), end))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journals_entry_goes_first_and_others_are_kept_up_to_the_limit() {
        let m = GroupMeta::none().with(0xa, 3);
        assert_eq!(m.encode(), "pinflow1:000000000000000a=3");
        let m = GroupMeta::of_offset(&m.encode(), true)
            .with(0xb, 9)
            .with(0xa, 4);
        assert_eq!(m.encode(), "pinflow1:000000000000000a=4;000000000000000b=9");
        assert_eq!(
            [m.holds(0xa, 4), m.holds(0xa, 2), m.holds(0xa, 5)],
            [Some(true), Some(true), Some(false)]
        );
        assert_eq!(
            [m.holds(0xb, 9), m.holds(0xc, 1)],
            [Some(true), Some(false)]
        );
        let mut many = GroupMeta::none();
        for id in 0..40 {
            many = many.with(id, id);
        }
        let text = many.encode();
        assert!(text.len() < 640, "{}", text.len());
        let back = GroupMeta::of_offset(&text, true);
        assert_eq!(back, many);
        assert_eq!(back.holds(39, 39), Some(true));
        assert_eq!(back.holds(24, 24), Some(true));
        // Dropped from a full list: the metadata cannot tell.
        assert_eq!(back.holds(23, 23), None);
        // Over metadata pinflow did not write, or could not read, the list is marked not
        // whole, and stays so.
        for base in [
            GroupMeta::unknown(),
            GroupMeta::of_offset("", true),
            GroupMeta::of_offset("other tool", true),
        ] {
            let m = base.with(0xa, 1);
            assert!(m.encode().ends_with(";?"), "{}", m.encode());
            let m = GroupMeta::of_offset(&m.encode(), true).with(0xb, 2);
            assert_eq!((m.holds(0xa, 1), m.holds(0xc, 1)), (Some(true), None));
        }
        assert_eq!(GroupMeta::of_offset("", false).holds(0xa, 1), Some(false));
    }

    #[test]
    fn where_the_metadata_cannot_tell_the_offset_decides() {
        let a = (0xa, false);
        let ours = GroupMeta::none().with(0xa, 5).encode();
        // Named: the metadata decides, whatever the offset.
        assert!(landed(&ours, Some(0), a, 5, 100));
        assert!(!landed(&ours, Some(500), a, 6, 100));
        // Another journal's only, in a whole list: never committed.
        let theirs = GroupMeta::none().with(0xb, 1).encode();
        assert!(!landed(&theirs, Some(500), a, 1, 100));
        // No offset at all: never committed.
        assert!(!landed("", None, a, 1, 100));
        // Not pinflow's (another tool committed, or an operator reset it), or a journal
        // whose number is derived: by the offset.
        for (text, who) in [
            ("", a),
            ("other tool", a),
            ("pinflow0:a=1", a),
            (&ours[..], (0xa, true)),
        ] {
            assert!(landed(text, Some(100), who, 6, 100), "{text}");
            assert!(!landed(text, Some(99), who, 6, 100), "{text}");
        }
        // Unreadable entries are skipped, the rest kept, the list not whole.
        let m = GroupMeta::of_offset("pinflow1:zz=1;000000000000000a=3;b", true);
        assert_eq!((m.holds(0xa, 3), m.holds(0xc, 1)), (Some(true), None));
    }

    #[test]
    fn the_partitions_a_pending_checkpoint_moved_are_those_whose_ranges_changed() {
        let before = r#"{"kafka":[{"topic":"t","partition":0,"from":0,"done":[[0,10]]},{"topic":"t","partition":1,"from":0,"done":[[0,5]]}]}"#;
        let pending = r#"{"kafka":[{"topic":"t","partition":0,"from":0,"done":[[0,10]]},{"topic":"t","partition":1,"from":0,"done":[[0,8]]},{"topic":"u","partition":0,"from":0,"done":[[0,1]]}]}"#;
        let moved = moved_partitions(Some(before), Some(pending)).unwrap();
        assert_eq!(
            moved,
            vec![(("t".to_string(), 1), 8), (("u".to_string(), 0), 1)]
        );
        assert_eq!(
            moved_partitions(None, Some(before)).unwrap().len(),
            2,
            "the first checkpoint moved every partition it names"
        );
        assert!(moved_partitions(Some(before), None).unwrap().is_empty());
        // Cut to the group's offset on an assignment, nothing added: not moved.
        let rebased = r#"{"kafka":[{"topic":"t","partition":0,"from":50,"done":[]},{"topic":"t","partition":1,"from":0,"done":[[0,5]]}]}"#;
        assert!(moved_partitions(Some(before), Some(rebased))
            .unwrap()
            .is_empty());
        assert!(moved_partitions(Some("{}x"), Some(pending)).is_err());
    }
}

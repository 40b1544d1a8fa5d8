//! [`LocalParquet`]: the first [`Output`]. Parquet files on a local file system: one file, or
//! rotated files next to `out` (by time, rows, bytes), or Hive-style partition directories
//! under it, each file written under a temporary name and renamed into place when complete.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;

use super::{Holds, Output, OutputPlan, OutputReport, ParquetFile, Partitioner, SealedFile, Split};
use crate::error::Result;
use crate::kafka::offsets::{OffsetRanges, OFFSETS_KEY};
use crate::metrics::live::Registry;

/// One open Parquet file and what the writer knows about it.
struct Slot {
    file: ParquetFile,
    /// Rows written to it.
    rows: u64,
    /// Row groups closed (and counted) before the file is finished.
    closed_groups: u64,
    /// When it was last written, in writer ticks (for least-recently-used eviction).
    last_used: u64,
    /// Batches (by id) with rows in this file not yet counted visible.
    pending: Vec<u64>,
    /// The Kafka messages whose rows are in this file (see [`Output::kafka_messages`]).
    messages: OffsetRanges,
    /// Named by its Kafka partition's first offset (`writer.file_per_kafka_partition`).
    kafka_named: bool,
}

impl Slot {
    fn new(file: ParquetFile) -> Slot {
        Slot {
            file,
            rows: 0,
            closed_groups: 0,
            last_used: 0,
            pending: Vec::new(),
            messages: OffsetRanges::default(),
            kafka_named: false,
        }
    }

    /// Writes what the footer learns only at the end (the Kafka messages held), then seals.
    /// A file named by its first Kafka offset was named by the first batch that came; parse
    /// threads may have handed an earlier one over later, so it is renamed if need be (to a
    /// name not `taken`: see [`claim_kafka_name`]).
    fn seal(mut self, taken: &mut HashSet<PathBuf>) -> Result<(SealedFile, u64, Vec<u64>)> {
        if !self.messages.is_empty() {
            self.file.set_metadata(OFFSETS_KEY, self.messages.to_json());
        }
        if let Some((topic, partition, first)) = self.messages.single().filter(|_| self.kafka_named)
        {
            let want = self
                .file
                .path()
                .with_file_name(crate::kafka::offsets::file_name(topic, partition, first));
            if want != self.file.path() {
                claim_kafka_name(taken, &want, topic, partition, first)?;
                self.file.rename_to(&want)?;
            }
        }
        Ok((self.file.seal()?, self.closed_groups, self.pending))
    }
}

/// Local Parquet files, as [`OutputPlan`] describes them.
pub(crate) struct LocalParquet<'a> {
    plan: &'a OutputPlan,
    registry: &'a Registry,
    /// With a journal, files end only at checkpoints (between batches), never mid-batch.
    journal: bool,
    partitioner: Option<Partitioner>,
    /// Open files by partition directory (`""` when unpartitioned).
    slots: HashMap<String, Slot>,
    /// Number of the last unpartitioned file opened.
    seq: u64,
    /// The next part number of each partition seen.
    next_part: HashMap<String, u64>,
    tick: u64,
    /// Files sealed for a checkpoint, waiting for the journal's commit.
    sealed: Vec<(SealedFile, u64, Vec<u64>)>,
    report: OutputReport,
    /// Files finalized since [`Output::take_finalized`] was last called.
    finalized: u64,
    /// The paths finalized since [`LocalParquet::take_finalized_paths`] was last called.
    finalized_paths: Vec<PathBuf>,
    /// The Kafka messages of the rows being written (see [`Output::kafka_messages`]).
    batch_messages: OffsetRanges,
    /// `writer.file_per_kafka_partition`: files by Kafka partition, named by first offset.
    kafka_files: bool,
    /// The names of this run's files by Kafka partition, open, sealed or published.
    kafka_names: HashSet<PathBuf>,
}

impl<'a> LocalParquet<'a> {
    /// The files of `plan`. `first` is unpartitioned file number `seq`, opened before anything
    /// was fetched ([`OutputPlan::prepare`]).
    pub(crate) fn new(
        plan: &'a OutputPlan,
        registry: &'a Registry,
        journal: bool,
        first: Option<(u64, ParquetFile)>,
    ) -> Result<LocalParquet<'a>> {
        let mut out = LocalParquet {
            plan,
            registry,
            journal,
            partitioner: match plan.writer.partition_by.is_empty() {
                false => Some(Partitioner::new(&plan.writer.partition_by)?),
                true => None,
            },
            slots: HashMap::new(),
            seq: 0,
            next_part: HashMap::new(),
            tick: 0,
            sealed: Vec::new(),
            report: OutputReport::default(),
            finalized: 0,
            finalized_paths: Vec::new(),
            batch_messages: OffsetRanges::default(),
            kafka_files: plan.writer.file_per_kafka_partition,
            kafka_names: HashSet::new(),
        };
        if let Some((seq, file)) = first {
            out.seq = seq;
            out.slots.insert(String::new(), Slot::new(file));
        }
        Ok(out)
    }

    /// Appends `rows` to the file of partition `key`, opening it if needed, and finalizes it
    /// when it reaches `rotate_rows` (splitting the rows exactly there) or `rotate_bytes`.
    fn write_rows(
        &mut self,
        key: &str,
        rows: &RecordBatch,
        id: Option<u64>,
        holds: &mut Holds,
    ) -> Result<()> {
        let n = rows.num_rows();
        let (max_rows, max_bytes) = (self.plan.writer.rotate_rows, self.plan.writer.rotate_bytes);
        let mut offset = 0;
        while offset < n {
            if !self.slots.contains_key(key) {
                self.open_slot(key, holds)?;
            }
            self.tick += 1;
            let slot = self.slots.get_mut(key).expect("opened above");
            slot.last_used = self.tick;
            // With a journal a batch is never split: files end between batches (checkpoints).
            let room = match max_rows {
                Some(m) if !self.journal => m.saturating_sub(slot.rows).max(1),
                _ => u64::MAX,
            };
            let take = (n - offset).min(usize::try_from(room).unwrap_or(usize::MAX));
            let part = if take == n {
                rows.clone()
            } else {
                rows.slice(offset, take)
            };
            let (closed, open_rows) = slot.file.write(&part)?;
            slot.rows += take as u64;
            // Rows of a batch cut by a rotation go to two files: both list its messages.
            slot.messages.merge(&self.batch_messages);
            if let Some(id) = id {
                if slot.pending.last() != Some(&id) {
                    slot.pending.push(id);
                    holds.hold(id);
                }
            }
            if closed > 0 {
                crate::failpoint::hit("writer.after_row_group");
                self.registry.wrote(closed, 0);
                slot.closed_groups += closed;
                // The rows that filled a row group may have left some in the next one: that
                // batch stays pending here until they are in a closed group too.
                let keep = match id {
                    Some(id) if open_rows && slot.pending.last() == Some(&id) => slot.pending.pop(),
                    _ => None,
                };
                for done in std::mem::take(&mut slot.pending) {
                    holds.release(done);
                }
                slot.pending.extend(keep);
            }
            offset += take;
            let full = max_rows.is_some_and(|m| slot.rows >= m)
                || max_bytes.is_some_and(|m| slot.file.estimated_size() >= m);
            if full && !self.journal {
                self.finalize_slot(key, holds)?;
            }
        }
        Ok(())
    }

    /// Opens the next file for partition `key`; partitioned, first finalizes the least
    /// recently used file when `max_open_partitions` are open.
    fn open_slot(&mut self, key: &str, holds: &mut Holds) -> Result<()> {
        if self.kafka_files {
            // (The source's batches each hold one partition's messages: see `write`.)
            let (topic, partition, first) = self
                .batch_messages
                .single()
                .expect("a batch of one Kafka partition");
            let name = crate::kafka::offsets::file_name(topic, partition, first);
            let path = self.plan.partition_dir(key)?.join(name);
            claim_kafka_name(&mut self.kafka_names, &path, topic, partition, first)?;
            let file =
                ParquetFile::create(&path, self.plan.properties()?, self.plan.schema.clone())?;
            let mut slot = Slot::new(file);
            slot.kafka_named = true;
            self.slots.insert(key.to_string(), slot);
            return Ok(());
        }
        let file = if self.partitioner.is_none() {
            self.seq = self.plan.free_seq(self.seq + 1);
            self.plan.open(self.seq)?
        } else {
            // (With a journal the bound is enforced by a checkpoint after the batch.)
            if !self.journal && self.slots.len() >= self.plan.writer.max_open_partitions.max(1) {
                let lru = self
                    .slots
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
                    .expect("at least one file is open");
                self.finalize_slot(&lru, holds)?;
                crate::failpoint::hit("output.evict");
            }
            let dir = self.plan.partition_dir(key)?;
            let part = match self.next_part.get(key) {
                Some(&n) => n,
                None => next_free_part(&dir),
            };
            self.next_part.insert(key.to_string(), part + 1);
            ParquetFile::create(
                &self.plan.partition_path(key, part),
                self.plan.properties()?,
                self.plan.schema.clone(),
            )?
        };
        self.slots.insert(key.to_string(), Slot::new(file));
        Ok(())
    }

    /// Finalizes the file of `key`: footer, fsync, rename, directory fsync; counts it.
    fn finalize_slot(&mut self, key: &str, holds: &mut Holds) -> Result<()> {
        let slot = self.slots.remove(key).expect("finalizing an open file");
        let (sealed, closed_groups, pending) = slot.seal(&mut self.kafka_names)?;
        let row_groups = sealed.row_groups;
        let path = sealed.publish()?;
        self.count_finalized(path, row_groups, closed_groups, pending, holds);
        Ok(())
    }

    /// The files finalized since the last call (an uploader takes them from here).
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn take_finalized_paths(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.finalized_paths)
    }

    /// Counts a finalized file in the report and the live metrics.
    fn count_finalized(
        &mut self,
        path: PathBuf,
        row_groups: u64,
        closed: u64,
        pending: Vec<u64>,
        holds: &mut Holds,
    ) {
        self.registry.wrote(row_groups.saturating_sub(closed), 1);
        for id in pending {
            holds.release(id);
        }
        self.report.row_groups += row_groups;
        self.report.files += 1;
        self.finalized_paths.push(path.clone());
        self.report.output = Some(path);
        self.finalized += 1;
    }
}

impl Output for LocalParquet<'_> {
    fn write(
        &mut self,
        rows: &RecordBatch,
        id: Option<u64>,
        holds: &mut Holds,
    ) -> Result<Vec<(usize, String)>> {
        if !self.plan.enabled {
            return Ok(Vec::new());
        }
        if self.kafka_files {
            if rows.num_rows() == 0 {
                return Ok(Vec::new());
            }
            let Some((topic, partition, _)) = self.batch_messages.single() else {
                return Err(crate::error::Error::output(
                    &self.plan.out,
                    "write",
                    "rows of several Kafka partitions, or of none, came in one batch: with \
                     writer.file_per_kafka_partition each batch must hold one partition's \
                     messages (a Kafka source's batches do)",
                ));
            };
            let key = format!("topic={topic}/partition={partition}");
            self.write_rows(&key, rows, id, holds)?;
            return Ok(Vec::new());
        }
        let split = match &self.partitioner {
            None => Split {
                parts: vec![(String::new(), rows.clone())],
                refused: Vec::new(),
            },
            Some(p) => p.split(rows)?,
        };
        for (key, part) in &split.parts {
            self.write_rows(key, part, id, holds)?;
        }
        Ok(split.refused)
    }

    fn deadline(&self) -> Option<Instant> {
        let max_age = self.plan.writer.flush_interval;
        self.slots
            .values()
            .filter_map(|s| s.file.open_since().map(|t| crate::time::after(t, max_age)))
            .min()
    }

    fn flush_aged(&mut self, holds: &mut Holds) -> Result<()> {
        let max_age = self.plan.writer.flush_interval;
        for slot in self.slots.values_mut() {
            let aged = slot
                .file
                .open_since()
                .is_some_and(|t| t.elapsed() >= max_age);
            if aged && slot.file.flush_row_group()? {
                self.registry.wrote(1, 0);
                slot.closed_groups += 1;
                for id in std::mem::take(&mut slot.pending) {
                    holds.release(id);
                }
            }
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        let w = &self.plan.writer;
        self.slots.len() > w.max_open_partitions.max(1)
            || self.slots.values().any(|s| {
                w.rotate_rows.is_some_and(|m| s.rows >= m)
                    || w.rotate_bytes.is_some_and(|m| s.file.estimated_size() >= m)
            })
    }

    fn finalize_all(&mut self, holds: &mut Holds) -> Result<()> {
        let mut keys: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.rows > 0)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for key in keys {
            self.finalize_slot(&key, holds)?;
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<Vec<(PathBuf, PathBuf)>> {
        // With a journal, partitions past `max_open_partitions` are evicted by this seal.
        let evicting = self.slots.len() > self.plan.writer.max_open_partitions.max(1);
        let mut keys: Vec<String> = self.slots.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let slot = self.slots.remove(&key).expect("listed above");
            if slot.rows == 0 {
                slot.file.abort();
                continue;
            }
            match slot.seal(&mut self.kafka_names) {
                Ok(sealed) => {
                    self.sealed.push(sealed);
                    if evicting {
                        crate::failpoint::hit("output.evict");
                    }
                }
                Err(e) => {
                    self.discard_sealed();
                    return Err(e);
                }
            }
        }
        Ok(self
            .sealed
            .iter()
            .map(|(s, _, _)| (s.tmp.clone(), s.path.clone()))
            .collect())
    }

    fn publish_sealed(&mut self, holds: &mut Holds) -> Result<()> {
        for (s, closed_groups, pending) in std::mem::take(&mut self.sealed) {
            let row_groups = s.row_groups;
            let path = s.publish()?;
            crate::failpoint::hit("writer.mid_publish");
            self.count_finalized(path, row_groups, closed_groups, pending, holds);
        }
        Ok(())
    }

    fn discard_sealed(&mut self) {
        for (s, _, _) in self.sealed.drain(..) {
            s.discard();
        }
    }

    fn keep_sealed(&mut self) {
        self.sealed.clear();
    }

    fn finish(&mut self, holds: &mut Holds) -> Result<()> {
        // An unpartitioned run that wrote no rows at all still finalizes its (empty) file, so
        // `out` always exists afterwards; other empty files are removed.
        if self.partitioner.is_none() && self.report.files == 0 {
            if let Some(slot) = self.slots.get_mut("") {
                // Counted as a file with rows of its own, however many.
                slot.rows = slot.rows.max(1);
            }
        }
        self.finalize_all(holds)?;
        for (_, slot) in self.slots.drain() {
            slot.file.abort();
        }
        Ok(())
    }

    fn abort(&mut self) {
        self.discard_sealed();
        for (_, slot) in self.slots.drain() {
            slot.file.abort();
        }
    }

    fn take_finalized(&mut self) -> u64 {
        std::mem::take(&mut self.finalized)
    }

    fn report(&self) -> OutputReport {
        self.report.clone()
    }

    fn kafka_messages(&mut self, messages: &OffsetRanges) {
        self.batch_messages.clone_from(messages);
    }
}

/// Takes `path`, the name of a file by Kafka partition whose first offset is `first`, for
/// this run. With the journal every offset is in one file, so the name is free; taken (by a
/// file of this run, or on disk), the partition's messages from `first` were read a second
/// time: a revocation that found them not yet in a checkpoint, and the partition given back
/// to this member (docs/usage.md, "Not exactly once"). The run stops there rather than
/// replace a file that holds them.
fn claim_kafka_name(
    taken: &mut HashSet<PathBuf>,
    path: &Path,
    topic: &str,
    partition: i32,
    first: u64,
) -> Result<()> {
    if taken.contains(path) || path.exists() {
        return Err(crate::error::Error::output(
            path,
            "create",
            format!(
                "exists already: the messages of {topic}/{partition} from offset {first} were \
                 read a second time (a revocation found them not yet in a checkpoint, and the \
                 partition came back to this member); stopping rather than replace the file \
                 that holds them. Restart the run: the journal resumes after its last \
                 checkpoint"
            ),
        ));
    }
    taken.insert(path.to_path_buf());
    Ok(())
}

/// The first part number after every `part-NNNNN.parquet` already in `dir` (1 if none), so a
/// later run adds to a partition instead of replacing its files. The upload state an
/// object-storage output keeps for a file it uploaded and removed (`.part-NNNNN.parquet.s3`,
/// see [`crate::journal::upload_state_path`]) holds its number too: a new file of that name
/// would be taken for the uploaded one.
fn next_free_part(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 1;
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let name = name.to_str()?;
            let name = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".s3"))
                .unwrap_or(name);
            name.strip_prefix("part-")?
                .strip_suffix(".parquet")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(1, |n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_file_name_is_given_once_and_never_over_a_file_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let mut taken = HashSet::new();
        let name = |first| {
            d.path()
                .join(crate::kafka::offsets::file_name("logs", 3, first))
        };
        claim_kafka_name(&mut taken, &name(100), "logs", 3, 100).unwrap();
        // The same offsets read again in this run.
        let why = claim_kafka_name(&mut taken, &name(100), "logs", 3, 100)
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("exists already") && why.contains("logs/3 from offset 100"),
            "{why}"
        );
        // A file of that name on disk (published by this run or committed by an earlier one).
        std::fs::write(name(200), b"PAR1").unwrap();
        assert!(claim_kafka_name(&mut taken, &name(200), "logs", 3, 200).is_err());
        assert_eq!(std::fs::read(name(200)).unwrap(), b"PAR1", "left as it was");
        claim_kafka_name(&mut taken, &name(300), "logs", 3, 300).unwrap();
    }
}

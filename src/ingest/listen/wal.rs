//! The write-ahead log of admitted bodies: the receive endpoint's durability point between
//! checkpoints.
//!
//! Waiting for a journal checkpoint (a file finalized and fsynced every
//! `writer.rotate_interval`) before answering makes every client wait most of a checkpoint
//! period per request. Instead, the event loop appends each admitted body, with its work
//! item number, to a segment file in `OUT.receive-wal/`, and a sync thread fsyncs what was
//! appended: one `fdatasync` covers every body appended before it, from every connection
//! (group commit), so its cost is shared. A request is answered 200 once the sync covers its
//! body (or once a checkpoint committed its item, whichever comes first).
//!
//! A record is `len u32 | seq u64 | gzip u8 | crc32 u32 | body` (little-endian; the CRC-32
//! covers seq, gzip and body). A killed run leaves its segments: the next run reads them
//! ([`replay`]) and admits again every body whose item no checkpoint committed, under its
//! old number, so it is written exactly once; a cut or damaged record ends its segment (it was
//! being appended when the run died, and was never acknowledged). A segment is deleted once
//! checkpoints committed all its items; a new run never appends to an old segment. The log
//! names the journal it goes with (its start time, in `journal-started`): a journal started
//! afresh does not take another's log.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::journal::RangeSet;
use crate::metrics::live::CommittedItems;

/// A segment is closed and a new one begun past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Bytes before a record's body.
const HEADER: usize = 4 + 8 + 1 + 4;

/// One body read back from a killed run's log.
#[derive(Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Its work item number.
    pub seq: u64,
    /// Whether it is a gzip stream.
    pub gzip: bool,
    /// The body, as it was posted.
    pub body: Vec<u8>,
}

/// A segment file and the items in it not yet known to be committed.
#[derive(Debug)]
pub struct Segment {
    /// The file.
    pub path: PathBuf,
    /// Its items that no checkpoint is known to have committed.
    pub items: RangeSet,
}

/// What the event loop and the sync thread share.
struct Shared {
    state: Mutex<SyncState>,
    wake: Condvar,
    /// Bytes appended (over every segment of this run) that an fsync covers.
    durable: AtomicU64,
    /// How long the sync thread dawdles between its check and its wait (tests widen the
    /// window a lost wake-up would fall into).
    #[cfg(test)]
    pause_before_wait: std::time::Duration,
}

#[cfg(test)]
thread_local! {
    /// [`Shared::pause_before_wait`] of the logs this thread starts.
    pub(super) static PAUSE_BEFORE_WAIT: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

struct SyncState {
    file: Arc<File>,
    appended: u64,
    /// The sync failed: nothing is answered 200 from the log any more (checkpoints still ack).
    failed: Option<String>,
    /// The log is closing. Under the lock, not beside it: a stop set between the sync
    /// thread's check and its wait would wake nobody, and the close would wait forever.
    stop: bool,
}

/// The log of this run: appends on the event loop, fsyncs on its own thread.
pub struct Wal {
    dir: PathBuf,
    current: Segment,
    file: Arc<File>,
    segment_bytes: u64,
    appended: u64,
    /// Closed segments (of this run and the killed ones), oldest first.
    closed: VecDeque<Segment>,
    shared: Arc<Shared>,
    syncer: Option<std::thread::JoinHandle<()>>,
    scratch: Vec<u8>,
}

/// The log's I/O errors, with the file.
fn io_error(what: &str, path: &Path, e: std::io::Error) -> crate::error::Error {
    crate::error::Error::config(
        "listen.addr",
        format!("receive write-ahead log: {what} {}: {e}", path.display()),
    )
}

/// The file in the log's directory that names the journal the log goes with.
const OWNER: &str = "journal-started";

fn segment_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

/// Reads the segments a killed run left in `dir` (none when it does not exist): the bodies
/// whose items `done` does not hold, in order, and the segments with the items they still
/// wait for (segments with none are deleted). Segments of another journal than the one
/// started at `owner` are refused: their numbers mean nothing to this one.
pub fn replay(
    dir: &Path,
    done: &RangeSet,
    owner: u64,
) -> crate::error::Result<(Vec<Replayed>, Vec<Segment>)> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("wal-") && n.ends_with(".log"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io_error("cannot read", dir, e)),
    };
    names.sort();
    let written_for = std::fs::read_to_string(dir.join(OWNER)).ok();
    if !names.is_empty() && written_for.as_deref().map(str::trim) != Some(&owner.to_string()) {
        return Err(crate::error::Error::config(
            "listen.addr",
            format!(
                "the receive write-ahead log {} goes with another journal than this output's \
                 (one started at {}, this one at {owner}): its bodies may be acknowledged \
                 records that no output holds. Run with that journal again to write them, or \
                 move the log aside to start afresh",
                dir.display(),
                written_for.as_deref().map_or("an unknown time", str::trim)
            ),
        ));
    }
    let (mut bodies, mut kept) = (Vec::new(), Vec::new());
    for path in names {
        let data = std::fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
        let mut items = RangeSet::default();
        let mut at = 0usize;
        while let Some((record, next)) = read_record(&data, at) {
            if !done.contains(record.seq) {
                items.insert(record.seq);
                bodies.push(record);
            }
            at = next;
        }
        if at < data.len() {
            tracing::warn!(
                segment = %path.display(),
                offset = at,
                "receive write-ahead log: a cut or damaged record ends the segment (one being \
                 appended when the run stopped, never acknowledged)"
            );
        }
        if items.is_empty() {
            std::fs::remove_file(&path).map_err(|e| io_error("cannot delete", &path, e))?;
        } else {
            kept.push(Segment { path, items });
        }
    }
    Ok((bodies, kept))
}

/// The record at `at`, and where the next one starts; `None` at the end or at a cut or damaged
/// record.
fn read_record(data: &[u8], at: usize) -> Option<(Replayed, usize)> {
    let head = data.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let seq = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let gzip = match head[12] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let crc = u32::from_le_bytes(head[13..17].try_into().ok()?);
    let body = data.get(at + HEADER..(at + HEADER).checked_add(len)?)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&head[4..13]);
    h.update(body);
    (h.finalize() == crc).then(|| {
        (
            Replayed {
                seq,
                gzip,
                body: body.to_vec(),
            },
            at + HEADER + len,
        )
    })
}

fn create_segment(dir: &Path, first_seq: u64) -> crate::error::Result<(PathBuf, File)> {
    let path = dir.join(segment_name(first_seq));
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_error("cannot create", &path, e))?;
    // The new name must survive a crash too, or its fsynced bodies would vanish with it.
    crate::fsutil::sync_dir(dir);
    Ok((path, file))
}

impl Wal {
    /// Starts this run's log in `dir` (created if missing) with its first segment numbered
    /// `first_seq`, keeping the killed runs' segments `old` (from [`replay`]) until their
    /// items are committed. `wake` is called after each sync, from the sync thread.
    pub fn start(
        dir: &Path,
        owner: u64,
        first_seq: u64,
        old: Vec<Segment>,
        wake: Box<dyn Fn() + Send>,
    ) -> crate::error::Result<Wal> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        crate::fsutil::sync_parent(dir);
        let owner_path = dir.join(OWNER);
        if std::fs::read_to_string(&owner_path)
            .ok()
            .as_deref()
            .map(str::trim)
            != Some(&owner.to_string())
        {
            // Durable before the first segment: a log is never found without its owner.
            let mut f =
                File::create(&owner_path).map_err(|e| io_error("cannot create", &owner_path, e))?;
            f.write_all(owner.to_string().as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io_error("cannot write", &owner_path, e))?;
        }
        let (path, file) = create_segment(dir, first_seq)?;
        let file = Arc::new(file);
        let shared = Arc::new(Shared {
            state: Mutex::new(SyncState {
                file: Arc::clone(&file),
                appended: 0,
                failed: None,
                stop: false,
            }),
            wake: Condvar::new(),
            durable: AtomicU64::new(0),
            #[cfg(test)]
            pause_before_wait: PAUSE_BEFORE_WAIT.get(),
        });
        let syncer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("receive-wal".into())
                .spawn(move || sync_loop(&shared, wake))
                .map_err(|e| io_error("cannot start the sync thread for", dir, e))?
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            current: Segment {
                path,
                items: RangeSet::default(),
            },
            file,
            segment_bytes: 0,
            appended: 0,
            closed: old.into(),
            shared,
            syncer: Some(syncer),
            scratch: Vec::new(),
        })
    }

    /// Appends the body of item `seq`; returns the log position an fsync must reach before
    /// the body is durable. On an error the segment is closed (its tail may be cut) and the
    /// next append goes to a new one.
    pub fn append(&mut self, seq: u64, gzip: bool, body: &[u8]) -> crate::error::Result<u64> {
        let len = u32::try_from(body.len()).map_err(|_| {
            io_error(
                "a body over 4 GiB cannot go into",
                &self.current.path,
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?;
        if self.segment_bytes >= SEGMENT_BYTES {
            self.roll(seq)?;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq.to_le_bytes());
        crc.update(&[u8::from(gzip)]);
        crc.update(body);
        self.scratch.clear();
        self.scratch.extend_from_slice(&len.to_le_bytes());
        self.scratch.extend_from_slice(&seq.to_le_bytes());
        self.scratch.push(u8::from(gzip));
        self.scratch
            .extend_from_slice(&crc.finalize().to_le_bytes());
        self.scratch.extend_from_slice(body);
        if let Err(e) = (&*self.file).write_all(&self.scratch) {
            let err = io_error("cannot append to", &self.current.path, e);
            // What was written of it ends the segment: the next body goes to a new one.
            self.segment_bytes = SEGMENT_BYTES;
            return Err(err);
        }
        self.current.items.insert(seq);
        self.segment_bytes += self.scratch.len() as u64;
        self.appended += self.scratch.len() as u64;
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.appended = self.appended;
        drop(state);
        self.shared.wake.notify_one();
        Ok(self.appended)
    }

    /// Closes the current segment (fsynced here: the sync thread moves on to the next file)
    /// and begins one numbered `first_seq`.
    fn roll(&mut self, first_seq: u64) -> crate::error::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io_error("cannot fsync", &self.current.path, e))?;
        let (path, file) = create_segment(&self.dir, first_seq)?;
        let file = Arc::new(file);
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.file = Arc::clone(&file);
        drop(state);
        // Everything in the old file is on disk now.
        self.shared
            .durable
            .fetch_max(self.appended, Ordering::AcqRel);
        self.file = file;
        self.segment_bytes = 0;
        let old = std::mem::replace(
            &mut self.current,
            Segment {
                path,
                items: RangeSet::default(),
            },
        );
        self.closed.push_back(old);
        Ok(())
    }

    /// How far fsyncs reached: a body whose position from [`Wal::append`] is at most this is
    /// durable. Stays put after a failed sync.
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Deletes the closed segments whose items checkpoints have all committed.
    pub fn trim(&mut self, committed: &CommittedItems) {
        self.closed.retain(|s| {
            if !s.items.ranges().all(|(lo, hi)| committed.covers(lo, hi)) {
                return true;
            }
            match std::fs::remove_file(&s.path) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(segment = %s.path.display(), error = %e, "receive write-ahead log: cannot delete a committed segment");
                    false
                }
            }
        });
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

/// The sync thread: fsyncs whatever was appended since its last sync, then says so.
fn sync_loop(shared: &Shared, wake: Box<dyn Fn() + Send>) {
    let mut synced = 0u64;
    loop {
        let (file, target) = {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            while state.appended <= synced && !state.stop {
                #[cfg(test)]
                std::thread::sleep(shared.pause_before_wait);
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.appended <= synced || state.failed.is_some() {
                return;
            }
            (Arc::clone(&state.file), state.appended)
        };
        if let Err(e) = file.sync_data() {
            tracing::error!(error = %e, "receive write-ahead log: fsync failed; requests are acknowledged at checkpoints only");
            shared
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failed = Some(e.to_string());
            return;
        }
        synced = target;
        shared.durable.fetch_max(target, Ordering::AcqRel);
        wake();
    }
}

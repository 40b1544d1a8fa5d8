//! [`Uploader`]: the threads that move staged files into the store, each file through the
//! steps its [`UploadState`] records (staged → uploading → uploaded → removed).
//!
//! `output.s3.upload_concurrency` threads take staged files side by side, and a multipart
//! upload sends its parts side by side; [`RequestSlots`] holds the requests of all of them
//! together to that many. Files are independent: each has its own key, state file and
//! steps, so a kill leaves every file in flight settled by the next run as if it were alone.
//!
//! A file staged by this run gets its key and goes up. A file an earlier run left is first
//! reconciled with the store, because that run may have died at any step: its multipart
//! upload is resumed from the parts the store lists (ListParts); an object already at its key
//! (HEAD) means it was uploaded and only the local copy is left; multipart uploads of its key
//! that are not the recorded one (created just before a crash, never recorded) are aborted.
//! Its key never changes, so no record can end up in two objects.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::{Condvar, Mutex};
use rusty_s3::{Bucket, Credentials, S3Action};

use super::state::{state_path, UploadState};
use super::{Shared, Staged};
use crate::fsutil::sync_parent;
use crate::output::S3Target;
use crate::s3::response::{
    check, error_text, jitter, permanent, tag, transient, xml_unescape, Attempt,
};
use crate::s3::S3Settings;

/// One request's body: bytes `[start, start + len)` of a staged file, read as they are sent.
///
/// The file must still have the size it was staged with: one changed since (by something
/// other than pinflow, in the staging directory) fails the upload for good, keeping the file,
/// rather than putting other bytes under its key. One that shrinks while it is being sent
/// ends the request with an error, where the client would wait for bytes that never come.
struct StagedBytes {
    /// The file from `start`, limited to `len` bytes (its limit: the bytes still to send).
    file: std::io::Take<std::fs::File>,
}

impl StagedBytes {
    fn open(path: &Path, size: u64, start: u64, len: u64) -> Attempt<StagedBytes> {
        let unreadable = |e: std::io::Error| permanent(format!("read the staged file: {e}"));
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        let now = file.metadata().map_err(unreadable)?.len();
        if now != size {
            return Err(permanent(format!(
                "the staged file is {now} bytes, not the {size} it was staged with: changed \
                 by something else"
            )));
        }
        file.seek(SeekFrom::Start(start)).map_err(unreadable)?;
        Ok(StagedBytes {
            file: file.take(len),
        })
    }
}

impl Read for StagedBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.file.limit() == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = self.file.read(buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the staged file shrank while it was being sent",
            ));
        }
        Ok(n)
    }
}

/// How long a signed URL stays valid: one request, retried within this.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// A step's failure, in words (the run fails with it; the staged file is kept).
type Step<T> = std::result::Result<T, String>;

/// At most so many requests to the store at once, all uploads together (a counting
/// semaphore): files side by side and parts side by side share `upload_concurrency`.
pub(super) struct RequestSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A request's slot, given back when dropped.
struct Slot<'a>(&'a RequestSlots);

impl RequestSlots {
    pub(super) fn new(n: usize) -> RequestSlots {
        RequestSlots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot and takes it.
    fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.freed.wait(&mut free);
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.freed.notify_one();
    }
}

/// What the uploader threads share: one of them per `upload_concurrency`, each taking the
/// next staged file from the queue.
pub(super) struct Uploader {
    pub(super) bucket: Bucket,
    pub(super) settings: S3Settings,
    pub(super) agent: ureq::Agent,
    pub(super) staging: PathBuf,
    pub(super) target: S3Target,
    /// This run's identity in the keys of the files it stages (see [`run_identity`]).
    pub(super) run: String,
    /// Keep each uploaded file's state (`writer.journal`: the journal's record of it).
    pub(super) keep_states: bool,
    pub(super) shared: Arc<Shared>,
    /// Requests at once, and so the parts of one file sent side by side.
    pub(super) concurrency: usize,
    /// The requests of all uploads together, at most `concurrency` at once.
    pub(super) slots: RequestSlots,
}

/// An uploader thread's exit: one worker fewer (the last marks the uploads done), and a
/// panic fails the run, its file kept staged.
struct Leaving<'a>(&'a Shared);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        if std::thread::panicking() && st.failed.is_none() {
            st.failed = Some("an uploader thread panicked; its file stays staged".into());
        }
        st.workers = st.workers.saturating_sub(1);
        st.done = st.workers == 0;
        drop(st);
        self.0.changed.notify_all();
    }
}

impl Uploader {
    /// One uploader thread: settles staged files from `rx` until it is closed and empty.
    /// The last thread to end marks the uploads done.
    pub(super) fn run(&self, rx: Receiver<Staged>) {
        // Counts this thread out however it ends: a panic that skipped it left the writer
        // waiting for room in the staging bound, or for the uploads' end, forever.
        let _leaving = Leaving(&self.shared);
        for file in rx {
            if self.shared.state.lock().failed.is_some() {
                continue; // Kept staged: the run has failed.
            }
            let stats = &self.shared.stats;
            stats.in_flight.fetch_add(1, Relaxed);
            stats.last_progress_unix.store(super::now_secs(), Relaxed);
            let began = Instant::now();
            let result = self.settle(&file);
            stats.in_flight.fetch_sub(1, Relaxed);
            match result {
                Ok(key) => {
                    tracing::debug!(
                        key = %key,
                        bytes = file.size,
                        waited_ms = began.duration_since(file.staged_at).as_millis() as u64,
                        took_ms = began.elapsed().as_millis() as u64,
                        "uploaded"
                    );
                    self.shared.unstage(&file);
                }
                Err(why) => {
                    tracing::error!(file = %file.path.display(), error = %why, "upload failed; the file stays staged");
                    self.shared.state.lock().failed = Some(why);
                }
            }
            self.shared.changed.notify_all();
        }
    }

    /// Takes one staged file through to an object, then removes the staged copy and its
    /// state. Returns the key.
    fn settle(&self, file: &Staged) -> Step<String> {
        let path = &file.path;
        let mut st = match UploadState::load(path).map_err(|e| e.to_string())? {
            Some(st) if st.uploaded => {
                tracing::info!(key = %st.key, "an earlier run uploaded this file (its state says so); removing the staged copy");
                st
            }
            Some(mut st) => {
                // An earlier run got this far: find out where the store stands.
                self.reconcile(path, file.size, &mut st)
                    .map_err(|why| format!("{}: {why}", st.key))?;
                st
            }
            None => UploadState::create(path, &self.key_for(path)).map_err(|e| e.to_string())?,
        };
        if !st.uploaded {
            self.upload(path, file.size, &mut st)
                .map_err(|why| format!("{}: {why}", st.key))?;
            crate::failpoint::hit("objstore.after_complete");
            st.record_uploaded(path).map_err(|e| e.to_string())?;
            crate::failpoint::hit("objstore.after_uploaded");
            self.shared
                .stats
                .bytes_uploaded
                .fetch_add(file.size, Relaxed);
            self.shared.stats.files_uploaded.fetch_add(1, Relaxed);
        }
        // The object exists and says so durably: the local copies may go, data first.
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), error = %e, "uploaded, but could not remove the staged copy");
            }
        }
        // With a journal, the state stays: the journal takes it for the file it committed.
        if !self.keep_states {
            let _ = std::fs::remove_file(state_path(path));
        }
        sync_parent(path);
        Ok(st.key)
    }

    /// The key of a file this run staged: its path under the staging directory, the run's
    /// identity before its name (`service=api/20261204T153012Z-9c1e03-part-00001.parquet`), so
    /// that no run's object replaces another's.
    fn key_for(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.staging).unwrap_or(path);
        self.target.key(&keyed_name(rel, &self.run))
    }

    /// Brings `st`, left by an earlier run, in line with the store: a multipart upload that
    /// is gone (completed, or aborted) is forgotten, an object at the key marks the file
    /// uploaded, and multipart uploads of the key other than the recorded one are aborted.
    fn reconcile(&self, path: &Path, size: u64, st: &mut UploadState) -> Step<()> {
        if let Some(id) = st.upload_id.clone() {
            match self.listed_parts(&st.key, &id, size)? {
                Some(parts) => {
                    tracing::info!(key = %st.key, upload = %id, parts_stored = parts.len(), "resuming a multipart upload an earlier run began");
                    st.parts = parts;
                }
                None => {
                    st.upload_id = None;
                    st.parts.clear();
                }
            }
        }
        if st.upload_id.is_none() {
            match self.head(&st.key)? {
                Some(len) if len == size => {
                    tracing::info!(key = %st.key, "found this file's object in the store (an earlier run uploaded it); removing the staged copy");
                    return st.record_uploaded(path).map_err(|e| e.to_string());
                }
                Some(len) => {
                    tracing::warn!(key = %st.key, bytes = len, staged = size, "an object of another size is at this file's key; it is replaced")
                }
                None => {}
            }
        }
        for id in self.open_uploads(&st.key)? {
            if st.upload_id.as_deref() != Some(id.as_str()) {
                tracing::info!(key = %st.key, upload = %id, "aborting a multipart upload an earlier run left");
                self.abort(&st.key, &id)?;
            }
        }
        Ok(())
    }

    /// Uploads the file under `st.key`: one PUT when small, otherwise the parts `st` does not
    /// have yet and the completion, recording each step.
    fn upload(&self, path: &Path, size: u64, st: &mut UploadState) -> Step<()> {
        if size < self.settings.part_size && st.upload_id.is_none() {
            // Idempotent: the same bytes under the same key.
            return self.retried("PUT", || self.put(&st.key, path, size));
        }
        let result = self.multipart(path, size, st);
        if result.is_err() {
            if let Some(id) = &st.upload_id {
                // Nothing of a failed upload may linger (billed, never visible); should the
                // abort fail too, the next run resumes or aborts it.
                let _ = self.retried("AbortMultipartUpload", || self.abort_once(&st.key, id));
            }
        }
        result
    }

    fn creds(&self) -> Option<&Credentials> {
        self.settings.credentials.as_ref()
    }

    /// PUTs the staged file at `path` (`size` bytes) as it reads it, opened anew at each
    /// attempt: no copy of the file in memory, whose fresh pages (an `mmap` at this size) cost
    /// as many page faults as the file has pages.
    fn put(&self, key: &str, path: &Path, size: u64) -> Attempt<()> {
        let mut body = StagedBytes::open(path, size, 0, size)?;
        let url = self.bucket.put_object(self.creds(), key).sign(SIGNED_FOR);
        let request = self
            .agent
            .put(url.as_str())
            .header("content-length", size)
            .send(ureq::SendBody::from_reader(&mut body));
        check(request).map(|_| ())
    }

    /// The size of the object at `key`, or `None` when there is none.
    fn head(&self, key: &str) -> Step<Option<u64>> {
        self.retried("HeadObject", || {
            let url = self.bucket.head_object(self.creds(), key).sign(SIGNED_FOR);
            match self.agent.head(url.as_str()).call() {
                Ok(r) if r.status().as_u16() == 404 => Ok(None),
                Ok(r) if r.status().is_success() => Ok(Some(
                    r.headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                )),
                other => check(other).map(|_| None),
            }
        })
    }

    fn multipart(&self, path: &Path, size: u64, st: &mut UploadState) -> Step<()> {
        let id = match st.upload_id.clone() {
            Some(id) => id,
            None => {
                let id = self.retried("CreateMultipartUpload", || {
                    let url = self
                        .bucket
                        .create_multipart_upload(self.creds(), &st.key)
                        .sign(SIGNED_FOR);
                    let (_, body) = check(self.agent.post(url.as_str()).send_empty())?;
                    rusty_s3::actions::CreateMultipartUpload::parse_response(&body)
                        .map(|r| r.upload_id().to_string())
                        .map_err(|e| permanent(format!("unreadable response: {e}")))
                })?;
                crate::failpoint::hit("objstore.after_create");
                st.record_upload(path, &id).map_err(|e| e.to_string())?;
                id
            }
        };
        self.send_parts(path, size, &id, st)?;
        let completed = self.retried("CompleteMultipartUpload", || {
            let action = self.bucket.complete_multipart_upload(
                self.creds(),
                &st.key,
                &id,
                st.parts.values().map(String::as_str),
            );
            let url = action.sign(SIGNED_FOR);
            let (_, text) = check(self.agent.post(url.as_str()).send(action.body().as_bytes()))?;
            // S3 may answer 200 with an error document once the completion has started.
            match text.contains("<Error>") {
                true => Err(transient(format!("error document: {}", error_text(&text)))),
                false => Ok(()),
            }
        });
        match completed {
            // An answer lost on the way: the retry finds the upload gone because it completed.
            Err(why) if why.contains("NoSuchUpload") => match self.head(&st.key)? {
                Some(len) if len == size => Ok(()),
                _ => Err(why),
            },
            other => other,
        }
    }

    /// Sends the parts of upload `id` that `st` does not have, up to `concurrency` side by
    /// side, recording each part's ETag as it is stored (in whatever order they finish: a
    /// resumed upload lists them, and the completion takes them by number). The first
    /// failure stops the rest from starting and is returned once those under way end.
    fn send_parts(&self, path: &Path, size: u64, id: &str, st: &mut UploadState) -> Step<()> {
        let part_size = self.settings.part_size_for(size);
        let missing: Vec<u16> = (1..=size.div_ceil(part_size))
            .map(|n| n as u16) // At most 10,000 (part_size_for).
            .filter(|n| !st.parts.contains_key(n)) // In the store already (resumed).
            .collect();
        let key = st.key.clone();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let state = Mutex::new(st);
        let failure = Mutex::new(None::<String>);
        // Each sender takes the next missing part until none is left or one has failed.
        let sender = || {
            while !stop.load(Relaxed) {
                let Some(&number) = missing.get(next.fetch_add(1, Relaxed)) else {
                    return;
                };
                let sent = self
                    .send_part(path, size, &key, id, number, part_size)
                    .and_then(|etag| {
                        crate::failpoint::hit("objstore.after_part");
                        let mut st = state.lock();
                        st.record_part(path, number, &etag)
                            .map_err(|e| e.to_string())
                    });
                if let Err(why) = sent {
                    stop.store(true, Relaxed);
                    failure.lock().get_or_insert(why);
                    return;
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..self.concurrency.min(missing.len()) {
                let spawned = std::thread::Builder::new()
                    .name("pinflow-s3-part".into())
                    .spawn_scoped(scope, sender);
                if let Err(e) = spawned {
                    // Fewer senders, not none: this thread sends too.
                    tracing::warn!(error = %e, "could not start a part sender; sending with fewer");
                    break;
                }
            }
            sender();
        });
        match failure.into_inner() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Sends part `number` of upload `id` (read from the staged file as it is sent, at each
    /// attempt: no part is held in memory) and returns its ETag.
    fn send_part(
        &self,
        path: &Path,
        size: u64,
        key: &str,
        id: &str,
        number: u16,
        part_size: u64,
    ) -> Step<String> {
        self.retried("UploadPart", || {
            let start = u64::from(number - 1) * part_size;
            let len = size.saturating_sub(start).min(part_size);
            let mut part = StagedBytes::open(path, size, start, len)?;
            let url = self
                .bucket
                .upload_part(self.creds(), key, number, id)
                .sign(SIGNED_FOR);
            // A reader's length is not known to the client: the header gives it (a store
            // takes no chunked part).
            let request = self
                .agent
                .put(url.as_str())
                .header("content-length", len)
                .send(ureq::SendBody::from_reader(&mut part));
            let (etag, _) = check(request)?;
            etag.ok_or_else(|| transient("UploadPart answered without an ETag"))
        })
    }

    /// The parts of upload `id` in the store (ListParts), when they fit a file of `size` in
    /// this run's part size; `None` when the upload is gone. An upload whose parts do not fit
    /// (the part size changed) is aborted and reads as gone.
    fn listed_parts(&self, key: &str, id: &str, size: u64) -> Step<Option<BTreeMap<u16, String>>> {
        let part_size = self.settings.part_size_for(size);
        let last = size.div_ceil(part_size);
        let mut parts = BTreeMap::new();
        let mut marker = 0u16;
        loop {
            let page = self.retried("ListParts", || {
                let mut action = self.bucket.list_parts(self.creds(), key, id);
                if marker > 0 {
                    action.set_part_number_marker(marker);
                }
                let url = action.sign(SIGNED_FOR);
                match check(self.agent.get(url.as_str()).call()) {
                    Ok((_, body)) => parse_list_parts(&body).map(Some),
                    Err(f) if f.status == Some(404) => Ok(None),
                    Err(f) => Err(f),
                }
            })?;
            let Some(page) = page else {
                return Ok(None);
            };
            for p in &page.parts {
                let n = u64::from(p.number);
                let want = match n == last {
                    true => size - (last - 1) * part_size,
                    false => part_size,
                };
                if n == 0 || n > last || p.size != want {
                    tracing::info!(
                        key,
                        upload = id,
                        "the parts of an earlier upload do not fit this part size; starting again"
                    );
                    self.abort(key, id)?;
                    return Ok(None);
                }
                parts.insert(p.number, p.etag.clone());
            }
            match page.next_marker {
                Some(m) if m > marker => marker = m,
                _ => return Ok(Some(parts)),
            }
        }
    }

    /// The ids of the multipart uploads open for exactly `key` (ListMultipartUploads, which
    /// rusty-s3 has no action for: a listing request re-aimed at `?uploads`).
    fn open_uploads(&self, key: &str) -> Step<Vec<String>> {
        self.retried("ListMultipartUploads", || {
            let mut action = self.bucket.list_objects_v2(self.creds());
            action.query_mut().remove("list-type");
            action.query_mut().remove("encoding-type");
            action.query_mut().insert("uploads", "");
            action.query_mut().insert("prefix", key);
            let url = action.sign(SIGNED_FOR);
            let (_, body) = check(self.agent.get(url.as_str()).call())?;
            Ok(body
                .split("<Upload>")
                .skip(1)
                .filter_map(|u| {
                    let k = xml_unescape(&tag(u, "Key")?);
                    let id = xml_unescape(&tag(u, "UploadId")?);
                    (k == key).then_some(id)
                })
                .collect())
        })
    }

    fn abort(&self, key: &str, id: &str) -> Step<()> {
        self.retried("AbortMultipartUpload", || self.abort_once(key, id))
    }

    fn abort_once(&self, key: &str, id: &str) -> Attempt<()> {
        let url = self
            .bucket
            .abort_multipart_upload(self.creds(), key, id)
            .sign(SIGNED_FOR);
        match check(self.agent.delete(url.as_str()).call()) {
            Err(f) if f.status == Some(404) => Ok(()), // Gone already.
            other => other.map(|_| ()),
        }
    }

    /// Runs `f` until it succeeds, fails for good, or has failed `attempts` times once the
    /// uploader is impatient (see [`Shared::impatient`]), waiting a jittered, doubling backoff
    /// (up to 10 s) between attempts. Each attempt holds one of the [`RequestSlots`]; the
    /// waits between them do not.
    fn retried<T>(&self, what: &str, mut f: impl FnMut() -> Attempt<T>) -> Step<T> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let result = {
                let _slot = self.slots.take();
                f()
            };
            match result {
                Ok(v) => {
                    let now = super::now_secs();
                    self.shared.stats.last_progress_unix.store(now, Relaxed);
                    return Ok(v);
                }
                Err(e)
                    if e.transient
                        && (attempt < self.settings.attempts || !self.shared.impatient()) =>
                {
                    match attempt < self.settings.attempts {
                        true => tracing::warn!(request = what, attempt, error = %e.why, "retrying"),
                        // The run goes on: the files wait for the store, staged.
                        false => {
                            tracing::warn!(request = what, attempt, error = %e.why, "the store is still unreachable; files wait staged, retrying")
                        }
                    }
                    self.shared.stats.retries.fetch_add(1, Relaxed);
                    std::thread::sleep(jitter(backoff));
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(e) => return Err(format!("{what}: {} (after {attempt} attempts)", e.why)),
            }
        }
    }
}

/// A run's identity in its keys: the UTC second it started and six hex digits of its id
/// (`20261204T153012Z-9c1e03`), readable and sorting by time.
pub(super) fn run_identity(run_id: &str) -> String {
    let micros = run_id
        .split('-')
        .next()
        .and_then(|h| i64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    // FNV-1a: the pid and microseconds of the id, folded.
    let hash = run_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!(
        "{}-{:06x}",
        crate::output::plan::compact_utc(micros),
        hash & 0xff_ffff
    )
}

/// `rel` (a staged file's path under the staging directory) with `run` before its name.
pub(super) fn keyed_name(rel: &Path, run: &str) -> PathBuf {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    rel.with_file_name(format!("{run}-{name}"))
}

/// One page of a ListParts answer.
struct PartsPage {
    parts: Vec<ListedPart>,
    /// Where the next page starts, when the list goes on.
    next_marker: Option<u16>,
}

/// A part as ListParts lists it.
struct ListedPart {
    number: u16,
    etag: String,
    size: u64,
}

/// Reads a ListParts answer. By hand, not with rusty-s3's reader: that one insists on the
/// root element AWS sends (`ListPartsResult`), and stores differ (moto's is
/// `ListPartsResponse`); the elements read here are the same in all.
fn parse_list_parts(body: &str) -> Attempt<PartsPage> {
    let unreadable = |what: &str| permanent(format!("unreadable ListParts answer: {what}"));
    let mut parts = Vec::new();
    for p in body.split("<Part>").skip(1) {
        let number = tag(p, "PartNumber").and_then(|n| n.trim().parse().ok());
        let size = tag(p, "Size").and_then(|n| n.trim().parse().ok());
        match (number, tag(p, "ETag"), size) {
            (Some(number), Some(etag), Some(size)) => parts.push(ListedPart {
                number,
                etag: xml_unescape(&etag),
                size,
            }),
            _ => return Err(unreadable("a part without its number, ETag or size")),
        }
    }
    let truncated = tag(body, "IsTruncated").is_some_and(|t| t.trim() == "true");
    let next_marker = match truncated {
        false => None,
        true => Some(
            tag(body, "NextPartNumberMarker")
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| unreadable("truncated without NextPartNumberMarker"))?,
        ),
    };
    Ok(PartsPage { parts, next_marker })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_body_is_its_range_of_the_staged_file_and_a_changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged.parquet");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let read = |start: u64, len: u64| {
            let mut out = Vec::new();
            StagedBytes::open(&path, 10_000, start, len)
                .map_err(|f| f.why)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        assert_eq!(read(0, 10_000), data);
        assert_eq!(read(4_096, 4_096), &data[4_096..8_192]);
        assert_eq!(read(8_192, 1_808), &data[8_192..]);
        // Not the size it was staged with: refused for good, naming both sizes.
        let refused = StagedBytes::open(&path, 12_000, 0, 12_000)
            .err()
            .expect("a size mismatch");
        assert!(!refused.transient, "{}", refused.why);
        assert!(
            refused.why.contains("10000 bytes, not the 12000"),
            "{}",
            refused.why
        );
        // Shrunk while being sent: an error, not an endless wait for the missing bytes.
        let mut body = StagedBytes::open(&path, 10_000, 0, 10_000)
            .map_err(|f| f.why)
            .unwrap();
        let mut first = [0u8; 1_000];
        body.read_exact(&mut first).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2_000)
            .unwrap();
        let mut rest = Vec::new();
        let e = body.read_to_end(&mut rest).expect_err("shrunk");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn list_parts_answers_read_whatever_their_root_element() {
        let body = "<?xml version=\"1.0\"?><ListPartsResponse xmlns=\"x\"><Bucket>b</Bucket>\
            <IsTruncated>true</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker>\
            <Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag><Size>65536</Size></Part>\
            <Part><PartNumber>2</PartNumber><ETag>\"e2\"</ETag><Size>10</Size></Part>\
            </ListPartsResponse>";
        let page = parse_list_parts(body).ok().unwrap();
        let got: Vec<(u16, &str, u64)> = page
            .parts
            .iter()
            .map(|p| (p.number, p.etag.as_str(), p.size))
            .collect();
        assert_eq!(got, [(1, "\"e1\"", 65536), (2, "\"e2\"", 10)]);
        assert_eq!(page.next_marker, Some(2));
        assert!(parse_list_parts("<Part><PartNumber>1</PartNumber></Part>").is_err());
    }

    #[test]
    fn a_run_identity_is_its_start_second_and_a_hash() {
        // 2026-12-04T15:30:12.5Z in µs, hex; pid 0x3039.
        let id = format!("{:x}-3039", 1_796_398_212_500_000u64);
        let r = run_identity(&id);
        assert!(r.starts_with("20261204T153012Z-"), "{r}");
        assert_eq!(r.len(), "20261204T153012Z-".len() + 6);
        assert_ne!(
            r,
            run_identity(&format!("{:x}-303a", 1_796_398_212_500_000u64))
        );
    }
}

//! [`S3Output`]: Parquet files to an S3-compatible object store, store-and-forward, each
//! record in exactly one object.
//!
//! The files are written exactly as [`LocalParquet`] writes them (rotation, partitions), into
//! a local staging directory; each finalized file is handed to the uploader threads
//! (`uploader.rs`, `output.s3.upload_concurrency` of them), one of which uploads it (one PUT when small, multipart when at least
//! `part_size`) and then removes the staged copy. Every step is recorded durably beside the
//! file first (`state.rs`), so a run killed at any instant is finished by the next one without
//! an object twice or a record lost. An object appears only when its PUT or its multipart
//! completion succeeds, so a reader of the prefix never sees a partial object. The staged
//! bytes are bounded by `staging_max_bytes`: past it the writer waits for the uploader
//! (back-pressure), it never discards a file.
//!
//! No async runtime: rusty-s3 signs each request as a presigned URL (SigV4, sans-I/O) and a
//! blocking ureq agent sends it. Transient failures (5xx, `SlowDown`, dropped connections,
//! timeouts) are retried with jittered exponential backoff; a refusal that cannot succeed
//! (403, 404) fails the run with the status and the store's message, keeping the staged files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use rusty_s3::{Bucket, UrlStyle};

use super::{Holds, LocalParquet, Output, OutputReport, S3Target};
use crate::error::{Error, Result};
use crate::metrics::live::{Registry, UploadStats};
use crate::s3::{agent, S3Settings};

mod state;
mod uploader;

use uploader::{run_identity, RequestSlots, Uploader};

/// A finalized file handed to the uploader.
struct Staged {
    path: PathBuf,
    size: u64,
    /// When it was handed over (seconds since the Unix epoch): the age of the oldest is a
    /// metric.
    since: u64,
    /// When it was handed over, for the time it waited (logged at debug).
    staged_at: Instant,
}

/// What the writer and the uploader share: the staged bytes, the uploader's failure, and the
/// counters the metrics read.
struct Shared {
    state: Mutex<SharedState>,
    changed: Condvar,
    stats: Arc<UploadStats>,
    /// Set once the run ends or is stopped: from then on `attempts` bounds every request
    /// (before, the store may be away as long as the staging bound lets the pipeline run).
    impatient: AtomicBool,
    /// The pipeline's stop flag (SIGTERM): makes the uploader impatient too.
    stop: Option<Arc<AtomicBool>>,
}

impl Shared {
    /// Whether a request that has used its attempts fails the run (at the end of the run, or
    /// once stopped) rather than being retried while files wait.
    fn impatient(&self) -> bool {
        self.impatient.load(Relaxed) || self.stop.as_ref().is_some_and(|s| s.load(Relaxed))
    }
}

#[derive(Default)]
struct SharedState {
    staged_bytes: u64,
    /// When each file waiting was handed over, oldest first (the uploaders take them in
    /// order, and may finish them out of it).
    waiting_since: std::collections::VecDeque<u64>,
    failed: Option<String>,
    /// Uploader threads still running.
    workers: usize,
    /// Every uploader thread has ended.
    done: bool,
}

impl Shared {
    /// Counts `file` as staged.
    fn stage(&self, file: &Staged) {
        let mut st = self.state.lock();
        st.staged_bytes += file.size;
        st.waiting_since.push_back(file.since);
        self.publish(&st);
    }

    /// Counts `file` as uploaded and gone from the staging directory.
    fn unstage(&self, file: &Staged) {
        let mut st = self.state.lock();
        st.staged_bytes = st.staged_bytes.saturating_sub(file.size);
        // Any entry of the same second will do: only the oldest is published.
        if let Some(i) = st.waiting_since.iter().position(|&s| s == file.since) {
            st.waiting_since.remove(i);
        }
        self.publish(&st);
    }

    fn publish(&self, st: &SharedState) {
        self.stats.staged_bytes.store(st.staged_bytes, Relaxed);
        self.stats
            .staged_files
            .store(st.waiting_since.len() as u64, Relaxed);
        let oldest = st.waiting_since.front().copied().unwrap_or(0);
        self.stats.oldest_staged_unix.store(oldest, Relaxed);
    }
}

/// [`LocalParquet`] into a staging directory, plus the uploader threads.
pub(crate) struct S3Output<'a> {
    inner: LocalParquet<'a>,
    staging: PathBuf,
    target: S3Target,
    max_bytes: u64,
    tx: Option<Sender<Staged>>,
    uploaders: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// This run's identity in the keys it gives its files.
    run: String,
}

impl<'a> S3Output<'a> {
    /// Starts the uploader threads for files finalized under `staging`, whose keys carry
    /// `run_id` (the run's [`new_run_id`](crate::output::new_run_id)); its counters go to
    /// `registry`. With a `journal`, each uploaded file's state is kept as the journal's
    /// record of it. Until the run ends or `stop` is set, a store that stays away past a
    /// request's attempts is waited for (files stay staged, the staging bound slows the
    /// pipeline); after, it fails the run.
    pub(crate) fn new(
        inner: LocalParquet<'a>,
        staging: PathBuf,
        target: S3Target,
        run_id: &str,
        registry: &Registry,
        journal: bool,
        stop: Option<Arc<AtomicBool>>,
    ) -> Result<S3Output<'a>> {
        let settings = S3Settings::new(&target.config, |k| std::env::var(k).ok())?;
        let bucket = Bucket::new(
            settings.endpoint.clone(),
            if settings.path_style {
                UrlStyle::Path
            } else {
                UrlStyle::VirtualHost
            },
            target.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| Error::config("out", format!("bucket `{}`: {e}", target.bucket)))?;
        let agent = agent(&settings, &target.config)?;
        let stats = Arc::new(UploadStats::default());
        // (Whole seconds, at least one: the clock the check reads.)
        let stall = target.config.stall_after.as_secs().max(1);
        stats.stall_after_secs.store(stall, Relaxed);
        *registry.uploads.lock() = Some(Arc::clone(&stats));
        let concurrency = target.config.upload_concurrency.clamp(1, 64) as usize;
        let shared = Arc::new(Shared {
            state: Mutex::new(SharedState {
                workers: concurrency,
                ..SharedState::default()
            }),
            changed: Condvar::new(),
            stats,
            impatient: AtomicBool::new(false),
            stop,
        });
        let run = run_identity(run_id);
        let (tx, rx) = crossbeam_channel::unbounded();
        let up = Arc::new(Uploader {
            bucket,
            settings: settings.clone(),
            agent,
            staging: staging.clone(),
            target: target.clone(),
            run: run.clone(),
            keep_states: journal,
            shared: Arc::clone(&shared),
            concurrency,
            slots: RequestSlots::new(concurrency),
        });
        let mut uploaders = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let (up, rx) = (Arc::clone(&up), rx.clone());
            let spawned = std::thread::Builder::new()
                .name("pinflow-s3-upload".into())
                .spawn(move || up.run(rx))
                .map_err(|e| Error::Thread {
                    thread: "pinflow-s3-upload".into(),
                    why: e.to_string(),
                });
            match spawned {
                Ok(h) => uploaders.push(h),
                Err(e) => {
                    // Those started end once the queue closes (dropped with `tx` here).
                    shared.state.lock().failed = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        drop(rx);
        // Files an earlier run staged and did not finish uploading (the store was down, the
        // run failed or was killed) go first, under the keys their state files fixed then.
        state::sweep(&staging, journal);
        let mut left = Vec::new();
        staged_files(&staging, &mut left);
        left.sort();
        for path in left {
            if let Ok(meta) = std::fs::metadata(&path) {
                tracing::info!(file = %path.display(), "uploading a file an earlier run staged");
                let file = Staged {
                    path,
                    size: meta.len(),
                    since: now_secs(),
                    staged_at: Instant::now(),
                };
                shared.stage(&file);
                let _ = tx.send(file);
            }
        }
        Ok(S3Output {
            inner,
            staging,
            target,
            max_bytes: settings.staging_max_bytes,
            tx: Some(tx),
            uploaders,
            shared,
            run,
        })
    }

    /// Hands the files finalized since the last call to the uploader, then waits while the
    /// staged bytes are past the bound. Fails when the uploader has failed.
    fn ship(&mut self) -> Result<()> {
        for path in self.inner.take_finalized_paths() {
            let size = std::fs::metadata(&path)
                .map_err(|e| Error::output(&path, "stat the staged file", e))?
                .len();
            let file = Staged {
                path,
                size,
                since: now_secs(),
                staged_at: Instant::now(),
            };
            self.shared.stage(&file);
            if let Some(tx) = &self.tx {
                let _ = tx.send(file);
            }
        }
        let mut st = self.shared.state.lock();
        loop {
            if let Some(why) = &st.failed {
                return Err(self.failure(why));
            }
            if st.staged_bytes <= self.max_bytes || st.done {
                return Ok(());
            }
            // Back-pressure: the writer (and so the pipeline behind it) waits for uploads.
            self.shared
                .changed
                .wait_for(&mut st, Duration::from_millis(200));
        }
    }

    fn failure(&self, why: &str) -> Error {
        Error::output(
            &self.staging,
            "upload",
            format!(
                "s3://{}/{}: {why} (the staged files are kept)",
                self.target.bucket, self.target.prefix
            ),
        )
    }

    /// Closes the uploaders' queue and waits for them to upload everything staged, each
    /// request within its `attempts` now.
    fn drain(&mut self) -> Result<()> {
        self.shared.impatient.store(true, Relaxed);
        self.tx = None;
        let began = Instant::now();
        for h in self.uploaders.drain(..) {
            let _ = h.join();
        }
        // The end of the run's tail: what the uploads took after the last file was staged.
        tracing::debug!(took_ms = began.elapsed().as_millis() as u64, "uploads done");
        let st = self.shared.state.lock();
        match &st.failed {
            Some(why) => Err(self.failure(why)),
            None => Ok(()),
        }
    }
}

impl Output for S3Output<'_> {
    fn write(
        &mut self,
        rows: &arrow_array::RecordBatch,
        id: Option<u64>,
        holds: &mut Holds,
    ) -> Result<Vec<(usize, String)>> {
        let refused = self.inner.write(rows, id, holds)?;
        self.ship()?;
        Ok(refused)
    }

    fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }

    fn flush_aged(&mut self, holds: &mut Holds) -> Result<()> {
        self.inner.flush_aged(holds)?;
        self.ship()
    }

    fn checkpoint_due(&self) -> bool {
        self.inner.checkpoint_due()
    }

    fn kafka_messages(&mut self, messages: &crate::kafka::offsets::OffsetRanges) {
        self.inner.kafka_messages(messages)
    }

    fn finalize_all(&mut self, holds: &mut Holds) -> Result<()> {
        self.inner.finalize_all(holds)?;
        self.ship()
    }

    fn seal(&mut self) -> Result<Vec<(PathBuf, PathBuf)>> {
        self.inner.seal()
    }

    fn publish_sealed(&mut self, holds: &mut Holds) -> Result<()> {
        self.inner.publish_sealed(holds)?;
        self.ship()
    }

    fn discard_sealed(&mut self) {
        self.inner.discard_sealed()
    }

    fn keep_sealed(&mut self) {
        self.inner.keep_sealed()
    }

    fn finish(&mut self, holds: &mut Holds) -> Result<()> {
        // The end: a store still away must fail the run, not hold the last wait forever.
        self.shared.impatient.store(true, Relaxed);
        let began = Instant::now();
        self.inner.finish(holds)?;
        tracing::debug!(
            took_ms = began.elapsed().as_millis() as u64,
            "the last files are staged"
        );
        self.ship()?;
        self.drain()
    }

    fn abort(&mut self) {
        self.shared.impatient.store(true, Relaxed);
        self.inner.abort();
        // What was finalized is complete: it is still uploaded (or stays staged).
        let _ = self.ship();
        let _ = self.drain();
    }

    fn take_finalized(&mut self) -> u64 {
        self.inner.take_finalized()
    }

    fn report(&self) -> OutputReport {
        let mut r = self.inner.report();
        r.output = r.output.map(|p| {
            let rel = p.strip_prefix(&self.staging).unwrap_or(&p);
            PathBuf::from(format!(
                "s3://{}/{}",
                self.target.bucket,
                self.target.key(&uploader::keyed_name(rel, &self.run))
            ))
        });
        r
    }
}

impl Drop for S3Output<'_> {
    fn drop(&mut self) {
        self.shared.impatient.store(true, Relaxed);
        self.tx = None;
        for h in self.uploaders.drain(..) {
            let _ = h.join();
        }
    }
}

/// The finished Parquet files under `dir` (not the hidden temporaries of open files).
fn staged_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if p.is_dir() {
            staged_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_url_splits_into_bucket_and_prefix() {
        let t = S3Target::parse("s3://b/logs/x").unwrap().unwrap();
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("b", "logs/x/"));
        let t = S3Target::parse("s3://b").unwrap().unwrap();
        assert_eq!(t.prefix, "");
        assert_eq!(
            t.key(Path::new("d=1/part-00001.parquet")),
            "d=1/part-00001.parquet"
        );
        assert!(S3Target::parse("s3:///x").unwrap().is_err());
        assert!(S3Target::parse("/tmp/x").is_none());
    }
}

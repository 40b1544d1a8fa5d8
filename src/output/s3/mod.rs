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
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::{Holds, LocalParquet, Output, OutputReport, S3Target};
use crate::config::{S3Config, S3_MIN_PART_SIZE};
use crate::error::{Error, Result};
use crate::metrics::live::{Registry, UploadStats};

mod state;
mod uploader;

use uploader::{run_identity, RequestSlots, Uploader};

/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// The test knob that lowers the part minimum: its value becomes the part size, whatever
/// `output.s3.part_size` says (the variable moto's server reads to lower its own minimum).
pub const TEST_PART_SIZE_ENV: &str = "S3_UPLOAD_PART_MIN_SIZE";

/// The environment variables of the first object-storage release, now `[output.s3]` keys.
const RETIRED_VARIABLES: [(&str, &str); 5] = [
    ("S3_STAGING_DIR", "staging_dir"),
    ("S3_STAGING_MAX_BYTES", "staging_max_bytes"),
    ("S3_PART_SIZE", "part_size"),
    ("S3_ATTEMPTS", "attempts"),
    ("S3_PATH_STYLE", "path_style"),
];

/// Refuses the `S3_*` variables pinflow no longer reads, naming the key that replaced each:
/// ignoring one silently could stage files elsewhere, or in parts S3 refuses.
pub fn refuse_retired_variables(env: impl Fn(&str) -> Option<String>) -> Result<()> {
    for (var, key) in RETIRED_VARIABLES {
        if env(var).is_some() {
            return Err(Error::config(
                var,
                format!(
                    "is no longer read: set `{key}` in [output.s3], or {}",
                    crate::config::env_name(&format!("output.s3.{key}"))
                ),
            ));
        }
    }
    Ok(())
}

/// How to reach the store: `[output.s3]`, then the environment the way AWS tools read it.
#[derive(Clone)]
pub struct S3Settings {
    /// `output.s3.endpoint`, or `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`; default
    /// `https://s3.REGION.amazonaws.com`.
    pub endpoint: url::Url,
    /// `output.s3.region`, or `AWS_REGION`, `AWS_DEFAULT_REGION`; default `us-east-1`.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub credentials: Option<Credentials>,
    /// Path-style addressing (`endpoint/bucket/key`): when the endpoint is an IP address or
    /// `localhost`, or `output.s3.path_style`; virtual-host style otherwise.
    pub path_style: bool,
    /// The size of a multipart upload's parts, and the size from which a file is uploaded in
    /// parts (`output.s3.part_size`).
    pub part_size: u64,
    /// The most bytes staged before the writer waits (`output.s3.staging_max_bytes`).
    pub staging_max_bytes: u64,
    /// Attempts per request before a transient failure fails the run.
    pub attempts: u32,
}

impl std::fmt::Debug for S3Settings {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field("staging_max_bytes", &self.staging_max_bytes)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// The settings of `cfg`, the rest from `env` (a lookup such as `std::env::var`).
    pub fn new(cfg: &S3Config, env: impl Fn(&str) -> Option<String>) -> Result<S3Settings> {
        refuse_retired_variables(&env)?;
        let region = cfg
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let (endpoint, from) = match &cfg.endpoint {
            Some(e) => (e.clone(), "output.s3.endpoint"),
            None => match env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
                Some(e) => (e, "AWS_ENDPOINT_URL"),
                None => (
                    format!("https://s3.{region}.amazonaws.com"),
                    "output.s3.region",
                ),
            },
        };
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| Error::config(from, format!("`{endpoint}`: {e}")))?;
        let host_is_ip = matches!(
            endpoint.host(),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))
        ) || endpoint.host_str() == Some("localhost");
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => Some(match env("AWS_SESSION_TOKEN") {
                Some(t) => Credentials::new_with_token(k, s, t),
                None => Credentials::new(k, s),
            }),
            _ => None,
        };
        let mut part_size = cfg.part_size;
        if let Some(v) = env(TEST_PART_SIZE_ENV) {
            part_size = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::config(TEST_PART_SIZE_ENV, format!("`{v}` is not a size in bytes"))
            })?;
            tracing::warn!(
                part_size,
                "{TEST_PART_SIZE_ENV} is set (a test knob): parts of this size, below S3's minimum"
            );
        } else if part_size < S3_MIN_PART_SIZE {
            // The registry's check says the same; this is the library's own guard.
            return Err(Error::config(
                "output.s3.part_size",
                format!("must be at least {S3_MIN_PART_SIZE} (5 MiB, S3's smallest part), got {part_size}"),
            ));
        }
        Ok(S3Settings {
            endpoint,
            region,
            credentials,
            path_style: host_is_ip || cfg.path_style,
            part_size,
            staging_max_bytes: cfg.staging_max_bytes,
            attempts: cfg.attempts.clamp(1, 1000),
        })
    }

    /// The part size for a file of `size` bytes: `part_size`, or more when the file would
    /// need more than 10,000 parts.
    pub fn part_size_for(&self, size: u64) -> u64 {
        self.part_size.max(size.div_ceil(MAX_PARTS))
    }
}

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

/// The uploader's HTTP client: blocking ureq with the timeouts of docs/object-storage.md, and
/// for `https://` the TLS stack the fetcher has (see [`tls_config`]). Without the `tls`
/// feature an `https://` endpoint is refused here, before anything is staged.
fn agent(settings: &S3Settings, cfg: &S3Config) -> Result<ureq::Agent> {
    // Keep a connection for each request that may be under way at once.
    let idle = (cfg.upload_concurrency as usize).clamp(3, 64);
    let builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(idle)
        .max_idle_connections(idle.max(10))
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_global(Some(Duration::from_secs(600)))
        .user_agent(concat!("pinflow/", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "tls")]
    let builder = builder.tls_config(tls_config(cfg)?);
    #[cfg(not(feature = "tls"))]
    {
        let _ = cfg;
        if settings.endpoint.scheme() == "https" {
            return Err(Error::config(
                "output.s3.endpoint",
                "https:// object stores need the `tls` cargo feature; use an http:// endpoint",
            ));
        }
    }
    #[cfg(feature = "tls")]
    let _ = settings;
    Ok(builder.build().into())
}

/// rustls with the ring provider the fetcher uses, checking the store's certificate against
/// Mozilla's roots or the CAs of `output.s3.ca_file`.
#[cfg(feature = "tls")]
fn tls_config(cfg: &S3Config) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
    let roots = match &cfg.ca_file {
        None => RootCerts::WebPki,
        Some(path) => {
            let key = "output.s3.ca_file";
            let pem = std::fs::read(path)
                .map_err(|e| Error::config(key, format!("{}: {e}", path.display())))?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::config(
                    key,
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            RootCerts::new_with_certs(&certs)
        }
    };
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
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

    fn settings(cfg: &S3Config, vars: &[(&str, &str)]) -> Result<S3Settings> {
        S3Settings::new(cfg, |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

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

    #[test]
    fn parts_stay_within_ten_thousand() {
        let s = settings(&S3Config::default(), &[]).unwrap();
        assert_eq!(s.part_size_for(1 << 20), 8 << 20);
        let huge = 200u64 << 30;
        assert!(huge.div_ceil(s.part_size_for(huge)) <= MAX_PARTS);
    }

    #[test]
    fn parts_under_five_mib_are_refused_unless_the_test_knob_asks() {
        let small = S3Config {
            part_size: 1 << 20,
            ..S3Config::default()
        };
        let e = settings(&small, &[]).unwrap_err().to_string();
        assert!(
            e.contains("output.s3.part_size") && e.contains("5 MiB"),
            "{e}"
        );
        let s = settings(&small, &[(TEST_PART_SIZE_ENV, "65536")]).unwrap();
        assert_eq!(s.part_size, 65536);
    }

    #[test]
    fn the_retired_variables_are_refused_naming_their_keys() {
        let e = settings(&S3Config::default(), &[("S3_STAGING_DIR", "/x")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("S3_STAGING_DIR") && e.contains("PINFLOW_OUTPUT_S3_STAGING_DIR"),
            "{e}"
        );
    }

    #[test]
    fn the_table_wins_over_the_aws_variables_and_an_ip_endpoint_is_path_style() {
        let vars = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
        ];
        let s = settings(&S3Config::default(), &vars).unwrap();
        assert!(s.path_style);
        assert_eq!(s.region, "eu-west-1");
        assert!(!format!("{s:?}").contains("very-secret"));
        let cfg = S3Config {
            endpoint: Some("http://store.example:9000".into()),
            region: Some("ap-south-1".into()),
            ..S3Config::default()
        };
        let s = settings(&cfg, &vars).unwrap();
        assert_eq!(s.endpoint.host_str(), Some("store.example"));
        assert_eq!(s.region, "ap-south-1");
        assert!(!s.path_style);
        let cfg = S3Config {
            path_style: true,
            ..cfg
        };
        assert!(settings(&cfg, &vars).unwrap().path_style);
    }
}

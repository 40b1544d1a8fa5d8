//! [`S3Output`]: Parquet files to an S3-compatible object store, store-and-forward.
//!
//! The files are written exactly as [`LocalParquet`] writes them (rotation, partitions), into
//! a local staging directory; each finalized file is handed to an uploader thread, which
//! uploads it (one PUT when small, multipart when at least `part_size`) and then removes the
//! staged copy. An object appears only when its PUT or its multipart completion succeeds, so
//! a reader of the prefix never sees a partial object. The staged bytes are bounded by
//! `staging_max_bytes`: past it the writer waits for the uploader (back-pressure), it never
//! discards a file.
//!
//! No async runtime: rusty-s3 signs each request as a presigned URL (SigV4, sans-I/O) and a
//! blocking ureq agent sends it. Transient failures (5xx, `SlowDown`, dropped connections,
//! timeouts) are retried with jittered exponential backoff; a refusal that cannot succeed
//! (403, 404) fails the run with the status and the store's message, keeping the staged files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{Holds, LocalParquet, Output, OutputReport, S3Target};
use crate::error::{Error, Result};

/// How long a signed URL stays valid: one request, retried within this.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// How to reach the store, from the environment the way AWS tools read it.
#[derive(Clone)]
pub struct S3Settings {
    /// `AWS_ENDPOINT_URL`, default `https://s3.REGION.amazonaws.com`.
    pub endpoint: url::Url,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), default `us-east-1`.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub credentials: Option<Credentials>,
    /// Path-style addressing (`endpoint/bucket/key`): when the endpoint is an IP address or
    /// `localhost`, or `S3_PATH_STYLE=1`; virtual-host style otherwise.
    pub path_style: bool,
    /// The size of a multipart upload's parts, and the size from which a file is uploaded in
    /// parts (`S3_PART_SIZE`, default 8 MiB).
    pub part_size: u64,
    /// The most bytes staged before the writer waits (`S3_STAGING_MAX_BYTES`,
    /// default 1 GiB).
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
    /// Reads the settings from `env` (a lookup such as `std::env::var`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<S3Settings> {
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| Error::config("AWS_ENDPOINT_URL", format!("`{endpoint}`: {e}")))?;
        let host_is_ip = matches!(
            endpoint.host(),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))
        ) || endpoint.host_str() == Some("localhost");
        let flag = |k: &str| env(k).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => Some(match env("AWS_SESSION_TOKEN") {
                Some(t) => Credentials::new_with_token(k, s, t),
                None => Credentials::new(k, s),
            }),
            _ => None,
        };
        let number = |k: &str, default: u64| -> Result<u64> {
            match env(k) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| Error::config(k, format!("`{v}` is not a whole number"))),
            }
        };
        Ok(S3Settings {
            endpoint,
            region,
            credentials,
            path_style: host_is_ip || flag("S3_PATH_STYLE"),
            part_size: number("S3_PART_SIZE", 8 * 1024 * 1024)?.max(1),
            staging_max_bytes: number("S3_STAGING_MAX_BYTES", 1 << 30)?,
            attempts: number("S3_ATTEMPTS", 8)?.clamp(1, 1000) as u32,
        })
    }

    /// The part size for a file of `size` bytes: `part_size`, or more when the file would
    /// need more than 10,000 parts.
    pub fn part_size_for(&self, size: u64) -> u64 {
        self.part_size.max(size.div_ceil(MAX_PARTS))
    }
}

/// What the writer and the uploader share: the staged bytes, and the uploader's failure.
#[derive(Default)]
struct Shared {
    state: Mutex<SharedState>,
    changed: Condvar,
}

#[derive(Default)]
struct SharedState {
    staged_bytes: u64,
    failed: Option<String>,
    done: bool,
}

/// [`LocalParquet`] into a staging directory, plus the uploader thread.
pub(crate) struct S3Output<'a> {
    inner: LocalParquet<'a>,
    staging: PathBuf,
    target: S3Target,
    max_bytes: u64,
    tx: Option<Sender<(PathBuf, u64)>>,
    uploader: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl<'a> S3Output<'a> {
    /// Starts the uploader thread for files finalized under `staging`.
    pub(crate) fn new(
        inner: LocalParquet<'a>,
        staging: PathBuf,
        target: S3Target,
        settings: S3Settings,
    ) -> Result<S3Output<'a>> {
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
        if settings.endpoint.scheme() == "https" {
            // ureq is built without TLS in pinflow; the mio loop's rustls is not wired here yet.
            return Err(Error::config(
                "AWS_ENDPOINT_URL",
                "https:// object stores are not supported yet; use an http:// endpoint",
            ));
        }
        let shared = Arc::new(Shared::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        let up = Uploader {
            bucket,
            settings: settings.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(10)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .timeout_global(Some(Duration::from_secs(600)))
                .user_agent(concat!("pinflow/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            staging: staging.clone(),
            target: target.clone(),
            shared: Arc::clone(&shared),
        };
        let uploader = std::thread::Builder::new()
            .name("pinflow-s3-upload".into())
            .spawn(move || up.run(rx))
            .map_err(|e| Error::Thread {
                thread: "pinflow-s3-upload".into(),
                why: e.to_string(),
            })?;
        // Files an earlier run staged and did not upload (the store was down, the run failed or
        // was killed) go first: their keys are their paths, the same as then.
        let mut left = Vec::new();
        staged_files(&staging, &mut left);
        left.sort();
        for path in left {
            if let Ok(meta) = std::fs::metadata(&path) {
                tracing::info!(file = %path.display(), "uploading a file an earlier run staged");
                shared.state.lock().staged_bytes += meta.len();
                let _ = tx.send((path, meta.len()));
            }
        }
        Ok(S3Output {
            inner,
            staging,
            target,
            max_bytes: settings.staging_max_bytes,
            tx: Some(tx),
            uploader: Some(uploader),
            shared,
        })
    }

    /// Hands the files finalized since the last call to the uploader, then waits while the
    /// staged bytes are past the bound. Fails when the uploader has failed.
    fn ship(&mut self) -> Result<()> {
        for path in self.inner.take_finalized_paths() {
            let size = std::fs::metadata(&path)
                .map_err(|e| Error::output(&path, "stat the staged file", e))?
                .len();
            self.shared.state.lock().staged_bytes += size;
            if let Some(tx) = &self.tx {
                let _ = tx.send((path, size));
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

    /// Closes the uploader's queue and waits for it to upload everything staged.
    fn drain(&mut self) -> Result<()> {
        self.tx = None;
        if let Some(h) = self.uploader.take() {
            let _ = h.join();
        }
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
        self.inner.finish(holds)?;
        self.ship()?;
        self.drain()
    }

    fn abort(&mut self) {
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
                self.target.key(rel)
            ))
        });
        r
    }
}

impl Drop for S3Output<'_> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.uploader.take() {
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

/// One request's failure: whether a retry may succeed, and what to say.
struct Failed {
    transient: bool,
    why: String,
}

type Attempt<T> = std::result::Result<T, Failed>;

/// The uploader thread's state.
struct Uploader {
    bucket: Bucket,
    settings: S3Settings,
    agent: ureq::Agent,
    staging: PathBuf,
    target: S3Target,
    shared: Arc<Shared>,
}

impl Uploader {
    fn run(self, rx: Receiver<(PathBuf, u64)>) {
        for (path, size) in rx {
            if self.shared.state.lock().failed.is_some() {
                continue; // Kept staged: the run has failed.
            }
            let rel = path.strip_prefix(&self.staging).unwrap_or(&path);
            let key = self.target.key(rel);
            match self.upload(&path, &key, size) {
                Ok(()) => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!(file = %path.display(), error = %e, "uploaded, but could not remove the staged copy");
                    }
                    tracing::debug!(key = %key, bytes = size, "uploaded");
                    let mut st = self.shared.state.lock();
                    st.staged_bytes = st.staged_bytes.saturating_sub(size);
                }
                Err(why) => {
                    tracing::error!(file = %path.display(), key = %key, error = %why, "upload failed; the file stays staged");
                    self.shared.state.lock().failed = Some(format!("{key}: {why}"));
                }
            }
            self.shared.changed.notify_all();
        }
        self.shared.state.lock().done = true;
        self.shared.changed.notify_all();
    }

    fn upload(&self, path: &Path, key: &str, size: u64) -> std::result::Result<(), String> {
        if size < self.settings.part_size {
            let body = std::fs::read(path).map_err(|e| format!("read the staged file: {e}"))?;
            return self.retried("PUT", || self.put(key, &body));
        }
        self.multipart(path, key, size)
    }

    fn creds(&self) -> Option<&Credentials> {
        self.settings.credentials.as_ref()
    }

    fn put(&self, key: &str, body: &[u8]) -> Attempt<()> {
        let url = self.bucket.put_object(self.creds(), key).sign(SIGNED_FOR);
        let resp = self.agent.put(url.as_str()).send(body);
        check(resp).map(|_| ())
    }

    fn multipart(&self, path: &Path, key: &str, size: u64) -> std::result::Result<(), String> {
        let upload_id = self.retried("CreateMultipartUpload", || {
            let url = self
                .bucket
                .create_multipart_upload(self.creds(), key)
                .sign(SIGNED_FOR);
            let (_, body) = check(self.agent.post(url.as_str()).send_empty())?;
            rusty_s3::actions::CreateMultipartUpload::parse_response(&body)
                .map(|r| r.upload_id().to_string())
                .map_err(|e| Failed {
                    transient: false,
                    why: format!("unreadable CreateMultipartUpload response: {e}"),
                })
        })?;
        let result = self.parts(path, key, size, &upload_id);
        if result.is_err() {
            // Nothing of a failed upload may linger (it is billed and never visible).
            let _ = self.retried("AbortMultipartUpload", || {
                let url = self
                    .bucket
                    .abort_multipart_upload(self.creds(), key, &upload_id)
                    .sign(SIGNED_FOR);
                check(self.agent.delete(url.as_str()).call()).map(|_| ())
            });
        }
        result
    }

    fn parts(
        &self,
        path: &Path,
        key: &str,
        size: u64,
        upload_id: &str,
    ) -> std::result::Result<(), String> {
        let part_size = self.settings.part_size_for(size);
        let mut file = std::fs::File::open(path).map_err(|e| format!("open: {e}"))?;
        let mut etags = Vec::new();
        let mut buf = Vec::new();
        for number in 1..=size.div_ceil(part_size) {
            buf.clear();
            (&mut file)
                .take(part_size)
                .read_to_end(&mut buf)
                .map_err(|e| format!("read the staged file: {e}"))?;
            let etag = self.retried("UploadPart", || {
                let url = self
                    .bucket
                    .upload_part(self.creds(), key, number as u16, upload_id)
                    .sign(SIGNED_FOR);
                let resp = self.agent.put(url.as_str()).send(&buf[..]);
                let (etag, _) = check(resp)?;
                etag.ok_or_else(|| Failed {
                    transient: true,
                    why: "UploadPart answered without an ETag".into(),
                })
            })?;
            etags.push(etag);
        }
        self.retried("CompleteMultipartUpload", || {
            let action = self.bucket.complete_multipart_upload(
                self.creds(),
                key,
                upload_id,
                etags.iter().map(String::as_str),
            );
            let url = action.sign(SIGNED_FOR);
            let body = action.body();
            let (_, text) = check(self.agent.post(url.as_str()).send(body.as_bytes()))?;
            // S3 may answer 200 with an error document once the completion has started.
            if text.contains("<Error>") {
                return Err(Failed {
                    transient: true,
                    why: format!("CompleteMultipartUpload: {}", error_text(&text)),
                });
            }
            Ok(())
        })
    }

    /// Runs `f` until it succeeds, fails for good, or has failed `attempts` times, waiting a
    /// jittered, doubling backoff between attempts.
    fn retried<T>(
        &self,
        what: &str,
        mut f: impl FnMut() -> Attempt<T>,
    ) -> std::result::Result<T, String> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if e.transient && attempt < self.settings.attempts => {
                    tracing::warn!(request = what, attempt, error = %e.why, "retrying");
                    std::thread::sleep(jitter(backoff));
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(e) => return Err(format!("{what}: {} (after {attempt} attempts)", e.why)),
            }
        }
    }
}

/// Between half and all of `d`: retries of many uploaders do not fall in step.
fn jitter(d: Duration) -> Duration {
    let nanos = Instant::now().elapsed().as_nanos() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos() as u64);
    let frac = 0.5 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(frac)
}

/// A response's ETag and body when it succeeded; otherwise whether a retry may help.
fn check(
    resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Attempt<(Option<String>, String)> {
    let mut resp = match resp {
        Ok(r) => r,
        // Connection refused or dropped, timeouts: the store may be back soon.
        Err(e) => {
            return Err(Failed {
                transient: true,
                why: e.to_string(),
            })
        }
    };
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| Failed {
            transient: true,
            why: format!("reading the response: {e}"),
        })?;
    if (200..300).contains(&status) {
        return Ok((etag, body));
    }
    Err(Failed {
        // 5xx (SlowDown is a 503), 408 and 429 may pass later; 403, 404 and the rest cannot.
        transient: status >= 500 || status == 408 || status == 429,
        why: format!("HTTP {status}: {}", error_text(&body)),
    })
}

/// The `Code` and `Message` of an S3 error document, or its start.
fn error_text(body: &str) -> String {
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find("</")?;
        Some(body[start..start + end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.chars().take(200).collect(),
    }
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

    #[test]
    fn parts_stay_within_ten_thousand() {
        let s = S3Settings::from_env(|_| None).unwrap();
        assert_eq!(s.part_size_for(1 << 20), 8 << 20);
        let huge = 200u64 << 30;
        assert!(huge.div_ceil(s.part_size_for(huge)) <= MAX_PARTS);
    }

    #[test]
    fn an_ip_endpoint_is_path_style_and_the_secret_is_not_printed() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("very-secret".to_string()),
            _ => None,
        };
        let s = S3Settings::from_env(env).unwrap();
        assert!(s.path_style);
        assert!(!format!("{s:?}").contains("very-secret"));
        let s = S3Settings::from_env(|_| None).unwrap();
        assert!(!s.path_style);
    }

    #[test]
    fn an_error_document_reads_as_code_and_message() {
        let body = "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>";
        assert_eq!(error_text(body), "SlowDown: Reduce your rate");
    }
}

//! `--out s3://BUCKET/PREFIX/` against a real S3-compatible server on loopback: moto's server
//! (tools/s3/requirements.txt, installed into target/moto-venv on first use). Objects are
//! listed and downloaded with boto3, an independent client, and every row is compared.
//! Outside CI a machine without Python or moto skips with the reason; with `CI_REQUIRE_MOTO=1`
//! (set by .ci/run) that is a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::common::{all_final_ids, pinflow_piped, skip_unless};

/// The moto venv's python, made on first use; `None` (and the reason printed) when it cannot be.
pub(crate) fn moto_python() -> Option<&'static Path> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    let py = PY.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join("target/moto-venv");
        let py = venv.join("bin/python");
        let works = |py: &Path| {
            Command::new(py)
                .args(["-c", "import moto, boto3"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if works(&py) {
            return Some(py);
        }
        let req = root.join("tools/s3/requirements.txt");
        eprintln!("creating {} with {}", venv.display(), req.display());
        let script = r#"set -e
python3 -m venv --clear "$1"
"$1/bin/python" -m pip install --quiet --disable-pip-version-check -r "$2""#;
        let made = Command::new("bash")
            .args(["-c", script, "venv"])
            .arg(&venv)
            .arg(&req)
            .output();
        match made {
            Ok(o) if o.status.success() && works(&py) => Some(py),
            Ok(o) => {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                None
            }
            Err(e) => {
                eprintln!("cannot run bash: {e}");
                None
            }
        }
    });
    py.as_deref()
}

/// A moto server on a free loopback port, stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    port: u16,
    py: &'static Path,
    /// The PEM file (certificate and key) it serves https:// with; `None`: http://.
    tls: Option<PathBuf>,
}

impl Moto {
    /// Starts one with `S3_UPLOAD_PART_MIN_SIZE` lowered to 64 KiB (small multipart parts),
    /// or `None` when moto is missing and not required.
    pub(crate) fn start(test: &str) -> Option<Moto> {
        Moto::start_with(test, None)
    }

    /// [`Moto::start`], serving https:// with `tls` (a PEM file of its certificate and key)
    /// when given.
    fn start_with(test: &str, tls: Option<PathBuf>) -> Option<Moto> {
        let py = moto_python();
        if skip_unless(py.is_some(), "CI_REQUIRE_MOTO", &format!("{test}: moto")) {
            return None;
        }
        let py = py.unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(py.parent().unwrap().join("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(pem) = &tls {
            cmd.arg("-c").arg(pem).arg("-k").arg(pem);
        }
        let child = cmd
            .env("S3_UPLOAD_PART_MIN_SIZE", "65536")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let m = Moto {
            child,
            port,
            py,
            tls,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(m)
    }

    pub(crate) fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Its port on 127.0.0.1 (for a proxy in front of it).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Runs a boto3 snippet with `s3` a client of this server; returns its stdout.
    pub(crate) fn boto(&self, code: &str, args: &[&str]) -> String {
        // The reader does not check an https:// moto's certificate: pinflow's check of it is
        // what a test is about.
        let store = BotoStore {
            py: self.py,
            endpoint: self.endpoint(),
            key: "test",
            secret: "test",
            verify_tls: self.tls.is_none(),
        };
        store.boto(code, args)
    }

    pub(crate) fn create_bucket(&self, bucket: &str) {
        self.boto("s3.create_bucket(Bucket=sys.argv[1])", &[bucket]);
    }

    /// Downloads every object under `prefix` into `dir` (keys as relative paths); returns the
    /// keys, sorted.
    pub(crate) fn download(&self, bucket: &str, prefix: &str, dir: &Path) -> Vec<String> {
        let out = self.boto(DOWNLOAD, &[bucket, prefix, dir.to_str().unwrap()]);
        out.lines().map(str::to_string).collect()
    }

    /// How many multipart uploads are open in `bucket` (started, neither completed nor aborted).
    fn open_uploads(&self, bucket: &str) -> usize {
        let out = self.boto(
            "print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get('Uploads', [])))",
            &[bucket],
        );
        out.trim().parse().unwrap()
    }
}

/// A boto3 snippet that downloads every object of bucket `argv[1]` under prefix `argv[2]`
/// into directory `argv[3]` (keys as relative paths) and prints the keys, sorted.
pub(crate) const DOWNLOAD: &str = "import os\n\
            b, p, d = sys.argv[1:4]\n\
            keys = []\n\
            for page in s3.get_paginator('list_objects_v2').paginate(Bucket=b, Prefix=p):\n\
            \x20   for o in page.get('Contents', []):\n\
            \x20       k = o['Key']; keys.append(k)\n\
            \x20       f = os.path.join(d, k); os.makedirs(os.path.dirname(f), exist_ok=True)\n\
            \x20       s3.download_file(b, k, f)\n\
            print('\\n'.join(sorted(keys)))";

/// An S3 store that boto3, the independent client, reaches at `endpoint` with these
/// credentials (`verify_tls`: whether it checks an https:// store's certificate).
pub(crate) struct BotoStore<'a> {
    pub(crate) py: &'a Path,
    pub(crate) endpoint: String,
    pub(crate) key: &'a str,
    pub(crate) secret: &'a str,
    pub(crate) verify_tls: bool,
}

impl BotoStore<'_> {
    /// Runs a boto3 snippet with `s3` a client of the store; returns its stdout.
    pub(crate) fn boto(&self, code: &str, args: &[&str]) -> String {
        let verify = match self.verify_tls {
            true => "True",
            false => "False\nimport urllib3; urllib3.disable_warnings()",
        };
        let script = format!(
            "import sys, boto3\nverify = {verify}\ns3 = boto3.client('s3', endpoint_url='{}', \
             verify=verify, aws_access_key_id='{}', aws_secret_access_key='{}', \
             region_name='us-east-1')\n{code}",
            self.endpoint, self.key, self.secret
        );
        let o = Command::new(self.py)
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` NDJSON records with ids 0..n, in `dir/in.ndjson`.
fn input(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("in.ndjson");
    let text: String = (0..n)
        .map(|i| format!("{{\"id\":{i},\"service\":\"svc-{}\",\"msg\":\"record number {i} of the s3 test\"}}\n", i % 3))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// `pinflow run --files INPUT --out URL EXTRA...` against `endpoint`, staging in `staging`.
fn command(endpoint: &str, input: &Path, url: &str, staging: &Path, extra: &[&str]) -> Command {
    let source = ["--files", input.to_str().unwrap()];
    command_from(&source, endpoint, url, staging, extra)
}

/// [`command`] reading `source` (`--files PATH`, `--tail PATH`).
fn command_from(
    source: &[&str],
    endpoint: &str,
    url: &str,
    staging: &Path,
    extra: &[&str],
) -> Command {
    let mut c = pinflow_piped();
    c.arg("run")
        .args(source)
        .args(["--out", url])
        .args(["--progress", "never"])
        .args(extra)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-never-logged")
        .env("AWS_REGION", "us-east-1")
        .env("PINFLOW_OUTPUT_S3_STAGING_DIR", staging)
        // Small parts (the test knob; S3's minimum is 5 MiB), so that a file of a few hundred
        // KiB goes up in several.
        .env("S3_UPLOAD_PART_MIN_SIZE", "65536")
        .env("PINFLOW_OUTPUT_S3_ATTEMPTS", "6");
    c
}

/// [`command`], run to its end.
fn run_to(endpoint: &str, input: &Path, url: &str, staging: &Path, extra: &[&str]) -> Output {
    command(endpoint, input, url, staging, extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_record_lands_once_in_objects_put_whole_or_in_parts() {
    let Some(moto) = Moto::start("s3 output") else {
        return;
    };
    moto.create_bucket("pinflow-test");
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 20_000;
    let input = input(dir.path(), N);
    let staging = dir.path().join("staging");
    // Rotated by rows: several files, some over the part size (multipart), one small tail
    // (a single PUT).
    let o = run_to(
        &moto.endpoint(),
        &input,
        "s3://pinflow-test/logs/run1/",
        &staging,
        &["--rotate-rows", "9000"],
    );
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    assert!(!stderr(&o).contains("test-secret-never-logged"));
    let got = dir.path().join("got");
    let keys = moto.download("pinflow-test", "logs/run1/", &got);
    assert_eq!(keys.len(), 3, "one object per rotated file: {keys:?}");
    assert!(keys.iter().all(|k| k.ends_with(".parquet")), "{keys:?}");
    let sizes: Vec<u64> = keys
        .iter()
        .map(|k| std::fs::metadata(got.join(k)).unwrap().len())
        .collect();
    assert!(
        sizes.iter().any(|&s| s >= 65536) && sizes.iter().any(|&s| s < 65536),
        "the run should exercise both multipart and a single PUT: {sizes:?}"
    );
    let ids = all_final_ids(&got.join("logs/run1"));
    assert_eq!(
        ids,
        (0..N as i64).collect::<Vec<_>>(),
        "every record exactly once"
    );
    assert_eq!(
        moto.open_uploads("pinflow-test"),
        0,
        "no multipart upload left open"
    );
    // Uploaded files leave the staging directory.
    assert!(
        crate::common::final_parquet_files(&staging).is_empty(),
        "staged copies are removed once uploaded"
    );
}

/// Whether `key` is `PREFIX/RUN-NAME`, RUN a run identity (`20261204T153012Z-9c1e03`).
pub(crate) fn keyed(key: &str, prefix: &str, name: &str) -> bool {
    let Some(run) = key
        .strip_prefix(prefix)
        .and_then(|k| k.strip_suffix(name))
        .and_then(|k| k.strip_suffix('-'))
    else {
        return false;
    };
    let (stamp, hash) = run.split_once('-').unwrap_or_default();
    stamp.len() == 16
        && stamp.ends_with('Z')
        && hash.len() == 6
        && hash.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn partitions_become_key_prefixes_and_a_rerun_adds_objects_beside_the_first_runs() {
    let Some(moto) = Moto::start("s3 partitions") else {
        return;
    };
    moto.create_bucket("pinflow-parts");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 3000);
    let staging = dir.path().join("staging");
    let run = || {
        let by = ["--partition-by", "service"];
        let o = run_to(
            &moto.endpoint(),
            &input,
            "s3://pinflow-parts/ds",
            &staging,
            &by,
        );
        assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    };
    run();
    let got = dir.path().join("got");
    let keys = moto.download("pinflow-parts", "ds/", &got);
    assert_eq!(keys.len(), 3, "{keys:?}");
    for (k, svc) in keys.iter().zip(0..) {
        let prefix = format!("ds/service=svc-{svc}/");
        assert!(keyed(k, &prefix, "part-00001.parquet"), "{k}");
    }
    assert_eq!(all_final_ids(&got), (0..3000).collect::<Vec<_>>());
    // The same command again: its files are part-00001 per partition too, but its objects
    // carry its own run identity, so none of the first run's is replaced.
    run();
    let again = dir.path().join("again");
    let all = moto.download("pinflow-parts", "ds/", &again);
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(keys.iter().all(|k| all.contains(k)), "{all:?}");
    let twice: Vec<i64> = (0..3000).flat_map(|i| [i, i]).collect();
    assert_eq!(
        all_final_ids(&again),
        twice,
        "each run's rows, once per run"
    );
}

#[test]
fn a_missing_bucket_fails_clearly_and_keeps_the_staged_file() {
    let Some(moto) = Moto::start("s3 missing bucket") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 500);
    let staging = dir.path().join("staging");
    let o = run_to(
        &moto.endpoint(),
        &input,
        "s3://no-such-bucket/x/",
        &staging,
        &[],
    );
    assert!(!o.status.success(), "a missing bucket must fail the run");
    let err = stderr(&o);
    assert!(err.contains("NoSuchBucket"), "{err}");
    assert!(err.contains("staged files are kept"), "{err}");
    assert_eq!(all_final_ids(&staging), (0..500).collect::<Vec<_>>());
}

/// A proxy in front of moto that answers the first `fail` requests with `503 SlowDown` (every
/// other one of them by dropping the connection instead), then forwards each request.
fn flaky_proxy(upstream: u16, fail: usize) -> (u16, Arc<AtomicUsize>) {
    proxy_with(
        upstream,
        fail,
        Duration::ZERO,
        Arc::default(),
        Arc::default(),
    )
}

/// [`flaky_proxy`] with no failures, holding each request for `delay` first (a slow uplink:
/// uploads take long enough for a kill to land in them).
fn proxy(upstream: u16, fail: usize, delay: Duration) -> (u16, Arc<AtomicUsize>) {
    proxy_with(upstream, fail, delay, Arc::default(), Arc::default())
}

/// The requests a proxy is forwarding (from the moment it has read one to the moment it has
/// answered it), and the most at once.
#[derive(Default)]
struct Load {
    active: AtomicUsize,
    peak: AtomicUsize,
}

/// The proxy: the first `fail` requests, and every request while `down` is set (the store is
/// away), fail (a `503 SlowDown`, or every other one a dropped connection); the rest are held
/// for `delay`, then forwarded, counted in `load`.
fn proxy_with(
    upstream: u16,
    fail: usize,
    delay: Duration,
    down: Arc<AtomicBool>,
    load: Arc<Load>,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    std::thread::spawn(move || {
        // Bounded: the test's requests, and at most a few thousand.
        for conn in listener.incoming().take(5000) {
            let Ok(mut conn) = conn else { continue };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let away = down.load(Ordering::SeqCst);
            let load = Arc::clone(&load);
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let Some(req) = read_request(&mut conn) else {
                    return;
                };
                if n < fail || away {
                    if n % 2 == 1 {
                        return; // Dropped without an answer.
                    }
                    let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                    let _ = write!(
                        conn,
                        "HTTP/1.1 503 Slow Down\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                let now = load.active.fetch_add(1, Ordering::SeqCst) + 1;
                load.peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(delay);
                let mut resp = Vec::new();
                if let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) {
                    if up.write_all(&req).is_ok() {
                        let _ = up.read_to_end(&mut resp);
                    }
                }
                // Counted out before the client has its answer: once it has, its next request
                // may arrive before this thread runs again, and would be counted on top.
                load.active.fetch_sub(1, Ordering::SeqCst);
                let _ = conn.write_all(&resp);
            });
        }
    });
    (port, seen)
}

/// One request, its headers rewritten to `Connection: close`, with its body.
pub(crate) fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut out = String::new();
    for l in head.trim_end().lines() {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut req = out.into_bytes();
    req.extend_from_slice(&buf[head_end..head_end + len]);
    Some(req)
}

#[test]
fn slowdown_and_dropped_connections_are_retried_until_the_upload_succeeds() {
    let Some(moto) = Moto::start("s3 faults") else {
        return;
    };
    moto.create_bucket("pinflow-faults");
    let (proxy, seen) = flaky_proxy(moto.port, 4);
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 2000);
    let staging = dir.path().join("staging");
    let o = run_to(
        &format!("http://127.0.0.1:{proxy}"),
        &input,
        "s3://pinflow-faults/f/",
        &staging,
        &[],
    );
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    assert!(seen.load(Ordering::SeqCst) > 4, "the faults were met");
    assert!(stderr(&o).contains("retrying"), "{}", stderr(&o));
    let got = dir.path().join("got");
    moto.download("pinflow-faults", "f/", &got);
    assert_eq!(all_final_ids(&got), (0..2000).collect::<Vec<_>>());
    assert_eq!(moto.open_uploads("pinflow-faults"), 0);
}

#[test]
fn files_staged_while_the_store_was_down_go_up_with_the_next_run() {
    let Some(moto) = Moto::start("s3 store down") else {
        return;
    };
    moto.create_bucket("pinflow-down");
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let input = input(dir.path(), 1500);
    // A port nothing listens on: the store is down for the whole first run.
    let down = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", down.local_addr().unwrap());
    drop(down);
    let rotated = ["--rotate-rows", "1000000"];
    // The staging bound passed by the last file: the end of the run must not wait for a store
    // that is away.
    let o = command(&dead, &input, "s3://pinflow-down/d/", &staging, &rotated)
        .env("PINFLOW_OUTPUT_S3_STAGING_MAX_BYTES", "1")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the upload cannot succeed");
    assert_eq!(all_final_ids(&staging), (0..1500).collect::<Vec<_>>());
    let staged = crate::common::final_parquet_files(&staging);
    let name = staged[0].file_name().unwrap().to_str().unwrap().to_string();
    // The store is back; the next run (with nothing new to read) uploads what was staged.
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    let o = run_to(
        &moto.endpoint(),
        &empty,
        "s3://pinflow-down/d/",
        &staging,
        &rotated,
    );
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    let got = dir.path().join("got");
    let keys = moto.download("pinflow-down", "d/", &got);
    // The staged file under a key of its own name (the second run adds its own file,
    // without rows: a run that reads nothing still writes the layout).
    assert!(keys.iter().any(|k| keyed(k, "d/", &name)), "{keys:?}");
    assert_eq!(all_final_ids(&got), (0..1500).collect::<Vec<_>>());
    assert!(crate::common::final_parquet_files(&staging).is_empty());
}

/// `n` NDJSON records with ids 0..n, each with 48 hex digits that do not compress, in
/// `dir/in.ndjson`: files of a few thousand rows are a few parts of 64 KiB.
pub(crate) fn incompressible_input(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("in.ndjson");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut text = String::new();
    for i in 0..n {
        let mut blob = String::new();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            blob.push_str(&format!("{x:016x}"));
        }
        text.push_str(&format!(
            "{{\"id\":{i},\"service\":\"svc\",\"msg\":\"{blob}\"}}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Files staged for upload, as a killed or failed run leaves them: `n` records with ids
/// 0..n in files of `rows` rows, a few 64 KiB parts each, under `dir/staging`.
pub(crate) struct StagedCase {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) staging: PathBuf,
    /// An empty input: the runs that upload have nothing new to read.
    pub(crate) empty: PathBuf,
    n: usize,
}

/// The flags of every run of a [`StagedCase`].
pub(crate) const ROTATED: [&str; 2] = ["--rotate-rows", "4000"];

impl StagedCase {
    /// Stages the files with a local run, which names them as the s3:// output does (it
    /// stages under `part.parquet` the same way): what comes next is uploads, no reading.
    pub(crate) fn new(n: usize) -> StagedCase {
        let dir = tempfile::tempdir().unwrap();
        let input = incompressible_input(dir.path(), n);
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let o = pinflow_piped()
            .args(["run", "--files", input.to_str().unwrap()])
            .args(["--progress", "never"])
            .args(["--out", staging.join("part.parquet").to_str().unwrap()])
            .args(ROTATED)
            .output()
            .unwrap();
        assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
        assert_eq!(all_final_ids(&staging), (0..n as i64).collect::<Vec<_>>());
        let empty = dir.path().join("empty.ndjson");
        std::fs::write(&empty, "").unwrap();
        StagedCase {
            dir,
            staging,
            empty,
            n,
        }
    }

    /// A run that uploads what is staged to `s3://BUCKET/k/` through `endpoint`.
    pub(crate) fn command(&self, endpoint: &str, bucket: &str) -> Command {
        let url = format!("s3://{bucket}/k/");
        command(endpoint, &self.empty, &url, &self.staging, &ROTATED)
    }

    /// Runs one to its end against `moto`, then checks every record is in exactly one object
    /// under the prefix (read back with boto3 and the Parquet reader), no multipart upload is
    /// open, and nothing is left staged: no file, no upload state. Returns the run's
    /// standard error.
    pub(crate) fn finish_and_check(&self, moto: &Moto, bucket: &str, context: &str) -> String {
        let o = self.command(&moto.endpoint(), bucket).output().unwrap();
        assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
        let got = self.dir.path().join("got");
        moto.download(bucket, "k/", &got);
        assert_eq!(
            all_final_ids(&got.join("k")),
            (0..self.n as i64).collect::<Vec<_>>(),
            "every record in exactly one object ({context})"
        );
        assert_eq!(
            moto.open_uploads(bucket),
            0,
            "no multipart upload left open ({context})"
        );
        assert!(crate::common::final_parquet_files(&self.staging).is_empty());
        let left: Vec<_> = walk(&self.staging)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".s3"))
            .collect();
        assert!(left.is_empty(), "upload states left: {left:?}");
        stderr(&o)
    }
}

/// moto with `bucket`, and a [`StagedCase`] of `n` records in at least `files` staged files
/// (`None` where moto is not installed).
fn moto_and_staged(test: &str, bucket: &str, n: usize, files: usize) -> Option<(Moto, StagedCase)> {
    let moto = Moto::start(test)?;
    moto.create_bucket(bucket);
    let case = StagedCase::new(n);
    let staged = crate::common::final_parquet_files(&case.staging).len();
    assert!(staged >= files, "several files to upload: {staged}");
    Some((moto, case))
}

#[test]
fn files_and_parts_go_up_side_by_side_never_more_requests_than_upload_concurrency() {
    let Some((moto, case)) = moto_and_staged("s3 concurrency", "pinflow-side", 12_000, 3) else {
        return;
    };
    // Each request held a while, so that those sent side by side are under way together.
    let load = Arc::new(Load::default());
    let delay = Duration::from_millis(100);
    let (port, _) = proxy_with(moto.port, 0, delay, Arc::default(), Arc::clone(&load));
    let o = case
        .command(&format!("http://127.0.0.1:{port}"), "pinflow-side")
        .env("PINFLOW_OUTPUT_S3_UPLOAD_CONCURRENCY", "3")
        .output()
        .unwrap();
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    let peak = load.peak.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&peak),
        "requests at once: {peak} (upload_concurrency 3)"
    );
    // Nothing left to upload: the rerun checks every record is in one object, no upload open.
    case.finish_and_check(&moto, "pinflow-side", "side by side");
}

#[test]
fn kill_9_at_random_instants_during_uploads_then_a_rerun_leaves_every_record_in_one_object() {
    let Some((moto, case)) = moto_and_staged("s3 kill -9", "pinflow-kill", 32_000, 6) else {
        return;
    };
    // Runs with nothing new to read upload them through a slow proxy, each killed (SIGKILL)
    // at a random instant; the seed is printed so a failure can be replayed.
    let (slow, _) = proxy(moto.port, 0, Duration::from_millis(50));
    let slow = format!("http://127.0.0.1:{slow}");
    let seed = std::env::var("S3_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                | 1
        });
    eprintln!("kill seed {seed} (S3_KILL_SEED replays it)");
    let mut x = seed;
    for round in 0..8 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(100 + (x >> 33) % 1200);
        let mut child = case
            .command(&slow, "pinflow-kill")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let _ = child.kill();
        let status = child.wait().unwrap();
        eprintln!("round {round}: killed after {after:?} ({status})");
    }
    // The last run is left to finish.
    case.finish_and_check(&moto, "pinflow-kill", &format!("seed {seed}"));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        match p.is_dir() {
            true => out.extend(walk(&p)),
            false => out.push(p),
        }
    }
    out
}

/// The status and body of `GET PATH` from the metrics endpoint on 127.0.0.1:`port`.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// A `/metrics` answer's samples of the `pinflow_s3_*` families, by name.
fn s3_metrics(addr: std::net::SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("pinflow_s3_"))
        .filter_map(|l| {
            let (name, v) = l.split_once(' ')?;
            Some((name.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_upload_metrics_count_what_the_store_holds() {
    let Some(moto) = Moto::start("s3 metrics") else {
        return;
    };
    moto.create_bucket("pinflow-metrics");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 5000);
    // The library: the endpoint outlives the run, so the final figures can be read. No
    // credentials (moto takes unsigned requests), part size the default: single PUTs.
    let mut cfg = pinflow::Config::new("s3://pinflow-metrics/m/");
    cfg.writer.rotate_rows = Some(2000);
    cfg.metrics.addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.output.s3.endpoint = Some(moto.endpoint());
    cfg.output.s3.staging_dir = Some(dir.path().join("staging"));
    let pipeline = pinflow::Pipeline::new(cfg).unwrap();
    let source = pinflow::Source::files(&[input.to_str().unwrap().to_string()]).unwrap();
    pipeline.run(source).expect("run succeeds");
    let m = s3_metrics(pipeline.metrics_addr().unwrap());
    let got = dir.path().join("got");
    let keys = moto.download("pinflow-metrics", "m/", &got);
    assert_eq!(keys.len(), 3, "{keys:?}");
    let bytes: u64 = keys
        .iter()
        .map(|k| std::fs::metadata(got.join(k)).unwrap().len())
        .sum();
    assert_eq!(m["pinflow_s3_uploaded_files_total"], 3.0, "{m:?}");
    assert_eq!(m["pinflow_s3_uploaded_bytes_total"], bytes as f64, "{m:?}");
    for drained in [
        "pinflow_s3_staged_files",
        "pinflow_s3_staged_bytes",
        "pinflow_s3_uploads_in_flight",
        "pinflow_s3_oldest_staged_age_seconds",
        "pinflow_s3_request_retries_total",
    ] {
        assert_eq!(m[drained], 0.0, "{drained}: {m:?}");
    }
    assert_eq!(all_final_ids(&got), (0..5000).collect::<Vec<_>>());
}

#[test]
fn with_a_journal_a_rerun_finds_its_uploaded_files_committed_and_adds_no_record_twice() {
    let Some(moto) = Moto::start("s3 journal") else {
        return;
    };
    moto.create_bucket("pinflow-journal");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 6000);
    for (prefix, extra) in [
        ("flat/", &["--rotate-rows", "2500"][..]),
        ("parts/", &["--partition-by", "service"][..]),
    ] {
        let staging = dir.path().join(prefix.trim_end_matches('/'));
        let url = format!("s3://pinflow-journal/{prefix}");
        let args: Vec<&str> = [&["--journal", "true"][..], extra].concat();
        for run in 1..=2 {
            let o = run_to(&moto.endpoint(), &input, &url, &staging, &args);
            assert!(o.status.success(), "{prefix} run {run}: {}", stderr(&o));
        }
        let got = dir.path().join("got").join(prefix);
        moto.download("pinflow-journal", prefix, &got);
        assert_eq!(
            all_final_ids(&got),
            (0..6000).collect::<Vec<_>>(),
            "{prefix}: every record once, the rerun skipping what the journal committed"
        );
        assert!(crate::common::final_parquet_files(&staging).is_empty());
    }
}

#[test]
fn with_a_journal_kill_9_while_reading_and_uploading_then_a_rerun_writes_every_record_once() {
    let Some(moto) = Moto::start("s3 journal kill -9") else {
        return;
    };
    moto.create_bucket("pinflow-jkill");
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 32_000;
    let input = incompressible_input(dir.path(), N);
    let staging = dir.path().join("staging");
    let url = "s3://pinflow-jkill/j/";
    let args = ["--journal", "true", "--rotate-rows", "4000"];
    let (slow, _) = proxy(moto.port, 0, Duration::from_millis(50));
    let slow = format!("http://127.0.0.1:{slow}");
    // The same command each time (the journal belongs to it), killed at instants spread over
    // the reading and the uploads (no seed needed: every instant must be safe).
    for (round, ms) in [150u64, 400, 700, 1000].into_iter().enumerate() {
        let mut child = command(&slow, &input, url, &staging, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        eprintln!("round {round}: killed after {ms} ms ({status})");
    }
    let o = run_to(&moto.endpoint(), &input, url, &staging, &args);
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    let got = dir.path().join("got");
    moto.download("pinflow-jkill", "j/", &got);
    assert_eq!(
        all_final_ids(&got),
        (0..N as i64).collect::<Vec<_>>(),
        "every record in exactly one object"
    );
    assert_eq!(moto.open_uploads("pinflow-jkill"), 0);
    assert!(crate::common::final_parquet_files(&staging).is_empty());
}

#[cfg(feature = "tls")]
#[test]
fn an_https_store_is_reached_through_rustls_checked_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::tls::Ca::new("pinflow s3 test CA");
    let (_, _, pem) = ca.issue(&["127.0.0.1"]);
    let server_pem = dir.path().join("moto.pem");
    std::fs::write(&server_pem, pem).unwrap();
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let Some(moto) = Moto::start_with("s3 https", Some(server_pem)) else {
        return;
    };
    moto.create_bucket("pinflow-tls");
    let input = input(dir.path(), 3000);
    let staging = dir.path().join("staging");
    let upload = || {
        command(
            &moto.endpoint(),
            &input,
            "s3://pinflow-tls/t/",
            &staging,
            &[],
        )
    };
    // Mozilla's roots do not know this CA: the certificate is refused, the file kept staged.
    let o = upload()
        .env("PINFLOW_OUTPUT_S3_ATTEMPTS", "1")
        .output()
        .unwrap();
    assert!(!o.status.success(), "an unknown issuer must be refused");
    let err = stderr(&o).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    // With the CA configured: uploaded (the staged file too), every row read back.
    let o = upload()
        .env("PINFLOW_OUTPUT_S3_CA_FILE", &ca_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    let got = dir.path().join("got");
    moto.download("pinflow-tls", "t/", &got);
    let once: Vec<i64> = (0..3000).collect();
    let twice: Vec<i64> = once.iter().flat_map(|&i| [i, i]).collect();
    // The first run's file (staged when its upload failed) and the second run's own.
    assert_eq!(all_final_ids(&got), twice);
}

#[test]
fn a_store_away_longer_than_the_attempts_is_waited_for_while_the_run_goes_on_not_ready() {
    let Some(moto) = Moto::start("s3 store away") else {
        return;
    };
    moto.create_bucket("pinflow-away");
    let down = Arc::new(AtomicBool::new(true));
    let (away, seen) = proxy_with(
        moto.port,
        0,
        Duration::ZERO,
        Arc::clone(&down),
        Arc::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let err_path = dir.path().join("stderr");
    let metrics = crate::common::free_port();
    // Following a log until stopped; two attempts per request, while the store is away; the
    // uploader called stuck after 1 s without a success.
    let child = command_from(
        &["--tail", log.to_str().unwrap()],
        &format!("http://127.0.0.1:{away}"),
        "s3://pinflow-away/a/",
        &staging,
        &["--rotate-rows", "1000", "--tail-poll-interval", "20ms"],
    )
    .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
    .args(["--s3-stall-after", "1s"])
    .env("PINFLOW_OUTPUT_S3_ATTEMPTS", "2")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&err_path).unwrap())
    .spawn()
    .unwrap();
    let mut child = crate::common::KillOnDrop(Some(child));
    let lines: String = (0..3000)
        .map(|i| format!("{{\"id\":{i},\"msg\":\"away {i}\"}}\n"))
        .collect();
    std::fs::write(&log, lines).unwrap();
    // Bounded waits: three files staged and far more requests refused than two attempts
    // allow, with the run still going.
    let waited = Instant::now();
    while crate::common::final_parquet_files(&staging).len() < 3 || seen.load(Ordering::SeqCst) < 6
    {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "nothing staged or refused"
        );
        assert!(
            child.running(),
            "the run ended while the store was away: {}",
            std::fs::read_to_string(&err_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.running(), "the run goes on");
    // Not ready while nothing goes up (bounded wait: a few seconds past `stall_after`).
    let waited = Instant::now();
    let (status, body) = loop {
        let (status, body) = http_get(metrics, "/readyz");
        if status == 503 || waited.elapsed() > Duration::from_secs(60) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503, "/readyz while the store is away: {body}");
    assert!(body.contains("uploader stuck"), "{body}");
    // The store is back: the waiting files go up without a new run, and it is ready again.
    down.store(false, Ordering::SeqCst);
    let waited = Instant::now();
    while !crate::common::final_parquet_files(&staging).is_empty() {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the files never went up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http_get(metrics, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let o = crate::common::sigterm_and_wait(child.0.take().unwrap());
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(o.status.success(), "pinflow failed: {err}");
    assert!(err.contains("files wait staged"), "{err}");
    let got = dir.path().join("got");
    moto.download("pinflow-away", "a/", &got);
    assert_eq!(all_final_ids(&got), (0..3000).collect::<Vec<_>>());
    assert_eq!(moto.open_uploads("pinflow-away"), 0);
}

#[test]
fn a_damaged_upload_state_stops_the_run_naming_it_and_keeps_the_file() {
    let Some(moto) = Moto::start("s3 damaged state") else {
        return;
    };
    moto.create_bucket("pinflow-damaged");
    let case = StagedCase::new(4000);
    let staged = crate::common::final_parquet_files(&case.staging);
    let name = staged[0].file_name().unwrap().to_str().unwrap().to_string();
    let state = case.staging.join(format!(".{name}.s3"));
    std::fs::write(&state, "key\tk/x.parquet\nuplod\tabc\n").unwrap();
    let o = case
        .command(&moto.endpoint(), "pinflow-damaged")
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a state that does not check out stops the run"
    );
    let err = stderr(&o);
    assert!(
        err.contains(&format!(".{name}.s3")) && err.contains("line 2"),
        "{err}"
    );
    assert!(staged[0].exists(), "the file stays staged");
}

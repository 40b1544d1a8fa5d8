//! pinflow's S3 requests against a store that checks their signatures: s3s-fs (an S3 server
//! over a local directory, from crates.io; `tools/s3/install-s3s-fs.sh` puts it in
//! target/s3s-fs/bin). moto, which the other S3 tests use, accepts any signature on a
//! presigned URL, and pinflow signs every request as one (rusty-s3); s3s-fs recomputes each
//! signature from the secret and refuses a wrong one with `SignatureDoesNotMatch`. It also
//! holds parts to S3's own minimum (5 MiB but the last), which moto is told to lower.
//! Objects are written and read back by boto3 (an independent client). Skips without the
//! binary or boto3 (target/moto-venv), unless `CI_REQUIRE_S3S_FS=1` (set by .ci/run, which
//! installs it).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{all_final_ids, final_parquet_files, pinflow_piped, skip_unless};
use crate::s3::{incompressible_input, moto_python, BotoStore, DOWNLOAD};

const KEY: &str = "pinflow-test";
/// The store's secret: every run is given it (or a wrong one), and must never show it.
const SECRET: &str = "s3s-secret-never-logged";

/// An s3s-fs server on a free loopback port over a directory of its own, checking signatures
/// made with [`KEY`] and [`SECRET`]; stopped when dropped.
struct S3sFs {
    child: Child,
    port: u16,
    py: &'static Path,
    _root: tempfile::TempDir,
}

impl S3sFs {
    /// Starts one, or `None` where s3s-fs or boto3 is missing and not required.
    fn start(test: &str) -> Option<S3sFs> {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/s3s-fs/bin/s3s-fs");
        let what = format!("{test}: s3s-fs (tools/s3/install-s3s-fs.sh) and boto3");
        let py = moto_python().filter(|_| bin.exists());
        if skip_unless(py.is_some(), "CI_REQUIRE_S3S_FS", &what) {
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let port = crate::common::free_port();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", KEY, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let store = S3sFs {
            child,
            port,
            py: py.unwrap(),
            _root: root,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "s3s-fs did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(store)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// boto3 with the right credentials.
    fn boto(&self, code: &str, args: &[&str]) -> String {
        let store = BotoStore {
            py: self.py,
            endpoint: self.endpoint(),
            key: KEY,
            secret: SECRET,
            verify_tls: true,
        };
        store.boto(code, args)
    }

    /// Every object under `prefix`, downloaded into `dir`: (key, size), sorted by key.
    fn download(&self, bucket: &str, prefix: &str, dir: &Path) -> Vec<(String, u64)> {
        let out = self.boto(DOWNLOAD, &[bucket, prefix, dir.to_str().unwrap()]);
        out.lines()
            .map(|k| (k.to_string(), std::fs::metadata(dir.join(k)).unwrap().len()))
            .collect()
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pinflow run --files SOURCE --out OUT EXTRA...` against `store`, signing with `secret`.
fn pinflow(store: &S3sFs, secret: &str, source: &str, out: &str, extra: &[&str]) -> Command {
    let mut c = pinflow_piped();
    c.args(["run", "--files", source, "--out", out])
        .args(["--progress", "never"])
        .args(extra)
        .env("AWS_ENDPOINT_URL", store.endpoint())
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("PINFLOW_OUTPUT_S3_ATTEMPTS", "3");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const MIB: u64 = 1 << 20;

#[test]
fn a_store_that_checks_signatures_takes_every_upload_and_read_pinflow_signs() {
    let Some(store) = S3sFs::start("s3 signed") else {
        return;
    };
    store.boto("s3.create_bucket(Bucket='signed')", &[]);
    let dir = tempfile::tempdir().unwrap();
    // About 7 MiB of Parquet in the first file (parts of S3's minimum, 5 MiB: two of them)
    // and a small second one (a single PUT).
    const N: usize = 150_000;
    let input = incompressible_input(dir.path(), N);
    let staging = dir.path().join("staging");
    let o = pinflow(
        &store,
        SECRET,
        input.to_str().unwrap(),
        "s3://signed/logs/",
        &["--rotate-rows", "140000", "--s3-part-size", "5MiB"],
    )
    .env("PINFLOW_OUTPUT_S3_STAGING_DIR", &staging)
    .output()
    .unwrap();
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    assert!(!stderr(&o).contains(SECRET), "the secret was logged");
    let got = dir.path().join("got");
    let objects = store.download("signed", "logs/", &got);
    assert_eq!(objects.len(), 2, "one object per rotated file: {objects:?}");
    let sizes: Vec<u64> = objects.iter().map(|(_, size)| *size).collect();
    assert!(
        sizes.iter().any(|&s| s > 5 * MIB) && sizes.iter().any(|&s| s < 5 * MIB),
        "one object in parts, one put whole: {sizes:?}"
    );
    assert_eq!(
        all_final_ids(&got.join("logs")),
        (0..N as i64).collect::<Vec<_>>(),
        "every record exactly once"
    );
    assert!(final_parquet_files(&staging).is_empty(), "all uploaded");

    // Reads: the listing and each ranged GET (4 KiB chunks: a few hundred requests) signed.
    let text: String = (0..3000)
        .map(|i| format!("{{\"id\":{i},\"msg\":\"line {i} of an object read back\"}}\n"))
        .collect();
    let (a, b) = text.split_at(text.find("{\"id\":1000,").unwrap());
    let bodies = dir.path().join("bodies");
    std::fs::create_dir_all(&bodies).unwrap();
    for (name, body) in [("a.ndjson", a), ("b.ndjson", b)] {
        std::fs::write(bodies.join(name), body).unwrap();
        store.boto(
            "s3.put_object(Bucket='signed', Key='in/' + sys.argv[1], Body=open(sys.argv[2], 'rb').read())",
            &[name, bodies.join(name).to_str().unwrap()],
        );
    }
    let read = dir.path().join("read");
    std::fs::create_dir_all(&read).unwrap();
    let out = read.join("out.parquet");
    let o = pinflow(
        &store,
        SECRET,
        "s3://signed/in/*.ndjson",
        out.to_str().unwrap(),
        &["--s3-read-chunk-bytes", "4KiB"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    assert_eq!(all_final_ids(&read), (0..3000).collect::<Vec<_>>());
}

#[test]
fn a_wrong_secret_is_refused_by_the_store_and_the_run_fails_naming_it_keeping_its_file() {
    let Some(store) = S3sFs::start("s3 signed, wrong secret") else {
        return;
    };
    store.boto("s3.create_bucket(Bucket='signed')", &[]);
    let dir = tempfile::tempdir().unwrap();
    let input = incompressible_input(dir.path(), 2000);
    let staging = dir.path().join("staging");
    const WRONG: &str = "not-the-secret-never-logged";
    let o = pinflow(
        &store,
        WRONG,
        input.to_str().unwrap(),
        "s3://signed/logs/",
        &[],
    )
    .env("PINFLOW_OUTPUT_S3_STAGING_DIR", &staging)
    .output()
    .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "a refused upload must fail the run");
    assert!(
        err.contains("403") && err.contains("SignatureDoesNotMatch"),
        "the store's reason: {err}"
    );
    assert!(!err.contains(WRONG), "the secret was logged: {err}");
    assert_eq!(
        all_final_ids(&staging),
        (0..2000).collect::<Vec<_>>(),
        "the file stays staged, whole"
    );
    let listed = store.boto(
        "print(len(s3.list_objects_v2(Bucket='signed').get('Contents', [])))",
        &[],
    );
    assert_eq!(listed.trim(), "0", "nothing reached the store");

    // A read signed with it is refused at the listing, naming the store's reason.
    let o = pinflow(
        &store,
        WRONG,
        "s3://signed/in/*.ndjson",
        dir.path().join("out.parquet").to_str().unwrap(),
        &[],
    )
    .output()
    .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "a refused listing must fail the run");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(!err.contains(WRONG), "the secret was logged: {err}");
}

//! `--files s3://BUCKET/PREFIX/*.ndjson` against moto's server on loopback: objects put there
//! with boto3 (an independent client), read by pinflow through ranged GETs into local Parquet
//! files, every record read back and compared. Skips like tests/it/s3.rs without moto, unless
//! `CI_REQUIRE_MOTO=1`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::Array;

use crate::common::{all_final_ids, final_parquet_files, pinflow_piped, read_parquet};
use crate::s3::{read_request, Moto};

/// The secret every run is given: it must never show in pinflow's output.
const SECRET: &str = "test-secret-never-logged";

/// Puts `objects` (key, NDJSON text) into `bucket`.
fn put(moto: &Moto, bucket: &str, objects: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    for (key, text) in objects {
        // Through a file: an argument holds at most 128 KiB.
        let body = dir.path().join("body");
        std::fs::write(&body, text).unwrap();
        moto.boto(
            "s3.put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=open(sys.argv[3], 'rb').read())",
            &[bucket, key, body.to_str().unwrap()],
        );
    }
}

/// A moto server (`None`: skipped, see [`Moto::start`]) with the bucket `lake` holding
/// `objects`.
fn lake(test: &str, objects: &[(&str, String)]) -> Option<Moto> {
    let moto = Moto::start(test)?;
    moto.create_bucket("lake");
    put(&moto, "lake", objects);
    Some(moto)
}

/// NDJSON records with the ids of `ids`, each line a different length (so that chunk
/// boundaries fall inside lines).
fn records(ids: std::ops::Range<i64>) -> String {
    ids.map(|i| {
        let pad = "x".repeat((i % 37) as usize);
        format!("{{\"id\":{i},\"msg\":\"record {i} {pad}\"}}\n")
    })
    .collect()
}

/// `pinflow run --files SPEC --out DIR/out.parquet EXTRA...` against `endpoint`.
fn command(endpoint: &str, spec: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut c = pinflow_piped();
    c.arg("run")
        .args(["--files", spec])
        .arg("--out")
        .arg(dir.join("out.parquet"))
        .args(["--progress", "never"])
        .args(extra)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1");
    c
}

fn run(endpoint: &str, spec: &str, dir: &Path, extra: &[&str]) -> Output {
    command(endpoint, spec, dir, extra).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `file` column (`source_file`) of every row under `dir`.
fn source_files(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for b in final_parquet_files(dir)
        .iter()
        .flat_map(|f| read_parquet(f))
    {
        let c = b.column_by_name("file").expect("the `file` column");
        let c = c.as_string::<i32>();
        names.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn objects_a_glob_names_are_read_in_ranged_chunks_every_record_once() {
    // Three objects the glob takes, one much bigger than the 4 KiB chunks (lines cross their
    // boundaries); a `.txt` beside them and an object one level down, which it does not.
    let Some(moto) = lake(
        "s3 reads",
        &[
            ("in/a.ndjson", records(0..100)),
            ("in/b.ndjson", records(100..5100)),
            ("in/c.ndjson", records(5100..5200)),
            ("in/notes.txt", records(9000..9010)),
            ("in/sub/d.ndjson", records(9100..9110)),
        ],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pinflow.toml");
    std::fs::write(
        &cfg,
        "[[transform]]\nset = { file = { meta = \"source_file\" } }\n",
    )
    .unwrap();
    let o = run(
        &moto.endpoint(),
        "s3://lake/in/*.ndjson",
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--s3-read-chunk-bytes",
            "4096",
        ],
    );
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    assert!(!stderr(&o).contains(SECRET));
    assert_eq!(
        all_final_ids(dir.path()),
        (0..5200).collect::<Vec<_>>(),
        "every record of the matching objects exactly once, none of the others"
    );
    assert_eq!(
        source_files(dir.path()),
        [
            "s3://lake/in/a.ndjson",
            "s3://lake/in/b.ndjson",
            "s3://lake/in/c.ndjson"
        ]
    );
}

#[test]
fn a_missing_bucket_or_object_fails_naming_it() {
    let Some(moto) = lake("s3 reads missing", &[("in/a.ndjson", records(0..10))]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &moto.endpoint(),
        "s3://no-such-bucket/in/*.ndjson",
        dir.path(),
        &[],
    );
    assert!(!o.status.success(), "a missing bucket must fail the run");
    let err = stderr(&o);
    assert!(
        err.contains("s3://no-such-bucket/in/") && err.contains("NoSuchBucket"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");
    let o = run(&moto.endpoint(), "s3://lake/in/zz*.ndjson", dir.path(), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no object matches"), "{}", stderr(&o));
    let o = run(&moto.endpoint(), "s3://lake/in/b.ndjson", dir.path(), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no such object"), "{}", stderr(&o));
}

/// A proxy in front of moto: each request is forwarded (rewritten to `Connection: close`) and
/// `answer` decides what goes back from the request and moto's answer (the connection closes
/// after it, mid-body when it is cut short).
fn proxy(upstream: u16, answer: impl Fn(&[u8], Vec<u8>) -> Vec<u8> + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Some(req) = read_request(&mut conn) else {
                continue;
            };
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let mut got = Vec::new();
            if up.write_all(&req).is_err() || up.read_to_end(&mut got).is_err() {
                continue;
            }
            let _ = conn.write_all(&answer(&req, got));
        }
    });
    port
}

/// [`proxy`] cutting the first `cut` object bodies (ranged GET answers, `206`) after half
/// their bytes; the count of those cut.
fn cutting_proxy(upstream: u16, cut: usize) -> (u16, Arc<AtomicUsize>) {
    let cuts = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&cuts);
    let port = proxy(upstream, move |_, answer| {
        let head_end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(answer.len(), |i| i + 4);
        let body = answer.len() - head_end;
        if answer.starts_with(b"HTTP/1.1 206") && body > 1 && count.load(Ordering::SeqCst) < cut {
            count.fetch_add(1, Ordering::SeqCst);
            return answer[..head_end + body / 2].to_vec();
        }
        answer
    });
    (port, cuts)
}

#[test]
fn a_connection_dropped_mid_object_is_read_again_from_the_byte_reached() {
    let Some(moto) = lake("s3 reads dropped", &[("in/big.ndjson", records(0..3000))]) else {
        return;
    };
    let (port, cuts) = cutting_proxy(moto.port(), 5);
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &format!("http://127.0.0.1:{port}"),
        "s3://lake/in/*.ndjson",
        dir.path(),
        &["--s3-read-chunk-bytes", "8192"],
    );
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    assert_eq!(cuts.load(Ordering::SeqCst), 5, "the proxy cut five bodies");
    assert!(
        stderr(&o).contains("reading again from the byte reached"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        all_final_ids(dir.path()),
        (0..3000).collect::<Vec<_>>(),
        "every record exactly once"
    );
}

#[test]
fn with_a_journal_a_rerun_skips_what_was_read_and_a_changed_object_is_not_resumed() {
    let Some(moto) = lake(
        "s3 reads journal",
        &[
            ("in/a.ndjson", records(0..500)),
            ("in/b.ndjson", records(500..1000)),
        ],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = ["--journal", "--s3-read-chunk-bytes", "4096"];
    let o = run(
        &moto.endpoint(),
        "s3://lake/in/*.ndjson",
        dir.path(),
        &journal,
    );
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    // The same objects: everything is in a committed checkpoint, nothing is read twice.
    let o = run(
        &moto.endpoint(),
        "s3://lake/in/*.ndjson",
        dir.path(),
        &journal,
    );
    assert!(o.status.success(), "pinflow failed: {}", stderr(&o));
    assert_eq!(all_final_ids(dir.path()), (0..1000).collect::<Vec<_>>());
    // One object changed (another ETag): the journal's positions are not its positions.
    put(&moto, "lake", &[("in/b.ndjson", records(2000..2600))]);
    let o = run(
        &moto.endpoint(),
        "s3://lake/in/*.ndjson",
        dir.path(),
        &journal,
    );
    assert!(!o.status.success(), "a changed object must not be resumed");
    let err = stderr(&o);
    assert!(err.contains("objects=2 objects"), "{err}");
    assert_eq!(all_final_ids(dir.path()), (0..1000).collect::<Vec<_>>());
}

#[test]
fn an_object_the_store_refuses_fails_naming_it_and_the_others_are_read() {
    let Some(moto) = lake(
        "s3 reads refused",
        &[
            ("in/a.ndjson", records(0..100)),
            ("in/b.ndjson", records(100..200)),
            ("in/c.ndjson", records(200..300)),
        ],
    ) else {
        return;
    };
    // Every GET of b is refused as a store without the permission would refuse it.
    let port = proxy(moto.port(), |req, answer| {
        if !req.starts_with(b"GET /lake/in/b.ndjson?") {
            return answer;
        }
        let body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &format!("http://127.0.0.1:{port}"),
        "s3://lake/in/*.ndjson",
        dir.path(),
        &[],
    );
    let err = stderr(&o);
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(
        all_final_ids(dir.path()),
        (0..100).chain(200..300).collect::<Vec<_>>(),
        "the objects read, each record once: {err}"
    );
    let dead = std::fs::read_to_string(dir.path().join("out.parquet.deadletter.ndjson")).unwrap();
    assert!(
        dead.contains("s3://lake/in/b.ndjson") && dead.contains("AccessDenied: Access Denied"),
        "{dead}"
    );
}

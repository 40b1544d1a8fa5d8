//! Compressed response bodies: asked for, decoded in the parse threads, and failing cleanly
//! when corrupt, oversized or in an encoding pinflow did not ask for.

use std::io::Write;

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

fn response(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn ndjson(ids: std::ops::Range<i64>) -> Vec<u8> {
    ids.map(|i| format!("{{\"id\":{i},\"values\":[1.0,{i}.5]}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn gzip_and_deflate_bodies_are_decoded_and_bad_ones_dead_lettered() {
    let gzip = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let zlib = |b: &[u8]| {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let (base, heads) = http_server(move |path, _| match path {
        "/gzip" => response("gzip", &gzip(&ndjson(0..100))),
        "/deflate" => response("deflate", &zlib(&ndjson(100..150))),
        "/plain" => response("identity", &ndjson(150..160)),
        "/corrupt" => response("gzip", b"\x1f\x8b\x08\x00garbage"),
        // 2 MB of zeros compresses to a few KB: over the 1 MB limit once decoded.
        "/bomb" => response("gzip", &gzip(&vec![b' '; 2 << 20])),
        _ => response("br", b"not brotli"),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("e.parquet"));
    cfg.fetch.max_body_bytes = 1 << 20;
    let urls = ["gzip", "deflate", "plain", "corrupt", "bomb", "brotli"]
        .iter()
        .map(|p| format!("{base}/{p}"))
        .collect();
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(urls))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.records_written, 160, "{summary}");
    let mut ids = ids(&cfg.out);
    ids.sort();
    assert_eq!(ids, (0..160).collect::<Vec<_>>());
    // The brotli answer fails its request; the corrupt and the oversized gzip are dead letters.
    assert_eq!(summary.fetch.failed, 1);
    assert_eq!(summary.records_dead_lettered, 2);
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    assert!(dead.contains("unsupported Content-Encoding `br`"), "{dead}");
    assert!(dead.contains("gzip body cannot be decoded"), "{dead}");
    assert!(
        dead.contains("decodes to more than 1048576 bytes"),
        "{dead}"
    );
    // And it asked for compression.
    assert!(heads
        .lock()
        .unwrap()
        .iter()
        .all(|h| h.contains("Accept-Encoding: gzip, deflate")));
}

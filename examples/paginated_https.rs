//! Drain a cursor-paginated HTTPS log API into Hive-partitioned Parquet.
//!
//! With no arguments it starts a small HTTPS API on 127.0.0.1 with a private CA made on the
//! spot (so it runs anywhere, offline) and reads it; with arguments it reads a real one:
//!
//! ```sh
//! cargo run --release --example paginated_https
//! cargo run --release --example paginated_https -- https://logs.example.com/v1/events?limit=500 \
//!     [CA_FILE.pem]
//! ```
//!
//! The API answers `{"data": [records...], "next_cursor": "..."}` and takes `?cursor=...`;
//! records have a `service` and an RFC 3339 `ts`, so the output is
//! `OUT/service=.../date=YYYY-MM-DD/part-NNNNN.parquet`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use pinflow::{Pipeline, Source};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let work = std::env::temp_dir().join(format!("pinflow-https-example-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let (url, ca_file) = match args.first() {
        Some(url) => (url.clone(), args.get(1).map(PathBuf::from)),
        None => {
            let (url, ca) = start_local_api(&work)?;
            println!("serving a paginated HTTPS API on {url}");
            (url, Some(ca))
        }
    };
    let out = work.join("events");
    let pipeline = Pipeline::builder()
        .out(&out)
        .configure(|c| {
            c.fetch.records_field = Some("data".into());
            c.fetch.cursor_field = Some("next_cursor".into());
            c.fetch.tls_ca_file = ca_file;
            c.writer.partition_by = vec!["service".into(), "date".into()];
        })
        .build()?;
    let summary = pipeline.run(Source::Urls(vec![url]))?;
    println!("{summary}");
    println!("partitioned Parquet under {}", out.display());
    Ok(())
}

/// Starts an HTTPS API with 20 pages of 100 records on a free loopback port; returns its first
/// page's URL and the PEM file of the CA that signed its certificate.
fn start_local_api(dir: &std::path::Path) -> Result<(String, PathBuf), Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca)?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem())?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )?,
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("https://{}/v1/events?limit=100", listener.local_addr()?);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        let body = page(&path);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Ok((url, ca_file))
}

/// Page `cursor` (0 without one) of the local API: 100 records, and the next cursor until 19.
fn page(path: &str) -> String {
    let cursor: u64 = path
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("cursor="))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let records: Vec<String> = (0..100)
        .map(|i| {
            let id = cursor * 100 + i;
            format!(
                r#"{{"id":{id},"service":"svc-{}","ts":"2026-11-{:02}T10:00:00Z","values":[{i},{},{}]}}"#,
                id % 3,
                20 + id % 5,
                i + 1,
                i * 2
            )
        })
        .collect();
    let next = if cursor < 19 {
        format!("\"{}\"", cursor + 1)
    } else {
        "null".into()
    };
    format!(r#"{{"data":[{}],"next_cursor":{next}}}"#, records.join(","))
}

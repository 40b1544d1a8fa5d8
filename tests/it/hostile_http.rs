//! Servers that try to take what is not theirs or to keep pinflow busy forever (issue 16):
//! redirects and next pages that lead to another origin must not carry credentials; a URL's
//! password never shows anywhere; a Link or cursor cycle stops at its first repeat; and
//! whatever a `Location` or `Link` says, the request line stays valid and goes to the right
//! host.

use std::process::Command;
use std::sync::Mutex;

use crate::common::*;
use pinflow::config::FetchEngine;
use pinflow::{Config, Pipeline, Source};

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn redirect(status: u16, location: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

/// A page whose `Link` header points to `next`.
fn page(body: &str, next: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nLink: <{next}>; rel=\"next\"\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The request target of every request head the server saw.
fn paths(heads: &Mutex<Vec<String>>) -> Vec<String> {
    let heads = heads.lock().unwrap();
    heads
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap_or("").to_string())
        .collect()
}

const TOKEN: &str = "T0KEN-for-A-only";
const KEY: &str = "K3Y-for-A-only";

#[test]
fn credentials_never_follow_a_redirect_or_next_page_to_another_origin() {
    for engine in [FetchEngine::Mio, FetchEngine::Ureq] {
        // B: another port, so another origin; it records what it is sent.
        let (b, b_heads) = http_server(|_, _| ok(r#"{"id":2}"#));
        let to_b = b.clone();
        let (a, a_heads) = http_server(move |path, _| match path {
            "/r301" => redirect(301, &format!("{to_b}/from-301")),
            "/r302" => redirect(302, &format!("{to_b}/from-302")),
            "/r307" => redirect(307, &format!("{to_b}/from-307")),
            // Same origin: the credentials stay.
            "/same" => redirect(302, "/kept"),
            "/link" => page(r#"{"id":1}"#, &format!("{to_b}/next-page")),
            _ => ok(r#"{"id":1}"#),
        });
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::new(dir.path().join("c.parquet"));
        cfg.fetch.engine = engine;
        cfg.fetch.headers = vec![
            format!("Authorization: Bearer {TOKEN}"),
            format!("X-Api-Key: {KEY}"),
        ];
        cfg.fetch.redirect_other_hosts = true;
        let mut urls: Vec<String> = ["r301", "r302", "r307", "same"]
            .iter()
            .map(|p| format!("{a}/{p}"))
            .collect();
        if engine == FetchEngine::Mio {
            // The ureq engine does not paginate.
            cfg.fetch.follow_link_next = true;
            urls.push(format!("{a}/link"));
        }
        // Three redirects and the next page go to B.
        let to_b = urls.len() - 1;
        let summary = Pipeline::new(cfg).unwrap().run(Source::Urls(urls)).unwrap();
        assert!(summary.ledger_balances(), "{engine:?}: {summary}");
        assert_eq!(summary.fetch.failed, 0, "{engine:?}: {summary}");
        let b_heads = b_heads.lock().unwrap().clone();
        let at_b: Vec<&str> = b_heads.iter().map(|h| h.lines().next().unwrap()).collect();
        assert_eq!(at_b.len(), to_b, "{engine:?}: {at_b:?}");
        for head in &b_heads {
            assert!(
                !head.contains(TOKEN) && !head.contains(KEY),
                "{engine:?}: another origin got the credentials:\n{head}"
            );
        }
        let a_heads = a_heads.lock().unwrap().clone();
        assert!(
            a_heads.iter().any(|h| h.starts_with("GET /kept ")),
            "{engine:?}: {a_heads:?}"
        );
        for head in &a_heads {
            for secret in [TOKEN, KEY] {
                assert!(
                    head.contains(secret),
                    "{engine:?}: A (the origin) must get `{secret}`:\n{head}"
                );
            }
        }
    }
}

#[cfg(feature = "tls")]
#[test]
fn credentials_sent_over_https_are_never_sent_in_clear_text_after_a_redirect() {
    use crate::tls::{https_server, Ca};
    let (plain, plain_heads) = http_server(|_, _| ok(r#"{"id":2}"#));
    let ca = Ca::new("pinflow test CA");
    let (secure, _) = https_server(&ca, &["127.0.0.1"], None);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("s.parquet"));
    cfg.fetch.tls_ca_file = Some(ca.write_pem(dir.path(), "ca.pem"));
    cfg.fetch.headers = vec![format!("Authorization: Bearer {TOKEN}")];
    cfg.fetch.redirect_other_hosts = true;
    let from_https = format!("{secure}/redirect?to={plain}/cleartext");
    let with_creds = from_https.replacen("https://", "https://alice:pw@", 1);
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::Urls(vec![from_https, with_creds]))
        .unwrap();
    assert_eq!(summary.records_written, 2, "{summary}");
    let heads = plain_heads.lock().unwrap();
    assert_eq!(heads.len(), 2);
    for head in heads.iter() {
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "credentials in clear text after https:\n{head}"
        );
    }
}

#[test]
fn a_url_password_is_sent_as_basic_auth_to_its_origin_only() {
    for engine in [FetchEngine::Mio, FetchEngine::Ureq] {
        let (b, b_heads) = http_server(|_, _| ok(r#"{"id":2}"#));
        let to_b = b.clone();
        let (a, a_heads) = http_server(move |path, _| match path {
            "/away" => redirect(302, &format!("{to_b}/x")),
            _ => ok(r#"{"id":1}"#),
        });
        let with_creds = |p: &str| a.replacen("http://", "http://alice:pa%40ss@", 1) + p;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::new(dir.path().join("b.parquet"));
        cfg.fetch.engine = engine;
        cfg.fetch.redirect_other_hosts = true;
        // The URL's own credentials replace a configured Authorization on its origin.
        cfg.fetch.headers = vec![format!("Authorization: Bearer {TOKEN}")];
        let urls = vec![with_creds("/here"), with_creds("/away")];
        let summary = Pipeline::new(cfg).unwrap().run(Source::Urls(urls)).unwrap();
        assert_eq!(summary.records_written, 2, "{engine:?}: {summary}");
        // alice:pa@ss, percent-decoded from the URL, in base64 (ureq writes names in lower case).
        let basic = "authorization: basic ywxpy2u6cgfac3m=";
        let a_heads = a_heads.lock().unwrap().clone();
        assert_eq!(a_heads.len(), 2, "{engine:?}");
        for head in &a_heads {
            let head = head.to_ascii_lowercase();
            let auth: Vec<&str> = head
                .lines()
                .filter(|l| l.starts_with("authorization"))
                .collect();
            assert_eq!(auth, [basic], "{engine:?}: exactly one, the URL's:\n{head}");
        }
        for head in b_heads.lock().unwrap().iter() {
            let head = head.to_ascii_lowercase();
            assert!(!head.contains("authorization"), "{engine:?}:\n{head}");
        }
    }
}

#[test]
fn a_link_cycle_stops_at_its_first_repeat_and_is_a_failed_request() {
    let (base, heads) = http_server(|path, _| match path {
        "/a" => page(r#"{"id":1}"#, "/b"),
        // Back to /a, written differently: the same page once resolved.
        "/b" => page(r#"{"id":2}"#, "./x/../a#top"),
        // A page that names itself.
        "/self" => page(r#"{"id":3}"#, "/self"),
        // A next page that redirects back to the first.
        "/c" => page(r#"{"id":4}"#, "/d"),
        "/d" => redirect(302, "/c"),
        _ => ok(r#"{"id":9}"#),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("l.parquet"));
    cfg.fetch.follow_link_next = true;
    cfg.fetch.max_link_pages = 100_000;
    let urls = vec![
        format!("{base}/a"),
        format!("{base}/self"),
        format!("{base}/c"),
    ];
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(urls))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    let mut seen = paths(&heads);
    seen.sort();
    seen.truncate(10);
    assert_eq!(seen, ["/a", "/b", "/c", "/d", "/self"], "each page once");
    let mut got = ids(&cfg.out);
    got.sort();
    assert_eq!(got, [1, 2, 3, 4], "the rows of each page once");
    assert_eq!(
        (summary.fetch.requests, summary.fetch.failed),
        (7, 3),
        "{summary}"
    );
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    for url in ["/a", "/self", "/d"] {
        assert!(
            dead.lines()
                .any(|l| l.contains(&format!("{base}{url}")) && l.contains("pagination cycle")),
            "{url}:\n{dead}"
        );
    }
}

#[test]
fn a_cursor_cycle_stops_at_its_first_repeat_and_is_a_failed_request() {
    let (base, heads) = http_server(|path, _| {
        // No cursor -> x -> y -> x again.
        let next = match path.split_once("cursor=").map(|(_, c)| c) {
            None => "x",
            Some("x") => "y",
            Some(_) => "x",
        };
        let id = match path.split_once("cursor=").map(|(_, c)| c) {
            None => 0,
            Some("x") => 1,
            Some(_) => 2,
        };
        ok(&format!(
            r#"{{"data":[{{"id":{id}}}],"meta":{{"next":"{next}"}}}}"#
        ))
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("c.parquet"));
    cfg.fetch.records_field = Some("data".into());
    cfg.fetch.cursor_field = Some("meta.next".into());
    cfg.fetch.max_link_pages = 100_000;
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(vec![format!("{base}/logs")]))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    let mut seen = paths(&heads);
    seen.truncate(10);
    assert_eq!(
        seen,
        ["/logs", "/logs?cursor=x", "/logs?cursor=y"],
        "each page once"
    );
    let mut got = ids(&cfg.out);
    got.sort();
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    assert!(
        dead.contains("pagination cycle") && dead.contains("/logs?cursor=x"),
        "{dead}"
    );
}

#[test]
fn redirect_and_link_targets_make_valid_request_lines_to_the_right_host() {
    for engine in [FetchEngine::Mio, FetchEngine::Ureq] {
        let (b, b_heads) = http_server(|_, _| ok(r#"{"id":2}"#));
        let b_authority = b.strip_prefix("http://").unwrap().to_string();
        let (a, a_heads) = http_server(move |path, _| match path {
            "/space" => redirect(302, "/a b/ü?x=1 2#frag"),
            "/net-path" => redirect(302, &format!("//{b_authority}/p")),
            "/dir/dots" => redirect(302, "x/../../up"),
            "/tab" => redirect(302, "/a\tb"),
            "/dir/link" => page(r#"{"id":3}"#, "next page ü"),
            _ => ok(r#"{"id":1}"#),
        });
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::new(dir.path().join("r.parquet"));
        cfg.fetch.engine = engine;
        cfg.fetch.redirect_other_hosts = true;
        let mut urls: Vec<String> = ["space", "net-path", "dir/dots", "tab"]
            .iter()
            .map(|p| format!("{a}/{p}"))
            .collect();
        if engine == FetchEngine::Mio {
            cfg.fetch.follow_link_next = true;
            urls.push(format!("{a}/dir/link"));
        }
        let summary = Pipeline::new(cfg.clone())
            .unwrap()
            .run(Source::Urls(urls))
            .unwrap();
        assert!(summary.ledger_balances(), "{engine:?}: {summary}");
        assert_eq!(summary.fetch.failed, 1, "{engine:?}: {summary}");
        let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
        assert!(
            dead.contains("/tab") && dead.contains("control character"),
            "{engine:?}: {dead}"
        );
        let a_lines: Vec<String> = a_heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.lines().next().unwrap().to_string())
            .collect();
        let b_lines: Vec<String> = b_heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.lines().next().unwrap().to_string())
            .collect();
        for line in a_lines.iter().chain(&b_lines) {
            assert!(
                line.is_ascii()
                    && !line.contains('\t')
                    && line.split(' ').count() == 3
                    && line.ends_with(" HTTP/1.1"),
                "{engine:?}: invalid request line `{line}`"
            );
        }
        let a_paths = paths(&a_heads);
        assert!(
            a_paths.contains(&"/a%20b/%C3%BC?x=1%202".to_string()),
            "{engine:?}: {a_paths:?}"
        );
        assert!(
            a_paths.contains(&"/up".to_string()),
            "{engine:?}: {a_paths:?}"
        );
        assert!(
            !a_paths.iter().any(|p| p.starts_with("//")),
            "{engine:?}: a network-path reference went to the wrong host: {a_paths:?}"
        );
        assert_eq!(b_lines, ["GET /p HTTP/1.1"], "{engine:?}");
        if engine == FetchEngine::Mio {
            assert!(
                a_paths.contains(&"/dir/next%20page%20%C3%BC".to_string()),
                "{a_paths:?}"
            );
        }
    }
}

/// Every byte the test can see of a run: stdout, stderr, and the files in `dir`.
fn everything(out: &std::process::Output, dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut all = vec![
        ("stdout".to_string(), out.stdout.clone()),
        ("stderr".to_string(), out.stderr.clone()),
    ];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            all.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    all
}

#[test]
fn a_url_password_never_reaches_logs_summaries_dead_letters_or_files() {
    const SECRET: &str = "s3cretPW";
    let (base, heads) = http_server(|path, _| match path {
        "/item/3" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/item/4" => redirect(302, &format!("http://mallory:{SECRET}@127.0.0.2:9/")),
        _ => ok(r#"{"id":1}"#),
    });
    let creds = base.replacen("http://", &format!("http://user:{SECRET}@"), 1);
    for engine in ["mio", "ureq"] {
        let dir = tempfile::tempdir().unwrap();
        // The list holds the password, of course: outside the directory searched for it.
        let inputs = tempfile::tempdir().unwrap();
        let list = inputs.path().join("urls.txt");
        std::fs::write(
            &list,
            format!("{creds}/item/5\nhttp://user:{SECRET}@127.0.0.1:99999/bad-port\n"),
        )
        .unwrap();
        // A template (it names the source in the files' metadata), a list whose bad line is
        // refused before the run (the message quotes the line), and one URL.
        let runs = [
            (format!("{creds}/item/{{1..4}}"), Some(3)),
            (list.display().to_string(), Some(1)),
            (format!("{creds}/not-a-template"), Some(0)),
        ];
        for (i, (urls, code)) in runs.into_iter().enumerate() {
            let out = dir.path().join(format!("run{i}.parquet"));
            let o = Command::new(env!("CARGO_BIN_EXE_pinflow"))
                .args(["run", "--urls", &urls, "--engine", engine])
                .args(["--log-format", "json", "--log-level", "debug"])
                .arg("--out")
                .arg(&out)
                .arg("--dead-letter")
                .arg(dir.path().join(format!("run{i}.dead.ndjson")))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), code, "{engine} run {i}: {stderr}");
            for (what, bytes) in everything(&o, dir.path()) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(SECRET),
                    "{engine} run {i}: the password is in {what}:\n{text}"
                );
            }
            if i == 0 {
                // The run did its work: rows written, failures dead-lettered, all redacted.
                assert_eq!(ids(&out).len(), 2, "{engine}: {stderr}");
                let dead = std::fs::read_to_string(dir.path().join("run0.dead.ndjson")).unwrap();
                assert!(dead.contains("user:***@"), "{dead}");
                let footer = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
                assert!(
                    footer.contains("/item/{1..4}"),
                    "pinflow.source is kept, redacted"
                );
            }
        }
    }
    // The server got the password, as basic auth (user:s3cretPW), and only in that header.
    let heads = heads.lock().unwrap();
    assert!(!heads.is_empty());
    for head in heads.iter() {
        assert!(
            head.lines().any(|l| {
                let (name, value) = l.split_once(": ").unwrap_or_default();
                name.eq_ignore_ascii_case("authorization") && value == "Basic dXNlcjpzM2NyZXRQVw=="
            }),
            "{head}"
        );
    }
}

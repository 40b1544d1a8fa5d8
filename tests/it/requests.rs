//! What pinflow sends: its User-Agent, the Accept-Encoding it decodes, and configured headers
//! whose secrets come from files, never from the command line.

use crate::common::*;
use pinflow::{Config, Pipeline, Source};

/// The path of every request the test server saw, in order.
fn request_paths(heads: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    heads
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap().to_string())
        .collect()
}

fn ok_response() -> Vec<u8> {
    let body = br#"{"id":1}"#;
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn configured_headers_are_sent_with_secrets_read_from_files() {
    let (base, heads) = http_server(|_, _| ok_response());
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, "t0ken-from-file\n").unwrap();
    let mut cfg = Config::new(dir.path().join("h.parquet"));
    cfg.fetch.headers = vec![
        format!("Authorization: Bearer ${{file:{}}}", secret.display()),
        "X-Tenant: edge-7".into(),
    ];
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::Urls(vec![format!("{base}/a")]))
        .unwrap();
    assert_eq!(summary.records_written, 1, "{summary}");
    let heads = heads.lock().unwrap();
    let head = &heads[0];
    for line in [
        "Authorization: Bearer t0ken-from-file",
        "X-Tenant: edge-7",
        concat!("User-Agent: pinflow/", env!("CARGO_PKG_VERSION")),
        "Accept-Encoding: gzip, deflate",
    ] {
        assert!(
            head.lines().any(|l| l == line),
            "`{line}` missing in:\n{head}"
        );
    }
}

#[test]
fn a_missing_secret_fails_the_run_before_any_request() {
    let (base, heads) = http_server(|_, _| ok_response());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("h.parquet"));
    cfg.fetch.headers = vec!["Authorization: Bearer ${file:/nonexistent/token}".into()];
    let err = Pipeline::new(cfg)
        .unwrap()
        .run(Source::Urls(vec![format!("{base}/a")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fetch.headers") && err.contains("/nonexistent/token"),
        "{err}"
    );
    assert!(heads.lock().unwrap().is_empty(), "no request was sent");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "and no file was created"
    );
}

fn redirect_to(location: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

#[test]
fn redirects_are_followed_on_the_same_host_within_a_limit() {
    let (base, heads) = http_server(|path, _| match path {
        "/old" => redirect_to("/new"),
        "/dir/rel" => redirect_to("target"),
        "/loop" => redirect_to("/loop"),
        "/away" => redirect_to("http://127.0.0.2:9/elsewhere"),
        "/nowhere" => b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n".to_vec(),
        _ => ok_response(),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("r.parquet"));
    cfg.fetch.max_redirects = 3;
    let urls = ["old", "dir/rel", "loop", "away", "nowhere"]
        .iter()
        .map(|p| format!("{base}/{p}"))
        .collect();
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(urls))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(
        (summary.fetch.delivered, summary.fetch.failed),
        (2, 3),
        "{summary}"
    );
    let paths = request_paths(&heads);
    assert!(paths.contains(&"/new".to_string()), "{paths:?}");
    assert!(paths.contains(&"/dir/target".to_string()), "{paths:?}");
    // The loop was followed three times after the first request, then given up.
    assert_eq!(
        paths.iter().filter(|p| *p == "/loop").count(),
        4,
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p == "/elsewhere"), "{paths:?}");
    let dead = std::fs::read_to_string(cfg.dead_letter_path()).unwrap();
    for (url, why) in [
        ("/loop", "more than 3 redirects"),
        ("/away", "redirect to another host refused"),
        ("/nowhere", "without a Location header"),
    ] {
        assert!(
            dead.lines().any(|l| l.contains(url) && l.contains(why)),
            "{url}: {why}\n{dead}"
        );
    }
}

#[test]
fn link_next_pagination_drains_an_api_from_one_start_url() {
    let (base, heads) = http_server(|path, _| {
        let page = |n: i64, next: Option<String>| {
            let body = format!("{{\"id\":{}}}\n{{\"id\":{}}}\n", n * 10, n * 10 + 1);
            let link = next.map_or(String::new(), |l| format!("Link: {l}\r\n"));
            format!(
                "HTTP/1.1 200 OK\r\n{link}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        match path.strip_prefix("/p/").and_then(|n| n.parse::<i64>().ok()) {
            // Pages 1..=4 point to the next one (relative, root-relative, with other links).
            Some(n) if n < 4 => page(
                n,
                Some(format!("</x>; rel=\"prev\", <{}>; rel=\"next\"", n + 1)),
            ),
            Some(4) => page(4, Some("</p/5>; rel=\"next\"".into())),
            Some(n) => page(n, None),
            // A loop: always "next" to itself.
            None if path == "/loop" => page(99, Some("</loop>; rel=next".into())),
            None => page(0, Some("<http://127.0.0.2:9/p/1>; rel=\"next\"".into())),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("p.parquet"));
    cfg.fetch.follow_link_next = true;
    cfg.fetch.max_link_pages = 3;
    let urls = vec![
        format!("{base}/p/1"),
        format!("{base}/loop"),
        format!("{base}/other-host"),
    ];
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(urls))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    // /p/1 → 2 → 3 (the limit of 3 pages stops it), /loop once (its next page, itself, is a
    // pagination cycle: a failed request), /other-host once.
    assert_eq!(summary.fetch.requests, 6, "{summary}");
    assert_eq!(summary.fetch.delivered, 5, "{summary}");
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    let paths = request_paths(&heads);
    for p in ["/p/1", "/p/2", "/p/3"] {
        assert_eq!(
            paths.iter().filter(|x| *x == p).count(),
            1,
            "{p}: {paths:?}"
        );
    }
    assert!(!paths.contains(&"/p/4".to_string()), "{paths:?}");
    assert_eq!(
        paths.iter().filter(|x| *x == "/loop").count(),
        1,
        "{paths:?}"
    );
    let mut got = ids(&cfg.out);
    got.sort();
    // Pages 1-3, /other-host (page "0"), and the loop's page 99 once.
    assert_eq!(got, [0, 1, 10, 11, 20, 21, 30, 31, 990, 991]);

    // Without the option, only the start URLs are fetched.
    let mut cfg = Config::new(dir.path().join("q.parquet"));
    cfg.fetch.follow_link_next = false;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::Urls(vec![format!("{base}/p/1")]))
        .unwrap();
    assert_eq!(summary.fetch.requests, 1);
}

/// A cursor-paginated API: `{"data": [...], "meta": {"next": CURSOR}}`, the cursor in the
/// `cursor` query parameter; `limit` must survive from page to page. It runs on the server's
/// threads, where a panic would not fail the test: it answers what it cannot read with a 400,
/// and the test checks the request log.
fn cursor_api(path: &str, _head: &str) -> Vec<u8> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let page = match param("cursor") {
        None => Some(0),
        Some(c) => c.strip_prefix("c%2F").and_then(|n| n.parse::<i64>().ok()),
    };
    let body = match route {
        // Five pages of two records, the cursor text needing percent-encoding; the last page
        // says `null`.
        "/logs" => {
            let Some(page) = page else {
                return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec();
            };
            let next = if page < 4 {
                format!("\"c/{}\"", page + 1)
            } else {
                "null".into()
            };
            format!(
                r#"{{"data":[{{"id":{}}},{{"id":{}}}],"meta":{{"next":{next}}}}}"#,
                page * 2 + 1,
                page * 2 + 2
            )
        }
        // Always the same cursor: a loop.
        "/loop" => r#"{"data":[{"id":100}],"meta":{"next":"same"}}"#.to_string(),
        // Not an envelope: dead-lettered, and the chain ends.
        "/broken" => "[1,2]".to_string(),
        // Records missing: an empty page; a numeric cursor leads on once.
        _ => format!(
            r#"{{"meta":{{"next":{}}}}}"#,
            if query.contains("cursor") {
                "null"
            } else {
                "7"
            }
        ),
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Every request the server saw kept the start URL's `limit=2`, once.
fn assert_limit_kept(paths: &[String]) {
    for p in paths {
        let query = p.split_once('?').map_or("", |(_, q)| q);
        let limits = query
            .split('&')
            .filter(|kv| kv.starts_with("limit="))
            .collect::<Vec<_>>();
        assert_eq!(limits, ["limit=2"], "{p} in {paths:?}");
    }
}

/// `inspect` reads no further than the first page of a cursor chain (no parse thread replies
/// with its cursor there): asked for more records than that page holds, it once waited for a
/// reply that never came, forever.
#[test]
fn inspect_of_a_cursor_paginated_api_ends_with_the_first_page() {
    let (base, _heads) = http_server(cursor_api);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("c.parquet"));
    cfg.fetch.records_field = Some("data".into());
    cfg.fetch.cursor_field = Some("meta.next".into());
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let seen = Pipeline::new(cfg)
            .unwrap()
            .inspect(Source::Urls(vec![format!("{base}/logs?limit=2")]), 50);
        let _ = done.send(seen.map(|i| (i.bodies, i.records)));
    });
    let seen = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("inspect of a cursor-paginated API did not end within a minute");
    assert_eq!(
        seen.unwrap(),
        (1, 2),
        "the first page: one body, two records"
    );
}

/// A parse thread that fails never replies with its page's cursor; the other parse thread
/// lives on (holding the reply channel), so the fetcher once waited for that reply forever.
/// A failed stage now stops the pipeline, and a stopping fetcher waits for replies no longer
/// than the shutdown timeout: the run ends, with the parse thread's error.
#[test]
fn a_parse_thread_failing_on_a_cursor_page_ends_the_run_with_its_error() {
    let (base, _heads) = http_server(cursor_api);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("c.parquet"));
    cfg.fetch.records_field = Some("data".into());
    cfg.fetch.cursor_field = Some("meta.next".into());
    cfg.fetch.shutdown_timeout = std::time::Duration::from_secs(1);
    // Statistics of a column the records lack: the layout inferred from the first page
    // cannot be built, and the parse thread that took it fails.
    cfg.schema.stats = Some(vec!["lat".into()]);
    cfg.threads.parse = Some(2);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let run = Pipeline::new(cfg)
            .unwrap()
            .run(Source::Urls(vec![format!("{base}/logs?limit=2")]));
        let _ = done.send(run.map(|s| s.to_string()).map_err(|e| e.to_string()));
    });
    let run = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the run did not end within a minute of a parse thread failing");
    let why = run.expect_err("the parse thread's failure is the run's");
    assert!(why.contains("lat"), "{why}");
}

#[test]
fn a_json_cursor_drains_a_paginated_api_from_one_start_url() {
    let (base, heads) = http_server(cursor_api);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("c.parquet"));
    cfg.fetch.records_field = Some("data".into());
    cfg.fetch.cursor_field = Some("meta.next".into());
    let summary = Pipeline::new(cfg.clone())
        .unwrap()
        .run(Source::Urls(vec![format!("{base}/logs?limit=2")]))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(
        (summary.fetch.requests, summary.fetch.failed),
        (5, 0),
        "{summary}"
    );
    let mut got = ids(summary.output.as_ref().unwrap());
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=10).collect::<Vec<_>>(),
        "every page's records once"
    );
    let paths = request_paths(&heads);
    assert_eq!(paths[0], "/logs?limit=2");
    assert_eq!(paths[1], "/logs?limit=2&cursor=c%2F1");
    assert_eq!(paths[4], "/logs?limit=2&cursor=c%2F4");
    assert_limit_kept(&paths);

    // A repeating cursor stops at once (a pagination cycle, a failed request); a non-envelope body is dead-lettered and ends its chain;
    // a page without records is fine.
    heads.lock().unwrap().clear();
    cfg.out = dir.path().join("d.parquet");
    cfg.fetch.max_link_pages = 10;
    let urls = ["loop", "broken", "empty"].map(|p| format!("{base}/{p}?limit=2"));
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::Urls(urls.to_vec()))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    let paths = request_paths(&heads);
    // loop: twice (the second page's cursor repeats); broken: once; empty: twice.
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert_limit_kept(&paths);
    assert_eq!(summary.fetch.failed, 1, "{summary}");
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("/empty")).count(),
        2,
        "{paths:?}"
    );
    assert_eq!(summary.records_written, 2, "{summary}");
    assert_eq!(
        summary.dead_by_reason.get("not an object"),
        Some(&1),
        "{summary}"
    );
}

//! Bad input never stops a run and is never lost: malformed and wrong-typed records, non-JSON
//! bodies, error statuses and dead hosts end up in the dead-letter file with URL and reason.

use crate::common::*;
use pinflow::sim::{SimConfig, Simulator};
use pinflow::{Config, Pipeline, Source};

#[test]
fn bad_records_bodies_and_statuses_are_dead_lettered_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        SimConfig::default()
            .route("/missing.json", 200, r#"{"id": 1, "service": "only-this"}"#)
            .route(
                "/wrong.json",
                200,
                "{\"id\": 2, \"latency_ms\": \"fast\"}\n{\"id\": 3, \"values\": [1, 2]}\n",
            )
            .route(
                "/html.json",
                200,
                "<html><body>502 Bad Gateway</body></html>",
            )
            .route("/truncated.json", 200, r#"{"id": 4, "values": [1, 2"#),
    )
    .unwrap();
    let urls = vec![
        sim.url("/missing.json"),
        sim.url("/wrong.json"),
        sim.url("/html.json"),
        sim.url("/truncated.json"),
        sim.url("/status/503"),
        sim.url("/status/404"),
        sim.url("/logs/10.json"),
    ];
    let out = dir.path().join("out.parquet");
    let summary = Pipeline::new(Config::new(&out))
        .unwrap()
        .run(Source::Urls(urls.clone()))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(
        (
            summary.fetch.requests,
            summary.fetch.delivered,
            summary.fetch.failed
        ),
        (7, 5, 2)
    );
    // A 503 is transient: retried up to max_attempts (3), so three 503 responses; a 404 is not.
    assert_eq!(summary.fetch.statuses.get(&503), Some(&3));
    assert_eq!(summary.fetch.retries, 2);
    assert_eq!(summary.fetch.statuses.get(&404), Some(&1));
    // Records: 1 (missing fields), 2 (wrong type), 3, html, truncated, 10.
    assert_eq!(
        (
            summary.records_parsed,
            summary.records_written,
            summary.records_dead_lettered
        ),
        (6, 3, 3)
    );

    let rows = read_parquet(&out);
    let total: usize = rows.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, 3);
    // The record with only two fields is kept, with nulls for the rest.
    let b = &rows[0];
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    let i = (0..b.num_rows())
        .find(|&i| ids.value(i) == 1)
        .expect("record 1 written");
    assert!(b.column_by_name("ts").unwrap().is_null(i));
    assert!(b.column_by_name("values").unwrap().is_null(i));
    assert!(b.column_by_name("values_variance").unwrap().is_null(i));

    let lines = ndjson_lines(&dir.path().join("out.parquet.deadletter.ndjson"));
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let find = |url: &str| {
        lines
            .iter()
            .find(|l| l.contains(url))
            .unwrap_or_else(|| panic!("no dead letter for {url}: {lines:#?}"))
            .clone()
    };
    let wrong = find(&urls[1]);
    assert!(
        wrong.contains("field `latency_ms`: expected a number, got a string"),
        "{wrong}"
    );
    assert!(
        wrong.contains(r#""kind":"record""#) && wrong.contains(r#"\"fast\""#),
        "{wrong}"
    );
    assert!(find(&urls[2]).contains("invalid JSON"));
    assert!(find(&urls[3]).contains("invalid JSON"));
    let s503 = find(&urls[4]);
    assert!(
        s503.contains(r#""kind":"request""#) && s503.contains("HTTP status 503"),
        "{s503}"
    );
    assert!(find(&urls[5]).contains("HTTP status 404"));
}

#[test]
fn dead_hosts_and_bad_urls_fail_with_reasons_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    // Port 1 on loopback: nothing listens there, connections are refused.
    let urls = vec![
        "http://127.0.0.1:1/logs/1.json".to_string(),
        "not a url".to_string(),
        sim.url("/logs/1.json"),
    ];
    let out = dir.path().join("out.parquet");
    let mut cfg = Config::new(&out);
    cfg.fetch.max_attempts = 3;
    let summary = Pipeline::new(cfg).unwrap().run(Source::Urls(urls)).unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!((summary.fetch.delivered, summary.fetch.failed), (1, 2));
    assert_eq!(
        summary.fetch.retries, 2,
        "two retries of the refused request"
    );
    assert_eq!(summary.fetch.failed_by_reason.get("connect"), Some(&1));
    assert_eq!(summary.fetch.failed_by_reason.get("invalid url"), Some(&1));
    let lines = ndjson_lines(&dir.path().join("out.parquet.deadletter.ndjson"));
    let refused = lines.iter().find(|l| l.contains("127.0.0.1:1")).unwrap();
    assert!(
        refused.contains("after 3 attempts") && refused.contains(r#""attempts":3"#),
        "{refused}"
    );
    assert_eq!(summary.records_written, 1);
}

#[test]
fn oversized_bodies_fail_that_request_only() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default().route("/huge.json", 200, vec![b' '; 100_000]))
        .unwrap();
    let mut cfg = Config::new(dir.path().join("out.parquet"));
    cfg.fetch.max_body_bytes = 50_000;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::Urls(vec![
            sim.url("/huge.json"),
            sim.url("/logs/3.json"),
        ]))
        .unwrap();
    assert_eq!(
        (summary.fetch.delivered, summary.fetch.failed),
        (1, 1),
        "{summary}"
    );
    assert_eq!(summary.fetch.failed_by_reason.get("too large"), Some(&1));
    assert_eq!(summary.records_written, 1);
}

#[test]
fn unwritable_output_is_an_error_naming_the_path() {
    let err = Pipeline::new(Config::new("/nonexistent-dir/deeper/out.parquet"))
        .unwrap()
        .run(Source::Urls(vec![]))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent-dir/deeper/") && msg.contains("create"),
        "{msg}"
    );
}

//! `[[enrich]]` lookups against a stub lookup server on loopback written here: it counts the
//! calls per key, adds latency, and answers 404, 429 (with Retry-After), 500 or an empty body on
//! the keys it is told to. Expected values are computed from the server's own map, never from
//! pinflow.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use pinflow::config::{EnrichConfig, FetchConfig};
use pinflow::enrich::Enricher;
use pinflow::stage::Transform;
use pinflow::{Config, Pipeline, Source};

use crate::common::{http_server, ndjson_lines, read_parquet};

/// What the stub answers for a key.
#[derive(Debug, Clone)]
enum Mode {
    /// 200 with the key's data.
    Ok,
    /// 404.
    NotFound,
    /// 200 with an empty body.
    Empty,
    /// 500.
    Fail,
    /// 429 with `Retry-After: secs`, this many times, then as `Ok`.
    TooMany { left: usize, secs: u32 },
}

/// A condition the stub's calls wait on.
type Gate = Arc<Mutex<Option<Box<dyn Fn() -> bool + Send>>>>;

/// The stub lookup server: `/services/{key}` answers `{"owner": {"team": T}, "tier": N}`.
struct Stub {
    base: String,
    calls: Arc<Mutex<HashMap<String, usize>>>,
    /// When each call for a key arrived.
    times: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    modes: Arc<Mutex<HashMap<String, Mode>>>,
    /// Calls wait while this returns false (checked every 5 ms, for at most 60 s).
    gate: Gate,
}

/// The data the stub serves: key → (team, tier).
fn data(key: &str) -> (String, i64) {
    let n: i64 = key.bytes().map(i64::from).sum();
    (format!("team-{}", n % 7), n % 5)
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

impl Stub {
    fn start(latency: Duration) -> Stub {
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let times: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
        let modes: Arc<Mutex<HashMap<String, Mode>>> = Arc::default();
        let gate: Gate = Arc::default();
        let (c, t, m, g) = (calls.clone(), times.clone(), modes.clone(), gate.clone());
        let (base, _) = http_server(move |path, _| {
            let key = decode(path.rsplit('/').next().unwrap_or(""));
            *c.lock().unwrap().entry(key.clone()).or_default() += 1;
            t.lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .push(Instant::now());
            let started = Instant::now();
            loop {
                let open = g.lock().unwrap().as_ref().is_none_or(|f| f());
                if open || started.elapsed() > Duration::from_secs(60) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(latency);
            let mode = m.lock().unwrap().get(&key).cloned().unwrap_or(Mode::Ok);
            let (status, extra, body) = match mode {
                Mode::Ok => {
                    let (team, tier) = data(&key);
                    let body = format!(r#"{{"owner": {{"team": "{team}"}}, "tier": {tier}}}"#);
                    ("200 OK", String::new(), body)
                }
                Mode::NotFound => ("404 Not Found", String::new(), "{}".into()),
                Mode::Empty => ("200 OK", String::new(), String::new()),
                Mode::Fail => ("500 Internal Server Error", String::new(), "oops".into()),
                Mode::TooMany { left, secs } => {
                    let next = match left {
                        0 | 1 => Mode::Ok,
                        n => Mode::TooMany { left: n - 1, secs },
                    };
                    m.lock().unwrap().insert(key.clone(), next);
                    (
                        "429 Too Many Requests",
                        format!("Retry-After: {secs}\r\n"),
                        String::new(),
                    )
                }
            };
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        Stub {
            base,
            calls,
            times,
            modes,
            gate,
        }
    }

    fn calls(&self, key: &str) -> usize {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn total_calls(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }

    fn set(&self, key: &str, mode: Mode) {
        self.modes.lock().unwrap().insert(key.into(), mode);
    }

    /// An `[[enrich]]` table against this stub.
    fn table(&self) -> EnrichConfig {
        EnrichConfig {
            url: Some(format!("{}/services/{{service}}", self.base)),
            fields: [("team", "owner.team"), ("tier", "tier")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            types: [("tier".to_string(), "int64".to_string())].into(),
            ttl: Duration::from_secs(3600),
            retries: 0,
            ..EnrichConfig::default()
        }
    }
}

fn enricher(cfg: &EnrichConfig) -> Enricher {
    Enricher::new(0, cfg, &FetchConfig::default()).expect("enricher starts")
}

/// A batch of rows with these `service` values (None: null) and ids 0..
fn batch(keys: &[Option<&str>]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("service", DataType::Utf8, true),
    ]);
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..keys.len() as i64));
    let services: ArrayRef = Arc::new(StringArray::from(keys.to_vec()));
    RecordBatch::try_new(Arc::new(schema), vec![ids, services]).unwrap()
}

fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let c = b
        .column_by_name(col)
        .unwrap_or_else(|| panic!("no column {col}"));
    let s = c.as_string::<i32>();
    (0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect()
}

fn ints(b: &RecordBatch, col: &str) -> Vec<Option<i64>> {
    let c = b.column_by_name(col).unwrap().as_primitive::<Int64Type>();
    (0..c.len())
        .map(|i| (!c.is_null(i)).then(|| c.value(i)))
        .collect()
}

/// Waits (up to 60 s, then fails) for `cond`.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn concurrent_misses_on_one_key_make_one_call() {
    let stub = Stub::start(Duration::ZERO);
    let e = Arc::new(enricher(&stub.table()));
    let stats = e.stats();
    const N: u64 = 8;
    // The server holds the first call until every other batch has joined it.
    let s2 = Arc::clone(&stats);
    *stub.gate.lock().unwrap() = Some(Box::new(move || s2.coalesced.load(Relaxed) >= N - 1));
    let threads: Vec<_> = (0..N)
        .map(|_| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || e.apply(batch(&[Some("api"), Some("api")])).unwrap())
        })
        .collect();
    for t in threads {
        let out = t.join().unwrap();
        assert_eq!(strings(&out, "team"), vec![Some(data("api").0); 2]);
    }
    assert_eq!(stub.calls("api"), 1);
    assert_eq!(stats.coalesced.load(Relaxed), N - 1);
    assert_eq!(stats.misses.load(Relaxed), N);
    // The same counts on /metrics, read with a Prometheus parser.
    let reg = pinflow::metrics::live::Registry::new(&[]);
    reg.enrichers.lock().push(stats);
    let text = pinflow::metrics::prometheus::render(&reg);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition text");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("enricher") == Some("enrich-0"))
            .map(|s| s.value.clone())
    };
    assert_eq!(
        value("pinflow_enrich_coalesced_total"),
        Some(prometheus_parse::Value::Counter((N - 1) as f64))
    );
    assert_eq!(
        value("pinflow_enrich_misses_total"),
        Some(prometheus_parse::Value::Counter(N as f64))
    );
    assert!(
        matches!(value("pinflow_enrich_lookup_duration_seconds"), Some(prometheus_parse::Value::Histogram(h)) if h.last().is_some_and(|b| b.count == 1.0)),
        "{text}"
    );
}

#[test]
fn calls_and_hits_follow_the_ttl() {
    let keys = [Some("a"), Some("b"), Some("a"), Some("c"), Some("b")];
    let distinct = 3;
    // A long ttl: one call per key, later batches are hits.
    let stub = Stub::start(Duration::ZERO);
    let e = enricher(&stub.table());
    for _ in 0..3 {
        e.apply(batch(&keys)).unwrap();
    }
    assert_eq!(stub.total_calls(), distinct);
    assert_eq!(e.stats().misses.load(Relaxed), distinct as u64);
    assert_eq!(e.stats().hits.load(Relaxed), 2 * distinct as u64);
    // A ttl that is over before the next batch (and nothing stale kept): a call every batch.
    let stub = Stub::start(Duration::ZERO);
    let mut cfg = stub.table();
    cfg.ttl = Duration::from_millis(1);
    cfg.max_stale = Duration::ZERO;
    let e = enricher(&cfg);
    for _ in 0..3 {
        e.apply(batch(&keys)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stub.total_calls(), 3 * distinct);
    assert_eq!(e.stats().hits.load(Relaxed), 0);
}

/// A stub and an enricher whose answers go stale at once (kept an hour), after one lookup of
/// `a`.
fn answered_then_stale() -> (Stub, Enricher) {
    let stub = Stub::start(Duration::ZERO);
    let mut cfg = stub.table();
    cfg.ttl = Duration::from_millis(1);
    cfg.max_stale = Duration::from_secs(3600);
    let e = enricher(&cfg);
    e.apply(batch(&[Some("a")])).unwrap();
    (stub, e)
}

#[test]
fn stale_answers_are_served_while_fetched_again() {
    let (stub, e) = answered_then_stale();
    std::thread::sleep(Duration::from_millis(20));
    let out = e.apply(batch(&[Some("a")])).unwrap();
    assert_eq!(strings(&out, "team"), vec![Some(data("a").0)]);
    assert_eq!(e.stats().stale_served.load(Relaxed), 1);
    // The stale answer went out at once; the fetch again happens behind it.
    wait_until("the revalidation call", || stub.calls("a") == 2);
}

#[test]
fn a_stale_answer_is_served_while_the_server_fails() {
    let (stub, e) = answered_then_stale();
    stub.set("a", Mode::Fail);
    for round in 1..=3 {
        std::thread::sleep(Duration::from_millis(20));
        let out = e.apply(batch(&[Some("a")])).unwrap();
        assert_eq!(
            strings(&out, "team"),
            vec![Some(data("a").0)],
            "round {round}"
        );
        assert_eq!(strings(&out, "_enrich_error"), vec![None], "round {round}");
        wait_until("the failing call", || stub.calls("a") > round);
    }
    wait_until("the errors counted", || {
        e.stats().errors.lock().get("status").copied() >= Some(2)
    });
}

#[test]
fn retry_after_on_429_is_honoured() {
    let stub = Stub::start(Duration::ZERO);
    stub.set("busy", Mode::TooMany { left: 2, secs: 1 });
    let mut cfg = stub.table();
    cfg.retries = 3;
    let e = enricher(&cfg);
    let out = e.apply(batch(&[Some("busy")])).unwrap();
    assert_eq!(strings(&out, "team"), vec![Some(data("busy").0)]);
    assert_eq!(stub.calls("busy"), 3);
    assert_eq!(e.stats().retries.load(Relaxed), 2);
    // Each retry waited at least the second the server asked for (a lower bound: it cannot
    // be met by chance, and a slow machine only makes the gap longer).
    let times = stub.times.lock().unwrap()["busy"].clone();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(950),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[test]
fn not_found_and_empty_answers_are_cached_as_no_value() {
    let stub = Stub::start(Duration::ZERO);
    stub.set("gone", Mode::NotFound);
    stub.set("blank", Mode::Empty);
    let e = enricher(&stub.table());
    for _ in 0..2 {
        let out = e
            .apply(batch(&[Some("gone"), Some("blank"), Some("ok")]))
            .unwrap();
        assert_eq!(strings(&out, "team"), vec![None, None, Some(data("ok").0)]);
        assert_eq!(ints(&out, "tier"), vec![None, None, Some(data("ok").1)]);
        // No value is not an error.
        assert_eq!(strings(&out, "_enrich_error"), vec![None, None, None]);
    }
    assert_eq!((stub.calls("gone"), stub.calls("blank")), (1, 1));
    assert_eq!(e.stats().negative_hits.load(Relaxed), 2);
}

#[test]
fn on_error_null_names_the_reason_per_row() {
    let stub = Stub::start(Duration::ZERO);
    stub.set("bad", Mode::Fail);
    let e = enricher(&stub.table());
    let out = e.apply(batch(&[Some("bad"), None, Some("ok")])).unwrap();
    assert_eq!(strings(&out, "team"), vec![None, None, Some(data("ok").0)]);
    let errors = strings(&out, "_enrich_error");
    assert!(
        errors[0].as_deref().unwrap().contains("HTTP 500"),
        "{errors:?}"
    );
    assert!(
        errors[1]
            .as_deref()
            .unwrap()
            .contains("field `service` is null"),
        "{errors:?}"
    );
    assert_eq!(errors[2], None);
    // A null key makes no call.
    assert_eq!(stub.total_calls(), 2);
}

#[test]
fn keys_are_percent_escaped_into_the_url() {
    let stub = Stub::start(Duration::ZERO);
    let e = enricher(&stub.table());
    let out = e.apply(batch(&[Some("a b/c?d")])).unwrap();
    assert_eq!(strings(&out, "team"), vec![Some(data("a b/c?d").0)]);
    assert_eq!(stub.calls("a b/c?d"), 1);
}

/// Writes `records` as NDJSON and runs a pipeline over it with `tables`.
fn run_file(
    dir: &std::path::Path,
    records: &[String],
    tables: Vec<EnrichConfig>,
) -> (pinflow::Result<pinflow::Summary>, std::path::PathBuf) {
    let input = dir.join("in.ndjson");
    std::fs::write(&input, records.join("\n") + "\n").unwrap();
    let out = dir.join("out.parquet");
    let mut cfg = Config::new(&out);
    cfg.schema.fields = vec!["id:int64".into(), "service:string".into()];
    cfg.writer.max_dead_letters = "100%".into();
    cfg.fetch.batch_max_bytes = 4096;
    cfg.enrich = tables;
    let p = Pipeline::new(cfg).unwrap();
    (
        p.run(Source::files(&[input.display().to_string()]).unwrap()),
        out,
    )
}

#[test]
fn every_row_matches_the_servers_data() {
    let stub = Stub::start(Duration::from_millis(1));
    let keys: Vec<String> = (0..40).map(|i| format!("svc-{i}")).collect();
    for k in keys.iter().take(5) {
        stub.set(k, Mode::NotFound);
    }
    // A simple LCG: reproducible records with repeated keys and some nulls.
    let mut x: u64 = 42;
    let mut expected: BTreeMap<i64, Option<String>> = BTreeMap::new();
    let records: Vec<String> = (0..3000i64)
        .map(|id| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = (x >> 33) as usize % (keys.len() + 3);
            match keys.get(pick) {
                Some(k) => {
                    expected.insert(id, Some(k.clone()));
                    format!(r#"{{"id": {id}, "service": "{k}"}}"#)
                }
                None => {
                    expected.insert(id, None);
                    format!(r#"{{"id": {id}, "service": null}}"#)
                }
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (summary, out) = run_file(dir.path(), &records, vec![stub.table()]);
    let summary = summary.unwrap();
    assert!(summary.ledger_balances());
    assert_eq!(summary.records_written, 3000);
    let mut seen = 0;
    for b in read_parquet(&out) {
        let ids = ints(&b, "id");
        let (teams, tiers, errors) = (
            strings(&b, "team"),
            ints(&b, "tier"),
            strings(&b, "_enrich_error"),
        );
        for i in 0..b.num_rows() {
            let id = ids[i].unwrap();
            let key = &expected[&id];
            let found = key.as_ref().filter(|k| !keys[..5].contains(k));
            assert_eq!(teams[i], found.map(|k| data(k).0), "id {id}");
            assert_eq!(tiers[i], found.map(|k| data(k).1), "id {id}");
            assert_eq!(
                errors[i].is_some(),
                key.is_none(),
                "id {id}: {:?}",
                errors[i]
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 3000);
    // Every distinct key was asked once (the ttl outlasts the run).
    assert!(keys.iter().all(|k| stub.calls(k) <= 1));
    assert_eq!(
        stub.total_calls(),
        expected
            .values()
            .flatten()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
}

#[test]
fn on_error_dead_letter_writes_failed_records_to_the_dead_letter_file() {
    let stub = Stub::start(Duration::ZERO);
    stub.set("bad", Mode::Fail);
    let mut t = stub.table();
    t.on_error = "dead-letter".into();
    let records: Vec<String> = (0..10)
        .map(|id| {
            let k = if id % 3 == 0 { "bad" } else { "ok" };
            format!(r#"{{"id": {id}, "service": "{k}"}}"#)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (summary, out) = run_file(dir.path(), &records, vec![t]);
    let summary = summary.unwrap();
    assert!(summary.ledger_balances());
    assert_eq!(
        (summary.records_written, summary.records_dead_lettered),
        (6, 4)
    );
    assert_eq!(summary.dead_by_reason.get("enrich failed"), Some(&4));
    let rows: usize = read_parquet(&out).iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 6);
    let dead = ndjson_lines(&dir.path().join("out.parquet.deadletter.ndjson"));
    assert_eq!(dead.len(), 4, "{dead:?}");
    assert!(dead.iter().all(|l| l.contains("HTTP 500")), "{dead:?}");
    // Each dead letter holds its row, and no enrichment column was written for it.
    assert!(
        dead.iter().all(|l| l.contains(r#"\"service\":\"bad\""#)),
        "{dead:?}"
    );
}

#[test]
fn on_error_fail_stops_the_run_naming_the_enricher() {
    let stub = Stub::start(Duration::ZERO);
    stub.set("bad", Mode::Fail);
    let mut t = stub.table();
    t.on_error = "fail".into();
    t.name = Some("teams".into());
    let records = vec![r#"{"id": 1, "service": "bad"}"#.to_string()];
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run_file(dir.path(), &records, vec![t]);
    let Err(err) = result.map(|s| s.records_written) else {
        panic!("the run did not fail");
    };
    let err = err.to_string();
    assert!(err.contains("teams") && err.contains("HTTP 500"), "{err}");
}

#[test]
fn a_static_csv_table_enriches_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("services.csv");
    std::fs::write(&csv, "service,team,tier\napi,core,1\nweb,front,2\n").unwrap();
    let cfg = EnrichConfig {
        table: Some(csv.clone()),
        key: Some("service".into()),
        fields: [("team", "team"), ("tier", "tier")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        types: [("tier".to_string(), "int64".to_string())].into(),
        ..EnrichConfig::default()
    };
    let e = enricher(&cfg);
    let out = e
        .apply(batch(&[Some("api"), Some("web"), Some("db")]))
        .unwrap();
    assert_eq!(
        strings(&out, "team"),
        vec![Some("core".into()), Some("front".into()), None]
    );
    assert_eq!(ints(&out, "tier"), vec![Some(1), Some(2), None]);
    std::fs::write(&csv, "service,team,tier\napi,platform,3\n").unwrap();
    assert_eq!(e.reload().unwrap(), 1);
    let out = e.apply(batch(&[Some("api"), Some("web")])).unwrap();
    assert_eq!(strings(&out, "team"), vec![Some("platform".into()), None]);
    // A bad file keeps the table in use.
    std::fs::write(&csv, "nothing,here\n1,2\n").unwrap();
    assert!(e.reload().is_err());
    let out = e.apply(batch(&[Some("api")])).unwrap();
    assert_eq!(strings(&out, "team"), vec![Some("platform".into())]);
}

#[test]
fn a_bad_enrich_table_fails_config_check_with_its_line() {
    let text = "out = \"x.parquet\"\n\n[[enrich]]\nurl = \"http://h/s/{service}\"\nfields = { team = \"owner.team\" }\n\n[[enrich]]\nurl = \"http://h/s/{}\"\nfields = { tier = \"tier\" }\ntypes = { tier = \"int32\" }\non_eror = \"null\"\n";
    let diags: Vec<String> = pinflow::config::check_toml("p.toml", text)
        .iter()
        .map(|d| d.to_string())
        .collect();
    let has = |s: &str| diags.iter().any(|d| d.contains(s));
    assert!(
        has("p.toml:11: enrich[1].on_eror: unknown key in [[enrich]]; did you mean `on_error`?"),
        "{diags:#?}"
    );
    assert!(has("p.toml:8: enrich[1].url:"), "{diags:#?}");
    assert!(has("p.toml:10: enrich[1].types: `int32`"), "{diags:#?}");
    // A key left out is reported at its table's header.
    let diags = pinflow::config::check_toml(
        "q.toml",
        "\n[[enrich]]\ntable = \"t.csv\"\nfields = { a = \"a\" }\n",
    );
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert!(
        diags[0]
            .to_string()
            .starts_with("q.toml:2: enrich[0].key: a `table` lookup needs `key`"),
        "{diags:#?}"
    );
    // A good table reads, with its position kept.
    let cfg = Config::from_toml(
        text.split("\n\n[[enrich]]\nurl = \"http://h/s/{}")
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg.enrich.len(), 1);
    assert_eq!(cfg.enrich[0].position.line, Some(3));
    let again = Config::from_toml(&cfg.to_toml().unwrap()).unwrap();
    assert_eq!(again, cfg);
}

#[cfg(feature = "cli")]
#[test]
fn sighup_reloads_the_lookup_table() {
    use crate::common::{pinflow_piped, sigterm_and_wait, wait_for_child};
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("services.csv");
    std::fs::write(&csv, "service,team\napi,before\n").unwrap();
    // A source that serves one record per poll, forever.
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = Arc::clone(&served);
    let (base, _) = http_server(move |_, _| {
        let n = s2.fetch_add(1, Relaxed);
        let body = format!(r#"{{"id": {n}, "service": "api"}}"#);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let conf = dir.path().join("p.toml");
    std::fs::write(
        &conf,
        format!(
            "out = {:?}\nsource = \"{base}/logs\"\nevery = \"50ms\"\n[schema]\nfields = [\"id:int64\", \"service:string\"]\n[[enrich]]\ntable = {:?}\nkey = \"service\"\nfields = {{ team = \"team\" }}\n",
            dir.path().join("enriched.parquet").display().to_string(),
            csv.display().to_string()
        ),
    )
    .unwrap();
    let mut child = pinflow_piped()
        .args(["run", "--config"])
        .arg(&conf)
        .spawn()
        .unwrap();
    wait_for_child(&mut child, "a few polls", || served.load(Relaxed) >= 3);
    std::fs::write(&csv, "service,team\napi,after\n").unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let at_hup = served.load(Relaxed);
    wait_for_child(&mut child, "polls after SIGHUP", || {
        served.load(Relaxed) >= at_hup + 5
    });
    let o = sigterm_and_wait(child);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut teams = BTreeMap::new();
    for f in crate::common::final_parquet_files(dir.path()) {
        for b in read_parquet(&f) {
            let (ids, t) = (ints(&b, "id"), strings(&b, "team"));
            for i in 0..b.num_rows() {
                teams.insert(ids[i].unwrap(), t[i].clone().unwrap());
            }
        }
    }
    // Before the signal the old table; after it (and the batch in flight) the new one.
    assert_eq!(teams.get(&0).map(String::as_str), Some("before"));
    let last = *teams.keys().last().unwrap();
    assert_eq!(teams[&last], "after", "{teams:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("lookup table reloaded"), "{stderr}");
}

#[test]
fn rate_limit_spaces_the_lookups() {
    let stub = Stub::start(Duration::ZERO);
    let mut cfg = stub.table();
    // Two a second, two saved up: the 3rd to 6th call wait for tokens.
    cfg.rate_limit = Some(2);
    let e = enricher(&cfg);
    let keys = ["k1", "k2", "k3", "k4", "k5", "k6"];
    let out = e
        .apply(batch(&keys.iter().map(|k| Some(*k)).collect::<Vec<_>>()))
        .unwrap();
    assert_eq!(strings(&out, "_enrich_error"), vec![None; 6]);
    let times = stub.times.lock().unwrap();
    let mut at: Vec<Instant> = keys.iter().map(|k| times[*k][0]).collect();
    at.sort();
    // A lower bound (four tokens earned at two a second), which a slow machine only lengthens.
    assert!(
        at[5] - at[0] >= Duration::from_millis(1900),
        "{:?}",
        at[5] - at[0]
    );
}

#[test]
fn a_static_parquet_table_enriches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("tier", DataType::Int64, true),
    ]));
    let rows = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["api", "web"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
        ],
    )
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None)
            .unwrap();
    w.write(&rows).unwrap();
    w.close().unwrap();
    let cfg = EnrichConfig {
        table: Some(path),
        key: Some("service".into()),
        fields: [("tier".to_string(), "tier".to_string())].into(),
        types: [("tier".to_string(), "int64".to_string())].into(),
        ..EnrichConfig::default()
    };
    let e = enricher(&cfg);
    let out = e
        .apply(batch(&[Some("web"), Some("api"), Some("db"), None]))
        .unwrap();
    assert_eq!(ints(&out, "tier"), vec![None, Some(1), None, None]);
    let errors = strings(&out, "_enrich_error");
    assert_eq!(errors[..3], [None, None, None]);
    assert!(
        errors[3].as_deref().unwrap().contains("is null"),
        "{errors:?}"
    );
}

#[cfg(feature = "tls")]
#[test]
fn https_lookups_use_the_fetchers_tls_settings_and_keep_connections() {
    use crate::tls::{https_server, Ca};
    let ca = Ca::new("pinflow enrich CA");
    let (base, handshakes) = https_server(&ca, &["localhost", "127.0.0.1"], None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = EnrichConfig {
        // The stub answers `{"id": N, "service": "tls"}` for `/N`.
        url: Some(format!("{base}/{{id}}")),
        fields: [("echoed", "id"), ("via", "service")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        types: [("echoed".to_string(), "int64".to_string())].into(),
        concurrency: 2,
        retries: 0,
        ..EnrichConfig::default()
    };
    let keys: Vec<Option<&str>> = vec![Some("x"); 300];
    // Without the private CA: each distinct key fails with the TLS reason.
    let untrusted = enricher(&cfg);
    let out = untrusted.apply(batch(&keys[..3])).unwrap();
    let errors = strings(&out, "_enrich_error");
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref().is_some_and(|e| e.contains("TLS"))),
        "{errors:?}"
    );
    // With it (the fetcher's `tls_ca_file`): every id echoed back.
    let fetch = FetchConfig {
        tls_ca_file: Some(ca.write_pem(dir.path(), "ca.pem")),
        ..FetchConfig::default()
    };
    let before = handshakes.load(Relaxed);
    let e = Enricher::new(0, &cfg, &fetch).unwrap();
    let out = e.apply(batch(&keys)).unwrap();
    let want: Vec<Option<i64>> = (0..300).map(Some).collect();
    assert_eq!(ints(&out, "echoed"), want);
    assert_eq!(strings(&out, "via"), vec![Some("tls".to_string()); 300]);
    // 300 lookups over at most `concurrency` keep-alive connections.
    let made = handshakes.load(Relaxed) - before;
    assert!((1..=2).contains(&made), "{made} handshakes");
}

//! Configuration from a TOML file, `PINFLOW_*` variables and flags: the library API and the
//! `pinflow` binary as an operator uses it (`--config`, `config check`, `config default`).

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use pinflow::config::{
    check_toml, env_name, key_paths, ConfigLayer, FetchConfig, LogConfig, LogFormat, MetricsConfig,
    Progress, SchemaConfig, ThreadConfig, WindowConfig, WriterConfig,
};
use pinflow::sim::{SimConfig, Simulator};
use pinflow::{Compression, Config};

fn pinflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pinflow"));
    // The tests set the variables they mean; none may leak in from the caller.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PINFLOW_") {
            c.env_remove(k);
        }
    }
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Every option set to something other than its default.
fn everything_set() -> Config {
    Config {
        out: "/data/logs.parquet".into(),
        dead_letter: Some("/data/logs.dead.ndjson".into()),
        source: Some("/etc/pinflow/urls.txt".into()),
        files: vec!["/data/in/**/*.ndjson".into()],
        tail: Some("/var/log/app/*.log".into()),
        tail_poll_interval: Duration::from_millis(500),
        tail_rotate_wait: Duration::from_secs(10),
        format: "csv".into(),
        csv_delimiter: "tab".into(),
        csv_header: false,
        every: Some(Duration::from_secs(45)),
        queue_capacity: 5,
        threads: ThreadConfig {
            parse: Some(3),
            compute: Some(2),
            cpus: Some(vec![0, 2, 4]),
            pin: false,
            pin_shared: true,
        },
        fetch: FetchConfig {
            connections_per_host: 7,
            max_in_flight: 99,
            max_attempts: 5,
            connect_timeout: Duration::from_millis(750),
            request_timeout: Duration::from_secs(120),
            first_byte_timeout: Duration::from_secs(7),
            idle_timeout: Duration::from_millis(2500),
            total_timeout: Duration::from_secs(600),
            max_retry_after: Duration::from_secs(20),
            shutdown_timeout: Duration::from_secs(9),
            shard: Some("1/3".parse().unwrap()),
            rate_limit: Some(25),
            rate_burst: Some(2),
            accept_encoding: "deflate".into(),
            headers: vec!["X-Api-Key: ${file:/run/secrets/key}".into()],
            follow_link_next: true,
            max_link_pages: 12,
            records_field: Some("results".into()),
            cursor_field: Some("next".into()),
            cursor_param: "after".into(),
            dedupe_key: Some("id".into()),
            dedupe_window: 777,
            since_field: Some("ts".into()),
            since_start: "0".into(),
            engine: pinflow::config::FetchEngine::Mio,
            max_redirects: 9,
            redirect_other_hosts: true,
            max_body_bytes: 12345,
            max_buffered_bytes: 5 << 20,
            tls_ca_file: Some("/etc/ssl/private-ca.pem".into()),
            tls_client_cert: Some("/etc/pinflow/me.pem".into()),
            tls_client_key: Some("/etc/pinflow/me.key".into()),
            batch_max_items: 33,
            batch_max_bytes: 65536,
            batch_max_delay: Duration::from_micros(1500),
        },
        writer: WriterConfig {
            row_group_rows: 4242,
            row_group_max_bytes: 1 << 21,
            data_page_bytes: 1 << 17,
            compression: Compression::None,
            rotate_interval: Some(Duration::from_secs(600)),
            flush_interval: Duration::from_secs(3),
            rotate_rows: Some(50_000),
            rotate_bytes: Some(64 << 20),
            partition_by: vec!["date".into(), "host".into()],
            file_per_kafka_partition: false,
            max_open_partitions: 8,
            dead_letter_max_bytes: 0,
            dead_letter_keep: 1,
            journal: false,
            overwrite: true,
            max_dead_letters: "2.5%".into(),
        },
        schema: SchemaConfig {
            fields: vec![
                "id:int64".into(),
                "at:timestamp".into(),
                "http.status:int64 as status".into(),
                "host:string".into(),
                "lat:list<float64>".into(),
            ],
            infer: Some(false),
            unknown: "extra".into(),
            stats: Some(vec!["lat:mean,p99".into()]),
            timestamp_format: "%d/%b/%Y:%H:%M:%S %z".into(),
            timestamp_zone: Some("+02:00".into()),
            lineage: vec!["source".into(), "fetched_at".into()],
        },
        window: WindowConfig {
            size: Some(Duration::from_secs(60)),
            hop: Some(Duration::from_secs(20)),
            time: "at".into(),
            by: vec!["host".into()],
            lateness: Duration::from_secs(3),
            idle: Some(Duration::from_secs(45)),
            max_open: 777,
            overflow: "dead-letter".into(),
            threads: 3,
            records: Some("records.parquet".into()),
            aggregates: [(
                "status".to_string(),
                vec!["count".to_string(), "p90".to_string()],
            )]
            .into_iter()
            .collect(),
        },
        metrics: MetricsConfig {
            addr: Some("[::1]:9100".parse::<SocketAddr>().unwrap()),
        },
        listen: pinflow::config::ListenConfig {
            addr: Some("[::1]:8080".parse::<SocketAddr>().unwrap()),
            token: Some("s3cret".into()),
            max_body_bytes: 1 << 20,
            max_connections: 64,
            header_timeout: Duration::from_secs(3),
            body_timeout: Duration::from_secs(4),
            idle_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(6),
            tls_cert: Some("/etc/pinflow/receive.pem".into()),
            tls_key: Some("/etc/pinflow/receive.key".into()),
            tls_client_ca: Some("/etc/pinflow/clients-ca.pem".into()),
        },
        log: LogConfig {
            format: LogFormat::Json,
            level: "trace".into(),
            progress: Progress::Always,
        },
        kafka: pinflow::config::KafkaConfig {
            key_field: Some("host".into()),
            properties: vec!["linger.ms=20".into()],
            brokers: Some("127.0.0.1:9092".into()),
            topics: vec!["logs".into()],
            group: Some("pinflow".into()),
            exit_at_end: true,
            batch_max_messages: 2048,
            batch_max_bytes: 3 << 20,
        },
        output: pinflow::config::OutputConfig {
            s3: pinflow::config::S3Config {
                endpoint: Some("http://10.0.0.5:9000".into()),
                region: Some("eu-central-1".into()),
                path_style: true,
                ca_file: Some("/etc/pinflow/store-ca.pem".into()),
                staging_dir: Some("/var/spool/pinflow".into()),
                staging_max_bytes: 64 << 20,
                part_size: 32 << 20,
                attempts: 4,
                read_chunk_bytes: 2 << 20,
                upload_concurrency: 3,
                stall_after: Duration::from_secs(300),
            },
        },
        enrich: Vec::new(),
        filter: vec!["level != 'DEBUG'".into()],
        drop: vec!["host".into()],
        rename: vec!["lat=latency".into()],
        // `[[transform]]` tables are no registry option (their round trip: src/config/tests.rs).
        transform: Vec::new(),
    }
}

#[test]
fn every_option_round_trips_through_a_file() {
    let cfg = everything_set();
    let toml = cfg.to_toml().unwrap();
    assert_eq!(Config::from_toml(&toml).unwrap(), cfg, "{toml}");
    let layer = ConfigLayer::from_toml("all.toml", &toml).unwrap();
    for key in key_paths() {
        assert!(layer.is_set(key), "{key} is not in\n{toml}");
    }
    // Every non-default value differs from the default, so each one was really read.
    let d = Config::default();
    assert_ne!(d.threads, cfg.threads);
    assert_ne!(d.fetch, cfg.fetch);
    assert_ne!(d.writer, cfg.writer);
    assert_ne!(d.metrics, cfg.metrics);
    assert_ne!(d.log, cfg.log);
}

#[test]
fn env_overrides_the_file() {
    let file = ConfigLayer::from_toml(
        "f.toml",
        "queue_capacity = 2\n[writer]\ncompression = \"zstd\"\nrow_group_rows = 10\n",
    )
    .unwrap();
    let env = ConfigLayer::from_env([
        (env_name("writer.compression"), "zstd:5".to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ])
    .unwrap();
    let cfg = Config::from_layers(&[file, env]).unwrap();
    assert_eq!(cfg.queue_capacity, 2);
    assert_eq!(cfg.writer.compression, Compression::Zstd(5));
    assert_eq!(cfg.writer.row_group_rows, 10);
    assert_eq!(cfg.fetch, FetchConfig::default());
}

#[test]
fn library_errors_carry_key_and_line() {
    let diags = check_toml(
        "x.toml",
        "\n\n[fetch]\nmax_inflight = 4\nmax_attempts = true\n",
    );
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with("x.toml:4: fetch.max_inflight: unknown key"),
        "{shown:?}"
    );
    assert_eq!(
        shown[1],
        "x.toml:5: fetch.max_attempts: expected a non-negative integer, got the boolean true"
    );
    assert_eq!(diags[1].key.as_deref(), Some("fetch.max_attempts"));
    assert_eq!(diags[1].origin.as_ref().unwrap().line, Some(5));
}

#[test]
fn config_default_prints_a_file_that_is_the_defaults() {
    let o = pinflow().args(["config", "default"]).output().unwrap();
    assert!(o.status.success());
    let (stdout, _) = text(&o);
    assert_eq!(Config::from_toml(&stdout).unwrap(), Config::default());
    for key in key_paths() {
        assert!(stdout.contains(&env_name(key)), "{key} undocumented");
    }

    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "pinflow.toml", &stdout);
    let o = pinflow()
        .arg("config")
        .arg("check")
        .arg(&f)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.ends_with(": ok\n"), "{stdout}");
}

#[test]
fn config_check_reports_every_error_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "pinflow.toml",
        "# comment\n\
         queue_capacity = 4\n\
         [fetch]\n\
         max_inflight = 256\n\
         max_in_flight = 0\n\
         request_timeout = 30\n\
         [writer]\n\
         compression = \"brotli\"\n\
         [metrics]\n\
         addr = \"nowhere\"\n\
         [log]\n\
         level = \"chatty\"\n",
    );
    let o = pinflow()
        .arg("config")
        .arg("check")
        .arg(&f)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    let name = f.display().to_string();
    let expected = [
        format!("{name}:4: fetch.max_inflight: unknown key; did you mean `fetch.max_in_flight`?"),
        format!("{name}:5: fetch.max_in_flight: must be at least 1"),
        format!("{name}:6: fetch.request_timeout: expected a duration string"),
        format!("{name}:8: writer.compression: `brotli` is not none, snappy"),
        format!("{name}:10: metrics.addr: `nowhere` is not an address"),
        format!("{name}:12: log.level: `chatty` is not one of"),
        format!("{name}: 6 problems"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?} should start with {want:?}"
        );
    }

    let o = pinflow()
        .args(["config", "check", "/nonexistent/pinflow.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o)
        .1
        .contains("/nonexistent/pinflow.toml: cannot read"));
}

/// `bench --records 200 --json` with this file, environment and flags; the thread plan it
/// prints shows which parse-thread count won.
fn bench(config: &Path, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let mut c = pinflow();
    c.args(["bench", "--records", "200", "--json", "--config"])
        .arg(config)
        .args(flags);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn parse_threads_in_plan(o: &Output) -> usize {
    let (stdout, stderr) = text(o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"records_written\":200"), "{stdout}");
    let plan = stdout.split("\"plan\":").nth(1).expect("plan in the JSON");
    plan.split(",\"latency_us\"")
        .next()
        .unwrap()
        .matches("parse-")
        .count()
}

#[test]
fn flags_override_env_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bench.toml",
        "[threads]\nparse = 1\ncompute = 1\npin = false\n",
    );
    assert_eq!(parse_threads_in_plan(&bench(&f, &[], &[])), 1);
    let env = [("PINFLOW_THREADS_PARSE", "2")];
    assert_eq!(parse_threads_in_plan(&bench(&f, &env, &[])), 2);
    assert_eq!(
        parse_threads_in_plan(&bench(&f, &env, &["--parse-threads", "3"])),
        3
    );
}

#[test]
fn problems_name_where_the_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "q.toml", "\nqueue_capacity = 0\n");
    let name = f.display().to_string();

    let o = bench(&f, &[], &[]);
    assert_eq!(o.status.code(), Some(1));
    let (_, stderr) = text(&o);
    assert!(
        stderr.contains(&format!("{name}:2: queue_capacity: must be at least 1")),
        "{stderr}"
    );

    // The environment fixes it...
    let env = [("PINFLOW_QUEUE_CAPACITY", "4")];
    assert!(bench(&f, &env, &[]).status.success());

    // ...and a flag breaks it again, and is named.
    let o = bench(&f, &env, &["--queue-capacity", "0"]);
    assert_eq!(o.status.code(), Some(1));
    let (_, stderr) = text(&o);
    assert!(
        stderr.contains("--queue-capacity: queue_capacity: must be at least 1"),
        "{stderr}"
    );

    // Bad and unknown variables are named, all of them.
    let o = bench(
        &f,
        &[
            ("PINFLOW_QUEUE_CAPACITY", "lots"),
            ("PINFLOW_FETCH_MAX_INFLIGHT", "3"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let (_, stderr) = text(&o);
    assert!(
        stderr.contains("PINFLOW_QUEUE_CAPACITY: queue_capacity: `lots`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("PINFLOW_FETCH_MAX_INFLIGHT: unknown configuration variable"),
        "{stderr}"
    );

    // A file with errors reports all of them and stops.
    let bad = write(dir.path(), "bad.toml", "queue_capacity = -1\nbogus = 1\n");
    let o = bench(&bad, &[], &[]);
    assert_eq!(o.status.code(), Some(1));
    let (_, stderr) = text(&o);
    assert!(stderr.contains("bad.toml:1: queue_capacity"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:2: bogus: unknown key"),
        "{stderr}"
    );
}

fn row_groups(path: &Path) -> usize {
    let f = std::fs::File::open(path).unwrap();
    parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(f).unwrap(),
    )
    .num_row_groups()
}

#[test]
fn run_takes_source_and_out_from_the_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let from_file = dir.path().join("from-file.parquet");
    let f = write(
        dir.path(),
        "run.toml",
        &format!(
            "source = \"{}\"\nout = \"{}\"\n[writer]\nrow_group_rows = 7\n",
            sim.logs_template(30),
            from_file.display()
        ),
    );
    let o = pinflow()
        .arg("run")
        .arg("--config")
        .arg(&f)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert_eq!(common::rows(&from_file).len(), 30);
    assert_eq!(
        row_groups(&from_file),
        5,
        "row_group_rows = 7 from the file"
    );

    // --urls and --out override the file's source and out.
    let from_flags = dir.path().join("from-flags.parquet");
    let o = pinflow()
        .arg("run")
        .arg("--config")
        .arg(&f)
        .args(["--urls", &sim.logs_template(12), "--out"])
        .arg(&from_flags)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(common::rows(&from_flags).len(), 12);
    assert_eq!(common::rows(&from_file).len(), 30, "untouched");
}

#[test]
fn run_without_a_source_names_both_ways_to_give_one() {
    let o = pinflow()
        .args(["run", "--out", "x.parquet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let (_, stderr) = text(&o);
    assert!(
        stderr.contains("--urls") && stderr.contains("`source`"),
        "{stderr}"
    );
    let o = pinflow()
        .args(["run", "--urls", "http://127.0.0.1:9/{1..2}"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let (_, stderr) = text(&o);
    assert!(
        stderr.contains("--out") && stderr.contains("`out`"),
        "{stderr}"
    );
}

#[test]
fn help_shows_the_library_defaults() {
    let o = pinflow().args(["run", "--help"]).output().unwrap();
    let (help, _) = text(&o);
    let d = Config::default();
    let format_d = pinflow::config::format_duration;
    let flags = [
        ("--queue-capacity", d.queue_capacity.to_string()),
        (
            "--connections-per-host",
            d.fetch.connections_per_host.to_string(),
        ),
        ("--max-in-flight", d.fetch.max_in_flight.to_string()),
        ("--max-attempts", d.fetch.max_attempts.to_string()),
        ("--connect-timeout", format_d(d.fetch.connect_timeout)),
        ("--request-timeout", format_d(d.fetch.request_timeout)),
        (
            "--max-body-bytes",
            pinflow::config::format_bytes(d.fetch.max_body_bytes as u64),
        ),
        ("--row-group-rows", d.writer.row_group_rows.to_string()),
        ("--compression", d.writer.compression.to_string()),
        ("--log-format", d.log.format.to_string()),
        ("--log-level", d.log.level.clone()),
        ("--progress", d.log.progress.to_string()),
    ];
    // Each flag's help paragraph (up to the next flag) names the default.
    for (flag, default) in flags {
        let at = help
            .find(&format!("      {flag} "))
            .unwrap_or_else(|| panic!("{flag} missing in\n{help}"));
        let rest = &help[at..];
        let end = rest[2..].find("\n  -").map_or(rest.len(), |e| e + 2);
        assert!(
            rest[..end].contains(&format!("[default: {default}]")),
            "{flag}: default {default} not in {:?}",
            &rest[..end]
        );
    }
    // Every flag the default file mentions exists (its comments wrap: join them up).
    let file = Config::default_toml().replace(" /\n# ", " / ");
    for line in file.lines().filter(|l| l.contains(", flag --")) {
        for flag in line.split(", flag ").nth(1).unwrap().split(" / ") {
            let flag = flag.trim_end_matches('.');
            assert!(
                help.contains(flag),
                "{flag} (from the default file) not in run --help"
            );
        }
    }
}

#[test]
fn request_timeout_accepts_seconds_and_durations() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "e.toml", "");
    let ms = Duration::from_millis;
    for (value, want) in [
        ("30", Some(ms(30_000))),
        ("1.5", Some(ms(1_500))),
        ("250ms", Some(ms(250))),
        ("1m30s", Some(ms(90_000))),
        ("0", None),
    ] {
        let o = bench(&f, &[], &["--request-timeout", value]);
        assert_eq!(
            o.status.success(),
            want.is_some(),
            "{value}: {}",
            text(&o).1
        );
        // The value it reads, through the layer the command builds from its flags: a bare
        // number is seconds.
        if let Some(want) = want {
            let layer =
                ConfigLayer::from_flags([("fetch.request_timeout", "--request-timeout", value)])
                    .unwrap_or_else(|d| panic!("{value}: {d:?}"));
            let cfg = Config::from_layers(&[layer]).unwrap();
            assert_eq!(cfg.fetch.request_timeout, want, "{value}");
        }
    }
    let o = bench(&f, &[], &["--request-timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects it");
}

/// docs/configuration.md's `## Configuration` section: its TOML example is a valid file, and
/// its `config check` example is what pinflow prints.
#[test]
fn the_readme_examples_are_true() {
    let readme = include_str!("../../docs/configuration.md");
    let section = readme
        .split("## Configuration\n")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let toml = section
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let cfg = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.writer.compression, Compression::Zstd(5));
    assert_eq!(cfg.metrics.addr, Some("127.0.0.1:9100".parse().unwrap()));

    let shown = section
        .split("$ pinflow config check pinflow.toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pinflow.toml",
        "# pinflow\nqueue_capacity = 4\n[fetch]\nmax_inflight = 256\nmax_in_flight = 256\n\
         request_timeout = 30\n[writer]\ncompression = \"zstd\"\nrow_group_rows = 0\n",
    );
    let o = pinflow()
        .args(["config", "check", "pinflow.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o).1, shown);
}

/// The value at a dotted key path of a TOML table.
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        Some((section, rest)) => lookup(table.get(section)?.as_table()?, rest),
        None => table.get(key),
    }
}

/// A TOML value as text for a variable or a flag: a list's first element (one flag, one
/// variable value, whatever the list's separator).
fn as_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => as_text(&items[0]),
        // A table of lists (`window.aggregates`): FIELD:A,B per field, one per line.
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| {
                let items: Vec<String> = v.as_array().unwrap().iter().map(as_text).collect();
                format!("{k}:{}", items.join(","))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// A one-key TOML document setting `key` to `value`.
fn one_key_doc(key: &str, value: &toml::Value) -> String {
    match key.rsplit_once('.') {
        Some((section, name)) => format!("[{section}]\n{name} = {value}\n"),
        None => format!("{key} = {value}\n"),
    }
}

/// The issue's test: an option added in one place, the registry, appears in TOML, the
/// environment, the CLI, `config default` and docs/configuration.md. For every option, with a
/// value other than its default: the TOML key is accepted (and by `config check`), its variable
/// and its flag set the same value as the TOML key, the flag is in `--help` and accepted by the
/// command, and the key is in `config default` and in the reference.
#[test]
fn every_registry_option_is_in_toml_env_cli_default_file_and_docs() {
    use pinflow::config::{options, Flag};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let samples = toml::Table::try_from(everything_set()).unwrap();
    let default_file = text(&pinflow().args(["config", "default"]).output().unwrap()).0;
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let helps: Vec<String> = ["run", "demo", "bench"]
        .iter()
        .map(|cmd| text(&pinflow().args([cmd, "--help"]).output().unwrap()).0)
        .collect();
    // `pinflow run` with these arguments and variables: a flag or variable it takes gets as far
    // as the missing source (or output) without a complaint about the flag or the value.
    let run_until_no_source = |args: &[&str], env: &[(String, String)], what: &str| {
        let mut c = pinflow();
        c.arg("run").args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let stderr = text(&o).1;
        assert_eq!(
            o.status.code(),
            Some(2),
            "{what}: {args:?} {env:?}: {stderr}"
        );
        assert!(
            stderr.contains("no work source") || stderr.contains("no output file"),
            "{what}: {args:?} {env:?}: {stderr}"
        );
    };
    let out_args = ["--out", out.to_str().unwrap()];
    assert!(options().len() >= 60, "{}", options().len());
    for o in options() {
        let key = o.key();
        let default = lookup(&defaults, key);
        let mut value = lookup(&samples, key)
            .unwrap_or_else(|| panic!("{key}"))
            .clone();
        // Switches and the engine are the same in everything_set() as by default; flip them.
        if let Some(toml::Value::Boolean(b)) = default {
            value = toml::Value::Boolean(!b);
        }
        if key == "fetch.engine" {
            value = toml::Value::String("ureq".into());
        }
        if o.is_list() && value.is_array() {
            value = toml::Value::Array(vec![value.as_array().unwrap()[0].clone()]);
        }
        assert_ne!(
            Some(&value),
            default,
            "{key}: pick a value that is not the default"
        );

        // TOML: the key is in the schema, and `config check` knows it.
        let doc = one_key_doc(key, &value);
        let file = ConfigLayer::from_toml("one.toml", &doc).unwrap_or_else(|d| panic!("{d:?}"));
        assert!(file.is_set(key), "{key}");
        let want = Config::from_layers(&[file]).unwrap();
        let want = lookup(&toml::Table::try_from(&want).unwrap(), key).cloned();
        assert_eq!(want.as_ref(), Some(&value), "{key}: read from {doc}");
        let path = write(dir.path(), "one.toml", &doc);
        let o2 = pinflow()
            .arg("config")
            .arg("check")
            .arg(&path)
            .output()
            .unwrap();
        let (_, stderr) = text(&o2);
        assert!(
            !stderr.contains("unknown key") && !stderr.contains(": expected "),
            "{key}: {stderr}"
        );

        // The environment: the variable sets the same value, in the library and the command.
        let env_text = as_text(&value);
        let env = ConfigLayer::from_env([(o.env(), env_text.clone())])
            .unwrap_or_else(|d| panic!("{key}: {d:?}"));
        let got = Config::from_layers(&[env]).unwrap();
        let got = lookup(&toml::Table::try_from(&got).unwrap(), key).cloned();
        assert_eq!(got, want, "{key}: {} = {env_text:?}", o.env());
        let vars = [(o.env(), env_text.clone())];
        match key {
            // Each of these makes `run` want the other one.
            "out" => run_until_no_source(&[], &vars, key),
            "source" | "files" | "tail" | "listen.addr" => run_until_no_source(&[], &vars, key),
            _ => run_until_no_source(&out_args, &vars, key),
        }

        // The command line: the flag is in every command's help, is accepted, and its value
        // reads as the TOML key's does.
        let (flags, commands): (Vec<(&str, String)>, &[usize]) = match o.flag() {
            Flag::Shared(f) => (vec![(f, env_text.clone())], &[0, 1, 2]),
            Flag::Negatable { on, off, .. } => {
                (vec![(on, "true".into()), (off, "false".into())], &[0, 1, 2])
            }
            Flag::Command(f) => (vec![(f, env_text.clone())], &[0]),
            _ => (Vec::new(), &[]),
        };
        if flags.is_empty() {
            // (The batch sizes are tuning, set in the file or the environment.)
            assert!(
                key.starts_with("fetch.batch_max_") || key.starts_with("kafka.batch_max_"),
                "{key} has no flag"
            );
        }
        for (flag, v) in &flags {
            for &cmd in commands {
                // (A switch whose help clap puts on the next line ends its line.)
                assert!(
                    helps[cmd].contains(&format!("      {flag} "))
                        || helps[cmd].contains(&format!("      {flag}\n")),
                    "{flag} not in --help:\n{}",
                    helps[cmd]
                );
            }
            if matches!(o.flag(), Flag::Negatable { .. }) {
                run_until_no_source(&[&out_args[..], &[flag]].concat(), &[], flag);
                continue;
            }
            match key {
                "out" => run_until_no_source(&[flag, v], &[], flag),
                "source" | "files" | "tail" | "listen.addr" => {
                    run_until_no_source(&[flag, v], &[], flag)
                }
                _ => {
                    run_until_no_source(&[&out_args[..], &[flag, v]].concat(), &[], flag);
                    let layer = ConfigLayer::from_flags([(key, *flag, v.as_str())])
                        .unwrap_or_else(|d| panic!("{flag}: {d:?}"));
                    let got = Config::from_layers(&[layer]).unwrap();
                    let got = lookup(&toml::Table::try_from(&got).unwrap(), key).cloned();
                    assert_eq!(got, want, "{flag} {v}");
                }
            }
        }

        // `config default` and the reference.
        assert!(
            default_file.contains(&o.env())
                && default_file
                    .lines()
                    .any(|l| l.starts_with(&format!("{} = ", o.name()))
                        || l.starts_with(&format!("# {} = ", o.name()))),
            "{key} not in config default"
        );
        assert!(
            docs.contains(&format!("| `{key}` | `{}` |", o.env())),
            "{key} not in docs/configuration.md"
        );
        for (flag, _) in &flags {
            assert!(
                docs.contains(&format!("`{flag}`")),
                "{flag} not in the docs"
            );
        }
    }
    // All of them together make a good file.
    let all = write(dir.path(), "all.toml", &everything_set().to_toml().unwrap());
    let o = pinflow()
        .arg("config")
        .arg("check")
        .arg(&all)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
}

/// docs/configuration.md holds the current option reference between its markers; run the test
/// with PINFLOW_BLESS=1 to rewrite it.
#[test]
fn the_option_reference_in_the_docs_is_current() {
    use pinflow::config::{reference_markdown, REFERENCE_BEGIN, REFERENCE_END};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (before, rest) = doc
        .split_once(REFERENCE_BEGIN)
        .unwrap_or_else(|| panic!("{} has no line {REFERENCE_BEGIN}", path.display()));
    let (_, after) = rest
        .split_once(REFERENCE_END)
        .unwrap_or_else(|| panic!("{} has no line {REFERENCE_END}", path.display()));
    let current = format!(
        "{before}{REFERENCE_BEGIN}\n\n{}\n{REFERENCE_END}{after}",
        reference_markdown()
    );
    if current == doc {
        return;
    }
    if std::env::var_os("PINFLOW_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, current).unwrap();
        return;
    }
    panic!(
        "{} is out of date with the option registry: rerun with PINFLOW_BLESS=1 \
         (`PINFLOW_BLESS=1 cargo test --test config the_option_reference`) to rewrite it",
        path.display()
    );
}

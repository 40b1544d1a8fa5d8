use super::*;

#[test]
fn compression_names() {
    assert_eq!(
        "snappy".parse::<Compression>().unwrap(),
        Compression::Snappy
    );
    assert_eq!(
        "zstd:9".parse::<Compression>().unwrap(),
        Compression::Zstd(9)
    );
    assert!("zstd:99".parse::<Compression>().is_err());
    assert!("lzo".parse::<Compression>().is_err());
    assert_eq!("lz4".parse::<Compression>().unwrap(), Compression::Lz4);
    for c in [
        Compression::None,
        Compression::Snappy,
        Compression::Zstd(5),
        Compression::Lz4,
    ] {
        assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
    }
}

#[test]
fn zero_values_are_rejected_by_name() {
    let mut c = Config::new("x.parquet");
    c.queue_capacity = 0;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("queue_capacity"), "{e}");
    let mut c = Config::new("x.parquet");
    c.threads.parse = Some(0);
    assert!(c.validate().is_err());
}

#[test]
fn problems_lists_every_bad_value() {
    let mut c = Config::new("x.parquet");
    c.queue_capacity = 0;
    c.fetch.max_in_flight = 0;
    c.fetch.request_timeout = Duration::ZERO;
    c.every = Some(Duration::ZERO);
    c.log.level = "loud".into();
    c.writer.compression = Compression::Zstd(0);
    let keys: Vec<String> = c.problems().into_iter().filter_map(|d| d.key).collect();
    assert_eq!(
        keys,
        [
            "every",
            "queue_capacity",
            "fetch.max_in_flight",
            "fetch.request_timeout",
            "writer.compression",
            "log.level"
        ]
    );
    assert!(Config::default().problems().is_empty());
}

#[test]
fn a_timestamp_pattern_without_an_offset_needs_a_zone() {
    let mut c = Config::new("x.parquet");
    c.schema.timestamp_format = "%Y-%m-%d %H:%M:%S".into();
    let shown: Vec<String> = c.problems().iter().map(|d| d.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert!(
        shown[0].starts_with("schema.timestamp_zone: "),
        "{}",
        shown[0]
    );
    assert!(shown[0].contains("has no %z"), "{}", shown[0]);
    c.schema.timestamp_zone = Some("UTC".into());
    assert!(c.problems().is_empty());
}

#[test]
fn writer_output_keys_are_checked() {
    let mut c = Config::new("x.parquet");
    // Partition columns are checked against a fixed layout (here the built-in one); a layout
    // left to the records is checked when they have chosen it.
    c.schema.infer = Some(false);
    c.writer.flush_interval = Duration::ZERO;
    c.writer.rotate_rows = Some(0);
    c.writer.rotate_bytes = Some(0);
    c.writer.max_open_partitions = 0;
    c.writer.partition_by = vec![
        "service".into(),
        "latency_ms".into(),
        "date".into(),
        "nope".into(),
        "service".into(),
    ];
    let shown: Vec<String> = c.problems().iter().map(|d| d.to_string()).collect();
    assert_eq!(shown.len(), 7, "{shown:#?}");
    for (at, key) in [
        (0, "writer.flush_interval"),
        (1, "writer.rotate_rows"),
        (2, "writer.rotate_bytes"),
        (3, "writer.max_open_partitions"),
        (4, "writer.partition_by"),
        (5, "writer.partition_by"),
        (6, "writer.partition_by"),
    ] {
        assert!(shown[at].starts_with(key), "{shown:#?}");
    }
    assert!(shown[4].contains("latency_ms"), "{}", shown[4]);
    assert!(shown[5].contains("`nope`"), "{}", shown[5]);
    assert!(shown[6].contains("twice"), "{}", shown[6]);
    // Environment: a comma-separated list; TOML: an array of strings.
    let layer = ConfigLayer::from_env([(
        "PINFLOW_WRITER_PARTITION_BY".to_string(),
        "service, date".to_string(),
    )])
    .unwrap();
    let c = Config::from_layers(&[layer]).unwrap();
    assert_eq!(c.writer.partition_by, ["service", "date"]);
    let diags = check_toml("p.toml", "[writer]\npartition_by = \"service\"\n");
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].message.contains("array of names"), "{diags:?}");
    let diags = check_toml("p.toml", "[writer]\npartition_by = [\"host\", 3]\n");
    assert_eq!(diags[0].key.as_deref(), Some("writer.partition_by[1]"));
}

#[test]
fn dead_letter_defaults_beside_the_output() {
    let c = Config::new("/tmp/a/out.parquet");
    assert_eq!(
        c.dead_letter_path(),
        PathBuf::from("/tmp/a/out.parquet.deadletter.ndjson")
    );
}

#[test]
fn durations_parse() {
    let ok = |s: &str| parse_duration(s).unwrap();
    assert_eq!(ok("250us"), Duration::from_micros(250));
    assert_eq!(ok("250µs"), Duration::from_micros(250));
    assert_eq!(ok("2ms"), Duration::from_millis(2));
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("30s"), Duration::from_secs(30));
    assert_eq!(ok("5m"), Duration::from_secs(300));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("1h30m"), Duration::from_secs(5400));
    assert_eq!(ok("2d"), Duration::from_secs(172_800));
    assert_eq!(ok("7ns"), Duration::from_nanos(7));
    assert_eq!(ok(".5s"), Duration::from_millis(500));
    assert_eq!(ok(" 10s "), Duration::from_secs(10));
    assert_eq!(ok("0"), Duration::ZERO);
    assert_eq!(ok("0s"), Duration::ZERO);
    for bad in [
        "",
        "30",
        "s",
        "1.5",
        "10 s",
        "1x",
        "1.2.3s",
        "-1s",
        "1.0000000001s",
        "1..s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
    }
    let e = parse_duration("30").unwrap_err();
    assert!(e.contains("unit"), "{e}");
    assert!(parse_duration("99999999999999999999999h").is_err());
}

#[test]
fn durations_format_and_round_trip() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(7), "7ns"),
        (Duration::from_micros(250), "250us"),
        (Duration::from_millis(2), "2ms"),
        (Duration::from_millis(1500), "1500ms"),
        (Duration::from_secs(30), "30s"),
        (Duration::from_secs(90), "90s"),
        (Duration::from_secs(300), "5m"),
        (Duration::from_secs(3600), "1h"),
        (Duration::from_secs(86_400), "24h"),
        (Duration::new(1, 1), "1000000001ns"),
    ];
    for (d, s) in cases {
        assert_eq!(format_duration(d), s);
        assert_eq!(parse_duration(s).unwrap(), d, "{s}");
    }
}

#[test]
fn listen_addresses() {
    assert_eq!(
        parse_listen_addr("9100").unwrap().to_string(),
        "127.0.0.1:9100"
    );
    assert_eq!(
        parse_listen_addr("localhost:9100").unwrap().to_string(),
        "127.0.0.1:9100"
    );
    assert_eq!(
        parse_listen_addr("0.0.0.0:80").unwrap().to_string(),
        "0.0.0.0:80"
    );
    assert_eq!(
        parse_listen_addr("[::1]:9100").unwrap().to_string(),
        "[::1]:9100"
    );
    for bad in ["", "99999", "host", "example.com:80", "1.2.3.4"] {
        assert!(parse_listen_addr(bad).is_err(), "{bad:?}");
    }
}

/// A configuration with every option set to something other than its default.
fn everything_set() -> Config {
    Config {
        out: "/data/logs.parquet".into(),
        dead_letter: Some("/data/dead.ndjson".into()),
        source: Some("http://127.0.0.1:8080/logs/{1..10}.json".into()),
        files: vec!["/var/log/app/*.ndjson".into(), "-".into()],
        tail: Some("/var/log/app/*.log".into()),
        tail_poll_interval: Duration::from_millis(500),
        tail_rotate_wait: Duration::from_secs(10),
        format: "csv".into(),
        csv_delimiter: ";".into(),
        csv_header: false,
        every: Some(Duration::from_secs(30)),
        queue_capacity: 3,
        threads: ThreadConfig {
            parse: Some(5),
            compute: Some(2),
            cpus: Some(vec![1, 3]),
            pin: false,
            pin_shared: true,
        },
        fetch: FetchConfig {
            connections_per_host: 4,
            max_in_flight: 64,
            max_attempts: 7,
            connect_timeout: Duration::from_millis(1500),
            request_timeout: Duration::from_secs(90),
            first_byte_timeout: Duration::from_secs(9),
            idle_timeout: Duration::from_secs(8),
            total_timeout: Duration::from_secs(700),
            max_retry_after: Duration::from_secs(11),
            shutdown_timeout: Duration::from_secs(7),
            shard: Some(Shard { index: 2, count: 5 }),
            rate_limit: Some(40),
            rate_burst: Some(3),
            accept_encoding: "gzip".into(),
            headers: vec!["Authorization: Bearer ${env:TOKEN}".into(), "X-A: b".into()],
            follow_link_next: true,
            max_link_pages: 77,
            records_field: Some("data.items".into()),
            cursor_field: Some("meta.next".into()),
            cursor_param: "page_token".into(),
            dedupe_key: Some("event_id".into()),
            dedupe_window: 5000,
            since_field: Some("ts".into()),
            since_start: "0".into(),
            // Not ureq: it excludes continuous mode, which this config turns on.
            engine: FetchEngine::Mio,
            max_redirects: 2,
            redirect_other_hosts: true,
            max_body_bytes: 1000,
            max_buffered_bytes: 3 << 20,
            tls_ca_file: Some("/etc/pinflow/ca.pem".into()),
            tls_client_cert: Some("/etc/pinflow/client.pem".into()),
            tls_client_key: Some("/etc/pinflow/client.key".into()),
            batch_max_items: 17,
            batch_max_bytes: 4096,
            batch_max_delay: Duration::from_micros(250),
        },
        writer: WriterConfig {
            row_group_rows: 999,
            row_group_max_bytes: 1 << 22,
            data_page_bytes: 1 << 19,
            compression: Compression::Zstd(7),
            rotate_interval: Some(Duration::from_secs(3600)),
            flush_interval: Duration::from_millis(1500),
            rotate_rows: Some(100_000),
            rotate_bytes: Some(1 << 28),
            partition_by: vec!["service".into(), "date".into()],
            file_per_kafka_partition: false,
            max_open_partitions: 9,
            dead_letter_max_bytes: 1 << 20,
            dead_letter_keep: 2,
            // Not with continuous mode, which this config turns on.
            journal: false,
            overwrite: true,
            max_dead_letters: "12".into(),
        },
        schema: SchemaConfig {
            fields: vec![
                "id:int64".into(),
                "ts:timestamp".into(),
                "http.status:int64 as status".into(),
                "service:string".into(),
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
            size: Some(Duration::from_secs(10)),
            hop: Some(Duration::from_secs(5)),
            time: "ts".into(),
            by: vec!["service".into()],
            lateness: Duration::from_secs(2),
            idle: Some(Duration::from_secs(30)),
            max_open: 5000,
            overflow: "dead-letter".into(),
            threads: 2,
            records: Some("records.parquet".into()),
            aggregates: [
                ("status".to_string(), vec!["count".into(), "p99".into()]),
                ("id".to_string(), vec!["sum".into()]),
            ]
            .into_iter()
            .collect(),
        },
        metrics: MetricsConfig {
            addr: Some("0.0.0.0:9100".parse().unwrap()),
        },
        listen: ListenConfig {
            addr: Some("127.0.0.1:8080".parse().unwrap()),
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
            level: "debug".into(),
            progress: Progress::Never,
        },
        kafka: KafkaConfig {
            key_field: Some("host".into()),
            properties: vec!["compression.type=lz4".into()],
            brokers: Some("127.0.0.1:9092".into()),
            topics: vec!["logs".into(), "audit".into()],
            group: Some("pinflow".into()),
            exit_at_end: true,
            batch_max_messages: 1024,
            batch_max_bytes: 512 << 10,
        },
        output: OutputConfig {
            s3: S3Config {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                path_style: true,
                ca_file: Some("/etc/pinflow/store-ca.pem".into()),
                staging_dir: Some("/var/spool/pinflow".into()),
                staging_max_bytes: 1 << 20,
                part_size: 16 << 20,
                attempts: 3,
                read_chunk_bytes: 1 << 20,
                upload_concurrency: 2,
                stall_after: Duration::from_secs(120),
            },
        },
        enrich: Vec::new(),
        filter: vec!["level != \"DEBUG\"".into(), "a in [1, 2]".into()],
        drop: vec!["message".into(), "host".into()],
        rename: vec!["a=b".into()],
        transform: vec![
            TransformConfig {
                filter: Some("latency_ms > 5 and not (msg =~ 'x')".into()),
                ..TransformConfig::default()
            },
            TransformConfig {
                set: Some(
                    [
                        ("env".to_string(), SetValue::Text("prod".into())),
                        ("n".to_string(), SetValue::Int(3)),
                        ("x".to_string(), SetValue::Float(0.5)),
                        ("on".to_string(), SetValue::Bool(true)),
                        (
                            "h".to_string(),
                            SetValue::Field {
                                field: "host".into(),
                            },
                        ),
                        (
                            "u".to_string(),
                            SetValue::Meta {
                                meta: "source_url".into(),
                            },
                        ),
                    ]
                    .into_iter()
                    .collect(),
                ),
                ..TransformConfig::default()
            },
            TransformConfig {
                cast: Some(
                    [("n".to_string(), "string".to_string())]
                        .into_iter()
                        .collect(),
                ),
                ..TransformConfig::default()
            },
            TransformConfig {
                rename: Some([("a".to_string(), "b".to_string())].into_iter().collect()),
                ..TransformConfig::default()
            },
        ],
    }
}

fn leaf_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            // A table-valued option (field -> aggregates) is one key.
            toml::Value::Table(t) if path != "window.aggregates" => leaf_paths(t, &path, out),
            _ => out.push(path),
        }
    }
}

#[test]
fn the_schema_lists_exactly_the_fields() {
    let table = toml::Table::try_from(everything_set()).unwrap();
    let mut fields = Vec::new();
    leaf_paths(&table, "", &mut fields);
    // `[[transform]]` tables are no option of the registry: an array with rules of its own.
    fields.retain(|f| f != "transform");
    fields.sort();
    let mut keys: Vec<String> = key_paths().map(String::from).collect();
    keys.sort();
    assert_eq!(fields, keys);
    // Options come in Topic::ALL order, so the default file groups them.
    let mut order: Vec<Topic> = options().iter().map(|o| o.topic()).collect();
    order.dedup();
    assert_eq!(order, Topic::ALL);
}

#[test]
fn the_ureq_engine_is_read_and_excludes_continuous_mode() {
    let cfg = Config::from_toml("[fetch]\nengine = \"ureq\"\n").unwrap();
    assert_eq!(cfg.fetch.engine, FetchEngine::Ureq);
    let err = Config::from_toml("every = \"1s\"\n[fetch]\nengine = \"ureq\"\n").unwrap_err();
    assert!(format!("{err:?}").contains("continuous mode"), "{err:?}");
}

#[test]
fn every_option_round_trips_through_toml() {
    let cfg = everything_set();
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let text = cfg.to_toml().unwrap();
    assert_eq!(Config::from_toml(&text).unwrap(), cfg, "{text}");
    let layer = ConfigLayer::from_toml("t.toml", &text).unwrap();
    for k in key_paths() {
        assert!(layer.is_set(k), "{k} not written:\n{text}");
    }
    assert!(text.contains("compression = \"zstd:7\""), "{text}");
    assert!(text.contains("batch_max_delay = \"250us\""), "{text}");
}

#[test]
fn the_default_file_is_the_defaults() {
    let text = Config::default_toml();
    assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
    for k in key_paths() {
        let name = k.rsplit('.').next().unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name} = "))
                    || l.starts_with(&format!("# {name} = "))),
            "{k} missing"
        );
        assert!(text.contains(&env_name(k)), "{k}");
    }
    // The commented-out examples are valid too.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            Some(rest) if rest.starts_with("[[") => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let cfg = Config::from_toml(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(cfg.threads.cpus, Some(vec![0, 1, 2, 3]));
    assert_eq!(cfg.metrics.addr, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(cfg.every, Some(Duration::from_secs(30)));
    assert_eq!((cfg.enrich.len(), cfg.transform.len()), (1, 1));
}

#[test]
fn unknown_keys_and_bad_values_are_all_reported_with_lines() {
    let text = "queue_capacity = \"8\"\n\
                    [fetch]\n\
                    max_inflight = 3\n\
                    request_timeout = 30\n\
                    max_in_flight = 0\n\
                    [threads]\n\
                    cpus = [0, -1]\n\
                    [writer]\n\
                    compression = \"lzo\"\n\
                    [bogus]\n";
    let diags = check_toml("p.toml", text);
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    let expect = [
            "p.toml:1: queue_capacity: expected a non-negative integer, got the string \"8\"",
            "p.toml:3: fetch.max_inflight: unknown key; did you mean `fetch.max_in_flight`?",
            "p.toml:4: fetch.request_timeout: expected a duration string such as \"30s\", got the integer 30",
            "p.toml:5: fetch.max_in_flight: must be at least 1",
            "p.toml:7: threads.cpus[1]: must not be negative, got -1",
            "p.toml:9: writer.compression: `lzo` is not none, snappy, lz4, zstd or zstd:LEVEL (LEVEL 1..=22)",
            "p.toml:10: bogus: unknown key",
        ];
    assert_eq!(shown, expect);
}

#[test]
fn syntax_errors_have_lines() {
    let diags = check_toml("p.toml", "queue_capacity = 4\n[fetch\nmax_in_flight = 2\n");
    assert!(!diags.is_empty());
    assert_eq!(diags[0].origin.as_ref().unwrap().line, Some(2), "{diags:?}");
    assert!(diags[0].message.contains("invalid TOML"), "{diags:?}");
    let diags = check_toml("p.toml", "queue_capacity = 4\nqueue_capacity = 5\n");
    assert!(!diags.is_empty());
    // Recovery leaves a table where the broken header was; only the syntax error is shown.
    let diags = check_toml("p.toml", "[fetch\nmax_in_flight = 2\nqueue_capacity = 5\n");
    assert!(
        diags.iter().all(|d| d.message.contains("invalid TOML")),
        "{diags:?}"
    );
}

#[test]
fn sections_must_be_tables() {
    let diags = check_toml("p.toml", "fetch = 3\n");
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].key.as_deref(), Some("fetch"));
    // Dotted keys and inline tables work like [sections].
    let cfg =
        Config::from_toml("fetch.max_in_flight = 7\nwriter = { row_group_rows = 9 }\n").unwrap();
    assert_eq!(cfg.fetch.max_in_flight, 7);
    assert_eq!(cfg.writer.row_group_rows, 9);
}

fn env(pairs: &[(&str, &str)]) -> std::result::Result<ConfigLayer, Vec<Diagnostic>> {
    ConfigLayer::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn environment_variables() {
    let layer = env(&[
        ("PATH", "/bin"),
        ("PINFLOW_QUEUE_CAPACITY", "4"),
        ("PINFLOW_FETCH_MAX_IN_FLIGHT", "256"),
        ("PINFLOW_FETCH_REQUEST_TIMEOUT", "1.5s"),
        ("PINFLOW_WRITER_COMPRESSION", "zstd:5"),
        ("PINFLOW_METRICS_ADDR", "9100"),
        ("PINFLOW_THREADS_CPUS", "0, 2"),
        ("PINFLOW_THREADS_PIN", "false"),
        ("PINFLOW_LOG_FORMAT", "json"),
        ("PINFLOW_OUT", "o.parquet"),
    ])
    .unwrap();
    assert!(layer.is_set("fetch.max_in_flight"));
    assert_eq!(
        layer.origin("queue_capacity").unwrap().to_string(),
        "PINFLOW_QUEUE_CAPACITY"
    );
    let c = Config::from_layers(&[layer]).unwrap();
    assert_eq!(c.queue_capacity, 4);
    assert_eq!(c.fetch.max_in_flight, 256);
    assert_eq!(c.fetch.request_timeout, Duration::from_millis(1500));
    assert_eq!(c.writer.compression, Compression::Zstd(5));
    assert_eq!(c.metrics.addr, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(c.threads.cpus, Some(vec![0, 2]));
    assert!(!c.threads.pin);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.out, PathBuf::from("o.parquet"));
}

#[test]
fn bad_environment_variables_are_named() {
    let diags = env(&[
        ("PINFLOW_FETCH_MAX_INFLIGHT", "3"),
        ("PINFLOW_QUEUE_CAPACITY", "many"),
        ("PINFLOW_EVERY", "30"),
        ("PINFLOW_BOGUS", "1"),
    ])
    .unwrap_err();
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    // Sorted by variable name.
    assert_eq!(
        shown,
        [
            "PINFLOW_BOGUS: unknown configuration variable",
            "PINFLOW_EVERY: every: `30` is not a duration: a number needs a unit: ns, us, \
                 ms, s, m, h or d (e.g. \"250us\", \"1.5s\", \"5m\")",
            "PINFLOW_FETCH_MAX_INFLIGHT: unknown configuration variable; did you mean \
                 PINFLOW_FETCH_MAX_IN_FLIGHT?",
            "PINFLOW_QUEUE_CAPACITY: queue_capacity: `many` is not a non-negative integer",
        ]
    );
}

#[test]
fn the_fail_point_variable_is_no_key_and_is_refused_by_a_build_without_fail_points() {
    let armed = env(&[("PINFLOW_FAILPOINT", "writer.after_commit@2")]);
    match cfg!(feature = "failpoints") {
        // Taken by src/failpoint.rs, not the configuration: the layer sets nothing.
        true => assert!(armed.is_ok(), "{armed:?}"),
        false => {
            let shown = armed.unwrap_err()[0].to_string();
            assert!(
                shown.starts_with("PINFLOW_FAILPOINT: ") && shown.contains("`failpoints`"),
                "{shown}"
            );
        }
    }
    // A name no point has is an error either way.
    assert!(env(&[("PINFLOW_FAILPOINT", "nowhere")]).is_err());
}

#[test]
fn later_layers_override_earlier_ones_and_problems_name_their_origin() {
    let file = ConfigLayer::from_toml(
        "p.toml",
        "queue_capacity = 2\n[fetch]\nmax_in_flight = 0\nmax_attempts = 9\n",
    )
    .unwrap();
    let environment = env(&[("PINFLOW_FETCH_MAX_ATTEMPTS", "4")]).unwrap();
    let layers = [file, environment];
    let c = Config::from_layers(&layers).unwrap();
    assert_eq!(c.queue_capacity, 2);
    assert_eq!(c.fetch.max_attempts, 4);
    assert_eq!(c.fetch.connections_per_host, 32);
    let problems: Vec<String> = c
        .problems_in(&layers)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        problems,
        ["p.toml:3: fetch.max_in_flight: must be at least 1"]
    );
}

/// `c` with `key` set to `value`, through serde (so past the reading of layers, which refuses
/// some values a program can still put in a [`Config`]).
fn with_value(key: &str, value: toml::Value) -> Config {
    let mut table = toml::Table::try_from(Config::default()).unwrap();
    let mut at = &mut table;
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap();
    for p in parts {
        at = at.get_mut(p).and_then(|v| v.as_table_mut()).unwrap();
    }
    at.insert(last.to_string(), value);
    table.try_into().unwrap_or_else(|e| panic!("{key}: {e}"))
}

#[test]
fn every_declared_check_rejects_a_bad_value_under_its_key() {
    use super::check::Check;
    // A value breaking each option's rule of its own, in TOML.
    let custom: &[(&str, &str)] = &[
        ("source", "\" \""),
        ("kafka.properties", "[\"linger.ms=5\", \"acks=0\"]"),
        ("kafka.brokers", "\"127.0.0.1\""),
        ("kafka.topics", "[\"logs\", \"bad topic\"]"),
        ("output.s3.endpoint", "\"ftp://store\""),
        ("filter", "[\"a == 1\", \"a = 1\"]"),
        ("rename", "[\"a=b\", \"c\"]"),
        ("files", "[\"a.ndjson\", \" \"]"),
        ("tail", "\"logs/[.log\""),
        ("format", "\"xml\""),
        ("fetch.dedupe_key", "\" \""),
        ("fetch.since_field", "\" \""),
        ("csv_delimiter", "\";;\""),
        ("threads.cpus", "[]"),
        ("fetch.cursor_param", "\"a&b\""),
        ("fetch.shutdown_timeout", "\"2h\""),
        ("fetch.headers", "[\"no colon\"]"),
        ("fetch.accept_encoding", "\"gzip, br\""),
        ("schema.fields", "[\"id:nope\"]"),
        ("schema.unknown", "\"maybe\""),
        ("writer.max_dead_letters", "\"5 records\""),
        ("schema.stats", "[\"values:nope\"]"),
        ("schema.timestamp_format", "\"%Y-%m-%d %I\""),
        ("schema.timestamp_zone", "\"Europe/Paris\""),
        ("schema.lineage", "[\"url\"]"),
        ("log.level", "\"loud\""),
        ("window.time", "\" \""),
        ("window.by", "[\"host\", \"host\"]"),
        ("window.overflow", "\"maybe\""),
        ("window.aggregates", "{ latency_ms = [\"nope\"] }"),
    ];
    let mut checked = 0;
    for o in options() {
        let key = o.key();
        let c = match o.check {
            Check::None => continue,
            // `zstd:0` does not even parse, so only a program can set it.
            Check::Custom(_) if key == "writer.compression" => {
                let mut c = Config::default();
                c.writer.compression = Compression::Zstd(0);
                c
            }
            check => {
                let bad = match check {
                    Check::None => unreachable!(),
                    // Past the maximum: every bounded option has one.
                    Check::Int { max, .. } => format!("{}", max + 1),
                    Check::Span { max, .. } => format!(
                        "\"{}\"",
                        super::format_duration(max + std::time::Duration::from_nanos(1))
                    ),
                    Check::FilePath(_) => "\"/\"".to_string(),
                    Check::NonEmptyPath(_) => "\"\"".to_string(),
                    Check::FieldPath(_) => "\"meta..next\"".to_string(),
                    Check::Custom(_) => custom
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_else(|| panic!("{key}: add a value breaking its rule above")),
                };
                let doc: toml::Table = toml::from_str(&format!("v = {bad}")).unwrap();
                with_value(key, doc["v"].clone())
            }
        };
        let named: Vec<String> = c.problems().into_iter().filter_map(|d| d.key).collect();
        assert!(
            named
                .iter()
                .any(|k| k == key || k.starts_with(&format!("{key}["))),
            "{key}: a bad value gave problems with {named:?}"
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        options()
            .iter()
            .filter(|o| !matches!(o.check, Check::None))
            .count()
    );
    assert!(Config::default().problems().is_empty());
}

/// An integer or a duration is checked for zero unless zero means something (none, no bound,
/// not at all). A new one must declare its bound in the registry or be listed here.
#[test]
fn integers_and_durations_declare_their_lower_bound() {
    use super::check::Check;
    use super::kind::Kind;
    let zero_means_something = [
        "threads.compute",
        "fetch.max_retry_after",
        "fetch.shutdown_timeout",
        "fetch.max_link_pages",
        "fetch.max_redirects",
        "fetch.batch_max_delay",
        "writer.row_group_max_bytes",
        "writer.dead_letter_max_bytes",
        "writer.dead_letter_keep",
        "window.lateness",
    ];
    for o in options() {
        let bounded = match (o.kind, o.check) {
            (Kind::Count | Kind::Count32 | Kind::Bytes, Check::Int { min, .. }) => min > 0,
            (Kind::Duration, Check::Span { min, .. }) => !min.is_zero(),
            (Kind::Count | Kind::Count32 | Kind::Bytes | Kind::Duration, _) => {
                panic!("{}: an integer or duration declares its bounds", o.key())
            }
            _ => continue,
        };
        assert_ne!(
            bounded,
            zero_means_something.contains(&o.key()),
            "{}: declare its check in the registry, or list it as taking zero",
            o.key()
        );
    }
}

#[test]
fn byte_sizes_take_iec_and_si_units_and_refuse_ambiguous_ones() {
    for (text, n) in [
        ("0", 0),
        ("4096", 4096),
        ("4096B", 4096),
        ("512KiB", 512 << 10),
        ("64MiB", 64 << 20),
        ("64 mib", 64 << 20),
        ("2GiB", 2 << 30),
        ("1TiB", 1 << 40),
        ("1.5KiB", 1536),
        ("1kB", 1000),
        ("1KB", 1000),
        ("5MB", 5_000_000),
        ("1GB", 1_000_000_000),
    ] {
        assert_eq!(parse_bytes(text), Ok(n), "{text}");
    }
    for (text, why) in [
        (
            "64M",
            "ambiguous; write 64MiB (powers of 1024) or 64MB (powers of 1000)",
        ),
        ("1k", "write 1KiB"),
        ("", "no number"),
        ("MiB", "no number"),
        ("-1MiB", "must not be negative"),
        ("1.1B", "not a whole number of bytes"),
        ("3 bytes", "unknown unit `bytes`"),
        ("99999999TiB", "too large"),
    ] {
        let e = parse_bytes(text).unwrap_err();
        assert!(
            e.contains(why) && e.contains(&format!("`{text}`")),
            "{text}: {e}"
        );
    }
    for n in [0, 1000, 1024, 1536, 64 << 20, 3 << 40] {
        assert_eq!(parse_bytes(&format_bytes(n)), Ok(n));
    }
}

#[test]
fn byte_size_options_take_units_in_toml_environment_and_flags() {
    let file = ConfigLayer::from_toml(
        "p.toml",
        "[fetch]\nmax_body_bytes = \"1MiB\"\nmax_buffered_bytes = 134217728\n",
    )
    .unwrap();
    let environment = env(&[("PINFLOW_WRITER_DATA_PAGE_BYTES", "512KiB")]).unwrap();
    let flags =
        ConfigLayer::from_flags([("writer.rotate_bytes", "--rotate-bytes", "1GB")]).unwrap();
    let c = Config::from_layers(&[file, environment, flags]).unwrap();
    assert_eq!(c.fetch.max_body_bytes, 1 << 20);
    assert_eq!(c.fetch.max_buffered_bytes, 128 << 20);
    assert_eq!(c.writer.data_page_bytes, 512 << 10);
    assert_eq!(c.writer.rotate_bytes, Some(1_000_000_000));
    // Errors name the option (and where it was set) and the bad value.
    let d = ConfigLayer::from_toml("p.toml", "[fetch]\nmax_body_bytes = \"64M\"\n").unwrap_err();
    let shown = d[0].to_string();
    assert!(
        shown.starts_with("p.toml:2: fetch.max_body_bytes: `64M` is not a byte size"),
        "{shown}"
    );
    let d = env(&[("PINFLOW_FETCH_MAX_BODY_BYTES", "lots")]).unwrap_err();
    let shown = d[0].to_string();
    assert!(
        shown.starts_with("PINFLOW_FETCH_MAX_BODY_BYTES: fetch.max_body_bytes: `lots`"),
        "{shown}"
    );
    let d = ConfigLayer::from_flags([("writer.rotate_bytes", "--rotate-bytes", "2X")]).unwrap_err();
    let shown = d[0].to_string();
    assert!(
        shown.starts_with("--rotate-bytes: writer.rotate_bytes: `2X` is not a byte size"),
        "{shown}"
    );
    // A float is not a size in TOML (a string with a unit is).
    let d = ConfigLayer::from_toml("p.toml", "[fetch]\nmax_body_bytes = 1.5\n").unwrap_err();
    assert!(
        d[0].to_string().contains("expected a byte size"),
        "{}",
        d[0]
    );
}

#[test]
fn transform_tables_are_read_in_order_with_their_positions() {
    let text = "out = \"x.parquet\"\n\
                [[transform]]\n\
                filter = 'level != \"DEBUG\"'\n\
                \n\
                [[transform]]\n\
                drop = [\"a\"]\n";
    let cfg = Config::from_toml(text).unwrap();
    assert_eq!(cfg.transform.len(), 2);
    let f = &cfg.transform[0];
    assert_eq!(f.filter.as_deref(), Some("level != \"DEBUG\""));
    assert_eq!(
        (f.at.line, f.at.expr_line, f.at.expr_column, f.at.index),
        (3, 3, 11, 0)
    );
    assert_eq!(
        (cfg.transform[1].at.line, cfg.transform[1].at.index),
        (6, 1)
    );
    assert_eq!(
        cfg.transform[1].drop.as_deref(),
        Some(&["a".to_string()][..])
    );
}

#[test]
fn a_bad_filter_expression_is_reported_at_its_line_and_column() {
    let text = "[[transform]]\nfilter = 'a == 1 and'\n[[transform]]\nfilter = '''\nlevel == \"x\"\n  or = 3'''\n";
    let diags = check_toml("p.toml", text);
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        [
            "p.toml:2: transform[0].filter: column 21: expected a field or a value, found the end of the expression",
            "p.toml:6: transform[1].filter: column 6: `=` is not an operator: compare with `==`"
        ],
        "{shown:#?}"
    );
}

#[test]
fn a_transform_table_takes_exactly_one_known_action() {
    let text = "[[transform]]\nfilter = 'a > 1'\ndrop = [\"b\"]\n[[transform]]\n[[transform]]\nfliter = 'a'\n[[transform]]\ncast = { a = \"int\" }\n[[transform]]\nset = { k = { meta = \"kafka_ofset\" } }\n";
    let shown: Vec<String> = check_toml("p.toml", text)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(shown.len(), 5, "{shown:#?}");
    assert!(shown[0].starts_with("p.toml:2: transform[0]: a [[transform]] table takes exactly one of filter, drop, rename, set, cast (found filter, drop)"), "{shown:#?}");
    assert!(
        shown[1].starts_with("p.toml:4: transform[1]:") && shown[1].contains("found none"),
        "{shown:#?}"
    );
    assert!(
        shown[2].starts_with("p.toml:6: transform[2].fliter: unknown key; did you mean `filter`?"),
        "{shown:#?}"
    );
    assert!(
        shown[3].starts_with("p.toml:8: transform[3].cast: cast: `a` to `int`"),
        "{shown:#?}"
    );
    assert!(
        shown[4].contains("`kafka_ofset` is no metadata (source_url, source_file, fetched_at, kafka_partition, kafka_offset)")
            && shown[4].starts_with("p.toml:10:"),
        "{shown:#?}"
    );
}

#[test]
fn a_set_value_of_no_known_form_is_refused_with_the_forms() {
    for bad in [
        "[1, 2]",
        "{ field = \"a\", meta = \"fetched_at\" }",
        "{ column = \"a\" }",
    ] {
        let text = format!("[[transform]]\nset = {{ x = {bad} }}\n");
        let shown: Vec<String> = check_toml("p.toml", &text)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(shown.len(), 1, "{bad}: {shown:?}");
        assert!(
            shown[0].starts_with("p.toml:2: transform[0]: set: each value is a constant"),
            "{bad}: {shown:?}"
        );
    }
}

#[test]
fn kafka_properties_of_later_layers_replace_the_same_property_and_keep_the_others() {
    let file = ConfigLayer::from_toml(
        "pinflow.toml",
        "[kafka]\nproperties = [\"security.protocol=sasl_ssl\", \"sasl.password=a=b\", \"linger.ms=20\"]\n",
    )
    .unwrap();
    let env = ConfigLayer::from_env([(
        "PINFLOW_KAFKA_PROPERTIES".to_string(),
        "sasl.username=pinflow".to_string(),
    )])
    .unwrap();
    let flags = ConfigLayer::from_flags([
        ("kafka.properties", "--kafka-property", "linger.ms = 5"),
        (
            "kafka.properties",
            "--kafka-property",
            "session.timeout.ms=6000",
        ),
    ])
    .unwrap();
    let cfg = Config::from_layers(&[file, env, flags]).unwrap();
    assert_eq!(
        cfg.kafka.properties,
        [
            "security.protocol=sasl_ssl",
            "sasl.password=a=b",
            "sasl.username=pinflow",
            "linger.ms = 5",
            "session.timeout.ms=6000"
        ]
    );
    // Other lists still replace: a flag's `--header` is the whole list.
    let file = ConfigLayer::from_toml("f.toml", "[fetch]\nheaders = [\"X-A: 1\"]\n").unwrap();
    let flags = ConfigLayer::from_flags([("fetch.headers", "--header", "X-B: 2")]).unwrap();
    assert_eq!(
        Config::from_layers(&[file, flags]).unwrap().fetch.headers,
        ["X-B: 2"]
    );
}

#[test]
fn kafka_properties_problems_name_the_layer_that_holds_the_entry() {
    let file = ConfigLayer::from_toml(
        "pinflow.toml",
        "[kafka]\nproperties = [\"linger.ms=20\", \"hunter2\", \"metadata.broker.list=x:9\"]\n",
    )
    .unwrap();
    let flags = ConfigLayer::from_flags([
        ("kafka.properties", "--kafka-property", "linger.ms=5"),
        (
            "kafka.properties",
            "--kafka-property",
            "request.required.acks=1",
        ),
    ])
    .unwrap();
    let layers = [file, flags];
    let cfg = Config::from_layers(&layers).unwrap();
    let found: Vec<String> = cfg
        .problems_in(&layers)
        .iter()
        .map(|d| format!("{}: {}", d.origin.as_ref().unwrap().name, d.message))
        .collect();
    assert_eq!(
        found,
        [
            "pinflow.toml: entry 2 is not `name=value`",
            "pinflow.toml: `metadata.broker.list` is set by pinflow itself and cannot be changed",
            "--kafka-property: `request.required.acks` is set by pinflow itself and cannot be changed",
        ],
        "each where it was written, counted in its own list, no value shown"
    );
}

#[test]
fn kafka_properties_set_under_an_alias_keep_the_last_one() {
    let file = ConfigLayer::from_toml(
        "f.toml",
        "[kafka]\nproperties = [\"sasl.mechanisms=SCRAM-SHA-512\", \"queue.buffering.max.ms=20\"]\n",
    )
    .unwrap();
    let flags = ConfigLayer::from_flags([(
        "kafka.properties",
        "--kafka-property",
        "sasl.mechanism=PLAIN",
    )])
    .unwrap();
    let cfg = Config::from_layers(&[file, flags]).unwrap();
    assert_eq!(
        cfg.kafka.properties,
        ["queue.buffering.max.ms=20", "sasl.mechanism=PLAIN"]
    );
    // Within one list too: what reaches librdkafka sets each property once, the last value;
    // `topic.` before a topic property is the same property (not before a global one).
    let one = crate::kafka::properties_of(&[
        "linger.ms=5".into(),
        "acks-less".into(),
        "queue.buffering.max.ms=7".into(),
        "auto.offset.reset=earliest".into(),
        "topic.auto.offset.reset=latest".into(),
        "topic.metadata.refresh.interval.ms=1000".into(),
        "metadata.refresh.interval.ms=5".into(),
        "sasl.password=a=b".into(),
    ]);
    let names: Vec<&str> = one.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "queue.buffering.max.ms",
            "topic.auto.offset.reset",
            "topic.metadata.refresh.interval.ms",
            "metadata.refresh.interval.ms",
            "sasl.password"
        ]
    );
    assert_eq!(one[4].1, "a=b");
    // Another name of a property pinflow sets is refused as that one is.
    let mut c = Config::default();
    c.kafka.properties = vec!["topic.request.required.acks=0".into()];
    let bad = format!("{:?}", c.problems());
    assert!(
        bad.contains("`topic.request.required.acks` is set by pinflow"),
        "{bad}"
    );
}

#[test]
fn kafka_properties_changed_after_the_layers_are_still_checked() {
    let file =
        ConfigLayer::from_toml("f.toml", "[kafka]\nproperties = [\"linger.ms=5\"]\n").unwrap();
    let layers = [file];
    let mut cfg = Config::from_layers(&layers).unwrap();
    cfg.kafka.properties.push("group.id=other".into());
    let found = cfg.problems_in(&layers);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].origin.is_none() && found[0].message.contains("`group.id`"));
}

#[test]
fn kafka_properties_are_name_value_and_never_pinflows_own() {
    let problems = |props: &[&str]| {
        let mut c = Config::default();
        c.kafka.properties = props.iter().map(|p| p.to_string()).collect();
        c.problems()
            .into_iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
    };
    assert!(problems(&["linger.ms=5", "sasl.password=a=b"]).is_empty());
    let bad = problems(&["acks=0"]).join("\n");
    assert!(
        bad.contains("kafka.properties") && bad.contains("`acks`"),
        "{bad}"
    );
    // A malformed entry is named by its position, not shown: it may be a secret.
    let bad = problems(&["linger.ms=5", "hunter2"]).join("\n");
    assert!(bad.contains("entry 2 is not `name=value`"), "{bad}");
    assert!(!bad.contains("hunter2"), "{bad}");
    assert_eq!(
        format!(
            "{:?}",
            KafkaConfig {
                key_field: None,
                properties: vec!["sasl.password=hunter2".into()],
                ..KafkaConfig::default()
            }
        ),
        "KafkaConfig { key_field: None, properties: [\"sasl.password\"], brokers: None, \
         topics: [], group: None, exit_at_end: false, batch_max_messages: 4096, \
         batch_max_bytes: 1048576 }"
    );
}

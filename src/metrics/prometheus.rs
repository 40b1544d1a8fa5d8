//! The Prometheus text exposition format (version 0.0.4) of a [`Registry`].
//!
//! Names follow the Prometheus conventions: a `pinflow_` prefix, base units (seconds, bytes),
//! `_total` on counters. Stage latencies are histograms with the fixed buckets of
//! [`super::BUCKETS_US`] (`pinflow_stage_duration_seconds`); the older summary of lifetime
//! quantiles (`pinflow_stage_latency_seconds`) stays for the dashboards built on it, marked
//! deprecated. The standard `process_*` metrics come last, where the OS reports them.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::live::{KafkaPartitionStats, QueueId, Registry, Stage};

/// Quantiles exported for each latency summary.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Renders every metric of `r`.
pub fn render(r: &Registry) -> String {
    let mut o = String::with_capacity(8 << 10);
    let _ = writeln!(
        o,
        "# HELP pinflow_build_info The pinflow version.\n# TYPE pinflow_build_info gauge\npinflow_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    gauge(
        &mut o,
        "pinflow_uptime_seconds",
        "Seconds since the pipeline was created.",
        r.uptime().as_secs_f64(),
    );
    gauge(
        &mut o,
        "pinflow_ready",
        "1 while the pipeline runs and is not draining.",
        if r.ready() { 1.0 } else { 0.0 },
    );

    requests(&mut o, r);
    records(&mut o, r);
    windows(&mut o, r);
    tail(&mut o, r);
    receive(&mut o, r);
    kafka(&mut o, r);
    kafka_source(&mut o, r);
    uploads(&mut o, r);
    queues(&mut o, r);
    threads(&mut o, r);
    latencies(&mut o, r);
    enrichers(&mut o, r);
    process(&mut o);
    o
}

/// One counter family without labels.
fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

/// One gauge family without labels.
fn gauge(o: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Requests: admitted, by outcome and status class, retries, connections.
fn requests(o: &mut String, r: &Registry) {
    counter(
        o,
        "pinflow_requests_admitted_total",
        "Requests taken from the source (each ends delivered, failed or cancelled; the difference is in flight).",
        r.requests.load(Relaxed),
    );
    // The outcomes partition the finished requests: summing them over `outcome` counts each
    // request once (admitted, a count of another kind, has its own family above).
    let _ = writeln!(
        o,
        "# HELP pinflow_requests_total Finished requests by final outcome: delivered (2xx, complete body), failed (after retries), cancelled (ended by a stop before done; a resumed run fetches them).\n# TYPE pinflow_requests_total counter"
    );
    for (outcome, v) in [
        ("delivered", r.delivered.load(Relaxed)),
        ("failed", r.failed.load(Relaxed)),
        ("cancelled", r.cancelled.load(Relaxed)),
    ] {
        let _ = writeln!(o, "pinflow_requests_total{{outcome=\"{outcome}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_responses_total HTTP responses by status class.\n# TYPE pinflow_responses_total counter"
    );
    for (i, n) in r.responses_by_class.iter().enumerate() {
        let _ = writeln!(
            o,
            "pinflow_responses_total{{class=\"{}xx\"}} {}",
            i + 1,
            n.load(Relaxed)
        );
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_request_failures_total Requests failed for good, by reason.\n# TYPE pinflow_request_failures_total counter"
    );
    for (reason, n) in r.failed_by_reason.lock().iter() {
        let _ = writeln!(
            o,
            "pinflow_request_failures_total{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }
    counter(
        o,
        "pinflow_retries_total",
        "Attempts repeated after an error or timeout.",
        r.retries.load(Relaxed),
    );
    counter(
        o,
        "pinflow_stale_reconnects_total",
        "Requests re-sent because the server had closed a kept-alive connection.",
        r.stale_reconnects.load(Relaxed),
    );
    counter(
        o,
        "pinflow_connections_opened_total",
        "TCP connections opened.",
        r.connections_opened.load(Relaxed),
    );
    counter(
        o,
        "pinflow_received_bytes_total",
        "Response body bytes received for delivered requests.",
        r.body_bytes.load(Relaxed),
    );
    gauge(
        o,
        "pinflow_in_flight_requests",
        "Requests admitted and not finished.",
        r.in_flight.load(Relaxed) as f64,
    );
    gauge(
        o,
        "pinflow_open_connections",
        "Open HTTP connections.",
        r.open_connections.load(Relaxed) as f64,
    );
    let _ = writeln!(
        o,
        "# HELP pinflow_fetch_blocked_seconds_total Time the fetch thread waited on a full queue (back-pressure).\n# TYPE pinflow_fetch_blocked_seconds_total counter\npinflow_fetch_blocked_seconds_total {}",
        r.fetch_blocked_ns.load(Relaxed) as f64 / 1e9
    );
}

/// Records through the stages, dead letters by reason, rows, row groups and files.
fn records(o: &mut String, r: &Registry) {
    let _ = writeln!(
        o,
        "# HELP pinflow_records_total Records leaving each stage.\n# TYPE pinflow_records_total counter"
    );
    for (stage, v) in [
        ("parse", r.records_parsed.load(Relaxed)),
        ("compute", r.records_computed.load(Relaxed)),
        ("write", r.records_written.load(Relaxed)),
    ] {
        let _ = writeln!(o, "pinflow_records_total{{stage=\"{stage}\"}} {v}");
    }
    counter(
        o,
        "pinflow_records_filtered_total",
        "Rows transforms filtered out (counted, not lost).",
        r.records_filtered.load(Relaxed),
    );
    counter(
        o,
        "pinflow_dead_letters_total",
        "Records and bodies sent to the dead-letter file (by the parse stage and the transforms).",
        r.records_dead_lettered.load(Relaxed),
    );
    let _ = writeln!(
        o,
        "# HELP pinflow_dead_letters_by_reason_total Dead letters by reason.\n# TYPE pinflow_dead_letters_by_reason_total counter"
    );
    for (reason, n) in r.dead_by_reason.lock().iter() {
        let _ = writeln!(
            o,
            "pinflow_dead_letters_by_reason_total{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }
    counter(
        o,
        "pinflow_short_path_batches_total",
        "Body batches handed straight to the writer while the pipeline was idle (parsed there: one thread hand-off instead of two).",
        r.short_path_batches.load(Relaxed),
    );
    counter(
        o,
        "pinflow_short_path_joins_total",
        "Body batches that joined a short-path batch still waiting for the writer, and reached it with that batch.",
        r.short_path_joins.load(Relaxed),
    );
    counter(
        o,
        "pinflow_row_groups_total",
        "Parquet row groups closed.",
        r.row_groups.load(Relaxed),
    );
    counter(
        o,
        "pinflow_files_finalized_total",
        "Parquet files finalized and renamed into place.",
        r.files_finalized.load(Relaxed),
    );
    gauge(
        o,
        "pinflow_last_successful_write_timestamp_seconds",
        "When a Parquet row group or file was last written successfully, in seconds since the Unix epoch (0: nothing written yet).",
        r.last_write_unix_ms.load(Relaxed) as f64 / 1e3,
    );
    counter(
        o,
        "pinflow_cycles_total",
        "Passes over the sources completed (continuous mode polls again and again).",
        r.cycles.load(Relaxed),
    );
    if let Some((v, timestamp)) = r.since.get() {
        let help = match timestamp {
            true => "The `{since}` position (fetch.since_field): the highest value among the rows that reached the writer, in microseconds since the Unix epoch. Absent before the first row.",
            false => "The `{since}` position (fetch.since_field): the highest value among the rows that reached the writer. Absent before the first row.",
        };
        gauge(o, "pinflow_since_position", help, v as f64);
    }
}

/// Time windows: open pairs, rows emitted, late records, early closes, watermark lag.
/// The Kafka output, once one has started.
/// The object-storage uploader's figures (none unless the output is `s3://`).
fn uploads(o: &mut String, r: &Registry) {
    let Some(u) = r.uploads.lock().clone() else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let oldest = u.oldest_staged_unix.load(Relaxed);
    let figures: [(&str, &str, f64); 4] = [
        (
            "pinflow_s3_staged_bytes",
            "Bytes of finished files in the staging directory, waiting for or in upload.",
            u.staged_bytes.load(Relaxed) as f64,
        ),
        (
            "pinflow_s3_staged_files",
            "Finished files in the staging directory, waiting for or in upload.",
            u.staged_files.load(Relaxed) as f64,
        ),
        (
            "pinflow_s3_oldest_staged_age_seconds",
            "How long the oldest staged file has waited (0: none waits).",
            match oldest {
                0 => 0.0,
                t => now.saturating_sub(t) as f64,
            },
        ),
        (
            "pinflow_s3_uploads_in_flight",
            "Files being uploaded (one uploader thread: 0 or 1).",
            u.in_flight.load(Relaxed) as f64,
        ),
    ];
    for (name, help, v) in figures {
        gauge(o, name, help, v);
    }
    counter(
        o,
        "pinflow_s3_request_retries_total",
        "Requests to the store (parts and the rest) retried after a transient failure.",
        u.retries.load(Relaxed),
    );
    counter(
        o,
        "pinflow_s3_uploaded_bytes_total",
        "Bytes of files uploaded (objects complete in the store).",
        u.bytes_uploaded.load(Relaxed),
    );
    counter(
        o,
        "pinflow_s3_uploaded_files_total",
        "Files uploaded (objects complete in the store).",
        u.files_uploaded.load(Relaxed),
    );
}

fn kafka(o: &mut String, r: &Registry) {
    let k = &r.kafka;
    if !k.active.load(Relaxed) {
        return;
    }
    gauge(
        o,
        "pinflow_kafka_producer_queue_depth",
        "Messages handed to the Kafka producer and not yet acknowledged or failed.",
        k.queue_depth.load(Relaxed) as f64,
    );
    counter(
        o,
        "pinflow_kafka_messages_delivered_total",
        "Messages the Kafka broker acknowledged (counted written only then).",
        k.delivered.load(Relaxed),
    );
    counter(
        o,
        "pinflow_kafka_delivery_failures_total",
        "Messages whose delivery failed for good, dead-lettered with the broker's reason.",
        k.delivery_failed.load(Relaxed),
    );
    counter(
        o,
        "pinflow_kafka_queue_full_waits_total",
        "Times the writer waited because the Kafka producer's queue was full (back-pressure).",
        k.queue_full_waits.load(Relaxed),
    );
}

/// The Kafka source, once one has started: rebalances, per-partition consumption, and the
/// lag of the partitions owned now.
fn kafka_source(o: &mut String, r: &Registry) {
    let k = &r.kafka_source;
    if !k.active.load(Relaxed) {
        return;
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_kafka_rebalanced_partitions_total Partitions assigned to or revoked from this group member.\n# TYPE pinflow_kafka_rebalanced_partitions_total counter"
    );
    for (kind, n) in [("assigned", &k.assigned), ("revoked", &k.revoked)] {
        let _ = writeln!(
            o,
            "pinflow_kafka_rebalanced_partitions_total{{change=\"{kind}\"}} {}",
            n.load(Relaxed)
        );
    }
    let partitions = k.partitions.lock().clone();
    gauge(
        o,
        "pinflow_kafka_partitions_owned",
        "Partitions this group member owns now.",
        partitions.values().filter(|p| p.owned).count() as f64,
    );
    type Count = fn(&KafkaPartitionStats) -> u64;
    let ledger: [(&str, &str, Count); 5] = [
        (
            "pinflow_kafka_messages_consumed_total",
            "Messages read from each partition by this member.",
            |p| p.consumed,
        ),
        (
            "pinflow_kafka_messages_written_total",
            "Messages of each partition whose records the writer wrote, counted when committed.",
            |p| p.written,
        ),
        (
            "pinflow_kafka_messages_dead_lettered_total",
            "Messages of each partition that gave only dead letters, counted when committed.",
            |p| p.dead_lettered,
        ),
        (
            "pinflow_kafka_offsets_deleted_unread_total",
            "Offsets of each partition the broker deleted before this member read them (retention): messages lost.",
            |p| p.deleted_unread,
        ),
        (
            "pinflow_kafka_offsets_skipped_by_reset_total",
            "Offsets of each partition that auto.offset.reset=latest skipped when this member's position had been deleted: messages the broker still had, not read.",
            |p| p.skipped_by_reset,
        ),
    ];
    for (name, help, value) in ledger {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
        for ((topic, partition), p) in &partitions {
            let _ = writeln!(
                o,
                "{name}{{topic=\"{}\",partition=\"{partition}\"}} {}",
                escape(topic),
                value(p)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_kafka_consumer_lag Messages past this member's position, per partition owned now (librdkafka's statistics, each second).\n# TYPE pinflow_kafka_consumer_lag gauge"
    );
    for ((topic, partition), p) in &partitions {
        if let (true, Some(lag)) = (p.owned, p.lag) {
            let _ = writeln!(
                o,
                "pinflow_kafka_consumer_lag{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
                escape(topic)
            );
        }
    }
}

fn windows(o: &mut String, r: &Registry) {
    let w = &r.window;
    gauge(
        o,
        "pinflow_window_open",
        "Open (key, window) pairs held by the window operator.",
        w.open.load(Relaxed) as f64,
    );
    counter(
        o,
        "pinflow_window_rows_emitted_total",
        "Window rows written (one per key and window, once the watermark passed its end, or at idle, end of input or stop).",
        w.rows_emitted.load(Relaxed),
    );
    counter(
        o,
        "pinflow_window_late_total",
        "Records dead-lettered as late: every window they belong to had already been written.",
        w.late.load(Relaxed),
    );
    counter(
        o,
        "pinflow_window_closed_early_total",
        "(key, window) pairs written early, marked partial, because window.max_open was reached.",
        w.closed_early.load(Relaxed),
    );
    if let Some(lag) = w.watermark_lag_seconds() {
        gauge(
            o,
            "pinflow_window_watermark_lag_seconds",
            "Wall-clock time now minus the window watermark (highest event time seen less window.lateness, the minimum over source partitions that are not idle), in seconds: how far written windows trail real time. Absent before the first record.",
            lag,
        );
    }
}

/// The tail source: files followed, bytes read, rotations, truncations.
fn tail(o: &mut String, r: &Registry) {
    let t = &r.tail;
    gauge(
        o,
        "pinflow_tail_files",
        "Files the tail source follows now (0 for other sources).",
        t.files.load(Relaxed) as f64,
    );
    counter(
        o,
        "pinflow_tail_bytes_read_total",
        "Bytes the tail source read from the files it follows.",
        t.bytes_read.load(Relaxed),
    );
    counter(
        o,
        "pinflow_tail_rotations_total",
        "Followed files that left the tail pattern by a rename (rotation): read to their end, then let go of.",
        t.rotations.load(Relaxed),
    );
    counter(
        o,
        "pinflow_tail_truncations_total",
        "Followed files found shorter than the offset read (truncated), read again from their first byte.",
        t.truncations.load(Relaxed),
    );
}

/// The HTTP receive source: how long a request waited for its 200, by what made it durable.
fn receive(o: &mut String, r: &Registry) {
    let _ = writeln!(
        o,
        "# HELP pinflow_receive_ack_seconds HTTP receive: from a request's admission to its 200, by what made it durable first (the write-ahead log's fsync, or a journal checkpoint). Buckets 50us to 30s.\n# TYPE pinflow_receive_ack_seconds histogram"
    );
    let (log, checkpoint) = (
        r.receive.ack_from_log.lock().clone(),
        r.receive.ack_from_checkpoint.lock().clone(),
    );
    histogram(o, "pinflow_receive_ack_seconds", "from", "log", &log);
    histogram(
        o,
        "pinflow_receive_ack_seconds",
        "from",
        "checkpoint",
        &checkpoint,
    );
    counter(
        o,
        "pinflow_receive_tls_failures_total",
        "HTTP receive over TLS: connections closed for a failed handshake (a plain-HTTP client, an untrusted client certificate, a handshake past listen.header_timeout) or a bad TLS record.",
        r.receive.tls_failures.load(Relaxed),
    );
}

/// Queue depths and capacities.
fn queues(o: &mut String, r: &Registry) {
    let _ = writeln!(
        o,
        "# HELP pinflow_queue_depth Batches in each queue, as last seen by its producer or consumer.\n# TYPE pinflow_queue_depth gauge"
    );
    for q in QueueId::ALL {
        let _ = writeln!(
            o,
            "pinflow_queue_depth{{queue=\"{}\"}} {}",
            q.name(),
            r.queue(q).0
        );
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_queue_capacity Capacity of each queue, in batches.\n# TYPE pinflow_queue_capacity gauge"
    );
    for q in QueueId::ALL {
        let _ = writeln!(
            o,
            "pinflow_queue_capacity{{queue=\"{}\"}} {}",
            q.name(),
            r.queue(q).1
        );
    }
}

/// Each thread: busy seconds, state.
fn threads(o: &mut String, r: &Registry) {
    let uptime = r.uptime().as_secs_f64().max(1e-9);
    let _ = writeln!(
        o,
        "# HELP pinflow_thread_busy_seconds_total Time each stage thread spent working: time blocked on a queue, waiting in poll for the network or the next pass, or waiting for the source is idle.\n# TYPE pinflow_thread_busy_seconds_total counter"
    );
    let statuses: Vec<_> = (0..r.threads().len()).map(|i| r.thread_status(i)).collect();
    for (t, (_, _, busy)) in r.threads().iter().zip(&statuses) {
        let _ = writeln!(
            o,
            "pinflow_thread_busy_seconds_total{{thread=\"{}\"}} {busy}",
            t.name
        );
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_thread_busy_ratio Busy time over uptime, per stage thread (use rate() of the counter for recent load).\n# TYPE pinflow_thread_busy_ratio gauge"
    );
    for (t, (_, _, busy)) in r.threads().iter().zip(&statuses) {
        let _ = writeln!(
            o,
            "pinflow_thread_busy_ratio{{thread=\"{}\"}} {}",
            t.name,
            busy / uptime
        );
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_thread_up 1 while a stage thread is alive and not failed.\n# TYPE pinflow_thread_up gauge"
    );
    for (t, (state, _, _)) in r.threads().iter().zip(&statuses) {
        let up = !matches!(
            state,
            super::live::ThreadState::Failed | super::live::ThreadState::Finished
        );
        let _ = writeln!(
            o,
            "pinflow_thread_up{{thread=\"{}\"}} {}",
            t.name,
            u8::from(up)
        );
    }
}

/// The `[[enrich]]` lookups' counters and latency histograms, labelled by enricher (none
/// when the run has no enricher).
fn enrichers(o: &mut String, r: &Registry) {
    let all = r.enrichers.lock().clone();
    if all.is_empty() {
        return;
    }
    type Read = fn(&super::live::EnrichStats) -> u64;
    let families: [(&str, &str, Read); 6] = [
        (
            "hits",
            "Lookup keys answered from the cache or the table (distinct keys per batch).",
            |e| e.hits.load(Relaxed),
        ),
        (
            "misses",
            "Lookup keys asked over HTTP (distinct keys per batch).",
            |e| e.misses.load(Relaxed),
        ),
        (
            "coalesced",
            "Lookups that joined one in flight for the same key (no call of their own).",
            |e| e.coalesced.load(Relaxed),
        ),
        (
            "negative_hits",
            "Keys answered \"no value\" from the cache (404, empty) or missing from the table.",
            |e| e.negative_hits.load(Relaxed),
        ),
        (
            "stale_served",
            "Stale answers served (while revalidating, or because the lookup failed).",
            |e| e.stale_served.load(Relaxed),
        ),
        ("retries", "Lookup attempts retried.", |e| {
            e.retries.load(Relaxed)
        }),
    ];
    for (what, help, value) in families {
        let name = format!("pinflow_enrich_{what}_total");
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
        for e in &all {
            let _ = writeln!(o, "{name}{{enricher=\"{}\"}} {}", escape(&e.name), value(e));
        }
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_enrich_errors_total Failed lookups (and rows with no key) by reason class.\n# TYPE pinflow_enrich_errors_total counter"
    );
    for e in &all {
        for (reason, n) in e.errors.lock().iter() {
            let _ = writeln!(
                o,
                "pinflow_enrich_errors_total{{enricher=\"{}\",reason=\"{reason}\"}} {n}",
                escape(&e.name)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_enrich_lookup_duration_seconds Lookup latency, first try to answer. Buckets 50us to 30s.\n# TYPE pinflow_enrich_lookup_duration_seconds histogram"
    );
    for e in &all {
        let h = e.lookup_latency.lock().clone();
        histogram(
            o,
            "pinflow_enrich_lookup_duration_seconds",
            "enricher",
            &e.name,
            &h,
        );
    }
}

/// One histogram's buckets, sum and count, with one label.
fn histogram(o: &mut String, family: &str, label: &str, value: &str, h: &super::Latency) {
    let value = escape(value);
    for (bound, n) in h.cumulative_buckets() {
        let le = match bound {
            Some(us) => (us as f64 / 1e6).to_string(),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(o, "{family}_bucket{{{label}=\"{value}\",le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "{family}_sum{{{label}=\"{value}\"}} {}\n{family}_count{{{label}=\"{value}\"}} {}",
        h.sum_us() / 1e6,
        h.percentiles().count
    );
}

/// Per-stage latency histograms (fixed buckets) and the deprecated summaries.
fn latencies(o: &mut String, r: &Registry) {
    const WHAT: &str = "fetch per request, parse per body, compute and write per batch, end_to_end from response complete to row in a closed row group, handoff from response complete to the batch reaching the writer";
    // One lock per stage: a copy, so that both families show the same observations.
    let hists: Vec<_> = Stage::ALL
        .iter()
        .map(|&s| (s.name(), r.latency(s).clone()))
        .collect();
    let _ = writeln!(
        o,
        "# HELP pinflow_stage_duration_seconds Latency per stage: {WHAT}. Buckets 50us to 30s.\n# TYPE pinflow_stage_duration_seconds histogram"
    );
    for (name, h) in &hists {
        histogram(o, "pinflow_stage_duration_seconds", "stage", name, h);
    }
    let _ = writeln!(
        o,
        "# HELP pinflow_stage_latency_seconds Deprecated, use pinflow_stage_duration_seconds (a histogram: aggregates across instances, rate() over a window). Lifetime quantiles of the latency per stage: {WHAT}.\n# TYPE pinflow_stage_latency_seconds summary"
    );
    for (name, h) in &hists {
        for q in QUANTILES {
            let _ = writeln!(
                o,
                "pinflow_stage_latency_seconds{{stage=\"{name}\",quantile=\"{q}\"}} {}",
                h.quantile_us(q) as f64 / 1e6
            );
        }
        let _ = writeln!(
            o,
            "pinflow_stage_latency_seconds_sum{{stage=\"{name}\"}} {}",
            h.sum_us() / 1e6
        );
        let _ = writeln!(
            o,
            "pinflow_stage_latency_seconds_count{{stage=\"{name}\"}} {}",
            h.percentiles().count
        );
    }
}

/// The standard process metrics, named as the Prometheus client libraries name them; each is
/// left out where the OS does not report it.
fn process(o: &mut String) {
    let p = super::process_stats();
    let families: [(&str, &str, &str, Option<f64>); 5] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            p.max_fds.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, v) in families {
        if let Some(v) = v {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Role;

    #[test]
    fn renders_counters_labels_and_summaries() {
        let r = Registry::new(&[Role::Fetch, Role::Parse(0), Role::Writer]);
        r.add_parsed(10, 2, &[("wrong \"type\"".into(), 2)]);
        r.latency(Stage::Parse)
            .record(std::time::Duration::from_micros(150));
        let text = render(&r);
        assert!(
            text.contains("pinflow_records_total{stage=\"parse\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("pinflow_dead_letters_by_reason_total{reason=\"wrong \\\"type\\\"\"} 2"),
            "{text}"
        );
        assert!(text.contains("pinflow_stage_latency_seconds_count{stage=\"parse\"} 1\n"));
        assert!(text.contains("pinflow_thread_up{thread=\"parse-0\"} 1\n"));
        assert_eq!(
            text.matches("# TYPE pinflow_fetch_blocked_seconds_total")
                .count(),
            1
        );
        assert!(
            text.contains("\npinflow_fetch_blocked_seconds_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn latency_is_a_histogram_with_fixed_cumulative_buckets() {
        let r = Registry::new(&[Role::Fetch]);
        for us in [40, 150, 150, 2_000_000] {
            r.latency(Stage::Fetch)
                .record(std::time::Duration::from_micros(us));
        }
        let text = render(&r);
        assert!(text.contains("# TYPE pinflow_stage_duration_seconds histogram\n"));
        let line = |le: &str| {
            format!("pinflow_stage_duration_seconds_bucket{{stage=\"fetch\",le=\"{le}\"}} ")
        };
        for (le, n) in [
            ("0.00005", 1),
            ("0.0001", 1),
            ("0.00025", 3),
            ("2.5", 4),
            ("30", 4),
            ("+Inf", 4),
        ] {
            assert!(text.contains(&format!("{}{n}\n", line(le))), "{le}: {text}");
        }
        assert!(text.contains("pinflow_stage_duration_seconds_count{stage=\"fetch\"} 4\n"));
        assert!(
            text.contains("pinflow_stage_duration_seconds_sum{stage=\"fetch\"} 2.00034\n"),
            "{text}"
        );
        // The summary stays for existing dashboards, saying what replaces it.
        assert!(text.contains(
            "# HELP pinflow_stage_latency_seconds Deprecated, use pinflow_stage_duration_seconds"
        ));
    }

    #[test]
    fn request_outcomes_partition_the_requests_and_admitted_is_its_own_counter() {
        let r = Registry::new(&[Role::Fetch]);
        let s = crate::metrics::FetchStats {
            requests: 10,
            delivered: 6,
            failed: 1,
            cancelled: 3,
            ..Default::default()
        };
        r.publish_fetch(&s, 0, 0);
        let text = render(&r);
        assert!(!text.contains("outcome=\"admitted\""), "{text}");
        assert!(
            text.contains("\npinflow_requests_admitted_total 10\n"),
            "{text}"
        );
        let outcomes: u64 = text
            .lines()
            .filter(|l| l.starts_with("pinflow_requests_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(outcomes, 10, "delivered + failed + cancelled: {text}");
        assert!(text.contains("pinflow_requests_total{outcome=\"cancelled\"} 3\n"));
    }

    #[test]
    fn last_write_timestamp_and_process_metrics_are_exposed() {
        let r = Registry::new(&[Role::Writer]);
        assert!(render(&r).contains("\npinflow_last_successful_write_timestamp_seconds 0\n"));
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        r.wrote(0, 0);
        assert_eq!(r.last_write_unix_ms.load(Relaxed), 0, "nothing written");
        r.wrote(1, 0);
        let text = render(&r);
        let stamp: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("pinflow_last_successful_write_timestamp_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            stamp >= before - 1.0 && stamp < before + 60.0,
            "{stamp} vs {before}"
        );
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_max_fds",
                "process_start_time_seconds",
            ] {
                assert!(text.contains(&format!("# TYPE {name} ")), "{name}: {text}");
                assert!(text.contains(&format!("\n{name} ")), "{name}: {text}");
            }
        }
    }
}

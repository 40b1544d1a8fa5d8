//! The output side: rotation by rows and bytes, row groups bounded by size, Hive-style partitioning with a bound on open
//! files, row groups closed by age, LZ4, key-value metadata, dead-letter rotation, and a full
//! disk (RLIMIT_FSIZE) stopping the run cleanly with every finalized file intact.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::Array;
use parquet::file::reader::{FileReader, SerializedFileReader};
use pinflow::sim::{SimConfig, Simulator, Workload};
use pinflow::{Compression, Config, Pipeline, Source};

/// Every `*.parquet` file under `dir`, recursively, sorted; asserts that no temporary file
/// (hidden name) was left anywhere.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file left: {name}");
        let path = e.path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn reader(path: &Path) -> SerializedFileReader<File> {
    SerializedFileReader::new(File::open(path).unwrap()).unwrap()
}

fn num_row_groups(path: &Path) -> usize {
    reader(path).metadata().num_row_groups()
}

/// The file's key-value metadata.
fn key_values(path: &Path) -> HashMap<String, String> {
    reader(path)
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

/// The simulator's records `first..=last`, one per request.
fn logs(sim: &Simulator, first: u64, last: u64) -> Source {
    Source::from_arg(&sim.url(&format!("/logs/{{{first}..{last}}}.json"))).unwrap()
}

/// `STEM-YYYYMMDDTHHMMSSZ-NNNNN.parquet`.
fn is_rotated_name(name: &str, stem: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!("{stem}-")) else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(".parquet") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 22
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
        && b[17..].iter().all(u8::is_ascii_digit)
}

#[test]
fn rotation_by_rows_splits_batches_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let mut cfg = Config::new(dir.path().join("logs.parquet"));
    cfg.writer.rotate_rows = Some(1000);
    cfg.writer.row_group_rows = 300;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(logs(&sim, 1, 2500))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(summary.files, 3);
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    for (n, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_rotated_name(&name, "logs"), "{name}");
        assert!(name.ends_with(&format!("-{:05}.parquet", n + 1)), "{name}");
        let rows = rows(f);
        sizes.push(rows.len());
        all.extend(rows);
    }
    // Names sort by time and sequence, so the last one holds the remainder.
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_rows_match_workload(&all, &Workload::default(), 1..=2500);
    // row_group_rows = 300 within each file: 4 row groups for 1000 rows.
    assert_eq!(num_row_groups(&files[0]), 4);
    sim.stop();
}

#[test]
fn rotation_by_bytes_gives_files_near_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let limit: u64 = 300_000;
    let mut cfg = Config::new(dir.path().join("b.parquet"));
    cfg.writer.rotate_bytes = Some(limit);
    cfg.writer.row_group_rows = 500;
    cfg.writer.compression = Compression::None;
    let n = 3000;
    let summary = Pipeline::new(cfg).unwrap().run(logs(&sim, 1, n)).unwrap();
    let files = parquet_files(dir.path());
    assert_eq!(files.len() as u64, summary.files);
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    let total: u64 = sizes.iter().sum();
    // Every file but the last was finalized once it reached the limit (the estimate counts
    // the open row group before compression, so a file may end somewhat under it on disk,
    // and over it by at most one batch).
    assert!(files.len() >= 3, "{sizes:?}");
    for s in &sizes[..sizes.len() - 1] {
        assert!(*s >= limit / 2 && *s <= 3 * limit, "{sizes:?}");
    }
    assert!(
        files.len() as u64 <= total / (limit / 2) + 1,
        "{sizes:?} for {total} bytes"
    );
    let mut all = Vec::new();
    for f in &files {
        assert!(is_rotated_name(
            &f.file_name().unwrap().to_string_lossy(),
            "b"
        ));
        all.extend(rows(f));
    }
    assert_rows_match_workload(&all, &Workload::default(), 1..=n);
    sim.stop();
}

#[test]
fn row_groups_are_closed_by_their_size_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("g.parquet");
    let mut cfg = Config::new(&out);
    // Rows alone would make one row group; the byte bound makes several, each about 200 kB
    // of encoded data (the simulator's records are ~880 B of JSON).
    cfg.writer.row_group_rows = 1 << 20;
    cfg.writer.row_group_max_bytes = 200_000;
    cfg.writer.compression = Compression::None;
    let n = 3000;
    Pipeline::new(cfg).unwrap().run(logs(&sim, 1, n)).unwrap();
    let r = reader(&out);
    let groups: Vec<i64> = r
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert!(groups.len() >= 3, "row groups of {groups:?} rows");
    assert_eq!(groups.iter().sum::<i64>(), n as i64);
    // Each closed group stayed near the bound in memory, so it is near it on disk too.
    for g in r.metadata().row_groups().iter().rev().skip(1) {
        let bytes = g.total_byte_size();
        assert!(
            (50_000..=600_000).contains(&bytes),
            "a row group of {bytes} bytes for a 200000-byte bound: {groups:?}"
        );
    }
    assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=n);
    // Without the bound: one row group.
    let mut cfg = Config::new(dir.path().join("one.parquet"));
    cfg.writer.row_group_rows = 1 << 20;
    cfg.writer.row_group_max_bytes = 0;
    Pipeline::new(cfg).unwrap().run(logs(&sim, 1, n)).unwrap();
    assert_eq!(num_row_groups(&dir.path().join("one.parquet")), 1);
    sim.stop();
}

/// The data pages of the `values` column in row group 0: (count, largest size in bytes).
fn values_pages(path: &Path) -> (usize, i32) {
    let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
        .with_page_index()
        .build();
    let r = SerializedFileReader::new_with_options(File::open(path).unwrap(), options).unwrap();
    let col = r
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string().starts_with("values"))
        .expect("a values column");
    let pages = r
        .metadata()
        .page_index_for_row_group(0)
        .page_locations(col)
        .expect("an offset index")
        .clone();
    let largest = pages.iter().map(|p| p.compressed_page_size).max().unwrap();
    (pages.len(), largest)
}

#[test]
fn data_pages_are_cut_at_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let n = 3000; // 192,000 values, 1.5 MB uncompressed: one row group
    let mut sizes = Vec::new();
    for (name, page) in [("small", 64 << 10), ("default", 0)] {
        let out = dir.path().join(format!("{name}.parquet"));
        let mut cfg = Config::new(&out);
        cfg.writer.compression = Compression::None;
        if page > 0 {
            cfg.writer.data_page_bytes = page;
        }
        Pipeline::new(cfg).unwrap().run(logs(&sim, 1, n)).unwrap();
        assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=n);
        sizes.push(values_pages(&out));
    }
    let (small, default) = (sizes[0], sizes[1]);
    // Pages are cut after the mini-batch that crosses the limit (1024 values, 8 KiB here).
    assert!(
        small.1 <= (64 << 10) + (16 << 10),
        "64 KiB pages: {small:?}"
    );
    assert!(
        default.1 > (64 << 10) + (16 << 10) && default.1 <= (256 << 10) + (16 << 10),
        "default (256 KiB) pages: {default:?}"
    );
    assert!(small.0 >= 3 * default.0, "{small:?} against {default:?}");
    sim.stop();
}

/// The Hive directory of a simulator record partitioned by service and date.
fn service_date(r: &pinflow::sim::Record) -> String {
    let mut ts = Vec::new();
    pinflow::time::format_rfc3339_micros(r.ts_micros, &mut ts);
    format!(
        "service={}/date={}",
        r.service,
        std::str::from_utf8(&ts[..10]).unwrap()
    )
}

#[test]
fn partitions_by_service_and_date_hold_only_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    // Record i is stamped i ms after 2026-11-24T00:00Z: these ids cross midnight.
    let (first, last) = (86_399_001u64, 86_401_000u64);
    let root = dir.path().join("dataset");
    let mut cfg = Config::new(&root);
    cfg.writer.partition_by = vec!["service".into(), "date".into()];
    cfg.writer.row_group_rows = 100;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .with_source_label("partition test")
        .run(logs(&sim, first, last))
        .unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!(summary.records_written, last - first + 1);

    let workload = Workload::default();
    let expected: BTreeSet<String> = (first..=last)
        .map(|i| service_date(&workload.record(i)))
        .collect();
    assert_eq!(expected.len(), 16, "8 services on 2 days");
    let files = parquet_files(&root);
    // Default max_open_partitions (64) holds all 16: one part each.
    assert_eq!(files.len(), 16);
    assert_eq!(summary.files, 16);
    let mut dirs = BTreeSet::new();
    let mut all = Vec::new();
    let mut run_ids = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        assert_eq!(rel.file_name().unwrap(), "part-00001.parquet");
        let partition = rel.parent().unwrap().to_string_lossy().into_owned();
        let rows = rows(f);
        assert!(!rows.is_empty());
        for r in &rows {
            assert_eq!(service_date(&r.record), partition, "id {}", r.record.id);
        }
        let kv = key_values(f);
        assert_eq!(kv["pinflow.source"], "partition test");
        run_ids.insert(kv["pinflow.run_id"].clone());
        dirs.insert(partition);
        all.extend(rows);
    }
    assert_eq!(dirs, expected);
    assert_eq!(run_ids.len(), 1, "one run id per run");
    assert_rows_match_workload(&all, &workload, first..=last);
    // The dead letters (none here) would go beside the dataset, not into it.
    assert_eq!(dir_names(dir.path()), ["dataset"]);
    sim.stop();
}

#[test]
fn few_open_partitions_still_hold_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let workload = Workload {
        page_size: 100,
        values_per_record: 4,
        ..Workload::default()
    };
    let sim = Simulator::start(SimConfig {
        workload: workload.clone(),
        ..SimConfig::default()
    })
    .unwrap();
    let root = dir.path().join("by-service");
    let mut cfg = Config::new(&root);
    cfg.writer.partition_by = vec!["service".into()];
    cfg.writer.max_open_partitions = 2;
    // Also rotate by rows inside each partition.
    cfg.writer.rotate_rows = Some(150);
    // Many small batches (each split by partition), so partitions take turns in the two files.
    cfg.fetch.batch_max_items = 1;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::from_arg(&sim.pages_template(12)).unwrap())
        .unwrap();
    assert_eq!(summary.records_written, 1200);
    let files = parquet_files(&root);
    assert_eq!(files.len() as u64, summary.files);
    let mut per_partition: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut all = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        let partition = rel.parent().unwrap().to_string_lossy().into_owned();
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        let part: u64 = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .unwrap()
            .parse()
            .unwrap();
        let rows = rows(f);
        assert!(
            !rows.is_empty() && rows.len() <= 150,
            "{name}: {}",
            rows.len()
        );
        for r in &rows {
            assert_eq!(format!("service={}", r.record.service), partition);
        }
        per_partition.entry(partition).or_default().push(part);
        all.extend(rows);
    }
    assert_eq!(per_partition.len(), 8);
    // Two files open for eight partitions: evicted partitions came back as further parts,
    // numbered 1, 2, 3, ... without gaps.
    assert!(files.len() > 8 + 1200 / 150, "{} files", files.len());
    for (p, parts) in &per_partition {
        let want: Vec<u64> = (1..=parts.len() as u64).collect();
        assert_eq!(parts, &want, "{p}");
    }
    assert_rows_match_workload(&all, &workload, 1..=1200);

    // A second run into the same dataset adds parts after the existing ones.
    let before = files.len();
    let mut cfg = Config::new(&root);
    cfg.writer.partition_by = vec!["service".into()];
    Pipeline::new(cfg)
        .unwrap()
        .run(Source::from_arg(&sim.pages_template(1)).unwrap())
        .unwrap();
    let after = parquet_files(&root);
    let services: BTreeSet<String> = workload
        .page_ids(1)
        .map(|i| workload.record(i).service)
        .collect();
    assert_eq!(after.len(), before + services.len());
    for f in after.iter().filter(|f| !files.contains(f)) {
        let rel = f.strip_prefix(&root).unwrap();
        let partition = rel.parent().unwrap().to_string_lossy().into_owned();
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        let part: u64 = name[5..10].parse().unwrap();
        assert_eq!(part, per_partition[&partition].len() as u64 + 1, "{name}");
    }
    sim.stop();
}

#[test]
fn partition_values_are_escaped_and_nulls_get_the_default_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|path, _| {
        let i: u64 = path.trim_start_matches("/r/").parse().unwrap();
        let service = match i % 4 {
            0 => "\"a/b=c\"".to_string(),
            1 => "null".to_string(),
            2 => "\"\"".to_string(),
            _ => "\"50% off: yes?\"".to_string(),
        };
        let body = format!(
            "{{\"id\": {i}, \"ts\": \"2026-11-24T10:00:00Z\", \"service\": {service}, \"level\": \"INFO\"}}"
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let root = dir.path().join("esc");
    let mut cfg = Config::new(&root);
    cfg.writer.partition_by = vec!["service".into(), "id".into()];
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::from_arg(&format!("{base}/r/{{1..8}}")).unwrap())
        .unwrap();
    assert_eq!(summary.records_written, 8);
    let mut got: Vec<String> = parquet_files(&root)
        .iter()
        .map(|f| {
            let ids = ids(f);
            assert_eq!(ids.len(), 1);
            let rel = f.strip_prefix(&root).unwrap().parent().unwrap();
            format!("{} {}", ids[0], rel.to_string_lossy())
        })
        .collect();
    got.sort_by_key(|s| s.split(' ').next().unwrap().parse::<u64>().unwrap());
    let d = "__HIVE_DEFAULT_PARTITION__";
    assert_eq!(
        got,
        [
            format!("1 service={d}/id=1"),
            format!("2 service={d}/id=2"),
            "3 service=50%25 off%3A yes%3F/id=3".to_string(),
            "4 service=a%2Fb%3Dc/id=4".to_string(),
            format!("5 service={d}/id=5"),
            format!("6 service={d}/id=6"),
            "7 service=50%25 off%3A yes%3F/id=7".to_string(),
            "8 service=a%2Fb%3Dc/id=8".to_string(),
        ]
    );
}

#[test]
fn a_slow_stream_gets_row_groups_closed_by_age() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let n = 5;
    // A slow stream, paced by events rather than sleeps: each record is pushed once the one
    // before is in a row group the writer closed by age (the row-group counter went up).
    let out = dir.path().join("slow.parquet");
    let summary = paced_stream(&out, 50, n, |m| m.row_groups.load(Relaxed));
    assert_eq!(summary.records_written, n, "{summary}");
    // Far fewer rows than row_group_rows (65536), yet one row group per record: each was
    // closed by age while the run went on, not by size and not only at the end.
    assert_eq!(num_row_groups(&out), n as usize);
    assert_eq!(summary.row_groups, n);
    let mut got = ids(&out);
    got.sort_unstable();
    assert_eq!(got, (1..=n as i64).collect::<Vec<_>>());

    // The same stream with no age limit reached (an hour) makes one row group: what closed
    // them above was their age. Each record is pushed once the one before is written.
    let out2 = dir.path().join("unaged.parquet");
    paced_stream(&out2, 3_600_000, n, |m| m.records_written.load(Relaxed));
    assert_eq!(num_row_groups(&out2), 1);
}

/// Pushes records 1..=n to a run writing `out` with `flush_interval_ms`, each once `progress`
/// of the run's metrics has reached the number of the record before; returns the ledger.
fn paced_stream(
    out: &Path,
    flush_interval_ms: u64,
    n: u64,
    progress: impl Fn(&pinflow::metrics::live::Registry) -> u64,
) -> pinflow::Summary {
    let mut cfg = Config::new(out);
    cfg.writer.flush_interval = std::time::Duration::from_millis(flush_interval_ms);
    let (source, push) = Source::push(8);
    let run = Pipeline::builder()
        .config(cfg)
        .build()
        .unwrap()
        .spawn(source)
        .unwrap();
    let metrics = run.metrics();
    for id in 1..=n {
        push.push(format!("{{\"id\":{id},\"values\":[{id},2]}}"))
            .unwrap();
        wait_until("the record's progress", || progress(&metrics) >= id);
    }
    drop(push);
    run.join().unwrap()
}

#[test]
fn lz4_round_trips_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("l.parquet");
    let mut cfg = Config::new(&out);
    cfg.writer.compression = Compression::Lz4;
    // Run twice below, the second run replacing the first one's file.
    cfg.writer.overwrite = true;
    let template = sim.logs_template(1500);
    let pipeline = Pipeline::new(cfg).unwrap();
    pipeline.run(Source::from_arg(&template).unwrap()).unwrap();
    assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=1500);
    let r = reader(&out);
    let rg = r.metadata().row_group(0);
    for c in rg.columns() {
        assert_eq!(
            c.compression(),
            parquet::basic::Compression::LZ4_RAW,
            "{}",
            c.column_path()
        );
    }
    let kv = key_values(&out);
    assert_eq!(kv["pinflow.version"], env!("CARGO_PKG_VERSION"));
    // Without a label, the source is described: here, the template.
    assert_eq!(kv["pinflow.source"], template);
    let first_run = kv["pinflow.run_id"].clone();
    let (time, pid) = first_run.split_once('-').unwrap();
    assert!(u64::from_str_radix(time, 16).is_ok() && u32::from_str_radix(pid, 16).is_ok());
    // Another run of the same pipeline has another id.
    pipeline.run(Source::from_arg(&template).unwrap()).unwrap();
    assert_ne!(key_values(&out)["pinflow.run_id"], first_run);
    sim.stop();
}

fn pinflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pinflow"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PINFLOW_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn the_command_line_rotates_and_labels_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.parquet");
    let o = pinflow()
        .args(["demo", "--records", "250", "--rotate-rows", "100"])
        .args(["--compression", "lz4", "--flush-interval", "1s", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 3);
    let mut ids_seen = Vec::new();
    let mut run_ids = BTreeSet::new();
    for f in &files {
        let kv = key_values(f);
        assert_eq!(kv["pinflow.source"], "demo");
        run_ids.insert(kv["pinflow.run_id"].clone());
        ids_seen.extend(ids(f));
    }
    assert_eq!(run_ids.len(), 1);
    ids_seen.sort_unstable();
    assert_eq!(ids_seen, (1..=250).collect::<Vec<i64>>());
}

#[test]
fn dead_letters_rotate_by_size_and_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|path, _| {
        let i: u64 = path.trim_start_matches("/bad/").parse().unwrap();
        let body = format!("{{\"id\": {i}, \"latency_ms\": \"fast-{i}\"}}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let out = dir.path().join("o.parquet");
    let mut cfg = Config::new(&out);
    cfg.writer.dead_letter_max_bytes = 8192;
    cfg.writer.dead_letter_keep = 2;
    cfg.fetch.max_in_flight = 4;
    let n = 300;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::from_arg(&format!("{base}/bad/{{1..{n}}}")).unwrap())
        .unwrap();
    assert_eq!(summary.records_dead_lettered, n);
    let name = "o.parquet.deadletter.ndjson";
    assert_eq!(
        dir_names(dir.path()),
        [
            "o.parquet".to_string(),
            name.to_string(),
            format!("{name}.1"),
            format!("{name}.2")
        ]
    );
    let mut kept = BTreeSet::new();
    for f in [format!("{name}.2"), format!("{name}.1"), name.to_string()] {
        let path = dir.path().join(&f);
        assert!(std::fs::metadata(&path).unwrap().len() <= 8192, "{f}");
        for line in ndjson_lines(&path) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let url = v["url"].as_str().unwrap();
            let i: u64 = url.rsplit('/').next().unwrap().parse().unwrap();
            assert_eq!(url, format!("{base}/bad/{i}"));
            assert_eq!(v["kind"], "record");
            assert!(
                v["reason"].as_str().unwrap().contains("latency_ms"),
                "{line}"
            );
            // The original record, as it was sent.
            assert_eq!(
                v["excerpt"],
                format!("{{\"id\": {i}, \"latency_ms\": \"fast-{i}\"}}")
            );
            assert!(
                pinflow::time::parse_rfc3339(v["time"].as_str().unwrap()).is_some(),
                "{line}"
            );
            assert!(kept.insert(i), "{i} twice");
        }
    }
    // Older entries were dropped with the oldest rotated file: the three files hold fewer.
    assert!(kept.len() < n as usize && kept.len() > 40, "{}", kept.len());
}

/// The writer's view of a full disk: RLIMIT_FSIZE makes a write fail with EFBIG (SIGXFSZ is
/// ignored by pinflow). Small records first, then large ones: the files of small records are
/// finalized, the first file of large ones passes the limit.
#[test]
fn a_file_size_limit_stops_the_run_cleanly_with_finalized_files_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|path, _| {
        let i: u64 = path.trim_start_matches("/r/").parse().unwrap();
        let message: String = if i <= 600 {
            format!("m{i}")
        } else {
            // 20 kB that neither compresses (none) nor repeats across rows.
            (0..2000).map(|k| format!("{:09}-", i * 7919 + k)).collect()
        };
        let body = format!(
            "{{\"id\": {i}, \"ts\": \"2026-11-24T10:00:00Z\", \"service\": \"s\", \"level\": \"INFO\", \"message\": \"{message}\"}}"
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let out = dir.path().join("o.parquet");
    let command = format!(
        "ulimit -f 1024; exec '{}' run --urls '{base}/r/{{1..3000}}' --out '{}' \
         --rotate-rows 200 --row-group-rows 50 --compression none --max-in-flight 4 \
         --progress never",
        env!("CARGO_BIN_EXE_pinflow"),
        out.display()
    );
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(&command);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PINFLOW_") {
            sh.env_remove(k);
        }
    }
    let o = sh.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Not killed by SIGXFSZ: an orderly exit 1 with the error and its path.
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let dir_text = dir.path().display().to_string();
    assert!(
        stderr.contains("pinflow: error: output ")
            && stderr.contains(&dir_text)
            && stderr.contains("File too large"),
        "{stderr}"
    );
    // Every file under a final name is complete and readable; at least the files of small
    // records were finalized before the limit struck; no temporary file is left.
    let files = parquet_files(dir.path());
    assert!(files.len() >= 2, "{files:?}\n{stderr}");
    let mut seen = BTreeSet::new();
    for f in &files {
        assert!(is_rotated_name(
            &f.file_name().unwrap().to_string_lossy(),
            "o"
        ));
        let batches = read_parquet(f);
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, 200, "{}: complete files only", f.display());
        for b in &batches {
            let ts = b
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>();
            assert_eq!(ts.null_count(), 0);
            let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            for i in 0..id.len() {
                assert!(seen.insert(id.value(i)), "id {} twice", id.value(i));
            }
        }
    }
    assert!(seen.len() < 3000);
}

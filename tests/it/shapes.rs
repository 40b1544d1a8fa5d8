//! Records of the shape a user's API has (issue 17, items 1, 11 and 12): without a schema the
//! records decide it, and a record of another shape is never a row of nulls.

use std::path::Path;
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::RecordBatch;

use crate::common::*;
use pinflow::sim::{SimConfig, Simulator, Workload};

fn pinflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pinflow"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A 200 response with `body` as JSON.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `pinflow run --urls URL --out OUT EXTRA...` (no progress line).
fn run(url: &str, out: &Path, extra: &[&str]) -> Output {
    pinflow()
        .args(["run", "--progress", "never", "--urls", url, "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn column_names(b: &RecordBatch) -> Vec<String> {
    b.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn records_of_another_shape_get_an_inferred_schema_not_rows_of_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) =
        http_server(|_, _| ok("{\"user\":\"a\",\"amount\":3}\n{\"user\":\"b\",\"amount\":5}\n"));
    let out = dir.path().join("shop.parquet");
    let o = run(&format!("{base}/orders.json"), &out, &[]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    let batches = read_parquet(&out);
    assert_eq!(column_names(&batches[0]), ["user", "amount"]);
    let (mut users, mut amounts) = (Vec::new(), Vec::new());
    for b in &batches {
        let u = b.column_by_name("user").unwrap().as_string::<i32>();
        let a = b
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<Int64Type>();
        users.extend(u.iter().map(|v| v.unwrap().to_string()));
        amounts.extend(a.iter().map(|v| v.unwrap()));
    }
    assert_eq!((users, amounts), (vec!["a".into(), "b".into()], vec![3, 5]));
    assert!(
        stdout.contains("schema     inferred from the first records: user:string, amount:int64"),
        "{stdout}"
    );
}

#[test]
fn records_of_the_log_fields_keep_the_built_in_layout_and_the_summary_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let out = dir.path().join("logs.parquet");
    let o = run(&sim.url("/logs/{1..20}.json"), &out, &[]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert_rows_match_workload(&rows(&out), &Workload::default(), 1..=20);
    assert_eq!(read_parquet(&out)[0].num_columns(), 13);
    assert!(
        stdout.contains("schema     the built-in log layout"),
        "{stdout}"
    );
}

#[test]
fn a_record_with_no_field_of_the_schema_is_dead_lettered_not_a_row_of_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|_, _| {
        ok("{\"id\":1,\"name\":\"a\"}\n{\"user\":\"x\",\"amount\":2}\n{}\n{\"id\":null}\n")
    });
    let out = dir.path().join("mixed.parquet");
    let url = format!("{base}/mixed.json");
    let o = run(
        &url,
        &out,
        &["--field", "id:int64", "--field", "name:string"],
    );
    let stdout = text(&o.stdout);
    assert!(o.status.code().is_some(), "{stdout}\n{}", text(&o.stderr));
    // The record with a null id has a field of the schema: a row (its id is null).
    let n: usize = read_parquet(&out).iter().map(RecordBatch::num_rows).sum();
    assert_eq!(n, 2, "{stdout}");
    assert!(
        stdout.contains("dead     2 × no field of the schema"),
        "{stdout}"
    );
    let dead = ndjson_lines(&dir.path().join("mixed.parquet.deadletter.ndjson"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead[0].contains("none of the record's fields (`user`, `amount`) is in the schema"),
        "{}",
        dead[0]
    );
    assert!(dead[1].contains("empty object"), "{}", dead[1]);
}

#[test]
fn the_built_in_layout_asked_for_dead_letters_records_of_another_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|_, _| ok("{\"id\":7}\n{\"data\":[{\"id\":8}]}\n"));
    let out = dir.path().join("logs.parquet");
    let o = run(
        &format!("{base}/x.json"),
        &out,
        &["--infer-schema", "false"],
    );
    let stdout = text(&o.stdout);
    assert!(o.status.code().is_some(), "{stdout}\n{}", text(&o.stderr));
    assert_eq!(ids(&out), [7]);
    assert!(!stdout.contains("schema     "), "{stdout}");
    let dead = ndjson_lines(&dir.path().join("logs.parquet.deadletter.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("--records-field data"), "{}", dead[0]);
}

#[test]
fn an_envelope_without_records_field_stops_the_run_naming_the_field_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|_, _| {
        ok(r#"{"data":[{"user":"a","amount":3}],"meta":{"next":null,"total":1}}"#)
    });
    let out = dir.path().join("env.parquet");
    let o = run(&format!("{base}/page.json"), &out, &[]);
    let stderr = text(&o.stderr);
    assert!(!o.status.success(), "{}\n{stderr}", text(&o.stdout));
    assert!(
        stderr.contains("field `data` holds an array of objects")
            && stderr.contains("--records-field data"),
        "{stderr}"
    );
    // A run that stopped before writing a row leaves no empty file to mistake for its result
    // (nor one that would refuse the next run's --out).
    assert!(!out.exists(), "a failed run left {}", out.display());
    // Told where the records are, the same run writes them.
    let o = run(
        &format!("{base}/page.json"),
        &out,
        &["--records-field", "data"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(column_names(&read_parquet(&out)[0]), ["user", "amount"]);
}

/// The `ts` column of every row, in µs since the epoch (null as `None`).
fn timestamps(path: &Path) -> Vec<Option<i64>> {
    use arrow_array::types::TimestampMicrosecondType;
    read_parquet(path)
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("ts").unwrap();
            a.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// 2026-11-24T15:20:00.123Z in µs.
const TS: i64 = 1_795_533_600_123_000;

#[test]
fn epoch_millisecond_timestamps_land_as_the_right_parquet_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|_, _| {
        ok("{\"id\":1,\"ts\":1795533600123}\n{\"id\":2,\"ts\":\"1795533600124\"}\n")
    });
    let out = dir.path().join("epoch.parquet");
    let url = format!("{base}/e.json");
    let o = run(
        &url,
        &out,
        &[
            "--field",
            "id:int64",
            "--field",
            "ts:timestamp",
            "--timestamp-format",
            "epoch_ms",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(timestamps(&out), [Some(TS), Some(TS + 1000)]);
    // With no format given, the built-in layout reads an epoch number by its magnitude.
    let out = dir.path().join("auto.parquet");
    let o = run(&url, &out, &[]);
    let stdout = text(&o.stdout);
    assert!(stdout.contains("the built-in log layout"), "{stdout}");
    // The string is not RFC 3339: a dead letter, the number a timestamp.
    assert_eq!(timestamps(&out), [Some(TS)], "{stdout}");
    assert!(
        stdout.contains("dead     1 × invalid timestamp"),
        "{stdout}"
    );
}

#[test]
fn a_timestamp_without_an_offset_is_read_in_the_configured_zone_or_names_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = http_server(|path, _| {
        match path {
        "/clf.json" => ok("{\"id\":1,\"ts\":\"24/Nov/2026:17:20:00.123\"}\n{\"id\":2,\"ts\":\"24/Nov/2026:17:20:00\"}"),
        _ => ok("{\"id\":3,\"ts\":\"2026-11-24T16:20:00.123\"}"),
    }
    });
    let out = dir.path().join("clf.parquet");
    let o = run(
        &format!("{base}/clf.json"),
        &out,
        &[
            "--timestamp-format",
            "%d/%b/%Y:%H:%M:%S.%f",
            "--timestamp-zone",
            "+02:00",
        ],
    );
    let stdout = text(&o.stdout);
    assert!(o.status.code().is_some(), "{}", text(&o.stderr));
    assert_eq!(timestamps(&out), [Some(TS)], "{stdout}");
    assert!(
        stdout.contains("dead     1 × invalid timestamp"),
        "{stdout}"
    );
    let o = run(
        &format!("{base}/iso.json"),
        &dir.path().join("iso.parquet"),
        &["--timestamp-zone", "+01:00"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(timestamps(&dir.path().join("iso.parquet")), [Some(TS)]);
    // Without a zone the offset-less time is a dead letter that names the option.
    let out = dir.path().join("strict.parquet");
    let o = run(&format!("{base}/iso.json"), &out, &[]);
    assert!(o.status.code().is_some(), "{}", text(&o.stderr));
    let dead = ndjson_lines(&dir.path().join("strict.parquet.deadletter.ndjson"));
    assert!(dead[0].contains("--timestamp-zone"), "{dead:?}");
    // A zone name is refused before the run, saying why.
    let o = run(
        &format!("{base}/iso.json"),
        &out,
        &["--timestamp-zone", "Europe/Paris"],
    );
    let stderr = text(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("schema.timestamp_zone: `Europe/Paris`: zone names"),
        "{stderr}"
    );
}

fn micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// The `_source` and `_fetched_at` columns of every row.
fn lineage(path: &Path) -> Vec<(String, i64)> {
    use arrow_array::types::TimestampMicrosecondType;
    let mut out = Vec::new();
    for b in read_parquet(path) {
        let src = b.column_by_name("_source").unwrap().as_string::<i32>();
        let at = b.column_by_name("_fetched_at").unwrap();
        let at = at.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            out.push((src.value(i).to_string(), at.value(i)));
        }
    }
    out
}

#[test]
fn lineage_columns_name_each_rows_source_without_its_password_and_its_fetch_time() {
    let dir = tempfile::tempdir().unwrap();
    let (base, heads) = http_server(|path, _| match path {
        "/a.json" => ok("{\"user\":\"a\"}\n{\"user\":\"b\"}\n"),
        _ => ok("{\"user\":\"c\"}"),
    });
    let authed = base.replace("http://", "http://reader:s3cr3t-pw@");
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, format!("{authed}/a.json\n{authed}/b.json\n")).unwrap();
    let out = dir.path().join("lin.parquet");
    let before = micros_now();
    let o = run(
        list.to_str().unwrap(),
        &out,
        &["--lineage", "source,fetched_at"],
    );
    let after = micros_now();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(heads
        .lock()
        .unwrap()
        .iter()
        .all(|h| h.contains("Authorization: Basic")));
    let batches = read_parquet(&out);
    assert_eq!(
        column_names(&batches[0]),
        ["user", "_source", "_fetched_at"]
    );
    let mut got = lineage(&out);
    got.sort();
    let shown = base.replace("http://", "http://reader:***@");
    let sources: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        sources,
        [
            format!("{shown}/a.json"),
            format!("{shown}/a.json"),
            format!("{shown}/b.json")
        ]
    );
    for (_, at) in &got {
        assert!((before..=after).contains(at), "{before} <= {at} <= {after}");
    }
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        !bytes.windows(9).any(|w| w == b"s3cr3t-pw"),
        "the password is in the file"
    );
}

#[test]
fn lineage_of_a_file_source_is_its_name_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{\"id\":1}\n{\"id\":2}\n").unwrap();
    let out = dir.path().join("files.parquet");
    let o = pinflow()
        .args([
            "run",
            "--progress",
            "never",
            "--lineage",
            "source",
            "--files",
        ])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let b = &read_parquet(&out)[0];
    assert_eq!(b.num_columns(), 14, "{:?}", column_names(b));
    let src = b.column_by_name("_source").unwrap().as_string::<i32>();
    let name = input.display().to_string();
    assert!(
        src.iter()
            .all(|s| s.unwrap().starts_with(&format!("{name}:1-"))),
        "{src:?}"
    );
}

//! Configurable schemas end to end: every type, nested paths, dictionary columns, `_extra`,
//! any statistics, and inference, written to Parquet and read back.

use crate::common::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, TimeUnit};
use pinflow::config::SchemaConfig;
use pinflow::{Config, Pipeline, Source};

fn run(
    dir: &std::path::Path,
    ndjson: &str,
    schema: SchemaConfig,
) -> (pinflow::Summary, Vec<RecordBatch>) {
    let input = dir.join("in.ndjson");
    std::fs::write(&input, ndjson).unwrap();
    let mut cfg = Config::new(dir.join("out.parquet"));
    cfg.schema = schema;
    let summary = Pipeline::new(cfg)
        .unwrap()
        .run(Source::files(&[input.display().to_string()]).unwrap())
        .unwrap();
    let batches = read_parquet(summary.output.as_ref().unwrap());
    (summary, batches)
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
}

#[test]
fn every_type_round_trips_with_nested_paths_extra_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..3000i64 {
        // Every third record lacks the nested object; every fifth has an unknown field.
        let http = if i % 3 == 0 {
            String::new()
        } else {
            format!(r#","http":{{"status":{},"method":"GET"}}"#, 200 + i % 5)
        };
        let extra = if i % 5 == 0 {
            r#","debug":{"k":[1,2]}"#
        } else {
            ""
        };
        text.push_str(&format!(
            r#"{{"id":{i},"ok":{},"service":"svc-{}","ts":"2026-11-24T10:{:02}:00Z","lat":[{}, {}, {}],"counts":[{}, 7]{http}{extra}}}"#,
            i % 2 == 0,
            i % 4,
            i % 60,
            i as f64 * 0.5,
            i,
            (i % 10) as f64,
            i,
        ));
        text.push('\n');
    }
    let schema = SchemaConfig {
        fields: [
            "id:int64",
            "ok:bool",
            "service:dict",
            "ts:timestamp",
            "lat:list<float64>",
            "counts:list<int64>",
            "http.status:int64 as status",
        ]
        .map(String::from)
        .to_vec(),
        unknown: "extra".into(),
        stats: Some(vec![
            "lat:count,sum,mean,min,max,variance,stddev,p50,p90".into(),
            "counts:max".into(),
        ]),
        ..SchemaConfig::default()
    };
    let (summary, batches) = run(dir.path(), &text, schema);
    assert_eq!(summary.records_written, 3000, "{summary}");
    let b = concat(&batches);
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "ok",
            "service",
            "ts",
            "lat",
            "counts",
            "status",
            "_extra",
            "lat_count",
            "lat_sum",
            "lat_mean",
            "lat_min",
            "lat_max",
            "lat_variance",
            "lat_stddev",
            "lat_p50",
            "lat_p90",
            "counts_max"
        ]
    );
    assert!(matches!(
        b.column_by_name("service").unwrap().data_type(),
        DataType::Dictionary(..)
    ));
    let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    let ok = b.column_by_name("ok").unwrap().as_boolean();
    let service = b
        .column_by_name("service")
        .unwrap()
        .as_dictionary::<Int32Type>();
    let service_values = service.values().as_string::<i32>();
    let ts = b
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let status = b
        .column_by_name("status")
        .unwrap()
        .as_primitive::<Int64Type>();
    let extra = b.column_by_name("_extra").unwrap().as_string::<i32>();
    let f = |name: &str| {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let (sum, mean, min, max, var, sd, p50, p90) = (
        f("lat_sum"),
        f("lat_mean"),
        f("lat_min"),
        f("lat_max"),
        f("lat_variance"),
        f("lat_stddev"),
        f("lat_p50"),
        f("lat_p90"),
    );
    let counts_max = b
        .column_by_name("counts_max")
        .unwrap()
        .as_primitive::<Int64Type>()
        .clone();
    for r in 0..b.num_rows() {
        let i = id.value(r);
        assert_eq!(ok.value(r), i % 2 == 0);
        let key = service.keys().value(r) as usize;
        assert_eq!(service_values.value(key), format!("svc-{}", i % 4));
        assert_eq!(ts.value(r) % 3_600_000_000, (i % 60) * 60_000_000);
        if i % 3 == 0 {
            assert!(status.is_null(r));
        } else {
            assert_eq!(status.value(r), 200 + i % 5);
        }
        // Unknown fields: the nested `http.method` when present, `debug` every fifth record.
        match (i % 3 == 0, i % 5 == 0) {
            (true, false) => assert!(extra.is_null(r)),
            (true, true) => assert_eq!(extra.value(r), r#"{"debug":{"k":[1,2]}}"#),
            (false, false) => assert_eq!(extra.value(r), r#"{"http.method":"GET"}"#),
            (false, true) => {
                assert_eq!(
                    extra.value(r),
                    r#"{"http.method":"GET","debug":{"k":[1,2]}}"#
                )
            }
        }
        let v = [i as f64 * 0.5, i as f64, (i % 10) as f64];
        let mut sorted = v;
        sorted.sort_by(f64::total_cmp);
        let m = v.iter().sum::<f64>() / 3.0;
        let variance = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 2.0;
        assert!(close(Some(sum.value(r)), Some(v.iter().sum()), 1e-12));
        assert!(close(Some(mean.value(r)), Some(m), 1e-12));
        assert_eq!((min.value(r), max.value(r)), (sorted[0], sorted[2]));
        assert!(close(Some(var.value(r)), Some(variance), 1e-9), "{i}");
        assert!(close(Some(sd.value(r)), Some(variance.sqrt()), 1e-9));
        assert_eq!(p50.value(r), sorted[1]);
        // p90 of three values: 1.8 of the way between ranks, i.e. 80 % from the 2nd to the 3rd.
        assert!(close(
            Some(p90.value(r)),
            Some(sorted[1] + 0.8 * (sorted[2] - sorted[1])),
            1e-12
        ));
        // The max of a list<int64> is an exact Int64.
        assert_eq!(counts_max.value(r), i.max(7));
    }
}

#[test]
fn inference_picks_types_from_the_first_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..500 {
        text.push_str(&format!(
            r#"{{"id":{i},"at":"2026-11-24T10:00:{:02}Z","score":{},"user":{{"name":"u{}","admin":{}}},"values":[{i},{}.5]}}"#,
            i % 60,
            if i == 3 { "1.5".to_string() } else { i.to_string() },
            i % 7,
            i % 2 == 0,
            i + 1
        ));
        text.push('\n');
    }
    let schema = SchemaConfig {
        infer: Some(true),
        ..SchemaConfig::default()
    };
    let (summary, batches) = run(dir.path(), &text, schema);
    assert_eq!(summary.records_written, 500, "{summary}");
    // The full types, parameters included: a timestamp's unit and zone, a list's item.
    let list_of = |t| DataType::List(std::sync::Arc::new(Field::new_list_field(t, true)));
    let want = [
        ("id", DataType::Int64),
        (
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        ("score", DataType::Float64),
        ("user_name", DataType::Utf8),
        ("user_admin", DataType::Boolean),
        ("values", list_of(DataType::Float64)),
        ("values_count", DataType::Int64),
        ("values_mean", DataType::Float64),
        ("values_min", DataType::Float64),
        ("values_max", DataType::Float64),
        ("values_variance", DataType::Float64),
    ];
    for b in &batches {
        let got: Vec<(&str, &DataType)> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        let want: Vec<(&str, &DataType)> = want.iter().map(|(n, t)| (*n, t)).collect();
        assert_eq!(got, want);
    }
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..500).collect::<Vec<_>>());
}

#[test]
fn a_schema_that_cannot_work_fails_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("x.parquet"));
    cfg.schema.fields = vec!["a:string".into()];
    cfg.schema.stats = Some(vec!["a".into()]);
    let problems = cfg.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("statistics of `a`") && p.message.contains("not list")),
        "{problems:?}"
    );
    let err = Pipeline::new(cfg);
    assert!(err.is_err());
    assert!(dir_names(dir.path()).is_empty());
}

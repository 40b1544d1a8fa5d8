//! Statistics against golden values computed outside pinflow (issue 23).
//!
//! `tests/golden/stats.json` is written by `tools/golden/make_stats_golden.py`: exact rational
//! arithmetic in Python, each result rounded once to the nearest f64. Nothing here uses the
//! crate's own reference (`stats::reference`) or its simulator, so a kernel bug that the
//! reference shares cannot pass. The inputs are the hard ones: 1e9 and 1e12 offsets with tiny
//! noise (a one-pass variance loses every digit there), mixed magnitudes and signs, long lists.
//!
//! Tolerances (relative): count, min and max exact; mean 1e-13 (the sum of n values rounds
//! about n times); variance 1e-9 (the corrected two-pass keeps nine digits or more on these
//! inputs, where the naive formula is off by 100 % or more); quantiles 1e-14 (one
//! interpolation step in f64).

use std::io::Write;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::Array;
use pinflow::{Pipeline, Source};

struct Case {
    name: String,
    values: Vec<f64>,
    expected: serde_json::Value,
}

fn golden() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/stats.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            values: c["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| f64::from_bits(b.as_u64().unwrap()))
                .collect(),
            expected: c["expected"].clone(),
        })
        .collect()
}

fn float(v: &serde_json::Value) -> Option<f64> {
    v.get("bits").map(|b| f64::from_bits(b.as_u64().unwrap()))
}

fn assert_close(what: &str, got: Option<f64>, want: Option<f64>, rel: f64) {
    match (got, want) {
        (Some(g), Some(w)) => {
            let err = if w == 0.0 {
                g.abs()
            } else {
                ((g - w) / w).abs()
            };
            assert!(
                err <= rel,
                "{what}: got {g:?}, golden {w:?} (relative error {err:e} > {rel:e})"
            );
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

#[test]
fn kernel_statistics_match_exact_rational_golden_values() {
    let cases = golden();
    assert!(cases.len() >= 10, "the golden file has its cases");
    let mut scratch = Vec::new();
    for c in &cases {
        let s = pinflow::stats::compute(&c.values);
        let e = &c.expected;
        let name = &c.name;
        assert_eq!(
            s.count as u64,
            e["count"].as_u64().unwrap(),
            "{name}: count"
        );
        assert_eq!(s.min, float(&e["min"]), "{name}: min");
        assert_eq!(s.max, float(&e["max"]), "{name}: max");
        assert_close(&format!("{name}: mean"), s.mean, float(&e["mean"]), 1e-13);
        assert_close(
            &format!("{name}: variance"),
            s.variance,
            float(&e["variance"]),
            1e-9,
        );
        for q in e["quantiles"].as_array().into_iter().flatten() {
            let p = q["q"].as_f64().unwrap();
            let got = pinflow::stats::quantile(&c.values, p, &mut scratch);
            assert_close(&format!("{name}: quantile {p}"), got, float(q), 1e-14);
        }
    }
}

/// The same golden values through the whole pipeline: NDJSON text (shortest round-trip
/// decimal of each f64) → simd-json → Arrow → the statistics columns → Parquet, read back.
#[test]
fn pipeline_statistics_columns_match_exact_rational_golden_values() {
    let cases = golden();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("golden.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for (id, c) in cases.iter().enumerate() {
        let list: Vec<String> = c.values.iter().map(|v| format!("{v:?}")).collect();
        writeln!(f, "{{\"id\":{id},\"values\":[{}]}}", list.join(",")).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let out = dir.path().join("golden.parquet");
    let pipeline = Pipeline::builder()
        .out(&out)
        .configure(|c| {
            c.schema.stats = Some(vec![
                "values:count,mean,variance,min,max,p50,p90,p99".to_owned()
            ]);
        })
        .build()
        .unwrap();
    let summary = pipeline
        .run(Source::files(&[input.display().to_string()]).unwrap())
        .unwrap();
    assert_eq!(summary.records_written, cases.len() as u64, "{summary}");
    let batches = crate::common::read_parquet(&out);
    let mut seen = 0;
    for b in &batches {
        let col = |n: &str| {
            b.column_by_name(n)
                .unwrap_or_else(|| panic!("column {n} in {:?}", b.schema()))
                .clone()
        };
        let ids = col("id");
        let ids = ids.as_primitive::<Int64Type>();
        let count = col("values_count");
        let count = count.as_primitive::<Int64Type>();
        let f64s = |n: &str| col(n).as_primitive::<Float64Type>().clone();
        let (mean, var, min, max) = (
            f64s("values_mean"),
            f64s("values_variance"),
            f64s("values_min"),
            f64s("values_max"),
        );
        let (p50, p90, p99) = (f64s("values_p50"), f64s("values_p90"), f64s("values_p99"));
        let get = |a: &arrow_array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..b.num_rows() {
            let c = &cases[ids.value(i) as usize];
            let (e, name) = (&c.expected, &c.name);
            seen += 1;
            assert_eq!(
                count.value(i) as u64,
                e["count"].as_u64().unwrap(),
                "{name}: count"
            );
            assert_eq!(get(&min, i), float(&e["min"]), "{name}: min");
            assert_eq!(get(&max, i), float(&e["max"]), "{name}: max");
            assert_close(
                &format!("{name}: mean"),
                get(&mean, i),
                float(&e["mean"]),
                1e-13,
            );
            let v = get(&var, i);
            assert_close(&format!("{name}: variance"), v, float(&e["variance"]), 1e-9);
            let qs = e["quantiles"].as_array().cloned().unwrap_or_default();
            for (col, q) in [(&p50, 0.5), (&p90, 0.9), (&p99, 0.99)] {
                let want = qs
                    .iter()
                    .find(|x| x["q"].as_f64() == Some(q))
                    .and_then(float);
                assert_close(&format!("{name}: p{q}"), get(col, i), want, 1e-14);
            }
        }
    }
    assert_eq!(seen, cases.len(), "every golden case came back as a row");
}

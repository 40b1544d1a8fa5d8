//! Micro-benchmarks of the hot-path pieces, each next to its baseline where there is one:
//!
//! - `stats/*`: the vectorized kernel against the scalar reference, for 64 and 1M values;
//! - `parse/*`: simd-json into Arrow columns, per record, for single objects and NDJSON, and
//!   serde_json into a struct for the same NDJSON page (the baseline);
//! - `http/*`: decoding a keep-alive response, Content-Length and chunked;
//! - `parquet/*`: encoding a batch of 4096 rows with snappy;
//! - `queue/*`: one crossbeam hop of a record batch;
//! - `window/*`: the time-window operator over 1M out-of-order records, 40 keys, 10 s tumbling
//!   windows, count/mean/var/p99 (records per second on one thread).
//!
//! Run: `cargo bench --bench kernels` (add `-- stats` to pick a group).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pinflow::batch::BodyBatch;
use pinflow::ingest::http::protocol::ResponseDecoder;
use pinflow::parse::Parser;
use pinflow::sim::{Chunking, SimConfig, Simulator};

fn values(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 1e3 + ((i * 7919) % 1000) as f64 / 7.0)
        .collect()
}

fn stats(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats");
    for n in [64usize, 1 << 20] {
        let v = values(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("kernel/{n}"), |b| {
            b.iter(|| pinflow::stats::compute(black_box(&v)))
        });
        g.bench_function(format!("reference/{n}"), |b| {
            b.iter(|| pinflow::stats::reference(black_box(&v)))
        });
    }
    g.finish();
}

/// Fetches real simulator bodies once, so the benchmarks parse exactly what the pipeline does.
fn fetch_bodies(path: &str, chunking: Chunking) -> Vec<u8> {
    let sim = Simulator::start(SimConfig {
        chunking,
        ..SimConfig::default()
    })
    .unwrap();
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(sim.addr()).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    raw
}

fn body_of(raw: &[u8]) -> Vec<u8> {
    let mut d = ResponseDecoder::new(usize::MAX);
    let mut body = Vec::new();
    d.decode(raw, &mut body).unwrap();
    body
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let one = body_of(&fetch_bodies("/logs/1.json", Chunking::Never));
    let page = body_of(&fetch_bodies("/pages/1.ndjson", Chunking::Never));
    for (name, body, records, copies) in [
        ("object", &one, 1u64, 256usize),
        ("ndjson_page", &page, 1000, 1),
    ] {
        g.throughput(Throughput::Elements(records * copies as u64));
        let mut parser = Parser::new();
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let mut batch = BodyBatch::default();
                    for _ in 0..copies {
                        batch.push_body("http://bench/x", body, 1, Instant::now());
                    }
                    batch
                },
                |batch| parser.parse_batch(batch),
                BatchSize::SmallInput,
            )
        });
    }
    // The baseline: serde_json into a plain struct per NDJSON line (no Arrow columns, so the
    // comparison flatters serde_json slightly).
    g.throughput(Throughput::Elements(1000));
    g.bench_function("serde_json_ndjson_page", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for line in page.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let r: SerdeRecord = serde_json::from_slice(line).unwrap();
                n += r.values.len() + r.message.len();
            }
            n
        })
    });
    g.finish();
}

/// The workload's record for the serde_json baseline.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct SerdeRecord {
    id: i64,
    ts: String,
    service: String,
    level: String,
    host: String,
    latency_ms: f64,
    message: String,
    values: Vec<f64>,
}

fn http(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    for (name, chunking) in [
        ("content_length", Chunking::Never),
        ("chunked", Chunking::Always),
    ] {
        let raw = fetch_bodies("/logs/1.json", chunking);
        g.throughput(Throughput::Bytes(raw.len() as u64));
        let mut d = ResponseDecoder::new(usize::MAX);
        let mut body = Vec::with_capacity(4096);
        g.bench_function(name, |b| {
            b.iter(|| {
                d.reset();
                body.clear();
                d.decode(black_box(&raw), &mut body).unwrap()
            })
        });
    }
    g.finish();
}

fn parquet_and_queue(c: &mut Criterion) {
    let page = body_of(&fetch_bodies("/pages/1.ndjson", Chunking::Never));
    let mut batch = BodyBatch::default();
    for _ in 0..4 {
        batch.push_body("http://bench/x", &page, 1, Instant::now());
    }
    let rows = pinflow::transform::add_statistics(
        &Parser::new().parse_batch(&mut batch).rows.unwrap(),
        &pinflow::schema::Layout::logs(),
    );
    // The sink's own settings (snappy by default), not arrow-rs defaults. (A sink file also
    // limits the dictionaries of fixed-width columns to 64 KiB; in 4,000 rows none reaches it.)
    let props =
        pinflow::output::writer_properties(&pinflow::config::WriterConfig::default()).unwrap();
    let mut g = c.benchmark_group("parquet");
    g.throughput(Throughput::Elements(rows.num_rows() as u64));
    g.bench_function("snappy_4000_rows", |b| {
        b.iter(|| {
            let mut w = parquet::arrow::ArrowWriter::try_new(
                Vec::with_capacity(8 << 20),
                rows.schema(),
                Some(props.clone()),
            )
            .unwrap();
            w.write(&rows).unwrap();
            w.into_inner().unwrap().len()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("queue");
    let (tx, rx) = crossbeam_channel::bounded(8);
    g.bench_function("batch_hop_same_thread", |b| {
        b.iter(|| {
            tx.send(rows.clone()).unwrap();
            rx.recv().unwrap()
        })
    });
    g.finish();
}

/// 1M records, 40 services, event times moving 1 ms a record with up to 2 s of disorder,
/// in batches of 4096 (as the writer sees them).
fn window_input() -> (arrow_schema::SchemaRef, Vec<arrow_array::RecordBatch>) {
    use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("service", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Float64, true),
    ]));
    let services: Vec<String> = (0..40).map(|i| format!("service-{i:02}")).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = 1_767_225_600_000_000i64;
    let mut batches = Vec::new();
    let n = 1_000_000usize;
    for start in (0..n).step_by(4096) {
        let len = 4096.min(n - start);
        let (mut ts, mut svc, mut lat) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..len {
            t += 1_000;
            ts.push(t - (rand() % 2_000_000) as i64);
            svc.push(services[(rand() % 40) as usize].as_str());
            lat.push((rand() % 100_000) as f64 / 100.0);
        }
        batches.push(
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                    Arc::new(StringArray::from(svc)),
                    Arc::new(Float64Array::from(lat)),
                ],
            )
            .unwrap(),
        );
    }
    (schema, batches)
}

fn window(c: &mut Criterion) {
    use pinflow::window::{Agg, PartitionId, WindowOperator, WindowSpec};
    use std::sync::Arc;
    use std::time::Duration;
    let (schema, batches) = window_input();
    let spec = Arc::new(
        WindowSpec::tumbling(Duration::from_secs(10))
            .with_by(["service"])
            .with_lateness(Duration::from_secs(2))
            .with_aggregates(
                "latency_ms",
                [Agg::Count, Agg::Mean, Agg::Var, Agg::Quantile(9900)],
            ),
    );
    let mut g = c.benchmark_group("window");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("tumbling_10s_40_keys_count_mean_var_p99/1M", |b| {
        b.iter(|| {
            let mut op = WindowOperator::new(spec.clone(), &schema).unwrap();
            let mut out = op.new_output();
            let now = Instant::now();
            let mut rows = 0;
            for batch in &batches {
                op.push(PartitionId(0), batch, now, &mut out);
                rows += out.take_rows().map_or(0, |r| r.num_rows());
                out.rejected.clear();
            }
            op.flush(&mut out);
            rows + out.take_rows().map_or(0, |r| r.num_rows())
        })
    });
    g.finish();
}

criterion_group!(benches, stats, parse, http, parquet_and_queue, window);
criterion_main!(benches);

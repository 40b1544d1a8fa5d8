//! Push → callback-sink latency of the embedded pipeline, per record: from `PushHandle::push`
//! returning to the sink receiving the row (parse, statistics, three queue hops), measured with
//! hdrhistogram at a low paced load and at full speed, with threads pinned and unpinned.
//!
//! ```sh
//! cargo bench --bench latency            # all four scenarios
//! cargo bench --bench latency -- --quick # fewer records
//! ```
//!
//! Parquet is off (`parquet(false)`): this measures the pipeline, not the disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use hdrhistogram::Histogram;
use pinflow::{Pipeline, Source};

struct Scenario {
    name: &'static str,
    pin: bool,
    /// Records per second; `None`: as fast as pushes are taken.
    rate: Option<u64>,
    records: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let scenarios = [
        Scenario {
            name: "low load (2k rec/s)",
            pin: true,
            rate: Some(2_000),
            records: 20_000 / scale,
        },
        Scenario {
            name: "low load (2k rec/s)",
            pin: false,
            rate: Some(2_000),
            records: 20_000 / scale,
        },
        Scenario {
            name: "full speed",
            pin: true,
            rate: None,
            records: 400_000 / scale,
        },
        Scenario {
            name: "full speed",
            pin: false,
            rate: None,
            records: 400_000 / scale,
        },
    ];
    println!(
        "{:<22} {:<8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "scenario", "threads", "records", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "records/s"
    );
    for s in &scenarios {
        let (h, rate) = run(s);
        println!(
            "{:<22} {:<8} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>12.0}",
            s.name,
            if s.pin { "pinned" } else { "unpinned" },
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            rate
        );
    }
}

fn run(s: &Scenario) -> (Histogram<u64>, f64) {
    let t0 = Instant::now();
    // When each record was pushed, in ns since t0, indexed by id.
    let pushed: Arc<Vec<AtomicU64>> = Arc::new((0..s.records).map(|_| AtomicU64::new(0)).collect());
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
    ));
    let (p, h) = (Arc::clone(&pushed), Arc::clone(&hist));
    let pipeline = Pipeline::builder()
        .parquet(false)
        .configure(|c| {
            c.threads.pin = s.pin;
            c.threads.parse = Some(1);
            c.threads.compute = Some(1);
        })
        .on_batch(move |rows| {
            let now = t0.elapsed().as_nanos() as u64;
            let ids = rows
                .column_by_name("id")
                .expect("id")
                .as_primitive::<Int64Type>();
            let mut h = h.lock().expect("histogram");
            for &id in ids.values() {
                let at = p[id as usize].load(Ordering::Relaxed);
                let _ = h.record(now.saturating_sub(at).max(1));
            }
        })
        .build()
        .expect("pipeline");
    let (source, push) = Source::push(1024);
    let run = pipeline.spawn(source).expect("spawn");
    let interval = s.rate.map(|r| Duration::from_nanos(1_000_000_000 / r));
    let started = Instant::now();
    for id in 0..s.records {
        if let Some(every) = interval {
            // Pace by the clock, so a late push does not shift the ones after it.
            // Sleep most of the wait (a spinning producer would take a core from the pipeline),
            // then spin the last stretch for precision.
            let due = started + every * id as u32;
            let now = Instant::now();
            if due > now + Duration::from_micros(200) {
                std::thread::sleep(due - now - Duration::from_micros(150));
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        let body = format!(r#"{{"id":{id},"values":[1.5,2.5,{id}]}}"#);
        pushed[id as usize].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        push.push(body).expect("push");
    }
    drop(push);
    let summary = run.join().expect("run");
    let rate = summary.records_written as f64 / started.elapsed().as_secs_f64();
    let h = hist.lock().expect("histogram").clone();
    (h, rate)
}

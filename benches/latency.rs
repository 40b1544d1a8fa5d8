//! Push → callback-sink latency of the embedded pipeline, per record: from `PushHandle::push`
//! returning to the sink receiving the row (parse, statistics, four queue hops), measured with
//! hdrhistogram at a low paced load and at full speed, with threads pinned and unpinned.
//!
//! ```sh
//! cargo bench --bench latency            # all four scenarios
//! cargo bench --bench latency -- --quick # fewer records
//! ```
//!
//! Parquet is off (`parquet(false)`): this measures the pipeline, not the disk.
//!
//! A last line, `bare hop`, measures the machine's floor in the same run: one timestamp sent
//! through a bounded crossbeam channel to a thread parked on `recv`, at the same pace, nothing
//! else done. A record at low load crosses four such hops; when this line's p99 is already
//! hundreds of microseconds (a shared virtual machine), the pipeline's cannot be lower.

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
    let h = bare_hop(2_000, 20_000 / scale);
    println!(
        "{:<22} {:<8} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>12.0}",
        "bare hop (2k/s)",
        "unpinned",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        2_000
    );
}

/// Pacing by the clock: sleep most of the wait (a spinning producer would take a core from the
/// threads measured), spin the last stretch for precision, so a late send does not shift the
/// ones after it.
fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now + Duration::from_micros(200) {
        std::thread::sleep(due - now - Duration::from_micros(150));
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

/// One hop between two threads, nothing else: the wake-up latency of a parked receiver.
fn bare_hop(rate: u64, count: u64) -> Histogram<u64> {
    let (tx, rx) = crossbeam_channel::bounded::<Instant>(1024);
    let receiver = std::thread::spawn(move || {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
        while let Ok(sent) = rx.recv() {
            let _ = h.record((sent.elapsed().as_nanos() as u64).max(1));
        }
        h
    });
    let every = Duration::from_nanos(1_000_000_000 / rate);
    let started = Instant::now();
    for i in 0..count {
        wait_until(started + every * i as u32);
        tx.send(Instant::now()).expect("send");
    }
    drop(tx);
    receiver.join().expect("receiver")
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
            wait_until(started + every * id as u32);
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

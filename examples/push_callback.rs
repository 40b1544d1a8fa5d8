//! Embed pinflow: four producer threads push JSON records; a callback sink consumes the finished
//! batches (with their statistics) in-process, and Parquet is written alongside.
//!
//! ```sh
//! cargo run --release --example push_callback
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use pinflow::{Pipeline, Source};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::temp_dir().join("pinflow-push-example.parquet");
    let rows_seen = Arc::new(AtomicU64::new(0));
    let high_variance = Arc::new(AtomicU64::new(0));
    let (seen, high) = (Arc::clone(&rows_seen), Arc::clone(&high_variance));

    let pipeline = Pipeline::builder()
        .out(&out)
        // Any option of the configuration file, typed.
        .configure(|c| c.writer.row_group_rows = 10_000)
        // Called on the writer thread with every finished batch.
        .on_batch(move |rows| {
            seen.fetch_add(rows.num_rows() as u64, Ordering::Relaxed);
            let var = rows
                .column_by_name("values_variance")
                .expect("statistics are there")
                .as_primitive::<Float64Type>();
            let n = var.iter().flatten().filter(|&v| v > 1000.0).count();
            high.fetch_add(n as u64, Ordering::Relaxed);
        })
        .build()?;

    let (source, push) = Source::push(4096);
    let run = pipeline.spawn(source)?;

    let producers: Vec<_> = (0..4)
        .map(|p| {
            let push = push.clone();
            std::thread::spawn(move || {
                for i in 0..25_000u64 {
                    let id = p * 1_000_000 + i;
                    let spread = (i % 100) as f64;
                    let record = format!(
                        r#"{{"id":{id},"service":"svc-{p}","level":"info","values":[{},{},{}]}}"#,
                        10.0,
                        10.0 + spread,
                        10.0 + spread * spread
                    );
                    // Blocks while the pipeline is behind: back-pressure, not unbounded memory.
                    push.push(record).expect("the pipeline is running");
                }
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer thread");
    }
    drop(push); // the source ends when every handle is gone

    let summary = run.join()?;
    println!("{summary}");
    println!(
        "callback saw {} rows, {} with a variance above 1000; Parquet in {}",
        rows_seen.load(Ordering::Relaxed),
        high_variance.load(Ordering::Relaxed),
        out.display()
    );
    Ok(())
}

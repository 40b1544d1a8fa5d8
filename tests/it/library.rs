//! The embedding API: push sources from many threads, back-pressure, shutdown that drains,
//! custom transforms and sinks, and a panicking transform contained.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::RecordBatch;
use pinflow::push::PushError;
use pinflow::{Pipeline, Source};

fn ids_of(rows: &RecordBatch) -> Vec<i64> {
    rows.column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

#[test]
fn many_producers_push_concurrently_and_every_record_arrives_once_in_producer_order() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let sink_seen = Arc::clone(&seen);
    let pipeline = Pipeline::builder()
        .out(dir.path().join("push.parquet"))
        // One parse and one compute thread: then per-producer order holds end to end.
        .configure(|c| {
            c.threads.parse = Some(1);
            c.threads.compute = Some(1);
        })
        .on_batch(move |rows| sink_seen.lock().unwrap().extend(ids_of(rows)))
        .build()
        .unwrap();
    let (source, push) = Source::push(256);
    let run = pipeline.spawn(source).unwrap();
    let (producers, per) = (8i64, 5_000i64);
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let push = push.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let id = p * 1_000_000 + i;
                    // Mix single objects and small NDJSON chunks.
                    if i % 10 == 0 && i + 1 < per {
                        let chunk = format!("{{\"id\":{id}}}\n{{\"id\":{}}}\n", id + 1);
                        push.push(chunk).unwrap();
                    } else if i % 10 == 1 {
                        continue; // pushed with the previous one
                    } else {
                        push.push(format!("{{\"id\":{id},\"values\":[{i},1]}}"))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(push);
    let summary = run.join().unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    let n = (producers * per) as u64;
    assert_eq!(summary.records_written, n, "{summary}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, n);
    // Per producer: strictly increasing, complete.
    let mut last: HashMap<i64, i64> = HashMap::new();
    for &id in seen.iter() {
        let (p, i) = (id / 1_000_000, id % 1_000_000);
        let prev = last.insert(p, i);
        assert_eq!(prev.map_or(0, |x| x + 1), i, "producer {p} out of order");
    }
    // The Parquet file holds the same rows.
    let mut file_ids = ids(summary.output.as_ref().unwrap());
    file_ids.sort_unstable();
    let mut expect: Vec<i64> = seen.clone();
    expect.sort_unstable();
    assert_eq!(file_ids, expect);
}

#[test]
fn an_idle_pipeline_hands_batches_to_the_writer_and_keeps_order_and_the_ledger() {
    // With compute threads and without (then the parse threads compute); and with a user
    // transform, which turns the short path off (transforms keep their threads and order).
    for (compute, transform) in [(0, false), (1, false), (0, true)] {
        short_path_with(compute, transform);
    }
}

fn short_path_with(compute: usize, transform: bool) {
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<usize>();
    let sink_seen = Arc::clone(&seen);
    let mut builder = Pipeline::builder()
        .out(dir.path().join("short.parquet"))
        .configure(|c| {
            c.threads.parse = Some(1);
            c.threads.compute = Some(compute);
            // No row group deadline: the writer wakes only for input, so it is waiting at
            // every push below however long the test takes.
            c.writer.flush_interval = Duration::from_secs(3600);
        })
        .on_batch(move |rows| {
            let mut seen = sink_seen.lock().unwrap();
            seen.extend(ids_of(rows));
            let _ = arrived_tx.send(seen.len());
        });
    if transform {
        builder = builder.transform(|rows: RecordBatch| Ok(rows));
    }
    let pipeline = builder.build().unwrap();
    let (source, push) = Source::push(64);
    let run = pipeline.spawn(source).unwrap();
    let metrics = run.metrics();
    // One record at a time, each pushed once the one before has reached the sink and the
    // writer waits for input again (its state, not a sleep): the pipeline is idle at every
    // push, so every one of them takes the short path (asserted below).
    let idle = 40;
    for id in 0..idle {
        wait_until("the writer to wait for input", || writer_waiting(&metrics));
        push.push(format!("{{\"id\":{id},\"values\":[{id},2]}}"))
            .unwrap();
        while arrived.recv_timeout(Duration::from_secs(30)).unwrap() < id as usize + 1 {}
    }
    // A malformed record while idle: its dead letter is counted wherever it was parsed.
    wait_until("the writer to wait for input", || writer_waiting(&metrics));
    push.push("{\"id\": 7,").unwrap();
    wait_until("the malformed record's dead letter", || {
        metrics.records_dead_lettered.load(Ordering::Relaxed) == 1
    });
    // Then a burst: the queues fill and the parse threads take it.
    let burst = 20_000i64;
    for id in idle..idle + burst {
        push.push(format!("{{\"id\":{id}}}")).unwrap();
    }
    drop(push);
    let summary = run.join().unwrap();
    match transform {
        // Each idle push, the malformed one too, went the short path (the burst may add more).
        false => assert!(summary.short_path_batches > idle as u64, "{summary}"),
        true => assert_eq!(
            (summary.short_path_batches, summary.short_path_joins),
            (0, 0),
            "{summary}"
        ),
    }
    assert!(summary.ledger_balances(), "{summary}");
    let n = (idle + burst) as u64;
    assert_eq!(summary.records_written, n, "{summary}");
    assert_eq!(summary.records_parsed, n + 1, "{summary}");
    assert_eq!(summary.records_dead_lettered, 1, "{summary}");
    // One producer: its order holds end to end, across both paths.
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, (0..idle + burst).collect::<Vec<_>>());
    assert_eq!(ids(summary.output.as_ref().unwrap()), *seen);
}

#[test]
fn a_batch_failing_on_the_short_path_stops_the_run_with_the_error_and_files_stay_valid() {
    // An inferred schema that the configured statistics do not fit: the first batch, parsed by
    // the idle writer, fails to make its layout.
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::builder()
        .out(dir.path().join("bad.parquet"))
        .configure(|c| {
            c.schema.infer = Some(true);
            c.schema.stats = Some(vec!["latencies".into()]);
        })
        .build()
        .unwrap();
    let metrics = pipeline.metrics();
    let (source, push) = Source::push(8);
    let err = std::thread::scope(|s| {
        let run = s.spawn(|| pipeline.run(source));
        // Pushed once the writer waits for input, so that the batch takes the short path.
        wait_until("the writer to wait for input", || writer_waiting(&metrics));
        push.push("{\"id\":1,\"values\":[1,2]}").unwrap();
        drop(push);
        run.join().unwrap().unwrap_err().to_string()
    });
    assert!(err.contains("latencies"), "{err}");
    // It did: the failure this test is about happened on the writer, not a parse thread.
    assert_eq!(metrics.short_path_batches.load(Ordering::Relaxed), 1);
    // The writer finished its file, as after a failing parse thread; holding no row, the
    // failed run then removed it, so nothing is left to read as its result (nor a temporary).
    let names = dir_names(dir.path());
    assert!(names.iter().all(|n| n.ends_with(".ndjson")), "{names:?}");
    // The stop the failure set was lifted with its run: the same pipeline's next run, of
    // records the statistics fit, reads them to the end.
    let (source, push) = Source::push(8);
    push.push("{\"id\":2,\"latencies\":[1.0,2.0]}").unwrap();
    drop(push);
    let summary = pipeline.run(source).unwrap();
    assert_eq!(summary.records_written, 1, "{summary}");
    assert!(!summary.interrupted, "{summary}");
}

/// A sink that keeps its rows in memory until told to make them durable, or refuses to.
struct BufferingSink {
    buffered: usize,
    durable: Arc<AtomicUsize>,
    refuse: bool,
}

impl pinflow::stage::Sink for BufferingSink {
    fn write(&mut self, rows: &RecordBatch) -> Result<(), pinflow::stage::BoxError> {
        self.buffered += rows.num_rows();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), pinflow::stage::BoxError> {
        if self.refuse {
            return Err("the sink's store is full".into());
        }
        self.durable
            .fetch_add(std::mem::take(&mut self.buffered), Ordering::Relaxed);
        Ok(())
    }
}

/// With a journal, each checkpoint has the sinks make their rows durable before it commits
/// their items: a sink whose flush fails fails the run with nothing committed, so the next
/// run gives every record again; one whose flush succeeds has made every record durable.
#[test]
fn a_checkpoint_commits_only_once_the_sinks_made_their_rows_durable() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let lines: String = (0..500).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let durable = Arc::new(AtomicUsize::new(0));
    let run = |refuse: bool| {
        Pipeline::builder()
            .out(dir.path().join("p.parquet"))
            .configure(|c| c.writer.journal = true)
            .sink(BufferingSink {
                buffered: 0,
                durable: Arc::clone(&durable),
                refuse,
            })
            .build()
            .unwrap()
            .run(Source::files(&[input.display().to_string()]).unwrap())
    };
    let err = match run(true) {
        Ok(s) => panic!("the run succeeded, {} records written", s.records_written),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("the sink's store is full"), "{err}");
    let summary = run(false).unwrap();
    assert_eq!(summary.records_written, 500, "{summary}");
    assert_eq!(durable.load(Ordering::Relaxed), 500);
}

/// A failing transform stops the run, on a compute thread or on a parse thread; the stop is
/// the failure's, lifted when the run is over, so the same pipeline's next run reads its input
/// to the end.
#[test]
fn a_pipeline_whose_transform_failed_runs_again_to_the_end() {
    for compute in [1, 0] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.ndjson");
        let lines: String = (0..1000).map(|i| format!("{{\"id\":{i}}}\n")).collect();
        std::fs::write(&input, lines).unwrap();
        let refuse = Arc::new(AtomicBool::new(true));
        let r = Arc::clone(&refuse);
        let pipeline = Pipeline::builder()
            .out(dir.path().join("p.parquet"))
            .configure(|c| {
                c.threads.compute = Some(compute);
                c.writer.overwrite = true;
            })
            .transform(move |rows: RecordBatch| match r.load(Ordering::Relaxed) {
                true => Err("refused by the test".into()),
                false => Ok(rows),
            })
            .build()
            .unwrap();
        let source = || Source::files(&[input.display().to_string()]).unwrap();
        let err = pipeline.run(source()).unwrap_err().to_string();
        assert!(
            err.contains("refused by the test"),
            "compute {compute}: {err}"
        );
        refuse.store(false, Ordering::Relaxed);
        let summary = pipeline.run(source()).unwrap();
        assert_eq!(
            summary.records_written, 1000,
            "compute {compute}: {summary}"
        );
        assert!(!summary.interrupted, "compute {compute}: {summary}");
    }
}

#[test]
fn a_full_queue_refuses_at_once_and_shutdown_drains_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    // The sink holds the first batch until released: everything behind it backs up.
    let gate = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let (g, w) = (Arc::clone(&gate), Arc::clone(&written));
    let pipeline = Pipeline::builder()
        .out(dir.path().join("drain.parquet"))
        .configure(|c| c.queue_capacity = 1)
        .on_batch(move |rows| {
            while !g.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            w.fetch_add(rows.num_rows(), Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let (source, push) = Source::push(4);
    // The flag `RunHandle::shutdown` sets: set here directly, so that the stop is known to
    // come before the gate opens (a thread calling `shutdown` gave no such order).
    let stop = pipeline.stop_flag();
    let run = pipeline.spawn(source).unwrap();
    let mut accepted = 0;
    let mut full = None;
    for i in 0..10_000 {
        match push.try_push(format!("{{\"id\":{i}}}")) {
            Ok(()) => accepted += 1,
            Err(e) => {
                full = Some(e);
                break;
            }
        }
        // Let the feeder take some so the queues between the stages fill too. (How many are
        // accepted varies with timing; every assertion below holds for any number.)
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let err = full.expect("the queue filled up");
    assert!(matches!(err, PushError::Full(_)), "{err}");
    assert!(err.to_string().contains("full"));
    // The refused item comes back whole.
    let pinflow::push::Pushed::Body(body) = err.into_inner() else {
        panic!("a body was pushed")
    };
    assert!(String::from_utf8(body).unwrap().starts_with("{\"id\":"));
    // Shut down with records still queued (in the push queue and between stages), then open
    // the gate: everything accepted is written, and later pushes are refused.
    stop.store(true, Ordering::Relaxed);
    gate.store(true, Ordering::Release);
    let summary = run.join().unwrap();
    assert!(summary.interrupted, "a stopped run: {summary}");
    assert_eq!(summary.records_written, accepted, "{summary}");
    assert_eq!(written.load(Ordering::Relaxed) as u64, accepted);
    assert!(matches!(
        push.try_push("{\"id\":-1}"),
        Err(PushError::Closed(_))
    ));
    assert_eq!(ids(summary.output.as_ref().unwrap()).len() as u64, accepted);
}

#[test]
fn a_panicking_transform_stops_the_run_with_an_error_and_files_stay_valid() {
    // On a compute thread, and on the parse thread when the plan has no compute threads.
    for compute in [1, 0] {
        panicking_transform_with_compute_threads(compute);
    }
}

fn panicking_transform_with_compute_threads(compute: usize) {
    let dir = tempfile::tempdir().unwrap();
    let batches = Arc::new(AtomicUsize::new(0));
    let b = Arc::clone(&batches);
    let pipeline = Pipeline::builder()
        .out(dir.path().join("p.parquet"))
        .configure(|c| {
            c.writer.rotate_rows = Some(50);
            c.threads.compute = Some(compute);
        })
        .transform(move |rows: RecordBatch| {
            if b.fetch_add(1, Ordering::Relaxed) == 20 {
                panic!("boom at batch 20");
            }
            Ok(rows)
        })
        .build()
        .unwrap();
    let (source, push) = Source::push(8);
    let run = pipeline.spawn(source).unwrap();
    let producer = std::thread::spawn(move || {
        for i in 0..100_000 {
            if push.push(format!("{{\"id\":{i}}}")).is_err() {
                return i; // refused once the run stopped
            }
        }
        100_000
    });
    let err = run.join().unwrap_err().to_string();
    assert!(
        err.contains("transform") && err.contains("panicked: boom at batch 20"),
        "{err}"
    );
    assert!(
        producer.join().unwrap() < 100_000,
        "pushes are refused after the failure"
    );
    // Every file present is complete and readable; no temporary file is left.
    let names = dir_names(dir.path());
    assert!(names.iter().any(|n| n.ends_with(".parquet")), "{names:?}");
    for n in &names {
        assert!(!n.starts_with('.'), "temporary file left: {n}");
        if n.ends_with(".parquet") {
            read_parquet(&dir.path().join(n));
        }
    }
}

#[test]
fn transforms_and_sinks_see_the_statistics_and_parquet_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let got: Arc<Mutex<Vec<RecordBatch>>> = Arc::default();
    let g = Arc::clone(&got);
    let pipeline = Pipeline::builder()
        .out(dir.path().join("never.parquet"))
        .parquet(false)
        .filter(|row| row.f64("values_mean").is_some_and(|m| m > 2.0))
        .on_batch(move |rows| g.lock().unwrap().push(rows.clone()))
        .build()
        .unwrap();
    let (source, push) = Source::push(16);
    let run = pipeline.spawn(source).unwrap();
    // Record 2's values, whose statistics the sink must see.
    let values: [i64; 3] = [3, 4, 8];
    push.push(format!(
        "{{\"id\":1,\"values\":[1,2]}}\n{{\"id\":2,\"values\":{values:?}}}\n{{\"id\":3}}"
    ))
    .unwrap();
    drop(push);
    let summary = run.join().unwrap();
    assert!(summary.ledger_balances(), "{summary}");
    assert_eq!((summary.records_written, summary.records_filtered), (1, 2));
    let got = got.lock().unwrap();
    let ids: Vec<i64> = got.iter().flat_map(ids_of).collect();
    assert_eq!(ids, [2]);
    // The sample variance, exactly: (n·Σx² − (Σx)²) / (n(n − 1)) in integers, one rounding.
    let n = values.len() as i64;
    let (sum, sum_sq) = (
        values.iter().sum::<i64>(),
        values.iter().map(|x| x * x).sum::<i64>(),
    );
    let want = (n * sum_sq - sum * sum) as f64 / (n * (n - 1)) as f64;
    let column = |name: &str| {
        got[0]
            .column_by_name(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .as_primitive::<Float64Type>()
            .value(0)
    };
    assert_eq!(column("values_variance"), want);
    assert_eq!(column("values_mean"), sum as f64 / n as f64);
    assert!(
        dir_names(dir.path()).is_empty(),
        "no Parquet file when it is off"
    );
}

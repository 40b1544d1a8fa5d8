//! Unit tests of the receive endpoint's pieces that need no pipeline.

use super::server::{same_secret, shape_error};

#[test]
fn the_token_comparison_needs_every_byte_and_the_length() {
    assert!(same_secret(b"s3cret", b"s3cret"));
    assert!(!same_secret(b"s3cre", b"s3cret"));
    assert!(!same_secret(b"s3cretx", b"s3cret"));
    assert!(!same_secret(b"S3cret", b"s3cret"));
    assert!(!same_secret(b"", b"s3cret"));
    // A length that wraps in a byte is still a difference.
    assert!(!same_secret(&[0; 256], b""));
}

#[test]
fn a_body_that_is_not_json_is_named_before_admission() {
    assert!(shape_error(b"{\"id\":1}", false).is_none());
    assert!(shape_error(b"  [1,2]", false).is_none());
    assert!(shape_error(b"{\"id\":1}\n{\"id\":2}\n", false).is_none());
    assert!(shape_error(b"id,name\n1,x\n", false)
        .unwrap()
        .contains("not JSON"));
    assert!(shape_error(b"   ", false).unwrap().contains("empty"));
    assert!(shape_error(b"{\"a\":\"\xff\"}", false)
        .unwrap()
        .contains("UTF-8"));
    assert!(shape_error(&[0x1f, 0x8b, 8, 0], true).is_none());
    assert!(shape_error(b"{}", true).unwrap().contains("gzip"));
}

mod write_ahead_log {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::super::wal::{replay, Replayed, Wal};
    use crate::journal::RangeSet;
    use crate::metrics::live::CommittedItems;

    fn wait_durable(wal: &Wal, end: u64) {
        let started = Instant::now();
        while wal.durable() < end {
            assert!(started.elapsed() < Duration::from_secs(60), "never synced");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn synced_bodies_are_read_back_past_the_committed_items_and_a_cut_tail_ends_a_segment() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("out.parquet.receive-wal");
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&wakes);
        let mut wal = Wal::start(
            &dir,
            7,
            10,
            Vec::new(),
            Box::new(move || {
                w.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .unwrap();
        let mut end = 0;
        for seq in 10..14 {
            end = wal
                .append(seq, seq == 12, format!("{{\"id\":{seq}}}").as_bytes())
                .unwrap();
        }
        wait_durable(&wal, end);
        // The sync thread publishes the durable end, then wakes the loop: the wake may come
        // a moment after the end is seen (under qemu it did).
        let started = Instant::now();
        while wakes.load(Ordering::Relaxed) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the loop is woken after a sync"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(wal);
        // A record cut while it was appended: the killed run never acknowledged it.
        let segment = dir.join(format!("wal-{:020}.log", 10));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        f.write_all(&[200, 0, 0, 0, 14, 0, 0]).unwrap();
        drop(f);
        let mut done = RangeSet::default();
        done.insert_range(0, 10);
        // Another journal's log (this one moved aside, a new one started) is refused.
        let why = replay(&dir, &done, 8).unwrap_err().to_string();
        assert!(
            why.contains("goes with another journal") && why.contains("started at 7"),
            "{why}"
        );
        let (bodies, kept) = replay(&dir, &done, 7).unwrap();
        let expect = |seq: u64| Replayed {
            seq,
            gzip: seq == 12,
            body: format!("{{\"id\":{seq}}}").into_bytes(),
        };
        assert_eq!(bodies, vec![expect(11), expect(12), expect(13)]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].items.to_string(), "11-13");

        // The next run keeps the old segment until its items are committed, then deletes it.
        let mut wal = Wal::start(&dir, 7, 14, kept, Box::new(|| {})).unwrap();
        let committed = CommittedItems::default();
        committed.add([(11, 12)]);
        wal.trim(&committed);
        assert!(segment.exists(), "item 13 is not committed yet");
        committed.add([(13, 13)]);
        wal.trim(&committed);
        assert!(!segment.exists(), "every item of it is committed");
        drop(wal);
        // All of a segment committed by an earlier run: deleted when read back.
        done.insert_range(0, 20);
        let (bodies, kept) = replay(&dir, &done, 7).unwrap();
        assert!(bodies.is_empty() && kept.is_empty());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["journal-started"], "no segment left");
    }
}

mod closing {
    use std::time::Duration;

    use super::super::wal::{Wal, PAUSE_BEFORE_WAIT};

    /// The sync thread waits for appends or the close. A close that came between its check
    /// and its wait was once lost, and the drop waited on the thread forever (a CI run's unit
    /// test hung so). The test widens that window to 50 ms and closes inside it.
    #[test]
    fn a_close_while_the_sync_thread_is_about_to_wait_is_not_lost() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("out.parquet.receive-wal");
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            PAUSE_BEFORE_WAIT.set(Duration::from_millis(50));
            for round in 0..5u64 {
                let wal = Wal::start(&dir, 7, round, Vec::new(), Box::new(|| {})).unwrap();
                std::thread::sleep(Duration::from_millis(10));
                drop(wal);
            }
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("closing a write-ahead log waited on its sync thread for a minute");
    }
}

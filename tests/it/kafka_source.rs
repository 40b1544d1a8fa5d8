//! The Kafka source (`--kafka-brokers ... --kafka-topics ... --kafka-group ...`, feature
//! `kafka`) against librdkafka's in-process mock cluster (and, with the Kafka venv, a real
//! Tansu broker fed by confluent-kafka): messages produced by an independent producer are
//! read back from the Parquet files pinflow wrote, each exactly once, bad ones
//! dead-lettered with their topic, partition and offset; a kill -9 and a restart with the
//! journal, and two members of one group, still write every message once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::ClientConfig;

use crate::common::kafka::{
    assert_exactly_once, final_ids, logs, metric, pinflow_source, produce, record, records_over,
    GroupOffsets, SHORT_SESSION_FLAGS, TANSU_SESSION_FLAGS,
};
use crate::common::{all_final_ids, final_parquet_files, read_parquet};

/// Writes `pinflow.toml` in `dir`: the columns `part` and `off`, each row's partition and
/// offset.
fn write_meta_columns_config(dir: &Path) {
    std::fs::write(
        dir.join("pinflow.toml"),
        "[[transform]]\nset = { part = { meta = \"kafka_partition\" }, off = { meta = \"kafka_offset\" } }\n",
    )
    .unwrap();
}

#[test]
fn every_message_is_written_once_with_its_partition_and_offset_and_bad_ones_dead_lettered() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut messages = records_over(0..300, 3);
    // NDJSON and an array in one message are records too.
    messages.push((0, Some(format!("{}\n{}\n", record(300), record(301)))));
    messages.push((1, Some(format!("[{},{}]", record(302), record(303)))));
    // Not JSON, and a tombstone: dead letters naming where they are.
    messages.push((2, Some("not json at all".into())));
    messages.push((2, None));
    produce(&bootstrap, "logs", &messages);

    let dir = tempfile::tempdir().unwrap();
    write_meta_columns_config(dir.path());
    let o = pinflow_source(
        dir.path(),
        &bootstrap,
        "g1",
        "x.parquet",
        &[
            "--config",
            "pinflow.toml",
            "--exit-at-end",
            "--max-dead-letters",
            "1",
        ],
    )
    // Batches full by bytes (a record is about 110 bytes), before they are by count.
    .env("PINFLOW_KAFKA_BATCH_MAX_BYTES", "500")
    .output()
    .unwrap();
    let text = logs(&o);
    // 3: an item failed (the tombstone), dead-lettered with its reason.
    assert_eq!(o.status.code(), Some(3), "{text}");
    let batches = read_parquet(&dir.path().join("x.parquet"));
    let mut ids = Vec::new();
    let mut offsets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in &batches {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let part = b
            .column_by_name("part")
            .unwrap()
            .as_primitive::<Int64Type>();
        let off = b.column_by_name("off").unwrap().as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            ids.push(id.value(r));
            if id.value(r) < 300 {
                // Produced to partition id % 3, in order: its offset is its rank there.
                assert_eq!(part.value(r), id.value(r) % 3, "row {}", id.value(r));
                offsets.entry(part.value(r)).or_default().push(off.value(r));
            }
        }
    }
    assert_exactly_once(ids, 304, &text);
    for (p, mut offs) in offsets {
        offs.sort_unstable();
        assert_eq!(offs, (0..100).collect::<Vec<_>>(), "partition {p}");
    }
    let dead = std::fs::read_to_string(dir.path().join("x.parquet.deadletter.ndjson"))
        .unwrap_or_else(|e| panic!("no dead letters ({e}): {text}"));
    let lines: Vec<&str> = dead.lines().collect();
    assert_eq!(lines.len(), 2, "{dead}");
    assert!(lines.iter().any(|l| l.contains("logs/2@100")), "{dead}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("logs/2@101") && l.contains("tombstone")),
        "{dead}"
    );
    assert!(text.contains("written 304"), "{text}");
}

#[test]
fn a_kill_9_mid_run_and_a_restart_with_the_journal_write_every_message_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..6000, 3));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let flags = SHORT_SESSION_FLAGS;
    // Killed once a checkpoint committed files, while it reads on.
    let mut child = pinflow_source(dir.path(), &bootstrap, "g2", "out/x.parquet", &flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = dir.path().join("out");
    crate::common::wait_for_child(&mut child, "a first checkpoint", || {
        !final_parquet_files(&out).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = final_ids(&out).len();
    // More messages while it is down, then a restart to the end.
    produce(&bootstrap, "logs", &records_over(6000..9000, 3));
    let mut extra = flags.to_vec();
    extra.push("--exit-at-end");
    let o = pinflow_source(dir.path(), &bootstrap, "g2", "out/x.parquet", &extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", logs(&o));
    assert!(before > 0 && before < 9000, "{before} rows before the kill");
    assert_exactly_once(final_ids(&out), 9000, &logs(&o));
}

/// The kill instants' random source and its seed, printed so that a failure can be replayed
/// (`KAFKA_KILL_SEED`).
fn kill_seed() -> (u64, fastrand::Rng) {
    let seed = std::env::var("KAFKA_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("kill seed {seed} (KAFKA_KILL_SEED replays it)");
    (seed, fastrand::Rng::with_seed(seed))
}

#[test]
fn kill_9_at_random_instants_and_restarts_with_the_journal_write_every_message_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    // KAFKA_KILL_KEEP=1 keeps the directory (the runs' logs, the files, the journal).
    let keep = std::env::var_os("KAFKA_KILL_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let out = dir.path().join("out");
    let flags = SHORT_SESSION_FLAGS;
    let (seed, mut rng) = kill_seed();
    // 5 × 8000 messages of about 200 bytes over 3 partitions: under the mock broker's
    // retention (it deletes a partition's oldest messages past a few MB; checked below).
    const PER_ROUND: u64 = 8_000;
    const ROUNDS: u64 = 5;
    let mut rows_seen = Vec::new();
    for round in 0..ROUNDS {
        // More messages each round, so that kills land while it reads, checkpoints or
        // joins the group.
        let ids = round * PER_ROUND..(round + 1) * PER_ROUND;
        produce(&bootstrap, "logs", &records_over(ids, 3));
        let log = std::fs::File::create(dir.path().join(format!("round-{round}.log"))).unwrap();
        let mut child = pinflow_source(dir.path(), &bootstrap, "g5", "out/x.parquet", &flags)
            .env("RUST_LOG", "pinflow=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        // Once this run has committed a checkpoint (it joined the group and reads), at a
        // random instant within the next 400 ms: while it reads, checkpoints or commits.
        let files = final_parquet_files(&out).len();
        crate::common::wait_for_child(&mut child, "a checkpoint of this run", || {
            final_parquet_files(&out).len() > files
        });
        let after = Duration::from_millis(rng.u64(0..400));
        std::thread::sleep(after);
        let _ = child.kill();
        let status = child.wait().unwrap();
        let rows = final_ids(&out).len();
        eprintln!(
            "round {round}: killed {after:?} after a checkpoint ({status}), {rows} rows in files"
        );
        rows_seen.push(rows);
    }
    let mut extra = flags.to_vec();
    extra.push("--exit-at-end");
    let o = pinflow_source(dir.path(), &bootstrap, "g5", "out/x.parquet", &extra)
        .env("RUST_LOG", "pinflow=debug")
        .output()
        .unwrap();
    std::fs::write(dir.path().join("final.log"), logs(&o)).unwrap();
    if keep {
        eprintln!("kept {}", dir.path().display());
    }
    assert!(o.status.success(), "{}", logs(&o));
    let total = (ROUNDS * PER_ROUND) as i64;
    let low = low_watermarks(&bootstrap, 3);
    assert_eq!(
        low,
        [0, 0, 0],
        "the mock broker deleted messages: produce fewer"
    );

    assert_exactly_once(
        final_ids(&out),
        total,
        &format!(
            "seed {seed}, rows after each kill {rows_seen:?}\n{}",
            logs(&o)
        ),
    );
}

/// A member of a group: a `pinflow run` reading `logs` into `dir/NAME/x.parquet`, its log in
/// `dir/LOG`, its metrics on a port of its own; killed if the test ends (a failure) before it
/// did.
struct Member {
    process: crate::common::KillOnDrop,
    port: u16,
}

impl Member {
    fn start(
        dir: &Path,
        bootstrap: &str,
        group: &str,
        (name, log): (&str, &str),
        flags: &[&str],
    ) -> Member {
        let port = crate::common::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut f = flags.to_vec();
        f.extend(["--metrics-addr", &addr]);
        let _ = std::fs::create_dir(dir.join(name));
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let child = pinflow_source(dir, bootstrap, group, &format!("{name}/x.parquet"), &f)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Member {
            process: crate::common::KillOnDrop(Some(child)),
            port,
        }
    }

    /// Its process, while this holds it.
    fn child(&mut self) -> &mut std::process::Child {
        self.process
            .0
            .as_mut()
            .expect("a member's process, not yet taken")
    }

    /// Its process, no longer killed on drop.
    fn take(mut self) -> std::process::Child {
        self.process
            .0
            .take()
            .expect("a member's process, not yet taken")
    }
}

/// Waits until `cond`, failing the test if a member ends first or past the deadline.
fn wait_for_members(members: &mut [&mut Member], what: &str, cond: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !cond() {
        for m in members.iter_mut() {
            if let Some(status) = m.child().try_wait().unwrap() {
                panic!("a member ended ({status}) before {what}");
            }
        }
        assert!(
            started.elapsed() < crate::common::STOP_DEADLINE,
            "{what}: not within {:?}",
            crate::common::STOP_DEADLINE
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until each of `members` owns `each` partitions: the group has settled, so that
/// messages produced now are read by their partition's one owner. (Had one member read
/// before the other joined, it would commit in its revocation callback, which librdkafka's
/// mock cluster refuses while the group rebalances: see docs/usage.md, "Kafka source".)
fn wait_settled(members: &mut [&mut Member], each: usize) {
    let ports: Vec<u16> = members.iter().map(|m| m.port).collect();
    wait_for_members(members, "the group settled", || {
        ports
            .iter()
            .all(|&port| metric(port, "pinflow_kafka_partitions_owned") == Some(each as f64))
    });
}

/// Reads the logs `names` of `dir`, one after the other.
fn logs_of(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|l| std::fs::read_to_string(dir.join(l)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[test]
fn two_members_of_one_group_write_every_message_once_between_them() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 6, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--journal", "true", "--rotate-interval", "100ms"];
    let [mut a, mut b] = [("a", "a.log"), ("b", "b.log")]
        .map(|m| Member::start(dir.path(), &bootstrap, "g3", m, &flags));
    wait_settled(&mut [&mut a, &mut b], 3);
    produce(&bootstrap, "logs", &records_over(0..6000, 6));
    let group = GroupOffsets::new(&bootstrap, "g3", 6);
    wait_for_members(&mut [&mut a, &mut b], "every message committed", || {
        group.read() == [Some(1000); 6]
    });
    for m in [a, b] {
        let o = crate::common::sigterm_and_wait(m.take());
        assert!(
            o.status.success(),
            "{}",
            logs_of(dir.path(), &["a.log", "b.log"])
        );
    }
    let mut ids = final_ids(&dir.path().join("a"));
    let b_ids = final_ids(&dir.path().join("b"));
    assert!(
        !ids.is_empty() && !b_ids.is_empty(),
        "one member wrote nothing"
    );
    ids.extend(b_ids);
    assert_exactly_once(ids, 6000, &logs_of(dir.path(), &["a.log", "b.log"]));
}

/// Partitions taken away while their messages wait in the writer, where no rotation would
/// checkpoint them (`writer.rotate_interval` unset): the revocation asks the writer for a
/// checkpoint at once (its journal line, pending), instead of waiting out
/// `fetch.shutdown_timeout`. The mock cluster refuses the offsets' commit in that callback
/// (a real broker takes it: `on_a_real_broker_a_member_joining_mid_read_...`), so the second
/// member reads those messages again; the first then cannot land its checkpoint whole and
/// stops, saying why, and its restart undoes the checkpoint: every message once between the
/// two. (One-phase, the first member kept them and they were written twice.)
#[test]
fn a_revocation_has_what_was_read_checkpointed_without_waiting_for_a_rotation() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 4, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..4000, 4));
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--journal",
        "true",
        "--shutdown-timeout",
        "5s",
        "--kafka-property",
        "session.timeout.ms=3000",
        "--kafka-property",
        "heartbeat.interval.ms=500",
    ];
    let mut a = Member::start(dir.path(), &bootstrap, "g10", ("a", "a.log"), &flags);
    let a_port = a.port;
    wait_for_members(&mut [&mut a], "member a writing every message", || {
        metric(a_port, "pinflow_records_total{stage=\"write\"}") == Some(4000.0)
    });
    let a_out = dir.path().join("a");
    let journal = a_out.join("x.parquet.journal");
    let checkpoints = || {
        std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .matches(r#"{"checkpoint":"#)
            .count()
    };
    assert_eq!(checkpoints(), 0, "no checkpoint yet: nothing asks for one");
    let b = Member::start(dir.path(), &bootstrap, "g10", ("b", "b.log"), &flags);
    let logs = || logs_of(dir.path(), &["a.log", "b.log", "a-again.log"]);
    // The revocation's checkpoint, long before the 5 s a revocation may wait.
    crate::common::wait_for_child(a.child(), "member a's checkpoint", || checkpoints() == 1);
    let status = a.child().wait().unwrap();
    assert!(!status.success(), "{}", logs());
    assert!(
        logs().contains("went to another member of the group before the group took"),
        "{}",
        logs()
    );
    // Member b takes every partition once a's session ends, and reads them all (those a
    // held from the start: a's checkpoint never reached the group).
    let b_port = b.port;
    let started = std::time::Instant::now();
    while metric(b_port, "pinflow_records_total{stage=\"write\"}") != Some(4000.0) {
        assert!(
            started.elapsed() < crate::common::STOP_DEADLINE,
            "member b did not write every message: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = crate::common::sigterm_and_wait(b.take());
    assert!(o.status.success(), "{}", logs());
    let again = pinflow_source(
        dir.path(),
        &bootstrap,
        "g10",
        "a/x.parquet",
        &[&flags[..], &["--exit-at-end"]].concat(),
    )
    .output()
    .unwrap();
    std::fs::write(
        dir.path().join("a-again.log"),
        crate::common::kafka::logs(&again),
    )
    .unwrap();
    assert!(again.status.success(), "{}", logs());
    assert!(logs().contains("undone"), "{}", logs());
    let mut ids = final_ids(&a_out);
    ids.extend(final_ids(&dir.path().join("b")));
    assert_exactly_once(ids, 4000, &logs());
}

#[test]
fn two_members_one_killed_mid_run_write_every_message_once_between_them() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 4, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (seed, mut rng) = kill_seed();
    let start = |m, flags: &[&str]| Member::start(dir.path(), &bootstrap, "g6", m, flags);
    let mut a = start(("a", "a.log"), &SHORT_SESSION_FLAGS);
    let mut b = start(("b", "b.log"), &SHORT_SESSION_FLAGS);
    wait_settled(&mut [&mut a, &mut b], 2);
    // Messages keep coming until member a is killed, so that it dies while it reads (at
    // most 36,000 in all: under the mock broker's retention, checked below).
    let producing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = {
        let (producing, bootstrap) = (std::sync::Arc::clone(&producing), bootstrap.clone());
        std::thread::spawn(move || {
            let mut next = 0;
            while producing.load(std::sync::atomic::Ordering::Relaxed) && next < 32_000 {
                produce(&bootstrap, "logs", &records_over(next..next + 400, 4));
                next += 400;
                std::thread::sleep(Duration::from_millis(20));
            }
            next
        })
    };
    let a_out = dir.path().join("a");
    crate::common::wait_for_child(a.child(), "a first checkpoint of member a", || {
        !final_parquet_files(&a_out).is_empty()
    });
    // Killed at a random instant: while it reads, writes, checkpoints, or commits a
    // checkpoint's offsets to the group (the two-phase checkpoint: what a checkpoint holds is
    // in the group's offsets, or undone by a's restart below).
    let after = Duration::from_millis(rng.u64(0..1000));
    std::thread::sleep(after);
    a.child().kill().unwrap();
    a.child().wait().unwrap();
    producing.store(false, std::sync::atomic::Ordering::Relaxed);
    let produced = producer.join().unwrap();
    let offsets = GroupOffsets::new(&bootstrap, "g6", 4);
    let killed_with = final_ids(&a_out).len();
    eprintln!(
        "member a killed {after:?} after its first checkpoint with {killed_with} rows in its \
         files, {produced} messages produced by then"
    );
    // More messages: member b reads them, and, once the group notices a's end, a's too.
    let total = produced + 4000;
    produce(&bootstrap, "logs", &records_over(produced..total, 4));
    let ends = [total as i64 / 4; 4];
    crate::common::wait_for_child(b.child(), "member b committing every message", || {
        offsets
            .read()
            .iter()
            .zip(ends)
            .all(|(c, end)| *c == Some(end))
    });
    let o = crate::common::sigterm_and_wait(b.take());
    let logs = || logs_of(dir.path(), &["a.log", "b.log", "a-again.log"]);
    assert!(o.status.success(), "{}", logs());
    // Member a again, which finishes its own journal (files whose checkpoint committed but
    // were not yet in place) and finds nothing left to read.
    let again = start(
        ("a", "a-again.log"),
        &[&SHORT_SESSION_FLAGS[..], &["--exit-at-end"]].concat(),
    )
    .child()
    .wait()
    .unwrap();
    assert!(again.success(), "{}", logs());
    let mut ids = final_ids(&a_out);
    let b_ids = final_ids(&dir.path().join("b"));
    assert!(
        killed_with > 0 && !b_ids.is_empty(),
        "a wrote {killed_with} rows before its kill, b {}",
        b_ids.len()
    );
    ids.extend(b_ids);
    assert_eq!(low_watermarks(&bootstrap, 4), [0, 0, 0, 0]);
    assert_exactly_once(ids, total as i64, &format!("seed {seed}\n{}", logs()));
}

/// A member killed exactly between a checkpoint's journal line and the group's commit of its
/// offsets (`writer.pending`), or between that commit and the journal's confirmation
/// (`writer.landed`): the other member reads from the group's offsets, and the killed one,
/// restarted, undoes its pending checkpoint in the first case (the other member wrote those
/// messages) and keeps it in the second (the group's offsets are past them). Every message
/// once between the two outputs either way. (One-phase, the first case wrote the messages of
/// that checkpoint twice.)
#[cfg(feature = "failpoints")]
#[test]
fn a_member_killed_between_its_journal_and_the_groups_commit_leaves_every_message_once() {
    for (point, group, stands) in [
        ("writer.pending", "g8", false),
        ("writer.landed", "g9", true),
    ] {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("logs", 2, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, "logs", &records_over(0..3000, 2));
        let dir = tempfile::tempdir().unwrap();
        let exit_at_end = [&SHORT_SESSION_FLAGS[..], &["--exit-at-end"]].concat();
        let run = |name: &str, log: &str, failpoint: Option<&str>| {
            let _ = std::fs::create_dir(dir.path().join(name));
            let mut c = pinflow_source(
                dir.path(),
                &bootstrap,
                group,
                &format!("{name}/x.parquet"),
                &exit_at_end,
            );
            if let Some(p) = failpoint {
                c.env("PINFLOW_FAILPOINT", p);
            }
            let o = c.output().unwrap();
            std::fs::write(dir.path().join(log), logs(&o)).unwrap();
            o
        };
        let all_logs = || logs_of(dir.path(), &["a.log", "b.log", "a-again.log"]);
        let a = run("a", "a.log", Some(point));
        assert!(
            !a.status.success() && logs(&a).contains(&format!("fail point {point} reached")),
            "{point}: {}",
            all_logs()
        );
        let a_out = dir.path().join("a");
        assert!(final_ids(&a_out).is_empty(), "{point}: {}", all_logs());
        let b = run("b", "b.log", None);
        assert!(b.status.success(), "{point}: {}", all_logs());
        let again = run("a", "a-again.log", None);
        assert!(again.status.success(), "{point}: {}", all_logs());
        let said = match stands {
            true => "it stands",
            false => "undone",
        };
        assert!(logs(&again).contains(said), "{point}: {}", all_logs());
        let mut ids = final_ids(&a_out);
        assert_eq!(!ids.is_empty(), stands, "{point}: {}", all_logs());
        ids.extend(final_ids(&dir.path().join("b")));
        assert_exactly_once(ids, 3000, &format!("{point}\n{}", all_logs()));
    }
}

/// The low watermark of partitions `0..partitions` of `logs`: above 0 once the broker deleted
/// messages (retention).
fn low_watermarks(bootstrap: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks("logs", p, Duration::from_secs(30))
                .unwrap()
                .0
        })
        .collect()
}

/// The offsets `group` committed for partitions `0..partitions` of `logs` (`None`: none).
fn committed(bootstrap: &str, group: &str, partitions: i32) -> Vec<Option<i64>> {
    GroupOffsets::new(bootstrap, group, partitions).read()
}

/// A tombstone and an empty message are dead letters, and with the journal they are
/// committed with the checkpoint that holds their dead letters, as a message that gave rows
/// is: the group's offset moves past them (else it stayed at the first one for good, and a
/// partition's next owner read everything after it again), and a second run reads nothing
/// again, dead-letters nothing twice.
#[test]
fn tombstones_are_dead_lettered_once_and_committed_past() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut messages = records_over(0..150, 3);
    messages.push((1, None));
    messages.push((1, Some(String::new())));
    messages.extend(records_over(150..300, 3));
    produce(&bootstrap, "logs", &messages);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let flags = [&SHORT_SESSION_FLAGS[..], &["--exit-at-end"]].concat();
    let run = || {
        pinflow_source(dir.path(), &bootstrap, "g11", "out/x.parquet", &flags)
            .output()
            .unwrap()
    };
    let o = run();
    // 3: items failed (the two messages), dead-lettered with their reason.
    assert_eq!(o.status.code(), Some(3), "{}", logs(&o));
    assert_eq!(
        committed(&bootstrap, "g11", 3),
        [Some(100), Some(102), Some(100)]
    );
    let dead_letters = dir.path().join("out/x.parquet.deadletter.ndjson");
    let dead = std::fs::read_to_string(&dead_letters).unwrap();
    assert_eq!(dead.lines().count(), 2, "{dead}");
    assert!(
        dead.contains("logs/1@50") && dead.contains("logs/1@51"),
        "{dead}"
    );
    let again = run();
    assert!(again.status.success(), "{}", logs(&again));
    assert_eq!(std::fs::read_to_string(&dead_letters).unwrap(), dead);
    assert_exactly_once(final_ids(&dir.path().join("out")), 300, &logs(&again));
}

#[test]
fn sigterm_drains_commits_the_offsets_and_a_restart_reads_nothing_twice() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..900, 3));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let out = dir.path().join("out");
    let flags = ["--journal", "true", "--rotate-interval", "100ms"];
    let port = crate::common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut first = flags.to_vec();
    first.extend(["--metrics-addr", &addr]);
    // No --exit-at-end: it consumes until stopped.
    let mut child = pinflow_source(dir.path(), &bootstrap, "g4", "out/x.parquet", &first)
        .spawn()
        .unwrap();
    crate::common::wait_for_child(&mut child, "every message written", || {
        final_ids(&out).len() >= 900
    });
    // The metrics: three partitions owned, 300 messages read of each, and (librdkafka's
    // statistics come each second) no lag left.
    let metric = |name: &str| metric(port, name);
    let partition = |family: &str, p: i32| format!("{family}{{topic=\"logs\",partition=\"{p}\"}}");
    crate::common::wait_for_child(&mut child, "no lag in the metrics", || {
        (0..3).all(|p| metric(&partition("pinflow_kafka_consumer_lag", p)) == Some(0.0))
    });
    for p in 0..3 {
        let consumed = metric(&partition("pinflow_kafka_messages_consumed_total", p));
        assert_eq!(consumed, Some(300.0), "partition {p}");
    }
    assert_eq!(metric("pinflow_kafka_partitions_owned"), Some(3.0));
    let assigned = "pinflow_kafka_rebalanced_partitions_total{change=\"assigned\"}";
    assert_eq!(metric(assigned), Some(3.0));
    let o = crate::common::sigterm_and_wait(child);
    assert!(o.status.success(), "{}", logs(&o));
    assert_exactly_once(final_ids(&out), 900, &logs(&o));
    // What the checkpoints made durable was committed to the group: 300 per partition.
    assert_eq!(
        committed(&bootstrap, "g4", 3),
        [Some(300), Some(300), Some(300)]
    );
    // A restart finds nothing new, and writes nothing again.
    produce(&bootstrap, "logs", &records_over(900..960, 3));
    let mut extra = flags.to_vec();
    extra.push("--exit-at-end");
    let o = pinflow_source(dir.path(), &bootstrap, "g4", "out/x.parquet", &extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", logs(&o));
    assert_exactly_once(final_ids(&out), 960, &logs(&o));
    assert_eq!(
        committed(&bootstrap, "g4", 3),
        [Some(320), Some(320), Some(320)]
    );
}

/// The Tansu end-to-end tests' client: confluent-kafka creates the topic with 3 partitions
/// and produces `n` records (ids 0..n) to it; with a fourth argument, `START`, it produces
/// ids `START..n` to the topic made before.
const PRODUCER: &str = r#"
import sys, json
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
broker, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = int(sys.argv[4]) if len(sys.argv) > 4 else None  # (more, to the topic made before)
if start is None:
    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        f.result(60)
p = Producer({"bootstrap.servers": broker})
for i in range(start or 0, n):
    rec = {"id": i, "ts": "2024-05-01T12:00:00Z", "service": "api", "level": "info",
           "host": "h%d" % (i % 4), "latency_ms": 1.5, "message": "line %d" % i,
           "values": [1.0, 2.0, float(i)]}
    while True:
        try:
            p.produce(topic, json.dumps(rec).encode(), partition=i % 3)
            break
        except BufferError:
            p.poll(0.1)
left = p.flush(60)
sys.exit(1 if left else 0)
"#;

/// Tansu started in `dir`, and records `0..n` produced to its `logs` (3 partitions) by
/// confluent-kafka: the broker (killed when dropped) and its address.
fn tansu_with_records(py: &Path, dir: &Path, n: u64) -> (crate::kafka::Tansu, String) {
    let tansu = crate::kafka::start_tansu(py, &dir.join("tansu.log"));
    let broker = format!("127.0.0.1:{}", tansu.port);
    let made = Command::new(py)
        .args(["-c", PRODUCER, &broker, "logs", &n.to_string()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", logs(&made));
    (tansu, broker)
}

/// Records `ids` produced by confluent-kafka to the `logs` that [`tansu_with_records`] made.
fn produce_with_client(py: &Path, broker: &str, ids: std::ops::Range<u64>) {
    let (from, to) = (ids.start.to_string(), ids.end.to_string());
    let made = Command::new(py)
        .args(["-c", PRODUCER, broker, "logs", &to, &from])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", logs(&made));
}

#[test]
fn a_real_broker_fed_by_another_client_is_read_to_its_end_once() {
    let Some(py) = crate::kafka::kafka_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_tansu, broker) = tansu_with_records(py, dir.path(), 500);
    let o = pinflow_source(
        dir.path(),
        &broker,
        "e2e",
        "x.parquet",
        &[
            &["--exit-at-end", "--journal", "true"][..],
            &TANSU_SESSION_FLAGS,
        ]
        .concat(),
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", logs(&o));
    assert_exactly_once(all_final_ids(dir.path()), 500, &logs(&o));
}

/// On a real broker, a second member joins while the first holds every message read in its
/// writer, uncheckpointed (no rotation set): the first one's revocation has them checkpointed
/// and their offsets committed before its partitions move, so the second reads on from there
/// and the two write every message once between them.
#[test]
fn on_a_real_broker_a_member_joining_mid_read_leaves_every_message_written_once() {
    let Some(py) = crate::kafka::kafka_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_tansu, broker) = tansu_with_records(py, dir.path(), 3000);
    let flags = [&["--journal", "true"][..], &TANSU_SESSION_FLAGS].concat();
    let start = |m| Member::start(dir.path(), &broker, "joining", m, &flags);
    let mut a = start(("a", "a.log"));
    let a_port = a.port;
    wait_for_members(&mut [&mut a], "member a writing every message", || {
        metric(a_port, "pinflow_records_total{stage=\"write\"}") == Some(3000.0)
    });
    let mut b = start(("b", "b.log"));
    let ports = [a.port, b.port];
    wait_for_members(&mut [&mut a, &mut b], "the partitions shared", || {
        let owned = ports.map(|p| metric(p, "pinflow_kafka_partitions_owned").unwrap_or(0.0));
        owned[0] >= 1.0 && owned[1] >= 1.0 && owned[0] + owned[1] == 3.0
    });
    produce_with_client(py, &broker, 3000..6000);
    // (No rotation: nothing is checkpointed until the stop, which drains and commits.)
    wait_for_members(&mut [&mut a, &mut b], "every message written", || {
        let written = ports.map(|p| metric(p, "pinflow_records_total{stage=\"write\"}"));
        written[0].unwrap_or(0.0) + written[1].unwrap_or(0.0) >= 6000.0
    });
    let all_logs = || logs_of(dir.path(), &["a.log", "b.log"]);
    for m in [a, b] {
        let o = crate::common::sigterm_and_wait(m.take());
        assert!(o.status.success(), "{}", all_logs());
    }
    let mut ids = final_ids(&dir.path().join("a"));
    let b_ids = final_ids(&dir.path().join("b"));
    assert!(!b_ids.is_empty(), "member b wrote nothing\n{}", all_logs());
    ids.extend(b_ids);
    assert_exactly_once(ids, 6000, &all_logs());
    let group = GroupOffsets::new(&broker, "joining", 3);
    assert_eq!(group.read(), [Some(2000); 3], "{}", all_logs());
}

/// On a real broker, a member stopped (SIGTERM) once the two have written the first 3,000
/// messages: it drains, commits and leaves; its partitions move to the other member, which
/// reads the 3,000 produced after from the committed offsets (not from the start, which would
/// repeat the first member's rows), so the two write every message once between them.
#[test]
fn on_a_real_broker_a_member_leaving_mid_read_leaves_every_message_written_once() {
    let Some(py) = crate::kafka::kafka_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_tansu, broker) = tansu_with_records(py, dir.path(), 3000);
    let flags = [&["--journal", "true"][..], &TANSU_SESSION_FLAGS].concat();
    let start = |m| Member::start(dir.path(), &broker, "leaving", m, &flags);
    let mut a = start(("a", "a.log"));
    let mut b = start(("b", "b.log"));
    let ports = [a.port, b.port];
    let written = |port| metric(port, "pinflow_records_total{stage=\"write\"}").unwrap_or(0.0);
    wait_for_members(&mut [&mut a, &mut b], "both members writing", || {
        let owned = ports.map(|p| metric(p, "pinflow_kafka_partitions_owned").unwrap_or(0.0));
        owned[0] >= 1.0 && owned[1] >= 1.0 && written(ports[0]) + written(ports[1]) >= 3000.0
    });
    let all_logs = || logs_of(dir.path(), &["a.log", "b.log"]);
    let o = crate::common::sigterm_and_wait(a.take());
    assert!(o.status.success(), "{}", all_logs());
    let a_ids = final_ids(&dir.path().join("a"));
    produce_with_client(py, &broker, 3000..6000);
    let b_port = b.port;
    wait_for_members(&mut [&mut b], "member b writing the rest", || {
        a_ids.len() as f64 + written(b_port) >= 6000.0
    });
    let o = crate::common::sigterm_and_wait(b.take());
    assert!(o.status.success(), "{}", all_logs());
    let mut ids = a_ids;
    ids.extend(final_ids(&dir.path().join("b")));
    assert_exactly_once(ids, 6000, &all_logs());
    let group = GroupOffsets::new(&broker, "leaving", 3);
    assert_eq!(group.read(), [Some(2000); 3], "{}", all_logs());
}

/// Prints, for each Parquet file named on the command line, read by pyarrow: its
/// `pinflow.kafka.offsets` metadata (or null) and the `part`/`off` columns of its rows.
const FILE_OFFSETS: &str = r#"
import sys, json
import pyarrow.parquet as pq
out = {}
for path in sys.argv[1:]:
    f = pq.ParquetFile(path)
    kv = f.metadata.metadata or {}
    meta = kv.get(b"pinflow.kafka.offsets")
    t = f.read(columns=["part", "off"])
    rows = list(zip(t.column("part").to_pylist(), t.column("off").to_pylist()))
    out[path] = {"meta": None if meta is None else json.loads(meta), "rows": rows}
print(json.dumps(out))
"#;

/// The messages a file's `pinflow.kafka.offsets` value names: (partition of `logs`, offset).
fn offsets_named(meta: &serde_json::Value) -> std::collections::BTreeSet<(i64, i64)> {
    let mut out = std::collections::BTreeSet::new();
    for (key, ranges) in meta.as_object().expect("an object") {
        let partition: i64 = key
            .strip_prefix("logs/")
            .expect("TOPIC/PARTITION")
            .parse()
            .unwrap();
        for r in ranges.as_array().expect("a list of ranges") {
            let (first, last) = (r[0].as_i64().unwrap(), r[1].as_i64().unwrap());
            assert!(first <= last, "{key}: {r}");
            out.extend((first..=last).map(|o| (partition, o)));
        }
    }
    out
}

#[test]
fn each_file_records_the_offsets_of_the_messages_whose_rows_it_holds() {
    let Some(py) = crate::common::interop_python("kafka_source") else {
        return;
    };
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut messages = records_over(0..600, 3);
    // Two records in one message (both rows carry its offset); a message that is not JSON
    // and a tombstone, which are in no file; then more records after them.
    messages.push((0, Some(format!("{}\n{}\n", record(600), record(601)))));
    messages.push((2, Some("not json at all".into())));
    messages.push((2, None));
    messages.extend(records_over(602..650, 3));
    produce(&bootstrap, "logs", &messages);

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    write_meta_columns_config(dir.path());
    // With the journal, files end at checkpoints: every 100 rows or so, several files.
    let o = pinflow_source(
        dir.path(),
        &bootstrap,
        "g5",
        "out/x.parquet",
        &[
            "--config",
            "pinflow.toml",
            "--journal",
            "true",
            "--rotate-rows",
            "100",
            "--exit-at-end",
        ],
    )
    .output()
    .unwrap();
    let text = logs(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    let files = final_parquet_files(&dir.path().join("out"));
    assert!(files.len() >= 3, "{files:?}\n{text}");
    let read = Command::new(py)
        .args(["-c", FILE_OFFSETS])
        .args(&files)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", logs(&read));
    let by_file: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&read.stdout).unwrap();
    let mut every = std::collections::BTreeSet::new();
    let mut rows_total = 0;
    for (path, f) in &by_file {
        let named = offsets_named(&f["meta"]);
        let rows: std::collections::BTreeSet<(i64, i64)> = f["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
            .collect();
        rows_total += f["rows"].as_array().unwrap().len();
        // Exactly the messages whose rows the file holds.
        assert_eq!(named, rows, "{path}: {}", f["meta"]);
        // And no message in two files.
        let again: Vec<_> = named.intersection(&every).collect();
        assert!(again.is_empty(), "{path} repeats {again:?}");
        every.extend(named);
    }
    assert_eq!(rows_total, 650, "{text}");
    // Every message of a record is in some file; the two dead letters (partition 2, offsets
    // 200 and 201) are in none.
    let mut expected = std::collections::BTreeSet::new();
    expected.extend((0..217).map(|o| (0, o)));
    expected.extend((0..216).map(|o| (1, o)));
    expected.extend((0..200).chain(202..218).map(|o| (2, o)));
    assert_eq!(every, expected, "{text}");
}

/// The offsets a file's `pinflow.kafka.offsets` key-value metadata lists for partition 0 of
/// `logs`, read with the parquet crate.
fn partition_0_offsets(path: &Path) -> Vec<i64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = r.metadata().file_metadata().key_value_metadata().cloned();
    let value = kv
        .into_iter()
        .flatten()
        .find(|kv| kv.key == "pinflow.kafka.offsets")
        .and_then(|kv| kv.value)
        .unwrap_or_else(|| panic!("{}: no pinflow.kafka.offsets", path.display()));
    let meta: serde_json::Value = serde_json::from_str(&value).unwrap();
    offsets_named(&meta).into_iter().map(|(_, o)| o).collect()
}

#[test]
fn with_the_journal_each_partitions_files_hold_its_messages_in_offset_order() {
    // Two parse threads finish small batches out of order; under the journal the writer puts
    // them back in order, so that no file holds a message while an earlier one of its
    // partition is in no file yet (the group's offset, which covers a partition's unbroken
    // start only, would lag behind the output, and another member taking the partition after
    // a kill -9 would read the later messages again).
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..4000, 1));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let o = pinflow_source(
        dir.path(),
        &bootstrap,
        "ordered",
        "out/x.parquet",
        &[
            "--journal",
            "true",
            "--rotate-rows",
            "50",
            "--parse-threads",
            "2",
            "--exit-at-end",
        ],
    )
    .env("PINFLOW_KAFKA_BATCH_MAX_MESSAGES", "4")
    .output()
    .unwrap();
    let text = logs(&o);
    assert!(o.status.success(), "{text}");
    let files = final_parquet_files(&dir.path().join("out"));
    assert!(files.len() >= 10, "{files:?}\n{text}");
    // Files are named in the order they were written (rotation sequence).
    let mut next = 0;
    for f in &files {
        let offsets = partition_0_offsets(f);
        let want: Vec<i64> = (next..next + offsets.len() as i64).collect();
        assert_eq!(
            offsets,
            want,
            "{}: not the next offsets\n{text}",
            f.display()
        );
        next += offsets.len() as i64;
    }
    assert_eq!(next, 4000, "{text}");
    assert_eq!(all_final_ids(&dir.path().join("out")).len(), 4000);
}

#[test]
fn the_ledger_per_partition_counts_messages_written_and_dead_lettered_as_committed() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut messages = records_over(0..300, 3);
    // Partition 0: a message that is not JSON; 1: a tombstone; 2: a message with one good
    // record and one of the wrong type (written: it gave a row), and a broken object.
    messages.push((0, Some("not json at all".into())));
    messages.push((1, None));
    messages.push((2, Some(format!("{}\n{{\"id\":\"x\"}}\n", record(300)))));
    messages.push((2, Some("{\"id\": 5".into())));
    produce(&bootstrap, "logs", &messages);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let out = dir.path().join("out");
    let port = crate::common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let flags = [
        "--journal",
        "true",
        "--rotate-interval",
        "100ms",
        "--metrics-addr",
        &addr,
    ];
    let mut child = pinflow_source(dir.path(), &bootstrap, "g6", "out/x.parquet", &flags)
        .spawn()
        .unwrap();
    let metric = |family: &str, p: i32| {
        metric(
            port,
            &format!("pinflow_kafka_messages_{family}_total{{topic=\"logs\",partition=\"{p}\"}}"),
        )
    };
    let expected = [
        (101.0, 100.0, 1.0),
        (101.0, 100.0, 1.0),
        (102.0, 101.0, 1.0),
    ];
    let ledger = |p: i32| {
        (
            metric("consumed", p),
            metric("written", p),
            metric("dead_lettered", p),
        )
    };
    crate::common::wait_for_child(&mut child, "every message committed", || {
        (0..3).all(|p| {
            let (c, w, d) = ledger(p);
            c.is_some() && c == Some(expected[p as usize].0) && w.zip(d).map(|(w, d)| w + d) == c
        })
    });
    for p in 0..3 {
        let (c, w, d) = expected[p as usize];
        assert_eq!(ledger(p), (Some(c), Some(w), Some(d)), "partition {p}");
    }
    let o = crate::common::sigterm_and_wait(child);
    let text = logs(&o);
    // 3: the tombstone is a failed item.
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert_exactly_once(final_ids(&out), 301, &text);
    // The same ledger in the run's summary.
    for (p, (c, w, d)) in expected.iter().enumerate() {
        let line =
            format!("kafka    logs/{p}: consumed {c} / written {w} / dead-lettered {d} messages");
        assert!(text.contains(&line), "{line}\n{text}");
    }
}

/// The messages of [`past_retention`]: ids (and offsets) `0..PAST_RETENTION`.
const PAST_RETENTION: i64 = 4_100;

/// A mock broker with one partition of `logs`, a first run (`flags`, group `group`, output
/// `DIR/out/x.parquet`) that reads its 100 messages, then, while no run is going, messages up
/// to [`PAST_RETENTION`], enough that the broker deletes the oldest (the first run's next one
/// among them). Returns the cluster and the partition's low watermark then.
fn past_retention(
    dir: &Path,
    group: &str,
    flags: &[&str],
) -> (MockCluster<'static, DefaultProducerContext>, i64) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..100, 1));
    std::fs::create_dir(dir.join("out")).unwrap();
    let o = pinflow_source(dir, &bootstrap, group, "out/x.parquet", flags)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", logs(&o));
    // 8 MB more: the mock broker keeps about 5 MB of a partition and deletes the oldest
    // messages. (Records of 2 kB, long messages, so that there are not too many to read.)
    let long = "x".repeat(2000);
    let big: Vec<_> = (100..PAST_RETENTION)
        .map(|id| {
            let r = record(id as u64).replace("\"message\":\"", &format!("\"message\":\"{long}"));
            (0, Some(r))
        })
        .collect();
    produce(&bootstrap, "logs", &big);
    let low = low_watermarks(&bootstrap, 1)[0];
    assert!(
        low > 100,
        "nothing deleted (low watermark {low}): produce more"
    );
    (cluster, low)
}

/// Asserts that `text` (a run's log and summary) reports the offsets lost past
/// [`past_retention`] (low watermark `low`) to a run reset to the end: deleted `100..low`,
/// skipped `low..PAST_RETENTION`, in the warnings and in the partition's summary line, which
/// counts `read` messages consumed and written.
fn assert_lost_offsets_reported(text: &str, low: i64, read: u64) {
    let end = PAST_RETENTION;
    for expected in [
        format!("offsets 100..{low} of logs/0 were deleted by the broker"),
        format!("offsets {low}..{end} of logs/0 were skipped"),
        format!(
            "kafka    logs/0: consumed {read} / written {read} / dead-lettered 0 messages; {} \
             offsets deleted by the broker before they were read; {} offsets skipped by \
             auto.offset.reset=latest",
            low - 100,
            end - low
        ),
    ] {
        assert!(text.contains(&expected), "{expected}\n{text}");
    }
}

#[test]
fn messages_the_broker_deleted_before_they_were_read_are_reported_with_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // (The short session: the second run joins without waiting out the first's.)
    let flags = [&SHORT_SESSION_FLAGS[..], &["--exit-at-end"]].concat();
    let (cluster, low) = past_retention(dir.path(), "g7", &flags);
    let bootstrap = cluster.bootstrap_servers();
    let o = pinflow_source(dir.path(), &bootstrap, "g7", "out/x.parquet", &flags)
        .output()
        .unwrap();
    let text = logs(&o);
    assert!(o.status.success(), "{text}");
    // What the broker still had, each once, after what the first run wrote.
    let mut ids = final_ids(&out);
    ids.retain(|&i| i >= low);
    assert_exactly_once(
        ids.iter().map(|&i| i - low).collect(),
        PAST_RETENTION - low,
        &text,
    );
    assert_eq!(
        final_ids(&out).len() as i64,
        100 + PAST_RETENTION - low,
        "{text}"
    );
    // The lost ones, named by their offsets and counted.
    let warning = format!("offsets 100..{low} of logs/0 were deleted by the broker");
    assert!(text.contains(&warning), "{warning}\n{text}");
    let line = format!(
        "; {} offsets deleted by the broker before they were read",
        low - 100
    );
    assert!(text.contains(&line), "{line}\n{text}");
    assert!(!text.contains("skipped by auto.offset.reset"), "{text}");
}

#[test]
fn messages_a_reset_to_latest_skips_are_reported_with_those_the_broker_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [&SHORT_SESSION_FLAGS[..], &["--exit-at-end"]].concat();
    let (cluster, low) = past_retention(dir.path(), "g8", &flags);
    let bootstrap = cluster.bootstrap_servers();
    // The second run's position (100) is gone; librdkafka moves it to the end, past messages
    // the broker still has, and no message comes after: only the partition's end says so.
    let latest = [
        &flags[..],
        &["--kafka-property", "auto.offset.reset=latest"],
    ]
    .concat();
    let o = pinflow_source(dir.path(), &bootstrap, "g8", "out/x.parquet", &latest)
        .output()
        .unwrap();
    let text = logs(&o);
    assert!(o.status.success(), "{text}");
    assert_exactly_once(final_ids(&dir.path().join("out")), 100, &text);
    assert_lost_offsets_reported(&text, low, 0);
}

#[test]
fn a_run_without_exit_at_end_reports_lost_offsets_at_the_partitions_end_with_no_message_after() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [&SHORT_SESSION_FLAGS[..], &["--exit-at-end"]].concat();
    let (cluster, low) = past_retention(dir.path(), "g9", &flags);
    let bootstrap = cluster.bootstrap_servers();
    // A run that goes on until stopped, its position (100) gone and reset to the end: no
    // message comes after the lost ones, so only the partition's end can show them.
    let port = crate::common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let run = [
        &SHORT_SESSION_FLAGS[..],
        &["--kafka-property", "auto.offset.reset=latest"],
        &["--metrics-addr", &addr],
    ]
    .concat();
    let mut child = pinflow_source(dir.path(), &bootstrap, "g9", "out/x.parquet", &run)
        .spawn()
        .unwrap();
    let lost = |family: &str| {
        metric(
            port,
            &format!("pinflow_kafka_offsets_{family}_total{{topic=\"logs\",partition=\"0\"}}"),
        )
    };
    let end = PAST_RETENTION;
    crate::common::wait_for_child(&mut child, "the lost offsets reported", || {
        lost("deleted_unread") == Some((low - 100) as f64)
            && lost("skipped_by_reset") == Some((end - low) as f64)
    });
    // A message after them (at the end, `end`), then the partition's next end: neither
    // reports them again.
    produce(&bootstrap, "logs", &[(0, Some(record(end as u64)))]);
    let consumed = "pinflow_kafka_messages_consumed_total{topic=\"logs\",partition=\"0\"}";
    crate::common::wait_for_child(&mut child, "the next message read", || {
        metric(port, consumed) == Some(1.0)
    });
    let o = crate::common::sigterm_and_wait(child);
    let text = logs(&o);
    assert!(o.status.success(), "{text}");
    assert_lost_offsets_reported(&text, low, 1);
    assert_eq!(
        text.matches("were deleted by the broker").count(),
        1,
        "{text}"
    );
    // The first run's 100, and the one message after the lost ones.
    let mut ids = final_ids(&dir.path().join("out"));
    ids.sort_unstable();
    assert_eq!(ids, (0..100).chain([end]).collect::<Vec<_>>(), "{text}");
}

/// Reads the dataset under the directory given, with pyarrow's Hive partitioning: for each
/// file, its `topic`/`partition` directory values, its `part`/`off` columns and its
/// `pinflow.kafka.offsets` metadata.
const PARTITION_FILES: &str = r#"
import sys, json
import pyarrow.dataset as ds, pyarrow.parquet as pq
d = ds.dataset(sys.argv[1], format="parquet", partitioning="hive")
out = {}
for frag in d.get_fragments():
    t = frag.to_table(columns=["topic", "partition", "part", "off"], schema=d.schema)
    kv = pq.ParquetFile(frag.path).metadata.metadata or {}
    out[frag.path] = {
        "topics": sorted(set(map(str, t.column("topic").to_pylist()))),
        "partitions": sorted(set(t.column("partition").to_pylist())),
        "part": t.column("part").to_pylist(),
        "off": t.column("off").to_pylist(),
        "meta": json.loads(kv[b"pinflow.kafka.offsets"]),
    }
print(json.dumps(out))
"#;

#[test]
fn file_per_kafka_partition_names_each_file_by_its_first_offset_through_a_kill_9_and_restart() {
    let Some(py) = crate::common::interop_python("kafka_source") else {
        return;
    };
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..6000, 3));
    let dir = tempfile::tempdir().unwrap();
    write_meta_columns_config(dir.path());
    let flags = [
        &SHORT_SESSION_FLAGS[..],
        &[
            "--config",
            "pinflow.toml",
            "--rotate-rows",
            "500",
            "--file-per-kafka-partition",
            "true",
        ],
    ]
    .concat();
    // Killed once a checkpoint committed files, while it reads on; more messages while it is
    // down; a restart to the end.
    let out = dir.path().join("out");
    let mut child = pinflow_source(dir.path(), &bootstrap, "g8", "out", &flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::common::wait_for_child(&mut child, "a first checkpoint", || {
        out.exists() && !final_parquet_files(&out).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    produce(&bootstrap, "logs", &records_over(6000..9000, 3));
    let mut extra = flags.clone();
    extra.push("--exit-at-end");
    let o = pinflow_source(dir.path(), &bootstrap, "g8", "out", &extra)
        .output()
        .unwrap();
    let text = logs(&o);
    assert!(o.status.success(), "{text}");
    assert_exactly_once(final_ids(&out), 9000, &text);

    let read = Command::new(py)
        .args(["-c", PARTITION_FILES])
        .arg(&out)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", logs(&read));
    let by_file: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&read.stdout).unwrap();
    assert!(by_file.len() >= 6, "{by_file:?}");
    for (path, f) in &by_file {
        let rel = Path::new(path).strip_prefix(&out).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let partition: i64 = parts[1]
            .strip_prefix("partition=")
            .unwrap()
            .parse()
            .unwrap();
        let offsets: Vec<i64> = f["off"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let first = *offsets.iter().min().unwrap();
        // topic=logs/partition=P/logs+P+FIRST.parquet, FIRST its first offset, 20 digits.
        assert_eq!(
            parts,
            [
                "topic=logs",
                &format!("partition={partition}"),
                &format!("logs+{partition}+{first:020}.parquet")
            ],
            "{path}"
        );
        // One partition's rows, as the directories (read by pyarrow as columns) say.
        assert_eq!(f["topics"], serde_json::json!(["logs"]), "{path}");
        assert_eq!(f["partitions"], serde_json::json!([partition]), "{path}");
        assert!(
            f["part"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p.as_i64() == Some(partition)),
            "{path}"
        );
        // And its offsets, as its metadata names them.
        let named = offsets_named(&f["meta"]);
        let rows: std::collections::BTreeSet<(i64, i64)> =
            offsets.iter().map(|&o| (partition, o)).collect();
        assert_eq!(named, rows, "{path}");
    }
}

#[test]
fn file_per_kafka_partition_without_the_journal_is_refused_naming_the_key() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = pinflow_source(
        dir.path(),
        &cluster.bootstrap_servers(),
        "g9",
        "out",
        &["--file-per-kafka-partition", "true", "--exit-at-end"],
    )
    .output()
    .unwrap();
    let text = logs(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("writer.file_per_kafka_partition") && text.contains("needs writer.journal"),
        "{text}"
    );
    assert!(!dir.path().join("out").exists(), "nothing was written");
}

#[test]
fn files_per_kafka_partition_go_to_object_storage_under_their_partitions_keys() {
    let Some(moto) = crate::s3::Moto::start("kafka files per partition to S3") else {
        return;
    };
    moto.create_bucket("pinflow-kafka");
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "logs", &records_over(0..3000, 3));
    let dir = tempfile::tempdir().unwrap();
    let o = pinflow_source(
        dir.path(),
        &bootstrap,
        "g10",
        "s3://pinflow-kafka/ds/",
        &[
            &SHORT_SESSION_FLAGS[..],
            &["--file-per-kafka-partition", "true", "--exit-at-end"],
        ]
        .concat(),
    )
    .env("AWS_ENDPOINT_URL", moto.endpoint())
    .env("AWS_ACCESS_KEY_ID", "test")
    .env("AWS_SECRET_ACCESS_KEY", "test-secret-never-logged")
    .env("AWS_REGION", "us-east-1")
    .env("PINFLOW_OUTPUT_S3_STAGING_DIR", dir.path().join("staging"))
    .output()
    .unwrap();
    let text = logs(&o);
    assert!(o.status.success(), "{text}");
    let got = dir.path().join("got");
    let keys = moto.download("pinflow-kafka", "ds/", &got);
    assert!(keys.len() >= 3, "{keys:?}");
    for k in &keys {
        // ds/topic=logs/partition=P/RUN-logs+P+OFFSET.parquet
        let (dir, name) = k.rsplit_once('/').unwrap();
        let partition = dir.strip_prefix("ds/topic=logs/partition=").unwrap();
        let (_, file) = name.split_at(name.find("-logs+").unwrap() + 1);
        assert!(
            crate::s3::keyed(k, &format!("{dir}/"), file)
                && file.starts_with(&format!("logs+{partition}+"))
                && file.len() == format!("logs+{partition}+").len() + 20 + ".parquet".len(),
            "{k}"
        );
    }
    assert_exactly_once(crate::common::all_final_ids(&got), 3000, &text);
}

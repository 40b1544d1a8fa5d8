//! The fuzz targets' properties, asserted on stable in every `cargo test` (issue 23): each
//! target under `fuzz/fuzz_targets/` calls one `fuzz_check` in the crate, and this module
//! replays every file of the target's corpus (`fuzz/corpus/<target>/`: the committed `seed-*`
//! files, plus whatever a local `cargo fuzz run` added) through that same function, then a
//! fixed set of pseudo-random mutants of each file. A broken property (a panic, a body over
//! its limit, a journal naming a file outside the output, a record neither written nor
//! dead-lettered, a configuration that does not read back) fails the test, naming the input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutants made of each corpus file.
const MUTANTS: usize = 2000;

/// The targets this module replays; [`every_fuzz_target_has_a_replayed_corpus`] holds it equal
/// to the `[[bin]]` targets of fuzz/Cargo.toml.
const REPLAYED: [&str; 4] = [
    "response_decoder",
    "journal_reader",
    "ndjson_split",
    "config_parser",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file of `target`'s corpus, in name order; at least one.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(
        files.iter().any(|(n, _)| n.starts_with("seed-")),
        "{} has no seed",
        dir.display()
    );
    files
}

/// xorshift64: the same mutants on every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that mean something to one of the formats (JSON, HTTP, TOML, the journal's names):
/// a mutant that swaps one in is likelier to reach a new branch than a random byte.
const MEANINGFUL: &[u8] = b"{}[]\",:=.\\/-0123456789\r\n\t \0\x1b\x7f\xc3\xff#'eE+";

/// One to four edits of `seed`, splicing in pieces of `other` (another file of the corpus).
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(m.len() + 1);
        match rng.below(8) {
            0 if at < m.len() => m[at] ^= 1 << rng.below(8),
            1 if at < m.len() => m[at] = MEANINGFUL[rng.below(MEANINGFUL.len())],
            2 => m.insert(at, MEANINGFUL[rng.below(MEANINGFUL.len())]),
            3 => {
                let end = (at + 1 + rng.below(16)).min(m.len());
                m.drain(at.min(end)..end);
            }
            4 => {
                // Repeat a piece: deep nesting, long lines, duplicated lines and headers.
                let end = (at + 1 + rng.below(64)).min(m.len());
                let piece = m[at.min(end)..end].to_vec();
                for _ in 0..=rng.below(8) {
                    m.splice(at..at, piece.iter().copied());
                }
            }
            5 => m.truncate(at),
            6 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                m.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                // A number at its edges, where parsers overflow.
                let n = [
                    "0",
                    "-1",
                    "18446744073709551616",
                    "1e999",
                    "4294967296",
                    "-0",
                ];
                m.splice(at..at, n[rng.below(n.len())].bytes());
            }
        }
    }
    m
}

/// Replays `target`'s corpus and [`MUTANTS`] mutants of each file through `check` (the
/// function its fuzz target calls), with `fix` applied to the mutants first; returns the
/// number of inputs replayed.
fn replay(target: &str, check: fn(&[u8]), fix: fn(&mut Vec<u8>)) -> usize {
    let files = corpus(target);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut replayed = 0;
    for (i, (name, seed)) in files.iter().enumerate() {
        let other = &files[(i + 1) % files.len()].1;
        for k in 0..=MUTANTS {
            let input = match k {
                0 => seed.clone(),
                _ => {
                    let mut m = mutate(&mut rng, seed, other);
                    // Half the mutants keep what the fix repairs broken.
                    if k % 2 == 0 {
                        fix(&mut m);
                    }
                    m
                }
            };
            if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
                let shown = String::from_utf8_lossy(&input[..input.len().min(2000)]);
                panic!(
                    "{target}: {name}, mutant {k} ({} bytes): {shown:?}",
                    input.len()
                );
            }
            replayed += 1;
        }
    }
    eprintln!("{target}: {} corpus files, {replayed} inputs", files.len());
    replayed
}

fn keep(_: &mut Vec<u8>) {}

/// Recomputes the checksum of every journal line that ends in one (after the first byte,
/// which chooses the layout), so that a mutant reaches the parsing behind it: on stable the
/// reader checks CRCs (only a `--cfg fuzzing` build skips them).
fn reseal(input: &mut Vec<u8>) {
    const KEY: &[u8] = b",\"crc32\":\"";
    let Some((&layout, journal)) = input.split_first() else {
        return;
    };
    let mut out = vec![layout];
    for (i, line) in journal.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let n = line.len();
        let sealed = n >= KEY.len() + 10
            && &line[n - KEY.len() - 10..n - 10] == KEY
            && line.ends_with(b"\"}");
        if sealed {
            let body = &line[..n - KEY.len() - 10];
            out.extend_from_slice(body);
            out.extend_from_slice(KEY);
            let crc = crc32fast::hash(body);
            out.extend_from_slice(format!("{crc:08x}\"}}").as_bytes());
        } else {
            out.extend_from_slice(line);
        }
    }
    *input = out;
}

#[cfg(feature = "http")]
#[test]
fn response_decoder_corpus_and_mutants_keep_its_property() {
    let n = replay(
        "response_decoder",
        pinflow::ingest::http::protocol::fuzz_check,
        keep,
    );
    assert!(n > MUTANTS);
}

#[test]
fn journal_reader_corpus_and_mutants_keep_its_property() {
    let n = replay("journal_reader", pinflow::journal::fuzz_check, reseal);
    assert!(n > MUTANTS);
}

#[test]
fn ndjson_split_corpus_and_mutants_keep_its_property() {
    let n = replay("ndjson_split", pinflow::parse::fuzz_check, keep);
    assert!(n > MUTANTS);
}

#[test]
fn config_parser_corpus_and_mutants_keep_its_property() {
    let n = replay("config_parser", pinflow::config::fuzz_check, keep);
    assert!(n > MUTANTS);
}

/// The seed journals are valid: resealing leaves them as they are, so the resealed mutants
/// differ from their seed only by the mutation.
#[test]
fn resealing_a_valid_journal_changes_nothing() {
    for (name, seed) in corpus("journal_reader") {
        let mut again = seed.clone();
        reseal(&mut again);
        assert_eq!(again, seed, "{name}");
    }
}

/// A target added to fuzz/Cargo.toml without a corpus replayed here would run only where
/// someone runs cargo-fuzz by hand.
#[test]
fn every_fuzz_target_has_a_replayed_corpus() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut targets: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .map(|bin| {
            let line = bin.lines().find(|l| l.starts_with("name = ")).unwrap();
            line.trim_start_matches("name = ").trim_matches('"')
        })
        .collect();
    targets.sort_unstable();
    let mut replayed = REPLAYED.to_vec();
    replayed.sort_unstable();
    assert_eq!(targets, replayed);
    for t in targets {
        let source = fuzz_dir().join(format!("fuzz_targets/{t}.rs"));
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(text.contains("::fuzz_check(data)"), "{}", source.display());
        assert!(!corpus(t).is_empty());
    }
}

/// The valid seeds pass the checks they feed, so that the replay reaches what lies behind the
/// parsers (a journal's names, a configuration's round trip), not only their error paths.
#[test]
fn the_valid_seeds_are_accepted() {
    let read = |t: &str, n: &str| std::fs::read(fuzz_dir().join(format!("corpus/{t}/seed-{n}")));
    for n in ["minimal", "full", "empty"] {
        let text = String::from_utf8(read("config_parser", n).unwrap()).unwrap();
        pinflow::Config::from_toml(&text).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    use pinflow::journal::{check, OutputFiles};
    let d = Path::new("/data/out");
    let beside = read("journal_reader", "beside").unwrap();
    let files = OutputFiles::Beside(d.join("o.parquet"));
    let c = check(&d.join("o.parquet.journal"), &beside[1..], "src", &files).unwrap();
    assert_eq!(c.checkpoints.len(), 2);
    let part = read("journal_reader", "partitioned").unwrap();
    let files = OutputFiles::Under {
        root: d.join("ds"),
        partition_by: vec!["service".into()],
        kafka_names: false,
    };
    let c = check(&d.join("ds.journal"), &part[1..], "src", &files).unwrap();
    assert_eq!(c.checkpoints.len(), 2);
}

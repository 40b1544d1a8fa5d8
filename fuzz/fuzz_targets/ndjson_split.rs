//! Fuzzes the parse stage's body splitting (NDJSON lines, arrays, single objects): whatever a
//! body holds, it must not panic, every record must become a row or a dead letter, and an
//! NDJSON body must be split into exactly its non-blank lines. The property lives in the
//! crate, so that `tests/it/fuzz_corpora.rs` replays the corpus through it on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pinflow::parse::fuzz_check(data));

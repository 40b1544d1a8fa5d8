//! Fuzzes the HTTP/1.1 response decoder the fetch thread runs on every byte a server sends:
//! whatever arrives, in whatever pieces, it must not panic, must not hand out more body than
//! its limit, and must never consume more input than it was given. The property lives in the
//! crate, so that `tests/it/fuzz_corpora.rs` replays the corpus through it on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pinflow::ingest::http::protocol::fuzz_check(data));

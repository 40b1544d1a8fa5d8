//! Fuzzes the configuration file reader (TOML, the option registry, validation): whatever a
//! file holds, it must not panic, must give a configuration exactly when it reports no
//! problem, name only lines that exist, and a configuration it accepts must read back equal
//! from `Config::to_toml`. The property lives in the crate, so that
//! `tests/it/fuzz_corpora.rs` replays the corpus through it on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pinflow::config::fuzz_check(data));

//! Fuzzes the resume journal's reader, which a run trusts to say which files hold which
//! items: whatever the journal holds, it must not panic, and what it accepts must only name
//! files inside the output, of the form the output gives them. The first byte chooses the
//! layout (rotated files beside `o.parquet`, or a dataset partitioned by `service`). The
//! property lives in the crate, so that `tests/it/fuzz_corpora.rs` replays the corpus through
//! it on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pinflow::journal::fuzz_check(data));

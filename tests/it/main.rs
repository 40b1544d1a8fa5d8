//! The integration tests, built as one binary (`cargo test --test it`): each test file used to
//! be a binary of its own, and every one of them linked arrow and parquet (issue 15, item 5).
//! One module per former file; a test is named `<module>::<test>`, for example
//! `cli::demo_writes_the_records_and_a_summary`, and `cargo test --test it cli::` runs one
//! module.
//!
//! Modules are gated on the cargo features they need to build and pass, so that the core build
//! (`cargo test --no-default-features --lib --test it`) runs what needs none: `library`,
//! `schema` and most of `fuzz_corpora`. A module that starts the `pinflow` binary needs `cli` (the binary's required
//! feature), which implies `http`, `sim` and `metrics-endpoint`; URL sources need `http`, the
//! log simulator `sim`, and `metrics.addr` the `metrics-endpoint`. (This comment does not name
//! the binary's path variable: tools/qemu-test.sh greps for it to find the modules that spawn.)

mod common;

mod architecture;
#[cfg(all(feature = "sim", feature = "http"))]
mod bad_input;
#[cfg(feature = "cli")]
mod bounds;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_conventions;
#[cfg(feature = "cli")]
mod config;
#[cfg(all(feature = "sim", feature = "http"))]
mod continuous;
#[cfg(all(feature = "cli", feature = "failpoints"))]
mod crash_points;
mod csv;
#[cfg(feature = "cli")]
mod disk_full;
#[cfg(feature = "http")]
mod encoding;
#[cfg(all(feature = "sim", feature = "http"))]
mod end_to_end;
#[cfg(feature = "http")]
mod enrich;
#[cfg(feature = "cli")]
mod exit_status;
#[cfg(all(feature = "sim", feature = "http"))]
mod faults;
#[cfg(feature = "cli")]
mod files;
#[cfg(feature = "cli")]
mod first_hour;
mod fuzz_corpora;
mod golden_stats;
#[cfg(feature = "cli")]
mod hostile_http;
#[cfg(feature = "cli")]
mod journal_trust;
#[cfg(all(feature = "cli", feature = "kafka"))]
mod kafka;
#[cfg(all(feature = "cli", feature = "kafka"))]
mod kafka_sasl;
#[cfg(all(feature = "cli", feature = "kafka"))]
mod kafka_source;
#[cfg(all(feature = "cli", feature = "kafka", feature = "tls"))]
mod kafka_tls;
mod library;
#[cfg(all(feature = "sim", feature = "http", feature = "metrics-endpoint"))]
mod metrics;
#[cfg(feature = "cli")]
mod net_faults;
#[cfg(feature = "cli")]
mod output;
#[cfg(feature = "cli")]
mod output_safety;
#[cfg(feature = "http")]
mod polling;
#[cfg(feature = "http")]
mod rate_limit;
#[cfg(feature = "cli")]
mod receive;
#[cfg(all(feature = "cli", feature = "tls"))]
mod receive_tls;
#[cfg(feature = "http")]
mod requests;
#[cfg(feature = "cli")]
mod resume;
#[cfg(all(feature = "cli", feature = "s3"))]
mod s3;
#[cfg(all(feature = "cli", feature = "s3"))]
mod s3_read;
#[cfg(all(feature = "cli", feature = "s3"))]
mod s3_signed;
mod schema;
#[cfg(feature = "cli")]
mod shapes;
#[cfg(feature = "cli")]
mod shutdown;
#[cfg(feature = "cli")]
mod sim_cli;
#[cfg(feature = "http")]
mod since;
mod tail;
#[cfg(feature = "http")]
mod timeouts;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "cli")]
mod transforms;
mod window;
#[cfg(feature = "cli")]
mod window_resume;

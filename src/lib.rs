//! # pinflow
//!
//! An embedded stream processor: it fetches JSON log records over HTTP/1.1, parses them with
//! simd-json, computes per-record statistics with vectorized kernels and writes Parquet, through
//! a pipeline of pinned OS threads connected by bounded queues. No async runtime.
//!
//! ```text
//!  HTTP endpoints ──(1 mio I/O thread)──► [bodies] ──► parse threads (simd-json, in place)
//!      ──► [rows] ──► compute threads (variance, mean, min, max) ──► [rows] ──► writer thread
//!          (below four worker cores the parse threads do the compute stage's work themselves)
//!      ──► Parquet file (row group by row group, temp name → fsync → rename) + dead letters
//! ```
//!
//! - **Back-pressure**: every queue is bounded and carries batches; when the writer falls behind,
//!   the queues fill, the fetch thread blocks and stops reading sockets, and TCP flow control
//!   slows the servers. Memory is bounded by configuration, never by input size.
//! - **Nothing lost**: every work item ends as delivered or failed (with its reason), and every
//!   record found as a row or a dead letter (with its reason). [`Summary`] is that ledger.
//! - **Pinned threads**: [`plan::ThreadPlan`] maps roles to cores, pinning where each thread
//!   has a core of its own; on small machines the parse threads also do the compute stage's
//!   work. See its docs.
//! - **Short path**: while the pipeline is idle, the fetcher hands a body batch straight to the
//!   writer, which parses it itself: one thread wake-up instead of two for the latency of a
//!   low-rate stream (docs/ARCHITECTURE.md, "The short path").
//!
//! ## Library use
//!
//! ```
//! use pinflow::sim::{SimConfig, Simulator};
//! use pinflow::{Config, Pipeline, Source};
//!
//! // A log API to read from: the embedded simulator on a free loopback port.
//! let sim = Simulator::start(SimConfig::default())?;
//! let dir = std::env::temp_dir().join(format!("pinflow-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//!
//! let pipeline = Pipeline::new(Config::new(dir.join("logs.parquet")))?;
//! let summary = pipeline.run(Source::from_arg(&sim.logs_template(100))?)?;
//! assert_eq!(summary.records_written, 100);
//! assert!(summary.ledger_balances());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Push in, callbacks out
//!
//! A program can be the source and the consumer: [`Source::push`] gives a [`PushHandle`] to
//! hand in NDJSON (or ready-made Arrow batches), and [`PipelineBuilder`] adds transforms,
//! filters and sinks that see every batch.
//!
//! ```
//! use pinflow::{Pipeline, Source};
//!
//! let pipeline = Pipeline::builder()
//!     .parquet(false) // rows go only to the sinks
//!     .configure(|c| c.schema.infer = Some(true))
//!     .filter(|row| row.i64("status").is_some_and(|s| s >= 500))
//!     .on_batch(|rows| println!("{} server errors", rows.num_rows()))
//!     .build()?;
//! let (source, push) = Source::push(16);
//! let run = pipeline.spawn(source)?;
//! push.push("{\"status\":200}\n{\"status\":503}\n")?;
//! drop(push); // the source ends when every handle is gone
//! let summary = run.join()?;
//! assert_eq!((summary.records_parsed, summary.records_filtered), (2, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The API
//!
//! - [`Pipeline`], [`PipelineBuilder`] and [`RunHandle`] ([`pipeline`]): configure, run or
//!   spawn, stop, and read the ledger.
//! - [`Source`] ([`source`]): URL templates, lists and files, local files, stdin, and [`push`].
//! - [`Config`] ([`config`]): every option, with the same keys as the TOML file and the
//!   command line; [`schema`] for the columns written.
//! - [`Summary`] and the live [`metrics`] registry; [`plan`] for where threads run.
//! - [`stage`]: the [`Transform`](stage::Transform) and [`Sink`](stage::Sink) traits.
//! - `sim` (feature `sim`): the embedded log simulator, for tests and benchmarks.
//!
//! Everything else is internal. docs/ARCHITECTURE.md walks one record through the modules.
//! Cargo features `http`, `tls`, `metrics-endpoint`, `sim` and `cli` are on by default;
//! without them the core (files and push sources, parse, statistics, Parquet) builds alone.

#![deny(missing_docs)]

// The stable surface: what a program that embeds pinflow uses.
pub mod config;
#[cfg(feature = "http")]
pub mod enrich;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod schema;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stage;
pub mod window;

pub use config::{Compression, Config};
pub use error::{Error, Result};
pub use ingest::push::PushHandle;
pub use ingest::source::Source;
pub use ingest::{push, source};
pub use metrics::Summary;
pub use pipeline::{Inspection, Pipeline, PipelineBuilder, RunHandle};

// Internals. Public only where the benchmarks, the fuzz targets and the integration tests
// (separate crates) reach them, and hidden from the documentation: not part of the API.
#[doc(hidden)]
pub mod batch;
// Test-only crash points (cargo feature `failpoints`); empty without it.
/// The filter expression language of `[[transform]] filter` and `--filter` (internal: the
/// doc tests reach it).
#[doc(hidden)]
pub mod expr;
mod failpoint;
mod fsutil;
mod handoff;
#[doc(hidden)]
pub mod ingest;
#[doc(hidden)]
pub mod journal;
mod json;
pub mod kafka;
#[doc(hidden)]
pub mod output;
#[doc(hidden)]
pub mod parse;
#[cfg(feature = "s3")]
mod s3;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod time;
#[doc(hidden)]
pub mod transform;

/// The README's Rust examples, compiled and run as doc tests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "sim", feature = "http"))]
pub struct ReadmeDoctests;

/// docs/library.md's Rust examples, compiled and run as doc tests so they cannot rot.
#[doc = include_str!("../docs/library.md")]
#[cfg(all(doctest, feature = "sim", feature = "http"))]
pub struct DocsLibraryDoctests;

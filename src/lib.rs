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
//!   low-rate stream ([`handoff::IngestChannels::try_short_path`], [`handoff::Upstream`]).
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
//! Modules, in data-flow order: [`ingest`] (the sources in the fetch seat: [`source`] work
//! items, HTTP pull with mio + httparse, TLS and pagination, local NDJSON/JSON files and stdin,
//! and [`push`] for records handed in by the embedding program), [`handoff`] and [`batch`]
//! (messages between stages),
//! [`parse`] (simd-json → Arrow columns of a [`schema`] layout), [`stats`] and [`transform`]
//! (kernels), [`stage`] (user transforms and sinks), [`output`] (Parquet, partitions and dead
//! letters) with [`journal`] (crash-safe resume), and [`pipeline`] wiring them
//! ([`Pipeline::builder`] for embedders), [`plan`] placing threads, [`metrics`] counting, and
//! `sim` (feature `sim`) serving test data. Cargo features `http`, `tls`, `metrics-endpoint`,
//! `sim` and `cli` are on by default; without them the core builds alone.

#![warn(missing_docs)]

pub mod batch;
pub mod config;
pub mod error;
mod fsutil;
pub mod handoff;
pub mod ingest;
pub mod journal;
pub mod json;
pub mod metrics;
pub mod output;
pub mod parse;
pub mod pipeline;
pub mod plan;
pub mod schema;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stage;
pub mod stats;
pub mod time;
pub mod transform;

pub use config::{Compression, Config};
pub use error::{Error, Result};
pub use ingest::source::Source;
pub use ingest::{push, source};
pub use metrics::Summary;
pub use pipeline::Pipeline;

/// The README's Rust examples, compiled and run as doc tests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "sim", feature = "http"))]
pub struct ReadmeDoctests;

/// docs/library.md's Rust examples, compiled and run as doc tests so they cannot rot.
#[doc = include_str!("../docs/library.md")]
#[cfg(all(doctest, feature = "sim", feature = "http"))]
pub struct DocsLibraryDoctests;

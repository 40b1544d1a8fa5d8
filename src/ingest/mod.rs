//! Ingest: the sources that sit in the fetch seat, one thread at the head of the pipeline.
//!
//! A [`Source`] says where records come from; `run` picks its implementation, one module
//! each, in the way crossbeam-channel puts each channel flavor behind one facade:
//!
//! | source                                   | implementation                      |
//! |------------------------------------------|-------------------------------------|
//! | URL template, list or file (`http`)      | [`http`]: one mio event loop, or the blocking ureq engine |
//! | local NDJSON / JSON / CSV files, stdin   | [`files`] (CSV: [`files::csv`])     |
//! | records handed in by the program         | [`push`]                            |
//! | growing files, across rotation (`--tail`) | [`tail`]                           |
//! | records posted to an HTTP endpoint        | [`listen`]                          |
//! | messages of Kafka topics, in a group      | [`kafka`] (feature `kafka`)         |
//!
//! # The contract
//!
//! Each implementation is a function `run(input, &FetchConfig, IngestChannels, stop) ->
//! Result<IngestReport>` that runs on the ingest thread until its input is done or `stop` is
//! set. Through [`IngestChannels`] it
//! - hands on body batches: to the parse queue ([`ToParse`](crate::handoff::ToParse)), or
//!   straight to an idle writer ([`IngestChannels::try_short_path`]);
//! - takes back emptied batches from `recycled`, so steady state allocates nothing per body;
//! - reports its ledger: every work item it admits ends in exactly one batch, as a body or as
//!   a failure with its reason, and is counted in [`IngestReport::stats`] (the request side of
//!   the run's ledger) and in the live metrics (`registry`, `thread`);
//! - skips the work items in `skip`, which the resume journal found done by an earlier run
//!   (its position for resume is the work item's number);
//! - stops admitting new work once `stop` is set (checking it however long its input is:
//!   an endless file too), gives requests on the wire at most `shutdown_timeout`, counts
//!   what it cut short in [`FetchStats::cancelled`] (in no batch, so the journal does not mark
//!   it done), ships what it holds, and returns; a closed parse queue means the later stages
//!   failed, and it returns that error.
//!
//! It never parses JSON and never computes: that is the parse threads' work.

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

#[cfg(feature = "http")]
pub mod http;

pub(crate) mod batcher;
pub mod files;
pub mod kafka;
pub mod listen;
pub mod push;
pub mod source;
pub mod tail;
pub(crate) mod url;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::IngestChannels;
use crate::metrics::FetchStats;

pub use source::Source;

/// What the ingest thread hands back when it ends.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// Counters of the request side of the ledger.
    pub stats: FetchStats,
    /// A read error that cut the source short.
    pub source_error: Option<String>,
    /// Whether the stop flag ended admission early.
    pub interrupted: bool,
}

/// Whether `source` is fetched over HTTP.
fn is_http(source: &Source) -> bool {
    matches!(
        source,
        Source::Template(_) | Source::Urls(_) | Source::Lines { .. }
    )
}

/// Checks before anything is opened: the source can be read by this build, with these
/// settings, and its secrets and certificates are there. A failure here leaves no file behind.
pub(crate) fn preflight(source: &Source, cfg: &FetchConfig, every: Option<Duration>) -> Result<()> {
    if is_http(source) {
        #[cfg(not(feature = "http"))]
        return Err(Error::config(
            "source",
            "this build has no HTTP fetcher (cargo feature `http`); use files or a push source",
        ));
        // Secrets and certificates first: a missing one fails before any file exists.
        #[cfg(feature = "http")]
        http::preflight(cfg)?;
    }
    kafka::preflight(source)?;
    since_preflight(source, cfg)?;
    if every.is_some()
        && matches!(
            source,
            Source::Files(_)
                | Source::Push(_)
                | Source::Tail(_)
                | Source::Listen(_)
                | Source::Kafka(_)
        )
    {
        return Err(Error::config(
            "every",
            "continuous mode is for URL sources; files are read once, a tail follows its \
             files until stopped, and pushes end when their handles are dropped",
        ));
    }
    let _ = cfg;
    Ok(())
}

/// `{since}` polling (`fetch.since_field`): the placeholder and the option go together, so
/// that neither is silently ignored. A source read once as the run goes (standard input, a
/// pipe) cannot be looked at before: it is filled in as its lines come.
fn since_preflight(source: &Source, cfg: &FetchConfig) -> Result<()> {
    match (cfg.since_field.as_deref(), source.mentions_since()) {
        (None, Some(true)) => Err(Error::config(
            "fetch.since_field",
            "the source's URLs hold `{since}`, but fetch.since_field (--since-field) is not \
             set: give the column (timestamp or int64) whose highest written value fills it",
        )),
        (Some(field), Some(false)) => Err(Error::config(
            "fetch.since_field",
            format!(
                "is `{field}`, but no URL of the source holds `{{since}}`, the placeholder it \
                 fills: put it where the API takes the position (`?since={{since}}`)"
            ),
        )),
        _ => Ok(()),
    }
}

/// The `{since}` value of a pass that starts now (`fetch.since_field`): the highest value of
/// the column among the rows that reached the writer, or `fetch.since_start` before any;
/// `None` when the option is off. Logged, once a pass.
#[cfg(feature = "http")]
pub(crate) fn since_for_pass(
    cfg: &FetchConfig,
    registry: &crate::metrics::live::Registry,
) -> Option<String> {
    let field = cfg.since_field.as_deref()?;
    let (since, from) = match registry.since.text() {
        Some(text) => (text, "the highest value written"),
        None => (cfg.since_start.clone(), "fetch.since_start"),
    };
    tracing::info!(field, since = %since, from, "pass starts: {{since}} filled");
    Some(since)
}

/// Runs `source`'s implementation on the calling thread (the ingest thread) until it ends.
/// `every` is continuous mode's period (URL sources only; see [`preflight`]).
pub(crate) fn run(
    source: Source,
    cfg: &FetchConfig,
    file_opts: &files::FileOptions,
    every: Option<Duration>,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    match source {
        Source::Files(inputs) => files::run(inputs, cfg, file_opts, chans, stop),
        Source::Push(input) => push::run(input, cfg, chans, stop),
        Source::Tail(tail) => tail::run(tail, cfg, chans, stop),
        #[cfg(feature = "http")]
        Source::Listen(opts) => listen::run(opts, cfg, chans, stop),
        #[cfg(feature = "kafka")]
        Source::Kafka(k) => kafka::run(k, chans, stop),
        #[cfg(not(feature = "kafka"))]
        Source::Kafka(_) => Err(Error::config(
            "kafka.brokers",
            "this pinflow was built without Kafka (cargo build --features kafka)",
        )),
        #[cfg(feature = "http")]
        source => match cfg.engine {
            crate::config::FetchEngine::Mio => http::run(cfg, source, every, chans, stop),
            crate::config::FetchEngine::Ureq => http::blocking::run(cfg, source, chans, stop),
        },
        #[cfg(not(feature = "http"))]
        _ => {
            let _ = (every, chans, stop);
            Err(Error::config(
                "source",
                "this build has no HTTP fetcher (cargo feature `http`)",
            ))
        }
    }
}

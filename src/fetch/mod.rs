//! The fetch stage: one thread, one mio event loop, many keep-alive HTTP/1.1 connections.
//!
//! The loop owns every socket and timer. Each turn it
//! 1. admits work items from the source while fewer than `max_in_flight` are unfinished,
//! 2. hands queued requests to idle connections of their host, opening new connections up to
//!    `connections_per_host`,
//! 3. waits for socket readiness (or a timer, or the resolver / source feeder waking it),
//! 4. moves bytes: writes requests, decodes responses with [`http::ResponseDecoder`],
//! 5. appends finished bodies to the current [`BodyBatch`] and ships the batch downstream when
//!    it is full or old enough.
//!
//! It never parses JSON and never computes. When the downstream queue is full it blocks on the
//! send, so it stops reading sockets and issuing requests: TCP flow control carries the
//! back-pressure to the servers, and memory stays bounded by the queue and batch limits.
//!
//! Every admitted work item leaves the loop exactly once, either as a body or as a failure with
//! its reason, inside a batch. A request is retried only when no response could have been
//! delivered (connection refused, reset or closed before a complete response, timeout), so a
//! retry can never produce a second copy of its records.

//!
//! The shared plumbing ([`FetchChannels`], [`FetchReport`]) is always built: the file reader
//! and the push source take the fetcher's seat with it. The HTTP fetchers need the `http`
//! feature (on by default).

#[cfg(feature = "http")]
pub mod blocking;
#[cfg(feature = "http")]
mod event_loop;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
mod resolve;
#[cfg(feature = "http")]
mod transport;

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::batch::{BodyBatch, CursorReply, LiveBatches};
use crate::error::Error;
use crate::metrics::live::Registry;
use crate::metrics::FetchStats;

#[cfg(feature = "http")]
pub(crate) use event_loop::backoff;
#[cfg(feature = "http")]
pub use event_loop::{preflight, run};

/// What the fetch thread hands back when it ends.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Counters of the request side of the ledger.
    pub stats: FetchStats,
    /// A read error that cut the source short.
    pub source_error: Option<String>,
    /// Whether the stop flag ended admission early.
    pub interrupted: bool,
}

/// The channels the fetch stage talks through.
pub struct FetchChannels {
    /// Full batches go here (to the parse threads).
    pub out: Sender<BodyBatch>,
    /// Emptied batches come back here for reuse.
    pub recycled: Receiver<BodyBatch>,
    /// Counts batches alive in the pipeline.
    pub live: Arc<LiveBatches>,
    /// Live metrics: counters, the fetch latency histogram, this thread's health.
    pub registry: Arc<Registry>,
    /// This thread's index in the registry.
    pub thread: usize,
    /// Cursor pagination (`fetch.cursor_field`): the parse threads' [`CursorReply`] for every
    /// page body, the one path that runs against the flow of data.
    pub cursors: Option<Receiver<CursorReply>>,
    /// Work items to skip: done by an earlier run, says the resume journal.
    pub skip: Arc<crate::journal::RangeSet>,
    /// The parse threads' signal that they ran out of work, for a batch held back to fill.
    pub parse_idle: Arc<crate::batch::IdleSignal>,
}

pub(crate) fn downstream_gone() -> Error {
    Error::Thread {
        thread: "pinflow-fetch".into(),
        why: "the parse stage stopped accepting batches".into(),
    }
}

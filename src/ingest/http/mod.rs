//! HTTP pull: one thread, one mio event loop, many keep-alive HTTP/1.1 connections.
//!
//! The loop owns every socket and timer. Each turn it
//! 1. admits work items from the source while fewer than `max_in_flight` are unfinished,
//! 2. hands queued requests to idle connections of their host, opening new connections up to
//!    `connections_per_host`,
//! 3. waits for socket readiness (or a timer, or the resolver / source feeder waking it),
//! 4. moves bytes: writes requests, decodes responses with [`protocol::ResponseDecoder`],
//! 5. appends finished bodies to the current [`BodyBatch`](crate::batch::BodyBatch) and ships the batch downstream when
//!    it is full or old enough.
//!
//! It never parses JSON and never computes. When the downstream queue is full it blocks on the
//! send, so it stops reading sockets and issuing requests: TCP flow control carries the
//! back-pressure to the servers, and memory stays bounded by the queue and batch limits. The
//! bytes the connections themselves hold are bounded the same way, by pausing reads past
//! `max_buffered_bytes` (see `pool`), and their number by the file-descriptor limit.
//!
//! Every admitted work item leaves the loop exactly once, either as a body or as a failure with
//! its reason, inside a batch, or, once the stop flag is set, cancelled (counted, in no batch). A request is retried only when no response could have been
//! delivered (connection refused, reset or closed before a complete response, timeout), so a
//! retry can never produce a second copy of its records.
//!
//! The engine is chosen by `fetch.engine`: this event loop ([`run`]), or the blocking ureq
//! fallback ([`blocking`]) for proxies and as the benchmark's baseline.
//!
//! The event loop's parts, each with its state and the methods that touch it:
//! - `event_loop`: the fetcher that holds the parts, the loop itself, continuous mode's passes,
//!   and what a connection's events mean for its request (deliver, redirect, retry, fail);
//! - `pool`: hosts, their addresses (handed to the resolver thread), and the slab of
//!   connections: opening, keep-alive reuse, `connections_per_host`, closing; the pool-wide
//!   bounds on buffered bytes and on connections (file descriptors);
//! - `conn`: one connection's socket, buffers and response decoder, and its timeouts;
//! - `schedule`: admission from the source, each host's queue and rate limit, retries with
//!   backoff, and a work item's end;
//! - `paginate`: next pages (`Link: rel="next"`, cursors) and redirects, and the chains of
//!   pages (a page seen twice in one chain stops it);
//! - `credentials`: which headers a request carries (none away from its URL's origin);
//! - `batching`: the batch being filled, and when and how it ships;
//! - `order`: source order (time windows): bodies held until the work items before them have
//!   ended, so they go downstream in the order of the URL list.

mod batching;
pub mod blocking;
mod conn;
mod credentials;
mod event_loop;
mod order;
mod paginate;
mod pool;
pub mod protocol;
pub(crate) mod resolve;
mod schedule;
pub(crate) mod transport;

pub use event_loop::{preflight, run};
pub(crate) use schedule::{backoff, TokenBucket};

//! HTTP receive (`--listen ADDR`): clients `POST /ingest` records, and pinflow answers 2xx
//! only once they are durable.
//!
//! One mio event loop on the ingest thread ([`server`]) accepts connections, frames HTTP/1.1
//! requests (`httparse`; keep-alive, `Content-Length` and chunked bodies) and admits each
//! complete `POST /ingest` as one work item: a body in the next batch for the parse threads,
//! numbered past every item the journal already holds. The loop does no work beyond framing:
//! gzip bodies go to the parse threads as they came (`Content-Encoding: gzip`), which inflate
//! them within `fetch.max_body_bytes` as they do a fetched response's.
//!
//! # Answers
//! - `200` once the request's body is durable: in the write-ahead log ([`wal`], `OUT.receive-wal/`
//!   beside the output), appended when it is admitted and fsynced by a sync thread that
//!   covers every connection's bodies at once (group commit), or, if that comes first, once
//!   the journal has committed a checkpoint whose items include the request's (the writer
//!   reports each commit in [`crate::metrics::live::CommittedItems`]). Either way it survives
//!   kill -9: a restart admits again every logged body no checkpoint committed, under its
//!   old item number, so it is written exactly once. A receive run needs the journal
//!   (`writer.journal`), which says what is committed, and a checkpoint period
//!   (`writer.rotate_interval`), after which the log's segments are deleted.
//! - `400` for a body that is not JSON by a cheap look at its shape (not UTF-8 text starting
//!   with `{` or `[`; gzip: not a gzip stream). Records that fail to parse inside an admitted
//!   body are dead-lettered with their reason by the parse threads, like a fetched page's,
//!   and the request is acknowledged with the rest: received = written + dead-lettered.
//! - `413` past `listen.max_body_bytes`, `431` for headers past 16 KiB, `401` without the
//!   bearer token when `listen.token` is set (compared in constant time, never logged),
//!   `404`/`405` for other paths and methods.
//! - No answer yet while the pipeline pushes back (the parse queue is full and the batch
//!   waiting for it is full): the whole request waits on its connection for room, and its
//!   client waits for the answer, as a fetched server waits under TCP back-pressure; `503`
//!   with `Retry-After` if no room comes within `listen.ack_timeout`. Also `503` when
//!   `listen.max_connections` are open, when the log cannot be written, and to requests
//!   still waiting for their answer when `listen.ack_timeout` passes or the run stops.
//!   A request answered 503 after admission may still be written: a client that retries it
//!   may write it twice. Duplicates are possible only among requests never answered 2xx.
//!
//! # Limits
//! Connections beyond `listen.max_connections` are answered 503 and closed; a request's
//! headers must arrive within `listen.header_timeout` and its body within
//! `listen.body_timeout`, and a kept-alive connection idle past `listen.idle_timeout` is
//! closed: a slow client holds only its own connection, never the loop or the pipeline.
//!
//! # Stopping
//! On stop the listener closes, no new request is admitted, requests waiting for their
//! commit get until `fetch.shutdown_timeout`, then every connection is closed; the batch in
//! hand is shipped, so everything admitted is written by the run's last checkpoint.
//!
//! # Metrics
//! Besides the fetch counters (a request is a request), `pinflow_receive_ack_seconds` is a
//! histogram of the time from a request's admission to its 200, labelled by what made it
//! durable first: `from="log"` or `from="checkpoint"`.
//!
//! # TLS
//! With `listen.tls_cert` and `listen.tls_key` the endpoint is `https://` ([`tls`]): one rustls
//! session per connection on the same loop, its plaintext framed as a plain connection's; the
//! handshake counts against `listen.header_timeout`; a failed one closes only its connection
//! and is counted in `pinflow_receive_tls_failures_total`. `listen.tls_client_ca` requires
//! client certificates (mutual TLS). The files are read by [`preflight`], so a bad one fails the
//! start before the journal or the output is touched.

#[cfg(feature = "http")]
pub mod server;
#[cfg(feature = "http")]
pub mod tls;
#[cfg(feature = "http")]
pub mod wal;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "http")]
pub(crate) use server::run;

/// Settings of the receive endpoint (`[listen]`). Its `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ListenOptions {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The bearer token clients must send (`Authorization: Bearer TOKEN`); `None`: none.
    pub token: Option<String>,
    /// Largest accepted request body, as sent (before gzip is inflated).
    pub max_body_bytes: usize,
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, from its first byte.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive, after its headers.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A request waits this long for the checkpoint that makes it durable, then gets 503.
    pub ack_timeout: Duration,
    /// The write-ahead log's directory ([`wal`]); `None`: requests are answered at the
    /// journal's checkpoints only. A run sets it beside its output ([`wal_dir_for`]).
    pub wal_dir: Option<PathBuf>,
    /// The start time of the journal the log goes with ([`crate::journal::Journal::started`]):
    /// a log left by the runs of another journal (one moved aside to start afresh) is refused,
    /// not admitted into this one's output.
    pub wal_owner: u64,
    /// TLS: the PEM certificate chain served; `None`: plain HTTP ([`tls`]).
    pub tls_cert: Option<PathBuf>,
    /// TLS: the PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// TLS: the PEM CA certificates that clients' certificates must chain to; `None`: none asked.
    pub tls_client_ca: Option<PathBuf>,
}

/// The directory of the write-ahead log of a receive run writing `out`:
/// `OUT.receive-wal/` beside it.
pub fn wal_dir_for(out: &Path) -> PathBuf {
    crate::fsutil::with_suffix(out, ".receive-wal")
}

impl std::fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenOptions")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_connections", &self.max_connections)
            .field("wal_dir", &self.wal_dir)
            .field("tls_cert", &self.tls_cert)
            .finish_non_exhaustive()
    }
}

impl ListenOptions {
    /// The defaults (those of `[listen]`), listening on `addr`.
    pub fn new(addr: SocketAddr) -> ListenOptions {
        let c = crate::config::ListenConfig::default();
        ListenOptions {
            addr,
            ..ListenOptions::from_config(&c, addr)
        }
    }

    /// The options of a `[listen]` table, when its address is set.
    pub fn of(c: &crate::config::ListenConfig) -> Option<ListenOptions> {
        Some(ListenOptions::from_config(c, c.addr?))
    }

    fn from_config(c: &crate::config::ListenConfig, addr: SocketAddr) -> ListenOptions {
        ListenOptions {
            addr,
            token: c.token.clone(),
            max_body_bytes: c.max_body_bytes,
            max_connections: c.max_connections,
            header_timeout: c.header_timeout,
            body_timeout: c.body_timeout,
            idle_timeout: c.idle_timeout,
            ack_timeout: c.ack_timeout,
            wal_dir: None,
            wal_owner: 0,
            tls_cert: c.tls_cert.clone(),
            tls_key: c.tls_key.clone(),
            tls_client_ca: c.tls_client_ca.clone(),
        }
    }
}

/// A receive run answers 2xx at the journal's checkpoints: it needs the journal, and a
/// checkpoint period so that acks come while the run goes on.
pub(crate) fn preflight(source: &crate::Source, cfg: &crate::Config) -> crate::error::Result<()> {
    if !matches!(source, crate::Source::Listen(_)) {
        return Ok(());
    }
    if !cfg!(feature = "http") {
        return Err(crate::error::Error::config(
            "listen.addr",
            "this build has no HTTP receive endpoint (cargo feature `http`)",
        ));
    }
    if !cfg.writer.journal {
        return Err(crate::error::Error::config(
            "listen.addr",
            "receiving answers 2xx only once the records are durable, which is when the \
             journal commits them: turn on writer.journal (--journal true)",
        ));
    }
    if cfg.writer.rotate_interval.is_none() {
        return Err(crate::error::Error::config(
            "listen.addr",
            "receiving acknowledges requests at the journal's checkpoints: set \
             writer.rotate_interval (--rotate-interval 1s), which bounds how long a client \
             waits for its answer",
        ));
    }
    // The certificate and key files are read now, before the journal or the output is
    // touched: a bad one fails the start, named (the receive loop reads them again).
    #[cfg(feature = "http")]
    if let Some(opts) = ListenOptions::of(&cfg.listen) {
        tls::server_config(&opts)?;
    }
    Ok(())
}

#[cfg(all(test, feature = "http"))]
mod tests;

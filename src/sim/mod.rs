//! The embedded log API simulator: a real HTTP/1.1 server on loopback that serves the
//! [`Workload`] deterministically, with no files on disk.
//!
//! Routes:
//! - `/logs/{i}.json`: record `i` as one JSON object (ids from 1);
//! - `/pages/{j}.ndjson`: records `(j−1)·P+1 ..= j·P`, one per line;
//! - `/arrays/{j}.json`: the same records as one JSON array;
//! - `/status/{code}`: an empty-ish JSON body with that status;
//! - any path registered with [`SimConfig::route`]: a canned response (tests use these for
//!   malformed bodies, wrong types, odd statuses).
//!
//! [`SimConfig::faults`] breaks a share of the workload responses the ways real servers and
//! networks do (5xx, 429 with `Retry-After`, early closes, stalls, lying lengths, garbage,
//! trickling); see [`Faults`]. With faults on, [`SimStats`] is the server's side of a test's
//! ledger: which record ids it served with a complete, correct 200, and what it injected.
//!
//! The server renders bodies from pre-built templates (see [`workload`]), so it is cheap next
//! to the pipeline it feeds; it measures its own CPU time so the benchmark can show that.
//!
//! ```
//! use pinflow::sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default()).unwrap();
//! let url = sim.url("/logs/1.json");
//! assert!(url.starts_with("http://127.0.0.1:"));
//! let stats = sim.stop();
//! assert_eq!(stats.requests, 0);
//! ```

mod faults;
mod server;
pub mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Waker;

pub use faults::{FaultMode, Faults};
pub use workload::{Record, Workload};

/// Whether responses use `Transfer-Encoding: chunked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunking {
    /// Always `Content-Length`.
    #[default]
    Never,
    /// Always chunked.
    Always,
    /// Every other response chunked.
    Alternate,
}

/// A fixed response for one path.
#[derive(Debug, Clone)]
pub struct Canned {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Send it chunked.
    pub chunked: bool,
}

thread_local! {
    static IN_SIMULATOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a simulator thread. Reading it never allocates, so a counting
/// global allocator can leave the in-process simulator's allocations out of pinflow's figures.
pub fn in_simulator_thread() -> bool {
    IN_SIMULATOR.with(std::cell::Cell::get)
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// What records look like.
    pub workload: Workload,
    /// Response framing.
    pub chunking: Chunking,
    /// Close each connection, unannounced, after this many responses.
    pub close_every: Option<u32>,
    /// Canned responses by exact path (with query).
    pub routes: Vec<(String, Canned)>,
    /// Faults injected into workload responses; none by default.
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            workload: Workload::default(),
            chunking: Chunking::Never,
            close_every: None,
            routes: Vec::new(),
            faults: Faults::default(),
        }
    }
}

impl SimConfig {
    /// Adds a canned response for `path`.
    pub fn route(mut self, path: &str, status: u16, body: impl Into<Vec<u8>>) -> SimConfig {
        self.routes.push((
            path.to_string(),
            Canned {
                status,
                body: body.into(),
                chunked: false,
            },
        ));
        self
    }
}

/// What the simulator did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Requests answered.
    pub requests: u64,
    /// Response bytes written (heads and bodies).
    pub bytes: u64,
    /// Connections accepted.
    pub connections: u64,
    /// CPU time of the server thread, where the OS reports it.
    pub cpu: Option<Duration>,
    /// With faults enabled ([`Faults::enabled`]), the record ids of every complete and correct
    /// 200 the server wrote to a socket, in the order their last bytes were written: one entry
    /// per id per response (a page lists each of its ids; an id served twice appears twice).
    /// Responses broken by a fault never count; a trickled one counts once it is all written.
    /// Empty when faults are off (the benchmark pays nothing for it).
    ///
    /// Written to the socket is not received: a client that gives up on a response (a timeout)
    /// as it completes retries it, and the id is served twice. So the ledger check is: every
    /// id a client delivered is in here, and every requested id missing from here ended as a
    /// failure with a reason.
    pub served_ok_ids: Vec<u64>,
    /// With faults enabled, how many responses each mode broke, by [`FaultMode::name`] (every
    /// mode is present, 0 included). Empty when faults are off.
    pub faults_injected: BTreeMap<&'static str, u64>,
}

impl SimStats {
    /// How many times `mode` was injected.
    pub fn injected(&self, mode: FaultMode) -> u64 {
        self.faults_injected.get(mode.name()).copied().unwrap_or(0)
    }

    /// Faults injected, all modes together.
    pub fn injected_total(&self) -> u64 {
        self.faults_injected.values().sum()
    }
}

/// A running simulator. Stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<SimStats>>,
}

impl Simulator {
    /// Binds and starts the server thread.
    pub fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        let stop = Arc::new(AtomicBool::new(false));
        let (server, waker, addr) = server::Server::bind(cfg, Arc::clone(&stop))?;
        let thread = std::thread::Builder::new()
            .name("pinflow-sim".into())
            .spawn(move || {
                IN_SIMULATOR.with(|f| f.set(true));
                server.run()
            })?;
        Ok(Simulator {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The template for records `1..=n`, one per request.
    pub fn logs_template(&self, n: u64) -> String {
        self.url(&format!("/logs/{{1..{n}}}.json"))
    }

    /// The template for NDJSON pages `1..=pages`.
    pub fn pages_template(&self, pages: u64) -> String {
        self.url(&format!("/pages/{{1..{pages}}}.ndjson"))
    }

    /// Stops the server and returns what it did.
    pub fn stop(mut self) -> SimStats {
        self.shutdown()
    }

    fn shutdown(&mut self) -> SimStats {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

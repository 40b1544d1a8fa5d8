//! The metrics and health endpoint: `/metrics`, `/healthz`, `/readyz` over HTTP/1.1.
//!
//! A plain blocking `TcpListener` on its own thread, not pinned, so it floats to whichever core
//! is free and never takes a pinned worker's core; scrapes are rare (seconds apart) and answered
//! one at a time with `Connection: close`. A client gets 5 seconds to send its request, so a
//! stuck scraper cannot hold the endpoint. No async runtime.
//!
//! - `GET /metrics`: the Prometheus text format ([`super::prometheus`]).
//! - `GET /healthz`: 200 when every stage thread is alive and either making progress or idle
//!   for a known reason (waiting for input, blocked on a full queue, finished); 503 naming the
//!   thread otherwise. Wire it to a supervisor's liveness check.
//! - `GET /readyz`: 200 while the pipeline runs and is not draining, else 503.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::live::Registry;
use crate::error::{Error, Result};

/// A running endpoint; stopped when dropped.
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Binds `addr` and serves `registry` until dropped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pinflow::metrics::{endpoint::Endpoint, live::Registry};
    /// use pinflow::plan::Role;
    ///
    /// let registry = Arc::new(Registry::new(&[Role::Fetch, Role::Writer]));
    /// let ep = Endpoint::start("127.0.0.1:0".parse()?, registry)?;
    /// println!("metrics on http://{}/metrics", ep.addr());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(addr: SocketAddr, registry: Arc<Registry>) -> Result<Endpoint> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Config {
            what: "metrics address".into(),
            why: format!("cannot listen on {addr}: {e}"),
        })?;
        let addr = listener.local_addr().map_err(|e| Error::Config {
            what: "metrics address".into(),
            why: e.to_string(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pinflow-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(stream) = conn {
                        let _ = serve(stream, &registry);
                    }
                }
            })
            .map_err(|e| Error::Thread {
                thread: "pinflow-metrics".into(),
                why: e.to_string(),
            })?;
        Ok(Endpoint {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept with a connection of our own.
        let wake = if self.addr.ip().is_unspecified() {
            SocketAddr::new(
                if self.addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                },
                self.addr.port(),
            )
        } else {
            self.addr
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    let (method, path) = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                )
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n"),
        }
    };
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET\n");
    }
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => respond(
            &mut stream,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &super::prometheus::render(registry),
        ),
        "/healthz" => match registry.health() {
            Ok(lines) => respond(&mut stream, 200, "text/plain", &(lines.join("\n") + "\n")),
            Err(lines) => respond(&mut stream, 503, "text/plain", &(lines.join("\n") + "\n")),
        },
        "/readyz" => {
            if registry.ready() {
                respond(&mut stream, 200, "text/plain", "ready\n")
            } else if registry.draining() {
                respond(&mut stream, 503, "text/plain", "draining\n")
            } else {
                respond(&mut stream, 503, "text/plain", "not running\n")
            }
        }
        _ => respond(
            &mut stream,
            404,
            "text/plain",
            "try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: u16, ctype: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

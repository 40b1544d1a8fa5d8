//! Name resolution off the event loop: `getaddrinfo` blocks, so a helper thread runs it and
//! wakes the fetch thread with the answer.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{unbounded, Receiver, Sender};
use mio::Waker;

/// An answer: the host's index in the fetcher, and its addresses or the error text.
pub(crate) type Resolved = (usize, Result<Vec<SocketAddr>, String>);

/// The resolver thread's handle. Dropping it ends the thread.
pub(crate) struct Resolver {
    requests: Sender<(usize, String, u16)>,
    pub(crate) answers: Receiver<Resolved>,
}

impl Resolver {
    pub(crate) fn spawn(waker: Arc<Waker>) -> std::io::Result<Resolver> {
        let (requests, jobs) = unbounded::<(usize, String, u16)>();
        let (done, answers) = unbounded();
        thread::Builder::new()
            .name("pinflow-resolve".into())
            .spawn(move || {
                for (host, name, port) in jobs {
                    let result = match (name.as_str(), port).to_socket_addrs() {
                        Ok(addrs) => {
                            let v: Vec<SocketAddr> = addrs.collect();
                            if v.is_empty() {
                                Err(format!("{name}: no addresses"))
                            } else {
                                Ok(v)
                            }
                        }
                        Err(e) => Err(format!("cannot resolve {name}: {e}")),
                    };
                    if done.send((host, result)).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(Resolver { requests, answers })
    }

    /// Asks for `name:port`; the answer arrives on `answers` tagged with `host`.
    pub(crate) fn resolve(&self, host: usize, name: &str, port: u16) {
        let _ = self.requests.send((host, name.to_string(), port));
    }
}

/// A literal IP address needs no lookup.
pub(crate) fn literal(name: &str, port: u16) -> Option<SocketAddr> {
    name.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

//! The simulator's HTTP/1.1 server: one mio thread, keep-alive, Content-Length or chunked.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::workload::Renderer;
use super::{Canned, Chunking, SimConfig, SimStats};

const LISTENER: Token = Token(usize::MAX - 1);
pub(super) const WAKER: Token = Token(usize::MAX);
const CHUNK: usize = 16 * 1024;

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    served: u32,
    closing: bool,
}

pub(super) struct Server {
    pub(super) poll: Poll,
    pub(super) listener: TcpListener,
    pub(super) cfg: SimConfig,
    pub(super) stop: Arc<AtomicBool>,
}

impl Server {
    pub(super) fn bind(
        cfg: SimConfig,
        stop: Arc<AtomicBool>,
    ) -> io::Result<(Server, Arc<Waker>, SocketAddr)> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cfg.addr)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let addr = listener.local_addr()?;
        Ok((
            Server {
                poll,
                listener,
                cfg,
                stop,
            },
            waker,
            addr,
        ))
    }

    pub(super) fn run(mut self) -> SimStats {
        let renderer = Renderer::new(&self.cfg.workload);
        let routes: HashMap<String, Canned> = self.cfg.routes.drain(..).collect();
        let mut stats = SimStats::default();
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut events = Events::with_capacity(256);
        let mut scratch = Vec::with_capacity(1 << 20);
        let cpu_start = crate::metrics::thread_cpu_time();
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(200)))
            {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => loop {
                        match self.listener.accept() {
                            Ok((mut stream, _)) => {
                                let _ = stream.set_nodelay(true);
                                let slot = free.pop().unwrap_or_else(|| {
                                    conns.push(None);
                                    conns.len() - 1
                                });
                                if self
                                    .poll
                                    .registry()
                                    .register(
                                        &mut stream,
                                        Token(slot),
                                        Interest::READABLE | Interest::WRITABLE,
                                    )
                                    .is_err()
                                {
                                    free.push(slot);
                                    continue;
                                }
                                stats.connections += 1;
                                conns[slot] = Some(Conn {
                                    stream,
                                    rbuf: Vec::with_capacity(4096),
                                    wbuf: Vec::with_capacity(4096),
                                    wpos: 0,
                                    served: 0,
                                    closing: false,
                                });
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => break,
                        }
                    },
                    Token(slot) => {
                        let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                            continue;
                        };
                        let keep = self.serve(conn, &renderer, &routes, &mut scratch, &mut stats);
                        if !keep {
                            if let Some(mut c) = conns[slot].take() {
                                let _ = self.poll.registry().deregister(&mut c.stream);
                            }
                            free.push(slot);
                        }
                    }
                }
            }
        }
        if let (Some(a), Some(b)) = (cpu_start, crate::metrics::thread_cpu_time()) {
            stats.cpu = Some(b.saturating_sub(a));
        }
        stats
    }

    /// Reads requests, answers them, writes. Returns false when the connection is done.
    fn serve(
        &self,
        conn: &mut Conn,
        r: &Renderer,
        routes: &HashMap<String, Canned>,
        scratch: &mut Vec<u8>,
        stats: &mut SimStats,
    ) -> bool {
        let mut buf = [0u8; 8192];
        if !conn.closing {
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => conn.rbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
            // Answer every complete request in the buffer (pipelining is allowed).
            loop {
                if conn.closing {
                    conn.rbuf.clear();
                    break;
                }
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                let n = match req.parse(&conn.rbuf) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) => break,
                    Err(_) => {
                        respond(&mut conn.wbuf, 400, b"bad request\n", false);
                        conn.closing = true;
                        break;
                    }
                };
                let path = req.path.unwrap_or("/").to_string();
                // RFC 9112 §9.6: a client that sends `Connection: close` gets its answer, then
                // the close.
                let client_closes = req.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                });
                conn.rbuf.drain(..n);
                conn.served += 1;
                stats.requests += 1;
                let chunked = match self.cfg.chunking {
                    Chunking::Never => false,
                    Chunking::Always => true,
                    Chunking::Alternate => stats.requests % 2 == 0,
                };
                let before = conn.wbuf.len();
                self.answer(&path, r, routes, scratch, chunked, &mut conn.wbuf);
                stats.bytes += (conn.wbuf.len() - before) as u64;
                if client_closes {
                    conn.closing = true;
                } else if self.cfg.close_every.is_some_and(|n| conn.served >= n) {
                    // Close after this response, without announcing it: the client must cope
                    // with a kept-alive connection that disappears.
                    conn.closing = true;
                }
            }
        }
        while conn.wpos < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => return false,
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        conn.wbuf.clear();
        conn.wpos = 0;
        !conn.closing
    }

    fn answer(
        &self,
        path: &str,
        r: &Renderer,
        routes: &HashMap<String, Canned>,
        scratch: &mut Vec<u8>,
        chunked: bool,
        out: &mut Vec<u8>,
    ) {
        if let Some(c) = routes.get(path) {
            respond(out, c.status, &c.body, c.chunked);
            return;
        }
        let w = &self.cfg.workload;
        scratch.clear();
        if let Some(i) = number_between(path, "/logs/", ".json") {
            if i == 0 {
                respond(out, 404, b"ids start at 1\n", chunked);
                return;
            }
            if !chunked {
                // Fast path: the head, then the record rendered straight into the buffer.
                head(out, 200, r.len_of(i), false);
                r.render(i, out);
                return;
            }
            r.render(i, scratch);
        } else if let Some(j) = number_between(path, "/pages/", ".ndjson").filter(|&j| j > 0) {
            for i in w.page_ids(j) {
                r.render(i, scratch);
                scratch.push(b'\n');
            }
        } else if let Some(j) = number_between(path, "/arrays/", ".json").filter(|&j| j > 0) {
            scratch.push(b'[');
            for i in w.page_ids(j) {
                if scratch.len() > 1 {
                    scratch.push(b',');
                }
                r.render(i, scratch);
            }
            scratch.push(b']');
        } else if let Some(code) =
            number_between(path, "/status/", "").filter(|c| (200..600).contains(c))
        {
            respond(out, code as u16, b"{\"status\":\"as requested\"}", chunked);
            return;
        } else {
            respond(out, 404, b"no such path\n", chunked);
            return;
        }
        respond(out, 200, scratch, chunked);
    }
}

fn number_between(path: &str, prefix: &str, suffix: &str) -> Option<u64> {
    path.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

fn head(out: &mut Vec<u8>, status: u16, len: usize, chunked: bool) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
}

fn respond(out: &mut Vec<u8>, status: u16, body: &[u8], chunked: bool) {
    head(out, status, body.len(), chunked);
    if !chunked {
        out.extend_from_slice(body);
        return;
    }
    for piece in body.chunks(CHUNK) {
        let _ = write!(out, "{:x}\r\n", piece.len());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use crate::sim::{SimConfig, Simulator};

    fn exchange(sim: &Simulator, request: &str) -> String {
        let mut s = TcpStream::connect(sim.addr()).unwrap();
        // A server that ignores `Connection: close` makes read_to_end fail here, not hang.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .expect("server closes after the answer");
        String::from_utf8(raw).unwrap()
    }

    #[test]
    fn connection_close_is_honoured_and_pipelined_requests_are_answered_in_order() {
        let sim = Simulator::start(SimConfig::default()).unwrap();
        let raw = exchange(
            &sim,
            "GET /logs/1.json HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /status/503 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let first = raw.find("HTTP/1.1 200").expect("first answer");
        let second = raw.find("HTTP/1.1 503").expect("second answer");
        assert!(first < second, "{raw}");
        assert!(
            raw.contains(" 1,\"ts\":"),
            "record 1 (its id is space-padded): {raw}"
        );
        sim.stop();
    }
}

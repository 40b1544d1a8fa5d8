//! The simulator's HTTP/1.1 server: one mio thread, keep-alive, Content-Length or chunked,
//! and the fault modes of [`Faults`](super::Faults).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::faults::{FaultMode, Injector};
use super::workload::Renderer;
use super::{Canned, Chunking, SimConfig, SimStats};

const LISTENER: Token = Token(usize::MAX - 1);
pub(super) const WAKER: Token = Token(usize::MAX);
const CHUNK: usize = 16 * 1024;
/// The poll timeout when no connection is trickling.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Trickled responses: this many bytes per write for their first [`TRICKLE_SMALL`] bytes
/// (the head, split), then steps of 1/[`TRICKLE_STEPS`] of the response (so a large page takes
/// about as long as a record), one write every [`TRICKLE_GAP`].
const TRICKLE_BYTES: usize = 16;
const TRICKLE_SMALL: usize = 256;
const TRICKLE_STEPS: usize = 64;
const TRICKLE_GAP: Duration = Duration::from_millis(2);

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    served: u32,
    closing: bool,
    /// A stalled request: answer nothing more, read and discard until the client closes.
    stalled: bool,
    /// `wbuf[pace_from..pace_until]` is trickled: written in small steps, one every
    /// [`TRICKLE_GAP`], the next not before `next_write`.
    pace_from: usize,
    pace_until: usize,
    next_write: Instant,
    /// In the server's list of trickling connections.
    listed: bool,
    /// With faults on: correct 200s waiting to be written, as (end offset in `wbuf`, first id,
    /// last id).
    pending_ok: VecDeque<(usize, u64, u64)>,
}

impl Conn {
    fn trickling(&self) -> bool {
        self.wpos < self.pace_until
    }
}

/// How a workload route names its records.
#[derive(Clone, Copy)]
enum Work {
    Log(u64),
    Page(u64),
    Array(u64),
}

/// What the connection does after an answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    Stall,
    Trickle,
}

/// An answer's effect: what happens next, and (with faults on) the ids of a correct 200.
struct Answered {
    next: Next,
    ok: Option<(u64, u64)>,
}

impl Answered {
    const PLAIN: Answered = Answered {
        next: Next::KeepAlive,
        ok: None,
    };
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
        let mut faults = Injector::new(&self.cfg.faults);
        let mut stats = SimStats::default();
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        // Slots of the connections that are trickling a response (only ever used with faults).
        let mut trickling: Vec<usize> = Vec::new();
        let mut events = Events::with_capacity(256);
        let mut scratch = Vec::with_capacity(1 << 20);
        let cpu_start = crate::metrics::thread_cpu_time();
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = if trickling.is_empty() {
                IDLE_POLL
            } else {
                let now = Instant::now();
                trickling
                    .iter()
                    .filter_map(|&s| conns[s].as_ref())
                    .map(|c| c.next_write.saturating_duration_since(now))
                    .min()
                    .unwrap_or(IDLE_POLL)
                    .min(IDLE_POLL)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
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
                                    stalled: false,
                                    pace_from: 0,
                                    pace_until: 0,
                                    next_write: Instant::now(),
                                    listed: false,
                                    pending_ok: VecDeque::new(),
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
                        let keep = self.serve(
                            conn,
                            &renderer,
                            &routes,
                            &mut scratch,
                            &mut faults,
                            &mut stats,
                        );
                        if !keep {
                            if conn.listed {
                                trickling.retain(|&s| s != slot);
                            }
                            self.close(&mut conns, &mut free, slot);
                        } else if conn.trickling() && !conn.listed {
                            conn.listed = true;
                            trickling.push(slot);
                        }
                    }
                }
            }
            // Trickling connections whose next step is due.
            if !trickling.is_empty() {
                let now = Instant::now();
                let mut k = 0;
                while k < trickling.len() {
                    let slot = trickling[k];
                    let Some(conn) = conns[slot].as_mut() else {
                        trickling.swap_remove(k);
                        continue;
                    };
                    if conn.next_write <= now && !flush(conn, &mut stats) {
                        trickling.swap_remove(k);
                        self.close(&mut conns, &mut free, slot);
                        continue;
                    }
                    if !conn.trickling() {
                        conn.listed = false;
                        trickling.swap_remove(k);
                        continue;
                    }
                    k += 1;
                }
            }
        }
        if let (Some(a), Some(b)) = (cpu_start, crate::metrics::thread_cpu_time()) {
            stats.cpu = Some(b.saturating_sub(a));
        }
        if faults.on {
            stats.faults_injected = FaultMode::ALL
                .iter()
                .zip(faults.injected)
                .map(|(m, n)| (m.name(), n))
                .collect();
        }
        stats
    }

    fn close(&self, conns: &mut [Option<Conn>], free: &mut Vec<usize>, slot: usize) {
        if let Some(mut c) = conns[slot].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        free.push(slot);
    }

    /// Reads requests, answers them, writes. Returns false when the connection is done.
    fn serve(
        &self,
        conn: &mut Conn,
        r: &Renderer,
        routes: &HashMap<String, Canned>,
        scratch: &mut Vec<u8>,
        faults: &mut Injector,
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
                if conn.closing || conn.stalled {
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
                // Borrowed from `rbuf`, which is drained after the answer: no copy.
                let path = req.path.unwrap_or("/");
                // RFC 9112 §9.6: a client that sends `Connection: close` gets its answer, then
                // the close.
                let client_closes = req.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                });
                conn.served += 1;
                stats.requests += 1;
                let chunked = match self.cfg.chunking {
                    Chunking::Never => false,
                    Chunking::Always => true,
                    Chunking::Alternate => stats.requests.is_multiple_of(2),
                };
                let before = conn.wbuf.len();
                let answered =
                    self.answer(path, r, routes, scratch, chunked, faults, &mut conn.wbuf);
                conn.rbuf.drain(..n);
                stats.bytes += (conn.wbuf.len() - before) as u64;
                if let Some((first, last)) = answered.ok {
                    conn.pending_ok.push_back((conn.wbuf.len(), first, last));
                }
                match answered.next {
                    Next::KeepAlive => {}
                    Next::Close => conn.closing = true,
                    Next::Stall => {
                        // Never answered, so neither `Connection: close` nor `close_every`
                        // applies: the connection stays open until the client closes it.
                        conn.stalled = true;
                        continue;
                    }
                    Next::Trickle => {
                        if !conn.trickling() {
                            conn.pace_from = before;
                            conn.next_write = Instant::now();
                        }
                        conn.pace_until = conn.wbuf.len();
                    }
                }
                if client_closes {
                    conn.closing = true;
                } else if self.cfg.close_every.is_some_and(|n| conn.served >= n) {
                    // Close after this response, without announcing it: the client must cope
                    // with a kept-alive connection that disappears.
                    conn.closing = true;
                }
            }
        }
        flush(conn, stats)
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        path: &str,
        r: &Renderer,
        routes: &HashMap<String, Canned>,
        scratch: &mut Vec<u8>,
        chunked: bool,
        faults: &mut Injector,
        out: &mut Vec<u8>,
    ) -> Answered {
        if let Some(c) = routes.get(path) {
            respond(out, c.status, &c.body, c.chunked);
            return Answered::PLAIN;
        }
        let work = if let Some(i) = number_between(path, "/logs/", ".json") {
            if i == 0 {
                respond(out, 404, b"ids start at 1\n", chunked);
                return Answered::PLAIN;
            }
            Work::Log(i)
        } else if let Some(j) = number_between(path, "/pages/", ".ndjson").filter(|&j| j > 0) {
            Work::Page(j)
        } else if let Some(j) = number_between(path, "/arrays/", ".json").filter(|&j| j > 0) {
            Work::Array(j)
        } else if let Some(code) =
            number_between(path, "/status/", "").filter(|c| (200..600).contains(c))
        {
            respond(out, code as u16, b"{\"status\":\"as requested\"}", chunked);
            return Answered::PLAIN;
        } else {
            respond(out, 404, b"no such path\n", chunked);
            return Answered::PLAIN;
        };
        let mut next = Next::KeepAlive;
        if faults.on {
            match faults.draw() {
                Some(FaultMode::Trickle) => next = Next::Trickle,
                Some(mode) => return self.inject(mode, work, r, scratch, chunked, faults, out),
                None => {}
            }
        }
        match work {
            Work::Log(i) if !chunked => {
                // Fast path: the head, then the record rendered straight into the buffer.
                head(out, 200, r.len_of(i), false);
                r.render(i, out);
            }
            _ => {
                self.body(work, r, scratch);
                respond(out, 200, scratch, chunked);
            }
        }
        Answered {
            next,
            ok: faults.on.then(|| self.ids(work)),
        }
    }

    /// The first and last record id of `work`.
    fn ids(&self, work: Work) -> (u64, u64) {
        match work {
            Work::Log(i) => (i, i),
            Work::Page(j) | Work::Array(j) => {
                let ids = self.cfg.workload.page_ids(j);
                (*ids.start(), *ids.end())
            }
        }
    }

    /// Renders the body of `work` into `scratch` (cleared first).
    fn body(&self, work: Work, r: &Renderer, scratch: &mut Vec<u8>) {
        let w = &self.cfg.workload;
        scratch.clear();
        match work {
            Work::Log(i) => r.render(i, scratch),
            Work::Page(j) => {
                for i in w.page_ids(j) {
                    r.render(i, scratch);
                    scratch.push(b'\n');
                }
            }
            Work::Array(j) => {
                scratch.push(b'[');
                for i in w.page_ids(j) {
                    if scratch.len() > 1 {
                        scratch.push(b',');
                    }
                    r.render(i, scratch);
                }
                scratch.push(b']');
            }
        }
    }

    /// Writes the answer to `work` broken by `mode` (any mode but `Trickle`, which is a correct
    /// answer written slowly).
    #[allow(clippy::too_many_arguments)]
    fn inject(
        &self,
        mode: FaultMode,
        work: Work,
        r: &Renderer,
        scratch: &mut Vec<u8>,
        chunked: bool,
        faults: &mut Injector,
        out: &mut Vec<u8>,
    ) -> Answered {
        let close = Answered {
            next: Next::Close,
            ok: None,
        };
        match mode {
            FaultMode::Status500 => {
                respond(out, 500, b"{\"error\":\"injected fault\"}", chunked);
                return Answered::PLAIN;
            }
            FaultMode::Status429 => {
                let body: &[u8] = b"{\"error\":\"slow down\"}";
                scratch.clear();
                faults.retry_after(scratch);
                head_with(out, 429, body.len(), chunked, scratch);
                body_into(out, body, chunked);
                return Answered::PLAIN;
            }
            FaultMode::Stall => {
                return Answered {
                    next: Next::Stall,
                    ok: None,
                }
            }
            FaultMode::GarbageStatus => {
                out.extend_from_slice(b"HELLO WORLD\r\n\r\n");
                return close;
            }
            _ => {}
        }
        self.body(work, r, scratch);
        let len = scratch.len();
        match mode {
            FaultMode::CloseBeforeBody => head(out, 200, len, chunked),
            FaultMode::CloseMidBody => {
                head(out, 200, len, false);
                out.extend_from_slice(&scratch[..len / 2]);
            }
            FaultMode::TruncatedChunked => {
                head(out, 200, len, true);
                let _ = write!(out, "{len:x}\r\n");
                out.extend_from_slice(&scratch[..len / 2]);
            }
            FaultMode::LengthShort => {
                // The declared body ends inside the first record (which starts at 0 or, in an
                // array, at 1), so it never parses as a complete record.
                let first = self.ids(work).0;
                head(out, 200, r.len_of(first) / 2, false);
                out.extend_from_slice(scratch);
            }
            FaultMode::LengthLong => {
                head(out, 200, len + len / 2 + 1, false);
                out.extend_from_slice(scratch);
            }
            _ => unreachable!("handled above"),
        }
        close
    }
}

/// Writes what `conn` may write now: everything, or the next step of a trickled response.
/// Records the correct responses that are now completely written. Returns false when the
/// connection is done.
fn flush(conn: &mut Conn, stats: &mut SimStats) -> bool {
    while conn.wpos < conn.wbuf.len() {
        let paced = conn.wpos >= conn.pace_from && conn.wpos < conn.pace_until;
        let end = if paced {
            let now = Instant::now();
            if now < conn.next_write {
                return true;
            }
            let into = conn.wpos - conn.pace_from;
            let step = if into < TRICKLE_SMALL {
                TRICKLE_BYTES
            } else {
                TRICKLE_BYTES.max((conn.pace_until - conn.pace_from) / TRICKLE_STEPS)
            };
            conn.next_write = now + TRICKLE_GAP;
            (conn.wpos + step).min(conn.pace_until)
        } else if conn.wpos < conn.pace_from && conn.pace_from < conn.pace_until {
            conn.pace_from
        } else {
            conn.wbuf.len()
        };
        match conn.stream.write(&conn.wbuf[conn.wpos..end]) {
            Ok(0) => return false,
            Ok(n) => {
                conn.wpos += n;
                while let Some(&(done_at, first, last)) = conn.pending_ok.front() {
                    if done_at > conn.wpos {
                        break;
                    }
                    conn.pending_ok.pop_front();
                    stats.served_ok_ids.extend(first..=last);
                }
                if paced && conn.trickling() {
                    // The next step when the timer says so.
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    conn.wbuf.clear();
    conn.wpos = 0;
    conn.pace_from = 0;
    conn.pace_until = 0;
    !conn.closing
}

fn number_between(path: &str, prefix: &str, suffix: &str) -> Option<u64> {
    path.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

fn head(out: &mut Vec<u8>, status: u16, len: usize, chunked: bool) {
    head_with(out, status, len, chunked, b"");
}

/// The status line and headers; `extra` is more header lines, each ending in CRLF.
fn head_with(out: &mut Vec<u8>, status: u16, len: usize, chunked: bool, extra: &[u8]) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
    );
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    } else {
        let _ = write!(out, "Content-Length: {len}\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

fn respond(out: &mut Vec<u8>, status: u16, body: &[u8], chunked: bool) {
    head(out, status, body.len(), chunked);
    body_into(out, body, chunked);
}

fn body_into(out: &mut Vec<u8>, body: &[u8], chunked: bool) {
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
    use std::sync::OnceLock;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::sim::workload::Renderer;
    use crate::sim::{Chunking, FaultMode, Faults, SimConfig, Simulator, Workload};

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

    fn faulty(mode: FaultMode) -> Simulator {
        Simulator::start(SimConfig {
            faults: Faults::default().with(mode, 1.0),
            ..SimConfig::default()
        })
        .unwrap()
    }

    /// One request with `Connection: close`; everything the server sends until it closes.
    fn get(sim: &Simulator, path: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(sim.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("server closes");
        raw
    }

    /// (head, body) split at the blank line.
    fn split(raw: &[u8]) -> (String, &[u8]) {
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
        (
            String::from_utf8(raw[..at + 4].to_vec()).unwrap(),
            &raw[at + 4..],
        )
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn content_length(head: &str) -> usize {
        header(head, "content-length").unwrap().parse().unwrap()
    }

    fn record_json(i: u64) -> Vec<u8> {
        static RENDERER: OnceLock<Renderer> = OnceLock::new();
        let mut out = Vec::new();
        RENDERER
            .get_or_init(|| Renderer::new(&Workload::default()))
            .render(i, &mut out);
        out
    }

    fn correct_log(i: u64) -> Vec<u8> {
        let body = record_json(i);
        let mut raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        raw
    }

    #[test]
    fn without_faults_responses_are_unchanged_and_no_ledger_is_kept() {
        let sim = Simulator::start(SimConfig::default()).unwrap();
        assert_eq!(get(&sim, "/logs/5.json"), correct_log(5));
        let stats = sim.stop();
        assert!(stats.served_ok_ids.is_empty() && stats.faults_injected.is_empty());

        // Chunked framing is unchanged too.
        let sim = Simulator::start(SimConfig {
            chunking: Chunking::Always,
            ..SimConfig::default()
        })
        .unwrap();
        let body = record_json(7);
        let mut want = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            body.len()
        )
        .into_bytes();
        want.extend_from_slice(&body);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(get(&sim, "/logs/7.json"), want);
        sim.stop();
    }

    #[test]
    fn status_500_and_faults_spare_canned_and_status_routes() {
        let sim = Simulator::start(SimConfig {
            faults: Faults::default().with(FaultMode::Status500, 1.0),
            ..SimConfig::default().route("/canned", 200, "{\"ok\":1}")
        })
        .unwrap();
        let raw = get(&sim, "/logs/1.json");
        assert!(raw.starts_with(b"HTTP/1.1 500 "), "{raw:?}");
        let raw = get(&sim, "/status/200");
        assert!(raw.starts_with(b"HTTP/1.1 200 "), "{raw:?}");
        let raw = get(&sim, "/canned");
        assert!(raw.ends_with(b"{\"ok\":1}"), "{raw:?}");
        let stats = sim.stop();
        assert_eq!(stats.injected(FaultMode::Status500), 1);
        assert_eq!(stats.injected_total(), 1);
        assert_eq!(stats.faults_injected.len(), FaultMode::ALL.len());
        assert!(stats.served_ok_ids.is_empty());
    }

    #[test]
    fn status_429_alternates_delta_seconds_and_http_date() {
        let sim = faulty(FaultMode::Status429);
        let first = get(&sim, "/logs/1.json");
        let (head, _) = split(&first);
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        assert_eq!(header(&head, "retry-after"), Some("1"), "{head}");

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let second = get(&sim, "/logs/2.json");
        let (head, _) = split(&second);
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        let date = header(&head, "retry-after").unwrap();
        // An IMF-fixdate at least 1 s from when the request was sent (a few seconds of slack).
        let matches = (now + 1..=now + 30).any(|t| {
            let mut s = Vec::new();
            s.extend_from_slice(crate::time::format_http_date(t as i64).as_bytes());
            s == date.as_bytes()
        });
        assert!(matches, "{date}");
        let stats = sim.stop();
        assert_eq!(stats.injected(FaultMode::Status429), 2);
    }

    #[test]
    fn close_before_body_sends_the_head_only() {
        let sim = faulty(FaultMode::CloseBeforeBody);
        let raw = get(&sim, "/logs/3.json");
        let (head, body) = split(&raw);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(content_length(&head) > 0);
        assert!(body.is_empty());
        assert_eq!(sim.stop().injected(FaultMode::CloseBeforeBody), 1);
    }

    #[test]
    fn close_mid_body_sends_half() {
        let sim = faulty(FaultMode::CloseMidBody);
        let raw = get(&sim, "/pages/1.ndjson");
        let (head, body) = split(&raw);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(!body.is_empty() && body.len() < content_length(&head));
        let stats = sim.stop();
        assert!(stats.served_ok_ids.is_empty());
    }

    #[test]
    fn stall_answers_nothing_and_keeps_the_connection() {
        let sim = faulty(FaultMode::Stall);
        let mut s = TcpStream::connect(sim.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.write_all(b"GET /logs/1.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) => panic!("stalled request got {n} bytes (0: closed)"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
        drop(s);
        assert_eq!(sim.stop().injected(FaultMode::Stall), 1);
    }

    #[test]
    fn truncated_chunked_stops_inside_a_chunk() {
        let sim = faulty(FaultMode::TruncatedChunked);
        let raw = get(&sim, "/logs/4.json");
        let (head, body) = split(&raw);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
        let data = &body[line_end + 2..];
        assert!(
            !data.is_empty() && data.len() < size,
            "{} of {size}",
            data.len()
        );
        assert!(!body.ends_with(b"0\r\n\r\n"));
        sim.stop();
    }

    #[test]
    fn length_short_declares_less_than_it_sends() {
        let sim = faulty(FaultMode::LengthShort);
        for path in ["/logs/9.json", "/pages/2.ndjson", "/arrays/2.json"] {
            let raw = get(&sim, path);
            let (head, body) = split(&raw);
            assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            let declared = content_length(&head);
            assert!(
                declared < body.len(),
                "{path}: {declared} vs {}",
                body.len()
            );
            // The declared body is a cut record: never valid JSON, never a whole NDJSON line.
            assert!(!body[..declared].contains(&b'\n'), "{path}");
            assert!(!body[..declared].ends_with(b"}"), "{path}");
        }
        assert_eq!(sim.stop().injected(FaultMode::LengthShort), 3);
    }

    #[test]
    fn length_long_declares_more_than_it_sends() {
        let sim = faulty(FaultMode::LengthLong);
        let raw = get(&sim, "/logs/9.json");
        let (head, body) = split(&raw);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, record_json(9));
        assert!(content_length(&head) > body.len());
        sim.stop();
    }

    #[test]
    fn garbage_status_is_not_http() {
        let sim = faulty(FaultMode::GarbageStatus);
        let raw = get(&sim, "/logs/9.json");
        assert_eq!(raw, b"HELLO WORLD\r\n\r\n");
        assert!(!raw.starts_with(b"HTTP/"));
        sim.stop();
    }

    #[test]
    fn trickle_delivers_correct_responses_without_blocking_others() {
        let sim = Simulator::start(SimConfig {
            workload: Workload {
                page_size: 10,
                ..Workload::default()
            },
            faults: Faults::default().with(FaultMode::Trickle, 1.0),
            ..SimConfig::default()
        })
        .unwrap();
        let mut slow = TcpStream::connect(sim.addr()).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.write_all(b"GET /logs/5.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = vec![0u8; 8];
        slow.read_exact(&mut raw).unwrap();
        // While that one trickles, another connection is served (trickled too).
        let page = get(&sim, "/pages/1.ndjson");
        let (head, body) = split(&page);
        assert_eq!(content_length(&head), body.len());
        assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 10);
        slow.read_to_end(&mut raw).unwrap();
        assert_eq!(raw, correct_log(5));
        let stats = sim.stop();
        let mut ids = stats.served_ok_ids.clone();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]);
        assert_eq!(stats.injected(FaultMode::Trickle), 2);
    }

    /// Serves `/logs/1..=n` one request per connection; which came back correct.
    fn correct_ids(sim: &Simulator, n: u64) -> Vec<u64> {
        (1..=n)
            .filter(|&i| get(sim, &format!("/logs/{i}.json")) == correct_log(i))
            .collect()
    }

    #[test]
    fn the_ledger_lists_exactly_the_correct_responses_and_runs_repeat() {
        let faults = Faults {
            seed: 5,
            status_500: 0.05,
            status_429: 0.05,
            close_before_body: 0.05,
            close_mid_body: 0.05,
            truncated_chunked: 0.05,
            length_short: 0.05,
            length_long: 0.05,
            garbage_status: 0.05,
            trickle: 0.01,
            ..Faults::default()
        };
        let run = || {
            let sim = Simulator::start(SimConfig {
                faults: faults.clone(),
                ..SimConfig::default()
            })
            .unwrap();
            let ok = correct_ids(&sim, 200);
            (ok, sim.stop())
        };
        let (ok, stats) = run();
        assert_eq!(stats.served_ok_ids, ok);
        let faulted = stats.injected_total() - stats.injected(FaultMode::Trickle);
        assert_eq!(ok.len() as u64 + faulted, 200);
        assert!(faulted > 20, "{:?}", stats.faults_injected);
        let (again, stats_again) = run();
        assert_eq!(again, ok);
        assert_eq!(stats_again.faults_injected, stats.faults_injected);
    }
}

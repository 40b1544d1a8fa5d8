//! The receive endpoint's event loop: connections, request framing, admission and answers.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::tls::{self, ReadEnd, ServerConfig, Session};
use super::wal::{self, Wal};
use super::ListenOptions;
use crate::batch::{BodyBatch, ContentEncoding};
use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::{downstream_gone, IngestChannels};
use crate::ingest::IngestReport;
use crate::metrics::live::{Registry, ThreadState};

const LISTENER: Token = Token(usize::MAX);
/// The write-ahead log's sync thread: a sync reached further.
const WAKE: Token = Token(usize::MAX - 1);
/// Largest request head (request line and headers).
const MAX_HEAD: usize = 16 << 10;
/// How often the loop looks at the journal's commits and the deadlines when nothing happens.
const TICK: Duration = Duration::from_millis(20);
/// How soon the loop looks again for room in the parse queue while a complete request waits
/// for it.
const HOLD_TICK: Duration = Duration::from_millis(1);

/// Where a connection is.
enum Phase {
    /// Waiting for (the rest of) a request head; `since` is its first byte (or the last answer).
    Head { since: Option<Instant> },
    /// Reading a body of `len` bytes after `head` bytes, or chunked. `held`: since when the
    /// complete body waits for room in the pipeline (the parse queue and the batch in hand
    /// are full); the connection is not answered meanwhile, so its client waits rather than
    /// retries, as a fetched server would under TCP back-pressure.
    Body {
        head: usize,
        body: BodyFraming,
        until: Instant,
        gzip: bool,
        held: Option<Instant>,
    },
    /// Admitted as work item `seq`, waiting for its commit, or for the write-ahead log's
    /// sync to reach `wal_end`.
    Acking {
        seq: u64,
        wal_end: Option<u64>,
        admitted: Instant,
        until: Instant,
        close: bool,
    },
    /// Writing an answer; close after it when `close`.
    Answer {
        out: Vec<u8>,
        at: usize,
        close: bool,
    },
}

enum BodyFraming {
    Length(usize),
    /// Chunked: decoded so far, and the position in the buffer of the next chunk-size line.
    Chunked {
        decoded: Vec<u8>,
        pos: usize,
    },
}

struct Conn {
    stream: TcpStream,
    /// `Some` on a TLS endpoint: the bytes of `stream` go through it.
    tls: Option<Session>,
    /// Plaintext read and not yet framed.
    buf: Vec<u8>,
    phase: Phase,
}

impl Conn {
    fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(Session::handshaking)
    }
}

/// The receive endpoint's loop, on the ingest thread, until `stop` (then the drain).
pub(crate) fn run(
    opts: ListenOptions,
    cfg: &FetchConfig,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    let mut report = IngestReport::default();
    let (registry, thread) = (Arc::clone(&chans.registry), chans.thread);
    let io_err =
        |what: &str, e: std::io::Error| Error::config("listen.addr", format!("{what}: {e}"));
    // The certificate and key are read before the port opens: a bad file fails the start.
    let tls_config = tls::server_config(&opts)?;
    let mut poll = Poll::new().map_err(|e| io_err("event loop", e))?;
    let mut listener = Some(
        TcpListener::bind(opts.addr)
            .map_err(|e| io_err(&format!("cannot listen on {}", opts.addr), e))?,
    );
    if let Some(l) = listener.as_mut() {
        poll.registry()
            .register(l, LISTENER, Interest::READABLE)
            .map_err(|e| io_err("event loop", e))?;
        tracing::info!(
            addr = %l.local_addr().map_err(|e| io_err("address", e))?,
            tls = tls_config.is_some(),
            "receiving on POST /ingest"
        );
    }
    // Past every item an earlier run committed: a resumed run's numbers never collide.
    let mut next_seq = chans.skip.last().map_or(0, |l| l + 1);
    let mut batch: Option<BodyBatch> = None;
    let mut wal = match &opts.wal_dir {
        Some(dir) => {
            let waker = Waker::new(poll.registry(), WAKE).map_err(|e| io_err("event loop", e))?;
            let (replayed, old) = wal::replay(dir, &chans.skip, opts.wal_owner)?;
            if !replayed.is_empty() {
                tracing::info!(
                    bodies = replayed.len(),
                    wal = %dir.display(),
                    "receive: admitting again the bodies a stopped run logged but never committed"
                );
            }
            for r in replayed {
                next_seq = next_seq.max(r.seq + 1);
                let b = batch.get_or_insert_with(|| fresh_batch(&chans, cfg));
                if !b.is_empty()
                    && (b.len() >= cfg.batch_max_items
                        || b.arena.len() + r.body.len() > cfg.batch_max_bytes)
                {
                    let full = batch.take().expect("just filled");
                    chans.out.send(full).map_err(|_| downstream_gone())?;
                }
                let b = batch.get_or_insert_with(|| fresh_batch(&chans, cfg));
                let encoding = match r.gzip {
                    true => ContentEncoding::Gzip,
                    false => ContentEncoding::Identity,
                };
                b.push_encoded_body("listen", &r.body, encoding, 1, Instant::now());
                b.set_seq(r.seq);
                report.stats.requests += 1;
                report.stats.delivered += 1;
            }
            Some(Wal::start(
                dir,
                opts.wal_owner,
                next_seq,
                old,
                Box::new(move || {
                    let _ = waker.wake();
                }),
            )?)
        }
        None => None,
    };
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next_token = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut seen_generation = u64::MAX;
    let mut drain_until: Option<Instant> = None;
    let mut last_publish = Instant::now();
    let result = (|| -> Result<()> {
        loop {
            registry.set_state(thread, ThreadState::WaitingInput);
            let holding = batch.is_some()
                || conns
                    .values()
                    .any(|c| matches!(c.phase, Phase::Body { held: Some(_), .. }));
            let tick = if holding { HOLD_TICK } else { TICK };
            if let Err(e) = poll.poll(&mut events, Some(tick)) {
                if e.kind() != ErrorKind::Interrupted {
                    return Err(io_err("event loop", e));
                }
            }
            registry.set_state(thread, ThreadState::Working);
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) && drain_until.is_none() {
                // Stop admitting: the listener goes, and no request is read any more.
                report.interrupted = true;
                if let Some(mut l) = listener.take() {
                    let _ = poll.registry().deregister(&mut l);
                }
                drain_until = Some(now + cfg.shutdown_timeout);
            }
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                if ev.token() == LISTENER {
                    accept(
                        &mut listener,
                        &poll,
                        &mut conns,
                        &mut next_token,
                        (&opts, tls_config.as_ref()),
                        &mut report,
                    );
                    continue;
                }
                let id = ev.token().0;
                let Some(conn) = conns.get_mut(&id) else {
                    continue;
                };
                if let Step::Close = step(
                    conn,
                    &opts,
                    &registry,
                    &mut report,
                    drain_until.is_some(),
                    now,
                )? {
                    close(&poll, &mut conns, id);
                }
            }
            // Read before the checks: a commit during them moves it past, and the next round
            // looks again.
            let generation = registry.committed.generation();
            let durable = wal.as_ref().map(Wal::durable);
            if seen_generation != generation {
                if let Some(w) = wal.as_mut() {
                    w.trim(&registry.committed);
                }
            }
            // Complete requests: admit or refuse them.
            let ids: Vec<usize> = conns.keys().copied().collect();
            for id in ids {
                let conn = conns.get_mut(&id).expect("listed");
                if drain_until.is_none() {
                    admit(
                        conn,
                        &opts,
                        cfg,
                        &chans,
                        Admission {
                            batch: &mut batch,
                            next_seq: &mut next_seq,
                            wal: wal.as_mut(),
                        },
                        &mut report,
                        now,
                    );
                }
                if let Phase::Acking {
                    seq,
                    wal_end,
                    admitted,
                    close,
                    ..
                } = conn.phase
                {
                    let logged = wal_end.is_some_and(|end| durable.is_some_and(|d| end <= d));
                    let from = if logged {
                        Some(&registry.receive.ack_from_log)
                    } else if seen_generation != generation && registry.committed.contains(seq) {
                        Some(&registry.receive.ack_from_checkpoint)
                    } else {
                        None
                    };
                    if let Some(histogram) = from {
                        histogram
                            .lock()
                            .record(now.saturating_duration_since(admitted));
                        answer(conn, 200, "{\"status\":\"ok\"}", close);
                    }
                }
                let late = match conn.phase {
                    // A TLS handshake is part of the wait for the head.
                    Phase::Head { since: Some(t) } => {
                        now >= t + if conn.buf.is_empty() && !conn.handshaking() {
                            opts.idle_timeout
                        } else {
                            opts.header_timeout
                        }
                    }
                    Phase::Body { held: Some(t), .. } => now >= t + opts.ack_timeout,
                    Phase::Body { until, .. } => now >= until,
                    Phase::Acking { until, .. } => {
                        now >= until || drain_until.is_some_and(|d| now >= d)
                    }
                    _ => false,
                };
                if late {
                    match conn.phase {
                        Phase::Acking { .. } => {
                            count(&mut report, 503);
                            answer(conn, 503, "{\"error\":\"not yet durable: the records may still be written; retry\"}", true);
                        }
                        Phase::Head { .. } if conn.buf.is_empty() => {
                            if conn.handshaking() {
                                let peer = peer_of(conn);
                                tls_failed(
                                    &registry,
                                    &peer,
                                    "handshake not done within listen.header_timeout",
                                );
                            }
                            close(&poll, &mut conns, id);
                            continue;
                        }
                        Phase::Body { held: Some(_), .. } => refuse(
                            conn,
                            &mut report,
                            503,
                            "the pipeline is behind: retry later",
                            None,
                        ),
                        _ => {
                            count(&mut report, 408);
                            answer(
                                conn,
                                408,
                                "{\"error\":\"the request did not arrive in time\"}",
                                true,
                            );
                        }
                    }
                }
                if matches!(conn.phase, Phase::Answer { .. }) {
                    if let Step::Close = flush(conn, drain_until.is_some(), now)? {
                        close(&poll, &mut conns, id);
                    }
                }
            }
            seen_generation = generation;
            // The batch in hand goes to the parse threads as soon as there is room.
            if let Some(b) = batch.take() {
                match chans.out.try_send(b) {
                    Ok(()) => {}
                    Err(TrySendError::Full(b)) => batch = Some(b),
                    Err(TrySendError::Disconnected(_)) => return Err(downstream_gone()),
                }
            }
            if last_publish.elapsed() >= Duration::from_millis(50) {
                last_publish = Instant::now();
                registry.publish_fetch(&report.stats, acking(&conns), conns.len());
                registry.heartbeat(thread);
            }
            if let Some(d) = drain_until {
                if batch.is_none()
                    && (conns
                        .values()
                        .all(|c| !matches!(c.phase, Phase::Acking { .. }))
                        || now >= d)
                {
                    return Ok(());
                }
            }
        }
    })();
    // What is still in hand was admitted: it goes, even to a full queue.
    if let Some(b) = batch.take() {
        if result.is_ok() {
            chans.out.send(b).map_err(|_| downstream_gone())?;
        }
    }
    registry.publish_fetch(&report.stats, 0, 0);
    result.map(|()| report)
}

fn acking(conns: &HashMap<usize, Conn>) -> usize {
    conns
        .values()
        .filter(|c| matches!(c.phase, Phase::Acking { .. }))
        .count()
}

fn count(report: &mut IngestReport, status: u16) {
    *report.stats.statuses.entry(status).or_default() += 1;
}

fn accept(
    listener: &mut Option<TcpListener>,
    poll: &Poll,
    conns: &mut HashMap<usize, Conn>,
    next_token: &mut usize,
    (opts, tls_config): (&ListenOptions, Option<&ServerConfig>),
    report: &mut IngestReport,
) {
    let Some(l) = listener.as_mut() else { return };
    loop {
        let (mut stream, _) = match l.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                // Out of descriptors and the like: the clients retry, the loop goes on.
                tracing::warn!(error = %e, "receive: accept failed");
                return;
            }
        };
        if conns.len() >= opts.max_connections {
            count(report, 503);
            // A TLS client could not read a plain answer: it only sees the close.
            if tls_config.is_none() {
                let _ = stream.write(&response(503, "{\"error\":\"too many connections\"}", true));
            }
            continue;
        }
        let tls = match tls_config.map(Session::new) {
            None => None,
            Some(Some(session)) => Some(session),
            Some(None) => continue,
        };
        report.stats.connections += 1;
        let id = *next_token;
        *next_token = next_token.wrapping_add(1) % (usize::MAX - 1);
        if poll
            .registry()
            .register(
                &mut stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_ok()
        {
            conns.insert(
                id,
                Conn {
                    stream,
                    tls,
                    buf: Vec::new(),
                    phase: Phase::Head {
                        since: Some(Instant::now()),
                    },
                },
            );
        }
    }
}

fn close(poll: &Poll, conns: &mut HashMap<usize, Conn>, id: usize) {
    if let Some(mut c) = conns.remove(&id) {
        if let Some(tls) = c.tls.as_mut() {
            tls.close(&mut c.stream);
        }
        let _ = poll.registry().deregister(&mut c.stream);
    }
}

enum Step {
    Keep,
    Close,
}

/// Reads what the socket has (while a request is being read) and writes a pending answer.
fn step(
    conn: &mut Conn,
    opts: &ListenOptions,
    registry: &Registry,
    report: &mut IngestReport,
    draining: bool,
    now: Instant,
) -> Result<Step> {
    if matches!(
        conn.phase,
        Phase::Head { .. } | Phase::Body { .. } | Phase::Acking { .. }
    ) && !draining
    {
        // Bounded: the head limit, or the body limit plus chunk framing.
        let limit = opts.max_body_bytes + MAX_HEAD + (64 << 10);
        if let Some(tls) = conn.tls.as_mut() {
            let (before, handshaking) = (conn.buf.len(), tls.handshaking());
            match tls.read(&mut conn.stream, &mut conn.buf, limit) {
                ReadEnd::Open => {}
                ReadEnd::Closed => return Ok(Step::Close),
                ReadEnd::Failed(why) => {
                    let peer = peer_of(conn);
                    tls_failed(registry, &peer, &why);
                    return Ok(Step::Close);
                }
            }
            report.stats.body_bytes += (conn.buf.len() - before) as u64;
            // A head's time runs from its first byte, or from the accept through the handshake.
            if let Phase::Head { since } = &mut conn.phase {
                if before == 0 && !conn.buf.is_empty() && !handshaking {
                    *since = Some(now);
                }
            }
            // Reading phases: no answer to write (the handshake's replies went with the read).
            return Ok(Step::Keep);
        }
        let mut chunk = [0u8; 64 << 10];
        loop {
            if conn.buf.len() > limit {
                break;
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => return Ok(Step::Close),
                Ok(n) => {
                    report.stats.body_bytes += n as u64;
                    if let Phase::Head { since } = &mut conn.phase {
                        if conn.buf.is_empty() {
                            *since = Some(now);
                        }
                    }
                    conn.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Ok(Step::Close),
            }
        }
    }
    if matches!(conn.phase, Phase::Answer { .. }) {
        return flush(conn, draining, now);
    }
    // Handshake replies the socket did not take at once, while the request waits.
    if let Some(tls) = conn.tls.as_mut() {
        if tls.send_pending(&mut conn.stream).is_err() {
            return Ok(Step::Close);
        }
    }
    Ok(Step::Keep)
}

/// The client's address, for a log line.
fn peer_of(conn: &Conn) -> String {
    conn.stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string())
}

/// Counts and logs a failed TLS connection: the handshake (a plain-HTTP client, an unknown
/// certificate, no common cipher) or a bad record. rustls's reason names no secret.
/// Not a failed request: nothing was admitted, and a port scanner must not fail the run.
fn tls_failed(registry: &Registry, peer: &str, why: &str) {
    tracing::info!(peer, reason = why, "receive: TLS connection failed, closed");
    registry
        .receive
        .tls_failures
        .fetch_add(1, Ordering::Relaxed);
}

fn flush(conn: &mut Conn, _draining: bool, _now: Instant) -> Result<Step> {
    let Phase::Answer { out, at, close } = &mut conn.phase else {
        return Ok(Step::Keep);
    };
    if let Some(tls) = conn.tls.as_mut() {
        match tls.write(&mut conn.stream, out, at) {
            Ok(true) => {}
            Ok(false) => return Ok(Step::Keep),
            Err(_) => return Ok(Step::Close),
        }
    }
    while *at < out.len() {
        match conn.stream.write(&out[*at..]) {
            Ok(0) => return Ok(Step::Close),
            Ok(n) => *at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Step::Keep),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Ok(Step::Close),
        }
    }
    if *close {
        return Ok(Step::Close);
    }
    conn.phase = Phase::Head {
        since: Some(Instant::now()),
    };
    Ok(Step::Keep)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}

fn response(status: u16, body: &str, close: bool) -> Vec<u8> {
    let mut extra = String::new();
    if status == 503 {
        extra.push_str("Retry-After: 1\r\n");
    }
    if status == 401 {
        extra.push_str("WWW-Authenticate: Bearer\r\n");
    }
    if close {
        extra.push_str("Connection: close\r\n");
    }
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        reason(status),
        body.len()
    )
    .into_bytes()
}

fn answer(conn: &mut Conn, status: u16, body: &str, close: bool) {
    conn.phase = Phase::Answer {
        out: response(status, body, close),
        at: 0,
        close,
    };
}

/// Answers a request it refuses, dropping the request's bytes (all that was read when it
/// closes the connection after).
fn refuse(
    conn: &mut Conn,
    report: &mut IngestReport,
    status: u16,
    why: &str,
    consumed: Option<usize>,
) {
    count(report, status);
    let body = format!("{{\"error\":{}}}", json_string(why));
    match consumed {
        Some(n) => {
            conn.buf.drain(..n.min(conn.buf.len()));
            answer(conn, status, &body, false);
        }
        None => {
            conn.buf.clear();
            answer(conn, status, &body, true);
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Constant-time comparison: the time taken says nothing about how much of the token matched.
pub(super) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The body's shape, cheaply: JSON text (an object, an array, NDJSON objects) or a gzip stream.
pub(super) fn shape_error(body: &[u8], gzip: bool) -> Option<&'static str> {
    if gzip {
        return (!body.starts_with(&[0x1f, 0x8b]))
            .then_some("Content-Encoding: gzip, but the body is not a gzip stream");
    }
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Some("the body is empty: send a JSON object, a JSON array or NDJSON");
    };
    if *first != b'{' && *first != b'[' {
        return Some("the body is not JSON: send a JSON object, a JSON array or NDJSON (one object per line)");
    }
    // SIMD validation: std's took a tenth of a receive run, all of it on the event loop.
    if simdutf8::basic::from_utf8(body).is_err() {
        return Some("the body is not UTF-8 text");
    }
    None
}

/// Frames the request at the head of `conn.buf`, and admits or refuses it once complete.
#[allow(clippy::too_many_arguments)]
fn admit(
    conn: &mut Conn,
    opts: &ListenOptions,
    cfg: &FetchConfig,
    chans: &IngestChannels,
    to: Admission<'_>,
    report: &mut IngestReport,
    now: Instant,
) {
    let Admission {
        batch,
        next_seq,
        wal,
    } = to;
    if let Phase::Head { .. } = conn.phase {
        if conn.buf.is_empty() {
            return;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(&conn.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if conn.buf.len() <= MAX_HEAD => return,
            Ok(httparse::Status::Partial) => {
                return refuse(conn, report, 431, "request headers too large", None)
            }
            Err(e) => {
                return refuse(
                    conn,
                    report,
                    400,
                    &format!("not an HTTP/1.1 request: {e}"),
                    None,
                )
            }
        };
        let (method, path) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let chunked = header("transfer-encoding").is_some_and(|v| {
            std::str::from_utf8(v).is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
        let length = match header("content-length").map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        }) {
            Some(Some(n)) => Some(n),
            Some(None) => return refuse(conn, report, 400, "bad Content-Length", None),
            None => None,
        };
        let gzip = match header("content-encoding") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case(b"gzip") => true,
            Some(v) if v.eq_ignore_ascii_case(b"identity") => false,
            Some(_) => {
                return refuse(
                    conn,
                    report,
                    400,
                    "unsupported Content-Encoding: send gzip or none",
                    None,
                )
            }
        };
        let path_only = path.split('?').next().unwrap_or(path);
        if path_only != "/ingest" {
            return refuse(
                conn,
                report,
                404,
                "not found: records go to POST /ingest",
                None,
            );
        }
        if method != "POST" {
            return refuse(conn, report, 405, "method not allowed: POST /ingest", None);
        }
        if let Some(token) = &opts.token {
            let given = header("authorization")
                .and_then(|v| v.strip_prefix(b"Bearer ".as_slice()))
                .unwrap_or(b"");
            if !same_secret(given, token.as_bytes()) {
                return refuse(conn, report, 401, "missing or wrong bearer token", None);
            }
        }
        let body = if chunked {
            BodyFraming::Chunked {
                decoded: Vec::new(),
                pos: head,
            }
        } else {
            match length {
                Some(n) if n > opts.max_body_bytes => {
                    return refuse(
                        conn,
                        report,
                        413,
                        &format!(
                            "the body is over listen.max_body_bytes ({} bytes)",
                            opts.max_body_bytes
                        ),
                        None,
                    )
                }
                Some(n) => BodyFraming::Length(n),
                None => {
                    return refuse(
                        conn,
                        report,
                        411,
                        "Content-Length or chunked transfer encoding required",
                        None,
                    )
                }
            }
        };
        conn.phase = Phase::Body {
            head,
            body,
            until: now + opts.body_timeout,
            gzip,
            held: None,
        };
    }
    let Phase::Body {
        head, body, gzip, ..
    } = &mut conn.phase
    else {
        return;
    };
    let (head, gzip) = (*head, *gzip);
    // Whole yet?
    let (range_end, owned): (usize, Option<Vec<u8>>) = match body {
        BodyFraming::Length(n) => {
            if conn.buf.len() < head + *n {
                return;
            }
            (head + *n, None)
        }
        BodyFraming::Chunked { decoded, pos } => loop {
            let rest = &conn.buf[*pos..];
            match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete((at, 0))) => {
                    // The last chunk, then trailers up to an empty line.
                    let after = *pos + at;
                    match conn.buf[after..].windows(2).position(|w| w == b"\r\n") {
                        Some(0) => break (after + 2, Some(std::mem::take(decoded))),
                        Some(_) => {
                            match conn.buf[after..].windows(4).position(|w| w == b"\r\n\r\n") {
                                Some(i) => break (after + i + 4, Some(std::mem::take(decoded))),
                                None => return,
                            }
                        }
                        None => return,
                    }
                }
                Ok(httparse::Status::Complete((at, size))) => {
                    let size = size as usize;
                    if decoded.len() + size > opts.max_body_bytes {
                        let max = opts.max_body_bytes;
                        return refuse(
                            conn,
                            report,
                            413,
                            &format!("the body is over listen.max_body_bytes ({max} bytes)"),
                            None,
                        );
                    }
                    if rest.len() < at + size + 2 {
                        return;
                    }
                    decoded.extend_from_slice(&rest[at..at + size]);
                    *pos += at + size + 2;
                }
                Ok(httparse::Status::Partial) => return,
                Err(_) => return refuse(conn, report, 400, "bad chunked encoding", None),
            }
        },
    };
    let close_after = {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let _ = req.parse(&conn.buf[..head]);
        req.version == Some(0)
            || req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            })
    };
    let body_bytes: &[u8] = match &owned {
        Some(v) => v,
        None => &conn.buf[head..range_end],
    };
    // Room in the batch in hand? When it is full it goes to the parse queue now; when that
    // is full too, the pipeline pushes back: the request waits, whole, for room.
    let full = |b: &BodyBatch| {
        !b.is_empty()
            && (b.len() >= cfg.batch_max_items
                || b.arena.len() + body_bytes.len() > cfg.batch_max_bytes)
    };
    if batch.as_ref().is_some_and(full) {
        match chans.out.try_send(batch.take().expect("checked")) {
            Ok(()) => {}
            // Disconnected: the loop's own send finds it and ends the run.
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                *batch = Some(b);
                if let (Some(decoded), Phase::Body { body, held, .. }) = (owned, &mut conn.phase) {
                    // The chunks decoded so far stay with the request.
                    if let BodyFraming::Chunked { decoded: d, .. } = body {
                        *d = decoded;
                    }
                    held.get_or_insert(now);
                } else if let Phase::Body { held, .. } = &mut conn.phase {
                    held.get_or_insert(now);
                }
                return;
            }
        }
    }
    // Looked at once there is room: a request held for room is not validated again at every
    // turn of the loop.
    if let Some(why) = shape_error(body_bytes, gzip) {
        // Kept alive only when the client did not ask to close.
        let consumed = (!close_after).then_some(range_end);
        return refuse(conn, report, 400, why, consumed);
    }
    // Durable in the log before it is in the batch: a body is never in a batch the log lacks.
    let seq = *next_seq;
    let wal_end = match wal.map(|w| w.append(seq, gzip, body_bytes)) {
        None => None,
        Some(Ok(end)) => Some(end),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "receive: a request is refused");
            let consumed = (!close_after).then_some(range_end);
            return refuse(
                conn,
                report,
                503,
                "the request could not be logged durably: retry later",
                consumed,
            );
        }
    };
    let b = batch.get_or_insert_with(|| fresh_batch(chans, cfg));
    let encoding = if gzip {
        ContentEncoding::Gzip
    } else {
        ContentEncoding::Identity
    };
    b.push_encoded_body("listen", body_bytes, encoding, 1, now);
    *next_seq += 1;
    b.set_seq(seq);
    report.stats.requests += 1;
    report.stats.delivered += 1;
    conn.buf.drain(..range_end);
    conn.phase = Phase::Acking {
        seq,
        wal_end,
        admitted: now,
        until: now + opts.ack_timeout,
        close: close_after,
    };
}

/// Where [`admit`] puts an admitted request.
struct Admission<'a> {
    /// The batch in hand.
    batch: &'a mut Option<BodyBatch>,
    /// The next work item's number.
    next_seq: &'a mut u64,
    /// The write-ahead log, when on.
    wal: Option<&'a mut Wal>,
}

/// An empty batch for the next bodies: a recycled one when there is one.
fn fresh_batch(chans: &IngestChannels, cfg: &FetchConfig) -> BodyBatch {
    let mut b = chans.recycled.try_recv().unwrap_or_default();
    b.shrink_arena(2 * cfg.batch_max_bytes);
    b.ticket = Some(chans.live.ticket());
    b
}

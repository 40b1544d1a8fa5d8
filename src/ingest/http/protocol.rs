//! HTTP/1.1 on the client side: encoding GET requests and decoding responses incrementally.
//!
//! Framing is done by `httparse` (status line, headers, chunk-size lines); this module only
//! drives it as bytes arrive, in any split, and applies the body-length rules of RFC 9112 §6:
//! no body for 1xx/204/304, `Transfer-Encoding: chunked` over `Content-Length`, and otherwise a
//! body that ends when the server closes the connection.

use std::fmt;

/// Largest response head accepted; more is treated as a broken server.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;

/// Appends a keep-alive `GET` request for `path` on `host:port` to `out`.
///
/// `accept_encoding` is sent as `Accept-Encoding` when not empty; `extra` holds more header
/// lines, each ending in CRLF (see [`crate::config::resolve_headers`]).
pub fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    port: u16,
    default_port: u16,
    path: &str,
    accept_encoding: &str,
    extra: &str,
) {
    use std::io::Write;
    let bracket = host.contains(':');
    let (l, r) = if bracket { ("[", "]") } else { ("", "") };
    // Writing to a Vec cannot fail.
    let _ = if port == default_port {
        write!(out, "GET {path} HTTP/1.1\r\nHost: {l}{host}{r}\r\n")
    } else {
        write!(out, "GET {path} HTTP/1.1\r\nHost: {l}{host}{r}:{port}\r\n")
    };
    if !accept_encoding.is_empty() {
        let _ = write!(out, "Accept-Encoding: {accept_encoding}\r\n");
    }
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(
        concat!(
            "User-Agent: pinflow/",
            env!("CARGO_PKG_VERSION"),
            "\r\nAccept: application/json, application/x-ndjson\r\nConnection: keep-alive\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// Why a response could not be decoded. The connection is not reusable after any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The bytes are not HTTP/1.x.
    Malformed(String),
    /// The body is larger than the configured limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The server closed the connection before the response was complete.
    Truncated,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed(why) => write!(f, "malformed HTTP response: {why}"),
            HttpError::TooLarge { limit } => write!(f, "response body larger than {limit} bytes"),
            HttpError::Truncated => write!(f, "connection closed before the response was complete"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(usize),
    ChunkSize,
    ChunkData(usize),
    ChunkDataEnd,
    Trailers,
    UntilClose,
    Done,
}

/// Decodes one response at a time from a byte stream; [`reset`](Self::reset) before the next.
#[derive(Debug)]
pub struct ResponseDecoder {
    state: State,
    status: u16,
    keep_alive: bool,
    max_body: usize,
    seen_bytes: bool,
    retry_after: Option<std::time::Duration>,
    encoding: Result<crate::batch::ContentEncoding, String>,
    location: Option<String>,
    link_next: Option<String>,
}

impl ResponseDecoder {
    /// A decoder that rejects bodies over `max_body` bytes.
    pub fn new(max_body: usize) -> ResponseDecoder {
        ResponseDecoder {
            state: State::Head,
            status: 0,
            keep_alive: true,
            max_body,
            seen_bytes: false,
            retry_after: None,
            encoding: Ok(crate::batch::ContentEncoding::Identity),
            location: None,
            link_next: None,
        }
    }

    /// Prepares for the next response on the same connection.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.status = 0;
        self.keep_alive = true;
        self.seen_bytes = false;
        self.retry_after = None;
        self.encoding = Ok(crate::batch::ContentEncoding::Identity);
        self.location = None;
        self.link_next = None;
    }

    /// The target of the response's `Link: <...>; rel="next"` (RFC 8288), if any.
    pub fn link_next(&self) -> Option<&str> {
        self.link_next.as_deref()
    }

    /// The response's `Location` header, for redirects.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The body's `Content-Encoding`, or the name of one pinflow cannot decode.
    pub fn content_encoding(&self) -> Result<crate::batch::ContentEncoding, String> {
        self.encoding.clone()
    }

    /// The response's `Retry-After` (RFC 9110 §10.2.3), as a delay from now: delta-seconds or
    /// an HTTP-date (a date in the past means now). `None` when absent or unreadable.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// The status code, once the head is parsed (0 before).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the connection may carry another request after this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive && self.state != State::UntilClose
    }

    /// Whether any byte of this response has arrived: a keep-alive connection closed before
    /// that is a stale connection, and the request may safely be sent again.
    pub fn started(&self) -> bool {
        self.seen_bytes
    }

    /// Whether the whole response has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds `input`; body bytes are appended to `body`. Returns how many bytes of `input` were
    /// consumed; stops at the end of the response (see [`is_done`](Self::is_done)), leaving any
    /// following bytes unconsumed.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, HttpError> {
        let mut pos = 0;
        if !input.is_empty() {
            self.seen_bytes = true;
        }
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok(pos),
                State::Head => match self.parse_head(rest)? {
                    Some(n) => pos += n,
                    None => return Ok(pos),
                },
                State::Length(0) => self.state = State::Done,
                State::Length(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let n = left.min(rest.len());
                    body.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.state = State::Length(left - n);
                }
                State::UntilClose => {
                    self.append_limited(body, rest)?;
                    return Ok(input.len());
                }
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        pos += n;
                        self.state = State::Trailers;
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        pos += n;
                        let size = usize::try_from(size).unwrap_or(usize::MAX);
                        if body.len().saturating_add(size) > self.max_body {
                            return Err(HttpError::TooLarge {
                                limit: self.max_body,
                            });
                        }
                        self.state = State::ChunkData(size);
                    }
                    Ok(httparse::Status::Partial) => {
                        if rest.len() > 1024 {
                            return Err(HttpError::Malformed("chunk-size line too long".into()));
                        }
                        return Ok(pos);
                    }
                    Err(_) => return Err(HttpError::Malformed("invalid chunk-size line".into())),
                },
                State::ChunkData(0) => self.state = State::ChunkDataEnd,
                State::ChunkData(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let n = left.min(rest.len());
                    body.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.state = State::ChunkData(left - n);
                }
                State::ChunkDataEnd => {
                    if rest.len() < 2 {
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::Malformed(
                            "chunk data not followed by CRLF".into(),
                        ));
                    }
                    pos += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    // Trailer fields are skipped line by line; an empty line ends the message.
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > MAX_HEAD {
                            return Err(HttpError::Malformed("trailer section too large".into()));
                        }
                        return Ok(pos);
                    };
                    pos += eol + 2;
                    if eol == 0 {
                        self.state = State::Done;
                    }
                }
            }
        }
    }

    /// Tells the decoder the server closed the connection. A body delimited by the close is
    /// complete; anything else is truncated.
    pub fn eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::UntilClose => {
                self.state = State::Done;
                self.keep_alive = false;
                Ok(())
            }
            State::Done => Ok(()),
            _ => Err(HttpError::Truncated),
        }
    }

    fn append_limited(&self, body: &mut Vec<u8>, bytes: &[u8]) -> Result<(), HttpError> {
        if body.len() + bytes.len() > self.max_body {
            return Err(HttpError::TooLarge {
                limit: self.max_body,
            });
        }
        body.extend_from_slice(bytes);
        Ok(())
    }

    /// Parses the head if complete; returns the bytes it took.
    fn parse_head(&mut self, input: &[u8]) -> Result<Option<usize>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if input.len() > MAX_HEAD {
                    return Err(HttpError::Malformed(
                        "response head larger than 64 KiB".into(),
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) {
            // An interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(Some(n));
        }
        self.status = status;
        let mut keep_alive = resp.version == Some(1);
        let mut length: Option<usize> = None;
        let mut chunked = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or_else(|| HttpError::Malformed("invalid Content-Length".into()))?;
                if length.is_some_and(|l| l != v) {
                    return Err(HttpError::Malformed(
                        "conflicting Content-Length headers".into(),
                    ));
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let v = String::from_utf8_lossy(h.value);
                chunked = v
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("content-encoding") {
                self.encoding =
                    crate::batch::ContentEncoding::from_header(&String::from_utf8_lossy(h.value));
            } else if h.name.eq_ignore_ascii_case("link") {
                if let Some(next) = link_next(&String::from_utf8_lossy(h.value)) {
                    self.link_next = Some(next);
                }
            } else if h.name.eq_ignore_ascii_case("location") {
                self.location = Some(String::from_utf8_lossy(h.value).trim().to_string());
            } else if h.name.eq_ignore_ascii_case("retry-after") {
                self.retry_after = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(parse_retry_after);
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value);
                for token in v.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        self.keep_alive = keep_alive;
        self.state = if status == 204 || status == 304 {
            State::Done
        } else if chunked {
            State::ChunkSize
        } else if let Some(len) = length {
            if len > self.max_body {
                return Err(HttpError::TooLarge {
                    limit: self.max_body,
                });
            }
            State::Length(len)
        } else {
            State::UntilClose
        };
        Ok(Some(n))
    }
}

/// The `rel="next"` target of a `Link` header value (RFC 8288): `<url>; rel="next"`, among
/// comma-separated links, with `rel` possibly listing several relation types.
pub fn link_next(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| close + i);
        let params = &rest[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = &rest[params_end..];
    }
    None
}

/// `Retry-After` as a delay: delta-seconds (`120`) or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) relative to the system clock.
pub fn parse_retry_after(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = crate::time::parse_http_date(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(std::time::Duration::from_secs(
        at.saturating_sub(now).max(0) as u64,
    ))
}

/// The property the `response_decoder` fuzz target checks, and `tests/it/fuzz_corpora.rs`
/// replays on stable: whatever bytes a server sends, in whatever pieces (the first byte of
/// `data` chooses the read size), the decoder does not panic, hands out no more body than its
/// limit, and never consumes more input than it was given. Panics when the property fails.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let limit = 4096;
    let mut d = ResponseDecoder::new(limit);
    let mut body = Vec::new();
    let mut buf = Vec::new();
    for piece in bytes.chunks(step) {
        buf.extend_from_slice(piece);
        match d.decode(&buf, &mut body) {
            Ok(n) => {
                assert!(n <= buf.len(), "consumed {n} of {} bytes", buf.len());
                buf.drain(..n);
            }
            Err(_) => return,
        }
        assert!(
            body.len() <= limit,
            "{} body bytes over a limit of {limit}",
            body.len()
        );
        if d.is_done() {
            // Keep-alive: the next response starts with what is left.
            d.reset();
            body.clear();
        }
    }
    let _ = d.eof();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_next_is_found_among_links() {
        assert_eq!(
            link_next(r#"<https://a/p?page=1>; rel="prev", </p?page=3>; rel="next""#).as_deref(),
            Some("/p?page=3")
        );
        assert_eq!(link_next(r#"<x>; rel="next last""#).as_deref(), Some("x"));
        assert_eq!(link_next(r#"<x>; rel=next"#).as_deref(), Some("x"));
        assert_eq!(link_next(r#"<x>; rel="prev""#), None);
        assert_eq!(link_next("garbage"), None);
    }

    #[test]
    fn retry_after_in_both_forms() {
        use std::time::Duration;
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(3600);
        let secs = later
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let date = crate::time::format_http_date(secs);
        let d = parse_retry_after(&date).unwrap();
        assert!(
            d > Duration::from_secs(3500) && d <= Duration::from_secs(3600),
            "{date}: {d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        let raw = b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n";
        let mut d = ResponseDecoder::new(100);
        let mut body = Vec::new();
        d.decode(raw, &mut body).unwrap();
        assert_eq!(
            (d.status(), d.retry_after()),
            (429, Some(Duration::from_secs(3)))
        );
        d.reset();
        assert_eq!(d.retry_after(), None);
    }

    /// Feeds `bytes` in pieces of `step` and returns (status, body, leftover).
    fn decode_in_steps(
        bytes: &[u8],
        step: usize,
        max: usize,
    ) -> Result<(u16, Vec<u8>, Vec<u8>), HttpError> {
        let mut d = ResponseDecoder::new(max);
        let mut body = Vec::new();
        let mut buf = Vec::new();
        let mut fed = 0;
        while !d.is_done() {
            if fed == bytes.len() {
                d.eof()?;
                break;
            }
            let end = (fed + step).min(bytes.len());
            buf.extend_from_slice(&bytes[fed..end]);
            fed = end;
            let n = d.decode(&buf, &mut body)?;
            buf.drain(..n);
        }
        buf.extend_from_slice(&bytes[fed..]);
        Ok((d.status(), body, buf))
    }

    /// Property: any well-formed response, Content-Length or chunked with random chunk sizes,
    /// fed in random pieces, decodes to exactly its body and leaves the next bytes untouched.
    #[test]
    fn random_valid_responses_in_random_pieces_decode_exactly() {
        let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15); // replayable
        for case in 0..2000 {
            let len = rng.usize(..3000);
            let body: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let mut raw = b"HTTP/1.1 200 OK\r\nX-Case: 1\r\n".to_vec();
            if case % 2 == 0 {
                raw.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
                raw.extend_from_slice(&body);
            } else {
                raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                while !rest.is_empty() {
                    let n = 1 + rng.usize(..rest.len().min(700));
                    raw.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    raw.extend_from_slice(&rest[..n]);
                    raw.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                raw.extend_from_slice(b"0\r\n\r\n");
            }
            raw.extend_from_slice(b"HTTP/1.1");
            let step = 1 + rng.usize(..64);
            let (status, got, rest) = decode_in_steps(&raw, step, 1 << 20).unwrap();
            assert_eq!((status, got.len()), (200, body.len()), "case {case}");
            assert_eq!(got, body, "case {case}");
            assert_eq!(rest, b"HTTP/1.1", "case {case}");
        }
    }

    /// Property: arbitrary bytes, and valid responses with bytes flipped or cut, never panic
    /// the decoder; it answers with a body, a need for more input, or an error. What it
    /// answers is consistent: a body is never larger than the input or the limit, what is left
    /// over is the input's tail, and an untouched response still decodes to its body.
    #[test]
    fn random_garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(42);
        let seeds: [&[u8]; 2] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ];
        let (mut decoded, mut refused, mut intact) = (0, 0, 0);
        for case in 0..20_000 {
            let mut raw: Vec<u8> = if case % 3 == 0 {
                (0..rng.usize(..200)).map(|_| rng.u8(..)).collect()
            } else {
                seeds[case % 2].to_vec()
            };
            for _ in 0..rng.usize(..4) {
                if !raw.is_empty() {
                    let i = rng.usize(..raw.len());
                    raw[i] = rng.u8(..);
                }
            }
            raw.truncate(rng.usize(..raw.len() + 1));
            let step = 1 + rng.usize(..16);
            match decode_in_steps(&raw, step, 4096) {
                Ok((status, body, rest)) => {
                    decoded += 1;
                    assert!((100..1000).contains(&status), "case {case}: {status}");
                    assert!(body.len() <= raw.len().min(4096), "case {case}");
                    assert!(raw.ends_with(&rest), "case {case}: leftover not a tail");
                    if seeds.contains(&raw.as_slice()) {
                        intact += 1;
                        assert_eq!(
                            (status, &body[..], &rest[..]),
                            (200, &b"hello"[..], &[][..])
                        );
                    }
                }
                Err(_) => refused += 1,
            }
        }
        // The cases reach both outcomes, and some seeds went through untouched.
        assert!(
            decoded > 0 && refused > 0 && intact > 0,
            "{decoded} {refused} {intact}"
        );
    }

    const CL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT";
    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";

    #[test]
    fn content_length_and_chunked_in_every_split() {
        for step in 1..CHUNKED.len() {
            for input in [CL, CHUNKED] {
                let (status, body, rest) = decode_in_steps(input, step, 1 << 20).unwrap();
                assert_eq!(
                    (status, body.as_slice(), rest.as_slice()),
                    (200, &b"hello"[..], &b"NEXT"[..]),
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn body_until_close_and_truncation() {
        let (s, b, _) = decode_in_steps(b"HTTP/1.0 200 OK\r\n\r\nabc", 4, 100).unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abc"[..]));
        let e = decode_in_steps(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 4, 100)
            .unwrap_err();
        assert_eq!(e, HttpError::Truncated);
    }

    #[test]
    fn interim_and_bodyless_statuses() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (s, b, rest) = decode_in_steps(input, 7, 100).unwrap();
        assert_eq!((s, b.len(), rest.len()), (204, 0, 0));
    }

    #[test]
    fn limits_and_garbage() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        assert_eq!(
            decode_in_steps(big, 100, 999).unwrap_err(),
            HttpError::TooLarge { limit: 999 }
        );
        let chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n10\r\n";
        assert_eq!(
            decode_in_steps(chunk, 100, 20).unwrap_err(),
            HttpError::TooLarge { limit: 20 }
        );
        assert!(matches!(
            decode_in_steps(b"SSH-2.0-OpenSSH\r\n\r\n", 100, 10),
            Err(HttpError::Malformed(_))
        ));
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            decode_in_steps(bad_chunk, 100, 10),
            Err(HttpError::Malformed(_))
        ));
        let conflict = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            decode_in_steps(conflict, 100, 10),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn connection_close_is_honoured() {
        let mut d = ResponseDecoder::new(100);
        let mut body = Vec::new();
        d.decode(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            &mut body,
        )
        .unwrap();
        assert!(d.is_done() && !d.keep_alive());
        d.reset();
        assert!(!d.started());
        d.decode(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            &mut body,
        )
        .unwrap();
        assert!(d.is_done() && d.keep_alive());
    }

    #[test]
    fn requests_name_host_and_port() {
        let mut out = Vec::new();
        write_request(&mut out, "::1", 8080, 80, "/a?b", "", "");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("GET /a?b HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }
}

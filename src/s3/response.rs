//! What a store's answer means: the body and ETag of a success, or a [`Failed`] that says
//! whether a retry may help, with the store's error code and message.

use std::time::{Duration, Instant};

/// One request's failure: whether a retry may succeed, and what to say.
pub(crate) struct Failed {
    /// Whether a retry may succeed (5xx, 408, 429, a dropped connection, a timeout).
    pub(crate) transient: bool,
    /// The HTTP status, when the store answered.
    pub(crate) status: Option<u16>,
    /// What went wrong, in words (the store's code and message when it answered).
    pub(crate) why: String,
}

/// One request's outcome.
pub(crate) type Attempt<T> = std::result::Result<T, Failed>;

/// A failure a retry may fix.
pub(crate) fn transient(why: impl Into<String>) -> Failed {
    Failed {
        transient: true,
        status: None,
        why: why.into(),
    }
}

/// A failure no retry can fix.
pub(crate) fn permanent(why: impl Into<String>) -> Failed {
    Failed {
        transient: false,
        status: None,
        why: why.into(),
    }
}

/// Between half and all of `d`: retries of many uploaders do not fall in step.
pub(crate) fn jitter(d: Duration) -> Duration {
    let nanos = Instant::now().elapsed().as_nanos() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos() as u64);
    let frac = 0.5 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(frac)
}

/// A response's ETag and body when it succeeded; otherwise whether a retry may help.
pub(crate) fn check(
    resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Attempt<(Option<String>, String)> {
    let mut resp = match resp {
        Ok(r) => r,
        // Connection refused or dropped, timeouts: the store may be back soon.
        Err(e) => return Err(transient(e.to_string())),
    };
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| transient(format!("reading the response: {e}")))?;
    if (200..300).contains(&status) {
        return Ok((etag, body));
    }
    Err(Failed {
        // 5xx (SlowDown is a 503), 408 and 429 may pass later; 403, 404 and the rest cannot.
        transient: status >= 500 || status == 408 || status == 429,
        status: Some(status),
        why: format!("HTTP {status}: {}", error_text(&body)),
    })
}
/// Runs `f` until it succeeds, fails for good, or has failed `attempts` times, waiting a
/// jittered, doubling backoff (100 ms, up to 10 s) between attempts. The failure that ends it
/// names `what` and the attempts made.
pub(crate) fn retried<T>(
    attempts: u32,
    what: &str,
    mut f: impl FnMut() -> Attempt<T>,
) -> Attempt<T> {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.transient && attempt < attempts => {
                tracing::warn!(request = what, attempt, error = %e.why, "retrying");
                std::thread::sleep(jitter(backoff));
                backoff = (backoff * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => {
                return Err(Failed {
                    why: format!("{what}: {} (after {attempt} attempts)", e.why),
                    ..e
                })
            }
        }
    }
}

/// The text of the first `<t>…</t>` in `xml`.
pub(crate) fn tag(xml: &str, t: &str) -> Option<String> {
    let open = format!("<{t}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find("</")?;
    Some(xml[start..start + end].to_string())
}

/// XML's five escapes undone (keys may hold `&`).
pub(crate) fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `Code` and `Message` of an S3 error document, or its start.
pub(crate) fn error_text(body: &str) -> String {
    match (tag(body, "Code"), tag(body, "Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.chars().take(200).collect(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_document_reads_as_code_and_message() {
        let body = "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>";
        assert_eq!(error_text(body), "SlowDown: Reduce your rate");
    }
}

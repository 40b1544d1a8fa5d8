//! Which credentials a request may carry: the configured headers (`fetch.headers`, where
//! tokens live) and the `Authorization: Basic` of its URL's `user:password@` go to the origin
//! (scheme, host and port) of the work item's own URL only. A redirect or a next page that
//! leads elsewhere (another host or port, or `http://` after `https://`) is sent without them,
//! as curl does: a server must not be able to collect a token by pointing pinflow at its
//! own address, and a token must never travel in clear text because a redirect said so.
//!
//! A host of the [`Pool`](super::pool::Pool) is exactly an origin, so "same origin" is "same
//! host index". pinflow has no per-host header rules, so nothing overrides this.

use std::borrow::Cow;

use super::schedule::Request;

/// The configured request headers, resolved (CRLF-terminated lines), with and without the
/// `Authorization` line a URL's own credentials replace.
pub(super) struct Headers {
    all: String,
    without_authorization: String,
}

impl Headers {
    pub(super) fn new(all: String) -> Headers {
        let without_authorization = all
            .split_inclusive("\r\n")
            .filter(|line| !is_authorization(line))
            .collect();
        Headers {
            all,
            without_authorization,
        }
    }
}

/// Whether a header line is `Authorization: ...`.
pub(crate) fn is_authorization(line: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
}

impl Request {
    /// The header lines this request carries besides pinflow's own: on its work item's origin,
    /// the configured headers, with the URL's `Authorization: Basic` in place of a configured
    /// `Authorization` when the URL has `user:password@`; anywhere else, none.
    pub(super) fn headers<'a>(&'a self, configured: &'a Headers) -> Cow<'a, str> {
        if self.host != self.origin {
            return Cow::Borrowed("");
        }
        match &self.auth {
            None => Cow::Borrowed(&configured.all),
            Some(auth) => Cow::Owned(format!("{}{auth}", configured.without_authorization)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_line_is_found_whatever_its_case() {
        let h = Headers::new("X-A: 1\r\nauthorization: Bearer t\r\nX-B: 2\r\n".into());
        assert_eq!(h.without_authorization, "X-A: 1\r\nX-B: 2\r\n");
        assert!(is_authorization("AUTHORIZATION : x"));
        assert!(!is_authorization("X-Authorization-Hint: x"));
    }
}

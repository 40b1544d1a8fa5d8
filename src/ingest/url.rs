//! URL text that needs care: credentials (`user:password@`) kept out of everything pinflow
//! shows, and references (`Location`, `Link`) resolved per RFC 3986 and made safe for a request
//! line.
//!
//! Redaction works on any text, so a message that quotes a URL (a redirect target, an invalid
//! source line) can be shown as it is after [`redact`].

use std::borrow::Cow;

#[cfg(feature = "http")]
use crate::ingest::source::{HttpUrl, UrlParts};

/// `text` with the password of every `scheme://user:password@` in it replaced by `***` (and a
/// user name alone, which may itself be a token, by `***`): `http://user:***@host/`. Text
/// without credentials comes back borrowed.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    // Up to where `text` has been copied to `out`.
    let mut copied = 0;
    let mut from = 0;
    while let Some(rel) = text[from..].find("://") {
        let start = from + rel + 3;
        let rest = &text[start..];
        // The authority ends at the path, query or fragment, or at whatever cannot be in a
        // URL quoted in a message (a space, a quote or a backtick).
        let end = rest
            .find(|c: char| "/?#`'\" <>".contains(c) || c.is_whitespace())
            .unwrap_or(rest.len());
        from = start + end;
        let Some(at) = rest[..end].rfind('@') else {
            continue;
        };
        let shown = match rest[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => "***".to_string(),
        };
        out.push_str(&text[copied..start]);
        out.push_str(&shown);
        copied = start + at;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Splits the credentials off an `http(s)://user:password@host/...` URL: the URL as it may be
/// shown ([`redact`]ed) and the `Authorization: Basic` header line (CRLF-terminated) its user
/// information stands for, user and password percent-decoded as RFC 3986 encodes them. A URL
/// without user information comes back as it is, with no header.
#[cfg(feature = "http")]
pub(crate) fn take_userinfo(url: String) -> (String, Option<String>) {
    let Some(userinfo) = userinfo(&url) else {
        return (url, None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut plain = percent_decode(user);
    plain.push(b':');
    plain.extend_from_slice(&percent_decode(password));
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    let header = format!("Authorization: Basic {encoded}\r\n");
    (redact(&url).into_owned(), Some(header))
}

/// The user information of an `http(s)://` URL (before the last `@` of its authority).
#[cfg(feature = "http")]
fn userinfo(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

/// `%XX` decoded; a `%` not followed by two hex digits stays as it is.
#[cfg(feature = "http")]
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Makes a reference taken from a response header safe to resolve and send: spaces, non-ASCII
/// characters and the few ASCII characters RFC 3986 does not allow anywhere in a URI are
/// percent-encoded (as UTF-8); a control character (a tab, say) is refused, since no encoding
/// of it can be what the server meant.
pub(crate) fn encode_reference(reference: &str) -> Result<Cow<'_, str>, String> {
    use std::fmt::Write as _;
    // Every request's path comes through here: one byte scan, no allocation, in the common
    // case of nothing to refuse or encode.
    let bytes = reference.as_bytes();
    let flagged = |b: &u8| b.is_ascii_control() || needs_encoding(*b);
    let Some(first) = bytes.iter().position(flagged) else {
        return Ok(Cow::Borrowed(reference));
    };
    // Control characters are ASCII: a byte scan finds them without decoding UTF-8.
    if let Some(b) = bytes[first..].iter().find(|b| b.is_ascii_control()) {
        return Err(format!("it contains a control character (U+{b:04X})"));
    }
    let mut out = String::with_capacity(reference.len() + 16);
    // Everything before `first` is ASCII, so `first` is a character boundary.
    out.push_str(&reference[..first]);
    for &b in &bytes[first..] {
        if needs_encoding(b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    Ok(Cow::Owned(out))
}

/// Non-ASCII bytes, and the ASCII characters RFC 3986 allows nowhere in a URI.
fn needs_encoding(b: u8) -> bool {
    !b.is_ascii()
        || matches!(
            b,
            b' ' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// Resolves a `Location` or `Link` target against the URL `base` it came in the response to,
/// as RFC 3986 §5.2 says (absolute, network-path `//host/p`, absolute-path or relative, dot
/// segments removed, the fragment dropped), after [`encode_reference`]. A target that is not
/// `http(s)://`, or that carries `user:password@`, is refused with the reason.
#[cfg(feature = "http")]
pub(crate) fn resolve_http(base: &HttpUrl, target: &str) -> Result<HttpUrl, String> {
    let encoded = encode_reference(target)?;
    let resolved = resolve(&base.to_string(), &encoded);
    let parts = UrlParts::split(&resolved)?;
    if parts.userinfo.is_some() {
        return Err("it carries user:password@, which pinflow does not follow".into());
    }
    Ok(parts.into_owned())
}

/// A URI reference's five components (RFC 3986, appendix B): `None` is "undefined", which
/// differs from empty.
#[cfg(feature = "http")]
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

#[cfg(feature = "http")]
impl<'a> Parts<'a> {
    /// `^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?`, without a regex.
    fn split(s: &'a str) -> Parts<'a> {
        let (s, fragment) = match s.split_once('#') {
            Some((a, f)) => (a, Some(f)),
            None => (s, None),
        };
        let (s, query) = match s.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (s, None),
        };
        let (scheme, rest) = match s.find([':', '/']) {
            Some(i) if i > 0 && s.as_bytes()[i] == b':' => (Some(&s[..i]), &s[i + 1..]),
            _ => (None, s),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(r) => {
                let end = r.find('/').unwrap_or(r.len());
                (Some(&r[..end]), &r[end..])
            }
            None => (None, rest),
        };
        Parts {
            scheme,
            authority,
            path,
            query,
            fragment,
        }
    }
}

/// Resolves `reference` against the absolute URI `base` (RFC 3986 §5.2.2, "strict": a
/// reference with a scheme is taken as absolute even when it is the base's), and recomposes
/// the target (§5.3).
#[cfg(feature = "http")]
pub(crate) fn resolve(base: &str, reference: &str) -> String {
    let b = Parts::split(base);
    let r = Parts::split(reference);
    let (scheme, authority, path, query);
    if r.scheme.is_some() {
        scheme = r.scheme;
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        if r.authority.is_some() {
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            if r.path.is_empty() {
                path = b.path.to_string();
                query = r.query.or(b.query);
            } else {
                path = if r.path.starts_with('/') {
                    remove_dot_segments(r.path)
                } else {
                    remove_dot_segments(&merge(&b, r.path))
                };
                query = r.query;
            }
            authority = b.authority;
        }
        scheme = b.scheme;
    }
    let mut out = String::with_capacity(base.len() + reference.len());
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = r.fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// §5.2.3: a relative path appended to the base path's directory.
#[cfg(feature = "http")]
fn merge(base: &Parts<'_>, path: &str) -> String {
    if base.authority.is_some() && base.path.is_empty() {
        return format!("/{path}");
    }
    match base.path.rfind('/') {
        Some(i) => format!("{}{path}", &base.path[..=i]),
        None => path.to_string(),
    }
}

/// §5.2.4: `.` and `..` segments interpreted and removed.
#[cfg(feature = "http")]
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    // Drops the last segment of `out`, and the `/` before it.
    let pop = |out: &mut String| {
        let cut = out.rfind('/').unwrap_or(0);
        out.truncate(cut);
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            // The first segment, with its leading `/`, up to the next `/`.
            let skip = usize::from(input.starts_with('/'));
            let end = input[skip..].find('/').map_or(input.len(), |i| i + skip);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "http")]
    /// RFC 3986 §5.4.1 and §5.4.2: every normal and abnormal example.
    #[test]
    fn references_resolve_as_rfc_3986_section_5_4_says() {
        let base = "http://a/b/c/d;p?q";
        let examples = [
            // 5.4.1 Normal
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y#s"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            // 5.4.2 Abnormal
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g#s/./x"),
            ("g#s/../x", "http://a/b/c/g#s/../x"),
            ("http:g", "http:g"),
        ];
        for (reference, want) in examples {
            assert_eq!(resolve(base, reference), want, "reference `{reference}`");
        }
        // §5.2.3's first case: a base with an authority and an empty path.
        assert_eq!(resolve("http://a?q", "g"), "http://a/g");
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
    }

    #[test]
    fn passwords_are_redacted_wherever_a_url_appears() {
        assert_eq!(redact("http://h/a@b"), "http://h/a@b");
        assert!(matches!(redact("no url here"), Cow::Borrowed(_)));
        assert_eq!(
            redact("http://user:s3cret@h:81/p?q=a@b"),
            "http://user:***@h:81/p?q=a@b"
        );
        assert_eq!(redact("https://t0ken@h/"), "https://***@h/");
        assert_eq!(
            redact("invalid URL `http://u:p@x@h:99999/`: bad port; then ftp://a:b@c"),
            "invalid URL `http://u:***@h:99999/`: bad port; then ftp://a:***@c"
        );
        assert_eq!(redact("http://u:pw@[::1]:8/"), "http://u:***@[::1]:8/");
    }

    #[cfg(feature = "http")]
    #[test]
    fn user_information_becomes_basic_auth_and_leaves_the_url() {
        let (url, header) = take_userinfo("http://Aladdin:open%20sesame@h/x".to_string());
        assert_eq!(url, "http://Aladdin:***@h/x");
        // RFC 7617's example credentials.
        assert_eq!(
            header.as_deref(),
            Some("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n")
        );
        let (url, header) = take_userinfo("http://h/a@b".to_string());
        assert_eq!((url.as_str(), header), ("http://h/a@b", None));
        assert_eq!(percent_decode("a%4"), b"a%4");
        assert_eq!(percent_decode("%41%zz%"), b"A%zz%");
    }

    #[cfg(feature = "http")]
    #[test]
    fn references_are_percent_encoded_or_refused() {
        assert_eq!(
            encode_reference("/a b/ü?x=1 2").unwrap(),
            "/a%20b/%C3%BC?x=1%202"
        );
        assert!(matches!(
            encode_reference("/plain?x=1"),
            Ok(Cow::Borrowed(_))
        ));
        let e = encode_reference("/a\tb").unwrap_err();
        assert!(e.contains("U+0009"), "{e}");
        assert!(encode_reference("/a\u{7f}").is_err());
    }

    /// Property: whatever a server puts in a `Location` or `Link` target, resolving it never
    /// panics, and what it gives is a path that can go into a request line as it is.
    #[cfg(feature = "http")]
    #[test]
    fn random_targets_resolve_to_sendable_paths_or_a_reason() {
        let pieces = [
            "/", ".", "..", "?", "#", ":", "@", "%", " ", "ü", "\t", "a", "//", "h:1", "http:",
            "https://", "[::1]", ";", "=", "&", "|", "\\", "\u{7f}", "\r",
        ];
        let base = HttpUrl::parse("http://127.0.0.1:8080/d/e/f?q=1").unwrap();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..50_000 {
            let n = (next() % 12) as usize;
            let target: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            if let Ok(u) = resolve_http(&base, &target) {
                assert!(u.path.starts_with('/'), "`{target}` -> {u}");
                assert!(
                    u.path.bytes().all(|b| b.is_ascii_graphic()),
                    "`{target}` -> `{}`",
                    u.path
                );
                assert!(!u.host.is_empty(), "`{target}` -> {u}");
            }
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn http_targets_resolve_to_their_host_and_an_encoded_path() {
        let base = HttpUrl::parse("http://127.0.0.1:8080/dir/page?x=1").unwrap();
        let got = |t: &str| resolve_http(&base, t).map(|u| u.to_string());
        assert_eq!(got("//10.0.0.1:81/p").unwrap(), "http://10.0.0.1:81/p");
        assert_eq!(
            got("../a b/ü?x=1 2#frag").unwrap(),
            "http://127.0.0.1:8080/a%20b/%C3%BC?x=1%202"
        );
        assert_eq!(got("").unwrap(), "http://127.0.0.1:8080/dir/page?x=1");
        assert_eq!(got("?y").unwrap(), "http://127.0.0.1:8080/dir/page?y");
        assert!(got("ftp://h/").unwrap_err().contains("http"));
        assert!(got("http://u:p@h/").unwrap_err().contains("user:password@"));
        assert!(got("/a\tb").unwrap_err().contains("control character"));
    }
}

//! Extra request headers: their shape, and `${env:VAR}` / `${file:PATH}` in their values.

use crate::error::{Error, Result};

/// Checks the shape of a `Name: value` header (the value's `${...}` are resolved later).
pub(super) fn check_header(h: &str) -> std::result::Result<(), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("`{h}` is not \"Name: value\""))?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!(
            "the value of header `{name}` contains a line break"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["host", "content-length", "transfer-encoding", "connection"].contains(&lower.as_str()) {
        return Err(format!("header `{name}` is set by pinflow itself"));
    }
    Ok(())
}

/// Resolves `${env:VAR}` and `${file:PATH}` in configured headers into request header lines
/// (`Name: value\r\n` each). Errors name the header and what could not be read.
pub fn resolve_headers(headers: &[String], env: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    for h in headers {
        check_header(h).map_err(|e| Error::config("fetch.headers", e))?;
        let (name, value) = h.split_once(':').expect("checked");
        let mut v = value.trim().to_string();
        // Scan on after each substitution: text read from a file is never expanded again.
        let mut from = 0;
        while let Some(rel) = v[from..].find("${") {
            let start = from + rel;
            let end = v[start..].find('}').map(|e| start + e).ok_or_else(|| {
                Error::config("fetch.headers", format!("header `{name}`: unclosed `${{`"))
            })?;
            let what = &v[start + 2..end];
            let text = if let Some(var) = what.strip_prefix("env:") {
                env(var).ok_or_else(|| {
                    Error::config(
                        "fetch.headers",
                        format!("header `{name}`: environment variable {var} is not set"),
                    )
                })?
            } else if let Some(path) = what.strip_prefix("file:") {
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        Error::config(
                            "fetch.headers",
                            format!("header `{name}`: cannot read {path}: {e}"),
                        )
                    })?
                    .trim()
                    .to_string()
            } else {
                return Err(Error::config(
                    "fetch.headers",
                    format!(
                        "header `{name}`: `${{{what}}}` is neither ${{env:VAR}} nor ${{file:PATH}}"
                    ),
                ));
            };
            if text.contains(['\r', '\n']) {
                return Err(Error::config(
                    "fetch.headers",
                    format!("header `{name}`: the value read for `${{{what}}}` has a line break"),
                ));
            }
            v.replace_range(start..=end, &text);
            from = start + text.len();
        }
        out.push_str(&format!("{name}: {v}\r\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn headers_resolve_env_and_files_and_name_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret ${env:NOPE}\n").unwrap();
        let env = |k: &str| (k == "USER_ID").then(|| "42".to_string());
        let h = vec![
            "X-User: ${env:USER_ID}".to_string(),
            format!("Authorization: Bearer ${{file:{}}}", token.display()),
        ];
        assert_eq!(
            resolve_headers(&h, env).unwrap(),
            "X-User: 42\r\nAuthorization: Bearer s3cret ${env:NOPE}\r\n",
            "file content is not expanded again"
        );
        let e = resolve_headers(&["X: ${env:MISSING}".into()], env).unwrap_err();
        assert!(e.to_string().contains("MISSING is not set"), "{e}");
        let e = resolve_headers(&["Host: x".into()], env).unwrap_err();
        assert!(e.to_string().contains("set by pinflow"), "{e}");
        assert!(check_header("Bad Name: x").is_err());
    }
}

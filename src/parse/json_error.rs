//! What is wrong with a document simd-json rejected, in words, for its dead letter.
//!
//! simd-json's errors name an internal state (`InternalError at character 6`) where a reader
//! needs the cause: `NaN` or `Infinity` (not JSON numbers), characters after a complete value,
//! a trailing comma, a string or a structure left open. The error's index is a byte offset into
//! the document; bytes at and after it are as received (in-place parsing rewrites only the
//! strings it has already passed).

use simd_json::ErrorType;

/// "invalid JSON at byte N: what is wrong" for the error `e` of parsing `doc`.
pub(super) fn describe(e: &simd_json::Error, doc: &[u8]) -> String {
    let at = e.index().min(doc.len());
    if let Some((start, word)) = non_number(doc, at) {
        return format!(
            "invalid JSON at byte {start}: {word} is not a JSON number (JSON has no NaN or \
             Infinity; write null or a string)"
        );
    }
    let c = doc.get(at).copied();
    let before = doc[..at]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    let after = doc
        .get(at + 1..)
        .and_then(|rest| rest.iter().position(|b| !b.is_ascii_whitespace()))
        .map(|p| at + 1 + p);
    let why = match (e.error(), c) {
        // A closing bracket where the value ended, with more after it.
        (ErrorType::InternalError, Some(b'}' | b']')) if before != Some(b',') => {
            if let Some(more) = after {
                return format!(
                    "invalid JSON at byte {more}: trailing characters after the value \
                     (one JSON value per document, or one per line in NDJSON)"
                );
            }
            format!("unexpected `{}`", char::from(c.unwrap_or(b'?')))
        }
        (ErrorType::InternalError | ErrorType::ExpectedObjectKey, Some(close @ (b'}' | b']')))
            if before == Some(b',') =>
        {
            format!("a trailing comma before `{}`", char::from(close))
        }
        (ErrorType::Syntax, _) => return syntax(doc),
        (ErrorType::InvalidNumber | ErrorType::InvalidExponent, _) => {
            "not a valid number (JSON numbers are like -12, 3.5, 1e9, with no leading zeros)".into()
        }
        (ErrorType::ExpectedTrue, _) => "expected `true`".into(),
        (ErrorType::ExpectedFalse, _) => "expected `false`".into(),
        (ErrorType::ExpectedNull, _) => "expected `null`".into(),
        (ErrorType::ExpectedObjectContent | ErrorType::ExpectedObjectKey, _) => {
            "expected a key in double quotes, or `}`".into()
        }
        (ErrorType::ExpectedObjectColon, _) => "expected `:` after a key".into(),
        (ErrorType::ExpectedMapComma, _) => "expected `,` or `}` after a value".into(),
        (ErrorType::ExpectedArrayComma | ErrorType::ExpectedArrayContent, _) => {
            "expected `,` or `]` after a value".into()
        }
        (ErrorType::InvalidEscape, _) => "an invalid escape sequence in a string".into(),
        (ErrorType::InvalidUnicodeEscape | ErrorType::InvalidUnicodeCodepoint, _) => {
            "an invalid \\u escape in a string".into()
        }
        (ErrorType::InvalidUtf8, _) => "not valid UTF-8".into(),
        (ErrorType::DepthLimitExceeded, _) => "nested too deeply".into(),
        (ErrorType::InputTooLarge, _) => "larger than 4 GiB".into(),
        (_, Some(c)) if c.is_ascii_graphic() => format!("unexpected `{}`", char::from(c)),
        (_, Some(c)) => format!("unexpected byte 0x{c:02x}"),
        (_, None) => "the document ends before its value is complete".into(),
    };
    format!("invalid JSON at byte {at}: {why}")
}

/// `NaN`, `Infinity` or `-Infinity` (as some encoders write non-finite floats) at `at`, or
/// just after a sign there: where it starts, and the word.
fn non_number(doc: &[u8], at: usize) -> Option<(usize, &'static str)> {
    let start = match at.checked_sub(1).map(|i| doc[i]) {
        Some(b'-' | b'+') if doc[at..].starts_with(b"Infinity") => at - 1,
        _ => at,
    };
    let rest = &doc[start..];
    ["NaN", "-NaN", "Infinity", "-Infinity", "+Infinity"]
        .into_iter()
        .find(|w| rest.starts_with(w.as_bytes()))
        .map(|w| (start, w))
}

/// A syntax error found before any value was built: an unclosed string, a raw control
/// character in a string, or a structure left open. The document is as received.
fn syntax(doc: &[u8]) -> String {
    let mut depth = 0usize;
    let mut string_at = None;
    let mut i = 0;
    while i < doc.len() {
        let b = doc[i];
        if string_at.is_some() {
            match b {
                b'\\' => i += 1,
                b'"' => string_at = None,
                0..=0x1f => {
                    return format!(
                        "invalid JSON at byte {i}: control character U+{b:04X} in a string \
                         (write it as \\u{b:04x})"
                    )
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => string_at = Some(i),
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    match string_at {
        Some(at) => format!("invalid JSON at byte {at}: the string starting here is not closed"),
        None if depth > 0 => format!(
            "invalid JSON at byte {}: the document ends before its value is complete",
            doc.len()
        ),
        None => "invalid JSON: a syntax error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(doc: &str) -> String {
        let mut bytes = doc.as_bytes().to_vec();
        let e = simd_json::to_tape(&mut bytes).expect_err(doc);
        describe(&e, doc.as_bytes())
    }

    #[test]
    fn non_finite_numbers_trailing_characters_and_commas_are_named() {
        let cases = [
            (r#"{"id":NaN}"#, "at byte 6: NaN is not a JSON number"),
            (
                r#"{"id":Infinity}"#,
                "at byte 6: Infinity is not a JSON number",
            ),
            (
                r#"{"id":-Infinity}"#,
                "at byte 6: -Infinity is not a JSON number",
            ),
            ("NaN", "at byte 0: NaN is not a JSON number"),
            (
                r#"{"id":1} x"#,
                "at byte 9: trailing characters after the value",
            ),
            (
                r#"{"id":1}}"#,
                "at byte 8: trailing characters after the value",
            ),
            (
                r#"[{"id":1}] x"#,
                "at byte 11: trailing characters after the value",
            ),
            (
                r#"{"id":1,"v":[1,2,]}"#,
                "at byte 17: a trailing comma before `]`",
            ),
            (r#"{"id":1,}"#, "at byte 8: a trailing comma before `}`"),
            (
                r#"{"id":"abc}"#,
                "at byte 6: the string starting here is not closed",
            ),
            (
                "{\"id\":\"a\u{1}b\"}",
                "at byte 8: control character U+0001",
            ),
            (r#"{"id":01}"#, "not a valid number"),
            (r#"{"id":tru}"#, "expected `true`"),
            (r#"{'id':1}"#, "at byte 1: expected a key in double quotes"),
        ];
        for (doc, want) in cases {
            let got = reason(doc);
            assert!(got.contains(want), "{doc}: {got}");
            assert!(got.starts_with("invalid JSON"), "{doc}: {got}");
            assert!(!got.contains("InternalError"), "{doc}: {got}");
        }
    }
}

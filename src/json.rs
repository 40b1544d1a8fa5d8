//! Writing JSON text: just what pinflow emits (dead letters, simulator bodies).

/// Appends `s` as a JSON string literal, escaping quotes, backslashes and control characters
/// (`say "hi"` and a newline become `"say \"hi\"\n"`).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_and_newlines_are_escaped() {
        let mut out = Vec::new();
        super::write_string(&mut out, "say \"hi\"\n");
        assert_eq!(out, br#""say \"hi\"\n""#);
    }

    #[test]
    fn control_characters_and_unicode() {
        let mut out = Vec::new();
        super::write_string(&mut out, "a\u{1}b\\é");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\u0001b\\\\é\"");
    }
}

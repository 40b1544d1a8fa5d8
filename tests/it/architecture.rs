//! The layering rule of docs/ARCHITECTURE.md ("Layers"), checked on the sources: every
//! `crate::MODULE` that a file under `src/` names in code (not in comments or strings) must be
//! listed before that file's own module in the table. A module missing from the table fails
//! too, so a new module has to take its place in the order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules of the "Layers" table of docs/ARCHITECTURE.md, in order.
fn layer_order() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let section = doc
        .split("\n## Layers\n")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has a `## Layers` section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut order = Vec::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | layer | modules, in order | what |: the second cell lists `module`s.
        let Some(modules) = cells.get(2) else {
            continue;
        };
        for name in modules.split(',').map(str::trim) {
            if let Some(m) = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) {
                order.push(m.to_string());
            }
        }
    }
    assert!(order.len() > 10, "no layer table found: {order:?}");
    order
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` with comments, string and character literals blanked out, so that only code is
/// left (doc links and messages may name any module).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            while i < b.len() {
                if text[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_len(rest) {
            out.push_str("\"\"");
            i += len;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if let Some(len) = char_literal_len(rest) {
            out.push_str("' '");
            i += len;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) at the start of `s`.
fn raw_string_len(s: &str) -> Option<usize> {
    let after_b = s.strip_prefix('b').unwrap_or(s);
    let after_r = after_b.strip_prefix('r')?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let end = format!("\"{}", "#".repeat(hashes));
    let close = body.find(&end)?;
    Some(s.len() - body.len() + close + end.len())
}

/// The length of a character literal (`'x'`, `'\n'`, `'\u{1F600}'`) at the start of `s`; not
/// a lifetime (`'a`).
fn char_literal_len(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('\'')?;
    if let Some(esc) = rest.strip_prefix('\\') {
        let close = esc.find('\'')?;
        return Some(2 + close + 1);
    }
    let c = rest.chars().next()?;
    rest[c.len_utf8()..]
        .starts_with('\'')
        .then(|| 1 + c.len_utf8() + 1)
}

/// The modules named by `crate::NAME` in `code`, including each name of `crate::{a, b::c}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // Not the tail of another path such as `some_crate::`.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                found.insert(ident(item.trim()));
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| m.starts_with(|c: char| c.is_ascii_lowercase()));
    found
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level module a file under `src/` belongs to (`src/ingest/http/pool.rs` → `ingest`);
/// `None` for the crate root and the binary.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root().join("src")).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "bin" => None,
        name => Some(name.trim_end_matches(".rs").to_string()),
    }
}

#[test]
fn every_module_uses_only_the_layers_before_it() {
    let order = layer_order();
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut modules = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        modules.insert(module.clone());
        let Some(own) = rank(&module) else {
            continue; // reported below, once
        };
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for used in crate_paths(&code) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                _ => wrong.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which is not before it",
                    file.strip_prefix(root()).unwrap().display()
                )),
            }
        }
    }
    let missing: Vec<_> = modules.iter().filter(|m| rank(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules missing from the Layers table of docs/ARCHITECTURE.md: {missing:?}"
    );
    let stale: Vec<_> = order.iter().filter(|m| !modules.contains(*m)).collect();
    assert!(
        stale.is_empty(),
        "the Layers table names modules that do not exist: {stale:?}"
    );
    assert!(
        wrong.is_empty(),
        "dependencies against the layer order (docs/ARCHITECTURE.md, Layers):\n{}",
        wrong.join("\n")
    );
}

/// The checker itself: comments, strings and doc links do not count; code does, grouped
/// imports included.
#[test]
fn the_checker_reads_code_not_comments() {
    let code = code_only(
        "use crate::{alpha, beta::x};\n// crate::gamma\n/// [`crate::delta`]\n\
         let s = \"crate::epsilon\"; let r = r#\"crate::zeta\"#; let c = '\"';\n\
         fn f<'a>(x: &'a str) { crate::eta::go(x) } /* crate::theta /* nested */ */\n\
         let other = my_crate::iota;",
    );
    let found: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(found, ["alpha", "beta", "eta"]);
}

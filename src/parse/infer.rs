//! Schema inference: fields and types from the first records of a run (`schema.infer`).
//!
//! Rules, applied to every dotted path seen in up to [`SAMPLE_RECORDS`] records of the first
//! batch that holds any:
//!
//! - nested objects are walked, their fields become dotted paths (`http.status` → column
//!   `http_status`); an object itself is not a column;
//! - integers → `int64`; any fractional number among them → `float64`;
//! - `true`/`false` → `bool`;
//! - strings → `timestamp` when every one seen is RFC 3339, else `string`;
//! - arrays of numbers → `list<int64>` if all integers, else `list<float64>` (empty arrays
//!   alone: `list<float64>`);
//! - only nulls → `string`;
//! - a path seen with two kinds of value (a number and a string, an object and a number),
//!   or arrays of anything but numbers, is left out with everything below it, with a warning;
//!   such a field is then an unknown field (`schema.unknown` decides).
//!
//! Columns come in the order their paths were first seen.

use std::collections::HashMap;

use simd_json::prelude::*;
use simd_json::BorrowedValue;

use crate::schema::{FieldSpec, FieldType};
use crate::time::parse_rfc3339;

/// Records looked at, at most.
pub const SAMPLE_RECORDS: usize = 1000;

#[derive(Default, Clone, Copy)]
struct Seen {
    int: bool,
    float: bool,
    boolean: bool,
    string: bool,
    not_timestamp: bool,
    list_int: bool,
    list_float: bool,
    list_empty: bool,
    bad_list: bool,
    object: bool,
    null: bool,
}

/// The fields inferred from the records in `bodies` (each a body as the parse stage sees it:
/// an object, an array of objects, NDJSON, or an envelope with the records at `records_path`),
/// and how many records were looked at.
pub fn infer<'b>(
    bodies: impl Iterator<Item = &'b [u8]>,
    records_path: Option<&[String]>,
) -> (Vec<FieldSpec>, usize) {
    let mut order: Vec<String> = Vec::new();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut records = 0;
    let mut scratch = Vec::new();
    for body in bodies {
        if records >= SAMPLE_RECORDS {
            break;
        }
        for doc in documents(body, records_path.is_some()) {
            scratch.clear();
            scratch.extend_from_slice(doc);
            let Ok(value) = simd_json::to_borrowed_value(&mut scratch) else {
                continue;
            };
            let list: Vec<&BorrowedValue<'_>> = match (records_path, &value) {
                (Some(path), v) => match lookup(v, path).and_then(|r| r.as_array()) {
                    Some(a) => a.iter().collect(),
                    None => continue,
                },
                (None, BorrowedValue::Array(a)) => a.iter().collect(),
                (None, v) => vec![v],
            };
            for rec in list {
                if records >= SAMPLE_RECORDS {
                    break;
                }
                if let Some(obj) = rec.as_object() {
                    records += 1;
                    for (k, v) in obj.iter() {
                        observe(k, v, &mut order, &mut seen);
                    }
                }
            }
        }
    }
    let mut fields = Vec::new();
    // Paths left out: their descendants go too (an object that was once a number).
    let mut dropped: Vec<String> = Vec::new();
    for path in order {
        if dropped
            .iter()
            .any(|d| path.starts_with(d.as_str()) && path[d.len()..].starts_with('.'))
        {
            continue;
        }
        let s = seen[&path];
        let kinds = [
            s.int || s.float,
            s.boolean,
            s.string,
            s.list_int || s.list_float || s.list_empty,
            s.object,
        ]
        .iter()
        .filter(|&&k| k)
        .count();
        if s.object && kinds == 1 && !s.bad_list {
            continue; // Its fields are columns of their own.
        }
        let ty = if s.bad_list || kinds > 1 {
            tracing::warn!(field = %path, "schema inference: mixed or unsupported types; the field is left out");
            dropped.push(path);
            continue;
        } else if s.float {
            FieldType::Float64
        } else if s.int {
            FieldType::Int64
        } else if s.boolean {
            FieldType::Bool
        } else if s.string && !s.not_timestamp {
            FieldType::Timestamp
        } else if s.list_float || (s.list_empty && !s.list_int) {
            FieldType::ListFloat64
        } else if s.list_int {
            FieldType::ListInt64
        } else {
            debug_assert!(s.string || s.null);
            FieldType::String
        };
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        fields.push(FieldSpec {
            column: parts.join("_"),
            path: parts,
            ty,
        });
    }
    (fields, records)
}

/// The field that makes `bodies` look like envelopes: every body is one object (not an array,
/// not NDJSON), and each has this top-level field holding a non-empty array of objects (the
/// records, most likely: `{"data":[{...}],"next":"..."}`). `None` when any body is otherwise.
pub fn envelope_field<'b>(bodies: impl Iterator<Item = &'b [u8]>) -> Option<String> {
    let mut found: Option<String> = None;
    let mut scratch = Vec::new();
    for body in bodies {
        let docs = documents(body, false);
        let [doc] = docs.as_slice() else {
            return None;
        };
        scratch.clear();
        scratch.extend_from_slice(doc);
        let value = simd_json::to_borrowed_value(&mut scratch).ok()?;
        let key = value.as_object()?.iter().find_map(|(k, v)| {
            let items = v.as_array()?;
            (!items.is_empty() && items.iter().all(|i| i.as_object().is_some()))
                .then(|| k.to_string())
        })?;
        match &found {
            Some(f) if *f != key => return None,
            _ => found = Some(key),
        }
    }
    found
}

fn observe(
    path: &str,
    v: &BorrowedValue<'_>,
    order: &mut Vec<String>,
    seen: &mut HashMap<String, Seen>,
) {
    if !seen.contains_key(path) {
        order.push(path.to_string());
        seen.insert(path.to_string(), Seen::default());
    }
    let s = seen.get_mut(path).expect("inserted above");
    match v {
        BorrowedValue::Static(simd_json::StaticNode::Null) => s.null = true,
        BorrowedValue::Static(simd_json::StaticNode::Bool(_)) => s.boolean = true,
        BorrowedValue::Static(simd_json::StaticNode::F64(_)) => s.float = true,
        // Past i64::MAX an int64 column cannot hold it.
        BorrowedValue::Static(simd_json::StaticNode::U64(u)) if *u > i64::MAX as u64 => {
            s.float = true
        }
        BorrowedValue::Static(_) => s.int = true,
        BorrowedValue::String(text) => {
            s.string = true;
            if parse_rfc3339(text).is_none() {
                s.not_timestamp = true;
            }
        }
        BorrowedValue::Array(items) => {
            if items.is_empty() {
                s.list_empty = true;
            } else if items.iter().all(|i| i.is_i64() || i.is_u64()) {
                s.list_int = true;
            } else if items.iter().all(|i| i.is_number()) {
                s.list_float = true;
            } else {
                s.bad_list = true;
            }
        }
        BorrowedValue::Object(obj) => {
            s.object = true;
            for (k, child) in obj.iter() {
                observe(&format!("{path}.{k}"), child, order, seen);
            }
        }
    }
}

fn lookup<'v, 'a>(v: &'v BorrowedValue<'a>, path: &[String]) -> Option<&'v BorrowedValue<'a>> {
    path.iter()
        .try_fold(v, |v, k| v.as_object()?.get(k.as_str()))
}

/// The JSON documents of a body, split as the parse stage splits them.
fn documents(body: &[u8], envelope: bool) -> Vec<&[u8]> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Vec::new();
    };
    let body = &body[start..];
    let ndjson = body[0] == b'{' && body.windows(2).any(|w| w == b"\n{");
    if envelope || body[0] == b'[' || !ndjson {
        return vec![body];
    }
    body.split(|&b| b == b'\n')
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer_text(bodies: &[&str]) -> Vec<String> {
        infer(bodies.iter().map(|b| b.as_bytes()), None)
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn rules() {
        let got = infer_text(&[
            r#"{"id":1,"ts":"2026-11-24T10:00:00Z","x":1,"ok":true,"http":{"status":200,"path":"/a"},"v":[1,2],"w":[1.5],"e":[],"n":null,"mixed":1,"bad":[{"a":1}],"o":{"a":1}}"#,
            "{\"id\":2,\"ts\":\"2026-11-24T10:00:01+01:00\",\"x\":2.5,\"mixed\":\"one\",\"e\":[3],\"o\":2}\n{\"id\":3,\"tags\":\"a\",\"ts\":null}",
        ]);
        assert_eq!(
            got,
            [
                "id:int64",
                "ts:timestamp",
                "x:float64",
                "ok:bool",
                "http.status:int64",
                "http.path:string",
                "v:list<int64>",
                "w:list<float64>",
                "e:list<int64>",
                "n:string",
                "tags:string",
            ]
        );
    }

    #[test]
    fn objects_that_are_also_arrays_and_huge_integers() {
        let got = infer_text(&[
            "{\"om\":{\"a\":1},\"u\":1}\n{\"om\":[{\"a\":1}],\"u\":18446744073709551615}",
        ]);
        // `om` is left out with `om.a`; an integer past i64::MAX makes the column float64.
        assert_eq!(got, ["u:float64"]);
    }

    #[test]
    fn an_envelope_is_recognised_only_when_every_body_is_one() {
        let env = |bodies: &[&str]| envelope_field(bodies.iter().map(|b| b.as_bytes()));
        let page = r#"{"data":[{"a":1}],"meta":{"next":"c"}}"#;
        assert_eq!(env(&[page, page]).as_deref(), Some("data"));
        // Records that have a list of objects, one per line or in an array, are records.
        assert_eq!(env(&[page, "{\"a\":1}\n{\"data\":[{\"b\":2}]}"]), None);
        assert_eq!(env(&[r#"[{"data":[{"a":1}]}]"#]), None);
        assert_eq!(env(&[r#"{"data":[1,2]}"#]), None);
        assert_eq!(env(&[r#"{"data":[]}"#]), None);
        assert_eq!(env(&[page, r#"{"items":[{"a":1}]}"#]), None);
    }

    #[test]
    fn envelopes_and_arrays() {
        let (f, n) = infer(
            [br#"{"data":[{"a":1},{"a":2,"b":"x"}],"next":"c"}"#.as_slice()].into_iter(),
            Some(&["data".to_string()]),
        );
        assert_eq!(n, 2);
        assert_eq!(f.len(), 2);
        let (f, n) = infer([br#"[{"a":1.0},{"a":2}]"#.as_slice()].into_iter(), None);
        assert_eq!((n, f[0].ty), (2, FieldType::Float64));
    }
}

//! Unit tests of the pieces: keys into URLs, answers into typed values, error columns joined.

use std::sync::Arc;

use super::cache::Scalar;
use super::client::answer_of;
use super::config::{escape_into, Spec};
use super::merge_text_column;
use crate::config::EnrichConfig;

fn spec(types: &[(&str, &str)]) -> Spec {
    let cfg = EnrichConfig {
        url: Some("http://h/s/{service}".into()),
        fields: [("team", "owner.team"), ("tier", "tier"), ("up", "up")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        types: types
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..EnrichConfig::default()
    };
    Spec::new(0, &cfg).unwrap()
}

#[test]
fn keys_are_escaped_so_they_cannot_change_the_path() {
    let mut out = String::new();
    escape_into(&mut out, "a b/../c?d#e%f-_.~é");
    assert_eq!(out, "a%20b%2F..%2Fc%3Fd%23e%25f-_.~%C3%A9");
}

#[test]
fn answers_are_typed_by_column_and_a_misfit_is_named() {
    let s = spec(&[("tier", "int64"), ("up", "bool")]);
    // Columns are in name order: team, tier, up.
    let mut body = br#"{"owner": {"team": "core"}, "tier": 2.0, "up": "yes"}"#.to_vec();
    let a = answer_of(&s, &mut body).unwrap().unwrap();
    assert_eq!(a[0], Scalar::Str("core".into()));
    assert_eq!(a[1], Scalar::Int(2));
    assert!(matches!(&a[2], Scalar::Bad(why) if why.contains("`up`") && why.contains("bool")));
    // A number in a string column is its text; a missing path is null.
    let mut body = br#"{"owner": {"team": 7}}"#.to_vec();
    let a = answer_of(&s, &mut body).unwrap().unwrap();
    assert_eq!((&a[0], &a[1]), (&Scalar::Str("7".into()), &Scalar::Null));
    for empty in [&b""[..], b"  ", b"null", b"{}"] {
        assert_eq!(answer_of(&s, &mut empty.to_vec()).unwrap(), None);
    }
    let f = answer_of(&s, &mut b"<html>".to_vec()).unwrap_err();
    assert_eq!(f.class, "json");
}

#[test]
fn error_columns_of_two_enrichers_are_joined() {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    merge_text_column(
        &mut fields,
        &mut columns,
        "_e",
        vec![Some("a".into()), None, None],
    );
    merge_text_column(
        &mut fields,
        &mut columns,
        "_e",
        vec![Some("b".into()), Some("c".into()), None],
    );
    assert_eq!(fields.len(), 1);
    let c = columns[0].as_string::<i32>();
    assert_eq!((c.value(0), c.value(1), c.is_null(2)), ("a; b", "c", true));
    let _ = Arc::clone(&fields[0]);
}

//! Unit tests of the receive endpoint's pieces that need no pipeline.

use super::server::{same_secret, shape_error};

#[test]
fn the_token_comparison_needs_every_byte_and_the_length() {
    assert!(same_secret(b"s3cret", b"s3cret"));
    assert!(!same_secret(b"s3cre", b"s3cret"));
    assert!(!same_secret(b"s3cretx", b"s3cret"));
    assert!(!same_secret(b"S3cret", b"s3cret"));
    assert!(!same_secret(b"", b"s3cret"));
    // A length that wraps in a byte is still a difference.
    assert!(!same_secret(&[0; 256], b""));
}

#[test]
fn a_body_that_is_not_json_is_named_before_admission() {
    assert!(shape_error(b"{\"id\":1}", false).is_none());
    assert!(shape_error(b"  [1,2]", false).is_none());
    assert!(shape_error(b"{\"id\":1}\n{\"id\":2}\n", false).is_none());
    assert!(shape_error(b"id,name\n1,x\n", false)
        .unwrap()
        .contains("not JSON"));
    assert!(shape_error(b"   ", false).unwrap().contains("empty"));
    assert!(shape_error(b"{\"a\":\"\xff\"}", false)
        .unwrap()
        .contains("UTF-8"));
    assert!(shape_error(&[0x1f, 0x8b, 8, 0], true).is_none());
    assert!(shape_error(b"{}", true).unwrap().contains("gzip"));
}

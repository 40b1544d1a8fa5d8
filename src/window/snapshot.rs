//! The operator's state as bytes.

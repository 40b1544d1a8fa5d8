//! Window engine tests.

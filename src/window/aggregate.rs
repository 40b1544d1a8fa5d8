//! Accumulators of one field in one pane.

//! Time windows: per-key aggregates on event time, with watermarks, late data and
//! restart-safe state (issue 18). Skeleton: the semantics are documented as they land.

mod aggregate;
mod operator;
mod snapshot;
mod spec;
#[cfg(test)]
mod tests;

pub use operator::{PartitionId, Rejected, WindowGauges, WindowOperator, WindowOutput};
pub use spec::{Agg, Overflow, WindowSpec, DEFAULT_MAX_OPEN, DEFAULT_TIME_FIELD};

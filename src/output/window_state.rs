//! Restart safety of time windows: what a checkpoint saves of the window stage, and what a
//! resumed run may restore it into (see [`crate::journal::State`]).
//!
//! The writer commits [`WindowStage::state`] with every checkpoint, in the same journal line
//! as the files and items it goes with, so a run killed at any instant resumes with exactly
//! the open windows and watermark of the rows the committed files account for: the windows
//! those files hold are not emitted again, and the ones still open go on from the rows that
//! are fetched again. The state is keyed by [`key`]: a run with other windows is refused
//! rather than fed a state that means something else.

use crate::window::WindowSpec;

use super::windows::WindowStage;

/// The window options a saved state belongs to, as `pinflow run` flags would give them (also
/// what a refusal shows). Everything that decides which rows come out is in it; `idle`
/// (processing time: when a quiet stream's windows close, not what they hold) is not.
pub(crate) fn key(spec: &WindowSpec) -> String {
    let mut k = format!("--window {}", duration(spec.size_us));
    if spec.hop_us != spec.size_us {
        k.push_str(&format!("/{}", duration(spec.hop_us)));
    }
    k.push_str(&format!(" --window-time {}", spec.time_field));
    if !spec.by.is_empty() {
        k.push_str(&format!(" --window-by {}", spec.by.join(",")));
    }
    for (field, aggs) in &spec.aggregates {
        let names: Vec<String> = aggs.iter().map(ToString::to_string).collect();
        k.push_str(&format!(" --window-agg {field}:{}", names.join(",")));
    }
    k.push_str(&format!(
        " --window-lateness {} --window-max-open {} --window-overflow {}",
        duration(spec.lateness_us),
        spec.max_open,
        // (the flag's spelling: close-oldest, dead-letter)
        spec.overflow.name().replace('_', "-")
    ));
    k
}

/// `10s`, `1500ms`, `250us`: µs in the largest unit that divides them.
fn duration(us: i64) -> String {
    match us {
        0 => "0s".into(),
        u if u % 1_000_000 == 0 => format!("{}s", u / 1_000_000),
        u if u % 1_000 == 0 => format!("{}ms", u / 1_000),
        u => format!("{u}us"),
    }
}

impl WindowStage {
    /// What a checkpoint saves: the operator's snapshot; before the operator is made (no rows
    /// yet), the state it will be restored from, or nothing (an empty state: start afresh).
    pub(crate) fn state(&self) -> Vec<u8> {
        match (&self.operator, &self.restore) {
            (Some(op), _) => op.snapshot(),
            (None, Some(saved)) => saved.bytes.clone(),
            (None, None) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{Agg, Overflow};
    use std::time::Duration;

    #[test]
    fn the_key_names_every_option_that_decides_the_rows_and_not_idle() {
        let spec = WindowSpec::hopping(Duration::from_secs(10), Duration::from_millis(2500))
            .with_by(["service", "host"])
            .with_lateness(Duration::from_secs(2))
            .with_aggregates("latency_ms", [Agg::Count, Agg::Quantile(9990)]);
        let k = key(&spec);
        assert_eq!(
            k,
            "--window 10s/2500ms --window-time ts --window-by service,host \
             --window-agg latency_ms:count,p99.9 --window-lateness 2s \
             --window-max-open 1000000 --window-overflow close-oldest"
        );
        assert_eq!(key(&spec.clone().with_idle(Duration::from_secs(30))), k);
        for other in [
            spec.clone().with_lateness(Duration::from_secs(3)),
            spec.clone().with_by(["service"]),
            spec.clone().with_max_open(10, Overflow::DeadLetter),
            spec.clone().with_time_field("at"),
        ] {
            assert_ne!(key(&other), k, "{other:?}");
        }
    }
}

//! Restart safety of time windows: what a checkpoint saves of the window stage, and what a
//! resumed run may restore it into (see [`crate::journal::State`]).
//!
//! The writer commits [`WindowStage::state`] with every checkpoint, in the same journal line
//! as the files and items it goes with, so a run killed at any instant resumes with exactly
//! the open windows and watermark of the rows the committed files account for: the windows
//! those files hold are not emitted again, and the ones still open go on from the rows that
//! are fetched again. The state is keyed by [`key`]: a run with other windows is refused
//! rather than fed a state that means something else.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::journal::SavedState;
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
    /// What a checkpoint saves (see [`encode`]): the rows' schema and the operator's snapshot;
    /// empty before the operator is made (no rows yet: a resumed run starts afresh).
    pub(crate) fn state(&mut self) -> Result<Vec<u8>> {
        match (self.snapshot()?, &self.input) {
            (Some(snapshot), Some(input)) => encode(input, &snapshot),
            _ => Ok(Vec::new()),
        }
    }

    /// A resumed run: the operator restored from `saved` now, before any batch, so that the
    /// open windows are there even if no row comes (every item was done: the run ends by
    /// writing them).
    pub(crate) fn resume(&mut self, mut saved: SavedState) -> Result<()> {
        if saved.bytes.is_empty() {
            return Ok(());
        }
        let (input, at) = decode(&saved.bytes).map_err(|why| Error::Journal {
            path: saved.path.clone(),
            line: None,
            why: format!(
                "the window state committed by line {} of the journal cannot be read: {why}",
                saved.line
            ),
        })?;
        saved.bytes.drain(..at);
        self.restore = Some(saved);
        self.engine_for(&input)?;
        Ok(())
    }
}

/// The saved state: the length of the rows' schema as JSON (u32, little-endian), that JSON
/// (arrow's own serde form: the operator is made for a schema, and a resumed run restores it
/// before any row shows it one), then [`crate::window::WindowOperator::snapshot`]'s bytes.
fn encode(input: &SchemaRef, snapshot: &[u8]) -> Result<Vec<u8>> {
    let schema = serde_json::to_vec(input.as_ref()).map_err(|e| Error::Stage {
        stage: "window state".into(),
        why: format!("the rows' schema cannot be saved: {e}"),
    })?;
    let mut out = Vec::with_capacity(4 + schema.len() + snapshot.len());
    out.extend_from_slice(&(schema.len() as u32).to_le_bytes());
    out.extend_from_slice(&schema);
    out.extend_from_slice(snapshot);
    Ok(out)
}

/// [`encode`]'s schema, and where the snapshot starts.
fn decode(bytes: &[u8]) -> std::result::Result<(SchemaRef, usize), String> {
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .ok_or("it is shorter than its header")?;
    let json = bytes
        .get(4..4 + len)
        .ok_or("it is shorter than its schema")?;
    let schema: Schema =
        serde_json::from_slice(json).map_err(|e| format!("its schema is not readable: {e}"))?;
    Ok((Arc::new(schema), 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{Agg, Overflow};
    use std::time::Duration;

    #[test]
    fn the_saved_schema_comes_back_with_the_snapshot_after_it() {
        use arrow_schema::{DataType, Field, TimeUnit};
        let input: SchemaRef = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "service",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("latency_ms", DataType::Float64, true),
        ]));
        let bytes = encode(&input, b"PFWS-snapshot").unwrap();
        let (back, at) = decode(&bytes).unwrap();
        assert_eq!(back.fields(), input.fields());
        assert_eq!(&bytes[at..], b"PFWS-snapshot");
        for cut in [0, 3, 10] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

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

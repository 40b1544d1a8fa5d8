//! Named fail points: places in the output and the journal where a test can make the process
//! abort, to prove that a crash exactly there loses nothing and duplicates nothing
//! (`tests/it/crash_points.rs`). A kill at a random moment rarely lands in the narrow windows
//! that matter (between a row group and the journal line, between the line and the rename);
//! a fail point lands there every time.
//!
//! Compiled only with the cargo feature `failpoints` (off by default; a release or edge build
//! with it is refused at compile time). Without the feature, [`hit`] is an empty inline
//! function and costs nothing. With it, the environment variable [`ENV`]
//! (`PINFLOW_FAILPOINT`) arms one point: `NAME` aborts the process at its first hit, `NAME@N`
//! at its N-th. Before aborting it prints `pinflow: fail point NAME reached (hit N); aborting`
//! to standard error, so a test can tell the point it asked for from any other abort.
//!
//! A leaf module: it uses nothing else of the crate.

#[cfg(all(feature = "failpoints", not(debug_assertions)))]
compile_error!(
    "the `failpoints` feature is for test builds only: it must not be in a release or edge build"
);

/// The environment variable that arms a fail point: `NAME` or `NAME@N`.
pub const ENV: &str = "PINFLOW_FAILPOINT";

/// Every fail point, with where it is.
pub const POINTS: &[(&str, &str)] = &[
    (
        "writer.after_row_group",
        "a row group was written to a temporary file, before any journal line names it",
    ),
    (
        "writer.before_commit",
        "a checkpoint's files are sealed (footer, fsync), before its journal line is written",
    ),
    (
        "journal.after_state",
        "a checkpoint's window state file is durable under its name, before the journal line \
         that names it",
    ),
    (
        "writer.after_commit",
        "a checkpoint's journal line is fsynced, before its files are renamed into place",
    ),
    (
        "writer.mid_publish",
        "one file of a checkpoint was renamed into place, the others not yet",
    ),
    (
        "journal.recover",
        "the next run is finishing a killed run's checkpoint: one file renamed, the rest not",
    ),
    (
        "output.evict",
        "a partition's file was closed to make room for another (max_open_partitions)",
    ),
    (
        "objstore.after_create",
        "a multipart upload was created in the store, before the file's state records its id",
    ),
    (
        "objstore.after_part",
        "a part is in the store, before the file's state records its ETag",
    ),
    (
        "objstore.after_complete",
        "the object exists in the store (PUT or completion), before the state says uploaded",
    ),
    (
        "objstore.after_uploaded",
        "the state says uploaded, before the staged file and its state are removed",
    ),
    (
        "writer.pending",
        "a Kafka source's checkpoint line is fsynced as pending, before the group holds its \
         offsets",
    ),
    (
        "writer.landed",
        "the group holds a pending checkpoint's offsets, before the journal confirms it",
    ),
];

/// Aborts the process here when [`ENV`] arms `name` and this is the hit it asks for. Without
/// the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}

/// Aborts the process here when [`ENV`] arms `name` and this is the hit it asks for.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    debug_assert!(
        POINTS.iter().any(|(p, _)| *p == name),
        "fail point {name} is not listed in POINTS"
    );
    let armed = ARMED.get_or_init(|| std::env::var(ENV).ok().and_then(|v| parse(&v).ok()));
    let Some((armed, at)) = armed else {
        return;
    };
    if armed != name {
        return;
    }
    let n = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if n == *at {
        eprintln!("pinflow: fail point {name} reached (hit {n}); aborting");
        std::process::abort();
    }
}

/// Reads `NAME` or `NAME@N` (N ≥ 1): the point and the hit to abort at. An unknown name or a
/// bad count is an error naming it.
pub fn parse(value: &str) -> Result<(String, u64), String> {
    let value = value.trim();
    let (name, at) = match value.split_once('@') {
        None => (value, 1),
        Some((name, n)) => match n.parse::<u64>() {
            Ok(n) if n >= 1 => (name, n),
            _ => return Err(format!("`{n}` after @ is not a hit number (1, 2, ...)")),
        },
    };
    if !POINTS.iter().any(|(p, _)| *p == name) {
        let known: Vec<&str> = POINTS.iter().map(|(p, _)| *p).collect();
        return Err(format!(
            "no fail point is called `{name}`; there are: {}",
            known.join(", ")
        ));
    }
    Ok((name.to_string(), at))
}

/// Why [`ENV`] with `value` cannot be used by this build, if it cannot: the build has no fail
/// points, or the value names none. The configuration layer reports it as an error, so a test
/// never runs believing it armed a point that cannot fire.
pub fn refusal(value: &str) -> Option<String> {
    if !cfg!(feature = "failpoints") {
        return Some(
            "fail points are compiled only with the cargo feature `failpoints` (test builds)"
                .into(),
        );
    }
    parse(value).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hit_numbers_are_read_and_unknown_ones_refused() {
        assert_eq!(
            parse("writer.after_commit"),
            Ok(("writer.after_commit".into(), 1))
        );
        assert_eq!(
            parse("journal.recover@2"),
            Ok(("journal.recover".into(), 2))
        );
        assert!(parse("journal.recover@0").unwrap_err().contains("`0`"));
        assert!(parse("journal.recover@x").unwrap_err().contains("`x`"));
        let e = parse("writer.nowhere").unwrap_err();
        assert!(
            e.contains("`writer.nowhere`") && e.contains("writer.after_commit"),
            "{e}"
        );
    }

    #[test]
    fn a_build_without_the_feature_refuses_every_value() {
        let r = refusal("writer.after_commit");
        assert_eq!(r.is_some(), !cfg!(feature = "failpoints"), "{r:?}");
    }
}

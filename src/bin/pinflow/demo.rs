//! `pinflow demo`: the built-in simulator's records through the whole pipeline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pinflow::sim::{SimConfig, Simulator};
use pinflow::Source;

use crate::options::{flag_given, load, validated, FlagsSet, Options};
use crate::runtime::{finish, run_pipeline, Expected};
use crate::Failure;

/// Serves `records` (at least 1, as the command line checks) generated records from a simulator on a loopback port and writes them to
/// `out` (never the configuration's `out` or `dead_letter`: a demo does not write where
/// production output goes).
pub fn demo(
    file: Option<&Path>,
    out: Option<PathBuf>,
    records: u64,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    let (mut cfg, layers) = load(file, opts)?;
    // The demo's own file (no --out) is its scratch output: each demo replaces the last
    // one's, as the summary says, unless writer.overwrite was set either way.
    if out.is_none() && !layers.iter().any(|l| l.is_set("writer.overwrite")) {
        cfg.writer.overwrite = true;
    }
    cfg.out = out.unwrap_or_else(|| PathBuf::from("pinflow-demo.parquet"));
    if !flag_given(&layers, "dead_letter") {
        cfg.dead_letter = None;
    }
    let set: FlagsSet = vec![("out", "--out")];
    let cfg = validated(cfg, &layers, &set)?;
    let sim = Simulator::start(SimConfig::default()).map_err(|e| pinflow::Error::Config {
        what: "simulator".into(),
        why: format!("cannot bind a loopback port: {e}"),
    })?;
    eprintln!(
        "pinflow: simulator on {}, fetching {records} records one per request",
        sim.addr()
    );
    let (source, total) = Source::from_arg_counted(&sim.logs_template(records))?;
    let expected = Expected::of(&cfg, total);
    let summary = run_pipeline(cfg, source, "demo", total)?;
    Ok(finish(&summary, &expected))
}

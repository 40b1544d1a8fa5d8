//! `pinflow run`: real endpoints or local files, as the flags and configuration say.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pinflow::Source;

use crate::options::{load, validated, FlagsSet, Options};
use crate::runtime::{finish, run_pipeline};
use crate::Failure;

/// Fetches `urls` (or reads `files`) into `out`; each falls back to the configuration's
/// `source`, `files` and `out`.
pub fn run(
    file: Option<&Path>,
    urls: Option<String>,
    files: Vec<String>,
    out: Option<PathBuf>,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    let (mut cfg, layers) = load(file, opts)?;
    let mut set = FlagsSet::new();
    if let Some(out) = out {
        cfg.out = out;
        set.push(("out", "--out"));
    } else if !layers.iter().any(|l| l.is_set("out")) {
        return Err(Failure::Usage(
            "no output file: give --out PATH, or set `out` in the --config file or \
             PINFLOW_OUT"
                .into(),
        ));
    }
    if !files.is_empty() {
        cfg.files = files;
        set.push(("files", "--files"));
    }
    // A flag picks the source; otherwise the configuration must name exactly one.
    let from_flag = urls.is_some() || set.iter().any(|(k, _)| *k == "files");
    let use_files = if from_flag {
        urls.is_none()
    } else if cfg.source.is_some() && !cfg.files.is_empty() {
        return Err(Failure::Usage(
            "both `source` (URLs) and `files` are configured: give --urls or --files".into(),
        ));
    } else {
        !cfg.files.is_empty()
    };
    if use_files {
        let cfg = validated(cfg, &layers, &set)?;
        let label = cfg.files.join(" ");
        let source = Source::files(&cfg.files)?;
        let summary = run_pipeline(cfg, source, &label)?;
        return Ok(finish(&summary));
    }
    let urls = match urls.or_else(|| cfg.source.clone()) {
        Some(u) => u,
        None => {
            return Err(Failure::Usage(
                "no work source: give --urls FILE|-|TEMPLATE or --files PATH, or set \
                 `source` or `files` in the --config file or the environment"
                    .into(),
            ))
        }
    };
    let cfg = validated(cfg, &layers, &set)?;
    let source = Source::from_arg(&urls)?;
    let summary = run_pipeline(cfg, source, &urls)?;
    Ok(finish(&summary))
}

//! `pinflow config`: check a configuration file and the environment, or print the defaults.

use std::path::Path;
use std::process::ExitCode;

use pinflow::config::check_config;
use pinflow::Config;

use crate::Failure;

/// `config default`: a complete configuration file, every key with its default.
pub fn default() -> ExitCode {
    out!("{}", Config::default_toml());
    ExitCode::SUCCESS
}

/// `config check [FILE]`: every problem of the file (if any) and of the `PINFLOW_*` variables,
/// as a run would stack them, each with its line or variable; exit 1 if any.
pub fn check(file: Option<&Path>) -> Result<ExitCode, Failure> {
    let name = file.map_or_else(|| "environment".to_string(), |f| f.display().to_string());
    let text = match file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| Failure::Errors(vec![format!("{name}: cannot read: {e}")]))?,
        ),
        None => None,
    };
    let vars = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    let diags = check_config(text.as_deref().map(|t| (name.as_str(), t)), vars);
    if diags.is_empty() {
        outln!("{name}: ok");
        return Ok(ExitCode::SUCCESS);
    }
    for d in &diags {
        eprintln!("{d}");
    }
    eprintln!(
        "{name}: {} problem{}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::from(1))
}

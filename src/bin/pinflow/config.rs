//! `pinflow config`: check a configuration file, or print the defaults.

use std::path::Path;
use std::process::ExitCode;

use pinflow::config::check_toml;
use pinflow::Config;

use crate::Failure;

/// `config default`: a complete configuration file, every key with its default.
pub fn default() -> ExitCode {
    out!("{}", Config::default_toml());
    ExitCode::SUCCESS
}

/// `config check FILE`: every problem, each with its line; exit 1 if any.
pub fn check(file: &Path) -> Result<ExitCode, Failure> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Errors(vec![format!("{name}: cannot read: {e}")]))?;
    let diags = check_toml(&name, &text);
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

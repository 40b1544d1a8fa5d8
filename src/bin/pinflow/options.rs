//! The configuration flags of `demo`, `run` and `bench`, made from the option registry, and
//! the layering of defaults < `--config` file < environment < flags.
//!
//! Each [`Flag::Shared`] or [`Flag::Negatable`] option of [`pinflow::config::options`] becomes
//! a clap argument under its topic's help heading (the topic is the option's TOML table); every
//! boolean is a pair of switches, `--journal` / `--no-journal`; a value given is checked by the same reader
//! as the option's TOML and environment values, and the flags given become one more
//! [`ConfigLayer`] (so problems name the flag that set the value).

use std::path::Path;
use std::sync::OnceLock;

use clap::builder::ValueParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};
use pinflow::config::{
    env_name, options, ConfigLayer, Diagnostic, Flag, LogFormat, OptionSpec, Origin,
};
use pinflow::Config;

use crate::Failure;

/// The configuration flags given on the command line. None has a clap default: a flag that is
/// not given leaves the file's or environment's value (or the built-in default in its help).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `(key, flag, value)` for each flag given, as [`ConfigLayer::from_flags`] reads them.
    given: Vec<(&'static str, &'static str, String)>,
}

/// The long name of a flag, without its dashes.
fn long(flag: &'static str) -> &'static str {
    flag.trim_start_matches("--")
}

/// The clap argument of a [`Flag::Shared`] option that is not a switch.
fn shared_arg(spec: &'static OptionSpec, flag: &'static str) -> Arg {
    let check = move |s: &str| spec.check_flag_value(s).map(|()| s.to_string());
    Arg::new(spec.key())
        .long(long(flag))
        .help(spec.help())
        .help_heading(spec.topic().heading())
        .value_name(spec.value_name())
        .action(if spec.is_list() {
            ArgAction::Append
        } else {
            ArgAction::Set
        })
        .value_parser(ValueParser::new(check))
}

/// The switch that turns a [`Flag::Shared`] boolean off: `--no-journal` for `--journal`.
/// Every boolean flag is such a pair (`--pin` / `--no-pin` is declared as one in the
/// registry), the last one given winning.
fn off_switch(flag: &'static str) -> &'static str {
    // Clap wants `&'static str` names: each is made once, for the life of the process.
    static OFF: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    let table = OFF.get_or_init(|| {
        options()
            .iter()
            .filter_map(|o| match o.flag() {
                Flag::Shared(f) if o.is_switch() => {
                    let off: &'static str = Box::leak(format!("--no-{}", long(f)).into_boxed_str());
                    Some((f, off))
                }
                _ => None,
            })
            .collect()
    });
    table
        .iter()
        .find(|(on, _)| *on == flag)
        .map(|(_, off)| *off)
        .expect("every boolean flag has an off switch")
}

/// A pair of switches setting `key` on (`on`) and off (`off`); the on switch's id is the key,
/// the off switch's its flag (no key has a `-`, so the two never clash).
fn switch_pair(
    cmd: clap::Command,
    spec: &'static OptionSpec,
    on: &'static str,
    off: &'static str,
    off_help: String,
) -> clap::Command {
    let heading = spec.topic().heading();
    cmd.arg(
        Arg::new(spec.key())
            .long(long(on))
            .help(spec.help())
            .help_heading(heading)
            .action(ArgAction::SetTrue)
            .overrides_with(off),
    )
    .arg(
        Arg::new(off)
            .long(long(off))
            .help(off_help)
            .help_heading(heading)
            .action(ArgAction::SetTrue)
            .overrides_with(spec.key()),
    )
}

/// The on and off switches of a boolean option's flag, if it has them.
fn switches(spec: &'static OptionSpec) -> Option<(&'static str, &'static str)> {
    match spec.flag() {
        Flag::Shared(flag) if spec.is_switch() => Some((flag, off_switch(flag))),
        Flag::Negatable { on, off, .. } => Some((on, off)),
        _ => None,
    }
}

/// Rewrites the boolean flags' old spellings, `--journal true|false` and `--journal=false`,
/// into the switches (`--journal`, `--no-journal`), so that scripts written for them keep
/// working; they are no longer shown in `--help`.
pub fn old_switch_values(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let bool_flags: Vec<&'static str> = options()
        .iter()
        .filter_map(|o| match o.flag() {
            Flag::Shared(flag) if o.is_switch() => Some(flag),
            _ => None,
        })
        .collect();
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if text == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        let spelled = bool_flags.iter().find_map(|f| {
            if text == *f {
                let next = args.peek().map(|a| a.to_string_lossy().into_owned());
                match next.as_deref() {
                    Some(v @ ("true" | "false")) => Some((*f, v == "true", true)),
                    _ => None,
                }
            } else {
                match text.strip_prefix(f).and_then(|r| r.strip_prefix('=')) {
                    Some(v @ ("true" | "false")) => Some((*f, v == "true", false)),
                    _ => None,
                }
            }
        });
        match spelled {
            Some((flag, on, took_next)) => {
                if took_next {
                    args.next();
                }
                out.push(if on {
                    flag.into()
                } else {
                    format!("--no-{}", long(flag)).into()
                });
            }
            None => out.push(arg),
        }
    }
    out
}

impl clap::Args for Options {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for spec in options() {
            match spec.flag() {
                Flag::Negatable { on, off, off_help } => {
                    cmd = switch_pair(cmd, spec, on, off, off_help.to_string());
                }
                Flag::Shared(flag) if spec.is_switch() => {
                    let off = off_switch(flag);
                    cmd = switch_pair(cmd, spec, flag, off, format!("Set {} to false", spec.key()));
                }
                Flag::Shared(flag) => cmd = cmd.arg(shared_arg(spec, flag)),
                // `--out`, `--urls`, `--files` belong to the subcommands; the rest has no flag.
                _ => {}
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for Options {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut opts = Options::default();
        opts.update_from_arg_matches(m)?;
        Ok(opts)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        let given = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        for spec in options() {
            if let Some((on, off)) = switches(spec) {
                // overrides_with leaves only the last of the two given.
                let value = if given(spec.key()) && m.get_flag(spec.key()) {
                    Some((on, "true"))
                } else if given(off) && m.get_flag(off) {
                    Some((off, "false"))
                } else {
                    None
                };
                if let Some((flag, v)) = value {
                    self.given.retain(|(k, _, _)| *k != spec.key());
                    self.given.push((spec.key(), flag, v.to_string()));
                }
                continue;
            }
            match spec.flag() {
                Flag::Shared(flag) if given(spec.key()) => {
                    self.given.retain(|(k, _, _)| *k != spec.key());
                    for v in m.get_many::<String>(spec.key()).into_iter().flatten() {
                        self.given.push((spec.key(), flag, v.clone()));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Options {
    /// The `--log-format` given, if any.
    pub fn log_format(&self) -> Option<LogFormat> {
        self.given
            .iter()
            .rev()
            .find(|(k, _, _)| *k == "log.format")
            .and_then(|(_, _, v)| v.parse().ok())
    }

    /// The flags given, as a configuration layer.
    fn layer(&self) -> Result<ConfigLayer, Failure> {
        ConfigLayer::from_flags(self.given.iter().map(|(k, f, v)| (*k, *f, v.as_str())))
            .map_err(|d| lines(&d))
    }
}

/// Which configuration key each subcommand flag that was given set (`--out`, `--files`), for
/// error messages; the registry's flags name themselves in their layer.
pub type FlagsSet = Vec<(&'static str, &'static str)>;

/// The problems, one message per line.
pub fn lines(diags: &[Diagnostic]) -> Failure {
    Failure::Errors(diags.iter().map(|d| d.to_string()).collect())
}

/// The configuration layers below the flags: the file, if any, then the environment. Every
/// problem in either is reported at once.
fn layers(file: Option<&Path>) -> Result<Vec<ConfigLayer>, Failure> {
    let mut layers = Vec::new();
    let mut diags = Vec::new();
    if let Some(path) = file {
        match ConfigLayer::from_file(path) {
            Ok(l) => layers.push(l),
            Err(d) => diags.extend(d),
        }
    }
    let vars = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    match ConfigLayer::from_env(vars) {
        Ok(l) => layers.push(l),
        Err(d) => diags.extend(d),
    }
    if diags.is_empty() {
        Ok(layers)
    } else {
        Err(lines(&diags))
    }
}

/// The log format, known even when the configuration is wrong (so that its errors are written
/// in it): the flag's, else `PINFLOW_LOG_FORMAT`'s, else the file's `log.format`, else text.
/// A value that cannot be read at one level is passed over.
pub fn log_format(file: Option<&Path>, flag: Option<LogFormat>) -> LogFormat {
    let from_env = || {
        std::env::var(env_name("log.format"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
    };
    let from_file = || {
        let path = file?;
        let text = std::fs::read_to_string(path).ok()?;
        let (layer, _) = ConfigLayer::from_toml_partial(&path.display().to_string(), &text);
        Config::from_layers(&[layer]).ok().map(|c| c.log.format)
    };
    flag.or_else(from_env)
        .or_else(from_file)
        .unwrap_or(LogFormat::Text)
}

/// The configuration and its layers: defaults < file < environment < flags (the last layer).
/// The caller sets `out` (and anything else it decides) and then calls [`validated`].
pub fn load(file: Option<&Path>, opts: &Options) -> Result<(Config, Vec<ConfigLayer>), Failure> {
    let mut layers = layers(file)?;
    layers.push(opts.layer()?);
    let cfg = Config::from_layers(&layers).map_err(|d| lines(&d))?;
    Ok((cfg, layers))
}

/// Whether a flag set this key (the flags are the last of the layers of [`load`]).
pub fn flag_given(layers: &[ConfigLayer], key: &str) -> bool {
    layers.last().is_some_and(|flags| flags.is_set(key))
}

/// Every problem of the final configuration, each naming where its value came from: the
/// subcommand flag in `set`, or the last layer that set it.
pub fn validated(cfg: Config, layers: &[ConfigLayer], set: &FlagsSet) -> Result<Config, Failure> {
    let mut problems = cfg.problems_in(layers);
    if problems.is_empty() {
        return Ok(cfg);
    }
    for p in &mut problems {
        if let Some((_, flag)) = set.iter().find(|(k, _)| Some(*k) == p.key.as_deref()) {
            p.origin = Some(Origin {
                name: flag.to_string(),
                line: None,
            });
        }
    }
    Err(lines(&problems))
}

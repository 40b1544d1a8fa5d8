//! The `pinflow` command: `demo`, `run`, `inspect`, `bench`, `sim`, `config`, and `completions` and `man`
//! for installing.
//!
//! Settings come from, each overriding the one before: built-in defaults, the `--config` TOML
//! file, `PINFLOW_*` environment variables, and the flags.
//!
//! Exit codes: 0 success; 1 the run could not be done (configuration, a bad work source,
//! output, an output file that exists without `--overwrite`, internal error); 2 bad command
//! line; 3 the run finished but some requests failed for good (their URLs and reasons are in
//! the dead-letter file); 4 the run finished but more records were dead-lettered than
//! `writer.max_dead_letters` allows; 5 a one-shot run was stopped (SIGINT/SIGTERM) with work
//! left; 130 a second signal. Of several, the first of 5, 3, 4 (`runtime::finish`). A standard
//! output closed by its reader (`| head`) changes none of them (see `stdout.rs`). The error
//! lines of exit 1 are `pinflow: error: ...`, or log lines of level ERROR when the log format
//! is JSON.
//!
//! Conventions: every boolean flag is a pair of switches, `--journal` / `--no-journal` (the last
//! given wins; the older `--journal true|false` is still read); byte sizes take units
//! (`64MiB`); durations take units, or seconds (`30s`, `30`); `--records` of `demo`, `sim` and
//! `bench` is the number of records to fetch, at least 1.

#[macro_use]
mod stdout;

mod alloc;
mod bench;
mod config;
mod demo;
mod inspect;
mod options;
mod progress;
mod run;
mod runtime;
mod sim;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use options::Options;

/// `--records`: a number of records, at least 1 (a run of none would fetch nothing; it used
/// to fetch one all the same).
fn records_arg(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (it is the number of records to fetch)".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number of records")),
    }
}

#[derive(Parser)]
#[command(
    name = "pinflow",
    version,
    about = "HTTP JSON logs → pinned-thread pipeline → Parquet, nothing lost",
    after_help = "Settings: built-in defaults < --config FILE < PINFLOW_* environment variables \
                  < flags. `pinflow config default` prints every setting with its default."
)]
struct Cli {
    /// TOML configuration file (`pinflow config default` prints a complete one).
    /// PINFLOW_* environment variables and flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve 20,000 generated log records from the built-in simulator and process them.
    Demo {
        /// Output Parquet file [default: pinflow-demo.parquet; the config file's `out` is
        /// not used].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Records to fetch, one per request (at least 1).
        #[arg(long, default_value_t = 20_000, value_parser = records_arg)]
        records: u64,
        #[command(flatten)]
        opts: Options,
    },
    /// Fetch real endpoints: one URL, a URL file (one per line), `-` for stdin, or a
    /// template such as `http://host/logs/{1..20000}.json` (quoted, so the shell leaves the
    /// range to pinflow).
    Run {
        /// One http(s) URL, a URL file, `-`, or a template with one `{START..END}` range
        /// [default: `source` from the config file or PINFLOW_SOURCE].
        #[arg(long, value_name = "SOURCE")]
        urls: Option<String>,
        /// Local files instead of URLs: paths, directories, glob patterns ('logs/*.ndjson'),
        /// `-` for NDJSON on stdin, or objects ('s3://BUCKET/PREFIX/*.ndjson') [default:
        /// `files` from the config file].
        #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "urls")]
        files: Vec<String>,
        /// Follow growing NDJSON files until SIGINT/SIGTERM: a path or a glob pattern
        /// ('/var/log/app/*.log'), across rotation and truncation; with the resume journal on,
        /// a restart goes on where it stopped [default: `tail` from the config file].
        #[arg(long, value_name = "PATH|GLOB", conflicts_with_all = ["urls", "files"])]
        tail: Option<String>,
        /// Output Parquet file [default: `out` from the config file or PINFLOW_OUT].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        #[command(flatten)]
        opts: Options,
    },
    /// Read or fetch the first records of a source and show what a run would write: the
    /// bodies' envelope, the schema as TOML to paste into [schema], and the first rows after
    /// the transforms. Writes nothing.
    Inspect {
        /// One http(s) URL, a URL file, `-`, or a template [default: `source` from the config
        /// file].
        #[arg(long, value_name = "SOURCE")]
        urls: Option<String>,
        /// Local files instead of URLs [default: `files` from the config file].
        #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "urls")]
        files: Vec<String>,
        /// Records to show (at least 1).
        #[arg(short = 'n', long = "records", default_value_t = 10, value_parser = records_arg)]
        records: u64,
        /// Print the rows as JSON lines, and nothing else.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: Options,
    },
    /// Throughput benchmark against the built-in simulator.
    Bench {
        /// Records to fetch (at least 1; with --per-response P, in pages of P records, the
        /// last page full).
        #[arg(long, default_value_t = 200_000, value_parser = records_arg)]
        records: u64,
        /// Floats per record.
        #[arg(long, default_value_t = 64)]
        values: usize,
        /// Records per response: 1 (one JSON object per request) or a page size (NDJSON).
        #[arg(long, default_value_t = 1)]
        per_response: u64,
        /// Output file (default: a temporary file, removed afterwards; the config file's
        /// `out` is not used).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Run three variants in one go against fresh simulators and print them as ratios:
        /// the mio fetcher, the ureq fallback, and mio with every simulator fault at 1 %.
        #[arg(long)]
        compare: bool,
        #[command(flatten)]
        opts: Options,
    },
    /// Serve the built-in log simulator until SIGINT/SIGTERM (for wrk, other clients, or a
    /// `pinflow run` in another process); prints its URLs, then its statistics on exit.
    Sim {
        /// Address to listen on; port 0 picks a free one (the printed URLs show it).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
        addr: SocketAddr,
        /// Records to fetch, as `demo --records`: the printed logs template fetches exactly
        /// these, the pages template the pages that hold them (at least 1; the server answers
        /// any id).
        #[arg(long, default_value_t = 20_000, value_parser = records_arg)]
        records: u64,
        /// Floats per record.
        #[arg(long, default_value_t = 64)]
        values: usize,
        /// Records per NDJSON page (`/pages/{j}.ndjson`).
        #[arg(long, default_value_t = 1000)]
        page_size: u64,
    },
    /// Configuration files: check one, or print the defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `pinflow completions bash > /etc/bash_completion.d/pinflow`
    /// (see docs/usage.md for zsh and fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `pinflow man > /usr/local/share/man/man1/pinflow.1`.
    Man,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Report every problem in a configuration file and in the PINFLOW_* environment
    /// variables, each with its line or variable; exit 1 if any.
    Check {
        /// The TOML file (or give it with --config); neither: the environment alone.
        file: Option<PathBuf>,
    },
    /// Print a complete configuration file: every key, its default and what it does.
    Default,
}

/// Why the command stopped before running.
enum Failure {
    /// Bad command line of `pinflow run` (exit 2).
    Usage(String),
    /// Bad configuration or a failed run (exit 1), one message per line.
    Errors(Vec<String>),
    /// A command line that asks for two things at once (exit 2).
    Refused(String),
}

impl From<pinflow::Error> for Failure {
    fn from(e: pinflow::Error) -> Failure {
        Failure::Errors(vec![e.to_string()])
    }
}

fn main() -> ExitCode {
    runtime::fix_mmap_threshold();
    let args = options::old_switch_values(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // An unquoted `{1..5000}` reaches us as 5000 words: clap's "unexpected argument"
            // does not say why.
            if e.kind() == clap::error::ErrorKind::UnknownArgument {
                let args: Vec<String> = std::env::args().collect();
                if let Some(hint) = run::split_urls_hint(&args) {
                    eprintln!("pinflow: error: {hint}");
                    return ExitCode::from(2);
                }
            }
            e.exit()
        }
    };
    let flag_format = match &cli.command {
        Command::Demo { opts, .. }
        | Command::Run { opts, .. }
        | Command::Inspect { opts, .. }
        | Command::Bench { opts, .. } => opts.log_format(),
        _ => None,
    };
    let file = cli.config.clone();
    stdout::exit_code(match run(cli.config.as_deref(), cli.command) {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            let mut cmd = Cli::command();
            cmd.build();
            let run = cmd.find_subcommand_mut("run").expect("the run subcommand");
            run.error(clap::error::ErrorKind::MissingRequiredArgument, msg)
                .exit()
        }
        Err(Failure::Errors(lines)) => {
            runtime::fatal(&lines, options::log_format(file.as_deref(), flag_format));
            ExitCode::from(1)
        }
        Err(Failure::Refused(msg)) => {
            eprintln!("pinflow: error: {msg}");
            ExitCode::from(2)
        }
    })
}

/// Runs one command.
fn run(file: Option<&Path>, cmd: Command) -> Result<ExitCode, Failure> {
    match cmd {
        Command::Demo { out, records, opts } => demo::demo(file, out, records, &opts),
        Command::Run {
            urls,
            files,
            tail,
            out,
            opts,
        } => run::run(file, urls, files, tail, out, &opts),
        Command::Inspect {
            urls,
            files,
            records,
            json,
            opts,
        } => inspect::inspect(file, urls, files, records as usize, json, &opts),
        Command::Bench {
            records,
            values,
            per_response,
            out,
            json,
            compare,
            opts,
        } => {
            if compare {
                bench::compare_fetchers(file, records, values, per_response, &opts)
            } else {
                bench::bench(file, records, values, per_response, out, json, &opts)
            }
        }
        Command::Sim {
            addr,
            records,
            values,
            page_size,
        } => sim::sim(addr, records, values, page_size),
        Command::Config(ConfigCommand::Default) => Ok(config::default()),
        Command::Config(ConfigCommand::Check { file: given }) => match (given.as_deref(), file) {
            (Some(a), Some(b)) if a != b => Err(Failure::Refused(format!(
                "config check was given two files, {} and --config {}: give one",
                a.display(),
                b.display()
            ))),
            (a, b) => config::check(a.or(b)),
        },
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pinflow", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            out!("{}", man_page());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The manual page, pinflow(1): clap_mangen's sections of the command (synopsis, description,
/// global options), its subcommands, and the options of `run` (which `demo` and `bench` share)
/// under their topics' headings.
fn man_page() -> String {
    let mut cmd = Cli::command();
    cmd.build();
    let run = cmd
        .find_subcommand("run")
        .expect("the run subcommand")
        .clone()
        .mut_args(|a| match a.get_id().as_str() {
            // Both are in the page's own OPTIONS already.
            "config" | "help" => a.hide(true),
            // The subcommand's own options get a heading of their own, not a second OPTIONS.
            _ if a.get_help_heading().is_none() => a.help_heading("Run options"),
            _ => a,
        });
    let mut subcommands = String::from(".SH SUBCOMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        subcommands.push_str(&format!(
            ".TP\n\\fBpinflow {}\\fR\n{}\n",
            roff_text(sub.get_name()),
            roff_text(&sub.get_about().map(|a| a.to_string()).unwrap_or_default())
        ));
    }
    let shared = format!(
        ".SH \"OPTIONS OF DEMO, RUN AND BENCH\"\n{}\n",
        roff_text(
            "The options of `pinflow run`; `demo` and `bench` take the same ones except --urls \
             and --files. Each is also a configuration key and a PINFLOW_* variable: \
             `pinflow config default` lists them."
        )
    );
    let settings = format!(
        ".SH SETTINGS\n{}\n",
        roff_text(
            &cmd.get_after_help()
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    );
    let top = clap_mangen::Man::new(cmd);
    let run = clap_mangen::Man::new(run);
    let part = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut part = Vec::new();
        // Writing to a Vec does not fail.
        let _ = render(&mut part);
        let text = String::from_utf8_lossy(&part).into_owned();
        // Each rendering starts with roff's apostrophe preamble: the page has it once.
        text.strip_prefix(ROFF_PREAMBLE)
            .map(str::to_string)
            .unwrap_or(text)
    };
    // The preamble after the title, so that the page starts with `.TH` as man(7) has it.
    let page = [
        part(&|w| top.render_title(w)),
        ROFF_PREAMBLE.to_string(),
        part(&|w| top.render_name_section(w)),
        part(&|w| top.render_synopsis_section(w)),
        part(&|w| top.render_description_section(w)),
        part(&|w| top.render_options_section(w)),
        subcommands,
        shared,
        part(&|w| run.render_options_section(w)),
        settings,
        part(&|w| top.render_version_section(w)),
    ]
    .concat();
    // groff reads ASCII: anything else (the `→` of the description) as its Unicode escape.
    page.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\[u{:04X}]", u32::from(c))
            }
        })
        .collect()
}

/// `text` as a roff text line: backslashes and dashes escaped, a leading `.` or `'` made
/// literal.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// What the `roff` crate writes before every document it renders.
const ROFF_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

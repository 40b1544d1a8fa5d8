//! The `pinflow` command: `demo`, `run`, `bench` and `config`.
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
//! output closed by its reader (`| head`) changes none of them (see `stdout.rs`).

#[macro_use]
mod stdout;

mod alloc;
mod bench;
mod config;
mod demo;
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
        /// Records to fetch (one per request).
        #[arg(long, default_value_t = 20_000)]
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
        /// or `-` for NDJSON on stdin [default: `files` from the config file].
        #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "urls")]
        files: Vec<String>,
        /// Output Parquet file [default: `out` from the config file or PINFLOW_OUT].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        #[command(flatten)]
        opts: Options,
    },
    /// Throughput benchmark against the built-in simulator.
    Bench {
        /// Records to process.
        #[arg(long, default_value_t = 200_000)]
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
        /// Records covered by the printed URL templates (the server answers any id).
        #[arg(long, default_value_t = 20_000)]
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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Report every problem in a configuration file, each with its line; exit 1 if any.
    Check {
        /// The TOML file.
        file: PathBuf,
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
}

impl From<pinflow::Error> for Failure {
    fn from(e: pinflow::Error) -> Failure {
        Failure::Errors(vec![e.to_string()])
    }
}

fn main() -> ExitCode {
    runtime::fix_mmap_threshold();
    let cli = match Cli::try_parse() {
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
            for line in lines {
                eprintln!("pinflow: error: {line}");
            }
            ExitCode::from(1)
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
            out,
            opts,
        } => run::run(file, urls, files, out, &opts),
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
        Command::Config(ConfigCommand::Check { file }) => config::check(&file),
    }
}

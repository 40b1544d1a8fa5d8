//! The crate's error type: what went wrong, and where.

use std::io;
use std::path::PathBuf;

/// Everything that can stop a pipeline run or reject its configuration.
///
/// Problems with single work items (a dead host, an HTTP 503, a malformed record) are **not**
/// errors of the run: they end up in the ledger of [`Summary`](crate::Summary) and in the
/// dead-letter file, and the run goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option or argument has a value pinflow cannot use.
    #[error("invalid configuration: {what}: {why}")]
    Config {
        /// The option, e.g. `--queue-capacity`.
        what: String,
        /// Why the value was rejected.
        why: String,
    },
    /// A work source (URL list file, template) cannot be read or understood.
    #[error("work source {source_name}: {why}")]
    Source {
        /// The file name, `-` for standard input, or the template.
        source_name: String,
        /// What is wrong with it.
        why: String,
    },
    /// An output file (Parquet or dead letters) could not be created, written or finalized.
    #[error("output {path}: {op}: {cause}")]
    Output {
        /// The path being written.
        path: PathBuf,
        /// The operation that failed (create, write, sync, rename, ...).
        op: &'static str,
        /// The underlying error, as text (I/O and Parquet errors both end here).
        cause: String,
    },
    /// The resume journal does not check out (damaged, truncated, edited, or its files
    /// changed) or is in use by another run, found before anything was fetched, renamed or
    /// deleted; or a checkpoint would commit a name the journal cannot hold.
    #[error("journal {}: {why}", at_line(.path, *.line))]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The line at fault (1 is the first), when one is.
        line: Option<u64>,
        /// What is wrong, and how to start afresh.
        why: String,
    },
    /// The event loop or a socket failed in a way that is not one request's fault.
    #[error("fetcher: {op}: {source}")]
    Fetch {
        /// What the fetcher was doing.
        op: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A user stage (a transform or a sink) failed or panicked; the run was stopped.
    #[error("{stage}: {why}")]
    Stage {
        /// Which stage, e.g. ``transform `filter` ``.
        stage: String,
        /// Its error, or the panic message.
        why: String,
    },
    /// A pipeline thread could not be started or ended abnormally.
    #[error("thread {thread}: {why}")]
    Thread {
        /// The thread's name, e.g. `pinflow-parse-0`.
        thread: String,
        /// What happened (a panic message, a spawn error).
        why: String,
    },
}

impl Error {
    pub(crate) fn config(what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Config {
            what: what.into(),
            why: why.into(),
        }
    }

    pub(crate) fn output(
        path: impl Into<PathBuf>,
        op: &'static str,
        cause: impl ToString,
    ) -> Error {
        Error::Output {
            path: path.into(),
            op,
            cause: cause.to_string(),
        }
    }
}

/// `PATH:LINE`, or `PATH` without a line.
fn at_line(path: &std::path::Path, line: Option<u64>) -> String {
    match line {
        Some(n) => format!("{}:{n}", path.display()),
        None => path.display().to_string(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

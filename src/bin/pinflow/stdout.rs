//! Standard output that a closed pipe does not crash: every line the command prints goes
//! through `out!` and `outln!`, never `print!`.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader is gone (`pinflow config default |
//! head -1`) fails with EPIPE, and `println!` turns that into a panic: exit 101 and a
//! backtrace. Unix tools end quietly instead. Here the first EPIPE closes standard output for
//! the rest of the process: later output is dropped without a word, and the exit status is the
//! command's own (0, or 3 for failed requests): the reader chose to stop reading, and what the
//! command did (the Parquet files a run wrote) is done all the same. SIGPIPE itself stays
//! ignored rather than restored: the fetcher, the simulator and the metrics endpoint write to
//! sockets, where a peer that hangs up is a per-connection error, never the end of the process.
//!
//! Any other write error (a full disk behind `> file`) is reported once on stderr and makes the
//! exit status 1, since output that was asked for was lost.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};

/// Writes go through.
const OPEN: u8 = 0;
/// The reader closed the pipe: output is dropped quietly.
const CLOSED: u8 = 1;
/// Another error: reported once, output dropped, exit status 1.
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OPEN);

/// Writes `args` to standard output and flushes, unless an earlier write failed. Called by the
/// `out!` and `outln!` macros.
pub fn write(args: std::fmt::Arguments<'_>) {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return;
    }
    let mut lock = std::io::stdout().lock();
    // Flushed at once, so an EPIPE surfaces here, not at exit.
    let Err(e) = lock.write_fmt(args).and_then(|()| lock.flush()) else {
        return;
    };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        STATE.store(CLOSED, Ordering::Relaxed);
    } else if STATE.swap(FAILED, Ordering::Relaxed) == OPEN {
        eprintln!("pinflow: error: cannot write to standard output: {e}");
    }
}

/// The process's exit status: `code`, or 1 when standard output failed with anything other
/// than a closed pipe.
pub fn exit_code(code: ExitCode) -> ExitCode {
    if STATE.load(Ordering::Relaxed) == FAILED {
        ExitCode::from(1)
    } else {
        code
    }
}

/// `print!` through [`write`]: a closed standard output is not a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// `println!` through [`write`]: a closed standard output is not a panic.
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

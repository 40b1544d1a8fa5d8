//! Small file-system helpers shared by the writer and the journal: a leaf module (it uses
//! nothing else of the crate), so both can depend on it without depending on each other.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

/// `dir/name.parquet` + `.x` → `dir/name.parquet.x`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory holding `path`, so a new or renamed entry survives a crash.
pub(crate) fn sync_parent(path: &Path) {
    sync_dir(parent_dir(path));
}

/// fsyncs a directory, making renames and new entries in it durable (where the platform allows).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

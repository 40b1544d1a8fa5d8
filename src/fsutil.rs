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

/// Whether process `pid` may still be running: `kill(pid, 0)` finds it (or finds it but may
/// not signal it: another user's). Where that cannot be asked, `/proc/PID` on Linux, and
/// otherwise yes, so a caller that deletes a dead process's files deletes nothing. A pid reused
/// by an unrelated process reads as running: its files are kept, never a live one's deleted.
pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(all(unix, feature = "http"))]
    {
        let Ok(p) = libc::pid_t::try_from(pid) else {
            return true;
        };
        if p <= 0 {
            return true;
        }
        // SAFETY: signal 0 is not sent; kill only checks that the process exists.
        let r = unsafe { libc::kill(p, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(all(unix, feature = "http")))]
    {
        let proc = Path::new("/proc");
        !(cfg!(target_os = "linux") && proc.join("self").exists())
            || proc.join(pid.to_string()).exists()
    }
}

/// `path` made absolute with its symbolic links resolved, as far as it exists: canonicalized
/// when it exists, otherwise its parent canonicalized plus its file name (a file about to be
/// created), otherwise made absolute as it is. Two paths naming the same file resolve alike,
/// however they are spelled (`./a`, `dir/../a`, a link to the directory).
pub(crate) fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    if let (Some(name), Ok(dir)) = (path.file_name(), parent_dir(path).canonicalize()) {
        return dir.join(name);
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// An advisory lock held through a lock file: `flock` on the open file (what the journal
/// uses too), so the kernel releases it when the process ends, however it ends. The file
/// holds the holder's process id, for the message of whoever is refused. Dropping it
/// removes the file, then unlocks it.
#[derive(Debug)]
pub(crate) struct LockFile {
    path: PathBuf,
    /// Held open: closing it releases the lock.
    _file: File,
}

/// Why [`LockFile::try_acquire`] did not get the lock.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another open file holds it (another process, or another run of this one); `pid` is
    /// the holder's process id as its lock file says, when it could be read.
    Held {
        /// The holder's process id.
        pid: Option<u32>,
    },
    /// The lock file could not be created, locked or written.
    Io(std::io::Error),
}

impl LockFile {
    /// Takes the lock of `path` (creating the file) without waiting, and writes this
    /// process's id into it.
    pub(crate) fn try_acquire(path: &Path) -> std::result::Result<LockFile, LockError> {
        use std::io::{Read, Write};
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(LockError::Io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Held {
                        pid: text.trim().parse().ok(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
            }
            // A holder removes its file before it unlocks it: a file opened just before that
            // is no longer the one at `path`, and its lock guards nothing. Lock the file that
            // is there now instead.
            if !same_file(&file, path) {
                continue;
            }
            file.set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .map_err(LockError::Io)?;
            return Ok(LockFile {
                path: path.to_path_buf(),
                _file: file,
            });
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Removed while still locked (the file closes after this), so nobody can lock it in
        // between; a run that opened it meanwhile sees it gone and creates a new one.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the open `file` is the file at `path` now.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether the open `file` is the file at `path` now (without inode numbers: whether a file
/// is there at all).
#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_reads_as_alive_until_it_has_ended() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(process_alive(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!process_alive(child.id()), "a reaped child's pid is gone");
    }

    #[test]
    fn a_lock_is_refused_while_held_and_free_once_dropped_or_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.pinflow.lock");
        // A stale file (a killed holder's): no lock on it, so it does not block.
        std::fs::write(&path, "999999999\n").unwrap();
        let held = LockFile::try_acquire(&path).unwrap();
        let me = std::process::id();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{me}\n"));
        // flock locks belong to the open file, so a second open in this process is refused
        // as another process would be, and learns who holds it.
        match LockFile::try_acquire(&path) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(me)),
            other => panic!("taken twice: {other:?}"),
        }
        drop(held);
        assert!(!path.exists(), "the lock file is removed on release");
        let again = LockFile::try_acquire(&path).unwrap();
        drop(again);
    }

    #[test]
    fn paths_resolve_alike_however_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("a"), "").unwrap();
        assert_eq!(resolve(&d.join("sub/../a")), resolve(&d.join("a")));
        // Not created yet: the directory resolved, the name kept.
        assert_eq!(
            resolve(&d.join("sub/../new")),
            d.canonicalize().unwrap().join("new")
        );
    }
}

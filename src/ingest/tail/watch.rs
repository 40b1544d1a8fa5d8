//! Waiting for files to change: inotify on the directories the tail reads (Linux), or a
//! plain sleep of `tail_poll_interval` where there is none.
//!
//! inotify only shortens the wait: a change wakes the tail at once, and the tail looks at
//! every file it follows and at the pattern's matches at least every poll interval anyway. So
//! a directory that cannot be watched (not there yet, out of watches), a file rotated into
//! another directory, or a file system without inotify (NFS) is still followed, by polling.

use std::path::Path;
use std::time::Duration;

/// How often a wait looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// Wakes the tail when a watched directory changes, or after the poll interval.
pub struct Watch {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
    /// Directories watched.
    watched: Vec<std::path::PathBuf>,
}

impl Watch {
    /// A watch with no directory yet; `inotify` off (or unavailable) sleeps instead.
    pub fn new(inotify: bool) -> Watch {
        #[cfg(not(target_os = "linux"))]
        let _ = inotify;
        Watch {
            #[cfg(target_os = "linux")]
            fd: if inotify { inotify_init() } else { None },
            watched: Vec::new(),
        }
    }

    /// Whether changes wake the tail (inotify is on), rather than only the poll interval.
    pub fn is_live(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.fd.is_some() && !self.watched.is_empty();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Watches `dir` (once) for appends, new files, renames and removals in it. A directory
    /// that cannot be watched is polled; the next call tries again.
    pub fn add(&mut self, dir: &Path) {
        let new = !self.watched.iter().any(|d| d == dir);
        #[cfg(not(target_os = "linux"))]
        let _ = new;
        #[cfg(target_os = "linux")]
        if let (Some(fd), true) = (&self.fd, new) {
            use std::os::fd::AsRawFd;
            use std::os::unix::ffi::OsStrExt;
            let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
                return;
            };
            let mask = libc::IN_MODIFY
                | libc::IN_CREATE
                | libc::IN_MOVED_FROM
                | libc::IN_MOVED_TO
                | libc::IN_DELETE
                | libc::IN_CLOSE_WRITE
                | libc::IN_ATTRIB;
            // SAFETY: `fd` is an open inotify descriptor and `c` a NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
            if wd >= 0 {
                self.watched.push(dir.to_path_buf());
            }
        }
    }

    /// Waits until a watched directory changes, `timeout` passes or `stop` is set, whichever
    /// is first (`stop` is looked at every [`STOP_CHECK`]: a stop must not wait for a long
    /// poll interval).
    pub fn wait(&mut self, timeout: Duration, stop: &std::sync::atomic::AtomicBool) {
        let started = std::time::Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if self.wait_once(left.min(STOP_CHECK)) {
                return;
            }
        }
    }

    /// One wait of at most `timeout`; whether a watched directory changed.
    fn wait_once(&mut self, timeout: Duration) -> bool {
        #[cfg(target_os = "linux")]
        if let (Some(fd), false) = (&self.fd, self.watched.is_empty()) {
            use std::os::fd::AsRawFd;
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd, for the length given.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                // What changed does not matter (every file is looked at): drain the events.
                let mut buf = [0u8; 4096];
                loop {
                    // SAFETY: reads into a buffer of the length given; the fd is non-blocking.
                    let r =
                        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    if r <= 0 {
                        break;
                    }
                }
            }
            return n > 0;
        }
        std::thread::sleep(timeout);
        false
    }
}

#[cfg(target_os = "linux")]
fn inotify_init() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: no arguments but flags; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    // SAFETY: a descriptor inotify_init1 just returned, owned by nothing else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

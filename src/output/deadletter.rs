//! The dead-letter log: one JSON object per line for every record, body or request that did not
//! become a row: `{"time", "kind", "url", "reason", "attempts", "excerpt"}`.
//!
//! The file is rotated by size: before an entry would take it past the limit, `NAME` is
//! renamed to `NAME.1` (`NAME.1` to `NAME.2`, and so on; the oldest beyond the number kept is
//! deleted) and a new `NAME` is started, so the files never grow without bound.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::batch::DeadLetter;
use crate::error::{Error, Result};
use crate::json::write_string;
use crate::time::format_rfc3339_micros;

/// Appends dead letters to an NDJSON file, created on the first one.
pub struct DeadLetterLog {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    line: Vec<u8>,
    /// Whether anything was ever written (the file may be closed and re-opened).
    used: bool,
    /// Bytes in the open file (what it held when opened plus what was appended since).
    size: u64,
    /// Rotate before the file would pass this many bytes; 0: never.
    max_bytes: u64,
    /// Rotated files kept.
    keep: usize,
}

impl DeadLetterLog {
    /// A log that will write to `path` (nothing is created until there is something to log),
    /// never rotated.
    pub fn new(path: PathBuf) -> DeadLetterLog {
        DeadLetterLog {
            path,
            file: None,
            line: Vec::with_capacity(512),
            used: false,
            size: 0,
            max_bytes: 0,
            keep: 0,
        }
    }

    /// Rotates the file before an entry would take it past `max_bytes` (0: never), keeping
    /// `keep` rotated files `NAME.1` (the newest) to `NAME.{keep}`. A file always takes at
    /// least one entry, so one longer than `max_bytes` gets a file of its own.
    pub fn with_rotation(mut self, max_bytes: u64, keep: usize) -> DeadLetterLog {
        self.max_bytes = max_bytes;
        self.keep = keep;
        self
    }

    /// Appends one entry.
    pub fn write(&mut self, d: &DeadLetter) -> Result<()> {
        self.format(d);
        if self.file.is_none() {
            self.open()?;
        }
        let len = self.line.len() as u64;
        if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
            self.open()?;
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(&self.line)
            .map_err(|e| Error::output(&self.path, "write", e))?;
        self.size += len;
        Ok(())
    }

    /// Opens (creates, or appends to) the file and learns its size.
    fn open(&mut self) -> Result<()> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::output(&self.path, "create", e))?;
        self.size = f.metadata().map_or(0, |m| m.len());
        self.file = Some(BufWriter::new(f));
        self.used = true;
        Ok(())
    }

    /// Closes the current file (fsynced), shifts `NAME.k` to `NAME.{k+1}` (deleting the one
    /// past `keep`), renames `NAME` to `NAME.1` and fsyncs the directory; the next entry
    /// starts a new `NAME`.
    fn rotate(&mut self) -> Result<()> {
        self.finish()?;
        let numbered = |k: usize| crate::fsutil::with_suffix(&self.path, &format!(".{k}"));
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if self.keep == 0 {
            gone(fs::remove_file(&self.path))
                .map_err(|e| Error::output(&self.path, "remove full dead-letter file", e))?;
        } else {
            let oldest = numbered(self.keep);
            gone(fs::remove_file(&oldest))
                .map_err(|e| Error::output(&oldest, "remove oldest dead-letter file", e))?;
            for k in (1..self.keep).rev() {
                let (from, to) = (numbered(k), numbered(k + 1));
                gone(fs::rename(&from, &to))
                    .map_err(|e| Error::output(&from, "rotate dead-letter file", e))?;
            }
            let first = numbered(1);
            gone(fs::rename(&self.path, &first))
                .map_err(|e| Error::output(&self.path, "rotate dead-letter file", e))?;
        }
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.size = 0;
        Ok(())
    }

    /// Formats `d` as one NDJSON line into `self.line`.
    fn format(&mut self, d: &DeadLetter) {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let l = &mut self.line;
        l.clear();
        l.extend_from_slice(b"{\"time\":\"");
        format_rfc3339_micros(micros, l);
        l.extend_from_slice(b"\",\"kind\":");
        write_string(l, d.kind);
        l.extend_from_slice(b",\"url\":");
        write_string(l, &d.url);
        l.extend_from_slice(b",\"reason\":");
        write_string(l, &d.reason);
        l.extend_from_slice(format!(",\"attempts\":{},\"excerpt\":", d.attempts).as_bytes());
        write_string(l, &d.excerpt);
        l.extend_from_slice(b"}\n");
    }

    /// Hands buffered entries to the operating system, so that they are visible to readers
    /// (and survive a crash of this process) without waiting for the run to end.
    pub fn flush(&mut self) -> Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush().map_err(|e| Error::output(&self.path, "write", e)),
            None => Ok(()),
        }
    }

    /// Flushes and fsyncs; returns the path if anything was written.
    pub fn finish(&mut self) -> Result<Option<PathBuf>> {
        let Some(mut f) = self.file.take() else {
            return Ok(self.used.then(|| self.path.clone()));
        };
        f.flush()
            .map_err(|e| Error::output(&self.path, "write", e))?;
        let file = f
            .into_inner()
            .map_err(|e| Error::output(&self.path, "write", e.error().to_string()))?;
        file.sync_all()
            .map_err(|e| Error::output(&self.path, "fsync", e))?;
        Ok(Some(self.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(n: usize) -> DeadLetter {
        DeadLetter {
            kind: "record",
            url: format!("http://h/{n}"),
            reason: "bad".into(),
            excerpt: "x".repeat(100),
            attempts: 1,
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.ndjson");
        let mut log = DeadLetterLog::new(path.clone()).with_rotation(1000, 2);
        for n in 0..100 {
            log.write(&letter(n)).unwrap();
        }
        assert_eq!(log.finish().unwrap(), Some(path.clone()));
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["d.ndjson", "d.ndjson.1", "d.ndjson.2"]);
        let mut last = Vec::new();
        for name in ["d.ndjson.2", "d.ndjson.1", "d.ndjson"] {
            let text = fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 1000, "{name}: {} bytes", text.len());
            for line in text.lines() {
                let n: usize = line
                    .split("\"url\":\"http://h/")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                last.push(n);
            }
        }
        // The newest entries, in order, up to the last one written.
        assert_eq!(*last.last().unwrap(), 99);
        assert!(last.windows(2).all(|w| w[1] == w[0] + 1), "{last:?}");

        // A new log over an existing nearly full file rotates before its first entry; with
        // nothing kept, the full file is simply dropped.
        fs::write(&path, format!("{}\n", "y".repeat(990))).unwrap();
        let mut log = DeadLetterLog::new(path.clone()).with_rotation(1000, 0);
        log.write(&letter(100)).unwrap();
        log.finish().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}

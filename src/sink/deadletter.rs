//! The dead-letter log: one JSON object per line for every record, body or request that did not
//! become a row: `{"time", "kind", "url", "reason", "attempts", "excerpt"}`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
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
}

impl DeadLetterLog {
    /// A log that will write to `path` (nothing is created until there is something to log).
    pub fn new(path: PathBuf) -> DeadLetterLog {
        DeadLetterLog {
            path,
            file: None,
            line: Vec::with_capacity(512),
            used: false,
        }
    }

    /// Appends one entry.
    pub fn write(&mut self, d: &DeadLetter) -> Result<()> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| Error::output(&self.path, "create", e))?;
            self.file = Some(BufWriter::new(f));
            self.used = true;
        }
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
        let f = self.file.as_mut().expect("opened above");
        f.write_all(l)
            .map_err(|e| Error::output(&self.path, "write", e))
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

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

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

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

/// Row `i` of `rows` as one JSON object, columns in order: the excerpt of a row refused
/// after it was parsed (its original text is gone by then). Timestamps are RFC 3339 strings,
/// as they were read; a type no layout produces is written as its Arrow type name.
pub fn row_json(rows: &RecordBatch, i: usize) -> String {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (j, field) in rows.schema().fields().iter().enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_string(&mut out, field.name());
        out.push(b':');
        value_json(rows.column(j).as_ref(), i, &mut out);
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// Appends element `i` of `a` as JSON.
fn value_json(a: &dyn Array, i: usize, out: &mut Vec<u8>) {
    use arrow_array::types::*;
    if a.is_null(i) {
        out.extend_from_slice(b"null");
        return;
    }
    let mut num = |v: &dyn std::fmt::Display| out.extend_from_slice(v.to_string().as_bytes());
    match a.data_type() {
        DataType::Int8 => num(&a.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => num(&a.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => num(&a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => num(&a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => num(&a.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => num(&a.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => num(&a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => num(&a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 | DataType::Float64 => {
            let v = match a.data_type() {
                DataType::Float32 => a.as_primitive::<Float32Type>().value(i) as f64,
                _ => a.as_primitive::<Float64Type>().value(i),
            };
            // JSON has no NaN or infinities.
            match v.is_finite() {
                true => num(&v),
                false => out.extend_from_slice(b"null"),
            }
        }
        DataType::Boolean => num(&a.as_boolean().value(i)),
        DataType::Utf8 => write_string(out, a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => write_string(out, a.as_string::<i64>().value(i)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            out.push(b'"');
            format_rfc3339_micros(a.as_primitive::<TimestampMicrosecondType>().value(i), out);
            out.push(b'"');
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            match d.normalized_keys().get(i) {
                Some(&k) => value_json(d.values().as_ref(), k, out),
                None => out.extend_from_slice(b"null"),
            }
        }
        DataType::List(_) => {
            let items = a.as_list::<i32>().value(i);
            out.push(b'[');
            for k in 0..items.len() {
                if k > 0 {
                    out.push(b',');
                }
                value_json(items.as_ref(), k, out);
            }
            out.push(b']');
        }
        other => write_string(out, &other.to_string()),
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

    #[test]
    fn a_refused_row_reads_back_as_json() {
        use arrow_array::builder::{Float64Builder, ListBuilder};
        use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};
        use arrow_schema::{Field, Schema};
        use std::sync::Arc;
        let mut list = ListBuilder::new(Float64Builder::new());
        list.values().append_value(1.5);
        list.values().append_value(f64::NAN);
        list.append(true);
        list.append(false);
        let rows = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("service", DataType::Utf8, true),
                Field::new(
                    "ts",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
                Field::new(
                    "values",
                    DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
                    true,
                ),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(StringArray::from(vec![Some("a\"b"), Some("c")])),
                Arc::new(TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("UTC")),
                Arc::new(list.finish()),
            ],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&row_json(&rows, 0)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": 7, "service": "a\"b", "ts": "1970-01-01T00:00:00.000000Z",
                "values": [1.5, null]})
        );
        assert_eq!(
            row_json(&rows, 1),
            r#"{"id":null,"service":"c","ts":null,"values":null}"#
        );
    }
}

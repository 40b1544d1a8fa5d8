//! One Parquet file, written under a temporary name and renamed into place when complete.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::config::{Compression, WriterConfig};
use crate::error::{Error, Result};
use crate::schema;

/// A Parquet file being written.
pub struct ParquetFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<ArrowWriter<File>>,
}

/// The Parquet writer settings pinflow uses for `cfg`: compression, row-group size, and
/// `created_by` / key-value metadata naming the pinflow version.
pub fn writer_properties(cfg: &WriterConfig) -> Result<WriterProperties> {
    let compression = match cfg.compression {
        Compression::None => PqCompression::UNCOMPRESSED,
        Compression::Snappy => PqCompression::SNAPPY,
        Compression::Zstd(level) => PqCompression::ZSTD(
            ZstdLevel::try_new(level).map_err(|e| Error::config("compression", e.to_string()))?,
        ),
    };
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(cfg.row_group_rows))
        .set_created_by(format!("pinflow version {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "pinflow.version".into(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]))
        .build())
}

impl ParquetFile {
    /// Creates the temporary file next to `path` and writes nothing else yet. Fails early, with
    /// the path, when the directory is missing or not writable.
    pub fn create(path: &Path, cfg: &WriterConfig) -> Result<ParquetFile> {
        let name = path.file_name().ok_or_else(|| {
            Error::config("out", format!("`{}` has no file name", path.display()))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = File::create(&tmp).map_err(|e| Error::output(&tmp, "create", e))?;
        let props = writer_properties(cfg)?;
        let writer = ArrowWriter::try_new(file, schema::output_schema(), Some(props))
            .map_err(|e| Error::output(&tmp, "start parquet", e))?;
        Ok(ParquetFile {
            path: path.to_path_buf(),
            tmp,
            writer: Some(writer),
        })
    }

    /// Appends rows; a row group is flushed to disk each time it fills. Returns how many row
    /// groups this call closed, and whether rows remain buffered in an open row group.
    pub fn write(&mut self, rows: &RecordBatch) -> Result<(u64, bool)> {
        let w = self.writer.as_mut().expect("written only before finish");
        let before = w.flushed_row_groups().len();
        w.write(rows)
            .map_err(|e| Error::output(&self.tmp, "write", e))?;
        let closed = (w.flushed_row_groups().len() - before) as u64;
        Ok((closed, w.in_progress_rows() > 0))
    }

    /// Writes the footer, fsyncs, renames into place and fsyncs the directory. Returns the final
    /// path and the number of row groups.
    pub fn finish(mut self) -> Result<(PathBuf, u64)> {
        let writer = self.writer.take().expect("finished once");
        let result = self.finalize(writer);
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    fn finalize(&self, mut writer: ArrowWriter<File>) -> Result<(PathBuf, u64)> {
        // Flush the last (partial) row group, then write the footer and take the file back.
        writer
            .flush()
            .map_err(|e| Error::output(&self.tmp, "write", e))?;
        let groups = writer.flushed_row_groups().len() as u64;
        let file = writer
            .into_inner()
            .map_err(|e| Error::output(&self.tmp, "close parquet", e))?;
        file.sync_all()
            .map_err(|e| Error::output(&self.tmp, "fsync", e))?;
        drop(file);
        fs::rename(&self.tmp, &self.path)
            .map_err(|e| Error::output(&self.path, "rename into place", e))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // A directory fsync makes the rename itself durable; not every platform allows it.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok((self.path.clone(), groups))
    }

    /// Gives up: removes the temporary file.
    pub fn abort(mut self) {
        self.writer.take();
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Drop for ParquetFile {
    fn drop(&mut self) {
        // Dropped without finish (a failed run): never leave the temporary file behind.
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

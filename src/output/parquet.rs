//! One Parquet file, written under a temporary name and renamed into place when complete.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::footer;
use crate::config::{Compression, WriterConfig};
use crate::error::{Error, Result};

/// A Parquet file being written.
pub struct ParquetFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<ArrowWriter<File>>,
    /// The created file and its properties until the first rows give the schema (a layout can
    /// be inferred from the records, so the schema is known only then).
    pending: Option<(File, WriterProperties)>,
    /// The schema of a file finished before any rows came.
    empty_schema: Option<SchemaRef>,
    /// When the oldest row of the open row group arrived; `None` while no row group is open.
    open_since: Option<Instant>,
    /// Key-value metadata known only once the rows are written, added to the footer.
    late_metadata: Vec<KeyValue>,
}

/// The key of the key-value metadata entry holding the pinflow version, in every file.
pub const VERSION_KEY: &str = "pinflow.version";

/// The Parquet writer settings pinflow uses for `cfg`: compression, row-group size, column
/// statistics with the page index, and `created_by` / key-value metadata naming the pinflow
/// version ([`VERSION_KEY`]). A [`ParquetFile`] adds, once the first rows give the schema,
/// the dictionary limit of the fixed-width columns ([`FIXED_WIDTH_DICTIONARY_BYTES`]).
pub fn writer_properties(cfg: &WriterConfig) -> Result<WriterProperties> {
    file_properties(cfg, &[])
}

/// [`writer_properties`] with more key-value metadata entries after the version (pinflow adds
/// `pinflow.source` and `pinflow.run_id`).
pub fn file_properties(cfg: &WriterConfig, metadata: &[(&str, &str)]) -> Result<WriterProperties> {
    let compression = match cfg.compression {
        Compression::None => PqCompression::UNCOMPRESSED,
        Compression::Snappy => PqCompression::SNAPPY,
        Compression::Lz4 => PqCompression::LZ4_RAW,
        Compression::Zstd(level) => PqCompression::ZSTD(
            ZstdLevel::try_new(level).map_err(|e| Error::config("compression", e.to_string()))?,
        ),
    };
    let mut kv = vec![KeyValue::new(
        VERSION_KEY.into(),
        env!("CARGO_PKG_VERSION").to_string(),
    )];
    kv.extend(
        metadata
            .iter()
            .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string())),
    );
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(cfg.row_group_rows))
        .set_max_row_group_bytes(
            usize::try_from(cfg.row_group_max_bytes)
                .ok()
                .filter(|&b| b > 0),
        )
        // Min/max per page and per column chunk, and the page index readers prune with.
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_size_limit(cfg.data_page_bytes)
        .set_created_by(format!("pinflow version {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(kv))
        .build())
}

/// The dictionary page limit of the fixed-width top-level columns (integers, floats,
/// timestamps): 8,192 distinct 8-byte values per column chunk. When a column chunk's dictionary
/// reaches it, the rest of the chunk is written in plain pages.
///
/// parquet's own limit, 1 MiB, is too late for these columns: a row group of 8-byte values
/// is rarely over 1 MiB (65,536 rows are 512 KiB), so an id, a timestamp or a computed
/// statistic, distinct in every row, kept a dictionary as large as its data for the whole row
/// group, with the hash table that builds it: memory spent to write a larger file. 64 KiB
/// still dictionary-encodes a column of fewer than 8,192 distinct values per row group (the
/// simulator's 1,024 repeating records; codes, rounded measurements); an eighth of it made the
/// simulator's file 4 % larger. Strings keep parquet's limit: the same change for them changed
/// neither memory nor file size. So do the items of list columns: the simulator's `values`
/// hold up to 65,536 distinct floats per row group, a 512 KiB dictionary that makes that
/// column several times smaller, and distinct lists pass 1 MiB within their first 2,000 rows
/// anyway.
pub const FIXED_WIDTH_DICTIONARY_BYTES: usize = 64 << 10;

/// `props` with [`FIXED_WIDTH_DICTIONARY_BYTES`] for each fixed-width top-level column of
/// `schema`.
fn with_fixed_width_dictionary_limit(
    props: WriterProperties,
    schema: &arrow_schema::Schema,
) -> WriterProperties {
    schema
        .fields()
        .iter()
        .filter(|f| f.data_type().primitive_width().is_some())
        .fold(props.into_builder(), |b, f| {
            b.set_column_dictionary_page_size_limit(
                ColumnPath::from(f.name().as_str()),
                FIXED_WIDTH_DICTIONARY_BYTES,
            )
        })
        .build()
}

/// The fewest rows of a file's first batch from which [`with_distinct_strings_plain`] judges
/// a string column: fewer say too little about the rows to come.
const DISTINCT_SAMPLE_MIN_ROWS: usize = 1024;

/// The most rows of the first batch [`with_distinct_strings_plain`] looks at.
const DISTINCT_SAMPLE_MAX_ROWS: usize = 4096;

/// `props` with dictionary encoding off for each top-level string column whose values in
/// `first` (the file's first rows) are all but all distinct and would fill the column's
/// dictionary page long before a row group ends: messages, ids, URLs with ids in them.
///
/// parquet's writer interns every value of a dictionary-encoded column until the dictionary
/// reaches its limit (1 MiB), then writes the rest of the column chunk plain, and starts
/// again with the next row group. For a column of distinct 40-byte messages that is about
/// 26,000 values hashed, compared and stored per 65,536-row group only to be given up: the
/// dictionary's hashing was the largest part of the writer's time in a Kafka read of log
/// records. Such a column is written plain from the start instead (its pages still
/// compressed), which its dictionary pages did not beat: a dictionary of distinct values
/// holds each of them once more, plus an index each.
///
/// The judgement is made once, on at least [`DISTINCT_SAMPLE_MIN_ROWS`] rows: a column with
/// at least nine tenths of its sampled values distinct, whose distinct bytes scaled to a
/// row group would pass its dictionary page limit. A column of a few thousand values repeating
/// shows far fewer than nine tenths distinct in 4,096 rows and keeps its dictionary; so does
/// one of short distinct values (codes) whose dictionary fits the limit.
fn with_distinct_strings_plain(props: WriterProperties, first: &RecordBatch) -> WriterProperties {
    let rows = first.num_rows().min(DISTINCT_SAMPLE_MAX_ROWS);
    if rows < DISTINCT_SAMPLE_MIN_ROWS {
        return props;
    }
    let group_rows = props
        .max_row_group_row_count()
        .unwrap_or(usize::MAX)
        .min(1 << 20);
    let mut plain = Vec::new();
    for (field, column) in first.schema().fields().iter().zip(first.columns()) {
        let Some(strings) = column.as_any().downcast_ref::<arrow_array::StringArray>() else {
            continue;
        };
        let path = ColumnPath::from(field.name().as_str());
        if !props.dictionary_enabled(&path) {
            continue;
        }
        let mut seen = hashbrown::HashSet::with_capacity_and_hasher(
            rows,
            foldhash::fast::RandomState::default(),
        );
        let (mut values, mut distinct_bytes) = (0usize, 0usize);
        for v in strings.iter().take(rows).flatten() {
            values += 1;
            if seen.insert(v) {
                distinct_bytes += v.len();
            }
        }
        let mostly_distinct = values >= DISTINCT_SAMPLE_MIN_ROWS && seen.len() * 10 >= values * 9;
        // Scaled by the rows sampled, nulls included: a row group holds as many nulls.
        let per_group = distinct_bytes.saturating_mul(group_rows) / rows;
        if mostly_distinct && per_group > props.column_dictionary_page_size_limit(&path) {
            plain.push(path);
        }
    }
    if plain.is_empty() {
        return props;
    }
    plain
        .into_iter()
        .fold(props.into_builder(), |b, path| {
            b.set_column_dictionary_enabled(path, false)
        })
        .build()
}

/// A Parquet error as text; an I/O error underneath (`File too large`, `No space left on
/// device`) is shown as itself, without the `External: ` prefix.
fn cause(e: ParquetError) -> String {
    match e {
        ParquetError::External(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

impl ParquetFile {
    /// Creates the temporary file next to `path` and writes nothing else yet. Fails early, with
    /// the path, when the directory is missing or not writable. The Parquet schema is that of
    /// the first rows written; a file finished without rows gets `empty_schema` (or none).
    pub fn create(
        path: &Path,
        props: WriterProperties,
        empty_schema: Option<SchemaRef>,
    ) -> Result<ParquetFile> {
        let tmp = temporary_name(path)?;
        // Readable too: the footer is read back to declare the float columns' order.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::output(&tmp, "create", e))?;
        Ok(ParquetFile {
            path: path.to_path_buf(),
            tmp,
            writer: None,
            pending: Some((file, props)),
            empty_schema,
            open_since: None,
            late_metadata: Vec::new(),
        })
    }

    /// The Arrow writer, started with the schema of `first` (the file's first rows) if this is
    /// the first use.
    fn writer(&mut self, first: Option<&RecordBatch>) -> Result<&mut ArrowWriter<File>> {
        if self.writer.is_none() {
            let (file, props) = self.pending.take().expect("a file is pending or started");
            let schema = first
                .map(RecordBatch::schema)
                .or_else(|| self.empty_schema.clone())
                .unwrap_or_else(|| std::sync::Arc::new(arrow_schema::Schema::empty()));
            let mut props = with_fixed_width_dictionary_limit(props, &schema);
            if let Some(rows) = first {
                props = with_distinct_strings_plain(props, rows);
            }
            let w = ArrowWriter::try_new(file, schema, Some(props))
                .map_err(|e| Error::output(&self.tmp, "start parquet", e))?;
            self.writer = Some(w);
        }
        Ok(self.writer.as_mut().expect("started above"))
    }

    /// Sets key-value metadata entry `key` of the footer (written when the file is sealed),
    /// replacing what an earlier call set: for what is known only once the rows are in, such
    /// as the Kafka offsets the file holds.
    pub fn set_metadata(&mut self, key: &str, value: String) {
        self.late_metadata.retain(|kv| kv.key != key);
        self.late_metadata
            .push(KeyValue::new(key.to_string(), Some(value)));
    }

    /// Gives the file another final name, in the same directory (the temporary file is
    /// renamed with it, and the directory fsynced: a journal records the new names).
    pub fn rename_to(&mut self, path: &Path) -> Result<()> {
        let tmp = temporary_name(path)?;
        fs::rename(&self.tmp, &tmp).map_err(|e| Error::output(&tmp, "rename", e))?;
        crate::fsutil::sync_parent(&tmp);
        self.tmp = tmp;
        self.path = path.to_path_buf();
        Ok(())
    }

    /// The name the file gets once finished.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends rows; a row group is flushed to disk each time it fills. Returns how many row
    /// groups this call closed, and whether rows remain buffered in an open row group.
    pub fn write(&mut self, rows: &RecordBatch) -> Result<(u64, bool)> {
        let tmp = self.tmp.clone();
        let w = self.writer(Some(rows))?;
        let before = w.flushed_row_groups().len();
        w.write(rows)
            .map_err(|e| Error::output(&tmp, "write", cause(e)))?;
        let closed = (w.flushed_row_groups().len() - before) as u64;
        let open = w.in_progress_rows() > 0;
        self.open_since = match (open, closed) {
            (false, _) => None,
            // The open row group started within this batch.
            (true, 1..) => Some(Instant::now()),
            (true, 0) => self.open_since.or(Some(Instant::now())),
        };
        Ok((closed, open))
    }

    /// When the oldest row of the open row group arrived (`None`: no open row group).
    pub fn open_since(&self) -> Option<Instant> {
        self.open_since
    }

    /// Closes the open row group, full or not, and hands its bytes to the operating system.
    /// Returns whether there was one.
    pub fn flush_row_group(&mut self) -> Result<bool> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(false);
        };
        if w.in_progress_rows() == 0 {
            return Ok(false);
        }
        w.flush()
            .map_err(|e| Error::output(&self.tmp, "write", cause(e)))?;
        w.sync().map_err(|e| Error::output(&self.tmp, "write", e))?;
        self.open_since = None;
        Ok(true)
    }

    /// The file's size so far, approximately: the bytes written plus the writer's estimate of
    /// the encoded size of the open row group (before compression, so usually high).
    pub fn estimated_size(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(0, |w| (w.bytes_written() + w.in_progress_size()) as u64)
    }

    /// Writes the footer, fsyncs, renames into place and fsyncs the directory. Returns the final
    /// path and the number of row groups.
    pub fn finish(self) -> Result<(PathBuf, u64)> {
        let sealed = self.seal()?;
        let groups = sealed.row_groups;
        Ok((sealed.publish()?, groups))
    }

    /// Writes the footer and fsyncs, leaving the file under its temporary name: complete, but
    /// not yet visible. [`SealedFile::publish`] renames it; a journal checkpoint seals every
    /// file first, commits, then publishes them.
    pub fn seal(mut self) -> Result<SealedFile> {
        let result = match self.writer(None) {
            Ok(_) => {
                let writer = self.writer.take().expect("started");
                self.close(writer)
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    fn close(&self, mut writer: ArrowWriter<File>) -> Result<SealedFile> {
        for kv in &self.late_metadata {
            writer.append_key_value_metadata(kv.clone());
        }
        // Flush the last (partial) row group, then write the footer.
        writer
            .flush()
            .map_err(|e| Error::output(&self.tmp, "write", cause(e)))?;
        let row_groups = writer.flushed_row_groups().len() as u64;
        // `finish`, not `into_inner`: that would write the footer a second time.
        let meta = writer
            .finish()
            .map_err(|e| Error::output(&self.tmp, "close parquet", cause(e)))?;
        let file = writer.inner_mut();
        // Float statistics Arrow C++ reads too (footer.rs). A footer this code cannot walk is
        // still a valid file: it keeps parquet's order, and pyarrow only loses the pruning.
        let floats = footer::float_columns_to_declare(&meta);
        if floats.contains(&true) {
            let walked = footer::declare_type_defined_order(file, &floats)
                .map_err(|e| Error::output(&self.tmp, "write", e))?;
            if let Err(why) = walked {
                tracing::warn!(
                    path = %self.tmp.display(),
                    "float columns keep the IEEE 754 total order, which pyarrow ignores: {why}"
                );
            }
        }
        file.sync_all()
            .map_err(|e| Error::output(&self.tmp, "fsync", e))?;
        Ok(SealedFile {
            tmp: self.tmp.clone(),
            path: self.path.clone(),
            row_groups,
        })
    }

    /// Gives up: removes the temporary file.
    pub fn abort(mut self) {
        self.writer.take();
        self.pending.take();
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The temporary name of a file that becomes `path`: `.NAME.tmp-PID` beside it.
fn temporary_name(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::config("out", format!("`{}` has no file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// A complete Parquet file still under its temporary name (see [`ParquetFile::seal`]).
#[derive(Debug)]
pub struct SealedFile {
    /// The temporary name.
    pub tmp: PathBuf,
    /// The final name.
    pub path: PathBuf,
    /// Row groups in it.
    pub row_groups: u64,
}

impl SealedFile {
    /// Renames the file into place and fsyncs the directory. Returns the final path.
    pub fn publish(self) -> Result<PathBuf> {
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
        Ok(self.path)
    }

    /// Gives up on it: removes the temporary file.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Drop for ParquetFile {
    fn drop(&mut self) {
        // Dropped without finish (a failed run): never leave the temporary file behind.
        if self.writer.take().is_some() || self.pending.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::{Encoding, PageType};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// The encodings of the data pages of column `col` in row group 0 of `path`.
    fn data_page_encodings(path: &Path, col: usize) -> BTreeSet<Encoding> {
        let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let pages = r
            .get_row_group(0)
            .unwrap()
            .get_column_page_reader(col)
            .unwrap();
        pages
            .map(|p| p.unwrap())
            .filter(|p| p.page_type() != PageType::DICTIONARY_PAGE)
            .map(|p| p.encoding())
            .collect()
    }

    /// Writes `rows` into `dir` with the default writer settings and reads the file back
    /// whole: its path and its rows.
    fn round_trip(rows: &RecordBatch, dir: &Path) -> (PathBuf, RecordBatch) {
        let path = dir.join("t.parquet");
        let props = writer_properties(&WriterConfig::default()).unwrap();
        let mut file = ParquetFile::create(&path, props, None).unwrap();
        file.write(rows).unwrap();
        file.finish().unwrap();
        let back: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect();
        let back = arrow_select::concat::concat_batches(&rows.schema(), &back).unwrap();
        (path, back)
    }

    /// Whether `e` is one of the dictionary encodings of data pages.
    fn dictionary_encoded(e: &Encoding) -> bool {
        matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)
    }

    #[test]
    fn float_columns_declare_the_type_defined_order_that_arrow_cpp_reads() {
        use arrow_array::types::Float64Type;
        use arrow_array::{Float32Array, ListArray};
        use parquet::basic::{ColumnOrder, SortOrder};
        use parquet::file::statistics::Statistics;

        let n = 1_000;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from_iter_values(0..n))),
            (
                "latency_ms",
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| {
                    if i == 7 {
                        f64::NAN
                    } else {
                        i as f64 / 4.0
                    }
                }))),
            ),
            (
                "ratio",
                Arc::new(Float32Array::from_iter_values(
                    (0..n).map(|i| i as f32 - 10.0),
                )),
            ),
            (
                "values",
                Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(
                    (0..n).map(|i| Some(vec![Some(i as f64), Some(-(i as f64))])),
                )),
            ),
            // Nothing but NaN: parquet's bounds are NaN, which the legacy order does not
            // allow, so this column keeps the IEEE order.
            (
                "all_nan",
                Arc::new(Float64Array::from_iter_values((0..n).map(|_| f64::NAN))),
            ),
        ];
        let rows = RecordBatch::try_from_iter(columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (path, back) = round_trip(&rows, dir.path());

        let r = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let orders = r
            .metadata()
            .file_metadata()
            .column_orders()
            .unwrap()
            .clone();
        let signed = ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED);
        assert_eq!(
            orders,
            [
                signed,
                signed,
                signed,
                signed,
                ColumnOrder::IEEE_754_TOTAL_ORDER
            ]
        );
        let stats = |col: usize| r.metadata().row_group(0).column(col).statistics().cloned();
        match stats(1) {
            // NaN left out of the bounds, as the legacy order wants.
            Some(Statistics::Double(s)) => {
                assert_eq!((s.min_opt(), s.max_opt()), (Some(&0.0), Some(&249.75)))
            }
            other => panic!("latency_ms statistics: {other:?}"),
        }
        match stats(2) {
            Some(Statistics::Float(s)) => {
                assert_eq!((s.min_opt(), s.max_opt()), (Some(&-10.0), Some(&989.0)))
            }
            other => panic!("ratio statistics: {other:?}"),
        }
        match stats(3) {
            Some(Statistics::Double(s)) => {
                assert_eq!((s.min_opt(), s.max_opt()), (Some(&-999.0), Some(&999.0)))
            }
            other => panic!("values statistics: {other:?}"),
        }
        // The file reads back whole: the footer was changed in place, not broken.
        assert_eq!(back.num_rows(), rows.num_rows());
        for c in [0, 2, 3] {
            assert_eq!(back.column(c), rows.column(c));
        }
    }

    #[test]
    fn distinct_fixed_width_columns_fall_back_to_plain_pages_and_repeating_ones_keep_a_dictionary()
    {
        // 20,000 distinct 8-byte values are 160 kB: over the fixed-width limit, under
        // parquet's 1 MiB, so without the limit they would stay dictionary-encoded. 5,000
        // distinct values (40 kB) stay under the limit and keep their dictionary.
        let n = 20_000i64;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from_iter_values(0..n))),
            (
                "mean",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 7.0),
                )),
            ),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        (0..n).map(|i| 1_700_000_000_000_000 + i * 1_000),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "rounded",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| (i % 5_000) as f64 / 10.0),
                )),
            ),
            (
                "code",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 100))),
            ),
            (
                "host",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("h{}", i % 50)),
                )),
            ),
        ];
        let rows = RecordBatch::try_from_iter(columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (path, back) = round_trip(&rows, dir.path());

        for (col, name) in [(0, "id"), (1, "mean"), (2, "ts")] {
            let encodings = data_page_encodings(&path, col);
            assert!(
                encodings.iter().any(|e| !dictionary_encoded(e)),
                "{name}: {encodings:?}"
            );
        }
        for (col, name) in [(3, "rounded"), (4, "code"), (5, "host")] {
            let encodings = data_page_encodings(&path, col);
            assert!(
                encodings.iter().all(dictionary_encoded),
                "{name}: {encodings:?}"
            );
        }
        assert_eq!(back, rows);
    }

    #[test]
    fn distinct_string_columns_are_written_plain_and_repeating_or_short_ones_keep_a_dictionary() {
        let n = 20_000usize;
        let strings = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new((0..n).map(f).collect::<StringArray>())
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            // Distinct 40-byte messages: 2.6 MB a 65,536-row group, past the 1 MiB dictionary.
            (
                "msg",
                strings(&|i| Some(format!("request {i:08} handled in the usual way"))),
            ),
            // Distinct 48-byte values, a null every other row: distinct among its values,
            // 1.5 MB a row group, nulls counted.
            (
                "sparse",
                strings(&|i| (i % 2 == 0).then(|| format!("{i:048}"))),
            ),
            // Distinct 24-byte values, a null every other row: 0.8 MB a row group, under the
            // limit (counted by their values alone, 1.6 MB, they would pass it).
            (
                "sparse_short",
                strings(&|i| (i % 2 == 0).then(|| format!("{i:024}"))),
            ),
            // 3,000 URLs repeating: 4,096 rows show about two thirds of them distinct.
            (
                "url",
                strings(&|i| Some(format!("https://example.com/items/{}", (i * 7919) % 3_000))),
            ),
            // Distinct but short: 6 bytes a value, 393 kB a row group, under the limit.
            ("code", strings(&|i| Some(format!("{i:06}")))),
            (
                "level",
                strings(&|i| Some(["INFO", "WARN"][i % 2].to_string())),
            ),
        ];
        let rows = RecordBatch::try_from_iter(columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (path, back) = round_trip(&rows, dir.path());
        for (col, name) in [(0, "msg"), (1, "sparse")] {
            let encodings = data_page_encodings(&path, col);
            assert!(
                !encodings.iter().any(dictionary_encoded),
                "{name}: {encodings:?}"
            );
        }
        for (col, name) in [(2, "sparse_short"), (3, "url"), (4, "code"), (5, "level")] {
            let encodings = data_page_encodings(&path, col);
            assert!(
                encodings.iter().all(dictionary_encoded),
                "{name}: {encodings:?}"
            );
        }
        assert_eq!(back, rows);

        // A first batch of fewer than 1,024 rows decides nothing: distinct messages keep
        // their dictionary (until it fills, as before).
        let few = rows.slice(0, 1_000);
        let (path, back) = round_trip(&few, dir.path());
        assert!(data_page_encodings(&path, 0).iter().all(dictionary_encoded));
        assert_eq!(back, few);
    }
}

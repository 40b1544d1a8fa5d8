//! [`OutputPlan`]: where a run's Parquet files go, how they are named, when they rotate and
//! what metadata they carry. The writer's outputs read it; nothing here writes rows.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::parquet::file::properties::WriterProperties;

use super::{file_properties, ParquetFile, RUN_ID_KEY, SOURCE_KEY};
use crate::config::WriterConfig;
use crate::error::{Error, Result};
use crate::fsutil::{parent_dir, sync_dir, LockError, LockFile};

/// Where output goes, when files rotate, and what metadata they carry.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// The configured output path: the file (or, rotating, the pattern's stem and directory),
    /// or with `writer.partition_by` the dataset's root directory.
    pub out: PathBuf,
    /// Parquet settings.
    pub writer: WriterConfig,
    /// Finalize the open files after this long (files with no rows are not finalized; their
    /// interval just starts again).
    pub rotate: Option<Duration>,
    /// Set (by SIGHUP, say) to make the writer close and re-open the dead-letter file.
    pub reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// What the rows come from, written as [`SOURCE_KEY`] metadata.
    pub source: String,
    /// This run's id ([`new_run_id`](super::new_run_id)), written as [`RUN_ID_KEY`] metadata.
    pub run_id: String,
    /// The output schema when the layout is fixed: what a file without rows is written with
    /// (an inferred layout's files take the schema of their first rows).
    pub schema: Option<arrow_schema::SchemaRef>,
    /// Whether Parquet files are written at all (off: rows go only to the user sinks).
    pub enabled: bool,
    /// `--out s3://BUCKET/PREFIX/`: `out` is then the local staging directory (or a file in
    /// it), and every finalized file is uploaded under the prefix.
    pub s3: Option<S3Target>,
}

impl OutputPlan {
    /// Whether files rotate: by time (`rotate`), rows or bytes; and with a journal, whose runs
    /// add files beside those of earlier runs; and to object storage, where a run's object
    /// named like the last one's would replace it (a rerun that read nothing would upload an
    /// empty `part.parquet` over the rows of the one before).
    pub fn rotates(&self) -> bool {
        self.writer.journal
            || self.s3.is_some()
            || self.rotate.is_some()
            || self.writer.rotate_rows.is_some()
            || self.writer.rotate_bytes.is_some()
    }

    /// The directory the output's files are under: `out` when partitioned, its parent
    /// otherwise. With `s3`, keys are the files' paths relative to it.
    pub fn staging_root(&self) -> &Path {
        match self.partitioned() {
            true => &self.out,
            false => parent_dir(&self.out),
        }
    }

    /// Whether rows are split into Hive-style partition directories under `out`: by
    /// `writer.partition_by`, or by Kafka topic and partition
    /// (`writer.file_per_kafka_partition`).
    pub fn partitioned(&self) -> bool {
        !self.writer.partition_by.is_empty() || self.writer.file_per_kafka_partition
    }

    /// The path of file number `seq` (unpartitioned): `out` itself without rotation, otherwise
    /// `STEM-YYYYMMDDTHHMMSSZ-NNNNN.EXT` next to it, stamped with the UTC time the file was
    /// started, so names sort by time and never collide within a run.
    pub fn path(&self, seq: u64) -> PathBuf {
        if !self.rotates() {
            return self.out.clone();
        }
        let stem = self
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pinflow".into());
        let ext = self
            .out
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let compact = compact_utc(micros);
        self.out
            .with_file_name(format!("{stem}-{compact}-{seq:05}{ext}"))
    }

    /// The path of part number `part` of `partition` (a relative directory such as
    /// `service=api/date=2026-11-24`): `out/partition/part-NNNNN.parquet`.
    pub fn partition_path(&self, partition: &str, part: u64) -> PathBuf {
        self.out
            .join(partition)
            .join(format!("part-{part:05}.parquet"))
    }

    /// The writer properties of every file: [`file_properties`] with the source and run id.
    pub fn properties(&self) -> Result<WriterProperties> {
        file_properties(
            &self.writer,
            &[(SOURCE_KEY, &self.source), (RUN_ID_KEY, &self.run_id)],
        )
    }

    /// Whether this run would replace a file that exists: one file, neither rotated nor
    /// partitioned (those take free names), and `out` already there.
    pub fn replaces_a_file(&self) -> bool {
        !self.rotates() && !self.partitioned() && self.out.exists()
    }

    /// The first file number from `from` on whose rotated name is not taken: a run started
    /// within the same second as an earlier one (a quick restart, a resumed run) must not
    /// replace its files.
    pub fn free_seq(&self, from: u64) -> u64 {
        let mut seq = from;
        while self.rotates() && self.path(seq).exists() {
            seq += 1;
        }
        seq
    }

    /// Opens unpartitioned file number `seq` (under its temporary name).
    pub fn open(&self, seq: u64) -> Result<ParquetFile> {
        ParquetFile::create(&self.path(seq), self.properties()?, self.schema.clone())
    }

    /// Checks, before anything is fetched, that output can be written. Unpartitioned: opens
    /// and returns file number 1. Partitioned: creates the root directory `out` if it is
    /// missing (its parent must exist) and checks that a file can be created in it.
    pub fn prepare(&self) -> Result<Option<(u64, ParquetFile)>> {
        if !self.partitioned() {
            let seq = self.free_seq(1);
            return self.open(seq).map(|f| Some((seq, f)));
        }
        self.create_root()?;
        let probe = self
            .out
            .join(format!(".pinflow-probe-{}", std::process::id()));
        File::create(&probe).map_err(|e| Error::output(&self.out, "create a file in", e))?;
        let _ = fs::remove_file(&probe);
        Ok(None)
    }

    /// Partitioned: creates the root directory `out` if it is missing (its parent must exist).
    fn create_root(&self) -> Result<()> {
        if !self.out.is_dir() {
            fs::create_dir(&self.out)
                .map_err(|e| Error::output(&self.out, "create directory", e))?;
            sync_dir(parent_dir(&self.out));
        }
        Ok(())
    }

    /// Checks that `out` is something this output can write, before anything is fetched:
    /// partitioned, a directory (or a link to one) or nothing yet; otherwise a regular file
    /// or nothing yet. A directory would only fail at the end, when the finished file is
    /// renamed onto it; a symbolic link would be replaced by the file, not written through;
    /// a FIFO, socket or device cannot take a file renamed into place.
    pub fn check_target(&self) -> Result<()> {
        let refuse = |why: &str| Err(Error::output(&self.out, "check", why));
        let meta = match fs::symlink_metadata(&self.out) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::output(&self.out, "check", e)),
        };
        if self.partitioned() {
            if self.out.is_dir() {
                return Ok(());
            }
            return refuse(
                "exists and is not a directory; with writer.partition_by the output is a \
                 directory of partitions",
            );
        }
        let t = meta.file_type();
        if t.is_dir() {
            return refuse(
                "is a directory; without writer.partition_by the output is one file: give \
                 a file name (such as DIR/out.parquet), or partition into the directory",
            );
        }
        if t.is_symlink() {
            return refuse(
                "is a symbolic link; the finished file is renamed into place and would \
                 replace the link, not what it points to: give the target's path",
            );
        }
        if !t.is_file() {
            return refuse(
                "is not a regular file (a FIFO, socket or device?); Parquet files are \
                 written under a temporary name and renamed into place, so the output must \
                 be a regular file or not exist yet",
            );
        }
        Ok(())
    }

    /// The lock file of this output: `OUT/.pinflow.lock` inside a partitioned output's
    /// directory, `.NAME.pinflow.lock` beside an output file `NAME` (both hidden, so dataset
    /// readers skip them).
    pub fn lock_path(&self) -> PathBuf {
        match (self.partitioned(), self.out.file_name()) {
            (false, Some(name)) => {
                let mut lock = std::ffi::OsString::from(".");
                lock.push(name);
                lock.push(".pinflow.lock");
                parent_dir(&self.out).join(lock)
            }
            _ => self.out.join(".pinflow.lock"),
        }
    }

    /// Takes the output's advisory lock ([`lock_path`](Self::lock_path)) for as long as the
    /// returned guard lives, so that a second run writing the same output is refused before
    /// it fetches anything, instead of replacing the first one's files (or adding
    /// `part-00001.parquet` beside its own). Partitioned, creates `out` first.
    pub(crate) fn lock(&self) -> Result<LockFile> {
        if self.partitioned() {
            self.create_root()?;
        }
        let path = self.lock_path();
        LockFile::try_acquire(&path).map_err(|e| match e {
            LockError::Held { pid } => {
                let who = match pid {
                    Some(pid) => format!("another pinflow run (pid {pid})"),
                    None => "another pinflow run".into(),
                };
                Error::output(
                    &self.out,
                    "lock",
                    format!(
                        "{who} is writing to it (it holds the lock file {}); wait for that \
                         run to end, or write to another path",
                        path.display()
                    ),
                )
            }
            LockError::Io(e) => {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                let why = match dir {
                    // The common first-hour mistake: say which directory, not just ENOENT.
                    Some(d) if e.kind() == std::io::ErrorKind::NotFound && !d.is_dir() => {
                        format!(
                            "its directory {} does not exist (pinflow does not create it: \
                             create it, or write elsewhere)",
                            d.display()
                        )
                    }
                    _ => format!("cannot create the lock file {}: {e}", path.display()),
                };
                Error::output(&self.out, "lock", why)
            }
        })
    }

    /// Creates the directory of `partition` under `out`, one level at a time, fsyncing each
    /// parent of a new directory so the entry survives a crash. Returns the directory.
    pub(super) fn partition_dir(&self, partition: &str) -> Result<PathBuf> {
        let mut dir = self.out.clone();
        for part in partition.split('/') {
            let parent = dir.clone();
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => sync_dir(&parent),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::output(&dir, "create directory", e)),
            }
        }
        Ok(dir)
    }
}

/// The UTC second of `micros` (µs since the Unix epoch) in the compact form names carry:
/// `20261124T100000Z`.
pub(crate) fn compact_utc(micros: i64) -> String {
    let mut ts = Vec::with_capacity(32);
    crate::time::format_rfc3339_micros(micros, &mut ts);
    // 2026-11-24T10:00:00.123456Z -> 20261124T100000Z
    let mut compact: String = String::from_utf8_lossy(&ts[..19])
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    compact.push('Z');
    compact
}

/// Where objects go: `s3://BUCKET/PREFIX/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, empty or ending in `/`.
    pub prefix: String,
    /// The `[output.s3]` settings.
    pub config: crate::config::S3Config,
}

impl S3Target {
    /// Parses `s3://BUCKET/PREFIX`: `None` when `url` is not an `s3://` URL.
    pub fn parse(url: &str) -> Option<Result<S3Target>> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(Error::config(
                "out",
                format!("`{url}` names no bucket"),
            )));
        }
        let mut prefix = prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Some(Ok(S3Target {
            bucket: bucket.to_string(),
            prefix,
            config: crate::config::S3Config::default(),
        }))
    }

    /// The object key of the staged file `rel` (relative to the staging directory).
    pub fn key(&self, rel: &Path) -> String {
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        format!("{}{}", self.prefix, parts.join("/"))
    }
}

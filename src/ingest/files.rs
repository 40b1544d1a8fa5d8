//! The file reader: local NDJSON and JSON files, or standard input, in place of the fetcher.
//!
//! For local ETL without HTTP, this stage takes the fetch thread's seat and feeds the same
//! parse, compute and write threads with the same [`BodyBatch`](crate::batch::BodyBatch)es:
//!
//! - **NDJSON** (`.ndjson`, `.jsonl`, any other name, and standard input) is streamed in chunks
//!   of about `fetch.batch_max_bytes`, each cut after a newline, so a file of any size costs
//!   one chunk of memory per batch in flight. Each chunk is one body of its batch, named
//!   `PATH:FIRST-LAST` (its line numbers), which is what dead letters show.
//! - A **`.json`** file is one document (an object, an array of objects, or NDJSON after all)
//!   handed over whole; it must fit `fetch.max_body_bytes`.
//!
//! - **CSV** (`.csv`, `.csv.gz`, or any name with `format = "csv"`): rows become records, in
//!   chunks cut between rows; see [`csv`].
//!
//! A file that cannot be opened or read, or a line longer than `fetch.max_body_bytes`, is a
//! failed work item with its reason (in the ledger and the dead-letter file), and the run goes
//! on with the next one.
//!
//! - **Objects** of an S3-compatible store (`s3://BUCKET/PREFIX/*.ndjson`, feature `s3`) are
//!   listed when the source is made and read by ranged GETs into the same chunks; see [`s3`].
//!
//! Each chunk's source position for the resume journal is its input's index and its byte
//! offset, `index << 40 | offset`: the same chunks come out of the same files with the same
//! `batch_max_bytes`, so a resumed run skips exactly the chunks already written.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::handoff::IngestChannels;
use crate::ingest::batcher::Batcher;
use crate::ingest::IngestReport;
use crate::metrics::live::ThreadState;

pub mod csv;
#[cfg(feature = "s3")]
mod s3;

pub use self::csv::{infer_schema, CsvOptions};

/// How file inputs are read: the top-level `format`, `csv_delimiter` and `csv_header`.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// `auto`, `ndjson` or `csv` (see [`crate::config::Config::format`]).
    format: String,
    csv: CsvOptions,
    /// How `s3://` inputs are reached: `[output.s3]` (see [`s3`]).
    s3: crate::config::S3Config,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            format: "auto".into(),
            csv: CsvOptions::default(),
            s3: crate::config::S3Config::default(),
        }
    }
}

impl FileOptions {
    /// The options of `cfg`.
    pub fn from_config(cfg: &crate::config::Config) -> FileOptions {
        FileOptions {
            format: cfg.format.clone(),
            csv: CsvOptions::from_config(cfg),
            s3: cfg.output.s3.clone(),
        }
    }
}

/// Whether `input` is read as CSV under `format`.
fn csv_format(format: &str, input: &FileInput) -> bool {
    match (format, input) {
        ("csv", _) => true,
        ("auto", FileInput::Path(p)) => {
            let name = p.to_string_lossy().to_ascii_lowercase();
            name.ends_with(".csv") || name.ends_with(".csv.gz")
        }
        ("auto", FileInput::Object(o)) => {
            let name = o.key.to_ascii_lowercase();
            name.ends_with(".csv") || name.ends_with(".csv.gz")
        }
        _ => false,
    }
}

/// Whether `cfg` reads `input` as CSV.
pub(crate) fn is_csv(cfg: &crate::config::Config, input: &FileInput) -> bool {
    csv_format(&cfg.format, input)
}

/// One input of a file source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileInput {
    /// A file.
    Path(PathBuf),
    /// Standard input (NDJSON).
    Stdin,
    /// An object of an S3-compatible store (`s3://BUCKET/KEY`).
    Object(S3Object),
}

impl std::fmt::Display for FileInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileInput::Path(p) => write!(f, "{}", p.display()),
            FileInput::Stdin => f.write_str("-"),
            FileInput::Object(o) => f.write_str(&o.url),
        }
    }
}

/// An object as its listing found it. Its ETag and size are its identity: the resume journal
/// of a run over it holds them, and every read of it asks for that ETag, so an object that
/// changed is never read as a mix of two versions nor resumed where the old one stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// `s3://BUCKET/KEY`: its name in dead letters and `source_file`.
    pub url: String,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The ETag the listing gave (quoted, as the store sends it).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The identity of the objects among `inputs` for the resume journal: how many, and a hash of
/// each one's URL, ETag and size, in order (`None` when there is none). Chunk positions are
/// `index << 40 | offset`, so a changed object, or one more or fewer in the listing, must make
/// another identity.
pub(crate) fn objects_identity(inputs: &[FileInput]) -> Option<String> {
    let objects: Vec<&S3Object> = inputs
        .iter()
        .filter_map(|i| match i {
            FileInput::Object(o) => Some(o),
            _ => None,
        })
        .collect();
    if objects.is_empty() {
        return None;
    }
    // FNV-1a: stable across builds and platforms (the journal outlives the binary).
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for o in &objects {
        let line = format!("{}\n{}\n{}\n", o.url, o.etag, o.size);
        for b in line.bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    Some(format!("{} objects, {hash:016x}", objects.len()))
}

/// Extensions a directory is searched for.
const DATA_EXTENSIONS: [&str; 4] = ["json", "ndjson", "jsonl", "csv"];

/// Expands `specs` (paths, directories, glob patterns, `-`, `s3://` URLs) into the files to
/// read, in order: each spec's matches sorted by name. A spec that matches nothing is an error
/// naming it. Object stores are reached with the `AWS_*` variables alone (see
/// [`expand_with`]).
pub fn expand(specs: &[String]) -> Result<Vec<FileInput>> {
    expand_with(specs, &crate::config::S3Config::default())
}

/// [`expand`], listing `s3://` specs with the store settings of `s3` (`[output.s3]`: endpoint,
/// region, path style, CA file, attempts), then the `AWS_*` variables.
pub fn expand_with(specs: &[String], s3: &crate::config::S3Config) -> Result<Vec<FileInput>> {
    let mut out = Vec::new();
    for spec in specs {
        let bad = |why: String| Error::Source {
            source_name: spec.clone(),
            why,
        };
        if spec == "-" {
            out.push(FileInput::Stdin);
            continue;
        }
        if spec.starts_with("s3://") {
            #[cfg(feature = "s3")]
            {
                out.extend(s3::expand(spec, s3)?.into_iter().map(FileInput::Object));
                continue;
            }
            #[cfg(not(feature = "s3"))]
            {
                let _ = s3;
                return Err(bad("reading s3:// needs the `s3` cargo feature".into()));
            }
        }
        if spec.contains(['*', '?', '[']) {
            let paths = glob::glob(spec).map_err(|e| bad(format!("not a glob pattern: {e}")))?;
            let mut found: Vec<PathBuf> = paths
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect();
            if found.is_empty() {
                return Err(bad("no file matches".into()));
            }
            found.sort();
            out.extend(found.into_iter().map(FileInput::Path));
            continue;
        }
        let path = Path::new(spec);
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| bad(format!("cannot list: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| DATA_EXTENSIONS.contains(&e))
                })
                .collect();
            if found.is_empty() {
                return Err(bad(
                    "the directory holds no .json, .ndjson, .jsonl or .csv file".into(),
                ));
            }
            found.sort();
            out.extend(found.into_iter().map(FileInput::Path));
        } else {
            out.push(FileInput::Path(path.to_path_buf()));
        }
    }
    Ok(out)
}

/// Whether [`expand`] of `spec` would take `path` (resolved, see [`crate::fsutil`]'s
/// `resolve`) as an input once it exists: `path` is the file `spec` names, a data file in the
/// directory `spec` names, or a match of the glob `spec`. The run checks its outputs with
/// this, so that none of them is ever read back as input by this run or the next.
pub(crate) fn would_read(spec: &str, path: &Path) -> bool {
    if spec == "-" || spec.starts_with("s3://") {
        return false;
    }
    if spec.contains(['*', '?', '[']) {
        let Ok(pattern) = glob::Pattern::new(spec) else {
            return false;
        };
        // The pattern as written (relative or not) and made absolute both get a chance.
        let absolute = std::path::absolute(spec)
            .ok()
            .and_then(|p| glob::Pattern::new(&p.to_string_lossy()).ok());
        return pattern.matches_path(path)
            || absolute.is_some_and(|p| p.matches_path(path))
            || std::env::current_dir()
                .ok()
                .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
                .is_some_and(|rel| pattern.matches_path(&rel));
    }
    let named = crate::fsutil::resolve(Path::new(spec));
    if named.is_dir() {
        let data = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| DATA_EXTENSIONS.contains(&e));
        return data && crate::fsutil::parent_dir(path) == named;
    }
    named == path
}

/// Reads every input into batches until done or `stop` is set, like the fetcher does with
/// URLs: each chunk or whole file counts as a delivered request, each unreadable one as failed.
pub fn run(
    inputs: Vec<FileInput>,
    cfg: &FetchConfig,
    opts: &FileOptions,
    chans: IngestChannels,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    let mut r = Reader {
        cfg,
        format: &opts.format,
        csv: opts.csv.clone(),
        out: Batcher::new(chans, cfg),
        buf: Vec::new(),
        index: 0,
        s3: &opts.s3,
        #[cfg(feature = "s3")]
        store: None,
    };
    r.out.set_state(ThreadState::Working);
    if !r.out.chans.skip.is_empty() && inputs.contains(&FileInput::Stdin) {
        return Err(Error::config(
            "writer.journal",
            "standard input cannot be resumed; use files with a journal",
        ));
    }
    for (index, input) in inputs.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            r.out.report.interrupted = true;
            break;
        }
        r.index = index as u64;
        // One partition per input in source order: its index (the batch ships at its end).
        r.out.partition = r.out.chans.source_order.then_some(index as u32);
        r.read_input(input, &stop)?;
        if r.out.chans.source_order && !r.out.report.interrupted {
            r.end_partition()?;
        }
    }
    r.out.ship()?;
    r.out.chans.registry.cycles.fetch_add(1, Ordering::Relaxed);
    r.out.publish();
    Ok(r.out.report)
}

struct Reader<'a> {
    cfg: &'a FetchConfig,
    /// `format` (see [`FileOptions`]).
    format: &'a str,
    csv: CsvOptions,
    /// The batch being filled, the ledger, the channels.
    out: Batcher,
    /// Bytes read but not yet handed over (at most a partial line between chunks).
    buf: Vec<u8>,
    /// The index of the input being read.
    index: u64,
    /// How `s3://` inputs are reached.
    s3: &'a crate::config::S3Config,
    /// The client of the bucket last read from.
    #[cfg(feature = "s3")]
    store: Option<Arc<s3::Store>>,
}

impl Reader<'_> {
    fn read_input(&mut self, input: &FileInput, stop: &AtomicBool) -> Result<()> {
        if let FileInput::Object(object) = input {
            return self.read_object(object, stop);
        }
        let name = input.to_string();
        if csv_format(self.format, input) {
            return match csv::open_input(input) {
                Ok(reader) => self.read_csv(&name, reader, stop),
                Err(e) => {
                    self.out
                        .fail(&name, "open", format!("{name}: cannot open: {e}"));
                    Ok(())
                }
            };
        }
        let whole = self.format == "auto"
            && matches!(input, FileInput::Path(p) if p.extension().is_some_and(|e| e == "json"));
        // (Standard input unbuffered, through a copy of its descriptor: a buffer would hold
        // bytes that waiting for the descriptor to be readable does not see.)
        let opened = match input {
            FileInput::Stdin => io::stdin().as_fd().try_clone_to_owned().map(File::from),
            FileInput::Path(p) => File::open(p),
            FileInput::Object(_) => unreachable!("read by read_object"),
        };
        let (reader, pausing) = match opened {
            // A pipe's chunks are cut when it pauses, so a resumed run would not find the
            // same ones (and what it reads again is not the same bytes).
            Ok(f) if pausing_input(&f).is_some() && !self.out.chans.skip.is_empty() => {
                return Err(Error::config(
                    "writer.journal",
                    format!(
                        "{name} is a pipe or a device, which cannot be resumed; use regular \
                         files with a journal"
                    ),
                ));
            }
            Ok(f) => {
                let pausing = pausing_input(&f);
                (Box::new(f) as Box<dyn Read>, pausing)
            }
            Err(e) => {
                self.out
                    .fail(&name, "open", format!("{name}: cannot open: {e}"));
                return Ok(());
            }
        };
        if whole {
            self.read_whole(&name, reader)
        } else {
            self.stream(&name, reader, stop, pausing)
        }
    }

    /// An object of a store: read like a file of its name (a `.json` one whole, a `.csv` one
    /// as CSV, the rest as NDJSON), through ranged GETs.
    #[cfg(feature = "s3")]
    fn read_object(&mut self, object: &S3Object, stop: &AtomicBool) -> Result<()> {
        let name = object.url.as_str();
        let store = match &self.store {
            Some(s) if s.name() == object.bucket => Arc::clone(s),
            _ => {
                let s = Arc::new(s3::Store::new(self.s3, &object.bucket)?);
                self.store = Some(Arc::clone(&s));
                s
            }
        };
        let reader: Box<dyn Read> = Box::new(store.open(object));
        let key = object.key.to_ascii_lowercase();
        let input = FileInput::Object(object.clone());
        if csv_format(self.format, &input) {
            let reader: Box<dyn Read> = match key.ends_with(".gz") {
                true => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
                    reader,
                ))),
                false => reader,
            };
            self.read_csv(name, reader, stop)
        } else if self.format == "auto" && key.ends_with(".json") {
            self.read_whole(name, reader)
        } else {
            self.stream(name, reader, stop, None)
        }
    }

    /// Without the `s3` feature no object is listed, so none is read.
    #[cfg(not(feature = "s3"))]
    fn read_object(&mut self, object: &S3Object, _stop: &AtomicBool) -> Result<()> {
        let _ = self.s3;
        let name = object.url.as_str();
        self.out.fail(
            name,
            "open",
            format!("{name}: reading s3:// needs the `s3` cargo feature"),
        );
        Ok(())
    }

    /// A `.json` file: one body.
    fn read_whole(&mut self, name: &str, reader: Box<dyn Read>) -> Result<()> {
        let limit = self.cfg.max_body_bytes;
        self.buf.clear();
        match reader.take(limit as u64 + 1).read_to_end(&mut self.buf) {
            Err(e) => self
                .out
                .fail(name, "read", format!("{name}: read error: {e}")),
            Ok(n) if n > limit => self.out.fail(
                name,
                "too large",
                format!(
                    "{name}: larger than fetch.max_body_bytes ({limit} bytes); \
                     write NDJSON (.ndjson) to stream it"
                ),
            ),
            Ok(_) => {
                let body = std::mem::take(&mut self.buf);
                self.deliver(name, &body, 0);
                self.buf = body;
            }
        }
        self.buf.clear();
        self.out.ship_if_full()
    }

    /// NDJSON: chunks of whole lines. An input that can pause (`pausing`: a pipe, a
    /// terminal) hands over the whole lines in hand whenever it has nothing more to read, and
    /// its reads wait for bytes no longer than a moment at a time, so that the stop is seen.
    fn stream(
        &mut self,
        name: &str,
        mut reader: Box<dyn Read>,
        stop: &AtomicBool,
        pausing: Option<PausingInput>,
    ) -> Result<()> {
        let chunk = self.cfg.batch_max_bytes.max(4096);
        let limit = self.cfg.max_body_bytes;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut want = chunk;
        let mut line = 1u64;
        // The input's byte offset of buf[0].
        let mut offset = 0u64;
        let mut eof = false;
        // Skipping the rest of a line that was too long.
        let mut skipping = false;
        loop {
            // Checked on every chunk read, delivered or not: an endless input (`/dev/zero`, a
            // line that never ends) must stop as promptly as one that yields lines.
            if stop.load(Ordering::Relaxed) {
                self.out.report.interrupted = true;
                break;
            }
            let mut paused = false;
            'fill: while !eof && buf.len() < want {
                if let Some(input) = &pausing {
                    if !input.readable(Duration::ZERO) {
                        // (A moment's grace: a writer faster than this reader leaves the pipe
                        // empty only for an instant, and handing over then cut chunks small.)
                        if buf.contains(&b'\n') && !input.readable(HAND_OVER_GRACE) {
                            paused = true;
                            break;
                        }
                        while !input.readable(PAUSE_WAIT) {
                            if stop.load(Ordering::Relaxed) {
                                break 'fill;
                            }
                        }
                    }
                }
                let old = buf.len();
                buf.resize(want, 0);
                match reader.read(&mut buf[old..]) {
                    Ok(0) => {
                        buf.truncate(old);
                        eof = true;
                    }
                    Ok(n) => buf.truncate(old + n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(old),
                    Err(e) => {
                        buf.truncate(old);
                        eof = true;
                        let why = format!("{name}: read error after line {line}: {e}");
                        self.out.fail(name, "read", why);
                    }
                }
            }
            if skipping {
                match buf.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        buf.drain(..=nl);
                        offset += nl as u64 + 1;
                        line += 1;
                        skipping = false;
                    }
                    None => {
                        offset += buf.len() as u64;
                        buf.clear();
                        if eof {
                            break;
                        }
                        continue;
                    }
                }
            }
            if buf.is_empty() && eof {
                break;
            }
            let cut = if eof {
                buf.len()
            } else {
                match buf.iter().rposition(|&b| b == b'\n') {
                    Some(nl) => nl + 1,
                    None if buf.len() > limit => {
                        let why = format!(
                            "{name}: line {line} is longer than fetch.max_body_bytes ({limit} bytes)"
                        );
                        self.out.fail(&format!("{name}:{line}"), "too large", why);
                        offset += buf.len() as u64;
                        buf.clear();
                        skipping = true;
                        want = chunk;
                        continue;
                    }
                    None => {
                        // One line longer than a chunk: read on until it ends.
                        want = buf.len() + chunk;
                        continue;
                    }
                }
            };
            let lines = buf[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
            let last = if buf[..cut].ends_with(b"\n") {
                line + lines.saturating_sub(1)
            } else {
                line + lines
            };
            self.deliver(&format!("{name}:{line}-{last}"), &buf[..cut], offset);
            line += lines;
            offset += cut as u64;
            buf.drain(..cut);
            want = chunk;
            match paused {
                true => {
                    self.out.ship()?;
                    self.out.publish();
                }
                false => self.out.ship_if_full()?,
            }
        }
        self.buf = buf;
        Ok(())
    }

    /// Source order (time windows): the input is read to its end. Its last batch ships now,
    /// marked, so no batch mixes two inputs and the window operator learns that this input no
    /// longer holds its watermark back; an input whose rows all shipped already gets an empty
    /// batch that carries only the mark.
    fn end_partition(&mut self) -> Result<()> {
        self.out.start();
        self.out.batch.partition_ended = true;
        self.out.ship_now()
    }

    /// Hands over one body found at byte `offset` of the current input, unless the journal
    /// says an earlier run wrote it.
    fn deliver(&mut self, url: &str, body: &[u8], offset: u64) {
        let seq = (self.index << 40) | offset;
        if self.out.chans.skip.contains(seq) {
            self.out.report.stats.skipped += 1;
            return;
        }
        self.out.body(url, body, seq);
    }
}

/// How long a read of a pausing input waits for bytes before the stop is looked at again.
const PAUSE_WAIT: Duration = Duration::from_millis(100);

/// How long a pausing input may stay empty before the whole lines in hand are handed over.
const HAND_OVER_GRACE: Duration = Duration::from_millis(2);

/// An input whose reads can wait for bytes that have not come yet (a pipe, a FIFO, a
/// terminal), unlike a regular file's: see `Reader::stream`.
struct PausingInput(std::os::fd::RawFd);

/// `file` as a [`PausingInput`] unless it is a regular file (whose chunks must stay the
/// same from run to run: the journal names them by their offsets).
fn pausing_input(file: &File) -> Option<PausingInput> {
    let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
    (!regular).then(|| PausingInput(file.as_raw_fd()))
}

impl PausingInput {
    /// Whether a read would not wait: bytes, the end, or an error to read (waits `wait` at
    /// most). A signal while waiting is "not yet".
    fn readable(&self, wait: Duration) -> bool {
        let mut fd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, for a descriptor the reader keeps open.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        n > 0 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_expand_to_sorted_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.ndjson", "a.json", "c.jsonl", "notes.txt"] {
            std::fs::write(dir.path().join(name), "{}\n").unwrap();
        }
        let d = dir.path().display().to_string();
        let names = |v: Vec<FileInput>| -> Vec<String> {
            v.iter()
                .map(|f| match f {
                    FileInput::Path(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                    FileInput::Stdin => "-".into(),
                    FileInput::Object(o) => o.url.clone(),
                })
                .collect()
        };
        assert_eq!(
            names(expand(std::slice::from_ref(&d)).unwrap()),
            ["a.json", "b.ndjson", "c.jsonl"]
        );
        assert_eq!(
            names(expand(&[format!("{d}/*.txt"), "-".into()]).unwrap()),
            ["notes.txt", "-"]
        );
        let err = expand(&[format!("{d}/*.parquet")]).unwrap_err().to_string();
        assert!(err.contains("no file matches"), "{err}");
        let err = expand(&[format!("{d}/missing.ndjson")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.ndjson"), "{err}");
    }

    #[test]
    fn the_objects_identity_changes_with_an_etag_a_size_or_one_more_object() {
        let object = |key: &str, etag: &str, size: u64| {
            FileInput::Object(S3Object {
                url: format!("s3://b/{key}"),
                bucket: "b".into(),
                key: key.into(),
                etag: etag.into(),
                size,
            })
        };
        let local = FileInput::Path("/tmp/x.ndjson".into());
        assert_eq!(objects_identity(std::slice::from_ref(&local)), None);
        let base = objects_identity(&[object("a", "\"e1\"", 10), local.clone()]).unwrap();
        assert!(base.starts_with("1 objects, "), "{base}");
        for other in [
            vec![object("a", "\"e2\"", 10)],
            vec![object("a", "\"e1\"", 11)],
            vec![object("a", "\"e1\"", 10), object("b", "\"e1\"", 10)],
        ] {
            assert_ne!(objects_identity(&other).unwrap(), base);
        }
    }
}

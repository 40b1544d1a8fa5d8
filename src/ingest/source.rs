//! Work sources: where the list of URLs to fetch comes from (or, for local ETL, the files to
//! read: [`Source::Files`]).
//!
//! A source yields [`WorkItem`]s lazily, so a template over a billion endpoints or an endless
//! stdin costs no memory up front. In-memory sources (templates, vectors) are iterated on the
//! fetch thread itself; sources that read files or stdin run on a small feeder thread, because a
//! read from a pipe may block and the fetch thread's event loop must never block.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
#[cfg(feature = "http")]
use std::sync::Arc;

#[cfg(feature = "http")]
use crossbeam_channel::{Receiver, TryRecvError};

use crate::error::{Error, Result};

/// One unit of work: a URL to fetch, numbered in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// Position in the source, from 0.
    pub seq: u64,
    /// The URL as written in the source.
    pub url: String,
}

/// Where the URLs come from.
pub enum Source {
    /// `prefix{START..END}suffix`, END inclusive.
    Template(Template),
    /// An explicit list.
    Urls(Vec<String>),
    /// One URL per line from a file or standard input; blank lines and `#` comments are skipped.
    Lines {
        /// A name for messages: the path, or `-`.
        name: String,
        /// The opened reader.
        reader: Box<dyn BufRead + Send>,
    },
    /// Local NDJSON / JSON files or standard input, read by [`crate::ingest::files`] in place of the
    /// fetcher.
    Files(Vec<crate::ingest::files::FileInput>),
    /// Bodies and records pushed by the embedding program ([`Source::push`]).
    Push(crate::ingest::push::PushReceiver),
    /// Growing NDJSON files followed until the run is stopped ([`Source::tail`]).
    Tail(crate::ingest::tail::TailSource),
    /// Records posted by clients to an HTTP endpoint ([`crate::ingest::listen`]).
    Listen(crate::ingest::listen::ListenOptions),
    /// Messages of Kafka topics, as a member of a consumer group ([`crate::ingest::kafka`]).
    Kafka(crate::ingest::kafka::KafkaSource),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Template(t) => write!(f, "Template({t})"),
            Source::Urls(v) => write!(f, "Urls({} urls)", v.len()),
            Source::Lines { name, .. } => write!(f, "Lines({name})"),
            Source::Files(v) => write!(f, "Files({} inputs)", v.len()),
            Source::Push(_) => f.write_str("Push"),
            Source::Tail(t) => write!(f, "Tail({})", t.pattern()),
            Source::Listen(o) => write!(f, "Listen({})", o.addr),
            Source::Kafka(k) => write!(f, "Kafka({})", k.describe()),
        }
    }
}

/// A URL template with one numeric range, e.g. `http://127.0.0.1:8080/logs/{1..20000}.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    prefix: String,
    start: u64,
    end: u64,
    /// Digits every number is zero-padded to: as in bash, the width of the wider bound when
    /// either is written with a leading zero (`{001..100}`), else 0 (no padding).
    width: usize,
    suffix: String,
}

impl Template {
    /// Parses `prefix{START..END}suffix`. A `{since}` placeholder (see [`fill_since`]) may
    /// be anywhere in it and is not the range.
    ///
    /// ```
    /// let t = pinflow::source::Template::parse("http://h/logs/{1..3}.json").unwrap();
    /// assert_eq!(t.len(), 3);
    /// assert_eq!(t.url(2), "http://h/logs/3.json");
    /// let padded = pinflow::source::Template::parse("http://h/{008..010}").unwrap();
    /// assert_eq!(padded.url(0), "http://h/008");
    /// ```
    pub fn parse(s: &str) -> Result<Template> {
        let bad = |why: &str| Error::Source {
            source_name: crate::ingest::url::redact(s).into_owned(),
            why: why.to_string(),
        };
        let open = range_open(s).ok_or_else(|| bad("no `{START..END}` range"))?;
        let close = s[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| bad("`{` without `}`"))?;
        let range = &s[open + 1..close];
        let (a, b) = range
            .split_once("..")
            .ok_or_else(|| bad("the range must look like {1..100}"))?;
        let start: u64 = a
            .trim()
            .parse()
            .map_err(|_| bad("range start is not a number"))?;
        let end: u64 = b
            .trim()
            .parse()
            .map_err(|_| bad("range end is not a number"))?;
        if end < start {
            return Err(bad("range end is below its start"));
        }
        let suffix = &s[close + 1..];
        if range_open(suffix).is_some() {
            return Err(bad("only one {START..END} range is supported"));
        }
        let (a, b) = (a.trim(), b.trim());
        let padded = |n: &str| n.len() > 1 && n.starts_with('0');
        let width = match padded(a) || padded(b) {
            true => a.len().max(b.len()),
            false => 0,
        };
        Ok(Template {
            prefix: s[..open].to_string(),
            start,
            end,
            width,
            suffix: suffix.to_string(),
        })
    }

    /// Number of URLs.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a range holds at least one number.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`-th URL (from 0).
    pub fn url(&self, i: u64) -> String {
        let mut url = String::new();
        self.write_url(i, &mut url);
        url
    }

    /// Writes the `i`-th URL into `url`, replacing what it held: the fetcher passes the string
    /// of a request that is done, so a run of one record per request does not allocate a URL
    /// per request.
    pub(crate) fn write_url(&self, i: u64, url: &mut String) {
        use std::fmt::Write;
        url.clear();
        // Sized once (20 digits hold any u64): at most one allocation, not one per piece.
        url.reserve(self.prefix.len() + 20 + self.suffix.len());
        let (n, width) = (self.start + i, self.width);
        let _ = write!(url, "{}{n:0width$}{}", self.prefix, self.suffix);
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Shown redacted: the template names the source in logs and in the files' metadata.
        let (start, end, w) = (self.start, self.end, self.width);
        let text = format!("{}{{{start:0w$}..{end:0w$}}}{}", self.prefix, self.suffix);
        f.write_str(&crate::ingest::url::redact(&text))
    }
}

impl Source {
    /// Interprets a command-line `--urls` value: `-` is stdin, a value with a `{A..B}` range is
    /// a template, a value with a scheme (`http://host/x.json`) one URL, anything else a file
    /// of URLs.
    ///
    /// Whatever can be checked before a run is, so that a typo fails at once instead of
    /// becoming failed requests: the scheme of a URL or template (only `http://` and
    /// `https://` are fetched, `htp://` and `ftp://` are errors naming it), and every line of
    /// a URL file, read once here (the error names `FILE:LINE`). Standard input is checked as
    /// it is read, and so is a path that is not a regular file (a pipe such as `<(list-urls)`,
    /// which can be read only once): a bad line there is a failed request with its reason.
    ///
    /// ```
    /// use pinflow::Source;
    /// assert!(matches!(Source::from_arg("http://h/x.json")?, Source::Urls(ref v) if v.len() == 1));
    /// let e = Source::from_arg("htp://h/x.json").unwrap_err().to_string();
    /// assert!(e.contains("unsupported scheme `htp`"), "{e}");
    /// # Ok::<(), pinflow::Error>(())
    /// ```
    pub fn from_arg(arg: &str) -> Result<Source> {
        Source::from_arg_counted(arg).map(|(source, _)| source)
    }

    /// [`Source::from_arg`], and how many URLs the source holds where that is known before
    /// the run: a template's range, one URL, or the lines of a URL file (not standard input).
    pub fn from_arg_counted(arg: &str) -> Result<(Source, Option<u64>)> {
        // A `user:password@` in the argument never reaches the message.
        let bad = |why: String| Error::Source {
            source_name: crate::ingest::url::redact(arg).into_owned(),
            why: crate::ingest::url::redact(&why).into_owned(),
        };
        if arg == "-" {
            let stdin = Source::Lines {
                name: "-".into(),
                reader: Box::new(BufReader::new(io::stdin())),
            };
            return Ok((stdin, None));
        }
        if range_open(arg).is_some() && arg.contains("..") {
            let t = Template::parse(arg)?;
            // Every URL of the range has the shape of the first and the last.
            for url in [t.url(0), t.url(t.len() - 1)] {
                check_url(&url).map_err(|why| bad(format!("`{url}`: {why}")))?;
            }
            let n = t.len();
            return Ok((Source::Template(t), Some(n)));
        }
        if url_scheme(arg).is_some() {
            check_url(arg).map_err(bad)?;
            return Ok((Source::Urls(vec![arg.to_string()]), Some(1)));
        }
        // A pipe or device (`<(list-urls)`, /dev/stdin) can be read only once: it is read as
        // it comes, like standard input, and a bad line is a failed request.
        if std::fs::metadata(arg).is_ok_and(|m| !m.is_file()) {
            return Ok((Source::file(arg)?, None));
        }
        let n = check_url_file(arg)?;
        Ok((Source::file(arg)?, Some(n)))
    }

    /// Local files: paths, directories (their `.json`, `.ndjson` and `.jsonl` files), glob
    /// patterns such as `/var/log/app/*.ndjson`, and `-` for standard input; each spec's matches
    /// sorted by name. A spec that matches nothing fails here, naming it.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("pinflow-doc-files-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// std::fs::write(dir.join("a.ndjson"), "{\"id\":1}\n")?;
    /// let source = pinflow::Source::files(&[dir.display().to_string()])?;
    /// assert!(matches!(source, pinflow::Source::Files(ref v) if v.len() == 1));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn files(specs: &[String]) -> Result<Source> {
        crate::ingest::files::expand(specs).map(Source::Files)
    }

    /// [`Source::files`], where `s3://BUCKET/PREFIX/*.ndjson` specs (feature `s3`) are listed
    /// with `cfg`'s store settings (`[output.s3]`: endpoint, region, path style, CA file,
    /// attempts) before the `AWS_*` variables; [`Source::files`] has only the variables.
    pub fn files_in(specs: &[String], cfg: &crate::Config) -> Result<Source> {
        crate::ingest::files::expand_with(specs, &cfg.output.s3).map(Source::Files)
    }

    /// A push source with room for `capacity` queued items, and the handle producers push
    /// through (see [`crate::push`]).
    ///
    /// ```
    /// use pinflow::{Config, Pipeline, Source};
    /// let dir = std::env::temp_dir().join(format!("pinflow-doc-push-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let pipeline = Pipeline::new(Config::new(dir.join("pushed.parquet")))?;
    /// let (source, push) = Source::push(1024);
    /// let run = pipeline.spawn(source)?;
    /// for i in 0..100 {
    ///     push.push(format!(r#"{{"id":{i},"values":[1,2,{i}]}}"#))?;
    /// }
    /// drop(push); // the source ends when every handle is gone
    /// let summary = run.join()?;
    /// assert_eq!(summary.records_written, 100);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push(capacity: usize) -> (Source, crate::ingest::push::PushHandle) {
        let (rx, handle) = crate::ingest::push::channel(capacity);
        (Source::Push(rx), handle)
    }

    /// A tail of the NDJSON files `pattern` (a path or a glob pattern such as
    /// `/var/log/app/*.log`) names, now or later: followed as they grow, across rotation and
    /// truncation, until the run is stopped (see [`crate::ingest::tail`]). With
    /// `writer.journal`, a restarted run goes on where the committed lines end. An invalid
    /// pattern fails here; one that matches nothing yet waits for a file.
    ///
    /// ```
    /// let source = pinflow::Source::tail("/var/log/app/*.log")?;
    /// assert_eq!(source.describe(), "tail /var/log/app/*.log");
    /// assert!(pinflow::Source::tail("logs/[.log").is_err());
    /// # Ok::<(), pinflow::Error>(())
    /// ```
    pub fn tail(pattern: &str) -> Result<Source> {
        crate::ingest::tail::TailSource::new(pattern).map(Source::Tail)
    }

    /// An HTTP endpoint that receives records (`POST /ingest`, see [`crate::ingest::listen`]).
    pub fn listen(options: crate::ingest::listen::ListenOptions) -> Source {
        Source::Listen(options)
    }

    /// Messages of Kafka topics, read as a member of a consumer group (feature `kafka`; see
    /// [`crate::ingest::kafka`]).
    pub fn kafka(source: crate::ingest::kafka::KafkaSource) -> Source {
        Source::Kafka(source)
    }

    /// A file with one URL per line.
    pub fn file(path: impl Into<PathBuf>) -> Result<Source> {
        let path = path.into();
        let f = File::open(&path).map_err(|e| Error::Source {
            // A URL given where a file was expected (no `{A..B}` range) must not show its
            // password either.
            source_name: crate::ingest::url::redact(&path.display().to_string()).into_owned(),
            why: format!("cannot open: {e}"),
        })?;
        Ok(Source::Lines {
            name: path.display().to_string(),
            reader: Box::new(BufReader::new(f)),
        })
    }

    /// A fresh copy of the source for another pass (continuous mode): templates and lists are
    /// copied, and a line source is re-opened from the path in its `name`, so edits to a URL
    /// file take effect at the next pass. Standard input cannot be read twice.
    pub fn try_clone(&self) -> Result<Source> {
        match self {
            Source::Template(t) => Ok(Source::Template(t.clone())),
            Source::Urls(v) => Ok(Source::Urls(v.clone())),
            Source::Lines { name, .. } if name == "-" => Err(Error::Source {
                source_name: "-".into(),
                why: "standard input can be read only once; continuous mode (`every`) needs \
                      a URL file or a template"
                    .into(),
            }),
            Source::Lines { name, .. } => Source::file(name),
            Source::Files(_)
            | Source::Push(_)
            | Source::Tail(_)
            | Source::Listen(_)
            | Source::Kafka(_) => Err(Error::Source {
                source_name: "files".into(),
                why: "continuous mode (`every`) is for URL sources".into(),
            }),
        }
    }
    /// Turns the source into the feed the fetch thread pulls from. `wake` is called by the
    /// feeder thread (for line sources) whenever it has queued more items or finished.
    #[cfg(feature = "http")]
    pub(crate) fn into_feed(self, wake: Arc<dyn Fn() + Send + Sync>) -> Result<Feed> {
        match self {
            Source::Template(template) => Ok(Feed::Template { template, next: 0 }),
            Source::Urls(v) => Ok(Feed::Iter(Box::new(
                v.into_iter()
                    .enumerate()
                    .map(|(i, url)| WorkItem { seq: i as u64, url }),
            ))),
            Source::Lines { name, reader } => {
                let (tx, rx) = crossbeam_channel::bounded::<Result<Vec<WorkItem>, String>>(4);
                std::thread::Builder::new()
                    .name("pinflow-source".into())
                    .spawn(move || {
                        feed_lines(reader, &name, &tx, &*wake);
                        // The fetcher learns that the list is complete from the closed
                        // channel: close it, then wake the fetcher to look.
                        drop(tx);
                        wake();
                    })
                    .map_err(|e| Error::Thread {
                        thread: "pinflow-source".into(),
                        why: e.to_string(),
                    })?;
                Ok(Feed::Channel {
                    rx,
                    chunk: Vec::new().into_iter(),
                    error: None,
                })
            }
            Source::Files(_)
            | Source::Push(_)
            | Source::Tail(_)
            | Source::Listen(_)
            | Source::Kafka(_) => Err(Error::Source {
                source_name: "files".into(),
                why: "files, pushed and received items are not fetched".into(),
            }),
        }
    }

    /// Whether the source reads until the run is stopped, with no end of its own: a tail, or a
    /// Kafka group member without `exit_at_end`. (HTTP receive is one too, but is refused
    /// without `writer.rotate_interval`; a push source ends when its producers let go.)
    pub(crate) fn runs_until_stopped(&self) -> bool {
        match self {
            Source::Tail(_) => true,
            Source::Kafka(k) => !k.exit_at_end,
            _ => false,
        }
    }

    /// The source as the `pinflow.source` metadata names it when no label was given: the
    /// template, the file name, or the first URL of a list and how many there are.
    pub fn describe(&self) -> String {
        match self {
            Source::Template(t) => t.to_string(),
            Source::Lines { name, .. } => name.clone(),
            Source::Push(_) => "push".into(),
            Source::Tail(t) => format!("tail {}", t.pattern()),
            Source::Listen(o) => format!("listen {}", o.addr),
            Source::Kafka(k) => k.describe(),
            Source::Files(inputs) => match inputs.first() {
                Some(first) if inputs.len() > 1 => {
                    format!("{first} and {} more files", inputs.len() - 1)
                }
                Some(first) => first.to_string(),
                None => "no files".into(),
            },
            Source::Urls(urls) => match urls.first().map(|u| crate::ingest::url::redact(u)) {
                Some(first) if urls.len() > 1 => {
                    format!("{first} and {} more URLs", urls.len() - 1)
                }
                Some(first) => first.into_owned(),
                None => "no URLs".into(),
            },
        }
    }
}

#[cfg(feature = "http")]
const LINE_CHUNK: usize = 1024;
/// The longest line a URL list may have (browsers and servers stop far below): an endless
/// line (`--urls -` fed from /dev/zero, a binary file given by mistake) stops the source with
/// an error naming the line, instead of growing without limit.
pub const MAX_URL_LINE: usize = 64 * 1024;

/// Reads URL lines and hands them to the fetch thread in chunks. A chunk is sent when it is
/// full or when the reader has nothing more buffered, so a slow stream (`tail -f` into stdin)
/// is fetched as it arrives instead of waiting for a full chunk.
#[cfg(feature = "http")]
fn feed_lines(
    mut reader: Box<dyn BufRead + Send>,
    name: &str,
    tx: &crossbeam_channel::Sender<Result<Vec<WorkItem>, String>>,
    wake: &(dyn Fn() + Send + Sync),
) {
    let mut seq = 0u64;
    let mut lineno = 0u64;
    let mut chunk = Vec::with_capacity(LINE_CHUNK);
    // A line split across two reads.
    let mut partial: Vec<u8> = Vec::new();
    let send = |chunk: &mut Vec<WorkItem>| -> bool {
        if chunk.is_empty() {
            return true;
        }
        let full = std::mem::replace(chunk, Vec::with_capacity(LINE_CHUNK));
        let ok = tx.send(Ok(full)).is_ok();
        wake();
        ok
    };
    let mut take_line = |bytes: &[u8], chunk: &mut Vec<WorkItem>| {
        lineno += 1;
        let text = String::from_utf8_lossy(bytes);
        let url = text.trim();
        if !url.is_empty() && !url.starts_with('#') {
            chunk.push(WorkItem {
                seq,
                url: url.to_string(),
            });
            seq += 1;
        }
    };
    let too_long = |lineno: u64| {
        let _ = tx.send(Err(format!(
            "{name}: line {} is longer than {MAX_URL_LINE} bytes: not a list of URLs, one per line?",
            lineno + 1
        )));
        wake();
    };
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                send(&mut chunk);
                let _ = tx.send(Err(format!("{name}: read error after line {lineno}: {e}")));
                wake();
                return;
            }
        };
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        let mut rest = buf;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            if partial.len() + nl > MAX_URL_LINE {
                send(&mut chunk);
                return too_long(lineno);
            }
            if partial.is_empty() {
                take_line(&rest[..nl], &mut chunk);
            } else {
                partial.extend_from_slice(&rest[..nl]);
                take_line(&partial, &mut chunk);
                partial.clear();
            }
            rest = &rest[nl + 1..];
            if chunk.len() == LINE_CHUNK && !send(&mut chunk) {
                return;
            }
        }
        if partial.len() + rest.len() > MAX_URL_LINE {
            send(&mut chunk);
            return too_long(lineno);
        }
        partial.extend_from_slice(rest);
        reader.consume(n);
        // Nothing more buffered: hand over what we have before the next (maybe blocking) read.
        if !send(&mut chunk) {
            return;
        }
    }
    if !partial.is_empty() {
        take_line(&partial, &mut chunk);
    }
    send(&mut chunk);
}

impl Source {
    /// Whether the source's URLs hold the `{since}` placeholder ([`fill_since`]): known for a
    /// template and a list, read from a URL file; `None` for standard input and pipes (read
    /// only once, as the run goes). Files and pushed records have no URLs.
    pub fn mentions_since(&self) -> Option<bool> {
        match self {
            Source::Template(t) => Some(t.prefix.contains(SINCE) || t.suffix.contains(SINCE)),
            Source::Urls(v) => Some(v.iter().any(|u| u.contains(SINCE))),
            Source::Lines { name, .. } if name != "-" => {
                let path = std::path::Path::new(name);
                if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
                    return None;
                }
                let text = std::fs::read(path).ok()?;
                Some(text.windows(SINCE.len()).any(|w| w == SINCE.as_bytes()))
            }
            Source::Lines { .. } => None,
            Source::Files(_)
            | Source::Push(_)
            | Source::Tail(_)
            | Source::Listen(_)
            | Source::Kafka(_) => Some(false),
        }
    }
}

/// The placeholder a URL (a template, a list's URL, a URL file's line) may hold for the
/// position of `{since}` polling (`fetch.since_field`): each pass fills it in.
pub const SINCE: &str = "{since}";

/// The first `{` of `s` that is not the `{since}` placeholder: where a template's range opens.
fn range_open(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find('{').map(|i| from + i) {
        if !s[i..].starts_with(SINCE) {
            return Some(i);
        }
        from = i + SINCE.len();
    }
    None
}

/// `url` with every `{since}` replaced by `value`, percent-encoded as a query value is
/// (everything but `A-Z a-z 0-9 - . _ ~`), so that a timestamp's `:` or a `+` reaches the
/// server as the value it is.
///
/// ```
/// use pinflow::source::fill_since;
/// assert_eq!(
///     fill_since("http://h/events?since={since}&limit=5", "2026-12-04T07:54:24.000001Z"),
///     "http://h/events?since=2026-12-04T07%3A54%3A24.000001Z&limit=5"
/// );
/// assert_eq!(fill_since("http://h/after/{since}", "a b+c"), "http://h/after/a%20b%2Bc");
/// assert_eq!(fill_since("http://h/x?since={since}", ""), "http://h/x?since=");
/// ```
pub fn fill_since(url: &str, value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() + 8);
    push_encoded(&mut encoded, value);
    url.replace(SINCE, &encoded)
}

/// Appends `value` percent-encoded as a query value (RFC 3986 unreserved characters kept).
fn push_encoded(out: &mut String, value: &str) {
    use std::fmt::Write as _;
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// What the fetch thread pulls work from.
#[cfg(feature = "http")]
pub(crate) enum Feed {
    /// A URL template: numbers `next..len` are still to come.
    Template {
        template: Template,
        next: u64,
    },
    Iter(Box<dyn Iterator<Item = WorkItem> + Send>),
    Channel {
        rx: Receiver<Result<Vec<WorkItem>, String>>,
        chunk: std::vec::IntoIter<WorkItem>,
        error: Option<String>,
    },
    /// Another feed, with `{since}` in its URLs replaced by `encoded` (already
    /// percent-encoded): see [`Feed::with_since`].
    Since {
        inner: Box<Feed>,
        encoded: String,
    },
}

/// One pull from a [`Feed`].
#[cfg(feature = "http")]
pub(crate) enum Next {
    Item(WorkItem),
    /// Nothing now; the feeder will wake the event loop when there is.
    Pending,
    /// The source is exhausted.
    Done,
}

#[cfg(feature = "http")]
impl Feed {
    /// This feed with every `{since}` in its URLs filled with `value` ([`fill_since`]). Work
    /// items keep their numbers; a retry repeats its filled URL, and the next pages of a
    /// paginated chain are the server's.
    pub(crate) fn with_since(self, value: &str) -> Feed {
        let mut encoded = String::with_capacity(value.len() + 8);
        push_encoded(&mut encoded, value);
        Feed::Since {
            inner: Box::new(self),
            encoded,
        }
    }

    pub(crate) fn next(&mut self) -> Next {
        self.next_reusing(&mut Vec::new())
    }

    /// [`Feed::next`], writing a template's URL into a string taken from `spare` (strings of
    /// requests that are done) when there is one.
    pub(crate) fn next_reusing(&mut self, spare: &mut Vec<String>) -> Next {
        match self {
            Feed::Template { template, next } => {
                if *next >= template.len() {
                    return Next::Done;
                }
                let mut url = spare.pop().unwrap_or_default();
                template.write_url(*next, &mut url);
                let item = WorkItem { seq: *next, url };
                *next += 1;
                Next::Item(item)
            }
            Feed::Since { inner, encoded } => match inner.next_reusing(spare) {
                Next::Item(mut item) => {
                    if item.url.contains(SINCE) {
                        item.url = item.url.replace(SINCE, encoded.as_str());
                    }
                    Next::Item(item)
                }
                other => other,
            },
            Feed::Iter(it) => it.next().map_or(Next::Done, Next::Item),
            Feed::Channel { rx, chunk, error } => loop {
                if let Some(item) = chunk.next() {
                    return Next::Item(item);
                }
                match rx.try_recv() {
                    Ok(Ok(v)) => *chunk = v.into_iter(),
                    Ok(Err(e)) => *error = Some(e),
                    Err(TryRecvError::Empty) => return Next::Pending,
                    Err(TryRecvError::Disconnected) => return Next::Done,
                }
            },
        }
    }

    /// A read error that ended the source early, if any.
    pub(crate) fn take_error(&mut self) -> Option<String> {
        match self {
            Feed::Template { .. } | Feed::Iter(_) => None,
            Feed::Channel { error, .. } => error.take(),
            Feed::Since { inner, .. } => inner.take_error(),
        }
    }
}

/// The scheme of a value that starts like a URL (`scheme://`), as written.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let starts_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    (starts_alpha && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then_some(scheme)
}

/// Whether `url` can be fetched, and if not, why: an unsupported scheme is named as such
/// (before the parser's more general complaint).
fn check_url(url: &str) -> std::result::Result<(), String> {
    // `{since}` is filled in before each pass; checked with a value in its place.
    let filled;
    let url = match url.contains(SINCE) {
        true => {
            filled = fill_since(url, "0");
            filled.as_str()
        }
        false => url,
    };
    match url_scheme(url) {
        Some(s) if !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https") => Err(
            format!("unsupported scheme `{s}` (pinflow fetches http:// and https:// URLs)"),
        ),
        _ => UrlParts::split(url).map(|_| ()),
    }
}

/// Reads a URL file once and checks every line as the fetcher will read it (blank lines and
/// `#` comments skipped). Returns how many URLs it holds; the error names the file and the
/// line of the first bad URL, and how many more there are.
fn check_url_file(path: &str) -> Result<u64> {
    let f = File::open(path).map_err(|e| {
        // `host:port/x` or `example.com/logs` without a scheme: say what a URL needs.
        let first = path.split('/').next().unwrap_or("");
        let looks_like_host =
            path.contains('/') && !matches!(first, "" | "." | "..") && first.contains(['.', ':']);
        let hint = if looks_like_host && e.kind() == io::ErrorKind::NotFound {
            " (a URL starts with http:// or https://)"
        } else {
            ""
        };
        Error::Source {
            source_name: path.to_string(),
            why: format!("cannot open: {e}{hint}"),
        }
    })?;
    let mut reader = BufReader::new(f);
    let mut line = Vec::new();
    let (mut lineno, mut urls) = (0u64, 0u64);
    let mut first_bad: Option<(u64, String)> = None;
    let mut more_bad = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Source {
                source_name: format!("{path}:{}", lineno + 1),
                why: format!("read error: {e}"),
            })?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let text = String::from_utf8_lossy(&line);
        let url = text.trim();
        if url.is_empty() || url.starts_with('#') {
            continue;
        }
        match check_url(url) {
            Ok(()) => urls += 1,
            Err(why) if first_bad.is_none() => {
                let shown = format!("`{url}`: {why}");
                first_bad = Some((lineno, crate::ingest::url::redact(&shown).into_owned()))
            }
            Err(_) => more_bad += 1,
        }
    }
    match first_bad {
        None => Ok(urls),
        Some((at, why)) => Err(Error::Source {
            source_name: format!("{path}:{at}"),
            why: match more_bad {
                0 => why,
                n => format!(
                    "{why}; and {n} more bad line{} after it",
                    if n == 1 { "" } else { "s" }
                ),
            },
        }),
    }
}

/// An `http://` or `https://` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80, or 443 for `https://`, when absent).
    pub port: u16,
    /// `https://`: TLS (needs the `tls` cargo feature, on by default).
    pub tls: bool,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses an absolute `http://` or `https://` URL. The error says what is wrong.
    ///
    /// ```
    /// let u = pinflow::source::HttpUrl::parse("http://[::1]:8080/a?b=1").unwrap();
    /// assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 8080, "/a?b=1"));
    /// assert_eq!(u.to_string(), "http://[::1]:8080/a?b=1");
    /// ```
    pub fn parse(url: &str) -> std::result::Result<HttpUrl, String> {
        let p = UrlParts::split(url)?;
        if p.userinfo.is_some() {
            // `HttpUrl` has no place for them, and dropping them silently would lose them.
            return Err("user:password@ is not accepted here".into());
        }
        Ok(p.into_owned())
    }
}

/// An `http://` or `https://` URL's parts, borrowed from it: the fetcher splits every work
/// item's URL with this, so a request costs no allocation for its host and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: bool,
    /// Path and query, starting with `/`: a slice of the URL, or made when the URL has none
    /// (`http://h` is `/`, `http://h?q` is `/?q`).
    pub path: std::borrow::Cow<'a, str>,
    /// `user:password` when the URL has them (before `@`), still percent-encoded.
    pub userinfo: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    /// The parts as an owned [`HttpUrl`] (without the user information).
    pub fn into_owned(self) -> HttpUrl {
        HttpUrl {
            host: self.host.to_string(),
            port: self.port,
            tls: self.tls,
            path: self.path.into_owned(),
        }
    }

    /// [`HttpUrl::parse`] without copying; the same checks and errors.
    pub fn split(url: &'a str) -> std::result::Result<UrlParts<'a>, String> {
        let (rest, tls) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://") {
            if !cfg!(feature = "tls") {
                return Err(
                    "https:// needs a build with the `tls` feature (this one has plain http:// only)"
                        .into(),
                );
            }
            (r, true)
        } else {
            return Err("not an http:// or https:// URL".into());
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        let path: std::borrow::Cow<'a, str> = if path.starts_with('?') {
            format!("/{path}").into()
        } else if path.is_empty() {
            "/".into()
        } else {
            path.into()
        };
        // `user:password@`: the fetchers send it as basic auth, and show the URL redacted.
        let (userinfo, authority) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or("unclosed [ in IPv6 address")?;
            let host = &v6[..end];
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| format!("bad port `{p}`"))?,
                None if after.is_empty() => default_port,
                None => return Err("garbage after IPv6 address".into()),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port `{p}`"))?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("spaces or control characters in the path".into());
        }
        // Non-ASCII characters go out percent-encoded (UTF-8), never raw in the request line.
        let encoded = match crate::ingest::url::encode_reference(&path) {
            Ok(std::borrow::Cow::Owned(p)) => Some(p),
            _ => None,
        };
        let path = encoded.map_or(path, std::borrow::Cow::Owned);
        Ok(UrlParts {
            host,
            port,
            tls,
            path,
            userinfo,
        })
    }
}

impl std::fmt::Display for HttpUrl {
    /// The URL again, without the port when it is the scheme's default.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://")?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if self.port != if self.tls { 443 } else { 80 } {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)
    }
}

/// `url` with the query parameter `name` set to `value` (percent-encoded), replacing any
/// value it had: how cursor pagination asks for the next page.
///
/// ```
/// use pinflow::source::with_query_param;
/// assert_eq!(with_query_param("http://h/logs", "cursor", "a b"), "http://h/logs?cursor=a%20b");
/// assert_eq!(
///     with_query_param("http://h/logs?limit=5&cursor=x#top", "cursor", "y/2"),
///     "http://h/logs?limit=5&cursor=y%2F2"
/// );
/// ```
pub fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = String::with_capacity(url.len() + name.len() + value.len() + 8);
    out.push_str(base);
    let mut sep = '?';
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.split('=').next() == Some(name) {
            continue;
        }
        out.push(sep);
        out.push_str(pair);
        sep = '&';
    }
    out.push(sep);
    out.push_str(name);
    out.push('=');
    push_encoded(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse("http://127.0.0.1:8080/logs/{5..7}.json").unwrap();
        let urls: Vec<String> = (0..t.len()).map(|i| t.url(i)).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:8080/logs/5.json",
                "http://127.0.0.1:8080/logs/6.json",
                "http://127.0.0.1:8080/logs/7.json"
            ]
        );
        assert!(Template::parse("http://h/{3..1}").is_err());
        assert!(Template::parse("http://h/{a..1}").is_err());
        assert!(Template::parse("http://h/{1..2}/{1..2}").is_err());
    }

    #[test]
    fn zero_padded_template_ranges_keep_their_width() {
        let urls = |t: &str| {
            let t = Template::parse(t).unwrap();
            (0..t.len()).map(|i| t.url(i)).collect::<Vec<_>>()
        };
        assert_eq!(urls("h/{001..003}"), ["h/001", "h/002", "h/003"]);
        // As bash: the wider bound's width, when either bound has a leading zero.
        assert_eq!(urls("h/{09..100}")[..2], ["h/009", "h/010"]);
        assert_eq!(urls("h/{1..010}")[0], "h/001");
        // No leading zero, no padding; a lone 0 is not padding.
        assert_eq!(urls("h/{9..10}"), ["h/9", "h/10"]);
        assert_eq!(urls("h/{0..10}")[..2], ["h/0", "h/1"]);
        assert_eq!(
            Template::parse("h/{001..003}.json").unwrap().to_string(),
            "h/{001..003}.json"
        );
    }

    #[test]
    fn sources_are_described_without_passwords() {
        let t = Source::from_arg("http://u:s3cret@h/{1..2}").unwrap();
        assert_eq!(t.describe(), "http://u:***@h/{1..2}");
        let list = Source::Urls(vec!["http://u:s3cret@h/a".into(), "http://h/b".into()]);
        assert_eq!(list.describe(), "http://u:***@h/a and 1 more URLs");
        let one = Source::from_arg("http://u:s3cret@h/one").unwrap();
        assert_eq!(one.describe(), "http://u:***@h/one");
        for bad in [
            "http://u:s3cret@h/{2..1}",
            "htp://u:s3cret@h/x",
            "htp://u:s3cret@h/{1..2}",
        ] {
            let e = Source::from_arg(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret") && e.contains("u:***@h"), "{e}");
        }
        let list = std::env::temp_dir().join(format!("pinflow-redact-{}.txt", std::process::id()));
        std::fs::write(&list, "http://h/a\nhtp://u:s3cret@h/b\n").unwrap();
        let e = Source::from_arg(list.to_str().unwrap())
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&list).unwrap();
        assert!(
            !e.contains("s3cret") && e.contains("u:***@h") && e.contains(":2"),
            "{e}"
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn a_template_feed_writes_into_spare_strings() {
        let source = Source::from_arg("http://h/logs/{7..9}.json").unwrap();
        let mut feed = source.into_feed(Arc::new(|| {})).unwrap();
        let mut spare = vec![String::with_capacity(100)];
        let spare_ptr = spare[0].as_ptr();
        let mut items = Vec::new();
        while let Next::Item(item) = feed.next_reusing(&mut spare) {
            items.push(item);
        }
        let got: Vec<(u64, &str)> = items.iter().map(|i| (i.seq, i.url.as_str())).collect();
        assert_eq!(
            got,
            [
                (0, "http://h/logs/7.json"),
                (1, "http://h/logs/8.json"),
                (2, "http://h/logs/9.json"),
            ]
        );
        // The first URL went into the spare string (same buffer), the others into new ones.
        assert!(spare.is_empty());
        assert_eq!(items[0].url.as_ptr(), spare_ptr);
        assert!(matches!(feed.next_reusing(&mut spare), Next::Done));
    }

    #[test]
    fn the_since_placeholder_is_not_a_range_and_is_filled_per_pass() {
        let t = Template::parse("http://h/e?since={since}&page={1..2}").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.url(1), "http://h/e?since={since}&page=2");
        let t = Template::parse("http://h/{1..2}/{since}").unwrap();
        assert_eq!(t.url(0), "http://h/1/{since}");
        assert!(Template::parse("http://h/{since}").is_err());
        assert!(Template::parse("http://h/{1..2}/{3..4}?s={since}").is_err());
        let (one, n) = Source::from_arg_counted("http://h/e?since={since}").unwrap();
        assert!(matches!(one, Source::Urls(_)));
        assert_eq!((n, one.mentions_since()), (Some(1), Some(true)));
        let plain = Source::from_arg("http://h/e?since=1").unwrap();
        assert_eq!(plain.mentions_since(), Some(false));
        // Escaped as a query value: `:` and `+` of a time, a space, `&` that would split it.
        assert_eq!(
            fill_since("http://h/?a={since}&b={since}", "2026-01-01T00:00:00+01:00 &x"),
            "http://h/?a=2026-01-01T00%3A00%3A00%2B01%3A00%20%26x&b=2026-01-01T00%3A00%3A00%2B01%3A00%20%26x"
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn a_feed_with_since_fills_every_url_and_keeps_the_numbers() {
        let source = Source::from_arg("http://h/{7..8}?after={since}").unwrap();
        let mut feed = source
            .into_feed(Arc::new(|| {}))
            .unwrap()
            .with_since("2026-12-04T07:54:24.000001Z");
        let mut got = Vec::new();
        while let Next::Item(item) = feed.next() {
            got.push((item.seq, item.url));
        }
        let url = |n: u64| format!("http://h/{n}?after=2026-12-04T07%3A54%3A24.000001Z");
        assert_eq!(got, [(0, url(7)), (1, url(8))]);
        assert!(feed.take_error().is_none());
        // A URL file's lines are filled as they come.
        let lines = Source::Lines {
            name: "t".into(),
            reader: Box::new(io::Cursor::new(
                b"http://a/x?s={since}\nhttp://a/y\n".to_vec(),
            )),
        };
        let mut feed = lines.into_feed(Arc::new(|| {})).unwrap().with_since("42");
        let mut urls = Vec::new();
        loop {
            match feed.next() {
                Next::Item(i) => urls.push(i.url),
                Next::Pending => std::thread::yield_now(),
                Next::Done => break,
            }
        }
        assert_eq!(urls, ["http://a/x?s=42", "http://a/y"]);
    }

    #[test]
    fn a_url_argument_is_one_url_and_a_bad_scheme_is_named() {
        let (source, n) = Source::from_arg_counted("http://127.0.0.1:9/x.json").unwrap();
        assert!(matches!(source, Source::Urls(ref v) if v == &["http://127.0.0.1:9/x.json"]));
        assert_eq!(n, Some(1));
        for (arg, scheme) in [
            ("htp://h/x.json", "htp"),
            ("ftp://h/x.json", "ftp"),
            ("htp://h/{1..3}.json", "htp"),
        ] {
            let e = Source::from_arg(arg).unwrap_err().to_string();
            assert!(e.contains(&format!("unsupported scheme `{scheme}`")), "{e}");
        }
        let e = Source::from_arg("logs/{1..3}.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        let e = Source::from_arg("example.invalid/logs.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a URL starts with http://"), "{e}");
        let (_, n) = Source::from_arg_counted("http://h/{3..7}").unwrap();
        assert_eq!(n, Some(5));
    }

    #[test]
    fn a_url_file_is_checked_line_by_line_before_the_run() {
        let dir = std::env::temp_dir().join(format!("pinflow-url-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("urls.txt");
        let name = path.display().to_string();
        std::fs::write(&path, "# list\nhttp://h/1\n\nhttp://h/2\n").unwrap();
        assert_eq!(Source::from_arg_counted(&name).unwrap().1, Some(2));
        std::fs::write(&path, "http://h/1\n\nhtp://h/3\nhttp://h/4\nnot a url\n").unwrap();
        let e = Source::from_arg(&name).unwrap_err().to_string();
        assert!(e.contains(&format!("{name}:3: `htp://h/3`")), "{e}");
        assert!(e.contains("unsupported scheme `htp`"), "{e}");
        assert!(e.contains("and 1 more bad line after it"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://example.com").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("example.com", 80, "/")
        );
        let u = HttpUrl::parse("http://h:81?x=1#frag").unwrap();
        assert_eq!((u.port, u.path.as_str()), (81, "/?x=1"));
        assert!(HttpUrl::parse("ftp://h/").is_err());
        let u = HttpUrl::parse("http://h/café?q=ü").unwrap();
        assert_eq!(
            u.path, "/caf%C3%A9?q=%C3%BC",
            "non-ASCII never goes out raw"
        );
        assert!(HttpUrl::parse("http://h:99999/").is_err());
        assert!(HttpUrl::parse("http:///x").is_err());
        #[cfg(feature = "tls")]
        {
            let u = HttpUrl::parse("https://h/x").unwrap();
            assert_eq!(
                (u.port, u.tls, u.to_string().as_str()),
                (443, true, "https://h/x")
            );
            assert_eq!(HttpUrl::parse("https://h:8443").unwrap().port, 8443);
        }
        assert!(HttpUrl::parse("ftp://h/").unwrap_err().contains("http"));
    }

    #[test]
    #[cfg(feature = "http")]
    fn line_feed_skips_blanks_and_comments() {
        let text = "# list\nhttp://a/1\n\n  http://a/2  \n";
        let src = Source::Lines {
            name: "t".into(),
            reader: Box::new(io::Cursor::new(text.as_bytes().to_vec())),
        };
        let mut feed = src.into_feed(Arc::new(|| {})).unwrap();
        let mut got = Vec::new();
        loop {
            match feed.next() {
                Next::Item(i) => got.push(i),
                Next::Pending => std::thread::yield_now(),
                Next::Done => break,
            }
        }
        assert_eq!(
            got,
            [
                WorkItem {
                    seq: 0,
                    url: "http://a/1".into()
                },
                WorkItem {
                    seq: 1,
                    url: "http://a/2".into()
                }
            ]
        );
    }
}

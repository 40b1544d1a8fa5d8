//! `--files s3://BUCKET/PREFIX/*.ndjson`: objects of an S3-compatible store, read like local
//! files (the ETL case).
//!
//! - [`expand`] lists what a spec names (ListObjectsV2, page by page, one "directory" level
//!   like a local glob): `s3://B/P/*.ndjson` the keys under `P/` whose last segment matches
//!   the glob, `s3://B/P/` the data files under `P/` (`.json`, `.ndjson`, `.jsonl`, `.csv`),
//!   `s3://B/P/KEY` that one object. Each object keeps the ETag and size the listing gave:
//!   they are its identity for the resume journal, and every read of it is pinned to them.
//! - [`ObjectReader`] reads one object as an [`io::Read`], by ranged GETs of
//!   `output.s3.read_chunk_bytes` (`If-Match` its ETag), streamed: no object is ever whole in
//!   memory, and the reader's own chunking (lines cut at newlines, carried over) is the local
//!   files' own. A dropped connection or a 5xx mid-object is retried from the byte reached; a
//!   refusal (403, 404, an object changed since it was listed) is a read error naming the
//!   object, which fails that input and the run goes on, as with a local file.
//!
//! The store is reached with the output's settings ([`S3Settings`]: `[output.s3]`'s endpoint,
//! region, path style, CA file and attempts, then the `AWS_*` variables).

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, S3Action, UrlStyle};

use super::{S3Object, DATA_EXTENSIONS};
use crate::config::S3Config;
use crate::error::{Error, Result};
use crate::s3::response::{check, permanent, retried, transient, Attempt, Failed};
use crate::s3::{agent, S3Settings};

/// How long a signed URL stays valid: one request, retried within this.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// One bucket of a store, and the client that reaches it.
pub(crate) struct Store {
    bucket: Bucket,
    settings: S3Settings,
    agent: ureq::Agent,
    /// The bytes one ranged GET asks for.
    chunk: u64,
}

impl Store {
    /// The client for `bucket` with the settings of `cfg` and the environment.
    pub(crate) fn new(cfg: &S3Config, bucket: &str) -> Result<Store> {
        let settings = S3Settings::new(cfg, |k| std::env::var(k).ok())?;
        let style = match settings.path_style {
            true => UrlStyle::Path,
            false => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(
            settings.endpoint.clone(),
            style,
            bucket.to_string(),
            settings.region.clone(),
        )
        .map_err(|e| Error::config("files", format!("bucket `{bucket}`: {e}")))?;
        let agent = agent(&settings, cfg)?;
        Ok(Store {
            bucket,
            settings,
            agent,
            chunk: cfg.read_chunk_bytes.max(1),
        })
    }

    /// The bucket's name.
    pub(crate) fn name(&self) -> &str {
        self.bucket.name()
    }

    /// The objects directly under `prefix` (`delimiter` `/`: not in "subdirectories"), in
    /// key order, every page of the listing.
    fn list(&self, prefix: &str) -> Attempt<Vec<(String, String, u64)>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = retried(self.settings.attempts, "ListObjectsV2", || {
                let mut action =
                    ListObjectsV2::new(&self.bucket, self.settings.credentials.as_ref());
                action.with_prefix(prefix);
                action.with_delimiter("/");
                if let Some(t) = &token {
                    action.with_continuation_token(t.as_str());
                }
                let url = action.sign(SIGNED_FOR);
                let (_, body) = check(self.agent.get(url.as_str()).call())?;
                ListObjectsV2::parse_response(&body)
                    .map_err(|e| permanent(format!("unreadable ListObjectsV2 answer: {e}")))
            })?;
            for o in page.contents {
                let etag = o.etag.unwrap_or_default();
                found.push((o.key, etag, o.size.unwrap_or(0)));
            }
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        found.sort();
        Ok(found)
    }

    /// A reader of `object` from its first byte.
    pub(crate) fn open(self: &Arc<Store>, object: &S3Object) -> ObjectReader {
        ObjectReader {
            store: Arc::clone(self),
            object: object.clone(),
            pos: 0,
            body: None,
        }
    }

    /// A GET of `object`'s bytes `from..to` (`to` exclusive), pinned to its ETag.
    fn get_range(
        &self,
        object: &S3Object,
        from: u64,
        to: u64,
    ) -> Attempt<ureq::BodyReader<'static>> {
        let url = self
            .bucket
            .get_object(self.settings.credentials.as_ref(), &object.key)
            .sign(SIGNED_FOR);
        let mut req = self
            .agent
            .get(url.as_str())
            .header("range", format!("bytes={from}-{}", to - 1));
        if !object.etag.is_empty() {
            req = req.header("if-match", object.etag.as_str());
        }
        match req.call() {
            Ok(r) if r.status().as_u16() == 206 => Ok(r.into_body().into_reader()),
            // The whole object, which is what was asked for.
            Ok(r) if r.status().as_u16() == 200 && from == 0 && to == object.size => {
                Ok(r.into_body().into_reader())
            }
            Ok(r) if r.status().is_success() => Err(permanent(format!(
                "the store answered HTTP {} to a ranged GET (bytes {from}-{})",
                r.status().as_u16(),
                to - 1
            ))),
            Err(e) => Err(transient(e.to_string())),
            other => match check(other) {
                Err(f) if f.status == Some(412) => Err(Failed {
                    why: format!(
                        "{}; the object changed since it was listed (its ETag is no longer {})",
                        f.why, object.etag
                    ),
                    ..f
                }),
                Err(f) => Err(f),
                Ok(_) => Err(permanent("unexpected answer")),
            },
        }
    }
}

/// Lists the objects `spec` (`s3://BUCKET/...`) names, sorted by key; a spec that names
/// none, a bucket that is not there or a refusal is an error naming the spec.
pub(crate) fn expand(spec: &str, cfg: &S3Config) -> Result<Vec<S3Object>> {
    let bad = |why: String| Error::Source {
        source_name: spec.to_string(),
        why,
    };
    let rest = spec.strip_prefix("s3://").unwrap_or(spec);
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket: write s3://BUCKET/PREFIX/*.ndjson".into()));
    }
    let (dir, last) = match key.rfind('/') {
        Some(i) => (&key[..=i], &key[i + 1..]),
        None => ("", key),
    };
    if dir.contains(['*', '?', '[']) {
        return Err(bad(
            "a glob applies to the last segment of the key only (s3://BUCKET/PREFIX/*.ndjson)"
                .into(),
        ));
    }
    let store = Store::new(cfg, bucket)?;
    let listed = store
        .list(dir)
        .map_err(|f| bad(format!("s3://{bucket}/{dir}: {}", f.why)))?;
    let pattern = match last.contains(['*', '?', '[']) {
        true => {
            Some(glob::Pattern::new(last).map_err(|e| bad(format!("not a glob pattern: {e}")))?)
        }
        false => None,
    };
    let objects: Vec<S3Object> = listed
        .into_iter()
        .filter(|(k, _, _)| {
            // A key outside the prefix (a store that ignored it) is no match.
            let Some(name) = k.strip_prefix(dir) else {
                return false;
            };
            match (&pattern, last.is_empty()) {
                (Some(p), _) => p.matches(name),
                (None, true) => name
                    .rsplit_once('.')
                    .is_some_and(|(_, ext)| DATA_EXTENSIONS.contains(&ext)),
                (None, false) => name == last,
            }
        })
        .map(|(key, etag, size)| S3Object {
            url: format!("s3://{bucket}/{key}"),
            bucket: bucket.to_string(),
            key,
            etag,
            size,
        })
        .collect();
    if objects.is_empty() {
        return Err(bad(match (&pattern, last.is_empty()) {
            (Some(_), _) => "no object matches".into(),
            (None, true) => "the prefix holds no .json, .ndjson, .jsonl or .csv object".into(),
            (None, false) => "no such object".into(),
        }));
    }
    Ok(objects)
}

/// One object as a stream of bytes: ranged GETs of the store's chunk size, one after another,
/// each read as it arrives. A failure mid-range is retried from the byte reached.
pub(crate) struct ObjectReader {
    store: Arc<Store>,
    object: S3Object,
    /// The next byte to hand out.
    pos: u64,
    /// The range being read, and where it ends (exclusive).
    body: Option<(ureq::BodyReader<'static>, u64)>,
}

impl ObjectReader {
    /// Opens the range from `pos`, retried.
    fn open_range(&mut self) -> io::Result<()> {
        let to = (self.pos + self.store.chunk).min(self.object.size);
        let from = self.pos;
        let store = &self.store;
        let object = &self.object;
        let reader = retried(store.settings.attempts, "GetObject", || {
            store.get_range(object, from, to)
        })
        .map_err(|f| io::Error::other(f.why))?;
        self.body = Some((reader, to));
        Ok(())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Failures of reading a range's body (the GETs themselves are retried in
        // `open_range`): each is retried from the byte reached, up to `attempts` in a row.
        let mut failures = 0u32;
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.pos >= self.object.size {
                return Ok(0);
            }
            if self.body.is_none() {
                self.open_range()?;
            }
            let Some((body, end)) = self.body.as_mut() else {
                continue;
            };
            let want = buf.len().min((*end - self.pos) as usize);
            let why = match body.read(&mut buf[..want]) {
                Ok(0) => "the connection closed before the range's end".to_string(),
                Ok(n) => {
                    self.pos += n as u64;
                    if self.pos >= *end {
                        self.body = None;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e.to_string(),
            };
            self.body = None;
            failures += 1;
            if failures >= self.store.settings.attempts {
                return Err(io::Error::other(format!(
                    "GetObject: {why} at byte {} (after {failures} attempts)",
                    self.pos
                )));
            }
            tracing::warn!(object = %self.object.url, byte = self.pos, error = %why, "reading again from the byte reached");
            std::thread::sleep(crate::s3::response::jitter(backoff));
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_without_a_bucket_or_with_a_glob_before_the_last_segment_is_refused() {
        let cfg = S3Config::default();
        let e = expand("s3:///in/*.ndjson", &cfg).unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
        let e = expand("s3://b/in-*/x.ndjson", &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s3://b/in-*/x.ndjson") && e.contains("last segment"),
            "{e}"
        );
    }
}

//! [`UploadState`]: where one staged file's upload stands, kept durably beside it, so that a
//! run killed at any instant can be followed by one that neither uploads it twice nor loses it.
//!
//! The state of `DIR/NAME.parquet` is `DIR/.NAME.parquet.s3` (hidden, so it is never taken
//! for a staged file), one line per step, each fsynced before the step it allows is taken:
//!
//! ```text
//! key<TAB>logs/20261204T153012Z-9c1e03-part-00001.parquet   (created whole: temp, fsync, rename)
//! upload<TAB>UPLOAD-ID                                      (a multipart upload was created)
//! part<TAB>1<TAB>"ETAG"                                     (part 1 is in the store)
//! uploaded                                                  (the object exists)
//! ```
//!
//! The key is decided once, before anything is sent, so every attempt of every run uploads
//! the file under the same key: an object at that key can only be this file. A last line cut
//! short by a crash (no newline at its end) is the step it was about to record, not taken.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::sync_parent;

/// One staged file's upload state, as read from (and appended to) its state file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct UploadState {
    /// The object key, fixed before the first request.
    pub key: String,
    /// The multipart upload begun for it, if one was.
    pub upload_id: Option<String>,
    /// The parts of that upload known to be in the store: number → ETag.
    pub parts: BTreeMap<u16, String>,
    /// The object exists: only the local copies are left to remove.
    pub uploaded: bool,
}

/// The state file of the staged file `staged`: `.NAME.s3` beside it (the journal reads it
/// too, see [`crate::journal::upload_state_path`]).
pub(super) fn state_path(staged: &Path) -> PathBuf {
    crate::journal::upload_state_path(staged)
}

/// The staged file a state file belongs to, if `path` is one (`.NAME.s3` → `NAME`).
pub(super) fn staged_path(state: &Path) -> Option<PathBuf> {
    let name = state.file_name()?.to_str()?;
    let staged = name.strip_prefix('.')?.strip_suffix(".s3")?;
    (!staged.is_empty()).then(|| state.with_file_name(staged))
}

/// Removes, under `dir`, the states left without their staged file by a run killed between
/// the two removals (the object exists: the state says `uploaded`), unless `keep` (with a
/// journal, which takes them for the files). Any other such state is kept and reported: its
/// file was moved away by hand, and so was its upload's fate.
pub(super) fn sweep(dir: &Path, keep: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sweep(&p, keep);
            continue;
        }
        let Some(staged) = staged_path(&p) else {
            continue;
        };
        if staged.exists() {
            continue;
        }
        match UploadState::load(&staged) {
            Ok(Some(st)) if st.uploaded => {
                if !keep {
                    let _ = std::fs::remove_file(&p);
                }
            }
            _ => {
                tracing::warn!(state = %p.display(), "an upload state without its staged file is kept")
            }
        }
    }
}

impl UploadState {
    /// Reads the state of `staged`: `None` when it has none (nothing of it was ever sent).
    /// A state file that cannot be read, or whose complete lines do not check out, is an
    /// error naming it and the line: the file's key is then unknown, and guessing could put
    /// its rows in a second object.
    pub(super) fn load(staged: &Path) -> Result<Option<UploadState>> {
        let path = state_path(staged);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::output(&path, "read the upload state", e)),
        };
        let text = String::from_utf8_lossy(&text);
        // Only complete lines: a torn last one is a step that was never taken.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        let mut st = UploadState::default();
        for (n, line) in complete.split('\n').enumerate() {
            let bad = |why: &str| {
                Error::output(
                    &path,
                    "read the upload state",
                    format!(
                        "line {}: {why}; the staged file's object key is unknown (move the \
                         staged file and this state file away to decide by hand)",
                        n + 1
                    ),
                )
            };
            let fields: Vec<&str> = line.split('\t').collect();
            match (n, fields.as_slice()) {
                (0, ["key", key]) if !key.is_empty() => st.key = key.to_string(),
                (0, _) => return Err(bad("the first line is not the object key")),
                (_, ["upload", id]) if !id.is_empty() => {
                    // A new upload: the parts recorded before were of the old one.
                    st.upload_id = Some(id.to_string());
                    st.parts.clear();
                }
                (_, ["part", number, etag]) if st.upload_id.is_some() => {
                    let number = number
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| (1..=10_000).contains(&p))
                        .ok_or_else(|| bad("a part number that is not 1 to 10000"))?;
                    st.parts.insert(number, etag.to_string());
                }
                (_, ["uploaded"]) => st.uploaded = true,
                _ => return Err(bad("not an upload step")),
            }
        }
        if st.key.is_empty() {
            return Err(Error::output(
                &path,
                "read the upload state",
                "empty (a state file is created whole, with its key)",
            ));
        }
        Ok(Some(st))
    }

    /// Creates the state of `staged` with its key, whole (temporary name, fsync, rename,
    /// fsync of the directory): once this returns, every run uploads it under `key`.
    pub(super) fn create(staged: &Path, key: &str) -> Result<UploadState> {
        let path = state_path(staged);
        let tmp = path.with_extension("s3-new");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(format!("key\t{key}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::output(&path, "create the upload state", e))?;
        sync_parent(&path);
        Ok(UploadState {
            key: key.to_string(),
            ..UploadState::default()
        })
    }

    /// Records that the multipart upload `id` was created for the file.
    pub(super) fn record_upload(&mut self, staged: &Path, id: &str) -> Result<()> {
        append(staged, &format!("upload\t{id}\n"))?;
        self.upload_id = Some(id.to_string());
        self.parts.clear();
        Ok(())
    }

    /// Records that part `number` of the current upload is in the store with `etag`.
    pub(super) fn record_part(&mut self, staged: &Path, number: u16, etag: &str) -> Result<()> {
        append(staged, &format!("part\t{number}\t{etag}\n"))?;
        self.parts.insert(number, etag.to_string());
        Ok(())
    }

    /// Records that the object exists.
    pub(super) fn record_uploaded(&mut self, staged: &Path) -> Result<()> {
        append(staged, "uploaded\n")?;
        self.uploaded = true;
        Ok(())
    }
}

/// Appends `line` to the state of `staged` and fsyncs it.
fn append(staged: &Path, line: &str) -> Result<()> {
    let path = state_path(staged);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()
    };
    write().map_err(|e| Error::output(&path, "record an upload step", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_as_recorded_and_a_torn_line_is_a_step_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("part-00001.parquet");
        assert_eq!(UploadState::load(&staged).unwrap(), None);
        let mut st = UploadState::create(&staged, "p/x-part-00001.parquet").unwrap();
        assert_eq!(
            state_path(&staged),
            dir.path().join(".part-00001.parquet.s3")
        );
        assert_eq!(staged_path(&state_path(&staged)).unwrap(), staged);
        st.record_upload(&staged, "up-1").unwrap();
        st.record_part(&staged, 1, "\"e1\"").unwrap();
        st.record_upload(&staged, "up-2").unwrap();
        st.record_part(&staged, 2, "\"e2\"").unwrap();
        let back = UploadState::load(&staged).unwrap().unwrap();
        assert_eq!(back, st);
        assert_eq!(back.upload_id.as_deref(), Some("up-2"));
        assert_eq!(
            back.parts.len(),
            1,
            "parts of the abandoned upload are forgotten"
        );
        // A crash while `uploaded` was being appended: not recorded.
        append(&staged, "uploa").unwrap();
        assert!(!UploadState::load(&staged).unwrap().unwrap().uploaded);
    }

    #[test]
    fn a_damaged_state_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("a.parquet");
        std::fs::write(state_path(&staged), "key\tk\nupload\tu\npart\tx\t\"e\"\n").unwrap();
        let e = UploadState::load(&staged).unwrap_err().to_string();
        assert!(e.contains(".a.parquet.s3") && e.contains("line 3"), "{e}");
        std::fs::write(state_path(&staged), "part\t1\te\n").unwrap();
        let e = UploadState::load(&staged).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}

//! Operator state committed with a checkpoint: the open time windows and the watermark
//! (issue 18), so that a resumed run goes on from exactly the rows the committed files hold.
//!
//! The state is a file of its own beside the journal, `JOURNAL.state-NNNNN` (the number of
//! its checkpoint), written under a temporary name, fsynced and renamed into place *before*
//! the checkpoint line that names it is appended. The line carries the file's name, size,
//! CRC-32 and the key of the windows it belongs to:
//!
//! ```text
//! {"checkpoint":3,"files":[…],"items":"0-41","state":["o.parquet.journal.state-00003",5120,"9a3c…","--window 10s …"],"crc32":"…"}
//! ```
//!
//! So the line stays small whatever the state's size (a journal line per checkpoint, for the
//! whole run, would otherwise grow with every open window), the state is committed by the
//! same line as the files and items it goes with, and a damaged or swapped state file is
//! caught before anything is fetched. Only the last checkpoint's state is kept: a crash
//! before the line leaves a newer state file that nothing names, one after it the older
//! one; [`sweep`] deletes both.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Defect;
use crate::error::{Error, Result};

/// Operator state to commit with a checkpoint ([`super::Journal::commit_with_state`]).
#[derive(Debug, Clone, Copy)]
pub struct State<'a> {
    /// What the state belongs to (for windows: their options, as the CLI would give them): a
    /// run whose key differs cannot resume from it.
    pub key: &'a str,
    /// The state itself (opaque here; self-checking in its own format).
    pub bytes: &'a [u8],
}

/// The state of the last committed checkpoint, read and checked by [`super::Journal::open`].
#[derive(Debug, Clone)]
pub struct SavedState {
    /// Its key ([`State::key`]).
    pub key: String,
    /// Its bytes, whose size and CRC-32 matched the line's.
    pub bytes: Vec<u8>,
    /// The state file.
    pub path: PathBuf,
    /// The journal line that commits it.
    pub line: u64,
}

/// A state file as a checkpoint line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StateRef {
    pub(super) file: String,
    pub(super) size: u64,
    pub(super) crc: u32,
    pub(super) key: String,
}

/// `JOURNAL.state-NNNNN`: the name of checkpoint `number`'s state file, beside the journal.
pub(super) fn file_name(journal: &Path, number: u64) -> String {
    let name = journal.file_name().unwrap_or_default().to_string_lossy();
    format!("{name}.state-{number:05}")
}

/// Writes `state` as checkpoint `number`'s state file: temporary name, fsync, rename, fsync
/// of the directory. Returns what the checkpoint line names.
pub(super) fn write(journal: &Path, number: u64, state: &State<'_>) -> Result<StateRef> {
    let file = file_name(journal, number);
    let fin = journal.with_file_name(&file);
    let tmp = journal.with_file_name(format!(".{file}.tmp-{}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(state.bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, &fin)) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::output(&fin, "write window state", e));
    }
    crate::fsutil::sync_parent(&fin);
    Ok(StateRef {
        file,
        size: state.bytes.len() as u64,
        crc: crc32fast::hash(state.bytes),
        key: state.key.to_string(),
    })
}

/// Appends `,"state":[NAME,SIZE,"CRC",KEY]` to a checkpoint line being built.
pub(super) fn to_json(r: &StateRef, line: &mut Vec<u8>) {
    line.extend_from_slice(b",\"state\":[");
    crate::json::write_string(line, &r.file);
    line.extend_from_slice(format!(",{},\"{:08x}\",", r.size, r.crc).as_bytes());
    crate::json::write_string(line, &r.key);
    line.push(b']');
}

/// The `state` of checkpoint `number`'s line `v`, if it has one; its file must be the one
/// that checkpoint writes (so a line names nothing outside the journal's directory).
pub(super) fn parse(
    v: &simd_json::OwnedValue,
    journal: &Path,
    number: u64,
) -> std::result::Result<Option<StateRef>, Defect> {
    use simd_json::prelude::*;
    let Some(s) = v.get("state") else {
        return Ok(None);
    };
    let parts = s.as_array().map(|a| {
        (
            a.first().and_then(|f| f.as_str()),
            a.get(1).and_then(|n| n.as_u64()),
            a.get(2)
                .and_then(|c| c.as_str())
                .filter(|c| c.len() == 8)
                .and_then(|c| u32::from_str_radix(c, 16).ok()),
            a.get(3).and_then(|k| k.as_str()),
            a.len(),
        )
    });
    let Some((Some(file), Some(size), Some(crc), Some(key), 4)) = parts else {
        return Err(Defect::Malformed(
            "the state is not [file name, size in bytes, CRC-32, key]".into(),
        ));
    };
    let want = file_name(journal, number);
    if file != want {
        return Err(Defect::Name {
            name: file.to_string(),
            why: format!("is not the state file of checkpoint {number} ({want:?})"),
        });
    }
    Ok(Some(StateRef {
        file: file.to_string(),
        size,
        crc,
        key: key.to_string(),
    }))
}

/// Reads the state file `r` names (beside `journal`) and checks its size and CRC-32.
pub(super) fn load(journal: &Path, r: &StateRef) -> std::result::Result<Vec<u8>, Defect> {
    let path = journal.with_file_name(&r.file);
    let wrong = |why: String| Defect::StateFile {
        file: path.clone(),
        why,
    };
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(wrong(
                "is missing: the open windows and the watermark of the committed rows are lost"
                    .into(),
            ))
        }
        Err(e) => return Err(wrong(format!("cannot be read ({e})"))),
    };
    if bytes.len() as u64 != r.size {
        return Err(wrong(format!(
            "is {} bytes, but {} bytes were committed: it was cut or changed",
            bytes.len(),
            r.size
        )));
    }
    if crc32fast::hash(&bytes) != r.crc {
        return Err(wrong(
            "does not match the checksum committed with it: it was changed or damaged".into(),
        ));
    }
    Ok(bytes)
}

/// Deletes the state files beside `journal` (and their temporary names) other than those in
/// `keep`: older checkpoints' states and what a crash before a commit left. Best effort: a file left
/// behind is deleted by the next run, and no run reads a state file the journal does not name.
pub(super) fn sweep(journal: &Path, keep: &[Option<&str>]) {
    let (Some(name), Ok(entries)) = (
        journal
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        fs::read_dir(crate::fsutil::parent_dir(journal)),
    ) else {
        return;
    };
    let prefix = format!("{name}.state-");
    let temp_prefix = format!(".{prefix}");
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let ours = file
            .strip_prefix(&prefix)
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            || file.starts_with(&temp_prefix);
        if ours && !keep.contains(&Some(file.as_str())) && e.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Journal, OutputFiles, RangeSet};
    use super::*;

    const KEY: &str = "--window 10s --window-by service";

    fn files(d: &Path) -> OutputFiles {
        OutputFiles::Beside(d.join("o.parquet"))
    }

    /// A journal at `d` with one checkpoint whose state is `bytes`; returns the journal path.
    fn committed(d: &Path, bytes: &[u8]) -> PathBuf {
        let path = d.join("o.parquet.journal");
        let (mut j, _) = Journal::open(&path, "id", &files(d)).unwrap();
        let mut items = RangeSet::default();
        items.insert(0);
        j.commit_with_state(&[], &items, Some(State { key: KEY, bytes }))
            .unwrap();
        path
    }

    fn reopen(path: &Path) -> Result<Journal> {
        Journal::open(path, "id", &files(path.parent().unwrap())).map(|(j, _)| j)
    }

    #[test]
    fn the_last_checkpoints_state_comes_back_and_older_ones_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let path = committed(d.path(), b"first");
        let mut j = reopen(&path).unwrap();
        let mut items = RangeSet::default();
        items.insert(1);
        j.commit_with_state(
            &[],
            &items,
            Some(State {
                key: KEY,
                bytes: b"second",
            }),
        )
        .unwrap();
        drop(j);
        // What a crash before checkpoint 3's line left: its state file, named by no line.
        fs::write(
            d.path().join("o.parquet.journal.state-00003"),
            b"uncommitted",
        )
        .unwrap();
        let mut j = reopen(&path).unwrap();
        let s = j.take_state(Some(KEY)).unwrap().unwrap();
        assert_eq!((s.bytes.as_slice(), s.line), (&b"second"[..], 3));
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".state-"))
            .collect();
        left.sort();
        assert_eq!(left, ["o.parquet.journal.state-00002"]);
    }

    #[test]
    fn a_damaged_cut_or_missing_state_file_stops_the_run_at_its_line() {
        for (damage, want) in [
            ("flip", "does not match the checksum"),
            ("cut", "bytes were committed"),
            ("remove", "is missing"),
        ] {
            let d = tempfile::tempdir().unwrap();
            let path = committed(d.path(), b"0123456789");
            let state = d.path().join("o.parquet.journal.state-00001");
            match damage {
                "flip" => fs::write(&state, b"0123456788").unwrap(),
                "cut" => fs::write(&state, b"01234").unwrap(),
                _ => fs::remove_file(&state).unwrap(),
            }
            let e = reopen(&path).err().expect("a damaged state is refused");
            let text = e.to_string();
            assert!(
                text.contains(&format!("{}:2", path.display()))
                    && text.contains("o.parquet.journal.state-00001")
                    && text.contains(want),
                "{damage}: {text}"
            );
        }
    }

    #[test]
    fn a_state_line_naming_another_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = committed(d.path(), b"x");
        // Rewrite the line to name a file elsewhere, with a valid CRC: still refused.
        let text = fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let body = lines[1]
            .split(",\"crc32\"")
            .next()
            .unwrap()
            .replace("o.parquet.journal.state-00001", "../elsewhere");
        let mut sealed = body.into_bytes();
        super::super::seal(&mut sealed);
        lines[1] = String::from_utf8(sealed).unwrap().trim_end().to_string();
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        let e = reopen(&path).err().unwrap().to_string();
        assert!(e.contains("is not the state file of checkpoint 1"), "{e}");
    }

    #[test]
    fn a_state_of_other_windows_or_none_where_one_is_needed_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = committed(d.path(), b"x");
        let e = reopen(&path)
            .unwrap()
            .take_state(Some("--window 20s"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("its \"--window 10s\"")
                && e.contains("this run's \"--window 20s\"")
                && e.contains(":2"),
            "{e}"
        );
        let e = reopen(&path).unwrap().take_state(None).unwrap_err();
        assert!(e.to_string().contains("this run has no windows"), "{e}");
        // Checkpoints committed without windows cannot be resumed with them.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("o.parquet.journal");
        let (mut j, _) = Journal::open(&path, "id", &files(d.path())).unwrap();
        let mut items = RangeSet::default();
        items.insert(0);
        j.commit(&[], &items).unwrap();
        drop(j);
        let e = reopen(&path).unwrap().take_state(Some(KEY)).unwrap_err();
        assert!(e.to_string().contains("without window state"), "{e}");
        // A journal with no checkpoint yet: nothing to resume, windows or not.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("o.parquet.journal");
        let (mut j, _) = Journal::open(&path, "id", &files(d.path())).unwrap();
        assert!(j.take_state(Some(KEY)).unwrap().is_none());
    }
}

//! The run's own files against each other and against its inputs, checked before anything is
//! opened or fetched: the output, the dead-letter file and the journal must be three different
//! files, and none of them may be an input of the run (or of the next run of the same
//! command), or the run would overwrite what it reads, or read back what it writes.
//!
//! Paths are compared resolved ([`resolve`]: canonical, or for a file not created yet its
//! canonical directory plus its name), so `./a`, `dir/../a` and a link to the directory all
//! name the same file.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil::resolve;
use crate::ingest::files::{would_read, FileInput};
use crate::ingest::Source;
use crate::journal::Journal;
use crate::output::OutputPlan;

/// One file the run writes.
struct Written {
    /// The configuration key, for the error.
    key: &'static str,
    /// What it is, in messages.
    what: &'static str,
    /// How to name another one.
    fix: &'static str,
    path: PathBuf,
}

/// Refuses a run whose output, dead-letter file and journal are not three different files,
/// or one of which is (or, once created, would be taken for) an input of `source`.
pub(super) fn check(cfg: &Config, source: &Source, output: &OutputPlan) -> Result<()> {
    let mut written = Vec::new();
    if output.enabled {
        written.push(Written {
            key: "out",
            what: "the output (--out)",
            fix: "give --out another path",
            path: resolve(&cfg.out),
        });
    }
    written.push(Written {
        key: "dead_letter",
        what: "the dead-letter file (--dead-letter, default OUT.deadletter.ndjson)",
        fix: "give --dead-letter another path",
        path: resolve(&cfg.dead_letter_path()),
    });
    if cfg.writer.journal {
        written.push(Written {
            key: "writer.journal",
            what: "the resume journal (OUT.journal)",
            fix: "give --out another path",
            path: resolve(&Journal::path_for(&cfg.out)),
        });
    }
    for (i, w) in written.iter().enumerate() {
        if let Some(first) = written[..i].iter().find(|o| o.path == w.path) {
            return Err(Error::config(
                w.key,
                format!(
                    "{} is both {} and {}: one would overwrite the other; {}",
                    w.path.display(),
                    first.what,
                    w.what,
                    w.fix
                ),
            ));
        }
    }
    let inputs: Vec<&Path> = match source {
        Source::Files(inputs) => inputs
            .iter()
            .filter_map(|i| match i {
                FileInput::Path(p) => Some(p.as_path()),
                FileInput::Stdin | FileInput::Object(_) => None,
            })
            .collect(),
        Source::Lines { name, .. } if name != "-" => vec![Path::new(name)],
        _ => Vec::new(),
    };
    for input in inputs {
        let input = resolve(input);
        if let Some(w) = written.iter().find(|w| w.path == input) {
            return Err(Error::config(
                w.key,
                format!(
                    "{} is both an input of this run and {}: the run would overwrite what it \
                     reads; {}",
                    input.display(),
                    w.what,
                    w.fix
                ),
            ));
        }
    }
    // A file not there yet is not among the inputs; the next run of the same command would
    // read it (a dead-letter file in an input directory: its records, dead-lettered again,
    // appended to the file being read, again and again).
    let (flag, specs): (&str, Vec<&str>) = match source {
        Source::Files(_) => ("--files", cfg.files.iter().map(String::as_str).collect()),
        Source::Tail(t) => ("--tail", vec![t.pattern()]),
        _ => ("", Vec::new()),
    };
    for spec in specs {
        if let Some(w) = written.iter().find(|w| would_read(spec, &w.path)) {
            return Err(Error::config(
                w.key,
                format!(
                    "{} is {} and would be read as an input ({flag} {spec}): the run \
                     would read back what it writes; {} outside the inputs",
                    w.path.display(),
                    w.what,
                    w.fix
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(specs: &[String]) -> Source {
        Source::files(specs).unwrap()
    }

    #[test]
    fn outputs_that_alias_each_other_or_an_input_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = d.join("in.ndjson");
        std::fs::write(&input, "{\"id\":1}\n").unwrap();
        let plan = |cfg: &Config| OutputPlan {
            out: cfg.out.clone(),
            writer: cfg.writer.clone(),
            rotate: None,
            reopen: Default::default(),
            source: String::new(),
            run_id: String::new(),
            schema: None,
            enabled: true,
            s3: None,
        };
        let check_with = |cfg: &Config, src: &Source| check(cfg, src, &plan(cfg));
        let in_spec = vec![input.display().to_string()];

        // Fine: three files of their own, none an input.
        let cfg = Config::new(d.join("out.parquet"));
        check_with(&cfg, &files(&in_spec)).unwrap();

        // The dead letters spelled differently but the output all the same.
        let mut cfg = Config::new(d.join("out.parquet"));
        cfg.dead_letter = Some(d.join("sub/../out.parquet"));
        std::fs::create_dir(d.join("sub")).unwrap();
        let e = check_with(&cfg, &files(&in_spec)).unwrap_err().to_string();
        assert!(e.contains("dead_letter") && e.contains("the output"), "{e}");

        // The journal and the dead letters.
        let mut cfg = Config::new(d.join("out.parquet"));
        cfg.writer.journal = true;
        cfg.dead_letter = Some(d.join("out.parquet.journal"));
        let e = check_with(&cfg, &files(&in_spec)).unwrap_err().to_string();
        assert!(e.contains("journal"), "{e}");

        // The output is the input.
        let cfg = Config::new(input.clone());
        let e = check_with(&cfg, &files(&in_spec)).unwrap_err().to_string();
        assert!(e.contains("out:") && e.contains("an input"), "{e}");

        // The dead-letter file (not created yet) in a directory that is read.
        let mut cfg = Config::new(d.join("x.parquet"));
        cfg.files = vec![d.display().to_string()];
        let e = check_with(&cfg, &files(&cfg.files))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dead_letter") && e.contains("x.parquet.deadletter.ndjson"),
            "{e}"
        );
        // ... or that a glob matches.
        let mut cfg = Config::new(d.join("x.parquet"));
        cfg.dead_letter = Some(d.join("dead.ndjson"));
        cfg.files = vec![format!("{}/*.ndjson", d.display())];
        let e = check_with(&cfg, &files(&cfg.files))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dead.ndjson"), "{e}");
        // A file that is not data in that directory is not read: fine.
        cfg.dead_letter = Some(d.join("dead.txt"));
        check_with(&cfg, &files(&cfg.files)).unwrap();
    }
}

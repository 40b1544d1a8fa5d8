//! Static lookup tables: `[[enrich]] table = "services.csv", key = "service"`. The file (CSV
//! with a header line, or Parquet) is read whole into a map from the key column's text to the
//! row's values, at start and again on SIGHUP ([`reload_flag`]) or [`super::Enricher::reload`].
//! A reload that fails keeps the table in use and logs why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use arrow_array::RecordBatch;

use super::cache::{Answer, Scalar};
use super::config::{key_text, ColumnType, Spec};
use crate::error::{Error, Result};

/// One table: the key's text → the row's values, in the enricher's column order.
#[derive(Debug, Default)]
pub struct Table {
    rows: HashMap<String, Arc<[Scalar]>>,
}

impl Table {
    /// The row of `key`, or `None` ("no value").
    pub fn get(&self, key: &str) -> Answer {
        self.rows.get(key).cloned()
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Reads `path` for `spec`: its key column and the columns `spec` names. The error names
    /// the file and, for CSV, the line.
    pub fn load(path: &Path, spec: &Spec) -> Result<Table> {
        let key = spec.cfg.key.as_deref().unwrap_or_default();
        let bad = |why: String| Error::Source {
            source_name: path.display().to_string(),
            why,
        };
        let mut table = Table::default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => {
                let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .and_then(|b| b.build())
                        .map_err(|e| bad(e.to_string()))?;
                for batch in reader {
                    let batch = batch.map_err(|e| bad(e.to_string()))?;
                    table.add_batch(&batch, key, spec).map_err(bad)?;
                }
            }
            _ => table.add_csv(path, key, spec).map_err(bad)?,
        }
        Ok(table)
    }

    fn add_csv(&mut self, path: &Path, key: &str, spec: &Spec) -> std::result::Result<(), String> {
        let mut reader = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
        let header = reader.headers().map_err(|e| e.to_string())?.clone();
        let at = |name: &str| {
            header
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| format!("no column `{name}` in the header line"))
        };
        let key_at = at(key)?;
        let value_at = spec
            .columns
            .iter()
            .map(|c| at(&c.path[0]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for record in reader.records() {
            let record = record.map_err(|e| e.to_string())?;
            let cell = |i: usize| record.get(i).unwrap_or("");
            let values = spec
                .columns
                .iter()
                .zip(&value_at)
                .map(|(c, &i)| scalar_of_text(cell(i), c.ty, &c.name))
                .collect::<Vec<_>>();
            self.rows
                .insert(cell(key_at).to_string(), Arc::from(values));
        }
        Ok(())
    }

    fn add_batch(
        &mut self,
        batch: &RecordBatch,
        key: &str,
        spec: &Spec,
    ) -> std::result::Result<(), String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .map(|c| c.as_ref())
                .ok_or_else(|| format!("no column `{name}`"))
        };
        let keys = column(key)?;
        let values = spec
            .columns
            .iter()
            .map(|c| column(&c.path[0]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let Ok(k) = key_text(Some(keys), key, row) else {
                continue;
            };
            let scalars = spec
                .columns
                .iter()
                .zip(&values)
                .map(|(c, v)| match key_text(Some(*v), &c.path[0], row) {
                    Ok(text) => scalar_of_text(&text, c.ty, &c.name),
                    Err(_) => Scalar::Null,
                })
                .collect::<Vec<_>>();
            self.rows.insert(k.into_owned(), Arc::from(scalars));
        }
        Ok(())
    }
}

/// A cell's text as a value of `ty`; empty is null.
fn scalar_of_text(text: &str, ty: ColumnType, column: &str) -> Scalar {
    let text = text.trim();
    if text.is_empty() {
        return Scalar::Null;
    }
    let got = match ty {
        ColumnType::Str => Some(Scalar::Str(text.into())),
        ColumnType::Int => text.parse().ok().map(Scalar::Int),
        ColumnType::Float => text.parse().ok().map(Scalar::Float),
        ColumnType::Bool => text.parse().ok().map(Scalar::Bool),
    };
    got.unwrap_or_else(|| Scalar::Bad(format!("`{column}`: `{text}` is not {}", ty.name()).into()))
}

/// A table in use, and its file, for reloads.
pub(crate) struct Reloadable {
    path: PathBuf,
    current: parking_lot::RwLock<Arc<Table>>,
    /// The reload generation this table was last read for.
    seen: AtomicU64,
}

/// Set by the binary's SIGHUP handler (or anyone): every table enricher reads its file again
/// before its next batch.
static RELOAD: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
/// Counts the reloads asked for, so that every table (not just the first to see the flag)
/// reloads once per request.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The flag that asks every static lookup table of this process to be read again (the
/// `pinflow` binary sets it on SIGHUP, through `signal_hook::flag::register`).
pub fn reload_flag() -> Arc<AtomicBool> {
    Arc::clone(&RELOAD)
}

fn generation() -> u64 {
    if RELOAD.swap(false, Ordering::AcqRel) {
        GENERATION.fetch_add(1, Ordering::AcqRel) + 1
    } else {
        GENERATION.load(Ordering::Acquire)
    }
}

impl Reloadable {
    /// Reads the table for the first time: an error here stops the run before it starts.
    pub(crate) fn open(path: &Path, spec: &Spec) -> Result<Reloadable> {
        let table = Table::load(path, spec)?;
        tracing::info!(enricher = %spec.name, table = %path.display(), rows = table.len(), "lookup table loaded");
        Ok(Reloadable {
            path: path.to_path_buf(),
            current: parking_lot::RwLock::new(Arc::new(table)),
            seen: AtomicU64::new(generation()),
        })
    }

    /// The table to use for the next batch: read again first if a reload was asked for since.
    pub(crate) fn table(&self, spec: &Spec) -> Arc<Table> {
        let g = generation();
        if self.seen.swap(g, Ordering::AcqRel) != g {
            // A failed reload is logged inside and keeps the old table.
            let _ = self.reload(spec);
        }
        Arc::clone(&self.current.read())
    }

    /// Reads the file again; on failure keeps the table in use and logs why.
    pub(crate) fn reload(&self, spec: &Spec) -> Result<usize> {
        match Table::load(&self.path, spec) {
            Ok(t) => {
                let rows = t.len();
                *self.current.write() = Arc::new(t);
                tracing::info!(enricher = %spec.name, table = %self.path.display(), rows, "lookup table reloaded");
                Ok(rows)
            }
            Err(e) => {
                tracing::warn!(enricher = %spec.name, error = %e, "lookup table not reloaded; the previous one stays in use");
                Err(e)
            }
        }
    }
}

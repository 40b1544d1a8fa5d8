//! Float statistics that every reader uses: the column order the footer declares for FLOAT and
//! DOUBLE columns.
//!
//! parquet 60 declares `IEEE_754_TOTAL_ORDER` (parquet-format 2.12) for every float column, and
//! has no setting for it. Arrow C++ (pyarrow 26) does not know that order, and a reader must
//! ignore the min/max of a column whose order it does not know: pyarrow showed no min/max for
//! `latency_ms` or any statistics column, so Arrow-based readers could not skip row groups by
//! them. DuckDB reads them either way. So once the footer is written, each float column is
//! declared `TYPE_DEFINED_ORDER` instead, the order every reader knows.
//!
//! The min/max parquet wrote are right under that order too: it leaves NaN out of them, and the
//! order's reading rules already allow for -0.0 and +0.0 (a min of +0 may hide a -0). Only a
//! chunk or page holding nothing but NaN gets NaN bounds, which a reader of the legacy order
//! might take at face value, so a column with such a bound keeps the IEEE order.
//!
//! The change is made in place: in Thrift's compact protocol the two orders are unions of the
//! same length (`0x2C 0x00 0x00`, field 2 an empty struct; `0x1C 0x00 0x00`, field 1), so the
//! footer's length and every offset in the file stay as they are.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

/// `IEEE_754_TOTAL_ORDER` as one element of the footer's `column_orders` list: the union's
/// field 2 (an empty struct), then the union's stop byte.
const IEEE_754_TOTAL_ORDER: [u8; 3] = [0x2C, 0x00, 0x00];
/// The union's field 1, `TYPE_ORDER`: the first byte is all that differs.
const TYPE_ORDER_HEADER: u8 = 0x1C;

/// For each leaf column of the file `meta` describes: whether it is a float column whose
/// declared order may be `TYPE_DEFINED_ORDER`, no chunk or page of it having a NaN bound.
pub(super) fn float_columns_to_declare(meta: &ParquetMetaData) -> Vec<bool> {
    let schema = meta.file_metadata().schema_descr();
    let mut fit: Vec<bool> = schema
        .columns()
        .iter()
        .map(|c| {
            matches!(
                c.physical_type(),
                parquet::basic::Type::FLOAT | parquet::basic::Type::DOUBLE
            )
        })
        .collect();
    let nan = |min: Option<f64>, max: Option<f64>| {
        min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan)
    };
    let pages = meta.page_index();
    for (i, rg) in meta.row_groups().iter().enumerate() {
        for (j, chunk) in rg.columns().iter().enumerate() {
            let chunk_nan = match chunk.statistics() {
                Some(Statistics::Float(s)) => nan(
                    s.min_opt().map(|&v| v as f64),
                    s.max_opt().map(|&v| v as f64),
                ),
                Some(Statistics::Double(s)) => nan(s.min_opt().copied(), s.max_opt().copied()),
                _ => false,
            };
            let page_nan = match pages.and_then(|p| p.column_index(i, j)) {
                Some(ColumnIndexMetaData::FLOAT(x)) => x
                    .min_values_iter()
                    .zip(x.max_values_iter())
                    .any(|(a, b)| nan(a.map(|&v| v as f64), b.map(|&v| v as f64))),
                Some(ColumnIndexMetaData::DOUBLE(x)) => x
                    .min_values_iter()
                    .zip(x.max_values_iter())
                    .any(|(a, b)| nan(a.copied(), b.copied())),
                _ => false,
            };
            if chunk_nan || page_nan {
                fit[j] = false;
            }
        }
    }
    fit
}

/// Declares `TYPE_DEFINED_ORDER` for the columns marked in `columns`, in the footer of the
/// finished Parquet file `file`, in place. Returns how many it changed, or (inner `Err`) why
/// the footer was left as it was; an I/O error is the outer one (a failed write may have left
/// the footer half changed: the file is not to be used).
pub(super) fn declare_type_defined_order(
    file: &mut File,
    columns: &[bool],
) -> std::io::Result<Result<usize, String>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len < 12 {
        return Ok(Err("too short for a Parquet footer".into()));
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::End(-8))?;
    file.read_exact(&mut tail)?;
    if &tail[4..] != b"PAR1" {
        return Ok(Err("no PAR1 magic at the end".into()));
    }
    let meta_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    let Some(start) = len.checked_sub(8 + meta_len) else {
        return Ok(Err("footer length past the start of the file".into()));
    };
    let mut footer = vec![0u8; meta_len as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut footer)?;
    let changed = match patch_column_orders(&mut footer, columns) {
        Ok(n) => n,
        Err(why) => return Ok(Err(why)),
    };
    if changed > 0 {
        file.seek(SeekFrom::Start(start))?;
        file.write_all(&footer)?;
    }
    Ok(Ok(changed))
}

/// Rewrites, in the Thrift-encoded `FileMetaData` `footer`, each `IEEE_754_TOTAL_ORDER` entry
/// of `column_orders` (field 7) whose column is marked in `columns` to `TYPE_ORDER`.
fn patch_column_orders(footer: &mut [u8], columns: &[bool]) -> Result<usize, String> {
    let mut r = Compact { b: footer, i: 0 };
    let mut at = Vec::new();
    let mut last = 0i16;
    while let Some((id, t)) = r.field(&mut last)? {
        if id != 7 || t != LIST {
            r.skip(t)?;
            continue;
        }
        let (n, et) = r.list_header()?;
        if et != STRUCT {
            return Err(format!("column_orders holds type {et}, not structs"));
        }
        for column in 0..n {
            let here = r.i;
            if r.b.get(here..here + 3) == Some(&IEEE_754_TOTAL_ORDER[..])
                && columns.get(column).copied().unwrap_or(false)
            {
                at.push(here);
            }
            r.skip(STRUCT)?;
        }
    }
    for &i in &at {
        footer[i] = TYPE_ORDER_HEADER;
    }
    Ok(at.len())
}

const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// Just enough of a Thrift compact-protocol reader to walk past any value.
struct Compact<'a> {
    b: &'a [u8],
    i: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.i).ok_or("footer ends early")?;
        self.i += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 64 bits".into())
    }

    fn advance(&mut self, n: u64) -> Result<(), String> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.i.checked_add(n))
            .filter(|&e| e <= self.b.len())
            .ok_or("footer ends early")?;
        self.i = end;
        Ok(())
    }

    /// The next field's id and type, `None` at the struct's stop byte.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let h = self.byte()?;
        if h == 0 {
            return Ok(None);
        }
        let delta = (h >> 4) as i16;
        let id = if delta == 0 {
            let z = self.varint()?;
            ((z >> 1) as i16) ^ -((z & 1) as i16)
        } else {
            *last + delta
        };
        *last = id;
        Ok(Some((id, h & 0x0F)))
    }

    fn list_header(&mut self) -> Result<(usize, u8), String> {
        let h = self.byte()?;
        let n = match h >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        Ok((usize::try_from(n).map_err(|e| e.to_string())?, h & 0x0F))
    }

    /// A value inside a list, set or map, where a boolean is one byte.
    fn skip_element(&mut self, t: u8) -> Result<(), String> {
        match t {
            1 | 2 => self.advance(1),
            _ => self.skip(t),
        }
    }

    fn skip(&mut self, t: u8) -> Result<(), String> {
        match t {
            // Booleans as field types carry their value in the type.
            1 | 2 => Ok(()),
            3 => self.advance(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.advance(8),
            8 => {
                let n = self.varint()?;
                self.advance(n)
            }
            LIST | SET => {
                let (n, et) = self.list_header()?;
                for _ in 0..n {
                    self.skip_element(et)?;
                }
                Ok(())
            }
            MAP => {
                let n = self.varint()?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip_element(kv >> 4)?;
                        self.skip_element(kv & 0x0F)?;
                    }
                }
                Ok(())
            }
            STRUCT => {
                let mut last = 0;
                while let Some((_, ft)) = self.field(&mut last)? {
                    self.skip(ft)?;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_footer_it_cannot_walk_is_left_as_it_was() {
        // A struct whose field 1 claims a 100-byte string in 3 bytes.
        let mut footer = vec![0x18, 100, b'a', b'b'];
        let before = footer.clone();
        assert!(patch_column_orders(&mut footer, &[true]).is_err());
        assert_eq!(footer, before);
        assert!(
            patch_column_orders(&mut [0x0D][..], &[true]).is_err(),
            "unknown type"
        );
    }

    #[test]
    fn only_marked_ieee_entries_change() {
        // FileMetaData { 1: i32 version = 1, 7: [IEEE, TYPE_ORDER, IEEE] } (the other fields
        // left out: the walk does not need them).
        let mut footer = vec![
            0x15, 0x02, // field 1, i32, zigzag(1)
            0x69, 0x3C, // field 7 (delta 6), list; 3 structs
            0x2C, 0x00, 0x00, 0x1C, 0x00, 0x00, 0x2C, 0x00, 0x00, //
            0x00, // stop
        ];
        assert_eq!(
            patch_column_orders(&mut footer, &[true, true, false]),
            Ok(1)
        );
        assert_eq!(&footer[4..13], &[0x1C, 0, 0, 0x1C, 0, 0, 0x2C, 0, 0]);
    }
}

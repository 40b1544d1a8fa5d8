#!/usr/bin/env python3
"""Reads pinflow's Parquet output with pyarrow and with DuckDB and checks every value.

    check.py --manifest MANIFEST.json
    check.py FILE... [--expect-rows N] [--row-group-rows N] [--compression CODEC]

For every file:
  (a) pyarrow (pq.read_table) and DuckDB (read_parquet) see the same row count, the same column
      names and types (Parquet physical/logical types too), and the same value in every cell:
      integers and strings equal, floats bit for bit (or both NaN), timestamps to the µs, lists
      element by element;
  (b) every statistic is recomputed from `values` three ways (DuckDB's len / list_avg /
      list_min / list_max / list_var_samp, numpy, and a correctly rounded math.fsum reference,
      or exact rationals with --exact) and compared with pinflow's values_* columns: count, min
      and max exactly, mean and variance to a relative 1e-9 (see `close` for the floors), null
      exactly where pinflow's rules say (src/stats.rs);
  (c) the Parquet metadata: created_by names pinflow, `pinflow.version` is in the key-value
      metadata, every column chunk has statistics, a column index and an offset index, the
      statistics (read by pyarrow and by DuckDB) agree with the data of their row group, no row
      group is larger than the configured size, the codec is the configured one; and filtered
      reads (which prune with those statistics) count the same rows as a full scan;
  (d) with an "expected" file (edge_cases.py), every record served is in the file exactly once
      with every field equal to what json.loads makes of it, and every bad record is in the
      dead-letter file with its reason.

A manifest's "cases" (configurable schemas, inference, Hive partitions, journal runs) are
checked by cases.py, against a model of what pinflow must write for every input line.

It prints a short report and exits 1 on any mismatch, naming the file, row and column.
"""

import argparse
import datetime
import json
import math
import os
import re
import struct
import sys
import time
from fractions import Fraction

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import cases  # tools/interop/cases.py: schemas, inference, partitions, codecs, journal runs

COLUMNS = [
    ("id", pa.int64(), "INT64", None, "BIGINT"),
    ("ts", pa.timestamp("us", tz="UTC"), "INT64", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"),
    ("service", pa.string(), "BYTE_ARRAY", "STRING", "VARCHAR"),
    ("level", pa.string(), "BYTE_ARRAY", "STRING", "VARCHAR"),
    ("host", pa.string(), "BYTE_ARRAY", "STRING", "VARCHAR"),
    ("latency_ms", pa.float64(), "DOUBLE", None, "DOUBLE"),
    ("message", pa.string(), "BYTE_ARRAY", "STRING", "VARCHAR"),
    ("values", pa.list_(pa.float64()), "DOUBLE", None, "DOUBLE[]"),
    ("values_count", pa.int64(), "INT64", None, "BIGINT"),
    ("values_mean", pa.float64(), "DOUBLE", None, "DOUBLE"),
    ("values_min", pa.float64(), "DOUBLE", None, "DOUBLE"),
    ("values_max", pa.float64(), "DOUBLE", None, "DOUBLE"),
    ("values_variance", pa.float64(), "DOUBLE", None, "DOUBLE"),
]
NAMES = [c[0] for c in COLUMNS]
STATS = ["values_count", "values_mean", "values_min", "values_max", "values_variance"]
EPS = 2.0 ** -52
REL_TOL = 1e-9
STRING_STATS_TRUNCATE = 64  # parquet-rs' default statistics_truncate_length
MAX_REPORTED = 25


class Failures:
    """Collects mismatches; prints the first MAX_REPORTED of each file."""

    def __init__(self):
        self.items = []
        self.notes = []
        self.pa_missing = {}  # file -> (chunks, columns) whose min/max pyarrow ignores
        self.root = None  # files under it are named by their relative path (partitions)

    def add(self, file, what, row=None, column=None, detail=""):
        if self.root and os.path.isabs(file) and file.startswith(self.root + os.sep):
            where = os.path.relpath(file, self.root)
        else:
            where = os.path.basename(file)
        if row is not None:
            where += f" row {row}"
        if column is not None:
            where += f" column {column}"
        self.items.append(f"MISMATCH {where}: {what}" + (f": {detail}" if detail else ""))

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)


# ---------------------------------------------------------------------------------------------
# A minimal Thrift compact-protocol reader for the footer's created_by and column_orders,
# independent of both engines (pyarrow does not expose column orders).

class Thrift:
    def __init__(self, buf):
        self.b = buf
        self.i = 0

    def byte(self):
        v = self.b[self.i]
        self.i += 1
        return v

    def varint(self):
        shift = result = 0
        while True:
            v = self.byte()
            result |= (v & 0x7F) << shift
            shift += 7
            if not v & 0x80:
                return result

    def zigzag(self):
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def binary(self):
        n = self.varint()
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def fields(self):
        """Yields (field id, type) of a struct until its STOP."""
        last = 0
        while True:
            h = self.byte()
            t = h & 0x0F
            if t == 0:
                return
            delta = h >> 4
            fid = last + delta if delta else self.zigzag()
            last = fid
            yield fid, t

    def list_header(self):
        h = self.byte()
        n = h >> 4
        if n == 15:
            n = self.varint()
        return n, h & 0x0F

    def skip(self, t):
        if t in (1, 2):
            return
        if t == 3:
            self.i += 1
        elif t in (4, 5, 6):
            self.varint()
        elif t == 7:
            self.i += 8
        elif t == 8:
            self.binary()
        elif t in (9, 10):
            n, et = self.list_header()
            for _ in range(n):
                if et in (1, 2):
                    self.i += 1
                else:
                    self.skip(et)
        elif t == 11:
            n = self.varint()
            if n:
                kv = self.byte()
                for _ in range(n):
                    self.skip(kv >> 4)
                    self.skip(kv & 0x0F)
        elif t == 12:
            for _, ft in self.fields():
                self.skip(ft)
        else:
            raise ValueError(f"thrift type {t}")

    def value(self, t):
        """Decodes one value of type t: structs become {field id: value}, lists lists."""
        if t in (1, 2):
            return t == 1
        if t == 3:
            return self.byte()
        if t in (4, 5, 6):
            return self.zigzag()
        if t == 7:
            v = struct.unpack("<d", self.b[self.i:self.i + 8])[0]
            self.i += 8
            return v
        if t == 8:
            return bytes(self.binary())
        if t in (9, 10):
            n, et = self.list_header()
            if et in (1, 2):
                out = [b == 1 for b in self.b[self.i:self.i + n]]
                self.i += n
                return out
            return [self.value(et) for _ in range(n)]
        if t == 12:
            return {fid: self.value(ft) for fid, ft in self.fields()}
        self.skip(t)
        return None


CODECS = {0: "UNCOMPRESSED", 1: "SNAPPY", 2: "GZIP", 3: "LZO", 4: "BROTLI", 5: "LZ4", 6: "ZSTD",
          7: "LZ4_RAW"}
PYARROW_CODEC = {"LZ4_RAW": "LZ4", "LZ4": "LZ4_HADOOP"}
COLUMN_ORDER_NAMES = {1: "TypeDefinedOrder", 2: "IEEE754TotalOrder", 3: "INT96TimestampOrder"}


def raw_footer(path):
    """The FileMetaData struct, decoded from the file's last bytes by our own reader."""
    with open(path, "rb") as f:
        f.seek(-8, 2)
        tail = f.read(8)
        if tail[4:] != b"PAR1":
            raise ValueError("no PAR1 magic at the end")
        n = struct.unpack("<I", tail[:4])[0]
        f.seek(-8 - n, 2)
        return Thrift(f.read(n)).value(12)


def decode_stat(raw, physical):
    if raw is None:
        return None
    if physical == "BOOLEAN":
        return raw[0] != 0
    if physical == "INT64":
        return struct.unpack("<q", raw)[0]
    if physical == "DOUBLE":
        return struct.unpack("<d", raw)[0]
    if physical == "FLOAT":
        return struct.unpack("<f", raw)[0]
    return raw  # BYTE_ARRAY: UTF-8 bytes


def nan_bound_columns(path, fmd, physical):
    """Leaf indexes of the float columns with a NaN min or max in a column chunk or in a page
    of its column index. pinflow declares TypeDefinedOrder for every other float column (Arrow
    C++ ignores the min/max of IEEE754TotalOrder, which it does not know) and keeps
    IEEE754TotalOrder for these, whose NaN bounds the legacy order does not allow."""
    out = set()
    with open(path, "rb") as f:
        for rg in fmd.get(4, []):
            for j, cc in enumerate(rg[1]):
                if physical[j] not in ("FLOAT", "DOUBLE"):
                    continue
                st = cc.get(3, {}).get(12) or {}
                bounds = [st.get(5), st.get(6)]
                offset, length = cc.get(6), cc.get(7)
                if offset is not None and length:
                    f.seek(offset)
                    index = Thrift(f.read(length)).value(12)
                    bounds += (index.get(2) or []) + (index.get(3) or [])
                # A null page's bounds are empty.
                if any(b and math.isnan(decode_stat(b, physical[j])) for b in bounds):
                    out.add(j)
    return out


# ---------------------------------------------------------------------------------------------
# Helpers over Arrow arrays.

def chunk(arr):
    """One contiguous array; a dictionary-encoded one decoded to its values."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    return arr


def valid_mask(arr):
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def float_bits(arr):
    """(valid mask, uint64 bit patterns with nulls as 0) of a float64 array."""
    arr = chunk(arr)
    valid = valid_mask(arr)
    vals = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return valid, vals.view(np.uint64), vals


def describe(v):
    if isinstance(v, float):
        v = float(v)
        return f"{v!r} (0x{struct.unpack('<Q', struct.pack('<d', v))[0]:016x})"
    if isinstance(v, str) and len(v) > 80:
        return repr(v[:80]) + f"... ({len(v)} chars)"
    return repr(v)


def first_diff(mask):
    idx = np.flatnonzero(mask)
    return idx


def ident(table_ids, row):
    v = table_ids[row]
    return f"{row} (id={v})" if v is not None else str(row)


# ---------------------------------------------------------------------------------------------
# (a) pyarrow and DuckDB read the same file the same way.

def read_both(path, fails):
    pa_table = pq.read_table(path)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    dd_table = con.execute("SELECT * FROM read_parquet(?)", [path]).to_arrow_table()
    described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
    return pa_table, dd_table, con, described


def check_schema(path, pf, pa_table, dd_table, described, fails):
    names = pa_table.schema.names
    if names != NAMES:
        fails.add(path, "pyarrow column names", detail=f"{names} != {NAMES}")
    if dd_table.schema.names != NAMES:
        fails.add(path, "DuckDB column names", detail=f"{dd_table.schema.names} != {NAMES}")
    dd_types = {r[0]: r[1] for r in described}
    pschema = pf.schema
    leaf = {pschema.column(i).path: pschema.column(i) for i in range(len(pschema))}
    for name, arrow_type, physical, logical, duck in COLUMNS:
        if name not in names:
            continue
        got = pa_table.schema.field(name).type
        if pa.types.is_dictionary(got) and got.value_type.equals(pa.string()):
            got = pa.string()  # a dictionary-encoded string column reads as strings
        same = got.equals(arrow_type) if name != "values" else (
            pa.types.is_list(got) and got.value_type.equals(pa.float64()))
        if not same:
            fails.add(path, "pyarrow type", column=name, detail=f"{got} != {arrow_type}")
        if dd_types.get(name) != duck:
            fails.add(path, "DuckDB type", column=name, detail=f"{dd_types.get(name)} != {duck}")
        path_in = "values.list.item" if name == "values" else name
        if name == "values":
            # pinflow writes Arrow's element name `item`; readers must not care.
            candidates = [p for p in leaf if p.startswith("values.")]
            path_in = candidates[0] if candidates else path_in
        col = leaf.get(path_in)
        if col is None:
            fails.add(path, "Parquet leaf column missing", column=path_in)
            continue
        if col.physical_type != physical:
            fails.add(path, "Parquet physical type", column=name,
                      detail=f"{col.physical_type} != {physical}")
        lt = json.loads(col.logical_type.to_json()) if col.logical_type.type != "NONE" else {}
        if logical == "TIMESTAMP":
            if lt.get("Type") != "Timestamp" or lt.get("timeUnit") != "microseconds" \
                    or lt.get("isAdjustedToUTC") is not True:
                fails.add(path, "Parquet logical type", column=name,
                          detail=f"{lt} is not Timestamp(µs, isAdjustedToUTC=true)")
        elif logical == "STRING" and lt.get("Type") != "String":
            fails.add(path, "Parquet logical type", column=name, detail=f"{lt} is not String")
        if name == "values" and col.max_repetition_level != 1:
            fails.add(path, "Parquet list nesting", column=name,
                      detail=f"max repetition level {col.max_repetition_level}")
    ts_type = dd_table.schema.field("ts").type if "ts" in dd_table.schema.names else None
    if ts_type is not None and not (pa.types.is_timestamp(ts_type) and ts_type.unit == "us"):
        fails.add(path, "DuckDB's Arrow type", column="ts", detail=str(ts_type))


def compare_cells(path, pa_table, dd_table, fails):
    """Every cell, pyarrow vs DuckDB. Returns (cells, list elements) compared."""
    n = pa_table.num_rows
    if dd_table.num_rows != n:
        fails.add(path, "row count", detail=f"pyarrow {n}, DuckDB {dd_table.num_rows}")
        return 0, 0
    ids = chunk(pa_table.column("id")).to_pylist()
    cells = elements = 0
    for name, arrow_type, *_ in COLUMNS:
        if name not in pa_table.schema.names or name not in dd_table.schema.names:
            continue
        a = chunk(pa_table.column(name))
        b = chunk(dd_table.column(name))
        va, vb = valid_mask(a), valid_mask(b)
        bad = va != vb
        if pa.types.is_floating(arrow_type):
            _, ba, fa = float_bits(a)
            _, bb, fb = float_bits(b)
            bad |= va & vb & (ba != bb) & ~(np.isnan(fa) & np.isnan(fb))
        elif pa.types.is_integer(arrow_type) or pa.types.is_timestamp(arrow_type):
            ia = a.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            ib = b.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            bad |= va & vb & (ia != ib)
        elif pa.types.is_string(arrow_type):
            b = b.cast(pa.string())
            eq = pc.equal(a, b).fill_null(True).to_numpy(zero_copy_only=False)
            bad |= ~np.asarray(eq, dtype=bool)
        elif pa.types.is_list(arrow_type):
            la = pc.list_value_length(a).fill_null(-1).to_numpy(zero_copy_only=False)
            lb = pc.list_value_length(b).fill_null(-1).to_numpy(zero_copy_only=False)
            bad |= la != lb
            if not bad.any():
                fa_ = pc.list_flatten(a)
                fb_ = pc.list_flatten(b)
                ea, xa, fla = float_bits(fa_)
                eb, xb, flb = float_bits(fb_)
                ebad = (ea != eb) | (ea & eb & (xa != xb) & ~(np.isnan(fla) & np.isnan(flb)))
                if ebad.any():
                    parents = pc.list_parent_indices(a).to_numpy(zero_copy_only=False)
                    starts = np.concatenate([[0], np.cumsum(np.maximum(la, 0))[:-1]])
                    for k in np.flatnonzero(ebad)[:MAX_REPORTED]:
                        p = int(parents[k])
                        fails.add(path, "pyarrow and DuckDB differ", ident(ids, p),
                                  f"{name}[{k - starts[p]}]",
                                  f"pyarrow {describe(fla[k])}, DuckDB {describe(flb[k])}")
                elements += len(fla)
        for r in first_diff(bad)[:MAX_REPORTED]:
            fails.add(path, "pyarrow and DuckDB differ", ident(ids, r), name,
                      f"pyarrow {describe(a[int(r)].as_py())}, "
                      f"DuckDB {describe(b[int(r)].as_py())}")
        cells += n
    return cells, elements


# ---------------------------------------------------------------------------------------------
# (b) statistics recomputed three ways.

def exact_stats(xs):
    """Exact rationals, rounded once: (mean, variance); inf where the true value overflows."""
    n = len(xs)
    fr = [Fraction(x) for x in xs]
    s = sum(fr)
    mean = s / n

    def rnd(q):
        try:
            return float(q)
        except OverflowError:
            return math.inf if q > 0 else -math.inf

    var = None
    if n >= 2:
        var = rnd(sum((x - mean) ** 2 for x in fr) / (n - 1))
    return rnd(mean), var


def fsum_stats(xs):
    """math.fsum (correctly rounded sums): (mean, variance)."""
    n = len(xs)
    try:
        mean = math.fsum(xs) / n
    except OverflowError:
        return exact_stats(xs)
    if not math.isfinite(mean):
        return exact_stats(xs)
    var = None
    if n >= 2:
        d = [x - mean for x in xs]
        try:
            var = (math.fsum([e * e for e in d]) - math.fsum(d) ** 2 / n) / (n - 1)
        except OverflowError:
            return exact_stats(xs)
        if not math.isfinite(var):
            return exact_stats(xs)
        var = max(var, 0.0)
    return mean, var


def close(got, ref, floor):
    """(ok, relative error, ok without the floor): ok when got == ref, both are NaN, or
    |got - ref| <= 1e-9 |ref| + floor."""
    if got == ref or (math.isnan(got) and math.isnan(ref)):
        return True, 0.0, True
    if math.isinf(got) or math.isinf(ref) or math.isnan(got) or math.isnan(ref):
        return False, math.inf, False
    err = abs(got - ref)
    rel = err / max(abs(ref), abs(got))
    return err <= REL_TOL * abs(ref) + floor, rel, err <= REL_TOL * abs(ref)


def check_statistics(path, pa_table, con, exact, fails, summary):
    n = pa_table.num_rows
    ids = chunk(pa_table.column("id")).to_pylist()
    values = chunk(pa_table.column("values"))
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)  # NaN where null
    list_valid = valid_mask(values)
    counts = np.where(list_valid, np.nan_to_num(lengths, nan=0), 0).astype(np.int64)
    flat = pc.list_flatten(values).to_numpy(zero_copy_only=False).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n else np.zeros(0, np.int64)

    got = {}
    for name in STATS:
        col = chunk(pa_table.column(name))
        got[name] = (valid_mask(col), col.fill_null(0).to_numpy(zero_copy_only=False))

    # Null rules (src/stats.rs, src/compute.rs): a missing `values` makes every statistic
    # null; an empty list has count 0 and the rest null; the variance needs two values.
    rules = {
        "values_count": list_valid,
        "values_mean": list_valid & (counts >= 1),
        "values_min": list_valid & (counts >= 1),
        "values_max": list_valid & (counts >= 1),
        "values_variance": list_valid & (counts >= 2),
    }
    for name, want in rules.items():
        bad = got[name][0] != want
        for r in np.flatnonzero(bad)[:MAX_REPORTED]:
            fails.add(path, "null rule", ident(ids, r), name,
                      f"pinflow {'value' if got[name][0][r] else 'null'}, expected "
                      f"{'value' if want[r] else 'null'} (values has {counts[r]} elements, "
                      f"{'present' if list_valid[r] else 'missing'})")
    bad = list_valid & (got["values_count"][1] != counts)
    for r in np.flatnonzero(bad)[:MAX_REPORTED]:
        fails.add(path, "count", ident(ids, r), "values_count",
                  f"pinflow {got['values_count'][1][r]}, list length {counts[r]}")

    # Reference 1: DuckDB, in SQL, over the same file (TRY: var_samp raises on overflow).
    duck = con.execute(
        "SELECT len(\"values\"), list_avg(\"values\"), list_min(\"values\"), "
        "list_max(\"values\"), TRY(list_var_samp(\"values\")) FROM read_parquet(?)",
        [path]).to_arrow_table()
    d_count = chunk(duck.column(0))
    dbad = valid_mask(d_count) != list_valid
    dbad |= list_valid & (d_count.fill_null(0).to_numpy(zero_copy_only=False) != counts)
    for r in np.flatnonzero(dbad)[:MAX_REPORTED]:
        fails.add(path, "DuckDB len(values) differs", ident(ids, r), "values_count",
                  f"DuckDB {d_count[int(r)].as_py()}, pinflow {got['values_count'][1][r]}")
    d = {}
    for k, name in enumerate(["values_mean", "values_min", "values_max", "values_variance"]):
        col = chunk(duck.column(k + 1))
        d[name] = (valid_mask(col), col.fill_null(np.nan).to_numpy(zero_copy_only=False))

    # Reference 2: numpy, vectorized over the flattened lists.
    nz = counts > 0
    parent = np.repeat(np.arange(n), counts)
    with np.errstate(all="ignore"):
        sums = np.bincount(parent, weights=flat, minlength=n) if n else np.zeros(0)
        np_mean = np.where(nz, sums / np.maximum(counts, 1), np.nan)
        np_min = np.full(n, np.nan)
        np_max = np.full(n, np.nan)
        if nz.any():
            np_min[nz] = np.minimum.reduceat(flat, starts[nz])
            np_max[nz] = np.maximum.reduceat(flat, starts[nz])
        dev = flat - np_mean[parent]
        sq = np.bincount(parent, weights=dev * dev, minlength=n) if n else np.zeros(0)
        sd = np.bincount(parent, weights=dev, minlength=n) if n else np.zeros(0)
        np_var = np.where(counts >= 2, (sq - sd * sd / np.maximum(counts, 1))
                          / np.maximum(counts - 1, 1), np.nan)
        np_var = np.where(np_var < 0, 0.0, np_var)
        abs_sum = np.bincount(parent, weights=np.abs(flat), minlength=n) if n else np.zeros(0)
        sq_sum = np.bincount(parent, weights=flat * flat, minlength=n) if n else np.zeros(0)

    refname = "exact rationals" if exact else "math.fsum"
    maxrel = {"mean": [0.0, None], "variance": [0.0, None]}
    maxrel_other = {k: {"mean": 0.0, "variance": 0.0} for k in ("DuckDB", "numpy")}
    floored = {"mean": 0, "variance": 0}
    skipped_ill = 0
    overflow_rows = []
    compared = 0
    for r in np.flatnonzero(nz):
        r = int(r)
        c = int(counts[r])
        xs = flat[starts[r]:starts[r] + c].tolist()
        p_mean, p_min, p_max = (float(got[k][1][r]) for k in
                                ("values_mean", "values_min", "values_max"))
        p_var = float(got["values_variance"][1][r]) if c >= 2 else None
        compared += 1
        # min and max: exactly (== so that -0.0 and 0.0 agree), in every reference.
        if any(math.isnan(x) for x in xs):
            t_min = t_max = math.nan
        else:
            t_min, t_max = min(xs), max(xs)
        for label, want_min, want_max in (
                ("Python min/max", t_min, t_max),
                ("numpy", float(np_min[r]), float(np_max[r])),
                ("DuckDB", float(d["values_min"][1][r]), float(d["values_max"][1][r]))):
            for stat, gv, wv in (("values_min", p_min, want_min), ("values_max", p_max, want_max)):
                if not (gv == wv or (math.isnan(gv) and math.isnan(wv))):
                    fails.add(path, f"{stat} differs from {label}", ident(ids, r), stat,
                              f"pinflow {describe(gv)}, {label} {describe(wv)}")
        # mean and variance against the accurate reference.
        ref_mean, ref_var = exact_stats(xs) if exact else fsum_stats(xs)
        scale = float(abs_sum[r]) / c if math.isfinite(abs_sum[r]) else math.inf
        # Any summation order may lose up to ~c·eps·Σ|x|/c on the mean; pinflow's lanes included.
        mean_floor = 4 * c * EPS * scale + 5e-324
        # Inputs whose Σ|x| or Σx² leave the f64 range: inf/NaN statistics are reported as
        # KNOWN (pinflow sums without scaling), not as mismatches.
        overflowed = not math.isfinite(scale) or not math.isfinite(float(sq_sum[r]))
        for stat, p, ref, floor in (("values_mean", p_mean, ref_mean, mean_floor),
                                    ("values_variance", p_var, ref_var, 5e-324)):
            if ref is None:
                continue
            ok, rel, strict = close(p, ref, floor)
            key = stat[7:]
            if ok and strict and rel > maxrel[key][0]:
                maxrel[key] = [rel, ident(ids, r)]
            if ok and not strict:
                floored[key] += 1
            if ok:
                continue
            if overflowed and not math.isfinite(p) and (math.isfinite(ref) or math.isnan(p)):
                overflow_rows.append((r, stat, p, ref))
            else:
                fails.add(path, f"{key} differs from {refname}", ident(ids, r), stat,
                          f"pinflow {describe(p)}, reference {describe(ref)} "
                          f"(relative error {rel:.3g}, {c} values)")
        # DuckDB and numpy: their own summation orders and algorithms (Welford in DuckDB), so
        # the same floor for the mean, and the variance only where it is well conditioned
        # (κ² = 1 + mean²/var bounds what any of them can get right: c·eps·κ² ≤ 1e-10).
        if overflowed:
            continue
        for label, m_ref, v_ref, v_valid in (
                ("DuckDB", float(d["values_mean"][1][r]),
                 float(d["values_variance"][1][r]), bool(d["values_variance"][0][r])),
                ("numpy", float(np_mean[r]), float(np_var[r]), c >= 2)):
            ok, rel, strict = close(p_mean, m_ref, mean_floor)
            if not ok:
                fails.add(path, f"mean differs from {label}", ident(ids, r), "values_mean",
                          f"pinflow {describe(p_mean)}, {label} {describe(m_ref)} "
                          f"(relative error {rel:.3g})")
            elif strict:
                maxrel_other[label]["mean"] = max(maxrel_other[label]["mean"], rel)
            if c < 2:
                if label == "DuckDB" and v_valid:
                    fails.add(path, "DuckDB has a variance where pinflow has null",
                              ident(ids, r), "values_variance", f"{c} values")
                continue
            if not v_valid:
                fails.add(path, f"{label} found no variance", ident(ids, r), "values_variance",
                          f"pinflow {describe(p_var)}")
                continue
            kappa2 = 1 + (ref_mean * ref_mean / ref_var if ref_var > 0 else math.inf)
            if c * EPS * kappa2 > 1e-10:
                if label == "DuckDB":
                    skipped_ill += 1
                continue
            ok, rel, strict = close(p_var, v_ref, 5e-324)
            if not ok:
                fails.add(path, f"variance differs from {label}", ident(ids, r),
                          "values_variance", f"pinflow {describe(p_var)}, {label} "
                          f"{describe(v_ref)} (relative error {rel:.3g})")
            else:
                maxrel_other[label]["variance"] = max(maxrel_other[label]["variance"], rel)
    groups = {}
    for r, stat, p, ref in overflow_rows:
        kind = (stat, "NaN" if math.isnan(p) else repr(p),
                "finite" if math.isfinite(ref) else repr(ref))
        groups.setdefault(kind, []).append(ident(ids, r))
    for (stat, p, ref), rows in sorted(groups.items()):
        fails.note(
            f"KNOWN {os.path.basename(path)}: {len(rows)} × {stat} is {p} where the exact value "
            f"is {ref} (inputs whose sum or squares leave the f64 range; src/stats.rs sums "
            f"without scaling), rows {', '.join(rows[:4])}{' ...' if len(rows) > 4 else ''}")
    summary.update(stat_rows=compared, maxrel=maxrel, maxrel_other=maxrel_other,
                   floored=floored, ill_conditioned=skipped_ill, overflow=len(overflow_rows),
                   reference=refname)


# ---------------------------------------------------------------------------------------------
# (c) Parquet metadata and column statistics.

def as_bytes(v):
    return v if isinstance(v, bytes) else v.encode("utf-8")


def string_stat_ok(stat, data, is_min, exact_flag):
    """A string min/max equals the data's, or is a truncation of it (parquet-rs keeps 64 bytes:
    the min cut to a prefix, the max cut and its last character incremented)."""
    sb, db = as_bytes(stat), as_bytes(data)
    if sb == db:
        return True
    if len(sb) > STRING_STATS_TRUNCATE or exact_flag:
        return False
    if is_min:  # a prefix of the smallest value
        return db.startswith(sb) and len(db) > STRING_STATS_TRUNCATE
    return sb > db and len(db) > STRING_STATS_TRUNCATE  # an upper bound of the largest


def check_metadata(path, pf, pa_table, con, spec, fails, summary):
    md = pf.metadata
    fmd = raw_footer(path)
    created_by = fmd.get(6, b"").decode("utf-8", "replace")
    orders = [COLUMN_ORDER_NAMES.get(next(iter(o), 0), "unknown") if o else "empty"
              for o in fmd.get(7, [])]
    name = os.path.basename(path)
    if "pinflow" not in (md.created_by or ""):
        fails.add(path, "created_by does not name pinflow", detail=repr(md.created_by))
    if created_by != md.created_by:
        fails.add(path, "created_by", detail=f"footer {created_by!r}, pyarrow {md.created_by!r}")
    kv = md.metadata or {}
    version = kv.get(b"pinflow.version")
    raw_kv = {e.get(1): e.get(2) for e in fmd.get(5, [])}
    if version is None or raw_kv.get(b"pinflow.version") != version:
        fails.add(path, "key-value metadata pinflow.version",
                  detail=f"pyarrow {version!r}, footer {raw_kv.get(b'pinflow.version')!r}")
    elif spec.get("version") and version.decode() != spec["version"]:
        fails.add(path, "pinflow.version", detail=f"{version.decode()!r} != {spec['version']!r}")
    # pinflow.source and pinflow.run_id (docs/usage.md "Parquet files"), where the binary writes
    # them.
    for key in (b"pinflow.source", b"pinflow.run_id"):
        if key not in kv:
            fails.note(f"NOTE {name}: no {key.decode()} in the key-value metadata (an older "
                       f"binary?)")
    if b"pinflow.source" in kv and spec.get("source") is not None and \
            kv[b"pinflow.source"].decode() != spec["source"]:
        fails.add(path, "pinflow.source", detail=f"{kv[b'pinflow.source']!r} != {spec['source']!r}")
    run_id = kv.get(b"pinflow.run_id", b"").decode()
    if run_id and not re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", run_id):
        fails.add(path, "pinflow.run_id", detail=f"{run_id!r} is not HEX-HEX")
    summary["run_id"] = run_id
    if spec.get("version") and spec["version"] not in (md.created_by or ""):
        fails.add(path, "created_by version", detail=f"{md.created_by!r} lacks {spec['version']}")
    if md.num_rows != pa_table.num_rows or fmd.get(3) != md.num_rows:
        fails.add(path, "footer num_rows",
                  detail=f"pyarrow {md.num_rows}, footer {fmd.get(3)}, rows {pa_table.num_rows}")
    limit = spec.get("row_group_rows")
    codec = spec.get("compression")
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    if sum(sizes) != md.num_rows:
        fails.add(path, "row groups do not add up", detail=f"{sum(sizes)} != {md.num_rows}")
    for i, s in enumerate(sizes):
        if limit and s > limit:
            fails.add(path, f"row group {i} has {s} rows, more than --row-group-rows {limit}")
        if s == 0:
            fails.add(path, f"row group {i} is empty")
    nleaves = len(pf.schema)
    leaf_names = [pf.schema.column(j).path for j in range(nleaves)]
    physical = [pf.schema.column(j).physical_type for j in range(nleaves)]
    if len(orders) != nleaves:
        fails.add(path, "footer column_orders", detail=f"{len(orders)} for {nleaves} leaves")
    ieee = [leaf_names[j] for j, o in enumerate(orders) if o == "IEEE754TotalOrder"]
    kept_ieee = nan_bound_columns(path, fmd, physical)
    for j, o in enumerate(orders):
        if physical[j] in ("FLOAT", "DOUBLE") and o != "TypeDefinedOrder" and \
                j not in kept_ieee:
            fails.add(path, "float column order", column=leaf_names[j],
                      detail=f"{o}, not TypeDefinedOrder: Arrow C++ ignores the min/max of an "
                             f"order it does not know, so pyarrow cannot prune on the column")

    # DuckDB's reading of the same statistics.
    dd = {(r[0], r[1]): r[2:] for r in con.execute(
        "SELECT row_group_id, column_id, stats_min_value, stats_max_value, stats_null_count, "
        "min_is_exact, max_is_exact FROM parquet_metadata(?)", [path]).fetchall()}

    offset = 0
    chunks_checked = 0
    codecs_seen = set()
    pa_missing = {}
    dd_missing_inf = 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        raw_rg = fmd[4][i]
        part = pa_table.slice(offset, rg.num_rows)
        offset += rg.num_rows
        for j in range(rg.num_columns):
            c = rg.column(j)
            leaf = c.path_in_schema
            top = leaf.split(".")[0]
            chunks_checked += 1
            raw_cc = raw_rg[1][j]
            raw_md = raw_cc.get(3, {})
            # The codec as the footer names it (pyarrow calls LZ4_RAW "LZ4" and the framed
            # Hadoop LZ4 "LZ4_HADOOP").
            raw_codec = CODECS.get(raw_md.get(4), str(raw_md.get(4)))
            codecs_seen.add(raw_codec)
            if codec and raw_codec != codec:
                fails.add(path, f"row group {i} codec", column=leaf,
                          detail=f"footer {raw_codec} != {codec}")
            if PYARROW_CODEC.get(raw_codec, raw_codec) != c.compression:
                fails.add(path, f"row group {i} codec", column=leaf,
                          detail=f"pyarrow {c.compression}, footer {raw_codec}")
            if not c.has_column_index or not c.has_offset_index:
                fails.add(path, f"row group {i} has no page index", column=leaf,
                          detail=f"column index {c.has_column_index}, "
                                 f"offset index {c.has_offset_index}")
            # What the statistics must say, from the data of this row group.
            arr = chunk(part.column(top))
            if pa.types.is_list(arr.type):
                # Leaf-level nulls: a null list, an empty list and a null element each leave one
                # definition level below the maximum.
                lens = pc.list_value_length(arr)
                empty_or_null = pc.sum(pc.fill_null(pc.equal(lens, 0), True)
                                       .cast(pa.int64())).as_py() or 0
                data = pc.list_flatten(arr)
                want_nulls = empty_or_null + data.null_count
            else:
                data = arr
                want_nulls = arr.null_count
            want_nans = None
            if pa.types.is_timestamp(data.type):
                data = data.cast(pa.int64())
            if pa.types.is_floating(data.type):
                isnan = pc.is_nan(data).fill_null(False)
                want_nans = pc.sum(isnan.cast(pa.int64())).as_py() or 0
                data = pc.filter(data, pc.invert(isnan))
            mm = pc.min_max(data)
            dmin, dmax = mm["min"].as_py(), mm["max"].as_py()
            if isinstance(dmin, str):
                dmin, dmax = dmin.encode("utf-8"), dmax.encode("utf-8")

            def same(label, smin, smax, min_exact=None, max_exact=None):
                if isinstance(dmin, bytes):
                    good = string_stat_ok(smin, dmin, True, min_exact is True and
                                          as_bytes(smin) != dmin) and \
                        string_stat_ok(smax, dmax, False, max_exact is True and
                                       as_bytes(smax) != dmax)
                else:
                    good = smin == dmin and smax == dmax
                if not good:
                    fails.add(path, f"row group {i} min/max ({label})", column=leaf,
                              detail=f"statistics {describe(smin)}..{describe(smax)}, "
                                     f"data {describe(dmin)}..{describe(dmax)}")

            # 1. The raw footer, decoded by our own reader.
            st = raw_md.get(12)
            if st is None or 3 not in st:
                fails.add(path, f"row group {i} column chunk has no statistics (footer)",
                          column=leaf)
            else:
                if st[3] != want_nulls:
                    fails.add(path, f"row group {i} null_count (footer)", column=leaf,
                              detail=f"{st[3]}, data {want_nulls}")
                if want_nans is not None and st.get(9) is not None and st[9] != want_nans:
                    fails.add(path, f"row group {i} nan_count (footer)", column=leaf,
                              detail=f"{st[9]}, data {want_nans}")
                if dmin is not None:
                    if 5 not in st or 6 not in st:
                        fails.add(path, f"row group {i} no min_value/max_value (footer)",
                                  column=leaf)
                    else:
                        same("footer", decode_stat(st[6], physical[j]),
                             decode_stat(st[5], physical[j]), st.get(8), st.get(7))
            if raw_cc.get(6) is None or raw_cc.get(4) is None:
                fails.add(path, f"row group {i} page index offsets missing (footer)", column=leaf)
            # 2. pyarrow.
            pst = c.statistics if c.is_stats_set else None
            if pst is None or not pst.has_null_count:
                fails.add(path, f"row group {i} column chunk has no statistics (pyarrow)",
                          column=leaf)
            else:
                if pst.null_count != want_nulls:
                    fails.add(path, f"row group {i} null_count (pyarrow)", column=leaf,
                              detail=f"{pst.null_count}, data {want_nulls}")
                if dmin is not None and not pst.has_min_max:
                    if j in kept_ieee:
                        pa_missing[leaf] = pa_missing.get(leaf, 0) + 1
                    else:
                        fails.add(path, f"row group {i} no min/max (pyarrow)", column=leaf,
                                  detail=f"column order {orders[j]}")
                elif dmin is not None:
                    same("pyarrow", pst.min_raw, pst.max_raw)
            # 3. DuckDB.
            row = dd.get((i, j))
            if row is None:
                fails.add(path, f"DuckDB lists no metadata for row group {i}", column=leaf)
                continue
            s_min, s_max, s_nulls, min_exact, max_exact = row
            if s_nulls != want_nulls:
                fails.add(path, f"row group {i} null count (DuckDB)", column=leaf,
                          detail=f"{s_nulls}, data {want_nulls}")
            if dmin is None:
                continue
            if s_min is None or s_max is None:
                if isinstance(dmin, float) and (math.isinf(dmin) or math.isinf(dmax)):
                    dd_missing_inf += 1  # DuckDB drops float statistics holding an infinity
                else:
                    fails.add(path, f"row group {i} DuckDB sees no min/max", column=leaf)
                continue
            if isinstance(dmin, bytes):
                same("DuckDB", s_min, s_max, bool(min_exact), bool(max_exact))
            elif isinstance(dmin, bool):
                same("DuckDB", s_min == "true", s_max == "true")
            elif pa.types.is_timestamp(arr.type):
                conv = con.execute("SELECT epoch_us(?::TIMESTAMPTZ), epoch_us(?::TIMESTAMPTZ)",
                                   [s_min, s_max]).fetchone()
                same("DuckDB", conv[0], conv[1])
            else:
                cast = float if isinstance(dmin, float) else int
                same("DuckDB", cast(s_min), cast(s_max))
    if pa_missing:
        fails.pa_missing[path] = (sum(pa_missing.values()), sorted(pa_missing))
    if dd_missing_inf:
        fails.note(f"NOTE {name}: DuckDB {duckdb.__version__} reports no min/max for "
                   f"{dd_missing_inf} DOUBLE column chunks whose data holds ±inf (the footer has "
                   f"them; checked there)")
    summary.update(row_groups=md.num_row_groups, rg_min=min(sizes) if sizes else 0,
                   rg_max=max(sizes) if sizes else 0, chunks=chunks_checked,
                   codec="/".join(sorted(codecs_seen)) or "-",
                   ieee=len(ieee))


def check_pruned_reads(path, pa_table, con, fails,
                       names=("id", "latency_ms", "values_mean", "values_max", "service")):
    """Filtered reads prune row groups and pages by the statistics: they must count the same."""
    n = pa_table.num_rows
    if n == 0:
        return 0
    probes = 0
    for name in names:
        col = chunk(pa_table.column(name))
        nonnull = pc.drop_null(col)
        if pa.types.is_floating(col.type):
            nonnull = pc.filter(nonnull, pc.invert(pc.is_nan(nonnull)))
        if len(nonnull) == 0:
            continue
        srt = pc.sort_indices(nonnull)
        pivot = nonnull[int(srt[len(srt) // 3].as_py())].as_py()
        want = pc.sum(pc.greater(col, pivot).fill_null(False).cast(pa.int64())).as_py() or 0
        got_dd = con.execute(f'SELECT count(*) FROM read_parquet(?) WHERE "{name}" > ?',
                             [path, pivot]).fetchone()[0]
        got_pa = pq.read_table(path, columns=[name], filters=[(name, ">", pivot)]).num_rows
        probes += 1
        if got_dd != want or got_pa != want:
            fails.add(path, f"filtered read {name} > {pivot!r}", column=name,
                      detail=f"DuckDB {got_dd}, pyarrow {got_pa}, full scan {want}")
    return probes


# ---------------------------------------------------------------------------------------------
# (d) against the records that were served.

RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                     r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


def rfc3339_micros(s):
    """An RFC 3339 parser of our own: fraction truncated to µs, a leap second folded forward."""
    m = RFC3339.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(m.group(k)) for k in range(1, 7))
    frac = (m.group(7) or "")[:6].ljust(6, "0")
    # Days from civil (proleptic Gregorian), computed with Python's date arithmetic.
    days = (datetime.date(y, mo, d) - datetime.date(1970, 1, 1)).days
    secs = days * 86400 + h * 3600 + mi * 60 + sec
    if m.group(9):
        off = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= off if m.group(9) == "+" else -off
    return secs * 1_000_000 + int(frac)


def f64(x):
    return None if x is None else float(x)


def expected_row(obj):
    vals = obj.get("values")
    return {
        "id": obj.get("id"),
        "ts": None if obj.get("ts") is None else rfc3339_micros(obj["ts"]),
        "service": obj.get("service"),
        "level": obj.get("level"),
        "host": obj.get("host"),
        "latency_ms": f64(obj.get("latency_ms")),
        "message": obj.get("message"),
        "values": None if vals is None else [float(v) for v in vals],
    }


def row_key(r):
    if r["id"] is not None:
        return ("id", r["id"])
    if r["service"] is not None:
        return ("service", r["service"])
    return ("all null",)


def same_value(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def diff_detail(name, got, want):
    """(column, detail) naming the first differing element of a list."""
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return name, f"file has {len(got)} elements, served {len(want)}"
        k = next(k for k, (a, b) in enumerate(zip(got, want)) if not same_value(a, b))
        return f"{name}[{k}]", f"file {describe(got[k])}, served {describe(want[k])}"
    return name, f"file {describe(got)}, served {describe(want)}"


def check_expected(path, pa_table, spec, fails, summary):
    with open(spec["expected"], encoding="utf-8") as f:
        exp = json.load(f)
    want = {}
    for line in exp["rows"]:
        r = expected_row(json.loads(line))
        k = row_key(r)
        if k in want:
            fails.add(path, "edge-case generator produced a duplicate key", detail=str(k))
        want[k] = r
    # Open cases: a row (then equal to json.loads' reading) or a dead letter, either is fine.
    open_cases = {}
    for item in exp.get("known", []):
        r = expected_row(json.loads(item["line"]))
        open_cases[row_key(r)] = (r, item)
    cols = {name: chunk(pa_table.column(name)) for name in NAMES[:8]}
    ts_int = cols["ts"].cast(pa.int64()).to_pylist()
    lists = {name: cols[name].to_pylist() for name in NAMES[:8] if name != "ts"}
    seen = {}
    for r in range(pa_table.num_rows):
        got = {name: (ts_int[r] if name == "ts" else lists[name][r]) for name in NAMES[:8]}
        k = row_key(got)
        if k in seen:
            fails.add(path, "record written twice", r, detail=f"{k} also at row {seen[k]}")
            continue
        seen[k] = r
        w = want.get(k)
        if w is None and k in open_cases:
            w = open_cases[k][0]
            fails.note(f"KNOWN {os.path.basename(path)}: {open_cases[k][1]['line']} "
                       f"({open_cases[k][1]['why']}) became row {r}")
        if w is None:
            fails.add(path, "row that was never served", r, detail=str(k))
            continue
        for name in NAMES[:8]:
            if not same_value(got[name], w[name]):
                fails.add(path, "value differs from the record served", r,
                          *diff_detail(name, got[name], w[name]))
    for k in want:
        if k not in seen:
            fails.add(path, "record served but not in the file", detail=str(k))
    # Dead letters: every bad line once, with its reason; nothing else.
    dl_path = spec.get("dead_letter")
    letters = []
    if dl_path and os.path.exists(dl_path):
        with open(dl_path, encoding="utf-8") as f:
            letters = [json.loads(line) for line in f if line.strip()]
    by_excerpt = {}
    for dlt in letters:
        by_excerpt.setdefault(dlt.get("excerpt"), []).append(dlt)
    for bad in exp["dead"]:
        found = by_excerpt.pop(bad["line"], [])
        if len(found) != 1:
            fails.add(path, f"bad record dead-lettered {len(found)} times (want 1)",
                      detail=bad["line"])
        elif found[0].get("kind") != "record" or bad["reason"] not in found[0].get("reason", ""):
            fails.add(path, "dead letter reason",
                      detail=f"{bad['line']}: {found[0]} lacks {bad['reason']!r}")
    for k, (r, item) in open_cases.items():
        found = by_excerpt.pop(item["line"], [])
        if found and k in seen:
            fails.add(path, "record both written and dead-lettered", detail=item["line"])
        elif len(found) > 1:
            fails.add(path, f"record dead-lettered {len(found)} times", detail=item["line"])
        elif found:
            fails.note(f"KNOWN {os.path.basename(path)}: {item['line']} ({item['why']}) was "
                       f"dead-lettered: {found[0].get('reason')}")
        elif k not in seen:
            fails.add(path, "record neither written nor dead-lettered", detail=item["line"])
    for excerpt, extra in by_excerpt.items():
        fails.add(path, f"unexpected dead letter ({len(extra)})", detail=f"{extra[0]}")
    summary.update(served=len(want) + len(open_cases) + len(exp["dead"]), matched=len(seen),
                   dead=len(letters))


def check_demo(path, pa_table, n, fails):
    ids = chunk(pa_table.column("id"))
    if ids.null_count:
        fails.add(path, "demo row without id", detail=f"{ids.null_count} rows")
        return
    arr = np.sort(ids.to_numpy(zero_copy_only=False))
    if len(arr) != n or not np.array_equal(arr, np.arange(1, n + 1)):
        dup = int((np.diff(arr) == 0).sum()) if len(arr) > 1 else 0
        fails.add(path, f"demo ids are not 1..{n} exactly once",
                  detail=f"{len(arr)} rows, {dup} duplicates, range {arr[:1]}..{arr[-1:]}")


def check_same_content(group, tables, fails):
    base_label = group[0]
    base = tables[base_label].sort_by("id")
    for label in group[1:]:
        other = tables[label].sort_by("id")
        if not other.equals(base):
            for name in NAMES:
                if not chunk(other.column(name)).equals(chunk(base.column(name))):
                    fails.add(label, f"content differs from {base_label} (sorted by id)",
                              column=name)
                    break
            else:
                fails.add(label, f"content differs from {base_label}")


# ---------------------------------------------------------------------------------------------

def check_file(spec, fails, tables):
    path = spec["path"]
    t0 = time.monotonic()
    summary = {"file": os.path.basename(path)}
    before = len(fails.items)
    pf = pq.ParquetFile(path)
    pa_table, dd_table, con, described = read_both(path, fails)
    tables[spec.get("label", path)] = pa_table
    summary["rows"] = pa_table.num_rows
    if spec.get("expect_rows") is not None and pa_table.num_rows != spec["expect_rows"]:
        fails.add(path, "row count", detail=f"{pa_table.num_rows}, expected {spec['expect_rows']}")
    check_schema(path, pf, pa_table, dd_table, described, fails)
    if pa_table.schema.names == NAMES and dd_table.schema.names == NAMES:
        summary["cells"], summary["elements"] = compare_cells(path, pa_table, dd_table, fails)
        check_statistics(path, pa_table, con, spec.get("exact", False), fails, summary)
        check_metadata(path, pf, pa_table, con, spec, fails, summary)
        summary["filters"] = check_pruned_reads(path, pa_table, con, fails)
        if spec.get("expected"):
            check_expected(path, pa_table, spec, fails, summary)
        if spec.get("demo_records"):
            check_demo(path, pa_table, spec["demo_records"], fails)
    summary["mismatches"] = len(fails.items) - before
    summary["seconds"] = time.monotonic() - t0
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--manifest", help="JSON: {files: [{path, label, expect_rows, "
                    "row_group_rows, compression, version, expected, dead_letter, exact, "
                    "demo_records}], same_content: [[label...]], cases: [{kind, label, ...}] "
                    "(see cases.py)}")
    ap.add_argument("--expect-rows", type=int)
    ap.add_argument("--row-group-rows", type=int)
    ap.add_argument("--compression", help="the codec as the footer names it: SNAPPY, ZSTD, "
                    "LZ4_RAW, UNCOMPRESSED, ...")
    ap.add_argument("--exact", action="store_true", help="exact rational reference statistics")
    a = ap.parse_args()
    if a.manifest:
        with open(a.manifest, encoding="utf-8") as f:
            manifest = json.load(f)
    else:
        if not a.files:
            ap.error("give files or --manifest")
        manifest = {"files": [{"path": p, "label": p, "expect_rows": a.expect_rows,
                               "row_group_rows": a.row_group_rows, "compression": a.compression,
                               "exact": a.exact} for p in a.files]}
    print(f"interop: pyarrow {pa.__version__}, DuckDB {duckdb.__version__}, numpy "
          f"{np.__version__}, Python {sys.version.split()[0]}")
    fails = Failures()
    fails.root = manifest.get("work")
    tables = {}
    summaries = []
    for spec in manifest["files"]:
        summaries.append(check_file(spec, fails, tables))
    case_summaries = [cases.check_case(spec, fails, tables, sys.modules[__name__])
                      for spec in manifest.get("cases", [])]
    ids = [s.get("run_id") for s in summaries if s.get("run_id")]
    ids += [i for s in case_summaries for i in s.get("run_ids", ()) if i]
    if len(set(ids)) != len(ids):
        fails.add(summaries[0]["file"], "pinflow.run_id repeats across runs", detail=str(ids))
    group_results = []
    for group in manifest.get("same_content", []):
        before = len(fails.items)
        if all(label in tables for label in group):
            check_same_content(group, tables, fails)
        else:
            fails.add(group[0], f"same-content group {group}: a file is missing")
        group_results.append(len(fails.items) == before)

    print(f"{'file':<20} {'rows':>6} {'groups':>8} {'codec':<12} {'cells':>7} {'elements':>8} "
          f"{'stat rows':>9} {'max rel: mean':>13} {'variance':>9} {'s':>4}")
    tot_cells = tot_el = tot_rows = 0
    worst = {"mean": 0.0, "variance": 0.0}
    worst_other = {"DuckDB": 0.0, "numpy": 0.0}
    for s in summaries:
        mr = s.get("maxrel", {"mean": [0.0], "variance": [0.0]})
        for k in worst:
            worst[k] = max(worst[k], mr[k][0])
        for k, v in s.get("maxrel_other", {}).items():
            worst_other[k] = max(worst_other[k], v["mean"], v["variance"])
        tot_cells += s.get("cells", 0)
        tot_el += s.get("elements", 0)
        tot_rows += s.get("rows", 0)
        groups = f"{s.get('row_groups', '?')}"
        if s.get("row_groups", 0) > 1:
            groups += f"≤{s['rg_max']}"
        print(f"{s['file']:<20} {s.get('rows', 0):>6} {groups:>8} {s.get('codec', '?'):<12} "
              f"{s.get('cells', 0):>7} {s.get('elements', 0):>8} {s.get('stat_rows', 0):>9} "
              f"{mr['mean'][0]:>13.2e} {mr['variance'][0]:>9.2e} {s['seconds']:>4.1f}")
        extra = []
        if s.get("served") is not None:
            extra.append(f"{s['served']} records served: {s['matched']} rows matched, "
                         f"{s['dead']} dead letters")
        if s.get("floored", {}).get("mean"):
            extra.append(f"{s['floored']['mean']} means within the summation-error floor")
        if s.get("ill_conditioned"):
            extra.append(f"{s['ill_conditioned']} ill-conditioned variances checked against "
                         f"{s['reference']} only")
        if s.get("overflow"):
            extra.append(f"{s['overflow']} overflowed statistics (KNOWN below)")
        if extra:
            print(f"{'':<20}   " + "; ".join(extra))
    print(f"total: {len(summaries)} files, {tot_rows} rows, {tot_cells} cells and {tot_el} list "
          f"elements identical in pyarrow and DuckDB; statistics, max relative error vs "
          f"{'exact/fsum'} reference: mean {worst['mean']:.2e}, variance "
          f"{worst['variance']:.2e} (vs DuckDB {worst_other['DuckDB']:.1e}, vs numpy "
          f"{worst_other['numpy']:.1e})")
    if case_summaries:
        print(f"{'case':<20} {'rows':>6} {'files':>5} {'groups':>6} {'codec':<12} {'cells':>7} "
              f"{'elements':>8} {'s':>4}  what was checked")
    for s in case_summaries:
        print(f"{s['label']:<20} {s.get('rows', 0):>6} {s.get('files', 0):>5} "
              f"{s.get('row_groups', 0):>6} {s.get('codec', '?'):<12} {s.get('cells', 0):>7} "
              f"{s.get('elements', 0):>8} {s['seconds']:>4.1f}  {s['line']}")
    if fails.pa_missing:
        chunks = sum(v[0] for v in fails.pa_missing.values())
        columns = sorted({c for v in fails.pa_missing.values() for c in v[1]})
        print(f"NOTE pyarrow {pa.__version__} reports no min/max for {chunks} DOUBLE column "
              f"chunks in {len(fails.pa_missing)} of "
              f"{len(summaries) + sum(s.get('files', 0) for s in case_summaries)} files "
              f"({', '.join(columns)}): a chunk or page of these columns has NaN bounds (it "
              f"holds only NaN), so pinflow kept ColumnOrder IEEE754TotalOrder for them, which "
              f"Arrow C++ does not know. They were checked in the raw footer and in DuckDB "
              f"instead.")
    for n in fails.notes:
        print(n)
    started = os.environ.get("INTEROP_STARTED")
    took = f" in {time.time() - float(started):.1f} s" if started else ""
    checks = len(summaries) + len(group_results) + len(case_summaries)
    failed = sum(1 for s in summaries if s["mismatches"]) + group_results.count(False) + \
        sum(1 for s in case_summaries if s["mismatches"])
    if fails.items:
        for m in fails.items[:200]:
            print(m)
        if len(fails.items) > 200:
            print(f"... and {len(fails.items) - 200} more")
        print(f"interop: FAIL{took}: {len(fails.items)} mismatches")
    else:
        print(f"interop: PASS{took}")
    print(f"interop: {checks - failed} passed, {failed} failed")
    return 1 if fails.items else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The interoperability check beyond the built-in log layout: a configurable schema (every
field type, nested paths, `_extra`, statistics with percentiles), schema inference,
Hive-partitioned datasets, other codecs and journal (resume) runs.

    cases.py gen DIR      write the inputs: DIR/schema-in/*.ndjson, DIR/infer-in/infer.ndjson,
                          DIR/codes-in/codes.ndjson and DIR/intent.json

check.py imports this module and calls check_case() for each entry of the manifest's "cases"
(see interop-check.sh). Each case is checked against a model of what pinflow must write for
every input line (`Model`: the rules of docs/usage.md, written here in Python): the line is a
row with these column values, or a dead letter naming this field. Then:

  - pyarrow and DuckDB read the same rows, names, types (Arrow, DuckDB and Parquet) and the same
    value in every cell (floats bit for bit), and every row equals the model's row: timestamps
    to the µs (an RFC 3339 parser of our own), `_extra` parsed with json.loads and compared with
    the input's unknown fields (dotted paths) value by value;
  - every statistic column is recomputed in DuckDB (len, list_sum, list_avg, list_var_samp,
    list_stddev_samp, list_min, list_max, list_aggregate(.., 'quantile_cont', q)), in numpy
    (np.quantile(method='linear')) and from exact references (math.fsum, rationals), with
    nulls exactly where pinflow's rules say;
  - the Parquet metadata of every file (check.check_metadata): page index, chunk statistics
    against the data, codec, row group sizes;
  - for partitioned output: each row is in the directory its own values name, every row once,
    and what pyarrow.dataset(partitioning='hive') and DuckDB read_parquet(hive_partitioning=true)
    make of the partition columns, which are also stored in the files: where an engine's value
    differs from the file's own, the line says so (KNOWN for the documented classes, MISMATCH
    otherwise); filtered reads must agree with each engine's own scan;
  - for journal runs: the second run wrote nothing and skipped every item, and the files of
    both runs hold every row once.
"""

import argparse
import datetime
import glob
import json
import math
import os
import random
import re
import struct
import sys
import time
from fractions import Fraction

SEED = 20261127
EPS = 2.0 ** -52
MAX_REPORTED = 25
TWO53 = 2 ** 53

# ---------------------------------------------------------------------------------------------
# The model: what pinflow must write for a line (docs/usage.md "Schemas and statistics").


class Obj(list):
    """A JSON object as its (key, value) pairs in order (duplicates kept, as pinflow walks)."""


class BadJson(ValueError):
    """A text that pinflow's JSON parser (simd-json) rejects although json.loads reads it."""


def _json_int(text):
    """simd-json: integers in the i64 / u64 range stay integers; beyond them (with its
    `big-int-as-float`) a double, correctly rounded, and beyond the f64 range an error."""
    v = int(text)
    if -2 ** 63 <= v < 2 ** 64:
        return v
    f = float(text)
    if math.isinf(f):
        raise BadJson(f"integer beyond the f64 range: {text[:40]}...")
    return f


def _json_float(text):
    f = float(text)
    if math.isinf(f):
        raise BadJson(f"number beyond the f64 range: {text}")
    return f


def _json_constant(text):
    raise BadJson(f"{text} is not JSON")


def loads(text):
    """A record as pinflow's parser reads it (numbers as above; raises BadJson)."""
    return json.loads(text, object_pairs_hook=Obj, parse_int=_json_int,
                      parse_float=_json_float, parse_constant=_json_constant)


def plain(v):
    """An Obj tree as json.loads makes it (the last of duplicate keys wins)."""
    if isinstance(v, Obj):
        return {k: plain(x) for k, x in v}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


TYPES = ("int64", "float64", "bool", "string", "dict", "timestamp", "list<float64>",
         "list<int64>")
TYPE_ALIASES = {"int": "int64", "integer": "int64", "long": "int64", "float": "float64",
                "double": "float64", "boolean": "bool", "str": "string", "utf8": "string",
                "dictionary": "dict", "list<float>": "list<float64>",
                "list<double>": "list<float64>", "list<int>": "list<int64>"}


class Field:
    def __init__(self, spec):
        path, rest = spec.split(":", 1)
        ty, _, column = rest.partition(" as ")
        ty = ty.strip().lower()
        self.ty = TYPE_ALIASES.get(ty, ty)
        if self.ty not in TYPES:
            raise ValueError(f"{spec}: unknown type")
        self.path = path.strip().split(".")
        self.column = column.strip() or "_".join(self.path)

    def __repr__(self):
        return f"{'.'.join(self.path)}:{self.ty}"


def stat_suffix(op):
    if op[0] == "p":
        pct = round(float(op[1:]) / 100 * 100_000) / 1000
        s = repr(pct)
        s = s[:-2] if s.endswith(".0") else s
        return "p" + s.replace(".", "_")
    return {"avg": "mean", "var": "variance", "std": "stddev"}.get(op, op)


def parse_stats(spec):
    """'COL' or 'COL:op,op' -> (column, [(op, suffix, q or None)])."""
    col, _, ops = spec.partition(":")
    ops = ops.split(",") if ops else ["count", "mean", "min", "max", "variance"]
    out = []
    for op in ops:
        op = op.strip()
        q = float(op[1:]) / 100 if op.startswith("p") else None
        out.append((stat_suffix(op) if q is None else "quantile", stat_suffix(op), q))
    return col.strip(), out


RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                     r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


def ts_micros(s):
    """RFC 3339 -> µs since the epoch (fraction truncated, a leap second folded forward), or
    None when it is not a valid date-time. Python's date arithmetic, not pinflow's."""
    m = RFC3339.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(m.group(k)) for k in range(1, 7))
    if h > 23 or mi > 59 or sec > 60:
        return None
    try:
        days = (datetime.date(y, mo, d) - datetime.date(1970, 1, 1)).days
    except ValueError:
        return None
    frac = (m.group(7) or "")[:6].ljust(6, "0")
    secs = days * 86400 + h * 3600 + mi * 60 + sec
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            return None
        off = oh * 3600 + om * 60
        secs -= off if m.group(9) == "+" else -off
    return secs * 1_000_000 + int(frac)


INVALID_JSON = "(invalid JSON)"  # the "field" of a record pinflow cannot parse at all


class Dead(Exception):
    def __init__(self, field, why):
        super().__init__(why if field == INVALID_JSON else f"field `{field}`: {why}")
        self.field = field


def is_int(v):
    return type(v) is int


def is_num(v):
    return type(v) in (int, float)


def convert(v, ty, name):
    if ty == "int64":
        if is_int(v) and -2 ** 63 <= v < 2 ** 63:
            return v
        raise Dead(name, "expected an integer")
    if ty == "float64":
        if is_num(v):
            return float(v)
        raise Dead(name, "expected a number")
    if ty == "bool":
        if type(v) is bool:
            return v
        raise Dead(name, "expected true or false")
    if ty in ("string", "dict"):
        if type(v) is str:
            return v
        raise Dead(name, "expected a string")
    if ty == "timestamp":
        t = ts_micros(v) if type(v) is str else None
        if t is None:
            raise Dead(name, "expected an RFC 3339 string")
        return t
    if type(v) is not list:
        raise Dead(name, "expected an array of numbers")
    if any(isinstance(x, (list, Obj)) for x in v):
        raise Dead(name, "nested arrays or objects")
    item = "int64" if ty == "list<int64>" else "float64"
    return [convert(x, item, f"{name}[{k}]") for k, x in enumerate(v)]


class Model:
    """pinflow's reading of a record under a schema (fields, unknown policy)."""

    def __init__(self, fields, unknown="ignore"):
        self.fields = fields
        self.unknown = unknown
        self.tree = {}
        for f in fields:
            node = self.tree
            for part in f.path[:-1]:
                node = node.setdefault(part, {})
            node[f.path[-1]] = f

    def columns(self):
        return [f.column for f in self.fields] + (["_extra"] if self.unknown == "extra" else [])

    def row(self, line):
        """The row (column -> value; `_extra` as json.loads would read it) or raises Dead."""
        try:
            obj = loads(line)
        except BadJson as e:
            raise Dead(INVALID_JSON, f"invalid JSON ({e})") from None
        if not isinstance(obj, Obj):
            raise Dead("", "not an object")
        staged = {}
        extra = []
        self._walk(obj, self.tree, "", staged, extra)
        row = {f.column: staged.get(f.column) for f in self.fields}
        if self.unknown == "extra":
            row["_extra"] = {k: plain(v) for k, v in extra} if extra else None
        return row

    def _walk(self, obj, tree, prefix, staged, extra):
        for key, v in obj:
            t = tree.get(key)
            name = prefix + key
            if t is None:
                if self.unknown == "extra":
                    extra.append((name, v))
                elif self.unknown == "reject":
                    raise Dead(name, "not in the schema")
            elif isinstance(t, Field):
                staged[t.column] = None if v is None else convert(v, t.ty, name)
            elif isinstance(v, Obj):
                self._walk(v, t, name + ".", staged, extra)
            elif v is not None:
                raise Dead(name, "expected an object")


def infer_fields(records, objects_with_bad_lists=None):
    """docs/usage.md, "Inference": fields of the records (json texts), in first-seen order, and
    the paths left out. `objects_with_bad_lists` (a set) collects the paths seen as objects and as
    arrays of non-numbers, which pinflow treats as objects (see case_infer)."""
    order, seen = [], {}

    def observe(path, v):
        if path not in seen:
            order.append(path)
            seen[path] = set()
        s = seen[path]
        if v is None:
            s.add("null")
        elif type(v) is bool:
            s.add("bool")
        elif type(v) is int:
            s.add("int")
        elif type(v) is float:
            s.add("float")
        elif type(v) is str:
            s.add("string")
            if ts_micros(v) is None:
                s.add("not_ts")
        elif isinstance(v, Obj):
            s.add("object")
            for k, x in v:
                observe(f"{path}.{k}", x)
        elif not v:
            s.add("list_empty")
        elif all(type(x) is int for x in v):
            s.add("list_int")
        elif all(is_num(x) for x in v):
            s.add("list_float")
        else:
            s.add("bad_list")

    for text in records:
        try:
            obj = loads(text)
        except BadJson:
            continue
        if isinstance(obj, Obj):
            for k, v in obj:
                observe(k, v)
    fields, left_out = [], []
    for path in order:
        # A path left out takes everything below it along (an object that was once a
        # number: neither `o` nor `o.a` is a column, and `o` is an unknown field).
        if any(path.startswith(d + ".") for d in left_out):
            continue
        s = seen[path]
        kinds = sum([bool(s & {"int", "float"}), "bool" in s, "string" in s,
                     bool(s & {"list_int", "list_float", "list_empty"}), "object" in s])
        if "object" in s and kinds == 1 and "bad_list" not in s:
            # Its fields are columns of their own. (An object that was also an array of
            # non-numbers is left out with its fields, below.)
            continue
        if "bad_list" in s or kinds > 1:
            left_out.append(path)
            continue
        if "float" in s:
            ty = "float64"
        elif "int" in s:
            ty = "int64"
        elif "bool" in s:
            ty = "bool"
        elif "string" in s and "not_ts" not in s:
            ty = "timestamp"
        elif "list_float" in s or ("list_empty" in s and "list_int" not in s):
            ty = "list<float64>"
        elif "list_int" in s:
            ty = "list<int64>"
        else:
            ty = "string"
        fields.append(Field(f"{path}:{ty}"))
    return fields, left_out


# ---------------------------------------------------------------------------------------------
# The inputs.

SVC = ["api", "auth", "search", "billing", "séarch", "日本", "x y", ""]
# Values of `s`, the partition column of schema-hive: escapes, empty, unicode, a literal
# __HIVE_DEFAULT_PARTITION__ and an already-escaped-looking one.
S_VALUES = ["plain", "", "a/b", "x=y", "100%", "é ü", "200", "-1", "sp ace", "q?#*",
            "tab\there", "日本語", "emoji 😀", "\u0000nul", "quote\"back\\",
            "__HIVE_DEFAULT_PARTITION__", "a%2Fb", "dot.", ".."]
STATUS = [200, 404, 500]


def rand_ts(rng, base=datetime.datetime(2026, 11, 20, tzinfo=datetime.timezone.utc), days=7):
    instant = base + datetime.timedelta(microseconds=rng.randrange(days * 86_400_000_000))
    off = rng.choice([0, 0, 330, -480, 0, 765, -60])
    local = instant + datetime.timedelta(minutes=off)
    digits = rng.choice([0, 3, 6, 6, 9])
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:  # 9 digits: three below the µs, which pinflow (and ts_micros) truncate
        text += "." + (f"{local.microsecond:06d}" + f"{rng.randrange(1000):03d}")[:digits]
    if off == 0:
        text += rng.choice(["Z", "Z", "+00:00", "z"])
    else:
        sign = "+" if off > 0 else "-"
        text += f"{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    return text


def rand_samples(rng):
    n = rng.choices([0, 1, 2, 3, 5, 8, 13, 50, 200], weights=[4, 4, 4, 8, 10, 10, 8, 3, 1])[0]
    mode = rng.random()
    if mode < 0.5:
        return [rng.gauss(100, 30) for _ in range(n)]
    if mode < 0.65:
        return [rng.randint(-50, 50) for _ in range(n)]
    if mode < 0.75:
        return [1e9 + rng.random() for _ in range(n)]
    if mode < 0.9:
        return [rng.choice([1.5, 2.5, 2.5, 7.0, -0.0, 0.0]) for _ in range(n)]
    return [rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-20, 20) for _ in range(n)]


def schema_lines(rng):
    """(lines, intent): intent[i] is None for a row or the field its dead letter names."""
    out = []

    def add(obj, dead=None):
        out.append((json.dumps(obj, ensure_ascii=False), dead))

    def raw(text, dead=None):
        out.append((text, dead))

    full = {"ts": "2026-11-24T10:00:00.123456Z", "svc": "api",
            "http": {"status": 200, "method": "GET"}, "ok": True, "x": 1.5,
            "samples": [1, 2, 3, 4], "counts": [1, 2, 3], "s": "plain"}
    add({"id": 1, **full})
    add({"id": 2})
    add({"id": 3, **{k: None for k in full}})
    add({"id": 4, "http": {}})
    add({"id": 5, "http": {"status": None, "retry": None}})
    add({"id": 6, "http": None, "svc": "auth"})
    add({"id": 7, "http": {"headers": {"a": [1, {"b": None}]}, "status": 404}})
    # Unknown fields of every kind, written by hand so that the number texts stay as they are.
    raw('{"id":8,"tags":["a","b"],"debug":{"k":[1,2],"n":null},"n":null,"z":1.5,'
        '"big":12345678901234567890,"f":1e22,"neg0":-0.0,"e":0.1,"ключ":"знач",'
        '"q\\"k\\\\":"v\\n","ctl\\u0001":1,"arr":[[1,2],[]],"emptyobj":{},"one":1.0,'
        '"exp":1E5,"tiny":5e-324,"mzero":-0,"esc":"\\ud83d\\ude00 \\u00e9"}')
    add({"id": 9, "http.status": 7, "http": {"status": 8}})  # a literal dotted key
    raw('{"id":10,"dup":1,"dup":2}')
    raw('{"id":11,"x":1,"x":2.5}')
    add({"id": 12, "http": {"status": 201, "method": "POST", "t": {"u": {"v": 1}}}})
    # Statistics corners.
    add({"id": 20, "samples": [], "counts": []})
    add({"id": 21, "samples": [3.25], "counts": [7]})
    add({"id": 22, "samples": [5, 5], "counts": [5, 5]})
    add({"id": 23, "samples": [1e9 + rng.random() for _ in range(50)]})
    add({"id": 24, "samples": [-0.0, 0.0], "counts": [0, -0]})
    add({"id": 25, "samples": [1, 2]})
    add({"id": 26, "samples": [rng.gauss(0, 1) for _ in range(1000)]})
    add({"id": 27, "samples": [9007199254740993, -9007199254740993, 1]})
    add({"id": 28, "samples": [5e-324, 1e-320, 2.2250738585072014e-308]})
    add({"id": 29, "samples": [1e16, 1.0, -1e16, 2.0]})
    add({"id": 30, "samples": [float(k) for k in range(1001)]})
    add({"id": 31, "counts": [9007199254740993]})
    add({"id": 32, "counts": [9223372036854775807, -9223372036854775808]})
    add({"id": 33, "counts": [9223372036854775807, 9223372036854775807]})
    add({"id": 34, "counts": [-5, 3, 0, 1000000, -1000000]})
    add({"id": 35, "counts": list(range(100))})
    # The exact sum rounded once, then / n: here 1 ulp from the correctly rounded exact mean.
    add({"id": 36, "counts": [3330768271217645731, 2903587719564151835, 2121167162699269654]})
    add({"id": 37, "counts": [-9223372036854775808, -9223372036854775808, 1]})
    # Integers beyond u64 are doubles (simd-json's big-int-as-float): values in float fields.
    add({"id": 38, "samples": [123456789012345678901234567890, 1, -18446744073709551617]})
    # Numbers in the float64 field.
    add({"id": 40, "x": 7})
    add({"id": 41, "x": 9007199254740993})
    add({"id": 42, "x": -0.0})
    add({"id": 43, "x": 5e-324})
    add({"id": 44, "x": 1.7976931348623157e308})
    add({"id": 45, "x": 12345678901234567890})
    raw('{"id":46,"x":1E5}')
    raw('{"id":47,"x":-0}')
    add({"id": 48, "x": 123456789012345678901234567890})
    add({"id": 49, "x": -18446744073709551616})
    raw('{"id":13,"huge":123456789012345678901234567890,"nhuge":-9223372036854775809,'
        '"u64max":18446744073709551615,"deep":{"h":[18446744073709551616]}}')
    # Timestamps.
    stamps = ["2026-11-24T19:30:00+01:30", "2026-11-24T10:00:00-08:00", "2026-11-24t18:00:00z",
              "2026-11-24 18:00:00Z", "2026-11-24T18:00:00.1Z", "2026-11-24T18:00:00.123456789Z",
              "2026-11-24T18:00:00.1234567+05:45", "2016-12-31T23:59:60Z",
              "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "1900-01-01T00:00:00Z",
              "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
              "2000-01-01T00:00:00+23:59", "2024-02-29T23:59:59.999999-00:00"]
    for k, t in enumerate(stamps):
        add({"id": 50 + k, "ts": t})
    add({"id": 70, "ok": False})
    for k, s in enumerate(["", "café naïve", "emoji 😀 🏳️‍🌈", "\u0000NUL\u0000",
                           "ctl \u0001\u001f\u007f", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "x" * 65, "tab\there\nnewline"]):
        add({"id": 71 + k, "s": s, "svc": s})
    add({"id": 80, "svc": "long " + "ü" * 3000})
    for v in (0, -1, 9223372036854775807, -9223372036854775808):
        add({"id": v, "s": "id extreme"})
    # Dead letters: the field named in the reason.
    nid = [500]

    def bad(fields, field):
        nid[0] += 1
        add({"id": nid[0], **fields}, field)

    bad({"http": 5}, "http")
    bad({"http": {"status": "200"}}, "http.status")
    bad({"http": {"status": 1.5}}, "http.status")
    bad({"http": {"status": 9223372036854775808}}, "http.status")
    bad({"ok": "true"}, "ok")
    bad({"ok": 1}, "ok")
    bad({"counts": [1.5]}, "counts[0]")
    bad({"counts": [1, 9223372036854775808]}, "counts[1]")
    bad({"samples": [1, None]}, "samples[1]")
    bad({"samples": [[1]]}, "samples")
    bad({"samples": "1,2"}, "samples")
    bad({"samples": {"a": 1}}, "samples")
    bad({"ts": "2026-02-30T00:00:00Z"}, "ts")
    bad({"ts": "2026-11-24T10:00:00"}, "ts")
    bad({"ts": True}, "ts")  # a number would be an epoch time (issue 17)
    bad({"svc": 1}, "svc")
    bad({"s": ["a"]}, "s")
    bad({"x": "1"}, "x")
    bad({"x": True}, "x")
    bad({"debug": {"a": 1}, "ok": None, "x": "no"}, "x")
    raw('{"id":1.5}', "id")
    raw('{"id":"7"}', "id")
    # Beyond u64 in an int64 field: a double, so a wrong type (not "out of range").
    bad({"http": {"status": 123456789012345678901234567890}}, "http.status")
    bad({"counts": [1, -9223372036854775809]}, "counts[1]")
    raw('{"id":18446744073709551616}', "id")
    # Beyond the f64 range: not a number pinflow can read, the record is invalid JSON.
    raw('{"id":%d,"x":1e400}' % (nid[0] + 1), INVALID_JSON)
    raw('{"id":%d,"zz":-1e400}' % (nid[0] + 2), INVALID_JSON)
    raw('{"id":%d,"samples":[1%s]}' % (nid[0] + 3, "0" * 400), INVALID_JSON)
    # The bulk: random records.
    for i in range(3000):
        d = {"id": 10000 + i}
        if rng.random() < 0.93:
            d["ts"] = rand_ts(rng)
        elif rng.random() < 0.5:
            d["ts"] = None
        if rng.random() < 0.9:
            d["svc"] = rng.choice(SVC)
        r = rng.random()
        if r < 0.8:
            h = {"status": rng.choice(STATUS)}
            if rng.random() < 0.5:
                h["method"] = rng.choice(["GET", "POST", "PUT"])
            if rng.random() < 0.05:
                h["status"] = None
            d["http"] = h
        elif r < 0.85:
            d["http"] = None
        elif r < 0.9:
            d["http"] = {}
        if rng.random() < 0.85:
            d["ok"] = rng.random() < 0.7
        if rng.random() < 0.85:
            d["x"] = rng.gauss(0, 1000) if rng.random() < 0.8 else rng.randint(-10**6, 10**6)
        if rng.random() < 0.9:
            d["samples"] = rand_samples(rng)
        if rng.random() < 0.85:
            d["counts"] = [rng.randint(0, 1000) for _ in range(rng.randint(0, 12))]
        if rng.random() < 0.9:
            d["s"] = rng.choice(S_VALUES)
        if rng.random() < 0.3:
            d["trace"] = f"{rng.getrandbits(64):016x}"
        if rng.random() < 0.1:
            d["meta"] = {"k": rng.randint(0, 9), "tags": ["x", rng.choice(["y", "z"])]}
        if rng.random() < 0.2:
            items = list(d.items())
            rng.shuffle(items)
            d = dict(items)
        add(d)
    return out


def infer_lines(rng):
    """1,000 records that the inference looks at, then eight it does not."""
    out = []
    for i in range(1, 1001):
        d = {"id": i, "ts": rand_ts(rng), "when": rand_ts(rng), "x": rng.randint(0, 99),
             "n": rng.randint(-5, 5), "ok": rng.random() < 0.5, "name": f"n{i % 7}",
             "nul": None, "http": {"status": rng.choice(STATUS), "path": f"/a/{i % 3}"},
             "vi": [rng.randint(0, 9) for _ in range(rng.randint(0, 4))],
             "vf": [rng.randint(0, 9) for _ in range(rng.randint(1, 3))],
             "ve": [], "vie": [], "values": [rng.randint(0, 99) for _ in range(rng.randint(0, 6))],
             "mixed": 1, "bad": [{"a": 1}], "o": {"a": i}, "deep": {"a": {"b": {"c": i}}},
             "om": {"a": i}, "p": {"q": {"r": i}, "z": i}, "big": i}
        if i == 7:
            d["x"] = 2.5  # one fraction: float64
        if i == 11:
            d["when"] = "yesterday"  # one non-RFC 3339 string: string
        if i == 13:
            d["vf"] = [1, 2.5]  # one fraction in a list: list<float64>
        if i == 17:
            d["vie"] = [3]  # empty lists and one of integers: list<int64>
        if i == 19:
            d["mixed"] = "one"  # a number and a string: left out
        if i == 23:
            d["o"] = 2  # an object and a number: left out, and o.a with it (`o` in _extra)
        if i == 31:
            d["om"] = [{"a": 1}]  # an object and an array of objects: left out with om.a
        if i == 37:
            d["p"]["q"] = "str"  # p.q an object and a string: left out with p.q.r; p.z stays
        if i == 41:
            d["big"] = 123456789012345678901234567890  # beyond u64: a double, so float64
        if i == 29:
            d["ts"] = None
        if i % 10 == 3:
            del d["http"]
        if i % 10 == 4:
            d["values"] = None
        out.append(json.dumps(d))
    out += [json.dumps(d) for d in [
        {"id": 1001, "x": "str"},
        {"id": 1002, "n": 1.5},
        {"id": 1003, "late": 1},
        {"id": 1004, "ts": "not a time"},
        {"id": 1005, "vi": [1.5]},
        {"id": 1006, "nul": "now a string"},
        {"id": 1007, "n": 18446744073709551616},
    ]]
    out.append('{"id":1008,"big":1e400}')
    return out


def codes_lines(rng):
    """Partition values that look like integers in a string column, and two dates."""
    out = []
    for i in range(1, 241):
        d = {"id": i, "ts": rng.choice(["2026-11-24T10:00:00Z", "2026-11-25T23:59:59+05:00",
                                        "2026-11-25T23:30:00-01:00"]),
             "code": rng.choice(["200", "404", "007", "0"]), "n": rng.randint(0, 9)}
        out.append(d)
    out[4]["code"] = ""
    out[5]["code"] = None
    out[6]["ts"] = None
    return [json.dumps(d) for d in out]


def gen(out_dir):
    rng = random.Random(SEED)
    schema = schema_lines(rng)
    rng.shuffle(schema)
    os.makedirs(os.path.join(out_dir, "schema-in"), exist_ok=True)
    files = 6
    per = (len(schema) + files - 1) // files
    for k in range(files):
        part = schema[k * per:(k + 1) * per]
        with open(os.path.join(out_dir, "schema-in", f"part-{k}.ndjson"), "wb") as f:
            for j, (line, _) in enumerate(part):
                end = "\r\n" if j % 17 == 5 else "\n"
                if j % 23 == 11:
                    end += "\n"
                f.write((line + end).encode("utf-8"))
    infer = infer_lines(rng)
    os.makedirs(os.path.join(out_dir, "infer-in"), exist_ok=True)
    with open(os.path.join(out_dir, "infer-in", "infer.ndjson"), "w", encoding="utf-8") as f:
        f.write("\n".join(infer) + "\n")
    codes = codes_lines(rng)
    os.makedirs(os.path.join(out_dir, "codes-in"), exist_ok=True)
    with open(os.path.join(out_dir, "codes-in", "codes.ndjson"), "w", encoding="utf-8") as f:
        f.write("\n".join(codes) + "\n")
    with open(os.path.join(out_dir, "intent.json"), "w", encoding="utf-8") as f:
        json.dump({"schema": {line: dead for line, dead in schema if dead}}, f,
                  ensure_ascii=True, indent=0)
    dead = sum(1 for _, d in schema if d)
    print(f"cases: {len(schema) - dead} records and {dead} bad ones in {files} files "
          f"(schema-in), {len(infer)} (infer-in), {len(codes)} (codes-in)")


def input_lines(paths):
    """The non-blank lines of the input files, in pinflow's order (each spec's files by name)."""
    lines = []
    for p in paths:
        names = sorted(glob.glob(os.path.join(p, "*"))) if os.path.isdir(p) else [p]
        for name in names:
            with open(name, encoding="utf-8") as f:
                for line in f.read().split("\n"):
                    line = line.rstrip("\r")
                    if line.strip():
                        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------
# Reading and comparing. (numpy, pyarrow and DuckDB are imported here: `gen` needs none.)

def _readers():
    global np, pa, pc, pq, ds, duckdb
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq


ARROW = {"int64": "int64", "float64": "double", "bool": "bool", "string": "string",
         "dict": "dictionary<values=string, indices=int32, ordered=0>",
         "timestamp": "timestamp[us, tz=UTC]", "list<float64>": "list<double>",
         "list<int64>": "list<int64>"}
DUCK = {"int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR",
        "dict": "VARCHAR", "timestamp": "TIMESTAMP WITH TIME ZONE", "list<float64>": "DOUBLE[]",
        "list<int64>": "BIGINT[]"}
PARQUET = {"int64": ("INT64", None), "float64": ("DOUBLE", None), "bool": ("BOOLEAN", None),
           "string": ("BYTE_ARRAY", "String"), "dict": ("BYTE_ARRAY", "String"),
           "timestamp": ("INT64", "Timestamp"), "list<float64>": ("DOUBLE", None),
           "list<int64>": ("INT64", None)}


def arrow_name(t):
    """An Arrow type as ARROW writes it (list element names ignored)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{t.value_type}>"
    return str(t)


def values_of(table, name):
    """A column as one array: dictionaries decoded, timestamps as int64 µs, plain strings."""
    col = table.column(name)
    chunks = []
    for c in col.chunks:
        if pa.types.is_dictionary(c.type):
            c = c.cast(c.type.value_type)
        chunks.append(c)
    if chunks:
        arr = pa.concat_arrays(chunks)
    else:
        t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        arr = pa.array([], type=t)
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    if pa.types.is_large_string(arr.type) or str(arr.type) == "string_view":
        arr = arr.cast(pa.string())
    return arr


def valid(arr):
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def bits(arr):
    vals = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return vals.view(np.uint64)


def diff_mask(a, b):
    """Rows where two arrays differ: validity, value (floats bit for bit), list lengths and
    elements."""
    va, vb = valid(a), valid(b)
    bad = va != vb
    if pa.types.is_list(a.type) or pa.types.is_large_list(a.type):
        la = pc.list_value_length(a).fill_null(-1).to_numpy(zero_copy_only=False)
        lb = pc.list_value_length(b).fill_null(-1).to_numpy(zero_copy_only=False)
        bad |= la != lb
        if not bad.any():
            ea, eb = pc.list_flatten(a), pc.list_flatten(b)
            ebad = diff_mask(ea, eb)
            if ebad.any():
                parents = pc.list_parent_indices(a).to_numpy(zero_copy_only=False)
                bad[np.unique(parents[ebad])] = True
        return bad
    if pa.types.is_floating(a.type):
        return bad | (va & vb & (bits(a) != bits(b.cast(a.type))))
    if b.type != a.type:
        b = b.cast(a.type)
    eq = pc.equal(a, b).fill_null(True).to_numpy(zero_copy_only=False)
    return bad | ~np.asarray(eq, dtype=bool)


def show(v):
    if isinstance(v, float):
        return f"{v!r} (0x{struct.unpack('<Q', struct.pack('<d', v))[0]:016x})"
    if isinstance(v, str) and len(v) > 80:
        return repr(v[:80]) + f"... ({len(v)} chars)"
    if isinstance(v, list) and len(v) > 8:
        return repr(v[:8])[:-1] + f", ... ({len(v)} elements)]"
    return repr(v)


def compare_engines(label, left, right, fails, names=("pyarrow", "DuckDB")):
    """Every cell of two tables sorted by id. Returns (cells, list elements) compared."""
    if left.num_rows != right.num_rows:
        fails.add(label, "row count", detail=f"{names[0]} {left.num_rows}, "
                  f"{names[1]} {right.num_rows}")
        return 0, 0
    if left.schema.names != right.schema.names:
        fails.add(label, "column names", detail=f"{names[0]} {left.schema.names}, "
                  f"{names[1]} {right.schema.names}")
    ids = values_of(left, "id").to_pylist()
    cells = elements = 0
    for name in left.schema.names:
        if name not in right.schema.names:
            continue
        a, b = values_of(left, name), values_of(right, name)
        bad = diff_mask(a, b)
        for r in np.flatnonzero(bad)[:MAX_REPORTED]:
            r = int(r)
            fails.add(label, f"{names[0]} and {names[1]} differ", f"{r} (id={ids[r]})", name,
                      f"{names[0]} {show(a[r].as_py())}, {names[1]} {show(b[r].as_py())}")
        cells += len(a)
        if pa.types.is_list(a.type):
            elements += len(pc.list_flatten(a))
    return cells, elements


def same_json(a, b):
    """Equal as JSON values, strictly: same types (int is not float), floats bit for bit."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return a == b


def first_json_diff(got, want, where=""):
    if type(got) is dict and type(want) is dict:
        for k in list(want) + [k for k in got if k not in want]:
            if k not in got:
                return f"{where}{k!r} missing (input {show(want[k])})"
            if k not in want:
                return f"{where}{k!r} not in the input (file {show(got[k])})"
            if not same_json(got[k], want[k]):
                return first_json_diff(got[k], want[k], f"{where}{k!r}: ")
    if type(got) is list and type(want) is list and len(got) == len(want):
        for k, (x, y) in enumerate(zip(got, want)):
            if not same_json(x, y):
                return first_json_diff(x, y, f"{where}[{k}]: ")
    return f"{where}file {show(got)}, input {show(want)}"


class Expected:
    """What the model makes of the input lines: rows by id, dead letters by line."""

    def __init__(self, model, lines, intent=None, fails=None, label=""):
        """`intent`: {line: field} of the lines the generator meant as dead letters."""
        self.model = model
        self.rows = {}
        self.dead = {}
        self.lines = lines
        for line in lines:
            try:
                row = model.row(line)
            except Dead as e:
                self.dead[line] = e.field
                got = e.field
            else:
                got = None
                if row.get("id") in self.rows:
                    raise ValueError(f"two input rows with id {row.get('id')}")
                self.rows[row.get("id")] = row
            if intent is not None and fails is not None and intent.get(line) != got:
                fails.add(label, "the check's model and the generator disagree",
                          detail=f"{line[:100]}: generator {intent[line]!r}, model {got!r}")


def compare_model(label, table, exp, columns, fails):
    """Every row of `table` (sorted by id) equals the model's row; every row once."""
    ids = values_of(table, "id").to_pylist()
    got = {c: values_of(table, c).to_pylist() for c in columns}
    seen = set()
    extra_rows = 0
    for r, i in enumerate(ids):
        if i in seen:
            fails.add(label, "row written twice", f"{r} (id={i})")
            continue
        seen.add(i)
        want = exp.rows.get(i)
        if want is None:
            fails.add(label, "row that is not in the input (or was to be a dead letter)",
                      f"{r} (id={i})")
            continue
        for c in columns:
            g, w = got[c][r], want[c]
            if c == "_extra" and g is not None:
                extra_rows += 1
                try:
                    g = json.loads(g)
                except ValueError as e:
                    fails.add(label, "_extra is not JSON", f"{r} (id={i})", c, f"{e}: {show(g)}")
                    continue
            if not same_json(g, w):
                fails.add(label, "value differs from the input", f"{r} (id={i})", c,
                          first_json_diff(g, w) if c == "_extra" else
                          f"file {show(g)}, input {show(w)}")
    missing = [i for i in exp.rows if i not in seen]
    for i in missing[:MAX_REPORTED]:
        fails.add(label, "input row not in the output", detail=f"id={i}")
    return len(seen), extra_rows


def check_dead_letters(label, paths, exp, fails):
    letters = []
    for p in paths:
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                letters += [json.loads(line) for line in f if line.strip()]
    by_excerpt = {}
    for d in letters:
        by_excerpt.setdefault((d.get("excerpt") or "").rstrip("\r"), []).append(d)
    for line, field in exp.dead.items():
        found = by_excerpt.pop(line, [])
        if len(found) != 1:
            fails.add(label, f"bad record dead-lettered {len(found)} times (want 1)",
                      detail=line[:200])
        else:
            reason = found[0].get("reason", "")
            want = "invalid JSON" if field == INVALID_JSON else f"field `{field}`"
            if found[0].get("kind") != "record" or want not in reason:
                fails.add(label, "dead letter reason", detail=f"{line[:120]}: "
                          f"{reason!r} does not say {want!r}")
    for excerpt, extra in by_excerpt.items():
        fails.add(label, f"unexpected dead letter ({len(extra)})", detail=str(extra[0])[:300])
    return len(letters)


# ---------------------------------------------------------------------------------------------
# Statistics.

DUCK_STAT = {"count": "len({c})", "sum": "list_sum({c})", "mean": "list_avg({c})",
             "variance": "TRY(list_var_samp({c}))", "stddev": "TRY(list_stddev_samp({c}))",
             "min": "list_min({c})", "max": "list_max({c})",
             "quantile": "list_aggregate({c}, 'quantile_cont', '{q!r}'::DOUBLE)"}


def exact_quantile(sorted_vals, q):
    """Linear interpolation between the closest ranks at h = (n - 1)·q computed in f64 (as
    pinflow, numpy and DuckDB do), the rest exact, rounded once; and the two ranks."""
    n = len(sorted_vals)
    h = (n - 1) * min(max(q, 0.0), 1.0)
    lo, hi = math.floor(h), math.ceil(h)
    a, b = Fraction(sorted_vals[lo]), Fraction(sorted_vals[hi])
    return float(a + (b - a) * Fraction(h - lo)), sorted_vals[lo], sorted_vals[hi]


def exact_moments(vals):
    """(sum, mean, variance or None) of exact values (ints or floats), each rounded once."""
    fr = [Fraction(x) for x in vals]
    n = len(fr)
    s = sum(fr)
    mean = s / n
    var = sum((x - mean) ** 2 for x in fr) / (n - 1) if n >= 2 else None
    return float(s), float(mean), (None if var is None else float(var)), var


def exact_stat(kind, xs, q):
    """The exact value of a statistic of exact numbers: a Fraction (a float for stddev)."""
    fr = sorted(Fraction(x) for x in xs)
    n = len(fr)
    if kind in ("min", "max"):
        return fr[0] if kind == "min" else fr[-1]
    if kind == "quantile":
        h = (n - 1) * min(max(q, 0.0), 1.0)
        lo, hi = math.floor(h), math.ceil(h)
        return fr[lo] + (fr[hi] - fr[lo]) * Fraction(h - lo)
    s = sum(fr)
    if kind == "sum":
        return s
    mean = s / n
    if kind == "mean":
        return mean
    var = sum((x - mean) ** 2 for x in fr) / (n - 1)
    return var if kind == "variance" else math.sqrt(var)


def fast_moments(vals, H):
    """math.fsum references for float lists (exact rationals where fsum overflows)."""
    s = math.fsum(vals)
    mean, var = H.fsum_stats(vals)
    return s, mean, var


def check_stats(label, table, con, src, stats, list_types, fails, H):
    """Every statistic column of `table` (sorted by id) against DuckDB, numpy and an exact
    reference; nulls exactly where pinflow's rules say. `src` is DuckDB's FROM clause."""
    summary = {"stat_cells": 0, "maxrel": {}, "duck_exact_q": 0, "duck_q": 0, "known": [],
               "int_exact": 0}
    ids = values_of(table, "id").to_pylist()
    exprs, cols = [], []
    for col, ops in stats:
        for kind, suffix, q in ops:
            exprs.append(DUCK_STAT[kind].format(c=f'"{col}"', q=q))
            cols.append((col, kind, suffix, q))
    duck = con.execute(f"SELECT id, {', '.join(exprs)} FROM {src} ORDER BY id").fetchall()
    if [r[0] for r in duck] != ids:
        fails.add(label, "DuckDB's ids differ from pyarrow's (statistics query)")
        return summary
    lists = {col: values_of(table, col).to_pylist() for col, _ in stats}
    got = {f"{col}_{suffix}": values_of(table, f"{col}_{suffix}").to_pylist()
           for col, _, suffix, _ in cols}
    worst = summary["maxrel"]

    def rel(g, w):
        if g == w:
            return 0.0
        return abs(g - w) / max(abs(g), abs(w))

    for r, rid in enumerate(ids):
        for k, (col, kind, suffix, q) in enumerate(cols):
            name = f"{col}_{suffix}"
            g = got[name][r]
            xs = lists[col][r]
            n = None if xs is None else len(xs)
            want_value = xs is not None and (kind == "count" or n >= 1) and \
                (kind not in ("variance", "stddev") or n >= 2)
            summary["stat_cells"] += 1
            where = f"{r} (id={rid})"
            if (g is not None) != want_value:
                fails.add(label, "null rule", where, name,
                          f"pinflow {'value ' + show(g) if g is not None else 'null'}, expected "
                          f"{'a value' if want_value else 'null'} ({col} has "
                          f"{'no list' if xs is None else f'{n} values'})")
                continue
            d = duck[r][k + 1]
            if g is None:
                if d is not None and not (kind == "sum" and n == 0):
                    fails.note(f"NOTE {label}: DuckDB has {show(d)} where pinflow's {name} is "
                               f"null, e.g. row {where}")
                continue
            if kind == "count":
                if g != n or d != n:
                    fails.add(label, "count", where, name, f"pinflow {g}, DuckDB {d}, list {n}")
                continue
            ints = list_types[col] == "list<int64>"
            fv = [float(x) for x in xs]  # pinflow's own conversion of integers (i as f64)
            fl = np.asarray(fv, dtype=np.float64)
            abs_sum = math.fsum(abs(x) for x in fv)
            big = ints and any(abs(x) > TWO53 for x in xs)
            bitexact = False  # the reference is pinflow's own rounding: equal bit for bit
            eng_floor = None  # the engines' tolerance floor where it is not pinflow's
            if ints and kind in ("min", "max"):
                # Int64 columns with the exact extreme, past 2^53 too.
                if type(g) is not int:
                    fails.add(label, f"{kind} of a list<int64> is not an integer", where, name,
                              f"pinflow {show(g)}")
                    continue
                ref = (min if kind == "min" else max)(xs)
                floor = 0.0
                arr = np.asarray(xs, dtype=np.int64)
                refs = {"numpy": int(arr.min() if kind == "min" else arr.max()), "DuckDB": d}
                summary["int_exact"] += 1
            elif ints and kind in ("sum", "mean"):
                # The exact (128-bit) sum rounded once to f64; the mean is that f64 / n.
                total = sum(xs)
                ref = float(total) if kind == "sum" else float(total) / n
                bitexact = True
                floor = 0.0
                eng_floor = {"sum": 4 * n * EPS * abs_sum, "mean": 4 * EPS * abs_sum}[kind] \
                    + 5e-324
                refs = {"DuckDB": d}  # DuckDB sums BIGINT in HUGEINT, exactly
                if not big:  # numpy: in f64, exact here
                    with np.errstate(all="ignore"):
                        refs["numpy"] = float(np.sum(fl) if kind == "sum" else np.mean(fl))
                summary["int_exact"] += 1
            elif kind in ("sum", "mean", "variance", "stddev"):
                # (For a list<int64>: variance and stddev of the values as f64.)
                if ints or n <= 4:
                    s, mean, var, _ = exact_moments(fv)
                else:
                    s, mean, var = fast_moments(fv, H)
                ref = {"sum": s, "mean": mean, "variance": var,
                       "stddev": None if var is None else math.sqrt(var)}[kind]
                floor = {"sum": 4 * n * EPS * abs_sum, "mean": 4 * EPS * abs_sum}.get(kind,
                                                                                       5e-324)
                with np.errstate(all="ignore"):
                    npv = {"sum": np.sum(fl), "mean": np.mean(fl),
                           "variance": np.var(fl, ddof=1) if n >= 2 else None,
                           "stddev": np.std(fl, ddof=1) if n >= 2 else None}[kind]
                refs = {"numpy": None if npv is None else float(npv), "DuckDB": d}
                if kind in ("variance", "stddev") and var:
                    kappa2 = 1 + mean * mean / var
                    if n * EPS * kappa2 > 1e-10:  # ill-conditioned: the exact reference only
                        refs = {}
                        summary["ill"] = summary.get("ill", 0) + 1
            elif kind in ("min", "max"):
                ref = float((min if kind == "min" else max)(xs))
                floor = 0.0
                refs = {"numpy": float(np.min(fl) if kind == "min" else np.max(fl)),
                        "DuckDB": d}
            else:  # quantile (for a list<int64>: of the values as f64)
                ref, a, b = exact_quantile(sorted(fv), q)
                floor = 4 * EPS * max(abs(float(a)), abs(float(b))) + 5e-324
                refs = {"numpy": float(np.quantile(fl, q, method="linear")), "DuckDB": d}
                summary["duck_q"] += 1
                if d is not None and struct.pack("<d", float(d)) == struct.pack("<d", g):
                    summary["duck_exact_q"] += 1
                for who, v in (("pinflow", g), ("DuckDB", d), ("numpy", refs["numpy"])):
                    if v is not None and float(v) == ref:
                        summary[f"rounded_{who}"] = summary.get(f"rounded_{who}", 0) + 1
            # The exact (or correctly rounded fsum) reference.
            if bitexact:
                ok = struct.pack("<d", g) == struct.pack("<d", ref)
            elif floor == 0.0:
                ok = g == ref  # == so that -0.0 and 0.0 agree, as in every engine's min/max
            else:
                ok = abs(g - ref) <= 1e-9 * abs(ref) + floor
            if not ok:
                what = ("the exact sum rounded once" + (" / n" if kind == "mean" else "")
                        if bitexact else "the exact value")
                fails.add(label, f"{kind} differs from {what}", where, name,
                          f"pinflow {show(g)}, exact {show(ref)} (relative error "
                          f"{rel(g, ref):.3g}, {n} values)")
                continue
            if big and kind in ("variance", "stddev", "quantile"):
                # Computed on the values as f64, as docs/usage.md says: past 2^53 those of the
                # rounded values. Reported (KNOWN) with the integers' exact value.
                exact = exact_stat(kind, xs, q)
                if kind == "quantile":
                    differs = Fraction(g) != exact
                else:
                    differs = abs(g - float(exact)) > 1e-9 * abs(float(exact))
                if differs:
                    summary["known"].append((rid, name, g, exact, d))
            if kind == "quantile":  # error in units of ε·max(|lower rank|, |upper rank|)
                scale = EPS * max(abs(float(a)), abs(float(b)))
                if scale:
                    summary["q_eps"] = max(summary.get("q_eps", 0.0), abs(g - ref) / scale)
            elif floor and abs(g - ref) > 1e-9 * abs(ref):
                # Within the summation-error floor only (cancellation: Σ|x| ≫ |Σx|).
                summary["floored"] = summary.get("floored", 0) + 1
                if len(summary.setdefault("floored_examples", [])) < 3:
                    summary["floored_examples"].append(f"id={rid} {name} {g!r} (exact {ref!r})")
            else:
                worst[kind] = max(worst.get(kind, 0.0), rel(g, ref))
            tol = floor if eng_floor is None else eng_floor
            for engine, w in refs.items():
                if w is None:
                    fails.add(label, f"{engine} has no {kind}", where, name,
                              f"pinflow {show(g)}")
                    continue
                if type(g) is int:
                    ok = type(w) is int and w == g
                else:
                    wf = float(w)
                    ok = g == wf if tol == 0.0 else abs(g - wf) <= 1e-9 * abs(wf) + tol
                if not ok:
                    fails.add(label, f"{kind} differs from {engine}", where, name,
                              f"pinflow {show(g)}, {engine} {show(w)} (relative error "
                              f"{rel(g, float(w)):.3g}, {n} values)")
    return summary


# ---------------------------------------------------------------------------------------------
# The cases.

def layout_columns(fields, unknown, stats):
    """[(column, type)] in pinflow's order: the fields, `_extra`, then the statistics: `count`
    Int64, `min` and `max` of a `list<int64>` Int64 (exact), everything else Float64."""
    cols = [(f.column, f.ty) for f in fields]
    if unknown == "extra":
        cols.append(("_extra", "string"))
    list_type = {f.column: f.ty for f in fields}
    list_type.update({".".join(f.path): f.ty for f in fields})
    for col, ops in stats:
        for kind, suffix, _ in ops:
            ints = kind == "count" or (kind in ("min", "max") and
                                       list_type.get(col) == "list<int64>")
            cols.append((f"{col}_{suffix}", "int64" if ints else "float64"))
    return cols


def check_layout(label, pf, table, described, cols, fails):
    names = [c for c, _ in cols]
    if table.schema.names != names:
        fails.add(label, "pyarrow column names", detail=f"{table.schema.names} != {names}")
    dd_names = [r[0] for r in described]
    if dd_names != names:
        fails.add(label, "DuckDB column names", detail=f"{dd_names} != {names}")
    dd = {r[0]: r[1] for r in described}
    leaves = {}
    for i in range(len(pf.schema)):
        c = pf.schema.column(i)
        leaves.setdefault(c.path.split(".")[0], []).append(c)
    for name, ty in cols:
        if name in table.schema.names:
            got = arrow_name(table.schema.field(name).type)
            if got != ARROW[ty]:
                fails.add(label, "pyarrow type", column=name, detail=f"{got}, expected {ARROW[ty]}")
        if name in dd and dd[name] != DUCK[ty]:
            fails.add(label, "DuckDB type", column=name, detail=f"{dd[name]}, expected {DUCK[ty]}")
        lv = leaves.get(name, [])
        if len(lv) != 1:
            fails.add(label, "Parquet leaf columns", column=name, detail=f"{len(lv)}, expected 1")
            continue
        c = lv[0]
        phys, logical = PARQUET[ty]
        lt = json.loads(c.logical_type.to_json()) if c.logical_type.type != "NONE" else {}
        if c.physical_type != phys or (logical and lt.get("Type") != logical):
            fails.add(label, "Parquet type", column=name,
                      detail=f"{c.physical_type} {lt}, expected {phys} {logical or ''}")
        if logical == "Timestamp" and (lt.get("timeUnit") != "microseconds" or
                                       lt.get("isAdjustedToUTC") is not True):
            fails.add(label, "Parquet logical type", column=name,
                      detail=f"{lt} is not Timestamp(µs, isAdjustedToUTC=true)")
        if c.max_repetition_level != (1 if ty.startswith("list") else 0):
            fails.add(label, "Parquet nesting", column=name,
                      detail=f"max repetition level {c.max_repetition_level}")


def sql_list(paths):
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def read_files(label, files, spec, fails, H, summary):
    """Reads each file with pyarrow (checking its metadata), and all of them with DuckDB.
    Returns (pyarrow table sorted by id, DuckDB table sorted by id, connection, DESCRIBE,
    first file's ParquetFile)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    tables, run_ids, groups, codecs = [], set(), 0, set()
    meta = {k: spec.get(k) for k in ("row_group_rows", "compression", "version", "source")}
    pf0 = None
    for f in files:
        pf = pq.ParquetFile(f)
        pf0 = pf0 or pf
        t = pq.read_table(f)
        tables.append(t)
        msum = {}
        H.check_metadata(f, pf, t, con, meta, fails, msum)
        run_ids.add(msum.get("run_id"))
        groups += msum.get("row_groups", 0)
        codecs.add(msum.get("codec"))
    con.execute(f"CREATE VIEW src AS SELECT * FROM read_parquet({sql_list(files)}, "
                "hive_partitioning = false)")
    dd = con.execute("SELECT * FROM src ORDER BY id").to_arrow_table()
    described = con.execute("DESCRIBE SELECT * FROM src").fetchall()
    table = pa.concat_tables(tables).sort_by("id") if tables else None
    if len(run_ids) != 1:
        fails.add(label, "pinflow.run_id is not one value in the files of one run",
                  detail=str(sorted(run_ids, key=str)))
    summary.update(files=len(files), row_groups=groups, codec="/".join(sorted(map(str, codecs))),
                   run_ids=run_ids)
    return table, dd, con, described, pf0


def check_output(label, files, exp, cols, stats, spec, fails, H, summary):
    """The rows, cells, statistics and dead letters of one run's files against the model."""
    table, dd, con, described, pf = read_files(label, files, spec, fails, H, summary)
    if table is None:
        fails.add(label, "no files")
        return None
    check_layout(label, pf, table, described, cols, fails)
    summary["rows"] = table.num_rows
    summary["cells"], summary["elements"] = compare_engines(label, table, dd, fails)
    if exp is not None:
        summary["matched"], summary["extra_rows"] = compare_model(
            label, table, exp, [c for c, _ in cols if c in exp.model.columns()], fails)
    if "_extra" in [c for c, _ in cols]:
        check_extra_in_duckdb(label, con, exp, fails, summary)
    list_types = dict(cols)
    if stats:
        st = check_stats(label, table, con, "src", stats, list_types, fails, H)
        summary.update(st)
    if spec.get("dead_letter") is not None and exp is not None:
        summary["dead"] = check_dead_letters(label, [spec["dead_letter"]], exp, fails)
    if len(files) == 1 and spec.get("filters"):
        summary["filters"] = H.check_pruned_reads(files[0], pq.read_table(files[0]), con,
                                                  fails, spec["filters"])
    return table


def check_extra_in_duckdb(label, con, exp, fails, summary):
    """DuckDB's JSON reader on `_extra`: valid JSON in every row, and the same value for every
    key as json.loads (which the row comparison used)."""
    rows = con.execute("SELECT id, json_valid(_extra), json_keys(_extra::JSON), _extra FROM src "
                       "WHERE _extra IS NOT NULL ORDER BY id").fetchall()
    dups = []
    for rid, ok, keys, text in rows:
        if not ok:
            fails.add(label, "DuckDB: _extra is not valid JSON", f"id={rid}", "_extra", show(text))
            continue
        seen = set()
        for k in keys:
            if k in seen:
                path = '$."' + k.replace('"', '\\"') + '"'
                d = con.execute("SELECT json_extract(_extra, ?)::VARCHAR FROM src WHERE id = ?",
                                [path, rid]).fetchone()[0]
                dups.append(f"id={rid} {text} (key {k!r}: DuckDB's _extra->'{path}' is {d}, "
                            f"json.loads gives {json.dumps(json.loads(text)[k])})")
            seen.add(k)
    if dups:
        shared_note(fails, ("dup", tuple(dups[:3])), label,
                    f"KNOWN _extra repeats a key when the record does (an unknown field given "
                    f"twice), and JSON readers pick different ones: {'; '.join(dups[:3])}; "
                    f"pinflow's columns take the last value of a repeated field")
    fields = {".".join(f.path) for f in exp.model.fields}
    ambiguous = [(i, k) for i, r in exp.rows.items() if r.get("_extra")
                 for k in r["_extra"] if k in fields]
    if ambiguous:
        shared_note(fails, ("dotted", ambiguous[0]), label,
                    f"NOTE a record with a literal dotted key that is also a field's path "
                    f"(id={ambiguous[0][0]}: key {ambiguous[0][1]!r}) keeps it in _extra under "
                    f"the same name as the nested path; _extra's dotted keys cannot tell the two "
                    f"apart")
    summary["extra_duckdb"] = len(rows)


def stats_text(s):
    parts = [f"{k} {s['maxrel'][k]:.1e}" for k in ("sum", "mean", "variance", "stddev")
             if k in s.get("maxrel", {})]
    text = f"{s.get('stat_cells', 0)} stats = DuckDB, numpy, exact (max rel. error " \
           f"{', '.join(parts)}"
    if "q_eps" in s:
        text += f"; pNN ≤ {s['q_eps']:.2f} ε·max|rank|, bit-equal to DuckDB in " \
                f"{s['duck_exact_q']}/{s['duck_q']}"
    if s.get("floored"):
        text += f"; {s['floored']} cancelling sums within 4·n·ε·Σ|x|"
    if s.get("int_exact"):
        text += f"; list<int64> min/max/sum/mean exact in {s['int_exact']}"
    return text + ")"


def note_percentiles(label, s, fails):
    if not s.get("duck_q"):
        return
    shared_note(fails, ("pNN",) + tuple(s.get(f"rounded_{w}", 0) for w in
                                        ("pinflow", "DuckDB", "numpy")), label,
                f"NOTE percentiles equal the correctly rounded interpolation between the "
                f"closest ranks in {s.get('rounded_pinflow', 0)} of {s['duck_q']} cells for "
                f"pinflow, {s.get('rounded_DuckDB', 0)} for DuckDB's quantile_cont and "
                f"{s.get('rounded_numpy', 0)} for numpy's quantile(method='linear'); all within "
                f"{s.get('q_eps', 0):.2f} ε·max(|lower rank|, |upper rank|) of it")


_SHARED = {}


def shared_note(fails, key, label, text):
    """One note for the same finding in several cases (same input, other outputs): the labels
    are listed in front of it."""
    labels, old = _SHARED.get(key, ([], None))
    if label not in labels:
        labels.append(label)
    kind, _, rest = text.partition(" ")
    new = f"{kind} {', '.join(labels)}: {rest}"
    if old in fails.notes:
        fails.notes[fails.notes.index(old)] = new
    else:
        fails.notes.append(new)
    _SHARED[key] = (labels, new)


def report_known_stats(label, summary, fails):
    rows = summary.get("known", [])
    if not rows:
        return
    shown = "; ".join(f"id={rid} {name} {show(g)} (exact {exact}, DuckDB {d})"
                      for rid, name, g, exact, d in rows[:6])
    shared_note(fails, ("int53", shown), label,
                f"KNOWN {len(rows)} variances, standard deviations or percentiles of "
                f"list<int64> values past 2^53 differ from the integers' exact value: they are "
                f"computed on the values as f64 (README), so they are those of the rounded "
                f"values (min, max, sum and mean are exact): {shown}")


def case_schema(spec, fails, tables, H):
    label = spec["label"]
    fields = [Field(f) for f in spec["fields"]]
    unknown = spec.get("unknown", "ignore")
    stats = [parse_stats(s) for s in spec.get("stats", [])]
    model = Model(fields, unknown)
    intent = None
    if spec.get("intent"):
        with open(spec["intent"], encoding="utf-8") as f:
            intent = json.load(f)[spec.get("intent_key", "schema")]
    exp = Expected(model, input_lines(spec["inputs"]), intent, fails, label)
    cols = layout_columns(fields, unknown, stats)
    summary = {}
    table = check_output(label, [spec["path"]], exp, cols, stats, spec, fails, H, summary)
    tables[label] = table
    report_known_stats(label, summary, fails)
    dict_cols = [f.column for f in fields if f.ty == "dict"]
    n_stats = len(cols) - len(fields) - (unknown == "extra")
    summary["line"] = (
        f"{len(fields)} fields ({len({f.ty for f in fields})} types)"
        f"{' + _extra' if unknown == 'extra' else ''} + {n_stats} stats; "
        f"{summary.get('matched', 0)} rows = input ({summary.get('extra_rows', 0)} _extra); "
        f"{summary.get('dead', 0)} dead letters; {', '.join(dict_cols)}: pyarrow dictionary, "
        f"DuckDB VARCHAR; {stats_text(summary)}")
    note_percentiles(label, summary, fails)
    return summary


INFERRED = re.compile(r"schema inferred records=(\d+) columns=(.*)$")


def case_infer(spec, fails, tables, H):
    label = spec["label"]
    lines = input_lines(spec["inputs"])
    sample = [ln for ln in lines if ln.lstrip().startswith("{")][:spec.get("sample", 1000)]
    odd = set()
    fields, left_out = infer_fields(sample, odd)
    unknown = spec.get("unknown", "ignore")
    stats = [parse_stats("values")] if any(
        f.column == "values" and f.ty.startswith("list") for f in fields) else []
    want = [repr(f) for f in fields]
    logged = None
    with open(spec["log"], encoding="utf-8") as f:
        for ln in f:
            m = INFERRED.search(ln.rstrip())
            if m:
                logged = (int(m.group(1)), m.group(2).split(", "))
    if logged is None:
        fails.add(label, "no `schema inferred` line in the log", detail=spec["log"])
    elif logged[1] != want or logged[0] != len(sample):
        fails.add(label, "inferred schema (log) differs from README's rules",
                  detail=f"pinflow records={logged[0]} {logged[1]}, README rules "
                         f"records={len(sample)} {want}")
    warned = []
    with open(spec["log"], encoding="utf-8") as f:
        for ln in f:
            m = re.search(r"schema inference: .* field=(\S+)", ln)
            if m:
                warned.append(m.group(1))
    if sorted(warned) != sorted(left_out):
        fails.add(label, "fields left out with a warning",
                  detail=f"pinflow {warned}, README rules {left_out}")
    model = Model(fields, unknown)
    exp = Expected(model, lines)
    # The schema inferred from a sample takes every record of it: a path left out goes with
    # everything below it, so no record of the sample can be a dead letter.
    # One class is known: a path seen as an object and as an array of non-numbers is kept as an
    # object (its fields are columns), where docs/usage.md says arrays of non-numbers are left
    # out; the sample's records with the array are then dead letters (`expected an object`).
    for line in sample:
        if line not in exp.dead:
            continue
        field = re.sub(r"\[\d+\]", "", exp.dead[line])
        if field in odd:
            shared_note(fails, ("obj-array", field), label,
                        f"KNOWN a path seen as an object and as an array of non-numbers "
                        f"(`{field}`) is inferred as an object, its fields columns, instead of "
                        f"being left out as README says of arrays of non-numbers, so the "
                        f"sample's own record with the array is a dead letter (field "
                        f"`{exp.dead[line]}`): {line[:120]}...")
        else:
            fails.add(label, "README's rules dead-letter a record of the inference sample",
                      detail=f"{line[:160]}... -> field `{exp.dead[line]}`")
    cols = layout_columns(fields, unknown, stats)
    summary = {}
    table = check_output(label, [spec["path"]], exp, cols, stats, spec, fails, H, summary)
    tables[label] = table
    late = [ln for ln in lines[len(sample):]]
    late_dead = [exp.dead[ln] for ln in late if ln in exp.dead]
    fails.note(f"NOTE {label}: inferred from {len(sample)} records: {', '.join(want)}; left "
               f"out (mixed or not numbers): {', '.join(left_out)}")
    summary["line"] = (f"{len(fields)} columns as README's rules infer (NOTE below); "
                       f"{summary.get('matched', 0)} rows = input; after the sample "
                       f"{len(late_dead)} dead letters ({', '.join(late_dead)}), "
                       f"{len(late) - len(late_dead)} rows; "
                       f"{stats_text(summary) if stats else 'no statistics'}")
    return summary


# ---------------------------------------------------------------------------------------------
# Hive partitions.

HIVE_DEFAULT = "__HIVE_DEFAULT_PARTITION__"
HIVE_ESCAPED = set('"#%\'*/:=?\\{[]^<>|')


def hive_escape(v):
    return "".join(f"%{ord(c):02X}" if ord(c) < 0x20 or ord(c) == 0x7F or c in HIVE_ESCAPED
                   else c for c in v)


def hive_segment(v):
    if v is None or v == "":
        return HIVE_DEFAULT
    return str(v) if isinstance(v, int) else hive_escape(v)


def utc_date(us):
    if us is None:
        return None
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=us // 86_400_000_000)).isoformat()


def engine_value(v):
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def compare_partition_values(label, engine, how, eng, files_t, names, fails, classes):
    """The engine's partition columns against each row's own values (tables sorted by id)."""
    if eng.num_rows != files_t.num_rows:
        fails.add(label, f"{engine} ({how}) reads {eng.num_rows} rows, the files hold "
                  f"{files_t.num_rows}")
        return
    ids = values_of(files_t, "id").to_pylist()
    if eng.column("id").to_pylist() != ids:
        fails.add(label, f"{engine} ({how}): not every row once")
        return
    ts = values_of(files_t, "ts").to_pylist() if "ts" in files_t.schema.names else None
    for name in names:
        got = [engine_value(v) for v in eng.column(name).to_pylist()]
        if name == "date" and "date" not in files_t.schema.names:
            own = [utc_date(t) for t in ts]
        else:
            own = values_of(files_t, name).to_pylist()
        bad = 0
        for r, (g, w) in enumerate(zip(got, own)):
            if g == w and type(g) is type(w):
                continue
            if g is None and w in ("", HIVE_DEFAULT):
                key = (engine, name, repr(w))
                classes.setdefault(key, []).append(ids[r])
                continue
            bad += 1
            if bad <= MAX_REPORTED:
                fails.add(label, f"{engine} ({how}) reads a partition value that is not the "
                          f"row's own", f"{r} (id={ids[r]})", name,
                          f"{engine} {show(g)}, in the file {show(w)}")


def filter_consistency(label, engine, count_filter, values, name, fails):
    """A filter on a partition column (pruned by directory) counts what the scan shows."""
    n = 0
    for v, want in values.items():
        got = count_filter(name, v)
        n += 1
        if got != want:
            fails.add(label, f"{engine}: filter {name} {'IS NULL' if v is None else '= ' + repr(v)}"
                      f" counts {got} rows, its own scan shows {want}")
    return n


def case_hive(spec, fails, tables, H):
    label = spec["label"]
    root = spec["dir"]
    names = spec["partition_by"]
    files = sorted(glob.glob(os.path.join(glob.escape(root), "**", "*.parquet"), recursive=True))
    everything = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    for p in everything:
        if not p.endswith(".parquet") or os.path.basename(p).startswith("."):
            fails.add(label, "stray file in the dataset", detail=p)
    # 1. Every row is in the directory its own values name.
    misplaced = 0
    parts = set()
    for f in files:
        segs = os.path.relpath(f, root).split(os.sep)[:-1]
        parts.add(tuple(segs))
        if [s.split("=", 1)[0] for s in segs] != names:
            fails.add(label, "directory levels", detail=f"{f}: {segs}, expected {names}")
            continue
        t = pq.read_table(f)
        for seg, name in zip(segs, names):
            if name == "date" and "date" not in t.schema.names:
                vals = [hive_segment(utc_date(x)) for x in values_of(t, "ts").to_pylist()]
            else:
                vals = [hive_segment(x) for x in values_of(t, name).to_pylist()]
            want = seg.split("=", 1)[1]
            for k, v in enumerate(vals):
                if v != want:
                    misplaced += 1
                    if misplaced <= MAX_REPORTED:
                        fails.add(label, "row in the wrong partition directory", k, name,
                                  f"{f}: row's value makes {v!r}, directory says {want!r}")
    # 2. The files' own content: pyarrow per file and DuckDB over all, against the model.
    summary = {}
    exp = None
    cols = None
    stats = []
    if spec.get("fields"):
        fields = [Field(f) for f in spec["fields"]]
        unknown = spec.get("unknown", "ignore")
        stats = [parse_stats(s) for s in spec.get("stats", [])]
        exp = Expected(Model(fields, unknown), input_lines(spec["inputs"]))
        cols = layout_columns(fields, unknown, stats)
    files_t, dd, con, described, pf = read_files(label, files, spec, fails, H, summary)
    summary["rows"] = files_t.num_rows
    summary["cells"], summary["elements"] = compare_engines(label, files_t, dd, fails)
    if exp is not None:
        check_layout(label, pf, files_t, described, cols, fails)
        summary["matched"], _ = compare_model(label, files_t, exp,
                                              [c for c, _ in cols if c in exp.model.columns()],
                                              fails)
        if stats:
            summary.update(check_stats(label, files_t, con, "src", stats, dict(cols), fails, H))
    if spec.get("same_as"):
        other = tables.get(spec["same_as"])
        if other is None:
            fails.add(label, f"no {spec['same_as']} to compare with")
        else:
            compare_engines(label, files_t, other.sort_by("id"), fails,
                            names=(label, spec["same_as"]))
            summary["matched"] = files_t.num_rows
    # 3. The engines' Hive reads.
    classes = {}
    types = {}
    pa_how = "partitioning='hive'"
    try:
        dset = ds.dataset(root, format="parquet", partitioning="hive")
    except (pa.ArrowTypeError, pa.ArrowInvalid) as e:
        fschema = files_t.schema
        pschema = pa.schema([(n, fschema.field(n).type if n in fschema.names else pa.string())
                             for n in names])
        spelled = ", ".join(f"({n!r}, {t})" for n, t in zip(pschema.names, pschema.types))
        fails.note(f"KNOWN {label}: pyarrow.dataset(DIR, partitioning='hive') fails: "
                   f"{type(e).__name__}: {e} (pyarrow infers int32 for directory values that "
                   f"all look like integers and does not reconcile it with the column of the "
                   f"same name in the files); read instead with partitioning="
                   f"ds.partitioning(pa.schema([{spelled}]), flavor='hive')")
        pa_how = "explicit partitioning schema"
        dset = ds.dataset(root, format="parquet",
                          partitioning=ds.partitioning(pschema, flavor="hive"))
    pt = dset.to_table().sort_by("id")
    summary["pa_how"] = pa_how
    # The other columns, read through the dataset, are the files' own.
    others = [c for c in files_t.schema.names if c not in names]
    compare_engines(label, files_t.select(others), pt.select(others), fails,
                    names=("the files", f"pyarrow ({pa_how})"))
    for n in names:
        types.setdefault(n, {})["pyarrow"] = str(dset.schema.field(n).type)
    compare_partition_values(label, "pyarrow", pa_how, pt, files_t, names, fails, classes)
    pattern = os.path.join(root, "**", "*.parquet")
    dsrc = f"read_parquet('{pattern.replace(chr(39), chr(39) * 2)}', hive_partitioning = true)"
    dh = con.execute(f"SELECT * FROM {dsrc} ORDER BY id").to_arrow_table()
    compare_engines(label, files_t.select(others), dh.select(others), fails,
                    names=("the files", "DuckDB (hive_partitioning=true)"))
    for r in con.execute(f"DESCRIBE SELECT {', '.join(names)} FROM {dsrc}").fetchall():
        types.setdefault(r[0], {})["DuckDB"] = r[1]
    compare_partition_values(label, "DuckDB", "hive_partitioning=true", dh, files_t, names,
                             fails, classes)
    # Filters on partition columns (pruned by directory) agree with each engine's own scan.
    probes = 0
    for name in names:
        counts = {}
        for v in pt.column(name).to_pylist():
            counts[v] = counts.get(v, 0) + 1

        def pa_count(n, v):
            f = ds.field(n).is_null() if v is None else ds.field(n) == v
            return dset.count_rows(filter=f)

        probes += filter_consistency(label, "pyarrow", pa_count, counts, name, fails)
        counts = {}
        for v in dh.column(name).to_pylist():
            counts[v] = counts.get(v, 0) + 1

        def dd_count(n, v):
            if v is None:
                return con.execute(f"SELECT count(*) FROM {dsrc} WHERE {n} IS NULL").fetchone()[0]
            return con.execute(f"SELECT count(*) FROM {dsrc} WHERE {n} = ?", [v]).fetchone()[0]

        probes += filter_consistency(label, "DuckDB", dd_count, counts, name, fails)
    merged = {}
    for (engine, name, value), ids in sorted(classes.items()):
        merged.setdefault((name, value, tuple(ids)), []).append(engine)
    for (name, value, ids), engines in merged.items():
        fails.note(f"KNOWN {label}: {' and '.join(engines)} read {len(ids)} rows whose {name} "
                   f"is {value} in the file as NULL (directory {name}={HIVE_DEFAULT}; the "
                   f"directory's value replaces the file's own), so `{name} = {value}` finds "
                   f"none of them; ids {', '.join(map(str, ids[:4]))}"
                   f"{' ...' if len(ids) > 4 else ''}")
    summary["line"] = (
        f"{len(parts)} partitions {'/'.join(n + '=' for n in names)}: rows in their "
        f"directories, once; read as "
        + ", ".join(f"{n} {t.get('pyarrow')}/{t.get('DuckDB')}" for n, t in types.items())
        + (" (pyarrow: 'hive' fails, explicit schema)" if pa_how != "partitioning='hive'"
           else "")
        + f"; other columns = files; {probes} filters = scans"
        + (f"; {summary.get('matched', 0)} rows = input" if exp else "")
        + (f"; rows = {spec['same_as']}" if spec.get("same_as") else "")
        + ("; " + stats_text(summary) if stats else ""))
    note_percentiles(label, summary, fails)
    report_known_stats(label, summary, fails)
    return summary


# ---------------------------------------------------------------------------------------------
# Journal runs.

def log_numbers(path):
    text = open(path, encoding="utf-8").read()
    m = re.search(r"records\s+fetched (\d+) / written (\d+) / dead-lettered (\d+)", text)
    s = re.search(r"skipped\s+(\d+) already done", text)
    return (tuple(map(int, m.groups())) if m else None), (int(s.group(1)) if s else 0)


def case_journal(spec, fails, tables, H):
    label = spec["label"]
    root = spec["dir"]
    files = sorted(glob.glob(os.path.join(glob.escape(root), "*.parquet")))
    for p in os.listdir(root):
        if p.startswith("."):
            fails.add(label, "temporary file left", detail=p)
    with open(spec["journal"], encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    checkpoints = [e for e in entries if "checkpoint" in e]
    # Journal format 2: each committed file is [temporary, final, size].
    committed = sorted(f[1] for e in checkpoints for f in e.get("files", []))
    items = sum(len(str(e.get("items", "")).split(",")) for e in checkpoints if e.get("items"))
    if committed != sorted(os.path.basename(p) for p in files):
        fails.add(label, "files present are not the committed ones",
                  detail=f"journal {committed}, directory {[os.path.basename(p) for p in files]}")
    before = open(spec["files_before"]).read().split()
    after = open(spec["files_after"]).read().split()
    if before != after:
        fails.add(label, "the second run changed the files", detail=f"{before} -> {after}")
    first, _ = log_numbers(spec["first_log"])
    second, skipped = log_numbers(spec["second_log"])
    if second is None or second[1] != 0 or second[0] != 0:
        fails.add(label, "the second run wrote or fetched records", detail=str(second))
    if skipped != items or skipped == 0:
        fails.add(label, "the second run skipped a different number of items",
                  detail=f"skipped {skipped}, the journal commits {items}")
    fields = [Field(f) for f in spec["fields"]]
    unknown = spec.get("unknown", "ignore")
    stats = [parse_stats(s) for s in spec.get("stats", [])]
    exp = Expected(Model(fields, unknown), input_lines(spec["inputs"]))
    cols = layout_columns(fields, unknown, stats)
    summary = {}
    check_output(label, files, exp, cols, stats, spec, fails, H, summary)
    if first is not None and first[1] != len(exp.rows):
        fails.add(label, "first run's summary", detail=f"written {first[1]}, "
                  f"the input has {len(exp.rows)} rows")
    report_known_stats(label, summary, fails)
    summary["line"] = (f"{len(checkpoints)} checkpoints; rerun skipped {skipped} items, wrote "
                       f"nothing; {summary.get('matched', 0)} rows once = input; "
                       f"{summary.get('dead', 0)} dead letters once; {stats_text(summary)}")
    note_percentiles(label, summary, fails)
    return summary


def case_window(spec, fails, tables, H):
    import windows  # tools/interop/windows.py: time windows against DuckDB's
    return windows.case_window(spec, fails, tables, H)


CASES = {"schema": case_schema, "infer": case_infer, "hive": case_hive,
         "journal": case_journal, "window": case_window}


def check_case(spec, fails, tables, helpers):
    _readers()
    t0 = time.monotonic()
    before = len(fails.items)
    try:
        summary = CASES[spec["kind"]](spec, fails, tables, helpers)
    except Exception as e:  # a reader that cannot read at all is a result too
        import traceback
        traceback.print_exc()
        fails.add(spec["label"], f"the check raised {type(e).__name__}", detail=str(e)[:500])
        summary = {"line": "(failed)"}
    summary["label"] = spec["label"]
    summary["seconds"] = time.monotonic() - t0
    summary["mismatches"] = len(fails.items) - before
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.dir)


if __name__ == "__main__":
    sys.exit(main())

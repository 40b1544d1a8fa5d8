#!/usr/bin/env python3
"""Every id exactly once: reads the final Parquet files under a directory with pyarrow and with
DuckDB (readers independent of the parquet crate that wrote them) and counts, against the ids
0..N-1, the rows, duplicates, missing and unexpected ids. Used by tests/it/crash_points.rs.

    exactly_once.py DIR N

Final files are `*.parquet` whose name does not start with a dot (temporary files are hidden:
`.NAME.tmp-PID`). Prints one JSON object per reader on standard output:
{"reader": "pyarrow", "files": F, "rows": R, "duplicates": D, "missing": M, "unexpected": U}.
Exits 2 when a file cannot be read (a partial file under a final name).
"""

import collections
import json
import os
import sys

import duckdb
import pyarrow.parquet as pq


def final_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            if f.endswith(".parquet") and not f.startswith("."):
                out.append(os.path.join(d, f))
    return sorted(out)


def tally(reader, files, ids, n):
    counts = collections.Counter(ids)
    want = range(n)
    return {
        "reader": reader,
        "files": len(files),
        "rows": len(ids),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "missing": sum(1 for i in want if i not in counts),
        "unexpected": sum(1 for i in counts if not 0 <= i < n),
    }


def main():
    root, n = sys.argv[1], int(sys.argv[2])
    files = final_files(root)
    ids = []
    for f in files:
        try:
            ids.extend(pq.read_table(f, columns=["id"]).column("id").to_pylist())
        except Exception as e:  # a partial or corrupt file under a final name
            print(f"pyarrow cannot read {f}: {e}", file=sys.stderr)
            sys.exit(2)
    print(json.dumps(tally("pyarrow", files, ids, n)))
    ids = []
    if files:
        con = duckdb.connect()
        # hive_partitioning off: the id column comes from the file itself, never a path.
        rows = con.execute(
            "SELECT id FROM read_parquet(?, hive_partitioning = false)", [files]
        ).fetchall()
        ids = [r[0] for r in rows]
    print(json.dumps(tally("duckdb", files, ids, n)))


if __name__ == "__main__":
    main()

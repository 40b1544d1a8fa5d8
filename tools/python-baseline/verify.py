"""Check that the Python pipeline and pinflow did the same work: same rows, same statistics.

    verify.py PYTHON.parquet PINFLOW.parquet N

Reads both files with pyarrow, sorts by id, and checks: N rows each, ids 1..N, the same
service/level/host/ts, equal `values_count`, and mean/min/max/variance equal to a relative
1e-9 (pinflow's 8-lane two-pass kernel and Python's `statistics` round differently in the
last bits). Exits 1 on any difference, naming it.
"""

import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq


def load(path):
    t = pq.read_table(path)
    return t.take(pc.sort_indices(t, sort_keys=[("id", "ascending")]))


def main() -> int:
    py_path, pf_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    py, pf = load(py_path), load(pf_path)
    problems = []
    for name, t in (("python", py), ("pinflow", pf)):
        if t.num_rows != n:
            problems.append(f"{name}: {t.num_rows} rows, expected {n}")
        ids = t.column("id").to_numpy()
        if len(ids) == n and not np.array_equal(ids, np.arange(1, n + 1)):
            problems.append(f"{name}: ids are not exactly 1..{n}")
    if not problems:
        for col in ("service", "level", "host", "ts", "values_count"):
            if not py.column(col).equals(pf.column(col)):
                problems.append(f"column {col} differs")
        worst = 0.0
        for col in ("values_mean", "values_min", "values_max", "values_variance"):
            a = py.column(col).to_numpy()
            b = pf.column(col).to_numpy()
            rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
            worst = max(worst, float(rel.max()))
            if not np.allclose(a, b, rtol=1e-9, atol=0.0):
                problems.append(f"column {col} differs beyond 1e-9 (max rel {rel.max():.3g})")
    if problems:
        for p in problems:
            print(f"verify: {p}", file=sys.stderr)
        return 1
    mid = n // 2
    print(
        f"verified: {n} rows in each file, same ids/service/level/host/ts/values_count; "
        f"mean/min/max/variance agree to {worst:.1e} relative "
        f"(e.g. id {mid}: variance python {py.column('values_variance')[mid - 1].as_py():.12g}, "
        f"pinflow {pf.column('values_variance')[mid - 1].as_py():.12g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

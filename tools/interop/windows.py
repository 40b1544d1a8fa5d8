"""Interop check of time windows (issue 18): DuckDB computes the same windows from the same
input files, and every one of pinflow's window rows is compared with its row.

    windows.py gen DIR    write DIR/window-in/part-{0,1}.ndjson

The input: two files, the second continuing the first in event time (rotated logs), records
out of order by up to 1.5 s within a file, every event time distinct (so `first` and `last`
are well defined), some `latency_ms` null or missing. pinflow runs with
`--window-lateness 2s`, so no record is late and DuckDB, which has no lateness, must find the
same rows; a dead letter fails the check.

cases.py dispatches the manifest's "window" cases to case_window(), which checks:
- the columns and types: window_start and window_end (timestamp µs UTC), the key columns,
  count (int64), then <field>_<agg> in the order asked; `partial`, if there, all false;
- the same (window_start, keys) rows as DuckDB's GROUP BY over time_bucket (a hop shorter
  than the size: each record in size/hop windows, by a join with range()), each once;
- per row: window_end = window_start + size; count and <field>_count exactly; sum, mean and
  var (sample) within 1e-9 relative; min, max, first and last (by event time) exactly; pNN
  within 1 % (pinflow's stated sketch bound) of the exact order statistics
  x[floor(q(n-1))]..x[ceil(q(n-1))] of the window's values, from numpy, which DuckDB's
  quantile_cont must lie between as well.
"""

import argparse
import json
import math
import os
import random
import sys

SEED = 1818
BASE_US = 1_795_000_000_000_000  # a multiple of every window size used


def gen(out_dir):
    rng = random.Random(SEED)
    d = os.path.join(out_dir, "window-in")
    os.makedirs(d, exist_ok=True)
    used = set()
    slot = BASE_US
    n_total = 0
    for part in range(2):
        lines = []
        for i in range(1500):
            slot += rng.randint(1, 40_000)  # about 25 records/s of event time: 60 s a file
            while True:
                ts = slot - rng.randint(0, 1_500_000)
                if ts not in used:
                    used.add(ts)
                    break
            r = {"id": n_total, "ts": iso(ts), "service": rng.choice(["api", "db", "web"]),
                 "host": rng.choice(["h1", "h2"])}
            u = rng.random()
            if u < 0.05:
                r["latency_ms"] = None
            elif u >= 0.08:  # else: missing
                r["latency_ms"] = round(rng.lognormvariate(3.0, 1.0), 3)
            lines.append(json.dumps(r))
            n_total += 1
        with open(os.path.join(d, f"part-{part}.ndjson"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    print(f"windows: {n_total} records in 2 files (window-in)")


def iso(us):
    import datetime
    t = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + \
        datetime.timedelta(microseconds=us)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


DUCK_AGG = {
    "count": "count({f})", "sum": "sum({f})", "mean": "avg({f})", "var": "var_samp({f})",
    "min": "min({f})", "max": "max({f})",
    "first": "arg_min({f}, ts) FILTER (WHERE {f} IS NOT NULL)",
    "last": "arg_max({f}, ts) FILTER (WHERE {f} IS NOT NULL)",
}


def duck_expr(agg, field):
    if agg.startswith("p"):
        q = float(agg[1:].replace("_", ".")) / 100
        return f"quantile_cont({field}, {q!r})"
    return DUCK_AGG[agg].format(f=field)


def parse_aggs(specs):
    """["latency_ms:count,mean"] -> [("latency_ms", ["count", "mean"])] (pNN.N as pNN_N)."""
    out = []
    for s in specs:
        field, aggs = s.split(":", 1)
        out.append((field, [a.strip().replace(".", "_") for a in aggs.split(",")]))
    return out


def case_window(spec, fails, tables, H):
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds

    label = spec["label"]
    size, hop = spec["size_s"], spec.get("hop_s", spec["size_s"])
    by = spec["by"]
    aggs = parse_aggs(spec["aggregates"])
    dead = spec.get("dead_letter")
    if dead and os.path.exists(dead) and os.path.getsize(dead) > 0:
        with open(dead, encoding="utf-8") as f:
            fails.add(label, "dead letters in a run with no late record",
                      detail=f.readline()[:300])
    table = ds.dataset(spec["path"], format="parquet").to_table()

    # Columns and types.
    want_cols = ["window_start", "window_end"] + by + ["count"] + \
        [f"{f}_{a}" for f, al in aggs for a in al]
    got_cols = [c for c in table.column_names if c != "partial"]
    if got_cols != want_cols:
        fails.add(label, "columns", detail=f"{got_cols}, want {want_cols}")
        return {"line": "(columns differ)"}
    for c in ("window_start", "window_end"):
        t = table.schema.field(c).type
        if t != pa.timestamp("us", tz="UTC"):
            fails.add(label, f"{c} type", detail=f"{t}, want timestamp[us, tz=UTC]")
    if table.schema.field("count").type != pa.int64():
        fails.add(label, "count type", detail=str(table.schema.field("count").type))
    if "partial" in table.column_names and any(table.column("partial").to_pylist()):
        fails.add(label, "rows marked partial in a run under the state cap")

    def us(col):
        return [int(x) for x in np.asarray(
            table.column(col).combine_chunks().cast(pa.timestamp("us", tz="UTC"))
            .cast(pa.int64()))]

    starts, ends = us("window_start"), us("window_end")
    rows = {}
    py = {c: table.column(c).to_pylist() for c in want_cols[2:]}
    for i, s in enumerate(starts):
        key = (s,) + tuple(py[b][i] for b in by)
        if key in rows:
            fails.add(label, "a window row twice", detail=str(key))
        rows[key] = {c: py[c][i] for c in want_cols[2:]}
        if ends[i] - s != int(size * 1_000_000):
            fails.add(label, "window_end - window_start", detail=f"{key}: {ends[i] - s} µs")

    # DuckDB's windows from the same files.
    files = sorted(os.path.join(d, f) for d in spec["inputs"] for f in os.listdir(d))
    n_hops = int(round(size / hop))
    sel = ", ".join(f"{duck_expr(a, f)} AS \"{f}_{a}\"" for f, al in aggs for a in al)
    keys = ", ".join(by)
    fields = sorted({f for f, _ in aggs})
    lists = ", ".join(f"list({f} ORDER BY {f}) FILTER (WHERE {f} IS NOT NULL) AS \"_v_{f}\""
                      for f in fields)
    sql = f"""
      WITH r AS (SELECT * FROM read_json({files!r}, format = 'newline_delimited',
                   columns = {{id: 'BIGINT', ts: 'TIMESTAMP', service: 'VARCHAR',
                               host: 'VARCHAR', latency_ms: 'DOUBLE'}})),
           w AS (SELECT r.*, time_bucket(INTERVAL '{hop} seconds', ts)
                               - j * INTERVAL '{hop} seconds' AS ws
                 FROM r, range(0, {n_hops}) t(j))
      SELECT epoch_us(ws) AS ws, {keys}, count(*) AS count, {sel}, {lists}
      FROM w GROUP BY ws, {keys} ORDER BY ws, {keys}"""
    con = duckdb.connect()
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    duck = {}
    for rec in cur.fetchall():
        r = dict(zip(names, rec))
        duck[(r["ws"],) + tuple(r[b] for b in by)] = r
    for k in sorted(set(duck) - set(rows))[:5]:
        fails.add(label, "a window DuckDB finds is missing", detail=str(k))
    for k in sorted(set(rows) - set(duck))[:5]:
        fails.add(label, "a window DuckDB does not find", detail=str(k))

    compared = 0
    for key in sorted(set(rows) & set(duck)):
        got, want = rows[key], duck[key]
        where = f"window {key}"

        def bad(col, detail):
            fails.add(label, f"{col} differs from DuckDB's", detail=f"{where}: {detail}")

        if got["count"] != want["count"]:
            bad("count", f"{got['count']} != {want['count']}")
        for f, al in aggs:
            vals = np.array(want[f"_v_{f}"] or [], dtype=np.float64)
            n = len(vals)
            for a in al:
                c = f"{f}_{a}"
                g, w = got[c], want[c]
                if a in ("count", "min", "max", "first", "last"):
                    if g != w:
                        bad(c, f"{g!r} != {w!r}")
                elif a in ("sum", "mean", "var"):
                    if (g is None) != (w is None) or (
                            g is not None and abs(g - w) > 1e-9 * max(abs(w), 1e-300)):
                        bad(c, f"{g!r} != {w!r}")
                else:
                    q = float(a[1:].replace("_", ".")) / 100
                    if n == 0:
                        if g is not None:
                            bad(c, f"{g!r}, want null (no values)")
                        continue
                    lo, hi = vals[math.floor(q * (n - 1))], vals[math.ceil(q * (n - 1))]
                    if g is None or not (lo * 0.99 <= g <= hi * 1.01):
                        bad(c, f"{g!r} not within 1 % of the exact [{lo!r}, {hi!r}] (n {n})")
                    if w is None or not (lo <= w <= hi):
                        bad(c, f"DuckDB's quantile_cont {w!r} outside [{lo!r}, {hi!r}]: the "
                               "check's own bracket is wrong")
        compared += 1
    return {"line": f"{compared} window rows ({size:g} s / {hop:g} s by {','.join(by)}) = "
                    f"DuckDB's, every aggregate compared"}


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

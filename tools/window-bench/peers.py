"""Issue 18's window benchmark and its independent references (tools/window-bench/run.sh).

    peers.py gen OUT.ndjson [--records N] [--keys K] [--rate R] [--disorder S]
                            [--late-fraction F] [--late-max S] [--seed N]
        Writes the bench input: N NDJSON records in the built-in log layout
        ({"id", "ts" RFC 3339 with microseconds and Z, "service", "latency_ms"}), K services,
        event times R records per second apart on average, each record's `ts` up to S seconds
        behind its arrival slot (bounded disorder) and a fraction F of them up to --late-max
        seconds behind (late under a lateness below that). Deterministic for a seed.
    peers.py duckdb IN.ndjson OUT.parquet   DuckDB: GROUP BY service, time_bucket(10 s, ts)
    peers.py polars IN.ndjson OUT.parquet   Polars: group_by_dynamic(every="10s", group_by="service")
    peers.py compare PINFLOW.parquet IN.ndjson [--duckdb D.parquet] [--polars P.parquet]
                     [--size-s 10] [--quantile 0.99] [--rel 0.01]
        Checks that every window row agrees: the same (service, window) rows, count exactly,
        mean and var to 1e-9 relative, and pinflow's p99 within --rel (its sketch's stated
        bound) of the exact quantile. "Exact" is the bracket of order statistics
        x[floor(q(n-1))] .. x[ceil(q(n-1))] of the window's values, computed here from the
        input with numpy: the sketch's estimate must be within --rel of some value in it
        (DuckDB's quantile_cont and every nearest-rank definition lie in that bracket, so a
        pass does not depend on which one is meant). The peers' own p99 (quantile_cont,
        linear interpolation) must lie in the bracket itself. The input must have no late
        records (lateness >= disorder): the peers see every record.

Aggregates: count, mean, var (sample, n-1) and p99 of latency_ms per (service, 10 s window),
the windows [k*10 s, (k+1)*10 s) since the Unix epoch (time_bucket's default origin,
2000-01-03, is a multiple of 10 s after it, so the buckets are the same).
"""

import argparse
import json
import math
import sys

import numpy as np


def gen(a):
    rng = np.random.default_rng(a.seed)
    n = a.records
    base_us = 1_795_000_000_000_000  # 2026-11-18T...Z, a multiple of 10 s
    # Arrival slots: increasing, R per second on average; event time = slot - delay.
    slot = base_us + np.cumsum(rng.exponential(1e6 / a.rate, n)).astype(np.int64)
    delay = (rng.random(n) * a.disorder * 1e6).astype(np.int64)
    if a.late_fraction > 0:
        late = rng.random(n) < a.late_fraction
        delay[late] = (rng.uniform(a.disorder, a.late_max, late.sum()) * 1e6).astype(np.int64)
    ts = slot - delay
    svc = rng.integers(0, a.keys, n)
    lat = np.round(rng.lognormal(3.0, 0.8, n), 3)
    tstr = np.datetime_as_string(ts.astype("datetime64[us]"), unit="us").tolist()
    svc, lat = svc.tolist(), lat.tolist()
    names = [f"svc-{k:02d}" for k in range(a.keys)]
    with open(a.out, "w", buffering=1 << 20) as f:
        for i in range(n):
            f.write(
                f'{{"id":{i},"ts":"{tstr[i]}Z","service":"{names[svc[i]]}",'
                f'"latency_ms":{lat[i]!r}}}\n'
            )
    print(json.dumps({"records": n, "keys": a.keys, "first_ts_us": int(ts.min()),
                      "last_ts_us": int(ts.max()), "disorder_s": a.disorder,
                      "late_fraction": a.late_fraction}))


DUCKDB_SQL = """
COPY (
  SELECT time_bucket(INTERVAL '10 seconds', ts) AS window_start,
         time_bucket(INTERVAL '10 seconds', ts) + INTERVAL '10 seconds' AS window_end,
         service,
         count(*) AS count,
         avg(latency_ms) AS latency_ms_mean,
         var_samp(latency_ms) AS latency_ms_var,
         quantile_cont(latency_ms, 0.99) AS latency_ms_p99
  FROM read_json(?, format = 'newline_delimited',
                 columns = {id: 'BIGINT', ts: 'TIMESTAMP', service: 'VARCHAR',
                            latency_ms: 'DOUBLE'})
  GROUP BY ALL
  ORDER BY window_start, service
) TO '{out}' (FORMAT parquet)
"""


def run_duckdb(a):
    import duckdb

    con = duckdb.connect()
    con.execute(DUCKDB_SQL.replace("{out}", a.out.replace("'", "''")), [a.input])


def run_polars(a):
    import polars as pl

    df = pl.read_ndjson(
        a.input,
        schema={"id": pl.Int64, "ts": pl.String, "service": pl.String, "latency_ms": pl.Float64},
    )
    df = df.with_columns(
        pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us")
    ).sort("ts")
    out = (
        df.group_by_dynamic("ts", every="10s", group_by="service", label="left")
        .agg(
            pl.len().alias("count"),
            pl.col("latency_ms").mean().alias("latency_ms_mean"),
            pl.col("latency_ms").var(ddof=1).alias("latency_ms_var"),
            pl.col("latency_ms").quantile(0.99, interpolation="linear").alias("latency_ms_p99"),
        )
        .rename({"ts": "window_start"})
        .sort("window_start", "service")
    )
    out.write_parquet(a.out)


def micros(col):
    """A timestamp column (any unit, with or without zone) as int64 µs since the epoch."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_timestamp(t):
        return np.asarray(col.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64()), dtype=np.int64)
    raise SystemExit(f"not a timestamp column: {t}")


def load(path):
    """{(service, window_start_us): {count, mean, var, p99}} of a window-row Parquet file (or
    a directory of them)."""
    import pyarrow.dataset as ds

    table = ds.dataset(path, format="parquet").to_table()
    starts = micros(table.column("window_start").combine_chunks())
    cols = {c: table.column(c).to_pylist() for c in
            ("service", "count", "latency_ms_mean", "latency_ms_var", "latency_ms_p99")}
    rows = {}
    for i, s in enumerate(starts):
        key = (cols["service"][i], int(s))
        if key in rows:
            raise SystemExit(f"{path}: window {key} appears twice")
        rows[key] = {"count": cols["count"][i], "mean": cols["latency_ms_mean"][i],
                     "var": cols["latency_ms_var"][i], "p99": cols["latency_ms_p99"][i]}
    return rows


def exact(input_path, size_us):
    """{(service, window_start_us): sorted latency values} from the input itself."""
    ts_l, svc_l, lat_l = [], [], []
    with open(input_path) as f:
        for line in f:
            r = json.loads(line)
            ts_l.append(r["ts"])
            svc_l.append(r["service"])
            lat_l.append(r["latency_ms"])
    ts = np.array([np.datetime64(t.rstrip("Z"), "us") for t in ts_l]).astype(np.int64)
    start = ts - np.mod(ts, size_us)
    groups = {}
    order = np.lexsort((start, np.array(svc_l)))
    lat = np.array(lat_l, dtype=np.float64)
    svc = np.array(svc_l)
    i = 0
    n = len(order)
    while i < n:
        j = i
        k = (svc[order[i]], int(start[order[i]]))
        while j < n and svc[order[j]] == k[0] and start[order[j]] == k[1]:
            j += 1
        groups[k] = np.sort(lat[order[i:j]])
        i = j
    return groups


def close(a, b, rel):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def compare(a):
    size_us = int(a.size_s * 1_000_000)
    truth = exact(a.input, size_us)
    sources = {"pinflow": load(a.pinflow)}
    if a.duckdb:
        sources["duckdb"] = load(a.duckdb)
    if a.polars:
        sources["polars"] = load(a.polars)
    bad = []
    q = a.quantile
    for name, rows in sources.items():
        if set(rows) != set(truth):
            extra = sorted(set(rows) - set(truth))[:3]
            missing = sorted(set(truth) - set(rows))[:3]
            bad.append(f"{name}: windows differ from the input's (extra {extra}, missing {missing})")
            continue
        for key, v in truth.items():
            r = rows[key]
            n = len(v)
            mean = float(np.mean(v))
            var = float(np.var(v, ddof=1)) if n >= 2 else None
            lo, hi = v[math.floor(q * (n - 1))], v[math.ceil(q * (n - 1))]
            where = f"{name} {key[0]} window {key[1]}"
            if r["count"] != n:
                bad.append(f"{where}: count {r['count']}, want {n}")
            if not close(r["mean"], mean, 1e-9):
                bad.append(f"{where}: mean {r['mean']!r}, want {mean!r}")
            if not close(r["var"], var, 1e-9):
                bad.append(f"{where}: var {r['var']!r}, want {var!r}")
            p = r["p99"]
            tol = a.rel if name == "pinflow" else 1e-12
            if p is None or not (lo * (1 - tol) - 1e-12 <= p <= hi * (1 + tol) + 1e-12):
                bad.append(f"{where}: p{q * 100:g} {p!r} not within {tol:g} of [{lo!r}, {hi!r}]")
    for b in bad[:20]:
        print("window-bench: MISMATCH " + b, file=sys.stderr)
    if bad:
        raise SystemExit(f"window-bench: {len(bad)} mismatches")
    print(f"window-bench: {', '.join(sources)} agree on all {len(truth)} window rows "
          f"(count exact, mean/var 1e-9 rel, p{q * 100:g} within {a.rel:g} of the exact bracket)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("out")
    g.add_argument("--records", type=int, default=1_000_000)
    g.add_argument("--keys", type=int, default=40)
    g.add_argument("--rate", type=float, default=2000.0)
    g.add_argument("--disorder", type=float, default=2.0)
    g.add_argument("--late-fraction", type=float, default=0.005)
    g.add_argument("--late-max", type=float, default=30.0)
    g.add_argument("--seed", type=int, default=18)
    for name in ("duckdb", "polars"):
        s = sub.add_parser(name)
        s.add_argument("input")
        s.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("pinflow")
    c.add_argument("input")
    c.add_argument("--duckdb")
    c.add_argument("--polars")
    c.add_argument("--size-s", type=float, default=10.0)
    c.add_argument("--quantile", type=float, default=0.99)
    c.add_argument("--rel", type=float, default=0.01)
    a = p.parse_args()
    {"gen": gen, "duckdb": run_duckdb, "polars": run_polars, "compare": compare}[a.cmd](a)


if __name__ == "__main__":
    main()

"""Checks that the engines did the same work: same rows, same statistics.

    python verify.py RECORDS REF.parquet NAME=OTHER.parquet ...

For each file: the row count and the number of distinct ids must be RECORDS, ids 1..RECORDS.
Then every row of each OTHER is joined on id with REF (pinflow's file) and compared: ts,
service, level, host, message, latency_ms and values_count exactly; values_mean, values_min,
values_max and values_variance within 1e-9 relative. Exits 1 on any difference, printing the
first few. Uses DuckDB to read the Parquet files.
"""

import sys

import duckdb

REL = 1e-9


def main() -> None:
    records = int(sys.argv[1])
    ref = sys.argv[2]
    others = [a.split("=", 1) for a in sys.argv[3:]]
    con = duckdb.connect()
    ok = True

    def q(sql: str):
        return con.execute(sql).fetchall()

    for name, path in [("pinflow", ref)] + others:
        n, ids, lo, hi = q(
            f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM read_parquet('{path}')"
        )[0]
        good = n == records and ids == records and lo == 1 and hi == records
        ok &= good
        print(f"  {name:8} rows {n}, distinct ids {ids}, ids {lo}..{hi}{'' if good else '  MISMATCH'}")

    close = " OR ".join(
        f"NOT (a.{c} = b.{c} OR abs(a.{c} - b.{c}) <= {REL} * greatest(abs(a.{c}), abs(b.{c})))"
        for c in ("values_mean", "values_min", "values_max", "values_variance")
    )
    exact = " OR ".join(
        f"a.{c} IS DISTINCT FROM b.{c}"
        for c in ("service", "level", "host", "message", "latency_ms", "values_count")
    )
    for name, path in others:
        cond = f"epoch_us(a.ts) IS DISTINCT FROM epoch_us(b.ts) OR {exact} OR {close}"
        base = (
            f"FROM read_parquet('{ref}') a JOIN read_parquet('{path}') b USING (id) WHERE {cond}"
        )
        (bad,) = q(f"SELECT count(*) {base}")[0]
        (joined,) = q(
            f"SELECT count(*) FROM read_parquet('{ref}') a JOIN read_parquet('{path}') b USING (id)"
        )[0]
        if bad or joined != records:
            ok = False
            print(f"  {name:8} vs pinflow: {joined} rows joined, {bad} differ, e.g.:")
            for row in q(
                "SELECT id, a.values_mean, b.values_mean, a.values_variance, b.values_variance "
                f"{base} ORDER BY id LIMIT 3"
            ):
                print("    ", row)
        else:
            (max_rel,) = q(
                "SELECT max(abs(a.values_variance - b.values_variance)"
                " / greatest(abs(a.values_variance), 1e-300)) "
                f"FROM read_parquet('{ref}') a JOIN read_parquet('{path}') b USING (id)"
            )[0]
            print(
                f"  {name:8} vs pinflow: all {joined} rows equal (statistics within {REL:g} "
                f"relative; largest variance difference {max_rel:.1e} relative)"
            )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

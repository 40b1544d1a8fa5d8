"""NDJSON files -> Parquet with per-record statistics of `values`, by DuckDB or Polars.

    python engines.py duckdb 'DIR/*.ndjson' OUT.parquet
    python engines.py polars 'DIR/*.ndjson' OUT.parquet

Both read the same explicit schema as pinflow's built-in log layout (no inference), compute
the same five statistics as `pinflow run --files` does by default (count, mean, min, max,
sample variance with n - 1), and write one snappy-compressed Parquet file. Each engine keeps
its default thread count (all cores). On stdout: one line `query_s SECONDS` (the query alone,
after the imports), for tools/file-compare.sh.
"""

import sys
import time


def run_duckdb(glob: str, out: str) -> None:
    import duckdb

    con = duckdb.connect()  # in-memory database, default settings (threads = cores)
    glob_sql = glob.replace("'", "''")
    out_sql = out.replace("'", "''")
    columns = (
        "{id: 'BIGINT', ts: 'TIMESTAMPTZ', service: 'VARCHAR', level: 'VARCHAR', "
        "host: 'VARCHAR', latency_ms: 'DOUBLE', message: 'VARCHAR', \"values\": 'DOUBLE[]'}"
    )
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"""
        COPY (
            SELECT *,
                   len("values")           AS values_count,
                   list_avg("values")      AS values_mean,
                   list_min("values")      AS values_min,
                   list_max("values")      AS values_max,
                   list_var_samp("values") AS values_variance
            FROM read_ndjson('{glob_sql}', columns = {columns},
                             format = 'newline_delimited')
        ) TO '{out_sql}' (FORMAT parquet, COMPRESSION snappy)
        """
    )
    con.close()


def run_polars(glob: str, out: str) -> None:
    import polars as pl

    schema = {
        "id": pl.Int64,
        "ts": pl.String,
        "service": pl.String,
        "level": pl.String,
        "host": pl.String,
        "latency_ms": pl.Float64,
        "message": pl.String,
        "values": pl.List(pl.Float64),
    }
    v = pl.col("values")
    (
        pl.scan_ndjson(glob, schema=schema)
        .with_columns(
            ts=pl.col("ts").str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"
            ),
            values_count=v.list.len().cast(pl.Int64),
            values_mean=v.list.mean(),
            values_min=v.list.min(),
            values_max=v.list.max(),
            values_variance=v.list.var(ddof=1),
        )
        .sink_parquet(out, compression="snappy")
    )


def main() -> None:
    engine, glob, out = sys.argv[1:4]
    runner = {"duckdb": run_duckdb, "polars": run_polars}[engine]
    # Import before the clock starts: query_s is the engine's work alone.
    __import__(engine)
    t0 = time.perf_counter()
    runner(glob, out)
    print(f"query_s {time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()

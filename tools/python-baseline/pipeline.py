"""The Python design pinflow replaces: the article's asyncio worker pipeline, made runnable.

Structure kept from the article (../../shared/seed/, section 4.2 "Practical End-to-End
Example"):

    aiohttp fetchers ──► fetch_q (asyncio.Queue, maxsize 2×cores) ──► consumers ×4
        consumer: parse in a ThreadPoolExecutor(4), statistics in a ProcessPoolExecutor(4)
    ──► process_q (asyncio.Queue, maxsize 2×cores) ──► writer: batches of 500 rows,
        written with asyncio.to_thread through pyarrow (snappy)

What differs from the article's listing, and why (none of it makes the Python slower):

- The article's single producer awaits each fetch before starting the next. Here
  `--fetchers` coroutines (default 64, the connections `wrk -c64` uses) share the URL list
  over one aiohttp session, so requests overlap as the design intends.
- The article parses each body in the event loop (`resp.json()`), serializes it again
  (`json.dumps`) and parses it a second time in the thread pool. Here the fetcher hands the
  body text over and the thread pool parses it once: the thread-pool parse stage, without
  the doubled work.
- The article rewrites the whole file with `pq.write_table` for every batch of 500, so only
  the last batch survives. Here one `pq.ParquetWriter` stays open and every batch becomes a
  row group, as a pipeline that keeps its data must do.
- The article's last consumer never tells the writer to stop (the writer would wait forever);
  here the writer's sentinel is sent once every consumer is done.
- No Prometheus endpoint: the article's metrics cost time and a fixed port (8000).
- Statistics are pinflow's: count, mean, min, max and sample variance of `values`. The
  variance is the article's `statistics.variance`; `--stats numpy` uses numpy instead.
- `ts` is parsed into a timestamp, and the columns and types are pinflow's, so the two
  Parquet files hold the same data and `verify.py` can compare them row by row.

Prints one JSON line: records, seconds, records/s, row groups.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import re
import statistics
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("service", pa.string()),
        ("level", pa.string()),
        ("host", pa.string()),
        ("latency_ms", pa.float64()),
        ("message", pa.string()),
        ("values", pa.list_(pa.float64())),
        ("values_count", pa.int64()),
        ("values_mean", pa.float64()),
        ("values_min", pa.float64()),
        ("values_max", pa.float64()),
        ("values_variance", pa.float64()),
    ]
)

STATS_IMPL = "statistics"


def expand_template(template: str) -> List[str]:
    """`http://h/logs/{1..N}.json` → the N URLs (pinflow's template syntax, one range)."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}", template)
    if not m:
        return [template]
    lo, hi = int(m.group(1)), int(m.group(2))
    head, tail = template[: m.start()], template[m.end() :]
    return [f"{head}{i}{tail}" for i in range(lo, hi + 1)]


# ---------- Async fetch ----------
async def fetch(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.text()


# ---------- Thread-pool parse ----------
def parse_record(raw: str) -> Dict[str, Any]:
    record = json.loads(raw)
    record["values"] = [float(v) for v in record.get("values", [])]
    ts = record.get("ts")
    if ts is not None:
        record["ts"] = datetime.datetime.fromisoformat(ts)
    return record


async def parse_in_thread(
    executor: concurrent.futures.ThreadPoolExecutor, raw: str
) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, parse_record, raw)


# ---------- Process-pool heavy compute ----------
def _init_worker(impl: str) -> None:
    global STATS_IMPL
    STATS_IMPL = impl


def heavy_feature(record: Dict[str, Any]) -> Dict[str, Any]:
    vals = record.get("values", [])
    n = len(vals)
    record["values_count"] = n
    if n == 0:
        record["values_mean"] = record["values_min"] = record["values_max"] = None
        record["values_variance"] = None
        return record
    if STATS_IMPL == "numpy":
        import numpy as np

        a = np.asarray(vals, dtype=np.float64)
        record["values_mean"] = float(a.mean())
        record["values_min"] = float(a.min())
        record["values_max"] = float(a.max())
        record["values_variance"] = float(a.var(ddof=1)) if n >= 2 else None
    else:
        record["values_mean"] = statistics.fmean(vals)
        record["values_min"] = min(vals)
        record["values_max"] = max(vals)
        record["values_variance"] = statistics.variance(vals) if n >= 2 else None
    return record


async def compute_heavy(
    pool: concurrent.futures.ProcessPoolExecutor, record: Dict[str, Any]
) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, heavy_feature, record)


# ---------- Writer ----------
class ParquetSink:
    """One file, one open ParquetWriter; each batch is a row group."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.writer = pq.ParquetWriter(path, SCHEMA, compression="snappy")
        self.row_groups = 0
        self.rows = 0

    def write_batch(self, batch: List[Dict[str, Any]]) -> None:
        table = pa.Table.from_pydict(
            {f.name: [d.get(f.name) for d in batch] for f in SCHEMA}, schema=SCHEMA
        )
        self.writer.write_table(table)
        self.row_groups += 1
        self.rows += len(batch)

    def close(self) -> None:
        self.writer.close()


async def writer(queue: asyncio.Queue, sink: ParquetSink, batch_size: int) -> None:
    batch: List[Dict[str, Any]] = []
    while True:
        item = await queue.get()
        if item is None:  # Sentinel
            if batch:
                await asyncio.to_thread(sink.write_batch, batch)
            queue.task_done()
            break
        batch.append(item)
        if len(batch) >= batch_size:
            await asyncio.to_thread(sink.write_batch, batch)
            batch = []
        queue.task_done()


# ---------- Producers (fetchers) ----------
async def producer(
    urls: Iterator[str], fetch_q: asyncio.Queue, session: aiohttp.ClientSession
) -> None:
    # Every fetcher pulls from the same iterator: one event loop, so no lock is needed.
    for url in urls:
        raw = await fetch(session, url)
        await fetch_q.put(raw)


async def producers(
    urls: List[str], n: int, fetch_q: asyncio.Queue, session: aiohttp.ClientSession
) -> None:
    it = iter(urls)
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(producer(it, fetch_q, session))
    await fetch_q.put(None)  # Sentinel


# ---------- Consumers ----------
async def consumer(
    fetch_q: asyncio.Queue,
    process_q: asyncio.Queue,
    thread_pool: concurrent.futures.ThreadPoolExecutor,
    proc_pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    while True:
        raw = await fetch_q.get()
        if raw is None:
            await fetch_q.put(None)  # Propagate sentinel to other consumers
            fetch_q.task_done()
            break
        record = await parse_in_thread(thread_pool, raw)
        enriched = await compute_heavy(proc_pool, record)
        await process_q.put(enriched)
        fetch_q.task_done()


async def consumers(n: int, fetch_q, process_q, thread_pool, proc_pool) -> None:
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(consumer(fetch_q, process_q, thread_pool, proc_pool))
    await process_q.put(None)  # every consumer is done: the writer may finish


# ---------- Main orchestration ----------
async def main(args: argparse.Namespace, urls: List[str], sink: ParquetSink) -> None:
    cores = os.cpu_count() or 1
    fetch_queue: asyncio.Queue = asyncio.Queue(maxsize=2 * cores)
    process_queue: asyncio.Queue = asyncio.Queue(maxsize=2 * cores)

    thread_pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.threads)
    proc_pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=args.procs, initializer=_init_worker, initargs=(args.stats,)
    )
    connector = aiohttp.TCPConnector(limit=args.fetchers)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(producers(urls, args.fetchers, fetch_queue, session))
            tg.create_task(
                consumers(args.consumers, fetch_queue, process_queue, thread_pool, proc_pool)
            )
            tg.create_task(writer(process_queue, sink, args.batch))

    thread_pool.shutdown(wait=True)
    proc_pool.shutdown(wait=True)


def cli(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--urls", required=True, help="pinflow-style template, e.g. http://h/logs/{1..20000}.json")
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.add_argument("--fetchers", type=int, default=64, help="concurrent fetch coroutines (and connections)")
    p.add_argument("--consumers", type=int, default=4, help="consumer coroutines (the article: 4)")
    p.add_argument("--threads", type=int, default=4, help="parse thread pool (the article: 4)")
    p.add_argument("--procs", type=int, default=4, help="statistics process pool (the article: 4)")
    p.add_argument("--batch", type=int, default=500, help="rows per row group (the article: 500)")
    p.add_argument("--stats", choices=["statistics", "numpy"], default="statistics")
    args = p.parse_args(argv)
    urls = expand_template(args.urls)
    start = time.perf_counter()
    sink = ParquetSink(args.out)
    try:
        asyncio.run(main(args, urls, sink))
    finally:
        sink.close()
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "records": sink.rows,
                "elapsed_s": round(elapsed, 6),
                "records_per_s": round(sink.rows / elapsed, 1),
                "row_groups": sink.row_groups,
                "fetchers": args.fetchers,
                "stats": args.stats,
            }
        )
    )
    return 0 if sink.rows == len(urls) else 1


if __name__ == "__main__":
    sys.exit(cli())

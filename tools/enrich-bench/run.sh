#!/usr/bin/env bash
# The `[[enrich]]` benchmark (issue 22), one command:
#
#   tools/enrich-bench/run.sh                      # 1M records, 50 keys, 3 timed runs, 20 ms
#   tools/enrich-bench/run.sh --records 200000 --runs 5 --latency-ms 20
#
# 1. warm cache: records/s of a file → Parquet run with one HTTP enricher whose cache holds
#    every key, against the same run without it (target: ratio >= 0.9; medians of --runs);
# 2. cold start against a lookup server answering after --latency-ms: calls = distinct keys
#    (exits 1 otherwise).
# Heavy: run it on a quiet machine, not while others build.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo run --release --quiet --example enrich_bench -- "$@"

#!/usr/bin/env bash
# The tail against the file reader on the same NDJSON file (issue 21: `--tail` of a 1 GB file
# within 10 % of `--files` on it). Prints the median wall time of each over RUNS runs, and
# the ratio tail / files.
#
#   tools/tail-bench.sh                     # 1 GB file, 3 runs each, release build
#   SIZE_MB=50 RUNS=3 tools/tail-bench.sh   # a quick check
#   BIN=target/debug/pinflow SIZE_MB=50 tools/tail-bench.sh
#
# How the tail run is timed: it is started with the metrics endpoint on, and stopped with
# SIGTERM as soon as `pinflow_tail_bytes_read_total` equals the file's size (read every 50
# ms with curl); on SIGTERM it writes what it read and finalizes. Its time is from start to
# exit, as the file run's is, so both include writing every row; the tail's includes up to
# one polling step (50 ms) more, and the signal's hand-over to the pipeline (up to 50 ms):
# a fixed cost that matters on small files only.
#
# Environment: SIZE_MB (default 1024), RUNS (3), BIN (default: a release build made
# here), WORK (a scratch directory; default a new one under /tmp, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${SIZE_MB:-1024}
runs=${RUNS:-3}
if [[ -n "${BIN:-}" ]]; then
  bin=$BIN
else
  cargo build --release --quiet
  bin=target/release/pinflow
fi
command -v curl >/dev/null || { echo "tail-bench: needs curl (the tail run is stopped by its metrics)" >&2; exit 1; }
work=${WORK:-$(mktemp -d /tmp/pinflow-tail-bench.XXXXXX)}
[[ -z "${WORK:-}" ]] && trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
input=$work/input.ndjson

# Log-like records, about 180 bytes a line, until the size is reached.
if [[ ! -s $input ]]; then
  awk -v bytes=$((size_mb * 1024 * 1024)) 'BEGIN {
    srand(7); n = 0; total = 0
    split("DEBUG INFO INFO INFO WARN ERROR", levels, " ")
    while (total < bytes) {
      line = sprintf("{\"id\":%d,\"ts\":\"2026-12-04T10:%02d:%02d.%03dZ\",\"level\":\"%s\",\"service\":\"svc-%d\",\"latency_ms\":%.3f,\"status\":%d,\"msg\":\"request %d handled in the usual way\"}",
        n, (n / 60000) % 60, (n / 1000) % 60, n % 1000, levels[1 + n % 6], n % 17, rand() * 250, 200 + (n % 5 == 0) * 300, n)
      print line
      total += length(line) + 1
      n++
    }
  }' >"$input"
fi
bytes=$(stat -c %s "$input")
echo "input: $input, $bytes bytes, $(wc -l <"$input") lines" >&2

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }

files_run() {
  rm -rf "$work/out-files" && mkdir "$work/out-files"
  local t0 t1
  t0=$(now)
  # The metrics endpoint on here too, as in the tail run (only the tail's is scraped).
  "$bin" run --files "$input" --out "$work/out-files/o.parquet" --progress never \
    --metrics-addr "127.0.0.1:$((20000 + RANDOM % 20000))" >"$work/files.log" 2>&1
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

tail_run() {
  rm -rf "$work/out-tail" && mkdir "$work/out-tail"
  local port=$((20000 + RANDOM % 20000)) t0 t1 pid read=0
  t0=$(now)
  "$bin" run --tail "$input" --out "$work/out-tail/o.parquet" --progress never \
    --metrics-addr "127.0.0.1:$port" >"$work/tail.log" 2>&1 &
  pid=$!
  while [[ $read != "$bytes" ]]; do
    sleep 0.05
    kill -0 "$pid" 2>/dev/null || { echo "tail-bench: the tail run ended early; see $work/tail.log" >&2; exit 1; }
    read=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "pinflow_tail_bytes_read_total" {print $2}')
    read=${read:-0}
  done
  kill -TERM "$pid"
  wait "$pid"
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

ft=() tt=()
for i in $(seq "$runs"); do
  ft+=("$(files_run)")
  tt+=("$(tail_run)")
  echo "run $i: --files ${ft[-1]} s, --tail ${tt[-1]} s" >&2
done
# Both wrote every line: the same number of records.
fw=$(grep -o 'written [0-9]*' "$work/files.log" | tail -1 || true)
tw=$(grep -o 'written [0-9]*' "$work/tail.log" | tail -1 || true)
[[ -z $fw || $fw == "$tw" ]] || echo "tail-bench: records differ: --files $fw, --tail $tw" >&2
fm=$(printf '%s\n' "${ft[@]}" | median)
tm=$(printf '%s\n' "${tt[@]}" | median)
printf 'median of %s runs on %s MB (%s bytes)\n' "$runs" "$size_mb" "$bytes"
printf '  --files  %.3f s  (%.1f MB/s)\n' "$fm" "$(echo "$bytes / 1048576 / $fm" | bc -l)"
printf '  --tail   %.3f s  (%.1f MB/s)\n' "$tm" "$(echo "$bytes / 1048576 / $tm" | bc -l)"
printf '  tail / files  %.3f\n' "$(echo "$tm / $fm" | bc -l)"

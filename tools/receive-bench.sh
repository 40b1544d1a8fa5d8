#!/usr/bin/env bash
# HTTP receive throughput against --files on the same records (issue 21: at least 0.7x).
#
#   tools/receive-bench.sh [RUNS] [RECORDS] [CLIENTS] [BODY_RECORDS] [ROTATE]
#   tools/receive-bench.sh 5 2000000 64 1000 100ms      # the issue's shape
#   PROFILE=debug tools/receive-bench.sh 1 20000 8 1000  # a quick check that it works
#
# RECORDS NDJSON lines are generated once. Each run: `pinflow run --files` on them (no
# journal), then `pinflow run --listen` (journal, checkpoints every ROTATE; a client's answer
# waits for the write-ahead log's fsync) fed by examples/receive_client.rs (CLIENTS
# kept-alive connections, BODY_RECORDS lines per POST; clock from the first request to the
# last 200). Prints the medians and their ratio, and a stricter figure: the records over
# the time from the first request to pinflow's exit after SIGTERM, once every acknowledged
# record is in a finalized file.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5} records=${2:-2000000} clients=${3:-64} per_body=${4:-1000} rotate=${5:-100ms}
profile=${PROFILE:-release}
flag=--release
[ "$profile" = debug ] && flag=
cargo build $flag --quiet --bin pinflow --example receive_client
bin=target/$profile/pinflow
client=target/$profile/examples/receive_client
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v n="$records" 'BEGIN { for (i = 0; i < n; i++)
  printf "{\"id\":%d,\"level\":\"INFO\",\"service\":\"api-%d\",\"latency_ms\":%.3f,\"msg\":\"request served\"}\n", i, i % 17, (i % 977) / 7 }' \
  >"$work/records.ndjson"
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
fields=(--field id:int64 --field level:string --field service:string --field latency_ms:float64 --field msg:string)
files_rps=() listen_rps=() written_rps=()
for i in $(seq "$runs"); do
  rm -rf "$work/f" "$work/l" && mkdir -p "$work/f" "$work/l"
  t0=$(date +%s.%N)
  "$bin" run --files "$work/records.ndjson" --out "$work/f/out.parquet" "${fields[@]}" --log-level warn >/dev/null 2>&1
  t1=$(date +%s.%N)
  files_rps+=("$(awk -v n="$records" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" run --listen "$port" --out "$work/l/out.parquet" "${fields[@]}" --journal \
    --rotate-interval "$rotate" --shutdown-timeout 5s --log-level warn >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  out=$("$client" "127.0.0.1:$port" "$work/records.ndjson" "$clients" "$per_body")
  t2=$(date +%s.%N)
  kill -TERM "$pid"; wait "$pid" || true
  t3=$(date +%s.%N)
  listen_rps+=("$(sed -n 's/.*"records_per_s":\([0-9.]*\).*/\1/p' <<<"$out")")
  secs=$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' <<<"$out")
  # From the first request (the client's clock, after it read the file) to the exit.
  written_rps+=("$(awk -v n="$records" -v s="$secs" -v a="$t2" -v b="$t3" 'BEGIN { printf "%.0f", n / (s + b - a) }')")
  echo "run $i: --files ${files_rps[-1]} records/s, --listen ${listen_rps[-1]} records/s acknowledged, ${written_rps[-1]} to the exit ($out)" >&2
done
f=$(printf '%s\n' "${files_rps[@]}" | median)
l=$(printf '%s\n' "${listen_rps[@]}" | median)
w=$(printf '%s\n' "${written_rps[@]}" | median)
printf 'median of %s runs, %s records, %s clients x %s-record bodies, rotate %s (%s build)\n' \
  "$runs" "$records" "$clients" "$per_body" "$rotate" "$profile"
printf '  --files   records/s  %s\n' "$f"
printf '  --listen  records/s  %s\n' "$l"
printf '  ratio                %s (target >= 0.7)\n' "$(awk -v a="$l" -v b="$f" 'BEGIN { printf "%.2f", a / b }')"
printf '  --listen, to the exit after SIGTERM (all written)  %s records/s, ratio %s\n' \
  "$w" "$(awk -v a="$w" -v b="$f" 'BEGIN { printf "%.2f", a / b }')"

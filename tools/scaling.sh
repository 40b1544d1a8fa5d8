#!/usr/bin/env bash
# Thread scaling: `pinflow bench` over a matrix of parse/compute thread counts, NDJSON pages and
# one record per request, printing records/s (median of REPS) per configuration. Meant for a
# machine with many cores; on the 2-core build machine only the first rows mean anything.
#
#   tools/scaling.sh [PINFLOW_BINARY] [REPS]
set -euo pipefail
bin=${1:-target/release/pinflow}
reps=${2:-3}
records_pages=${RECORDS_PAGES:-2000000}
records_single=${RECORDS_SINGLE:-400000}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() { # per_response records parse compute
  local per=$1 n=$2 p=$3 c=$4 out=()
  for _ in $(seq "$reps"); do
    out+=("$("$bin" bench --json --records "$n" --per-response "$per" \
      --parse-threads "$p" --compute-threads "$c" --progress never 2>/dev/null |
      python3 -c 'import json,sys; print(int(json.load(sys.stdin)["records_per_s"]))')")
  done
  printf '%s\n' "${out[@]}" | median
}

echo "cores: $(nproc); binary: $bin ($("$bin" --version)); reps: $reps"
printf '%-22s %8s %8s %14s\n' workload parse compute "records/s"
for pc in "1 1" "2 1" "2 2" "4 2" "6 3" "8 4" "10 4"; do
  set -- $pc
  [ $(($1 + $2)) -le "$(nproc)" ] || continue
  printf '%-22s %8s %8s %14s\n' "pages of 1000" "$1" "$2" "$(run 1000 "$records_pages" "$1" "$2")"
done
for pc in "1 1" "2 1" "4 2"; do
  set -- $pc
  [ $(($1 + $2)) -le "$(nproc)" ] || continue
  printf '%-22s %8s %8s %14s\n' "1 record per request" "$1" "$2" "$(run 1 "$records_single" "$1" "$2")"
done

#!/usr/bin/env bash
# Run `pinflow bench --json` N times and print the median of each headline figure.
# The build machine is small and noisy: quote medians, never a single run.
#
#   tools/bench-median.sh 5 --records 200000 --per-response 1
#
# The first argument is the number of runs; the rest go to `pinflow bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
cargo build --release --quiet
bin=target/release/pinflow

field() { # field NAME JSON -> number
  sed -n "s/.*\"$1\":\([-0-9.e]*\).*/\1/p" <<<"$2"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

rps=() mbs=() rss=() sim=() p99=()
for i in $(seq "$runs"); do
  out=$("$bin" bench --json "$@" 2>/dev/null)
  rps+=("$(field records_per_s "$out")")
  mbs+=("$(field mb_per_s "$out")")
  rss+=("$(field peak_rss_bytes "$out")")
  sim+=("$(field simulator_cpu_share "$out")")
  # end-to-end p99 is the last p99 in the latency object
  p99+=("$(grep -o '"end_to_end":{"p50":[0-9]*,"p99":[0-9]*' <<<"$out" | sed 's/.*"p99"://')")
  echo "run $i: ${rps[-1]} records/s, ${mbs[-1]} MB/s, peak RSS ${rss[-1]} B, simulator CPU share ${sim[-1]}" >&2
done
printf 'median of %s runs (pinflow bench %s)\n' "$runs" "$*"
printf '  records/s          %s\n' "$(printf '%s\n' "${rps[@]}" | median)"
printf '  MB/s               %s\n' "$(printf '%s\n' "${mbs[@]}" | median)"
printf '  peak RSS (MiB)     %s\n' "$(printf '%s\n' "${rss[@]}" | median | awk '{printf "%.1f", $1/1048576}')"
printf '  simulator CPU      %s\n' "$(printf '%s\n' "${sim[@]}" | median)"
printf '  end-to-end p99 µs  %s\n' "$(printf '%s\n' "${p99[@]}" | median)"

#!/usr/bin/env bash
# Soak check: run `pinflow demo` in continuous mode for a while and check that it shuts down
# cleanly, rotates its files and that its memory stays flat.
#
#   tools/soak.sh [SECONDS]      # default 180, at least 30
#
# Polls 2000 records from the embedded simulator every second, rotates the Parquet file every
# 10 s, samples VmRSS (and, with curl, records written and cycles from /metrics) every 5 s,
# then sends SIGTERM and checks: exit status 0, no hidden temp files left, at least 2 rotated
# files, and flat memory — the largest RSS of the last third of the samples is at most 10 %
# + 2 MiB above the largest of the middle third (the first third is warm-up). RSS includes
# the simulator, which runs in the same process. All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-180}
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 30)); then
  echo "usage: tools/soak.sh [SECONDS]   (a whole number, at least 30; default 180)" >&2
  exit 2
fi
interval=5
samples=$((duration / interval))

cargo build --release --quiet
bin=target/release/pinflow

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pinflow-soak.XXXXXX")
pid=
keep=0
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if ((keep)); then
    echo "soak: files kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# A free loopback port, or a fixed high one if python3 is missing.
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo 39187)
have_curl=0
command -v curl >/dev/null && have_curl=1

metric() { # metric 'NAME{LABELS}' TEXT -> value, or "-"
  awk -v m="$1" '$1 == m { print $2; found = 1; exit } END { if (!found) print "-" }' <<<"$2"
}

"$bin" demo --records 2000 --every 1s --rotate-interval 10s \
  --metrics-addr "127.0.0.1:$port" --out "$tmp/soak.parquet" --progress never \
  >"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
SECONDS=0
echo "soak: pid $pid, metrics on 127.0.0.1:$port, output in $tmp, ${duration} s, a sample every ${interval} s"

rss=()
printf '%9s %9s %16s %8s\n' "elapsed_s" "rss_mib" "records_written" "cycles"
for ((i = 1; i <= samples; i++)); do
  sleep "$interval"
  if ! kill -0 "$pid" 2>/dev/null; then
    keep=1
    echo "FAIL: pinflow exited early, after ${SECONDS} s; stderr:" >&2
    tail -20 "$tmp/stderr" >&2
    exit 1
  fi
  kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  rss+=("$kb")
  written=- cycles=-
  if ((have_curl)); then
    text=$(curl -s --max-time 2 "http://127.0.0.1:$port/metrics" || true)
    written=$(metric 'pinflow_records_total{stage="write"}' "$text")
    cycles=$(metric 'pinflow_cycles_total' "$text")
  fi
  printf '%9d %9.1f %16s %8s\n' "$SECONDS" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')" "$written" "$cycles"
done

kill -TERM "$pid"
status=
for ((i = 0; i < 600; i++)); do # up to 60 s to drain and finalize
  if ! kill -0 "$pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  echo "soak: still running 60 s after SIGTERM, killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
fi
wait "$pid" && status=0 || status=$?
pid=
echo "soak: exit status $status after SIGTERM; summary:"
sed 's/^/  /' "$tmp/stdout"

fail=()
((status == 0)) || fail+=("exit status $status, expected 0")

temps=$(find "$tmp" -maxdepth 1 -name '.*' -type f | wc -l)
((temps == 0)) || fail+=("$temps hidden temp file(s) left: $(find "$tmp" -maxdepth 1 -name '.*' -type f -printf '%f ')")

rotated=$(find "$tmp" -maxdepth 1 -type f -name 'soak-*T*Z-*.parquet' | wc -l)
((rotated >= 2)) || fail+=("$rotated rotated parquet file(s), expected at least 2")

# Flat memory: thirds of the samples; the first is warm-up.
n=${#rss[@]}
a=$((n / 3)) b=$((2 * n / 3))
max_mid=0 max_last=0
for ((i = a; i < b; i++)); do if ((rss[i] > max_mid)); then max_mid=${rss[i]}; fi; done
for ((i = b; i < n; i++)); do if ((rss[i] > max_last)); then max_last=${rss[i]}; fi; done
limit=$(((max_mid * 110 + 99) / 100 + 2048)) # KiB: +10 % + 2 MiB
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
((max_last <= limit)) ||
  fail+=("memory grew: last-third max RSS $(mib "$max_last") MiB > limit $(mib "$limit") MiB")

echo "soak: ${n} samples; max RSS middle third $(mib "$max_mid") MiB, last third $(mib "$max_last") MiB (limit $(mib "$limit") MiB); ${rotated} rotated files; ${temps} temp files; exit status ${status}"
if ((${#fail[@]})); then
  keep=1
  for f in "${fail[@]}"; do echo "FAIL: $f"; done
  exit 1
fi
echo "PASS"

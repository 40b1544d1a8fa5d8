#!/usr/bin/env bash
# Issue 18's window benchmark, in one command: pinflow's time windows against DuckDB and Polars
# computing the same windows from the same NDJSON file, and the cost of windows on the
# NDJSON-pages bench.
#
#   tools/window-bench/run.sh [--records N] [--repeat R] [--check-records M] [--bin PATH]
#                             [--pages-records P] [--no-pages] [--keep DIR] [--wait-quiet S]
#
# 1. Check (correctness, before any timing): M records (default 200,000) with bounded disorder
#    and no late record (lateness 3 s >= disorder 2 s), so every engine sees every record;
#    pinflow, DuckDB and Polars each write their window rows and peers.py compare checks every
#    row against the others and against exact values computed from the input (count exactly,
#    mean and var to 1e-9 relative, p99 within pinflow's stated 1 % of the exact order
#    statistics; see peers.py). Any difference stops the script.
# 2. Speed: N records (default 1,000,000), 40 services, event times out of order by up to 2 s
#    and 0.5 % of them by 2-30 s (late under --window-lateness 3s: dead letters in pinflow,
#    counted by DuckDB and Polars, which have no lateness). Each engine runs R times (default
#    5), interleaved, order rotated, each under /usr/bin/time (wall clock, peak RSS, CPU);
#    medians. Prints pinflow's speed over the faster peer's (target >= 1.5x) and its peak RSS
#    over a fifth of the smaller peer's (target <= 1).
# 3. Pages: `pinflow bench --records P --per-response 1000` (default P 1,000,000) R times
#    without and with the same windows on the simulator's records, interleaved; the cost is
#    1 - with/without of the median records/s (target <= 15 %).
#
# Windows: --window 10s --window-by service --window-agg latency_ms:count,mean,var,p99
# --window-lateness 3s. --bin PATH uses that pinflow binary instead of building
# target/release/pinflow. The peers (pinned in tools/window-bench/requirements.txt) go into
# target/window-bench-venv. Needs python3 (venv) and /usr/bin/time; network: PyPI on the
# first run only.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tools/lib.sh
. tools/lib.sh

records=1000000 repeat=5 check_records=200000 pages_records=1000000 pages=1 bin="" keep=""
wait_quiet=0
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --check-records) check_records=$2; shift 2 ;;
    --pages-records) pages_records=$2; shift 2 ;;
    --no-pages) pages=0; shift ;;
    --bin) bin=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --wait-quiet) wait_quiet=$2; shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "window-bench: unknown argument $1" >&2; exit 2 ;;
  esac
done

here=tools/window-bench
venv=target/window-bench-venv
py=$venv/bin/python
ensure_venv "$venv" "$here/requirements.txt"
[ -x /usr/bin/time ] || apt_install window-bench time
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/pinflow
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

work=${keep:-$(mktemp -d "${TMPDIR:-/tmp}/pinflow-window-bench.XXXXXX")}
mkdir -p "$work"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT

WINDOW=(--window 10s --window-by service --window-agg latency_ms:count,mean,var,p99
  --window-lateness 3s)
# The pages bench has the same lateness: an HTTP source is windowed in URL-list order (the
# fetcher holds responses that complete early), so the simulator's pages (1000 records 1 ms
# apart each) come in event-time order however many are in flight. (Before that, in
# response-completion order with up to 512 in flight, 4 to 49 % of the records were late with
# 3 s, and the bench ran with 60 s.)
PAGES_WINDOW=("${WINDOW[@]}")
tck=$(getconf CLK_TCK)
busy_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
med() { tr ' ' '\n' <<<"$1" | { grep -v '^$' || true; } | median; }

set_cmd() { # set_cmd ENGINE INPUT OUTFILE: the engine's command line, in the array cmd
  case "$1" in
    pinflow) cmd=("$bin" run --files "$2" --out "$3" --progress never --log-level warn
      --max-dead-letters 100% "${WINDOW[@]}") ;;
    duckdb|polars) cmd=("$py" "$here/peers.py" "$1" "$2" "$3") ;;
  esac
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $("$bin" --version | head -1) ($bin), duckdb $("$py" -c 'import duckdb; print(duckdb.__version__)'), polars $("$py" -c 'import polars; print(polars.__version__)')"
echo "windows: ${WINDOW[*]}"

# --- 1. correctness -------------------------------------------------------------------------
echo
echo "== 1. check: $check_records records, disorder 2 s, none late"
"$py" "$here/peers.py" gen "$work/check.ndjson" --records "$check_records" --late-fraction 0 >/dev/null
for e in pinflow duckdb polars; do
  set_cmd "$e" "$work/check.ndjson" "$work/check-$e.parquet"
  "${cmd[@]}" >"$work/check-$e.out" 2>&1 || { cat "$work/check-$e.out" >&2; echo "window-bench: $e failed" >&2; exit 1; }
done
if [ -s "$work/check-pinflow.parquet.deadletter.ndjson" ]; then
  echo "window-bench: pinflow dead-lettered records of an input with none late:" >&2
  head -3 "$work/check-pinflow.parquet.deadletter.ndjson" >&2
  exit 1
fi
"$py" "$here/peers.py" compare "$work/check-pinflow.parquet" "$work/check.ndjson" \
  --duckdb "$work/check-duckdb.parquet" --polars "$work/check-polars.parquet"

# --- 2. speed -------------------------------------------------------------------------------
input=$work/bench.ndjson
"$py" "$here/peers.py" gen "$input" --records "$records" >"$work/gen.json"
in_bytes=$(stat -c %s "$input")
echo
echo "== 2. speed: $records records ($in_bytes bytes), 40 services, disorder 2 s, 0.5 % up to 30 s behind; $repeat rounds"
if [ "$wait_quiet" -gt 0 ]; then
  deadline=$((SECONDS + wait_quiet))
  while :; do
    b0=$(busy_jiffies); sleep 5; b1=$(busy_jiffies)
    use=$(awk -v a="$b0" -v b="$b1" -v t="$tck" -v c="$(nproc)" 'BEGIN {printf "%.0f", 100 * (b - a) / t / 5 / c}')
    if [ "$use" -lt 10 ]; then echo "machine quiet: $use % busy over 5 s"; break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then echo "machine still $use % busy after ${wait_quiet} s: going on"; break; fi
  done
fi
printf '%-5s %-8s %8s %9s %8s %9s %7s\n' round engine wall_s rss_MiB cpu_s others_s load1
engines=(pinflow duckdb polars)
declare -A walls rss
for r in $(seq "$repeat"); do
  for k in 0 1 2; do
    e=${engines[$(((k + r - 1) % 3))]}
    o="$work/$e.parquet" p="$work/$e.r$r"
    rm -rf "$o" "$o".deadletter.ndjson
    sync
    load=$(cut -d' ' -f1 /proc/loadavg)
    set_cmd "$e" "$input" "$o"
    b0=$(busy_jiffies) t0=$(date +%s.%N)
    /usr/bin/time -v -o "$p.time" "${cmd[@]}" >"$p.out" 2>"$p.err" ||
      { echo "window-bench: $e failed (round $r):" >&2; tail -20 "$p.err" >&2; exit 1; }
    t1=$(date +%s.%N) b1=$(busy_jiffies)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$p.time")
    cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$p.time")
    others=$(awk -v a="$b0" -v b="$b1" -v t="$tck" -v c="$cpu" 'BEGIN {x = (b - a) / t - c; printf "%.2f", x < 0 ? 0 : x}')
    mib=$(awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}')
    walls[$e]+="$wall " rss[$e]+="$mib "
    printf '%-5s %-8s %8s %9s %8s %9s %7s\n' "$r" "$e" "$wall" "$mib" "$cpu" "$others" "$load"
  done
done
late=$(wc -l <"$work/pinflow.parquet.deadletter.ndjson" 2>/dev/null || echo 0)
echo "(pinflow dead-lettered $late late records of $records; DuckDB and Polars count them in their windows)"
echo
printf '%-8s %10s %12s %9s\n' engine wall_s records/s rss_MiB
for e in "${engines[@]}"; do
  w=$(med "${walls[$e]}") m=$(med "${rss[$e]}")
  printf '%-8s %10.3f %12.0f %9.1f\n' "$e" "$w" "$(awk -v n="$records" -v w="$w" 'BEGIN {print n / w}')" "$m"
done
pw=$(med "${walls[pinflow]}") dw=$(med "${walls[duckdb]}") lw=$(med "${walls[polars]}")
pm=$(med "${rss[pinflow]}") dm=$(med "${rss[duckdb]}") lm=$(med "${rss[polars]}")
awk -v p="$pw" -v d="$dw" -v l="$lw" -v pm="$pm" -v dm="$dm" -v lm="$lm" 'BEGIN {
  if (d < l) { f = d; fname = "DuckDB" } else { f = l; fname = "Polars" }
  if (dm < lm) { s = dm; sname = "DuckDB" } else { s = lm; sname = "Polars" }
  speed = f / p; mem = pm / (s / 5)
  printf "speed:  pinflow is %.2fx the faster peer (%s)   [target >= 1.5x: %s]\n", speed, fname, (speed >= 1.5) ? "met" : "NOT met"
  printf "memory: pinflow peak RSS %.1f MiB = %.2f of a fifth of the smaller peer (%s, %.1f MiB; 1/%.1f)   [target <= 1: %s]\n", pm, mem, sname, s, s / pm, (mem <= 1) ? "met" : "NOT met"
}'

# --- 3. NDJSON pages with and without windows ---------------------------------------------
if [ "$pages" = 1 ]; then
  echo
  echo "== 3. NDJSON pages: pinflow bench --records $pages_records --per-response 1000, without and with windows; $repeat rounds"
  field() { sed -n "s/.*\"$1\":\([-0-9.e]*\).*/\1/p" <<<"$2"; }
  declare -A rates
  for r in $(seq "$repeat"); do
    for v in plain windows; do
      extra=()
      [ "$v" = plain ] || extra=("${PAGES_WINDOW[@]}")
      out=$("$bin" bench --json --records "$pages_records" --per-response 1000 "${extra[@]}" 2>"$work/bench-$v.err") ||
        { tail -20 "$work/bench-$v.err" >&2; echo "window-bench: pinflow bench ${extra[*]} failed" >&2; exit 1; }
      # records/s from the records the simulator served and the elapsed time: with windows
      # `records_per_s` counts records written, and the records become window rows.
      rate=$(awk -v n="$(field records "$out")" -v e="$(field elapsed_s "$out")" 'BEGIN {printf "%.0f", n / e}')
      rates[$v]+="$rate "
      printf '%-5s %-8s %10.0f records/s  peak RSS %s B  dead-lettered %s\n' "$r" "$v" "$rate" \
        "$(field peak_rss_bytes "$out")" "$(field records_dead_lettered "$out")"
    done
  done
  a=$(med "${rates[plain]}") b=$(med "${rates[windows]}")
  awk -v a="$a" -v b="$b" 'BEGIN {c = 1 - b / a
    printf "pages: %.0f records/s without windows, %.0f with: windows cost %.1f %%   [target <= 15 %%: %s]\n", a, b, 100 * c, (c <= 0.15) ? "met" : "NOT met" }'
fi
echo
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (others_s: CPU seconds other processes used during a run)"

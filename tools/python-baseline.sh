#!/usr/bin/env bash
# pinflow against the Python design it replaces, and against wrk, in one run, against one
# `pinflow sim` process on a free loopback port.
#
#   tools/python-baseline.sh [--records N] [--repeat R] [--wrk-records M] [--wrk-duration D]
#                            [--no-python] [--no-wrk] [--variant 'FLAGS'] [--keep DIR] [--bin PATH]
#
# --bin PATH uses that pinflow binary instead of building target/release/pinflow.
#
# 1. Python vs pinflow: R times, interleaved, the Python pipeline (tools/python-baseline/
#    pipeline.py: the article's asyncio + aiohttp + thread pool + process pool + pyarrow design)
#    and then `pinflow run` fetch records 1..N one per request (default 20,000) and write
#    Parquet. The first repetition checks that both files hold the same rows and statistics.
#    Prints records/s of each run, the medians and the multiple (pinflow / python).
# 2. wrk vs pinflow: R times, interleaved, `wrk -t1 -c64 -d D` (default 10s) on the
#    simulator's one-record URLs (the Lua script walks ids 1..M like pinflow does), then
#    `pinflow run` over M records (default 200,000), then the same with --variant's flags
#    (default '--pin-shared --compute-threads 1': the thread plan before pinflow stopped pinning
#    threads that share a core). Prints requests/s and the ratios.
#    wrk is installed with apt-get when missing and we are root; otherwise this part is skipped.
#
# Every phase also prints the CPU seconds of the client and of the simulator: on a small
# machine they share the cores, and the split says who limited the figure.
# Everything stays on 127.0.0.1. Needs python3 (with venv) and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
. tools/lib.sh

records=20000 repeat=3 wrk_records=200000 wrk_duration=10s do_wrk=1 do_python=1 keep="" bin=""
variant="--pin-shared --compute-threads 1"
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --wrk-records) wrk_records=$2; shift 2 ;;
    --wrk-duration) wrk_duration=$2; shift 2 ;;
    --no-wrk) do_wrk=0; shift ;;
    --no-python) do_python=0; shift ;;
    --variant) variant=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "python-baseline.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

here=tools/python-baseline
venv=target/python-baseline-venv
py=$venv/bin/python

# --- the virtual environment, re-created when requirements.txt changes (not with --no-python)
[ "$do_python" = 0 ] || ensure_venv "$venv" "$here/requirements.txt"

# --- pinflow (--bin PATH skips the build and uses that binary) ---
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/pinflow
fi

work=${keep:-$(mktemp -d "${TMPDIR:-/tmp}/pinflow-pybase.XXXXXX")}
mkdir -p "$work"
sim_pid=""
cleanup() {
  if [ -n "$sim_pid" ] && kill -0 "$sim_pid" 2>/dev/null; then
    kill -TERM "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  [ -n "$keep" ] || rm -rf "$work"
}
trap cleanup EXIT

"$bin" sim --addr 127.0.0.1:0 --records "$records" >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do
  grep -q '^base ' "$work/sim.out" 2>/dev/null && break
  sleep 0.1
done
base=$(awk '/^base /{print $2}' "$work/sim.out")
[ -n "$base" ] || { echo "pinflow sim did not start:" >&2; cat "$work/sim.err" >&2; exit 1; }

tck=$(getconf CLK_TCK)
sim_cpu() { awk -v t="$tck" '{printf "%.2f", ($14 + $15) / t}' "/proc/$sim_pid/stat"; }
# CPU seconds the whole machine has been busy (user, nice, system, irq, softirq).
busy() { awk -v t="$tck" '/^cpu /{printf "%.2f", ($2 + $3 + $4 + $7 + $8) / t}' /proc/stat; }
mark() { m_sim=$(sim_cpu); m_all=$(busy); }
# row RUN WHO RATE FILE: one table line. client: the measured command and its children;
# sim: the simulator; others: every other process on the machine (builds, editors...), all in
# CPU seconds since the last `mark`. A large "others" means that run was disturbed.
row() {
  local sim all client others
  sim=$(echo "$(sim_cpu) - $m_sim" | bc)
  all=$(echo "$(busy) - $m_all" | bc)
  client=$(cpu_of "$4")
  others=$(echo "x = $all - $client - $sim; if (x < 0) x = 0; x" | bc)
  printf '%-4s %-16s %12.0f %8s %10s %8.2f %8.2f\n' "$1" "$2" "$3" "$(wall_of "$4")" "$client" "$sim" "$others"
}
header() { printf '%-4s %-16s %12s %8s %10s %8s %8s\n' run who "$1" wall_s client_cpu sim_cpu others; }
div() { printf '%.1f' "$(echo "scale=6; $1" | bc)"; }  # div EXPR: one decimal, rounded
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# timed FILE CMD...: runs CMD (its stdout to FILE.out, stderr to FILE.err) and writes
# "wall user sys" (user and sys include waited-for children: the process pool) to FILE.time.
timed() {
  local f=$1; shift
  local TIMEFORMAT='%R %U %S'
  { time "$@" >"$f.out" 2>"$f.err"; } 2>"$f.time"
}
cpu_of() { awk '{printf "%.2f", $2 + $3}' "$1.time"; }
wall_of() { awk '{printf "%.2f", $1}' "$1.time"; }
pf_elapsed() { sed -n 's/^elapsed *\([0-9.]*\) s.*/\1/p' "$1.out"; }
pf_requests() { sed -n 's/^requests *\([0-9]*\) .*/\1/p' "$1.out"; }
pf_written() { sed -n 's/.*written \([0-9]*\) .*/\1/p' "$1.out"; }

cores=$(nproc)
echo "machine: $cores cores ($(uname -m)), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "simulator: $base (pid $sim_pid, one process; clients run beside it on the same cores)"
echo

# ======================= 1. Python pipeline vs pinflow ==================================
# "python" is the article's design with the article's numbers (4 consumers, thread pool 4,
# process pool 4, statistics.variance); "python-tuned" is the same design given its best
# settings found on this machine (16 consumers, numpy statistics), so the multiple does not
# hinge on the article's choices.
if [ "$do_python" = 1 ]; then
  tuned_args=(--consumers 16 --stats numpy)
  template="$base/logs/{1..$records}.json"
  echo "== 1. the Python design vs pinflow: $records records, one per request, $repeat runs interleaved"
  echo "   python:       $py $here/pipeline.py --urls '$template' --out PY.parquet"
  echo "   python-tuned: the same with ${tuned_args[*]}"
  echo "   pinflow:      $bin run --urls '$template' --out PF.parquet --progress never --log-level warn"
  header records/s
  py_rates=() pt_rates=() pf_rates=()
  run_python() { # run_python FILE [ARGS...]: prints records/s
    local f=$1; shift
    timed "$f" "$py" "$here/pipeline.py" --urls "$template" --out "$f.parquet" "$@" || {
      echo "python pipeline failed:" >&2; tail -20 "$f.err" >&2; exit 1; }
    sed -n 's/.*"records_per_s": \([0-9.]*\).*/\1/p' "$f.out"
  }
  for i in $(seq "$repeat"); do
    mark; rate=$(run_python "$work/py")
    py_rates+=("$rate"); row "$i" python "$rate" "$work/py"

    mark; rate=$(run_python "$work/pt" "${tuned_args[@]}")
    pt_rates+=("$rate"); row "$i" python-tuned "$rate" "$work/pt"

    mark
    timed "$work/pf" "$bin" run --urls "$template" --out "$work/pf.parquet" --progress never \
      --log-level warn || { echo "pinflow run failed:" >&2; cat "$work/pf.out" "$work/pf.err" >&2; exit 1; }
    rate=$(sed -n 's/^elapsed .*, \([0-9]*\) records\/s/\1/p' "$work/pf.out")
    pf_rates+=("$rate"); row "$i" pinflow "$rate" "$work/pf"

    if [ "$i" = 1 ]; then
      for f in py pt; do
        "$py" "$here/verify.py" "$work/$f.parquet" "$work/pf.parquet" "$records" || {
          echo "the pipelines disagree: not a comparison of equal work" >&2; exit 1; }
      done
    fi
    rm -f "$work/py.parquet" "$work/pt.parquet" "$work/pf.parquet"
  done
  py_med=$(printf '%s\n' "${py_rates[@]}" | median)
  pt_med=$(printf '%s\n' "${pt_rates[@]}" | median)
  pf_med=$(printf '%s\n' "${pf_rates[@]}" | median)
  ratios() { # ratios NAME_OF_PYTHON_ARRAY: pinflow / python per run
    local -n a=$1
    for k in "${!a[@]}"; do printf '%sx ' "$(div "${pf_rates[$k]} / ${a[$k]}")"; done
  }
  echo "median records/s: python $py_med, python-tuned $pt_med, pinflow $pf_med"
  echo "pinflow / python:       $(div "$pf_med / $py_med")x  (per run: $(ratios py_rates))"
  echo "pinflow / python-tuned: $(div "$pf_med / $pt_med")x  (per run: $(ratios pt_rates))"
  echo

fi

# ======================= 2. wrk vs pinflow ================================================
if [ "$do_wrk" = 1 ] && ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing wrk (apt-get)" >&2
    { apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; } >/dev/null 2>&1 || true
  fi
  command -v wrk >/dev/null || { echo "wrk is not installed and cannot be: skipping the wrk comparison"; do_wrk=0; }
fi
if [ "$do_wrk" = 1 ]; then
  read -r -a variant_args <<<"$variant"
  template="$base/logs/{1..$wrk_records}.json"
  echo "== 2. wrk vs pinflow: one record per request, $repeat runs interleaved"
  echo "   wrk:     wrk -t1 -c64 -d$wrk_duration -s $here/logs.lua $base -- $wrk_records   (ids 1..$wrk_records in turn)"
  echo "   pinflow: $bin run --urls '$template' --out PF.parquet --progress never --log-level warn"
  echo "   pinflow+: the same with $variant"
  echo "   (wrk only sends requests and reads responses; pinflow also parses, computes and writes Parquet)"
  header requests/s
  wrk_rates=() pfw_rates=() pfn_rates=()
  run_pinflow() { # run_pinflow FILE [ARGS...]: prints requests/s (requests / pinflow's elapsed)
    local f=$1; shift
    timed "$f" "$bin" run --urls "$template" --out "$f.parquet" --progress never --log-level warn "$@" || {
      echo "pinflow run failed:" >&2; cat "$f.out" "$f.err" >&2; exit 1; }
    rm -f "$f.parquet"
    [ "$(pf_written "$f")" = "$wrk_records" ] || {
      echo "pinflow wrote $(pf_written "$f") of $wrk_records" >&2; exit 1; }
    echo "scale=1; $(pf_requests "$f") / $(pf_elapsed "$f")" | bc
  }
  for i in $(seq "$repeat"); do
    mark
    timed "$work/wrk" wrk -t1 -c64 -d"$wrk_duration" -s "$here/logs.lua" "$base" -- "$wrk_records"
    rate=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/wrk.out")
    wrk_rates+=("$rate"); row "$i" wrk "$rate" "$work/wrk"
    errs=$(grep -E 'Non-2xx|Socket errors' "$work/wrk.out" || true)
    [ -z "$errs" ] || echo "   wrk reported: $errs"

    mark; rate=$(run_pinflow "$work/pfw")
    pfw_rates+=("$rate"); row "$i" pinflow "$rate" "$work/pfw"

    mark; rate=$(run_pinflow "$work/pfn" "${variant_args[@]}")
    pfn_rates+=("$rate"); row "$i" "pinflow+" "$rate" "$work/pfn"
  done
  wrk_med=$(printf '%s\n' "${wrk_rates[@]}" | median)
  pfw_med=$(printf '%s\n' "${pfw_rates[@]}" | median)
  pfn_med=$(printf '%s\n' "${pfn_rates[@]}" | median)
  percents() { # percents NAME_OF_PINFLOW_ARRAY: pinflow / wrk per run
    local -n a=$1
    for k in "${!wrk_rates[@]}"; do printf '%s%% ' "$(div "100 * ${a[$k]} / ${wrk_rates[$k]}")"; done
  }
  echo "median requests/s: wrk $wrk_med, pinflow $pfw_med, pinflow+ ($variant) $pfn_med"
  echo "pinflow / wrk:  $(div "100 * $pfw_med / $wrk_med")%  (per run: $(percents pfw_rates))"
  echo "pinflow+ / wrk: $(div "100 * $pfn_med / $wrk_med")%  (per run: $(percents pfn_rates))"
fi

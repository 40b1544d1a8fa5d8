#!/usr/bin/env bash
# File → Parquet: pinflow against DuckDB and Polars on the same NDJSON files, with the same
# statistics, in one run.
#
#   tools/file-compare.sh [--records N] [--files F] [--repeat R] [--data sim|distinct]
#                         [--engines pinflow,duckdb,polars] [--pinflow-extra 'FLAGS']
#                         [--no-threads] [--wait-quiet SECONDS] [--bin PATH] [--out DIR]
#
# Input (made once, cached in target/file-compare-data/DATA-N-F/; default 1,000,000 records in
# 8 files, ~0.86 KB a record):
#   sim       pinflow's own workload: `pinflow sim` NDJSON pages fetched with curl, the id's
#             fixed-width padding removed. Its 1,024 record variants repeat.
#   distinct  the same shape with every value drawn afresh (tools/file-compare/gen_distinct.py).
# Engines, each a separate process with its default thread count (all cores):
#   pinflow   pinflow run --files 'DIR/*.ndjson' --out X.parquet --progress never
#             (built-in log layout; default statistics count, mean, min, max, variance)
#   duckdb    COPY (SELECT *, len(values), list_avg, list_min, list_max, list_var_samp FROM
#             read_ndjson(..., explicit columns)) TO 'x.parquet' (FORMAT parquet, COMPRESSION snappy)
#   polars    scan_ndjson(schema=...).with_columns(list.len/mean/min/max/var(ddof=1), ts parsed
#             to a UTC datetime).sink_parquet(compression='snappy')
# (tools/file-compare/engines.py). All write ts as a UTC µs timestamp and snappy Parquet.
#   pinflow+  with --pinflow-extra 'FLAGS': pinflow once more with those flags added (e.g.
#             '--queue-capacity 2'; words NAME=VALUE, such as PINFLOW_FETCH_BATCH_MAX_BYTES=262144,
#             go to its environment), as one more engine; the ratios stay against plain pinflow.
#
# R rounds (default 3), the engines' order rotated each round; each run under
# /usr/bin/time (wall clock, peak RSS, CPU). Before each run: the old output is removed,
# `sync`, and the load average and the machine's CPU use by other processes during the run are
# recorded (the machine is shared). After round 1, tools/file-compare/verify.py checks that
# the three files hold the same ids and statistics (1e-9 relative). Prints every run, then a
# table of medians with pinflow's speed and memory as ratios to each engine; then (unless
# --no-threads) one extra, untimed run per engine with per-thread CPU time from /proc.
# --wait-quiet S: before the rounds, wait up to S seconds for a 5-second window in which other
# processes use under 10 % of the machine (then go on regardless).
# --out DIR: where outputs and logs go (default target/file-compare-out; emptied first). The
# Parquet outputs are deleted once measured (round 1's after the check); the logs of every run
# stay. Round 1 needs free space for one output per engine (up to the input's size each).
# --bin PATH: that pinflow binary; otherwise target/release/pinflow, built with
# `cargo build --release` only when missing or older than src/, Cargo.toml or Cargo.lock.
# Either way every run uses a copy taken at the start, so a build elsewhere changes nothing.
# Needs python3 (venv), curl; installs `time` with apt-get when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
. tools/lib.sh

records=1000000 nfiles=8 repeat=3 data=sim engines=pinflow,duckdb,polars threads=1 bin="" extra="" wait_quiet=0 out=target/file-compare-out
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --files) nfiles=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --engines) engines=$2; shift 2 ;;
    --pinflow-extra) extra=$2; shift 2 ;;
    --no-threads) threads=0; shift ;;
    --wait-quiet) wait_quiet=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "file-compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$data" in sim|distinct) ;; *) echo "file-compare.sh: --data sim|distinct" >&2; exit 2 ;; esac
if [ $((records % nfiles)) -ne 0 ]; then
  echo "file-compare.sh: --records must be a multiple of --files" >&2; exit 2
fi
IFS=, read -r -a engine_list <<<"$engines"
[ -z "$extra" ] || engine_list+=("pinflow+")

here=tools/file-compare
venv=target/file-compare-venv
py=$venv/bin/python

# --- /usr/bin/time ---
if [ ! -x /usr/bin/time ]; then
  echo "== installing time (apt-get)" >&2
  apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
fi

# --- the virtual environment, re-created when requirements.txt changes ---
ensure_venv "$venv" "$here/requirements.txt"

# --- pinflow: built only when missing or older than the sources (--bin PATH: that binary) ---
if [ -z "$bin" ]; then
  bin=target/release/pinflow
  if [ ! -x "$bin" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$bin" -print -quit)" ]; then
    echo "== cargo build --release" >&2
    cargo build --release --quiet
  fi
fi

# --- the input, generated once ---
per_file=$((records / nfiles))
dir=target/file-compare-data/$data-$records-$nfiles
if [ ! -f "$dir/.done" ]; then
  echo "== generating $records records ($data) in $nfiles files under $dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "$data" = sim ]; then
    page=1000
    [ $((per_file % page)) -eq 0 ] || page=$per_file
    simdir=$(mktemp -d "${TMPDIR:-/tmp}/pinflow-filecmp-sim.XXXXXX")
    "$bin" sim --addr 127.0.0.1:0 --page-size "$page" >"$simdir/out" 2>"$simdir/err" &
    sim_pid=$!
    for _ in $(seq 100); do grep -q '^base ' "$simdir/out" 2>/dev/null && break; sleep 0.1; done
    base=$(awk '/^base /{print $2}' "$simdir/out")
    [ -n "$base" ] || { echo "pinflow sim did not start:" >&2; cat "$simdir/err" >&2; exit 1; }
    pages=$((per_file / page))
    for f in $(seq 0 $((nfiles - 1))); do
      # Page j holds ids (j-1)*page+1 ..= j*page. The simulator pads each id to 20 bytes with
      # JSON whitespace (so it can patch ids in place); a real log would not, so it is cut.
      curl -sf "$base/pages/[$((f * pages + 1))-$(((f + 1) * pages))].ndjson" |
        sed 's/^{"id": */{"id":/' >"$dir/part-$(printf %02d "$f").ndjson"
    done
    kill -TERM "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
    rm -rf "$simdir"
  else
    "$py" "$here/gen_distinct.py" "$dir" "$records" "$nfiles"
  fi
  lines=$(cat "$dir"/*.ndjson | wc -l)
  [ "$lines" -eq "$records" ] || { echo "generated $lines lines, wanted $records" >&2; exit 1; }
  touch "$dir/.done"
fi
glob="$PWD/$dir/*.ndjson"
in_bytes=$(cat "$dir"/*.ndjson | wc -c) # also warms the page cache for the first run

if [ -d "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/.file-compare" ]; then
  echo "file-compare.sh: $out is not empty and not an earlier output of this script" >&2; exit 2
fi
rm -rf "$out"
mkdir -p "$out"
touch "$out/.file-compare"
# Every run uses this copy: other builds replacing target/release/pinflow mid-run change nothing.
src_bin=$bin
cp "$bin" "$out/pinflow-bin"
bin=$out/pinflow-bin
trap 'rm -f "$out"/*.parquet "$out/pinflow-bin"' EXIT

# Round 1 keeps one output per engine (each up to about the input's size) for the check.
need=$(( in_bytes * ${#engine_list[@]} / 1024 ))
free=$(df -Pk "$out" | awk 'NR==2 {print $4}')
if [ "$free" -lt "$need" ]; then
  echo "file-compare.sh: $((free / 1024)) MiB free under $out, round 1 needs about $((need / 1024)) MiB" >&2
  exit 1
fi

tck=$(getconf CLK_TCK)
busy_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

set_cmd() { # set_cmd ENGINE OUTFILE: the engine's command line, in the array cmd
  case "$1" in
    pinflow) cmd=("$bin" run --files "$glob" --out "$2" --progress never --log-level warn) ;;
    pinflow+)
      local w env_words=() flag_words=()
      for w in $extra; do # FLAGS are split into words on purpose
        case "$w" in [A-Z]*=*) env_words+=("$w") ;; *) flag_words+=("$w") ;; esac
      done
      cmd=(env "${env_words[@]}" "$bin" run --files "$glob" --out "$2" --progress never
        --log-level warn "${flag_words[@]}") ;;
    duckdb|polars) cmd=("$py" "$here/engines.py" "$1" "$glob" "$2") ;;
    *) echo "file-compare.sh: unknown engine $1" >&2; exit 2 ;;
  esac
}

cores=$(nproc)
echo "machine: $cores cores ($(uname -m)), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "input:   $records records ($data) in $nfiles files, $in_bytes bytes ($(awk -v b="$in_bytes" -v n="$records" 'BEGIN {printf "%.0f", b/n}') B/record): $glob"
tree=$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)
echo "pinflow: $src_bin ($(date -u -r "$src_bin" +%FT%TZ)), HEAD $(git rev-parse --short HEAD 2>/dev/null)$([ "$tree" -eq 0 ] || echo ", $tree source files modified now")"
echo "versions: $("$bin" --version 2>/dev/null | head -1), duckdb $("$py" -c 'import duckdb; print(duckdb.__version__)'), polars $("$py" -c 'import polars; print(polars.__version__)')"
for e in "${engine_list[@]}"; do set_cmd "$e" "$out/$e.parquet"; printf '  %-8s %s\n' "$e:" "${cmd[*]}"; done
if [ "$wait_quiet" -gt 0 ]; then
  deadline=$((SECONDS + wait_quiet))
  while :; do
    b0=$(busy_jiffies); sleep 5; b1=$(busy_jiffies)
    use=$(awk -v a="$b0" -v b="$b1" -v t="$tck" -v c="$(nproc)" 'BEGIN {printf "%.0f", 100 * (b - a) / t / 5 / c}')
    if [ "$use" -lt 10 ]; then echo "machine quiet: $use % busy over 5 s"; break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then echo "machine still $use % busy after waiting ${wait_quiet} s: going on"; break; fi
  done
fi
echo
echo "== $repeat rounds, engines' order rotated each round"
printf '%-5s %-8s %9s %10s %8s %9s %8s %10s %8s %7s %9s\n' \
  round engine wall_s records/s MB/s rss_MiB cpu_s query_s out_MB load1 others_s

n=${#engine_list[@]}
declare -A rates rss mbs queries others_all
contended=0
for r in $(seq "$repeat"); do
  for k in $(seq 0 $((n - 1))); do
    e=${engine_list[$(((k + r - 1) % n))]}
    o="$out/$e.parquet" p="$out/$e.r$r"
    rm -f "$o" "$o".deadletter.ndjson
    sync
    load=$(cut -d' ' -f1 /proc/loadavg)
    b0=$(busy_jiffies)
    set_cmd "$e" "$o"
    /usr/bin/time -f '%e %M %U %S' -o "$p.time" "${cmd[@]}" >"$p.out" 2>"$p.err" ||
      { echo "$e failed (round $r):" >&2; tail -20 "$p.err" >&2; exit 1; }
    b1=$(busy_jiffies)
    read -r wall kb user sys <"$p.time"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
    others=$(awk -v a="$b0" -v b="$b1" -v t="$tck" -v c="$cpu" 'BEGIN {x = (b - a) / t - c; printf "%.2f", x < 0 ? 0 : x}')
    rate=$(awk -v n="$records" -v w="$wall" 'BEGIN {printf "%.0f", n / w}')
    mb=$(awk -v b="$in_bytes" -v w="$wall" 'BEGIN {printf "%.1f", b / w / 1e6}')
    mib=$(awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}')
    # query_s: the work without process start-up: pinflow's own `elapsed`, the Python
    # engines' query after their imports.
    query=$(sed -n -e 's/^query_s //p' -e 's/^elapsed *\([0-9.]*\) s.*/\1/p' "$p.out"); query=${query:--}
    size=$(awk -v s="$(stat -c %s "$o")" 'BEGIN {printf "%.1f", s / 1e6}')
    rates[$e]+="$rate " rss[$e]+="$mib " mbs[$e]+="$mb " queries[$e]+="$query " others_all[$e]+="$others "
    # Contended: other processes took more than a tenth of the machine during the run.
    if awk -v o="$others" -v w="$wall" -v c="$(nproc)" 'BEGIN {exit !(o > 0.1 * w * c)}'; then
      contended=$((contended + 1))
    fi
    printf '%-5s %-8s %9s %10s %8s %9s %8s %10s %8s %7s %9s\n' \
      "$r" "$e" "$wall" "$rate" "$mb" "$mib" "$cpu" "$query" "$size" "$load" "$others"
    # Outputs are as large as the input: keep only round 1's, for the check below.
    [ "$r" = 1 ] || rm -f "$o"
  done
  if [ "$r" = 1 ] && [ "${engine_list[0]}" = pinflow ] && [ "$n" -gt 1 ]; then
    echo "-- verify (round 1 outputs): same rows, same statistics"
    args=()
    for e in "${engine_list[@]:1}"; do args+=("$e=$out/$e.parquet"); done
    "$py" "$here/verify.py" "$records" "$out/pinflow.parquet" "${args[@]}" ||
      { echo "file-compare.sh: the outputs differ; figures would not compare equal work" >&2; exit 1; }
  fi
  if [ "$r" = 1 ]; then rm -f "$out"/*.parquet; fi
done

if [ -f "$out/pinflow.r$repeat.out" ]; then
  echo
  echo "pinflow summary (last round):"
  sed 's/^/  /' "$out/pinflow.r$repeat.out"
fi
echo
echo "== medians of $repeat runs (records/s and MB/s from each process's wall clock, imports included)"
med() { tr ' ' '\n' <<<"$1" | { grep -v '^-\?$' || true; } | median; }
pf_rate=$(med "${rates[pinflow]:-}") pf_rss=$(med "${rss[pinflow]:-}")
printf '%-8s %10s %8s %9s %10s %9s %14s %18s\n' engine records/s MB/s rss_MiB query_s others_s "pinflow speed" "pinflow memory"
for e in "${engine_list[@]}"; do
  rt=$(med "${rates[$e]}") m=$(med "${rss[$e]}") mb=$(med "${mbs[$e]}") q=$(med "${queries[$e]}")
  ot=$(med "${others_all[$e]}")
  [ -z "$q" ] || q=$(printf '%.3f' "$q")
  ot=$(printf '%.2f' "$ot")
  if [ "${e%+}" = pinflow ] || [ -z "$pf_rate" ]; then sp=- mem=-
  else
    sp=$(awk -v a="$pf_rate" -v b="$rt" 'BEGIN {printf "%.2fx", a / b}')
    mem=$(awk -v a="$pf_rss" -v b="$m" 'BEGIN {printf "%.2fx (1/%.1f)", a / b, b / a}')
  fi
  printf '%-8s %10.0f %8.1f %9.1f %10s %9s %14s %18s\n' "$e" "$rt" "$mb" "$m" "${q:--}" "$ot" "$sp" "$mem"
done
echo "(pinflow speed: pinflow's records/s over the engine's; pinflow memory: pinflow's peak RSS"
echo " over the engine's. Target (issue 8): speed >= 1x, memory <= 0.1x.)"
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg) on $cores cores. others_s: CPU seconds other"
echo "processes used during a run (from /proc/stat, less the run's own CPU)."
if [ "$contended" -gt 0 ]; then
  echo "WARNING: in $contended of $((repeat * n)) runs other processes used more than 10 % of the machine:"
  echo "         the figures are contended; rerun when the machine is quieter."
fi

if [ "$threads" = 1 ]; then
  echo
  echo "== where the CPU went: one extra untimed run per engine, per-thread CPU from /proc"
  for e in "${engine_list[@]}"; do
    o="$out/$e.parquet"
    rm -f "$o"; sync
    echo "  $e (load $(cut -d' ' -f1 /proc/loadavg)):"
    set_cmd "$e" "$o"
    "$py" "$here/threads.py" "$out/$e.threads" "${cmd[@]}"
    rm -f "$o"
  done
fi
# The EXIT trap removes the outputs and the binary's copy; the logs of every run stay in $out.

#!/usr/bin/env bash
# Object-storage benchmark (issue 20): NDJSON pages from the built-in simulator through
# `pinflow bench` to a local directory and to s3:// on a local store on loopback, RUNS times
# each, alternating; prints the median wall time of each (the s3 run's includes every upload:
# the run ends only when the last object exists), the throughput ratio s3/local (the bar:
# at least 0.9), and the peak disk use of the staging directory over the s3 runs (sampled
# every 20 ms; the bound is output.s3.staging_max_bytes, STAGING_MAX_BYTES here).
#
#   tools/s3-bench.sh [PINFLOW_BINARY]
#
# Without a binary it runs `cargo build --release`. The store is STORE: `moto` (default; its
# server from target/moto-venv, tools/s3/requirements.txt, created here when missing) or
# `s3s-fs` (an S3 server in Rust over a directory, checking signatures; from
# tools/s3/install-s3s-fs.sh, run here when missing): on two shared cores the store's own CPU
# is part of what is measured, and moto, in Python, takes more of it. Environment: RECORDS (default
# 200000), PER_RESPONSE (records per page, default 100), RUNS (default 5), ROTATE_ROWS (default
# 50000: several objects, so uploads overlap the pipeline), STAGING_MAX_BYTES (default 64MiB).
# Network: 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${1:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=$ROOT/target/release/pinflow
fi
RECORDS=${RECORDS:-200000}
PER_RESPONSE=${PER_RESPONSE:-100}
RUNS=${RUNS:-5}
ROTATE_ROWS=${ROTATE_ROWS:-50000}
STAGING_MAX_BYTES=${STAGING_MAX_BYTES:-64MiB}
VENV=$ROOT/target/moto-venv
if ! "$VENV/bin/python" -c 'import moto, boto3' 2>/dev/null; then
  python3 -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tools/s3/requirements.txt
fi
STORE=${STORE:-moto}
WORK=$(mktemp -d)
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
case $STORE in
  moto)
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/store.log" 2>&1 &
    ;;
  s3s-fs)
    tools/s3/install-s3s-fs.sh >/dev/null
    mkdir -p "$WORK/store"
    target/s3s-fs/bin/s3s-fs --host 127.0.0.1 --port "$PORT" --access-key bench --secret-key bench \
      "$WORK/store" >"$WORK/store.log" 2>&1 &
    ;;
  *) echo "STORE: moto or s3s-fs, not $STORE" >&2; exit 2 ;;
esac
STORE_PID=$!
trap 'kill $STORE_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  "$VENV/bin/python" -c "import boto3; boto3.client('s3').create_bucket(Bucket='bench')" 2>/dev/null && break
  sleep 0.1
done
export PINFLOW_OUTPUT_S3_STAGING_DIR=$WORK/staging
export PINFLOW_OUTPUT_S3_STAGING_MAX_BYTES=$STAGING_MAX_BYTES
now() { date +%s.%N; }
run() { # $1: --out target; prints seconds
  local t0
  t0=$(now)
  "$BIN" bench --records "$RECORDS" --per-response "$PER_RESPONSE" --rotate-rows "$ROTATE_ROWS" \
    --out "$1" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; exit 1; }
  awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# The staging directory's peak size while the s3 runs go on, into $WORK/peak: the bytes of
# its files, every 20 ms, by one Python process (a `du` forked 50 times a second took a
# visible share of the two cores from both runs, and made them noisier).
echo 0 >"$WORK/peak"
"$VENV/bin/python" - "$PINFLOW_OUTPUT_S3_STAGING_DIR" "$WORK/peak" "$WORK/stop-sampling" <<'EOF' &
import os, sys, time
staging, out, stop = sys.argv[1:]
peak = 0
def size(d):
    total = 0
    try:
        for e in os.scandir(d):
            try:
                total += size(e.path) if e.is_dir(follow_symlinks=False) else e.stat().st_size
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return total
while not os.path.exists(stop):
    now = size(staging)
    if now > peak:
        peak = now
        with open(out, "w") as f:
            f.write("%d\n" % peak)
    time.sleep(0.02)
EOF
SAMPLER=$!
trap 'touch "$WORK/stop-sampling"; wait $SAMPLER 2>/dev/null; kill $STORE_PID 2>/dev/null; rm -rf "$WORK"' EXIT
: >"$WORK/local"
: >"$WORK/s3"
for i in $(seq 1 "$RUNS"); do
  mkdir -p "$WORK/local-$i"
  run "$WORK/local-$i/bench.parquet" >>"$WORK/local"
  run "s3://bench/run-$i/" >>"$WORK/s3"
done
L=$(median <"$WORK/local")
S=$(median <"$WORK/s3")
echo "records $RECORDS in pages of $PER_RESPONSE, $RUNS runs each, store $STORE"
echo "local median ${L}s, s3 median ${S}s"
awk -v l="$L" -v s="$S" 'BEGIN { printf "throughput ratio s3/local: %.2f (bar: 0.90)\n", l / s }'
touch "$WORK/stop-sampling"
wait $SAMPLER 2>/dev/null || true
echo "peak staging disk use $(cat "$WORK/peak") bytes (staging_max_bytes $STAGING_MAX_BYTES, plus the files being written)"

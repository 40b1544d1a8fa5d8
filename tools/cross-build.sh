#!/usr/bin/env bash
# tools/cross-build.sh [--profile P] [--no-install] [TARGET...]
#
# Builds the pinflow binary for edge appliances (docs/edge.md, "Building") with the
# `edge` profile (Cargo.toml: fat LTO, one codegen unit, stripped) for
#
#   x86_64-unknown-linux-gnu     x86_64-unknown-linux-musl   (static)
#   aarch64-unknown-linux-gnu    aarch64-unknown-linux-musl  (static)
#
# or only the TARGETs named, copies each to target/dist/pinflow-TARGET and prints a table:
# target, size, stripped size, and what `file` says (static or dynamic). Each binary is also
# started once (`pinflow --version`; aarch64 under qemu-aarch64) to show that it runs.
#
# What it needs and installs itself when missing (Debian/Ubuntu, as root or with sudo):
# gcc-aarch64-linux-gnu + libc6-dev-arm64-cross (C compiler and linker for both aarch64
# targets: `ring` and `zstd-sys` compile C), musl-tools (musl-gcc for x86_64-musl), qemu-user
# (the smoke run), file; and `rustup target add` for the Rust standard libraries. --no-install
# only checks. Linkers and C compilers are set here through environment variables
# (CARGO_TARGET_<TRIPLE>_LINKER, CC_<triple>, AR_<triple>), so no .cargo/config is needed.
#
# aarch64 musl: Debian has no aarch64 musl cross compiler. Rust's musl targets link their own
# (self-contained) musl libc, crt objects and libunwind, so the glibc cross gcc serves as C
# compiler and linker driver: the C code of ring (libc: memcpy, memset) and zstd (malloc,
# calloc, free, memcpy, memmove, memset; checked with nm -u) only needs symbols that musl has,
# and the result is checked below to be statically linked and to run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
. tools/lib.sh
export CARGO_TERM_COLOR=never

PROFILE=edge
INSTALL=1
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "cross-build: unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
           x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
fi


# --- tools: the Debian packages each target needs ------------------------------------------
need_pkgs=()
want() { # want COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 || need_pkgs+=("${@:2}")
}
want file file
for t in "${TARGETS[@]}"; do
  case "$t" in
    aarch64-*) want aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross
               want qemu-aarch64 qemu-user ;;
    x86_64-unknown-linux-musl) want musl-gcc musl-tools ;;
    x86_64-unknown-linux-gnu) want cc gcc ;;
    *) echo "cross-build: unsupported target $t" >&2; exit 2 ;;
  esac
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  need_pkgs=($(printf '%s\n' "${need_pkgs[@]}" | sort -u))
  if [ "$INSTALL" = 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "cross-build: missing ${need_pkgs[*]} (install them, or run without --no-install on Debian)" >&2
    exit 1
  fi
  apt_install cross-build "${need_pkgs[@]}"
fi
if command -v rustup >/dev/null 2>&1; then
  installed=$(rustup target list --installed)
  for t in "${TARGETS[@]}"; do
    if ! grep -qx "$t" <<<"$installed"; then
      [ "$INSTALL" = 1 ] || { echo "cross-build: rustup target $t missing" >&2; exit 1; }
      echo "cross-build: rustup target add $t"
      rustup target add "$t" >/dev/null
    fi
  done
fi

# --- compilers and linkers, per target (cargo and the cc crate read these) -----------------
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CC_x86_64_unknown_linux_musl=musl-gcc
export AR_x86_64_unknown_linux_musl=ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
# The C parts need no stack protector or fortify helpers (glibc-only symbols) in a musl binary.
export CFLAGS_aarch64_unknown_linux_musl="-fno-stack-protector -U_FORTIFY_SOURCE"
export CFLAGS_x86_64_unknown_linux_musl="-fno-stack-protector -U_FORTIFY_SOURCE"

strip_for() {
  case "$1" in aarch64-*) echo aarch64-linux-gnu-strip ;; *) echo strip ;; esac
}
run_for() {
  case "$1" in aarch64-*) echo "qemu-aarch64 -L /usr/aarch64-linux-gnu" ;; *) echo "" ;; esac
}

mkdir -p target/dist
rows=()
for t in "${TARGETS[@]}"; do
  echo "== cargo build --locked --profile $PROFILE --target $t --bin pinflow"
  start=$(date +%s)
  cargo build --locked --profile "$PROFILE" --target "$t" --bin pinflow
  secs=$(( $(date +%s) - start ))
  # cargo's output directory for a profile: `dev` builds go to debug/.
  dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
  out="target/dist/pinflow-$t"
  cp "target/$t/$dir/pinflow" "$out"
  cp "$out" "$out.stripped.tmp"
  "$(strip_for "$t")" "$out.stripped.tmp"
  size=$(stat -c %s "$out")
  ssize=$(stat -c %s "$out.stripped.tmp")
  rm -f "$out.stripped.tmp"
  what=$(file -b "$out")
  case "$what" in
    *"statically linked"*|*"static-pie linked"*) link=static ;;
    *"dynamically linked"*) link=dynamic ;;
    *) link=unknown ;;
  esac
  case "$t" in
    *-musl) [ "$link" = static ] || { echo "cross-build: $out is not static: $what" >&2; exit 1; } ;;
  esac
  # shellcheck disable=SC2046
  version=$($(run_for "$t") "$out" --version 2>&1) ||
    { echo "cross-build: $out does not run: $version" >&2; exit 1; }
  rows+=("$t|$size|$ssize|$link|$secs|$what|$version")
done

mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
echo
echo "profile $PROFILE; binaries in target/dist/"
printf '%-28s %12s %14s %-8s %7s  %s\n' target size stripped linking build_s "runs"
for r in "${rows[@]}"; do
  IFS='|' read -r t size ssize link secs what version <<<"$r"
  printf '%-28s %12s %14s %-8s %7s  %s\n' "$t" "$(mib "$size")" "$(mib "$ssize")" "$link" "$secs" "$version"
done
echo
for r in "${rows[@]}"; do
  IFS='|' read -r t _ _ _ _ what _ <<<"$r"
  printf '%s: %s\n' "$t" "$what"
done

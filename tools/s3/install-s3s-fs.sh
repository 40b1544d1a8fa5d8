#!/usr/bin/env bash
# Installs s3s-fs, an S3 server over a local directory that checks SigV4 signatures (headers
# and presigned query strings), into target/s3s-fs/bin: tests/it/s3_signed.rs runs pinflow's
# uploads and reads against it, and tools/s3-bench.sh can use it as the local store
# (STORE=s3s-fs). Built from crates.io with the Rust toolchain (about two minutes on two
# cores); 0.14.1 is the newest release that builds with rustc 1.95 (0.17 wants 1.96). A test
# server only: nothing of it is linked into pinflow (it runs on tokio).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=0.14.1
BIN=target/s3s-fs/bin/s3s-fs
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
cargo install "s3s-fs@$VERSION" --features binary --locked --root target/s3s-fs --quiet
"$BIN" --version

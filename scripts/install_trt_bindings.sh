#!/usr/bin/env bash
# Install TensorRT's Python bindings of one 10.x and one 11.x release, without their libraries, each
# in a directory of its own (they cannot share a site-packages), for the API check
# test/deploy/test_tensorrt_api.py: it imports them against stub libraries (no TensorRT code runs, no
# GPU needed). Idempotent: a version already in place is not fetched again. Prints what it did.
#   usage: scripts/install_trt_bindings.sh [DEST]   (default .venv/trt-bindings; env STT_TRT_BINDINGS)
set -euo pipefail
cd "$(dirname "$0")/.."
V=$PWD/.venv
DEST=${1:-${STT_TRT_BINDINGS:-$V/trt-bindings}}
# the releases the backend is checked against: keep in step with test/deploy/test_tensorrt_api.py
VERSIONS=(10.16.1.11 11.4.0.106)
for version in "${VERSIONS[@]}"; do
  dir=$DEST/trt${version%%.*}
  if [ -f "$dir/tensorrt_bindings/tensorrt.so" ] && [ -d "$dir/tensorrt_cu12_bindings-$version.dist-info" ]; then
    continue
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  "$V/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" \
    "tensorrt-cu12-bindings==$version" || { echo "install_trt_bindings: pip failed for $version" >&2; exit 1; }
  echo "install_trt_bindings: tensorrt-cu12-bindings $version (bindings only) in $dir"
done

#!/usr/bin/env bash
# Configures and builds qemu-lio and its unit tests into ./build (or $BUILD_DIR).
#   scripts/build.sh           the binary as it is installed (no fault injection)
#   scripts/build.sh --test    the test build: QEMU_LIO_FAULT crash points compiled in
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
faults=OFF
[ "${1:-}" = "--test" ] && faults=ON
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQEMU_LIO_FAULT_INJECTION=$faults >/dev/null
cmake --build "$build_dir" -j "$(nproc)"

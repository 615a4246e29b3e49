#!/bin/bash
# bench/run.sh: the whole benchmark in one command, from a clean checkout (as root).
#
#   bench/run.sh
#
# Builds qemu-lio and the bench helpers, runs the in-VM part (control plane against the
# syscall floor, the seed's shell sequence and targetcli; the LIO data path against raw file
# I/O; a nested-guest comparison; the backends' host CPU per I/O in nested guests) through
# tests/vm/vm-run.sh, runs the native part
# (drop-in pass-through cost, the wrapper's RSS), prints one table and writes
# bench/results/latest.json and bench/results/latest.md. Raw measurements stay in
# build/bench/raw. Takes about 35-40 minutes on 2 cores (TCG), 10 of them the cpu part.
#
# Env (for development; the defaults are the full run):
#   BENCH_PARTS="control profile targetcli dataplane nested cpu"   which in-VM parts to run
#   BENCH_CPU_RUNTIME=4  BENCH_CPU_REPS=1  BENCH_CPU_BACKENDS="vhost-wb vhost-none blk-threads blk-io_uring scsi-threads"
#   BENCH_REPS=5  BENCH_DISKS="1 8 64"  BENCH_TCLI="1:3 8:1" (disks:repetitions)
#   BENCH_FIO_RUNTIME=5  BENCH_DP_MB=1024  BENCH_PT_RUNS=300  BENCH_NATIVE=1
#   BENCH_VM_TIMEOUT=3000  BENCH_VARIANT=0 (1: also time the build with
#                  QEMU_LIO_LINK=$BENCH_VARIANT_LINK, default static: the faster, non-PIE link)
#   BENCH_BUILD=1 (0: no dependency install and no build; time ./build/qemu-lio and the helpers
#                  in ./build/bench as they are, e.g. the test build that just passed its suites)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { echo "bench: $*" >&2; }

# ---- dependencies and builds -----------------------------------------------------------
if [ "${BENCH_BUILD:-1}" = 1 ]; then
  ./scripts/install-deps.sh
  # strace profiles qemu-lio inside the VM; hyperfine is optional (a loop is always run too).
  for p in strace hyperfine; do
    if ! command -v "$p" > /dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" > /dev/null 2>&1 \
        || { apt-get update -qq > /dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
               apt-get install -y -qq --no-install-recommends "$p" > /dev/null 2>&1; } \
        || log "could not install $p; going on without it"
    fi
  done
  BUILD_DIR=build ./scripts/build.sh > /dev/null
  cmake -S bench -B build/bench -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build build/bench -j "$(nproc)" > /dev/null
  # A second link of the same sources, timed beside the real build and labelled as such
  # (default: static-cxx, the PIE with dynamic libc that the static default replaced; see
  # docs/benchmarks.md, "Start-up").
  export QEMU_LIO_ALT=
  if [ "${BENCH_VARIANT:-0}" = 1 ]; then
    cmake -S . -B build/bench/variant -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQEMU_LIO_BUILD_TESTS=OFF \
      -DQEMU_LIO_LINK="${BENCH_VARIANT_LINK:-static}" > /dev/null
    cmake --build build/bench/variant -j "$(nproc)" --target qemu-lio > /dev/null
    QEMU_LIO_ALT=$root/build/bench/variant/qemu-lio
    export BENCH_ALT_LABEL=${BENCH_ALT_LABEL:-QEMU_LIO_LINK=${BENCH_VARIANT_LINK:-static}}
  fi
else
  # QEMU_LIO_ALT=PATH (optional): a second build timed beside ./build/qemu-lio, e.g. another
  # QEMU_LIO_LINK; BENCH_ALT_LABEL names it in the table.
  export QEMU_LIO_ALT=${QEMU_LIO_ALT:-}
  [ -x build/qemu-lio ] && [ -x build/bench/bench-floor ] || { log "BENCH_BUILD=0 needs build/qemu-lio and build/bench"; exit 1; }
fi

QEMU_LIO=$root/build/qemu-lio
BENCH_BIN=$root/build/bench
raw=$root/build/bench/raw
rm -rf "$raw"
mkdir -p "$raw/vm" "$raw/native" bench/results
{
  echo "nproc $(nproc)"
  echo "mem_kb $(awk '/MemTotal/ {print $2}' /proc/meminfo)"
  echo "cpu $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel $(uname -r)"
  echo "date $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD -- src include 2>/dev/null || echo +dirty)"
} > "$raw/native/host-info.txt"

# ---- in the VM -------------------------------------------------------------------------
export QEMU_LIO BENCH_BIN
export BENCH_PARTS=${BENCH_PARTS-control profile targetcli dataplane nested cpu}
export BENCH_REPS=${BENCH_REPS:-5} BENCH_DISKS=${BENCH_DISKS:-1 8 64} BENCH_TCLI=${BENCH_TCLI:-1:3 8:1}
export BENCH_FIO_RUNTIME=${BENCH_FIO_RUNTIME:-5} BENCH_DP_MB=${BENCH_DP_MB:-1024}
scratch_mb=$(( BENCH_DP_MB * 2 > 1024 ? BENCH_DP_MB * 2 : 1024 ))
if [ -n "$BENCH_PARTS" ]; then
  vmtmp=$(mktemp -d /tmp/qemu-lio-bench.XXXXXX)
  trap 'rm -rf "$vmtmp"' EXIT
  log "in-VM part: $BENCH_PARTS (console follows)"
  rc=0
  # A private copy of the harness and of these scripts: bash reads a script as it runs, and
  # a checkout or commit that rewrites one during a 25-minute run would derail it. The VM
  # hides the host's /tmp, so the copy lives in the build tree.
  snap=$root/build/bench/snapshot
  rm -rf "$snap"
  mkdir -p "$snap/tests"
  cp -r bench "$snap/bench"
  cp -r tests/vm "$snap/tests/vm"
  VM_KEEP=1 TMPDIR=$vmtmp VM_ENV="QEMU_LIO QEMU_LIO_ALT BENCH_BIN BENCH_PARTS BENCH_REPS BENCH_DISKS BENCH_TCLI BENCH_FIO_RUNTIME BENCH_DP_MB BENCH_CPU_RUNTIME BENCH_CPU_BACKENDS BENCH_CPU_REPS" \
    "$snap/tests/vm/vm-run.sh" --timeout "${BENCH_VM_TIMEOUT:-3000}" --scratch-mb "$scratch_mb" \
    "$snap/bench/vm-bench.sh" || rc=$?
  for d in "$vmtmp"/vm-run.*; do
    [ -d "$d/io/out/raw" ] && cp -r "$d/io/out/raw/." "$raw/vm/"
    [ -f "$d/console.log" ] && cp "$d/console.log" "$raw/vm/console.log"
  done
  rm -rf "$vmtmp"
  trap - EXIT
  [ "$rc" = 0 ] || { log "the in-VM part failed (status $rc); see $raw/vm/console.log"; exit 1; }
fi

# ---- native ----------------------------------------------------------------------------
if [ "${BENCH_NATIVE:-1}" = 1 ]; then
  log "native part: pass-through and RSS"
  bench/passthrough.sh "$QEMU_LIO" "$BENCH_BIN" "$raw/native" "${BENCH_PT_RUNS:-300}"
fi

# ---- the table -------------------------------------------------------------------------
# The default cache mode is qemu-lio's own (README: writeback).
python3 bench/report.py "$raw" bench/results/latest.json writeback | tee bench/results/latest.md

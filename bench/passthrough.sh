#!/bin/bash
# The native part of the benchmark (no VM): what the drop-in symlink adds to a QEMU call that
# has no vhost-scsi disk, and the wrapper's peak RSS while it supervises a long-running QEMU.
#   passthrough.sh QEMU_LIO BENCH_BIN OUTDIR [RUNS]
# Writes OUTDIR/passthrough-loop.txt (interleaved A/B, one line per run: "real|dropin NS"),
# OUTDIR/passthrough-hyperfine.json (if hyperfine is installed) and OUTDIR/rss-native.txt.
# With QEMU_LIO_ALT set (a second build, an experiment), a third arm "dropin-alt" is timed too.
set -euo pipefail
qemu_lio=$(realpath -e "$1")
bb=$2
out=$3
runs=${4:-300}
mkdir -p "$out"

real=$(command -v qemu-system-x86_64) || { echo "passthrough: no qemu-system-x86_64 on PATH" >&2; exit 1; }
real=$(realpath -e "$real")
dir=$(mktemp -d /tmp/qemu-lio-bench-path.XXXXXX)
trap 'rm -rf "$dir"' EXIT
ln -s "$qemu_lio" "$dir/qemu-system-x86_64"
alt=${QEMU_LIO_ALT:-}
if [ -n "$alt" ]; then
  mkdir "$dir/alt"
  ln -s "$(realpath -e "$alt")" "$dir/alt/qemu-system-x86_64"
fi
# The drop-in is first on PATH; qemu-lio finds the real QEMU further down, skipping itself.
path="$dir:$PATH"
want=$("$real" -version)
got=$(PATH=$path qemu-system-x86_64 -version)
[ "$want" = "$got" ] || { echo "passthrough: the drop-in's -version differs: $got" >&2; exit 1; }
"$real" -version | head -n 1 > "$out/qemu-version.txt"

# Interleaved, so that drift (other VMs on the machine) hits both alike.
: > "$out/passthrough-loop.raw"
for _ in 1 2 3 4 5 6 7 8 9 10; do  # warm-up
  "$real" -version > /dev/null
  PATH=$path qemu-system-x86_64 -version > /dev/null
done
for ((i = 0; i < runs; i++)); do
  "$bb/bench-spawn" -o "$out/passthrough-real.raw" -- "$real" -version > /dev/null
  PATH=$path "$bb/bench-spawn" -o "$out/passthrough-dropin.raw" -- qemu-system-x86_64 -version > /dev/null
  if [ -n "$alt" ]; then
    PATH=$dir/alt:$PATH "$bb/bench-spawn" -o "$out/passthrough-dropin-alt.raw" -- qemu-system-x86_64 -version > /dev/null
  fi
done
{
  awk '{print "real", $3}' "$out/passthrough-real.raw"
  awk '{print "dropin", $3}' "$out/passthrough-dropin.raw"
  [ -z "$alt" ] || awk '{print "dropin-alt", $3}' "$out/passthrough-dropin-alt.raw"
} > "$out/passthrough-loop.txt"
rm -f "$out"/passthrough-*.raw

if command -v hyperfine > /dev/null; then
  PATH=$path hyperfine -N --style none --warmup 20 --runs "$runs" \
    --export-json "$out/passthrough-hyperfine.json" \
    -n real "$real -version" -n dropin "qemu-system-x86_64 -version" > "$out/passthrough-hyperfine.txt" 2>&1
else
  rm -f "$out/passthrough-hyperfine.json"
fi

# Peak RSS while supervising: qemu-lio runs a stand-in that waits for SIGTERM, as a VM would.
# (With no --image, run mode supervises without touching LIO, which is what can run natively;
# the VM part measures the same with 1 and 64 disks provisioned.)
rm -f "$dir/ready"
BENCH_WAIT=1 BENCH_READY=$dir/ready "$qemu_lio" -- "$bb/bench-standin" &
pid=$!
for _ in $(seq 1 100); do [ -e "$dir/ready" ] && break; sleep 0.05; done
echo "0 $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") $(awk '/VmRSS/ {print $2}' "/proc/$pid/status")" > "$out/rss-native.txt"
kill -TERM "$pid"
wait "$pid"

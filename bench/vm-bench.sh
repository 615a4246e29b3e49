#!/bin/bash
# The in-VM part of the benchmark (run by bench/run.sh through tests/vm/vm-run.sh, as root,
# inside the real Debian kernel under TCG). Writes raw measurements under $VM_OUT/raw; the
# host's bench/report.py turns them into the table. Nothing here interprets numbers.
#
# Env (set by run.sh):
#   QEMU_LIO        the qemu-lio binary under test
#   BENCH_BIN       directory of bench-floor, bench-standin, bench-spawn
#   BENCH_PARTS     any of: control profile targetcli dataplane nested cpu   (default: all)
#   BENCH_REPS      repetitions per control-plane point (default 5)
#   BENCH_DISKS     disk counts for the control plane (default "1 8 64")
#   BENCH_TCLI      targetcli points as N:REPS (default "1:3 8:1")
#   BENCH_FIO_RUNTIME  seconds per fio job (default 5)
#   BENCH_DP_MB     data-plane image size in MiB, on $SCRATCH (default 1024)
#   BENCH_CPU_RUNTIME  seconds per fio job in the cpu part's nested guests (default 4)
#   BENCH_CPU_BACKENDS the cpu part's backends (default: all five, see cpu_per_io)
#   BENCH_CPU_REPS  nested boots per backend (default 1; about 2 minutes each)
#   QEMU_LIO_ALT    optional second build of qemu-lio (an experiment, e.g. with the C++
#                   runtime linked statically), timed beside the first
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tests/vm/lib.sh
. "$here/../tests/vm/lib.sh"
set +e

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO}
BB=${BENCH_BIN:?set BENCH_BIN}
PARTS=${BENCH_PARTS:-control profile targetcli dataplane nested cpu}
REPS=${BENCH_REPS:-5}
DISKS=${BENCH_DISKS:-1 8 64}
TCLI=${BENCH_TCLI:-1:3 8:1}
FIO_RT=${BENCH_FIO_RUNTIME:-5}
DP_MB=${BENCH_DP_MB:-1024}
OUT=${VM_OUT:?}/raw
W=/tmp/bench
mkdir -p "$OUT" "$W/img"
SPAWN=$BB/bench-spawn
STANDIN=$BB/bench-standin

has_part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
die() { echo "vm-bench: error: $*" >&2; exit 1; }

# Every tool must leave configfs as it found it; a leak would slow the next tool down.
assert_clean() {
  local left
  left=$(ls "$T/core" | grep -v '^alua$' || true)
  [ -z "$left" ] || die "$1 left HBAs behind: $left"
  left=$(ls "$T/vhost" 2>/dev/null | grep '^naa\.' || true)
  [ -z "$left" ] || die "$1 left vhost targets behind: $left"
}

{
  echo "kernel $(uname -r)"
  echo "nproc $(nproc)"
  echo "mem_kb $(awk '/MemTotal/ {print $2}' /proc/meminfo)"
  echo "qemu_lio $("$QEMU_LIO" --version 2>&1 | head -n 1)"
  echo "targetcli $(dpkg-query -W -f='${Version}' targetcli-fb 2>/dev/null)"
  echo "fio $(fio --version)"
  echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
  echo "clock_gettime_ns $("$BB/bench-floor" --clock-cost 2000)"
} > "$OUT/vm-info.txt"

# The vhost fabric directory is made on first use and never removed by anyone: make it now,
# so that no tool pays for it inside a timed region.
mkdir -p "$T/vhost"

max_disks=1
for n in $DISKS; do [ "$n" -gt "$max_disks" ] && max_disks=$n; done
IMGS=()
for ((i = 0; i < max_disks; i++)); do
  truncate -s 64M "$W/img/d$i.img"
  IMGS+=("$W/img/d$i.img")
done

control_plane() {
  log "control plane: disks {$DISKS}, $REPS repetitions"
  # Warm-up, untimed: the first HBA of a boot costs ~0.3 s in the kernel, and the first run
  # of each binary reads it over 9p.
  "$BB/bench-floor" "${IMGS[0]}" > /dev/null || die "floor warm-up"
  "$QEMU_LIO" --image "${IMGS[0]}" -- "$STANDIN" || die "qemu-lio warm-up"
  [ -z "${QEMU_LIO_ALT:-}" ] || "$QEMU_LIO_ALT" --image "${IMGS[0]}" -- "$STANDIN" || die "qemu-lio (alt) warm-up"
  sh "$here/seed-manual.sh" up "${IMGS[0]}" && sh "$here/seed-manual.sh" down "${IMGS[0]}" || die "seed warm-up"
  assert_clean warm-up
  local n r i args imgs
  for n in $DISKS; do
    imgs=("${IMGS[@]:0:n}")
    args=()
    for i in "${imgs[@]}"; do args+=(--image "$i"); done
    for ((r = 0; r < REPS; r++)); do
      # Interleaved, so that drift in the emulator hits every tool alike.
      "$SPAWN" -o "$OUT/cp-baseline-$n.txt" -s "$W/stamp" -- "$STANDIN"
      "$SPAWN" -o "$OUT/cp-qemu-lio-$n.txt" -s "$W/stamp" -- "$QEMU_LIO" "${args[@]}" -- "$STANDIN" \
        || die "qemu-lio with $n disks failed"
      assert_clean qemu-lio
      if [ -n "${QEMU_LIO_ALT:-}" ]; then
        "$SPAWN" -o "$OUT/cp-qemu-lio-alt-$n.txt" -s "$W/stamp" -- "$QEMU_LIO_ALT" "${args[@]}" -- "$STANDIN" \
          || die "qemu-lio (alt) with $n disks failed"
        assert_clean qemu-lio-alt
      fi
      "$BB/bench-floor" "${imgs[@]}" >> "$OUT/cp-floor-$n.txt" || die "floor with $n disks failed"
      assert_clean floor
      # The parallel floor: the same syscalls, the disks spread over qemu-lio's pool size.
      "$BB/bench-floor" --threads 16 "${imgs[@]}" >> "$OUT/cp-floor-par-$n.txt" \
        || die "parallel floor with $n disks failed"
      assert_clean "parallel floor"
      "$SPAWN" -o "$OUT/cp-seed-up-$n.txt" -- sh "$here/seed-manual.sh" up "${imgs[@]}" || die "seed up $n"
      "$SPAWN" -o "$OUT/cp-seed-down-$n.txt" -- sh "$here/seed-manual.sh" down "${imgs[@]}" || die "seed down $n"
      assert_clean seed
    done
    log "  $n disks done"
  done
  # The wrapper with no disk at all: its fixed cost (exec, parse, fork, reap), and the cost
  # of loading the binary alone (--version).
  for ((r = 0; r < REPS; r++)); do
    "$SPAWN" -o "$OUT/cp-baseline-0.txt" -s "$W/stamp" -- "$STANDIN"
    "$SPAWN" -o "$OUT/cp-qemu-lio-0.txt" -s "$W/stamp" -- "$QEMU_LIO" -- "$STANDIN"
    "$SPAWN" -o "$OUT/cp-version.txt" -- "$QEMU_LIO" --version > /dev/null
    if [ -n "${QEMU_LIO_ALT:-}" ]; then
      "$SPAWN" -o "$OUT/cp-qemu-lio-alt-0.txt" -s "$W/stamp" -- "$QEMU_LIO_ALT" -- "$STANDIN"
      "$SPAWN" -o "$OUT/cp-version-alt.txt" -- "$QEMU_LIO_ALT" --version > /dev/null
    fi
    "$SPAWN" -o "$OUT/cp-standin-total.txt" -- "$STANDIN"
  done

  # Profile, untimed: which syscalls qemu-lio makes beyond the floor, at 8 and 64 disks.
  for n in 8 64; do
    [ "$n" -le "$max_disks" ] || continue
    args=()
    for i in "${IMGS[@]:0:n}"; do args+=(--image "$i"); done
    strace -f -c -o "$OUT/strace-c-qemu-lio-$n.txt" "$QEMU_LIO" "${args[@]}" -- "$STANDIN" \
      || die "strace qemu-lio"
    strace -f -c -o "$OUT/strace-c-floor-$n.txt" "$BB/bench-floor" "${IMGS[@]:0:n}" > /dev/null || die "strace floor"
    strace -f -c -o "$OUT/strace-c-floor-par-$n.txt" "$BB/bench-floor" --threads 16 "${IMGS[@]:0:n}" > /dev/null \
      || die "strace parallel floor"
    strace -f -tt -T -o "$OUT/strace-qemu-lio-$n.txt" "$QEMU_LIO" "${args[@]}" -- "$STANDIN" \
      || die "strace qemu-lio"
    assert_clean strace
  done
  # Peak RSS while supervising a VM that stays up, with 1 and 64 disks: VmHWM of the wrapper.
  for n in 1 "$max_disks"; do
    args=()
    for i in "${IMGS[@]:0:n}"; do args+=(--image "$i"); done
    rm -f "$W/ready"
    BENCH_WAIT=1 BENCH_READY=$W/ready "$QEMU_LIO" "${args[@]}" -- "$STANDIN" &
    local qpid=$! k=0
    while [ ! -e "$W/ready" ] && [ $k -lt 600 ]; do sleep 0.1; k=$((k + 1)); done
    echo "$n $(awk '/VmHWM/ {print $2}' "/proc/$qpid/status") $(awk '/VmRSS/ {print $2}' "/proc/$qpid/status")" \
      >> "$OUT/rss-vm.txt"
    kill -TERM "$qpid"
    wait "$qpid" || die "qemu-lio (rss run) failed"
    assert_clean rss
  done
}

# Where qemu-lio's time goes, by function: perf (cpu-clock, the only event under TCG) over
# repeated runs with 1 disk and with 64, with the stand-in as QEMU. Untimed.
profile() {
  command -v perf > /dev/null || { echo "vm-bench: no perf; profile skipped" >&2; return 0; }
  local n args i r
  for n in 1 64; do
    [ "$n" -le "$max_disks" ] || continue
    args=()
    for i in "${IMGS[@]:0:n}"; do args+=(--image "$i"); done
    r=$(( n == 1 ? 20 : 3 ))
    log "profile: perf record, qemu-lio with $n disk(s), $r runs"
    perf record -q -F 2000 -g -o "$W/perf-$n.data" -- bash -c \
      'for ((k = 0; k < '"$r"'; k++)); do "$@" || exit 1; done' _ "$QEMU_LIO" "${args[@]}" -- "$STANDIN" \
      > /dev/null 2>&1 || die "perf record ($n disks)"
    assert_clean profile
    perf report -i "$W/perf-$n.data" --stdio --comm qemu-lio --no-children --sort dso \
      > "$OUT/perf-dso-$n.txt" 2> /dev/null
    perf report -i "$W/perf-$n.data" --stdio --comm qemu-lio --no-children --sort dso,symbol -g none \
      --percent-limit 0.5 > "$OUT/perf-sym-$n.txt" 2> /dev/null
    perf report -i "$W/perf-$n.data" --stdio --comm qemu-lio --children --sort symbol -g none \
      --percent-limit 2 > "$OUT/perf-children-$n.txt" 2> /dev/null
  done
}

# targetcli, the way scripts use it: one command per step, each a Python start-up.
targetcli_plane() {
  vm_start_dbus
  log "targetcli: points $TCLI"
  targetcli ls > /dev/null 2>&1  # warm-up: the first start reads Python over 9p
  local pt n reps r i wwn tc
  for pt in $TCLI; do
    n=${pt%%:*} reps=${pt#*:}
    for ((r = 0; r < reps; r++)); do
      : > "$W/tc-up" && : > "$W/tc-down"
      for ((i = 0; i < n; i++)); do
        wwn=$(printf 'naa.5001405b%08x' "$i")
        tc="$SPAWN -o $W/tc-up --"
        $tc targetcli /backstores/fileio create name=tcb$i file_or_dev="${IMGS[$i]}" write_back=true > /dev/null \
          || die "targetcli backstore"
        $tc targetcli /vhost create "$wwn" > /dev/null || die "targetcli vhost create"
        if [ "$i" = 0 ] && [ "$r" = 0 ]; then
          # Does "vhost create" make the TPG and its nexus by itself?
          echo "tpgt_1=$([ -d "$T/vhost/$wwn/tpgt_1" ] && echo yes || echo no)" \
               "nexus=$(cat "$T/vhost/$wwn/tpgt_1/nexus" 2>/dev/null || echo none)" > "$OUT/tcli-vhost-create.txt"
        fi
        $tc targetcli "/vhost/$wwn/tpg1/luns" create "/backstores/fileio/tcb$i" > /dev/null || die "targetcli lun"
      done
      for ((i = 0; i < n; i++)); do
        wwn=$(printf 'naa.5001405b%08x' "$i")
        tc="$SPAWN -o $W/tc-down --"
        $tc targetcli /vhost delete "$wwn" > /dev/null || die "targetcli vhost delete"
        $tc targetcli /backstores/fileio delete "tcb$i" > /dev/null || die "targetcli backstore delete"
      done
      echo "$n $(awk '{s += $3} END {print s}' "$W/tc-up") $(awk '{s += $3} END {print s}' "$W/tc-down") $(wc -l < "$W/tc-up") $(wc -l < "$W/tc-down")" \
        >> "$OUT/tcli.txt"
      assert_clean targetcli
    done
    log "  targetcli $n disks done"
  done
}

# The LIO data path one level down: the backstore qemu-lio builds for each cache mode,
# exported through the loopback fabric (/dev/sdX), against fio on the image file itself.
dataplane() {
  [ -n "${SCRATCH:-}" ] || die "no scratch disk (vm-run.sh --scratch-mb)"
  local img=$SCRATCH/dp.img t0
  log "data plane: ${DP_MB} MiB image on $(findmnt -n -o FSTYPE "$SCRATCH") $SCRATCH, fio ${FIO_RT}s per job"
  t0=$EPOCHREALTIME
  dd if=/dev/zero of="$img" bs=1M count="$DP_MB" oflag=direct conv=fsync status=none || die "dd"
  log "  image written in $(_vm_elapsed "$t0") s"
  export DP_OUT=$OUT FIO_RT
  DP_TARGET=raw DP_DEV=$img bash "$here/fio-jobs.sh" || die "fio raw"
  # The same file through the page cache: what LIO's buffered (writeback) mode does inside.
  DP_TARGET=raw-buffered DP_DIRECT=0 DP_DEV=$img bash "$here/fio-jobs.sh" || die "fio raw buffered"
  local mode
  for mode in writeback writethrough none; do
    DP_TARGET=lio-$mode "$QEMU_LIO" --name bench-dp --image "$img,cache=$mode" -- "$here/dp-standin.sh" \
      || die "data plane $mode failed"
    assert_clean "data plane $mode"
    log "  $mode done"
  done
  # A qcow2 image served through qemu-storage-daemon, /dev/nbdN and iblock (issue 12). Its
  # clusters are allocated and written (preallocation=full), as the raw image's blocks are:
  # a sparse qcow2 would answer reads of unallocated clusters without any I/O.
  if command -v qemu-img > /dev/null; then
    local q=$SCRATCH/dp.qcow2
    rm -f "$img"  # room on the scratch disk
    t0=$EPOCHREALTIME
    qemu-img create -q -f qcow2 -o preallocation=full "$q" "${DP_MB}M" || die "qemu-img create"
    log "  qcow2 image written in $(_vm_elapsed "$t0") s"
    for mode in writeback none; do
      DP_TARGET=qcow2-$mode "$QEMU_LIO" --name bench-dp --image "$q,cache=$mode" -- "$here/dp-standin.sh" \
        || die "data plane qcow2 $mode failed"
      assert_clean "data plane qcow2 $mode"
      log "  qcow2 $mode done"
    done
    rm -f "$q"
  else
    log "  no qemu-img: the qcow2 rows are skipped"
  fi
}

# One nested guest per device kind, reading and writing with dd: the caveat is in the table.
nested() {
  [ -n "${SCRATCH:-}" ] || die "no scratch disk"
  local img=$SCRATCH/nested.img
  truncate -s 256M "$img"
  log "nested guests: vhost-scsi vs virtio-blk"
  "$MAKE_GUEST_INITRD" "$W/g-sda.img" "$here/nested-guest.sh" /dev/sda || die "initrd"
  "$MAKE_GUEST_INITRD" "$W/g-vda.img" "$here/nested-guest.sh" /dev/vda || die "initrd"
  local q=(qemu-system-x86_64 -m 256 -nographic -no-reboot -nic none -kernel "$KERNEL"
           -append "console=ttyS0 quiet panic=-1 mitigations=off")
  timeout 600 "$QEMU_LIO" --image "$img,cache=writeback" -- "${q[@]}" -initrd "$W/g-sda.img" \
    > "$OUT/nested-vhost-scsi.log" 2>&1 || echo "vm-bench: nested vhost-scsi exit $?" >&2
  timeout 600 "${q[@]}" -initrd "$W/g-vda.img" \
    -drive "file=$img,format=raw,if=virtio,cache=writeback,aio=threads" \
    > "$OUT/nested-virtio-blk.log" 2>&1 || echo "vm-bench: nested virtio-blk exit $?" >&2
  grep -h 'NESTED' "$OUT"/nested-*.log | sed 's/\r$//'
}

# Adds static programs to a nested guest's initramfs as /usr/bin/NAME: the kernel unpacks
# concatenated cpio archives in order, so an extra archive is all it takes (as the e2e
# scenario does for sg_raw, with its libraries).
append_programs() {  # INITRD PROGRAM...
  local initrd=$1 stage=$W/progstage
  shift
  rm -rf "$stage"
  mkdir -p "$stage/usr/bin"
  cp "$@" "$stage/usr/bin/"
  (cd "$stage" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) >> "$initrd"
  rm -rf "$stage"
}

# Host CPU per I/O of each backend (issue 15): one nested guest per backend runs 4k random
# read and write at QD1 and QD32 (bench-iogen: fio's jobs as a static binary); bench-cpu-meter takes this VM's CPU time over each
# job (the guest marks the windows on its console) and the nested QEMU's vCPU thread's, so
# report.py can divide what is left by fio's I/O count. The guest is TCG inside TCG: absolute
# figures are TCG microseconds, only the ratios between backends mean anything.
cpu_per_io() {
  [ -n "${SCRATCH:-}" ] || die "no scratch disk"
  local img=$SCRATCH/cpu.img rt=${BENCH_CPU_RUNTIME:-4} b rc t0
  local backends=${BENCH_CPU_BACKENDS:-vhost-wb vhost-none blk-threads blk-io_uring scsi-threads}
  log "cpu per I/O: backends {$backends}, ${rt} s per job"
  # Every block allocated, so no read is of a hole; O_DIRECT so none starts in the page cache.
  dd if=/dev/zero of="$img" bs=1M count=256 oflag=direct conv=fsync status=none || die "dd"
  {
    echo "CPU_RT=$rt CPU_IDLE=3"
    echo "CPU_JOBS='rr4k-qd1:randread:1 rr4k-qd32:randread:32 rw4k-qd1:randwrite:1 rw4k-qd32:randwrite:32'"
    cat "$here/cpu-guest.sh"
  } > "$W/cpu-guest.sh"
  "$MAKE_GUEST_INITRD" "$W/g-cpu-sd.img" "$W/cpu-guest.sh" /dev/sda || die "initrd"
  append_programs "$W/g-cpu-sd.img" "$BB/bench-iogen"
  "$MAKE_GUEST_INITRD" "$W/g-cpu-vd.img" "$W/cpu-guest.sh" /dev/vda || die "initrd"
  append_programs "$W/g-cpu-vd.img" "$BB/bench-iogen"
  # debug-threads=on names the vCPU thread "CPU 0/TCG" (the meter leaves it out); the
  # pidfile tells the meter which process is QEMU, also when qemu-lio starts it.
  local q=(qemu-system-x86_64 -name cpubench,debug-threads=on -pidfile "$W/cpu-qemu.pid"
           -machine pc -m 256 -smp 1 -nographic -no-reboot -nic none -kernel "$GUEST_KERNEL"
           -append "$GUEST_APPEND no_timer_check")
  [ -z "${QBOOT:-}" ] || q+=(-bios "$QBOOT")
  # The QEMU backends use cache=writeback, as EVE's disk template does (with aio=io_uring);
  # vhost-scsi is shown in qemu-lio's default (writeback) and with cache=none.
  local qdrive="file=$img,format=raw,cache=writeback"
  local r reps=${BENCH_CPU_REPS:-1}
  # Repetitions go round all backends, so that drift in the emulator hits each alike.
  for ((r = 1; r <= reps; r++)); do
    for b in $backends; do
      local cmd=()
      case $b in
        vhost-wb)     cmd=("$QEMU_LIO" --image "$img,cache=writeback" -- "${q[@]}" -initrd "$W/g-cpu-sd.img") ;;
        vhost-none)   cmd=("$QEMU_LIO" --image "$img,cache=none" -- "${q[@]}" -initrd "$W/g-cpu-sd.img") ;;
        blk-threads)  cmd=("${q[@]}" -initrd "$W/g-cpu-vd.img" -drive "$qdrive,if=virtio,aio=threads") ;;
        blk-io_uring) cmd=("${q[@]}" -initrd "$W/g-cpu-vd.img" -drive "$qdrive,if=virtio,aio=io_uring") ;;
        scsi-threads) cmd=("${q[@]}" -initrd "$W/g-cpu-sd.img" -device virtio-scsi-pci,id=scsi0
                           -drive "$qdrive,if=none,id=d0,aio=threads" -device scsi-hd,drive=d0,bus=scsi0.0) ;;
        *) die "unknown cpu backend $b" ;;
      esac
      # Each backend starts with a cold page cache, whatever the previous one left behind.
      sync
      echo 3 > /proc/sys/vm/drop_caches
      rm -f "$W/cpu-qemu.pid"
      t0=$EPOCHREALTIME
      # No polling while the guest runs: the meter blocks on QEMU's console pipe.
      timeout 900 "${cmd[@]}" < /dev/null 2>&1 \
        | "$BB/bench-cpu-meter" -p "$W/cpu-qemu.pid" -o "$OUT/cpu-windows-r$r.txt" -l "$b" \
        > "$OUT/cpu-$b-r$r.log"
      rc=${PIPESTATUS[0]}
      assert_clean "cpu $b"
      log "  $b (repetition $r): $(_vm_elapsed "$t0") s, exit $rc, $(grep -c '^CPU-FIO' "$OUT/cpu-$b-r$r.log") windows"
      grep -h 'CPU-ERROR' "$OUT/cpu-$b-r$r.log" | sed 's/\r$//' >&2
    done
  done
}

has_part control && control_plane
has_part profile && profile
has_part targetcli && targetcli_plane
has_part dataplane && dataplane
has_part nested && nested
has_part cpu && cpu_per_io
log "vm-bench done"
exit 0

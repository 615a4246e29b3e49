#!/usr/bin/env bash
# Configfs-level scenarios, all in one boot of the real kernel (run by vm-run.sh as root).
# QEMU is played by stand-in-qemu.sh; the nested-guest runs are in e2e.sh.
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
STANDIN=$here/stand-in-qemu.sh
WORK=$(mktemp -d /tmp/qemu-lio-vm.XXXXXX)  # scenario outputs
IMG=$WORK/img                                # images only: "no file created" looks here
mkdir "$IMG"
STATE_DIR=$WORK/state
# The vhost fabric directory appears on first mkdir and stays: it is shared by every tool
# and qemu-lio never removes it. Make it now so "before" snapshots include it.
mkdir -p "$T/vhost"

# The attributes of one storage object, comparable across two objects: ids masked.
so_attrs() {
  local so=$1 f
  for f in "$so"/attrib/* "$so"/wwn/vpd_unit_serial "$so"/udev_path; do
    [ -f "$f" ] && [ -r "$f" ] || continue
    printf '%s=%s\n' "${f#"$so"/}" "$(tr '\n' ' ' < "$f" | sed 's/ *$//')"
  done
  printf 'info=%s\n' "$(tr '\n' ' ' < "$so/info" | sed -E 's/ID: [0-9]+/ID: N/g; s/ +/ /g; s/ $//')"
}

# The one storage object whose name is $1, wherever its HBA is.
find_so() { ls -d "$T"/core/*/"$1" 2>/dev/null | head -n 1; }

# Kernel-wide counters that grow with every object ever made: never equal across two runs.
# Which fileio_N a disk gets is not fixed either: a run claims its disks' HBAs from parallel
# threads (first free index wins), the script one after another. The storage object's name
# inside it still tells the disks apart, so mask the index and sort again.
mask_counters() {
  # No \b before the HBA name: in a members list it follows a literal "\n" (snapshot escaping).
  # A members list is in join order, which parallel provisioning does not fix either: sort it.
  sed -E 's/HBA Index: [0-9]+/HBA Index: N/; s/ID: [0-9]+/ID: N/g; s/(fileio|iblock)_[0-9]+/\1_N/g' |
    while IFS= read -r line; do
      case $line in
        *'/members = '*)
          printf '%s/members = %s\n' "${line%%/members = *}" \
            "$(printf '%s\n' "${line#*/members = }" | sed 's/\\n/\n/g' | LC_ALL=C sort | paste -sd '|')" ;;
        *) printf '%s\n' "$line" ;;
      esac
    done | LC_ALL=C sort
}

new_image() {  # PATH SIZE-MB
  truncate -s "${2}M" "$1"
}

qlio() { "$QEMU_LIO" --state-dir "$STATE_DIR" "$@"; }

# Objects made by the seed's manual sequence (docs/manual-procedure.md), typos fixed: naa. not nna.,
# block_size written after enable (enable resets it), the fabric dir made by mkdir -p.
seed_manual_up() {  # IMG SERIAL WWN NEXUS
  local img=$1 size
  size=$(stat -c %s "$img")
  mkdir -p "$T/core/fileio_0/fileio"
  echo "fd_dev_name=$img,fd_dev_size=$size,fd_buffered_io=1" > "$T/core/fileio_0/fileio/control"
  echo "$2" > "$T/core/fileio_0/fileio/wwn/vpd_unit_serial"
  echo -n "$img" > "$T/core/fileio_0/fileio/udev_path"
  echo 1 > "$T/core/fileio_0/fileio/enable"
  echo 4096 > "$T/core/fileio_0/fileio/attrib/block_size"
  mkdir -p "$T/vhost/$3/tpgt_1/lun/lun_0"
  echo -n 'scsi_host_id=1,scsi_channel_id=0,scsi_target_id=0,scsi_lun_id=0' > "$T/core/fileio_0/fileio/control"
  echo -n "$4" > "$T/vhost/$3/tpgt_1/nexus"
  (cd "$T/vhost/$3/tpgt_1/lun/lun_0" && ln -s ../../../../../core/fileio_0/fileio .)
}

seed_manual_down() {  # WWN
  rm "$T/vhost/$1/tpgt_1/lun/lun_0/fileio"
  rmdir "$T/vhost/$1/tpgt_1/lun/lun_0" "$T/vhost/$1/tpgt_1" "$T/vhost/$1"
  rmdir "$T/core/fileio_0/fileio" "$T/core/fileio_0"
}

scenario_seed_equivalence() {
  local img=$IMG/seed.img before manual ours argv
  new_image "$img" 64
  before=$(configfs_snapshot)
  seed_manual_up "$img" seed-serial-1 naa.5001405111111111 naa.5001405222222222
  manual=$(so_attrs "$T/core/fileio_0/fileio")
  [ -L "$T/vhost/naa.5001405111111111/tpgt_1/lun/lun_0/fileio" ] || fail "seed: LUN link missing"
  seed_manual_down naa.5001405111111111
  assert_eq "$before" "$(configfs_snapshot)" "seed teardown restores configfs"

  # Same image through qemu-lio, with the seed's choices: 4096-byte blocks, its serial, and
  # discard off (the seed does not enable UNMAP; qemu-lio does by default).
  STANDIN_ARGV=$WORK/argv STANDIN_RUN="so=\$(ls -d $T/core/*/seed-disk0); $(declare -f so_attrs); so_attrs \$so > $WORK/ours; readlink $T/vhost/*/tpgt_1/lun/lun_0/seed-disk0 > $WORK/link; cat $T/vhost/*/tpgt_1/nexus > $WORK/nexus" \
    qlio --name seed --image "$img,block-size=4096,serial=seed-serial-1,discard=off" -- "$STANDIN" \
    || fail "qemu-lio run failed"
  ours=$(cat "$WORK/ours")
  # udev_path: the seed writes the same path; everything else must match exactly.
  assert_eq "$manual" "$ours" "qemu-lio's backstore attributes equal the seed's"
  grep -q 'core/fileio_[0-9]*/seed-disk0' "$WORK/link" || fail "LUN link does not point at the backstore: $(cat "$WORK/link")"
  grep -Eq '^naa\.[0-9a-f]{16}$' "$WORK/nexus" || fail "nexus not set: $(cat "$WORK/nexus")"
  argv=$(cat "$WORK/argv")
  echo "$argv" | grep -Eq '^vhost-scsi-pci,wwpn=naa\.5001405[0-9a-f]{9},max_sectors=16384$' \
    || fail "QEMU argv lacks the device: $argv"
  assert_eq "$before" "$(configfs_snapshot)" "qemu-lio teardown restores configfs"

  # With qemu-lio's defaults the only documented difference is discard: emulate_tpu=1.
  STANDIN_RUN="$(declare -f so_attrs); so_attrs \$(ls -d $T/core/*/seed-disk0) > $WORK/ours2" \
    qlio --name seed --image "$img,block-size=4096,serial=seed-serial-1" -- "$STANDIN" || fail "run 2"
  assert_eq "< attrib/emulate_tpu=0
> attrib/emulate_tpu=1" "$( (diff <(echo "$manual") "$WORK/ours2" || true) | grep '^[<>]')" "default differs from the seed only in emulate_tpu"
}

scenario_teardown() {
  local img=$IMG/td.img before end want rc pid
  new_image "$img" 16
  before=$(configfs_snapshot)
  for spec in "exit:0 0" "exit:7 7" "signal:KILL 137" "signal:SEGV 139" "signal:ABRT 134"; do
    end=${spec% *}; want=${spec#* }
    rc=0
    STANDIN_END=$end qlio --image "$img" -- "$STANDIN" || rc=$?
    assert_eq "$want" "$rc" "exit status after QEMU $end"
    assert_eq "$before" "$(configfs_snapshot)" "configfs clean after QEMU $end"
  done
  # SIGTERM to the wrapper is forwarded; QEMU exits 0 on it and so does qemu-lio.
  rm -f "$WORK/ready"
  # Not through qlio(): $! must be qemu-lio itself, not a subshell.
  STANDIN_END=wait-term STANDIN_READY=$WORK/ready "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$img" -- "$STANDIN" &
  pid=$!
  wait_for 10 test -e "$WORK/ready" || fail "QEMU did not start"
  [ -e "$WORK/ready" ] || fail "stand-in never started"
  [ -n "$(ls "$T"/vhost 2>/dev/null | grep naa.)" ] || fail "no vhost target while QEMU runs"
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  assert_eq 0 "$rc" "exit status after SIGTERM to the wrapper"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after SIGTERM"
  # QEMU that cannot be found or executed: 127 / 126, nothing left.
  rc=0
  qlio --image "$img" -- /nonexistent/qemu 2>/dev/null || rc=$?
  assert_eq 127 "$rc" "status for a missing QEMU"
  printf 'x' > "$IMG/noexec"; chmod 644 "$IMG/noexec"
  rc=0
  qlio --image "$img" -- "$IMG/noexec" 2>/dev/null || rc=$?
  assert_eq 126 "$rc" "status for a non-executable QEMU"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after exec failures"
  [ -z "$(ls "$STATE_DIR"/*.journal 2>/dev/null)" ] || fail "journal left behind: $(ls "$STATE_DIR")"
}

scenario_dry_run() {
  local a=$IMG/dr-a.img b=$IMG/dr-b.img before up run
  new_image "$a" 16; new_image "$b" 8
  before=$(configfs_snapshot)
  qlio --dry-run --name dry --image "$a,block-size=4096,bootindex=1" --image "$b,cache=writethrough,discard=off" \
    -- "$STANDIN" > "$WORK/dry.sh" || fail "dry-run failed"
  assert_eq "$before" "$(configfs_snapshot)" "dry-run touches nothing"
  sh "$WORK/dry.sh" up || fail "dry-run script 'up' failed"
  up=$(configfs_snapshot | mask_counters)
  [ "$up" != "$before" ] || fail "dry-run script created nothing"
  sh "$WORK/dry.sh" down || fail "dry-run script 'down' failed"
  assert_eq "$before" "$(configfs_snapshot)" "dry-run script 'down' removes everything"
  STANDIN_RUN=". $here/../lib.sh; configfs_snapshot > $WORK/run-snap" \
    qlio --name dry --image "$a,block-size=4096,bootindex=1" --image "$b,cache=writethrough,discard=off" -- "$STANDIN" \
    || fail "run failed"
  assert_eq "$up" "$(mask_counters < "$WORK/run-snap")" "the script creates exactly what run creates"
  grep -q "^# .*'vhost-scsi-pci,wwpn=naa.5001405[0-9a-f]*,max_sectors=16384,bootindex=1,boot_tpgt=1'" "$WORK/dry.sh" \
    || fail "dry-run does not print the QEMU command line"
}

# Each bad input: non-zero status, one line on stderr, configfs unchanged, no file created.
expect_rejected() {  # DESCRIPTION WANT-RC ARGS...
  local what=$1 want=$2 before files rc err
  shift 2
  before=$(configfs_snapshot)
  files=$(find "$IMG" | sort)
  rc=0
  qlio "$@" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  err=$(cat "$WORK/err")
  [ "$rc" = "$want" ] || fail "$what: status $rc, expected $want ($err)"
  [ "$(wc -l < "$WORK/err")" = 1 ] || fail "$what: expected one line on stderr, got: $err"
  echo "$err" | grep -q '^qemu-lio: error: ' || fail "$what: message format: $err"
  assert_eq "$before" "$(configfs_snapshot)" "$what: configfs unchanged"
  assert_eq "$files" "$(find "$IMG" | sort)" "$what: no file created"
  [ -z "$(ls "$STATE_DIR"/*.journal 2>/dev/null)" ] || fail "$what: journal left behind"
  echo "  rejected: $what: $err"
}

scenario_rollback() {
  local good=$IMG/good.img q=$IMG/q.img
  new_image "$good" 8
  : > "$IMG/empty.img"
  truncate -s 1000 "$IMG/odd.img"
  printf 'QFI\373\000\000\000\003' > "$q"; truncate -s 1M "$q"
  expect_rejected "missing image" 1 --image "$IMG/missing.img"
  expect_rejected "qcow2 image" 1 --image "$q"
  expect_rejected "zero-size image" 1 --image "$IMG/empty.img"
  expect_rejected "block-size mismatch" 1 --image "$IMG/odd.img"
  expect_rejected "4096 mismatch" 1 --image "$good,block-size=4096" --image "$IMG/odd.img,block-size=4096"
  expect_rejected "unknown key" 2 --image "$good,colour=blue"
  expect_rejected "bad wwn" 2 --image "$good,wwn=naa.12"
  expect_rejected "same image twice" 1 --image "$good" --image "$good"
  mkdir "$T/vhost/naa.5001405abcdef012" 2>/dev/null || mkdir -p "$T/vhost/naa.5001405abcdef012"
  expect_rejected "existing wwn" 1 --image "$good,wwn=naa.5001405abcdef012"
  rmdir "$T/vhost/naa.5001405abcdef012"
  # An image another tool already exports: two writers would corrupt it.
  targetcli /backstores/fileio create name=tcli file_or_dev="$good" >/dev/null || fail "targetcli create"
  expect_rejected "image exported by targetcli" 1 --image "$good"
  new_image "$IMG/good2.img" 8
  expect_rejected "second disk exported by targetcli" 1 --image "$IMG/good2.img" --image "$good"
  targetcli /backstores/fileio delete tcli >/dev/null || fail "targetcli delete"
}

scenario_coexistence() {
  local img=$IMG/co.img tc=$IMG/tc.img before
  new_image "$img" 8; new_image "$tc" 8
  targetcli /backstores/fileio create name=theirs file_or_dev="$tc" >/dev/null || fail "targetcli backstore"
  targetcli /vhost create naa.5001405999999999 >/dev/null || fail "targetcli vhost"
  targetcli /vhost/naa.5001405999999999/tpg1/luns create /backstores/fileio/theirs >/dev/null || fail "targetcli lun"
  # targetcli ls makes every fabric's directory (iscsi, ...) on first use: let it, before
  # the snapshot, so only qemu-lio's own effects are compared.
  targetcli ls >/dev/null
  before=$(configfs_snapshot)
  STANDIN_RUN="targetcli ls > $WORK/tcls 2>&1; echo \$? > $WORK/tcrc" qlio --name co --image "$img" -- "$STANDIN" \
    || fail "run beside targetcli objects failed"
  assert_eq 0 "$(cat "$WORK/tcrc")" "targetcli ls exit status while qemu-lio's objects exist"
  grep -q 'co-disk0' "$WORK/tcls" || fail "targetcli ls does not list qemu-lio's backstore: $(cat "$WORK/tcls")"
  grep -Eiq 'error|traceback|exception' "$WORK/tcls" && fail "targetcli ls reported errors: $(cat "$WORK/tcls")"
  assert_eq "$before" "$(configfs_snapshot)" "targetcli's objects untouched, ours gone"
  targetcli /vhost delete naa.5001405999999999 >/dev/null
  targetcli /backstores/fileio delete theirs >/dev/null
}

scenario_cache_modes() {
  local img=$SCRATCH/cache.img
  truncate -s 16M "$img"
  for mode in "writeback Buffered-WCE Async: 0" "writethrough O_DSYNC Async: 0" "none O_DSYNC Async: 1"; do
    set -- $mode
    STANDIN_RUN="cat $T/core/*/cm-disk0/info > $WORK/info; cat $T/core/*/cm-disk0/attrib/emulate_write_cache > $WORK/wce" \
      qlio --name cm --image "$img,cache=$1" -- "$STANDIN" || fail "cache=$1 run failed"
    grep -q "Mode: $2" "$WORK/info" || fail "cache=$1: $(cat "$WORK/info")"
    grep -q "$3 $4" "$WORK/info" || fail "cache=$1 async: $(cat "$WORK/info")"
    [ "$1" = writethrough ] || assert_eq 1 "$(cat "$WORK/wce")" "cache=$1 advertises a write cache"
  done
  # On tmpfs, O_DIRECT is refused: cache=none must be rejected before the kernel oopses.
  truncate -s 8M "$IMG/tmpfs.img"
  expect_rejected "cache=none on tmpfs" 1 --image "$IMG/tmpfs.img,cache=none"
  rm -f "$img"
}

scenario_check() {
  local rc=0
  "$QEMU_LIO" check > "$WORK/check" 2>&1 || rc=$?
  sed 's/^/  /' "$WORK/check"
  assert_eq 0 "$rc" "qemu-lio check in a VM that has everything"
  grep -q '^ok    module vhost_scsi loaded' "$WORK/check" || fail "check did not look at vhost_scsi"
  grep -q 'offers vhost-scsi-pci' "$WORK/check" || fail "check did not ask QEMU"
  # And it explains what is missing: a QEMU that does not exist.
  rc=0
  "$QEMU_LIO" check --qemu /nonexistent/qemu > "$WORK/check2" 2>&1 || rc=$?
  assert_eq 1 "$rc" "check with a missing QEMU"
  grep -q '^FAIL  /nonexistent/qemu offers vhost-scsi-pci: .*not found' "$WORK/check2" || fail "no fix named: $(cat "$WORK/check2")"
}

# Issue 12's groundwork against the real kernel and qemu-storage-daemon: the library's NBD
# handshake and generic netlink client (driven by qemu-lio-nbd-probe) connect an export to
# a kernel-chosen /dev/nbdN with qemu-lio's backend identifier, the guest-side bytes go both
# ways, a refused export is one line and connects nothing, and DISCONNECT frees the device.
scenario_nbd_netlink() {
  local img=$IMG/nbd.img sock=$WORK/nbd.sock qsd idx rc=0 out
  [ -x "${NBD_PROBE:-}" ] || fail "NBD_PROBE is not the test's qemu-lio-nbd-probe"
  if [ ! -d /sys/module/nbd ]; then
    modprobe nbd nbds_max=0 max_part=0 || fail "the VM kernel has no nbd module"
  fi
  truncate -s 32M "$img"
  printf 'QEMU-LIO-DISK-77' | dd of="$img" conv=notrunc status=none
  qemu-storage-daemon --blockdev "driver=file,node-name=f0,filename=$img" \
    --nbd-server "addr.type=unix,addr.path=$sock" \
    --export type=nbd,id=e0,node-name=f0,name=e0,writable=on > "$WORK/qsd.log" 2>&1 &
  qsd=$!
  wait_for 60 test -S "$sock" || { cat "$WORK/qsd.log"; fail "qemu-storage-daemon did not listen"; }

  out=$("$NBD_PROBE" connect "$sock" nope qemu-lio:test:9 2>&1) || rc=$?
  echo "  wrong export -> $rc: $out"
  assert_eq 1 "$rc" "a refused export fails"
  assert_eq 1 "$(printf '%s\n' "$out" | wc -l)" "one line"
  grep -q "refused export 'nope': export 'nope' not present" <<<"$out" || fail "the server's refusal is not relayed: $out"
  assert_eq 0 "$(find /sys/block/ -maxdepth 2 -path '/sys/block/nbd*/pid' | wc -l)" "nothing connected"

  idx=$("$NBD_PROBE" connect "$sock" e0 qemu-lio:test:0) || fail "connect failed"
  echo "  connected nbd$idx"
  assert_eq qemu-lio:test:0 "$(cat "/sys/block/nbd$idx/backend")" "the backend identifier"
  assert_eq $((32 * 1024 * 1024 / 512)) "$(cat "/sys/block/nbd$idx/size")" "the export's size"
  wait_for 30 test -b "/dev/nbd$idx" || fail "no /dev/nbd$idx"
  assert_eq QEMU-LIO-DISK-77 "$(dd if="/dev/nbd$idx" bs=4096 count=1 iflag=direct status=none | head -c 16)" "the image's bytes"
  printf 'NBD-WROTE-THIS' | dd of="/dev/nbd$idx" bs=4096 seek=256 oflag=direct conv=sync,fsync status=none ||
    fail "write through nbd$idx"

  "$NBD_PROBE" disconnect "$idx" || fail "disconnect failed"
  wait_for 30 sh -c "! test -e /sys/block/nbd$idx/pid" || fail "nbd$idx still connected after DISCONNECT"
  assert_eq NBD-WROTE-THIS "$(dd if="$img" bs=1 skip=1048576 count=14 status=none)" "the write reached the image"
  kill -TERM "$qsd"
  wait "$qsd" || fail "qemu-storage-daemon exited $? on SIGTERM"
  rm -f "$img"
}

scenario check scenario_check
scenario seed-equivalence scenario_seed_equivalence
scenario teardown scenario_teardown
scenario dry-run scenario_dry_run
scenario rollback scenario_rollback
scenario coexistence scenario_coexistence
scenario cache-modes scenario_cache_modes
scenario nbd-netlink scenario_nbd_netlink
scenarios_summary

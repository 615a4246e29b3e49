#!/usr/bin/env bash
# End to end in the real kernel: qemu-lio runs the real qemu-system-x86_64 (TCG, nested),
# whose guest sees each image as a SCSI disk over vhost-scsi, checks the host's pattern and
# writes its own, which the host then finds in the image file.
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
# shellcheck source=images.sh
. "$here/images.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
WORK=$(mktemp -d /tmp/qemu-lio-e2e.XXXXXX)
STATE_DIR=$WORK/state
GUEST_TIMEOUT=${GUEST_TIMEOUT:-600}
# The vhost fabric directory stays once made (shared; qemu-lio never removes it).
mkdir -p "$T/vhost"


# The nested guest's QEMU command line (lib.sh's boot arguments: TCG-friendly kernel).
nested_qemu() {
  NESTED=(qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd "$WORK/guest.img" -append "$GUEST_APPEND")
}

show_tail_on_failure() {  # STATUS LOG
  [ "$1" = 0 ] || { echo "  last lines of $2:"; tail -n 25 "$2" | sed 's/^/  | /'; }
}

run_guest() {  # LOG DEVICES... -- QEMU-LIO-ARGS...
  local log=$1 devs=()
  shift
  while [ "$1" != -- ]; do devs+=("$1"); shift; done
  shift
  "$MAKE_GUEST_INITRD" "$WORK/guest.img" "$here/guest-disks.sh" "${devs[@]}" || fail "guest initrd"
  nested_qemu
  timeout "$GUEST_TIMEOUT" "$QEMU_LIO" --state-dir "$STATE_DIR" "$@" -- "${NESTED[@]}" > "$log" 2>&1
}

scenario_three_disks() {
  local before rc i
  for i in 1 2 3; do pattern_image "$WORK/d$i.img" "0$i"; done
  before=$(configfs_snapshot)
  local t0=$SECONDS
  rc=0
  run_guest "$WORK/three.log" /dev/sda /dev/sdb /dev/sdc -- \
    --image "$WORK/d1.img" --image "$WORK/d2.img,block-size=4096" --image "$WORK/d3.img,cache=writethrough" || rc=$?
  show_tail_on_failure "$rc" "$WORK/three.log"
  echo "  nested guest: $((SECONDS - t0)) s"
  grep -E 'GUEST-' "$WORK/three.log" | sed 's/^/  guest: /' || true
  assert_eq 0 "$rc" "qemu-lio exit status (QEMU's)"
  grep -q 'GUEST-DISKS 3' "$WORK/three.log" || fail "guest did not see three disks"
  for i in 1 2 3; do
    assert_eq "GUEST-WROTE-0$i" "$(guest_bytes "$WORK/d$i.img")" "disk $i holds the guest's bytes"
  done
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the guest powered off"
}

# Adds sg_raw and the libraries it links to a guest initramfs: the kernel unpacks
# concatenated cpio archives in order, so an extra archive is all it takes.
append_sg_raw() {  # INITRD
  local stage=$WORK/sgstage f
  rm -rf "$stage"; mkdir -p "$stage/usr/bin"
  cp "$(command -v sg_raw)" "$stage/usr/bin/sg_raw"
  for f in $(ldd "$(command -v sg_raw)" | grep -o '/[^ ]*'); do
    mkdir -p "$stage$(dirname "$f")"; cp -L "$f" "$stage$f"
  done
  (cd "$stage" && find . | cpio -o -H newc --quiet) >> "$1"
}

scenario_read_only() {
  local img=$WORK/ro.img before rc sum
  pattern_image "$img" 07
  sum=$(md5sum < "$img")
  cat > "$WORK/ro-guest.sh" <<'G'
echo "GUEST-RO ro=$(cat /sys/block/sda/ro) pattern=$(dd if=/dev/sda bs=16 count=1 2>/dev/null)"
# A raw WRITE(10) of LBA 0 through SG_IO: the target itself must refuse it (DATA PROTECT),
# whatever the guest kernel's own read-only flag says.
dd if=/dev/zero of=/tmp/blk bs=512 count=1 2>/dev/null
/usr/bin/sg_raw -s 512 -i /tmp/blk /dev/sg0 2a 00 00 00 00 00 00 00 01 00 > /tmp/sg.out 2>&1
echo "GUEST-SGRAW rc=$? $(tr '\n' ' ' < /tmp/sg.out)"
blockdev --setrw /dev/sda 2>/dev/null
dd if=/dev/zero of=/dev/sda bs=512 count=1 oflag=direct 2>/dev/null && echo GUEST-DD-WROTE || echo GUEST-DD-REFUSED
exit 0
G
  "$MAKE_GUEST_INITRD" "$WORK/guest.img" "$WORK/ro-guest.sh" /dev/sda || fail "guest initrd"
  append_sg_raw "$WORK/guest.img"
  before=$(configfs_snapshot)
  local t0=$SECONDS
  rc=0
  nested_qemu
  timeout "$GUEST_TIMEOUT" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$img,readonly=on" -- "${NESTED[@]}" > "$WORK/ro.log" 2>&1 || rc=$?
  show_tail_on_failure "$rc" "$WORK/ro.log"
  echo "  nested guest: $((SECONDS - t0)) s"
  grep -E 'GUEST-' "$WORK/ro.log" | sed 's/^/  guest: /' || true
  assert_eq 0 "$rc" "qemu-lio exit status"
  grep -q 'GUEST-RO ro=1 pattern=QEMU-LIO-DISK-07' "$WORK/ro.log" || fail "guest does not see a read-only disk with the pattern"
  grep -q 'GUEST-SGRAW rc=0' "$WORK/ro.log" && fail "the target accepted a raw WRITE"
  grep -qi 'data protect' "$WORK/ro.log" || fail "no DATA PROTECT sense from the target"
  assert_eq "$sum" "$(md5sum < "$img")" "read-only image unchanged"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean"
}

# One disk alone: control.sh's control-hotplug-guest boots its guest with one disk, checks
# the host's bytes and the guest's, before it hot-plugs a second (one nested boot fewer).
scenario e2e-three-disks scenario_three_disks
scenario e2e-read-only scenario_read_only
scenarios_summary

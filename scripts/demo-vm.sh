#!/usr/bin/env bash
# The demo, inside the real-kernel VM (started by scripts/demo.sh through tests/vm/vm-run.sh):
# qemu-lio provisions a vhost-scsi LUN for an image and boots a nested guest on it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tests/vm/lib.sh
. "$here/../tests/vm/lib.sh"
QEMU_LIO=${QEMU_LIO:?}

show_lio() {
  echo "=== host: LIO objects ($1)"
  local so t
  for so in "$T"/core/*_*/*/; do
    [ -d "$so" ] && echo "  backstore ${so#"$T"/}  ($(cat "$so/udev_path"))"
  done
  for t in "$T"/vhost/naa.*; do
    [ -d "$t" ] && echo "  vhost target ${t##*/}, nexus $(cat "$t/tpgt_1/nexus" 2>/dev/null)"
  done
  find "$T/vhost" -type l -printf '  LUN %P -> %l\n' 2>/dev/null
  [ -n "$(ls -d "$T"/core/*_*/*/ "$T"/vhost/naa.* 2>/dev/null)" ] || echo "  (none)"
}

img=/tmp/demo.img
truncate -s 64M "$img"
printf 'written by the host before boot' | dd of="$img" conv=notrunc status=none
"$MAKE_GUEST_INITRD" /tmp/demo-guest.img "$here/demo-guest.sh" /dev/sda
mkdir -p "$T/vhost"
show_lio "before qemu-lio"
echo "=== host: qemu-lio --dry-run shows the plan:"
"$QEMU_LIO" --dry-run --name demo --image "$img" -- qemu-system-x86_64 -m 256 | grep -E '^  (mkdir|printf|ln)|^# ' | head -40
echo "=== host: qemu-lio run (nested guest under TCG: about a minute)"
# While the guest runs, show what qemu-lio made (probe in the background).
( sleep 3; show_lio "while QEMU runs"; "$QEMU_LIO" list ) &
"$QEMU_LIO" -v --name demo --image "$img" -- \
  qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd /tmp/demo-guest.img -append "$GUEST_APPEND" \
  | grep -E '===|GUEST-EXIT'
wait
show_lio "after QEMU exited"
echo "=== host: the image at 1 MiB now reads: '$(dd if="$img" bs=1 skip=1048576 count=20 status=none)'"

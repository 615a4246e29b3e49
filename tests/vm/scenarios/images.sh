# shellcheck shell=bash
# Image helpers shared by the nested-guest scenarios (e2e.sh, dropin.sh). Sourced.

# pattern_image PATH ID: a 32 MiB raw image whose first 16 bytes are QEMU-LIO-DISK-<ID>.
pattern_image() {
  truncate -s 32M "$1"
  printf 'QEMU-LIO-DISK-%s' "$2" | dd of="$1" conv=notrunc status=none
}

# guest_bytes IMAGE: the 14 bytes a guest wrote at 1 MiB ("GUEST-WROTE-NN").
guest_bytes() { dd if="$1" bs=1 skip=1048576 count=14 status=none; }

#!/bin/bash
# make-guest-initrd.sh: initramfs for a nested guest (QEMU run inside the test VM).
#
#   make-guest-initrd.sh OUT GUEST_SCRIPT [DEVICE...]
#       OUT gets a bootable initramfs whose /init mounts proc/sys/devtmpfs, loads virtio_pci,
#       virtio_scsi, virtio_blk, sd_mod, scsi_mod (+ deps), waits up to $GUEST_WAIT_SECS
#       (default 30) for each DEVICE (default /dev/sda), runs GUEST_SCRIPT with busybox sh
#       (as /guest.sh), prints "GUEST-EXIT <rc>" and powers off.
#   make-guest-initrd.sh --base OUT
#       Only the base (busybox + modules + /init). prepare.sh builds it into the cache.
#
# Boot it with the same kernel as the VM ($KERNEL from the cache's env file), e.g.
#   qemu-system-x86_64 -m 256 -nographic -no-reboot -kernel "$KERNEL" -initrd OUT \
#       -append "console=ttyS0 quiet panic=-1" -device vhost-scsi-pci,wwpn=naa.5001405...
#
# Speed matters because scenarios call this inside the TCG VM: the normal mode only writes a
# tiny cpio holding /guest.sh and appends it to the prebuilt base (the kernel unpacks
# concatenated archives in order). The base is only rebuilt here if the cache lacks it.
#
# Env: GUEST_BASE_INITRD, GUEST_MODULES_ROOT, KVER (default: from $QEMU_LIO_VM_CACHE/env),
#      GUEST_WAIT_SECS (default 30), GUEST_BINARIES (host programs the guest script runs, e.g.
#      "sg_persist sg_raw": copied with their shared libraries).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=initrd-lib.sh
. "$here/initrd-lib.sh"

usage() {
    echo "usage: ${0##*/} OUT GUEST_SCRIPT [DEVICE...] | ${0##*/} --base OUT" >&2
    exit 2
}

GUEST_MODULES_REQUIRED="virtio_pci virtio_scsi virtio_blk sd_mod scsi_mod"
# sg: lets a guest script send raw SCSI commands if it brings its own tool.
GUEST_MODULES_OPTIONAL="sg"

write_guest_init() {
    cat >"$1" <<'INIT'
#!/bin/sh
# Nested guest init: load drivers, wait for disks, run /guest.sh, report, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
KVER=$(uname -r)
# Accelerated crc modules fail with "No such device" on a CPU without the instructions;
# the generic ones are loaded too, so errors are expected and ignored.
while read -r rel; do
    insmod "/lib/modules/$KVER/$rel" 2>/dev/null || true
done </etc/modules.load
GUEST_WAIT_DEVS=/dev/sda
GUEST_WAIT_SECS=30
[ -r /guest.env ] && . /guest.env
for dev in $GUEST_WAIT_DEVS; do
    n=0
    while [ ! -b "$dev" ] && [ "$n" -lt $((GUEST_WAIT_SECS * 10)) ]; do
        sleep 0.1
        n=$((n + 1))
    done
    if [ ! -b "$dev" ]; then
        echo "guest-init: $dev did not appear within $GUEST_WAIT_SECS s; block devices: $(ls /sys/block | tr '\n' ' ')"
    fi
done
if [ -r /guest.sh ]; then
    sh /guest.sh
    rc=$?
else
    echo "guest-init: no /guest.sh"
    rc=127
fi
sync
echo "GUEST-EXIT $rc"
poweroff -f
# Only reached if ACPI power-off failed; the caller kills QEMU after the marker anyway.
echo o >/proc/sysrq-trigger
sleep 60
INIT
    chmod 755 "$1"
}

build_base() {
    local out=$1 stage
    : "${GUEST_MODULES_ROOT:?GUEST_MODULES_ROOT must name the extracted kernel package root}"
    : "${KVER:?KVER must be set}"
    stage=$(mktemp -d "${TMPDIR:-/tmp}/guest-base.XXXXXX")
    initrd_add_busybox "$stage"
    initrd_add_modules "$stage" "$GUEST_MODULES_ROOT" "$KVER" "$GUEST_MODULES_REQUIRED" "$GUEST_MODULES_OPTIONAL"
    write_guest_init "$stage/init"
    initrd_pack "$stage" "$out"
    rm -rf "$stage"
}

if [ "${1:-}" = --base ]; then
    [ $# = 2 ] || usage
    build_base "$2"
    exit 0
fi
[ $# -ge 2 ] || usage
out=$1 script=$2
shift 2
[ -r "$script" ] || initrd_die "$script: cannot read guest script"
devs=${*:-/dev/sda}

if [ -z "${GUEST_BASE_INITRD:-}" ] || [ -z "${KVER:-}" ]; then
    envfile=${QEMU_LIO_VM_CACHE:-/var/cache/qemu-lio-vm}/env
    [ -r "$envfile" ] || initrd_die "$envfile: missing (run tests/vm/prepare.sh)"
    # Only the keys we use; the env file is ours, but do not let it override what the caller set.
    GUEST_BASE_INITRD=${GUEST_BASE_INITRD:-$(sed -n 's/^GUEST_BASE_INITRD=//p' "$envfile")}
    GUEST_MODULES_ROOT=${GUEST_MODULES_ROOT:-$(sed -n 's/^GUEST_MODULES_ROOT=//p' "$envfile")}
    KVER=${KVER:-$(sed -n 's/^KVER=//p' "$envfile")}
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/guest-initrd.XXXXXX")
trap 'rm -rf "$work"' EXIT
base=$GUEST_BASE_INITRD
if [ ! -r "$base" ]; then
    # The cache is read-only inside the VM, so build a private base instead of fixing it.
    base=$work/base.cpio
    build_base "$base"
fi
mkdir -p "$work/stage"
# shellcheck disable=SC2086 # a list of names
[ -z "${GUEST_BINARIES:-}" ] || initrd_add_binaries "$work/stage" $GUEST_BINARIES
cp "$script" "$work/stage/guest.sh"
chmod 755 "$work/stage/guest.sh"
{
    printf 'GUEST_WAIT_DEVS=%q\n' "$devs"
    printf 'GUEST_WAIT_SECS=%q\n' "${GUEST_WAIT_SECS:-30}"
} >"$work/stage/guest.env"
initrd_pack "$work/stage" "$work/extra.cpio"
cat "$base" "$work/extra.cpio" >"$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"

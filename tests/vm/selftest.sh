#!/bin/bash
# shellcheck disable=SC2317 # scenario functions are called through `scenario`
# selftest.sh: proves the VM harness works, by doing by hand what qemu-lio will automate.
#
#   tests/vm/vm-run.sh tests/vm/selftest.sh
#
# 1. configfs-manual: the seed document's (docs/manual-procedure.md) manual sequence, corrected, for a
#    64 MiB image; checks the objects; tears down in kernel order; configfs must be back to
#    its starting snapshot.
# 2. nested-guest-io: the same objects serve a nested QEMU guest through vhost-scsi-pci; the
#    guest reads a pattern the host wrote and writes one the host then finds in the file.
# 3. scratch-odirect: $SCRATCH supports O_DIRECT (tmpfs does not; async fileio needs it).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "${VM_IN_VM:-0}" = 1 ] || { echo "selftest.sh: run me with tests/vm/vm-run.sh" >&2; exit 2; }

IMG_SIZE=$((64 * 1024 * 1024))
# rtslib's format: naa. + LIO's OUI 001405 + 9 hex digits.
WWN=naa.5001405a1b2c3d4
NEXUS=naa.5001405e5f6a7b8
HBA=fileio_0
SO=selftest
PATTERN=QEMU-LIO-PATTERN
GUEST_PATTERN=GUEST-WROTE-THIS

# setup_vhost IMG: the seed's sequence, with its mistakes fixed:
#  - naa. not nna.; target/vhost must be created before the WWN directory;
#  - block_size after enable (enable resets it to hw_block_size);
#  - the "scsi_host_id=..." control string is for pscsi; fileio ignores it, so it is dropped;
#  - attributes like emulate_* only after enable (emulate_tpu before enable oopses 6.1).
setup_vhost() {
    local img=$1 so=$T/core/$HBA/$SO tpg=$T/vhost/$WWN/tpgt_1
    mkdir "$T/core/$HBA"
    mkdir "$so"
    echo "fd_dev_name=$img,fd_dev_size=$IMG_SIZE,fd_buffered_io=1" >"$so/control"
    echo -n "$img" >"$so/udev_path"
    echo "5e1f7e57-0000-4000-8000-000000000001" >"$so/wwn/vpd_unit_serial"
    echo 1 >"$so/enable"
    echo 4096 >"$so/attrib/block_size"
    echo 1 >"$so/attrib/emulate_tpu"
    [ -d "$T/vhost" ] || mkdir "$T/vhost"
    mkdir -p "$tpg/lun/lun_0"
    echo -n "$NEXUS" >"$tpg/nexus"
    # Relative link, as in the seed: lun_0 -> lun -> tpgt_1 -> WWN -> vhost -> target.
    (cd "$tpg/lun/lun_0" && ln -s "../../../../../core/$HBA/$SO" .)
}

# teardown_vhost: kernel order (lio-kernel-facts.md), only after any QEMU using it has exited.
teardown_vhost() {
    local tpg=$T/vhost/$WWN/tpgt_1
    rm "$tpg/lun/lun_0/$SO"
    rmdir "$tpg/lun/lun_0"
    echo NULL >"$tpg/nexus"
    rmdir "$tpg"
    rmdir "$T/vhost/$WWN"
    rmdir "$T/core/$HBA/$SO"
    rmdir "$T/core/$HBA"
}

check_objects() {
    local img=$1 so=$T/core/$HBA/$SO tpg=$T/vhost/$WWN/tpgt_1 info
    assert_exists "$so" "$tpg" "$tpg/lun/lun_0/$SO"
    assert_eq 1 "$(cat "$so/enable")" "$so/enable"
    assert_eq 4096 "$(cat "$so/attrib/block_size")" "block_size (set after enable)"
    assert_eq 1 "$(cat "$so/attrib/emulate_write_cache")" "emulate_write_cache (forced by fd_buffered_io)"
    assert_eq 1 "$(cat "$so/attrib/emulate_tpu")" "emulate_tpu"
    assert_eq "$NEXUS" "$(cat "$tpg/nexus")" "nexus"
    assert_eq "$(readlink -f "$so")" "$(readlink -f "$tpg/lun/lun_0/$SO")" "LUN link target"
    info=$(cat "$so/info")
    log "info: ${info//$'\n'/ | }"
    [[ $info == *"File: $img "* ]] || fail "info does not name $img"
    [[ $info == *"Buffered-WCE"* ]] || fail "info does not show Buffered-WCE"
    [[ $info == *"SectorSize: 4096"* ]] || fail "info does not show SectorSize: 4096"
    # Two kernel rules the harness should be able to see (lio-kernel-facts.md):
    if rmdir "$so" 2>/dev/null; then fail "rmdir of a linked backstore succeeded"; fi
    if mkdir "$T/core/$HBA" 2>/dev/null; then fail "second mkdir of $HBA succeeded"; fi
}

configfs_manual() {
    local img=/tmp/selftest-manual.img before after
    # Explicit, through kmod in the chroot: proves /lib/modules is wired up (already loaded).
    modprobe target_core_mod
    modprobe target_core_file
    modprobe vhost_scsi
    before=$(configfs_snapshot "$T")
    log "initial snapshot: $(wc -l <<<"$before") entries"
    truncate -s "$IMG_SIZE" "$img"
    setup_vhost "$img"
    log "after setup: $(configfs_snapshot "$T" | wc -l) entries"
    check_objects "$img"
    teardown_vhost
    # target/vhost itself is a fabric directory we created: remove it too (or the snapshot
    # would differ by it), then compare.
    rmdir "$T/vhost"
    after=$(configfs_snapshot "$T")
    if [ "$before" != "$after" ]; then
        diff <(echo "$before") <(echo "$after") >&2 || true
        fail "configfs differs from its starting snapshot after teardown"
    fi
    rm -f "$img"
}

nested_guest_io() {
    local img=/tmp/selftest-guest.img gscript=/tmp/selftest-guest.sh initrd=/tmp/selftest-guest.cpio
    local before after got rc=0
    before=$(configfs_snapshot "$T")
    truncate -s "$IMG_SIZE" "$img"
    printf '%s' "$PATTERN" | dd of="$img" conv=notrunc status=none
    setup_vhost "$img"

    cat >"$gscript" <<EOF
# Runs in the nested guest (busybox sh). The LIO fileio image is /dev/sda there.
[ -b /dev/sda ] || { echo "guest: no /dev/sda"; exit 1; }
echo "guest: /dev/sda logical block size \$(cat /sys/block/sda/queue/logical_block_size), \$(cat /sys/block/sda/size) sectors"
got=\$(dd if=/dev/sda bs=16 count=1 2>/dev/null)
[ "\$got" = "$PATTERN" ] || { echo "guest: read [\$got], expected [$PATTERN]"; exit 2; }
echo "guest: read the host's pattern"
printf '%s' "$GUEST_PATTERN" | dd of=/dev/sda bs=16 seek=65536 count=1 conv=fsync 2>/dev/null || exit 3
sync
echo "guest: wrote its pattern at 1 MiB"
EOF
    local t0=$EPOCHREALTIME
    "$MAKE_GUEST_INITRD" "$initrd" "$gscript" /dev/sda
    log "make-guest-initrd took $(_vm_elapsed "$t0") s"
    guest_boot "$initrd" /tmp/selftest-guest.log 600 -device "vhost-scsi-pci,wwpn=$WWN" || rc=$?
    assert_eq 0 "$rc" "nested guest exit status"

    got=$(dd if="$img" bs=16 skip=65536 count=1 status=none)
    assert_eq "$GUEST_PATTERN" "$got" "bytes at 1 MiB in the backing file"
    got=$(dd if="$img" bs=16 count=1 status=none)
    assert_eq "$PATTERN" "$got" "bytes at 0 in the backing file"

    teardown_vhost
    [ -d "$T/vhost" ] && rmdir "$T/vhost"
    after=$(configfs_snapshot "$T")
    if [ "$before" != "$after" ]; then
        diff <(echo "$before") <(echo "$after") >&2 || true
        fail "configfs differs from its starting snapshot after teardown"
    fi
    rm -f "$img" "$initrd"
}

scratch_odirect() {
    [ -n "${SCRATCH:-}" ] || fail "SCRATCH not set (vm-run --scratch-mb 0?)"
    dd if=/dev/zero of="$SCRATCH/odirect" bs=4096 count=16 oflag=direct status=none
    dd if="$SCRATCH/odirect" of=/dev/null bs=4096 iflag=direct status=none
    # And the reason it exists: tmpfs refuses O_DIRECT.
    if dd if=/dev/zero of=/tmp/odirect bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
        log "note: /tmp accepted O_DIRECT"
    fi
    rm -f "$SCRATCH/odirect" /tmp/odirect
}

scenario configfs-manual configfs_manual
scenario nested-guest-io nested_guest_io
scenario scratch-odirect scratch_odirect
scenarios_summary

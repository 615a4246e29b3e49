# Runs inside the nested guest (busybox sh). Every disk the host prepared, vhost-scsi
# (/dev/sd?) or virtio (/dev/vd?), starts with "QEMU-LIO-DISK-NN"; the guest checks it and
# answers "GUEST-WROTE-NN" at 1 MiB. The last line must stay "exit $rc": libvirt.sh runs
# this without it, followed by libvirt-guest.sh.
rc=0
n=0
for d in /dev/sd? /dev/vd?; do
  [ -b "$d" ] || continue
  n=$((n + 1))
  p=$(dd if="$d" bs=16 count=1 2>/dev/null)
  case "$p" in
    QEMU-LIO-DISK-??)
      id=${p#QEMU-LIO-DISK-}
      echo "GUEST-SAW $d $p ro=$(cat /sys/block/${d#/dev/}/ro)"
      printf 'GUEST-WROTE-%s' "$id" | dd of="$d" bs=1M seek=1 conv=notrunc,fsync 2>/dev/null || { echo "GUEST-WRITE-FAILED $d"; rc=1; }
      ;;
    *) echo "GUEST-BAD $d '$p'"; rc=1 ;;
  esac
done
sync
echo "GUEST-DISKS $n"
exit $rc

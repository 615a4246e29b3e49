# Runs inside a nested guest that libvirt started (busybox sh). Every disk, vhost-scsi
# (/dev/sd?) or libvirt's own virtio (/dev/vd?), starts with "QEMU-LIO-DISK-NN": the guest
# checks it, writes "GUEST-WROTE-NN" at 1 MiB, says GUEST-IO-OK, and then keeps reading the
# first vhost disk until the host writes STOP at 2 MiB. So the host decides when the guest
# powers off, and the guest proves it still has its disk after whatever the host did.
rc=0
n=0
for d in /dev/sd? /dev/vd?; do
  [ -b "$d" ] || continue
  n=$((n + 1))
  p=$(dd if="$d" bs=16 count=1 2>/dev/null)
  case "$p" in
    QEMU-LIO-DISK-??)
      id=${p#QEMU-LIO-DISK-}
      echo "GUEST-SAW $d $p"
      printf 'GUEST-WROTE-%s' "$id" | dd of="$d" bs=1M seek=1 conv=notrunc,fsync 2>/dev/null || { echo "GUEST-WRITE-FAILED $d"; rc=1; }
      ;;
    *) echo "GUEST-BAD $d '$p'"; rc=1 ;;
  esac
done
sync
echo "GUEST-IO-OK $n rc=$rc"
i=0
while [ $i -lt 3000 ]; do
  echo 1 > /proc/sys/vm/drop_caches
  m=$(dd if=/dev/sda bs=4 count=1 skip=524288 2>/dev/null) || { echo "GUEST-LOST-DISK"; exit 1; }
  [ "$m" = STOP ] && { echo "GUEST-STOP-SEEN"; exit $rc; }
  sleep 1
  i=$((i + 1))
done
echo "GUEST-NEVER-STOPPED"
exit 1

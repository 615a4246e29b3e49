# Runs inside a nested guest that libvirt started (busybox sh), after guest-disks.sh without
# its final exit (which checked every disk, vhost-scsi and libvirt's own virtio, and wrote to
# each, leaving $n and $rc): says GUEST-IO-OK, and then keeps reading the first vhost disk
# until the host writes STOP at 2 MiB. So the host decides when the guest
# powers off, and the guest proves it still has its disk after whatever the host did.
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

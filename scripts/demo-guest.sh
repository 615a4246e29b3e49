# Runs inside the demo's nested guest (busybox sh): show the vhost-scsi disk it was given.
echo "=== guest: block devices"
cat /proc/partitions
for d in /sys/block/sd?; do
  n=${d##*/}
  echo "=== guest: /dev/$n: vendor '$(cat "$d/device/vendor" | tr -d ' ')' model '$(cat "$d/device/model" | sed 's/ *$//')'" \
       "size $(( $(cat "$d/size") * 512 / 1048576 )) MiB, logical block $(cat "$d/queue/logical_block_size"), ro=$(cat "$d/ro")"
  echo "=== guest: first bytes of /dev/$n: '$(dd if="/dev/$n" bs=32 count=1 2>/dev/null)'"
  echo "hello from the guest" | dd of="/dev/$n" bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null
  echo "=== guest: wrote 'hello from the guest' at 1 MiB of /dev/$n"
done

# Runs inside a nested guest (busybox sh): sequential read and write of 128 MiB with O_DIRECT
# on the first disk (/dev/sda for vhost-scsi, /dev/vda for virtio-blk).
d=$(ls /dev/sda /dev/vda 2>/dev/null | head -n 1)
up() { cut -d' ' -f1 /proc/uptime; }
t0=$(up)
dd if=/dev/zero of="$d" bs=1M count=128 oflag=direct conv=fsync 2>/dev/null
t1=$(up)
dd if="$d" of=/dev/null bs=1M count=128 iflag=direct 2>/dev/null
t2=$(up)
echo "NESTED dev=$d write_s=$(awk -v a=$t0 -v b=$t1 'BEGIN{print b-a}') read_s=$(awk -v a=$t1 -v b=$t2 'BEGIN{print b-a}')"

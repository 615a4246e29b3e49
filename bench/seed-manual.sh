#!/bin/sh
# The seed's manual sequence (docs/manual-procedure.md) as a shell script, for N images:
#   seed-manual.sh up|down IMAGE...
# Step for step what the seed types for each image, with the typos fixed as the VM tests fix
# them (naa. not nna., block_size after enable, since enable resets it); fileio_I and the
# wwn naa.5001405d00000000+I for image I. Teardown (not in the seed) undoes it in reverse,
# as tests/vm/scenarios/configfs.sh does.
set -eu
T=/sys/kernel/config/target
cmd=$1
shift
i=0
case $cmd in
up)
  for img in "$@"; do
    so=$T/core/fileio_$i/fileio
    wwn=$(printf 'naa.5001405d%08x' "$i")
    nexus=$(printf 'naa.5001405c%08x' "$i")
    size=$(stat -c %s "$img")
    mkdir -p "$so"
    echo "fd_dev_name=$img,fd_dev_size=$size,fd_buffered_io=1" > "$so/control"
    echo "seed-serial-$i" > "$so/wwn/vpd_unit_serial"
    echo -n "$img" > "$so/udev_path"
    echo 1 > "$so/enable"
    echo 512 > "$so/attrib/block_size"
    mkdir -p "$T/vhost/$wwn/tpgt_1/lun/lun_0"
    echo -n 'scsi_host_id=1,scsi_channel_id=0,scsi_target_id=0,scsi_lun_id=0' > "$so/control"
    echo -n "$nexus" > "$T/vhost/$wwn/tpgt_1/nexus"
    (cd "$T/vhost/$wwn/tpgt_1/lun/lun_0" && ln -s ../../../../../core/fileio_$i/fileio .)
    i=$((i + 1))
  done
  ;;
down)
  i=$#
  while [ "$i" -gt 0 ]; do
    i=$((i - 1))
    wwn=$(printf 'naa.5001405d%08x' "$i")
    rm "$T/vhost/$wwn/tpgt_1/lun/lun_0/fileio"
    rmdir "$T/vhost/$wwn/tpgt_1/lun/lun_0" "$T/vhost/$wwn/tpgt_1" "$T/vhost/$wwn"
    rmdir "$T/core/fileio_$i/fileio" "$T/core/fileio_$i"
  done
  ;;
*) echo "usage: $0 up|down IMAGE..." >&2; exit 2 ;;
esac

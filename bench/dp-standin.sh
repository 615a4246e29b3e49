#!/bin/bash
# Plays QEMU for the data-plane runs: qemu-lio has built the backstore for one cache mode
# (its --name is bench-dp); this exports that very backstore through the loopback fabric
# (tcm_loop), so it appears as /dev/sdX, runs the fio jobs on it, and removes the loopback
# objects again before "QEMU" exits and qemu-lio tears its own objects down.
# QEMU's arguments are ignored. Env: DP_TARGET, DP_OUT, FIO_RT (from vm-bench.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
T=/sys/kernel/config/target
so=$(ls -d "$T"/core/*/bench-dp-disk0)
lb=$T/loopback/naa.5001405a00000001/tpgt_1
{
  echo "control: $(tr '\n' ' ' < "$so/info")"
  echo "emulate_write_cache=$(cat "$so/attrib/emulate_write_cache")"
} > "$DP_OUT/dp-$DP_TARGET-info.txt"
before=$(ls /sys/block | grep '^sd' || true)
mkdir -p "$lb/lun/lun_0"
printf '%s' naa.5001405a00000002 > "$lb/nexus"
ln -s "$so" "$lb/lun/lun_0/dp"
dev=
for _ in $(seq 1 200); do
  for b in $(ls /sys/block | grep '^sd' || true); do
    case " $before " in *" $b "*) ;; *) dev=/dev/$b ;; esac
  done
  [ -n "$dev" ] && [ -b "$dev" ] && break
  dev=
  sleep 0.1
done
rc=0
if [ -z "$dev" ]; then
  echo "dp-standin: the loopback LUN never appeared as /dev/sdX" >&2
  rc=1
else
  echo "device=$dev wce=$(cat /sys/block/${dev#/dev/}/queue/write_cache)" >> "$DP_OUT/dp-$DP_TARGET-info.txt"
  DP_DEV=$dev bash "$here/fio-jobs.sh" || rc=$?
fi
rm "$lb/lun/lun_0/dp"
rmdir "$lb/lun/lun_0"
printf NULL > "$lb/nexus"
rmdir "$lb" "${lb%/tpgt_1}"
exit $rc

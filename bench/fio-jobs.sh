#!/bin/bash
# The data-plane fio jobs against one target, the same for the raw file and the LIO disk:
#   DP_TARGET=NAME DP_DEV=FILE-OR-DEVICE DP_OUT=DIR FIO_RT=SECONDS [DP_DIRECT=0] fio-jobs.sh
# Writes DP_OUT/fio-NAME-JOB.json. O_DIRECT (unless DP_DIRECT=0) and libaio everywhere; the page cache is dropped
# before each job so that no job reads what the previous one left in memory.
set -euo pipefail
: "${DP_TARGET:?}" "${DP_DEV:?}" "${DP_OUT:?}"
rt=${FIO_RT:-5}
#        name     rw         bs  iodepth
jobs=("rr4k-qd1  randread   4k  1"
      "rr4k-qd32 randread   4k  32"
      "rw4k-qd1  randwrite  4k  1"
      "rw4k-qd32 randwrite  4k  32"
      "sr1m      read       1M  8"
      "sw1m      write      1M  8")
for j in "${jobs[@]}"; do
  read -r name rw bs qd <<<"$j"
  sync
  echo 3 > /proc/sys/vm/drop_caches
  fio --name="$name" --filename="$DP_DEV" --rw="$rw" --bs="$bs" --iodepth="$qd" \
      --ioengine=libaio --direct="${DP_DIRECT:-1}" --numjobs=1 --time_based --runtime="$rt" --ramp_time=1 \
      --randrepeat=0 --output-format=json --output="$DP_OUT/fio-$DP_TARGET-$name.json" \
      > /dev/null
done
sync

# Runs inside a nested guest (busybox sh) for the `cpu` part of vm-bench.sh, which prepends
# CPU_RT (seconds per fio job), CPU_IDLE (seconds of the idle window) and CPU_JOBS.
# The host-side meter (bench-cpu-meter) reads this console: each "CPU-MARK BEGIN/END NAME"
# line opens/closes a window over which it takes the host's CPU time. The guest prints
# nothing else inside a window, so the console costs the host nothing there. The I/O is
# bench-iogen's (fio's 4k random jobs in a 1 MB static binary; see bench/iogen.cc for why).
d=$(ls /dev/sda /dev/vda 2>/dev/null | head -n 1)
[ -n "$d" ] || { echo "CPU-ERROR no disk"; exit 1; }
echo "CPU-DEV $d sched=$(cat /sys/block/${d#/dev/}/queue/scheduler 2>/dev/null)"
# Background: the host's CPU while the guest sits idle with everything up (QEMU's timers,
# the test VM's own housekeeping); report.py scales it to each job's length.
echo "CPU-MARK BEGIN idle"
sleep "$CPU_IDLE"
echo "CPU-MARK END idle"
# The baseline: the guest's CPU as busy as during the jobs, without I/O.
/usr/bin/bench-iogen - spin 0 "$CPU_RT" busy
rc=0
for j in $CPU_JOBS; do
  # NAME:RW:IODEPTH, e.g. rr4k-qd32:randread:32. bench-iogen marks its own window (just
  # before its first submission, just after its last completion) and prints its CPU-FIO line.
  name=${j%%:*} rest=${j#*:}
  /usr/bin/bench-iogen "$d" "${rest%%:*}" "${rest#*:}" "$CPU_RT" "$name" || rc=1
done
exit $rc

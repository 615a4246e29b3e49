#!/usr/bin/env bash
# Control of a running VM in the real kernel (issue 13): `qemu-lio attach` and `detach`
# through the VM's private QMP socket, with a nested guest that sees a disk arrive and go
# (PCI hot-plug), and real QEMUs without a guest OS for what needs no guest: q35 hot-plug
# ports, a guest that never releases a disk, and the launch modes (exec, drop-in, daemon).
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
# shellcheck source=images.sh
. "$here/images.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
REAL=$(command -v qemu-system-x86_64)
WORK=$(mktemp -d /tmp/qemu-lio-control.XXXXXX)
STATE_DIR=$WORK/state
GUEST_TIMEOUT=${GUEST_TIMEOUT:-900}
mkdir -p "$T/vhost"

# shellcheck source=state.sh
. "$here/state.sh"

# A nested guest on pc boots with one disk (reads the host's bytes, writes its own: the
# one-disk end-to-end case); `attach` adds a second (after a bad attach that
# must leave everything as it was), the guest finds it, reads the host's bytes and writes
# its own; `detach` removes it, the guest sees it go, its objects are gone while the VM
# runs; the first disk still works; the VM's exit cleans the rest.
scenario_hotplug_guest() {
  local a=$WORK/a.img b=$WORK/b.img log=$WORK/hp.log before pid rc=0 sock snap bs wwn
  pattern_image "$a" 01
  pattern_image "$b" 02
  before=$(configfs_snapshot)
  # The guest waits for the host's STOP (at 2 MiB of its first disk) before it powers off:
  # QEMU finishes a removal in its main loop, and a guest that exits the moment its disk
  # is gone can take QEMU down before detach has heard of it.
  cat > "$WORK/hp-guest.sh" <<G
p=\$(dd if=/dev/sda bs=16 count=1 2>/dev/null)
printf 'GUEST-WROTE-01' | dd of=/dev/sda bs=1M seek=1 conv=notrunc,fsync 2>/dev/null
echo "GUEST-READY \$p"
i=0
while [ ! -b /dev/sdb ] && [ \$i -lt $(scaled 900) ]; do sleep 1; i=\$((i + 1)); done
[ -b /dev/sdb ] || { echo GUEST-NO-HOTPLUG; exit 1; }
sleep 1
echo "GUEST-HOTPLUG-SAW \$(dd if=/dev/sdb bs=16 count=1 2>/dev/null)"
printf 'GUEST-WROTE-02' | dd of=/dev/sdb bs=1M seek=1 conv=notrunc,fsync 2>/dev/null && echo GUEST-HOTPLUG-WROTE
sync
i=0
while [ -b /dev/sdb ] && [ \$i -lt $(scaled 900) ]; do sleep 1; i=\$((i + 1)); done
[ -b /dev/sdb ] && { echo GUEST-NO-UNPLUG; exit 1; }
echo GUEST-UNPLUG-SAW
i=0
while [ \$i -lt $(scaled 900) ]; do
  echo 3 > /proc/sys/vm/drop_caches
  [ "\$(dd if=/dev/sda bs=4 count=1 skip=524288 2>/dev/null)" = STOP ] && break
  sleep 1; i=\$((i + 1))
done
echo "GUEST-STILL \$(dd if=/dev/sda bs=16 count=1 2>/dev/null) \$(dd if=/dev/sda bs=4 count=1 skip=524288 2>/dev/null)"
exit 0
G
  "$MAKE_GUEST_INITRD" "$WORK/guest.img" "$WORK/hp-guest.sh" /dev/sda || fail "guest initrd"
  local t0=$SECONDS
  timeout "$GUEST_TIMEOUT" "$QEMU_LIO" --state-dir "$STATE_DIR" --name hp --image "$a" -- \
    qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd "$WORK/guest.img" -append "$GUEST_APPEND" > "$log" 2>&1 &
  pid=$!
  wait_log 600 "$log" 'GUEST-READY QEMU-LIO-DISK-01'
  echo "  guest up after $((SECONDS - t0)) s"

  sock=$(vm_field hp "vm['control_socket']") || fail "hp not in list"
  case $sock in "$STATE_DIR"/hp.*.qmp) ;; *) fail "control socket in list --json: '$sock'" ;; esac
  assert_eq "socket 600" "$(stat -c '%F %a' "$sock")" "control socket type and mode"

  # A bad image: one clear line, nothing provisioned, the VM untouched.
  snap=$(configfs_snapshot)
  expect_error 1 "$WORK/missing.img" -- qlio attach hp "$WORK/missing.img"
  expect_error 1 "no running VM" -- qlio attach nosuchvm "$b"
  expect_error 2 "" -- qlio attach hp
  assert_eq "$snap" "$(configfs_snapshot)" "configfs unchanged by the failed attach"
  assert_eq 1 "$(vm_field hp 'len(vm["disks"])')" "the VM still has one disk"

  local out
  out=$(qlio attach hp "$b" --id hot1 2>&1) || { echo "$out"; show_tail "$log"; fail "attach failed"; }
  echo "  $out"
  assert_eq 2 "$(vm_field hp 'len(vm["disks"])')" "list shows the attached disk"
  assert_eq hot1 "$(vm_field hp "[d['device_id'] for d in vm['disks'] if d['image'] == '$b'][0]")" "its device id"
  bs=$(backstore_of hp "$b")
  wwn=$(vm_field hp "[d['wwn'] for d in vm['disks'] if d['image'] == '$b'][0]")
  assert_exists "$T/$bs"
  assert_exists "$T/vhost/$wwn/tpgt_1/lun/lun_0"
  expect_error 1 "already" -- qlio attach hp "$b"
  wait_log 300 "$log" 'GUEST-HOTPLUG-SAW QEMU-LIO-DISK-02'
  wait_log 120 "$log" 'GUEST-HOTPLUG-WROTE'
  wait_for 30 sh -c "[ \"\$(dd if='$b' bs=1 skip=1048576 count=14 status=none)\" = GUEST-WROTE-02 ]" \
    || fail "the guest's bytes are not in the attached image"

  out=$(qlio detach hp hot1 --timeout "$(scaled 120)" 2>&1) || { echo "$out"; show_tail "$log"; fail "detach failed"; }
  echo "  $out"
  assert_absent "$T/$bs"
  assert_absent "$T/vhost/$wwn"
  kill -0 "$pid" 2>/dev/null || fail "the VM died with the detach"
  assert_eq 1 "$(vm_field hp 'len(vm["disks"])')" "list no longer shows the detached disk"
  assert_eq active "$(vm_field hp 'vm["state"]')" "the VM's set is whole"
  wait_log 300 "$log" 'GUEST-UNPLUG-SAW'
  printf STOP | dd of="$a" bs=1 seek=2097152 conv=notrunc status=none
  wait_log 300 "$log" 'GUEST-STILL QEMU-LIO-DISK-01 STOP'
  wait "$pid" || rc=$?
  grep -E 'GUEST-' "$log" | sed 's/^/  guest: /'
  echo "  nested guest: $((SECONDS - t0)) s"
  assert_eq 0 "$rc" "qemu-lio exit status (QEMU's)"
  grep -q 'GUEST-EXIT 0' "$log" || fail "guest script failed"
  assert_eq GUEST-WROTE-01 "$(guest_bytes "$a")" "the guest's bytes are in the first image"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the guest powered off"
  assert_eq "" "$(leftovers)" "no journal or socket left"
}

# A q35 QEMU with no guest OS, started with --exec and one hot-plug port: the first attach
# takes the port, the second finds none (clear error, rolled back). Without an OS nobody
# releases a device, so detach times out with a clear error and keeps the objects; the
# VM's exit then removes everything, the attached disk included.
scenario_q35_ports_exec() {
  local a=$WORK/qa.img b=$WORK/qb.img c=$WORK/qc.img before pid snap out bs
  pattern_image "$a" 11; pattern_image "$b" 12; pattern_image "$c" 13
  before=$(configfs_snapshot)
  "$QEMU_LIO" --state-dir "$STATE_DIR" --name q35 --exec --hotplug-ports 1 --image "$a" -- \
    "$REAL" -machine q35 -nodefaults -display none -m 64 > "$WORK/q35.log" 2>&1 &
  pid=$!
  wait_for 60 test -S "$STATE_DIR/q35.$pid.qmp" || { show_tail "$WORK/q35.log"; fail "no control socket"; }
  assert_eq "$(readlink -f "$REAL")" "$(readlink -f /proc/$pid/exe)" "exec mode: QEMU kept the pid"
  out=$(qlio attach q35 "$b" 2>&1) || { echo "$out"; fail "attach into the hot-plug port failed"; }
  echo "  $out"
  echo "$out" | grep -q 'as qemu-lio-disk1 ' || fail "default device id: $out"
  snap=$(configfs_snapshot)
  expect_error 1 "no free hot-plug port" -- qlio attach q35 "$c"
  assert_eq "$snap" "$(configfs_snapshot)" "the refused attach left configfs as it was"
  assert_eq 2 "$(vm_field q35 'len(vm["disks"])')" "two disks after the refused attach"
  bs=$(backstore_of q35 "$b")
  expect_error 1 "did not release" -- qlio detach q35 "$b" --timeout 3
  assert_exists "$T/$bs"
  assert_eq 2 "$(vm_field q35 'len(vm["disks"])')" "the unreleased disk stays in the journal"
  kill -TERM "$pid"
  wait_for 120 no_leftovers || { ls -l "$STATE_DIR"; fail "the backstop did not clean up"; }
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the exec'd QEMU ended"
}

# The drop-in (linked as qemu-system-x86_64), daemonized as libvirt and EVE used to run it,
# hot-plug ports from the config file: attach works there too, and the daemon's end cleans.
scenario_dropin_daemon() {
  local a=$WORK/da.img b=$WORK/db.img before out qpid
  pattern_image "$a" 21; pattern_image "$b" 22
  mkdir -p "$WORK/bin"
  ln -sf "$QEMU_LIO" "$WORK/bin/qemu-system-x86_64"
  printf 'hotplug_ports = 2\n' > "$WORK/qemu-lio.conf"
  before=$(configfs_snapshot)
  QEMU_LIO_CONFIG=$WORK/qemu-lio.conf QEMU_LIO_STATE_DIR=$STATE_DIR PATH=$WORK/bin:$PATH \
    qemu-system-x86_64 -name dd -machine pc-q35-7.2 -nodefaults -display none -m 64 -daemonize \
    -pidfile "$WORK/dd.pid" -drive "file=$a,if=vhost-scsi,format=raw" > "$WORK/dd.log" 2>&1 \
    || { cat "$WORK/dd.log"; fail "drop-in -daemonize failed"; }
  qpid=$(cat "$WORK/dd.pid")
  vm_field dd "vm['control_socket']" | grep -q "/dd\.[0-9]*\.qmp$" || fail "no control socket in list"
  out=$(qlio attach dd "$b,cache=writeback" --id late 2>&1) || { echo "$out"; fail "attach to the drop-in's daemon failed"; }
  echo "  $out"
  assert_eq 2 "$(vm_field dd 'len(vm["disks"])')" "the daemon's set has two disks"
  kill -TERM "$qpid"
  wait_for 120 no_leftovers || { ls -l "$STATE_DIR"; fail "the backstop did not clean up"; }
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the daemon ended"
}

# controller=NAME (issue 14): a nested guest with 8 disks on one controller sees one
# virtio-scsi PCI function and one SCSI host with LUNs 0..7, each LUN the host's image in
# order; it reads each one's bytes and writes its own. The guest removes LUN 3 (the kernel
# does not tell it: QEMU 7.2's vhost-scsi offers no hot-plug events), then `detach` removes
# that LUN alone while the VM runs: the target and the other 7 LUNs stay, and the guest
# writes to each of them again afterwards. A disk cannot join the running controller.
scenario_controller_guest() {
  local log=$WORK/ctl.log before pid rc=0 out wwn k imgs=() specs=()
  for k in 0 1 2 3 4 5 6 7; do
    imgs+=("$WORK/c$k.img")
    pattern_image "$WORK/c$k.img" "3$((k + 1))"
    specs+=(--image "$WORK/c$k.img,controller=c0")
  done
  pattern_image "$WORK/c-late.img" 39
  before=$(configfs_snapshot)
  cat > "$WORK/ctl-guest.sh" <<'G'
pci=0
for d in /sys/bus/pci/devices/*; do
  case "$(cat "$d/vendor"):$(cat "$d/device")" in 0x1af4:0x1004|0x1af4:0x1048) pci=$((pci + 1)) ;; esac
done
echo "GUEST-SCSI-PCI $pci"
echo "GUEST-SCSI-HOSTS $(ls /sys/class/scsi_host | wc -l)"
n=0 victim= first=
for d in /dev/sd?; do
  s=${d#/dev/}
  hctl=$(basename "$(readlink "/sys/block/$s/device")")
  lun=${hctl##*:}
  p=$(dd if="$d" bs=16 count=1 2>/dev/null)
  echo "GUEST-LUN $lun $p"
  printf 'GUEST-WROTE-%s' "${p#QEMU-LIO-DISK-}" | dd of="$d" bs=1M seek=1 conv=notrunc,fsync 2>/dev/null || echo "GUEST-WRITE-FAILED $d"
  [ "$lun" = 3 ] && victim=$s
  [ "$lun" = 0 ] && first=$d
  n=$((n + 1))
done
sync
echo "GUEST-DISKS $n"
[ -n "$victim" ] && [ -n "$first" ] || { echo GUEST-NO-LUN3-OR-LUN0; exit 1; }
# What detach's warning asks of the guest: let go of the disk before its LUN goes.
echo 1 > "/sys/block/$victim/device/delete"
echo "GUEST-DELETED $victim"
i=0
while [ $i -lt 1800 ]; do
  echo 3 > /proc/sys/vm/drop_caches
  [ "$(dd if="$first" bs=4 count=1 skip=524288 2>/dev/null)" = STOP ] && break
  sleep 1; i=$((i + 1))
done
m=0
for d in /dev/sd?; do
  p=$(dd if="$d" bs=16 count=1 2>/dev/null)
  printf 'GUEST-AGAIN-%s' "${p#QEMU-LIO-DISK-}" | dd of="$d" bs=1M seek=3 conv=notrunc,fsync 2>/dev/null && m=$((m + 1))
done
sync
echo "GUEST-AGAIN $m"
G
  "$MAKE_GUEST_INITRD" "$WORK/ctl-guest.img" "$WORK/ctl-guest.sh" /dev/sda /dev/sdb /dev/sdc /dev/sdd /dev/sde /dev/sdf /dev/sdg /dev/sdh \
    || fail "guest initrd"
  local t0=$SECONDS
  timeout "$GUEST_TIMEOUT" "$QEMU_LIO" --state-dir "$STATE_DIR" --name ctl "${specs[@]}" -- \
    qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd "$WORK/ctl-guest.img" -append "$GUEST_APPEND" > "$log" 2>&1 &
  pid=$!
  wait_log 600 "$log" 'GUEST-DELETED'
  echo "  guest up after $((SECONDS - t0)) s"
  grep -E 'GUEST-' "$log" | sed 's/^/  guest: /'
  # The console ends its lines with CR LF.
  grep -qE 'GUEST-SCSI-PCI 1\b' "$log" || fail "the guest does not see exactly one virtio-scsi PCI function"
  grep -qE 'GUEST-SCSI-HOSTS 1\b' "$log" || fail "the guest does not see exactly one SCSI host"
  grep -qE 'GUEST-DISKS 8\b' "$log" || fail "the guest does not see 8 disks"
  for k in 0 1 2 3 4 5 6 7; do
    grep -q "GUEST-LUN $k QEMU-LIO-DISK-3$((k + 1))" "$log" || fail "LUN $k is not image c$k"
  done
  wwn=$(vm_field ctl "vm['disks'][0]['wwn']") || fail "ctl not in list"
  assert_eq 8 "$(vm_field ctl "len([d for d in vm['disks'] if d['wwn'] == '$wwn'])")" "all 8 disks on one wwn"
  assert_eq 1 "$(ls "$T/vhost" | grep -c '^naa\.')" "one vhost target"
  assert_eq "lun_0 lun_1 lun_2 lun_3 lun_4 lun_5 lun_6 lun_7" "$(ls "$T/vhost/$wwn/tpgt_1/lun" | tr '\n' ' ' | sed 's/ $//')" \
    "LUNs 0..7 in the one TPG"
  local bs3
  bs3=$(backstore_of ctl "${imgs[3]}")
  assert_exists "$T/$bs3"

  expect_error 2 "running controller" -- qlio attach ctl "$WORK/c-late.img,controller=c0"
  out=$(qlio detach ctl "${imgs[3]}" 2>&1) || { echo "$out"; show_tail "$log"; fail "detach of LUN 3 failed"; }
  echo "  $out"
  echo "$out" | grep -q 'LUN 3 of' || fail "detach does not name the LUN: $out"
  echo "$out" | grep -q 'qemu-lio: warning: .*not told' || fail "detach does not warn that the guest is not told: $out"
  assert_absent "$T/vhost/$wwn/tpgt_1/lun/lun_3"
  assert_absent "$T/$bs3"
  assert_eq "lun_0 lun_1 lun_2 lun_4 lun_5 lun_6 lun_7" "$(ls "$T/vhost/$wwn/tpgt_1/lun" | tr '\n' ' ' | sed 's/ $//')" \
    "the other LUNs stay"
  assert_eq 7 "$(vm_field ctl 'len(vm["disks"])')" "list no longer shows the detached disk"
  kill -0 "$pid" 2>/dev/null || fail "the VM died with the detach"
  printf STOP | dd of="${imgs[0]}" bs=1 seek=2097152 conv=notrunc status=none
  wait_log 300 "$log" 'GUEST-AGAIN 7'
  wait "$pid" || rc=$?
  echo "  nested guest: $((SECONDS - t0)) s"
  assert_eq 0 "$rc" "qemu-lio exit status (QEMU's)"
  grep -q 'GUEST-EXIT 0' "$log" || fail "guest script failed"
  for k in 0 1 2 3 4 5 6 7; do
    assert_eq "GUEST-WROTE-3$((k + 1))" "$(guest_bytes "${imgs[$k]}")" "the guest's first write to c$k"
    local again
    again=$(dd if="${imgs[$k]}" bs=1 skip=3145728 count=14 status=none | tr -d '\0')
    if [ "$k" = 3 ]; then
      assert_eq "" "$again" "nothing reached the detached image"
    else
      assert_eq "GUEST-AGAIN-3$((k + 1))" "$again" "the guest's write to c$k after the detach"
    fi
  done
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the guest powered off"
  assert_eq "" "$(leftovers)" "no journal or socket left"
}

scenario control-q35-ports-exec scenario_q35_ports_exec
scenario control-dropin-daemon scenario_dropin_daemon
scenario control-hotplug-guest scenario_hotplug_guest
scenario control-controller-guest scenario_controller_guest
scenarios_summary

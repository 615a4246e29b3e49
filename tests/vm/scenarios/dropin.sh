#!/usr/bin/env bash
# The drop-in mode in the real kernel: qemu-lio linked as qemu-system-x86_64 first on PATH.
# Pass-through must be byte-identical to the real QEMU; -drive if=vhost-scsi, EVE-style
# -readconfig, -daemonize/-pidfile, exec mode and the unprivileged case are checked too.
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
# shellcheck source=images.sh
. "$here/images.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
REAL=$(command -v qemu-system-x86_64)
WORK=$(mktemp -d /tmp/qemu-lio-dropin.XXXXXX)
chmod 755 "$WORK"  # the unprivileged scenario runs the link from here as nobody
LINKDIR=$WORK/bin
mkdir -p "$LINKDIR" "$T/vhost"
ln -s "$QEMU_LIO" "$LINKDIR/qemu-system-x86_64"
export QEMU_LIO_STATE_DIR=$WORK/state
GUEST_TIMEOUT=${GUEST_TIMEOUT:-600}
dropin() { PATH=$LINKDIR:$PATH qemu-system-x86_64 "$@"; }



# lib.sh's fast nested-guest boot arguments, without -nographic (QEMU refuses it with
# -daemonize, and the readconfig run wants its console on stdout via -serial stdio instead).
GUEST_ARGS=()
for a in "${GUEST_BOOT_ARGS[@]}"; do [ "$a" = -nographic ] || GUEST_ARGS+=("$a"); done

configfs_clean() { [ "$(configfs_snapshot)" = "$before" ]; }

scenario_pass_through() {
  local probe a b ra rb
  for probe in "-version" "-device help" "-machine help"; do
    ra=0; rb=0
    # shellcheck disable=SC2086
    a=$("$REAL" $probe 2>&1) || ra=$?
    # shellcheck disable=SC2086
    b=$(dropin $probe 2>&1) || rb=$?
    assert_eq "$a" "$b" "output of $probe"
    assert_eq "$ra" "$rb" "status of $probe"
  done
  # libvirt-style QMP probe, driven over stdio.
  local qmp='{"execute":"qmp_capabilities"}
{"execute":"query-version"}
{"execute":"quit"}'
  ra=0; rb=0
  a=$(echo "$qmp" | "$REAL" -machine none -nodefaults -nographic -S -qmp stdio 2>&1) || ra=$?
  b=$(echo "$qmp" | dropin -machine none -nodefaults -nographic -S -qmp stdio 2>&1) || rb=$?
  # Events carry the time they happened; everything else must match byte for byte.
  local untime='s/"timestamp": \{[^}]*\}/"timestamp": T/'
  assert_eq "$(echo "$a" | sed -E "$untime")" "$(echo "$b" | sed -E "$untime")" "QMP exchange"
  assert_eq "$ra" "$rb" "QMP exit status"
  echo "$b" | grep -q '"qemu"' || fail "QMP answered no version: $b"
  # Pass-through is an exec: QEMU keeps the pid we started and the argv[0] we gave.
  PATH=$LINKDIR:$PATH qemu-system-x86_64 -machine none -nodefaults -display none -S -qmp unix:$WORK/qmp.sock,server=on,wait=off &
  local pid=$!
  wait_for 20 test -S "$WORK/qmp.sock" || fail "QEMU did not start"
  assert_eq "$(readlink -f "$REAL")" "$(readlink -f /proc/$pid/exe)" "the pid we started runs the real QEMU"
  assert_eq qemu-system-x86_64 "$(tr '\0' '\n' < /proc/$pid/cmdline | head -n 1)" "argv[0] preserved"
  kill "$pid"; wait "$pid" || true
  # The real QEMU named by QEMU_LIO_QEMU but being qemu-lio itself: an error, not a loop.
  local rc=0
  QEMU_LIO_QEMU=$LINKDIR/qemu-system-x86_64 dropin -version 2> "$WORK/err" || rc=$?
  assert_eq 127 "$rc" "self as real QEMU"
  grep -q 'is qemu-lio itself' "$WORK/err" || fail "message: $(cat "$WORK/err")"
}

scenario_unprivileged() {
  local before img=$WORK/unpriv.img rc=0
  pattern_image "$img" 09
  chmod 644 "$img"
  before=$(configfs_snapshot)
  setpriv --reuid 65534 --regid 65534 --clear-groups env QEMU_LIO_STATE_DIR=/tmp \
    "$LINKDIR/qemu-system-x86_64" -drive "file=$img,if=vhost-scsi" -S 2> "$WORK/err" || rc=$?
  assert_eq 1 "$rc" "status when not root"
  grep -q 'user = "root"' "$WORK/err" || fail "message does not name the fix: $(cat "$WORK/err")"
  assert_eq 1 "$(wc -l < "$WORK/err")" "one line"
  assert_eq "$before" "$(configfs_snapshot)" "configfs unchanged"
}

scenario_exec_mode() {
  local before img=$WORK/exec.img rc=0
  pattern_image "$img" 08
  before=$(configfs_snapshot)
  # In exec mode the stand-in (QEMU) must run under the pid qemu-lio started with.
  STANDIN_RUN="echo \$PPID > $WORK/standin-pid; ls $T/vhost | grep -c naa. > $WORK/targets" \
    "$QEMU_LIO" --state-dir "$QEMU_LIO_STATE_DIR" --exec --image "$img" -- "$here/stand-in-qemu.sh" &
  local pid=$!
  wait "$pid" || rc=$?
  assert_eq 0 "$rc" "exit status in exec mode"
  assert_eq 1 "$(cat "$WORK/targets")" "target existed while QEMU ran"
  # STANDIN_RUN's bash is a child of the stand-in, so its $PPID is the stand-in's pid.
  assert_eq "$pid" "$(cat "$WORK/standin-pid")" "QEMU runs under qemu-lio's pid"
  wait_for 20 configfs_clean || fail "monitor did not tear down within 20 s"
}

scenario_drive_daemonize_kill() {
  local before img=$WORK/drive.img ro=$WORK/ro.img rc=0 t0=$SECONDS
  pattern_image "$img" 01
  cat > "$WORK/guest.sh" <<'G'
d=/dev/sda
echo "GUEST-SAW $(dd if=$d bs=16 count=1 2>/dev/null) wce=$(cat /sys/block/sda/queue/write_cache)"
printf 'GUEST-WROTE-01' | dd of=$d bs=1M seek=1 conv=notrunc,fsync 2>/dev/null && sync && echo GUEST-SYNCED
sleep 600
G
  "$MAKE_GUEST_INITRD" "$WORK/guest.img" "$WORK/guest.sh" /dev/sda || fail "guest initrd"
  before=$(configfs_snapshot)
  dropin "${GUEST_ARGS[@]}" -display none -serial "file:$WORK/serial.log" \
    -initrd "$WORK/guest.img" -append "$GUEST_APPEND" \
    -drive "file=$img,if=vhost-scsi,format=raw,cache=writeback,aio=threads" \
    -daemonize -pidfile "$WORK/qemu.pid" || rc=$?
  assert_eq 0 "$rc" "-daemonize returns QEMU's status"
  local qpid
  qpid=$(cat "$WORK/qemu.pid")
  [ -d "/proc/$qpid" ] || fail "daemon $qpid not running"
  grep -q qemu-system "/proc/$qpid/comm" "/proc/$qpid/cmdline" 2>/dev/null || true
  assert_eq "$(readlink -f "$REAL")" "$(readlink -f /proc/$qpid/exe)" "-pidfile holds QEMU's pid"
  [ "$(configfs_snapshot)" != "$before" ] || fail "no LIO objects while the daemon runs"
  wait_for "$GUEST_TIMEOUT" grep -q GUEST-SYNCED "$WORK/serial.log" || { cat "$WORK/serial.log"; fail "guest never synced"; }
  grep 'GUEST-' "$WORK/serial.log" | sed 's/^/  guest: /' || true
  grep -q 'GUEST-SAW QEMU-LIO-DISK-01 wce=write back' "$WORK/serial.log" || fail "guest did not see the pattern and a write cache"
  # EVE's stop: SIGKILL the pid from the pidfile, at once after the guest's flush.
  kill -9 "$qpid"
  local t1=$SECONDS
  wait_for 30 configfs_clean || fail "configfs not clean 30 s after kill -9"
  echo "  configfs clean $((SECONDS - t1)) s after kill -9; nested run $((SECONDS - t0)) s"
  assert_eq GUEST-WROTE-01 "$(guest_bytes "$img")" "the guest's synced write survived kill -9"
  [ -z "$(ls "$QEMU_LIO_STATE_DIR"/*.journal 2>/dev/null)" ] || fail "journal left: $(ls "$QEMU_LIO_STATE_DIR")"
}

scenario_readconfig_eve() {
  local before vhost=$WORK/rc-vhost.img blk=$WORK/rc-blk.img sum rc=0 t0=$SECONDS
  pattern_image "$vhost" 02
  pattern_image "$blk" 03
  sum=$(md5sum < "$blk")
  # The shape of EVE's qemuConfTemplate/qemuDiskTemplate: a virtio-blk disk as EVE writes it,
  # and a second disk whose only change is if = "vhost-scsi".
  cat > "$WORK/vm.cfg" <<CFG
# EVE-style configuration
[drive "drive-virtio-disk0"]
  file = "$blk"
  format = "raw"
  aio = "threads"
  cache = "writeback"
  if = "none"

[device "virtio-disk0"]
  driver = "virtio-blk-pci"
  scsi = "off"
  drive = "drive-virtio-disk0"

[drive "drive-virtio-disk1"]
  file = "$vhost"
  format = "raw"
  aio = "threads"
  cache = "writeback"
  if = "vhost-scsi"

[device "virtio-disk1"]
  driver = "virtio-blk-pci"
  scsi = "off"
  drive = "drive-virtio-disk1"
CFG
  cp "$WORK/vm.cfg" "$WORK/vm.cfg.orig"
  cat > "$WORK/guest.sh" <<'G'
echo "GUEST-VDA $(dd if=/dev/vda bs=16 count=1 2>/dev/null)"
echo "GUEST-SDA $(dd if=/dev/sda bs=16 count=1 2>/dev/null)"
printf 'GUEST-WROTE-02' | dd of=/dev/sda bs=1M seek=1 conv=notrunc,fsync 2>/dev/null
G
  "$MAKE_GUEST_INITRD" "$WORK/guest.img" "$WORK/guest.sh" /dev/sda /dev/vda || fail "guest initrd"
  before=$(configfs_snapshot)
  timeout "$GUEST_TIMEOUT" env PATH="$LINKDIR:$PATH" qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" \
    -initrd "$WORK/guest.img" -append "$GUEST_APPEND" \
    -readconfig "$WORK/vm.cfg" -pidfile "$WORK/rc.pid" > "$WORK/rc.log" 2>&1 || rc=$?
  grep 'GUEST-' "$WORK/rc.log" | sed 's/^/  guest: /' || true
  echo "  nested run $((SECONDS - t0)) s"
  assert_eq 0 "$rc" "exit status"
  grep -q 'GUEST-VDA QEMU-LIO-DISK-03' "$WORK/rc.log" || fail "virtio-blk disk not seen"
  grep -q 'GUEST-SDA QEMU-LIO-DISK-02' "$WORK/rc.log" || fail "vhost-scsi disk not seen"
  assert_eq GUEST-WROTE-02 "$(guest_bytes "$vhost")" "guest's bytes in the vhost image"
  assert_eq "$sum" "$(md5sum < "$blk")" "virtio-blk image untouched"
  cmp -s "$WORK/vm.cfg" "$WORK/vm.cfg.orig" || fail "the caller's readconfig file was modified"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean"
  [ -z "$(ls "$QEMU_LIO_STATE_DIR"/*.cfg 2>/dev/null)" ] || fail "rewritten readconfig copy left behind"
}

# libvirt's way: every -device is JSON with an explicit address. QEMU creates key=value
# -device options before JSON ones, so an injected key=value vhost-scsi-pci would take the
# slot the caller's first device names; qemu-lio's devices must come as JSON, after them.
# Then EVE's way of stopping: kill -9 of QEMU and an instant restart on the same 16 images,
# while the backstop is still removing them (about 1 s under TCG): the start must wait for
# that teardown, not fail on "already exported". -daemonize returns only once QEMU has
# created every device, so its status is the verdict on both.
scenario_json_devices_and_instant_restart() {
  local before rc k drives=() qpid
  for k in $(seq 10 25); do
    pattern_image "$WORK/ir$k.img" "$k"
    drives+=(-drive "file=$WORK/ir$k.img,if=vhost-scsi,format=raw")
  done
  before=$(configfs_snapshot)
  start_ir() {
    dropin -machine pc -nodefaults -display none -S -daemonize -pidfile "$WORK/ir.pid" \
      -device '{"driver":"virtio-rng-pci","id":"rng0","bus":"pci.0","addr":"0x2"}' \
      -device '{"driver":"virtio-rng-pci","id":"rng1","bus":"pci.0","addr":"0x3"}' "${drives[@]}" 2> "$WORK/ir.err"
  }
  rc=0; start_ir || rc=$?
  [ "$rc" = 0 ] || { cat "$WORK/ir.err"; fail "first start: status $rc"; }
  qpid=$(cat "$WORK/ir.pid")
  assert_eq 16 "$(ls "$T/vhost" | grep -c naa.)" "targets while QEMU runs"
  kill -9 "$qpid"
  rc=0; start_ir || rc=$?
  [ "$rc" = 0 ] || { cat "$WORK/ir.err"; fail "instant restart: status $rc"; }
  qpid=$(cat "$WORK/ir.pid")
  assert_eq 16 "$(ls "$T/vhost" | grep -c naa.)" "targets after the restart"
  kill -9 "$qpid"
  wait_for 60 configfs_clean || fail "configfs not clean 60 s after the last kill -9"
  [ -z "$(ls "$QEMU_LIO_STATE_DIR"/*.journal 2>/dev/null)" ] || fail "journal left: $(ls "$QEMU_LIO_STATE_DIR")"
}

scenario pass-through scenario_pass_through
scenario unprivileged scenario_unprivileged
scenario exec-mode scenario_exec_mode
scenario json-devices-and-instant-restart scenario_json_devices_and_instant_restart
scenario drive-daemonize-kill scenario_drive_daemonize_kill
scenario readconfig-eve scenario_readconfig_eve
scenarios_summary

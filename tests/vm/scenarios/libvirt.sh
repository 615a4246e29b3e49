#!/usr/bin/env bash
# libvirt in the real kernel: Debian's libvirtd runs inside the test VM and starts nested
# guests (TCG) both ways qemu-lio offers:
#   drop-in  qemu-lio is the domain's <emulator> (QEMU as root, exec mode), the vhost disk
#            comes from <qemu:commandline> -drive if=vhost-scsi, beside an ordinary libvirt
#            virtio <disk> whose address libvirt chooses: on pc and on q35;
#   hook     libvirt's own unprivileged QEMU (libvirt-qemu) with a vhost <hostdev>; the
#            qemu.d hook provisions the <lio:disk> on prepare and tears down on release.
# Each way: guest I/O on every disk, libvirt's pid is QEMU's, a libvirtd restart while the
# guest runs keeps its disks (the guest reads through them afterwards), a guest-initiated
# power-off and a virsh destroy each leave configfs as it was.
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
# shellcheck source=images.sh
. "$here/images.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
REAL=$(command -v qemu-system-x86_64)
WORK=$(mktemp -d /tmp/qemu-lio-libvirt.XXXXXX)
# libvirt's QEMU runs as libvirt-qemu, and dynamic_ownership is off below: it must be able
# to read the initrd and the virtio image and write its console file.
chmod 755 "$WORK"
mkdir -p "$WORK/bin" "$T/vhost"
ln -s "$QEMU_LIO" "$WORK/bin/qemu-system-x86_64"
GUEST_WAIT=${GUEST_WAIT:-600}   # a nested boot under TCG: 40..300 s measured

{ sed '$d' "$here/guest-disks.sh"; cat "$here/libvirt-guest.sh"; } > "$WORK/guest.sh"
"$MAKE_GUEST_INITRD" "$WORK/guest.img" "$WORK/guest.sh" /dev/sda /dev/vda || fail "guest initrd"
chmod 644 "$WORK/guest.img"

# --- libvirtd -----------------------------------------------------------------------------

mkdir -p /etc/libvirt/hooks/qemu.d
# The script the package installs (packaging/libvirt-hook.in), pointed at the binary under test.
sed "s|@QEMU_LIO_BIN@|$QEMU_LIO|g" "$here/../../../packaging/libvirt-hook.in" > /etc/libvirt/hooks/qemu.d/qemu-lio
chmod 755 /etc/libvirt/hooks/qemu.d/qemu-lio
# stdio_handler: no virtlogd in the VM. dynamic_ownership off: libvirt would chown the
# guest's kernel, which lives on the read-only host tree. namespaces: libvirt cannot build
# its private /dev on the VM's overlay root (even /dev/null is missing in it). On a normal
# host the drop-in's QEMU opens /dev/vhost-scsi inside that /dev, hence the ACL entry,
# which README's libvirt section asks for too.
cat > /etc/libvirt/qemu.conf <<'CONF'
stdio_handler = "file"
namespaces = [ ]
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_device_acl = [ "/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom",
                      "/dev/ptmx", "/dev/kvm", "/dev/rtc", "/dev/hpet", "/dev/vhost-scsi" ]
CONF

libvirtd_up() { virsh -c qemu:///system version >/dev/null 2>&1; }
start_libvirtd() {
  libvirtd -d || fail "libvirtd did not start"
  wait_for 60 libvirtd_up || { tail -n 20 /var/log/libvirt/libvirtd.log 2>/dev/null; fail "libvirtd does not answer"; }
}
stop_libvirtd() {
  local pid
  pid=$(cat /run/libvirtd.pid)
  kill "$pid"
  wait_for 60 eval '! kill -0 '"$pid"' 2>/dev/null' || fail "libvirtd did not stop"
}
vm_start_dbus
start_libvirtd
V() { virsh -q -c qemu:///system "$@"; }

# --- domains ------------------------------------------------------------------------------

# domain_xml NAME MACHINE EMULATOR EXTRA_DEVICES EXTRA_TOP
domain_xml() {
  local bios=""
  # qboot is much faster than SeaBIOS under nested TCG, and it boots pc only.
  [ "$2" = pc ] && [ -n "${QBOOT:-}" ] && bios="<loader type='rom'>$QBOOT</loader>"
  cat <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='$2'>hvm</type>
    $bios
    <kernel>$GUEST_KERNEL</kernel>
    <initrd>$WORK/guest.img</initrd>
    <cmdline>$GUEST_APPEND</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$3</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$WORK/$1-virtio.raw'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='$WORK/$1.console'/><target port='0'/></serial>
    <memballoon model='none'/>
    $4
  </devices>
  $5
</domain>
XML
}

# define_dropin NAME MACHINE: the vhost disk through -drive, QEMU (qemu-lio) as root.
define_dropin() {
  pattern_image "$WORK/$1-vhost.raw" 01
  pattern_image "$WORK/$1-virtio.raw" 02
  chmod 666 "$WORK/$1-virtio.raw"
  domain_xml "$1" "$2" "$WORK/bin/qemu-system-x86_64" "" "
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <qemu:commandline>
    <qemu:arg value='-drive'/>
    <qemu:arg value='file=$WORK/$1-vhost.raw,if=vhost-scsi,format=raw'/>
  </qemu:commandline>" > "$WORK/$1.xml"
  V define "$WORK/$1.xml" >/dev/null || fail "virsh define $1"
}

# define_hook NAME MACHINE: libvirt's own QEMU, unprivileged, with the vhost <hostdev> and
# the metadata that 'qemu-lio libvirt-xml' prints.
define_hook() {
  local snippet hostdev meta
  pattern_image "$WORK/$1-vhost.raw" 01
  pattern_image "$WORK/$1-virtio.raw" 02
  chmod 666 "$WORK/$1-virtio.raw"
  snippet=$("$QEMU_LIO" libvirt-xml "$WORK/$1-vhost.raw,cache=writethrough") || fail "libvirt-xml"
  hostdev=$(echo "$snippet" | sed -n '/<hostdev/,/<\/hostdev>/p')
  meta=$(echo "$snippet" | sed -n '/<lio:disks/,/<\/lio:disks>/p')
  domain_xml "$1" "$2" "$REAL" "$hostdev" "<metadata>$meta</metadata>" > "$WORK/$1.xml"
  V define "$WORK/$1.xml" >/dev/null || fail "virsh define $1"
}

# The backstop pid `qemu-lio list --json` names for the VM (libvirt domains keep their name).
backstop_of() {
  "$QEMU_LIO" list --json | python3 -c '
import json, sys
print(next((v["backstop_pid"] for v in json.load(sys.stdin) if v["name"] == sys.argv[1]), None))' "$1"
}
console_has() { grep -q "$2" "$WORK/$1.console" 2>/dev/null; }
show_console() { echo "  last lines of $1's console:"; tail -n 25 "$WORK/$1.console" 2>/dev/null | sed 's/^/  | /'; }
state_is() { [ "$(V domstate "$1" 2>/dev/null | head -n 1)" = "$2" ]; }
configfs_is() { [ "$(configfs_snapshot)" = "$1" ]; }

# The pid libvirt tracks is the real QEMU, started as USER.
check_tracked_pid() {  # NAME USER
  local pid uid
  pid=$(cat "/run/libvirt/qemu/$1.pid")
  assert_eq "$(readlink -f "$REAL")" "$(readlink -f "/proc/$pid/exe")" "libvirt's pid $pid runs the real QEMU"
  uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
  assert_eq "$(id -u "$2")" "$uid" "QEMU's user"
}

# One boot: I/O on both disks, libvirtd restarted under the running guest, then the guest
# powers itself off once it reads STOP through its vhost disk. Configfs is clean after.
run_to_guest_poweroff() {  # NAME USER
  local name=$1 before running
  before=$(configfs_snapshot)
  : > "$WORK/$name.console"; chmod 666 "$WORK/$name.console"
  V start "$name" >/dev/null || fail "virsh start $name"
  wait_for "$GUEST_WAIT" console_has "$name" 'GUEST-IO-OK' || { show_console "$name"; fail "guest I/O never finished"; }
  console_has "$name" 'GUEST-IO-OK 2 rc=0' || { show_console "$name"; fail "guest did not see both disks"; }
  assert_eq GUEST-WROTE-01 "$(guest_bytes "$WORK/$name-vhost.raw")" "the guest's bytes in the vhost image"
  assert_eq GUEST-WROTE-02 "$(guest_bytes "$WORK/$name-virtio.raw")" "the guest's bytes in libvirt's image"
  log "$name: guest I/O done on both disks"
  check_tracked_pid "$name" "$2"
  running=$(configfs_snapshot)
  [ "$running" != "$before" ] || fail "no LIO objects while the guest runs"
  # libvirtd restarts: reconnect must not lose the running domain's disks. In hook mode the
  # set's backstop is killed first: reconnect must give the set a new one.
  local old_backstop=""
  if [ "$2" != root ]; then
    old_backstop=$(backstop_of "$name")
    [ "$old_backstop" != None ] || fail "no backstop for $name"
    kill -9 "$old_backstop"
  fi
  stop_libvirtd
  start_libvirtd
  if [ -n "$old_backstop" ]; then
    wait_for 30 eval '[ "$(backstop_of "$name")" != "$old_backstop" ]' || fail "reconnect started no backstop"
    kill -0 "$(backstop_of "$name")" || fail "the new backstop is not running"
    log "$name: reconnect re-armed the backstop ($old_backstop -> $(backstop_of "$name"))"
  fi
  wait_for 60 state_is "$name" running || fail "domain not running after the libvirtd restart"
  assert_eq "$running" "$(configfs_snapshot)" "LIO objects after the libvirtd restart"
  log "$name: libvirtd restarted, the domain kept its disks"
  printf 'STOP' | dd of="$WORK/$name-vhost.raw" bs=1M seek=2 conv=notrunc status=none
  wait_for "$GUEST_WAIT" console_has "$name" 'GUEST-STOP-SEEN' || { show_console "$name"; fail "the guest stopped reading its disk"; }
  wait_for 120 state_is "$name" "shut off" || { show_console "$name"; fail "the guest did not power off"; }
  wait_for 60 configfs_is "$before" || { diff <(echo "$before") <(configfs_snapshot) | head; fail "configfs not clean after the guest's power-off"; }
  console_has "$name" 'GUEST-EXIT 0' || { show_console "$name"; fail "guest script failed"; }
  log "$name: guest powered off, configfs clean"
}

# Another boot, ended by virsh destroy as soon as its disks exist.
run_to_destroy() {  # NAME
  local name=$1 before
  before=$(configfs_snapshot)
  : > "$WORK/$name.console"; chmod 666 "$WORK/$name.console"
  V start "$name" >/dev/null || fail "virsh start $name"
  wait_for 60 eval '! configfs_is "$before"' || fail "no LIO objects after the start"
  V destroy "$name" >/dev/null || fail "virsh destroy $name"
  wait_for 60 configfs_is "$before" || { diff <(echo "$before") <(configfs_snapshot) | head; fail "configfs not clean after virsh destroy"; }
  log "$name: destroyed, configfs clean"
}

# --- scenarios ----------------------------------------------------------------------------

scenario_dropin_pc() {
  define_dropin dropin-pc pc
  run_to_guest_poweroff dropin-pc root
  run_to_destroy dropin-pc
}

scenario_dropin_q35() {
  define_dropin dropin-q35 q35
  run_to_guest_poweroff dropin-q35 root
  run_to_destroy dropin-q35
}

scenario_hook() {
  define_hook hook-pc pc
  run_to_guest_poweroff hook-pc libvirt-qemu
  run_to_destroy hook-pc
  [ -z "$(ls /run/qemu-lio/*.journal 2>/dev/null)" ] || fail "journals left: $(ls /run/qemu-lio)"
}

# A <lio:disk> whose image is missing: libvirt refuses the start with qemu-lio's one line,
# and nothing is left.
scenario_hook_refuses_bad_disk() {
  local before out rc=0
  define_hook hook-bad pc
  rm "$WORK/hook-bad-vhost.raw"
  before=$(configfs_snapshot)
  out=$(V start hook-bad 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "the start was not refused"
  echo "$out" | grep -q "qemu-lio: error: .*hook-bad-vhost.raw" || fail "libvirt's error does not carry ours: $out"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after the refused start"
  state_is hook-bad "shut off" || fail "domain state: $(V domstate hook-bad)"
}

scenario dropin-pc scenario_dropin_pc
scenario dropin-q35 scenario_dropin_q35
scenario hook scenario_hook
scenario hook-refuses-bad-disk scenario_hook_refuses_bad_disk
stop_libvirtd
scenarios_summary

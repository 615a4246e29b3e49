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
# A nested boot under TCG: 40..300 s measured, 430 s once with three at once on a loaded
# machine; wait_for_progress goes on past it while the guest's console grows.
GUEST_WAIT=${GUEST_WAIT:-600}

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

user_of() { case $1 in hook-*) echo libvirt-qemu ;; *) echo root ;; esac; }
targets() { ls "$T/vhost" | awk '/^naa\./ { n++ } END { print n + 0 }'; }

# --- scenarios ----------------------------------------------------------------------------

DOMAINS=(dropin-pc dropin-q35 hook-pc)

# The three domains boot at once (the test VM has two vCPUs; one after another they cost
# three nested boots). Each: I/O on both disks, libvirt's pid is QEMU's, libvirtd restarted
# under it (the hook set's backstop killed first, so reconnect must re-arm it), then the guest
# powers itself off once it reads STOP through its vhost disk, still there after the restart.
# Then each boots again and is ended by virsh destroy. Configfs is clean after each round.
scenario_three_domains() {
  local d before running old_backstop
  define_dropin dropin-pc pc
  define_dropin dropin-q35 q35
  define_hook hook-pc pc
  before=$(configfs_snapshot)
  for d in "${DOMAINS[@]}"; do
    : > "$WORK/$d.console"; chmod 666 "$WORK/$d.console"
    V start "$d" >/dev/null || fail "virsh start $d"
  done
  for d in "${DOMAINS[@]}"; do
    wait_for_progress "$GUEST_WAIT" "$WORK/$d.console" console_has "$d" 'GUEST-IO-OK' || { show_console "$d"; fail "$d: guest I/O never finished"; }
    console_has "$d" 'GUEST-IO-OK 2 rc=0' || { show_console "$d"; fail "$d: guest did not see both disks"; }
    assert_eq GUEST-WROTE-01 "$(guest_bytes "$WORK/$d-vhost.raw")" "$d: the guest's bytes in the vhost image"
    assert_eq GUEST-WROTE-02 "$(guest_bytes "$WORK/$d-virtio.raw")" "$d: the guest's bytes in libvirt's image"
    check_tracked_pid "$d" "$(user_of "$d")"
    log "$d: guest I/O done on both disks; libvirt tracks QEMU, running as $(user_of "$d")"
  done
  running=$(configfs_snapshot)
  assert_eq 3 "$(targets)" "vhost targets while the three guests run"
  old_backstop=$(backstop_of hook-pc)
  [ "$old_backstop" != None ] || fail "no backstop for hook-pc"
  kill -9 "$old_backstop"
  stop_libvirtd
  start_libvirtd
  for d in "${DOMAINS[@]}"; do
    wait_for 60 state_is "$d" running || fail "$d: not running after the libvirtd restart"
  done
  wait_for 30 eval '[ "$(backstop_of hook-pc)" != "$old_backstop" ]' || fail "reconnect started no backstop"
  kill -0 "$(backstop_of hook-pc)" || fail "the new backstop is not running"
  assert_eq "$running" "$(configfs_snapshot)" "LIO objects after the libvirtd restart"
  log "libvirtd restarted: every domain kept its disks; hook-pc's backstop re-armed ($old_backstop -> $(backstop_of hook-pc))"
  for d in "${DOMAINS[@]}"; do
    printf 'STOP' | dd of="$WORK/$d-vhost.raw" bs=1M seek=2 conv=notrunc status=none
  done
  for d in "${DOMAINS[@]}"; do
    wait_for "$GUEST_WAIT" console_has "$d" 'GUEST-STOP-SEEN' || { show_console "$d"; fail "$d: the guest stopped reading its disk"; }
    wait_for 120 state_is "$d" "shut off" || { show_console "$d"; fail "$d: the guest did not power off"; }
    console_has "$d" 'GUEST-EXIT 0' || { show_console "$d"; fail "$d: guest script failed"; }
  done
  wait_for 60 configfs_is "$before" || { diff <(echo "$before") <(configfs_snapshot) | head; fail "configfs not clean after the guests' power-off"; }
  log "the three guests powered off; configfs clean"

  for d in "${DOMAINS[@]}"; do
    : > "$WORK/$d.console"
    V start "$d" >/dev/null || fail "virsh start $d (second boot)"
  done
  wait_for 60 eval '[ "$(targets)" = 3 ]' || fail "not three vhost targets after the second start"
  for d in "${DOMAINS[@]}"; do
    V destroy "$d" >/dev/null || fail "virsh destroy $d"
  done
  wait_for 60 configfs_is "$before" || { diff <(echo "$before") <(configfs_snapshot) | head; fail "configfs not clean after virsh destroy"; }
  [ -z "$(ls /run/qemu-lio/*.journal 2>/dev/null)" ] || fail "journals left: $(ls /run/qemu-lio)"
  log "the three domains destroyed; configfs clean, no journal left"
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

scenario three-domains scenario_three_domains
scenario hook-refuses-bad-disk scenario_hook_refuses_bad_disk
stop_libvirtd
scenarios_summary

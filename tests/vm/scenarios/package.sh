#!/usr/bin/env bash
# The Debian package in the real kernel: `dpkg -i` the .deb that scripts/package.sh built, run
# one nested guest on a vhost-scsi disk with the installed /usr/sbin/qemu-lio, then `dpkg -r`:
# no file of the package may remain except the conffile /etc/qemu-lio.conf, and configfs is as
# it was; `dpkg --purge` then removes the conffile too.
#   QEMU_LIO_DEB: the .deb under test (tests/CMakeLists.txt builds it first: package_build).
#
# Safe for the host: inside the test VM the host's root is a read-only 9p mount under an
# overlay whose upper layer is tmpfs (tests/vm/README.md), so dpkg's writes to /usr, /etc and
# /var/lib/dpkg land in VM memory and vanish at power-off. The guard below refuses to run
# anywhere else, where dpkg would install into the real system.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
# shellcheck source=images.sh
. "$here/images.sh"

QEMU_LIO_DEB=${QEMU_LIO_DEB:?set QEMU_LIO_DEB to the .deb built by scripts/package.sh}
if [ "${VM_IN_VM:-}" != 1 ] || [ "$(findmnt -n -o FSTYPE /)" != overlay ]; then
  echo "package.sh: runs only inside vm-run.sh's VM (root on a tmpfs overlay), not on a host" >&2
  exit 2
fi
WORK=$(mktemp -d /tmp/qemu-lio-package.XXXXXX)
GUEST_TIMEOUT=${GUEST_TIMEOUT:-600}
BIN=/usr/sbin/qemu-lio
CONF=/etc/qemu-lio.conf
mkdir -p "$T/vhost"   # the fabric dir stays once made (shared; qemu-lio never removes it)

pkg_status() { dpkg-query -W -f='${Status}' qemu-lio 2>/dev/null || echo "not-installed"; }

scenario_install_run_remove() {
  local img=$WORK/disk.img before rc version files f
  # The host's own dpkg database is the VM's lower layer: a qemu-lio installed there would
  # make "remove leaves nothing" meaningless.
  assert_eq "not-installed" "$(pkg_status | sed 's/^unknown ok not-installed$/not-installed/')" \
    "qemu-lio's dpkg status before the install"
  assert_absent "$BIN" "$CONF"
  before=$(configfs_snapshot)

  # --no-triggers: man-db's trigger (mandb over every man page) costs minutes under TCG and
  # is man-db's business, not this package's.
  log "dpkg -i $(basename "$QEMU_LIO_DEB")"
  timeout "$(scaled 120)" dpkg --no-triggers -i "$QEMU_LIO_DEB"
  assert_eq "install ok installed" "$(pkg_status)" "dpkg status after dpkg -i"
  version=$(dpkg-query -W -f='${Version}' qemu-lio)
  assert_eq "qemu-lio $version" "$("$BIN" --version)" "the installed binary's --version"
  # ${Conffiles}: one " PATH MD5" line per conffile.
  dpkg-query -W -f='${Conffiles}\n' qemu-lio | grep -qxF " $CONF $(md5sum <"$CONF" | cut -d' ' -f1)" \
    || fail "$CONF is not a conffile of the package: $(dpkg-query -W -f='${Conffiles}' qemu-lio)"
  for f in /usr/share/man/man8/qemu-lio.8.gz /usr/share/doc/qemu-lio/copyright \
           /usr/share/doc/qemu-lio/changelog.gz; do
    assert_exists "$f"
  done
  # libvirt's hook: linked where libvirtd looks, runs the installed binary, leaves a domain
  # that is not qemu-lio's alone (status 0, or libvirt would refuse to start it).
  local hook=/etc/libvirt/hooks/qemu.d/qemu-lio
  [ -x "$hook" ] || fail "$hook: not an executable link"
  grep -q "exec $BIN libvirt-hook" "$hook" || fail "$hook does not run $BIN: $(cat "$hook")"
  rc=0; echo '<domain type="kvm"><name>other</name></domain>' | "$hook" other prepare begin - || rc=$?
  assert_eq 0 "$rc" "the hook's status for a domain that is not qemu-lio's"
  # Every file the package installed, for the check after dpkg -r (directories are shared).
  files=$(dpkg-query -L qemu-lio | while read -r f; do [ -d "$f" ] || echo "$f"; done)
  [ -n "$files" ] || fail "dpkg-query -L lists no files"

  # One guest on one vhost-scsi disk, as control-hotplug-guest starts, with the installed binary and its
  # defaults (state directory /run/qemu-lio, config /etc/qemu-lio.conf: all commented out).
  pattern_image "$img" 01
  "$MAKE_GUEST_INITRD" "$WORK/guest.img" "$here/guest-disks.sh" /dev/sda || fail "guest initrd"
  rc=0
  timeout "$(scaled "$GUEST_TIMEOUT")" "$BIN" --image "$img" -- \
    qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd "$WORK/guest.img" -append "$GUEST_APPEND" \
    >"$WORK/guest.log" 2>&1 || rc=$?
  grep -E 'GUEST-|qemu-lio' "$WORK/guest.log" | sed 's/^/  guest: /' || true
  if [ "$rc" != 0 ]; then tail -n 25 "$WORK/guest.log" | sed 's/^/  | /'; fi
  assert_eq 0 "$rc" "installed qemu-lio's exit status (QEMU's)"
  grep -q 'GUEST-SAW /dev/sda QEMU-LIO-DISK-01' "$WORK/guest.log" || fail "guest did not read the host's pattern"
  grep -q 'GUEST-EXIT 0' "$WORK/guest.log" || fail "guest script failed"
  assert_eq GUEST-WROTE-01 "$(guest_bytes "$img")" "the guest's bytes are in the image file"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the guest powered off"
  assert_eq "" "$(find /run/qemu-lio -name '*.journal' 2>/dev/null)" "journals left in /run/qemu-lio"

  log "dpkg -r qemu-lio"
  timeout "$(scaled 120)" dpkg --no-triggers -r qemu-lio
  assert_eq "deinstall ok config-files" "$(pkg_status)" "dpkg status after dpkg -r"
  while read -r f; do
    [ "$f" = "$CONF" ] && continue
    assert_absent "$f"
  done <<<"$files"
  assert_absent /usr/share/doc/qemu-lio
  assert_exists "$CONF"
  assert_eq "$before" "$(configfs_snapshot)" "configfs after dpkg -r"

  timeout "$(scaled 120)" dpkg --no-triggers --purge qemu-lio
  assert_absent "$CONF"
  assert_eq "not-installed" "$(pkg_status | sed 's/^unknown ok not-installed$/not-installed/')" \
    "dpkg status after dpkg --purge"
}

scenario package-install-run-remove scenario_install_run_remove
scenarios_summary

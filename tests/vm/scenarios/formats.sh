#!/usr/bin/env bash
# The formats suite (real kernel, issue 12): images in a format LIO cannot read (qcow2 here)
# are served through one qemu-storage-daemon per VM, the kernel's NBD client and an LIO
# iblock backstore on /dev/nbdN. A nested guest reads a qcow2 overlay's raw backing file and
# writes into the overlay; the stand-in QEMU shows the objects while a VM runs, how each
# crash (of the daemon, of QEMU, of the wrapper, of wrapper and backstop with gc after them)
# is cleaned up, and that each bad input is refused in one line with nothing left behind.
#   QEMU_LIO: the qemu-lio binary under test.
#   VM_WAIT_SCALE: multiplies every bounded wait (default 1; raise it on a slow host).
#   GUEST_TIMEOUT: the nested guest's bound in seconds before scaling (default 600).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
# shellcheck source=images.sh
. "$here/images.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
STANDIN=$here/stand-in-qemu.sh
# ext4 scratch disk: the images are 32 MiB each, and the overlay's backing file too.
WORK=$(mktemp -d "${SCRATCH:-/tmp}/qemu-lio-formats.XXXXXX")
LINKDIR=$WORK/bin
GUEST_TIMEOUT=${GUEST_TIMEOUT:-600}
mkdir -p "$LINKDIR" "$T/vhost"
ln -s "$QEMU_LIO" "$LINKDIR/qemu-system-x86_64"

# shellcheck source=state.sh
. "$here/state.sh"

# Each scenario has a state directory of its own (use_state), so a journal one of them
# leaves does not fail the next one's "state dir is empty" check a second time.
STATE_DIR=
use_state() {
  STATE_DIR=$WORK/state-$1
  export QEMU_LIO_STATE_DIR=$STATE_DIR
}
# The drop-in binary; QEMU_LIO_QEMU picks the stand-in or, unset, the real QEMU on PATH.
dropin() { PATH=$LINKDIR:$PATH qemu-system-x86_64 "$@"; }

# The test VM's init loads nbd at boot with the module's defaults (16 partitions per
# device). qemu-lio loads it with max_part=0 when it is absent and keeps what is loaded, so
# the suite starts without it: nobody uses it yet in a fresh VM.
if [ -d /sys/module/nbd ]; then
  rmmod nbd || { echo "formats: cannot unload the boot-time nbd module"; exit 1; }
fi


# our_nbd: "nbdN BACKEND" for each NBD device whose backend identifier is qemu-lio's (the
# file exists only while the device has a config, i.e. is connected).
our_nbd() {
  local b v
  for b in /sys/block/nbd*/backend; do
    v=$(cat "$b" 2>/dev/null) || continue
    case "$v" in qemu-lio:*) echo "$(basename "$(dirname "$b")") $v" ;; esac
  done
}
# daemons: "PID ARGS" of every running qemu-storage-daemon (zombies show as [name]).
daemons() { ps -eo pid=,args= | awk '$2 ~ /(^|\/)qemu-storage-daemon$/'; }

# all_clean: configfs as in $before, no NBD device of qemu-lio's, no storage daemon,
# nothing in the state directory (caps/ and the lock stay).
all_clean() {
  [ "$(configfs_snapshot)" = "$before" ] && [ -z "$(our_nbd)" ] && [ -z "$(daemons)" ] && no_leftovers
}
describe_left() {
  local -
  set +e
  echo "  configfs compared with the start (< start, > now):"
  diff <(echo "$before") <(configfs_snapshot) | grep '^[<>]' | head -n 40 | sed 's/^/  | /'
  echo "  NBD devices of qemu-lio: $(our_nbd | tr '\n' ';')"
  echo "  storage daemons: $(daemons | tr '\n' ';')"
  echo "  state dir: $(leftovers | tr '\n' ' ')"
}
# expect_clean WHAT: waits (bounded) until all_clean; a teardown runs SIGTERM on the daemon
# and waits for each device to let go, so it may take a moment on a loaded host.
expect_clean() {
  wait_for 60 all_clean || { describe_left; fail "$1: not clean within $(scaled 60) s"; }
}
# clean_now WHAT: all_clean with no wait (a refused start must leave nothing when it exits).
clean_now() {
  all_clean || { describe_left; fail "$1: something was left behind"; }
}

# What qemu-lio made, as the kernel shows it while QEMU runs: written by the stand-in
# (STANDIN_RUN="bash $PROBE STATE_DIR OUT") or by a scenario itself.
PROBE=$WORK/probe.sh
cat > "$PROBE" <<'PROBE_EOF'
# probe.sh STATE_DIR OUT
set -u
T=/sys/kernel/config/target
{
  for so in "$T"/core/iblock_*/*; do
    [ -f "$so/udev_path" ] || continue
    dev=$(grep -o 'UDEV PATH: /dev/nbd[0-9]*' "$so/info" | sed 's/.*: //')
    n=${dev#/dev/}
    echo "object ${so#"$T"/core/}"
    echo "udev_path $(cat "$so/udev_path")"
    echo "enable $(cat "$so/enable")"
    echo "dev $dev"
    echo "backend $(cat "/sys/block/$n/backend" 2>/dev/null)"
    echo "ro $(cat "/sys/block/$n/ro" 2>/dev/null)"
    echo "connected $(if [ -n "$n" ] && [ -e "/sys/block/$n/pid" ]; then echo yes; else echo no; fi)"
  done
  for j in "$1"/*.journal; do
    [ -e "$j" ] || continue
    echo "journal ${j##*/}"
    pid=$(cat "$j.daemon.pid" 2>/dev/null)
    echo "daemon $pid"
    echo "daemon_cmd $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)"
    for f in daemon.pid qmp.sock nbd.sock daemon.log; do
      if [ -e "$j.$f" ]; then echo "file $f"; fi
    done
  done
  echo "max_part $(cat /sys/module/nbd/parameters/max_part 2>/dev/null)"
} > "$2"
PROBE_EOF

fact() { sed -n "s/^$2 //p" "$1"; }   # FILE KEY: the values of KEY's lines

# check_probe FILE VM IMAGE [OBJECT]: FILE (probe.sh) shows VM's one disk served: an enabled
# iblock object OBJECT (default VM-disk0) over /dev/nbdN whose udev_path is IMAGE; nbdN connected with the backend
# identifier qemu-lio:<journal>:0; one storage daemon, named by the pidfile beside the
# journal, running qemu-storage-daemon with that pidfile and locking=on; its files there;
# nbd loaded with max_part=0. Sets DEV, DAEMON, JOURNAL.
check_probe() {
  local f=$1 vm=$2 img=$3 object=${4:-$2-disk0} cmd
  assert_eq 1 "$(grep -c '^object ' "$f")" "iblock objects while $vm ran ($(tr '\n' ';' < "$f"))"
  [[ $(fact "$f" object) == iblock_*/"$object" ]] || fail "object $(fact "$f" object) is not iblock_N/$object"
  assert_eq "$img" "$(fact "$f" udev_path)" "the iblock object's udev_path"
  assert_eq 1 "$(fact "$f" enable)" "the iblock object is enabled"
  DEV=$(fact "$f" dev)
  [[ $DEV =~ ^/dev/nbd[0-9]+$ ]] || fail "the iblock object's device is [$DEV], not /dev/nbdN ($(tr '\n' ';' < "$f"))"
  assert_eq 1 "$(grep -c '^journal ' "$f")" "journals while $vm ran"
  JOURNAL=$(fact "$f" journal)
  [[ $JOURNAL == "$vm".*.journal ]] || fail "journal $JOURNAL is not $vm's"
  assert_eq "qemu-lio:$JOURNAL:0" "$(fact "$f" backend)" "${DEV#/dev/}'s backend identifier"
  assert_eq yes "$(fact "$f" connected)" "${DEV#/dev/} connected"
  DAEMON=$(fact "$f" daemon)
  [[ $DAEMON =~ ^[0-9]+$ ]] || fail "no storage daemon pid in $JOURNAL.daemon.pid"
  cmd=$(fact "$f" daemon_cmd)
  [[ $cmd == *qemu-storage-daemon\ * ]] || fail "pid $DAEMON is not qemu-storage-daemon: [$cmd]"
  [[ $cmd == *"--pidfile $STATE_DIR/$JOURNAL.daemon.pid"* ]] || fail "the daemon's pidfile is not beside the journal: [$cmd]"
  [[ $cmd == *locking=on* ]] || fail "the daemon does not open the image with locking=on: [$cmd]"
  assert_eq "daemon.pid qmp.sock nbd.sock daemon.log" "$(fact "$f" file | tr '\n' ' ' | sed 's/ $//')" "the daemon's files beside the journal"
  assert_eq 0 "$(fact "$f" max_part)" "nbd's max_part (qemu-lio loads it)"
}

qcow2_image() { qemu-img create -q -f qcow2 "$1" 32M; }   # PATH: an empty 32 MiB qcow2

# start_standin NAME SPEC: a VM with the stand-in QEMU that waits for SIGTERM; once it runs,
# WPID is the wrapper, QPID the stand-in QEMU and $WORK/NAME.probe what probe.sh saw. The
# wrapper's -v log is $WORK/NAME.log.
start_standin() {
  local name=$1 spec=$2
  rm -f "$WORK/$name.ready"
  STANDIN_END=wait-term STANDIN_READY=$WORK/$name.ready \
    STANDIN_RUN="echo \$PPID > $WORK/$name.qpid; bash $PROBE $STATE_DIR $WORK/$name.probe" \
    "$QEMU_LIO" -v --state-dir "$STATE_DIR" --name "$name" --image "$spec" -- "$STANDIN" > "$WORK/$name.log" 2>&1 &
  WPID=$!
  wait_for 60 test -e "$WORK/$name.ready" || { show_tail "$WORK/$name.log"; fail "$name: the stand-in never got ready"; }
  QPID=$(cat "$WORK/$name.qpid")
}

# host_write DEV ID: what a guest would do, from the host: GUEST-WROTE-ID at 1 MiB of the
# NBD device, then a flush (fsync of the device: SYNCHRONIZE CACHE's path to the daemon).
host_write() {
  printf 'GUEST-WROTE-%s' "$2" | dd of="$1" bs=4096 seek=256 oflag=direct conv=sync,fsync status=none ||
    fail "write through $1"
}

# qcow2_bytes IMAGE: the 14 bytes at 1 MiB of a qcow2 image (converted to raw first).
qcow2_bytes() {
  rm -f "$WORK/conv.raw"
  qemu-img convert -f qcow2 -O raw "$1" "$WORK/conv.raw" || fail "qemu-img convert $1"
  guest_bytes "$WORK/conv.raw"
}

# img_check IMAGE [ALLOWED...]: qemu-img check exits 0 (or one of ALLOWED, e.g. 3 = leaked
# clusters after the daemon was SIGKILLed, docs/nbd-facts.md QS14).
img_check() {
  local img=$1 rc=0 ok
  shift
  qemu-img check "$img" > "$WORK/check.out" 2>&1 || rc=$?
  for ok in 0 "$@"; do [ "$rc" = "$ok" ] && return 0; done
  cat "$WORK/check.out"
  fail "qemu-img check $img: exit $rc"
}

# --- 1. a nested guest on a qcow2 overlay of a raw base and on a -drive qcow2 -------------
scenario_qcow2_guest() {
  local base=$WORK/base.img ov=$WORK/overlay.qcow2 d2=$WORK/d2.qcow2 log=$WORK/guest.log rc=0 t0=$SECONDS
  use_state guest
  pattern_image "$base" 01
  qemu-img create -q -f qcow2 -F raw -b "$base" "$ov" || fail "qemu-img create the overlay"
  pattern_image "$WORK/d2.raw" 02
  qemu-img convert -f raw -O qcow2 "$WORK/d2.raw" "$d2" || fail "qemu-img convert d2"
  cp "$base" "$WORK/base.copy"
  "$MAKE_GUEST_INITRD" "$WORK/guest.img" "$here/guest-disks.sh" /dev/sda /dev/sdb || fail "guest initrd"
  before=$(configfs_snapshot)
  # The overlay by --image (format detected: named .qcow2 with a qcow2 header), the second
  # disk by QEMU's own -drive syntax with format=qcow2.
  timeout "$(scaled "$GUEST_TIMEOUT")" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$ov" -- \
    qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd "$WORK/guest.img" -append "$GUEST_APPEND" \
    -drive "file=$d2,format=qcow2,if=vhost-scsi" > "$log" 2>&1 || rc=$?
  echo "  nested run: $((SECONDS - t0)) s"
  grep -a 'GUEST-' "$log" | tr -d '\r' | sed 's/^/  guest: /' || true
  [ "$rc" = 0 ] || show_tail "$log"
  assert_eq 0 "$rc" "qemu-lio exit status (QEMU's)"
  grep -aq 'GUEST-DISKS 2' "$log" || fail "the guest did not see two disks"
  grep -aq 'GUEST-SAW /dev/sd[ab] QEMU-LIO-DISK-01' "$log" || fail "the guest did not read the base's bytes through the overlay"
  grep -aq 'GUEST-SAW /dev/sd[ab] QEMU-LIO-DISK-02' "$log" || fail "the guest did not read d2.qcow2's bytes"
  # The teardown (LIO, NBD, then the daemon's flush) is over when qemu-lio exits.
  clean_now "after the guest powered off"
  img_check "$ov"
  img_check "$d2"
  assert_eq GUEST-WROTE-01 "$(qcow2_bytes "$ov")" "the guest's bytes in the overlay"
  assert_eq QEMU-LIO-DISK-01 "$(head -c 16 "$WORK/conv.raw")" "the overlay still reads the base's bytes"
  cmp "$base" "$WORK/base.copy" || fail "the base image changed (at 1 MiB: [$(guest_bytes "$base" | tr -d '\0')])"
  assert_eq GUEST-WROTE-02 "$(qcow2_bytes "$d2")" "the guest's bytes in d2.qcow2"
}

# --- 2. a -readconfig [drive] with format = "qcow2" (drop-in, stand-in QEMU) ---------------
scenario_qcow2_readconfig() {
  # The name does not say qcow2: only the config's format key makes it one.
  local img=$WORK/rc-disk.bin rc=0 name
  use_state readconfig
  qcow2_image "$img"
  before=$(configfs_snapshot)
  printf '[drive "d0"]\n  file = "%s"\n  format = "qcow2"\n  if = "vhost-scsi"\n' "$img" > "$WORK/rc.cfg"
  QEMU_LIO_QEMU=$STANDIN STANDIN_ARGV=$WORK/rc.argv STANDIN_RUN="bash $PROBE $STATE_DIR $WORK/rc.probe" \
    dropin -name rcvm -readconfig "$WORK/rc.cfg" > "$WORK/rc.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || show_tail "$WORK/rc.log"
  assert_eq 0 "$rc" "drop-in -readconfig exit status"
  sed 's/^/  probe: /' "$WORK/rc.probe"
  check_probe "$WORK/rc.probe" rcvm "$img"
  grep -q '^-readconfig$' "$WORK/rc.argv" || fail "QEMU got no -readconfig: $(tr '\n' ' ' < "$WORK/rc.argv")"
  name=$(grep -A1 '^-readconfig$' "$WORK/rc.argv" | tail -n 1)
  [[ $name == /dev/fd/* ]] || fail "QEMU's -readconfig is $name, not the rewritten copy"
  clean_now "after the readconfig run"
  img_check "$img"
}

# --- 3. SIGKILL of the daemon, of QEMU, of the wrapper while a VM runs --------------------
# kill_case WHAT: a stand-in VM on a fresh qcow2; the host writes through the NBD device and
# flushes; then WHAT gets SIGKILL, and everything must go, bounded, with no gc; the flushed
# bytes stay in the image and qemu-img check passes.
kill_case() {
  local what=$1 vm=k$1 img=$WORK/kill-$1.qcow2 rc=0 ok=() t0 first_disc last_lio
  use_state "kill-$what"
  qcow2_image "$img"
  before=$(configfs_snapshot)
  start_standin "$vm" "$img"
  sed 's/^/  probe: /' "$WORK/$vm.probe"
  check_probe "$WORK/$vm.probe" "$vm" "$img"
  # Still the same now, in the scenario's own view.
  bash "$PROBE" "$STATE_DIR" "$WORK/$vm.probe2"
  check_probe "$WORK/$vm.probe2" "$vm" "$img"
  kill -0 "$DAEMON" || fail "the storage daemon $DAEMON is not alive"
  qlio list > "$WORK/list.out" || fail "qemu-lio list failed"
  grep -qF "$img" "$WORK/list.out" || fail "qemu-lio list does not show the image: $(cat "$WORK/list.out")"
  wait_for 30 test -b "$DEV" || fail "no $DEV"
  host_write "$DEV" 09
  t0=$EPOCHREALTIME
  case $what in
    daemon)
      kill -9 "$DAEMON"
      wait_for 30 gone "$DAEMON" || fail "the daemon survived SIGKILL"
      # Its device now fails I/O instead of hanging (no NBD timeout is set; the socket died).
      rc=0
      timeout "$(scaled 30)" dd if="$DEV" of=/dev/null bs=4096 count=1 iflag=direct status=none 2> "$WORK/dd.err" || rc=$?
      [ "$rc" != 0 ] || fail "a read of $DEV succeeded with its daemon dead"
      [ "$rc" != 124 ] || fail "a read of $DEV hung with its daemon dead"
      echo "  read of $DEV with the daemon dead: exit $rc: $(cat "$WORK/dd.err")"
      # QEMU goes on until it exits (the backstop does not watch the daemon yet); then the
      # teardown removes the rest.
      kill -TERM "$QPID"
      rc=0; wait "$WPID" || rc=$?
      sed -n '/error\|warn/Ip' "$WORK/$vm.log" | sed 's/^/  wrapper: /'
      assert_eq 0 "$rc" "wrapper status after QEMU's SIGTERM (daemon killed before)"
      ok=(3)   # leaked clusters allowed (QS14): the flushed bytes must be there all the same
      ;;
    qemu)
      kill -9 "$QPID"
      rc=0; wait "$WPID" || rc=$?
      assert_eq 137 "$rc" "wrapper status after QEMU's SIGKILL"
      # The teardown's order: the LIO objects over the device first, then the device.
      sed -n '/removed target\/core\/iblock_[0-9]*$\|disconnected \/dev\/nbd/s/^/  wrapper: /p' "$WORK/$vm.log"
      first_disc=$(awk -v d="disconnected $DEV (" 'index($0, d) { print NR; exit }' "$WORK/$vm.log")
      last_lio=$(awk '/removed target\/core\/iblock_[0-9]+$/ { n = NR } END { print n }' "$WORK/$vm.log")
      [ -n "$first_disc" ] && [ -n "$last_lio" ] || fail "the -v log lacks the HBA's removal or $DEV's disconnect"
      [ "$last_lio" -lt "$first_disc" ] || fail "$DEV was disconnected before the LIO objects over it were removed"
      ;;
    wrapper)
      kill -9 "$WPID"
      wait "$WPID" 2>/dev/null || true
      wait_for 30 gone "$QPID" || fail "QEMU outlived its SIGKILLed wrapper"
      ;;
  esac
  expect_clean "SIGKILL of $what"
  echo "  clean $(_vm_elapsed "$t0") s after the SIGKILL of $what"
  gone "$DAEMON" || fail "daemon $DAEMON still runs"
  img_check "$img" "${ok[@]}"
  assert_eq GUEST-WROTE-09 "$(qcow2_bytes "$img")" "the bytes flushed before the SIGKILL of $what"
}
scenario_qcow2_kill_daemon() { kill_case daemon; }
scenario_qcow2_kill_qemu() { kill_case qemu; }
scenario_qcow2_kill_wrapper() { kill_case wrapper; }

# --- 4. bad input: one line each, nothing left --------------------------------------------
# refused STATUS TEXT CMD...: CMD exits STATUS with one line on stderr that contains TEXT,
# and leaves nothing behind.
refused() {
  local want=$1 text=$2 rc=0 err
  shift 2
  "$@" > /dev/null 2> "$WORK/err" || rc=$?
  err=$(cat "$WORK/err")
  echo "  -> $rc: $err"
  assert_eq "$want" "$rc" "exit status"
  assert_eq 1 "$(wc -l < "$WORK/err")" "lines on stderr"
  [[ $err == "qemu-lio: error: "* ]] || fail "not an error line: $err"
  [[ $err == *"$text"* ]] || fail "the error does not say [$text]"
  clean_now "after the refusal"
}
# daemon_refused IMAGE REASON CMD...: exit 1 with "IMAGE: the storage daemon did not start:
# ...REASON...", nothing left.
daemon_refused() {
  local img=$1 reason=$2
  shift 2
  refused 1 "qemu-lio: error: $img: the storage daemon did not start: " "$@"
  [[ $(cat "$WORK/err") == *"$reason"* ]] || fail "the reason is not the daemon's [$reason]"
}

scenario_qcow2_bad_input() {
  local d=$WORK/bad mb gone_base corrupt enc locked ro fake hdr qio ino rc=0 during files
  use_state bad
  mkdir -p "$d"
  before=$(configfs_snapshot)

  echo "  missing backing file"
  gone_base=$d/gone-base.img mb=$d/missing-backing.qcow2
  truncate -s 32M "$gone_base"
  qemu-img create -q -f qcow2 -F raw -b "$gone_base" "$mb" || fail "qemu-img create"
  rm "$gone_base"
  daemon_refused "$mb" "Could not open backing file: Could not open '$gone_base': No such file or directory" \
    qlio --image "$mb" -- "$STANDIN"

  echo "  corrupt header (cluster_bits 40)"
  corrupt=$d/corrupt.qcow2
  qcow2_image "$corrupt"
  printf '\0\0\0\050' | dd of="$corrupt" bs=1 seek=20 conv=notrunc status=none
  daemon_refused "$corrupt" "Unsupported cluster size: 2^40" qlio --image "$corrupt" -- "$STANDIN"

  echo "  encrypted image without its secret"
  enc=$d/encrypted.qcow2
  qemu-img create -q -f qcow2 --object secret,id=s0,data=not-given \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "$enc" 32M || fail "qemu-img create (luks)"
  daemon_refused "$enc" "key-secret" qlio --image "$enc" -- "$STANDIN"

  echo "  image locked by another writer (qemu-io)"
  locked=$d/locked.qcow2
  qcow2_image "$locked"
  ino=$(stat -c %i "$locked")
  qemu-io -c 'sleep 200000' "$locked" < /dev/null > "$WORK/qemu-io.log" 2>&1 &
  qio=$!
  # Its OFD locks on the image are the sign that it holds it.
  wait_for 30 grep -q ":$ino " /proc/locks || { kill "$qio"; show_tail "$WORK/qemu-io.log"; fail "qemu-io took no lock on $locked"; }
  rc=0
  ( daemon_refused "$locked" 'lock' qlio --image "$locked" -- "$STANDIN" ) || rc=$?
  kill "$qio"; wait "$qio" 2>/dev/null || true
  assert_eq 0 "$rc" "the locked image's case"

  echo "  writable use of an image on a read-only mount"
  ro=$d/ro-mnt
  mkdir -p "$ro"
  mount -t tmpfs -o size=8M tmpfs "$ro" || fail "mount tmpfs"
  qemu-img create -q -f qcow2 "$ro/ro.qcow2" 4M || fail "qemu-img create on tmpfs"
  mount -o remount,ro "$ro" || fail "remount ro"
  rc=0
  ( daemon_refused "$ro/ro.qcow2" "Could not open '$ro/ro.qcow2': Read-only file system" \
      qlio --image "$ro/ro.qcow2" -- "$STANDIN" ) || rc=$?
  umount "$ro"
  assert_eq 0 "$rc" "the read-only mount's case"

  echo "  a storage daemon that fails to start"
  fake=$d/fakebin
  mkdir -p "$fake"
  printf '#!/bin/sh\necho "stand-in storage daemon: refusing on purpose" >&2\nexit 1\n' > "$fake/qemu-storage-daemon"
  chmod 755 "$fake/qemu-storage-daemon"
  hdr=$d/plain.qcow2
  qcow2_image "$hdr"
  daemon_refused "$hdr" "stand-in storage daemon: refusing on purpose" \
    env PATH="$fake:$PATH" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$hdr" -- "$STANDIN"

  echo "  a qcow2 header in a file whose name does not say qcow2"
  hdr=$d/header.img
  qcow2_image "$hdr"
  refused 1 "qemu-lio: error: $hdr: has a qcow2 header but its name does not say qcow2: set format=qcow2 to serve it as qcow2, or format=raw if it is a raw disk" \
    qlio --image "$hdr" -- "$STANDIN"
  assert_eq "qemu-lio: error: $hdr: has a qcow2 header but its name does not say qcow2: set format=qcow2 to serve it as qcow2, or format=raw if it is a raw disk" \
    "$(cat "$WORK/err")" "the whole line"
  echo "  the same file with format=qcow2: served"
  rc=0
  STANDIN_RUN="bash $PROBE $STATE_DIR $WORK/hdr.probe" qlio --name hdrvm --image "$hdr,format=qcow2" -- "$STANDIN" \
    > "$WORK/hdr.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || show_tail "$WORK/hdr.log"
  assert_eq 0 "$rc" "format=qcow2 run"
  check_probe "$WORK/hdr.probe" hdrvm "$hdr"
  clean_now "after the format=qcow2 run"
  img_check "$hdr"

  echo "  share=on with a qcow2 image"
  refused 2 "share=on serves raw images only, not qcow2" qlio --image "$d/plain.qcow2,share=on" -- "$STANDIN"

  echo "  attach of a qcow2 image to a running VM"
  pattern_image "$d/att.img" 05
  start_standin att "$d/att.img"
  during=$(configfs_snapshot)
  files=$(leftovers)
  rc=0
  qlio attach att "$d/plain.qcow2" > /dev/null 2> "$WORK/err" || rc=$?
  echo "  -> $rc: $(cat "$WORK/err")"
  assert_eq 2 "$rc" "attach exit status"
  assert_eq 1 "$(wc -l < "$WORK/err")" "lines on stderr"
  grep -q '^qemu-lio: error: .*cannot be attached to a running VM' "$WORK/err" || fail "attach's error line"
  assert_eq "$during" "$(configfs_snapshot)" "configfs after the refused attach"
  assert_eq "" "$(our_nbd)" "NBD devices after the refused attach"
  assert_eq "" "$(daemons)" "storage daemons after the refused attach"
  assert_eq "$files" "$(leftovers)" "state dir after the refused attach"
  kill -TERM "$QPID"
  rc=0; wait "$WPID" || rc=$?
  assert_eq 0 "$rc" "the raw VM's exit"
  clean_now "after the attach refusal's VM"
}

# --- 4b. readonly=on: a qcow2 on a read-only mount is served, read-only all the way -------
# ro_run SPEC-KEYS: the read-only mount's image with SPEC-KEYS, served to a stand-in VM.
ro_run() {
  local rc=0
  rm -f "$WORK/ro.probe"
  STANDIN_RUN="bash $PROBE $STATE_DIR $WORK/ro.probe" qlio --name rovm --image "$WORK/ro-mnt/ro.qcow2,$1" -- "$STANDIN" \
    > "$WORK/ro.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || show_tail "$WORK/ro.log"
  assert_eq 0 "$rc" "run of a qcow2 on a read-only mount with $1"
  sed 's/^/  probe: /' "$WORK/ro.probe"
  check_probe "$WORK/ro.probe" rovm "$WORK/ro-mnt/ro.qcow2" rovm-disk0-ro
  assert_eq 1 "$(fact "$WORK/ro.probe" ro)" "the NBD device is read-only"
  [[ $(fact "$WORK/ro.probe" daemon_cmd) == *writable=off* ]] || fail "the export is not writable=off"
  clean_now "after the run with $1"
}
scenario_qcow2_read_only() {
  local ro=$WORK/ro-mnt rc=0
  use_state read-only
  mkdir -p "$ro"
  mount -t tmpfs -o size=8M tmpfs "$ro" || fail "mount tmpfs"
  qemu-img create -q -f qcow2 "$ro/ro.qcow2" 4M || fail "qemu-img create on tmpfs"
  mount -o remount,ro "$ro" || fail "remount ro"
  before=$(configfs_snapshot)
  # discard=off first, then the default (discard=on): a read-only export offers no TRIM.
  ( ro_run readonly=on,discard=off && ro_run readonly=on ) || rc=$?
  umount "$ro"
  assert_eq 0 "$rc" "the readonly=on runs"
}

# --- a backing file outside the host's allow policy ------------------------------------
# The daemon opens every backing file the overlay names: an overlay inside an allowed
# directory must not reach a file outside it.
scenario_qcow2_allow() {
  local dir=$WORK/allowed out=$WORK/outside.img rc=0
  use_state allow
  mkdir -p "$dir"
  pattern_image "$out" 05
  qemu-img create -q -f qcow2 -F raw -b "$out" "$dir/ov.qcow2" || fail "qemu-img create the overlay"
  qemu-img create -q -f qcow2 "$dir/plain.qcow2" 4M || fail "qemu-img create"
  printf 'allow = %s\n' "$dir" > "$WORK/allow.conf"
  before=$(configfs_snapshot)
  QEMU_LIO_CONFIG=$WORK/allow.conf qlio --image "$dir/ov.qcow2" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  assert_eq 1 "$rc" "status with a backing file outside allow ($(cat "$WORK/err"))"
  assert_eq 1 "$(wc -l < "$WORK/err")" "one line on stderr ($(cat "$WORK/err"))"
  grep -qF "qemu-lio: error: $out: $out is outside the directories allowed by $WORK/allow.conf" "$WORK/err" ||
    fail "message: $(cat "$WORK/err")"
  clean_now "after the refused backing file"
  # The same policy serves an image without a backing file in the allowed directory.
  rc=0
  QEMU_LIO_CONFIG=$WORK/allow.conf STANDIN_RUN="bash $PROBE $STATE_DIR $WORK/allow.probe" \
    qlio --image "$dir/plain.qcow2" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  assert_eq 0 "$rc" "status with an allowed qcow2 ($(cat "$WORK/err"))"
  assert_eq "$dir/plain.qcow2" "$(fact "$WORK/allow.probe" udev_path)" "the allowed image was served"
  clean_now "after the allowed run"
}

# is_stale VM: `qemu-lio list` calls VM's set stale (its wrapper, QEMU and backstop are gone).
is_stale() { qlio list > "$WORK/list.out" && grep -q "^$1 stale" "$WORK/list.out"; }

# --- 5. a journal left by a SIGKILLed wrapper and backstop: gc --dry-run, then gc ---------
scenario_qcow2_gc() {
  local img=$WORK/gc.qcow2 vm=gcv j bpid id during
  use_state gc
  qcow2_image "$img"
  before=$(configfs_snapshot)
  start_standin "$vm" "$img"
  check_probe "$WORK/$vm.probe" "$vm" "$img"
  wait_for 30 test -b "$DEV" || fail "no $DEV"
  host_write "$DEV" 11
  j=$STATE_DIR/$JOURNAL
  bpid=$(awk '$1 == "backstop" { print $2 }' "$j")
  [ -n "$bpid" ] || { cat "$j"; fail "the journal has no backstop record"; }
  kill -9 "$bpid" "$WPID"
  wait "$WPID" 2>/dev/null || true
  wait_for 30 gone "$QPID" || fail "QEMU outlived its SIGKILLed wrapper"
  wait_for 30 is_stale "$vm" || fail "the set is not stale with wrapper, QEMU and backstop gone: $(qlio list)"
  id="qemu-lio:$JOURNAL:0"
  during=$(configfs_snapshot)
  qlio gc --dry-run > "$WORK/dry.out" 2>&1 || { cat "$WORK/dry.out"; fail "gc --dry-run failed"; }
  sed 's/^/  dry: /' "$WORK/dry.out"
  grep -qxF "would disconnect $DEV ($id)" "$WORK/dry.out" || fail "gc --dry-run does not name $DEV"
  grep -qxF "would stop the storage daemon (pid $DAEMON)" "$WORK/dry.out" || fail "gc --dry-run does not name the daemon $DAEMON"
  grep -q '(dry run: nothing was changed)' "$WORK/dry.out" || fail "gc --dry-run summary"
  # Nothing was touched.
  assert_eq "$during" "$(configfs_snapshot)" "configfs after gc --dry-run"
  assert_eq "${DEV#/dev/} $id" "$(our_nbd)" "NBD devices after gc --dry-run"
  test -e "/sys/block/${DEV#/dev/}/pid" || fail "$DEV disconnected by gc --dry-run"
  ! gone "$DAEMON" || fail "gc --dry-run stopped the daemon"
  assert_exists "$j" "$j.daemon.pid" "$j.qmp.sock" "$j.nbd.sock" "$j.daemon.log"
  qlio gc > "$WORK/gc.out" 2>&1 || { cat "$WORK/gc.out"; fail "gc failed"; }
  sed 's/^/  gc: /' "$WORK/gc.out"
  grep -q '^gc: 1 stale set(s), .*, 0 failure(s)$' "$WORK/gc.out" || fail "gc summary"
  clean_now "after gc"
  gone "$DAEMON" || fail "the daemon $DAEMON still runs after gc"
  img_check "$img"
  assert_eq GUEST-WROTE-11 "$(qcow2_bytes "$img")" "the bytes flushed before the kill"
}

scenario qcow2-guest scenario_qcow2_guest
scenario qcow2-readconfig scenario_qcow2_readconfig
scenario qcow2-kill-daemon scenario_qcow2_kill_daemon
scenario qcow2-kill-qemu scenario_qcow2_kill_qemu
scenario qcow2-kill-wrapper scenario_qcow2_kill_wrapper
scenario qcow2-bad-input scenario_qcow2_bad_input
scenario qcow2-read-only scenario_qcow2_read_only
scenario qcow2-gc scenario_qcow2_gc
scenario qcow2-allow scenario_qcow2_allow
scenarios_summary

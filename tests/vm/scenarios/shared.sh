#!/usr/bin/env bash
# Shared disks in the real kernel (issue 14, share=on): one LIO storage object serves one
# image to several VMs, each through its own vhost target and nexus; SCSI-3 persistent
# reservations arbitrate between two nested guests; the last VM to leave removes the
# object, whatever way the others left.
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
# shellcheck source=images.sh
. "$here/images.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
STANDIN=$here/stand-in-qemu.sh
WORK=$(mktemp -d /tmp/qemu-lio-shared.XXXXXX)
STATE_DIR=$WORK/state
GUEST_TIMEOUT=${GUEST_TIMEOUT:-1200}
mkdir -p "$T/vhost"

# shellcheck source=state.sh
. "$here/state.sh"
gone() { ! kill -0 "$1" 2>/dev/null; }

# shared_objects IMAGE: the qlshared-* storage objects that serve IMAGE.
shared_objects() {
  local so
  for so in "$T"/core/*/qlshared-*; do
    [ -d "$so" ] && [ "$(cat "$so/udev_path")" = "$1" ] && echo "${so#"$T"/}"
  done
  return 0
}

# start_standin NAME SPEC...: a VM with stand-in QEMU that waits for SIGTERM; sets
# STANDIN_PID (the wrapper) once the stand-in runs (its QEMU pid goes to $WORK/NAME.qpid).
start_standin() {
  local name=$1 specs=() s
  shift
  for s in "$@"; do specs+=(--image "$s"); done
  # A run before under the same name left these: waiting for them would not wait at all.
  rm -f "$WORK/$name.ready" "$WORK/$name.qpid"
  STANDIN_END=wait-term STANDIN_READY=$WORK/$name.ready STANDIN_RUN="echo \$PPID > $WORK/$name.qpid" \
    "$QEMU_LIO" --state-dir "$STATE_DIR" --name "$name" "${specs[@]}" -- "$STANDIN" > "$WORK/$name.log" 2>&1 &
  STANDIN_PID=$!
  wait_for 60 test -e "$WORK/$name.ready" || { show_tail "$WORK/$name.log"; fail "$name: the stand-in never got ready"; }
}

# Without guests: every VM of a shared image links one object; mixing shared and exclusive
# use and a joiner with other keys are refused, one line each, configfs untouched; a
# SIGKILLed VM's backstop removes its own target and leaves the object to the VMs still
# using it; the last one's exit removes the object. A block device works the same way.
scenario_shared_lifecycle() {
  local img=$WORK/life.img before snap so x y z wpx qpx
  pattern_image "$img" 41
  before=$(configfs_snapshot)
  start_standin sx "$img,share=on"; x=$STANDIN_PID
  start_standin sy "$img,share=on"; y=$STANDIN_PID
  so=$(shared_objects "$img")
  assert_eq 1 "$(wc -w <<<"$so")" "one storage object serves both VMs"
  assert_eq 2 "$(find "$T"/vhost/naa.*/tpgt_1/lun/lun_0 -maxdepth 1 -type l -name 'qlshared-*' | wc -l)" \
    "two LUNs (one per VM) link it"
  assert_exists "$T/$so/pr/res_type"
  grep -q SPC3_PERSISTENT_RESERVATIONS "$T/$so/pr/res_type" || fail "PR emulation off: $(cat "$T/$so/pr/res_type")"
  assert_eq Implicit "$(cat "$T/$so/alua/default_tg_pt_gp/alua_access_type")" "no guest may set the others' ALUA state"
  [ -d "$(cat "$T/dbroot")/pr" ] || fail "no $(cat "$T/dbroot")/pr: the guests' PR REGISTER would fail"

  snap=$(configfs_snapshot)
  expect_error 1 "(share=on); give share=on too" -- qlio --name sz --image "$img" -- "$STANDIN"
  expect_error 1 "made with other settings by another VM" -- qlio --name sz --image "$img,share=on,cache=writethrough" -- "$STANDIN"
  expect_error 1 "made with other settings by another VM" -- qlio --name sz --image "$img,share=on,block-size=4096" -- "$STANDIN"
  assert_eq "$snap" "$(configfs_snapshot)" "refused starts left configfs as it was"

  # SIGKILL of x's wrapper: its QEMU dies with it and its backstop tears down x's part only.
  qpx=$(cat "$WORK/sx.qpid")
  kill -9 "$x"
  wait "$x" 2>/dev/null || true
  wait_for 30 gone "$qpx" || fail "x's QEMU outlived its SIGKILLed wrapper"
  wait_for 120 sh -c "[ \$(ls '$STATE_DIR' | grep -c '^sx\.') = 0 ]" || { ls -l "$STATE_DIR"; fail "x's backstop did not finish"; }
  assert_exists "$T/$so"
  assert_eq 1 "$(find "$T"/vhost/naa.*/tpgt_1/lun/lun_0 -maxdepth 1 -type l -name 'qlshared-*' | wc -l)" "y's LUN still links it"
  # A VM joins while y runs, then y leaves first: the object stays for the joiner.
  start_standin sw "$img,share=on"; z=$STANDIN_PID
  kill -TERM "$(cat "$WORK/sy.qpid")"
  wait "$y" || fail "y did not exit cleanly"
  assert_exists "$T/$so"
  kill -TERM "$(cat "$WORK/sw.qpid")"
  wait "$z" || fail "the joiner did not exit cleanly"
  assert_absent "$T/$so"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the last VM left"
  assert_eq "" "$(leftovers)" "no journal left"

  # Exclusive first, then share=on: refused.
  start_standin sv "$img"; x=$STANDIN_PID
  expect_error 1 "for one VM; every VM of a shared disk must give share=on" -- qlio --name su --image "$img,share=on" -- "$STANDIN"
  kill -TERM "$(cat "$WORK/sv.qpid")"
  wait "$x" || fail "the exclusive VM did not exit cleanly"

  # A writable block device shared by two VMs: one iblock object for both (two would
  # each claim the device exclusively, and the second would fail with EBUSY).
  local dev
  dev=$(losetup -f --show "$img") || fail "losetup"
  start_standin bx "$dev,share=on"; x=$STANDIN_PID
  start_standin by "$dev,share=on"; y=$STANDIN_PID
  assert_eq 1 "$(ls -d "$T"/core/iblock_*/qlshared-* | wc -l)" "one iblock object for the block device"
  kill -TERM "$(cat "$WORK/bx.qpid")" "$(cat "$WORK/by.qpid")"
  wait "$x" || fail "bx did not exit cleanly"
  wait "$y" || fail "by did not exit cleanly"
  wait_for 60 no_leftovers || fail "journals left after the block device's VMs"
  losetup -d "$dev"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the block device's VMs"
}

# Two nested guests at once on one share=on image (S), coordinating through a second
# share=on image (M) that nobody reserves:
#   A registers key 0xa1 and takes a WRITE EXCLUSIVE reservation, then says so in M;
#   B's WRITE(10) to S gets RESERVATION CONFLICT (sg_raw exit 24) while its READ(10) passes,
#   and B sees A's key; meanwhile the host reads the reservation in configfs under S's pr/;
#   A releases; B's write then succeeds and lands in the image. After both exit: clean.
scenario_shared_pr() {
  local s=$WORK/pr-s.img m=$WORK/pr-m.img before pa pb t0 rc=0 so wa nexus_a
  pattern_image "$s" 51
  pattern_image "$m" 52
  before=$(configfs_snapshot)
  # Shared by both guest scripts: find S and M by their first bytes; poll M's 1 MiB slots.
  cat > "$WORK/pr-lib.sh" <<'G'
for d in /dev/sd?; do
  case "$(dd if="$d" bs=16 count=1 2>/dev/null)" in
    QEMU-LIO-DISK-51) S=$d ;;
    QEMU-LIO-DISK-52) M=$d ;;
  esac
done
[ -n "${S:-}" ] && [ -n "${M:-}" ] || { echo "GUEST-NO-DISKS $(ls /dev/sd*)"; exit 1; }
put() { printf '%s' "$2" | dd of="$M" bs=1M seek="$1" conv=notrunc,fsync 2>/dev/null; }
# await SLOT TEXT: waits (up to 30 min) until M's SLOT holds TEXT, bypassing the page cache.
await() {
  i=0
  while [ $i -lt 1800 ]; do
    echo 3 > /proc/sys/vm/drop_caches
    [ "$(dd if="$M" bs=1M skip="$1" count=1 2>/dev/null | head -c ${#2})" = "$2" ] && return 0
    sleep 1; i=$((i + 1))
  done
  echo "GUEST-TIMEOUT waiting for $2"; exit 1
}
G
  {
    cat "$WORK/pr-lib.sh"
    cat <<'G'
sg_persist --out --register --param-sark=0xa1 "$S" >/dev/null && echo GUEST-A-REGISTERED
sg_persist --out --reserve --param-rk=0xa1 --prout-type=1 "$S" >/dev/null && echo GUEST-A-RESERVED
sg_persist --in --read-reservation "$S" | grep -q 'Key=0xa1' && echo GUEST-A-HOLDS
put 1 A-RESERVED
await 2 B-DONE
await 4 HOST-CHECKED
sg_persist --out --release --param-rk=0xa1 --prout-type=1 "$S" >/dev/null && echo GUEST-A-RELEASED
put 3 A-RELEASED
await 5 B-WROTE
echo GUEST-A-END
G
  } > "$WORK/pr-a.sh"
  {
    cat "$WORK/pr-lib.sh"
    cat <<'G'
await 1 A-RESERVED
head -c 512 /dev/zero > /tmp/zero; printf 'B-WROTE-AFTER' | dd of=/tmp/data conv=notrunc 2>/dev/null
head -c 499 /dev/zero >> /tmp/data
sg_raw -s 512 -i /tmp/zero "$S" 2a 00 00 00 10 00 00 00 01 00 >/dev/null 2>&1; echo "GUEST-B-WRITE-UNDER-RESERVATION $?"
sg_raw -r 512 "$S" 28 00 00 00 00 00 00 00 01 00 >/dev/null 2>&1; echo "GUEST-B-READ $?"
sg_persist --in --read-keys "$S" | grep -q 0xa1 && echo GUEST-B-SEES-KEY-A1
put 2 B-DONE
await 3 A-RELEASED
sg_raw -s 512 -i /tmp/data "$S" 2a 00 00 00 10 00 00 00 01 00 >/dev/null 2>&1; echo "GUEST-B-WRITE-AFTER-RELEASE $?"
put 5 B-WROTE
echo GUEST-B-END
G
  } > "$WORK/pr-b.sh"
  GUEST_BINARIES="sg_persist sg_raw" "$MAKE_GUEST_INITRD" "$WORK/pr-a.img" "$WORK/pr-a.sh" /dev/sda /dev/sdb || fail "guest initrd A"
  GUEST_BINARIES="sg_persist sg_raw" "$MAKE_GUEST_INITRD" "$WORK/pr-b.img" "$WORK/pr-b.sh" /dev/sda /dev/sdb || fail "guest initrd B"
  # The kernel opens <dbroot>/pr/aptpl_<serial> from its own threads, whose root is this VM's
  # initramfs, while the scenario runs in a chroot of the host's tree: make the two one
  # directory, as they are on a real host. (Without the kernel's one REGISTER fails: fact A2.)
  local db serial
  db=$(cat "$T/dbroot")
  mkdir -p "/proc/1/root$db/pr" "$db/pr"
  # -c: mount(8) would otherwise canonicalise the source inside this chroot, back to $db/pr.
  mount --bind -c "/proc/1/root$db/pr" "$db/pr" || fail "bind $db/pr"
  t0=$SECONDS
  for g in a b; do
    timeout "$GUEST_TIMEOUT" "$QEMU_LIO" --state-dir "$STATE_DIR" --name "pr$g" \
      --image "$s,share=on" --image "$m,share=on" -- \
      qemu-system-x86_64 "${GUEST_BOOT_ARGS[@]}" -initrd "$WORK/pr-$g.img" -append "$GUEST_APPEND" > "$WORK/pr-$g.log" 2>&1 &
    eval "p$g=\$!"
  done
  wait_for_progress 900 "$WORK/pr-a.log" grep -q 'GUEST-A-HOLDS' "$WORK/pr-a.log" \
    || { show_tail "$WORK/pr-a.log"; show_tail "$WORK/pr-b.log"; fail "guest A never held the reservation"; }
  echo "  A holds the reservation after $((SECONDS - t0)) s"
  so=$(shared_objects "$s")
  assert_eq 1 "$(wc -w <<<"$so")" "one storage object for S"
  wa=$(vm_field pra "vm['disks'][0]['wwn']")
  nexus_a=$(cat "$T/vhost/$wa/tpgt_1/nexus")
  echo "  pr/res_holder: $(cat "$T/$so/pr/res_holder")"
  echo "  pr/res_pr_type: $(cat "$T/$so/pr/res_pr_type")"
  echo "  pr/res_pr_registered_i_pts: $(cat "$T/$so/pr/res_pr_registered_i_pts" | tr '\n' ' ')"
  grep -q "Initiator: $nexus_a" "$T/$so/pr/res_holder" || fail "configfs does not name A's nexus ($nexus_a) as the holder"
  grep -q "Write Exclusive" "$T/$so/pr/res_pr_type" || fail "the reservation is not WRITE EXCLUSIVE"
  grep -qi "Key: 0x0*a1" "$T/$so/pr/res_pr_registered_i_pts" || fail "A's key is not registered"
  grep -q GUEST-A-REGISTERED "$WORK/pr-a.log" || fail "A's PR OUT REGISTER failed (is $db/pr there?)"
  serial=$(sed 's/.*: //' "$T/$so/wwn/vpd_unit_serial")
  assert_exists "$db/pr/aptpl_$serial"
  wait_for_progress 900 "$WORK/pr-b.log" grep -q 'GUEST-B-SEES-KEY-A1' "$WORK/pr-b.log" \
    || { show_tail "$WORK/pr-b.log"; fail "guest B never got to A's reservation"; }
  printf 'HOST-CHECKED' | dd of="$m" bs=1M seek=4 conv=notrunc status=none
  wait "$pa" || rc=$?
  assert_eq 0 "$rc" "guest A's qemu-lio"
  wait "$pb" || rc=$?
  assert_eq 0 "$rc" "guest B's qemu-lio"
  echo "  both guests done after $((SECONDS - t0)) s"
  grep -hE 'GUEST-' "$WORK/pr-a.log" "$WORK/pr-b.log" | sed 's/^/  guest: /'
  grep -q 'GUEST-B-WRITE-UNDER-RESERVATION 24' "$WORK/pr-b.log" || fail "B's write under A's reservation did not get RESERVATION CONFLICT (sg_raw 24)"
  grep -q 'GUEST-B-READ 0' "$WORK/pr-b.log" || fail "B's read under A's reservation failed"
  grep -q 'GUEST-B-WRITE-AFTER-RELEASE 0' "$WORK/pr-b.log" || fail "B's write after A's release failed"
  grep -q 'GUEST-EXIT 0' "$WORK/pr-a.log" || fail "guest A's script failed"
  grep -q 'GUEST-EXIT 0' "$WORK/pr-b.log" || fail "guest B's script failed"
  assert_eq B-WROTE-AFTER "$(dd if="$s" bs=512 skip=4096 count=1 status=none | head -c 13)" "B's write reached the image"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after both guests"
  assert_eq "" "$(leftovers)" "no journal left"
  assert_absent "$db/pr/aptpl_$serial"
  umount "$db/pr"
}

# boot_sector IMAGE TEXT: a 32 MiB image whose MBR prints TEXT on COM1 and halts.
boot_sector() {
  local hex
  truncate -s 32M "$1"
  # xor ax,ax; mov ds,ax; mov dx,0x3f8; mov si,0x7c14; next: lodsb; test al,al; jz end;
  # out dx,al; jmp next; end: cli; hlt; then TEXT, CR LF, NUL; 0x55 0xaa at 510.
  hex='\x31\xc0\x8e\xd8\xba\xf8\x03\xbe\x14\x7c\xac\x84\xc0\x74\x03\xee\xeb\xf8\xfa\xf4'
  printf "$hex%s\r\n\0" "$2" | dd of="$1" conv=notrunc status=none
  printf '\x55\xaa' | dd of="$1" bs=1 seek=510 conv=notrunc status=none
}

# controller=NAME boots from its LUN 0 (issue 14): SeaBIOS in a nested QEMU boots the disk
# with bootindex=1, which QEMU's boot path names as LUN 0 of the controller's TPG 1, and
# not LUN 1, which is bootable too; -boot strict=on skips anything not named.
scenario_controller_boot() {
  local l0=$WORK/boot0.img l1=$WORK/boot1.img before pid log=$WORK/boot.log
  boot_sector "$l0" BOOTED-FROM-LUN0
  boot_sector "$l1" BOOTED-FROM-LUN1
  before=$(configfs_snapshot)
  "$QEMU_LIO" --state-dir "$STATE_DIR" --name boot --image "$l0,controller=c,bootindex=1" --image "$l1,controller=c" -- \
    qemu-system-x86_64 -machine pc -m 64 -nographic -no-reboot -nic none -boot strict=on > "$log" 2>&1 &
  pid=$!
  wait_for 300 grep -q 'BOOTED-FROM-LUN' "$log" || { show_tail "$log"; fail "SeaBIOS booted nothing"; }
  grep -a 'BOOTED-FROM\|Booting from' "$log" | tr -d '\r' | sed 's/^/  console: /'
  grep -q 'BOOTED-FROM-LUN0' "$log" || fail "the guest did not boot from LUN 0"
  local q
  q=$(pgrep -P "$pid" -f qemu-system-x86_64 | head -1)
  [ -n "$q" ] || fail "no QEMU under the wrapper"
  assert_eq 1 "$(tr '\0' '\n' < "/proc/$q/cmdline" | grep -c '^vhost-scsi-pci')" "one vhost-scsi-pci device for both disks"
  kill -TERM "$pid"
  wait "$pid" || fail "qemu-lio exited $? (QEMU ends with 0 on SIGTERM)"
  wait_for 60 no_leftovers || fail "journal left after the boot VM"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the boot VM"
}

# The journal and gc around shared disks, without guests:
#  - a VM whose private disk's HBA claim tries the shared object's HBA (fileio_0, EEXIST)
#    while its shared disk joins that HBA leaves cleanly while the other VM runs: its
#    journal keeps the HBA as shared, whatever order the two disks' records took;
#  - gc of a journal kept from an earlier run of a VM never removes what the running VM of
#    that name made again under the same names;
#  - gc --dry-run only says it would delete the kernel's stale reservation file; gc does.
scenario_shared_journal() {
  local img=$WORK/j.img priv=$WORK/j-priv.img before a b i so snap out j db f serial=qlio-scenario-orphan
  pattern_image "$img" 61
  pattern_image "$priv" 62
  before=$(configfs_snapshot)
  start_standin ja "$img,share=on"; a=$STANDIN_PID
  so=$(shared_objects "$img")
  echo "  the shared object: $so"
  for i in 1 2 3 4; do
    start_standin jb "$priv" "$img,share=on"; b=$STANDIN_PID
    grep -q "^share rmdir target/core/${so#core/}" "$STATE_DIR"/jb.*.journal || fail "no share mark for the object"
    kill -TERM "$(cat "$WORK/jb.qpid")"
    wait "$b" || { show_tail "$WORK/jb.log"; fail "run $i: the VM with a private and a shared disk exited $?"; }
    assert_eq "" "$(ls "$STATE_DIR" | awk '/^jb\./')" "run $i: its journal is gone"
    assert_exists "$T/$so"
  done

  start_standin jr "$priv"; b=$STANDIN_PID
  j=$(ls "$STATE_DIR"/jr.*.journal)
  # The same VM's journal from an earlier run, kept after a failed teardown: its processes
  # are gone, and it names the objects the running VM has made again.
  (umask 077; sed -e 's/^wrapper .*/wrapper 999999 1/' -e 's/^backstop .*/backstop 999999 1/' \
    -e 's/^owner .*/owner 999999 1/' "$j" > "$STATE_DIR/jr.999999.journal")
  snap=$(configfs_snapshot)
  out=$(qlio gc) || fail "gc failed: $out"
  echo "$out" | sed 's/^/  gc: /'
  grep -q "cleaned VM jr: removed 0 object(s)" <<<"$out" || fail "gc did not say it removed nothing"
  assert_eq "$snap" "$(configfs_snapshot)" "gc left the running VM's disk alone"
  assert_absent "$STATE_DIR/jr.999999.journal"
  assert_eq active "$(vm_field jr 'vm["state"]')" "the running VM is whole"
  kill -TERM "$(cat "$WORK/jr.qpid")"
  wait "$b" || fail "jr did not exit cleanly"

  db=$(cat "$T/dbroot")
  mkdir -p "$db/pr"
  f=$db/pr/aptpl_$serial
  echo stale > "$f"
  (umask 077; printf 'qemu-lio-journal 1\nvm orphan\nwrapper 999999 1\nshared %s %s\nready\n' \
    qlshared-00000000deadbeef "$serial" > "$STATE_DIR/orphan.999999.journal")
  out=$(qlio gc --dry-run) || fail "gc --dry-run failed: $out"
  grep -q "would delete $f" <<<"$out" || fail "gc --dry-run does not name $f: $out"
  assert_exists "$f"
  assert_exists "$STATE_DIR/orphan.999999.journal"
  qlio gc >/dev/null || fail "gc failed"
  assert_absent "$f"
  assert_absent "$STATE_DIR/orphan.999999.journal"

  kill -TERM "$(cat "$WORK/ja.qpid")"
  wait "$a" || fail "ja did not exit cleanly"
  assert_eq "$before" "$(configfs_snapshot)" "configfs clean after the journal scenario"
  assert_eq "" "$(leftovers)" "no journal left"
}

scenario shared-lifecycle scenario_shared_lifecycle
scenario shared-journal scenario_shared_journal
scenario shared-pr scenario_shared_pr
scenario controller-boot scenario_controller_boot
scenarios_summary

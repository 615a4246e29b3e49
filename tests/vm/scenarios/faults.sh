#!/usr/bin/env bash
# The fault suite (real kernel): crashes of the wrapper at chosen configfs operations, crashes
# and failures of QEMU, concurrency with itself and targetcli, read-only sharing, and a
# catalogue of bad input. Prints one summary line with the figures:
#   fault-suite: runs R, faults injected F, objects leaked L, bytes lost B
#   QEMU_LIO: the qemu-lio binary under test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

QEMU_LIO=${QEMU_LIO:?set QEMU_LIO to the qemu-lio binary}
STANDIN=$here/stand-in-qemu.sh
WORK=$(mktemp -d /tmp/qemu-lio-faults.XXXXXX)
IMG=$WORK/img
STATE_DIR=$WORK/state
FIG=$WORK/figures   # one line per event, appended from the scenario subshells
mkdir -p "$IMG" "$T/vhost"
: > "$FIG"

qlio() { "$QEMU_LIO" --state-dir "$STATE_DIR" "$@"; }
count() { echo "$1" >> "$FIG"; }   # run | fault | leak N | lost N

# Every image carries a pattern; "bytes lost" counts bytes that differ from it afterwards.
pattern_image() {  # PATH [SIZE-MB]
  truncate -s "${2:-8}M" "$1"
  head -c 65536 /dev/urandom > "$1.pattern"
  dd if="$1.pattern" of="$1" conv=notrunc status=none
}
check_pattern() {  # PATH
  local lost
  lost=$(cmp -l <(head -c 65536 "$1") "$1.pattern" 2>/dev/null | wc -l)
  count "lost $lost"
  assert_eq 0 "$lost" "$1: bytes lost"
}

# Objects in configfs now that were not there in $before (dirs and links).
leaked_objects() {
  diff <(echo "$before" | grep -E '^(D|L) ') <(configfs_snapshot | grep -E '^(D|L) ') | grep -c '^>' || true
}

no_journal() { [ -z "$(ls "$STATE_DIR"/*.journal 2>/dev/null)" ]; }
healed() { no_journal && [ "$before" = "$(configfs_snapshot)" ]; }

# After a crash nobody runs gc: the run's backstop must bring configfs back on its own,
# within 15 s (x VM_WAIT_SCALE). A gc afterwards must then find nothing to do.
after_self_heal() {  # WHAT
  local leaked
  # The verdict is below, with the figures: a set that did not heal is counted as leaked.
  if ! wait_for 15 healed; then echo "  $1: not healed within the bound"; fi
  leaked=$(leaked_objects)
  count "leak $leaked"
  assert_eq 0 "$leaked" "$1: objects left 15 s after the crash, with no gc"
  assert_eq "$before" "$(configfs_snapshot)" "$1: configfs back to its starting state"
  no_journal || fail "$1: journal left: $(cat "$STATE_DIR"/*.journal)"
  count healed
  qlio gc > "$WORK/gc.out" || fail "$1: gc failed: $(cat "$WORK/gc.out")"
  grep -q '^gc: 0 stale set(s)' "$WORK/gc.out" || fail "$1: gc still found work: $(cat "$WORK/gc.out")"
}

scenario_kill_during_provisioning() {
  local a=$IMG/kp-a.img b=$IMG/kp-b.img n rc made
  pattern_image "$a"; pattern_image "$b"
  before=$(configfs_snapshot)
  # Two disks make 28 mutating operations (14 each); die before many of them, from the
  # first HBA claim to the last LUN link. The two disks are provisioned at once, so the Nth
  # operation belongs to either disk, whichever got there first.
  for n in 1 2 3 5 8 9 12 14 15 17 21 24 27 28; do
    rc=0
    QEMU_LIO_FAULT=provision:$n qlio --image "$a" --image "$b" -- "$STANDIN" 2>/dev/null || rc=$?
    count run; count fault
    assert_eq 137 "$rc" "killed at provisioning op $n"
    after_self_heal "provision:$n"
  done
  check_pattern "$a"; check_pattern "$b"
}

scenario_kill_during_teardown() {
  local a=$IMG/kt.img n rc
  pattern_image "$a"
  before=$(configfs_snapshot)
  for n in 1 2 4 6; do
    rc=0
    QEMU_LIO_FAULT=teardown:$n qlio --image "$a" -- "$STANDIN" 2>/dev/null || rc=$?
    count run; count fault
    assert_eq 137 "$rc" "killed at teardown op $n"
    after_self_heal "teardown:$n"
  done
  check_pattern "$a"
}

scenario_kill_wrapper_while_qemu_runs() {
  local a=$IMG/kw.img wpid qpid bpid
  pattern_image "$a"
  before=$(configfs_snapshot)
  rm -f "$WORK/ready"
  STANDIN_END=wait-term STANDIN_READY=$WORK/ready STANDIN_RUN="echo \$PPID > $WORK/qpid" \
    "$QEMU_LIO" --state-dir "$STATE_DIR" --name kw --image "$a" -- "$STANDIN" &
  wpid=$!
  wait_for 10 test -e "$WORK/ready" || fail "QEMU did not start"
  qpid=$(cat "$WORK/qpid")
  qlio list --json > "$WORK/list.json"
  grep -q '"name": "kw"' "$WORK/list.json" || fail "list lacks the VM: $(cat "$WORK/list.json")"
  grep -q '"state": "active"' "$WORK/list.json" || fail "list: not active: $(cat "$WORK/list.json")"
  grep -q '"owner_alive": true' "$WORK/list.json" || fail "list does not see QEMU alive: $(cat "$WORK/list.json")"
  grep -q '"backstop_alive": true' "$WORK/list.json" || fail "list does not see the backstop: $(cat "$WORK/list.json")"
  qlio list | grep -q '^kw active' || fail "text list: $(qlio list)"
  # A live set is nobody's garbage.
  qlio gc | grep -q '^gc: 0 stale set(s)' || fail "gc took a live run for stale"
  kill -9 "$wpid"; wait "$wpid" 2>/dev/null || true
  count run; count fault
  # QEMU must not outlive its wrapper, and its disks go with it, with no gc.
  wait_for 10 test ! -d "/proc/$qpid" || fail "QEMU outlived its SIGKILLed wrapper"
  after_self_heal "wrapper killed while QEMU ran"

  # Both the wrapper and its backstop killed: only then is a set stale, and the next run
  # (or gc) collects it before it provisions.
  rm -f "$WORK/ready"
  STANDIN_END=wait-term STANDIN_READY=$WORK/ready \
    "$QEMU_LIO" --state-dir "$STATE_DIR" --name kw2 --image "$a" -- "$STANDIN" &
  wpid=$!
  wait_for 10 test -e "$WORK/ready" || fail "QEMU did not start"
  bpid=$(awk '$1 == "backstop" { print $2 }' "$STATE_DIR"/kw2.*.journal)
  kill -9 "$bpid" "$wpid"; wait "$wpid" 2>/dev/null || true
  count run; count fault
  kw2_stale() { qlio list | grep -q '^kw2 stale'; }
  wait_for 10 kw2_stale || fail "set not stale with wrapper, QEMU and backstop gone: $(qlio list)"
  qlio gc --dry-run > "$WORK/dry.out"
  grep -q '^would remove /sys/kernel/config/target/vhost/' "$WORK/dry.out" || fail "gc --dry-run: $(cat "$WORK/dry.out")"
  grep -q '(dry run: nothing was changed)' "$WORK/dry.out" || fail "gc --dry-run summary: $(cat "$WORK/dry.out")"
  [ "$(leaked_objects)" -gt 0 ] || fail "gc --dry-run removed something"
  ls "$STATE_DIR"/kw2.*.journal > /dev/null || fail "gc --dry-run deleted the journal"
  qlio --image "$a" -- "$STANDIN" 2> "$WORK/err" || fail "next run failed: $(cat "$WORK/err")"
  count run
  grep -q 'gc: cleaned VM kw2' "$WORK/err" || fail "next run did not collect the stale set: $(cat "$WORK/err")"
  after_self_heal "next run"
  check_pattern "$a"
}

scenario_qemu_failures() {
  local a=$IMG/qf.img rc spec
  pattern_image "$a"
  before=$(configfs_snapshot)
  for spec in "signal:KILL 137" "signal:SEGV 139" "signal:ABRT 134"; do
    rc=0
    STANDIN_END=${spec% *} qlio --image "$a" -- "$STANDIN" || rc=$?
    count run; count fault
    assert_eq "${spec#* }" "$rc" "status after QEMU ${spec% *}"
    count "leak $(leaked_objects)"
    assert_eq "$before" "$(configfs_snapshot)" "clean after QEMU ${spec% *}"
  done
  # The real QEMU failing at start (a bad argument): its status, everything torn down.
  rc=0
  qlio --image "$a" -- qemu-system-x86_64 -no-such-option 2>/dev/null || rc=$?
  count run; count fault
  assert_eq 1 "$rc" "status when QEMU rejects its arguments"
  count "leak $(leaked_objects)"
  assert_eq "$before" "$(configfs_snapshot)" "clean after QEMU failed at start"
  check_pattern "$a"
}

scenario_concurrency() {
  local i pids=() rc ok=0 tc_pid
  for i in $(seq 16); do pattern_image "$IMG/c$i.img" 4; done
  vm_start_dbus
  # targetcli's first start sets dbroot and makes fabric directories: let it, before the
  # snapshot, so only what the runs themselves leave is compared.
  targetcli ls >/dev/null 2>&1
  before=$(configfs_snapshot)
  # targetcli creates and deletes its own objects all along.
  ( for k in 1 2 3; do
      targetcli /backstores/ramdisk create name=tc$k size=1M >/dev/null 2>&1
      targetcli /backstores/ramdisk delete tc$k >/dev/null 2>&1
    done ) &
  tc_pid=$!
  for i in $(seq 16); do
    STANDIN_ARGV=$WORK/argv.$i STANDIN_RUN="sleep 2; ls -d $T/core/*/cc$i-disk0 > $WORK/hba.$i" \
      qlio --name "cc$i" --image "$IMG/c$i.img" -- "$STANDIN" 2> "$WORK/cerr.$i" &
    pids+=($!)
  done
  for i in $(seq 16); do
    rc=0; wait "${pids[$((i - 1))]}" || rc=$?
    count run
    [ "$rc" = 0 ] && ok=$((ok + 1)) || echo "  run $i: status $rc: $(cat "$WORK/cerr.$i")"
  done
  wait "$tc_pid" || true
  assert_eq 16 "$ok" "concurrent runs on distinct images that succeeded"
  assert_eq 16 "$(cat "$WORK"/argv.* | grep -o 'wwpn=naa\.[0-9a-f]*' | sort -u | wc -l)" "distinct wwns"
  assert_eq 16 "$(cat "$WORK"/hba.* | xargs -n1 dirname | sort -u | wc -l)" "distinct HBAs"
  count "leak $(leaked_objects)"
  assert_eq "$before" "$(configfs_snapshot)" "everything torn down after 16 concurrent runs"

  # 8 runs on one writable image at once: exactly one may own it.
  local same=$IMG/same.img
  pattern_image "$same"
  pids=(); ok=0
  for i in $(seq 8); do
    STANDIN_RUN="sleep 3" qlio --name "same$i" --image "$same" -- "$STANDIN" 2> "$WORK/serr.$i" &
    pids+=($!)
  done
  for i in $(seq 8); do
    rc=0; wait "${pids[$((i - 1))]}" || rc=$?
    count run
    if [ "$rc" = 0 ]; then ok=$((ok + 1)); else grep -q 'already exported' "$WORK/serr.$i" || fail "run $i: $(cat "$WORK/serr.$i")"; fi
  done
  assert_eq 1 "$ok" "runs on one writable image that succeeded"
  count "leak $(leaked_objects)"
  assert_eq "$before" "$(configfs_snapshot)" "clean after the same-image race"
  check_pattern "$same"
}

scenario_read_only_sharing() {
  local ro=$IMG/ro.img sum
  pattern_image "$ro"
  sum=$(md5sum < "$ro")
  before=$(configfs_snapshot)
  rm -f "$WORK/ready"
  STANDIN_END=wait-term STANDIN_READY=$WORK/ready \
    "$QEMU_LIO" --state-dir "$STATE_DIR" --name ro1 --image "$ro,readonly=on" -- "$STANDIN" &
  local p1=$!
  wait_for 10 test -e "$WORK/ready" || fail "QEMU did not start"
  count run
  # A second VM may share a read-only image ...
  STANDIN_RUN="cat $T/vhost/*/tpgt_1/acls/*/lun_0/write_protect > $WORK/wp" \
    qlio --name ro2 --image "$ro,readonly=on" -- "$STANDIN" || fail "second read-only run refused"
  count run
  assert_eq "1
1" "$(cat "$WORK/wp")" "both exports carry write_protect=1 on the nexus ACL"
  # ... but a writer may not join.
  local rc=0
  qlio --name rw --image "$ro" -- "$STANDIN" 2> "$WORK/err" || rc=$?
  count run
  assert_eq 1 "$rc" "a writable run on an image exported read-only"
  kill -TERM "$p1"; wait "$p1" || true
  count "leak $(leaked_objects)"
  assert_eq "$before" "$(configfs_snapshot)" "clean after read-only runs"
  assert_eq "$sum" "$(md5sum < "$ro")" "read-only image unchanged"
}

# The disks of a run are provisioned and torn down in parallel. A kernel refusal in disk 5
# of 8 (iblock's enable of a mounted device: EBUSY) while the others are being made rolls
# back all eight; a SIGKILL in the middle of an 8-disk provisioning or teardown heals.
scenario_parallel_disks() {
  local i rc args=() dev made err
  for i in 0 1 2 3 4 6 7; do pattern_image "$IMG/par$i.img"; done
  truncate -s 16M "$WORK/par-fs.img"; mkfs.ext4 -q "$WORK/par-fs.img"
  dev=$(losetup -f --show "$WORK/par-fs.img"); mkdir -p "$WORK/par-mnt"; mount "$dev" "$WORK/par-mnt"
  for i in 0 1 2 3 4; do args+=(--image "$IMG/par$i.img"); done
  args+=(--image "$dev")
  for i in 6 7; do args+=(--image "$IMG/par$i.img"); done
  before=$(configfs_snapshot)
  rc=0
  qlio -v --name par "${args[@]}" -- "$STANDIN" 2> "$WORK/par.err" > /dev/null || rc=$?
  count run
  err=$(grep 'error: ' "$WORK/par.err")
  assert_eq 1 "$rc" "8 disks, disk 5 refused by the kernel: status"
  assert_eq 1 "$(grep -c 'error: ' "$WORK/par.err")" "one error line ($err)"
  echo "$err" | grep -q 'par-disk5/enable: .*Device or resource busy' || fail "the error names disk 5's enable: $err"
  # Disks after disk 5 were being made at the same time, and all of it was rolled back: a
  # serial run stops at disk 5's enable with 6 HBAs claimed, the parallel one claims more.
  made=$(grep -cE '^qemu-lio: claimed target/core/' "$WORK/par.err" || true)
  [ "$made" -ge 7 ] || fail "$made HBAs claimed: disks 6 and 7 never started, the disks did not run in parallel"
  grep -v '^qemu-lio: ' "$WORK/par.err" && fail "a log line was not whole"
  count "leak $(leaked_objects)"
  assert_eq "$before" "$(configfs_snapshot)" "8 disks rolled back"
  no_journal || fail "journal left after the rollback"
  echo "  disk 5 of 8 refused: $made HBAs claimed (a serial run: 6), $(grep -cE 'made target/core/[a-z]+_[0-9]+/par-disk[67]$' "$WORK/par.err") storage object(s) of disks 6-7 made; all rolled back"
  umount "$WORK/par-mnt"; losetup -d "$dev"
  pattern_image "$IMG/par5.img"
  args=()
  for i in 0 1 2 3 4 5 6 7; do args+=(--image "$IMG/par$i.img"); done
  # 8 disks make 112 mutating operations and remove with 56: die in the middle of each.
  local fault
  for fault in provision:1 provision:50 provision:111 teardown:1 teardown:30; do
    rc=0
    QEMU_LIO_FAULT=$fault qlio --name par "${args[@]}" -- "$STANDIN" 2>/dev/null || rc=$?
    count run; count fault
    assert_eq 137 "$rc" "8 disks killed at $fault"
    after_self_heal "8 disks, $fault"
  done
  rc=0
  qlio --name par "${args[@]}" -- "$STANDIN" || rc=$?
  count run
  assert_eq 0 "$rc" "8 disks run"
  assert_eq "$before" "$(configfs_snapshot)" "8 disks torn down"
  for i in 0 1 2 3 4 5 6 7; do check_pattern "$IMG/par$i.img"; done
}

# Each case: the expected status, one error line, configfs unchanged, no file created.
reject() {  # WANT-RC DESCRIPTION ARGS...
  local want=$1 what=$2 files rc=0 err
  shift 2
  files=$(find "$IMG" | sort)
  "$@" 2> "$WORK/err" > /dev/null || rc=$?
  err=$(cat "$WORK/err")
  count run
  [ "$rc" = "$want" ] || fail "$what: status $rc, expected $want: $err"
  assert_eq 1 "$(wc -l < "$WORK/err")" "$what: one line on stderr ($err)"
  echo "$err" | grep -q '^qemu-lio: error: ' || fail "$what: format: $err"
  assert_eq "$before" "$(configfs_snapshot)" "$what: configfs unchanged"
  assert_eq "$files" "$(find "$IMG" | sort)" "$what: no file created"
  echo "  $what -> $rc: ${err#qemu-lio: error: }"
}

scenario_bad_input_catalogue() {
  local g=$IMG/good.img long dev
  pattern_image "$g"
  # Format headers in files whose names do not say the format (a guest can write them into
  # its raw disk): refused. A named, well-formed image is served (formats.sh).
  printf 'QFI\373' > "$IMG/q.img"; truncate -s 1M "$IMG/q.img"
  printf 'KDMV' > "$IMG/v-vmdk.img"; truncate -s 1M "$IMG/v-vmdk.img"
  printf 'vhdxfile' > "$IMG/x-vhdx.img"; truncate -s 1M "$IMG/x-vhdx.img"
  printf 'QED\0' > "$IMG/e-qed.img"; truncate -s 1M "$IMG/e-qed.img"
  truncate -s 1M "$IMG/d-vdi.img"; printf '\177\020\332\276' | dd of="$IMG/d-vdi.img" bs=1 seek=64 conv=notrunc status=none
  mkdir -p "$IMG/with,comma" "$IMG/dir.img"; cp "$g" "$IMG/with,comma/c.img"
  cp "$g" "$IMG/new
line.img"
  long=$IMG/$(printf 'l%.0s' $(seq 250)).img; cp "$g" "$long"
  ln -s loop1 "$IMG/loop2"; ln -s loop2 "$IMG/loop1"
  mkfifo "$IMG/fifo"
  truncate -s 1000 "$IMG/odd.img"
  : > "$IMG/empty.img"
  mkdir -p "$WORK/allowed"
  printf 'allow = %s\n' "$WORK/allowed" > "$WORK/allow.conf"
  # A block device in use: a mounted loop device cannot be opened exclusively by iblock.
  truncate -s 16M "$WORK/fs.img"; mkfs.ext4 -q "$WORK/fs.img"
  dev=$(losetup -f --show "$WORK/fs.img"); mkdir -p "$WORK/mnt"; mount "$dev" "$WORK/mnt"
  before=$(configfs_snapshot)
  local S=$STANDIN
  reject 1 "missing image" qlio --image "$IMG/missing.img" -- "$S"
  reject 1 "relative missing image" qlio --image "nope/missing.img" -- "$S"
  reject 1 "qcow2 magic" qlio --image "$IMG/q.img" -- "$S"
  reject 1 "vmdk magic" qlio --image "$IMG/v-vmdk.img" -- "$S"
  reject 1 "vhdx magic" qlio --image "$IMG/x-vhdx.img" -- "$S"
  reject 1 "qed magic" qlio --image "$IMG/e-qed.img" -- "$S"
  reject 1 "vdi magic" qlio --image "$IMG/d-vdi.img" -- "$S"
  reject 1 "path with a comma" qlio --image "$IMG/with,,comma/c.img" -- "$S"
  reject 1 "path with a newline" qlio --image "$IMG/new
line.img" -- "$S"
  reject 1 "path over 255 bytes" qlio --image "$long" -- "$S"
  reject 1 "symlink loop" qlio --image "$IMG/loop1" -- "$S"
  reject 1 "directory" qlio --image "$IMG/dir.img" -- "$S"
  reject 1 "fifo" qlio --image "$IMG/fifo" -- "$S"
  reject 1 "zero-size image" qlio --image "$IMG/empty.img" -- "$S"
  reject 1 "size not a multiple of 512" qlio --image "$IMG/odd.img" -- "$S"
  reject 1 "size not a multiple of 4096" qlio --image "$g,block-size=4096" --image "$IMG/odd.img,block-size=4096" -- "$S"
  reject 1 "block device in use (mounted)" qlio --image "$dev" -- "$S"
  reject 1 "image outside allow" env QEMU_LIO_CONFIG="$WORK/allow.conf" "$QEMU_LIO" --state-dir "$STATE_DIR" --image "$g" -- "$S"
  reject 2 "malformed wwn" qlio --image "$g,wwn=naa.50014051234" -- "$S"
  reject 2 "wwn not naa" qlio --image "$g,wwn=iqn.2003-01.org.x" -- "$S"
  reject 2 "serial with a space" qlio --image "$g,serial=a b" -- "$S"
  reject 2 "serial too long" qlio --image "$g,serial=$(printf 's%.0s' $(seq 200))" -- "$S"
  reject 2 "id with a comma" qlio --image "$g,id=a,,drive=x" -- "$S"
  reject 2 "block-size 3000" qlio --image "$g,block-size=3000" -- "$S"
  reject 2 "unknown key" qlio --image "$g,colour=blue" -- "$S"
  reject 2 "num-queues 129" qlio --image "$g,num-queues=129" -- "$S"
  reject 2 "cache=unsafe" qlio --image "$g,cache=unsafe" -- "$S"
  reject 2 "name with a slash" qlio --name a/b --image "$g" -- "$S"
  reject 2 "no QEMU command" qlio --image "$g"
  reject 2 "unknown option" qlio --colour --image "$g" -- "$S"
  umount "$WORK/mnt"; losetup -d "$dev"
  # A path with spaces is not bad input: the kernel splits control strings on ',' and '\n'
  # only, so qemu-lio serves it.
  cp "$g" "$IMG/with space.img"
  qlio --image "$IMG/with space.img" -- "$S" || fail "a path with a space should work"
  count run
}

scenario kill-during-provisioning scenario_kill_during_provisioning
scenario kill-during-teardown scenario_kill_during_teardown
scenario kill-wrapper-while-qemu-runs scenario_kill_wrapper_while_qemu_runs
scenario qemu-failures scenario_qemu_failures
scenario concurrency scenario_concurrency
scenario read-only-sharing scenario_read_only_sharing
scenario bad-input-catalogue scenario_bad_input_catalogue
scenario parallel-disks scenario_parallel_disks
echo "fault-suite: runs $(grep -c '^run' "$FIG"), faults injected $(grep -c '^fault' "$FIG"), healed without gc $(grep -c '^healed' "$FIG"), objects leaked $(awk '$1=="leak"{s+=$2} END{print s+0}' "$FIG"), bytes lost $(awk '$1=="lost"{s+=$2} END{print s+0}' "$FIG")"
scenarios_summary
